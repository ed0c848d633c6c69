//! `certfleet-bench chaos`: the fault-free run and the chaos run of the same size, in the same
//! invocation, on a private RabbitMQ node and a private PostgreSQL cluster (the run itself
//! is `certfleet_tests::chaos`, shared with `tests/chaos.rs`). Prints lost assets, double
//! deploys per job id, assets not in exactly one terminal state, the longest stall after
//! each kind of fault, and both total times.

use certfleet_tests::chaos::{ChaosOpts, ChaosReport, ChaosWorld, run};
use std::time::Duration;

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn print(label: &str, r: &ChaosReport) {
    println!(
        "{label}: {} assets in {} (finished: {}); lost {}; never deployed {}; job ids that deployed a second \
         certificate {} ({} extra certificates); repeated reloads of a job's own certificate {}; assets \
         deployed by two job ids {}; not in exactly one terminal state {}; reloads {}; longest gap {}",
        r.assets,
        secs(r.elapsed),
        r.finished,
        r.lost,
        r.never_deployed,
        r.double_deploys,
        r.extra_deploys,
        r.repeated_reloads,
        r.assets_by_two_jobs,
        r.not_one_terminal,
        r.deploys,
        secs(r.longest_gap)
    );
    for kind in ["worker-kill", "scheduler-kill", "rabbitmq-restart", "postgres-restart"] {
        if let Some(stall) = r.stall(kind) {
            println!("  {kind}: {} times, longest stall after it {}", r.count(kind), secs(stall));
        }
    }
    for e in &r.unexpected_exits {
        println!("  unexpected exit: {e}");
    }
}

pub async fn chaos(assets: u64, workers: usize, concurrency: u16, kill_every: u64) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?.to_owned();
    let world = tokio::task::spawn_blocking(ChaosWorld::start).await??;
    let opts = ChaosOpts {
        assets,
        workers,
        concurrency,
        faults: false,
        kill_every: Duration::from_secs(kill_every),
        fault_at: [0.2, 0.4, 0.6],
        deadline: Duration::from_secs(4 * 3600),
        lease: Duration::from_secs(4 * 3600),
        bin_dir,
    };
    let reference = run(&world, opts.clone()).await?;
    print("fault-free", &reference);
    let chaos = run(&world, ChaosOpts { faults: true, ..opts }).await?;
    print("chaos", &chaos);
    println!(
        "chaos assets={assets} workers={workers} concurrency={concurrency}: total {} vs fault-free {} ({:.2}x)",
        secs(chaos.elapsed),
        secs(reference.elapsed),
        chaos.elapsed.as_secs_f64() / reference.elapsed.as_secs_f64().max(0.001)
    );
    Ok(())
}
