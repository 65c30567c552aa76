//! [`ServiceConfig`]: the reference service's own settings (its database,
//! cache, body spool and test routes), their defaults and validation. The
//! server's settings are [`ServerConfig`](crate::ServerConfig).

use std::time::Duration;

use crate::config::{ConfigError, check_duration};

/// Every setting of the reference service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// PostgreSQL URL of the events store. Default `None`: the built-in
    /// in-memory store (data does not outlive the process).
    pub database_url: Option<String>,
    /// Redis URL of the read-through cache and the request counters.
    /// Default `None`: no cache, counters stay in memory.
    pub redis_url: Option<String>,
    /// Time allowed to open a PostgreSQL connection (TCP and handshake).
    /// Default 2 s; more than zero.
    pub db_connect_timeout: Duration,
    /// `statement_timeout` set on every PostgreSQL session. Default 5 s;
    /// more than zero.
    pub db_statement_timeout: Duration,
    /// Time allowed for a Redis connect, read or write. Default 500 ms;
    /// more than zero.
    pub redis_timeout: Duration,
    /// How long an event stays in the Redis cache (whole seconds, at least
    /// one). Default 60 s; more than zero.
    pub cache_ttl: Duration,
    /// How often the request counters are added to Redis. Default 10 s;
    /// more than zero.
    pub counter_flush_interval: Duration,
    /// Request bodies larger than this, in bytes, are spooled to a temp
    /// file instead of memory. Default 64 KiB; 0: every body is spooled.
    pub spool_threshold_bytes: u64,
    /// Serve `/test/sleep?ms=N` and `/test/panic` (for tests only; logged
    /// as a warning). Default `false`.
    pub test_routes: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            redis_url: None,
            db_connect_timeout: Duration::from_secs(2),
            db_statement_timeout: Duration::from_secs(5),
            redis_timeout: Duration::from_millis(500),
            cache_ttl: Duration::from_secs(60),
            counter_flush_interval: Duration::from_secs(10),
            spool_threshold_bytes: 64 * 1024,
            test_routes: false,
        }
    }
}

impl ServiceConfig {
    /// Checks that the settings can work; the error names the first one
    /// that cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, value) in [
            ("db_connect_timeout", self.db_connect_timeout),
            ("db_statement_timeout", self.db_statement_timeout),
            ("redis_timeout", self.redis_timeout),
            ("cache_ttl", self.cache_ttl),
            ("counter_flush_interval", self.counter_flush_interval),
        ] {
            check_duration(setting, value, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ServiceConfig::default()
            .validate()
            .expect("defaults are valid");
    }

    #[test]
    fn a_zero_redis_timeout_is_refused_by_name() {
        let config = ServiceConfig {
            redis_timeout: Duration::ZERO,
            ..ServiceConfig::default()
        };
        let error = config
            .validate()
            .expect_err("a zero timeout never succeeds");
        assert_eq!(error.setting(), "redis_timeout");
    }
}
