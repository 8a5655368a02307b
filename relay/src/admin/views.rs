//! What the admin pages list, as data: the users, connectors, devices and
//! live sessions that `user list`, `connector list`, `device list` and
//! `user show` print as text, read from the same [`AdminCtx`]. Reading
//! changes nothing and records nothing (as the list commands); every
//! change goes through the commands themselves.

use crate::store::block_on;
use std::collections::BTreeMap;

use serde::Serialize;

use super::commands::{store_err, AdminCtx};
use crate::live::LiveSessionView;
use crate::store::ConnectorState;

/// One user, as `GET /api/admin/users` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    /// The user's name.
    pub name: String,
    /// Their groups (policy rules name them).
    pub groups: Vec<String>,
    /// The single sign-on provider they sign in with; `None` for a local
    /// user (password, and one-time codes if on).
    pub sso_provider: Option<String>,
    /// One-time codes (TOTP) are on.
    pub totp: bool,
    /// Unix seconds since when they are locked; `None` when not locked.
    pub locked_since: Option<u64>,
    /// Sign-ins in force (cookies and CLI tokens).
    pub sign_ins: usize,
    /// Live sessions (terminals and `ssh` through the proxy); `None` when
    /// no relay runs.
    pub live_sessions: Option<usize>,
}

/// Every user, by name.
pub fn users(ctx: &AdminCtx) -> Result<Vec<UserView>, String> {
    let mut out = Vec::new();
    for u in block_on(ctx.store.users()).map_err(store_err)? {
        let sign_ins = block_on(ctx.store.sign_ins_of(&u.name))
            .map_err(store_err)?
            .len();
        out.push(UserView {
            live_sessions: ctx.live.as_ref().map(|l| l.sessions_of(&u.name)),
            sso_provider: u.sso.map(|s| s.provider),
            totp: u.totp_secret.is_some(),
            locked_since: u.locked,
            groups: u.groups,
            sign_ins,
            name: u.name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One service a connector announced in its last hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnouncedView {
    /// The service's name.
    pub name: String,
    /// The connector is granted it; an announced service that is not
    /// granted is refused.
    pub granted: bool,
}

/// One connector, as `GET /api/admin/connectors` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorView {
    /// The connector's name.
    pub name: String,
    /// `pending` (a token was issued, not used yet), `enrolled` or `revoked`.
    pub state: ConnectorState,
    /// Its live connections to this relay (0: offline).
    pub connections: usize,
    /// The transport of each live connection (`quic`, `tcp`), in the order
    /// they connected.
    pub transports: Vec<String>,
    /// The software versions its live connections announced (empty when
    /// offline).
    pub versions: Vec<String>,
    /// Unix seconds it was last heard from; `None` if never.
    pub last_seen: Option<u64>,
    /// The services it may serve.
    pub granted: Vec<String>,
    /// The grants were kept from before grants existed, not given by an
    /// admin (`connector list` marks them with `*`).
    pub grants_migrated: bool,
    /// What its last hello announced.
    pub announced: Vec<AnnouncedView>,
}

/// Every connector, by name.
pub fn connectors(ctx: &AdminCtx) -> Result<Vec<ConnectorView>, String> {
    let (mut online, mut versions) = match &ctx.registry {
        Some(r) => (r.transports(), r.versions()),
        None => Default::default(),
    };
    let mut out = Vec::new();
    for c in block_on(ctx.store.connectors()).map_err(store_err)? {
        let announced = c
            .services
            .iter()
            .map(|s| AnnouncedView {
                name: s.name.clone(),
                granted: c.may_serve(&s.name),
            })
            .collect();
        let transports: Vec<String> = online
            .remove(&c.name)
            .unwrap_or_default()
            .iter()
            .map(|t| t.to_string())
            .collect();
        out.push(ConnectorView {
            connections: transports.len(),
            transports,
            versions: versions
                .remove(&c.name)
                .map(|v| v.into_iter().collect())
                .unwrap_or_default(),
            state: c.state,
            last_seen: c.last_seen,
            granted: c.granted.unwrap_or_default(),
            grants_migrated: c.grants_migrated,
            announced,
            name: c.name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One device certificate, as `GET /api/admin/devices` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    /// The device's name.
    pub name: String,
    /// Revoked: its certificate no longer counts as a device.
    pub revoked: bool,
    /// What policy rules can check (`key=value`).
    pub attributes: BTreeMap<String, String>,
    /// Unix seconds it was issued.
    pub created: u64,
    /// Unix seconds its certificate expires.
    pub expires: u64,
}

/// Every device certificate, by name.
pub fn devices(ctx: &AdminCtx) -> Result<Vec<DeviceView>, String> {
    let mut out: Vec<DeviceView> = block_on(ctx.store.devices())
        .map_err(store_err)?
        .into_iter()
        .map(|d| DeviceView {
            name: d.name,
            revoked: d.revoked,
            attributes: d.attributes,
            created: d.created,
            expires: d.expires,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The running relay's live sessions, oldest first (none when no relay runs).
pub fn sessions(ctx: &AdminCtx) -> Vec<LiveSessionView> {
    ctx.live.as_ref().map(|l| l.list()).unwrap_or_default()
}
