//! Command-line flags. Each flag overrides the matching `propagator.*` key of the config file
//! ([`Args::settings`] makes the run's one [`Settings`] value: flag, else config, else the
//! default); `--count`, `--duration`, `--seed` and `--keys-log` exist only here.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use common::config::PropagatorConfig;

use crate::Settings;

pub const USAGE: &str = "\
Sends randomly chosen events from a JSON file to the event consumer at a fixed rate.

Usage: event_propagator [OPTIONS]

Options:
  --config PATH          configuration file [default: config.yaml in the working directory
                         if it exists, else the built-in defaults]
  --endpoint URL         consumer URL, overrides propagator.endpoint(s); repeat it for
                         several consumers on one database (round-robin, failover)
  --period SECONDS       time between sends (0 = back to back, fractions allowed),
                         overrides propagator.period_seconds
  --events-file PATH     JSON array of events, overrides propagator.events_file
  --max-in-flight N      most sends waiting for an answer at once (1 to 1024; 1 = one at
                         a time), overrides propagator.max_in_flight
  --batch-size N         events per request (1 to 1000); above 1 each slot POSTs N events
                         as one JSON array to the batch endpoint, overrides
                         propagator.batch_size
  --batch-endpoint URL   where batches go [default: the endpoint with its last path
                         segment `event` replaced by `events`], overrides
                         propagator.batch_endpoint
  --gzip                 compress request bodies (Content-Encoding: gzip), overrides
                         propagator.gzip
  --count N              send N times (N events; with --batch-size B, N requests of B events), then exit
  --duration SECONDS     stop starting new sends after this long, then exit
  --seed N               seed for choosing events, to replay a run (default: random, logged)
  --keys-log PATH        append each event's Idempotency-Key to PATH before sending it
  --spool-dir DIR        keep every event in DIR until the consumer settles it, replayed
                         at the next start, overrides propagator.spool_dir
  -h, --help             print this help
  -V, --version          print the version

Without --count or --duration it runs until SIGTERM or SIGINT.
Exit status: 0 every event sent was delivered; 1 an event was rejected, given up or
abandoned at shutdown, a second SIGTERM/SIGINT, or a runtime failure (as the consumer's);
2 configuration or input error, or the spool directory in use by another propagator;
3 (with a spool) nothing failed, but events remain in the spool for the next run.
";

/// What the command line asks for.
// Made once per process and matched at once: boxing `Args` to keep `Help` small buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Args),
    Help,
    Version,
}

/// Parsed flags; `None` means "as the config file says".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Args {
    /// `--config`; none: config.yaml when it exists, else the defaults.
    pub config: Option<PathBuf>,
    /// Every `--endpoint`, in order; empty: as the config file says.
    pub endpoints: Vec<String>,
    pub period_seconds: Option<f64>,
    pub events_file: Option<PathBuf>,
    pub max_in_flight: Option<usize>,
    pub batch_size: Option<usize>,
    pub batch_endpoint: Option<String>,
    /// `--gzip` given: on (there is no flag to turn a configured gzip off).
    pub gzip: bool,
    pub count: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub seed: Option<u64>,
    pub keys_log: Option<PathBuf>,
    pub spool_dir: Option<PathBuf>,
}

impl Args {
    /// The run's settings: the config section with the flags on top.
    pub fn settings(&self, config: &PropagatorConfig) -> Settings {
        let mut settings = Settings::from_config(config);
        self.apply(&mut settings);
        settings
    }

    /// Applies the flags on top of settings taken from the config file.
    fn apply(&self, settings: &mut Settings) {
        // The flags' list replaces the config's whole, rather than adding to it: what the
        // command line shows is where events go.
        if !self.endpoints.is_empty() {
            settings.endpoints = self.endpoints.clone();
        }
        if let Some(period) = self.period_seconds {
            settings.period = Duration::from_secs_f64(period);
        }
        if let Some(path) = &self.events_file {
            settings.events_file = path.clone();
        }
        if let Some(max_in_flight) = self.max_in_flight {
            settings.max_in_flight = max_in_flight;
        }
        if let Some(batch_size) = self.batch_size {
            settings.batch_size = batch_size;
        }
        if let Some(url) = &self.batch_endpoint {
            settings.batch_endpoint = Some(url.clone());
        }
        if self.gzip {
            settings.gzip = true;
        }
        if let Some(count) = self.count {
            settings.count = Some(count);
        }
        if let Some(duration) = self.duration_seconds {
            settings.duration = Some(Duration::from_secs_f64(duration));
        }
        if let Some(seed) = self.seed {
            settings.seed = Some(seed);
        }
        if let Some(path) = &self.keys_log {
            settings.keys_log = Some(path.clone());
        }
        if let Some(dir) = &self.spool_dir {
            settings.spool_dir = Some(dir.clone());
        }
    }
}

/// A bad command line, as one line naming the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see --help)", self.0)
    }
}

impl std::error::Error for CliError {}

