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
