//! Whether the relay is ready to serve, for `/readyz` on the metrics
//! listener: its store answers, its tunnel listener accepts connectors,
//! its HTTPS listener serves people, and it is not shutting down. Each
//! listener's task marks itself up while it runs, so one that failed shows
//! here instead of in a log line nobody reads.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::Store;

/// The relay's readiness, shared by its listeners and `/readyz`.
pub struct Health {
    store: Store,
    tunnel_up: AtomicBool,
    https_up: AtomicBool,
    stopping: AtomicBool,
}

/// A part of the relay that marks itself up while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The QUIC listener for connectors.
    Tunnel,
    /// The HTTPS listener for people.
    Https,
}

impl Health {
    /// Nothing up yet, reading `store` to check it answers.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tunnel_up: AtomicBool::new(false),
            https_up: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// Marks `part` up or down.
    pub fn set(&self, part: Part, up: bool) {
        let flag = match part {
            Part::Tunnel => &self.tunnel_up,
            Part::Https => &self.https_up,
        };
        flag.store(up, Ordering::Relaxed);
    }

    /// The relay is shutting down: not ready from now on.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready; otherwise the first reason it is not, one short
    /// line for an operator.
    pub async fn ready(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("the relay is shutting down".into());
        }
        if let Err(e) = self.store.meta(crate::admin::META_PUBLIC_URL).await {
            return Err(format!("the store does not answer: {e}"));
        }
        if !self.tunnel_up.load(Ordering::Relaxed) {
            return Err("the tunnel listener (QUIC, for connectors) is not up".into());
        }
        if !self.https_up.load(Ordering::Relaxed) {
            return Err("the HTTPS listener is not up".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_once_both_listeners_are_up_and_not_while_stopping() {
        let dir = tempfile::tempdir().unwrap();
        let health = Health::new(Store::open(dir.path()).unwrap());
        assert!(health
            .ready()
            .await
            .unwrap_err()
            .contains("tunnel listener"));
        health.set(Part::Tunnel, true);
        assert!(health.ready().await.unwrap_err().contains("HTTPS listener"));
        health.set(Part::Https, true);
        assert_eq!(health.ready().await, Ok(()));
        health.set(Part::Tunnel, false);
        assert!(health.ready().await.is_err());
        health.set(Part::Tunnel, true);
        health.stopping();
        assert_eq!(
            health.ready().await.unwrap_err(),
            "the relay is shutting down"
        );
    }
}
