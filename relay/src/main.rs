//! `sallyport-relay`: parses the command line and runs it (see
//! [`sallyport_relay::cli`]); errors go to stderr with exit code 1.

use std::process::ExitCode;

use clap::Parser as _;
use sallyport_common::logging;
use sallyport_relay::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse();
    logging::init(args.log_json);
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sallyport-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
