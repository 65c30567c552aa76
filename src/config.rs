//! The one `Config`: defaults (in `Default`, and nowhere else), flags and
//! environment variables (through clap), and validation.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::http::Limits;

/// Every setting of the server and the reference service.
///
/// Each is a flag and an environment variable (flag wins); `--help` lists
/// them with their defaults. Durations are written `250ms`, `30s`, `2m`, or
/// a bare number of seconds.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "gremlins-api",
    version,
    about = "An HTTP service that never loses work when it is stopped"
)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (logged at start).
    #[arg(long, env = "LISTEN_ADDR")]
    pub listen: SocketAddr,
    /// Worker threads that run handlers. Handlers may block (on a
    /// database), so this is more than the number of cores.
    #[arg(long, env = "WORKERS")]
    pub workers: usize,
    /// Connections with a request ready that may wait for a worker; when
    /// full, new ones are answered 503 with `Retry-After: 1`.
    #[arg(long, env = "QUEUE_CAPACITY")]
    pub queue_capacity: usize,
    /// Open connections at most; beyond it new ones get 503 and are closed.
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Requests served on one connection before it is closed; 0: no limit.
    #[arg(long, env = "MAX_REQUESTS_PER_CONNECTION")]
    pub max_requests_per_connection: u32,
    /// Largest request head (request line and headers), in bytes.
    #[arg(long, env = "MAX_HEAD_BYTES")]
    pub max_head_bytes: usize,
    /// Most header fields in one request (at most 256).
    #[arg(long, env = "MAX_HEADERS")]
    pub max_headers: usize,
    /// Longest request target, in bytes.
    #[arg(long, env = "MAX_URI_BYTES")]
    pub max_uri_bytes: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES")]
    pub max_body_bytes: u64,
    /// Time a request head may take to arrive, from its first byte.
    #[arg(long, env = "HEADER_TIMEOUT", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open.
    #[arg(long, env = "IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Time a whole request body may take to arrive, from its head: a
    /// backstop; `--min-body-rate` is what catches slow clients.
    #[arg(long, env = "BODY_TIMEOUT", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Time a client may take to read responses that did not fit the
    /// socket at once, in all: a backstop; `--min-write-rate` is what
    /// catches slow readers.
    #[arg(long, env = "WRITE_TIMEOUT", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// Bytes per second a request body must arrive at, on average over
    /// the whole body, once `--min-rate-grace` has passed (408 and close
    /// otherwise); 0: no minimum.
    #[arg(long, env = "MIN_BODY_RATE")]
    pub min_body_rate: u64,
    /// Bytes per second a client must read responses at, on average,
    /// once `--min-rate-grace` has passed (closed otherwise); 0: no
    /// minimum.
    #[arg(long, env = "MIN_WRITE_RATE")]
    pub min_write_rate: u64,
    /// Time a body or a response is given before its minimum rate applies.
    #[arg(long, env = "MIN_RATE_GRACE", value_parser = parse_duration)]
    pub min_rate_grace: Duration,
    /// Bytes all request bodies being read and all unwritten responses may
    /// hold together (`4MiB`, `64MiB`, or bytes). When it is used up,
    /// bodies wait (their clients are slowed by TCP), and one that waits
    /// more than a second is answered 503 with `Retry-After`.
    #[arg(long, env = "MAX_BUFFERED_BYTES", value_parser = parse_bytes)]
    pub max_buffered_bytes: u64,
    /// Time from the shutdown signal until requests still running are
    /// abandoned (includes the drain delay).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Time all cleanup hooks together may take after the drain.
    #[arg(long, env = "CLEANUP_TIMEOUT", value_parser = parse_duration)]
    pub cleanup_timeout: Duration,
    /// Time to keep accepting and serving after the signal (responses say
    /// `Connection: close`), so load balancers notice `/readyz`; 0: none.
    #[arg(long, env = "DRAIN_DELAY", value_parser = parse_duration)]
    pub drain_delay: Duration,
    /// Window in which an idle keep-alive connection may still send one
    /// last request once the listener is closed.
    #[arg(long, env = "LAST_CALL", value_parser = parse_duration)]
    pub last_call: Duration,
    /// The grace period the platform gives between SIGTERM and SIGKILL, in
    /// seconds; when set, the service refuses to start if its own timeouts
    /// do not fit inside it.
    #[arg(long, env = "GRACE_PERIOD_SECONDS")]
    pub grace_period_seconds: Option<u64>,
    /// PostgreSQL URL for the events store; unset: the built-in in-memory
    /// store (data does not outlive the process).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis URL for the read-through cache and the request counters;
    /// unset: no cache, counters stay in memory.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Time allowed to open a PostgreSQL connection (TCP and handshake).
    #[arg(long, env = "DB_CONNECT_TIMEOUT", value_parser = parse_duration)]
    pub db_connect_timeout: Duration,
    /// `statement_timeout` set on every PostgreSQL session.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,
    /// Time allowed for a Redis connect, read or write.
    #[arg(long, env = "REDIS_TIMEOUT", value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// How long an event stays in the Redis cache.
    #[arg(long, env = "CACHE_TTL", value_parser = parse_duration)]
    pub cache_ttl: Duration,
    /// How often request counters are written to Redis.
    #[arg(long, env = "COUNTER_FLUSH_INTERVAL", value_parser = parse_duration)]
    pub counter_flush_interval: Duration,
    /// Request bodies larger than this are spooled to a temp file instead
    /// of memory, in bytes.
    #[arg(long, env = "SPOOL_THRESHOLD_BYTES")]
    pub spool_threshold_bytes: u64,
    /// For tests only, with `--enable-test-routes`: make the `acceptor` or
    /// the `poller` thread panic at its first connection.
    #[arg(long, env = "TEST_PANIC_THREAD", hide = true, value_parser = ["acceptor", "poller"])]
    pub test_panic_thread: Option<String>,
    /// Serve `/test/sleep?ms=N` and `/test/panic` (for tests only).
    #[arg(long, env = "ENABLE_TEST_ROUTES", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub enable_test_routes: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 16,
            queue_capacity: 1024,
            max_connections: 1024,
            max_requests_per_connection: 0,
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(120),
            min_body_rate: 240,
            min_write_rate: 240,
            min_rate_grace: Duration::from_secs(5),
            max_buffered_bytes: 64 * 1024 * 1024,
            test_panic_thread: None,
            shutdown_timeout: Duration::from_secs(30),
            cleanup_timeout: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            last_call: Duration::from_millis(300),
            grace_period_seconds: None,
            database_url: None,
            redis_url: None,
            db_connect_timeout: Duration::from_secs(2),
            db_statement_timeout: Duration::from_secs(5),
            redis_timeout: Duration::from_millis(500),
            cache_ttl: Duration::from_secs(60),
            counter_flush_interval: Duration::from_secs(10),
            spool_threshold_bytes: 64 * 1024,
            enable_test_routes: false,
        }
    }
}

