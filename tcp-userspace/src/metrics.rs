//! `--metrics ADDR:PORT`: the Prometheus endpoint (`GET /metrics`).
//!
//! Encoded with prometheus-client, the Prometheus project's own Rust client: it writes the
//! OpenMetrics text format, which Prometheus negotiates and parses, and adds the `_total`
//! suffix and `# UNIT` lines itself. The values live elsewhere (the XDP program's per-CPU
//! map, the queue threads' counters), so each scrape reads them once into a fresh registry:
//! nothing is updated per packet for the sake of metrics. Only the upstream connect latency
//! is recorded as it happens, into a histogram the queue threads share.
//!
//! Names: `tcpfront_xdp_<counter>_total` for every XDP counter (as `stats` names them,
//! summed over CPUs), `tcpfront_engine_<counter>_total` for the engines' counters,
//! `tcpfront_connections{state}` (RFC 9293 state names), `tcpfront_queue_connections{queue}`,
//! `tcpfront_upstream_connect_duration_seconds` (histogram), per backend
//! `tcpfront_backend_{up,connections,connects_total,connect_failures_total,checks_failed_total}`
//! labelled `backend="HOST:PORT"`, and `tcpfront_build_info`. No label carries a client
//! address.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, header, server::conn::http1};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::{Registry, Unit},
};

use crate::control::{proto::EngineStats, server::ControlState};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The histogram of upstream connect latencies: 50 µs to ~3.3 s in powers of 2.
pub fn connect_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 17))
}

/// The listening endpoint; dropping it stops serving.
pub struct MetricsServer {
    task: tokio::task::JoinHandle<()>,
    pub addr: SocketAddr,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` now (so that a busy port fails start-up with its name) and serves.
pub async fn start(
    addr: SocketAddr,
    state: Arc<ControlState>,
    connect_latency: Histogram,
) -> anyhow::Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}: cannot listen"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = state.clone();
            let latency = connect_latency.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let latency = latency.clone();
                    async move { Ok::<_, Infallible>(respond(req, &state, &latency).await) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!("metrics connection: {e}");
                }
            });
        }
    });
    Ok(MetricsServer { task, addr })
}

async fn respond<B>(
    req: Request<B>,
    state: &ControlState,
    latency: &Histogram,
) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        if let Ok(v) = ctype.parse() {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "tcpfront serves /metrics\n".into(),
        );
    }
    match render(state, latency).await {
        Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e:#}\n"),
        ),
    }
}

/// One scrape: every value read once, encoded.
pub async fn render(state: &ControlState, latency: &Histogram) -> anyhow::Result<String> {
    let mut registry = Registry::with_prefix("tcpfront");
    registry.register(
        "build",
        "tcpfront's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );

    let xdp = state.xdp_snapshot()?;
    let sub = registry.sub_registry_with_prefix("xdp");
    for (c, v) in xdp.iter() {
        let help = match c.help().trim() {
            "" => format!("XDP counter `{}` (see `tcpfront stats`)", c.name()),
            h => h.to_string(),
        };
        sub.register(c.name(), help, counter(v));
    }

    let engine = state.engine_stats().await?;
    register_engine(&mut registry, &engine)?;

    if let Some(pool) = state.current_pool() {
        register_backends(&mut registry, &pool.statuses());
    }

    registry.register_with_unit(
        "upstream_connect_duration",
        "Time from the client's completed handshake to the upstream's connect completing",
        Unit::Seconds,
        latency.clone(),
    );

    let mut text = String::new();
    encode(&mut text, &registry).context("encoding the metrics")?;
    Ok(text)
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// The engine's counters, by their `stats --json` names; the open connections by state and
/// by queue as gauges.
fn register_engine(registry: &mut Registry, e: &EngineStats) -> anyhow::Result<()> {
    let by_state = Family::<Vec<(String, String)>, Gauge>::default();
    for (state, n) in &e.states {
        by_state
            .get_or_create(&vec![("state".into(), state.clone())])
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    registry.register(
        "connections",
        "Connections in the engines, by RFC 9293 state",
        by_state,
    );
    let by_queue = Family::<Vec<(String, String)>, Gauge>::default();
    for q in &e.queues {
        by_queue
            .get_or_create(&vec![("queue".into(), q.queue.to_string())])
            .set(i64::try_from(q.connections).unwrap_or(i64::MAX));
    }
    registry.register(
        "queue_connections",
        "Connections served by each AF_XDP queue",
        by_queue,
    );

    let sub = registry.sub_registry_with_prefix("engine");
    let fields = serde_json::to_value(e).context("reading the engine counters")?;
    let serde_json::Value::Object(fields) = fields else {
        anyhow::bail!("the engine counters are not an object");
    };
    for (name, value) in fields {
        let Some(v) = value.as_u64() else {
            continue; // `states` and `queues`, above.
        };
        match name.as_str() {
            // Levels, not counts of events.
            "connections" | "time_wait" => {
                sub.register(name.clone(), engine_help(&name), gauge(v));
            }
            _ => sub.register(name.clone(), engine_help(&name), counter(v)),
        }
    }
    Ok(())
}

/// Per backend, labelled by its configured `HOST:PORT` (bounded: the pool's size).
fn register_backends(registry: &mut Registry, backends: &[crate::backends::BackendStatus]) {
    type Labels = Vec<(String, String)>;
    let up = Family::<Labels, Gauge>::default();
    let active = Family::<Labels, Gauge>::default();
    let connects = Family::<Labels, Counter>::default();
    let failures = Family::<Labels, Counter>::default();
    let checks_failed = Family::<Labels, Counter>::default();
    for b in backends {
        let l = vec![("backend".to_string(), b.backend.clone())];
        up.get_or_create(&l).set(i64::from(b.up));
        active
            .get_or_create(&l)
            .set(i64::try_from(b.active).unwrap_or(i64::MAX));
        connects.get_or_create(&l).inc_by(b.connects);
        failures.get_or_create(&l).inc_by(b.connect_failures);
        checks_failed.get_or_create(&l).inc_by(b.checks_failed);
    }
    let sub = registry.sub_registry_with_prefix("backend");
    sub.register("up", "1 if the backend's health checks pass", up);
    sub.register(
        "connections",
        "Connections assigned to the backend now",
        active,
    );
    sub.register("connects", "Connections given to the backend", connects);
    sub.register(
        "connect_failures",
        "Connects to the backend that failed (refused, timed out)",
        failures,
    );
    sub.register("checks_failed", "Health checks that failed", checks_failed);
}

fn engine_help(name: &str) -> String {
    format!("The engines' `{name}` (see `tcpfront stats`)")
}
