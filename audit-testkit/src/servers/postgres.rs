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
//! [`PostgresServer::start_with_tls`] also turns TLS on: a throwaway CA
//! (made with the `openssl` binary) signs a certificate for `localhost`
//! and `127.0.0.1`; [`PostgresServer::ca_cert`] is the CA's PEM file, for
//! `sslrootcert=` ([`PostgresServer::tls_url_for`] builds such a URL).
//! [`TestCa`] makes more CAs (e.g. a wrong one for a refusal test).
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
    tls: Option<TlsFiles>,
}

/// The TLS files of a server started by [`PostgresServer::start_with_tls`].
#[derive(Debug, Clone)]
struct TlsFiles {
    ca: TestCa,
    cert: PathBuf,
    key: PathBuf,
}

/// A throwaway certificate authority made with the `openssl` binary
/// (ECDSA P-256, valid for two days): its PEM certificate and key.
#[derive(Debug, Clone)]
pub struct TestCa {
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// Creates a self-signed CA named `common_name` in `dir`
    /// (`<stem>.crt` and `<stem>.key`, `stem` derived from the name).
    pub fn create(dir: &Path, common_name: &str) -> Result<Self, ServerError> {
        let stem: String = common_name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        let mut command = Command::new("openssl");
        command
            .args(["req", "-x509", "-new", "-nodes", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-days",
                "2",
                "-sha256",
            ])
            .arg("-subj")
            .arg(format!("/CN={common_name}"))
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert);
        run(&mut command, None).map_err(openssl_hint)?;
        Ok(Self { cert, key })
    }

    /// The CA's certificate (PEM), for `sslrootcert=`.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1`, written
    /// to `dir` as `server.crt` and `server.key` (mode 0600); returns their
    /// paths.
    pub fn issue_server_cert(&self, dir: &Path) -> Result<(PathBuf, PathBuf), ServerError> {
        let cert = dir.join("server.crt");
        let key = dir.join("server.key");
        let request = dir.join("server.csr");
        let extensions = dir.join("server.ext");
        std::fs::write(
            &extensions,
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .map_err(ServerError::io(
            "writing the server certificate's extensions",
        ))?;
        let mut command = Command::new("openssl");
        command
            .args(["req", "-new", "-nodes", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&request);
        run(&mut command, None).map_err(openssl_hint)?;
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let mut command = Command::new("openssl");
        command
            .args(["x509", "-req", "-days", "2", "-sha256"])
            .arg("-in")
            .arg(&request)
            .arg("-CA")
            .arg(&self.cert)
            .arg("-CAkey")
            .arg(&self.key)
            .arg("-set_serial")
            .arg(format!("{serial}"))
            .arg("-extfile")
            .arg(&extensions)
            .arg("-out")
            .arg(&cert);
        run(&mut command, None).map_err(openssl_hint)?;
        set_mode(&key, 0o600)?;
        Ok((cert, key))
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(ServerError::io(
        format!("setting the mode of {} to {mode:o}", path.display()),
    ))
}

/// `openssl` missing is a missing binary, not a failed command.
fn openssl_hint(error: ServerError) -> ServerError {
    match error {
        ServerError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ServerError::MissingBinary {
                program: "openssl".into(),
                searched: "PATH".into(),
                install: "install OpenSSL: `apt-get install -y openssl`".into(),
            }
        }
        other => other,
    }
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
        Self::start_with(auth, false)
    }

    /// Like [`start`](Self::start), with TLS on (`ssl=on`): a fresh CA
    /// ([`ca_cert`](Self::ca_cert)) signs the server's certificate for
    /// `localhost` and `127.0.0.1`. Plain connections are still accepted.
    pub fn start_with_tls() -> Result<Self, ServerError> {
        Self::start_with("trust", true)
    }

    fn start_with(auth: &str, tls: bool) -> Result<Self, ServerError> {
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
            tls: None,
        };
        if as_postgres_user {
            give_to_postgres_user(server.dir.path())?;
        }
        server.initdb(auth)?;
        if tls {
            server.tls = Some(server.make_tls_files()?);
        }
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

    /// The CA that signed the server's certificate (PEM), when started by
    /// [`start_with_tls`](Self::start_with_tls).
    pub fn ca_cert(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca.cert())
    }

    /// The URL of `database` as the superuser over verified TLS
    /// (`?sslmode=verify-full&sslrootcert=CA`), when started by
    /// [`start_with_tls`](Self::start_with_tls).
    pub fn tls_url_for(&self, database: &str) -> Option<String> {
        self.ca_cert().map(|ca| {
            format!(
                "{}?sslmode=verify-full&sslrootcert={}",
                self.url_for(database),
                ca.display()
            )
        })
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
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        if let Some(tls) = &self.tls {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                tls.cert.display(),
                tls.key.display()
            ));
        }
        options
    }

    /// A CA and the server's certificate in `tls/` of the server's
    /// directory; the key is the server user's, mode 0600, as PostgreSQL
    /// requires.
    fn make_tls_files(&self) -> Result<TlsFiles, ServerError> {
        let dir = self.dir.path().join("tls");
        std::fs::create_dir(&dir)
            .map_err(ServerError::io(format!("creating {}", dir.display())))?;
        let ca = TestCa::create(&dir, "deferred-audit test CA")?;
        let (cert, key) = ca.issue_server_cert(&dir)?;
        if self.as_postgres_user {
            for path in [&dir, &cert, &key] {
                give_to_postgres_user(path)?;
            }
        }
        Ok(TlsFiles { ca, cert, key })
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
