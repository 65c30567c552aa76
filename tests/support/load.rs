//! A mixed HTTP load for restart tests: clients of four kinds, one thread
//! each, sending requests in a loop until stopped, with every request's
//! outcome classified (see [`Outcome`]) and counted, live and at the end.
//!
//! The client kinds (see [`ClientKind`]): keep-alive `GET /`, one
//! connection per `GET /` (`Connection: close`), slow keep-alive
//! `GET /test/sleep?ms=M` (the service needs `--enable-test-routes`), and
//! keep-alive `POST /v1/events` with a unique `Idempotency-Key` each.
//!
//! Bounded: each client stops by itself after [`MAX_REQUESTS_PER_CLIENT`]
//! requests or [`MAX_RUN`], whichever comes first; a connect waits at most
//! [`CONNECT_TIMEOUT`], a response at most [`RESPONSE_TIMEOUT`], and
//! [`Load::stop`] at most [`STOP_TIMEOUT`]. Nothing here sleeps to
//! synchronise: waits are on channels and sockets. The one pause,
//! [`REFUSED_BACKOFF`] after a refused connect, is a client's back-off.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT, read_retrying};

/// Most requests one client sends; it then stops by itself (and says so on
/// stderr), so a test that forgets to stop its load cannot run forever.
pub const MAX_REQUESTS_PER_CLIENT: u64 = 5_000_000;
/// Longest one client runs; it then stops by itself (and says so).
pub const MAX_RUN: Duration = Duration::from_secs(10 * 60);
/// Pause after a refused connect before the client's next request. A real
/// client backs off after a refusal; without a pause, a client facing a
/// closed port would spin on refusals and take the CPU the restarting
/// service needs. Nothing waits for it to pass: it only spaces the
/// attempts, and [`Load::stop`] cuts it short.
pub const REFUSED_BACKOFF: Duration = Duration::from_millis(10);
/// Longest [`Load::stop`] waits for the clients: one request may take a
/// connect ([`CONNECT_TIMEOUT`]) and a response ([`RESPONSE_TIMEOUT`]);
/// the rest is a margin for a loaded machine.
pub const STOP_TIMEOUT: Duration =
    Duration::from_secs(CONNECT_TIMEOUT.as_secs() + RESPONSE_TIMEOUT.as_secs() + 5);
/// Longest response head this client reads before calling it malformed.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Failures (and stale connections that held unsolicited bytes) described
/// in [`Counts::samples`], the first ones only.
const MAX_SAMPLES: usize = 20;

/// How many clients of each kind to run, and how long a slow request asks
/// the service to sleep.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadMix {
    /// Clients sending `GET /` on one keep-alive connection.
    pub keep_alive: usize,
    /// Clients sending `GET /` with `Connection: close`, one connection per
    /// request.
    pub per_request_connection: usize,
    /// Clients sending `GET /test/sleep?ms={slow_ms}` on one keep-alive
    /// connection.
    pub slow: usize,
    /// Clients sending `POST /v1/events` on one keep-alive connection, each
    /// request with its own `Idempotency-Key`.
    pub posts: usize,
    /// Milliseconds each slow request sleeps in the service.
    pub slow_ms: u64,
}

/// A point in the load's life: a connection whose connect returns after
/// it carries it (see [`Load::mark`]), so that a test can tell responses
/// on connections made after, say, the old service exited, from responses
/// on older ones.
///
/// The mark is read when the connect returns, not before it starts: a
/// connect begun while the old service drained (its SYN dropped by the
/// listener's filter and retried a second later) may complete with the
/// new service, and must count as the new service's. A connect that
/// returns after the mark but was completed by the kernel of the old
/// service cannot get a 2xx: the old process is gone, and the request is
/// only written after the connect returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(u64);

impl Mark {
    /// The load's start: every connection is opened after it.
    pub const LOAD_START: Mark = Mark(0);
}

/// The kind of a client: what it asks and how it uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientKind {
    /// `GET /`, keep-alive.
    KeepAlive,
    /// `GET /` with `Connection: close`: a new connection per request.
    PerRequest,
    /// `GET /test/sleep?ms=M`, keep-alive.
    Slow,
    /// `POST /v1/events` with a unique `Idempotency-Key`, keep-alive.
    Post,
}

impl ClientKind {
    /// Every kind, in the order of the counters.
    pub const ALL: [ClientKind; 4] = [
        ClientKind::KeepAlive,
        ClientKind::PerRequest,
        ClientKind::Slow,
        ClientKind::Post,
    ];

