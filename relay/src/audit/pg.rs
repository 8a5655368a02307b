//! The audit chain in PostgreSQL, which the relays of a cluster append to
//! together: the same [`Record`]s, hashes and checks as the sled chain in
//! `log.rs`, so `audit verify` is unchanged and a chain copied from sled
//! gives the same tip. The schema is [`SCHEMA`]
//! (`store/migrations/0002_audit.sql`).
//!
//! Writing. Every relay appends under a row lock on the chain's head
//! (`audit_head`, one row: the last seq and hash, and retention's anchor),
//! so the chain stays one line whatever the number of writers. Within one
//! relay, concurrent [`PgAuditLog::append`] and
//! [`PgAuditLog::append_client_events`] calls go through a bounded queue to
//! one writer task, which commits up to [`AUDIT_BATCH_MAX`] events per
//! transaction (lock the head, number and hash the events, one multi-row
//! insert, move the head, commit) and answers each caller only once its
//! transaction has committed.
//!
//! Retrying. Each event gets a random id (`event_id`, unique, not hashed).
//! When a transaction fails, the writer retries it for up to
//! [`WRITE_RETRY_FOR`] on a fresh connection, and when the failed attempt
//! had sent its COMMIT (a connection lost while committing leaves the
//! outcome unknown) it first takes the head lock, which waits out that
//! transaction if it still runs, and looks its event ids up: found, it
//! committed and its callers get its answers; not found, it did not, and
//! the batch is numbered and written again. So an event is never stored
//! twice and never lost once acknowledged. Client events are also stored
//! once by (session, seq), and their sessions' budgets are read and written
//! under the same lock, so two relays given the same batch store it once.
//!
//! Reading. Lists, scans and verification read by seq (the primary key)
//! through a cursor, [`READ_PAGE`] rows at a time; [`Filter`] matching is
//! done in Rust, as with sled, except that finding the streams of a
//! terminal session is one query.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use deadpool_postgres::{Pool, PoolError};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::budget::ClientSessionRecord;
use super::log::{
    hash_of, session_of, stream_of, ClientAppend, Filter, Record, Retention, VerifyError, GENESIS,
    PRUNE_CHUNK,
};
use super::Event;
use crate::store::StoreError;
use sallyport_proto::client::SessionEvent;

/// The audit tables, their indexes and the head's first row: migration
/// `0002_audit.sql`, which the store applies after its own `0001`.
pub const SCHEMA: &str = include_str!("../store/migrations/0002_audit.sql");

/// Most events the writer commits in one transaction. A call with more
/// client events than this is committed alone, in one transaction.
pub const AUDIT_BATCH_MAX: usize = 32;
/// Calls waiting for the writer; more wait to be queued (so a relay whose
/// database is slow holds its callers, not a growing queue).
pub const AUDIT_QUEUE_MAX: usize = 1024;
/// How long the writer keeps retrying a transaction that failed for want
/// of PostgreSQL (connection lost, server restarting) before the callers
/// get [`StoreError::Unavailable`].
pub const WRITE_RETRY_FOR: Duration = Duration::from_secs(15);
/// First pause between retries; it doubles up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(20);
/// Longest pause between retries.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(500);
/// Records fetched per round trip when listing, scanning and verifying.
pub const READ_PAGE: i32 = 1000;

/// The columns of a [`Record`], in [`record_of`]'s order.
const RECORD_COLUMNS: &str = "seq, at_ms, prev, hash, event";

/// The audit chain in PostgreSQL: a handle to the pool and to this
/// process's writer task. Cheap to clone; the writer stops once every
/// clone is dropped and the queued calls are answered.
#[derive(Clone)]
pub struct PgAuditLog {
    pool: Pool,
    writer: mpsc::Sender<Job>,
}

/// A call waiting for the writer.
enum Job {
    Append {
        event: serde_json::Value,
        reply: oneshot::Sender<Result<Record, StoreError>>,
    },
    Client {
        user: String,
        events: Vec<ClientEvent>,
        backed: u64,
        reply: oneshot::Sender<Result<ClientAppend, StoreError>>,
    },
}

impl Job {
    /// How many events it may add to a batch.
    fn size(&self) -> usize {
        match self {
            Job::Append { .. } => 1,
            Job::Client { events, .. } => events.len().max(1),
        }
    }
}

/// An [`Event::Client`], taken apart once by the caller.
struct ClientEvent {
    session: String,
    seq: u64,
    what: SessionEvent,
    value: serde_json::Value,
}

/// What a job got from a committed transaction.
#[derive(Clone)]
enum Done {
    Append(Record),
    Client(ClientAppend),
}

