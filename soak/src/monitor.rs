//! The server's resident memory, threads and open file descriptors, read
//! from /proc at a fixed interval while the load runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Seconds into the load (negative: before it started).
    pub t: f64,
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
}

/// One reading of process `pid`, `None` once it is gone.
pub fn sample(pid: u32, t: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        t,
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
        fds,
    })
}

/// The command name of process `pid` (`tritonserver` for the server).
pub fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

pub struct Monitor {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Monitor {
    /// Samples `pid` every `interval`, timing from `start`.
    pub fn start(pid: u32, start: Instant, interval: Duration) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    match sample(pid, start.elapsed().as_secs_f64()) {
                        Some(s) => samples.push(s),
                        None => break,
                    }
                    next += interval;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        Monitor { stop, handle }
    }

    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Least-squares slope of RSS over the samples, in MiB per hour.
pub fn rss_slope_mib_per_hour(samples: &[Sample]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let hours: Vec<f64> = samples.iter().map(|s| s.t / 3600.0).collect();
    let mib: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    let (mx, my) = (hours.iter().sum::<f64>() / n, mib.iter().sum::<f64>() / n);
    let sxx: f64 = hours.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = hours
        .iter()
        .zip(&mib)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_steady_climb() {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: i as f64 * 360.0,
                rss_kib: 100 * 1024 + i * 1024,
                threads: 1,
                fds: 1,
            })
            .collect();
        let slope = rss_slope_mib_per_hour(&samples).unwrap();
        assert!((slope - 10.0).abs() < 1e-9, "{slope}");
    }

    #[test]
    fn this_process_can_be_read() {
        let me = sample(std::process::id(), 0.0).unwrap();
        assert!(me.rss_kib > 0 && me.threads >= 1 && me.fds >= 1);
    }
}
