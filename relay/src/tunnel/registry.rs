//! Which connectors are online, over which connections, serving what.
//!
//! A connection offers the services its hello announced; the relay sends it
//! sessions only for the ones its connector is granted (`connector add
//! --service`, `connector grant`). Grants live here too, so a grant or an
//! ungrant applies to live connections at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sallyport_common::transport::{Connection, Transport};
use sallyport_proto::tunnel::{Code, ServiceInfo};

/// One live connection from a connector, over either transport.
#[derive(Clone)]
pub struct LiveConn {
    pub id: u64,
    pub connector: String,
    pub conn: Connection,
    /// What the hello announced, granted or not.
    pub services: Arc<Vec<ServiceInfo>>,
    pub remote: SocketAddr,
    /// Set when the connector announced a drain: no new sessions go here.
    pub draining: Arc<AtomicBool>,
    /// The connector's software version, as its hello said.
    pub version: String,
}

impl LiveConn {
    /// What this connection announced for `service`, if anything.
    pub fn announced(&self, service: &str) -> Option<&ServiceInfo> {
        self.services.iter().find(|s| s.name == service)
    }
}

/// A service as the live connections offering it describe it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LiveService {
    /// Connectors serving it, in the order they connected.
    pub connectors: Vec<String>,
    /// The host keys those connectors attested for it (OpenSSH one-line
    /// form, each once): for clients that cannot learn per session which
    /// connector carries them (OpenSSH's known_hosts, written ahead of
    /// time). At most [`sallyport_proto::limits::MAX_HOST_KEYS`] per
    /// connection, like the hello that carried them.
    pub host_keys: Vec<String>,
}

#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<u64, LiveConn>>,
    /// Connector name → the service names it is granted.
    grants: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
    /// Held across a reload of grants from the store (see
    /// [`Registry::reload_grants`]).
    reloading: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    round_robin: AtomicUsize,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, LiveConn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what `connector` may serve, for its live connections and later
    /// ones, to what the store says now. Reloads are serialized, so of two
    /// callers racing (a connection's hello and an admin's grant) the later
    /// one reads the later store: write the store first, then call this.
    pub async fn reload_grants(&self, connector: &str, store: &crate::store::Store) {
        let _one_at_a_time = self.reloading.lock().await;
        let loaded = crate::tunnel::server::stored_grants(store, connector).await;
        let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        grants.insert(connector.to_owned(), Arc::new(loaded.into_iter().collect()));
    }

    fn grants_of(&self, connector: &str) -> Option<Arc<BTreeSet<String>>> {
        self.grants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(connector)
            .cloned()
    }

    /// True when `live` announced `service` and its connector is granted it.
    pub fn serves(&self, live: &LiveConn, service: &str) -> bool {
        live.announced(service).is_some()
            && self
                .grants_of(&live.connector)
                .is_some_and(|g| g.contains(service))
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn insert(&self, live: LiveConn) {
        self.lock().insert(live.id, live);
    }

    /// Registers `live` unless its connector already has `max` live
    /// connections taking sessions, or `2 * max` with those draining
    /// (finishing their sessions: a connection that moved from TCP back to
    /// QUIC, or is being replaced); false when it was refused.
    pub fn try_insert(&self, live: LiveConn, max: usize) -> bool {
        let mut map = self.lock();
        let (mut active, mut all) = (0, 0);
        for c in map.values().filter(|c| c.connector == live.connector) {
            all += 1;
            if !c.draining.load(Ordering::Relaxed) {
                active += 1;
            }
        }
        if active >= max || all >= max.saturating_mul(2) {
            return false;
        }
        map.insert(live.id, live);
        true
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The live connections that can take a new session for `service`, in
    /// the order to try them: a rotating start spreads sessions over
    /// connectors and their connections.
    pub fn candidates(&self, service: &str) -> Vec<LiveConn> {
        let conns: Vec<LiveConn> = self.lock().values().cloned().collect();
        let mut live: Vec<LiveConn> = conns
            .into_iter()
            .filter(|c| {
                self.serves(c, service)
                    && !c.draining.load(Ordering::Relaxed)
                    && c.conn.close_reason().is_none()
            })
            .collect();
        live.sort_by_key(|c| c.id);
        if !live.is_empty() {
            let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % live.len();
            live.rotate_left(start);
        }
        live
    }

    /// Closes every connection of `connector`; returns how many there were.
    pub fn close_connector(&self, connector: &str, code: Code, reason: &str) -> usize {
        let conns: Vec<LiveConn> = self
            .lock()
            .values()
            .filter(|c| c.connector == connector)
            .cloned()
            .collect();
        for c in &conns {
            c.conn.close(code, reason);
        }
        conns.len()
    }

    /// Connector name → number of live connections.
    pub fn online(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.lock().values() {
            *out.entry(c.connector.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Connector name → the transport of each live connection, in the
    /// order they connected (`quic`, `tcp`).
    pub fn transports(&self) -> BTreeMap<String, Vec<Transport>> {
        let mut conns: Vec<LiveConn> = self.lock().values().cloned().collect();
        conns.sort_by_key(|c| c.id);
        let mut out: BTreeMap<String, Vec<Transport>> = BTreeMap::new();
        for c in conns {
            out.entry(c.connector).or_default().push(c.conn.transport());
        }
        out
    }

    /// Connector name → the software versions its live connections
    /// announced (one, unless it is being upgraded), sorted.
    pub fn versions(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for c in self.lock().values() {
            out.entry(c.connector.clone())
                .or_default()
                .insert(c.version.clone());
        }
        out
    }

    /// Services offered by live connections under a grant, by name: who
    /// serves each, and the host keys they attested. The browser client
    /// checks only the keys of the connector that carries its session (the
    /// session's `opened` message); `host_keys` here are for clients that
    /// must be told ahead of time (`sallyport ssh-config`).
    pub fn services(&self) -> BTreeMap<String, LiveService> {
        let mut conns: Vec<LiveConn> = self.lock().values().cloned().collect();
        conns.sort_by_key(|c| c.id);
        let mut out: BTreeMap<String, LiveService> = BTreeMap::new();
        for c in &conns {
            for s in c.services.iter() {
                if !self.serves(c, &s.name) {
                    continue;
                }
                let v = out.entry(s.name.clone()).or_default();
                if !v.connectors.contains(&c.connector) {
                    v.connectors.push(c.connector.clone());
                }
                for k in &s.host_keys {
                    if !v.host_keys.contains(k) {
                        v.host_keys.push(k.clone());
                    }
                }
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
