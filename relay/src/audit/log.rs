//! The audit chain in sled: tree `audit`, key = sequence number (u64
//! big-endian, contiguous from 1), value = a [`Record`] as JSON. A record's
//! hash is SHA-256 over the previous hash, its sequence number, its time
//! and its event in canonical JSON (object keys sorted), so verifying needs
//! nothing but the records. Appends are serialized and flushed before they
//! return. Retention drops the oldest records and remembers the last
//! dropped one as the anchor the first kept record must chain to.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::budget::{BudgetExceeded, ClientSessionRecord};
use super::Event;
use crate::store::{SledStore, StoreError};
use sallyport_common::hash::sha256_hex;

/// Keep events this long by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// And at most this many by default (about 0.3-1 KB each).
pub const DEFAULT_MAX_EVENTS: u64 = 5_000_000;
/// Records retention drops per hold of the append lock.
pub const PRUNE_CHUNK: u64 = 1000;
/// Meta key of the anchor: `{seq, hash}` of the last record retention dropped.
pub(crate) const META_ANCHOR: &str = "audit_anchor";
/// The `prev` of the very first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its place in the chain, from 1.
    pub seq: u64,
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// The hash of the record before it (hex; 64 zeros for the very first).
    pub prev: String,
    /// SHA-256 (hex) over `prev`, `seq`, `at_ms` and the event's canonical
    /// JSON: what `audit verify` recomputes.
    pub hash: String,
    /// The audit `Event` as JSON: kept as a value, so records written by an
    /// older relay verify with a newer one.
    pub event: serde_json::Value,
}

impl Record {
    /// `at_ms` as RFC 3339 in UTC, with milliseconds
    /// (`2026-11-30T21:50:07.123Z`).
    pub fn time(&self) -> String {
        rfc3339_millis(self.at_ms)
    }

    /// The stable code of the event's type (`super::code::CODES`).
    pub fn code(&self) -> Option<u16> {
        super::code::code_of(self.event.get("type")?.as_str()?)
    }

    /// The record with its derived fields, as exported and served.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            record: self,
            time: self.time(),
            code: self.code(),
        }
    }
}

/// A [`Record`] as `audit export` and `GET /api/audit` give it: the stored
/// fields and two derived from them when read (never stored, so records
/// written before they existed keep verifying, and both are covered by the
/// hash through `at_ms` and the event's `type`).
#[derive(Debug, Serialize)]
pub struct RecordView<'a> {
    #[serde(flatten)]
    record: &'a Record,
    /// [`Record::time`].
    pub time: String,
    /// [`Record::code`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

/// Unix milliseconds as RFC 3339 in UTC with three decimals; the number
/// itself when out of range.
pub fn rfc3339_millis(at_ms: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
    else {
        return at_ms.to_string();
    };
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s, ms) = (t.hour(), t.minute(), t.second(), t.millisecond());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// What [`SledChain::append_client_events`] did with a batch.
#[derive(Debug, Default, Clone)]
pub struct ClientAppend {
    /// `(session, seq)` of every event now on disk, new or stored before.
    pub stored: Vec<(String, u64)>,
    /// An event over its session's budget, refused with the events after it.
    pub refused: Option<BudgetExceeded>,
    /// `(session, seq)` of that event: it will never be stored, so the
    /// client may forget it (and should, or it sends it again).
    pub refused_at: Option<(String, u64)>,
    /// Of the `backed` bytes given, how many the stored terminal events used.
    pub backed_used: u64,
}

/// How much of the chain to keep: events older than `max_age` and all but
/// the newest `max_events` are dropped.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Drop events older than this.
    pub max_age: Duration,
    /// Keep at most this many events.
    pub max_events: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: DEFAULT_MAX_AGE,
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Anchor {
    seq: u64,
    hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("event {seq} was changed: its hash does not match its contents")]
    Changed { seq: u64 },
    #[error("event {seq} does not follow event {before}: events are missing or reordered")]
    Gap { before: u64, seq: u64 },
    #[error("event {seq} does not chain to the event before it: an event before it was changed, removed or reordered")]
    Broken { seq: u64 },
    #[error("event stored under {key} says it is event {seq}")]
    Misplaced { key: u64, seq: u64 },
    #[error("event {0} cannot be read")]
    Unreadable(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `audit list` asks for; empty fields match everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Unix milliseconds.
    pub since_ms: Option<u64>,
    /// Events of this user.
    pub user: Option<String>,
    /// Events about this service.
    pub service: Option<String>,
    /// One terminal session: the client's events of that session id, and
    /// the stream events of every stream they came on (a session that
    /// reconnected came on several). Also a stream id, as before streams
    /// were told apart from sessions: that stream's events.
    pub session: Option<String>,
    /// One stream (the relay's id, as in `stream_opened`): its stream
    /// events and the client events that came on it.
    #[serde(default)]
    pub stream: Option<String>,
    /// Only events after this sequence number (paging).
    pub after_seq: Option<u64>,
    /// Only events of this type (`sign_in`, `decision`, ...).
    pub kind: Option<String>,
}

