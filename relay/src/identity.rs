//! Local users, password sign-in and sign-in sessions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use sallyport_proto::frame::check_name;

use crate::store::{Failure, SignInRecord, SsoLink, Store, StoreError, UserRecord};
use sallyport_common::secret::random_secret;
use sallyport_common::time::now_secs;

/// Members of this group are admins: they may read the audit log.
pub const ADMIN_GROUP: &str = "admin";

/// How long a sign-in lasts.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Longest password accepted (argon2 cost does not depend on it, but the request size does).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Failed sign-ins allowed per client address, and per user name, in one window.
pub const MAX_FAILURES_PER_WINDOW: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most addresses and names the rate limiter tracks at once; when full, new
/// ones are refused until old windows expire (fail closed under a flood).
pub const MAX_TRACKED: usize = 10_000;
/// Password checks running at once; more wait in line, up to [`HASH_QUEUE_WAIT`].
pub const MAX_CONCURRENT_HASHES: usize = 4;
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("enter your password to change how you sign in")]
    PasswordRequired,
    #[error("wrong password")]
    WrongPassword,
    #[error("enter the one-time code from your authenticator app")]
    CodeRequired,
    #[error("wrong one-time code")]
    BadCode,
    #[error("this one-time code was already used; wait for the next one")]
    CodeReused,
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error("{LOCKED}")]
    Locked,
    #[error("start setting up one-time codes first")]
    NoPendingSecret,
    #[error("too many wrong one-time codes for this account; try again in an hour, and tell your admin (someone may know your password)")]
    CodesLocked,
    #[error("too many failed sign-ins; try again in {0} seconds")]
    RateLimited(u64),
    #[error("the relay is busy checking passwords; try again in a moment")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("a user named {0} exists who is not this provider's user; an admin must rename or remove one of them")]
    SsoConflict(String),
    /// A password or one-time code was to be set for a user of single
    /// sign-on (user, provider).
    #[error("{0} signs in through {1}: their password and second factor are the provider's")]
    SsoUser(String, String),
}

/// Refuses a password or one-time codes for a user of single sign-on.
fn local_only(record: &UserRecord) -> Result<(), IdentityError> {
    match &record.sso {
        Some(link) => Err(IdentityError::SsoUser(
            record.name.clone(),
            link.provider.clone(),
        )),
        None => Ok(()),
    }
}

/// What a locked user is told at sign-in, and a locked user's live
/// sessions as they end.
pub const LOCKED: &str = "this account is locked; ask an admin to unlock it";
/// What a removed user's live sessions are told as they end.
pub const REMOVED: &str = "this account was removed by an admin";

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
pub async fn add_user(
    store: &Store,
    name: &str,
    password: &str,
    groups: &[String],
) -> Result<(), IdentityError> {
    check_name("user name", name).map_err(|e| IdentityError::Invalid(e.to_string()))?;
    for g in groups {
        check_name("group name", g).map_err(|e| IdentityError::Invalid(e.to_string()))?;
    }
    check_new_password(password)?;
    if store.user(name).await?.is_some() {
        return Err(IdentityError::Exists(name.to_owned()));
    }
    store
        .put_user(&UserRecord {
            name: name.to_owned(),
            password_hash: hash_password(password)?,
            groups: groups.to_vec(),
            created: now_secs(),
            totp_secret: None,
            totp_pending: None,
            locked: None,
            sso: None,
        })
        .await?;
    Ok(())
}

