#![warn(missing_docs)]
#![forbid(unsafe_code)]
//! The Sallyport relay: the QUIC endpoint connectors dial, the HTTPS and
//! WebSocket endpoint people use, local identity, and the admin commands.
//! `main.rs` only parses arguments; everything here can be driven by tests.

mod admin;
mod audit;
pub mod cli;
mod cluster;
mod config;
mod data_dir;
mod demo;
mod health;
mod http_client;
mod identity;
mod live;
mod metrics;
mod oidc;
mod pipe;
mod pki;
mod policy;
mod server;
mod ssh_ca;
mod store;
mod tls;
mod totp;
mod tunnel;
mod web;

pub use audit::{Filter as AuditFilter, Record as AuditRecord};
pub use config::{ServeArgs, ServeConfig, StoreLocation};
pub use server::Relay;
pub use store::{SledStore, Store};

/// The relay's stored records and its PostgreSQL engine, for tools and
/// tests that use them directly.
pub mod storage {
    pub use crate::store::{
        ConnectorRecord, ConnectorState, DeviceRecord, Failure, Migration, PgStore, RelayRecord,
        SignInRecord, SsoLink, StoreError, TokenRecord, TokenRefusal, UserRecord,
        MAX_FAILURES_KEPT, MIGRATIONS,
    };
}
pub use web::PublicUrl;

/// The admin socket's messages, for programs (and tests) that drive a relay
/// the way `sallyport-relay`'s subcommands do: over its socket, or in
/// process with [`Relay::admin`].
pub mod admin_api {
    pub use crate::admin::{ReplyFrame, Request, MAX_MESSAGE_LEN, OUTPUT_CHUNK};
    /// The admin pages' routes (`/admin/...`, `/api/admin/...`).
    pub use crate::web::admin::route_list as web_routes;
}

/// The relay's limits and defaults that an admin (or a test) can observe
/// from outside.
pub mod limits {
    pub use crate::audit::budget::{
        MAX_CONTROL_EVENTS_PER_SESSION, MAX_SESSION_IDS_PER_SOCKET,
        MAX_UNBACKED_TERMINAL_BYTES_PER_SESSION,
    };
    pub use crate::config::DEFAULT_MAX_CONNECTIONS_PER_CONNECTOR;
    pub use crate::identity::MAX_FAILURES_PER_WINDOW;
    pub use crate::live::{
        DEFAULT_MAX_SESSIONS_PER_USER, DEFAULT_MAX_SESSIONS_PER_USER_PER_SERVICE,
    };
    pub use crate::ssh_ca::DEFAULT_CERT_TTL;
    pub use crate::tunnel::enrol::MAX_ENROLMENTS_PER_ADDRESS;
    pub use crate::web::listener::{DEFAULT_MAX_PER_ADDRESS, FD_RESERVE};
}

/// Hooks for the end-to-end tests only (feature `test-hooks`, which the
/// tests crate turns on): not in a relay built on its own.
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    pub use crate::totp::code_now;

    /// The audit chain's two engines and what they store, for the tests of
    /// the chain in PostgreSQL.
    pub mod audit {
        pub use crate::audit::pg::{PgAuditLog, AUDIT_BATCH_MAX, SCHEMA};
        pub use crate::audit::{AuditLog, ClientAppend, Event, Filter, Record, Retention};
    }
}
