use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sallyport_connector::logging;
use sallyport_relay::admin::{self, AdminCtx, Request};
use sallyport_relay::config::ServeArgs;
use sallyport_relay::demo::DemoArgs;
use sallyport_relay::pki::RelayCa;
use sallyport_relay::store::Store;
use sallyport_relay::util::parse_duration;
use sallyport_relay::Relay;
use tokio_util::sync::CancellationToken;

/// Sallyport relay: connectors dial in over QUIC, people reach their services over HTTPS.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "SALLYPORT_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve(ServeArgs),
    /// Run a relay, a connector for the local sshd and a demo user in one process.
    Demo(DemoArgs),
    /// Manage local users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage connectors.
    #[command(subcommand)]
    Connector(ConnectorCmd),
    /// The SSH user certificate authority.
    #[command(subcommand)]
    SshCa(SshCaCmd),
}

#[derive(Subcommand)]
enum SshCaCmd {
    /// Print the CA's public key, for sshd's TrustedUserCAKeys.
    Show {
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(clap::Args)]
struct DataDir {
    /// The relay's data dir (the same as `serve --data-dir`).
    #[arg(long, env = "SALLYPORT_DATA_DIR")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a local user; the password is read from stdin.
    Add {
        name: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Groups the user belongs to, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
enum ConnectorCmd {
    /// Issue a one-time enrolment token (printed as the last line).
    Add {
        name: String,
        /// How long the token stays valid, e.g. 30m, 1h, 2d.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: std::time::Duration,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Show connectors, their state and when they were last seen.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Revoke a connector: close its connections and refuse it from now on.
    Revoke {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_json);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sallyport-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        logging::terminate_signal().await;
        s.cancel();
    });
    stop
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = args.resolve().map_err(anyhow::Error::msg)?;
            let relay = Relay::start(config).await?;
            stop_on_signal().cancelled().await;
            relay.shutdown().await;
            Ok(())
        }
        Command::Demo(args) => sallyport_relay::demo::run(args, stop_on_signal()).await,
        Command::User(UserCmd::Add {
            name, groups, dir, ..
        }) => {
            let mut password = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut password)
                .context("cannot read the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            admin_command(
                &dir.data_dir,
                Request::UserAdd {
                    name,
                    password,
                    groups,
                },
            )
            .await
        }
        Command::Connector(ConnectorCmd::Add { name, ttl, dir }) => {
            let req = Request::ConnectorAdd {
                name,
                ttl_secs: ttl.as_secs(),
            };
            admin_command(&dir.data_dir, req).await
        }
        Command::SshCa(SshCaCmd::Show { dir }) => {
            if !dir.data_dir.is_dir() {
                anyhow::bail!(
                    "{} does not exist: start `sallyport-relay serve --data-dir {}` once first",
                    dir.data_dir.display(),
                    dir.data_dir.display()
                );
            }
            // The CA is a file of its own, not in sled: no need to ask a running relay.
            let ca = sallyport_relay::ssh_ca::SshCa::load_or_create(&dir.data_dir)?;
            println!("{}", ca.public_line());
            Ok(())
        }
        Command::Connector(ConnectorCmd::List { dir }) => {
            admin_command(&dir.data_dir, Request::ConnectorList).await
        }
        Command::Connector(ConnectorCmd::Revoke { name, dir }) => {
            admin_command(&dir.data_dir, Request::ConnectorRevoke { name }).await
        }
    }
}

/// Runs an admin command through the running relay, or on the data dir directly.
async fn admin_command(data_dir: &Path, req: Request) -> anyhow::Result<()> {
    let reply = match admin::send_to_running(data_dir, &req).await {
        Some(reply) => {
            let reply = reply.context("the running relay failed to answer")?;
            if reply.ok {
                Ok(reply.output)
            } else {
                Err(reply.output)
            }
        }
        None => {
            if !data_dir.join("db").exists() {
                anyhow::bail!(
                    "{} holds no relay data: start `sallyport-relay serve --data-dir {}` once first",
                    data_dir.display(),
                    data_dir.display()
                );
            }
            let store = Store::open(data_dir)?;
            let ctx = AdminCtx {
                store,
                ca: Arc::new(RelayCa::load_or_create(data_dir)?),
                registry: None,
            };
            tokio::task::spawn_blocking(move || admin::execute(&ctx, req)).await?
        }
    };
    match reply {
        Ok(out) => {
            println!("{out}");
            Ok(())
        }
        Err(e) => anyhow::bail!(e),
    }
}
