//! The reference service binary: the command line, logging, the app, the
//! server, and the exit code its shutdown report gives.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use gremlins_api::app::{App, ServiceConfig};
use gremlins_api::{Error, Server, ServerConfig, SignalListener};

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
    let args = cli::Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let (server_config, service_config) = match args.into_configs() {
        Ok(configs) => configs,
        Err(message) => {
            log::error!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    match run(server_config, &service_config) {
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

fn run(server_config: ServerConfig, service_config: &ServiceConfig) -> Result<u8, Failure> {
    let server = Server::bind(server_config)?;
    let shutdown = server.shutdown_handle();
    let _signals = SignalListener::install(shutdown.clone()).map_err(Error::Signals)?;
    let app = App::new(service_config, shutdown, server.stats()).map_err(Failure::App)?;
    let report = server.run(app)?;
    log::info!("{}", report.to_json());
    Ok(report.exit_code)
}
