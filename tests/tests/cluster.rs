//! Relays sharing one PostgreSQL store (a cluster): they share the tunnel
//! CA and the SSH CAs (sealed under the cluster key), so a token issued at
//! one relay enrols at another; two relays racing on one token or one TOTP
//! code let exactly one through; a relay with the wrong key refuses to
//! start; a second process with the same relay id fences the first.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Barrier};

use sallyport_tests::https::RelayOptions;
use sallyport_tests::postgres::Postgres;
use sallyport_tests::*;

/// One PostgreSQL with one database, `cluster`, for the relays of a test.
fn postgres(dir: &Path) -> (Postgres, String) {
    let pg = Postgres::start(dir);
    let url = pg.create_database("cluster");
    (pg, url)
}

/// A relay of the cluster whose store is `url`, in `dir/name` (its own data
/// dir and ports; the harness gives it the cluster key derived from `url`
/// and the relay id `relay-HTTPS_PORT`), started with `args` added.
fn cluster_relay(dir: &Path, name: &str, url: &str, args: &[&str]) -> RelayProc {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let options = RelayOptions {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    let mut relay = RelayProc::prepare(&dir, None, options);
    relay.store_url = Some(url.to_owned());
    relay.launch();
    relay
}

/// `sallyport-relay serve` for the store at `url` with `extra` flags and
/// `env` set (`None` values removed), run to its exit: for relays that
/// must refuse to start.
fn serve_to_exit(dir: &Path, url: &str, extra: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(bin("sallyport-relay"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir.join("refused"))
        .args(["--listen-https", "127.0.0.1:0"])
        .args(["--listen-tunnel", "127.0.0.1:0"])
        .args(["--listen-tunnel-tcp", ""])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--relay-id", "refused"])
        .args(extra)
        .env("SALLYPORT_STORE", url);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().expect("run sallyport-relay serve")
}

#[test]
fn a_token_issued_at_one_relay_enrols_a_connector_at_another() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, url) = postgres(dir.path());
    let a = cluster_relay(dir.path(), "a", &url, &[]);
    let b = cluster_relay(dir.path(), "b", &url, &[]);

    let token = a.token("c1", "10m", &["web1"]);
    let mut c = start_connector(
        dir.path(),
        "c1",
        Some(&token),
        &["web1=127.0.0.1:1".to_owned()],
        &["--relay", &b.tunnel_addr()],
    );
    b.wait_online("c1", 2);
    assert!(c.is_running(), "{}", c.log_text());

    // One SSH CA for the cluster, and no CA key in either data dir.
    let (code_a, ca_a) = a.curl("/ssh-ca.pub", &[]);
    let (code_b, ca_b) = b.curl("/ssh-ca.pub", &[]);
    assert_eq!((code_a, code_b), (200, 200), "{ca_a} {ca_b}");
    assert_eq!(ca_a, ca_b);
    // One tunnel CA: its certificate is written where a single relay keeps
    // its own, the same at both.
    assert_eq!(
        std::fs::read(a.data_dir.join("ca.pem")).unwrap(),
        std::fs::read(b.data_dir.join("ca.pem")).unwrap()
    );
    for relay in [&a, &b] {
        for file in ["ca.key", "ssh_ca"] {
            assert!(
                !relay.data_dir.join(file).exists(),
                "{file} in {}",
                relay.data_dir.display()
            );
        }
    }
}

#[test]
fn one_enrolment_token_redeemed_at_two_relays_at_once_enrols_one_connector() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, url) = postgres(dir.path());
    let a = cluster_relay(dir.path(), "a", &url, &[]);
    let b = cluster_relay(dir.path(), "b", &url, &[]);

    let token = a.token("c1", "10m", &["web1"]);
    let svc = ["web1=127.0.0.1:1".to_owned()];
    let mut at_a = start_connector(
        dir.path(),
        "c1-a",
        Some(&token),
        &svc,
        &["--relay", &a.tunnel_addr()],
    );
    let mut at_b = start_connector(
        dir.path(),
        "c1-b",
        Some(&token),
        &svc,
        &["--relay", &b.tunnel_addr()],
    );

    let loser_is_a = wait_for("one of the two connectors to be refused", || {
        if !at_a.is_running() {
            Some(true)
        } else if !at_b.is_running() {
            Some(false)
        } else {
            None
        }
    });
    let (loser, winner, winner_relay) = if loser_is_a {
        (&mut at_a, &mut at_b, &b)
    } else {
        (&mut at_b, &mut at_a, &a)
    };
    assert!(!loser.wait_exit().success());
    assert!(
        loser
            .log_text()
            .contains("enrolment token was already used"),
        "{}",
        loser.log_text()
    );
    winner_relay.wait_online("c1", 2);
    assert!(winner.is_running(), "{}", winner.log_text());
}

