//! The compatibility matrix: sshd configured in turn with each algorithm
//! family OpenSSH accepts (and the ones Sallyport refuses), one row each.
//! `tests/tests/compatibility.rs` drives every row through the native client
//! core and the browser; docs/COMPATIBILITY.md lists the result.
//!
//! Adding a row is one line in [`ROWS`]: a name (also the service's name),
//! the sshd_config lines that make the case, the host key sshd has, and what
//! a person sees.

use std::path::{Path, PathBuf};
use std::process::Command;

use sallyport_proto::ssh_algorithms::{self, Kind};

use crate::{ensure_unix_user, free_port, run_ok, Sshd, SshdAuth, E2E_UNIX_USER};

/// The host key an sshd of a row has (its only one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKey {
    Ed25519,
    /// 3072 bits, ssh-keygen's default.
    Rsa,
    Ecdsa256,
    Ecdsa384,
    Ecdsa521,
}

impl HostKey {
    /// `ssh-keygen` arguments that make one.
    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            HostKey::Ed25519 => &["-t", "ed25519"],
            HostKey::Rsa => &["-t", "rsa", "-b", "3072"],
            HostKey::Ecdsa256 => &["-t", "ecdsa", "-b", "256"],
            HostKey::Ecdsa384 => &["-t", "ecdsa", "-b", "384"],
            HostKey::Ecdsa521 => &["-t", "ecdsa", "-b", "521"],
        }
    }
}

/// What a person sees on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The login prompts, then a shell; the host key accepted (and the one
    /// the connector scanned) is sshd's.
    Shell,
    /// No login prompt: the session ends with the one-line refusal of
    /// [`ssh_algorithms::describe_no_common`] for `kind`, the server
    /// offering `server` (comma-separated, in its order), and the connector
    /// scans no key.
    Refused { kind: Kind, server: &'static str },
}

/// One case of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Short and unique; also the service's name (letters, digits, `-`).
    pub name: &'static str,
    /// Lines put first in sshd_config (the first value of a keyword wins,
    /// so these override the harness's own lines).
    pub sshd_config: &'static [&'static str],
    pub host_key: HostKey,
    pub expect: Expect,
    /// Text the person must see before the shell (a banner), as shown:
    /// empty when the row checks none.
    pub shows: &'static str,
    /// Password prompts to answer before the shell (more than one when
    /// sshd asks in several rounds).
    pub passwords: usize,
}

impl Row {
    /// The family the row belongs to: the name up to its first `-`.
    pub fn family(&self) -> &'static str {
        self.name.split('-').next().unwrap_or(self.name)
    }

    /// The refusal line a person must see, for a [`Expect::Refused`] row.
    pub fn refusal(&self) -> Option<String> {
        let Expect::Refused { kind, server } = self.expect else {
            return None;
        };
        let ours = match kind {
            Kind::KeyExchange => ssh_algorithms::KEX,
            Kind::HostKey => ssh_algorithms::HOST_KEY,
            Kind::Cipher => ssh_algorithms::CIPHERS,
            Kind::Mac => ssh_algorithms::MACS,
            Kind::Compression => &["none"],
        };
        let server: Vec<String> = server.split(',').map(str::to_owned).collect();
        let ours: Vec<String> = ours.iter().map(|s| (*s).to_owned()).collect();
        Some(ssh_algorithms::describe_no_common(kind, &server, &ours))
    }
}

const fn shell(name: &'static str, sshd_config: &'static [&'static str]) -> Row {
    Row {
        name,
        sshd_config,
        host_key: HostKey::Ed25519,
        expect: Expect::Shell,
        shows: "",
        passwords: 1,
    }
}

const fn host(name: &'static str, algorithm: &'static [&'static str], key: HostKey) -> Row {
    Row {
        name,
        sshd_config: algorithm,
        host_key: key,
        expect: Expect::Shell,
        shows: "",
        passwords: 1,
    }
}

const fn refused(
    name: &'static str,
    sshd_config: &'static [&'static str],
    kind: Kind,
    server: &'static str,
) -> Row {
    Row {
        name,
        sshd_config,
        host_key: HostKey::Ed25519,
        expect: Expect::Refused { kind, server },
        shows: "",
        passwords: 1,
    }
}

/// MACs only matter with a cipher that has no integrity of its own: the MAC
/// rows pin one (with chacha20-poly1305 or AES-GCM, sshd's `MACs` is not used).
macro_rules! mac_row {
    ($name:literal, $mac:literal) => {
        shell($name, &["Ciphers aes128-ctr", concat!("MACs ", $mac)])
    };
}

/// A login row: a shell after `passwords` password prompts, showing `shows`.
const fn login(
    name: &'static str,
    sshd_config: &'static [&'static str],
    shows: &'static str,
    passwords: usize,
) -> Row {
    Row {
        shows,
        passwords,
        ..shell(name, sshd_config)
    }
}

