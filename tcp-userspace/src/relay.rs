//! The relay: each front-end connection's byte stream to and from an upstream over ordinary
//! kernel TCP (tokio), with backpressure both ways.
//!
//! The datapath task owns the engine; a relay task per connection owns the upstream socket.
//! They talk through channels:
//! - client → upstream: a bounded channel. The datapath reads the engine's receive buffer only
//!   while the channel has room, so a slow upstream leaves data in that buffer and the window
//!   we advertise shrinks.
//! - upstream → client: the relay reads from the upstream only as many bytes as it holds
//!   permits for; permits are the free space of the engine's send buffer, returned by the
//!   datapath as the client acknowledges data. A slow client stops upstream reads.

use std::{net::SocketAddr, sync::Arc};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::{Semaphore, mpsc},
};

use crate::engine::ConnKey;

/// Where connections are relayed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// A TCP service, `host:port` resolved at connect time.
    Tcp(String),
    /// Built-in echo: every byte comes back.
    Echo,
}

/// What a relay task asks the datapath to do with a connection.
#[derive(Debug)]
pub enum RelayCmd {
    /// The upstream connection is up: its address and our end of it (none for echo).
    Connected {
        key: ConnKey,
        peer: String,
        local: Option<String>,
    },
    /// Bytes from the upstream for the client (covered by permits the relay holds).
    Data(ConnKey, Vec<u8>),
    /// The upstream finished sending: FIN to the client after the data.
    Fin(ConnKey),
    /// The upstream failed or reset: RST to the client.
    Reset(ConnKey),
}

/// The datapath's handle on one relay task.
pub struct RelayHandle {
    /// Client bytes for the upstream; dropped (closed) when the client sent FIN.
    pub to_upstream: Option<mpsc::Sender<Vec<u8>>>,
    /// Free send-buffer space the relay may fill.
    pub permits: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl RelayHandle {
    /// Stops the relay at once: the upstream socket is dropped (client RST or abort).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Chunks queued towards the upstream before the datapath stops reading from the engine.
const QUEUE_CHUNKS: usize = 16;

/// Starts the relay of connection `key` (the client is `key.1`).
pub fn spawn(
    key: ConnKey,
    upstream: Upstream,
    send_buffer: usize,
    cmds: mpsc::UnboundedSender<RelayCmd>,
) -> RelayHandle {
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    let permits = Arc::new(Semaphore::new(send_buffer));
    let task = tokio::spawn(relay(key, upstream, rx, permits.clone(), cmds));
    RelayHandle {
        to_upstream: Some(tx),
        permits,
        task,
    }
}

async fn relay(
    key: ConnKey,
    upstream: Upstream,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    permits: Arc<Semaphore>,
    cmds: mpsc::UnboundedSender<RelayCmd>,
) {
    match upstream {
        Upstream::Echo => {
            let _ = cmds.send(RelayCmd::Connected {
                key,
                peer: "echo".into(),
                local: None,
            });
            while let Some(chunk) = from_client.recv().await {
                let Ok(p) = permits.acquire_many(chunk.len() as u32).await else {
                    return;
                };
                p.forget();
                if cmds.send(RelayCmd::Data(key, chunk)).is_err() {
                    return;
                }
            }
            let _ = cmds.send(RelayCmd::Fin(key));
        }
        Upstream::Tcp(addr) => {
            let stream = match TcpStream::connect(&addr).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!("{} -> upstream {addr}: {e}; resetting the client", key.1);
                    let _ = cmds.send(RelayCmd::Reset(key));
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let _ = cmds.send(RelayCmd::Connected {
                key,
                peer: stream
                    .peer_addr()
                    .map_or_else(|_| addr.clone(), |a| a.to_string()),
                local: stream.local_addr().ok().map(|a| a.to_string()),
            });
            let (mut up_read, mut up_write) = stream.into_split();
            let client = key.1;
            let to_up = async move {
                while let Some(chunk) = from_client.recv().await {
                    up_write.write_all(&chunk).await?;
                }
                // Client FIN → upstream write-shutdown (half-close).
                up_write.shutdown().await?;
                Ok::<_, std::io::Error>(up_write)
            };
            let cmds_up = cmds.clone();
            let from_up = async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    // Wait for send-buffer space before reading: the upstream's data waits
                    // in its own socket buffer, and its window closes.
                    let Ok(p) = permits.acquire().await else {
                        return Ok::<_, std::io::Error>(());
                    };
                    p.forget();
                    let extra = permits.available_permits().min(buf.len() - 1);
                    let extra_p = permits.try_acquire_many(extra as u32).ok();
                    if let Some(x) = extra_p {
                        x.forget();
                    }
                    let room = 1 + extra;
                    let n = up_read.read(&mut buf[..room]).await?;
                    if room > n {
                        permits.add_permits(room - n);
                    }
                    if n == 0 {
                        let _ = cmds_up.send(RelayCmd::Fin(key));
                        return Ok(());
                    }
                    if cmds_up
                        .send(RelayCmd::Data(key, buf[..n].to_vec()))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            };
            let (a, b) = tokio::join!(to_up, from_up);
            if let Err(e) = a.map(drop).and(b) {
                tracing::debug!("{client}: upstream {addr} failed: {e}");
                let _ = cmds.send(RelayCmd::Reset(key));
            }
        }
    }
}

/// Resolves once so that configuration errors show at start-up, not per connection.
pub async fn check_resolves(addr: &str) -> anyhow::Result<SocketAddr> {
    use anyhow::Context as _;
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("--upstream {addr}: cannot resolve"))?
        .next()
        .with_context(|| format!("--upstream {addr}: no address"))
}
