//! The relay's store on a real PostgreSQL 15 (tests/src/postgres.rs): every
//! record kind round trip, the sled engine's rules for tokens and grants,
//! races between two relays (two `PgStore`s, each with its own pool) on the
//! same token, TOTP step and first use, schema migrations at start, and an
//! outage of PostgreSQL.

use std::collections::BTreeMap;

use sallyport_common::time::now_secs;
use sallyport_proto::tunnel::{ServiceInfo, ServiceKind};
use sallyport_relay::storage::{
    ConnectorRecord, ConnectorState, DeviceRecord, Failure, PgStore, SignInRecord, StoreError,
    TokenRecord, TokenRefusal, UserRecord, MAX_FAILURES_KEPT, MIGRATIONS,
};
use sallyport_tests::postgres::Postgres;
use sallyport_tests::PATIENCE;

/// Rounds of each two-relay race.
const RACE_ROUNDS: usize = 50;

/// A fresh cluster with one database, `store`.
fn cluster() -> (tempfile::TempDir, Postgres, String) {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let url = pg.create_database("store");
    (dir, pg, url)
}

fn token(connector: &str, expires: u64, replace: bool) -> TokenRecord {
    TokenRecord {
        connector: connector.into(),
        expires,
        used: false,
        replace,
    }
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        groups: vec!["ops".into()],
        created: now_secs(),
        totp_secret: None,
        totp_pending: None,
        locked: None,
        sso: None,
    }
}

fn service(name: &str) -> ServiceInfo {
    ServiceInfo {
        name: name.into(),
        kind: ServiceKind::Ssh,
        host_keys: vec![],
    }
}

async fn redeemed(store: &PgStore, secret: &str) -> Result<String, TokenRefusal> {
    store
        .redeem_token(secret)
        .await
        .unwrap()
        .map(|t| t.connector)
}

/// The harness itself: a fresh cluster, a database in it, SQL through psql,
/// a restart on the same port, and sessions ended by application name.
#[test]
fn the_harness_starts_postgres_and_runs_sql() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = Postgres::start(dir.path());
    let url = pg.create_database("harness");
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/harness", pg.port)
    );
    pg.psql(
        "harness",
        "CREATE TABLE t (n int); INSERT INTO t VALUES (41), (1);",
    );
    assert_eq!(pg.psql("harness", "SELECT sum(n) FROM t").trim(), "42");
    assert_eq!(
        pg.psql("harness", "SHOW max_connections").trim(),
        "200",
        "the cluster is configured for several relays' pools"
    );

    pg.stop();
    assert!(!pg.try_psql("harness", "SELECT 1").status.success());
    pg.start_again();
    assert_eq!(pg.psql("harness", "SELECT sum(n) FROM t").trim(), "42");
    assert_eq!(pg.terminate_backends("harness", "nobody-%"), 0);
}

