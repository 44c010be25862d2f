//! The daemon's side of the control socket.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::watch,
};

use aya::maps::MapData;

use super::proto::{ConnsReply, EngineStats, Request, Response, StatusInfo};
use crate::{
    bpf::{
        counters::{self, CounterMap},
        flows::{self, FlowMap},
    },
    datapath::{Phase, QueueControl, QueueSnapshot},
};

/// How long a queue's loop may take to answer before the request fails.
const QUEUE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server answers from.
pub struct ControlState {
    /// The settings part of `status` (replaced by a reload); the live fields are filled in
    /// per request.
    pub status: Mutex<StatusInfo>,
    pub queues: Vec<QueueControl>,
    /// The pinned XDP flow map, joined with the engines' connections.
    pub flows: Option<Mutex<FlowMap>>,
    /// The XDP counters, served to CLIs that cannot see the pins.
    pub counters: Option<CounterMap<MapData>>,
    /// The SYN cookies' secret and key schedule, and what wakes the task that installs keys.
    pub cookies: Arc<Mutex<crate::bpf::secret::Rotation>>,
    pub cookies_wake: Arc<tokio::sync::Notify>,
    /// The backends now serving (None for `--echo` or `--xdp-only`).
    pub pool: Option<crate::backends::SharedPool>,
    pub phase: watch::Receiver<Phase>,
}

/// The listening socket; dropping it stops serving and removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (root-only: mode 0600, and peers are checked to be uid 0) and serves.
pub fn start(path: &Path, state: Arc<ControlState>) -> anyhow::Result<ControlServer> {
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", path.display()))?;
    }
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_one(stream, state.clone()));
                }
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(ControlServer {
        path: path.to_path_buf(),
        task,
    })
}

async fn serve_one(stream: UnixStream, state: Arc<ControlState>) {
    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    let response = if uid != 0 {
        Response::Error {
            message: "the control socket needs root".into(),
        }
    } else {
        match reader.read_line(&mut line).await {
            Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
                Ok(req) => answer(req, &state).await,
                Err(e) => Response::Error {
                    message: format!("bad request {:?}: {e}", line.trim()),
                },
            },
            Err(e) => Response::Error {
                message: format!("reading the request: {e}"),
            },
        }
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    let _ = write.write_all(&out).await;
}

async fn answer(req: Request, state: &ControlState) -> Response {
    if req == Request::Xdp {
        return xdp_counters(state);
    }
    let snapshots = match snapshots(state).await {
        Ok(s) => s,
        Err(e) => {
            return Response::Error {
                message: format!("{e:#}"),
            };
        }
    };
    match req {
        Request::Conns => Response::Conns(conns(state, snapshots)),
        Request::Stats => Response::Stats(total(&snapshots)),
        Request::Xdp => xdp_counters(state),
        Request::Status => {
            let Ok(mut st) = state.status.lock().map(|s| s.clone()) else {
                return Response::Error {
                    message: "the status is unavailable".into(),
                };
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            st.uptime_secs = now.saturating_sub(st.since_unix);
            st.phase = match *state.phase.borrow() {
                Phase::Serving => "serving",
                Phase::Draining | Phase::Stopping => "draining",
            }
            .into();
            st.connections = snapshots.iter().map(|s| s.stats.connections).sum();
            if let Some(pool) = state.current_pool() {
                st.backends = pool.statuses();
                st.upstream = Some(
                    pool.backends
                        .iter()
                        .map(|b| b.target.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                st.balance = Some(pool.settings.balance.name().into());
                st.proxy_protocol = pool
                    .settings
                    .proxy_protocol
                    .map(|v| format!("{v:?}").to_lowercase());
            }
            if let Ok(r) = state.cookies.lock() {
                let minute = now / 60;
                let epoch = r.epoch_of(minute);
                let start = epoch * r.rotate_minutes * 60;
                st.cookie_secret.source = r.source.describe();
                st.cookie_secret.epoch = epoch;
                st.cookie_secret.rotate_secs = r.rotate_minutes * 60;
                st.cookie_secret.age_secs = now.saturating_sub(start);
                st.cookie_secret.next_rotation_secs =
                    (r.next_boundary(minute) * 60).saturating_sub(now);
            }
            Response::Status(st)
        }
    }
}

impl ControlState {
    /// The XDP counters, summed over CPUs.
    pub fn xdp_snapshot(&self) -> anyhow::Result<counters::CounterSnapshot> {
        let map = self
            .counters
            .as_ref()
            .context("the XDP counters map is not open")?;
        counters::read(map)
    }

    /// The pool now serving.
    pub fn current_pool(&self) -> Option<Arc<crate::backends::Pool>> {
        let shared = self.pool.as_ref()?;
        shared.read().ok().map(|p| p.clone())
    }

    /// The engines' counters, summed over the queues.
    pub async fn engine_stats(&self) -> anyhow::Result<EngineStats> {
        Ok(total(&snapshots(self).await?))
    }
}

fn total(snapshots: &[QueueSnapshot]) -> EngineStats {
    let mut total = EngineStats::default();
    for s in snapshots {
        total.add(&s.stats);
    }
    total
}

fn xdp_counters(state: &ControlState) -> Response {
    match state.xdp_snapshot() {
        Ok(snapshot) => Response::Xdp {
            counters: snapshot
                .iter()
                .map(|(c, v)| (c.name().to_string(), v))
                .collect(),
        },
        Err(e) => Response::Error {
            message: format!("{e:#}"),
        },
    }
}

async fn snapshots(state: &ControlState) -> anyhow::Result<Vec<QueueSnapshot>> {
    let mut out = Vec::new();
    for q in &state.queues {
        let snap = tokio::time::timeout(QUEUE_ANSWER_TIMEOUT, q.snapshot())
            .await
            .map_err(|_| anyhow::anyhow!("queue {} did not answer in time", q.queue))??;
        out.push(snap);
    }
    Ok(out)
}

/// The engines' connections joined with the flow map by address pair; flow-map entries
/// without a TCB are listed too.
fn conns(state: &ControlState, snapshots: Vec<QueueSnapshot>) -> ConnsReply {
    let mut reply = ConnsReply::default();
    let mut index = HashMap::new();
    for s in snapshots {
        for l in s.listeners {
            if !reply.listeners.contains(&l) {
                reply.listeners.push(l);
            }
        }
        for c in s.connections {
            index.insert((c.local, c.remote), reply.connections.len());
            reply.connections.push(c);
        }
    }
    if reply.listeners.is_empty()
        && let Ok(st) = state.status.lock()
    {
        reply.listeners = st.listen.clone();
    }
    if let Some(flows) = &state.flows
        && let Ok(map) = flows.lock()
    {
        let now_ns = flows::monotonic_ns();
        for (k, v) in flows::entries(&map) {
            let row = flows::flow_info(&k, &v, now_ns);
            match index.get(&(row.local, row.remote)) {
                Some(&i) => {
                    let c = &mut reply.connections[i];
                    c.in_flow_map = true;
                    c.from_cookie = row.from_cookie;
                }
                None => reply.connections.push(row),
            }
        }
    }
    reply.connections.sort_by_key(|c| (c.local, c.remote));
    reply
}
