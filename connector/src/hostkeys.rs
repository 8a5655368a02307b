//! Finding an SSH service's host keys, so the relay can give clients the keys
//! to expect (attested by the connector, not trusted on first use).
//!
//! The connector learns which host-key algorithms the server offers, then
//! runs one key exchange for each of them that the clients accept
//! ([`ssh_algorithms::HOST_KEY`], the list they negotiate with) and keeps
//! the key the server proves it holds.

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
///
/// A first connection offers no host-key algorithm at all: the refusal
/// carries the host-key list of the server's KEXINIT (RFC 4253 §7.1), so
/// the scan then runs one key exchange for each algorithm the server
/// offers and no more (sshd logs one "no matching host key type" line for
/// the probe, not one per algorithm it lacks).
pub async fn scan(addr: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + SCAN_BUDGET;
    let offered = match attempt(addr, Vec::new(), deadline).await {
        (
            _,
            Some(Err(russh::Error::NoCommonAlgo {
                kind: AlgorithmKind::Key,
                theirs,
                ..
            })),
        ) => Some(theirs),
        (_, Some(Err(e))) => {
            if let Some(why) = ssh_algorithms::negotiation_failure(&e) {
                tracing::warn!(%addr, "cannot scan host keys: {why}");
                return Vec::new();
            }
            // Could not tell (e.g. not up yet): try every algorithm.
            tracing::debug!(%addr, "host-key scan: {e}");
            None
        }
        (_, None) => {
            tracing::warn!(%addr, budget = ?SCAN_BUDGET, "host-key scan ran out of time");
            return Vec::new();
        }
        (_, Some(Ok(()))) => None,
    };
    let mut keys = Vec::new();
    let mut have_rsa = false;
    for alg in ssh_algorithms::preferred().key.iter() {
        let rsa = matches!(alg, Algorithm::Rsa { .. });
        if (rsa && have_rsa)
            || offered
                .as_ref()
                .is_some_and(|o| !o.contains(&alg.to_string()))
        {
            continue;
        }
        let (found, outcome) = attempt(addr, vec![alg.clone()], deadline).await;
        if let Some(k) = found {
            have_rsa |= rsa;
            if !keys.contains(&k) {
                keys.push(k);
            }
            continue;
        }
        match outcome {
            None => {
                tracing::warn!(%addr, budget = ?SCAN_BUDGET, "host-key scan ran out of time");
                break;
            }
            // The server does not offer this host-key algorithm: next one.
            Some(Err(russh::Error::NoCommonAlgo {
                kind: AlgorithmKind::Key,
                ..
            })) => {}
            Some(Err(e)) => {
                if let Some(why) = ssh_algorithms::negotiation_failure(&e) {
                    // Every other algorithm would fail the same way.
                    tracing::warn!(%addr, "cannot scan host keys: {why}");
                    break;
                }
                tracing::debug!(%addr, algorithm = %alg, "host-key scan: {e}");
            }
            Some(Ok(())) => {}
        }
    }
    keys
}

/// One key exchange with `addr` offering the host-key algorithms `key`
/// (and Sallyport's lists otherwise), stopped at `deadline`: the key the
/// server proved it holds, if any, and how the connection ended (`None`
/// when the deadline came first; it never authenticates).
async fn attempt(
    addr: &str,
    key: Vec<Algorithm>,
    deadline: tokio::time::Instant,
) -> (Option<String>, Option<Result<(), russh::Error>>) {
    let found = Arc::new(Mutex::new(None));
    let mut config = ssh_algorithms::client_config();
    config.preferred.key = key.into();
    let connect = russh::client::connect(Arc::new(config), addr, Capture(found.clone()));
    let outcome = tokio::time::timeout_at(deadline, connect)
        .await
        .ok()
        .map(|r| r.map(drop));
    let key = found.lock().unwrap_or_else(|e| e.into_inner()).take();
    (key, outcome)
}
