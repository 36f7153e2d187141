//! torch.save zip checkpoints read without Python: the same weights as the
//! safetensors file (exactly in f32, exactly rounded in f16/bf16), strided
//! views as torch reads them, and clear refusals
//! (tests/fixtures/torch-checkpoint, made by scripts/fixtures/torch_checkpoint.py).

use std::path::PathBuf;

use clip_export::{ClipArchitecture, ClipWeights, ExportError, TorchCheckpoint, TorchError};
use clip_test_support::fixture;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn path(name: &str) -> PathBuf {
    fixture("torch-checkpoint").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn arch() -> ClipArchitecture {
    let json = std::fs::read_to_string(path("open_clip_config.json")).unwrap();
    ClipArchitecture::from_config_json(&json).unwrap()
}

fn load(name: &str) -> ClipWeights {
    ClipWeights::load(path(name), &arch()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load_err(name: &str) -> (TorchError, String) {
    match ClipWeights::load(path(name), &arch()) {
        Err(e @ ExportError::TorchCheckpoint { .. }) => {
            let message = e.to_string();
            let ExportError::TorchCheckpoint { path: p, source } = e else {
                unreachable!()
            };
            assert_eq!(p, Some(path(name)), "the error names the file");
            (source, message)
        }
        other => panic!("{name}: expected a torch checkpoint error, got {other:?}"),
    }
}

/// The reference safetensors file with every tensor rounded to `dtype` the
/// way torch's `.half()` / `.bfloat16()` round (to nearest, ties to even).
fn reference_rounded_to(dtype: Dtype) -> Vec<u8> {
    let bytes = read("open_clip_model.safetensors");
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let rounded: Vec<(String, Vec<usize>, Vec<u8>)> = reference
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let data = view
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    match dtype {
                        Dtype::F16 => half::f16::from_f32(v).to_le_bytes(),
                        Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes(),
                        other => panic!("{other:?}"),
                    }
                })
                .collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views = rounded.iter().map(|(name, shape, data)| {
        (
            name.clone(),
            TensorView::new(dtype, shape.clone(), data).unwrap(),
        )
    });
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn f32_checkpoint_reads_exactly_the_safetensors_weights() {
    let from_torch = load("open_clip_pytorch_model.bin");
    let reference = load("open_clip_model.safetensors");
    assert_eq!(from_torch.layout, clip_export::WeightLayout::OpenClip);
    assert!(from_torch.logit_scale.is_some());
    assert_eq!(from_torch, reference);
}

#[test]
fn f16_checkpoint_nested_under_state_dict_with_module_prefix() {
    // {"epoch", "name", "state_dict": {"module.*": f16}, "optimizer": AdamW state}
    let from_torch = load("nested_f16.bin");
    let expected = ClipWeights::from_bytes(&reference_rounded_to(Dtype::F16), &arch()).unwrap();
    assert_eq!(from_torch, expected);
    // the weights are off the f16 grid, so the f32 comparison above is a real one
    assert_ne!(from_torch, load("open_clip_model.safetensors"));
}

#[test]
fn bf16_checkpoint_reads_the_weights_rounded_to_bf16() {
    let from_torch = load("bf16.bin");
    let expected = ClipWeights::from_bytes(&reference_rounded_to(Dtype::BF16), &arch()).unwrap();
    assert_eq!(from_torch, expected);
}

#[test]
fn strided_and_shared_views_read_as_torch_reads_them() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(path("views.json")).unwrap()).unwrap();
    let expected = expected.as_object().unwrap();
    // pickle protocol 2 (torch.save's default) and 4 (FRAME, MEMOIZE, STACK_GLOBAL)
    for file in ["views.bin", "views_protocol4.bin"] {
        let bytes = read(file);
        let checkpoint = TorchCheckpoint::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        views_match(&checkpoint, expected);
    }
}

