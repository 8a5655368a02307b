//! The connector's identity in its state dir: its name, the relay it dials,
//! the pinned relay CA, and its own key and certificate (mode 0600).

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use sallyport_common::tls;

use crate::ConnectorError;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    name: String,
    relay: String,
}

/// An enrolled connector's identity: what enrolment gave it, kept in its
/// state directory (`connector.json`, `relay-ca.pem`, `cert.pem`, `key.pem`).
pub struct Identity {
    /// The name it was enrolled as.
    pub name: String,
    /// `host:port` of the relay's tunnel listener.
    pub relay: String,
    /// The relay's CA certificate, PEM: the only one it trusts.
    pub ca_pem: String,
    /// Its client certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (never leaves the state directory).
    pub key_pem: String,
}

fn path(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}

/// Writes one state file (mode 0600, replaced atomically).
fn write_private(path: &Path, contents: &str) -> Result<(), ConnectorError> {
    sallyport_common::fs::write_private(path, contents.as_bytes()).map_err(|source| {
        ConnectorError::State {
            path: path.to_owned(),
            source,
        }
    })
}

fn read(path: &Path) -> Result<String, ConnectorError> {
    std::fs::read_to_string(path).map_err(|source| ConnectorError::State {
        path: path.to_owned(),
        source,
    })
}

impl Identity {
    /// Whether `dir` holds an identity.
    pub fn exists(dir: &Path) -> bool {
        path(dir, "connector.json").exists()
    }

    /// Reads the identity in `dir`. Errors: [`ConnectorError::NotEnrolled`],
    /// an unreadable file, or a corrupt `connector.json`.
    pub fn load(dir: &Path) -> Result<Self, ConnectorError> {
        if !Self::exists(dir) {
            return Err(ConnectorError::NotEnrolled(dir.to_owned()));
        }
        let meta: Meta = serde_json::from_str(&read(&path(dir, "connector.json"))?)
            .map_err(|e| ConnectorError::Corrupt(format!("connector.json: {e}")))?;
        Ok(Self {
            name: meta.name,
            relay: meta.relay,
            ca_pem: read(&path(dir, "relay-ca.pem"))?,
            cert_pem: read(&path(dir, "cert.pem"))?,
            key_pem: read(&path(dir, "key.pem"))?,
        })
    }

    /// Writes the identity to `dir` (created 0700), each file 0600 and
    /// replaced atomically, the key first.
    pub fn save(&self, dir: &Path) -> Result<(), ConnectorError> {
        sallyport_common::fs::create_private_dir(dir).map_err(|source| ConnectorError::State {
            path: dir.to_owned(),
            source,
        })?;
        write_private(&path(dir, "key.pem"), &self.key_pem)?;
        write_private(&path(dir, "cert.pem"), &self.cert_pem)?;
        write_private(&path(dir, "relay-ca.pem"), &self.ca_pem)?;
        let meta = Meta {
            name: self.name.clone(),
            relay: self.relay.clone(),
        };
        let json = serde_json::to_string_pretty(&meta)
            .map_err(|e| ConnectorError::Corrupt(e.to_string()))?;
        // Written last: its presence means the identity is complete.
        write_private(&path(dir, "connector.json"), &json)
    }

    /// TLS client settings for either transport: TLS 1.3, trust only the
    /// pinned relay CA, present our certificate.
    pub fn tls_config(&self) -> Result<rustls::ClientConfig, ConnectorError> {
        let bad = |what: &str| ConnectorError::Corrupt(format!("stored {what} is not valid PEM"));
        let ca =
            CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).map_err(|_| bad("relay CA"))?;
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|_| bad("certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|_| bad("key"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).map_err(|_| bad("relay CA"))?;
        let tls = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ConnectorError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .map_err(|e| ConnectorError::Tls(e.to_string()))?;
        Ok(tls)
    }
}
