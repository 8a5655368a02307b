//! Logging in (RFC 4252 §5) as OpenSSH's client does: the account first
//! (`login as:`, or the certificate's account), then each method the
//! server offers, in OpenSSH's order (`PreferredAuthentications`:
//! publickey, keyboard-interactive, password), each until it succeeds,
//! gives up, or the server stops offering it.
//!
//! - After every failure the server's list of methods that may continue
//!   is the only one that counts (RFC 4252 §5.1); a partial success (say
//!   `AuthenticationMethods keyboard-interactive,password`) moves on to
//!   what is still needed.
//! - A method that asks for a secret is tried at most
//!   [`MAX_AUTH_ATTEMPTS`] times (OpenSSH's `NumberOfPasswordPrompts`).
//! - keyboard-interactive that fails without asking anything (sshd with
//!   `UsePAM no` offers it and has nothing to ask) is not tried again, as
//!   OpenSSH does, so the password prompt comes next.

use std::sync::{Arc, Mutex};

use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::{MethodKind, MethodSet};

use super::server_text::{for_terminal, Banners};
use super::{Certified, Ended, Frontend, Line, Options, Prompter};

/// Tries of one method that asks for a secret (password, or
/// keyboard-interactive with prompts) before the next method: OpenSSH's
/// `NumberOfPasswordPrompts` default. sshd's `MaxAuthTries` (6 by default)
/// may end the connection sooner.
pub const MAX_AUTH_ATTEMPTS: usize = 3;
/// Info requests answered in one keyboard-interactive attempt (RFC 4256
/// §3.2). PAM stacks ask a few (a password, then a one-time code, then a
/// new password); a server asking on and on is stopped here.
pub const MAX_KBD_ROUNDS: usize = 16;
/// Partial successes (RFC 4252 §5.1) followed in one login. sshd's
/// `AuthenticationMethods` lists rarely chain more than three methods; a
/// server answering "partial success" on and on is stopped here.
pub const MAX_PARTIAL_SUCCESSES: usize = 8;

/// The methods this client has, in the order it tries them (OpenSSH's
/// `PreferredAuthentications` default without gssapi-with-mic and
/// hostbased, which a browser cannot do). publickey is tried only with a
/// certificate, before any of these.
const PREFERRED: [MethodKind; 2] = [MethodKind::KeyboardInteractive, MethodKind::Password];

/// How logging in went.
pub(super) struct LoggedIn {
    pub user: String,
    /// The method that completed it, for the session's start event.
    pub method: &'static str,
}

/// Where the account and the answers come from, and where the server's
/// words go.
pub(super) struct Login<'a, 'p, F: Frontend, H: client::Handler> {
    pub handle: &'a mut client::Handle<H>,
    pub prompter: &'a mut Prompter<'p, F>,
    pub banners: &'a Arc<Mutex<Banners>>,
}

/// What one attempt of a method ended in.
enum Attempt {
    Success,
    Failure {
        remaining: MethodSet,
        partial: bool,
        /// The server asked the person something (keyboard-interactive).
        asked: bool,
    },
    Cancelled,
}

impl<F: Frontend, H: client::Handler> Login<'_, '_, F, H> {
    /// Shows banners the server sent since the last call.
    fn show_banners(&self) {
        let text = self
            .banners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if !text.is_empty() {
            self.prompter.ui.output(text.as_bytes());
        }
    }

