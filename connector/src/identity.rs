//! The connector's identity in its state dir: its name, the relay it dials,
//! the pinned relay CA, and its own key and certificate (mode 0600).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::quic;
use crate::ConnectorError;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    name: String,
    relay: String,
}

pub struct Identity {
    pub name: String,
    /// `host:port` of the relay's tunnel listener.
    pub relay: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn path(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), ConnectorError> {
    let io = |source| ConnectorError::State {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn read(path: &Path) -> Result<String, ConnectorError> {
    std::fs::read_to_string(path).map_err(|source| ConnectorError::State {
        path: path.to_owned(),
        source,
    })
}

impl Identity {
    pub fn exists(dir: &Path) -> bool {
        path(dir, "connector.json").exists()
    }

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

    pub fn save(&self, dir: &Path) -> Result<(), ConnectorError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| ConnectorError::State {
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

    /// QUIC client settings: trust only the pinned relay CA, present our certificate.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, ConnectorError> {
        let bad = |what: &str| ConnectorError::Corrupt(format!("stored {what} is not valid PEM"));
        let ca =
            CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).map_err(|_| bad("relay CA"))?;
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|_| bad("certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|_| bad("key"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).map_err(|_| bad("relay CA"))?;
        let tls = rustls::ClientConfig::builder_with_provider(quic::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ConnectorError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .map_err(|e| ConnectorError::Tls(e.to_string()))?;
        quic::client_config(tls)
    }
}

/// Client config for the connector (transport settings and ALPN applied).
pub(crate) fn finish_client_config(
    mut tls: rustls::ClientConfig,
) -> Result<quinn::ClientConfig, ConnectorError> {
    tls.alpn_protocols = vec![sallyport_proto::tunnel::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ConnectorError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(quic::transport_config(
        sallyport_proto::tunnel::transport::MAX_SESSIONS_PER_CONNECTION,
    )));
    Ok(config)
}
