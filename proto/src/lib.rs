#![warn(missing_docs)]
#![forbid(unsafe_code)]
//! Sallyport wire formats, sans-IO: bytes in, messages out.
//!
//! Nothing here touches a socket. The relay, the connector and the clients
//! drive these codecs from their own I/O layers, and the fuzz targets and
//! property tests drive them from memory. Every length has a named limit in
//! [`limits`], and every decoder returns a [`FrameError`] that says what was
//! wrong instead of panicking.

pub mod client;
pub mod frame;
pub mod limits;
pub mod ssh_algorithms;
pub mod token;
pub mod tunnel;

pub use frame::{decode_frame, encode_frame, FrameError, Validate};
#[cfg(feature = "tokio")]
pub mod io;
