//! A throwaway PostgreSQL server for integration tests: its own `initdb`
//! directory, its own port on 127.0.0.1, and processes that a test can
//! pause, kill, crash and restart.
//!
//! [`Postgres::start`] gives a test its own server (fault tests need that:
//! they kill it); [`shared`] gives every test of one test binary the same
//! server, started on first use. The server listens on 127.0.0.1 with trust
//! authentication for the superuser `postgres`, `fsync` off, small shared
//! buffers and 100 connections; its Unix socket lives in its directory.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. As root, the directory is given to the
//! `postgres` user and `initdb` and `postgres` run through
//! `setpriv --reuid --regid --clear-groups`, which `exec`s in place (unlike
//! `runuser`, which forks and waits), so the PID of the spawned child *is*
//! the postmaster's and `wait()` reports the postmaster's own exit. Startup
//! checks this against the first line of `postmaster.pid`.
//!
//! # No orphans
//!
//! `Drop` stops the server and removes its directory. But statics are never
//! dropped (so [`shared`] servers are not), and a test process can also end
//! by `SIGKILL` (a harness timeout), Ctrl-C or `std::process::exit`. So every
//! instance also has a watchdog: a small `sh` child whose stdin is a pipe
//! from the test process. Only the test process holds the write end (std
//! creates pipes close-on-exec), so the watchdog reads end-of-file exactly
//! when the test process is gone, however it ended. It then stops the
//! postmaster, kills it and its children by PID, removes the leftover
//! System V shared memory segment named in `postmaster.pid`, and removes the
//! directory. While the test process lives it tells the watchdog the current
//! postmaster PID (`pid N`, and `gone N` once that process has been reaped,
//! so a reused PID is never killed) and disarms it on drop (`done`). The
//! server and the watchdog run in their own process groups, so Ctrl-C on a
//! terminal reaches only the test process, and the watchdog cleans up.
//!
//! `PR_SET_PDEATHSIG` was rejected: it needs `unsafe` (or `setpriv
//! --pdeathsig`), it fires when the spawning *thread* ends (every test runs
//! on its own thread, so the first test to finish would kill a shared
//! server), it does not reach children, which PostgreSQL detaches into their
//! own sessions, and it does not remove the directory.

#![allow(dead_code, unreachable_pub)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// How long `initdb` may take.
pub const INITDB_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a postmaster may take from spawn to "ready to accept
/// connections", crash recovery included.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a shutdown may take until the postmaster and every child it
/// forked are gone.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `psql` (or other helper command) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How many ports [`Postgres::start`] tries when another process takes the
/// chosen port between the check and the postmaster's bind.
const PORT_ATTEMPTS: usize = 8;
/// The lowest port [`pick_port`] chooses: below it live well-known services
/// such as the system's own PostgreSQL (5432) and Redis (6379).
const PORT_FLOOR: u16 = 10_000;
/// How often [`Postgres::crash`] looks whether the children it killed have
/// finished exiting. They are the postmaster's children, not ours, so their
/// exit is no event we can wait on; and once their output is closed only
/// the last steps of exiting remain (microseconds), so the loop is short.
const EXIT_POLL: Duration = Duration::from_millis(1);
/// What the postmaster logs once it accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";
/// What a postmaster that lost the race for its port logs before exiting.
const PORT_TAKEN_LINE: &str = "Address already in use";
/// The superuser `initdb` creates; trust authentication, no password.
pub const SUPERUSER: &str = "postgres";
/// The database [`Postgres::url`] and [`Postgres::psql`] use.
pub const DATABASE: &str = "postgres";

/// What one connection attempt saw within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The server answered.
    Answered,
    /// Nothing listens on the port: the connection was refused.
    Refused,
    /// The connection was made (by the kernel's listen backlog, at least)
    /// but nothing came back: a paused server.
    Silent,
    /// The connection was closed or reset without an answer.
    Closed,
}

