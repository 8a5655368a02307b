//! Admin commands (`user add|list|show|lock|unlock|remove|passwd|groups|totp|sign-ins|sign-out`, `connector add|list|revoke`,
//! `device add|list|revoke`, `policy test|log`).
//!
//! The same [`execute_to`] runs whether the relay is up or not: a running
//! relay holds the sled database, so it serves the commands on a Unix socket
//! in the data dir (mode 0600); when no relay answers there, the command
//! opens the database itself.
//!
//! Three parts: [`protocol`] is what crosses the socket ([`Request`],
//! [`ReplyFrame`] and their limits), [`commands`] is what each command does,
//! [`socket`] serves the socket in the relay and talks to it from the CLI;
//! [`client`] picks the running relay or the data dir for the CLI. The
//! admin pages (`web/admin.rs`) run the same commands, and read their lists
//! from [`views`].

pub mod client;
pub mod commands;
pub mod protocol;
pub mod socket;
mod users;
pub mod views;

pub use commands::{
    connector_add, execute, execute_as, execute_to, AdminCtx, Sink, WriteSink, META_PUBLIC_URL,
    META_TUNNEL_ADDR,
};
pub use protocol::{DeviceIssued, PolicyTest, ReplyFrame, Request, MAX_MESSAGE_LEN, OUTPUT_CHUNK};
pub use socket::{send_to_running, serve_socket, socket_path, AdminError};
