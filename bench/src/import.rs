//! `import`: `certfleet assets import` of a generated CSV file (all rows or none, in one
//! transaction), timed as a whole process with its peak RSS.

use crate::env::BenchEnv;
use crate::median;
use anyhow::Context as _;
use sea_orm::{ConnectionTrait as _, EntityTrait as _, PaginatorTrait as _};
use std::io::Write as _;

/// Writes `rows` assets as CSV (the columns of `examples/assets.csv` that matter).
fn write_csv(path: &std::path::Path, rows: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "system_name,common_name,subject_alternative_name,certificate_authority,certificate_expiration,host_platform,ip_address,port,data_center,settings"
    )?;
    for i in 0..rows {
        writeln!(
            out,
            "dev-{i:08},dev-{i:08}.fleet.test,dev-{i:08}.fleet.test;www-{i:08}.fleet.test,internal,2027-0{}-15T00:00:00Z,local,10.{}.{}.{},443,dc{},\"{{\"\"cert_path\"\": \"\"/srv/tls/{i}.pem\"\", \"\"key_path\"\": \"\"/srv/tls/{i}.key\"\"}}\"",
            1 + i % 9,
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            i % 20
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Runs the benchmark and prints one JSON line.
pub async fn import(backend: &str, rows: u64, runs: usize) -> anyhow::Result<()> {
    let env = BenchEnv::new(backend, "").await?;
    let csv = env.dir.path().join("fleet.csv");
    write_csv(&csv, rows)?;
    let (mut walls, mut rss) = (Vec::new(), Vec::new());
    for run in 0..runs {
        env.db().execute_unprepared("DELETE FROM assets").await?;
        let (wall, rss_kb, out) = env.timed("certfleet", &["assets", "import", csv.to_str().context("path")?])?;
        let count = certfleet_shared::db::entity::asset::Entity::find().count(env.db()).await?;
        anyhow::ensure!(count == rows, "run {run}: {count} of {rows} rows imported: {out}");
        eprintln!("run {run}: {wall:.1}s, peak RSS {} MiB: {}", rss_kb / 1024, out.trim());
        walls.push(wall);
        rss.push(rss_kb as f64 / 1024.0);
    }
    let spread = [walls.iter().copied().fold(f64::MAX, f64::min), walls.iter().copied().fold(0.0, f64::max)];
    println!(
        "{}",
        serde_json::json!({"bench": "import", "backend": backend, "rows": rows, "runs": runs,
            "wall_secs": median(walls.clone()), "wall_spread_secs": spread, "rss_mib": median(rss)})
    );
    env.cleanup().await;
    Ok(())
}
