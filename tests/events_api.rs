//! The events API of the reference binary, end to end: idempotent creates,
//! reads and paging, bad input, and the promise that no acknowledged write
//! is lost when the service is stopped under load.
//!
//! Every test runs the real binary against the throwaway PostgreSQL and
//! Redis of `tests/support/` (one server each, shared by this file's tests;
//! each test has its own database and its own Redis logical database, so
//! ids, cached events and counters never mix). One service runs at a time
//! (see [`one_at_a_time`]): the machine has two cores shared with other
//! builds, and the load test measures.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::postgres::{self, Postgres};
use support::redis::{self, Redis};
use support::{Client, Dial, Response, Service, dial};

/// Longest wait for a service to exit after SIGTERM when nothing blocks it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the service's PostgreSQL connections to disappear from
/// `pg_stat_activity` once it has exited.
const BACKENDS_GONE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `pg_stat_activity` is read meanwhile: the backends are the
/// postmaster's children, so their exit is no event this process can wait
/// on.
const BACKENDS_POLL: Duration = Duration::from_millis(50);
/// Every request of the load test carries this `application_name`.
const APPLICATION_NAME: &str = "gremlins-api";
/// The default `SPOOL_THRESHOLD_BYTES` and `MAX_BODY_BYTES`.
const SPOOL_THRESHOLD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The Redis hash of request counters and its field counting every request.
const COUNTERS_KEY: &str = "gremlins:requests";
const TOTAL_FIELD: &str = "total";

/// Serialises the tests of this file: one service process at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh database on the shared PostgreSQL: its name and URL.
fn fresh_database() -> (&'static Postgres, String, String) {
    let pg = postgres::shared();
    let name = pg.create_database();
    let url = pg.database_url(&name);
    (pg, name, url)
}

/// The shared Redis, with a logical database of the test's own (emptied),
/// and the URL that selects it.
fn redis_database(number: u8) -> (&'static Redis, String) {
    let redis = redis::shared();
    assert_eq!(redis.cli(&["-n", &number.to_string(), "FLUSHDB"]), "OK");
    (redis, format!("{}{number}", redis.url()))
}

