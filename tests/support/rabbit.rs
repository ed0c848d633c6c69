//! Private RabbitMQ nodes for tests that stop, restart or kill the broker: each node has its
//! own node name, AMQP and distribution ports, data and log directories in a temp dir, and
//! is killed when its guard drops. The machine's node on 5672 is never touched.
//!
//! The nodes run Debian's `rabbitmq-server` as root with `HOME=/var/lib/rabbitmq`, so they
//! share the machine's Erlang cookie and `rabbitmqctl -n NODE` reaches them. Ports come from
//! 20000..32000, below the kernel's ephemeral range and away from 25672 (the machine's
//! distribution port) and 35672-35682 (where the CLI tools bind their own distribution).

use anyhow::{Context as _, bail};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
const COOKIE_HOME: &str = "/var/lib/rabbitmq";

/// One private RabbitMQ node; SIGKILLed (with its Erlang VM) when dropped.
pub struct RabbitNode {
    /// The Erlang node name (`cf-<tag>-<random>@localhost`).
    pub name: String,
    /// AMQP port on 127.0.0.1.
    pub port: u16,
    /// Erlang distribution port on 127.0.0.1.
    pub dist_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

/// Picks a port in 20000..32000 that is free now (TCP on 127.0.0.1) and not `avoid`.
fn free_port(avoid: &[u16]) -> u16 {
    use std::net::TcpListener;
    for _ in 0..1000 {
        let x = uuid::Uuid::new_v4().as_u64_pair().0;
        let p = 20000 + u16::try_from(x % 12000).unwrap_or(0);
        if p == 25672 || avoid.contains(&p) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 20000..32000");
}

impl RabbitNode {
    /// Starts a fresh single node and waits until it accepts AMQP connections.
    pub fn start(tag: &str) -> Self {
        let tmp = tempfile::Builder::new().prefix(&format!("cf-rabbit-{tag}-")).tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let name = format!("cf-{tag}-{}@localhost", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut last = String::new();
        // A port chosen free can be taken before the node binds it: try a few times.
        for _ in 0..3 {
            let port = free_port(&[]);
            let dist_port = free_port(&[port]);
            let mut node = Self { name: name.clone(), port, dist_port, dir: dir.clone(), child: None, _tmp: None };
            match node.boot(Duration::from_secs(300)) {
                Ok(()) => {
                    node._tmp = Some(tmp);
                    return node;
                }
                Err(e) => {
                    last = format!("{e:#}");
                    node.kill9();
                    let _ = std::fs::remove_dir_all(dir.join("mnesia"));
                }
            }
        }
        panic!("private RabbitMQ node {name} did not start: {last}");
    }

    /// Its data directory (config, mnesia, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// AMQP URL for `vhost` ("/" is `%2f`) with guest/guest.
    pub fn url(&self, vhost: &str) -> String {
        let vhost = if vhost == "/" { "%2f" } else { vhost };
        format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", self.port)
    }

    /// Starts the Erlang VM of this node (again, after a kill) and waits for the app.
    pub fn boot(&mut self, timeout: Duration) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let conf = self.dir.join("rabbitmq.conf");
        std::fs::write(
            &conf,
            format!(
                "listeners.tcp.1 = 127.0.0.1:{}\nloopback_users = none\nlog.console = false\n\
                 log.file.level = info\n",
                self.port
            ),
        )?;
        std::fs::write(self.dir.join("rabbitmq-env.conf"), "")?;
        std::fs::write(self.dir.join("enabled_plugins"), "[].\n")?;
        let log = std::fs::File::create(self.dir.join("server.out"))?;
        let child = Command::new(SERVER)
            .process_group(0)
            .env("HOME", COOKIE_HOME)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", &conf)
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning rabbitmq-server")?;
        self.child = Some(child);
        self.await_startup(timeout)
    }

    /// Waits until the node's app runs (the node may not be registered with epmd yet).
    pub fn await_startup(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let out = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
                let tail: String = out.chars().rev().take(1500).collect::<Vec<_>>().into_iter().rev().collect();
                bail!("rabbitmq-server exited ({status}): {tail}");
            }
            if self.ctl(&["await_startup", "--timeout", "30"]).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("node {} not up after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(500)); // test code, outside any runtime
        }
    }

    /// Runs `rabbitmqctl -n NODE args...` and returns its stdout.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(CTL)
            .env("HOME", COOKIE_HOME)
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .context("running rabbitmqctl")?;
        if !out.status.success() {
            bail!(
                "rabbitmqctl -n {} {args:?}: {}{}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `stop_app`, a pause, `start_app` and `await_startup`: every client connection drops.
    pub fn restart_app(&self, pause: Duration) {
        self.ctl(&["stop_app"]).expect("stop_app");
        std::thread::sleep(pause); // test code, outside any runtime
        self.ctl(&["start_app"]).expect("start_app");
        self.ctl(&["await_startup"]).expect("await_startup");
    }

    /// Restarts the whole node: `rabbitmqctl stop` (the Erlang VM exits, every client
    /// connection drops), then a new VM on the same data. Returns how long it was down.
    pub fn restart_node(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let t = Instant::now();
        self.ctl(&["stop"])?;
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + timeout;
            while child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("node {} did not exit after rabbitmqctl stop", self.name);
                }
                std::thread::sleep(Duration::from_millis(100)); // test code, outside any runtime
            }
        }
        // The VM is gone; its pid file must not lead a later kill to a reused pid.
        let _ = std::fs::remove_file(self.dir.join("pid"));
        self.boot(timeout)?;
        Ok(t.elapsed())
    }

