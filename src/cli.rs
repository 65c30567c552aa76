//! The binary's command line: every setting of [`ServerConfig`] and
//! [`ServiceConfig`] as a flag and an environment variable (the flag
//! wins), with the defaults those types give. Not part of the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use gremlins_api::app::ServiceConfig;
use gremlins_api::{ConfigError, ServerConfig, SupervisedThread};

/// The defaults, as the help shows them.
fn server() -> ServerConfig {
    ServerConfig::default()
}

fn service() -> ServiceConfig {
    ServiceConfig::default()
}

/// Every setting of the server and the reference service.
///
/// Each is a flag and an environment variable (flag wins); `--help` lists
/// them with their defaults. Durations are written `250ms`, `30s`, `2m`, or
/// a bare number of seconds.
#[derive(Debug, Parser)]
#[command(
    name = "gremlins-api",
    version,
    about = "An HTTP service that never loses work when it is stopped"
)]
pub(crate) struct Args {
    /// Address to listen on. Port 0 picks a free port (logged at start).
    #[arg(long, env = "LISTEN_ADDR", default_value_t = server().listen)]
    listen: SocketAddr,
    /// Address of the admin listener, for the platform only (the
    /// kubelet): `GET /drain` there starts the drain and answers when it
    /// ends; other requests are served as on `--listen` (probes), and
    /// nothing there counts as traffic for the drain. Unset: none. Keep it
    /// out of clients' reach: whoever reaches it can stop the process.
    #[arg(long, env = "ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Worker threads that run handlers. Handlers may block (on a
    /// database), so this is more than the number of cores.
    #[arg(long, env = "WORKERS", default_value_t = server().workers)]
    workers: usize,
    /// Poller threads, each reading and writing the sockets of its share of
    /// the connections; 0: one per available core.
    #[arg(long, env = "POLLERS", default_value_t = server().pollers)]
    pollers: usize,
    /// Connections with a request ready that may wait for a worker; when
    /// full, new ones are answered 503 with `Retry-After: 1`.
    #[arg(long, env = "QUEUE_CAPACITY", default_value_t = server().queue_capacity)]
    queue_capacity: usize,
    /// Open connections at most; beyond it the longest-idle keep-alive one
    /// is closed to admit a new one, or new ones get 503 when none is idle.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = server().max_connections)]
    max_connections: usize,
    /// Requests served on one connection before it is closed; 0: no limit.
    #[arg(long, env = "MAX_REQUESTS_PER_CONNECTION", default_value_t = server().max_requests_per_connection)]
    max_requests_per_connection: u32,
    /// Largest request head (request line and headers), in bytes.
    #[arg(long, env = "MAX_HEAD_BYTES", default_value_t = server().max_head_bytes)]
    max_head_bytes: usize,
    /// Most header fields in one request (at most 256).
    #[arg(long, env = "MAX_HEADERS", default_value_t = server().max_headers)]
    max_headers: usize,
    /// Longest request target, in bytes.
    #[arg(long, env = "MAX_URI_BYTES", default_value_t = server().max_uri_bytes)]
    max_uri_bytes: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = server().max_body_bytes)]
    max_body_bytes: u64,
    /// Time a request head may take to arrive, from its first byte.
    #[arg(long, env = "HEADER_TIMEOUT", default_value_t = Written(server().header_timeout))]
    header_timeout: Written<Duration>,
    /// Time an idle keep-alive connection is kept open.
    #[arg(long, env = "IDLE_TIMEOUT", default_value_t = Written(server().idle_timeout))]
    idle_timeout: Written<Duration>,
    /// Time a whole request body may take to arrive, from its head: a
    /// backstop; `--min-body-rate` is what catches slow clients.
    #[arg(long, env = "BODY_TIMEOUT", default_value_t = Written(server().body_timeout))]
    body_timeout: Written<Duration>,
    /// Time a client may take to read responses that did not fit the
    /// socket at once, in all: a backstop; `--min-write-rate` is what
    /// catches slow readers.
    #[arg(long, env = "WRITE_TIMEOUT", default_value_t = Written(server().write_timeout))]
    write_timeout: Written<Duration>,
    /// Bytes per second a request body must arrive at, on average over
    /// the whole body, once `--min-rate-grace` has passed (408 and close
    /// otherwise); 0: no minimum.
    #[arg(long, env = "MIN_BODY_RATE", default_value_t = server().min_body_rate)]
    min_body_rate: u64,
    /// Bytes per second a client must read responses at, on average,
    /// once `--min-rate-grace` has passed (closed otherwise); 0: no
    /// minimum.
    #[arg(long, env = "MIN_WRITE_RATE", default_value_t = server().min_write_rate)]
    min_write_rate: u64,
    /// Time a body or a response is given before its minimum rate applies.
    #[arg(long, env = "MIN_RATE_GRACE", default_value_t = Written(server().min_rate_grace))]
    min_rate_grace: Written<Duration>,
    /// Bytes all request bodies being read and all unwritten responses may
    /// hold together (`4MiB`, `64MiB`, or bytes). When it is used up,
    /// bodies wait (their clients are slowed by TCP), and one that waits
    /// more than a second is answered 503 with `Retry-After`.
    #[arg(long, env = "MAX_BUFFERED_BYTES", default_value_t = Written(Bytes(server().max_buffered_bytes)))]
    max_buffered_bytes: Written<Bytes>,
    /// Time from the end of the drain (the listener's close) until
    /// requests still running are abandoned.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = Written(server().shutdown_timeout))]
    shutdown_timeout: Written<Duration>,
    /// Time all cleanup hooks together may take after the drain.
    #[arg(long, env = "CLEANUP_TIMEOUT", default_value_t = Written(server().cleanup_timeout))]
    cleanup_timeout: Written<Duration>,
    /// Time to keep accepting and serving after the signal (responses say
    /// `Connection: close`), so load balancers notice `/readyz`: a fixed
    /// drain; with `--drain-quiet`, the least the drain lasts. 0: none.
    #[arg(long, env = "DRAIN_DELAY", default_value_t = Written(server().drain_delay))]
    drain_delay: Written<Duration>,
    /// The adaptive drain: keep accepting and serving after the signal
    /// until no new connection and no new request has arrived for this
    /// long, within `--drain-min` and `--drain-max`. 0: off.
    #[arg(long, env = "DRAIN_QUIET", default_value_t = Written(server().drain_quiet))]
    drain_quiet: Written<Duration>,
    /// The least the adaptive drain lasts.
    #[arg(long, env = "DRAIN_MIN", default_value_t = Written(server().drain_min))]
    drain_min: Written<Duration>,
    /// The most the adaptive drain lasts, whatever still arrives (what the
    /// grace period must allow for the drain).
    #[arg(long, env = "DRAIN_MAX", default_value_t = Written(server().drain_max))]
    drain_max: Written<Duration>,
    /// Window in which an idle keep-alive connection may still send one
    /// last request once the listener is closed.
    #[arg(long, env = "LAST_CALL", default_value_t = Written(server().last_call))]
    last_call: Written<Duration>,
    /// The grace period the platform gives between SIGTERM and SIGKILL, in
    /// seconds; when set, the service refuses to start if its own timeouts
    /// do not fit inside it.
    #[arg(long, env = "GRACE_PERIOD_SECONDS")]
    grace_period_seconds: Option<u64>,
    /// The program SIGHUP starts as the successor (hot restart), with the
    /// same arguments and environment; unset: this program, by the path it
    /// had at start.
    #[arg(long, env = "RESTART_EXEC")]
    restart_exec: Option<PathBuf>,
    /// Time the successor of a hot restart has to accept; past it, it is
    /// killed and this process goes on serving.
    #[arg(long, env = "RESTART_TIMEOUT", default_value_t = Written(server().restart_timeout))]
    restart_timeout: Written<Duration>,
    /// PostgreSQL URL for the events store; unset: the built-in in-memory
    /// store (data does not outlive the process).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// File holding the PostgreSQL URL (one trailing newline is dropped),
    /// such as a mounted Secret; instead of `--database-url`, never with
    /// it. A missing, unreadable or empty file stops the start.
    #[arg(long, env = "DATABASE_URL_FILE")]
    database_url_file: Option<PathBuf>,
    /// Redis URL for the read-through cache and the request counters;
    /// unset: no cache, counters stay in memory.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// File holding the Redis URL (one trailing newline is dropped);
    /// instead of `--redis-url`, never with it. A file that does not exist
    /// in a directory that does means no cache (a Secret volume without
    /// the optional key); an unreadable or empty file stops the start.
    #[arg(long, env = "REDIS_URL_FILE")]
    redis_url_file: Option<PathBuf>,
    /// Time allowed to open a PostgreSQL connection (TCP and handshake).
    #[arg(long, env = "DB_CONNECT_TIMEOUT", default_value_t = Written(service().db_connect_timeout))]
    db_connect_timeout: Written<Duration>,
    /// `statement_timeout` set on every PostgreSQL session.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value_t = Written(service().db_statement_timeout))]
    db_statement_timeout: Written<Duration>,
    /// Time allowed for a Redis connect, read or write.
    #[arg(long, env = "REDIS_TIMEOUT", default_value_t = Written(service().redis_timeout))]
    redis_timeout: Written<Duration>,
    /// How long an event stays in the Redis cache.
    #[arg(long, env = "CACHE_TTL", default_value_t = Written(service().cache_ttl))]
    cache_ttl: Written<Duration>,
    /// How often request counters are written to Redis.
    #[arg(long, env = "COUNTER_FLUSH_INTERVAL", default_value_t = Written(service().counter_flush_interval))]
    counter_flush_interval: Written<Duration>,
    /// Request bodies larger than this are spooled to a temp file instead
    /// of memory, in bytes.
    #[arg(long, env = "SPOOL_THRESHOLD_BYTES", default_value_t = service().spool_threshold_bytes)]
    spool_threshold_bytes: u64,
    /// For tests only, with `--enable-test-routes`: make the `acceptor` or
    /// the `poller` thread panic at its first connection.
    #[arg(long, env = "TEST_PANIC_THREAD", hide = true, value_parser = ["acceptor", "poller"])]
    test_panic_thread: Option<String>,
    /// For tests only, with `--enable-test-routes`: the poller stops
    /// responding this long after the start.
    #[arg(long, env = "TEST_STALL_POLLER_AFTER", hide = true)]
    test_stall_poller_after: Option<Written<Duration>>,
    /// For tests only, with `--enable-test-routes`: never start accepting.
    #[arg(long, env = "TEST_NEVER_READY", hide = true)]
    test_never_ready: bool,
    /// Serve `/test/sleep?ms=N` and `/test/panic` (for tests only).
    #[arg(
        long,
        env = "ENABLE_TEST_ROUTES",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = service().test_routes,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    enable_test_routes: bool,
}

