//! The events API when its dependencies fail: PostgreSQL crashing under
//! load and coming back, Redis dying, either going silent while the
//! service shuts down, and PostgreSQL down when the service starts.
//!
//! Fault tests kill, pause and restart servers, so each has its own
//! throwaway PostgreSQL or Redis from `tests/support/`; a paused server is
//! always resumed by a guard, so the harness can stop it whatever happens.
//! One service runs at a time (see [`one_at_a_time`]): the machine has two
//! cores shared with other builds, and several tests measure time.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use support::postgres::{self, Postgres};
use support::redis::Redis;
use support::{CONNECT_TIMEOUT, Client, Response, Service};

/// Longest wait for a service to exit after SIGTERM when nothing blocks it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The short timeouts of the shutdown tests, as flags and as durations.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);
const SHORT_TIMEOUTS: [&str; 4] = ["--shutdown-timeout", "2s", "--cleanup-timeout", "2s"];
/// What exit may take beyond `shutdown_timeout + cleanup_timeout`: the
/// workers that are not stuck are joined (the server waits at most 1 s for
/// them), the report is written, and the machine is shared.
const EXIT_MARGIN: Duration = Duration::from_millis(1500);
/// A dependency timeout longer than the whole shutdown budget, so that only
/// the service's own deadlines can end a wait on a silent server.
const LONGER_THAN_SHUTDOWN: &str = "60s";
/// Longest wait for a request to be seen running by `/metrics`.
const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `/metrics` and `/readyz` are asked while waiting for a state
/// of the service that it announces nowhere else.
const SERVICE_POLL: Duration = Duration::from_millis(20);
/// The message of a 503 while the database is unavailable.
const DATABASE_UNAVAILABLE: &str = "the database is unavailable";
/// Exit codes of the service.
const EXIT_CLEAN: i32 = 0;
const EXIT_DRAIN_TIMED_OUT: i32 = 3;
const EXIT_CLEANUP_FAILED: i32 = 4;

/// Serialises the tests of this file: one service process at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Resumes a paused PostgreSQL when dropped, so its harness can stop it.
struct ResumePostgres<'a>(&'a Postgres);

impl Drop for ResumePostgres<'_> {
    fn drop(&mut self) {
        if self.0.is_running() {
            self.0.resume();
        }
    }
}

/// Resumes a paused Redis when dropped, so its harness can stop it.
struct ResumeRedis<'a>(&'a Redis);

impl Drop for ResumeRedis<'_> {
    fn drop(&mut self) {
        if self.0.is_running() {
            self.0.resume();
        }
    }
}

/// `POST /v1/events` with `body` and an `Idempotency-Key`.
fn post_request(body: &str, key: &str, close: bool) -> Vec<u8> {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nIdempotency-Key: {key}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

fn event(kind: &str, payload: serde_json::Value) -> String {
    serde_json::json!({ "type": kind, "payload": payload }).to_string()
}

/// One `POST /v1/events` on a fresh connection.
fn post(addr: SocketAddr, body: &str, key: &str) -> Response {
    let mut client = Client::connect(addr);
    client.send(&post_request(body, key, true));
    client.read_response()
}

/// The id of a 201.
fn created_id(response: &Response, what: &str) -> i64 {
    assert_eq!(response.status, 201, "{what}: {}", response.text());
    response.json()["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: no id in {}", response.text()))
}

/// Asserts the 503 a request gets while the database is unavailable.
fn assert_database_unavailable(response: &Response, what: &str) {
    assert_eq!(response.status, 503, "{what}: {}", response.text());
    let json = response.json();
    assert_eq!(json["code"], "DRYAD-DB-5031", "{what}: {json}");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|message| message.contains(DATABASE_UNAVAILABLE)),
        "{what}: a clear message: {json}"
    );
    assert!(
        response
            .header("Retry-After")
            .is_some_and(|seconds| seconds.parse::<u64>().is_ok()),
        "{what}: Retry-After in seconds: {:?}",
        response.headers
    );
}