/// The server every test of this test binary shares, started on first use.
///
/// Statics are never dropped: the instance's watchdog stops the server and
/// removes its directory when the test process ends. Do not stop, pause or
/// kill it (that is why only `&self` is available); fault tests start their
/// own with [`Postgres::start`]. Tests that need isolation create their own
/// database with [`Postgres::create_database`].
pub fn shared() -> &'static Postgres {
    static SHARED: OnceLock<Postgres> = OnceLock::new();
    SHARED.get_or_init(Postgres::start)
}

/// A throwaway PostgreSQL server: a fresh data directory under
/// [`std::env::temp_dir`] and a postmaster on 127.0.0.1, both gone after
/// drop (or, at the latest, right after the test process ends).
pub struct Postgres {
    /// The instance's temp directory: the Unix socket and `data/`.
    root: PathBuf,
    /// The data directory, `root/data`.
    data: PathBuf,
    port: u16,
    /// The uid and gid the server runs as, when the tests run as root.
    owner: Option<(u32, u32)>,
    /// The current postmaster; `None` while stopped.
    run: Option<Run>,
    watchdog: Watchdog,
}

impl Postgres {
    /// Runs `initdb` into a new temp directory, starts a postmaster on a free
    /// port of 127.0.0.1 and waits until it accepts connections.
    ///
    /// Picks another port if one is taken between the check and the bind
    /// (up to [`PORT_ATTEMPTS`] times). Bounded by [`INITDB_TIMEOUT`] and
    /// [`READY_TIMEOUT`]; panics with the server's log when either passes or
    /// the server fails. Afterwards the server answers on [`url`](Self::url).
    pub fn start() -> Self {
        let binaries = binaries();
        let owner = server_owner();
        let root = create_temp_dir("gremlins-postgres");
        let data = root.join("data");
        let watchdog = Watchdog::spawn(WATCHDOG_SCRIPT, &[&root, &data]);
        let mut postgres = Self {
            root,
            data,
            port: 0,
            owner,
            run: None,
            watchdog,
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&postgres.root, Some(uid), Some(gid)).unwrap_or_else(
                |error| {
                    panic!(
                        "chown {} to the postgres user: {error}",
                        postgres.root.display()
                    )
                },
            );
        }

