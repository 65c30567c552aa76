//! `loadgen shutdown`: keep-alive clients loop on a slow path; SIGTERM lands
//! mid-request; every request is classified until the server has exited.
//!
//! Per request, from the client's side:
//! - completed: a full response arrived (any status; 503s are counted too);
//!   drained: completed, written before SIGTERM and answered after it;
//! - lost: the request was written but the connection closed or reset
//!   without a complete response (or none came before `--max-secs`);
//! - write_failed: writing the request failed (the connection was already
//!   gone); counted apart from lost because the client knows nothing left;
//! - stale: before reusing a keep-alive connection the client saw that the
//!   server had already closed it, so nothing was written (as pooling
//!   clients do);
//! - refused: a connect refused after SIGTERM; that client then stops.
//!
//! `--idle-clients` adds clients on `GET /` that pause between requests, so
//! SIGTERM often lands while their keep-alive connection is idle (the race
//! where a server closes an idle connection as a request arrives on it).
//!
//! Clients honour `Connection: close` and reconnect. The server's exit is
//! seen through a pidfd (see `process`), so the script keeps the server as
//! its own child and reaps it afterwards for the exit code.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Conn};
use crate::json::JsonObject;
use crate::process::{self, ExitWatch};

/// Bound on establishing one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause after a connect error other than a refusal before SIGTERM, so a
/// struggling server is not hammered by a spin loop.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// What `shutdown` measures.
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: i32,
    pub(crate) clients: usize,
    pub(crate) path: String,
    pub(crate) stagger: Duration,
    pub(crate) signal_after: Duration,
    pub(crate) max: Duration,
    /// Extra clients on `GET /` that pause `think` between requests, so
    /// SIGTERM often finds their keep-alive connection idle and their next
    /// request is written just after it.
    pub(crate) idle_clients: usize,
    pub(crate) think: Duration,
}

/// One client's tally.
#[derive(Default)]
struct Tally {
    sent: u64,
    sent_after_signal: u64,
    completed: u64,
    completed_after_signal: u64,
    /// Sent before SIGTERM, answered after it: drained in-flight requests.
    drained: u64,
    status_2xx: u64,
    status_503: u64,
    status_other: u64,
    close_responses: u64,
    lost: u64,
    lost_after_signal: u64,
    lost_eof: u64,
    lost_reset: u64,
    lost_timeout: u64,
    lost_other: u64,
    write_failed: u64,
    stale: u64,
    refused: u64,
    refused_before_signal: u64,
    connect_errors: u64,
    connects_after_signal: u64,
    last_completed: Option<Instant>,
    /// First lost request: milliseconds between SIGTERM and its write
    /// (negative: before), and why.
    first_lost: Option<(i64, &'static str)>,
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        self.sent += other.sent;
        self.sent_after_signal += other.sent_after_signal;
        self.completed += other.completed;
        self.completed_after_signal += other.completed_after_signal;
        self.drained += other.drained;
        self.status_2xx += other.status_2xx;
        self.status_503 += other.status_503;
        self.status_other += other.status_other;
        self.close_responses += other.close_responses;
        self.lost += other.lost;
        self.lost_after_signal += other.lost_after_signal;
        self.lost_eof += other.lost_eof;
        self.lost_reset += other.lost_reset;
        self.lost_timeout += other.lost_timeout;
        self.lost_other += other.lost_other;
        self.write_failed += other.write_failed;
        self.stale += other.stale;
        self.refused += other.refused;
        self.refused_before_signal += other.refused_before_signal;
        self.connect_errors += other.connect_errors;
        self.connects_after_signal += other.connects_after_signal;
        self.last_completed = self.last_completed.max(other.last_completed);
        if self.first_lost.is_none() {
            self.first_lost = other.first_lost;
        }
    }
}

/// What every client reads: when SIGTERM went out.
struct Shared {
    signalled_at: OnceLock<Instant>,
}

