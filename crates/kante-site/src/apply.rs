//! Converging: each host's plan is applied in two parts, hosts in
//! parallel by the caller: first every host's preseed part
//! ([`apply_preseed`], all or nothing), then, once those are done, every
//! host's instances ([`apply_instances`]: create and start (on the host's
//! cluster member, if it stands for one), move from another member,
//! change keys live, start, prune). The wait between them matters on a
//! cluster, whose one preseed part (profiles, networks) a single member
//! host applies while the others create instances that use it. Then
//! the site's post-boot steps by [`run_steps`], in file order. A step runs
//! once per instance: done, it is marked `user.kante.step.<name>=done` on
//! the instance, and a captured value is kept as
//! `user.kante.capture.<VAR>` there, so a re-run skips it and still knows
//! the value.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kante_client::kante_api::instance::{InstancePut, InstanceSource, InstancesPost};
use kante_client::Client;
use serde_json::json;

use crate::file::{Ready, Site, Step};
use crate::plan::{Change, HostPlan, HostState, SITE_KEY};
use crate::template::{render, variables};

/// Applies one host's preseed part (undone on failure); what was done.
pub async fn apply_preseed(c: &Client, plan: &HostPlan, state: &HostState) -> Result<Vec<String>> {
    crate::preseed::apply_steps(c, &state.preseed, &plan.preseed).await
}

