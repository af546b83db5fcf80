//! `--only-load`: `--load-clients` concurrent API clients for
//! `--load-seconds` against each target (Kante, and LXD side by side when
//! asked), mixing lists, state reads, execs, their own instances'
//! lifecycles and bad requests (`kante_integration::load`). The table
//! shows each kind's median and 99th percentile, the throughput, and the
//! count of wrong answers (a 5xx, a dropped connection, a wrong status):
//! Kante must have none.

use std::time::Duration;

use anyhow::{ensure, Result};
use kante_integration::load::{load, LoadConfig};

use crate::report::Results;
use crate::target::Target;
use crate::PREFIX;

pub struct Plan {
    pub clients: usize,
    pub seconds: u64,
    pub busybox: std::path::PathBuf,
}

pub async fn run(targets: &mut [Target], plan: &Plan, r: &mut Results) -> Result<()> {
    for t in targets.iter_mut() {
        t.import(&plan.busybox).await?;
        let running: Vec<String> = (0..3).map(|i| format!("{PREFIX}busy{i}")).collect();
        for n in &running {
            t.create_bare(n).await?;
            t.client.start_instance(n).await?;
        }
        let cfg = LoadConfig {
            clients: plan.clients,
            rounds: usize::MAX,
            duration: Duration::from_secs(plan.seconds),
            running,
            fingerprint: t.fingerprint.clone(),
            lifecycle_every: 20,
            pool: t.pool.clone(),
            prefix: format!("{PREFIX}load"),
        };
        let rep = load(&t.client, cfg).await;
        for kind in rep.latencies.keys() {
            for (p, label) in [(50.0, "p50"), (99.0, "p99")] {
                if let Some(v) = rep.percentile(kind, p) {
                    let row = format!("load ({} clients): {kind}, {label}", plan.clients);
                    r.add(&row, &t.name, "s", v.as_secs_f64());
                }
            }
        }
        r.add(
            &format!("load ({} clients): requests per second", plan.clients),
            &t.name,
            "n",
            rep.requests() as f64 / rep.elapsed.as_secs_f64(),
        );
        r.add(
            &format!("load ({} clients): wrong answers", plan.clients),
            &t.name,
            "n",
            rep.errors.len() as f64,
        );
        for e in rep.errors.iter().take(10) {
            eprintln!("load on {}: {e}", t.name);
        }
        t.clean(PREFIX).await;
        if t.state_dir().is_some() {
            ensure!(
                rep.errors.is_empty(),
                "{}: {} wrong answers",
                t.name,
                rep.errors.len()
            );
        }
    }
    Ok(())
}
