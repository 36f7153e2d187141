//! Measures the two ways `encode` could keep several requests in flight:
//! parallel unary `ModelInfer` calls (what the client uses) and one
//! bidirectional `ModelStreamInfer` stream with the same number of
//! requests outstanding. Same sentences, same batch size, one run.
//!
//! cargo run --release -p clip-client --example stream_vs_unary -- grpc://localhost:8001 [requests] [batch] [in-flight]

use std::time::Instant;

use clip_client::{bytes_request, Triton};
use clip_contract::{model, tensor};
use futures_util::{stream, StreamExt};

fn requests(count: usize, batch: usize) -> Vec<clip_client::proto::ModelInferRequest> {
    (0..count)
        .map(|r| {
            let sentences: Vec<String> = (0..batch)
                .map(|i| format!("sentence {r} {i} of the benchmark"))
                .collect();
            let items: Vec<&[u8]> = sentences.iter().map(|s| s.as_bytes()).collect();
            bytes_request(
                model::TEXT_ENSEMBLE,
                tensor::TEXT,
                tensor::EMBEDDING,
                &items,
            )
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).map_or("grpc://localhost:8001", String::as_str);
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (count, batch, in_flight) = (arg(2, 2000), arg(3, 8), arg(4, 4));
    let triton = Triton::connect(url).await?;
    // Warm-up on both paths.
    for request in requests(20, batch) {
        triton.infer(request).await?;
    }

    for round in 0..3 {
        let start = Instant::now();
        let mut unary = stream::iter(requests(count, batch))
            .map(|request| triton.infer(request))
            .buffer_unordered(in_flight);
        while let Some(response) = unary.next().await {
            response?;
        }
        let unary_rate = (count * batch) as f64 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        let (sender, receiver) = tokio::sync::mpsc::channel(in_flight);
        let outgoing = tokio_stream_from(receiver);
        let mut grpc = triton.grpc();
        let mut pending = requests(count, batch).into_iter();
        for request in pending.by_ref().take(in_flight) {
            sender.send(request).await?;
        }
        let mut responses = grpc.model_stream_infer(outgoing).await?.into_inner();
        let mut received = 0;
        while received < count {
            let response = responses.message().await?.ok_or("stream ended early")?;
            if !response.error_message.is_empty() {
                return Err(response.error_message.into());
            }
            received += 1;
            if let Some(request) = pending.next() {
                sender.send(request).await?;
            }
        }
        drop(sender);
        let stream_rate = (count * batch) as f64 / start.elapsed().as_secs_f64();
        println!(
            "round {round}: {count} requests of {batch}, {in_flight} in flight: unary {unary_rate:.0} items/s, stream {stream_rate:.0} items/s"
        );
    }
    Ok(())
}

/// An mpsc receiver as the request stream tonic sends.
fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
