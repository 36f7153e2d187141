//! The `onnx_encoder` kind against the tiny CLIP's reference embeddings,
//! in real ONNX Runtime.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clip_contract::{tensor, DataType, TensorSpec};
use clip_export::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType as OnnxType, type_proto, AttributeProto,
    NodeProto,
};
use clip_export::{ClipArchitecture, ClipWeights, ExportOptions, OnnxModel};
use clip_test_support::{ort_library, tiny_clip};
use half::f16;
use ort::value::TensorElementType;
use prost::Message;
use serde_json::Value;

use super::signature::{check_signature, Declared};
use super::*;
use crate::batch::{BatchOutput, ErrorKind, Input, Request, RequestError};
use crate::config::KindSpec;
use crate::metrics::tests::{expect, tally, Tally};
use crate::metrics::Metrics;

pub(super) const TOLERANCE: f32 = 1e-4;

pub(super) fn tiny() -> PathBuf {
    tiny_clip::dir()
}

/// The reference token ids: raw little-endian INT64 bytes, [rows, 77].
pub(super) fn input_ids() -> (Vec<u8>, Vec<usize>) {
    let ids = tiny_clip::input("input_ids");
    (ids.bytes, ids.shape)
}

/// The reference pixels: raw little-endian FP16 bytes, [rows, 3, 224, 224].
fn pixels_f16() -> (Vec<u8>, Vec<usize>) {
    let pixels = tiny_clip::input("pixel_values");
    (pixels.bytes, pixels.shape)
}

fn pixels_f32() -> Vec<u8> {
    let pixels = tiny_clip::input("pixel_values").f32s();
    bytemuck::cast_slice(&pixels).to_vec()
}

pub(super) fn reference(variant: &str, which: &str) -> Vec<f32> {
    tiny_clip::reference(variant, which).f32s()
}

fn weights(variant: &str) -> ClipWeights {
    let config = std::fs::read_to_string(tiny().join(variant).join("config.json")).unwrap();
    let arch = ClipArchitecture::from_config_json(&config).unwrap();
    ClipWeights::load(tiny().join(variant).join("model.safetensors"), &arch).unwrap()
}

/// The tiny model's text or image encoder, exported and written as
/// `<dir>/model.onnx`.
pub(super) fn exported(variant: &str, textual: bool) -> (tempfile::TempDir, OnnxModel) {
    let weights = weights(variant);
    let options = ExportOptions::default();
    let model = if textual {
        clip_export::export_textual(&weights, &options)
    } else {
        clip_export::export_visual(&weights, &options)
    }
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    model
        .write(dir.path(), clip_contract::file::ONNX_MODEL)
        .unwrap();
    (dir, model)
}

pub(super) fn ids_spec() -> TensorSpec {
    TensorSpec::new(tensor::INPUT_IDS, DataType::Int64, vec![77])
}

fn pixels_spec(data_type: DataType) -> TensorSpec {
    TensorSpec::new(tensor::PIXEL_VALUES, data_type, vec![3, 224, 224])
}

pub(super) fn embedding_spec(data_type: DataType) -> TensorSpec {
    TensorSpec::new(tensor::EMBEDDING, data_type, vec![24])
}

pub(super) fn spec(input: TensorSpec, output: TensorSpec) -> EncoderSpec {
    EncoderSpec {
        model_file: clip_contract::file::ONNX_MODEL.into(),
        ort_library: Some(ort_library().to_path_buf()),
        intra_op_threads: Some(1),
        inter_op_threads: None,
        allow_spinning: false,
        instance_count: 1,
        vocab_size: None,
        inputs: vec![input],
        output,
    }
}

pub(super) fn cpu() -> Instance {
    crate::kind::cpu_instance()
}

pub(super) fn runner(spec: EncoderSpec, dir: &Path) -> Result<Box<dyn Runner>, String> {
    counted_runner(spec, dir).map(|(runner, _)| runner)
}

/// A runner and what it counts.
pub(super) fn counted_runner(
    spec: EncoderSpec,
    dir: &Path,
) -> Result<(Box<dyn Runner>, Arc<Tally>), String> {
    let (metrics, tally) = tally(&KindSpec::OnnxEncoder(spec.clone()));
    let runner = Arc::new(OnnxEncoder::load(spec, dir, None, metrics)?).runner(&cpu())?;
    Ok((runner, tally))
}

