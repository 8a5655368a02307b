//! Admin commands (`user add|totp|sessions|sign-out`, `connector add|list|revoke`,
//! `device add|list|revoke`, `policy test|log`).
//!
//! The same [`execute`] runs whether the relay is up or not: a running relay
//! holds the sled database, so it serves the commands on a Unix socket in the
//! data dir (mode 0600); when no relay answers there, the command opens the
//! database itself.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sallyport_proto::frame::check_name;
use sallyport_proto::token::EnrolmentToken;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, Filter};
use crate::identity;
use crate::pki::RelayCa;
use crate::policy::{decide, PolicyHandle, Stage};
use crate::store::{ConnectorRecord, ConnectorState, DeviceRecord, Store};
use crate::totp;
use crate::tunnel::Registry;
use crate::util::{now_secs, random_secret};

/// Longest request line on the admin socket.
pub const MAX_REQUEST_LEN: usize = 16 * 1024;
/// Key in the store's meta tree holding the address connectors dial.
pub const META_TUNNEL_ADDR: &str = "public_tunnel_addr";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    UserAdd {
        name: String,
        password: String,
        groups: Vec<String>,
    },
    ConnectorAdd {
        name: String,
        ttl_secs: u64,
    },
    ConnectorList,
    ConnectorRevoke {
        name: String,
    },
    /// Set up (or replace) a user's TOTP second factor.
    UserTotp {
        name: String,
    },
    /// A user's sign-ins: when, from where, with a second factor or not.
    UserSessions {
        name: String,
    },
    /// Ends all of a user's sign-ins and their live sessions.
    UserSignOut {
        name: String,
    },
    /// Issue a device certificate; the output is a [`DeviceIssued`] as JSON.
    DeviceAdd {
        name: String,
        attributes: BTreeMap<String, String>,
    },
    DeviceList,
    DeviceRevoke {
        name: String,
    },
    /// Explain the decision for the given inputs.
    PolicyTest(PolicyTest),
    /// The most recent recorded decisions.
    PolicyLog {
        limit: usize,
    },
    /// Audit events, one human line each.
    AuditList {
        filter: Filter,
        limit: usize,
    },
    /// Audit events as JSON lines, a page at a time (`filter.after_seq`).
    AuditExport {
        filter: Filter,
        limit: usize,
    },
    AuditVerify,
}

/// Events per page of `audit export`.
pub const EXPORT_PAGE: usize = 2000;

/// Inputs of `sallyport-relay policy test`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyTest {
    pub user: String,
    pub service: String,
    pub ip: IpAddr,
    pub device: Option<String>,
    pub second_factor: bool,
    /// Unix time [default: now].
    pub at: Option<u64>,
    /// A fixed risk score instead of the one the relay would compute.
    pub risk: Option<u32>,
    pub country: Option<String>,
}

/// What `device add` hands the admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceIssued {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Key in the store's meta tree holding the relay's public URL.
pub const META_PUBLIC_URL: &str = "public_url";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub output: String,
}

