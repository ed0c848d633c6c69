//! The broker watchdog against the real RabbitMQ (a private vhost per test): it leaves a
//! healthy consumer alone, busy or idle, and through a real connection loss that lapin
//! recovers; it reports a stall, after the recovery timeout and not before, for a consumer
//! the broker no longer lists, a consumer's or publisher's channel that closed for good, and
//! ready messages that never reach a consumer waiting for work.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::amqp::watchdog::{Watchdog, probe_interval};
use certfleet_shared::amqp::{self, AmqpError, Publisher, Subscription, timed};
use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod common;
use common::Vhost;

const T: Duration = Duration::from_secs(10);
/// The smallest recovery timeout the config accepts; probes run every second.
const RECOVERY: Duration = Duration::from_secs(5);

async fn queue(conn: &Connection, name: &str) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    ch
}

async fn publish(ch: &Channel, queue: &str, n: usize) {
    for _ in 0..n {
        ch.basic_publish("".into(), queue.into(), Default::default(), b"x", BasicProperties::default()).await.unwrap();
    }
}

async fn subscribe(conn: &Connection, name: &str) -> Subscription {
    let ch = conn.create_channel().await.unwrap();
    Subscription::open(ch, name, &format!("test-{name}"), 10, T, RECOVERY).await.unwrap()
}

/// Runs `dog` for at most `limit`: its error and when it came, or None.
async fn watch_for(dog: Watchdog, limit: Duration) -> Option<(AmqpError, Duration)> {
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let guard = cancel.clone().drop_guard();
    let found = tokio::time::timeout(limit, dog.run(cancel)).await.ok().flatten();
    drop(guard);
    found.map(|e| (e, start.elapsed()))
}