fn uncounted() -> Metrics {
    tally(&KindSpec::OnnxEncoder(spec(
        ids_spec(),
        embedding_spec(DataType::Fp32),
    )))
    .0
}

pub(super) fn input(datatype: DataType, shape: Vec<i64>, data: &[u8]) -> Input<'_> {
    Input {
        datatype,
        shape,
        data: Cow::Borrowed(data),
    }
}

pub(super) fn request(
    datatype: DataType,
    shape: Vec<i64>,
    data: &[u8],
) -> Result<Request<'_>, RequestError> {
    Ok(input(datatype, shape, data).into())
}

pub(super) fn fp32(output: &BatchOutput, index: usize) -> Vec<f32> {
    output.values::<f32>(index).unwrap()
}

pub(super) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn text_batches_of_several_requests_match_the_reference() {
    for variant in ["quick_gelu", "gelu"] {
        let (dir, _) = exported(variant, true);
        let (mut runner, tally) =
            counted_runner(spec(ids_spec(), embedding_spec(DataType::Fp32)), dir.path()).unwrap();
        let (ids, shape) = input_ids();
        let row = 77 * 8;
        let want = reference(variant, "text_features");
        // Requests of 1, 2, 4 rows (all 7 reference rows) in one batch, with bad ones between.
        let wrong_width = vec![0u8; 76 * 8];
        let batch = vec![
            request(DataType::Int64, vec![1, 77], &ids[..row]),
            request(DataType::Fp32, vec![1, 77], &ids[..row]),
            request(DataType::Int64, vec![2, 77], &ids[row..3 * row]),
            request(DataType::Int64, vec![1, 76], &wrong_width),
            Err(RequestError::invalid("input 'INPUT_IDS' is missing")),
            request(DataType::Int64, vec![2, 77], &ids[3 * row..4 * row]),
            request(DataType::Int64, vec![4, 77], &ids[3 * row..]),
            request(DataType::Int64, vec![0, 77], &[]),
        ];
        assert_eq!(shape, [7, 77]);
        let results = runner.execute(&batch);
        assert_eq!(results.requests.len(), batch.len());
        assert_eq!(results.names(), [tensor::EMBEDDING]);
        for (index, rows) in [(0, 0..1), (2, 1..3), (6, 3..7)] {
            assert_eq!(results.shape(index), vec![rows.len() as i64, 24]);
            let diff = max_diff(
                &fp32(&results, index),
                &want[rows.start * 24..rows.end * 24],
            );
            assert!(diff <= TOLERANCE, "{variant} request {index}: {diff}");
        }
        let wrong_type = results.response(1).unwrap_err();
        assert_eq!(wrong_type.kind, ErrorKind::InvalidArg);
        assert_eq!(
            wrong_type.message,
            "input 'INPUT_IDS' must be INT64, got FP32"
        );
        let wrong_shape = results.response(3).unwrap_err();
        assert!(
            wrong_shape
                .message
                .contains("shape [batch, 77], got [1, 76]"),
            "{wrong_shape}"
        );
        assert_eq!(
            results.response(4).unwrap_err().message,
            "input 'INPUT_IDS' is missing"
        );
        let short = results.response(5).unwrap_err();
        assert!(short.message.contains("holds 616 bytes"), "{short}");
        assert_eq!(results.shape(7), vec![0, 24]);
        // One session run for the 7 good rows; each bad request counted once.
        assert_eq!(
            tally.counts(),
            expect(&[
                ("clip_encoder_session_runs_total", 1.0),
                ("clip_encoder_rows_total", 7.0),
                ("clip_rejected_total{reason=\"invalid_request\"}", 4.0),
            ])
        );
    }
}

