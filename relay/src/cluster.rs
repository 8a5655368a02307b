//! What the relays of a cluster (a PostgreSQL store) share besides the
//! store: their secrets and their registrations.
//!
//! **Secrets.** The tunnel CA (certificate and key) and the SSH CAs (the
//! relay's and each service's own) are kept in the `cluster_secrets` table
//! (migration 3), sealed with AES-256-GCM under the cluster key, a 256-bit
//! key each relay reads from `--cluster-key-file`. The secret's name is the
//! associated data, so a sealed value moved under another name does not
//! open. AES-GCM is `ring`'s: ring is already the relay's crypto provider
//! (rustls, quinn), so no new crate comes in, and its AEAD is audited and
//! constant-time. Nonces are random (96 bits): the cluster seals a handful
//! of values, far below the 2^32 messages random nonces allow under one key.
//! The first relay to need a secret creates it (INSERT ... ON CONFLICT DO
//! NOTHING, then reads back what is stored), so relays starting at once end
//! up with the same CA.
//!
//! **Registration.** Each relay has an id (`--relay-id`, default the host
//! name) and a row in `relays` with a lease it renews every
//! [`LEASE_RENEW_EVERY`]; a relay whose lease has lapsed is not live
//! ([`crate::store::PgStore::live_relays`]). Starting increments the id's
//! epoch: a process that finds at renewal that the epoch is no longer its
//! own has been fenced by a newer process with the same id, and stops.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};
use tokio_util::sync::CancellationToken;

use crate::pki::RelayCa;
use crate::ssh_ca::SshCa;
use crate::store::{PgStore, StoreError};

/// Length of the cluster key, bytes (AES-256).
pub const CLUSTER_KEY_LEN: usize = 32;
/// Longest a cluster key file may be: 64 hex digits and a line end, with
/// room for a CR.
const MAX_KEY_FILE_LEN: u64 = 2 * CLUSTER_KEY_LEN as u64 + 2;
/// How long a relay's registration counts as live after a renewal.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a relay renews its lease: several renewals fit in one
/// [`LEASE`], so one or two failed ones do not make it look dead.
pub const LEASE_RENEW_EVERY: Duration = Duration::from_secs(2);
/// The first byte of a sealed secret: the format (AES-256-GCM, nonce,
/// ciphertext and tag).
const SEALED_V1: u8 = 1;
/// The name of the tunnel CA's secret (JSON: certificate and key, PEM).
const SECRET_TUNNEL_CA: &str = "tunnel-ca";
/// The name of the relay's SSH user CA's secret (OpenSSH private key).
const SECRET_SSH_CA: &str = "ssh-ca";
/// The prefix of a service's own SSH CA's secret; the service name follows.
const SECRET_SSH_CA_FOR: &str = "ssh-ca/";

