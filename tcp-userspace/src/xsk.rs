//! AF_XDP sockets: one per RX queue, sharing nothing, each with its own UMEM.
//!
//! Ring handling comes from `xdpilone` (maintained, small, no C dependency, no libbpf/libxdp:
//! the XDP program and its XSKMAP are aya's). This module owns the memory, keeps the fill
//! ring stocked, and copies frames in and out.

use std::{
    num::NonZeroU32,
    os::fd::{AsRawFd, RawFd},
    ptr::NonNull,
};

use anyhow::{Context as _, anyhow, bail};
use xdpilone::{
    DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User, xdp::XdpDesc,
};

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
    queue: u32,
    mode: XskMode,
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
            queue,
            mode,
        })
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn mode(&self) -> XskMode {
        self.mode
    }

    fn frame(&self, desc: &XdpDesc) -> &[u8] {
        let start = desc.addr as usize;
        let end = (start + desc.len as usize).min(self.area.len);
        // SAFETY: the kernel hands out descriptors inside our area; bounds clamped anyway.
        unsafe { std::slice::from_raw_parts(self.area.ptr.as_ptr().add(start), end - start) }
    }

    /// Hands up to `max` received frames to `f`, then returns their buffers to the fill ring.
    pub fn recv(&mut self, max: u32, mut f: impl FnMut(&[u8])) -> usize {
        let mut done = Vec::new();
        {
            let mut rx = self.rx.receive(max);
            while let Some(desc) = rx.read() {
                done.push(desc);
            }
            rx.release();
        }
        for desc in &done {
            f(self.frame(desc));
        }
        if !done.is_empty() {
            // Aligned mode: the frame's base is the address rounded down to FRAME_SIZE.
            let mut fill = self.device.fill(done.len() as u32);
            fill.insert(done.iter().map(|d| d.addr & !u64::from(FRAME_SIZE - 1)));
            fill.commit();
        }
        if self.device.needs_wakeup() {
            self.device.wake();
        }
        done.len()
    }

    /// Queues one frame for transmission; false if no TX buffer is free right now.
    pub fn send(&mut self, frame: &[u8]) -> anyhow::Result<bool> {
        self.reap_completions();
        if frame.len() > FRAME_SIZE as usize {
            bail!("frame of {} bytes exceeds the UMEM frame size", frame.len());
        }
        let Some(addr) = self.tx_free.pop() else {
            return Ok(false);
        };
        // SAFETY: addr is one of our TX frames, FRAME_SIZE bytes inside the area.
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.area.ptr.as_ptr().add(addr as usize),
                frame.len(),
            );
        }
        let desc = XdpDesc {
            addr,
            len: frame.len() as u32,
            options: 0,
        };
        {
            let mut tx = self.tx.transmit(1);
            if tx.insert_once(desc) {
                tx.commit();
            } else {
                self.tx_free.push(addr);
                return Ok(false);
            }
        }
        if self.tx.needs_wakeup() {
            self.tx.wake();
        }
        Ok(true)
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

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.user.as_raw_fd()
    }
}
