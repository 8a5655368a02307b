//! The client's event reporter, without I/O: events in, numbered messages
//! out, the relay's acknowledgements in.
//!
//! Only the client sees the SSH session in plaintext, so it tells the relay
//! what happened ([`Control::Event`]) and the relay writes it to the audit
//! log and the recording. Nothing may be lost on the way, so delivery is at
//! least once: every message the [`Reporter`] produces is held in the page's
//! [`Outbox`] until the relay acknowledges it ([`Control::Ack`], cumulative
//! per session), sent again on every new WebSocket (a reconnect), and stored
//! once by the relay, which recognises a repeated `(session, seq)`.
//!
//! The browser glue ([`wasm`](crate::wasm)) drives this: it passes the
//! clock in, sends what comes out on the WebSocket, and feeds the relay's
//! acks back. Keeping the rules here lets them be tested natively
//! (`cargo test -p sallyport-client`), the way quinn-proto tests its
//! connection state machine without sockets.

use std::collections::VecDeque;

use base64::Engine as _;
use sallyport_proto::client::{Control, SessionEvent};
use sallyport_proto::limits::MAX_EVENT_DATA;

/// Above this many bytes of one session's events that the relay has not
/// acknowledged, the session stops reading output until the relay catches
/// up ([`Outbox::held_back`]); nothing is dropped.
pub const MAX_UNACKED_BYTES: usize = 4 * 1024 * 1024;

/// Output is reported at most this long (milliseconds) after it was shown:
/// the glue flushes gathered output this long after [`Gathered::StartTimer`].
pub const OUTPUT_GATHER_MS: u32 = 40;

/// One message held until the relay acknowledges it.
#[derive(Debug)]
struct Held {
    session: String,
    seq: u64,
    /// The [`Control::Event`] as sent on the WebSocket.
    text: String,
}

/// What the outbox knows of one session.
#[derive(Debug, Default)]
struct SessionState {
    /// The highest number this session has handed out: an ack above it
    /// names an event that was never sent.
    last_seq: u64,
    /// The highest number the relay has acknowledged.
    acked: u64,
    /// Bytes of text held for this session.
    unacked_bytes: usize,
}

/// Why an acknowledgement was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The relay acknowledged a number this page never sent: it is
    /// confused or lying, and forgetting on its word could lose events.
    #[error("the relay acknowledged event {seq} of session {session}, which was never sent")]
    NeverSent { session: String, seq: u64 },
}

/// Events every session of this page reported that the relay has not
/// acknowledged, oldest first. One per page, shared by its sessions, so a
/// session whose socket dropped gets its events through on the next
/// socket the page opens.
///
/// Its size is bounded by the sessions themselves: each stops reading
/// output while [`held_back`](Self::held_back) (above
/// [`MAX_UNACKED_BYTES`]).
#[derive(Debug, Default)]
pub struct Outbox {
    held: VecDeque<Held>,
    /// One small entry per terminal session this page ran (a handful: a
    /// list is smaller in the page's code than a hash map).
    sessions: Vec<(String, SessionState)>,
}

impl Outbox {
    /// Holds `text`, event `seq` of `session`, until it is acknowledged.
    /// Numbers of one session must go up by one ([`Reporter`] does that).
    fn state(&self, session: &str) -> Option<&SessionState> {
        self.sessions
            .iter()
            .find_map(|(s, state)| (s == session).then_some(state))
    }

    fn state_mut(&mut self, session: &str) -> Option<&mut SessionState> {
        self.sessions
            .iter_mut()
            .find_map(|(s, state)| (s == session).then_some(state))
    }

    fn hold(&mut self, session: &str, seq: u64, text: String) {
        if self.state(session).is_none() {
            self.sessions
                .push((session.to_owned(), SessionState::default()));
        }
        let Some(state) = self.state_mut(session) else {
            return;
        };
        debug_assert_eq!(seq, state.last_seq + 1, "events are numbered in order");
        state.last_seq = seq;
        state.unacked_bytes += text.len();
        self.held.push_back(Held {
            session: session.to_owned(),
            seq,
            text,
        });
    }

