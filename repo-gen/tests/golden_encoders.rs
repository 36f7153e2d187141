//! The encoder and ensemble configs of each runtime, compared byte for byte
//! with committed golden files (`REPO_GEN_BLESS=1` rewrites them; review the diff).

mod common;

use clip_contract::{model, tensor};
use common::golden;
use repo_gen::encoder::EnsembleStep;
use repo_gen::registry::VOCAB_SIZE;
use repo_gen::{
    Batching, DataType, DynamicBatching, EncoderModel, EnsembleModel, Facts, InstanceGroup,
    InstanceKind, RenderError, Runtime, TensorSpec, Tower,
};

fn facts() -> Facts {
    Facts {
        model_name: "ViT-B-32::openai".into(),
        embedding_dim: 512,
        image_size: 224,
        context_length: 77,
        logit_scale: Some(4.6052),
    }
}

fn batching() -> Batching {
    Batching {
        max_batch_size: 64,
        dynamic: Some(DynamicBatching {
            preferred_batch_sizes: vec![16, 32],
            max_queue_delay_us: Some(2000),
        }),
    }
}

fn gpu(count: u32, index: u32) -> InstanceGroup {
    InstanceGroup {
        count,
        kind: InstanceKind::Gpu,
        gpus: vec![index],
    }
}

fn text_encoder(runtime: Runtime) -> EncoderModel {
    EncoderModel {
        name: model::TEXT_ENCODER.into(),
        tower: Tower::Text,
        runtime,
        batching: batching(),
        instance_groups: vec![InstanceGroup::cpu(2)],
        inputs: vec![TensorSpec::new(
            tensor::INPUT_IDS,
            DataType::Int64,
            vec![77],
        )],
        outputs: vec![TensorSpec::new(
            tensor::EMBEDDING,
            DataType::Fp32,
            vec![512],
        )],
        facts: facts(),
        half_precision: false,
        trt_accelerator: false,
        ort_library: None,
        intra_op_threads: None,
        inter_op_threads: None,
        vocab_size: Some(VOCAB_SIZE),
        warmup: true,
        response_cache: false,
        extra_parameters: Vec::new(),
    }
}

fn image_encoder(runtime: Runtime) -> EncoderModel {
    EncoderModel {
        name: model::IMAGE_ENCODER.into(),
        tower: Tower::Image,
        inputs: vec![TensorSpec::new(
            tensor::PIXEL_VALUES,
            DataType::Fp32,
            vec![3, 224, 224],
        )],
        instance_groups: vec![gpu(2, 0), gpu(2, 1), gpu(1, 2)],
        vocab_size: None,
        warmup: true,
        ..text_encoder(runtime)
    }
}

#[test]
fn golden_ort_encoders() {
    let mut text = text_encoder(Runtime::Ort);
    text.ort_library = Some("/opt/onnxruntime/lib/libonnxruntime.so".into());
    text.intra_op_threads = Some(4);
    text.inter_op_threads = Some(1);
    text.response_cache = true;
    golden("text_encoder_ort.pbtxt", &text.render().unwrap());
    golden(
        "image_encoder_ort_gpus.pbtxt",
        &image_encoder(Runtime::Ort).render().unwrap(),
    );
}

#[test]
fn golden_onnxruntime_encoders() {
    golden(
        "text_encoder_onnxruntime.pbtxt",
        &text_encoder(Runtime::OnnxRuntime).render().unwrap(),
    );
    let mut image = image_encoder(Runtime::OnnxRuntime);
    image.trt_accelerator = true;
    image.half_precision = true;
    golden(
        "image_encoder_onnxruntime_trt_fp16.pbtxt",
        &image.render().unwrap(),
    );
}

#[test]
fn golden_tensorrt_encoders() {
    let mut text = text_encoder(Runtime::TensorRt);
    text.instance_groups = vec![InstanceGroup {
        count: 1,
        kind: InstanceKind::Gpu,
        gpus: Vec::new(),
    }];
    text.batching.dynamic = None;
    golden("text_encoder_tensorrt.pbtxt", &text.render().unwrap());
    golden(
        "image_encoder_tensorrt.pbtxt",
        &image_encoder(Runtime::TensorRt).render().unwrap(),
    );
}

fn ensemble(prefix: &str) -> EnsembleModel {
    EnsembleModel {
        name: format!("{prefix}{}", model::IMAGE_ENSEMBLE),
        tower: Tower::Image,
        max_batch_size: 64,
        input: TensorSpec::new(tensor::IMAGE, DataType::Bytes, vec![1]),
        output: TensorSpec::new(tensor::EMBEDDING, DataType::Fp32, vec![512]),
        steps: vec![
            EnsembleStep {
                model_name: format!("{prefix}{}", model::IMAGE_PREPROCESS),
                input_map: vec![(tensor::IMAGE.into(), tensor::IMAGE.into())],
                output_map: vec![(tensor::PIXEL_VALUES.into(), tensor::PIXEL_VALUES.into())],
            },
            EnsembleStep {
                model_name: format!("{prefix}{}", model::IMAGE_ENCODER),
                input_map: vec![(tensor::PIXEL_VALUES.into(), tensor::PIXEL_VALUES.into())],
                output_map: vec![(tensor::EMBEDDING.into(), tensor::EMBEDDING.into())],
            },
        ],
        facts: facts(),
        response_cache: true,
        extra_parameters: Vec::new(),
    }
}

#[test]
fn golden_ensemble_with_prefix() {
    golden(
        "image_ensemble_prefixed.pbtxt",
        &ensemble("b32_").render().unwrap(),
    );
}

#[test]
fn encoder_settings_that_cannot_work_are_refused() {
    let mut cpu_plan = text_encoder(Runtime::TensorRt);
    cpu_plan.instance_groups = vec![InstanceGroup::cpu(1)];
    assert!(cpu_plan.render().unwrap_err().to_string().contains("GPU"));

    let mut accelerator = text_encoder(Runtime::Ort);
    accelerator.trt_accelerator = true;
    assert!(accelerator
        .render()
        .unwrap_err()
        .to_string()
        .contains("onnxruntime"));

    let mut image_vocabulary = image_encoder(Runtime::Ort);
    image_vocabulary.vocab_size = Some(VOCAB_SIZE);
    assert!(image_vocabulary
        .render()
        .unwrap_err()
        .to_string()
        .contains("vocab_size belongs to a text encoder"));
    let mut no_vocabulary = text_encoder(Runtime::Ort);
    no_vocabulary.vocab_size = Some(0);
    assert!(no_vocabulary
        .render()
        .unwrap_err()
        .to_string()
        .contains("vocab_size must be at least 1"));

    let mut escaping = text_encoder(Runtime::Ort);
    escaping.name = "../clip_text_encoder".into();
    assert!(matches!(
        escaping.render(),
        Err(RenderError::InvalidName { .. })
    ));

    let mut bad_step = ensemble("");
    bad_step.steps[1].model_name = "a/b".into();
    assert!(matches!(
        bad_step.render(),
        Err(RenderError::InvalidName { .. })
    ));
}
