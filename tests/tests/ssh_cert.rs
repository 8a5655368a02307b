//! Short-lived SSH certificates from the relay's CA: stock OpenSSH logs in
//! with no password, only as the user's own account, and not once expired.

use std::process::Output;

use sallyport_tests::*;

/// `sallyport ssh-cert SERVICE ARGS`.
fn ssh_cert(client: &Client, args: &[&str]) -> Output {
    std::process::Command::new(bin("sallyport"))
        .arg("ssh-cert")
        .args(args)
        .env("SALLYPORT_HOME", &client.home)
        .output()
        .unwrap()
}

/// ssh to web1 with its certified key and nothing else, as [`E2E_UNIX_USER`].
fn ssh_with_cert(client: &Client, command: &str) -> Output {
    ssh_with_cert_to(client, "web1", command)
}

/// ssh to `service` with web1's certified key and nothing else.
fn ssh_with_cert_to(client: &Client, service: &str, command: &str) -> Output {
    ssh_with_identity(&client.home.join("certs/web1"))
        .args(["-o", "PasswordAuthentication=no", "-o"])
        .arg(format!(
            "ProxyCommand={} proxy %h",
            bin("sallyport").display()
        ))
        .arg(format!("{E2E_UNIX_USER}@{service}"))
        .arg(command)
        .env("SALLYPORT_HOME", &client.home)
        .output()
        .unwrap()
}

/// A relay user named like the Unix account, signed in.
fn e2e_user(env: &Env) -> Client {
    env.relay.add_user(E2E_UNIX_USER, "cert user password");
    let client = Client::new(env.path(), E2E_UNIX_USER);
    let out = client.login(&env.relay, E2E_UNIX_USER, "cert user password");
    assert!(out.status.success(), "{}", stderr(&out));
    client
}

