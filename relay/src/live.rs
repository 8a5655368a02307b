//! The relay's live sessions, by user and by sign-in: how many session
//! WebSockets each user holds (so one user cannot take every slot sshd and
//! the relay have), and a cancellation token per sign-in that every session
//! opened with it listens to (so signing out ends them at once). Each
//! session named by its stream can be ended alone, and is listed with what
//! it carried ([`Seen`]) for the admin pages ([`LiveSessions::list`]).
//!
//! A session is counted by a [`SessionSlot`] from before its stream opens
//! to the end of its pipe; the slot gives itself back when dropped, so no
//! path (a refused open, a client that never completes the upgrade, a
//! panic) leaks one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Concurrent sessions one user may hold, to all services together, unless
/// configured (`--max-sessions-per-user`): far more than a person has
/// terminals open, and few enough that one account cannot take the relay's
/// and the connectors' capacity.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 20;

/// Concurrent sessions one user may hold to any one service, unless
/// configured (`--max-sessions-per-user-per-service`) or set for that
/// service by its policy table (`max_sessions_per_user`). Below 10, the
/// start of OpenSSH's default `MaxStartups 10:30:100`: sshd counts every
/// connection that has not yet authenticated, and from 10 of them on drops
/// new ones at random (30 %, rising to all at 100) before its banner, so one
/// person's idle sessions must never reach 10 or others are refused. Eight
/// leaves two for everyone else's logins in progress.
pub const DEFAULT_MAX_SESSIONS_PER_USER_PER_SERVICE: usize = 8;

/// A sign-in, named by the SHA-256 (hex) of its bearer token: the key of
/// its record in the store, never the token itself.
pub type SignInId = String;

#[derive(Default)]
struct Counts {
    /// user -> live sessions.
    users: HashMap<String, usize>,
    /// (user, service) -> live sessions.
    services: HashMap<(String, String), usize>,
    /// sign-in -> what its sessions listen to.
    sign_ins: HashMap<SignInId, SignInSessions>,
    /// The relay's stream id of each live session that has one -> how to
    /// end that session alone (`session terminate`).
    streams: HashMap<String, LiveStream>,
}

/// One live session, found by its stream id.
struct LiveStream {
    /// The slot's own token (a child of its sign-in's).
    ended: CancellationToken,
    /// The slot's own reason.
    why: Arc<OnceLock<String>>,
    user: String,
    service: String,
    /// Unix seconds the stream was named (just before it was dialed).
    since: u64,
    /// What the session carried so far, and as whom it logged in.
    seen: Arc<Seen>,
}

/// What the relay learns about a live session while it runs: the bytes its
/// pipe carried each way (two counters, so bounded whatever the traffic)
/// and the SSH account its client reported logging in as. Shared by the
/// slot, the pipe, the recorder and the admin pages' list.
#[derive(Debug, Default)]
pub struct Seen {
    up: AtomicU64,
    down: AtomicU64,
    account: OnceLock<String>,
}

impl Seen {
    /// Counts `n` bytes from the client to the connector.
    pub fn count_up(&self, n: u64) {
        self.up.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes from the connector to the client.
    pub fn count_down(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the SSH account the client logged in as (the `principal` of
    /// its `start` event, once stored); the first one reported stays.
    pub fn set_account(&self, account: &str) {
        let _ = self.account.set(account.to_owned());
    }
}

/// One live session as the admin pages list it (`GET /api/admin/sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveSessionView {
    /// The relay's id of the session's stream: `session terminate` takes it.
    pub stream: String,
    /// The signed-in user whose session it is.
    pub user: String,
    /// The service it goes to.
    pub service: String,
    /// The SSH account it logged in as, as its client reported it; `None`
    /// until the client reports it, and for clients that report nothing
    /// (`sallyport proxy`: OpenSSH logs in, and the relay sees only
    /// ciphertext).
    pub account: Option<String>,
    /// Unix seconds since when it is open.
    pub since: u64,
    /// Bytes from the client to the service so far (SSH ciphertext).
    pub bytes_up: u64,
    /// Bytes from the service to the client so far.
    pub bytes_down: u64,
}

/// The live sessions of one sign-in.
struct SignInSessions {
    /// Cancelled to end them all.
    ended: CancellationToken,
    /// Why, for the client, when the relay says more than "signed out"
    /// (set before `ended` is cancelled).
    why: Arc<OnceLock<String>>,
    /// How many.
    live: usize,
    /// Their user.
    user: String,
}

/// Live sessions of the relay, shared by the web routes and the admin socket.
#[derive(Default)]
pub struct LiveSessions {
    counts: Mutex<Counts>,
}

/// Why a session was not counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefused {
    #[error(
        "user {user} already has {limit} sessions open, the most allowed; close one and try again"
    )]
    User { user: String, limit: usize },
    #[error("user {user} already has {limit} sessions to service {service} open, the most allowed to one service; close one and try again")]
    Service {
        user: String,
        service: String,
        limit: usize,
    },
}

