//! The peer stack of `scripts/stack/` (BIND9, Pebble, sshd, nginx, HAProxy on 127.0.0.1) for
//! the issuer and provider tests: installed if missing, started in a private directory, and
//! stopped with `down.sh` when the last guard drops. Tests alive at the same time share one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

/// A running stack; `down.sh` runs when it drops.
pub struct Stack {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

/// A script of `scripts/stack/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack").join(name)
}

impl Stack {
    /// The stack shared by every test alive at the same time.
    pub fn shared() -> Arc<Stack> {
        static SHARED: Mutex<Weak<Stack>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stack) = slot.upgrade() {
            return stack;
        }
        let stack = Arc::new(Stack::start());
        *slot = Arc::downgrade(&stack);
        stack
    }

    /// A fresh stack of its own.
    pub fn start() -> Stack {
        let missing = |bin: &str| {
            Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().map(|o| !o.status.success())
        };
        if missing("pebble").unwrap_or(true) || missing("named").unwrap_or(true) {
            assert!(Command::new(script("install.sh")).status().unwrap().success(), "install.sh failed");
        }
        let dir = tempfile::Builder::new().prefix("cf-stack-").tempdir().unwrap();
        assert!(Command::new(script("up.sh")).arg(dir.path()).status().unwrap().success(), "up.sh failed");
        let text = std::fs::read_to_string(dir.path().join("stack.env")).unwrap();
        let env = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Stack { dir, env }
    }

    /// One `stack.env` value.
    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("{key} missing from stack.env"))
    }

    /// The stack's BIND9.
    pub fn named(&self) -> SocketAddr {
        format!("{}:{}", self.get("NAMED_HOST"), self.get("NAMED_PORT")).parse().unwrap()
    }

    /// The stack's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new(script("down.sh")).arg(self.dir.path()).output();
    }
}
