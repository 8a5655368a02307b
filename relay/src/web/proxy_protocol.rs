//! Reading the PROXY protocol header (v1 text or v2 binary, HAProxy's
//! "The PROXY protocol" specification) a load balancer sends before the
//! client's own bytes, so that the relay learns who the client is.
//!
//! The header is parsed by the `ppp` crate; this module only takes its bytes
//! off the socket, and no more than the header: what follows is the
//! client's TLS handshake. Whom the header is read from at all (trusted
//! proxies only) and the time it may take are the listener's business
//! (`listener::GuardAcceptor`).

use std::net::SocketAddr;

use ppp::v1;
use ppp::v2;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes a v1 header may have, its CRLF included (the
/// specification's own bound: `PROXY TCP6` with two full IPv6 addresses
/// and ports).
pub const MAX_V1_HEADER: usize = 107;
/// The most bytes a v2 header may have, TLVs included. The addresses take
/// at most 216 bytes (two Unix paths); the rest is room for the TLVs
/// balancers add (AWS's VPC endpoint id, GCP's PSC id, a unique id, SSL
/// details). A longer one is refused rather than buffered.
pub const MAX_V2_HEADER: usize = 1024;
/// How long a trusted proxy has to send the whole header, from the TCP
/// accept. The header, then the TLS handshake, also fit in the HTTPS
/// handshake timeout together (whichever ends first).
pub const PROXY_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version and command, family,
/// and the length of the rest.
const V2_FIXED: usize = 16;
/// Bytes read before the version is known: no header is shorter (v1's
/// `PROXY UNKNOWN\r\n` has 15, v2 at least 16), so this never reads into
/// the TLS handshake.
const PREFIX: usize = 12;

/// Why a connection's PROXY header was refused. The connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The socket failed or closed before the header ended.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The first bytes are neither `PROXY ` nor the v2 signature: the
    /// trusted peer does not speak PROXY protocol (set `proxy_protocol`
    /// on the balancer too, or turn it off here).
    #[error("no PROXY protocol header (the connection starts with {0:02x?})")]
    Missing([u8; PREFIX]),
    /// Longer than [`MAX_V1_HEADER`] / [`MAX_V2_HEADER`].
    #[error("PROXY header longer than {0} bytes")]
    TooLong(usize),
    /// The parser refused it.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
}

/// Reads one PROXY header (v1 or v2) from `stream` and no byte more.
/// Returns the client's address it names, or `None` when it names none
/// (v2 `LOCAL`, as a balancer's health check sends; v1 `UNKNOWN`; v2 Unix
/// or unspecified addresses): the connection is then the proxy's own.
pub async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut prefix = [0u8; PREFIX];
    stream.read_exact(&mut prefix).await?;
    if &prefix == V2_SIGNATURE {
        let mut buf = Vec::with_capacity(V2_FIXED);
        buf.extend_from_slice(&prefix);
        let mut rest = [0u8; 4];
        stream.read_exact(&mut rest).await?;
        buf.extend_from_slice(&rest);
        let len = V2_FIXED + usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if len > MAX_V2_HEADER {
            return Err(ProxyHeaderError::TooLong(MAX_V2_HEADER));
        }
        buf.resize(len, 0);
        stream.read_exact(&mut buf[V2_FIXED..]).await?;
        let header = v2::Header::try_from(&buf[..])
            .map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
        if header.command == v2::Command::Local {
            return Ok(None);
        }
        return Ok(match header.addresses {
            v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v2::Addresses::Unix(_) | v2::Addresses::Unspecified => None,
        });
    }
    if !prefix.starts_with(b"PROXY ") {
        return Err(ProxyHeaderError::Missing(prefix));
    }
    // A v1 line ends with CRLF: read it a byte at a time so nothing of the
    // TLS handshake after it is taken (at most MAX_V1_HEADER reads, from a
    // trusted proxy only).
    let mut buf = prefix.to_vec();
    while !buf.ends_with(b"\r\n") {
        if buf.len() >= MAX_V1_HEADER {
            return Err(ProxyHeaderError::TooLong(MAX_V1_HEADER));
        }
        buf.push(stream.read_u8().await?);
    }
    let header =
        v1::Header::try_from(&buf[..]).map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
    Ok(match header.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut r = bytes;
        let res = read_header(&mut r).await;
        (res, r.to_vec())
    }

    fn v2(command: u8, family: u8, addrs: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | command);
        b.push(family);
        b.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
        b.extend_from_slice(addrs);
        b
    }

    #[tokio::test]
    async fn v1_names_the_client_and_leaves_the_rest() {
        let (res, rest) = read(b"PROXY TCP4 198.51.100.7 10.0.0.1 4711 443\r\n\x16\x03\x01").await;
        assert_eq!(res.unwrap(), Some("198.51.100.7:4711".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");
        let (res, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n").await;
        assert_eq!(res.unwrap(), Some("[2001:db8::7]:4711".parse().unwrap()));
        let (res, rest) = read(b"PROXY UNKNOWN\r\n\x16").await;
        assert_eq!(res.unwrap(), None);
        assert_eq!(rest, b"\x16");
    }

    #[tokio::test]
    async fn v2_names_the_client_and_leaves_the_rest() {
        let mut addrs = vec![198, 51, 100, 7, 10, 0, 0, 1];
        addrs.extend_from_slice(&4711u16.to_be_bytes());
        addrs.extend_from_slice(&443u16.to_be_bytes());
        let mut bytes = v2(1, 0x11, &addrs);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (res, rest) = read(&bytes).await;
        assert_eq!(res.unwrap(), Some("198.51.100.7:4711".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");
        // LOCAL: a health check, the proxy itself.
        let (res, _) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(res.unwrap(), None);
    }

    #[tokio::test]
    async fn bad_headers_are_refused() {
        let (res, _) = read(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00").await;
        assert!(matches!(res, Err(ProxyHeaderError::Missing(_))), "{res:?}");
        let (res, _) = read(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n").await;
        assert!(
            matches!(res, Err(ProxyHeaderError::Malformed(_))),
            "{res:?}"
        );
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        let (res, _) = read(long.as_bytes()).await;
        assert!(matches!(res, Err(ProxyHeaderError::TooLong(_))), "{res:?}");
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (res, _) = read(&big).await;
        assert!(matches!(res, Err(ProxyHeaderError::TooLong(_))), "{res:?}");
        let (res, _) = read(b"PROXY TCP4 1.2").await;
        assert!(matches!(res, Err(ProxyHeaderError::Io(_))), "{res:?}");
    }
}
