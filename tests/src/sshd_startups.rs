//! An sshd with OpenSSH's stock `MaxStartups 10:30:100` (the harness's
//! sshd allows 100 unauthenticated connections so that load tests are not
//! throttled), and the lines it logs when it throttles.

use crate::Sshd;

/// OpenSSH's default `MaxStartups`: from 10 unauthenticated connections
/// on, sshd drops new ones at random (30 %, rising to 100 % at 100).
pub const STOCK_MAX_STARTUPS: &str = "10:30:100";

impl Sshd {
    /// Restarts sshd on the same port with OpenSSH's default
    /// `MaxStartups` ([`STOCK_MAX_STARTUPS`]). The harness's value is
    /// replaced, not overridden: in sshd_config the first occurrence of a
    /// keyword wins.
    pub fn restart_with_stock_max_startups(&mut self) {
        let path = self.dir.join("sshd_config");
        let config = std::fs::read_to_string(&path).expect("sshd_config");
        let stock = config.replace(
            "\nMaxStartups 100\n",
            &format!("\nMaxStartups {STOCK_MAX_STARTUPS}\n"),
        );
        assert_ne!(stock, config, "no MaxStartups line in {}", path.display());
        std::fs::write(&path, stock).expect("sshd_config");
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        self.launch();
    }

    /// The lines sshd logged because it throttled unauthenticated
    /// connections: "beginning MaxStartups throttling", "drop connection
    /// #N from [ADDR]:PORT on [ADDR]:PORT past MaxStartups" (at LogLevel
    /// VERBOSE, as the harness runs it), and the summaries.
    pub fn max_startups_lines(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("MaxStartups"))
            .map(str::to_owned)
            .collect()
    }
}
