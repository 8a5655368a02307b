//! The plain-HTTP listener of the HTTP-01 challenge (RFC 8555 section
//! 8.3): it answers `GET /.well-known/acme-challenge/{token}` with the key
//! authorization of an order in progress and nothing else. Every other
//! request is sent to the HTTPS origin with a redirect (to the configured
//! public URL, never to a host the request names), so the port can stay
//! open on port 80 without serving anything of its own. It sits behind the
//! same connection caps and timeouts as the HTTPS listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::task::TaskTracker;

use crate::web::listener::{self, ConnLimits, GuardAcceptor, Limiter};

/// Connections the HTTP-01 listener takes at once (validation servers
/// connect a few times per name; the rest are browsers being redirected).
pub const MAX_CONNECTIONS: usize = 256;

/// Connections one address (IPv6: one /64) may hold on it.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 16;

/// The path prefix of HTTP-01 challenges (RFC 8555 section 8.3).
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The key authorizations of the HTTP-01 challenges in progress, by token:
/// one per name of an order, so at most as many as `acme_domains`.
#[derive(Debug, Default)]
pub struct Http01Tokens(Mutex<HashMap<String, String>>);

impl Http01Tokens {
    /// Answers `token` with `key_authorization` until [`Http01Tokens::clear`].
    pub fn insert(&self, token: String, key_authorization: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, key_authorization);
    }

    /// Forgets every token (the order is over).
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn get(&self, token: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }
}

struct Http01State {
    tokens: Arc<Http01Tokens>,
    /// `https://host[:port]`, where everything else is sent.
    origin: String,
}

/// The listener's routes: the challenge path, and a redirect for the rest.
pub fn router(tokens: Arc<Http01Tokens>, origin: String) -> Router {
    Router::new()
        .route(&format!("{CHALLENGE_PATH}{{token}}"), get(challenge))
        .fallback(redirect)
        .with_state(Arc::new(Http01State { tokens, origin }))
}

async fn challenge(State(state): State<Arc<Http01State>>, Path(token): Path<String>) -> Response {
    match state.tokens.get(&token) {
        // RFC 8555 section 8.3: the body is the key authorization, as is.
        Some(key_authorization) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            key_authorization,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn redirect(State(state): State<Arc<Http01State>>, uri: Uri) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("{}{path}", state.origin);
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// Binds `addr` and serves [`router`] on it behind the connection caps and
/// `limits`' timeouts, until the returned handle shuts it down.
pub fn start(
    addr: SocketAddr,
    tokens: Arc<Http01Tokens>,
    origin: String,
    limits: ConnLimits,
    tasks: &TaskTracker,
) -> anyhow::Result<(axum_server::Handle<SocketAddr>, SocketAddr)> {
    let socket = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen for ACME HTTP-01 challenges on tcp {addr} (acme_listen_http)")
    })?;
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    let limiter = Limiter::new(
        "acme-http",
        MAX_CONNECTIONS,
        listener::per_address_cap(MAX_CONNECTIONS, Some(MAX_CONNECTIONS_PER_ADDRESS)),
        None,
    );
    let acceptor = GuardAcceptor::new(
        axum_server::accept::DefaultAcceptor::new(),
        limiter,
        limits,
        None,
        // Validation servers connect directly; nobody speaks for them.
        Default::default(),
    );
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(socket)?
        .acceptor(acceptor)
        .handle(handle.clone());
    let app = router(tokens, origin);
    tasks.spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(error = %e, "ACME HTTP-01 listener failed");
        }
    });
    tracing::info!("ACME HTTP-01 challenges answered on http://{local}{CHALLENGE_PATH}");
    Ok((handle, local))
}