        let mut initdb = postgres.command_as_owner(&binaries.initdb);
        initdb.arg("--pgdata").arg(&postgres.data).args([
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        ]);
        let output = run_bounded(&mut initdb, INITDB_TIMEOUT, "initdb")
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}",
            output.status,
            output_text(&output)
        );

        for attempt in 1..=PORT_ATTEMPTS {
            match postgres.launch(pick_port()) {
                Ok(()) => return postgres,
                Err(Launch::PortTaken(_)) if attempt < PORT_ATTEMPTS => {}
                Err(Launch::PortTaken(log)) => {
                    panic!(
                        "postgres lost the race for a free port {PORT_ATTEMPTS} times; last log:\n{log}"
                    )
                }
                Err(Launch::Failed(error)) => panic!("{error}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url(DATABASE)
    }

    /// The URL of `database` on this server, as the superuser.
    pub fn database_url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The TCP port; it stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1 and [`port`](Self::port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The instance's temp directory (Unix socket and `data/`).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Whether a postmaster is running (it may be paused).
    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// The postmaster's PID. Panics if the server is not running.
    pub fn pid(&self) -> u32 {
        self.running().pid
    }

    /// The postmaster's PID followed by the PIDs of the processes it forked
    /// (checkpointer, background writer, backends, ...), read from `/proc`.
    /// Panics if the server is not running.
    pub fn server_pids(&self) -> Vec<u32> {
        let pid = self.pid();
        let mut pids = vec![pid];
        pids.extend(children_of(pid));
        pids
    }

    /// Everything the current (or last) postmaster logged.
    pub fn log_text(&self) -> String {
        self.run.as_ref().map(Run::log_text).unwrap_or_default()
    }

    /// Runs `sql` through `psql -X -At -v ON_ERROR_STOP=1` against the
    /// database `postgres` and returns its output without the final newline
    /// (rows on lines, columns separated by `|`).
    ///
    /// Bounded by [`COMMAND_TIMEOUT`] (a paused server never answers);
    /// panics with psql's stderr when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// [`psql`](Self::psql) against `database`.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let mut command = Command::new(&binaries().psql);
        command
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                SUPERUSER,
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql);
        clear_libpq_environment(&mut command);
        command.env("PGCONNECT_TIMEOUT", "10");
        let what = format!("psql -c {sql:?} on port {}", self.port);
        let output = run_bounded(&mut command, COMMAND_TIMEOUT, &what)
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            output.status.success(),
            "{what} failed ({}):\n{}",
            output.status,
            output_text(&output)
        );
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.ends_with('\n') {
            text.pop();
        }
        text
    }

    /// Creates an empty database with a name unique in this test process
    /// and returns the name (see [`database_url`](Self::database_url)).
    pub fn create_database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Relaxed: the counter only has to hand out distinct numbers.
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql(&format!("CREATE DATABASE {name}"));
        name
    }

    /// Connects to 127.0.0.1:PORT and sends an `SSLRequest`, which a running
    /// postmaster answers with one byte; says what happened within `timeout`.
    pub fn probe(&self, timeout: Duration) -> Probe {
        // SSLRequest: length 8, request code 80877103.
        probe(
            self.addr(),
            &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
            timeout,
            |_| true,
        )
    }

    /// Waits until the current postmaster has logged that it accepts
    /// connections and then answers one [`probe`](Self::probe), all within
    /// `timeout`. Use it after [`resume`](Self::resume). Panics, saying
    /// which, when either does not happen in time.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let run = self.running();
        run.wait_until(
            deadline,
            &format!("postgres on port {} to accept connections", self.port),
            |state| state.ready,
        )
        .unwrap_or_else(|error| panic!("{error}; log:\n{}", run.log_text()));
        let probe = self.probe(deadline.saturating_duration_since(Instant::now()));
        assert_eq!(
            probe,
            Probe::Answered,
            "postgres on port {} did not answer a probe within {timeout:?}",
            self.port
        );
    }

    /// Stops (`SIGSTOP`) the postmaster, then every process it forked. The
    /// kernel still completes TCP handshakes (the listen backlog), but
    /// nothing answers, on new or existing connections, until
    /// [`resume`](Self::resume). Panics if the server is not running.
    pub fn pause(&self) {
        let pid = self.pid();
        // The postmaster first, so that it forks nothing we would miss.
        send_signal("STOP", &[pid]).unwrap_or_else(|error| panic!("{error}"));
        // Children may exit meanwhile; a failed kill for them is fine.
        let _ = send_signal("STOP", &children_of(pid));
    }

    /// Continues (`SIGCONT`) the postmaster and every process it forked.
    /// Harmless if they are not paused. Panics if the server is not running.
    pub fn resume(&self) {
        let pid = self.pid();
        let _ = send_signal("CONT", &children_of(pid));
        send_signal("CONT", &[pid]).unwrap_or_else(|error| panic!("{error}"));
    }

    /// Fast shutdown: `SIGINT` to the postmaster (resuming it if paused),
    /// which rolls back open transactions, disconnects clients, writes a
    /// checkpoint and exits. Waits, up to [`STOP_TIMEOUT`], until the
    /// postmaster and all its children are gone; afterwards connections are
    /// refused and [`restart`](Self::restart) starts it again. Panics if the
    /// server is not running or does not stop in time.
    pub fn stop(&mut self) {
        self.shut_down("INT", "a fast shutdown (SIGINT)")
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Immediate shutdown, PostgreSQL's own idea of being killed: `SIGQUIT`
    /// to the postmaster (resuming it if paused), which makes every child
    /// quit at once without a checkpoint; the next start runs crash
    /// recovery. Waits like [`stop`](Self::stop) and panics like it.
    pub fn kill(&mut self) {
        self.shut_down("QUIT", "an immediate shutdown (SIGQUIT)")
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// A crash: stops the postmaster, then `SIGKILL`s every process it
    /// forked and the postmaster itself, so nothing cleans up (the lock file
    /// and shared memory stay behind, as after a power cut of the server
    /// alone: the OS keeps written data, even with `fsync` off). Waits, up to
    /// [`STOP_TIMEOUT`], until they are all gone; the next start runs crash
    /// recovery. Panics if the server is not running.
    pub fn crash(&mut self) {
        self.crash_quietly()
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Starts the server again on the same port and data directory (after a
    /// fast [`stop`](Self::stop) if it is running) and waits, up to
    /// [`READY_TIMEOUT`], until it accepts connections. Panics if the port
    /// was taken meanwhile or the server fails to start.
    pub fn restart(&mut self) {
        if self.run.is_some() {
            self.stop();
        }
        match self.launch(self.port) {
            Ok(()) => {}
            Err(Launch::PortTaken(log)) => {
                panic!(
                    "port {} was taken while postgres was down; log:\n{log}",
                    self.port
                )
            }
            Err(Launch::Failed(error)) => panic!("{error}"),
        }
    }

    /// Spawns a postmaster on `port` and waits until it is ready.
    fn launch(&mut self, port: u16) -> Result<(), Launch> {
        let mut command = self.command_as_owner(&binaries().postgres);
        command
            .arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(port.to_string());
        for setting in [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("unix_socket_directories=\"{}\"", self.root.display()),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "shared_buffers=16MB".to_owned(),
            "max_connections=100".to_owned(),
            "logging_collector=off".to_owned(),
        ] {
            command.arg("-c").arg(setting);
        }
        let run = Run::spawn(command, READY_LINE, &self.watchdog);
        let what = format!("postgres on port {port} to accept connections");
        let outcome = run.wait_until(Instant::now() + READY_TIMEOUT, &what, |state| {
            state.ready || state.is_gone()
        });
        let ready = run.lock_state().ready;
        if !ready {
            // It exited (or timed out): make sure it is gone before a retry.
            if outcome.is_ok() || send_signal("KILL", &[run.pid]).is_ok() {
                let _ = run.wait_until(
                    Instant::now() + STOP_TIMEOUT,
                    "the failed postmaster to exit",
                    RunState::is_gone,
                );
            }
            let log = run.log_text();
            return match outcome {
                Ok(()) if log.contains(PORT_TAKEN_LINE) => Err(Launch::PortTaken(log)),
                Ok(()) => Err(Launch::Failed(format!(
                    "postgres on port {port} exited while starting; log:\n{log}"
                ))),
                Err(error) => Err(Launch::Failed(format!("{error}; log:\n{log}"))),
            };
        }
        let pid = run.pid;
        // Recorded before the check below, so that a failing check still
        // stops the server on drop.
        self.port = port;
        self.run = Some(run);
        let lock_file =
            std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        assert_eq!(
            lock_file.lines().next(),
            Some(pid.to_string().as_str()),
            "BUG: the spawned child (PID {pid}) is not the postmaster named in postmaster.pid"
        );
        Ok(())
    }

    /// Sends `signal` to the postmaster, resumes it in case it is paused and
    /// waits until it and its children are gone.
    fn shut_down(&mut self, signal: &str, what: &str) -> Result<(), String> {
        let pid = self.run.as_ref().ok_or_else(|| self.not_running())?.pid;
        send_signal(signal, &[pid])?;
        // A paused server handles the signal once it runs again.
        let _ = send_signal("CONT", &children_of(pid));
        let _ = send_signal("CONT", &[pid]);
        self.await_gone(what)
    }

    fn crash_quietly(&mut self) -> Result<(), String> {
        let pid = self.run.as_ref().ok_or_else(|| self.not_running())?.pid;
        // Stopped, the postmaster can neither fork nor notice its children dying.
        send_signal("STOP", &[pid])?;
        let children = children_of(pid);
        let mut victims = children.clone();
        victims.push(pid);
        let _ = send_signal("KILL", &victims);
        self.await_gone("SIGKILL")?;
        // End-of-file on their output came when the children closed their
        // files; the last steps of exiting may still be under way.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while let Some(child) = children.iter().find(|&&child| !has_exited(child)) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "postgres child {child} did not finish exiting within {STOP_TIMEOUT:?} of SIGKILL"
                ));
            }
            std::thread::sleep(EXIT_POLL);
        }
        Ok(())
    }

    /// Waits until the postmaster has been reaped and every process that
    /// shared its output (all its children) has exited.
    fn await_gone(&mut self, after: &str) -> Result<(), String> {
        let run = self.run.as_ref().ok_or_else(|| self.not_running())?;
        let what = format!(
            "postmaster {} and its children to exit after {after}",
            run.pid
        );
        run.wait_until(Instant::now() + STOP_TIMEOUT, &what, RunState::is_gone)
            .map_err(|error| format!("{error}; log:\n{}", run.log_text()))?;
        self.run = None;
        Ok(())
    }

    fn running(&self) -> &Run {
        self.run
            .as_ref()
            .unwrap_or_else(|| panic!("{}", self.not_running()))
    }

    fn not_running(&self) -> String {
        format!("postgres on port {} is not running", self.port)
    }

    /// A command running `program` as the server's owner, in the instance's
    /// directory, with a C locale and no libpq settings from the environment.
    fn command_as_owner(&self, program: &Path) -> Command {
        let mut command = match self.owner {
            Some((uid, gid)) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--");
                command.arg(program);
                command
            }
            None => Command::new(program),
        };
        clear_libpq_environment(&mut command);
        command.env("LC_ALL", "C").current_dir(&self.root);
        command
    }
}

