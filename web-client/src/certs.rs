//! `sallyport ssh-cert`: a fresh key pair, certified by the relay's SSH CA,
//! written where stock OpenSSH can use it. The private key never leaves
//! this machine; the relay sees only the public half.

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{LineEnding, PrivateKey};

use crate::ClientError;

/// The key pair of a new certificate: the private key and the public key
/// line to send for signing.
pub fn new_key() -> Result<(PrivateKey, String), ClientError> {
    crate::ssh::new_key().map_err(ClientError::Usage)
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), ClientError> {
    use std::io::Write as _;
    let err = |source| ClientError::File {
        path: path.to_owned(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)
}

/// Writes `DIR/SERVICE` (the private key, 0600) and `DIR/SERVICE-cert.pub`
/// (the certificate, which ssh picks up beside the key); returns the key's path.
pub fn save(
    dir: &Path,
    service: &str,
    key: &PrivateKey,
    certificate: &str,
) -> Result<PathBuf, ClientError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ClientError::File {
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
