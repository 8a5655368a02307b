//! The recorder of one socket's client events: what the client reports
//! about its terminal session (only it sees the plaintext) goes to the
//! audit log in batches, one flush each, and only then is acknowledged.
//!
//! The pipe (`crate::pipe`) hands the recorder the client's event messages
//! and sends back the acknowledgements it gets; this file decides what is
//! kept. Three budgets bound what a client can make the relay store:
//! per socket ([`budget::SocketBudget`], checked as messages arrive), per
//! client session (in the log, [`budget::ClientSessionRecord`]), and the
//! terminal bytes reported against the bytes the stream carried
//! ([`CLIENT_EVENT_SLACK`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sallyport_proto::client::SessionEvent;

use super::{budget, AuditLog, ClientAppend, Event};
use crate::metrics::Metrics;
use crate::pipe::{Ack, ClientEvents, Consumer, EventLink, EventMessage};

/// Client events waiting for the disk, per session.
pub const EVENT_QUEUE: usize = 256;
/// Most client events written with one flush.
pub const EVENT_BATCH: usize = 64;
/// Terminal bytes a client may report beyond what its session carried:
/// events of an earlier session resent after a reconnect (the browser keeps
/// at most 4 MiB unacknowledged).
pub const CLIENT_EVENT_SLACK: u64 = 8 * 1024 * 1024;

/// What a client event counts against its socket's terminal budget (see
/// [`budget::terminal_charge`]).
fn terminal_bytes(event: &Event) -> u64 {
    match event {
        Event::Client { event, .. } => budget::terminal_charge(event),
        _ => 0,
    }
}

/// Who and what a session's client events are recorded as.
pub struct Recorder {
    /// Where the events go.
    pub audit: Arc<AuditLog>,
    /// Counts the keystroke events dropped unrecorded.
    pub metrics: Arc<Metrics>,
    /// The signed-in user whose socket it is (a client session id belongs
    /// to the first user who reported under it).
    pub user: String,
    /// The service the stream goes to.
    pub service: String,
    /// The relay's id of the stream (the client names its own session).
    pub stream: String,
    /// The policy records keystrokes for this service (`record_input`).
    pub record_input: bool,
    /// The live session's account, set from its client's `start` event once
    /// stored (the admin pages show it).
    pub seen: Arc<crate::live::Seen>,
}

impl Recorder {
    /// The recorder as the pipe takes it: the socket's budget checks each
    /// message as it arrives, the recorder stores them.
    pub fn into_client_events(
        self,
    ) -> ClientEvents<impl FnMut(&EventMessage) -> Result<(), String>, Self> {
        let mut socket_budget = budget::SocketBudget::default();
        ClientEvents {
            queue: EVENT_QUEUE,
            admit: move |m: &EventMessage| {
                socket_budget.charge(&m.session, &m.event).map_err(|e| {
                    tracing::warn!(reason = %e, "client events over the connection's budget; ending the session");
                    e.to_string()
                })
            },
            consumer: self,
        }
    }

    /// The audit event of a client's message.
    fn event(&self, m: EventMessage) -> Event {
        Event::Client {
            session: m.session,
            seq: m.seq,
            t_ms: m.t_ms,
            user: self.user.clone(),
            service: self.service.clone(),
            stream: self.stream.clone(),
            event: m.event,
        }
    }
}

impl Consumer for Recorder {
    /// Client events go to disk in batches (one flush each), then their
    /// acknowledgements go back down the socket.
    fn run(self, link: EventLink) -> impl std::future::Future<Output = ()> + Send {
        record(self, link)
    }
}

