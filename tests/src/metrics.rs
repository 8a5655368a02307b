//! Scraping the daemons' metrics listeners and reading what they serve the
//! way Prometheus would: every line through the Prometheus project's own
//! OpenMetrics parser (Debian's `python3-prometheus-client`, driven by
//! `tests/prometheus/parse.py`), then looked up by sample name and labels.
//! Also daemons started without the harness's `RUST_LOG`, for the tests
//! of `--log-level`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::{bin, free_port, wait_for, Proc};

/// The Python whose `prometheus_client` Debian's package installs.
pub const PYTHON: &str = "/usr/bin/python3";

/// One sample of a scrape.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    /// Its name (a family's name with `_total`, `_bucket`, ... as the type has it).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (`+Inf` and `NaN` come as JSON strings and read as NaN here).
    #[serde(deserialize_with = "number")]
    pub value: f64,
}

fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_f64().unwrap_or(f64::NAN))
}

/// One metric family of a scrape.
#[derive(Debug, Clone, Deserialize)]
pub struct Family {
    /// Its name (`sallyport_sessions` for `sallyport_sessions_total`).
    pub name: String,
    /// counter, gauge, histogram, info, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Its unit (`seconds`, `bytes`), or empty.
    pub unit: String,
    /// Its HELP text.
    pub help: String,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// Everything one scrape of `/metrics` held, as the parser read it.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The text as served.
    pub text: String,
    /// The families the parser read from it.
    pub families: Vec<Family>,
}

impl Scrape {
    /// Scrapes `http://127.0.0.1:PORT/metrics`, checks it is served as
    /// OpenMetrics text, and parses every line (panicking with the
    /// parser's message on any it rejects).
    pub fn of(port: u16) -> Self {
        let (code, content_type, text) = get(port, "/metrics");
        assert_eq!(code, 200, "GET /metrics on port {port}: {text}");
        assert!(
            content_type.starts_with("application/openmetrics-text; version=1.0.0"),
            "GET /metrics content type: {content_type}"
        );
        let families = parse(&text);
        Self { text, families }
    }

    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The samples named `name` whose labels include all of `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(move |s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
    }

    /// The value of the one sample named `name` with `labels` (a subset of
    /// its labels); `None` when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.samples(name, labels);
        let first = found.next()?;
        assert!(
            found.next().is_none(),
            "more than one {name} sample with {labels:?} in:\n{}",
            self.text
        );
        Some(first.value)
    }

    /// Like [`Scrape::value`], 0 when there is no such sample.
    pub fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

/// Runs the OpenMetrics parser over `text`; panics with its message when a
/// line does not parse.
pub fn parse(text: &str) -> Vec<Family> {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: install Debian's python3-prometheus-client (scripts/test.sh does)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/parse.py");
    let out = crate::output_with_input(Command::new(PYTHON).arg(&script), text.as_bytes());
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// `GET http://127.0.0.1:PORT/PATH` with curl: status, content type, body.
/// Status 0 when nothing answers.
pub fn get(port: u16, path: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{content_type}",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", "0 "));
    let (code, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
    (
        code.trim().parse().unwrap_or(0),
        content_type.trim().to_owned(),
        body.to_owned(),
    )
}

/// Polls `GET PATH` on `port` until it answers `code`; returns the body.
pub fn wait_for_status(port: u16, path: &str, code: u16) -> String {
    wait_for(
        &format!("GET {path} on port {port} to answer {code}"),
        || {
            let (c, _, body) = get(port, path);
            (c == code).then_some(body)
        },
    )
}

/// A connector process started like [`crate::start_connector`] but without
/// `RUST_LOG` in its environment (so `--log-level` decides), serving its
/// metrics on the returned port.
pub fn start_connector_with_metrics(
    dir: &Path,
    name: &str,
    token: &str,
    service: &str,
    extra: &[&str],
) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new(bin("sallyport-connector"));
    cmd.arg("run")
        .arg("--state-dir")
        .arg(dir.join(format!("connector-{name}")))
        .args(["--token", token, "--service", service])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env_remove("RUST_LOG");
    let proc = Proc::spawn(
        &format!("connector {name}"),
        &mut cmd,
        dir.join(format!("connector-{name}.log")),
    );
    crate::wait_for_tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    (proc, port)
}

/// A relay process on fresh ports with `relay`'s data dir layout, started
/// without `RUST_LOG` (so `--log-level` and `log_level` decide), with
/// `config` as its config file and `extra` flags. Returns once it serves
/// HTTPS and its admin socket is up; the log is the process's.
pub fn start_relay_without_rust_log(
    dir: &Path,
    name: &str,
    config: &str,
    extra: &[&str],
) -> (Proc, PathBuf, u16) {
    let data_dir = dir.join(name);
    let config_file = dir.join(format!("{name}.toml"));
    std::fs::write(&config_file, config).expect("write the config file");
    let https = free_port();
    let tunnel = free_port();
    let metrics = free_port();
    let mut cmd = Command::new(bin("sallyport-relay"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&config_file)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen-https", &format!("127.0.0.1:{https}")])
        .args(["--listen-tunnel", &format!("127.0.0.1:{tunnel}")])
        .args(["--public-url", &format!("https://localhost:{https}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(extra)
        .env_remove("RUST_LOG");
    let mut proc = Proc::spawn(name, &mut cmd, dir.join(format!("{name}.log")));
    let sock = data_dir.join("admin.sock");
    wait_for(&format!("{name} to serve"), || {
        assert!(proc.is_running(), "{name} exited:\n{}", proc.log_text());
        (sock.exists() && get(metrics, "/readyz").0 == 200).then_some(())
    });
    (proc, data_dir, https)
}

/// A sign-in over HTTPS to a relay on `https_port` (not a [`RelayProc`]);
/// the status.
pub fn api_login_at(https_port: u16, user: &str, password: &str) -> u16 {
    let body = serde_json::json!({ "user": user, "password": password });
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "content-type: application/json", "--data"])
        .arg(body.to_string())
        .arg(format!("https://localhost:{https_port}/api/login"))
        .args(["--resolve", &format!("localhost:{https_port}:127.0.0.1")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Adds `name` with `password` to the relay whose data dir is `data_dir`.
pub fn add_user_at(data_dir: &Path, name: &str, password: &str) {
    let out = crate::output_with_input(
        Command::new(bin("sallyport-relay"))
            .args(["user", "add", name, "--password-stdin", "--data-dir"])
            .arg(data_dir),
        format!("{password}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
