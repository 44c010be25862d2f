//! Upstream pools: the backends connections are relayed to, how one is chosen, and what is
//! known of each (health, connections, counters).
//!
//! A [`Pool`] is immutable once built and shared (`Arc`) by the queue threads, the health
//! checker, the control socket and the metrics; a reload builds a new one, keeping the
//! [`Backend`] objects of addresses that stay (so their health and counts carry over), and
//! every connection keeps the backend it was given.

pub mod health;
pub mod proxy_protocol;

use std::{
    net::{SocketAddr, ToSocketAddrs as _},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Serialize;

pub use proxy_protocol::ProxyVersion;

/// How a backend is chosen for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// In turn, each as often as its weight says (smooth weighted round-robin, as nginx).
    RoundRobin,
    /// The one with the fewest connections for its weight.
    LeastConn,
}

impl Balance {
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConn => "least-conn",
        }
    }
}

/// Active TCP health checks (a connect, then close), per backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub enabled: bool,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
}

impl Default for HealthSettings {
    /// HAProxy's defaults: `inter 2s`, `rise 2`, `fall 3`; a connect may take 1 s.
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// One `--upstream HOST:PORT[,weight=N]`, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub target: String,
    pub weight: u32,
}

impl std::str::FromStr for BackendSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut parts = s.split(',');
        let target = parts.next().unwrap_or_default().trim().to_string();
        if target
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            bail!("{s:?}: expected HOST:PORT[,weight=N]");
        }
        let mut weight = 1;
        for opt in parts {
            match opt.trim().split_once('=') {
                Some(("weight", w)) => {
                    weight = w
                        .parse()
                        .ok()
                        .filter(|w| (1..=256).contains(w))
                        .with_context(|| format!("{s:?}: weight must be 1 to 256"))?;
                }
                _ => bail!("{s:?}: unknown option {opt:?} (only weight=N)"),
            }
        }
        Ok(Self { target, weight })
    }
}

/// A pool as configured, before names are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    pub backends: Vec<BackendSpec>,
    pub balance: Balance,
    pub health: HealthSettings,
    pub proxy_protocol: Option<ProxyVersion>,
    /// Other backends tried after a failed connect before the client gets RST.
    pub connect_retries: u32,
}

/// What the health checker last saw of a backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct LastCheck {
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
    pub ok: bool,
    /// Why it failed, or how long the connect took.
    pub detail: String,
}

/// One backend and what is known of it; shared by everything that looks at it.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// As configured (`HOST:PORT`), for humans.
    pub target: String,
    pub weight: u32,
    up: AtomicBool,
    /// Connections assigned to it now (connecting or open).
    active: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    checks_failed: AtomicU64,
    pub last_check: Mutex<Option<LastCheck>>,
}

impl Backend {
    fn new(addr: SocketAddr, target: String, weight: u32) -> Self {
        Self {
            addr,
            target,
            weight,
            // Up until checks say otherwise, as HAProxy starts its servers.
            up: AtomicBool::new(true),
            active: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            last_check: Mutex::new(None),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// A connect to it failed (refused, reset, timed out).
    pub fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn check_failed(&self) {
        self.checks_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: self.target.clone(),
            addr: self.addr,
            weight: self.weight,
            up: self.is_up(),
            active: self.active(),
            connects: self.connects.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            checks_failed: self.checks_failed.load(Ordering::Relaxed),
            last_check: self.last_check.lock().ok().and_then(|c| c.clone()),
        }
    }
}

/// A connection's claim on a backend: counted in its `active` while it lives.
#[derive(Debug)]
pub struct Assignment {
    pub backend: Arc<Backend>,
    /// Its index in the pool the connection was given (to skip it on a retry).
    pub index: usize,
}

impl Drop for Assignment {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `status` and metrics: one backend.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct BackendStatus {
    pub backend: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub up: bool,
    pub active: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub checks_failed: u64,
    pub last_check: Option<LastCheck>,
}

/// The backends of the running configuration.
#[derive(Debug)]
pub struct Pool {
    pub backends: Vec<Arc<Backend>>,
    pub settings: PoolSettings,
    /// Round-robin: backend indexes in smooth weighted order, one turn of the wheel.
    schedule: Vec<usize>,
    next: AtomicUsize,
}

impl Pool {
    /// Resolves every backend; a backend whose address a `previous` pool has is that same
    /// object (its health and counts carry over a reload).
    pub fn build(settings: &PoolSettings, previous: Option<&Pool>) -> anyhow::Result<Self> {
        if settings.backends.is_empty() {
            bail!("the pool has no backend");
        }
        let mut backends = Vec::new();
        for spec in &settings.backends {
            let addr = resolve(&spec.target)?;
            if backends.iter().any(|b: &Arc<Backend>| b.addr == addr) {
                bail!("--upstream {}: {addr} is listed twice", spec.target);
            }
            let kept = previous.and_then(|p| {
                p.backends
                    .iter()
                    .find(|b| b.addr == addr && b.weight == spec.weight)
            });
            backends.push(match kept {
                Some(b) => b.clone(),
                None => Arc::new(Backend::new(addr, spec.target.clone(), spec.weight)),
            });
        }
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        Ok(Self {
            schedule: smooth_weighted_order(&weights),
            backends,
            settings: settings.clone(),
            next: AtomicUsize::new(0),
        })
    }

