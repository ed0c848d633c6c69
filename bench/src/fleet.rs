//! Benchmarks against the real peer stack of `scripts/stack/` (Pebble + BIND9, sshd): ACME
//! issuance through DNS-01 versus certbot and lego, and rotations over SSH on many simulated
//! devices versus a per-device `ssh` + `openssl` baseline. The peers run from the shell
//! scripts beside this crate (`bench/acme-peers.sh`, `bench/ssh-baseline.sh`) in the same run.

use crate::env::{BenchEnv, Proc};
use crate::median;
use anyhow::{Context as _, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running peer stack (`scripts/stack/up.sh`), stopped on drop.
pub struct Stack {
    dir: PathBuf,
    env: HashMap<String, String>,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Stack {
    pub fn start() -> anyhow::Result<Self> {
        let dir = PathBuf::from(format!("/tmp/cf-bench-stack-{}", std::process::id()));
        let status = Command::new(scripts().join("scripts/stack/up.sh")).arg(&dir).status()?;
        anyhow::ensure!(status.success(), "scripts/stack/up.sh failed");
        let text = std::fs::read_to_string(dir.join("stack.env"))?;
        let env = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Ok(Self { dir, env })
    }

    pub fn get(&self, key: &str) -> anyhow::Result<&str> {
        self.env.get(key).map(String::as_str).with_context(|| format!("{key} missing from stack.env"))
    }

    fn env_file(&self) -> PathBuf {
        self.dir.join("stack.env")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new(scripts().join("scripts/stack/down.sh")).arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU seconds (user + system) a live process has used, from `/proc/<pid>/stat`.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Peak RSS of a live process in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("VmHWM")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// Runs a bench script and returns its last stdout line's `key=value` pairs.
fn run_script(args: &[&str]) -> anyhow::Result<Vec<HashMap<String, String>>> {
    let out = Command::new(scripts().join(args[0])).args(&args[1..]).output()?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "{} failed", args[0]);
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            println!("{l}");
            l.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
        })
        .collect())
}

/// Scheduler + one worker rotating `n` seeded assets; returns (seconds, worker CPU s, peak RSS MiB).
async fn one_fleet_run(env: &BenchEnv, n: u64, driver: &str, concurrency: u16) -> anyhow::Result<(f64, f64, f64)> {
    let c = concurrency.to_string();
    let mut worker: Proc = env.spawn("certfleet-worker", &["--drivers", driver, "--concurrency", &c])?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let cpu_before = cpu_secs(worker.pid())?;
    let start = Instant::now();
    let mut scheduler = env.spawn("certfleet-scheduler", &[])?;
    let waited = env.wait_rotated(n, Duration::from_secs(1800)).await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(worker.pid())? - cpu_before;
    let rss = peak_rss_mib(worker.pid())?;
    scheduler.stop();
    worker.stop();
    waited?;
    Ok((secs, cpu, rss))
}

