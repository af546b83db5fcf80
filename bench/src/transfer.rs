//! File transfer through the API (push and pull of a small and a 64 MiB
//! file) and exec round trips, on one running instance per target, the
//! targets interleaved round by round: the paths a guest's files and
//! commands take through the daemon.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kante_client::FilePushOptions;

use crate::report::Results;
use crate::target::Target;
use crate::PREFIX;

/// What to measure and how often.
pub struct Plan {
    pub execs: usize,
    pub small: usize,
    pub large: usize,
}

const SMALL: usize = 4096;
const LARGE: usize = 64 << 20;

pub async fn run(targets: &[Target], plan: &Plan, r: &mut Results) -> Result<()> {
    let name = format!("{PREFIX}xfer");
    for t in targets {
        t.create(&name).await?;
        t.client.start_instance(&name).await?;
        t.wait_ready(&name, Duration::from_secs(120)).await?;
    }
    let small = vec![b'k'; SMALL];
    let large: Vec<u8> = (0..LARGE).map(|i| (i % 251) as u8).collect();
    let opts = FilePushOptions::default();
    let rounds = plan.execs.max(plan.small).max(plan.large);
    for i in 0..rounds {
        for t in targets {
            if i < plan.execs {
                let t0 = Instant::now();
                let o = t.client.exec_capture(&name, &["true"], &[], None).await?;
                anyhow::ensure!(o.code == 0, "exec true failed on {}", t.name);
                r.add(
                    "exec `true` round trip",
                    &t.name,
                    "s",
                    t0.elapsed().as_secs_f64(),
                );
            }
            if i < plan.small {
                let t0 = Instant::now();
                t.client
                    .file_push_bytes(&name, "/root/small", small.clone(), &opts)
                    .await
                    .with_context(|| format!("push on {}", t.name))?;
                r.add("file push 4 KiB", &t.name, "s", t0.elapsed().as_secs_f64());
                let t1 = Instant::now();
                let mut got = Vec::with_capacity(SMALL);
                t.client
                    .file_get_into(&name, "/root/small", &mut got)
                    .await
                    .with_context(|| format!("pull on {}", t.name))?;
                r.add("file pull 4 KiB", &t.name, "s", t1.elapsed().as_secs_f64());
                anyhow::ensure!(got == small, "{}: pulled bytes differ", t.name);
            }
            if i < plan.large {
                let t0 = Instant::now();
                t.client
                    .file_push_bytes(&name, "/root/large", large.clone(), &opts)
                    .await
                    .with_context(|| format!("push on {}", t.name))?;
                r.add("file push 64 MiB", &t.name, "s", t0.elapsed().as_secs_f64());
                let t1 = Instant::now();
                let mut got = Vec::with_capacity(LARGE);
                t.client
                    .file_get_into(&name, "/root/large", &mut got)
                    .await
                    .with_context(|| format!("pull on {}", t.name))?;
                r.add("file pull 64 MiB", &t.name, "s", t1.elapsed().as_secs_f64());
                anyhow::ensure!(got == large, "{}: pulled bytes differ", t.name);
            }
        }
    }
    for t in targets {
        t.clean(&name).await;
    }
    Ok(())
}
