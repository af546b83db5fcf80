//! `kante copy`: a new instance from another one or from a snapshot, built
//! the way lxc builds it (the source's config and devices, then the flags).

use anyhow::{bail, Result};
use kante_api::instance::{InstancePut, InstanceSource, InstancesPost};
use kante_api::server::Server;
use kante_api::{ConfigMap, DevicesMap};
use kante_client::Client;

use super::snapshot::local_name;
use super::{check_name, parse_kv, split_snapshot};
use crate::cli::CopyArgs;

/// The parts of the source the copy starts from.
pub struct SourceState {
    pub architecture: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
    /// The devices with the profiles' (for `-d` on a profile's device).
    pub expanded_devices: DevicesMap,
    pub profiles: Vec<String>,
    pub description: String,
}

/// Builds the create request. Volatile keys are dropped (a copy must get its
/// own MACs); `-p` adds to the source's profiles, as in lxc.
pub fn copy_request(args: &CopyArgs, source: &str, src: SourceState) -> Result<InstancesPost> {
    if args.no_profiles && !args.profiles.is_empty() {
        bail!("--no-profiles cannot be used with --profile");
    }
    let mut config: ConfigMap = src
        .config
        .into_iter()
        .filter(|(k, _)| !k.starts_with("volatile."))
        .collect();
    for kv in &args.config {
        let (k, v) = parse_kv(kv)?;
        config.insert(k, v);
    }
    let mut profiles = src.profiles;
    if args.no_profiles {
        profiles.clear();
    }
    for p in &args.profiles {
        if !profiles.contains(p) {
            profiles.push(p.clone());
        }
    }
    let mut devices = src.devices;
    if let Some(pool) = &args.storage {
        let root = devices.values_mut().find(|d| {
            d.get("type").map(String::as_str) == Some("disk")
                && d.get("path").map(String::as_str) == Some("/")
        });
        match root {
            Some(d) => {
                d.insert("pool".into(), pool.clone());
            }
            None => {
                let root = [("type", "disk"), ("path", "/"), ("pool", pool.as_str())]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                devices.insert("root".into(), root);
            }
        }
    }
    super::override_devices(&mut devices, &src.expanded_devices, &args.device)?;
    Ok(InstancesPost {
        name: args.destination.clone().unwrap_or_default(),
        kind: "container".into(),
        source: InstanceSource {
            kind: "copy".into(),
            source: source.to_string(),
            instance_only: args.instance_only,
            refresh: args.refresh,
            ..Default::default()
        },
        instance_type: String::new(),
        put: InstancePut {
            architecture: src.architecture,
            config,
            devices,
            ephemeral: args.ephemeral,
            profiles: Some(profiles),
            description: src.description,
            ..Default::default()
        },
    })
}

pub async fn run(c: &Client, args: CopyArgs) -> Result<i32> {
    let source = local_name(&args.source)?.to_string();
    if let Some(dst) = &args.destination {
        check_name(local_name(dst)?)?;
    }
    if args.refresh {
        // lxc's check: refresh needs the server's incremental copy support.
        let server: Server = c.get_json("/1.0").await?;
        if !server
            .api_extensions
            .iter()
            .any(|e| e == "container_incremental_copy")
        {
            bail!("The server does not support --refresh (no container_incremental_copy API extension)");
        }
    }
    let src = match split_snapshot(&source)? {
        Some((inst, snap)) => {
            let s = c.snapshot(inst, snap).await?;
            SourceState {
                architecture: s.architecture,
                config: s.config,
                devices: s.devices,
                expanded_devices: s.expanded_devices,
                profiles: s.profiles,
                description: String::new(),
            }
        }
        None => {
            let i = c.instance(&source).await?;
            SourceState {
                architecture: i.architecture,
                config: i.config,
                devices: i.devices,
                expanded_devices: i.expanded_devices,
                profiles: i.profiles,
                description: i.description,
            }
        }
    };
    let mut args = args;
    if let Some(dst) = &args.destination {
        args.destination = Some(local_name(dst)?.to_string());
    }
    let post = copy_request(&args, &source, src)?;
    let name = c.create_instance(&post).await?;
    if args.destination.is_none() {
        println!("Instance name is: {name}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CopyArgs {
        CopyArgs {
            source: "c1".into(),
            destination: Some("c2".into()),
            instance_only: false,
            stateless: false,
            config: vec![],
            profiles: vec![],
            no_profiles: false,
            refresh: false,
            ephemeral: false,
            storage: None,
            mode: None,
            device: vec![],
        }
    }

    fn src() -> SourceState {
        let map = |kv: &[(&str, &str)]| -> ConfigMap {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        SourceState {
            architecture: "x86_64".into(),
            config: map(&[
                ("limits.memory", "256MiB"),
                ("volatile.eth0.hwaddr", "00:16:3e:00:00:01"),
                ("volatile.base_image", "abc"),
            ]),
            devices: [(
                "eth0".to_string(),
                map(&[("type", "nic"), ("network", "br0")]),
            )]
            .into_iter()
            .collect(),
            expanded_devices: DevicesMap::new(),
            profiles: vec!["default".into()],
            description: "web".into(),
        }
    }

    #[test]
    fn copy_like_lxc() {
        let v = serde_json::to_value(copy_request(&args(), "c1/s0", src()).unwrap()).unwrap();
        assert_eq!(v["source"]["type"], "copy");
        assert_eq!(v["source"]["source"], "c1/s0");
        assert_eq!(v["source"]["instance_only"], false);
        assert_eq!(v["name"], "c2");
        assert_eq!(v["config"], serde_json::json!({"limits.memory": "256MiB"}));
        assert_eq!(v["profiles"], serde_json::json!(["default"]));
        assert_eq!(v["devices"]["eth0"]["network"], "br0");
        assert_eq!(v["description"], "web");

        let mut a = args();
        a.instance_only = true;
        a.config = vec!["limits.memory=1GiB".into(), "user.x=1".into()];
        a.profiles = vec!["extra".into()];
        a.storage = Some("fast".into());
        a.ephemeral = true;
        let v = serde_json::to_value(copy_request(&a, "c1", src()).unwrap()).unwrap();
        assert_eq!(v["source"]["instance_only"], true);
        assert_eq!(v["config"]["limits.memory"], "1GiB");
        assert_eq!(v["config"]["user.x"], "1");
        assert_eq!(v["profiles"], serde_json::json!(["default", "extra"]));
        assert_eq!(v["devices"]["root"]["pool"], "fast");
        assert_eq!(v["ephemeral"], true);

        let mut a = args();
        a.no_profiles = true;
        let v = serde_json::to_value(copy_request(&a, "c1", src()).unwrap()).unwrap();
        assert_eq!(v["profiles"], serde_json::json!([]));
        a.profiles = vec!["x".into()];
        assert!(copy_request(&a, "c1", src()).is_err());
    }
}