/// Applies one host's instance changes; returns what was done, a line
/// each. `sources` gives each created instance's image source (the
/// caller knows the remotes an image may come from).
pub async fn apply_instances(
    c: &Client,
    site: &Site,
    plan: &HostPlan,
    sources: &BTreeMap<String, InstanceSource>,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for change in &plan.changes {
        match change {
            Change::Create(i) => {
                let mut config = i.config.clone();
                config.insert(SITE_KEY.into(), site.name.clone());
                let source = sources
                    .get(&i.name)
                    .cloned()
                    .with_context(|| format!("no image source for {}", i.name))?;
                let post = InstancesPost {
                    name: i.name.clone(),
                    kind: "container".into(),
                    source,
                    put: InstancePut {
                        config,
                        devices: i.devices.clone(),
                        profiles: i.profiles.clone(),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let member = site.members.get(&plan.host).map(String::as_str);
                c.create_instance_at(&post, member)
                    .await
                    .with_context(|| format!("creating instance {}", i.name))?;
                if i.start {
                    c.start_instance(&i.name)
                        .await
                        .with_context(|| format!("starting instance {}", i.name))?;
                }
                done.push(format!("instance {} created", i.name));
            }
            Change::Update {
                name,
                config,
                devices,
                profiles,
                ..
            } => {
                let mut patch = json!({"config": config, "devices": devices});
                if let Some(p) = profiles {
                    patch["profiles"] = json!(p);
                }
                c.patch_instance(name, &patch)
                    .await
                    .with_context(|| format!("changing instance {name}"))?;
                done.push(format!("instance {name} changed"));
            }
            Change::Move { name, from, to } => {
                move_to_member(c, name, to)
                    .await
                    .with_context(|| format!("moving instance {name} from {from} to {to}"))?;
                done.push(format!("instance {name} moved from {from} to {to}"));
            }
            Change::Start(name) => {
                c.start_instance(name)
                    .await
                    .with_context(|| format!("starting instance {name}"))?;
                done.push(format!("instance {name} started"));
            }
            Change::Delete(name) => {
                let _ = c.stop_instance(name, true, -1).await;
                c.delete_instance(name)
                    .await
                    .with_context(|| format!("deleting instance {name}"))?;
                done.push(format!("instance {name} deleted"));
            }
        }
    }
    Ok(done)
}

/// Moves `name` to cluster member `to`: stopped first if it runs (cleanly,
/// forced after 30 s), started again there.
async fn move_to_member(c: &Client, name: &str, to: &str) -> Result<()> {
    let running = c.instance(name).await?.status == "Running";
    if running && c.stop_instance(name, false, 30).await.is_err() {
        c.stop_instance(name, true, -1).await?;
    }
    c.move_instance_to_member(name, to).await?;
    if running {
        c.start_instance(name).await?;
    }
    Ok(())
}

fn step_key(step: &str) -> String {
    format!("user.kante.step.{step}")
}

fn capture_key(var: &str) -> String {
    format!("user.kante.capture.{var}")
}

/// Runs the site's steps in order on `clients` (host name → client);
/// returns what ran, a line each, and the error that stopped them (the
/// steps after a failed one depend on it, so they wait for a re-run).
/// Only those on instances of the hosts the run plans ([`Site::targeted`],
/// a `--target` run) run.
pub async fn run_steps(
    clients: &BTreeMap<String, Client>,
    site: &Site,
) -> (Vec<String>, Result<()>) {
    let mut done = Vec::new();
    let result = steps_into(clients, site, &mut done).await;
    (done, result)
}

async fn steps_into(
    clients: &BTreeMap<String, Client>,
    site: &Site,
    done: &mut Vec<String>,
) -> Result<()> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for step in &site.steps {
        for target in &step.on {
            let host = &site
                .instances
                .iter()
                .find(|i| &i.name == target)
                .context("a step's instance vanished")?
                .host;
            let c = clients
                .get(host)
                .with_context(|| format!("host {host} is not reachable"))?;
            let have = c
                .instance(target)
                .await
                .with_context(|| format!("step {}: instance {target}", step.name))?;
            if have.config.get(&step_key(&step.name)).map(String::as_str) == Some("done") {
                if let Some(var) = &step.capture {
                    let kept = have
                        .config
                        .get(&capture_key(var))
                        .cloned()
                        .unwrap_or_default();
                    vars.insert(var.clone(), kept);
                }
                continue;
            }
            if !site.targeted(host) {
                continue;
            }
            let value = run_step(clients, site, c, step, target, &vars).await?;
            let mut mark = json!({ step_key(&step.name): "done" });
            if let Some(var) = &step.capture {
                mark[capture_key(var)] = json!(value);
                vars.insert(var.clone(), value);
            }
            c.patch_instance(target, &json!({ "config": mark }))
                .await
                .with_context(|| format!("step {}: marking {target}", step.name))?;
            done.push(format!("step {} ran on {target}", step.name));
        }
    }
    Ok(())
}

/// Waits for `target` to be ready, then runs the step's command there;
/// its trimmed output.
async fn run_step(
    clients: &BTreeMap<String, Client>,
    site: &Site,
    c: &Client,
    step: &Step,
    target: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(step.timeout);
    wait_ready(c, target, &step.ready, deadline)
        .await
        .with_context(|| format!("step {}: {target} did not become ready", step.name))?;
    let mut all = vars.clone();
    for v in variables(&step.run) {
        if let Some(inst) = v.strip_prefix("ip:") {
            all.insert(v.clone(), address_of(clients, site, inst).await?);
        }
    }
    let command =
        render(&step.run, &all).map_err(|e| anyhow::anyhow!("step {}: {e}", step.name))?;
    let out = c
        .exec_capture(target, &["sh", "-c", &command], &[], None)
        .await
        .with_context(|| format!("step {} on {target}", step.name))?;
    if out.code != 0 {
        bail!(
            "step {} on {target} failed (exit {}): {}",
            step.name,
            out.code,
            out.stderr_str().trim()
        );
    }
    Ok(out.stdout_str().trim().to_string())
}

/// Waits until `name` is ready as `ready` says, or `deadline`.
async fn wait_ready(c: &Client, name: &str, ready: &Ready, deadline: Instant) -> Result<()> {
    let probe = match ready {
        Ready::Running => None,
        Ready::CloudInit => Some("test -e /var/lib/cloud/instance/boot-finished".to_string()),
        Ready::Systemd => Some(
            "s=$(systemctl is-system-running 2>/dev/null); [ \"$s\" = running ] || [ \"$s\" = degraded ]"
                .to_string(),
        ),
        // A listening socket on the port, read inside the guest.
        Ready::Port(p) => Some(format!(
            "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == \"0A\" {{print $2}}' | grep -qi ':{p:04X}$'"
        )),
    };
    loop {
        let running = c
            .instance(name)
            .await
            .map(|i| i.status == "Running")
            .unwrap_or(false);
        let ok = match (&probe, running) {
            (_, false) => false,
            (None, true) => true,
            (Some(p), true) => c
                .exec_capture(name, &["sh", "-c", p], &[], None)
                .await
                .map(|o| o.code == 0)
                .unwrap_or(false),
        };
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not ready ({ready:?}) within the step's timeout");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The first global IPv4 address (else IPv6) of instance `name`, on one
/// of its own NICs first (eth0…), so a bridge made inside the guest
/// (Docker's docker0) is not taken for its address.
async fn address_of(clients: &BTreeMap<String, Client>, site: &Site, name: &str) -> Result<String> {
    let host = &site
        .instances
        .iter()
        .find(|i| i.name == name)
        .with_context(|| format!("{{{{ip:{name}}}}}: no such instance"))?
        .host;
    let c = clients
        .get(host)
        .with_context(|| format!("host {host} is not reachable"))?;
    let nics: Vec<String> = c
        .instance(name)
        .await?
        .expanded_devices
        .iter()
        .filter(|(_, d)| d.get("type").map(String::as_str) == Some("nic"))
        .map(|(dev, d)| d.get("name").cloned().unwrap_or_else(|| dev.clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = c.instance_state(name).await?;
        let mut found: Vec<(bool, bool, String)> = Vec::new();
        for (nic, n) in state.network.unwrap_or_default() {
            if nic == "lo" {
                continue;
            }
            for a in n.addresses.into_iter().filter(|a| a.scope == "global") {
                found.push((!nics.contains(&nic), a.family != "inet", a.address));
            }
        }
        found.sort();
        if let Some((_, _, a)) = found.into_iter().next() {
            return Ok(a);
        }
        if Instant::now() > deadline {
            bail!("{{{{ip:{name}}}}}: the instance has no global address");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
