//! clip-client, the library and the command line, against the real
//! tritonserver serving the repository repo-gen writes for the tiny CLIP
//! fixture. Embeddings are checked against Hugging Face's pipeline on the
//! same raw inputs (tests/fixtures/end-to-end) and against NVIDIA's Python
//! `tritonclient` reading the same ensembles.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use clip_client::{
    blocking, cosine, Client, ClientOptions, ConnectOptions, EncodeOptions, Error, Input,
    ItemFailure, Modality, TlsOptions,
};
use clip_contract::{model, tensor, DataType};
use harness::fixture;
use harness::fixtures::{end_to_end, rows, EndToEnd};
use harness::server::{clip_client_cli, tiny_clip_repository, tritonclient_python, Server};
use serde_json::Value;

const TEXT_COSINE: f32 = 0.9999;
const IMAGE_COSINE: f32 = 0.999;

/// Every sentence and image, interleaved, with its reference embedding.
fn mixed(reference: &EndToEnd) -> Vec<(Input, &[f32], f32)> {
    {
        let texts = reference
            .sentences
            .iter()
            .zip(&reference.text)
            .map(|(s, e)| (Input::text(s), e.as_slice(), TEXT_COSINE));
        let images = reference
            .images
            .iter()
            .zip(&reference.image)
            .map(|(p, e)| (Input::image_path(p), e.as_slice(), IMAGE_COSINE));
        let mut out = Vec::new();
        let (mut texts, mut images) = (texts.peekable(), images.peekable());
        while texts.peek().is_some() || images.peek().is_some() {
            out.extend(texts.next());
            out.extend(images.next());
        }
        out
    }
}

/// A server on a fresh repository from the tiny CLIP fixture.
fn serve(dir: &Path, extra_server_flags: &[&str]) -> Server {
    let repository = dir.join("repository");
    tiny_clip_repository(&repository, &[]);
    Server::start_with(&repository, extra_server_flags)
}

fn assert_close(got: &[f32], want: &[f32], min_cosine: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: dimension");
    let c = cosine(got, want);
    assert!(c >= min_cosine, "{what}: cosine {c} < {min_cosine}");
}

/// Runs the CLI against `server` and returns its output.
fn cli(server: &str, args: &[&str]) -> Output {
    Command::new(clip_client_cli())
        .args(["--server", server])
        .args(args)
        .output()
        .expect("run clip-client")
}

