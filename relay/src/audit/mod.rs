//! The audit log: what happened, who did it, on which service, kept so
//! that an admin can trust it. Every event is on disk before the action it
//! records is acknowledged (a sign-in answered, a session opened), and
//! each carries the hash of the one before it, so a changed, removed or
//! reordered event breaks the chain (`sallyport-relay audit verify`).
//!
//! `log.rs` is the chain in sled; `pg.rs` the same chain in PostgreSQL,
//! which the relays of a cluster append to together; `recorder.rs` stores what a session's
//! client reports; this file names the events.

pub mod budget;
mod chain;
pub mod code;
mod log;
pub mod pg;
pub mod recorder;
pub mod recording;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use chain::AuditLog;
pub use log::{ClientAppend, Filter, Record, Retention, DEFAULT_MAX_AGE, DEFAULT_MAX_EVENTS};
pub(crate) use log::{SledChain, META_ANCHOR};

use sallyport_proto::client::SessionEvent;

use crate::policy::{Inputs, Stage};

/// Who did an admin or identity action, as its audit event records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Actor {
    /// `sallyport-relay <command>`: through the running relay's admin
    /// socket (the OS user is the socket peer's, from `SO_PEERCRED`), or
    /// on the data dir when no relay runs (the user running the command).
    Cli {
        /// The OS user's name (`uid N` when it has none).
        os_user: String,
        /// The OS user's id.
        uid: u32,
    },
    /// A signed-in user, in the browser or with the CLI's bearer token:
    /// on their own account, or an admin on the admin pages.
    Web {
        /// The signed-in user.
        user: String,
    },
    /// The relay itself, e.g. reloading the policy when its file changed.
    Relay {
        /// What set it off (`SIGHUP`, `config file changed`).
        trigger: String,
    },
}

impl Actor {
    /// The OS user running this process, as a [`Actor::Cli`].
    pub fn this_process() -> Self {
        Self::cli(rustix::process::geteuid().as_raw())
    }

    /// The OS user `uid`, named from the system's user database.
    pub fn cli(uid: u32) -> Self {
        Self::Cli {
            os_user: os_user_name(uid).unwrap_or_else(|| format!("uid {uid}")),
            uid,
        }
    }

    /// One line for people: `cli (root)`, `alice`, `relay (SIGHUP)`.
    pub fn describe(&self) -> String {
        match self {
            Actor::Cli { os_user, .. } => format!("cli ({os_user})"),
            Actor::Web { user } => user.clone(),
            Actor::Relay { trigger } => format!("relay ({trigger})"),
        }
    }
}

/// Longest `/etc/passwd` the relay reads to name an OS user.
const MAX_PASSWD_LEN: u64 = 4 * 1024 * 1024;

/// The name of OS user `uid` in `/etc/passwd` (`name:x:uid:...`). The
/// workspace has no libc user-database binding; the file is what
/// `getpwuid` reads on the systems the relay runs on (no NSS lookups:
/// a directory user shows as `uid N`).
fn os_user_name(uid: u32) -> Option<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open("/etc/passwd")
        .ok()?
        .take(MAX_PASSWD_LEN)
        .read_to_string(&mut text)
        .ok()?;
    passwd_name(&text, uid)
}

fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// Something the relay saw happen.
// The tests reach it through `test_hooks` (feature `test-hooks`); its
// fields are named as stored and not documented one by one.
#[cfg_attr(feature = "test-hooks", allow(missing_docs))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    SignIn {
        user: String,
        ip: IpAddr,
        ok: bool,
        second_factor: bool,
        /// Why a sign-in failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Sign-ins ended: by their user (`POST /api/logout`, one sign-in) or
    /// by an admin (`user sign-out`, all of a user's).
    SignOut {
        user: String,
        /// Sign-ins ended.
        sign_ins: usize,
        /// Live sessions they had, ended with them.
        sessions: usize,
        by_admin: bool,
        /// Who ended them (absent in records from before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Actor>,
    },
    /// An admin listed a user's sign-ins (`user sign-ins`): their
    /// addresses and times are personal data.
    SignInsListed {
        user: String,
        sign_ins: usize,
    },
    /// A policy decision, with everything it was made from.
    Decision {
        stage: Stage,
        allowed: bool,
        rule: Option<String>,
        reason: String,
        inputs: Box<Inputs>,
    },
    CertIssued {
        user: String,
        service: String,
        principal: String,
        key_id: String,
        /// The certificate's serial number (what a KRL revokes it by).
        #[serde(default)]
        serial: u64,
        valid_before: u64,
    },
    ConnectorConnected {
        connector: String,
        remote: String,
    },
    ConnectorDisconnected {
        connector: String,
        reason: String,
    },
    ConnectorRevoked {
        connector: String,
        /// Who revoked it (absent in records from before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Actor>,
    },
    /// A connector enrolled with a token; `replaced` when the token came
    /// from `connector add --replace` and took over an enrolled name.
    ConnectorEnrolled {
        connector: String,
        remote: String,
        replaced: bool,
    },
    /// An admin granted (`granted = true`) or withdrew a service name.
    ConnectorGrants {
        connector: String,
        service: String,
        granted: bool,
        /// Who did it (absent in records from before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Actor>,
    },
    /// A connector's hello named a service it was not granted: the relay
    /// sends it no session for that name.
    ConnectorServiceRefused {
        connector: String,
        service: String,
        reason: String,
    },
    /// The relay opened a stream to a connector for a client's socket (one
    /// terminal session has one per socket it came on).
    StreamOpened {
        /// The relay's id of the stream (`session` in records written
        /// before streams were named so).
        #[serde(alias = "session")]
        stream: String,
        service: String,
        user: String,
        connector: String,
        client: String,
    },
    StreamClosed {
        /// As in [`Event::StreamOpened`].
        #[serde(alias = "session")]
        stream: String,
        service: String,
        user: String,
        bytes_up: u64,
        bytes_down: u64,
        millis: u64,
    },
    /// Reported by the client about its SSH session (see
    /// `sallyport_proto::client::SessionEvent`); `session` is the client's
    /// session id (the recording), `stream` the relay's stream it came on.
    Client {
        session: String,
        seq: u64,
        t_ms: u64,
        user: String,
        service: String,
        stream: String,
        event: SessionEvent,
    },
    /// A user signed in through an OpenID Connect provider (or was
    /// refused after the provider's answer).
    SsoSignIn {
        /// The provider's name in the relay's config.
        provider: String,
        /// The ID token's `sub`: who the provider says it is.
        subject: String,
        /// The Sallyport user name the claims map to.
        user: String,
        /// The groups the provider gave, as policy sees them.
        groups: Vec<String>,
        ip: IpAddr,
        ok: bool,
        /// Whether the provider's `amr` or `acr` claim counts as the
        /// second factor (the provider's `second_factor_amr` and
        /// `second_factor_acr`).
        #[serde(default)]
        second_factor: bool,
        /// Why it was refused.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `user add`.
    UserAdded {
        user: String,
        groups: Vec<String>,
        by: Actor,
    },
    /// `user remove`: the user, their sign-ins and live sessions are gone.
    UserRemoved {
        user: String,
        /// Sign-ins ended with it.
        sign_ins: usize,
        /// Live sessions closed with it.
        sessions: usize,
        by: Actor,
    },
    /// `user lock`: sign-in refused, sign-ins ended, live sessions closed.
    UserLocked {
        user: String,
        sign_ins: usize,
        sessions: usize,
        by: Actor,
    },
    /// `user unlock`.
    UserUnlocked {
        user: String,
        by: Actor,
    },
    /// `user passwd`, or the user on their account page.
    PasswordChanged {
        user: String,
        by: Actor,
    },
    /// `user groups`.
    GroupsChanged {
        user: String,
        before: Vec<String>,
        after: Vec<String>,
        by: Actor,
    },
    /// One-time codes put in force (`user totp`, or confirmed on the
    /// account page); `replaced` when the user had them already.
    TotpEnrolled {
        user: String,
        replaced: bool,
        by: Actor,
    },
    /// One-time codes turned off (`user totp --off`).
    TotpReset {
        user: String,
        by: Actor,
    },
    /// `device add`.
    DeviceAdded {
        device: String,
        attributes: std::collections::BTreeMap<String, String>,
        by: Actor,
    },
    /// `device revoke`.
    DeviceRevoked {
        device: String,
        by: Actor,
    },
    /// `connector add`: a one-time enrolment token (never the secret).
    EnrolmentTokenIssued {
        connector: String,
        /// The names granted with it.
        services: Vec<String>,
        /// Unix seconds it stops working.
        expires: u64,
        replace: bool,
        by: Actor,
    },
    /// The policy was read again: `ok` when it is now in force, else the
    /// old one stays and `reason` says why.
    PolicyReloaded {
        /// The config file.
        path: String,
        /// SHA-256 (hex) of the file's bytes as read (absent when it could
        /// not be read).
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        by: Actor,
    },
    /// An admin ended one live session.
    SessionTerminated {
        stream: String,
        user: String,
        service: String,
        by: Actor,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_users_are_named_from_the_passwd_file() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nbad line\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(passwd_name(passwd, 5), None);
        assert_eq!(
            Actor::Cli {
                os_user: "root".into(),
                uid: 0
            }
            .describe(),
            "cli (root)"
        );
    }
}
