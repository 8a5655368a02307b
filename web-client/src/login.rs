//! `sallyport login`'s two ways in: through the browser (the relay's own
//! sign-in page, whatever it offers: a password, single sign-on), and with
//! a password typed on the terminal or piped in by a script.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sallyport_proto::client::{CliTokenRequest, LoginResponse};

use crate::api::{self, RelayUrl};
use crate::loopback::Loopback;
use crate::ClientError;

/// Longest password read from standard input (`--password-stdin`).
pub const MAX_PASSWORD_LEN: u64 = 4096;

/// Signs in through the browser: listens on loopback, opens the relay's
/// CLI sign-in page (or, when `open` is false or no browser can be
/// started, asks the person to open it: the URL is always printed on
/// stderr), waits up to `timeout` for the redirect and exchanges its code.
pub async fn through_browser(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    open: bool,
    timeout: Duration,
) -> Result<LoginResponse, ClientError> {
    let loopback = Loopback::bind().await?;
    let url = loopback.sign_in_url(relay);
    let mut opener = if open { open_browser(&url) } else { None };
    if opener.is_some() {
        eprintln!("Opening the browser to sign in. If it does not open, open this URL:\n  {url}");
    } else {
        eprintln!("Open this URL in a browser to sign in:\n  {url}");
    }
    let code = loopback.wait_for_code(timeout).await;
    if let Some(child) = opener.as_mut() {
        // Reap the opener (it exits once it has handed the URL over).
        let _ = child.try_wait();
    }
    let req = CliTokenRequest {
        code: code?,
        verifier: loopback.verifier().to_owned(),
    };
    api::cli_token(relay, tls, &req).await
}

/// Starts the desktop's browser on `url`, if this session has one:
/// `open` on macOS; `xdg-open` elsewhere, and only with a display
/// (`DISPLAY` or `WAYLAND_DISPLAY`), since on a server it would start a
/// text browser in the terminal or fail. `None` when nothing was started.
fn open_browser(url: &str) -> Option<Child> {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(unix)
        && (std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some())
    {
        "xdg-open"
    } else {
        return None;
    };
    Command::new(program)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Where the password comes from.
#[derive(Debug, Clone, Copy)]
pub enum Password {
    /// Typed on the terminal, without echo (`--password`); a one-time
    /// code is asked for the same way when the relay needs one.
    Prompt,
    /// The first line of standard input (`--password-stdin`, for scripts).
    Stdin,
}

/// Signs in as `user` with a password (and a one-time code: `code`, or
/// asked for on the terminal when the password was and the relay says
/// one is needed).
pub async fn with_password(
    relay: &RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    user: &str,
    source: Password,
    code: Option<String>,
) -> Result<LoginResponse, ClientError> {
    let password = match source {
        Password::Prompt => prompt(&format!("Password for {user} at {}: ", relay.base))?,
        Password::Stdin => {
            use std::io::Read as _;
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_PASSWORD_LEN)
                .read_to_string(&mut text)?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let first = api::login(relay, tls.clone(), user, &password, code.as_deref()).await;
    match (first, source, code) {
        (Err(ClientError::Unauthorized(reason)), Password::Prompt, None)
            if reason.contains("one-time code") =>
        {
            let code = prompt("One-time code: ")?;
            api::login(relay, tls, user, &password, Some(code.trim())).await
        }
        (result, _, _) => result,
    }
}

/// Reads a line from the terminal without echo.
fn prompt(text: &str) -> Result<String, ClientError> {
    rpassword::prompt_password(text).map_err(|e| {
        ClientError::Usage(format!(
            "cannot read from the terminal ({e}); pipe the password in with --password-stdin"
        ))
    })
}