fn stdout_of(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "clip-client {what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn library_encodes_ranks_and_isolates_bad_items() {
    let reference = end_to_end();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    harness::runtime().block_on(async {
        let client = Client::connect(&server.grpc_url).await.unwrap();
        let text = client.model(Modality::Text).await.unwrap();
        assert_eq!(text.name, model::TEXT_ENSEMBLE);
        assert_eq!(text.embedding_dim, reference.text[0].len());
        assert_eq!(text.steps, [model::TEXT_PREPROCESS, model::TEXT_ENCODER]);

        // Sentences and images mixed, against Hugging Face's embeddings.
        let mixed = mixed(&reference);
        let inputs: Vec<Input> = mixed.iter().map(|(i, _, _)| i.clone()).collect();
        let encoded = client
            .encode(inputs.clone(), &EncodeOptions::default())
            .await
            .unwrap();
        assert_eq!(encoded.len(), mixed.len());
        for (item, (input, want, min)) in encoded.iter().zip(&mixed) {
            assert_eq!(&item.input, input);
            let got = item.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
            assert_close(got, want, *min, &input.source());
        }

        // Order under concurrency: three shuffled copies, tiny batches, many
        // requests in flight; every result still sits at its input's place.
        let mut many: Vec<usize> = (0..mixed.len() * 3).map(|i| i % mixed.len()).collect();
        many.sort_by_key(|i| (i * 7919) % 31);
        let options = EncodeOptions {
            batch_size: 3,
            concurrency: 8,
            normalize: true,
            ..Default::default()
        };
        let shuffled = client
            .encode(many.iter().map(|&i| mixed[i].0.clone()), &options)
            .await
            .unwrap();
        for (position, (item, &i)) in shuffled.iter().zip(&many).enumerate() {
            assert_eq!(item.index, position);
            let got = item.result.as_ref().unwrap();
            let norm = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "normalized: {norm}");
            assert_close(got, mixed[i].1, mixed[i].2, &mixed[i].0.source());
        }

        // A corrupt image, a missing file and a truncated JPEG among good
        // inputs in the same batch: only they fail, each with its reason.
        let jpeg = std::fs::read(&reference.images[0]).unwrap();
        let bad = vec![
            Input::text(&reference.sentences[0]),
            Input::image_bytes(b"not an image at all".to_vec()),
            Input::image_path(&reference.images[1]),
            Input::image_path(dir.path().join("missing.jpg")),
            Input::image_bytes(jpeg[..jpeg.len() / 3].to_vec()),
            Input::image_path(&reference.images[2]),
        ];
        let results = client
            .encode(
                bad,
                &EncodeOptions {
                    batch_size: 8,
                    ..EncodeOptions::default()
                },
            )
            .await
            .unwrap();
        let failure = |i: usize| results[i].result.as_ref().unwrap_err().failure.clone();
        assert!(matches!(failure(1), ItemFailure::Rejected(m) if m.contains("image")));
        assert!(matches!(failure(3), ItemFailure::Read(m) if m.contains("missing.jpg")));
        assert!(matches!(failure(4), ItemFailure::Rejected(_)));
        assert_close(
            results[0].result.as_ref().unwrap(),
            &reference.text[0],
            TEXT_COSINE,
            "text",
        );
        assert_close(
            results[2].result.as_ref().unwrap(),
            &reference.image[1],
            IMAGE_COSINE,
            "img 1",
        );
        assert_close(
            results[5].result.as_ref().unwrap(),
            &reference.image[2],
            IMAGE_COSINE,
            "img 2",
        );

        // Callbacks: successes per request, failures per item.
        let (mut done, mut failed) = (0, Vec::new());
        let summary = client
            .encode_with_callbacks(
                [
                    Input::text("a"),
                    Input::image_bytes(vec![0xFF, 0xD8, 0xFF]),
                    Input::text("b"),
                ],
                &EncodeOptions::default(),
                |items| done += items.len(),
                |error| failed.push(error.index),
            )
            .await
            .unwrap();
        assert_eq!(
            (done, failed, summary.encoded, summary.failed),
            (2, vec![1], 2, 1)
        );

        // Rank each image against the sentences: the order Hugging Face's
        // embeddings give, and clip_scores that sum to one.
        for (image, want) in reference.images.iter().zip(&reference.ranking) {
            let ranked = client
                .rank(
                    image.as_path(),
                    &reference.sentences,
                    &EncodeOptions::default(),
                )
                .await
                .unwrap();
            let order: Vec<usize> = ranked
                .iter()
                .map(|r| {
                    reference
                        .sentences
                        .iter()
                        .position(|s| Input::text(s) == r.input)
                        .unwrap()
                })
                .collect();
            assert_eq!(&order, want, "ranking for {}", image.display());
            let total: f32 = ranked.iter().map(|r| r.clip_score).sum();
            assert!((total - 1.0).abs() < 1e-4, "{total}");
        }
        // A failing candidate fails the ranking, naming it.
        let err = client
            .rank(
                "a cat",
                [Input::image_bytes(b"junk".to_vec())],
                &EncodeOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Item(_)), "{err}");

        // Models that are not there: the error names the model and the likely cause.
        let elsewhere = Client::connect_with(
            &server.grpc_url,
            ClientOptions {
                name_prefix: "other_".into(),
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
        let err = elsewhere
            .encode(["a cat"], &EncodeOptions::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Model { .. }), "{text}");
        assert!(
            text.contains("other_clip_text") && text.contains("no such model"),
            "{text}"
        );
        let health = elsewhere.health().await.unwrap();
        assert!(!health.ok() && health.live, "{health}");

        // Profile: the ensemble and both of its steps, with times that add up.
        // Before the timeout below, whose abandoned request the server may
        // still be working on: profile reads cumulative statistics.
        let profile = client
            .profile(reference.images[0].as_path(), 3)
            .await
            .unwrap();
        assert_eq!(profile.ensemble, model::IMAGE_ENSEMBLE);
        let steps: Vec<&str> = profile.steps.iter().map(|s| s.model.as_str()).collect();
        assert_eq!(steps, [model::IMAGE_PREPROCESS, model::IMAGE_ENCODER]);
        // Triton ends a request's time when it releases the request, which
        // can come a little after the response reached the client: the
        // server's share may pass the roundtrip by a hair, never by much.
        assert!(
            profile.server > Duration::ZERO
                && profile.server <= profile.roundtrip + profile.roundtrip / 10,
            "{profile}"
        );
        for step in &profile.steps {
            assert!(step.infer > Duration::ZERO, "{profile}");
            assert!(step.total >= step.infer, "{profile}");
        }

        // A deadline shorter than the work: a timeout, not a hang or a retry.
        let impatient = Client::connect_with(
            &server.grpc_url,
            ClientOptions {
                connect: ConnectOptions {
                    call_timeout: Duration::from_millis(1),
                    ..ConnectOptions::default()
                },
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
        let big = fixture("images/inputs/large_12mp.jpg");
        let err = impatient
            .encode([big.as_path()], &EncodeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    });
}

#[test]
fn blocking_client_encodes_ranks_indexes_and_profiles() {
    let reference = end_to_end();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let client = blocking::Client::connect(&server.grpc_url).unwrap();
    let image = client.model(Modality::Image).unwrap();
    assert_eq!(image.name, model::IMAGE_ENSEMBLE);
    assert_eq!(image.embedding_dim, reference.image[0].len());
    assert_eq!(image.output.data_type, DataType::Fp32);
    let health = client.health().unwrap();
    assert!(health.ok(), "{health}");

    // Every input at its place, each embedding against Hugging Face's.
    let mixed = mixed(&reference);
    let inputs: Vec<Input> = mixed.iter().map(|(i, _, _)| i.clone()).collect();
    let options = EncodeOptions {
        batch_size: 4,
        concurrency: 3,
        ..EncodeOptions::default()
    };
    let encoded = client.encode(inputs.clone(), &options).unwrap();
    assert_eq!(encoded.len(), mixed.len());
    for (position, (item, (input, want, min))) in encoded.iter().zip(&mixed).enumerate() {
        assert_eq!((item.index, &item.input), (position, input));
        let got = item.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_close(got, want, *min, &input.source());
    }

    // Streamed in input order; a corrupt image fails alone, among good items.
    let bad = vec![
        Input::text(&reference.sentences[3]),
        Input::image_bytes(b"junk".to_vec()),
        Input::image_path(&reference.images[3]),
    ];
    let mut streamed = Vec::new();
    let summary = client
        .encode_each(bad.clone(), &options, |item| {
            streamed.push(item);
            Ok(())
        })
        .unwrap();
    assert_eq!((summary.encoded, summary.failed), (2, 1));
    let indices: Vec<usize> = streamed.iter().map(|item| item.index).collect();
    assert_eq!(indices, [0, 1, 2]);
    assert_close(
        streamed[0].result.as_ref().unwrap(),
        &reference.text[3],
        TEXT_COSINE,
        "text 3",
    );
    let failure = streamed[1].result.as_ref().unwrap_err();
    assert_eq!(failure.index, 1);
    assert!(
        matches!(failure.failure, ItemFailure::Rejected(_)),
        "{failure}"
    );
    assert_close(
        streamed[2].result.as_ref().unwrap(),
        &reference.image[3],
        IMAGE_COSINE,
        "image 3",
    );
    // An error from the callback ends the job and comes back as it was.
    let err = client
        .encode_each(bad.clone(), &options, |_| {
            Err(Error::Io {
                context: "the sink is full".into(),
                source: std::io::Error::other("no space"),
            })
        })
        .unwrap_err();
    assert!(err.to_string().contains("the sink is full"), "{err}");

    // Per-request callbacks: the good items once each, the bad one by index.
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    let summary = client
        .encode_with_callbacks(
            bad,
            &options,
            |items| done.extend(items.iter().map(|item| item.index)),
            |error| failed.push(error.index),
        )
        .unwrap();
    done.sort_unstable();
    assert_eq!((done, failed), (vec![0, 2], vec![1]));
    assert_eq!((summary.encoded, summary.failed), (2, 1));

    // Rank: the reference order, and progress told of the query and then
    // each candidate in order.
    for (image, want) in reference.images.iter().zip(&reference.ranking).take(3) {
        let mut told = Vec::new();
        let ranked = client
            .rank_with_progress(image.as_path(), &reference.sentences, &options, |item| {
                told.push(item.index)
            })
            .unwrap();
        assert_eq!(told, (0..=reference.sentences.len()).collect::<Vec<_>>());
        let order: Vec<usize> = ranked
            .iter()
            .map(|r| {
                reference
                    .sentences
                    .iter()
                    .position(|s| Input::text(s) == r.input)
                    .unwrap()
            })
            .collect();
        assert_eq!(&order, want, "ranking for {}", image.display());
    }

    // Index the images, then find each one by itself.
    let index = dir.path().join("index");
    let mut written = 0;
    let summary = client
        .index(
            &index,
            reference.images.clone(),
            &options,
            |n| written += n,
            |error| panic!("{error}"),
        )
        .unwrap();
    let count = reference.images.len() as u64;
    assert_eq!(
        (summary.added, summary.failed, summary.total),
        (count, 0, count)
    );
    assert_eq!(written, count);
    for image in &reference.images {
        let hits = client.search(&index, image.as_path(), 1).unwrap();
        assert_eq!(hits[0].source, image.display().to_string());
        assert!(
            hits[0].score > 0.9999,
            "{}: {}",
            image.display(),
            hits[0].score
        );
    }

    let profile = client.profile("a photo of a cat", 2).unwrap();
    let steps: Vec<&str> = profile.steps.iter().map(|s| s.model.as_str()).collect();
    assert_eq!(steps, [model::TEXT_PREPROCESS, model::TEXT_ENCODER]);
}

/// Just enough protobuf to edit an ONNX model: a message as its fields,
/// (number, wire type, value), a length-delimited value without its length.
type Field = (u64, u64, Vec<u8>);

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
    }
    value
}

