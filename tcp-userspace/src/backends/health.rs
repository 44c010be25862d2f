//! Active health checks: every `interval`, a TCP connect to each backend (closed at once).
//! `fall` failures in a row take a backend down, `rise` successes bring it back, as
//! HAProxy's `check`. A connect says only that something accepts connections: a backend
//! that accepts and then never answers passes (see the README).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{Backend, HealthSettings, LastCheck, Pool};

/// The checks of one pool; dropping it stops them.
pub struct HealthChecker {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts checking every backend of `pool` (nothing when checks are off).
pub fn spawn(pool: &Pool) -> HealthChecker {
    let settings = pool.settings.health;
    let tasks = if settings.enabled {
        pool.backends
            .iter()
            .map(|b| tokio::spawn(check_forever(b.clone(), settings)))
            .collect()
    } else {
        Vec::new()
    };
    HealthChecker { tasks }
}

async fn check_forever(backend: Arc<Backend>, s: HealthSettings) {
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut interval = tokio::time::interval(s.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let started = std::time::Instant::now();
        let result =
            tokio::time::timeout(s.timeout, tokio::net::TcpStream::connect(backend.addr)).await;
        let (ok, detail) = match result {
            Ok(Ok(stream)) => {
                drop(stream);
                (true, format!("connected in {:.1?}", started.elapsed()))
            }
            Ok(Err(e)) => (false, e.to_string()),
            Err(_) => (false, format!("no connect within {:?}", s.timeout)),
        };
        if let Ok(mut last) = backend.last_check.lock() {
            *last = Some(LastCheck {
                at_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_secs(),
                ok,
                detail: detail.clone(),
            });
        }
        if ok {
            successes += 1;
            failures = 0;
            if !backend.is_up() && successes >= s.rise {
                backend.set_up(true);
                tracing::info!(
                    "backend {} is up ({successes} checks passed)",
                    backend.target
                );
            }
        } else {
            backend.check_failed();
            failures += 1;
            successes = 0;
            if backend.is_up() && failures >= s.fall {
                backend.set_up(false);
                tracing::warn!(
                    "backend {} is down ({failures} checks failed, last: {detail})",
                    backend.target
                );
            }
        }
    }
}