impl Args {
    /// The server's and the service's settings, validated; the error says
    /// which flag or variable to change.
    pub(crate) fn into_configs(self) -> Result<(ServerConfig, ServiceConfig), String> {
        let mut server = ServerConfig::default();
        server.listen = self.listen;
        server.admin_listen = self.admin_listen;
        server.workers = self.workers;
        server.pollers = self.pollers;
        server.queue_capacity = self.queue_capacity;
        server.max_connections = self.max_connections;
        server.max_requests_per_connection = self.max_requests_per_connection;
        server.max_head_bytes = self.max_head_bytes;
        server.max_headers = self.max_headers;
        server.max_uri_bytes = self.max_uri_bytes;
        server.max_body_bytes = self.max_body_bytes;
        server.header_timeout = self.header_timeout.0;
        server.idle_timeout = self.idle_timeout.0;
        server.body_timeout = self.body_timeout.0;
        server.write_timeout = self.write_timeout.0;
        server.min_body_rate = self.min_body_rate;
        server.min_write_rate = self.min_write_rate;
        server.min_rate_grace = self.min_rate_grace.0;
        server.max_buffered_bytes = self.max_buffered_bytes.0.0;
        server.shutdown_timeout = self.shutdown_timeout.0;
        server.cleanup_timeout = self.cleanup_timeout.0;
        server.drain_delay = self.drain_delay.0;
        server.drain_quiet = self.drain_quiet.0;
        server.drain_min = self.drain_min.0;
        server.drain_max = self.drain_max.0;
        server.last_call = self.last_call.0;
        server.grace_period = self.grace_period_seconds.map(Duration::from_secs);
        server.restart_exec = self.restart_exec;
        server.restart_timeout = self.restart_timeout.0;
        server.test_stall_poller_after = self.test_stall_poller_after.map(|after| after.0);
        server.test_never_ready = self.test_never_ready;
        server.test_panic_thread = match self.test_panic_thread.as_deref() {
            Some("acceptor") => Some(SupervisedThread::Acceptor),
            Some(_) => Some(SupervisedThread::Poller),
            None => None,
        };
        let mut service = ServiceConfig::default();
        service.database_url = url_or_file(
            self.database_url,
            self.database_url_file,
            "database_url",
            MissingFile::Refused,
        )?;
        service.redis_url = url_or_file(
            self.redis_url,
            self.redis_url_file,
            "redis_url",
            MissingFile::MeansUnset,
        )?;
        service.db_connect_timeout = self.db_connect_timeout.0;
        service.db_statement_timeout = self.db_statement_timeout.0;
        service.redis_timeout = self.redis_timeout.0;
        service.cache_ttl = self.cache_ttl.0;
        service.counter_flush_interval = self.counter_flush_interval.0;
        service.spool_threshold_bytes = self.spool_threshold_bytes;
        service.test_routes = self.enable_test_routes;
        server.validate().map_err(|error| explain(&error))?;
        service.validate().map_err(|error| explain(&error))?;
        for (asked, named) in [
            (
                server.test_panic_thread.is_some(),
                "TEST_PANIC_THREAD (--test-panic-thread)",
            ),
            (
                server.test_stall_poller_after.is_some(),
                "TEST_STALL_POLLER_AFTER (--test-stall-poller-after)",
            ),
            (
                server.test_never_ready,
                "TEST_NEVER_READY (--test-never-ready)",
            ),
        ] {
            if asked && !service.test_routes {
                return Err(format!(
                    "invalid configuration: {named} needs ENABLE_TEST_ROUTES (--enable-test-routes)"
                ));
            }
        }
        Ok((server, service))
    }
}

