//! Small read-only routes: index, health, metrics, the service list.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse};
use axum::Json;
use serde::Serialize;

use super::auth::require_session;
use super::{ApiErr, AppState};

pub async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><meta charset=utf-8><title>Sallyport</title>",
        "<h1>Sallyport relay</h1>",
        "<p>Reach SSH services with OpenSSH: <code>sallyport login --relay URL --user NAME --password-stdin</code>, ",
        "then <code>ssh -o ProxyCommand='sallyport proxy %h' USER@SERVICE</code>.</p>"
    ))
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.registry.len()),
    )
}

#[derive(Serialize)]
pub struct ServiceView {
    pub name: String,
    pub online: bool,
    pub connectors: Vec<String>,
}

/// Services the signed-in user may reach, with whether a connector is online.
pub async fn services(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ServiceView>>, ApiErr> {
    require_session(&state, &headers)?;
    let live = state.registry.services();
    let mut out: Vec<ServiceView> = live
        .iter()
        .map(|(name, connectors)| ServiceView {
            name: name.clone(),
            online: true,
            connectors: connectors.clone(),
        })
        .collect();
    for c in state.store.connectors()? {
        if c.state != crate::store::ConnectorState::Enrolled {
            continue;
        }
        for s in c.services {
            if !live.contains_key(&s.name) && !out.iter().any(|v| v.name == s.name) {
                out.push(ServiceView {
                    name: s.name,
                    online: false,
                    connectors: vec![c.name.clone()],
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}
