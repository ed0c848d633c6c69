//! What the broker tests share: a private vhost on the machine's RabbitMQ per test.
#![allow(clippy::unwrap_used, dead_code)] // tests fail loudly

use std::process::Command;

/// A vhost of its own, deleted when dropped.
pub struct Vhost(pub String);

impl Vhost {
    pub fn new() -> Self {
        let name = format!("certfleet-amqp-{}", uuid::Uuid::new_v4().simple());
        for args in [vec!["add_vhost", &name], vec!["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]] {
            assert!(Command::new("rabbitmqctl").args(&args).output().unwrap().status.success(), "rabbitmqctl {args:?}");
        }
        Self(name)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.0)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["delete_vhost", &self.0]).output();
    }
}
