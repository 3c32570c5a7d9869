//! `write_paths`: rows a second that PostgreSQL takes through each way of writing a batch, for
//! `make bench` (issue: the write path near COPY speed).
//!
//! ```text
//! write_paths --port P --path PATH --connections N --seconds S [--batch B] [--run ID]
//!             [--host H] [--user U] [--dbname D]
//! ```
//!
//! N threads, each with its own connection, write batches of B rows (default 100, shaped like
//! events.json, each with its own idempotency key) into `events`, one transaction per batch,
//! for S seconds. PATH is one of:
//! - `unnest`: the consumer's statement, `INSERT … SELECT FROM unnest($1, $2, $3) WITH
//!   ORDINALITY … ON CONFLICT (idempotency_key) DO NOTHING RETURNING` (three arrays, one
//!   round trip);
//! - `values`: one multi-row `INSERT … VALUES ($1, $2, $3), … ON CONFLICT … RETURNING`
//!   (3 × B parameters, prepared once);
//! - `staging`: binary `COPY` into the unlogged `events_staging` table, then in the same
//!   transaction `WITH moved AS (DELETE FROM events_staging RETURNING …) INSERT INTO events
//!   SELECT … FROM moved … ON CONFLICT … RETURNING` (COPY has no ON CONFLICT; rows another
//!   transaction copied are invisible to this one, so each moves only its own);
//! - `copy`: binary `COPY` straight into `events`: no conflict handling and nothing returned,
//!   so it cannot keep the contract. It is the ceiling the others are read against.
//!
//! The last line of stdout is what bench.sh keeps and bench_report reads:
//! `WRITE path=P connections=N batch=B rows=R transactions=T errors=E window_s=W p50_us=
//! p99_us= max_us=` (latency: one batch's transaction, begin to commit). Exit status 1 when
//! nothing was written, 2 for bad usage.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};

use bench::shapes::Row;
use bench::stats::Latency;
use bench::{shapes, tool};

const USAGE: &str = "usage: write_paths --port P --path unnest|values|staging|copy \
--connections N --seconds S [--batch B] [--run ID] [--host H] [--user U] [--dbname D]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Unnest,
    Values,
    Staging,
    Copy,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Unnest => "unnest",
            Path::Values => "values",
            Path::Staging => "staging",
            Path::Copy => "copy",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    host: String,
    port: u16,
    user: String,
    dbname: String,
    path: Path,
    connections: usize,
    seconds: u64,
    batch: usize,
    run: String,
}

#[derive(Debug, Default)]
struct Tally {
    micros: Vec<f64>,
    rows: u64,
    errors: u64,
    first_error: Option<String>,
}

const UNNEST: &str = "INSERT INTO events (event_type, event_payload, idempotency_key) \
     SELECT t, p, k FROM unnest($1::text[], $2::text[], $3::text[]) \
         WITH ORDINALITY AS batch(t, p, k, n) ORDER BY n \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id, idempotency_key, received_at";

const STAGING_COPY: &str = "COPY events_staging (n, event_type, event_payload, idempotency_key) \
     FROM STDIN (FORMAT binary)";

const STAGING_MOVE: &str = "WITH moved AS ( \
         DELETE FROM events_staging RETURNING n, event_type, event_payload, idempotency_key) \
     INSERT INTO events (event_type, event_payload, idempotency_key) \
     SELECT event_type, event_payload, idempotency_key FROM moved ORDER BY n \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id, idempotency_key, received_at";

const COPY: &str = "COPY events (event_type, event_payload, idempotency_key) \
     FROM STDIN (FORMAT binary)";

fn values_sql(batch: usize) -> String {
    let tuples: Vec<String> = (0..batch)
        .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
        .collect();
    format!(
        "INSERT INTO events (event_type, event_payload, idempotency_key) VALUES {} \
         ON CONFLICT (idempotency_key) DO NOTHING \
         RETURNING id, idempotency_key, received_at",
        tuples.join(", ")
    )
}

fn main() -> ExitCode {
    tool::main_of("write_paths", USAGE, parse_args, run)
}

fn run(args: &Args) -> Result<(), String> {
    // Connect every client before the clock starts: the figure is about writing.
    let clients = (0..args.connections)
        .map(|_| connect(args))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(connection, client)| {
            let args = args.clone();
            thread::spawn(move || write_until(client, &args, connection, deadline))
        })
        .collect();
    let mut all = Tally::default();
    for t in threads {
        let tally = t
            .join()
            .map_err(|_| "a writer thread panicked".to_string())?;
        all.micros.extend(tally.micros);
        all.rows += tally.rows;
        all.errors += tally.errors;
        all.first_error = all.first_error.or(tally.first_error);
    }
    let window_s = started.elapsed().as_secs_f64();
    if let Some(e) = &all.first_error {
        eprintln!("write_paths: first error of {}: {e}", all.errors);
    }
    let transactions = all.micros.len();
    let latency = Latency::of_micros(all.micros)
        .ok_or_else(|| format!("no batch was written in {} s", args.seconds))?;
    println!(
        "WRITE path={} connections={} batch={} rows={} transactions={transactions} errors={} window_s={window_s:.3} p50_us={:.0} p99_us={:.0} max_us={:.0}",
        args.path.name(),
        args.connections,
        args.batch,
        all.rows,
        all.errors,
        latency.p50_ms * 1000.0,
        latency.p99_ms * 1000.0,
        latency.max_ms * 1000.0
    );
    Ok(())
}

