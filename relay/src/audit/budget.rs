//! What a client may report about one session (client session id): every
//! event it sends counts against a budget, so a client cannot fill the
//! audit log with made-up events.
//!
//! - Session events that are not terminal data (`start`, `resize`, `end`)
//!   count against [`MAX_CONTROL_EVENTS_PER_SESSION`] and
//!   [`MAX_CONTROL_EVENT_BYTES_PER_SESSION`]; a session has one `start`
//!   and one `end` ([`MAX_STARTS_PER_SESSION`], [`MAX_ENDS_PER_SESSION`]).
//!   These counts are kept in the audit log's record of the session id
//!   (tree `audit_client_sessions`, beside its owner), so they survive a new
//!   socket for the same id and a restart of the relay.
//! - Terminal data (`output`, `input`) is bounded by what the sockets
//!   carried, each event charged at least [`TERMINAL_EVENT_MIN_CHARGE`]
//!   bytes, so a flood of tiny events costs as much as the traffic it
//!   claims to describe: per socket (see `web/ws.rs`), and per session id,
//!   whose events stored beyond what their sockets carried may add up to
//!   [`MAX_UNBACKED_TERMINAL_BYTES_PER_SESSION`] however many sockets send
//!   them.
//!
//! An event over a budget is refused (not stored, not acknowledged) and
//! the relay ends the socket with the reason.

use sallyport_proto::client::SessionEvent;
use serde::{Deserialize, Serialize};

/// `start` events stored per client session id.
pub const MAX_STARTS_PER_SESSION: u64 = 1;
/// `end` events stored per client session id.
pub const MAX_ENDS_PER_SESSION: u64 = 1;
/// Events other than terminal data (`start`, `resize`, `end`) stored per
/// client session id: a person resizing their window every minute for
/// two days stays well below it.
pub const MAX_CONTROL_EVENTS_PER_SESSION: u64 = 4096;
/// Bytes (as JSON) of those events per client session id: a `resize` is
/// about 40 bytes, a `start` at most about 1.2 KiB.
pub const MAX_CONTROL_EVENT_BYTES_PER_SESSION: u64 = 256 * 1024;
/// Terminal bytes of one client session id stored beyond what the sockets
/// that sent them carried: events resent on a later socket after a
/// reconnect (the browser keeps at most 4 MiB unacknowledged, and each
/// event is stored, and charged, once).
pub const MAX_UNBACKED_TERMINAL_BYTES_PER_SESSION: u64 = 8 * 1024 * 1024;
/// Least a terminal data event counts against its socket's budget, in
/// bytes, however little data it carries: one keystroke travels as an SSH
/// packet of at least 36 bytes, so a real client never pays more than it
/// carried, and an event of one byte cannot cost the log 300 for free.
pub const TERMINAL_EVENT_MIN_CHARGE: u64 = 32;

/// Client session ids one socket may report events for: its own session
/// and the earlier sessions of the same page whose events it resends
/// after a reconnect. Without it, a client could give every event a new
/// id, each with a fresh budget.
pub const MAX_SESSION_IDS_PER_SOCKET: usize = 8;
/// `start`, `resize` and `end` events one socket may report, whatever
/// their session ids: the per-id budget, once per socket.
pub const MAX_CONTROL_EVENTS_PER_SOCKET: u64 = MAX_CONTROL_EVENTS_PER_SESSION;

/// What one socket has reported so far, against the per-socket budgets
/// ([`MAX_SESSION_IDS_PER_SOCKET`], [`MAX_CONTROL_EVENTS_PER_SOCKET`]).
#[derive(Debug, Default)]
pub struct SocketBudget {
    ids: Vec<String>,
    control_events: u64,
}

impl SocketBudget {
    /// Counts an event of client session `session`; on refusal the socket
    /// ends with the reason.
    pub fn charge(&mut self, session: &str, event: &SessionEvent) -> Result<(), BudgetExceeded> {
        if !self.ids.iter().any(|s| s == session) {
            if self.ids.len() >= MAX_SESSION_IDS_PER_SOCKET {
                return Err(BudgetExceeded::SessionIds);
            }
            self.ids.push(session.to_owned());
        }
        if terminal_charge(event) == 0 {
            if self.control_events >= MAX_CONTROL_EVENTS_PER_SOCKET {
                return Err(BudgetExceeded::SocketControlEvents);
            }
            self.control_events += 1;
        }
        Ok(())
    }
}

