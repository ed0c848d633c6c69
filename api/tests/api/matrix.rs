//! Every endpoint × credential, generated from `/openapi.json`: an endpoint added to the
//! router is in the document by construction, and so in this matrix.

use crate::common::{Backend, PASSWORD, Server};
use certfleet_shared::db::entity::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn mint(key: &[u8], sub: &str, role: &str, iat: i64, exp: i64) -> String {
    let claims = json!({"sub": sub, "role": role, "iat": iat, "exp": exp, "jti": uuid::Uuid::new_v4().to_string()});
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(key))
        .unwrap()
}

/// The lowest role an operation needs, from its security scopes (None: public).
fn needed(op: &Value) -> Option<Role> {
    let scope = op.get("security")?.as_array()?.first()?.get("bearer")?.as_array()?.first()?.as_str()?;
    Some(scope.parse().unwrap())
}

fn concrete(path: &str) -> String {
    path.replace("{job_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{system_name}", "matrix-missing")
        .replace("{username}", "matrix-missing")
        .replace("{id}", "matrix-missing")
}

/// The user `every_endpoint_and_credential` made for `role`.
fn user_of(role: Role) -> &'static str {
    match role {
        Role::Developer => "m-dev",
        Role::Privileged => "m-priv",
        Role::Admin => "m-admin",
    }
}

async fn every_endpoint_and_credential(backend: Backend) {
    let s = Server::start(backend).await;
    let admin = s.user_token("m-admin", Role::Admin).await;
    let privileged = s.user_token("m-priv", Role::Privileged).await;
    let developer = s.user_token("m-dev", Role::Developer).await;
    let now = chrono::Utc::now().timestamp();
    let expired = mint(&s.signing_key, "m-admin", "ADMIN", now - 7200, now - 3600);
    let bad_signature = mint(b"another key that is long enough for HS256", "m-admin", "ADMIN", now, now + 600);
    let (st, key) =
        s.call(Method::POST, "/admin/v1/api-keys", Some(&admin), Some(json!({"name": "m-key", "role": "ADMIN"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let revoked = key["secret"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(Method::DELETE, &format!("/admin/v1/api-keys/{}", key["id"].as_str().unwrap()), Some(&admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);

    let (_, spec) = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    let creds: [(&str, Option<&str>, Option<Role>); 7] = [
        ("no token", None, None),
        ("bad signature", Some(&bad_signature), None),
        ("expired token", Some(&expired), None),
        ("revoked API key", Some(&revoked), None),
        ("DEVELOPER", Some(&developer), Some(Role::Developer)),
        ("PRIVILEGED", Some(&privileged), Some(Role::Privileged)),
        ("ADMIN", Some(&admin), Some(Role::Admin)),
    ];
    let mut cells = 0;
    let mut secured = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let m: Method = method.to_uppercase().parse().unwrap();
            let body = matches!(m, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
            let need = needed(op);
            secured += usize::from(need.is_some());
            // Logging out revokes the very token it is called with: it gets a fresh session
            // of the same user, so the cells after it keep theirs.
            let ends_session = m == Method::DELETE && path == "/user/v1/authenticate";
            for (label, token, role) in &creds {
                let fresh = match (ends_session, role) {
                    (true, Some(r)) => Some(s.login(user_of(*r), PASSWORD).await),
                    _ => None,
                };
                let token = fresh.as_deref().or(*token);
                let (status, answer) = s.call(m.clone(), &concrete(path), token, body.clone()).await;
                cells += 1;
                let cell = format!("{method} {path} as {label}: {status} {answer}");
                assert!(status.as_u16() < 500, "{cell}");
                match (need, role) {
                    (None, _) => assert!(status != StatusCode::FORBIDDEN, "{cell}"),
                    (Some(_), None) => assert_eq!(status, StatusCode::UNAUTHORIZED, "{cell}"),
                    (Some(n), Some(r)) if !r.includes(n) => assert_eq!(status, StatusCode::FORBIDDEN, "{cell}"),
                    (Some(_), Some(_)) => {
                        assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{cell}");
                    }
                }
            }
        }
    }
    // The table of the issue: 26 operations, all but the 4 public ones need a role.
    assert!(secured >= 22, "only {secured} secured operations in the document");
    assert_eq!(cells % 7, 0);
    println!("role matrix: {cells} cells");
    s.stop().await;
}

crate::both_backends!(every_endpoint_and_credential);
