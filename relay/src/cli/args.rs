//! The arguments of the relay's subcommands, and their value parsers.

use std::path::PathBuf;

use clap::Subcommand;
use sallyport_common::time::parse_duration;

use super::DataDir;

#[derive(Subcommand)]
pub enum RecordingCmd {
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

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Copy the sled store of a stopped relay into an empty PostgreSQL
    /// database: users, sign-ins, tokens, connectors, devices, second-factor
    /// and risk facts, settings, and the audit chain byte for byte (`audit
    /// verify` gives the same tip). The relay must not be running. A copy
    /// that failed halfway leaves the database non-empty, which a new run
    /// refuses: drop the database, create it again, and run again.
    Migrate {
        /// The database to copy into: postgres://USER:PASSWORD@HOST:PORT/DB
        /// (`?sslmode=disable` for no TLS). Must hold no relay data.
        #[arg(long, value_name = "URL")]
        to: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
pub enum AcmeCmd {
    /// Order a new HTTPS certificate now, due or not (a running relay with
    /// acme_domains; mind the CA's rate limits). SIGHUP renews only when due.
    Renew {
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
pub enum SessionCmd {
    /// End one live session now (its client is told an admin ended it);
    /// the stream id is in `audit list --type stream_opened`.
    Terminate {
        stream: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(clap::Args)]
pub struct AuditFilter {
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
    /// client, and the admin and identity events (user_locked, ...; the
    /// list with their codes is in docs/PROTOCOL.md).
    #[arg(long = "type")]
    kind: Option<String>,
}

impl AuditFilter {
    pub(crate) fn into_filter(self) -> anyhow::Result<crate::audit::Filter> {
        let since_ms = match self.since {
            None => None,
            Some(s) => Some(match parse_duration(&s) {
                Ok(d) => sallyport_common::time::now_millis().saturating_sub(d.as_millis() as u64),
                Err(_) => parse_time(&s).map_err(anyhow::Error::msg)? * 1000,
            }),
        };
        Ok(crate::audit::Filter {
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
pub enum ExportFormat {
    Jsonl,
}

#[derive(Subcommand)]
pub enum AuditCmd {
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
pub enum DeviceCmd {
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
pub enum PolicyCmd {
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

pub fn parse_attr(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp().max(0) as u64)
        .map_err(|_| format!("{s:?} is neither unix seconds nor RFC 3339 time"))
}

#[derive(Subcommand)]
pub enum SshCaCmd {
    /// Print the CA's public key, for sshd's TrustedUserCAKeys.
    Show {
        /// The CA of a service with `separate_ca = true` in its policy.
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
pub enum UserCmd {
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
        /// Turn the user's one-time codes off instead (they lost their
        /// authenticator); sign-in then asks for the password only.
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        dir: DataDir,
    },
    /// List users: state (active or locked), sign-ins, one-time codes, groups.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Show one user: state, groups, when created, sign-ins, live sessions.
    Show {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Lock a user: sign-in is refused, their sign-ins end and their live
    /// sessions close at once, and no SSH certificate is issued to them.
    Lock {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Unlock a locked user: they may sign in again.
    Unlock {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Remove a user: their sign-ins end and their live sessions close at once.
    Remove {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Set a user's password; it is read from stdin.
    Passwd {
        name: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Set a user's groups (comma-separated; none with an empty list): policy
    /// sees them from the next request on.
    Groups {
        name: String,
        #[arg(value_delimiter = ',')]
        groups: Vec<String>,
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
pub enum ConnectorCmd {
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
