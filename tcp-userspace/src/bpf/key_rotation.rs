//! Keeping the program's `COOKIE` map on the key schedule of [`super::secret::Rotation`].

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::secret::Rotation;

/// The keys for now, from the schedule.
pub fn current_keys(cookies: &Mutex<Rotation>) -> tcp_common::cookie::CookieKeys {
    let minute = super::cookie::current_minute();
    let offset = super::cookie::clock_offset_ns();
    match cookies.lock() {
        Ok(mut r) => r.keys_at(minute, offset),
        Err(p) => p.into_inner().keys_at(minute, offset),
    }
}

/// Installs the cookie keys of the epochs around now into the program's `COOKIE` map, at
/// every epoch boundary (the next epoch's key is in the map beforehand, so a late wake-up
/// costs nothing), at least every 10 minutes (to follow the wall clock's adjustments), and
/// when a reload brings a new secret.
pub async fn install_forever(
    cookies: Arc<Mutex<Rotation>>,
    wake: Arc<tokio::sync::Notify>,
    pin: std::path::PathBuf,
) {
    let mut map: aya::maps::Array<aya::maps::MapData, tcp_common::cookie::CookieKeys> =
        match aya::maps::MapData::from_pin(&pin)
            .map_err(anyhow::Error::from)
            .and_then(|d| Ok(aya::maps::Array::try_from(aya::maps::Map::Array(d))?))
        {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(
                    "cookie keys cannot be rotated: opening {}: {e:#}",
                    pin.display()
                );
                return;
            }
        };
    loop {
        let keys = current_keys(&cookies);
        if let Err(e) = map.set(0, keys, 0) {
            tracing::error!("installing the cookie keys: {e}");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let next = match cookies.lock() {
            Ok(r) => r.next_boundary(now / 60) * 60,
            Err(_) => now + 60,
        };
        let wait = Duration::from_secs(next.saturating_sub(now).clamp(1, 600));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}