/// `Banner` lines naming the files in tests/fixtures.
const BANNER_UTF8: &str = concat!(
    "Banner ",
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/banner-utf8.txt"
);
const BANNER_LATIN1: &str = concat!(
    "Banner ",
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/banner-latin1.txt"
);

/// The matrix, one line per row.
#[rustfmt::skip]
pub const ROWS: &[Row] = &[
    // Key exchange. (mlkem768x25519-sha256, Sallyport's first choice, needs
    // OpenSSH 9.9; this sshd's own first choice, sntrup761, russh lacks.)
    shell("kex-curve25519", &["KexAlgorithms curve25519-sha256"]),
    shell("kex-curve25519-libssh", &["KexAlgorithms curve25519-sha256@libssh.org"]),
    shell("kex-ecdh-nistp256", &["KexAlgorithms ecdh-sha2-nistp256"]),
    shell("kex-ecdh-nistp384", &["KexAlgorithms ecdh-sha2-nistp384"]),
    shell("kex-ecdh-nistp521", &["KexAlgorithms ecdh-sha2-nistp521"]),
    shell("kex-dh-gex-sha256", &["KexAlgorithms diffie-hellman-group-exchange-sha256"]),
    shell("kex-dh-group14-sha256", &["KexAlgorithms diffie-hellman-group14-sha256"]),
    shell("kex-dh-group16-sha512", &["KexAlgorithms diffie-hellman-group16-sha512"]),
    shell("kex-dh-group18-sha512", &["KexAlgorithms diffie-hellman-group18-sha512"]),
    refused("kex-dh-group1-sha1", &["KexAlgorithms diffie-hellman-group1-sha1"], Kind::KeyExchange, "diffie-hellman-group1-sha1"),
    refused("kex-dh-group14-sha1", &["KexAlgorithms diffie-hellman-group14-sha1"], Kind::KeyExchange, "diffie-hellman-group14-sha1"),
    refused("kex-dh-gex-sha1", &["KexAlgorithms diffie-hellman-group-exchange-sha1"], Kind::KeyExchange, "diffie-hellman-group-exchange-sha1"),
    refused("kex-sntrup761", &["KexAlgorithms sntrup761x25519-sha512@openssh.com"], Kind::KeyExchange, "sntrup761x25519-sha512@openssh.com"),
    // Ciphers.
    shell("cipher-chacha20-poly1305", &["Ciphers chacha20-poly1305@openssh.com"]),
    shell("cipher-aes128-ctr", &["Ciphers aes128-ctr"]),
    shell("cipher-aes192-ctr", &["Ciphers aes192-ctr"]),
    shell("cipher-aes256-ctr", &["Ciphers aes256-ctr"]),
    shell("cipher-aes128-gcm", &["Ciphers aes128-gcm@openssh.com"]),
    shell("cipher-aes256-gcm", &["Ciphers aes256-gcm@openssh.com"]),
    refused("cipher-aes128-cbc", &["Ciphers aes128-cbc"], Kind::Cipher, "aes128-cbc"),
    refused("cipher-3des-cbc", &["Ciphers 3des-cbc"], Kind::Cipher, "3des-cbc"),
    // MACs, with aes128-ctr.
    mac_row!("mac-hmac-sha2-256-etm", "hmac-sha2-256-etm@openssh.com"),
    mac_row!("mac-hmac-sha2-512-etm", "hmac-sha2-512-etm@openssh.com"),
    mac_row!("mac-hmac-sha2-256", "hmac-sha2-256"),
    mac_row!("mac-hmac-sha2-512", "hmac-sha2-512"),
    refused("mac-hmac-sha1", &["Ciphers aes128-ctr", "MACs hmac-sha1"], Kind::Mac, "hmac-sha1"),
    refused("mac-umac-128-etm", &["Ciphers aes128-ctr", "MACs umac-128-etm@openssh.com"], Kind::Mac, "umac-128-etm@openssh.com"),
    // Host keys.
    host("hostkey-ed25519", &["HostKeyAlgorithms ssh-ed25519"], HostKey::Ed25519),
    host("hostkey-ecdsa-nistp256", &["HostKeyAlgorithms ecdsa-sha2-nistp256"], HostKey::Ecdsa256),
    host("hostkey-ecdsa-nistp384", &["HostKeyAlgorithms ecdsa-sha2-nistp384"], HostKey::Ecdsa384),
    host("hostkey-ecdsa-nistp521", &["HostKeyAlgorithms ecdsa-sha2-nistp521"], HostKey::Ecdsa521),
    host("hostkey-rsa-sha2-512", &["HostKeyAlgorithms rsa-sha2-512"], HostKey::Rsa),
    host("hostkey-rsa-sha2-256", &["HostKeyAlgorithms rsa-sha2-256"], HostKey::Rsa),
    Row {
        expect: Expect::Refused { kind: Kind::HostKey, server: "ssh-rsa" },
        ..host("hostkey-ssh-rsa", &["HostKeyAlgorithms ssh-rsa"], HostKey::Rsa)
    },
    // Logging in (sshd runs as root, so PAM works; the harness's lines
    // enable PAM, keyboard-interactive and password).
    login("auth-pam-keyboard-interactive", &["PasswordAuthentication no"], "", 1),
    login("auth-password-without-pam", &["UsePAM no"], "", 1),
    login("auth-keyboard-interactive-two-rounds", &["AuthenticationMethods keyboard-interactive,keyboard-interactive"], "", 2),
    login("auth-keyboard-interactive-then-password", &["AuthenticationMethods keyboard-interactive,password"], "", 2),
    login("auth-banner-utf8", &[BANNER_UTF8], "Authorised use only \u{2014} Zugriff nur f\u{fc}r Befugte \u{2713}", 1),
    login("auth-banner-latin1", &[BANNER_LATIN1], "Zugriff nur f\u{fffd}r Befugte \u{fffd} Latin-1", 1),
];

