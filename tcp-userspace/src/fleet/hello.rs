//! This node's sign of life to the other nodes of the ring: a hand-off frame of kind
//! `FLEET_KIND_HELLO` to each, every `FLEET_HELLO_INTERVAL_MS`, over a raw packet socket. A
//! node's XDP program notes when each node was last heard and skips the silent ones, so a
//! killed node stops receiving segments within `FLEET_DEAD_NS`.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::Context as _;
use tcp_common::{
    map_names,
    maps::{FLEET_ETHERTYPE, FLEET_HELLO_INTERVAL_MS, FLEET_KIND_HELLO},
};

use super::{FleetPlace, Mac, liveness::Liveness};

/// The shortest Ethernet frame (without the FCS): what a hello is padded to.
const MIN_FRAME: usize = 60;

/// The hellos of this node, sent until dropped.
pub struct Hellos {
    task: tokio::task::JoinHandle<()>,
    /// The node segments of unknown flows go to now (None: no other node alive).
    next: tokio::sync::watch::Receiver<Option<Mac>>,
}

impl Hellos {
    /// Waits until another node of the ring is heard, or `timeout` passes (the first node
    /// of a fleet hears nobody). Before it announces its VIPs, a node waits here: flows the
    /// router moves to it at once must find a node to be handed to.
    pub async fn wait_for_a_live_node(&mut self, timeout: Duration) -> Option<Mac> {
        let heard = tokio::time::timeout(timeout, self.next.wait_for(Option::is_some)).await;
        match heard {
            Ok(Ok(next)) => *next,
            _ => None,
        }
    }
}

impl Drop for Hellos {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A hello from `own` to `to`.
pub fn hello_frame(own: Mac, to: Mac) -> [u8; MIN_FRAME] {
    let mut f = [0u8; MIN_FRAME];
    f[0..6].copy_from_slice(&to.0);
    f[6..12].copy_from_slice(&own.0);
    f[12..14].copy_from_slice(&FLEET_ETHERTYPE.to_be_bytes());
    f[15] = FLEET_KIND_HELLO;
    f
}

/// Starts the hellos of the instance serving `iface`, with its program's pinned ring.
pub fn start_for_instance(iface: &str, place: &FleetPlace) -> anyhow::Result<Hellos> {
    let paths = crate::instance::Paths::new(iface)?;
    let liveness = Liveness::open(
        &paths.pin(map_names::FLEET_RING),
        &paths.pin(map_names::FLEET_NEXT),
        place,
    )?;
    start(iface, place, liveness)
}

/// Starts sending hellos from `iface` (in the current network namespace) to every other
/// node of `place`; on each tick, `liveness` picks the node segments go to.
pub fn start(iface: &str, place: &FleetPlace, mut liveness: Liveness) -> anyhow::Result<Hellos> {
    let ifindex = crate::cmd::interface_index(iface)?;
    // SAFETY: a new socket; checked below and owned from then on.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening a packet socket for hellos");
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let own = place.nodes[place.index];
    let frames: Vec<(Mac, [u8; MIN_FRAME])> = place
        .nodes
        .iter()
        .filter(|&&n| n != own)
        .map(|&n| (n, hello_frame(own, n)))
        .collect();
    let (next_tx, next) = tokio::sync::watch::channel(None);
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(FLEET_HELLO_INTERVAL_MS));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for (to, frame) in &frames {
                if let Err(e) = send(&fd, ifindex, to, frame) {
                    tracing::debug!("hello to {to}: {e}");
                }
            }
            match liveness.refresh() {
                Ok((next, changed)) => {
                    if changed {
                        match next {
                            Some(n) => {
                                tracing::info!("fleet: segments of unknown flows go to {n}");
                            }
                            None => tracing::warn!(
                                "fleet: no other node heard lately; segments of unknown flows \
                                 end here"
                            ),
                        }
                        let _ = next_tx.send(next);
                    }
                }
                Err(e) => tracing::warn!("fleet: {e:#}"),
            }
        }
    });
    Ok(Hellos { task, next })
}

fn send(fd: &OwnedFd, ifindex: u32, to: &Mac, frame: &[u8]) -> std::io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields the kernel needs are set.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = FLEET_ETHERTYPE.to_be();
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&to.0);
    // SAFETY: frame and addr are valid for the lengths given; non-blocking by MSG_DONTWAIT.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_is_a_short_hand_off_frame_of_its_kind() {
        let f = hello_frame(Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        assert_eq!(f[..6], [2, 0, 0, 0, 0, 2]);
        assert_eq!(f[6..12], [2, 0, 0, 0, 0, 1]);
        assert_eq!(f[12..14], [0x88, 0xb5]);
        assert_eq!(f[14..16], [0, FLEET_KIND_HELLO]);
    }
}
