//! Settings of `sallyport-connector run`: flags, `SALLYPORT_*` environment
//! variables and a TOML file (`--config`, `/etc/sallyport/connector.toml`
//! in the packages), in that order of precedence, as the relay's are.
//!
//! A setting is added in three places: a field of [`RunArgs`] (its flag and
//! variable), one of `FileConfig` (its key), and one line of
//! [`RunArgs::resolve`] that picks the first of the two that is set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dial::{TransportChoice, TransportConfig};
use crate::{parse_service, RunConfig};
use sallyport_common::logging::{self, LevelFilter};
use sallyport_common::time::parse_duration;

/// QUIC connections kept to the relay unless configured.
pub const DEFAULT_HA_CONNECTIONS: u16 = 2;
/// Most QUIC connections a connector may keep (the relay allows 32 each).
pub const MAX_HA_CONNECTIONS: u16 = 16;
/// How long open sessions may take to finish at shutdown unless configured.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest config file read: an admin's file, but read by a daemon.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// The settings of `sallyport-connector run` as given: flags, environment
/// and the config file, resolved by [`RunArgs::resolve`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// TOML file with any of the settings below (keys in snake_case; services
    /// as a [services] table of NAME = "HOST:PORT").
    // The doc comment is the help text: `[services]` is a TOML table, not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, env = "SALLYPORT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Enrolment token printed by `sallyport-relay connector add`; used on the
    /// first start only, ignored once enrolled.
    #[arg(long, env = "SALLYPORT_TOKEN")]
    pub token: Option<String>,
    /// Where the connector keeps its key, certificate and pinned relay CA.
    #[arg(long, env = "SALLYPORT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// host:port of the relay's tunnel listener [default: the one the
    /// enrolment token named].
    #[arg(long, env = "SALLYPORT_RELAY_ADDR")]
    pub relay: Option<String>,
    /// A service to expose, NAME=HOST:PORT (repeatable). Nothing else is
    /// reachable. Given here, these replace the config file's.
    #[arg(long = "service", env = "SALLYPORT_SERVICES", value_delimiter = ',', value_parser = parse_service)]
    pub services: Vec<(String, String)>,
    /// QUIC connections to keep open to the relay [default: 2].
    #[arg(long, env = "SALLYPORT_HA_CONNECTIONS",
          value_parser = clap::value_parser!(u16).range(1..=MAX_HA_CONNECTIONS as i64))]
    pub ha_connections: Option<u16>,
    /// Seconds to wait for open sessions on SIGTERM [default: 30].
    #[arg(long, env = "SALLYPORT_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,
    /// Serve /metrics, /healthz and /readyz in plain HTTP on this address,
    /// e.g. 127.0.0.1:9465 [default: off: the connector listens on nothing].
    #[arg(long, env = "SALLYPORT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// How to reach the relay: auto (QUIC, falling back to TCP when UDP
    /// gets no answer, and back to QUIC when it does), quic or tcp
    /// [default: auto].
    #[arg(long, env = "SALLYPORT_TRANSPORT", value_enum)]
    pub transport: Option<TransportChoice>,
    /// host:port of the relay's TCP tunnel listener [default: the relay
    /// address, on TCP].
    #[arg(long, env = "SALLYPORT_RELAY_TCP_ADDR")]
    pub relay_tcp: Option<String>,
    /// How often a connection that fell back to TCP tries QUIC again, a
    /// duration such as 30s (auto only) [default: 30s].
    #[arg(long, env = "SALLYPORT_QUIC_PROBE_INTERVAL")]
    pub quic_probe_interval: Option<String>,
}

/// How the connector logs (the file's `log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

/// What `connector.toml` may hold; `service install` writes it too.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ha_connections: Option<u16>,
    /// A duration such as `30s`, as in the relay's file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drain_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) log_format: Option<LogFormat>,
    /// off, error, warn, info, debug or trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// auto, quic or tcp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transport: Option<TransportChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relay_tcp: Option<String>,
    /// A duration such as `30s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) quic_probe_interval: Option<String>,
    /// NAME = "HOST:PORT" (or "tcp://HOST:PORT"); last, as TOML wants tables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) services: BTreeMap<String, String>,
}

