//! The relay's state behind one seam: typed records (users, sign-ins,
//! enrolment tokens, connectors, devices, second-factor and risk facts) that
//! [`Store`] keeps in one of two engines:
//!
//! - sled ([`SledStore`]), embedded under the data dir: the default,
//!   for a single relay and for `demo`;
//! - PostgreSQL (`--store postgres://...`), shared by the relays of a
//!   cluster, where every read-modify-write that must be atomic across
//!   relays is one statement or one transaction.
//!
//! Both engines keep the same serde records, so `store migrate` copies one
//! into the other. Every write that an admin or a user waits on is durable
//! (flushed, or committed) before the call returns.

use std::path::Path;

use sallyport_proto::tunnel::ServiceInfo;
use serde::{Deserialize, Serialize};

use sallyport_common::time::now_secs;

pub mod migrate;
mod postgres;
pub mod sled;

pub use self::sled::SledStore;
pub use postgres::{Migration, PgStore, RelayRecord, MIGRATIONS};

/// Why the relay's store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sled database could not be opened.
    #[error(
        "cannot open the relay's database in {path}: {source} (is another sallyport-relay using this --data-dir?)"
    )]
    Open {
        /// The database's directory.
        path: String,
        /// What sled said.
        source: ::sled::Error,
    },
    /// sled failed.
    #[error("database error: {0}")]
    Sled(#[from] ::sled::Error),
    /// A stored record does not parse.
    #[error("database record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// PostgreSQL cannot be reached now (refused, closed, or no connection
    /// from the pool in time): a passing condition, answered with 503.
    #[error("PostgreSQL is unreachable: {0}")]
    Unavailable(String),
    /// PostgreSQL refused a statement (not for want of a connection).
    #[error("PostgreSQL error: {}", postgres::error_chain(.0))]
    Postgres(tokio_postgres::Error),
    /// The `--store` URL, or the TLS set-up it asks for, is not usable.
    #[error("the PostgreSQL store {0}")]
    Config(String),
    /// The database was migrated by a newer relay than this one.
    #[error(
        "the PostgreSQL database has schema version {found}, newer than this sallyport-relay knows (up to {known}): run a relay at least as new as the one that migrated it"
    )]
    SchemaTooNew {
        /// The newest version recorded in `schema_migrations`.
        found: i32,
        /// The newest version this binary has.
        known: i32,
    },
    /// A blocking task of the store panicked or was cancelled.
    #[error("a storage task failed: {0}")]
    Task(String),
}

/// A user who may sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Their user name (the key).
    pub name: String,
    /// argon2id in PHC string form.
    pub password_hash: String,
    /// The groups policy rules name.
    pub groups: Vec<String>,
    /// When the user was added (unix seconds).
    pub created: u64,
    /// Base32 TOTP secret, once a second factor is set up.
    #[serde(default)]
    pub totp_secret: Option<String>,
    /// A secret the user is setting up; in force once they confirm a code.
    #[serde(default)]
    pub totp_pending: Option<String>,
    /// Unix seconds the user was locked (`user lock`): sign-in is refused
    /// and their sign-ins stop working until `user unlock`. Absent in
    /// records from before locking existed: not locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<u64>,
    /// For a user of single sign-on: the provider and subject they sign in
    /// as (their `password_hash` is empty and matches no password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<SsoLink>,
}

/// Which OpenID provider's user a Sallyport user is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoLink {
    /// The provider's name in the relay's config.
    pub provider: String,
    /// The provider's subject (`sub`) for the user.
    pub subject: String,
}

/// A sign-in (a login session): who, since and until when, how. Not a
/// terminal session: one sign-in may open many.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignInRecord {
    /// Who signed in.
    pub user: String,
    /// When (unix seconds).
    pub created: u64,
    /// Until when it is good (unix seconds).
    pub expires: u64,
    /// The sign-in used a one-time code.
    #[serde(default)]
    pub second_factor: bool,
    /// The address the sign-in came from (absent for older records).
    #[serde(default)]
    pub ip: Option<std::net::IpAddr>,
}

/// A device certificate the relay issued, with the posture recorded for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device's name (the key).
    pub name: String,
    /// SHA-256 of the certificate (DER), as presented on HTTPS.
    pub cert_sha256: String,
    /// The posture attributes recorded at issue, for policy.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// When it was issued (unix seconds).
    pub created: u64,
    /// When the certificate expires (unix time).
    pub expires: u64,
    /// The certificate was revoked.
    pub revoked: bool,
}

