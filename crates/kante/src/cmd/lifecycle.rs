//! launch, init, start, stop, restart, pause, delete, rename.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kante_api::instance::{InstancePut, InstanceSource, InstanceStatePut, InstancesPost};
use kante_api::StatusCode;
use kante_client::Client;

use super::{check_name, parse_kv};
use crate::cli::{CreateArgs, LaunchArgs};

const RUNNING: u16 = StatusCode::Running as u16;
const FROZEN: u16 = StatusCode::Frozen as u16;

/// Builds the create request as lxc does: the image resolved to a
/// fingerprint, `profiles: null` unless profiles were given or refused.
pub fn create_request(args: &CreateArgs, fingerprint: &str) -> Result<InstancesPost> {
    if args.no_profiles && !args.profiles.is_empty() {
        bail!("--no-profiles cannot be used with --profile");
    }
    let mut config = BTreeMap::new();
    for kv in &args.config {
        let (k, v) = parse_kv(kv)?;
        config.insert(k, v);
    }
    let profiles = if args.no_profiles {
        Some(vec![])
    } else if args.profiles.is_empty() {
        None
    } else {
        Some(args.profiles.clone())
    };
    let mut devices = BTreeMap::new();
    if let Some(pool) = &args.storage {
        let root: BTreeMap<String, String> =
            [("type", "disk"), ("path", "/"), ("pool", pool.as_str())]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        devices.insert("root".to_string(), root);
    }
    let source = if args.empty {
        // lxc's `--empty`: no image, an empty root filesystem.
        InstanceSource {
            kind: "none".into(),
            ..Default::default()
        }
    } else {
        InstanceSource {
            kind: "image".into(),
            fingerprint: fingerprint.into(),
            ..Default::default()
        }
    };
    Ok(InstancesPost {
        name: args.name.clone().unwrap_or_default(),
        kind: "container".into(),
        source,
        instance_type: args.instance_type.clone().unwrap_or_default(),
        put: InstancePut {
            config,
            devices,
            ephemeral: args.ephemeral,
            profiles,
            description: args.description.clone().unwrap_or_default(),
            ..Default::default()
        },
    })
}

