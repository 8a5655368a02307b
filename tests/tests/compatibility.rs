//! The compatibility matrix (`sallyport_tests::compat::ROWS`): a real sshd
//! configured in turn with each key exchange, cipher, MAC and host-key
//! algorithm, and the ones Sallyport refuses. Every row runs through the
//! connector's host-key scan and the native client core, and through the
//! browser (headless Chromium, the real relay and connector). Each test
//! prints the table it saw; docs/COMPATIBILITY.md lists it.
//!
//! `COMPAT_ROWS=name,name` runs only those rows (all by default).

use std::time::{Duration, Instant};

use sallyport_client::ssh::{Ended, Input, Options};
use sallyport_tests::compat::{fingerprint, fingerprint_of_line, selected_rows, Expect, Row};
use sallyport_tests::screen::{self, Screen, Session};
use sallyport_tests::*;
use serde_json::Value;

/// How long one row may take natively, scan and session (the slowest, the
/// 8192-bit fixed DH group, takes seconds in a debug build).
const ROW_PATIENCE: Duration = Duration::from_secs(120);

fn rows() -> Vec<Row> {
    selected_rows(&std::env::var("COMPAT_ROWS").unwrap_or_default())
}

/// One sshd per row, started in parallel (RSA and ECDSA keys take a moment).
fn start_sshds(dir: &std::path::Path, rows: &[Row]) -> Vec<Sshd> {
    std::thread::scope(|s| {
        let started: Vec<_> = rows
            .iter()
            .map(|row| s.spawn(move || Sshd::start_row(dir, row)))
            .collect();
        started
            .into_iter()
            .map(|h| h.join().expect("sshd start"))
            .collect()
    })
}

/// Prints the table and fails with every row that went wrong.
fn report(title: &str, lines: Vec<(Row, Result<String, String>)>) {
    let mut failed = Vec::new();
    eprintln!("{title}:");
    for (row, line) in &lines {
        match line {
            Ok(what) => eprintln!("  {:<40} ok    {what}", row.name),
            Err(why) => {
                eprintln!("  {:<40} FAIL  {why}", row.name);
                failed.push(row.name);
            }
        }
    }
    assert!(failed.is_empty(), "{title}: rows failed: {failed:?}");
}

// ---- the native client core

