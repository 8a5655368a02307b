//! Random secrets.

use base64::Engine as _;

/// A fresh random secret of `len` bytes, base64url without padding.
pub fn random_secret(len: usize) -> String {
    let mut buf = vec![0u8; len];
    rand::fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
