//! The `clip` backend inside a real `tritonserver` (2.51.0, from the
//! nvidia-pytriton wheel): batched requests over HTTP, outputs checked
//! against the reference fixtures and the in-process library, bad input
//! failing one request only, bad configs failing one model only.

use std::sync::{Arc, Barrier};

use clip_contract::{defaults, model, param, tensor};
use harness::fixtures::{
    image, images, library_pixels, library_preprocessor, sentences, tokenizer_dir,
};
use harness::http::{self, Tensor};
use harness::repository::{Repository, Serving};
use harness::server::Server;

const TEXT_MODEL: &str = model::TEXT_PREPROCESS;
/// Same tokenizer, but pads with open_clip's 0 instead of the tokenizer files' 49407.
const TEXT_MODEL_PAD0: &str = "clip_text_preprocess_pad0";
const IMAGE_MODEL: &str = model::IMAGE_PREPROCESS;
const IMAGE_MODEL_FP16: &str = "clip_image_preprocess_fp16";

fn standard_repository(serving: &Serving) -> Repository {
    let repository = Repository::new();
    repository.add_text(TEXT_MODEL, serving, &tokenizer_dir(), &[]);
    repository.add_text(
        TEXT_MODEL_PAD0,
        serving,
        &tokenizer_dir(),
        &[(param::PAD_TOKEN_ID, "0")],
    );
    repository.add_image(IMAGE_MODEL, serving, false, &[]);
    repository.add_image(IMAGE_MODEL_FP16, serving, true, &[]);
    repository
}

fn infer_text(server: &Server, model: &str, texts: &[&[u8]]) -> Result<Tensor, http::Failure> {
    let mut outputs = http::infer(
        &server.http_url,
        model,
        &[Tensor::bytes(tensor::TEXT, texts)],
        &[tensor::INPUT_IDS],
    )?;
    Ok(outputs.remove(0))
}

fn infer_images(server: &Server, model: &str, images: &[&[u8]]) -> Result<Tensor, http::Failure> {
    let mut outputs = http::infer(
        &server.http_url,
        model,
        &[Tensor::bytes(tensor::IMAGE, images)],
        &[tensor::PIXEL_VALUES],
    )?;
    Ok(outputs.remove(0))
}

#[test]
fn batched_text_matches_open_clip_token_ids() {
    let repository = standard_repository(&Serving::default());
    let server = Server::start(repository.path());
    let sentences = sentences();
    let width = defaults::CONTEXT_LENGTH;

    // Requests of 1, 3, 8 and 16 sentences, through both pad conventions.
    let mut start = 0;
    for (round, size) in [1usize, 3, 8, 16].into_iter().cycle().enumerate() {
        if start >= sentences.len() {
            break;
        }
        let batch = &sentences[start..(start + size).min(sentences.len())];
        start += batch.len();
        let texts: Vec<&[u8]> = batch.iter().map(|s| s.text.as_bytes()).collect();
        let model = if round % 2 == 0 {
            TEXT_MODEL_PAD0
        } else {
            TEXT_MODEL
        };
        let ids = infer_text(&server, model, &texts).unwrap_or_else(|f| panic!("{model}: {f:?}"));
        assert_eq!(ids.shape, vec![batch.len() as i64, width as i64]);
        for (row, sentence) in ids.as_i64().chunks_exact(width).zip(batch) {
            // The tokenizer files pad with the end token, as Hugging Face's CLIP does.
            let expected = if model == TEXT_MODEL {
                sentence.end_padded()
            } else {
                sentence.open_clip.clone()
            };
            assert_eq!(row, expected.as_slice(), "{model}: {:?}", sentence.text);
        }
    }
}