    /// Chooses a backend that is up and not in `tried` (a bit per index), and counts the
    /// connection on it. `None`: every backend is down or tried.
    pub fn assign(&self, tried: u64) -> Option<Assignment> {
        let eligible = |i: usize| i < 64 && tried & (1 << i) == 0 && self.backends[i].is_up();
        let index = match self.settings.balance {
            Balance::RoundRobin => {
                let n = self.schedule.len();
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| self.schedule[(start + k) % n])
                    .find(|&i| eligible(i))?
            }
            Balance::LeastConn => (0..self.backends.len())
                .filter(|&i| eligible(i))
                // Fewest connections per unit of weight: a/w < b/w' ⇔ a·w' < b·w.
                .min_by_key(|&i| {
                    let b = &self.backends[i];
                    (b.active() * 256 / u64::from(b.weight), i)
                })?,
        };
        let backend = self.backends[index].clone();
        backend.active.fetch_add(1, Ordering::Relaxed);
        backend.connects.fetch_add(1, Ordering::Relaxed);
        Some(Assignment { backend, index })
    }

    /// Connects to try per connection, the first included.
    pub fn max_attempts(&self) -> u32 {
        1 + self.settings.connect_retries
    }

    pub fn statuses(&self) -> Vec<BackendStatus> {
        self.backends.iter().map(|b| b.status()).collect()
    }
}

/// The pool now serving, replaced as a whole on reload.
pub type SharedPool = Arc<RwLock<Arc<Pool>>>;

/// Resolves `HOST:PORT` to its first address.
pub fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("resolving upstream {target}"))?
        .next()
        .with_context(|| format!("upstream {target} has no address"))
}

/// One turn of smooth weighted round-robin (nginx's): each step, every backend gains its
/// weight and the richest is chosen and pays the total, so that a 5:1:1 pool goes
/// a a b a c a a rather than a a a a a b c.
fn smooth_weighted_order(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        order.push(best);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(specs: &[&str], balance: Balance) -> Pool {
        let settings = PoolSettings {
            backends: specs.iter().map(|s| s.parse().unwrap()).collect(),
            balance,
            health: HealthSettings::default(),
            proxy_protocol: None,
            connect_retries: 2,
        };
        Pool::build(&settings, None).unwrap()
    }

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        let s: BackendSpec = "10.0.0.1:80,weight=3".parse().unwrap();
        assert_eq!((s.target.as_str(), s.weight), ("10.0.0.1:80", 3));
        assert_eq!("h:1".parse::<BackendSpec>().unwrap().weight, 1);
        for bad in [
            "nohost",
            ":80",
            "h:port",
            "h:1,weight=0",
            "h:1,weight=x",
            "h:1,backup",
        ] {
            let e = bad.parse::<BackendSpec>().unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn round_robin_follows_the_weights_smoothly() {
        assert_eq!(smooth_weighted_order(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_order(&[1, 1]), vec![0, 1]);
        let p = pool(
            &["127.0.0.1:1,weight=3", "127.0.0.1:2"],
            Balance::RoundRobin,
        );
        let picks: Vec<usize> = (0..8).map(|_| p.assign(0).unwrap().index).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 6, "{picks:?}");
    }

    #[test]
    fn down_and_tried_backends_are_skipped() {
        let p = pool(
            &["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
            Balance::RoundRobin,
        );
        p.backends[1].set_up(false);
        for _ in 0..10 {
            let a = p.assign(0b001).unwrap();
            assert_eq!(a.index, 2);
        }
        assert!(p.assign(0b101).is_none(), "all tried or down");
        p.backends[0].set_up(false);
        p.backends[2].set_up(false);
        assert!(p.assign(0).is_none());
    }

    #[test]
    fn least_conn_counts_live_assignments_by_weight() {
        let p = pool(&["127.0.0.1:1", "127.0.0.1:2,weight=2"], Balance::LeastConn);
        let a = p.assign(0).unwrap(); // both at 0: the first
        assert_eq!(a.index, 0);
        let b = p.assign(0).unwrap(); // 1/1 against 0/2
        assert_eq!(b.index, 1);
        let c = p.assign(0).unwrap(); // 1/1 against 1/2
        assert_eq!(c.index, 1);
        assert_eq!((p.backends[0].active(), p.backends[1].active()), (1, 2));
        drop((b, c));
        assert_eq!(
            p.backends[1].active(),
            0,
            "dropped assignments are uncounted"
        );
        assert_eq!(p.assign(0).unwrap().index, 1);
        drop(a);
    }

    #[test]
    fn a_rebuilt_pool_keeps_the_backends_that_stay() {
        let old = pool(&["127.0.0.1:1", "127.0.0.1:2"], Balance::RoundRobin);
        old.backends[1].set_up(false);
        let settings = PoolSettings {
            backends: vec![
                "127.0.0.1:2".parse().unwrap(),
                "127.0.0.1:3".parse().unwrap(),
            ],
            ..old.settings.clone()
        };
        let new = Pool::build(&settings, Some(&old)).unwrap();
        assert!(Arc::ptr_eq(&new.backends[0], &old.backends[1]));
        assert!(!new.backends[0].is_up(), "health carries over");
        assert!(new.backends[1].is_up());
        let dup = PoolSettings {
            backends: vec![
                "127.0.0.1:2".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            ..old.settings.clone()
        };
        assert!(Pool::build(&dup, None).is_err());
    }
}
