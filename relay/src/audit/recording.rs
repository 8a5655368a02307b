//! Session recordings: the client events of one session, as asciicast v2
//! (<https://docs.asciinema.org/manual/asciicast/v2/>), which `asciinema
//! play` and asciinema-player replay.

use base64::Engine as _;
use sallyport_proto::client::SessionEvent;
use serde::Serialize;

use super::Record;

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

/// The recording of client session `session` from its audit records (in
/// any order; events are replayed in the client's order). `None` when the
/// records hold no start of that session. `truncated` adds a marker saying
/// the recording goes on beyond these records.
pub fn asciicast(session: &str, records: &[Record], truncated: bool) -> Option<String> {
    let mut events: Vec<(u64, u64, u64, SessionEvent, String, String)> = records
        .iter()
        .filter(|r| r.event.get("type").and_then(|t| t.as_str()) == Some("client"))
        .filter(|r| r.event.get("session").and_then(|s| s.as_str()) == Some(session))
        .filter_map(|r| {
            let e = &r.event;
            Some((
                e.get("seq")?.as_u64()?,
                e.get("t_ms")?.as_u64()?,
                r.at_ms,
                serde_json::from_value(e.get("event")?.clone()).ok()?,
                e.get("user")?.as_str()?.to_owned(),
                e.get("service")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    events.sort_by_key(|e| e.0);
    let (start_at_ms, width, height, principal, user, service) =
        events
            .iter()
            .find_map(|(_, t_ms, at_ms, e, user, service)| match e {
                SessionEvent::Start {
                    cols,
                    rows,
                    principal,
                    ..
                } => Some((
                    at_ms.saturating_sub(*t_ms),
                    *cols,
                    *rows,
                    principal.clone(),
                    user.clone(),
                    service.clone(),
                )),
                _ => None,
            })?;
    let header = Header {
        version: 2,
        width,
        height,
        timestamp: start_at_ms / 1000,
        title: format!("{user} as {principal} on {service}"),
        env: Env {
            term: "xterm-256color",
        },
    };
    let mut out = serde_json::to_string(&header).ok()?;
    out.push('\n');
    let (mut output, mut input) = (Utf8Carry::default(), Utf8Carry::default());
    let b64 = base64::engine::general_purpose::STANDARD;
    for (_, t_ms, _, event, _, _) in &events {
        let t = *t_ms as f64 / 1000.0;
        let line = match event {
            SessionEvent::Output { data } => {
                let text = output.push(&b64.decode(data).unwrap_or_default());
                (!text.is_empty()).then(|| serde_json::json!([t, "o", text]))
            }
            SessionEvent::Input { data } => {
                let text = input.push(&b64.decode(data).unwrap_or_default());
                (!text.is_empty()).then(|| serde_json::json!([t, "i", text]))
            }
            SessionEvent::Resize { cols, rows } => {
                Some(serde_json::json!([t, "r", format!("{cols}x{rows}")]))
            }
            SessionEvent::End { reason, .. } => Some(serde_json::json!([t, "m", reason])),
            SessionEvent::Start { .. } => None,
        };
        if let Some(line) = line {
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    if truncated {
        let t = events.last().map(|e| e.1 as f64 / 1000.0).unwrap_or(0.0);
        let note = "recording cut short here: export it with `sallyport-relay recording export`";
        out.push_str(&serde_json::json!([t, "m", note]).to_string());
        out.push('\n');
    }
    Some(out)
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
}
