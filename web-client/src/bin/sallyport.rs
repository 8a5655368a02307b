use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory as _, Parser, Subcommand};
use sallyport_client::api::{self, RelayUrl};
use sallyport_client::credentials::{self, Credentials};
use sallyport_client::login::{self, Password};
use sallyport_client::{certs, loopback, proxy, ssh_config, ssh_config_file, ClientError};
use sallyport_common::time::now_secs;
use sallyport_proto::client::SshCertRequest;

/// Sallyport client: sign in to a relay and reach its SSH services with stock OpenSSH.
#[derive(Parser)]
// Named for the binary, not the crate: `--version`, man pages, completions.
#[command(name = "sallyport", version, about)]
struct Cli {
    /// Where the sign-in is kept [default: ~/.config/sallyport].
    #[arg(long, global = true, env = "SALLYPORT_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in and store the sign-in under $SALLYPORT_HOME (default ~/.config/sallyport).
    ///
    /// Without --password or --password-stdin, through the browser: the relay's
    /// sign-in page opens (or its URL is printed) and hands the result back to
    /// this command on a loopback port.
    Login {
        /// The relay's URL, e.g. https://relay.example.com.
        #[arg(long, env = "SALLYPORT_RELAY")]
        relay: String,
        /// Your Sallyport user name (with --password or --password-stdin).
        #[arg(long, env = "SALLYPORT_USER")]
        user: Option<String>,
        /// Ask for the password (and a one-time code, if needed) on the terminal.
        #[arg(long, requires = "user", conflicts_with = "password_stdin")]
        password: bool,
        /// Read the password from standard input, for scripts (never put it on
        /// the command line).
        #[arg(long, requires = "user")]
        password_stdin: bool,
        /// Do not start a browser: print the sign-in URL to open elsewhere.
        #[arg(long, conflicts_with_all = ["password", "password_stdin"])]
        no_browser: bool,
        /// How long to wait for the browser, in seconds.
        #[arg(long, default_value_t = loopback::SIGN_IN_TIMEOUT.as_secs())]
        timeout_secs: u64,
        /// Also trust this PEM certificate for the relay (e.g. its self-signed
        /// one), besides the system's trust store and the public web PKI.
        #[arg(long, env = "SALLYPORT_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The one-time code from your authenticator app, if your account has one.
        #[arg(long)]
        code: Option<String>,
    },
    /// End the sign-in on the relay and forget it here.
    Logout,
    /// Who is signed in, to which relay, and until when.
    Status,
    /// The services you may open, online or not, and why any is denied.
    Ls,
    /// Bridge stdin/stdout to SERVICE, for `ssh -o ProxyCommand='sallyport proxy %n' USER@SERVICE`.
    /// Service names are case-insensitive.
    Proxy {
        #[arg(value_parser = service_arg)]
        service: String,
    },
    /// Make a key pair and have the relay's SSH CA certify it for SERVICE, for stock OpenSSH.
    SshCert {
        #[arg(value_parser = service_arg)]
        service: String,
        /// The account to log in as [default: your Sallyport user name].
        #[arg(long)]
        principal: Option<String>,
        /// Ask for a shorter validity than the relay's, in seconds.
        #[arg(long)]
        valid_secs: Option<u64>,
        /// Where to write the key and certificate [default: $SALLYPORT_HOME/certs].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only if the certificate there ends within --renew-before seconds
        /// (or is missing): for `Match exec` in ssh_config. Quiet; exit 0
        /// when a valid certificate is in place, 1 (with the reason) when
        /// none could be had.
        #[arg(long)]
        if_expiring: bool,
        /// With --if-expiring: renew this many seconds before the end.
        #[arg(long, default_value_t = certs::RENEW_MARGIN_SECS, requires = "if_expiring")]
        renew_before: u64,
        /// Also load the key and certificate into the running ssh-agent,
        /// for as long as the certificate is valid (`ssh-add -t`).
        #[arg(long)]
        agent: bool,
    },
    /// OpenSSH configuration for the services you may open, so that plain
    /// `ssh SERVICE` works: ProxyCommand, the attested host keys, and
    /// certificates renewed on demand. Prints it, or with --write merges it
    /// into ~/.ssh/config between `# BEGIN sallyport RELAY` and
    /// `# END sallyport RELAY`.
    SshConfig {
        /// Merge into ~/.ssh/config (created, mode 0600, if missing)
        /// instead of printing.
        #[arg(long)]
        write: bool,
        /// Renewed certificates are also loaded into ssh-agent.
        #[arg(long)]
        agent: bool,
        /// Renew certificates this many seconds before they end.
        #[arg(long, default_value_t = certs::RENEW_MARGIN_SECS)]
        renew_before: u64,
    },
    /// Writes the man pages and shell completions packages ship (see
    /// `scripts/package.sh`).
    #[command(name = sallyport_common::package_assets::COMMAND, hide = true)]
    GeneratePackageAssets {
        /// The directory to write `man/` and `completions/` into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::GeneratePackageAssets { out } = &cli.command {
        return match sallyport_common::package_assets::write(Cli::command(), out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sallyport: cannot write to {}: {e}", out.display());
                ExitCode::FAILURE
            }
        };
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr: ssh shows it to the user as is.
            eprintln!("sallyport: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let home = match cli.home {
        Some(home) => home,
        None => credentials::home()?,
    };
    match cli.command {
        Command::Login {
            relay,
            user,
            password,
            password_stdin,
            no_browser,
            timeout_secs,
            ca_cert,
            code,
        } => {
            let relay = RelayUrl::parse(&relay)?;
            let ca_pem = match ca_cert {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|source| ClientError::File { path, source })?,
                ),
                None => None,
            };
            let tls = api::tls_config(ca_pem.as_deref())?;
            let source = if password {
                Some(Password::Prompt)
            } else if password_stdin {
                Some(Password::Stdin)
            } else {
                None
            };
            let resp = match (source, user) {
                (Some(source), Some(user)) => {
                    login::with_password(&relay, tls, &user, source, code).await?
                }
                _ => {
                    let timeout = Duration::from_secs(timeout_secs);
                    login::through_browser(&relay, tls, !no_browser, timeout).await?
                }
            };
            Credentials {
                relay: relay.base.clone(),
                user: resp.user.clone(),
                token: resp.token,
                expires: resp.expires,
                ca_pem,
            }
            .save(&home)?;
            eprintln!(
                "signed in to {} as {} until {}",
                relay.base,
                resp.user,
                credentials::utc(resp.expires)
            );
            Ok(())
        }
        Command::Logout => {
            let creds = match Credentials::load(&home) {
                Ok(c) => c,
                Err(ClientError::Usage(_)) => {
                    eprintln!("not signed in");
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            // Forgotten here whatever the relay says: the person asked to sign out.
            let ended = match RelayUrl::parse(&creds.relay) {
                Ok(relay) => match api::tls_config(creds.ca_pem.as_deref()) {
                    Ok(tls) => api::logout(&relay, tls, &creds.token).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            Credentials::forget(&home)?;
            match ended {
                Ok(()) => {
                    eprintln!("signed out of {} ({})", creds.relay, creds.user);
                    Ok(())
                }
                Err(e) => Err(ClientError::Usage(format!(
                    "forgot the sign-in here, but could not end it on the relay ({e}); it ends by itself at {}",
                    credentials::utc(creds.expires)
                ))),
            }
        }
        Command::Status => {
            let creds = Credentials::load(&home)?;
            let now = now_secs();
            if creds.expired(now) {
                return Err(ClientError::Usage(format!(
                    "signed out: the sign-in of {} at {} expired at {}; run `sallyport login --relay {}`",
                    creds.user,
                    creds.relay,
                    credentials::utc(creds.expires),
                    creds.relay
                )));
            }
            let relay = RelayUrl::parse(&creds.relay)?;
            let tls = api::tls_config(creds.ca_pem.as_deref())?;
            let checked = match api::me(&relay, tls, &creds.token).await {
                Ok(me) if me.second_factor => " (checked with the relay; with a one-time code)",
                Ok(_) => " (checked with the relay)",
                Err(ClientError::Unauthorized(_)) => {
                    return Err(ClientError::Usage(format!(
                        "signed out: the relay has ended the sign-in of {} at {}; run `sallyport login --relay {}`",
                        creds.user, creds.relay, creds.relay
                    )))
                }
                Err(e) => {
                    eprintln!("sallyport: could not check with the relay: {e}");
                    ""
                }
            };
            println!("user:    {}", creds.user);
            println!("relay:   {}", creds.relay);
            println!(
                "expires: {} (in {}){checked}",
                credentials::utc(creds.expires),
                credentials::span(creds.expires - now)
            );
            Ok(())
        }
        Command::Ls => {
            let creds = Credentials::load(&home)?;
            let relay = RelayUrl::parse(&creds.relay)?;
            let tls = api::tls_config(creds.ca_pem.as_deref())?;
            let services = api::services(&relay, tls, &creds.token).await?;
            if services.is_empty() {
                eprintln!("no services for {} at {}", creds.user, creds.relay);
                return Ok(());
            }
            let width = services
                .iter()
                .map(|s| s.name.len())
                .max()
                .unwrap_or(0)
                .max(7);
            println!("{:width$}  {:7}  ACCESS", "SERVICE", "STATE");
            for s in services {
                let state = if s.online { "online" } else { "offline" };
                let access = match (s.allowed, s.reason) {
                    (true, _) if s.ssh_certificates => "allowed (ssh certificates)".to_owned(),
                    (true, _) => "allowed".to_owned(),
                    (false, Some(reason)) => format!("denied: {reason}"),
                    (false, None) => "denied".to_owned(),
                };
                println!("{:width$}  {state:7}  {access}", s.name);
            }
            Ok(())
        }
        Command::SshCert {
            service,
            principal,
            valid_secs,
            out,
            if_expiring,
            renew_before,
            agent,
        } => {
            let dir = out.unwrap_or_else(|| home.join("certs"));
            // Held until the pair is written: a second `ssh` waits here and
            // then finds the new certificate.
            let _lock = certs::lock(&dir, &service)?;
            if if_expiring {
                if let Some(end) = certs::valid_before(&dir, &service) {
                    if !certs::expiring(end, now_secs(), renew_before) {
                        return Ok(());
                    }
                }
            }
            let creds = Credentials::load(&home)?;
            let relay = RelayUrl::parse(&creds.relay)?;
            let tls = api::tls_config(creds.ca_pem.as_deref())?;
            let (key, public_key) = certs::new_key()?;
            let req = SshCertRequest {
                service: service.clone(),
                public_key,
                principal,
                valid_secs,
            };
            let cert = api::ssh_cert(&relay, tls, &creds.token, &req).await?;
            let key_path = certs::save(&dir, &service, &key, &cert.certificate)?;
            let remaining = cert.valid_before.saturating_sub(now_secs());
            if agent {
                sallyport_client::agent::add(&key_path, remaining)?;
            }
            if !if_expiring {
                eprintln!(
                    "certificate for {} valid for {remaining} s{}; log in with:\n  ssh -i {} -o ProxyCommand='sallyport proxy %n' {}@{service}",
                    cert.principal,
                    if agent { " (and in ssh-agent as long)" } else { "" },
                    key_path.display(),
                    cert.principal
                );
            }
            Ok(())
        }
        Command::SshConfig {
            write,
            agent,
            renew_before,
        } => {
            let creds = Credentials::load(&home)?;
            let relay = RelayUrl::parse(&creds.relay)?;
            let tls = api::tls_config(creds.ca_pem.as_deref())?;
            let services = api::services(&relay, tls, &creds.token).await?;
            let exe = std::env::current_exe()?;
            let home = std::path::absolute(&home)?;
            let known_hosts = home.join("known_hosts");
            let setup = ssh_config::Setup {
                exe: &exe,
                home: &home,
                certs: &home.join("certs"),
                known_hosts: &known_hosts,
                agent,
                renew_before,
            };
            let rendered = ssh_config::render(&setup, &services)?;
            for why in &rendered.skipped {
                eprintln!("sallyport: skipped {why}");
            }
            sallyport_common::fs::create_private_dir(&home).map_err(|source| {
                ClientError::File {
                    path: home.clone(),
                    source,
                }
            })?;
            sallyport_common::fs::write_private(&known_hosts, rendered.known_hosts.as_bytes())
                .map_err(|source| ClientError::File {
                    path: known_hosts.clone(),
                    source,
                })?;
            let block = ssh_config_file::wrap(&creds.relay, &rendered.blocks);
            if write {
                let path = ssh_config_file::default_path()?;
                ssh_config_file::write(&path, &creds.relay, &block)?;
                eprintln!(
                    "wrote {} service(s) to {}: {}",
                    rendered.services.len(),
                    path.display(),
                    rendered.services.join(", ")
                );
            } else {
                print!("{block}");
            }
            Ok(())
        }
        Command::Proxy { service } => {
            let creds = Credentials::load(&home)?;
            let relay = RelayUrl::parse(&creds.relay)?;
            let tls = api::tls_config(creds.ca_pem.as_deref())?;
            let ws = api::open_session(&relay, tls, &creds.token, &service).await?;
            proxy::run(ws).await
        }
        // Handled in `main`, before anything needs a home directory.
        Command::GeneratePackageAssets { .. } => Ok(()),
    }
}

/// A service name as given on the command line, in its canonical
/// (lowercase) form: `ssh Prod-DB` and `ssh prod-db` reach one service.
fn service_arg(value: &str) -> Result<String, String> {
    sallyport_proto::frame::service_name("service name", value).map_err(|e| e.to_string())
}
