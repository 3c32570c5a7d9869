//! A silent partition between the consumer and its database: segments dropped, no reset, as
//! when a link or a host dies (iptables on loopback, as root; see
//! [`test_support::Blackhole`]). Neither end may wait for the other without bound: the
//! consumer answers within its deadlines, the server ends the consumer's sessions, and both
//! recover by themselves once the link is back, with nothing stored twice.

use std::time::{Duration, Instant};

use test_support::{Blackhole, Cluster, Server, TestDb};

use crate::helpers::{
    get_closing, post_event, readyz_timed, stop_and_log, wait_until, with_statement_timeout_2_s,
    GOOD_EVENT,
};

/// The backend pids of the consumer's sessions (pipeline, readiness probe, retention).
fn consumer_sessions(admin: &mut postgres::Client, dbname: &str) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = $1 AND application_name LIKE 'event_consumer%'",
            &[&dbname],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The partition starts at its worst moment for the server: the answers are lost first, so a
/// request is committed and its answer never arrives. The server's session then holds data
/// the consumer never acknowledges, which the kernel retransmits for about 15 min unless a
/// TCP user timeout ends it (`db/session.rs`); its keepalives alone never fire.
#[test]
fn across_a_silent_partition_the_consumer_answers_in_time_the_server_ends_its_sessions_and_both_recover(
) {
    let _alone = crate::measuring_alone();
    let cluster = Cluster::start();
    let db = TestDb::on(&cluster.server());
    // Through the cluster's Unix socket, which a partition of its TCP port leaves open.
    let socket = Server {
        host: cluster.dir.display().to_string(),
        ..cluster.server()
    };
    let mut admin = socket.connect(&db.name).unwrap();
    let consumer = with_statement_timeout_2_s(&db);
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 200);
    let sessions = consumer_sessions(&mut admin, &db.name);
    assert!(!sessions.is_empty(), "the consumer has sessions");

    let Some(answers) = Blackhole::from_port(cluster.port) else {
        stop_and_log(consumer);
        return;
    };
    let cut = Instant::now();
    let lost_answer = post_event(consumer.addr, GOOD_EVENT, &[("Idempotency-Key", "cut-1")]);
    let lost_answer_took = cut.elapsed();
    let Some(requests) = Blackhole::to_port(cluster.port) else {
        stop_and_log(consumer);
        return;
    };
    let readyz = readyz_timed(consumer.addr, 3);
    let posted = Instant::now();
    let post = post_event(consumer.addr, GOOD_EVENT, &[("Idempotency-Key", "cut-2")]);
    let post_took = posted.elapsed();
    // The server's keepalives and user timeout give up 25 s after the last segment it got.
    wait_until(
        "the server ended the sessions of the consumer it cannot reach",
        Duration::from_secs(45),
        || {
            let now = consumer_sessions(&mut admin, &db.name);
            !sessions.iter().any(|pid| now.contains(pid))
        },
    );
    let server_gave_up = cut.elapsed();
    drop((answers, requests));
    let healed = Instant::now();
    wait_until(
        "ready again once the link is back",
        Duration::from_secs(30),
        || get_closing(consumer.addr, "/readyz").status == 200,
    );
    let recovered = healed.elapsed();
    // What a propagator does with a 503: the same key again.
    let resent = post_event(consumer.addr, GOOD_EVENT, &[("Idempotency-Key", "cut-1")]);
    let stored: i64 = admin
        .query_one(
            "SELECT count(*) FROM events WHERE idempotency_key = 'cut-1'",
            &[],
        )
        .unwrap()
        .get(0);

    eprintln!(
        "silent partition: the answer lost, POST /event {} in {lost_answer_took:?}; then \
         /readyz {readyz:?}, POST /event {} in {post_took:?}; the server ended the \
         consumer's {} sessions {server_gave_up:?} after the cut; ready {recovered:?} after \
         the link came back; resent: {}",
        lost_answer.status,
        post.status,
        sessions.len(),
        resent.status
    );
    // statement_timeout_seconds (2) + 1 s.
    let limit = Duration::from_secs(3);
    assert_eq!(lost_answer.status, 503, "{}", lost_answer.body);
    assert!(lost_answer_took < limit, "{lost_answer_took:?}");
    for (status, took) in &readyz {
        assert_eq!(*status, 503, "{readyz:?}");
        assert!(*took < Duration::from_secs(2), "{readyz:?}");
    }
    assert_eq!(post.status, 503, "{}", post.body);
    assert!(post_took < limit, "POST /event waited {post_took:?}");
    // Committed before its answer was lost: stored once, and the resend says so.
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert_eq!(resent.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(stored, 1);
    let log = stop_and_log(consumer);
    // One outage, named when it starts and when it ends: not a line per request.
    assert_eq!(log.matches("unavailable: ").count(), 1, "{log}");
    assert!(log.contains("available again after"), "{log}");
}
