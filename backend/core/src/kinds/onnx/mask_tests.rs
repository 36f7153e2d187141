//! A two-input text encoder (INT32 `INPUT_IDS` and `ATTENTION_MASK`, the
//! signature CLIP-as-service's `textual.onnx` files have) in real ONNX
//! Runtime: both columns joined in step from the same rows, and a bad
//! request of either input failing alone.

use clip_contract::{tensor, DataType, TensorSpec};
use clip_export::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType as OnnxType, type_proto, AttributeProto,
    NodeProto, ValueInfoProto,
};
use prost::Message;

use super::tests::{
    embedding_spec, exported, fp32, input, input_ids, max_diff, reference, runner, spec, TOLERANCE,
};
use crate::batch::{ErrorKind, Request, RequestError};

/// The exported text encoder taking INT32 ids (cast to INT64 inside) and
/// an INT32 attention mask, which a causal CLIP tower has no use for.
fn two_input_model(model: &clip_export::OnnxModel) -> Vec<u8> {
    let mut proto = model.decode().unwrap();
    let graph = proto.graph.as_mut().unwrap();
    for node in &mut graph.node {
        for name in node.input.iter_mut().filter(|n| *n == tensor::INPUT_IDS) {
            *name = "ids_int64".into();
        }
    }
    graph.node.insert(
        0,
        NodeProto {
            input: vec![tensor::INPUT_IDS.into()],
            output: vec!["ids_int64".into()],
            name: Some("cast_ids".into()),
            op_type: Some("Cast".into()),
            attribute: vec![AttributeProto {
                name: Some("to".into()),
                r#type: Some(AttributeType::Int as i32),
                i: Some(OnnxType::Int64 as i64),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let mut ids = graph.input[0].clone();
    if let Some(type_proto::Value::TensorType(t)) =
        ids.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = Some(OnnxType::Int32 as i32);
    }
    let mask = ValueInfoProto {
        name: Some(tensor::ATTENTION_MASK.into()),
        ..ids.clone()
    };
    graph.input = vec![ids, mask];
    proto.encode_to_vec()
}

fn int32_spec(name: &str) -> TensorSpec {
    TensorSpec::new(name, DataType::Int32, vec![77])
}

fn as_int32(int64: &[u8]) -> Vec<u8> {
    int64
        .chunks_exact(8)
        .flat_map(|v| (i64::from_le_bytes(v.try_into().unwrap()) as i32).to_le_bytes())
        .collect()
}

/// A mask of the rows of `ids` (INT32): 1 up to and including the end token.
fn mask_of(ids: &[u8]) -> Vec<u8> {
    let ids: Vec<i32> = bytemuck::pod_collect_to_vec(ids);
    ids.chunks_exact(77)
        .flat_map(|row| {
            let real = row.iter().position(|&id| id == 49407).unwrap() + 1;
            (0..77).flat_map(move |i| i32::from(i < real).to_le_bytes())
        })
        .collect()
}

fn pair<'d>(rows: i64, ids: &'d [u8], mask: &'d [u8]) -> Result<Request<'d>, RequestError> {
    Ok(Request {
        inputs: vec![
            input(DataType::Int32, vec![rows, 77], ids),
            input(DataType::Int32, vec![rows, 77], mask),
        ],
    })
}

#[test]
fn ids_and_mask_join_in_step_and_bad_requests_fail_alone() {
    let (dir, model) = exported("quick_gelu", true);
    std::fs::write(
        dir.path().join(clip_contract::file::ONNX_MODEL),
        two_input_model(&model),
    )
    .unwrap();
    let mut two = spec(
        int32_spec(tensor::INPUT_IDS),
        embedding_spec(DataType::Fp32),
    );
    two.inputs.push(int32_spec(tensor::ATTENTION_MASK));
    two.vocab_size = Some(49408);
    let mut runner = runner(two, dir.path()).unwrap();

    let ids = as_int32(&input_ids().0);
    let mask = mask_of(&ids);
    let row = 77 * 4;
    let want = reference("quick_gelu", "text_features");
    let mut not_binary = mask[..row].to_vec();
    not_binary[4..8].copy_from_slice(&2i32.to_le_bytes());
    let nothing_attended = vec![0u8; row];
    let mut out_of_vocabulary = ids[..row].to_vec();
    out_of_vocabulary[8..12].copy_from_slice(&49408i32.to_le_bytes());
    let as_int64 = input_ids().0;
    let bads: [(Result<Request<'_>, RequestError>, &str); 5] = [
        (
            pair(1, &ids[..row], &not_binary),
            "ATTENTION_MASK element 0: value 2 is not 0 or 1",
        ),
        (
            pair(1, &ids[..row], &nothing_attended),
            "ATTENTION_MASK element 0: no token is attended",
        ),
        (
            pair(1, &out_of_vocabulary, &mask[..row]),
            "INPUT_IDS element 0: token id 49408 is outside",
        ),
        (
            Ok(Request {
                inputs: vec![
                    input(DataType::Int32, vec![2, 77], &ids[..2 * row]),
                    input(DataType::Int32, vec![1, 77], &mask[..row]),
                ],
            }),
            "input 'ATTENTION_MASK' has 1 rows but 'INPUT_IDS' has 2",
        ),
        (
            Ok(Request {
                inputs: vec![
                    input(DataType::Int64, vec![1, 77], &as_int64[..2 * row]),
                    input(DataType::Int32, vec![1, 77], &mask[..row]),
                ],
            }),
            "input 'INPUT_IDS' must be INT32, got INT64",
        ),
    ];
    // Each bad request between good ones of 1 and 2 rows, at every position.
    for (bad, says) in bads {
        for at in 0..3 {
            let mut batch = vec![
                pair(1, &ids[..row], &mask[..row]),
                pair(2, &ids[row..3 * row], &mask[row..3 * row]),
            ];
            batch.insert(at, bad.clone());
            let results = runner.execute(&batch);
            let error = results.response(at).unwrap_err();
            assert_eq!(error.kind, ErrorKind::InvalidArg, "{error}");
            assert!(error.message.starts_with(says), "{error} lacks {says}");
            let goods: Vec<usize> = (0..3).filter(|&i| i != at).collect();
            for (index, rows) in goods.into_iter().zip([0..1, 1..3]) {
                let diff = max_diff(
                    &fp32(&results, index),
                    &want[rows.start * 24..rows.end * 24],
                );
                assert!(
                    diff <= TOLERANCE,
                    "request {index} beside a bad one at {at}: {diff}"
                );
            }
        }
    }
}
