//! Self-tests for the throwaway PostgreSQL and Redis servers of
//! `tests/support/postgres.rs` and `tests/support/redis.rs`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::postgres::{self, Postgres};
use support::redis::{self, Redis};

/// How long a probe of a paused server waits for an answer that must not come.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a helper test process may take to report its servers.
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the servers of a dead helper may take to disappear.
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to look for them meanwhile: they are not our children, so
/// their exit is no event we could wait on.
const ORPHAN_POLL: Duration = Duration::from_millis(20);
/// Tells [`helper_starts_shared_servers_and_reports_them`] to run, and how
/// to end: `exit` (return, so the process exits with the statics alive) or
/// `block` (wait for stdin to close; the parent kills it first).
const HELPER_ENV: &str = "GREMLINS_SUPPORT_SERVERS_HELPER";

#[test]
fn postgres_answers_pauses_dies_and_restarts_on_the_same_port() {
    let started = Instant::now();
    let mut pg = Postgres::start();
    eprintln!("postgres: initdb + start took {:?}", started.elapsed());
    let port = pg.port();
    assert_eq!(pg.psql("SELECT 1 + 1"), "2");
    pg.psql("CREATE TABLE events (id int PRIMARY KEY)");
    pg.psql("INSERT INTO events VALUES (1)");
    assert_eq!(pg.probe(PROBE_TIMEOUT), postgres::Probe::Answered);

    pg.pause();
    assert_eq!(
        pg.probe(PROBE_TIMEOUT),
        postgres::Probe::Silent,
        "a paused server accepts (backlog) but never answers"
    );
    pg.resume();
    pg.wait_ready(postgres::READY_TIMEOUT);
    assert_eq!(pg.psql("SELECT count(*) FROM events"), "1");

    let pids = pg.server_pids();
    assert!(pids.len() > 1, "a postmaster with children: {pids:?}");
    pg.kill();
    assert_eq!(pg.probe(PROBE_TIMEOUT), postgres::Probe::Refused);
    assert_gone(&pids);
    let restarted = Instant::now();
    pg.restart();
    eprintln!(
        "postgres: restart after an immediate shutdown took {:?}",
        restarted.elapsed()
    );
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("SELECT count(*) FROM events"), "1");

    let pids = pg.server_pids();
    pg.pause();
    pg.crash();
    assert_eq!(pg.probe(PROBE_TIMEOUT), postgres::Probe::Refused);
    assert_gone(&pids);
    let restarted = Instant::now();
    pg.restart();
    eprintln!(
        "postgres: restart after a crash took {:?}",
        restarted.elapsed()
    );
    assert_eq!(pg.port(), port);
    assert_eq!(
        pg.psql("SELECT count(*) FROM events"),
        "1",
        "committed rows survive a crash of the server alone"
    );

    let pids = pg.server_pids();
    pg.stop();
    assert_eq!(pg.probe(PROBE_TIMEOUT), postgres::Probe::Refused);
    assert_gone(&pids);
    pg.restart();
    let pids = pg.server_pids();
    let dir = pg.dir().to_owned();
    let stopping = Instant::now();
    drop(pg);
    eprintln!("postgres: drop took {:?}", stopping.elapsed());
    assert_gone(&pids);
    assert!(!dir.exists(), "{} is removed on drop", dir.display());
}

#[test]
fn redis_answers_pauses_dies_and_restarts_on_the_same_port() {
    let started = Instant::now();
    let mut redis = Redis::start();
    eprintln!("redis: start took {:?}", started.elapsed());
    let port = redis.port();
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(redis.probe(PROBE_TIMEOUT), redis::Probe::Answered);

    redis.pause();
    assert_eq!(
        redis.probe(PROBE_TIMEOUT),
        redis::Probe::Silent,
        "a paused server accepts (backlog) but never answers"
    );
    redis.resume();
    redis.wait_ready(redis::READY_TIMEOUT);
    assert_eq!(redis.cli(&["GET", "greeting"]), "hello");

    let pid = redis.pid();
    redis.kill();
    assert_eq!(redis.probe(PROBE_TIMEOUT), redis::Probe::Refused);
    assert_gone(&[pid]);
    let restarted = Instant::now();
    redis.restart();
    eprintln!("redis: restart took {:?}", restarted.elapsed());
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cli(&["GET", "greeting"]), "", "nothing is persisted");

    let pid = redis.pid();
    redis.pause();
    redis.stop();
    assert_eq!(redis.probe(PROBE_TIMEOUT), redis::Probe::Refused);
    assert_gone(&[pid]);
    redis.restart();
    let pid = redis.pid();
    let dir = redis.dir().to_owned();
    drop(redis);
    assert_gone(&[pid]);
    assert!(!dir.exists(), "{} is removed on drop", dir.display());
}

#[test]
fn a_crashed_postgres_leaves_no_process_memory_or_directory_after_drop() {
    let mut pg = Postgres::start();
    let pids = pg.server_pids();
    let dir = pg.dir().to_owned();
    assert!(
        !shared_memory_created_by(&pids).is_empty(),
        "the postmaster holds a System V segment"
    );
    pg.crash();
    assert!(
        pg.data_dir().join("postmaster.pid").exists(),
        "a crash leaves the lock file behind"
    );
    drop(pg);
    assert_gone(&pids);
    assert_eq!(
        shared_memory_created_by(&pids),
        Vec::<String>::new(),
        "leftover shared memory"
    );
    assert!(!dir.exists(), "{} is removed on drop", dir.display());
}

