//! The audit chain in PostgreSQL (relay/src/audit/pg.rs) on a real
//! PostgreSQL 15: several relays (each a `PgAuditLog` with its own pool)
//! appending to one chain, client batches stored once, commits whose
//! answer was lost, retention; and how many appends a second it takes.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sallyport_proto::client::SessionEvent;
use sallyport_relay::test_hooks::audit::{
    AuditLog, Event, Filter, PgAuditLog, Record, Retention, AUDIT_BATCH_MAX,
};
use sallyport_tests::postgres::Postgres;

/// Connections in each relay's pool.
const POOL_SIZE: usize = 4;

/// A pool as a relay has one; its sessions are named `application` (see
/// [`Postgres::terminate_backends`]).
fn pool(url: &str, application: &str) -> Pool {
    let mut config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    config.application_name(application);
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .build()
        .expect("a pool")
}

/// A cluster with a database `name` holding the audit schema.
async fn database(pg: &Postgres, name: &str) -> String {
    let url = pg.create_database(name);
    PgAuditLog::apply_schema(&pool(&url, "schema"))
        .await
        .expect("the audit schema applies");
    url
}

/// An event that names itself, so the test can find it in the chain.
fn named(name: String) -> Event {
    Event::ConnectorRevoked {
        connector: name,
        by: None,
    }
}

fn client(session: &str, seq: u64) -> Event {
    Event::Client {
        session: session.into(),
        seq,
        t_ms: seq * 10,
        user: "alice".into(),
        service: "web1".into(),
        stream: format!("stream-{session}"),
        event: SessionEvent::Resize { cols: 80, rows: 24 },
    }
}

/// Every stored event's text, by seq, read with psql.
fn stored_events(pg: &Postgres, db: &str) -> Vec<(u64, String)> {
    pg.psql(db, "SELECT seq, event FROM audit_events ORDER BY seq")
        .lines()
        .map(|line| {
            let (seq, event) = line.split_once('|').expect("seq|event");
            (seq.parse().expect("a seq"), event.to_owned())
        })
        .collect()
}

