//! The client's address: the one thing everything that judges a person by
//! where they come from (policy's `cidr` and country rules, the "new
//! network" risk factor, the sign-in rate limits, audit events, the
//! per-address connection caps) must agree on.
//!
//! Behind a load balancer the TCP peer is the balancer. The real address
//! then comes from a PROXY protocol header (read by the listener, see
//! `proxy_protocol`) or from an `X-Forwarded-For` / `Forwarded` (RFC 7239)
//! header, and is believed only when the party that says it is one of the
//! admin's `trusted_proxies`. Anyone else is taken for who their socket
//! says they are: a forged header from the internet must never move a
//! person into the office's address range.
//!
//! Handlers take [`ClientAddr`]; nothing else reads `ConnectInfo`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

use crate::policy::net::Cidr;

/// The most forwarding hops read from the right of a forwarding header.
/// Past them the walk stops at the last trusted proxy, as at an entry that
/// is not an address: a chain of trusted proxies longer than this is a
/// misconfiguration, and a client cannot make the relay parse more.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// Which request header a trusted proxy writes the client's address into.
/// Only that one is read: a client behind a proxy that manages the other
/// could otherwise forge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de facto standard:
    /// nginx, HAProxy `option forwardfor`, most cloud balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239 section 4).
    Forwarded,
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            other => Err(format!(
                "forwarded_header {other:?} is neither \"x-forwarded-for\" nor \"forwarded\""
            )),
        }
    }
}

/// Whom the relay believes about the client's address, and how they say it.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    /// Addresses allowed to speak for a client (`trusted_proxies`). Empty:
    /// nobody, and every client is its TCP peer.
    pub trusted_proxies: Vec<Cidr>,
    /// Whether a trusted peer starts each connection with a PROXY protocol
    /// header (v1 or v2), which it then must.
    pub proxy_protocol: bool,
    /// The forwarding header a trusted peer's requests carry.
    pub header: ForwardedHeader,
}

impl Forwarding {
    /// Whether `ip` is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }

    /// The client of a request that arrived from `conn` (the TCP peer, or
    /// the source a trusted proxy named in a PROXY header) with `headers`.
    ///
    /// When `conn` is trusted, the forwarding header is read from the right
    /// (the entry the nearest proxy appended) and the first address that is
    /// not itself a trusted proxy is the client. An entry that is not an
    /// address (`unknown`, an obfuscated RFC 7239 identifier) or the end
    /// of [`MAX_FORWARDED_HOPS`] stops the walk at the last trusted hop: the
    /// client is then the proxy that could not say who it was.
    pub fn client_of(&self, conn: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(conn) {
            return conn;
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        // Several header lines are one list, in order (RFC 9110 section 5.3).
        let mut entries: Vec<&str> = Vec::new();
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else {
                return conn;
            };
            entries.extend(split_list(text));
        }
        let mut client = conn;
        for entry in entries.iter().rev().take(MAX_FORWARDED_HOPS) {
            let hop = match self.header {
                ForwardedHeader::XForwardedFor => parse_node(entry),
                ForwardedHeader::Forwarded => forwarded_for(entry).and_then(parse_node),
            };
            let Some(hop) = hop else {
                return client;
            };
            client = hop;
            if !self.is_trusted(hop) {
                return hop;
            }
        }
        client
    }
}

/// Splits a comma-separated header value, leaving commas inside quoted
/// strings alone.
fn split_list(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// The `for=` value of one RFC 7239 forwarded-element
/// (`for=192.0.2.60;proto=https;by=203.0.113.43`), unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as forwarding headers write it: `192.0.2.1`,
/// `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`
/// (RFC 7239 section 6).
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// What the listener learnt about a connection, put into each of its
/// requests (see `listener::GuardedService`).
#[derive(Debug, Clone)]
pub struct ConnPeer {
    /// The connection's client as far as TCP and PROXY protocol can tell:
    /// the source a trusted proxy's header named, else the TCP peer.
    pub addr: IpAddr,
    /// The listener's settings for forwarding headers.
    pub forwarding: Arc<Forwarding>,
}

/// The address of the person behind a request, after PROXY protocol and
/// forwarding headers from trusted proxies (see [`Forwarding::client_of`]).
/// The one extractor for it: handlers take this, never the socket's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(conn) = parts.extensions.get::<ConnPeer>() {
            return Ok(Self(conn.forwarding.client_of(conn.addr, &parts.headers)));
        }
        // A router served without the guarded listener (in-process tests):
        // the socket's peer, with nobody trusted.
        if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            return Ok(Self(peer.ip()));
        }
        Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the client's address is unknown",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn forwarding(header: ForwardedHeader) -> Forwarding {
        Forwarding {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            proxy_protocol: false,
            header,
        }
    }

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_itself_whatever_it_claims() {
        let f = forwarding(ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["198.51.100.7"]);
        assert_eq!(f.client_of(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            Forwarding::default().client_of(ip("10.1.1.1"), &h),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let f = forwarding(ForwardedHeader::XForwardedFor);
        // The client forged the first entry; the balancer appended the real one.
        let h = headers(
            "x-forwarded-for",
            &["192.0.2.66, 198.51.100.7", "10.2.3.4:5555"],
        );
        assert_eq!(f.client_of(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        let h = headers("x-forwarded-for", &["[2001:db8::7]:443"]);
        assert_eq!(f.client_of(ip("10.0.0.1"), &h), ip("2001:db8::7"));
        // No header: the proxy itself.
        assert_eq!(
            f.client_of(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // Only trusted hops: the left-most of them.
        let h = headers("x-forwarded-for", &["10.9.9.9, 10.8.8.8"]);
        assert_eq!(f.client_of(ip("10.0.0.1"), &h), ip("10.9.9.9"));
        // Garbage stops the walk at the last trusted hop.
        let h = headers("x-forwarded-for", &["192.0.2.66, unknown, 10.8.8.8"]);
        assert_eq!(f.client_of(ip("10.0.0.1"), &h), ip("10.8.8.8"));
        // The other header is not read.
        let h = headers("forwarded", &["for=198.51.100.7"]);
        assert_eq!(f.client_of(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn rfc_7239_forwarded_elements() {
        let f = forwarding(ForwardedHeader::Forwarded);
        let h = headers(
            "forwarded",
            &[
                "for=192.0.2.66;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
                "For=\"10.1.2.3:80\"",
            ],
        );
        assert_eq!(f.client_of(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = headers("forwarded", &["for=198.51.100.7, for=_hidden"]);
        assert_eq!(f.client_of(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers("forwarded", &["proto=https;for=\"198.51.100.7\""]);
        assert_eq!(f.client_of(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        assert_eq!("Forwarded".parse(), Ok(ForwardedHeader::Forwarded));
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }

    #[test]
    fn the_walk_is_bounded() {
        let f = forwarding(ForwardedHeader::XForwardedFor);
        let many = vec!["10.1.1.1"; MAX_FORWARDED_HOPS + 5].join(", ");
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_str(&format!("198.51.100.7, {many}")).unwrap(),
        );
        assert_eq!(f.client_of(ip("10.0.0.1"), &h), ip("10.1.1.1"));
    }
}
