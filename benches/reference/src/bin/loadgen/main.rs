//! `loadgen`: a small blocking load tool (std threads and std::net only) for
//! `benches/compare.sh`. Every subcommand prints one flat JSON line on stdout
//! (except `free-port` and `probe`) and is bounded in time.

mod client;
mod clock;
mod fairness;
mod flood;
mod idle;
mod json;
mod latency;
mod notify;
mod process;
mod restart_count;
mod shutdown;
mod stats;
mod subreaper;

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::json::JsonObject;

/// Pause between readiness probes while a server starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Parser)]
#[command(about = "Blocking HTTP/1.1 load tool for benches/compare.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N keep-alive connections, one thread each, GET PATH back to back;
    /// reports responses per connection. Fails if any connection got none.
    Fairness {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        #[arg(long, default_value = "/")]
        path: String,
    },
    /// Holds N idle keep-alive connections and measures a fresh client's
    /// `GET /` meanwhile. Prints `holding N connections` on stderr when open.
    Idle {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 5)]
        hold_secs: u64,
    },
    /// Keep-alive clients on a slow path, SIGTERM to PID mid-request;
    /// classifies every request until the server exits.
    Shutdown {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        pid: i32,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value = "/test/sleep?ms=200")]
        path: String,
        /// Client i starts after i * STAGGER_MS / CLIENTS milliseconds.
        #[arg(long, default_value_t = 200)]
        stagger_ms: u64,
        #[arg(long, default_value_t = 1000)]
        signal_after_ms: u64,
        #[arg(long, default_value_t = 15)]
        max_secs: u64,
        /// Extra clients on `GET /` pausing THINK_MS between requests.
        #[arg(long, default_value_t = 0)]
        idle_clients: usize,
        #[arg(long, default_value_t = 25)]
        think_ms: u64,
    },
    /// Sends SIGTERM to an idle server and times its exit.
    Stop {
        #[arg(long)]
        pid: i32,
        #[arg(long, default_value_t = 10)]
        max_secs: u64,
    },
    /// Waits until `GET /` answers 200; fails early if PID stops running.
    Probe {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        pid: Option<i32>,
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
    /// RATE requests a second, each on a fresh connection, for a fixed
    /// time (a health checker); latency quantiles and failures by kind.
    LatencyProbe {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "/healthz")]
        path: String,
        #[arg(long, default_value_t = 20)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Bound on one request, connect to last byte.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// N connections pipelining GET PATH without ever reading a response;
    /// reports how long the server held each one.
    PipelineFlood {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 50)]
        connections: usize,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        #[arg(long, default_value = "/")]
        path: String,
    },
    /// The counting client of `benches/restart.sh`: keep-alive and
    /// one-request-per-connection clients for a fixed time, every request
    /// classified (ok, refused, reset, lost, timeout, non-2xx, ...).
    /// Fails if any request failed.
    RestartCount {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        /// Requests started before this are the baseline period, the rest
        /// the period with restarts.
        #[arg(long, default_value_t = 0)]
        baseline_ms: u64,
        #[arg(long, default_value_t = 8)]
        keepalive_clients: usize,
        /// Clients opening a new connection (`Connection: close`) per request.
        #[arg(long, default_value_t = 8)]
        fresh_clients: usize,
        /// Every Nth request of each client is `POST /v1/events` (0: never).
        #[arg(long, default_value_t = 0)]
        post_every: u64,
        /// Mean pause after each request.
        #[arg(long, default_value_t = 10)]
        think_ms: u64,
        /// Bound on a connect, and on a response once its request is written.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Binds a Unix datagram socket (a `NOTIFY_SOCKET`) and prints each
    /// systemd notify message received as a line: wall-clock ms, fields.
    NotifyListen {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
    },
    /// Runs COMMAND as a child subreaper and reaps it and every process
    /// re-parented here (a hot restart's generations), printing each exit.
    /// Fails unless all exited with code 0 within MAX_SECS.
    Subreaper {
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
        /// File for the program's stdout and stderr (appended to).
        #[arg(long)]
        output: PathBuf,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Prints a currently free TCP port on 127.0.0.1.
    FreePort,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Fairness {
            addr,
            connections,
            duration_secs,
            path,
        } => report(fairness::run(&fairness::Options {
            addr,
            connections,
            duration: Duration::from_secs(duration_secs),
            path,
        })),
        Command::Idle {
            addr,
            connections,
            hold_secs,
        } => report(idle::run(&idle::Options {
            addr,
            connections,
            hold: Duration::from_secs(hold_secs),
        })),
        Command::Shutdown {
            addr,
            pid,
            clients,
            path,
            stagger_ms,
            signal_after_ms,
            max_secs,
            idle_clients,
            think_ms,
        } => match shutdown::run(&shutdown::Options {
            addr,
            pid,
            clients,
            path,
            stagger: Duration::from_millis(stagger_ms),
            signal_after: Duration::from_millis(signal_after_ms),
            max: Duration::from_secs(max_secs),
            idle_clients,
            think: Duration::from_millis(think_ms),
        }) {
            Ok(result) => report(result),
            Err(err) => fail(&format!("shutdown: {err}")),
        },
        Command::Stop { pid, max_secs } => stop(pid, Duration::from_secs(max_secs)),
        Command::Probe {
            addr,
            pid,
            timeout_secs,
        } => probe(addr, pid, Duration::from_secs(timeout_secs)),
        Command::LatencyProbe {
            addr,
            path,
            rate,
            duration_secs,
            timeout_ms,
        } => report(latency::run(&latency::Options {
            addr,
            path,
            rate,
            duration: Duration::from_secs(duration_secs),
            timeout: Duration::from_millis(timeout_ms),
        })),
        Command::PipelineFlood {
            addr,
            connections,
            duration_secs,
            path,
        } => report(flood::run(&flood::Options {
            addr,
            connections,
            duration: Duration::from_secs(duration_secs),
            path,
        })),
        Command::RestartCount {
            addr,
            duration_secs,
            baseline_ms,
            keepalive_clients,
            fresh_clients,
            post_every,
            think_ms,
            timeout_ms,
        } => report(restart_count::run(&restart_count::Options {
            addr,
            duration: Duration::from_secs(duration_secs),
            baseline: Duration::from_millis(baseline_ms),
            keepalive_clients,
            fresh_clients,
            post_every,
            think: Duration::from_millis(think_ms),
            timeout: Duration::from_millis(timeout_ms),
        })),
        Command::NotifyListen { socket, max_secs } => {
            match notify::run(&socket, Duration::from_secs(max_secs)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&format!("notify-listen: {}: {err}", socket.display())),
            }
        }
        Command::Subreaper {
            max_secs,
            output,
            command,
        } => match subreaper::run(&command, &output, Duration::from_secs(max_secs)) {
            Ok(result) => report(result),
            Err(err) => fail(&format!("subreaper: {err}")),
        },
        Command::FreePort => match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(local) => {
                println!("{}", local.port());
                ExitCode::SUCCESS
            }
            Err(err) => fail(&format!("free-port: {err}")),
        },
    }
}