/// A setting that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads flags and environment variables over the defaults; exits with
    /// clap's usage message on a malformed value or `--help`.
    pub fn from_args() -> Self {
        let matches = Self::command_with_defaults().get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }

    /// Like [`from_args`](Self::from_args), from an explicit argument list.
    pub fn try_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command_with_defaults().try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    /// The clap command, with every default taken from `Config::default()`.
    fn command_with_defaults() -> clap::Command {
        let defaults = Self::default();
        let shown: [(&str, String); 27] = [
            ("listen", defaults.listen.to_string()),
            ("workers", defaults.workers.to_string()),
            ("queue_capacity", defaults.queue_capacity.to_string()),
            ("max_connections", defaults.max_connections.to_string()),
            (
                "max_requests_per_connection",
                defaults.max_requests_per_connection.to_string(),
            ),
            ("max_head_bytes", defaults.max_head_bytes.to_string()),
            ("max_headers", defaults.max_headers.to_string()),
            ("max_uri_bytes", defaults.max_uri_bytes.to_string()),
            ("max_body_bytes", defaults.max_body_bytes.to_string()),
            ("header_timeout", format_duration(defaults.header_timeout)),
            ("idle_timeout", format_duration(defaults.idle_timeout)),
            ("body_timeout", format_duration(defaults.body_timeout)),
            ("write_timeout", format_duration(defaults.write_timeout)),
            ("min_body_rate", defaults.min_body_rate.to_string()),
            ("min_write_rate", defaults.min_write_rate.to_string()),
            ("min_rate_grace", format_duration(defaults.min_rate_grace)),
            (
                "max_buffered_bytes",
                format_bytes(defaults.max_buffered_bytes),
            ),
            (
                "shutdown_timeout",
                format_duration(defaults.shutdown_timeout),
            ),
            ("cleanup_timeout", format_duration(defaults.cleanup_timeout)),
            ("drain_delay", format_duration(defaults.drain_delay)),
            ("last_call", format_duration(defaults.last_call)),
            (
                "db_connect_timeout",
                format_duration(defaults.db_connect_timeout),
            ),
            (
                "db_statement_timeout",
                format_duration(defaults.db_statement_timeout),
            ),
            ("redis_timeout", format_duration(defaults.redis_timeout)),
            ("cache_ttl", format_duration(defaults.cache_ttl)),
            (
                "counter_flush_interval",
                format_duration(defaults.counter_flush_interval),
            ),
            (
                "spool_threshold_bytes",
                defaults.spool_threshold_bytes.to_string(),
            ),
        ];
        shown
            .into_iter()
            .fold(Self::command(), |command, (id, value)| {
                command.mut_arg(id, |arg| arg.default_value(value).required(false))
            })
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        if self.workers == 0 {
            return fail("WORKERS must be at least 1".into());
        }
        if self.queue_capacity == 0 {
            return fail("QUEUE_CAPACITY must be at least 1".into());
        }
        if self.max_connections == 0 {
            return fail("MAX_CONNECTIONS must be at least 1".into());
        }
        if !(1..=crate::http::MAX_HEADERS_CEILING).contains(&self.max_headers) {
            return fail(format!(
                "MAX_HEADERS must be between 1 and {}",
                crate::http::MAX_HEADERS_CEILING
            ));
        }
        if self.max_head_bytes < 256 {
            return fail("MAX_HEAD_BYTES must be at least 256".into());
        }
        if self.max_uri_bytes == 0 || self.max_uri_bytes > self.max_head_bytes {
            return fail("MAX_URI_BYTES must be between 1 and MAX_HEAD_BYTES".into());
        }
        for (name, value) in [
            ("HEADER_TIMEOUT", self.header_timeout),
            ("IDLE_TIMEOUT", self.idle_timeout),
            ("BODY_TIMEOUT", self.body_timeout),
            ("WRITE_TIMEOUT", self.write_timeout),
            ("SHUTDOWN_TIMEOUT", self.shutdown_timeout),
            ("CLEANUP_TIMEOUT", self.cleanup_timeout),
            ("DB_CONNECT_TIMEOUT", self.db_connect_timeout),
            ("DB_STATEMENT_TIMEOUT", self.db_statement_timeout),
            ("REDIS_TIMEOUT", self.redis_timeout),
            ("CACHE_TTL", self.cache_ttl),
            ("COUNTER_FLUSH_INTERVAL", self.counter_flush_interval),
        ] {
            if value.is_zero() {
                return fail(format!("{name} must be more than zero"));
            }
        }
        for (name, value) in [
            ("HEADER_TIMEOUT", self.header_timeout),
            ("IDLE_TIMEOUT", self.idle_timeout),
            ("BODY_TIMEOUT", self.body_timeout),
            ("WRITE_TIMEOUT", self.write_timeout),
            ("MIN_RATE_GRACE", self.min_rate_grace),
            ("SHUTDOWN_TIMEOUT", self.shutdown_timeout),
            ("CLEANUP_TIMEOUT", self.cleanup_timeout),
            ("DRAIN_DELAY", self.drain_delay),
            ("LAST_CALL", self.last_call),
            ("DB_CONNECT_TIMEOUT", self.db_connect_timeout),
            ("DB_STATEMENT_TIMEOUT", self.db_statement_timeout),
            ("REDIS_TIMEOUT", self.redis_timeout),
            ("CACHE_TTL", self.cache_ttl),
            ("COUNTER_FLUSH_INTERVAL", self.counter_flush_interval),
        ] {
            if value > MAX_DURATION {
                return fail(format!(
                    "{name} ({}) is longer than the longest supported, {}",
                    format_duration(value),
                    format_duration(MAX_DURATION)
                ));
            }
        }
        if self.max_body_bytes > self.max_buffered_bytes {
            return fail(format!(
                "MAX_BODY_BYTES ({}) must not be more than MAX_BUFFERED_BYTES ({}): such a body could never be read",
                self.max_body_bytes,
                format_bytes(self.max_buffered_bytes)
            ));
        }
        if self.test_panic_thread.is_some() && !self.enable_test_routes {
            return fail("TEST_PANIC_THREAD needs ENABLE_TEST_ROUTES".into());
        }
        if self.drain_delay >= self.shutdown_timeout {
            return fail(format!(
                "DRAIN_DELAY ({}) must be shorter than SHUTDOWN_TIMEOUT ({}), which it is part of",
                format_duration(self.drain_delay),
                format_duration(self.shutdown_timeout)
            ));
        }
        if let Some(grace) = self.grace_period_seconds {
            let needed = self.shutdown_timeout + self.cleanup_timeout;
            if needed >= Duration::from_secs(grace) {
                return fail(format!(
                    "SHUTDOWN_TIMEOUT ({}) + CLEANUP_TIMEOUT ({}) = {} does not fit inside \
                     GRACE_PERIOD_SECONDS ({grace}s): the platform would kill the process mid-shutdown; \
                     raise terminationGracePeriodSeconds or lower the timeouts",
                    format_duration(self.shutdown_timeout),
                    format_duration(self.cleanup_timeout),
                    format_duration(needed),
                ));
            }
        }
        Ok(())
    }

    /// The limits the HTTP engine applies.
    pub fn limits(&self) -> Limits {
        Limits {
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            max_uri_bytes: self.max_uri_bytes,
            max_body_bytes: self.max_body_bytes,
        }
    }

    /// The timeouts and minimum rates of the server's waits on clients.
    pub(crate) fn registry_timeouts(&self) -> crate::server::ClientTimeouts {
        crate::server::ClientTimeouts {
            idle: self.idle_timeout,
            header: self.header_timeout,
            rates: crate::server::Rates {
                min_body_rate: self.min_body_rate,
                min_write_rate: self.min_write_rate,
                grace: self.min_rate_grace,
                body_timeout: self.body_timeout,
                write_timeout: self.write_timeout,
            },
        }
    }
}