/// Why one attempt at a transaction failed.
enum Failure {
    /// No connection from the pool.
    Pool(PoolError),
    /// The database, or the connection to it.
    Pg(tokio_postgres::Error),
    /// A stored record that does not parse.
    Corrupt(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl Failure {
    /// Whether trying again later may succeed.
    fn retryable(&self) -> bool {
        match self {
            Failure::Pool(PoolError::Closed) => false,
            Failure::Pool(PoolError::Backend(e)) | Failure::Pg(e) => connection_lost(e),
            Failure::Pool(_) => true,
            Failure::Corrupt(_) => false,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Pool(e) => e.to_string(),
            Failure::Pg(e) => pg_message(e),
            Failure::Corrupt(e) => e.clone(),
        }
    }
}

/// Whether `e` is about the connection or the server's state rather than
/// the statement: worth retrying on a new connection.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Not from the server: the socket failed.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
    }
}

/// `e` with the server's message, which tokio-postgres's Display leaves out.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A read's error: [`StoreError::Unavailable`] when the connection failed.
fn read_error(e: tokio_postgres::Error) -> StoreError {
    if connection_lost(&e) {
        StoreError::Unavailable(pg_message(&e))
    } else {
        StoreError::Postgres(e)
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => read_error(e),
        e => StoreError::Unavailable(e.to_string()),
    }
}

/// A stored `u64` (seq, milliseconds, a client's seq) as the `bigint`
/// column holds it: the same 64 bits.
fn to_sql(n: u64) -> i64 {
    n as i64
}

fn from_sql(n: i64) -> u64 {
    n as u64
}

/// A row of [`RECORD_COLUMNS`] as a [`Record`]; `Err(seq)` when its event
/// does not parse.
fn record_of(row: &Row) -> Result<Record, u64> {
    let seq = from_sql(row.get(0));
    let event: &str = row.get(4);
    Ok(Record {
        seq,
        at_ms: from_sql(row.get(1)),
        prev: row.get(2),
        hash: row.get(3),
        event: serde_json::from_str(event).map_err(|_| seq)?,
    })
}

