//! A throwaway PostgreSQL server for tests.
//!
//! [`PostgresServer::start`] runs `initdb` in a fresh temporary directory
//! and `pg_ctl start` on a free loopback port (never 5432); dropping the
//! handle stops the server (`pg_ctl -m immediate stop`) and removes the
//! directory, also when the test panics. It takes about a second.
//!
//! `initdb` refuses to run as root: when the tests run as root, the
//! directory is given to the `postgres` user and every server command runs
//! as that user through `runuser`. The binaries are looked up on `PATH`,
//! then in `/usr/lib/postgresql/*/bin` (newest version first). When they
//! are missing, `start` fails and says to install PostgreSQL
//! (`apt-get install -y postgresql`, or run `scripts/test.sh`).
//!
//! ```no_run
//! use audit_testkit::servers::postgres::PostgresServer;
//! let server = PostgresServer::start()?;
//! server.create_database("audit")?;
//! let url = server.url_for("audit"); // postgres://postgres@127.0.0.1:PORT/audit
//! # drop(url);
//! # Ok::<(), audit_testkit::servers::ServerError>(())
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{ServerError, find_program, free_port, running_as_root};

/// What to tell a user whose machine lacks the PostgreSQL server binaries.
const INSTALL_HINT: &str =
    "install the PostgreSQL server: `apt-get install -y postgresql`, or run scripts/test.sh";

/// Attempts at finding a free port before giving up.
const PORT_ATTEMPTS: usize = 4;

/// A running throwaway PostgreSQL server; stopped and deleted on drop.
#[derive(Debug)]
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    running: bool,
}

impl PostgresServer {
    /// Initialises a cluster in a temporary directory and starts it on a
    /// free loopback port. Superuser `postgres`, `trust` authentication.
    pub fn start() -> Result<Self, ServerError> {
        Self::start_with_auth("trust")
    }

    /// Like [`start`](Self::start), with the given host authentication
    /// method (`trust`, `md5`, `scram-sha-256`); with a password method the
    /// superuser `postgres` gets the password `postgres`.
    pub fn start_with_auth(auth: &str) -> Result<Self, ServerError> {
        let bin = find_bin_dir()?;
        let as_postgres_user = running_as_root();
        let base = if as_postgres_user {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("audit-pg-")
            .tempdir_in(&base)
            .map_err(ServerError::io(format!(
                "creating a temporary directory in {}",
                base.display()
            )))?;
        let mut server = Self {
            dir,
            bin,
            port: 0,
            as_postgres_user,
            running: false,
        };
        if as_postgres_user {
            give_to_postgres_user(server.dir.path())?;
        }
        server.initdb(auth)?;
        server.start_on_free_port()?;
        Ok(server)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of `database` as the superuser.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The directory holding the cluster, its socket and its log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a database.
    pub fn create_database(&self, name: &str) -> Result<(), ServerError> {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        self.psql("postgres", &sql).map(drop)
    }

    /// Runs SQL with `psql` as the superuser in `database`, stopping at the
    /// first error; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ServerError> {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", "postgres");
        let output = run(&mut command, None)?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Restarts the server (`pg_ctl restart -m fast`): open connections are
    /// terminated; the port stays the same.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        let options = self.server_options();
        let log = self.log_path();
        let data = self.data_dir();
        let mut command = self.server_command("pg_ctl");
        command
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-m", "fast", "-o", &options, "-l"])
            .arg(&log)
            .arg("restart");
        run(&mut command, Some(&log))?;
        self.running = true;
        Ok(())
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping its files, for
    /// outage tests; [`start_again`](Self::start_again) brings it back.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        self.pg_ctl_stop("fast")?;
        self.running = false;
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&mut self) -> Result<(), ServerError> {
        self.pg_ctl_start()?;
        self.running = true;
        Ok(())
    }

    /// The server's log so far (for diagnosing a failed test).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn server_options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        )
    }

