//! A lossy UDP forwarder, for the tests and the benchmark: what a bad
//! network and a rebinding NAT do to a connector's QUIC tunnel, on
//! loopback, where `tc netem` is not available.
//!
//! It listens on one UDP port and forwards each datagram to the relay's
//! tunnel port and the relay's answers back, dropping a set fraction of the
//! datagrams in each direction independently. The drops come from seeded
//! generators (one per direction and flow), so a run makes the same
//! decisions for the same sequence of datagrams. Every client address (a
//! connector's UDP socket) is one *flow* with a socket of its own towards
//! the relay, as a NAT gives each inside socket a mapping of its own.
//!
//! [`LossyUdp::rebind`] is a NAT that rebinds: every flow moves to a new
//! socket (a new source port), so the relay sees the connector's address
//! change mid-connection while the connector sees nothing. Datagrams the
//! relay still sends to the old address are dropped there, as a NAT drops
//! what arrives for a mapping it forgot, and counted
//! ([`Counts::stale`]).
//!
//! It runs on a thread of its own with its own runtime, so a plain
//! `#[test]` can start one in-process; `src/bin/lossy-udp.rs` is the same
//! forwarder as a process, for `scripts/bench.sh`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most client flows (client addresses) forwarded at once; datagrams from
/// further addresses are dropped and counted ([`Counts::refused`]). A test
/// has one connector endpoint per forwarder, and each restart of it one
/// more flow: flows are never expired, a forwarder lives for one test.
pub const MAX_FLOWS: usize = 16;

/// Largest datagram forwarded, in bytes; larger ones are dropped and
/// counted ([`Counts::oversize`]). Above any UDP payload over IPv4 and
/// the tunnel's own MTU bound, so in practice it bounds the buffers only.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Rebind requests waiting for the forwarder (one test asks at a time).
const COMMAND_QUEUE: usize = 4;

/// What the forwarder does.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Where it listens for the connector (port 0: any free port).
    pub listen: SocketAddr,
    /// The relay's tunnel (QUIC) address.
    pub upstream: SocketAddr,
    /// Fraction of datagrams dropped from the connector to the relay, 0..=1.
    pub loss_up: f64,
    /// Fraction of datagrams dropped from the relay to the connector, 0..=1.
    pub loss_down: f64,
    /// Seed of the drop decisions.
    pub seed: u64,
}

impl Config {
    /// A forwarder on a free loopback port to `upstream`, dropping `loss`
    /// of the datagrams each way, with a fixed seed.
    pub fn new(upstream: SocketAddr, loss: f64) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            upstream,
            loss_up: loss,
            loss_down: loss,
            seed: 14,
        }
    }
}

/// What the forwarder has done so far, in datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connector → relay, forwarded.
    pub up_forwarded: u64,
    /// Connector → relay, dropped by the loss.
    pub up_dropped: u64,
    /// Relay → connector, forwarded.
    pub down_forwarded: u64,
    /// Relay → connector, dropped by the loss.
    pub down_dropped: u64,
    /// Relay → connector, arrived at a socket a rebind opened (forwarded
    /// or dropped): the relay answered the new address.
    pub down_on_new_path: u64,
    /// Arrived from the relay at a socket a rebind retired, and dropped.
    pub stale: u64,
    /// Larger than [`MAX_DATAGRAM`], dropped.
    pub oversize: u64,
    /// From a client beyond [`MAX_FLOWS`], dropped.
    pub refused: u64,
    /// Rebinds done.
    pub rebinds: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "up {} forwarded, {} dropped; down {} forwarded, {} dropped \
             ({} on a rebound path); {} stale, {} oversize, {} refused, {} rebinds",
            self.up_forwarded,
            self.up_dropped,
            self.down_forwarded,
            self.down_dropped,
            self.down_on_new_path,
            self.stale,
            self.oversize,
            self.refused,
            self.rebinds
        )
    }
}

