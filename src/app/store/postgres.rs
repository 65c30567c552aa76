//! The PostgreSQL store: one connection per worker, opened lazily within a
//! bounded time, `statement_timeout` on the session, reconnected when it
//! breaks, and the schema created at first connect.

use std::cell::RefCell;
use std::time::Duration;

use postgres::{Client, NoTls, Row, Statement};

use super::event::{Event, Inserted, NewEvent, Store, StoreError};
use crate::app::clients::{self, Owned, PendingConnect};
use crate::sync;

/// Serialises concurrent migrations (any constant unique to this service).
const MIGRATION_LOCK: i64 = 0x6772_656d_6c69;

/// The schema, idempotent.
const MIGRATION: &str = "
    CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY,
        type TEXT NOT NULL,
        payload JSONB NOT NULL,
        idempotency_key TEXT UNIQUE,
        received_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )";

/// The columns every query returns, in [`event_from_row`] order.
const COLUMNS: &str = "id, type, payload, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

/// A worker's connection and its prepared statements.
pub(crate) struct PostgresConnection {
    client: Client,
    insert: Statement,
    by_key: Statement,
    by_id: Statement,
    page: Statement,
}

impl std::fmt::Debug for PostgresConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConnection")
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

/// A worker's PostgreSQL connection, and its connect attempt still
/// running, if any.
struct WorkerConnection {
    open: Option<Owned<PostgresConnection>>,
    pending: Option<Owned<PendingConnect<PostgresConnection>>>,
}

thread_local! {
    static WORKER_CONNECTION: RefCell<WorkerConnection> = const {
        RefCell::new(WorkerConnection { open: None, pending: None })
    };
}

/// Closes this worker's PostgreSQL connection (the driver sends
/// Terminate). Must run before the thread's locals are destroyed: the
/// driver needs its runtime's own thread-local to close cleanly.
pub(crate) fn close_worker_connection() {
    WORKER_CONNECTION.with_borrow_mut(|worker| {
        worker.pending = None;
        worker.open = None;
    });
}

/// Events in PostgreSQL.
#[derive(Debug)]
pub(crate) struct PostgresStore {
    owner: u64,
    config: Result<postgres::Config, String>,
    connect_timeout: Duration,
    /// Whether this process created the schema; the lock is held while one
    /// connect does it, so concurrent first connects do not all try.
    migrated: std::sync::Arc<std::sync::Mutex<bool>>,
    /// The readiness probe still running on its own thread after a
    /// [`Store::check`] gave up waiting on it. Written and read by
    /// `check` only, which holds the lock for the whole check (at most
    /// `connect_timeout`): the lock is what keeps at most one probe thread
    /// in flight, and the app calls `check` from one worker at a time, so
    /// nobody queues on it.
    probe_pending: std::sync::Mutex<Option<PendingProbe>>,
}

/// A readiness probe still running on its own thread.
type PendingProbe = crossbeam_channel::Receiver<Result<(), String>>;

impl PostgresStore {
    /// A store for `url`; nothing is connected until a worker needs it.
    pub(crate) fn new(url: &str, connect_timeout: Duration, statement_timeout: Duration) -> Self {
        let config = url
            .parse::<postgres::Config>()
            .map(|mut config| {
                config
                    .connect_timeout(connect_timeout)
                    .keepalives(true)
                    .keepalives_idle(Duration::from_secs(30))
                    .application_name("gremlins-api")
                    .options(&format!(
                        "-c statement_timeout={}",
                        statement_timeout.as_millis()
                    ));
                config
            })
            .map_err(|error| format!("invalid DATABASE_URL: {error}"));
        if let Err(message) = &config {
            log::error!("{message}");
        }
        Self {
            owner: clients::next_owner_id(),
            config,
            connect_timeout,
            migrated: std::sync::Arc::new(std::sync::Mutex::new(false)),
            probe_pending: std::sync::Mutex::new(None),
        }
    }

