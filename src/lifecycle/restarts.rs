//! Requests for a hot restart (SIGHUP, or [`ShutdownHandle::restart`]),
//! passed to the restart thread, the record of each attempt, for the
//! shutdown report, and this process's predecessor, whose exit its own
//! stop waits for.
//!
//! Why wait: under systemd (`KillMode=mixed`) the processes left in the
//! unit once its main process exits are killed. A stop soon after a
//! reload finds the predecessor still draining; the successor, now the
//! main process, must not exit before it, or its requests would be cut
//! off. Each process waits for its own predecessor, so a chain of quick
//! reloads is waited for whole, each wait bounded by the waiter's
//! shutdown deadline.
//!
//! [`ShutdownHandle::restart`]: super::ShutdownHandle::restart

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::Serialize;

use crate::sync;

/// How a hot restart ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RestartOutcome {
    /// The successor said it was accepting; this process stopped accepting
    /// and drained.
    TookOver,
    /// The successor could not be started (no such program, say).
    SpawnFailed,
    /// The successor exited (or closed its ready pipe) before it was ready.
    Exited,
    /// The successor was not ready within `restart_timeout`; it was killed.
    TimedOut,
    /// A stop began while the successor was starting; it was stopped.
    Abandoned,
}

/// One hot restart, as the shutdown report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RestartRecord {
    /// How it ended.
    pub outcome: RestartOutcome,
    /// The successor's PID, if it was started.
    pub successor_pid: Option<u32>,
    /// From the request until it ended, in milliseconds.
    pub ms: u64,
    /// What went wrong, when something did.
    pub detail: Option<String>,
}

/// The restart requests and records; part of the lifecycle state.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    /// Wakes the restart thread; set when it starts.
    waker: OnceLock<Arc<mio::Waker>>,
    /// Set by a request, taken by the restart thread.
    requested: AtomicBool,
    /// Set by the restart thread while a successor is starting.
    under_way: AtomicBool,
    records: Mutex<Vec<RestartRecord>>,
    /// The predecessor's PID and a descriptor readable once it exited.
    predecessor: Mutex<Option<(u32, OwnedFd)>>,
}

impl Restarts {
    /// Asks for a hot restart; `why` names the asker in the log. Ignored,
    /// and logged, when one is under way already or `shutting_down`.
    pub(crate) fn request(&self, why: &str, shutting_down: bool) {
        let Some(waker) = self.waker.get() else {
            log::warn!("restart: {why} before the server runs; ignored");
            return;
        };
        if shutting_down {
            log::warn!("restart: {why} while shutting down; ignored");
            return;
        }
        if self.under_way.load(Ordering::SeqCst) || self.requested.swap(true, Ordering::SeqCst) {
            log::warn!("restart: {why} while a restart is under way; ignored");
            return;
        }
        log::info!("restart: {why} received; starting the successor");
        if let Err(error) = waker.wake() {
            log::error!("restart: could not wake the restart thread: {error}");
        }
    }

    /// For the restart thread: where to wake it.
    pub(crate) fn attach(&self, waker: Arc<mio::Waker>) {
        let _ = self.waker.set(waker);
    }

    /// For the restart thread: takes a pending request, marking a restart
    /// under way.
    pub(crate) fn take_request(&self) -> bool {
        let requested = self.requested.swap(false, Ordering::SeqCst);
        if requested {
            self.under_way.store(true, Ordering::SeqCst);
        }
        requested
    }

    /// For the restart thread: the restart under way ended as `record`
    /// says.
    pub(crate) fn finish(&self, record: RestartRecord) {
        sync::lock(&self.records).push(record);
        self.under_way.store(false, Ordering::SeqCst);
    }

    /// For a successor: its predecessor, while that one drains.
    pub(crate) fn set_predecessor(&self, pid: u32, exited: OwnedFd) {
        *sync::lock(&self.predecessor) = Some((pid, exited));
    }

    /// Waits, at most until `deadline`, for the predecessor (if any) to
    /// exit, and logs how it went.
    pub(crate) fn wait_for_predecessor(&self, deadline: Instant) {
        let Some((pid, exited)) = sync::lock(&self.predecessor).take() else {
            return;
        };
        let waited = Instant::now();
        let gone = wait_readable(&exited, deadline).unwrap_or_else(|error| {
            log::warn!("shutdown: cannot wait for the predecessor, pid {pid}: {error}");
            true
        });
        if gone {
            log::info!(
                "shutdown: the predecessor, pid {pid}, has exited (waited {} ms)",
                waited.elapsed().as_millis()
            );
        } else {
            log::warn!("shutdown: the predecessor, pid {pid}, still runs at the deadline");
        }
    }

    /// Every restart so far, in order.
    pub(crate) fn records(&self) -> Vec<RestartRecord> {
        sync::lock(&self.records).clone()
    }
}

/// Waits until `fd` is readable or `deadline` passes.
fn wait_readable(fd: &OwnedFd, deadline: Instant) -> std::io::Result<bool> {
    let mut poll = mio::Poll::new()?;
    poll.registry().register(
        &mut mio::unix::SourceFd(&fd.as_raw_fd()),
        mio::Token(0),
        mio::Interest::READABLE,
    )?;
    let mut events = mio::Events::with_capacity(1);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(left)) {
            Ok(()) if !events.is_empty() => return Ok(true),
            Ok(()) | Err(_) if left.is_zero() => return Ok(false),
            Err(error) if error.kind() != std::io::ErrorKind::Interrupted => return Err(error),
            // Woken early or interrupted: wait for what is left.
            _ => {}
        }
    }
}
