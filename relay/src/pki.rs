//! The relay's certificates: its CA (created on first start), the tunnel
//! server certificate it issues itself, connector client certificates signed
//! from enrolment requests, and the HTTPS identity (self-signed unless the
//! admin gives one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use sallyport_common::fs::write_private;
use sallyport_common::hash::sha256_hex;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid PEM {what}")]
    BadPem { path: PathBuf, what: &'static str },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the certificate request is not valid: {0}")]
    BadRequest(rcgen::Error),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// How long a connector's client certificate is valid.
const CONNECTOR_CERT_DAYS: i64 = 3650;

/// The relay CA: signs the tunnel server certificate and connector client
/// certificates. Connectors pin its fingerprint from the enrolment token.
pub struct RelayCa {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_private(path, contents.as_bytes()).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

impl RelayCa {
    /// Loads the CA from `dir` (`ca.pem`, `ca.key`), creating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if cert_path.exists() {
            let cert_pem = read(&cert_path)?;
            let key_pem = read(&key_path)?;
            return Self::from_pem(&cert_pem, &key_pem, &cert_path, &key_path);
        }
        let ca = Self::generate()?;
        write(&key_path, &ca.key_pem())?;
        write(&cert_path, &ca.cert_pem)?;
        Ok(ca)
    }

    /// The CA of `cert_pem` and `key_pem`; `cert_path` and `key_path`
    /// name where they came from in errors.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|_| PkiError::BadPem {
            path: key_path.to_owned(),
            what: "private key",
        })?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| PkiError::BadPem {
                path: cert_path.to_owned(),
                what: "certificate",
            })?;
        Ok(Self {
            cert_der,
            cert_pem: cert_pem.to_owned(),
            key,
        })
    }

    /// A new CA with a fresh key, valid for a century.
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Sallyport relay CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The CA's private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate, as carried in enrolment tokens.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_der(&self.cert_der, &self.key)?)
    }

    /// A fresh certificate for the tunnel listener, chained to the CA.
    pub fn tunnel_server_identity(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec![sallyport_proto::tunnel::TUNNEL_SERVER_NAME.to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Sallyport relay tunnel");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer()?)?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }

    /// Signs a connector's certificate request. Only the request's public key
    /// is used: name, validity and usage are the relay's choice.
    pub fn sign_connector(
        &self,
        csr_pem: &str,
        connector: &str,
    ) -> Result<rcgen::Certificate, PkiError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::BadRequest)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, connector);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.subject_alt_names = vec![SanType::DnsName(
            format!("{connector}.connector.sallyport.invalid")
                .try_into()
                .map_err(PkiError::Rcgen)?,
        )];
        let now = time_now();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(CONNECTOR_CERT_DAYS);
        csr.params = params;
        Ok(csr.signed_by(&self.issuer()?)?)
    }
}

/// How long a device certificate is valid.
pub const DEVICE_CERT_DAYS: i64 = 365;

/// The HTTPS listener's client-certificate check. It asks every browser
/// for a device certificate and requires none; it checks that the client
/// holds the private key of what it presents (the handshake signature) and
/// accepts any certificate otherwise. Which certificates count as devices
/// is decided later, by exact SHA-256 among those `device add` issued, not
/// revoked and not expired: a stale or foreign certificate in a browser is
/// then "no device" instead of a failed handshake that locks the browser
/// out of the relay (browsers remember the certificate they chose).
#[derive(Debug)]
pub struct DeviceCertVerifier {
    /// Only for the signature checks and the CA names offered to browsers.
    webpki: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl DeviceCertVerifier {
    pub fn new(ca: &RelayCa) -> Result<Arc<Self>, PkiError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.cert_der().clone())
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            sallyport_common::tls::crypto_provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
        Ok(Arc::new(Self { webpki }))
    }
}

impl rustls::server::danger::ClientCertVerifier for DeviceCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A device certificate and its private key, for the device's browser.
pub struct DeviceCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_sha256: String,
    /// Unix time the certificate expires.
    pub expires: u64,
}

impl RelayCa {
    /// Issues a client certificate for a device. The relay makes the key:
    /// browsers import a key and certificate together, and nothing on the
    /// device side can run a CSR step.
    pub fn issue_device(&self, device: &str) -> Result<DeviceCert, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Sallyport device {device}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.subject_alt_names = vec![SanType::DnsName(
            format!("{device}.device.sallyport.invalid")
                .try_into()
                .map_err(PkiError::Rcgen)?,
        )];
        let now = time_now();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(DEVICE_CERT_DAYS);
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(DeviceCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_sha256: sha256_hex(cert.der()),
            expires: params.not_after.unix_timestamp().max(0) as u64,
        })
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The HTTPS certificate chain and key: the admin's files when given,
/// otherwise a self-signed certificate kept in `dir` (created once, for the
/// public URL's host and the loopback names).
pub fn https_identity(
    dir: &Path,
    given: Option<(&Path, &Path)>,
    public_host: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    let (cert_path, key_path) = match given {
        Some((c, k)) => (c.to_owned(), k.to_owned()),
        None => {
            let cert_path = dir.join("https.pem");
            let key_path = dir.join("https.key");
            if !cert_path.exists() {
                let mut names = vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    "::1".to_owned(),
                ];
                if !names.iter().any(|n| n == public_host) {
                    names.push(public_host.to_owned());
                }
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(names)?;
                params
                    .distinguished_name
                    .push(DnType::CommonName, "Sallyport relay");
                params.not_before = time_now() - time::Duration::days(1);
                params.not_after = time_now() + time::Duration::days(3650);
                let cert = params.self_signed(&key)?;
                write(&key_path, &key.serialize_pem())?;
                write(&cert_path, &cert.pem())?;
            }
            (cert_path, key_path)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|_| PkiError::BadPem {
            path: cert_path.clone(),
            what: "certificate chain",
        })?;
    if certs.is_empty() {
        return Err(PkiError::BadPem {
            path: cert_path,
            what: "certificate chain",
        });
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|_| PkiError::BadPem {
        path: key_path.clone(),
        what: "private key",
    })?;
    Ok((certs, key))
}

/// QUIC endpoint settings whose keys survive a restart: the stateless reset
/// key and the connection-ID key come from a secret in the data dir. A
/// restarted relay then recognises its predecessor's connection IDs and
/// answers their packets with a stateless reset, so connectors learn at
/// their next keep-alive that the old connection is gone and reconnect at
/// once instead of waiting out the idle timeout.
pub fn tunnel_endpoint_config(dir: &Path) -> Result<quinn::EndpointConfig, PkiError> {
    let path = dir.join("quic.key");
    let secret = match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => bytes,
        _ => {
            let mut bytes = vec![0u8; 32];
            rand::fill(&mut bytes[..]);
            write_private(&path, &bytes).map_err(|source| PkiError::Io {
                path: path.clone(),
                source,
            })?;
            bytes
        }
    };
    let derive = |label: &[u8]| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        ring::hmac::sign(&key, label)
    };
    let reset_key =
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derive(b"stateless reset").as_ref());
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&derive(b"connection id").as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(std::sync::Arc::new(reset_key));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    Ok(config)
}
