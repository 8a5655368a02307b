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
            std::io::ErrorKind::NotFound => {
                ClientError::Usage("not signed in: run `sallyport login --relay URL`".into())
            }
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

    /// Whether the sign-in has ended by its time (the relay may have ended
    /// it earlier: signed out elsewhere, or by an admin).
    pub fn expired(&self, now: u64) -> bool {
        self.expires <= now
    }

    /// Deletes the stored credentials; `false` when there were none.
    pub fn forget(dir: &Path) -> Result<bool, ClientError> {
        let path = file(dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ClientError::File { path, source }),
        }
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

/// `secs` (Unix time) as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A span of seconds as people read it: `11h 59m`, `5m 3s`, `42s`.
pub fn span(secs: u64) -> String {
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_045_262), "2026-11-30 13:27:42 UTC");
        assert_eq!(super::span(43_170), "11h 59m");
        assert_eq!(super::span(303), "5m 3s");
    }
}
