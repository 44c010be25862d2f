//! The relay: each client connection's byte stream to and from its upstream over ordinary
//! kernel TCP, in the queue's own thread (the upstream socket is polled with the AF_XDP
//! socket), with backpressure both ways and no copy of its own:
//! - client → upstream: the engine's receive buffer is written to the socket as it lies
//!   (`writev` of its two halves); what the socket does not take stays there, and the window
//!   we advertise shrinks by as much.
//! - upstream → client: the socket is read straight into the engine's send buffer, only as
//!   far as it has room; a slow client leaves the data in the socket, and the upstream's
//!   window closes.

use std::{
    io::{IoSlice, IoSliceMut, Read as _, Write as _},
    net::{Shutdown, SocketAddr},
};

use mio::net::TcpStream;

use crate::{
    backends::{Assignment, PoolSettings, ProxyVersion, proxy_protocol::ProxyHeader},
    engine::{Instant, Tcb},
    wire::ethernet::EthernetRepr,
};

/// Where connections are relayed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// A pool of TCP backends, resolved at start-up and on reload.
    Pool(PoolSettings),
    /// Built-in echo: every byte comes back.
    Echo,
}

/// Largest read from an upstream at once (a burst of segments; the send buffer bounds it too).
const READ_CHUNK: usize = 256 * 1024;

/// The upstream side of one connection.
pub enum UpstreamConn {
    /// `--echo`: the engine's receive buffer is moved to its send buffer.
    Echo,
    /// Connecting; writable once done.
    Connecting(TcpStream),
    Open(Open),
    /// Gone (closed after a graceful end, or never opened).
    Closed,
}

/// An established upstream connection and what we know of its readiness (edge-triggered:
/// a flag stays set until a call would block).
pub struct Open {
    pub stream: TcpStream,
    pub readable: bool,
    pub writable: bool,
    /// The upstream sent FIN.
    pub eof: bool,
    /// We shut its write side (the client sent FIN).
    pub write_shut: bool,
    /// The PROXY protocol header, sent before any client byte.
    pub proxy_header: Option<ProxyHeader>,
}

/// One connection's relay state and link-layer addressing.
pub struct Conn {
    /// (local, remote), as the engine keys it.
    pub key: (SocketAddr, SocketAddr),
    /// Our MAC, the client's MAC (or next hop's), and the VLAN tags its frames carry.
    pub l2: EthernetRepr,
    pub upstream: UpstreamConn,
    /// When the upstream connect started (for the connect-latency histogram).
    pub connect_started: Option<std::time::Instant>,
    /// The pool it was given at its handshake (retries stay in it across a reload).
    pub pool: Option<std::sync::Arc<crate::backends::Pool>>,
    /// The backend the connection was given (counted in its active connections).
    pub backend: Option<Assignment>,
    /// Backends already tried (a bit per pool index) and how many connects were made.
    pub tried: u64,
    pub attempts: u32,
    /// Whether the backend wants a PROXY protocol header first.
    pub proxy_protocol: Option<ProxyVersion>,
}

/// What moving bytes found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The upstream failed or reset: the client gets RST.
    Failed,
}

impl Conn {
    pub fn new(key: (SocketAddr, SocketAddr), l2: EthernetRepr, upstream: UpstreamConn) -> Self {
        Self {
            key,
            l2,
            upstream,
            pool: None,
            connect_started: None,
            backend: None,
            tried: 0,
            attempts: 0,
            proxy_protocol: None,
        }
    }

    /// The upstream, for `conns`: the backend as configured, or `echo`.
    pub fn upstream_name(&self) -> Option<String> {
        match (&self.upstream, &self.backend) {
            (UpstreamConn::Echo, _) => Some("echo".into()),
            (_, Some(a)) => Some(a.backend.target.clone()),
            _ => None,
        }
    }

