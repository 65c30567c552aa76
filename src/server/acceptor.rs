//! The acceptor thread: owns the listener, enforces `max_connections`
//! (reclaiming the longest-idle keep-alive connection first), hands
//! accepted sockets to the registry, survives accept errors, and at
//! shutdown accepts the backlog before it closes the listener.

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
use super::listener;
use super::log_limit::RateLimitedWarning;
use super::registry::Registry;
use super::supervised::Supervised;
use crate::http::Connection;
use crate::http::WireError;
use crate::lifecycle::Lifecycle;

/// Token of the listener on the acceptor's own poll.
const LISTENER: Token = Token(0);
/// Token of the waker that tells the acceptor to stop.
const STOP: Token = Token(1);
/// Pause after an accept error such as EMFILE (out of file descriptors):
/// the backlog is not drained then, so no new readiness edge would come;
/// the acceptor retries after this. Short, so service resumes soon after
/// descriptors free up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The running acceptor thread.
#[derive(Debug)]
pub(crate) struct Acceptor {
    thread: JoinHandle<()>,
    waker: Arc<Waker>,
    stop: Arc<OnceLock<Instant>>,
}

struct Admission {
    registry: Arc<Registry>,
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

impl Acceptor {
    pub(crate) fn spawn(
        listener: TcpListener,
        registry: Arc<Registry>,
        lifecycle: Arc<Lifecycle>,
        max_connections: usize,
        panic_for_test: bool,
    ) -> io::Result<Self> {
        let mut poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let stop = Arc::new(OnceLock::new());
        let mut admission = Admission {
            registry,
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
                    run(&listener, &mut poll, &stop, &mut admission);
                })?
        };
        Ok(Self {
            thread,
            waker,
            stop,
        })
    }

    /// Stops admitting new connections, accepts and registers those the
    /// kernel already queued and those whose handshakes complete before
    /// `until`, closes the listener and joins the thread. Afterwards a new
    /// connect is refused.
    pub(crate) fn stop_accepting(self, until: Instant) {
        let _ = self.stop.set(until);
        let _ = self.waker.wake();
        if self.thread.join().is_err() {
            log::error!("the acceptor thread panicked");
        }
    }
}

fn run(
    listener: &TcpListener,
    poll: &mut Poll,
    stop: &OnceLock<Instant>,
    admission: &mut Admission,
) {
    let mut events = Events::with_capacity(8);
    let mut backoff = None;
    loop {
        if let Err(error) = poll.poll(&mut events, backoff) {
            if error.kind() != io::ErrorKind::Interrupted {
                log::error!("acceptor: waiting for connections failed: {error}");
            }
        }
        if let Some(until) = stop.get() {
            let admitted = admit_the_rest(listener, poll, *until, admission);
            let _ = poll
                .registry()
                .deregister(&mut SourceFd(&listener.as_raw_fd()));
            log::info!(
                "acceptor: admitted {admitted} connections from the backlog; listener closed"
            );
            return;
        }
        backoff = match accept_all(listener, admission) {
            Accepted::Drained(_) => None,
            Accepted::Backoff(_) => Some(ACCEPT_BACKOFF),
        };
    }
}

/// Stops admitting, then accepts what the kernel queued and the handshakes
/// still under way as they complete (they wake the listener), until none
/// is left or `until` passes. Returns how many were accepted.
fn admit_the_rest(
    listener: &TcpListener,
    poll: &mut Poll,
    until: Instant,
    admission: &mut Admission,
) -> usize {
    listener::stop_admitting(listener);
    let mut events = Events::with_capacity(8);
    let mut admitted = 0;
    loop {
        // Counted before the accepts: no new handshake starts once the
        // filter is on, so when none was half-open here, every one that
        // completed is in the queue these accepts empty.
        let half_open = listener::half_open_handshakes(listener);
        let (accepted, wait) = match accept_all(listener, admission) {
            Accepted::Drained(accepted) => (accepted, None),
            Accepted::Backoff(accepted) => (accepted, Some(ACCEPT_BACKOFF)),
        };
        admitted += accepted;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || (half_open == 0 && wait.is_none()) {
            return admitted;
        }
        let _ = poll.poll(&mut events, Some(wait.unwrap_or(left).min(left)));
    }
}

/// Accepts until the backlog is empty, or an accept fails for lack of
/// resources (EMFILE and the like: logged, then the caller backs off).
fn accept_all(listener: &TcpListener, admission: &mut Admission) -> Accepted {
    let mut accepted = 0;
    loop {
        match listener::accept(listener) {
            Ok(stream) => {
                assert!(
                    !admission.panic_for_test,
                    "the acceptor panics, as the test asked"
                );
                accepted += 1;
                admit(stream, admission);
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

fn admit(stream: std::net::TcpStream, admission: &mut Admission) {
    let open = admission.lifecycle.connections.enter();
    let mut http = Connection::new(stream);
    let over_capacity = admission.lifecycle.connections.count() > admission.max_connections
        && !admission.registry.close_longest_idle();
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
        if admission.registry.registered() >= admission.max_connections.saturating_mul(2) {
            http.respond_and_close(&refusal);
            let _ = http.write();
            return;
        }
        Next::Refuse(refusal)
    } else {
        Next::Wait
    };
    if let Err(error) = admission.registry.insert(http, open, next) {
        log::error!("acceptor: registering a connection failed: {error}");
    }
}
