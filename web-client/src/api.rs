//! HTTPS to the relay: TLS set-up, sign-in and sign-out, who is signed in,
//! the service list, and opening the session WebSocket.

use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use sallyport_proto::client::{
    ApiError, CliTokenRequest, LoginRequest, LoginResponse, SshCertRequest, SshCertResponse,
    CLI_TOKEN_PATH,
};
use sallyport_proto::limits::MAX_WS_MESSAGE_LEN;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::WebSocketStream;

use crate::ClientError;

/// Largest API answer the client reads.
const MAX_RESPONSE: usize = 64 * 1024;
/// Largest service list the client reads: with host keys, each service
/// may carry several kilobytes (a few RSA keys per connector).
const MAX_SERVICES_RESPONSE: usize = 4 * 1024 * 1024;

/// Where the relay is, parsed from its URL.
#[derive(Debug, Clone)]
pub struct RelayUrl {
    /// `https://authority` without a trailing slash.
    pub base: String,
    host: String,
    port: u16,
}

impl RelayUrl {
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = || {
            ClientError::Usage(format!(
                "relay URL {url:?} must look like https://host[:port]"
            ))
        };
        let rest = url.strip_prefix("https://").ok_or_else(bad)?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 443,
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            base: format!("https://{authority}"),
            host,
            port,
        })
    }
}

/// TLS settings: trust the operating system's certificate store and the
/// bundled web PKI roots, and `ca_pem` as well when given (`--ca-cert`,
/// e.g. a relay's self-signed certificate). A system store that cannot be
/// read is not an error (the other roots remain); a bad `ca_pem` is.
pub fn tls_config(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert =
                cert.map_err(|_| ClientError::Tls("the CA file is not a PEM certificate".into()))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Tls("the CA file holds no certificate".into()));
        }
    }
    // Certificates the system store holds but rustls cannot parse are
    // skipped: one odd entry must not stop the client.
    let (_added, _ignored) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = sallyport_common::tls::crypto_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn connect_tls(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let tcp = TcpStream::connect((relay.host.as_str(), relay.port))
        .await
        .map_err(|e| ClientError::Connect(relay.base.clone(), e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name =
        ServerName::try_from(relay.host.clone()).map_err(|e| ClientError::Tls(e.to_string()))?;
    tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Connect(relay.base.clone(), format!("TLS handshake failed: {e}")))
}

/// The reason in a relay error answer, or the status line.
fn reason(status: hyper::StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.error,
        Err(_) => format!("the relay answered {status}"),
    }
}

/// Signs in with a password (and a one-time code, if the account has one);
/// returns the session token.
pub async fn login(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    user: &str,
    password: &str,
    code: Option<&str>,
) -> Result<LoginResponse, ClientError> {
    let req = LoginRequest {
        user: user.to_owned(),
        password: password.to_owned(),
        code: code.map(str::to_owned),
    };
    post_json(relay, tls, "/api/login", None, &req).await
}

/// Asks the relay's SSH CA to certify a public key.
pub async fn ssh_cert(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
    req: &SshCertRequest,
) -> Result<SshCertResponse, ClientError> {
    post_json(relay, tls, "/api/ssh-cert", Some(token), req).await
}

/// Exchanges the one-time code of a browser sign-in (and the verifier
/// only this CLI knows) for a bearer token.
pub async fn cli_token(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    req: &CliTokenRequest,
) -> Result<LoginResponse, ClientError> {
    post_json(relay, tls, CLI_TOKEN_PATH, None, req).await
}

/// Ends the sign-in of `token` on the relay (`POST /api/logout`); ending
/// one that has already ended is not an error.
pub async fn logout(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
) -> Result<(), ClientError> {
    request(
        relay,
        tls,
        hyper::Method::POST,
        "/api/logout",
        Some(token),
        None,
        MAX_RESPONSE,
    )
    .await?;
    Ok(())
}

/// `GET /api/me`: who a token belongs to, as the relay sees it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Me {
    /// The signed-in user.
    pub user: String,
    /// The sign-in used a one-time code.
    #[serde(default)]
    pub second_factor: bool,
}

/// Who `token` is signed in as; an ended sign-in is
/// [`ClientError::Unauthorized`] with the relay's reason.
pub async fn me(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
) -> Result<Me, ClientError> {
    get_json(relay, tls, "/api/me", token).await
}

