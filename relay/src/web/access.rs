//! The policy check of the web routes: the terminal page, the session
//! WebSocket and certificate issue all ask here, with what the request
//! carries (session, address, device certificate), before doing anything.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::Extension;
use axum_server::tls::TlsInfo;

use super::{ApiErr, AppState};
use crate::metrics::Metrics;
use crate::policy::decide::{decide, gather, DecideError, DeviceRef, Request};
use crate::policy::{Inputs, Policy, Stage};
use crate::store::SignInRecord;
use sallyport_common::hash::sha256_hex;
use sallyport_common::time::now_secs;

/// What axum-server's TLS acceptor attaches to each request: the
/// connection's TLS details, among them the client (device) certificate.
pub type Tls = Option<Extension<Arc<TlsInfo>>>;

/// The device certificate of the HTTPS connection, by SHA-256.
pub fn device_ref(tls: &Tls) -> DeviceRef {
    match tls.as_ref().and_then(|t| t.peer_certificates.first()) {
        Some(der) => DeviceRef::Cert(sha256_hex(der)),
        None => DeviceRef::None,
    }
}

fn request<'a>(
    sign_in: &'a SignInRecord,
    ip: IpAddr,
    tls: &Tls,
    service: &'a str,
    stage: Stage,
) -> Request<'a> {
    Request {
        user: &sign_in.user,
        second_factor: sign_in.second_factor,
        ip,
        device: device_ref(tls),
        service,
        at: now_secs(),
        stage,
        risk: None,
        country: None,
    }
}

fn decide_err(e: DecideError) -> ApiErr {
    match e {
        DecideError::Store(e) => e.into(),
        e => ApiErr(StatusCode::UNAUTHORIZED, format!("{e}; sign in again")),
    }
}

/// The policy inputs of a request (for no service in particular), without
/// deciding anything.
pub async fn inputs(
    state: &AppState,
    sign_in: &SignInRecord,
    ip: IpAddr,
    tls: &Tls,
    policy: &Policy,
) -> Result<Inputs, ApiErr> {
    gather(
        &state.store,
        policy,
        &request(sign_in, ip, tls, "", Stage::Page),
    )
    .await
    .map_err(decide_err)
}

/// Decides whether the session's user may reach `service` now; a denial is
/// a 403 whose message is the reason. The policy used is returned, so the
/// caller's later questions (principals) get answers from the same version.
pub async fn check(
    state: &AppState,
    sign_in: &SignInRecord,
    ip: IpAddr,
    tls: &Tls,
    service: &str,
    stage: Stage,
) -> Result<(Arc<Policy>, Inputs), ApiErr> {
    let policy = state.policy.current();
    let req = request(sign_in, ip, tls, service, stage);
    let started = std::time::Instant::now();
    let (inputs, decision) = decide(&state.store, &state.audit, &policy, &req)
        .await
        .map_err(decide_err)?;
    state.metrics.observe_policy(stage, started.elapsed());
    let device = inputs.device.as_ref().map(|d| d.name.as_str());
    if decision.allowed {
        Metrics::add(&state.metrics.policy_allowed, 1);
        tracing::info!(user = %sign_in.user, %service, %ip, ?stage, ?device, risk = inputs.risk.score, rule = ?decision.rule, "policy allows");
        Ok((policy, inputs))
    } else {
        Metrics::add(&state.metrics.policy_denied, 1);
        tracing::warn!(user = %sign_in.user, %service, %ip, ?stage, ?device, risk = %inputs.risk, reason = %decision.reason, "policy denies");
        Err(ApiErr(StatusCode::FORBIDDEN, decision.reason))
    }
}
