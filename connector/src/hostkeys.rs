//! Finding an SSH service's host keys, so the relay can give clients the keys
//! to expect (attested by the connector, not trusted on first use).
//!
//! The connector runs one key exchange per host key algorithm against the
//! service and keeps the key the server proves it holds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::ssh_key::{Algorithm, EcdsaCurve, HashAlg};
use russh::keys::PublicKeyOrCertificate;

/// How long one scan of one algorithm may take.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(5);

struct Capture(Arc<Mutex<Option<String>>>);

impl russh::client::Handler for Capture {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let PublicKeyOrCertificate::PublicKey { key, .. } = key {
            let mut key = key.clone();
            key.set_comment("");
            if let Ok(line) = key.to_openssh() {
                *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
            }
        }
        // Never authenticate: the key is all we came for.
        Ok(false)
    }
}

/// The host keys `addr` proves it holds, one per algorithm it supports.
pub async fn scan(addr: &str) -> Vec<String> {
    let algorithms = [
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
    ];
    let mut keys = Vec::new();
    for alg in algorithms {
        let found = Arc::new(Mutex::new(None));
        let config = russh::client::Config {
            preferred: russh::Preferred {
                key: vec![alg].into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let attempt = russh::client::connect(Arc::new(config), addr, Capture(found.clone()));
        let _ = tokio::time::timeout(SCAN_TIMEOUT, attempt).await;
        let key = found.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(k) = key {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}
