//! Sallyport's benchmark: one run on loopback, direct path versus the
//! tunnel, measured side by side so the shared machine's noise hits both.
//! Writes docs/BENCHMARKS.md (or the path in $BENCH_OUT). Run it through
//! `scripts/bench.sh`, which builds everything in release mode first and
//! installs the two reference web terminals the browser table compares
//! against (webssh into a venv, shellinabox from Debian's packages).
//!
//! A second table puts the tunnel at 5 % datagram loss each way (through
//! the `lossy-udp` forwarder) beside the lossless one.
//!
//! The last table is the browser's: headless Chromium (driven by
//! `tests/browser/bench_browser.mjs`) against the release relay with a
//! password sshd, and against webssh and shellinabox logging in to the same
//! sshd, in the same run.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sallyport_tests::*;
use serde_json::Value;

const ECHO_MESSAGE: usize = 64;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A TCP echo server on loopback; returns its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut r = stream.try_clone().expect("clone");
                let mut w = stream;
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Direct ssh to sshd, with the same options as the tunnelled one.
fn direct_ssh(sshd: &Sshd, command: &str) -> Command {
    let mut cmd = ssh_with_key(sshd);
    cmd.arg("-p")
        .arg(sshd.port.to_string())
        .arg(format!("{}@127.0.0.1", sshd.user))
        .arg(command);
    cmd
}

/// Feeds `bytes` of data to `cmd`'s stdin; returns the wall time to exit.
fn timed_upload(mut cmd: Command, bytes: usize) -> Duration {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    let block: Vec<u8> = (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len());
        stdin.write_all(&block[..n]).expect("feed ssh");
        left -= n;
    }
    drop(stdin);
    let status = child.wait().expect("ssh exit");
    assert!(status.success(), "upload failed");
    start.elapsed()
}

/// Round trips of a small message over a duplex byte stream.
fn echo_rtts(w: &mut dyn std::io::Write, r: &mut dyn std::io::Read, n: usize) -> Vec<Duration> {
    let msg = [0x5au8; ECHO_MESSAGE];
    let mut back = [0u8; ECHO_MESSAGE];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let t = Instant::now();
        w.write_all(&msg).expect("echo write");
        w.flush().expect("flush");
        r.read_exact(&mut back).expect("echo read");
        if i >= 100 {
            out.push(t.elapsed());
        }
    }
    out
}

fn proxy(client: &Client, service: &str) -> std::process::Child {
    Command::new(bin("sallyport"))
        .args(["proxy", service])
        .env("SALLYPORT_HOME", &client.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sallyport proxy")
}

/// Time until the first line (the SSH banner) arrives.
fn banner_time(read: &mut dyn std::io::Read, start: Instant) -> Duration {
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).expect("banner");
    assert!(line.starts_with("SSH-"), "not an SSH banner: {line:?}");
    start.elapsed()
}

struct Row {
    what: String,
    direct: String,
    tunnel: String,
    result: String,
    target: String,
}

