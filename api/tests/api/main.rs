//! The API over real HTTP: a server bound to 127.0.0.1:0 per test, on SQLite and on
//! PostgreSQL, with a private RabbitMQ vhost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod broker;
mod common;
mod dashboard;
mod inventory;
mod matrix;
mod tls;

/// Runs an async test body once per backend.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod on_sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            super::$name(crate::common::Backend::Sqlite).await;
        } )+ }
        mod on_postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            super::$name(crate::common::Backend::Postgres).await;
        } )+ }
    };
}
pub(crate) use both_backends;
