//! What the Sallyport relay, connector and native client all need, in one
//! place so neither daemon borrows it from the other: QUIC and TLS set-up
//! with the ring provider ([`quic`], [`tls`]), logging ([`logging`]), what
//! both daemons' metrics share ([`metrics`]), files
//! only their owner may read ([`fs`]), hashing ([`hash`]), random secrets
//! ([`secret`]), Unix time ([`time`]) and the man pages and completions
//! packages ship ([`package_assets`]).
//!
//! Native targets only: the browser client (wasm32) has no files, sockets
//! or signals, and does not depend on this crate.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fs;
pub mod hash;
pub mod logging;
pub mod metrics;
pub mod package_assets;
pub mod quic;
pub mod secret;
pub mod time;
pub mod tls;
pub mod transport;
