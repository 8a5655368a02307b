//! The SSH certificate authority's routes: its public key for sshd's
//! `TrustedUserCAKeys`, and certificates for signed-in users' own keys.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use sallyport_proto::client::{SshCertRequest, SshCertResponse};
use sallyport_proto::frame::service_name;

use super::auth::{credential, require_sign_in};
use super::client_addr::ClientAddr;
use super::{access, ApiErr, AppState};
use crate::policy::Stage;
use crate::ssh_ca::{CertRequest, SshCa};
use sallyport_common::hash::sha256_hex;
use sallyport_common::time::now_secs;

#[derive(serde::Deserialize)]
pub struct CaQuery {
    service: Option<String>,
}

/// The CA that signs `service`'s certificates: its own with `separate_ca`,
/// else the relay's.
async fn ca_for(state: &AppState, separate: bool, service: &str) -> Result<Arc<SshCa>, ApiErr> {
    if !separate {
        return Ok(state.ssh_ca.clone());
    }
    if let Some(ca) = state
        .service_cas
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(service)
    {
        return Ok(ca.clone());
    }
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, %service, "service CA unavailable");
        ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the CA of service {service} is unavailable"),
        )
    };
    // Two requests may both load it: they get the same CA (the file or
    // the cluster secret is created once), and one entry stays.
    let ca = match &state.cluster {
        Some(secrets) => secrets
            .ssh_ca_for(service)
            .await
            .map_err(|e| unavailable(&e))?,
        None => SshCa::load_or_create_for(&state.data_dir, service).map_err(|e| unavailable(&e))?,
    };
    let mut cas = state.service_cas.lock().unwrap_or_else(|e| e.into_inner());
    Ok(cas
        .entry(service.to_owned())
        .or_insert(Arc::new(ca))
        .clone())
}

/// `GET /ssh-ca.pub[?service=NAME]`: a CA's public key, one OpenSSH line:
/// the relay's, or that of a service with a CA of its own.
pub async fn ca_public_key(
    State(state): State<Arc<AppState>>,
    Query(q): Query<CaQuery>,
) -> Result<impl IntoResponse, ApiErr> {
    let ca = match &q.service {
        None => state.ssh_ca.clone(),
        Some(service) => {
            let service = &service_name("service name", service)
                .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
            if !state.policy.current().separate_ca(service) {
                return Err(ApiErr(
                    StatusCode::NOT_FOUND,
                    format!("service {service} has no CA of its own; its sshd trusts /ssh-ca.pub"),
                ));
            }
            ca_for(&state, true, service).await?
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", ca.public_line()),
    ))
}

/// `POST /api/ssh-cert`: certifies the caller's public key for a service,
/// if the policy lets them reach it now, for one of the accounts the
/// policy maps them to (by default the first).
pub async fn issue(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    tls: access::Tls,
    headers: HeaderMap,
    Json(mut req): Json<SshCertRequest>,
) -> Result<Json<SshCertResponse>, ApiErr> {
    let sign_in = require_sign_in(&state, &headers).await?;
    req.service = service_name("service name", &req.service)
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    if !state.store.service_known(&req.service).await? {
        return Err(ApiErr(
            StatusCode::NOT_FOUND,
            format!("no such service {:?}", req.service),
        ));
    }
    let (policy, inputs) = access::check(
        &state,
        &sign_in,
        peer,
        &tls,
        &req.service,
        Stage::Certificate,
    )
    .await?;
    // With a policy, only services it says trust the CA get certificates:
    // one for a service that does not could only be of use elsewhere.
    if policy.configured && !policy.certificates(&req.service) {
        return Err(ApiErr(
            StatusCode::FORBIDDEN,
            format!(
                "service {} does not take certificates (its policy has no certificates = true)",
                req.service
            ),
        ));
    }
    let allowed = policy.principals(&sign_in.user, &inputs.groups, &req.service);
    let principal = match &req.principal {
        Some(p) => p.clone(),
        None => allowed.first().cloned().ok_or_else(|| {
            ApiErr(
                StatusCode::FORBIDDEN,
                format!(
                    "the policy maps user {} to no account on service {}",
                    sign_in.user, req.service
                ),
            )
        })?,
    };
    if !allowed.contains(&principal) {
        tracing::warn!(user = %sign_in.user, %principal, service = %req.service, "certificate refused: principal not allowed");
        return Err(ApiErr(
            StatusCode::FORBIDDEN,
            format!(
                "user {} may not log in to service {} as {principal:?}",
                sign_in.user, req.service
            ),
        ));
    }
    let ttl = match req.valid_secs {
        Some(secs) => state
            .ssh_cert_ttl
            .min(std::time::Duration::from_secs(secs.max(1))),
        None => state.ssh_cert_ttl,
    };
    // The sign-in is named by a prefix of its token's hash: enough to find it
    // in the relay's logs, useless to anyone reading sshd's. (Its key stays
    // `session=`, as in certificates already issued and the logs that hold them.)
    let sign_in_hash = credential(&headers)
        .map(|t| sha256_hex(t.as_bytes())[..12].to_owned())
        .unwrap_or_default();
    let key_id = format!(
        "sallyport user={} service={} session={sign_in_hash}",
        sign_in.user, req.service
    );
    let signed = ca_for(&state, policy.separate_ca(&req.service), &req.service)
        .await?
        .sign(&CertRequest {
            public_key: &req.public_key,
            principal: &principal,
            key_id: &key_id,
            ttl,
            permits: policy.permits(&inputs),
        })
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    let valid_before = now_secs() + ttl.as_secs();
    state
        .audit
        .append(&crate::audit::Event::CertIssued {
            user: sign_in.user.clone(),
            service: req.service.clone(),
            principal: principal.clone(),
            key_id,
            serial: signed.serial,
            valid_before,
        })
        .await?;
    tracing::info!(user = %sign_in.user, %principal, service = %req.service, ?ttl, serial = signed.serial, "SSH certificate issued");
    Ok(Json(SshCertResponse {
        certificate: signed.certificate,
        principal,
        valid_before,
    }))
}