impl Drop for Postgres {
    /// Fast shutdown (a crash if that fails), then removes the shared memory
    /// a crash left behind and the directory, and disarms the watchdog. If
    /// the server cannot be stopped, the watchdog stays armed and cleans up
    /// when the test process ends.
    fn drop(&mut self) {
        if self.run.is_some() {
            let stopped = self
                .shut_down("INT", "a fast shutdown (SIGINT)")
                .or_else(|error| {
                    eprintln!("{error}; crashing it instead");
                    self.crash_quietly()
                });
            if let Err(error) = stopped {
                eprintln!(
                    "{error}; leaving postgres on port {} to its watchdog",
                    self.port
                );
                return;
            }
        }
        remove_leftover_shared_memory(&self.data);
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            eprintln!("could not remove {}: {error}", self.root.display());
        }
        self.watchdog.finish();
    }
}

/// Why a postmaster did not become ready.
enum Launch {
    /// Another process bound the port first; carries the log.
    PortTaken(String),
    /// Anything else; carries the message with the log.
    Failed(String),
}

/// The watchdog `sh` script: `$1` is the instance directory, `$2` the data
/// directory; see the module docs.
const WATCHDOG_SCRIPT: &str = r#"
root=$1 data=$2 pid=
while read -r word arg; do
  case $word in
    pid) pid=$arg ;;
    gone) if [ "$arg" = "$pid" ]; then pid=; fi ;;
    done) exit 0 ;;
  esac