/// The audit log's record of a client session id: whose it is and what
/// it has reported so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSessionRecord {
    /// The user whose session it is; events from anyone else are refused.
    pub user: String,
    #[serde(default)]
    pub starts: u64,
    #[serde(default)]
    pub ends: u64,
    /// `start`, `resize` and `end` events stored.
    #[serde(default)]
    pub control_events: u64,
    /// Their size as JSON.
    #[serde(default)]
    pub control_bytes: u64,
    /// Terminal bytes stored beyond what their sockets carried.
    #[serde(default)]
    pub unbacked_terminal_bytes: u64,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExceeded {
    #[error("session {session} already reported its start; a session has one")]
    SecondStart { session: String },
    #[error("session {session} already reported its end; a session has one")]
    SecondEnd { session: String },
    #[error("session {session} reported more than {MAX_CONTROL_EVENTS_PER_SESSION} start, resize and end events, the most a session may; the relay ended it")]
    ControlEvents { session: String },
    #[error("session {session} reported more than {MAX_CONTROL_EVENT_BYTES_PER_SESSION} bytes of start, resize and end events, the most a session may; the relay ended it")]
    ControlBytes { session: String },
    #[error("session {session} reported {MAX_UNBACKED_TERMINAL_BYTES_PER_SESSION} bytes more terminal data than its connections carried; the relay ended it")]
    Unbacked { session: String },
    #[error("one connection reported events of more than {MAX_SESSION_IDS_PER_SOCKET} sessions, the most it may; the relay ended it")]
    SessionIds,
    #[error("one connection reported more than {MAX_CONTROL_EVENTS_PER_SOCKET} start, resize and end events, the most it may; the relay ended it")]
    SocketControlEvents,
}

impl ClientSessionRecord {
    /// A stored record; records of older relays hold the user name alone.
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_else(|_| Self {
            user: String::from_utf8_lossy(bytes).into_owned(),
            ..Default::default()
        })
    }

    /// Counts `event` of session `session` against the budgets; on refusal
    /// nothing is counted. `backed` is what the sending socket carried and
    /// no stored event has used yet: a terminal event uses it first, and
    /// what it lacks counts as unbacked.
    pub fn charge(
        &mut self,
        session: &str,
        event: &SessionEvent,
        backed: &mut u64,
    ) -> Result<(), BudgetExceeded> {
        let session = || session.to_owned();
        let (starts, ends) = match event {
            SessionEvent::Output { .. } | SessionEvent::Input { .. } => {
                let cost = terminal_charge(event);
                let from_backed = cost.min(*backed);
                let unbacked = self.unbacked_terminal_bytes + (cost - from_backed);
                if unbacked > MAX_UNBACKED_TERMINAL_BYTES_PER_SESSION {
                    return Err(BudgetExceeded::Unbacked { session: session() });
                }
                *backed -= from_backed;
                self.unbacked_terminal_bytes = unbacked;
                return Ok(());
            }
            SessionEvent::Start { .. } => (1, 0),
            SessionEvent::End { .. } => (0, 1),
            SessionEvent::Resize { .. } => (0, 0),
        };
        if self.starts + starts > MAX_STARTS_PER_SESSION {
            return Err(BudgetExceeded::SecondStart { session: session() });
        }
        if self.ends + ends > MAX_ENDS_PER_SESSION {
            return Err(BudgetExceeded::SecondEnd { session: session() });
        }
        if self.control_events + 1 > MAX_CONTROL_EVENTS_PER_SESSION {
            return Err(BudgetExceeded::ControlEvents { session: session() });
        }
        let bytes = serde_json::to_vec(event)
            .map(|v| v.len() as u64)
            .unwrap_or(0);
        if self.control_bytes + bytes > MAX_CONTROL_EVENT_BYTES_PER_SESSION {
            return Err(BudgetExceeded::ControlBytes { session: session() });
        }
        self.starts += starts;
        self.ends += ends;
        self.control_events += 1;
        self.control_bytes += bytes;
        Ok(())
    }
}