/// Longest accepted `--duration`: ten years, far beyond any real run, far below overflow.
const MAX_DURATION_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::Arg::{Long, Short, Value};
    let mut parser = lexopt::Parser::from_args(args);
    let mut out = Args::default();
    loop {
        let arg = parser.next().map_err(lexopt_error)?;
        let Some(arg) = arg else { break };
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help),
            Long("version") | Short('V') => return Ok(Command::Version),
            Long("config") => out.config = Some(parser.value().map_err(lexopt_error)?.into()),
            Long("endpoint") => out.endpoints.push(url(&mut parser, "--endpoint")?),
            Long("batch-endpoint") => {
                out.batch_endpoint = Some(url(&mut parser, "--batch-endpoint")?);
            }
            Long("batch-size") => {
                let value = text(&mut parser, "--batch-size")?;
                let max = common::config::MAX_BATCH_SIZE;
                match value.parse::<usize>() {
                    Ok(n) if (1..=max).contains(&n) => out.batch_size = Some(n),
                    _ => {
                        return Err(CliError(format!(
                            "--batch-size: expected a whole number of events from 1 to {max}, \
                             got `{value}`"
                        )))
                    }
                }
            }
            Long("gzip") => out.gzip = true,
            Long("period") => {
                let value = text(&mut parser, "--period")?;
                out.period_seconds = Some(seconds(&value, "--period", 0.0, 86_400.0, true)?);
            }
            Long("events-file") => {
                out.events_file = Some(parser.value().map_err(lexopt_error)?.into());
            }
            Long("max-in-flight") => {
                let value = text(&mut parser, "--max-in-flight")?;
                let max = common::config::MAX_IN_FLIGHT_LIMIT;
                match value.parse::<usize>() {
                    Ok(n) if (1..=max).contains(&n) => out.max_in_flight = Some(n),
                    _ => {
                        return Err(CliError(format!(
                            "--max-in-flight: expected a whole number of sends from 1 to {max}, \
                             got `{value}`"
                        )))
                    }
                }
            }
            Long("count") => {
                let value = text(&mut parser, "--count")?;
                match value.parse::<u64>() {
                    Ok(n) if n >= 1 => out.count = Some(n),
                    _ => {
                        return Err(CliError(format!(
                            "--count: expected a whole number of sends, at least 1, got `{value}`"
                        )))
                    }
                }
            }
            Long("duration") => {
                let value = text(&mut parser, "--duration")?;
                let max = MAX_DURATION_SECONDS;
                out.duration_seconds = Some(seconds(&value, "--duration", 0.0, max, false)?);
            }
            Long("seed") => {
                let value = text(&mut parser, "--seed")?;
                out.seed = Some(value.parse().map_err(|_| {
                    CliError(format!(
                        "--seed: expected a whole number from 0 to {}, got `{value}`",
                        u64::MAX
                    ))
                })?);
            }
            Long("keys-log") => out.keys_log = Some(parser.value().map_err(lexopt_error)?.into()),
            Long("spool-dir") => out.spool_dir = Some(parser.value().map_err(lexopt_error)?.into()),
            Value(value) => {
                return Err(CliError(format!(
                    "unexpected argument `{}`: this program takes only options",
                    value.to_string_lossy()
                )))
            }
            other => return Err(lexopt_error(other.unexpected())),
        }
    }
    Ok(Command::Run(out))
}

/// The flag's value as an `http://` or `https://` URL.
fn url(parser: &mut lexopt::Parser, flag: &str) -> Result<String, CliError> {
    let url = text(parser, flag)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(CliError(format!(
            "{flag}: expected an http:// or https:// URL, got `{url}`"
        )));
    }
    Ok(url)
}

/// The flag's value as UTF-8 text.
fn text(parser: &mut lexopt::Parser, flag: &str) -> Result<String, CliError> {
    let value = parser.value().map_err(lexopt_error)?;
    value.into_string().map_err(|v| {
        CliError(format!(
            "{flag}: `{}` is not valid UTF-8",
            v.to_string_lossy()
        ))
    })
}

/// A number of seconds within `min..=max` (`min` itself allowed only if `min_ok`).
fn seconds(value: &str, flag: &str, min: f64, max: f64, min_ok: bool) -> Result<f64, CliError> {
    let parsed = value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s <= max && (*s > min || (min_ok && *s == min)));
    parsed.ok_or_else(|| {
        let low = if min_ok { "from" } else { "above" };
        CliError(format!(
            "{flag}: expected a number of seconds {low} {min} to {max}, got `{value}`"
        ))
    })
}

