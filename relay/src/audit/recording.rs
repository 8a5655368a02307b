//! Session recordings: the client events of one session, as asciicast v2
//! (<https://docs.asciinema.org/manual/asciicast/v2/>), which `asciinema
//! play` and asciinema-player replay.

use crate::store::block_on;
use base64::Engine as _;
use sallyport_proto::client::SessionEvent;
use serde::Serialize;

use std::ops::ControlFlow;

use super::{AuditLog, Filter, Record};
use crate::store::StoreError;

#[derive(Serialize)]
struct Header<'a> {
    version: u8,
    width: u32,
    height: u32,
    /// Unix seconds of the session's start.
    timestamp: u64,
    title: String,
    env: Env<'a>,
}

#[derive(Serialize)]
struct Env<'a> {
    #[serde(rename = "TERM")]
    term: &'a str,
}

/// Decodes terminal bytes to text across chunk boundaries: a UTF-8
/// sequence split between two events is kept until its end arrives.
#[derive(Default)]
struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    text.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        // An invalid byte: replaced, and on with the rest.
                        Some(n) => {
                            text.push('\u{fffd}');
                            rest = &bad[n..];
                        }
                        // A sequence cut off at the end: kept for the next event.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let consumed = self.pending.len() - rest.len();
        self.pending.drain(..consumed);
        text
    }
}

/// One client event of the recorded session, as the recording needs it.
struct CastEvent {
    /// The client's number for it: the order of the recording.
    seq: u64,
    /// Milliseconds since the session started, by the client's clock.
    t_ms: u64,
    /// When the relay stored it (unix milliseconds).
    at_ms: u64,
    event: SessionEvent,
    user: String,
    service: String,
}

impl CastEvent {
    /// The event in `r`, when it is a client event of `session`.
    fn of(session: &str, r: &Record) -> Option<Self> {
        let e = &r.event;
        if e.get("type")?.as_str()? != "client" || e.get("session")?.as_str()? != session {
            return None;
        }
        Some(Self {
            seq: e.get("seq")?.as_u64()?,
            t_ms: e.get("t_ms")?.as_u64()?,
            at_ms: r.at_ms,
            event: serde_json::from_value(e.get("event")?.clone()).ok()?,
            user: e.get("user")?.as_str()?.to_owned(),
            service: e.get("service")?.as_str()?.to_owned(),
        })
    }

    fn is_start(&self) -> bool {
        matches!(self.event, SessionEvent::Start { .. })
    }
}

/// The header line (with its newline) from the session's start event.
fn header(start: &CastEvent) -> Option<String> {
    let SessionEvent::Start {
        cols,
        rows,
        principal,
        ..
    } = &start.event
    else {
        return None;
    };
    let header = Header {
        version: 2,
        width: *cols,
        height: *rows,
        timestamp: start.at_ms.saturating_sub(start.t_ms) / 1000,
        title: format!("{} as {principal} on {}", start.user, start.service),
        env: Env {
            term: "xterm-256color",
        },
    };
    let mut line = serde_json::to_string(&header).ok()?;
    line.push('\n');
    Some(line)
}

/// Turns a session's events, in the client's order, into event lines.
#[derive(Default)]
struct Lines {
    output: Utf8Carry,
    input: Utf8Carry,
}

impl Lines {
    /// The line (with its newline) for `e`, if it makes one.
    fn line(&mut self, e: &CastEvent) -> Option<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let t = e.t_ms as f64 / 1000.0;
        let line = match &e.event {
            SessionEvent::Output { data } => {
                let text = self.output.push(&b64.decode(data).unwrap_or_default());
                (!text.is_empty()).then(|| serde_json::json!([t, "o", text]))
            }
            SessionEvent::Input { data } => {
                let text = self.input.push(&b64.decode(data).unwrap_or_default());
                (!text.is_empty()).then(|| serde_json::json!([t, "i", text]))
            }
            SessionEvent::Resize { cols, rows } => {
                Some(serde_json::json!([t, "r", format!("{cols}x{rows}")]))
            }
            SessionEvent::End { reason, .. } => Some(serde_json::json!([t, "m", reason])),
            SessionEvent::Start { .. } => None,
        }?;
        let mut line = line.to_string();
        line.push('\n');
        Some(line)
    }
}

