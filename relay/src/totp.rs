//! Time-based one-time codes (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps),
//! the second factor of sign-in. Secrets are 160 random bits, shown to the
//! user once as an `otpauth://` URI and a QR code of it.

use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use ring::hmac;

/// Seconds per code.
pub const STEP: u64 = 30;
pub const DIGITS: u32 = 6;
/// Steps either side of now that are accepted, for clock skew and typing time.
pub const SKEW_STEPS: u64 = 1;
/// Bytes of secret (RFC 4226 recommends 160 bits).
pub const SECRET_LEN: usize = 20;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = buf.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            out.push(BASE32[((v >> (35 - 5 * i)) & 31) as usize] as char);
        }
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = BASE32.iter().position(|x| *x == c.to_ascii_uppercase())? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A new random secret, base32.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_LEN];
    rand::fill(&mut bytes[..]);
    base32(&bytes)
}

/// The code of one time step (HOTP of the step counter).
pub fn code_at_step(secret: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let mac = mac.as_ref();
    let off = (mac[mac.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([mac[off] & 0x7f, mac[off + 1], mac[off + 2], mac[off + 3]]);
    bin % 10u32.pow(DIGITS)
}

/// The code at Unix time `now` (seconds), as six digits, or `None` when
/// `secret_b32` is not base32. For tests only: what a person's
/// authenticator app would show.
#[cfg(any(test, feature = "test-hooks"))]
pub fn code_now(secret_b32: &str, now: u64) -> Option<String> {
    let secret = base32_decode(secret_b32)?;
    Some(format!(
        "{:0width$}",
        code_at_step(&secret, now / STEP),
        width = DIGITS as usize
    ))
}

/// The time step `code` belongs to, if it is valid near `now`. The caller
/// must refuse a step at or before the last one used (no replay).
pub fn matching_step(secret_b32: &str, code: &str, now: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let want: u32 = code.parse().ok()?;
    let secret = base32_decode(secret_b32)?;
    let now_step = now / STEP;
    // Newest first: with two matches, the later step is the safer claim.
    (now_step.saturating_sub(SKEW_STEPS)..=now_step + SKEW_STEPS)
        .rev()
        .find(|s| code_at_step(&secret, *s) == want)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `otpauth://` URI authenticator apps import (Key Uri Format).
pub fn otpauth_uri(issuer: &str, user: &str, secret_b32: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret_b32}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        percent_encode(user)
    )
}

/// The URI as a QR code drawn with Unicode half blocks, for a terminal.
pub fn qr_text(uri: &str) -> Result<String, String> {
    let code = QrCode::new(uri.as_bytes()).map_err(|e| format!("cannot draw a QR code: {e}"))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// The URI as an SVG QR code.
pub fn qr_svg(uri: &str) -> Result<String, String> {
    let code = QrCode::new(uri.as_bytes()).map_err(|e| format!("cannot draw a QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA1 key; the RFC prints 8 digits, apps use the last 6.
        let secret = b"12345678901234567890";
        for (t, eight) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(code_at_step(secret, t / STEP), eight % 1_000_000, "t={t}");
        }
    }

    #[test]
    fn base32_round_trip_and_skew() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert!(base32_decode("0189").is_none());
        let s = new_secret();
        assert_eq!(base32_decode(&s).unwrap().len(), SECRET_LEN);
        let now = 1_800_000_015;
        let code = code_now(&s, now).unwrap();
        assert_eq!(matching_step(&s, &code, now), Some(now / STEP));
        assert_eq!(matching_step(&s, &code, now + STEP), Some(now / STEP));
        assert_eq!(matching_step(&s, &code, now + 3 * STEP), None);
        assert_eq!(matching_step(&s, "12345", now), None);
        assert_eq!(matching_step(&s, "abcdef", now), None);
    }

    #[test]
    fn uri_and_qr() {
        let uri = otpauth_uri("Sallyport relay.example:8443", "alice", "MZXW6YTBOI");
        assert_eq!(
            uri,
            "otpauth://totp/Sallyport%20relay.example%3A8443:alice?secret=MZXW6YTBOI&issuer=Sallyport%20relay.example%3A8443&algorithm=SHA1&digits=6&period=30"
        );
        assert!(qr_text(&uri).unwrap().lines().count() > 20);
        assert!(qr_svg(&uri).unwrap().starts_with("<?xml"));
    }
}
