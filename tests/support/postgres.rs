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
//! `Drop` stops the server and removes its directory; a watchdog (see
//! `server_process.rs`) does the same for a [`shared`] server, or for any
//! server whose test process ended without dropping it. Since PostgreSQL
//! detaches its children into their own sessions, the watchdog stops the
//! postmaster, kills it and its children by PID, and removes the leftover
//! System V shared memory segment named in `postmaster.pid` before it
//! removes the directory.

#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use super::server_process::Probe;
use super::server_process::{
    self, Launch, Run, ServerKind, Watchdog, create_temp_dir, expect_relaunched, find_in_path,
    output_text, probe, run_bounded, run_client, send_signal, start_on_free_port,
};

/// How long `initdb` may take.
pub const INITDB_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a postmaster may take from spawn to "ready to accept
/// connections", crash recovery included.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a shutdown may take until the postmaster and every child it
/// forked are gone.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `psql` (or other helper command) may take.
pub const COMMAND_TIMEOUT: Duration = server_process::COMMAND_TIMEOUT;

/// How often [`Postgres::crash`] looks whether the children it killed have
/// finished exiting. They are the postmaster's children, not ours, so their
/// exit is no event we can wait on; and once their output is closed only
/// the last steps of exiting remain (microseconds), so the loop is short.
const EXIT_POLL: Duration = Duration::from_millis(1);
/// The superuser `initdb` creates; trust authentication, no password.
pub const SUPERUSER: &str = "postgres";
/// The database [`Postgres::url`] and [`Postgres::psql`] use.
pub const DATABASE: &str = "postgres";

/// The postmaster to the process plumbing.
const SERVER: ServerKind = ServerKind {
    name: "postgres",
    ready_line: "database system is ready to accept connections",
    port_taken_line: "Address already in use",
    ready_timeout: READY_TIMEOUT,
    stop_timeout: STOP_TIMEOUT,
};

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
    /// (up to [`PORT_ATTEMPTS`](super::server_process::PORT_ATTEMPTS)
    /// times). Bounded by [`INITDB_TIMEOUT`] and [`READY_TIMEOUT`]; panics
    /// with the server's log when either passes or the server fails.
    /// Afterwards the server answers on [`url`](Self::url).
    pub fn start() -> Self {
        let binaries = binaries();
        let owner = server_owner();
        let root = create_temp_dir("gremlins-postgres");
        let data = root.join("data");
        let watchdog = Watchdog::spawn(WATCHDOG_CLEANUP, &[&root, &data]);
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

        start_on_free_port(&SERVER, |port| postgres.launch(port));
        postgres
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
        self.running().pid()
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
        run_client(
            &mut command,
            &format!("psql -c {sql:?} on port {}", self.port),
        )
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
        self.running()
            .wait_ready(&SERVER, self.port, timeout, |left| self.probe(left));
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
        expect_relaunched(&SERVER, self.port, self.launch(self.port));
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
        let run = Run::launch(&SERVER, command, port, &self.watchdog)?;
        let pid = run.pid();
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
        let pid = self.run.as_ref().ok_or_else(|| self.not_running())?.pid();
        send_signal(signal, &[pid])?;
        // A paused server handles the signal once it runs again.
        let _ = send_signal("CONT", &children_of(pid));
        let _ = send_signal("CONT", &[pid]);
        self.await_gone(what)
    }

    fn crash_quietly(&mut self) -> Result<(), String> {
        let pid = self.run.as_ref().ok_or_else(|| self.not_running())?.pid();
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
        run.await_gone(
            STOP_TIMEOUT,
            &format!(
                "postmaster {} and its children to exit after {after}",
                run.pid()
            ),
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

/// The watchdog's cleanup once the test process is gone: `$1` is the
/// instance directory, `$2` the data directory, `$pid` the postmaster's PID
/// (if one runs); see the module docs.
const WATCHDOG_CLEANUP: &str = r#"
root=$1 data=$2
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
// The postmaster's children
// ---------------------------------------------------------------------------

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
