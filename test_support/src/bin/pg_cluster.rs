//! `pg_cluster`: the test harness's PostgreSQL code for the shell scripts (bench, chaos, smoke,
//! the local cluster of `make`), so they find, start and stop PostgreSQL as the tests do.
//!
//! ```text
//! pg_cluster start --dir DIR [--port P] [--fsync on|off]   initdb (once) and start; prints
//!                                                          port=, bindir=, data=, log=, url=
//! pg_cluster stop --dir DIR [--mode fast|immediate]        stop if running (default fast)
//! pg_cluster restart --dir DIR --mode fast|immediate
//! pg_cluster standby --dir DIR --of PORT [--port P]        a hot standby of the server on
//!                                                          127.0.0.1:PORT (pg_basebackup -R),
//!                                                          started; prints as start does
//! pg_cluster promote --dir DIR                             promote a standby (pg_ctl promote)
//! pg_cluster bindir                                        the server binaries' directory
//! pg_cluster free-port [N]                                 N free loopback ports, one a line
//! pg_cluster port-free PORT                                exit 0 when PORT is free, else 1
//! pg_cluster can-enter DIR                                 exit 0 when the server's user can
//!                                                          enter DIR, else 1 and why
//! pg_cluster own PATH...                                   give PATHs to the server's user
//!                                                          (chown, as root only)
//! pg_cluster exec PROGRAM [ARG...]                         a server binary (initdb, pg_ctl, ...)
//!                                                          as the server's user, from /
//! ```
//!
//! `start` prints one `key=value` a line (the value runs to the end of the line), for
//! `while IFS='=' read -r key value`. `--fsync` defaults to on; only tests may turn it off.
//! Errors go to stderr in one line that says how to fix them; exit status 1, 2 for bad usage.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::prelude::*;
use test_support::{find_bindir, free_ports, port_is_free, Durability, HarnessError, PgDir};
use test_support::{ServerUser, StopMode};

const USAGE: &str = "usage: pg_cluster start --dir DIR [--port P] [--fsync on|off]
       pg_cluster stop --dir DIR [--mode fast|immediate]
       pg_cluster restart --dir DIR --mode fast|immediate
       pg_cluster standby --dir DIR --of PORT [--port P] | promote --dir DIR
       pg_cluster bindir | free-port [N] | port-free PORT | can-enter DIR | own PATH...
       pg_cluster exec PROGRAM [ARG...]";

/// What the command line asks for.
#[derive(Debug)]
enum Task {
    Start {
        dir: PathBuf,
        port: Option<u16>,
        durability: Option<Durability>,
    },
    Stop {
        dir: PathBuf,
        mode: StopMode,
    },
    Restart {
        dir: PathBuf,
        mode: StopMode,
    },
    Standby {
        dir: PathBuf,
        of: u16,
        port: Option<u16>,
    },
    Promote {
        dir: PathBuf,
    },
    Bindir,
    FreePort {
        count: usize,
    },
    PortFree {
        port: u16,
    },
    CanEnter {
        dir: PathBuf,
    },
    Own {
        paths: Vec<PathBuf>,
    },
    Exec {
        program: String,
        args: Vec<OsString>,
    },
}

/// A command line that cannot be run: exit status 2.
#[derive(Debug)]
struct Usage(String);