/// What a URL file that does not exist means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingFile {
    /// An error: the setting is required once its file is named.
    Refused,
    /// The setting is unset, provided the file's directory exists: a
    /// Kubernetes Secret volume leaves out an optional key's file, while
    /// a directory that is missing too is a wrong path.
    MeansUnset,
}

/// The URL of setting `id` (`database_url`), given directly or read from
/// the file named by `{id}_file`: the file's content without one trailing
/// newline. Both at once, an unreadable file and an empty one are errors
/// naming the variables and the file, never the content: it holds a
/// password.
fn url_or_file(
    url: Option<String>,
    file: Option<PathBuf>,
    id: &str,
    missing: MissingFile,
) -> Result<Option<String>, String> {
    let Some(path) = file else {
        return Ok(url);
    };
    let file_id = format!("{id}_file");
    if url.is_some() {
        return Err(format!(
            "invalid configuration: {} and {} are both set: give the URL or the file that \
             holds it, not both",
            named(id),
            named(&file_id)
        ));
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error)
            if error.kind() == std::io::ErrorKind::NotFound
                && missing == MissingFile::MeansUnset
                && path.parent().is_some_and(std::path::Path::is_dir) =>
        {
            log::info!(
                "{}: {} does not exist: {} is unset",
                named(&file_id),
                path.display(),
                id.to_uppercase()
            );
            return Ok(None);
        }
        Err(error) => {
            return Err(format!(
                "invalid configuration: {} names {}, which cannot be read: {error}",
                named(&file_id),
                path.display()
            ));
        }
    };
    let url = text.strip_suffix('\n').unwrap_or(&text);
    if url.is_empty() {
        return Err(format!(
            "invalid configuration: {} names {}, which is empty",
            named(&file_id),
            path.display()
        ));
    }
    Ok(Some(url.to_owned()))
}

