//! Inventory writes over HTTP: the bad-asset table (each error names its field), 409 on a
//! duplicate, partial updates that race without losing a field, a 10,000-asset create
//! that is all or none, search with cursors, and the audit rows each write leaves.

use crate::common::{Backend, Server, asset};
use certfleet_shared::db::entity::role::Role;
use reqwest::{Method, StatusCode};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

fn with(name: &str, field: &str, value: Value) -> Value {
    let mut a = asset(name);
    match value {
        Value::Null if field.starts_with('-') => {
            a.as_object_mut().unwrap().remove(&field[1..]);
        }
        v => {
            a[field] = v;
        }
    }
    a
}

async fn bad_assets_name_their_field(backend: Backend) {
    let s = Server::start(backend).await;
    let t = s.user_token("inv-priv", Role::Privileged).await;
    let table: Vec<(Value, &str, &str)> = vec![
        (with("b1", "common_name", json!("not a name")), "common_name", "fully qualified"),
        (with("b2", "common_name", json!("web")), "common_name", "fully qualified"),
        (with("b3", "common_name", json!("a.*.fleet.test")), "common_name", "left-most"),
        (
            with("b4", "subject_alternative_name", json!(["ok.fleet.test", "*bad.fleet.test"])),
            "subject_alternative_name",
            "left-most",
        ),
        (
            with("b5", "subject_alternative_name", json!(["-x.fleet.test"])),
            "subject_alternative_name",
            "fully qualified",
        ),
        (with("b6", "ip_address", json!("10.0.0.300")), "ip_address", "IPv4 or IPv6"),
        (with("b7", "ip_address", json!("host.example")), "ip_address", "IPv4 or IPv6"),
        (with("b8", "certificate_authority", json!("nope")), "certificate_authority", "not a configured issuer"),
        (with("b9", "host_platform", json!(" ")), "host_platform", "must not be empty"),
        (with("b10", "port", json!(70000)), "port", "1..=65535"),
        (with("b11", "port", json!("eighty")), "port", "invalid type"),
        (with("b12", "key_algorithm", json!("dsa-512")), "key_algorithm", "dsa-512"),
        (with("b13", "settings", json!([1])), "settings", "JSON object"),
        (with("b14", "-common_name", Value::Null), "common_name", "required, but missing"),
        (with("b15", "colour", json!("red")), "(unknown)", "colour"),
        (with("", "system_name", json!("")), "system_name", "printable"),
        (with("b17", "certificate_expiration", json!("next tuesday")), "certificate_expiration", "input"),
    ];
    for (body, field, rule) in &table {
        let (status, p) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {p}");
        assert_eq!(p["errors"][0]["field"], json!(field), "{body} -> {p}");
        let reason = p["errors"][0]["reason"].as_str().unwrap();
        assert!(reason.contains(rule), "{field}: {reason:?} should say {rule:?}");
        assert!(!p["detail"].as_str().unwrap().contains("Some("), "{p}");
    }
    // The same rules in a batch: every bad row named, nothing written.
    let batch = json!([asset("ok-1"), table[0].0, table[5].0]);
    let (status, p) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(batch)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"].as_array().unwrap().len(), 2, "{p}");
    assert_eq!(p["errors"][1]["row"], json!(3));
    assert_eq!(certfleet_shared::db::entity::asset::Entity::find().count(&s.db).await.unwrap(), 0);
    // A wildcard as the whole left-most label and an IPv6 address are fine; SANs default to the CN.
    let good = json!({"system_name": "w1", "common_name": "*.fleet.test", "certificate_authority": "internal",
        "host_platform": "local", "ip_address": "2001:db8::1", "port": 443});
    let (status, p) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(good.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let (_, got) = s.call(Method::GET, "/api/v1/assets/w1", Some(&t), None).await;
    assert_eq!(got["asset"]["subject_alternative_name"], json!(["*.fleet.test"]));
    let (status, p) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(good)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("w1"));
    s.stop().await;
}

