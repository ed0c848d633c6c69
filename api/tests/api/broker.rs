//! Endpoints that reach the broker, against the real RabbitMQ (a private vhost): rotate
//! now, the dead-letter actions, the queue numbers and readiness.

use crate::common::{Backend, Server, asset};
use certfleet_proto::{ErrorClass, JobId};
use certfleet_shared::db::dead_letters::{self, DeadLetter};
use certfleet_shared::db::entity::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn depth(queues: &Value, name: &str) -> u64 {
    queues.as_array().unwrap().iter().find(|q| q["queue"] == json!(name)).unwrap()["messages"].as_u64().unwrap()
}

async fn rotate_and_dead_letters_through_the_api(backend: Backend) {
    let s = Server::start(backend).await;
    let p = s.user_token("b-priv", Role::Privileged).await;
    let d = s.user_token("b-dev", Role::Developer).await;
    let (st, body) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _) = s.call(Method::POST, "/api/v1/assets", Some(&p), Some(json!([asset("r-1"), asset("r-2")]))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, job) = s.call(Method::POST, "/api/v1/certificate/rotate/r-1", Some(&p), None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{job}");
    let (st, queues) = s.call(Method::GET, "/api/v1/queues", Some(&d), None).await;
    assert_eq!(st, StatusCode::OK, "{queues}");
    assert_eq!(depth(&queues, "certfleet.jobs.local"), 1, "{queues}");
    // A second rotate while the lease runs is a conflict, not a 500.
    let (st, body) = s.call(Method::POST, "/api/v1/certificate/rotate/r-1", Some(&p), None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let (_, detail) = s.call(Method::GET, "/api/v1/assets/r-1", Some(&d), None).await;
    assert_eq!(detail["asset"]["state"], json!("in_flight"));
    assert_eq!(detail["history"][0]["job_id"], job["job_id"]);
    let (_, hist) = s.call(Method::GET, "/api/v1/rotations?system_name=r-1&status=queued", Some(&d), None).await;
    assert_eq!(hist["items"].as_array().unwrap().len(), 1);

    // Dead letters: recorded as the scheduler records them, then retried and discarded.
    let r2 = certfleet_shared::db::assets::by_name(&s.db, "r-2").await.unwrap();
    let (a, b) = (JobId::new(), JobId::new());
    for id in [a, b] {
        dead_letters::record(
            &s.db,
            &DeadLetter {
                job_id: id,
                asset_id: Some(r2.id),
                system_name: Some("r-2".into()),
                driver: Some("local".into()),
                class: ErrorClass::Auth,
                reason: "device refused the key".into(),
                attempts: 5,
                kind: certfleet_proto::DeadKind::Rotation,
                payload: None,
            },
        )
        .await
        .unwrap();
    }
    let (_, list) = s.call(Method::GET, "/api/v1/dlq", Some(&d), None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (st, one) = s.call(Method::GET, &format!("/api/v1/dlq/{a}"), Some(&d), None).await;
    assert_eq!((st, one["reason"].clone()), (StatusCode::OK, json!("device refused the key")));
    let (st, _) = s.call(Method::POST, &format!("/api/v1/dlq/{a}/retry"), Some(&d), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "retry needs PRIVILEGED");
    let (st, body) = s.call(Method::POST, &format!("/api/v1/dlq/{a}/retry"), Some(&p), None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let (_, queues) = s.call(Method::GET, "/api/v1/queues", Some(&d), None).await;
    assert_eq!(depth(&queues, "certfleet.jobs.local"), 2);
    let (st, _) = s.call(Method::POST, &format!("/api/v1/dlq/{a}/retry"), Some(&p), None).await;
    assert_eq!(st, StatusCode::CONFLICT, "already retried");
    let (st, body) = s.call(Method::POST, &format!("/api/v1/dlq/{b}/discard"), Some(&p), None).await;
    assert_eq!((st, body["status"].clone()), (StatusCode::OK, json!("discarded")));
    let (st, body) = s.call(Method::POST, "/api/v1/dlq/retry", Some(&p), Some(json!({"all": true}))).await;
    assert_eq!((st, body["retried"].clone()), (StatusCode::OK, json!([])), "nothing pending");
    let (_, all) = s.call(Method::GET, "/api/v1/dlq?all=true", Some(&d), None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (st, _) = s.call(Method::POST, "/api/v1/certificate/rotate/absent", Some(&p), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// With `amqp_management_url`, a job a consumer holds without acking shows as unacked
/// (the broker's management API samples every few seconds, so this polls).
async fn unacked_counts_come_from_the_management_api(backend: Backend) {
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    let s = Server::start_with(backend, |c| c.amqp_management_url = Some("http://127.0.0.1:15672".into())).await;
    let p = s.user_token("m-priv", Role::Privileged).await;
    let (st, _) = s.call(Method::POST, "/api/v1/assets", Some(&p), Some(json!([asset("m-1")]))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s.call(Method::POST, "/api/v1/certificate/rotate/m-1", Some(&p), None).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let conn =
        lapin::Connection::connect(s.config.amqp_url.first(), lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let _held = ch
        .basic_consume(
            "certfleet.jobs.local".into(),
            "holder".into(),
            BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let queues = loop {
        let (st, queues) = s.call(Method::GET, "/api/v1/queues", Some(&p), None).await;
        assert_eq!(st, StatusCode::OK, "{queues}");
        let jobs = queues.as_array().unwrap().iter().find(|q| q["queue"] == "certfleet.jobs.local").unwrap().clone();
        if jobs["unacked"] == 1 {
            break queues;
        }
        assert!(std::time::Instant::now() < deadline, "unacked never showed: {queues}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    for q in queues.as_array().unwrap() {
        assert!(q["unacked"].is_u64() && q["publish_rate"].is_number() && q["deliver_rate"].is_number(), "{q}");
    }
    let _ = conn.close(200, "done".into()).await;
    s.stop().await;
}

crate::both_backends!(rotate_and_dead_letters_through_the_api, unacked_counts_come_from_the_management_api);