    /// The kind's name, as [`LoadMix`] spells its field.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::KeepAlive => "keep_alive",
            ClientKind::PerRequest => "per_request",
            ClientKind::Slow => "slow",
            ClientKind::Post => "posts",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn clients_in(self, mix: &LoadMix) -> usize {
        match self {
            ClientKind::KeepAlive => mix.keep_alive,
            ClientKind::PerRequest => mix.per_request_connection,
            ClientKind::Slow => mix.slow,
            ClientKind::Post => mix.posts,
        }
    }

    /// Whether the client keeps its connection for the next request (when
    /// the response does not say `Connection: close`).
    fn keeps_connection(self) -> bool {
        self != ClientKind::PerRequest
    }
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What became of one request: exactly one outcome per request.
///
/// A request is sent on the client's open connection if it has one that
/// is still usable, else on a new one. Its outcome:
///
/// | outcome | the client saw | could the server have received it? |
/// |---|---|---|
/// | `Refused` | connect failed with ECONNREFUSED | no: nothing listened |
/// | `ConnectTimeout` | connect not done within [`CONNECT_TIMEOUT`] | no |
/// | `Reset` | ECONNRESET, EPIPE or ECONNABORTED while writing the request or reading its response | yes (a failed write: maybe) |
/// | `Lost` | the request written in full, then EOF before a complete response (no byte of it, or part of it) | yes |
/// | `Timeout` | no complete response within [`RESPONSE_TIMEOUT`] from the start of the write (a write or read timeout) | yes |
/// | `Malformed` | bytes that are not an HTTP/1.x response with a `Content-Length` (or a body-less status) | yes |
/// | `OtherError` | any other I/O error, at connect or later | maybe |
/// | `BadStatus` | a complete response, status not 2xx (1xx interim responses are skipped) | yes |
/// | `Ok` | a complete response, status 2xx | yes |
///
/// Not an outcome: a *stale* connection. Before a keep-alive connection
/// is reused, the client looks at it without waiting (`recv` with
/// `MSG_PEEK | MSG_DONTWAIT`, as HTTP clients check pooled connections):
/// EOF, a reset, or bytes nobody asked for mean the server has already
/// ended it while it was idle, so the request is not written there; the
/// connection is dropped and counted in [`Counts::stale`], and the request
/// goes out on a new connection, where it gets one of the outcomes above.
/// Only a request that the server could have received counts as lost.
///
/// The keep-alive race: the server may close an idle connection between
/// that look and the arrival of the request. The client then reads EOF
/// with zero bytes of response, exactly what it reads from a server that
/// took the request and closed without answering; no client can tell the
/// two apart, and neither can retry a non-idempotent request safely. So a
/// zero-byte EOF on a reused connection is `Lost` (its sample says
/// "reused"). A graceful server gives idle connections a last call: a
/// request arriving in a short window is answered (with
/// `Connection: close`), and only a connection quiet for the whole window
/// is closed. These clients send their next request as soon as they have
/// read a response, so a connection of theirs is never quiet that long:
/// with such a server, a `Lost` here is the server's fault. (Had the
/// server's socket been gone when the request arrived, its kernel answers
/// with a reset: the client reads EOF if the FIN came first, else the
/// reset, `Reset`.)
///
/// The look sees what has arrived: on loopback a FIN or reset arrives
/// within microseconds of the server's close, so a connection the server
/// closed before the client's look is always found stale, never lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A complete 2xx response.
    Ok,
    /// A complete response with another status.
    BadStatus(u16),
    /// The connect was refused (ECONNREFUSED); nothing was sent.
    Refused,
    /// ECONNRESET, EPIPE or ECONNABORTED while writing the request or
    /// reading its response.
    Reset,
    /// The request was written, then the connection ended (EOF) with no
    /// response or a partial one.
    Lost,
    /// No complete response within [`RESPONSE_TIMEOUT`].
    Timeout,
    /// The connect did not complete within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The server's bytes are not a response this client can frame.
    Malformed,
    /// Any other I/O error (none is expected on loopback).
    OtherError,
}

/// The indices of the counters of one kind of client: one per outcome (a
/// `BadStatus` of any status is one), then the stale connections.
mod counter {
    pub(super) const OK: usize = 0;
    pub(super) const BAD_STATUS: usize = 1;
    pub(super) const REFUSED: usize = 2;
    pub(super) const RESET: usize = 3;
    pub(super) const LOST: usize = 4;
    pub(super) const TIMEOUT: usize = 5;
    pub(super) const CONNECT_TIMEOUT: usize = 6;
    pub(super) const MALFORMED: usize = 7;
    pub(super) const OTHER_ERROR: usize = 8;
    pub(super) const STALE: usize = 9;
    /// How many there are.
    pub(super) const COUNT: usize = 10;
}

