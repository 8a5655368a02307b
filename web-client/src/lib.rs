//! The Sallyport client core: talking to the relay's API, stored
//! credentials, and the session bridge. The native CLI (`sallyport`) is in
//! `bin/`; the browser front end builds on the same core.

#[cfg(not(target_arch = "wasm32"))]
pub mod agent;
#[cfg(not(target_arch = "wasm32"))]
pub mod api;
#[cfg(not(target_arch = "wasm32"))]
pub mod certs;
#[cfg(not(target_arch = "wasm32"))]
pub mod credentials;
#[cfg(not(target_arch = "wasm32"))]
pub mod login;
#[cfg(not(target_arch = "wasm32"))]
pub mod loopback;
#[cfg(not(target_arch = "wasm32"))]
pub mod proxy;
pub mod reporter;
pub mod ssh;
#[cfg(not(target_arch = "wasm32"))]
pub mod ssh_config;
#[cfg(not(target_arch = "wasm32"))]
pub mod ssh_config_file;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

/// Why a client operation failed, in words the user can act on.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the relay at {0}: {1}")]
    Connect(String, String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Relay(String),
    /// The relay answered 401: wrong credentials, a code is needed, or
    /// the sign-in has ended (the relay's reason says which).
    #[error("{0}")]
    Unauthorized(String),
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
