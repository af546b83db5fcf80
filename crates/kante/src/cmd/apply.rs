//! `kante apply SITE.yaml`: reads every host of the site in parallel (a
//! host unreachable at plan time is shown as unknown and skipped), plans,
//! prints the diff, asks before deleting anything (`--yes` for scripts),
//! then converges the hosts in parallel and runs the site's post-boot
//! steps in order. A failing host does not stop the others; the summary
//! names what failed, the exit code is 1, and a re-run finishes the job.
//! The work is `kante_site`'s; this command makes the clients from the
//! remotes and talks to the user.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use futures_util::future::join_all;
use kante_client::kante_api::instance::InstanceSource;
use kante_client::Client;
use kante_site::plan::{cluster_members, plan_host, read_host, Change, HostPlan, HostState};
use kante_site::Site;

use crate::cli::{ApplyArgs, SiteCmd};
use crate::remote::{connect, Config};

/// One host as found at plan time.
struct Found {
    host: String,
    remote: String,
    client: Option<Client>,
    state: Result<HostState>,
}

pub async fn run(args: ApplyArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("Reading the site file {}", args.file))?;
    let cfg = Config::load()?;
    let mut site = Site::parse(&args.file, &text, &cfg.default_remote)?;
    site.target(&args.targets)?;
    let chosen: Vec<(String, String)> = site
        .hosts
        .iter()
        .filter(|(h, _)| site.targeted(h))
        .map(|(h, r)| (h.clone(), r.clone()))
        .collect();
    // Every host is read at once.
    let found: Vec<Found> = join_all(chosen.into_iter().map(|(host, remote)| {
        let client = connect::client(&cfg, &remote);
        let member = site.members.get(&host).cloned();
        async move {
            match client {
                Ok(c) => {
                    let state = read_host(&c, member.as_deref()).await;
                    Found {
                        host,
                        remote,
                        client: Some(c),
                        state,
                    }
                }
                Err(e) => Found {
                    host,
                    remote,
                    client: None,
                    state: Err(e),
                },
            }
        }
    }))
    .await;
    // Instance names on each reachable host, for names placed elsewhere.
    let mut living: BTreeMap<String, String> = BTreeMap::new();
    for f in &found {
        if let Ok(s) = &f.state {
            for i in &s.instances {
                living.insert(i.name.clone(), f.host.clone());
            }
        }
    }
    let mut plans: Vec<(HostPlan, &Found)> = Vec::new();
    let mut unknown = Vec::new();
    for f in &found {
        match &f.state {
            Err(e) => {
                println!("{} ({}): unknown, skipped: {e:#}", f.host, f.remote);
                unknown.push(f.host.clone());
            }
            Ok(state) => {
                let others: BTreeMap<String, String> = living
                    .iter()
                    .filter(|(_, h)| **h != f.host)
                    .map(|(n, h)| (n.clone(), h.clone()))
                    .collect();
                let plan = plan_host(&site, &f.host, state, &others, args.prune)
                    .map_err(|e| anyhow::anyhow!("{}: {e:#}", args.file))?;
                plans.push((plan, f));
            }
        }
    }
    let pending = pending_steps(&site, &found);
    for (plan, f) in &plans {
        if plan.is_empty() {
            println!(
                "{} ({}): no change ({} instances as wanted)",
                f.host,
                f.remote,
                plan.unchanged.len()
            );
            continue;
        }
        println!("{} ({}):", f.host, f.remote);
        for l in plan.lines() {
            println!("  {l}");
        }
        if !plan.unchanged.is_empty() {
            println!("  = {} instances as wanted", plan.unchanged.len());
        }
    }
    for p in &pending {
        println!("+ step {p}");
    }
    let nothing = plans.iter().all(|(p, _)| p.is_empty()) && pending.is_empty();
    if nothing {
        println!("Nothing to change: the site is converged");
        return Ok(if unknown.is_empty() { 0 } else { 1 });
    }
    if args.dry_run {
        return Ok(0);
    }
    if plans.iter().any(|(p, _)| p.destroys()) && !args.yes && !confirm()? {
        bail!("Nothing was changed");
    }
    // The hosts converge at once, in two waves: every host's preseed part,
    // then every host's instances (a cluster's member hosts share one
    // preseed part, which one of them applies). Each reports as it goes.
    let report = |host: &str, outcome: &Result<Vec<String>>| match outcome {
        Ok(done) => done.iter().for_each(|d| println!("{host}: {d}")),
        Err(e) => eprintln!("{host}: failed: {e:#}"),
    };
    let prepared = join_all(plans.iter().map(|(plan, f)| async move {
        let c = f.client.as_ref().expect("a reachable host has a client");
        let state = f.state.as_ref().expect("a planned host was read");
        let outcome = kante_site::apply::apply_preseed(c, plan, state).await;
        report(f.host.as_str(), &outcome);
        outcome.map(|d| d.len())
    }))
    .await;
    let results = join_all(plans.iter().zip(prepared).map(|((plan, f), prepared)| {
        let site = &site;
        let cfg = &cfg;
        async move {
            let c = f.client.as_ref().expect("a reachable host has a client");
            let outcome = match prepared {
                Err(e) => Err(e),
                Ok(n) => {
                    let done = async {
                        let sources = image_sources(cfg, plan).await?;
                        kante_site::apply::apply_instances(c, site, plan, &sources).await
                    }
                    .await;
                    report(f.host.as_str(), &done);
                    done.map(|d| n + d.len())
                }
            };
            (f.host.clone(), outcome)
        }
    }))
    .await;
    let mut failed: Vec<String> = results
        .iter()
        .filter_map(|(h, r)| r.as_ref().err().map(|e| format!("{h}: {e:#}")))
        .collect();
    let changed: usize = results.iter().filter_map(|(_, r)| r.as_ref().ok()).sum();
    let clients: BTreeMap<String, Client> = found
        .iter()
        .filter(|f| f.state.is_ok())
        .filter_map(|f| Some((f.host.clone(), f.client.clone()?)))
        .collect();
    let mut steps = 0;
    if !pending.is_empty() {
        let (done, result) = kante_site::apply::run_steps(&clients, &site).await;
        steps = done.len();
        done.iter().for_each(|d| println!("{d}"));
        if let Err(e) = result {
            failed.push(format!("steps: {e:#}"));
        }
    }
    failed.extend(unknown.iter().map(|h| format!("{h}: unreachable, skipped")));
    println!("Applied {changed} changes and {steps} steps");
    if failed.is_empty() {
        return Ok(0);
    }
    eprintln!("Not done (a re-run finishes the job):");
    for f in &failed {
        eprintln!("  {f}");
    }
    Ok(1)
}

