//! [`Servers`]: several Triton servers holding the same repository, used as
//! one. Calls go round-robin over the servers in rotation; a server whose
//! call fails transiently (down, restarting, connection lost) leaves the
//! rotation for a while and the call is tried on another at once. A server
//! out of rotation is tried again when its time is up, so a restarted one
//! is used again. A job goes on while at least one server answers.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::triton::{ConnectOptions, Triton};
use crate::Error;

/// Longest time a failing server stays out of rotation before it is tried again.
const MAX_TIME_OUT: Duration = Duration::from_secs(5);

/// The servers of one deployment. Cheap to clone; clones share the
/// connections and what is known of each server's health.
#[derive(Debug, Clone)]
pub struct Servers {
    members: Arc<[Member]>,
    next: Arc<AtomicUsize>,
    options: ConnectOptions,
}

#[derive(Debug)]
struct Member {
    triton: Triton,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// Transient failures in a row.
    failures: u32,
    out_until: Option<Instant>,
}

impl Member {
    fn in_rotation(&self, now: Instant) -> bool {
        let health = self.health.lock().expect("health lock");
        health.out_until.is_none_or(|until| until <= now)
    }

    fn out_until(&self) -> Option<Instant> {
        self.health.lock().expect("health lock").out_until
    }

    fn succeeded(&self) {
        *self.health.lock().expect("health lock") = Health::default();
    }

    /// Out of rotation for `base` doubled per failure in a row, at most [`MAX_TIME_OUT`].
    fn failed(&self, base: Duration) {
        let mut health = self.health.lock().expect("health lock");
        health.failures = health.failures.saturating_add(1);
        let time_out = base
            .saturating_mul(1 << health.failures.min(16))
            .min(MAX_TIME_OUT);
        health.out_until = Some(Instant::now() + time_out);
    }
}

