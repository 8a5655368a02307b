//! The SSH certificate authority's routes: its public key for sshd's
//! `TrustedUserCAKeys`, and certificates for signed-in users' own keys.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use sallyport_proto::client::{SshCertRequest, SshCertResponse};
use sallyport_proto::frame::check_name;

use super::auth::{credential, require_session};
use super::{access, ApiErr, AppState};
use crate::policy::Stage;
use crate::ssh_ca::CertRequest;
use crate::util::{now_secs, sha256_hex};

/// `GET /ssh-ca.pub`: the CA's public key, one OpenSSH line.
pub async fn ca_public_key(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.ssh_ca.public_line()),
    )
}

/// `POST /api/ssh-cert`: certifies the caller's public key for a service,
/// if the policy lets them reach it now, for one of the accounts the
/// policy maps them to (by default the first).
pub async fn issue(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: access::Tls,
    headers: HeaderMap,
    Json(req): Json<SshCertRequest>,
) -> Result<Json<SshCertResponse>, ApiErr> {
    let session = require_session(&state, &headers)?;
    check_name("service name", &req.service)
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    if !state.store.service_known(&req.service)? {
        return Err(ApiErr(
            StatusCode::NOT_FOUND,
            format!("no such service {:?}", req.service),
        ));
    }
    let (policy, inputs) = access::check(
        &state,
        &session,
        peer.ip(),
        &tls,
        &req.service,
        Stage::Certificate,
    )?;
    let allowed = policy.principals(&session.user, &inputs.groups, &req.service);
    let principal = match &req.principal {
        Some(p) => p.clone(),
        None => allowed.first().cloned().ok_or_else(|| {
            ApiErr(
                StatusCode::FORBIDDEN,
                format!(
                    "the policy maps user {} to no account on service {}",
                    session.user, req.service
                ),
            )
        })?,
    };
    if !allowed.contains(&principal) {
        tracing::warn!(user = %session.user, %principal, service = %req.service, "certificate refused: principal not allowed");
        return Err(ApiErr(
            StatusCode::FORBIDDEN,
            format!(
                "user {} may not log in to service {} as {principal:?}",
                session.user, req.service
            ),
        ));
    }
    let ttl = match req.valid_secs {
        Some(secs) => state
            .ssh_cert_ttl
            .min(std::time::Duration::from_secs(secs.max(1))),
        None => state.ssh_cert_ttl,
    };
    // The session is named by a prefix of its token's hash: enough to find it
    // in the relay's logs, useless to anyone reading sshd's.
    let session_id = credential(&headers)
        .map(|t| sha256_hex(t.as_bytes())[..12].to_owned())
        .unwrap_or_default();
    let key_id = format!(
        "sallyport user={} service={} session={session_id}",
        session.user, req.service
    );
    let certificate = state
        .ssh_ca
        .sign(&CertRequest {
            public_key: &req.public_key,
            principal: &principal,
            key_id: &key_id,
            ttl,
        })
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    tracing::info!(user = %session.user, %principal, service = %req.service, ?ttl, "SSH certificate issued");
    Ok(Json(SshCertResponse {
        certificate,
        principal,
        valid_before: now_secs() + ttl.as_secs(),
    }))
}