/// What the commands act on.
pub struct AdminCtx {
    pub store: Store,
    pub ca: Arc<RelayCa>,
    /// Present when the relay is running: revocation closes live connections.
    pub registry: Option<Arc<Registry>>,
    /// The live policy of a running relay, or the one of `--config`.
    pub policy: Option<Arc<PolicyHandle>>,
    pub audit: Arc<AuditLog>,
    /// Present when the relay is running: `user sign-out` ends live sessions.
    pub live: Option<Arc<crate::live::LiveSessions>>,
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Runs one admin command; the output is what the CLI prints.
pub fn execute(ctx: &AdminCtx, req: Request) -> Result<String, String> {
    match req {
        Request::UserAdd {
            name,
            password,
            groups,
        } => {
            identity::add_user(&ctx.store, &name, &password, &groups).map_err(|e| e.to_string())?;
            Ok(format!("user {name} added"))
        }
        Request::ConnectorAdd { name, ttl_secs } => connector_add(ctx, &name, ttl_secs),
        Request::ConnectorList => connector_list(ctx),
        Request::ConnectorRevoke { name } => connector_revoke(ctx, &name),
        Request::UserTotp { name } => user_totp(ctx, &name),
        Request::UserSessions { name } => user_sessions(ctx, &name),
        Request::UserSignOut { name } => user_sign_out(ctx, &name),
        Request::DeviceAdd { name, attributes } => device_add(ctx, &name, attributes),
        Request::DeviceList => device_list(ctx),
        Request::DeviceRevoke { name } => device_revoke(ctx, &name),
        Request::PolicyTest(t) => policy_test(ctx, t),
        Request::PolicyLog { limit } => policy_log(ctx, limit),
        Request::AuditList { filter, limit } => audit_list(ctx, &filter, limit),
        Request::AuditExport { filter, limit } => {
            let records = ctx
                .audit
                .list(&filter, limit.min(EXPORT_PAGE))
                .map_err(store_err)?;
            let lines: Result<Vec<String>, String> = records
                .iter()
                .map(|r| serde_json::to_string(r).map_err(|e| e.to_string()))
                .collect();
            Ok(lines?.join("\n"))
        }
        Request::AuditVerify => match ctx.audit.verify() {
            Ok(n) => {
                let tip = match ctx.audit.tip().map_err(store_err)? {
                    Some((seq, hash)) => format!(
                        "\nnewest: event {seq}, hash {hash} (note it elsewhere: \
                         deleting the newest events leaves a valid chain)"
                    ),
                    None => String::new(),
                };
                Ok(format!(
                    "audit log intact: {n} events, every one chained to the one before{tip}"
                ))
            }
            Err(e) => Err(format!("audit log verification FAILED: {e}")),
        },
    }
}

/// One line per event: sequence number, time, type, then its fields.
fn audit_list(ctx: &AdminCtx, filter: &Filter, limit: usize) -> Result<String, String> {
    let records = ctx.audit.list_last(filter, limit).map_err(store_err)?;
    let mut out = String::new();
    for r in records {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| r.at_ms.to_string());
        let kind = r.event.get("type").and_then(|t| t.as_str()).unwrap_or("?");
        let mut fields = Vec::new();
        if let Some(obj) = r.event.as_object() {
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("type", _) => {}
                    // A decision's inputs: the few that say the most.
                    ("inputs", serde_json::Value::Object(i)) => {
                        for key in ["user", "service", "ip"] {
                            if let Some(v) = i.get(key).and_then(|v| v.as_str()) {
                                fields.push(format!("{key}={v}"));
                            }
                        }
                    }
                    (_, serde_json::Value::String(s)) => fields.push(format!("{k}={s:?}")),
                    (_, serde_json::Value::Null) => {}
                    _ => fields.push(format!("{k}={v}")),
                }
            }
        }
        out.push_str(&format!("{:>8} {at} {kind} {}\n", r.seq, fields.join(" ")));
    }
    Ok(out.trim_end().to_owned())
}

/// Unix time as RFC 3339 (UTC).
fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Characters of a sign-in's id shown to admins: enough to tell sign-ins
/// apart, and the id is a hash of the token, never the token.
pub const SIGN_IN_ID_SHOWN: usize = 12;

fn user_sessions(ctx: &AdminCtx, name: &str) -> Result<String, String> {
    if ctx.store.user(name).map_err(store_err)?.is_none() {
        return Err(format!("no user named {name}"));
    }
    let mut out = format!(
        "{:<13} {:<21} {:<21} {:<40} {:<14} LIVE SESSIONS\n",
        "SIGN-IN", "CREATED", "EXPIRES", "ADDRESS", "SECOND FACTOR"
    );
    let sign_ins = ctx.store.sessions_of(name).map_err(store_err)?;
    ctx.audit
        .append(&crate::audit::Event::SignInsListed {
            user: name.to_owned(),
            sign_ins: sign_ins.len(),
        })
        .map_err(store_err)?;
    for (id, s) in sign_ins {
        let live = match &ctx.live {
            Some(l) => l.sessions_of_sign_in(&id).to_string(),
            None => "-".into(),
        };
        out.push_str(&format!(
            "{:<13} {:<21} {:<21} {:<40} {:<14} {live}\n",
            &id[..SIGN_IN_ID_SHOWN.min(id.len())],
            rfc3339(s.created),
            rfc3339(s.expires),
            s.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
            if s.second_factor { "yes" } else { "no" },
        ));
    }
    Ok(out.trim_end().to_owned())
}