    /// Logs in, or says why not. `options.certificate` is taken.
    pub async fn run(mut self, options: &mut Options) -> Result<LoggedIn, Ended> {
        let ui = self.prompter.ui;
        let prefetched = options.certificate.take();
        let user = if prefetched.is_some() && options.principals.len() <= 1 {
            // One account to be: no question to ask.
            options.user.clone()
        } else {
            if options.principals.len() > 1 {
                ui.output(
                    format!(
                        "Your certificate logs in as {}; any other account logs in with a password.\r\n",
                        options.principals.join(", ")
                    )
                    .as_bytes(),
                );
            }
            match self
                .prompter
                .read_line("login as: ", &options.user, false)
                .await
            {
                Line::Text(u) if !u.trim().is_empty() => u.trim().to_owned(),
                Line::Text(_) => options.user.clone(),
                Line::Cancelled => return Err(Ended::Closed),
            }
        };
        let certificate = choose_certificate(&user, prefetched, &options.principals, ui).await;

        // The first request: the certificate, or `none` to learn the methods.
        let first = match &certificate {
            Some(c) => {
                self.handle
                    .authenticate_openssh_cert(
                        user.clone(),
                        Arc::new(c.key.clone()),
                        c.certificate.clone(),
                    )
                    .await
            }
            None => self.handle.authenticate_none(user.clone()).await,
        };
        self.show_banners();
        let mut methods = match first {
            Ok(AuthResult::Success) => {
                let method = if certificate.is_some() {
                    "certificate"
                } else {
                    "none"
                };
                return Ok(LoggedIn { user, method });
            }
            Ok(AuthResult::Failure {
                remaining_methods,
                partial_success,
            }) => {
                if certificate.is_some() && !partial_success {
                    ui.output(b"The server did not accept the certificate.\r\n");
                }
                remaining_methods
            }
            Err(e) => return Err(Ended::Lost(e.to_string())),
        };

        let mut tries = [0usize; PREFERRED.len()];
        let mut given_up = [false; PREFERRED.len()];
        let mut failed = false;
        let mut partials = 0;
        loop {
            let next = PREFERRED.iter().enumerate().position(|(i, m)| {
                methods.contains(m) && !given_up[i] && tries[i] < MAX_AUTH_ATTEMPTS
            });
            let Some(i) = next else { break };
            tries[i] += 1;
            let attempt = match PREFERRED[i] {
                MethodKind::KeyboardInteractive => self.keyboard_interactive(&user).await,
                _ => self.password(&user, &options.service).await,
            };
            self.show_banners();
            match attempt {
                Ok(Attempt::Success) => {
                    let method = <&str>::from(&PREFERRED[i]);
                    return Ok(LoggedIn { user, method });
                }
                Ok(Attempt::Cancelled) => return Err(Ended::Closed),
                Ok(Attempt::Failure {
                    remaining,
                    partial,
                    asked,
                }) => {
                    methods = remaining;
                    if partial && partials < MAX_PARTIAL_SUCCESSES {
                        // That step is done; the next method starts afresh.
                        partials += 1;
                        tries = [0; PREFERRED.len()];
                        continue;
                    }
                    failed = true;
                    if PREFERRED[i] == MethodKind::KeyboardInteractive && !asked {
                        given_up[i] = true;
                        continue;
                    }
                    if methods.contains(&PREFERRED[i]) && tries[i] < MAX_AUTH_ATTEMPTS {
                        ui.output(b"Permission denied, please try again.\r\n");
                    }
                }
                // The server hung up after a failure (sshd's MaxAuthTries).
                Err(_) if failed => break,
                Err(e) => return Err(Ended::Lost(e.to_string())),
            }
        }
        let offered: Vec<&str> = methods.iter().map(<&str>::from).collect();
        if offered.is_empty() && failed {
            // sshd hung up (its MaxAuthTries) or nothing may continue.
            ui.output(format!("{user}@{}: Permission denied.\r\n", options.service).as_bytes());
        } else if !failed
            && certificate.is_none()
            && !options.principals.is_empty()
            && methods.iter().all(|m| *m == MethodKind::PublicKey)
        {
            // A name typed at login as: that the certificate does not cover.
            ui.output(
                format!(
                    "{user}@{}: the server takes only keys, and there is no certificate for {user}; \
                     yours can log in as {}.\r\n",
                    options.service,
                    options.principals.join(", ")
                )
                .as_bytes(),
            );
        } else if !failed && !methods.iter().any(|m| PREFERRED.contains(m)) {
            ui.output(
                format!(
                    "The server offers no login method this client has (it offers: {}; \
                     this client has publickey with a certificate, keyboard-interactive, password).\r\n",
                    if offered.is_empty() { "none".into() } else { offered.join(", ") }
                )
                .as_bytes(),
            );
        } else {
            ui.output(
                format!(
                    "{user}@{}: Permission denied ({}).\r\n",
                    options.service,
                    offered.join(",")
                )
                .as_bytes(),
            );
        }
        Err(Ended::AuthFailed)
    }

