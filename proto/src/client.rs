//! Messages between a client (browser or `sallyport proxy`) and the relay on
//! the session WebSocket.
//!
//! Binary WebSocket messages carry the session's raw bytes (at most
//! [`MAX_WS_MESSAGE_LEN`](crate::limits::MAX_WS_MESSAGE_LEN) each). Text
//! messages carry [`Control`] as JSON: WebSocket has no half-close, so the end
//! of one direction is an explicit `eof`, and failures arrive as `error` with
//! a reason before the socket closes.

use serde::{Deserialize, Serialize};

use crate::frame::{check_len, FrameError, Validate};
use crate::limits::{MAX_CLIENT_CONTROL_LEN, MAX_REASON_LEN};

/// WebSocket path prefix of session endpoints: `/ws/{service}`.
pub const WS_PATH: &str = "/ws";

/// Name of the relay's sign-in cookie (its bearer token); it keeps the
/// `_session` ending it always had, since browsers hold cookies by name.
/// The `__Host-` prefix makes browsers accept it only with `Secure`, `Path=/` and no `Domain`: no subdomain or
/// plain-HTTP page can set or shadow it.
pub const SIGN_IN_COOKIE: &str = "__Host-sallyport_session";

/// A text message on the session WebSocket, either way (JSON, tagged by
/// `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// Relay → client, the first message after the upgrade: the session
    /// stream is open through `connector`, whose sshd must present one of
    /// `host_keys` (OpenSSH one-line form, as that connector reported them
    /// for the service; never a union over connectors). Empty for services
    /// that are not SSH. `record_input`: the relay keeps keystrokes in the
    /// recording; when false the client should not send `input` events
    /// (the relay drops them).
    Opened {
        /// The connector carrying the stream.
        connector: String,
        /// The host keys its sshd may present.
        host_keys: Vec<String>,
        /// Whether the relay keeps keystrokes.
        #[serde(default)]
        record_input: bool,
    },
    /// The sender will send no more bytes; the other direction stays open.
    Eof,
    /// The session failed; the socket closes after this.
    Error {
        /// Why, for the person (at most [`MAX_REASON_LEN`] bytes).
        reason: String,
    },
    /// Client → relay: something that happened in the SSH session, which
    /// only the client sees in plaintext. `session` names the terminal
    /// session (and its recording) across reconnects; `seq` counts its
    /// events from 1; `t_ms` is milliseconds since the session started.
    Event {
        /// The client's terminal session id ([`check_session_id`]).
        session: String,
        /// The event's number in its session, from 1.
        seq: u64,
        /// Milliseconds since the session's first event.
        t_ms: u64,
        /// What happened.
        event: SessionEvent,
    },
    /// Relay → client: every event of `session` up to `seq` is on disk;
    /// the client may forget them. Until then it keeps them and sends them
    /// again after a reconnect (the relay stores each once).
    Ack {
        /// The client's terminal session id.
        session: String,
        /// The highest event number now on disk.
        seq: u64,
    },
}

/// What a client reports about its SSH session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionEvent {
    /// Logged in: as whom, how, to which host key (SHA-256 fingerprint).
    Start {
        /// The service logged in to.
        service: String,
        /// The Unix account.
        principal: String,
        /// The SSH authentication method that succeeded (`certificate`,
        /// `password`, `keyboard-interactive`, or `none` when the server
        /// asked for nothing).
        auth: String,
        /// The host key's SHA-256 fingerprint.
        host_key: String,
        /// Terminal width, in columns.
        cols: u32,
        /// Terminal height, in rows.
        rows: u32,
    },
    /// The terminal was resized.
    Resize {
        /// New width, in columns.
        cols: u32,
        /// New height, in rows.
        rows: u32,
    },
    /// Terminal output, base64 (bytes as sent: UTF-8 may split across events).
    Output {
        /// The bytes, base64 (at most [`crate::limits::MAX_EVENT_DATA`] decoded).
        data: String,
    },
    /// Keystrokes and pastes, base64.
    Input {
        /// The bytes, base64 (at most [`crate::limits::MAX_EVENT_DATA`] decoded).
        data: String,
    },
    /// The session ended.
    End {
        /// The exit status, when the shell exited with one.
        exit: Option<u32>,
        /// How it ended, in words ("exit status 0", "connection lost: ...").
        reason: String,
        /// Bytes of terminal output received.
        bytes_in: u64,
        /// Bytes of input sent.
        bytes_out: u64,
        /// How long it lasted, in milliseconds.
        duration_ms: u64,
    },
}

/// A client session id: 1 to [`MAX_CLIENT_SESSION_LEN`](crate::limits::MAX_CLIENT_SESSION_LEN) of `[A-Za-z0-9_-]`.
pub fn check_session_id(id: &str) -> Result<(), FrameError> {
    let ok = !id.is_empty()
        && id.len() <= crate::limits::MAX_CLIENT_SESSION_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FrameError::Invalid(format!(
            "session id {id:?} must be 1 to {} letters, digits, - or _",
            crate::limits::MAX_CLIENT_SESSION_LEN
        )))
    }
}

