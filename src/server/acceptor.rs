//! The acceptor thread: owns the listeners, enforces `max_connections`
//! (reclaiming the longest-idle keep-alive connection first), hands
//! accepted sockets to the registry, survives accept errors, and at
//! shutdown accepts the backlog before it closes the listeners; or, when
//! a hot restart's successor took over, just stops accepting: the
//! sockets, and what the kernel queues on them, are the successor's.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::Next;
use super::heartbeat::Heartbeat;
use super::listener;
use super::log_limit::RateLimitedWarning;
use super::pollers::Pollers;
use super::supervised::Supervised;
use crate::http::Connection;
use crate::http::WireError;
use crate::lifecycle::Lifecycle;
use crate::restart::Listeners;

/// Token of the waker that tells the acceptor to stop (or to answer its
/// heartbeat); listener `i` has token `i`.
const WAKE: Token = Token(usize::MAX);
/// Pause after an accept error such as EMFILE (out of file descriptors):
/// the backlog is not drained then, so no new readiness edge would come;
/// the acceptor retries after this. Short, so service resumes soon after
/// descriptors free up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How often the handshakes still under way are counted again while the
/// acceptor waits for them at shutdown (see `admit_the_rest`).
const HALF_OPEN_RECHECK: Duration = Duration::from_millis(10);

/// How the acceptor stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// This process is the last to serve the sockets: stop admitting,
    /// accept what the kernel queued until `until`, then close.
    Close { until: Instant },
    /// A successor serves the same sockets: stop accepting, touch nothing.
    HandOver,
}

/// The running acceptor thread.
#[derive(Debug)]
pub(crate) struct Acceptor {
    thread: JoinHandle<()>,
    pub(crate) waker: Arc<Waker>,
    stop: Arc<OnceLock<Stop>>,
}

struct Admission {
    pollers: Arc<Pollers>,
    lifecycle: Arc<Lifecycle>,
    max_connections: usize,
    over_capacity: RateLimitedWarning,
    accept_failed: RateLimitedWarning,
    panic_for_test: bool,
}

/// How a round of accepts ended.
#[derive(Debug, PartialEq, Eq)]
enum Accepted {
    /// The backlog is empty: wait for the next readiness.
    Drained(usize),
    /// An accept failed for lack of resources: retry after the backoff.
    Backoff(usize),
}

impl Accepted {
    fn count(&self) -> usize {
        match self {
            Self::Drained(count) | Self::Backoff(count) => *count,
        }
    }
}

impl Acceptor {
    pub(crate) fn spawn(
        listeners: Arc<Listeners>,
        pollers: Arc<Pollers>,
        lifecycle: Arc<Lifecycle>,
        max_connections: usize,
        heartbeat: Arc<Heartbeat>,
        panic_for_test: bool,
    ) -> io::Result<Self> {
        let mut poll = Poll::new()?;
        for (index, socket) in listeners.sockets.iter().enumerate() {
            poll.registry().register(
                &mut SourceFd(&socket.as_raw_fd()),
                Token(index),
                Interest::READABLE,
            )?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(OnceLock::new());
        let mut admission = Admission {
            pollers,
            lifecycle,
            max_connections,
            over_capacity: RateLimitedWarning::default(),
            accept_failed: RateLimitedWarning::default(),
            panic_for_test,
        };
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || {
                    let lifecycle = Arc::clone(&admission.lifecycle);
                    let _supervised = Supervised::new("acceptor", &lifecycle);
                    run(&listeners, &mut poll, &stop, &mut admission, &heartbeat);
                    heartbeat.retire();
                })?
        };
        Ok(Self {
            thread,
            waker,
            stop,
        })
    }

    /// Stops accepting as `how` says and joins the thread; with
    /// [`Stop::Close`], a new connect is refused afterwards (once the
    /// last holder of the sockets closes them).
    pub(crate) fn stop_accepting(self, how: Stop) {
        let _ = self.stop.set(how);
        let _ = self.waker.wake();
        if self.thread.join().is_err() {
            log::error!("the acceptor thread panicked");
        }
    }
}

fn run(
    listeners: &Listeners,
    poll: &mut Poll,
    stop: &OnceLock<Stop>,
    admission: &mut Admission,
    heartbeat: &Heartbeat,
) {
    let mut events = Events::with_capacity(8);
    let mut backoff = None;
    loop {
        if let Err(error) = poll.poll(&mut events, backoff) {
            if error.kind() != io::ErrorKind::Interrupted {
                log::error!("acceptor: waiting for connections failed: {error}");
            }
        }
        heartbeat.answer();
        match stop.get() {
            Some(Stop::Close { until }) => {
                let admitted = admit_the_rest(listeners, poll, *until, admission);
                deregister(&listeners.sockets, poll);
                log::info!(
                    "acceptor: admitted {admitted} connections from the backlog; listener closed"
                );
                return;
            }
            Some(Stop::HandOver) => {
                deregister(&listeners.sockets, poll);
                log::info!(
                    "acceptor: stopped accepting; the successor accepts on the same sockets"
                );
                return;
            }
            None => {}
        }
        let mut wait = None;
        for (index, socket) in listeners.sockets.iter().enumerate() {
            if let Accepted::Backoff(_) = accept_all(socket, listeners.is_admin(index), admission) {
                wait = Some(ACCEPT_BACKOFF);
            }
        }
        backoff = wait;
    }
}