    /// The client-side addresses (`name` column) of the connections to `vhost`.
    pub fn connections(&self, vhost: &str) -> Vec<String> {
        self.ctl(&["list_connections", "-q", "--no-table-headers", "-p", vhost, "name"])
            .map(|s| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The OS pid of the node's Erlang VM, from its pid file.
    pub fn os_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pid")).ok()?.trim().parse().ok()
    }

    /// SIGKILLs the Erlang VM (a crash; data on disk stays for [`RabbitNode::boot`]).
    pub fn kill9(&mut self) {
        if let Some(pid) = self.os_pid() {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
        if let Some(mut child) = self.child.take() {
            // The script, the VM and its helpers share the process group started for them.
            let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{}", child.id())).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of private nodes; every node is killed when the guard drops.
pub struct RabbitCluster {
    /// The nodes; the first is the one the others joined.
    pub nodes: Vec<RabbitNode>,
}

impl RabbitCluster {
    /// Boots `n` fresh nodes at once, then joins the others to the first.
    pub fn start(tag: &str, n: usize) -> Self {
        let nodes: Vec<RabbitNode> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..n).map(|i| s.spawn(move || RabbitNode::start(&format!("{tag}{}", i + 1)))).collect();
            handles.into_iter().map(|h| h.join().expect("node start thread")).collect()
        });
        let seed = nodes[0].name.clone();
        for node in &nodes[1..] {
            for args in [&["stop_app"][..], &["reset"], &["join_cluster", &seed], &["start_app"], &["await_startup"]] {
                node.ctl(args).unwrap_or_else(|e| panic!("joining {} to {seed}: {e:#}", node.name));
            }
        }
        let status = nodes[0].ctl(&["cluster_status", "--formatter", "json"]).expect("cluster_status");
        for node in &nodes {
            assert!(status.contains(&node.name), "{} is not in the cluster: {status}", node.name);
        }
        Self { nodes }
    }

    /// The nodes' AMQP URLs for `vhost`, comma-separated (an `amqp_url` list).
    pub fn urls(&self, vhost: &str) -> String {
        self.nodes.iter().map(|n| n.url(vhost)).collect::<Vec<_>>().join(",")
    }

    /// A node that still runs (to ask about the cluster after one was killed).
    pub fn live(&self) -> &RabbitNode {
        self.nodes.iter().find(|n| n.child.is_some()).expect("a running node")
    }

    /// The node that leads quorum queue `queue` in `vhost`.
    pub fn leader_of(&self, vhost: &str, queue: &str) -> usize {
        let out = self
            .live()
            .ctl(&["list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "leader"])
            .expect("list_queues");
        let leader = out
            .lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(queue)).then(|| cols.next().unwrap_or_default().to_owned())
            })
            .unwrap_or_else(|| panic!("{queue} not listed: {out}"));
        self.nodes.iter().position(|n| n.name == leader).unwrap_or_else(|| panic!("leader {leader} is no node of ours"))
    }

    /// `(name, members, consumers)` of every queue of `vhost`, from a running node.
    pub fn queues(&self, vhost: &str) -> Vec<(String, usize, u32)> {
        let out = self
            .live()
            .ctl(&["list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "members", "consumers"])
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| {
                let name = l.split_whitespace().next()?.to_owned();
                let members = l.matches('@').count();
                let consumers = l.split_whitespace().last()?.parse().ok()?;
                Some((name, members, consumers))
            })
            .collect()
    }
}
