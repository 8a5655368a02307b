//! The relay's state in PostgreSQL, for a cluster of relays sharing one
//! database (`--store postgres://...`).
//!
//! The same records as the sled engine, stored as the same JSON (`record
//! jsonb`) beside the key columns that lookups need (schema:
//! `migrations/0001_store.sql`). Every read-modify-write that two relays
//! may race on is one statement or one transaction holding the row's lock,
//! so of two relays spending one enrolment token or one TOTP step, exactly
//! one succeeds. Every call commits before it returns.
//!
//! Connections come from a bounded pool with bounded waits: when PostgreSQL
//! cannot be reached, calls fail with [`StoreError::Unavailable`] within a
//! few seconds instead of hanging, and the pool reconnects by itself once
//! it is back.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use sallyport_common::hash::sha256_hex;
use sallyport_common::time::now_secs;
use sallyport_proto::tunnel::ServiceInfo;
use serde::de::DeserializeOwned;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

use super::{
    ConnectorRecord, ConnectorState, DeviceRecord, Failure, RawTable, SignInRecord, StoreError,
    TokenRecord, TokenRefusal, UserRecord, MAX_FAILURES_KEPT,
};

/// Most connections one relay holds to PostgreSQL.
pub const POOL_SIZE: usize = 16;
/// Longest a call waits for a free connection from the pool.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a new connection may take (TCP, TLS, authentication).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest data sent to PostgreSQL may stay unacknowledged before the
/// connection is given up (TCP_USER_TIMEOUT): a server that vanished
/// without closing its connections fails calls instead of hanging them.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the check of an idle connection before reuse may take.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(3);
/// The `application_name` the relay's sessions carry (in
/// `pg_stat_activity`), unless the URL names another.
pub const APPLICATION_NAME: &str = "sallyport-relay";
/// The advisory lock (`pg_advisory_xact_lock`) that serializes schema
/// migrations of relays starting at once: "SALLYPOR" in ASCII.
pub const MIGRATION_LOCK: i64 = 0x5341_4c4c_5950_4f52;
/// The first key of the advisory lock (two-key form) that serializes token
/// issues for one connector name (the second is the name's hash).
const TOKEN_ISSUE_LOCK: i32 = 0x5450_4f4b; // "TPOK"

/// One step of the schema: applied once, in its own transaction, in
/// ascending `version` order, and recorded in `schema_migrations`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; never reused, never changed once released.
    pub version: i32,
    /// What it does, in a word or two.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration this relay knows, oldest first. A new one goes at the
/// end with the next version number; released ones never change.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "store",
        sql: include_str!("migrations/0001_store.sql"),
    },
    Migration {
        version: 2,
        name: "audit",
        sql: crate::audit::pg::SCHEMA,
    },
    Migration {
        version: 3,
        name: "cluster",
        sql: include_str!("migrations/0003_cluster.sql"),
    },
];

/// The relay's state in one PostgreSQL database. Cheap to clone: clones
/// share the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_connection_error(&e) {
            StoreError::Unavailable(error_chain(&e))
        } else {
            StoreError::Postgres(e)
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            // The pool gives out no connection it could not open: whatever
            // the reason, PostgreSQL cannot be used now.
            PoolError::Backend(e) => StoreError::Unavailable(error_chain(&e)),
            other => StoreError::Unavailable(error_chain(&other)),
        }
    }
}

