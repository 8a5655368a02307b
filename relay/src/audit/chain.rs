//! The audit chain behind one seam: [`AuditLog`] keeps it in the engine the
//! relay's [`Store`] was opened with (the sled chain of [`super::log`], or
//! PostgreSQL), with the same records, hashes and checks in both, so a
//! chain copied from one into the other verifies to the same tip.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::log::{SledChain, VerifyError};
use super::pg::PgAuditLog;
use super::{ClientAppend, Event, Filter, Record, Retention};
use crate::store::{Store, StoreError};

/// The relay's audit chain. Appends are durable (flushed, or committed)
/// before they return.
pub struct AuditLog {
    engine: Chain,
}

enum Chain {
    Sled(Arc<SledChain>),
    Postgres(PgAuditLog),
}

/// Records a blocking scan of the PostgreSQL chain holds at once.
const SCAN_PAGE: usize = 1000;

/// Runs `f` on a blocking thread: the sled chain's heavy calls flush to disk
/// or read the whole chain.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

impl AuditLog {
    /// Opens the chain in `store`'s engine. With PostgreSQL it starts this
    /// process's writer task, so call it inside a Tokio runtime.
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        let engine = match (store.sled(), store.postgres()) {
            (Some(sled), _) => Chain::Sled(Arc::new(SledChain::open(sled)?)),
            (None, Some(pg)) => Chain::Postgres(PgAuditLog::new(pg.pool().clone())),
            (None, None) => unreachable!("a store has one engine"),
        };
        Ok(Self { engine })
    }

    /// Appends `event`; durable before it returns.
    pub async fn append(&self, event: &Event) -> Result<Record, StoreError> {
        match &self.engine {
            Chain::Sled(c) => c.append(event),
            Chain::Postgres(c) => c.append(event).await,
        }
    }

    /// Appends the client events of `user` that are not stored yet (see
    /// [`SledChain::append_client_events`] for the rules both engines keep);
    /// returns what was stored and what was refused.
    pub async fn append_client_events(
        &self,
        user: &str,
        events: Vec<Event>,
        backed: u64,
    ) -> Result<ClientAppend, StoreError> {
        match &self.engine {
            Chain::Sled(c) => {
                let (c, user) = (c.clone(), user.to_owned());
                blocking(move || c.append_client_events(&user, &events, backed)).await
            }
            Chain::Postgres(c) => c.append_client_events(user, &events, backed).await,
        }
    }

    /// Up to `limit` records that `filter` matches, oldest first.
    pub async fn list(&self, filter: &Filter, limit: usize) -> Result<Vec<Record>, StoreError> {
        match &self.engine {
            Chain::Sled(c) => c.list(filter, limit),
            Chain::Postgres(c) => c.list(filter, limit).await,
        }
    }

    /// The last `limit` records that `filter` matches, oldest first.
    pub async fn list_last(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        match &self.engine {
            Chain::Sled(c) => c.list_last(filter, limit),
            Chain::Postgres(c) => c.list_last(filter, limit).await,
        }
    }

    /// Calls `each` with every record `filter` matches, oldest first, until
    /// it breaks; holds a bounded number of records however many match.
    /// Blocking: call it from a blocking thread (the admin commands and the
    /// export run on one), never from async code.
    pub fn scan_blocking(
        &self,
        filter: &Filter,
        mut each: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        match &self.engine {
            Chain::Sled(c) => c.scan(filter, each),
            // A page at a time, `each` outside the runtime: it may block
            // (the admin socket's sink waits for the client to read).
            Chain::Postgres(c) => {
                let mut filter = filter.clone();
                loop {
                    let page = crate::store::block_on(c.list(&filter, SCAN_PAGE))?;
                    let Some(last) = page.last().map(|r| r.seq) else {
                        return Ok(());
                    };
                    for r in page {
                        if each(r).is_break() {
                            return Ok(());
                        }
                    }
                    filter.after_seq = Some(last);
                }
            }
        }
    }

    /// The sequence number of the oldest of the last `n` records `filter`
    /// matches (`None` when none do, or `n` is 0).
    pub async fn start_of_last(
        &self,
        filter: &Filter,
        n: usize,
    ) -> Result<Option<u64>, StoreError> {
        match &self.engine {
            Chain::Sled(c) => c.start_of_last(filter, n),
            Chain::Postgres(c) => c.start_of_last(filter, n).await,
        }
    }

    /// The record numbered `seq`, if it is (still) stored.
    pub async fn get(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        match &self.engine {
            Chain::Sled(c) => c.get(seq),
            Chain::Postgres(c) => c.get(seq).await,
        }
    }

    /// The newest record's sequence number and hash.
    pub async fn tip(&self) -> Result<Option<(u64, String)>, StoreError> {
        match &self.engine {
            Chain::Sled(c) => c.tip(),
            Chain::Postgres(c) => c.tip().await,
        }
    }

    /// Checks the whole chain; returns how many records it holds.
    pub async fn verify(&self) -> Result<u64, VerifyError> {
        match &self.engine {
            Chain::Sled(c) => {
                let c = c.clone();
                tokio::task::spawn_blocking(move || c.verify())
                    .await
                    .map_err(|e| VerifyError::Store(StoreError::Task(e.to_string())))?
            }
            Chain::Postgres(c) => c.verify().await,
        }
    }

    /// Drops the oldest records beyond `retention`; returns how many.
    pub async fn prune(&self, retention: Retention, now_ms: u64) -> Result<u64, StoreError> {
        match &self.engine {
            Chain::Sled(c) => {
                let c = c.clone();
                blocking(move || c.prune(retention, now_ms)).await
            }
            Chain::Postgres(c) => c.prune(retention, now_ms).await,
        }
    }
}
