//! Enrolment: trade the one-time token for a client certificate.
//!
//! The connector knows only the relay CA's fingerprint from the token, so the
//! first connection trusts a server whose chain contains a CA certificate
//! with exactly that fingerprint, and whose leaf that CA signed. From then on
//! the CA certificate itself is pinned.

use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sallyport_proto::io::{write_frame, FrameReader};
use sallyport_proto::token::EnrolmentToken;
use sallyport_proto::tunnel::{Code, EnrolReply, EnrolRequest};

use crate::identity::Identity;
use sallyport_common::hash::sha256_hex;
use sallyport_common::tls as common_tls;
use sallyport_common::transport::Closed;

use crate::dial::{Dialer, TransportConfig};

use crate::ConnectorError;

/// Accepts the relay's certificate only when it chains to the CA whose
/// fingerprint the token carries.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| sha256_hex(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the relay's CA does not match the enrolment token's fingerprint".into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Enrols with the relay named in `token` over the transports `transport`
/// allows (so a connector whose network blocks UDP enrols over TCP);
/// returns the new identity (not yet saved).
pub async fn enrol(
    endpoint: quinn::Endpoint,
    token: &EnrolmentToken,
    transport: TransportConfig,
) -> Result<Identity, ConnectorError> {
    if token.expires <= sallyport_common::time::now_secs() {
        return Err(ConnectorError::Enrolment(
            "the enrolment token has expired; ask the admin for a new one".into(),
        ));
    }
    let key = KeyPair::generate().map_err(|e| ConnectorError::Tls(e.to_string()))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "sallyport-connector");
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| ConnectorError::Tls(e.to_string()))?;

    let provider = common_tls::crypto_provider();
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ConnectorError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            fingerprint: token.ca_sha256.to_ascii_lowercase(),
            provider,
        }))
        .with_no_client_auth();
    let dialer = Dialer::new(token.relay.clone(), transport, tls, endpoint)?;
    let conn = dialer.connect().await.map_err(|e| match e {
        Closed::ByPeer { reason, .. } if !reason.is_empty() => ConnectorError::Enrolment(reason),
        other => ConnectorError::Connect(token.relay.clone(), other.to_string()),
    })?;
    let exchange = async {
        let (mut send, recv) = conn.open_control().await.map_err(|e| e.to_string())?;
        let req = EnrolRequest {
            secret: token.secret.clone(),
            csr_pem,
            version: env!("CARGO_PKG_VERSION").into(),
        };
        write_frame(&mut send, &req)
            .await
            .map_err(|e| e.to_string())?;
        send.finish();
        FrameReader::new(recv)
            .read_frame::<EnrolReply>()
            .await
            .map_err(|e| e.to_string())
    };
    let reply = tokio::time::timeout(crate::dial::CONNECT_TIMEOUT, exchange)
        .await
        .map_err(|_| ConnectorError::Enrolment("the relay did not answer".into()))?
        .map_err(ConnectorError::Enrolment)?;
    conn.close(Code::Done, "enrolled");
    match reply {
        EnrolReply::Enrolled {
            connector,
            cert_pem,
            ca_pem,
        } => {
            let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|_| {
                ConnectorError::Enrolment("the relay sent an invalid CA certificate".into())
            })?;
            if sha256_hex(&ca) != token.ca_sha256.to_ascii_lowercase() {
                return Err(ConnectorError::Enrolment(
                    "the relay sent a CA that does not match the token's fingerprint".into(),
                ));
            }
            Ok(Identity {
                name: connector,
                relay: token.relay.clone(),
                ca_pem,
                cert_pem,
                key_pem: key.serialize_pem(),
            })
        }
        EnrolReply::Refused { reason } => Err(ConnectorError::Enrolment(reason)),
    }
}
