//! The reference service binary: configuration, logging, the app, the
//! server, and the exit code its shutdown report gives.

use std::process::ExitCode;

use gremlins_api::app::App;
use gremlins_api::{Config, Error, Server, SignalListener};

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

fn run(config: Config) -> Result<u8, Error> {
    let test_routes = config.enable_test_routes;
    let server = Server::bind(config)?;
    let shutdown = server.shutdown_handle();
    let _signals = SignalListener::install(shutdown.clone()).map_err(Error::Signals)?;
    log::info!("no DATABASE_URL configured: serving from the built-in in-memory store");
    let report = server.run(App::new(shutdown, test_routes))?;
    log::info!("{}", report.to_json());
    Ok(report.exit_code)
}
