//! The sled engine: the relay's state in one embedded database under the
//! data dir, as typed trees (the default, and what `demo` uses).
//!
//! Every write that an admin or a user waits on is flushed before the call
//! returns, so a relay killed right after answering has not lost it.

use std::path::Path;

use sallyport_proto::tunnel::ServiceInfo;
use serde::{de::DeserializeOwned, Serialize};

use sallyport_common::hash::sha256_hex;
use sallyport_common::time::now_secs;

use super::*;
/// The relay's state: one sled database under the data dir, as typed trees
/// (docs/PROTOCOL.md, "Relay state"). Cheap to clone: clones share it.
#[derive(Clone)]
pub struct SledStore {
    db: ::sled::Db,
    users: ::sled::Tree,
    /// Sign-ins (tree `sessions`, its name from before sign-ins were
    /// told apart from terminal sessions).
    sign_ins: ::sled::Tree,
    tokens: ::sled::Tree,
    connectors: ::sled::Tree,
    certs: ::sled::Tree,
    meta: ::sled::Tree,
    /// user -> last TOTP time step used (u64 big-endian).
    totp_used: ::sled::Tree,
    /// user -> recent failed sign-ins (unix times, JSON).
    failures: ::sled::Tree,
    /// "user\0net:NETWORK" / "user\0dev:DEVICE" -> first use (for the risk score).
    known: ::sled::Tree,
    devices: ::sled::Tree,
    /// certificate SHA-256 -> device name.
    device_certs: ::sled::Tree,
}

fn get<T: DeserializeOwned>(tree: &::sled::Tree, key: &str) -> Result<Option<T>, StoreError> {
    match tree.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        None => Ok(None),
    }
}

fn put<T: Serialize>(tree: &::sled::Tree, key: &str, value: &T) -> Result<(), StoreError> {
    tree.insert(key, serde_json::to_vec(value)?)?;
    Ok(())
}

