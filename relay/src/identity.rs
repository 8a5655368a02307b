//! Local users, password sign-in and sign-in sessions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use sallyport_proto::frame::check_name;

use crate::store::{SessionRecord, Store, StoreError, UserRecord};
use crate::util::{now_secs, random_secret};

/// How long a sign-in session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Longest password accepted (argon2 cost does not depend on it, but the request size does).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Failed sign-ins allowed per client address, and per user name, in one window.
pub const MAX_FAILURES_PER_WINDOW: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most addresses and names the rate limiter tracks at once; when full, new
/// ones are refused until old windows expire (fail closed under a flood).
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("too many failed sign-ins; try again in {0} seconds")]
    RateLimited(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Hash(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Creates a local user.
pub fn add_user(
    store: &Store,
    name: &str,
    password: &str,
    groups: &[String],
) -> Result<(), IdentityError> {
    check_name("user name", name).map_err(|e| IdentityError::Invalid(e.to_string()))?;
    for g in groups {
        check_name("group name", g).map_err(|e| IdentityError::Invalid(e.to_string()))?;
    }
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(IdentityError::Invalid(format!(
            "the password must be 1 to {MAX_PASSWORD_LEN} bytes"
        )));
    }
    if store.user(name)?.is_some() {
        return Err(IdentityError::Exists(name.to_owned()));
    }
    store.put_user(&UserRecord {
        name: name.to_owned(),
        password_hash: hash_password(password)?,
        groups: groups.to_vec(),
        created: now_secs(),
    })?;
    Ok(())
}

/// Sign-in and session checks, with a limit on failed attempts.
pub struct Identity {
    store: Store,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
    /// A hash to verify against when the user does not exist, so that an
    /// unknown name takes as long as a wrong password.
    dummy_hash: String,
}

impl Identity {
    pub fn new(store: Store) -> Result<Self, IdentityError> {
        Ok(Self {
            store,
            failures: Mutex::new(HashMap::new()),
            dummy_hash: hash_password("not a password anyone has")?,
        })
    }

    /// Seconds to wait if any of `keys` is over its failure budget.
    fn limited(&self, keys: &[String]) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
        for k in keys {
            match map.get(k) {
                Some((start, n)) if *n >= MAX_FAILURES_PER_WINDOW => {
                    let left = FAILURE_WINDOW.saturating_sub(now.duration_since(*start));
                    return Some(left.as_secs().max(1));
                }
                None if map.len() >= MAX_TRACKED => return Some(FAILURE_WINDOW.as_secs()),
                _ => {}
            }
        }
        None
    }

    fn record_failure(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for k in keys {
            if map.len() < MAX_TRACKED || map.contains_key(k) {
                map.entry(k.clone()).or_insert((now, 0)).1 += 1;
            }
        }
    }

    /// Checks a password and opens a session; returns its bearer token.
    pub async fn sign_in(
        self: &std::sync::Arc<Self>,
        user: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(String, SessionRecord), IdentityError> {
        let keys = [format!("ip:{from}"), format!("user:{user}")];
        if let Some(wait) = self.limited(&keys) {
            return Err(IdentityError::RateLimited(wait));
        }
        if password.len() > MAX_PASSWORD_LEN || check_name("user", user).is_err() {
            self.record_failure(&keys);
            return Err(IdentityError::BadCredentials);
        }
        let record = self.store.user(user)?;
        let hash = record
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let password = password.to_owned();
        // argon2 is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        if !ok || record.is_none() {
            self.record_failure(&keys);
            return Err(IdentityError::BadCredentials);
        }
        let token = random_secret(32);
        let now = now_secs();
        let session = SessionRecord {
            user: user.to_owned(),
            created: now,
            expires: now + SESSION_TTL.as_secs(),
        };
        self.store.put_session(&token, &session)?;
        Ok((token, session))
    }

    /// The session a bearer token or cookie value belongs to.
    pub fn session(&self, token: &str) -> Result<Option<SessionRecord>, IdentityError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        Ok(self.store.session(token)?)
    }
}
