//! A whole site from one file, beside Ansible (issue 19's benchmark): on a
//! 3-host lab (`kante_integration::lab`), seed 000's edge lab from empty
//! to a ready five-node Docker Swarm, then a run that changes nothing:
//! once by `kante apply examples/edge-lab/site.yaml` (hosts mapped to the
//! lab's remotes), once by `bench/ansible/edge-lab.yml` (community.general's
//! `lxd_profile` and `lxd_container` against each host's unix socket, the
//! swarm through the `lxd` connection plugin, as the seed's users would
//! write it), `--site-runs` times each, the hosts emptied between runs
//! (guests, the docker profile and pool deleted, the default profile put
//! back). "Ready" is `docker node ls` on docker1 listing five Ready nodes.
//! Both drive kanted: Debian's LXD 5.0.2 is not set up on the lab's
//! hosts, so Ansible's figure is its own overhead over the same daemon.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kante_integration::lab::Lab;
use kante_integration::TestImage;
use serde_json::Value;

use crate::report::Results;

const ANSIBLE_PLAYBOOK: &str = "/opt/kante-ansible/bin/ansible-playbook";
const RECIPE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/edge-lab/site.yaml"
);
const PLAYBOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ansible/edge-lab.yml");
/// The recipe's guests and the host each is placed on.
const GUESTS: [(&str, u32); 5] = [
    ("docker1", 1),
    ("docker4", 1),
    ("docker2", 2),
    ("docker5", 2),
    ("docker3", 3),
];

pub const FROM_EMPTY: &str = "site: seed 000 from empty to a ready 5-node swarm (3 hosts)";
pub const NO_CHANGE: &str = "site: the same site again (no change)";

