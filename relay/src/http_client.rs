//! What the relay's outbound HTTPS clients share (OpenID providers in
//! `oidc::http`, the ACME server in `tls::acme_http`): rustls with the ring
//! provider, the roots they trust, and the bounds every client to a peer
//! has (a time limit per request, no redirects followed). Each caller
//! bounds the size of the answers it reads itself.

use std::sync::Arc;
use std::time::Duration;

/// The web PKI roots (`webpki-roots`) and the operating system's store
/// (`rustls-native-certs`), where an organization's own CA goes
/// (`update-ca-certificates`). A store that cannot be read adds nothing;
/// its errors are logged.
pub fn public_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "a certificate of the system's store cannot be read");
    }
    roots.add_parsable_certificates(native.certs);
    roots
}

/// A client trusting `roots` whose requests take at most `timeout` each,
/// connecting to the last byte, and follow no redirect. Errors: TLS or the
/// client could not be set up (its text).
pub fn bounded_client(
    roots: rustls::RootCertStore,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("sallyport-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}
