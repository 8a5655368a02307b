//! `sallyport ssh-config`: OpenSSH client configuration (ssh_config(5))
//! for the services a user may open, so that plain `ssh web1` goes through
//! the relay, checks the host key the connector attested, and logs in with
//! a certificate renewed on demand.
//!
//! For each service, a `Match` block whose `exec` runs `sallyport ssh-cert
//! --if-expiring` (renewing the certificate when it is about to end; the
//! block, and so the certificate, applies only when that succeeds), then a
//! `Host` block with the `ProxyCommand`, the known_hosts file and
//! `StrictHostKeyChecking yes`. The block ends with `Host *` so that lines
//! after it in the file stay global.
//!
//! The known_hosts file holds plain lines (`web1 ssh-ed25519 AAAA…`):
//! connectors attest the keys their sshd proves it holds, never host
//! certificates, so there is no `@cert-authority` to write. `HostKeyAlias`
//! makes OpenSSH look the service's name up there whatever `HostName` or
//! port say, and `GlobalKnownHostsFile none` keeps any other file from
//! vouching for a key. Rendering is pure; [`crate::ssh_config_file`]
//! writes.

use std::fmt::Write as _;
use std::path::Path;

use russh::keys::ssh_key::PublicKey;

use crate::api::ServiceEntry;
use crate::ClientError;

/// Where the blocks point: the programs and files they name, all absolute.
pub struct Setup<'a> {
    /// The `sallyport` binary (the running one).
    pub exe: &'a Path,
    /// The sign-in's directory (`--home`): which relay and whose sign-in.
    pub home: &'a Path,
    /// Where `ssh-cert` keeps keys and certificates.
    pub certs: &'a Path,
    /// The known_hosts file written beside the blocks.
    pub known_hosts: &'a Path,
    /// Load renewed certificates into ssh-agent (`--agent`).
    pub agent: bool,
    /// Renew this many seconds before a certificate ends (`--renew-before`).
    pub renew_before: u64,
}

/// What [`render`] made.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The `Match`/`Host` blocks, without marker lines.
    pub blocks: String,
    /// The known_hosts file's contents.
    pub known_hosts: String,
    /// The services given blocks, in order.
    pub services: Vec<String>,
    /// One line per service left out, and why.
    pub skipped: Vec<String>,
}

/// Whether `name` can stand as a `Host`/`Match host` pattern and a
/// known_hosts name as it is: letters, digits, `.`, `_`, `-`, not starting
/// with `-` or `.` (no pattern characters `*?!,`, no space, quote or `%`).
/// The relay checks service names the same way; this guards against a
/// relay that does not.
pub fn safe_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `path` for a shell command in ssh_config (`ProxyCommand`, `Match
/// exec`): single-quoted for the shell, `%` doubled for ssh's own
/// `%`-tokens. Errors for paths that cannot be quoted that way.
fn shell_path(path: &Path) -> Result<String, ClientError> {
    Ok(format!("'{}'", plain_path(path)?))
}

/// `path` as an ssh_config argument (`IdentityFile`, …): double-quoted,
/// `%` doubled.
fn config_path(path: &Path) -> Result<String, ClientError> {
    Ok(format!("\"{}\"", plain_path(path)?))
}

fn plain_path(path: &Path) -> Result<String, ClientError> {
    let text = path.to_str().ok_or_else(|| bad_path(path))?;
    if !path.is_absolute()
        || text
            .chars()
            .any(|c| matches!(c, '"' | '\'' | '\\') || c.is_control())
    {
        return Err(bad_path(path));
    }
    Ok(text.replace('%', "%%"))
}

fn bad_path(path: &Path) -> ClientError {
    ClientError::Usage(format!(
        "{} cannot be named in an ssh_config file (it must be absolute UTF-8 with no quotes, \
         backslashes or control characters); set SALLYPORT_HOME or move the binary",
        path.display()
    ))
}

