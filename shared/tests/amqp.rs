//! The confirmed publisher against the real RabbitMQ (a private vhost per test): a mandatory
//! message that matches no queue comes back as `Returned`, a message a full
//! `reject-publish` queue refuses comes back as `Nack`, and the topology declares twice.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_proto::Driver;
use certfleet_shared::amqp::{self, AmqpError, Outgoing, Publisher, topology};
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use std::time::Duration;

mod common;
use common::Vhost;

const T: Duration = Duration::from_secs(10);

fn msg<'a>(exchange: &'a str, key: &'a str) -> Outgoing<'a> {
    Outgoing { exchange, routing_key: key, body: b"{}", properties: BasicProperties::default() }
}

#[tokio::test]
async fn unroutable_and_refused_messages_are_errors_not_losses() {
    let vhost = Vhost::new();
    let conn = amqp::connect(&vhost.url().as_str().into(), "test", T).await.unwrap();
    let publisher = Publisher::open(&conn, T).await.unwrap();
    topology::declare(publisher.channel(), Driver::ALL, T).await.unwrap();
    topology::declare(publisher.channel(), Driver::ALL, T).await.unwrap(); // idempotent

    publisher.publish(msg(topology::JOBS_EXCHANGE, "local")).await.unwrap();
    let err = publisher.publish(msg(topology::JOBS_EXCHANGE, "no-such-driver")).await.unwrap_err();
    assert!(matches!(err, AmqpError::Returned { .. }), "{err}");
    assert!(err.to_string().contains("no-such-driver"), "{err}");

    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    args.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
    let opts = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    publisher.channel().queue_declare("tiny".into(), opts, args).await.unwrap();
    publisher.publish(msg("", "tiny")).await.unwrap();
    // A quorum queue applies its length limit a moment late; within a few more the broker refuses.
    let mut refused = None;
    for _ in 0..50 {
        if let Err(e) = publisher.publish(msg("", "tiny")).await {
            refused = Some(e);
            break;
        }
    }
    let err = refused.expect("the full queue never refused a message");
    assert!(matches!(err, AmqpError::Nack { .. }), "{err}");
    conn.close(200, "".into()).await.unwrap();
}

#[tokio::test]
async fn job_queues_carry_the_documented_arguments() {
    let vhost = Vhost::new();
    let conn = amqp::connect(&vhost.url().as_str().into(), "test", T).await.unwrap();
    let publisher = Publisher::open(&conn, T).await.unwrap();
    topology::declare(publisher.channel(), Driver::ALL, T).await.unwrap();
    // Declaring with different arguments is refused by the broker: proof of what is there.
    // Every documented argument as declared, except the delivery limit: the broker's refusal
    // then names that one argument, so all the others match exactly.
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut wrong = FieldTable::default();
    wrong.insert("x-queue-type".into(), text("quorum"));
    wrong.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(99));
    wrong.insert("x-dead-letter-exchange".into(), text("certfleet.dead"));
    wrong.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    wrong.insert("x-overflow".into(), text("reject-publish"));
    wrong.insert("x-max-length".into(), AMQPValue::LongLongInt(topology::JOB_QUEUE_MAX_LENGTH));
    let ch = conn.create_channel().await.unwrap();
    let opts = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let err = ch.queue_declare("certfleet.jobs.local".into(), opts, wrong).await.unwrap_err().to_string();
    assert!(err.contains("PRECONDITION_FAILED") && err.contains("'x-delivery-limit'"), "{err}");
    assert!(err.contains(&format!("current is '{}'", topology::JOB_DELIVERY_LIMIT)), "{err}");
    for name in topology::queue_names(Driver::ALL) {
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        publisher.channel().queue_declare(name.as_str().into(), passive, FieldTable::default()).await.unwrap();
    }
    let _ = conn.close(200, "".into()).await;
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_url_list_connects_to_the_first_live_node_and_errors_name_every_node_without_passwords() {
    let vhost = Vhost::new();
    let dead = format!("amqp://guest:guest@127.0.0.1:{}/{}", dead_port(), vhost.0);
    let urls = certfleet_shared::config::AmqpUrls::new([dead.clone(), vhost.url()]);
    let conn = amqp::connect(&urls, "test", T).await.unwrap();
    let publisher = Publisher::open(&conn, T).await.unwrap();
    topology::declare(publisher.channel(), Driver::ALL, T).await.unwrap();
    publisher.publish(msg(topology::JOBS_EXCHANGE, "local")).await.unwrap();
    conn.close(200, "".into()).await.unwrap();

    let secret = format!("amqp://guest:s3cret-pw@127.0.0.1:{}/x", dead_port());
    let other = format!("amqp://guest:s3cret-pw@127.0.0.1:{}/x", dead_port());
    let err = amqp::connect(&certfleet_shared::config::AmqpUrls::new([secret, other.clone()]), "test", T)
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cret-pw"), "the password is hidden: {err}");
    assert!(err.contains(&other.replace("s3cret-pw", "****")), "every node is named: {err}");
    assert!(err.contains("refused"), "the cause is given: {err}");
}

/// A publisher whose broker session never comes back (its vhost is gone, so lapin's
/// reconnects are refused) waits for recovery once, then fails every later send at once:
/// a scan's batch of thousands of jobs fails in about one recovery wait, not in one wait
/// per job (found by the chaos test: a scheduler sat in such a batch, not noticing that
/// its results consumer was gone, while 8,887 results piled up).
#[tokio::test]
async fn a_publisher_that_cannot_recover_fails_fast_after_one_wait() {
    let t = Duration::from_secs(1);
    let vhost = Vhost::new();
    let conn = amqp::connect(&vhost.url().as_str().into(), "test-gone", t).await.unwrap();
    let publisher = Publisher::open(&conn, t).await.unwrap();
    publisher.publish(msg("", "nowhere-but-confirmed")).await.ok();
    let out = std::process::Command::new("rabbitmqctl").args(["delete_vhost", &vhost.0]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while publisher.channel().status().connected() {
        assert!(std::time::Instant::now() < deadline, "lapin never saw the session end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    let first = publisher.publish(msg("", "q")).await;
    assert!(first.is_err(), "no broker session, yet the publish succeeded");
    let first_took = started.elapsed();
    let rest = std::time::Instant::now();
    for _ in 0..50 {
        let e = publisher.publish(msg("", "q")).await.expect_err("no broker session");
        assert!(e.to_string().contains("recovery"), "{e}");
    }
    let rest_took = rest.elapsed();
    // Without failing fast each of the 50 would wait the recovery time (3 s) again.
    assert!(
        rest_took < Duration::from_secs(3),
        "50 sends after a failed recovery took {rest_took:?} (the first, which waited, {first_took:?})"
    );
}
