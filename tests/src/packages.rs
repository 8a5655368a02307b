//! The Debian packages on this machine: built by `scripts/package.sh`,
//! installed with `dpkg -i`, removed again by [`Installed`]'s drop, and
//! their daemons started as their systemd units would start them
//! ([`Unit::spawn`]), for a machine where systemd is not PID 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Proc;

/// The packages `scripts/package.sh` builds, in the order they install.
pub const PACKAGES: [&str; 3] = ["sallyport", "sallyport-relay", "sallyport-connector"];
/// The system users (and groups) the daemons' packages create.
pub const SERVICE_USERS: [&str; 2] = ["sallyport-relay", "sallyport-connector"];
/// Where the packaged units are installed.
pub const UNIT_DIR: &str = "/usr/lib/systemd/system";

use crate::run_ok;

/// Whether dpkg knows `package` as installed.
pub fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The packages installed on this machine for one test: dropping it (also
/// when the test fails) purges them, deletes their users and groups and the
/// state directories the test made in systemd's place, so the machine is
/// as it was.
pub struct Installed {
    state_dirs: Vec<PathBuf>,
}

impl Installed {
    /// `dpkg -i` of `debs`. Refuses to run on a machine where the packages
    /// are installed already: the drop would remove someone's install.
    pub fn install(debs: &[PathBuf]) -> Self {
        for p in PACKAGES {
            assert!(
                !is_installed(p),
                "package {p} is installed on this machine already; the test would remove it \
                 (dpkg --purge {} first)",
                PACKAGES.join(" ")
            );
        }
        let guard = Self {
            state_dirs: Vec::new(),
        };
        run_ok(Command::new("dpkg").arg("-i").args(debs));
        guard
    }

    /// Remembers a state directory to remove at the end.
    pub fn made_state_dir(&mut self, dir: PathBuf) {
        self.state_dirs.push(dir);
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let purge = Command::new("dpkg")
            .arg("--purge")
            .args(PACKAGES)
            .stdout(Stdio::null())
            .output();
        if let Ok(out) = purge {
            if !out.status.success() {
                eprintln!("dpkg --purge: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        for user in SERVICE_USERS {
            let _ = Command::new("userdel")
                .arg(user)
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("groupdel")
                .arg(user)
                .stderr(Stdio::null())
                .status();
        }
        for dir in &self.state_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        // Empty once the conffiles are gone; left alone if anything else is in it.
        let _ = std::fs::remove_dir("/etc/sallyport");
    }
}

/// A systemd unit file, read as systemd reads the keys this test needs:
/// `Key=value` lines, `#` comments, a later assignment replacing an earlier one.
#[derive(Debug, Clone)]
pub struct Unit {
    pub path: PathBuf,
    entries: Vec<(String, String)>,
}

impl Unit {
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self {
            path: path.to_owned(),
            entries,
        }
    }

    /// The last value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order (for keys that add up, like `Environment`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn required(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("{} sets no {key}=", self.path.display()))
    }

    /// `ExecStart=` split into words (the packaged units quote nothing), its
    /// `@-:+!` prefixes refused: they would change how it runs.
    pub fn exec_start(&self) -> Vec<String> {
        let line = self.required("ExecStart");
        assert!(
            !line.starts_with(['@', '-', ':', '+', '!']) && !line.contains('"'),
            "ExecStart={line}: this test runs plain command lines only"
        );
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// `/var/lib/` + `StateDirectory=`.
    pub fn state_dir(&self) -> PathBuf {
        Path::new("/var/lib").join(self.required("StateDirectory"))
    }

    /// Creates the state directory as systemd does before the first start
    /// (owned by `User=`, mode `StateDirectoryMode=`), then starts
    /// `ExecStart=` as `User=`/`Group=` with its supplementary groups and
    /// no-new-privileges, in the environment systemd gives a service: the
    /// unit's `Environment=`, `HOME`, `USER`, `LOGNAME`, `PATH`,
    /// `STATE_DIRECTORY` and `CONFIGURATION_DIRECTORY`. Output goes to `log`.
    pub fn spawn(&self, name: &str, log: PathBuf) -> Proc {
        let user = self.required("User").to_owned();
        let group = self.get("Group").unwrap_or(&user).to_owned();
        let state = self.state_dir();
        let mode = self.get("StateDirectoryMode").unwrap_or("0755");
        run_ok(
            Command::new("install")
                .args(["-d", "-o", &user, "-g", &group, "-m", mode])
                .arg(&state),
        );
        let argv = self.exec_start();
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &user,
            "--regid",
            &group,
            "--init-groups",
            "--no-new-privs",
            "--",
        ])
        .args(&argv)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", &state)
        .env("USER", &user)
        .env("LOGNAME", &user)
        .env("STATE_DIRECTORY", &state)
        .current_dir("/");
        if let Some(conf) = self.get("ConfigurationDirectory") {
            cmd.env("CONFIGURATION_DIRECTORY", Path::new("/etc").join(conf));
        }
        for assignments in self.all("Environment") {
            for a in assignments.split_whitespace() {
                let (k, v) = a.split_once('=').unwrap_or((a, ""));
                cmd.env(k, v);
            }
        }
        Proc::spawn(name, &mut cmd, log)
    }

    /// Runs `ExecReload=` for the process `pid` (`$MAINPID`), as root.
    pub fn reload(&self, pid: u32) {
        let line = self
            .required("ExecReload")
            .replace("$MAINPID", &pid.to_string());
        let argv: Vec<&str> = line.split_whitespace().collect();
        run_ok(Command::new(argv[0]).args(&argv[1..]));
    }
}
