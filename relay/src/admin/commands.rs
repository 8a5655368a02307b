//! What each admin command does (`user add|totp|sign-ins|sign-out`, the
//! user lifecycle of `users.rs`,
//! `connector add|grant|ungrant|list|revoke`, `device add|list|revoke`,
//! `policy test|log`, `audit list|export|verify`, `recording export`), on
//! an [`AdminCtx`], writing what the CLI prints to a [`Sink`]. The same
//! code runs in the relay (for the socket) and in the CLI (on the data dir).

use crate::store::block_on;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use sallyport_common::secret::random_secret;
use sallyport_common::time::now_secs;
use sallyport_proto::frame::{check_name, service_name};
use sallyport_proto::token::EnrolmentToken;

use super::protocol::{DeviceIssued, PolicyTest, Request};
use super::users;
use crate::audit::{Actor, AuditLog, Event, Filter};
use crate::identity;
use crate::pki::RelayCa;
use crate::policy::{decide, PolicyHandle, Stage};
use crate::store::{ConnectorRecord, ConnectorState, DeviceRecord, Store};
use crate::totp;
use crate::tunnel::Registry;

/// Key in the store's meta tree holding the address connectors dial.
pub const META_TUNNEL_ADDR: &str = "public_tunnel_addr";

/// Where a command's output goes: a `String`, the CLI's standard output
/// ([`WriteSink`]), or the admin socket in pieces.
pub trait Sink {
    /// Appends `text`; an error (the reader went away) stops the command.
    fn write(&mut self, text: &str) -> Result<(), String>;
}

impl Sink for String {
    fn write(&mut self, text: &str) -> Result<(), String> {
        self.push_str(text);
        Ok(())
    }
}

/// A [`Sink`] over any writer (standard output, a file).
pub struct WriteSink<W: std::io::Write>(pub W);

impl<W: std::io::Write> Sink for WriteSink<W> {
    fn write(&mut self, text: &str) -> Result<(), String> {
        self.0
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write the output: {e}"))
    }
}

/// Key in the store's meta tree holding the relay's public URL.
pub const META_PUBLIC_URL: &str = "public_url";

/// What the commands act on.
pub struct AdminCtx {
    /// The relay's state.
    pub store: Store,
    /// The tunnel CA (enrolment tokens carry its fingerprint).
    pub ca: Arc<RelayCa>,
    /// Present when the relay is running: revocation closes live connections.
    pub registry: Option<Arc<Registry>>,
    /// The live policy of a running relay, or the one of `--config`.
    pub policy: Option<Arc<PolicyHandle>>,
    /// The audit log the commands write to and read.
    pub audit: Arc<AuditLog>,
    /// Present when the relay is running: `user sign-out` ends live sessions.
    pub live: Option<Arc<crate::live::LiveSessions>>,
    /// Present when the running relay gets its certificate over ACME: `acme renew`.
    pub acme: Option<Arc<crate::tls::acme::Acme>>,
}

/// Runs one admin command and returns its output, whole. For the short
/// commands (and tests); the CLI streams with `execute_to`.
pub fn execute(ctx: &AdminCtx, req: Request) -> Result<String, String> {
    let mut out = String::new();
    execute_to(ctx, req, &mut out)?;
    Ok(out.trim_end().to_owned())
}

/// Runs one admin command, writing what the CLI prints to `out` as it goes:
/// the commands whose output grows with the store (`audit list|export`,
/// `policy log`, `recording export`) write it a record at a time, so
/// their size is not limited by memory or by a message.
pub fn execute_to(ctx: &AdminCtx, req: Request, out: &mut dyn Sink) -> Result<(), String> {
    execute_as(ctx, &Actor::this_process(), req, out)
}