#[test]
fn image_batches_match_the_reference() {
    let (dir, _) = exported("quick_gelu", false);
    let mut runner = runner(
        spec(pixels_spec(DataType::Fp32), embedding_spec(DataType::Fp32)),
        dir.path(),
    )
    .unwrap();
    let pixels = pixels_f32();
    let image = 3 * 224 * 224 * 4;
    let want = reference("quick_gelu", "image_features");
    let batch = vec![
        request(DataType::Fp32, vec![2, 3, 224, 224], &pixels[..2 * image]),
        request(DataType::Fp32, vec![1, 3, 224, 224, 1], &pixels[..image]),
        request(DataType::Fp32, vec![3, 3, 224, 224], &pixels[2 * image..]),
    ];
    let results = runner.execute(&batch);
    assert!(max_diff(&fp32(&results, 0), &want[..48]) <= TOLERANCE);
    assert!(results
        .response(1)
        .unwrap_err()
        .message
        .contains("[batch, 3, 224, 224]"));
    assert!(max_diff(&fp32(&results, 2), &want[48..]) <= TOLERANCE);
    // One request alone gives what it gave inside the batch.
    let alone = runner.execute(&batch[2..]);
    assert!(max_diff(&fp32(&alone, 0), &fp32(&results, 2)) <= 1e-6);
}

/// The visual model with FP16 pixels in and an FP16 embedding out, by
/// casts around the exported FP32 graph.
fn half_precision_io(model: &OnnxModel) -> Vec<u8> {
    let mut proto = model.decode().unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let retype = |info: &mut clip_export::proto::ValueInfoProto| {
        if let Some(type_proto::Value::TensorType(t)) =
            info.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.elem_type = Some(OnnxType::Float16 as i32);
        }
    };
    let rename = |names: &mut Vec<String>, from: &str, to: &str| {
        for name in names.iter_mut().filter(|n| n.as_str() == from) {
            *name = to.to_string();
        }
    };
    for node in &mut graph.node {
        rename(&mut node.input, tensor::PIXEL_VALUES, "pixels_f32");
        rename(&mut node.output, tensor::EMBEDDING, "embedding_f32");
    }
    let cast = |from: &str, to: &str, elem: OnnxType| NodeProto {
        input: vec![from.into()],
        output: vec![to.into()],
        name: Some(format!("cast_{to}")),
        op_type: Some("Cast".into()),
        attribute: vec![AttributeProto {
            name: Some("to".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(elem as i64),
            ..Default::default()
        }],
        ..Default::default()
    };
    graph
        .node
        .insert(0, cast(tensor::PIXEL_VALUES, "pixels_f32", OnnxType::Float));
    graph
        .node
        .push(cast("embedding_f32", tensor::EMBEDDING, OnnxType::Float16));
    retype(&mut graph.input[0]);
    retype(&mut graph.output[0]);
    proto.encode_to_vec()
}

#[test]
fn half_precision_pixels_and_embeddings() {
    let (dir, model) = exported("gelu", false);
    std::fs::write(
        dir.path().join(clip_contract::file::ONNX_MODEL),
        half_precision_io(&model),
    )
    .unwrap();
    // The FP32 config no longer fits the model.
    let refused = runner(
        spec(pixels_spec(DataType::Fp32), embedding_spec(DataType::Fp32)),
        dir.path(),
    )
    .err()
    .unwrap();
    assert!(
        refused
            .contains("config.pbtxt says TYPE_FP32 [batch, 3, 224, 224], model.onnx says FLOAT16"),
        "{refused}"
    );
    let mut runner = runner(
        spec(pixels_spec(DataType::Fp16), embedding_spec(DataType::Fp16)),
        dir.path(),
    )
    .unwrap();
    let (pixels, _) = pixels_f16();
    let results = runner.execute(&[
        request(DataType::Fp16, vec![5, 3, 224, 224], &pixels),
        request(
            DataType::Fp32,
            vec![1, 3, 224, 224],
            &pixels[..3 * 224 * 224 * 4],
        ),
    ]);
    let got = results.values::<f16>(0).unwrap();
    let got: Vec<f32> = got.iter().map(|v| v.to_f32()).collect();
    let want = reference("gelu", "image_features");
    // The fixture pixels are FP16 already; only the output is rounded.
    assert!(max_diff(&got, &want) <= 4e-3, "{}", max_diff(&got, &want));
    assert!(results
        .response(1)
        .unwrap_err()
        .message
        .contains("must be FP16"));
}

