//! Which tunnel transport the suite runs over. The connector reads
//! `SALLYPORT_TRANSPORT` itself (its `--transport` flag's variable), so
//! every connector process a test starts inherits it; `scripts/test.sh`
//! runs the tunnel's tests once with it unset (auto: QUIC here) and once
//! with `tcp`. Tests that need one transport pass `--transport` themselves.

use sallyport_connector::TransportChoice;

/// The connector's variable for `--transport`.
pub const ENV: &str = "SALLYPORT_TRANSPORT";

/// The transport this run asks for: `SALLYPORT_TRANSPORT`, else auto.
pub fn choice() -> TransportChoice {
    match std::env::var(ENV).as_deref() {
        Ok("tcp") => TransportChoice::Tcp,
        Ok("quic") => TransportChoice::Quic,
        _ => TransportChoice::Auto,
    }
}

/// The name a live connection reports (`connector list`, metrics) for
/// this run's transport: `tcp` when asked for, else `quic` (auto reaches
/// QUIC on loopback).
pub fn expected() -> &'static str {
    match choice() {
        TransportChoice::Tcp => "tcp",
        _ => "quic",
    }
}
