//! The per-user and per-sign-in rules of the session WebSocket, kept out
//! of `ws.rs`: how many sessions a user may hold, and ending a sign-in's
//! sessions when it signs out. (Which client events are recorded at all is
//! the recorder's, `audit::recorder`.)

use axum::http::{HeaderMap, StatusCode};

use super::auth::{require_sign_in, sign_in_id};
use super::{ApiErr, AppState};
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
pub async fn acquire(
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
    require_sign_in(state, headers).await?;
    Ok(slot)
}

/// The reason a session ended on the relay's side, given to the client in
/// a `Control::Error` before the socket closes.
pub const SIGNED_OUT: &str = "signed out: this sign-in has ended; sign in again";
