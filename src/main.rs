//! The reference service binary: configuration, logging, the app, the
//! server, and the exit code its shutdown report gives.

use std::process::ExitCode;

use gremlins_api::app::App;
use gremlins_api::{Config, Error, Server, SignalListener};

/// Why the binary could not run the service.
#[derive(Debug)]
enum Failure {
    /// The server could not start or run.
    Server(Error),
    /// The app could not be built (its spool dir or counter flush thread).
    App(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server(error) => error.fmt(f),
            Self::App(_) => f.write_str("could not set up the service"),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Server(error) => error.source(),
            Self::App(error) => Some(error),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Server(error)
    }
}

fn main() -> ExitCode {
    let config = Config::from_args();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match run(config) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let mut message = format!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<u8, Failure> {
    let app_config = config.clone();
    let server = Server::bind(config)?;
    let shutdown = server.shutdown_handle();
    let _signals = SignalListener::install(shutdown.clone()).map_err(Error::Signals)?;
    let app = App::new(&app_config, shutdown, server.stats()).map_err(Failure::App)?;
    let report = server.run(app)?;
    log::info!("{}", report.to_json());
    Ok(report.exit_code)
}
