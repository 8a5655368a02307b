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
use sallyport_relay::policy::PolicyHandle;
use sallyport_relay::store::Store;
use sallyport_relay::util::parse_duration;
use sallyport_relay::Relay;
use tokio_util::sync::CancellationToken;

/// Sallyport relay: connectors dial in over QUIC, people reach their services over HTTPS.
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
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The audit log: sign-ins, decisions, certificates, connectors, sessions.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Session recordings (what the client reported of a terminal session).
    #[command(subcommand)]
    Recording(RecordingCmd),
}

#[derive(Subcommand)]
enum RecordingCmd {
    /// Write a session's recording as asciicast v2 (for `asciinema play`).
    Export {
        /// The session id (as in `audit list --type client`).
        session: String,
        /// The file to write [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(clap::Args)]
struct AuditFilter {
    /// Events since a time (RFC 3339) or for a duration back (e.g. 1h, 7d).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    service: Option<String>,
    /// One terminal session (its id, as in `client` events): its events and
    /// the stream events of every stream it came on. A stream id also works.
    #[arg(long)]
    session: Option<String>,
    /// One stream (the relay's id, as in `stream_opened`): its stream events
    /// and the client events it carried.
    #[arg(long)]
    stream: Option<String>,
    /// Events of one type: sign_in, decision, cert_issued, connector_connected,
    /// connector_disconnected, connector_revoked, connector_enrolled,
    /// connector_grants, connector_service_refused, stream_opened, stream_closed,
    /// client.
    #[arg(long = "type")]
    kind: Option<String>,
}

impl AuditFilter {
    fn into_filter(self) -> anyhow::Result<sallyport_relay::audit::Filter> {
        let since_ms = match self.since {
            None => None,
            Some(s) => Some(match parse_duration(&s) {
                Ok(d) => sallyport_relay::util::now_millis().saturating_sub(d.as_millis() as u64),
                Err(_) => parse_time(&s).map_err(anyhow::Error::msg)? * 1000,
            }),
        };
        Ok(sallyport_relay::audit::Filter {
            since_ms,
            user: self.user,
            service: self.service,
            session: self.session,
            stream: self.stream,
            kind: self.kind,
            after_seq: None,
        })
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// The most recent events, one line each.
    List {
        #[command(flatten)]
        filter: AuditFilter,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Every event (or those the filters pick), oldest first, as JSON lines with their hashes.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        #[command(flatten)]
        filter: AuditFilter,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Check that no event was changed, removed or reordered.
    Verify {
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Issue a certificate for a device; writes NAME.crt and NAME.key to --out.
    Add {
        name: String,
        /// A posture attribute recorded with the device (repeatable), e.g. --attr disk=encrypted.
        #[arg(long = "attr", value_parser = parse_attr)]
        attributes: Vec<(String, String)>,
        /// Directory for the certificate and key.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Show devices and their attributes.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Stop counting a device's certificate as a device.
    Revoke {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Explain the decision for a user reaching a service with the given inputs.
    Test {
        #[arg(long)]
        user: String,
        #[arg(long)]
        service: String,
        /// The source address.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// A registered device's name (as if its certificate were presented).
        #[arg(long)]
        device: Option<String>,
        /// As if the sign-in used a one-time code.
        #[arg(long)]
        second_factor: bool,
        /// When: unix seconds or RFC 3339 (2026-11-30T09:00:00Z) [default: now].
        #[arg(long, value_parser = parse_time)]
        at: Option<u64>,
        /// Use this risk score instead of the one the relay computes.
        #[arg(long)]
        risk: Option<u32>,
        /// Use this country code instead of the database's.
        #[arg(long)]
        country: Option<String>,
        /// The relay's config file, when the relay is not running.
        #[arg(long, env = "SALLYPORT_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print the most recent decisions with their inputs, as JSON lines.
    Log {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        dir: DataDir,
    },
}

fn parse_attr(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp().max(0) as u64)
        .map_err(|_| format!("{s:?} is neither unix seconds nor RFC 3339 time"))
}

#[derive(Subcommand)]
enum SshCaCmd {
    /// Print the CA's public key, for sshd's TrustedUserCAKeys.
    Show {
        /// The CA of a service with `separate_ca = true` in its policy.
        #[arg(long)]
        service: Option<String>,
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
    /// Turn on one-time codes (TOTP) for a user: prints a QR code and the
    /// otpauth URI for their authenticator app. Running it again replaces the secret.
    Totp {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// List a user's sign-ins: when they started and expire, the address,
    /// whether a one-time code was used, and their live sessions (never
    /// the token).
    #[command(name = "sign-ins", visible_alias = "sessions")]
    Sessions {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// End all of a user's sign-ins and close their live sessions at once;
    /// their tokens and cookies stop working.
    SignOut {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
enum ConnectorCmd {
    /// Issue a one-time enrolment token (printed as the last line). Any
    /// earlier unused token for NAME stops working.
    Add {
        name: String,
        /// A service name the connector may serve (repeatable). It is
        /// refused any other name it announces; `connector grant` adds more.
        #[arg(long = "service", value_name = "SVC")]
        services: Vec<String>,
        /// Let the token enrol NAME even though it is enrolled (or was
        /// revoked): the new enrolment replaces the old certificate and
        /// closes its connections. Without --service, the grants stay.
        #[arg(long)]
        replace: bool,
        /// How long the token stays valid, e.g. 30m, 1h, 2d.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: std::time::Duration,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Let a connector serve a service name (takes effect at once).
    Grant {
        name: String,
        service: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Stop a connector serving a service name: no new sessions go to it
    /// (open ones go on).
    Ungrant {
        name: String,
        service: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Show connectors, their state, when they were last seen, and the
    /// services they are granted and announced.
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
            sallyport_relay::data_dir::prepare(&dir.data_dir)?;
            // The CA is a file of its own, not in sled: no need to ask a running relay.
            let ca = match service {
                Some(s) => {
                    let s = sallyport_proto::frame::service_name("service name", &s)?;
                    sallyport_relay::ssh_ca::SshCa::load_or_create_for(&dir.data_dir, &s)?
                }
                None => sallyport_relay::ssh_ca::SshCa::load_or_create(&dir.data_dir)?,
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
        Command::User(UserCmd::Totp { name, dir }) => {
            admin_command(&dir.data_dir, Request::UserTotp { name }).await
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
            sallyport_relay::util::write_private(&key, issued.key_pem.as_bytes())
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

/// Runs an admin command and prints its output as it comes.
async fn admin_command(data_dir: &Path, req: Request) -> anyhow::Result<()> {
    let mut stdout = admin::WriteSink(std::io::BufWriter::new(std::io::stdout().lock()));
    let result = admin_to(data_dir, req, &mut stdout, None).await;
    use std::io::Write as _;
    let flushed = stdout.0.flush();
    result?;
    flushed.context("cannot write the output")
}

/// Runs an admin command and returns its output, for the commands whose
/// output the CLI reads (a few lines).
async fn admin_output(
    data_dir: &Path,
    req: Request,
    config: Option<&Path>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    admin_to(data_dir, req, &mut out, config).await?;
    Ok(out.trim_end().to_owned())
}

/// Runs an admin command through the running relay, or on the data dir
/// directly (with the policy of `config`, if given), writing its output to
/// `out` as it comes.
async fn admin_to(
    data_dir: &Path,
    req: Request,
    out: &mut dyn admin::Sink,
    config: Option<&Path>,
) -> anyhow::Result<()> {
    // Before talking to the socket in it: in a data dir others can swap,
    // the socket may not be the relay's.
    if data_dir.exists() {
        sallyport_relay::data_dir::prepare(data_dir)?;
    }
    if let Some(reply) = admin::send_to_running(data_dir, &req, out).await {
        return reply.map_err(|e| match e {
            admin::AdminError::Failed(text) => anyhow::Error::msg(text),
            other => anyhow::Error::new(other),
        });
    }
    if !data_dir.join("db").exists() {
        anyhow::bail!(
            "{} holds no relay data: start `sallyport-relay serve --data-dir {}` once first",
            data_dir.display(),
            data_dir.display()
        );
    }
    let store = Store::open(data_dir)?;
    let ctx = AdminCtx {
        audit: Arc::new(sallyport_relay::audit::AuditLog::open(&store)?),
        store,
        ca: Arc::new(RelayCa::load_or_create(data_dir)?),
        registry: None,
        live: None,
        policy: match config {
            Some(path) => Some(Arc::new(
                PolicyHandle::load(Some(path.to_owned()), Vec::new())
                    .map_err(anyhow::Error::msg)?,
            )),
            None => None,
        },
    };
    // sled blocks: off the async workers, but it may write to `out` here.
    tokio::task::block_in_place(|| admin::execute_to(&ctx, req, out)).map_err(anyhow::Error::msg)
}
