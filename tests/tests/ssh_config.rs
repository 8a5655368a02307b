//! `sallyport ssh-config --write`, then plain OpenSSH: `ssh web1` goes
//! through the relay, checks only the host keys the connector attested,
//! logs in with a certificate that renews itself, and may forward ports and
//! the agent exactly where the policy grants it.
//!
//! ssh reads `~/.ssh/config` from the passwd entry's home, not `$HOME`, so
//! each test points `HOME` at a directory of its own for `sallyport
//! ssh-config --write` and then runs `ssh -F <that>/.ssh/config`: the
//! file written is the file used, and nothing of the machine's own
//! configuration (or root's `~/.ssh`) takes part.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sallyport_tests::https::RelayOptions;
use sallyport_tests::*;

/// web1 may forward ports (its table says so) and the agent (the rule
/// that admits alice says so); web2 only gets a terminal. Both log `alice`
/// in as the Unix account [`E2E_UNIX_USER`].
fn policy() -> String {
    format!(
        "[policy]\n\
         [policy.services.web1]\ncertificates = true\npermit_port_forwarding = true\n\
         principals = {{ {USER} = [\"{E2E_UNIX_USER}\"] }}\n\
         [[policy.services.web1.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n\
         permit_agent_forwarding = true\n\
         [policy.services.web2]\ncertificates = true\n\
         principals = {{ {USER} = [\"{E2E_UNIX_USER}\"] }}\n\
         [[policy.services.web2.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n"
    )
}

/// The relay (certificates valid for `ttl`), an sshd trusting its CA, and
/// connector c1 serving it as web1 and web2, online; `alice` signed in.
fn start(ttl: &str) -> (Env, Proc) {
    let options = RelayOptions {
        args: vec!["--ssh-cert-ttl".into(), ttl.into()],
        ..RelayOptions::default()
    };
    let env = Env::start_with_relay(SshdAuth::Certificate, Some(&policy()), options);
    let token = env.relay.token("c1", "10m", &["web1", "web2"]);
    let services = [
        format!("web1={}", env.sshd.target()),
        format!("web2={}", env.sshd.target()),
    ];
    let c1 = start_connector(env.path(), "c1", Some(&token), &services, &[]);
    env.relay.wait_online("c1", 2);
    (env, c1)
}

