//! Sending hand-made Ethernet frames from inside a namespace (AF_PACKET), for segments no
//! kernel TCP would send: forged ACKs, floods.

use std::process::Command;

use anyhow::{Context as _, bail};

/// The MAC address of `ifname` in namespace `ns`.
pub fn mac_of(ns: &str, ifname: &str) -> anyhow::Result<[u8; 6]> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", ifname])
        .output()
        .context("ip link show")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -j output")?;
    let s = v[0]["address"].as_str().context("no MAC address")?;
    let mut mac = [0u8; 6];
    for (i, part) in s.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).context("MAC address")?;
    }
    Ok(mac)
}

/// An AF_PACKET socket bound to one interface of the calling thread's namespace.
pub struct PacketSocket {
    fd: i32,
    ifindex: i32,
}

impl PacketSocket {
    /// A send-only socket on `ifname` (protocol 0: it receives nothing, so the traffic on
    /// the interface costs it nothing); usable from any thread once open.
    pub fn open_send_only(ifname: &str) -> anyhow::Result<Self> {
        let ifindex = ifindex(ifname)?;
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
        }
        Ok(Self { fd, ifindex })
    }

    pub fn open(ifname: &str) -> anyhow::Result<Self> {
        let ifindex = ifindex(ifname)?;
        // SAFETY: plain syscalls; the fd is owned by the returned value.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
        }
        // Bound to the interface: `recv` sees its frames only.
        // SAFETY: sockaddr_ll is plain data.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex;
        let rc = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            unsafe { libc::close(fd) };
            return Err(e).context("binding the AF_PACKET socket");
        }
        Ok(Self { fd, ifindex })
    }

    pub fn send(&self, frame: &[u8]) -> anyhow::Result<()> {
        self.send_with(frame, 0).context("sendto")
    }

    /// Sends without blocking; false if the interface's queue is full (nothing was sent).
    pub fn try_send(&self, frame: &[u8]) -> anyhow::Result<bool> {
        match self.send_with(frame, libc::MSG_DONTWAIT) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => Ok(false),
            Err(e) => Err(e).context("sendto"),
        }
    }

    fn send_with(&self, frame: &[u8], flags: i32) -> std::io::Result<()> {
        if frame.len() < 14 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "shorter than an Ethernet header",
            ));
        }
        // SAFETY: sockaddr_ll is plain data; the frame outlives the call.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        let n = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                flags,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The index of `ifname` in the calling thread's namespace.
pub fn ifindex(ifname: &str) -> anyhow::Result<i32> {
    let name = std::ffi::CString::new(ifname)?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
    if ifindex == 0 {
        bail!("no interface {ifname}");
    }
    Ok(ifindex)
}

impl PacketSocket {
    /// The next frame seen on the interface (both directions), or None after `timeout`.
    pub fn recv(&self, timeout: std::time::Duration) -> anyhow::Result<Option<Vec<u8>>> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).context("poll");
        }
        if n == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; 2048];
        // SAFETY: buf outlives the call; recv writes at most buf.len() bytes.
        let got = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if got < 0 {
            return Err(std::io::Error::last_os_error()).context("recv");
        }
        buf.truncate(got as usize);
        Ok(Some(buf))
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}
