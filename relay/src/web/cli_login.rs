//! The CLI's browser sign-in (`sallyport login`, like `tsh login`): the
//! CLI listens on a loopback port and opens [`CLI_LOGIN_PATH`] in the
//! browser; a browser that is signed in (by password, or by single sign-on:
//! this route only needs *a* sign-in) is redirected to the CLI with a
//! one-time code, which the CLI exchanges over HTTPS at [`CLI_TOKEN_PATH`]
//! for a bearer token of its own.
//!
//! A signed-in browser is asked first ("sign the command-line client on
//! this computer in as alice?"): without that, any page could send a
//! signed-in person's browser to this route with a port and challenge of
//! someone else's making, and a listener on that person's machine would get
//! their sign-in. The Continue link carries a `confirm` value derived from
//! the browser's own credential (an HttpOnly cookie), which another site
//! can neither read nor compute.
//!
//! Why a code and not the token: the redirect URL passes through the
//! browser's history and the loopback listener, so what it carries must be
//! worthless on its own. The code lives [`CODE_TTL`], works once, and only
//! with the verifier whose SHA-256 the CLI put in the sign-in URL
//! (RFC 7636's idea), which never leaves the CLI. The redirect target is
//! built here, never taken from the request: always
//! `http://127.0.0.1:PORT/callback` (RFC 8252 §7.3, loopback only), so the
//! route cannot be used to send a code anywhere else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use sallyport_common::hash::sha256_hex;
use sallyport_common::secret::random_secret;
use sallyport_proto::client::{CliTokenRequest, LoginResponse, CLI_LOGIN_PATH, CLI_TOKEN_PATH};
use serde::Deserialize;

use super::auth::{credential, require_sign_in};
use super::client_addr::ClientAddr;
use super::pages::{escape, server_page};
use super::{ApiErr, AppState};
use crate::audit::Event;
use crate::identity::IdentityError;
use crate::metrics::Metrics;

/// How long a code is good for after the redirect: the CLI exchanges it at
/// once, so a minute is plenty even on a slow machine.
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// Most codes waiting for their exchange at once; more sign-ins are
/// refused (503) until some are used or expire, so a signed-in browser
/// reloading the page cannot grow the table without bound.
pub const MAX_PENDING_CODES: usize = 256;
/// Shortest and longest `state` accepted (the CLI sends 43 characters).
pub const STATE_LEN: std::ops::RangeInclusive<usize> = 16..=128;

/// The routes of the CLI's browser sign-in, with their table of codes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(CLI_LOGIN_PATH, get(start))
        .route(CLI_TOKEN_PATH, post(exchange))
        .layer(Extension(Arc::new(PendingCodes::default())))
}

/// A code handed to a CLI, waiting for its exchange.
struct Pending {
    user: String,
    /// The browser's sign-in credential: the exchange fails if that
    /// sign-in has ended in the meantime (signed out, or by an admin).
    browser_token: String,
    second_factor: bool,
    /// SHA-256 (hex) of the CLI's verifier.
    challenge: String,
    expires: Instant,
}

/// Codes by value, bounded by [`MAX_PENDING_CODES`].
#[derive(Default)]
struct PendingCodes(Mutex<HashMap<String, Pending>>);

impl PendingCodes {
    /// Stores `pending` under a fresh code; `None` when the table is full.
    fn insert(&self, pending: Pending) -> Option<String> {
        let mut codes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        codes.retain(|_, p| p.expires > now);
        if codes.len() >= MAX_PENDING_CODES {
            return None;
        }
        let code = random_secret(32);
        codes.insert(code.clone(), pending);
        Some(code)
    }

    /// Removes `code` (it works once, right or wrong) and returns what it
    /// stood for, unless it has expired.
    fn take(&self, code: &str) -> Option<Pending> {
        let mut codes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        codes.remove(code).filter(|p| p.expires > Instant::now())
    }
}

/// The query of [`CLI_LOGIN_PATH`].
#[derive(Deserialize)]
struct StartQuery {
    /// The CLI's loopback port.
    port: u16,
    /// The CLI's random value, echoed back so it knows the answer is to its own request.
    state: String,
    /// SHA-256 (hex, lowercase) of the CLI's verifier.
    challenge: String,
    /// The person said yes: [`confirmation`] of this browser's credential.
    #[serde(default)]
    confirm: Option<String>,
}

/// The value of the Continue link for this browser's `credential` and this
/// request: SHA-256 over both, so it is worthless to another browser and
/// for another port, state or challenge.
fn confirmation(credential: &str, q: &StartQuery) -> String {
    sha256_hex(
        format!(
            "sallyport cli-login confirm\0{credential}\0{}\0{}\0{}",
            q.port, q.state, q.challenge
        )
        .as_bytes(),
    )
}