/// The rows whose name is in `names` (comma-separated), or all of them when
/// `names` is empty: `COMPAT_ROWS=kex-dh-gex-sha256,cipher-aes128-gcm` runs
/// just those.
pub fn selected_rows(names: &str) -> Vec<Row> {
    let wanted: Vec<&str> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    for w in &wanted {
        assert!(ROWS.iter().any(|r| r.name == *w), "no row named {w}");
    }
    ROWS.iter()
        .filter(|r| wanted.is_empty() || wanted.contains(&r.name))
        .copied()
        .collect()
}

/// The SHA-256 fingerprint (`SHA256:...`) that `ssh-keygen -lf` prints for
/// the public key in `path`.
pub fn fingerprint(path: &Path) -> String {
    let out = run_ok(Command::new("ssh-keygen").arg("-lf").arg(path));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("ssh-keygen -lf {}: {text}", path.display()))
        .to_owned()
}

/// The fingerprint `ssh-keygen -lf` prints for a key given as an OpenSSH
/// line (written to `scratch` first).
pub fn fingerprint_of_line(line: &str, scratch: &Path) -> String {
    std::fs::write(scratch, format!("{}\n", line.trim())).expect("key file");
    fingerprint(scratch)
}

impl Sshd {
    /// An sshd for `row` under `dir/ROW-NAME`: password and
    /// keyboard-interactive login (PAM) for [`E2E_UNIX_USER`], the row's
    /// host key only, the row's lines first in sshd_config.
    pub fn start_row(dir: &Path, row: &Row) -> Self {
        Self::start_with_host_keys(dir, row.name, row.sshd_config, &[row.host_key]).0
    }

    /// Like [`Sshd::start_row`], with the host keys `keys` (the first is
    /// [`Sshd::host_key_pub`]); also returns each one's public key file.
    pub fn start_with_host_keys(
        dir: &Path,
        name: &str,
        sshd_config: &[&str],
        keys: &[HostKey],
    ) -> (Self, Vec<PathBuf>) {
        ensure_unix_user();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("sshd dir");
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut config: String = sshd_config.iter().map(|l| format!("{l}\n")).collect();
        let mut files = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let file = dir.join(format!("host_key_{i}"));
            let _ = std::fs::remove_file(&file);
            let _ = std::fs::remove_file(file.with_extension("pub"));
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-N", "", "-C", name])
                    .args(key.keygen_args())
                    .arg("-f")
                    .arg(&file),
            );
            config.push_str(&format!("HostKey {}\n", file.display()));
            files.push(file);
        }
        let port = free_port();
        config.push_str(&format!(
            "Port {port}\nListenAddress 127.0.0.1\nStrictModes no\n\
             UsePAM yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication yes\n\
             PubkeyAuthentication no\nPidFile none\nMaxStartups 100\nLogLevel VERBOSE\n"
        ));
        std::fs::write(dir.join("sshd_config"), config).expect("sshd_config");
        let mut sshd = Self {
            port,
            client_key: PathBuf::new(),
            host_pub: String::new(),
            user: E2E_UNIX_USER.to_owned(),
            auth: SshdAuth::Password,
            dir,
            host_key: files.first().cloned().expect("at least one host key"),
            restarts: 0,
            proc: None,
        };
        sshd.launch();
        let pubs = files.iter().map(|f| f.with_extension("pub")).collect();
        (sshd, pubs)
    }

    /// The public half of its host key, as a file (for `ssh-keygen -lf`).
    pub fn host_key_pub(&self) -> PathBuf {
        self.host_key.with_extension("pub")
    }
}
