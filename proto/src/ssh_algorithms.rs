//! The SSH algorithms Sallyport offers, in one place: the browser client,
//! the native client and the connector's host-key scan all negotiate with
//! these lists, so a server that one of them reaches, all of them reach.
//!
//! The order is OpenSSH 9.9's client order (`ssh -Q kex` et al. and
//! ssh_config(5), `KexAlgorithms`, `Ciphers`, `MACs`, `HostKeyAlgorithms`),
//! less what russh does not implement (sntrup761x25519, UMAC) and less what
//! OpenSSH offers but Sallyport refuses: SHA-1 in key exchange, MACs and
//! host-key signatures, and CBC ciphers (OpenSSH does not offer those by
//! default either, except `hmac-sha1` last among its MACs).
//!
//! The names are SSH wire names (RFC 4250 §4.11, RFC 4253 §6-7); with the
//! `russh` feature, [`preferred`] and [`client_config`] turn them into
//! russh's types, and [`negotiation_failure`] turns russh's "no common
//! algorithm" error into one line a person can read.

/// Key exchange (RFC 4253 §7), most preferred first: the post-quantum hybrid
/// first as OpenSSH 9.9+ does, then curve25519 (RFC 8731), the NIST curves
/// (RFC 5656 §4), group exchange (RFC 4419, sized by [`GEX_MIN_BITS`] etc.),
/// and the fixed groups of RFC 8268.
pub const KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
];

/// Pseudo-algorithms sent after [`KEX`] in the client's KEXINIT, never
/// chosen as a key exchange: `ext-info-c` asks for the server's
/// `server-sig-algs` (RFC 8308 §2.1), and the strict-kex marker turns on
/// OpenSSH's countermeasure to the Terrapin attack (sequence numbers reset
/// at each NEWKEYS).
pub const KEX_EXTENSIONS: &[&str] = &["ext-info-c", "kex-strict-c-v00@openssh.com"];

/// The same markers as a server sends them (RFC 8308 §2.1, OpenSSH's
/// PROTOCOL): left out of the server's list when a refusal names it.
pub const SERVER_KEX_EXTENSIONS: &[&str] = &["ext-info-s", "kex-strict-s-v00@openssh.com"];

/// Host-key algorithms (RFC 4253 §6.6), most preferred first. `ssh-rsa`
/// (RSA with SHA-1 signatures) is left out as OpenSSH 8.8+ leaves it out: a
/// server that can only sign with SHA-1 is refused, with the message of
/// [`negotiation_failure`]. An RSA host key itself is fine: any server with
/// one also signs with SHA-2 (RFC 8332) unless configured not to.
pub const HOST_KEY: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// Ciphers (RFC 4253 §6.3, RFC 4344 §4, RFC 5647), most preferred first.
/// No CBC: OpenSSH has not offered it by default since 6.7.
pub const CIPHERS: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
];

/// MACs (RFC 4253 §6.4, RFC 6668), most preferred first: SHA-2 only,
/// encrypt-then-MAC first. Only the CTR ciphers use one; chacha20-poly1305
/// and AES-GCM carry their own integrity check.
pub const MACS: &[&str] = &[
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
];

/// Smallest group, in bits, accepted in a Diffie-Hellman group exchange:
/// the minimum of RFC 8270 §3 (which updates RFC 4419 §3).
pub const GEX_MIN_BITS: usize = 2048;

/// The group size, in bits, asked for in a group exchange (the `n` of
/// RFC 4419 §3, the client's choice). 3072 bits give about 128 bits of
/// security (NIST SP 800-57 Part 1, Table 2), as curve25519 does, which
/// Sallyport prefers anyway. A larger group costs a lot here: the DH of
/// russh draws its secret exponent as large as the group, so one 8192-bit
/// exchange is two 8192-bit modular exponentiations with an 8192-bit
/// exponent, seconds in the browser's WebAssembly (OpenSSH uses a short
/// exponent and can afford asking for 8192).
pub const GEX_PREFERRED_BITS: usize = 3072;

/// Largest group, in bits, accepted in a group exchange: the maximum of
/// RFC 8270 §3. A server that has no 3072-bit group may send one up to this.
pub const GEX_MAX_BITS: usize = 8192;

/// The kinds of algorithm negotiated in a key exchange (RFC 4253 §7.1), as
/// the refusal message names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Key exchange methods (`kex_algorithms`).
    KeyExchange,
    /// Server host key algorithms.
    HostKey,
    /// Encryption algorithms.
    Cipher,
    /// MAC algorithms.
    Mac,
    /// Compression algorithms.
    Compression,
}

impl Kind {
    /// Its name in the refusal message ("key exchange", "cipher", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KeyExchange => "key exchange",
            Kind::HostKey => "host key algorithm",
            Kind::Cipher => "cipher",
            Kind::Mac => "MAC",
            Kind::Compression => "compression",
        }
    }
}

/// The one line shown when the server and Sallyport share no algorithm of
/// `kind`: `no common key exchange: the server offers A,B; Sallyport offers
/// C,D` (lists in each side's order of preference, comma-separated as SSH
/// name-lists are, RFC 4251 §5).
pub fn describe_no_common(kind: Kind, server: &[String], ours: &[String]) -> String {
    let server = if server.is_empty() {
        "nothing".to_owned()
    } else {
        server.join(",")
    };
    format!(
        "no common {}: the server offers {server}; Sallyport offers {}",
        kind.as_str(),
        ours.join(",")
    )
}