/// The page that asks before a signed-in browser hands a sign-in to the
/// CLI. `user` is a checked user name and the link holds URL-safe
/// characters only; both are escaped all the same.
fn confirm_page(user: &str, link: &str) -> Response {
    let body = format!(
        "<h1 class=\"brand\">Sallyport</h1>\
         <p>Sign the <code>sallyport</code> command on this computer in as <strong id=\"user\">{}</strong>?</p>\
         <p>Continue only if you just ran <code>sallyport login</code>.</p>\
         <p><a id=\"confirm\" href=\"{}\">Continue</a> · <a id=\"cancel\" href=\"/services\">Cancel</a></p>",
        escape(user),
        escape(link)
    );
    let html = server_page("Sign in the command line", "", &body);
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn url_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /cli/login?port=P&state=S&challenge=C[&confirm=X]`: not signed
/// in, to the sign-in page (which comes back here); signed in, a page that
/// asks whether to go on; confirmed (`X` right for this browser), a code
/// for the CLI and a redirect to it on loopback.
async fn start(
    State(state): State<Arc<AppState>>,
    Extension(codes): Extension<Arc<PendingCodes>>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Result<Response, ApiErr> {
    let bad = |what: &str| {
        ApiErr(
            StatusCode::BAD_REQUEST,
            format!("this CLI sign-in link has a bad {what}; run `sallyport login` again"),
        )
    };
    if q.port == 0 {
        return Err(bad("port"));
    }
    if !STATE_LEN.contains(&q.state.len()) || !url_safe(&q.state) {
        return Err(bad("state"));
    }
    if q.challenge.len() != 64
        || !q
            .challenge
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("challenge"));
    }
    let sign_in = match require_sign_in(&state, &headers).await {
        Ok(s) => s,
        Err(ApiErr(StatusCode::UNAUTHORIZED, _)) => {
            // Every character is URL-safe (checked above) but the separators.
            let here = format!(
                "{CLI_LOGIN_PATH}?port={}&state={}&challenge={}",
                q.port, q.state, q.challenge
            );
            let next = here
                .replace('/', "%2F")
                .replace('?', "%3F")
                .replace('&', "%26")
                .replace('=', "%3D");
            return Ok(Redirect::to(&format!("/?next={next}")).into_response());
        }
        Err(e) => return Err(e),
    };
    let browser_token = credential(&headers).unwrap_or_default().to_owned();
    let expected = confirmation(&browser_token, &q);
    // Compared as hashes: how long the comparison takes says nothing
    // about how much of the expected value a guess got right.
    let confirmed = q
        .confirm
        .as_deref()
        .is_some_and(|c| sha256_hex(c.as_bytes()) == sha256_hex(expected.as_bytes()));
    if !confirmed {
        let link = format!(
            "{CLI_LOGIN_PATH}?port={}&state={}&challenge={}&confirm={expected}",
            q.port, q.state, q.challenge
        );
        return Ok(confirm_page(&sign_in.user, &link));
    }
    let code = codes
        .insert(Pending {
            user: sign_in.user.clone(),
            browser_token,
            second_factor: sign_in.second_factor,
            challenge: q.challenge,
            expires: Instant::now() + CODE_TTL,
        })
        .ok_or_else(|| {
            ApiErr(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many CLI sign-ins in progress; try again in a minute".into(),
            )
        })?;
    tracing::info!(user = %sign_in.user, port = q.port, "CLI sign-in: code handed to the loopback listener");
    Ok(Redirect::to(&format!(
        "http://127.0.0.1:{}/callback?state={}&code={code}",
        q.port, q.state
    ))
    .into_response())
}

/// `POST /api/cli/token`: a code from [`start`] and the CLI's verifier
/// for a new sign-in of that user (a bearer token, [`crate::identity::SIGN_IN_TTL`] long).
async fn exchange(
    State(state): State<Arc<AppState>>,
    Extension(codes): Extension<Arc<PendingCodes>>,
    ClientAddr(peer): ClientAddr,
    Json(req): Json<CliTokenRequest>,
) -> Result<Json<LoginResponse>, ApiErr> {
    let refused = || {
        ApiErr(
            StatusCode::UNAUTHORIZED,
            "this sign-in code is unknown, used or expired; run `sallyport login` again".into(),
        )
    };
    let pending = codes.take(&req.code).ok_or_else(refused)?;
    if sha256_hex(req.verifier.as_bytes()) != pending.challenge {
        tracing::warn!(user = %pending.user, %peer, "CLI sign-in refused: wrong verifier");
        return Err(refused());
    }
    match state.identity.sign_in_of(&pending.browser_token).await {
        Ok(Some(s)) if s.user == pending.user => {}
        Ok(_) => {
            return Err(ApiErr(
                StatusCode::UNAUTHORIZED,
                "the browser's sign-in has ended; run `sallyport login` again".into(),
            ))
        }
        Err(IdentityError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ApiErr(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
    let (token, sign_in) = state
        .identity
        .new_sign_in(&pending.user, pending.second_factor, peer)
        .await
        .map_err(|e| match e {
            IdentityError::Store(e) => ApiErr::from(e),
            e => ApiErr(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        })?;
    state
        .audit
        .append(&Event::SignIn {
            user: sign_in.user.clone(),
            ip: peer,
            ok: true,
            second_factor: sign_in.second_factor,
            reason: None,
        })
        .await?;
    Metrics::add(&state.metrics.sign_ins_ok, 1);
    tracing::info!(user = %sign_in.user, %peer, "CLI signed in through the browser");
    Ok(Json(LoginResponse {
        user: sign_in.user,
        token,
        expires: sign_in.expires,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(expires: Instant) -> Pending {
        Pending {
            user: "alice".into(),
            browser_token: "t".into(),
            second_factor: false,
            challenge: "c".into(),
            expires,
        }
    }

    #[test]
    fn a_code_works_once_and_not_after_it_expires() {
        let codes = PendingCodes::default();
        let code = codes
            .insert(pending(Instant::now() + CODE_TTL))
            .expect("room");
        assert!(codes.take(&code).is_some());
        assert!(codes.take(&code).is_none(), "a code works once");
        let old = codes.insert(pending(Instant::now())).expect("room");
        assert!(codes.take(&old).is_none(), "an expired code is refused");
    }

    #[test]
    fn the_table_of_codes_is_bounded() {
        let codes = PendingCodes::default();
        for _ in 0..MAX_PENDING_CODES {
            assert!(codes.insert(pending(Instant::now() + CODE_TTL)).is_some());
        }
        assert!(codes.insert(pending(Instant::now() + CODE_TTL)).is_none());
    }
}
