//! `loadgen restart-count`: the counting client of `benches/restart.sh`.
//! For a fixed time, keep-alive clients and one-request-per-connection
//! clients send `GET /` (with `--post-every N`, every Nth request of each
//! client is a `POST /v1/events` with its own `Idempotency-Key`) while the
//! server is hot-restarted under them. Every request is classified:
//!
//! - ok: a complete 2xx response;
//! - non_2xx: a complete response with another status;
//! - refused: the connect was refused;
//! - connect_timeout, connect_error: no connection within `--timeout-ms`,
//!   or another connect error;
//! - write_failed: the connection was gone when the request was written;
//! - reset: written, then the connection was reset before a complete
//!   response;
//! - lost: written, then the connection was closed (EOF) before a complete
//!   response;
//! - timeout: written, no complete response within `--timeout-ms`;
//! - protocol: a response that could not be parsed, or another read error.
//!
//! Every kind but ok is a failure, and none is retried. Before reusing its
//! connection a keep-alive client checks whether the server has closed it,
//! as pooling clients (hyper, Go's net/http) do; then it reconnects and
//! nothing was sent: counted as stale, not as a request. Clients honour
//! `Connection: close`. Counts and latency (of ok responses, connect
//! included for a new connection) are given for two periods: requests
//! started in the first `--baseline-ms` (before any restart), and after.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Conn, Failure};
use crate::clock::unix_ms;
use crate::json::JsonObject;
use crate::stats::{micros_to_ms, quantile};

/// Pause after a failed connect, so a refusing server is not hammered by
/// a spin loop.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Failures each client notes with time and context; the report lists the
/// first [`FAILURES_LISTED`] of all clients.
const FAILURES_NOTED: usize = 20;
const FAILURES_LISTED: usize = 20;

/// The event each POST stores (as `benches/post_events.sh` sends).
const EVENT_BODY: &str = r#"{"type":"bench","payload":{"user":42,"action":"signup"}}"#;

/// What `restart-count` runs.
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) duration: Duration,
    /// Requests started before this much time are the baseline period.
    pub(crate) baseline: Duration,
    pub(crate) keepalive_clients: usize,
    /// Clients that open a new connection for every request.
    pub(crate) fresh_clients: usize,
    /// Every Nth request of a client is a POST; zero: GET only.
    pub(crate) post_every: u64,
    /// Mean pause after each request (each pause is 0.5 to 1.5 of it).
    pub(crate) think: Duration,
    /// Bound on a connect, and on a response after its request was written.
    pub(crate) timeout: Duration,
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ok,
    Non2xx,
    Refused,
    ConnectTimeout,
    ConnectError,
    WriteFailed,
    Reset,
    Lost,
    Timeout,
    Protocol,
}

impl Kind {
    const ALL: [Kind; 10] = [
        Kind::Ok,
        Kind::Non2xx,
        Kind::Refused,
        Kind::ConnectTimeout,
        Kind::ConnectError,
        Kind::WriteFailed,
        Kind::Reset,
        Kind::Lost,
        Kind::Timeout,
        Kind::Protocol,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Non2xx => "non_2xx",
            Kind::Refused => "refused",
            Kind::ConnectTimeout => "connect_timeout",
            Kind::ConnectError => "connect_error",
            Kind::WriteFailed => "write_failed",
            Kind::Reset => "reset",
            Kind::Lost => "lost",
            Kind::Timeout => "timeout",
            Kind::Protocol => "protocol",
        }
    }

    fn of_connect_error(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Kind::Refused,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Kind::ConnectTimeout,
            _ => Kind::ConnectError,
        }
    }

    fn of_read_failure(failure: &Failure) -> Self {
        match failure {
            Failure::ClosedBeforeResponse | Failure::ClosedMidResponse => Kind::Lost,
            Failure::Reset => Kind::Reset,
            Failure::TimedOut => Kind::Timeout,
            Failure::Protocol(_) | Failure::Io(_) => Kind::Protocol,
        }
    }
}

/// Counts and latencies of one period.
#[derive(Default)]
struct Period {
    /// By `Kind as usize`.
    counts: [u64; Kind::ALL.len()],
    stale: u64,
    ok_micros: Vec<u64>,
}

impl Period {
    fn absorb(&mut self, other: Period) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.stale += other.stale;
        self.ok_micros.extend(other.ok_micros);
    }

    fn count(&self, kind: Kind) -> u64 {
        self.counts[kind as usize]
    }

    fn requests(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn failures(&self) -> u64 {
        self.requests() - self.count(Kind::Ok)
    }
}

