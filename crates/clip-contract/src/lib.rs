//! The one place where model names, tensor names, config parameter keys and
//! Triton's data types are spelled. repo-gen writes them, the backend reads
//! them, the client sends them; none of the three spells them again.

mod datatype;
pub mod probes;

pub use datatype::{DataType, TensorSpec};

/// Triton backend name: the server looks for `backends/clip/libtriton_clip.so`.
pub const BACKEND_NAME: &str = "clip";

/// Tensor names, as they appear in config.pbtxt and on the wire.
pub mod tensor {
    /// Raw UTF-8 sentences, TYPE_STRING, dims [1].
    pub const TEXT: &str = "TEXT";
    /// Token ids, TYPE_INT64 or TYPE_INT32 (as the text encoder takes them),
    /// dims [context_length].
    pub const INPUT_IDS: &str = "INPUT_IDS";
    /// 1 for each real token of [`INPUT_IDS`], 0 for padding; same type and
    /// dims. Only for text encoders that take it (two-input towers).
    pub const ATTENTION_MASK: &str = "ATTENTION_MASK";
    /// Encoded image file bytes, TYPE_STRING, dims [1].
    pub const IMAGE: &str = "IMAGE";
    /// Normalised pixels, TYPE_FP32 or TYPE_FP16, dims [3, S, S].
    pub const PIXEL_VALUES: &str = "PIXEL_VALUES";
    /// Decoded, resized and center-cropped RGB pixels, TYPE_UINT8, dims
    /// [S, S, 3] (HWC, as a decoded image is laid out): the pixel path's input.
    pub const PIXELS: &str = "PIXELS";
    /// Embedding vector, TYPE_FP32, dims [D].
    pub const EMBEDDING: &str = "EMBEDDING";

    /// Whether an encoder's tensor `name` plays the part of `contract` (one
    /// of the names above). Encoder configs name tensors as their ONNX file
    /// does, and files from elsewhere spell them in lower case
    /// (CLIP-as-service's `input_ids`, `attention_mask`, `pixel_values`).
    pub fn plays(name: &str, contract: &str) -> bool {
        name.eq_ignore_ascii_case(contract)
    }
}

/// Model names in a generated repository (before any `--name-prefix`).
pub mod model {
    pub const TEXT_PREPROCESS: &str = "clip_text_preprocess";
    pub const IMAGE_PREPROCESS: &str = "clip_image_preprocess";
    pub const TEXT_ENCODER: &str = "clip_text_encoder";
    pub const IMAGE_ENCODER: &str = "clip_image_encoder";
    pub const TEXT_ENSEMBLE: &str = "clip_text";
    pub const IMAGE_ENSEMBLE: &str = "clip_image";
    /// The pixel path (`repo-gen --pixel-path`): the image encoder with
    /// normalisation and the HWC to CHW transpose in its graph, for clients
    /// that decode and crop images themselves; no preprocessing step.
    pub const IMAGE_PIXELS: &str = "clip_image_pixels";
    /// Also with `--pixel-path`: decoded RGB images of any size (`PIXELS`,
    /// UINT8 `[H, W, 3]`) resized, cropped and normalised on the server,
    /// then the image encoder.
    pub const DECODED_PREPROCESS: &str = "clip_decoded_preprocess";
    pub const DECODED_ENSEMBLE: &str = "clip_image_decoded";
}

/// Values of the `kind` parameter: what a `clip` backend model does.
pub mod kind {
    pub const TEXT_PREPROCESS: &str = "text_preprocess";
    pub const IMAGE_PREPROCESS: &str = "image_preprocess";
    /// An ONNX encoder (`model.onnx` in the version folder) run through ONNX Runtime.
    pub const ONNX_ENCODER: &str = "onnx_encoder";
}

