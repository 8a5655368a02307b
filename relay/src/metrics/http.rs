//! The metrics listener's routes: `GET /metrics` (OpenMetrics text),
//! `/healthz` and `/readyz`, and nothing else. The listener itself, with
//! its connection cap and timeouts, is `server::start_metrics`.
//!
//! Health is here rather than on the public HTTPS port because this is
//! where a supervisor on the host (systemd, a container runtime, a
//! Kubernetes probe) or a monitoring system looks, in plain HTTP without
//! the relay's certificate, and because `/readyz` says why the relay is
//! not ready, which is the operator's business. The public port keeps its
//! own `/healthz` (200 "ok" while it serves) for load balancers in front
//! of it, which can only reach that port.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use sallyport_common::metrics::{self as common, CONTENT_TYPE, HEALTH_CONTENT_TYPE};

use super::connectors::ConnectorSeries;
use super::Metrics;
use crate::health::Health;
use crate::tunnel::Registry as Tunnels;

/// The routes, answering from `metrics`, the connectors online in
/// `tunnels`, and `health`.
pub fn router(metrics: Arc<Metrics>, tunnels: Arc<Tunnels>, health: Arc<Health>) -> axum::Router {
    let mut per_connector = sallyport_common::metrics::registry();
    per_connector.register_collector(Box::new(ConnectorSeries { tunnels }));
    let per_connector = Arc::new(per_connector);
    axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                let text = common::encode(&[metrics.registry(), &per_connector]);
                ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
            }),
        )
        .route(
            "/healthz",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, HEALTH_CONTENT_TYPE)],
                    common::HEALTHZ_BODY,
                )
            }),
        )
        .route(
            "/readyz",
            get(move || async move {
                let (code, body) = common::readyz(health.ready().await);
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                (status, [(header::CONTENT_TYPE, HEALTH_CONTENT_TYPE)], body).into_response()
            }),
        )
}
