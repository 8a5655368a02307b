//! Credentials stored by `sallyport login`: the relay URL, the bearer token
//! and the CA certificate to trust for it, in `$SALLYPORT_HOME` (default
//! `~/.config/sallyport`), readable by the user only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClientError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// `https://host[:port]`, without a trailing slash.
    pub relay: String,
    pub user: String,
    pub token: String,
    pub expires: u64,
    /// PEM of the certificate to trust for the relay (from `--ca-cert`);
    /// the public web PKI roots when absent.
    pub ca_pem: Option<String>,
}

/// `$SALLYPORT_HOME`, or `~/.config/sallyport`.
pub fn home() -> Result<PathBuf, ClientError> {
    if let Some(h) = std::env::var_os("SALLYPORT_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| ClientError::Usage("set HOME or SALLYPORT_HOME".into()))?;
    Ok(PathBuf::from(home).join(".config/sallyport"))
}

fn file(dir: &Path) -> PathBuf {
    dir.join("credentials.json")
}

impl Credentials {
    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        let path = file(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ClientError::Usage(
                "not signed in: run `sallyport login --relay URL --user NAME --password-stdin`"
                    .into(),
            ),
            _ => ClientError::File {
                path: path.clone(),
                source: e,
            },
        })?;
        serde_json::from_str(&text).map_err(|e| ClientError::File {
            path,
            source: std::io::Error::other(e),
        })
    }

    pub fn save(&self, dir: &Path) -> Result<(), ClientError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ClientError::File { path, source }
        };
        sallyport_common::fs::create_private_dir(dir).map_err(io(dir))?;
        let path = file(dir);
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| ClientError::Usage(e.to_string()))?;
        sallyport_common::fs::write_private(&path, &json).map_err(io(&path))
    }
}
