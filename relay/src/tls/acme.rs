//! The relay's own certificate over ACME (RFC 8555): it creates an account
//! once, orders a certificate for `acme_domains`, proves control of each
//! name with TLS-ALPN-01 (RFC 8737, answered on the HTTPS port by
//! [`super::HttpsCert`]) or HTTP-01 (RFC 8555 section 8.3, answered by
//! [`super::http01`] on a plain-HTTP port), swaps the certificate in, and
//! renews it when a third of its lifetime is left (Let's Encrypt's advice).
//!
//! The client is instant-acme (by a rustls maintainer, ring only, with its
//! HTTP client left to the relay so every answer is bounded, see
//! `acme_http`); the order, the challenge answers and the renewal schedule
//! are here, so one resolver serves the files, ACME certificates and the
//! challenge certificates alike.
//!
//! What is kept, under `DATA_DIR/acme/<directory hash>/` (private files):
//! `account.json` (the account's key and URL: losing it only means a new
//! account), `cert.pem` and `key.pem` (the certificate in force, served at
//! the next start until it is due). One directory per ACME server, so
//! moving from staging to production starts afresh.
//!
//! Renewals: on schedule; on SIGHUP when due (never earlier: CAs limit
//! duplicate certificates); and at once on `sallyport-relay acme renew`.
//! A failed order is retried with a doubling wait, from
//! [`FIRST_RETRY`] up to [`MAX_RETRY`]; the certificate in force stays.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::acme_http::AcmeHttp;
use super::files::parse_pair;
use super::http01::Http01Tokens;
use super::resolver::CertInfo;
use super::HttpsCert;
use crate::metrics::Metrics;

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`acme_directory = "letsencrypt-staging"`):
/// untrusted certificates, generous rate limits, for trying a set-up.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Most names in `acme_domains` (Let's Encrypt's limit per certificate).
pub const MAX_DOMAINS: usize = 100;

/// The longest a whole order (account, challenges, issuance) may take
/// before it counts as failed and is retried.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The wait before the first retry of a failed order; it doubles after each
/// failure. Also the least time between two orders, so a CA that answers with
/// a certificate already due cannot make the relay order in a loop.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);

/// The longest wait between retries of failed orders.
pub const MAX_RETRY: Duration = Duration::from_secs(3600);

/// The longest the renewal task sleeps before looking at the clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(86_400);

/// The default plain-HTTP address of HTTP-01 challenges: CAs connect to port 80.
pub const DEFAULT_LISTEN_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 80);

/// How the relay proves control of its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 (RFC 8737) on the HTTPS port, which the CA reaches on 443.
    TlsAlpn01,
    /// HTTP-01 (RFC 8555 section 8.3) on a plain-HTTP port, which the CA reaches on 80.
    Http01,
}

/// The resolved ACME settings.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The names the certificate is for (DNS names, no wildcards).
    pub domains: Vec<String>,
    /// Where the CA writes about expiry and problems, if anywhere.
    pub email: Option<String>,
    /// The ACME directory URL.
    pub directory: String,
    /// A CA certificate (PEM) trusted for the ACME server beyond the usual roots.
    pub ca_root: Option<PathBuf>,
    /// The challenge type.
    pub challenge: Challenge,
    /// The plain-HTTP listener of HTTP-01 (and of redirects to HTTPS).
    pub listen_http: SocketAddr,
}

/// The settings as given, flag or config file.
#[derive(Debug, Default)]
pub struct AcmeInput {
    /// `acme_domains`.
    pub domains: Vec<String>,
    /// `acme_email`.
    pub email: Option<String>,
    /// `acme_directory`.
    pub directory: Option<String>,
    /// `acme_ca_root`.
    pub ca_root: Option<PathBuf>,
    /// `acme_challenge`.
    pub challenge: Option<String>,
    /// `acme_listen_http`.
    pub listen_http: Option<SocketAddr>,
}