/// What goes wrong with the cluster key or the cluster's secrets.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The store is PostgreSQL but no key file was given.
    #[error(
        "a relay on PostgreSQL needs the cluster key: set --cluster-key-file \
         (SALLYPORT_CLUSTER_KEY_FILE, cluster_key_file in --config); \
         `sallyport-relay cluster-key generate PATH` makes one"
    )]
    NoKeyFile,
    /// The key file cannot be read.
    #[error("cannot read the cluster key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Others than its owner may read the key file.
    #[error("the cluster key file {0} is readable by other users: chmod 600 it")]
    TooOpen(String),
    /// The key file holds no 256-bit key.
    #[error(
        "the cluster key file {0} does not hold a 256-bit key: 64 hex digits, or 32 raw bytes"
    )]
    BadKey(String),
    /// A secret does not open under this key.
    #[error("cannot decrypt the cluster's secrets: is --cluster-key-file the cluster's key?")]
    WrongKey,
    /// A secret opened but its contents are not what was sealed.
    #[error("the cluster secret {0} is damaged")]
    Damaged(String),
    /// A CA file of the data dir being adopted cannot be read.
    #[error("cannot read {path} to adopt it into the cluster: {source}")]
    Adopt {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A CA could not be made or read.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// An SSH CA could not be made or read.
    #[error(transparent)]
    SshCa(#[from] crate::ssh_ca::SshCaError),
}

/// The cluster key: seals and opens the cluster's secrets.
pub struct ClusterKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// Reads the key at `path`: 64 hex digits (a line end allowed), or
    /// exactly 32 raw bytes (`head -c 32 /dev/urandom`). Refuses a file
    /// that group or others may read.
    pub fn load(path: &Path) -> Result<Self, ClusterError> {
        use std::os::unix::fs::PermissionsExt as _;
        let shown = path.display().to_string();
        let io = |source| ClusterError::Io {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(ClusterError::TooOpen(shown));
        }
        let bytes = match sallyport_common::fs::read_bounded(file, MAX_KEY_FILE_LEN) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(ClusterError::BadKey(shown))
            }
            Err(e) => return Err(io(e)),
        };
        let key = parse_key(&bytes).ok_or_else(|| ClusterError::BadKey(shown.clone()))?;
        Ok(Self::from_bytes(&key))
    }

    /// The key of these bytes.
    pub fn from_bytes(bytes: &[u8; CLUSTER_KEY_LEN]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256 takes 32 bytes");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Writes a fresh random key to `path` (64 hex digits and a line end,
    /// mode 0600). Refuses to replace an existing file.
    pub fn generate_file(path: &Path) -> anyhow::Result<()> {
        let mut key = [0u8; CLUSTER_KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        let text = format!("{}\n", to_hex(&key));
        let created = sallyport_common::fs::create_private_new(path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        if !created {
            anyhow::bail!(
                "{} exists: a cluster key is never overwritten (the cluster's secrets are sealed with it)",
                path.display()
            );
        }
        Ok(())
    }

    /// `plaintext` sealed under this key with `name` as associated data:
    /// format byte, nonce, ciphertext and tag.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source failed");
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut body,
            )
            .expect("AES-GCM seals any length the store holds");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    /// What [`ClusterKey::seal`] sealed under `name`.
    /// Errors: [`ClusterError::WrongKey`] when it does not open (another
    /// key, another name, or damaged).
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, ClusterError> {
        let Some((&SEALED_V1, rest)) = sealed.split_first() else {
            return Err(ClusterError::Damaged(name.to_owned()));
        };
        if rest.len() < NONCE_LEN {
            return Err(ClusterError::Damaged(name.to_owned()));
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| ClusterError::Damaged(name.to_owned()))?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut body)
            .map_err(|_| ClusterError::WrongKey)?;
        Ok(plain.to_vec())
    }
}