impl Validate for SessionEvent {
    fn validate(&self) -> Result<(), FrameError> {
        const FIELD: usize = 256;
        let data_max = crate::limits::MAX_EVENT_DATA.div_ceil(3) * 4;
        match self {
            SessionEvent::Start {
                service,
                principal,
                auth,
                host_key,
                ..
            } => {
                check_len("service", service, FIELD)?;
                check_len("principal", principal, FIELD)?;
                check_len("auth", auth, FIELD)?;
                check_len("host_key", host_key, FIELD)
            }
            SessionEvent::Resize { .. } => Ok(()),
            SessionEvent::Output { data } | SessionEvent::Input { data } => {
                check_len("data", data, data_max)
            }
            SessionEvent::End { reason, .. } => check_len("reason", reason, MAX_REASON_LEN),
        }
    }
}

impl Validate for Control {
    fn validate(&self) -> Result<(), FrameError> {
        match self {
            Control::Opened {
                connector,
                host_keys,
                ..
            } => {
                crate::frame::check_name("connector name", connector)?;
                if host_keys.len() > crate::limits::MAX_HOST_KEYS {
                    return Err(FrameError::Invalid(format!(
                        "{} host keys, over the limit of {}",
                        host_keys.len(),
                        crate::limits::MAX_HOST_KEYS
                    )));
                }
                for k in host_keys {
                    check_len("host key", k, crate::limits::MAX_HOST_KEY_LEN)?;
                }
                Ok(())
            }
            Control::Eof => Ok(()),
            Control::Error { reason } => check_len("reason", reason, MAX_REASON_LEN),
            Control::Event { session, event, .. } => {
                check_session_id(session)?;
                event.validate()
            }
            Control::Ack { session, .. } => check_session_id(session),
        }
    }
}

impl Control {
    /// Parses a text WebSocket message.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        check_len("control message", text, MAX_CLIENT_CONTROL_LEN)?;
        crate::frame::decode_body(text.as_bytes())
    }

    /// The message as a text WebSocket message (JSON).
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("an enum of strings always serializes")
    }
}

/// Body of every JSON error answer of the relay's HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, in words for the person.
    pub error: String,
}

/// `POST /api/login` request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The Sallyport user name.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The one-time code, for users with a second factor set up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// `POST /api/totp/setup` request: turning codes on or replacing them
/// needs the account's password again, and starting over needs a code from
/// the current secret as well, so a stolen session (a cookie, an unlocked
/// laptop) cannot set or replace the second factor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TotpSetupRequest {
    /// The account's password.
    #[serde(default)]
    pub password: String,
    /// A current one-time code, when codes are on already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// `POST /api/totp/setup` answer: a new secret, not yet in force, for the
/// authenticator app: as an `otpauth://` URI and as a QR code image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TotpSetupResponse {
    /// `otpauth://totp/...` with the secret, for apps that take a link.
    pub uri: String,
    /// `data:image/svg+xml;base64,...`
    pub qr: String,
}

/// `POST /api/totp/confirm` request: a code from the new secret puts it in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TotpConfirmRequest {
    /// Six digits from the new secret.
    pub code: String,
}

/// `POST /api/login` answer: a bearer token for non-browser clients (the
/// browser gets the same token as an HttpOnly cookie).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The user signed in.
    pub user: String,
    /// The bearer token (`Authorization: Bearer …`).
    pub token: String,
    /// When the sign-in ends: Unix time, seconds.
    pub expires: u64,
}

/// `POST /api/ssh-cert` request body: certify this public key for a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshCertRequest {
    /// The service the certificate is for (policy decides per service).
    pub service: String,
    /// The client's public key, OpenSSH form; the private half never leaves the client.
    pub public_key: String,
    /// The Unix account to log in as [default: the Sallyport user name].
    #[serde(default)]
    pub principal: Option<String>,
    /// A shorter validity than the relay's, in seconds.
    #[serde(default)]
    pub valid_secs: Option<u64>,
}

/// `POST /api/ssh-cert` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshCertResponse {
    /// The certificate, OpenSSH form (what `…-cert.pub` files hold).
    pub certificate: String,
    /// The Unix account it lets the client log in as.
    pub principal: String,
    /// When it stops being valid: Unix time, seconds.
    pub valid_before: u64,
}

/// The page a browser opens to sign the native CLI in (`sallyport login`):
/// `GET /cli/login?port=P&state=S&challenge=C`. Signed in, the browser is
/// redirected to `http://127.0.0.1:P/callback?state=S&code=K` (RFC 8252
/// §7.3: loopback only, the port chosen by the CLI); not signed in, to the
/// sign-in page first.
pub const CLI_LOGIN_PATH: &str = "/cli/login";

/// Where the CLI exchanges the one-time code of [`CLI_LOGIN_PATH`]'s
/// redirect for its bearer token: `POST` a [`CliTokenRequest`], get a
/// [`LoginResponse`].
pub const CLI_TOKEN_PATH: &str = "/api/cli/token";

/// `POST /api/cli/token` request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CliTokenRequest {
    /// The one-time code the loopback redirect carried.
    pub code: String,
    /// The secret whose SHA-256 (hex) was the `challenge` of the sign-in
    /// URL: only the CLI that started the sign-in knows it, so a code
    /// seen by anyone else is useless (the idea of RFC 7636, PKCE).
    pub verifier: String,
}
