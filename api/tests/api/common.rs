//! A real API server per test: bound to 127.0.0.1:0 in process, over a fresh SQLite file
//! or a fresh PostgreSQL database, with a private RabbitMQ vhost, and a reqwest client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use certfleet_shared::Config;
use certfleet_shared::db::entity::role::Role;
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const ROUTES: &str = "[[route]]\nhost_platform = \"local\"\ndriver = \"local\"\n";
pub const PASSWORD: &str = "correct horse battery staple";

/// Which inventory backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn pg_base() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A running server and what it runs on; everything is removed on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub config: Config,
    pub db: DatabaseConnection,
    pub client: reqwest::Client,
    pub signing_key: Vec<u8>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    vhost: String,
    pg_db: Option<String>,
}

impl Server {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let vhost = format!("certfleet-api-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let (database_url, pg_db) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/inventory.db?mode=rwc", dir.path().display()), None),
            Backend::Postgres => {
                let name = format!("certfleet_api_{}", uuid::Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(format!("{}/postgres", pg_base())).await.expect("PostgreSQL");
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
                admin.close().await.unwrap();
                (format!("{}/{name}", pg_base()), Some(name))
            }
        };
        let key_file = dir.path().join("token.key");
        let signing_key: Vec<u8> = (0..48).map(|_| rand_byte()).collect();
        std::fs::write(&key_file, &signing_key).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("routes.toml"), ROUTES).unwrap();
        let mut config = Config {
            database_url,
            amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{vhost}").as_str().into(),
            routes_file: dir.path().join("routes.toml"),
            ..Config::default()
        };
        config.api.listen = "127.0.0.1:0".parse().unwrap();
        config.api.token_signing_key_file = Some(key_file);
        tweak(&mut config);
        let bound = certfleet_api::bind(&config).await.expect("API binds");
        let scheme = if bound.tls { "https" } else { "http" };
        let base = format!("{scheme}://{}", bound.addr);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(bound.serve(cancel.clone()));
        let db = certfleet_shared::db::connect(&config.database_url, Duration::from_secs(10)).await.unwrap();
        // No pooled connections: a server may close one after refusing a body unread (413), and a
        // reused, closed connection would fail the next request with IncompleteMessage.
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(0).build().unwrap();
        Self { dir, base, config, db, client, signing_key, cancel, task: Some(task), vhost, pg_db }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a user through the library (as the CLI does) and logs in through the API.
    pub async fn user_token(&self, name: &str, role: Role) -> String {
        let cli = certfleet_api::auth::Caller {
            actor: "test".into(),
            kind: certfleet_shared::db::entity::audit::ActorKind::OsUser,
            role: Role::Admin,
            source: None,
            request_id: None,
            session: None,
        };
        certfleet_api::accounts::create_user(&self.db, &cli, name, PASSWORD, role).await.unwrap();
        self.login(name, PASSWORD).await
    }

    pub async fn login(&self, name: &str, password: &str) -> String {
        let res = self
            .client
            .post(self.url("/user/v1/authenticate"))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "login of {name}");
        res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// Sends `method path` with an optional bearer and JSON body; returns status and body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let text = res.text().await.unwrap();
        if status.as_u16() >= 400 {
            assert_eq!(ct, "application/problem+json", "{path}: errors are problems: {text}");
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(name) = self.pg_db.take() {
            self.db.clone().close().await.ok();
            let admin = sea_orm::Database::connect(format!("{}/postgres", pg_base())).await.unwrap();
            admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
        let _ = Command::new("rabbitmqctl").args(["delete_vhost", &self.vhost]).output();
        if let Some(name) = &self.pg_db {
            let _ = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .output();
        }
    }
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

/// A valid asset.
pub fn asset(name: &str) -> Value {
    json!({
        "system_name": name,
        "common_name": format!("{name}.fleet.test"),
        "certificate_authority": "internal",
        "host_platform": "local",
        "data_center": "dc1",
        "settings": {"cert_path": "/tmp/x.crt", "key_path": "/tmp/x.key"},
    })
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
