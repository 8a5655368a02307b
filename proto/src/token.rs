//! Enrolment tokens: what `sallyport-relay connector add` prints and
//! `sallyport-connector run --token` takes.
//!
//! A token is `spt1.` followed by base64url (no padding) of a JSON object with
//! the relay's tunnel address, the SHA-256 fingerprint of the relay CA's
//! certificate (hex) and a random secret. The secret is the only part that
//! grants anything, and the relay accepts it once, before it expires.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::frame::{check_len, FrameError, Validate};
use crate::limits::{MAX_ADDR_LEN, MAX_ID_LEN, MAX_TOKEN_LEN};

const PREFIX: &str = "spt1.";

/// What an enrolment token carries: everything a new connector needs to
/// find the relay, trust it, and prove it was invited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentToken {
    /// Where the connector dials the relay: `host:port` (UDP).
    pub relay: String,
    /// SHA-256 of the relay CA certificate's DER, lowercase hex.
    pub ca_sha256: String,
    /// Random secret, as issued by the relay.
    pub secret: String,
    /// Unix time (seconds) after which the relay refuses the token.
    pub expires: u64,
}

impl Validate for EnrolmentToken {
    fn validate(&self) -> Result<(), FrameError> {
        check_len("relay address", &self.relay, MAX_ADDR_LEN)?;
        check_len("secret", &self.secret, MAX_ID_LEN)?;
        if self.ca_sha256.len() != 64 || !self.ca_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FrameError::Invalid(
                "CA fingerprint must be 64 hex digits".into(),
            ));
        }
        Ok(())
    }
}

impl EnrolmentToken {
    /// The token as an admin pastes it: `spt1.` then the JSON, base64url
    /// without padding.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a struct of strings always serializes");
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    }

    /// Parses [`EnrolmentToken::encode`]'s text (surrounding whitespace is
    /// ignored). Errors: over [`MAX_TOKEN_LEN`], a wrong prefix, not base64url,
    /// or a field over its limit.
    pub fn decode(text: &str) -> Result<Self, FrameError> {
        let text = text.trim();
        check_len("token", text, MAX_TOKEN_LEN)?;
        let body = text.strip_prefix(PREFIX).ok_or_else(|| {
            FrameError::Malformed(format!("an enrolment token starts with {PREFIX:?}"))
        })?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| FrameError::Malformed(format!("token is not base64url: {e}")))?;
        crate::frame::decode_body(&json)
    }
}