impl Outcome {
    fn counter(self) -> usize {
        match self {
            Outcome::Ok => counter::OK,
            Outcome::BadStatus(_) => counter::BAD_STATUS,
            Outcome::Refused => counter::REFUSED,
            Outcome::Reset => counter::RESET,
            Outcome::Lost => counter::LOST,
            Outcome::Timeout => counter::TIMEOUT,
            Outcome::ConnectTimeout => counter::CONNECT_TIMEOUT,
            Outcome::Malformed => counter::MALFORMED,
            Outcome::OtherError => counter::OTHER_ERROR,
        }
    }

    /// The outcome of an I/O error on an open connection.
    fn of_error(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => Outcome::Reset,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Outcome::Timeout,
            _ => Outcome::OtherError,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::BadStatus(status) => write!(f, "bad_status {status}"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::Reset => f.write_str("reset"),
            Outcome::Lost => f.write_str("lost"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::ConnectTimeout => f.write_str("connect_timeout"),
            Outcome::Malformed => f.write_str("malformed"),
            Outcome::OtherError => f.write_str("other_error"),
        }
    }
}

/// Request outcomes counted, for the whole load or one kind of client.
///
/// Each request is counted once, under its [`Outcome`]; `stale` counts
/// connections, not requests (see [`Outcome`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Complete 2xx responses.
    pub ok: u64,
    /// Complete non-2xx responses; by status in `statuses`.
    pub bad_status: u64,
    /// Non-2xx responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connects refused.
    pub refused: u64,
    /// Requests met by ECONNRESET, EPIPE or ECONNABORTED.
    pub reset: u64,
    /// Requests written and then met by EOF before a complete response.
    pub lost: u64,
    /// Requests without a complete response within [`RESPONSE_TIMEOUT`].
    pub timeout: u64,
    /// Connects not done within [`CONNECT_TIMEOUT`].
    pub connect_timeout: u64,
    /// Responses this client could not frame.
    pub malformed: u64,
    /// Other I/O errors.
    pub other_error: u64,
    /// Idle keep-alive connections found ended by the server before they
    /// were reused (no request was written on them).
    pub stale: u64,
    /// The newest [`Mark`] of a connection that carried a 2xx response
    /// (`None`: no 2xx yet).
    pub newest_ok_mark: Option<Mark>,
    /// The same counts per kind of client, for the kinds in the mix (their
    /// own `by_client` and `samples` are empty).
    pub by_client: BTreeMap<ClientKind, Counts>,
    /// The first failures (and unusual stale connections), each with the
    /// time since the load started, the client and what it saw.
    pub samples: Vec<String>,
}

impl Counts {
    /// Requests sent or attempted: every outcome, `ok` included; not
    /// `stale`.
    pub fn total(&self) -> u64 {
        self.ok + self.failures()
    }

    /// Requests that did not get a 2xx response, whatever the reason.
    pub fn failures(&self) -> u64 {
        self.bad_status
            + self.refused
            + self.reset
            + self.lost
            + self.timeout
            + self.connect_timeout
            + self.malformed
            + self.other_error
    }

    /// The counts of one kind of client (all zero if none ran).
    pub fn client(&self, kind: ClientKind) -> Counts {
        self.by_client.get(&kind).cloned().unwrap_or_default()
    }

    /// Asserts that every request got a 2xx response: nothing refused,
    /// reset, lost, timed out, malformed or answered otherwise, and that
    /// each kind of client in the mix got some. Stale connections are
    /// fine (no request was written on them). The message prints the
    /// counts and the first failures.
    pub fn assert_all_answered(&self) {
        assert!(
            self.failures() == 0,
            "{} of {} requests were not answered with a 2xx: {self:#}",
            self.failures(),
            self.total()
        );
        for (kind, counts) in &self.by_client {
            assert!(
                counts.ok > 0,
                "no {kind} client got a response at all: {self:#}"
            );
        }
    }

    fn add(&mut self, other: &Counts) {
        self.ok += other.ok;
        self.bad_status += other.bad_status;
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_default() += count;
        }
        self.refused += other.refused;
        self.reset += other.reset;
        self.lost += other.lost;
        self.timeout += other.timeout;
        self.connect_timeout += other.connect_timeout;
        self.malformed += other.malformed;
        self.other_error += other.other_error;
        self.stale += other.stale;
        self.newest_ok_mark = self.newest_ok_mark.max(other.newest_ok_mark);
    }

    fn write_row(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total {} | ok {} | bad_status {}",
            self.total(),
            self.ok,
            self.bad_status
        )?;
        if !self.statuses.is_empty() {
            let statuses: Vec<String> = self
                .statuses
                .iter()
                .map(|(status, count)| format!("{status}x{count}"))
                .collect();
            write!(f, " ({})", statuses.join(" "))?;
        }
        write!(
            f,
            " | refused {} | reset {} | lost {} | timeout {} | connect_timeout {} | malformed {} \
             | other_error {} | stale {}",
            self.refused,
            self.reset,
            self.lost,
            self.timeout,
            self.connect_timeout,
            self.malformed,
            self.other_error,
            self.stale
        )
    }
}

