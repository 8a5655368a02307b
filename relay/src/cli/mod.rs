//! The `sallyport-relay` command line: its arguments ([`Cli`]) and what each
//! command runs ([`run`]). `main.rs` only parses and reports.

mod args;

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use sallyport_common::logging;
use tokio_util::sync::CancellationToken;

use crate::admin::client::{admin_command, admin_output, admin_to};
use crate::admin::{self, Request};
use crate::config::ServeArgs;
use crate::demo::DemoArgs;
use crate::Relay;
use args::*;

/// Sallyport relay: connectors dial in over QUIC, people reach their services over HTTPS.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    /// SALLYPORT_LOG_JSON takes 1/0, true/false, yes/no, on/off.
    #[arg(long, global = true, env = "SALLYPORT_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve(Box<ServeArgs>),
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
    /// Device certificates: what the policy's device conditions check.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// The access policy (it lives in the config file under [policy]).
    // The doc comment is the help text: `[policy]` is a TOML table, not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The audit log: sign-ins, decisions, certificates, connectors, sessions.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Session recordings (what the client reported of a terminal session).
    #[command(subcommand)]
    Recording(RecordingCmd),
    /// Live sessions.
    #[command(subcommand)]
    Session(SessionCmd),
    /// The relay's store (sled in the data dir, or PostgreSQL with --store).
    #[command(subcommand)]
    Store(StoreCmd),
    /// The HTTPS certificate the relay gets over ACME (acme_domains).
    #[command(subcommand)]
    Acme(AcmeCmd),
    /// The cluster key that seals the secrets relays on PostgreSQL share.
    #[command(subcommand)]
    ClusterKey(ClusterKeyCmd),
    /// Writes the man pages and shell completions packages ship (see
    /// `scripts/package.sh`).
    #[command(name = sallyport_common::package_assets::COMMAND, hide = true)]
    GeneratePackageAssets {
        /// The directory to write `man/` and `completions/` into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClusterKeyCmd {
    /// Writes a new random 256-bit cluster key (64 hex digits) to PATH,
    /// mode 0600; never overwrites a file.
    Generate {
        /// The file to create.
        path: PathBuf,
    },
}

#[derive(clap::Args)]
struct DataDir {
    /// The relay's data dir (the same as `serve --data-dir`).
    #[arg(long, env = "SALLYPORT_DATA_DIR")]
    data_dir: PathBuf,
}

/// A password from standard input (at most 4 KiB), without its line end.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut password)
        .context("cannot read the password from stdin")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
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

