//! The SYN cookie's secret and its rotation.
//!
//! A fleet shares one secret (`--cookie-secret FILE`, the same file on every node); each
//! epoch of `--cookie-rotate` (default 1 h) gets its own SipHash key, derived from the secret
//! with HKDF-SHA-256 (RFC 5869) and the epoch's number, so that nodes whose clocks agree
//! (NTP) mint and accept the same cookies, and no key outlives its epoch by more than the
//! cookie's own two minutes. The `COOKIE` map holds three keys: the previous epoch's (for
//! cookies minted in its last minute), the current one and the next (so that a late wake-up
//! of the daemon never leaves the program without the key of the new epoch). A new secret
//! (SIGHUP) takes over at the next epoch boundary: the epochs already keyed keep their keys.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use hkdf::Hkdf;
use sha2::Sha256;
use tcp_common::cookie::{COOKIE_KEY_SLOTS, COOKIE_SLOT_UNUSED, CookieKeys};

/// The shortest secret accepted (bytes).
pub const MIN_SECRET_LEN: usize = 32;
/// Default of `--cookie-rotate`.
pub const DEFAULT_ROTATE: Duration = Duration::from_secs(3600);

/// Where the secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A file shared by the fleet.
    File(PathBuf),
    /// Drawn from the kernel at start, known to this instance alone.
    Random,
}

impl SecretSource {
    pub fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Random => "random".into(),
        }
    }
}