/// One service of `GET /api/services`, as `sallyport ls` shows it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ServiceEntry {
    /// The service's name.
    pub name: String,
    /// A connector that carries it is connected now.
    pub online: bool,
    /// The policy lets this user open it from here, now.
    #[serde(default = "yes")]
    pub allowed: bool,
    /// Why not, when `allowed` is false.
    #[serde(default)]
    pub reason: Option<String>,
    /// Its sshd trusts the relay's SSH CA (`sallyport ssh-cert` works).
    #[serde(default)]
    pub ssh_certificates: bool,
    /// The account a certificate logs in as by default (relays from
    /// before it send none).
    #[serde(default)]
    pub ssh_principal: Option<String>,
    /// The host keys its connectors attested, OpenSSH one-line form
    /// (relays from before `ssh-config` send none).
    #[serde(default)]
    pub host_keys: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The services this user may open, online or not, and those denied for
/// a reason they can act on (with the reason).
pub async fn services(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
) -> Result<Vec<ServiceEntry>, ClientError> {
    let answer = request(
        relay,
        tls,
        hyper::Method::GET,
        "/api/services",
        Some(token),
        None,
        MAX_SERVICES_RESPONSE,
    )
    .await?;
    parse(&answer)
}

/// POSTs `body` as JSON to `path` (with the bearer `token`, if any) and
/// parses the JSON answer; an error answer becomes the relay's reason.
async fn post_json<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    token: Option<&str>,
    body: &Req,
) -> Result<Resp, ClientError> {
    let body = serde_json::to_vec(body).map_err(|e| ClientError::Usage(e.to_string()))?;
    let answer = request(
        relay,
        tls,
        hyper::Method::POST,
        path,
        token,
        Some(body),
        MAX_RESPONSE,
    )
    .await?;
    parse(&answer)
}

/// GETs `path` with the bearer `token` and parses the JSON answer.
async fn get_json<Resp: serde::de::DeserializeOwned>(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    token: &str,
) -> Result<Resp, ClientError> {
    let answer = request(
        relay,
        tls,
        hyper::Method::GET,
        path,
        Some(token),
        None,
        MAX_RESPONSE,
    )
    .await?;
    parse(&answer)
}

fn parse<Resp: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Resp, ClientError> {
    serde_json::from_slice(body)
        .map_err(|e| ClientError::Relay(format!("bad answer from the relay: {e}")))
}

/// One HTTPS request to the relay (a JSON `body`, the bearer `token`, if
/// any); returns the body of a success answer, at most `limit` bytes. An
/// error answer becomes the relay's reason.
async fn request(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    method: hyper::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    limit: usize,
) -> Result<Bytes, ClientError> {
    let stream = connect_tls(relay, tls).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Connect(relay.base.clone(), e.to_string()))?;
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", relay.base))
        .header(
            hyper::header::HOST,
            relay.base.trim_start_matches("https://"),
        );
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    if let Some(token) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Connect(relay.base.clone(), e.to_string()))?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| ClientError::Relay(format!("bad answer from the relay: {e}")))?
        .to_bytes();
    conn.abort();
    if status == hyper::StatusCode::UNAUTHORIZED {
        return Err(ClientError::Unauthorized(reason(status, &body)));
    }
    if !status.is_success() {
        return Err(ClientError::Relay(reason(status, &body)));
    }
    Ok(body)
}

pub type Session = WebSocketStream<TlsStream<TcpStream>>;

/// Opens the session WebSocket for `service`; a refusal comes back with the relay's reason.
pub async fn open_session(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
    service: &str,
) -> Result<Session, ClientError> {
    use tungstenite::client::IntoClientRequest as _;
    let stream = connect_tls(relay, tls).await?;
    let url = format!(
        "wss://{}{}/{service}",
        relay.base.trim_start_matches("https://"),
        sallyport_proto::client::WS_PATH
    );
    let mut req = url
        .into_client_request()
        .map_err(|e| ClientError::Usage(format!("bad service name {service:?}: {e}")))?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::Usage("the stored token is not valid; sign in again".into()))?;
    req.headers_mut().insert(hyper::header::AUTHORIZATION, auth);
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE_LEN))
        .max_frame_size(Some(MAX_WS_MESSAGE_LEN));
    match tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status();
            let body = resp.body().clone().unwrap_or_default();
            Err(ClientError::Relay(reason(status, &body)))
        }
        Err(e) => Err(ClientError::Connect(relay.base.clone(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::RelayUrl;

    #[test]
    fn relay_urls() {
        let u = RelayUrl::parse("https://relay.example:8443/").unwrap();
        assert_eq!(
            (u.base.as_str(), u.host.as_str(), u.port),
            ("https://relay.example:8443", "relay.example", 8443)
        );
        let u = RelayUrl::parse("https://[::1]:9").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(RelayUrl::parse("https://r.example").unwrap().port, 443);
        assert!(RelayUrl::parse("http://r.example").is_err());
    }
}
