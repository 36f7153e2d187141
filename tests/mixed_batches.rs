//! Multi-element requests with bad elements in every position, sent
//! concurrently so that they share dynamic batches in the real
//! `tritonserver`: every request is answered on its own, element by element.
//! A request with a bad element fails and names its first bad element; a
//! request of good elements gets exactly the library's pixels or token ids.
//! (Token ids for the encoder: tests/encoder_in_triton.rs.)

use clip_contract::{defaults, model, tensor};
use harness::fixtures::{images, library_pixels, sentences, tokenizer_dir};
use harness::http::Tensor;
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

#[test]
fn images_with_bad_elements_in_every_position_share_batches_safely() {
    let repository = Repository::new();
    repository.add_image(model::IMAGE_PREPROCESS, &serving(), false, &[]);
    let server = Server::start(repository.path());

    let goods: Vec<Vec<u8>> = ["rocket.jpg", "astronaut.png", "chelsea.gif", "coffee.bmp"]
        .iter()
        .map(|name| {
            images()
                .into_iter()
                .find(|(file, _)| file.ends_with(name))
                .expect("fixture")
                .1
        })
        .collect();
    let pixels: Vec<Vec<f32>> = goods.iter().map(|g| library_pixels(g)).collect();
    let stride = pixels[0].len();
    let corrupt: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let truncated = goods[0][..goods[0].len() / 2].to_vec();

    let burst = Burst {
        model: model::IMAGE_PREPROCESS,
        input: tensor::IMAGE,
        output: tensor::PIXEL_VALUES,
        goods,
        bads: vec![corrupt, truncated],
        tensor: |elements| Tensor::bytes(tensor::IMAGE, elements),
    };
    burst.check(&server, |output, row, good| {
        output.as_f32()[row * stride..(row + 1) * stride] == pixels[good][..]
    });
    assert_shared_batches(&server, model::IMAGE_PREPROCESS);
}

#[test]
fn texts_with_bad_elements_in_every_position_share_batches_safely() {
    let repository = Repository::new();
    repository.add_text(model::TEXT_PREPROCESS, &serving(), &tokenizer_dir(), &[]);
    let server = Server::start(repository.path());

    let sentences: Vec<_> = sentences().into_iter().take(5).collect();
    let width = defaults::CONTEXT_LENGTH;
    let burst = Burst {
        model: model::TEXT_PREPROCESS,
        input: tensor::TEXT,
        output: tensor::INPUT_IDS,
        goods: sentences
            .iter()
            .map(|s| s.text.clone().into_bytes())
            .collect(),
        bads: vec![b"caf\xe9 au lait".to_vec(), b"\xff".to_vec()],
        tensor: |elements| Tensor::bytes(tensor::TEXT, elements),
    };
    burst.check(&server, |output, row, good| {
        output.as_i64()[row * width..(row + 1) * width] == sentences[good].end_padded()[..]
    });
    assert_shared_batches(&server, model::TEXT_PREPROCESS);
}