/// The recording of client session `session` from its audit records (in
/// any order; events are replayed in the client's order). `None` when the
/// records hold no start of that session. `truncated` adds a marker saying
/// the recording goes on beyond these records.
pub fn asciicast(session: &str, records: &[Record], truncated: bool) -> Option<String> {
    let mut events: Vec<CastEvent> = records
        .iter()
        .filter_map(|r| CastEvent::of(session, r))
        .collect();
    events.sort_by_key(|e| e.seq);
    let mut out = header(events.iter().find(|e| e.is_start())?)?;
    let mut lines = Lines::default();
    for e in &events {
        if let Some(line) = lines.line(e) {
            out.push_str(&line);
        }
    }
    if truncated {
        let t = events.last().map(|e| e.t_ms as f64 / 1000.0).unwrap_or(0.0);
        let note = "recording cut short here: export it with `sallyport-relay recording export`";
        out.push_str(&serde_json::json!([t, "m", note]).to_string());
        out.push('\n');
    }
    Some(out)
}

/// Why [`export`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no recording of session {0} (its start was not reported)")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the recording out failed; the text says why.
    #[error("{0}")]
    Output(String),
}

/// Writes the recording of client session `session` to `out`, a line at a
/// time, whatever its size: one pass over the audit log notes where each
/// of the session's events is (24 bytes each), then the events are read
/// back one by one in the client's order. The same lines as [`asciicast`].
/// Blocking: call it from a blocking thread, never from async code.
pub fn export(
    audit: &AuditLog,
    session: &str,
    mut out: impl FnMut(&str) -> Result<(), String>,
) -> Result<(), ExportError> {
    let filter = Filter {
        session: Some(session.to_owned()),
        kind: Some("client".into()),
        ..Default::default()
    };
    // (client seq, audit seq, is the start)
    let mut index: Vec<(u64, u64, bool)> = Vec::new();
    audit.scan_blocking(&filter, |r| {
        if let Some(e) = CastEvent::of(session, &r) {
            index.push((e.seq, r.seq, e.is_start()));
        }
        ControlFlow::Continue(())
    })?;
    index.sort_by_key(|&(seq, _, _)| seq);
    let not_found = || ExportError::NotFound(session.to_owned());
    let &(_, start, _) = index.iter().find(|e| e.2).ok_or_else(not_found)?;
    let start = block_on(audit.get(start))?
        .and_then(|r| CastEvent::of(session, &r))
        .ok_or_else(not_found)?;
    out(&header(&start).ok_or_else(not_found)?).map_err(ExportError::Output)?;
    let mut lines = Lines::default();
    for (_, seq, _) in index {
        // Gone when retention dropped it meanwhile: the rest still plays.
        let Some(e) = block_on(audit.get(seq))?.and_then(|r| CastEvent::of(session, &r)) else {
            continue;
        };
        if let Some(line) = lines.line(&e) {
            out(&line).map_err(ExportError::Output)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_events_is_kept_whole() {
        let mut c = Utf8Carry::default();
        let euro = "€".as_bytes();
        assert_eq!(c.push(&[b'a', euro[0]]), "a");
        assert_eq!(c.push(&euro[1..]), "€");
        assert_eq!(c.push(&[0xff, b'b']), "\u{fffd}b");
        // A bad byte and a cut-off character in one event.
        assert_eq!(c.push(&[0xff, b'c', euro[0], euro[1]]), "\u{fffd}c");
        assert_eq!(c.push(&euro[2..]), "€");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_streamed_export_is_the_same_recording() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let euro = "€".as_bytes();
        let events = [
            (
                3,
                SessionEvent::Output {
                    data: b64(&euro[1..]),
                },
            ),
            (
                1,
                SessionEvent::Start {
                    service: "web1".into(),
                    principal: "alice".into(),
                    auth: "password".into(),
                    host_key: "SHA256:x".into(),
                    cols: 80,
                    rows: 24,
                },
            ),
            (
                2,
                SessionEvent::Output {
                    data: b64(&[b'$', euro[0]]),
                },
            ),
            (
                4,
                SessionEvent::Resize {
                    cols: 100,
                    rows: 30,
                },
            ),
        ];
        let batch: Vec<crate::audit::Event> = events
            .into_iter()
            .map(|(seq, event)| crate::audit::Event::Client {
                session: "s1".into(),
                seq,
                t_ms: seq * 10,
                user: "alice".into(),
                service: "web1".into(),
                stream: "st".into(),
                event,
            })
            .collect();
        log.append_client_events("alice", batch, u64::MAX)
            .await
            .unwrap();
        let records = log.list(&Filter::default(), 100).await.unwrap();
        let whole = asciicast("s1", &records, false).unwrap();
        assert!(whole.contains(r#"[0.03,"o","€"]"#), "{whole}");
        // The export blocks: the admin command runs it on a blocking thread.
        tokio::task::block_in_place(|| {
            let mut streamed = String::new();
            export(&log, "s1", |line| {
                streamed.push_str(line);
                Ok(())
            })
            .unwrap();
            assert_eq!(streamed, whole);
            assert!(matches!(
                export(&log, "s2", |_| Ok(())),
                Err(ExportError::NotFound(_))
            ));
        });
    }
}