/// One line: every count of the whole load. `{:#}` adds a line per kind of
/// client and the samples.
impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_row(f)?;
        if f.alternate() {
            for (kind, counts) in &self.by_client {
                write!(f, "\n  {:<12}", kind.name())?;
                counts.write_row(f)?;
                if let Some(Mark(mark)) = counts.newest_ok_mark {
                    write!(f, " | newest_ok_mark {mark}")?;
                }
            }
            for sample in &self.samples {
                write!(f, "\n  - {sample}")?;
            }
        }
        Ok(())
    }
}

/// What the clients share: the counters and where they report.
struct Shared {
    /// When the load started, for the samples' times.
    started: Instant,
    /// `counters[kind][counter]`. Written by the clients (`Relaxed`: each
    /// counter is independent, and a waiter is told of news through
    /// `progress`, whose send and receive order the increment before the
    /// read); read by [`Load::counts`], not all at one instant.
    counters: [[AtomicU64; counter::COUNT]; ClientKind::ALL.len()],
    /// Non-2xx responses by kind of client and status.
    statuses: Mutex<BTreeMap<(ClientKind, u16), u64>>,
    /// The first [`MAX_SAMPLES`] failures described.
    samples: Mutex<Vec<String>>,
    /// The current [`Mark`]: advanced by [`Load::mark`], read by a client
    /// as each connect returns (`SeqCst`, so that a connection carrying a
    /// mark was made after the call that made the mark).
    mark: AtomicU64,
    /// Per kind of client, 1 + the newest mark of a connection that
    /// carried a 2xx response, 0 before the first (`fetch_max`; `Relaxed`
    /// like the counters, and published by the same `progress` token).
    newest_ok_mark: [AtomicU64; ClientKind::ALL.len()],
    /// A token after every count (dropped when one is already waiting),
    /// so that [`Load::wait_until`] waits instead of spinning.
    progress: Sender<()>,
}

impl Shared {
    fn count(&self, kind: ClientKind, counter: usize) {
        self.counters[kind.index()][counter].fetch_add(1, Ordering::Relaxed);
        // Full: a token is already waiting for the waiter; one is enough.
        let _ = self.progress.try_send(());
    }

    fn record(
        &self,
        kind: ClientKind,
        id: usize,
        outcome: Outcome,
        detail: Option<&str>,
        mark: u64,
    ) {
        if outcome == Outcome::Ok {
            self.newest_ok_mark[kind.index()].fetch_max(mark + 1, Ordering::Relaxed);
        }
        if let Outcome::BadStatus(status) = outcome {
            *self
                .statuses
                .lock()
                .expect("load statuses lock")
                .entry((kind, status))
                .or_default() += 1;
        }
        if let Some(detail) = detail {
            self.sample(kind, id, &outcome.to_string(), detail);
        }
        self.count(kind, outcome.counter());
    }

    fn record_stale(&self, kind: ClientKind, id: usize, unusual: Option<&str>) {
        if let Some(detail) = unusual {
            self.sample(kind, id, "stale", detail);
        }
        self.count(kind, counter::STALE);
    }

    fn sample(&self, kind: ClientKind, id: usize, what: &str, detail: &str) {
        let mut samples = self.samples.lock().expect("load samples lock");
        if samples.len() < MAX_SAMPLES {
            samples.push(format!(
                "{:.3}s {kind} #{id}: {what}: {detail}",
                self.started.elapsed().as_secs_f64()
            ));
        }
    }

    fn snapshot(&self, mix: &LoadMix) -> Counts {
        let statuses = self.statuses.lock().expect("load statuses lock").clone();
        let mut all = Counts::default();
        for kind in ClientKind::ALL {
            if kind.clients_in(mix) == 0 {
                continue;
            }
            let read =
                |counter: usize| self.counters[kind.index()][counter].load(Ordering::Relaxed);
            let counts = Counts {
                ok: read(counter::OK),
                bad_status: read(counter::BAD_STATUS),
                statuses: statuses
                    .iter()
                    .filter(|((of, _), _)| *of == kind)
                    .map(|((_, status), count)| (*status, *count))
                    .collect(),
                refused: read(counter::REFUSED),
                reset: read(counter::RESET),
                lost: read(counter::LOST),
                timeout: read(counter::TIMEOUT),
                connect_timeout: read(counter::CONNECT_TIMEOUT),
                malformed: read(counter::MALFORMED),
                other_error: read(counter::OTHER_ERROR),
                stale: read(counter::STALE),
                newest_ok_mark: match self.newest_ok_mark[kind.index()].load(Ordering::Relaxed) {
                    0 => None,
                    mark => Some(Mark(mark - 1)),
                },
                by_client: BTreeMap::new(),
                samples: Vec::new(),
            };
            all.add(&counts);
            all.by_client.insert(kind, counts);
        }
        all.samples = self.samples.lock().expect("load samples lock").clone();
        all
    }
}

