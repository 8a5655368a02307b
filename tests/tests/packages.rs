//! An admin installs Sallyport from its Debian packages: `scripts/package.sh`
//! builds them (from the debug binaries already built), `dpkg -i` installs
//! them, `systemd-analyze verify` accepts their units, each daemon starts as
//! its unit's `ExecStart=` says (as the unit's user), the connector is set
//! up with `service install`, and stock `ssh` reaches an sshd through the
//! installed relay, connector and `sallyport` CLI. The packages, users and
//! state are removed at the end, also when the test fails.
//!
//! The only test that touches dpkg: it is alone in this file, so nothing
//! else installs or purges these packages while it runs. Every other test
//! runs the binaries in target/debug, never the ones installed in /usr/bin.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sallyport_tests::packages::{Installed, Unit, UNIT_DIR};
use sallyport_tests::*;

const RELAY_CONFIG: &str = "/etc/sallyport/relay.toml";
const CONNECTOR_CONFIG: &str = "/etc/sallyport/connector.toml";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `getent passwd NAME` split into its fields.
fn passwd(name: &str) -> Vec<String> {
    let out = run_ok(Command::new("getent").args(["passwd", name]));
    text(&out.stdout)
        .trim()
        .split(':')
        .map(str::to_owned)
        .collect()
}

fn group_name(gid: u32) -> String {
    let out = run_ok(Command::new("getent").args(["group", &gid.to_string()]));
    text(&out.stdout)
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `systemd-analyze verify` of `unit`: whether it passed, and what it said.
fn verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    (out.status.success(), text(&out.stderr) + &text(&out.stdout))
}

