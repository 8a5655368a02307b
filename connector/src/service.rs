//! `sallyport-connector service install` and `service uninstall`: set a
//! connector up as a system service in one command, as cloudflared's
//! `service install` does.
//!
//! `install` writes the config file the packaged unit reads
//! (`/etc/sallyport/connector.toml`: mode 0640, group `sallyport-connector`,
//! so the service reads it and other users cannot read the token), and then
//! enables and starts the unit when systemd runs this host. The token stays
//! in the file for the first start, which enrols ([`crate::enrol_or_load`]);
//! later starts ignore it, as they do a token given on the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sallyport_proto::token::EnrolmentToken;

use crate::config::{FileConfig, MAX_HA_CONNECTIONS};
use crate::parse_service;

/// The config file the packaged unit reads.
pub const DEFAULT_CONFIG: &str = "/etc/sallyport/connector.toml";
/// The state directory of the packaged unit (its `StateDirectory=`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sallyport-connector";
/// The system user and group the package creates and the unit runs as.
pub const SERVICE_GROUP: &str = "sallyport-connector";
/// The packaged systemd unit.
pub const UNIT: &str = "sallyport-connector.service";
/// The config file's mode: its owner writes, the service's group reads.
pub const CONFIG_MODE: u32 = 0o640;
/// Exists when systemd is the running init system (what `sd_booted(3)` checks).
pub const SYSTEMD_RUNNING: &str = "/run/systemd/system";
/// The most `--token-file` may hold; a token is a few hundred bytes.
pub const MAX_TOKEN_FILE_BYTES: u64 = 16 * 1024;

/// `service install`: write the config file and start the service.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// Enrolment token printed by `sallyport-relay connector add`. On a
    /// shared host prefer --token-file: a command line is visible to every
    /// local user while it runs, and stays in shell history.
    #[arg(long, env = "SALLYPORT_TOKEN", required_unless_present = "token_file")]
    pub token: Option<String>,
    /// Read the enrolment token from this file, or from standard input
    /// with `-`.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// A service to expose, NAME=HOST:PORT (repeatable, at least one).
    #[arg(long = "service", required = true, value_parser = parse_service)]
    pub services: Vec<(String, String)>,
    /// host:port of the relay's tunnel listener [default: the token's].
    #[arg(long)]
    pub relay: Option<String>,
    /// QUIC connections to keep open to the relay [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=MAX_HA_CONNECTIONS as i64))]
    pub ha_connections: Option<u16>,
    /// The config file to write.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The state directory the config file names. The packaged unit may
    /// write only its own StateDirectory (ProtectSystem=strict): another
    /// path also needs `ReadWritePaths=` in `systemctl edit sallyport-connector`.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The group that may read the config file (the service's).
    #[arg(long, default_value = SERVICE_GROUP)]
    pub group: String,
    /// Replace an existing config file that sets a token or a service (and
    /// restart the service); the package's example is replaced without it.
    #[arg(long)]
    pub force: bool,
    /// Only write the config file: do not enable or start the service.
    #[arg(long)]
    pub no_start: bool,
}

/// `service uninstall`: stop the service and remove its config file.
#[derive(Debug, Clone, clap::Args)]
pub struct UninstallArgs {
    /// The config file to remove.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Only remove the config file: do not stop or disable the service.
    #[arg(long)]
    pub no_stop: bool,
}

/// Why `service install` or `uninstall` did not finish; each message says
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The config file exists and `--force` was not given.
    #[error("{0} exists: pass --force to replace it (the connector keeps its enrolment)")]
    Exists(PathBuf),
    /// The service's group does not exist.
    #[error(
        "group {0} does not exist: install the sallyport-connector package first, or pass --group"
    )]
    NoGroup(String),
    /// The token does not decode, or is missing.
    #[error("bad --token: {0}")]
    Token(String),
    /// A file could not be written, read or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// `systemctl` failed (its command line and what it said).
    #[error("`{0}` failed: {1}")]
    Systemctl(String, String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServiceError + '_ {
    move |source| ServiceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `install` writes above the settings.
const HEADER: &str = "\
# Written by `sallyport-connector service install`; the sallyport-connector
# service reads it (`sallyport-connector run --config` this file). Every key of
# /usr/share/doc/sallyport-connector/examples/connector.toml may be set here.
# The token is used on the first start only, to enrol; later starts ignore it.
";

/// The token from `--token` or `--token-file` (`-`: standard input),
/// trimmed; at most [`MAX_TOKEN_FILE_BYTES`] are read.
fn read_token(args: &InstallArgs) -> Result<String, ServiceError> {
    use sallyport_common::fs::read_bounded;
    let text = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => {
            let bytes = if path == Path::new("-") {
                read_bounded(std::io::stdin(), MAX_TOKEN_FILE_BYTES)
            } else {
                std::fs::File::open(path).and_then(|f| read_bounded(f, MAX_TOKEN_FILE_BYTES))
            };
            // A token is ASCII: other bytes fail to decode with the reason.
            String::from_utf8_lossy(&bytes.map_err(io(path))?).into_owned()
        }
        (None, None) => return Err(ServiceError::Token("give --token or --token-file".into())),
    };
    Ok(text.trim().to_owned())
}

