//! Guards on the relay's TCP listeners (HTTPS for people, plain HTTP for
//! `/metrics`): how many connections one client address and everyone
//! together may hold, and how long a connection may sit in the TLS
//! handshake, in a request head, or idle between requests.
//!
//! Both are an axum-server acceptor ([`GuardAcceptor`]) around the TLS
//! acceptor, not code in handlers: a connection over a cap is closed before
//! its TLS handshake, and the timeouts follow the connection, not a route.
//!
//! Behind a load balancer that speaks PROXY protocol (`proxy_protocol`), a
//! connection from a trusted proxy is counted under the client's address,
//! so only after its PROXY header is read: the header must come within
//! `proxy_protocol::PROXY_HEADER_TIMEOUT` and the handshake timeout, which
//! it shares with the TLS handshake, and until then the connection holds no
//! place under the caps (only trusted proxies get that far). Counted under
//! the balancer's address, every client together would share one
//! per-address cap.
//!
//! Why not hyper's own `header_read_timeout`: it starts when a connection
//! becomes ready for a request, so it is the idle timeout too, and
//! hyper-util's protocol detection (HTTP/1 or 2) before it has no timer at
//! all. Here a connection is in one of three phases, each with its own bound:
//! idle (no request yet or since the last response), reading a request head
//! (from its first byte until a handler is called), busy (a handler runs or
//! its response is being written). A request body must arrive within the
//! header timeout too, counted from the end of its head ([`BodyDeadline`]). A busy connection whose peer stops
//! reading for the idle timeout is closed too. Once a response switches
//! protocols (a session WebSocket), none of this applies: the WebSocket has
//! its own ping and silence rules (`pipe::PING_INTERVAL`,
//! `CLIENT_IDLE_TIMEOUT`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response, StatusCode};
use axum_server::accept::Accept;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::client_addr::{ConnPeer, Forwarding};
use super::proxy_protocol;
use crate::metrics::Metrics;

