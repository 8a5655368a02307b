use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sallyport_client::api::{self, RelayUrl};
use sallyport_client::credentials::{self, Credentials};
use sallyport_client::{certs, proxy, ClientError};
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
    /// Sign in and store the session under $SALLYPORT_HOME (default ~/.config/sallyport).
    Login {
        /// The relay's URL, e.g. https://relay.example.com.
        #[arg(long, env = "SALLYPORT_RELAY")]
        relay: String,
        #[arg(long, env = "SALLYPORT_USER")]
        user: String,
        /// Read the password from standard input (required: never put it on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Trust this PEM certificate for the relay (e.g. its self-signed one)
        /// instead of the public web PKI.
        #[arg(long, env = "SALLYPORT_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The one-time code from your authenticator app, if your account has one.
        #[arg(long)]
        code: Option<String>,
    },
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
            ca_cert,
            code,
            ..
        } => {
            let relay = RelayUrl::parse(&relay)?;
            let ca_pem = match ca_cert {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|source| ClientError::File { path, source })?,
                ),
                None => None,
            };
            let mut password = String::new();
            std::io::stdin().take(4096).read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            let tls = api::tls_config(ca_pem.as_deref())?;
            let resp = api::login(&relay, tls, &user, password, code.as_deref()).await?;
            Credentials {
                relay: relay.base.clone(),
                user: resp.user.clone(),
                token: resp.token,
                expires: resp.expires,
                ca_pem,
            }
            .save(&home)?;
            eprintln!("signed in to {} as {}", relay.base, resp.user);
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
