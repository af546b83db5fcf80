//! Density: start idle Debian instances, one after the other, until a fixed
//! memory budget is used (the host's MemAvailable has dropped by that much
//! since the start) or a maximum count is running; report how many fitted
//! and how long the last ten took from launch to running.
//!
//! "Within budget" counts the instances running while the drop was still
//! under the budget: the one whose start crossed it is not counted (the
//! memory figures, though, are for all that ran). The baseline is read after
//! the image has been put on the pool (one instance created and deleted), so
//! that the budget holds only what the instances take.
//!
//! Unlike the other scenarios the targets are not interleaved: density fills
//! the machine, so each target runs the whole scenario on its own (Kante
//! first, every instance and its pool deleted again, then LXD), and the other
//! daemon sits idle meanwhile.
//!
//! A launch that fails or does not get ready in time ends the target's run
//! (the count reached so far is kept and the error printed on stderr): LXD
//! with the distributions' default inotify limits is known to stop booting
//! containers properly around the 13th; kanted raises those limits when it
//! starts (see the "Host limits" line of the report).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use crate::report::Results;
use crate::target::Target;
use crate::{proc, storage, PREFIX};

/// The btrfs pool made for the scenario on each target.
const POOL: &str = "bench-density";
/// Its sparse loop file: the instances are snapshots of the image volume,
/// so 200 of them need little more than what their boots write.
const POOL_SIZE: &str = "20GiB";
/// How long one instance may take from launch to running.
const READY: Duration = Duration::from_secs(180);
/// Pause before the baseline and before the final memory reading, so that
/// boot-time spikes and freed memory settle.
const SETTLE: Duration = Duration::from_secs(10);
/// The count at which the daemon's RSS and a list are measured.
const MARK: usize = 100;

/// Which pool the instances' root disks go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolKind {
    /// The target's default pool (a `dir` pool for both): every instance is a
    /// full copy of the rootfs (~300 MiB each).
    Dir,
    /// A btrfs pool on a loop file made for the run: instances are snapshots.
    Btrfs,
}

pub struct Config {
    /// MemAvailable drop (bytes) at which no further instance is started.
    pub budget: u64,
    /// Most instances to start (0: skip the scenario).
    pub max: usize,
    pub pool: PoolKind,
}

/// Runs the scenario on each target in turn (see the module comment).
pub async fn run(targets: &[Target], cfg: &Config, r: &mut Results) -> Result<()> {
    if cfg.max == 0 {
        return Ok(());
    }
    for t in targets {
        one_target(t, cfg, r)
            .await
            .with_context(|| format!("density on {}", t.name))?;
    }
    Ok(())
}

/// The scenario on one target; whatever happens, its instances and its pool
/// are deleted afterwards.
async fn one_target(t: &Target, cfg: &Config, r: &mut Results) -> Result<()> {
    t.clean(PREFIX).await;
    let pool = match cfg.pool {
        PoolKind::Dir => t.pool.clone(),
        PoolKind::Btrfs => {
            // A pool left over from an interrupted run would refuse the name.
            let _ = storage::delete_pool(t, POOL).await;
            storage::create_btrfs_pool(t, POOL, POOL_SIZE).await?;
            POOL.to_string()
        }
    };
    let result = fill(t, &pool, cfg, r).await;
    let n = t
        .client
        .instance_names()
        .await
        .map(|v| v.iter().filter(|n| n.starts_with(PREFIX)).count())
        .unwrap_or(0);
    eprintln!("{} density: deleting {n} instances", t.name);
    let t0 = Instant::now();
    t.clean(PREFIX).await;
    eprintln!(
        "{} density: deleted in {:.0} s",
        t.name,
        t0.elapsed().as_secs_f64()
    );
    if cfg.pool == PoolKind::Btrfs {
        if let Err(e) = storage::delete_pool(t, POOL).await {
            eprintln!("{e:#}");
        }
    }
    result
}

/// Why the loop stopped.
enum Stop {
    Max,
    Budget,
    Failed(anyhow::Error),
}