/// A connection URL fit for a log line: the user name and the host, port
/// and path, never the password, and never the query (it may carry
/// `password=`). Nothing after the first `:` of the user info is printed,
/// so a password containing `/`, `?` or `@` cannot leak either.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let (user, location) = match rest.rfind('@') {
        Some(at) => {
            let user_info = &rest[..at];
            let user = user_info.split(':').next().unwrap_or_default();
            let password = if user_info.contains(':') { ":***" } else { "" };
            (format!("{user}{password}@"), &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    let (location, query) = match location.find(['?', '#']) {
        Some(at) => (&location[..at], "?***"),
        None => (location, ""),
    };
    format!("{scheme}://{user}{location}{query}")
}

/// Parses `250ms`, `30s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 250ms, 30s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        _ => Err(format!(
            "{text:?} has an unknown unit {unit:?}: use ms, s or m"
        )),
    }
}

/// The longest duration any setting may have. Longer ones are refused at
/// start, so no deadline computed from one can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a byte size: `4MiB`, `512KiB`, `1GiB`, or a bare number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
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
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Writes a size the way [`parse_bytes`] reads it.
pub fn format_bytes(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        _ if bytes % (1 << 20) == 0 => format!("{}MiB", bytes >> 20),
        _ if bytes % (1 << 10) == 0 => format!("{}KiB", bytes >> 10),
        _ => bytes.to_string(),
    }
}