/// Waits until `/metrics` shows `requests` requests running besides its own.
fn wait_in_flight(service: &Service, requests: u32) {
    let deadline = Instant::now() + IN_FLIGHT_TIMEOUT;
    loop {
        // The /metrics request itself is one of them.
        let running = support::metric(service.addr, "gremlins_in_flight_requests") - 1;
        if running >= i64::from(requests) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited {IN_FLIGHT_TIMEOUT:?} for {requests} requests in flight (saw {running}); log:\n{}",
            service.log_text()
        );
        std::thread::sleep(SERVICE_POLL);
    }
}

/// Waits until `/readyz` says 200; until then it must say the database is
/// unreachable.
fn wait_ready(service: &Service, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = support::get(service.addr, "/readyz");
        if ready.status == 200 {
            return;
        }
        assert_eq!(
            (ready.status, ready.json()["code"].as_str()),
            (503, Some("DRYAD-DB-5032")),
            "/readyz: {}",
            ready.text()
        );
        assert!(
            Instant::now() < deadline,
            "/readyz still 503 after {timeout:?}; log:\n{}",
            service.log_text()
        );
        std::thread::sleep(SERVICE_POLL);
    }
}

/// Sends `request` on a thread and hands back what came of it.
fn send_in_background(addr: SocketAddr, request: Vec<u8>) -> Receiver<Result<Response, String>> {
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let mut client = Client::connect(addr);
    std::thread::spawn(move || {
        let _ = done_tx.send(client.try_exchange(&request));
    });
    done
}

/// The report's entry for the cleanup hook `name`.
fn hook(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["hooks"]
        .as_array()
        .and_then(|hooks| hooks.iter().find(|hook| hook["name"] == name))
        .unwrap_or_else(|| panic!("no hook {name} in the report: {report}"))
        .clone()
}

/// Asserts a shutdown with silent dependencies stayed within its budget.
fn assert_exit_within_budget(service: &Service, took: Duration) {
    let budget = SHUTDOWN_TIMEOUT + CLEANUP_TIMEOUT + EXIT_MARGIN;
    assert!(
        took <= budget,
        "exit took {took:?} after SIGTERM; budget shutdown_timeout + cleanup_timeout + margin = \
         {budget:?}; log:\n{}",
        service.log_text()
    );
}

// ---------------------------------------------------------------------------
// PostgreSQL crashes under load.

/// Clients posting events while PostgreSQL crashes.
const CRASH_CLIENTS: usize = 4;
/// Events acknowledged before the crash.
const ACKNOWLEDGED_BEFORE_CRASH: usize = 100;
/// Longest wait for any one step of the crash test (events before the
/// crash, the first 503 after it).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// 503s the clients get before PostgreSQL is restarted.
const OUTAGE_503S: usize = 20;
/// How soon after PostgreSQL accepts connections again POSTs must succeed
/// [`RECOVERED_STREAK`] times in a row.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(10);
const RECOVERED_STREAK: usize = 50;
/// How long `/readyz` may go on saying 503 once PostgreSQL is reachable:
/// its answer is cached for 1 s, and a connect may take a while.
const READINESS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits after a 503 before its next request, so four of
/// them do not spin the two cores while the database is down (a real
/// client would honour `Retry-After`, which is too coarse to measure
/// recovery with).
const BACKOFF_AFTER_503: Duration = Duration::from_millis(50);

/// One answer a crash-test client got.
struct Answer {
    at: Instant,
    response: Response,
}

/// What a crash-test client saw besides answers.
#[derive(Debug, Default)]
struct CrashTally {
    answers: u64,
    /// Connections that failed before a response, described.
    lost: Vec<String>,
}

/// Posts events with unique keys on a keep-alive connection until `halt`
/// disconnects, sending every answer to `answers`.
fn crash_client(
    number: usize,
    addr: SocketAddr,
    answers: &Sender<Answer>,
    halt: &Receiver<()>,
) -> CrashTally {
    let mut tally = CrashTally::default();
    let mut connection: Option<Client> = None;
    for n in 0.. {
        if let Err(crossbeam_channel::TryRecvError::Disconnected) = halt.try_recv() {
            return tally;
        }
        let key = format!("crash-{number}-{n}");
        let body = event("crash", serde_json::json!({ "client": number, "n": n }));
        let client = match connection.as_mut() {
            Some(client) => client,
            None => match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => connection.insert(Client::from_stream(stream)),
                Err(error) => {
                    tally.lost.push(format!("{key}: connect failed: {error}"));
                    return tally;
                }
            },
        };
        let outcome = client.try_exchange(&post_request(&body, &key, false));
        match outcome {
            Ok(response) => {
                tally.answers += 1;
                if response.closes() {
                    connection = None;
                }
                let unavailable = response.status == 503;
                let _ = answers.send(Answer {
                    at: Instant::now(),
                    response,
                });
                if unavailable {
                    // Returns at once when the test halts the clients.
                    let _ = halt.recv_timeout(BACKOFF_AFTER_503);
                }
            }
            Err(why) => {
                tally.lost.push(format!("{key}: {why}"));
                connection = None;
            }
        }
    }
    unreachable!("the loop returns")
}