/// The addresses in `list`: comma-separated, each as [`Triton::connect_with`]
/// takes it.
fn addresses(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `url` once per address its host name resolves to (a Kubernetes headless
/// service resolves to every ready pod), or as it is when the host is an IP
/// address, resolves to one address, or does not resolve at all (the
/// connection then reports the failure). Over TLS the certificate is still
/// checked against the name.
async fn expand(url: &str, options: &ConnectOptions) -> Vec<(String, ConnectOptions)> {
    let single = || vec![(url.to_owned(), options.clone())];
    let Some((scheme, rest)) = url.split_once("://") else {
        return single();
    };
    let authority = rest.trim_end_matches('/');
    let Some((host, port)) = authority.rsplit_once(':') else {
        return single();
    };
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return single();
    }
    let Ok(found) = tokio::net::lookup_host(authority).await else {
        return single();
    };
    let mut found: Vec<std::net::SocketAddr> = found.collect();
    found.sort();
    found.dedup();
    if found.len() < 2 {
        return single();
    }
    found
        .into_iter()
        .map(|address| {
            let mut options = options.clone();
            options.tls.domain.get_or_insert_with(|| host.to_owned());
            let ip = match address.ip() {
                std::net::IpAddr::V4(ip) => ip.to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            };
            (format!("{scheme}://{ip}:{port}"), options)
        })
        .collect()
}

impl Servers {
    /// Connects to every server of `list` (comma-separated addresses; a
    /// name may resolve to several). One server is connected as
    /// [`Triton::connect_with`] does, and fails the same way. Of several,
    /// those that do not answer now start out of rotation; it fails only
    /// when none answers.
    pub async fn connect(list: &str, options: ConnectOptions) -> Result<Servers, Error> {
        let mut targets = Vec::new();
        for url in addresses(list) {
            targets.extend(expand(&url, &options).await);
        }
        // Retries happen here, across servers; each server's call is one try.
        let once = |options: ConnectOptions| ConnectOptions {
            retries: 0,
            ..options
        };
        let members: Vec<Member> = match targets.as_slice() {
            [] => {
                return Err(Error::InvalidUrl {
                    url: list.to_owned(),
                    reason: "no server address given".into(),
                })
            }
            [(url, options)] => vec![Member {
                triton: Triton::connect_with(url, once(options.clone())).await?,
                health: Mutex::default(),
            }],
            many => many
                .iter()
                .map(|(url, options)| {
                    Ok(Member {
                        triton: Triton::connect_lazy(url, once(options.clone()))?,
                        health: Mutex::default(),
                    })
                })
                .collect::<Result<_, Error>>()?,
        };
        let servers = Servers {
            members: members.into(),
            next: Arc::default(),
            options,
        };
        if servers.members.len() > 1 {
            servers.check_all().await?;
        }
        Ok(servers)
    }

    /// Asks every server whether it is live; those that are not leave the
    /// rotation. Fails, naming each server's problem, when none is.
    async fn check_all(&self) -> Result<(), Error> {
        let checks = self.members.iter().map(|m| m.triton.server_live());
        let outcomes = futures_util::future::join_all(checks).await;
        let mut problems = Vec::new();
        for (member, outcome) in self.members.iter().zip(outcomes) {
            match outcome {
                Ok(true) => member.succeeded(),
                Ok(false) => {
                    member.failed(self.options.retry_delay);
                    problems.push(format!("{}: not live", member.triton.url()));
                }
                Err(error) => {
                    member.failed(self.options.retry_delay);
                    problems.push(format!("{}: {error}", member.triton.url()));
                }
            }
        }
        if problems.len() == self.members.len() {
            return Err(Error::Unreachable {
                url: self.urls().join(","),
                detail: format!("no server answered: {}", problems.join("; ")),
            });
        }
        Ok(())
    }

    /// Every server's address, in the order given (names resolved).
    pub fn urls(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.triton.url()).collect()
    }

    /// Every server's connection, in rotation or not.
    pub fn each(&self) -> impl Iterator<Item = &Triton> {
        self.members.iter().map(|m| &m.triton)
    }

    /// The next server in rotation, or, when every one is out, the one
    /// whose time out ends first.
    fn pick(&self) -> &Member {
        let now = Instant::now();
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|i| &self.members[(start + i) % count])
            .find(|m| m.in_rotation(now))
            .unwrap_or_else(|| {
                self.members
                    .iter()
                    .min_by_key(|m| m.out_until())
                    .expect("at least one server")
            })
    }

    fn any_in_rotation(&self) -> bool {
        let now = Instant::now();
        self.members.iter().any(|m| m.in_rotation(now))
    }

    /// Runs `call` on a server (a cheap clone of its connection); a transient failure takes that server out of
    /// rotation and the call is tried again, on another server at once, or,
    /// when none is left, after a wait that doubles each time, up to
    /// `retries` waits. Other errors (an invalid input, a deadline) return
    /// as they are.
    pub async fn call<R, F, Fut>(&self, call: F) -> Result<R, Error>
    where
        F: Fn(Triton) -> Fut,
        Fut: Future<Output = Result<R, Error>>,
    {
        let mut delay = self.options.retry_delay;
        let mut waits = 0;
        let mut tries = 0;
        loop {
            let member = self.pick();
            tries += 1;
            match call(member.triton.clone()).await {
                Ok(result) => {
                    member.succeeded();
                    return Ok(result);
                }
                Err(error) if error.is_transient() => {
                    member.failed(self.options.retry_delay);
                    if self.any_in_rotation() {
                        continue;
                    }
                    if waits >= self.options.retries {
                        return Err(error.after_tries(tries - 1));
                    }
                    waits += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_splits_on_commas_and_ignores_blanks() {
        assert_eq!(
            addresses(" grpc://a:1, grpc://b:2 ,,grpc://c"),
            ["grpc://a:1", "grpc://b:2", "grpc://c"]
        );
        assert!(addresses(" , ").is_empty());
    }

    #[tokio::test]
    async fn ip_addresses_and_single_names_are_kept_as_given() {
        let options = ConnectOptions::default();
        for url in [
            "grpc://127.0.0.1:8001",
            "grpc://[::1]:8001",
            "grpc://localhost:8001",
        ] {
            let expanded = expand(url, &options).await;
            assert_eq!(expanded.len(), 1, "{url}");
            assert_eq!(expanded[0].0, url);
        }
    }

    fn member() -> Member {
        Member {
            triton: Triton::connect_lazy("grpc://127.0.0.1:1", ConnectOptions::default()).unwrap(),
            health: Mutex::default(),
        }
    }

    #[tokio::test]
    async fn a_failing_server_leaves_the_rotation_for_a_doubling_time_and_comes_back() {
        let servers = Servers {
            members: vec![member(), member()].into(),
            next: Arc::default(),
            options: ConnectOptions::default(),
        };
        let first = &servers.members[0];
        first.failed(Duration::from_millis(100));
        let now = Instant::now();
        assert!(!first.in_rotation(now));
        for _ in 0..4 {
            assert!(std::ptr::eq(servers.pick(), &servers.members[1]));
        }
        first.failed(Duration::from_millis(100));
        let out = first.out_until().unwrap() - now;
        assert!(out > Duration::from_millis(300), "{out:?}");
        first.failed(Duration::from_secs(10));
        assert!(first.out_until().unwrap() <= Instant::now() + MAX_TIME_OUT);
        first.succeeded();
        assert!(first.in_rotation(Instant::now()));
        let picked: Vec<bool> = (0..4)
            .map(|_| std::ptr::eq(servers.pick(), first))
            .collect();
        assert_eq!(picked.iter().filter(|p| **p).count(), 2, "round robin");
    }
}