/// How long a client has for its TLS handshake, counted from the TCP accept.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a whole request head, counted from its
/// first byte: a slowly dripped head (slowloris) is cut here however steady
/// the drip.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may wait for its first request or the next one
/// (keep-alive), and how long a response may wait for a peer that does not
/// read it. Browsers reopen closed keep-alive connections silently.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections one client address may hold at once (IPv6: one /64), at
/// most. A browser holds about six for pages plus one per open terminal;
/// the rest is room for several people behind one NAT. Under a small
/// descriptor limit the default is less (see `per_address_cap`).
pub const DEFAULT_MAX_PER_ADDRESS: usize = 256;
/// Unless an admin sets the per-address cap, it is at most the total cap
/// divided by this: filling the listener takes at least this many
/// addresses, not two or three.
pub const MIN_ADDRESSES_TO_FILL: usize = 8;
/// File descriptors kept out of the HTTPS connection cap: the store (sled
/// keeps about ten files open), the tunnel's UDP socket, the runtime's
/// epoll and event descriptors, the admin socket and its clients, the
/// metrics listener and its `METRICS_MAX_CONNECTIONS`, config and
/// country-database reads, log files, and the descriptor `accept` itself
/// needs to refuse a connection. About 60 are in use on a busy relay; the
/// rest is slack so that a full HTTPS listener never makes the store or an
/// admin command fail with "too many open files".
pub const FD_RESERVE: u64 = 256;
/// The smallest total cap, whatever the descriptor limit says.
pub const MIN_TOTAL: usize = 32;
/// Connections the metrics listener takes at once (a scraper needs one).
pub const METRICS_MAX_CONNECTIONS: usize = 16;
/// The most bytes of a request head on the metrics listener (hyper's
/// smallest read buffer): `/metrics`, `/healthz` and `/readyz` need a
/// request line and a few headers.
pub const METRICS_MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Refused connections are logged at most once per this interval (with
/// counts); the metric counts every one.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// See [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Connections one address may hold; `None`: [`per_address_cap`]'s
    /// default for the total cap.
    pub max_per_address: Option<usize>,
    /// Connections everyone together may hold; `None`: the descriptor limit
    /// less [`FD_RESERVE`] (see [`total_cap`]).
    pub max_total: Option<usize>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_per_address: None,
            max_total: None,
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit (the
/// soft one is often 1024; the hard one, what the admin allowed) and
/// returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The total HTTPS connection cap for a descriptor limit `fd_limit` and an
/// admin's `configured` cap: the limit less [`FD_RESERVE`] (at least
/// [`MIN_TOTAL`]), or the configured cap when it is lower.
pub fn total_cap(fd_limit: u64, configured: Option<usize>) -> usize {
    let derived = usize::try_from(fd_limit.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .max(MIN_TOTAL);
    match configured {
        Some(n) => n.clamp(1, derived),
        None => derived,
    }
}

/// The per-address cap for a total cap `total`: what the admin `configured`,
/// or [`DEFAULT_MAX_PER_ADDRESS`] but no more than `total` /
/// [`MIN_ADDRESSES_TO_FILL`] (and at least 16, room for one person).
pub fn per_address_cap(total: usize, configured: Option<usize>) -> usize {
    match configured {
        Some(n) => n.max(1),
        None => (total / MIN_ADDRESSES_TO_FILL).clamp(16, DEFAULT_MAX_PER_ADDRESS),
    }
}

/// The key a client is counted under: an IPv4 address (also when mapped
/// into IPv6) alone, an IPv6 address by its /64, which one host usually
/// holds whole.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        },
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds [`ConnLimits::max_per_address`] already.
    PerAddress,
    /// The listener holds its total already.
    Total,
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// Only addresses that hold a connection: at most `total` entries.
    per_address: HashMap<IpAddr, usize>,
    last_log: Option<Instant>,
    unlogged_per_address: u64,
    unlogged_total: u64,
}

/// Counts the connections of one listener by client address.
pub struct Limiter {
    listener: &'static str,
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
    /// The HTTPS listener's counters (the metrics listener keeps none).
    metrics: Option<Arc<Metrics>>,
}

impl Limiter {
    /// A limiter for the listener named `listener` (in log lines).
    pub fn new(
        listener: &'static str,
        max_total: usize,
        max_per_address: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            listener,
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            counts: Mutex::default(),
            metrics,
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counting never panics halfway; a poisoned lock still holds good counts.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a connection from `ip`, or says why there is none.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        self.try_acquire_unnamed()?.name(ip)
    }

    /// Takes a place in the total only, for a connection whose client is
    /// not known yet (a trusted proxy's, before its PROXY header): the
    /// total cap, and so the descriptor reserve, holds for it too.
    /// [`Permit::name`] then counts it under its client.
    pub fn try_acquire_unnamed(self: &Arc<Self>) -> Result<Permit, Refusal> {
        let mut c = self.counts();
        if c.total >= self.max_total {
            return Err(self.refused(&mut c, Refusal::Total, None));
        }
        c.total += 1;
        if let Some(m) = &self.metrics {
            m.https_connections_open
                .set(i64::try_from(c.total).unwrap_or(i64::MAX));
        }
        Ok(Permit {
            limiter: self.clone(),
            key: None,
        })
    }

    /// Counts a refusal (metric every time, log line at most once per
    /// [`REFUSAL_LOG_INTERVAL`]) and returns it.
    fn refused(&self, c: &mut Counts, r: Refusal, key: Option<IpAddr>) -> Refusal {
        match r {
            Refusal::PerAddress => c.unlogged_per_address += 1,
            Refusal::Total => c.unlogged_total += 1,
        }
        if let Some(m) = &self.metrics {
            Metrics::add(
                match r {
                    Refusal::PerAddress => &m.https_refused_per_address,
                    Refusal::Total => &m.https_refused_total,
                },
                1,
            );
        }
        let now = Instant::now();
        if c.last_log
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL)
        {
            let last_from = key.map_or_else(|| "a trusted proxy".to_owned(), |k| k.to_string());
            tracing::warn!(
                listener = self.listener,
                per_address = c.unlogged_per_address,
                total = c.unlogged_total,
                last_from = %last_from,
                max_per_address = self.max_per_address,
                max_total = self.max_total,
                "connections refused over the cap since the last such line \
                 (one line per {REFUSAL_LOG_INTERVAL:?} at most; the metric counts each)"
            );
            c.last_log = Some(now);
            c.unlogged_per_address = 0;
            c.unlogged_total = 0;
        }
        r
    }

    fn release(&self, key: Option<IpAddr>) {
        let mut c = self.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(k) = key {
            if let Some(n) = c.per_address.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    c.per_address.remove(&k);
                }
            }
        }
        if let Some(m) = &self.metrics {
            m.https_connections_open
                .set(i64::try_from(c.total).unwrap_or(i64::MAX));
        }
    }
}

