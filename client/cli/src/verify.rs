//! `clip-client verify`: every server against the repository's conformance probes.

use std::process::ExitCode;

use clip_client::Client;

/// Exit status when a probe falls below the threshold or an ensemble cannot be checked.
const FAILED: u8 = 4;

pub async fn verify(client: &Client, min_cosine: f32) -> anyhow::Result<ExitCode> {
    let verifications = client.verify().await?;
    let mut failed = 0;
    for check in &verifications {
        match &check.outcome {
            Ok(probes) => {
                for (probe, cosine) in probes {
                    let verdict = if *cosine >= min_cosine {
                        "ok"
                    } else {
                        "FAILED"
                    };
                    println!(
                        "{}  {:<12} {probe:<48} cosine {cosine:.6}  {verdict}",
                        check.server, check.model
                    );
                }
            }
            Err(problem) => println!(
                "{}  {:<12} NOT CHECKED: {problem}",
                check.server, check.model
            ),
        }
        if !check.passed(min_cosine) {
            failed += 1;
        }
    }
    if failed == 0 {
        println!(
            "verified: {} ensembles match their probes (cosine >= {min_cosine})",
            verifications.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "verify: {failed} of {} ensembles differ from the probes repo-gen stored \
             (cosine < {min_cosine}) or could not be checked",
            verifications.len()
        );
        Ok(ExitCode::from(FAILED))
    }
}