fn main() {
    let bytes = env_usize("BENCH_BYTES", 1 << 30);
    let rounds = env_usize("BENCH_ROUNDS", 2);
    let echo_n = env_usize("BENCH_ECHO", 2000);
    let setup_n = env_usize("BENCH_SETUP", 100);
    let out_path = std::env::var("BENCH_OUT").unwrap_or_else(|_| "docs/BENCHMARKS.md".into());

    // The relay also listens for connectors on TCP (the TCP transport's table).
    let env = Env::start_with_relay(
        SshdAuth::Key,
        None,
        sallyport_tests::https::RelayOptions {
            tunnel_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            ..Default::default()
        },
    );
    let echo_port = echo_server();
    let token = env.relay.token("bench", "10m", &["ssh", "echo"]);
    let _connector = start_connector(
        env.path(),
        "bench",
        Some(&token),
        &[
            format!("ssh={}", env.sshd.target()),
            format!("echo=tcp://127.0.0.1:{echo_port}"),
        ],
        &[],
    );
    env.relay.wait_online("bench", 2);
    let mut rows = Vec::new();

    // 1. Bulk upload through OpenSSH, alternating direct and tunnelled.
    eprintln!("bulk: {rounds} rounds of {bytes} bytes each way");
    let mut direct_rates = Vec::new();
    let mut tunnel_rates = Vec::new();
    for _ in 0..rounds {
        let d = timed_upload(direct_ssh(&env.sshd, "cat > /dev/null"), bytes);
        direct_rates.push(bytes as f64 / d.as_secs_f64() / 1e6);
        let t = timed_upload(
            env.client.ssh_command(&env.sshd, "ssh", "cat > /dev/null"),
            bytes,
        );
        tunnel_rates.push(bytes as f64 / t.as_secs_f64() / 1e6);
    }
    let ratio = best_of(&tunnel_rates) / best_of(&direct_rates);
    rows.push(Row {
        what: format!(
            "bulk `ssh … 'cat > /dev/null'` of {} MiB (MB/s, best of {rounds})",
            bytes >> 20
        ),
        direct: format!("{:.0} ({})", best_of(&direct_rates), listed(&direct_rates)),
        tunnel: format!("{:.0} ({})", best_of(&tunnel_rates), listed(&tunnel_rates)),
        result: format!("ratio {ratio:.2}"),
        target: format!("ratio ≥ 0.7: {}", if ratio >= 0.7 { "hit" } else { "miss" }),
    });

    // 2. Echo round trips: direct TCP versus `sallyport proxy` to the same echo server.
    eprintln!("echo: {echo_n} round trips each");
    let tcp = TcpStream::connect(("127.0.0.1", echo_port)).expect("echo connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut direct = echo_rtts(
        &mut tcp.try_clone().expect("clone"),
        &mut tcp.try_clone().expect("clone"),
        echo_n,
    );
    let mut child = proxy(&env.client, "echo");
    let mut tunnel = {
        let mut w = child.stdin.take().expect("stdin");
        let mut r = child.stdout.take().expect("stdout");
        echo_rtts(&mut w, &mut r, echo_n)
    };
    let _ = child.kill();
    let _ = child.wait();
    let (d50, d99) = (percentile(&mut direct, 0.5), percentile(&mut direct, 0.99));
    let (t50, t99) = (percentile(&mut tunnel, 0.5), percentile(&mut tunnel, 0.99));
    let (a50, a99) = (t50.saturating_sub(d50), t99.saturating_sub(d99));
    rows.push(Row {
        what: format!("echo round trip, {ECHO_MESSAGE} B, p50 / p99 (ms)"),
        direct: format!("{:.3} / {:.3}", ms(d50), ms(d99)),
        tunnel: format!("{:.3} / {:.3}", ms(t50), ms(t99)),
        result: format!("added {:.3} / {:.3}", ms(a50), ms(a99)),
        target: format!(
            "added p50 ≤ 0.5, p99 ≤ 2: {}",
            if ms(a50) <= 0.5 && ms(a99) <= 2.0 {
                "hit"
            } else {
                "miss"
            }
        ),
    });

    // 3. Session set-up: until the SSH banner arrives (TLS, WebSocket, QUIC
    // stream, connector's TCP connect), including starting the proxy process.
    eprintln!("set-up: {setup_n} sessions each");
    let mut direct = Vec::new();
    let mut tunnel = Vec::new();
    for _ in 0..setup_n {
        let start = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", env.sshd.port)).expect("sshd");
        direct.push(banner_time(&mut s, start));
        let start = Instant::now();
        let mut child = proxy(&env.client, "ssh");
        let mut out = child.stdout.take().expect("stdout");
        tunnel.push(banner_time(&mut out, start));
        let _ = child.kill();
        let _ = child.wait();
    }
    let (d50, d99) = (percentile(&mut direct, 0.5), percentile(&mut direct, 0.99));
    let (t50, t99) = (percentile(&mut tunnel, 0.5), percentile(&mut tunnel, 0.99));
    rows.push(Row {
        what: "session set-up to SSH banner, p50 / p99 (ms)".into(),
        direct: format!("{:.2} / {:.2}", ms(d50), ms(d99)),
        tunnel: format!("{:.2} / {:.2}", ms(t50), ms(t99)),
        result: format!("p50 {:.2}", ms(t50)),
        target: format!("p50 ≤ 20: {}", if ms(t50) <= 20.0 { "hit" } else { "miss" }),
    });

    // 4. A whole `ssh host true`, for the figure a person feels.
    let logins = 20;
    let mut direct = Vec::new();
    let mut tunnel = Vec::new();
    for _ in 0..logins {
        let start = Instant::now();
        assert!(direct_ssh(&env.sshd, "true")
            .status()
            .expect("ssh")
            .success());
        direct.push(start.elapsed());
        let start = Instant::now();
        assert!(env
            .client
            .ssh_command(&env.sshd, "ssh", "true")
            .status()
            .expect("ssh")
            .success());
        tunnel.push(start.elapsed());
    }
    let (d50, t50) = (percentile(&mut direct, 0.5), percentile(&mut tunnel, 0.5));
    rows.push(Row {
        what: format!("`ssh host true`, login to exit, p50 of {logins} (ms)"),
        direct: format!("{:.1}", ms(d50)),
        tunnel: format!("{:.1}", ms(t50)),
        result: format!("added {:.1}", ms(t50.saturating_sub(d50))),
        target: "(no target)".into(),
    });

    // 5. QUIC at 5 % loss, beside the lossless tunnel in the same run.
    let loss = loss_section(&env);
    // 6. The TCP transport, beside QUIC in the same run.
    let tcp_table = tcp_section(&env, echo_port);

    // The browser's budgets, with the tunnel benchmark's processes gone.
    drop(_connector);
    drop(env);
    // BENCH_BROWSER=0 skips the browser table (for quick paired runs of the
    // tunnel figures).
    let browser = if env_usize("BENCH_BROWSER", 1) == 0 {
        "## In the browser\n\nNot measured in this run (BENCH_BROWSER=0).\n".to_owned()
    } else {
        browser_section()
    };

    let mut md = String::new();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| stdout(&o))
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let ssh_v = Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| stderr(&o))
        .unwrap_or_default();
    let _ = writeln!(md, "# Sallyport benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench.sh` (release build) on {date}: {cores} cores ({cpu}), loopback, {ssh_v}, \
         default cipher. Direct and tunnelled runs alternate in one process, so both see the same machine load; \
         compare ratios, not absolute figures, across runs.\n"
    );
    let _ = writeln!(
        md,
        "| measure | direct | through Sallyport | result | target |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.what, r.direct, r.tunnel, r.result, r.target
        );
    }
    let _ = writeln!(
        md,
        "\nThe tunnelled path is `ssh -o ProxyCommand='sallyport proxy %n'` → relay (TLS + WebSocket) → QUIC stream \
         → connector → sshd, all on this machine, so its processes share the cores with ssh and sshd. \
         Set-up is measured from starting `sallyport proxy` (process start, TLS, WebSocket upgrade, QUIC stream, \
         the connector's TCP connect) to the SSH banner; direct is a TCP connect to the banner."
    );
    md.push_str(&loss);
    md.push_str(&tcp_table);
    md.push_str(&browser);
    std::fs::write(&out_path, &md).expect("write benchmarks");
    print!("{md}");
}

