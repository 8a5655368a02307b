//! The admin pages and their API, for members of the `admin` group: users
//! (lock, unlock, sign out), connectors (issue an enrolment token), devices
//! (revoke) and live sessions (terminate).
//!
//! Every route is in [`routes`], and one layer ([`admin_only`]) guards them
//! all: someone not signed in is sent to the sign-in page (pages) or gets
//! 401 (API), anyone else who is not an admin gets 403. State-changing
//! routes are POSTs, so the router's Origin check refuses them cross-site,
//! and the sign-in cookie is `SameSite=Strict`, as for every other POST.
//!
//! Every action runs the admin command itself
//! ([`crate::admin::execute_as`], or [`crate::admin::connector_add`] for a
//! token), on the admin socket's context, as [`Actor::Web`] naming the
//! admin: the same lifecycle code and the same audit events as
//! `sallyport-relay <command>`, with the admin's name as `by`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::require_admin;
use super::{pages, ApiErr, AppState};
use crate::admin::views::{self, ConnectorView, DeviceView, UserView};
use crate::admin::{execute_as, AdminCtx, Request as Command};
use crate::audit::Actor;
use crate::live::LiveSessionView;

/// How long an enrolment token issued on the connectors page stays valid
/// when the admin does not say: as `connector add`'s default.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// The longest validity the connectors page may give a token: a week. (The
/// CLI takes any; a forgotten token in a browser tab should not last.)
pub const MAX_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// The signed-in admin of a request, put there by [`admin_only`].
#[derive(Debug, Clone)]
struct Admin(String);

impl Admin {
    fn actor(&self) -> Actor {
        Actor::Web {
            user: self.0.clone(),
        }
    }
}

/// One admin route: method, path as the router matches it, handler.
struct Route {
    method: &'static str,
    path: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

macro_rules! route {
    (GET $path:literal, $h:expr) => {
        Route {
            method: "GET",
            path: $path,
            handler: on(MethodFilter::GET, $h),
        }
    };
    (POST $path:literal, $h:expr) => {
        Route {
            method: "POST",
            path: $path,
            handler: on(MethodFilter::POST, $h),
        }
    };
}

/// Every admin page and API route. The router is built from this list and
/// the tests walk it, so a route added here is guarded and tested.
fn routes() -> Vec<Route> {
    vec![
        route!(GET "/admin", page),
        route!(GET "/admin/users", page),
        route!(GET "/admin/connectors", page),
        route!(GET "/admin/devices", page),
        route!(GET "/admin/sessions", page),
        route!(GET "/api/admin/users", users),
        route!(POST "/api/admin/users/{name}/lock", lock),
        route!(POST "/api/admin/users/{name}/unlock", unlock),
        route!(POST "/api/admin/users/{name}/sign-out", sign_out),
        route!(GET "/api/admin/connectors", connectors),
        route!(POST "/api/admin/connectors/{name}/token", issue_token),
        route!(POST "/api/admin/connectors/{name}/revoke", revoke_connector),
        route!(GET "/api/admin/devices", devices),
        route!(POST "/api/admin/devices/{name}/revoke", revoke_device),
        route!(GET "/api/admin/sessions", sessions),
        route!(POST "/api/admin/sessions/{stream}/terminate", terminate),
    ]
}

/// Every admin route as `(method, path)`, the path with its `{parameters}`
/// as the router matches it: every route the relay serves under `/admin`
/// and `/api/admin/`, in order, each for admins only.
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    routes().into_iter().map(|r| (r.method, r.path)).collect()
}

/// The admin routes, behind [`admin_only`].
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    routes()
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
        .route_layer(middleware::from_fn_with_state(state, admin_only))
}

/// Lets admins through (with [`Admin`] in the request's extensions).
/// Anyone else: a page redirects to sign-in (not signed in) or says access
/// is denied (403); the API answers 401 or 403 with the reason.
async fn admin_only(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    match require_admin(&state, req.headers()).await {
        Ok(sign_in) => {
            req.extensions_mut().insert(Admin(sign_in.user));
            next.run(req).await
        }
        Err(e) if api => e.into_response(),
        Err(e) if e.0 == StatusCode::UNAUTHORIZED => Redirect::to("/").into_response(),
        Err(e) => pages::denied_page(e.0, &e.1),
    }
}

/// `/admin` and `/admin/{users,connectors,devices,sessions}`: one page
/// whose script shows the part the path names.
async fn page(headers: HeaderMap) -> Response {
    pages::serve("admin.html", &headers)
}

/// What an action did, in the words the CLI prints.
#[derive(Debug, Serialize)]
pub struct Done {
    /// The command's output.
    pub message: String,
}

/// Runs an admin command off the async workers (the store flushes), as
/// the admin; its error is a 400 with the command's words.
async fn run(state: &AppState, admin: &Admin, command: Command) -> Result<Json<Done>, ApiErr> {
    let by = admin.actor();
    let text = blocking(state, move |ctx| {
        let mut out = String::new();
        execute_as(ctx, &by, command, &mut out).map(|()| out)
    })
    .await?;
    Ok(Json(Done {
        message: text.trim_end().to_owned(),
    }))
}

/// Runs `f` on the admin context on a blocking thread; an error it returns
/// is a 400 with its words.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&AdminCtx) -> Result<T, String> + Send + 'static,
) -> Result<T, ApiErr> {
    let ctx = state.admin.clone();
    tokio::task::spawn_blocking(move || f(&ctx))
        .await
        .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e))
}

fn not_found(what: &str, name: &str) -> ApiErr {
    ApiErr(StatusCode::NOT_FOUND, format!("no {what} named {name}"))
}

/// 404 unless user `name` exists.
async fn user_exists(state: &AppState, name: &str) -> Result<(), ApiErr> {
    match state.store.user(name).await? {
        Some(_) => Ok(()),
        None => Err(not_found("user", name)),
    }
}