/// The counters, shared by the forwarder's tasks.
#[derive(Default)]
struct Counters {
    up_forwarded: AtomicU64,
    up_dropped: AtomicU64,
    down_forwarded: AtomicU64,
    down_dropped: AtomicU64,
    down_on_new_path: AtomicU64,
    stale: AtomicU64,
    oversize: AtomicU64,
    refused: AtomicU64,
    rebinds: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            up_forwarded: get(&self.up_forwarded),
            up_dropped: get(&self.up_dropped),
            down_forwarded: get(&self.down_forwarded),
            down_dropped: get(&self.down_dropped),
            down_on_new_path: get(&self.down_on_new_path),
            stale: get(&self.stale),
            oversize: get(&self.oversize),
            refused: get(&self.refused),
            rebinds: get(&self.rebinds),
        }
    }
}

/// Asks the forwarder to move every flow to a new socket; answered once
/// they have moved.
struct Rebind(oneshot::Sender<io::Result<()>>);

/// A running forwarder; stopped (its thread joined) on drop.
pub struct LossyUdp {
    addr: SocketAddr,
    counters: Arc<Counters>,
    commands: mpsc::Sender<Rebind>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LossyUdp {
    /// Binds the listening socket and starts forwarding.
    ///
    /// # Errors
    /// When the listening socket cannot be bound, or a loss is not in 0..=1.
    pub fn start(config: Config) -> io::Result<Self> {
        for loss in [config.loss_up, config.loss_down] {
            if !(0.0..=1.0).contains(&loss) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a loss is a fraction from 0 to 1, not {loss}"),
                ));
            }
        }
        let listen = std::net::UdpSocket::bind(config.listen)?;
        listen.set_nonblocking(true)?;
        let addr = listen.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let shutdown = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let forwarder = Forwarder {
            config,
            counters: counters.clone(),
            flows: Vec::new(),
            tasks: JoinSet::new(),
            rng_up: StdRng::seed_from_u64(config.seed),
        };
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("lossy-udp {addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match UdpSocket::from_std(listen) {
                        Ok(listen) => forwarder.run(Arc::new(listen), rx, stop).await,
                        Err(e) => eprintln!("lossy-udp: cannot use the socket on {addr}: {e}"),
                    }
                });
            })?;
        Ok(Self {
            addr,
            counters,
            commands,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Where the connector should send (`--relay` this).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has forwarded and dropped so far.
    pub fn counts(&self) -> Counts {
        self.counters.snapshot()
    }

    /// Moves every flow to a new socket towards the relay, as a NAT that
    /// rebinds; returns once they have moved, so what the connector sends
    /// next reaches the relay from the new address. Blocks: call it from
    /// a plain thread, not from async code.
    ///
    /// # Errors
    /// When a new socket cannot be bound, or the forwarder has stopped.
    pub fn rebind(&self) -> io::Result<()> {
        let stopped = || io::Error::other("the lossy forwarder has stopped");
        let (tx, rx) = oneshot::channel();
        self.commands
            .blocking_send(Rebind(tx))
            .map_err(|_| stopped())?;
        rx.blocking_recv().map_err(|_| stopped())?
    }
}

impl Drop for LossyUdp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One client address and its current socket towards the relay; its
/// task (in [`Forwarder::tasks`]) forwards the relay's answers.
struct Flow {
    client: SocketAddr,
    upstream: Arc<UdpSocket>,
    /// Hands the flow's task the socket a rebind opened.
    moved: watch::Sender<Arc<UdpSocket>>,
}

/// The loop that owns the listening socket, the flows and their tasks.
struct Forwarder {
    config: Config,
    counters: Arc<Counters>,
    flows: Vec<Flow>,
    /// The flows' tasks: aborted when the forwarder stops.
    tasks: JoinSet<()>,
    rng_up: StdRng,
}

impl Forwarder {
    async fn run(
        mut self,
        listen: Arc<UdpSocket>,
        mut commands: mpsc::Receiver<Rebind>,
        shutdown: CancellationToken,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            tokio::select! {
                got = listen.recv_from(&mut buf) => match got {
                    Ok((n, client)) => self.up(&listen, &buf[..n], client).await,
                    // An ICMP error for an earlier datagram: nothing to do.
                    Err(_) => continue,
                },
                Some(Rebind(done)) = commands.recv() => {
                    let _ = done.send(self.rebind().await);
                }
                () = shutdown.cancelled() => break,
            }
        }
        self.tasks.shutdown().await;
    }

    /// A datagram from the connector at `client`, towards the relay.
    async fn up(&mut self, listen: &Arc<UdpSocket>, datagram: &[u8], client: SocketAddr) {
        if datagram.len() > MAX_DATAGRAM {
            Counters::bump(&self.counters.oversize);
            return;
        }
        if self.rng_up.random_bool(self.config.loss_up) {
            Counters::bump(&self.counters.up_dropped);
            return;
        }
        let upstream = match self.flows.iter().find(|f| f.client == client) {
            Some(flow) => flow.upstream.clone(),
            None => match self.new_flow(listen, client).await {
                Some(socket) => socket,
                None => return,
            },
        };
        match upstream.send_to(datagram, self.config.upstream).await {
            Ok(_) => Counters::bump(&self.counters.up_forwarded),
            // Lost on the way, as a full queue on a router loses it.
            Err(_) => Counters::bump(&self.counters.up_dropped),
        }
    }

    /// Opens a flow for `client`: its socket, and its task for the answers.
    async fn new_flow(
        &mut self,
        listen: &Arc<UdpSocket>,
        client: SocketAddr,
    ) -> Option<Arc<UdpSocket>> {
        if self.flows.len() >= MAX_FLOWS {
            Counters::bump(&self.counters.refused);
            return None;
        }
        let upstream = match self.bind_upstream().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("lossy-udp: no socket for the flow of {client}: {e}");
                Counters::bump(&self.counters.refused);
                return None;
            }
        };
        let (moved, on_move) = watch::channel(upstream.clone());
        let down = Down {
            listen: listen.clone(),
            client,
            relay: self.config.upstream,
            loss: self.config.loss_down,
            rng: StdRng::seed_from_u64(self.config.seed ^ (0x9e37_79b9 + self.flows.len() as u64)),
            counters: self.counters.clone(),
        };
        self.tasks.spawn(down.run(on_move));
        self.flows.push(Flow {
            client,
            upstream: upstream.clone(),
            moved,
        });
        Some(upstream)
    }

    /// A socket for one flow towards the relay, of the relay's family.
    async fn bind_upstream(&self) -> io::Result<Arc<UdpSocket>> {
        let any = if self.config.upstream.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        Ok(Arc::new(UdpSocket::bind(any).await?))
    }

    /// Moves every flow to a new socket.
    async fn rebind(&mut self) -> io::Result<()> {
        for i in 0..self.flows.len() {
            let socket = self.bind_upstream().await?;
            let flow = &mut self.flows[i];
            flow.upstream = socket.clone();
            // Only fails when the flow's task has ended, which it does only
            // at shutdown.
            let _ = flow.moved.send(socket);
        }
        Counters::bump(&self.counters.rebinds);
        Ok(())
    }
}

