//! Multi-element requests with bad elements in every position, sent
//! concurrently so that they share dynamic batches in the real
//! `tritonserver`: every request is answered on its own, element by element.
//! A request with a bad element fails and names its first bad element; a
//! request of good elements gets exactly the library's pixels or token ids.
//! (Token ids for the encoder: tests/encoder_in_triton.rs.)

use clip_contract::{defaults, model, param, tensor};
use harness::fixtures::{image, library_pixels, sentences, tokenizer_dir, Sentence};
use harness::http::{self, Tensor};
use harness::mixed::{assert_shared_batches, Burst};
use harness::repository::{Repository, Serving};
use harness::server::Server;

fn serving() -> Serving {
    // A long queue delay lets the whole burst land in shared batches.
    Serving {
        max_batch_size: 64,
        queue_delay_us: Some(1_000_000),
        instances: 1,
    }
}

/// A burst at the image model: each good row must be exactly the library's
/// pixels of its photo.
fn check_images(server: &Server, goods: Vec<Vec<u8>>, bads: Vec<Vec<u8>>) -> Burst<'static> {
    let pixels: Vec<Vec<f32>> = goods.iter().map(|g| library_pixels(g)).collect();
    let stride = pixels[0].len();
    let burst = Burst {
        model: model::IMAGE_PREPROCESS,
        input: tensor::IMAGE,
        output: tensor::PIXEL_VALUES,
        goods,
        bads,
        tensor: |elements| Tensor::bytes(tensor::IMAGE, elements),
    };
    burst.check(server, |output, row, good| {
        output.as_f32()[row * stride..(row + 1) * stride] == pixels[good][..]
    });
    burst
}

/// A burst at the text model: each good row must be exactly its sentence's
/// token ids (padded with the end token, as the tokenizer files say).
fn check_texts(server: &Server, sentences: &[Sentence], bads: Vec<Vec<u8>>) {
    let width = defaults::CONTEXT_LENGTH;
    let burst = Burst {
        model: model::TEXT_PREPROCESS,
        input: tensor::TEXT,
        output: tensor::INPUT_IDS,
        goods: sentences
            .iter()
            .map(|s| s.text.clone().into_bytes())
            .collect(),
        bads,
        tensor: |elements| Tensor::bytes(tensor::TEXT, elements),
    };
    burst.check(server, |output, row, good| {
        output.as_i64()[row * width..(row + 1) * width] == sentences[good].end_padded()[..]
    });
}

#[test]
fn images_with_bad_elements_in_every_position_share_batches_safely() {
    let repository = Repository::new();
    repository.add_image(model::IMAGE_PREPROCESS, &serving(), false, &[]);
    let server = Server::start(repository.path());

    let goods: Vec<Vec<u8>> = ["rocket.jpg", "astronaut.png", "chelsea.gif", "coffee.bmp"]
        .into_iter()
        .map(image)
        .collect();
    let corrupt: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let truncated = goods[0][..goods[0].len() / 2].to_vec();
    check_images(&server, goods, vec![corrupt, truncated]);
    assert_shared_batches(&server, model::IMAGE_PREPROCESS);
}

#[test]
fn texts_with_bad_elements_in_every_position_share_batches_safely() {
    let repository = Repository::new();
    repository.add_text(model::TEXT_PREPROCESS, &serving(), &tokenizer_dir(), &[]);
    let server = Server::start(repository.path());

    let sentences: Vec<_> = sentences().into_iter().take(5).collect();
    let bads = vec![b"caf\xe9 au lait".to_vec(), b"\xff".to_vec()];
    check_texts(&server, &sentences, bads);
    assert_shared_batches(&server, model::TEXT_PREPROCESS);
}

/// Elements over the models' size limits (`max_image_bytes`,
/// `max_text_bytes`), in every position: each such request fails with
/// INVALID_ARG naming the element; the requests sharing its batches get
/// exactly their own results. The bad elements are valid images and
/// sentences: only their size is refused.
#[test]
fn oversized_elements_in_every_position_fail_their_requests_alone() {
    let limit = 100_000;
    let repository = Repository::new();
    let limit_text = limit.to_string();
    repository.add_image(
        model::IMAGE_PREPROCESS,
        &serving(),
        false,
        &[(param::MAX_IMAGE_BYTES, limit_text.as_str())],
    );
    repository.add_text(
        model::TEXT_PREPROCESS,
        &serving(),
        &tokenizer_dir(),
        &[(param::MAX_TEXT_BYTES, "64")],
    );
    let server = Server::start(repository.path());

    let goods: Vec<Vec<u8>> = ["tall.jpg", "chelsea_exif_rot.jpg", "coffee_q90.jpg"]
        .into_iter()
        .map(image)
        .collect();
    let bads: Vec<Vec<u8>> = ["rocket.jpg", "large_2mp.jpg"]
        .into_iter()
        .map(image)
        .collect();
    assert!(goods.iter().all(|g| g.len() <= limit) && bads.iter().all(|b| b.len() > limit));
    let images = check_images(&server, goods, bads);

    let sentences: Vec<_> = sentences()
        .into_iter()
        .filter(|s| s.text.len() <= 64)
        .take(4)
        .collect();
    let bads = vec![
        "a photo of a cat ".repeat(4).into_bytes(),
        "x".repeat(100_000).into_bytes(),
    ];
    check_texts(&server, &sentences, bads);

    // The message names the size, the limit and the parameter that sets it.
    let failure = http::infer(
        &server.http_url,
        model::IMAGE_PREPROCESS,
        &[Tensor::bytes(
            tensor::IMAGE,
            &[&images.goods[0], &images.bads[0]],
        )],
        &[tensor::PIXEL_VALUES],
    )
    .expect_err("over the limit");
    assert_eq!(failure.status, 400, "{failure:?}");
    assert!(
        failure.message.contains(&format!(
            "IMAGE element 1 is {} bytes, over this model's limit of {limit} (parameter 'max_image_bytes')",
            images.bads[0].len()
        )),
        "{failure:?}"
    );
}
