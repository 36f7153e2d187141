//! The pixel path (`repo-gen --pixel-path`, `clip-client --preprocess
//! local`) in the real tritonserver: the client decodes, resizes and crops
//! with the backend's code, sends UINT8 `[S, S, 3]` pixels to
//! `clip_image_pixels`, whose graph normalises them, and every fixture
//! image's embedding equals the bytes path's. Bad images fail in the client,
//! each alone and with the reason the server gives, in every position of
//! requests that share the server's dynamic batches. Decoded images of any
//! size sent to `clip_image_decoded` are resized there, to the same
//! embedding as their file.

use std::path::PathBuf;
use std::process::Command;

use clip_client::{cosine, Client, EncodeOptions, Input, ItemFailure, Preprocess};
use clip_contract::{model, tensor, DataType};
use harness::http::{self, Tensor};
use harness::server::{clip_client_cli, tiny_clip_repository, Server};

/// The bar: the same embedding, or within 1e-6 of cosine 1.
const MIN_COSINE: f32 = 1.0 - 1e-6;

fn fixture_images() -> Vec<PathBuf> {
    let dir = harness::fixture("images/inputs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 30, "fixture images missing in {dir:?}");
    paths
}

/// Images no decoder takes, each with the reason both paths must give.
fn bad_images() -> Vec<(Vec<u8>, &'static str)> {
    let jpeg = std::fs::read(harness::fixture("images/inputs/coffee_q90.jpg")).unwrap();
    vec![
        (b"plain text, not an image".to_vec(), "unknown image format"),
        (jpeg[..jpeg.len() / 2].to_vec(), "truncated JPEG data"),
        (Vec::new(), "empty"),
    ]
}

#[test]
fn local_preprocessing_gives_the_bytes_path_embeddings_and_fails_bad_images_alone() {
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    tiny_clip_repository(&repository, &["--pixel-path"]);
    let server = Server::start(&repository);

    // Goods and bads interleaved so that, with batches of 3, a bad image
    // sits first, in the middle and last of some request.
    let images = fixture_images();
    let bads = bad_images();
    let mut inputs = Vec::new();
    let mut expected_bad = Vec::new();
    for (i, path) in images.iter().enumerate() {
        inputs.push(Input::image_path(path));
        if i % 4 == 1 {
            let (bytes, reason) = &bads[i / 4 % bads.len()];
            expected_bad.push((inputs.len(), *reason));
            inputs.push(Input::image_bytes(bytes.clone()));
        }
    }
    let options = |preprocess| EncodeOptions {
        batch_size: 3,
        concurrency: 4,
        preprocess,
        ..Default::default()
    };

    harness::runtime().block_on(async {
        let client = Client::connect(&server.grpc_url).await.unwrap();
        let pixel = client.pixel_model().await.unwrap();
        assert_eq!(pixel.info.name, model::IMAGE_PIXELS);
        assert_eq!(pixel.info.input.name, tensor::PIXELS);
        assert_eq!(pixel.info.input.data_type, DataType::Uint8);
        assert!(pixel.preprocessor.options().reduced_scale_decode);

        let served = client
            .encode(inputs.clone(), &options(Preprocess::Server))
            .await
            .unwrap();
        let local = client
            .encode(inputs.clone(), &options(Preprocess::Local))
            .await
            .unwrap();
        assert_eq!((served.len(), local.len()), (inputs.len(), inputs.len()));
        let mut worst = 1.0f32;
        for (index, (s, l)) in served.iter().zip(&local).enumerate() {
            assert_eq!((s.index, l.index), (index, index));
            if let Some((_, reason)) = expected_bad.iter().find(|(i, _)| *i == index) {
                let Err(server_error) = &s.result else {
                    panic!("input {index}: the server embedded a bad image")
                };
                let Err(local_error) = &l.result else {
                    panic!("input {index}: the client embedded a bad image")
                };
                let ItemFailure::Preprocess(local_reason) = &local_error.failure else {
                    panic!("input {index}: {local_error}")
                };
                let ItemFailure::Rejected(server_reason) = &server_error.failure else {
                    panic!("input {index}: {server_error}")
                };
                assert!(local_reason.contains(reason), "{index}: {local_reason}");
                assert!(
                    server_reason.contains(local_reason.as_str()),
                    "input {index}: the server says {server_reason:?}, the client {local_reason:?}"
                );
                continue;
            }
            let want = s.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
            let got = l.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
            let c = cosine(got, want);
            worst = worst.min(c);
            assert!(c >= MIN_COSINE, "{}: cosine {c}", inputs[index].source());
        }
        eprintln!(
            "pixel path: {} images, {} bad; lowest cosine with the bytes path {worst}",
            images.len(),
            expected_bad.len()
        );
    });

    // What the server checks itself: a crop of the wrong size is refused.
    let s = 224;
    let wrong = Tensor {
        name: tensor::PIXELS.into(),
        datatype: DataType::Uint8.wire_name().into(),
        shape: vec![1, s - 1, s - 1, 3],
        data: vec![0; (s as usize - 1).pow(2) * 3],
    };
    let refused = http::infer(
        &server.http_url,
        model::IMAGE_PIXELS,
        &[wrong],
        &[tensor::EMBEDDING],
    )
    .unwrap_err();
    assert_eq!(refused.status, 400, "{}", refused.message);

    // The command line: --preprocess local, one JSON line per input, the
    // bad one reported and the exit status 3.
    let list = out.path().join("inputs.txt");
    let bad_file = out.path().join("bad.jpg");
    std::fs::write(&bad_file, &bads[1].0).unwrap();
    let lines = [&images[0], &bad_file, &images[1]]
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&list, lines).unwrap();
    let output = Command::new(clip_client_cli())
        .args([
            "--server",
            &server.grpc_url,
            "encode",
            "--preprocess",
            "local",
        ])
        .arg("--from")
        .arg(&list)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows[0]["embedding"].is_array() && rows[2]["embedding"].is_array());
    assert!(
        rows[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot preprocess: truncated JPEG data")),
        "{stdout}"
    );
}

