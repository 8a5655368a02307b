//! The loopback end of the CLI's browser sign-in (RFC 8252 §7.3): a
//! listener on `127.0.0.1` on a port the system picks, waiting for the
//! one request the relay redirects the browser to,
//! `GET /callback?state=S&code=K`.
//!
//! Anything on this machine can connect to the port, so the listener
//! trusts nothing it reads: it serves one connection at a time, reads at
//! most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`], and takes a code
//! only with the random `state` it made. A request with the wrong state
//! ends the sign-in (someone else is answering), and the code alone is
//! useless without the verifier, which never leaves this process.

use std::time::Duration;

use base64::Engine as _;
use sallyport_common::hash::sha256_hex;
use sallyport_proto::client::CLI_LOGIN_PATH;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::api::RelayUrl;
use crate::ClientError;

/// The path the relay redirects the browser to.
pub const CALLBACK_PATH: &str = "/callback";
/// Largest request head the listener reads; the callback's is a few
/// hundred bytes, a browser adds about a kilobyte of headers.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long one connection may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `sallyport login` waits for the browser by default: time to
/// type a password and a code, or to go through a provider's pages.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

/// A random value of 32 bytes, base64url (43 characters).
fn random() -> Result<String, ClientError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| ClientError::Usage(format!("no random numbers from the system: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// A listener waiting for the relay's redirect, with the secrets of one
/// sign-in.
pub struct Loopback {
    listener: TcpListener,
    port: u16,
    state: String,
    verifier: String,
}

/// What one request to the listener was.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET /callback?state=S&code=K`.
    Callback { state: String, code: String },
    /// Anything else (a favicon, a probe): answered 404, and the wait goes on.
    Other,
}

impl Loopback {
    /// Listens on `127.0.0.1`, on a port the system picks.
    pub async fn bind() -> Result<Self, ClientError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
            ClientError::Usage(format!("cannot listen on 127.0.0.1 for the browser: {e}"))
        })?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            state: random()?,
            verifier: random()?,
        })
    }

    /// The page to open in the browser: the relay's CLI sign-in, with this
    /// listener's port, state and the SHA-256 of the verifier.
    pub fn sign_in_url(&self, relay: &RelayUrl) -> String {
        format!(
            "{}{CLI_LOGIN_PATH}?port={}&state={}&challenge={}",
            relay.base,
            self.port,
            self.state,
            sha256_hex(self.verifier.as_bytes())
        )
    }

    /// The secret to send with the code.
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// Waits up to `timeout` for the redirect and returns its code. Other
    /// requests get 404 and the wait goes on; a callback with the wrong
    /// state gets 400 and ends the sign-in with an error.
    pub async fn wait_for_code(&self, timeout: Duration) -> Result<String, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = tokio::time::timeout_at(deadline, self.listener.accept()).await;
            let Ok(accepted) = accepted else {
                return Err(ClientError::Usage(format!(
                    "no sign-in from the browser within {} s; run `sallyport login` again",
                    timeout.as_secs()
                )));
            };
            let Ok((mut stream, _)) = accepted else {
                continue;
            };
            let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
                Ok(Ok(head)) => head,
                Ok(Err(HeadError::TooLarge)) => {
                    respond(&mut stream, "431 Request Header Fields Too Large", "").await;
                    continue;
                }
                _ => continue,
            };
            match parse(&head) {
                Request::Callback { state, code } if state == self.state => {
                    respond(
                        &mut stream,
                        "200 OK",
                        "Signed in: you can close this tab and go back to the terminal.",
                    )
                    .await;
                    return Ok(code);
                }
                Request::Callback { .. } => {
                    respond(
                        &mut stream,
                        "400 Bad Request",
                        "This answer is not for the sign-in this terminal started; nothing was saved.",
                    )
                    .await;
                    return Err(ClientError::Usage(
                        "the browser's answer was for another sign-in (wrong state); nothing was saved: run `sallyport login` again".into(),
                    ));
                }
                Request::Other => respond(&mut stream, "404 Not Found", "").await,
            }
        }
    }
}

enum HeadError {
    TooLarge,
    Io,
}

/// Reads up to the end of the request head (`\r\n\r\n`), at most
/// [`MAX_REQUEST`] bytes.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf);
        }
        if buf.len() >= MAX_REQUEST {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The request line's target, if it is the callback with a state and a
/// code made only of URL-safe characters (what the relay sends).
fn parse(head: &[u8]) -> Request {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Other;
    };
    let mut parts = line.split(' ');
    let (Some("GET"), Some(target)) = (parts.next(), parts.next()) else {
        return Request::Other;
    };
    let Some((CALLBACK_PATH, query)) = target.split_once('?') else {
        return Request::Other;
    };
    let (mut state, mut code) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("state", v)) => state = Some(v),
            Some(("code", v)) => code = Some(v),
            _ => {}
        }
    }
    let safe = |v: &str| {
        !v.is_empty()
            && v.len() <= 256
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match (state, code) {
        (Some(s), Some(c)) if safe(s) && safe(c) => Request::Callback {
            state: s.to_owned(),
            code: c.to_owned(),
        },
        // A callback without a usable state: treated as one with the wrong state.
        _ => Request::Callback {
            state: String::new(),
            code: String::new(),
        },
    }
}

/// Answers with a short plain-text page and closes the connection.
async fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    // The browser may be gone already; the sign-in does not depend on it.
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::{parse, Request};

    #[test]
    fn only_the_callback_with_state_and_code_is_taken() {
        assert_eq!(
            parse(b"GET /callback?state=abc&code=K-1_x HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Callback {
                state: "abc".into(),
                code: "K-1_x".into()
            }
        );
        assert_eq!(parse(b"GET /favicon.ico HTTP/1.1\r\n\r\n"), Request::Other);
        assert_eq!(
            parse(b"POST /callback?state=a&code=b HTTP/1.1\r\n\r\n"),
            Request::Other
        );
        // Odd characters or a missing code: never a code.
        assert_eq!(
            parse(b"GET /callback?state=a%20b&code=c HTTP/1.1\r\n\r\n"),
            Request::Callback {
                state: String::new(),
                code: String::new()
            }
        );
    }
}