#[test]
fn batched_images_match_the_library_in_fp32_and_fp16() {
    let repository = standard_repository(&Serving::default());
    let server = Server::start(repository.path());
    let images = images();
    let pixels = library_preprocessor().pixels_per_image();

    for batch in images.chunks(4) {
        let bytes: Vec<&[u8]> = batch.iter().map(|(_, data)| data.as_slice()).collect();
        let names: Vec<&str> = batch.iter().map(|(name, _)| name.as_str()).collect();
        let size = defaults::IMAGE_SIZE as i64;
        let expected: Vec<Vec<f32>> = bytes.iter().map(|b| library_pixels(b)).collect();

        let fp32 = infer_images(&server, IMAGE_MODEL, &bytes)
            .unwrap_or_else(|f| panic!("{names:?}: {f:?}"));
        assert_eq!(fp32.shape, vec![batch.len() as i64, 3, size, size]);
        for ((got, want), name) in fp32
            .as_f32()
            .chunks_exact(pixels)
            .zip(&expected)
            .zip(&names)
        {
            assert!(
                got == want.as_slice(),
                "{name}: server pixels differ from the library's"
            );
        }

        let fp16 = infer_images(&server, IMAGE_MODEL_FP16, &bytes)
            .unwrap_or_else(|f| panic!("{names:?}: {f:?}"));
        assert_eq!(fp16.shape, vec![batch.len() as i64, 3, size, size]);
        for ((got, want), name) in fp16
            .as_f16_widened()
            .chunks_exact(pixels)
            .zip(&expected)
            .zip(&names)
        {
            let want: Vec<f32> = want
                .iter()
                .map(|v| half::f16::from_f32(*v).to_f32())
                .collect();
            assert!(
                got == want.as_slice(),
                "{name}: fp16 pixels are not the rounded fp32 pixels"
            );
        }
    }
}

/// A PNG that declares `width` x `height` pixels but carries almost no data:
/// a decoder that trusts the header would try to allocate gigabytes.
fn decompression_bomb(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut png, b"IHDR", &header);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

