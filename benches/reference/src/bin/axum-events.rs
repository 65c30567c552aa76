//! gremlins-api's `POST /v1/events` on axum, tokio-postgres and
//! deadpool-postgres: the async peer `benches/post_events.sh` measures
//! gremlins-api against.
//!
//! `axum-events ADDR DATABASE_URL --pool N`: a tokio multi-thread runtime
//! (one worker per core) and a pool of at most N PostgreSQL connections,
//! opened on demand (gremlins-api opens one per worker thread, on demand).
//! It does the same work per event as gremlins-api's PostgreSQL store
//! (`src/app/store/postgres.rs`, `src/app/events.rs`):
//!
//! 1. At start, the same schema under the same advisory lock, in one
//!    transaction (gremlins-api does it at its first connection), so
//!    either server can run against a fresh database.
//! 2. The same session: `statement_timeout` 5 s (gremlins-api's default),
//!    TCP keepalives, prepared statements (cached per connection).
//! 3. The same validation: `Idempotency-Key` of 1 to 255 visible ASCII
//!    characters, the body parsed with serde_json into `{type, payload}`
//!    with unknown fields refused, `type` non-empty and at most 128 bytes,
//!    no NUL anywhere; bodies above 1 MiB refused (`max_body_bytes`).
//! 4. The same SQL: `INSERT .. ON CONFLICT (idempotency_key) DO NOTHING
//!    RETURNING ..`, and when no row comes back the first event by key:
//!    201 with the stored event as JSON, 201 with `Idempotency-Replayed:
//!    true` for a replay of the same event, 409 for a different one, and
//!    gremlins-api's error body (`{"error", "message", "code"}`) and codes.
//!
//! It also answers `GET /` and `GET /healthz` with `ok`, for readiness
//! probes. On SIGTERM or SIGINT it shuts down gracefully, as axum-ok does.
//! What it does not do: gremlins-api's metrics, spooling of large bodies
//! to disk, and the retry of a keyed insert whose reused connection turns
//! out to be closed.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use tokio_postgres::NoTls;

/// Serialises concurrent migrations: gremlins-api's lock key, so the two
/// never create the schema at the same time either.
const MIGRATION_LOCK: i64 = 0x6772_656d_6c69;

/// gremlins-api's schema, verbatim.
const MIGRATION: &str = "
    CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY,
        type TEXT NOT NULL,
        payload JSONB NOT NULL,
        idempotency_key TEXT UNIQUE,
        received_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )";

/// The columns every query returns, in [`Event::from_row`] order:
/// gremlins-api's `COLUMNS`.
macro_rules! columns {
    () => {
        "id, type, payload, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    };
}

/// gremlins-api's insert statement.
const INSERT: &str = concat!(
    "INSERT INTO events (type, payload, idempotency_key) VALUES ($1, $2, $3) \
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
    columns!()
);

/// gremlins-api's lookup of the first event with a key.
const BY_KEY: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM events WHERE idempotency_key = $1"
);

/// gremlins-api's limits and session settings.
const MAX_TYPE_LEN: usize = 128;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const MAX_BODY_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);

/// `axum-events ADDR DATABASE_URL --pool N`
#[derive(Debug, Parser)]
#[command(name = "axum-events")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0: any free port;
    /// the one taken is printed as `listening on ADDR`).
    addr: String,
    /// PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/postgres.
    database_url: String,
    /// Most PostgreSQL connections open at once, each opened when a
    /// request finds none idle; gremlins-api's equivalent is `--workers`.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pool: u16,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("axum-events: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the pool, creates the schema, listens, and serves until SIGTERM
