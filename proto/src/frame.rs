//! Length-prefixed frames: a 4-byte big-endian body length, then a JSON body.
//!
//! JSON keeps the format readable in captures and easy to extend with new
//! optional fields; the length prefix makes framing independent of it, and
//! [`Validate`] enforces the per-field limits after parsing.

use serde::{de::DeserializeOwned, Serialize};

use crate::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix (or an encoded message) is over the limit; the
    /// body is never read.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    Oversize {
        /// The length the frame claims, in bytes.
        len: usize,
        /// The limit it is over, in bytes.
        max: usize,
    },
    /// The body is not the JSON of the expected message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The message parsed but a field breaks its limit or rule.
    #[error("invalid frame: {0}")]
    Invalid(String),
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame")]
    Truncated,
}

/// Checks the limits of a decoded message's fields.
pub trait Validate {
    /// `Ok` when every field is within its limit in [`crate::limits`];
    /// otherwise [`FrameError::Invalid`] naming the field.
    fn validate(&self) -> Result<(), FrameError>;
}

/// Appends `msg` as one frame to `out`.
pub fn encode_frame<T: Serialize + Validate>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    msg.validate()?;
    let body = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::Oversize {
            len: body.len(),
            max: MAX_FRAME_LEN,
        });
    }
    // The limit above keeps the length well inside u32.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Reads the body length from a frame header, refusing lengths over the limit.
pub fn frame_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversize {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Parses a frame body (without its length prefix) and validates it.
pub fn decode_body<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, FrameError> {
    let msg: T = serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    msg.validate()?;
    Ok(msg)
}

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame ("incomplete":
/// read more and call again), or the message and the number of bytes it
/// used. Any error is final for that frame. This is the one decoder: the
/// fuzz targets and property tests drive it from memory, and
/// `io::FrameReader` (feature `tokio`) drives it from every stream.
pub fn decode_frame<T: DeserializeOwned + Validate>(
    buf: &[u8],
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let mut h = [0u8; FRAME_HEADER_LEN];
    h.copy_from_slice(header);
    let len = frame_len(h)?;
    let Some(body) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, FRAME_HEADER_LEN + len)))
}

/// Checks a string field against its limit.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), FrameError> {
    if value.len() > max {
        return Err(FrameError::Invalid(format!(
            "{field} is {} bytes, over the limit of {max}",
            value.len()
        )));
    }
    Ok(())
}

/// A service name in its one canonical form: checked like [`check_name`],
/// then ASCII-lowercased. Service names are case-insensitive everywhere
/// (stored, compared, shown) because OpenSSH lowercases `%h` in a
/// `ProxyCommand` (ssh_config(5), TOKENS), so `ssh Prod-DB` asks for
/// `prod-db`; two names that differ only in case are one service.
///
/// Errors: the [`check_name`] error, naming `field`.
pub fn service_name(field: &str, value: &str) -> Result<String, FrameError> {
    check_name(field, value)?;
    Ok(value.to_ascii_lowercase())
}

/// Checks a name (connector, service, user): 1 to `MAX_NAME_LEN` characters
/// of `a-z A-Z 0-9 . _ -`, not starting with `-` or `.`.
pub fn check_name(field: &str, value: &str) -> Result<(), FrameError> {
    check_len(field, value, crate::limits::MAX_NAME_LEN)?;
    let ok = !value.is_empty()
        && !value.starts_with(['-', '.'])
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(FrameError::Invalid(format!(
            "{field} {value:?} must be 1-{} characters of letters, digits, '.', '_' or '-'",
            crate::limits::MAX_NAME_LEN
        )))
    }
}
