//! Moves between two hosts of a lab (`kante lab up --hosts 2`, see
//! `kante_integration::lab`): the Debian image's instance, stopped, moved
//! host 1 → host 2 and back by `kante move` as a user runs it (the target
//! pulls over the lab's uplink), on a `dir` pool and on a loop-backed
//! `btrfs` pool on each host. Each move is timed from the command's start
//! to its exit; the rate is the instance's root file system size (`du` of
//! its volume before the first move) over that time. Then a full `copy`
//! host 1 → host 2, and `copy --refresh` after a 4 KiB change each.
//!
//! With `--lxd`, the same on two private LXD 5.0.2 daemons, one in each lab
//! host's network namespace (see `moves_lxd.rs`), driven by Debian's `lxc`
//! as a user runs it, one LXD step after each Kante step.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kante_client::Client;
use kante_integration::lab::Lab;
use serde_json::json;

use crate::moves_lxd::LxdPair;
use crate::report::Results;
use crate::target::Target;

pub struct Plan {
    pub rounds: usize,
    pub image: PathBuf,
    /// Also LXD, side by side.
    pub lxd: bool,
}

/// One daemon family of the comparison: its CLI, its two hosts.
pub struct Side {
    /// "kante" or "lxd" in the results.
    pub name: &'static str,
    /// The CLI (`kante`, or `lxc`).
    pub program: PathBuf,
    /// The CLI's configuration (`KANTE_CONF` or `LXD_CONF`).
    pub env: (&'static str, PathBuf),
    /// The CLI's remote of host 1 and host 2.
    pub remotes: [String; 2],
    /// Each host's daemon directory (volumes are under
    /// `storage-pools/<pool>/containers/<name>` in both).
    pub states: [PathBuf; 2],
    /// Each host's unix socket.
    pub sockets: [PathBuf; 2],
    /// Substring of its per-container helper processes.
    pub monitor_needle: &'static str,
}

impl Side {
    /// The lab's kanteds, through the lab's client configuration.
    fn kante(lab: &Lab) -> Side {
        Side {
            name: "kante",
            program: kante_integration::bin("kante"),
            env: ("KANTE_CONF", lab.conf.clone()),
            remotes: [lab.remote(1), lab.remote(2)],
            states: [lab.state(1), lab.state(2)],
            sockets: [
                lab.state(1).join("unix.socket"),
                lab.state(2).join("unix.socket"),
            ],
            monitor_needle: "kanted __monitor",
        }
    }

    /// Host i's (1 or 2) daemon through its unix socket.
    pub fn client(&self, i: usize) -> Client {
        Client::with_socket(&self.sockets[i - 1])
    }

    /// `host i:name` for the CLI (`name` empty: the remote alone).
    fn at(&self, i: usize, name: &str) -> String {
        format!("{}:{name}", self.remotes[i - 1])
    }

