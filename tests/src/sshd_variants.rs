//! sshd with one setting changed at a time, as people run it: sshd_config
//! lines put before the harness's own (in sshd_config the first occurrence
//! of a keyword wins), and files for settings that name one (`Banner`).

use std::path::{Path, PathBuf};

use crate::Sshd;

impl Sshd {
    /// An sshd like [`Sshd::start_password`]'s (PAM, password and
    /// keyboard-interactive for [`crate::E2E_UNIX_USER`]) with `lines`
    /// first in its sshd_config, e.g. `["UsePAM no"]`.
    pub fn start_password_with(dir: &Path, lines: &[&str]) -> Self {
        let mut sshd = Self::start_password(dir);
        sshd.restart_with_lines(lines);
        sshd
    }

    /// Restarts sshd on the same port with `lines` before the config it
    /// has, so that they win over the harness's.
    pub fn restart_with_lines(&mut self, lines: &[&str]) {
        let path = self.dir.join("sshd_config");
        let config = std::fs::read_to_string(&path).expect("sshd_config");
        let mut changed = String::new();
        for line in lines {
            changed.push_str(line);
            changed.push('\n');
        }
        changed.push_str(&config);
        std::fs::write(&path, changed).expect("sshd_config");
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        self.launch();
    }

    /// Writes `contents` to a file named `name` beside sshd_config (a
    /// `Banner`, say); returns its path.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("sshd file");
        path
    }
}
