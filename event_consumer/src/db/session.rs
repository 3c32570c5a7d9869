//! What every database session of the consumer is told, on both ends of its socket, so that
//! neither end waits without bound for the other:
//!
//! - the server cancels a statement that runs past `statement_timeout_seconds` (a lock, a slow
//!   disk);
//! - our end gives up on a server that stopped answering: TCP keepalive probes after 1 s of
//!   silence, and a TCP user timeout of `statement_timeout_seconds` + [`USER_TIMEOUT_MARGIN`]
//!   for data or probes left unacknowledged (a partition that drops packets without a reset),
//!   instead of the kernel's 2 h keepalive and 15 min of retransmissions. A server that is
//!   alive acknowledges the probes however long its statement runs, so only a silent peer is
//!   cut off. A server whose kernel answers but whose process does not (a stopped backend,
//!   storage that hangs) is not seen by TCP: `/readyz` has its own deadline for that
//!   (`readiness.rs`);
//! - the server's end gives up on a consumer that vanished (its host died, the path broke):
//!   the server's TCP keepalives (`tcp_keepalives_*`) end an idle session within about
//!   `SERVER_KEEPALIVE_IDLE` + `SERVER_KEEPALIVE_COUNT` × `SERVER_KEEPALIVE_INTERVAL`
//!   instead of the 2 h of the server's defaults, so it stops holding a connection slot. A
//!   session whose last answer was lost with the link has data unacknowledged, and the kernel
//!   then retransmits instead of probing, for about 15 min (`tcp_retries2`): the server's TCP
//!   user timeout (`tcp_user_timeout`, the same 25 s) bounds that case too;
//! - a session left idle in a transaction is ended by the server after
//!   `statement_timeout_seconds` (`idle_in_transaction_session_timeout`). The consumer never
//!   leaves one open between two messages (a batch is one statement, the probe one message),
//!   so such a session can only be orphaned, and would hold its locks and rows until then.

use std::time::Duration;

use common::config::DatabaseConfig;

/// Silence after which our end sends keepalive probes, and the pause between them: short, so
/// that the TCP user timeout, which counts from the last thing the server sent, can cut a
/// silent connection even while no data of ours is unacknowledged (a request sent and
/// acknowledged just before the partition).
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Added to `statement_timeout_seconds` for the TCP user timeout: the server's own cancel
/// (sent at `statement_timeout`) must get through first when the server is alive.
pub const USER_TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// The server's keepalives towards the consumer (`tcp_keepalives_idle`, `_interval`,
/// `_count`, whole seconds): a session of a vanished consumer ends within about 25 s.
const SERVER_KEEPALIVE_IDLE: u32 = 10;
const SERVER_KEEPALIVE_INTERVAL: u32 = 5;
const SERVER_KEEPALIVE_COUNT: u32 = 3;

/// The server's TCP user timeout, in ms: as long as its keepalives take to give up.
const SERVER_USER_TIMEOUT_MS: u32 =
    (SERVER_KEEPALIVE_IDLE + SERVER_KEEPALIVE_COUNT * SERVER_KEEPALIVE_INTERVAL) * 1000;

/// Applies the settings of every consumer session (see the module docs) to a driver
/// configuration that already names the host; `application_name` tells the session apart in
/// `pg_stat_activity`. Public so that tests can open a session as the consumer does.
pub fn apply(config: &DatabaseConfig, application_name: &str, pg: &mut postgres::Config) {
    let statement_timeout = Duration::from_secs_f64(config.statement_timeout_seconds);
    let statement_timeout_ms = statement_timeout.as_millis().max(1);
    pg.user(&config.user)
        .password(config.password.expose())
        .dbname(&config.dbname)
        .application_name(application_name)
        .connect_timeout(Duration::from_secs_f64(config.connect_timeout_seconds))
        .options(&format!(
            "-c statement_timeout={statement_timeout_ms} \
             -c idle_in_transaction_session_timeout={statement_timeout_ms} \
             -c tcp_keepalives_idle={SERVER_KEEPALIVE_IDLE} \
             -c tcp_keepalives_interval={SERVER_KEEPALIVE_INTERVAL} \
             -c tcp_keepalives_count={SERVER_KEEPALIVE_COUNT} \
             -c tcp_user_timeout={SERVER_USER_TIMEOUT_MS}"
        ))
        .keepalives(true)
        .keepalives_idle(KEEPALIVE)
        .keepalives_interval(KEEPALIVE)
        .tcp_user_timeout(statement_timeout + USER_TIMEOUT_MARGIN);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_is_told_to_end_an_orphaned_transaction_and_a_vanished_peer() {
        let config = DatabaseConfig {
            statement_timeout_seconds: 2.5,
            ..DatabaseConfig::default()
        };
        let mut pg = postgres::Config::new();
        apply(&config, "event_consumer", &mut pg);
        let options = pg.get_options().unwrap_or_default();
        for setting in [
            "statement_timeout=2500",
            "idle_in_transaction_session_timeout=2500",
            "tcp_keepalives_idle=10",
            "tcp_user_timeout=25000",
        ] {
            assert!(options.contains(setting), "{setting} in {options}");
        }
        assert_eq!(
            pg.get_tcp_user_timeout(),
            Some(&Duration::from_millis(3000))
        );
        assert_eq!(pg.get_keepalives_idle(), KEEPALIVE);
        assert!(pg.get_keepalives());
    }
}