/// or SIGINT; in-flight requests finish before it returns.
async fn run(args: Args) -> Result<(), String> {
    let mut config = args
        .database_url
        .parse::<tokio_postgres::Config>()
        .map_err(|err| format!("invalid DATABASE_URL: {err}"))?;
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(KEEPALIVES_IDLE)
        .application_name("axum-events")
        .options(format!(
            "-c statement_timeout={}",
            STATEMENT_TIMEOUT.as_millis()
        ));
    let manager = Manager::from_config(
        config,
        NoTls,
        // Like gremlins-api, a connection is reused unless the driver knows
        // it closed; no query on checkout.
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(usize::from(args.pool))
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|err| format!("cannot build the pool: {err}"))?;
    migrate(&pool).await?;

    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", args.addr))?;
    let bound = listener
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/events", post(create))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(pool);
    eprintln!("listening on {bound}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|err| format!("server error: {err}"))
}

/// gremlins-api's migration: the advisory lock and the idempotent DDL in
/// one transaction.
async fn migrate(pool: &Pool) -> Result<(), String> {
    let mut client = pool
        .get()
        .await
        .map_err(|err| format!("cannot connect to PostgreSQL: {err}"))?;
    let transaction = client.transaction().await.map_err(|err| describe(&err))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|err| format!("creating the schema failed: {}", describe(&err)))?;
    transaction
        .batch_execute(MIGRATION)
        .await
        .map_err(|err| format!("creating the schema failed: {}", describe(&err)))?;
    transaction.commit().await.map_err(|err| describe(&err))?;
    eprintln!("axum-events: PostgreSQL schema is in place");
    Ok(())
}

/// The body of `POST /v1/events`, as gremlins-api reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEvent {
    #[serde(rename = "type")]
    kind: String,
    payload: serde_json::Map<String, serde_json::Value>,
}

/// A stored event, serialised as gremlins-api answers it.
#[derive(Debug, Serialize)]
struct Event {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    payload: serde_json::Value,
    received_at: String,
}

impl Event {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            kind: row.try_get(1)?,
            payload: row.try_get(2)?,
            received_at: row.try_get(3)?,
        })
    }
}

/// What an insert did.
enum Inserted {
    Created(Event),
    Replayed(Event),
    KeyConflict,
}

/// The error answers this server sends: gremlins-api's `WireError` rows
/// for `POST /v1/events`.
#[derive(Debug, Clone, Copy)]
enum WireError {
    /// 400: `Idempotency-Key` is not 1 to 255 visible ASCII characters.
    BadIdempotencyKey,
    /// 400: the body is not valid JSON.
    InvalidJson,
    /// 409: the key was used for a different event.
    IdempotencyKeyConflict,
    /// 422: valid JSON, not a valid event.
    InvalidEvent,
    /// 503, `Retry-After: 1`: the database failed; nothing was stored.
    DatabaseUnavailable,
}

impl WireError {
    /// Status, stable code and default message.
    fn row(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadIdempotencyKey => (
                StatusCode::BAD_REQUEST,
                "DRYAD-APP-4013",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ),
            Self::InvalidJson => (
                StatusCode::BAD_REQUEST,
                "DRYAD-APP-4012",
                "body is not valid JSON",
            ),
            Self::IdempotencyKeyConflict => (
                StatusCode::CONFLICT,
                "DRYAD-APP-4091",
                "this Idempotency-Key was used for a different event",
            ),
            Self::InvalidEvent => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "DRYAD-APP-4221",
                "invalid event",
            ),
            Self::DatabaseUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "DRYAD-DB-5031",
                "the database is unavailable; retry later (with the same Idempotency-Key)",
            ),
        }
    }

    fn response(self) -> Response {
        self.response_with_message(self.row().2)
    }

    fn response_with_message(self, message: &str) -> Response {
        let (status, code, _) = self.row();
        let body = serde_json::json!({
            "error": reason(status),
            "message": message,
            "code": code,
        });
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self, Self::DatabaseUnavailable) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// gremlins-api's reason phrases, which follow RFC 9110 (422 is
/// "Unprocessable Content", where the `http` crate still says "Entity").
fn reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNPROCESSABLE_ENTITY => "Unprocessable Content",
        other => other.canonical_reason().unwrap_or(""),
    }
}

