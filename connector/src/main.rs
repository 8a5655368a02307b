use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sallyport_common::logging;
use sallyport_connector::{parse_service, RunConfig};
use tokio_util::sync::CancellationToken;

/// Sallyport connector: dials out to a relay and bridges sessions to local services.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    /// SALLYPORT_LOG_JSON takes 1/0, true/false, yes/no, on/off.
    #[arg(long, global = true, env = "SALLYPORT_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol (with --token, once) and serve until stopped.
    Run {
        /// Enrolment token printed by `sallyport-relay connector add`.
        #[arg(long, env = "SALLYPORT_TOKEN")]
        token: Option<String>,
        /// Where the connector keeps its key, certificate and pinned relay CA.
        #[arg(long, env = "SALLYPORT_STATE_DIR")]
        state_dir: PathBuf,
        /// A service to expose, NAME=HOST:PORT (repeatable). Nothing else is reachable.
        #[arg(long = "service", env = "SALLYPORT_SERVICES", value_delimiter = ',', value_parser = parse_service)]
        services: Vec<(String, String)>,
        /// QUIC connections to keep open to the relay.
        #[arg(long, env = "SALLYPORT_HA_CONNECTIONS", default_value_t = 2,
              value_parser = clap::value_parser!(u16).range(1..=16))]
        ha_connections: u16,
        /// Seconds to wait for open sessions on SIGTERM.
        #[arg(long, env = "SALLYPORT_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
        drain_timeout_secs: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_json);
    let Command::Run {
        token,
        state_dir,
        services,
        ha_connections,
        drain_timeout_secs,
    } = cli.command;
    let config = RunConfig {
        token,
        state_dir,
        services,
        ha_connections: ha_connections.into(),
        drain_timeout: std::time::Duration::from_secs(drain_timeout_secs),
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        logging::terminate_signal().await;
        tracing::info!("shutting down: draining sessions");
        signal.cancel();
    });
    match sallyport_connector::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sallyport-connector: {e}");
            ExitCode::FAILURE
        }
    }
}