/// Resolved settings of `sallyport-connector run`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What [`crate::run`] takes.
    pub run: RunConfig,
    /// Log as JSON lines.
    pub log_json: bool,
    /// Every target's level (`--log-level`, else `log_level`); `None`: the
    /// default. `RUST_LOG` overrides it.
    pub log_level: Option<LevelFilter>,
}

impl RunArgs {
    /// The settings in force: a flag (or its environment variable) over the
    /// config file over the default. `log_json` and `log_level` are the
    /// global `--log-json` and `--log-level` flags, `None` when not given.
    /// Errors say which setting is wrong.
    pub fn resolve(
        self,
        log_json: Option<bool>,
        log_level: Option<LevelFilter>,
    ) -> Result<Settings, String> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let state_dir = self
            .state_dir
            .or(file.state_dir)
            .ok_or("set --state-dir (or SALLYPORT_STATE_DIR, or state_dir in --config)")?;
        // A list is one setting: flags (or the environment) replace the file's.
        let services = if self.services.is_empty() {
            file.services
                .iter()
                .map(|(name, target)| parse_service(&format!("{name}={target}")))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("[services]: {e}"))?
        } else {
            self.services
        };
        let relay = self.relay.or(file.relay);
        let relay_tcp = self.relay_tcp.or(file.relay_tcp);
        for (key, addr) in [("relay", &relay), ("relay_tcp", &relay_tcp)] {
            if let Some(addr) = addr {
                let ok = addr
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    return Err(format!("{key} {addr:?} must be HOST:PORT"));
                }
            }
        }
        let quic_probe_interval = match self.quic_probe_interval.or(file.quic_probe_interval) {
            Some(text) => {
                let d = parse_duration(&text).map_err(|e| format!("quic_probe_interval: {e}"))?;
                if d < Duration::from_secs(1) {
                    return Err("quic_probe_interval must be at least 1s".into());
                }
                d
            }
            None => crate::dial::DEFAULT_QUIC_PROBE_INTERVAL,
        };
        let ha_connections = self
            .ha_connections
            .or(file.ha_connections)
            .unwrap_or(DEFAULT_HA_CONNECTIONS);
        if !(1..=MAX_HA_CONNECTIONS).contains(&ha_connections) {
            return Err(format!(
                "ha_connections must be 1 to {MAX_HA_CONNECTIONS}, not {ha_connections}"
            ));
        }
        let drain_timeout = match (self.drain_timeout_secs, file.drain_timeout) {
            (Some(secs), _) => Duration::from_secs(secs),
            (None, Some(text)) => {
                parse_duration(&text).map_err(|e| format!("drain_timeout: {e}"))?
            }
            (None, None) => DEFAULT_DRAIN_TIMEOUT,
        };
        let log_json = log_json.unwrap_or(file.log_format == Some(LogFormat::Json));
        let log_level = match (log_level, file.log_level) {
            (Some(level), _) => Some(level),
            (None, Some(text)) => {
                Some(logging::parse_level(&text).map_err(|e| format!("log_level: {e}"))?)
            }
            (None, None) => None,
        };
        Ok(Settings {
            run: RunConfig {
                token: self.token.or(file.token),
                state_dir,
                relay,
                services,
                ha_connections: ha_connections.into(),
                drain_timeout,
                metrics_listen: self.metrics_listen.or(file.metrics_listen),
                transport: TransportConfig {
                    choice: self.transport.or(file.transport).unwrap_or_default(),
                    relay_tcp,
                    quic_probe_interval,
                },
            },
            log_json,
            log_level,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let bytes = std::fs::File::open(path)
        .and_then(|file| sallyport_common::fs::read_bounded(file, MAX_CONFIG_FILE_BYTES))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => format!(
                "{} is larger than {MAX_CONFIG_FILE_BYTES} bytes",
                path.display()
            ),
            _ => format!("cannot read {}: {e}", path.display()),
        })?;
    let text =
        String::from_utf8(bytes).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| format!("{} is not a valid connector config: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("connector.toml");
        std::fs::write(
            &file,
            "token = \"spt1-file\"\nstate_dir = \"/var/lib/c\"\ndrain_timeout = \"5s\"\n\
             log_format = \"json\"\n[services]\nWeb1 = \"10.0.0.5:22\"\ndb = \"tcp://db:5432\"\n",
        )
        .unwrap();
        let s = RunArgs {
            config: Some(file.clone()),
            ..Default::default()
        }
        .resolve(None, None)
        .unwrap();
        assert_eq!(s.run.token.as_deref(), Some("spt1-file"));
        assert_eq!(s.run.state_dir, PathBuf::from("/var/lib/c"));
        assert_eq!(s.run.drain_timeout, Duration::from_secs(5));
        assert_eq!(s.run.ha_connections, 2);
        assert_eq!(s.run.relay, None);
        assert!(s.log_json);
        assert_eq!(
            s.run.services,
            vec![
                ("web1".into(), "10.0.0.5:22".into()),
                ("db".into(), "tcp://db:5432".into())
            ]
        );

        let s = RunArgs {
            config: Some(file.clone()),
            state_dir: Some("/tmp/s".into()),
            services: vec![("ssh".into(), "127.0.0.1:22".into())],
            ha_connections: Some(4),
            drain_timeout_secs: Some(1),
            relay: Some("relay.example:4433".into()),
            ..Default::default()
        }
        .resolve(Some(false), None)
        .unwrap();
        assert_eq!(s.run.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(s.run.services, vec![("ssh".into(), "127.0.0.1:22".into())]);
        assert_eq!(s.run.ha_connections, 4);
        assert_eq!(s.run.drain_timeout, Duration::from_secs(1));
        assert_eq!(s.run.relay.as_deref(), Some("relay.example:4433"));
        assert!(!s.log_json, "--log-json=false beats the file");
    }

    #[test]
    fn bad_files_are_refused_with_the_setting_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("connector.toml");
        let err = |text: &str| {
            std::fs::write(&file, text).unwrap();
            RunArgs {
                config: Some(file.clone()),
                ..Default::default()
            }
            .resolve(None, None)
            .unwrap_err()
        };
        assert!(err("state_dirr = \"/x\"\n").contains("unknown field"));
        assert!(err("").contains("--state-dir"));
        assert!(err("state_dir = \"/x\"\n[services]\nweb = \"nohost\"\n").contains("[services]"));
        assert!(err("state_dir = \"/x\"\nha_connections = 17\n").contains("ha_connections"));
        assert!(err("state_dir = \"/x\"\nrelay = \"relay\"\n").contains("HOST:PORT"));
        assert!(err("state_dir = \"/x\"\ndrain_timeout = \"soon\"\n").contains("drain_timeout"));
        assert!(err("state_dir = \"/x\"\nlog_format = \"xml\"\n").contains("log_format"));
        let big = format!("# {}\n", "x".repeat(MAX_CONFIG_FILE_BYTES as usize));
        assert!(err(&big).contains("larger than"));
    }

    #[test]
    fn the_shipped_config_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // The packages' /etc/sallyport/connector.toml: all but state_dir commented out.
        let s = RunArgs {
            config: Some(root.join("debian/connector.toml")),
            ..Default::default()
        }
        .resolve(None, None)
        .unwrap();
        assert_eq!(
            s.run.state_dir,
            PathBuf::from("/var/lib/sallyport-connector")
        );
        assert_eq!(
            s.run.state_dir.to_str(),
            Some(crate::service::DEFAULT_STATE_DIR)
        );
        // docker-compose.yml's.
        let s = RunArgs {
            config: Some(root.join("../docker/connector.toml")),
            ..Default::default()
        }
        .resolve(None, None)
        .unwrap();
        assert_eq!(s.run.services, vec![("demo".into(), "sshd:22".into())]);
    }
}
