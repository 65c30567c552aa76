//! The acceptor thread: owns the listener, enforces `max_connections`,
//! hands accepted sockets to the registry, survives accept errors, and at
//! shutdown accepts the backlog before it closes the listener.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};

use super::Stats;
use super::listener;
use super::log_limit::RateLimitedWarning;
use super::registry::{Registry, Wait};
use crate::http::{Connection, Response, StatusCode};
use crate::lifecycle::Lifecycle;

/// Key of the listener on the acceptor's own poller.
const LISTENER_KEY: usize = 0;
/// Pause after an accept error such as EMFILE (out of file descriptors):
/// the listener stays readable, so retrying at once would spin. Short, so
/// service resumes soon after descriptors free up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The running acceptor thread.
#[derive(Debug)]
pub(crate) struct Acceptor {
    thread: JoinHandle<()>,
    poller: Arc<Poller>,
    stop: Arc<OnceLock<Instant>>,
}

struct Admission {
    registry: Arc<Registry>,
    lifecycle: Arc<Lifecycle>,
    stats: Arc<Stats>,
    max_connections: usize,
    over_capacity: RateLimitedWarning,
    accept_failed: RateLimitedWarning,
}

impl Acceptor {
    pub(crate) fn spawn(
        listener: TcpListener,
        registry: Arc<Registry>,
        lifecycle: Arc<Lifecycle>,
        stats: Arc<Stats>,
        max_connections: usize,
    ) -> io::Result<Self> {
        let poller = Arc::new(Poller::new()?);
        // SAFETY: the listener is deleted from this poller before it is
        // dropped, at the end of `run`.
        #[allow(unsafe_code)]
        unsafe {
            poller.add(&listener, Event::readable(LISTENER_KEY))?;
        }
        let stop = Arc::new(OnceLock::new());
        let mut admission = Admission {
            registry,
            lifecycle,
            stats,
            max_connections,
            over_capacity: RateLimitedWarning::default(),
            accept_failed: RateLimitedWarning::default(),
        };
        let thread = {
            let poller = Arc::clone(&poller);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || run(&listener, &poller, &stop, &mut admission))?
        };
        Ok(Self {
            thread,
            poller,
            stop,
        })
    }

    /// Stops admitting new connections, accepts and registers those the
    /// kernel already queued and those whose handshakes complete before
    /// `until`, closes the listener and joins the thread. Afterwards a new
    /// connect is refused.
    pub(crate) fn stop_accepting(self, until: Instant) {
        let _ = self.stop.set(until);
        let _ = self.poller.notify();
        if self.thread.join().is_err() {
            log::error!("the acceptor thread panicked");
        }
    }
}

fn run(
    listener: &TcpListener,
    poller: &Poller,
    stop: &OnceLock<Instant>,
    admission: &mut Admission,
) {
    let mut events = Events::new();
    loop {
        events.clear();
        if let Err(error) = poller.wait(&mut events, None) {
            if error.kind() != io::ErrorKind::Interrupted {
                log::error!("acceptor: waiting for connections failed: {error}");
            }
        }
        if let Some(until) = stop.get() {
            let admitted = admit_the_rest(listener, poller, *until, admission);
            let _ = poller.delete(listener);
            log::info!(
                "acceptor: admitted {admitted} connections from the backlog; listener closed"
            );
            return;
        }
        accept_all(listener, admission);
        if let Err(error) = poller.modify(listener, Event::readable(LISTENER_KEY)) {
            log::error!("acceptor: re-arming the listener failed: {error}");
        }
    }
}

/// Stops admitting, then accepts what the kernel queued and the handshakes
/// still under way as they complete (they wake the listener), until none
/// is left or `until` passes. Returns how many were accepted.
fn admit_the_rest(
    listener: &TcpListener,
    poller: &Poller,
    until: Instant,
    admission: &mut Admission,
) -> usize {
    listener::stop_admitting(listener);
    let mut events = Events::new();
    let mut admitted = 0;
    loop {
        // Counted before the accepts: no new handshake starts once the
        // filter is on, so when none was half-open here, every one that
        // completed is in the queue these accepts empty.
        let half_open = listener::half_open_handshakes(listener);
        admitted += accept_all(listener, admission);
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || half_open == 0 {
            return admitted;
        }
        events.clear();
        let _ = poller.modify(listener, Event::readable(LISTENER_KEY));
        let _ = poller.wait(&mut events, Some(left));
    }
}

/// Accepts until the backlog is empty; returns how many were accepted.
/// On a resource error (EMFILE and the like) logs it, backs off and
/// returns; the caller re-arms the listener and comes back.
fn accept_all(listener: &TcpListener, admission: &mut Admission) -> usize {
    let mut accepted = 0;
    loop {
        match listener::accept(listener) {
            Ok(stream) => {
                accepted += 1;
                admit(stream, admission);
            }
            Err(error) => match error.kind() {
                io::ErrorKind::WouldBlock => return accepted,
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                _ => {
                    admission
                        .stats
                        .accept_errors
                        .fetch_add(1, Ordering::Relaxed);
                    admission.accept_failed.warn(|| {
                        format!(
                            "acceptor: accept failed: {error}; retrying in {} ms",
                            ACCEPT_BACKOFF.as_millis()
                        )
                    });
                    std::thread::sleep(ACCEPT_BACKOFF);
                    return accepted;
                }
            },
        }
    }
}

fn admit(stream: std::net::TcpStream, admission: &mut Admission) {
    let open = admission.lifecycle.connections.enter();
    let mut http = Connection::new(stream);
    let wait = if admission.lifecycle.connections.count() > admission.max_connections {
        admission
            .stats
            .over_capacity
            .fetch_add(1, Ordering::Relaxed);
        let max = admission.max_connections;
        admission
            .over_capacity
            .warn(|| format!("refused a connection with 503: {max} are open (max_connections)"));
        http.respond_and_close(
            &Response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections",
                "DRYAD-SYS-5002",
            )
            .with_header("Retry-After", "1"),
        );
        http.flush_now();
        http.shutdown_write();
        // Lingering keeps a descriptor for up to two seconds per refusal;
        // under a flood, past this many registered connections a refused
        // one is closed at once instead, so descriptors stay bounded.
        if admission.registry.registered() >= admission.max_connections.saturating_mul(2) {
            return;
        }
        Wait::Linger
    } else {
        Wait::Idle
    };
    if let Err(error) = admission.registry.insert(http, open, wait) {
        log::error!("acceptor: registering a connection failed: {error}");
    }
}