fn lexopt_error(error: lexopt::Error) -> CliError {
    CliError(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &str) -> Result<Args, CliError> {
        match parse(args.split_whitespace())? {
            Command::Run(args) => Ok(args),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn no_flags_means_the_config_file_decides() {
        assert_eq!(run("").unwrap(), Args::default());
    }

    #[test]
    fn every_flag_is_parsed() {
        let args = run(
            "--config /etc/p.yaml --endpoint http://h:1/event --period 0.05 --events-file e.json \
             --max-in-flight 8 --count 200 --duration 1.5 --seed 42 --keys-log keys.txt \
             --batch-size 100 --batch-endpoint https://h:2/bulk --gzip --spool-dir /var/spool/p",
        )
        .unwrap();
        assert_eq!(
            args,
            Args {
                config: Some("/etc/p.yaml".into()),
                endpoints: vec!["http://h:1/event".into()],
                period_seconds: Some(0.05),
                events_file: Some("e.json".into()),
                max_in_flight: Some(8),
                batch_size: Some(100),
                batch_endpoint: Some("https://h:2/bulk".into()),
                gzip: true,
                count: Some(200),
                duration_seconds: Some(1.5),
                seed: Some(42),
                keys_log: Some("keys.txt".into()),
                spool_dir: Some("/var/spool/p".into()),
            }
        );
        // --flag=value works too.
        assert_eq!(run("--period=0").unwrap().period_seconds, Some(0.0));
    }

    #[test]
    fn flags_override_the_config_file() {
        let config = common::Config::default();
        let settings = Settings::from_config(&config.propagator);
        assert_eq!(settings.period, Duration::from_secs(1));
        let settings = run(
            "--endpoint http://x:9/e --period 0.25 --events-file f.json --count 3 --seed 5 \
             --max-in-flight 1 --batch-size 7 --batch-endpoint http://x:9/b --gzip",
        )
        .unwrap()
        .settings(&config.propagator);
        assert_eq!(settings.endpoints, ["http://x:9/e"]);
        assert_eq!(settings.period, Duration::from_millis(250));
        assert_eq!(settings.events_file, PathBuf::from("f.json"));
        assert_eq!((settings.count, settings.seed), (Some(3), Some(5)));
        assert_eq!(settings.max_in_flight, 1);
        assert_eq!(settings.batch_size, 7);
        assert_eq!(settings.batch_endpoint.as_deref(), Some("http://x:9/b"));
        assert!(settings.gzip);
        // Keys the flags do not touch keep their config values.
        assert_eq!(settings.max_retries, config.propagator.max_retries);
        assert_eq!(settings.duration, None);
        let settings = run("--period 0.001").unwrap().settings(&config.propagator);
        assert_eq!(settings.max_in_flight, config.propagator.max_in_flight);
        assert_eq!(settings.batch_size, 1, "one event per request by default");
        assert_eq!(settings.batch_endpoint, None);
        assert!(!settings.gzip);
    }

    #[test]
    fn several_endpoint_flags_replace_the_configured_endpoints_in_their_order() {
        let mut config = common::Config::default();
        config.propagator.endpoints = Some(vec!["http://config:1/event".into()]);
        let settings = Settings::from_config(&config.propagator);
        assert_eq!(settings.endpoints, ["http://config:1/event"]);
        let settings = run("--endpoint http://b:2/event --endpoint http://a:1/event")
            .unwrap()
            .settings(&config.propagator);
        assert_eq!(settings.endpoints, ["http://b:2/event", "http://a:1/event"]);
        let settings = run("--period 1").unwrap().settings(&config.propagator);
        assert_eq!(
            settings.endpoints,
            ["http://config:1/event"],
            "no flag: the config's list"
        );
        let message = run("--endpoint http://a:1/event --endpoint b:2")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--endpoint") && message.contains("b:2"),
            "{message}"
        );
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(parse(["--count", "3", "--help"]).unwrap(), Command::Help);
        assert_eq!(parse(["--version"]).unwrap(), Command::Version);
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        let cases = [
            ("--period -1", "--period", "a negative period"),
            ("--period abc", "--period", "a period that is not a number"),
            ("--period NaN", "--period", "NaN"),
            ("--period 100000", "--period", "more than a day"),
            ("--count 0", "--count", "zero events"),
            ("--count 1.5", "--count", "a fractional count"),
            ("--count -3", "--count", "a negative count"),
            ("--duration 0", "--duration", "a zero duration"),
            ("--duration inf", "--duration", "an infinite duration"),
            ("--seed x", "--seed", "a seed that is not a number"),
            ("--max-in-flight 0", "--max-in-flight", "no send in flight"),
            ("--max-in-flight 1025", "--max-in-flight", "above the limit"),
            ("--max-in-flight abc", "--max-in-flight", "not a number"),
            (
                "--max-in-flight 2.5",
                "--max-in-flight",
                "not a whole number",
            ),
            ("--max-in-flight", "--max-in-flight", "a missing value"),
            ("--batch-size 0", "--batch-size", "an empty batch"),
            ("--batch-size 1001", "--batch-size", "above the limit"),
            ("--batch-size x", "--batch-size", "not a number"),
            ("--batch-size", "--batch-size", "a missing value"),
            (
                "--batch-endpoint h:1/events",
                "--batch-endpoint",
                "a URL without scheme",
            ),
            ("--gzip=yes", "--gzip", "a value for a switch"),
            (
                "--endpoint localhost:8080",
                "--endpoint",
                "a URL without scheme",
            ),
            ("--count", "--count", "a missing value"),
            ("--bogus", "--bogus", "an unknown flag"),
            ("stray", "stray", "a positional argument"),
        ];
        for (args, needle, reason) in cases {
            let message = run(args).unwrap_err().to_string();
            assert!(message.contains(needle), "{reason}: {message}");
            assert!(!message.contains('\n'), "{reason}: one line: {message}");
        }
    }
}
