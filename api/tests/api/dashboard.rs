//! The dashboard over real HTTP on the API's listener: login with the cookie's attributes,
//! pages per role (write buttons only for roles that have them), CSRF refusals, forged
//! POSTs refused by the API's own permission check, the dead-letter and rotate actions
//! going through the API's handlers (and so the broker and the audit log), workers from
//! their heartbeats, and logout. The browser-driven scenarios are in `tests/dashboard.rs`.

use crate::common::{Backend, PASSWORD, Server, asset};
use certfleet_proto::{Driver, ErrorClass, JobId, WorkerHeartbeat};
use certfleet_shared::db::dead_letters::{self, DeadLetter};
use certfleet_shared::db::entity::role::Role;
use certfleet_shared::db::history::{self, Claim};
use certfleet_shared::db::{assets, workers};
use chrono::{Duration, Utc};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

/// A browser-like client that does not follow redirects, with its session cookie.
struct Browser<'a> {
    s: &'a Server,
    http: reqwest::Client,
    cookie: String,
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

impl<'a> Browser<'a> {
    async fn login(s: &'a Server, name: &str) -> Self {
        let http = reqwest::Client::builder().redirect(Policy::none()).pool_max_idle_per_host(0).build().unwrap();
        let form = http.get(s.url("/login")).send().await.unwrap();
        let login_cookie = set_cookie(&form, "certfleet_login_csrf").expect("login CSRF cookie");
        let pair = login_cookie.split(';').next().unwrap().to_owned();
        let token = hidden_csrf(&form.text().await.unwrap());
        let body = serde_urlencoded::to_string([("csrf", token.as_str()), ("username", name), ("password", PASSWORD)])
            .unwrap();
        let res = http
            .post(s.url("/login"))
            .header(COOKIE, pair)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "login of {name}");
        let cookie = set_cookie(&res, "certfleet_session").expect("session cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(!cookie.contains("Secure"), "plain loopback HTTP: no Secure flag: {cookie}");
        Self { s, http, cookie: cookie.split(';').next().unwrap().to_owned() }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let res = self.http.get(self.s.url(path)).header(COOKIE, &self.cookie).send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// POSTs a form; `csrf` is added from `from_page` unless None.
    async fn post(&self, path: &str, fields: &[(&str, &str)], csrf: Option<&str>) -> (StatusCode, String) {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if let Some(c) = csrf {
            all.push(("csrf", c));
        }
        let res = self
            .http
            .post(self.s.url(path))
            .header(COOKIE, &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&all).unwrap())
            .send()
            .await
            .unwrap();
        let status = res.status();
        let to = res.headers().get(LOCATION).and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned();
        let text = res.text().await.unwrap();
        (status, if status == StatusCode::SEE_OTHER { to } else { text })
    }

    async fn csrf(&self) -> String {
        hidden_csrf(&self.get("/").await.1)
    }
}