    /// The relay has every event of `session` up to `seq`: forgets them.
    /// Returns how many were forgotten; a duplicate or stale ack (at or
    /// below one already taken) forgets nothing and is not an error.
    ///
    /// # Errors
    /// [`AckError::NeverSent`] when `seq` is above the last number this
    /// page gave `session` (or the page never ran `session`): nothing is
    /// forgotten.
    pub fn ack(&mut self, session: &str, seq: u64) -> Result<usize, AckError> {
        let never_sent = || AckError::NeverSent {
            session: session.to_owned(),
            seq,
        };
        let state = self.state_mut(session).ok_or_else(never_sent)?;
        if seq > state.last_seq {
            return Err(never_sent());
        }
        if seq <= state.acked {
            return Ok(0);
        }
        state.acked = seq;
        let mut forgotten = 0;
        let mut freed = 0;
        self.held.retain(|h| {
            let keep = !(h.session == session && h.seq <= seq);
            if !keep {
                forgotten += 1;
                freed += h.text.len();
            }
            keep
        });
        if let Some(state) = self.state_mut(session) {
            state.unacked_bytes -= freed;
        }
        Ok(forgotten)
    }

    /// Everything held, oldest first: what to send again on a new socket.
    pub fn resend(&self) -> impl Iterator<Item = &str> {
        self.held.iter().map(|h| h.text.as_str())
    }

    /// Bytes of `session`'s events the relay has not acknowledged.
    pub fn unacked_bytes(&self, session: &str) -> usize {
        self.state(session).map_or(0, |s| s.unacked_bytes)
    }

    /// Whether any of `session`'s events wait for an acknowledgement.
    pub fn pending(&self, session: &str) -> bool {
        self.unacked_bytes(session) > 0
    }

    /// Whether `session` should stop reading output until the relay
    /// catches up: more than [`MAX_UNACKED_BYTES`] of it are held. Only
    /// the session's own events count, so one the relay will never take
    /// (signed out since) cannot stall another.
    pub fn held_back(&self, session: &str) -> bool {
        self.unacked_bytes(session) > MAX_UNACKED_BYTES
    }
}

/// What [`Reporter::gather_output`] asks of the glue.
#[derive(Debug, PartialEq, Eq)]
pub enum Gathered {
    /// The bytes wait with the others; a flush is already scheduled.
    Waiting,
    /// The first bytes of a burst: call [`Reporter::flush_output`] in
    /// [`OUTPUT_GATHER_MS`].
    StartTimer,
    /// A full event's worth was gathered: send these now (already held in
    /// the outbox).
    Send(Vec<String>),
}

/// Numbers and stamps one terminal session's events, and gathers its
/// output into events of at most [`MAX_EVENT_DATA`] bytes.
#[derive(Debug)]
pub struct Reporter {
    session: String,
    /// The last number handed out; events count from 1.
    seq: u64,
    /// The clock (milliseconds) at the first event, the shell's start.
    started: Option<f64>,
    /// Output gathered into one event: the bytes, and the time of the first.
    output: Vec<u8>,
    output_at: f64,
}

impl Reporter {
    /// A reporter for the terminal session `session` (its id in the
    /// relay's audit log and recording).
    pub fn new(session: String) -> Self {
        Self {
            session,
            seq: 0,
            started: None,
            output: Vec::new(),
            output_at: 0.0,
        }
    }

    /// The session's id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Reports `event`, which happened at `now` (milliseconds on a clock
    /// that never steps back). Gathered output goes first, so events stay
    /// in the order they happened. Returns the messages to send, oldest
    /// first; they are held in `outbox` whether or not the send works.
    pub fn report(&mut self, outbox: &mut Outbox, event: SessionEvent, now: f64) -> Vec<String> {
        let mut out = self.flush_output(outbox);
        out.push(self.number(outbox, event, now));
        out
    }

