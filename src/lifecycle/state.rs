//! The shared lifecycle state: the phase, the shutdown trigger, the
//! deadline, the in-flight trackers and the server's counts.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use serde::Serialize;

use super::cleanup::Cleanup;
use super::counters::Counters;
use super::drain::Arrivals;
use super::inflight::InFlight;
use super::notify::Notifier;
use super::restarts::Restarts;
use crate::sync;

/// Where the process is in its life, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Accepting and serving; `/readyz` is 200.
    Running = 0,
    /// Shutdown asked for: `/readyz` is 503, connections are closed after
    /// the requests they already carry are answered (`Connection: close`),
    /// new connections are still accepted until the drain ends.
    Draining = 1,
    /// The listener is closed; requests already received are finished.
    Closing = 2,
    /// Cleanup hooks are running.
    Cleanup = 3,
    /// Everything is stopped.
    Exited = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Running,
            1 => Self::Draining,
            2 => Self::Closing,
            3 => Self::Cleanup,
            _ => Self::Exited,
        }
    }

    /// The phase's name, as in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Draining => "draining",
            Self::Closing => "closing",
            Self::Cleanup => "cleanup",
            Self::Exited => "exited",
        }
    }
}

/// What started the shutdown, as the report's `trigger` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Trigger {
    /// SIGTERM (what an orchestrator sends to stop the process).
    #[serde(rename = "SIGTERM")]
    Sigterm,
    /// SIGINT (Ctrl-C).
    #[serde(rename = "SIGINT")]
    Sigint,
    /// [`ShutdownHandle::shutdown`].
    #[serde(rename = "handle")]
    Handle,
    /// A thread the server cannot run without died; the report's
    /// `failed_thread` names it.
    #[serde(rename = "thread_died")]
    ThreadDied,
    /// A hot restart's successor took over (after SIGHUP or
    /// [`ShutdownHandle::restart`]); the report's `successor_pid` names it.
    /// The drain leaves the listening socket, now the successor's, alone.
    #[serde(rename = "restart")]
    Restart,
    /// A request to the admin listener's drain endpoint (the kubelet's
    /// `preStop` hook): the drain starts before SIGTERM, which then only
    /// confirms it.
    #[serde(rename = "drain_request")]
    DrainRequest,
}

impl Trigger {
    /// `SIGTERM`, `SIGINT`, `handle`, `thread_died`, `restart` or
    /// `drain_request`: its name in the report and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sigterm => "SIGTERM",
            Self::Sigint => "SIGINT",
            Self::Handle => "handle",
            Self::ThreadDied => "thread_died",
            Self::Restart => "restart",
            Self::DrainRequest => "drain_request",
        }
    }
}

/// State shared by every thread. The phase and the deadline are written
/// only by the coordinator, the trigger only by the first shutdown request;
/// everyone reads them. The counts are written by the threads that see the
/// events and read by the report and [`Stats`](crate::server::Stats)
/// (see `counts`).
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// Written by the coordinator (phase changes, in order); read by every
    /// thread on every request. Release/Acquire: a thread that sees a phase
    /// also sees the deadline set before it.
    phase: AtomicU8,
    /// Set once by the first trigger; waited on by the coordinator.
    trigger: Mutex<Option<Trigger>>,
    triggered: Condvar,
    /// Set once by the coordinator when draining starts.
    deadline: OnceLock<Instant>,
    /// Requests from a fully parsed head until the response is written.
    pub(crate) requests: Arc<InFlight>,
    /// Open client connections (accepted, not yet closed).
    pub(crate) connections: Arc<InFlight>,
    /// What happened since the start, counted.
    pub(crate) counts: Counters,
    /// The first supervised thread that died: set once by that thread as
    /// it unwinds; read by the coordinator for the report.
    pub(crate) failed_thread: OnceLock<&'static str>,
    pub(crate) cleanup: Cleanup,
    /// Hot restart requests and their records.
    pub(crate) restarts: Restarts,
    /// Tells the service manager (systemd) what happens.
    pub(crate) notify: Notifier,
    /// New connections and requests during the drain, and its end.
    pub(crate) arrivals: Arrivals,
}