impl Shared {
    /// True if SIGTERM was sent at or before `at`.
    fn signalled_by(&self, at: Instant) -> bool {
        self.signalled_at.get().is_some_and(|&t| t <= at)
    }

    fn ms_from_signal(&self, at: Instant) -> i64 {
        match self.signalled_at.get() {
            Some(&t) if at >= t => {
                i64::try_from(at.duration_since(t).as_millis()).unwrap_or(i64::MAX)
            }
            Some(&t) => -i64::try_from(t.duration_since(at).as_millis()).unwrap_or(i64::MAX),
            None => i64::MIN,
        }
    }
}

/// Runs the scenario and returns the report line and whether the server
/// exited before the bound.
pub(crate) fn run(opts: &Options) -> Result<(String, bool), io::Error> {
    let watch = ExitWatch::open(opts.pid)?;
    let started = Instant::now();
    let hard_end = started + opts.max;
    let shared = Arc::new(Shared {
        signalled_at: OnceLock::new(),
    });
    let slow_request = Arc::new(client::get_request(opts.addr, &opts.path));
    let idle_request = Arc::new(client::get_request(opts.addr, "/"));
    let slow = (0..opts.clients).map(|i| {
        let delay = opts.stagger.mul_f64(i as f64 / opts.clients as f64);
        (Arc::clone(&slow_request), delay, Duration::ZERO)
    });
    let idle = (0..opts.idle_clients).map(|i| {
        let delay = opts.think.mul_f64(i as f64 / opts.idle_clients as f64);
        (Arc::clone(&idle_request), delay, opts.think)
    });
    let handles: Vec<_> = slow
        .chain(idle)
        .map(|(request, delay, think)| {
            let (shared, addr) = (Arc::clone(&shared), opts.addr);
            let plan = ClientPlan {
                start_at: started + delay,
                think,
                hard_end,
            };
            thread::spawn(move || client_loop(addr, &request, &plan, &shared))
        })
        .collect();

    if let Some(wait) = (started + opts.signal_after).checked_duration_since(Instant::now()) {
        thread::sleep(wait);
    }
    let signalled_at = Instant::now();
    let _ = shared.signalled_at.set(signalled_at);
    process::send_sigterm(opts.pid)?;
    let exited_at = watch.wait_until(hard_end);

    let mut total = Tally::default();
    for handle in handles {
        if let Ok(tally) = handle.join() {
            total.absorb(tally);
        }
    }
    let since_signal =
        |t: Instant| t.saturating_duration_since(signalled_at).as_secs_f64() * 1000.0;
    let exit_ms = exited_at.map(since_signal);
    let last_ms = total.last_completed.map(|t| {
        if t >= signalled_at {
            since_signal(t)
        } else {
            -(signalled_at.duration_since(t).as_secs_f64() * 1000.0)
        }
    });
    let exit_minus_last = match (exited_at, total.last_completed) {
        (Some(exit), Some(last)) if exit >= last => {
            Some(exit.duration_since(last).as_secs_f64() * 1000.0)
        }
        (Some(exit), Some(last)) => Some(-(last.duration_since(exit).as_secs_f64() * 1000.0)),
        _ => None,
    };
    let report = JsonObject::new()
        .field("mode", "shutdown")
        .field("clients", opts.clients)
        .field("idle_clients", opts.idle_clients)
        .field("path", opts.path.as_str())
        .field(
            "signal_after_ms",
            u64::try_from(opts.signal_after.as_millis()).unwrap_or(u64::MAX),
        )
        .field("exited", exited_at.is_some())
        .field("sigterm_to_exit_ms", exit_ms)
        .field("last_completed_after_sigterm_ms", last_ms)
        .field("exit_minus_last_completed_ms", exit_minus_last)
        .field("sent", total.sent)
        .field("sent_after_sigterm", total.sent_after_signal)
        .field("completed", total.completed)
        .field("completed_after_sigterm", total.completed_after_signal)
        .field("drained", total.drained)
        .field("status_2xx", total.status_2xx)
        .field("status_503", total.status_503)
        .field("status_other", total.status_other)
        .field("connection_close_responses", total.close_responses)
        .field("lost", total.lost)
        .field("lost_after_sigterm", total.lost_after_signal)
        .field("lost_eof", total.lost_eof)
        .field("lost_reset", total.lost_reset)
        .field("lost_timeout", total.lost_timeout)
        .field("lost_other", total.lost_other)
        .field(
            "first_lost_ms_from_sigterm",
            total.first_lost.map(|(ms, _)| ms),
        )
        .field("first_lost_kind", total.first_lost.map(|(_, kind)| kind))
        .field("write_failed", total.write_failed)
        .field("stale", total.stale)
        .field("refused", total.refused)
        .field("refused_before_sigterm", total.refused_before_signal)
        .field("connect_errors", total.connect_errors)
        .field("connects_after_sigterm", total.connects_after_signal)
        .finish();
    Ok((report, exited_at.is_some()))
}

