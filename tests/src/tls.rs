//! Certificates for the HTTPS reload and ACME tests: a CA of the test's own
//! (what an admin's certbot or internal CA would be), a blocking TLS probe
//! that says which certificate the relay serves to a new handshake and
//! whether a client trusting only given roots accepts it, Pebble (the ACME
//! test server from Debian's `pebble` package) on ports of the test's own,
//! and an SSH session held open across a certificate swap.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject as _;

use crate::{free_port, wait_for, Client, Proc, Sshd};

/// A CA of the test's own, issuing server certificates.
pub struct TestCa {
    /// Its certificate, PEM.
    pub cert_pem: String,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            cert_pem: cert.pem(),
            key,
        }
    }

    /// A certificate for `names` and its key, both PEM.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).expect("issuer");
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// The end-entity certificate a new handshake with `addr` for `name` gets,
/// when a client trusting only the PEM certificates in `roots` accepts it;
/// the handshake's error otherwise.
pub fn served_cert(addr: SocketAddr, name: &str, roots: &str) -> Result<Vec<u8>, String> {
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots.as_bytes()) {
        store
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(store)
    .with_no_client_auth();
    let server = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), server).map_err(|e| e.to_string())?;
    let mut tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    Ok(leaf.to_vec())
}

/// Waits until a new handshake gets a certificate other than `old` that a
/// client trusting `roots` accepts, and returns it.
pub fn wait_for_new_cert(addr: SocketAddr, name: &str, roots: &str, old: Option<&[u8]>) -> Vec<u8> {
    wait_for("the relay to serve a new certificate", || {
        served_cert(addr, name, roots)
            .ok()
            .filter(|c| Some(c.as_slice()) != old)
    })
}

/// Pebble on ports of its own, validating on the relay's ports.
pub struct Pebble {
    /// Its ACME directory URL.
    pub directory: String,
    /// The certificate of its own HTTPS API (what `acme_ca_root` trusts).
    pub api_cert: PathBuf,
    management: u16,
    _proc: Proc,
}

impl Pebble {
    /// Starts Pebble in `dir`, validating HTTP-01 on `http_port` and
    /// TLS-ALPN-01 on `tls_port` of the name's address.
    pub fn start(dir: &Path, http_port: u16, tls_port: u16) -> Self {
        let dir = dir.join("pebble");
        std::fs::create_dir_all(&dir).expect("pebble dir");
        // Debian ships no certificate for Pebble's own API: make one.
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("pebble API certificate");
        let api_cert = dir.join("api.pem");
        let api_key = dir.join("api.key");
        std::fs::write(&api_cert, cert.pem()).expect("write");
        std::fs::write(&api_key, key.serialize_pem()).expect("write");
        let (listen, management) = (free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": api_cert,
                "privateKey": api_key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        let proc = Proc::spawn(
            "pebble",
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .current_dir(&dir)
                // Validate at once instead of after a random pause, and
                // never reject a good nonce (a test of our retries, not this).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0"),
            dir.join("pebble.log"),
        );
        crate::wait_for_tcp(SocketAddr::from(([127, 0, 0, 1], listen)));
        crate::wait_for_tcp(SocketAddr::from(([127, 0, 0, 1], management)));
        Self {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            api_cert,
            management,
            _proc: proc,
        }
    }

    /// The root Pebble issues under, from its management API (`/roots/0`).
    pub fn root_pem(&self) -> String {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "10", "--cacert"])
            .arg(&self.api_cert)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .expect("curl");
        assert!(out.status.success(), "GET /roots/0 failed");
        String::from_utf8(out.stdout).expect("PEM")
    }
}

/// An SSH session through `sallyport proxy` that stays open: each
/// [`OpenSession::echo`] sends a line through it and reads the answer.
pub struct OpenSession {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl OpenSession {
    /// Opens a session to `service` running a loop that echoes lines back.
    pub fn open(client: &Client, sshd: &Sshd, service: &str) -> Self {
        let mut child = client
            .ssh_command(sshd, service, "while read l; do echo got-$l; done")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends `line` and returns the answer's line.
    pub fn echo(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write to ssh");
        self.stdin.flush().expect("flush");
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("read from ssh");
        answer.trim_end().to_owned()
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
