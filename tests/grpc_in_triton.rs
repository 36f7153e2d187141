//! The same preprocessing models over Triton's gRPC API, through the
//! project's own tonic-generated client.

use clip_client::{f16_from_raw, f32_from_raw, i64_from_raw, Error, Triton};
use clip_contract::{defaults, kind, model, param, tensor};
use harness::fixtures::{image, library_pixels, sentences, tokenizer_dir};
use harness::grpc::bytes_request;
use harness::repository::{Repository, Serving};
use harness::server::Server;

const TEXT_MODEL: &str = model::TEXT_PREPROCESS;
const IMAGE_MODEL: &str = model::IMAGE_PREPROCESS;
const IMAGE_MODEL_FP16: &str = "clip_image_preprocess_fp16";

#[test]
fn grpc_batches_errors_and_config() {
    let repository = Repository::new();
    let serving = Serving::default();
    repository.add_text(TEXT_MODEL, &serving, &tokenizer_dir(), &[]);
    repository.add_image(IMAGE_MODEL, &serving, false, &[]);
    repository.add_image(IMAGE_MODEL_FP16, &serving, true, &[]);
    let server = Server::start(repository.path());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Triton::connect(&server.grpc_url)
            .await
            .expect("connect over gRPC");
        assert!(client.server_live().await.unwrap());
        for model in [TEXT_MODEL, IMAGE_MODEL, IMAGE_MODEL_FP16] {
            assert!(
                client.model_ready(model).await.unwrap(),
                "{model} not ready"
            );
        }

        // The config the backend loaded is the one the server reports.
        let config = client.model_config(IMAGE_MODEL).await.unwrap();
        assert_eq!(config.backend, clip_contract::BACKEND_NAME);
        assert_eq!(
            config.parameters[param::KIND].string_value,
            kind::IMAGE_PREPROCESS
        );

        // Text: a batch of 12 sentences, checked against open_clip's ids.
        let sentences = sentences();
        let batch = &sentences[..12];
        let texts: Vec<&[u8]> = batch.iter().map(|s| s.text.as_bytes()).collect();
        let response = client
            .infer(bytes_request(
                TEXT_MODEL,
                tensor::TEXT,
                tensor::INPUT_IDS,
                &texts,
            ))
            .await
            .unwrap();
        assert_eq!(
            response.outputs[0].shape,
            vec![12, defaults::CONTEXT_LENGTH as i64]
        );
        let ids = i64_from_raw(&response.raw_output_contents[0]).unwrap();
        for (row, sentence) in ids.chunks_exact(defaults::CONTEXT_LENGTH).zip(batch) {
            assert_eq!(row, sentence.end_padded().as_slice(), "{:?}", sentence.text);
        }

        // Images: a batch of three formats, in FP32 and FP16.
        let photos = [
            image("rocket.jpg"),
            image("chelsea_lossy.webp"),
            image("logo.png"),
        ];
        let items: Vec<&[u8]> = photos.iter().map(Vec::as_slice).collect();
        let expected: Vec<f32> = photos.iter().flat_map(|p| library_pixels(p)).collect();
        let response = client
            .infer(bytes_request(
                IMAGE_MODEL,
                tensor::IMAGE,
                tensor::PIXEL_VALUES,
                &items,
            ))
            .await
            .unwrap();
        assert_eq!(response.outputs[0].datatype, "FP32");
        assert!(f32_from_raw(&response.raw_output_contents[0]).unwrap() == expected);
        let response = client
            .infer(bytes_request(
                IMAGE_MODEL_FP16,
                tensor::IMAGE,
                tensor::PIXEL_VALUES,
                &items,
            ))
            .await
            .unwrap();
        assert_eq!(response.outputs[0].datatype, "FP16");
        let widened = f16_from_raw(&response.raw_output_contents[0]).unwrap();
        let rounded: Vec<f32> = expected
            .iter()
            .map(|v| half::f16::from_f32(*v).to_f32())
            .collect();
        assert!(widened == rounded);

        // A corrupt image is an INVALID_ARGUMENT for its request, and the next request is fine.
        let broken: &[u8] = b"\xff\xd8\xff\xe0 not really a JPEG";
        let failure = client
            .infer(bytes_request(
                IMAGE_MODEL,
                tensor::IMAGE,
                tensor::PIXEL_VALUES,
                &[&photos[0], broken],
            ))
            .await
            .expect_err("corrupt JPEG must fail");
        match failure {
            Error::Status { code, message, .. } => {
                assert_eq!(code, tonic::Code::InvalidArgument, "{message}");
                assert!(
                    message.contains("IMAGE element 1") && message.contains("JPEG"),
                    "{message}"
                );
            }
            other => panic!("expected a gRPC status, got {other}"),
        }
        let response = client
            .infer(bytes_request(
                IMAGE_MODEL,
                tensor::IMAGE,
                tensor::PIXEL_VALUES,
                &items[..1],
            ))
            .await
            .unwrap();
        assert!(
            f32_from_raw(&response.raw_output_contents[0]).unwrap() == library_pixels(&photos[0])
        );

        // Triton counted the executions the backend reported.
        let stats = client.model_statistics(IMAGE_MODEL).await.unwrap();
        let inference = stats[0].inference_stats.as_ref().expect("inference stats");
        assert_eq!(inference.fail.as_ref().map(|d| d.count), Some(1));
        assert!(inference.success.as_ref().map(|d| d.count).unwrap_or(0) >= 2);
    });
}
