//! The Sallyport relay: the QUIC endpoint connectors dial, the HTTPS and
//! WebSocket endpoint people use, local identity, and the admin commands.
//! `main.rs` only parses arguments; everything here can be driven by tests.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod demo;
pub mod identity;
pub mod live;
pub mod metrics;
pub mod pipe;
pub mod pki;
pub mod policy;
pub mod server;
pub mod ssh_ca;
pub mod store;
pub mod totp;
pub mod tunnel;
pub mod web;

pub use server::Relay;
