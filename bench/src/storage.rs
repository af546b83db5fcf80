//! Storage scenarios, per pool type: launch → running, snapshot, restore,
//! copy, and the deletes, on the `dir` pool and on a btrfs pool made for the
//! run (a 10 GiB loop file, made the same way through the API on each
//! daemon). Daemons and pool types take turns, so drift hits all alike.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kante_api::instance::InstancesPost;
use serde_json::json;

use crate::report::Results;
use crate::target::Target;
use crate::PREFIX;

/// The btrfs pool made for the run.
const BTRFS_POOL: &str = "bench-btrfs";

/// Makes a btrfs pool `name` on a sparse loop file of `size` (say "10GiB"),
/// through the API, the same request for every daemon; how long it took.
/// Also used by the density scenario.
pub(crate) async fn create_btrfs_pool(t: &Target, name: &str, size: &str) -> Result<Duration> {
    let t0 = Instant::now();
    t.client
        .post(
            "/1.0/storage-pools",
            &json!({"name": name, "driver": "btrfs", "config": {"size": size}}),
        )
        .await
        .with_context(|| format!("creating btrfs pool {name} ({size}) on {}", t.name))?;
    Ok(t0.elapsed())
}

/// Deletes pool `name` (for a loop-backed pool: unmount, detach, remove the
/// file); how long it took.
pub(crate) async fn delete_pool(t: &Target, name: &str) -> Result<Duration> {
    let t0 = Instant::now();
    t.client
        .delete(&format!("/1.0/storage-pools/{name}"))
        .await
        .with_context(|| format!("deleting pool {name} on {}", t.name))?;
    Ok(t0.elapsed())
}

/// Makes the run's btrfs pool on `t`; false (dir figures only) if it cannot.
async fn create_btrfs(t: &Target, r: &mut Results) -> bool {
    match create_btrfs_pool(t, BTRFS_POOL, "10GiB").await {
        Ok(took) => {
            r.add(
                "create btrfs pool (10 GiB loop file)",
                &t.name,
                "s",
                took.as_secs_f64(),
            );
            true
        }
        Err(e) => {
            eprintln!("{}: no btrfs pool ({e:#}): dir figures only", t.name);
            false
        }
    }
}

async fn delete_btrfs(t: &Target, r: &mut Results) {
    match delete_pool(t, BTRFS_POOL).await {
        Ok(took) => r.add(
            "delete btrfs pool (unmount, detach, remove)",
            &t.name,
            "s",
            took.as_secs_f64(),
        ),
        Err(e) => eprintln!("{e:#}"),
    }
}

pub async fn run(targets: &[Target], runs: usize, r: &mut Results) -> Result<()> {
    // (target, pool type, pool name) in the order of one pass.
    let mut passes = Vec::new();
    let mut with_btrfs = Vec::new();
    for (k, t) in targets.iter().enumerate() {
        passes.push((k, "dir", t.pool.clone()));
        if create_btrfs(t, r).await {
            passes.push((k, "btrfs", BTRFS_POOL.to_string()));
            with_btrfs.push(k);
        }
    }
    let mut result = Ok(());
    'outer: for i in 0..runs {
        // Alternate the order, as the lifecycle runs do.
        let order: Vec<usize> = if i % 2 == 0 {
            (0..passes.len()).collect()
        } else {
            (0..passes.len()).rev().collect()
        };
        for &p in &order {
            let (k, kind, pool) = &passes[p];
            result = one_run(&targets[*k], kind, pool, i, r).await;
            if result.is_err() {
                break 'outer;
            }
        }
    }
    for t in targets {
        t.clean(PREFIX).await;
    }
    for k in with_btrfs {
        delete_btrfs(&targets[k], r).await;
    }
    result
}

/// One pass on one pool; every figure is labelled with the pool type.
async fn one_run(t: &Target, kind: &str, pool: &str, i: usize, r: &mut Results) -> Result<()> {
    let name = format!("{PREFIX}st{i}");
    let label = |what: &str| format!("{what} [{kind}]");
    let root = json!({"root": {"type": "disk", "path": "/", "pool": pool}});
    let devices = serde_json::from_value(root)?;

    let t0 = Instant::now();
    t.create_with(&name, devices)
        .await
        .with_context(|| format!("creating {name} on {pool}"))?;
    let created = t0.elapsed();
    let ts = Instant::now();
    t.client.start_instance(&name).await?;
    let started = ts.elapsed();
    t.wait_ready(&name, Duration::from_secs(120)).await?;
    let total = t0.elapsed();
    // Where a launch goes: the daemon's create and start operations, then the
    // guest's boot, as the guest's own systemd measured it.
    for (what, took) in [
        ("launch → running", total),
        ("  of which create", created),
        ("  of which start (operation)", started),
        ("  of which start done → running", total - created - started),
    ] {
        r.add(&label(what), &t.name, "s", took.as_secs_f64());
    }
    match t.guest_boot_time(&name).await {
        Some(boot) => r.add(
            &label("  guest's userspace boot (systemd-analyze)"),
            &t.name,
            "s",
            boot,
        ),
        None => eprintln!("{name} on {}: no systemd-analyze figure", t.name),
    }

    let t1 = Instant::now();
    let snaps = format!("/1.0/instances/{name}/snapshots");
    let resp = t.client.post(&snaps, &json!({"name": "s0"})).await?;
    t.client.finish(resp).await?;
    r.add(
        &label("snapshot (running)"),
        &t.name,
        "s",
        t1.elapsed().as_secs_f64(),
    );

    t.client.stop_instance(&name, true, -1).await?;
    let t2 = Instant::now();
    let resp = t
        .client
        .put(&format!("/1.0/instances/{name}"), &json!({"restore": "s0"}))
        .await?;
    t.client.finish(resp).await?;
    r.add(
        &label("restore (stopped)"),
        &t.name,
        "s",
        t2.elapsed().as_secs_f64(),
    );

    let copy = format!("{name}-copy");
    let post: InstancesPost = serde_json::from_value(json!({
        "name": copy,
        "source": {"type": "copy", "source": name, "instance_only": true},
    }))?;
    let t3 = Instant::now();
    t.client.create_instance(&post).await?;
    r.add(
        &label("copy (stopped, instance only)"),
        &t.name,
        "s",
        t3.elapsed().as_secs_f64(),
    );
    t.client.delete_instance(&copy).await?;

    let t4 = Instant::now();
    let resp = t.client.delete(&format!("{snaps}/s0")).await?;
    t.client.finish(resp).await?;
    r.add(
        &label("delete snapshot"),
        &t.name,
        "s",
        t4.elapsed().as_secs_f64(),
    );

    let t5 = Instant::now();
    t.client.delete_instance(&name).await?;
    r.add(
        &label("delete instance"),
        &t.name,
        "s",
        t5.elapsed().as_secs_f64(),
    );
    Ok(())
}
