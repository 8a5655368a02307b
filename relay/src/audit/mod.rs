//! The audit log: what happened, who did it, on which service, kept so
//! that an admin can trust it. Every event is on disk before the action it
//! records is acknowledged (a sign-in answered, a session opened), and
//! each carries the hash of the one before it, so a changed, removed or
//! reordered event breaks the chain (`sallyport-relay audit verify`).
//!
//! `log.rs` is the chain in sled; `recorder.rs` stores what a session's
//! client reports; this file names the events.

pub mod budget;
mod log;
pub mod recorder;
pub mod recording;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use log::{
    AuditLog, ClientAppend, Filter, Record, Retention, DEFAULT_MAX_AGE, DEFAULT_MAX_EVENTS,
};

use sallyport_proto::client::SessionEvent;

use crate::policy::{Inputs, Stage};

/// Something the relay saw happen.
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
        /// The OpenID provider of a single sign-on (absent for a password).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<String>,
        /// The provider's subject (`sub`) for the user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// The groups the provider gave the user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        groups: Option<Vec<String>>,
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
}