#[test]
fn a_certificate_logs_in_with_no_password_as_the_users_own_account() {
    let env = Env::start_with(SshdAuth::Certificate);
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let client = e2e_user(&env);

    // The CA the relay serves is the one `ssh-ca show` prints.
    let show = env.relay.admin(&["ssh-ca", "show"], "");
    let (_, served) = env.relay.curl("/ssh-ca.pub", &[]);
    assert_eq!(stdout(&show), served.trim());
    assert!(served.starts_with("ssh-ed25519 "), "{served}");

    let out = ssh_cert(&client, &["web1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cert = std::fs::read_to_string(client.home.join("certs/web1-cert.pub")).unwrap();
    assert!(
        cert.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{cert}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(client.home.join("certs/web1"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the private key is readable by others");

    let out = ssh_with_cert(&client, "echo in as $(whoami)");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("in as {E2E_UNIX_USER}"));
    // sshd names the certificate's key id: user and session.
    let log = env.sshd.log_text();
    assert!(
        log.contains(&format!(
            "ID sallyport user={E2E_UNIX_USER} service=web1 session="
        )),
        "{log}"
    );
}

#[test]
fn certificates_for_other_accounts_are_refused_and_expired_ones_do_not_log_in() {
    let env = Env::start_with(SshdAuth::Certificate);
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let client = e2e_user(&env);

    let out = ssh_cert(&client, &["web1", "--principal", "root"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        format!("sallyport: user {E2E_UNIX_USER} may not log in to service web1 as \"root\"")
    );
    let out = ssh_cert(&client, &["nope"]);
    assert_eq!(stderr(&out), "sallyport: no such service \"nope\"");

    // A one-second certificate, used after it expired: sshd says no.
    let out = ssh_cert(&client, &["web1", "--valid-secs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = ssh_with_cert(&client, "true");
    assert!(!out.status.success(), "an expired certificate logged in");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    wait_for("sshd to log the expired certificate", || {
        env.sshd.log_text().contains("expired").then_some(())
    });
}

#[test]
fn the_policy_maps_users_to_the_accounts_their_certificates_name() {
    // alice is not a Unix account here: the policy maps her to one that is,
    // and lets only her reach web1.
    let policy = format!(
        "[policy]\n[policy.services.web1]\ncertificates = true\n\
         principals = {{ {USER} = [\"{E2E_UNIX_USER}\"], \"group:ops\" = [\"operator\"] }}\n\
         [[policy.services.web1.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n"
    );
    let env = Env::start_configured(SshdAuth::Certificate, Some(&policy));
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);

    // The first account the policy lists is the default.
    let out = ssh_cert(&env.client, &["web1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ssh_with_cert(&env.client, "echo in as $(whoami)");
    assert_eq!(
        stdout(&out),
        format!("in as {E2E_UNIX_USER}"),
        "{}",
        stderr(&out)
    );
    assert!(env
        .sshd
        .log_text()
        .contains(&format!("ID sallyport user={USER} service=web1 session=")));

    // Not her own name, not another group's account.
    for other in [USER, "operator", "root"] {
        let out = ssh_cert(&env.client, &["web1", "--principal", other]);
        assert_eq!(
            stderr(&out),
            format!("sallyport: user {USER} may not log in to service web1 as \"{other}\"")
        );
    }
    // Someone the rules do not admit gets no certificate at all.
    env.relay.add_user_in("dave", "pw-dave", &["ops"]);
    let dave = Client::new(env.path(), "dave");
    assert!(dave.login(&env.relay, "dave", "pw-dave").status.success());
    let out = ssh_cert(&dave, &["web1"]);
    assert_eq!(
        stderr(&out),
        "sallyport: user dave may not reach service web1"
    );
}

#[test]
fn a_service_with_a_ca_of_its_own_gets_certificates_no_other_host_accepts() {
    // web1 has a CA of its own; web2's sshd trusts the relay's main CA.
    let policy = format!(
        "[policy]\n\
         [policy.services.web1]\ncertificates = true\nseparate_ca = true\n\
         principals = {{ {USER} = [\"{E2E_UNIX_USER}\"] }}\n\
         [[policy.services.web1.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n\
         [policy.services.web2]\ncertificates = true\n\
         principals = {{ {USER} = [\"{E2E_UNIX_USER}\"] }}\n\
         [[policy.services.web2.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n\
         [[policy.services.web3.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n"
    );
    let env = Env::start_configured(SshdAuth::Key, Some(&policy));
    let (code, own) = env.relay.curl("/ssh-ca.pub?service=web1", &[]);
    assert_eq!(code, 200, "{own}");
    let (_, main) = env.relay.curl("/ssh-ca.pub", &[]);
    assert_ne!(own, main, "web1 must have a CA of its own");
    let show = env
        .relay
        .admin(&["ssh-ca", "show", "--service", "web1"], "");
    assert_eq!(stdout(&show), own.trim(), "{}", stderr(&show));
    let (code, body) = env.relay.curl("/ssh-ca.pub?service=web2", &[]);
    assert_eq!(code, 404, "{body}");

    let dir1 = env.path().join("host1");
    let dir2 = env.path().join("host2");
    std::fs::create_dir_all(&dir1).unwrap();
    std::fs::create_dir_all(&dir2).unwrap();
    let host1 = Sshd::start_trusting_ca(&dir1, &own);
    let host2 = Sshd::start_trusting_ca(&dir2, &main);
    let token = env.relay.token("c1", "10m", &["web1", "web2", "web3"]);
    let services = [
        format!("web1={}", host1.target()),
        format!("web2={}", host2.target()),
        format!("web3={}", host2.target()),
    ];
    let _c = start_connector(env.path(), "c1", Some(&token), &services, &[]);
    env.relay.wait_online("c1", 2);

    let out = ssh_cert(&env.client, &["web1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ssh_with_cert(&env.client, "echo in as $(whoami)");
    assert_eq!(
        stdout(&out),
        format!("in as {E2E_UNIX_USER}"),
        "{}",
        stderr(&out)
    );

    // The same certificate at web2: its sshd does not know web1's CA.
    let out = ssh_with_cert_to(&env.client, "web2", "true");
    assert!(
        !out.status.success(),
        "web1's certificate logged in to web2"
    );
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );

    // A service whose policy does not say its sshd trusts the CA gets none.
    let out = ssh_cert(&env.client, &["web3"]);
    assert_eq!(
        stderr(&out),
        "sallyport: service web3 does not take certificates (its policy has no certificates = true)"
    );
}