/// What a terminal data event counts against its socket's budget: its
/// decoded bytes, at least [`TERMINAL_EVENT_MIN_CHARGE`]; other events 0.
pub fn terminal_charge(event: &SessionEvent) -> u64 {
    match event {
        SessionEvent::Output { data } | SessionEvent::Input { data } => {
            (data.len() as u64 / 4 * 3).max(TERMINAL_EVENT_MIN_CHARGE)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> SessionEvent {
        SessionEvent::Start {
            service: "box".into(),
            principal: "alice".into(),
            auth: "password".into(),
            host_key: "SHA256:x".into(),
            cols: 80,
            rows: 24,
        }
    }

    fn end() -> SessionEvent {
        SessionEvent::End {
            exit: Some(0),
            reason: "exit status 0".into(),
            bytes_in: 1,
            bytes_out: 2,
            duration_ms: 3,
        }
    }

    #[test]
    fn a_socket_cannot_give_each_event_a_session_id_of_its_own() {
        let mut b = SocketBudget::default();
        for i in 0..MAX_SESSION_IDS_PER_SOCKET {
            b.charge(&format!("s{i}"), &start()).unwrap();
        }
        b.charge("s0", &end()).unwrap();
        assert_eq!(
            b.charge("one-more", &start()),
            Err(BudgetExceeded::SessionIds)
        );
        let resize = SessionEvent::Resize { cols: 1, rows: 1 };
        let mut b = SocketBudget::default();
        for _ in 0..MAX_CONTROL_EVENTS_PER_SOCKET {
            b.charge("s", &resize).unwrap();
        }
        assert_eq!(
            b.charge("s", &resize),
            Err(BudgetExceeded::SocketControlEvents)
        );
        let output = SessionEvent::Output {
            data: "AAAA".into(),
        };
        assert!(
            b.charge("s", &output).is_ok(),
            "terminal data has its own budget"
        );
    }

    #[test]
    fn one_start_one_end_and_a_bounded_number_of_resizes() {
        let mut r = ClientSessionRecord::decode(b"alice");
        assert_eq!(r.user, "alice", "a record of an older relay");
        r.charge("s", &start(), &mut 0).unwrap();
        assert!(matches!(
            r.charge("s", &start(), &mut 0),
            Err(BudgetExceeded::SecondStart { .. })
        ));
        let resize = SessionEvent::Resize { cols: 1, rows: 1 };
        for _ in 1..MAX_CONTROL_EVENTS_PER_SESSION - 1 {
            r.charge("s", &resize, &mut 0).unwrap();
        }
        r.charge("s", &end(), &mut 0).unwrap();
        assert!(matches!(
            r.charge("s", &end(), &mut 0),
            Err(BudgetExceeded::SecondEnd { .. })
        ));
        assert!(matches!(
            r.charge("s", &resize, &mut 0),
            Err(BudgetExceeded::ControlEvents { .. })
        ));
        assert_eq!(r.control_events, MAX_CONTROL_EVENTS_PER_SESSION);
        // Terminal data has budgets of its own: what the socket carried
        // first, then up to MAX_UNBACKED_TERMINAL_BYTES_PER_SESSION.
        let output = |n: usize| SessionEvent::Output {
            data: "AAAA".repeat(n / 3),
        };
        let mut backed = 3000;
        r.charge("s", &output(3000), &mut backed).unwrap();
        assert_eq!((backed, r.unbacked_terminal_bytes), (0, 0));
        r.charge("s", &output(3000), &mut backed).unwrap();
        assert_eq!(r.unbacked_terminal_bytes, 3000);
        let big = output(MAX_UNBACKED_TERMINAL_BYTES_PER_SESSION as usize);
        assert!(matches!(
            r.charge("s", &big, &mut backed),
            Err(BudgetExceeded::Unbacked { .. })
        ));
        assert_eq!(r.unbacked_terminal_bytes, 3000, "a refusal counts nothing");
        let again = ClientSessionRecord::decode(&serde_json::to_vec(&r).unwrap());
        assert_eq!(
            again, r,
            "the counts survive a round trip through the store"
        );
    }

    #[test]
    fn bytes_count_too() {
        let mut r = ClientSessionRecord {
            control_bytes: MAX_CONTROL_EVENT_BYTES_PER_SESSION - 10,
            ..Default::default()
        };
        assert!(matches!(
            r.charge(
                "s",
                &SessionEvent::Resize {
                    cols: 100,
                    rows: 30
                },
                &mut 0
            ),
            Err(BudgetExceeded::ControlBytes { .. })
        ));
        assert_eq!(
            terminal_charge(&SessionEvent::Input {
                data: "YQ==".into()
            }),
            TERMINAL_EVENT_MIN_CHARGE
        );
    }
}