async fn concurrent_puts_lose_no_field(backend: Backend) {
    let s = Server::start(backend).await;
    let t = s.user_token("put-priv", Role::Privileged).await;
    let (st, _) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(asset("race"))).await;
    assert_eq!(st, StatusCode::CREATED);
    for round in 0..10 {
        let dc = format!("dc-{round}");
        let origin = format!("origin-{round}");
        let a =
            s.call(Method::PUT, "/api/v1/assets", Some(&t), Some(json!({"system_name": "race", "data_center": dc})));
        let b = s.call(Method::PUT, "/api/v1/assets", Some(&t), Some(json!({"system_name": "race", "origin": origin})));
        let (ra, rb) = tokio::join!(a, b);
        assert_eq!((ra.0, rb.0), (StatusCode::OK, StatusCode::OK), "{} {}", ra.1, rb.1);
        let (_, got) = s.call(Method::GET, "/api/v1/assets/race", Some(&t), None).await;
        assert_eq!(got["asset"]["data_center"], json!(dc), "round {round}");
        assert_eq!(got["asset"]["origin"], json!(origin), "round {round}");
        assert_eq!(got["asset"]["common_name"], json!("race.fleet.test"));
    }
    // A PUT is validated as the merged asset; null clears an optional field.
    let (st, p) = s
        .call(Method::PUT, "/api/v1/assets", Some(&t), Some(json!({"system_name": "race", "ip_address": "nope"})))
        .await;
    assert_eq!((st, p["errors"][0]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("ip_address")));
    let (st, got) =
        s.call(Method::PUT, "/api/v1/assets", Some(&t), Some(json!({"system_name": "race", "origin": null}))).await;
    assert_eq!((st, got["origin"].clone()), (StatusCode::OK, Value::Null));
    let (st, _) =
        s.call(Method::PUT, "/api/v1/assets", Some(&t), Some(json!({"system_name": "ghost", "origin": "x"}))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn ten_thousand_assets_all_or_none(backend: Backend) {
    let s = Server::start(backend).await;
    let t = s.user_token("bulk-priv", Role::Privileged).await;
    let mut rows: Vec<Value> = (0..10_000).map(|i| asset(&format!("bulk-{i:05}"))).collect();
    rows[9_999]["ip_address"] = json!("999.1.1.1");
    let (st, p) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(Value::Array(rows.clone()))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"][0]["row"], json!(10_000), "{}", p["detail"]);
    assert_eq!(certfleet_shared::db::entity::asset::Entity::find().count(&s.db).await.unwrap(), 0, "none");
    rows[9_999]["ip_address"] = json!("10.1.1.1");
    let (st, p) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(Value::Array(rows))).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!(p["written"], json!(10_000));
    assert_eq!(certfleet_shared::db::entity::asset::Entity::find().count(&s.db).await.unwrap(), 10_000, "all");
    // Search pages through them with the cursor, no row twice, none missed.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<i64> = None;
    let mut pages = 0;
    loop {
        let q = cursor.map_or(String::new(), |c| format!("&cursor={c}"));
        let (st, page) =
            s.call(Method::GET, &format!("/api/v1/search?data_center=dc1&limit=1000{q}"), Some(&t), None).await;
        assert_eq!(st, StatusCode::OK);
        for item in page["items"].as_array().unwrap() {
            assert!(seen.insert(item["system_name"].as_str().unwrap().to_owned()));
        }
        pages += 1;
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (10_000, 11));
    let (_, page) = s.call(Method::GET, "/api/v1/search?q=bulk-0004&limit=1000", Some(&t), None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    // `_` and `%` in `q` are characters, not wildcards (on SQLite too).
    let (_, page) = s.call(Method::GET, "/api/v1/search?q=bulk_0004&limit=1000", Some(&t), None).await;
    assert_eq!(page["items"], json!([]), "{page}");
    let (_, page) = s.call(Method::GET, "/api/v1/search?q=bulk%25&limit=1000", Some(&t), None).await;
    assert_eq!(page["items"], json!([]), "{page}");
    let (_, page) = s.call(Method::GET, "/api/v1/search?data_center=elsewhere", Some(&t), None).await;
    assert_eq!(page["items"], json!([]));
    s.stop().await;
}

/// One audited write: method, path, body, the audit action and its target.
type AuditedWrite<'a> = (Method, String, Option<Value>, &'a str, Option<&'a str>);

async fn every_write_is_audited_and_the_log_cannot_change(backend: Backend) {
    let s = Server::start(backend).await;
    let admin = s.user_token("aud-admin", Role::Admin).await;
    let writes: Vec<AuditedWrite> = vec![
        (Method::POST, "/api/v1/assets".into(), Some(asset("aud-1")), "asset.create", Some("aud-1")),
        (
            Method::PUT,
            "/api/v1/assets".into(),
            Some(json!({"system_name": "aud-1", "origin": "cmdb"})),
            "asset.update",
            Some("aud-1"),
        ),
        (
            Method::PATCH,
            "/admin/v1/management/certificate-validation/unset/aud-1".into(),
            None,
            "asset.certificate_validation",
            Some("aud-1"),
        ),
        (
            Method::POST,
            "/admin/v1/users".into(),
            Some(json!({"username": "aud-dev", "password": "a long enough pass", "role": "DEVELOPER"})),
            "user.create",
            Some("aud-dev"),
        ),
        (Method::DELETE, "/admin/v1/users/aud-dev".into(), None, "user.delete", Some("aud-dev")),
        (Method::DELETE, "/api/v1/assets/delete/aud-1".into(), None, "asset.delete", Some("aud-1")),
    ];
    for (m, path, body, action, target) in &writes {
        let (st, p) = s.call(m.clone(), path, Some(&admin), body.clone()).await;
        assert!(st.is_success(), "{m} {path}: {st} {p}");
        let (_, log) = s.call(Method::GET, &format!("/admin/v1/audit?action={action}"), Some(&admin), None).await;
        let row = &log["items"][0];
        assert_eq!(row["actor"], json!("aud-admin"), "{action}: {log}");
        assert_eq!((row["actor_kind"].as_str(), row["role"].as_str()), (Some("user"), Some("ADMIN")));
        assert_eq!(row["target"].as_str(), *target);
        assert_eq!(row["source"], json!("127.0.0.1"));
        assert!(row["request_id"].as_str().is_some_and(|r| r.len() == 36), "{row}");
    }
    let (_, log) = s.call(Method::GET, "/admin/v1/audit?action=asset.update", Some(&admin), None).await;
    assert_eq!(log["items"][0]["summary"], json!({"origin": "cmdb"}));
    // A failed login is a row too, and so is the successful one.
    let _ = s
        .call(
            Method::POST,
            "/user/v1/authenticate",
            None,
            Some(json!({"username": "aud-admin", "password": "wrong password!"})),
        )
        .await;
    let (_, log) = s.call(Method::GET, "/admin/v1/audit?target=aud-admin", Some(&admin), None).await;
    let actions: Vec<&str> = log["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["login.failed", "login.ok", "user.create"], "{log}");
    // No method can alter the log: the document offers none, and the server refuses them.
    let before = certfleet_shared::db::entity::audit::Entity::find().all(&s.db).await.unwrap();
    let (_, spec) = s.call(Method::GET, "/openapi.json", None, None).await;
    let audit_ops: Vec<&String> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.contains("audit"))
        .flat_map(|(_, item)| item.as_object().unwrap().keys())
        .collect();
    assert_eq!(audit_ops, ["get"]);
    for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let (st, _) = s.call(m.clone(), "/admin/v1/audit", Some(&admin), Some(json!({}))).await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        let (st, _) = s.call(m, &format!("/admin/v1/audit/{}", before[0].id), Some(&admin), Some(json!({}))).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let after = certfleet_shared::db::entity::audit::Entity::find().all(&s.db).await.unwrap();
    assert_eq!(after[..before.len()], before[..], "existing rows are unchanged");
    s.stop().await;
}

async fn malformed_requests_are_4xx_problems(backend: Backend) {
    let s = Server::start_with(backend, |c| c.api.max_body_bytes = 64 * 1024).await;
    let t = s.user_token("bad-priv", Role::Privileged).await;
    let post = |body: &'static str, ct: &'static str| {
        s.client.post(s.url("/api/v1/assets")).bearer_auth(&t).header("content-type", ct).body(body).send()
    };
    let res = post("{not json", "application/json").await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = post("{}", "text/plain").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!("[{}]", vec![asset("x").to_string(); 2000].join(","));
    let res = s
        .client
        .post(s.url("/api/v1/assets"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], json!(413));
    let (st, p) = s.call(Method::GET, "/api/v1/search?limit=lots", Some(&t), None).await;
    assert_eq!((st, p["errors"][0]["field"].clone()), (StatusCode::BAD_REQUEST, json!("limit")), "{p}");
    let (st, _) = s.call(Method::GET, "/api/v1/search?limit=0", Some(&t), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.call(Method::GET, "/api/v1/search?state=sleeping", Some(&t), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.call(Method::GET, "/api/v1/dlq/not-a-uuid", Some(&t), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Found by schemathesis: a far expiry horizon overflowed the date and killed the
    // connection; the horizon is now bounded, and named when exceeded.
    let (st, _) = s.call(Method::GET, "/api/v1/search?days_until_expiration=36500", Some(&t), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, p) = s.call(Method::GET, "/api/v1/search?days_until_expiration=4294967295", Some(&t), None).await;
    assert_eq!((st, p["errors"][0]["field"].clone()), (StatusCode::BAD_REQUEST, json!("days_until_expiration")));
    let (st, _) = s.call(Method::GET, "/nowhere", None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, p) = s.call(Method::GET, "/api/v1/assets/absent", Some(&t), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(p["request_id"].as_str().is_some(), "{p}");
    s.stop().await;
}

/// `due=true` answers what the scheduler's policy says is due (an expired certificate, or
/// one inside its renewal lead time), not what is merely waiting for a decision; an
/// unroutable platform is refused at creation, naming the field.
async fn search_due_follows_the_policy(backend: Backend) {
    let s = Server::start(backend).await;
    let t = s.user_token("due-priv", Role::Privileged).await;
    let mut expired = asset("expired");
    expired["certificate_expiration"] = json!("2020-01-01T00:00:00Z");
    let mut later = asset("later");
    later["certificate_expiration"] = json!("2099-01-01T00:00:00Z");
    let mut lost = asset("lost");
    lost["host_platform"] = json!("mainframe");
    let (st, p) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(json!([expired.clone(), lost]))).await;
    assert_eq!((st, p["errors"][0]["row"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(2)), "{p}");
    assert_eq!(p["errors"][0]["field"], "host_platform", "{p}");
    let (st, _) = s.call(Method::POST, "/api/v1/assets", Some(&t), Some(json!([expired, later]))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, page) = s.call(Method::GET, "/api/v1/search?due=true", Some(&t), None).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let names: Vec<&str> = page["items"].as_array().unwrap().iter().filter_map(|a| a["system_name"].as_str()).collect();
    assert_eq!(names, ["expired"], "{page}");
    let (_, all) = s.call(Method::GET, "/api/v1/search", Some(&t), None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    s.stop().await;
}

crate::both_backends!(
    search_due_follows_the_policy,
    bad_assets_name_their_field,
    concurrent_puts_lose_no_field,
    ten_thousand_assets_all_or_none,
    every_write_is_audited_and_the_log_cannot_change,
    malformed_requests_are_4xx_problems,
);