/// The stored events are numbered 1..=n without a gap, each event text at
/// most once; returns them by text.
fn contiguous_and_unique(pg: &Postgres, db: &str) -> HashMap<String, u64> {
    let events = stored_events(pg, db);
    let mut by_text = HashMap::new();
    for (i, (seq, event)) in events.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "seqs are contiguous from 1");
        assert!(
            by_text.insert(event.clone(), *seq).is_none(),
            "event {event} is stored twice"
        );
    }
    by_text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_round_trips_verifies_and_notices_changes() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let url = database(&pg, "chain").await;
    let log = PgAuditLog::new(pool(&url, "relay-a"));
    assert_eq!(log.verify().await.unwrap(), 0);
    assert_eq!(log.tip().await.unwrap(), None);
    let mut appended = Vec::new();
    for n in 1..=5 {
        let r = log.append(&named(format!("c{n}"))).await.unwrap();
        assert_eq!(r.seq, n);
        appended.push(r);
    }
    assert_eq!(
        appended[0].prev,
        "0".repeat(64),
        "the first chains to genesis"
    );
    assert_eq!(appended[1].prev, appended[0].hash);
    assert_eq!(log.verify().await.unwrap(), 5);
    assert_eq!(
        log.tip().await.unwrap(),
        Some((5, appended[4].hash.clone()))
    );
    // Read back exactly as acknowledged.
    assert_eq!(log.get(3).await.unwrap().as_ref(), Some(&appended[2]));
    assert_eq!(log.get(6).await.unwrap(), None);
    assert_eq!(log.list(&Filter::default(), 100).await.unwrap(), appended);
    assert_eq!(
        log.list_last(&Filter::default(), 2).await.unwrap(),
        appended[3..]
    );
    assert_eq!(
        log.start_of_last(&Filter::default(), 2).await.unwrap(),
        Some(4)
    );
    let mut seen = Vec::new();
    let from_2 = Filter {
        after_seq: Some(1),
        ..Default::default()
    };
    log.scan(&from_2, |r| {
        seen.push(r.seq);
        if r.seq == 4 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await
    .unwrap();
    assert_eq!(seen, [2, 3, 4]);
    // The event is stored as the canonical JSON text that was hashed.
    let text = pg.psql("chain", "SELECT event FROM audit_events WHERE seq = 3");
    assert_eq!(
        text.trim(),
        serde_json::to_string(&appended[2].event).unwrap()
    );

    // Client events: once each, only for their owner, joined to their stream.
    let batch: Vec<Event> = (1..=3).map(|n| client("s1", n)).collect();
    assert_eq!(
        log.append_client_events("alice", &batch, 0)
            .await
            .unwrap()
            .stored
            .len(),
        3
    );
    let again: Vec<Event> = (2..=4).map(|n| client("s1", n)).collect();
    assert_eq!(
        log.append_client_events("alice", &again, 0)
            .await
            .unwrap()
            .stored
            .len(),
        3,
        "resent events are acknowledged, not stored again"
    );
    assert!(log
        .append_client_events("mallory", &[client("s1", 5)], 0)
        .await
        .unwrap()
        .stored
        .is_empty());
    assert_eq!(log.verify().await.unwrap(), 9);
    let session = Filter {
        session: Some("s1".into()),
        ..Default::default()
    };
    assert_eq!(log.list(&session, 100).await.unwrap().len(), 4);

    // Changed: the event edited, the chain left as it was.
    let original = text.trim().to_owned();
    pg.psql(
        "chain",
        r#"UPDATE audit_events SET event = '{"connector":"x","type":"connector_revoked"}' WHERE seq = 3"#,
    );
    let err = log.verify().await.unwrap_err().to_string();
    assert!(err.contains("event 3 was changed"), "{err}");
    pg.psql(
        "chain",
        &format!(
            "UPDATE audit_events SET event = '{}' WHERE seq = 3",
            original.replace('\'', "''")
        ),
    );
    assert_eq!(log.verify().await.unwrap(), 9);
    // Removed.
    pg.psql(
        "chain",
        "CREATE TABLE kept AS SELECT * FROM audit_events WHERE seq = 3; \
         DELETE FROM audit_events WHERE seq = 3",
    );
    let err = log.verify().await.unwrap_err().to_string();
    assert!(err.contains("event 4 does not follow event 2"), "{err}");
    pg.psql("chain", "INSERT INTO audit_events SELECT * FROM kept");
    assert_eq!(log.verify().await.unwrap(), 9);
    // Reordered: 2 and 3 swapped, with their sequence numbers rewritten.
    let swap = "UPDATE audit_events SET seq = -seq WHERE seq IN (2, 3); \
                UPDATE audit_events SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END \
                WHERE seq IN (-2, -3)";
    pg.psql("chain", swap);
    let err = log.verify().await.unwrap_err().to_string();
    assert!(err.contains("event 2 was changed"), "{err}");
    pg.psql("chain", swap);
    assert_eq!(log.verify().await.unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_chain_copied_verifies_to_the_same_tip() {
    let dir = tempfile::tempdir().unwrap();
    let store = sallyport_relay::Store::open(dir.path()).unwrap();
    let sled = AuditLog::open(&store).unwrap();
    for n in 1..=5 {
        sled.append(&named(format!("c{n}"))).await.unwrap();
    }
    let batch: Vec<Event> = (1..=3).map(|n| client("s1", n)).collect();
    sled.append_client_events("alice", batch, 0).await.unwrap();
    sled.append(&Event::StreamOpened {
        stream: "stream-s1".into(),
        service: "web1".into(),
        user: "alice".into(),
        connector: "c1".into(),
        client: "127.0.0.1:1".into(),
    })
    .await
    .unwrap();
    let mut records: Vec<Record> = Vec::new();
    tokio::task::block_in_place(|| {
        sled.scan_blocking(&Filter::default(), |r| {
            records.push(r);
            ControlFlow::Continue(())
        })
    })
    .unwrap();

    let pg = Postgres::start(dir.path());
    let url = database(&pg, "copied").await;
    let log = PgAuditLog::new(pool(&url, "migrate"));
    // Page by page, as `store migrate` copies.
    for page in records.chunks(4) {
        log.import(page).await.unwrap();
    }
    assert_eq!(log.verify().await.unwrap(), sled.verify().await.unwrap());
    assert_eq!(log.tip().await.unwrap(), sled.tip().await.unwrap());
    assert_eq!(log.list(&Filter::default(), 100).await.unwrap(), records);
    // A page that does not follow is refused.
    assert!(log.import(&records[..1]).await.is_err());
    // The copied client events are still stored once; new events chain on.
    let r = log
        .append_client_events("alice", &[client("s1", 3), client("s1", 4)], 0)
        .await
        .unwrap();
    assert_eq!(r.stored.len(), 2);
    assert_eq!(log.verify().await.unwrap(), records.len() as u64 + 1);
    assert_eq!(
        pg.psql("copied", "SELECT count(*) FROM audit_client_keys")
            .trim(),
        "4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_appending_at_once_make_one_chain() {
    const TASKS_PER_RELAY: usize = 8;
    const EVENTS_PER_TASK: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let url = database(&pg, "three").await;
    let relays: Vec<PgAuditLog> = ["relay-a", "relay-b", "relay-c"]
        .iter()
        .map(|name| PgAuditLog::new(pool(&url, name)))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (r, log) in relays.iter().enumerate() {
        for t in 0..TASKS_PER_RELAY {
            let log = log.clone();
            tasks.spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..EVENTS_PER_TASK {
                    let record = log
                        .append(&named(format!("r{r}-t{t}-n{n}")))
                        .await
                        .expect("appended");
                    acknowledged.push(record);
                }
                acknowledged
            });
        }
    }
    let mut acknowledged: Vec<Record> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        acknowledged.extend(done.unwrap());
    }
    let total = relays.len() * TASKS_PER_RELAY * EVENTS_PER_TASK;
    assert_eq!(acknowledged.len(), total);
    let stored = contiguous_and_unique(&pg, "three");
    assert_eq!(stored.len(), total);
    for r in &acknowledged {
        let text = serde_json::to_string(&r.event).unwrap();
        assert_eq!(
            stored.get(&text),
            Some(&r.seq),
            "{text} stored as acknowledged"
        );
    }
    for log in &relays {
        assert_eq!(log.verify().await.unwrap(), total as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_batch_through_two_relays_is_stored_once() {
    const SESSIONS: u64 = 12;
    const EVENTS_PER_BATCH: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let url = database(&pg, "twice").await;
    let a = PgAuditLog::new(pool(&url, "relay-a"));
    let b = PgAuditLog::new(pool(&url, "relay-b"));
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..SESSIONS {
        let session = format!("s{s}");
        let batch: Vec<Event> = (1..=EVENTS_PER_BATCH)
            .map(|n| client(&session, n))
            .collect();
        for log in [a.clone(), b.clone()] {
            let batch = batch.clone();
            tasks.spawn(async move { log.append_client_events("alice", &batch, 0).await });
        }
    }
    while let Some(done) = tasks.join_next().await {
        let done = done.unwrap().expect("stored");
        assert_eq!(
            done.stored.len() as u64,
            EVENTS_PER_BATCH,
            "both relays acknowledge the whole batch"
        );
        assert!(done.refused.is_none());
    }
    let stored = contiguous_and_unique(&pg, "twice");
    assert_eq!(stored.len() as u64, SESSIONS * EVENTS_PER_BATCH);
    assert_eq!(a.verify().await.unwrap(), SESSIONS * EVENTS_PER_BATCH);
    assert_eq!(
        pg.psql("twice", "SELECT count(*) FROM audit_client_keys")
            .trim(),
        (SESSIONS * EVENTS_PER_BATCH).to_string()
    );
    // The budget counted each stored event once, through either relay.
    let counts = pg.psql(
        "twice",
        "SELECT DISTINCT record::jsonb ->> 'control_events' FROM audit_client_sessions",
    );
    assert_eq!(counts.trim(), EVENTS_PER_BATCH.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_connection_is_cut_loses_and_duplicates_nothing() {
    /// Times the writer's connections are ended while it appends.
    const CUTS: usize = 12;
    const APPENDERS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let pg = Arc::new(Postgres::start(dir.path()));
    let url = database(&pg, "cut").await;
    let log = PgAuditLog::new(pool(&url, "relay-cut"));
    let other = PgAuditLog::new(pool(&url, "relay-other"));
    let cutting = Arc::new(AtomicBool::new(true));
    let cuts = Arc::new(AtomicUsize::new(0));
    let mut appenders = tokio::task::JoinSet::new();
    for t in 0..APPENDERS {
        // One of them through a relay whose connections are left alone.
        let log = if t == 0 { other.clone() } else { log.clone() };
        let cutting = cutting.clone();
        appenders.spawn(async move {
            let (mut acknowledged, mut failed) = (Vec::new(), 0);
            let mut n = 0;
            while cutting.load(Ordering::SeqCst) || n < 20 {
                match log.append(&named(format!("t{t}-n{n}"))).await {
                    Ok(r) => acknowledged.push(r),
                    Err(_) => failed += 1,
                }
                n += 1;
            }
            (acknowledged, failed)
        });
    }
    let cutter = {
        let (pg, cutting, cuts) = (pg.clone(), cutting.clone(), cuts.clone());
        tokio::task::spawn_blocking(move || {
            while cuts.load(Ordering::SeqCst) < CUTS {
                cuts.fetch_add(pg.terminate_backends("cut", "relay-cut"), Ordering::SeqCst);
            }
            cutting.store(false, Ordering::SeqCst);
        })
    };
    cutter.await.unwrap();
    let mut acknowledged: Vec<Record> = Vec::new();
    let mut failed = 0;
    while let Some(done) = appenders.join_next().await {
        let (ok, bad) = done.unwrap();
        acknowledged.extend(ok);
        failed += bad;
    }
    assert!(cuts.load(Ordering::SeqCst) >= CUTS);
    // Retries cover the cuts: no caller saw an error.
    assert_eq!(failed, 0, "appends failed");
    let stored = contiguous_and_unique(&pg, "cut");
    for r in &acknowledged {
        let text = serde_json::to_string(&r.event).unwrap();
        assert_eq!(
            stored.get(&text),
            Some(&r.seq),
            "{text} stored as acknowledged"
        );
    }
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "nothing unacknowledged stored"
    );
    assert_eq!(log.verify().await.unwrap(), acknowledged.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_the_oldest_and_the_rest_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let url = database(&pg, "retention").await;
    let log = PgAuditLog::new(pool(&url, "relay-a"));
    for n in 1..=6 {
        log.append(&named(format!("c{n}"))).await.unwrap();
    }
    let batch: Vec<Event> = (1..=4).map(|n| client("s1", n)).collect();
    log.append_client_events("alice", &batch, 0).await.unwrap();
    let keep4 = Retention {
        max_age: Duration::from_secs(3600),
        max_events: 4,
    };
    let now = sallyport_common::time::now_millis();
    assert_eq!(log.prune(keep4, now).await.unwrap(), 6);
    assert_eq!(log.verify().await.unwrap(), 4);
    assert_eq!(
        pg.psql("retention", "SELECT anchor_seq FROM audit_head")
            .trim(),
        "6"
    );
    assert_eq!(
        log.append(&named("c11".into())).await.unwrap().seq,
        11,
        "numbering goes on"
    );
    assert_eq!(log.verify().await.unwrap(), 5);
    // Retention takes the once-only keys of the dropped client events.
    let keep1 = Retention {
        max_age: Duration::from_secs(3600),
        max_events: 1,
    };
    assert_eq!(log.prune(keep1, now).await.unwrap(), 4);
    assert_eq!(
        pg.psql("retention", "SELECT count(*) FROM audit_client_keys")
            .trim(),
        "0"
    );
    // By age: everything is older than "now + a year".
    let later = now + 365 * 24 * 3600 * 1000;
    assert_eq!(log.prune(Retention::default(), later).await.unwrap(), 1);
    assert_eq!(log.verify().await.unwrap(), 0);
    assert_eq!(log.tip().await.unwrap(), None);
    assert_eq!(log.append(&named("c12".into())).await.unwrap().seq, 12);
    assert_eq!(log.verify().await.unwrap(), 1);
    // Removing the first kept record is still noticed.
    log.append(&named("c13".into())).await.unwrap();
    pg.psql("retention", "DELETE FROM audit_events WHERE seq = 12");
    assert!(log.verify().await.is_err());
}

/// Appends `total` events from `tasks` tasks spread over `relays`; returns
/// appends per second.
async fn appends_per_second(relays: &[PgAuditLog], tasks: usize, total: usize) -> f64 {
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let log = relays[t % relays.len()].clone();
        set.spawn(async move {
            for n in 0..total / tasks {
                log.append(&named(format!("bench-t{t}-n{n}")))
                    .await
                    .expect("appended");
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    (total / tasks * tasks) as f64 / started.elapsed().as_secs_f64()
}

/// Not a test of speed (nothing is asserted about it): prints how many
/// chained events a second one relay and three relays commit, with
/// batches (64 tasks appending at once) and without (one task, so one
/// event per transaction). The harness's cluster runs with fsync off; set
/// SALLYPORT_AUDIT_BENCH_URL to an empty database of a durable server to
/// measure there instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_per_second_with_one_and_three_relays() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = match std::env::var("SALLYPORT_AUDIT_BENCH_URL") {
        Ok(url) => {
            PgAuditLog::apply_schema(&pool(&url, "schema"))
                .await
                .unwrap();
            (url, None)
        }
        Err(_) => {
            let pg = Postgres::start(dir.path());
            let url = database(&pg, "bench").await;
            (url, Some(pg))
        }
    };
    let relays: Vec<PgAuditLog> = (0..3)
        .map(|i| PgAuditLog::new(pool(&url, &format!("bench-{i}"))))
        .collect();
    const TOTAL: usize = 6400;
    const TASKS: usize = 64;
    // Warm up the connections and prepared statements.
    appends_per_second(&relays, 3, 300).await;
    let single = appends_per_second(&relays[..1], 1, 600).await;
    let one = appends_per_second(&relays[..1], TASKS, TOTAL).await;
    let three = appends_per_second(&relays, TASKS, TOTAL).await;
    println!(
        "audit appends/s: one per transaction {single:.0}; batches of up to {AUDIT_BATCH_MAX}: \
         1 relay {one:.0}, 3 relays {three:.0}"
    );
    assert!(relays[0].verify().await.unwrap() > 0);
}

/// A TCP proxy to PostgreSQL that, when armed, cuts the connection that
/// carries the next answer to a COMMIT instead of passing it on: the
/// transaction committed, and its writer cannot know.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    cut: Arc<AtomicUsize>,
}

impl CommitCutter {
    async fn start(pg_port: u16) -> CommitCutter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicUsize::new(0));
        let (armed2, cut2) = (armed.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(("127.0.0.1", pg_port))
                    .await
                    .unwrap();
                let (armed, cut) = (armed2.clone(), cut2.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    };
                    let downstream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match server_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            // CommandComplete of a COMMIT carries the tag "COMMIT\0".
                            let commit = buf[..n].windows(7).any(|w| w == b"COMMIT\0");
                            if commit && armed.swap(false, Ordering::SeqCst) {
                                cut.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    // Either direction ending ends both: the cut closes the
                    // client's socket and the server's.
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
        CommitCutter { port, armed, cut }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_stored_once_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let url = database(&pg, "lost").await;
    let cutter = CommitCutter::start(pg.port).await;
    let through = url.replace(&format!(":{}/", pg.port), &format!(":{}/", cutter.port));
    let log = PgAuditLog::new(pool(&through, "relay-a"));
    log.append(&named("before".into())).await.unwrap();

    cutter.armed.store(true, Ordering::SeqCst);
    let r = log.append(&named("lost-answer".into())).await.unwrap();
    assert_eq!(
        cutter.cut.load(Ordering::SeqCst),
        1,
        "a commit's answer was cut"
    );
    assert_eq!(r.seq, 2, "acknowledged as the record that committed");

    cutter.armed.store(true, Ordering::SeqCst);
    let batch: Vec<Event> = (1..=3).map(|n| client("s1", n)).collect();
    let c = log.append_client_events("alice", &batch, 0).await.unwrap();
    assert_eq!(cutter.cut.load(Ordering::SeqCst), 2);
    assert_eq!(c.stored.len(), 3);

    let stored = contiguous_and_unique(&pg, "lost");
    assert_eq!(stored.len(), 5, "each event stored once");
    assert_eq!(
        stored.get(&serde_json::to_string(&r.event).unwrap()),
        Some(&2)
    );
    assert_eq!(log.get(2).await.unwrap(), Some(r));
    assert_eq!(log.verify().await.unwrap(), 5);
    // The budget was charged once.
    assert_eq!(
        pg.psql(
            "lost",
            "SELECT record::jsonb ->> 'control_events' FROM audit_client_sessions"
        )
        .trim(),
        "3"
    );
}