#[test]
fn one_totp_code_used_at_two_relays_at_once_signs_in_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, url) = postgres(dir.path());
    let a = cluster_relay(dir.path(), "a", &url, &[]);
    let b = cluster_relay(dir.path(), "b", &url, &[]);
    a.add_user("tom", "pw-tom");
    let out = a.admin(&["user", "totp", "tom"], "");
    assert!(out.status.success(), "user totp: {}", stderr(&out));
    let text = stdout(&out);
    let secret = text
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .and_then(|uri| {
            uri.split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("secret="))
        })
        .unwrap_or_else(|| panic!("no otpauth URI in {text}"))
        .to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = sallyport_relay::test_hooks::code_now(&secret, now).unwrap();

    let start = Arc::new(Barrier::new(2));
    let results: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = [&a, &b]
            .into_iter()
            .map(|relay| {
                let start = start.clone();
                let code = code.clone();
                s.spawn(move || {
                    start.wait();
                    relay.api_login("tom", "pw-tom", Some(&code))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|(c, _)| *c == 200).count();
    assert_eq!(ok, 1, "exactly one sign-in: {results:?}");
    let refused = results.iter().find(|(c, _)| *c != 200).unwrap();
    assert_eq!(refused.0, 401, "{results:?}");
    assert!(refused.1.contains("already used"), "{results:?}");
}

#[test]
fn a_relay_without_the_cluster_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, url) = postgres(dir.path());
    let _a = cluster_relay(dir.path(), "a", &url, &[]);

    // Another key: the secrets do not open.
    let wrong = dir.path().join("wrong.key");
    write_private_file(&wrong, format!("{}\n", "ab".repeat(32)).as_bytes());
    let out = serve_to_exit(
        dir.path(),
        &url,
        &["--cluster-key-file", wrong.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "cannot decrypt the cluster's secrets: is --cluster-key-file the cluster's key?"
        ),
        "{}",
        stderr(&out)
    );

    // No key file at all.
    let out = serve_to_exit(
        dir.path(),
        &url,
        &[],
        &[("SALLYPORT_CLUSTER_KEY_FILE", None)],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs the cluster key: set --cluster-key-file"),
        "{}",
        stderr(&out)
    );

    // A key file others may read.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve_to_exit(
        dir.path(),
        &url,
        &["--cluster-key-file", wrong.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is readable by other users: chmod 600 it"),
        "{}",
        stderr(&out)
    );

    // Not a key.
    write_private_file(&wrong, b"not a key\n");
    let out = serve_to_exit(
        dir.path(),
        &url,
        &["--cluster-key-file", wrong.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not hold a 256-bit key"),
        "{}",
        stderr(&out)
    );

    // `cluster-key generate` writes a key file a relay takes (mode 0600),
    // and never overwrites one.
    let generated = dir.path().join("generated.key");
    let out = Command::new(bin("sallyport-relay"))
        .args(["cluster-key", "generate"])
        .arg(&generated)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(&generated).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = Command::new(bin("sallyport-relay"))
        .args(["cluster-key", "generate"])
        .arg(&generated)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_second_process_with_the_same_relay_id_fences_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, url) = postgres(dir.path());
    let mut first = cluster_relay(dir.path(), "first", &url, &["--relay-id", "r1"]);
    let _other = cluster_relay(dir.path(), "other", &url, &["--relay-id", "r2"]);
    assert_eq!(
        pg.psql(
            "cluster",
            "SELECT string_agg(id || ':' || epoch, ',' ORDER BY id) FROM relays WHERE lease_until > now()"
        )
        .trim(),
        "r1:1,r2:1"
    );

    let _second = cluster_relay(dir.path(), "second", &url, &["--relay-id", "r1"]);
    let proc = first.proc.as_mut().unwrap();
    let status = proc.wait_exit();
    assert!(!status.success());
    assert!(
        proc.log_text()
            .contains("fenced: another process started with this relay id"),
        "{}",
        proc.log_text()
    );
    assert_eq!(
        pg.psql(
            "cluster",
            "SELECT string_agg(id || ':' || epoch, ',' ORDER BY id) FROM relays WHERE lease_until > now()"
        )
        .trim(),
        "r1:2,r2:1",
        "the newer process holds r1; r2 is untouched"
    );
}