/// When one client starts, pauses and stops.
struct ClientPlan {
    start_at: Instant,
    /// Pause after each response (zero: none).
    think: Duration,
    hard_end: Instant,
}

/// One keep-alive client: loops until its connect is refused after SIGTERM
/// or `hard_end` passes.
fn client_loop(addr: SocketAddr, request: &[u8], plan: &ClientPlan, shared: &Shared) -> Tally {
    let mut t = Tally::default();
    let hard_end = plan.hard_end;
    if let Some(wait) = plan.start_at.checked_duration_since(Instant::now()) {
        thread::sleep(wait);
    }
    let mut conn: Option<Conn> = None;
    let mut reused = false;
    while Instant::now() < hard_end {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let attempt = Instant::now();
                match client::connect(addr, CONNECT_TIMEOUT) {
                    Ok(new) => {
                        if shared.signalled_by(attempt) {
                            t.connects_after_signal += 1;
                        }
                        reused = false;
                        conn.insert(new)
                    }
                    Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                        if shared.signalled_by(attempt) {
                            t.refused += 1;
                            break;
                        }
                        t.refused_before_signal += 1;
                        thread::sleep(CONNECT_RETRY_PAUSE);
                        continue;
                    }
                    Err(_) => {
                        t.connect_errors += 1;
                        if shared.signalled_by(attempt) {
                            break;
                        }
                        thread::sleep(CONNECT_RETRY_PAUSE);
                        continue;
                    }
                }
            }
        };
        if reused && c.peer_closed() {
            t.stale += 1;
            conn = None;
            continue;
        }
        let sent_at = Instant::now();
        if c.send(request).is_err() {
            t.write_failed += 1;
            conn = None;
            continue;
        }
        reused = true;
        let after_signal = shared.signalled_by(sent_at);
        t.sent += 1;
        t.sent_after_signal += u64::from(after_signal);
        match c.read_response(hard_end) {
            Ok(response) => {
                let now = Instant::now();
                t.completed += 1;
                t.completed_after_signal += u64::from(after_signal);
                t.drained += u64::from(!after_signal && shared.signalled_by(now));
                t.last_completed = t.last_completed.max(Some(now));
                match response.status {
                    200..=299 => t.status_2xx += 1,
                    503 => t.status_503 += 1,
                    _ => t.status_other += 1,
                }
                if response.close {
                    t.close_responses += 1;
                    conn = None;
                }
                if !plan.think.is_zero() {
                    thread::sleep(plan.think.min(hard_end.saturating_duration_since(now)));
                }
            }
            Err(failure) => {
                t.lost += 1;
                t.lost_after_signal += u64::from(after_signal);
                let kind = failure.label();
                match kind {
                    "eof_before_response" | "eof_mid_response" => t.lost_eof += 1,
                    "reset" => t.lost_reset += 1,
                    "timed_out" => t.lost_timeout += 1,
                    _ => t.lost_other += 1,
                }
                t.first_lost
                    .get_or_insert((shared.ms_from_signal(sent_at), kind));
                conn = None;
            }
        }
    }
    t
}
