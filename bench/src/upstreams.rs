//! The services the proxies relay to, each its own process in the front-end namespace (so
//! that their descriptors and CPU are not the benchmark's): iperf3's server, nginx answering
//! every HTTP request with `200 ok`, and an event-driven echo server (this binary's hidden
//! `serve-echo`).

use std::{path::PathBuf, process::Stdio};

use anyhow::Context as _;
use tcpfront_tests::{lab::Lab, netns::command_in, process::ChildGuard};

use crate::{common, proxies};

pub const IPERF: u16 = 5201;
pub const HTTP: u16 = 8081;
pub const ECHO: u16 = 7000;
/// The HTTP upstream's path of a `REQUEST_BYTES` body (a static file).
pub const REQUEST_PATH: &str = "/32k";
pub const REQUEST_BYTES: usize = 32 * 1024;

/// A running upstream; stopped (and its files removed) when dropped.
pub struct Upstream {
    child: ChildGuard,
    dir: Option<PathBuf>,
}

impl Upstream {
    pub fn pid(&self) -> u32 {
        self.child.pid() as u32
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn iperf(lab: &Lab) -> anyhow::Result<Upstream> {
    let child = ChildGuard::spawn(
        "iperf3 server",
        command_in(&lab.names.front_ns, "iperf3")
            .args(["-s", "-p", &IPERF.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    proxies::wait_listening(lab, IPERF)?;
    Ok(Upstream { child, dir: None })
}

/// nginx serving `200 ok` to every request on every address, a worker per CPU.
pub fn http(lab: &Lab) -> anyhow::Result<Upstream> {
    let dir = std::env::temp_dir().join(format!(
        "tcpfront-bench-upstream-nginx-{}-{}",
        std::process::id(),
        common::unix_now()
    ));
    std::fs::create_dir_all(dir.join("www"))?;
    std::fs::write(
        dir.join("www").join(REQUEST_PATH.trim_start_matches('/')),
        vec![b'x'; REQUEST_BYTES],
    )?;
    let conf = format!(
        "worker_processes auto;\n\
         worker_rlimit_nofile {fds};\n\
         pid {pid};\n\
         error_log stderr warn;\n\
         daemon off;\n\
         events {{ worker_connections {conns}; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {dir}/body;\n\
         \x20   proxy_temp_path {dir}/proxy;\n\
         \x20   fastcgi_temp_path {dir}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir}/uwsgi;\n\
         \x20   scgi_temp_path {dir}/scgi;\n\
         \x20   server {{\n\
         \x20       listen {HTTP} reuseport backlog=4096;\n\
         \x20       listen [::]:{HTTP} reuseport backlog=4096;\n\
         \x20       location / {{ return 200 \"ok\\n\"; }}\n\
         \x20       location = {REQUEST_PATH} {{ root {dir}/www; }}\n\
         \x20   }}\n\
         }}\n",
        fds = proxies::FD_LIMIT,
        conns = proxies::FD_LIMIT - 200,
        pid = dir.join("nginx.pid").display(),
        dir = dir.display(),
    );
    let cfg = dir.join("nginx.conf");
    std::fs::write(&cfg, conf)?;
    let log = std::fs::File::create(dir.join("nginx.log"))?;
    let child = ChildGuard::spawn(
        "nginx (upstream)",
        command_in(&lab.names.front_ns, "nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&cfg)
            .args(["-e", "stderr"])
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    let up = Upstream {
        child,
        dir: Some(dir),
    };
    proxies::wait_listening(lab, HTTP)?;
    Ok(up)
}

/// This binary's `serve-echo` on ECHO.
pub fn echo(lab: &Lab) -> anyhow::Result<Upstream> {
    let me = std::env::current_exe().context("finding tcpfront-bench itself")?;
    let child = ChildGuard::spawn(
        "echo server",
        command_in(&lab.names.front_ns, &me.to_string_lossy())
            .args(["serve-echo", "--port", &ECHO.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )?;
    proxies::wait_listening(lab, ECHO)?;
    Ok(Upstream { child, dir: None })
}

/// The echo server itself (`tcpfront-bench serve-echo`): every byte back, a tokio task per
/// connection on a worker per CPU; runs until killed.
pub fn serve_echo(port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("::", port))
            .await
            .with_context(|| format!("binding [::]:{port}"))?;
        loop {
            match l.accept().await {
                Ok((mut s, _)) => {
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
                // Out of descriptors: wait for some to close rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    })
}