    /// Runs `query` on this worker's connection, opening it first if
    /// needed. A connection that broke is dropped, so the next call opens
    /// a new one.
    ///
    /// A connection kept from an earlier request may have been closed by
    /// the server meanwhile (a restart), which the driver only learns by
    /// using it. When `retry_safe` (the query has no effect, or the same
    /// effect if run twice), a query that fails that way on a reused
    /// connection is run once more on a new one.
    fn with_connection<R>(
        &self,
        retry_safe: bool,
        mut query: impl FnMut(&mut PostgresConnection) -> Result<R, postgres::Error>,
    ) -> Result<R, StoreError> {
        WORKER_CONNECTION.with_borrow_mut(|worker| {
            let mut retried = false;
            loop {
                if worker.open.as_ref().is_some_and(|owned| {
                    owned.owner != self.owner || owned.connection.client.is_closed()
                }) {
                    worker.open = None;
                }
                let reused = worker.open.is_some();
                let owned = match worker.open.take() {
                    Some(owned) => owned,
                    None => Owned {
                        owner: self.owner,
                        connection: self.connect(&mut worker.pending)?,
                    },
                };
                let owned = worker.open.insert(owned);
                let error = match query(&mut owned.connection) {
                    Ok(result) => return Ok(result),
                    Err(error) => error,
                };
                let connection_lost =
                    owned.connection.client.is_closed() || error.as_db_error().is_none();
                if connection_lost {
                    worker.open = None;
                }
                if connection_lost && reused && retry_safe && !retried {
                    log::warn!(
                        "PostgreSQL connection lost ({}); retrying on a new one",
                        describe(&error)
                    );
                    retried = true;
                    continue;
                }
                log::error!("PostgreSQL query failed: {}", describe(&error));
                return Err(StoreError::Unavailable(describe(&error)));
            }
        })
    }

    /// Opens a connection on a helper thread and waits at most
    /// `connect_timeout`: the driver's own connect timeout does not cover a
    /// server that accepts TCP and never answers. An attempt that is still
    /// running is waited on again by the next call, so a worker has at most
    /// one.
    fn connect(
        &self,
        pending: &mut Option<Owned<PendingConnect<PostgresConnection>>>,
    ) -> Result<PostgresConnection, StoreError> {
        let config = self
            .config
            .as_ref()
            .map_err(|message| StoreError::Unavailable(message.clone()))?;
        let attempt = match pending.take() {
            Some(attempt) if attempt.owner == self.owner => attempt.connection,
            _ => {
                let (done_tx, done_rx) = crossbeam_channel::bounded(1);
                let config = config.clone();
                let migrated = std::sync::Arc::clone(&self.migrated);
                std::thread::Builder::new()
                    .name("postgres-connect".into())
                    .spawn(move || {
                        let _ = done_tx.send(open_connection(&config, &migrated));
                    })
                    .map_err(|error| StoreError::Unavailable(error.to_string()))?;
                done_rx
            }
        };
        match attempt.recv_timeout(self.connect_timeout) {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(message)) => {
                log::error!("PostgreSQL connect failed: {message}");
                Err(StoreError::Unavailable(message))
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                *pending = Some(Owned {
                    owner: self.owner,
                    connection: attempt,
                });
                log::error!(
                    "PostgreSQL connect timed out after {} ms",
                    self.connect_timeout.as_millis()
                );
                Err(StoreError::Unavailable("connect timed out".into()))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(StoreError::Unavailable("connect attempt failed".into()))
            }
        }
    }
}

/// Connects, creates the schema if this process has not yet, and prepares
/// the statements.
fn open_connection(
    config: &postgres::Config,
    migrated: &std::sync::Mutex<bool>,
) -> Result<PostgresConnection, String> {
    let mut client = config.connect(NoTls).map_err(|error| describe(&error))?;
    let mut done = sync::lock(migrated);
    if !*done {
        let mut transaction = client.transaction().map_err(|error| describe(&error))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .and_then(|_| transaction.batch_execute(MIGRATION))
            .map_err(|error| format!("creating the schema failed: {}", describe(&error)))?;
        transaction.commit().map_err(|error| describe(&error))?;
        *done = true;
        log::info!("PostgreSQL schema is in place");
    }
    drop(done);
    let prepare =
        |client: &mut Client, sql: &str| client.prepare(sql).map_err(|error| error.to_string());
    Ok(PostgresConnection {
        insert: prepare(
            &mut client,
            &format!(
                "INSERT INTO events (type, payload, idempotency_key) VALUES ($1, $2, $3) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
            ),
        )?,
        by_key: prepare(
            &mut client,
            &format!("SELECT {COLUMNS} FROM events WHERE idempotency_key = $1"),
        )?,
        by_id: prepare(
            &mut client,
            &format!("SELECT {COLUMNS} FROM events WHERE id = $1"),
        )?,
        page: prepare(
            &mut client,
            &format!("SELECT {COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2"),
        )?,
        client,
    })
}