    /// A command for a server program, run as `postgres` when we are root.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn initdb(&self, auth: &str) -> Result<(), ServerError> {
        let password_file = self.dir.path().join("password");
        let mut command = self.server_command("initdb");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", "postgres", "-A", auth, "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        if auth != "trust" {
            std::fs::write(&password_file, "postgres\n")
                .map_err(ServerError::io("writing the initdb password file"))?;
            if self.as_postgres_user {
                give_to_postgres_user(&password_file)?;
            }
            command.arg(format!("--pwfile={}", password_file.display()));
        }
        run(&mut command, None).map(drop)
    }

    fn start_on_free_port(&mut self) -> Result<(), ServerError> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            match self.pg_ctl_start() {
                Ok(()) => {
                    self.running = true;
                    return Ok(());
                }
                // Another process may have taken the port meanwhile.
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| ServerError::CommandFailed {
            command: "pg_ctl start".into(),
            status: "not run".into(),
            output: String::new(),
        }))
    }

    fn pg_ctl_start(&self) -> Result<(), ServerError> {
        let options = self.server_options();
        let log = self.log_path();
        let mut command = self.server_command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(&log)
            .arg("start");
        run(&mut command, Some(&log)).map(drop)
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), ServerError> {
        let mut command = self.server_command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-m", mode, "stop"]);
        run(&mut command, Some(&self.log_path())).map(drop)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running
            && let Err(error) = self.pg_ctl_stop("immediate")
        {
            eprintln!("stopping the test PostgreSQL server failed: {error}");
        }
    }
}

/// The directory of `initdb`, `pg_ctl` and `psql`.
fn find_bin_dir() -> Result<PathBuf, ServerError> {
    let versions = installed_version_dirs();
    let initdb = find_program("initdb", &versions).ok_or_else(|| ServerError::MissingBinary {
        program: "initdb".into(),
        searched: "PATH and /usr/lib/postgresql/*/bin".into(),
        install: INSTALL_HINT.into(),
    })?;
    // PATH often holds a symlink to the version directory, where psql is.
    let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
    let bin = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
    for program in ["pg_ctl", "psql"] {
        if !bin.join(program).is_file() {
            return Err(ServerError::MissingBinary {
                program: program.into(),
                searched: bin.display().to_string(),
                install: INSTALL_HINT.into(),
            });
        }
    }
    Ok(bin)
}

/// `/usr/lib/postgresql/*/bin`, newest version first.
fn installed_version_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Gives `path` to the `postgres` user (for initdb, which refuses root).
fn give_to_postgres_user(path: &Path) -> Result<(), ServerError> {
    let uid = id_of("-u")?;
    let gid = id_of("-g")?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(ServerError::io(format!(
        "giving {} to the postgres user",
        path.display()
    )))
}

fn id_of(flag: &str) -> Result<u32, ServerError> {
    let output = run(Command::new("id").args([flag, "postgres"]), None).map_err(|error| {
        ServerError::MissingBinary {
            program: "the postgres user".into(),
            searched: format!("`id {flag} postgres`: {error}"),
            install: INSTALL_HINT.into(),
        }
    })?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| ServerError::CommandFailed {
            command: format!("id {flag} postgres"),
            status: "unparsable output".into(),
            output: String::from_utf8_lossy(&output.stdout).into_owned(),
        })
}

/// Runs `command`; on failure the error holds its output and, when given,
/// the tail of the server log.
fn run(command: &mut Command, log: Option<&Path>) -> Result<Output, ServerError> {
    let line = format!("{command:?}");
    let output = command
        .output()
        .map_err(ServerError::io(format!("running {line}")))?;
    if output.status.success() {
        return Ok(output);
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    if let Some(log) = log {
        let content = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = content.lines().rev().take(20).collect();
        text.push_str("\nserver log:\n");
        text.extend(tail.into_iter().rev().map(|line| format!("{line}\n")));
    }
    Err(ServerError::CommandFailed {
        command: line,
        status: output.status.to_string(),
        output: text,
    })
}
