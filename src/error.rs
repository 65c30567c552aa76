//! The error type of starting and running the server.

use std::io;
use std::net::SocketAddr;

use crate::config::ConfigError;

/// Why the server could not start or run.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The listen address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// A thread or the poller could not be created.
    Spawn(io::Error),
    /// A descriptor passed by socket activation (`LISTEN_FDS`) cannot be
    /// served: not open, or not a listening TCP socket.
    Inherit(io::Error),
    /// The signal handlers could not be installed.
    Signals(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(error) => error.fmt(f),
            Self::Bind { addr, .. } => write!(f, "could not listen on {addr}"),
            Self::Spawn(_) => f.write_str("could not start the server's threads"),
            Self::Inherit(_) => {
                f.write_str("could not take the sockets given by socket activation")
            }
            Self::Signals(_) => f.write_str("could not install the signal handlers"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(_) => None,
            Self::Bind { source, .. }
            | Self::Spawn(source)
            | Self::Inherit(source)
            | Self::Signals(source) => Some(source),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}
