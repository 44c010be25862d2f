//! AF_XDP sockets: one per RX queue, sharing nothing, each with its own UMEM.
//!
//! Ring handling comes from `xdpilone` (maintained, small, no C dependency, no libbpf/libxdp:
//! the XDP program and its XSKMAP are aya's). This module owns the memory, keeps the fill
//! ring stocked, lends received frames in place and writes frames to send in place.

use std::{
    num::NonZeroU32,
    os::fd::{AsRawFd, RawFd},
    ptr::NonNull,
};

use anyhow::{Context as _, anyhow, bail};
pub use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

/// How the socket binds to the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XskMode {
    /// Copy mode: works on every driver (veth has nothing else).
    Copy,
    /// Zero-copy: only on drivers with XSK pool support.
    ZeroCopy,
}

impl XskMode {
    pub fn name(self) -> &'static str {
        match self {
            XskMode::Copy => "copy",
            XskMode::ZeroCopy => "zerocopy",
        }
    }
}

const FRAME_SIZE: u32 = 4096;

/// Anonymous, page-aligned memory for a UMEM.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> anyhow::Result<Self> {
        // SAFETY: anonymous private mapping; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap for the UMEM");
        }
        Ok(Self {
            ptr: NonNull::new(p.cast()).ok_or_else(|| anyhow!("mmap returned null"))?,
            len,
        })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; the UMEM using it is dropped first.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One AF_XDP socket bound to (interface, queue).
pub struct XskSocket {
    // Field order is drop order: rings and sockets before the memory they point into.
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    user: User,
    _socket: Socket,
    _umem: Umem,
    area: Area,
    /// Frames free for transmitting (UMEM offsets).
    tx_free: Vec<u64>,
    /// Frames queued on the TX ring since the last `kick`.
    unkicked: usize,
    queue: u32,
    mode: XskMode,
}

/// What the kernel counts for one AF_XDP socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for want of a fill-ring buffer or RX-ring slot (and other reasons).
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full: user space fell behind.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub fill_ring_empty: u64,
    /// Times the kernel found nothing to send in the TX ring after a kick.
    pub tx_ring_empty: u64,
}

// SAFETY: the rings and memory are only touched through &mut self.
unsafe impl Send for XskSocket {}