    /// Output the terminal showed at `now`. It is gathered for up to
    /// [`OUTPUT_GATHER_MS`] or [`MAX_EVENT_DATA`] bytes: one event per
    /// burst instead of one per SSH packet, which keeps a flood of output
    /// from doubling the page's work.
    pub fn gather_output(&mut self, outbox: &mut Outbox, bytes: &[u8], now: f64) -> Gathered {
        let first = self.output.is_empty();
        if first {
            self.output_at = now;
        }
        self.output.extend_from_slice(bytes);
        if self.output.len() >= MAX_EVENT_DATA {
            Gathered::Send(self.flush_output(outbox))
        } else if first && !bytes.is_empty() {
            Gathered::StartTimer
        } else {
            Gathered::Waiting
        }
    }

    /// The gathered output as events of at most [`MAX_EVENT_DATA`] bytes
    /// each, stamped with the time of its first byte. Empty when nothing
    /// was gathered (a timer that fires after a full flush).
    pub fn flush_output(&mut self, outbox: &mut Outbox) -> Vec<String> {
        let bytes = std::mem::take(&mut self.output);
        let at = self.output_at;
        bytes
            .chunks(MAX_EVENT_DATA)
            .map(|chunk| {
                let data = base64::engine::general_purpose::STANDARD.encode(chunk);
                self.number(outbox, SessionEvent::Output { data }, at)
            })
            .collect()
    }