/// Users, sign-ins, connectors, devices, meta, TOTP steps, failures and
/// first uses come back as they were stored, with the sled engine's rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_kind_round_trips() {
    let (_dir, pg, url) = cluster();
    let store = PgStore::connect(&url).await.unwrap();

    // users
    assert!(store.user("alice").await.unwrap().is_none());
    let mut alice = user("alice");
    alice.sso = Some(sallyport_relay::storage::SsoLink {
        provider: "corp".into(),
        subject: "a-1".into(),
    });
    store.put_user(&alice).await.unwrap();
    store.put_user(&user("bob")).await.unwrap();
    let got = store.user("alice").await.unwrap().unwrap();
    assert_eq!(got.groups, vec!["ops".to_string()]);
    assert_eq!(got.sso, alice.sso);
    alice.locked = Some(7);
    store.put_user(&alice).await.unwrap();
    assert_eq!(store.user("alice").await.unwrap().unwrap().locked, Some(7));
    let names: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(store.claim_totp_step("bob", 100).await.unwrap());
    assert!(store.remove_user("bob").await.unwrap());
    assert!(!store.remove_user("bob").await.unwrap());
    assert!(
        store.claim_totp_step("bob", 50).await.unwrap(),
        "a removed user's used codes are forgotten with them"
    );

    // sign-ins
    let now = now_secs();
    let sign_in = |created: u64, expires: u64| SignInRecord {
        user: "alice".into(),
        created,
        expires,
        second_factor: true,
        ip: Some("192.0.2.7".parse().unwrap()),
    };
    store
        .put_sign_in("token-new", &sign_in(now, now + 600))
        .await
        .unwrap();
    store
        .put_sign_in("token-old", &sign_in(now - 10, now + 600))
        .await
        .unwrap();
    store
        .put_sign_in("token-gone", &sign_in(now - 20, now - 1))
        .await
        .unwrap();
    let s = store.sign_in("token-new").await.unwrap().unwrap();
    assert!(s.second_factor);
    assert_eq!(s.ip, Some("192.0.2.7".parse().unwrap()));
    assert!(store.sign_in("token-gone").await.unwrap().is_none());
    assert!(store.sign_in("never").await.unwrap().is_none());
    let of = store.sign_ins_of("alice").await.unwrap();
    assert_eq!(of.len(), 2, "the expired sign-in is not listed");
    assert_eq!(of[0].1.created, now - 10, "oldest first");
    assert_eq!(of[0].0.len(), 64, "ids are SHA-256 hex, not tokens");
    assert!(store.remove_sign_in_by_id(&of[0].0).await.unwrap());
    assert!(!store.remove_sign_in_by_id(&of[0].0).await.unwrap());
    assert_eq!(
        store
            .remove_sign_in("token-new")
            .await
            .unwrap()
            .unwrap()
            .created,
        now
    );
    assert!(store.remove_sign_in("token-new").await.unwrap().is_none());
    assert!(store.sign_ins_of("alice").await.unwrap().is_empty());
    assert_eq!(
        pg.psql("store", "SELECT count(*) FROM sign_ins").trim(),
        "0"
    );

    // connectors
    store
        .put_connector(&ConnectorRecord::pending("c2", vec!["web".into()]))
        .await
        .unwrap();
    store.enrol_connector("c1", "cert-1").await.unwrap();
    let c1 = store.connector_by_cert("cert-1").await.unwrap().unwrap();
    assert_eq!(
        (c1.name.as_str(), c1.state),
        ("c1", ConnectorState::Enrolled)
    );
    store.enrol_connector("c1", "cert-2").await.unwrap();
    assert!(
        store.connector_by_cert("cert-1").await.unwrap().is_none(),
        "a new certificate replaces the old one"
    );
    assert_eq!(
        store.connector("c1").await.unwrap().unwrap().cert_sha256,
        Some("cert-2".into())
    );
    let names: Vec<String> = store
        .connectors()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["c1", "c2"]);
    store
        .touch_connector("c1", Some(&[service("db"), service("web")]))
        .await
        .unwrap();
    store.touch_connector("c1", None).await.unwrap();
    let c1 = store.connector("c1").await.unwrap().unwrap();
    assert!(c1.last_seen.is_some());
    assert_eq!(
        c1.services.len(),
        2,
        "a heartbeat without services keeps them"
    );
    assert!(
        !store.service_known("web").await.unwrap(),
        "announced is not granted"
    );
    let c1 = store.set_grant("c1", "web", true).await.unwrap().unwrap();
    assert_eq!(c1.granted, Some(vec!["web".into()]));
    let c1 = store.set_grant("c1", "db", true).await.unwrap().unwrap();
    assert_eq!(c1.granted, Some(vec!["db".into(), "web".into()]), "sorted");
    assert!(store.service_known("web").await.unwrap());
    assert!(
        !store.service_known("we").await.unwrap(),
        "whole names only"
    );
    let c1 = store.set_grant("c1", "web", false).await.unwrap().unwrap();
    assert_eq!(c1.granted, Some(vec!["db".into()]));
    assert!(!store.service_known("web").await.unwrap());
    assert!(store
        .set_grant("nobody", "web", true)
        .await
        .unwrap()
        .is_none());
    store.set_grant("c2", "other", true).await.unwrap();
    assert!(
        !store.service_known("other").await.unwrap(),
        "a pending connector's grants do not make a service known"
    );

    // devices
    let device = |name: &str, cert: &str, expires: u64, revoked: bool| DeviceRecord {
        name: name.into(),
        cert_sha256: cert.into(),
        attributes: BTreeMap::from([("os".to_string(), "linux".to_string())]),
        created: now,
        expires,
        revoked,
    };
    store
        .put_device(&device("laptop", "dcert-1", now + 600, false))
        .await
        .unwrap();
    store
        .put_device(&device("old", "dcert-2", now - 1, false))
        .await
        .unwrap();
    store
        .put_device(&device("lost", "dcert-3", now + 600, true))
        .await
        .unwrap();
    let d = store.device_by_cert("dcert-1").await.unwrap().unwrap();
    assert_eq!(
        (d.name.as_str(), d.attributes["os"].as_str()),
        ("laptop", "linux")
    );
    assert!(
        store.device_by_cert("dcert-2").await.unwrap().is_none(),
        "expired"
    );
    assert!(
        store.device_by_cert("dcert-3").await.unwrap().is_none(),
        "revoked"
    );
    store
        .put_device(&device("laptop", "dcert-4", now + 600, false))
        .await
        .unwrap();
    assert!(
        store.device_by_cert("dcert-1").await.unwrap().is_none(),
        "the old certificate no longer names the reissued device"
    );
    assert_eq!(
        store.device("laptop").await.unwrap().unwrap().cert_sha256,
        "dcert-4"
    );
    let names: Vec<String> = store
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["laptop", "lost", "old"]);

    // meta
    assert!(store.meta("META_X").await.unwrap().is_none());
    store.set_meta("META_X", "one").await.unwrap();
    store.set_meta("META_X", "two").await.unwrap();
    assert_eq!(store.meta("META_X").await.unwrap(), Some("two".into()));

    // second factor
    assert!(store.claim_totp_step("alice", 1000).await.unwrap());
    assert!(
        !store.claim_totp_step("alice", 1000).await.unwrap(),
        "replay"
    );
    assert!(!store.claim_totp_step("alice", 999).await.unwrap(), "older");
    assert!(store.claim_totp_step("alice", 1001).await.unwrap());
    store.reset_totp_steps("alice").await.unwrap();
    assert!(store.claim_totp_step("alice", 5).await.unwrap());

    // failed sign-ins: the newest MAX_FAILURES_KEPT, in order
    for at in 0..(MAX_FAILURES_KEPT as u64 + 5) {
        store
            .record_failed_sign_in(
                "alice",
                Failure {
                    at,
                    net: "192.0.2.0/24".into(),
                    code: at % 2 == 0,
                },
            )
            .await
            .unwrap();
    }
    let kept = MAX_FAILURES_KEPT as u32;
    assert_eq!(
        store
            .failed_sign_ins_since("alice", 0, |_| true)
            .await
            .unwrap(),
        kept
    );
    assert_eq!(
        store
            .failed_sign_ins_since("alice", MAX_FAILURES_KEPT as u64, |_| true)
            .await
            .unwrap(),
        5,
        "the oldest were dropped, the newest kept"
    );
    assert_eq!(
        store
            .failed_sign_ins_since("alice", 0, |f| f.code)
            .await
            .unwrap(),
        kept / 2
    );
    assert_eq!(
        store
            .failed_sign_ins_since("carol", 0, |_| true)
            .await
            .unwrap(),
        0
    );

    // first uses
    assert!(store
        .first_use("alice", "net:192.0.2.0/24")
        .await
        .unwrap()
        .is_none());
    store
        .note_use("alice", "net:192.0.2.0/24", 10)
        .await
        .unwrap();
    store
        .note_use("alice", "net:192.0.2.0/24", 20)
        .await
        .unwrap();
    assert_eq!(
        store.first_use("alice", "net:192.0.2.0/24").await.unwrap(),
        Some(10)
    );
    assert!(store
        .first_use("alice", "dev:laptop")
        .await
        .unwrap()
        .is_none());
}