impl AcmeInput {
    /// The settings in force, `None` when `acme_domains` is empty (and
    /// nothing else ACME is set). Errors name the setting.
    pub fn resolve(self) -> Result<Option<AcmeSettings>, String> {
        if self.domains.is_empty() {
            if self.email.is_some()
                || self.directory.is_some()
                || self.ca_root.is_some()
                || self.challenge.is_some()
                || self.listen_http.is_some()
            {
                return Err(
                    "ACME settings are given but acme_domains is empty: name the \
                            relay's domains, or drop the acme_* settings"
                        .into(),
                );
            }
            return Ok(None);
        }
        if self.domains.len() > MAX_DOMAINS {
            return Err(format!(
                "acme_domains names more than {MAX_DOMAINS} domains"
            ));
        }
        let mut domains = Vec::new();
        for d in self.domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            check_domain(&d)?;
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
        if let Some(email) = &self.email {
            if !email.contains('@') || email.chars().any(|c| c.is_whitespace() || c == ',') {
                return Err(format!("acme_email {email:?} is not an email address"));
            }
        }
        let directory = match self.directory.as_deref() {
            None | Some("letsencrypt") => LETS_ENCRYPT.to_owned(),
            Some("letsencrypt-staging") => LETS_ENCRYPT_STAGING.to_owned(),
            Some(url) if url.starts_with("https://") => url.to_owned(),
            Some(other) => {
                return Err(format!(
                    "acme_directory {other:?} is not an https:// URL, \"letsencrypt\" or \
                     \"letsencrypt-staging\""
                ))
            }
        };
        let challenge = match self.challenge.as_deref() {
            None | Some("tls-alpn-01") => Challenge::TlsAlpn01,
            Some("http-01") => Challenge::Http01,
            Some(other) => {
                return Err(format!(
                    "acme_challenge {other:?} is not tls-alpn-01 or http-01"
                ))
            }
        };
        Ok(Some(AcmeSettings {
            domains,
            email: self.email,
            directory,
            ca_root: self.ca_root,
            challenge,
            listen_http: self.listen_http.unwrap_or(DEFAULT_LISTEN_HTTP),
        }))
    }
}

/// A DNS name an ACME CA can validate over TLS-ALPN-01 or HTTP-01: letters,
/// digits, hyphens and dots, no wildcard (those need DNS-01).
fn check_domain(d: &str) -> Result<(), String> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else if d.contains('*') {
        Err(format!(
            "acme_domains: {d:?} is a wildcard; TLS-ALPN-01 and HTTP-01 cannot validate wildcards"
        ))
    } else {
        Err(format!("acme_domains: {d:?} is not a DNS name"))
    }
}

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME server refused or could not be reached.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// An authorization ended other than valid.
    #[error("the CA did not validate {domain} ({status:?}); check that it resolves to this relay and that the CA can reach port {port}")]
    NotValidated {
        /// The name.
        domain: String,
        /// Its status.
        status: AuthorizationStatus,
        /// Where the CA connects.
        port: &'static str,
    },
    /// The order ended other than ready.
    #[error("the order ended {0:?}, not ready")]
    Order(OrderStatus),
    /// The server offered no challenge of the configured type.
    #[error("the CA offers no {0:?} challenge for {1}; set acme_challenge to another type")]
    NoChallenge(ChallengeType, String),
    /// The whole order took longer than [`ORDER_TIMEOUT`].
    #[error("the order took longer than {ORDER_TIMEOUT:?}")]
    Timeout,
    /// A key or certificate could not be made or read.
    #[error("{0}")]
    Cert(String),
    /// The data dir could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The ACME side of a running relay.
pub struct Acme {
    settings: AcmeSettings,
    /// `DATA_DIR/acme/<directory hash>`.
    dir: PathBuf,
    http: AcmeHttp,
    cert: Arc<HttpsCert>,
    http01: Arc<Http01Tokens>,
    metrics: Arc<Metrics>,
    renew_now: Notify,
    /// What [`Acme::load_cached`] swapped in at start, if anything: where
    /// the renewal schedule starts. `None` (nothing cached, or a cache that
    /// was expired, for other names or broken) orders at once.
    cached: std::sync::Mutex<Option<CertInfo>>,
}

/// When a certificate valid from `not_before` to `not_after` (Unix
/// seconds) is due: when a third of its lifetime is left.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_after - (not_after - not_before).max(0) / 3
}

fn now_secs() -> i64 {
    sallyport_common::time::now_millis() as i64 / 1000
}

impl Acme {
    /// Sets up ACME for `settings` with its files under `data_dir`: serves
    /// the cached certificate at once when it covers the names and is not
    /// expired. Fails only when the CA root cannot be read.
    pub fn new(
        settings: AcmeSettings,
        data_dir: &Path,
        cert: Arc<HttpsCert>,
        http01: Arc<Http01Tokens>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let http = AcmeHttp::new(settings.ca_root.as_deref())?;
        let hash = sallyport_common::hash::sha256_hex(settings.directory.as_bytes());
        let dir = data_dir.join("acme").join(&hash[..16]);
        let acme = Arc::new(Self {
            settings,
            dir,
            http,
            cert,
            http01,
            metrics,
            renew_now: Notify::new(),
            cached: std::sync::Mutex::new(None),
        });
        if let Some(info) = acme.load_cached() {
            tracing::info!(
                serial = %info.serial,
                not_after = %info.not_after_text(),
                "ACME certificate from the data dir in force"
            );
        }
        Ok(acme)
    }