// ---- measures that alternate between two services of the same run

/// Best of `v`, for rates.
fn best_of(v: &[f64]) -> f64 {
    v.iter().cloned().fold(0.0, f64::max)
}

/// `v` as whole numbers, comma-separated.
fn listed(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// MB/s of `rounds` uploads of `bytes` through `ssh … 'cat > /dev/null'`
/// to each of `services`, alternating, one list per service.
fn alternate_uploads(env: &Env, services: [&str; 2], bytes: usize, rounds: usize) -> [Vec<f64>; 2] {
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, service) in services.iter().enumerate() {
            let t = timed_upload(
                env.client
                    .ssh_command(&env.sshd, service, "cat > /dev/null"),
                bytes,
            );
            rates[i].push(bytes as f64 / t.as_secs_f64() / 1e6);
        }
    }
    rates
}

/// `n` set-ups (`sallyport proxy` started to the SSH banner) to each of
/// `services`, alternating, one list per service.
fn alternate_setups(env: &Env, services: [&str; 2], n: usize) -> [Vec<Duration>; 2] {
    let mut setup = [Vec::new(), Vec::new()];
    for _ in 0..n {
        for (i, service) in services.iter().enumerate() {
            let start = Instant::now();
            let mut child = proxy(&env.client, service);
            let mut out = child.stdout.take().expect("stdout");
            setup[i].push(banner_time(&mut out, start));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    setup
}

// ---- QUIC at 5 % loss: through the lossy forwarder, against no loss

/// Fraction of datagrams the forwarder drops each way.
const LOSS: f64 = 0.05;

/// Runs `lossy-udp` (built beside this binary) towards the relay's tunnel
/// port; returns it and the address it listens on.
fn start_lossy_forwarder(env: &Env) -> (Proc, String) {
    let proc = Proc::spawn(
        "lossy-udp",
        Command::new(bin("lossy-udp"))
            .args(["--to", &format!("127.0.0.1:{}", env.relay.tunnel_port)])
            .args(["--loss", &LOSS.to_string()]),
        env.path().join("lossy-udp.log"),
    );
    let addr = wait_for("the lossy forwarder to listen", || {
        proc.log_text()
            .lines()
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
    });
    (proc, addr)
}

/// The tunnel at [`LOSS`] each way: a second connector reaches the relay
/// through `lossy-udp`; bulk, set-up and login are measured through it and,
/// alternating, through the lossless connector of the table above. Returns
/// the section's Markdown.
fn loss_section(env: &Env) -> String {
    let bytes = env_usize("BENCH_LOSS_BYTES", 64 << 20);
    let rounds = env_usize("BENCH_ROUNDS", 2);
    let setup_n = env_usize("BENCH_LOSS_SETUP", 20);
    let logins = 10;
    let pct = LOSS * 100.0;
    let (mut forwarder, relay) = start_lossy_forwarder(env);
    let token = env.relay.token("bench-lossy", "10m", &["ssh-lossy"]);
    let _connector = start_connector(
        env.path(),
        "bench-lossy",
        Some(&token),
        &[format!("ssh-lossy={}", env.sshd.target())],
        // QUIC only, so auto cannot take it around the forwarder over TCP.
        &["--relay", &relay, "--transport", "quic"],
    );
    env.relay.wait_online("bench-lossy", 2);
    // Index 0 the lossless connector's service, 1 the lossy one's.
    let services = ["ssh", "ssh-lossy"];

    eprintln!("loss: {rounds} rounds of {bytes} bytes, {setup_n} set-ups, {logins} logins, each at 0 and {pct} % loss");
    let rates = alternate_uploads(env, services, bytes, rounds);
    let setup = alternate_setups(env, services, setup_n);
    let mut login = [Vec::new(), Vec::new()];
    for _ in 0..logins {
        for (i, service) in services.iter().enumerate() {
            let start = Instant::now();
            assert!(env
                .client
                .ssh_command(&env.sshd, service, "true")
                .status()
                .expect("ssh")
                .success());
            login[i].push(start.elapsed());
        }
    }
    forwarder.signal("TERM");
    forwarder.wait_exit();
    let counts = forwarder
        .log_text()
        .lines()
        .find_map(|l| l.strip_prefix("counts: ").map(str::to_owned))
        .unwrap_or_else(|| "not reported".into());

    let mut md = String::new();
    let _ = writeln!(md, "\n## QUIC at {pct} % loss\n");
    let _ = writeln!(
        md,
        "The same run, the same relay and sshd: a second connector reaches the relay's tunnel port through \
         `lossy-udp` (`tests/src/bin/lossy-udp.rs`), which drops {pct} % of the datagrams in each direction \
         at random (seeded); each measure alternates between it and the lossless connector above.\n"
    );
    let _ = writeln!(md, "| measure | no loss | {pct} % loss each way | ratio |");
    let _ = writeln!(md, "|---|---|---|---|");
    let (clean, lossy) = (best_of(&rates[0]), best_of(&rates[1]));
    let _ = writeln!(
        md,
        "| bulk `ssh … 'cat > /dev/null'` of {} MiB (MB/s, best of {rounds}) | {clean:.0} ({}) | {lossy:.1} ({}) | {:.2} |",
        bytes >> 20,
        listed(&rates[0]),
        listed(&rates[1]),
        lossy / clean
    );
    let [mut s0, mut s1] = setup;
    let (c50, c99) = (percentile(&mut s0, 0.5), percentile(&mut s0, 0.99));
    let (l50, l99) = (percentile(&mut s1, 0.5), percentile(&mut s1, 0.99));
    let _ = writeln!(
        md,
        "| session set-up to SSH banner, p50 / p99 of {setup_n} (ms) | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} (p50) |",
        ms(c50),
        ms(c99),
        ms(l50),
        ms(l99),
        ms(l50) / ms(c50)
    );
    let [mut g0, mut g1] = login;
    let (c50, l50) = (percentile(&mut g0, 0.5), percentile(&mut g1, 0.5));
    let _ = writeln!(
        md,
        "| `ssh host true`, login to exit, p50 of {logins} (ms) | {:.1} | {:.1} | {:.2} |",
        ms(c50),
        ms(l50),
        ms(l50) / ms(c50)
    );
    let _ = writeln!(
        md,
        "\nThe ratio is the lossy figure over the lossless one (throughput: below 1 is slower; times: above 1 \
         is slower). The connections are up before the clock starts, so set-up and login are a QUIC stream, \
         not a QUIC handshake, through the loss. The forwarder's own count: {counts}."
    );
    md
}

// ---- the TCP transport: TLS over TCP with HTTP/2, against QUIC

/// A second connector on `--transport tcp` serving the same sshd and echo
/// server; bulk, echo and set-up alternate between it and the QUIC
/// connector of the first table. Returns the section's Markdown.
fn tcp_section(env: &Env, echo_port: u16) -> String {
    let bytes = env_usize("BENCH_TCP_BYTES", 256 << 20);
    let rounds = env_usize("BENCH_ROUNDS", 2);
    let echo_n = env_usize("BENCH_ECHO", 2000);
    let setup_n = env_usize("BENCH_SETUP", 100);
    let token = env
        .relay
        .token("bench-tcp", "10m", &["ssh-tcp", "echo-tcp"]);
    let _connector = start_connector(
        env.path(),
        "bench-tcp",
        Some(&token),
        &[
            format!("ssh-tcp={}", env.sshd.target()),
            format!("echo-tcp=tcp://127.0.0.1:{echo_port}"),
        ],
        &["--transport", "tcp"],
    );
    env.relay.wait_online("bench-tcp", 2);
    // Index 0 QUIC (the first table's connector), 1 TCP.
    let ssh = ["ssh", "ssh-tcp"];
    let echo = ["echo", "echo-tcp"];
    eprintln!("tcp: {rounds} rounds of {bytes} bytes, {echo_n} echoes, {setup_n} set-ups, each over QUIC and TCP");
    let rates = alternate_uploads(env, ssh, bytes, rounds);
    let direct = TcpStream::connect(("127.0.0.1", echo_port)).expect("echo connect");
    direct.set_nodelay(true).expect("nodelay");
    let mut rtts = [Vec::new(), Vec::new(), Vec::new()];
    rtts[2] = echo_rtts(
        &mut direct.try_clone().expect("clone"),
        &mut direct.try_clone().expect("clone"),
        echo_n,
    );
    for (i, service) in echo.iter().enumerate() {
        let mut child = proxy(&env.client, service);
        let mut w = child.stdin.take().expect("stdin");
        let mut r = child.stdout.take().expect("stdout");
        rtts[i] = echo_rtts(&mut w, &mut r, echo_n);
        let _ = child.kill();
        let _ = child.wait();
    }
    let setup = alternate_setups(env, ssh, setup_n);

    let mut md = String::new();
    let _ = writeln!(md, "\n## The TCP transport\n");
    let _ = writeln!(
        md,
        "The same run, the same relay, sshd and echo server: a second connector on `--transport tcp` (TLS over \
         TCP, HTTP/2 carrying the streams, as where UDP is blocked) beside the QUIC connector of the first \
         table; each measure alternates between the two.\n"
    );
    let _ = writeln!(md, "| measure | QUIC | TCP | TCP ÷ QUIC | target |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let (quic, tcp) = (best_of(&rates[0]), best_of(&rates[1]));
    let ratio = tcp / quic;
    let _ = writeln!(
        md,
        "| bulk `ssh … 'cat > /dev/null'` of {} MiB (MB/s, best of {rounds}) | {quic:.0} ({}) | {tcp:.0} ({}) | {ratio:.2} | ≥ 0.8: {} |",
        bytes >> 20,
        listed(&rates[0]),
        listed(&rates[1]),
        if ratio >= 0.8 { "hit" } else { "miss" }
    );
    let [mut q, mut t, mut d] = rtts;
    let (d50, d99) = (percentile(&mut d, 0.5), percentile(&mut d, 0.99));
    let (q50, q99) = (percentile(&mut q, 0.5), percentile(&mut q, 0.99));
    let (t50, t99) = (percentile(&mut t, 0.5), percentile(&mut t, 0.99));
    let added = |x: Duration, base: Duration| ms(x.saturating_sub(base));
    let _ = writeln!(
        md,
        "| echo round trip through `sallyport proxy`, {ECHO_MESSAGE} B, added to direct TCP ({:.3} / {:.3}), p50 / p99 (ms) | {:.3} / {:.3} | {:.3} / {:.3} | {:.2} (p50) | |",
        ms(d50),
        ms(d99),
        added(q50, d50),
        added(q99, d99),
        added(t50, d50),
        added(t99, d99),
        ms(t50) / ms(q50)
    );
    let [mut s0, mut s1] = setup;
    let (q50, q99) = (percentile(&mut s0, 0.5), percentile(&mut s0, 0.99));
    let (t50, t99) = (percentile(&mut s1, 0.5), percentile(&mut s1, 0.99));
    let _ = writeln!(
        md,
        "| session set-up to SSH banner, p50 / p99 of {setup_n} (ms) | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} (p50) | |",
        ms(q50),
        ms(q99),
        ms(t50),
        ms(t99),
        ms(t50) / ms(q50)
    );
    let _ = writeln!(
        md,
        "\nThe connections are up before the clock starts: set-up is a new stream on a live connection (a QUIC \
         stream, or an HTTP/2 stream on TLS over TCP), not a handshake."
    );
    md
}

// ---- the browser: page weight, page load to prompt, terminal throughput

/// How long the whole browser half may take before it is stopped.
const BROWSER_BENCH_LIMIT: Duration = Duration::from_secs(30 * 60);

/// A reference web terminal, started for the run, or why it is not measured.
struct Peer {
    name: &'static str,
    version: String,
    url: Result<String, String>,
    _proc: Option<Proc>,
}

fn version_of(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let text = format!("{}{}", stdout(&o), stderr(&o));
            text.lines().next().unwrap_or_default().trim().to_owned()
        })
        .unwrap_or_default()
}

fn serve_on(port: u16, name: &str, mut proc: Proc) -> Result<(String, Proc), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if !proc.is_running() || Instant::now() > deadline {
            let log = proc.log_text();
            let last = log.lines().last().unwrap_or("no output").to_owned();
            return Err(format!("{name} did not start: {last}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((format!("http://127.0.0.1:{port}/"), proc))
}

/// webssh (PyPI), from the venv `scripts/bench.sh` makes ($BENCH_WSSH).
fn start_webssh(dir: &Path) -> Peer {
    let wssh = std::env::var("BENCH_WSSH").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-venv/bin/wssh").into()
    });
    let mut peer = Peer {
        name: "webssh",
        version: String::new(),
        url: Err(format!(
            "not measured: {wssh} is missing (scripts/bench.sh installs webssh)"
        )),
        _proc: None,
    };
    if !Path::new(&wssh).exists() {
        return peer;
    }
    peer.version = version_of(&wssh, "--version");
    let port = free_port();
    let proc = Proc::spawn(
        "wssh",
        Command::new(&wssh).args([
            "--address=127.0.0.1",
            &format!("--port={port}"),
            // sshd's host key is new each run: accept it, as a person would.
            "--policy=autoadd",
        ]),
        dir.join("wssh.log"),
    );
    match serve_on(port, "wssh", proc) {
        Ok((url, proc)) => {
            peer.url = Ok(url);
            peer._proc = Some(proc);
        }
        Err(e) => peer.url = Err(format!("not measured: {e}")),
    }
    peer
}

/// shellinabox (Debian's package): a service that runs OpenSSH's `ssh` to
/// the sshd, so the page shows ssh's password prompt.
fn start_shellinabox(dir: &Path, sshd: &Sshd) -> Peer {
    let bin = "/usr/bin/shellinaboxd";
    let mut peer = Peer {
        name: "shellinabox",
        version: String::new(),
        url: Err(format!(
            "not measured: {bin} is missing (scripts/bench.sh installs shellinabox)"
        )),
        _proc: None,
    };
    if !Path::new(bin).exists() {
        return peer;
    }
    peer.version = version_of(bin, "--version");
    let port = free_port();
    let ssh = format!(
        "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o LogLevel=ERROR -p {} {}@127.0.0.1",
        sshd.port, sshd.user
    );
    let proc = Proc::spawn(
        "shellinaboxd",
        Command::new(bin)
            .args(["--disable-ssl", "--localhost-only", "--no-beep", "-p"])
            .arg(port.to_string())
            .arg("-s")
            .arg(format!("/:root:root:/tmp:{ssh}")),
        dir.join("shellinabox.log"),
    );
    match serve_on(port, "shellinaboxd", proc) {
        Ok((url, proc)) => {
            peer.url = Ok(url);
            peer._proc = Some(proc);
        }
        Err(e) => peer.url = Err(format!("not measured: {e}")),
    }
    peer
}

/// Runs `tests/browser/bench_browser.mjs`; its progress goes to our stderr.
fn run_browser_bench(vars: &[(String, String)]) -> Result<Value, String> {
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core").exists() {
        return Err("playwright-core is not installed (scripts/bench.sh installs it)".into());
    }
    let mut child = Command::new("node")
        .arg(dir.join("bench_browser.mjs"))
        .current_dir(&dir)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let Some(status) = wait_or_kill(&mut child, BROWSER_BENCH_LIMIT) else {
        return Err(format!("took longer than {BROWSER_BENCH_LIMIT:?}"));
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("bench_browser.mjs failed ({status})"));
    }
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .map_err(|e| format!("bench_browser.mjs printed no JSON ({e})"))
}