/// The config file's text for `args` with `token`.
fn config_text(args: &InstallArgs, token: &str) -> Result<String, ServiceError> {
    let file = FileConfig {
        token: Some(token.to_owned()),
        state_dir: Some(args.state_dir.clone()),
        relay: args.relay.clone(),
        ha_connections: args.ha_connections,
        services: args.services.iter().cloned().collect(),
        ..Default::default()
    };
    let body = toml::to_string(&file).map_err(|e| ServiceError::Token(e.to_string()))?;
    Ok(format!("{HEADER}\n{body}"))
}

/// Writes the config file (0640, group `args.group`), refusing to replace
/// one without `--force`, then enables and starts the unit when systemd
/// runs this host (restarting it when a file was replaced), or says how to
/// start the connector when it does not. Progress goes to `out`.
pub fn install(args: &InstallArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    // A mistyped token fails now, not at the service's first start.
    let token = read_token(args)?;
    EnrolmentToken::decode(&token).map_err(|e| ServiceError::Token(e.to_string()))?;
    let gid = nix::unistd::Group::from_name(&args.group)
        .ok()
        .flatten()
        .ok_or_else(|| ServiceError::NoGroup(args.group.clone()))?
        .gid;
    let text = config_text(args, &token)?;
    let path = &args.config;
    // The package's own file (every setting commented out) is there to be
    // replaced; a file that configures a connector is not, without --force.
    let replaced = path.exists() && !is_unconfigured(path);
    if replaced && !args.force {
        return Err(ServiceError::Exists(path.clone()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Staged beside the file with its final mode and group, then renamed:
    // the token is never readable by others, not even for a moment.
    let staged = tempfile::Builder::new()
        .prefix(".connector.toml.")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(CONFIG_MODE))
        .tempfile_in(dir)
        .map_err(io(dir))?;
    std::os::unix::fs::fchown(staged.as_file(), None, Some(gid.as_raw())).map_err(io(path))?;
    // The umask may have narrowed the mode the file was created with.
    std::fs::set_permissions(
        staged.path(),
        std::os::unix::fs::PermissionsExt::from_mode(CONFIG_MODE),
    )
    .map_err(io(path))?;
    staged
        .as_file()
        .write_all(text.as_bytes())
        .and_then(|()| staged.as_file().sync_all())
        .map_err(io(path))?;
    // Checked above: replacing is what was asked for.
    staged.persist(path).map_err(|e| ServiceError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    let _ = writeln!(
        out,
        "wrote {} (mode 0640, group {})",
        path.display(),
        args.group
    );
    if args.no_start {
        return Ok(());
    }
    if !Path::new(SYSTEMD_RUNNING).is_dir() {
        let _ = writeln!(
            out,
            "systemd is not running on this host, so nothing was started. Start the connector with\n  \
             sallyport-connector run --config {}\nas the {} user, with {} its own.",
            path.display(),
            args.group,
            args.state_dir.display()
        );
        return Ok(());
    }
    systemctl(&["enable", "--now", UNIT])?;
    if replaced {
        systemctl(&["restart", UNIT])?;
    }
    let _ = writeln!(
        out,
        "{UNIT} is enabled and started; follow it with `journalctl -u {UNIT} -f`"
    );
    Ok(())
}

/// Stops and disables the unit when systemd runs this host, then removes
/// the config file. The state directory (the enrolled identity) stays.
pub fn uninstall(args: &UninstallArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    if !args.no_stop && Path::new(SYSTEMD_RUNNING).is_dir() {
        systemctl(&["disable", "--now", UNIT])?;
        let _ = writeln!(out, "stopped and disabled {UNIT}");
    }
    match std::fs::remove_file(&args.config) {
        Ok(()) => {
            let _ = writeln!(out, "removed {}", args.config.display());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&args.config)(e)),
    }
    let _ = writeln!(
        out,
        "the connector's identity stays in its state directory ({DEFAULT_STATE_DIR} for the service); \
         revoke it on the relay with `sallyport-relay connector revoke`"
    );
    Ok(())
}

/// Whether the config file at `path` sets neither a token nor a service:
/// the example the package installs, or an empty file.
fn is_unconfigured(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| toml::from_str::<FileConfig>(&text).ok())
        .is_some_and(|f| f.token.is_none() && f.services.is_empty())
}

fn systemctl(args: &[&str]) -> Result<(), ServiceError> {
    let line = format!("systemctl {}", args.join(" "));
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| ServiceError::Systemctl(line.clone(), e.to_string()))?;
    if !out.status.success() {
        return Err(ServiceError::Systemctl(
            line,
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::config::RunArgs;

    fn token() -> String {
        EnrolmentToken {
            relay: "relay.example:4433".into(),
            ca_sha256: "ab".repeat(32),
            secret: "s".repeat(32),
            expires: u64::MAX,
        }
        .encode()
    }

    #[test]
    fn install_writes_a_config_run_reads_and_refuses_to_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        let group = nix::unistd::Group::from_gid(nix::unistd::getegid())
            .unwrap()
            .unwrap();
        let args = InstallArgs {
            token: None,
            token_file: Some(dir.path().join("token")),
            services: vec![
                ("web1".into(), "127.0.0.1:22".into()),
                ("db".into(), "tcp://db:5432".into()),
            ],
            relay: None,
            ha_connections: Some(3),
            config: dir.path().join("etc/connector.toml"),
            state_dir: dir.path().join("state"),
            group: group.name.clone(),
            force: false,
            // Never enable a unit on a test machine that runs systemd.
            no_start: Path::new(SYSTEMD_RUNNING).is_dir(),
        };
        std::fs::write(dir.path().join("token"), format!("{}\n", token())).unwrap();
        // The package's example (nothing set) is replaced without --force.
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/connector.toml"),
            &args.config,
        )
        .unwrap();
        let mut out = Vec::new();
        install(&args, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let meta = std::fs::metadata(&args.config).unwrap();
        assert_eq!(meta.mode() & 0o777, CONFIG_MODE);
        assert_eq!(meta.gid(), group.gid.as_raw());
        if !Path::new(SYSTEMD_RUNNING).is_dir() {
            assert!(out.contains("systemd is not running"), "{out}");
            assert!(out.contains("sallyport-connector run --config"), "{out}");
        }

        // What `run --config` makes of it.
        let settings = RunArgs {
            config: Some(args.config.clone()),
            ..Default::default()
        }
        .resolve(None, None)
        .unwrap();
        assert_eq!(settings.run.token, Some(token()));
        assert_eq!(settings.run.state_dir, args.state_dir);
        assert_eq!(settings.run.ha_connections, 3);
        let mut services = settings.run.services.clone();
        services.sort();
        assert_eq!(
            services,
            vec![
                ("db".into(), "tcp://db:5432".into()),
                ("web1".into(), "127.0.0.1:22".into())
            ]
        );

        let before = std::fs::read(&args.config).unwrap();
        let mut again = args.clone();
        again.services = vec![("other".into(), "127.0.0.1:2222".into())];
        let err = install(&again, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ServiceError::Exists(_)), "{err}");
        assert!(err.to_string().contains("--force"));
        assert_eq!(
            std::fs::read(&args.config).unwrap(),
            before,
            "left as it was"
        );
        again.force = true;
        again.no_start = true;
        install(&again, &mut Vec::new()).unwrap();
        assert!(std::fs::read_to_string(&args.config)
            .unwrap()
            .contains("other = \"127.0.0.1:2222\""));

        let err = install(
            &InstallArgs {
                token: Some("spt1-nonsense".into()),
                token_file: None,
                force: true,
                ..args.clone()
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, ServiceError::Token(_)), "{err}");
        let err = install(
            &InstallArgs {
                group: "no-such-group-here".into(),
                force: true,
                ..args.clone()
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, ServiceError::NoGroup(_)), "{err}");

        uninstall(
            &UninstallArgs {
                config: args.config.clone(),
                no_stop: true,
            },
            &mut Vec::new(),
        )
        .unwrap();
        assert!(!args.config.exists());
    }
}