enum Expect {
    Pixels(Vec<Vec<f32>>),
    Ids,
    Fails { status: u16, says: &'static str },
}

#[test]
fn bad_requests_fail_alone_inside_dynamic_batches() {
    // A long queue delay so that the concurrent burst below lands in shared batches, even on a loaded machine.
    let serving = Serving {
        max_batch_size: 32,
        queue_delay_us: Some(1_000_000),
        instances: 1,
    };
    let repository = standard_repository(&serving);
    let server = Server::start(repository.path());

    let (jpeg, png) = (image("rocket.jpg"), image("astronaut.png"));
    let good_pixels = library_pixels(&jpeg);
    let png_pixels = library_pixels(&png);

    // (model, input tensor, expectation)
    let mut cases: Vec<(&str, Tensor, Expect)> = Vec::new();
    for _ in 0..6 {
        cases.push((
            IMAGE_MODEL,
            Tensor::bytes(tensor::IMAGE, &[&jpeg]),
            Expect::Pixels(vec![good_pixels.clone()]),
        ));
        cases.push((
            IMAGE_MODEL,
            Tensor::bytes(tensor::IMAGE, &[&png, &jpeg]),
            Expect::Pixels(vec![png_pixels.clone(), good_pixels.clone()]),
        ));
    }
    let corrupt: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let bad_images: Vec<(Vec<Vec<u8>>, &'static str)> = vec![
        (vec![corrupt], "unknown image format"),
        (vec![Vec::new()], "empty input"),
        (vec![jpeg[..jpeg.len() / 3].to_vec()], "JPEG"),
        (vec![png[..png.len() / 2].to_vec()], "PNG"),
        (
            vec![decompression_bomb(100_000, 100_000)],
            "exceeds the limit",
        ),
        (
            vec![jpeg.clone(), b"GIF89a not really".to_vec()],
            "IMAGE element 1",
        ),
    ];
    for (elements, says) in &bad_images {
        let refs: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
        cases.push((
            IMAGE_MODEL,
            Tensor::bytes(tensor::IMAGE, &refs),
            Expect::Fails { status: 400, says },
        ));
    }
    // Rejected by Triton itself before the backend: the batch must not notice.
    let mut wrong_shape = Tensor::bytes(tensor::IMAGE, &[&jpeg, &jpeg]);
    wrong_shape.shape = vec![1, 2];
    cases.push((
        IMAGE_MODEL,
        wrong_shape,
        Expect::Fails {
            status: 400,
            says: "shape",
        },
    ));
    cases.push((
        IMAGE_MODEL,
        Tensor::bytes("PROMPT", &[&jpeg]),
        Expect::Fails {
            status: 400,
            says: "PROMPT",
        },
    ));
    // Text: invalid UTF-8 among good sentences.
    for _ in 0..4 {
        cases.push((
            TEXT_MODEL_PAD0,
            Tensor::bytes(tensor::TEXT, &[b"a photo of a cat"]),
            Expect::Ids,
        ));
    }
    cases.push((
        TEXT_MODEL_PAD0,
        Tensor::bytes(tensor::TEXT, &[b"fine", b"\xff\xfe broken"]),
        Expect::Fails {
            status: 400,
            says: "TEXT element 1 is not valid UTF-8",
        },
    ));

    let barrier = Arc::new(Barrier::new(cases.len()));
    let url = server.http_url.clone();
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(model, input, expect)| {
            let barrier = Arc::clone(&barrier);
            let url = url.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let output = if model == IMAGE_MODEL {
                    tensor::PIXEL_VALUES
                } else {
                    tensor::INPUT_IDS
                };
                let outcome = http::infer(&url, model, std::slice::from_ref(&input), &[output]);
                (input.name.clone(), outcome, expect)
            })
        })
        .collect();

    let expected_ids = {
        let mut ids = vec![0i64; defaults::CONTEXT_LENGTH];
        ids[..6].copy_from_slice(&[49406, 320, 1125, 539, 320, 2368]);
        ids[6] = 49407;
        ids
    };
    for handle in handles {
        let (input, outcome, expect) = handle.join().expect("request thread");
        match (outcome, expect) {
            (Ok(outputs), Expect::Pixels(want)) => {
                let got = outputs[0].as_f32();
                assert!(
                    got == want.concat(),
                    "a good image in a batch with bad ones came back different"
                );
            }
            (Ok(outputs), Expect::Ids) => assert_eq!(outputs[0].as_i64(), expected_ids),
            (Err(failure), Expect::Fails { status, says }) => {
                assert_eq!(failure.status, status, "{failure:?}");
                assert!(
                    failure.message.contains(says),
                    "{input}: {:?} does not mention {says:?}",
                    failure.message
                );
            }
            (Ok(_), Expect::Fails { says, .. }) => {
                panic!("{input}: expected a failure mentioning {says:?}")
            }
            (Err(failure), _) => panic!("{input}: a good request failed: {failure:?}"),
        }
    }

    // The server survived and still answers correctly.
    let mut server = server;
    assert!(server.is_live(), "server died:\n{}", server.log());
    let again = infer_images(&server, IMAGE_MODEL, &[&jpeg]).expect("good request after the burst");
    assert!(again.as_f32() == good_pixels);

    // Triton's statistics show that batches of several requests really formed
    // and that the failures were counted against single requests.
    let (status, stats) =
        http::get(&server.http_url, &format!("/v2/models/{IMAGE_MODEL}/stats")).unwrap();
    assert_eq!(status, 200, "{stats}");
    let model = &stats["model_stats"][0];
    let batch_sizes: Vec<u64> = model["batch_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_size"].as_u64().unwrap())
        .collect();
    assert!(
        batch_sizes.iter().any(|&b| b > 2),
        "no multi-request batch formed: {batch_sizes:?}"
    );
    let failed = model["inference_stats"]["fail"]["count"].as_u64().unwrap();
    assert!(
        failed >= bad_images.len() as u64,
        "fail count {failed} in {stats}"
    );
}

