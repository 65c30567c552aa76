//! The systemd notify protocol, when `NOTIFY_SOCKET` is set (by systemd
//! for `Type=notify` and `Type=notify-reload` services): `READY=1` once
//! accepting; `RELOADING=1` with `MONOTONIC_USEC` when a hot restart
//! starts; `MAINPID=` the successor and `READY=1` when it took over (or
//! `READY=1` with a `STATUS=` when it failed, so the reload ends);
//! `STOPPING=1` on a real stop; `EXTEND_TIMEOUT_USEC` while the stop
//! runs; `WATCHDOG=1` from the watchdog. Without `NOTIFY_SOCKET`, each is
//! nothing.
//!
//! Once the successor is the main process, this one says nothing more:
//! the manager would refuse (and log) messages from a process that is no
//! longer its main one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// The sender of notify messages; one per process.
#[derive(Debug)]
pub(crate) struct Notifier {
    enabled: bool,
    /// Set when a successor became the main process.
    retired: AtomicBool,
    /// Set after the first failed send, so a broken socket is logged once.
    failed: AtomicBool,
}

impl Notifier {
    /// A notifier for this process's environment.
    pub(crate) fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            retired: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    /// The watchdog interval the manager asked for (`WATCHDOG_USEC`, for
    /// this process by `WATCHDOG_PID`), if any.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        if self.enabled {
            sd_notify::watchdog_enabled().filter(|interval| !interval.is_zero())
        } else {
            None
        }
    }

    /// The server accepts connections.
    pub(crate) fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// A hot restart started.
    pub(crate) fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading];
        match NotifyState::monotonic_usec_now() {
            Ok(now) => states.push(now),
            Err(error) => log::warn!("could not read the monotonic clock: {error}"),
        }
        self.send(&states);
    }

    /// The hot restart failed; this process goes on serving.
    pub(crate) fn reload_failed(&self, why: &str) {
        let status = format!("restart failed: {why}; the old process goes on serving");
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// The successor took over: it is the main process from now on, and
    /// this process says nothing more.
    pub(crate) fn handed_over(&self, successor: u32) {
        self.send(&[NotifyState::MainPid(successor), NotifyState::Ready]);
        self.retired.store(true, Ordering::SeqCst);
    }

    /// A real stop started.
    pub(crate) fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// The stop needs `more` from now, whatever the manager's timeout.
    pub(crate) fn extend_timeout(&self, more: Duration) {
        let usec = u32::try_from(more.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }

    /// The server is alive.
    pub(crate) fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled || self.retired.load(Ordering::SeqCst) {
            return;
        }
        if let Err(error) = sd_notify::notify(states) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                log::warn!("could not notify the service manager (NOTIFY_SOCKET): {error}");
            }
        }
    }
}
