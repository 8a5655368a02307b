//! The admin's certificate files (`--tls-cert`, `--tls-key`): read at
//! start, and again on SIGHUP and when either file changes, so a renewal by
//! certbot or any other tool reaches new handshakes without a restart.
//!
//! Changes are found by polling the files' metadata (modification time and
//! size, following symlinks) every [`POLL_INTERVAL`], as the policy reload
//! does, rather than with an inotify watcher: two `stat` calls a second
//! cost nothing, need no new dependency, and see what inotify on the files
//! would miss (a directory of symlinks switched at once, as Kubernetes
//! secrets and certbot's `live/` links are, or a file replaced by rename).
//! A change is read once it has held still for one more poll, so a file
//! caught halfway through being written is not tried; a pair that still
//! cannot be used (a key that does not match, a file not written yet) is
//! refused with an error, the old certificate stays, and the next change
//! is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::{read_bounded, HttpsCert, TlsError};
use crate::metrics::Metrics;

/// How often the certificate and key files' metadata is checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Certificates read from one PEM file; more is not a chain anyone serves.
pub const MAX_CHAIN_LEN: usize = 16;

/// Reads a certificate chain and its private key and checks that they
/// belong together (the key's public half is the certificate's).
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_bounded(cert_path)?;
    let key_pem = read_bounded(key_path)?;
    let chain = parse_pair(&cert_pem, &key_pem).map_err(|e| match e {
        PairError::Chain => TlsError::BadPem {
            path: cert_path.to_owned(),
            what: "certificate chain",
        },
        PairError::Key => TlsError::BadPem {
            path: key_path.to_owned(),
            what: "private key",
        },
        PairError::Rustls(reason) => TlsError::Pair {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            reason,
        },
    })?;
    Ok(chain)
}

/// Why [`parse_pair`] failed.
pub(crate) enum PairError {
    /// No certificate in the chain's PEM.
    Chain,
    /// No private key in the key's PEM.
    Key,
    /// rustls refused the key or the pair.
    Rustls(String),
}

/// A [`CertifiedKey`] from a PEM chain and a PEM key, checked to match.
pub(crate) fn parse_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, PairError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .take(MAX_CHAIN_LEN)
        .collect::<Result<_, _>>()
        .map_err(|_| PairError::Chain)?;
    if chain.is_empty() {
        return Err(PairError::Chain);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| PairError::Key)?;
    let provider = sallyport_common::tls::crypto_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| PairError::Rustls(e.to_string()))?;
    // from_der lets an unknown consistency through; the ring keys always know.
    Ok(certified)
}

/// What identifies one version of a file without reading it.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads the pair into `cert` on SIGHUP and when a file changes and then
/// holds still for a poll, until `shutdown`.
pub struct FileWatch {
    /// The certificate chain file.
    pub cert_path: PathBuf,
    /// The private key file.
    pub key_path: PathBuf,
    /// Where a good pair goes.
    pub cert: Arc<HttpsCert>,
    /// Counts reloads and refused pairs.
    pub metrics: Arc<Metrics>,
}

impl FileWatch {
    /// Reads the pair again; swaps it in when it can be used, otherwise
    /// logs why and keeps the certificate in force.
    pub fn reload(&self, why: &str) -> Result<(), TlsError> {
        match load_pair(&self.cert_path, &self.key_path) {
            Ok(pair) => {
                self.cert.swap(pair, why);
                Metrics::add(&self.metrics.tls_reloads, 1);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    why,
                    error = %e,
                    "HTTPS certificate not reloaded; the one in force stays. Fix the files \
                     (a chain, then its key, both PEM) and send SIGHUP or write them again"
                );
                Metrics::add(&self.metrics.tls_reload_failures, 1);
                Err(e)
            }
        }
    }

    fn stamps(&self) -> (Stamp, Stamp) {
        (stamp(&self.cert_path), stamp(&self.key_path))
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the HTTPS certificate reloads on file changes only");
                None
            }
        };
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = self.stamps();
        // A changed pair of stamps seen at the last poll, waiting to hold still.
        let mut settling = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    seen = self.stamps();
                    settling = None;
                    let _ = self.reload("SIGHUP");
                }
                _ = tick.tick() => {
                    let now = self.stamps();
                    if now == seen || now.0.is_none() || now.1.is_none() {
                        settling = None;
                    } else if settling != Some(now) {
                        settling = Some(now);
                    } else {
                        settling = None;
                        seen = now;
                        // A refused pair is not retried until a file changes again.
                        let _ = self.reload("certificate files changed");
                    }
                }
            }
        }
    }
}

/// Counts of reloads, for tests of this module.
#[cfg(test)]
fn reloads(m: &Metrics) -> (u64, u64) {
    (m.tls_reloads.get(), m.tls_reload_failures.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert_a, _) = pair("a.example");
        let (_, key_b) = pair("b.example");
        assert!(matches!(
            parse_pair(cert_a.as_bytes(), key_b.as_bytes()),
            Err(PairError::Rustls(_))
        ));
        let (cert, key) = pair("a.example");
        assert!(parse_pair(cert.as_bytes(), key.as_bytes()).is_ok());
    }

    #[test]
    fn an_empty_or_cut_file_is_refused() {
        let (cert, key) = pair("a.example");
        assert!(matches!(
            parse_pair(b"", key.as_bytes()),
            Err(PairError::Chain)
        ));
        let half = &key.as_bytes()[..key.len() / 2];
        assert!(matches!(
            parse_pair(cert.as_bytes(), half),
            Err(PairError::Key)
        ));
    }

    #[test]
    fn a_refused_reload_keeps_the_certificate_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair("a.example");
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let first = load_pair(&cert_path, &key_path).unwrap();
        let served = first.cert[0].clone();
        let watch = FileWatch {
            cert_path: cert_path.clone(),
            key_path,
            cert: HttpsCert::new(first),
            metrics: Arc::default(),
        };
        let (other, _) = pair("b.example");
        std::fs::write(&cert_path, other).unwrap();
        assert!(watch.reload("test").is_err());
        assert_eq!(watch.cert.current().cert[0], served);
        assert_eq!(reloads(&watch.metrics), (0, 1));
        std::fs::write(&cert_path, &cert).unwrap();
        assert!(watch.reload("test").is_ok());
        assert_eq!(reloads(&watch.metrics), (1, 1));
    }
}