/// True for errors that say the connection, not the statement, failed:
/// closed, an I/O error, PostgreSQL shutting down or starting, or SQLSTATE
/// class 08 (connection exception).
fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// `e` and its causes, `: `-separated (tokio-postgres says only "db error"
/// or "error connecting to server" at the top).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Unix seconds (or a TOTP step) as PostgreSQL's bigint.
fn db_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A bigint column read back as unix seconds.
fn from_db_int(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Column `i` of `row`, a stored record.
fn record<T: DeserializeOwned>(row: &Row, i: usize) -> Result<T, StoreError> {
    let value: serde_json::Value = row.try_get(i)?;
    Ok(serde_json::from_value(value)?)
}

/// The TLS set-up for `sslmode` other than `disable`: rustls with ring,
/// trusting the operating system's certificate store (where an
/// organization's own CA goes).
fn rustls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "a certificate of the system's store cannot be read");
    }
    roots.add_parsable_certificates(native.certs);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Config(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db?sslmode=...`)
    /// and brings its schema up to date. TLS unless `sslmode=disable`, with
    /// the server's certificate checked against the system's roots.
    /// Errors: [`StoreError::Config`] for a URL that does not parse,
    /// [`StoreError::Unavailable`] when PostgreSQL cannot be reached,
    /// [`StoreError::SchemaTooNew`] when a newer relay migrated it.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Config(format!("URL does not parse: {}", error_chain(&e))))?;
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == SslMode::Disable {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            Manager::from_config(config, rustls_connector()?, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(format!("cannot build the connection pool: {e}")))?;
        let store = PgStore { pool };
        store.migrate_schema(MIGRATIONS).await?;
        store.migrate_records().await?;
        Ok(store)
    }

    /// The connection pool, for modules that keep their own tables in the
    /// same database (the audit chain).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Applies the migrations of `list` that the database has not had, each
    /// in its own transaction under [`MIGRATION_LOCK`], so relays starting
    /// at once apply each exactly once. Refuses a database that has a
    /// version newer than the newest of `list`.
    async fn migrate_schema(&self, list: &[Migration]) -> Result<(), StoreError> {
        let known = list.iter().map(|m| m.version).max().unwrap_or(0);
        let mut client = self.pool.get().await?;
        // At least one round even for an empty list: the version check.
        for migration in list.iter().map(Some).chain([None]) {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            // (No NOTICE that it exists, at every start, in the relay's log.)
            tx.batch_execute(
                "SET LOCAL client_min_messages = warning;
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version int PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await?;
            let newest: Option<i32> = tx
                .query_one("SELECT max(version) FROM schema_migrations", &[])
                .await?
                .try_get(0)?;
            if let Some(found) = newest.filter(|&v| v > known) {
                return Err(StoreError::SchemaTooNew { found, known });
            }
            let Some(m) = migration else {
                tx.commit().await?;
                break;
            };
            let applied = tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[&m.version],
                )
                .await?
                .is_some();
            if !applied {
                tx.batch_execute(m.sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    &[&m.version, &m.name],
                )
                .await?;
                tracing::info!(
                    version = m.version,
                    name = m.name,
                    "applied a schema migration"
                );
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// The sled engine's start-up fixes of old records (see
    /// `Store::migrate_grants` and `Store::migrate_service_case`), for
    /// records copied from an old sled store: each fixed record is rewritten
    /// under its row lock, from its current value.
    async fn migrate_records(&self) -> Result<(), StoreError> {
        let stale: Vec<String> = self
            .connectors()
            .await?
            .into_iter()
            .filter_map(|mut rec| upgrade_connector(&mut rec).then_some(rec.name))
            .collect();
        for name in stale {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT record FROM connectors WHERE name = $1 FOR UPDATE",
                    &[&name],
                )
                .await?;
            if let Some(row) = row {
                let mut rec: ConnectorRecord = record(&row, 0)?;
                if upgrade_connector(&mut rec) {
                    tx.execute(
                        "UPDATE connectors SET record = $2 WHERE name = $1",
                        &[&name, &Json(&rec)],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.query(&stmt, params).await?)
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.query_opt(&stmt, params).await?)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    }

    // ---- users

    /// The user `name`, if there is one.
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.query_opt("SELECT record FROM users WHERE name = $1", &[&name])
            .await?
            .map(|r| record(&r, 0))
            .transpose()
    }

    /// Adds or replaces a user.
    pub async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO users (name, record) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
            &[&user.name, &Json(user)],
        )
        .await?;
        Ok(())
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.query("SELECT record FROM users ORDER BY name COLLATE \"C\"", &[])
            .await?
            .iter()
            .map(|r| record(r, 0))
            .collect()
    }

    /// Removes the user `name` and what the relay keeps about their codes;
    /// true if there was one. Their sign-ins are the caller's to end first.
    pub async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let removed = self
            .execute(
                "WITH codes AS (DELETE FROM totp_used WHERE user_name = $1)
                 DELETE FROM users WHERE name = $1",
                &[&name],
            )
            .await?;
        Ok(removed > 0)
    }

    // ---- sign-ins (keyed by the SHA-256 of the bearer token)

    /// Stores a sign-in under the SHA-256 of its `token`.
    pub async fn put_sign_in(&self, token: &str, sign_in: &SignInRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sign_ins (id, user_name, expires, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET user_name = EXCLUDED.user_name,
                 expires = EXCLUDED.expires, record = EXCLUDED.record",
            &[
                &sha256_hex(token.as_bytes()),
                &sign_in.user,
                &db_int(sign_in.expires),
                &Json(sign_in),
            ],
        )
        .await?;
        Ok(())
    }

    /// The live sign-in of `token`, if any; expired ones are removed.
    pub async fn sign_in(&self, token: &str) -> Result<Option<SignInRecord>, StoreError> {
        let id = sha256_hex(token.as_bytes());
        let Some(row) = self
            .query_opt("SELECT record FROM sign_ins WHERE id = $1", &[&id])
            .await?
        else {
            return Ok(None);
        };
        let s: SignInRecord = record(&row, 0)?;
        if s.expires <= now_secs() {
            self.remove_sign_in_by_id(&id).await?;
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// Removes the sign-in of `token` (signing out); returns it if it existed.
    pub async fn remove_sign_in(&self, token: &str) -> Result<Option<SignInRecord>, StoreError> {
        self.query_opt(
            "DELETE FROM sign_ins WHERE id = $1 RETURNING record",
            &[&sha256_hex(token.as_bytes())],
        )
        .await?
        .map(|r| record(&r, 0))
        .transpose()
    }

    /// The live sign-ins of `user`, oldest first, each with its id (the
    /// SHA-256 of its token, hex: the sign-in's key, never the token).
    /// Expired ones (everyone's) are removed on the way.
    pub async fn sign_ins_of(&self, user: &str) -> Result<Vec<(String, SignInRecord)>, StoreError> {
        let now = db_int(now_secs());
        self.execute("DELETE FROM sign_ins WHERE expires <= $1", &[&now])
            .await?;
        let rows = self
            .query(
                "SELECT id, record FROM sign_ins WHERE user_name = $1 AND expires > $2
                 ORDER BY id COLLATE \"C\"",
                &[&user, &now],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            // Unreadable records are skipped, as the sled engine does.
            let Ok(s) = record::<SignInRecord>(row, 1) else {
                continue;
            };
            out.push((row.try_get::<_, String>(0)?, s));
        }
        out.sort_by_key(|(_, s)| s.created);
        Ok(out)
    }

    /// Removes the sign-in with id `id` (see [`PgStore::sign_ins_of`]).
    pub async fn remove_sign_in_by_id(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .execute("DELETE FROM sign_ins WHERE id = $1", &[&id])
            .await?
            > 0)
    }

    // ---- enrolment tokens (keyed by the SHA-256 of the secret)

    /// Stores an enrolment token under the SHA-256 of its `secret`.
    pub async fn put_token(&self, secret: &str, token: &TokenRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO tokens (secret_sha256, connector, record) VALUES ($1, $2, $3)
             ON CONFLICT (secret_sha256) DO UPDATE SET connector = EXCLUDED.connector,
                 record = EXCLUDED.record",
            &[
                &sha256_hex(secret.as_bytes()),
                &token.connector,
                &Json(token),
            ],
        )
        .await?;
        Ok(())
    }

    /// Stores a new token for `token.connector` and removes every earlier
    /// unused token for that name, so at most one can enrol it: one
    /// transaction, serialized per connector name across relays. Returns how
    /// many earlier tokens were withdrawn.
    pub async fn issue_token(
        &self,
        secret: &str,
        token: &TokenRecord,
    ) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&TOKEN_ISSUE_LOCK, &token.connector],
        )
        .await?;
        let withdrawn = tx
            .execute(
                "DELETE FROM tokens WHERE connector = $1
                 AND NOT coalesce((record->>'used')::boolean, false)",
                &[&token.connector],
            )
            .await?;
        tx.execute(
            "INSERT INTO tokens (secret_sha256, connector, record) VALUES ($1, $2, $3)
             ON CONFLICT (secret_sha256) DO UPDATE SET connector = EXCLUDED.connector,
                 record = EXCLUDED.record",
            &[
                &sha256_hex(secret.as_bytes()),
                &token.connector,
                &Json(token),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(usize::try_from(withdrawn).unwrap_or(usize::MAX))
    }

    /// The token for `secret` if it may enrol now, without spending it: a
    /// request that fails later (a malformed certificate request) leaves the
    /// token usable until it expires.
    pub async fn check_token(
        &self,
        secret: &str,
    ) -> Result<Result<TokenRecord, TokenRefusal>, StoreError> {
        let Some(row) = self
            .query_opt(
                "SELECT record FROM tokens WHERE secret_sha256 = $1",
                &[&sha256_hex(secret.as_bytes())],
            )
            .await?
        else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let rec: TokenRecord = record(&row, 0)?;
        Ok(self.token_refusal(&rec).await?.map_or(Ok(rec), Err))
    }

    /// Why `rec` may not enrol now, if it may not (the sled engine's rules).
    async fn token_refusal(&self, rec: &TokenRecord) -> Result<Option<TokenRefusal>, StoreError> {
        if rec.used {
            return Ok(Some(TokenRefusal::Used));
        }
        if rec.expires <= now_secs() {
            return Ok(Some(TokenRefusal::Expired));
        }
        // An unreadable connector record refuses nothing, as in sled; an
        // unreachable database is an error, not a yes.
        let connector = match self.connector(&rec.connector).await {
            Ok(c) => c,
            Err(StoreError::Corrupt(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(match connector {
            Some(c) if c.state == ConnectorState::Revoked && !rec.replace => {
                Some(TokenRefusal::Revoked(c.name))
            }
            Some(c) if c.state == ConnectorState::Enrolled && !rec.replace => {
                Some(TokenRefusal::AlreadyEnrolled(c.name))
            }
            _ => None,
        })
    }

    /// Marks the token used and returns it. One statement: of two relays
    /// racing with one token, exactly one wins; the other is told why (as
    /// [`PgStore::check_token`] would, or [`TokenRefusal::Used`]). Call it
    /// once everything else about the enrolment has succeeded.
    pub async fn redeem_token(
        &self,
        secret: &str,
    ) -> Result<Result<TokenRecord, TokenRefusal>, StoreError> {
        let spent = self
            .query_opt(
                "UPDATE tokens SET record = jsonb_set(record, '{used}', 'true')
                 WHERE secret_sha256 = $1
                   AND NOT coalesce((tokens.record->>'used')::boolean, false)
                   AND (tokens.record->>'expires')::bigint > $2
                   AND (coalesce((tokens.record->>'replace')::boolean, false)
                        OR NOT EXISTS (SELECT 1 FROM connectors c
                                       WHERE c.name = tokens.connector
                                         AND c.record->>'state' IN ('enrolled', 'revoked')))
                 RETURNING record",
                &[&sha256_hex(secret.as_bytes()), &db_int(now_secs())],
            )
            .await?;
        if let Some(row) = spent {
            return Ok(Ok(record(&row, 0)?));
        }
        Ok(match self.check_token(secret).await? {
            Err(refusal) => Err(refusal),
            // Refused a moment ago but fine now (it cannot be; be safe).
            Ok(_) => Err(TokenRefusal::Used),
        })
    }

    // ---- connectors

    /// The connector `name`, if there is one.
    pub async fn connector(&self, name: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        self.query_opt("SELECT record FROM connectors WHERE name = $1", &[&name])
            .await?
            .map(|r| record(&r, 0))
            .transpose()
    }

    /// Adds or replaces a connector.
    pub async fn put_connector(&self, c: &ConnectorRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO connectors (name, record) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
            &[&c.name, &Json(c)],
        )
        .await?;
        Ok(())
    }

    /// Every connector, by name.
    pub async fn connectors(&self) -> Result<Vec<ConnectorRecord>, StoreError> {
        self.query(
            "SELECT record FROM connectors ORDER BY name COLLATE \"C\"",
            &[],
        )
        .await?
        .iter()
        .map(|r| record(r, 0))
        .collect()
    }

    /// Records the certificate issued to `connector` at enrolment: one
    /// transaction holding the connector's row lock.
    pub async fn enrol_connector(
        &self,
        connector: &str,
        cert_sha256: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO connectors (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[
                &connector,
                &Json(&ConnectorRecord::pending(connector, Vec::new())),
            ],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT record FROM connectors WHERE name = $1 FOR UPDATE",
                &[&connector],
            )
            .await?;
        let mut rec: ConnectorRecord = record(&row, 0)?;
        if let Some(old) = rec.cert_sha256.take() {
            tx.execute(
                "DELETE FROM connector_certs WHERE cert_sha256 = $1",
                &[&old],
            )
            .await?;
        }
        rec.state = ConnectorState::Enrolled;
        rec.cert_sha256 = Some(cert_sha256.to_owned());
        tx.execute(
            "INSERT INTO connector_certs (cert_sha256, connector) VALUES ($1, $2)
             ON CONFLICT (cert_sha256) DO UPDATE SET connector = EXCLUDED.connector",
            &[&cert_sha256, &connector],
        )
        .await?;
        tx.execute(
            "UPDATE connectors SET record = $2 WHERE name = $1",
            &[&connector, &Json(&rec)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The connector a client certificate was issued to.
    pub async fn connector_by_cert(
        &self,
        cert_sha256: &str,
    ) -> Result<Option<ConnectorRecord>, StoreError> {
        self.query_opt(
            "SELECT c.record FROM connector_certs k JOIN connectors c ON c.name = k.connector
             WHERE k.cert_sha256 = $1",
            &[&cert_sha256],
        )
        .await?
        .map(|r| record(&r, 0))
        .transpose()
    }

    /// Updates last-seen and the declared services, those fields only, in
    /// one statement: a revocation written meanwhile (by any relay) is never
    /// overwritten by a stale copy of the record.
    pub async fn touch_connector(
        &self,
        name: &str,
        services: Option<&[ServiceInfo]>,
    ) -> Result<(), StoreError> {
        let now = db_int(now_secs());
        match services {
            Some(services) => {
                self.execute(
                    "UPDATE connectors SET record = record
                         || jsonb_build_object('last_seen', $2::bigint, 'services', $3::jsonb)
                     WHERE name = $1",
                    &[&name, &now, &Json(services)],
                )
                .await?
            }
            None => {
                self.execute(
                    "UPDATE connectors SET record = record
                         || jsonb_build_object('last_seen', $2::bigint)
                     WHERE name = $1",
                    &[&name, &now],
                )
                .await?
            }
        };
        Ok(())
    }

    /// True when some enrolled connector, online or not, may serve `service`.
    pub async fn service_known(&self, service: &str) -> Result<bool, StoreError> {
        let row = self
            .query_opt(
                "SELECT 1 FROM connectors
                 WHERE record->>'state' = 'enrolled'
                   AND jsonb_typeof(record->'granted') = 'array'
                   AND record->'granted' ? $1
                 LIMIT 1",
                &[&service],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Grants (`grant = true`) or withdraws `service` for connector `name`
    /// and returns the updated record; `None` when there is no such
    /// connector. Either way the grants are the admin's from now on (no
    /// longer marked migrated). One statement touching only the grants, like
    /// [`PgStore::touch_connector`]; the list is sorted after a grant and
    /// keeps its order after a withdrawal, as in the sled engine.
    pub async fn set_grant(
        &self,
        name: &str,
        service: &str,
        grant: bool,
    ) -> Result<Option<ConnectorRecord>, StoreError> {
        self.query_opt(
            "UPDATE connectors SET record = record || jsonb_build_object(
                 'grants_migrated', false,
                 'granted', (
                     SELECT coalesce(jsonb_agg(g ORDER BY CASE WHEN $3::boolean THEN g END COLLATE \"C\", n),
                                     '[]'::jsonb)
                     FROM (SELECT e.g, e.n
                           FROM jsonb_array_elements_text(
                                    CASE WHEN jsonb_typeof(record->'granted') = 'array'
                                         THEN record->'granted' ELSE '[]'::jsonb END
                                ) WITH ORDINALITY AS e(g, n)
                           WHERE e.g <> $2::text
                           UNION ALL
                           SELECT $2::text, 0 WHERE $3::boolean) AS kept))
             WHERE name = $1
             RETURNING record",
            &[&name, &service, &grant],
        )
        .await?
        .map(|r| record(&r, 0))
        .transpose()
    }

    // ---- second factor

    /// Claims a TOTP time step for `user`: true if it is later than every
    /// step used before (and is now the last one), false for a replay. One
    /// statement: of two relays claiming the same step, one gets true.
    pub async fn claim_totp_step(&self, user: &str, step: u64) -> Result<bool, StoreError> {
        let claimed = self
            .query_opt(
                "INSERT INTO totp_used (user_name, step) VALUES ($1, $2)
                 ON CONFLICT (user_name) DO UPDATE SET step = EXCLUDED.step
                 WHERE totp_used.step < EXCLUDED.step
                 RETURNING step",
                &[&user, &db_int(step)],
            )
            .await?;
        Ok(claimed.is_some())
    }

    /// Forgets the steps used with an old secret.
    pub async fn reset_totp_steps(&self, user: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM totp_used WHERE user_name = $1", &[&user])
            .await?;
        Ok(())
    }

    // ---- risk facts

    /// Counts a failed sign-in of `user` (for the risk score), keeping the
    /// last [`MAX_FAILURES_KEPT`]; one statement.
    pub async fn record_failed_sign_in(
        &self,
        user: &str,
        failure: Failure,
    ) -> Result<(), StoreError> {
        let keep = i64::try_from(MAX_FAILURES_KEPT).unwrap_or(i64::MAX);
        self.execute(
            "INSERT INTO sign_in_failures (user_name, list) VALUES ($1, jsonb_build_array($2::jsonb))
             ON CONFLICT (user_name) DO UPDATE SET list = (
                 SELECT jsonb_agg(e.f ORDER BY e.n)
                 FROM (SELECT f, n
                       FROM jsonb_array_elements(
                                CASE WHEN jsonb_typeof(sign_in_failures.list) = 'array'
                                     THEN sign_in_failures.list ELSE '[]'::jsonb END
                                || jsonb_build_array($2::jsonb)
                            ) WITH ORDINALITY AS a(f, n)
                       ORDER BY n DESC
                       LIMIT $3) AS e)",
            &[&user, &Json(&failure), &keep],
        )
        .await?;
        Ok(())
    }

    /// Failed sign-ins of `user` at or after `since` that `pick` selects.
    pub async fn failed_sign_ins_since(
        &self,
        user: &str,
        since: u64,
        pick: impl Fn(&Failure) -> bool,
    ) -> Result<u32, StoreError> {
        let row = self
            .query_opt(
                "SELECT list FROM sign_in_failures WHERE user_name = $1",
                &[&user],
            )
            .await?;
        // Unreadable history (an older format) counts as none.
        let list: Vec<Failure> = row.and_then(|r| record(&r, 0).ok()).unwrap_or_default();
        let n = list.iter().filter(|f| f.at >= since && pick(f)).count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// When `user` first reached a service with `what` (a network or a
    /// device); `None` if never.
    pub async fn first_use(&self, user: &str, what: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT first_use FROM known WHERE user_name = $1 AND what = $2",
                &[&user, &what],
            )
            .await?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()?
            .map(from_db_int))
    }

    /// Records that `user` reached a service with `what`, keeping the first
    /// time: of two relays noting it at once, the first write stays.
    pub async fn note_use(&self, user: &str, what: &str, at: u64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO known (user_name, what, first_use) VALUES ($1, $2, $3)
             ON CONFLICT (user_name, what) DO NOTHING",
            &[&user, &what, &db_int(at)],
        )
        .await?;
        Ok(())
    }

    // ---- devices

    /// The device `name`, if there is one.
    pub async fn device(&self, name: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.query_opt("SELECT record FROM devices WHERE name = $1", &[&name])
            .await?
            .map(|r| record(&r, 0))
            .transpose()
    }

    /// Adds or replaces a device, and maps its certificate to it (one
    /// statement).
    pub async fn put_device(&self, d: &DeviceRecord) -> Result<(), StoreError> {
        self.execute(
            "WITH device AS (
                 INSERT INTO devices (name, record) VALUES ($1, $3)
                 ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record)
             INSERT INTO device_certs (cert_sha256, device) VALUES ($2, $1)
             ON CONFLICT (cert_sha256) DO UPDATE SET device = EXCLUDED.device",
            &[&d.name, &d.cert_sha256, &Json(d)],
        )
        .await?;
        Ok(())
    }

    /// Every device, by name.
    pub async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.query(
            "SELECT record FROM devices ORDER BY name COLLATE \"C\"",
            &[],
        )
        .await?
        .iter()
        .map(|r| record(r, 0))
        .collect()
    }

    /// The live (not revoked, not expired) device whose certificate has this SHA-256.
    pub async fn device_by_cert(&self, sha256: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let Some(row) = self
            .query_opt(
                "SELECT d.record FROM device_certs k JOIN devices d ON d.name = k.device
                 WHERE k.cert_sha256 = $1",
                &[&sha256],
            )
            .await?
        else {
            return Ok(None);
        };
        let d: DeviceRecord = record(&row, 0)?;
        let now = now_secs();
        Ok(Some(d).filter(|d| d.cert_sha256 == sha256 && !d.revoked && d.expires > now))
    }

    // ---- meta

    /// A setting the relay keeps for the CLI (`META_*`).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    /// Sets a `META_*` setting.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )
        .await?;
        Ok(())
    }

    // ---- cluster (migration 3; see crate::cluster)

    /// Stores `sealed` as the cluster secret `name` unless one is stored
    /// already, and returns the one stored: of relays creating a secret at
    /// once, all get the first one's.
    pub async fn secret_or_insert(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.execute(
            "INSERT INTO cluster_secrets (name, sealed) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &sealed],
        )
        .await?;
        let row = self
            .query_opt(
                "SELECT sealed FROM cluster_secrets WHERE name = $1",
                &[&name],
            )
            .await?
            .ok_or_else(|| StoreError::Config(format!("the cluster secret {name} vanished")))?;
        Ok(row.try_get(0)?)
    }

    /// Registers the relay `id` (its tunnel address and public URL) with a
    /// lease of `lease`, and returns its new epoch: one more than the last
    /// process with this id had (1 for a new id), which fences that process.
    pub async fn register_relay(
        &self,
        id: &str,
        tunnel_addr: &str,
        public_url: &str,
        lease: Duration,
    ) -> Result<i64, StoreError> {
        let row = self
            .query_opt(
                "INSERT INTO relays (id, epoch, tunnel_addr, public_url, lease_until, started)
                 VALUES ($1, 1, $2, $3, now() + make_interval(secs => $4), now())
                 ON CONFLICT (id) DO UPDATE SET
                    epoch = relays.epoch + 1,
                    tunnel_addr = EXCLUDED.tunnel_addr,
                    public_url = EXCLUDED.public_url,
                    lease_until = EXCLUDED.lease_until,
                    started = EXCLUDED.started
                 RETURNING epoch",
                &[&id, &tunnel_addr, &public_url, &lease.as_secs_f64()],
            )
            .await?
            .ok_or_else(|| StoreError::Config("registering the relay returned no row".into()))?;
        Ok(row.try_get(0)?)
    }

    /// Extends the lease of relay `id` at `epoch` to `lease` from now.
    /// False when the row's epoch is another (a newer process took the id:
    /// this one is fenced) or the row is gone.
    pub async fn renew_relay_lease(
        &self,
        id: &str,
        epoch: i64,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE relays SET lease_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND epoch = $2",
                &[&id, &epoch, &lease.as_secs_f64()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Ends the lease of relay `id` at `epoch` now (a clean shutdown), so
    /// the others stop counting it at once. Nothing if it was fenced.
    pub async fn release_relay_lease(&self, id: &str, epoch: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE relays SET lease_until = now() WHERE id = $1 AND epoch = $2",
            &[&id, &epoch],
        )
        .await?;
        Ok(())
    }

    /// The relays whose lease has not lapsed, by id.
    pub async fn live_relays(&self) -> Result<Vec<RelayRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT id, epoch, tunnel_addr, public_url,
                        extract(epoch FROM lease_until)::float8,
                        extract(epoch FROM started)::float8
                 FROM relays WHERE lease_until > now() ORDER BY id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RelayRecord {
                    id: r.try_get(0)?,
                    epoch: r.try_get(1)?,
                    tunnel_addr: r.try_get(2)?,
                    public_url: r.try_get(3)?,
                    lease_until: r.try_get::<_, f64>(4)? as u64,
                    started: r.try_get::<_, f64>(5)? as u64,
                })
            })
            .collect()
    }
}

/// One relay of the cluster as registered (table `relays`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRecord {
    /// Its `--relay-id`.
    pub id: String,
    /// How many processes have started with this id (the last one serves).
    pub epoch: i64,
    /// `host:port` connectors dial (`--public-tunnel-addr`).
    pub tunnel_addr: String,
    /// The URL people open (`--public-url`).
    pub public_url: String,
    /// When its lease lapses unless renewed, unix seconds.
    pub lease_until: u64,
    /// When this epoch's process started, unix seconds.
    pub started: u64,
}

/// The tables `store migrate` requires to be empty: the records'
/// ([`RawTable::pg_table`]) and the audit chain's.
const AUDIT_TABLES: [&str; 3] = ["audit_events", "audit_client_keys", "audit_client_sessions"];

/// A stored value `store migrate` cannot copy, as [`StoreError::Corrupt`].
fn unreadable(table: RawTable, key: &[u8], why: &str) -> StoreError {
    StoreError::Corrupt(<serde_json::Error as serde::de::Error>::custom(format!(
        "{} record {:?} cannot be copied: {why}",
        table.pg_table(),
        String::from_utf8_lossy(key)
    )))
}

/// `bytes` as text, or why not.
fn text(table: RawTable, key: &[u8], bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| unreadable(table, key, "not UTF-8"))
}

/// `value` parsed as a `T` (to refuse a corrupt record rather than copy
/// it), and its text as stored.
fn json<T: DeserializeOwned>(
    table: RawTable,
    key: &[u8],
    value: &[u8],
) -> Result<(T, String), StoreError> {
    let parsed =
        serde_json::from_slice(value).map_err(|e| unreadable(table, key, &e.to_string()))?;
    Ok((parsed, text(table, key, value)?))
}

impl PgStore {
    /// `store migrate`: the tables of this database that hold anything (of
    /// the records' and the audit chain's), and `audit_head` if the chain
    /// has a head or anchor; empty for a database nothing was written to.
    pub(crate) async fn non_empty_tables(&self) -> Result<Vec<&'static str>, StoreError> {
        let mut found = Vec::new();
        let tables = RawTable::ALL.iter().map(|t| t.pg_table());
        for table in tables.chain(AUDIT_TABLES) {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
            if self
                .query_opt(&sql, &[])
                .await?
                .is_some_and(|r| r.get::<_, bool>(0))
            {
                found.push(table);
            }
        }
        let head = self
            .query_opt(
                "SELECT 1 FROM audit_head WHERE last_seq <> 0 OR anchor_seq IS NOT NULL",
                &[],
            )
            .await?;
        if head.is_some() {
            found.push("audit_head");
        }
        Ok(found)
    }

    /// `store migrate`: inserts `rows` (key and value as the sled engine
    /// keeps them, see [`RawTable`]) into `table`'s table in one
    /// transaction, keys as they are. A row whose key is already there fails
    /// the whole call (the target must be empty: nothing is overwritten or
    /// skipped). Returns how many rows were written: all of them, except
    /// failure histories that do not parse, which the relay reads as none
    /// anyway. Errors: [`StoreError::Corrupt`] naming a record that does
    /// not parse.
    pub(crate) async fn import_raw(
        &self,
        table: RawTable,
        rows: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<u64, StoreError> {
        // Up to four columns: keys, a text or JSON text, another text, a bigint.
        let (mut keys, mut values, mut others, mut ints) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::<i64>::new());
        for (k, v) in rows {
            let key = text(table, k, k)?;
            match table {
                RawTable::Users => values.push(json::<UserRecord>(table, k, v)?.1),
                RawTable::Connectors => values.push(json::<ConnectorRecord>(table, k, v)?.1),
                RawTable::Devices => values.push(json::<DeviceRecord>(table, k, v)?.1),
                RawTable::SignIns => {
                    let (rec, raw) = json::<SignInRecord>(table, k, v)?;
                    values.push(raw);
                    others.push(rec.user);
                    ints.push(db_int(rec.expires));
                }
                RawTable::Tokens => {
                    let (rec, raw) = json::<TokenRecord>(table, k, v)?;
                    values.push(raw);
                    others.push(rec.connector);
                }
                RawTable::ConnectorCerts | RawTable::DeviceCerts | RawTable::Meta => {
                    values.push(text(table, k, v)?)
                }
                RawTable::TotpUsed => {
                    let step = <[u8; 8]>::try_from(&v[..])
                        .map_err(|_| unreadable(table, k, "not an 8-byte step"))?;
                    ints.push(db_int(u64::from_be_bytes(step)));
                }
                RawTable::SignInFailures => {
                    // Unreadable history (an older format) counts as none.
                    match json::<Vec<Failure>>(table, k, v) {
                        Ok((_, raw)) => values.push(raw),
                        Err(_) => continue,
                    }
                }
                RawTable::Known => {
                    let (user, what) = key
                        .split_once('\0')
                        .ok_or_else(|| unreadable(table, k, "no user\\0what key"))?;
                    let (at, _) = json::<u64>(table, k, v)?;
                    others.push(what.to_owned());
                    ints.push(db_int(at));
                    keys.push(user.to_owned());
                    continue;
                }
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Ok(0);
        }
        let name = table.pg_table();
        let (sql, params): (String, Vec<&(dyn ToSql + Sync)>) = match table {
            RawTable::Users | RawTable::Connectors | RawTable::Devices => (
                format!(
                    "INSERT INTO {name} (name, record) \
                     SELECT k, v::jsonb FROM unnest($1::text[], $2::text[]) AS u(k, v)"
                ),
                vec![&keys, &values],
            ),
            RawTable::SignIns => (
                "INSERT INTO sign_ins (id, user_name, expires, record) \
                 SELECT k, o, i, v::jsonb \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(k, v, o, i)"
                    .into(),
                vec![&keys, &values, &others, &ints],
            ),
            RawTable::Tokens => (
                "INSERT INTO tokens (secret_sha256, connector, record) \
                 SELECT k, o, v::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, v, o)"
                    .into(),
                vec![&keys, &values, &others],
            ),
            RawTable::ConnectorCerts => (
                "INSERT INTO connector_certs (cert_sha256, connector) \
                 SELECT * FROM unnest($1::text[], $2::text[])"
                    .into(),
                vec![&keys, &values],
            ),
            RawTable::DeviceCerts => (
                "INSERT INTO device_certs (cert_sha256, device) \
                 SELECT * FROM unnest($1::text[], $2::text[])"
                    .into(),
                vec![&keys, &values],
            ),
            RawTable::Meta => (
                "INSERT INTO meta (key, value) SELECT * FROM unnest($1::text[], $2::text[])".into(),
                vec![&keys, &values],
            ),
            RawTable::TotpUsed => (
                "INSERT INTO totp_used (user_name, step) \
                 SELECT * FROM unnest($1::text[], $2::bigint[])"
                    .into(),
                vec![&keys, &ints],
            ),
            RawTable::SignInFailures => (
                "INSERT INTO sign_in_failures (user_name, list) \
                 SELECT k, v::jsonb FROM unnest($1::text[], $2::text[]) AS u(k, v)"
                    .into(),
                vec![&keys, &values],
            ),
            RawTable::Known => (
                "INSERT INTO known (user_name, what, first_use) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
                    .into(),
                vec![&keys, &others, &ints],
            ),
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let written = tx.execute(&sql, &params).await?;
        tx.commit().await?;
        Ok(written)
    }
}

/// The sled engine's start-up fixes of one connector record (grants from
/// before grants existed; service names in another case). True if `rec`
/// changed.
fn upgrade_connector(rec: &mut ConnectorRecord) -> bool {
    let mut changed = false;
    if rec.granted.is_none() {
        rec.granted = Some(rec.services.iter().map(|s| s.name.clone()).collect());
        rec.grants_migrated = rec.state == ConnectorState::Enrolled;
        changed = true;
    }
    let mixed = |n: &String| n.bytes().any(|b| b.is_ascii_uppercase());
    let granted_mixed = rec.granted.as_ref().is_some_and(|g| g.iter().any(mixed));
    if granted_mixed || rec.services.iter().any(|s| mixed(&s.name)) {
        if let Some(granted) = &mut rec.granted {
            for g in granted.iter_mut() {
                g.make_ascii_lowercase();
            }
            granted.sort();
            granted.dedup();
        }
        for s in &mut rec.services {
            s.name.make_ascii_lowercase();
        }
        changed = true;
    }
    changed
}