impl XskSocket {
    /// Opens a socket on `iface` queue `queue` with `frames` frames: half stocked in the fill
    /// ring for receiving, half kept for sending.
    pub fn open(iface: &str, queue: u32, frames: u32, mode: XskMode) -> anyhow::Result<Self> {
        if frames < 8 || !frames.is_power_of_two() {
            bail!("AF_XDP frame count must be a power of two ≥ 8, not {frames}");
        }
        let area = Area::new(frames as usize * FRAME_SIZE as usize)?;
        let ring = frames / 2;
        let config = UmemConfig {
            fill_size: ring,
            complete_size: ring,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
        // SAFETY: page-aligned mapping that outlives the UMEM (field order above).
        let umem = unsafe { Umem::new(config, slice) }
            .map_err(|e| anyhow!("registering the UMEM: {e}"))?;
        let mut info = IfInfo::invalid();
        let name = std::ffi::CString::new(iface)?;
        info.from_name(&name)
            .map_err(|e| anyhow!("AF_XDP: interface {iface}: {e}"))?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem)
            .map_err(|e| anyhow!("AF_XDP socket on {iface} queue {queue}: {e}"))?;
        let mut device = umem
            .fq_cq(&socket)
            .map_err(|e| anyhow!("fill/completion rings: {e}"))?;
        let mode_flag = match mode {
            XskMode::Copy => SocketConfig::XDP_BIND_COPY,
            XskMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
        };
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(ring),
                    tx_size: NonZeroU32::new(ring),
                    bind_flags: mode_flag | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(|e| anyhow!("RX/TX rings: {e}"))?;
        let rx = user
            .map_rx()
            .map_err(|e| anyhow!("mapping the RX ring: {e}"))?;
        let tx = user
            .map_tx()
            .map_err(|e| anyhow!("mapping the TX ring: {e}"))?;
        umem.bind(&user)
            .map_err(|e| anyhow!("binding to {iface} queue {queue} ({mode:?} mode): {e}"))?;

        let rx_frames = (0..ring).map(|i| u64::from(i) * u64::from(FRAME_SIZE));
        {
            let mut fill = device.fill(ring);
            fill.insert(rx_frames);
            fill.commit();
        }
        let tx_free = (ring..frames)
            .map(|i| u64::from(i) * u64::from(FRAME_SIZE))
            .collect();
        Ok(Self {
            rx,
            tx,
            device,
            user,
            _socket: socket,
            _umem: umem,
            area,
            tx_free,
            unkicked: 0,
            queue,
            mode,
        })
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The kernel's counters of this socket (XDP_STATISTICS): frames it could not deliver.
    pub fn statistics(&self) -> XskStats {
        match self.user.statistics_v2() {
            Ok(s) => XskStats {
                rx_dropped: s.rx_dropped,
                rx_ring_full: s.rx_ring_full,
                fill_ring_empty: s.rx_fill_ring_empty_descs,
                tx_ring_empty: s.tx_ring_empty_descs,
            },
            Err(_) => XskStats::default(),
        }
    }

    pub fn mode(&self) -> XskMode {
        self.mode
    }

    /// The UMEM, for reading received frames in place while the socket sends.
    pub fn umem(&self) -> UmemView {
        UmemView {
            ptr: self.area.ptr,
            len: self.area.len,
        }
    }

    /// Takes up to `max` received frames off the RX ring into `out` (cleared first). The
    /// frames stay ours until `refill` gives them back to the kernel.
    pub fn receive(&mut self, max: u32, out: &mut Vec<XdpDesc>) -> usize {
        out.clear();
        let mut rx = self.rx.receive(max);
        while let Some(desc) = rx.read() {
            out.push(desc);
        }
        rx.release();
        out.len()
    }

    /// Hands up to `max` received frames to `f`, then gives them back (a simple receiver for
    /// tests; the datapath uses `receive` and `refill` around its own loop).
    pub fn recv(&mut self, max: u32, mut f: impl FnMut(&[u8])) -> usize {
        let mut descs = Vec::new();
        let n = self.receive(max, &mut descs);
        let umem = self.umem();
        for d in &descs {
            // SAFETY: received from this socket, given back below.
            f(unsafe { umem.frame(d) });
        }
        self.refill(&descs);
        n
    }

    /// Gives received frames back to the fill ring, and wakes the driver if it asks.
    pub fn refill(&mut self, descs: &[XdpDesc]) {
        // Aligned mode: the frame's base is the address rounded down to FRAME_SIZE.
        let mut frames = descs.iter().map(|d| d.addr & !u64::from(FRAME_SIZE - 1));
        let mut left = descs.len() as u32;
        // A reservation may get fewer slots than asked (xdpilone counts free slots from a
        // cached consumer index and refreshes it only when that says none are free), so go
        // on until every frame is back: one not returned is lost to the fill ring for good.
        while left > 0 {
            let mut fill = self.device.fill(left);
            // Exactly as many as reserved: `insert` zips, and would drop the one past the end.
            let cap = fill.capacity() as usize;
            let n = fill.insert(frames.by_ref().take(cap));
            fill.commit();
            if n == 0 {
                // Cannot happen: the ring has room for every frame we took off it.
                tracing::error!("AF_XDP fill ring full; {left} frame(s) lost");
                break;
            }
            left -= n;
        }
        if self.device.needs_wakeup() {
            self.device.wake();
        }
    }

    /// Writes one frame straight into a free UMEM frame (`write` returns its length) and
    /// queues it on the TX ring; false if no frame or ring slot is free right now (the frame
    /// is dropped, as a full NIC queue would). `kick` sends what is queued.
    pub fn transmit(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.tx_free.is_empty() {
            self.reap_completions();
        }
        let Some(addr) = self.tx_free.pop() else {
            return false;
        };
        // SAFETY: addr is one of our TX frames, FRAME_SIZE bytes inside the area, owned by
        // us until the completion ring hands it back.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                self.area.ptr.as_ptr().add(addr as usize),
                FRAME_SIZE as usize,
            )
        };
        let len = write(buf).min(FRAME_SIZE as usize);
        let desc = XdpDesc {
            addr,
            len: len as u32,
            options: 0,
        };
        let mut tx = self.tx.transmit(1);
        if tx.insert_once(desc) {
            tx.commit();
            self.unkicked += 1;
            true
        } else {
            drop(tx);
            self.tx_free.push(addr);
            false
        }
    }

    /// Tells the kernel about queued frames, and collects the frames it finished sending.
    /// Returns true if frames are still waiting (the device was full): kick again soon.
    ///
    /// In copy mode the kernel sends during the system call, at most 32 frames per call
    /// (`TX_BATCH_SIZE` in net/xdp/xsk.c), so a burst takes a few calls; a zero-copy driver
    /// that needs no wake-up fetches them itself.
    pub fn kick(&mut self) -> bool {
        if self.unkicked > 0 {
            self.unkicked = 0;
            while self.tx.needs_wakeup() {
                let before = self.tx.pending();
                if before == 0 {
                    break;
                }
                self.tx.wake();
                if self.tx.pending() >= before {
                    break; // no progress: the device queue is full
                }
            }
        }
        self.reap_completions();
        let waiting = self.tx.pending() > 0 && self.tx.needs_wakeup();
        if waiting {
            self.unkicked = 1;
        }
        waiting
    }

    fn reap_completions(&mut self) {
        let n = self.device.available();
        if n == 0 {
            return;
        }
        let mut c = self.device.complete(n);
        while let Some(addr) = c.read() {
            self.tx_free.push(addr & !u64::from(FRAME_SIZE - 1));
        }
        c.release();
    }
}

/// The UMEM's memory, to read received frames without borrowing the socket.
#[derive(Clone, Copy)]
pub struct UmemView {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a view of memory the socket owns; it moves with the socket to the queue's thread.
unsafe impl Send for UmemView {}

impl UmemView {
    /// The bytes of a received frame.
    ///
    /// # Safety
    /// `desc` came from `XskSocket::receive` of the socket this view belongs to, the frame
    /// was not yet given back with `refill`, and the socket outlives the returned slice.
    pub unsafe fn frame<'a>(&self, desc: &XdpDesc) -> &'a [u8] {
        let start = (desc.addr as usize).min(self.len);
        let end = (start + desc.len as usize).min(self.len);
        // SAFETY: inside our area; the caller guarantees the frame is ours while borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) }
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.user.as_raw_fd()
    }
}
