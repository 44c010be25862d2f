//! `--announce IFNAME`: the VIPs (the exact `--listen` addresses) as host routes that a BGP
//! daemon announces while tcpfront serves.
//!
//! tcpfront creates a TUN device that only it holds open (not persistent), puts every VIP on
//! it (/32, /128) and sets it up; BIRD's `protocol direct` on that device (see
//! `dist/bird-node.conf`) turns them into routes and exports them over BGP. When tcpfront
//! starts draining it closes the device: the kernel removes it, BIRD withdraws the routes and
//! the router sends new connections to the other nodes. When tcpfront dies, SIGKILL included,
//! the kernel closes the device all the same: no clean-up step is needed for the node to
//! leave the fleet.

use std::{
    collections::BTreeSet,
    fs::File,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd as _,
};

use anyhow::{Context as _, bail};
use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle, LinkUnspec,
    packet_route::address::{AddressAttribute, AddressFlags},
};

/// The announcing device; dropping it withdraws every VIP.
pub struct Announcer {
    /// Holding the TUN fd keeps the device; closing it removes it.
    _tun: File,
    pub name: String,
    index: u32,
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
    announced: BTreeSet<IpAddr>,
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.connection.abort();
        tracing::info!(
            "withdrawn: {} closed (VIPs {})",
            self.name,
            list(&self.announced)
        );
    }
}

/// The VIPs of a listen list: its exact addresses.
pub fn vips(listen: &[SocketAddr]) -> BTreeSet<IpAddr> {
    listen
        .iter()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect()
}

fn list(ips: &BTreeSet<IpAddr>) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Announcer {
    /// Creates `name`, puts `vips` on it and sets it up.
    pub async fn start(name: &str, vips: &BTreeSet<IpAddr>) -> anyhow::Result<Self> {
        if vips.is_empty() {
            bail!(
                "--announce {name}: there is no VIP to announce (only exact --listen addresses \
                 are announced, not 0.0.0.0 or ::)"
            );
        }
        let tun = create_tun(name).with_context(|| format!("--announce {name}"))?;
        let index = crate::cmd::interface_index(name)?;
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a route netlink socket")?;
        let connection = tokio::spawn(connection);
        let mut a = Self {
            _tun: tun,
            name: name.to_string(),
            index,
            handle,
            connection,
            announced: BTreeSet::new(),
        };
        a.update(vips).await?;
        a.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .with_context(|| format!("setting {name} up"))?;
        tracing::info!("announcing {} on {name}", list(&a.announced));
        Ok(a)
    }

    /// Announces exactly `vips` from now on (a reload).
    pub async fn update(&mut self, vips: &BTreeSet<IpAddr>) -> anyhow::Result<()> {
        for ip in vips.difference(&self.announced.clone()) {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            let mut req = self.handle.address().add(self.index, *ip, prefix);
            // Nothing to detect duplicates against on a TUN device: usable at once.
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            req.execute()
                .await
                .with_context(|| format!("adding {ip} to {}", self.name))?;
            self.announced.insert(*ip);
        }
        for ip in self.announced.clone().difference(vips) {
            let mut found = self
                .handle
                .address()
                .get()
                .set_link_index_filter(self.index)
                .set_address_filter(*ip)
                .execute();
            while let Some(msg) = found
                .try_next()
                .await
                .with_context(|| format!("listing {}'s addresses", self.name))?
            {
                self.handle
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .with_context(|| format!("removing {ip} from {}", self.name))?;
            }
            self.announced.remove(ip);
        }
        Ok(())
    }

    pub fn announced(&self) -> Vec<IpAddr> {
        self.announced.iter().copied().collect()
    }
}

/// A TUN device named `name` that lives as long as the returned file (TUNSETIFF without
/// TUNSETPERSIST).
fn create_tun(name: &str) -> anyhow::Result<File> {
    crate::instance::validate_iface_name(name)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun")?;
    // linux/if_tun.h
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TUN: libc::c_short = 0x0001;
    const IFF_NO_PI: libc::c_short = 0x1000;
    // SAFETY: a zeroed ifreq with the name and flags set, for an ioctl on our own fd.
    let rc = unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
        libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut ifr)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("creating the TUN device {name} (is it taken?)"));
    }
    Ok(file)
}
