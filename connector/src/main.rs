use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use sallyport_common::logging;
use sallyport_connector::config::RunArgs;
use sallyport_connector::service::{self, InstallArgs, UninstallArgs};
use tokio_util::sync::CancellationToken;

/// Sallyport connector: dials out to a relay and bridges sessions to local services.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text [default: the config
    /// file's log_format, else text]. SALLYPORT_LOG_JSON takes 1/0,
    /// true/false, yes/no, on/off.
    #[arg(long, global = true, env = "SALLYPORT_LOG_JSON", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    log_json: Option<bool>,
    /// What to log: off, error, warn, info, debug or trace, for every
    /// target [default: the config file's log_level, else info]. RUST_LOG,
    /// when set, wins as a full filter.
    #[arg(long, global = true, env = "SALLYPORT_LOG_LEVEL", value_parser = logging::parse_level)]
    log_level: Option<logging::LevelFilter>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol (with a token, once) and serve until stopped.
    Run(Box<RunArgs>),
    /// Run as a system service: write its config file and start it.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Writes the man pages and shell completions packages ship (see
    /// `scripts/package.sh`).
    #[command(name = sallyport_common::package_assets::COMMAND, hide = true)]
    GeneratePackageAssets {
        /// The directory to write `man/` and `completions/` into.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Write /etc/sallyport/connector.toml (mode 0640) and enable and start
    /// the sallyport-connector unit when systemd runs this host.
    Install(InstallArgs),
    /// Stop and disable the unit and remove its config file (the enrolled
    /// identity stays in the state directory).
    Uninstall(UninstallArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Run(args) => args,
        Command::Service(cmd) => {
            let mut out = std::io::stdout();
            let done = match cmd {
                ServiceCmd::Install(args) => service::install(&args, &mut out),
                ServiceCmd::Uninstall(args) => service::uninstall(&args, &mut out),
            };
            return report(done);
        }
        Command::GeneratePackageAssets { out } => {
            return report(
                sallyport_common::package_assets::write(Cli::command(), &out)
                    .map_err(|e| format!("cannot write to {}: {e}", out.display())),
            );
        }
    };
    let settings = match args.resolve(cli.log_json, cli.log_level) {
        Ok(s) => s,
        Err(e) => return report(Err(e)),
    };
    logging::init_with_level(settings.log_json, settings.log_level);
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        logging::terminate_signal().await;
        tracing::info!("shutting down: draining sessions");
        signal.cancel();
    });
    tokio::spawn(ignore_hangup());
    report(sallyport_connector::run(settings.run, shutdown).await)
}

/// Logs SIGHUP instead of dying of it (its default action): a stray
/// `kill -HUP` or `systemctl kill -s HUP` must not drop every session. The
/// connector rereads nothing; a changed config file takes a restart.
async fn ignore_hangup() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(
            "SIGHUP: nothing to reload; restart the connector to apply a changed config"
        );
    }
}

fn report<E: std::fmt::Display>(done: Result<(), E>) -> ExitCode {
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sallyport-connector: {e}");
            ExitCode::FAILURE
        }
    }
}