fn deregister(listeners: &[TcpListener], poll: &Poll) {
    for socket in listeners {
        let _ = poll
            .registry()
            .deregister(&mut SourceFd(&socket.as_raw_fd()));
    }
}

/// Stops admitting, then accepts what the kernel queued and the handshakes
/// still under way as they complete (they wake the listener), until none
/// is left or `until` passes. Returns how many were accepted.
fn admit_the_rest(
    listeners: &Listeners,
    poll: &mut Poll,
    until: Instant,
    admission: &mut Admission,
) -> usize {
    for socket in &listeners.sockets {
        listener::stop_admitting(socket);
    }
    let mut events = Events::with_capacity(8);
    let mut admitted = 0;
    loop {
        // Counted before the accepts: no new handshake starts once the
        // filter is on, so when none was half-open here, every one that
        // completed is in the queue these accepts empty.
        let half_open: usize = listeners
            .sockets
            .iter()
            .map(listener::half_open_handshakes)
            .sum();
        let mut wait = None;
        for (index, socket) in listeners.sockets.iter().enumerate() {
            let accepted = accept_all(socket, listeners.is_admin(index), admission);
            admitted += accepted.count();
            if let Accepted::Backoff(_) = accepted {
                wait = Some(ACCEPT_BACKOFF);
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || (half_open == 0 && wait.is_none()) {
            return admitted;
        }
        // A handshake that completes wakes the listener; one that ends
        // otherwise (its client gave up, or its final ACK was dropped by a
        // full backlog) does not, so the count is taken again soon.
        let wait = wait.unwrap_or(HALF_OPEN_RECHECK);
        let _ = poll.poll(&mut events, Some(wait.min(left)));
    }
}

/// Accepts until the backlog is empty, or an accept fails for lack of
/// resources (EMFILE and the like: logged, then the caller backs off).
/// `admin`: the listener is the admin one.
fn accept_all(listener: &TcpListener, admin: bool, admission: &mut Admission) -> Accepted {
    let mut accepted = 0;
    loop {
        match listener::accept(listener) {
            Ok(stream) => {
                assert!(
                    !admission.panic_for_test,
                    "the acceptor panics, as the test asked"
                );
                accepted += 1;
                admit(stream, admin, admission);
            }
            Err(error) => match error.kind() {
                io::ErrorKind::WouldBlock => return Accepted::Drained(accepted),
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                _ => {
                    admission
                        .lifecycle
                        .counts
                        .accept_errors
                        .fetch_add(1, Ordering::Relaxed);
                    admission.accept_failed.warn(|| {
                        format!(
                            "acceptor: accept failed: {error}; retrying in {} ms",
                            ACCEPT_BACKOFF.as_millis()
                        )
                    });
                    return Accepted::Backoff(accepted);
                }
            },
        }
    }
}

fn admit(stream: std::net::TcpStream, admin: bool, admission: &mut Admission) {
    let open = admission.lifecycle.connections.enter();
    if !admin && admission.lifecycle.is_shutting_down() {
        admission.lifecycle.arrivals.connection();
    }
    let mut http = Connection::new(stream);
    let over_capacity = admission.lifecycle.connections.count() > admission.max_connections
        && !admission.pollers.close_longest_idle();
    let next = if over_capacity {
        admission
            .lifecycle
            .counts
            .refused_over_capacity
            .fetch_add(1, Ordering::Relaxed);
        let max = admission.max_connections;
        admission.over_capacity.warn(|| {
            format!("refused a connection with 503: {max} are open (max_connections), none idle")
        });
        let refusal = WireError::TooManyConnections.response();
        // Lingering keeps a descriptor for up to two seconds per refusal;
        // under a flood, past this many registered connections a refused
        // one is answered with what the socket takes and closed at once
        // instead, so descriptors stay bounded.
        if admission.pollers.registered() >= admission.max_connections.saturating_mul(2) {
            http.respond_and_close(&refusal);
            let _ = http.write();
            return;
        }
        Next::Refuse(refusal)
    } else {
        Next::Wait
    };
    if let Err(error) = admission.pollers.insert(http, open, admin, next) {
        log::error!("acceptor: registering a connection failed: {error}");
    }
}