/// `POST /v1/events`: 201 with the stored event once it is committed.
async fn create(State(pool): State<Pool>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match headers
        .get("idempotency-key")
        .map(|value| value.to_str().map(str::trim))
    {
        None => None,
        Some(Ok(key))
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && key.bytes().all(|byte| byte.is_ascii_graphic()) =>
        {
            Some(key.to_owned())
        }
        Some(_) => return WireError::BadIdempotencyKey.response(),
    };
    let parsed: CreateEvent = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(err) if err.is_data() => {
            return WireError::InvalidEvent.response_with_message(&format!("invalid event: {err}"));
        }
        Err(err) => {
            return WireError::InvalidJson
                .response_with_message(&format!("body is not valid JSON: {err}"));
        }
    };
    if parsed.kind.trim().is_empty() || parsed.kind.len() > MAX_TYPE_LEN {
        return WireError::InvalidEvent.response_with_message(&format!(
            "`type` must be a non-empty string of at most {MAX_TYPE_LEN} bytes"
        ));
    }
    if parsed.kind.contains('\0') {
        return WireError::InvalidEvent
            .response_with_message("`type` must not contain NUL (\\u0000)");
    }
    if parsed
        .payload
        .iter()
        .any(|(key, value)| key.contains('\0') || value_has_nul(value))
    {
        return WireError::InvalidEvent.response_with_message(
            "`payload` must not contain NUL (\\u0000) in any key or string",
        );
    }
    let payload = serde_json::Value::Object(parsed.payload);
    match insert(&pool, &parsed.kind, &payload, key.as_deref()).await {
        Ok(Inserted::Created(event)) => (StatusCode::CREATED, axum::Json(event)).into_response(),
        Ok(Inserted::Replayed(first)) => (
            StatusCode::CREATED,
            [("idempotency-replayed", "true")],
            axum::Json(first),
        )
            .into_response(),
        Ok(Inserted::KeyConflict) => WireError::IdempotencyKeyConflict.response(),
        Err(message) => {
            eprintln!("axum-events: {message}");
            WireError::DatabaseUnavailable.response()
        }
    }
}

/// gremlins-api's `PostgresStore::insert`: the keyed insert, and the first
/// event by key when it conflicted.
async fn insert(
    pool: &Pool,
    kind: &str,
    payload: &serde_json::Value,
    key: Option<&str>,
) -> Result<Inserted, String> {
    let client = pool
        .get()
        .await
        .map_err(|err| format!("no PostgreSQL connection: {err}"))?;
    let statement = client
        .prepare_cached(INSERT)
        .await
        .map_err(|err| describe(&err))?;
    let inserted = client
        .query_opt(&statement, &[&kind, payload, &key])
        .await
        .map_err(|err| describe(&err))?;
    if let Some(row) = inserted {
        return Event::from_row(&row)
            .map(Inserted::Created)
            .map_err(|err| describe(&err));
    }
    // The key exists (a conflict is the only way no row comes back).
    let statement = client
        .prepare_cached(BY_KEY)
        .await
        .map_err(|err| describe(&err))?;
    let row = client
        .query_one(&statement, &[&key])
        .await
        .map_err(|err| describe(&err))?;
    let first = Event::from_row(&row).map_err(|err| describe(&err))?;
    Ok(if first.kind == kind && first.payload == *payload {
        Inserted::Replayed(first)
    } else {
        Inserted::KeyConflict
    })
}

/// Whether a JSON value holds NUL in any string or key, at any depth.
fn value_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(value_has_nul),
        serde_json::Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || value_has_nul(value)),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            false
        }
    }
}

/// The error and its causes: the driver's own message for a server error
/// is only "db error", with the server's words in the source.
fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("axum-events: cannot install signal handlers; graceful shutdown disabled");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => eprintln!("axum-events: SIGTERM, draining"),
        _ = int.recv() => eprintln!("axum-events: SIGINT, draining"),
    }
}