/// An enrolment token, stored under the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The connector name it enrols.
    pub connector: String,
    /// When it expires (unix seconds).
    pub expires: u64,
    /// It enrolled a connector already.
    pub used: bool,
    /// Issued with `connector add --replace`: enrolling with it replaces
    /// the certificate of a connector that is enrolled (or was revoked).
    /// Any other token for an enrolled name is refused.
    #[serde(default)]
    pub replace: bool,
}

/// Where a connector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    /// A token was issued; the connector has not enrolled yet.
    Pending,
    /// It holds a certificate and may connect.
    Enrolled,
    /// Its certificate was revoked.
    Revoked,
}

/// A connector the relay knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectorRecord {
    /// Its name (the key).
    pub name: String,
    /// Pending, enrolled or revoked.
    pub state: ConnectorState,
    /// When it was added (unix seconds).
    pub created: u64,
    /// SHA-256 of the client certificate issued at enrolment.
    pub cert_sha256: Option<String>,
    /// When it was last heard from (unix seconds).
    pub last_seen: Option<u64>,
    /// Services declared in the connector's last hello (all of them, also
    /// the ones refused for want of a grant).
    #[serde(default)]
    pub services: Vec<ServiceInfo>,
    /// The service names this connector may serve (`connector add --service`,
    /// `connector grant`). `None` only in records written before grants
    /// existed; [`Store::open`] turns those into grants of what they had
    /// announced (see [`ConnectorRecord::grants_migrated`]).
    #[serde(default)]
    pub granted: Option<Vec<String>>,
    /// The grants were taken over from what the connector announced before
    /// grants existed, not given by an admin: `connector list` says so until
    /// an admin grants or ungrants explicitly.
    #[serde(default)]
    pub grants_migrated: bool,
}

impl ConnectorRecord {
    /// A record for a connector that has a token but has not enrolled.
    pub fn pending(name: &str, granted: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            state: ConnectorState::Pending,
            created: now_secs(),
            cert_sha256: None,
            last_seen: None,
            services: Vec::new(),
            granted: Some(granted),
            grants_migrated: false,
        }
    }

    /// True when an admin granted (or the migration kept) `service`.
    pub fn may_serve(&self, service: &str) -> bool {
        self.granted
            .as_ref()
            .is_some_and(|g| g.iter().any(|s| s == service))
    }
}

/// Most failed sign-ins kept per user for the risk score.
pub const MAX_FAILURES_KEPT: usize = 20;

/// One failed sign-in of an existing user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// When (unix seconds).
    pub at: u64,
    /// The network it came from (see `policy::net::network_of`).
    pub net: String,
    /// The password was right and the one-time code wrong.
    pub code: bool,
}

/// Why an enrolment secret was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No such token.
    #[error("the enrolment token is not known to this relay")]
    Unknown,
    /// It enrolled a connector already.
    #[error("the enrolment token was already used; ask the admin for a new one")]
    Used,
    /// It expired.
    #[error("the enrolment token has expired; ask the admin for a new one")]
    Expired,
    /// Its connector was revoked (and the token does not replace it).
    #[error("connector {0} was revoked")]
    Revoked(String),
    /// Its connector is enrolled (and the token does not replace it).
    #[error(
        "connector {0} is already enrolled; only a token from `connector add {0} --replace` can replace it"
    )]
    AlreadyEnrolled(String),
}

/// One kind of record as an engine keeps it, for `store migrate`, which
/// copies each kind's keys and values as they are (sign-ins and tokens stay
/// keyed by the SHA-256 of their secret: the secrets are never known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTable {
    /// Name -> [`UserRecord`] (JSON).
    Users,
    /// Token SHA-256 (hex) -> [`SignInRecord`] (JSON).
    SignIns,
    /// Secret SHA-256 (hex) -> [`TokenRecord`] (JSON).
    Tokens,
    /// Name -> [`ConnectorRecord`] (JSON).
    Connectors,
    /// Certificate SHA-256 (hex) -> connector name.
    ConnectorCerts,
    /// User -> last TOTP step used (u64 big-endian).
    TotpUsed,
    /// User -> recent [`Failure`]s (JSON array).
    SignInFailures,
    /// `user\0what` -> first use (unix seconds, JSON number).
    Known,
    /// Name -> [`DeviceRecord`] (JSON).
    Devices,
    /// Certificate SHA-256 (hex) -> device name.
    DeviceCerts,
    /// Setting -> value (text).
    Meta,
}