/// [`execute_to`] on behalf of `by`, whom the audit events of the command
/// name (the admin socket's peer).
pub fn execute_as(
    ctx: &AdminCtx,
    by: &Actor,
    req: Request,
    out: &mut dyn Sink,
) -> Result<(), String> {
    match req {
        Request::AuditList { filter, limit } => audit_list(ctx, &filter, limit, out),
        Request::AuditExport { filter } => audit_export(ctx, &filter, out),
        Request::PolicyLog { limit } => policy_log(ctx, limit, out),
        Request::RecordingExport { session } => {
            sallyport_proto::client::check_session_id(&session).map_err(|e| e.to_string())?;
            crate::audit::recording::export(&ctx.audit, &session, |line| out.write(line))
                .map_err(|e| e.to_string())
        }
        req => {
            let text = execute_short(ctx, by, req)?;
            out.write(&text)?;
            out.write("\n")
        }
    }
}

/// The commands whose output is a few lines.
fn execute_short(ctx: &AdminCtx, by: &Actor, req: Request) -> Result<String, String> {
    match req {
        Request::UserAdd {
            name,
            password,
            groups,
        } => {
            block_on(identity::add_user(&ctx.store, &name, &password, &groups))
                .map_err(|e| e.to_string())?;
            audit(
                ctx,
                Event::UserAdded {
                    user: name.clone(),
                    groups,
                    by: by.clone(),
                },
            )?;
            Ok(format!("user {name} added"))
        }
        Request::ConnectorAdd {
            name,
            ttl_secs,
            services,
            replace,
        } => connector_add(ctx, by, &name, ttl_secs, &services, replace).map(|t| t.text),
        Request::ConnectorGrant {
            name,
            service,
            grant,
        } => connector_grant(ctx, by, &name, &service, grant),
        Request::ConnectorList => connector_list(ctx),
        Request::ConnectorRevoke { name } => connector_revoke(ctx, by, &name),
        Request::UserTotp { name, off: false } => user_totp(ctx, by, &name),
        Request::UserTotp { name, off: true } => users::totp_off(ctx, by, &name),
        Request::UserSessions { name } => user_sessions(ctx, &name),
        Request::UserSignOut { name } => users::sign_out(ctx, by, &name),
        Request::UserList => users::list(ctx),
        Request::UserShow { name } => users::show(ctx, &name),
        Request::UserLock { name, lock } => users::lock(ctx, by, &name, lock),
        Request::UserRemove { name } => users::remove(ctx, by, &name),
        Request::UserPasswd { name, password } => users::passwd(ctx, by, &name, &password),
        Request::UserGroups { name, groups } => users::groups(ctx, by, &name, &groups),
        Request::SessionTerminate { stream } => users::terminate(ctx, by, &stream),
        Request::AcmeRenew => {
            match &ctx.acme {
                Some(acme) => {
                    acme.request_renewal();
                    Ok("ACME renewal started: the relay logs the new certificate (serial, not after) \
                    once new handshakes get it, or why the order failed"
                    .into())
                }
                None => Err(
                    "this relay does not get its certificate over ACME (set acme_domains), \
                         or it is not running"
                        .into(),
                ),
            }
        }
        Request::DeviceAdd { name, attributes } => device_add(ctx, by, &name, attributes),
        Request::DeviceList => device_list(ctx),
        Request::DeviceRevoke { name } => device_revoke(ctx, by, &name),
        Request::PolicyTest(t) => policy_test(ctx, t),
        Request::AuditVerify => match block_on(ctx.audit.verify()) {
            Ok(n) => {
                let tip = match block_on(ctx.audit.tip()).map_err(store_err)? {
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
        Request::AuditList { .. }
        | Request::AuditExport { .. }
        | Request::PolicyLog { .. }
        | Request::RecordingExport { .. } => {
            let mut out = String::new();
            execute_to(ctx, req, &mut out)?;
            Ok(out.trim_end().to_owned())
        }
    }
}

/// Calls `each` on the records `filter` picks, oldest first, until it
/// breaks or fails (its error is returned).
fn scan_records(
    ctx: &AdminCtx,
    filter: &Filter,
    mut each: impl FnMut(crate::audit::Record) -> Result<ControlFlow<()>, String>,
) -> Result<(), String> {
    let mut failed = None;
    ctx.audit
        .scan_blocking(filter, |r| match each(r) {
            Ok(flow) => flow,
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        })
        .map_err(store_err)?;
    failed.map_or(Ok(()), Err)
}

/// Calls `each` on the last `limit` records `filter` picks, oldest first.
fn scan_last(
    ctx: &AdminCtx,
    filter: &Filter,
    limit: usize,
    mut each: impl FnMut(crate::audit::Record) -> Result<(), String>,
) -> Result<(), String> {
    let Some(start) = block_on(ctx.audit.start_of_last(filter, limit)).map_err(store_err)? else {
        return Ok(());
    };
    let from = Filter {
        after_seq: start.checked_sub(1),
        ..filter.clone()
    };
    let mut left = limit;
    scan_records(ctx, &from, |r| {
        each(r)?;
        left -= 1;
        Ok(if left == 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })
}

fn audit_export(ctx: &AdminCtx, filter: &Filter, out: &mut dyn Sink) -> Result<(), String> {
    scan_records(ctx, filter, |r| {
        let mut line = serde_json::to_string(&r.view()).map_err(|e| e.to_string())?;
        line.push('\n');
        out.write(&line)?;
        Ok(ControlFlow::Continue(()))
    })
}

/// One line per event: sequence number, time, type, then its fields.
fn audit_list(
    ctx: &AdminCtx,
    filter: &Filter,
    limit: usize,
    out: &mut dyn Sink,
) -> Result<(), String> {
    scan_last(ctx, filter, limit, |r| {
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
                                fields.push(format!("{key}={v:?}"));
                            }
                        }
                    }
                    ("by", by @ serde_json::Value::Object(_)) => {
                        match serde_json::from_value::<Actor>(by.clone()) {
                            Ok(a) => fields.push(format!("by={:?}", a.describe())),
                            Err(_) => fields.push(format!("by={by}")),
                        }
                    }
                    (_, serde_json::Value::String(s)) => fields.push(format!("{k}={s:?}")),
                    (_, serde_json::Value::Null) => {}
                    _ => fields.push(format!("{k}={v}")),
                }
            }
        }
        out.write(&format!("{:>8} {at} {kind} {}\n", r.seq, fields.join(" ")))
    })
}