fn check_new_password(password: &str) -> Result<(), IdentityError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(IdentityError::Invalid(format!(
            "the password must be 1 to {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// The user `name`, or [`IdentityError::NoSuchUser`].
pub async fn user(store: &Store, name: &str) -> Result<UserRecord, IdentityError> {
    store
        .user(name)
        .await?
        .ok_or_else(|| IdentityError::NoSuchUser(name.to_owned()))
}

/// Gives `name` a new password (`user passwd`, or the user on their account
/// page). Hashes it here: call it from a blocking thread, or hash first and
/// call [`set_password_hash`].
pub async fn set_password(store: &Store, name: &str, password: &str) -> Result<(), IdentityError> {
    check_new_password(password)?;
    set_password_hash(store, name, hash_password(password)?).await
}

/// Gives `name` the password whose argon2id hash (PHC string) is `hash`.
async fn set_password_hash(store: &Store, name: &str, hash: String) -> Result<(), IdentityError> {
    let mut record = user(store, name).await?;
    local_only(&record)?;
    record.password_hash = hash;
    store.put_user(&record).await?;
    Ok(())
}

/// Replaces the groups of `name`; returns the groups it had.
pub async fn set_groups(
    store: &Store,
    name: &str,
    groups: &[String],
) -> Result<Vec<String>, IdentityError> {
    for g in groups {
        check_name("group name", g).map_err(|e| IdentityError::Invalid(e.to_string()))?;
    }
    let mut record = user(store, name).await?;
    let before = std::mem::replace(&mut record.groups, groups.to_vec());
    store.put_user(&record).await?;
    Ok(before)
}

/// Locks (`true`) or unlocks `name`; returns whether that changed anything.
/// A locked user cannot sign in and their sign-ins stop working (see
/// [`Identity::sign_in_of`]); ending their sign-ins and live sessions is
/// the caller's.
pub async fn set_locked(store: &Store, name: &str, locked: bool) -> Result<bool, IdentityError> {
    let mut record = user(store, name).await?;
    if record.locked.is_some() == locked {
        return Ok(false);
    }
    record.locked = locked.then(now_secs);
    store.put_user(&record).await?;
    Ok(true)
}

/// Turns off the one-time codes of `name` (`user totp --off`); returns
/// whether they were on.
pub async fn reset_totp(store: &Store, name: &str) -> Result<bool, IdentityError> {
    let mut record = user(store, name).await?;
    let had = record.totp_secret.is_some();
    record.totp_secret = None;
    record.totp_pending = None;
    store.reset_totp_steps(name).await?;
    store.put_user(&record).await?;
    Ok(had)
}

/// Gives `name` a new TOTP secret (replacing any old one); from now on
/// sign-in needs a code. Returns the secret, base32.
pub async fn enrol_totp(store: &Store, name: &str) -> Result<String, IdentityError> {
    let mut user = store
        .user(name)
        .await?
        .ok_or_else(|| IdentityError::NoSuchUser(name.to_owned()))?;
    local_only(&user)?;
    let secret = crate::totp::new_secret();
    user.totp_secret = Some(secret.clone());
    user.totp_pending = None;
    store.reset_totp_steps(name).await?;
    store.put_user(&user).await?;
    Ok(secret)
}

/// Wrong one-time codes (after a right password) allowed per user in
/// [`CODE_FAILURE_WINDOW`]; then no code is accepted until the window passes.
pub const MAX_CODE_FAILURES: u32 = 10;
pub const CODE_FAILURE_WINDOW: Duration = Duration::from_secs(3600);

fn failure(from: IpAddr, at: u64, code: bool) -> Failure {
    Failure {
        at,
        net: crate::policy::net::network_of(from),
        code,
    }
}

async fn record_exists(store: &Store, user: &str) -> bool {
    matches!(store.user(user).await, Ok(Some(_)))
}

/// Sign-in and session checks, with a limit on failed attempts.
pub struct Identity {
    store: Store,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
    hashing: tokio::sync::Semaphore,
    /// A hash to verify against when the user does not exist, so that an
    /// unknown name takes as long as a wrong password.
    dummy_hash: String,
}

impl Identity {
    pub fn new(store: Store) -> Result<Self, IdentityError> {
        Ok(Self {
            store,
            failures: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES),
            dummy_hash: hash_password("not a password anyone has")?,
        })
    }

    /// Counts one attempt against every key, unless one of them is over its
    /// budget: then nothing is counted and the answer is the seconds to wait.
    /// Attempts are counted before the password is checked, so guesses sent
    /// in parallel are limited as well as guesses sent in a row.
    fn take_attempt(&self, keys: &[String]) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
        for k in keys {
            match map.get(k) {
                Some((start, n)) if *n >= MAX_FAILURES_PER_WINDOW => {
                    let left = FAILURE_WINDOW.saturating_sub(now.duration_since(*start));
                    return Err(left.as_secs().max(1));
                }
                None if map.len() >= MAX_TRACKED => return Err(FAILURE_WINDOW.as_secs()),
                _ => {}
            }
        }
        for k in keys {
            map.entry(k.clone()).or_insert((now, 0)).1 += 1;
        }
        Ok(())
    }

    /// Gives back the attempts of a successful sign-in.
    fn refund_attempt(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if let Some((_, n)) = map.get_mut(k) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Checks a password and signs the user in; returns the bearer token.
    pub async fn sign_in(
        self: &std::sync::Arc<Self>,
        user: &str,
        password: &str,
        code: Option<&str>,
        from: IpAddr,
    ) -> Result<(String, SignInRecord), IdentityError> {
        // Only well-formed names get a budget of their own, so junk names
        // cannot fill the limiter with large keys.
        let valid = password.len() <= MAX_PASSWORD_LEN && check_name("user", user).is_ok();
        let mut keys = vec![format!("ip:{from}")];
        if valid {
            keys.push(format!("user:{user}"));
        }
        self.take_attempt(&keys)
            .map_err(IdentityError::RateLimited)?;
        if !valid {
            return Err(IdentityError::BadCredentials);
        }
        let record = self.store.user(user).await?;
        let hash = record
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let ok = self.verify_hash(password, hash).await?;
        let now = now_secs();
        let Some(record) = record.filter(|_| ok) else {
            if record_exists(&self.store, user).await {
                self.store
                    .record_failed_sign_in(user, failure(from, now, false))
                    .await?;
            }
            return Err(IdentityError::BadCredentials);
        };
        // Told only to whoever knows the password.
        if record.locked.is_some() {
            return Err(IdentityError::Locked);
        }
        let second_factor = match &record.totp_secret {
            None => false,
            Some(secret) => {
                // A missing code is not a failure: the page asks for it next.
                let Some(code) = code.filter(|c| !c.is_empty()) else {
                    self.refund_attempt(&keys);
                    return Err(IdentityError::CodeRequired);
                };
                self.verify_code(user, secret, code, from, now).await?;
                true
            }
        };
        self.refund_attempt(&keys);
        self.new_sign_in(user, second_factor, from).await
    }

    /// Whether `password` matches the argon2 `hash`. argon2 is deliberately
    /// slow and takes 19 MiB a check: a few run at a time (waiting at most
    /// [`HASH_QUEUE_WAIT`] for a turn, else [`IdentityError::Busy`]), off
    /// the async workers.
    async fn verify_hash(&self, password: &str, hash: String) -> Result<bool, IdentityError> {
        let password = password.to_owned();
        let _permit = tokio::time::timeout(HASH_QUEUE_WAIT, self.hashing.acquire())
            .await
            .map_err(|_| IdentityError::Busy)?
            .map_err(|_| IdentityError::Busy)?;
        Ok(
            tokio::task::spawn_blocking(move || verify_password(&password, &hash))
                .await
                .unwrap_or(false),
        )
    }

    /// Checks the password of a signed-in `user` again before a change
    /// to their account (turning one-time codes on or replacing them),
    /// within the same per-minute budget as sign-in, so a stolen session
    /// cannot guess it without limit.
    pub async fn confirm_password(
        &self,
        user: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(), IdentityError> {
        if password.is_empty() {
            return Err(IdentityError::PasswordRequired);
        }
        let keys = [format!("ip:{from}"), format!("user:{user}")];
        self.take_attempt(&keys)
            .map_err(IdentityError::RateLimited)?;
        if password.len() > MAX_PASSWORD_LEN {
            return Err(IdentityError::WrongPassword);
        }
        let hash = self
            .store
            .user(user)
            .await?
            .ok_or_else(|| IdentityError::NoSuchUser(user.to_owned()))?
            .password_hash;
        let ok = self.verify_hash(password, hash).await?;
        if !ok {
            self.store
                .record_failed_sign_in(user, failure(from, now_secs(), false))
                .await?;
            return Err(IdentityError::WrongPassword);
        }
        self.refund_attempt(&keys);
        Ok(())
    }

    /// Checks `code` against `secret` and claims its time step. Wrong
    /// codes are recorded; after [`MAX_CODE_FAILURES`] in
    /// [`CODE_FAILURE_WINDOW`] no code is checked at all, which caps
    /// guessing by someone who has the password far below what the
    /// per-minute limit alone allows.
    async fn verify_code(
        &self,
        user: &str,
        secret: &str,
        code: &str,
        from: IpAddr,
        now: u64,
    ) -> Result<(), IdentityError> {
        let since = now.saturating_sub(CODE_FAILURE_WINDOW.as_secs());
        if self
            .store
            .failed_sign_ins_since(user, since, |f| f.code)
            .await?
            >= MAX_CODE_FAILURES
        {
            return Err(IdentityError::CodesLocked);
        }
        let Some(step) = crate::totp::matching_step(secret, code, now) else {
            self.store
                .record_failed_sign_in(user, failure(from, now, true))
                .await?;
            return Err(IdentityError::BadCode);
        };
        if !self.store.claim_totp_step(user, step).await? {
            self.store
                .record_failed_sign_in(user, failure(from, now, true))
                .await?;
            return Err(IdentityError::CodeReused);
        }
        Ok(())
    }

    /// [`Identity::verify_code`] within the user's per-minute budget, for a
    /// signed-in session (which must not guess codes without limit either).
    async fn check_code(
        &self,
        user: &str,
        secret: &str,
        code: &str,
        from: IpAddr,
    ) -> Result<(), IdentityError> {
        let keys = [format!("user:{user}")];
        self.take_attempt(&keys)
            .map_err(IdentityError::RateLimited)?;
        self.verify_code(user, secret, code, from, now_secs())
            .await?;
        self.refund_attempt(&keys);
        Ok(())
    }

    /// Starts (or restarts) setting up one-time codes for `user`: a new
    /// secret, pending until confirmed. A user who already has codes must
    /// give a current one. Returns the new secret.
    pub async fn start_totp_setup(
        &self,
        user: &str,
        code: Option<&str>,
        from: IpAddr,
    ) -> Result<String, IdentityError> {
        let mut record = self
            .store
            .user(user)
            .await?
            .ok_or_else(|| IdentityError::NoSuchUser(user.to_owned()))?;
        local_only(&record)?;
        if let Some(current) = &record.totp_secret {
            let code = code
                .filter(|c| !c.is_empty())
                .ok_or(IdentityError::CodeRequired)?;
            self.check_code(user, current, code, from).await?;
        }
        let secret = crate::totp::new_secret();
        record.totp_pending = Some(secret.clone());
        self.store.put_user(&record).await?;
        Ok(secret)
    }

    /// Puts the pending secret in force if `code` comes from it.
    pub async fn confirm_totp_setup(&self, user: &str, code: &str) -> Result<(), IdentityError> {
        let mut record = self
            .store
            .user(user)
            .await?
            .ok_or_else(|| IdentityError::NoSuchUser(user.to_owned()))?;
        let pending = record
            .totp_pending
            .clone()
            .ok_or(IdentityError::NoPendingSecret)?;
        // Steps used with the old secret mean nothing for the new one.
        let keys = [format!("user:{user}")];
        self.take_attempt(&keys)
            .map_err(IdentityError::RateLimited)?;
        let now = now_secs();
        let step = crate::totp::matching_step(&pending, code, now).ok_or(IdentityError::BadCode)?;
        self.refund_attempt(&keys);
        record.totp_secret = Some(pending);
        record.totp_pending = None;
        self.store.reset_totp_steps(user).await?;
        self.store.put_user(&record).await?;
        // The code that confirmed the secret is used.
        self.store.claim_totp_step(user, step).await?;
        Ok(())
    }

    /// Signs in a user of single sign-on whom `provider` vouched for as
    /// `subject`: creates their Sallyport user on their first sign-in and
    /// replaces their groups with `groups` at every one. A user of the same
    /// name who is not this provider's `subject` (a local user, or another
    /// provider's) is not taken over: [`IdentityError::SsoConflict`]; a
    /// locked user is refused ([`IdentityError::Locked`]). `second_factor`
    /// is whether the provider's `amr`/`acr` counts as one. Returns the
    /// bearer token, as [`Identity::sign_in`] does.
    pub async fn sign_in_sso(
        &self,
        user: &str,
        link: SsoLink,
        groups: &[String],
        second_factor: bool,
        from: IpAddr,
    ) -> Result<(String, SignInRecord), IdentityError> {
        check_name("user name", user).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        let now = now_secs();
        let record = match self.store.user(user).await? {
            Some(r) if r.sso.as_ref() == Some(&link) && r.locked.is_some() => {
                return Err(IdentityError::Locked)
            }
            Some(mut r) if r.sso.as_ref() == Some(&link) => {
                r.groups = groups.to_vec();
                r
            }
            Some(_) => return Err(IdentityError::SsoConflict(user.to_owned())),
            None => UserRecord {
                name: user.to_owned(),
                password_hash: String::new(),
                groups: groups.to_vec(),
                created: now,
                totp_secret: None,
                totp_pending: None,
                locked: None,
                sso: Some(link),
            },
        };
        self.store.put_user(&record).await?;
        self.new_sign_in(user, second_factor, from).await
    }

    /// A new sign-in of `user` from `from`, for [`SIGN_IN_TTL`], stored:
    /// its bearer token (also the cookie's value) and record. The caller
    /// has checked who it is (password, provider, or a live browser sign-in
    /// for the CLI's).
    pub async fn new_sign_in(
        &self,
        user: &str,
        second_factor: bool,
        from: IpAddr,
    ) -> Result<(String, SignInRecord), IdentityError> {
        let now = now_secs();
        let token = random_secret(32);
        let sign_in = SignInRecord {
            user: user.to_owned(),
            created: now,
            expires: now + SIGN_IN_TTL.as_secs(),
            second_factor,
            ip: Some(from),
        };
        self.store.put_sign_in(&token, &sign_in).await?;
        Ok((token, sign_in))
    }

    /// Ends the sign-in of a bearer token or cookie value; returns its user.
    pub async fn sign_out(&self, token: &str) -> Result<Option<String>, IdentityError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        Ok(self.store.remove_sign_in(token).await?.map(|s| s.user))
    }

    /// The sign-in a bearer token or cookie value belongs to: `None` when
    /// there is none, it expired, or its user has since been locked or
    /// removed (`user lock` and `user remove` also delete the records; this
    /// covers a sign-in that raced them).
    pub async fn sign_in_of(&self, token: &str) -> Result<Option<SignInRecord>, IdentityError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let Some(sign_in) = self.store.sign_in(token).await? else {
            return Ok(None);
        };
        match self.store.user(&sign_in.user).await? {
            Some(u) if u.locked.is_none() => Ok(Some(sign_in)),
            _ => Ok(None),
        }
    }

    /// Changes the password of a signed-in `user`, who must give the
    /// current one ([`Identity::confirm_password`]'s budget applies).
    pub async fn change_password(
        &self,
        user: &str,
        current: &str,
        new: &str,
        from: IpAddr,
    ) -> Result<(), IdentityError> {
        check_new_password(new)?;
        self.confirm_password(user, current, from).await?;
        let store = self.store.clone();
        let (user, new) = (user.to_owned(), new.to_owned());
        // argon2 is slow: off the async workers.
        let hash = tokio::task::spawn_blocking(move || hash_password(&new))
            .await
            .map_err(|e| IdentityError::Hash(e.to_string()))??;
        set_password_hash(&store, &user, hash).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn identity() -> (tempfile::TempDir, Identity, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        add_user(&store, "tom", "pw", &[]).await.unwrap();
        let secret = enrol_totp(&store, "tom").await.unwrap();
        (dir, Identity::new(store).unwrap(), secret)
    }

    fn wrong(secret: &str, now: u64) -> &'static str {
        let valid: Vec<String> = [now - 30, now, now + 30]
            .iter()
            .map(|t| crate::totp::code_now(secret, *t).unwrap())
            .collect();
        ["000000", "111111", "222222", "333333"]
            .into_iter()
            .find(|c| !valid.iter().any(|v| v == c))
            .unwrap()
    }

    #[tokio::test]
    async fn wrong_codes_lock_the_second_factor_for_an_hour() {
        let (_dir, id, secret) = identity().await;
        let from: IpAddr = "192.0.2.7".parse().unwrap();
        let now = now_secs();
        for _ in 0..MAX_CODE_FAILURES {
            let e = id
                .verify_code("tom", &secret, wrong(&secret, now), from, now)
                .await;
            assert!(matches!(e, Err(IdentityError::BadCode)), "{e:?}");
        }
        // Even the right code is not checked now.
        let right = crate::totp::code_now(&secret, now).unwrap();
        let e = id.verify_code("tom", &secret, &right, from, now).await;
        assert!(matches!(e, Err(IdentityError::CodesLocked)), "{e:?}");
        // An hour later it is.
        let later = now + CODE_FAILURE_WINDOW.as_secs() + 1;
        let right = crate::totp::code_now(&secret, later).unwrap();
        id.verify_code("tom", &secret, &right, from, later)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn wrong_passwords_do_not_lock_the_second_factor() {
        let (_dir, id, secret) = identity().await;
        let now = now_secs();
        for _ in 0..2 * MAX_CODE_FAILURES {
            id.store
                .record_failed_sign_in("tom", failure("203.0.113.9".parse().unwrap(), now, false))
                .await
                .unwrap();
        }
        let right = crate::totp::code_now(&secret, now).unwrap();
        id.verify_code("tom", &secret, &right, "192.0.2.7".parse().unwrap(), now)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn sso_users_are_created_refreshed_and_never_take_over_another() {
        let (_dir, id, _secret) = identity().await;
        let id = std::sync::Arc::new(id);
        let from: IpAddr = "192.0.2.7".parse().unwrap();
        let link = |sub: &str| SsoLink {
            provider: "corp".into(),
            subject: sub.into(),
        };
        id.sign_in_sso("ann", link("s1"), &["ops".into()], false, from)
            .await
            .unwrap();
        id.sign_in_sso("ann", link("s1"), &["dev".into()], false, from)
            .await
            .unwrap();
        let ann = id.store.user("ann").await.unwrap().unwrap();
        assert_eq!(ann.groups, ["dev"]);
        assert_eq!(ann.sso, Some(link("s1")));
        // No password signs an SSO user in locally.
        assert!(matches!(
            id.sign_in("ann", "", None, from).await,
            Err(IdentityError::BadCredentials)
        ));
        // Another subject of the same name, or a local user's name: refused.
        assert!(matches!(
            id.sign_in_sso("ann", link("s2"), &[], false, from).await,
            Err(IdentityError::SsoConflict(_))
        ));
        assert!(matches!(
            id.sign_in_sso("tom", link("s3"), &[], false, from).await,
            Err(IdentityError::SsoConflict(_))
        ));
        // Passwords and one-time codes are the provider's.
        assert!(matches!(
            set_password(&id.store, "ann", "a long new password").await,
            Err(IdentityError::SsoUser(..))
        ));
        assert!(matches!(
            enrol_totp(&id.store, "ann").await,
            Err(IdentityError::SsoUser(..))
        ));
        // The provider's second factor is the sign-in's.
        let (_, s) = id
            .sign_in_sso("ann", link("s1"), &[], true, from)
            .await
            .unwrap();
        assert!(s.second_factor);
        // A locked SSO user stays locked whatever the provider says.
        let mut ann = id.store.user("ann").await.unwrap().unwrap();
        ann.locked = Some(1);
        id.store.put_user(&ann).await.unwrap();
        assert!(matches!(
            id.sign_in_sso("ann", link("s1"), &[], true, from).await,
            Err(IdentityError::Locked)
        ));
    }
}