fn connect(args: &Args) -> Result<Client, String> {
    postgres::Config::new()
        .host(&args.host)
        .port(args.port)
        .user(&args.user)
        .dbname(&args.dbname)
        .application_name("write_paths")
        .connect(NoTls)
        .map_err(|e| format!("cannot connect to {}:{}: {e}", args.host, args.port))
}

fn write_until(mut client: Client, args: &Args, connection: usize, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut next = 0u64;
    let prepared = match args.path {
        Path::Unnest => client.prepare(UNNEST),
        Path::Values => client.prepare(&values_sql(args.batch)),
        Path::Staging => client.prepare(STAGING_MOVE),
        Path::Copy => client.prepare("SELECT 1"),
    };
    let statement = match prepared {
        Ok(statement) => statement,
        Err(e) => {
            tally.errors += 1;
            tally.first_error = Some(format!("prepare: {e}"));
            return tally;
        }
    };
    while Instant::now() < deadline {
        let rows = shapes::rows(&args.run, connection, next, args.batch);
        next += args.batch as u64;
        let begun = Instant::now();
        match write(&mut client, &statement, args.path, &rows) {
            Ok(written) if written == rows.len() as u64 => {
                tally.micros.push(begun.elapsed().as_secs_f64() * 1e6);
                tally.rows += written;
            }
            Ok(written) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(format!(
                    "{written} rows written of a batch of {}",
                    rows.len()
                ));
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e.to_string());
            }
        }
    }
    tally
}

/// Writes one batch in one transaction; the number of rows written.
fn write(
    client: &mut Client,
    statement: &postgres::Statement,
    path: Path,
    rows: &[Row],
) -> Result<u64, postgres::Error> {
    let types: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
    let payloads: Vec<&str> = rows.iter().map(|r| r.event_payload.as_str()).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.idempotency_key.as_str()).collect();
    match path {
        Path::Unnest => Ok(client.query(statement, &[&types, &payloads, &keys])?.len() as u64),
        Path::Values => {
            let params: Vec<&(dyn ToSql + Sync)> = rows
                .iter()
                .flat_map(|r| {
                    [
                        &r.event_type as &(dyn ToSql + Sync),
                        &r.event_payload,
                        &r.idempotency_key,
                    ]
                })
                .collect();
            Ok(client.query(statement, &params)?.len() as u64)
        }
        Path::Staging => {
            let mut transaction = client.transaction()?;
            let sink = transaction.copy_in(STAGING_COPY)?;
            let mut writer =
                BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT]);
            for (n, r) in rows.iter().enumerate() {
                writer.write(&[
                    &(n as i64),
                    &r.event_type,
                    &r.event_payload,
                    &r.idempotency_key,
                ])?;
            }
            writer.finish()?;
            let moved = transaction.query(statement, &[])?.len() as u64;
            transaction.commit()?;
            Ok(moved)
        }
        Path::Copy => {
            let sink = client.copy_in(COPY)?;
            let mut writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::TEXT]);
            for r in rows {
                writer.write(&[&r.event_type, &r.event_payload, &r.idempotency_key])?;
            }
            writer.finish()
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut parser = lexopt::Parser::from_env();
    let mut args = Args {
        host: "127.0.0.1".into(),
        port: 0,
        user: "postgres".into(),
        dbname: "events".into(),
        path: Path::Unnest,
        connections: 0,
        seconds: 0,
        batch: 100,
        run: format!("w{}", std::process::id()),
    };
    let (mut port, mut path, mut connections, mut seconds) = (false, false, false, false);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("host") => args.host = tool::text(&mut parser)?,
            Long("user") => args.user = tool::text(&mut parser)?,
            Long("dbname") => args.dbname = tool::text(&mut parser)?,
            Long("run") => args.run = tool::text(&mut parser)?,
            Long("port") => {
                args.port = tool::port(&tool::text(&mut parser)?)?;
                port = true;
            }
            Long("path") => {
                args.path = match tool::text(&mut parser)?.as_str() {
                    "unnest" => Path::Unnest,
                    "values" => Path::Values,
                    "staging" => Path::Staging,
                    "copy" => Path::Copy,
                    other => {
                        return Err(format!(
                            "--path {other}: not one of unnest, values, staging, copy"
                        ))
                    }
                };
                path = true;
            }
            Long("connections") => {
                args.connections = tool::positive("--connections", &tool::text(&mut parser)?)?;
                connections = true;
            }
            Long("seconds") => {
                args.seconds = tool::positive("--seconds", &tool::text(&mut parser)?)? as u64;
                seconds = true;
            }
            Long("batch") => {
                // 3 parameters a row: PostgreSQL takes at most 65 535 in one statement.
                args.batch = tool::positive("--batch", &tool::text(&mut parser)?)?;
                if args.batch > 20_000 {
                    return Err(format!("--batch {}: at most 20000", args.batch));
                }
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    for (given, flag) in [
        (port, "--port"),
        (path, "--path"),
        (connections, "--connections"),
        (seconds, "--seconds"),
    ] {
        if !given {
            return Err(format!("{flag} is required"));
        }
    }
    Ok(args)
}
