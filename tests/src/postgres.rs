//! A real PostgreSQL 15 from Debian's packages for tests: a fresh cluster
//! per [`Postgres::start`], on a free loopback port, trusting every local
//! connection.
//!
//! `initdb` refuses to run as root, so when the tests run as root (CI does)
//! the cluster belongs to the `postgres` Unix user and its processes run as
//! that user. `initdb` runs once per target dir, into a template
//! (`<target>/debug/pg-template-15`, built under a file lock so parallel
//! test processes do not race); each cluster is a copy of it.
//!
//! The postmaster is started by a small guard shell that reads its standard
//! input from the test process: when the test process ends, however it ends
//! (a panic, a kill -9), the pipe closes and the guard shuts PostgreSQL down.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, run_ok, PATIENCE};

/// The major version the tests run against (Debian 12's).
pub const PG_MAJOR: &str = "15";

/// Most client connections one test cluster accepts: several relays' pools
/// plus the test's own.
const MAX_CONNECTIONS: u32 = 200;

/// The guard: starts the postmaster in the background, waits for its own
/// standard input to close (the test process let go of it, or died), then
/// asks for a fast shutdown and waits for it. Arguments: postgres binary,
/// data dir, port, socket dir, max_connections.
const GUARD: &str = r#"
"$1" -D "$2" -p "$3" -k "$4" \
    -c listen_addresses=127.0.0.1 -c max_connections="$5" \
    -c fsync=off -c full_page_writes=off -c synchronous_commit=off \
    -c log_min_messages=warning </dev/null &
pm=$!
read -r _ignored
kill -INT "$pm" 2>/dev/null
wait "$pm"
"#;

/// A running (or stopped, see [`Postgres::stop`]) PostgreSQL cluster that
/// is shut down when dropped.
pub struct Postgres {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The cluster's data directory.
    pub data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    guard: Option<Guard>,
}