impl RawTable {
    /// Every kind, in the order `store migrate` copies them.
    pub const ALL: [RawTable; 11] = [
        RawTable::Users,
        RawTable::SignIns,
        RawTable::Tokens,
        RawTable::Connectors,
        RawTable::ConnectorCerts,
        RawTable::TotpUsed,
        RawTable::SignInFailures,
        RawTable::Known,
        RawTable::Devices,
        RawTable::DeviceCerts,
        RawTable::Meta,
    ];

    /// The PostgreSQL table that holds the kind (also its name in the
    /// summary of `store migrate`).
    pub fn pg_table(self) -> &'static str {
        match self {
            RawTable::Users => "users",
            RawTable::SignIns => "sign_ins",
            RawTable::Tokens => "tokens",
            RawTable::Connectors => "connectors",
            RawTable::ConnectorCerts => "connector_certs",
            RawTable::TotpUsed => "totp_used",
            RawTable::SignInFailures => "sign_in_failures",
            RawTable::Known => "known",
            RawTable::Devices => "devices",
            RawTable::DeviceCerts => "device_certs",
            RawTable::Meta => "meta",
        }
    }
}

/// The relay's state in whichever engine it was opened with. Cheap to
/// clone: clones share it. Every method is async: the PostgreSQL engine
/// waits on the network, the sled engine answers at once.
#[derive(Clone)]
pub struct Store {
    engine: Engine,
}

#[derive(Clone)]
enum Engine {
    Sled(SledStore),
    Postgres(PgStore),
}

/// Forwards a method to the engine the store was opened with.
macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        $(#[$doc])*
        pub async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
            match &self.engine {
                Engine::Sled(s) => s.$name($($arg),*),
                Engine::Postgres(p) => p.$name($($arg),*).await,
            }
        }
    )*};
}

