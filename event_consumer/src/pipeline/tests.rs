//! The queue and group commit, without a database (connections handed out, never connected):
//! capacity and close, batch sizes, who stores a batch, and when a second batch may start.

use super::*;

use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;

use common::config::DatabaseConfig;

use crate::http::{ResponseFraming, Route, Writer};

/// The writing half of one loopback connection that every test job answers on; its client
/// end stays open (and unread) for the whole test process.
fn test_writer() -> &'static Arc<Writer> {
    static WRITER: OnceLock<(TcpStream, Arc<Writer>)> = OnceLock::new();
    &WRITER
        .get_or_init(|| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            let writer = Arc::new(Writer::new(Arc::new(server), Duration::from_secs(1)));
            (client, writer)
        })
        .1
}

fn ping_job() -> Job {
    let metrics = Arc::new(Metrics::default());
    Job {
        task: Task::Ping,
        answer: Answer::new(
            test_writer(),
            ResponseFraming::CLOSING,
            Route::Readyz,
            &metrics,
        ),
    }
}

fn pipeline(capacity: usize, max_batch: usize) -> Pipeline {
    let db = Arc::new(Database::new(DatabaseConfig::default()));
    Pipeline::new(
        Arc::clone(&db),
        Readiness::new(db, 2),
        capacity,
        max_batch,
        Arc::new(Metrics::default()),
        Arc::new(Notifier::disabled()),
    )
}

/// An idle connection that is not connected: enough to hand out batches.
fn idle_connection(pipeline: &Pipeline) -> DbConnection {
    DbConnection::new(0, Arc::clone(&pipeline.db))
}

/// Forgets a batch's jobs without answering them (their answers would write 500s).
fn forget(batch: &mut Batch) {
    batch.tasks.clear();
    for answer in batch.answers.drain(..) {
        let _ = answer.send(&routes::shutting_down());
    }
}

#[test]
fn the_queue_refuses_jobs_past_its_capacity_and_after_close() {
    let pipeline = pipeline(2, 10);
    assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)));
    assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)));
    assert!(matches!(
        pipeline.enqueue_or_lead(ping_job()),
        Err(Refused {
            error: QueueError::Full,
            ..
        })
    ));
    pipeline.close();
    pipeline.give_back(idle_connection(&pipeline), false);
    let mut batch = Batch::with_capacity(0);
    assert!(matches!(
        pipeline.next_work(Duration::ZERO, &mut batch),
        Work::Batch(_)
    ));
    assert_eq!(batch.tasks.len(), 2);
    forget(&mut batch);
    assert!(matches!(
        pipeline.next_work(Duration::ZERO, &mut batch),
        Work::Stop
    ));
    assert!(matches!(
        pipeline.enqueue_or_lead(ping_job()),
        Err(Refused {
            error: QueueError::Closed,
            ..
        })
    ));
}

#[test]
fn a_batch_takes_what_is_waiting_up_to_the_maximum() {
    let pipeline = pipeline(10, 3);
    for _ in 0..5 {
        pipeline.enqueue_or_lead(ping_job()).unwrap();
    }
    pipeline.give_back(idle_connection(&pipeline), false);
    let mut batch = Batch::with_capacity(0);
    let work = pipeline.next_work(Duration::ZERO, &mut batch);
    assert!(matches!(work, Work::Batch(_)));
    assert_eq!(batch.tasks.len(), 3);
    assert_eq!(pipeline.len(), 2);
    forget(&mut batch);
    pipeline.refuse_waiting();
}

#[test]
fn a_job_that_finds_a_connection_idle_and_nobody_waiting_is_stored_by_its_own_thread() {
    let pipeline = pipeline(10, 3);
    pipeline.give_back(idle_connection(&pipeline), false);
    let Ok(Some((worker, lead))) = pipeline.enqueue_or_lead(ping_job()) else {
        panic!("an idle connection must be taken by the submitting thread");
    };
    let _ = lead.answer.send(&routes::shutting_down());
    assert!(
        matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)),
        "no connection left idle: queued"
    );
    pipeline.give_back(worker, true);
    assert!(
        matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)),
        "jobs are waiting: queued behind them, for a worker thread"
    );
    assert_eq!(pipeline.len(), 2);
    pipeline.refuse_waiting();
}

#[test]
fn while_a_batch_is_stored_another_starts_only_for_two_jobs_or_more() {
    let pipeline = pipeline(10, 8);
    pipeline.give_back(idle_connection(&pipeline), false);
    pipeline.give_back(idle_connection(&pipeline), false);
    let Ok(Some((first, lead))) = pipeline.enqueue_or_lead(ping_job()) else {
        panic!("nothing is being stored: the job takes an idle connection");
    };
    let _ = lead.answer.send(&routes::shutting_down());
    // A connection is idle, but a commit is in progress: one job waits to share the next.
    assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)));
    let mut batch = Batch::with_capacity(0);
    match pipeline.next_work(Duration::ZERO, &mut batch) {
        Work::Batch(_) => panic!("a single job must wait for the commit in progress"),
        // The idle test connection is not connected: a worker would reconnect it.
        Work::Maintain(idle) => pipeline.give_back(idle, false),
        Work::Nothing | Work::Stop => {}
    }
    assert!(batch.tasks.is_empty());
    // Two waiting: worth a commit of their own.
    assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)));
    let Work::Batch(second) = pipeline.next_work(Duration::ZERO, &mut batch) else {
        panic!("two jobs waiting start a batch next to the one in progress");
    };
    assert_eq!(batch.tasks.len(), 2);
    forget(&mut batch);
    // Back to nothing in progress: a single job is stored at once again.
    pipeline.give_back(first, true);
    pipeline.give_back(second, true);
    let Ok(Some((_, lead))) = pipeline.enqueue_or_lead(ping_job()) else {
        panic!("nothing in progress: the job takes an idle connection");
    };
    let _ = lead.answer.send(&routes::shutting_down());
}
