//! `cargo xtask setup`: installs what a fresh machine lacks. Each step first checks whether
//! its result is already there, so a second run is fast and changes nothing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::util::{find_on_path, on_path, output, run};

/// How to tell that a Debian package is installed.
enum Has {
    /// A program on PATH (or in /usr/sbin).
    Program(&'static str),
    /// A file.
    File(&'static str),
}

/// Debian packages the lab, tests, demo and benchmarks use.
const DEBIAN_PACKAGES: &[(Has, &str)] = &[
    (Has::Program("ip"), "iproute2"),
    (Has::Program("tcpdump"), "tcpdump"),
    (Has::Program("curl"), "curl"),
    (Has::Program("python3"), "python3"),
    (Has::Program("hping3"), "hping3"),
    (Has::Program("iperf3"), "iperf3"),
    (Has::Program("nft"), "nftables"),
    (Has::Program("ethtool"), "ethtool"),
    (Has::Program("bpftool"), "bpftool"),
    (Has::Program("perf"), "linux-perf"),
    // The benchmarks' side-by-side targets and load generator.
    (Has::Program("haproxy"), "haproxy"),
    (Has::Program("nginx"), "nginx"),
    (
        Has::File("/usr/lib/nginx/modules/ngx_stream_module.so"),
        "libnginx-mod-stream",
    ),
    (Has::Program("wrk"), "wrk"),
    // The metrics test scrapes tcpfront with a real Prometheus; the unit file is checked with
    // systemd-analyze.
    (Has::Program("prometheus"), "prometheus"),
    (Has::Program("systemd-analyze"), "systemd"),
    // The fleet test's BGP speakers.
    (Has::Program("bird"), "bird2"),
    // The charts' text.
    (Has::Program("fc-list"), "fontconfig"),
    (
        Has::File("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        "fonts-dejavu-core",
    ),
];

pub fn setup() -> anyhow::Result<()> {
    debian_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn installed(has: &Has) -> bool {
    match has {
        Has::Program(p) => on_path(p) || Path::new("/usr/sbin").join(p).exists(),
        Has::File(f) => Path::new(f).exists(),
    }
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(has, _)| !installed(has))
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        eprintln!("xtask: Debian packages present");
        return Ok(());
    }
    if !on_path("apt-get") {
        bail!(
            "missing Debian packages ({}) and no apt-get to install them",
            missing.join(", ")
        );
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    // HAProxy and nginx are benchmark targets, started in the lab's namespaces with their own
    // configuration: their packages must not start system services (on port 80 of the host).
    let _no_services = NoServiceStarts::new()?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// While it lives, `/usr/sbin/policy-rc.d` forbids package scripts to start services
/// (Debian's invoke-rc.d policy interface; exit status 101 = "action forbidden").
struct NoServiceStarts {
    created: bool,
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl NoServiceStarts {
    fn new() -> anyhow::Result<Self> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(Self { created: false });
        }
        fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# tcpfront xtask setup: no service starts\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(0o755))?;
        Ok(Self { created: true })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.created {
            let _ = fs::remove_file(POLICY_RC_D);
        }
    }
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the XDP program")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: nightly rust-src present");
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// The nightly's own LLVM: bpf-linker must link exactly this library.
struct NightlyLlvm {
    /// e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`
    file_name: String,
    path: PathBuf,
    major: String,
}

fn nightly_llvm() -> anyhow::Result<NightlyLlvm> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(&sysroot).join("lib");
    let file_name = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("`rustc +nightly -vV` names no LLVM version")?
        .to_string();
    Ok(NightlyLlvm {
        path: lib.join(&file_name),
        file_name,
        major,
    })
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".cache/tcpfront")
}

fn bpf_linker() -> anyhow::Result<()> {
    let llvm = nightly_llvm()?;
    let wanted = format!("{} llvm-{}", llvm.file_name, llvm.major);
    let stamp = cache_dir().join("bpf-linker.stamp");
    let installed = find_on_path("bpf-linker").is_some();
    if installed && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) {
        eprintln!(
            "xtask: bpf-linker present (built against {})",
            llvm.file_name
        );
        return Ok(());
    }

    // A prefix whose lib/ holds the nightly's libLLVM under both names llvm-sys looks for.
    let prefix = cache_dir().join("llvm-prefix").join(&llvm.file_name);
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in ["libLLVM.so", llvm.file_name.as_str()] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm.path, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    run(Command::new("cargo")
        .args([
            "install",
            "--force",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{}", llvm.major))
        .env("LLVM_PREFIX", &prefix))?;
    if find_on_path("bpf-linker").is_none() {
        bail!("bpf-linker was installed but is not on PATH; add ~/.cargo/bin to PATH");
    }
    fs::create_dir_all(cache_dir())?;
    fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}