/// `STEP on INSTANCE` for each step not yet done on a reachable host.
fn pending_steps(site: &Site, found: &[Found]) -> Vec<String> {
    let mut out = Vec::new();
    for step in &site.steps {
        for target in &step.on {
            let Some(inst) = site.instances.iter().find(|i| &i.name == target) else {
                continue;
            };
            let Some(Ok(state)) = found.iter().find(|f| f.host == inst.host).map(|f| &f.state)
            else {
                continue;
            };
            let done = state.instances.iter().any(|i| {
                &i.name == target
                    && i.config
                        .get(&format!("user.kante.step.{}", step.name))
                        .map(String::as_str)
                        == Some("done")
            });
            if !done {
                out.push(format!("{} on {target}", step.name));
            }
        }
    }
    out
}

/// The image source of each instance the plan creates: `REMOTE:IMAGE`
/// is pulled from that remote (as a launch does), anything else is an
/// alias or a fingerprint on the host itself.
async fn image_sources(cfg: &Config, plan: &HostPlan) -> Result<BTreeMap<String, InstanceSource>> {
    let mut out = BTreeMap::new();
    for change in &plan.changes {
        let Change::Create(i) = change else { continue };
        let source = match crate::remote::route::split(cfg, &i.image)? {
            (Some(remote), image) => {
                serde_json::from_value(super::image_copy::pull_source(cfg, remote, image).await?)?
            }
            (None, image) => {
                let fp = image.len() >= 12 && image.bytes().all(|b| b.is_ascii_hexdigit());
                InstanceSource {
                    kind: "image".into(),
                    alias: if fp { String::new() } else { image.to_string() },
                    fingerprint: if fp { image.to_string() } else { String::new() },
                    ..Default::default()
                }
            }
        };
        out.insert(i.name.clone(), source);
    }
    Ok(out)
}

/// `kante site export`: the hosts (by remote) as a site file on stdout; a
/// cluster exported alone as its members (`kante_site::export`).
pub async fn site(cmd: SiteCmd) -> Result<i32> {
    let SiteCmd::Export { remotes, name } = cmd;
    let cfg = Config::load()?;
    let remotes = if remotes.is_empty() {
        vec![cfg.default_remote.clone()]
    } else {
        remotes
            .iter()
            .map(|r| r.trim_end_matches(':').to_string())
            .collect()
    };
    let read = join_all(remotes.iter().map(|r| {
        let client = connect::client(&cfg, r);
        async move {
            let c = client?;
            let state = read_host(&c, None).await?;
            let aliases: Vec<(String, String)> = c
                .image_aliases()
                .await?
                .into_iter()
                .map(|a| (a.name, a.target))
                .collect();
            let members = cluster_members(&c).await?;
            anyhow::Ok((state, aliases, members))
        }
    }))
    .await;
    let mut states = Vec::new();
    for (r, got) in remotes.iter().zip(read) {
        states.push(got.with_context(|| format!("Reading {r}"))?);
    }
    let hosts: Vec<kante_site::export::Exported<'_>> = remotes
        .iter()
        .zip(&states)
        .map(
            |(r, (state, aliases, members))| kante_site::export::Exported {
                host: r,
                remote: r,
                state,
                aliases,
                members,
            },
        )
        .collect();
    print!("{}", kante_site::export::export(&name, &hosts)?);
    Ok(0)
}

/// Asks on the terminal before deleting; refuses without one.
fn confirm() -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("The plan deletes something: run with --yes to apply it without a terminal");
    }
    print!("The plan deletes something. Apply it? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
