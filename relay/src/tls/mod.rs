//! The HTTPS listener's certificate, and how it changes while the relay
//! runs. One [`HttpsCert`] resolver sits in the listener's rustls
//! `ServerConfig` for the relay's whole life; what changes is the
//! certificate inside it, swapped as one `Arc`:
//!
//! - [`files`]: the admin's `--tls-cert`/`--tls-key`, read again on SIGHUP
//!   and when the files change;
//! - [`acme`]: a certificate the relay obtains and renews itself over ACME
//!   (RFC 8555), proving control of its names with TLS-ALPN-01 (RFC 8737)
//!   on the HTTPS port or HTTP-01 on a plain-HTTP port ([`http01`]).
//!
//! A handshake reads the certificate once, so a swap changes only the
//! handshakes after it: open connections, and the WebSocket and SSH
//! sessions inside them, go on with the certificate they started with. A
//! new certificate that cannot be used is refused with an error in the log
//! and the old one stays.
//!
//! The tunnel listener (QUIC, for connectors) is not concerned: its
//! certificate comes from the relay's own CA, which connectors pin.

pub mod acme;
mod acme_http;
pub mod files;
pub mod http01;
pub mod resolver;

pub use resolver::HttpsCert;

use std::path::{Path, PathBuf};

/// Largest PEM file read for a certificate chain or key (a chain of a few
/// certificates is a few KB): a path pointing at something endless is refused.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PEM_BYTES`].
    #[error("{path} is larger than {MAX_PEM_BYTES} bytes; is it the right file?")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM object of the kind wanted.
    #[error("{path} holds no PEM {what} (is it still being written?)")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
    },
    /// rustls refused the pair (a key it cannot use, or one that does not
    /// belong to the certificate).
    #[error("the certificate {cert} and the key {key} cannot be used together: {reason}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// A certificate that is not valid X.509.
    #[error("the certificate is not valid X.509: {0}")]
    X509(String),
}

/// Reads a whole file of at most [`MAX_PEM_BYTES`].
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::File::open(path)
        .and_then(|file| sallyport_common::fs::read_bounded(file, MAX_PEM_BYTES))
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::FileTooLarge => TlsError::TooLarge {
                path: path.to_owned(),
            },
            _ => TlsError::Io {
                path: path.to_owned(),
                source,
            },
        })
}