/// Values of the `tokenizer_family` parameter.
pub mod tokenizer_family {
    /// open_clip's exact cleaning and byte-level BPE (the default).
    pub const CLIP_BPE: &str = "clip_bpe";
    /// The tokenizer.json as its model card defines it, special tokens included (XLM-R, LaBSE).
    pub const HF: &str = "hf";
    pub const ALL: [&str; 2] = [CLIP_BPE, HF];
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
    /// Which tokenizer a `text_preprocess` model runs: a [`crate::tokenizer_family`] value.
    pub const TOKENIZER_FAMILY: &str = "tokenizer_family";
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
    /// Whose center crop: `transformers` (a half-pixel offset floored, the
    /// default) or `torchvision` (rounded half to even, as open_clip's and
    /// CLIP-as-service's transforms do).
    pub const CENTER_CROP: &str = "center_crop";
    /// Path of `libonnxruntime.so` for `onnx_encoder` models (else `ORT_DYLIB_PATH`).
    pub const ORT_LIBRARY: &str = "ort_library";
    /// ONNX Runtime thread counts per instance (default: cores / instances, and 1).
    pub const INTRA_OP_THREADS: &str = "intra_op_threads";
    pub const INTER_OP_THREADS: &str = "inter_op_threads";
    /// `true` lets ONNX Runtime's idle threads spin-wait for the next piece
    /// of work (default `false`: on a CPU shared with preprocessing, or
    /// beside a GPU, the spinning burns the cores the rest of the server needs).
    pub const ALLOW_SPINNING: &str = "allow_spinning";
    /// Rows of a text encoder's token embedding: `onnx_encoder` refuses a
    /// request holding an id outside `0..vocab_size` before running the batch.
    pub const VOCAB_SIZE: &str = "vocab_size";
    /// Facts every generated model carries so clients can discover them.
    pub const MODEL_NAME: &str = "model_name";
    pub const EMBEDDING_DIM: &str = "embedding_dim";
    pub const LOGIT_SCALE: &str = "logit_scale";
    /// Ensembles: [`crate::probes::fingerprint`] of the probe set, and each
    /// probe's embedding as repo-gen's ONNX Runtime run gave it (little-endian
    /// f32 `[probes, embedding_dim]`, base64).
    pub const PROBE_SET: &str = "probe_set";
    pub const PROBE_EMBEDDINGS: &str = "probe_embeddings";
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

/// The backend's own Prometheus metrics on Triton's `/metrics`: every one a
/// counter with a `model` label, some split by one more label whose values
/// are the bounded sets below (never anything a request carries).
pub mod metric {
    /// Images decoded, by `format`.
    pub const IMAGES_DECODED: &str = "clip_images_decoded_total";
    /// Encoded bytes of the images decoded, by `format`.
    pub const IMAGE_DECODED_BYTES: &str = "clip_image_decoded_bytes_total";
    /// JPEGs decoded at a reduced DCT scale, by `scale`.
    pub const IMAGE_REDUCED_SCALE_DECODES: &str = "clip_image_reduced_scale_decodes_total";
    /// Time in decode, resize and normalize, and the images it covers
    /// (failed ones included): the sum and count of a summary.
    pub const IMAGE_PREPROCESS_SECONDS: &str = "clip_image_preprocess_seconds_total";
    pub const IMAGE_PREPROCESS: &str = "clip_image_preprocess_total";
    pub const TEXTS_TOKENIZED: &str = "clip_texts_tokenized_total";
    /// Texts longer than the context, cut to fit it.
    pub const TEXTS_TRUNCATED: &str = "clip_texts_truncated_total";
    /// Inputs refused, by `reason`: one per element, or one per request
    /// refused before its elements could be read.
    pub const REJECTED: &str = "clip_rejected_total";
    /// Time in ONNX Runtime's session run, and the runs it covers.
    pub const ENCODER_SESSION_SECONDS: &str = "clip_encoder_session_seconds_total";
    pub const ENCODER_SESSION_RUNS: &str = "clip_encoder_session_runs_total";
    /// Rows (embeddings) the encoder returned.
    pub const ENCODER_ROWS: &str = "clip_encoder_rows_total";

    /// Label names.
    pub mod label {
        pub const MODEL: &str = "model";
        pub const FORMAT: &str = "format";
        pub const SCALE: &str = "scale";
        pub const REASON: &str = "reason";
    }

    /// Values of the `format` label.
    pub mod format {
        pub const JPEG: &str = "jpeg";
        pub const PNG: &str = "png";
        pub const GIF: &str = "gif";
        pub const WEBP: &str = "webp";
        pub const BMP: &str = "bmp";
        pub const ALL: [&str; 5] = [JPEG, PNG, GIF, WEBP, BMP];
    }

    /// Values of the `scale` label: the DCT scale of a reduced-scale JPEG decode.
    pub mod scale {
        pub const HALF: &str = "1/2";
        pub const QUARTER: &str = "1/4";
        pub const EIGHTH: &str = "1/8";
        pub const ALL: [&str; 3] = [HALF, QUARTER, EIGHTH];
    }

    /// Values of the `reason` label.
    pub mod reason {
        /// The request's input is missing or malformed (data type, shape,
        /// BYTES framing): the whole request, counted once.
        pub const INVALID_REQUEST: &str = "invalid_request";
        /// An element over `max_image_bytes` or `max_text_bytes`.
        pub const TOO_LARGE: &str = "too_large";
        pub const EMPTY: &str = "empty";
        /// Magic bytes of no accepted image format.
        pub const UNSUPPORTED_FORMAT: &str = "unsupported_format";
        /// An accepted format using a feature the decoder lacks.
        pub const UNSUPPORTED_FEATURE: &str = "unsupported_feature";
        pub const TRUNCATED: &str = "truncated";
        pub const CORRUPT: &str = "corrupt";
        /// Over `max_pixels`, refused from the header.
        pub const TOO_MANY_PIXELS: &str = "too_many_pixels";
        pub const ZERO_SIZE: &str = "zero_size";
        pub const INVALID_UTF8: &str = "invalid_utf8";
        pub const TOKENIZER_ERROR: &str = "tokenizer_error";
        pub const TOKEN_ID_OUT_OF_RANGE: &str = "token_id_out_of_range";
        /// Our fault or the server's, not the input's.
        pub const INTERNAL: &str = "internal";
    }
}