fn user_sign_out(ctx: &AdminCtx, name: &str) -> Result<String, String> {
    if ctx.store.user(name).map_err(store_err)?.is_none() {
        return Err(format!("no user named {name}"));
    }
    let mut sign_ins = 0;
    let mut sessions = 0;
    for (id, _) in ctx.store.sessions_of(name).map_err(store_err)? {
        // The record first: a session opening meanwhile fails its check.
        if ctx.store.remove_session_by_id(&id).map_err(store_err)? {
            sign_ins += 1;
        }
        if let Some(live) = &ctx.live {
            sessions += live.sign_out(&id);
        }
    }
    ctx.store.flush().map_err(store_err)?;
    ctx.audit
        .append(&crate::audit::Event::SignOut {
            user: name.to_owned(),
            sign_ins,
            sessions,
            by_admin: true,
        })
        .map_err(store_err)?;
    tracing::info!(user = %name, sign_ins, sessions, "user signed out by an admin");
    Ok(format!(
        "user {name} signed out: {sign_ins} sign-in(s) ended, {sessions} live session(s) closed"
    ))
}

fn user_totp(ctx: &AdminCtx, name: &str) -> Result<String, String> {
    let secret = identity::enrol_totp(&ctx.store, name).map_err(|e| e.to_string())?;
    let host = ctx
        .store
        .meta(META_PUBLIC_URL)
        .map_err(store_err)?
        .map(|u| u.trim_start_matches("https://").to_owned());
    let issuer = match host {
        Some(h) => format!("Sallyport {h}"),
        None => "Sallyport".to_owned(),
    };
    let uri = totp::otpauth_uri(&issuer, name, &secret);
    let qr = totp::qr_text(&uri)?;
    Ok(format!(
        "One-time codes are on for {name}: sign-in now asks for one.\n\
         Scan this QR code with an authenticator app (or enter the URI below):\n\n{qr}\n{uri}"
    ))
}

fn device_add(
    ctx: &AdminCtx,
    name: &str,
    attributes: BTreeMap<String, String>,
) -> Result<String, String> {
    check_name("device name", name).map_err(|e| e.to_string())?;
    for (k, v) in &attributes {
        check_name("device attribute", k).map_err(|e| e.to_string())?;
        if v.len() > 128 || v.contains(['\n', '\0']) {
            return Err(format!(
                "device attribute {k}: the value must be one line of at most 128 bytes"
            ));
        }
    }
    if ctx.store.device(name).map_err(store_err)?.is_some() {
        return Err(format!(
            "device {name} already exists; revoke it or pick another name"
        ));
    }
    let issued = ctx.ca.issue_device(name).map_err(|e| e.to_string())?;
    ctx.store
        .put_device(&DeviceRecord {
            name: name.to_owned(),
            cert_sha256: issued.cert_sha256,
            attributes,
            created: now_secs(),
            expires: issued.expires,
            revoked: false,
        })
        .map_err(store_err)?;
    serde_json::to_string(&DeviceIssued {
        name: name.to_owned(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    })
    .map_err(|e| e.to_string())
}

fn device_list(ctx: &AdminCtx) -> Result<String, String> {
    let mut out = format!("{:<24} {:<8} ATTRIBUTES\n", "NAME", "STATE");
    for d in ctx.store.devices().map_err(store_err)? {
        let attrs: Vec<String> = d
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "{:<24} {:<8} {}\n",
            d.name,
            if d.revoked { "revoked" } else { "active" },
            attrs.join(",")
        ));
    }
    Ok(out.trim_end().to_owned())
}