fn main() -> ExitCode {
    let task = match parse_args() {
        Ok(task) => task,
        Err(Usage(message)) => {
            eprintln!("pg_cluster: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(task) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pg_cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<ExitCode, HarnessError> {
    match task {
        Task::Start {
            dir,
            port,
            durability,
        } => {
            let pg = PgDir::new(dir)?;
            start(&pg, port, durability)?;
            print_facts(&pg)?;
        }
        Task::Standby { dir, of, port } => {
            let pg = PgDir::new(dir)?;
            if pg.exists() {
                return Err(HarnessError::Invalid {
                    what: format!(
                        "{} holds a cluster already: a standby is made from a fresh base backup \
                         into an empty directory",
                        pg.dir().display()
                    ),
                });
            }
            let port = match port {
                Some(port) => port,
                None => free_ports(1)?[0],
            };
            pg.init_standby_of(of, port)?;
            pg.start()?;
            print_facts(&pg)?;
        }
        Task::Promote { dir } => PgDir::new(dir)?.promote()?,
        Task::Stop { dir, mode } => PgDir::new(dir)?.stop(mode)?,
        Task::Restart { dir, mode } => PgDir::new(dir)?.restart(mode)?,
        Task::Bindir => println!("{}", find_bindir()?.display()),
        Task::FreePort { count } => {
            for port in free_ports(count)? {
                println!("{port}");
            }
        }
        Task::PortFree { port } => {
            return Ok(if port_is_free(port) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Task::CanEnter { dir } => ServerUser::detect()?.check_can_enter(&dir)?,
        Task::Own { paths } => {
            let user = ServerUser::detect()?;
            for path in paths {
                user.take_ownership(&path)?;
            }
        }
        Task::Exec { program, args } => {
            let user = ServerUser::detect()?;
            let path = find_bindir()?.join(&program);
            let status = user
                .command(&path)
                .args(args)
                .status()
                .map_err(|source| HarnessError::Spawn { program, source })?;
            // A program killed by a signal has no code: report it as a failure.
            let code = status.code().unwrap_or(1);
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the cluster in `pg`, creating it first when the directory holds none. A cluster made
/// before keeps its port and durability, so asking for others then is an error, not a surprise.
/// What `start` and `standby` print: one `key=value` a line.
fn print_facts(pg: &PgDir) -> Result<(), HarnessError> {
    let port = pg.running_port().ok_or_else(|| HarnessError::Invalid {
        what: format!(
            "the server started but {} names no port",
            pg.data().join("postmaster.pid").display()
        ),
    })?;
    for (key, value) in [
        ("port", port.to_string()),
        ("bindir", pg.bindir().display().to_string()),
        ("data", pg.data().display().to_string()),
        ("log", pg.log().display().to_string()),
        (
            "url",
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ),
    ] {
        println!("{key}={value}");
    }
    Ok(())
}

fn start(
    pg: &PgDir,
    port: Option<u16>,
    durability: Option<Durability>,
) -> Result<(), HarnessError> {
    if pg.exists() {
        if port.is_some() || durability.is_some() {
            return Err(HarnessError::Invalid {
                what: format!(
                    "{} holds a cluster already, made with its own port and durability: start \
                     it without --port and --fsync, or stop it and delete the directory",
                    pg.dir().display()
                ),
            });
        }
        if pg.is_running() {
            return Ok(());
        }
    } else {
        let port = match port {
            Some(port) => port,
            None => free_ports(1)?[0],
        };
        pg.init(port, durability.unwrap_or(Durability::Full))?;
    }
    pg.start()
}

fn parse_args() -> Result<Task, Usage> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next().map_err(usage)? {
        Some(Value(command)) => command.string().map_err(usage)?,
        Some(other) => {
            return Err(Usage(format!(
                "expected a command, got {}",
                other.unexpected()
            )))
        }
        None => return Err(Usage("no command given".into())),
    };
    let mut dir: Option<PathBuf> = None;
    let mut port: Option<u16> = None;
    let mut of: Option<u16> = None;
    let mut durability: Option<Durability> = None;
    let mut mode: Option<StopMode> = None;
    let mut values: Vec<OsString> = Vec::new();
    if command == "exec" {
        // Everything after the program belongs to it, options included.
        values = parser.raw_args().map_err(usage)?.collect();
    } else {
        while let Some(arg) = parser.next().map_err(usage)? {
            match arg {
                Long("dir") => dir = Some(parser.value().map_err(usage)?.into()),
                Long("port") => port = Some(parser.value().map_err(usage)?.parse().map_err(usage)?),
                Long("of") => of = Some(parser.value().map_err(usage)?.parse().map_err(usage)?),
                Long("fsync") => {
                    let value = parser.value().map_err(usage)?.string().map_err(usage)?;
                    durability = Some(Durability::from_fsync(&value).map_err(usage)?);
                }
                Long("mode") => {
                    let value = parser.value().map_err(usage)?.string().map_err(usage)?;
                    mode = Some(StopMode::from_name(&value).map_err(usage)?);
                }
                Value(value) => values.push(value),
                other => return Err(Usage(other.unexpected().to_string())),
            }
        }
    }
    let need_dir =
        |dir: Option<PathBuf>| dir.ok_or_else(|| Usage(format!("{command} needs --dir DIR")));
    let one_value = |values: &[OsString], what: &str| -> Result<String, Usage> {
        match values {
            [value] => value
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| Usage(format!("{what} is not UTF-8"))),
            _ => Err(Usage(format!("{command} takes one {what}"))),
        }
    };
    let task = match command.as_str() {
        "start" => Task::Start {
            dir: need_dir(dir)?,
            port,
            durability,
        },
        "stop" => Task::Stop {
            dir: need_dir(dir)?,
            mode: mode.unwrap_or(StopMode::Fast),
        },
        "restart" => Task::Restart {
            dir: need_dir(dir)?,
            mode: mode.ok_or_else(|| Usage("restart needs --mode fast|immediate".into()))?,
        },
        "standby" => Task::Standby {
            dir: need_dir(dir)?,
            of: of.ok_or_else(|| Usage("standby needs --of PORT, the primary's port".into()))?,
            port,
        },
        "promote" => Task::Promote {
            dir: need_dir(dir)?,
        },
        "bindir" => Task::Bindir,
        "free-port" => {
            let count = match values.as_slice() {
                [] => 1,
                _ => one_value(&values, "count N")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Usage("free-port N takes a positive whole number".into()))?,
            };
            Task::FreePort { count }
        }
        "port-free" => Task::PortFree {
            port: one_value(&values, "PORT")?
                .parse()
                .map_err(|_| Usage("port-free PORT takes a port number (1-65535)".into()))?,
        },
        "can-enter" => Task::CanEnter {
            dir: one_value(&values, "DIR")?.into(),
        },
        "own" if values.is_empty() => return Err(Usage("own needs at least one PATH".into())),
        "own" => Task::Own {
            paths: values.into_iter().map(PathBuf::from).collect(),
        },
        "exec" => {
            let mut values = values.into_iter();
            let program = values
                .next()
                .and_then(|p| p.into_string().ok())
                .ok_or_else(|| {
                    Usage("exec needs a PROGRAM (initdb, pg_ctl, postgres, ...)".into())
                })?;
            if program.contains('/') {
                return Err(Usage(format!(
                    "exec runs a program of the server's bindir by name, not the path `{program}`"
                )));
            }
            Task::Exec {
                program,
                args: values.collect(),
            }
        }
        other => return Err(Usage(format!("unknown command `{other}`"))),
    };
    Ok(task)
}

fn usage(e: impl std::fmt::Display) -> Usage {
    Usage(e.to_string())
}
