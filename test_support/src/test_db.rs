//! The server the tests use and an isolated database per test on it.
//!
//! With `DATABASE_URL` set, tests use that server. Without it, the first test that needs a
//! database starts a [`Cluster`], shared by the tests of that process. Each [`TestDb`] is a
//! fresh database with `schema.sql` applied, dropped on `Drop`, so tests run in parallel
//! without seeing each other's rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::config::{DatabaseConfig, Secret};

use crate::cluster::Cluster;
use crate::schema_sql;

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
            port: self.port.into(),
            user: self.user.clone(),
            password: Secret::new(self.password.clone()),
            dbname: dbname.to_owned(),
            connect_timeout_seconds: 3.0,
            statement_timeout_seconds: 5.0,
            ..DatabaseConfig::default()
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