fn device_revoke(ctx: &AdminCtx, name: &str) -> Result<String, String> {
    let mut d = ctx
        .store
        .device(name)
        .map_err(store_err)?
        .ok_or_else(|| format!("no device named {name}"))?;
    d.revoked = true;
    ctx.store.put_device(&d).map_err(store_err)?;
    Ok(format!(
        "device {name} revoked; its certificate no longer counts as a device"
    ))
}

fn policy_test(ctx: &AdminCtx, t: PolicyTest) -> Result<String, String> {
    let handle = ctx
        .policy
        .as_ref()
        .ok_or("the relay is not running: give --config with the policy to test")?;
    let policy = handle.current();
    let req = decide::Request {
        user: &t.user,
        second_factor: t.second_factor,
        ip: t.ip,
        device: match t.device {
            Some(d) => decide::DeviceRef::Name(d),
            None => decide::DeviceRef::None,
        },
        service: &t.service,
        at: t.at.unwrap_or_else(now_secs),
        stage: Stage::Test,
        risk: t.risk,
        country: t.country,
    };
    let (inputs, decision) =
        decide::decide(&ctx.store, &ctx.audit, &policy, &req).map_err(|e| e.to_string())?;
    let device = match &inputs.device {
        Some(d) => {
            let attrs: Vec<String> = d
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{} ({})", d.name, attrs.join(","))
        }
        None => "none".into(),
    };
    let mut out = format!(
        "decision: {}\nreason:   {}\ninputs:   user={} groups={} service={} ip={} country={} device={} second_factor={} risk={} at={}\nrules:\n",
        if decision.allowed { "allow" } else { "deny" },
        decision.reason,
        inputs.user,
        if inputs.groups.is_empty() { "-".into() } else { inputs.groups.join(",") },
        inputs.service,
        inputs.ip,
        inputs.country.as_deref().unwrap_or("-"),
        device,
        if inputs.second_factor { "yes" } else { "no" },
        inputs.risk,
        inputs.at,
    );
    for line in decision.trace {
        out.push_str(&format!("  {line}\n"));
    }
    Ok(out.trim_end().to_owned())
}

fn policy_log(ctx: &AdminCtx, limit: usize) -> Result<String, String> {
    let filter = Filter {
        kind: Some("decision".into()),
        ..Default::default()
    };
    let lines: Vec<String> = ctx
        .audit
        .list_last(&filter, limit)
        .map_err(store_err)?
        .into_iter()
        .map(|r| r.event.to_string())
        .collect();
    Ok(lines.join("\n"))
}

fn store_err(e: crate::store::StoreError) -> String {
    e.to_string()
}

fn connector_add(ctx: &AdminCtx, name: &str, ttl_secs: u64) -> Result<String, String> {
    check_name("connector name", name).map_err(|e| e.to_string())?;
    let relay = ctx.store.meta(META_TUNNEL_ADDR).map_err(store_err)?.ok_or_else(|| {
        "the relay's tunnel address is not known yet: start `sallyport-relay serve` once with this --data-dir".to_string()
    })?;
    match ctx.store.connector(name).map_err(store_err)? {
        Some(c) if c.state == ConnectorState::Enrolled => {
            return Err(format!(
                "connector {name} is already enrolled; revoke it first or pick another name"
            ))
        }
        Some(c) if c.state == ConnectorState::Revoked => {
            return Err(format!("connector {name} was revoked; pick another name"))
        }
        Some(_) => {}
        None => ctx
            .store
            .put_connector(&ConnectorRecord {
                name: name.to_owned(),
                state: ConnectorState::Pending,
                created: now_secs(),
                cert_sha256: None,
                last_seen: None,
                services: Vec::new(),
            })
            .map_err(store_err)?,
    }
    let secret = random_secret(24);
    let expires = now_secs() + ttl_secs;
    ctx.store
        .put_token(
            &secret,
            &crate::store::TokenRecord {
                connector: name.to_owned(),
                expires,
                used: false,
            },
        )
        .map_err(store_err)?;
    let token = EnrolmentToken {
        relay,
        ca_sha256: ctx.ca.fingerprint(),
        secret,
        expires,
    };
    Ok(format!(
        "Enrolment token for connector {name}, single use, valid for {ttl_secs} s. On the connector's host run:\n  \
         sallyport-connector run --token TOKEN --state-dir /var/lib/sallyport-connector --service NAME=HOST:PORT\n{}",
        token.encode()
    ))
}