/// `-n NETWORK` as lxc adds it: `eth0` on a managed network by its
/// name, else bridged (a bridge) or macvlan on the host interface.
async fn network_nic(c: &Client, name: &str) -> Result<BTreeMap<String, String>> {
    let net = c.network(name).await?;
    let mut nic: BTreeMap<String, String> = [("type", "nic"), ("name", "eth0")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if net.managed {
        nic.insert("network".into(), net.name);
    } else {
        let kind = if net.kind == "bridge" {
            "bridged"
        } else {
            "macvlan"
        };
        nic.insert("nictype".into(), kind.into());
        nic.insert("parent".into(), net.name);
    }
    Ok(nic)
}

/// `-d DEVICE,KEY=VALUE`, as lxc: the device comes from the request or
/// else from its profiles (the last that has it), copied into the
/// instance's own devices with the key set.
async fn override_devices(c: &Client, post: &mut InstancesPost, specs: &[String]) -> Result<()> {
    for spec in specs {
        let Some((dev, kv)) = spec.split_once(',') else {
            bail!("Bad device override syntax, expecting DEVICE,KEY=VALUE: {spec}");
        };
        let (key, value) = parse_kv(kv)?;
        if !post.put.devices.contains_key(dev) {
            let profiles = post
                .put
                .profiles
                .clone()
                .unwrap_or_else(|| vec!["default".into()]);
            let mut found = None;
            for p in &profiles {
                if let Some(d) = c.profile(p).await?.devices.get(dev) {
                    found = Some(d.clone());
                }
            }
            let Some(d) = found else {
                bail!("Device {dev:?} doesn't exist in the instance's profiles");
            };
            post.put.devices.insert(dev.to_string(), d);
        }
        if let Some(d) = post.put.devices.get_mut(dev) {
            d.insert(key, value);
        }
    }
    Ok(())
}

/// `kante init`: create only; returns the instance name.
pub async fn init(c: &Client, args: CreateArgs) -> Result<String> {
    if args.vm {
        bail!("Kante runs containers only: virtual machines (--vm) are not supported");
    }
    if args.empty && !args.image.is_empty() {
        bail!("--empty cannot be combined with an image name");
    }
    if args.image.is_empty() && !args.empty {
        bail!("An image is required: [REMOTE:]IMAGE [NAME] (or --empty [NAME])");
    }
    let nic = match &args.network {
        Some(n) => Some(network_nic(c, n).await?),
        None => None,
    };
    match &args.name {
        Some(n) => {
            check_name(n)?;
            println!("Creating {n}");
        }
        None => println!("Creating the instance"),
    }
    let post = match &args.image_remote {
        _ if args.empty => create_request(&args, "")?,
        // On an image server: the instance's server downloads it.
        Some(remote) => {
            let cfg = crate::remote::Config::load()?;
            let source = super::image_copy::pull_source(&cfg, remote, &args.image).await?;
            let mut post = create_request(&args, "")?;
            post.source = serde_json::from_value(source)?;
            post
        }
        None => create_request(&args, &c.resolve_image(&args.image).await?)?,
    };
    let mut post = post;
    if let Some(nic) = nic {
        post.put.devices.insert("eth0".into(), nic);
    }
    override_devices(c, &mut post, &args.device).await?;
    let name = c.create_instance_at(&post, args.target.as_deref()).await?;
    if args.name.is_none() {
        println!("Instance name is: {name}");
    }
    Ok(name)
}

/// `kante launch`: create, start, and with `--wait` wait for the guest's init.
pub async fn launch(c: &Client, args: LaunchArgs) -> Result<i32> {
    super::console::check_type(args.console.as_deref())?;
    let name = init(c, args.create).await?;
    println!("Starting {name}");
    let start = InstanceStatePut {
        action: "start".into(),
        timeout: -1,
        force: false,
        stateful: false,
    };
    c.set_instance_state(&name, &start).await?;
    if args.wait {
        wait_ready(c, &name, Duration::from_secs(args.timeout)).await?;
    }
    if args.console.is_some() {
        return super::console::attach(c, &name).await;
    }
    Ok(0)
}

/// Asks on the terminal (stdin) and reads `yes`/`y`; anything else is no.
pub fn confirm(question: &str) -> Result<bool> {
    use std::io::Write;
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// How long systemd may say `offline` before we believe it: very early in
/// boot, before PID 1 has created /run/systemd/system, systemctl says so too.
const OFFLINE_GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

/// What one `systemctl is-system-running` answer means for `--wait`.
#[derive(Debug, PartialEq, Eq)]
pub enum Boot {
    Ready,
    Failed,
    Offline,
    Pending,
    NoSystemctl,
}

pub fn classify(code: i32, stdout: &str) -> Boot {
    if code == 127 || code == 126 {
        return Boot::NoSystemctl;
    }
    match stdout.trim() {
        "running" | "degraded" => Boot::Ready,
        "maintenance" | "stopping" => Boot::Failed,
        "offline" => Boot::Offline,
        _ => Boot::Pending,
    }
}

/// Polls the guest until its init reports `running`/`degraded` (or, without
/// systemctl, until an exec of `true` works).
pub async fn wait_ready(c: &Client, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut offline_since: Option<Instant> = None;
    let mut last = String::from("no answer yet");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "Timed out after {}s waiting for {name} to boot (last state: {last})",
                timeout.as_secs()
            );
        }
        let probe = c.exec_capture(name, &["systemctl", "is-system-running"], &[], None);
        match tokio::time::timeout(left, probe).await {
            Err(_) => continue,
            Ok(Ok(out)) => {
                let state = out.stdout_str().trim().to_string();
                match classify(out.code, &state) {
                    Boot::Ready => return Ok(()),
                    Boot::Failed => {
                        bail!("Instance {name} did not boot cleanly: systemd reports \"{state}\"")
                    }
                    Boot::NoSystemctl => {
                        if let Ok(Ok(o)) =
                            tokio::time::timeout(left, c.exec_capture(name, &["true"], &[], None))
                                .await
                        {
                            if o.code == 0 {
                                return Ok(());
                            }
                        }
                        last = "no systemctl, exec not ready".into();
                    }
                    Boot::Offline => {
                        let since = *offline_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= OFFLINE_GRACE {
                            bail!("Instance {name} did not boot: systemd reports \"offline\" (init is not systemd?)");
                        }
                        last = state;
                    }
                    Boot::Pending => {
                        offline_since = None;
                        last = if state.is_empty() {
                            format!("exit code {}", out.code)
                        } else {
                            state
                        };
                    }
                }
            }
            Ok(Err(e)) => {
                // Exec refused: find out whether init is gone.
                if let Ok(st) = c.instance_state(name).await {
                    if st.status_code != RUNNING {
                        bail!("Instance {name} stopped while booting (its init exited); see `kante info {name} --show-log`");
                    }
                }
                last = e.to_string();
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The instances `--all` means: every one not yet in the wanted state
/// (`active`: running or frozen ones for stop and restart, the others for
/// start), as lxc does.
pub async fn all_instances(c: &Client, active: bool) -> Result<Vec<String>> {
    Ok(c.instances()
        .await?
        .into_iter()
        .filter(|i| (i.status_code == RUNNING || i.status_code == FROZEN) == active)
        .map(|i| i.name)
        .collect())
}

pub async fn start(c: &Client, names: &[String]) -> Result<i32> {
    for name in names {
        // lxc unfreezes a frozen instance on start.
        let inst = c.instance(name).await?;
        if inst.status_code == FROZEN {
            c.unfreeze_instance(name).await?;
        } else {
            c.start_instance(name).await?;
        }
    }
    Ok(0)
}

/// `kante stop`; `--stateful` is asked of the server, which refuses it
/// without CRIU.
pub async fn stop(
    c: &Client,
    names: &[String],
    force: bool,
    timeout: i64,
    stateful: bool,
) -> Result<i32> {
    for name in names {
        if stateful {
            let put = InstanceStatePut {
                action: "stop".into(),
                timeout,
                force,
                stateful,
            };
            c.set_instance_state(name, &put).await?;
        } else {
            c.stop_instance(name, force, timeout).await?;
        }
    }
    Ok(0)
}

pub async fn restart(c: &Client, names: &[String], force: bool, timeout: i64) -> Result<i32> {
    for name in names {
        c.restart_instance(name, force, timeout).await?;
    }
    Ok(0)
}

pub async fn pause(c: &Client, names: &[String]) -> Result<i32> {
    for name in names {
        c.freeze_instance(name).await?;
    }
    Ok(0)
}

pub async fn delete(c: &Client, names: &[String], force: bool, interactive: bool) -> Result<i32> {
    for name in names {
        if interactive && !confirm(&format!("Remove {name} (yes/no): "))? {
            bail!("User aborted delete operation");
        }
        if let Some((inst, snap)) = super::split_snapshot(name)? {
            c.delete_snapshot(inst, snap).await?;
            continue;
        }
        let inst = c.instance(name).await?;
        let active = inst.status_code == RUNNING || inst.status_code == FROZEN;
        if active {
            if !force {
                bail!("The instance is currently running, stop it first or pass --force");
            }
            c.stop_instance(name, true, -1).await?;
        }
        match c.delete_instance(name).await {
            // An ephemeral instance is gone once stopped.
            Err(e) if e.is_not_found() && active && inst.ephemeral => {}
            r => r?,
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CreateArgs {
        CreateArgs {
            image: "debian/12".into(),
            name: Some("c1".into()),
            config: vec![],
            profiles: vec![],
            no_profiles: false,
            storage: None,
            ephemeral: false,
            description: None,
            network: None,
            instance_type: None,
            device: vec![],
            target: None,
            empty: false,
            vm: false,
            image_remote: None,
        }
    }

    #[test]
    fn create_request_like_lxc() {
        let post = create_request(&args(), "abc").unwrap();
        let v = serde_json::to_value(&post).unwrap();
        assert!(v["profiles"].is_null());
        assert_eq!(v["source"]["type"], "image");
        assert_eq!(v["source"]["fingerprint"], "abc");
        assert_eq!(v["type"], "container");
        assert_eq!(v["name"], "c1");

        let mut a = args();
        a.no_profiles = true;
        a.storage = Some("fast".into());
        a.config = vec!["limits.memory=1GiB".into()];
        let v = serde_json::to_value(create_request(&a, "abc").unwrap()).unwrap();
        assert_eq!(v["profiles"], serde_json::json!([]));
        assert_eq!(v["devices"]["root"]["pool"], "fast");
        assert_eq!(v["config"]["limits.memory"], "1GiB");

        a.profiles = vec!["x".into()];
        assert!(create_request(&a, "abc").is_err());

        let mut a = args();
        a.empty = true;
        let v = serde_json::to_value(create_request(&a, "").unwrap()).unwrap();
        assert_eq!(v["source"]["type"], "none");
        assert!(v["source"].get("fingerprint").is_none_or(|f| f == ""));
    }

    #[test]
    fn boot_states() {
        assert_eq!(classify(0, "running\n"), Boot::Ready);
        assert_eq!(classify(1, "degraded"), Boot::Ready);
        assert_eq!(classify(1, "starting"), Boot::Pending);
        assert_eq!(classify(1, "initializing"), Boot::Pending);
        assert_eq!(classify(1, "maintenance"), Boot::Failed);
        assert_eq!(classify(1, "stopping"), Boot::Failed);
        assert_eq!(classify(1, "offline"), Boot::Offline);
        assert_eq!(classify(127, ""), Boot::NoSystemctl);
        assert_eq!(classify(1, ""), Boot::Pending);
    }
}
