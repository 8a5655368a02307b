//! The live policy, and its reload when the config file changes or the
//! relay gets SIGHUP. A reload swaps an `Arc`: requests already past their
//! check keep the decision they got, so open sessions are left alone and
//! only new requests see the new rules. A file that does not parse is
//! refused with a logged error and the old policy stays.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::Policy;
use crate::audit::{Actor, AuditLog, Event};

/// How often the config file's modification time is checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of the file without reading it.
type Stamp = Option<(SystemTime, u64)>;

pub struct PolicyHandle {
    /// The config file, when the relay was started with one.
    path: Option<PathBuf>,
    cert_services: Vec<String>,
    current: RwLock<Arc<Policy>>,
    stamp: Mutex<Stamp>,
}

fn stamp(path: &std::path::Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl PolicyHandle {
    /// Loads the policy of `path` (or the open policy without a file).
    pub fn load(path: Option<PathBuf>, cert_services: Vec<String>) -> Result<Self, String> {
        let st = path.as_deref().and_then(stamp);
        let policy = Self::read(path.as_deref(), &cert_services)?;
        Ok(Self {
            path,
            cert_services,
            current: RwLock::new(Arc::new(policy)),
            stamp: Mutex::new(st),
        })
    }

    fn read(path: Option<&std::path::Path>, cert_services: &[String]) -> Result<Policy, String> {
        let cfg = match path {
            Some(p) => crate::config::read_policy(p)?,
            None => None,
        };
        Policy::compile(cfg, cert_services)
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the file again and swaps the policy in if it is valid. A file
    /// without `[policy]` is refused while a policy is in force: an empty
    /// or half-written file must not open every service to everyone.
    pub fn reload(&self) -> Result<(), String> {
        let st = self.path.as_deref().and_then(stamp);
        let policy = Self::read(self.path.as_deref(), &self.cert_services)?;
        if self.current().configured && !policy.configured {
            return Err(
                "the file has no [policy] section; a running relay keeps its policy \
                 (restart it to run without one)"
                    .into(),
            );
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = st;
        Ok(())
    }

    /// Reloads, logs the outcome, and records it as a `policy_reloaded`
    /// audit event with the SHA-256 of the file (read just before the
    /// reload reads it: a file replaced in between is caught by the next
    /// reload, which its change sets off).
    async fn reload_logged(&self, why: &str, audit: &AuditLog) {
        let sha256 = self
            .path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|bytes| sallyport_common::hash::sha256_hex(&bytes));
        let outcome = self.reload();
        match &outcome {
            Ok(()) => tracing::info!(
                why,
                sha256 = sha256.as_deref().unwrap_or("-"),
                "policy reloaded"
            ),
            Err(e) => {
                tracing::error!(why, error = %e, "policy not reloaded; the previous policy stays in force")
            }
        }
        let event = Event::PolicyReloaded {
            path: self
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            sha256,
            ok: outcome.is_ok(),
            reason: outcome.err(),
            by: Actor::Relay {
                trigger: why.to_owned(),
            },
        };
        if let Err(e) = audit.append(&event).await {
            tracing::error!(error = %e, "audit log failed");
        }
    }

    /// Reloads (each one an audit event) on SIGHUP and when the file's modification time or size
    /// changes and then holds still for one more poll (an editor or `cp`
    /// writing the file is not caught halfway), until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken, audit: Arc<AuditLog>) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the policy reloads on file changes only");
                None
            }
        };
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A changed stamp seen at the last poll, waiting to hold still.
        let mut settling: Stamp = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload_logged("SIGHUP", &audit).await;
                }
                _ = tick.tick() => {
                    let Some(path) = &self.path else { continue };
                    let now = stamp(path);
                    let changed = *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) != now;
                    if !changed || now.is_none() {
                        settling = None;
                    } else if settling != now {
                        settling = now;
                    } else {
                        settling = None;
                        self.reload_logged("config file changed", &audit).await;
                        // A refused file is not retried until it changes again.
                        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = now;
                    }
                }
            }
        }
    }
}