/// Receives answers until one satisfies `wanted`, failing on any answer
/// other than a 201 or the database-unavailable 503.
fn next_answer(
    answers: &Receiver<Answer>,
    timeout: Duration,
    what: &str,
    unavailable: &mut u64,
    mut wanted: impl FnMut(&Answer) -> bool,
) -> Answer {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = match answers.recv_deadline(deadline) {
            Ok(answer) => answer,
            Err(_) => panic!("waited {timeout:?} for {what}"),
        };
        match answer.response.status {
            201 => {}
            503 => {
                assert_database_unavailable(&answer.response, "a POST while PostgreSQL is down");
                *unavailable += 1;
            }
            status => panic!(
                "a POST got {status} (only 201 or 503 expected): {}",
                answer.response.text()
            ),
        }
        if wanted(&answer) {
            return answer;
        }
    }
}

#[test]
fn postgres_crash_under_load_gets_503s_and_the_service_recovers_by_itself() {
    let _one = one_at_a_time();
    let mut pg = Postgres::start();
    let url = pg.url();
    let mut service = Service::start_with_env(
        &[],
        &[("DATABASE_URL", url.as_str()), ("DB_CONNECT_TIMEOUT", "1s")],
    );
    let addr = service.addr;

    let (answers_tx, answers) = crossbeam_channel::unbounded();
    let (halt, halt_rx) = crossbeam_channel::bounded::<()>(0);
    let (tally_tx, tallies) = crossbeam_channel::unbounded();
    for number in 0..CRASH_CLIENTS {
        let answers_tx = answers_tx.clone();
        let halt_rx = halt_rx.clone();
        let tally_tx = tally_tx.clone();
        std::thread::spawn(move || {
            let _ = tally_tx.send(crash_client(number, addr, &answers_tx, &halt_rx));
        });
    }
    drop((answers_tx, tally_tx, halt_rx));

    let mut unavailable = 0;
    for count in 1..=ACKNOWLEDGED_BEFORE_CRASH {
        next_answer(
            &answers,
            STEP_TIMEOUT,
            &format!("{count} of {ACKNOWLEDGED_BEFORE_CRASH} events acknowledged before the crash"),
            &mut unavailable,
            |answer| answer.response.status == 201,
        );
    }
    assert_eq!(unavailable, 0, "no 503 before the crash");

    let crashed = Instant::now();
    pg.crash();
    let first_503 = next_answer(
        &answers,
        STEP_TIMEOUT,
        "a 503 after PostgreSQL crashed",
        &mut unavailable,
        |answer| answer.response.status == 503,
    );
    let first_503_after = first_503.at.saturating_duration_since(crashed);
    // Let the outage last: clients go on getting 503s, and the service on
    // answering them.
    for count in 1..OUTAGE_503S {
        next_answer(
            &answers,
            STEP_TIMEOUT,
            &format!("{count} more 503s while PostgreSQL is down"),
            &mut unavailable,
            |answer| answer.response.status == 503,
        );
    }

    let health = support::get(addr, "/healthz");
    assert_eq!(
        health.status,
        200,
        "/healthz does not depend on PostgreSQL: {}",
        health.text()
    );
    let ready = support::get(addr, "/readyz");
    assert_eq!(
        ready.status,
        503,
        "/readyz while PostgreSQL is down: {}",
        ready.text()
    );
    assert_eq!(ready.json()["code"], "DRYAD-DB-5032");
    assert!(
        support::metric(addr, "gremlins_database_errors_total") >= 1,
        "database errors are counted"
    );

    let restarting = Instant::now();
    pg.restart();
    let restarted = Instant::now();
    let mut streak = 0;
    let recovered = next_answer(
        &answers,
        RECOVERY_TIMEOUT,
        &format!("{RECOVERED_STREAK} POSTs in a row to succeed after PostgreSQL restarted"),
        &mut unavailable,
        |answer| {
            let success = answer.response.status == 201 && answer.at > restarted;
            streak = if success { streak + 1 } else { 0 };
            streak == RECOVERED_STREAK
        },
    );
    let recovered_after = recovered.at.saturating_duration_since(restarted);

    drop(halt);
    let mut answered = 0;
    let mut lost = Vec::new();
    for _ in 0..CRASH_CLIENTS {
        let tally = tallies
            .recv_timeout(STEP_TIMEOUT)
            .expect("waiting for the crash-test clients to halt");
        answered += tally.answers;
        lost.extend(tally.lost);
    }
    // Check the answers the clients got after the last wait too.
    while let Ok(answer) = answers.try_recv() {
        if answer.response.status == 503 {
            assert_database_unavailable(&answer.response, "a late POST");
            unavailable += 1;
        } else {
            assert_eq!(answer.response.status, 201, "{}", answer.response.text());
        }
    }
    eprintln!(
        "postgres crash: first 503 {first_503_after:?} after the crash; {unavailable} 503s of \
         {answered} answers; postgres restart took {:?}; {RECOVERED_STREAK} 201s in a row \
         {recovered_after:?} after it accepted connections again",
        restarted.saturating_duration_since(restarting),
    );
    assert!(
        lost.is_empty(),
        "every request got an answer while PostgreSQL was down: {lost:?}"
    );
    wait_ready(&service, READINESS_TIMEOUT);

    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, EXIT_CLEAN, "log:\n{}", service.log_text());
}

