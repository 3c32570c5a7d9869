//! Test-only support: a throwaway PostgreSQL cluster and an isolated database per test.
//!
//! With `DATABASE_URL` set, tests use that server. Without it, the first test that needs a
//! database starts a cluster from the installed server binaries (initdb into a temporary
//! directory, a port the OS reports free, fsync off), shared by the tests of that process.
//! A guardian shell holds a pipe from the test process: when the process ends, however it
//! ends, the pipe closes and the guardian stops the cluster and deletes its directory.
//! Each [`TestDb`] is a fresh database with `schema.sql` applied, dropped on `Drop`, so tests
//! run in parallel without seeing each other's rows.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::config::{DatabaseConfig, Secret};

/// The schema the services expect, the same file `db_init_script.sh` applies.
pub fn schema_sql() -> &'static str {
    include_str!("../../schema.sql")
}

/// The repository root, for tests that run the shipped scripts and files.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Where to reach a PostgreSQL server as a superuser.
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl Server {
    pub fn database_config(&self, dbname: &str) -> DatabaseConfig {
        DatabaseConfig {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: Secret::new(self.password.clone()),
            dbname: dbname.to_owned(),
            connect_timeout_seconds: 3.0,
            statement_timeout_seconds: 5.0,
        }
    }

    pub fn connect(&self, dbname: &str) -> Result<postgres::Client, postgres::Error> {
        let mut config = postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5));
        config.connect(postgres::NoTls)
    }

    fn from_url(url: &str) -> Server {
        let config: postgres::Config = url
            .parse()
            .unwrap_or_else(|e| panic!("DATABASE_URL is not a PostgreSQL URL: {e}"));
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        Server {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().unwrap_or("postgres").to_owned(),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The server shared by the tests of this process: `DATABASE_URL`, or a cluster started once.
pub fn shared_server() -> &'static Server {
    static SERVER: OnceLock<(Server, Option<Cluster>)> = OnceLock::new();
    let (server, _cluster) = SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (Server::from_url(&url), None),
        _ => {
            let cluster = Cluster::start();
            (cluster.server(), Some(cluster))
        }
    });
    server
}

/// A fresh database with the schema applied, dropped when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    pub server: Server,
    pub name: String,
}

impl TestDb {
    /// A new database on the shared server.
    pub fn new() -> TestDb {
        TestDb::on(shared_server())
    }

    /// A new database on the given server (for tests that run their own cluster).
    pub fn on(server: &Server) -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect_with_retry(server, "postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let mut client = connect_with_retry(server, &name);
        client
            .batch_execute(schema_sql())
            .unwrap_or_else(|e| panic!("cannot apply schema.sql to {name}: {e}"));
        TestDb {
            server: server.clone(),
            name,
        }
    }

    pub fn database_config(&self) -> DatabaseConfig {
        self.server.database_config(&self.name)
    }

    /// A client for checking what the services wrote.
    pub fn client(&self) -> postgres::Client {
        connect_with_retry(&self.server, &self.name)
    }

    /// Number of rows in `events`.
    pub fn count_events(&self) -> i64 {
        self.client()
            .query_one("SELECT count(*) FROM events", &[])
            .unwrap()
            .get(0)
    }
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = self.server.connect("postgres") {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn connect_with_retry(server: &Server, dbname: &str) -> postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match server.connect(dbname) {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => {
                panic!(
                    "cannot connect to PostgreSQL at {}:{} db {dbname}: {e}",
                    server.host, server.port
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A PostgreSQL cluster of our own: initdb into a temporary directory, a free port.
/// Tests that stop and restart the database use one of these directly.
#[derive(Debug)]
pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    bindir: PathBuf,
    as_postgres_user: bool,
    guardian: Option<(Child, ChildStdin)>,
}

impl Cluster {
    /// Starts a new cluster with fsync off (tests only; benchmarks never turn it off).
    pub fn start() -> Cluster {
        Cluster::start_with(&[
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
    }

    /// Starts a new cluster with PostgreSQL's default durability.
    pub fn start_durable() -> Cluster {
        Cluster::start_with(&[])
    }

    fn start_with(settings: &[&str]) -> Cluster {
        let bindir = pg_bindir();
        let as_postgres_user = running_as_root();
        let base = std::env::var_os("EVENTS_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = base.join(format!("evtest-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres_user {
            run(
                Command::new("chown").arg("postgres:postgres").arg(&dir),
                "chown",
            );
        }
        let port = free_port();
        let mut cluster = Cluster {
            port,
            dir,
            bindir,
            as_postgres_user,
            guardian: None,
        };
        cluster.spawn_guardian();
        let data = cluster.data_dir();
        let mut initdb = cluster.pg_command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb, "initdb");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        let mut lines = vec![
            format!("port = {port}"),
            "listen_addresses = '127.0.0.1'".to_owned(),
            format!("unix_socket_directories = '{}'", cluster.dir.display()),
            "max_connections = 300".to_owned(),
            "log_min_messages = warning".to_owned(),
        ];
        for pair in settings.chunks(2) {
            let (key, value) = pair[1].split_once('=').unwrap();
            lines.push(format!("{key} = {value}"));
        }
        writeln!(conf, "{}", lines.join("\n")).unwrap();
        cluster.pg_ctl_start();
        cluster
    }

    pub fn server(&self) -> Server {
        Server {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            password: String::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server; `mode` is pg_ctl's: "fast" or "immediate".
    pub fn stop(&self, mode: &str) {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "stop"]);
        run(&mut cmd, "pg_ctl stop");
    }

    /// Starts the server again after [`Cluster::stop`], on the same port.
    pub fn pg_ctl_start(&self) {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        run(&mut cmd, "pg_ctl start");
    }

    /// A command for one of the server binaries, run as `postgres` when we are root.
    fn pg_command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    /// The guardian waits for our end of its stdin to close (test process exit or `Drop`),
    /// then stops the server and removes the directory. It ignores SIGINT so Ctrl-C on the
    /// test run still cleans up.
    fn spawn_guardian(&mut self) {
        let pg_ctl = self.bindir.join("pg_ctl");
        let stop = if self.as_postgres_user {
            format!("runuser -u postgres -- '{}'", pg_ctl.display())
        } else {
            format!("'{}'", pg_ctl.display())
        };
        let script = format!(
            "trap '' INT TERM; cat >/dev/null; \
             {stop} -D '{data}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{dir}'",
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the cluster's guardian shell");
        let stdin = child.stdin.take().unwrap();
        self.guardian = Some((child, stdin));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.guardian.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `PG_BINDIR`, `pg_config --bindir`,
/// or the newest `/usr/lib/postgresql/*/bin`. Panics with how to get them when none is found.
pub fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return dir;
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| has_server(p))
        .collect();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries found (initdb, pg_ctl) and DATABASE_URL is not set. \
             Install them (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install \
             postgresql-server; macOS: brew install postgresql@15), set PG_BINDIR to their \
             directory, or set DATABASE_URL=postgres://user:password@host:port/postgres"
        )
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A TCP port the OS reports free on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