#[test]
fn an_onnx_runtime_failure_fails_the_batch_with_its_message() {
    let (dir, _) = exported("quick_gelu", true);
    let (mut runner, tally) =
        counted_runner(spec(ids_spec(), embedding_spec(DataType::Fp32)), dir.path()).unwrap();
    let (ids, _) = input_ids();
    let mut out_of_vocabulary = ids[..77 * 8].to_vec();
    out_of_vocabulary[8..16].copy_from_slice(&1_000_000_000i64.to_le_bytes());
    let results = runner.execute(&[
        request(DataType::Int64, vec![1, 77], &ids[..77 * 8]),
        request(DataType::Int64, vec![1, 77], &out_of_vocabulary),
        request(DataType::Int64, vec![1, 70], &ids[..70 * 8]),
    ]);
    for index in 0..2 {
        let error = results.response(index).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(
            error
                .message
                .starts_with("ONNX Runtime failed on this batch: ")
                && error.message.contains("Gather"),
            "{error}"
        );
    }
    assert_eq!(results.response(2).unwrap_err().kind, ErrorKind::InvalidArg);
    // The session keeps working.
    let again = runner.execute(&[request(DataType::Int64, vec![1, 77], &ids[..77 * 8])]);
    assert!(again.response(0).is_ok());
    // The failed run took time too; only the rows returned count as encoded.
    assert_eq!(
        tally.counts(),
        expect(&[
            ("clip_encoder_session_runs_total", 2.0),
            ("clip_encoder_rows_total", 1.0),
            ("clip_rejected_total{reason=\"invalid_request\"}", 1.0),
        ])
    );
}

/// With the vocabulary size known, an id outside it fails its own request
/// as the client's error, naming the element, the id and the limit; the
/// requests around it run. Negative ids are refused with or without it.
#[test]
fn token_ids_outside_the_vocabulary_fail_their_request_alone() {
    let (dir, _) = exported("quick_gelu", true);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(tiny().join("quick_gelu/config.json")).unwrap(),
    )
    .unwrap();
    let vocab_size = config["text_config"]["vocab_size"].as_u64().unwrap();
    let mut with_vocab = spec(ids_spec(), embedding_spec(DataType::Fp32));
    with_vocab.vocab_size = Some(vocab_size);
    let (mut runner, tally) = counted_runner(with_vocab, dir.path()).unwrap();
    let (ids, _) = input_ids();
    let row = 77 * 8;
    let with_id = |rows: &[u8], at: usize, id: i64| {
        let mut rows = rows.to_vec();
        rows[at * 8..at * 8 + 8].copy_from_slice(&id.to_le_bytes());
        rows
    };
    let too_large = with_id(&ids[..2 * row], 77 + 3, vocab_size as i64);
    let negative = with_id(&ids[..row], 5, -1);
    let batch = vec![
        request(DataType::Int64, vec![1, 77], &ids[..row]),
        request(DataType::Int64, vec![2, 77], &too_large),
        request(DataType::Int64, vec![1, 77], &negative),
        request(DataType::Int64, vec![2, 77], &ids[row..3 * row]),
    ];
    let results = runner.execute(&batch);
    let want = reference("quick_gelu", "text_features");
    assert!(max_diff(&fp32(&results, 0), &want[..24]) <= TOLERANCE);
    assert!(max_diff(&fp32(&results, 3), &want[24..72]) <= TOLERANCE);
    let too_large = results.response(1).unwrap_err();
    assert_eq!(too_large.kind, ErrorKind::InvalidArg);
    assert_eq!(
        too_large.message,
        format!(
            "INPUT_IDS element 1: token id {vocab_size} is outside the vocabulary (ids must be in 0..{vocab_size})"
        )
    );
    let negative = results.response(2).unwrap_err();
    assert_eq!(negative.kind, ErrorKind::InvalidArg);
    assert!(
        negative
            .message
            .starts_with("INPUT_IDS element 0: token id -1 is outside the vocabulary"),
        "{negative}"
    );
    assert_eq!(
        tally.counts(),
        expect(&[
            ("clip_encoder_session_runs_total", 1.0),
            ("clip_encoder_rows_total", 3.0),
            ("clip_rejected_total{reason=\"token_id_out_of_range\"}", 2.0),
        ])
    );

    // Without the parameter, negative ids are still refused.
    let mut runner = runner_without_vocab(dir.path());
    let results = runner.execute(&batch[2..3]);
    assert!(
        results
            .response(0)
            .unwrap_err()
            .message
            .contains("ids must be 0 or more"),
        "{:?}",
        results.response(0)
    );
}

