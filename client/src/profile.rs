//! `profile`: where the time of one request goes, as a tree like
//! CLIP-as-service's: round trip, client-server network, server, and each
//! model inside the ensemble split into queue, input, inference, output.
//!
//! The server side comes from Triton's cumulative statistics, read before
//! and after a run of requests; other clients' traffic in between would
//! count too, so profile an otherwise idle server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::input::Input;
use crate::{proto, Error};

/// Mean times of one model's requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelTiming {
    pub model: String,
    /// From arrival at the model to its response.
    pub total: Duration,
    pub queue: Duration,
    pub input: Duration,
    pub infer: Duration,
    pub output: Duration,
}

/// Mean times of one request of one item, over `requests` requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub ensemble: String,
    pub requests: u64,
    /// Measured by the client around the gRPC call.
    pub roundtrip: Duration,
    /// The ensemble's own time on the server.
    pub server: Duration,
    /// The ensemble's steps, in order.
    pub steps: Vec<ModelTiming>,
}

impl Profile {
    /// Round trip minus server time: the network, gRPC and (de)serialising.
    pub fn network(&self) -> Duration {
        self.roundtrip.saturating_sub(self.server)
    }
}

/// The counters `profile` reads, summed over a model's versions.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    count: u64,
    total_ns: u64,
    queue_ns: u64,
    input_ns: u64,
    infer_ns: u64,
    output_ns: u64,
}

impl Counters {
    fn of(stats: &[proto::ModelStatistics]) -> Counters {
        let ns = |d: &Option<proto::StatisticDuration>| d.as_ref().map_or(0, |d| d.ns);
        stats
            .iter()
            .filter_map(|s| s.inference_stats.as_ref())
            .fold(Counters::default(), |acc, s| Counters {
                count: acc.count + s.success.as_ref().map_or(0, |d| d.count),
                total_ns: acc.total_ns + ns(&s.success),
                queue_ns: acc.queue_ns + ns(&s.queue),
                input_ns: acc.input_ns + ns(&s.compute_input),
                infer_ns: acc.infer_ns + ns(&s.compute_infer),
                output_ns: acc.output_ns + ns(&s.compute_output),
            })
    }

    /// Mean per request of `after - before`.
    fn mean_since(&self, before: &Counters, model: &str) -> ModelTiming {
        let count = self.count.saturating_sub(before.count).max(1);
        let mean = |a: u64, b: u64| Duration::from_nanos(a.saturating_sub(b) / count);
        ModelTiming {
            model: model.to_owned(),
            total: mean(self.total_ns, before.total_ns),
            queue: mean(self.queue_ns, before.queue_ns),
            input: mean(self.input_ns, before.input_ns),
            infer: mean(self.infer_ns, before.infer_ns),
            output: mean(self.output_ns, before.output_ns),
        }
    }
}

impl Client {
    async fn counters(&self, models: &[String]) -> Result<HashMap<String, Counters>, Error> {
        let mut out = HashMap::new();
        for model in models {
            // Summed over every server: the requests may go to any of them.
            let mut stats = Vec::new();
            for triton in self.servers.each() {
                stats.extend(triton.model_statistics(model).await?);
            }
            out.insert(model.clone(), Counters::of(&stats));
        }
        Ok(out)
    }

