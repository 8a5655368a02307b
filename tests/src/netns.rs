//! A network namespace joined to this one by a veth pair, with nftables
//! inside it: a connector on a network that drops outbound UDP, as hotel
//! and corporate networks do. Needs root (`ip netns`, `nft`); the
//! namespace, its veth pair and its rules go when the value is dropped.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{bin, run_ok, Env, Proc, SshdAuth};

/// The nftables table the namespace's rules live in.
const TABLE: &str = "sallyport_test";

/// One namespace and its link to this one.
pub struct Netns {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub name: String,
    /// This side's address on the link: the namespace reaches this host here.
    pub host_ip: Ipv4Addr,
    /// The namespace's address on the link.
    pub ns_ip: Ipv4Addr,
}

impl Netns {
    /// A namespace with loopback and a /30 link to this one, on addresses
    /// no other test of any process uses at once (from the process id and
    /// a counter).
    pub fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("{}{}", pid % 100_000, n);
        let name = format!("spt{id}");
        // 10.B.C.D/30 from the pid and the counter: 2^14 pids x 64 links.
        let slot = (pid % (1 << 14)) * 64 + (n % 64);
        let base = Ipv4Addr::from(0x0a00_0000 | 0x0040_0000 | (slot << 2));
        let host_ip = Ipv4Addr::from(u32::from(base) + 1);
        let ns_ip = Ipv4Addr::from(u32::from(base) + 2);
        let (host_if, ns_if) = (format!("sph{id}"), format!("spn{id}"));
        let ip = |args: &[&str]| {
            run_ok(Command::new("ip").args(args));
        };
        ip(&["netns", "add", &name]);
        let netns = Self {
            name,
            host_ip,
            ns_ip,
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &netns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        netns.run(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        netns.run(&["ip", "link", "set", &ns_if, "up"]);
        netns.run(&["ip", "link", "set", "lo", "up"]);
        netns
    }

    /// `program` run inside the namespace (`ip netns exec` execs it, so
    /// the child's pid is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `args` inside the namespace; panics with its output if it fails.
    pub fn run(&self, args: &[&str]) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        run_ok(&mut cmd);
    }

    /// From now on the namespace sends no UDP at all (nftables drops it
    /// on output), as a network that blocks UDP does.
    pub fn drop_outbound_udp(&self) {
        self.run(&["nft", "add", "table", "inet", TABLE]);
        self.run(&[
            "nft",
            "add chain inet sallyport_test output { type filter hook output priority 0 ; policy accept ; }",
        ]);
        self.run(&[
            "nft", "add", "rule", "inet", TABLE, "output", "meta", "l4proto", "udp", "counter",
            "drop",
        ]);
    }

    /// UDP goes out again (and any random drop goes too).
    pub fn allow_udp(&self) {
        self.run(&["nft", "delete", "table", "inet", TABLE]);
    }

    /// From now on `percent` % of the packets crossing the link are
    /// dropped at random, each way and whatever their protocol (nftables'
    /// `numgen random`): a lossy network for QUIC and TCP alike. Calling it
    /// again replaces the rate.
    pub fn drop_at_random(&self, percent: u32) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "delete", "table", "inet", TABLE,
            ])
            .output();
        self.run(&["nft", "add", "table", "inet", TABLE]);
        for (chain, hook, dir) in [
            ("inbound", "input", "iifname"),
            ("outbound", "output", "oifname"),
        ] {
            self.run(&[
                "nft",
                &format!(
                    "add chain inet {TABLE} {chain} {{ type filter hook {hook} priority 0 ; policy accept ; }}"
                ),
            ]);
            self.run(&[
                "nft",
                &format!("add rule inet {TABLE} {chain} {dir} != \"lo\" numgen random mod 100 < {percent} counter drop"),
            ]);
        }
    }

    /// An [`Env`] whose relay's tunnel (QUIC and TCP) and whose sshd also
    /// listen on this link's host address, so that connectors inside the
    /// namespace reach both.
    pub fn env(&self) -> Env {
        let host_ip = std::net::IpAddr::from(self.host_ip);
        let mut env = Env::start_with_relay(
            SshdAuth::Key,
            None,
            crate::https::RelayOptions {
                tunnel_ip: Some(host_ip),
                ..Default::default()
            },
        );
        env.sshd.listen_also(host_ip);
        env
    }

    /// A connector process `name` run inside the namespace, its state under
    /// `dir`, enrolling with `token` (`NAME=HOST:PORT` services, `extra` flags).
    pub fn start_connector(
        &self,
        dir: &Path,
        name: &str,
        token: &str,
        services: &[String],
        extra: &[&str],
    ) -> Proc {
        let mut cmd = self.command(&bin("sallyport-connector"));
        cmd.arg("run")
            .arg("--state-dir")
            .arg(dir.join(format!("connector-{name}")))
            .args(["--token", token])
            .env("RUST_LOG", "info");
        for s in services {
            cmd.args(["--service", s]);
        }
        cmd.args(extra);
        Proc::spawn(
            &format!("connector {name}"),
            &mut cmd,
            dir.join(format!("connector-{name}.log")),
        )
    }

    /// How many UDP packets the drop rule has dropped so far.
    pub fn udp_dropped(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "list", "table", "inet", TABLE,
            ])
            .output()
            .expect("nft");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so
        // the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