/// 64 hex digits (a line end allowed) or 32 raw bytes, as key bytes.
fn parse_key(bytes: &[u8]) -> Option<[u8; CLUSTER_KEY_LEN]> {
    let mut key = [0u8; CLUSTER_KEY_LEN];
    let text = std::str::from_utf8(bytes)
        .ok()
        .map(|t| t.trim_end_matches(['\r', '\n']));
    if let Some(text) = text.filter(|t| t.len() == 2 * CLUSTER_KEY_LEN) {
        for (i, out) in key.iter_mut().enumerate() {
            *out = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return Some(key);
    }
    if bytes.len() == CLUSTER_KEY_LEN {
        key.copy_from_slice(bytes);
        return Some(key);
    }
    None
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tunnel CA as sealed: both halves in PEM.
#[derive(serde::Serialize, serde::Deserialize)]
struct TunnelCaSecret {
    cert_pem: String,
    key_pem: String,
}

/// The cluster's secrets in its PostgreSQL store, opened with its key.
#[derive(Clone, Debug)]
pub struct ClusterSecrets {
    pg: PgStore,
    key: Arc<ClusterKey>,
    /// A data dir whose CAs the cluster adopts if it has none yet.
    adopt_from: Option<std::path::PathBuf>,
}

impl ClusterSecrets {
    /// The secrets of the cluster whose store is `pg`, under `key`.
    pub fn new(pg: PgStore, key: ClusterKey) -> Self {
        Self {
            pg,
            key: Arc::new(key),
            adopt_from: None,
        }
    }

    /// The same, adopting the CAs a relay kept in `data_dir` before it moved
    /// to PostgreSQL (`store migrate`) for any the cluster has none of yet:
    /// connectors pinned to that tunnel CA, and sshds trusting that SSH CA,
    /// carry on. Files that are not there are made anew, as by [`Self::new`].
    pub fn adopting(mut self, data_dir: &Path) -> Self {
        self.adopt_from = Some(data_dir.to_owned());
        self
    }

    /// `file` in the data dir being adopted, when it is there.
    fn adoptable(&self, file: &str) -> Option<std::path::PathBuf> {
        self.adopt_from
            .as_ref()
            .map(|dir| dir.join(file))
            .filter(|p| p.exists())
    }

    /// The secret `name`, created from `make()` if the cluster has none yet.
    async fn get_or_create(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Vec<u8>, ClusterError>,
    ) -> Result<Vec<u8>, ClusterError> {
        let candidate = self.key.seal(name, &make()?);
        let stored = self.pg.secret_or_insert(name, &candidate).await?;
        self.key.open(name, &stored)
    }

    /// The cluster's tunnel CA (which signs connector and device
    /// certificates and whose fingerprint enrolment tokens carry).
    pub async fn relay_ca(&self) -> Result<RelayCa, ClusterError> {
        let plain = self
            .get_or_create(SECRET_TUNNEL_CA, || {
                let ca = match self.adoptable("ca.key") {
                    Some(key) => RelayCa::load_or_create(key.parent().expect("in the data dir"))?,
                    None => RelayCa::generate()?,
                };
                let secret = TunnelCaSecret {
                    cert_pem: ca.cert_pem().to_owned(),
                    key_pem: ca.key_pem(),
                };
                Ok(serde_json::to_vec(&secret).expect("strings serialize"))
            })
            .await?;
        let damaged = || ClusterError::Damaged(SECRET_TUNNEL_CA.to_owned());
        let secret: TunnelCaSecret = serde_json::from_slice(&plain).map_err(|_| damaged())?;
        let name = Path::new(SECRET_TUNNEL_CA);
        RelayCa::from_pem(&secret.cert_pem, &secret.key_pem, name, name).map_err(|_| damaged())
    }

    /// The cluster's SSH user CA.
    pub async fn ssh_ca(&self) -> Result<SshCa, ClusterError> {
        self.ssh_ca_named(SECRET_SSH_CA, "ssh_ca", "sallyport relay SSH user CA")
            .await
    }

    /// The SSH CA of `service` (`separate_ca = true`); `service` must be a
    /// checked name.
    pub async fn ssh_ca_for(&self, service: &str) -> Result<SshCa, ClusterError> {
        self.ssh_ca_named(
            &format!("{SECRET_SSH_CA_FOR}{service}"),
            &format!("ssh_ca-{service}"),
            &format!("sallyport SSH user CA for {service}"),
        )
        .await
    }

    /// `file`: where a relay on sled kept this CA in its data dir.
    async fn ssh_ca_named(
        &self,
        name: &str,
        file: &str,
        comment: &str,
    ) -> Result<SshCa, ClusterError> {
        let plain = self
            .get_or_create(name, || match self.adoptable(file) {
                Some(path) => Ok(read_adopted(&path)?.into_bytes()),
                None => Ok(SshCa::generate(comment).to_openssh()?.into_bytes()),
            })
            .await?;
        let text = String::from_utf8(plain).map_err(|_| ClusterError::Damaged(name.to_owned()))?;
        SshCa::from_openssh(&text).map_err(|_| ClusterError::Damaged(name.to_owned()))
    }
}

/// An SSH CA's private key file, in OpenSSH's format, from a data dir.
fn read_adopted(path: &Path) -> Result<String, ClusterError> {
    std::fs::read_to_string(path).map_err(|source| ClusterError::Adopt {
        path: path.display().to_string(),
        source,
    })
}

/// The host name, the default relay id ("relay" if it cannot be read).
pub fn default_relay_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".to_owned())
}

/// This process's registration: its relay id and epoch.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `--relay-id`.
    pub id: String,
    /// The epoch this process got when it registered.
    pub epoch: i64,
}