#[test]
fn a_relay_serves_on_while_postgres_is_down_and_renews_its_lease_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pg, url) = postgres(dir.path());
    let mut relay = cluster_relay(dir.path(), "a", &url, &["--relay-id", "r1"]);

    pg.stop();
    wait_for("a failed lease renewal", || {
        let proc = relay.proc.as_ref().unwrap();
        proc.log_text()
            .contains("cannot renew the relay's lease; serving on and trying again")
            .then_some(())
    });
    assert!(relay.proc.as_mut().unwrap().is_running());
    let (code, _) = relay.curl("/ssh-ca.pub", &[]);
    assert_eq!(code, 200, "the relay serves what needs no store");

    pg.start_again();
    // A lease running to more than LEASE (10 s) past this moment was
    // renewed after it: every lease before the outage ends earlier.
    let back = pg.psql("cluster", "SELECT now()").trim().to_owned();
    let renewed = format!(
        "SELECT count(*) FROM relays WHERE id = 'r1' AND epoch = 1 \
         AND lease_until > '{back}'::timestamptz + interval '10 seconds'"
    );
    wait_for("the lease renewed after the outage", || {
        (pg.psql("cluster", &renewed).trim() == "1").then_some(())
    });
    assert!(relay.proc.as_mut().unwrap().is_running());
}

/// `live_relays` lists the relays whose lease runs, not those whose lease
/// lapsed; a renewal at an old epoch is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_relays_leaves_out_lapsed_leases_and_renewals_check_the_epoch() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let (_pg, url) = postgres(dir.path());
    let store = sallyport_relay::storage::PgStore::connect(&url)
        .await
        .unwrap();
    let lease = Duration::from_secs(600);
    let a1 = store
        .register_relay("a", "127.0.0.1:1", "https://a", lease)
        .await
        .unwrap();
    store
        .register_relay("b", "127.0.0.1:2", "https://b", lease)
        .await
        .unwrap();
    // c's lease has lapsed already.
    store
        .register_relay("c", "127.0.0.1:3", "https://c", Duration::ZERO)
        .await
        .unwrap();
    let live: Vec<(String, i64)> = store
        .live_relays()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.epoch))
        .collect();
    assert_eq!(live, [("a".to_owned(), 1), ("b".to_owned(), 1)]);

    assert!(store.renew_relay_lease("a", a1, lease).await.unwrap());
    let a2 = store
        .register_relay("a", "127.0.0.1:9", "https://a2", lease)
        .await
        .unwrap();
    assert_eq!(a2, a1 + 1);
    assert!(
        !store.renew_relay_lease("a", a1, lease).await.unwrap(),
        "fenced"
    );
    assert!(store.renew_relay_lease("a", a2, lease).await.unwrap());
    let a = store.live_relays().await.unwrap().remove(0);
    assert_eq!(
        (a.tunnel_addr.as_str(), a.public_url.as_str()),
        ("127.0.0.1:9", "https://a2")
    );

    // A clean shutdown ends the lease at once; a fenced process's does not.
    store.release_relay_lease("a", a1).await.unwrap();
    assert_eq!(store.live_relays().await.unwrap().len(), 2);
    store.release_relay_lease("a", a2).await.unwrap();
    let live: Vec<String> = store
        .live_relays()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(live, ["b"]);
}
