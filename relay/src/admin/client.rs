//! Running an admin command from the CLI: through the running relay's
//! socket when one answers, or on the data dir directly when none does.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use super::{AdminCtx, Request};
use crate::admin;
use crate::pki::RelayCa;
use crate::policy::PolicyHandle;

/// Runs an admin command and prints its output as it comes.
pub async fn admin_command(data_dir: &Path, req: Request) -> anyhow::Result<()> {
    let mut stdout = admin::WriteSink(std::io::BufWriter::new(std::io::stdout().lock()));
    let result = admin_to(data_dir, req, &mut stdout, None).await;
    use std::io::Write as _;
    let flushed = stdout.0.flush();
    result?;
    flushed.context("cannot write the output")
}

/// Runs an admin command and returns its output, for the commands whose
/// output the CLI reads (a few lines).
pub async fn admin_output(
    data_dir: &Path,
    req: Request,
    config: Option<&Path>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    admin_to(data_dir, req, &mut out, config).await?;
    Ok(out.trim_end().to_owned())
}

/// Runs an admin command through the running relay, or on the data dir
/// directly (with the policy of `config`, if given), writing its output to
/// `out` as it comes.
pub async fn admin_to(
    data_dir: &Path,
    req: Request,
    out: &mut dyn admin::Sink,
    config: Option<&Path>,
) -> anyhow::Result<()> {
    // Before talking to the socket in it: in a data dir others can swap,
    // the socket may not be the relay's.
    if data_dir.exists() {
        crate::data_dir::prepare(data_dir)?;
    }
    if let Some(reply) = admin::send_to_running(data_dir, &req, out).await {
        return reply.map_err(|e| match e {
            admin::AdminError::Failed(text) => anyhow::Error::msg(text),
            other => anyhow::Error::new(other),
        });
    }
    let location = crate::config::StoreLocation::for_admin(config).map_err(anyhow::Error::msg)?;
    if location == crate::config::StoreLocation::Sled && !data_dir.join("db").exists() {
        anyhow::bail!(
            "{} holds no relay data: start `sallyport-relay serve --data-dir {}` once first",
            data_dir.display(),
            data_dir.display()
        );
    }
    let store = location.open(data_dir).await?;
    // On PostgreSQL the CA is the cluster's (tokens carry its fingerprint).
    let ca = match store.postgres() {
        Some(pg) => {
            let path = crate::config::cluster_key_file_for_admin(config)
                .map_err(anyhow::Error::msg)?
                .ok_or(crate::cluster::ClusterError::NoKeyFile)?;
            let key = crate::cluster::ClusterKey::load(&path)?;
            crate::cluster::ClusterSecrets::new(pg.clone(), key)
                .adopting(data_dir)
                .relay_ca()
                .await?
        }
        None => RelayCa::load_or_create(data_dir)?,
    };
    let ctx = AdminCtx {
        audit: Arc::new(crate::audit::AuditLog::open(&store)?),
        store,
        ca: Arc::new(ca),
        registry: None,
        live: None,
        acme: None,
        policy: match config {
            Some(path) => Some(Arc::new(
                PolicyHandle::load(Some(path.to_owned()), Vec::new())
                    .map_err(anyhow::Error::msg)?,
            )),
            None => None,
        },
    };
    // sled blocks: off the async workers, but it may write to `out` here.
    tokio::task::block_in_place(|| admin::execute_to(&ctx, req, out)).map_err(anyhow::Error::msg)
}
