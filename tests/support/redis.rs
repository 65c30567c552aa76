//! A throwaway Redis server for integration tests: its own port on
//! 127.0.0.1 and directory, no persistence, and a process that a test can
//! pause, kill and restart.
//!
//! [`Redis::start`] gives a test its own server (fault tests need that: they
//! kill it); [`shared`] gives every test of one test binary the same server,
//! started on first use.
//!
//! # No orphans
//!
//! `Drop` kills the server and removes its directory; a watchdog (see
//! `server_process.rs`) does the same for a [`shared`] server, or for any
//! server whose test process ended without dropping it.

#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub use super::server_process::Probe;
use super::server_process::{
    self, Launch, Run, ServerKind, Watchdog, create_temp_dir, expect_relaunched, find_in_path,
    probe, run_client, send_signal, start_on_free_port,
};

/// How long `redis-server` may take from spawn to "Ready to accept
/// connections".
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped or killed server may take to be gone.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `redis-cli` (or other helper command) may take.
pub const COMMAND_TIMEOUT: Duration = server_process::COMMAND_TIMEOUT;

/// `redis-server` to the process plumbing.
const SERVER: ServerKind = ServerKind {
    name: "redis",
    ready_line: "Ready to accept connections",
    port_taken_line: "Address already in use",
    ready_timeout: READY_TIMEOUT,
    stop_timeout: STOP_TIMEOUT,
};

/// The server every test of this test binary shares, started on first use.
///
/// Statics are never dropped: the instance's watchdog kills the server and
/// removes its directory when the test process ends. Do not stop, pause or
/// kill it (that is why only `&self` is available); fault tests start their
/// own with [`Redis::start`]. Tests that share it keep to their own keys
/// (a prefix per test) or their own logical database (`SELECT n`).
pub fn shared() -> &'static Redis {
    static SHARED: OnceLock<Redis> = OnceLock::new();
    SHARED.get_or_init(Redis::start)
}

/// A throwaway `redis-server` on 127.0.0.1 without persistence (`--save ""
/// --appendonly no`), gone after drop (or, at the latest, right after the
/// test process ends).
pub struct Redis {
    /// The instance's temp directory (`--dir`); nothing is written there.
    root: PathBuf,
    port: u16,
    /// The current server process; `None` while stopped.
    run: Option<Run>,
    watchdog: Watchdog,
}

