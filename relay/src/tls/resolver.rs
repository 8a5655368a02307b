//! [`HttpsCert`]: the rustls certificate resolver of the HTTPS listener.
//! It holds the certificate in force in an `ArcSwap`, so a handshake reads
//! it without a lock and a reload replaces it for the handshakes after it,
//! and the TLS-ALPN-01 challenge certificates of an ACME order in progress
//! (RFC 8737 section 3: a validation server's handshake offers only the
//! `acme-tls/1` protocol and names the domain being validated).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;

use super::TlsError;

/// The ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737 section 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// What the log says about a certificate: who it is for and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's distinguished name (`CN=relay.example.com`), or "" when empty.
    pub subject: String,
    /// The DNS names of its subject alternative names.
    pub names: Vec<String>,
    /// Its serial number, in hex.
    pub serial: String,
    /// Not valid before, Unix seconds.
    pub not_before: i64,
    /// Not valid after, Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    /// Reads the end-entity certificate `der`.
    pub fn of(der: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| TlsError::X509(e.to_string()))?;
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            subject: cert.subject().to_string(),
            names,
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// `not_after` as an RFC 3339 time, for the log.
    pub fn not_after_text(&self) -> String {
        unix_text(self.not_after)
    }
}

/// Unix seconds as an RFC 3339 time, for the log.
pub fn unix_text(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| secs.to_string())
}

/// The HTTPS listener's certificate resolver.
#[derive(Debug)]
pub struct HttpsCert {
    current: ArcSwap<CertifiedKey>,
    /// TLS-ALPN-01 certificates by the domain they validate: one per name
    /// of an order in progress, so at most as many as `acme_domains`.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl HttpsCert {
    /// A resolver serving `first` until something replaces it.
    pub fn new(first: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(first),
            challenges: Mutex::default(),
        })
    }

    /// Serves `next` from the next handshake on and logs it, with `source`
    /// (`--tls-cert`, `ACME`) saying where it came from.
    pub fn swap(&self, next: CertifiedKey, source: &str) {
        match next
            .end_entity_cert()
            .map_err(|e| TlsError::X509(e.to_string()))
            .and_then(CertInfo::of)
        {
            Ok(info) => tracing::info!(
                source,
                subject = %info.subject,
                names = %info.names.join(","),
                serial = %info.serial,
                not_after = %info.not_after_text(),
                "HTTPS certificate in force from now on; open connections keep theirs"
            ),
            Err(e) => {
                tracing::warn!(source, error = %e, "HTTPS certificate swapped; it cannot be described")
            }
        }
        self.current.store(Arc::new(next));
    }

    /// The certificate in force (what the tests compare with a handshake's).
    #[cfg(test)]
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Answers TLS-ALPN-01 validation handshakes for `domain` with `cert`.
    pub fn set_challenge(&self, domain: &str, cert: CertifiedKey) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_ascii_lowercase(), Arc::new(cert));
    }

    /// Forgets every challenge certificate (the order is over).
    pub fn clear_challenges(&self) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl ResolvesServerCert for HttpsCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737 section 3: only the challenge certificate, and only
            // for a name being validated; anything else fails the handshake.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
        }
        Some(self.current.load_full())
    }
}
