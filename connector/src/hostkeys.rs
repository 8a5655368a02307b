//! Finding an SSH service's host keys, so the relay can give clients the keys
//! to expect (attested by the connector, not trusted on first use).
//!
//! The connector runs one key exchange per host-key algorithm Sallyport
//! offers ([`ssh_algorithms::HOST_KEY`], the list the clients negotiate
//! with) and keeps the key the server proves it holds. An algorithm the
//! server does not offer fails right after the two KEXINITs, before any
//! key exchange work, so trying all of them costs little more than trying
//! the ones the server has.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::ssh_key::Algorithm;
use russh::keys::PublicKeyOrCertificate;
use russh::AlgorithmKind;
use sallyport_proto::ssh_algorithms;

/// How long scanning one service may take in all, every algorithm
/// included; what was found by then is kept.
pub const SCAN_BUDGET: Duration = Duration::from_secs(15);

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

/// The host keys `addr` proves it holds, OpenSSH form, one per distinct key
/// (an RSA key once, whichever of `rsa-sha2-512`/`rsa-sha2-256` it signed
/// with), in the order of [`ssh_algorithms::HOST_KEY`]. Empty when the
/// server cannot be reached or shares no other algorithm with Sallyport
/// (logged with the server's and Sallyport's lists).
pub async fn scan(addr: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + SCAN_BUDGET;
    let mut keys = Vec::new();
    let mut have_rsa = false;
    for alg in ssh_algorithms::preferred().key.iter() {
        let rsa = matches!(alg, Algorithm::Rsa { .. });
        if rsa && have_rsa {
            continue;
        }
        let found = Arc::new(Mutex::new(None));
        let mut config = ssh_algorithms::client_config();
        config.preferred.key = vec![alg.clone()].into();
        let attempt = russh::client::connect(Arc::new(config), addr, Capture(found.clone()));
        let outcome = tokio::time::timeout_at(deadline, attempt).await;
        if let Some(k) = found.lock().unwrap_or_else(|e| e.into_inner()).take() {
            have_rsa |= rsa;
            if !keys.contains(&k) {
                keys.push(k);
            }
            continue;
        }
        match outcome {
            Err(_) => {
                tracing::warn!(%addr, budget = ?SCAN_BUDGET, "host-key scan ran out of time");
                break;
            }
            // The server does not offer this host-key algorithm: next one.
            Ok(Err(russh::Error::NoCommonAlgo {
                kind: AlgorithmKind::Key,
                ..
            })) => {}
            Ok(Err(e)) => {
                if let Some(why) = ssh_algorithms::negotiation_failure(&e) {
                    // Every other algorithm would fail the same way.
                    tracing::warn!(%addr, "cannot scan host keys: {why}");
                    break;
                }
                tracing::debug!(%addr, algorithm = %alg, "host-key scan: {e}");
            }
            Ok(Ok(_)) => {}
        }
    }
    keys
}