fn fields(bytes: &[u8]) -> Vec<Field> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at);
        let value = match key & 7 {
            0 => {
                let start = at;
                read_varint(bytes, &mut at);
                start..at
            }
            1 => at..at + 8,
            2 => {
                let len = read_varint(bytes, &mut at) as usize;
                at..at + len
            }
            5 => at..at + 4,
            wire => panic!("protobuf wire type {wire}"),
        };
        at = value.end;
        out.push((key >> 3, key & 7, bytes[value].to_vec()));
    }
    out
}

fn message(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, wire, value) in fields {
        out.extend(varint(number << 3 | wire));
        if *wire == 2 {
            out.extend(varint(value.len() as u64));
        }
        out.extend(value);
    }
    out
}

/// Applies `edit` to the fields of each length-delimited field `number`.
fn edit_each(parent: &mut [Field], number: u64, edit: &mut dyn FnMut(&mut Vec<Field>)) {
    for (_, _, value) in parent.iter_mut().filter(|f| f.0 == number) {
        let mut inner = fields(value);
        edit(&mut inner);
        *value = message(&inner);
    }
}

/// The exported ONNX encoder with its EMBEDDING cast to FLOAT16 at the
/// end, as an encoder exported in half precision throughout sends it.
fn with_fp16_embedding(onnx: &[u8]) -> Vec<u8> {
    // onnx.proto numbers: ModelProto.graph 7; GraphProto.node 1, output 12;
    // NodeProto.input 1, output 2, name 3, op_type 4, attribute 5;
    // AttributeProto.name 1, i 3, type 20 (INT = 2); ValueInfoProto.name 1,
    // type 2; TypeProto.tensor_type 1; its elem_type 1 (FLOAT16 = 10).
    const FLOAT16: u64 = 10;
    let (embedding, widest) = (tensor::EMBEDDING.as_bytes(), b"EMBEDDING_FP32");
    let bytes = |number: u64, value: &[u8]| (number, 2, value.to_vec());
    let mut model = fields(onnx);
    edit_each(&mut model, 7, &mut |graph| {
        edit_each(graph, 1, &mut |node| {
            for field in node.iter_mut().filter(|f| f.0 == 2 && f.2 == embedding) {
                field.2 = widest.to_vec();
            }
        });
        for output in graph.iter_mut().filter(|f| f.0 == 12) {
            let mut info = fields(&output.2);
            if info.iter().any(|f| f.0 == 1 && f.2 == embedding) {
                edit_each(&mut info, 2, &mut |ty| {
                    edit_each(ty, 1, &mut |tensor_type| {
                        tensor_type.retain(|f| f.0 != 1);
                        tensor_type.insert(0, (1, 0, varint(FLOAT16)));
                    })
                });
                output.2 = message(&info);
            }
        }
        let to = message(&[bytes(1, b"to"), (3, 0, varint(FLOAT16)), (20, 0, varint(2))]);
        let cast = message(&[
            bytes(1, widest),
            bytes(2, embedding),
            bytes(3, b"embedding_to_fp16"),
            bytes(4, b"Cast"),
            bytes(5, &to),
        ]);
        graph.push((1, 2, cast));
    });
    message(&model)
}