/// A configuration error naming the setting as the user wrote it: its
/// environment variable and its flag.
fn explain(error: &ConfigError) -> String {
    let id = match error.setting() {
        "grace_period" => "grace_period_seconds",
        "test_routes" => "enable_test_routes",
        field => field,
    };
    format!("invalid configuration: {} {}", named(id), error.problem())
}

/// The argument `id` as the user writes it, `ENV (--flag)`; `id` itself
/// when the command line has no such argument.
fn named(id: &str) -> String {
    Args::command()
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .and_then(|arg| {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            Some(format!("{env} (--{})", arg.get_long()?))
        })
        .unwrap_or_else(|| id.to_owned())
}

/// A setting's value as it is written on the command line, and shown as
/// its default in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written<T>(T);

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bytes(u64);

impl FromStr for Written<Duration> {
    type Err = String;

    /// `250ms`, `30s`, `2m`, `1h 30m` (humantime), or a bare number of
    /// seconds.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
            return text
                .parse()
                .map(|seconds| Self(Duration::from_secs(seconds)))
                .map_err(|_| format!("{text:?} is too many seconds"));
        }
        humantime::parse_duration(text).map(Self).map_err(|error| {
            format!("{text:?} is not a duration such as 250ms, 30s or 2m: {error}")
        })
    }
}

