//! The soaks. `--only-kill-soak` runs `kante_integration::soak` (work cut
//! by kill -9 and SIGTERM, checked and retried after each restart) for
//! many rounds on the kanted next to this binary and reports the restarts'
//! recovery times and how much work was cut.
//!
//! Leak accounting over many cycles (`--only-soak`): each Kante started by
//! the bench runs `--soak-cycles` create/start/exec/stop/delete cycles of
//! the busybox image with a NIC on a managed network (a DHCP lease every
//! tenth cycle), and the table shows each cycle's time and how far each
//! figure of `kante_integration::Usage` (the daemon's fds, threads and RSS;
//! the host's mounts, links, cgroups, processes, nftables objects and
//! dnsmasq entries) moved from its baseline after a warm-up. The run fails
//! when a figure grew past the allowance the suite's `tests/cycles.rs`
//! states. A daemon the bench did not start (LXD) is skipped: its host
//! figures are not comparable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use kante_integration::net::UDHCPC_SCRIPT;
use kante_integration::{settled_usage, Usage, CYCLE_ALLOWANCE};
use serde_json::json;

use crate::report::Results;
use crate::target::Target;
use crate::PREFIX;

const NET: &str = "bench-soak0";
const WARM_UP: usize = 10;

pub struct Plan {
    pub cycles: usize,
    pub busybox: PathBuf,
}

/// The kill soak on a Kante of its own (a test daemon from this binary's
/// directory), with a seed from the clock, printed first.
pub async fn kill(rounds: usize) -> Result<Results> {
    if std::env::var_os("KANTE_TEST_BIN_DIR").is_none() {
        let exe = std::env::current_exe()?;
        // The binaries next to this one (tests find theirs the same way).
        std::env::set_var("KANTE_TEST_BIN_DIR", exe.parent().context("binary dir")?);
    }
    let mut d = kante_integration::Daemon::start().await;
    let fp = d.import(kante_integration::TestImage::Busybox).await;
    let work = std::env::temp_dir().join(format!("kante-bench-soak-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let cfg = kante_integration::soak::SoakConfig {
        rounds,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
        max_delay_ms: 1500,
        sigterm_every: 3,
    };
    let rep = kante_integration::soak::kill_soak(&mut d, &fp, &work, &cfg).await;
    d.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
    let mut r = Results::default();
    for t in &rep.recovery {
        r.add(
            "kill soak: restart to first answer",
            "kante",
            "s",
            t.as_secs_f64(),
        );
    }
    r.add(
        "kill soak: rounds cut by kill -9",
        "kante",
        "n",
        rep.kills as f64,
    );
    r.add(
        "kill soak: rounds cut by SIGTERM",
        "kante",
        "n",
        rep.terms as f64,
    );
    r.add(
        "kill soak: pieces of work cut",
        "kante",
        "n",
        rep.interrupted as f64,
    );
    r.add(
        "kill soak: pieces redone after the restart",
        "kante",
        "n",
        rep.retried as f64,
    );
    Ok(r)
}

pub async fn run(targets: &mut [Target], plan: &Plan, r: &mut Results) -> Result<()> {
    for t in targets.iter_mut() {
        let Some(dir) = t.state_dir().map(Path::to_path_buf) else {
            eprintln!("soak: {} was not started by the bench: skipped", t.name);
            continue;
        };
        soak_one(t, &dir, plan, r)
            .await
            .with_context(|| format!("soak on {}", t.name))?;
    }
    Ok(())
}

async fn soak_one(t: &mut Target, dir: &Path, plan: &Plan, r: &mut Results) -> Result<()> {
    t.import(&plan.busybox).await?;
    t.client
        .post(
            "/1.0/networks",
            &json!({"name": NET, "config": {
                "ipv4.address": "auto", "ipv4.nat": "true", "ipv6.address": "none"}}),
        )
        .await
        .context("making the soak network")?;
    let pid = t.daemon_pid().await;
    let prefix = kante_integration::cgroup_prefix_of(dir);
    for i in 0..WARM_UP {
        cycle(t, i).await?;
    }
    let base = settled(pid, dir, &prefix, &Usage::default()).await.0;
    eprintln!("soak on {}: baseline {base:?}", t.name);
    for i in 0..plan.cycles {
        let t0 = Instant::now();
        cycle(t, i).await?;
        r.add(
            "soak: one cycle (create, start, exec, stop, delete)",
            &t.name,
            "s",
            t0.elapsed().as_secs_f64(),
        );
        if (i + 1) % 100 == 0 {
            eprintln!("soak on {}: {} cycles", t.name, i + 1);
        }
    }
    let (after, grown) = settled(pid, dir, &prefix, &base).await;
    eprintln!("soak on {}: after {after:?}", t.name);
    let was: HashMap<_, _> = base.figures().into_iter().collect();
    for (name, now) in after.figures() {
        r.add(
            &format!("soak: {name}, change over {} cycles", plan.cycles),
            &t.name,
            "n",
            now as f64 - was[name] as f64,
        );
    }
    t.client
        .delete(&format!("/1.0/networks/{NET}"))
        .await
        .context("deleting the soak network")?;
    ensure!(
        grown.is_empty(),
        "{} grew over {} cycles: {grown:?}",
        t.name,
        plan.cycles
    );
    Ok(())
}

async fn cycle(t: &Target, i: usize) -> Result<()> {
    let name = format!("{PREFIX}soak{}", i % 3);
    let nic = [("type", "nic"), ("network", NET), ("name", "eth0")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    t.create_bare_with(&name, [("eth0".to_string(), nic)].into())
        .await?;
    t.client.start_instance(&name).await?;
    let out = t.client.exec_capture(&name, &["true"], &[], None).await?;
    ensure!(out.code == 0, "exec in {name}: {}", out.code);
    if i.is_multiple_of(10) {
        let dhcp = format!("{UDHCPC_SCRIPT} && udhcpc -i eth0 -n -q -t 10 -T 1 -s /tmp/dhcp.sh");
        let out = t
            .client
            .exec_capture(&name, &["sh", "-c", &dhcp], &[], None)
            .await?;
        ensure!(out.code == 0, "udhcpc in {name}: {}", out.stderr_str());
    }
    t.client
        .stop_instance(&name, i.is_multiple_of(2), 10)
        .await?;
    t.client.delete_instance(&name).await?;
    Ok(())
}

async fn settled(pid: i32, dir: &Path, prefix: &str, base: &Usage) -> (Usage, Vec<String>) {
    settled_usage(pid, dir, prefix, base, CYCLE_ALLOWANCE).await
}