    /// Gives `event` the next number and its time since the session
    /// started, and holds it in `outbox`.
    fn number(&mut self, outbox: &mut Outbox, mut event: SessionEvent, now: f64) -> String {
        let start = *self.started.get_or_insert(now);
        let t_ms = (now - start).max(0.0) as u64;
        if let SessionEvent::End { duration_ms, .. } = &mut event {
            *duration_ms = t_ms;
        }
        self.seq += 1;
        let text = Control::Event {
            session: self.session.clone(),
            seq: self.seq,
            t_ms,
            event,
        }
        .to_text();
        outbox.hold(&self.session, self.seq, text.clone());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resize(cols: u32) -> SessionEvent {
        SessionEvent::Resize { cols, rows: 24 }
    }

    /// The messages as the relay would parse them: (session, seq, t_ms, event).
    fn parse(texts: &[String]) -> Vec<(String, u64, u64, SessionEvent)> {
        texts
            .iter()
            .map(
                |t| match Control::parse(t).expect("a valid control message") {
                    Control::Event {
                        session,
                        seq,
                        t_ms,
                        event,
                    } => (session, seq, t_ms, event),
                    other => panic!("not an event: {other:?}"),
                },
            )
            .collect()
    }

    fn output_bytes(texts: &[String]) -> Vec<u8> {
        parse(texts)
            .into_iter()
            .flat_map(|(_, _, _, e)| match e {
                SessionEvent::Output { data } => base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .expect("base64"),
                other => panic!("not output: {other:?}"),
            })
            .collect()
    }

    fn seqs(outbox: &Outbox) -> Vec<u64> {
        parse(&outbox.resend().map(str::to_owned).collect::<Vec<_>>())
            .into_iter()
            .map(|(_, seq, _, _)| seq)
            .collect()
    }

    #[test]
    fn events_are_numbered_from_one_and_stamped_from_the_first() {
        let mut outbox = Outbox::default();
        let mut r = Reporter::new("abc".into());
        let mut sent = r.report(&mut outbox, resize(80), 1000.0);
        sent.extend(r.report(&mut outbox, resize(81), 1250.5));
        sent.extend(r.report(
            &mut outbox,
            SessionEvent::End {
                exit: Some(0),
                reason: "exit status 0".into(),
                bytes_in: 1,
                bytes_out: 2,
                duration_ms: 0,
            },
            3000.0,
        ));
        let got = parse(&sent);
        assert_eq!(
            got.iter().map(|e| (e.1, e.2)).collect::<Vec<_>>(),
            [(1, 0), (2, 250), (3, 2000)]
        );
        assert!(got.iter().all(|e| e.0 == "abc"));
        // The end says how long the session lasted, by the same clock.
        assert!(matches!(
            got[2].3,
            SessionEvent::End {
                duration_ms: 2000,
                ..
            }
        ));
        // A clock that stepped back still gives no negative time.
        let back = r.report(&mut outbox, resize(82), 10.0);
        assert_eq!(parse(&back)[0].2, 0);
    }

    #[test]
    fn output_is_gathered_into_events_of_at_most_max_event_data() {
        let mut outbox = Outbox::default();
        let mut r = Reporter::new("s".into());
        assert_eq!(
            r.gather_output(&mut outbox, b"hello ", 5.0),
            Gathered::StartTimer
        );
        assert_eq!(
            r.gather_output(&mut outbox, b"world", 9.0),
            Gathered::Waiting
        );
        assert!(!outbox.pending("s"), "gathered output is not sent yet");
        let sent = r.flush_output(&mut outbox);
        assert_eq!(sent.len(), 1, "one burst, one event");
        assert_eq!(output_bytes(&sent), b"hello world");
        assert!(
            r.flush_output(&mut outbox).is_empty(),
            "a late timer sends nothing"
        );

        // A flood: flushed as soon as a full event is there, in events that
        // each fit the limit, and not one byte lost or reordered.
        let flood: Vec<u8> = (0..(3 * MAX_EVENT_DATA + 123)).map(|i| i as u8).collect();
        let mut sent = Vec::new();
        for packet in flood.chunks(5000) {
            if let Gathered::Send(texts) = r.gather_output(&mut outbox, packet, 20.0) {
                sent.extend(texts);
            }
        }
        sent.extend(r.flush_output(&mut outbox));
        for (_, _, _, e) in parse(&sent) {
            let SessionEvent::Output { data } = e else {
                panic!("not output")
            };
            let len = base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("base64")
                .len();
            assert!((1..=MAX_EVENT_DATA).contains(&len), "{len} bytes");
        }
        assert_eq!(output_bytes(&sent), flood);
    }

    #[test]
    fn gathered_output_goes_before_the_next_event() {
        let mut outbox = Outbox::default();
        let mut r = Reporter::new("s".into());
        r.gather_output(&mut outbox, b"$ ", 100.0);
        let sent = parse(&r.report(&mut outbox, resize(100), 130.0));
        assert!(matches!(sent[0], (_, 1, 0, SessionEvent::Output { .. })));
        assert!(matches!(sent[1], (_, 2, 30, SessionEvent::Resize { .. })));
    }

    #[test]
    fn every_event_is_acknowledged_or_still_held() {
        let mut outbox = Outbox::default();
        let mut r = Reporter::new("s".into());
        let mut acked = 0;
        for i in 1..=50u64 {
            r.report(&mut outbox, resize(i as u32), i as f64);
            if i % 7 == 0 {
                // The relay acknowledges up to some event it has on disk.
                outbox.ack("s", i - 3).expect("a sent number");
                acked = i - 3;
            }
            let held = seqs(&outbox);
            let expected: Vec<u64> = (acked + 1..=i).collect();
            assert_eq!(held, expected, "after event {i}");
        }
        assert_eq!(outbox.ack("s", 50), Ok(4), "47..=50");
        assert!(!outbox.pending("s"));
        assert_eq!(outbox.unacked_bytes("s"), 0);
    }

    #[test]
    fn a_reconnect_resends_exactly_the_unacknowledged_in_order() {
        let mut outbox = Outbox::default();
        let mut a = Reporter::new("a".into());
        let mut b = Reporter::new("b".into());
        // Two sessions of one page, their events interleaved: a1 b1 a2 b2 ...
        let mut sent = Vec::new();
        for i in 0..5 {
            sent.extend(a.report(&mut outbox, resize(i), f64::from(i)));
            sent.extend(b.report(&mut outbox, resize(i), f64::from(i)));
        }
        outbox.ack("a", 2).expect("a sent number");
        outbox.ack("b", 4).expect("a sent number");
        // The socket drops; on the next one the page sends what is held,
        // byte for byte as first sent, oldest first across sessions.
        let again: Vec<&str> = outbox.resend().collect();
        let expected: Vec<&str> = sent
            .iter()
            .zip(parse(&sent))
            .filter(|(_, (s, seq, _, _))| *seq > if s == "a" { 2 } else { 4 })
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(again, expected);
        assert_eq!(again.len(), 4, "a3 a4 a5 b5");
        // Numbering carries on after the reconnect; nothing is renumbered.
        let next = parse(&a.report(&mut outbox, resize(9), 9.0));
        assert_eq!(next[0].1, 6);
    }

    #[test]
    fn the_unacknowledged_bytes_cap_holds_the_session_back_and_drops_nothing() {
        let mut outbox = Outbox::default();
        let mut r = Reporter::new("s".into());
        let mut other = Reporter::new("other".into());
        other.report(&mut outbox, resize(1), 0.0);
        let packet = vec![b'x'; MAX_EVENT_DATA];
        let mut reported = 0u64;
        while !outbox.held_back("s") {
            let Gathered::Send(texts) = r.gather_output(&mut outbox, &packet, 0.0) else {
                panic!("a full event is sent at once")
            };
            reported += texts.len() as u64;
            assert!(reported < 1000, "the cap is reached");
        }
        assert!(outbox.unacked_bytes("s") > MAX_UNACKED_BYTES);
        // Held back, but every event is still there to be sent again.
        assert_eq!(seqs(&outbox).len() as u64, reported + 1);
        // One session at the cap does not hold back another.
        assert!(!outbox.held_back("other"));
        // The relay catches up: the session may go on.
        outbox.ack("s", reported / 2).expect("a sent number");
        assert!(!outbox.held_back("s"));
        assert_eq!(seqs(&outbox).len() as u64, reported - reported / 2 + 1);
    }

    #[test]
    fn duplicate_and_stale_acks_change_nothing() {
        let mut outbox = Outbox::default();
        let mut r = Reporter::new("s".into());
        for i in 0..6 {
            r.report(&mut outbox, resize(i), 0.0);
        }
        assert_eq!(outbox.ack("s", 4), Ok(4));
        let bytes = outbox.unacked_bytes("s");
        assert_eq!(outbox.ack("s", 4), Ok(0), "duplicate");
        assert_eq!(outbox.ack("s", 2), Ok(0), "stale, arrived late");
        assert_eq!(outbox.ack("s", 0), Ok(0));
        assert_eq!(seqs(&outbox), [5, 6]);
        assert_eq!(outbox.unacked_bytes("s"), bytes);
    }

    #[test]
    fn an_ack_for_an_event_never_sent_is_rejected() {
        let mut outbox = Outbox::default();
        let mut r = Reporter::new("s".into());
        for i in 0..3 {
            r.report(&mut outbox, resize(i), 0.0);
        }
        let lie = outbox.ack("s", 4);
        assert_eq!(
            lie,
            Err(AckError::NeverSent {
                session: "s".into(),
                seq: 4
            })
        );
        assert_eq!(seqs(&outbox), [1, 2, 3], "nothing forgotten on its word");
        assert!(outbox.ack("nobody", 1).is_err(), "a session never run");
        // Events gathered but not yet numbered cannot be acknowledged either.
        r.gather_output(&mut outbox, b"pending", 0.0);
        assert!(outbox.ack("s", 4).is_err());
        assert_eq!(outbox.ack("s", 3), Ok(3));
    }
}