    /// Asks the running relay for a new certificate now, due or not.
    pub fn request_renewal(&self) {
        self.renew_now.notify_one();
    }

    /// The cached pair, swapped in when it covers the names and has not
    /// expired.
    fn load_cached(&self) -> Option<CertInfo> {
        let cert_pem = std::fs::read(self.dir.join("cert.pem")).ok()?;
        let key_pem = std::fs::read(self.dir.join("key.pem")).ok()?;
        let pair = match parse_pair(&cert_pem, &key_pem) {
            Ok(pair) => pair,
            Err(_) => {
                tracing::warn!(dir = %self.dir.display(), "the cached ACME certificate cannot be used; ordering a new one");
                return None;
            }
        };
        let info = CertInfo::of(pair.end_entity_cert().ok()?).ok()?;
        let covers = self
            .settings
            .domains
            .iter()
            .all(|d| info.names.iter().any(|n| n.eq_ignore_ascii_case(d)));
        if !covers || info.not_after <= now_secs() {
            return None;
        }
        self.cert.swap(pair, "ACME (cached)");
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some(info.clone());
        }
        Some(info)
    }

    /// Orders certificates until `shutdown`: at once when none is cached,
    /// then when due, on SIGHUP when due, and on [`Acme::request_renewal`].
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; ACME renews on schedule only");
                None
            }
        };
        let cached = self.cached.lock().ok().and_then(|mut c| c.take());
        let mut due = match cached {
            Some(info) => renew_at(info.not_before, info.not_after),
            None => now_secs(),
        };
        let mut retry = FIRST_RETRY;
        loop {
            // Woken at least daily to look at the clock again: a long
            // sleep would miss a clock that jumped (a suspended VM).
            let wait = Duration::from_secs((due - now_secs()).max(0) as u64).min(MAX_SLEEP);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {
                    if now_secs() < due {
                        continue;
                    }
                }
                _ = self.renew_now.notified() => {
                    tracing::info!("ACME renewal asked for; ordering a new certificate now");
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    if now_secs() < due {
                        tracing::info!(
                            due = %super::resolver::unix_text(due),
                            "SIGHUP: the ACME certificate is not due for renewal; `sallyport-relay acme renew` renews it now"
                        );
                        continue;
                    }
                }
            }
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(ORDER_TIMEOUT, self.order()) => r.unwrap_or(Err(AcmeError::Timeout)),
            };
            self.cert.clear_challenges();
            self.http01.clear();
            match outcome {
                Ok(info) => {
                    Metrics::add(&self.metrics.tls_reloads, 1);
                    due = renew_at(info.not_before, info.not_after)
                        .max(now_secs() + FIRST_RETRY.as_secs() as i64);
                    retry = FIRST_RETRY;
                }
                Err(e) => {
                    Metrics::add(&self.metrics.tls_reload_failures, 1);
                    tracing::error!(
                        error = %e,
                        retry_in = ?retry,
                        directory = %self.settings.directory,
                        "ACME order failed; the certificate in force stays"
                    );
                    due = now_secs() + retry.as_secs() as i64;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// The account: the cached one, or a new one (then cached).
    async fn account(&self) -> Result<Account, AcmeError> {
        let path = self.dir.join("account.json");
        if let Ok(text) = std::fs::read(&path) {
            match serde_json::from_slice::<AccountCredentials>(&text) {
                Ok(credentials) => {
                    return Ok(Account::builder_with_http(Box::new(self.http.clone()))
                        .from_credentials(credentials)
                        .await?)
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "the cached ACME account cannot be read; creating a new one")
                }
            }
        }
        let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(Box::new(self.http.clone()))
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await?;
        let json = serde_json::to_vec(&credentials).map_err(|e| AcmeError::Cert(e.to_string()))?;
        self.write(&path, &json)?;
        tracing::info!(id = account.id(), "ACME account created");
        Ok(account)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
        let io = |source| AcmeError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        sallyport_common::fs::write_private(path, bytes).map_err(io)
    }

    /// One order, from account to certificate in force.
    async fn order(&self) -> Result<CertInfo, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let (kind, port) = match self.settings.challenge {
            Challenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "443 (the HTTPS listener)"),
            Challenge::Http01 => (ChallengeType::Http01, "80 (acme_listen_http)"),
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(AcmeError::NotValidated {
                        domain: authz.identifier().to_string(),
                        status,
                        port,
                    })
                }
            }
            let domain = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError::NoChallenge(kind.clone(), domain.clone()))?;
            let key_authorization = challenge.key_authorization();
            match self.settings.challenge {
                Challenge::TlsAlpn01 => self.cert.set_challenge(
                    &domain,
                    alpn_certificate(&domain, key_authorization.digest().as_ref())?,
                ),
                Challenge::Http01 => self.http01.insert(
                    challenge.token.clone(),
                    key_authorization.as_str().to_owned(),
                ),
            }
            tracing::info!(%domain, challenge = ?kind, "ACME challenge ready");
            challenge.set_ready().await?;
        }
        let retries = RetryPolicy::default().timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retries).await?;
        match status {
            OrderStatus::Ready => {}
            OrderStatus::Invalid => {
                return Err(AcmeError::NotValidated {
                    domain: self.settings.domains.join(", "),
                    status: AuthorizationStatus::Invalid,
                    port,
                })
            }
            other => return Err(AcmeError::Order(other)),
        }
        // The certificate's key is the relay's, made here: ECDSA P-256.
        let key = KeyPair::generate().map_err(|e| AcmeError::Cert(e.to_string()))?;
        let mut params = CertificateParams::new(self.settings.domains.clone())
            .map_err(|e| AcmeError::Cert(e.to_string()))?;
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeError::Cert(e.to_string()))?;
        order.finalize_csr(csr.der()).await?;
        let chain_pem = order.poll_certificate(&retries).await?;
        let key_pem = key.serialize_pem();
        let pair = parse_pair(chain_pem.as_bytes(), key_pem.as_bytes()).map_err(|_| {
            AcmeError::Cert("the CA's certificate does not match the key it was ordered for".into())
        })?;
        let info = CertInfo::of(
            pair.end_entity_cert()
                .map_err(|e| AcmeError::Cert(e.to_string()))?,
        )
        .map_err(|e| AcmeError::Cert(e.to_string()))?;
        // Key first: a crash in between leaves a pair that fails to parse
        // (and is ordered again), never a new certificate with an old key
        // that would be served.
        self.write(&self.dir.join("key.pem"), key_pem.as_bytes())?;
        self.write(&self.dir.join("cert.pem"), chain_pem.as_bytes())?;
        self.cert.swap(pair, "ACME");
        Ok(info)
    }
}