/// A connection's place under the caps, given back on drop.
pub struct Permit {
    limiter: Arc<Limiter>,
    /// The address it counts under; `None` while its client is unknown.
    key: Option<IpAddr>,
}

impl Permit {
    /// Counts this place under the client `ip` too, or says why it cannot
    /// be (the place in the total is then given back).
    pub fn name(mut self, ip: IpAddr) -> Result<Permit, Refusal> {
        let key = address_key(ip);
        let limiter = self.limiter.clone();
        let mut c = limiter.counts();
        if let Some(old) = self.key.take() {
            // Named already: count it under the new address instead.
            if let Some(n) = c.per_address.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    c.per_address.remove(&old);
                }
            }
        }
        let held = c.per_address.get(&key).copied().unwrap_or(0);
        if held >= limiter.max_per_address {
            let r = limiter.refused(&mut c, Refusal::PerAddress, Some(key));
            drop(c);
            return Err(r);
        }
        *c.per_address.entry(key).or_default() += 1;
        self.key = Some(key);
        Ok(self)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(self.key);
    }
}

/// Where a connection is, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request (the first, or the next on keep-alive).
    Idle,
    /// Part of a request head has arrived; no handler runs yet.
    Head,
    /// A handler runs or its response is being written.
    Busy,
}

/// What the stream and the service of one connection share.
#[derive(Default)]
struct ConnState {
    /// Requests whose response has not been written whole.
    busy: AtomicUsize,
    /// Requests handed to a handler so far.
    dispatched: AtomicU64,
    /// The connection's task. After a response hyper reads again only when
    /// woken, and the idle timer starts with that read: the end of a
    /// response (its body dropped) wakes it.
    reader: futures::task::AtomicWaker,
    /// A response switched protocols: the HTTP timeouts are over.
    upgraded: AtomicBool,
}

/// The acceptor that applies [`ConnLimits`]: `inner` is the TLS acceptor
/// (or none, for plain HTTP).
#[derive(Clone)]
pub struct GuardAcceptor<A> {
    inner: A,
    limiter: Arc<Limiter>,
    limits: ConnLimits,
    metrics: Option<Arc<Metrics>>,
    forwarding: Arc<Forwarding>,
}

impl<A> GuardAcceptor<A> {
    /// Guards `inner` with `limiter` and the timeouts of `limits`; counts
    /// timeouts in `metrics`, if given. `forwarding` says whose PROXY
    /// headers are read and whose forwarding headers believed.
    pub fn new(
        inner: A,
        limiter: Arc<Limiter>,
        limits: ConnLimits,
        metrics: Option<Arc<Metrics>>,
        forwarding: Arc<Forwarding>,
    ) -> Self {
        Self {
            inner,
            limiter,
            limits,
            metrics,
            forwarding,
        }
    }
}

type AcceptFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl<A, S> Accept<TcpStream, S> for GuardAcceptor<A>
where
    A: Accept<TcpStream, S> + Clone + Send + Sync + 'static,
    A::Future: Send + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Service: Send + 'static,
    S: Send + 'static,
{
    type Stream = GuardedStream<A::Stream>;
    type Service = GuardedService<A::Service>;
    type Future = AcceptFuture<(Self::Stream, Self::Service)>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = match stream.peer_addr() {
            Ok(peer) => peer.ip(),
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        // A trusted proxy's connection starts with a PROXY header naming the
        // client, and is counted under the client's address once that is
        // read. Anyone else is counted under its own address at once, before
        // any byte is read, and no header is read from it: one it sends
        // fails the TLS handshake (it is no ClientHello).
        let from_proxy = self.forwarding.proxy_protocol && self.forwarding.is_trusted(peer);
        let place = if from_proxy {
            self.limiter.try_acquire_unnamed()
        } else {
            self.limiter.try_acquire(peer)
        };
        let place = match place {
            Ok(p) => p,
            Err(r) => return refuse(stream, r),
        };
        let inner = self.inner.clone();
        let limits = self.limits;
        let metrics = self.metrics.clone();
        let forwarding = self.forwarding.clone();
        Box::pin(async move {
            let mut stream = stream;
            let deadline = Instant::now() + limits.handshake_timeout;
            let (client, permit) = match from_proxy {
                false => (peer, place),
                true => {
                    let header_deadline =
                        deadline.min(Instant::now() + proxy_protocol::PROXY_HEADER_TIMEOUT);
                    let read = tokio::time::timeout_at(
                        header_deadline,
                        proxy_protocol::read_header(&mut stream),
                    )
                    .await;
                    let client = match read {
                        Ok(Ok(source)) => source.map_or(peer, |s| s.ip()),
                        Ok(Err(e)) => {
                            tracing::warn!(proxy = %peer, error = %e, "PROXY header refused; its connection is closed");
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                        }
                        Err(_) => {
                            if let Some(m) = &metrics {
                                Metrics::add(&m.https_timeouts_handshake, 1);
                            }
                            tracing::warn!(proxy = %peer, "PROXY header timed out; its connection is closed");
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "PROXY header timed out",
                            ));
                        }
                    };
                    match place.name(client) {
                        Ok(p) => (client, p),
                        Err(r) => return refuse(stream, r).await,
                    }
                }
            };
            let handshake = tokio::time::timeout_at(deadline, inner.accept(stream, service));
            let (stream, service) = match handshake.await {
                Ok(Ok(accepted)) => accepted,
                Ok(Err(e)) => {
                    // The TLS acceptor's own timer (set to the same bound) may fire first.
                    if e.kind() == io::ErrorKind::TimedOut {
                        if let Some(m) = &metrics {
                            Metrics::add(&m.https_timeouts_handshake, 1);
                        }
                    }
                    return Err(e);
                }
                Err(_) => {
                    if let Some(m) = &metrics {
                        Metrics::add(&m.https_timeouts_handshake, 1);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    ));
                }
            };
            let conn = Arc::new(ConnState::default());
            let stream = GuardedStream {
                inner: stream,
                _permit: permit,
                conn: conn.clone(),
                limits,
                metrics,
                phase: Phase::Idle,
                dispatched: 0,
                deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)),
                write_deadline: None,
            };
            Ok((
                stream,
                GuardedService {
                    inner: service,
                    conn,
                    body_timeout: limits.header_timeout,
                    peer: ConnPeer {
                        addr: client,
                        forwarding,
                    },
                },
            ))
        })
    }
}

/// Closes a connection refused over a cap.
fn refuse<T: Send + 'static>(stream: TcpStream, r: Refusal) -> AcceptFuture<T> {
    // A reset, not a FIN: no TIME_WAIT left behind for the refused.
    let _ = stream.set_zero_linger();
    drop(stream);
    Box::pin(std::future::ready(Err(io::Error::other(format!(
        "connection refused over the cap ({r:?})"
    )))))
}