/// The guard shell and the write end of its standard input.
struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Postgres {
    /// Starts a fresh cluster under `dir` (which is made traversable for the
    /// `postgres` user) and waits until it accepts connections.
    pub fn start(dir: &Path) -> Postgres {
        let template = template();
        let root = dir.join("pg");
        std::fs::create_dir_all(&root).expect("create the cluster dir");
        make_traversable(dir);
        make_traversable(&root);
        let data = root.join("data");
        let socket_dir = root.join("sock");
        run_ok(Command::new("cp").arg("-a").arg(&template).arg(&data));
        std::fs::create_dir_all(&socket_dir).expect("create the socket dir");
        if let Some((uid, gid)) = owner() {
            run_ok(
                Command::new("chown")
                    .arg(format!("{uid}:{gid}"))
                    .arg(&socket_dir),
            );
        }
        let mut pg = Postgres {
            port: free_port(),
            data,
            socket_dir,
            log: dir.join("postgres.log"),
            guard: None,
        };
        pg.launch();
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates the database `name` (letters, digits, `_`) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "database name {name:?}: use letters, digits and _"
        );
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// Runs `sql` in database `db` as the superuser `postgres` and returns
    /// what psql printed (unaligned, tuples only); panics with psql's
    /// errors when a statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.try_psql(db, sql);
        assert!(
            out.status.success(),
            "psql on {db} failed ({}): {sql}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like [`Postgres::psql`], success or not.
    pub fn try_psql(&self, db: &str, sql: &str) -> Output {
        let mut child = Command::new(pg_bin("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .expect("psql stdin")
            .write_all(sql.as_bytes())
            .expect("write to psql");
        child.wait_with_output().expect("psql output")
    }

    /// Ends (`pg_terminate_backend`) every session on `db` whose
    /// `application_name` is LIKE `application_name_like`; returns how many.
    pub fn terminate_backends(&self, db: &str, application_name_like: &str) -> usize {
        let out = self.psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = {} AND application_name LIKE {} AND pid <> pg_backend_pid()",
                quote_literal(db),
                quote_literal(application_name_like)
            ),
        );
        out.trim().parse().expect("a count from psql")
    }

    /// Shuts the cluster down (fast: sessions are ended) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        drop(guard.stdin.take());
        if crate::wait_or_kill(&mut guard.child, PATIENCE).is_none() {
            // The guard is gone; make sure its postmaster is too.
            self.kill_postmaster();
        }
    }

    /// Starts the stopped cluster again, same data and port.
    pub fn start_again(&mut self) {
        assert!(self.guard.is_none(), "PostgreSQL is already running");
        self.launch();
    }

    /// True while the postmaster runs (between start and stop).
    pub fn is_running(&self) -> bool {
        self.guard.is_some()
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn launch(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("postgres log file");
        let err = out.try_clone().expect("postgres log file");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(GUARD)
            .arg("sh")
            .arg(pg_bin("postgres"))
            .arg(&self.data)
            .arg(self.port.to_string())
            .arg(&self.socket_dir)
            .arg(MAX_CONNECTIONS.to_string())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        as_owner(&mut cmd);
        let mut child = cmd.spawn().expect("start the PostgreSQL guard");
        let stdin = child.stdin.take();
        self.guard = Some(Guard { child, stdin });
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = Command::new(pg_bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p"])
                .arg(self.port.to_string())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            let guard = self.guard.as_mut().expect("guard");
            if let Ok(Some(status)) = guard.child.try_wait() {
                panic!(
                    "PostgreSQL exited ({status}) before accepting connections:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections on port {}:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the postmaster named in `postmaster.pid`, if any.
    fn kill_postmaster(&self) {
        let Ok(text) = std::fs::read_to_string(self.data.join("postmaster.pid")) else {
            return;
        };
        if let Some(pid) = text.lines().next().map(str::trim).filter(|p| !p.is_empty()) {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- last lines of postgres ({}):", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `'text'` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// PostgreSQL's binary `name`: in `pg_config --bindir`, or Debian's
/// directory for [`PG_MAJOR`].
pub fn pg_bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let from_config = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|d| d.join("postgres").exists());
        let dir = from_config
            .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{PG_MAJOR}/bin")));
        assert!(
            dir.join("postgres").exists(),
            "PostgreSQL {PG_MAJOR} is not installed (no {}): apt-get install postgresql",
            dir.join("postgres").display()
        );
        dir
    })
    .join(name)
}

/// The uid and gid of the `postgres` user when the tests run as root (who
/// may not run PostgreSQL); `None` otherwise (it runs as the tests' user).
fn owner() -> Option<(u32, u32)> {
    static OWNER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *OWNER.get_or_init(|| {
        if crate::current_user() != "root" {
            return None;
        }
        let out = run_ok(Command::new("getent").args(["passwd", "postgres"]));
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let fields: Vec<&str> = line.trim().split(':').collect();
        let id = |i: usize| -> u32 {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .unwrap_or_else(|| panic!("unexpected passwd entry for postgres: {line}"))
        };
        Some((id(2), id(3)))
    })
}

/// Runs `cmd` as [`owner`] (when there is one).
fn as_owner(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    if let Some((uid, gid)) = owner() {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
}

/// Adds search (x) permission for everyone to `dir`.
fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(dir).expect("cluster dir metadata");
    let mut perms = meta.permissions();
    perms.set_mode(perms.mode() | 0o111);
    std::fs::set_permissions(dir, perms).expect("make the cluster dir traversable");
}

/// Where built files go (`target/debug`, next to the test binary).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let mut dir = exe.parent().expect("target dir").to_owned();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// The initdb'd template, built once per target dir under a file lock.
fn template() -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let target = target_dir();
            let template = target.join(format!("pg-template-{PG_MAJOR}"));
            let lock = std::fs::File::create(target.join(format!("pg-template-{PG_MAJOR}.lock")))
                .expect("template lock file");
            lock.lock().expect("lock the template");
            if !template.join("PG_VERSION").exists() {
                build_template(&template);
            }
            drop(lock);
            template
        })
        .clone()
}

/// Runs initdb in a fresh temporary directory (one the `postgres` user can
/// reach whatever the target dir's parents allow), then moves the result
/// to `template` with its owner kept.
fn build_template(template: &Path) {
    let started = Instant::now();
    let scratch = tempfile::tempdir().expect("scratch dir for initdb");
    make_traversable(scratch.path());
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).expect("initdb dir");
    if let Some((uid, gid)) = owner() {
        run_ok(Command::new("chown").arg(format!("{uid}:{gid}")).arg(&data));
    }
    let mut initdb = Command::new(pg_bin("initdb"));
    initdb
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .stdin(Stdio::null());
    as_owner(&mut initdb);
    run_ok(&mut initdb);
    let partial = template.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    run_ok(Command::new("cp").arg("-a").arg(&data).arg(&partial));
    std::fs::rename(&partial, template).expect("move the template into place");
    eprintln!(
        "initdb of the PostgreSQL template took {:?} ({})",
        started.elapsed(),
        template.display()
    );
}