impl Store {
    /// Opens (or creates) the sled engine in `dir/db` and migrates old
    /// records. Errors: the database is locked by another process for more
    /// than a few seconds, or unreadable.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            engine: Engine::Sled(SledStore::open(dir)?),
        })
    }

    /// Connects to the PostgreSQL engine at `url` (`postgres://...`, see
    /// [`PgStore::connect`]) and applies the schema migrations this relay
    /// knows. Errors: unreachable ([`StoreError::Unavailable`]), a bad URL,
    /// or a schema newer than this relay.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            engine: Engine::Postgres(PgStore::connect(url).await?),
        })
    }

    /// The sled engine, when the store is one (the audit log keeps its
    /// chain in trees of the same database).
    pub fn sled(&self) -> Option<&SledStore> {
        match &self.engine {
            Engine::Sled(s) => Some(s),
            Engine::Postgres(_) => None,
        }
    }

    /// The PostgreSQL engine, when the store is one (the audit chain and
    /// the cluster's tables share its pool).
    pub fn postgres(&self) -> Option<&PgStore> {
        match &self.engine {
            Engine::Sled(_) => None,
            Engine::Postgres(p) => Some(p),
        }
    }

    /// Makes every earlier write durable: sled flushes; a PostgreSQL write
    /// is committed before it returns, so there is nothing to do.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sled(s) => s.flush(),
            Engine::Postgres(_) => Ok(()),
        }
    }

    forward! {

        /// The user `name`, if there is one.
        fn user(name: &str) -> Option<UserRecord>;
        /// Adds or replaces a user.
        fn put_user(user: &UserRecord) -> ();
        /// Every user, by name.
        fn users() -> Vec<UserRecord>;
        /// Removes the user `name` and what the relay keeps about their
        /// codes; true if there was one. Their sign-ins are the caller's to
        /// end first.
        fn remove_user(name: &str) -> bool;

        /// Stores a sign-in under the SHA-256 of its `token`.
        fn put_sign_in(token: &str, sign_in: &SignInRecord) -> ();
        /// The live sign-in of `token`, if any; expired ones are removed.
        fn sign_in(token: &str) -> Option<SignInRecord>;
        /// Removes the sign-in of `token` (signing out); returns it if it
        /// existed.
        fn remove_sign_in(token: &str) -> Option<SignInRecord>;
        /// The live sign-ins of `user`, oldest first, each with its id (the
        /// SHA-256 of its token, hex: the sign-in's key, never the token).
        fn sign_ins_of(user: &str) -> Vec<(String, SignInRecord)>;
        /// Removes the sign-in with id `id` (see [`Store::sign_ins_of`]);
        /// durable after the caller's next write or [`Store::flush`].
        fn remove_sign_in_by_id(id: &str) -> bool;

        /// Stores an enrolment token under the SHA-256 of its `secret`.
        fn put_token(secret: &str, token: &TokenRecord) -> ();
        /// Stores a new token for `token.connector` and withdraws every
        /// earlier unused one for that name, so at most one can enrol it.
        /// Returns how many were withdrawn.
        fn issue_token(secret: &str, token: &TokenRecord) -> usize;
        /// The token for `secret` if it may enrol now, without spending it.
        fn check_token(secret: &str) -> Result<TokenRecord, TokenRefusal>;
        /// Marks the token used and returns it. Atomic: of two connectors
        /// racing with one token, at one relay or at two, one wins.
        fn redeem_token(secret: &str) -> Result<TokenRecord, TokenRefusal>;

        /// The connector `name`, if there is one.
        fn connector(name: &str) -> Option<ConnectorRecord>;
        /// Adds or replaces a connector.
        fn put_connector(c: &ConnectorRecord) -> ();
        /// Every connector, by name.
        fn connectors() -> Vec<ConnectorRecord>;
        /// Records the certificate issued to `connector` at enrolment.
        fn enrol_connector(connector: &str, cert_sha256: &str) -> ();
        /// The connector a client certificate was issued to.
        fn connector_by_cert(cert_sha256: &str) -> Option<ConnectorRecord>;
        /// Updates last-seen and the declared services, touching only those
        /// fields (a revocation written meanwhile stays); not made durable
        /// on every heartbeat.
        fn touch_connector(name: &str, services: Option<&[ServiceInfo]>) -> ();
        /// True when some enrolled connector may serve `service`.
        fn service_known(service: &str) -> bool;
        /// Grants (`grant = true`) or withdraws `service` for connector
        /// `name` and returns the updated record; `None` when there is no
        /// such connector. The grants are the admin's from then on.
        fn set_grant(name: &str, service: &str, grant: bool) -> Option<ConnectorRecord>;

        /// Claims a TOTP time step for `user`: true if it is later than
        /// every step used before (RFC 6238 section 5.2: a code is accepted
        /// once), false for a replay. Atomic across relays, and durable.
        fn claim_totp_step(user: &str, step: u64) -> bool;
        /// Forgets the steps used with an old secret.
        fn reset_totp_steps(user: &str) -> ();

        /// Counts a failed sign-in of `user` (for the risk score); at most
        /// [`MAX_FAILURES_KEPT`] are kept.
        fn record_failed_sign_in(user: &str, failure: Failure) -> ();
        /// Failed sign-ins of `user` at or after `since` (unix seconds) that
        /// `pick` selects.
        fn failed_sign_ins_since(
            user: &str,
            since: u64,
            pick: impl Fn(&Failure) -> bool + Send
        ) -> u32;
        /// When `user` first reached a service with `what` (a network or a
        /// device), unix seconds; `None` if never.
        fn first_use(user: &str, what: &str) -> Option<u64>;
        /// Records that `user` reached a service with `what`, keeping the
        /// first time (of two relays racing, the earlier write stays).
        fn note_use(user: &str, what: &str, at: u64) -> ();

        /// The device `name`, if there is one.
        fn device(name: &str) -> Option<DeviceRecord>;
        /// Adds or replaces a device.
        fn put_device(d: &DeviceRecord) -> ();
        /// Every device, by name.
        fn devices() -> Vec<DeviceRecord>;
        /// The live (not revoked, not expired) device whose certificate has
        /// this SHA-256 (hex).
        fn device_by_cert(sha256: &str) -> Option<DeviceRecord>;

        /// A setting the relay keeps for the CLI (`META_*`).
        fn meta(key: &str) -> Option<String>;
        /// Sets a `META_*` setting.
        fn set_meta(key: &str, value: &str) -> ();
    }
}

/// Runs a store call to completion from a blocking thread (the admin
/// commands run on one: password hashing). Must not be called from async
/// code: it would stall the runtime's thread.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}