    /// Our end of the upstream connection (a system call: for `conns` only).
    pub fn upstream_local(&self) -> Option<String> {
        match &self.upstream {
            UpstreamConn::Open(o) => o.stream.local_addr().ok().map(|a| a.to_string()),
            UpstreamConn::Connecting(s) => s.local_addr().ok().map(|a| a.to_string()),
            _ => None,
        }
    }

    /// The connect finished (writable): open, or failed.
    pub fn connected(&mut self) -> Outcome {
        let UpstreamConn::Connecting(stream) =
            std::mem::replace(&mut self.upstream, UpstreamConn::Closed)
        else {
            return Outcome::Ok;
        };
        // epoll reports a connecting socket writable only once the connect has finished, one
        // way or the other; SO_ERROR says which.
        match stream.take_error() {
            Ok(None) => {
                let _ = stream.set_nodelay(true);
                let (local, client) = self.key;
                self.upstream = UpstreamConn::Open(Open {
                    stream,
                    readable: true,
                    writable: true,
                    eof: false,
                    write_shut: false,
                    proxy_header: self
                        .proxy_protocol
                        .map(|v| ProxyHeader::new(v, client, local)),
                });
                Outcome::Ok
            }
            Ok(Some(e)) | Err(e) => {
                tracing::info!("upstream connect failed: {e}");
                Outcome::Failed
            }
        }
    }

    /// Moves what can move between the connection's buffers and its upstream, both ways.
    pub fn pump(&mut self, tcb: &mut Tcb, now: Instant, draining: bool) -> Outcome {
        match &mut self.upstream {
            UpstreamConn::Echo => {
                tcb.echo(now);
                if tcb.recv_finished() && !draining {
                    tcb.close(now);
                }
                Outcome::Ok
            }
            UpstreamConn::Open(o) => o.pump(tcb, now, draining),
            UpstreamConn::Connecting(_) | UpstreamConn::Closed => Outcome::Ok,
        }
    }
}

impl Open {
    fn pump(&mut self, tcb: &mut Tcb, now: Instant, draining: bool) -> Outcome {
        // The PROXY header goes first, whole, before any client byte.
        while self.writable
            && let Some(h) = &mut self.proxy_header
        {
            if h.is_sent() {
                self.proxy_header = None;
                break;
            }
            match self.stream.write(h.pending()) {
                Ok(0) => return Outcome::Failed,
                Ok(n) => h.consume(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("upstream write failed: {e}");
                    return Outcome::Failed;
                }
            }
        }
        if self.proxy_header.is_some() {
            return Outcome::Ok; // the rest waits until the header is out
        }
        // Client → upstream, from the receive buffer in place.
        while self.writable && !self.write_shut {
            let (a, b) = tcb.recv_slices();
            if a.is_empty() {
                break;
            }
            match self
                .stream
                .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            {
                Ok(0) => return Outcome::Failed,
                Ok(n) => tcb.recv_consume(n, now),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("upstream write failed: {e}");
                    return Outcome::Failed;
                }
            }
        }
        // Client FIN, everything before it delivered → the upstream's write side closes.
        if tcb.recv_finished() && !self.write_shut {
            let _ = self.stream.shutdown(Shutdown::Write);
            self.write_shut = true;
        }
        // Upstream → client, straight into the send buffer, only as far as it has room.
        // Draining, the client has had its FIN: nothing more can go to it.
        while self.readable && !self.eof && !draining {
            let (a, b) = tcb.send_spare(READ_CHUNK);
            if a.is_empty() {
                break; // backpressure: the data waits in the upstream socket
            }
            let spare = a.len() + b.len();
            let r = self
                .stream
                .read_vectored(&mut [IoSliceMut::new(a), IoSliceMut::new(b)]);
            match r {
                Ok(0) => {
                    // Upstream FIN → FIN to the client, after the data.
                    self.eof = true;
                    tcb.close(now);
                }
                // A read that filled the room: more is waiting upstream (MSG_MORE).
                Ok(n) => tcb.send_commit(n, n == spare, now),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    tcb.send_push(now);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("upstream read failed: {e}");
                    return Outcome::Failed;
                }
            }
        }
        Outcome::Ok
    }
}
