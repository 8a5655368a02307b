//! Admin commands (`user add`, `connector add|list|revoke`).
//!
//! The same [`execute`] runs whether the relay is up or not: a running relay
//! holds the sled database, so it serves the commands on a Unix socket in the
//! data dir (mode 0600); when no relay answers there, the command opens the
//! database itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sallyport_proto::frame::check_name;
use sallyport_proto::token::EnrolmentToken;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::identity;
use crate::pki::RelayCa;
use crate::store::{ConnectorRecord, ConnectorState, Store};
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
}

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
    }
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