    /// Sends `input` alone `requests` times, one after another (after one
    /// warm-up request), and reports the mean time of each part.
    pub async fn profile(&self, input: impl Into<Input>, requests: u64) -> Result<Profile, Error> {
        let input = input.into();
        let info = self.model(input.modality_or_error(0)?).await?.clone();
        let requests = requests.max(1);
        let payload = self
            .payload_of(&input)
            .await
            .map_err(|reason| crate::ItemError {
                index: 0,
                source_text: input.short_source(),
                failure: crate::ItemFailure::Read(reason),
            })?;
        let item = [(0, payload)];
        // Warm-up: first requests pay for lazy initialisation on the server.
        self.infer(&info, &item).await?;

        let mut models = vec![info.name.clone()];
        models.extend(info.steps.iter().cloned());
        let before = self.counters(&models).await?;
        let mut roundtrip = Duration::ZERO;
        for _ in 0..requests {
            let start = Instant::now();
            self.infer(&info, &item).await?;
            roundtrip += start.elapsed();
        }
        let after = self.counters(&models).await?;
        let timing = |model: &String| after[model].mean_since(&before[model], model);
        Ok(Profile {
            ensemble: info.name.clone(),
            requests,
            roundtrip: roundtrip / requests as u32,
            server: timing(&info.name).total,
            steps: info.steps.iter().map(timing).collect(),
        })
    }
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = |d: Duration| {
            let whole = self.roundtrip.as_secs_f64();
            if whole > 0.0 {
                100.0 * d.as_secs_f64() / whole
            } else {
                0.0
            }
        };
        writeln!(
            f,
            "{}: mean of {} requests of one input",
            self.ensemble, self.requests
        )?;
        let line = |f: &mut std::fmt::Formatter<'_>, label: &str, d: Duration| {
            writeln!(f, "{label:<36} {:>10} {:>6.1}%", millis(d), share(d))
        };
        line(f, "roundtrip", self.roundtrip)?;
        line(f, "├── client-server network", self.network())?;
        line(f, "└── server", self.server)?;
        for (i, step) in self.steps.iter().enumerate() {
            let branch = if i + 1 == self.steps.len() {
                "└──"
            } else {
                "├──"
            };
            line(f, &format!("    {branch} {}", step.model), step.total)?;
            let stem = if i + 1 == self.steps.len() {
                " "
            } else {
                "│"
            };
            for (part, d) in [
                ("queue", step.queue),
                ("input", step.input),
                ("inference", step.infer),
                ("output", step.output),
            ] {
                line(f, &format!("    {stem}   · {part}"), d)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(count: u64, ns: [u64; 5]) -> proto::ModelStatistics {
        let d = |n| Some(proto::StatisticDuration { count, ns: n });
        proto::ModelStatistics {
            inference_stats: Some(proto::InferStatistics {
                success: d(ns[0]),
                queue: d(ns[1]),
                compute_input: d(ns[2]),
                compute_infer: d(ns[3]),
                compute_output: d(ns[4]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn timings_are_means_of_the_difference() {
        let before = Counters::of(&[stats(10, [1000; 5])]);
        let after = Counters::of(&[stats(14, [9000, 1400, 1800, 5000, 1400])]);
        let t = after.mean_since(&before, "m");
        assert_eq!(t.total, Duration::from_nanos(2000));
        assert_eq!(t.queue, Duration::from_nanos(100));
        assert_eq!(t.input, Duration::from_nanos(200));
        assert_eq!(t.infer, Duration::from_nanos(1000));
        assert_eq!(t.output, Duration::from_nanos(100));
    }

    #[test]
    fn versions_are_summed() {
        let c = Counters::of(&[stats(1, [10; 5]), stats(2, [20; 5])]);
        assert_eq!((c.count, c.total_ns, c.infer_ns), (3, 30, 30));
    }

    #[test]
    fn tree_shows_network_as_the_rest_of_the_roundtrip() {
        let profile = Profile {
            ensemble: "clip_text".into(),
            requests: 5,
            roundtrip: Duration::from_millis(10),
            server: Duration::from_millis(8),
            steps: vec![
                ModelTiming {
                    model: "clip_text_preprocess".into(),
                    total: Duration::from_millis(1),
                    ..Default::default()
                },
                ModelTiming {
                    model: "clip_text_encoder".into(),
                    total: Duration::from_millis(7),
                    ..Default::default()
                },
            ],
        };
        assert_eq!(profile.network(), Duration::from_millis(2));
        let text = profile.to_string();
        assert!(text.contains("├── client-server network"), "{text}");
        assert!(text.contains("2.00 ms"), "{text}");
        assert!(text.contains("20.0%"), "{text}");
        assert!(text.contains("└── clip_text_encoder"), "{text}");
    }
}