/// `GET /api/admin/users`.
async fn users(State(state): State<Arc<AppState>>) -> Result<Json<Vec<UserView>>, ApiErr> {
    blocking(&state, views::users).await.map(Json)
}

/// `POST /api/admin/users/{name}/lock`: `user lock NAME`.
async fn lock(
    State(state): State<Arc<AppState>>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiErr> {
    user_exists(&state, &name).await?;
    run(&state, &admin, Command::UserLock { name, lock: true }).await
}

/// `POST /api/admin/users/{name}/unlock`: `user unlock NAME`.
async fn unlock(
    State(state): State<Arc<AppState>>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiErr> {
    user_exists(&state, &name).await?;
    run(&state, &admin, Command::UserLock { name, lock: false }).await
}

/// `POST /api/admin/users/{name}/sign-out`: `user sign-out NAME`.
async fn sign_out(
    State(state): State<Arc<AppState>>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiErr> {
    user_exists(&state, &name).await?;
    run(&state, &admin, Command::UserSignOut { name }).await
}

/// `GET /api/admin/connectors`.
async fn connectors(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<ConnectorView>>, ApiErr> {
    blocking(&state, views::connectors).await.map(Json)
}

/// Body of `POST /api/admin/connectors/{name}/token`.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    /// Services the connector may serve (as `connector add --service`).
    #[serde(default)]
    pub services: Vec<String>,
    /// How long the token stays valid, in seconds (default
    /// [`DEFAULT_TOKEN_TTL_SECS`], at most [`MAX_TOKEN_TTL_SECS`]).
    pub ttl_secs: Option<u64>,
    /// Enrol over a connector of that name that is enrolled or revoked.
    #[serde(default)]
    pub replace: bool,
}

/// Answer of `POST /api/admin/connectors/{name}/token`. The token is in
/// this answer only: the relay keeps nothing it could be read back from.
#[derive(Debug, Serialize)]
pub struct TokenIssued {
    /// The connector it enrols.
    pub connector: String,
    /// The enrolment token (`sallyport-connector run --token`).
    pub token: String,
    /// Unix seconds after which it no longer enrols.
    pub expires: u64,
    /// What the connector may serve once enrolled.
    pub granted: Vec<String>,
}

/// `POST /api/admin/connectors/{name}/token`: `connector add NAME`.
async fn issue_token(
    State(state): State<Arc<AppState>>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<TokenIssued>, ApiErr> {
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > MAX_TOKEN_TTL_SECS {
        return Err(ApiErr(
            StatusCode::BAD_REQUEST,
            format!("ttl_secs must be 1 to {MAX_TOKEN_TTL_SECS} seconds"),
        ));
    }
    let by = admin.actor();
    let connector = name.clone();
    let issued = blocking(&state, move |ctx| {
        crate::admin::connector_add(ctx, &by, &name, ttl, &req.services, req.replace)
    })
    .await?;
    tracing::info!(%connector, by = %admin.0, "enrolment token issued on the admin pages");
    Ok(Json(TokenIssued {
        connector,
        token: issued.token,
        expires: issued.expires,
        granted: issued.granted,
    }))
}

/// `POST /api/admin/connectors/{name}/revoke`: `connector revoke NAME`.
async fn revoke_connector(
    State(state): State<Arc<AppState>>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiErr> {
    if state.store.connector(&name).await?.is_none() {
        return Err(not_found("connector", &name));
    }
    run(&state, &admin, Command::ConnectorRevoke { name }).await
}

/// `GET /api/admin/devices`.
async fn devices(State(state): State<Arc<AppState>>) -> Result<Json<Vec<DeviceView>>, ApiErr> {
    blocking(&state, views::devices).await.map(Json)
}

/// `POST /api/admin/devices/{name}/revoke`: `device revoke NAME`.
async fn revoke_device(
    State(state): State<Arc<AppState>>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiErr> {
    if state.store.device(&name).await?.is_none() {
        return Err(not_found("device", &name));
    }
    run(&state, &admin, Command::DeviceRevoke { name }).await
}

/// `GET /api/admin/sessions`: the live sessions, oldest first.
async fn sessions(State(state): State<Arc<AppState>>) -> Json<Vec<LiveSessionView>> {
    Json(views::sessions(&state.admin))
}

/// `POST /api/admin/sessions/{stream}/terminate`: `session terminate STREAM`.
async fn terminate(
    State(state): State<Arc<AppState>>,
    Extension(admin): Extension<Admin>,
    Path(stream): Path<String>,
) -> Result<Json<Done>, ApiErr> {
    if !state.live.list().iter().any(|s| s.stream == stream) {
        return Err(ApiErr(
            StatusCode::NOT_FOUND,
            format!("no live session has stream {stream}: it has ended"),
        ));
    }
    run(&state, &admin, Command::SessionTerminate { stream }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_route_is_a_page_or_under_the_admin_api_and_posts_change_state() {
        let list = route_list();
        let mut seen = std::collections::HashSet::new();
        for (method, path) in &list {
            assert!(seen.insert((method, path)), "{method} {path} twice");
            assert!(
                path.starts_with("/api/admin/") || path.starts_with("/admin"),
                "{path}"
            );
            // Pages are read; every API POST names what it changes.
            if path.starts_with("/admin") {
                assert_eq!(*method, "GET", "{path}");
            }
            if *method == "POST" {
                assert!(path.matches('{').count() == 1, "{path}");
            }
        }
        for part in ["users", "connectors", "devices", "sessions"] {
            for path in [format!("/admin/{part}"), format!("/api/admin/{part}")] {
                assert!(list.contains(&("GET", path.as_str())), "{path}");
            }
        }
    }
}