/// Runs the command `cli` names. Errors are the command's, for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command;
    match command {
        Command::Serve(args) => {
            let config = args.resolve().map_err(anyhow::Error::msg)?;
            // Logging started before the config file was read.
            if let Some(level) = config.log_level {
                logging::set_level(level);
            }
            let relay = Relay::start(config).await?;
            let fenced = relay.fenced();
            let stop = stop_on_signal();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = fenced.cancelled() => {}
            }
            relay.shutdown().await;
            if fenced.is_cancelled() {
                anyhow::bail!(
                    "fenced: another relay process started with this --relay-id; this one stopped"
                );
            }
            Ok(())
        }
        Command::Demo(args) => crate::demo::run(args, stop_on_signal()).await,
        Command::ClusterKey(ClusterKeyCmd::Generate { path }) => {
            crate::cluster::ClusterKey::generate_file(&path)?;
            println!(
                "wrote a new cluster key to {}: give every relay of the cluster a copy (mode 0600) \
                 with --cluster-key-file",
                path.display()
            );
            Ok(())
        }
        Command::GeneratePackageAssets { out } => {
            sallyport_common::package_assets::write(Cli::command(), &out)
                .with_context(|| format!("cannot write to {}", out.display()))
        }
        Command::User(UserCmd::Add {
            name, groups, dir, ..
        }) => {
            let password = password_from_stdin()?;
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
        Command::Connector(ConnectorCmd::Add {
            name,
            services,
            replace,
            ttl,
            dir,
        }) => {
            let req = Request::ConnectorAdd {
                name,
                ttl_secs: ttl.as_secs(),
                services,
                replace,
            };
            admin_command(&dir.data_dir, req).await
        }
        Command::Connector(ConnectorCmd::Grant { name, service, dir }) => {
            let req = Request::ConnectorGrant {
                name,
                service,
                grant: true,
            };
            admin_command(&dir.data_dir, req).await
        }
        Command::Connector(ConnectorCmd::Ungrant { name, service, dir }) => {
            let req = Request::ConnectorGrant {
                name,
                service,
                grant: false,
            };
            admin_command(&dir.data_dir, req).await
        }
        Command::SshCa(SshCaCmd::Show { service, dir }) => {
            if !dir.data_dir.is_dir() {
                anyhow::bail!(
                    "{} does not exist: start `sallyport-relay serve --data-dir {}` once first",
                    dir.data_dir.display(),
                    dir.data_dir.display()
                );
            }
            crate::data_dir::prepare(&dir.data_dir)?;
            let service = service
                .map(|s| sallyport_proto::frame::service_name("service name", &s))
                .transpose()?;
            // The CA is a file of its own, not in sled, or a cluster secret
            // in PostgreSQL: no need to ask a running relay.
            let location =
                crate::config::StoreLocation::for_admin(None).map_err(anyhow::Error::msg)?;
            let ca = if location == crate::config::StoreLocation::Sled {
                match &service {
                    Some(s) => crate::ssh_ca::SshCa::load_or_create_for(&dir.data_dir, s)?,
                    None => crate::ssh_ca::SshCa::load_or_create(&dir.data_dir)?,
                }
            } else {
                let store = location.open(&dir.data_dir).await?;
                let pg = store.postgres().context("the store is PostgreSQL")?;
                let path = crate::config::cluster_key_file_for_admin(None)
                    .map_err(anyhow::Error::msg)?
                    .ok_or(crate::cluster::ClusterError::NoKeyFile)?;
                let secrets = crate::cluster::ClusterSecrets::new(
                    pg.clone(),
                    crate::cluster::ClusterKey::load(&path)?,
                )
                .adopting(&dir.data_dir);
                match &service {
                    Some(s) => secrets.ssh_ca_for(s).await?,
                    None => secrets.ssh_ca().await?,
                }
            };
            println!("{}", ca.public_line());
            Ok(())
        }
        Command::Connector(ConnectorCmd::List { dir }) => {
            admin_command(&dir.data_dir, Request::ConnectorList).await
        }
        Command::Connector(ConnectorCmd::Revoke { name, dir }) => {
            admin_command(&dir.data_dir, Request::ConnectorRevoke { name }).await
        }
        Command::User(UserCmd::Totp { name, off, dir }) => {
            admin_command(&dir.data_dir, Request::UserTotp { name, off }).await
        }
        Command::User(UserCmd::List { dir }) => {
            admin_command(&dir.data_dir, Request::UserList).await
        }
        Command::User(UserCmd::Show { name, dir }) => {
            admin_command(&dir.data_dir, Request::UserShow { name }).await
        }
        Command::User(UserCmd::Lock { name, dir }) => {
            admin_command(&dir.data_dir, Request::UserLock { name, lock: true }).await
        }
        Command::User(UserCmd::Unlock { name, dir }) => {
            admin_command(&dir.data_dir, Request::UserLock { name, lock: false }).await
        }
        Command::User(UserCmd::Remove { name, dir }) => {
            admin_command(&dir.data_dir, Request::UserRemove { name }).await
        }
        Command::User(UserCmd::Passwd { name, dir, .. }) => {
            let password = password_from_stdin()?;
            admin_command(&dir.data_dir, Request::UserPasswd { name, password }).await
        }
        Command::User(UserCmd::Groups { name, groups, dir }) => {
            let groups = groups.into_iter().filter(|g| !g.is_empty()).collect();
            admin_command(&dir.data_dir, Request::UserGroups { name, groups }).await
        }
        Command::User(UserCmd::Sessions { name, dir }) => {
            admin_command(&dir.data_dir, Request::UserSessions { name }).await
        }
        Command::User(UserCmd::SignOut { name, dir }) => {
            admin_command(&dir.data_dir, Request::UserSignOut { name }).await
        }
        Command::Device(DeviceCmd::Add {
            name,
            attributes,
            out,
            dir,
        }) => {
            let req = Request::DeviceAdd {
                name,
                attributes: attributes.into_iter().collect(),
            };
            let json = admin_output(&dir.data_dir, req, None).await?;
            let issued: admin::DeviceIssued =
                serde_json::from_str(&json).context("the relay's answer is not a device")?;
            let cert = out.join(format!("{}.crt", issued.name));
            let key = out.join(format!("{}.key", issued.name));
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            std::fs::write(&cert, &issued.cert_pem)
                .with_context(|| format!("cannot write {}", cert.display()))?;
            sallyport_common::fs::write_private(&key, issued.key_pem.as_bytes())
                .with_context(|| format!("cannot write {}", key.display()))?;
            println!(
                "device {} added: certificate {} and key {} (keep the key secret).\n\
                 For a browser, bundle them: openssl pkcs12 -export -in {} -inkey {} -out {}.p12",
                issued.name,
                cert.display(),
                key.display(),
                cert.display(),
                key.display(),
                issued.name
            );
            Ok(())
        }
        Command::Device(DeviceCmd::List { dir }) => {
            admin_command(&dir.data_dir, Request::DeviceList).await
        }
        Command::Device(DeviceCmd::Revoke { name, dir }) => {
            admin_command(&dir.data_dir, Request::DeviceRevoke { name }).await
        }
        Command::Policy(PolicyCmd::Test {
            user,
            service,
            ip,
            device,
            second_factor,
            at,
            risk,
            country,
            config,
            dir,
        }) => {
            let req = Request::PolicyTest(admin::PolicyTest {
                user,
                service,
                ip,
                device,
                second_factor,
                at,
                risk,
                country,
            });
            let mut stdout = admin::WriteSink(std::io::stdout().lock());
            admin_to(&dir.data_dir, req, &mut stdout, config.as_deref()).await
        }
        Command::Policy(PolicyCmd::Log { limit, dir }) => {
            admin_command(&dir.data_dir, Request::PolicyLog { limit }).await
        }
        Command::Audit(AuditCmd::List { filter, limit, dir }) => {
            let filter = filter.into_filter()?;
            admin_command(&dir.data_dir, Request::AuditList { filter, limit }).await
        }
        Command::Audit(AuditCmd::Export {
            format: _,
            filter,
            dir,
        }) => {
            let filter = filter.into_filter()?;
            admin_command(&dir.data_dir, Request::AuditExport { filter }).await
        }
        Command::Audit(AuditCmd::Verify { dir }) => {
            admin_command(&dir.data_dir, Request::AuditVerify).await
        }
        Command::Session(SessionCmd::Terminate { stream, dir }) => {
            admin_command(&dir.data_dir, Request::SessionTerminate { stream }).await
        }
        Command::Store(StoreCmd::Migrate { to, dir }) => {
            let Ok(crate::config::StoreLocation::Postgres(url)) =
                crate::config::StoreLocation::parse(Some(&to))
            else {
                anyhow::bail!("--to is the postgres:// URL of the database to copy the store into");
            };
            let summary = crate::store::migrate::migrate(&dir.data_dir, &url).await?;
            let mut stdout = std::io::stdout().lock();
            summary
                .print(&mut stdout)
                .context("cannot write the output")?;
            writeln!(
                stdout,
                "copied: start the relay with --store (SALLYPORT_STORE) set to the database URL \
                 and the same --data-dir (its certificates and CAs stay files there)"
            )
            .context("cannot write the output")
        }
        Command::Acme(AcmeCmd::Renew { dir }) => {
            admin_command(&dir.data_dir, Request::AcmeRenew).await
        }
        Command::Recording(RecordingCmd::Export { session, out, dir }) => {
            sallyport_proto::client::check_session_id(&session)?;
            let req = Request::RecordingExport { session };
            let Some(path) = out else {
                return admin_command(&dir.data_dir, req).await;
            };
            // Written next to the file and moved into place when complete.
            let tmp = path.with_extension("part");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            let mut sink = admin::WriteSink(std::io::BufWriter::new(file));
            let result = admin_to(&dir.data_dir, req, &mut sink, None).await;
            let result = result.and_then(|()| {
                use std::io::Write as _;
                sink.0
                    .flush()
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("cannot write {}", path.display()))
            });
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}
