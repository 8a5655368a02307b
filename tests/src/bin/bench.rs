//! Sallyport's benchmark: one run on loopback, direct path versus the
//! tunnel, measured side by side so the shared machine's noise hits both.
//! Writes docs/BENCHMARKS.md (or the path in $BENCH_OUT). Run it through
//! `scripts/bench.sh`, which builds everything in release mode first.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sallyport_tests::*;

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
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-i"])
        .arg(&sshd.client_key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
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

    let env = Env::start();
    let echo_port = echo_server();
    let token = env.relay.token("bench", "10m");
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
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let ratio = best(&tunnel_rates) / best(&direct_rates);
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    rows.push(Row {
        what: format!(
            "bulk `ssh … 'cat > /dev/null'` of {} MiB (MB/s, best of {rounds})",
            bytes >> 20
        ),
        direct: format!("{:.0} ({})", best(&direct_rates), list(&direct_rates)),
        tunnel: format!("{:.0} ({})", best(&tunnel_rates), list(&tunnel_rates)),
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
        "\nThe tunnelled path is `ssh -o ProxyCommand='sallyport proxy %h'` → relay (TLS + WebSocket) → QUIC stream \
         → connector → sshd, all on this machine, so its processes share the cores with ssh and sshd. \
         Set-up is measured from starting `sallyport proxy` (process start, TLS, WebSocket upgrade, QUIC stream, \
         the connector's TCP connect) to the SSH banner; direct is a TCP connect to the banner."
    );
    std::fs::write(&out_path, &md).expect("write benchmarks");
    print!("{md}");
}