/// Switches the encoders and ensembles of a repo-gen repository (models
/// named with `prefix`) to an FP16 EMBEDDING.
fn switch_to_fp16_embeddings(repository: &Path, prefix: &str) {
    let fp32 = "name: \"EMBEDDING\"\n    data_type: TYPE_FP32";
    let fp16 = "name: \"EMBEDDING\"\n    data_type: TYPE_FP16";
    for base in [model::TEXT_ENCODER, model::IMAGE_ENCODER] {
        let onnx = repository.join(format!("{prefix}{base}/1/model.onnx"));
        std::fs::write(&onnx, with_fp16_embedding(&std::fs::read(&onnx).unwrap())).unwrap();
    }
    for base in [
        model::TEXT_ENCODER,
        model::IMAGE_ENCODER,
        model::TEXT_ENSEMBLE,
        model::IMAGE_ENSEMBLE,
    ] {
        let path = repository.join(format!("{prefix}{base}/config.pbtxt"));
        let config = std::fs::read_to_string(&path).unwrap();
        assert_eq!(config.matches(fp32).count(), 1, "{config}");
        std::fs::write(&path, config.replace(fp32, fp16)).unwrap();
    }
}

#[test]
fn fp16_embeddings_are_widened_to_f32() {
    let reference = end_to_end();
    let dir = tempfile::tempdir().unwrap();
    // One server: the FP32 models, and beside them a copy whose encoders
    // and ensembles send FP16 (names prefixed with "half_").
    let repository = dir.path().join("repository");
    tiny_clip_repository(&repository, &[]);
    let half_repository = dir.path().join("half");
    tiny_clip_repository(&half_repository, &["--name-prefix", "half_"]);
    switch_to_fp16_embeddings(&half_repository, "half_");
    for entry in std::fs::read_dir(&half_repository).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), repository.join(entry.file_name())).unwrap();
    }
    let server = Server::start(&repository);

    let fp32 = blocking::Client::connect(&server.grpc_url).unwrap();
    let fp16 = blocking::Client::connect_with(
        &server.grpc_url,
        ClientOptions {
            name_prefix: "half_".into(),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    for modality in [Modality::Text, Modality::Image] {
        assert_eq!(
            fp32.model(modality).unwrap().output.data_type,
            DataType::Fp32
        );
        assert_eq!(
            fp16.model(modality).unwrap().output.data_type,
            DataType::Fp16
        );
    }
    let mixed = mixed(&reference);
    let inputs: Vec<Input> = mixed.iter().map(|(i, _, _)| i.clone()).collect();
    let options = EncodeOptions::default();
    let wide = fp32.encode(inputs.clone(), &options).unwrap();
    let narrow = fp16.encode(inputs, &options).unwrap();
    assert_eq!(narrow.len(), mixed.len());
    for ((narrow, wide), (input, want, min)) in narrow.iter().zip(&wide).zip(&mixed) {
        let what = input.source();
        let narrow = narrow
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let wide = wide.result.as_ref().unwrap();
        assert_eq!(narrow.len(), wide.len(), "{what}");
        for (i, (&h, &f)) in narrow.iter().zip(wide).enumerate() {
            // Came as FP16 and was widened exactly...
            assert_eq!(half::f16::from_f32(h).to_f32(), h, "{what}[{i}]");
            // ...from the FP32 value, rounded: half an FP16 step, and room
            // for FP32 noise between differently formed batches.
            assert!(
                (h - f).abs() <= f.abs() / 1024.0 + 1e-6,
                "{what}[{i}]: FP16 {h}, FP32 {f}"
            );
        }
        assert_close(narrow, want, *min, &what);
    }
}

#[test]
fn command_line_and_python_tritonclient_agree() {
    let reference = end_to_end();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let url = server.grpc_url.as_str();
    let images: Vec<&str> = reference
        .images
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect();

    // encode -> JSON lines, sentences and images in one call, input order kept.
    let mut args = vec!["encode", "--batch-size", "3", "--concurrency", "4"];
    args.extend(reference.sentences.iter().map(String::as_str));
    args.extend(&images);
    let lines: Vec<Value> = stdout_of(&cli(url, &args), "encode")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let wanted: Vec<&Vec<f32>> = reference.text.iter().chain(&reference.image).collect();
    assert_eq!(lines.len(), wanted.len());
    let mut cli_rows = Vec::new();
    for (i, (line, want)) in lines.iter().zip(&wanted).enumerate() {
        assert_eq!(line["index"], i);
        let row: Vec<f32> = rows(&Value::Array(vec![line["embedding"].clone()])).remove(0);
        let min = if i < reference.sentences.len() {
            TEXT_COSINE
        } else {
            IMAGE_COSINE
        };
        assert_close(&row, want, min, line["input"].as_str().unwrap());
        cli_rows.push(row);
    }

    // encode -> .npy from a directory walk plus a --from file with a bad
    // line; rows stay aligned, the failure is a NaN row and exit status 3.
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for image in &reference.images[..3] {
        std::fs::copy(image, photos.join(image.file_name().unwrap())).unwrap();
    }
    let list = dir.path().join("inputs.txt");
    std::fs::write(
        &list,
        format!(
            "{}\n{}\n",
            reference.sentences[1],
            dir.path().join("nope.png").display()
        ),
    )
    .unwrap();
    let npy = dir.path().join("out.npy");
    let output = cli(
        url,
        &[
            "encode",
            photos.to_str().unwrap(),
            "--from",
            list.to_str().unwrap(),
            "-o",
            npy.to_str().unwrap(),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope.png"));
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let dim = reference.text[0].len();
    assert!(header.contains(&format!("'shape': (5, {dim})")), "{header}");
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let npy_rows: Vec<&[f32]> = values.chunks(dim).collect();
    // Directory entries come in name order.
    let mut names: Vec<(String, usize)> = reference.images[..3]
        .iter()
        .enumerate()
        .map(|(i, p)| (p.file_name().unwrap().to_string_lossy().into_owned(), i))
        .collect();
    names.sort();
    for (row, (_, i)) in npy_rows.iter().zip(&names) {
        assert_close(row, &reference.image[*i], IMAGE_COSINE, "npy image row");
    }
    assert_close(npy_rows[3], &reference.text[1], TEXT_COSINE, "npy text row");
    assert!(npy_rows[4].iter().all(|v| v.is_nan()));

    // rank: an image against the sentences, best first as in the reference.
    let mut args = vec!["rank", images[0]];
    args.extend(reference.sentences.iter().map(String::as_str));
    let table = stdout_of(&cli(url, &args), "rank");
    let best = &reference.sentences[reference.ranking[0][0]];
    let first_row = table.lines().nth(1).unwrap();
    assert!(
        first_row.trim_start().starts_with("1 ") && first_row.ends_with(best.as_str()),
        "{table}"
    );

    // index twice (appends), then search by sentence and by image.
    let index = dir.path().join("index");
    let index_arg = index.to_str().unwrap();
    let mut args = vec!["index", index_arg];
    args.extend(&images);
    let first = stdout_of(&cli(url, &args), "index");
    assert!(
        first.contains(&format!("holds {} items", images.len())),
        "{first}"
    );
    let mut args = vec!["index", index_arg];
    args.extend(reference.sentences.iter().map(String::as_str));
    let second = stdout_of(&cli(url, &args), "index");
    let total = images.len() + reference.sentences.len();
    assert!(second.contains(&format!("holds {total} items")), "{second}");
    let found = stdout_of(
        &cli(
            url,
            &["search", index_arg, &reference.sentences[2], "-n", "3"],
        ),
        "search",
    );
    let top = found.lines().nth(1).unwrap();
    assert!(
        top.contains("1.0000") && top.ends_with(&reference.sentences[2]),
        "{found}"
    );
    let found = stdout_of(
        &cli(url, &["search", index_arg, images[4], "-n", "1"]),
        "search",
    );
    assert!(
        found.lines().nth(1).unwrap().ends_with(images[4]),
        "{found}"
    );

    // profile, health, models.
    let profile = stdout_of(
        &cli(url, &["profile", "a photo of a cat", "--requests", "3"]),
        "profile",
    );
    for name in [
        model::TEXT_ENSEMBLE,
        model::TEXT_PREPROCESS,
        model::TEXT_ENCODER,
        "client-server network",
    ] {
        assert!(profile.contains(name), "{profile}");
    }
    let health = stdout_of(&cli(url, &["health"]), "health");
    assert!(health.contains("live         yes"), "{health}");
    let models = stdout_of(&cli(url, &["models"]), "models");
    for name in [
        model::TEXT_ENSEMBLE,
        model::IMAGE_ENSEMBLE,
        model::TEXT_ENCODER,
        model::IMAGE_PREPROCESS,
    ] {
        assert!(
            models
                .lines()
                .any(|l| l.starts_with(name) && l.contains("READY")),
            "{models}"
        );
    }

    // Errors a user can act on: a closed port names the address.
    let output = cli("grpc://127.0.0.1:9", &["health"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("cannot reach Triton at grpc://127.0.0.1:9"));

    // NVIDIA's Python client reads the same embeddings from the same ensembles.
    let host_port = url.trim_start_matches("http://");
    let python = |model: &str, input: &str, files: bool, items: &[&str]| -> Vec<Vec<f32>> {
        let mut command = Command::new(tritonclient_python());
        command
            .arg(harness::workspace_root().join("tests/python/tritonclient_embed.py"))
            .args([
                "--url",
                host_port,
                "--model",
                model,
                "--input",
                input,
                "--output",
                tensor::EMBEDDING,
            ]);
        if files {
            command.arg("--files");
        }
        let output = command.args(items).output().expect("run python");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        rows(&serde_json::from_slice(&output.stdout).unwrap())
    };
    let sentences: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let from_python = python(model::TEXT_ENSEMBLE, tensor::TEXT, false, &sentences)
        .into_iter()
        .chain(python(model::IMAGE_ENSEMBLE, tensor::IMAGE, true, &images));
    for (i, (py, ours)) in from_python.zip(&cli_rows).enumerate() {
        let worst = py
            .iter()
            .zip(ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst < 1e-4,
            "input {i}: Python and clip-client differ by {worst}"
        );
    }
}

/// A CA, a server certificate for `localhost` and a client certificate, as
/// PEM files in `dir`.
fn certificates(dir: &Path) -> [PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    // Every certificate needs its own subject: a leaf whose subject equals
    // its issuer's looks self-signed to OpenSSL, which Triton uses.
    let params = |common_name: &str, alt_names: Vec<String>| {
        let mut params = CertificateParams::new(alt_names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
    };
    let mut ca_params = params("clip-client test CA", Vec::new());
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = params(name, vec![name.to_owned()]);
        params.extended_key_usages = vec![usage];
        (
            params.signed_by(&key, &ca).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    let (server_cert, server_key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf("client", ExtendedKeyUsagePurpose::ClientAuth);
    let files = [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    ]
    .map(|f| dir.join(f));
    let pems = [ca.pem(), server_cert, server_key, client_cert, client_key];
    for (path, pem) in files.iter().zip(pems) {
        std::fs::write(path, pem).unwrap();
    }
    files
}

#[test]
fn tls_with_a_self_signed_certificate_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, server_cert, server_key, client_cert, client_key] = certificates(dir.path());
    let flag = |name: &str, path: &Path| format!("--{name}={}", path.display());
    let flags = [
        "--grpc-use-ssl=true".to_owned(),
        "--grpc-use-ssl-mutual=true".to_owned(),
        flag("grpc-server-cert", &server_cert),
        flag("grpc-server-key", &server_key),
        flag("grpc-root-cert", &ca),
    ];
    let server = serve(
        dir.path(),
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let tls_url = server
        .grpc_url
        .replace("http://127.0.0.1", "grpcs://localhost");
    let read = |p: &PathBuf| std::fs::read(p).unwrap();
    let options = |ca_pem: Option<Vec<u8>>, identity: bool| ClientOptions {
        connect: ConnectOptions {
            tls: TlsOptions {
                ca_pem,
                client_identity: identity.then(|| (read(&client_cert), read(&client_key))),
                domain: None,
            },
            retries: 0,
            ..ConnectOptions::default()
        },
        ..ClientOptions::default()
    };
    harness::runtime().block_on(async {
        let client = Client::connect_with(&tls_url, options(Some(read(&ca)), true))
            .await
            .unwrap();
        let health = client
            .health()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        assert!(health.ok());
        let out = client
            .encode(["a photo of a cat"], &EncodeOptions::default())
            .await
            .unwrap();
        assert!(out[0].result.is_ok());

        // Plaintext to the TLS port, an unknown CA, no client certificate: refused.
        let plain = server.grpc_url.clone();
        let refused = [
            ("plaintext", &plain, options(None, false)),
            ("unknown CA", &tls_url, options(None, true)),
            (
                "no client certificate",
                &tls_url,
                options(Some(read(&ca)), false),
            ),
        ];
        for (what, url, options) in refused {
            let attempt = async {
                let client = Client::connect_with(url, options).await?;
                client.health().await.map(|_| ())
            };
            let err = attempt.await.expect_err(what);
            assert!(
                matches!(err, Error::Unreachable { .. } | Error::Status { .. }),
                "{what}: {err}"
            );
            if what == "unknown CA" {
                assert!(
                    err.to_string().to_lowercase().contains("certificate"),
                    "{err}"
                );
            }
        }
    });

    // The command line with --ca, --cert and --key.
    let health = cli(
        &tls_url,
        &[
            "health",
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            client_cert.to_str().unwrap(),
            "--key",
            client_key.to_str().unwrap(),
        ],
    );
    assert!(stdout_of(&health, "health over TLS").contains("ready        yes"));
}

#[test]
fn a_server_stopped_mid_job_ends_it_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Some(serve(dir.path(), &[]));
    let url = server.as_ref().unwrap().grpc_url.clone();
    harness::runtime().block_on(async {
        let client = Client::connect(&url).await.unwrap();
        let sentences: Vec<String> = (0..4000).map(|i| format!("sentence number {i}")).collect();
        let options = EncodeOptions {
            batch_size: 4,
            concurrency: 2,
            ..EncodeOptions::default()
        };
        let mut done = 0;
        let job = client.encode_with_callbacks(
            &sentences,
            &options,
            |items| {
                done += items.len();
                // Stop the server as soon as the first results are in.
                drop(server.take());
            },
            |_| {},
        );
        // A hang guard, not a timing target: the job must end on its own.
        let result = tokio::time::timeout(Duration::from_secs(120), job)
            .await
            .expect("encode hung after the server stopped");
        let err = result.unwrap_err();
        assert!(
            matches!(
                err.code(),
                Some(tonic::Code::Unavailable | tonic::Code::Unknown)
            ),
            "{err}"
        );
        assert!(err.to_string().contains("after 3 retries"), "{err}");
        assert!(done > 0 && done < sentences.len(), "{done}");
    });
}

/// Issue 14 (faults): when the server is killed with SIGKILL mid-job,
/// `clip-client encode` still gives every input its row, in order: its
/// embedding, or the job-stopped error (a row of NaN in .npy, whose header
/// is finished); and `clip-client index` says how many items it added, which
/// is exactly what the index holds. Before, the output stopped at the last
/// reported row (a .npy kept its 0 x 0 header) and index said nothing.
#[test]
fn the_cli_accounts_for_every_input_when_the_server_is_killed_mid_job() {
    use std::process::{Child, Stdio};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let n = 3000;
    let list = dir.path().join("sentences.txt");
    let sentences: Vec<String> = (0..n).map(|i| format!("sentence number {i}")).collect();
    std::fs::write(&list, sentences.join("\n")).unwrap();
    let (jsonl, npy, index) = (
        dir.path().join("out.jsonl"),
        dir.path().join("out.npy"),
        dir.path().join("index"),
    );
    let list = list.to_str().unwrap();
    let spawn = |name: &str, args: &[&str]| -> Child {
        Command::new(clip_client_cli())
            .args(["--server", &server.grpc_url])
            .args(args)
            .stdout(std::fs::File::create(dir.path().join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.path().join(format!("{name}.err"))).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    };
    let batching = ["-b", "2", "-c", "1"];
    let mut jobs = [
        (
            "json",
            [
                &["encode", "--from", list, "-o", jsonl.to_str().unwrap()][..],
                &batching,
            ]
            .concat(),
        ),
        (
            "npy",
            [
                &["encode", "--from", list, "-o", npy.to_str().unwrap()][..],
                &batching,
            ]
            .concat(),
        ),
        (
            "index",
            [
                &["index", index.to_str().unwrap(), "--from", list][..],
                &batching,
            ]
            .concat(),
        ),
    ]
    .map(|(name, args)| (name, spawn(name, &args)));

    // Kill once rows are out and the index has commits.
    let start = Instant::now();
    while std::fs::read_to_string(&jsonl).map_or(0, |t| t.lines().count()) < 100
        // More than the log's header: at least one group of items appended.
        || std::fs::metadata(index.join("items.log")).map_or(0, |m| m.len()) < 1024
    {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let repository = dir.path().join("repository");
    drop(server);
    let killed = Instant::now();
    let mut stderr = std::collections::HashMap::new();
    for (name, child) in &mut jobs {
        // A hang guard, not a timing target.
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if killed.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("clip-client {name} hung after the server was killed");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = std::fs::read_to_string(dir.path().join(format!("{name}.err"))).unwrap();
        assert_eq!(status.code(), Some(1), "{name}: {err}");
        stderr.insert(*name, err);
    }

    // JSON lines: embeddings up to the input stderr names, then errors.
    let err = &stderr["json"];
    let stopped_at: usize = err
        .split("the job stopped at input #")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no stop reported: {err}"));
    assert!(stopped_at > 0 && stopped_at < n, "{err}");
    assert!(err.contains("Unavailable"), "{err}");
    let rows_out: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows_out.len(), n, "one row per input");
    for (i, row) in rows_out.iter().enumerate() {
        assert_eq!(row["index"], i, "{row}");
        assert_eq!(row["input"], sentences[i], "{row}");
        if i < stopped_at {
            assert_eq!(row["embedding"].as_array().map(Vec::len), Some(24), "{row}");
        } else {
            let error = row["error"]
                .as_str()
                .unwrap_or_else(|| panic!("row {i}: {row}"));
            assert!(error.starts_with("not encoded: the job stopped"), "{error}");
            assert!(row.get("embedding").is_none(), "{row}");
        }
    }

    // .npy: the finished shape, finite rows, then rows of NaN.
    let bytes = std::fs::read(&npy).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..128]);
    assert!(header.contains(&format!("'shape': ({n}, 24)")), "{header}");
    let values: Vec<f32> = bytes[128..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), n * 24);
    let stopped: Vec<bool> = values
        .chunks_exact(24)
        .map(|row| row.iter().all(|v| v.is_nan()))
        .collect();
    let first_nan = stopped
        .iter()
        .position(|&s| s)
        .expect("the unfinished rows are NaN");
    assert!(first_nan > 0, "some rows were encoded");
    assert!(
        stopped[first_nan..].iter().all(|&s| s),
        "NaN rows only after the stop"
    );
    assert!(values[..first_nan * 24].iter().all(|v| v.is_finite()));

    // index: what it reports as added is what the index holds.
    let err = &stderr["index"];
    let added: u64 = err
        .split("added ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no count reported: {err}"));
    assert!(err.contains("before the job stopped"), "{err}");
    let server = Server::start(&repository);
    let count = cli(
        &server.grpc_url,
        &["index", index.to_str().unwrap(), "--from", "/dev/null"],
    );
    let count = stdout_of(&count, "index of nothing");
    assert!(
        count.contains(&format!("now holds {added} items")),
        "{count} vs {err}"
    );
}

/// Issue 14, defect 4: a `--from` line that is not UTF-8 is that input's
/// error, at its row, and every other line is still encoded.
#[test]
fn from_file_lines_that_are_not_utf8_fail_alone_in_their_rows() {
    use std::os::unix::ffi::OsStrExt;

    let reference = end_to_end();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let url = server.grpc_url.as_str();
    let image = |i: usize| reference.images[i].as_os_str().as_bytes().to_vec();
    let sentence = |i: usize| reference.sentences[i].as_bytes().to_vec();

    // (line of the file, its bytes, its embedding in the reference and the
    // least cosine to it, if the line is good)
    type Line<'a> = (usize, Vec<u8>, Option<(&'a [f32], f32)>);
    #[rustfmt::skip]
    let lines: Vec<Line> = vec![
        (1, b"\xff\xfe a bad first line".to_vec(), None),
        (2, sentence(0), Some((&reference.text[0], TEXT_COSINE))),
        (3, image(0), Some((&reference.image[0], IMAGE_COSINE))),
        (4, b"caf\xe9 au lait".to_vec(), None),
        (6, sentence(1), Some((&reference.text[1], TEXT_COSINE))),
        (7, b"\xc3".to_vec(), None),
        (8, b"photos/\x80cat.jpg".to_vec(), None),
        (9, image(1), Some((&reference.image[1], IMAGE_COSINE))),
        (10, sentence(2), Some((&reference.text[2], TEXT_COSINE))),
        (11, b"a bad last line \xff".to_vec(), None),
    ];
    let mut file = Vec::new();
    for (number, bytes, _) in &lines {
        if *number == 6 {
            file.extend_from_slice(b"\n"); // line 5 is empty: skipped, as ever
        }
        file.extend_from_slice(bytes);
        // Line 9 ends in CRLF; the last line has no newline at all.
        match number {
            9 => file.extend_from_slice(b"\r\n"),
            11 => {}
            _ => file.push(b'\n'),
        }
    }
    let list = dir.path().join("mixed.txt");
    std::fs::write(&list, &file).unwrap();

    // One argument first (row 0) and an empty line 5, so rows and line
    // numbers differ: the error must name the line.
    let batching = ["--batch-size", "2", "--concurrency", "1"];
    let mut args = vec!["encode", &reference.sentences[3]];
    args.extend(["--from", list.to_str().unwrap()]);
    args.extend(batching);
    let output = cli(url, &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let bad = lines.iter().filter(|(_, _, good)| good.is_none()).count();
    assert!(
        stderr.contains(&format!(
            "encoded {} of {} inputs ({bad} failed)",
            lines.len() + 1 - bad,
            lines.len() + 1
        )),
        "{stderr}"
    );
    let rows_out: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows_out.len(), lines.len() + 1, "{stderr}");

    // The good lines alone, with the same batching, for element-wise checks.
    let good: Vec<String> = lines
        .iter()
        .filter(|(_, _, good)| good.is_some())
        .map(|(_, bytes, _)| String::from_utf8(bytes.clone()).unwrap())
        .collect();
    let mut args = vec!["encode", reference.sentences[3].as_str()];
    args.extend(good.iter().map(String::as_str));
    args.extend(batching);
    let alone: Vec<Vec<f32>> = stdout_of(&cli(url, &args), "encode of the good lines")
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            rows(&Value::Array(vec![line["embedding"].clone()])).remove(0)
        })
        .collect();
    let mut alone = alone.into_iter();
    let embedding_of = |row: &Value| rows(&Value::Array(vec![row["embedding"].clone()])).remove(0);

    assert_eq!(rows_out[0]["index"], 0);
    let first = embedding_of(&rows_out[0]);
    assert_eq!(first, alone.next().unwrap(), "row 0");
    assert_close(&first, &reference.text[3], TEXT_COSINE, "row 0");
    for (position, (row, (number, bytes, good))) in rows_out[1..].iter().zip(&lines).enumerate() {
        let index = row["index"].as_u64().unwrap() as usize;
        assert_eq!(index, position + 1, "line {number}: its row");
        let what = format!("row {index} (line {number})");
        match good {
            Some((reference, min)) => {
                assert!(row.get("error").is_none(), "{what}: {row}");
                let got = embedding_of(row);
                let want = alone.next().unwrap();
                assert_eq!(got.len(), want.len(), "{what}");
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= 1e-5, "{what}, value {k}: {g} != {w}");
                }
                assert_close(&got, reference, *min, &what);
                assert_eq!(row["input"].as_str().unwrap().as_bytes(), bytes.as_slice());
            }
            None => {
                assert!(row.get("embedding").is_none(), "{what}: {row}");
                let error = row["error"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: {row}"));
                assert!(
                    error.contains(&format!("line {number} ")) && error.contains("UTF-8"),
                    "{what}: {error}"
                );
                let reported = stderr
                    .lines()
                    .find(|l| l.starts_with(&format!("error: input #{index} ")))
                    .unwrap_or_else(|| panic!("{what} not on stderr:\n{stderr}"));
                assert!(reported.contains(&format!("line {number} ")), "{reported}");
            }
        }
    }
    assert!(alone.next().is_none());

    // index: the same file adds the good lines and counts the bad ones.
    let index = dir.path().join("index");
    let output = cli(
        url,
        &[
            "index",
            index.to_str().unwrap(),
            "--from",
            list.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(&format!("added {} items ({bad} failed)", lines.len() - bad)),
        "{stdout}"
    );

    // The library: an invalid query fails rank with its own error, and is
    // never sent as anything else.
    harness::runtime().block_on(async {
        let client = Client::connect(url).await.unwrap();
        let query = Input::invalid("caf\\xe9", "not UTF-8");
        let err = client
            .rank(query, ["a cat"], &EncodeOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Item(e) if e.failure == ItemFailure::Invalid("not UTF-8".into())),
            "{err}"
        );
    });
}