#[tokio::test]
async fn a_busy_or_idle_consumer_is_left_alone() {
    let vhost = Vhost::new();
    let conn = Arc::new(amqp::connect(&vhost.url().as_str().into(), "test", T).await.unwrap());
    let pub_ch = queue(&conn, "busy").await;
    queue(&conn, "idle").await;
    let mut busy = subscribe(&conn, "busy").await;
    let idle = subscribe(&conn, "idle").await;
    let publisher = Publisher::open(&conn, T).await.unwrap();
    let mut dog = Watchdog::new(conn.clone(), RECOVERY, T);
    dog.consumer(&busy).consumer(&idle).publisher("the publisher", &publisher);
    let stop = CancellationToken::new();
    let s = stop.clone();
    let eater = tokio::spawn(async move {
        let mut n = 0;
        while let Some(d) = busy.next(&s).await.unwrap() {
            d.ack(BasicAckOptions::default()).await.unwrap();
            n += 1;
        }
        n
    });
    let feeder = tokio::spawn(async move {
        for _ in 0..30 {
            publish(&pub_ch, "busy", 20).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let found = watch_for(dog, RECOVERY * 2).await;
    assert!(found.is_none(), "no stall: {:?}", found.map(|(e, _)| e.to_string()));
    feeder.await.unwrap();
    stop.cancel();
    assert!(eater.await.unwrap() >= 400, "the busy consumer consumed");
}

#[tokio::test]
async fn a_consumer_the_broker_no_longer_lists_is_a_stall_after_the_recovery_timeout() {
    let vhost = Vhost::new();
    let conn = Arc::new(amqp::connect(&vhost.url().as_str().into(), "test", T).await.unwrap());
    queue(&conn, "lost").await;
    let mut sub = subscribe(&conn, "lost").await;
    let mut dog = Watchdog::new(conn.clone(), RECOVERY, T);
    dog.consumer(&sub);
    sub.channel().basic_cancel("test-lost".into(), BasicCancelOptions::default()).await.unwrap();
    // The consumer loop sees its stream end: an error, not a quiet end.
    let next = sub.next(&CancellationToken::new()).await;
    assert!(matches!(next, Err(AmqpError::ConsumerCancelled { .. })), "{next:?}");
    let (e, after) = watch_for(dog, RECOVERY * 3).await.expect("a stall");
    assert!(after >= RECOVERY, "not before the recovery timeout: {after:?}");
    let text = e.to_string();
    assert!(text.contains("lost: the broker lists no consumer on the queue"), "{text}");
    assert!(text.contains("did not recover within 5s"), "{text}");
}

#[tokio::test]
async fn a_closed_consumer_or_publisher_channel_is_a_stall() {
    let vhost = Vhost::new();
    let conn = Arc::new(amqp::connect(&vhost.url().as_str().into(), "test", T).await.unwrap());
    queue(&conn, "closed").await;
    let sub = subscribe(&conn, "closed").await;
    let mut dog = Watchdog::new(conn.clone(), RECOVERY, T);
    dog.consumer(&sub);
    timed("channel.close", T, sub.channel().close(200, "test".into())).await.unwrap();
    let (e, after) = watch_for(dog, RECOVERY * 3).await.expect("a stall");
    assert!(after >= RECOVERY, "{after:?}");
    assert!(e.to_string().contains("(closed: its channel is closed)"), "{e}");

    let publisher = Publisher::open(&conn, T).await.unwrap();
    let mut dog = Watchdog::new(conn.clone(), RECOVERY, T);
    dog.publisher("the result publisher", &publisher);
    timed("channel.close", T, publisher.channel().close(200, "test".into())).await.unwrap();
    let (e, _) = watch_for(dog, RECOVERY * 3).await.expect("a stall");
    assert!(e.to_string().contains("(the result publisher: its channel is closed)"), "{e}");
}

#[tokio::test]
async fn ready_messages_that_never_reach_a_waiting_consumer_are_a_stall_and_a_busy_one_is_not() {
    let vhost = Vhost::new();
    let conn = Arc::new(amqp::connect(&vhost.url().as_str().into(), "test", T).await.unwrap());
    // "held" has a consumer that takes one message and never acks it, and ready messages
    // behind it: what a consumer looks like to the broker when lapin keeps its deliveries.
    let held = queue(&conn, "held").await;
    held.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut hog = held
        .basic_consume("held".into(), "hog".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    publish(&held, "held", 10).await;
    assert!(hog.next().await.is_some(), "the hog took one");
    // The watched consumer reads an empty queue but is watched on "held".
    let empty = queue(&conn, "empty").await;
    let consumer = empty
        .basic_consume("empty".into(), "waiter".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut sub = Subscription::new(Box::pin(consumer), empty, vec!["held".to_owned()], T, RECOVERY);

    // Busy (not waiting for work): ready messages are its backlog, not a stall.
    let watching = || {
        let mut dog = Watchdog::new(conn.clone(), RECOVERY, T);
        dog.consumer(&sub);
        dog
    };
    let found = watch_for(watching(), RECOVERY * 2).await;
    assert!(found.is_none(), "a busy consumer is no stall: {:?}", found.map(|(e, _)| e.to_string()));

    // Waiting for work while they stay ready: a stall.
    let dog = watching();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let waiter = tokio::spawn(async move { sub.next(&s).await.map(|d| d.is_none()) });
    let (e, after) = watch_for(dog, RECOVERY * 3).await.expect("a stall");
    assert!(after >= RECOVERY, "{after:?}");
    assert!(e.to_string().contains("9 messages are ready but none reaches the consumer"), "{e}");
    stop.cancel();
    assert!(waiter.await.unwrap().unwrap(), "cancelled cleanly");
}

#[tokio::test]
async fn a_connection_that_lapin_recovers_is_no_stall() {
    // Recovery is given 3 times the smallest timeout: how fast lapin reconnects depends on
    // the machine's load, and this test is about a recovery that happens, not its speed.
    let recovery = RECOVERY * 3;
    let vhost = Vhost::new();
    let conn = Arc::new(amqp::connect(&vhost.url().as_str().into(), "watchdog-recovers", T).await.unwrap());
    let pub_ch = queue(&conn, "back").await;
    let mut sub =
        Subscription::open(conn.create_channel().await.unwrap(), "back", "test-back", 10, T, recovery).await.unwrap();
    let publisher = Publisher::open(&conn, T).await.unwrap();
    let mut dog = Watchdog::new(conn.clone(), recovery, T);
    dog.consumer(&sub).publisher("the publisher", &publisher);
    let stop = CancellationToken::new();
    let s = stop.clone();
    let eaten = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = eaten.clone();
    let eater = tokio::spawn(async move {
        while let Some(d) = sub.next(&s).await.unwrap() {
            let _ = d.ack(BasicAckOptions::default()).await;
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let watch_stop = CancellationToken::new();
    let watching = tokio::spawn(dog.run(watch_stop.clone()));
    // Cut the connection from the broker's side; lapin reconnects by itself.
    let out = std::process::Command::new("rabbitmqctl")
        .args(["close_all_connections", "-p", &vhost.0, "watchdog test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + recovery;
    // The cut reaches lapin asynchronously: first see it lose the channel, then get it back.
    while pub_ch.status().connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while !pub_ch.status().connected() {
        assert!(Instant::now() < deadline, "lapin did not recover the connection within {recovery:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish(&pub_ch, "back", 5).await;
    while eaten.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        assert!(Instant::now() < deadline + T, "the recovered consumer did not get what was published after the cut");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two more probes with everything recovered.
    tokio::time::sleep(probe_interval(recovery) * 2 + Duration::from_millis(500)).await;
    watch_stop.cancel();
    let found = watching.await.unwrap();
    assert!(found.is_none(), "recovered, no stall: {:?}", found.map(|e| e.to_string()));
    stop.cancel();
    eater.await.unwrap();
    assert_eq!(eaten.load(std::sync::atomic::Ordering::SeqCst), 5, "exactly what was published after the cut");
}