pub struct Plan {
    pub runs: usize,
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The recipe with its `hostN: {}` mapped to the lab's remotes.
fn mapped(lab: &Lab) -> Result<String> {
    let mut t = std::fs::read_to_string(RECIPE).context("reading the edge-lab recipe")?;
    for i in 1..=3 {
        let from = format!("  host{i}: {{}}");
        ensure!(t.contains(&from), "the recipe names no host{i}");
        t = t.replace(&from, &format!("  host{i}: {{remote: {}}}", lab.remote(i)));
    }
    Ok(t)
}

/// Seconds until docker1's swarm lists five Ready nodes (bounded).
async fn swarm_ready(lab: &Lab, since: Instant) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = lab
            .client(1)
            .exec_capture(
                "docker1",
                &[
                    "sh",
                    "-c",
                    "docker node ls --format '{{.Hostname}} {{.Status}}'",
                ],
                &[],
                None,
            )
            .await;
        let ready = out
            .map(|o| {
                o.stdout_str()
                    .lines()
                    .filter(|l| l.ends_with(" Ready"))
                    .count()
            })
            .unwrap_or(0);
        if ready == 5 {
            return Ok(since.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("the swarm has {ready} of 5 nodes ready after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Back to the state before a run: the guests, the docker profile and
/// pool deleted on every host, the default profile as it was.
async fn empty(lab: &Lab, defaults: &[Value]) -> Result<()> {
    for (name, i) in GUESTS {
        let c = lab.client(i);
        if c.instance(name).await.is_ok() {
            let _ = c.stop_instance(name, true, -1).await;
            c.delete_instance(name)
                .await
                .with_context(|| format!("deleting {name} on h{i}"))?;
        }
    }
    for i in 1..=3u32 {
        let c = lab.client(i);
        let _ = c.delete("/1.0/profiles/docker").await;
        c.put("/1.0/profiles/default", &defaults[i as usize - 1])
            .await
            .with_context(|| format!("restoring h{i}'s default profile"))?;
        let _ = c.delete("/1.0/storage-pools/docker").await;
    }
    Ok(())
}

/// Ansible's home, inventory and `lxc` remotes (one per host, over its
/// unix socket, for the connection plugin).
struct Ansible {
    home: PathBuf,
    sockets: Value,
}

impl Ansible {
    fn new(lab: &Lab, home: &Path) -> Result<Ansible> {
        ensure!(
            Path::new(ANSIBLE_PLAYBOOK).exists(),
            "{ANSIBLE_PLAYBOOK} is missing: scripts/deps.sh installs Ansible"
        );
        std::fs::create_dir_all(home)?;
        let mut sockets = serde_json::Map::new();
        for i in 1..=3 {
            let socket = lab.state(i).join("unix.socket");
            let o = Command::new("lxc")
                .args(["remote", "add", &format!("h{i}")])
                .arg(format!("unix://{}", socket.display()))
                .env_remove("LXD_DIR")
                .env("LXD_CONF", home.join("lxc"))
                .env("HOME", home)
                .output()
                .context("running lxc (Debian's lxd-client)")?;
            ensure!(o.status.success(), "lxc remote add h{i}: {}", text(&o));
            sockets.insert(
                format!("host{i}"),
                Value::String(socket.display().to_string()),
            );
        }
        let mut inventory = String::from("all:\n  hosts:\n    docker1: {ansible_lxd_remote: h1}\n  children:\n    workers:\n      hosts:\n");
        for (name, i) in GUESTS.iter().skip(1) {
            inventory.push_str(&format!("        {name}: {{ansible_lxd_remote: h{i}}}\n"));
        }
        std::fs::write(home.join("inventory.yml"), inventory)?;
        Ok(Ansible {
            home: home.to_path_buf(),
            sockets: Value::Object(sockets),
        })
    }

    /// Runs the playbook; the number of changed tasks in its recap.
    fn play(&self) -> Result<u32> {
        let home = &self.home;
        let o = Command::new(ANSIBLE_PLAYBOOK)
            .arg("-i")
            .arg(home.join("inventory.yml"))
            .arg("-e")
            .arg(serde_json::json!({ "sockets": self.sockets }).to_string())
            .arg(PLAYBOOK)
            .current_dir(home)
            .env_remove("LXD_DIR")
            .env("HOME", home)
            .env("LXD_CONF", home.join("lxc"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_DEPRECATION_WARNINGS", "0")
            .output()
            .context("running ansible-playbook")?;
        let out = String::from_utf8_lossy(&o.stdout);
        ensure!(o.status.success(), "ansible-playbook failed:\n{}", text(&o));
        let recap = out.split("PLAY RECAP").nth(1).context("no PLAY RECAP")?;
        Ok(recap
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("changed="))
            .filter_map(|n| n.parse::<u32>().ok())
            .sum())
    }
}

pub async fn run(plan: &Plan, r: &mut Results) -> Result<()> {
    let mut lab = Lab::up(3);
    let scratch = std::env::temp_dir().join(format!("kante-bench-site-{}", std::process::id()));
    let outcome = runs(plan, &lab, &scratch, r).await;
    let down = lab.down();
    let _ = std::fs::remove_dir_all(&scratch);
    outcome?;
    ensure!(down.status.success(), "lab down: {}", text(&down));
    Ok(())
}

async fn runs(plan: &Plan, lab: &Lab, scratch: &Path, r: &mut Results) -> Result<()> {
    let mut defaults = Vec::new();
    for i in 1..=3 {
        let fp = lab.import(i, TestImage::DebianDocker).await;
        lab.client(i)
            .create_image_alias("debian-docker/12", &fp, "")
            .await?;
        let p: Value = lab.client(i).get_json("/1.0/profiles/default").await?;
        defaults.push(serde_json::json!({
            "config": p["config"], "description": p["description"], "devices": p["devices"]
        }));
    }
    std::fs::create_dir_all(scratch)?;
    let file = scratch.join("site.yaml");
    std::fs::write(&file, mapped(lab)?)?;
    let f = file.to_string_lossy().to_string();
    let ansible = Ansible::new(lab, &scratch.join("ansible"))?;
    for run in 0..plan.runs {
        let t0 = Instant::now();
        let o = lab.kante(&["apply", &f]);
        ensure!(o.status.success(), "kante apply: {}", text(&o));
        let took = swarm_ready(lab, t0).await?;
        r.add(FROM_EMPTY, "kante apply", "s", took);
        let t0 = Instant::now();
        let o = lab.kante(&["apply", &f]);
        let took = t0.elapsed().as_secs_f64();
        ensure!(
            o.status.success() && text(&o).contains("Nothing to change"),
            "kante apply again changed something: {}",
            text(&o)
        );
        r.add(NO_CHANGE, "kante apply", "s", took);
        empty(lab, &defaults).await?;

        let t0 = Instant::now();
        ansible.play()?;
        let took = swarm_ready(lab, t0).await?;
        r.add(FROM_EMPTY, "ansible", "s", took);
        let t0 = Instant::now();
        let changed = ansible.play()?;
        let took = t0.elapsed().as_secs_f64();
        ensure!(changed == 0, "Ansible's second run changed {changed} tasks");
        r.add(NO_CHANGE, "ansible", "s", took);
        empty(lab, &defaults).await?;
        eprintln!("site: run {} of {} done", run + 1, plan.runs);
    }
    Ok(())
}