/// The client's terminal session id a stored event names: only client
/// events have one.
pub(crate) fn session_of(event: &serde_json::Value) -> Option<&str> {
    if event.get("type")?.as_str()? != "client" {
        return None;
    }
    event.get("session")?.as_str()
}

/// The relay's stream id a stored event names: `stream` in client events
/// and in stream events written since streams were named so; `session` in
/// stream events written before (stored records are never rewritten: the
/// hash chain covers their bytes).
pub(crate) fn stream_of(event: &serde_json::Value) -> Option<&str> {
    let id = match event.get("type")?.as_str()? {
        "stream_opened" | "stream_closed" => {
            event.get("stream").or_else(|| event.get("session"))?
        }
        "client" => event.get("stream")?,
        _ => return None,
    };
    id.as_str()
}

fn is_stream_event(event: &serde_json::Value) -> bool {
    matches!(
        event.get("type").and_then(|t| t.as_str()),
        Some("stream_opened" | "stream_closed")
    )
}

impl Filter {
    /// `streams`: the streams the client events of `self.session` came on
    /// (see [`SledChain::streams_of_session`]).
    pub(crate) fn matches(&self, r: &Record, streams: &BTreeSet<String>) -> bool {
        let field = |name: &str| {
            r.event
                .get(name)
                .or_else(|| r.event.get("inputs").and_then(|i| i.get(name)))
                .and_then(|v| v.as_str())
        };
        self.since_ms.is_none_or(|t| r.at_ms >= t)
            && self
                .kind
                .as_deref()
                .is_none_or(|k| field("type") == Some(k))
            && self.after_seq.is_none_or(|s| r.seq > s)
            && self
                .user
                .as_deref()
                .is_none_or(|u| field("user") == Some(u))
            && self
                .service
                .as_deref()
                .is_none_or(|s| field("service") == Some(s))
            && self.session.as_deref().is_none_or(|s| {
                session_of(&r.event) == Some(s)
                    || is_stream_event(&r.event)
                        && stream_of(&r.event).is_some_and(|id| id == s || streams.contains(id))
            })
            && self
                .stream
                .as_deref()
                .is_none_or(|s| stream_of(&r.event) == Some(s))
    }

    /// Whether matching needs the streams of `self.session`: only when
    /// stream events may match at all.
    pub(crate) fn joins_streams(&self) -> bool {
        self.session.is_some()
            && self
                .kind
                .as_deref()
                .is_none_or(|k| k == "stream_opened" || k == "stream_closed")
    }
}

