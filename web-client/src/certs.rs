//! `sallyport ssh-cert`: a fresh key pair, certified by the relay's SSH CA,
//! written where stock OpenSSH can use it. The private key never leaves
//! this machine; the relay sees only the public half.

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{LineEnding, PrivateKey};

use crate::ClientError;

/// The key pair of a new certificate: the private key and the public key
/// line to send for signing.
pub fn new_key() -> Result<(PrivateKey, String), ClientError> {
    crate::ssh::new_key().map_err(ClientError::Usage)
}

/// Writes `path` with `mode`, replacing what is there atomically (the
/// new mode applies even when the old file had a looser one).
fn write(path: &Path, contents: &str, mode: u32) -> Result<(), ClientError> {
    sallyport_common::fs::write_atomic(path, contents.as_bytes(), mode).map_err(|source| {
        ClientError::File {
            path: path.to_owned(),
            source,
        }
    })
}

/// Writes `DIR/SERVICE` (the private key, 0600) and `DIR/SERVICE-cert.pub`
/// (the certificate, which ssh picks up beside the key); returns the key's path.
pub fn save(
    dir: &Path,
    service: &str,
    key: &PrivateKey,
    certificate: &str,
) -> Result<PathBuf, ClientError> {
    sallyport_common::fs::create_private_dir(dir).map_err(|source| ClientError::File {
        path: dir.to_owned(),
        source,
    })?;
    let key_path = dir.join(service);
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    write(&key_path, &pem, 0o600)?;
    write(
        &dir.join(format!("{service}-cert.pub")),
        &format!("{}\n", certificate.trim()),
        0o644,
    )?;
    Ok(key_path)
}

/// How close to its end a certificate is renewed by `ssh-cert
/// --if-expiring` (the default of `--renew-before`): long enough for a connection that starts now
/// to finish authenticating (sshd checks the certificate at login only;
/// a session outlives it).
pub const RENEW_MARGIN_SECS: u64 = 30;

/// `DIR/SERVICE`, the private key [`save`] writes.
pub fn key_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(service)
}

/// `DIR/SERVICE-cert.pub`, the certificate beside it.
pub fn cert_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}-cert.pub"))
}

/// The end of the validity (Unix seconds) of the certificate in `DIR`
/// for `service`, if there is one whose private key is beside it and
/// which parses. A missing or unreadable pair is `None`: the caller gets a
/// new one rather than failing over a file it is about to replace.
pub fn valid_before(dir: &Path, service: &str) -> Option<u64> {
    if !key_path(dir, service).is_file() {
        return None;
    }
    let text = std::fs::read_to_string(cert_path(dir, service)).ok()?;
    let cert = russh::keys::ssh_key::Certificate::from_openssh(text.trim()).ok()?;
    Some(cert.valid_before())
}

/// Whether a certificate that ends at `valid_before` must be renewed at
/// `now`: it ends within `margin` seconds (or has ended).
pub fn expiring(valid_before: u64, now: u64, margin: u64) -> bool {
    valid_before <= now.saturating_add(margin)
}

/// An exclusive lock on `DIR/.SERVICE.lock`, held until the file is
/// dropped: two `ssh` started at once (each running `ssh-cert
/// --if-expiring`) must not interleave writing the key and the
/// certificate, or one would end up with the other's key beside its
/// certificate. Blocks until the other is done.
pub fn lock(dir: &Path, service: &str) -> Result<std::fs::File, ClientError> {
    sallyport_common::fs::create_private_dir(dir).map_err(|source| ClientError::File {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(format!(".{service}.lock"));
    let io = |source| ClientError::File {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_within_the_margin() {
        assert!(expiring(100, 100, 0), "ended");
        assert!(expiring(130, 100, 30), "ends within the margin");
        assert!(!expiring(131, 100, 30));
        assert!(expiring(0, u64::MAX, 30), "no overflow");
    }

    #[test]
    fn a_saved_certificate_is_found_and_a_half_pair_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(valid_before(dir.path(), "web1"), None);
        std::fs::write(cert_path(dir.path(), "web1"), "not a certificate").unwrap();
        std::fs::write(key_path(dir.path(), "web1"), "key").unwrap();
        assert_eq!(valid_before(dir.path(), "web1"), None);
        let _held = lock(dir.path(), "web1").unwrap();
    }
}