#[test]
fn a_model_with_a_bad_config_fails_alone_and_says_why() {
    let repository = Repository::new();
    let serving = Serving::default();
    repository.add_text(TEXT_MODEL, &serving, &tokenizer_dir(), &[]);
    repository.add_text(
        "unknown_kind",
        &serving,
        &tokenizer_dir(),
        &[(param::KIND, "resize")],
    );
    repository.add_text(
        "bad_pad",
        &serving,
        &tokenizer_dir(),
        &[(param::PAD_TOKEN_ID, "end")],
    );
    repository.add_text(
        "no_tokenizer",
        &serving,
        &tokenizer_dir(),
        &[(param::TOKENIZER_FILE, "missing.json")],
    );
    repository.add_image(
        "bad_std",
        &serving,
        false,
        &[(param::IMAGE_STD, "0.2,0,0.2")],
    );

    let server = Server::start_tolerant(repository.path());
    let state_of = |name: &str| server.model_state(name);
    assert_eq!(state_of(TEXT_MODEL).0, "READY");
    for (name, says) in [
        ("unknown_kind", "unknown parameter kind='resize'"),
        ("bad_pad", "'pad_token_id' must be a whole number"),
        ("no_tokenizer", "missing.json"),
        ("bad_std", "'image_std' must be positive"),
    ] {
        let (state, reason) = state_of(name);
        assert_eq!(state, "UNAVAILABLE", "{name}: {reason}");
        assert!(
            reason.contains(says),
            "{name}: reason {reason:?} does not mention {says:?}"
        );
    }
    let ids = infer_text(&server, TEXT_MODEL, &[b"still serving"]).expect("the good model serves");
    assert_eq!(ids.shape, vec![1, defaults::CONTEXT_LENGTH as i64]);
}

/// Issue 14: a URL sent as an IMAGE element is just its bytes. The server
/// never fetches it: image_preprocess refuses it as an unknown image format
/// (the first bytes it names are the URL's own, not a fetched file's), and
/// the good requests batched with it still succeed. A listener on a local
/// port, named by one of the URLs, shows that nothing connects to it.
#[test]
fn urls_sent_as_image_bytes_are_refused_and_never_fetched() {
    let serving = Serving {
        max_batch_size: 16,
        queue_delay_us: Some(500_000),
        instances: 1,
    };
    let repository = Repository::new();
    repository.add_image(IMAGE_MODEL, &serving, false, &[]);
    let server = Server::start(repository.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let local = format!("http://{}/cat.jpg", listener.local_addr().unwrap());
    let jpeg = image("rocket.jpg");
    let good_pixels = library_pixels(&jpeg);

    // (elements, the one refused): each URL alone, one after a good image,
    // and good requests sent in the same burst, to share dynamic batches.
    let urls = ["https://example.com/cat.jpg", "file:///etc/passwd", &local];
    let mut cases: Vec<(Vec<Vec<u8>>, Option<usize>)> = Vec::new();
    for url in urls {
        cases.push((vec![url.as_bytes().to_vec()], Some(0)));
        cases.push((vec![jpeg.clone()], None));
    }
    cases.push((vec![jpeg.clone(), urls[0].as_bytes().to_vec()], Some(1)));

    let barrier = Arc::new(Barrier::new(cases.len()));
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(elements, refused)| {
            let barrier = Arc::clone(&barrier);
            let url = server.http_url.clone();
            std::thread::spawn(move || {
                let refs: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
                let input = Tensor::bytes(tensor::IMAGE, &refs);
                barrier.wait();
                let outcome = http::infer(&url, IMAGE_MODEL, &[input], &[tensor::PIXEL_VALUES]);
                (elements, refused, outcome)
            })
        })
        .collect();
    for handle in handles {
        let (elements, refused, outcome) = handle.join().expect("request thread");
        match (refused, outcome) {
            (Some(element), Err(failure)) => {
                let magic: Vec<String> = elements[element]
                    .iter()
                    .take(8)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let says = format!(
                    "IMAGE element {element}: unknown image format (first bytes: {})",
                    magic.join(" ")
                );
                assert_eq!(failure.status, 400, "{failure:?}");
                assert!(
                    failure.message.contains(&says),
                    "{:?} does not say {says:?}",
                    failure.message
                );
            }
            (Some(element), Ok(_)) => panic!(
                "the URL {:?} was accepted as an image",
                String::from_utf8_lossy(&elements[element])
            ),
            (None, Ok(outputs)) => assert!(
                outputs[0].as_f32() == good_pixels,
                "a good image batched with URLs came back different"
            ),
            (None, Err(failure)) => panic!("a good image failed: {failure:?}"),
        }
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("something connected to {local}: {other:?}"),
    }
}