impl Registration {
    /// Registers relay `id` in `pg` with a fresh lease, taking the id over
    /// from any older process (which its next renewal finds fenced).
    pub async fn register(
        pg: &PgStore,
        id: &str,
        tunnel_addr: &str,
        public_url: &str,
    ) -> Result<Self, StoreError> {
        let epoch = pg
            .register_relay(id, tunnel_addr, public_url, LEASE)
            .await?;
        tracing::info!(relay_id = id, epoch, "registered in the cluster");
        Ok(Self {
            id: id.to_owned(),
            epoch,
        })
    }

    /// Renews the lease every [`LEASE_RENEW_EVERY`] until `shutdown`.
    /// When PostgreSQL fails, it logs and tries again at the next tick (the
    /// relay keeps serving). When the epoch is no longer this process's, it
    /// logs why and cancels `fenced`, and stops.
    pub async fn renew_until(
        self,
        pg: PgStore,
        shutdown: CancellationToken,
        fenced: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(LEASE_RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match pg.renew_relay_lease(&self.id, self.epoch, LEASE).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(
                        relay_id = %self.id,
                        epoch = self.epoch,
                        "fenced: another process started with this relay id; this one stops serving"
                    );
                    fenced.cancel();
                    return;
                }
                Err(e) => tracing::warn!(
                    relay_id = %self.id,
                    error = %e,
                    "cannot renew the relay's lease; serving on and trying again"
                ),
            }
        }
        if let Err(e) = pg.release_relay_lease(&self.id, self.epoch).await {
            tracing::warn!(error = %e, "cannot release the relay's lease at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_under_their_key_and_name() {
        let key = ClusterKey::from_bytes(&[7; CLUSTER_KEY_LEN]);
        let sealed = key.seal("ssh-ca", b"secret");
        assert_eq!(key.open("ssh-ca", &sealed).unwrap(), b"secret");
        assert!(matches!(
            key.open("tunnel-ca", &sealed),
            Err(ClusterError::WrongKey)
        ));
        let other = ClusterKey::from_bytes(&[8; CLUSTER_KEY_LEN]);
        assert!(matches!(
            other.open("ssh-ca", &sealed),
            Err(ClusterError::WrongKey)
        ));
        assert!(matches!(
            key.open("ssh-ca", &[]),
            Err(ClusterError::Damaged(_))
        ));
    }

    #[test]
    fn key_files_are_hex_or_raw_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("sallyport-ck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let _ = std::fs::remove_file(&path);
        ClusterKey::generate_file(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        ClusterKey::load(&path).unwrap();
        assert!(
            ClusterKey::generate_file(&path).is_err(),
            "never overwritten"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            ClusterKey::load(&path),
            Err(ClusterError::TooOpen(_))
        ));
        std::fs::write(&path, [1u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        ClusterKey::load(&path).unwrap();
        std::fs::write(&path, b"abcd\n").unwrap();
        assert!(matches!(
            ClusterKey::load(&path),
            Err(ClusterError::BadKey(_))
        ));
        assert_eq!(
            parse_key(format!("{}\n", "0f".repeat(32)).as_bytes()),
            Some([15; 32])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