async fn record(recorder: Recorder, link: EventLink) {
    let EventLink {
        mut messages,
        acks,
        carried: relayed,
        end,
    } = link;
    let mut input_dropped = 0u64;
    // Terminal bytes the client reported, against what the session
    // carried: a client cannot fill the disk with made-up output.
    let mut reported = 0u64;
    // Carried bytes the stored terminal events have used; the rest
    // backs events to come (see `audit::budget`).
    let mut backed_used = 0u64;
    while let Some(first) = messages.recv().await {
        let mut batch = vec![recorder.event(first)];
        while batch.len() < EVENT_BATCH {
            match messages.try_recv() {
                Ok(m) => batch.push(recorder.event(m)),
                Err(_) => break,
            }
        }
        let dropped = drop_unrecorded_input(&mut batch, recorder.record_input, &recorder.metrics);
        input_dropped += dropped.len() as u64;
        reported += batch.iter().map(terminal_bytes).sum::<u64>();
        let carried = relayed.load(Ordering::Relaxed);
        if reported > carried + CLIENT_EVENT_SLACK {
            tracing::warn!(
                reported,
                carried,
                "client reported more terminal data than the session carried; ending it"
            );
            end.end();
            break;
        }
        let account = batch.iter().find_map(|e| match e {
            Event::Client {
                event: SessionEvent::Start { principal, .. },
                ..
            } => Some(principal.clone()),
            _ => None,
        });
        let backed = carried.saturating_sub(backed_used);
        let stored = recorder
            .audit
            .append_client_events(&recorder.user, batch, backed)
            .await;
        match stored {
            Ok(ClientAppend {
                refused: Some(e),
                refused_at,
                stored,
                ..
            }) => {
                tracing::warn!(reason = %e, "client event over its budget; ending the session");
                // What was stored, and the refused event, which never
                // will be: the client forgets them, so its next socket
                // does not meet the same refusal again. (Not the dropped
                // keystrokes: one may come after events not looked at.)
                acknowledge(&acks, stored.into_iter().chain(refused_at));
                end.end_with(e.to_string());
                break;
            }
            Ok(ClientAppend {
                stored,
                backed_used: used,
                ..
            }) => {
                backed_used += used;
                if let Some(account) = &account {
                    recorder.seen.set_account(account);
                }
                acknowledge(&acks, dropped.into_iter().chain(stored));
            }
            // Acknowledging anything after a batch that failed would
            // let the client forget it: end the session instead, and
            // the client sends everything unacknowledged on its next socket.
            Err(e) => {
                tracing::error!(error = %e, "audit log failed: client events not acknowledged; ending the session");
                end.end();
                break;
            }
        }
    }
    // A client still sending must not wait on a recorder that stopped.
    messages.close();
    drop(acks);
    if input_dropped > 0 {
        tracing::info!(
            input_dropped,
            "keystroke events not recorded: record_input is off for this service"
        );
    }
}

/// Acknowledges `(session, seq)` pairs: the last of each session's run
/// acknowledges the run. Never waits: a full queue or a finished socket
/// loses only an acknowledgement, and the client sends again.
fn acknowledge(
    acks: &tokio::sync::mpsc::Sender<Ack>,
    events: impl IntoIterator<Item = (String, u64)>,
) {
    let mut last: Vec<(String, u64)> = Vec::new();
    for (session, seq) in events {
        match last.iter_mut().find(|(s, _)| *s == session) {
            Some(entry) => entry.1 = entry.1.max(seq),
            None => last.push((session, seq)),
        }
    }
    for (session, seq) in last {
        let _ = acks.try_send(Ack { session, seq });
    }
}

/// Removes from `batch` the input events (keystrokes) of a service that does
/// not record them, counting them; returns their `(session, seq)`, which
/// are acknowledged like stored events (so the client forgets them) but
/// never reach the disk.
pub fn drop_unrecorded_input(
    batch: &mut Vec<Event>,
    record_input: bool,
    metrics: &Metrics,
) -> Vec<(String, u64)> {
    if record_input {
        return Vec::new();
    }
    let mut dropped = Vec::new();
    batch.retain(|e| match e {
        Event::Client {
            session,
            seq,
            event: SessionEvent::Input { .. },
            ..
        } => {
            dropped.push((session.clone(), *seq));
            false
        }
        _ => true,
    });
    Metrics::add(&metrics.input_events_dropped, dropped.len() as u64);
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(seq: u64, event: SessionEvent) -> Event {
        Event::Client {
            session: "s".into(),
            seq,
            t_ms: 0,
            user: "alice".into(),
            service: "box".into(),
            stream: "x".into(),
            event,
        }
    }

    #[test]
    fn keystrokes_are_dropped_unless_the_service_records_them() {
        let metrics = Metrics::default();
        let batch = || {
            vec![
                client(
                    1,
                    SessionEvent::Input {
                        data: "YQ==".into(),
                    },
                ),
                client(
                    2,
                    SessionEvent::Output {
                        data: "YQ==".into(),
                    },
                ),
            ]
        };
        let mut b = batch();
        assert_eq!(
            drop_unrecorded_input(&mut b, false, &metrics),
            [("s".to_string(), 1)]
        );
        assert_eq!(b.len(), 1);
        assert_eq!(metrics.input_events_dropped.get(), 1);
        let metrics = Metrics::default();
        let mut b = batch();
        assert!(drop_unrecorded_input(&mut b, true, &metrics).is_empty());
        assert_eq!(b.len(), 2);
    }
}