fn connector_list(ctx: &AdminCtx) -> Result<String, String> {
    let online = ctx
        .registry
        .as_ref()
        .map(|r| r.online())
        .unwrap_or_default();
    let mut out = format!(
        "{:<24} {:<9} {:<7} {:<20} SERVICES\n",
        "NAME", "STATE", "ONLINE", "LAST SEEN"
    );
    for c in ctx.store.connectors().map_err(store_err)? {
        let state = match c.state {
            ConnectorState::Pending => "pending",
            ConnectorState::Enrolled => "enrolled",
            ConnectorState::Revoked => "revoked",
        };
        let conns = online.get(&c.name).copied().unwrap_or(0);
        let seen = c
            .last_seen
            .map(|t| format!("{}s ago", now_secs().saturating_sub(t)))
            .unwrap_or_else(|| "never".into());
        let services: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
        out.push_str(&format!(
            "{:<24} {:<9} {:<7} {:<20} {}\n",
            c.name,
            state,
            if conns > 0 {
                format!("yes({conns})")
            } else {
                "no".into()
            },
            seen,
            services.join(",")
        ));
    }
    Ok(out.trim_end().to_owned())
}

fn connector_revoke(ctx: &AdminCtx, name: &str) -> Result<String, String> {
    let mut rec = ctx
        .store
        .connector(name)
        .map_err(store_err)?
        .ok_or_else(|| format!("no connector named {name}"))?;
    rec.state = ConnectorState::Revoked;
    ctx.store.put_connector(&rec).map_err(store_err)?;
    ctx.audit
        .append(&crate::audit::Event::ConnectorRevoked {
            connector: name.to_owned(),
        })
        .map_err(store_err)?;
    let closed = ctx
        .registry
        .as_ref()
        .map(|r| {
            r.close_connector(
                name,
                sallyport_proto::tunnel::code::REVOKED,
                &format!("connector {name} was revoked"),
            )
        })
        .unwrap_or(0);
    Ok(format!(
        "connector {name} revoked; {closed} live connection(s) closed"
    ))
}

/// Serves admin commands on the Unix socket until `shutdown`.
pub async fn serve_socket(
    path: PathBuf,
    ctx: Arc<AdminCtx>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = shutdown.cancelled() => break,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(stream, &ctx).await {
                tracing::warn!(error = %e, "admin socket request failed");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn serve_one(stream: UnixStream, ctx: &Arc<AdminCtx>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(r).take(MAX_REQUEST_LEN as u64);
    reader.read_to_string(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => {
            let ctx = ctx.clone();
            // Password hashing and sled writes block: keep them off the workers.
            match tokio::task::spawn_blocking(move || execute(&ctx, req)).await {
                Ok(Ok(output)) => Reply { ok: true, output },
                Ok(Err(output)) => Reply { ok: false, output },
                Err(e) => Reply {
                    ok: false,
                    output: format!("command failed: {e}"),
                },
            }
        }
        Err(e) => Reply {
            ok: false,
            output: format!("bad admin request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Sends `req` to a running relay; `None` when no relay listens on the socket.
pub async fn send_to_running(data_dir: &Path, req: &Request) -> Option<std::io::Result<Reply>> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.ok()?;
    Some(
        async {
            let (r, mut w) = stream.into_split();
            let mut body = serde_json::to_vec(req).map_err(std::io::Error::other)?;
            body.push(b'\n');
            w.write_all(&body).await?;
            w.shutdown().await?;
            let mut line = String::new();
            let mut reader = BufReader::new(r).take(1 << 20);
            tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut line))
                .await
                .map_err(|_| {
                    std::io::Error::other("the relay did not answer the admin command")
                })??;
            serde_json::from_str(&line).map_err(std::io::Error::other)
        }
        .await,
    )
}