    /// Runs the CLI; an error with its output if it fails.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let o = Command::new(&self.program)
            .args(args)
            .env(self.env.0, &self.env.1)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.program.display()))?;
        if !o.status.success() {
            bail!(
                "{} {args:?}: {}{}",
                self.program.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(o)
    }

    /// The CLI's run time in seconds (start to exit).
    fn timed(&self, args: &[&str]) -> Result<f64> {
        let t0 = Instant::now();
        self.cli(args)?;
        let took = t0.elapsed().as_secs_f64();
        eprintln!("moves: {} {} {took:.2} s", self.name, args.join(" "));
        Ok(took)
    }

    /// Host i's volume of instance `name` on `pool`.
    fn volume(&self, i: usize, pool: &str, name: &str) -> PathBuf {
        self.states[i - 1]
            .join("storage-pools")
            .join(pool)
            .join("containers")
            .join(name)
    }

    /// Host 1's daemon as a bench target making root disks on `pool`.
    fn target(&self, pool: &str, fingerprint: &str) -> Target {
        let mut t = Target::attached(self.name, self.client(1), pool, self.monitor_needle);
        t.fingerprint = fingerprint.to_string();
        t
    }
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

pub async fn run(plan: &Plan, r: &mut Results) -> Result<()> {
    let lab = Lab::up(2);
    // Declared after the lab: dropped (stopped, cleaned) before it goes down.
    let lxd = if plan.lxd {
        Some(LxdPair::start(&lab).context("two LXDs in the lab's hosts")?)
    } else {
        None
    };
    for i in 1..=2 {
        // A btrfs pool on a sparse loop file on each host.
        lab.client(i)
            .post(
                "/1.0/storage-pools",
                &json!({"name": "bt", "driver": "btrfs", "config": {"size": "6GiB"}}),
            )
            .await
            .with_context(|| format!("btrfs pool on h{i}"))?;
    }
    let mut sides = vec![Side::kante(&lab)];
    sides.extend(lxd.as_ref().map(LxdPair::side));
    let mut fingerprint = String::new();
    for side in &sides {
        for i in 1..=2 {
            let mut t = Target::attached(side.name, side.client(i), "default", "");
            t.import(&plan.image)
                .await
                .with_context(|| format!("importing into {} host {i}", side.name))?;
            fingerprint = t.fingerprint;
        }
    }
    let result = pools(plan, &sides, &fingerprint, r).await;
    for side in &sides {
        for i in 1..=2 {
            let c = side.client(i);
            for n in c.instance_names().await.unwrap_or_default() {
                if n.starts_with("mv-") {
                    let _ = c.delete_instance(&n).await;
                }
            }
        }
    }
    for i in 1..=2 {
        let _ = lab.client(i).delete("/1.0/storage-pools/bt").await;
    }
    result
}

/// Moves, a full copy and refreshes, on each pool type.
async fn pools(plan: &Plan, sides: &[Side], fp: &str, r: &mut Results) -> Result<()> {
    for (pool, driver) in [("default", "dir"), ("bt", "btrfs")] {
        let name = format!("mv-{pool}");
        let mut sizes = Vec::new();
        for side in sides {
            side.target(pool, fp)
                .create(&name)
                .await
                .with_context(|| format!("creating {name} on {}", side.name))?;
            let size = du(&side.volume(1, pool, &name))? as f64;
            eprintln!(
                "moves: {name} ({driver}) on {} is {:.0} MB",
                side.name,
                size / 1e6
            );
            sizes.push(size);
        }
        let row = format!("move {driver}→{driver} (Debian rootfs)");
        for k in 0..plan.rounds * 2 {
            let (from, to) = if k % 2 == 0 { (1, 2) } else { (2, 1) };
            for (side, size) in sides.iter().zip(&sizes) {
                let took = side.timed(&["move", &side.at(from, &name), &side.at(to, "")])?;
                time_and_rate(r, &row, side.name, *size, took);
            }
        }
        if driver == "btrfs" {
            let took = floor(&sides[0], &name)?;
            r.add(
                "btrfs send piped into btrfs receive, h1 → h2 pool, no daemon (the floor), MB/s",
                sides[0].name,
                "MB/s",
                sizes[0] / 1e6 / took,
            );
        }
        // An even number of moves: it is back on host 1. A snapshot both
        // copies share, as a standby kept by --refresh has: a refresh then
        // sends the difference from it (btrfs) or rsyncs (dir).
        for (side, size) in sides.iter().zip(&sizes) {
            side.cli(&["snapshot", &side.at(1, &name), "base"])?;
            let took = side.timed(&["copy", &side.at(1, &name), &side.at(2, &name)])?;
            let row = format!("copy {driver}→{driver} (Debian rootfs, full)");
            time_and_rate(r, &row, side.name, *size, took);
        }
        for k in 0..plan.rounds * 2 {
            for side in sides {
                let took = refresh(side, &name, k).await?;
                r.add(
                    &format!("copy --refresh {driver}→{driver} after a 4 KiB change, time"),
                    side.name,
                    "s",
                    took,
                );
            }
        }
        for side in sides {
            for i in 1..=2 {
                side.cli(&["delete", &side.at(i, &name)])?;
            }
        }
    }
    Ok(())
}

/// A transfer's two rows: its time, and `size` bytes over that time.
fn time_and_rate(r: &mut Results, row: &str, side: &str, size: f64, took: f64) {
    r.add(&format!("{row}, time"), side, "s", took);
    r.add(&format!("{row}, MB/s"), side, "MB/s", size / 1e6 / took);
}

/// The same tree without any daemon: `btrfs send` of a read-only snapshot
/// of host 1's volume piped into `btrfs receive` in host 2's pool, the
/// bytes a move carries at the speed of the tools and the disk alone.
/// Returns the seconds; both copies are deleted after.
fn floor(side: &Side, name: &str) -> Result<f64> {
    let src = side.volume(1, "bt", name);
    let ro = src.with_file_name(".bench-floor");
    let dst_dir = side.states[1].join("storage-pools/bt/bench-floor");
    let sh = |cmd: String| -> Result<()> {
        let st = Command::new("sh").arg("-c").arg(&cmd).status()?;
        anyhow::ensure!(st.success(), "`{cmd}` failed");
        Ok(())
    };
    sh(format!(
        "btrfs -q subvolume snapshot -r '{}' '{}'",
        src.display(),
        ro.display()
    ))?;
    std::fs::create_dir_all(&dst_dir)?;
    let t0 = Instant::now();
    let sent = sh(format!(
        "btrfs send -q '{}' | btrfs receive -q '{}'",
        ro.display(),
        dst_dir.display()
    ));
    let took = t0.elapsed().as_secs_f64();
    let _ = sh(format!(
        "btrfs -q subvolume delete '{}'",
        dst_dir.join(".bench-floor").display()
    ));
    let _ = std::fs::remove_dir(&dst_dir);
    let _ = sh(format!("btrfs -q subvolume delete '{}'", ro.display()));
    sent?;
    eprintln!("moves: btrfs send | receive without a daemon {took:.2} s");
    Ok(took)
}

/// Changes one 4 KiB file in host 1's instance, times `copy --refresh` to
/// host 2, and checks that host 2's copy has the change.
async fn refresh(side: &Side, name: &str, k: usize) -> Result<f64> {
    let path = format!("/root/bench-change-{k}");
    let data: Vec<u8> = (0..4096u32)
        .map(|b| (b as usize * 31 + k * 7) as u8)
        .collect();
    side.client(1)
        .file_push_bytes(name, &path, data.clone(), &Default::default())
        .await
        .with_context(|| format!("pushing {path} into {}", side.name))?;
    let took = side.timed(&["copy", &side.at(1, name), &side.at(2, name), "--refresh"])?;
    let got = side
        .client(2)
        .file_get(name, &path)
        .await
        .with_context(|| format!("{path} on {}'s host 2 after --refresh", side.name))?;
    match got.content {
        kante_client::FileContent::File(bytes) if bytes == data => Ok(took),
        _ => bail!(
            "{}: {path} on host 2 is not the pushed change after --refresh",
            side.name
        ),
    }
}