/// Requests and failures of one sort of request.
#[derive(Default, Clone, Copy)]
struct Sort {
    requests: u64,
    failures: u64,
}

impl Sort {
    fn add(&mut self, failed: bool) {
        self.requests += 1;
        self.failures += u64::from(failed);
    }

    fn absorb(&mut self, other: Sort) {
        self.requests += other.requests;
        self.failures += other.failures;
    }
}

/// One failed request, for the report's failure log.
struct Noted {
    at_unix_ms: u64,
    kind: Kind,
    client: &'static str,
    method: &'static str,
    /// Sent on a connection that had served a request before.
    reused: bool,
}

/// One client's tally (and, absorbed, everyone's).
#[derive(Default)]
struct Tally {
    /// Baseline, then the period with restarts.
    periods: [Period; 2],
    keepalive: Sort,
    fresh: Sort,
    post: Sort,
    statuses: BTreeMap<u16, u64>,
    noted: Vec<Noted>,
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        let [baseline, restarts] = other.periods;
        self.periods[0].absorb(baseline);
        self.periods[1].absorb(restarts);
        self.keepalive.absorb(other.keepalive);
        self.fresh.absorb(other.fresh);
        self.post.absorb(other.post);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.noted.extend(other.noted);
    }
}

/// What each client thread is given.
struct Plan {
    addr: SocketAddr,
    end: Instant,
    baseline_end: Instant,
    post_every: u64,
    think: Duration,
    timeout: Duration,
    /// Makes this run's idempotency keys unique across runs.
    run_tag: String,
}

