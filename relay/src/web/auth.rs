//! Sign-in and finding the signed-in user of a request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sallyport_proto::client::{LoginRequest, LoginResponse, SIGN_IN_COOKIE};

use super::client_addr::ClientAddr;
use super::{ApiErr, AppState};
use crate::audit::Event;
use crate::identity::{IdentityError, SIGN_IN_TTL};
use crate::metrics::SignInMethod;
use crate::store::SignInRecord;

pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiErr> {
    let started = std::time::Instant::now();
    if !state.sso.password_sign_in() {
        return Err(ApiErr(
            StatusCode::FORBIDDEN,
            "password sign-in is turned off on this relay: sign in with single sign-on".into(),
        ));
    }
    let outcome = state
        .identity
        .sign_in(&req.user, &req.password, req.code.as_deref(), peer)
        .await;
    // On disk before the answer. Refusals by the rate limiter are not
    // recorded one by one (a flood would fill the log); metrics count them.
    let event = match &outcome {
        Ok((_, s)) => Some((true, s.second_factor, None)),
        Err(IdentityError::RateLimited(_) | IdentityError::Busy | IdentityError::Store(_)) => None,
        Err(IdentityError::CodeRequired) => None,
        Err(e) => Some((false, false, Some(e.to_string()))),
    };
    if let Some((ok, second_factor, reason)) = event {
        state
            .audit
            .append(&Event::SignIn {
                user: req.user.chars().take(64).collect(),
                ip: peer,
                ok,
                second_factor,
                reason,
            })
            .await?;
    }
    match outcome {
        Ok((token, sign_in)) => {
            state
                .metrics
                .sign_in(SignInMethod::Password, true, started.elapsed());
            tracing::info!(user = %sign_in.user, %peer, second_factor = sign_in.second_factor, "signed in");
            let cookie = sign_in_cookie(&token);
            let mut resp = Json(LoginResponse {
                user: sign_in.user,
                token,
                expires: sign_in.expires,
            })
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        Err(IdentityError::RateLimited(wait)) => {
            state
                .metrics
                .sign_in(SignInMethod::Password, false, started.elapsed());
            tracing::warn!(user = %req.user, %peer, "sign-in rate-limited");
            Err(ApiErr(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed sign-ins; try again in {wait} seconds"),
            ))
        }
        Err(IdentityError::Store(e)) => Err(e.into()),
        Err(e @ IdentityError::Busy) => Err(ApiErr(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e @ IdentityError::CodeRequired) => {
            Err(ApiErr(StatusCode::UNAUTHORIZED, e.to_string()))
        }
        Err(e @ IdentityError::Locked) => {
            state
                .metrics
                .sign_in(SignInMethod::Password, false, started.elapsed());
            tracing::warn!(user = %req.user, %peer, "sign-in refused: the account is locked");
            Err(ApiErr(StatusCode::FORBIDDEN, e.to_string()))
        }
        Err(
            e @ (IdentityError::BadCode | IdentityError::CodeReused | IdentityError::CodesLocked),
        ) => {
            state
                .metrics
                .sign_in(SignInMethod::Password, false, started.elapsed());
            tracing::warn!(user = %req.user, %peer, error = %e, "sign-in failed: second factor");
            Err(ApiErr(StatusCode::UNAUTHORIZED, e.to_string()))
        }
        Err(e) => {
            state
                .metrics
                .sign_in(SignInMethod::Password, false, started.elapsed());
            tracing::warn!(user = %req.user, %peer, error = %e, "sign-in failed");
            Err(ApiErr(
                StatusCode::UNAUTHORIZED,
                "wrong user name or password".into(),
            ))
        }
    }
}

/// The `Set-Cookie` value of a new sign-in's cookie.
pub(super) fn sign_in_cookie(token: &str) -> String {
    format!(
        "{SIGN_IN_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        SIGN_IN_TTL.as_secs()
    )
}

/// `POST /api/logout`: ends the sign-in of the request's cookie or bearer
/// token, and every session WebSocket opened with it, and clears the
/// cookie. Signing out twice is not an error.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiErr> {
    if let Some(token) = credential(&headers) {
        match state.identity.sign_out(token).await {
            Ok(Some(user)) => {
                // The record is gone first: a session opening now fails its
                // second check (see `session_limits::acquire`).
                let sessions = state
                    .live
                    .sign_out(&sallyport_common::hash::sha256_hex(token.as_bytes()));
                state
                    .audit
                    .append(&Event::SignOut {
                        user: user.clone(),
                        sign_ins: 1,
                        sessions,
                        by_admin: false,
                        by: Some(crate::audit::Actor::Web { user: user.clone() }),
                    })
                    .await?;
                tracing::info!(%user, sessions, "signed out");
            }
            Ok(None) => {}
            Err(IdentityError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(ApiErr(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let cookie = format!("{SIGN_IN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The bearer token (`Authorization: Bearer ...`) or sign-in cookie of a request.
pub(super) fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(str::trim);
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(SIGN_IN_COOKIE)?.strip_prefix('='))
}

/// The sign-in of a request: the SHA-256 (hex) of its credential, which is
/// the key of its record in the store (never the credential itself).
pub fn sign_in_id(headers: &HeaderMap) -> Option<crate::live::SignInId> {
    credential(headers).map(|t| sallyport_common::hash::sha256_hex(t.as_bytes()))
}

/// The sign-in of a request, or 401.
pub async fn require_sign_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<SignInRecord, ApiErr> {
    let unauthorized = || {
        ApiErr(
            StatusCode::UNAUTHORIZED,
            "sign in first (run `sallyport login`)".into(),
        )
    };
    let token = credential(headers).ok_or_else(unauthorized)?;
    match state.identity.sign_in_of(token).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(unauthorized()),
        Err(IdentityError::Store(e)) => Err(e.into()),
        Err(_) => Err(unauthorized()),
    }
}

/// The sign-in of an admin (a member of the `admin` group); 401
/// without a sign-in, 403 for anyone else.
pub async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::store::SignInRecord, ApiErr> {
    let sign_in = require_sign_in(state, headers).await?;
    let admin = state
        .store
        .user(&sign_in.user)
        .await?
        .is_some_and(|u| u.groups.iter().any(|g| g == crate::identity::ADMIN_GROUP));
    if !admin {
        tracing::warn!(user = %sign_in.user, "admin route refused: not an admin");
        return Err(ApiErr(
            StatusCode::FORBIDDEN,
            format!(
                "only admins (group {}) may use the admin pages, the audit log and recordings",
                crate::identity::ADMIN_GROUP
            ),
        ));
    }
    Ok(sign_in)
}