#[cfg(feature = "russh")]
pub use with_russh::*;

#[cfg(feature = "russh")]
mod with_russh {
    use std::borrow::Cow;
    use std::str::FromStr;

    use russh::keys::ssh_key::Algorithm;
    use russh::{cipher, kex, mac, AlgorithmKind, Preferred};

    use super::*;

    /// The lists above as russh's [`Preferred`]; compression is russh's
    /// default (`none`, then zlib). A name russh does not know is left out
    /// (the tests check there is none).
    pub fn preferred() -> Preferred {
        // russh parses only real key exchanges; the markers are its constants.
        let markers = [
            kex::EXTENSION_SUPPORT_AS_CLIENT,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
        ];
        let kex: Vec<kex::Name> = KEX
            .iter()
            .filter_map(|n| kex::Name::try_from(*n).ok())
            .chain(
                markers
                    .into_iter()
                    .filter(|m| KEX_EXTENSIONS.contains(&m.as_ref())),
            )
            .collect();
        let key: Vec<Algorithm> = HOST_KEY
            .iter()
            .filter_map(|n| Algorithm::from_str(n).ok())
            .collect();
        let cipher: Vec<cipher::Name> = CIPHERS
            .iter()
            .filter_map(|n| cipher::Name::try_from(*n).ok())
            .collect();
        let mac: Vec<mac::Name> = MACS
            .iter()
            .filter_map(|n| mac::Name::try_from(*n).ok())
            .collect();
        Preferred {
            kex: Cow::Owned(kex),
            key: Cow::Owned(key),
            cipher: Cow::Owned(cipher),
            mac: Cow::Owned(mac),
            ..Preferred::DEFAULT
        }
    }

    /// The group-exchange sizes [`GEX_MIN_BITS`], [`GEX_PREFERRED_BITS`],
    /// [`GEX_MAX_BITS`] for russh.
    pub fn gex_params() -> russh::client::GexParams {
        russh::client::GexParams::new(GEX_MIN_BITS, GEX_PREFERRED_BITS, GEX_MAX_BITS)
            .unwrap_or_default()
    }

    /// russh's client configuration with Sallyport's algorithms
    /// ([`preferred`], [`gex_params`]) and russh's defaults otherwise.
    pub fn client_config() -> russh::client::Config {
        russh::client::Config {
            preferred: preferred(),
            gex: gex_params(),
            ..Default::default()
        }
    }

    /// The readable line for a key exchange that failed because the two
    /// sides share no algorithm of some kind ([`describe_no_common`]);
    /// `None` for any other error.
    pub fn negotiation_failure(error: &russh::Error) -> Option<String> {
        let russh::Error::NoCommonAlgo { kind, ours, theirs } = error else {
            return None;
        };
        let kind = match kind {
            AlgorithmKind::Kex => Kind::KeyExchange,
            AlgorithmKind::Key => Kind::HostKey,
            AlgorithmKind::Cipher => Kind::Cipher,
            AlgorithmKind::Mac => Kind::Mac,
            AlgorithmKind::Compression => Kind::Compression,
        };
        let theirs: Vec<String> = theirs
            .iter()
            .filter(|n| !SERVER_KEX_EXTENSIONS.contains(&n.as_str()))
            .cloned()
            .collect();
        Some(describe_no_common(kind, &theirs, ours))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn russh_knows_every_name() {
            let p = preferred();
            assert_eq!(p.kex.len(), KEX.len() + KEX_EXTENSIONS.len());
            assert_eq!(p.key.len(), HOST_KEY.len());
            assert_eq!(p.cipher.len(), CIPHERS.len());
            assert_eq!(p.mac.len(), MACS.len());
            let kex: Vec<&str> = p.kex.iter().map(AsRef::as_ref).collect();
            assert_eq!(
                kex,
                [KEX, KEX_EXTENSIONS].concat(),
                "key exchange names round-trip"
            );
            let names: Vec<String> = p.key.iter().map(ToString::to_string).collect();
            assert_eq!(names, HOST_KEY, "host-key names round-trip");
        }

        #[test]
        fn group_exchange_sizes_are_valid_for_russh() {
            let gex = russh::client::GexParams::new(GEX_MIN_BITS, GEX_PREFERRED_BITS, GEX_MAX_BITS)
                .expect("valid sizes");
            assert_eq!(
                gex_params().preferred_group_size(),
                gex.preferred_group_size()
            );
        }

        #[test]
        fn a_failed_negotiation_reads_as_one_line() {
            let e = russh::Error::NoCommonAlgo {
                kind: AlgorithmKind::Kex,
                ours: vec!["curve25519-sha256".into(), "ecdh-sha2-nistp256".into()],
                theirs: vec![
                    "diffie-hellman-group1-sha1".into(),
                    "kex-strict-s-v00@openssh.com".into(),
                ],
            };
            assert_eq!(
                negotiation_failure(&e).as_deref(),
                Some(
                    "no common key exchange: the server offers diffie-hellman-group1-sha1; \
                     Sallyport offers curve25519-sha256,ecdh-sha2-nistp256"
                )
            );
            assert_eq!(negotiation_failure(&russh::Error::Disconnect), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_sha1_or_cbc_is_offered() {
        for name in KEX.iter().chain(HOST_KEY).chain(CIPHERS).chain(MACS) {
            assert!(!name.contains("sha1"), "{name}");
            assert!(!name.contains("cbc"), "{name}");
            assert_ne!(*name, "ssh-rsa");
        }
    }
}