/// The once-only key of a client event: its session id, 0, its seq (u64 BE).
fn client_key(session: &str, seq: u64) -> Vec<u8> {
    let mut key = session.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn client_key_of(event: &serde_json::Value) -> Option<Vec<u8>> {
    if event.get("type")?.as_str()? != "client" {
        return None;
    }
    Some(client_key(
        event.get("session")?.as_str()?,
        event.get("seq")?.as_u64()?,
    ))
}

pub(crate) fn hash_of(prev: &str, seq: u64, at_ms: u64, event: &serde_json::Value) -> String {
    // serde_json's Value keeps object keys sorted: one canonical form.
    let body = serde_json::to_string(event).unwrap_or_default();
    sha256_hex(format!("{prev}\n{seq}\n{at_ms}\n{body}").as_bytes())
}

/// The chain in the sled engine (see the module docs); [`super::AuditLog`]
/// is what the rest of the relay holds.
pub struct SledChain {
    store: SledStore,
    tree: sled::Tree,
    /// Client session id + 0 + event seq (u64 BE) -> audit seq: each client
    /// event is stored once however often it is sent.
    client_keys: sled::Tree,
    /// Client session id -> its [`ClientSessionRecord`] (JSON; older
    /// relays stored the user name alone): owner and budgets.
    client_sessions: sled::Tree,
    /// Appends one at a time: each needs the hash of the one before.
    append: Mutex<()>,
}

impl SledChain {
    /// Opens the chain's trees in `store`.
    pub fn open(store: &SledStore) -> Result<Self, StoreError> {
        Ok(Self {
            tree: store.open_tree("audit")?,
            client_keys: store.open_tree("audit_client_keys")?,
            client_sessions: store.open_tree("audit_client_sessions")?,
            store: store.clone(),
            append: Mutex::new(()),
        })
    }

    fn anchor(&self) -> Result<Option<Anchor>, StoreError> {
        Ok(self
            .store
            .meta(META_ANCHOR)?
            .and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// The anchor retention left: `(seq, hash)` of the last record it
    /// dropped, which the first kept one chains to; `None` before retention
    /// dropped any. For `store migrate`.
    pub(crate) fn retention_anchor(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self.anchor()?.map(|a| (a.seq, a.hash)))
    }

    /// Every client session's owner and budgets, by session id (records of
    /// older relays, the user name alone, read as [`ClientSessionRecord::decode`]
    /// does). For `store migrate`.
    pub(crate) fn client_sessions(&self) -> Result<Vec<(String, ClientSessionRecord)>, StoreError> {
        self.client_sessions
            .iter()
            .map(|e| {
                let (k, v) = e?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    ClientSessionRecord::decode(&v),
                ))
            })
            .collect()
    }

    /// How many once-only keys of client events the chain holds (one per
    /// stored client event). For `store migrate`'s summary.
    pub(crate) fn client_key_count(&self) -> usize {
        self.client_keys.len()
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Record, VerifyError> {
        let seq = <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        serde_json::from_slice(value).map_err(|_| VerifyError::Unreadable(seq))
    }

    /// The sequence number and hash the next record follows.
    fn next_position(&self) -> Result<(u64, String), StoreError> {
        Ok(match self.tree.last()? {
            Some((_, v)) => {
                let last: Record = serde_json::from_slice(&v)?;
                (last.seq + 1, last.hash)
            }
            None => match self.anchor()? {
                Some(a) => (a.seq + 1, a.hash),
                None => (1, GENESIS.to_owned()),
            },
        })
    }

    fn record(&self, event: &Event) -> Result<Record, StoreError> {
        let (seq, prev) = self.next_position()?;
        let at_ms = sallyport_common::time::now_millis();
        let event = serde_json::to_value(event)?;
        Ok(Record {
            seq,
            at_ms,
            hash: hash_of(&prev, seq, at_ms, &event),
            prev,
            event,
        })
    }

    /// Appends `event` and flushes it to disk before returning.
    pub fn append(&self, event: &Event) -> Result<Record, StoreError> {
        let _one_at_a_time = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let record = self.record(event)?;
        self.tree
            .insert(record.seq.to_be_bytes(), serde_json::to_vec(&record)?)?;
        self.store.flush()?;
        Ok(record)
    }

    /// Appends client events ([`Event::Client`]) that are not stored yet,
    /// with one flush for all; returns `(session, seq)` of every event that
    /// is now on disk (new or stored before), which the client may forget.
    /// Events of a session id that belongs to another user are refused
    /// (not stored, not returned). A new event over its session's budget
    /// (see [`super::budget`]) is refused with the reason, and the events
    /// after it are not looked at. `backed` is the terminal bytes the
    /// sending socket carried that no stored event has used yet.
    pub fn append_client_events(
        &self,
        user: &str,
        events: &[Event],
        backed: u64,
    ) -> Result<ClientAppend, StoreError> {
        use sled::Transactional as _;
        let mut out = ClientAppend::default();
        if events.is_empty() {
            // Nothing to flush (a batch of keystrokes that are not recorded).
            return Ok(out);
        }
        let _one_at_a_time = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let mut backed_left = backed;
        // The records of this batch's session ids, written back once.
        let mut records: Vec<(String, ClientSessionRecord)> = Vec::new();
        for event in events {
            let Event::Client {
                session,
                seq,
                event: what,
                ..
            } = event
            else {
                continue;
            };
            let index = match records.iter().position(|(s, _)| s == session) {
                Some(i) => i,
                None => {
                    let record = match self.client_sessions.get(session.as_bytes())? {
                        Some(bytes) => ClientSessionRecord::decode(&bytes),
                        None => ClientSessionRecord {
                            user: user.to_owned(),
                            ..Default::default()
                        },
                    };
                    records.push((session.clone(), record));
                    records.len() - 1
                }
            };
            let record = &mut records[index].1;
            if record.user != user {
                tracing::warn!(%user, %session, "client events for another user's session refused");
                continue;
            }
            let key = client_key(session, *seq);
            if self.client_keys.get(&key)?.is_none() {
                if let Err(e) = record.charge(session, what, &mut backed_left) {
                    out.refused = Some(e);
                    out.refused_at = Some((session.clone(), *seq));
                    break;
                }
                let record = self.record(event)?;
                let value = serde_json::to_vec(&record)?;
                // Both or neither: a crash between them must not let a resent
                // event be stored twice, nor mark one stored that is not.
                (&self.tree, &self.client_keys)
                    .transaction(|(t, k)| {
                        t.insert(&record.seq.to_be_bytes(), value.clone())?;
                        k.insert(key.clone(), &record.seq.to_be_bytes())?;
                        Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e| match e {
                        sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                        sled::transaction::TransactionError::Abort(()) => {
                            StoreError::Sled(sled::Error::Unsupported("aborted".into()))
                        }
                    })?;
            }
            out.stored.push((session.clone(), *seq));
        }
        for (session, record) in records {
            if record.user == user {
                self.client_sessions
                    .insert(session.as_bytes(), serde_json::to_vec(&record)?)?;
            }
        }
        self.store.flush()?;
        out.backed_used = backed - backed_left;
        Ok(out)
    }

    /// The streams the client events of terminal session `filter.session`
    /// came on, which [`Filter`] joins to it (empty when it need not). One
    /// pass over the log; as many ids as the session had sockets.
    fn streams_of_session(&self, filter: &Filter) -> Result<BTreeSet<String>, StoreError> {
        let mut streams = BTreeSet::new();
        let Some(session) = filter.session.as_deref().filter(|_| filter.joins_streams()) else {
            return Ok(streams);
        };
        for entry in self.tree.iter() {
            let (k, v) = entry?;
            let Ok(r) = Self::decode(&k, &v) else {
                continue;
            };
            if session_of(&r.event) == Some(session) {
                if let Some(stream) = stream_of(&r.event) {
                    if !streams.contains(stream) {
                        streams.insert(stream.to_owned());
                    }
                }
            }
        }
        Ok(streams)
    }

    /// Up to `limit` records that `filter` matches, oldest first.
    pub fn list(&self, filter: &Filter, limit: usize) -> Result<Vec<Record>, StoreError> {
        let streams = self.streams_of_session(filter)?;
        let start = filter.after_seq.map(|s| s + 1).unwrap_or(0);
        let mut out = Vec::new();
        for entry in self.tree.range(start.to_be_bytes()..) {
            let (k, v) = entry?;
            let Ok(r) = Self::decode(&k, &v) else {
                continue;
            };
            if filter.matches(&r, &streams) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The last `limit` records that `filter` matches, oldest first.
    pub fn list_last(&self, filter: &Filter, limit: usize) -> Result<Vec<Record>, StoreError> {
        let streams = self.streams_of_session(filter)?;
        let mut out = Vec::new();
        for entry in self.tree.iter().rev() {
            let (k, v) = entry?;
            let Ok(r) = Self::decode(&k, &v) else {
                continue;
            };
            if filter.matches(&r, &streams) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Calls `each` with every record `filter` matches, oldest first (from
    /// `filter.after_seq` on), one at a time: however many there are, only
    /// one is held. `each` returns [`ControlFlow::Break`] to stop early.
    pub fn scan(
        &self,
        filter: &Filter,
        mut each: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let streams = self.streams_of_session(filter)?;
        let start = filter.after_seq.map(|s| s + 1).unwrap_or(0);
        for entry in self.tree.range(start.to_be_bytes()..) {
            let (k, v) = entry?;
            let Ok(r) = Self::decode(&k, &v) else {
                continue;
            };
            if filter.matches(&r, &streams) && each(r).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The sequence number of the oldest of the last `n` records `filter`
    /// matches (`None` when none match or `n` is 0): where a scan for
    /// "the last `n`" starts, found without holding them.
    pub fn start_of_last(&self, filter: &Filter, n: usize) -> Result<Option<u64>, StoreError> {
        if n == 0 {
            return Ok(None);
        }
        let streams = self.streams_of_session(filter)?;
        let (mut found, mut start) = (0, None);
        for entry in self.tree.iter().rev() {
            let (k, v) = entry?;
            let Ok(r) = Self::decode(&k, &v) else {
                continue;
            };
            if filter.matches(&r, &streams) {
                start = Some(r.seq);
                found += 1;
                if found >= n {
                    break;
                }
            }
        }
        Ok(start)
    }

    /// The record numbered `seq`, if it is (still) stored.
    pub fn get(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        match self.tree.get(seq.to_be_bytes())? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// The newest event's sequence number and hash: worth noting outside
    /// the relay, since deleting the newest events leaves a valid chain.
    pub fn tip(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(match self.tree.last()? {
            Some((_, v)) => {
                let r: Record = serde_json::from_slice(&v)?;
                Some((r.seq, r.hash))
            }
            None => None,
        })
    }

    /// Checks the whole chain; returns how many events it holds. Retention
    /// dropping old events meanwhile is not a break: the check starts over.
    pub fn verify(&self) -> Result<u64, VerifyError> {
        let mut tries = 0;
        loop {
            let anchor = self.anchor()?;
            match self.verify_from(&anchor) {
                Err(e) if tries < 3 && self.anchor()? != anchor => {
                    tracing::debug!(error = %e, "retention moved the anchor during verification; again");
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    fn verify_from(&self, anchor: &Option<Anchor>) -> Result<u64, VerifyError> {
        // Records at or before the anchor are being dropped by retention.
        let (mut expect_seq, mut expect_prev) = match anchor {
            Some(a) => (a.seq + 1, a.hash.clone()),
            None => (1, GENESIS.to_owned()),
        };
        let mut count = 0;
        for entry in self.tree.range(expect_seq.to_be_bytes()..) {
            let (k, v) = entry.map_err(StoreError::from)?;
            let r = Self::decode(&k, &v)?;
            let key = <[u8; 8]>::try_from(&k[..])
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if r.seq != key {
                return Err(VerifyError::Misplaced { key, seq: r.seq });
            }
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
        Ok(count)
    }

    /// Drops the oldest events beyond `retention`; returns how many. Works
    /// in chunks of [`PRUNE_CHUNK`], so appends wait for one chunk at most.
    pub fn prune(&self, retention: Retention, now_ms: u64) -> Result<u64, StoreError> {
        let mut dropped = 0;
        loop {
            let n = self.prune_chunk(retention, now_ms)?;
            dropped += n;
            if n < PRUNE_CHUNK {
                return Ok(dropped);
            }
        }
    }

    fn prune_chunk(&self, retention: Retention, now_ms: u64) -> Result<u64, StoreError> {
        let _one_at_a_time = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let (Some((first, _)), Some((last, _))) = (self.tree.first()?, self.tree.last()?) else {
            return Ok(0);
        };
        let seq_of = |k: &[u8]| <[u8; 8]>::try_from(k).map(u64::from_be_bytes).unwrap_or(0);
        let (first, last) = (seq_of(&first), seq_of(&last));
        let too_many = (last - first + 1).saturating_sub(retention.max_events);
        let oldest_kept_ms = now_ms.saturating_sub(retention.max_age.as_millis() as u64);
        // The last record to drop: by count, then by age.
        let mut cut = None;
        for entry in self.tree.iter().take(PRUNE_CHUNK as usize) {
            let (k, v) = entry?;
            let r: Record = serde_json::from_slice(&v)?;
            if seq_of(&k) < first + too_many || r.at_ms < oldest_kept_ms {
                cut = Some(r);
            } else {
                break;
            }
        }
        let Some(cut) = cut else { return Ok(0) };
        // The anchor first: a crash halfway leaves records the anchor
        // already covers, which verification skips.
        let anchor = serde_json::to_string(&Anchor {
            seq: cut.seq,
            hash: cut.hash.clone(),
        })?;
        self.store.set_meta(META_ANCHOR, &anchor)?;
        let mut dropped = 0;
        for seq in first..=cut.seq {
            // A dropped client event's once-only key goes with it: a client
            // resending it after this long is not to be expected.
            if let Some(v) = self.tree.remove(seq.to_be_bytes())? {
                if let Ok(r) = serde_json::from_slice::<Record>(&v) {
                    if let Some(key) = client_key_of(&r.event) {
                        self.client_keys.remove(key)?;
                    }
                }
            }
            dropped += 1;
        }
        self.store.flush()?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> Event {
        Event::ConnectorRevoked {
            connector: format!("c{n}"),
            by: None,
        }
    }

    #[test]
    fn the_chain_detects_changed_removed_and_reordered_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let log = SledChain::open(&store).unwrap();
        for n in 1..=5 {
            assert_eq!(log.append(&event(n)).unwrap().seq, n);
        }
        assert_eq!(log.verify().unwrap(), 5);

        // Changed.
        let original = log.tree.get(3u64.to_be_bytes()).unwrap().unwrap();
        // What someone editing the database would do: the event changed,
        // the chain left as it was.
        let mut edited: Record = serde_json::from_slice(&original).unwrap();
        edited.event = serde_json::json!({"type": "connector_revoked", "connector": "x"});
        log.tree
            .insert(3u64.to_be_bytes(), serde_json::to_vec(&edited).unwrap())
            .unwrap();
        assert!(matches!(log.verify(), Err(VerifyError::Changed { seq: 3 })));
        log.tree
            .insert(3u64.to_be_bytes(), original.clone())
            .unwrap();
        assert_eq!(log.verify().unwrap(), 5);

        // Removed.
        log.tree.remove(3u64.to_be_bytes()).unwrap();
        assert!(matches!(
            log.verify(),
            Err(VerifyError::Gap { before: 2, seq: 4 })
        ));
        log.tree.insert(3u64.to_be_bytes(), original).unwrap();

        // Reordered: 2 and 3 swapped, with their sequence numbers rewritten.
        let two: Record =
            serde_json::from_slice(&log.tree.get(2u64.to_be_bytes()).unwrap().unwrap()).unwrap();
        let three: Record =
            serde_json::from_slice(&log.tree.get(3u64.to_be_bytes()).unwrap().unwrap()).unwrap();
        let swapped2 = Record {
            seq: 2,
            ..three.clone()
        };
        let swapped3 = Record {
            seq: 3,
            ..two.clone()
        };
        log.tree
            .insert(2u64.to_be_bytes(), serde_json::to_vec(&swapped2).unwrap())
            .unwrap();
        log.tree
            .insert(3u64.to_be_bytes(), serde_json::to_vec(&swapped3).unwrap())
            .unwrap();
        assert!(log.verify().is_err());
        log.tree
            .insert(2u64.to_be_bytes(), serde_json::to_vec(&two).unwrap())
            .unwrap();
        log.tree
            .insert(3u64.to_be_bytes(), serde_json::to_vec(&three).unwrap())
            .unwrap();
        assert_eq!(log.verify().unwrap(), 5);
    }

    #[test]
    fn records_get_a_time_and_code_derived_from_what_the_hash_covers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let log = SledChain::open(&store).unwrap();
        let mut r = log.append(&event(1)).unwrap();
        r.at_ms = 1_796_075_407_123;
        assert_eq!(r.time(), "2026-11-30T21:50:07.123Z");
        assert_eq!(r.code(), Some(3004));
        let v = serde_json::to_value(r.view()).unwrap();
        assert_eq!(v["time"], "2026-11-30T21:50:07.123Z");
        assert_eq!(v["code"], 3004);
        assert_eq!(v["seq"], 1);
        // Stored records do not hold them.
        let stored = log.tree.get(1u64.to_be_bytes()).unwrap().unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert!(stored.get("time").is_none() && stored.get("code").is_none());
    }

    #[test]
    fn retention_drops_the_oldest_and_the_rest_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let log = SledChain::open(&store).unwrap();
        for n in 1..=10 {
            log.append(&event(n)).unwrap();
        }
        let keep4 = Retention {
            max_age: DEFAULT_MAX_AGE,
            max_events: 4,
        };
        assert_eq!(
            log.prune(keep4, sallyport_common::time::now_millis())
                .unwrap(),
            6
        );
        assert_eq!(log.verify().unwrap(), 4);
        assert_eq!(log.append(&event(11)).unwrap().seq, 11);
        assert_eq!(log.verify().unwrap(), 5);
        // By age: everything is older than "now + a year".
        let later = sallyport_common::time::now_millis() + 365 * 24 * 3600 * 1000;
        assert_eq!(log.prune(Retention::default(), later).unwrap(), 5);
        assert_eq!(log.verify().unwrap(), 0);
        assert_eq!(log.append(&event(12)).unwrap().seq, 12);
        assert_eq!(log.verify().unwrap(), 1);
        // Removing the first kept record is still noticed.
        log.append(&event(13)).unwrap();
        log.tree.remove(12u64.to_be_bytes()).unwrap();
        assert!(log.verify().is_err());
    }

    #[test]
    fn scans_stream_matches_and_find_where_the_last_n_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let log = SledChain::open(&store).unwrap();
        for n in 1..=10 {
            log.append(&event(n)).unwrap();
        }
        let mut seen = Vec::new();
        let from_4 = Filter {
            after_seq: Some(3),
            ..Default::default()
        };
        log.scan(&from_4, |r| {
            seen.push(r.seq);
            if r.seq == 6 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(seen, [4, 5, 6]);
        let all = Filter::default();
        assert_eq!(log.start_of_last(&all, 3).unwrap(), Some(8));
        assert_eq!(log.start_of_last(&all, 100).unwrap(), Some(1));
        assert_eq!(log.start_of_last(&all, 0).unwrap(), None);
        let none = Filter {
            kind: Some("sign_in".into()),
            ..Default::default()
        };
        assert_eq!(log.start_of_last(&none, 3).unwrap(), None);
        assert_eq!(log.get(7).unwrap().unwrap().seq, 7);
        assert!(log.get(11).unwrap().is_none());
    }

    fn client(session: &str, seq: u64) -> Event {
        Event::Client {
            session: session.into(),
            seq,
            t_ms: seq * 10,
            user: "alice".into(),
            service: "web1".into(),
            stream: "s".into(),
            event: sallyport_proto::client::SessionEvent::Resize { cols: 80, rows: 24 },
        }
    }

    #[test]
    fn client_events_are_stored_once_and_only_for_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let log = SledChain::open(&store).unwrap();
        let batch: Vec<Event> = (1..=3).map(|n| client("s1", n)).collect();
        assert_eq!(
            log.append_client_events("alice", &batch, 0)
                .unwrap()
                .stored
                .len(),
            3
        );
        // Sent again (a lost acknowledgement): acknowledged, not stored again.
        let again: Vec<Event> = (2..=4).map(|n| client("s1", n)).collect();
        assert_eq!(
            log.append_client_events("alice", &again, 0)
                .unwrap()
                .stored
                .len(),
            3
        );
        assert_eq!(log.verify().unwrap(), 4);
        // Someone else's events for alice's session are refused.
        assert!(log
            .append_client_events("mallory", &[client("s1", 5)], 0)
            .unwrap()
            .stored
            .is_empty());
        assert_eq!(log.verify().unwrap(), 4);
        // Retention takes the once-only keys with the events.
        let keep1 = Retention {
            max_age: DEFAULT_MAX_AGE,
            max_events: 1,
        };
        log.prune(keep1, sallyport_common::time::now_millis())
            .unwrap();
        assert_eq!(log.client_keys.len(), 1);
    }

    #[test]
    fn client_budgets_hold_across_calls_and_refuse_a_second_start() {
        use crate::audit::budget::{BudgetExceeded, MAX_CONTROL_EVENTS_PER_SESSION};
        use sallyport_proto::client::SessionEvent;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let log = SledChain::open(&store).unwrap();
        let with = |seq: u64, event: SessionEvent| match client("s1", seq) {
            Event::Client {
                session,
                seq,
                t_ms,
                user,
                service,
                stream,
                ..
            } => Event::Client {
                session,
                seq,
                t_ms,
                user,
                service,
                stream,
                event,
            },
            other => other,
        };
        let start = || SessionEvent::Start {
            service: "web1".into(),
            principal: "alice".into(),
            auth: "password".into(),
            host_key: "SHA256:x".into(),
            cols: 80,
            rows: 24,
        };
        let r = log
            .append_client_events("alice", &[with(1, start())], 0)
            .unwrap();
        assert!(r.refused.is_none());
        // The same start again (resent) is fine; another one is not.
        let r = log
            .append_client_events("alice", &[with(1, start()), with(2, start())], 0)
            .unwrap();
        assert_eq!(r.stored, [("s1".to_string(), 1)]);
        assert!(matches!(
            r.refused,
            Some(BudgetExceeded::SecondStart { .. })
        ));
        // Resizes up to the budget, in many calls: the count is kept.
        let mut seq = 2;
        let mut refused = None;
        while refused.is_none() {
            let batch: Vec<Event> = (seq..seq + 64).map(|n| client("s1", n)).collect();
            seq += 64;
            refused = log
                .append_client_events("alice", &batch, 0)
                .unwrap()
                .refused;
        }
        assert!(matches!(
            refused,
            Some(BudgetExceeded::ControlEvents { .. })
        ));
        assert_eq!(log.verify().unwrap(), MAX_CONTROL_EVENTS_PER_SESSION);
    }

    #[test]
    fn filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let log = SledChain::open(&store).unwrap();
        log.append(&Event::StreamOpened {
            stream: "s1".into(),
            service: "web1".into(),
            user: "alice".into(),
            connector: "c1".into(),
            client: "127.0.0.1:1".into(),
        })
        .unwrap();
        log.append(&event(2)).unwrap();
        let by = |f: Filter| log.list(&f, 100).unwrap().len();
        assert_eq!(by(Filter::default()), 2);
        assert_eq!(
            by(Filter {
                user: Some("alice".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            by(Filter {
                service: Some("web2".into()),
                ..Default::default()
            }),
            0
        );
        assert_eq!(
            by(Filter {
                session: Some("s1".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            by(Filter {
                after_seq: Some(1),
                ..Default::default()
            }),
            1
        );
    }

    #[test]
    fn a_session_filter_finds_its_streams_also_in_records_from_before_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let log = SledChain::open(&store).unwrap();
        // A stream event as relays before the rename stored it.
        log.append(&Event::ConnectorRevoked {
            connector: "x".into(),
            by: None,
        })
        .unwrap();
        let old = serde_json::json!({"type": "stream_opened", "session": "old",
            "service": "web1", "user": "alice", "connector": "c1", "client": "a"});
        // The record rewritten with the old event and its hash made again,
        // as an old relay would have chained it.
        let mut r = log.get(1).unwrap().unwrap();
        r.event = old.clone();
        r.hash = hash_of(&r.prev, r.seq, r.at_ms, &r.event);
        log.tree
            .insert(1u64.to_be_bytes(), serde_json::to_vec(&r).unwrap())
            .unwrap();
        let with_stream = |stream: &str, seq: u64| match client("t1", seq) {
            Event::Client {
                session,
                seq,
                t_ms,
                user,
                service,
                event,
                ..
            } => Event::Client {
                session,
                seq,
                t_ms,
                user,
                service,
                stream: stream.into(),
                event,
            },
            other => other,
        };
        log.append_client_events("alice", &[with_stream("old", 1)], 0)
            .unwrap();
        log.append(&Event::StreamOpened {
            stream: "new".into(),
            service: "web1".into(),
            user: "alice".into(),
            connector: "c1".into(),
            client: "a".into(),
        })
        .unwrap();
        log.append(&Event::StreamOpened {
            stream: "unrelated".into(),
            service: "web1".into(),
            user: "alice".into(),
            connector: "c1".into(),
            client: "a".into(),
        })
        .unwrap();
        log.append_client_events("alice", &[with_stream("new", 2)], 0)
            .unwrap();
        assert_eq!(log.verify().unwrap(), 5);
        let seqs =
            |f: Filter| -> Vec<u64> { log.list(&f, 100).unwrap().iter().map(|r| r.seq).collect() };
        let session = |s: &str| Filter {
            session: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(seqs(session("t1")), [1, 2, 3, 5]);
        assert_eq!(seqs(session("old")), [1]);
        assert_eq!(seqs(session("new")), [3]);
        assert_eq!(
            seqs(Filter {
                stream: Some("old".into()),
                ..Default::default()
            }),
            [1, 2]
        );
        assert_eq!(
            seqs(Filter {
                kind: Some("client".into()),
                ..session("t1")
            }),
            [2, 5]
        );
        assert_eq!(log.list_last(&session("t1"), 2).unwrap().len(), 2);
        assert_eq!(log.start_of_last(&session("t1"), 3).unwrap(), Some(2));
    }
}
