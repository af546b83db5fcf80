//! Moves between two hosts of a lab (`kante lab up --hosts 2`, see
//! `kante_integration::lab`): the Debian image's instance, stopped, moved
//! host 1 → host 2 and back by `kante move` as a user runs it (the target
//! pulls over the lab's uplink), on a `dir` pool and on a loop-backed
//! `btrfs` pool on each host. Each move is timed from the command's start
//! to its exit; the rate is the instance's root file system size (`du` of
//! its volume before the first move) over that time.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kante_integration::lab::Lab;
use serde_json::json;

use crate::report::Results;

pub struct Plan {
    pub rounds: usize,
    pub image: std::path::PathBuf,
}

/// Bytes under `path` (`du -sb`).
fn du(path: &Path) -> Result<u64> {
    let o = Command::new("du").arg("-sb").arg(path).output()?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du of {}", path.display()))
}

fn kante(lab: &Lab, args: &[&str]) -> Result<()> {
    let o = lab.kante(args);
    if !o.status.success() {
        bail!(
            "kante {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

pub async fn run(plan: &Plan, r: &mut Results) -> Result<()> {
    let lab = Lab::up(2);
    let mut fp = String::new();
    for i in 1..=2 {
        fp = lab
            .client(i)
            .upload_image(&plan.image, &Default::default(), |_, _| {})
            .await
            .with_context(|| format!("importing into h{i}"))?;
        // A btrfs pool on a sparse loop file on each host.
        lab.client(i)
            .post(
                "/1.0/storage-pools",
                &json!({"name": "bt", "driver": "btrfs", "config": {"size": "6GiB"}}),
            )
            .await
            .with_context(|| format!("btrfs pool on h{i}"))?;
    }
    for pool in ["default", "bt"] {
        let name = format!("mv-{pool}");
        let mut post = kante_integration::instance_post(&fp, &name, &[], Default::default());
        post.put.devices.insert(
            "root".into(),
            [("type", "disk"), ("path", "/"), ("pool", pool)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        lab.client(1).create_instance(&post).await?;
        let driver = if pool == "bt" { "btrfs" } else { "dir" };
        let vol = lab
            .state(1)
            .join("storage-pools")
            .join(pool)
            .join("containers")
            .join(&name);
        let size = du(&vol)? as f64;
        eprintln!("moves: {name} ({driver}) is {:.0} MB", size / 1e6);
        for k in 0..plan.rounds * 2 {
            let (from, to) = if k % 2 == 0 { (1, 2) } else { (2, 1) };
            let t0 = Instant::now();
            kante(
                &lab,
                &[
                    "move",
                    &format!("{}:{name}", lab.remote(from)),
                    &format!("{}:", lab.remote(to)),
                ],
            )?;
            let took = t0.elapsed().as_secs_f64();
            r.add(
                &format!("move {driver}→{driver} (Debian rootfs), time"),
                "kante",
                "s",
                took,
            );
            r.add(
                &format!("move {driver}→{driver} (Debian rootfs), MB/s"),
                "kante",
                "MB/s",
                size / 1e6 / took,
            );
        }
        // An even number of moves: it is back on host 1.
        lab.client(1).delete_instance(&name).await?;
    }
    for i in 1..=2 {
        let _ = lab.client(i).delete("/1.0/storage-pools/bt").await;
    }
    Ok(())
}
