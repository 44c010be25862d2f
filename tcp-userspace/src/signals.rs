//! The daemon's signals: SIGTERM/SIGINT stop it (a second one cuts the drain short), SIGHUP
//! asks for a reload. Handlers are installed first thing, so a signal during start-up is
//! seen and start-up ends early, cleaning up after itself.

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

/// Stop requests seen so far (SIGTERM or SIGINT), and reload requests (SIGHUP).
pub struct Signals {
    stops: watch::Receiver<u32>,
    stops_handled: u32,
    reloads: watch::Receiver<u32>,
}

impl Signals {
    /// Installs the handlers and a task that counts what arrives.
    pub fn install() -> anyhow::Result<Self> {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let (stops_tx, stops) = watch::channel(0u32);
        let (reloads_tx, reloads) = watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = term.recv() => {
                        tracing::info!("SIGTERM received");
                        stops_tx.send_modify(|n| *n += 1);
                    }
                    Some(()) = int.recv() => {
                        tracing::info!("SIGINT received");
                        stops_tx.send_modify(|n| *n += 1);
                    }
                    Some(()) = hup.recv() => {
                        tracing::info!("SIGHUP received");
                        reloads_tx.send_modify(|n| *n += 1);
                    }
                    else => return,
                }
            }
        });
        // Handlers are in place: let what `block_stop_signals` held back in (to this thread).
        set_mask(libc::SIG_UNBLOCK);
        Ok(Self {
            stops,
            stops_handled: 0,
            reloads,
        })
    }

    /// A stop was asked for and not yet handled (checked between start-up steps).
    pub fn stop_requested(&self) -> bool {
        *self.stops.borrow() > self.stops_handled
    }

    /// Waits for the next stop request (returns at once for one not yet handled).
    pub async fn next_stop(&mut self) {
        loop {
            let seen = *self.stops.borrow_and_update();
            if seen > self.stops_handled {
                self.stops_handled = seen;
                return;
            }
            if self.stops.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// SIGHUPs, from now on.
    pub fn reloads(&self) -> Reloads {
        let mut rx = self.reloads.clone();
        rx.mark_unchanged();
        Reloads(rx)
    }
}

/// The SIGHUPs that arrive (see [`Signals::reloads`]).
pub struct Reloads(watch::Receiver<u32>);

impl Reloads {
    /// Waits for the next SIGHUP.
    pub async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP on the calling thread (and the threads it makes) until
/// [`Signals::install`] unblocks them: called first thing by `run`'s `main`.
pub fn block_stop_signals() {
    set_mask(libc::SIG_BLOCK);
}

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn set_mask(how: libc::c_int) {
    let set = stop_signal_set();
    // SAFETY: valid set; only this thread's mask changes.
    unsafe {
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Keeps SIGTERM, SIGINT and SIGHUP from being delivered to the calling thread while it
/// lives; other threads (the runtime's) still take them.
///
/// Why: the verifier aborts a program load with EAGAIN when the loading thread has a signal
/// pending, and aya then retries with the verifier's log on, which takes ~5 s instead of
/// ~0.3 s. A stop request during the load is handled right after it instead.
pub struct SignalsBlocked {
    previous: libc::sigset_t,
    /// The mask is per thread: the guard must be dropped where it was made.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl SignalsBlocked {
    pub fn new() -> Self {
        let set = stop_signal_set();
        // SAFETY: the call only reads and writes the sets given.
        unsafe {
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
            Self {
                previous,
                _not_send: std::marker::PhantomData,
            }
        }
    }
}

impl Default for SignalsBlocked {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`, on the same thread (the guard is !Send).
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}