/// A `HOME` of the test's own.
fn user_home(env: &Env) -> PathBuf {
    let home = env.path().join("user-home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// `sallyport ARGS` with `HOME` at `home` and the sign-in of `env.client`.
fn sallyport(env: &Env, home: &Path, args: &[&str]) -> Output {
    Command::new(bin("sallyport"))
        .args(args)
        .env("HOME", home)
        .env("SALLYPORT_HOME", &env.client.home)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

/// Plain `ssh ARGS` with the written config, never prompting. No
/// SALLYPORT_HOME: the config must carry everything itself.
fn ssh(home: &Path) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg(home.join(".ssh/config"))
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30"])
        .env("HOME", home)
        .env_remove("SALLYPORT_HOME")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn cert_of(env: &Env, service: &str) -> Option<String> {
    std::fs::read_to_string(env.client.home.join(format!("certs/{service}-cert.pub"))).ok()
}

#[test]
fn plain_ssh_works_from_the_written_config_and_trusts_only_attested_keys() {
    let (mut env, _c1) = start("5m");
    let home = user_home(&env);
    let ssh_dir = home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    // What the user had: kept byte for byte, and a stale known_hosts that
    // must not be consulted.
    let theirs = "# my settings\nHost jump\n  User me\r\n\nServerAliveInterval 15";
    std::fs::write(ssh_dir.join("config"), theirs).unwrap();
    std::fs::write(
        ssh_dir.join("known_hosts"),
        "web1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
    )
    .unwrap();

    let out = sallyport(&env, &home, &["ssh-config", "--write"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("web1, web2"), "{}", stderr(&out));
    let first = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
    let out = sallyport(&env, &home, &["ssh-config", "--write"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
    assert_eq!(config, first, "a second run changes nothing");
    let begin = format!("# BEGIN sallyport {}\n", env.relay.url());
    let end = format!("# END sallyport {}\n", env.relay.url());
    assert_eq!(config.matches(&begin).count(), 1, "{config}");
    assert_eq!(config.matches(&end).count(), 1, "{config}");
    assert!(config.starts_with(&begin), "{config}");
    assert!(config.ends_with(&format!("{end}{theirs}")), "{config}");
    // Without --write: the same block, printed.
    let printed = sallyport(&env, &home, &["ssh-config"]);
    assert!(config.starts_with(&String::from_utf8_lossy(&printed.stdout).to_string()));

    // The known_hosts file holds the key the connector attested.
    let known = std::fs::read_to_string(env.client.home.join("known_hosts")).unwrap();
    let host_key: Vec<&str> = env.sshd.host_pub.split_whitespace().take(2).collect();
    assert!(
        known.contains(&format!("web1 {}", host_key.join(" "))),
        "{known}"
    );

    // Plain ssh: no key, no certificate yet, no prompt.
    assert!(cert_of(&env, "web1").is_none());
    let out = run(ssh(&home).args(["web1", "whoami"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), E2E_UNIX_USER);
    let cert = cert_of(&env, "web1").expect("the Match exec fetched a certificate");
    // A valid certificate is kept: no new one per connection.
    let out = run(ssh(&home).args(["web1", "true"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cert_of(&env, "web1").as_ref(), Some(&cert));

    // --if-expiring: quiet either way; renews only within the margin.
    let out = sallyport(&env, &home, &["ssh-cert", "--if-expiring", "web1"]);
    assert!(out.status.success() && out.stderr.is_empty() && out.stdout.is_empty());
    assert_eq!(cert_of(&env, "web1").as_ref(), Some(&cert));
    let out = sallyport(
        &env,
        &home,
        &[
            "ssh-cert",
            "--if-expiring",
            "--renew-before",
            "3600",
            "web1",
        ],
    );
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert_ne!(cert_of(&env, "web1").as_ref(), Some(&cert), "renewed");

    // No trust on first use: without the attested keys, ssh refuses.
    let known_path = env.client.home.join("known_hosts");
    std::fs::write(&known_path, "").unwrap();
    let out = run(ssh(&home).args(["web1", "true"]));
    assert!(!out.status.success(), "logged in with no known host key");
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&known_path, &known).unwrap();

    // A different key at the service's address is refused.
    env.sshd.change_host_key();
    let out = run(ssh(&home).args(["web1", "true"]));
    assert!(!out.status.success(), "logged in to a changed host key");
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn write_refuses_symlinks_and_broken_markers() {
    let (env, _c1) = start("5m");
    let home = user_home(&env);
    let ssh_dir = home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let target = home.join("managed-config");
    std::fs::write(&target, "Host a\n").unwrap();
    std::os::unix::fs::symlink(&target, ssh_dir.join("config")).unwrap();
    let out = sallyport(&env, &home, &["ssh-config", "--write"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "Host a\n");

    std::fs::remove_file(ssh_dir.join("config")).unwrap();
    let broken = format!("Host a\n# BEGIN sallyport {}\nHost b\n", env.relay.url());
    std::fs::write(ssh_dir.join("config"), &broken).unwrap();
    let out = sallyport(&env, &home, &["ssh-config", "--write"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("markers"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config")).unwrap(),
        broken
    );

    // A missing file is created, readable by its owner only.
    std::fs::remove_dir_all(&ssh_dir).unwrap();
    let out = sallyport(&env, &home, &["ssh-config", "--write"]);
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(ssh_dir.join("config"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_expired_certificate_is_renewed_by_the_next_plain_ssh_and_the_agent_forgets_it() {
    // Renewed only once ended (--renew-before 0): what is shown is
    // renewal after expiry, not renewal on every connection.
    let (env, _c1) = start("5s");
    let home = user_home(&env);
    let out = sallyport(
        &env,
        &home,
        &["ssh-config", "--write", "--renew-before", "0"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let config = std::fs::read_to_string(home.join(".ssh/config")).unwrap();
    assert!(config.contains("--renew-before 0 %n"), "{config}");
    let out = run(ssh(&home).args(["web1", "whoami"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let first = cert_of(&env, "web1").unwrap();
    let ends = valid_before(&env.client.home.join("certs/web1-cert.pub"));
    wait_for("the certificate to expire", || {
        (sallyport_common::time::now_secs() > ends).then_some(())
    });
    let out = run(ssh(&home).args(["web1", "whoami"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), E2E_UNIX_USER);
    assert_ne!(cert_of(&env, "web1").unwrap(), first, "renewed");

    // --agent: into a real ssh-agent, for as long as the certificate
    // lasts, so the agent forgets it when it ends.
    let agent = Agent::start(env.path());
    let out = agent.run(
        Command::new(bin("sallyport"))
            .args(["ssh-cert", "--agent", "web1"])
            .env("SALLYPORT_HOME", &env.client.home),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let life = agent.lifetime_of_last_certificate();
    assert!(
        (1..=5).contains(&life),
        "lifetime {life} s for a 5 s certificate"
    );
    wait_for("the agent to forget the expired certificate", || {
        let listed = agent.run(Command::new("ssh-add").arg("-l"));
        (!stdout(&listed).contains("ED25519")).then_some(())
    });
}

#[test]
fn port_and_agent_forwarding_work_where_the_policy_grants_them_only() {
    let (env, _c1) = start("5m");
    let home = user_home(&env);
    let out = sallyport(&env, &home, &["ssh-config", "--write"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // `policy test` says what a certificate would carry.
    let explain = |service: &str| {
        let args = [
            "policy",
            "test",
            "--user",
            USER,
            "--service",
            service,
            "--ip",
            "127.0.0.1",
        ];
        let out = env.relay.admin(&args, "");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert!(
        explain("web1").ends_with(&format!(
            "certificate: accounts={E2E_UNIX_USER} \
             extensions=permit-agent-forwarding,permit-port-forwarding,permit-pty"
        )),
        "{}",
        explain("web1")
    );
    assert!(
        explain("web2").ends_with("extensions=permit-pty"),
        "{}",
        explain("web2")
    );

    // An echo service beside sshd, reached through `ssh -L`.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in echo.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let through = |service: &str| -> (Vec<u8>, String) {
        let local = free_port();
        let log = env.path().join(format!("ssh-L-{service}.log"));
        let mut forward = Proc::spawn(
            "ssh -L",
            ssh(&home)
                .args(["-N", "-L"])
                .arg(format!("127.0.0.1:{local}:127.0.0.1:{echo_port}"))
                .arg(service),
            log,
        );
        let mut conn = wait_for(&format!("ssh -L to {service} to listen"), || {
            TcpStream::connect(("127.0.0.1", local)).ok()
        });
        conn.write_all(b"through the forward\n").unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        forward.kill();
        (got, forward.log_text())
    };
    let (got, log) = through("web1");
    assert_eq!(got, b"through the forward\n", "{log}");
    let (got, log) = through("web2");
    assert!(
        got.is_empty(),
        "data went through a forward web2 does not grant"
    );
    assert!(log.contains("prohibited"), "{log}");

    // --agent: the certificate is in a real ssh-agent, for its validity.
    let agent = Agent::start(env.path());
    let out = sallyport(&env, &home, &["ssh-cert", "--agent", "web1"]);
    assert!(!out.status.success(), "--agent with no agent running");
    assert!(
        stderr(&out).contains("no ssh-agent is running"),
        "{}",
        stderr(&out)
    );
    let out = agent.run(
        Command::new(bin("sallyport"))
            .args(["ssh-cert", "--agent", "web1"])
            .env("SALLYPORT_HOME", &env.client.home),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = agent.run(Command::new("ssh-add").arg("-l"));
    assert!(
        stdout(&listed).contains("(ED25519-CERT)"),
        "{}",
        stdout(&listed)
    );
    let life = agent.lifetime_of_last_certificate();
    assert!(
        (1..=300).contains(&life),
        "lifetime {life} s for a 5 min certificate"
    );

    // `ssh -A`: the far side gets an agent socket on web1 only.
    let sock = |service: &str| {
        let out = agent.run(ssh(&home).args(["-A", service, "echo sock=$SSH_AUTH_SOCK"]));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_ne!(sock("web1"), "sock=", "web1 grants agent forwarding");
    assert_eq!(sock("web2"), "sock=", "web2 does not");
}

/// The end of the validity (Unix seconds) of the certificate file `cert`.
fn valid_before(cert: &Path) -> u64 {
    let text = std::fs::read_to_string(cert).unwrap();
    russh::keys::ssh_key::Certificate::from_openssh(text.trim())
        .unwrap()
        .valid_before()
}

/// A real `ssh-agent` in the foreground (`-d`: it logs each key added,
/// with its lifetime) on a socket of its own, stopped on drop.
struct Agent {
    sock: PathBuf,
    proc: Proc,
}

impl Agent {
    fn start(dir: &Path) -> Self {
        let sock = dir.join(format!("agent-{}.sock", free_port()));
        let proc = Proc::spawn(
            "ssh-agent",
            Command::new("ssh-agent").arg("-d").arg("-a").arg(&sock),
            dir.join(format!("ssh-agent-{}.log", free_port())),
        );
        wait_for("ssh-agent's socket", || sock.exists().then_some(()));
        Self { sock, proc }
    }

    /// The lifetime (seconds) the agent logged for the last certificate
    /// added: `process_add_identity: add ssh-ed25519-cert-v01@openssh.com
    /// SHA256:… "comment" (life: N) …`.
    fn lifetime_of_last_certificate(&self) -> u64 {
        let log = self.proc.log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("add ssh-ed25519-cert-v01@openssh.com"))
            .unwrap_or_else(|| panic!("no certificate added:\n{log}"));
        line.split("(life: ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no lifetime in {line:?}"))
    }

    /// Runs `cmd` with this agent as SSH_AUTH_SOCK.
    fn run(&self, cmd: &mut Command) -> Output {
        cmd.env("SSH_AUTH_SOCK", &self.sock).output().unwrap()
    }
}
