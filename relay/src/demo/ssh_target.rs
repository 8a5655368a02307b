//! Whether the demo's SSH target answers, and what to run when it does not.
//!
//! The demo exists to show an SSH session through Sallyport, and on a fresh
//! laptop or VM nothing may listen on 127.0.0.1:22. The connector reads the
//! target's host keys once, when it starts, and sessions are pinned to
//! them, so a demo started without sshd would fail every session even after
//! sshd came up. So the demo checks first: if nothing answers, its first
//! screen says so with the command that fixes it, and it waits for the
//! server before it starts the connector.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpStream;

/// How long one connection attempt to the SSH target may take: a target on
/// another host that drops packets answers nothing, rather than refusing.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the demo tries the SSH target again while it waits.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Where Debian's and most other distributions' packages put sshd.
const SSHD_PATHS: [&str; 2] = ["/usr/sbin/sshd", "/usr/bin/sshd"];

/// What became of one attempt to reach the SSH target.
#[derive(Debug)]
pub enum Probe {
    /// Something accepted a TCP connection there.
    Answers,
    /// Nothing answered; why, in words (`connection refused`, ...).
    Silent(String),
    /// The target is not a `HOST:PORT` this machine can look up; waiting
    /// will not change that.
    Invalid(String),
}

/// One TCP connection attempt to `target` (`HOST:PORT`), closed at once.
pub async fn probe(target: &str) -> Probe {
    match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(_)) => Probe::Answers,
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidInput => Probe::Invalid(e.to_string()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Probe::Silent("connection refused".into())
        }
        Ok(Err(e)) => Probe::Silent(e.to_string()),
        Err(_) => Probe::Silent(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Whether OpenSSH's server is installed on this machine.
pub fn sshd_installed() -> bool {
    SSHD_PATHS.iter().any(|p| Path::new(p).exists())
}

/// The demo's first screen when nothing answers at `target`: what is wrong,
/// and the one command that fixes it. For the default target (port 22 on
/// this machine) that is installing OpenSSH's server when it is missing
/// (Debian's package starts and enables it), or starting it when it is
/// installed but stopped; for any other target, pointing the demo at a
/// server that runs.
pub fn first_screen(target: &str, why: &str, sshd_installed: bool) -> String {
    let mut out = format!(
        "\nNo SSH server answers at {target} ({why}).\n\
         The demo's service `localhost` is that server, so nothing can be reached through it yet.\n\n"
    );
    if is_local_port_22(target) {
        if sshd_installed {
            out.push_str(
                "OpenSSH's server is installed but not running. Start it (Debian, Ubuntu):\n\n  \
                 sudo systemctl start ssh\n\n",
            );
        } else {
            out.push_str(
                "Install OpenSSH's server; on Debian and Ubuntu the package starts it too:\n\n  \
                 sudo apt-get install openssh-server\n\n",
            );
        }
        out.push_str("Or run the demo with --ssh-target HOST:PORT of an SSH server that runs.\n");
    } else {
        out.push_str(&format!(
            "Start the SSH server at {target}, or run the demo with --ssh-target HOST:PORT\n\
             of one that runs (the default is 127.0.0.1:22, this machine's sshd).\n"
        ));
    }
    out.push_str(&format!(
        "\nWaiting for {target} to answer; the demo goes on by itself then (Ctrl-C to stop)."
    ));
    out
}

/// `target` is port 22 on this machine (`127.0.0.1:22`, `[::1]:22`,
/// `localhost:22`): the sshd a package would install.
fn is_local_port_22(target: &str) -> bool {
    let Some((host, port)) = target.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    port == "22"
        && (host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_depends_on_what_is_missing() {
        let missing = first_screen("127.0.0.1:22", "connection refused", false);
        assert!(missing.contains("No SSH server answers at 127.0.0.1:22 (connection refused)"));
        assert!(
            missing.contains("\n  sudo apt-get install openssh-server\n"),
            "{missing}"
        );
        assert!(!missing.contains("systemctl"), "{missing}");
        let stopped = first_screen("[::1]:22", "connection refused", true);
        assert!(
            stopped.contains("\n  sudo systemctl start ssh\n"),
            "{stopped}"
        );
        assert!(!stopped.contains("apt-get"), "{stopped}");
        let other = first_screen("10.0.0.5:2222", "no answer within 3s", false);
        assert!(
            other.contains("Start the SSH server at 10.0.0.5:2222"),
            "{other}"
        );
        assert!(!other.contains("sudo"), "{other}");
        for s in [missing, stopped, other] {
            assert!(s.contains("--ssh-target HOST:PORT"), "{s}");
            assert!(s.contains("Ctrl-C"), "{s}");
        }
        assert!(is_local_port_22("localhost:22"));
        assert!(!is_local_port_22("127.0.0.1:2222"));
        assert!(!is_local_port_22("192.0.2.1:22"));
    }

    #[tokio::test]
    async fn a_closed_port_is_silent_and_a_listener_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(matches!(probe(&open).await, Probe::Answers));
        drop(listener);
        match probe(&open).await {
            Probe::Silent(why) => assert_eq!(why, "connection refused"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(probe("no-port-here").await, Probe::Invalid(_)));
    }
}
