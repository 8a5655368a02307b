//! `lossy-udp`: the tests' lossy UDP forwarder ([`sallyport_tests::lossy_udp`])
//! as a process, for `scripts/bench.sh` and for trying a connector on a bad
//! network by hand. Prints `listening on ADDR` once it forwards, and what it
//! forwarded and dropped when it gets SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use sallyport_tests::lossy_udp::{Config, LossyUdp};
use tokio::signal::unix::{signal, SignalKind};

/// Forwards UDP datagrams to a relay's tunnel port and back, dropping a
/// fraction of them each way.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where to listen for the connector (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The relay's tunnel (QUIC) address.
    #[arg(long)]
    to: SocketAddr,
    /// Fraction of datagrams to drop in each direction, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Fraction dropped from the connector to the relay [default: --loss].
    #[arg(long)]
    loss_up: Option<f64>,
    /// Fraction dropped from the relay to the connector [default: --loss].
    #[arg(long)]
    loss_down: Option<f64>,
    /// Seed of the drop decisions: the same seed, the same decisions.
    #[arg(long, default_value_t = 14)]
    seed: u64,
    /// Seconds after which every flow moves to a new source port, as a
    /// NAT that rebinds (once).
    #[arg(long)]
    rebind_after: Option<f64>,
}

enum Next {
    Rebind,
    Stop,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fwd = LossyUdp::start(Config {
        listen: args.listen,
        upstream: args.to,
        loss_up: args.loss_up.unwrap_or(args.loss),
        loss_down: args.loss_down.unwrap_or(args.loss),
        seed: args.seed,
    })?;
    println!("listening on {}", fwd.addr());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut term = runtime.block_on(async { signal(SignalKind::terminate()) })?;
    let mut int = runtime.block_on(async { signal(SignalKind::interrupt()) })?;
    let mut rebind_after = args.rebind_after.map(Duration::from_secs_f64);
    loop {
        let next = runtime.block_on(async {
            tokio::select! {
                () = wait(rebind_after) => Next::Rebind,
                _ = term.recv() => Next::Stop,
                _ = int.recv() => Next::Stop,
            }
        });
        match next {
            // Outside the runtime: `rebind` blocks until the flows moved.
            Next::Rebind => {
                rebind_after = None;
                fwd.rebind()?;
                println!("rebound: {}", fwd.counts());
            }
            Next::Stop => break,
        }
    }
    println!("counts: {}", fwd.counts());
    Ok(())
}

/// Sleeps `after`, or forever when there is nothing to wait for.
async fn wait(after: Option<Duration>) {
    match after {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