/// `redis-cli -n DB ARGS...`.
fn redis_cli(redis: &Redis, number: u8, args: &[&str]) -> String {
    let mut all = vec!["-n".to_owned(), number.to_string()];
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    redis.cli(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `POST /v1/events` with `body` and, if given, an `Idempotency-Key`.
fn post_request(body: &[u8], key: Option<&str>, close: bool) -> Vec<u8> {
    let mut head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if let Some(key) = key {
        head.push_str(&format!("Idempotency-Key: {key}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// One `POST /v1/events` on a fresh connection.
fn post(addr: SocketAddr, body: &str, key: Option<&str>) -> Response {
    let mut client = Client::connect(addr);
    client.send(&post_request(body.as_bytes(), key, true));
    client.read_response()
}

/// An event body.
fn event(kind: &str, payload: serde_json::Value) -> String {
    serde_json::json!({ "type": kind, "payload": payload }).to_string()
}

/// The id of a 201 response, after checking its shape.
fn created_id(response: &Response, what: &str) -> i64 {
    assert_eq!(response.status, 201, "{what}: {}", response.text());
    let json = response.json();
    for field in ["id", "type", "payload", "received_at"] {
        assert!(json.get(field).is_some(), "{what}: no `{field}` in {json}");
    }
    json["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: `id` is not an integer: {json}"))
}

/// Asserts an error response: its status, its code, a message, and a JSON
/// body that says no more than that.
fn assert_error(response: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(
        response.status,
        status,
        "{what}: expected {status} {code}, got {}",
        response.text()
    );
    let json = response.json();
    assert_eq!(json["code"], code, "{what}: {json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: no message in {json}");
}

/// The last log line containing `needle`, whether it came before or after
/// the `listening on` line [`Service::start`] waited for.
fn logged(service: &Service, needle: &str) -> String {
    if let Some(line) = service
        .log_text()
        .lines()
        .rev()
        .find(|line| line.contains(needle))
    {
        return line.to_owned();
    }
    service.wait_for_log(needle, Duration::from_secs(10))
}

/// SIGTERM, then the exit code, which must be `expected`.
fn stop(service: &mut Service, expected: i32) {
    service.signal("TERM");
    let code = service.exit_code(EXIT_TIMEOUT);
    assert_eq!(
        code,
        expected,
        "exit code after SIGTERM; log:\n{}",
        service.log_text()
    );
}

#[test]
fn a_retried_post_with_the_same_idempotency_key_returns_the_same_event() {
    let _one = one_at_a_time();
    let (_pg, _db, url) = fresh_database();
    let (redis, redis_url) = redis_database(1);
    let mut service =
        Service::start_with_env(&[], &[("DATABASE_URL", &url), ("REDIS_URL", &redis_url)]);
    let addr = service.addr;

    let body = event("signup", serde_json::json!({ "user": 7 }));
    let first = post(addr, &body, Some("signup-7"));
    let id = created_id(&first, "the first POST");
    assert_eq!(
        first.header("Idempotency-Replayed"),
        None,
        "a first POST is no replay"
    );
    assert_eq!(first.json()["type"], "signup");
    assert_eq!(first.json()["payload"], serde_json::json!({ "user": 7 }));

    let retry = post(addr, &body, Some("signup-7"));
    assert_eq!(created_id(&retry, "the retried POST"), id);
    assert_eq!(retry.header("Idempotency-Replayed"), Some("true"));
    assert_eq!(
        retry.json(),
        first.json(),
        "a replay returns the first event, received_at included"
    );

    let other = post(
        addr,
        &event("signup", serde_json::json!({ "user": 8 })),
        Some("signup-7"),
    );
    assert_error(
        &other,
        409,
        "DRYAD-APP-4091",
        "another event under a used key",
    );

    let without_key = post(addr, &body, None);
    assert_ne!(
        created_id(&without_key, "the same event without a key"),
        id,
        "without a key, the same body is a new event"
    );

    for bad_key in ["", "has space", &"k".repeat(256)] {
        let response = post(addr, &body, Some(bad_key));
        assert_error(
            &response,
            400,
            "DRYAD-APP-4013",
            &format!("Idempotency-Key {bad_key:?}"),
        );
    }
    let longest = post(addr, &body, Some(&"k".repeat(255)));
    assert_eq!(
        longest.status,
        201,
        "a 255-character key: {}",
        longest.text()
    );

    stop(&mut service, 0);
    let stored = redis_cli(redis, 1, &["HGET", COUNTERS_KEY, "POST /v1/events 409"]);
    assert_eq!(stored, "1", "the 409 was counted in Redis at exit");
}

#[test]
fn concurrent_posts_with_one_idempotency_key_create_one_event() {
    const SENDERS: usize = 8;
    let _one = one_at_a_time();
    let (pg, db, url) = fresh_database();
    let mut service = Service::start_with_env(&[], &[("DATABASE_URL", &url)]);
    let addr = service.addr;
    // Open the schema first, so the senders race on the key, not on it.
    created_id(
        &post(addr, &event("warmup", serde_json::json!({})), None),
        "a warm-up POST",
    );

    let body = event("payment", serde_json::json!({ "amount": 10 }));
    let (start_tx, start_rx) = crossbeam_channel::bounded::<()>(0);
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    for _ in 0..SENDERS {
        let body = body.clone();
        let start_rx = start_rx.clone();
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            let mut client = Client::connect(addr);
            let request = post_request(body.as_bytes(), Some("payment-1"), true);
            // Disconnected (not a message) releases every sender at once.
            let _ = start_rx.recv();
            client.send(&request);
            let _ = done_tx.send(client.read_response());
        });
    }
    drop(start_tx);
    let mut ids = HashSet::new();
    let mut replays = 0;
    for _ in 0..SENDERS {
        let response = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("waiting for the concurrent senders' responses");
        ids.insert(created_id(&response, "a concurrent POST under one key"));
        if response.header("Idempotency-Replayed") == Some("true") {
            replays += 1;
        }
    }
    assert_eq!(ids.len(), 1, "every sender got the same event: {ids:?}");
    assert_eq!(replays, SENDERS - 1, "all but one were replays");
    assert_eq!(
        pg.psql_in(
            &db,
            "SELECT count(*) FROM events WHERE idempotency_key = 'payment-1'"
        ),
        "1"
    );
    stop(&mut service, 0);
}

#[test]
fn get_by_id_is_cached_and_a_missing_event_is_404() {
    let _one = one_at_a_time();
    let (_pg, _db, url) = fresh_database();
    let (redis, redis_url) = redis_database(2);
    let mut service =
        Service::start_with_env(&[], &[("DATABASE_URL", &url), ("REDIS_URL", &redis_url)]);
    let addr = service.addr;

    let created = post(
        addr,
        &event(
            "order",
            serde_json::json!({ "items": [1, 2, 3], "note": "ü" }),
        ),
        None,
    );
    let id = created_id(&created, "POST");
    let mut client = Client::connect(addr);
    let fetched = client.get(&format!("/v1/events/{id}"));
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    assert_eq!(fetched.json(), created.json(), "GET returns what POST did");

    let key = format!("gremlins:event:{id}");
    let cached = redis_cli(redis, 2, &["GET", &key]);
    let cached: serde_json::Value = serde_json::from_str(&cached)
        .unwrap_or_else(|error| panic!("{key} in Redis is not the event ({error}): {cached:?}"));
    assert_eq!(cached, created.json(), "{key} holds the event");
    let ttl: i64 = redis_cli(redis, 2, &["TTL", &key])
        .parse()
        .expect("TTL is a number");
    assert!(
        (1..=60).contains(&ttl),
        "{key} expires within CACHE_TTL (60 s); TTL {ttl}"
    );
    let again = client.get(&format!("/v1/events/{id}"));
    assert_eq!(again.json(), created.json(), "a cached GET is the same");

    for missing in [
        format!("/v1/events/{}", id + 1000),
        "/v1/events/0".to_owned(),
        "/v1/events/-1".to_owned(),
        "/v1/events/abc".to_owned(),
    ] {
        let response = client.get(&missing);
        assert_error(&response, 404, "DRYAD-APP-4041", &format!("GET {missing}"));
    }
    stop(&mut service, 0);
}

#[test]
fn events_page_in_id_order_with_after_and_limit() {
    let _one = one_at_a_time();
    let (_pg, _db, url) = fresh_database();
    let mut service = Service::start_with_env(&[], &[("DATABASE_URL", &url)]);
    let addr = service.addr;

    let ids: Vec<i64> = (0..5)
        .map(|n| {
            let body = event("page", serde_json::json!({ "n": n }));
            created_id(&post(addr, &body, None), "POST")
        })
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids increase: {ids:?}"
    );

    let mut client = Client::connect(addr);
    let mut page = |query: &str| {
        let response = client.get(&format!("/v1/events?{query}"));
        assert_eq!(response.status, 200, "GET ?{query}: {}", response.text());
        let json = response.json();
        let got: Vec<i64> = json["events"]
            .as_array()
            .unwrap_or_else(|| panic!("GET ?{query}: no `events` array: {json}"))
            .iter()
            .map(|event| event["id"].as_i64().expect("an event id"))
            .collect();
        (got, json["next_after"].as_i64())
    };
    assert_eq!(page("limit=2"), (ids[0..2].to_vec(), Some(ids[1])));
    assert_eq!(
        page(&format!("after={}&limit=2", ids[1])),
        (ids[2..4].to_vec(), Some(ids[3]))
    );
    assert_eq!(
        page(&format!("after={}&limit=2", ids[3])),
        (ids[4..5].to_vec(), None),
        "a short page is the last: next_after is null"
    );
    assert_eq!(page(&format!("after={}", ids[4])), (vec![], None));
    assert_eq!(
        page(""),
        (ids.clone(), None),
        "the default page holds all 5"
    );
    let first = client.get("/v1/events?limit=1");
    assert_eq!(
        first.json()["events"][0]["payload"],
        serde_json::json!({ "n": 0 }),
        "a page carries whole events"
    );

    for (query, code) in [
        ("limit=0", "DRYAD-APP-4015"),
        ("limit=1001", "DRYAD-APP-4015"),
        ("limit=x", "DRYAD-APP-4015"),
        ("after=-1", "DRYAD-APP-4014"),
        ("after=abc", "DRYAD-APP-4014"),
    ] {
        let response = client.get(&format!("/v1/events?{query}"));
        assert_error(&response, 400, code, &format!("GET ?{query}"));
    }
    stop(&mut service, 0);
}

// ---------------------------------------------------------------------------
// Bad input.

/// Writes `request` (ignoring a failed write: the server may answer and
/// close before reading it all) and reads the answer.
fn exchange_ignoring_write_errors(addr: SocketAddr, request: &[u8]) -> Response {
    let mut client = Client::connect(addr);
    let _ = client.stream.write_all(request);
    client
        .try_read_response()
        .unwrap_or_else(|error| panic!("no answer to a {}-byte request: {error}", request.len()))
}

/// A chunked `POST /v1/events` whose body is `body`, in 16 KiB chunks.
fn chunked_post(body: &[u8]) -> Vec<u8> {
    let mut request =
        b"POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for chunk in body.chunks(16 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

/// An event body of exactly `size` bytes.
fn event_of_size(size: usize) -> String {
    let empty = event("big", serde_json::json!({ "blob": "" }));
    let body = event(
        "big",
        serde_json::json!({ "blob": "x".repeat(size - empty.len()) }),
    );
    assert_eq!(body.len(), size);
    body
}

#[test]
fn bad_events_get_a_clear_4xx_and_a_big_allowed_one_is_spooled_and_stored() {
    let _one = one_at_a_time();
    let (pg, db, url) = fresh_database();
    let mut service = Service::start_with_env(&[], &[("DATABASE_URL", &url)]);
    let addr = service.addr;
    let spool_line = logged(&service, "spooling request bodies over");
    let temp_dir = std::path::PathBuf::from(
        spool_line
            .split(" to a dir under ")
            .last()
            .and_then(|rest| rest.split(", created when first needed").next())
            .expect("the temp dir in the log line"),
    );
    let in_temp_dir = || -> Vec<_> {
        std::fs::read_dir(&temp_dir)
            .expect("read the service's temp dir")
            .collect()
    };
    assert!(
        in_temp_dir().is_empty(),
        "no spool dir before a body is spooled: {:?}",
        in_temp_dir()
    );

    for (body, what) in [
        ("", "an empty body"),
        ("not json", "not JSON"),
        (r#"{"type": "a", "payload": {"#, "truncated JSON"),
        (
            r#"{"type": "a", "payload": {}} trailing"#,
            "JSON with trailing bytes",
        ),
    ] {
        let response = post(addr, body, None);
        assert_error(&response, 400, "DRYAD-APP-4012", what);
    }
    for (body, what) in [
        (r#"{"type": 5, "payload": {}}"#, "a number as type"),
        (r#"{"type": "a", "payload": [1, 2]}"#, "an array as payload"),
        (r#"{"type": "a", "payload": "text"}"#, "a string as payload"),
        (r#"{"type": "a", "payload": null}"#, "null as payload"),
        (r#"[{"type": "a", "payload": {}}]"#, "an array of events"),
        (r#"{"type": "a"}"#, "a missing payload"),
        (r#"{"payload": {}}"#, "a missing type"),
        (r#"{}"#, "an empty object"),
        (
            r#"{"type": "a", "payload": {}, "paylod": {}}"#,
            "an unknown field",
        ),
        (r#"{"type": "", "payload": {}}"#, "an empty type"),
        (r#"{"type": "   ", "payload": {}}"#, "a blank type"),
    ] {
        let response = post(addr, body, None);
        assert_error(&response, 422, "DRYAD-APP-4221", what);
    }
    assert_nul_refused(addr);
    let long_type = event(&"t".repeat(129), serde_json::json!({}));
    assert_error(
        &post(addr, &long_type, None),
        422,
        "DRYAD-APP-4221",
        "a 129-byte type",
    );

    let too_big = event_of_size(MAX_BODY_BYTES + 1);
    let declared = exchange_ignoring_write_errors(
        addr,
        &post_request(too_big.as_bytes(), Some("too-big"), true),
    );
    assert_error(
        &declared,
        413,
        "DRYAD-HTTP-4131",
        "a body over MAX_BODY_BYTES (Content-Length)",
    );
    let streamed = exchange_ignoring_write_errors(addr, &chunked_post(too_big.as_bytes()));
    assert_error(
        &streamed,
        413,
        "DRYAD-HTTP-4131",
        "a body over MAX_BODY_BYTES (chunked, read by the spool)",
    );

    let big = event_of_size(SPOOL_THRESHOLD_BYTES + 1024);
    let created = post(addr, &big, Some("big-one"));
    let id = created_id(&created, "a body over SPOOL_THRESHOLD_BYTES");
    let spool_dir = std::path::PathBuf::from(
        logged(&service, "created the spool dir")
            .split("created the spool dir ")
            .last()
            .expect("the spool dir in the log line")
            .trim(),
    );
    assert!(
        spool_dir.is_dir() && spool_dir.parent() == Some(temp_dir.as_path()),
        "the logged spool dir {} exists, under the temp dir",
        spool_dir.display()
    );
    let big_chunked = event_of_size(MAX_BODY_BYTES - 16);
    let created_chunked =
        exchange_ignoring_write_errors(addr, &chunked_post(big_chunked.as_bytes()));
    created_id(&created_chunked, "a chunked body just under MAX_BODY_BYTES");
    let fetched = Client::connect(addr).get(&format!("/v1/events/{id}"));
    assert_eq!(fetched.status, 200);
    assert_eq!(
        fetched.json()["payload"],
        serde_json::from_str::<serde_json::Value>(&big).expect("JSON")["payload"],
        "the spooled event came back whole"
    );
    let left: Vec<_> = std::fs::read_dir(&spool_dir)
        .expect("read the spool dir")
        .collect();
    assert!(
        left.is_empty(),
        "spool files are removed after their request: {left:?}"
    );
    // A spool that fails (its dir is gone) is the server's 503, with its
    // own code, and nothing is stored.
    std::fs::remove_dir(&spool_dir).expect("remove the spool dir");
    let unspooled = post(addr, &big, Some("big-unspooled"));
    assert_error(
        &unspooled,
        503,
        "DRYAD-SYS-5006",
        "a body over SPOOL_THRESHOLD_BYTES with the spool dir gone",
    );
    assert_eq!(unspooled.header("Retry-After"), None, "as before the table");
    std::fs::create_dir(&spool_dir).expect("put the spool dir back");

    assert_eq!(
        pg.psql_in(&db, "SELECT count(*) FROM events"),
        "2",
        "only the two allowed events were stored"
    );
    let metrics = Client::connect(addr).get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|line| line == "gremlins_database_errors_total 0"),
        "refused input is no database error:\n{metrics}"
    );
    support::assert_still_serving(addr);
    stop(&mut service, 0);
    assert!(
        !spool_dir.exists() && in_temp_dir().is_empty(),
        "the cleanup_temp_files hook removed {}: {:?} left",
        spool_dir.display(),
        in_temp_dir()
    );
}

// ---------------------------------------------------------------------------
// No acknowledged write lost.

/// Asserts that NUL (which PostgreSQL refuses in TEXT and JSONB) in the
/// type or anywhere in the payload is the client's error, 422, refused
/// before the store is asked.
fn assert_nul_refused(addr: SocketAddr) {
    for (body, what) in [
        (r#"{"type": "a\u0000b", "payload": {}}"#, "a NUL in type"),
        (r#"{"type": "\u0000", "payload": {}}"#, "a type that is NUL"),
        (
            r#"{"type": "a", "payload": {"text": "a\u0000b"}}"#,
            "a NUL in a payload string",
        ),
        (
            r#"{"type": "a", "payload": {"deep": [1, {"x": ["ok", "\u0000"]}]}}"#,
            "a NUL in a nested payload string",
        ),
        (
            r#"{"type": "a", "payload": {"k\u0000": 1}}"#,
            "a NUL in a payload key",
        ),
        (
            r#"{"type": "a", "payload": {"o": [{"k\u0000": null}]}}"#,
            "a NUL in a nested payload key",
        ),
    ] {
        let response = post(addr, body, Some("nul"));
        assert_error(&response, 422, "DRYAD-APP-4221", what);
        let message = response.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains("NUL"),
            "{what}: a message that names NUL: {message}"
        );
    }
}

/// Keep-alive clients posting events in a loop.
const LOAD_CLIENTS: usize = 32;
/// Events acknowledged before the signal.
const ACKNOWLEDGED_BEFORE_SIGNAL: u64 = 400;
/// Longest wait for that many.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for every client to stop at a refused connect after the
/// signal.
const CLIENTS_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts per request (the first and the retries after a connection
/// failed before its response) before a client gives up.
const MAX_ATTEMPTS: usize = 5;

/// What one load client saw.
#[derive(Debug, Default)]
struct Tally {
    /// Requests started (each with its own idempotency key).
    started: u64,
    /// Responses received, whatever their status.
    answered: u64,
    /// (idempotency key, id) of every 201.
    acknowledged: Vec<(String, i64)>,
    /// 201s that said `Idempotency-Replayed: true`.
    replayed: u64,
    /// Requests that ended at a refused connect, without a response.
    refused: u64,
    /// Attempts whose connection failed after the connect and before a
    /// complete response (each retried with the same key), described.
    lost_attempts: Vec<String>,
    /// Responses other than 201, described.
    unexpected: Vec<String>,
    /// Why the client stopped, if not at a refused connect.
    failure: Option<String>,
    /// Connections opened.
    connects: u64,
}

/// A client that posts events with unique idempotency keys on a keep-alive
/// connection, reconnects after `Connection: close`, retries a request
/// whose connection failed before its response (same key), and stops at
/// its first refused connect (or when `stop` is set).
fn load_client(
    number: usize,
    addr: SocketAddr,
    acknowledged_total: &AtomicU64,
    threshold_reached: &crossbeam_channel::Sender<()>,
    stop: &AtomicBool,
) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<Client> = None;
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            tally.failure = Some("stopped by the test".into());
            return tally;
        }
        let key = format!("load-{number}-{n}");
        let body = event("load", serde_json::json!({ "client": number, "n": n }));
        let request = post_request(body.as_bytes(), Some(&key), false);
        tally.started += 1;
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            if attempts > MAX_ATTEMPTS {
                tally.failure = Some(format!("{key}: no response in {MAX_ATTEMPTS} attempts"));
                return tally;
            }
            let client = match connection.as_mut() {
                Some(client) => client,
                None => match dial(addr) {
                    Dial::Accepted(stream) => {
                        tally.connects += 1;
                        connection.insert(Client::from_stream(stream))
                    }
                    Dial::Refused => {
                        tally.refused += 1;
                        return tally;
                    }
                    Dial::Failed(error) => {
                        tally.failure = Some(format!("{key}: connect failed: {error}"));
                        return tally;
                    }
                },
            };
            match client.try_exchange(&request) {
                Ok(response) => break response,
                Err(why) => {
                    tally
                        .lost_attempts
                        .push(format!("{key} attempt {attempts}: {why}"));
                    connection = None;
                }
            }
        };
        tally.answered += 1;
        if response.closes() {
            connection = None;
        }
        if response.status == 201 {
            let id = response.json()["id"].as_i64().expect("an id in a 201");
            tally.acknowledged.push((key, id));
            if response.header("Idempotency-Replayed") == Some("true") {
                tally.replayed += 1;
            }
            if acknowledged_total.fetch_add(1, Ordering::Relaxed) + 1 == ACKNOWLEDGED_BEFORE_SIGNAL
            {
                let _ = threshold_reached.send(());
            }
        } else {
            tally
                .unexpected
                .push(format!("{key}: {} {}", response.status, response.text()));
        }
    }
    unreachable!("the loop returns")
}

/// Sets a flag when dropped, so load threads stop if the test fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How many of the service's connections to `database` PostgreSQL lists.
fn service_backends(pg: &Postgres, database: &str) -> u64 {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = '{APPLICATION_NAME}' AND datname = '{database}'"
    ))
    .parse()
    .expect("a count")
}

#[test]
fn sigterm_under_write_load_loses_no_acknowledged_event_and_leaves_nothing_behind() {
    let _one = one_at_a_time();
    let (pg, db, url) = fresh_database();
    let (redis, redis_url) = redis_database(3);
    let mut service =
        Service::start_with_env(&[], &[("DATABASE_URL", &url), ("REDIS_URL", &redis_url)]);
    let addr = service.addr;

    let halt = Arc::new(AtomicBool::new(false));
    let _halt_on_drop = StopOnDrop(Arc::clone(&halt));
    let acknowledged_total = Arc::new(AtomicU64::new(0));
    let (threshold_tx, threshold_rx) = crossbeam_channel::bounded(1);
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let load_started = Instant::now();
    for number in 0..LOAD_CLIENTS {
        let acknowledged_total = Arc::clone(&acknowledged_total);
        let threshold_tx = threshold_tx.clone();
        let done_tx = done_tx.clone();
        let halt = Arc::clone(&halt);
        std::thread::spawn(move || {
            let tally = load_client(number, addr, &acknowledged_total, &threshold_tx, &halt);
            let _ = done_tx.send(tally);
        });
    }
    drop(done_tx);
    threshold_rx
        .recv_timeout(LOAD_TIMEOUT)
        .unwrap_or_else(|_| {
            panic!(
                "waiting for {ACKNOWLEDGED_BEFORE_SIGNAL} acknowledged events; got {} in {LOAD_TIMEOUT:?}; log:\n{}",
                acknowledged_total.load(Ordering::Relaxed),
                service.log_text()
            )
        });
    let load_time = load_started.elapsed();
    let at_threshold = acknowledged_total.load(Ordering::Relaxed);
    let backends_under_load = service_backends(pg, &db);
    let before_signal = acknowledged_total.load(Ordering::Relaxed);
    let signalled = Instant::now();
    service.signal("TERM");

    let code = service.exit_code(EXIT_TIMEOUT);
    let exit_took = signalled.elapsed();
    assert_eq!(
        code,
        0,
        "exit code after SIGTERM under load; log:\n{}",
        service.log_text()
    );

    let mut tallies = Vec::new();
    for _ in 0..LOAD_CLIENTS {
        tallies.push(done_rx.recv_timeout(CLIENTS_TIMEOUT).unwrap_or_else(|_| {
            panic!("waiting for every load client to stop at a refused connect")
        }));
    }
    let sum = |count: fn(&Tally) -> u64| tallies.iter().map(count).sum::<u64>();
    let started = sum(|tally| tally.started);
    let answered = sum(|tally| tally.answered);
    let refused = sum(|tally| tally.refused);
    let replayed = sum(|tally| tally.replayed);
    let connects = sum(|tally| tally.connects);
    let acknowledged: Vec<&(String, i64)> = tallies
        .iter()
        .flat_map(|tally| tally.acknowledged.iter())
        .collect();
    let lost: Vec<&String> = tallies
        .iter()
        .flat_map(|tally| tally.lost_attempts.iter())
        .collect();
    let unexpected: Vec<&String> = tallies
        .iter()
        .flat_map(|tally| tally.unexpected.iter())
        .collect();
    let failures: Vec<&String> = tallies
        .iter()
        .filter_map(|tally| tally.failure.as_ref())
        .collect();
    let report = service.report();
    eprintln!(
        "no-loss load: {at_threshold} events acknowledged in {load_time:?} ({:.0} POST/s), \
         {before_signal} before SIGTERM; {answered} answered in all, {replayed} replayed, {refused} refused \
         connects, {} lost attempts, {connects} connections; {backends_under_load} PostgreSQL \
         backends under load; exit {exit_took:?} after SIGTERM; phases {}",
        at_threshold as f64 / load_time.as_secs_f64(),
        lost.len(),
        report["phases"]
    );

    assert!(failures.is_empty(), "load clients failed: {failures:?}");
    assert!(
        unexpected.is_empty(),
        "every answer was a 201: {unexpected:?}"
    );
    assert_eq!(
        refused, LOAD_CLIENTS as u64,
        "each client ended at one refused connect"
    );
    assert_eq!(
        started,
        answered + refused,
        "every request got a response or a refused connect"
    );
    assert!(
        lost.is_empty(),
        "no request lost its connection before its response: {lost:?}; log:\n{}",
        service.log_text()
    );
    assert_eq!(report["outcome"], "clean");
    assert_eq!(report["requests_abandoned"], 0);
    support::assert_nothing_lost(&report);
    for hook in ["flush_metrics", "cleanup_temp_files"] {
        let outcome = report["hooks"]
            .as_array()
            .expect("hooks in the report")
            .iter()
            .find(|entry| entry["name"] == hook)
            .unwrap_or_else(|| panic!("no {hook} in the report: {report}"));
        assert_eq!(outcome["outcome"], "ok", "{hook}: {outcome}");
    }

    // Every acknowledged event is in PostgreSQL, under its key, once.
    let rows = pg.psql_in(&db, "SELECT idempotency_key, id FROM events");
    let stored: HashMap<&str, i64> = rows
        .lines()
        .map(|line| {
            let (key, id) = line.split_once('|').expect("key|id");
            (key, id.parse().expect("an id"))
        })
        .collect();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|(key, id)| stored.get(key.as_str()) != Some(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events are not in PostgreSQL under their key: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        pg.psql_in(
            &db,
            "SELECT count(*) FROM (SELECT idempotency_key FROM events \
             GROUP BY idempotency_key HAVING count(*) > 1) AS twice"
        ),
        "0",
        "no idempotency key has two rows"
    );
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "rows without an acknowledgement (committed, answer lost)"
    );

    // No connection left behind in PostgreSQL.
    assert!(
        backends_under_load > 0,
        "under load, pg_stat_activity listed the service's connections \
         (application_name {APPLICATION_NAME:?})"
    );
    let deadline = Instant::now() + BACKENDS_GONE_TIMEOUT;
    loop {
        let left = service_backends(pg, &db);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} of the service's connections still in pg_stat_activity \
             {BACKENDS_GONE_TIMEOUT:?} after it exited"
        );
        std::thread::sleep(BACKENDS_POLL);
    }

    // Every answered request was counted in Redis, by the exit flush at the
    // latest.
    let total = redis_cli(redis, 3, &["HGET", COUNTERS_KEY, TOTAL_FIELD]);
    assert_eq!(
        total.parse::<u64>().ok(),
        Some(answered),
        "Redis {COUNTERS_KEY} {TOTAL_FIELD} ({total:?}) counts every request answered"
    );
    let created = redis_cli(redis, 3, &["HGET", COUNTERS_KEY, "POST /v1/events 201"]);
    assert_eq!(created.parse::<u64>().ok(), Some(answered));
}

// ---------------------------------------------------------------------------
// Without PostgreSQL.

#[test]
fn without_database_url_events_live_in_memory_and_the_log_says_so() {
    let _one = one_at_a_time();
    let mut service = Service::start(&[]);
    let addr = service.addr;
    let warning = logged(&service, "data will not outlive the process");
    assert!(warning.contains("in-memory"), "{warning}");

    let body = event("memo", serde_json::json!({ "text": "hello" }));
    let created = post(addr, &body, Some("memo-1"));
    let id = created_id(&created, "POST to the in-memory store");
    let fetched = Client::connect(addr).get(&format!("/v1/events/{id}"));
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    assert_eq!(fetched.json(), created.json());
    let retry = post(addr, &body, Some("memo-1"));
    assert_eq!(created_id(&retry, "the retry"), id);
    assert_eq!(retry.header("Idempotency-Replayed"), Some("true"));
    assert_error(
        &post(addr, &event("memo", serde_json::json!({})), Some("memo-1")),
        409,
        "DRYAD-APP-4091",
        "another event under a used key",
    );
    assert_nul_refused(addr);
    let listed = Client::connect(addr).get("/v1/events");
    assert_eq!(listed.json()["events"], serde_json::json!([created.json()]));
    assert_error(
        &Client::connect(addr).get(&format!("/v1/events/{}", id + 1)),
        404,
        "DRYAD-APP-4041",
        "a missing event",
    );
    let ready = Client::connect(addr).get("/readyz");
    assert_eq!(
        ready.status,
        200,
        "no database to wait for: {}",
        ready.text()
    );
    stop(&mut service, 0);
}