/// A running load: its clients' threads. Dropping it without
/// [`stop`](Self::stop) tells the clients to stop without waiting for
/// them (each ends within [`STOP_TIMEOUT`]).
pub struct Load {
    mix: LoadMix,
    shared: Arc<Shared>,
    /// Dropped to stop the clients: they see the disconnection.
    stop: Option<Sender<()>>,
    /// Disconnected once every client has returned (each holds a sender).
    finished: Receiver<()>,
    progress: Receiver<()>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts one thread per client of `mix` against `addr`; each sends
    /// requests until [`stop`](Self::stop) (or its own caps).
    pub fn start(addr: SocketAddr, mix: LoadMix) -> Self {
        static LOADS: AtomicU64 = AtomicU64::new(0);
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            LOADS.fetch_add(1, Ordering::Relaxed)
        );
        let (progress_tx, progress) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            started: Instant::now(),
            counters: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            statuses: Mutex::new(BTreeMap::new()),
            samples: Mutex::new(Vec::new()),
            mark: AtomicU64::new(Mark::LOAD_START.0),
            newest_ok_mark: std::array::from_fn(|_| AtomicU64::new(0)),
            progress: progress_tx,
        });
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let mut clients = Vec::new();
        for kind in ClientKind::ALL {
            for id in 0..kind.clients_in(&mix) {
                let client = LoadClient {
                    kind,
                    id,
                    addr,
                    slow_ms: mix.slow_ms,
                    key_prefix: format!("load-{nonce}-{id}"),
                    shared: Arc::clone(&shared),
                    stop: stop_rx.clone(),
                    _finished: finished_tx.clone(),
                    connection: None,
                };
                let thread = std::thread::Builder::new()
                    .name(format!("load-{kind}-{id}"))
                    .spawn(move || client.run())
                    .expect("spawn a load client");
                clients.push(thread);
            }
        }
        Self {
            mix,
            shared,
            stop: Some(stop_tx),
            finished,
            progress,
            clients,
        }
    }

    /// The counts so far (each counter read once, not all at one instant).
    pub fn counts(&self) -> Counts {
        self.shared.snapshot(&self.mix)
    }

    /// Waits until `condition` holds for the counts, re-checking whenever
    /// a request has been counted; returns the counts that satisfied it.
    /// Panics after `timeout`, saying what was awaited and the counts.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&Counts) -> bool,
    ) -> Counts {
        let deadline = Instant::now()
            .checked_add(timeout)
            .expect("a wait deadline in range");
        loop {
            let counts = self.counts();
            if condition(&counts) {
                return counts;
            }
            match self.progress.recv_deadline(deadline) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out after {timeout:?} waiting for {what}; load: {counts:#}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("BUG: the load holds its own progress sender")
                }
            }
        }
    }

    /// A new mark: every connection whose connect returns from now on
    /// carries it (or a newer one); older ones carry older marks.
    pub fn mark(&self) -> Mark {
        Mark(self.shared.mark.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Waits until every kind of client in the mix got a 2xx response on
    /// a connection made after `since` (a [`Load::mark`], or
    /// [`Mark::LOAD_START`]); returns the counts. A response on an older
    /// connection does not count: taken after the old service exited,
    /// a mark tells responses of the new service from those the old one
    /// wrote while it drained. Panics after `timeout`, saying what was
    /// awaited (`when`).
    pub fn wait_for_ok_from_every_kind(
        &self,
        since: Mark,
        timeout: Duration,
        when: &str,
    ) -> Counts {
        self.wait_until(
            timeout,
            &format!("a 2xx response for every kind of client on a connection made {when}"),
            |counts| {
                counts
                    .by_client
                    .values()
                    .all(|of_kind| of_kind.newest_ok_mark >= Some(since))
            },
        )
    }

    /// Waits until every kind of client in the mix has more 2xx responses
    /// than in `since` by more than it has clients; returns the counts.
    /// Panics after `timeout`, saying what was awaited (`when`).
    ///
    /// With `since` taken after an old service exited, this proves the
    /// service that listens now answered every kind of client, whether or
    /// not a client's connection was made after the old service exited
    /// (in a hot restart the successor accepts connections while the old
    /// one still runs, and keep-alive clients stay on them): a client
    /// reads at most one response from the old service after `since`,
    /// since the next request it sends after reading it reaches a socket
    /// the old process no longer has.
    pub fn wait_for_more_ok_from_every_kind(
        &self,
        since: &Counts,
        timeout: Duration,
        when: &str,
    ) -> Counts {
        let mix = self.mix;
        self.wait_until(
            timeout,
            &format!("more 2xx responses than clients for every kind of client {when}"),
            |counts| {
                counts.by_client.iter().all(|(kind, now)| {
                    let clients = u64::try_from(kind.clients_in(&mix)).unwrap_or(u64::MAX);
                    now.ok.saturating_sub(since.client(*kind).ok) > clients
                })
            },
        )
    }

    /// Stops the load: tells every client to stop, waits for them and
    /// returns the final counts.
    ///
    /// A request under way is finished and counted, not abandoned (so this
    /// may wait for a connect and a response); a client pausing after a
    /// refusal stops at once. Bounded by [`STOP_TIMEOUT`]: panics if a
    /// client has not returned by then, or if one panicked. Afterwards no
    /// thread of the load is left.
    pub fn stop(mut self) -> Counts {
        drop(self.stop.take());
        match self.finished.recv_timeout(STOP_TIMEOUT) {
            Err(RecvTimeoutError::Disconnected) => {}
            Ok(()) => unreachable!("BUG: nothing is sent on the finished channel"),
            Err(RecvTimeoutError::Timeout) => panic!(
                "the load's clients did not stop within {STOP_TIMEOUT:?}; load: {:#}",
                self.counts()
            ),
        }
        for client in std::mem::take(&mut self.clients) {
            let name = client.thread().name().unwrap_or("a load client").to_owned();
            if client.join().is_err() {
                panic!("{name} panicked");
            }
        }
        self.counts()
    }
}

/// One client: its kind, its connection, and where it counts.
struct LoadClient {
    kind: ClientKind,
    id: usize,
    addr: SocketAddr,
    slow_ms: u64,
    /// Unique to this load and client: the `Idempotency-Key`s of its POSTs
    /// are this and a sequence number.
    key_prefix: String,
    shared: Arc<Shared>,
    /// Disconnected when the load stops.
    stop: Receiver<()>,
    /// Dropped when the client returns (or unwinds).
    _finished: Sender<()>,
    /// The open keep-alive connection, if any.
    connection: Option<Connection>,
}

impl LoadClient {
    /// Sends requests until the load stops, [`MAX_RUN`] has passed or
    /// [`MAX_REQUESTS_PER_CLIENT`] were sent.
    fn run(mut self) {
        let give_up = Instant::now()
            .checked_add(MAX_RUN)
            .expect("a give-up time in range");
        for sequence in 0..MAX_REQUESTS_PER_CLIENT {
            if self.stopped() {
                return;
            }
            if Instant::now() >= give_up {
                eprintln!(
                    "load: {} #{} stops after {MAX_RUN:?} on its own",
                    self.kind, self.id
                );
                return;
            }
            let request = self.request(sequence);
            let (outcome, detail, mark) = match self.send(&request) {
                Ok((status, mark)) if (200..300).contains(&status) => (Outcome::Ok, None, mark),
                Ok((status, mark)) => (
                    Outcome::BadStatus(status),
                    Some(format!("status {status}")),
                    mark,
                ),
                Err(failure) => (failure.outcome, Some(failure.detail), 0),
            };
            self.shared
                .record(self.kind, self.id, outcome, detail.as_deref(), mark);
            if outcome == Outcome::Refused {
                match self.stop.recv_timeout(REFUSED_BACKOFF) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
        eprintln!(
            "load: {} #{} stops after {MAX_REQUESTS_PER_CLIENT} requests on its own",
            self.kind, self.id
        );
    }

    fn stopped(&self) -> bool {
        matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// The request bytes of this client's request number `sequence`.
    fn request(&self, sequence: u64) -> Vec<u8> {
        match self.kind {
            ClientKind::KeepAlive => b"GET / HTTP/1.1\r\nHost: test\r\n\r\n".to_vec(),
            ClientKind::PerRequest => {
                b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".to_vec()
            }
            ClientKind::Slow => format!(
                "GET /test/sleep?ms={} HTTP/1.1\r\nHost: test\r\n\r\n",
                self.slow_ms
            )
            .into_bytes(),
            ClientKind::Post => {
                let body = serde_json::json!({
                    "type": "load",
                    "payload": { "client": self.id, "sequence": sequence },
                })
                .to_string();
                let mut request = format!(
                    "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                     Idempotency-Key: {}-{sequence}\r\nContent-Length: {}\r\n\r\n",
                    self.key_prefix,
                    body.len()
                )
                .into_bytes();
                request.extend_from_slice(body.as_bytes());
                request
            }
        }
    }

    /// Sends `request` on the open connection if it is still usable (a
    /// stale one is counted and dropped), else on a new one; returns the
    /// response's status. Keeps the connection if the kind and the
    /// response allow it. Also returns the mark of the connection.
    fn send(&mut self, request: &[u8]) -> Result<(u16, u64), Failure> {
        if let Some(connection) = &self.connection {
            if let Some(stale) = connection.ended_while_idle() {
                self.shared.record_stale(self.kind, self.id, stale.unusual);
                self.connection = None;
            }
        }
        let connection = match &mut self.connection {
            Some(connection) => connection,
            empty => empty.insert(Connection::open(self.addr, &self.shared.mark)?),
        };
        let mark = connection.mark;
        match connection.exchange(request) {
            Ok(response) => {
                if response.closes || !self.kind.keeps_connection() {
                    self.connection = None;
                }
                Ok((response.status, mark))
            }
            Err(failure) => {
                self.connection = None;
                Err(failure)
            }
        }
    }
}

/// Why a request got no response: its outcome and what the client saw.
#[derive(Debug)]
struct Failure {
    outcome: Outcome,
    detail: String,
}

impl Failure {
    fn new(outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            detail: detail.into(),
        }
    }
}

/// What the look at an idle connection found: the server ended it.
struct Stale {
    /// Why it is worth a sample (bytes nobody asked for, a reset), or
    /// `None` for the common EOF.
    unusual: Option<&'static str>,
}

/// The parts of a response the client acts on.
struct Answer {
    status: u16,
    /// The server said `Connection: close` (or spoke HTTP/1.0 without
    /// keep-alive).
    closes: bool,
}

/// One client connection and the bytes read from it but not yet parsed.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Responses completely read on it so far: 0 while it is fresh.
    answered: u64,
    /// The load's [`Mark`] when the connect returned.
    mark: u64,
}

impl Connection {
    /// Connects within [`CONNECT_TIMEOUT`], and takes the load's current
    /// `mark` once connected.
    fn open(addr: SocketAddr, mark: &AtomicU64) -> Result<Self, Failure> {
        let stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|error| {
                match error.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        Failure::new(Outcome::Refused, "connect refused")
                    }
                    io::ErrorKind::TimedOut => Failure::new(
                        Outcome::ConnectTimeout,
                        format!("no connection within {CONNECT_TIMEOUT:?}"),
                    ),
                    _ => Failure::new(Outcome::OtherError, format!("connect failed: {error}")),
                }
            })?;
        let mark = mark.load(Ordering::SeqCst);
        let configure = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(RESPONSE_TIMEOUT)));
        if let Err(error) = configure {
            return Err(Failure::new(
                Outcome::OtherError,
                format!("configuring a new connection failed: {error}"),
            ));
        }
        Ok(Self {
            stream,
            buffer: Vec::new(),
            answered: 0,
            mark,
        })
    }

    /// Whether the server has ended this idle connection: a look at the
    /// socket that does not wait and takes nothing (`MSG_PEEK |
    /// MSG_DONTWAIT`). EOF, a reset, any error but "nothing yet", or bytes
    /// before any request (a server may say `408` before it closes) all
    /// mean the connection must not carry a request. A fresh connection
    /// is never looked at: its first request is sent whatever happens.
    fn ended_while_idle(&self) -> Option<Stale> {
        if self.answered == 0 {
            return None;
        }
        if !self.buffer.is_empty() {
            return Some(Stale {
                unusual: Some("bytes after the last response, nobody asked for"),
            });
        }
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        let socket = socket2::SockRef::from(&self.stream);
        let mut looked = socket.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
        for _ in 0..100 {
            match &looked {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                    looked = socket.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
                }
                _ => break,
            }
        }
        let unusual = match looked {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
            Ok(0) => None,
            Ok(_) => Some("bytes on an idle connection, nobody asked for"),
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                Some("an idle connection was reset")
            }
            Err(_) => Some("an idle connection failed (or a look at it was interrupted 100 times)"),
        };
        Some(Stale { unusual })
    }

    /// Writes `request` and reads its response (skipping 1xx), all within
    /// [`RESPONSE_TIMEOUT`].
    fn exchange(&mut self, request: &[u8]) -> Result<Answer, Failure> {
        let started = Instant::now();
        let deadline = started
            .checked_add(RESPONSE_TIMEOUT)
            .expect("a response deadline in range");
        let reused = self.answered;
        let on = move |what: &str| {
            if reused == 0 {
                format!("{what} on a fresh connection")
            } else {
                format!("{what} on a reused connection ({reused} responses before)")
            }
        };
        if let Err(error) = (&self.stream).write_all(request) {
            return Err(Failure::new(
                Outcome::of_error(&error),
                on(&format!("writing the request failed: {error}")),
            ));
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match parse(&self.buffer) {
                Parsed::Complete {
                    status,
                    closes,
                    length,
                } => {
                    self.buffer.drain(..length);
                    if (100..200).contains(&status) {
                        continue;
                    }
                    self.answered += 1;
                    return Ok(Answer { status, closes });
                }
                Parsed::Malformed(why) => {
                    let shown = String::from_utf8_lossy(&self.buffer[..self.buffer.len().min(200)]);
                    return Err(Failure::new(
                        Outcome::Malformed,
                        on(&format!("{why}: {shown:?}")),
                    ));
                }
                Parsed::Incomplete => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::new(
                    Outcome::Timeout,
                    on(&format!(
                        "no complete response within {RESPONSE_TIMEOUT:?} ({} bytes of it)",
                        self.buffer.len()
                    )),
                ));
            }
            if let Err(error) = self.stream.set_read_timeout(Some(left)) {
                return Err(Failure::new(
                    Outcome::OtherError,
                    on(&format!("setting the read timeout failed: {error}")),
                ));
            }
            match read_retrying(&self.stream, &mut chunk) {
                Ok(0) => {
                    return Err(Failure::new(
                        Outcome::Lost,
                        on(&format!(
                            "EOF after {} bytes of response, {:?} after the write",
                            self.buffer.len(),
                            started.elapsed()
                        )),
                    ));
                }
                Ok(count) => self.buffer.extend_from_slice(&chunk[..count]),
                // The read timeout: the loop checks the deadline.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => {
                    return Err(Failure::new(
                        Outcome::of_error(&error),
                        on(&format!(
                            "reading the response failed after {} bytes of it, {:?} after the \
                             write: {error}",
                            self.buffer.len(),
                            started.elapsed()
                        )),
                    ));
                }
            }
        }
    }
}