fn runner_without_vocab(dir: &Path) -> Box<dyn Runner> {
    runner(spec(ids_spec(), embedding_spec(DataType::Fp32)), dir).unwrap()
}

#[test]
fn a_config_that_disagrees_with_the_onnx_fails_the_load_naming_both() {
    let (text, _) = exported("quick_gelu", true);
    let (image, _) = exported("quick_gelu", false);
    let cases = [
        (
            text.path(),
            spec(
                TensorSpec { dims: vec![64], ..ids_spec() },
                embedding_spec(DataType::Fp32),
            ),
            "input 'INPUT_IDS': config.pbtxt says TYPE_INT64 [batch, 64], model.onnx says INT64 [?, 77] (the dims differ)",
        ),
        (
            image.path(),
            spec(
                TensorSpec { dims: vec![3, 256, 256], ..pixels_spec(DataType::Fp32) },
                embedding_spec(DataType::Fp32),
            ),
            "config.pbtxt says TYPE_FP32 [batch, 3, 256, 256], model.onnx says FLOAT32 [?, 3, 224, 224]",
        ),
        (
            image.path(),
            spec(pixels_spec(DataType::Fp32), TensorSpec { dims: vec![512], ..embedding_spec(DataType::Fp32) }),
            "output 'EMBEDDING': config.pbtxt says TYPE_FP32 [batch, 512]",
        ),
        (
            image.path(),
            spec(ids_spec(), embedding_spec(DataType::Fp32)),
            "config.pbtxt has the inputs [\"INPUT_IDS\"], model.onnx has inputs [\"PIXEL_VALUES\"]",
        ),
    ];
    for (dir, spec, says) in cases {
        let message = runner(spec, dir).err().expect("load fails");
        assert!(message.contains(says), "{message:?} lacks {says:?}");
    }
    let missing = OnnxEncoder::load(
        spec(ids_spec(), embedding_spec(DataType::Fp32)),
        Path::new("/nonexistent"),
        None,
        uncounted(),
    )
    .err()
    .unwrap();
    assert!(
        missing.contains("no ONNX model at /nonexistent/model.onnx"),
        "{missing}"
    );
}

#[test]
fn signature_checks() {
    let declared = |name: &str, element, dims: &[i64]| Declared {
        name: name.into(),
        element: Some(element),
        dims: dims.to_vec(),
    };
    let ids = declared(tensor::INPUT_IDS, TensorElementType::Int64, &[-1, 77]);
    let out = declared(tensor::EMBEDDING, TensorElementType::Float32, &[-1, 24]);
    let embedding = embedding_spec(DataType::Fp32);
    let one = |d: &Declared| vec![d.clone()];
    assert!(check_signature(&[ids_spec()], &embedding, &one(&ids), &one(&out)).is_ok());
    // Extra outputs are computed and ignored.
    let pooled = declared("pooled", TensorElementType::Float32, &[-1, 32]);
    assert!(check_signature(
        &[ids_spec()],
        &embedding,
        &one(&ids),
        &[pooled.clone(), out.clone()]
    )
    .is_ok());

    let fixed_batch = declared(tensor::INPUT_IDS, TensorElementType::Int64, &[1, 77]);
    let int32 = declared(tensor::INPUT_IDS, TensorElementType::Int32, &[-1, 77]);
    let flat = declared(tensor::INPUT_IDS, TensorElementType::Int64, &[-1]);
    let cases = [
        (
            vec![fixed_batch],
            vec![out.clone()],
            "the batch axis of model.onnx must be dynamic",
        ),
        (
            vec![int32],
            vec![out.clone()],
            "model.onnx says INT32 [?, 77] (the data types differ)",
        ),
        (vec![flat], vec![out.clone()], "(the ranks differ)"),
        (
            vec![ids.clone(), ids.clone()],
            vec![out.clone()],
            "model.onnx has inputs",
        ),
        (
            vec![ids.clone()],
            vec![pooled],
            "config.pbtxt has the output 'EMBEDDING', model.onnx has outputs [\"pooled\"]",
        ),
    ];
    for (inputs, outputs, says) in cases {
        let message = check_signature(&[ids_spec()], &embedding, &inputs, &outputs).unwrap_err();
        assert!(message.contains(says), "{message:?} lacks {says:?}");
    }
}

