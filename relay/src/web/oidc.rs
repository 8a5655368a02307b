//! Single sign-on routes (OpenID Connect, see `crate::oidc`):
//! - `GET /api/sso`: the providers, for the sign-in page's buttons, and
//!   whether password sign-in is on;
//! - `GET /auth/oidc/{name}`: start, redirects the browser to the provider;
//! - `GET /auth/oidc/{name}/callback`: the provider sends the browser back
//!   here; a good answer is a sign-in like a password's (the same cookie),
//!   recorded as an `sso_sign_in` audit event (provider, subject, groups).
//!
//! The browser comes back from another site, so the relay's sign-in cookie
//! (`SameSite=Strict`) would not be sent on a redirect chain that started
//! there: the callback answers with a small page that moves on to
//! `/services` itself (a same-site navigation), not with a redirect.
//! The cookie that binds a pending sign-in to its browser is `SameSite=Lax`,
//! which a top-level GET from the provider carries.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::client_addr::ClientAddr;
use super::pages::{escape, server_page};
use super::AppState;
use crate::audit::Event;
use crate::identity::IdentityError;
use crate::metrics::SignInMethod;
use crate::oidc::{SsoError, BROWSER_COOKIE, PENDING_TTL};
use crate::store::SsoLink;

/// Longest error text from a provider's redirect that is shown.
const MAX_PROVIDER_ERROR_CHARS: usize = 200;

/// One sign-in button.
#[derive(Debug, Serialize)]
pub struct SsoButton {
    /// The provider's name: the button goes to `/auth/oidc/{name}`.
    pub name: String,
    /// The button's text.
    pub label: String,
}

/// What the sign-in page offers.
#[derive(Debug, Serialize)]
pub struct SignInOptions {
    /// Whether the user name and password form signs anyone in.
    pub password: bool,
    /// The configured providers, in config order.
    pub providers: Vec<SsoButton>,
}

/// `GET /api/sso`: how people may sign in here.
pub async fn providers(State(state): State<Arc<AppState>>) -> Json<SignInOptions> {
    Json(SignInOptions {
        password: state.sso.password_sign_in(),
        providers: state
            .sso
            .providers()
            .iter()
            .map(|p| SsoButton {
                name: p.config.name.clone(),
                label: p.label(),
            })
            .collect(),
    })
}

/// The query of `GET /auth/oidc/{name}`.
#[derive(Debug, Deserialize)]
pub struct StartQuery {
    /// Where to go once signed in; only the CLI's sign-in page is followed
    /// ([`crate::oidc::after_sign_in`]).
    next: Option<String>,
}

/// `GET /auth/oidc/{name}`: sends the browser to the provider, with a
/// fresh binding cookie.
pub async fn start(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<StartQuery>,
) -> Response {
    let browser = sallyport_common::secret::random_secret(32);
    match state
        .sso
        .start(&name, &browser, query.next.as_deref())
        .await
    {
        Ok(url) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            let cookie = format!(
                "{BROWSER_COOKIE}={browser}; Path=/auth/oidc/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
                PENDING_TTL.as_secs()
            );
            let h = resp.headers_mut();
            if let (Ok(loc), Ok(c)) = (HeaderValue::from_str(&url), HeaderValue::from_str(&cookie))
            {
                h.insert(header::LOCATION, loc);
                h.insert(header::SET_COOKIE, c);
            }
            resp
        }
        Err(e) => {
            tracing::warn!(provider = %name.chars().take(64).collect::<String>(), error = %e, "single sign-on not started");
            refused(status_of(&e), &e.to_string())
        }
    }
}