/// What the bytes read so far hold.
enum Parsed {
    /// Not a whole response yet.
    Incomplete,
    /// A whole response, `length` bytes with its body.
    Complete {
        status: u16,
        closes: bool,
        length: usize,
    },
    /// Not a response this client can frame, and why.
    Malformed(String),
}

/// Parses the response at the start of `buffer`: an HTTP/1.x status line,
/// headers, and a body framed by `Content-Length` (none for 1xx, 204 and
/// 304). `Transfer-Encoding` is not expected from the service.
fn parse(buffer: &[u8]) -> Parsed {
    let Some(head_length) = buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
    else {
        return if buffer.len() > MAX_RESPONSE_HEAD {
            Parsed::Malformed(format!("no end of the head in {MAX_RESPONSE_HEAD} bytes"))
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(head) = std::str::from_utf8(&buffer[..head_length]) else {
        return Parsed::Malformed("a head that is not UTF-8".to_owned());
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let Some(rest) = status_line.strip_prefix("HTTP/1.") else {
        return Parsed::Malformed("not an HTTP/1.x status line".to_owned());
    };
    let http_1_0 = rest.starts_with('0');
    let Some(status) = rest
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..1000).contains(code))
    else {
        return Parsed::Malformed("no status code".to_owned());
    };
    let mut content_length = None;
    let mut closes = http_1_0;
    for line in lines.filter(|line| !line.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Malformed(format!("a header line without a colon: {line:?}"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let Ok(length) = value.parse::<usize>() else {
                return Parsed::Malformed(format!("Content-Length {value:?}"));
            };
            if content_length.is_some_and(|seen| seen != length) {
                return Parsed::Malformed("two different Content-Lengths".to_owned());
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Malformed(format!("Transfer-Encoding {value:?} (not expected)"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    closes = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && http_1_0 {
                    closes = false;
                }
            }
        }
    }
    let body_length = if (100..200).contains(&status) || status == 204 || status == 304 {
        0
    } else {
        match content_length {
            Some(length) => length,
            None => return Parsed::Malformed("a response without Content-Length".to_owned()),
        }
    };
    let length = head_length + body_length;
    if buffer.len() < length {
        Parsed::Incomplete
    } else {
        Parsed::Complete {
            status,
            closes,
            length,
        }
    }
}