/// Writes a duration the way [`parse_duration`] reads it.
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() != 0 || duration.is_zero() {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}s", duration.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_default() {
        let parsed = Config::try_from_args(["gremlins-api"]).expect("defaults parse");
        let defaults = Config::default();
        assert_eq!(parsed.listen, defaults.listen);
        assert_eq!(parsed.workers, defaults.workers);
        assert_eq!(parsed.shutdown_timeout, defaults.shutdown_timeout);
        assert_eq!(parsed.last_call, defaults.last_call);
        assert!(!parsed.enable_test_routes);
        parsed.validate().expect("defaults are valid");
    }

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("7h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(
            parse_duration(&format_duration(Duration::from_millis(1500))),
            Ok(Duration::from_millis(1500))
        );
    }

    #[test]
    fn flags_override_defaults() {
        let parsed = Config::try_from_args([
            "gremlins-api",
            "--workers",
            "3",
            "--shutdown-timeout",
            "2s",
            "--enable-test-routes",
        ])
        .expect("flags parse");
        assert_eq!(parsed.workers, 3);
        assert_eq!(parsed.shutdown_timeout, Duration::from_secs(2));
        assert!(parsed.enable_test_routes);
    }

    #[test]
    fn timeouts_must_fit_the_grace_period() {
        let config = Config {
            grace_period_seconds: Some(20),
            ..Config::default()
        };
        let error = config.validate().expect_err("30s + 5s does not fit in 20s");
        assert!(
            error.to_string().contains("GRACE_PERIOD_SECONDS"),
            "{error}"
        );
        let config = Config {
            grace_period_seconds: Some(45),
            ..Config::default()
        };
        config.validate().expect("30s + 5s fits in 45s");
    }

    #[test]
    fn urls_are_logged_without_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/events"),
            "postgres://app:***@db:5432/events"
        );
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert!(!redact_url("postgres://u:p@w@h/db").contains("p@w"));
        let tricky = redact_url("postgres://pg:se/cret@127.0.0.1:55432/postgres?password=hunter2");
        assert_eq!(tricky, "postgres://pg:***@127.0.0.1:55432/postgres?***");
        assert!(!redact_url("postgres://pg:a?b@h/db").contains("a?b"));
        assert_eq!(
            redact_url("redis://cache:6379/0?pass=x"),
            "redis://cache:6379/0?***"
        );
    }

    #[test]
    fn absurd_durations_are_refused_with_the_setting_named() {
        let parsed =
            Config::try_from_args(["gremlins-api", "--idle-timeout", "18446744073709551615"])
                .expect("a number of seconds parses");
        let error = parsed
            .validate()
            .expect_err("584 billion years is too long");
        assert!(error.to_string().contains("IDLE_TIMEOUT"), "{error}");
        assert!(error.to_string().contains("longest supported"), "{error}");
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert!(parse_bytes("4MB").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
        assert_eq!(parse_bytes(&format_bytes(64 << 20)), Ok(64 << 20));
    }

    #[test]
    fn zero_workers_is_refused() {
        let config = Config {
            workers: 0,
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