/// The known_hosts lines for `service`: each attested key parsed and
/// written back without its comment, so a line can hold nothing but a key.
fn known_host_lines(service: &str, keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter_map(|k| {
            let mut key = PublicKey::from_openssh(k.trim()).ok()?;
            key.set_comment("");
            Some(format!("{service} {}", key.to_openssh().ok()?.trim()))
        })
        .collect()
}

/// Blocks for `services` (the relay's list): those allowed now, with
/// attested host keys and a name that is a safe token; the others are
/// listed in [`Rendered::skipped`].
pub fn render(setup: &Setup<'_>, services: &[ServiceEntry]) -> Result<Rendered, ClientError> {
    let exe = shell_path(setup.exe)?;
    let home = shell_path(setup.home)?;
    let known_hosts = config_path(setup.known_hosts)?;
    let mut out = Rendered::default();
    for s in services {
        if !safe_token(&s.name) {
            out.skipped.push(format!(
                "{:?}: not usable as an ssh_config host name",
                s.name
            ));
            continue;
        }
        if s.name.contains('.') {
            // `--write` puts the block first in ~/.ssh/config, so a block
            // for `github.com` or `db.corp.example` would take over every
            // `ssh` (and `git`) to that real host. Dotted names are left to
            // an explicit ProxyCommand.
            out.skipped.push(format!(
                "{}: looks like a DNS name, and a block for it would take over `ssh {}` \
                 for that host; reach it with `ssh -o ProxyCommand='sallyport proxy %n' {}`",
                s.name, s.name, s.name
            ));
            continue;
        }
        if !s.allowed {
            let why = s.reason.as_deref().unwrap_or("denied by the policy");
            out.skipped.push(format!("{}: {why}", s.name));
            continue;
        }
        let keys = known_host_lines(&s.name, &s.host_keys);
        if keys.is_empty() {
            out.skipped.push(format!(
                "{}: no attested host keys (offline, or not an SSH service); run again once it is online",
                s.name
            ));
            continue;
        }
        let name = &s.name;
        let b = &mut out.blocks;
        if s.ssh_certificates {
            let key = config_path(&crate::certs::key_path(setup.certs, name))?;
            let cert = config_path(&crate::certs::cert_path(setup.certs, name))?;
            let mut flags = String::new();
            if setup.renew_before != crate::certs::RENEW_MARGIN_SECS {
                let _ = write!(flags, " --renew-before {}", setup.renew_before);
            }
            if setup.agent {
                flags.push_str(" --agent");
            }
            // `host` is tested first, so the command runs for this service only.
            let _ = writeln!(
                b,
                "Match host {name} exec \"{exe} --home {home} ssh-cert --if-expiring{flags} %n\""
            );
            let _ = writeln!(b, "    IdentityFile {key}");
            let _ = writeln!(b, "    CertificateFile {cert}");
        }
        let _ = writeln!(b, "Host {name}");
        match s.ssh_principal.as_deref() {
            Some(user) if safe_token(user) => {
                let _ = writeln!(b, "    User {user}");
            }
            Some(user) => out.skipped.push(format!(
                "{name}: account {user:?} is not usable in ssh_config; give it with ssh -l"
            )),
            None => {}
        }
        let _ = writeln!(b, "    ProxyCommand {exe} --home {home} proxy %n");
        let _ = writeln!(b, "    HostKeyAlias {name}");
        let _ = writeln!(b, "    UserKnownHostsFile {known_hosts}");
        let _ = writeln!(b, "    GlobalKnownHostsFile none");
        let _ = writeln!(b, "    StrictHostKeyChecking yes");
        let _ = writeln!(b, "    UpdateHostKeys no");
        let _ = writeln!(b, "    CheckHostIP no");
        if s.ssh_certificates {
            let _ = writeln!(b, "    IdentitiesOnly yes");
        }
        for line in keys {
            out.known_hosts.push_str(&line);
            out.known_hosts.push('\n');
        }
        out.services.push(name.clone());
    }
    if !out.blocks.is_empty() {
        // Lines after this block in the file apply to every host again.
        out.blocks.push_str("Host *\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl comment";

    fn entry(name: &str) -> ServiceEntry {
        ServiceEntry {
            name: name.into(),
            online: true,
            allowed: true,
            reason: None,
            ssh_certificates: true,
            ssh_principal: Some("deploy".into()),
            host_keys: vec![KEY.into()],
        }
    }

    fn render_all(services: &[ServiceEntry]) -> Rendered {
        let home = PathBuf::from("/home/a/.config/sallyport");
        let setup = Setup {
            exe: Path::new("/usr/bin/sallyport"),
            home: &home,
            certs: &home.join("certs"),
            known_hosts: &home.join("known_hosts"),
            agent: false,
            renew_before: crate::certs::RENEW_MARGIN_SECS,
        };
        render(&setup, services).unwrap()
    }

    #[test]
    fn blocks_name_the_proxy_the_keys_and_the_certificate() {
        let r = render_all(&[entry("web1")]);
        assert_eq!(
            r.blocks,
            "Match host web1 exec \"'/usr/bin/sallyport' --home '/home/a/.config/sallyport' ssh-cert --if-expiring %n\"\n\
             \x20   IdentityFile \"/home/a/.config/sallyport/certs/web1\"\n\
             \x20   CertificateFile \"/home/a/.config/sallyport/certs/web1-cert.pub\"\n\
             Host web1\n\
             \x20   User deploy\n\
             \x20   ProxyCommand '/usr/bin/sallyport' --home '/home/a/.config/sallyport' proxy %n\n\
             \x20   HostKeyAlias web1\n\
             \x20   UserKnownHostsFile \"/home/a/.config/sallyport/known_hosts\"\n\
             \x20   GlobalKnownHostsFile none\n\
             \x20   StrictHostKeyChecking yes\n\
             \x20   UpdateHostKeys no\n\
             \x20   CheckHostIP no\n\
             \x20   IdentitiesOnly yes\n\
             Host *\n"
        );
        assert_eq!(
            r.known_hosts,
            "web1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
        );
    }

    #[test]
    fn unsafe_denied_and_keyless_services_are_skipped() {
        let mut denied = entry("db");
        denied.allowed = false;
        denied.reason = Some("needs a device certificate".into());
        let mut offline = entry("old");
        offline.host_keys.clear();
        let mut junk = entry("junk");
        junk.host_keys = vec!["junk".into(), "ssh-ed25519 !!".into()];
        let r = render_all(&[
            entry("web*"),
            entry("a b"),
            entry("-oProxyCommand=x"),
            entry("github.com"),
            denied,
            offline,
            junk,
        ]);
        assert!(r.services.is_empty(), "{:?}", r.services);
        assert!(r.blocks.is_empty());
        assert!(r.known_hosts.is_empty(), "{}", r.known_hosts);
        assert_eq!(r.skipped.len(), 7, "{:?}", r.skipped);
        assert!(r.skipped[3].contains("DNS name"), "{:?}", r.skipped);
        assert!(r.skipped[4].contains("needs a device certificate"));
    }

    #[test]
    fn a_key_line_holds_nothing_but_a_key() {
        let mut injected = entry("web2");
        injected.host_keys = vec![format!("{KEY}\n@cert-authority * {KEY}")];
        let r = render_all(&[injected]);
        for line in r.known_hosts.lines() {
            assert!(line.starts_with("web2 ssh-ed25519 "), "{line}");
            assert!(!line.contains("cert-authority"), "{line}");
        }
    }

    #[test]
    fn paths_are_quoted_and_percent_signs_doubled() {
        assert_eq!(
            shell_path(Path::new("/opt/my tools/100%/sallyport")).unwrap(),
            "'/opt/my tools/100%%/sallyport'"
        );
        assert!(shell_path(Path::new("/tmp/it's")).is_err());
        assert!(config_path(Path::new("relative")).is_err());
    }
}