/// Unix time as RFC 3339 (UTC).
pub(super) fn rfc3339(secs: u64) -> String {
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
    if block_on(ctx.store.user(name)).map_err(store_err)?.is_none() {
        return Err(format!("no user named {name}"));
    }
    let mut out = format!(
        "{:<13} {:<21} {:<21} {:<40} {:<14} LIVE SESSIONS\n",
        "SIGN-IN", "CREATED", "EXPIRES", "ADDRESS", "SECOND FACTOR"
    );
    let sign_ins = block_on(ctx.store.sign_ins_of(name)).map_err(store_err)?;
    block_on(ctx.audit.append(&crate::audit::Event::SignInsListed {
        user: name.to_owned(),
        sign_ins: sign_ins.len(),
    }))
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

fn user_totp(ctx: &AdminCtx, by: &Actor, name: &str) -> Result<String, String> {
    let replaced = block_on(identity::user(&ctx.store, name))
        .map_err(|e| e.to_string())?
        .totp_secret
        .is_some();
    let secret = block_on(identity::enrol_totp(&ctx.store, name)).map_err(|e| e.to_string())?;
    audit(
        ctx,
        Event::TotpEnrolled {
            user: name.to_owned(),
            replaced,
            by: by.clone(),
        },
    )?;
    let host = block_on(ctx.store.meta(META_PUBLIC_URL))
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
    by: &Actor,
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
    if block_on(ctx.store.device(name))
        .map_err(store_err)?
        .is_some()
    {
        return Err(format!(
            "device {name} already exists; revoke it or pick another name"
        ));
    }
    let issued = ctx.ca.issue_device(name).map_err(|e| e.to_string())?;
    block_on(ctx.store.put_device(&DeviceRecord {
        name: name.to_owned(),
        cert_sha256: issued.cert_sha256,
        attributes: attributes.clone(),
        created: now_secs(),
        expires: issued.expires,
        revoked: false,
    }))
    .map_err(store_err)?;
    audit(
        ctx,
        Event::DeviceAdded {
            device: name.to_owned(),
            attributes,
            by: by.clone(),
        },
    )?;
    serde_json::to_string(&DeviceIssued {
        name: name.to_owned(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    })
    .map_err(|e| e.to_string())
}

fn device_list(ctx: &AdminCtx) -> Result<String, String> {
    let mut out = format!("{:<24} {:<8} ATTRIBUTES\n", "NAME", "STATE");
    for d in block_on(ctx.store.devices()).map_err(store_err)? {
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

fn device_revoke(ctx: &AdminCtx, by: &Actor, name: &str) -> Result<String, String> {
    let mut d = block_on(ctx.store.device(name))
        .map_err(store_err)?
        .ok_or_else(|| format!("no device named {name}"))?;
    d.revoked = true;
    block_on(ctx.store.put_device(&d)).map_err(store_err)?;
    audit(
        ctx,
        Event::DeviceRevoked {
            device: name.to_owned(),
            by: by.clone(),
        },
    )?;
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
    let (inputs, decision) = block_on(decide::decide(&ctx.store, &ctx.audit, &policy, &req))
        .map_err(|e| e.to_string())?;
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
    // What a certificate issued for this request would say.
    if decision.allowed && policy.certificates(&inputs.service) {
        let accounts = policy.principals(&inputs.user, &inputs.groups, &inputs.service);
        out.push_str(&format!(
            "certificate: accounts={} extensions={}\n",
            if accounts.is_empty() {
                "-".into()
            } else {
                accounts.join(",")
            },
            policy.permits(&inputs).extensions().join(","),
        ));
    }
    Ok(out.trim_end().to_owned())
}

fn policy_log(ctx: &AdminCtx, limit: usize, out: &mut dyn Sink) -> Result<(), String> {
    let filter = Filter {
        kind: Some("decision".into()),
        ..Default::default()
    };
    scan_last(ctx, &filter, limit, |r| {
        out.write(&format!("{}\n", r.event))
    })
}

pub(super) fn store_err(e: crate::store::StoreError) -> String {
    e.to_string()
}

/// Appends an admin command's audit event; flushed before the command
/// answers.
pub(super) fn audit(ctx: &AdminCtx, event: Event) -> Result<(), String> {
    block_on(ctx.audit.append(&event))
        .map(drop)
        .map_err(store_err)
}

/// An enrolment token as `connector add` issues it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token, encoded (`sallyport-connector run --token`). Shown once:
    /// the relay keeps only what checks it.
    pub token: String,
    /// Unix seconds after which it no longer enrols.
    pub expires: u64,
    /// What the connector may serve once enrolled.
    pub granted: Vec<String>,
    /// What the CLI prints: the token's terms, how to use it, the token last.
    pub text: String,
}

/// `connector add`: issues a single-use enrolment token for connector
/// `name`, valid `ttl_secs`, granting it `services` (with `replace`, it may
/// enrol over an enrolled or revoked connector of that name); an
/// `enrolment_token_issued` audit event names `by`. Earlier unused tokens of
/// the name stop working.
pub fn connector_add(
    ctx: &AdminCtx,
    by: &Actor,
    name: &str,
    ttl_secs: u64,
    services: &[String],
    replace: bool,
) -> Result<IssuedToken, String> {
    check_name("connector name", name).map_err(|e| e.to_string())?;
    let mut canonical: Vec<String> = Vec::with_capacity(services.len());
    for (i, s) in services.iter().enumerate() {
        let c = service_name("service name", s).map_err(|e| e.to_string())?;
        if let Some(other) = services[..i]
            .iter()
            .find(|o| *o != s && o.eq_ignore_ascii_case(s))
        {
            return Err(format!(
                "services {other} and {s} differ only in case; service names are case-insensitive, give one"
            ));
        }
        canonical.push(c);
    }
    let services = &canonical;
    let relay = block_on(ctx.store.meta(META_TUNNEL_ADDR)).map_err(store_err)?.ok_or_else(|| {
        "the relay's tunnel address is not known yet: start `sallyport-relay serve` once with this --data-dir".to_string()
    })?;
    let mut granted: Vec<String> = services.to_vec();
    granted.sort();
    granted.dedup();
    match block_on(ctx.store.connector(name)).map_err(store_err)? {
        Some(c) if c.state == ConnectorState::Enrolled && !replace => {
            return Err(format!(
                "connector {name} is already enrolled; revoke it first or use connector add {name} --replace"
            ))
        }
        Some(c) if c.state == ConnectorState::Revoked && !replace => {
            return Err(format!(
                "connector {name} was revoked; use connector add {name} --replace to enrol it again"
            ))
        }
        Some(mut c) => {
            if !services.is_empty() {
                c.granted = Some(granted.clone());
                c.grants_migrated = false;
                block_on(ctx.store.put_connector(&c)).map_err(store_err)?;
                if let Some(r) = &ctx.registry {
                    block_on(r.reload_grants(name, &ctx.store));
                }
            }
        }
        None => block_on(ctx
            .store
            .put_connector(&ConnectorRecord::pending(name, granted.clone())))
            .map_err(store_err)?,
    }
    let secret = random_secret(24);
    let expires = now_secs() + ttl_secs;
    let withdrawn = block_on(ctx.store.issue_token(
        &secret,
        &crate::store::TokenRecord {
            connector: name.to_owned(),
            expires,
            used: false,
            replace,
        },
    ))
    .map_err(store_err)?;
    audit(
        ctx,
        Event::EnrolmentTokenIssued {
            connector: name.to_owned(),
            services: granted.clone(),
            expires,
            replace,
            by: by.clone(),
        },
    )?;
    let token = EnrolmentToken {
        relay,
        ca_sha256: ctx.ca.fingerprint(),
        secret,
        expires,
    };
    let grants = match block_on(ctx.store.connector(name)).map_err(store_err)? {
        Some(c) => c.granted.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut out =
        format!("Enrolment token for connector {name}, single use, valid for {ttl_secs} s.");
    if withdrawn > 0 {
        out.push_str(&format!(
            " {withdrawn} earlier unused token(s) for {name} no longer work."
        ));
    }
    if grants.is_empty() {
        out.push_str(&format!(
            "\nIt may serve no service yet: add one with `connector grant {name} SERVICE` (or --service)."
        ));
    } else {
        out.push_str(&format!("\nIt may serve: {}.", grants.join(", ")));
    }
    let encoded = token.encode();
    out.push_str(&format!(
        "\nOn the connector's host run:\n  \
         sallyport-connector run --token TOKEN --state-dir /var/lib/sallyport-connector --service NAME=HOST:PORT\n{encoded}"
    ));
    Ok(IssuedToken {
        token: encoded,
        expires,
        granted: grants,
        text: out,
    })
}

fn connector_grant(
    ctx: &AdminCtx,
    by: &Actor,
    name: &str,
    service: &str,
    grant: bool,
) -> Result<String, String> {
    let service = &service_name("service name", service).map_err(|e| e.to_string())?;
    let rec = block_on(ctx.store.set_grant(name, service, grant))
        .map_err(store_err)?
        .ok_or_else(|| format!("no connector named {name}"))?;
    let granted = rec.granted.unwrap_or_default();
    block_on(ctx.audit.append(&crate::audit::Event::ConnectorGrants {
        connector: name.to_owned(),
        service: service.to_owned(),
        granted: grant,
        by: Some(by.clone()),
    }))
    .map_err(store_err)?;
    if let Some(r) = &ctx.registry {
        block_on(r.reload_grants(name, &ctx.store));
    }
    let verb = if grant {
        "may now serve"
    } else {
        "may no longer serve"
    };
    Ok(format!(
        "connector {name} {verb} {service}; granted: {}",
        if granted.is_empty() {
            "nothing".to_owned()
        } else {
            granted.join(",")
        }
    ))
}

fn connector_list(ctx: &AdminCtx) -> Result<String, String> {
    let online = ctx
        .registry
        .as_ref()
        .map(|r| r.transports())
        .unwrap_or_default();
    let mut out = format!(
        "{:<24} {:<9} {:<7} {:<9} {:<20} {:<32} ANNOUNCED\n",
        "NAME", "STATE", "ONLINE", "TRANSPORT", "LAST SEEN", "GRANTED"
    );
    let mut migrated = false;
    for c in block_on(ctx.store.connectors()).map_err(store_err)? {
        let state = match c.state {
            ConnectorState::Pending => "pending",
            ConnectorState::Enrolled => "enrolled",
            ConnectorState::Revoked => "revoked",
        };
        // Each live connection's transport, once each: "quic", "tcp" or "quic,tcp".
        let transports = online.get(&c.name).cloned().unwrap_or_default();
        let conns = transports.len();
        let mut kinds: Vec<&str> = transports.iter().map(|t| t.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let transport = if kinds.is_empty() {
            "-".to_owned()
        } else {
            kinds.join(",")
        };
        let seen = c
            .last_seen
            .map(|t| format!("{}s ago", now_secs().saturating_sub(t)))
            .unwrap_or_else(|| "never".into());
        let granted = c.granted.clone().unwrap_or_default();
        let mut granted = if granted.is_empty() {
            "-".to_owned()
        } else {
            granted.join(",")
        };
        if c.grants_migrated {
            granted.push('*');
            migrated = true;
        }
        // Announced names the connector is refused are marked with a "!".
        let announced: Vec<String> = c
            .services
            .iter()
            .map(|s| {
                if c.may_serve(&s.name) {
                    s.name.clone()
                } else {
                    format!("{}!", s.name)
                }
            })
            .collect();
        out.push_str(&format!(
            "{:<24} {:<9} {:<7} {:<9} {:<20} {:<32} {}\n",
            c.name,
            state,
            if conns > 0 {
                format!("yes({conns})")
            } else {
                "no".into()
            },
            transport,
            seen,
            granted,
            if announced.is_empty() {
                "-".to_owned()
            } else {
                announced.join(",")
            }
        ));
    }
    if migrated {
        out.push_str(
            "* kept from what the connector announced before grants existed; \
             confirm with `connector grant NAME SERVICE`\n",
        );
    }
    out.push_str("! announced but not granted: refused\n");
    Ok(out.trim_end().to_owned())
}

fn connector_revoke(ctx: &AdminCtx, by: &Actor, name: &str) -> Result<String, String> {
    let mut rec = block_on(ctx.store.connector(name))
        .map_err(store_err)?
        .ok_or_else(|| format!("no connector named {name}"))?;
    rec.state = ConnectorState::Revoked;
    block_on(ctx.store.put_connector(&rec)).map_err(store_err)?;
    block_on(ctx.audit.append(&crate::audit::Event::ConnectorRevoked {
        connector: name.to_owned(),
        by: Some(by.clone()),
    }))
    .map_err(store_err)?;
    let closed = ctx
        .registry
        .as_ref()
        .map(|r| {
            r.close_connector(
                name,
                sallyport_proto::tunnel::Code::Revoked,
                &format!("connector {name} was revoked"),
            )
        })
        .unwrap_or(0);
    Ok(format!(
        "connector {name} revoked; {closed} live connection(s) closed"
    ))
}