done
# End of input without "done": the test process is gone.
if [ -n "$pid" ]; then
  kill -s STOP "$pid" 2>/dev/null
  victims=$pid
  for stat in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$stat" || continue
    set -- ${line##*") "}
    if [ "$2" = "$pid" ]; then
      child=${stat#/proc/}
      victims="$victims ${child%/stat}"
    fi
  done
  kill -s KILL $victims 2>/dev/null
fi
set -- $(sed -n 7p "$data/postmaster.pid" 2>/dev/null)
if [ -n "$2" ]; then ipcrm -m "$2" 2>/dev/null; fi
rm -rf "$root" 2>/dev/null || rm -rf "$root"
"#;

/// The PostgreSQL programs, from one installation.
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
}

/// Finds `initdb` on `PATH` (following symlinks to its real directory), or
/// else the highest version under `/usr/lib/postgresql/*/bin`, and takes
/// `postgres` and `psql` from the same directory.
fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let dir = find_in_path("initdb")
            .and_then(|initdb| std::fs::canonicalize(initdb).ok())
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
            .filter(|dir| dir.join("postgres").is_file())
            .or_else(highest_installed_bin_dir)
            .unwrap_or_else(|| {
                panic!(
                    "the PostgreSQL server programs (initdb, postgres) are neither on PATH nor under \
                     /usr/lib/postgresql/*/bin; install the Debian package `postgresql`"
                )
            });
        let psql = Some(dir.join("psql")).filter(|psql| psql.is_file()).or_else(|| find_in_path("psql")).unwrap_or_else(
            || panic!("psql is neither next to {} nor on PATH; install the Debian package `postgresql`", dir.display()),
        );
        Binaries { initdb: dir.join("initdb"), postgres: dir.join("postgres"), psql }
    })
}