/// The relay → connector half of one flow.
struct Down {
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    relay: SocketAddr,
    loss: f64,
    rng: StdRng,
    counters: Arc<Counters>,
}

impl Down {
    async fn run(mut self, mut on_move: watch::Receiver<Arc<UdpSocket>>) {
        let mut current = on_move.borrow_and_update().clone();
        // The socket the last rebind retired: what still arrives there is
        // counted and dropped.
        let mut retired: Option<Arc<UdpSocket>> = None;
        let mut rebound = false;
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut stale_buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            tokio::select! {
                got = current.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    if from != self.relay {
                        continue;
                    }
                    if rebound {
                        Counters::bump(&self.counters.down_on_new_path);
                    }
                    self.down(&buf[..n]).await;
                }
                got = recv_retired(retired.as_deref(), &mut stale_buf) => {
                    if got.is_ok() {
                        Counters::bump(&self.counters.stale);
                    }
                }
                changed = on_move.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let next = on_move.borrow_and_update().clone();
                    retired = Some(std::mem::replace(&mut current, next));
                    rebound = true;
                }
            }
        }
    }

    async fn down(&mut self, datagram: &[u8]) {
        if datagram.len() > MAX_DATAGRAM {
            Counters::bump(&self.counters.oversize);
            return;
        }
        if self.rng.random_bool(self.loss) {
            Counters::bump(&self.counters.down_dropped);
            return;
        }
        match self.listen.send_to(datagram, self.client).await {
            Ok(_) => Counters::bump(&self.counters.down_forwarded),
            Err(_) => Counters::bump(&self.counters.down_dropped),
        }
    }
}