impl Redis {
    /// Starts `redis-server` on a free port of 127.0.0.1 and waits until it
    /// accepts connections.
    ///
    /// Picks another port if one is taken between the check and the bind
    /// (up to [`PORT_ATTEMPTS`](super::server_process::PORT_ATTEMPTS)
    /// times). Bounded by [`READY_TIMEOUT`]; panics with the server's log
    /// when that passes or the server fails; panics naming the Debian package
    /// when `redis-server` is not installed. Afterwards the server answers on
    /// [`url`](Self::url).
    pub fn start() -> Self {
        let root = create_temp_dir("gremlins-redis");
        let watchdog = Watchdog::spawn(WATCHDOG_CLEANUP, &[&root]);
        let mut redis = Self {
            root,
            port: 0,
            run: None,
            watchdog,
        };
        start_on_free_port(&SERVER, |port| redis.launch(port));
        redis
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The TCP port; it stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1 and [`port`](Self::port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The instance's temp directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Whether the server process is running (it may be paused).
    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// The server's PID. Panics if it is not running.
    pub fn pid(&self) -> u32 {
        self.running().pid()
    }

    /// Everything the current (or last) server process logged.
    pub fn log_text(&self) -> String {
        self.run.as_ref().map(Run::log_text).unwrap_or_default()
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT ARGS...` and returns its output
    /// without the final newline. Error replies come back as text
    /// (`ERR ...`): redis-cli exits 0 for them.
    ///
    /// Bounded by [`COMMAND_TIMEOUT`] (a paused server never answers);
    /// panics with redis-cli's stderr when it fails (e.g. cannot connect).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new(binaries().cli.as_path());
        command
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(args);
        run_client(
            &mut command,
            &format!("redis-cli {args:?} on port {}", self.port),
        )
    }

    /// Connects to 127.0.0.1:PORT and sends `PING`; says what happened
    /// within `timeout`.
    pub fn probe(&self, timeout: Duration) -> Probe {
        probe(self.addr(), b"PING\r\n", timeout, |answer| {
            answer.starts_with(b"+PONG")
        })
    }

    /// Waits until the current server process has logged that it accepts
    /// connections and then answers one [`probe`](Self::probe), all within
    /// `timeout`. Use it after [`resume`](Self::resume). Panics, saying
    /// which, when either does not happen in time.
    pub fn wait_ready(&self, timeout: Duration) {
        self.running()
            .wait_ready(&SERVER, self.port, timeout, |left| self.probe(left));
    }

    /// Stops (`SIGSTOP`) the server. The kernel still completes TCP
    /// handshakes (the listen backlog), but nothing answers, on new or
    /// existing connections, until [`resume`](Self::resume). Panics if the
    /// server is not running.
    pub fn pause(&self) {
        send_signal("STOP", &[self.pid()]).unwrap_or_else(|error| panic!("{error}"));
    }

    /// Continues (`SIGCONT`) the server; harmless if it is not paused.
    /// Panics if the server is not running.
    pub fn resume(&self) {
        send_signal("CONT", &[self.pid()]).unwrap_or_else(|error| panic!("{error}"));
    }

    /// Graceful shutdown: `SIGTERM` (resuming the server if paused), which
    /// closes client connections and exits (nothing is saved). Waits, up to
    /// [`STOP_TIMEOUT`], until the process is gone; afterwards connections
    /// are refused and [`restart`](Self::restart) starts it again. Panics if
    /// the server is not running or does not stop in time.
    pub fn stop(&mut self) {
        self.shut_down("TERM")
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// `SIGKILL`s the server (paused or not) and waits, up to
    /// [`STOP_TIMEOUT`], until it is gone; afterwards connections are refused
    /// and every key is lost. Panics if the server is not running.
    pub fn kill(&mut self) {
        self.shut_down("KILL")
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Starts the server again on the same port (after a [`stop`](Self::stop)
    /// if it is running), empty, and waits, up to [`READY_TIMEOUT`], until it
    /// accepts connections. Panics if the port was taken meanwhile or the
    /// server fails to start.
    pub fn restart(&mut self) {
        if self.run.is_some() {
            self.stop();
        }
        expect_relaunched(&SERVER, self.port, self.launch(self.port));
    }

    /// Spawns `redis-server` on `port` and waits until it is ready.
    fn launch(&mut self, port: u16) -> Result<(), Launch> {
        let mut command = Command::new(binaries().server.as_path());
        command
            .arg("--port")
            .arg(port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ])
            .arg("--dir")
            .arg(&self.root)
            .current_dir(&self.root);
        let run = Run::launch(&SERVER, command, port, &self.watchdog)?;
        self.port = port;
        self.run = Some(run);
        Ok(())
    }

    /// Sends `signal`, resumes the server in case it is paused and waits
    /// until it is gone.
    fn shut_down(&mut self, signal: &str) -> Result<(), String> {
        let run = self.run.as_ref().ok_or_else(|| self.not_running())?;
        let pid = run.pid();
        send_signal(signal, &[pid])?;
        // A paused server handles the signal once it runs again.
        let _ = send_signal("CONT", &[pid]);
        run.await_gone(
            STOP_TIMEOUT,
            &format!("redis {pid} to exit after SIG{signal}"),
        )?;
        self.run = None;
        Ok(())
    }

    fn running(&self) -> &Run {
        self.run
            .as_ref()
            .unwrap_or_else(|| panic!("{}", self.not_running()))
    }

    fn not_running(&self) -> String {
        format!("redis on port {} is not running", self.port)
    }
}

impl Drop for Redis {
    /// Kills the server, removes the directory and disarms the watchdog. If
    /// the server cannot be killed, the watchdog stays armed and cleans up
    /// when the test process ends.
    fn drop(&mut self) {
        if self.run.is_some() {
            if let Err(error) = self.shut_down("KILL") {
                eprintln!(
                    "{error}; leaving redis on port {} to its watchdog",
                    self.port
                );
                return;
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            eprintln!("could not remove {}: {error}", self.root.display());
        }
        self.watchdog.finish();
    }
}

/// The watchdog's cleanup once the test process is gone: `$1` is the
/// instance directory, `$pid` the server's PID (if one runs).
const WATCHDOG_CLEANUP: &str = r#"
root=$1
if [ -n "$pid" ]; then kill -s KILL "$pid" 2>/dev/null; fi
rm -rf "$root" 2>/dev/null || rm -rf "$root"
"#;

/// The Redis programs.
struct Binaries {
    server: PathBuf,
    cli: PathBuf,
}

/// Finds `redis-server` and `redis-cli` on `PATH`.
fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let find = |program: &str| {
            find_in_path(program).unwrap_or_else(|| {
                panic!(
                    "{program} is not on PATH; install the Debian package `redis-server` \
                         (it brings redis-cli in `redis-tools`)"
                )
            })
        };
        Binaries {
            server: find("redis-server"),
            cli: find("redis-cli"),
        }
    })
}