fn highest_installed_bin_dir() -> Option<PathBuf> {
    let version = |name: &str| -> Option<Vec<u32>> {
        name.split('.').map(|part| part.parse().ok()).collect()
    };
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = version(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `None` to run the server as the current user; as root, the uid and gid
/// of the `postgres` user, since PostgreSQL refuses to run as root.
fn server_owner() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:")?.split_whitespace().nth(1))
        .expect("an effective uid in /proc/self/status");
    if euid != "0" {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let output = run_bounded(
            Command::new("id").arg(flag).arg("postgres"),
            COMMAND_TIMEOUT,
            "id postgres",
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            output.status.success(),
            "the tests run as root, which PostgreSQL refuses, and there is no `postgres` user to run it as \
             (the Debian package `postgresql` creates one): {}",
            output_text(&output)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("a numeric id from `id`")
    };
    Some((id("-u"), id("-g")))
}

/// libpq reads `PGHOST`, `PGPORT`, `PGSERVICE`, `PGOPTIONS`, ... from the
/// environment; none of the developer's settings may reach these programs.
fn clear_libpq_environment(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|key| key.starts_with("PG")) {
            command.env_remove(key);
        }
    }
}

/// Removes the System V shared memory segment that a crashed postmaster
/// left behind, as named in the stale `postmaster.pid` (line 7: key, id).
/// A cleanly stopped postmaster removes both itself.
fn remove_leftover_shared_memory(data: &Path) {
    let Ok(lock_file) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    if let Some(id) = lock_file
        .lines()
        .nth(6)
        .and_then(|line| line.split_whitespace().nth(1))
    {
        let _ = run_bounded(
            Command::new("ipcrm").arg("-m").arg(id),
            COMMAND_TIMEOUT,
            "ipcrm",
        );
    }
}

// ---------------------------------------------------------------------------
// Process plumbing. tests/support/redis.rs has its own copy so that either
// module can be used alone.
// ---------------------------------------------------------------------------

/// What the threads watching one server process report.
enum Event {
    /// The ready line appeared in the output.
    Ready,
    /// One of stdout and stderr reached end-of-file: every process holding
    /// it has exited.
    OutputClosed,
    /// The process was reaped.
    Exited(ExitStatus),
}

/// What is known about one server process, from its [`Event`]s.
struct RunState {
    ready: bool,
    /// Of stdout and stderr, how many are still open.
    open_outputs: usize,
    exit: Option<ExitStatus>,
}

impl RunState {
    /// Reaped, and no process (no forked child either) holds its output.
    fn is_gone(&self) -> bool {
        self.exit.is_some() && self.open_outputs == 0
    }
}

/// One server process, from spawn until it and its children are gone.
struct Run {
    pid: u32,
    events: Receiver<Event>,
    /// Written only by [`Run::wait_until`], which applies events under this
    /// lock, so concurrent waiters see each event exactly once.
    state: Mutex<RunState>,
    /// Every output line; the reader threads append, anyone reads.
    log: Arc<Mutex<Vec<String>>>,
}

