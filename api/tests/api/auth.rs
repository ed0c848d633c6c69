//! Logins, throttling, password changes and API keys, over HTTP.

use crate::common::{Backend, PASSWORD, Server};
use certfleet_shared::db::entity::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn login_raw(s: &Server, user: &str, pass: &str) -> reqwest::Response {
    s.client
        .post(s.url("/user/v1/authenticate"))
        .json(&json!({"username": user, "password": pass}))
        .send()
        .await
        .unwrap()
}

async fn failed_logins_are_throttled_the_same_for_unknown_users(backend: Backend) {
    let s = Server::start(backend).await;
    s.user_token("thr-user", Role::Developer).await;
    for user in ["thr-user", "thr-nobody"] {
        for i in 0..5 {
            let res = login_raw(&s, user, "wrong password 123").await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{user} attempt {i}");
            let p: serde_json::Value = res.json().await.unwrap();
            assert_eq!(p["detail"], json!("invalid username or password"), "no hint whether {user} exists");
        }
        // The sixth is refused before the password is looked at, even the right one.
        let res = login_raw(&s, user, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{user}");
        let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    // Another user is not affected.
    s.user_token("thr-other", Role::Developer).await;
    s.stop().await;
}

async fn passwords_follow_the_rule_and_a_change_ends_old_tokens(backend: Backend) {
    let s = Server::start(backend).await;
    let admin = s.user_token("pw-admin", Role::Admin).await;
    let (st, p) = s
        .call(
            Method::POST,
            "/admin/v1/users",
            Some(&admin),
            Some(json!({"username": "pw-new", "password": "short", "role": "DEVELOPER"})),
        )
        .await;
    assert_eq!((st, p["errors"][0]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("password")));
    assert!(p["detail"].as_str().unwrap().contains("at least 12 characters"), "{p}");
    let (st, _) = s
        .call(
            Method::POST,
            "/admin/v1/users",
            Some(&admin),
            Some(json!({"username": "pw-same-as-name", "password": "pw-same-as-name", "role": "DEVELOPER"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = s
        .call(
            Method::POST,
            "/admin/v1/users",
            Some(&admin),
            Some(json!({"username": "pw-admin", "password": "another good one", "role": "DEVELOPER"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let user = s.user_token("pw-user", Role::Developer).await;
    let (st, _) = s.call(Method::GET, "/api/v1/search", Some(&user), None).await;
    assert_eq!(st, StatusCode::OK);
    // The token's second must pass, so the change is strictly later than its iat.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let change = json!({"username": "pw-user", "password": PASSWORD, "updated_password": "a brand new passphrase"});
    let (st, p) = s.call(Method::PUT, "/user/v1/authenticate", None, Some(change)).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{p}");
    let (st, p) = s.call(Method::GET, "/api/v1/search", Some(&user), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    let fresh = s.login("pw-user", "a brand new passphrase").await;
    let (st, _) = s.call(Method::GET, "/api/v1/search", Some(&fresh), None).await;
    assert_eq!(st, StatusCode::OK);
    // Logging out ends that token only, at once; another session of the user goes on.
    let second = s.login("pw-user", "a brand new passphrase").await;
    let (st, p) = s.call(Method::DELETE, "/user/v1/authenticate", Some(&second), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{p}");
    let (st, p) = s.call(Method::GET, "/api/v1/search", Some(&second), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["detail"], json!("this session was logged out; log in again"));
    let (st, _) = s.call(Method::DELETE, "/user/v1/authenticate", Some(&second), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a second logout with the same token");
    let (st, _) = s.call(Method::GET, "/api/v1/search", Some(&fresh), None).await;
    assert_eq!(st, StatusCode::OK, "the other session goes on");
    let (_, log) = s.call(Method::GET, "/admin/v1/audit?action=logout", Some(&admin), None).await;
    assert_eq!(log["items"][0]["actor"], json!("pw-user"), "{log}");
    // Deleting the user ends its tokens at once.
    let (st, _) = s.call(Method::DELETE, "/admin/v1/users/pw-user", Some(&admin), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.call(Method::GET, "/api/v1/search", Some(&fresh), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn api_keys_are_shown_once_used_and_revoked(backend: Backend) {
    let s = Server::start(backend).await;
    let admin = s.user_token("key-admin", Role::Admin).await;
    let (st, key) = s
        .call(
            Method::POST,
            "/admin/v1/api-keys",
            Some(&admin),
            Some(json!({"name": "ci", "role": "PRIVILEGED", "ttl": "30d"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    let id = key["id"].as_str().unwrap().to_owned();
    assert!(key["expires_at"].is_string());
    let (_, list) = s.call(Method::GET, "/admin/v1/api-keys", Some(&admin), None).await;
    assert!(!list.to_string().contains(&secret[secret.len() - 20..]), "the secret is never listed");
    assert!(list[0]["last_used_at"].is_null());
    let (st, _) = s.call(Method::POST, "/api/v1/assets", Some(&secret), Some(crate::common::asset("k-1"))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s.call(Method::GET, "/admin/v1/users", Some(&secret), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a PRIVILEGED key is not ADMIN");
    let (_, list) = s.call(Method::GET, "/admin/v1/api-keys", Some(&admin), None).await;
    assert!(list[0]["last_used_at"].is_string(), "{list}");
    let (_, log) = s.call(Method::GET, "/admin/v1/audit?action=asset.create", Some(&admin), None).await;
    assert_eq!(
        (log["items"][0]["actor"].as_str(), log["items"][0]["actor_kind"].as_str()),
        (Some("ci"), Some("api_key"))
    );
    let (st, _) = s.call(Method::DELETE, &format!("/admin/v1/api-keys/{id}"), Some(&admin), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, p) = s.call(Method::GET, "/api/v1/search", Some(&secret), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(p["detail"].as_str().unwrap().contains("revoked"));
    let tampered = format!("{}x", &secret[..secret.len() - 1]);
    let (st, _) = s.call(Method::GET, "/api/v1/search", Some(&tampered), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A key is not a session: logging out with one is refused, and says what to do.
    let (_, other) = s
        .call(Method::POST, "/admin/v1/api-keys", Some(&admin), Some(json!({"name": "other", "role": "DEVELOPER"})))
        .await;
    let (st, p) = s.call(Method::DELETE, "/user/v1/authenticate", other["secret"].as_str(), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("DELETE /admin/v1/api-keys/{id}"), "{p}");
    let (st, p) = s
        .call(
            Method::POST,
            "/admin/v1/api-keys",
            Some(&admin),
            Some(json!({"name": "x", "role": "ADMIN", "ttl": "soon"})),
        )
        .await;
    assert_eq!((st, p["errors"][0]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("ttl")));
    s.stop().await;
}

crate::both_backends!(
    failed_logins_are_throttled_the_same_for_unknown_users,
    passwords_follow_the_rule_and_a_change_ends_old_tokens,
    api_keys_are_shown_once_used_and_revoked,
);