/// A random event id: 128 bits as 32 hex digits.
fn new_event_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl PgAuditLog {
    /// The chain in the database `pool` connects to, whose schema is
    /// already applied ([`SCHEMA`]). Starts this process's writer task, so
    /// it must be called within a Tokio runtime.
    pub fn new(pool: Pool) -> Self {
        let (writer, queue) = mpsc::channel(AUDIT_QUEUE_MAX);
        tokio::spawn(Writer { pool: pool.clone() }.run(queue));
        Self { pool, writer }
    }

    /// Applies [`SCHEMA`] to an empty database, for tests and tools that
    /// run without the store's migrations.
    #[cfg(feature = "test-hooks")]
    pub async fn apply_schema(pool: &Pool) -> Result<(), StoreError> {
        let client = pool.get().await.map_err(pool_error)?;
        client.batch_execute(SCHEMA).await.map_err(read_error)
    }

    async fn queue<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("the audit writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.writer.send(job(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Appends `event`; returns once the transaction that stored it has
    /// committed. Errors: [`StoreError::Unavailable`] when PostgreSQL could
    /// not be reached for [`WRITE_RETRY_FOR`] (the event is then not
    /// stored, unless the last attempt's commit was lost on the way back,
    /// which the message says).
    pub async fn append(&self, event: &Event) -> Result<Record, StoreError> {
        let event = serde_json::to_value(event)?;
        self.queue(|reply| Job::Append { event, reply }).await
    }

    /// As the sled chain's `append_client_events`: appends the client
    /// events ([`Event::Client`]) not stored yet (by session id and seq,
    /// whichever relay stored them), in one transaction; returns
    /// `(session, seq)` of every event now stored. Events of a session id
    /// that belongs to another user are refused; a new event over its
    /// session's budget is refused with the reason, and the events after it
    /// are not looked at. `backed` is the terminal bytes the sending socket
    /// carried that no stored event has used yet.
    pub async fn append_client_events(
        &self,
        user: &str,
        events: &[Event],
        backed: u64,
    ) -> Result<ClientAppend, StoreError> {
        if events.is_empty() {
            return Ok(ClientAppend::default());
        }
        let mut taken = Vec::with_capacity(events.len());
        for event in events {
            if let Event::Client {
                session,
                seq,
                event: what,
                ..
            } = event
            {
                taken.push(ClientEvent {
                    session: session.clone(),
                    seq: *seq,
                    what: what.clone(),
                    value: serde_json::to_value(event)?,
                });
            }
        }
        let user = user.to_owned();
        self.queue(|reply| Job::Client {
            user,
            events: taken,
            backed,
            reply,
        })
        .await
    }

    /// The streams the client events of terminal session `filter.session`
    /// came on, which [`Filter`] joins to it (empty when it need not): one
    /// query over the log, which looks for the session id's JSON text
    /// before parsing an event.
    async fn streams_of_session(&self, filter: &Filter) -> Result<BTreeSet<String>, StoreError> {
        let mut streams = BTreeSet::new();
        let Some(session) = filter.session.as_deref().filter(|_| filter.joins_streams()) else {
            return Ok(streams);
        };
        let client = self.pool.get().await.map_err(pool_error)?;
        let quoted = serde_json::to_string(session)?;
        let rows = client
            .query(
                "SELECT event FROM audit_events \
                 WHERE strpos(event, $1) > 0 AND strpos(event, '\"type\":\"client\"') > 0",
                &[&quoted],
            )
            .await
            .map_err(read_error)?;
        for row in rows {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(row.get(0)) else {
                continue;
            };
            if session_of(&event) == Some(session) {
                if let Some(stream) = stream_of(&event) {
                    streams.insert(stream.to_owned());
                }
            }
        }
        Ok(streams)
    }

    /// Calls `each` with every readable record from `seq > after` on
    /// (oldest first) or, `backward`, `seq < after` (newest first), until
    /// it breaks; the rows come through a cursor, [`READ_PAGE`] at a time.
    async fn walk(
        &self,
        after: u64,
        backward: bool,
        mut each: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(read_error)?;
        let query = if backward {
            format!("SELECT {RECORD_COLUMNS} FROM audit_events WHERE seq < $1 ORDER BY seq DESC")
        } else {
            format!("SELECT {RECORD_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq")
        };
        let statement = tx.prepare_cached(&query).await.map_err(read_error)?;
        let from = to_sql(after.min(i64::MAX as u64));
        let portal = tx.bind(&statement, &[&from]).await.map_err(read_error)?;
        loop {
            let rows = tx
                .query_portal(&portal, READ_PAGE)
                .await
                .map_err(read_error)?;
            for row in &rows {
                // As sled's reads: a record that does not parse is skipped
                // (verification reports it).
                if let Ok(r) = record_of(row) {
                    if each(r).is_break() {
                        return Ok(());
                    }
                }
            }
            if rows.len() < READ_PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Up to `limit` records that `filter` matches, oldest first.
    pub async fn list(&self, filter: &Filter, limit: usize) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let streams = self.streams_of_session(filter).await?;
        self.walk(filter.after_seq.unwrap_or(0), false, |r| {
            if filter.matches(&r, &streams) {
                out.push(r);
                if out.len() >= limit {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
        Ok(out)
    }

    /// The last `limit` records that `filter` matches, oldest first.
    pub async fn list_last(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let streams = self.streams_of_session(filter).await?;
        self.walk(u64::MAX, true, |r| {
            if filter.matches(&r, &streams) {
                out.push(r);
                if out.len() >= limit {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
        out.reverse();
        Ok(out)
    }

    /// Calls `each` with every record `filter` matches, oldest first (from
    /// `filter.after_seq` on), one at a time: the rows come [`READ_PAGE`] at
    /// a time through a cursor, so however many there are, one page is
    /// held. `each` returns [`ControlFlow::Break`] to stop early; it is a
    /// plain closure (not async), called between fetches. (The relay's own
    /// scans run on blocking threads and page with [`PgAuditLog::list`].)
    #[cfg(feature = "test-hooks")]
    pub async fn scan(
        &self,
        filter: &Filter,
        mut each: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let streams = self.streams_of_session(filter).await?;
        self.walk(filter.after_seq.unwrap_or(0), false, |r| {
            if filter.matches(&r, &streams) {
                each(r)
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
    }

    /// The sequence number of the oldest of the last `n` records `filter`
    /// matches (`None` when none match or `n` is 0).
    pub async fn start_of_last(
        &self,
        filter: &Filter,
        n: usize,
    ) -> Result<Option<u64>, StoreError> {
        if n == 0 {
            return Ok(None);
        }
        let streams = self.streams_of_session(filter).await?;
        let (mut found, mut start) = (0, None);
        self.walk(u64::MAX, true, |r| {
            if filter.matches(&r, &streams) {
                start = Some(r.seq);
                found += 1;
                if found >= n {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
        Ok(start)
    }

    /// The record numbered `seq`, if it is (still) stored. Errors:
    /// [`StoreError::Corrupt`] when its event does not parse.
    pub async fn get(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_events WHERE seq = $1"
            ))
            .await
            .map_err(read_error)?;
        let Some(row) = client
            .query_opt(&statement, &[&seq])
            .await
            .map_err(read_error)?
        else {
            return Ok(None);
        };
        let event: &str = row.get(4);
        let event = serde_json::from_str(event)?;
        Ok(Some(Record {
            seq: from_sql(row.get(0)),
            at_ms: from_sql(row.get(1)),
            prev: row.get(2),
            hash: row.get(3),
            event,
        }))
    }

    /// The newest event's sequence number and hash (`None` when no record
    /// is stored): worth noting outside the relay, since deleting the
    /// newest events leaves a valid chain.
    pub async fn tip(&self) -> Result<Option<(u64, String)>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(
                "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(read_error)?;
        Ok(row.map(|r| (from_sql(r.get(0)), r.get(1))))
    }

    /// Checks the whole chain as sled's `verify` does (same hashes, same
    /// errors); returns how many events it holds. It reads one snapshot
    /// (a repeatable-read transaction), so appends and retention running
    /// meanwhile change nothing it sees.
    pub async fn verify(&self) -> Result<u64, VerifyError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(read_error)?;
        let head = tx
            .query_one("SELECT anchor_seq, anchor_hash FROM audit_head", &[])
            .await
            .map_err(read_error)?;
        // Records at or before the anchor were dropped by retention.
        let (mut expect_seq, mut expect_prev) = match (
            head.get::<_, Option<i64>>(0),
            head.get::<_, Option<String>>(1),
        ) {
            (Some(seq), Some(hash)) => (from_sql(seq) + 1, hash),
            _ => (1, GENESIS.to_owned()),
        };
        let statement = tx
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_events WHERE seq >= $1 ORDER BY seq"
            ))
            .await
            .map_err(read_error)?;
        let portal = tx
            .bind(&statement, &[&to_sql(expect_seq)])
            .await
            .map_err(read_error)?;
        let mut count = 0;
        loop {
            let rows = tx
                .query_portal(&portal, READ_PAGE)
                .await
                .map_err(read_error)?;
            for row in &rows {
                let r = record_of(row).map_err(VerifyError::Unreadable)?;
                if r.seq != expect_seq {
                    return Err(VerifyError::Gap {
                        before: expect_seq - 1,
                        seq: r.seq,
                    });
                }
                if hash_of(&r.prev, r.seq, r.at_ms, &r.event) != r.hash {
                    return Err(VerifyError::Changed { seq: r.seq });
                }
                if r.prev != expect_prev {
                    return Err(VerifyError::Broken { seq: r.seq });
                }
                expect_seq = r.seq + 1;
                expect_prev = r.hash;
                count += 1;
            }
            if rows.len() < READ_PAGE as usize {
                return Ok(count);
            }
        }
    }

    /// Drops the oldest events beyond `retention` (and the once-only keys
    /// of the client events among them); returns how many. Works in
    /// transactions of [`PRUNE_CHUNK`] records, each holding the head lock,
    /// so appends wait for one chunk at most.
    pub async fn prune(&self, retention: Retention, now_ms: u64) -> Result<u64, StoreError> {
        let mut dropped = 0;
        loop {
            let n = self.prune_chunk(retention, now_ms).await?;
            dropped += n;
            if n < PRUNE_CHUNK {
                return Ok(dropped);
            }
        }
    }

    async fn prune_chunk(&self, retention: Retention, now_ms: u64) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(read_error)?;
        tx.execute("SELECT 1 FROM audit_head FOR UPDATE", &[])
            .await
            .map_err(read_error)?;
        let bounds = tx
            .query_one("SELECT min(seq), max(seq) FROM audit_events", &[])
            .await
            .map_err(read_error)?;
        let (Some(first), Some(last)) = (
            bounds.get::<_, Option<i64>>(0),
            bounds.get::<_, Option<i64>>(1),
        ) else {
            return Ok(0);
        };
        let (first, last) = (from_sql(first), from_sql(last));
        let too_many = (last - first + 1).saturating_sub(retention.max_events);
        let oldest_kept_ms = now_ms.saturating_sub(retention.max_age.as_millis() as u64);
        let rows = tx
            .query(
                "SELECT seq, at_ms, hash FROM audit_events ORDER BY seq LIMIT $1",
                &[&to_sql(PRUNE_CHUNK)],
            )
            .await
            .map_err(read_error)?;
        // The last record to drop: by count, then by age.
        let mut cut: Option<(i64, String)> = None;
        for row in rows {
            let seq: i64 = row.get(0);
            let at_ms = from_sql(row.get(1));
            if from_sql(seq) < first + too_many || at_ms < oldest_kept_ms {
                cut = Some((seq, row.get(2)));
            } else {
                break;
            }
        }
        let Some((cut_seq, cut_hash)) = cut else {
            return Ok(0);
        };
        tx.execute(
            "UPDATE audit_head SET anchor_seq = $1, anchor_hash = $2",
            &[&cut_seq, &cut_hash],
        )
        .await
        .map_err(read_error)?;
        // A dropped client event's once-only key goes with it: a client
        // resending it after this long is not to be expected.
        tx.execute(
            "DELETE FROM audit_client_keys WHERE audit_seq <= $1",
            &[&cut_seq],
        )
        .await
        .map_err(read_error)?;
        let dropped = tx
            .execute("DELETE FROM audit_events WHERE seq <= $1", &[&cut_seq])
            .await
            .map_err(read_error)?;
        tx.commit().await.map_err(read_error)?;
        Ok(dropped)
    }

    /// `store migrate`'s first audit step: on an empty chain, sets the
    /// anchor retention had left in the chain being copied (`seq` and
    /// `hash` of the last record it dropped). Errors:
    /// [`StoreError::Corrupt`] when the chain here is not empty.
    pub async fn import_anchor(&self, seq: u64, hash: &str) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(read_error)?;
        let head = tx
            .query_one("SELECT last_seq FROM audit_head FOR UPDATE", &[])
            .await
            .map_err(read_error)?;
        if head.get::<_, i64>(0) != 0 {
            return Err(refused(
                "the audit chain in PostgreSQL is not empty: a chain can only be copied into an empty one",
            ));
        }
        tx.execute(
            "UPDATE audit_head SET last_seq = $1, last_hash = $2, anchor_seq = $1, anchor_hash = $2",
            &[&to_sql(seq), &hash],
        )
        .await
        .map_err(read_error)?;
        tx.commit().await.map_err(read_error)
    }

    /// `store migrate`'s audit step: appends records made elsewhere (a
    /// sled chain's, oldest first) as they are, byte for byte, with the
    /// once-only keys of the client events among them, in one transaction;
    /// call it page by page. The copy verifies to the same tip. Errors:
    /// [`StoreError::Corrupt`] when the records do not follow the chain's
    /// last one (or the anchor) by seq.
    pub async fn import(&self, records: &[Record]) -> Result<(), StoreError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(read_error)?;
        let head = tx
            .query_one("SELECT last_seq FROM audit_head FOR UPDATE", &[])
            .await
            .map_err(read_error)?;
        let first = from_sql(head.get(0)) + 1;
        let mut rows = Rows::default();
        let mut keys = Keys::default();
        for (expect, r) in (first..).zip(records) {
            if r.seq != expect {
                return Err(refused(&format!(
                    "audit event {} cannot be copied after event {}: events are missing",
                    r.seq,
                    expect - 1
                )));
            }
            rows.push(r, None)?;
            if let (Some(session), Some(seq)) = (
                session_of(&r.event),
                r.event.get("seq").and_then(|s| s.as_u64()),
            ) {
                keys.push(session.to_owned(), seq, r.seq);
            }
        }
        rows.insert(&tx).await.map_err(read_error)?;
        keys.insert(&tx).await.map_err(read_error)?;
        tx.execute(
            "UPDATE audit_head SET last_seq = $1, last_hash = $2",
            &[&to_sql(last.seq), &last.hash],
        )
        .await
        .map_err(read_error)?;
        tx.commit().await.map_err(read_error)
    }
}

impl PgAuditLog {
    /// `store migrate`'s last audit step: the client sessions' owners and
    /// budgets (which [`PgAuditLog::import`] does not rebuild: the records
    /// do not hold them), in one transaction. Errors: a session already
    /// here (the target must be empty).
    pub async fn import_client_sessions(
        &self,
        sessions: &[(String, ClientSessionRecord)],
    ) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(sessions.len());
        let mut records = Vec::with_capacity(sessions.len());
        for (id, record) in sessions {
            ids.push(id.as_str());
            records.push(serde_json::to_string(record)?);
        }
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(read_error)?;
        tx.execute(
            "INSERT INTO audit_client_sessions (session, record) \
             SELECT * FROM unnest($1::text[], $2::text[])",
            &[&ids, &records],
        )
        .await
        .map_err(read_error)?;
        tx.commit().await.map_err(read_error)
    }

    /// How many once-only keys of client events the chain holds. For
    /// `store migrate`'s summary.
    pub async fn client_key_count(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT count(*) FROM audit_client_keys", &[])
            .await
            .map_err(read_error)?;
        Ok(from_sql(row.get(0)))
    }
}

/// An import refused, as [`StoreError::Corrupt`] with `why`.
fn refused(why: &str) -> StoreError {
    StoreError::Corrupt(<serde_json::Error as serde::de::Error>::custom(why))
}

/// New records of one transaction, column by column: inserted with one
/// statement (`unnest` of arrays), whatever their number.
#[derive(Default)]
struct Rows {
    seq: Vec<i64>,
    at_ms: Vec<i64>,
    prev: Vec<String>,
    hash: Vec<String>,
    event: Vec<String>,
    event_id: Vec<Option<String>>,
}

impl Rows {
    fn push(&mut self, r: &Record, event_id: Option<String>) -> Result<(), StoreError> {
        self.seq.push(to_sql(r.seq));
        self.at_ms.push(to_sql(r.at_ms));
        self.prev.push(r.prev.clone());
        self.hash.push(r.hash.clone());
        // Exactly the text hash_of hashed.
        self.event.push(serde_json::to_string(&r.event)?);
        self.event_id.push(event_id);
        Ok(())
    }

    async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        if self.seq.is_empty() {
            return Ok(());
        }
        let statement = tx
            .prepare_cached(
                "INSERT INTO audit_events (seq, at_ms, prev, hash, event, event_id) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], \
                 $5::text[], $6::text[])",
            )
            .await?;
        tx.execute(
            &statement,
            &[
                &self.seq,
                &self.at_ms,
                &self.prev,
                &self.hash,
                &self.event,
                &self.event_id,
            ],
        )
        .await?;
        Ok(())
    }
}

/// Once-only keys of client events: (session, client seq) -> audit seq.
#[derive(Default)]
struct Keys {
    session: Vec<String>,
    seq: Vec<i64>,
    audit_seq: Vec<i64>,
}

impl Keys {
    fn push(&mut self, session: String, seq: u64, audit_seq: u64) {
        self.session.push(session);
        self.seq.push(to_sql(seq));
        self.audit_seq.push(to_sql(audit_seq));
    }

    async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        if self.seq.is_empty() {
            return Ok(());
        }
        let statement = tx
            .prepare_cached(
                "INSERT INTO audit_client_keys (session, seq, audit_seq) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
            )
            .await?;
        tx.execute(&statement, &[&self.session, &self.seq, &self.audit_seq])
            .await?;
        Ok(())
    }
}

/// The one task per process that writes the chain.
struct Writer {
    pool: Pool,
}

/// The writer's queue, and a job taken off it that did not fit the batch.
struct Queue {
    jobs: mpsc::Receiver<Job>,
    carried: Option<Job>,
}

impl Queue {
    /// Adds to `jobs` what is queued, up to [`AUDIT_BATCH_MAX`] events.
    fn fill(&mut self, jobs: &mut Vec<Job>) {
        if self.carried.is_some() {
            return;
        }
        let mut size: usize = jobs.iter().map(Job::size).sum();
        while size < AUDIT_BATCH_MAX {
            let Ok(job) = self.jobs.try_recv() else { break };
            if size + job.size() > AUDIT_BATCH_MAX {
                self.carried = Some(job);
                break;
            }
            size += job.size();
            jobs.push(job);
        }
    }
}

/// The transaction whose COMMIT was sent but not confirmed: its event ids
/// and what its callers get if it did commit.
struct Unconfirmed {
    event_ids: Vec<String>,
    done: Vec<Done>,
}

impl Writer {
    /// Takes batches off `queue` until every [`PgAuditLog`] is dropped and
    /// the queue is empty.
    async fn run(self, queue: mpsc::Receiver<Job>) {
        let mut queue = Queue {
            jobs: queue,
            carried: None,
        };
        loop {
            let first = match queue.carried.take() {
                Some(job) => job,
                None => match queue.jobs.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            let mut jobs = vec![first];
            queue.fill(&mut jobs);
            let outcome = self.write(&mut jobs, &mut queue).await;
            answer(jobs, outcome);
        }
    }

    /// Commits `jobs` in one transaction, retrying while PostgreSQL is
    /// unreachable for up to [`WRITE_RETRY_FOR`]; returns one [`Done`] per
    /// job, in order, or the message every caller gets.
    async fn write(&self, jobs: &mut Vec<Job>, queue: &mut Queue) -> Result<Vec<Done>, String> {
        let deadline = Instant::now() + WRITE_RETRY_FOR;
        let mut pause = RETRY_PAUSE_MIN;
        let mut unconfirmed: Option<Unconfirmed> = None;
        loop {
            let failure = match self.attempt(jobs, queue, &mut unconfirmed).await {
                Ok(done) => return Ok(done),
                Err(failure) => failure,
            };
            if !failure.retryable() || Instant::now() + pause > deadline {
                let unknown = if unconfirmed.is_some() {
                    " (the last commit's outcome is unknown: the events may be stored)"
                } else {
                    ""
                };
                return Err(format!(
                    "the audit events could not be stored: {}{unknown}",
                    failure.message()
                ));
            }
            tracing::warn!(error = %failure.message(), "audit write failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// One try at the transaction. When `unconfirmed` holds an earlier
    /// try whose COMMIT went unanswered, finds out first whether it
    /// committed.
    async fn attempt(
        &self,
        jobs: &mut Vec<Job>,
        queue: &mut Queue,
        unconfirmed: &mut Option<Unconfirmed>,
    ) -> Result<Vec<Done>, Failure> {
        let mut client = self.pool.get().await.map_err(Failure::Pool)?;
        let result = Self::transaction(&mut client, jobs, queue, unconfirmed).await;
        if let Err(Failure::Pg(e)) = &result {
            if connection_lost(e) {
                // Not back into the pool: the next try gets a new one.
                drop(deadpool_postgres::Object::take(client));
            }
        }
        result
    }

    async fn transaction(
        client: &mut deadpool_postgres::Client,
        jobs: &mut Vec<Job>,
        queue: &mut Queue,
        unconfirmed: &mut Option<Unconfirmed>,
    ) -> Result<Vec<Done>, Failure> {
        let tx = client.transaction().await?;
        let lock = tx
            .prepare_cached("SELECT last_seq, last_hash FROM audit_head FOR UPDATE")
            .await?;
        // The lock also waits for an earlier try of ours that may still be
        // committing on a connection we lost.
        let head = tx.query_one(&lock, &[]).await?;
        if let Some(earlier) = unconfirmed.as_ref() {
            let found = tx
                .query_one(
                    "SELECT count(*) FROM audit_events WHERE event_id = ANY($1)",
                    &[&earlier.event_ids],
                )
                .await?;
            let earlier = unconfirmed.take().map(|u| u.done).unwrap_or_default();
            if found.get::<_, i64>(0) > 0 {
                tracing::info!("an audit commit whose answer was lost had committed");
                return Ok(earlier);
            }
            // It did not commit (or stored no event: trying again is the
            // same): number and write the batch again.
        }
        // What came while the lock was awaited (another relay held it)
        // joins this transaction: the busier the chain, the fuller the
        // batches.
        queue.fill(jobs);
        let mut batch = Batch {
            next_seq: from_sql(head.get(0)) + 1,
            prev: head.get(1),
            rows: Rows::default(),
            keys: Keys::default(),
            sessions: HashMap::new(),
            stored: HashSet::new(),
        };
        batch.load_client_state(&tx, jobs).await?;
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs.iter() {
            done.push(match job {
                Job::Append { event, .. } => Done::Append(batch.add(event.clone())?),
                Job::Client {
                    user,
                    events,
                    backed,
                    ..
                } => Done::Client(batch.add_client(user, events, *backed)?),
            });
        }
        batch.write(&tx).await?;
        *unconfirmed = Some(Unconfirmed {
            event_ids: batch.rows.event_id.iter().flatten().cloned().collect(),
            done: done.clone(),
        });
        tx.commit().await?;
        *unconfirmed = None;
        Ok(done)
    }
}

/// Sends each job its answer.
fn answer(jobs: Vec<Job>, outcome: Result<Vec<Done>, String>) {
    match outcome {
        Ok(done) => {
            for (job, done) in jobs.into_iter().zip(done) {
                // A caller that gave up waiting does not need its answer.
                match (job, done) {
                    (Job::Append { reply, .. }, Done::Append(r)) => {
                        let _ = reply.send(Ok(r));
                    }
                    (Job::Client { reply, .. }, Done::Client(c)) => {
                        let _ = reply.send(Ok(c));
                    }
                    _ => unreachable!("answers are made in the jobs' order"),
                }
            }
        }
        Err(message) => {
            for job in jobs {
                let error = StoreError::Unavailable(message.clone());
                match job {
                    Job::Append { reply, .. } => {
                        let _ = reply.send(Err(error));
                    }
                    Job::Client { reply, .. } => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
        }
    }
}

/// One transaction's work in progress, under the head lock.
struct Batch {
    next_seq: u64,
    prev: String,
    rows: Rows,
    keys: Keys,
    /// Client session id -> its record, and whether to write it back.
    sessions: HashMap<String, (ClientSessionRecord, bool)>,
    /// (session, client seq) of client events stored, before or now.
    stored: HashSet<(String, u64)>,
}

impl Batch {
    /// Reads the records of the client sessions and the once-only keys of
    /// the client events in `jobs`: two queries for the whole batch.
    async fn load_client_state(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
        jobs: &[Job],
    ) -> Result<(), Failure> {
        let mut ids: Vec<String> = Vec::new();
        let (mut key_sessions, mut key_seqs): (Vec<String>, Vec<i64>) = (Vec::new(), Vec::new());
        for job in jobs {
            if let Job::Client { events, .. } = job {
                for e in events {
                    if !ids.contains(&e.session) {
                        ids.push(e.session.clone());
                    }
                    key_sessions.push(e.session.clone());
                    key_seqs.push(to_sql(e.seq));
                }
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let sessions = tx
            .prepare_cached(
                "SELECT session, record FROM audit_client_sessions WHERE session = ANY($1)",
            )
            .await?;
        for row in tx.query(&sessions, &[&ids]).await? {
            let record: &str = row.get(1);
            self.sessions.insert(
                row.get(0),
                (ClientSessionRecord::decode(record.as_bytes()), false),
            );
        }
        let keys = tx
            .prepare_cached(
                "SELECT k.session, k.seq FROM audit_client_keys k \
                 JOIN unnest($1::text[], $2::bigint[]) AS u(session, seq) \
                 ON k.session = u.session AND k.seq = u.seq",
            )
            .await?;
        for row in tx.query(&keys, &[&key_sessions, &key_seqs]).await? {
            self.stored.insert((row.get(0), from_sql(row.get(1))));
        }
        Ok(())
    }

    /// Numbers, times and hashes `event` as the chain's next record.
    fn add(&mut self, event: serde_json::Value) -> Result<Record, Failure> {
        let seq = self.next_seq;
        let at_ms = sallyport_common::time::now_millis();
        let record = Record {
            seq,
            at_ms,
            hash: hash_of(&self.prev, seq, at_ms, &event),
            prev: std::mem::take(&mut self.prev),
            event,
        };
        self.rows
            .push(&record, Some(new_event_id()))
            .map_err(|e| Failure::Corrupt(e.to_string()))?;
        self.next_seq += 1;
        self.prev = record.hash.clone();
        Ok(record)
    }

    /// The sled chain's `append_client_events`, against this batch.
    fn add_client(
        &mut self,
        user: &str,
        events: &[ClientEvent],
        backed: u64,
    ) -> Result<ClientAppend, Failure> {
        let mut out = ClientAppend::default();
        let mut backed_left = backed;
        for e in events {
            let (record, dirty) = self.sessions.entry(e.session.clone()).or_insert_with(|| {
                (
                    ClientSessionRecord {
                        user: user.to_owned(),
                        ..Default::default()
                    },
                    false,
                )
            });
            if record.user != user {
                tracing::warn!(%user, session = %e.session, "client events for another user's session refused");
                continue;
            }
            // Written back, as sled writes back every record of the
            // caller's sessions it looked at.
            *dirty = true;
            let key = (e.session.clone(), e.seq);
            if !self.stored.contains(&key) {
                if let Err(refused) = record.charge(&e.session, &e.what, &mut backed_left) {
                    out.refused = Some(refused);
                    out.refused_at = Some(key);
                    break;
                }
                let stored = self.add(e.value.clone())?;
                self.keys.push(e.session.clone(), e.seq, stored.seq);
                self.stored.insert(key.clone());
            }
            out.stored.push(key);
        }
        out.backed_used = backed - backed_left;
        Ok(out)
    }

    /// Writes the batch and moves the head: four statements sent without
    /// waiting for each other's answers (one round trip).
    async fn write(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<(), Failure> {
        let mut session_ids = Vec::new();
        let mut session_records = Vec::new();
        for (session, (record, dirty)) in &self.sessions {
            if *dirty {
                session_ids.push(session.clone());
                session_records.push(
                    serde_json::to_string(record).map_err(|e| Failure::Corrupt(e.to_string()))?,
                );
            }
        }
        let upsert = tx
            .prepare_cached(
                "INSERT INTO audit_client_sessions (session, record) \
                 SELECT * FROM unnest($1::text[], $2::text[]) \
                 ON CONFLICT (session) DO UPDATE SET record = EXCLUDED.record",
            )
            .await?;
        let head = tx
            .prepare_cached("UPDATE audit_head SET last_seq = $1, last_hash = $2")
            .await?;
        let last_seq = to_sql(self.next_seq - 1);
        let sessions = async {
            if session_ids.is_empty() {
                return Ok(0);
            }
            tx.execute(&upsert, &[&session_ids, &session_records]).await
        };
        let head = async {
            if self.rows.seq.is_empty() {
                return Ok(0);
            }
            tx.execute(&head, &[&last_seq, &self.prev]).await
        };
        futures::try_join!(self.rows.insert(tx), self.keys.insert(tx), sessions, head)?;
        Ok(())
    }
}

/// The handle is shared by the relay's tasks.
const _: fn() = || {
    fn shared<T: Send + Sync + Clone>() {}
    shared::<PgAuditLog>();
};