impl Run {
    /// Spawns `command` in its own process group with its output read into
    /// the log, tells the watchdog its PID, and tells it again once the
    /// process has been reaped.
    fn spawn(mut command: Command, ready_line: &'static str, watchdog: &Watchdog) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("could not spawn {command:?}: {error}"));
        let pid = child.id();
        watchdog.tell(&format!("pid {pid}"));
        let (events_tx, events) = crossbeam_channel::unbounded();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("BUG: stdout is piped");
        let stderr = child.stderr.take().expect("BUG: stderr is piped");
        read_output(stdout, ready_line, Arc::clone(&log), events_tx.clone());
        read_output(stderr, ready_line, Arc::clone(&log), events_tx.clone());
        let control = Arc::clone(&watchdog.control);
        std::thread::spawn(move || {
            let status = child.wait();
            Watchdog::tell_to(&control, &format!("gone {pid}"));
            match status {
                Ok(status) => {
                    let _ = events_tx.send(Event::Exited(status));
                }
                Err(error) => eprintln!("lost track of server process {pid}: {error}"),
            }
        });
        let state = Mutex::new(RunState {
            ready: false,
            open_outputs: 2,
            exit: None,
        });
        Self {
            pid,
            events,
            state,
            log,
        }
    }

    /// Applies events until `done` holds, `deadline` passes (an error naming
    /// `what`), or no event can come any more (an error too).
    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        done: impl Fn(&RunState) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut state = self.lock_state();
        loop {
            if done(&state) {
                return Ok(());
            }
            match self.events.recv_deadline(deadline) {
                Ok(Event::Ready) => state.ready = true,
                Ok(Event::OutputClosed) => state.open_outputs -= 1,
                Ok(Event::Exited(status)) => state.exit = Some(status),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "timed out after {:?} waiting for {what}",
                        started.elapsed()
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "gave up waiting for {what}: process {} is gone",
                        self.pid
                    ));
                }
            }
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }
}

/// Reads `output` line by line (lossily: a server may log any bytes) into
/// `log`, reporting the ready line and end-of-file.
fn read_output(
    output: impl Read + Send + 'static,
    ready_line: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    events: Sender<Event>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(output);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&bytes).trim_end().to_owned();
            let ready = line.contains(ready_line);
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
            if ready {
                let _ = events.send(Event::Ready);
            }
        }
        let _ = events.send(Event::OutputClosed);
    });
}

/// The `sh` child that kills the server and removes its directory once the
/// test process is gone; see the module docs.
struct Watchdog {
    /// `None` once disarmed and reaped.
    child: Option<Child>,
    /// The watchdog's stdin; the test process holds the only write end.
    /// `None` once disarmed.
    control: Arc<Mutex<Option<ChildStdin>>>,
}

impl Watchdog {
    /// How long a disarmed watchdog may take to exit.
    const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

    fn spawn(script: &str, args: &[&Path]) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("watchdog")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("could not spawn the watchdog sh: {error}"));
        let stdin = child
            .stdin
            .take()
            .expect("BUG: the watchdog's stdin is piped");
        Self {
            child: Some(child),
            control: Arc::new(Mutex::new(Some(stdin))),
        }
    }

    fn tell(&self, line: &str) {
        Self::tell_to(&self.control, line);
    }

    fn tell_to(control: &Mutex<Option<ChildStdin>>, line: &str) {
        let mut control = control.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stdin) = control.as_mut() {
            if let Err(error) = writeln!(stdin, "{line}") {
                eprintln!("the watchdog did not take {line:?}: {error}");
            }
        }
    }

    /// Disarms the watchdog and reaps it, waiting up to
    /// [`EXIT_TIMEOUT`](Self::EXIT_TIMEOUT).
    fn finish(&mut self) {
        self.tell("done");
        drop(
            self.control
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let Some(mut child) = self.child.take() else {
            return;
        };
        let (exited_tx, exited) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = exited_tx.send(child.wait());
        });
        if exited.recv_timeout(Self::EXIT_TIMEOUT).is_err() {
            eprintln!(
                "the disarmed watchdog did not exit within {:?}",
                Self::EXIT_TIMEOUT
            );
        }
    }
}

