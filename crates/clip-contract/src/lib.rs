//! The one place where model names, tensor names, config parameter keys and
//! Triton's data types are spelled. repo-gen writes them, the backend reads
//! them, the client sends them; none of the three spells them again.

mod datatype;

pub use datatype::{DataType, TensorSpec};

/// Triton backend name: the server looks for `backends/clip/libtriton_clip.so`.
pub const BACKEND_NAME: &str = "clip";

/// Tensor names, as they appear in config.pbtxt and on the wire.
pub mod tensor {
    /// Raw UTF-8 sentences, TYPE_STRING, dims [1].
    pub const TEXT: &str = "TEXT";
    /// Token ids, TYPE_INT64, dims [context_length].
    pub const INPUT_IDS: &str = "INPUT_IDS";
    /// Encoded image file bytes, TYPE_STRING, dims [1].
    pub const IMAGE: &str = "IMAGE";
    /// Normalised pixels, TYPE_FP32 or TYPE_FP16, dims [3, S, S].
    pub const PIXEL_VALUES: &str = "PIXEL_VALUES";
    /// Embedding vector, TYPE_FP32, dims [D].
    pub const EMBEDDING: &str = "EMBEDDING";
}

/// Model names in a generated repository (before any `--name-prefix`).
pub mod model {
    pub const TEXT_PREPROCESS: &str = "clip_text_preprocess";
    pub const IMAGE_PREPROCESS: &str = "clip_image_preprocess";
    pub const TEXT_ENCODER: &str = "clip_text_encoder";
    pub const IMAGE_ENCODER: &str = "clip_image_encoder";
    pub const TEXT_ENSEMBLE: &str = "clip_text";
    pub const IMAGE_ENSEMBLE: &str = "clip_image";
}

/// Values of the `kind` parameter: what a `clip` backend model does.
pub mod kind {
    pub const TEXT_PREPROCESS: &str = "text_preprocess";
    pub const IMAGE_PREPROCESS: &str = "image_preprocess";
    /// An ONNX encoder (`model.onnx` in the version folder) run through ONNX Runtime.
    pub const ONNX_ENCODER: &str = "onnx_encoder";
}

/// Keys of `parameters { key: ... }` entries in config.pbtxt.
pub mod param {
    /// Which [`crate::kind`] a `clip` backend model runs.
    pub const KIND: &str = "kind";
    /// Tokenizer file name inside the model's version folder.
    pub const TOKENIZER_FILE: &str = "tokenizer_file";
    /// Token sequence length (77 for every published CLIP).
    pub const CONTEXT_LENGTH: &str = "context_length";
    /// Overrides the pad token id the tokenizer files declare.
    pub const PAD_TOKEN_ID: &str = "pad_token_id";
    /// Side of the square input image.
    pub const IMAGE_SIZE: &str = "image_size";
    /// Per-channel mean and std, three comma-separated floats each.
    pub const IMAGE_MEAN: &str = "image_mean";
    pub const IMAGE_STD: &str = "image_std";
    /// Largest image (width x height) the preprocessor decodes.
    pub const MAX_PIXELS: &str = "max_pixels";
    /// Largest element, in bytes, a preprocessing model takes; a request
    /// holding a larger one fails with INVALID_ARG before any work.
    pub const MAX_TEXT_BYTES: &str = "max_text_bytes";
    pub const MAX_IMAGE_BYTES: &str = "max_image_bytes";
    /// `true` lets JPEG decode at 1/2, 1/4 or 1/8 scale when the photo is large.
    pub const REDUCED_SCALE_DECODE: &str = "reduced_scale_decode";
    /// Path of `libonnxruntime.so` for `onnx_encoder` models (else `ORT_DYLIB_PATH`).
    pub const ORT_LIBRARY: &str = "ort_library";
    /// ONNX Runtime thread counts per instance (default: cores / instances, and 1).
    pub const INTRA_OP_THREADS: &str = "intra_op_threads";
    pub const INTER_OP_THREADS: &str = "inter_op_threads";
    /// Rows of a text encoder's token embedding: `onnx_encoder` refuses a
    /// request holding an id outside `0..vocab_size` before running the batch.
    pub const VOCAB_SIZE: &str = "vocab_size";
    /// Facts every generated model carries so clients can discover them.
    pub const MODEL_NAME: &str = "model_name";
    pub const EMBEDDING_DIM: &str = "embedding_dim";
    pub const LOGIT_SCALE: &str = "logit_scale";
}

/// File names inside a model's version folder, and of ONNX folders repo-gen reads.
pub mod file {
    /// The ONNX model an `onnx_encoder` or `onnxruntime_onnx` model loads.
    pub const ONNX_MODEL: &str = "model.onnx";
    /// The serialized TensorRT engine a `tensorrt_plan` model loads.
    pub const PLAN_MODEL: &str = "model.plan";
    /// CLIP-as-service's ONNX folder layout (`--onnx-dir`).
    pub const TEXTUAL_ONNX: &str = "textual.onnx";
    pub const VISUAL_ONNX: &str = "visual.onnx";
    /// The trtexec commands repo-gen writes at the root of a `tensorrt` repository.
    pub const TRTEXEC_SCRIPT: &str = "build_tensorrt_plans.sh";
}

/// Triton's own names that generated configs use.
pub mod triton {
    pub const PLATFORM_ENSEMBLE: &str = "ensemble";
    pub const PLATFORM_ONNXRUNTIME: &str = "onnxruntime_onnx";
    pub const PLATFORM_TENSORRT: &str = "tensorrt_plan";
    /// The ONNX Runtime backend's TensorRT execution accelerator and its keys.
    pub const ACCELERATOR_TENSORRT: &str = "tensorrt";
    pub const ACCELERATOR_PRECISION_MODE: &str = "precision_mode";
    pub const ACCELERATOR_MAX_WORKSPACE: &str = "max_workspace_size_bytes";
}

/// Defaults every published CLIP shares.
pub mod defaults {
    pub const TOKENIZER_FILE: &str = "tokenizer.json";
    pub const CONTEXT_LENGTH: usize = 77;
    pub const IMAGE_SIZE: u32 = 224;
    /// OpenAI CLIP's normalisation constants (RGB).
    pub const IMAGE_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
    pub const IMAGE_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
    /// Decompression-bomb guard: 40 megapixels.
    pub const MAX_PIXELS: u64 = 40_000_000;
    /// 64 KiB of text: hundreds of times more than the 77 tokens a CLIP
    /// keeps, small enough that cleaning and tokenizing it stays in the
    /// milliseconds.
    pub const MAX_TEXT_BYTES: usize = 64 * 1024;
    /// 64 MiB per encoded image: a 40-megapixel JPEG or PNG fits.
    pub const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;
}
