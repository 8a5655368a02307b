//! Service names are case-insensitive everywhere: OpenSSH lowercases `%h`,
//! so `ssh Prod-DB` must reach the service an admin wrote as `Prod-DB`, and
//! two names that differ only in case are one name (or refused as a pair).

use std::process::Stdio;

use sallyport_tests::*;

/// `ssh USER@HOST` through `sallyport proxy TOKEN`, where TOKEN is `%h` or `%n`.
fn ssh_via(env: &Env, host: &str, token: &str) -> std::process::Output {
    ssh_with_key(&env.sshd)
        .args(["-o", "ConnectTimeout=30", "-o"])
        .arg(format!(
            "ProxyCommand={} proxy {token}",
            bin("sallyport").display()
        ))
        .arg(format!("{}@{host}", env.sshd.user))
        .arg("echo reached")
        .env("SALLYPORT_HOME", &env.client.home)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

#[test]
fn a_mixed_case_service_is_reached_with_percent_h_and_percent_n() {
    let env = Env::start();
    // The admin and the connector each spell the name their own way.
    let token = env.relay.token("c1", "10m", &["PROD-db"]);
    let _c = start_connector(
        env.path(),
        "c1",
        Some(&token),
        &[format!("Prod-DB={}", env.sshd.target())],
        &[],
    );
    env.relay.wait_online("c1", 2);
    let row = env.relay.connector_row("c1");
    assert!(
        row.iter().any(|c| c == "prod-db"),
        "connector list shows the canonical name: {row:?}"
    );

    for token in ["%h", "%n"] {
        let out = ssh_via(&env, "Prod-DB", token);
        assert!(
            out.status.success(),
            "ssh Prod-DB with proxy {token}: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "reached");
    }
}

#[test]
fn names_that_differ_only_in_case_are_refused_as_a_pair() {
    let env = Env::start();
    let out = env.relay.admin(
        &[
            "connector",
            "add",
            "c2",
            "--service",
            "Web",
            "--service",
            "web",
        ],
        "",
    );
    assert!(!out.status.success(), "connector add took Web and web");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("differ only in case"),
        "the refusal says why: {err}"
    );

    // A connector configured with both spellings does not start.
    let token = env.relay.token("c3", "10m", &["web"]);
    let mut c = start_connector(
        env.path(),
        "c3",
        Some(&token),
        &[
            format!("Web={}", env.sshd.target()),
            format!("web={}", env.sshd.target()),
        ],
        &[],
    );
    let status = c.wait_exit();
    assert!(!status.success(), "the connector ran with Web and web");
    let log = c.log_text();
    assert!(
        log.contains("given twice (service names are case-insensitive)"),
        "the connector says why: {log}"
    );
}