/// Secret bytes (never logged or shown).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// Reads a secret file: at least [`MIN_SECRET_LEN`] bytes, readable by its owner only.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("--cookie-secret {}", path.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "--cookie-secret {}: readable by group or others (mode {:o}); `chmod 600` it",
                path.display(),
                mode & 0o777
            );
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("--cookie-secret {}", path.display()))?;
        if bytes.len() < MIN_SECRET_LEN {
            bail!(
                "--cookie-secret {}: {} bytes, at least {MIN_SECRET_LEN} random bytes are \
                 needed (e.g. `head -c 32 /dev/urandom > FILE`)",
                path.display(),
                bytes.len()
            );
        }
        Ok(Self(bytes))
    }

    /// 32 bytes from the kernel's random pool.
    pub fn random() -> anyhow::Result<Self> {
        let mut b = vec![0u8; MIN_SECRET_LEN];
        // SAFETY: getrandom writes at most b.len() bytes into b.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        if n != b.len() as isize {
            bail!("the kernel's random pool did not answer");
        }
        Ok(Self(b))
    }

    pub fn load(source: &SecretSource) -> anyhow::Result<Self> {
        match source {
            SecretSource::File(p) => Self::from_file(p),
            SecretSource::Random => Self::random(),
        }
    }

    /// The SipHash key of `epoch`: HKDF-SHA-256 with a fixed salt, the epoch in the info.
    pub fn epoch_key(&self, epoch: u64) -> [u64; 2] {
        let hk = Hkdf::<Sha256>::new(Some(b"tcpfront syn cookie v1"), &self.0);
        let mut okm = [0u8; 16];
        let mut info = *b"epoch ........";
        info[6..].copy_from_slice(&epoch.to_be_bytes());
        // 16 bytes are far below HKDF-SHA-256's limit of 255 × 32: this cannot fail.
        let _ = hk.expand(&info, &mut okm);
        [
            u64::from_le_bytes(okm[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(okm[8..].try_into().unwrap_or_default()),
        ]
    }
}

/// The keys of each epoch around now, and how to make the next ones.
#[derive(Debug)]
pub struct Rotation {
    pub source: SecretSource,
    secret: Secret,
    /// Epoch length in minutes (≥ 1).
    pub rotate_minutes: u64,
    keys: BTreeMap<u64, [u64; 2]>,
}

impl Rotation {
    pub fn new(source: SecretSource, rotate: Duration) -> anyhow::Result<Self> {
        let rotate_minutes = rotate_minutes(rotate)?;
        Ok(Self {
            secret: Secret::load(&source)?,
            source,
            rotate_minutes,
            keys: BTreeMap::new(),
        })
    }

    pub fn epoch_of(&self, minute: u64) -> u64 {
        minute / self.rotate_minutes
    }

    /// The map's content for wall-clock `minute`: keys of the previous, current and next
    /// epochs (made now with the current secret if they were not made before).
    pub fn keys_at(&mut self, minute: u64, clock_offset_ns: u64) -> CookieKeys {
        let e = self.epoch_of(minute);
        self.keys.retain(|&k, _| k + 1 >= e);
        let mut out = CookieKeys {
            key: [[0; 2]; COOKIE_KEY_SLOTS],
            from_minute: [COOKIE_SLOT_UNUSED; COOKIE_KEY_SLOTS],
            clock_offset_ns,
        };
        for (slot, epoch) in (e.saturating_sub(1)..=e + 1).enumerate() {
            let secret = &self.secret;
            let key = *self
                .keys
                .entry(epoch)
                .or_insert_with(|| secret.epoch_key(epoch));
            out.key[slot] = key;
            out.from_minute[slot] = epoch * self.rotate_minutes;
        }
        out
    }

    /// A new secret (SIGHUP): epochs after `minute`'s take their keys from it; the current
    /// one keeps its own, so that every cookie minted so far stays valid.
    pub fn replace_secret(&mut self, secret: Secret, minute: u64) {
        let e = self.epoch_of(minute);
        self.keys.retain(|&k, _| k <= e);
        self.secret = secret;
    }

    /// When the epoch after `minute`'s starts, in wall-clock minutes.
    pub fn next_boundary(&self, minute: u64) -> u64 {
        (self.epoch_of(minute) + 1) * self.rotate_minutes
    }
}

/// `--cookie-rotate` in whole minutes: the cookie counts minutes, so an epoch is made of them.
pub fn rotate_minutes(rotate: Duration) -> anyhow::Result<u64> {
    let s = rotate.as_secs();
    if s < 60 || !s.is_multiple_of(60) || rotate.subsec_nanos() != 0 {
        bail!(
            "--cookie-rotate {rotate:?}: must be whole minutes, at least 1m (the cookie counts \
             minutes)"
        );
    }
    Ok(s / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tcpfront-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn secret_files_are_checked() {
        let ok = file("ok", &[7; 32], 0o600);
        assert!(Secret::from_file(&ok).is_ok());
        let e = format!(
            "{:#}",
            Secret::from_file(&file("short", &[7; 31], 0o600)).unwrap_err()
        );
        assert!(e.contains("31 bytes") && e.contains("at least 32"), "{e}");
        let e = format!(
            "{:#}",
            Secret::from_file(&file("open", &[7; 32], 0o644)).unwrap_err()
        );
        assert!(e.contains("readable by group or others"), "{e}");
        let e = format!(
            "{:#}",
            Secret::from_file(Path::new("/nonexistent/s")).unwrap_err()
        );
        assert!(e.contains("--cookie-secret /nonexistent/s"), "{e}");
        assert!(!format!("{:?}", Secret::from_file(&ok).unwrap()).contains('7'));
    }

    #[test]
    fn keys_depend_on_the_secret_and_the_epoch_only() {
        let a = Secret(vec![1; 32]);
        let b = Secret(vec![2; 32]);
        assert_eq!(
            a.epoch_key(5),
            Secret(vec![1; 32]).epoch_key(5),
            "two nodes agree"
        );
        assert_ne!(a.epoch_key(5), a.epoch_key(6));
        assert_ne!(a.epoch_key(5), b.epoch_key(5));
    }

    #[test]
    fn the_map_holds_the_previous_current_and_next_epoch() {
        let mut r = Rotation {
            source: SecretSource::Random,
            secret: Secret(vec![3; 32]),
            rotate_minutes: 60,
            keys: BTreeMap::new(),
        };
        let k = r.keys_at(125, 9);
        assert_eq!(k.from_minute, [60, 120, 180]);
        assert_eq!(k.clock_offset_ns, 9);
        assert_eq!(k.key[1], r.secret.epoch_key(2));
        assert_eq!(k.slot_for(119), Some(0));
        assert_eq!(k.slot_for(125), Some(1));
        assert_eq!(r.next_boundary(125), 180);
        // Epoch 0 has no predecessor.
        assert_eq!(r.keys_at(3, 0).from_minute[..2], [0, 60]);
    }

    #[test]
    fn a_new_secret_takes_over_at_the_next_epoch() {
        let old = Secret(vec![4; 32]);
        let new = Secret(vec![5; 32]);
        let mut r = Rotation {
            source: SecretSource::Random,
            secret: old.clone(),
            rotate_minutes: 1,
            keys: BTreeMap::new(),
        };
        r.keys_at(100, 0);
        r.replace_secret(new.clone(), 100);
        let k = r.keys_at(100, 0);
        assert_eq!(
            k.key,
            [old.epoch_key(99), old.epoch_key(100), new.epoch_key(101)]
        );
        let k = r.keys_at(101, 0);
        assert_eq!(
            k.key,
            [old.epoch_key(100), new.epoch_key(101), new.epoch_key(102)]
        );
    }

    #[test]
    fn epochs_are_whole_minutes() {
        assert_eq!(rotate_minutes(Duration::from_secs(3600)).unwrap(), 60);
        assert!(rotate_minutes(Duration::from_secs(30)).is_err());
        assert!(rotate_minutes(Duration::from_secs(90)).is_err());
    }
}