/// `n` certificates through Pebble + BIND9 with certfleet (local driver, acme issuer, one
/// worker at `concurrency`), then with certbot and lego in the same run.
pub async fn acme(n: u64, concurrency: u16, peers_n: u64) -> anyhow::Result<()> {
    let stack = Stack::start()?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("account.key");
    std::fs::write(&key_file, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")?;
    set_mode_600(&key_file)?;
    let extra = format!(
        "scan_interval = \"1h\"\n[worker]\njob_timeout = \"10m\"\n\
         [issuers.pebble]\nkind = \"acme\"\ndirectory_url = \"{dir_url}\"\ncontact = \"bench@example.test\"\n\
         ca_bundle = \"{bundle}\"\naccount_dir = \"{acct}\"\naccount_key_encryption_key_file = \"{key}\"\n\
         [[issuers.pebble.dns]]\nprovider = \"rfc2136\"\nserver = \"{ns}:{port}\"\nzone = \"{zone}\"\n\
         key_name = \"{kname}\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{secret}\"\n",
        dir_url = stack.get("PEBBLE_DIRECTORY_URL")?,
        bundle = stack.get("PEBBLE_CA_BUNDLE")?,
        acct = dir.path().join("acme").display(),
        key = key_file.display(),
        ns = stack.get("NAMED_HOST")?,
        port = stack.get("NAMED_PORT")?,
        zone = stack.get("ZONE")?,
        kname = stack.get("TSIG_KEY_NAME")?,
        secret = stack.get("TSIG_SECRET")?,
    );
    let env = BenchEnv::new("sqlite", &extra).await?;
    let zone = stack.get("ZONE")?.to_owned();
    env.seed_fleet(n, "pebble", "local", |i| {
        let cn = format!("cf-{i}-{}.{zone}", std::process::id());
        let certs = env.dir.path().join("certs");
        (cn, serde_json::json!({"cert_path": certs.join(format!("{i}.crt")), "key_path": certs.join(format!("{i}.key"))}))
    })
    .await?;
    let (secs, cpu, rss) = one_fleet_run(&env, n, "local", concurrency).await?;
    // Every asset must hold a chain from Pebble (leaf + intermediate) on disk.
    let certs = env.dir.path().join("certs");
    let on_disk = (0..n)
        .filter(|i| {
            std::fs::read_to_string(certs.join(format!("{i}.crt")))
                .map(|pem| pem.matches("BEGIN CERTIFICATE").count() >= 2)
                .unwrap_or(false)
        })
        .count() as u64;
    anyhow::ensure!(on_disk == n, "only {on_disk} of {n} chains on disk");
    let ours = n as f64 * 60.0 / secs;
    println!(
        "acme certfleet n={n} concurrency={concurrency}: {secs:.1}s = {ours:.1} certs/min; worker CPU {cpu:.1}s, peak RSS {rss:.0} MiB"
    );
    env.cleanup().await;
    let peers_n = peers_n.to_string();
    let prefix = format!("p{}", std::process::id());
    let env_file = stack.env_file();
    let lines = run_script(&["bench/acme-peers.sh", &env_file.to_string_lossy(), &peers_n, &prefix])?;
    for l in &lines {
        let (Some(peer), Some(mode), Some(rate), Some(failed)) =
            (l.get("peer"), l.get("mode"), l.get("per_min"), l.get("failed"))
        else {
            continue;
        };
        let rate: f64 = rate.parse()?;
        println!("acme ratio: certfleet / {peer} {mode} = {:.1} (peer failures: {failed})", ours / rate);
    }
    Ok(())
}

fn set_mode_600(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// One worker rotating `n` simulated Linux devices (directories behind the stack's sshd) at
/// each concurrency, then the per-device `ssh` + `openssl` baseline at 50 in parallel.
pub async fn ssh(n: u64, concurrencies: &[u16], runs: usize) -> anyhow::Result<()> {
    let stack = Stack::start()?;
    let extra = format!(
        "scan_interval = \"1h\"\nscan_page_size = 5000\n[worker]\njob_timeout = \"10m\"\n\
         [drivers.ssh]\nprivate_key_file = \"{}\"\nconnect_timeout = \"60s\"\n",
        stack.get("SSH_KEY")?
    );
    let mut summary = Vec::new();
    for &c in concurrencies {
        let (mut rates, mut cpus, mut rsss) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let env = BenchEnv::new("sqlite", &extra).await?;
            env.write_routes("[[route]]\nhost_platform = \"linux\"\ndriver = \"linux-ssh\"\n")?;
            let devices = env.dir.path().join("devices");
            let (host, port, pin) = (stack.get("SSH_HOST")?, stack.get("SSH_PORT")?, stack.get("SSH_HOST_PUBKEY_B64")?);
            env.seed_fleet(n, "internal", "linux", |i| {
                let d = devices.join(format!("dev-{i}"));
                let _ = std::fs::create_dir_all(&d);
                let settings = serde_json::json!({
                    "host": host, "ssh_port": port.parse::<u16>().unwrap_or(22),
                    "host_key": format!("ssh-ed25519 {pin}"),
                    "cert_path": d.join("cert.pem"), "key_path": d.join("key.pem"),
                    "reload_command": format!("touch {}", d.join("reloaded").display()),
                });
                (format!("dev-{i}.bench.test"), settings)
            })
            .await?;
            let (secs, cpu, rss) = one_fleet_run(&env, n, "linux-ssh", c).await?;
            let failed = n - env.count_rotated_with_cert(&devices, n)?;
            if failed > 0 {
                bail!("concurrency {c} run {run}: {failed} devices without a new certificate");
            }
            eprintln!(
                "ssh concurrency={c} run {run}: {n} rotations in {secs:.1}s = {:.1}/s; worker CPU {:.1} ms/rotation; peak RSS {rss:.0} MiB",
                n as f64 / secs,
                cpu * 1000.0 / n as f64
            );
            rates.push(n as f64 / secs);
            cpus.push(cpu * 1000.0 / n as f64);
            rsss.push(rss);
            env.cleanup().await;
        }
        summary.push((c, median(rates), median(cpus), median(rsss)));
    }
    // Baseline: the same rotations by per-device processes, 50 at a time, same CA type.
    let base_dir = tempfile::tempdir()?;
    for i in 1..=n {
        std::fs::create_dir_all(base_dir.path().join(format!("dev-{i}")))?;
    }
    let (ca_crt, ca_key) = (base_dir.path().join("ca.crt"), base_dir.path().join("ca.key"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=bench baseline CA", "-days", "10", "-keyout"])
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca_crt)
        .status()?;
    anyhow::ensure!(ok.success(), "openssl CA");
    let (mut base_rates, mut base_cpus) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let lines = run_script(&[
            "bench/ssh-baseline.sh",
            &stack.env_file().to_string_lossy(),
            &base_dir.path().to_string_lossy(),
            &n.to_string(),
            "50",
            &ca_crt.to_string_lossy(),
            &ca_key.to_string_lossy(),
        ])?;
        let last = lines.last().context("baseline output")?;
        anyhow::ensure!(last.get("ok").map(String::as_str) == Some(n.to_string().as_str()), "baseline failures");
        base_rates.push(last.get("per_sec").context("per_sec")?.parse::<f64>()?);
        base_cpus.push(last.get("cpu_ms_per_rotation").context("cpu")?.parse::<f64>()?);
    }
    let (br, bc) = (median(base_rates), median(base_cpus));
    println!(
        "ssh baseline (ssh + openssl per device, 50 parallel) n={n}: {br:.1} rotations/s, client CPU {bc:.1} ms/rotation"
    );
    for (c, r, cpu, rss) in summary {
        println!(
            "ssh certfleet concurrency={c} n={n} runs={runs}: median {r:.1} rotations/s ({:.2}x baseline), worker CPU {cpu:.2} ms/rotation ({:.3}x baseline), peak RSS {rss:.0} MiB",
            r / br,
            cpu / bc
        );
    }
    Ok(())
}