/// Prints a report line; the exit code says whether the run was clean.
fn report((line, ok): (String, bool)) -> ExitCode {
    println!("{line}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("loadgen: {message}");
    ExitCode::from(2)
}

/// SIGTERM to an idle server, then the time until it stops running.
fn stop(pid: i32, max: Duration) -> ExitCode {
    let watch = match process::ExitWatch::open(pid) {
        Ok(watch) => watch,
        Err(err) => return fail(&format!("stop: {err}")),
    };
    let signalled = Instant::now();
    if let Err(err) = process::send_sigterm(pid) {
        return fail(&format!("stop: kill {pid}: {err}"));
    }
    let exited = watch.wait_until(signalled + max);
    let ms = exited.map(|t| t.duration_since(signalled).as_secs_f64() * 1000.0);
    report((
        JsonObject::new()
            .field("mode", "stop")
            .field("exited", exited.is_some())
            .field("sigterm_to_exit_ms", ms)
            .finish(),
        exited.is_some(),
    ))
}

/// Polls `GET /` until a 200 or the timeout.
fn probe(addr: SocketAddr, pid: Option<i32>, timeout: Duration) -> ExitCode {
    let deadline = Instant::now() + timeout;
    let request = client::get_request(addr, "/");
    let mut last_error = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(pid) = pid
            && !process::is_running(pid)
        {
            return fail(&format!("probe: server process {pid} exited"));
        }
        let attempt = client::connect(addr, Duration::from_secs(1))
            .map_err(|e| format!("connect: {e}"))
            .and_then(|mut conn| {
                conn.send(&request).map_err(|e| format!("write: {e}"))?;
                conn.read_response(Instant::now() + Duration::from_secs(2))
                    .map_err(|f| format!("read: {f}"))
            });
        match attempt {
            Ok(response) if response.status == 200 => return ExitCode::SUCCESS,
            Ok(response) => last_error = format!("status {}", response.status),
            Err(err) => last_error = err,
        }
        thread::sleep(PROBE_INTERVAL);
    }
    fail(&format!(
        "probe: {addr} not ready after {timeout:?}: {last_error}"
    ))
}
