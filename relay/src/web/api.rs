//! Small read-only routes: health, who is signed in, the service list.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use super::auth::{require_admin, require_sign_in};
use super::client_addr::ClientAddr;
use super::{access, ApiErr, AppState};

pub async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
pub struct Me {
    pub user: String,
    /// The user has one-time codes on.
    pub second_factor_enrolled: bool,
    /// This session's sign-in used one.
    pub second_factor: bool,
    /// The user is an admin (group `admin`): the pages link to the admin pages.
    pub admin: bool,
}

/// `GET /api/me`: who the session belongs to (the page prefills the SSH
/// login name with it), and whether they are an admin.
pub async fn me(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Me>, ApiErr> {
    let sign_in = require_sign_in(&state, &headers).await?;
    let user = state.store.user(&sign_in.user).await?;
    let enrolled = user.as_ref().is_some_and(|u| u.totp_secret.is_some());
    let admin = user.is_some_and(|u| u.groups.iter().any(|g| g == crate::identity::ADMIN_GROUP));
    Ok(Json(Me {
        user: sign_in.user,
        second_factor_enrolled: enrolled,
        second_factor: sign_in.second_factor,
        admin,
    }))
}

#[derive(Serialize)]
pub struct ServiceView {
    pub name: String,
    pub online: bool,
    pub connectors: Vec<String>,
    /// The service's sshd trusts the relay's SSH CA: log in with a certificate.
    pub ssh_certificates: bool,
    /// The account a certificate login uses by default (the policy's first
    /// for this user); absent when the service takes no certificates. Kept
    /// for pages from before `ssh_principals`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_principal: Option<String>,
    /// Every account the policy maps this user to on the service, in the
    /// policy's order (the first is `ssh_principal`): the terminal page
    /// offers them at `login as:`. Empty when the service takes no
    /// certificates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_principals: Vec<String>,
    /// The host keys its connectors attested (OpenSSH one-line form), for
    /// `sallyport ssh-config`'s known_hosts file; empty when it is offline,
    /// not SSH, or denied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<String>,
    /// The policy lets this user reach it from here, now.
    pub allowed: bool,
    /// Why not, when `allowed` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Services the signed-in user may reach, with whether a connector is
/// online. Services the policy denies for a reason the person can act on
/// (device, place, time, risk, second factor) are listed with the reason;
/// services it denies to who they are are not listed at all.
pub async fn services(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    tls: access::Tls,
    headers: HeaderMap,
) -> Result<Json<Vec<ServiceView>>, ApiErr> {
    let sign_in = require_sign_in(&state, &headers).await?;
    let policy = state.policy.current();
    let mut inputs = access::inputs(&state, &sign_in, peer, &tls, &policy).await?;
    let groups = inputs.groups.clone();
    let principals = |service: &str| {
        if policy.certificates(service) {
            policy.principals(&sign_in.user, &groups, service)
        } else {
            Vec::new()
        }
    };
    let live = state.registry.services();
    let mut out: Vec<ServiceView> = live
        .iter()
        .map(|(name, s)| ServiceView {
            name: name.clone(),
            online: true,
            connectors: s.connectors.clone(),
            ssh_certificates: policy.certificates(name),
            ssh_principal: principals(name).into_iter().next(),
            ssh_principals: principals(name),
            host_keys: s.host_keys.clone(),
            allowed: true,
            reason: None,
        })
        .collect();
    for c in state.store.connectors().await? {
        if c.state != crate::store::ConnectorState::Enrolled {
            continue;
        }
        for name in c.granted.unwrap_or_default() {
            if !live.contains_key(&name) && !out.iter().any(|v| v.name == name) {
                out.push(ServiceView {
                    ssh_certificates: policy.certificates(&name),
                    ssh_principal: principals(&name).into_iter().next(),
                    ssh_principals: principals(&name),
                    name,
                    online: false,
                    connectors: vec![c.name.clone()],
                    host_keys: Vec::new(),
                    allowed: true,
                    reason: None,
                });
            }
        }
    }
    // Asked for display only: not a decision to reach anything, so not recorded.
    out.retain_mut(|view| {
        inputs.service.clone_from(&view.name);
        let d = policy.evaluate(&inputs);
        view.allowed = d.allowed;
        if !d.allowed {
            view.reason = Some(d.reason);
            // Nothing to connect with: the name and the reason are enough.
            view.connectors.clear();
            view.ssh_certificates = false;
            view.ssh_principal = None;
            view.ssh_principals.clear();
            view.host_keys.clear();
        }
        d.allowed || d.near_miss
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    /// Unix milliseconds.
    since: Option<u64>,
    user: Option<String>,
    service: Option<String>,
    /// A terminal session (or a stream id), as `audit list --session`.
    session: Option<String>,
    /// A stream, as `audit list --stream`.
    stream: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Only events after this sequence number (paging).
    after: Option<u64>,
    limit: Option<usize>,
}

/// Most events one `/api/audit` answer carries.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// `GET /api/audit`: audit events, oldest first, for admins (members of
/// the `admin` group) only.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<axum::response::Response, ApiErr> {
    require_admin(&state, &headers).await?;
    let filter = crate::audit::Filter {
        since_ms: q.since,
        user: q.user,
        service: q.service,
        session: q.session,
        stream: q.stream,
        kind: q.kind,
        after_seq: q.after,
    };
    let limit = q.limit.unwrap_or(MAX_AUDIT_PAGE).min(MAX_AUDIT_PAGE);
    let records = state.audit.list(&filter, limit).await?;
    // With the derived `time` and `code` (see `audit::RecordView`).
    let views: Vec<_> = records.iter().map(|r| r.view()).collect();
    Ok(Json(views).into_response())
}

/// Most bytes of events a recording served over HTTP is made of.
pub const MAX_RECORDING_BYTES: usize = 64 * 1024 * 1024;

/// `GET /api/recordings/{session}`: a session's recording as asciicast v2,
/// for admins only.
pub async fn recording(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(session): axum::extract::Path<String>,
) -> Result<axum::response::Response, ApiErr> {
    require_admin(&state, &headers).await?;
    sallyport_proto::client::check_session_id(&session)
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    let filter = crate::audit::Filter {
        session: Some(session.clone()),
        kind: Some("client".into()),
        ..Default::default()
    };
    // Off the async workers, a page at a time, up to a size the relay can
    // hold: a longer recording is cut short with a marker saying so (the
    // CLI's `recording export` has no limit).
    let audit = state.audit.clone();
    let (records, truncated) = tokio::task::spawn_blocking(move || {
        let mut filter = filter;
        let mut records = Vec::new();
        let mut bytes = 0usize;
        loop {
            let page = crate::store::block_on(audit.list(&filter, MAX_AUDIT_PAGE))?;
            let Some(last) = page.last() else {
                return Ok::<_, crate::store::StoreError>((records, false));
            };
            filter.after_seq = Some(last.seq);
            for r in page {
                bytes += r.event.to_string().len();
                records.push(r);
                if bytes > MAX_RECORDING_BYTES {
                    return Ok((records, true));
                }
            }
        }
    })
    .await
    .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let cast =
        crate::audit::recording::asciicast(&session, &records, truncated).ok_or_else(|| {
            ApiErr(
                StatusCode::NOT_FOUND,
                format!("no recording of session {session}"),
            )
        })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/x-asciicast; charset=utf-8",
        )],
        cast,
    )
        .into_response())
}