#[test]
fn shared_servers_start_once_per_test_binary() {
    assert!(std::ptr::eq(postgres::shared(), postgres::shared()));
    let database = postgres::shared().create_database();
    assert_eq!(
        postgres::shared().psql_in(&database, "SELECT current_database()"),
        database
    );
    assert!(
        postgres::shared()
            .url()
            .starts_with("postgres://postgres@127.0.0.1:")
    );

    assert!(std::ptr::eq(redis::shared(), redis::shared()));
    assert_eq!(redis::shared().cli(&["PING"]), "PONG");
    assert_eq!(
        redis::shared().url(),
        format!("redis://127.0.0.1:{}/", redis::shared().port())
    );
}

#[test]
fn shared_servers_die_with_a_test_process_that_exits() {
    let (helper, servers) = spawn_helper("exit");
    let status = wait_for_exit(helper);
    assert!(status.success(), "the helper test process failed: {status}");
    assert_orphans_cleaned_up(&servers);
}

#[test]
fn shared_servers_die_with_a_test_process_that_is_killed() {
    let (mut helper, servers) = spawn_helper("block");
    for server in &servers {
        assert!(
            server.dir.exists(),
            "{} exists while the helper runs",
            server.dir.display()
        );
        assert!(
            server.pids.iter().all(|&pid| is_alive(pid)),
            "{:?} run while the helper runs",
            server.pids
        );
    }
    helper.kill().expect("SIGKILL the helper test process");
    wait_for_exit(helper);
    assert_orphans_cleaned_up(&servers);
}

/// Not a test of its own: the two tests above run it in a child process.
#[test]
#[ignore = "a helper: run by shared_servers_die_with_a_test_process_*"]
fn helper_starts_shared_servers_and_reports_them() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let pg = postgres::shared();
    let pids: Vec<String> = pg.server_pids().iter().map(u32::to_string).collect();
    println!("SERVER {} {}", pg.dir().display(), pids.join(","));
    let redis = redis::shared();
    println!("SERVER {} {}", redis.dir().display(), redis.pid());
    if mode == "block" {
        // The hardest case for the watchdog: stopped processes.
        pg.pause();
        redis.pause();
    }
    println!("SERVERS REPORTED");
    if mode == "block" {
        // Until the parent kills us (or dies itself, closing our stdin).
        let _ = std::io::stdin().lines().count();
    }
}

/// One server of the helper: its directory and its processes.
struct Reported {
    dir: PathBuf,
    pids: Vec<u32>,
}

fn spawn_helper(mode: &str) -> (std::process::Child, Vec<Reported>) {
    let mut helper = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            "--exact",
            "helper_starts_shared_servers_and_reports_them",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the helper test process");
    let stdout = helper.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        // Read to the end even once nobody listens: closing the pipe early
        // would fail the helper's last writes (its test summary) with EPIPE,
        // and libtest then exits 101.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let mut servers = Vec::new();
    loop {
        let line = lines.recv_deadline(deadline).unwrap_or_else(|error| {
            panic!("waiting for the helper to report its servers: {error}")
        });
        if line == "SERVERS REPORTED" {
            break;
        }
        if let Some(report) = line.strip_prefix("SERVER ") {
            let (dir, pids) = report.rsplit_once(' ').expect("SERVER DIR PIDS");
            let pids = pids
                .split(',')
                .map(|pid| pid.parse().expect("a PID"))
                .collect();
            servers.push(Reported {
                dir: PathBuf::from(dir),
                pids,
            });
        }
    }
    assert_eq!(servers.len(), 2, "postgres and redis reported");
    (helper, servers)
}

/// Reaps the helper, waiting up to [`HELPER_TIMEOUT`].
fn wait_for_exit(mut helper: std::process::Child) -> std::process::ExitStatus {
    let (exited_tx, exited) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = exited_tx.send(helper.wait());
    });
    exited
        .recv_timeout(HELPER_TIMEOUT)
        .unwrap_or_else(|_| {
            panic!("the helper test process did not exit within {HELPER_TIMEOUT:?}")
        })
        .expect("wait for the helper test process")
}

fn assert_orphans_cleaned_up(servers: &[Reported]) {
    let deadline = Instant::now() + ORPHAN_TIMEOUT;
    let started = Instant::now();
    for server in servers {
        while server.pids.iter().any(|&pid| is_alive(pid))
            || server.dir.exists()
            || !shared_memory_created_by(&server.pids).is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "timed out after {ORPHAN_TIMEOUT:?} waiting for the watchdog to kill {:?}, remove {} \
                 and remove the shared memory segments {:?}",
                server
                    .pids
                    .iter()
                    .filter(|&&pid| is_alive(pid))
                    .collect::<Vec<_>>(),
                server.dir.display(),
                shared_memory_created_by(&server.pids)
            );
            std::thread::sleep(ORPHAN_POLL);
        }
    }
    eprintln!("the watchdogs cleaned up after {:?}", started.elapsed());
}

/// Panics unless every one of `pids` has exited (zombies count as exited).
fn assert_gone(pids: &[u32]) {
    let alive: Vec<u32> = pids.iter().copied().filter(|&pid| is_alive(pid)).collect();
    let described: Vec<String> = alive
        .iter()
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
        .collect();
    assert!(alive.is_empty(), "still running: {described:?}");
}

/// Whether `pid` exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(") ")?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// The ids of the System V shared memory segments that one of `pids`
/// created, from `/proc/sysvipc/shm` (`key shmid perms size cpid ...`).
fn shared_memory_created_by(pids: &[u32]) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").expect("read /proc/sysvipc/shm");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let creator: u32 = fields.get(4)?.parse().ok()?;
            pids.contains(&creator).then(|| fields[1].to_owned())
        })
        .collect()
}