/// The TLS-ALPN-01 certificate for `domain` (RFC 8737 section 3): self-signed,
/// for that one name, carrying the SHA-256 of the key authorization in the
/// critical `id-pe-acmeIdentifier` extension.
fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let cert_err = |e: rcgen::Error| AcmeError::Cert(e.to_string());
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::new(vec![domain.to_owned()]).map_err(cert_err)?;
    params.distinguished_name = DistinguishedName::new();
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(cert_err)?;
    let key_der =
        PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| AcmeError::Cert(e.to_string()))?;
    // Not `CertifiedKey::from_der`: its key check parses the certificate
    // with webpki, which refuses the critical acmeIdentifier extension.
    let signing_key = sallyport_common::tls::crypto_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| AcmeError::Cert(e.to_string()))?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing_key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_with_a_third_left() {
        let day = 86_400;
        assert_eq!(renew_at(0, 90 * day), 60 * day);
    }

    #[test]
    fn settings_are_checked() {
        let input = |domains: &[&str]| AcmeInput {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        };
        let s = input(&["Relay.Example.com."]).resolve().unwrap().unwrap();
        assert_eq!(s.domains, vec!["relay.example.com"]);
        assert_eq!(s.directory, LETS_ENCRYPT);
        assert_eq!(s.challenge, Challenge::TlsAlpn01);
        assert!(input(&["*.example.com"])
            .resolve()
            .unwrap_err()
            .contains("wildcard"));
        assert!(input(&[]).resolve().unwrap().is_none());
        let mut orphan = input(&[]);
        orphan.email = Some("a@b.example".into());
        assert!(orphan.resolve().is_err());
        let mut staging = input(&["a.example"]);
        staging.directory = Some("letsencrypt-staging".into());
        assert_eq!(
            staging.resolve().unwrap().unwrap().directory,
            LETS_ENCRYPT_STAGING
        );
        let mut plain = input(&["a.example"]);
        plain.directory = Some("http://ca.example/dir".into());
        assert!(plain.resolve().is_err());
    }

    #[test]
    fn the_alpn_certificate_is_for_its_name() {
        let c = alpn_certificate("relay.example.com", &[7u8; 32]).unwrap();
        let info = CertInfo::of(c.end_entity_cert().unwrap()).unwrap();
        assert_eq!(info.names, vec!["relay.example.com"]);
    }
}