/// A connection's stream: holds its [`Permit`] and enforces the timeouts.
pub struct GuardedStream<T> {
    inner: T,
    _permit: Permit,
    conn: Arc<ConnState>,
    limits: ConnLimits,
    metrics: Option<Arc<Metrics>>,
    phase: Phase,
    /// `ConnState::dispatched` when this stream last looked.
    dispatched: u64,
    /// The end of the idle or head phase.
    deadline: Pin<Box<Sleep>>,
    /// The end of the wait for a peer that does not read.
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> GuardedStream<T> {
    fn timed_out(&self, counter: fn(&Metrics) -> &Counter, what: &str) -> io::Error {
        if let Some(m) = &self.metrics {
            Metrics::add(counter(m), 1);
        }
        io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
    }

    /// Bounds a write that cannot proceed by the idle timeout.
    fn bound_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if self.conn.upgraded.load(Ordering::Relaxed) {
            return res;
        }
        if res.is_ready() {
            self.write_deadline = None;
            return res;
        }
        let idle = self.limits.idle_timeout;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(
                self.timed_out(|m| &m.https_timeouts_idle, "the peer stopped reading")
            ));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedStream<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.conn.upgraded.load(Ordering::Relaxed) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        this.conn.reader.register(cx.waker());
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let busy = this.conn.busy.load(Ordering::Acquire) > 0;
        let dispatched = this.conn.dispatched.load(Ordering::Acquire);
        if dispatched != this.dispatched {
            // A handler took the head read so far (and may be done already).
            this.dispatched = dispatched;
            this.phase = Phase::Busy;
        }
        match res {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if busy {
                    this.phase = Phase::Busy;
                } else if this.phase != Phase::Head {
                    // The first byte of a request head: the head timeout
                    // starts, and later bytes do not restart it.
                    this.phase = Phase::Head;
                    let at = Instant::now() + this.limits.header_timeout;
                    this.deadline.as_mut().reset(at);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if busy {
                    this.phase = Phase::Busy;
                    return Poll::Pending;
                }
                if this.phase == Phase::Busy {
                    this.phase = Phase::Idle;
                    let at = Instant::now() + this.limits.idle_timeout;
                    this.deadline.as_mut().reset(at);
                }
                if this.deadline.as_mut().poll(cx).is_ready() {
                    let err = match this.phase {
                        Phase::Head => this.timed_out(
                            |m| &m.https_timeouts_header,
                            "the request head took too long",
                        ),
                        _ => this.timed_out(|m| &m.https_timeouts_idle, "idle connection"),
                    };
                    return Poll::Ready(Err(err));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedStream<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bound_write(cx, res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bound_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.bound_write(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bound_write(cx, res)
    }
}

/// A connection's service: marks the connection busy from a request until
/// its response body is written (or dropped), and upgraded on `101`.
#[derive(Clone)]
pub struct GuardedService<S> {
    inner: S,
    conn: Arc<ConnState>,
    /// How long a request's body may take, from its head (see [`BodyDeadline`]).
    body_timeout: Duration,
    /// The connection's client, for [`super::client_addr::ClientAddr`].
    peer: ConnPeer,
}

/// When a request's body must have arrived whole: its head's arrival plus
/// the header timeout. A request extension, applied by `web::body_in_time`
/// (the stream cannot tell a handler waiting for a dripped body from one
/// that computes).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// One request in progress; dropped with its response body.
struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

impl<S, B> tower_service::Service<Request<B>> for GuardedService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut()
            .insert(BodyDeadline(Instant::now() + self.body_timeout));
        req.extensions_mut().insert(self.peer.clone());
        self.conn.busy.fetch_add(1, Ordering::AcqRel);
        self.conn.dispatched.fetch_add(1, Ordering::AcqRel);
        let busy = Busy(self.conn.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                busy.0.upgraded.store(true, Ordering::Relaxed);
            }
            Ok(resp.map(|body| {
                Body::new(TrackedBody {
                    inner: body,
                    _busy: busy,
                })
            }))
        })
    }
}

/// A response body that keeps its connection busy until it is dropped.
struct TrackedBody {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn caps_per_address_and_in_total_and_places_come_back() {
        let l = Limiter::new("test", 3, 2, None);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::2".parse().unwrap();
        let b: IpAddr = "192.0.2.1".parse().unwrap();
        let c: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a2).unwrap();
        assert_eq!(l.try_acquire(a).err(), Some(Refusal::PerAddress));
        let _p3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(c).err(), Some(Refusal::Total));
        drop(p1);
        assert!(l.try_acquire(c).is_ok());
    }

    #[test]
    fn an_unnamed_place_counts_in_the_total_then_under_its_client() {
        let l = Limiter::new("test", 3, 1, None);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let _held = l.try_acquire(a).unwrap();
        let unnamed = l.try_acquire_unnamed().unwrap();
        // Its client already holds its one place: refused, and the place
        // in the total comes back.
        assert_eq!(unnamed.name(a).err(), Some(Refusal::PerAddress));
        let u1 = l.try_acquire_unnamed().unwrap();
        let u2 = l.try_acquire_unnamed().unwrap();
        assert_eq!(l.try_acquire_unnamed().err(), Some(Refusal::Total));
        assert_eq!(l.try_acquire(b).err(), Some(Refusal::Total));
        let _b = u2.name(b).unwrap();
        assert_eq!(l.try_acquire(b).err(), Some(Refusal::Total));
        drop(u1);
        assert_eq!(l.try_acquire(b).err(), Some(Refusal::PerAddress));
    }

    #[test]
    fn the_default_per_address_cap_leaves_room_for_eight_addresses() {
        assert_eq!(per_address_cap(768, None), 96);
        assert_eq!(per_address_cap(1 << 20, None), DEFAULT_MAX_PER_ADDRESS);
        assert_eq!(per_address_cap(32, None), 16);
        assert_eq!(per_address_cap(768, Some(300)), 300);
    }

    #[test]
    fn total_cap_keeps_the_reserve_and_an_admin_may_lower_it() {
        assert_eq!(total_cap(1024, None), 1024 - FD_RESERVE as usize);
        assert_eq!(total_cap(100, None), MIN_TOTAL);
        assert_eq!(total_cap(1024, Some(100)), 100);
        assert_eq!(total_cap(1024, Some(5000)), 1024 - FD_RESERVE as usize);
    }
}
