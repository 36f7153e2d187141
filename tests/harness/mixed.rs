//! Multi-element requests with bad elements in every position, sent at once
//! so that they share dynamic batches, each response checked element by
//! element: what every per-request path of the backend must survive.

use std::sync::{Arc, Barrier};

use crate::http::{self, Tensor};
use crate::server::Server;

/// Each element of a request: good (its index into the good inputs) or bad.
#[derive(Clone, Copy, Debug)]
pub enum Element {
    Good(usize),
    Bad,
}

/// Every pattern of 1 to 3 elements with at least one bad one (each bad
/// element in every position, alone and together), and all-good requests
/// of 1 to 3 elements between them. Good elements cycle through `goods`
/// different inputs, so a response holding a neighbour's rows shows.
pub fn patterns(goods: usize) -> Vec<Vec<Element>> {
    let mut next = 0;
    let mut good = || {
        next += 1;
        Element::Good(next % goods)
    };
    let mut requests = Vec::new();
    for len in 1..=3usize {
        for mask in 0..(1u32 << len) {
            let request = (0..len)
                .map(|i| {
                    if mask & (1 << i) != 0 {
                        Element::Bad
                    } else {
                        good()
                    }
                })
                .collect();
            requests.push(request);
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

/// One model under a burst of mixed requests.
pub struct Burst<'a> {
    pub model: &'a str,
    /// The input tensor's name, as failure messages name it ("IMAGE element 1: ...").
    pub input: &'a str,
    pub output: &'static str,
    /// The payload of each good element, and of the bad ones (used in turn).
    pub goods: Vec<Vec<u8>>,
    pub bads: Vec<Vec<u8>>,
    /// One request of these elements.
    pub tensor: fn(&[&[u8]]) -> Tensor,
}

impl Burst<'_> {
    /// Sends every pattern at once, twice (the second time in reverse order,
    /// so each request meets other neighbours), and checks every response:
    /// a request with a bad element fails with 400 naming its first bad
    /// element; any other gets one row per element, and `row(output, i, g)`
    /// must hold for its row `i`, whose element is good input `g`.
    pub fn check(&self, server: &Server, row: impl Fn(&Tensor, usize, usize) -> bool) {
        let mut requests = patterns(self.goods.len());
        for round in 0..2 {
            if round == 1 {
                requests.reverse();
            }
            let inputs: Vec<Tensor> = requests
                .iter()
                .enumerate()
                .map(|(index, request)| {
                    let elements: Vec<&[u8]> = request
                        .iter()
                        .enumerate()
                        .map(|(position, element)| match element {
                            Element::Good(good) => self.goods[*good].as_slice(),
                            Element::Bad => &self.bads[(index + position) % self.bads.len()],
                        })
                        .collect();
                    (self.tensor)(&elements)
                })
                .collect();
            let outcomes = burst(&server.http_url, self.model, self.output, inputs);
            for (request, outcome) in requests.iter().zip(outcomes) {
                let what = format!("{} round {round} {request:?}", self.model);
                self.check_one(&what, request, outcome, &row);
            }
        }
    }

    fn check_one(
        &self,
        what: &str,
        request: &[Element],
        outcome: Result<Vec<Tensor>, http::Failure>,
        row: &impl Fn(&Tensor, usize, usize) -> bool,
    ) {
        let first_bad = request.iter().position(|e| matches!(e, Element::Bad));
        match (first_bad, outcome) {
            (Some(bad), Err(failure)) => {
                assert_eq!(failure.status, 400, "{what}: {failure:?}");
                assert_eq!(
                    named_element(&failure.message, self.input),
                    Some(bad),
                    "{what}: {:?} must name element {bad}",
                    failure.message
                );
            }
            (Some(bad), Ok(_)) => {
                panic!("{what}: element {bad} is bad, yet the request got a result")
            }
            (None, Err(failure)) => {
                panic!("{what}: a request of good elements failed: {failure:?}")
            }
            (None, Ok(outputs)) => {
                let output = &outputs[0];
                assert_eq!(
                    output.shape[0],
                    request.len() as i64,
                    "{what}: one row per element"
                );
                for (index, element) in request.iter().enumerate() {
                    let Element::Good(good) = *element else {
                        unreachable!("an all-good request")
                    };
                    assert!(
                        row(output, index, good),
                        "{what}: element {index} is not its own result"
                    );
                }
            }
        }
    }
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

/// Triton's statistics must show batches of several requests, or the burst
/// proved nothing about sharing them: at least four requests per execution.
pub fn assert_shared_batches(server: &Server, model: &str) {
    let (status, stats) =
        http::get(&server.http_url, &format!("/v2/models/{model}/stats")).unwrap();
    assert_eq!(status, 200, "{stats}");
    let stats = &stats["model_stats"][0];
    let count = |outcome: &str| stats["inference_stats"][outcome]["count"].as_u64().unwrap();
    let requests = count("success") + count("fail");
    let executions = stats["execution_count"].as_u64().unwrap();
    assert!(
        executions * 4 <= requests,
        "{model}: {requests} requests ran in {executions} executions: too few shared batches"
    );
}