// ---------------------------------------------------------------------------
// PostgreSQL restarts while the service is idle.

/// Workers of the idle-restart test; each gets a connection before the
/// restart.
const IDLE_RESTART_WORKERS: usize = 4;
/// Bursts of concurrent POSTs tried to give every worker a connection.
const WARM_UP_BURSTS: usize = 20;

/// How many connections of the service PostgreSQL lists.
fn service_backends(pg: &Postgres) -> usize {
    pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gremlins-api'")
        .parse()
        .expect("a count")
}

#[test]
fn after_postgres_restarts_while_the_service_is_idle_the_next_posts_succeed() {
    let _one = one_at_a_time();
    let mut pg = Postgres::start();
    let url = pg.url();
    let workers = IDLE_RESTART_WORKERS.to_string();
    let mut service = Service::start_with_env(
        &["--workers", workers.as_str()],
        &[("DATABASE_URL", url.as_str())],
    );
    let addr = service.addr;

    // Concurrent bursts until every worker holds a PostgreSQL connection.
    for burst in 1.. {
        let pending: Vec<_> = (0..2 * IDLE_RESTART_WORKERS)
            .map(|n| {
                let body = event("warm-up", serde_json::json!({ "n": n }));
                send_in_background(
                    addr,
                    post_request(&body, &format!("warm-{burst}-{n}"), true),
                )
            })
            .collect();
        for done in pending {
            let response = done
                .recv_timeout(STEP_TIMEOUT)
                .expect("waiting for a warm-up POST")
                .unwrap_or_else(|error| panic!("a warm-up POST got no answer: {error}"));
            created_id(&response, "a warm-up POST");
        }
        let connections = service_backends(&pg);
        if connections == IDLE_RESTART_WORKERS {
            break;
        }
        assert!(
            burst < WARM_UP_BURSTS,
            "after {burst} bursts of concurrent POSTs, {connections} of {IDLE_RESTART_WORKERS} \
             workers had a PostgreSQL connection"
        );
    }

    // A fast shutdown (it closes every connection) and a start: PostgreSQL
    // is back before the service sends it anything.
    pg.restart();
    let mut failed = Vec::new();
    for n in 0..2 * IDLE_RESTART_WORKERS {
        let response = post(
            addr,
            &event("after-restart", serde_json::json!({ "n": n })),
            &format!("after-restart-{n}"),
        );
        if response.status != 201 {
            failed.push(format!(
                "POST #{n}: {} {}",
                response.status,
                response.text()
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "PostgreSQL was back before these {} POSTs, yet {} of them failed: {failed:#?}\n\
         (each failure a worker reusing its connection from before the restart?); log:\n{}",
        2 * IDLE_RESTART_WORKERS,
        failed.len(),
        service.log_text()
    );
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, EXIT_CLEAN, "log:\n{}", service.log_text());
}

// ---------------------------------------------------------------------------
// Redis dies.

#[test]
fn with_redis_dead_reads_and_writes_still_succeed_and_cache_errors_are_counted() {
    let _one = one_at_a_time();
    let pg = postgres::shared();
    let db = pg.create_database();
    let url = pg.database_url(&db);
    let mut redis = Redis::start();
    let redis_url = redis.url();
    let mut service = Service::start_with_env(
        &[],
        &[
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", redis_url.as_str()),
        ],
    );
    let addr = service.addr;

    let first = post(addr, &event("cached", serde_json::json!({ "n": 1 })), "r-1");
    let id = created_id(&first, "a POST with Redis up");
    let mut client = Client::connect(addr);
    assert_eq!(client.get(&format!("/v1/events/{id}")).status, 200);
    assert_eq!(
        redis.cli(&["EXISTS", &format!("gremlins:event:{id}")]),
        "1",
        "the event was cached"
    );
    assert_eq!(support::metric(addr, "gremlins_cache_errors_total"), 0);

    redis.kill();
    // The same keep-alive connection, whose worker may hold a Redis
    // connection now dead, and fresh ones.
    let cached = client.get(&format!("/v1/events/{id}"));
    assert_eq!(cached.status, 200, "GET with Redis dead: {}", cached.text());
    assert_eq!(cached.json(), first.json());
    for n in 2..6 {
        let created = post(
            addr,
            &event("uncached", serde_json::json!({ "n": n })),
            &format!("r-{n}"),
        );
        let new_id = created_id(&created, "a POST with Redis dead");
        let fetched = Client::connect(addr).get(&format!("/v1/events/{new_id}"));
        assert_eq!(
            fetched.status,
            200,
            "GET with Redis dead: {}",
            fetched.text()
        );
        assert_eq!(fetched.json(), created.json());
    }
    let errors = support::metric(addr, "gremlins_cache_errors_total");
    assert!(errors >= 1, "cache errors in /metrics: {errors}");

    let (code, took) = service.terminate(EXIT_TIMEOUT);
    let report = service.report();
    eprintln!("redis dead: {errors} cache errors; exit {took:?} after SIGTERM; report {report}");
    assert_eq!(
        code,
        EXIT_CLEANUP_FAILED,
        "the request counters could not be flushed; log:\n{}",
        service.log_text()
    );
    assert_eq!(hook(&report, "flush_metrics")["outcome"], "failed");
    assert_eq!(hook(&report, "cleanup_temp_files")["outcome"], "ok");
    support::assert_nothing_lost(&report);
}

// ---------------------------------------------------------------------------
// Silent dependencies during shutdown.

#[test]
fn silent_redis_during_shutdown_does_not_delay_exit_past_the_timeouts() {
    let _one = one_at_a_time();
    let pg = postgres::shared();
    let db = pg.create_database();
    let url = pg.database_url(&db);
    let redis = Redis::start();
    let redis_url = redis.url();
    let mut service = Service::start_with_env(
        &SHORT_TIMEOUTS,
        &[
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", redis_url.as_str()),
            ("REDIS_TIMEOUT", LONGER_THAN_SHUTDOWN),
        ],
    );
    let addr = service.addr;
    let id = created_id(
        &post(addr, &event("quiet", serde_json::json!({})), "q-1"),
        "a POST with Redis up",
    );

    let _resume = ResumeRedis(&redis);
    redis.pause();
    // A read goes to the cache first, and waits there.
    let blocked = send_in_background(
        addr,
        format!("GET /v1/events/{id} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes(),
    );
    wait_in_flight(&service, 1);
    let (code, took) = service.terminate(EXIT_TIMEOUT);
    let report = service.report();
    eprintln!("silent redis: exit {took:?} after SIGTERM; report {report}");
    assert_exit_within_budget(&service, took);
    assert_eq!(
        code,
        EXIT_DRAIN_TIMED_OUT,
        "the GET waiting on Redis was abandoned; log:\n{}",
        service.log_text()
    );
    assert_eq!(report["requests_abandoned"], 1);
    assert_eq!(report["abandoned"][0]["path"], format!("/v1/events/{id}"));
    // The abandoned GET is the one request received and never answered.
    support::assert_requests_unanswered(&report, 1);
    assert_eq!(hook(&report, "flush_metrics")["outcome"], "timed_out");
    assert_eq!(
        hook(&report, "cleanup_temp_files")["outcome"],
        "ok",
        "a hanging hook leaves time for the next"
    );
    let blocked = blocked
        .recv_timeout(Duration::from_secs(5))
        .expect("the abandoned GET's connection ends with the process");
    assert!(
        blocked.is_err(),
        "the abandoned GET got no answer: {blocked:?}"
    );
}

#[test]
fn silent_postgres_during_shutdown_with_a_request_blocked_on_it_does_not_delay_exit() {
    let _one = one_at_a_time();
    let pg = Postgres::start();
    let url = pg.url();
    let mut service = Service::start_with_env(
        &SHORT_TIMEOUTS,
        &[
            ("DATABASE_URL", url.as_str()),
            ("DB_CONNECT_TIMEOUT", LONGER_THAN_SHUTDOWN),
            ("DB_STATEMENT_TIMEOUT", LONGER_THAN_SHUTDOWN),
        ],
    );
    let addr = service.addr;
    created_id(
        &post(addr, &event("warm", serde_json::json!({})), "w-1"),
        "a POST with PostgreSQL up",
    );

    let _resume = ResumePostgres(&pg);
    pg.pause();
    let blocked = send_in_background(
        addr,
        post_request(&event("stuck", serde_json::json!({})), "stuck-1", false),
    );
    wait_in_flight(&service, 1);
    let (code, took) = service.terminate(EXIT_TIMEOUT);
    let report = service.report();
    eprintln!("silent postgres: exit {took:?} after SIGTERM; report {report}");
    assert_exit_within_budget(&service, took);
    assert_eq!(
        code,
        EXIT_DRAIN_TIMED_OUT,
        "the POST waiting on PostgreSQL was abandoned; log:\n{}",
        service.log_text()
    );
    assert_eq!(report["requests_abandoned"], 1);
    assert_eq!(report["abandoned"][0]["method"], "POST");
    assert_eq!(report["abandoned"][0]["path"], "/v1/events");
    assert_eq!(hook(&report, "cleanup_temp_files")["outcome"], "ok");
    let blocked = blocked
        .recv_timeout(Duration::from_secs(5))
        .expect("the abandoned POST's connection ends with the process");
    assert!(
        blocked.is_err(),
        "the abandoned POST got no answer: {blocked:?}"
    );
}

// ---------------------------------------------------------------------------
// Readiness against a silent PostgreSQL.

/// The database connect timeout of the readiness test, as a flag value and
/// as a duration: also the longest a readiness check waits.
const PROBE_CONNECT_TIMEOUT: &str = "1s";
const PROBE_CONNECT: Duration = Duration::from_secs(1);
/// What a `/readyz` may take beyond the connect timeout: a request's own
/// round trip on a machine shared with other builds.
const PROBE_MARGIN: Duration = Duration::from_secs(1);
/// Concurrent `/readyz` requests, more than the service's workers.
const CONCURRENT_PROBES: usize = 4;
/// Longest `/healthz` may take while PostgreSQL is silent.
const HEALTHZ_PROMPT: Duration = Duration::from_millis(500);

/// `GET path` asking to close.
fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// One `GET path`, which must answer within `bound`; the answer and how
/// long it took.
fn get_within(
    addr: SocketAddr,
    path: &str,
    bound: Duration,
    service: &Service,
) -> (Response, Duration) {
    let started = Instant::now();
    let answer = send_in_background(addr, get_request(path))
        .recv_timeout(bound)
        .unwrap_or_else(|_| {
            panic!(
                "{path} not answered within {bound:?}; log:\n{}",
                service.log_text()
            )
        })
        .unwrap_or_else(|error| panic!("{path}: no answer: {error}"));
    (answer, started.elapsed())
}

#[test]
fn with_postgres_silent_readyz_answers_503_within_the_connect_timeout_and_healthz_stays_prompt() {
    let _one = one_at_a_time();
    let pg = Postgres::start();
    let url = pg.url();
    let mut service = Service::start_with_env(
        &["--workers", "2"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("DB_CONNECT_TIMEOUT", PROBE_CONNECT_TIMEOUT),
        ],
    );
    let addr = service.addr;
    let bound = PROBE_CONNECT + PROBE_MARGIN;
    wait_ready(&service, READINESS_TIMEOUT);

    let _resume = ResumePostgres(&pg);
    pg.pause();
    // The last result ("ready") is reused until it expires; the first check
    // after that ends in 503 within the connect timeout.
    let deadline = Instant::now() + READINESS_TIMEOUT;
    loop {
        let (ready, _) = get_within(addr, "/readyz", bound, &service);
        if ready.status == 503 {
            assert_eq!(ready.json()["code"], "DRYAD-DB-5032", "{}", ready.text());
            break;
        }
        assert_eq!(ready.status, 200, "/readyz: {}", ready.text());
        assert!(
            Instant::now() < deadline,
            "/readyz still 200 {READINESS_TIMEOUT:?} after PostgreSQL was paused"
        );
        std::thread::sleep(SERVICE_POLL);
    }

    // More probes than workers at once: at most one waits on PostgreSQL,
    // the others answer from the last result, and /healthz gets a worker.
    let probes: Vec<_> = (0..CONCURRENT_PROBES)
        .map(|_| {
            (
                Instant::now(),
                send_in_background(addr, get_request("/readyz")),
            )
        })
        .collect();
    for _ in 0..3 {
        let (health, took) = get_within(addr, "/healthz", bound, &service);
        assert_eq!(health.status, 200, "/healthz: {}", health.text());
        assert!(
            took < HEALTHZ_PROMPT,
            "/healthz took {took:?} while /readyz probes a silent PostgreSQL"
        );
    }
    for (number, (started, probe)) in probes.into_iter().enumerate() {
        let ready = probe
            .recv_timeout(bound.saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| {
                panic!(
                    "/readyz #{number} not answered within {bound:?}; log:\n{}",
                    service.log_text()
                )
            })
            .unwrap_or_else(|error| panic!("/readyz #{number}: no answer: {error}"));
        assert_eq!(
            (ready.status, ready.json()["code"].as_str()),
            (503, Some("DRYAD-DB-5032")),
            "/readyz #{number} while PostgreSQL is silent: {}",
            ready.text()
        );
    }

    pg.resume();
    wait_ready(&service, READINESS_TIMEOUT);
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, EXIT_CLEAN, "log:\n{}", service.log_text());
}

// ---------------------------------------------------------------------------
// PostgreSQL down at start.

#[test]
fn started_while_postgres_is_down_the_service_is_unready_until_postgres_starts() {
    let _one = one_at_a_time();
    let mut pg = Postgres::start();
    let url = pg.url();
    pg.stop();
    assert_eq!(
        pg.probe(Duration::from_secs(1)),
        postgres::Probe::Refused,
        "PostgreSQL is down"
    );
    let mut service = Service::start_with_env(&[], &[("DATABASE_URL", url.as_str())]);
    let addr = service.addr;

    assert_eq!(support::get(addr, "/healthz").status, 200);
    let ready = support::get(addr, "/readyz");
    assert_eq!(ready.status, 503, "/readyz: {}", ready.text());
    assert_eq!(ready.json()["code"], "DRYAD-DB-5032");
    assert_database_unavailable(
        &post(addr, &event("early", serde_json::json!({})), "early-1"),
        "a POST before PostgreSQL started",
    );

    pg.restart();
    let restarted = Instant::now();
    wait_ready(&service, READINESS_TIMEOUT);
    let ready_after = restarted.elapsed();
    let id = created_id(
        &post(addr, &event("early", serde_json::json!({})), "early-1"),
        "the same POST once PostgreSQL is up",
    );
    let fetched = Client::connect(addr).get(&format!("/v1/events/{id}"));
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    eprintln!("postgres down at start: /readyz 200 {ready_after:?} after PostgreSQL started");

    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, EXIT_CLEAN, "log:\n{}", service.log_text());
}
