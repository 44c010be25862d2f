//! systemd's readiness protocol (sd_notify(3)) through the sd-notify crate, for
//! `Type=notify` units: `READY=1` once XDP is attached and every queue serves, `STATUS=`
//! lines with the connection count, `RELOADING=1` … `READY=1` around a reload, `STOPPING=1`
//! when the drain starts. Without
//! `NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use sd_notify::NotifyState;

#[derive(Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    pub fn enabled(self) -> bool {
        self.enabled
    }

    pub fn ready(self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// A reload starts; `ready` ends it.
    pub fn reloading(self) {
        self.send(&[NotifyState::Reloading]);
    }

    pub fn stopping(self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    fn send(self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        // A failure to notify must not stop the service; systemd's own timeout reports it.
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!("sd_notify: {e}");
        }
    }
}

/// The `STATUS=` line while serving.
pub fn serving_status(connections: usize) -> String {
    format!(
        "serving: {connections} connection{}",
        if connections == 1 { "" } else { "s" }
    )
}
