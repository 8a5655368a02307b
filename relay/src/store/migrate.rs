//! `sallyport-relay store migrate --to postgres://...`: copies a relay's
//! sled store, offline, into an empty PostgreSQL database, so the relay (or
//! a cluster of relays) can run on it with `--store`.
//!
//! Every kind of record is copied with its keys as they are (sign-ins and
//! enrolment tokens stay keyed by the SHA-256 of their secrets, which are
//! never known), and the audit chain byte for byte: same sequence numbers,
//! times, events and hashes, with retention's anchor, so `audit verify`
//! gives the same tip before and after.
//!
//! The target must be empty: nothing is merged, overwritten or skipped. A
//! copy that stops halfway (PostgreSQL went away) leaves a database that a
//! second run refuses; drop the database, create it again, run again. The
//! sled store is only read (besides the start-up fixes every offline
//! command applies) and stays as it was.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context as _};

use super::{PgStore, RawTable, SledStore};
use crate::audit::pg::PgAuditLog;
use crate::audit::{Filter, SledChain, META_ANCHOR};

/// Records copied per PostgreSQL transaction.
pub const PAGE: usize = 1000;

/// How many records of each kind a migration copied, and the audit chain's
/// tip before and after.
#[derive(Debug, Default)]
pub struct Summary {
    /// Rows written per table ([`RawTable::pg_table`] names), in copy order.
    pub tables: Vec<(&'static str, u64)>,
    /// Records of the audit chain copied.
    pub audit_records: u64,
    /// Retention's anchor in the chain copied, if retention had dropped any.
    pub audit_anchor: Option<(u64, String)>,
    /// Client sessions' owner and budget records copied.
    pub client_sessions: u64,
    /// Once-only keys of client events in the target, rebuilt from the
    /// records.
    pub client_keys: u64,
    /// Once-only keys the sled chain held (the same number, unless records
    /// from before the keys existed are among the copied ones).
    pub sled_client_keys: u64,
    /// `(seq, hash)` of the newest audit record in sled; `None` when empty.
    pub tip_before: Option<(u64, String)>,
    /// The same read back from PostgreSQL after the copy verified.
    pub tip_after: Option<(u64, String)>,
}

/// Tip as `audit verify` words it.
fn tip_text(tip: &Option<(u64, String)>) -> String {
    match tip {
        Some((seq, hash)) => format!("event {seq}, hash {hash}"),
        None => "none (the chain is empty)".into(),
    }
}

impl Summary {
    /// Writes the summary for people, one line per kind.
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for (table, n) in &self.tables {
            writeln!(out, "{table}: {n}")?;
        }
        writeln!(out, "audit events: {}", self.audit_records)?;
        if let Some((seq, hash)) = &self.audit_anchor {
            writeln!(out, "audit retention anchor: event {seq}, hash {hash}")?;
        }
        writeln!(out, "audit client sessions: {}", self.client_sessions)?;
        writeln!(
            out,
            "audit client event keys: {} (sled held {})",
            self.client_keys, self.sled_client_keys
        )?;
        writeln!(out, "audit tip in sled: {}", tip_text(&self.tip_before))?;
        writeln!(
            out,
            "audit tip in PostgreSQL: {}",
            tip_text(&self.tip_after)
        )
    }
}

/// Copies the sled store in `data_dir` into the PostgreSQL database at
/// `url`. Errors, before anything is written: no relay data in `data_dir`;
/// a relay running on it (its admin socket answers, or sled is locked);
/// the target unreachable or not empty; the sled audit chain not
/// verifying. After: a copy that failed halfway (see the module docs), or a
/// tip in PostgreSQL that differs from sled's.
pub async fn migrate(data_dir: &Path, url: &str) -> anyhow::Result<Summary> {
    if !data_dir.join("db").exists() {
        bail!(
            "{} holds no relay data (no sled store in it): nothing to migrate",
            data_dir.display()
        );
    }
    crate::data_dir::prepare(data_dir)?;
    let socket = crate::admin::socket_path(data_dir);
    if tokio::net::UnixStream::connect(&socket).await.is_ok() {
        bail!(
            "a relay is running on {} (its admin socket answers): stop it first; \
             store migrate copies a store that nothing writes to",
            data_dir.display()
        );
    }
    let dir = data_dir.to_owned();
    let sled = tokio::task::spawn_blocking(move || SledStore::open(&dir))
        .await
        .context("opening the sled store failed")?
        .context("stop the relay using this data dir before store migrate")?;
    let chain = SledChain::open(&sled)?;

    let pg = PgStore::connect(url)
        .await
        .context("cannot use the PostgreSQL database to migrate to")?;
    let found = pg.non_empty_tables().await?;
    if !found.is_empty() {
        bail!(
            "the PostgreSQL database is not empty (it holds rows in {}): store migrate copies \
             only into an empty database, never merging or overwriting. If an earlier \
             store migrate stopped halfway, drop the database and create it again \
             (DROP DATABASE ...; CREATE DATABASE ...), then run store migrate again",
            found.join(", ")
        );
    }

    let mut summary = Summary::default();
    let checked = chain.verify().map_err(|e| {
        anyhow::anyhow!("the audit chain in sled does not verify, so it is not copied: {e}")
    })?;
    summary.tip_before = chain.tip()?;

    for table in RawTable::ALL {
        let mut written = 0;
        let mut page = Vec::with_capacity(PAGE);
        for entry in sled.raw(table) {
            let (k, v) = entry?;
            // The chain's anchor is the audit head's in PostgreSQL.
            if table == RawTable::Meta && &k[..] == META_ANCHOR.as_bytes() {
                continue;
            }
            page.push((k.to_vec(), v.to_vec()));
            if page.len() == PAGE {
                written += pg.import_raw(table, &page).await?;
                page.clear();
            }
        }
        written += pg.import_raw(table, &page).await?;
        summary.tables.push((table.pg_table(), written));
    }

    let audit = PgAuditLog::new(pg.pool().clone());
    summary.audit_anchor = chain.retention_anchor()?;
    if let Some((seq, hash)) = &summary.audit_anchor {
        audit.import_anchor(*seq, hash).await?;
    }
    let mut filter = Filter::default();
    loop {
        let records = chain.list(&filter, PAGE)?;
        let Some(last) = records.last().map(|r| r.seq) else {
            break;
        };
        audit.import(&records).await?;
        summary.audit_records += records.len() as u64;
        filter.after_seq = Some(last);
    }
    let sessions = chain.client_sessions()?;
    audit.import_client_sessions(&sessions).await?;
    summary.client_sessions = sessions.len() as u64;
    summary.client_keys = audit.client_key_count().await?;

    let verified = audit.verify().await.map_err(|e| {
        anyhow::anyhow!("the audit chain copied to PostgreSQL does not verify: {e}")
    })?;
    summary.tip_after = audit.tip().await?;
    if verified != checked || summary.tip_after != summary.tip_before {
        bail!(
            "the audit chain copied to PostgreSQL ({verified} events, tip {}) is not sled's \
             ({checked} events, tip {}): do not use the copy; drop the database",
            tip_text(&summary.tip_after),
            tip_text(&summary.tip_before)
        );
    }
    summary.sled_client_keys = chain.client_key_count() as u64;
    Ok(summary)
}
