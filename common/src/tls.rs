//! TLS set-up: one crypto provider for every rustls config in the build.

use std::sync::Arc;

/// The ring provider, the only crypto provider in the build. Configs are
/// built with it explicitly (`builder_with_provider`), so no process-level
/// default has to be installed and a second provider pulled in by feature
/// unification cannot make `builder()` panic.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
