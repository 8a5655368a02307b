//! `--agent`: a key and its certificate loaded into the running ssh-agent
//! for as long as the certificate is valid, by OpenSSH's own `ssh-add -t`
//! (the agent protocol's key constraint, so the agent itself forgets the
//! key when the certificate ends; nothing here has to remember to).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::ClientError;

/// Loads the private key at `key` and the certificate beside it
/// (`KEY-cert.pub`, which `ssh-add` picks up itself) into the agent at
/// `$SSH_AUTH_SOCK`, to be forgotten after `lifetime_secs` (at least 1).
///
/// Errors: no agent (`SSH_AUTH_SOCK` unset, or nothing answers there),
/// `ssh-add` missing, or its refusal, each with what to do.
pub fn add(key: &Path, lifetime_secs: u64) -> Result<(), ClientError> {
    if std::env::var_os("SSH_AUTH_SOCK").is_none_or(|s| s.is_empty()) {
        return Err(ClientError::Usage(
            "--agent: no ssh-agent is running (SSH_AUTH_SOCK is not set); \
             start one with `eval \"$(ssh-agent)\"` or leave out --agent"
                .into(),
        ));
    }
    let out = Command::new("ssh-add")
        .arg("-q")
        .arg("-t")
        .arg(lifetime_secs.max(1).to_string())
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            ClientError::Usage(format!(
                "--agent: cannot run ssh-add ({e}); install OpenSSH's client"
            ))
        })?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    // ssh-add(1): exit status 2 when it cannot reach the agent.
    if out.status.code() == Some(2) {
        return Err(ClientError::Usage(format!(
            "--agent: no ssh-agent answers at SSH_AUTH_SOCK ({said}); \
             start one with `eval \"$(ssh-agent)\"` or leave out --agent"
        )));
    }
    Err(ClientError::Usage(format!(
        "--agent: ssh-add refused {}: {said}",
        key.display()
    )))
}