/// One counted session; dropping it gives the slot back.
pub struct SessionSlot {
    live: Arc<LiveSessions>,
    user: String,
    service: String,
    sign_in: SignInId,
    ended: CancellationToken,
    why: Arc<OnceLock<String>>,
    /// Why this session alone was ended (`session terminate`).
    own_why: Arc<OnceLock<String>>,
    /// Its stream id, once named.
    stream: Option<String>,
    /// Its bytes and account, for the admin pages.
    seen: Arc<Seen>,
}

impl SessionSlot {
    /// Names the session by the relay's id of its stream, so an admin can
    /// end it alone ([`LiveSessions::terminate`]) until the slot drops.
    pub fn name_stream(&mut self, stream: &str) {
        let mut c = self.live.lock();
        c.streams.insert(
            stream.to_owned(),
            LiveStream {
                ended: self.ended.clone(),
                why: self.own_why.clone(),
                user: self.user.clone(),
                service: self.service.clone(),
                since: sallyport_common::time::now_secs(),
                seen: self.seen.clone(),
            },
        );
        self.stream = Some(stream.to_owned());
    }

    /// What this session carried and as whom it logged in: the pipe and the
    /// recorder fill it in, the admin pages read it.
    pub fn seen(&self) -> &Arc<Seen> {
        &self.seen
    }

    /// Cancelled when the session's sign-in ends (sign-out, `user sign-out`,
    /// `user lock`, `user remove`).
    pub fn signed_out(&self) -> &CancellationToken {
        &self.ended
    }