/// Connects to `addr`, writes `request` and reads what comes back, all
/// within `timeout`; `answered` judges the first bytes.
fn probe(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    answered: impl Fn(&[u8]) -> bool,
) -> Probe {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream = match TcpStream::connect_timeout(&addr, remaining()) {
        Ok(stream) => stream,
        Err(error) if error.kind() == ErrorKind::ConnectionRefused => return Probe::Refused,
        Err(error) if matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            return Probe::Silent;
        }
        Err(error) => panic!("probe: could not connect to {addr}: {error}"),
    };
    if stream.write_all(request).is_err() {
        return Probe::Closed;
    }
    stream
        .set_read_timeout(Some(remaining()))
        .expect("set a read timeout");
    let mut answer = [0u8; 64];
    match stream.read(&mut answer) {
        Ok(0) => Probe::Closed,
        Ok(count) if answered(&answer[..count]) => Probe::Answered,
        Ok(count) => panic!(
            "probe: unexpected answer from {addr}: {:?}",
            String::from_utf8_lossy(&answer[..count])
        ),
        Err(error) if matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Probe::Silent
        }
        Err(_) => Probe::Closed,
    }
}

/// The PIDs of the processes whose parent is `parent`, from `/proc/*/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "PID (COMM) STATE PPID ...", where COMM may hold anything.
            let ppid: u32 = stat
                .rsplit_once(") ")?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// Whether `pid` is gone or a zombie (`/proc/PID/stat` state `Z` or `X`).
fn has_exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .is_none_or(|stat| {
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().next());
            matches!(state, Some("Z" | "X"))
        })
}

/// `kill -s SIGNAL PID...`; an error if any of them could not be signalled.
fn send_signal(signal: &str, pids: &[u32]) -> Result<(), String> {
    if pids.is_empty() {
        return Ok(());
    }
    let mut command = Command::new("kill");
    command
        .arg("-s")
        .arg(signal)
        .args(pids.iter().map(u32::to_string));
    let output = run_bounded(&mut command, COMMAND_TIMEOUT, "kill")?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "kill -s {signal} {pids:?} failed: {}",
            output_text(&output)
        ))
    }
}

/// Runs `command` to completion with its output captured, killing it (by
/// PID) if it takes longer than `timeout`.
fn run_bounded(command: &mut Command, timeout: Duration, what: &str) -> Result<Output, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .map_err(|error| format!("could not run {what} ({command:?}): {error}"))?;
    let pid = child.id();
    let (done_tx, done) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done.recv_timeout(timeout) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(format!("waiting for {what} failed: {error}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            Err(format!("{what} did not finish within {timeout:?}"))
        }
    }
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A new, empty directory under [`std::env::temp_dir`], named after the
/// test process and a counter.
fn create_temp_dir(prefix: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    for _ in 0..1000 {
        // Relaxed: the counter only has to hand out distinct numbers.
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{number}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => return path,
            // Left behind by an earlier process with the same PID.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => panic!("could not create {}: {error}", path.display()),
        }
    }
    panic!(
        "no free directory name {prefix}-{}-N under {}",
        std::process::id(),
        std::env::temp_dir().display()
    )
}

/// A port on 127.0.0.1 that is free right now.
///
/// It is chosen at random between [`PORT_FLOOR`] and the start of the
/// kernel's ephemeral range, rather than from binding port 0: an ephemeral
/// port freed by `stop()` could be taken by any outgoing connection (psql,
/// the service's own clients) before `restart()` binds it again. Falls back
/// to binding port 0 when the range is unknown or too small. The caller
/// retries if the port is taken before the server binds it.
fn pick_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    if ephemeral_start > PORT_FLOOR + 1000 {
        let random = RandomState::new();
        let span = u64::from(ephemeral_start - PORT_FLOOR);
        for attempt in 0..100u64 {
            let offset = u16::try_from(random.hash_one(attempt) % span)
                .expect("BUG: the offset is below a u16 span");
            let port = PORT_FLOOR + offset;
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}
