//! The per-user and per-sign-in rules of the session WebSocket, kept out
//! of `ws.rs`'s byte pumping: how many sessions a user may hold, ending a
//! sign-in's sessions when it signs out, and which client events are
//! recorded at all.

use axum::http::{HeaderMap, StatusCode};
use sallyport_proto::client::SessionEvent;

use super::auth::{require_session, sign_in_id};
use super::{ApiErr, AppState};
use crate::audit::Event;
use crate::live::SessionSlot;
use crate::metrics::Metrics;
use crate::policy::Policy;

/// Counts a new session of `user` to `service` before its stream opens.
/// Two caps apply, and over either it is a 429 with the reason:
/// - all of the user's sessions: `--max-sessions-per-user`;
/// - the user's sessions to this service: the service's policy value
///   (`max_sessions_per_user` in its table) if it sets one, else
///   `--max-sessions-per-user-per-service`.
///
/// The slot ends with the pipe (it is dropped with it).
pub fn acquire(
    state: &AppState,
    headers: &HeaderMap,
    policy: &Policy,
    user: &str,
    service: &str,
) -> Result<SessionSlot, ApiErr> {
    let sign_in = sign_in_id(headers).unwrap_or_default();
    let per_user = state.max_sessions_per_user;
    let per_service = policy
        .max_sessions_per_user(service)
        .unwrap_or(state.max_sessions_per_user_per_service);
    let slot = state
        .live
        .try_acquire(user, service, &sign_in, per_user, per_service)
        .map_err(|e| {
            Metrics::add(&state.metrics.sessions_refused, 1);
            tracing::warn!(%user, %service, reason = %e, "session refused: too many open");
            ApiErr(StatusCode::TOO_MANY_REQUESTS, e.to_string())
        })?;
    // Signed out between the first check and the slot: the sign-out did
    // not see this slot, so refuse here.
    require_session(state, headers)?;
    Ok(slot)
}

/// The reason a session ended on the relay's side, given to the client in
/// a `Control::Error` before the socket closes.
pub const SIGNED_OUT: &str = "signed out: this sign-in has ended; sign in again";

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
        assert_eq!(metrics.input_events_dropped.into_inner(), 1);
        let metrics = Metrics::default();
        let mut b = batch();
        assert!(drop_unrecorded_input(&mut b, true, &metrics).is_empty());
        assert_eq!(b.len(), 2);
    }
}