/// The readiness probe: a connection of its own and `SELECT 1`, closed
/// when it returns.
fn run_probe(config: &postgres::Config) -> Result<(), String> {
    let mut client = config.connect(NoTls).map_err(|error| describe(&error))?;
    client
        .simple_query("SELECT 1")
        .map(|_| ())
        .map_err(|error| describe(&error))
}

/// The error and its causes: the driver's own message for a server error is
/// only "db error", with the server's words in the source.
fn describe(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn event_from_row(row: &Row) -> Result<Event, postgres::Error> {
    Ok(Event {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        payload: row.try_get(2)?,
        received_at: row.try_get(3)?,
    })
}

impl Store for PostgresStore {
    fn insert(
        &self,
        event: &NewEvent,
        idempotency_key: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        // With a key, running the insert twice has the effect of once.
        self.with_connection(idempotency_key.is_some(), |connection| {
            let inserted = connection.client.query_opt(
                &connection.insert,
                &[&event.kind, &event.payload, &idempotency_key],
            )?;
            if let Some(row) = inserted {
                return Ok(Inserted::Created(event_from_row(&row)?));
            }
            // The key exists (a conflict is the only way no row comes back).
            let first = event_from_row(
                &connection
                    .client
                    .query_one(&connection.by_key, &[&idempotency_key])?,
            )?;
            Ok(
                if first.kind == event.kind && first.payload == event.payload {
                    Inserted::Replayed(first)
                } else {
                    Inserted::KeyConflict
                },
            )
        })
    }

    fn get(&self, id: i64) -> Result<Option<Event>, StoreError> {
        self.with_connection(true, |connection| {
            connection
                .client
                .query_opt(&connection.by_id, &[&id])?
                .as_ref()
                .map(event_from_row)
                .transpose()
        })
    }

    fn list(&self, after: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.with_connection(true, |connection| {
            let limit = i64::from(limit);
            connection
                .client
                .query(&connection.page, &[&after, &limit])?
                .iter()
                .map(event_from_row)
                .collect()
        })
    }

    /// Connects and runs `SELECT 1` on a probe thread of its own, off
    /// every worker's connection, and waits at most `connect_timeout`: a
    /// server that accepts TCP and never answers (stopped, or out of
    /// backends) is not ready, and does not hold the caller longer. A probe
    /// that is still running is waited on again by the next check instead
    /// of starting another, so at most one probe thread is in flight; it
    /// ends when the server answers or the connection breaks.
    fn check(&self) -> Result<(), StoreError> {
        let config = self
            .config
            .as_ref()
            .map_err(|message| StoreError::Unavailable(message.clone()))?;
        let mut pending = sync::lock(&self.probe_pending);
        let probe = match pending.take() {
            Some(probe) => probe,
            None => {
                let (done_tx, done_rx) = crossbeam_channel::bounded(1);
                let config = config.clone();
                std::thread::Builder::new()
                    .name("postgres-probe".into())
                    .spawn(move || {
                        let _ = done_tx.send(run_probe(&config));
                    })
                    .map_err(|error| StoreError::Unavailable(error.to_string()))?;
                done_rx
            }
        };
        match probe.recv_timeout(self.connect_timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => {
                log::warn!("PostgreSQL readiness check failed: {message}");
                Err(StoreError::Unavailable(message))
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                *pending = Some(probe);
                log::warn!(
                    "PostgreSQL readiness check got no answer within {} ms",
                    self.connect_timeout.as_millis()
                );
                Err(StoreError::Unavailable("readiness check timed out".into()))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(StoreError::Unavailable(
                "readiness check thread failed".into(),
            )),
        }
    }
}