/// `sallyport-relay ARGS --data-dir DIR` with the installed binary, as the
/// service's user (`sudo -u sallyport-relay` in the README; the relay
/// refuses a data dir that belongs to another user), through the running
/// relay's admin socket.
fn relay_admin(data_dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = output_with_input(
        Command::new("runuser")
            .args(["-u", "sallyport-relay", "--", "/usr/bin/sallyport-relay"])
            .args(args)
            .arg("--data-dir")
            .arg(data_dir),
        stdin.as_bytes(),
    );
    assert!(
        out.status.success(),
        "sallyport-relay {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn the_packages_install_and_their_services_carry_an_ssh_session() {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("sallyport-packages")
        .tempdir()
        .expect("tempdir");
    assert_eq!(
        current_user(),
        "root",
        "the package test installs packages and needs root (CI runs as root)"
    );
    // The binaries it packages are the ones the other tests use.
    bin_dir();

    // Built as the README says, from the debug binaries.
    let debs = dir.path().join("debs");
    let t = Instant::now();
    run_ok(
        Command::new(workspace().join("scripts/package.sh"))
            .args(["--debug", "--out"])
            .arg(&debs),
    );
    eprintln!("scripts/package.sh --debug took {:?}", t.elapsed());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&debs)
        .expect("package dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    for f in &files {
        let size = std::fs::metadata(f).expect("deb").len();
        eprintln!("{}: {} KiB", f.display(), size / 1024);
    }
    let mut names: Vec<String> = files
        .iter()
        .map(|f| {
            text(&run_ok(Command::new("dpkg-deb").args(["-f"]).arg(f).arg("Package")).stdout)
                .trim()
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["sallyport", "sallyport-connector", "sallyport-relay"],
        "{files:?}"
    );

    let mut installed = Installed::install(&files);

    // What each package put where an admin looks for it.
    for bin in ["sallyport", "sallyport-relay", "sallyport-connector"] {
        let out = run_ok(Command::new(format!("/usr/bin/{bin}")).arg("--version"));
        assert!(text(&out.stdout).starts_with(bin), "{bin} --version");
        let page = format!("/usr/share/man/man1/{bin}.1.gz");
        let man = run_ok(
            Command::new("man")
                .args(["-l", &page])
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100"),
        );
        let man = text(&man.stdout);
        assert!(
            man.contains("NAME") && man.contains(bin),
            "man -l {page}:\n{man}"
        );
        assert!(!man.contains("generate-package-assets"), "{man}");
        for completion in [
            format!("/usr/share/bash-completion/completions/{bin}"),
            format!("/usr/share/zsh/vendor-completions/_{bin}"),
            format!("/usr/share/fish/vendor_completions.d/{bin}.fish"),
        ] {
            let script = std::fs::read_to_string(&completion)
                .unwrap_or_else(|e| panic!("{completion}: {e}"));
            assert!(script.contains(bin), "{completion}");
        }
    }
    // A page per subcommand, and completions that know them.
    assert!(Path::new("/usr/share/man/man1/sallyport-relay-serve.1.gz").exists());
    assert!(Path::new("/usr/share/man/man1/sallyport-connector-service-install.1.gz").exists());
    let bash =
        std::fs::read_to_string("/usr/share/bash-completion/completions/sallyport-connector")
            .expect("bash completion");
    assert!(bash.contains("install") && bash.contains("--ha-connections"));
    // bash itself loads it and completes a subcommand.
    let out = run_ok(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/sallyport-connector && \
         f=$(complete -p sallyport-connector | sed -E 's/.* -F ([^ ]+) .*/\\1/') && \
         COMP_WORDS=(sallyport-connector serv) COMP_CWORD=1 COMP_LINE='sallyport-connector serv' \
         COMP_POINT=24 && $f sallyport-connector serv sallyport-connector && \
         echo \"${COMPREPLY[@]}\"",
    ]));
    assert_eq!(text(&out.stdout).trim(), "service");

    for (user, config) in [
        ("sallyport-relay", RELAY_CONFIG),
        ("sallyport-connector", CONNECTOR_CONFIG),
    ] {
        let entry = passwd(user);
        let uid: u32 = entry[2].parse().expect("uid");
        assert!(uid < 1000, "{user} is a system user: {entry:?}");
        assert_eq!(entry[6], "/usr/sbin/nologin", "{entry:?}");
        // The config file: a conffile, 0640, readable by the service's group only.
        let meta = std::fs::metadata(config).expect(config);
        assert_eq!(meta.mode() & 0o777, 0o640, "{config}");
        assert_eq!(meta.uid(), 0, "{config}");
        assert_eq!(group_name(meta.gid()), user, "{config}");
        let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", user]));
        assert!(
            text(&conffiles.stdout).contains(config),
            "{config} is a conffile"
        );
    }

    // The units: systemd-analyze finds nothing wrong with them, and does
    // with a broken one (so this check can fail).
    let relay_unit = Unit::read(&Path::new(UNIT_DIR).join("sallyport-relay.service"));
    let connector_unit = Unit::read(&Path::new(UNIT_DIR).join("sallyport-connector.service"));
    for unit in [&relay_unit, &connector_unit] {
        let (ok, said) = verify(&unit.path);
        assert!(
            ok && said.trim().is_empty(),
            "systemd-analyze verify {}:\n{said}",
            unit.path.display()
        );
    }
    let broken = dir.path().join("sallyport-relay.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&relay_unit.path)
            .expect("unit")
            .replace(
                "/usr/bin/sallyport-relay serve",
                "/usr/bin/sallyport-relay-gone serve",
            ),
    )
    .expect("write unit");
    let (ok, said) = verify(&broken);
    assert!(
        !ok,
        "systemd-analyze verify passed a unit whose program is missing:\n{said}"
    );
    std::fs::write(
        &broken,
        std::fs::read_to_string(&relay_unit.path)
            .expect("unit")
            .replace("ProtectSystem=", "ProtectSytem="),
    )
    .expect("write unit");
    let (_, said) = verify(&broken);
    assert!(
        said.contains("Unknown key"),
        "a misspelt key went unnoticed:\n{said}"
    );
    assert_eq!(relay_unit.get("User"), Some("sallyport-relay"));
    assert_eq!(
        relay_unit.get("AmbientCapabilities"),
        Some("CAP_NET_BIND_SERVICE")
    );
    assert_eq!(relay_unit.get("ProtectSystem"), Some("strict"));
    assert_eq!(connector_unit.get("User"), Some("sallyport-connector"));
    assert_eq!(connector_unit.get("NoNewPrivileges"), Some("yes"));

    // The admin edits relay.toml and starts the relay as its unit does.
    let https = free_port();
    let tunnel = free_port();
    let metrics = free_port();
    let data_dir = relay_unit.state_dir();
    installed.made_state_dir(data_dir.clone());
    let example = std::fs::read_to_string(RELAY_CONFIG).expect("relay.toml");
    assert!(
        example.contains("data_dir = \"/var/lib/sallyport-relay\""),
        "{example}"
    );
    std::fs::write(
        RELAY_CONFIG,
        format!(
            "{example}\nlisten_https = \"127.0.0.1:{https}\"\nlisten_tunnel = \"127.0.0.1:{tunnel}\"\n\
             public_url = \"https://localhost:{https}\"\npublic_tunnel_addr = \"127.0.0.1:{tunnel}\"\n\
             metrics_listen = \"127.0.0.1:{metrics}\"\n"
        ),
    )
    .expect("edit relay.toml");
    let mut relay = relay_unit.spawn("packaged relay", dir.path().join("relay.log"));
    wait_for("the packaged relay to serve", || {
        assert!(
            relay.is_running(),
            "the relay exited:\n{}",
            relay.log_text()
        );
        (std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
            && data_dir.join("admin.sock").exists())
        .then_some(())
    });
    let owner = std::fs::metadata(data_dir.join("admin.sock")).expect("admin socket");
    assert_eq!(
        owner.uid().to_string(),
        passwd("sallyport-relay")[2],
        "runs as its user"
    );

    relay_admin(
        &data_dir,
        &["user", "add", USER, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    let token = relay_admin(
        &data_dir,
        &["connector", "add", "office-1", "--service", "web1"],
        "",
    )
    .lines()
    .last()
    .expect("token line")
    .trim()
    .to_owned();

    // The connector, set up as cloudflared's is: `service install`.
    let sshd = Sshd::start(dir.path());
    installed.made_state_dir(connector_unit.state_dir());
    // From a file, as the README says: a command line is visible to every
    // local user while it runs.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let out = run_ok(Command::new("/usr/bin/sallyport-connector").args([
        "service",
        "install",
        "--token-file",
        token_file.to_str().expect("utf-8 path"),
        "--service",
        &format!("web1={}", sshd.target()),
    ]));
    let said = text(&out.stdout);
    assert!(said.contains(CONNECTOR_CONFIG), "{said}");
    if !Path::new("/run/systemd/system").exists() {
        assert!(said.contains("systemd is not running"), "{said}");
    }
    let meta = std::fs::metadata(CONNECTOR_CONFIG).expect("connector.toml");
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(group_name(meta.gid()), "sallyport-connector");
    let again = Command::new("/usr/bin/sallyport-connector")
        .args([
            "service",
            "install",
            "--token",
            &token,
            "--service",
            "web1=127.0.0.1:22",
        ])
        .output()
        .expect("service install");
    assert!(
        !again.status.success(),
        "a second install overwrote the config"
    );
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );

    let mut connector =
        connector_unit.spawn("packaged connector", dir.path().join("connector.log"));
    wait_for("connector office-1 online", || {
        assert!(
            connector.is_running(),
            "the connector exited:\n{}",
            connector.log_text()
        );
        let list = relay_admin(&data_dir, &["connector", "list"], "");
        list.lines()
            .any(|l| l.split_whitespace().next() == Some("office-1") && l.contains("yes(2)"))
            .then_some(())
    });

    // A person with the packaged CLI and stock OpenSSH.
    let home = dir.path().join("home");
    let out = output_with_input(
        Command::new("/usr/bin/sallyport")
            .args(["login", "--relay", &format!("https://localhost:{https}")])
            .args(["--user", USER, "--password-stdin", "--ca-cert"])
            .arg(data_dir.join("https.pem"))
            .env("SALLYPORT_HOME", &home),
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "sallyport login: {}",
        text(&out.stderr)
    );
    let ssh = |command: &str| {
        ssh_with_key(&sshd)
            .args([
                "-o",
                "ConnectTimeout=30",
                "-o",
                "ProxyCommand=/usr/bin/sallyport proxy %n",
            ])
            .arg(format!("{}@web1", sshd.user))
            .arg(command)
            .env("SALLYPORT_HOME", &home)
            .stdin(Stdio::null())
            .output()
            .expect("ssh")
    };
    let out = ssh("echo hello from $(whoami)");
    assert!(
        out.status.success(),
        "ssh through the packages: {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("hello from {}", sshd.user)
    );

    // `systemctl reload` (ExecReload) leaves both running and says so; a
    // stray SIGHUP to the connector is harmless too.
    relay_unit.reload(relay.pid());
    connector.signal("HUP");
    wait_for("the relay and connector to log the SIGHUP", || {
        (relay.log_text().contains("SIGHUP") && connector.log_text().contains("SIGHUP"))
            .then_some(())
    });
    assert!(relay.is_running() && connector.is_running());
    let out = ssh("echo still here");
    assert!(
        out.status.success(),
        "ssh after SIGHUP: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "still here");

    // SIGTERM, as `systemctl stop` sends: both exit cleanly.
    relay.signal("TERM");
    connector.signal("TERM");
    assert!(connector.wait_exit().success(), "{}", connector.log_text());
    assert!(relay.wait_exit().success(), "{}", relay.log_text());
    eprintln!("the package test took {:?}", started.elapsed());
}