/// The relay's own checks, whatever a connector checked before asking
/// (the sled engine's unit test, on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_single_use_expire_and_die_with_their_connector() {
    let (_dir, _pg, url) = cluster();
    let store = PgStore::connect(&url).await.unwrap();
    let later = now_secs() + 600;

    store
        .put_token("fresh", &token("c1", later, false))
        .await
        .unwrap();
    assert_eq!(
        store.check_token("fresh").await.unwrap().unwrap().connector,
        "c1"
    );
    assert_eq!(redeemed(&store, "fresh").await, Ok("c1".to_string()));
    assert_eq!(redeemed(&store, "fresh").await, Err(TokenRefusal::Used));
    assert_eq!(
        store.check_token("fresh").await.unwrap(),
        Err(TokenRefusal::Used)
    );

    store
        .put_token("stale", &token("c2", now_secs().saturating_sub(1), false))
        .await
        .unwrap();
    assert_eq!(redeemed(&store, "stale").await, Err(TokenRefusal::Expired));
    assert_eq!(
        redeemed(&store, "never issued").await,
        Err(TokenRefusal::Unknown)
    );

    store.enrol_connector("c3", "cert-hash").await.unwrap();
    let mut c3 = store.connector("c3").await.unwrap().unwrap();
    c3.state = ConnectorState::Revoked;
    store.put_connector(&c3).await.unwrap();
    store
        .put_token("for-revoked", &token("c3", later, false))
        .await
        .unwrap();
    assert_eq!(
        redeemed(&store, "for-revoked").await,
        Err(TokenRefusal::Revoked("c3".into()))
    );
    store
        .put_token("replacing-revoked", &token("c3", later, true))
        .await
        .unwrap();
    assert_eq!(
        redeemed(&store, "replacing-revoked").await,
        Ok("c3".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_token_withdraws_the_unused_ones_and_cannot_displace_an_enrolled_connector() {
    let (_dir, _pg, url) = cluster();
    let store = PgStore::connect(&url).await.unwrap();
    let rec = |replace| token("c5", now_secs() + 600, replace);
    assert_eq!(store.issue_token("first", &rec(false)).await.unwrap(), 0);
    assert_eq!(store.issue_token("second", &rec(false)).await.unwrap(), 1);
    assert_eq!(redeemed(&store, "first").await, Err(TokenRefusal::Unknown));
    assert_eq!(redeemed(&store, "second").await, Ok("c5".into()));
    store.enrol_connector("c5", "cert-1").await.unwrap();

    // Written straight to the store (the admin command refuses to issue
    // it): a plain token for an enrolled name does not enrol.
    store
        .put_token("sneaky", &token("c5", now_secs() + 600, false))
        .await
        .unwrap();
    assert_eq!(
        redeemed(&store, "sneaky").await,
        Err(TokenRefusal::AlreadyEnrolled("c5".into()))
    );
    assert_eq!(
        store.issue_token("replacing", &rec(true)).await.unwrap(),
        1,
        "the unused sneaky token is withdrawn, the used one kept"
    );
    assert!(redeemed(&store, "replacing").await.is_ok());
    assert_eq!(redeemed(&store, "second").await, Err(TokenRefusal::Used));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_never_undo_a_revocation() {
    let (_dir, _pg, url) = cluster();
    let store = PgStore::connect(&url).await.unwrap();
    store.enrol_connector("c1", "cert-hash").await.unwrap();
    let mut rec = store.connector("c1").await.unwrap().unwrap();
    rec.state = ConnectorState::Revoked;
    store.put_connector(&rec).await.unwrap();
    store.touch_connector("c1", Some(&[])).await.unwrap();
    store.set_grant("c1", "web", true).await.unwrap();
    let after = store.connector("c1").await.unwrap().unwrap();
    assert_eq!(after.state, ConnectorState::Revoked);
    assert!(after.last_seen.is_some());
    assert_eq!(
        store
            .connector_by_cert("cert-hash")
            .await
            .unwrap()
            .unwrap()
            .state,
        ConnectorState::Revoked
    );
}

/// Records copied from an old sled store (no grants, service names in
/// another case) are fixed when a relay connects, as sled does at open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_connector_records_are_upgraded_at_connect() {
    let (_dir, _pg, url) = cluster();
    let store = PgStore::connect(&url).await.unwrap();
    store.enrol_connector("old", "cert").await.unwrap();
    let mut rec = store.connector("old").await.unwrap().unwrap();
    rec.granted = None;
    rec.services = vec![service("Web1")];
    store.put_connector(&rec).await.unwrap();
    store.enrol_connector("mixed", "cert-2").await.unwrap();
    let mut rec = store.connector("mixed").await.unwrap().unwrap();
    rec.granted = Some(vec!["Prod-DB".into(), "prod-db".into(), "web".into()]);
    store.put_connector(&rec).await.unwrap();

    let again = PgStore::connect(&url).await.unwrap();
    let old = again.connector("old").await.unwrap().unwrap();
    assert_eq!(old.granted, Some(vec!["web1".to_string()]));
    assert!(old.grants_migrated);
    assert_eq!(old.services[0].name, "web1");
    let mixed = again.connector("mixed").await.unwrap().unwrap();
    assert_eq!(
        mixed.granted,
        Some(vec!["prod-db".to_string(), "web".to_string()])
    );
    assert!(again.service_known("prod-db").await.unwrap());
}

/// Two relays (two stores, two pools) redeem the same token at the same
/// moment, round after round: exactly one enrols, the other is told the
/// token was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_redeeming_one_token_exactly_one_succeeds() {
    let (_dir, _pg, url) = cluster();
    let a = PgStore::connect(&url).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    for round in 0..RACE_ROUNDS {
        let secret = format!("secret-{round}");
        a.issue_token(
            &secret,
            &token(&format!("c{round}"), now_secs() + 600, false),
        )
        .await
        .unwrap();
        let (x, y) = tokio::join!(
            tokio::spawn({
                let (a, s) = (a.clone(), secret.clone());
                async move { a.redeem_token(&s).await.unwrap() }
            }),
            tokio::spawn({
                let (b, s) = (b.clone(), secret.clone());
                async move { b.redeem_token(&s).await.unwrap() }
            }),
        );
        let results = [x.unwrap(), y.unwrap()];
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert!(
            results.contains(&Err(TokenRefusal::Used)),
            "round {round}: {results:?}"
        );
    }
}

/// The same one-time code used at two relays at once: one sign-in gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_claiming_one_totp_step_exactly_one_succeeds() {
    let (_dir, _pg, url) = cluster();
    let a = PgStore::connect(&url).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    for round in 0..RACE_ROUNDS {
        // A new user every other round (no row yet: both insert), else a
        // later step of the same user (both update).
        let user = format!("u{}", round / 2);
        let step = 1000 + round as u64;
        let (x, y) = tokio::join!(
            tokio::spawn({
                let (a, u) = (a.clone(), user.clone());
                async move { a.claim_totp_step(&u, step).await.unwrap() }
            }),
            tokio::spawn({
                let (b, u) = (b.clone(), user.clone());
                async move { b.claim_totp_step(&u, step).await.unwrap() }
            }),
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x ^ y, "round {round}: a claimed {x}, b claimed {y}");
    }
}

