//! Policy time windows in IANA time zones, end to end: a real relay reading
//! `timezone = "..."` from its config file. A window is read on the zone's
//! own clock (daylight saving included), a denial says the local time it
//! saw, a zone the relay does not know is refused at reload with the old
//! policy kept, and the zones are known without the machine's zoneinfo.
//!
//! Like tests/tests/policy.rs, the live checks use windows placed around
//! the current time, and the daylight saving checks ask `policy test --at`
//! for fixed instants, so nothing waits for the wall clock.

use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use sallyport_tests::*;

const SERVICES: &[&str] = &["berlin", "tokyo", "office"];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `HH:MM` of the UTC time of day `minutes` minutes after now.
fn utc_clock_in(minutes: i64) -> String {
    let m = (now() as i64 / 60 + minutes).rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// `berlin`: a window that opens four hours after the current UTC time of
/// day, on Berlin's clock (UTC+1 or +2): closed now, whatever the season.
/// `tokyo`: an hour either side of the current time of day in Tokyo
/// (UTC+9, no daylight saving): open now, though the same hours read as
/// UTC would be closed. `office`: weekdays 08:00-18:00 in Berlin.
fn policy(berlin_zone: &str) -> (String, String) {
    let berlin = format!("{}-{}", utc_clock_in(4 * 60), utc_clock_in(5 * 60));
    let tokyo = format!("{}-{}", utc_clock_in(8 * 60), utc_clock_in(10 * 60));
    let text = format!(
        r#"
[policy]
[policy.risk]
quiet_hours = "22:00-06:00"
timezone = "Europe/Berlin"
quiet_hours_score = 0

[[policy.services.berlin.rules]]
action = "allow"
users = ["{USER}"]
hours = "{berlin}"
{berlin_zone}

[[policy.services.tokyo.rules]]
action = "allow"
users = ["{USER}"]
hours = "{tokyo}"
timezone = "Asia/Tokyo"

[[policy.services.office.rules]]
action = "allow"
users = ["{USER}"]
days = ["mon-fri"]
hours = "08:00-18:00"
timezone = "Europe/Berlin"
"#
    );
    (text, berlin)
}

fn bearer(client: &Client) -> String {
    let text = std::fs::read_to_string(client.home.join("credentials.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    format!("Authorization: Bearer {}", v["token"].as_str().unwrap())
}

fn unescape_html(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `policy test` for the `office` rule at an RFC 3339 instant.
fn office_at(relay: &RelayProc, at: &str) -> String {
    let out = relay.admin(
        &[
            "policy",
            "test",
            "--user",
            USER,
            "--service",
            "office",
            "--ip",
            "10.0.0.1",
            "--at",
            at,
        ],
        "",
    );
    assert!(out.status.success(), "policy test: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn time_windows_follow_the_zones_clock_and_say_its_local_time() {
    let (text, berlin) = policy("timezone = \"Europe/Berlin\"");
    let env = Env::start_configured(SshdAuth::Key, Some(&text));
    let token = env.relay.token("c1", "10m", SERVICES);
    let services: Vec<String> = SERVICES
        .iter()
        .map(|s| format!("{s}={}", env.sshd.target()))
        .collect();
    let _c = start_connector(env.path(), "c1", Some(&token), &services, &[]);
    env.relay.wait_online("c1", 2);
    let auth = bearer(&env.client);

    // Closed now in Berlin: 403 at the terminal page and at the certificate
    // request, saying the window and the local time in Berlin.
    let want =
        format!("service berlin may be reached only every day {berlin} Europe/Berlin; it is now ");
    let (code, page) = env.relay.curl("/t/berlin", &["-H", &auth]);
    let page = unescape_html(&page);
    assert_eq!(code, 403, "{page}");
    assert!(page.contains(&want), "want {want:?} in {page}");
    assert!(
        page.contains("Europe/Berlin (+01:00)") || page.contains("Europe/Berlin (+02:00)"),
        "{page}"
    );
    let body = serde_json::json!({ "service": "berlin", "public_key": "ssh-ed25519 AAAA" });
    let (code, cert) = env.relay.curl(
        "/api/ssh-cert",
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "content-type: application/json",
            "--data",
            &body.to_string(),
        ],
    );
    assert_eq!(code, 403, "{cert}");
    assert!(cert.contains(&want), "{cert}");
    let out = env
        .client
        .ssh(&env.sshd, "berlin", "echo should not run", b"");
    assert!(
        !out.status.success() && stdout(&out).is_empty(),
        "{}",
        stdout(&out)
    );

    // Open now in Tokyo: a real session goes through.
    let out = env
        .client
        .ssh(&env.sshd, "tokyo", "echo in tokyo hours", b"");
    assert_eq!(stdout(&out), "in tokyo hours", "{}", stderr(&out));

    // Across daylight saving: 06:30 UTC is 07:30 in Berlin on the Friday
    // before the last Sunday of March and 08:30 on the Monday after; in
    // October the other way round.
    let before = office_at(&env.relay, "2026-03-27T06:30:00Z");
    assert!(before.starts_with("decision: deny"), "{before}");
    assert!(
        before.contains("it is now fri 07:30 Europe/Berlin (+01:00)"),
        "{before}"
    );
    let after = office_at(&env.relay, "2026-03-30T06:30:00Z");
    assert!(after.starts_with("decision: allow"), "{after}");
    assert!(
        after.contains("mon 08:30 Europe/Berlin (+02:00)"),
        "{after}"
    );
    let summer = office_at(&env.relay, "2026-10-23T06:30:00Z");
    assert!(summer.starts_with("decision: allow"), "{summer}");
    let winter = office_at(&env.relay, "2026-10-26T06:30:00Z");
    assert!(winter.starts_with("decision: deny"), "{winter}");
    assert!(
        winter.contains("it is now mon 07:30 Europe/Berlin (+01:00)"),
        "{winter}"
    );

    // The decisions the checkpoints made are in the log with their reason.
    let log = stdout(&env.relay.admin(&["policy", "log", "--limit", "50"], ""));
    assert!(log.contains(&want), "{log}");

    // Without the machine's zone database (an empty TZDIR, as in a slim
    // container), the relay's own copy still knows Europe/Berlin.
    let no_zoneinfo = tempfile::tempdir().unwrap();
    let mut relay = env.relay;
    relay.kill();
    let config = relay.config.clone().unwrap();
    let out = Command::new(bin("sallyport-relay"))
        .args([
            "policy",
            "test",
            "--user",
            USER,
            "--service",
            "office",
            "--ip",
            "10.0.0.1",
        ])
        .args(["--at", "2026-03-30T06:30:00Z", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&relay.data_dir)
        .env("TZDIR", no_zoneinfo.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        stdout(&out).starts_with("decision: allow")
            && stdout(&out).contains("mon 08:30 Europe/Berlin (+02:00)"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn an_unknown_zone_or_a_zone_and_an_offset_are_refused_and_the_policy_stays() {
    let (text, _) = policy("timezone = \"Europe/Berlin\"");
    let env = Env::start_configured(SshdAuth::Key, Some(&text));
    let _c = env.connector("c1", "tokyo", &[]);
    env.relay.wait_online("c1", 2);
    let auth = bearer(&env.client);
    let config = env.relay.config.clone().unwrap();
    let logs = || env.relay.proc.as_ref().unwrap().log_text();
    assert_eq!(env.relay.curl("/t/tokyo", &["-H", &auth]).0, 200);
    assert_eq!(env.relay.curl("/t/berlin", &["-H", &auth]).0, 403);

    // A misspelt zone: refused with the name and what to write instead.
    let (typo, _) = policy("timezone = \"Europe/Berlim\"");
    std::fs::write(&config, typo.replace("Asia/Tokyo", "Asia/Tokio")).unwrap();
    let refused = wait_for("the relay to refuse the unknown zone", || {
        let l = logs();
        l.contains("policy not reloaded").then_some(l)
    });
    assert!(
        refused.contains("is not a time zone this relay knows")
            && refused.contains("IANA name like"),
        "{refused}"
    );
    assert!(refused.contains("Europe/Berlim"), "{refused}");
    // The policy in force stays: tokyo still open, berlin still closed.
    assert_eq!(env.relay.curl("/t/tokyo", &["-H", &auth]).0, 200);
    assert_eq!(env.relay.curl("/t/berlin", &["-H", &auth]).0, 403);

    // Both a zone and an offset: refused, saying to give one.
    let refusals = logs().matches("policy not reloaded").count();
    let (both, _) = policy("timezone = \"Europe/Berlin\"\nutc_offset = \"+01:00\"");
    std::fs::write(&config, both).unwrap();
    let refused = wait_for("the relay to refuse a zone and an offset", || {
        let l = logs();
        (l.matches("policy not reloaded").count() > refusals).then_some(l)
    });
    assert!(refused.contains("give one of them"), "{refused}");
    assert_eq!(env.relay.curl("/t/tokyo", &["-H", &auth]).0, 200);
}