/// `clip_image_decoded`: RGB pixels of any size, resized on the server,
/// give the file's embedding; requests of different sizes in flight at once
/// each get their own rows.
#[test]
fn decoded_images_of_any_size_are_resized_on_the_server() {
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    tiny_clip_repository(&repository, &["--pixel-path", "--no-warmup"]);
    let server = Server::start(&repository);
    let embed = |model: &str, input: Tensor| {
        let outputs = http::infer(&server.http_url, model, &[input], &[tensor::EMBEDDING])
            .unwrap_or_else(|f| panic!("{model}: {}", f.message));
        outputs[0].as_f32()
    };
    // Lossless files (no reduced-scale decode either way), three sizes.
    let names = ["astronaut.png", "wide.png", "coffee.bmp"];
    let cases: Vec<(Tensor, Vec<f32>)> = names
        .iter()
        .map(|name| {
            let bytes = std::fs::read(harness::fixture("images/inputs").join(name)).unwrap();
            let rgb = image::load_from_memory(&bytes).unwrap().to_rgb8();
            let (w, h) = (i64::from(rgb.width()), i64::from(rgb.height()));
            let copies = 2;
            let pixels = Tensor {
                name: tensor::PIXELS.into(),
                datatype: DataType::Uint8.wire_name().into(),
                shape: vec![copies, h, w, 3],
                data: rgb.as_raw().repeat(copies as usize),
            };
            let file = embed(
                model::IMAGE_ENSEMBLE,
                Tensor::bytes(tensor::IMAGE, &[&bytes]),
            );
            (pixels, [file.clone(), file].concat())
        })
        .collect();
    std::thread::scope(|scope| {
        for (pixels, want) in &cases {
            for _ in 0..3 {
                scope.spawn(|| {
                    let got = embed(model::DECODED_ENSEMBLE, pixels.clone());
                    assert_eq!(got.len(), want.len());
                    let dim = got.len() / 2;
                    for row in 0..2 {
                        let range = row * dim..(row + 1) * dim;
                        let c = cosine(&got[range.clone()], &want[range]);
                        assert!(c >= MIN_COSINE, "{:?} row {row}: {c}", pixels.shape);
                    }
                });
            }
        }
    });
    // The wrong layout is refused by the server, naming the tensor.
    let planar = Tensor {
        name: tensor::PIXELS.into(),
        datatype: DataType::Uint8.wire_name().into(),
        shape: vec![1, 3, 8, 8],
        data: vec![0; 192],
    };
    let refused = http::infer(
        &server.http_url,
        model::DECODED_ENSEMBLE,
        &[planar],
        &[tensor::EMBEDDING],
    )
    .unwrap_err();
    assert_eq!(refused.status, 400, "{}", refused.message);
}