/// Two relays noting the first use of the same network at once: one time
/// is kept, the same for both, and later notes do not move it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn note_use_keeps_the_first_time_under_a_race() {
    let (_dir, _pg, url) = cluster();
    let a = PgStore::connect(&url).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    for round in 0..RACE_ROUNDS {
        let what = format!("net:10.{round}.0.0/16");
        let (x, y) = tokio::join!(
            tokio::spawn({
                let (a, w) = (a.clone(), what.clone());
                async move { a.note_use("alice", &w, 100).await.unwrap() }
            }),
            tokio::spawn({
                let (b, w) = (b.clone(), what.clone());
                async move { b.note_use("alice", &w, 200).await.unwrap() }
            }),
        );
        x.unwrap();
        y.unwrap();
        let seen_a = a.first_use("alice", &what).await.unwrap();
        let seen_b = b.first_use("alice", &what).await.unwrap();
        assert!(
            seen_a == Some(100) || seen_a == Some(200),
            "round {round}: {seen_a:?}"
        );
        assert_eq!(seen_a, seen_b, "round {round}");
        a.note_use("alice", &what, 300).await.unwrap();
        assert_eq!(a.first_use("alice", &what).await.unwrap(), seen_a);
    }
}

/// Two relays issuing a token for the same connector at once: exactly one
/// unused token is left, so only one can enrol it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_issuing_tokens_leave_one_usable() {
    let (_dir, pg, url) = cluster();
    let a = PgStore::connect(&url).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    for round in 0..RACE_ROUNDS {
        let connector = format!("c{round}");
        let rec = token(&connector, now_secs() + 600, false);
        let (x, y) = tokio::join!(
            tokio::spawn({
                let (a, r) = (a.clone(), rec.clone());
                async move {
                    a.issue_token(&format!("one-{}", r.connector), &r)
                        .await
                        .unwrap()
                }
            }),
            tokio::spawn({
                let (b, r) = (b.clone(), rec.clone());
                async move {
                    b.issue_token(&format!("two-{}", r.connector), &r)
                        .await
                        .unwrap()
                }
            }),
        );
        let withdrawn = x.unwrap() + y.unwrap();
        assert_eq!(withdrawn, 1, "round {round}: the second withdrew the first");
        let unused = pg.psql(
            "store",
            &format!(
                "SELECT count(*) FROM tokens WHERE connector = '{connector}' \
                 AND NOT (record->>'used')::boolean"
            ),
        );
        assert_eq!(unused.trim(), "1", "round {round}");
    }
}