/// Starts instances until the budget, the maximum or a failure; records the
/// figures. Only an error before the first launch (putting the image on the
/// pool) is returned.
async fn fill(t: &Target, pool: &str, cfg: &Config, r: &mut Results) -> Result<()> {
    let pid = t.daemon_pid().await;
    // The first instance on a fresh pool also puts the image on it (an image
    // volume, for both daemons): do that before the baseline, so that the
    // budget holds only what the instances take.
    let prime = format!("{PREFIX}dprime");
    create_on(t, &prime, pool)
        .await
        .context("putting the image on the pool")?;
    t.client.delete_instance(&prime).await?;
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    tokio::time::sleep(SETTLE).await;
    let before = proc::mem_available();
    let start = Instant::now();
    let mut launches: Vec<f64> = Vec::new();
    let mut within = 0;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let progress = |count: usize, drop: u64| {
        eprintln!(
            "{} density: {count} running, {:.0} s, MemAvailable down {:.2} GiB of {:.2} GiB",
            t.name,
            start.elapsed().as_secs_f64(),
            gib(drop),
            gib(cfg.budget)
        )
    };
    let stop = loop {
        let count = launches.len();
        if count >= cfg.max {
            break Stop::Max;
        }
        let name = format!("{PREFIX}d{count}");
        let t0 = Instant::now();
        if let Err(e) = launch(t, &name, pool).await {
            break Stop::Failed(e);
        }
        launches.push(t0.elapsed().as_secs_f64());
        let count = launches.len();
        let drop = before.saturating_sub(proc::mem_available());
        if count == MARK {
            at_mark(t, pid, r).await;
        }
        if count.is_multiple_of(10) {
            progress(count, drop);
        }
        if drop >= cfg.budget {
            break Stop::Budget;
        }
        within = count;
    };
    let count = launches.len();
    match &stop {
        Stop::Max => eprintln!("{} density: {count} running, the maximum", t.name),
        Stop::Budget => eprintln!(
            "{} density: budget used with {count} running ({within} within it)",
            t.name
        ),
        Stop::Failed(e) => eprintln!(
            "{} density: launching {PREFIX}d{count} failed with {count} running: {e:#}",
            t.name
        ),
    }
    tokio::time::sleep(SETTLE).await;
    let used = before.saturating_sub(proc::mem_available());
    progress(count, used);

    r.add(
        "density: instances within budget",
        &t.name,
        "n",
        within as f64,
    );
    for v in &launches[count.saturating_sub(10)..] {
        r.add("density: launch → running, last ten", &t.name, "s", *v);
    }
    r.add("density: memory used at end", &t.name, "B", used as f64);
    if count > 0 {
        r.add(
            "density: free-memory drop per instance",
            &t.name,
            "B",
            used as f64 / count as f64,
        );
    }
    Ok(())
}

/// [`create_on`], start, wait until the guest's init reports running.
async fn launch(t: &Target, name: &str, pool: &str) -> Result<()> {
    create_on(t, name, pool).await?;
    t.client
        .start_instance(name)
        .await
        .with_context(|| format!("starting {name}"))?;
    t.wait_ready(name, READY).await
}

/// Creates `name` with only a root disk, on `pool` (cloud-init off, as
/// [`Target::create`] does).
async fn create_on(t: &Target, name: &str, pool: &str) -> Result<()> {
    let devices = serde_json::from_value(json!({
        "root": {"type": "disk", "path": "/", "pool": pool}
    }))?;
    t.create_with(name, devices)
        .await
        .with_context(|| format!("creating {name} on {pool}"))
}

/// Figures taken once when the `MARK`th instance is running.
async fn at_mark(t: &Target, pid: i32, r: &mut Results) {
    r.add(
        &format!("density: daemon RSS, {MARK} running"),
        &t.name,
        "B",
        proc::rss(pid) as f64,
    );
    for _ in 0..5 {
        let t1 = Instant::now();
        match t.client.instances().await {
            Ok(_) => r.add(
                &format!("density: GET /1.0/instances?recursion=1 ({MARK} running)"),
                &t.name,
                "s",
                t1.elapsed().as_secs_f64(),
            ),
            Err(e) => {
                eprintln!("{} density: listing: {e:#}", t.name);
                break;
            }
        }
    }
}
