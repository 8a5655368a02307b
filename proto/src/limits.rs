//! Every size limit of the wire formats, in one place.
//!
//! A decoder checks these before it allocates, so a peer cannot make us hold
//! more than the limit however it lies about lengths.

/// Largest frame body on a tunnel stream (control or session header), in bytes.
/// A hello with [`MAX_SERVICES`] services, each with a few RSA host keys, fits.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// Bytes of the length prefix in front of every frame.
pub const FRAME_HEADER_LEN: usize = 4;

/// Longest connector, service or user name.
pub const MAX_NAME_LEN: usize = 64;

/// Most services one connector may declare.
pub const MAX_SERVICES: usize = 64;

/// Most host keys reported for one SSH service.
pub const MAX_HOST_KEYS: usize = 8;

/// Longest host key line (`algorithm base64 [comment]`); a 16384-bit RSA key fits.
pub const MAX_HOST_KEY_LEN: usize = 4096;

/// Longest human-readable reason (refusals, drains, errors).
pub const MAX_REASON_LEN: usize = 512;

/// Longest version string or session id.
pub const MAX_ID_LEN: usize = 64;

/// Longest socket address as text (`[ipv6%scope]:port` fits).
pub const MAX_ADDR_LEN: usize = 128;

/// Longest certificate or CSR in PEM form.
pub const MAX_PEM_LEN: usize = 16 * 1024;

/// Longest enrolment token as text.
pub const MAX_TOKEN_LEN: usize = 2048;

/// Longest text control message on a client WebSocket (a session event
/// with [`MAX_EVENT_DATA`] bytes of terminal data, base64, fits).
pub const MAX_CLIENT_CONTROL_LEN: usize = 32 * 1024;

/// Most terminal bytes one session event carries; clients split larger reads.
pub const MAX_EVENT_DATA: usize = 16 * 1024;

/// Longest client session id (the recording's name).
pub const MAX_CLIENT_SESSION_LEN: usize = 32;

/// Largest binary WebSocket message a client or the relay sends or accepts.
pub const MAX_WS_MESSAGE_LEN: usize = 256 * 1024;
