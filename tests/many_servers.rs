//! clip-client over three real tritonservers serving one repository: the
//! work is spread over all of them, a server killed mid-job loses no item
//! (every input gets its embedding, in order, from the others), and a
//! server that comes back is used again.

use std::time::Duration;

use clip_client::{Client, ClientOptions, ConnectOptions, EncodeOptions};
use clip_contract::model;
use harness::http;
use harness::server::{tiny_clip_repository, Server};

/// Requests `model` has answered on `server` (Triton's own count).
fn requests(server: &Server) -> u64 {
    let path = format!("/v2/models/{}/stats", model::TEXT_ENSEMBLE);
    let (status, stats) = http::get(&server.http_url, &path).unwrap();
    assert_eq!(status, 200, "{stats}");
    stats["model_stats"][0]["inference_stats"]["success"]["count"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_job_spreads_over_servers_survives_a_killed_one_and_uses_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("repository");
    tiny_clip_repository(&repository, &["--no-warmup"]);
    let mut servers: Vec<Server> = (0..3).map(|_| Server::start(&repository)).collect();
    let list = servers
        .iter()
        .map(|s| s.grpc_url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let sentences: Vec<String> = (0..600).map(|i| format!("sentence number {i}")).collect();
    let options = EncodeOptions {
        batch_size: 4,
        concurrency: 6,
        ..EncodeOptions::default()
    };

    harness::runtime().block_on(async {
        // The reference: every sentence through the first server alone.
        let single = Client::connect(&servers[0].grpc_url).await.unwrap();
        let expected: Vec<Vec<f32>> = single
            .encode(&sentences, &options)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.result.unwrap())
            .collect();
        let before: Vec<u64> = servers.iter().map(requests).collect();

        let client = Client::connect_with(
            &list,
            ClientOptions {
                connect: ConnectOptions {
                    call_timeout: Duration::from_secs(30),
                    ..ConnectOptions::default()
                },
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
        let check = |encoded: Vec<clip_client::Encoded>, what: &str| {
            assert_eq!(encoded.len(), sentences.len(), "{what}");
            for (i, item) in encoded.iter().enumerate() {
                assert_eq!(item.index, i, "{what}: out of order");
                let got = item
                    .result
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{what}: item {i}: {e}"));
                assert_eq!(got, &expected[i], "{what}: item {i}");
            }
        };

        // Balanced: 150 requests over three servers.
        check(client.encode(&sentences, &options).await.unwrap(), "all up");
        let counts: Vec<u64> = servers
            .iter()
            .zip(&before)
            .map(|(s, b)| requests(s) - b)
            .collect();
        eprintln!("requests per server: {counts:?}");
        let (low, high) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert_eq!(counts.iter().sum::<u64>(), 150, "{counts:?}");
        assert!(*high as f64 <= *low as f64 * 1.2, "unbalanced: {counts:?}");

        // One server killed as the first result comes in: nothing is lost.
        let mut victim = Some(&mut servers[1]);
        let mut encoded = Vec::new();
        let summary = client
            .encode_each(&sentences, &options, |item| {
                if let Some(server) = victim.take() {
                    server.kill();
                }
                encoded.push(item);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(summary.failed, 0);
        check(encoded, "one server killed");
        let health = client.health().await.unwrap();
        assert!(!health.ok(), "{health}");
        assert!(health.to_string().contains("NOT USABLE"), "{health}");

        // Back on the same port: the next job uses it again.
        servers[1].restart();
        let before = requests(&servers[1]);
        tokio::time::sleep(Duration::from_secs(6)).await;
        check(
            client.encode(&sentences, &options).await.unwrap(),
            "restarted",
        );
        assert!(
            requests(&servers[1]) - before >= 30,
            "the restarted server is unused"
        );
        assert!(client.health().await.unwrap().ok());
    });
}
