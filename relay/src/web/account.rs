//! A signed-in user's own account: setting up one-time codes (TOTP) from
//! the browser. The new secret is pending until a code from it is
//! confirmed, so a mistyped scan never locks anyone out. Turning codes on
//! or replacing them needs the password again; replacing codes that are
//! already on needs a current code as well. Changing the password needs
//! the current one. Each change is an audit event by the user.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use sallyport_proto::client::{TotpConfirmRequest, TotpSetupRequest, TotpSetupResponse};

use super::auth::require_sign_in;
use super::client_addr::ClientAddr;
use super::{ApiErr, AppState};
use crate::admin::META_PUBLIC_URL;
use crate::audit::{Actor, Event};
use crate::identity::IdentityError;
use crate::totp;

fn identity_err(e: IdentityError) -> ApiErr {
    match e {
        IdentityError::Store(e) => e.into(),
        e @ IdentityError::RateLimited(_) => ApiErr(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        e @ (IdentityError::CodeRequired
        | IdentityError::BadCode
        | IdentityError::CodeReused
        | IdentityError::CodesLocked
        | IdentityError::PasswordRequired
        | IdentityError::WrongPassword) => ApiErr(StatusCode::FORBIDDEN, e.to_string()),
        e => ApiErr(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `POST /api/totp/setup`: a new pending secret, as URI and QR code.
pub async fn setup(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Json(req): Json<TotpSetupRequest>,
) -> Result<Json<TotpSetupResponse>, ApiErr> {
    let user = require_sign_in(&state, &headers).await?.user;
    // Who holds the session must also know the password (see TotpSetupRequest).
    state
        .identity
        .confirm_password(&user, &req.password, peer)
        .await
        .map_err(identity_err)?;
    let secret = state
        .identity
        .start_totp_setup(&user, req.code.as_deref(), peer)
        .await
        .map_err(identity_err)?;
    let issuer = match state.store.meta(META_PUBLIC_URL).await? {
        Some(url) => format!("Sallyport {}", url.trim_start_matches("https://")),
        None => "Sallyport".into(),
    };
    let uri = totp::otpauth_uri(&issuer, &user, &secret);
    let svg = totp::qr_svg(&uri).map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    tracing::info!(%user, "one-time code set-up started");
    Ok(Json(TotpSetupResponse {
        uri,
        qr: format!(
            "data:image/svg+xml;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(svg)
        ),
    }))
}

/// `POST /api/totp/confirm`: a code from the pending secret puts it in force.
pub async fn confirm(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(req): Json<TotpConfirmRequest>,
) -> Result<Response, ApiErr> {
    let user = require_sign_in(&state, &headers).await?.user;
    let replaced = state
        .store
        .user(&user)
        .await?
        .is_some_and(|u| u.totp_secret.is_some());
    state
        .identity
        .confirm_totp_setup(&user, &req.code)
        .await
        .map_err(identity_err)?;
    state
        .audit
        .append(&Event::TotpEnrolled {
            user: user.clone(),
            replaced,
            by: Actor::Web { user: user.clone() },
        })
        .await?;
    tracing::info!(%user, "one-time codes turned on");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Body of `POST /api/password`.
#[derive(serde::Deserialize)]
pub struct PasswordChangeRequest {
    /// The password now: whoever holds the session must know it.
    pub current: String,
    /// The password from now on (1 to `identity::MAX_PASSWORD_LEN` bytes).
    pub new: String,
}

/// `POST /api/password`: the signed-in user changes their own password.
/// A wrong or missing current password is 403 and counts like a failed
/// sign-in. The user's sign-ins stay.
pub async fn change_password(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Json(req): Json<PasswordChangeRequest>,
) -> Result<Response, ApiErr> {
    let user = require_sign_in(&state, &headers).await?.user;
    state
        .identity
        .change_password(&user, &req.current, &req.new, peer)
        .await
        .map_err(identity_err)?;
    state
        .audit
        .append(&Event::PasswordChanged {
            user: user.clone(),
            by: Actor::Web { user: user.clone() },
        })
        .await?;
    tracing::info!(%user, "password changed by its user");
    Ok(StatusCode::NO_CONTENT.into_response())
}