/// Relays starting at once against a new database: each migration is
/// applied once and recorded once; every relay starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_starting_at_once_apply_each_migration_once() {
    let (_dir, pg, url) = cluster();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let recorded = pg.psql(
        "store",
        "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version",
    );
    let expected: String = MIGRATIONS
        .iter()
        .map(|m| format!("{}|1\n", m.version))
        .collect();
    assert_eq!(recorded, expected);
    let names = pg.psql(
        "store",
        "SELECT name FROM schema_migrations ORDER BY version",
    );
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        MIGRATIONS.iter().map(|m| m.name).collect::<Vec<_>>()
    );
}

/// A database migrated by a newer relay is refused with a clear error
/// rather than used with a schema this relay does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_relay_is_refused() {
    let (_dir, pg, url) = cluster();
    PgStore::connect(&url).await.unwrap();
    pg.psql(
        "store",
        "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from the future')",
    );
    let err = PgStore::connect(&url).await.unwrap_err();
    let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 9999, known: k } if k == known),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("9999") && text.contains("newer than this sallyport-relay"),
        "{text}"
    );
}

/// PostgreSQL stops: calls fail with `Unavailable` (which the HTTP layer
/// answers with 503) instead of hanging; it starts again: the same store
/// works again by itself, on every connection of its pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_postgres_is_unavailable_and_heals_by_itself() {
    let (_dir, mut pg, url) = cluster();
    let store = PgStore::connect(&url).await.unwrap();
    store.put_user(&user("alice")).await.unwrap();
    // Fill the pool with connections that will all be broken.
    let warm: Vec<_> = (0..8)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.users().await.unwrap() })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }

    pg.stop();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let err = store.user("alice").await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(
            err.to_string().contains("PostgreSQL is unreachable"),
            "{err}"
        );
        eprintln!("failed in {:?}: {err}", started.elapsed());
    }
    let err = store.claim_totp_step("alice", 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = PgStore::connect(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    pg.start_again();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match store.user("alice").await {
            Ok(found) => {
                assert!(found.is_some());
                break;
            }
            Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    }
    // Every connection the pool hands out now works.
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.note_use("alice", &format!("net:{i}"), 1).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

/// A statement PostgreSQL refuses is a database error, not an outage, and
/// its text says what PostgreSQL said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_statement_is_not_an_outage() {
    let (_dir, pg, url) = cluster();
    let store = PgStore::connect(&url).await.unwrap();
    pg.psql(
        "store",
        "ALTER TABLE meta ADD CONSTRAINT short CHECK (length(value) < 5)",
    );
    let err = store.set_meta("META_X", "too long").await.unwrap_err();
    assert!(matches!(err, StoreError::Postgres(_)), "{err:?}");
    assert!(err.to_string().contains("short"), "{err}");
}

/// The relay's sessions carry its application name; when PostgreSQL ends
/// them (an admin, a failover), the store opens new ones by itself.
/// `sslmode=disable` connects without TLS; a URL that asks for TLS from a
/// server without it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_are_replaced_and_sslmode_is_honoured() {
    let (_dir, pg, url) = cluster();
    let store = PgStore::connect(&format!("{url}?sslmode=disable"))
        .await
        .unwrap();
    store.set_meta("META_X", "1").await.unwrap();
    let ended = pg.terminate_backends("store", "sallyport-relay");
    assert!(ended >= 1, "the relay's sessions are named sallyport-relay");
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match store.meta("META_X").await {
            Ok(v) => {
                assert_eq!(v, Some("1".into()));
                break;
            }
            Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    }

    let err = PgStore::connect(&format!("{url}?sslmode=require"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    let err = PgStore::connect("postgres://[nonsense").await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
}