    /// Why the sign-in was ended, when it was ended with a reason of its
    /// own (the account was locked or removed); `None` for a sign-out.
    pub fn end_reason(&self) -> Option<&str> {
        self.own_why.get().or(self.why.get()).map(String::as_str)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut c = self.live.lock();
        if let Some(stream) = &self.stream {
            c.streams.remove(stream);
        }
        decrement(&mut c.users, &self.user);
        decrement(&mut c.services, &(self.user.clone(), self.service.clone()));
        if let Some(s) = c.sign_ins.get_mut(&self.sign_in) {
            s.live = s.live.saturating_sub(1);
            if s.live == 0 {
                c.sign_ins.remove(&self.sign_in);
            }
        }
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl LiveSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more session of `user` to `service`, opened with
    /// `sign_in`, unless the user holds `max_per_user` sessions already (to
    /// all services) or `max_per_service` to this service.
    pub fn try_acquire(
        self: &Arc<Self>,
        user: &str,
        service: &str,
        sign_in: &str,
        max_per_user: usize,
        max_per_service: usize,
    ) -> Result<SessionSlot, SlotRefused> {
        let mut c = self.lock();
        if c.users.get(user).copied().unwrap_or(0) >= max_per_user {
            return Err(SlotRefused::User {
                user: user.to_owned(),
                limit: max_per_user,
            });
        }
        let key = (user.to_owned(), service.to_owned());
        if c.services.get(&key).copied().unwrap_or(0) >= max_per_service {
            return Err(SlotRefused::Service {
                user: user.to_owned(),
                service: service.to_owned(),
                limit: max_per_service,
            });
        }
        *c.users.entry(user.to_owned()).or_default() += 1;
        *c.services.entry(key).or_default() += 1;
        let entry = c
            .sign_ins
            .entry(sign_in.to_owned())
            .or_insert_with(|| SignInSessions {
                ended: CancellationToken::new(),
                why: Arc::default(),
                live: 0,
                user: user.to_owned(),
            });
        entry.live += 1;
        let ended = entry.ended.child_token();
        let why = entry.why.clone();
        Ok(SessionSlot {
            live: self.clone(),
            user: user.to_owned(),
            service: service.to_owned(),
            sign_in: sign_in.to_owned(),
            ended,
            why,
            own_why: Arc::default(),
            stream: None,
            seen: Arc::default(),
        })
    }

    /// Ends every live session opened with `sign_in`; returns how many.
    pub fn sign_out(&self, sign_in: &str) -> usize {
        let mut c = self.lock();
        match c.sign_ins.remove(sign_in) {
            Some(s) => {
                s.ended.cancel();
                s.live
            }
            None => 0,
        }
    }

    /// Ends every live session of `user`, whatever sign-in opened it (also
    /// one whose record has expired meanwhile); returns how many.
    pub fn sign_out_user(&self, user: &str) -> usize {
        self.end_user(user, None)
    }

    /// Ends every live session of `user` like [`LiveSessions::sign_out_user`],
    /// telling each client `why` (see [`SessionSlot::end_reason`]) when given.
    pub fn end_user(&self, user: &str, why: Option<&str>) -> usize {
        let mut c = self.lock();
        let mut ended = 0;
        c.sign_ins.retain(|_, s| {
            if s.user != user {
                return true;
            }
            if let Some(why) = why {
                let _ = s.why.set(why.to_owned());
            }
            s.ended.cancel();
            ended += s.live;
            false
        });
        ended
    }

    /// Ends the live session whose stream is `stream`, telling its client
    /// `why`; returns its user and service, or `None` when no live session
    /// has that stream.
    pub fn terminate(&self, stream: &str, why: &str) -> Option<(String, String)> {
        let c = self.lock();
        let s = c.streams.get(stream)?;
        let _ = s.why.set(why.to_owned());
        s.ended.cancel();
        Some((s.user.clone(), s.service.clone()))
    }

    /// Every live session that has a stream, oldest first: who, to what,
    /// since when, and what it carried so far. As many as the per-user caps
    /// let the relay hold.
    pub fn list(&self) -> Vec<LiveSessionView> {
        let c = self.lock();
        let mut out: Vec<LiveSessionView> = c
            .streams
            .iter()
            .map(|(stream, s)| LiveSessionView {
                stream: stream.clone(),
                user: s.user.clone(),
                service: s.service.clone(),
                account: s.seen.account.get().cloned(),
                since: s.since,
                bytes_up: s.seen.up.load(Ordering::Relaxed),
                bytes_down: s.seen.down.load(Ordering::Relaxed),
            })
            .collect();
        drop(c);
        out.sort_by(|a, b| (a.since, &a.stream).cmp(&(b.since, &b.stream)));
        out
    }

    /// Live sessions opened with `sign_in`.
    pub fn sessions_of_sign_in(&self, sign_in: &str) -> usize {
        self.lock().sign_ins.get(sign_in).map_or(0, |s| s.live)
    }

    /// Live sessions of `user`.
    pub fn sessions_of(&self, user: &str) -> usize {
        self.lock().users.get(user).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_user_and_service_and_come_back_on_drop() {
        let live = Arc::new(LiveSessions::default());
        let a: Vec<_> = (0..3)
            .map(|_| live.try_acquire("alice", "box", "s1", 3, 8).unwrap())
            .collect();
        assert_eq!(
            live.try_acquire("alice", "web", "s1", 3, 8).err(),
            Some(SlotRefused::User {
                user: "alice".into(),
                limit: 3
            })
        );
        // Another user is not affected.
        let b = live.try_acquire("bob", "box", "s2", 3, 1).unwrap();
        assert!(matches!(
            live.try_acquire("bob", "box", "s2", 3, 1),
            Err(SlotRefused::Service { .. })
        ));
        let _b2 = live.try_acquire("bob", "web", "s2", 3, 1).unwrap();
        drop(b);
        let _b3 = live.try_acquire("bob", "box", "s2", 3, 1).unwrap();
        drop(a);
        assert_eq!(live.sessions_of("alice"), 0);
        assert!(!live.lock().sign_ins.contains_key("s1"));
    }

    #[test]
    fn signing_out_cancels_that_sign_ins_sessions_only() {
        let live = Arc::new(LiveSessions::default());
        let one = live.try_acquire("alice", "box", "s1", 9, 8).unwrap();
        let two = live.try_acquire("alice", "box", "s2", 9, 8).unwrap();
        assert_eq!(live.sign_out("s1"), 1);
        assert!(one.signed_out().is_cancelled());
        assert!(!two.signed_out().is_cancelled());
        // The slot still counts until its pipe ends.
        assert_eq!(live.sessions_of("alice"), 2);
        drop(one);
        assert_eq!(live.sessions_of("alice"), 1);
        assert_eq!(live.sign_out("nobody"), 0);
    }

    #[test]
    fn signing_a_user_out_ends_all_their_sessions_whatever_the_sign_in() {
        let live = Arc::new(LiveSessions::default());
        // s-old's record may have expired from the store; its session lives.
        let old = live.try_acquire("alice", "box", "s-old", 9, 8).unwrap();
        let new = live.try_acquire("alice", "web", "s-new", 9, 8).unwrap();
        let bob = live.try_acquire("bob", "box", "s-bob", 9, 8).unwrap();
        assert_eq!(live.sign_out_user("alice"), 2);
        assert!(old.signed_out().is_cancelled() && new.signed_out().is_cancelled());
        assert!(!bob.signed_out().is_cancelled());
        assert_eq!(old.end_reason(), None);
    }

    #[test]
    fn ending_a_users_sessions_with_a_reason_tells_each_slot() {
        let live = Arc::new(LiveSessions::default());
        let one = live.try_acquire("alice", "box", "s1", 9, 8).unwrap();
        let bob = live.try_acquire("bob", "box", "s2", 9, 8).unwrap();
        assert_eq!(live.end_user("alice", Some("account locked")), 1);
        assert!(one.signed_out().is_cancelled());
        assert_eq!(one.end_reason(), Some("account locked"));
        assert_eq!(bob.end_reason(), None);
    }

    #[test]
    fn terminating_a_stream_ends_that_session_alone() {
        let live = Arc::new(LiveSessions::default());
        let mut one = live.try_acquire("alice", "box", "s1", 9, 8).unwrap();
        let two = live.try_acquire("alice", "box", "s1", 9, 8).unwrap();
        one.name_stream("st-1");
        assert_eq!(
            live.terminate("st-1", "ended by an admin"),
            Some(("alice".into(), "box".into()))
        );
        assert!(one.signed_out().is_cancelled());
        assert_eq!(one.end_reason(), Some("ended by an admin"));
        assert!(!two.signed_out().is_cancelled());
        drop(one);
        assert_eq!(live.terminate("st-1", "again"), None);
    }

    #[test]
    fn the_list_shows_named_sessions_with_their_bytes_and_account_until_they_end() {
        let live = Arc::new(LiveSessions::default());
        let mut one = live.try_acquire("alice", "box", "s1", 9, 8).unwrap();
        // Not yet named: not listed (it has no stream to terminate).
        let _unnamed = live.try_acquire("bob", "box", "s2", 9, 8).unwrap();
        assert!(live.list().is_empty());
        one.name_stream("st-1");
        one.seen().count_up(10);
        one.seen().count_up(5);
        one.seen().count_down(700);
        let listed = live.list();
        assert_eq!(listed.len(), 1);
        let v = &listed[0];
        assert_eq!(
            (v.stream.as_str(), v.user.as_str(), v.service.as_str()),
            ("st-1", "alice", "box")
        );
        assert_eq!((v.bytes_up, v.bytes_down), (15, 700));
        assert_eq!(v.account, None);
        assert!(v.since > 0);
        one.seen().set_account("root");
        one.seen().set_account("someone-else");
        assert_eq!(live.list()[0].account.as_deref(), Some("root"));
        drop(one);
        assert!(live.list().is_empty());
    }
}