async fn dead_letter(s: &Server, system_name: Option<&str>) -> JobId {
    let id = JobId::new();
    let asset_id = match system_name {
        Some(n) => Some(assets::by_name(&s.db, n).await.unwrap().id),
        None => None,
    };
    dead_letters::record(
        &s.db,
        &DeadLetter {
            job_id: id,
            asset_id,
            system_name: system_name.map(str::to_owned),
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
    id
}

async fn pages_roles_and_csrf(backend: Backend) {
    let s = Server::start(backend).await;
    let p = s.user_token("d-priv", Role::Privileged).await;
    s.user_token("d-dev", Role::Developer).await;
    s.user_token("d-admin", Role::Admin).await;
    let (st, _) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/assets",
            Some(&p),
            Some(serde_json::json!([asset("web-1"), asset("web-2")])),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    // No session: every page sends to the login page; a bad session too.
    let anon = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    for path in ["/", "/queues", "/dead", "/assets", "/audit"] {
        let res = anon.get(s.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(res.headers()[LOCATION], "/login");
    }
    let res = anon.get(s.url("/")).header(COOKIE, "certfleet_session=forged.token.here").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The login form refuses a POST without its double-submit token.
    let res = anon
        .post(s.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=d-dev&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let dev = Browser::login(&s, "d-dev").await;
    let (st, home) = dev.get("/").await;
    assert_eq!(st, StatusCode::OK);
    assert!(home.contains("Assets by state") && home.contains("<svg"), "{home}");
    assert!(!home.contains("href=\"/audit\""), "DEVELOPER sees no audit link");
    let (st, page) = dev.get("/assets/web-1").await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("web-1.fleet.test"));
    assert!(!page.contains("Rotate now") && !page.contains("certificate validation</button>"), "no write button");
    let (st, _) = dev.get("/audit").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "the audit log is ADMIN only");
    // A forged POST with the DEVELOPER's own session and CSRF token: the API's 403.
    let token = dev.csrf().await;
    let (st, body) = dev.post("/assets/web-1/rotate", &[], Some(&token)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("PRIVILEGED"), "{body}");
    let (st, _) = dev.post("/dead/action", &[("action", "discard_all")], Some(&token)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let admin = Browser::login(&s, "d-admin").await;
    let (_, page) = admin.get("/assets/web-1").await;
    assert!(page.contains("Rotate now") && page.contains("Unset certificate validation"), "{page}");
    let token = admin.csrf().await;
    // Without the CSRF token, or with another session's, the POST is refused.
    let (st, _) = admin.post("/assets/web-1/rotate", &[], None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let other = hidden_csrf(&dev.get("/").await.1);
    let (st, _) = admin.post("/assets/web-1/rotate", &[], Some(&other)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(assets::by_name(&s.db, "web-1").await.unwrap().state.as_str(), "due", "nothing was done");
    // With it: the rotation is published through the API's handler and audited.
    let (st, to) = admin.post("/assets/web-1/rotate", &[], Some(&token)).await;
    assert_eq!((st, to.starts_with("/assets/web-1?notice=")), (StatusCode::SEE_OTHER, true), "{to}");
    assert_eq!(assets::by_name(&s.db, "web-1").await.unwrap().state.as_str(), "in_flight");
    let (st, to) = admin.post("/assets/web-2/validation", &[("set", "off")], Some(&token)).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{to}");
    assert!(!assets::by_name(&s.db, "web-2").await.unwrap().certificate_validation);
    let (st, log) = admin.get("/audit?action=asset.rotate").await;
    assert_eq!(st, StatusCode::OK);
    assert!(log.contains("d-admin") && log.contains("web-1"), "{log}");
    let (_, filtered) = admin.get("/assets?state=in_flight").await;
    assert!(filtered.contains("web-1") && !filtered.contains(">web-2<"), "{filtered}");

    // Logout ends the session on the server, not only the cookie, and is audited.
    let (st, to) = admin.post("/logout", &[], Some(&token)).await;
    assert_eq!((st, to.starts_with("/login")), (StatusCode::SEE_OTHER, true));
    // The old cookie, sent again (as a copied one would be), no longer opens a page.
    let (st, _) = admin.get("/").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "the logged-out session is sent to the login page");
    let (_, log) = Browser::login(&s, "d-admin").await.get("/audit?action=logout").await;
    assert!(log.contains("<code>logout</code>"), "{log}");
    s.stop().await;
}

async fn dead_letters_and_workers(backend: Backend) {
    // The machine's RabbitMQ has its management plugin on (scripts/services.sh).
    let s = Server::start_with(backend, |c| c.amqp_management_url = Some("http://127.0.0.1:15672".into())).await;
    let p = s.user_token("dl-priv", Role::Privileged).await;
    let (st, _) = s
        .call(reqwest::Method::POST, "/api/v1/assets", Some(&p), Some(serde_json::json!([asset("a-1"), asset("a-2")])))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (retry, discard, poison) =
        (dead_letter(&s, Some("a-1")).await, dead_letter(&s, Some("a-2")).await, dead_letter(&s, None).await);
    let b = Browser::login(&s, "dl-priv").await;
    let (st, list) = b.get("/dead").await;
    assert_eq!(st, StatusCode::OK);
    assert!(list.contains("3 dead letter(s)") && list.contains("poison: no asset"), "{list}");
    assert!(list.contains("data-confirm=\"Retry every pending dead letter?\""), "Retry all asks first");
    let (_, found) = b.get("/dead?q=a-2").await;
    assert!(found.contains("1 dead letter(s)"), "{found}");
    let (_, found) = b.get("/dead?q=A-2").await;
    assert!(found.contains("1 dead letter(s)"), "case does not matter: {found}");
    let (_, found) = b.get("/dead?q=a_2").await;
    assert!(found.contains("0 dead letter(s)"), "an underscore is a character, not a wildcard: {found}");
    let (_, found) = b.get(&format!("/dead?q={poison}")).await;
    assert!(found.contains("1 dead letter(s)") && found.contains("poison: no asset"), "by whole job id: {found}");
    let kept = serde_json::json!({"properties": {"message_id": "m-1"}, "headers": {"x-certfleet-error-class": "auth"}});
    dead_letters::record_headers(&s.db, poison, kept).await.unwrap();
    let (st, detail) = b.get(&format!("/dead/{poison}")).await;
    assert!(detail.contains("<code>x-certfleet-error-class</code>") && detail.contains("m-1"), "{detail}");
    assert_eq!(st, StatusCode::OK);
    assert!(detail.contains("can be discarded, not retried") && !detail.contains("value=\"retry\""), "{detail}");
    let token = b.csrf().await;
    let (st, to) = b.post("/dead/action", &[("action", "retry"), ("job", &retry.to_string())], Some(&token)).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert!(to.contains("Retried+1"), "{to}");
    assert_eq!(dead_letters::get(&s.db, retry).await.unwrap().status.as_str(), "retried");
    let (_, to) = b.post("/dead/action", &[("action", "retry"), ("job", &poison.to_string())], Some(&token)).await;
    assert!(to.contains("Retried+0") && to.contains("could+not+be"), "{to}");
    let (_, to) = b.post("/dead/action", &[("action", "discard"), ("job", &discard.to_string())], Some(&token)).await;
    assert!(to.contains("Discarded+1"), "{to}");
    let (_, list) = b.get("/dead").await;
    assert!(list.contains("1 dead letter(s)") && !list.contains(&discard.to_string()), "{list}");

    // Workers: one beating, one silent for more than 3 intervals.
    let now = Utc::now();
    for (name, sent) in [("w-alive", now), ("w-gone", now - Duration::seconds(16))] {
        let beat = WorkerHeartbeat {
            worker: name.into(),
            drivers: vec![Driver::Local],
            concurrency: 4,
            in_flight: 1,
            interval_ms: 5000,
            started_at: sent - Duration::minutes(5),
            sent_at: sent,
        };
        workers::record(&s.db, &beat).await.unwrap();
    }
    let (st, live) = b.get("/queues/live").await;
    assert_eq!(st, StatusCode::OK);
    assert!(!live.contains("<html"), "a fragment, not a page");
    let row = |name: &str| {
        live.split(&format!("<code>{name}</code>")).nth(1).unwrap().split("</tr>").next().unwrap().to_owned()
    };
    assert!(row("w-alive").contains(">alive<"), "{live}");
    assert!(row("w-gone").contains(">gone<"), "{live}");
    let queue = live.split("<code>certfleet.jobs.local</code>").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(!queue.contains("n/a"), "unacked and rates from the management API: {queue}");
    assert!(live.contains("the broker's recent averages"), "{live}");
    let (_, page) = b.get("/queues").await;
    assert!(page.contains("data-refresh=\"/queues/live\""));
    s.stop().await;
}

/// The asset history names each rotation's trace: as a link through
/// `api.trace_url_template`, as the bare id without one, and in the API's JSON.
async fn trace_links(backend: Backend) {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let s = Server::start_with(backend, |c| {
        c.api.trace_url_template = Some("https://jaeger.example/trace/{trace_id}?from=certfleet".into());
    })
    .await;
    let p = s.user_token("t-priv", Role::Privileged).await;
    let (st, _) =
        s.call(reqwest::Method::POST, "/api/v1/assets", Some(&p), Some(serde_json::json!([asset("web-1")]))).await;
    assert_eq!(st, StatusCode::CREATED);
    let a = assets::by_name(&s.db, "web-1").await.unwrap();
    let traced = Claim { asset_id: a.id, job_id: JobId::new(), driver: Driver::Local };
    history::record_queued(&s.db, &[traced], Utc::now(), Some(TRACE)).await.unwrap();
    let untraced = Claim { asset_id: a.id, job_id: JobId::new(), driver: Driver::Local };
    history::record_queued(&s.db, &[untraced], Utc::now() - Duration::minutes(1), None).await.unwrap();

    let b = Browser::login(&s, "t-priv").await;
    let (st, page) = b.get("/assets/web-1").await;
    assert_eq!(st, StatusCode::OK);
    let href = "href=\"https://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736?from=certfleet\"";
    assert!(page.contains(href), "{page}");
    assert_eq!(page.matches("class=\"trace\"").count(), 1, "the untraced row has no link: {page}");
    let (st, body) = s.call(reqwest::Method::GET, "/api/v1/assets/web-1", Some(&p), None).await;
    assert_eq!(st, StatusCode::OK);
    let mut ids: Vec<String> = body["history"].as_array().unwrap().iter().map(|r| r["trace_id"].to_string()).collect();
    ids.sort();
    assert_eq!(ids, [format!("\"{TRACE}\""), "null".to_owned()]);
    s.stop().await;

    // Without a template the id is shown, to paste into a tracing UI.
    let s = Server::start(backend).await;
    let p = s.user_token("t-priv", Role::Privileged).await;
    s.call(reqwest::Method::POST, "/api/v1/assets", Some(&p), Some(serde_json::json!([asset("web-1")]))).await;
    let a = assets::by_name(&s.db, "web-1").await.unwrap();
    let claim = Claim { asset_id: a.id, job_id: JobId::new(), driver: Driver::Local };
    history::record_queued(&s.db, &[claim], Utc::now(), Some(TRACE)).await.unwrap();
    let (_, page) = Browser::login(&s, "t-priv").await.get("/assets/web-1").await;
    assert!(page.contains(&format!("<code class=\"trace\" title=\"Trace id\">{TRACE}</code>")), "{page}");
    assert!(!page.contains("jaeger.example"));
    s.stop().await;
}

crate::both_backends!(pages_roles_and_csrf, dead_letters_and_workers, trace_links);