fn views_match(checkpoint: &TorchCheckpoint, expected: &serde_json::Map<String, Value>) {
    let mut names: Vec<&str> = checkpoint.names().collect();
    names.sort_unstable();
    let mut wanted: Vec<&str> = expected.keys().map(String::as_str).collect();
    wanted.sort_unstable();
    assert_eq!(names, wanted);
    for (name, want) in expected {
        let tensor = checkpoint.get(name).unwrap();
        let numbers = |field: &str| -> Vec<f64> {
            let array = want[field].as_array().unwrap().iter();
            array.map(|v| v.as_f64().unwrap()).collect()
        };
        let shape: Vec<usize> = numbers("shape").iter().map(|&v| v as usize).collect();
        // f32 values printed by Python round-trip exactly through f64
        let values: Vec<f32> = numbers("values").iter().map(|&v| v as f32).collect();
        assert_eq!(tensor.shape(), shape, "{name}");
        assert_eq!(tensor.dtype(), want["dtype"].as_str().unwrap(), "{name}");
        assert_eq!(tensor.to_f32().unwrap(), values, "{name}");
    }
}

#[test]
fn legacy_format_is_refused() {
    for file in ["legacy.bin", "legacy_protocol4.bin"] {
        let (err, message) = load_err(file);
        assert!(matches!(err, TorchError::LegacyFormat), "{file}: {err:?}");
        assert!(message.contains(file) && message.contains("before torch 1.6"));
    }
}

#[test]
fn torchscript_archive_is_refused_with_a_pointer_to_safetensors() {
    let (err, message) = load_err("torchscript.pt");
    assert!(matches!(err, TorchError::TorchScript), "{err:?}");
    assert!(message.contains("safetensors"), "{message}");
}

#[test]
fn big_endian_checkpoint_is_refused() {
    let (err, _) = load_err("big_endian.bin");
    assert!(
        matches!(&err, TorchError::ByteOrder(order) if order == "big"),
        "{err:?}"
    );
}

#[test]
fn a_pickle_calling_anything_else_is_refused_by_name() {
    let (err, message) = load_err("foreign_global.bin");
    assert!(
        matches!(&err, TorchError::ForbiddenGlobal { name } if name == "posix.system"),
        "{err:?}"
    );
    assert!(message.contains("posix.system"), "{message}");
}

#[test]
fn storage_shorter_than_declared_is_refused() {
    let (err, message) = load_err("short_storage.bin");
    assert!(matches!(err, TorchError::Tensor { .. }), "{err:?}");
    assert!(message.contains("has 92 bytes"), "{message}");
}

#[test]
fn a_damaged_storage_fails_its_crc() {
    let mut bytes = read("open_clip_pytorch_model.bin");
    let middle = bytes.len() / 2; // inside the patch embedding's storage
    bytes[middle] ^= 0x10;
    let err = ClipWeights::from_bytes(&bytes, &arch()).unwrap_err();
    assert!(
        matches!(
            &err,
            ExportError::TorchCheckpoint { source: TorchError::Entry { message, .. }, .. }
                if message.contains("CRC-32")
        ),
        "{err}"
    );
}

#[test]
fn truncated_checkpoints_are_refused_without_panics() {
    let arch = arch();
    for (name, step) in [("views.bin", 1), ("open_clip_pytorch_model.bin", 997)] {
        let bytes = read(name);
        for len in (0..bytes.len()).step_by(step) {
            assert!(
                ClipWeights::from_bytes(&bytes[..len], &arch).is_err(),
                "{len} bytes of {name} read as weights"
            );
        }
    }
}

#[test]
fn any_single_damaged_byte_is_refused_or_harmless() {
    let bytes = read("views.bin");
    let original = TorchCheckpoint::parse(&bytes).unwrap();
    let values = |c: &TorchCheckpoint| -> Vec<(String, Vec<usize>, Vec<f32>)> {
        c.names()
            .map(|n| {
                let t = c.get(n).unwrap();
                (n.to_string(), t.shape().to_vec(), t.to_f32().unwrap())
            })
            .collect()
    };
    let expected = values(&original);
    let mut refused = 0;
    for pos in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[pos] ^= flip;
            match TorchCheckpoint::parse(&damaged) {
                Err(_) => refused += 1,
                // a byte nothing reads (a timestamp, the serialization id)
                Ok(c) => assert_eq!(values(&c), expected, "byte {pos} ^ {flip:#x}"),
            }
        }
    }
    assert!(
        refused > bytes.len(),
        "only {refused} damaged copies refused"
    );
}
