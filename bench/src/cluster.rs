//! Cluster figures on a 3-host lab (`kante_integration::lab`) made one
//! cluster by `kante cluster enable`/`add`/`join` (one supervised etcd
//! voter per host), with `--cluster-instances` stopped busybox instances
//! on each member: `kante cluster list` and `kante list` (every member's
//! instances) timed from each member as a user runs them; a placed launch
//! (`--target` a member, and by the scheduler) from h1; the time from a
//! member's death (its kanted killed) until h1 lists its instances as
//! unreachable and until `cluster list` shows it OFFLINE; and the time
//! from etcd's quorum coming back (2 of 3 etcd members stopped with
//! SIGSTOP, then SIGCONT) until every member writes again and none says
//! its view is stale. Kante only: Debian's LXD 5.0.2 is not clustered
//! on this lab yet.

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kante_integration::cluster::{etcd_pids, form, restart_kanted};
use kante_integration::lab::Lab;

use crate::report::Results;

pub struct Plan {
    /// Stopped instances per member.
    pub per_member: usize,
    /// Timed repetitions of each list and launch.
    pub runs: usize,
    pub busybox: std::path::PathBuf,
}

/// `kante ARGS` on host i must succeed; its stdout and how long it took.
fn timed(lab: &Lab, i: u32, args: &[&str]) -> Result<(String, f64)> {
    let t0 = Instant::now();
    let o: Output = lab.host_kante(i, args);
    let took = t0.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!(
            "h{i}: kante {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok((String::from_utf8_lossy(&o.stdout).into_owned(), took))
}

/// Polls `done` every 50 ms for at most `limit`; seconds until it held.
fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<f64> {
    let t0 = Instant::now();
    while !done() {
        if t0.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// `kante cluster list -f csv` rows of host i: (name, state, message).
fn members(lab: &Lab, i: u32) -> Vec<(String, String, String)> {
    let o = lab.host_kante(i, &["cluster", "list", "-f", "csv"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let at = |k: usize| c.get(k).copied().unwrap_or_default().to_string();
            (at(0), at(4), at(5))
        })
        .collect()
}

fn signal(pids: &[i32], sig: i32) {
    for p in pids {
        // SAFETY: a signal to the lab's own etcd processes.
        unsafe { libc::kill(*p, sig) };
    }
}

pub async fn run(plan: &Plan, r: &mut Results) -> Result<()> {
    let mut lab = Lab::up(3);
    let mut fp = String::new();
    for i in 1..=3 {
        fp = lab
            .client(i)
            .upload_image(&plan.busybox, &Default::default(), |_, _| {})
            .await
            .with_context(|| format!("importing busybox into h{i}"))?;
        timed(&lab, i, &["image", "alias", "create", "bb", &fp])?;
    }
    form(&lab);
    let t0 = Instant::now();
    for i in 1..=3u32 {
        let c = lab.client(i);
        for k in 0..plan.per_member {
            let post = kante_integration::instance_post(
                &fp,
                &format!("cl{i}-{k}"),
                &[],
                Default::default(),
            );
            c.create_instance_at(&post, Some(&format!("h{i}")))
                .await
                .with_context(|| format!("creating cl{i}-{k} on h{i}"))?;
        }
    }
    eprintln!(
        "cluster: {} instances made in {:.1} s",
        3 * plan.per_member,
        t0.elapsed().as_secs_f64()
    );
    let total = 3 * plan.per_member;
    let n = plan.per_member;
    for _ in 0..plan.runs {
        for i in 1..=3 {
            let (_, t) = timed(&lab, i, &["cluster", "list"])?;
            r.add(
                "kante cluster list (3 members), from any member",
                "kante",
                "s",
                t,
            );
            let (out, t) = timed(&lab, i, &["list", "-f", "csv", "-c", "nsL"])?;
            let rows = out.lines().filter(|l| l.starts_with("cl")).count();
            if rows != total {
                bail!("h{i} listed {rows} of {total} instances");
            }
            r.add(
                &format!("kante list, 3 members × {n} instances, from any member"),
                "kante",
                "s",
                t,
            );
        }
    }
    for k in 0..plan.runs {
        let name = format!("pl-{k}");
        let target = format!("h{}", k % 3 + 1);
        let (_, t) = timed(&lab, 1, &["launch", "bb", &name, "--target", &target])?;
        r.add("placed launch (--target a member) from h1", "kante", "s", t);
        timed(&lab, 1, &["delete", &name, "--force"])?;
        let (_, t) = timed(&lab, 1, &["launch", "bb", &name])?;
        r.add("placed launch (scheduler) from h1", "kante", "s", t);
        timed(&lab, 1, &["delete", &name, "--force"])?;
    }

    // A member dies: how soon the others show it.
    let pid = lab.pid(3);
    // SAFETY: a kill of the lab's own daemon.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t0 = Instant::now();
    let h1 = lab.client(1);
    loop {
        let all: serde_json::Value = h1.get_json("/1.0/instances?recursion=1").await?;
        let errors = all
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|i| i["location"] == "h3" && i["status"] == "Error")
                    .count()
            })
            .unwrap_or(0);
        if errors == n {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("h3's instances not shown unreachable within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.add(
        "member killed → its instances listed unreachable (h1)",
        "kante",
        "s",
        t0.elapsed().as_secs_f64(),
    );
    let left = Duration::from_secs(60).saturating_sub(t0.elapsed());
    until(left, "h3 OFFLINE on h1", || {
        members(&lab, 1)
            .iter()
            .any(|m| m.0 == "h3" && m.1 == "OFFLINE")
    })?;
    r.add(
        "member killed → OFFLINE in cluster list (h1)",
        "kante",
        "s",
        t0.elapsed().as_secs_f64(),
    );
    let mut h3 = restart_kanted(&lab, 3);
    // The rest, then down and h3's kanted reaped whatever it returned.
    let rest = after_restart(&lab, plan, r);
    let o = lab.down();
    let _ = h3.wait();
    rest?;
    if !o.status.success() {
        bail!("lab down: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

/// h3 back ONLINE, then etcd's quorum lost and back, timed.
fn after_restart(lab: &Lab, plan: &Plan, r: &mut Results) -> Result<()> {
    until(Duration::from_secs(60), "h3 ONLINE again", || {
        (1..=3).all(|i| members(lab, i).iter().all(|m| m.1 == "ONLINE"))
    })?;

    // Quorum lost, then back: how soon every member writes and sees now.
    let frozen: Vec<i32> = (2..=3).flat_map(|i| etcd_pids(lab, i)).collect();
    for round in 0..plan.runs.min(3) {
        signal(&frozen, libc::SIGSTOP);
        until(
            Duration::from_secs(30),
            "a stale view after quorum loss",
            || members(lab, 1).iter().any(|m| m.2.contains("as last seen")),
        )?;
        signal(&frozen, libc::SIGCONT);
        let mut wrote = [false; 3];
        let t = until(Duration::from_secs(120), "reconciliation", || {
            for i in 1..=3u32 {
                let w = &mut wrote[i as usize - 1];
                if !*w {
                    let key = format!("user.bench.r{round}.h{i}");
                    *w = lab
                        .host_kante(i, &["profile", "set", "default", &key, "yes"])
                        .status
                        .success();
                }
            }
            wrote.iter().all(|w| *w)
                && (1..=3).all(|i| {
                    members(lab, i)
                        .iter()
                        .all(|m| m.1 == "ONLINE" && !m.2.contains("as last seen"))
                })
        })?;
        r.add(
            "etcd quorum back → every member writes, no stale view",
            "kante",
            "s",
            t,
        );
    }

    Ok(())
}