impl Lifecycle {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU8::new(Phase::Running as u8),
            trigger: Mutex::new(None),
            triggered: Condvar::new(),
            deadline: OnceLock::new(),
            requests: InFlight::new(),
            connections: InFlight::new(),
            counts: Counters::default(),
            failed_thread: OnceLock::new(),
            cleanup: Cleanup::default(),
            restarts: Restarts::default(),
            notify: Notifier::from_env(),
            arrivals: Arrivals::default(),
        })
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Whether shutdown has started.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    pub(crate) fn set_deadline(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
    }

    /// Whether the shutdown deadline has passed: requests not started yet
    /// are refused from then on.
    pub(crate) fn deadline_passed(&self) -> bool {
        self.deadline
            .get()
            .is_some_and(|deadline| Instant::now() >= *deadline)
    }

    /// Records the first trigger and wakes the coordinator; later ones are
    /// ignored (the signal handler deals with a second signal itself).
    pub(crate) fn trigger(&self, trigger: Trigger) {
        self.trigger_first(trigger, || {});
    }

    /// Like [`trigger`](Self::trigger), but runs `first` before it, and
    /// only if it is the first trigger (no other can come in between);
    /// returns whether it was.
    pub(crate) fn trigger_first(&self, trigger: Trigger, first: impl FnOnce()) -> bool {
        let mut slot = sync::lock(&self.trigger);
        if slot.is_some() {
            return false;
        }
        first();
        *slot = Some(trigger);
        self.triggered.notify_all();
        true
    }

    /// Whether a shutdown was triggered (the coordinator may not have
    /// started it yet).
    pub(crate) fn is_triggered(&self) -> bool {
        sync::lock(&self.trigger).is_some()
    }

    /// Records that a supervised thread died and starts the shutdown.
    pub(crate) fn thread_died(&self, thread: &'static str) {
        let _ = self.failed_thread.set(thread);
        self.trigger(Trigger::ThreadDied);
    }

    /// Blocks until a shutdown is triggered.
    pub(crate) fn wait_for_trigger(&self) -> Trigger {
        let mut slot = sync::lock(&self.trigger);
        loop {
            if let Some(trigger) = *slot {
                return trigger;
            }
            slot = sync::wait(&self.triggered, slot);
        }
    }
}

/// Starts a graceful shutdown from code: for embedders, tests and the
/// signal handler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) lifecycle: Arc<Lifecycle>,
}

impl ShutdownHandle {
    /// Starts a graceful shutdown, as SIGTERM does. Calling it again does
    /// nothing more.
    pub fn shutdown(&self) {
        self.lifecycle.trigger(Trigger::Handle);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.lifecycle.phase()
    }

    /// Whether shutdown has started (readiness should fail).
    pub fn is_shutting_down(&self) -> bool {
        self.lifecycle.is_shutting_down()
    }

    /// Requests from a parsed head until their response is written.
    pub fn in_flight_requests(&self) -> usize {
        self.lifecycle.requests.count()
    }

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.lifecycle.connections.count()
    }

    /// Registers a cleanup hook, run after the drain, last registered
    /// first, on its own thread, within the cleanup timeout.
    pub fn register_cleanup<F, E>(&self, name: &str, hook: F)
    where
        F: FnOnce() -> Result<(), E> + Send + 'static,
        E: std::fmt::Display,
    {
        self.lifecycle.cleanup.register(name, hook);
    }

    /// Starts a hot restart, as SIGHUP does: the server starts its
    /// successor (the same program with the same arguments, or
    /// `restart_exec`) with the listening sockets, waits at most
    /// `restart_timeout` until it accepts, then stops accepting and drains
    /// as on SIGTERM. Ignored (and logged) while one is under way, during
    /// a shutdown, or before [`Server::run`](crate::Server::run).
    pub fn restart(&self) {
        self.restart_because("a restart request");
    }

    pub(crate) fn restart_because(&self, why: &str) {
        self.lifecycle
            .restarts
            .request(why, self.lifecycle.is_triggered());
    }

    pub(crate) fn trigger(&self, trigger: Trigger) {
        self.lifecycle.trigger(trigger);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_is_serialised_under_its_name() {
        for trigger in [
            Trigger::Sigterm,
            Trigger::Sigint,
            Trigger::Handle,
            Trigger::ThreadDied,
            Trigger::Restart,
            Trigger::DrainRequest,
        ] {
            assert_eq!(serde_json::to_value(trigger).expect("json"), trigger.name());
        }
    }
}