/// Runs the clients and returns the report line and whether every
/// request succeeded.
pub(crate) fn run(opts: &Options) -> (String, bool) {
    let started = Instant::now();
    let plan = Plan {
        addr: opts.addr,
        end: started + opts.duration,
        baseline_end: started + opts.baseline,
        post_every: opts.post_every,
        think: opts.think,
        timeout: opts.timeout,
        run_tag: format!("{}-{}", std::process::id(), unix_ms()),
    };
    let mut total = Tally::default();
    thread::scope(|scope| {
        let handles: Vec<_> = (0..opts.keepalive_clients + opts.fresh_clients)
            .map(|id| {
                let fresh = id >= opts.keepalive_clients;
                let plan = &plan;
                scope.spawn(move || client_loop(id, fresh, plan))
            })
            .collect();
        for handle in handles {
            if let Ok(tally) = handle.join() {
                total.absorb(tally);
            }
        }
    });

    let mut report = JsonObject::new()
        .field("mode", "restart-count")
        .field("keepalive_clients", opts.keepalive_clients)
        .field("fresh_clients", opts.fresh_clients)
        .field("post_every", opts.post_every)
        .field("think_ms", opts.think.as_secs_f64() * 1000.0)
        .field("duration_secs", opts.duration.as_secs_f64())
        .field("baseline_secs", opts.baseline.as_secs_f64());
    let mut all = Period::default();
    for period in &total.periods {
        for (sum, n) in all.counts.iter_mut().zip(period.counts) {
            *sum += n;
        }
        all.stale += period.stale;
    }
    report = report
        .field("requests", all.requests())
        .field("failures", all.failures());
    for kind in Kind::ALL {
        report = report.field(kind.label(), all.count(kind));
    }
    report = report
        .field("stale", all.stale)
        .field("keepalive_requests", total.keepalive.requests)
        .field("keepalive_failures", total.keepalive.failures)
        .field("fresh_requests", total.fresh.requests)
        .field("fresh_failures", total.fresh.failures)
        .field("post_requests", total.post.requests)
        .field("post_failures", total.post.failures);
    for (name, period) in ["baseline", "restarts"]
        .iter()
        .zip(total.periods.iter_mut())
    {
        report = report
            .field(&format!("{name}_requests"), period.requests())
            .field(&format!("{name}_failures"), period.failures());
        for kind in Kind::ALL {
            report = report.field(&format!("{name}_{}", kind.label()), period.count(kind));
        }
        report = report
            .field(&format!("{name}_stale"), period.stale)
            .field(
                &format!("{name}_p50_ms"),
                quantile(&mut period.ok_micros, 0.5).map(micros_to_ms),
            )
            .field(
                &format!("{name}_p99_ms"),
                quantile(&mut period.ok_micros, 0.99).map(micros_to_ms),
            )
            .field(
                &format!("{name}_max_ms"),
                quantile(&mut period.ok_micros, 1.0).map(micros_to_ms),
            );
    }
    total.noted.sort_by_key(|noted| noted.at_unix_ms);
    let failure_log = total
        .noted
        .iter()
        .take(FAILURES_LISTED)
        .map(|n| {
            let connection = if n.reused { "reused" } else { "new" };
            format!(
                "{} {} {} {} {connection}",
                n.at_unix_ms,
                n.kind.label(),
                n.client,
                n.method
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let statuses = total
        .statuses
        .iter()
        .map(|(status, n)| format!("{status}x{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let line = report
        .field("non_2xx_statuses", statuses)
        .field("failure_log", failure_log)
        .field("elapsed_secs", started.elapsed().as_secs_f64())
        .finish();
    (line, all.failures() == 0)
}

/// One client until `plan.end`: keep-alive (reconnects only when the
/// server closes), or fresh (a new connection with `Connection: close`
/// for every request).
fn client_loop(id: usize, fresh: bool, plan: &Plan) -> Tally {
    let mut t = Tally::default();
    let client = if fresh { "fresh" } else { "keepalive" };
    let get = if fresh {
        client::get_close_request(plan.addr, "/")
    } else {
        client::get_request(plan.addr, "/")
    };
    // A different sequence per client, so their pauses drift apart.
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (id as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let mut conn: Option<Conn> = None;
    let mut n = 0u64;
    while Instant::now() < plan.end {
        n += 1;
        let post = plan.post_every > 0 && n % plan.post_every == 0;
        let method = if post { "POST" } else { "GET" };
        let started = Instant::now();
        let period = usize::from(started >= plan.baseline_end);
        if let Some(c) = conn.as_mut()
            && c.peer_closed()
        {
            t.periods[period].stale += 1;
            conn = None;
        }
        // A connection is kept only after it served a request.
        let reused = conn.is_some();
        let post_request;
        let request = if post {
            let key = format!("restart-count-{}-{id}-{n}", plan.run_tag);
            post_request =
                client::post_json_request(plan.addr, "/v1/events", EVENT_BODY, &key, fresh);
            &post_request[..]
        } else {
            &get[..]
        };
        let outcome = one_request(&mut conn, plan, fresh, request);
        let p = &mut t.periods[period];
        p.counts[outcome.kind as usize] += 1;
        let failed = outcome.kind != Kind::Ok;
        if fresh {
            &mut t.fresh
        } else {
            &mut t.keepalive
        }
        .add(failed);
        if post {
            t.post.add(failed);
        }
        match outcome.kind {
            Kind::Ok => p.ok_micros.push(micros(started.elapsed())),
            Kind::Non2xx => *t.statuses.entry(outcome.status).or_default() += 1,
            _ => {}
        }
        if failed && t.noted.len() < FAILURES_NOTED {
            t.noted.push(Noted {
                at_unix_ms: outcome.at_unix_ms,
                kind: outcome.kind,
                client,
                method,
                reused,
            });
        }
        let pause = if matches!(
            outcome.kind,
            Kind::Refused | Kind::ConnectTimeout | Kind::ConnectError
        ) {
            CONNECT_RETRY_PAUSE
        } else {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            plan.think.mul_f64(0.5 + (rng % 1000) as f64 / 1000.0)
        };
        let left = plan.end.saturating_duration_since(Instant::now());
        thread::sleep(pause.min(left));
    }
    t
}

/// How one request ended, and when it was sent (or the connect tried).
struct Outcome {
    kind: Kind,
    status: u16,
    at_unix_ms: u64,
}

/// Connects if `conn` is empty, sends one request, reads its response;
/// leaves `conn` empty when the connection cannot serve another request.
fn one_request(conn: &mut Option<Conn>, plan: &Plan, fresh: bool, request: &[u8]) -> Outcome {
    let at_unix_ms = unix_ms();
    let failed = |kind| Outcome {
        kind,
        status: 0,
        at_unix_ms,
    };
    let c = match conn {
        Some(c) => c,
        None => match client::connect(plan.addr, plan.timeout) {
            Ok(c) => conn.insert(c),
            Err(err) => return failed(Kind::of_connect_error(&err)),
        },
    };
    if c.send(request).is_err() {
        *conn = None;
        return failed(Kind::WriteFailed);
    }
    let deadline = Instant::now() + plan.timeout;
    match c.read_response(deadline) {
        Ok(response) => {
            if response.close || fresh {
                *conn = None;
            }
            Outcome {
                kind: if (200..300).contains(&response.status) {
                    Kind::Ok
                } else {
                    Kind::Non2xx
                },
                status: response.status,
                at_unix_ms,
            }
        }
        Err(failure) => {
            *conn = None;
            failed(Kind::of_read_failure(&failure))
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
