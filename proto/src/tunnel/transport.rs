//! The QUIC transport parameters of the tunnel, which the relay and the
//! connector both build their `quinn::TransportConfig` from.
//!
//! Plain numbers, each with its unit, so `proto` needs no QUIC library. Some
//! are negotiated (the idle timeout is the smaller of the two sides'), some
//! are one side's promise to the other (how many streams each may open), and
//! all must be read together: the keep-alive is what keeps an idle tunnel
//! inside the idle timeout, and the stream window is what one session may
//! have in flight inside the connection window.

use std::time::Duration;

/// A connection with no packets for this long is dead (RFC 9000 §10.1,
/// `max_idle_timeout`); [`KEEP_ALIVE`] keeps a healthy idle tunnel far
/// from it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an idle tunnel sends a keep-alive packet (a PING, RFC 9000
/// §19.2); also how soon a connector learns that a restarted relay lost
/// its connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Flow-control window of one stream, in bytes (RFC 9000 §4,
/// `initial_max_stream_data_*`): bounds the bytes buffered per session on
/// each side while keeping a loopback or LAN path busy.
pub const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;

/// Flow-control window of a whole connection across its sessions, in bytes
/// (RFC 9000 §4, `initial_max_data`); also what one side sends ahead.
pub const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// Most streams the relay may have open on one connection at once
/// (the connector's `initial_max_streams_bidi`, RFC 9000 §4.6): a session
/// beyond it waits for one to end.
pub const MAX_SESSIONS_PER_CONNECTION: u32 = 1024;

/// Streams a connector may open towards the relay (the relay's
/// `initial_max_streams_bidi`): its control stream (or its enrolment
/// stream) and one spare.
pub const MAX_CONNECTOR_STREAMS: u32 = 2;

/// Unidirectional streams either side may open: none, the tunnel uses none.
pub const MAX_UNI_STREAMS: u32 = 0;

/// Largest UDP payload path MTU discovery (RFC 8899) probes for, in bytes.
/// The usual default stops at 1452 (Ethernet); loopback and jumbo-frame
/// networks carry far more, and every packet saved is a seal, an open and
/// a share of a syscall saved. On paths that cannot, the probes are lost
/// and the MTU stays where it was.
pub const MTU_UPPER_BOUND_BYTES: u16 = 9000;

// The numbers only work together: keep-alives must land well inside the idle
// timeout, and one session's window inside the connection's.
const _: () = assert!(KEEP_ALIVE.as_millis() * 3 <= IDLE_TIMEOUT.as_millis());
const _: () = assert!(STREAM_WINDOW_BYTES <= CONNECTION_WINDOW_BYTES);
