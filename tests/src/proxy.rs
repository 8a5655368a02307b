//! A load balancer played by the test: PROXY protocol headers written by
//! hand (v1 text, v2 binary, as HAProxy's specification lays them out),
//! then TLS and one HTTP/1.1 request over the same socket, from a chosen
//! loopback address.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::https::{relay_tls, tcp_from};
use crate::RelayProc;

/// A PROXY v1 header: `client` connected to `relay` over TCP.
pub fn v1_header(client: SocketAddr, relay: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        relay.ip(),
        client.port(),
        relay.port()
    )
    .into_bytes()
}

/// A PROXY v2 header (command PROXY, TCP): `client` connected to `relay`.
/// Both must be of one family.
pub fn v2_header(client: SocketAddr, relay: SocketAddr) -> Vec<u8> {
    let mut addrs = Vec::new();
    let family = match (client.ip(), relay.ip()) {
        (IpAddr::V4(c), IpAddr::V4(r)) => {
            addrs.extend_from_slice(&c.octets());
            addrs.extend_from_slice(&r.octets());
            0x11
        }
        (IpAddr::V6(c), IpAddr::V6(r)) => {
            addrs.extend_from_slice(&c.octets());
            addrs.extend_from_slice(&r.octets());
            0x21
        }
        _ => panic!("a v2 header's addresses are of one family"),
    };
    addrs.extend_from_slice(&client.port().to_be_bytes());
    addrs.extend_from_slice(&relay.port().to_be_bytes());
    let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    b.push(0x21); // version 2, command PROXY
    b.push(family);
    b.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    b.extend_from_slice(&addrs);
    b
}

/// A PROXY v2 `LOCAL` header, as a balancer's health check sends: the
/// connection is the balancer's own.
pub fn v2_local() -> Vec<u8> {
    let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    b.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    b
}

/// A TCP connection to the relay's HTTPS port from `source` that first
/// sends `preamble` (a PROXY header, or nothing), then does TLS.
pub async fn tls_after(
    relay: &RelayProc,
    source: IpAddr,
    preamble: &[u8],
) -> io::Result<TlsStream<TcpStream>> {
    let mut tcp = tcp_from(relay, source).await?;
    tcp.write_all(preamble).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    tokio_rustls::TlsConnector::from(relay_tls(relay))
        .connect(name, tcp)
        .await
}

/// One request on `stream`, which it then closes (`Connection: close`):
/// the status and the body. `headers` are added as given.
pub async fn request(
    stream: &mut TlsStream<TcpStream>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> io::Result<(u16, String)> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    stream.write_all(head.as_bytes()).await?;
    let mut out = Vec::new();
    // A peer that closes without close_notify still sent its answer.
    if let Err(e) = stream.read_to_end(&mut out).await {
        if out.is_empty() {
            return Err(e);
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no HTTP status in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// `POST /api/login` over a new connection from `source` that starts with
/// `preamble`, with `headers`: the status and the answer.
pub async fn login(
    relay: &RelayProc,
    source: IpAddr,
    preamble: &[u8],
    headers: &[(&str, &str)],
    user: &str,
    password: &str,
) -> io::Result<(u16, String)> {
    let mut s = tls_after(relay, source, preamble).await?;
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
    request(&mut s, "POST", "/api/login", headers, Some(&body)).await
}

/// `GET path` as the bearer of `token` over a new connection from `source`
/// that starts with `preamble`, with `headers`: the status and the body.
pub async fn get(
    relay: &RelayProc,
    source: IpAddr,
    preamble: &[u8],
    headers: &[(&str, &str)],
    token: &str,
    path: &str,
) -> io::Result<(u16, String)> {
    let mut s = tls_after(relay, source, preamble).await?;
    let bearer = format!("Bearer {token}");
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    request(&mut s, "GET", path, &all, None).await
}

/// The addresses of the sign-in events in the relay's audit log, oldest first.
pub fn sign_in_addresses(relay: &RelayProc) -> Vec<String> {
    relay
        .audit_export(&["--type", "sign_in"])
        .iter()
        .filter_map(|e| e["event"]["ip"].as_str().map(str::to_owned))
        .collect()
}