#[test]
fn gpu_instances_need_the_cuda_provider() {
    let library = Path::new("/opt/ort/libonnxruntime.so");
    assert_eq!(provider_for(Device::Cpu, false, library), Ok(Provider::Cpu));
    assert_eq!(provider_for(Device::Cpu, true, library), Ok(Provider::Cpu));
    assert_eq!(
        provider_for(Device::Gpu(1), true, library),
        Ok(Provider::Cuda { device_id: 1 })
    );
    let refused = provider_for(Device::Gpu(1), false, library).unwrap_err();
    assert!(refused.contains("KIND_GPU (device 1)"), "{refused}");
    assert!(
        refused.contains("/opt/ort/libonnxruntime.so has no CUDA execution provider"),
        "{refused}"
    );

    // The installed CPU build really lacks CUDA: a KIND_GPU instance fails to load.
    let (dir, _) = exported("quick_gelu", true);
    let kind = Arc::new(
        OnnxEncoder::load(
            spec(ids_spec(), embedding_spec(DataType::Fp32)),
            dir.path(),
            None,
            uncounted(),
        )
        .unwrap(),
    );
    let gpu = Instance {
        name: "gpu_0".into(),
        device: Device::Gpu(0),
    };
    let refused = kind.runner(&gpu).err().expect("no CUDA in the CPU build");
    assert!(
        refused.contains("has no CUDA execution provider"),
        "{refused}"
    );
}

#[test]
fn threads_default_to_the_cores_split_across_instances() {
    let mut spec = spec(ids_spec(), embedding_spec(DataType::Fp32));
    spec.intra_op_threads = None;
    spec.instance_count = 3;
    assert_eq!(threads(&spec, 16), (5, 1));
    assert_eq!(threads(&spec, 2), (1, 1));
    spec.intra_op_threads = Some(4);
    spec.inter_op_threads = Some(2);
    assert_eq!(threads(&spec, 16), (4, 2));
}

#[test]
fn the_library_comes_from_the_parameter_or_the_environment() {
    let version_dir = Path::new("/models/enc/1");
    let none = library_path(None, None, version_dir).unwrap_err();
    assert!(
        none.contains("'ort_library'") && none.contains(ORT_DYLIB_ENV),
        "{none}"
    );
    assert!(none.contains("scripts/install-onnxruntime.sh"), "{none}");

    let missing = library_path(
        Some(Path::new("/nowhere/libonnxruntime.so")),
        None,
        version_dir,
    )
    .unwrap_err();
    assert!(
        missing.contains(
            "parameter 'ort_library' names /nowhere/libonnxruntime.so, which is not a file"
        ),
        "{missing}"
    );
    assert!(
        missing.contains("scripts/install-onnxruntime.sh"),
        "{missing}"
    );
    let relative = library_path(Some(Path::new("lib/ort.so")), None, version_dir).unwrap_err();
    assert!(relative.contains("/models/enc/1/lib/ort.so"), "{relative}");

    let real = ort_library();
    assert_eq!(
        library_path(None, Some(real.into()), version_dir).unwrap(),
        real
    );
    // The parameter wins over the environment; an empty variable is unset.
    assert_eq!(
        library_path(Some(real), Some("/nowhere".into()), version_dir).unwrap(),
        real
    );
    assert!(library_path(None, Some("".into()), version_dir).is_err());
}

#[test]
fn one_library_per_process() {
    runtime(ort_library(), None).unwrap();
    let other = std::env::current_exe().unwrap();
    let refused = runtime(&other, None).err().unwrap();
    assert!(refused.contains("already loaded from"), "{refused}");
    assert!(refused.contains(&other.display().to_string()), "{refused}");
    // A symlink to the same file is the same library.
    let link_dir = tempfile::tempdir().unwrap();
    let link = link_dir.path().join("libonnxruntime.so");
    std::os::unix::fs::symlink(ort_library(), &link).unwrap();
    assert!(runtime(&link, None).is_ok());
}

#[test]
fn an_unloadable_library_is_a_clear_error() {
    // Runs before or after the real library is loaded; either way it names the file.
    let not_a_library = tempfile::NamedTempFile::new().unwrap();
    let message = runtime(not_a_library.path(), None).err().unwrap();
    assert!(
        message.contains(&not_a_library.path().display().to_string()),
        "{message}"
    );
}
