use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sallyport_client::api::{self, RelayUrl};
use sallyport_client::credentials::{self, Credentials};
use sallyport_client::login::{self, Password};
use sallyport_client::{certs, loopback, proxy, ClientError};
use sallyport_common::time::now_secs;
use sallyport_proto::client::SshCertRequest;

/// Sallyport client: sign in to a relay and reach its SSH services with stock OpenSSH.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
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
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr: ssh shows it to the user as is.
            eprintln!("sallyport: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), ClientError> {
    let home = credentials::home()?;
    match command {
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
        } => {
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
            let dir = out.unwrap_or_else(|| home.join("certs"));
            let key_path = certs::save(&dir, &service, &key, &cert.certificate)?;
            eprintln!(
                "certificate for {} valid for {} s; log in with:\n  ssh -i {} -o ProxyCommand='sallyport proxy %n' {}@{service}",
                cert.principal,
                cert.valid_before.saturating_sub(now_secs()),
                key_path.display(),
                cert.principal
            );
            Ok(())
        }
        Command::Proxy { service } => {
            let creds = Credentials::load(&home)?;
            let relay = RelayUrl::parse(&creds.relay)?;
            let tls = api::tls_config(creds.ca_pem.as_deref())?;
            let ws = api::open_session(&relay, tls, &creds.token, &service).await?;
            proxy::run(ws).await
        }
    }
}

/// A service name as given on the command line, in its canonical
/// (lowercase) form: `ssh Prod-DB` and `ssh prod-db` reach one service.
fn service_arg(value: &str) -> Result<String, String> {
    sallyport_proto::frame::service_name("service name", value).map_err(|e| e.to_string())
}
