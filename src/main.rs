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
    let app_config = config.clone();
    let server = Server::bind(config)?;
    let shutdown = server.shutdown_handle();
    let _signals = SignalListener::install(shutdown.clone()).map_err(Error::Signals)?;
    let app = App::new(&app_config, shutdown, server.stats()).map_err(Error::Spawn)?;
    let report = server.run(app)?;
    log::info!("{}", report.to_json());
    Ok(report.exit_code)
}