impl SledStore {
    /// Opens (or creates) the database in `dir/db` and migrates old
    /// records. Errors: the database is locked by another process for more
    /// than a few seconds, or unreadable.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("db");
        // A relay that was just killed may still hold the lock for a moment
        // while the kernel tears it down: retry briefly before giving up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match ::sled::Config::new().path(&path).open() {
                Ok(db) => break db,
                Err(::sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        };
        let store = Self {
            users: db.open_tree("users")?,
            sign_ins: db.open_tree("sessions")?,
            tokens: db.open_tree("tokens")?,
            connectors: db.open_tree("connectors")?,
            certs: db.open_tree("certs")?,
            meta: db.open_tree("meta")?,
            totp_used: db.open_tree("totp_used")?,
            failures: db.open_tree("sign_in_failures")?,
            known: db.open_tree("known")?,
            devices: db.open_tree("devices")?,
            device_certs: db.open_tree("device_certs")?,
            db,
        };
        store.migrate_grants()?;
        store.migrate_service_case()?;
        Ok(store)
    }

    /// Connectors enrolled before grants existed keep serving the names they
    /// announced last, as grants marked migrated: from then on, a name they
    /// never announced needs `connector grant` like everyone else's.
    fn migrate_grants(&self) -> Result<(), StoreError> {
        let mut changed = false;
        for mut rec in self.connectors()? {
            if rec.granted.is_some() {
                continue;
            }
            rec.granted = Some(rec.services.iter().map(|s| s.name.clone()).collect());
            rec.grants_migrated = rec.state == ConnectorState::Enrolled;
            put(&self.connectors, &rec.name.clone(), &rec)?;
            changed = true;
        }
        if changed {
            self.flush()?;
        }
        Ok(())
    }

    /// Service names became case-insensitive (see
    /// [`sallyport_proto::frame::service_name`]): grants and announced
    /// names stored in another case are put in the canonical lowercase form,
    /// so `Prod-DB` granted before still reaches `prod-db`.
    fn migrate_service_case(&self) -> Result<(), StoreError> {
        let mut changed = false;
        for mut rec in self.connectors()? {
            let mixed = |n: &String| n.bytes().any(|b| b.is_ascii_uppercase());
            let granted_mixed = rec.granted.as_ref().is_some_and(|g| g.iter().any(mixed));
            if !granted_mixed && !rec.services.iter().any(|s| mixed(&s.name)) {
                continue;
            }
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
            put(&self.connectors, &rec.name.clone(), &rec)?;
            changed = true;
        }
        if changed {
            self.flush()?;
        }
        Ok(())
    }

    /// A tree of its own for a module that keeps its records itself (the audit log).
    pub fn open_tree(&self, name: &str) -> Result<::sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// The keys and values of one kind of record exactly as stored, in key
    /// order, for `store migrate`.
    pub(crate) fn raw(
        &self,
        table: RawTable,
    ) -> impl Iterator<Item = Result<(::sled::IVec, ::sled::IVec), StoreError>> {
        let tree = match table {
            RawTable::Users => &self.users,
            RawTable::SignIns => &self.sign_ins,
            RawTable::Tokens => &self.tokens,
            RawTable::Connectors => &self.connectors,
            RawTable::ConnectorCerts => &self.certs,
            RawTable::TotpUsed => &self.totp_used,
            RawTable::SignInFailures => &self.failures,
            RawTable::Known => &self.known,
            RawTable::Devices => &self.devices,
            RawTable::DeviceCerts => &self.device_certs,
            RawTable::Meta => &self.meta,
        };
        tree.iter().map(|e| e.map_err(StoreError::from))
    }

    /// Writes everything to disk before returning.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    // ---- users

    /// The user `name`, if there is one.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        get(&self.users, name)
    }

    /// Adds or replaces a user.
    pub fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        put(&self.users, &user.name, user)?;
        self.flush()
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.users.iter() {
            let (_, v) = entry?;
            out.push(serde_json::from_slice(&v)?);
        }
        Ok(out)
    }

    /// Removes the user `name` and what the relay keeps about their codes;
    /// true if there was one. Their sign-ins are the caller's to end first.
    pub fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let existed = self.users.remove(name)?.is_some();
        self.totp_used.remove(name)?;
        self.flush()?;
        Ok(existed)
    }

    // ---- sign-ins (keyed by the SHA-256 of the bearer token)

    /// Stores a sign-in under the SHA-256 of its `token`.
    pub fn put_sign_in(&self, token: &str, sign_in: &SignInRecord) -> Result<(), StoreError> {
        put(&self.sign_ins, &sha256_hex(token.as_bytes()), sign_in)?;
        self.flush()
    }

    /// The live sign-in of `token`, if any; expired ones are removed.
    pub fn sign_in(&self, token: &str) -> Result<Option<SignInRecord>, StoreError> {
        let key = sha256_hex(token.as_bytes());
        let Some(s) = get::<SignInRecord>(&self.sign_ins, &key)? else {
            return Ok(None);
        };
        if s.expires <= now_secs() {
            self.sign_ins.remove(key)?;
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// Removes the sign-in of `token` (signing out); returns it if it existed.
    pub fn remove_sign_in(&self, token: &str) -> Result<Option<SignInRecord>, StoreError> {
        let key = sha256_hex(token.as_bytes());
        let old = self.sign_ins.remove(key)?;
        self.flush()?;
        Ok(match old {
            Some(bytes) => Some(serde_json::from_slice(&bytes)?),
            None => None,
        })
    }

    /// The live sign-ins of `user`, oldest first, each with its id (the
    /// SHA-256 of its token, hex: the sign-in's key, never the token).
    /// Expired ones are removed on the way.
    pub fn sign_ins_of(&self, user: &str) -> Result<Vec<(String, SignInRecord)>, StoreError> {
        let now = now_secs();
        let mut out = Vec::new();
        for entry in self.sign_ins.iter() {
            let (k, v) = entry?;
            let Ok(s) = serde_json::from_slice::<SignInRecord>(&v) else {
                continue;
            };
            if s.expires <= now {
                self.sign_ins.remove(&k)?;
                continue;
            }
            if s.user == user {
                out.push((String::from_utf8_lossy(&k).into_owned(), s));
            }
        }
        out.sort_by_key(|(_, s)| s.created);
        Ok(out)
    }

    /// Removes the sign-in with id `id` (see [`SledStore::sign_ins_of`]);
    /// flushed by the caller's last write or [`SledStore::flush`].
    pub fn remove_sign_in_by_id(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.sign_ins.remove(id)?.is_some())
    }

    // ---- enrolment tokens (keyed by the SHA-256 of the secret)

    /// Stores an enrolment token under the SHA-256 of its `secret`.
    pub fn put_token(&self, secret: &str, token: &TokenRecord) -> Result<(), StoreError> {
        put(&self.tokens, &sha256_hex(secret.as_bytes()), token)?;
        self.flush()
    }

    /// Stores a new token for `token.connector` and removes every earlier
    /// unused token for that name, so at most one can enrol it. Returns how
    /// many earlier tokens were withdrawn.
    pub fn issue_token(&self, secret: &str, token: &TokenRecord) -> Result<usize, StoreError> {
        let mut withdrawn = 0;
        for entry in self.tokens.iter() {
            let (key, value) = entry?;
            let Ok(old) = serde_json::from_slice::<TokenRecord>(&value) else {
                continue;
            };
            if old.connector == token.connector && !old.used {
                self.tokens.remove(key)?;
                withdrawn += 1;
            }
        }
        put(&self.tokens, &sha256_hex(secret.as_bytes()), token)?;
        self.flush()?;
        Ok(withdrawn)
    }

    /// The token for `secret` if it may enrol now, without spending it: a
    /// request that fails later (a malformed certificate request) leaves the
    /// token usable until it expires.
    pub fn check_token(
        &self,
        secret: &str,
    ) -> Result<Result<TokenRecord, TokenRefusal>, StoreError> {
        let key = sha256_hex(secret.as_bytes());
        let Some(rec) = get::<TokenRecord>(&self.tokens, &key)? else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        Ok(self.token_refusal(&rec).map_or(Ok(rec), Err))
    }

    fn token_refusal(&self, rec: &TokenRecord) -> Option<TokenRefusal> {
        if rec.used {
            return Some(TokenRefusal::Used);
        }
        if rec.expires <= now_secs() {
            return Some(TokenRefusal::Expired);
        }
        match self.connector(&rec.connector) {
            Ok(Some(c)) if c.state == ConnectorState::Revoked && !rec.replace => {
                Some(TokenRefusal::Revoked(c.name))
            }
            Ok(Some(c)) if c.state == ConnectorState::Enrolled && !rec.replace => {
                Some(TokenRefusal::AlreadyEnrolled(c.name))
            }
            _ => None,
        }
    }

    /// Marks the token used and returns it. Atomic: of two connectors racing
    /// with one token, one wins. Call it once everything else about the
    /// enrolment has succeeded.
    pub fn redeem_token(
        &self,
        secret: &str,
    ) -> Result<Result<TokenRecord, TokenRefusal>, StoreError> {
        let key = sha256_hex(secret.as_bytes());
        let Some(old) = self.tokens.get(&key)? else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let mut rec: TokenRecord = serde_json::from_slice(&old)?;
        if let Some(refusal) = self.token_refusal(&rec) {
            return Ok(Err(refusal));
        }
        rec.used = true;
        let new = serde_json::to_vec(&rec)?;
        if self
            .tokens
            .compare_and_swap(&key, Some(old), Some(new))?
            .is_err()
        {
            return Ok(Err(TokenRefusal::Used));
        }
        self.flush()?;
        Ok(Ok(rec))
    }

    // ---- connectors

    /// The connector `name`, if there is one.
    pub fn connector(&self, name: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        get(&self.connectors, name)
    }

    /// Adds or replaces a connector.
    pub fn put_connector(&self, c: &ConnectorRecord) -> Result<(), StoreError> {
        put(&self.connectors, &c.name, c)?;
        self.flush()
    }

    /// Every connector, by name.
    pub fn connectors(&self) -> Result<Vec<ConnectorRecord>, StoreError> {
        self.connectors
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    /// Records the certificate issued to `connector` at enrolment.
    pub fn enrol_connector(&self, connector: &str, cert_sha256: &str) -> Result<(), StoreError> {
        let mut rec = self
            .connector(connector)?
            .unwrap_or_else(|| ConnectorRecord::pending(connector, Vec::new()));
        if let Some(old) = rec.cert_sha256.take() {
            self.certs.remove(old)?;
        }
        rec.state = ConnectorState::Enrolled;
        rec.cert_sha256 = Some(cert_sha256.to_owned());
        self.certs.insert(cert_sha256, connector)?;
        self.put_connector(&rec)
    }

    /// The connector a client certificate was issued to.
    pub fn connector_by_cert(
        &self,
        cert_sha256: &str,
    ) -> Result<Option<ConnectorRecord>, StoreError> {
        match self.certs.get(cert_sha256)? {
            Some(name) => self.connector(&String::from_utf8_lossy(&name)),
            None => Ok(None),
        }
    }

    /// Updates last-seen and the declared services; not flushed on every
    /// heartbeat (losing a last-seen time to a crash is harmless).
    pub fn touch_connector(
        &self,
        name: &str,
        services: Option<&[ServiceInfo]>,
    ) -> Result<(), StoreError> {
        // Compare-and-swap, touching only these fields: a revocation written
        // meanwhile is never overwritten by a stale copy of the record.
        self.connectors.update_and_fetch(name, |old| {
            let old = old?;
            let mut rec: ConnectorRecord = match serde_json::from_slice(old) {
                Ok(r) => r,
                Err(_) => return Some(old.to_vec()),
            };
            rec.last_seen = Some(now_secs());
            if let Some(s) = services {
                rec.services = s.to_vec();
            }
            serde_json::to_vec(&rec).ok().or_else(|| Some(old.to_vec()))
        })?;
        Ok(())
    }

    /// True when some connector, online or not, has declared `service`.
    pub fn service_known(&self, service: &str) -> Result<bool, StoreError> {
        Ok(self
            .connectors()?
            .iter()
            .any(|c| c.state == ConnectorState::Enrolled && c.may_serve(service)))
    }

    /// Grants (`grant = true`) or withdraws `service` for connector `name`
    /// and returns the updated record; `None` when there is no such
    /// connector. Either way the grants are the admin's from now on (no
    /// longer marked migrated). Compare-and-swap on the record alone, like
    /// [`SledStore::touch_connector`], and flushed.
    pub fn set_grant(
        &self,
        name: &str,
        service: &str,
        grant: bool,
    ) -> Result<Option<ConnectorRecord>, StoreError> {
        let updated = self.connectors.update_and_fetch(name, |old| {
            let old = old?;
            let mut rec: ConnectorRecord = match serde_json::from_slice(old) {
                Ok(r) => r,
                Err(_) => return Some(old.to_vec()),
            };
            let granted = rec.granted.get_or_insert_with(Vec::new);
            granted.retain(|s| s != service);
            if grant {
                granted.push(service.to_owned());
                granted.sort();
            }
            rec.grants_migrated = false;
            serde_json::to_vec(&rec).ok().or_else(|| Some(old.to_vec()))
        })?;
        self.flush()?;
        match updated {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    // ---- second factor

    /// Claims a TOTP time step for `user`: true if it is later than every
    /// step used before (and is now the last one), false for a replay.
    /// Atomic, and flushed: a code stays used across a crash.
    pub fn claim_totp_step(&self, user: &str, step: u64) -> Result<bool, StoreError> {
        let mut fresh = false;
        self.totp_used.fetch_and_update(user, |old| {
            let last = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            fresh = last.is_none_or(|l| step > l);
            let keep = if fresh { step } else { last.unwrap_or(step) };
            Some(keep.to_be_bytes().to_vec())
        })?;
        self.flush()?;
        Ok(fresh)
    }

    /// Forgets the steps used with an old secret.
    pub fn reset_totp_steps(&self, user: &str) -> Result<(), StoreError> {
        self.totp_used.remove(user)?;
        Ok(())
    }

    // ---- risk facts

    /// Counts a failed sign-in of `user` (for the risk score).
    pub fn record_failed_sign_in(&self, user: &str, failure: Failure) -> Result<(), StoreError> {
        self.failures.fetch_and_update(user, |old| {
            let mut list: Vec<Failure> = old
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            list.push(failure.clone());
            let drop = list.len().saturating_sub(MAX_FAILURES_KEPT);
            list.drain(..drop);
            serde_json::to_vec(&list).ok()
        })?;
        Ok(())
    }

    /// Failed sign-ins of `user` at or after `since` that `pick` selects.
    pub fn failed_sign_ins_since(
        &self,
        user: &str,
        since: u64,
        pick: impl Fn(&Failure) -> bool,
    ) -> Result<u32, StoreError> {
        // Unreadable history (an older format) counts as none.
        let list: Vec<Failure> = self
            .failures
            .get(user)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(list.iter().filter(|f| f.at >= since && pick(f)).count() as u32)
    }

    /// When `user` first reached a service with `what` (a network or a
    /// device); `None` if never.
    pub fn first_use(&self, user: &str, what: &str) -> Result<Option<u64>, StoreError> {
        get(&self.known, &format!("{user}\0{what}"))
    }

    /// Records that `user` reached a service with `what`, keeping the first time.
    pub fn note_use(&self, user: &str, what: &str, at: u64) -> Result<(), StoreError> {
        let key = format!("{user}\0{what}");
        let value = serde_json::to_vec(&at)?;
        let _ = self
            .known
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?;
        Ok(())
    }

    // ---- devices

    /// The device `name`, if there is one.
    pub fn device(&self, name: &str) -> Result<Option<DeviceRecord>, StoreError> {
        get(&self.devices, name)
    }

    /// Adds or replaces a device.
    pub fn put_device(&self, d: &DeviceRecord) -> Result<(), StoreError> {
        put(&self.devices, &d.name, d)?;
        self.device_certs
            .insert(d.cert_sha256.as_bytes(), d.name.as_bytes())?;
        self.flush()
    }

    /// Every device, by name.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.devices
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    /// The live (not revoked, not expired) device whose certificate has this SHA-256.
    pub fn device_by_cert(&self, sha256: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let Some(name) = self.device_certs.get(sha256.as_bytes())? else {
            return Ok(None);
        };
        let now = now_secs();
        Ok(self
            .device(&String::from_utf8_lossy(&name))?
            .filter(|d| d.cert_sha256 == sha256 && !d.revoked && d.expires > now))
    }

    // ---- meta

    /// A setting the relay keeps for the CLI (`META_*`).
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sets a `META_*` setting.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.meta.insert(key, value.as_bytes())?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(store: &SledStore, secret: &str, connector: &str, expires: u64) {
        store
            .put_token(
                secret,
                &TokenRecord {
                    connector: connector.into(),
                    expires,
                    used: false,
                    replace: false,
                },
            )
            .unwrap();
    }

    fn redeemed(store: &SledStore, secret: &str) -> Result<String, TokenRefusal> {
        store.redeem_token(secret).unwrap().map(|t| t.connector)
    }

    /// The relay's own checks, whatever a connector checked before asking.
    #[test]
    fn tokens_are_single_use_expire_and_die_with_their_connector() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let later = now_secs() + 600;

        token(&store, "fresh", "c1", later);
        assert_eq!(store.check_token("fresh").unwrap().unwrap().connector, "c1");
        assert_eq!(redeemed(&store, "fresh"), Ok("c1".to_string()));
        assert_eq!(redeemed(&store, "fresh"), Err(TokenRefusal::Used));

        token(&store, "stale", "c2", now_secs().saturating_sub(1));
        assert_eq!(redeemed(&store, "stale"), Err(TokenRefusal::Expired));
        assert_eq!(redeemed(&store, "never issued"), Err(TokenRefusal::Unknown));

        store.enrol_connector("c3", "cert-hash").unwrap();
        let mut c3 = store.connector("c3").unwrap().unwrap();
        c3.state = ConnectorState::Revoked;
        store.put_connector(&c3).unwrap();
        token(&store, "for-revoked", "c3", later);
        assert_eq!(
            redeemed(&store, "for-revoked"),
            Err(TokenRefusal::Revoked("c3".into()))
        );
    }

    #[test]
    fn a_new_token_withdraws_the_unused_ones_and_cannot_displace_an_enrolled_connector() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let rec = |replace| TokenRecord {
            connector: "c5".into(),
            expires: now_secs() + 600,
            used: false,
            replace,
        };
        assert_eq!(store.issue_token("first", &rec(false)).unwrap(), 0);
        assert_eq!(store.issue_token("second", &rec(false)).unwrap(), 1);
        assert_eq!(redeemed(&store, "first"), Err(TokenRefusal::Unknown));
        assert_eq!(redeemed(&store, "second"), Ok("c5".into()));
        store.enrol_connector("c5", "cert-1").unwrap();

        // Written straight to the store (the admin command refuses to issue
        // it): a plain token for an enrolled name does not enrol.
        token(&store, "sneaky", "c5", now_secs() + 600);
        assert_eq!(
            redeemed(&store, "sneaky"),
            Err(TokenRefusal::AlreadyEnrolled("c5".into()))
        );
        store.issue_token("replacing", &rec(true)).unwrap();
        assert!(redeemed(&store, "replacing").is_ok());
    }

    #[test]
    fn records_from_before_grants_keep_what_they_announced() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.enrol_connector("old", "cert").unwrap();
            let mut rec = store.connector("old").unwrap().unwrap();
            rec.granted = None;
            rec.services = vec![ServiceInfo {
                name: "web1".into(),
                kind: sallyport_proto::tunnel::ServiceKind::Ssh,
                host_keys: vec![],
            }];
            store.put_connector(&rec).unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let rec = store.connector("old").unwrap().unwrap();
        assert_eq!(rec.granted, Some(vec!["web1".to_string()]));
        assert!(rec.grants_migrated);
        assert!(rec.may_serve("web1") && !rec.may_serve("web2"));
        let rec = store.set_grant("old", "web2", true).unwrap().unwrap();
        assert_eq!(
            rec.granted,
            Some(vec!["web1".to_string(), "web2".to_string()])
        );
        assert!(!rec.grants_migrated);
    }

    #[test]
    fn service_names_stored_in_another_case_are_lowercased_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.enrol_connector("old", "cert").unwrap();
            let mut rec = store.connector("old").unwrap().unwrap();
            rec.granted = Some(vec!["Prod-DB".into(), "prod-db".into(), "web".into()]);
            rec.services = vec![ServiceInfo {
                name: "Prod-DB".into(),
                kind: sallyport_proto::tunnel::ServiceKind::Ssh,
                host_keys: vec![],
            }];
            store.put_connector(&rec).unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let rec = store.connector("old").unwrap().unwrap();
        assert_eq!(
            rec.granted,
            Some(vec!["prod-db".to_string(), "web".to_string()])
        );
        assert_eq!(rec.services[0].name, "prod-db");
        assert!(store.service_known("prod-db").unwrap());
    }

    #[test]
    fn heartbeats_never_undo_a_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.enrol_connector("c1", "cert-hash").unwrap();
        let mut rec = store.connector("c1").unwrap().unwrap();
        rec.state = ConnectorState::Revoked;
        store.put_connector(&rec).unwrap();
        store.touch_connector("c1", Some(&[])).unwrap();
        let after = store.connector("c1").unwrap().unwrap();
        assert_eq!(after.state, ConnectorState::Revoked);
        assert!(after.last_seen.is_some());
        assert_eq!(
            store.connector_by_cert("cert-hash").unwrap().unwrap().state,
            ConnectorState::Revoked
        );
    }
}