/// Milliseconds from each run's JSON object, sorted.
fn load_ms(v: &Value, field: &str) -> Vec<f64> {
    let mut ms: Vec<f64> = v["load"]
        .as_array()
        .map(|runs| runs.iter().filter_map(|r| r[field].as_f64()).collect())
        .unwrap_or_default();
    ms.sort_by(f64::total_cmp);
    ms
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn load_cell(sorted: &[f64]) -> String {
    if sorted.is_empty() {
        return "—".into();
    }
    format!(
        "{:.0} / {:.0} ({:.0}–{:.0})",
        pct(sorted, 0.5),
        pct(sorted, 0.9),
        sorted[0],
        sorted[sorted.len() - 1]
    )
}

/// Best MB/s over the runs, and a cell with every run.
fn seq_cell(v: &Value, seq_n: u64) -> (Option<f64>, String) {
    let runs = v["seq"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        return (None, "—".into());
    }
    let rate = |r: &Value| r["mbPerSecond"].as_f64().unwrap_or(0.0);
    let best = runs.iter().map(rate).fold(0.0, f64::max);
    let all = runs
        .iter()
        .map(|r| {
            if r["complete"].as_bool() == Some(true) {
                format!("{:.2} in {:.2} s", rate(r), r["seconds"].as_f64().unwrap_or(0.0))
            } else {
                let lines = r["lines"].as_u64().unwrap_or(0);
                let secs = r["seconds"].as_f64().unwrap_or(0.0);
                format!(
                    "**did not finish**: {lines} of {seq_n} lines in {secs:.0} s = {:.0} lines/s, {:.4} MB/s",
                    lines as f64 / secs.max(1e-9),
                    rate(r)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    if runs.iter().all(|r| r["complete"].as_bool() == Some(true)) {
        (Some(best), format!("{best:.2} ({all})"))
    } else {
        (Some(best), all)
    }
}

/// A ratio, with the digits that matter: 0.64×, 1.3×, 2400×.
fn times(r: f64) -> String {
    match r {
        r if r >= 100.0 => format!("{r:.0}×"),
        r if r >= 10.0 => format!("{r:.1}×"),
        r => format!("{r:.2}×"),
    }
}

fn kb(bytes: f64) -> String {
    format!("{:.0}", bytes / 1000.0)
}

/// The browser table, measured now: returns its Markdown.
fn browser_section() -> String {
    let runs = env_usize("BENCH_BROWSER_RUNS", 10);
    let seq_runs = env_usize("BENCH_SEQ_RUNS", 3);
    let siab_seq_s = env_usize("BENCH_SIAB_SEQ_S", 60);
    let service = "web1";
    let env = Env::start_with(SshdAuth::Password);
    // The Sallyport user is named like the Unix account, so the login name
    // the terminal prefills is the right one.
    env.relay.add_user(E2E_UNIX_USER, PASSWORD);
    let _connector = env.connector("browser", service, &[]);
    env.relay.wait_online("browser", 2);
    let webssh = start_webssh(env.path());
    let siab = start_shellinabox(env.path(), &env.sshd);
    let profile = env.path().join("chromium-bench");
    std::fs::create_dir_all(&profile).expect("browser profile");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut vars: Vec<(String, String)> = vec![
        ("SALLYPORT_URL".into(), env.relay.url()),
        ("SALLYPORT_USER".into(), E2E_UNIX_USER.into()),
        ("SALLYPORT_PASSWORD".into(), PASSWORD.into()),
        ("SERVICE".into(), service.into()),
        ("SSH_USER".into(), E2E_UNIX_USER.into()),
        ("SSH_PASSWORD".into(), E2E_UNIX_PASSWORD.into()),
        ("SSHD_PORT".into(), env.sshd.port.to_string()),
        ("BROWSER_PROFILE".into(), profile.display().to_string()),
        ("CHROMIUM".into(), chromium),
        ("RUNS".into(), runs.to_string()),
        ("SEQ_RUNS".into(), seq_runs.to_string()),
        ("SIAB_SEQ_S".into(), siab_seq_s.to_string()),
    ];
    if let Ok(url) = &webssh.url {
        vars.push(("WEBSSH_URL".into(), url.clone()));
    }
    if let Ok(url) = &siab.url {
        vars.push(("SIAB_URL".into(), url.clone()));
    }
    eprintln!("browser: {runs} page loads, {seq_runs} seq runs each (shellinabox: one, {siab_seq_s} s at most)");
    let result = run_browser_bench(&vars);
    let mut md = String::new();
    let _ = writeln!(md, "\n## In the browser\n");
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                md,
                "Not measured: the browser benchmark could not run: {e}."
            );
            return md;
        }
    };
    let seq_n = r["seqN"].as_u64().unwrap_or(0);
    let seq_mb = r["seqBytes"].as_f64().unwrap_or(0.0) / 1e6;
    let sp = &r["sallyport"];
    // Each peer's column: its JSON, or why there is none.
    let column = |peer: &Peer| -> Result<Value, String> {
        match &peer.url {
            Err(e) => Err(e.clone()),
            Ok(_) => match r[peer.name].as_object() {
                None => Err("not measured: no result".into()),
                Some(_)
                    if r[peer.name]["error"].is_string()
                        && r[peer.name]["load"].as_array().is_none_or(|l| l.is_empty()) =>
                {
                    Err(format!(
                        "not measured: {}",
                        r[peer.name]["error"].as_str().unwrap_or("")
                    ))
                }
                Some(_) => Ok(r[peer.name].clone()),
            },
        }
    };
    let peers: Vec<(&Peer, Result<Value, String>)> = [&webssh, &siab]
        .into_iter()
        .map(|p| (p, column(p)))
        .collect();
    let cell = |res: &Result<Value, String>, f: &dyn Fn(&Value) -> String| match res {
        Ok(v) => f(v),
        Err(e) => e.clone(),
    };

    let mut rows: Vec<[String; 6]> = Vec::new();
    // 1. Page weight.
    let weight = |v: &Value| {
        let w = &v["weight"];
        match (w["bytes"].as_f64(), w["gzip"].as_f64()) {
            (Some(b), Some(g)) => format!(
                "{} ({} raw, {} files)",
                kb(g),
                kb(b),
                w["files"].as_array().map_or(0, Vec::len)
            ),
            _ => "—".into(),
        }
    };
    let sp_gz = sp["weight"]["gzip"].as_f64();
    rows.push([
        "whole terminal page, gzipped (KB)".into(),
        weight(sp),
        cell(&peers[0].1, &weight),
        cell(&peers[1].1, &weight),
        sp_gz.map_or("—".into(), |g| {
            format!("{:.0} % of the budget", g / 600_000.0 * 100.0)
        }),
        sp_gz.map_or("not measured".into(), |g| {
            format!("≤ 600: {}", if g <= 600_000.0 { "hit" } else { "miss" })
        }),
    ]);
    // 2. Terminal page to prompt (Sallyport only: the peers have no separate sign-in).
    let sp_term = load_ms(sp, "terminalMs");
    rows.push([
        format!("terminal page → shell prompt, signed in, p50 / p90 (min–max) of {runs} (ms)"),
        load_cell(&sp_term),
        "—".into(),
        "—".into(),
        if sp_term.is_empty() {
            "—".into()
        } else {
            format!("p50 {:.0}", pct(&sp_term, 0.5))
        },
        if sp_term.is_empty() {
            "not measured".into()
        } else {
            format!(
                "p50 ≤ 1000: {}",
                if pct(&sp_term, 0.5) <= 1000.0 {
                    "hit"
                } else {
                    "miss"
                }
            )
        },
    ]);
    // 3. The whole way in, from the first page.
    let sp_all = load_ms(sp, "withSignInMs");
    let all_cell = |v: &Value| load_cell(&load_ms(v, "withSignInMs"));
    let ratios: Vec<String> = peers
        .iter()
        .filter_map(|(p, res)| {
            let peer = load_ms(res.as_ref().ok()?, "withSignInMs");
            (!peer.is_empty() && !sp_all.is_empty())
                .then(|| format!("{} {}", times(pct(&sp_all, 0.5) / pct(&peer, 0.5)), p.name))
        })
        .collect();
    rows.push([
        format!("first page → shell prompt, with sign-in / login form, p50 / p90 (min–max) of {runs} (ms)"),
        load_cell(&sp_all),
        cell(&peers[0].1, &all_cell),
        cell(&peers[1].1, &all_cell),
        if ratios.is_empty() {
            "—".into()
        } else {
            format!("Sallyport's p50 is {}", ratios.join(", "))
        },
        "(no budget)".into(),
    ]);
    // 4. Throughput.
    let (sp_rate, sp_seq) = seq_cell(sp, seq_n);
    let seq_of = |v: &Value| seq_cell(v, seq_n).1;
    let ratios: Vec<String> = peers
        .iter()
        .filter_map(|(p, res)| {
            let (rate, _) = seq_cell(res.as_ref().ok()?, seq_n);
            let (ours, theirs) = (sp_rate?, rate?);
            (theirs > 0.0).then(|| format!("{} {}", times(ours / theirs), p.name))
        })
        .collect();
    rows.push([
        format!(
            "`seq 1 {seq_n}` ({seq_mb:.2} MB) into the terminal, MB/s, best of runs (each run)"
        ),
        sp_seq,
        cell(&peers[0].1, &seq_of),
        cell(&peers[1].1, &seq_of),
        if ratios.is_empty() {
            "—".into()
        } else {
            format!("Sallyport is {}", ratios.join(", "))
        },
        "(no budget; compared)".into(),
    ]);

    // `1.6.3`, `ShellInABox version 2.20`: the name and the last word.
    let version = |p: &Peer| match p.version.split_whitespace().last() {
        Some(v) => format!("{} {v}", p.name),
        None => p.name.to_owned(),
    };
    let _ = writeln!(
        md,
        "Measured in the same run, after the table above: {} (headless, the test flags) driven by playwright-core, \
         on loopback, against the release relay with a connector and a password sshd (PAM), and against two \
         reference web terminals logging in to the same sshd as the same Unix user: {} (PyPI, in a venv; SSH \
         terminated on the server by paramiko, xterm.js in the page) and {} (Debian's package; a service \
         that runs OpenSSH's `ssh` to the sshd, AJAX long-polling).\n",
        r["browserVersion"]
            .as_str()
            .map_or("Chromium".into(), |v| format!("Chromium {v}")),
        version(&webssh),
        version(&siab)
    );
    let _ = writeln!(
        md,
        "| measure | Sallyport | {} | {} | result | budget |",
        version(&webssh),
        version(&siab)
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for row in &rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    for (name, v) in [
        ("Sallyport", sp),
        ("webssh", &r["webssh"]),
        ("shellinabox", &r["shellinabox"]),
    ] {
        if let Some(e) = v["error"].as_str() {
            let _ = writeln!(md, "\n{name}: the measurement stopped early: {e}");
        }
    }
    let files = sp["weight"]["files"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    format!(
                        "`{}` {:.1} → {:.1}",
                        f["path"].as_str().unwrap_or("?"),
                        f["bytes"].as_f64().unwrap_or(0.0) / 1000.0,
                        f["gzip"].as_f64().unwrap_or(0.0) / 1000.0
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "\nWhat is measured, precisely:\n\n\
         - **Page weight**: every GET response that loading Sallyport's terminal page `/t/{service}` made \
         Chromium fetch (after sign-in, so the sign-in and services pages are not counted; the WebSocket is not a \
         file), fetched again as served and gzipped at level 9 (what the relay sends browsers, which ask for gzip: it serves each file pre-compressed with gzip -9n). The page \
         uses no web fonts (the terminal uses the system's monospace font). KB = 1,000 bytes. Sallyport's files, \
         KB raw → gzipped: {files}. The peers' cells are the same measure of their pages (webssh: its form page, \
         which is also its terminal; shellinabox serves gzip itself).\n\
         - **Terminal page → shell prompt**: each of {runs} runs is a fresh browser context (empty cache, no \
         cookies). It signs in (not timed here), then the clock starts at the navigation to `/t/{service}` and \
         stops when the terminal's cursor line ends in `$` or `#` (checked in the page every 10 ms), having on the \
         way: waited for the `login as:` prompt with the prefilled user name and pressed Enter, waited for the \
         password prompt, typed the password and Enter. That is: page, wasm and xterm.js load, TLS + WebSocket + \
         QUIC stream to sshd, SSH key exchange in wasm, host-key check, password authentication (PAM), shell.\n\
         - **First page → shell prompt**: the same runs, from the navigation to the sign-in page: fill and send \
         the sign-in form, the services page, then the above. For webssh: its page, filling its form (host, \
         port, user, password), Connect, until the prompt. For shellinabox: its page until ssh's password prompt, \
         typing the password and Enter, until the prompt.\n\
         - **Throughput**: in a fresh context signed in to a shell, `echo st\"\"art; seq 1 {seq_n}; echo e\"\"nd` \
         is typed (the quotes keep the echoed command line from matching the marker lines `start` and `end`); the time runs from the page's clock just before the Enter key to the moment the terminal \
         completes the `end` line. In xterm.js (Sallyport, webssh) every line is checked as the terminal \
         completes it (`onLineFeed`), so a run counts only if all {seq_n} lines arrived in order; MB/s is the \
         {seq_mb:.2} MB that `seq` prints divided by that time. shellinabox has its own DOM terminal that keeps \
         about 2,000 lines: the page is polled every 50 ms for the highest number on a completed line and the \
         `end` line; it gets one run, stopped after {siab_seq_s} s (or a little later: its page's main thread is busy), \
         and if it does not finish, the rate is the lines it reached in the time it had.\n\
         - Ratios: Sallyport's p50 over the peer's p50 (below 1 is faster); Sallyport's best MB/s over the \
         peer's best. Everything shares the 2 cores with Chromium, the relay, the connector, sshd and the peers."
    );
    drop(peers);
    md
}
