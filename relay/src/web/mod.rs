//! HTTPS for people: the pages, sign-in, the service list, the session
//! WebSocket and health (metrics have a listener of their own, see
//! `crate::metrics`). Cross-cutting rules (security headers,
//! origin checks, body limits) are layers on the router, not code in
//! handlers.

mod access;
mod account;
pub(crate) mod admin;
mod api;
mod auth;
mod cli_login;
pub mod client_addr;
pub mod listener;
mod oidc;
mod pages;
pub mod proxy_protocol;
pub(crate) mod session_limits;
mod ssh_cert;
mod ws;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sallyport_proto::client::ApiError;

use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tunnel::Registry;

/// Content-Security-Policy of every response: scripts and styles only from
/// the relay's own files (the wasm client needs `wasm-unsafe-eval` to
/// compile), connections only back to the relay.
pub const CSP: &str =
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'; object-src 'none'";

/// The terminal page's policy: [`CSP`] but with inline styles allowed.
/// xterm.js sizes and colours its DOM renderer with `<style>` elements it
/// generates at run time (cell size, theme) and with `style` attributes on
/// cells (24-bit colours); neither can be hashed in advance, and blocking
/// them leaves the terminal without colours or a scrollbar. Scripts stay
/// strict, which is what stops injected code.
pub const TERMINAL_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Largest request body the relay reads (sign-in is the biggest, and small).
pub const MAX_BODY: usize = 16 * 1024;

/// The relay's public URL, as people reach it.
#[derive(Debug, Clone)]
pub struct PublicUrl {
    /// `https://host[:port]`, compared with the Origin header.
    pub origin: String,
    /// The host alone, without port or brackets.
    pub host: String,
}

impl PublicUrl {
    /// Parses `https://host[:port][/...]`: the origin is kept (lowercase,
    /// `:443` dropped), anything after it ignored. Errors: another scheme,
    /// no host, or user info (`user@`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("public URL {url:?} must start with https://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("public URL {url:?} has no host"));
        }
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default().to_owned()
        } else {
            authority.split(':').next().unwrap_or_default().to_owned()
        };
        let authority = authority.strip_suffix(":443").unwrap_or(authority);
        Ok(Self {
            origin: format!("https://{}", authority.to_ascii_lowercase()),
            host,
        })
    }
}

pub struct AppState {
    pub store: Store,
    pub identity: Arc<Identity>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub public: PublicUrl,
    /// Open session pipes, so shutdown can drain them.
    pub sessions: tokio_util::task::TaskTracker,
    pub ssh_ca: Arc<crate::ssh_ca::SshCa>,
    /// CAs of services with `separate_ca`, loaded (or created) on first use.
    pub service_cas: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::ssh_ca::SshCa>>>,
    pub data_dir: std::path::PathBuf,
    /// The cluster's shared secrets (PostgreSQL store): the service CAs
    /// come from there instead of the data dir. `None` on sled.
    pub cluster: Option<crate::cluster::ClusterSecrets>,
    pub ssh_cert_ttl: std::time::Duration,
    /// Access policy (also says which services take certificates).
    pub policy: Arc<crate::policy::PolicyHandle>,
    pub audit: Arc<crate::audit::AuditLog>,
    /// Live sessions by user and sign-in (the per-user cap, sign-out).
    pub live: Arc<crate::live::LiveSessions>,
    /// Concurrent sessions one user may hold (`--max-sessions-per-user`).
    pub max_sessions_per_user: usize,
    /// Concurrent sessions one user may hold to one service whose policy
    /// sets no `max_sessions_per_user` (`--max-sessions-per-user-per-service`).
    pub max_sessions_per_user_per_service: usize,
    /// OpenID Connect providers and the sign-ins in progress with them.
    pub sso: Arc<crate::oidc::Sso>,
    /// What the admin pages run the admin commands on (the admin socket's).
    pub admin: Arc<crate::admin::AdminCtx>,
}

/// An error answer: a status and a message the user can act on, as JSON.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<crate::store::StoreError> for ApiErr {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            "the relay's store failed; try again".into(),
        )
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::signin))
        .route("/services", get(pages::services))
        .route("/account", get(pages::account))
        .route("/audit", get(pages::audit))
        .route("/replay/{session}", get(pages::replay))
        .route("/t/{service}", get(pages::terminal))
        .route("/assets/{file}", get(pages::asset))
        .route("/healthz", get(api::healthz))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/sso", get(oidc::providers))
        .route("/auth/oidc/{name}", get(oidc::start))
        .route("/auth/oidc/{name}/callback", get(oidc::callback))
        .route("/api/me", get(api::me))
        .route("/api/services", get(api::services))
        .route("/api/audit", get(api::audit))
        .route("/api/recordings/{session}", get(api::recording))
        .route("/api/ssh-cert", post(ssh_cert::issue))
        .route("/api/totp/setup", post(account::setup))
        .route("/api/totp/confirm", post(account::confirm))
        .route("/api/password", post(account::change_password))
        .route("/ssh-ca.pub", get(ssh_cert::ca_public_key))
        .route("/ws/{service}", get(ws::session))
        .merge(cli_login::routes())
        .merge(admin::router(state.clone()))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(body_in_time))
        .layer(middleware::from_fn_with_state(state.clone(), check_origin))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Reads a request's body whole before its handler runs, by the
/// connection's [`listener::BodyDeadline`]: a body dripped byte by byte gets
/// 408 and the connection closes, instead of holding it while a handler waits.
async fn body_in_time(req: Request, next: Next) -> Response {
    let deadline = req.extensions().get::<listener::BodyDeadline>().copied();
    let Some(listener::BodyDeadline(deadline)) = deadline else {
        return next.run(req).await;
    };
    if axum::body::HttpBody::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let too_large = || {
        ApiErr(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {MAX_BODY} bytes"),
        )
        .into_response()
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout_at(deadline, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, bytes.into())).await,
        Ok(Err(_)) => too_large(),
        Err(_) => {
            let mut resp = ApiErr(
                StatusCode::REQUEST_TIMEOUT,
                "the request body took too long to arrive".into(),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

/// Refuses cross-site requests: a browser always sends Origin on WebSocket
/// upgrades and on state-changing requests, and it must be the relay's own.
/// Native clients send no Origin and authenticate with a bearer token.
async fn check_origin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let is_ws = req.headers().contains_key(header::UPGRADE);
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if is_ws || changes_state {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            if origin.as_bytes() != state.public.origin.as_bytes() {
                tracing::warn!(origin = ?origin, path = %req.uri().path(), "cross-origin request refused");
                return ApiErr(
                    StatusCode::FORBIDDEN,
                    format!(
                        "cross-origin request refused: Origin must be {}",
                        state.public.origin
                    ),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Security headers on every response. A handler may set its own
/// Content-Security-Policy (the terminal page, see [`TERMINAL_CSP`]) or
/// Cache-Control (assets); everything else is fixed.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(h, header::CONTENT_SECURITY_POLICY, CSP);
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    resp
}

#[cfg(test)]
mod tests {
    use super::PublicUrl;

    #[test]
    fn public_url_origin() {
        let u = PublicUrl::parse("https://Relay.example.com:8443/").unwrap();
        assert_eq!(u.origin, "https://relay.example.com:8443");
        assert_eq!(u.host, "Relay.example.com");
        assert_eq!(
            PublicUrl::parse("https://r.example:443").unwrap().origin,
            "https://r.example"
        );
        assert_eq!(PublicUrl::parse("https://[::1]:8443").unwrap().host, "::1");
        assert!(PublicUrl::parse("http://r.example").is_err());
    }
}