    /// One password attempt: the prompt, then the server's answer.
    async fn password(&mut self, user: &str, service: &str) -> Result<Attempt, russh::Error> {
        let prompt = format!("{user}@{service}'s password: ");
        let Line::Text(password) = self.prompter.read_line(&prompt, "", true).await else {
            return Ok(Attempt::Cancelled);
        };
        Ok(
            match self
                .handle
                .authenticate_password(user.to_owned(), password)
                .await?
            {
                AuthResult::Success => Attempt::Success,
                AuthResult::Failure {
                    remaining_methods,
                    partial_success,
                } => Attempt::Failure {
                    remaining: remaining_methods,
                    partial: partial_success,
                    asked: true,
                },
            },
        )
    }

    /// One keyboard-interactive attempt (RFC 4256): as many info requests
    /// as the server sends (up to [`MAX_KBD_ROUNDS`]), each shown and
    /// answered.
    async fn keyboard_interactive(&mut self, user: &str) -> Result<Attempt, russh::Error> {
        let mut reply = self
            .handle
            .authenticate_keyboard_interactive_start(user.to_owned(), None)
            .await?;
        let mut asked = false;
        for _ in 0..=MAX_KBD_ROUNDS {
            self.show_banners();
            let (name, instructions, prompts) = match reply {
                KeyboardInteractiveAuthResponse::Success => return Ok(Attempt::Success),
                KeyboardInteractiveAuthResponse::Failure {
                    remaining_methods,
                    partial_success,
                } => {
                    return Ok(Attempt::Failure {
                        remaining: remaining_methods,
                        partial: partial_success,
                        asked,
                    })
                }
                KeyboardInteractiveAuthResponse::InfoRequest {
                    name,
                    instructions,
                    prompts,
                } => (name, instructions, prompts),
            };
            // As OpenSSH: the name and the instruction each on lines of
            // their own, then the prompts.
            for text in [name, instructions] {
                if !text.is_empty() {
                    let mut shown = for_terminal(text.as_bytes());
                    if !shown.ends_with("\r\n") {
                        shown.push_str("\r\n");
                    }
                    self.prompter.ui.output(shown.as_bytes());
                }
            }
            asked |= !prompts.is_empty();
            let mut answers = Vec::with_capacity(prompts.len());
            for p in prompts {
                let prompt = for_terminal(p.prompt.as_bytes());
                match self.prompter.read_line(&prompt, "", !p.echo).await {
                    Line::Text(a) => answers.push(a),
                    Line::Cancelled => return Ok(Attempt::Cancelled),
                }
            }
            reply = self
                .handle
                .authenticate_keyboard_interactive_respond(answers)
                .await?;
        }
        self.prompter.ui.output(
            format!(
                "The server asked more than {MAX_KBD_ROUNDS} rounds of keyboard-interactive questions; giving up on it.\r\n"
            )
            .as_bytes(),
        );
        Ok(Attempt::Failure {
            remaining: MethodSet::empty(),
            partial: false,
            asked,
        })
    }
}

/// The certificate to log in as `user` with: the one fetched ahead if it
/// names `user`, else a new one from the front end when `user` is one of
/// several accounts the relay maps this person to; none for other accounts.
async fn choose_certificate<F: Frontend>(
    user: &str,
    prefetched: Option<Certified>,
    principals: &[String],
    ui: &F,
) -> Option<Certified> {
    if let Some(c) = prefetched {
        let names = c.certificate.valid_principals();
        // An empty list is valid for any account (PROTOCOL.certkeys).
        if names.is_empty() || names.iter().any(|p| p == user) {
            return Some(c);
        }
    }
    // With one account the front end fetched its certificate ahead (and
    // said why when it could not): no second try.
    if principals.len() < 2 || !principals.iter().any(|p| p == user) {
        return None;
    }
    match ui.certify(user).await {
        Ok(c) => Some(c),
        Err(why) => {
            ui.output(format!("No certificate for {user} ({why}).\r\n").as_bytes());
            None
        }
    }
}
