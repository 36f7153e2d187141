//! Multi-element requests with bad elements in every position, sent
//! concurrently so that they share dynamic batches in the real
//! `tritonserver`: every request is answered on its own, element by element.
//! A request with a bad element fails and names its first bad element; a
//! request of good elements gets exactly the library's pixels or token ids.

use std::sync::{Arc, Barrier};

use clip_contract::{defaults, model, tensor};
use harness::fixtures::{images, library_pixels, sentences, tokenizer_dir};
use harness::http::{self, Tensor};
use harness::repository::{Repository, Serving};
use harness::server::Server;

/// Each element of a request: good (its index into the good inputs) or bad.
#[derive(Clone, Copy, Debug)]
enum Element {
    Good(usize),
    Bad,
}

/// Every pattern of 1 to 3 elements with at least one bad one (each bad
/// element in every position, alone and together), and all-good requests
/// of 1 to 3 elements between them. Good elements cycle through `goods`
/// different inputs, so a response holding a neighbour's rows shows.
fn patterns(goods: usize) -> Vec<Vec<Element>> {
    let mut next = 0;
    let mut good = || {
        next += 1;
        Element::Good(next % goods)
    };
    let mut requests = Vec::new();
    for len in 1..=3usize {
        for mask in 0..(1u32 << len) {
            requests.push(
                (0..len)
                    .map(|i| {
                        if mask & (1 << i) != 0 {
                            Element::Bad
                        } else {
                            good()
                        }
                    })
                    .collect(),
            );
        }
    }
    // Interleave more all-good requests so good and bad ones neighbour each other.
    let mut interleaved = Vec::new();
    for (index, request) in requests.into_iter().enumerate() {
        interleaved.push(request);
        interleaved.push((0..1 + index % 3).map(|_| good()).collect());
    }
    interleaved
}

fn first_bad(request: &[Element]) -> Option<usize> {
    request.iter().position(|e| matches!(e, Element::Bad))
}

/// Sends every request at once, over as many threads, and returns the
/// outcomes in request order.
fn burst(
    url: &str,
    model: &str,
    output: &'static str,
    inputs: Vec<Tensor>,
) -> Vec<Result<Vec<Tensor>, http::Failure>> {
    let barrier = Arc::new(Barrier::new(inputs.len()));
    let handles: Vec<_> = inputs
        .into_iter()
        .map(|input| {
            let (barrier, url, model) = (Arc::clone(&barrier), url.to_owned(), model.to_owned());
            std::thread::spawn(move || {
                barrier.wait();
                http::infer(&url, &model, std::slice::from_ref(&input), &[output])
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("request thread"))
        .collect()
}

/// The element index a failure message names ("TEXT element 2 is ...").
fn named_element(message: &str, tensor_name: &str) -> Option<usize> {
    let rest = message.split(&format!("{tensor_name} element ")).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Checks one response against its request, element by element.
fn check(
    what: &str,
    request: &[Element],
    outcome: Result<Vec<Tensor>, http::Failure>,
    tensor_name: &str,
    row: impl Fn(&Tensor, usize) -> bool,
) {
    match (first_bad(request), outcome) {
        (Some(bad), Err(failure)) => {
            assert_eq!(failure.status, 400, "{what} {request:?}: {failure:?}");
            assert_eq!(
                named_element(&failure.message, tensor_name),
                Some(bad),
                "{what} {request:?}: {:?} must name element {bad}",
                failure.message
            );
        }
        (Some(bad), Ok(_)) => {
            panic!("{what} {request:?}: element {bad} is bad, yet the request got a result")
        }
        (None, Err(failure)) => {
            panic!("{what} {request:?}: a request of good elements failed: {failure:?}")
        }
        (None, Ok(outputs)) => {
            let output = &outputs[0];
            assert_eq!(
                output.shape[0],
                request.len() as i64,
                "{what} {request:?}: one row per element"
            );
            for index in 0..request.len() {
                assert!(
                    row(output, index),
                    "{what} {request:?}: element {index} is not its own result"
                );
            }
        }
    }
}

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
    let corrupt: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    // Two rounds, the second with the requests reversed, so each request
    // meets different neighbours in its batch.
    let mut requests = patterns(goods.len());
    for round in 0..2 {
        if round == 1 {
            requests.reverse();
        }
        let inputs: Vec<Tensor> = requests
            .iter()
            .map(|request| {
                let elements: Vec<&[u8]> = request
                    .iter()
                    .map(|e| match e {
                        Element::Good(i) => goods[*i].as_slice(),
                        Element::Bad => corrupt.as_slice(),
                    })
                    .collect();
                Tensor::bytes(tensor::IMAGE, &elements)
            })
            .collect();
        let outcomes = burst(
            &server.http_url,
            model::IMAGE_PREPROCESS,
            tensor::PIXEL_VALUES,
            inputs,
        );
        let stride = pixels[0].len();
        for (request, outcome) in requests.iter().zip(outcomes) {
            check(
                &format!("round {round}"),
                request,
                outcome,
                tensor::IMAGE,
                |output, index| {
                    let Element::Good(good) = request[index] else {
                        return false;
                    };
                    output.as_f32()[index * stride..(index + 1) * stride] == pixels[good][..]
                },
            );
        }
    }
    assert_shared_batches(&server, model::IMAGE_PREPROCESS);
}

#[test]
fn texts_with_bad_elements_in_every_position_share_batches_safely() {
    let repository = Repository::new();
    repository.add_text(model::TEXT_PREPROCESS, &serving(), &tokenizer_dir(), &[]);
    let server = Server::start(repository.path());

    let goods: Vec<_> = sentences().into_iter().take(5).collect();
    let width = defaults::CONTEXT_LENGTH;
    let bad: &[u8] = b"caf\xe9 au lait";

    let mut requests = patterns(goods.len());
    for round in 0..2 {
        if round == 1 {
            requests.reverse();
        }
        let inputs: Vec<Tensor> = requests
            .iter()
            .map(|request| {
                let elements: Vec<&[u8]> = request
                    .iter()
                    .map(|e| match e {
                        Element::Good(i) => goods[*i].text.as_bytes(),
                        Element::Bad => bad,
                    })
                    .collect();
                Tensor::bytes(tensor::TEXT, &elements)
            })
            .collect();
        let outcomes = burst(
            &server.http_url,
            model::TEXT_PREPROCESS,
            tensor::INPUT_IDS,
            inputs,
        );
        for (request, outcome) in requests.iter().zip(outcomes) {
            check(
                &format!("round {round}"),
                request,
                outcome,
                tensor::TEXT,
                |output, index| {
                    let Element::Good(good) = request[index] else {
                        return false;
                    };
                    output.as_i64()[index * width..(index + 1) * width]
                        == goods[good].end_padded()[..]
                },
            );
        }
    }
    assert_shared_batches(&server, model::TEXT_PREPROCESS);
}

/// Triton's statistics must show batches of several requests, or the test
/// proved nothing about sharing.
fn assert_shared_batches(server: &Server, model: &str) {
    let (status, stats) =
        http::get(&server.http_url, &format!("/v2/models/{model}/stats")).unwrap();
    assert_eq!(status, 200, "{stats}");
    let stats = &stats["model_stats"][0];
    let requests = stats["inference_stats"]["success"]["count"]
        .as_u64()
        .unwrap()
        + stats["inference_stats"]["fail"]["count"].as_u64().unwrap();
    let executions = stats["execution_count"].as_u64().unwrap();
    assert!(
        executions * 4 <= requests,
        "{requests} requests ran in {executions} executions: too few shared batches"
    );
}