impl std::fmt::Display for Written<Duration> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl FromStr for Written<Bytes> {
    type Err = String;

    /// `4MiB`, `512KiB`, `1GiB`, or a bare number of bytes.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => text.split_at(at),
            None => (text, ""),
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size such as 4MiB, 512KiB or 65536"))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            unit => {
                return Err(format!(
                    "{text:?} has an unknown unit {unit:?}: use KiB, MiB, GiB or none (bytes)"
                ));
            }
        };
        value
            .checked_mul(scale)
            .map(|bytes| Self(Bytes(bytes)))
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl std::fmt::Display for Written<Bytes> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.0 {
            0 => f.write_str("0"),
            bytes if bytes % (1 << 20) == 0 => write!(f, "{}MiB", bytes >> 20),
            bytes if bytes % (1 << 10) == 0 => write!(f, "{}KiB", bytes >> 10),
            bytes => write!(f, "{bytes}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(args: &[&str]) -> Result<(ServerConfig, ServiceConfig), String> {
        let args =
            Args::try_parse_from(std::iter::once("gremlins-api").chain(args.iter().copied()))
                .map_err(|error| error.to_string())?;
        args.into_configs()
    }

    #[test]
    fn no_flags_give_the_library_defaults() {
        let (server, service) = configs(&[]).expect("the defaults parse and are valid");
        assert_eq!(server, ServerConfig::default());
        assert_eq!(service, ServiceConfig::default());
    }

    #[test]
    fn flags_override_defaults() {
        let (server, service) = configs(&[
            "--workers",
            "3",
            "--shutdown-timeout",
            "2s",
            "--max-buffered-bytes",
            "4MiB",
            "--grace-period-seconds",
            "45",
            "--enable-test-routes",
        ])
        .expect("flags parse");
        assert_eq!(server.workers, 3);
        assert_eq!(server.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(server.max_buffered_bytes, 4 << 20);
        assert_eq!(server.grace_period, Some(Duration::from_secs(45)));
        assert!(service.test_routes);
    }

    #[test]
    fn durations_parse_in_every_unit_and_as_bare_seconds() {
        let parse = |text: &str| text.parse::<Written<Duration>>().map(|written| written.0);
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("7"), Ok(Duration::from_secs(7)));
        assert!(parse("-1s").is_err());
        assert!(parse("7 parsecs").is_err());
        let shown = Written(Duration::from_millis(1500)).to_string();
        assert_eq!(parse(&shown), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        let parse = |text: &str| text.parse::<Written<Bytes>>().map(|written| written.0.0);
        assert_eq!(parse("4MiB"), Ok(4 << 20));
        assert_eq!(parse("512KiB"), Ok(512 << 10));
        assert_eq!(parse("65536"), Ok(65536));
        assert!(parse("4MB").is_err());
        assert!(parse("99999999999GiB").is_err());
        assert_eq!(parse(&Written(Bytes(64 << 20)).to_string()), Ok(64 << 20));
    }

    #[test]
    fn an_invalid_setting_is_named_by_its_variable_and_flag() {
        let error = configs(&["--idle-timeout", "18446744073709551615"])
            .expect_err("584 billion years is too long");
        assert!(
            error.starts_with("invalid configuration: IDLE_TIMEOUT (--idle-timeout) is "),
            "{error}"
        );
        assert!(
            error.contains("longer than the longest supported"),
            "{error}"
        );
        let error =
            configs(&["--grace-period-seconds", "20"]).expect_err("35 s do not fit in 20 s");
        assert!(
            error.contains("GRACE_PERIOD_SECONDS (--grace-period-seconds)"),
            "{error}"
        );
        let error = configs(&["--redis-timeout", "0"]).expect_err("a zero timeout never succeeds");
        assert!(error.contains("REDIS_TIMEOUT (--redis-timeout)"), "{error}");
    }

    #[test]
    fn a_url_file_gives_its_content_without_one_trailing_newline() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("DATABASE_URL");
        std::fs::write(&file, "postgres://u:p@db/x\n\n").expect("write the URL file");
        let file = file.to_str().expect("a UTF-8 temp path");
        let (_, service) = configs(&["--database-url-file", file]).expect("a readable URL file");
        assert_eq!(
            service.database_url.as_deref(),
            Some("postgres://u:p@db/x\n")
        );
        let error = configs(&[
            "--database-url",
            "postgres://u:p@db/x",
            "--database-url-file",
            file,
        ])
        .expect_err("the URL and its file are exclusive");
        assert!(
            error.contains("DATABASE_URL (--database-url) and DATABASE_URL_FILE (--database-url-file) are both set"),
            "{error}"
        );
        assert!(!error.contains("u:p@db"), "the URL is never shown: {error}");
    }

    #[test]
    fn a_missing_redis_url_file_means_no_cache_only_in_an_existing_directory() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let absent = dir.path().join("REDIS_URL");
        let absent = absent.to_str().expect("a UTF-8 temp path");
        let (_, service) = configs(&["--redis-url-file", absent]).expect("no Redis key: no cache");
        assert_eq!(service.redis_url, None);
        let error = configs(&["--database-url-file", absent])
            .expect_err("a named database file must exist");
        assert!(
            error.contains("DATABASE_URL_FILE (--database-url-file) names"),
            "{error}"
        );
        let wrong_dir = dir.path().join("missing").join("REDIS_URL");
        let wrong_dir = wrong_dir.to_str().expect("a UTF-8 temp path");
        let error =
            configs(&["--redis-url-file", wrong_dir]).expect_err("a wrong path is an error");
        assert!(
            error.contains("REDIS_URL_FILE (--redis-url-file) names"),
            "{error}"
        );
    }

    #[test]
    fn the_test_panic_needs_the_test_routes() {
        let error =
            configs(&["--test-panic-thread", "poller"]).expect_err("test hooks need test routes");
        assert!(error.contains("ENABLE_TEST_ROUTES"), "{error}");
        let (server, _) = configs(&["--test-panic-thread", "acceptor", "--enable-test-routes"])
            .expect("with the test routes it is allowed");
        assert_eq!(server.test_panic_thread, Some(SupervisedThread::Acceptor));
    }
}