/// One row natively: the connector's scan, then a session with the keys it
/// found, as the browser would get them from the relay.
async fn native_row(row: &Row, sshd: &Sshd, scratch: std::path::PathBuf) -> Result<String, String> {
    let expected = fingerprint(&sshd.host_key_pub());
    let began = Instant::now();
    let scanned = sallyport_connector::scan_host_keys(&sshd.target()).await;
    let scan_ms = began.elapsed().as_millis();
    let scanned_fps: Vec<String> = scanned
        .iter()
        .map(|k| fingerprint_of_line(k, &scratch))
        .collect();

    let options = Options {
        host_keys: scanned.clone(),
        service: row.name.into(),
        ..screen::options(Vec::new())
    };
    let started = Instant::now();
    let Session { screen, tx, task } = Session::start(sshd, Screen::default(), options).await;
    let send = |text: &str| {
        let tx = tx.clone();
        let bytes = text.as_bytes().to_vec();
        async move {
            tx.send(Input::Data(bytes))
                .await
                .map_err(|_| "session gone".to_owned())
        }
    };

    match row.expect {
        Expect::Shell => {
            if scanned_fps != [expected.clone()] {
                return Err(format!("scanned {scanned_fps:?}, sshd has {expected}"));
            }
            let at = screen
                .try_wait_for(&format!("login as: {E2E_UNIX_USER}"), 0)
                .await?;
            let to_prompt = started.elapsed().as_millis();
            send("\r").await?;
            let mut at = at;
            for _ in 0..row.passwords {
                at = screen.try_wait_for("assword: ", at).await?;
                send(&format!("{E2E_UNIX_PASSWORD}\r")).await?;
            }
            send("echo $((6*7))\r").await?;
            // After the echoed command (bash may switch bracketed paste off first).
            let at = screen.try_wait_for("$((6*7))", at).await?;
            screen.try_wait_for("42\r\n", at).await?;
            send("exit\r").await?;
            let ended = tokio::time::timeout(ROW_PATIENCE, task)
                .await
                .map_err(|_| "the session did not end after exit".to_owned())?
                .map_err(|e| e.to_string())?;
            if ended != Ended::Exit(0) {
                return Err(format!("ended {ended:?}"));
            }
            let accepted = screen.host_key();
            if accepted.as_deref() != Some(expected.as_str()) {
                return Err(format!("accepted {accepted:?}, sshd has {expected}"));
            }
            if !screen.text().contains(row.shows) {
                return Err(format!(
                    "{:?} not shown; screen {:?}",
                    row.shows,
                    screen.text()
                ));
            }
            Ok(format!(
                "shell; host key {expected} (scan {scan_ms} ms, login prompt after {to_prompt} ms)"
            ))
        }
        Expect::Refused { .. } => {
            let want = row.refusal().unwrap_or_default();
            if !scanned.is_empty() {
                return Err(format!("the scan found {scanned_fps:?}"));
            }
            let ended = tokio::time::timeout(ROW_PATIENCE, task)
                .await
                .map_err(|_| "the session did not end".to_owned())?
                .map_err(|e| e.to_string())?;
            if ended.to_string() != want || screen.text().contains("login as:") {
                return Err(format!(
                    "ended {:?} (screen {:?}), want {want:?}",
                    ended.to_string(),
                    screen.text()
                ));
            }
            Ok(format!("refused: {want}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_logs_in_or_is_refused_natively() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    let sshds = start_sshds(dir.path(), &rows);
    let runs = rows.iter().zip(&sshds).enumerate().map(|(i, (row, sshd))| {
        let scratch = dir.path().join(format!("scanned-{i}.pub"));
        async move {
            let outcome = tokio::time::timeout(ROW_PATIENCE, native_row(row, sshd, scratch))
                .await
                .unwrap_or_else(|_| Err(format!("took longer than {ROW_PATIENCE:?}")));
            (*row, outcome)
        }
    });
    let lines = futures::future::join_all(runs).await;
    report("native client core", lines);
}

// ---- the browser

#[test]
fn every_row_logs_in_or_is_refused_in_the_browser() {
    let dir = tempfile::Builder::new()
        .prefix("sallyport-compat")
        .tempdir()
        .unwrap();
    let rows = rows();
    let relay = RelayProc::start(dir.path());
    relay.add_user(E2E_UNIX_USER, PASSWORD);
    let sshds = start_sshds(dir.path(), &rows);
    let names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    let services: Vec<String> = rows
        .iter()
        .zip(&sshds)
        .map(|(r, s)| format!("{}={}", r.name, s.target()))
        .collect();
    let token = relay.token("c1", "10m", &names);
    let _c1 = start_connector(dir.path(), "c1", Some(&token), &services, &[]);
    relay.wait_online("c1", 2);

    // One journey (one Chromium, signed in once) per family, so that each
    // stays well within the harness's patience for one journey.
    let mut results: Vec<(String, Value)> = Vec::new();
    let mut families: Vec<&str> = Vec::new();
    for row in &rows {
        if !families.contains(&row.family()) {
            families.push(row.family());
        }
    }
    for family in families {
        let plan: Vec<Value> = rows
            .iter()
            .filter(|r| r.family() == family)
            .map(|r| {
                serde_json::json!({
                    "service": r.name,
                    "expect": if r.expect == Expect::Shell { "shell" } else { "refused" },
                    "passwords": r.passwords,
                    "shows": r.shows,
                })
            })
            .collect();
        let plan = serde_json::to_string(&plan).unwrap();
        let r = browser(
            dir.path(),
            &relay,
            (E2E_UNIX_USER, PASSWORD),
            "compat",
            &[("ROWS", &plan), ("SSH_PASSWORD", E2E_UNIX_PASSWORD)],
        );
        let seen = r["results"].as_array().expect("results");
        results.extend(seen.iter().map(|v| {
            (
                v["service"].as_str().unwrap_or_default().to_owned(),
                v.clone(),
            )
        }));
    }
    let lines = rows
        .iter()
        .zip(&sshds)
        .map(|(row, sshd)| {
            let seen = results.iter().find(|(name, _)| name == row.name);
            let outcome = match seen {
                Some((_, seen)) => browser_row(row, sshd, seen, &relay),
                None => Err("the browser journey did not report it".into()),
            };
            (*row, outcome)
        })
        .collect();
    report("browser", lines);
}

fn browser_row(row: &Row, sshd: &Sshd, seen: &Value, relay: &RelayProc) -> Result<String, String> {
    if let Some(e) = seen["error"].as_str() {
        return Err(format!("{e} (seen {seen})"));
    }
    let end = seen["endReason"].as_str().unwrap_or_default();
    match row.expect {
        Expect::Shell => {
            if seen["answer"] != "42" || end != "exit status 0" {
                return Err(format!("no shell: {seen}"));
            }
            if seen["shown"] != true {
                return Err(format!("{:?} not shown: {seen}", row.shows));
            }
            let expected = fingerprint(&sshd.host_key_pub());
            let session = seen["sessionId"]
                .as_str()
                .ok_or(format!("no session id: {seen}"))?;
            let start = wait_for("the session's start in the audit log", || {
                relay
                    .client_events(session)
                    .into_iter()
                    .find(|e| e["event"]["event"]["kind"] == "start")
            });
            let accepted = &start["event"]["event"]["host_key"];
            if *accepted != *expected {
                return Err(format!("accepted {accepted}, sshd has {expected}"));
            }
            Ok(format!(
                "shell; host key {expected} (page to shell prompt {} ms)",
                seen["toPromptMs"]
            ))
        }
        Expect::Refused { .. } => {
            let want = row.refusal().unwrap_or_default();
            if end != want || seen["loginPrompted"] != false || seen["endShown"] != want {
                return Err(format!("want {want:?}, seen {seen}"));
            }
            Ok(format!("refused: {want}"))
        }
    }
}

/// A server with an RSA, an ECDSA P-384 and an Ed25519 host key: the
/// connector reports each once (the RSA key once, though sshd offers it as
/// rsa-sha2-512 and rsa-sha2-256), the keys `ssh-keygen -lf` shows, and
/// sshd logs one refused negotiation for it (the probe for its list).
#[tokio::test]
async fn the_scan_reports_every_host_key_once() {
    use sallyport_tests::compat::HostKey;
    let dir = tempfile::tempdir().unwrap();
    let (sshd, pubs) = Sshd::start_with_host_keys(
        dir.path(),
        "three-keys",
        &[],
        &[HostKey::Rsa, HostKey::Ecdsa384, HostKey::Ed25519],
    );
    let scanned = sallyport_connector::scan_host_keys(&sshd.target()).await;
    let scratch = dir.path().join("scanned.pub");
    let mut found: Vec<String> = scanned
        .iter()
        .map(|k| fingerprint_of_line(k, &scratch))
        .collect();
    let mut expected: Vec<String> = pubs.iter().map(|p| fingerprint(p)).collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "scanned {scanned:?}");
    // One probe for the server's list, not one refusal per algorithm it lacks.
    let refusals = sshd.log_text().matches("no matching host key type").count();
    assert_eq!(refusals, 1, "{}", sshd.log_text());
}