/// Receives on the retired socket, or waits forever when there is none.
async fn recv_retired(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<()> {
    match socket {
        Some(s) => s.recv_from(buf).await.map(drop),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// An echo "relay" on loopback: answers every datagram with itself.
    fn echo() -> (std::net::UdpSocket, SocketAddr) {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        (s, addr)
    }

    fn serve_echo(s: std::net::UdpSocket, n: usize) -> std::thread::JoinHandle<Vec<SocketAddr>> {
        std::thread::spawn(move || {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            for _ in 0..n {
                let Ok((len, from)) = s.recv_from(&mut buf) else {
                    break;
                };
                seen.push(from);
                s.send_to(&buf[..len], from).unwrap();
            }
            seen
        })
    }

    #[test]
    fn forwards_both_ways_without_loss_and_rebinds_to_a_new_source_port() {
        let (relay, relay_addr) = echo();
        let fwd = LossyUdp::start(Config::new(relay_addr, 0.0)).unwrap();
        let server = serve_echo(relay, 2);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        client.send_to(b"one", fwd.addr()).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        fwd.rebind().unwrap();
        client.send_to(b"two", fwd.addr()).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        let seen = server.join().unwrap();
        assert_ne!(seen[0], seen[1], "the relay must see a new source address");
        // Counted just after the send: wait for the second count.
        let c = settled(&fwd, |c| c.down_forwarded == 2);
        assert_eq!(c.up_forwarded, 2);
        assert_eq!((c.down_on_new_path, c.rebinds), (1, 1));
    }

    /// Polls the counts until `done` holds, for at most 10 s.
    fn settled(fwd: &LossyUdp, done: impl Fn(&Counts) -> bool) -> Counts {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = fwd.counts();
            if done(&c) {
                return c;
            }
            assert!(Instant::now() < deadline, "the forwarder got stuck at {c}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn drops_about_the_set_fraction_the_same_way_for_the_same_seed() {
        let run = || {
            let (relay, relay_addr) = echo();
            relay
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut config = Config::new(relay_addr, 0.0);
            config.loss_up = 0.25;
            let fwd = LossyUdp::start(config).unwrap();
            let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4];
            // In batches small enough for the sockets' buffers.
            for batch in 0..20u32 {
                for i in batch * 20..(batch + 1) * 20 {
                    client.send_to(&i.to_be_bytes(), fwd.addr()).unwrap();
                }
                let c = settled(&fwd, |c| {
                    c.up_forwarded + c.up_dropped == u64::from(batch + 1) * 20
                });
                while (got.len() as u64) < c.up_forwarded {
                    relay.recv_from(&mut buf).unwrap();
                    got.push(u32::from_be_bytes(buf));
                }
            }
            got
        };
        let first = run();
        assert!(
            (260..=340).contains(&first.len()),
            "25 % loss of 400 left {}",
            first.len()
        );
        assert_eq!(first, run(), "the same seed drops the same datagrams");
    }
}