/// The query of the provider's redirect (RFC 6749, sections 4.1.2 and 4.1.2.1).
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/oidc/{name}/callback`: checks the provider's answer and
/// signs the user in.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Path(name): Path<String>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let started = std::time::Instant::now();
    let outcome = match (&query.error, &query.code, &query.state) {
        (Some(error), _, _) => {
            let text = match &query.error_description {
                Some(d) => format!("{error}: {d}"),
                None => error.clone(),
            };
            Err(SsoError::Refused(
                text.chars().take(MAX_PROVIDER_ERROR_CHARS).collect(),
            ))
        }
        (None, Some(code), Some(st)) => {
            let browser = browser_cookie(&headers);
            state.sso.finish(&name, st, code, browser).await
        }
        _ => Err(SsoError::UnknownState),
    };
    let sso = match outcome {
        Ok(sso) => sso,
        Err(e) => {
            state
                .metrics
                .sign_in(SignInMethod::Sso, false, started.elapsed());
            tracing::warn!(provider = %name.chars().take(64).collect::<String>(), %peer, error = %e, "single sign-on refused");
            // Only refusals of what the provider answered to a real code
            // are on the record: anyone can send a made-up state, code or
            // error, as often as they like, and those are in the metrics.
            if matches!(e, SsoError::BadIdToken(_) | SsoError::NotAllowed(_)) {
                if let Err(e) = audit_failure(&state, &name, peer, None, &e.to_string()).await {
                    return e.into_response();
                }
            }
            return refused(status_of(&e), &e.to_string());
        }
    };
    let link = SsoLink {
        provider: sso.provider.clone(),
        subject: sso.subject.clone(),
    };
    let (token, sign_in) = match state
        .identity
        .sign_in_sso(&sso.user, link, &sso.groups, sso.second_factor, peer)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            state
                .metrics
                .sign_in(SignInMethod::Sso, false, started.elapsed());
            tracing::warn!(user = %sso.user, provider = %sso.provider, error = %e, "single sign-on refused");
            if let Err(e) = audit_failure(&state, &name, peer, Some(&sso), &e.to_string()).await {
                return e.into_response();
            }
            let status = match e {
                IdentityError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::FORBIDDEN,
            };
            return refused(status, &e.to_string());
        }
    };
    // On disk before the answer, as for a password.
    if let Err(e) = state
        .audit
        .append(&Event::SsoSignIn {
            provider: sso.provider.clone(),
            subject: sso.subject.clone(),
            user: sign_in.user.clone(),
            groups: sso.groups.clone(),
            ip: peer,
            ok: true,
            second_factor: sign_in.second_factor,
            reason: None,
        })
        .await
    {
        let _ = state.identity.sign_out(&token).await;
        return super::ApiErr::from(e).into_response();
    }
    state
        .metrics
        .sign_in(SignInMethod::Sso, true, started.elapsed());
    tracing::info!(user = %sign_in.user, provider = %sso.provider, %peer, groups = ?sso.groups, second_factor = sign_in.second_factor, "signed in");
    let next = escape(&sso.next);
    let mut resp = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        server_page(
            "Signed in",
            &format!("<meta http-equiv=\"refresh\" content=\"0;url={next}\">"),
            &format!(
                "<p>Signed in as {}. <a href=\"{next}\">Continue</a></p>",
                escape(&sign_in.user)
            ),
        ),
    )
        .into_response();
    let h = resp.headers_mut();
    let clear =
        format!("{BROWSER_COOKIE}=; Path=/auth/oidc/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    for c in [super::auth::sign_in_cookie(&token), clear] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// Records a refused single sign-on (`who` is `None` when the provider's
/// answer named nobody yet: its subject and user are empty).
async fn audit_failure(
    state: &AppState,
    provider: &str,
    peer: IpAddr,
    who: Option<&crate::oidc::SsoIdentity>,
    reason: &str,
) -> Result<(), super::ApiErr> {
    state
        .audit
        .append(&Event::SsoSignIn {
            provider: provider.chars().take(64).collect(),
            subject: who.map(|w| w.subject.clone()).unwrap_or_default(),
            user: who.map(|w| w.user.clone()).unwrap_or_default(),
            groups: who.map(|w| w.groups.clone()).unwrap_or_default(),
            ip: peer,
            ok: false,
            second_factor: false,
            reason: Some(reason.to_owned()),
        })
        .await
        .map(|_| ())
        .map_err(super::ApiErr::from)
}

/// The binding cookie's value, if the browser sent it.
fn browser_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(BROWSER_COOKIE)?.strip_prefix('='))
}

fn status_of(e: &SsoError) -> StatusCode {
    match e {
        SsoError::NoSuchProvider(_) => StatusCode::NOT_FOUND,
        SsoError::TooManyPending => StatusCode::SERVICE_UNAVAILABLE,
        SsoError::Provider(..) => StatusCode::BAD_GATEWAY,
        SsoError::UnknownState | SsoError::OtherBrowser => StatusCode::BAD_REQUEST,
        SsoError::Refused(_) | SsoError::BadIdToken(_) | SsoError::NotAllowed(_) => {
            StatusCode::FORBIDDEN
        }
    }
}

/// A page saying why single sign-on did not sign the person in.
fn refused(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        server_page(
            "Sign-in refused",
            "",
            &format!(
                "<h1>Sign-in refused</h1><p id=\"reason\">{}</p><p><a href=\"/\">Back to the sign-in page</a></p>",
                escape(reason)
            ),
        ),
    )
        .into_response()
}
