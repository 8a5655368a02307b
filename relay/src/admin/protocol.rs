//! The admin socket's wire protocol: the CLI sends one [`Request`] frame and
//! the relay answers with [`ReplyFrame`]s, the output in pieces of at most
//! [`OUTPUT_CHUNK`] bytes as the command produces it, then one `Done`. Every
//! frame is a length-prefixed frame of `sallyport_proto::frame`, at most
//! [`MAX_MESSAGE_LEN`] bytes, so an export of any size goes through while
//! neither side ever holds more than a few pieces of it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sallyport_proto::frame::{FrameError, Validate};
use sallyport_proto::limits::MAX_FRAME_LEN;
use serde::{Deserialize, Serialize};

use crate::audit::Filter;

/// Largest frame on the admin socket, either way (a request, or one
/// piece of a reply): the wire's frame limit.
pub const MAX_MESSAGE_LEN: usize = MAX_FRAME_LEN;
/// Most bytes of output text in one [`ReplyFrame::Output`]. JSON escapes a
/// byte in at most 6 (`\u001b`), so a piece always fits a frame.
pub const OUTPUT_CHUNK: usize = 32 * 1024;
const _: () = assert!(OUTPUT_CHUNK * 6 + 1024 <= MAX_MESSAGE_LEN);
/// Longest error text in [`ReplyFrame::Done`]; longer ones are cut.
pub const MAX_ERROR_LEN: usize = 16 * 1024;

/// One admin command, as the CLI sends it to a running relay (one frame,
/// tagged by `cmd`). Each is a `sallyport-relay` subcommand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// `user add`: a local user.
    UserAdd {
        /// The user name.
        name: String,
        /// The password (hashed before it is stored).
        password: String,
        /// The groups policy rules can name.
        groups: Vec<String>,
    },
    /// `connector add`: an enrolment token for a new connector.
    ConnectorAdd {
        /// The connector's name.
        name: String,
        /// How long the token may be used, in seconds.
        ttl_secs: u64,
        /// Service names the connector may serve.
        #[serde(default)]
        services: Vec<String>,
        /// The token may enrol a name that is enrolled or revoked.
        #[serde(default)]
        replace: bool,
    },
    /// `connector grant` (`grant = true`) and `connector ungrant`.
    ConnectorGrant {
        /// The connector.
        name: String,
        /// The service name.
        service: String,
        /// Grant (true) or take back (false).
        grant: bool,
    },
    /// `connector list`: every connector, its state and services.
    ConnectorList,
    /// `connector revoke`: its certificate stops working, its connections close.
    ConnectorRevoke {
        /// The connector.
        name: String,
    },
    /// Set up (or replace) a user's TOTP second factor.
    UserTotp {
        /// The user.
        name: String,
        /// Turn the user's codes off instead (`user totp --off`).
        #[serde(default)]
        off: bool,
    },
    /// `user list`: every user, their groups and state.
    UserList,
    /// `user show`: one user in detail.
    UserShow {
        /// The user.
        name: String,
    },
    /// `user lock` (`lock = true`) and `user unlock`. Locking refuses
    /// sign-in, ends the user's sign-ins and closes their live sessions.
    UserLock {
        /// The user.
        name: String,
        /// Lock (true) or unlock (false).
        lock: bool,
    },
    /// `user remove`: the user, their sign-ins and live sessions go.
    UserRemove {
        /// The user.
        name: String,
    },
    /// `user passwd`: a new password (hashed before it is stored).
    UserPasswd {
        /// The user.
        name: String,
        /// The new password.
        password: String,
    },
    /// `user groups`: replaces the user's groups.
    UserGroups {
        /// The user.
        name: String,
        /// The groups from now on (may be empty).
        groups: Vec<String>,
    },
    /// A user's sign-ins: when, from where, with a second factor or not.
    UserSessions {
        /// The user.
        name: String,
    },
    /// Ends all of a user's sign-ins and their live sessions.
    UserSignOut {
        /// The user.
        name: String,
    },
    /// `session terminate`: ends one live session, by its stream id.
    SessionTerminate {
        /// The relay's id of the session's stream (as in `stream_opened`).
        stream: String,
    },
    /// `acme renew`: order a new HTTPS certificate now, due or not (a
    /// running relay with `acme_domains`).
    AcmeRenew,
    /// Issue a device certificate; the output is a `DeviceIssued` as JSON.
    DeviceAdd {
        /// The device's name.
        name: String,
        /// Attributes policy rules can check (`key=value`).
        attributes: BTreeMap<String, String>,
    },
    /// `device list`: every device certificate and its attributes.
    DeviceList,
    /// `device revoke`: the device's certificate stops counting.
    DeviceRevoke {
        /// The device.
        name: String,
    },
    /// Explain the decision for the given inputs.
    PolicyTest(PolicyTest),
    /// The most recent recorded decisions.
    PolicyLog {
        /// How many, newest last.
        limit: usize,
    },
    /// The last `limit` audit events, one human line each.
    AuditList {
        /// Which events.
        filter: Filter,
        /// How many, newest last.
        limit: usize,
    },
    /// Every audit event the filter picks (from `filter.after_seq` on), as
    /// JSON lines, oldest first.
    AuditExport {
        /// Which events.
        filter: Filter,
    },
    /// `audit verify`: walk the hash chain and say where it breaks.
    AuditVerify,
    /// A session's recording as asciicast v2.
    RecordingExport {
        /// The client's terminal session id.
        session: String,
    },
}

impl Validate for Request {
    /// The frame limit bounds a request; the commands check their fields.
    fn validate(&self) -> Result<(), FrameError> {
        Ok(())
    }
}

/// One frame of the relay's answer on the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ReplyFrame {
    /// The next piece of the command's output (at most [`OUTPUT_CHUNK`] bytes).
    Output {
        /// The text.
        text: String,
    },
    /// The command finished: `error` says why it failed, when it did. The
    /// last frame of every answer.
    Done {
        /// Why the command failed (at most `MAX_ERROR_LEN` bytes).
        error: Option<String>,
    },
}

impl Validate for ReplyFrame {
    fn validate(&self) -> Result<(), FrameError> {
        match self {
            ReplyFrame::Output { text } => check_text("output", text, OUTPUT_CHUNK),
            ReplyFrame::Done { error } => match error {
                Some(e) => check_text("error", e, MAX_ERROR_LEN),
                None => Ok(()),
            },
        }
    }
}

fn check_text(field: &str, text: &str, max: usize) -> Result<(), FrameError> {
    if text.len() > max {
        return Err(FrameError::Invalid(format!(
            "{field} is {} bytes, over the limit of {max}",
            text.len()
        )));
    }
    Ok(())
}

/// Inputs of `sallyport-relay policy test`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyTest {
    pub user: String,
    pub service: String,
    pub ip: IpAddr,
    pub device: Option<String>,
    pub second_factor: bool,
    /// Unix time [default: now].
    pub at: Option<u64>,
    /// A fixed risk score instead of the one the relay would compute.
    pub risk: Option<u32>,
    pub country: Option<String>,
}

/// What `device add` hands the admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceIssued {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: String,
}
