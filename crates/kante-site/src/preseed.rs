//! `kante init --preseed` (and each host's part of a site): LXD's preseed YAML (`config`, `networks`,
//! `storage_pools`, `profiles`, `cluster: null`) applied to this host.
//!
//! It is planned first from the host's current state (pure: [`plan`]), then
//! applied step by step; every applied step records its undo, and if any step
//! fails the undos run in reverse, so a preseed applies as a whole or not at
//! all. Whatever already matches is left alone, so applying it twice changes
//! nothing. Like `lxd init`, existing networks and profiles are updated to
//! the preseed's content; an existing pool must have the same driver, except
//! an empty pool (used only by profiles: say the daemon's own `default` dir
//! pool on a fresh host), which is replaced.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use kante_client::kante_api::network::{Network, NetworkPut, NetworksPost};
use kante_client::kante_api::server::ServerPut;
use kante_client::kante_api::storage::{StoragePool, StoragePoolPut, StoragePoolsPost};
use kante_client::kante_api::ConfigMap;
use kante_client::{Client, Profile, ProfilePut, ProfilesPost};
use serde::Deserialize;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preseed {
    #[serde(
        default,
        deserialize_with = "kante_client::kante_api::serde_util::string_map"
    )]
    pub config: ConfigMap,
    #[serde(default)]
    pub networks: Vec<NetworksPost>,
    #[serde(default)]
    pub storage_pools: Vec<StoragePoolsPost>,
    #[serde(default)]
    pub profiles: Vec<ProfilesPost>,
    #[serde(default)]
    pub projects: Option<serde_json::Value>,
    #[serde(default)]
    pub cluster: Option<serde_json::Value>,
}

/// What the host has now (the parts a preseed touches).
#[derive(Debug, Default, Clone)]
pub struct Current {
    pub config: ConfigMap,
    pub pools: Vec<StoragePool>,
    pub networks: Vec<Network>,
    pub profiles: Vec<Profile>,
}

/// One change; applied in the order planned.
#[derive(Debug, Clone)]
pub enum Step {
    SetServerConfig(ConfigMap),
    /// Take `devices` off profile `profile` while its pool is replaced.
    DetachPoolFromProfile {
        profile: String,
        devices: Vec<String>,
    },
    DeletePool(String),
    CreatePool(StoragePoolsPost),
    UpdatePool(String, StoragePoolPut),
    CreateNetwork(NetworksPost),
    UpdateNetwork(String, NetworkPut),
    CreateProfile(ProfilesPost),
    UpdateProfile(String, ProfilePut),
}

fn differs(wanted: &ConfigMap, have: &ConfigMap) -> bool {
    wanted.iter().any(|(k, v)| have.get(k) != Some(v))
}

/// Works out the steps that bring `cur` to what `seed` describes.
pub fn plan(seed: &Preseed, cur: &Current) -> Result<Vec<Step>> {
    if seed.cluster.as_ref().is_some_and(|c| !c.is_null()) {
        bail!("Clustering through preseed is not supported (cluster mode lives in etcd); use cluster: null");
    }
    if seed
        .projects
        .as_ref()
        .is_some_and(|p| !p.is_null() && p != &serde_json::json!([]))
    {
        bail!("Projects are not supported");
    }
    let mut steps = Vec::new();
    if differs(&seed.config, &cur.config) {
        steps.push(Step::SetServerConfig(seed.config.clone()));
    }
    let mut detached: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &seed.storage_pools {
        if p.name.is_empty() || p.driver.is_empty() {
            bail!("Every storage pool needs a name and a driver");
        }
        match cur.pools.iter().find(|x| x.name == p.name) {
            None => steps.push(Step::CreatePool(p.clone())),
            Some(have) if have.driver == p.driver => {
                let put = StoragePoolPut {
                    config: p.config.clone(),
                    description: p.description.clone(),
                };
                if differs(&p.config, &have.config) || p.description != have.description {
                    steps.push(Step::UpdatePool(p.name.clone(), put));
                }
            }
            Some(have) => {
                let busy: Vec<&String> = have
                    .used_by
                    .iter()
                    .filter(|u| !u.starts_with("/1.0/profiles/"))
                    .collect();
                if !busy.is_empty() {
                    bail!(
                        "Storage pool {:?} exists with driver {} and is in use ({}): it cannot become {}",
                        p.name,
                        have.driver,
                        busy.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                        p.driver
                    );
                }
                for prof in cur.profiles.iter() {
                    let devs: Vec<String> = prof
                        .devices
                        .iter()
                        .filter(|(_, d)| d.get("pool") == Some(&p.name))
                        .map(|(n, _)| n.clone())
                        .collect();
                    if !devs.is_empty() {
                        detached
                            .entry(prof.name.clone())
                            .or_default()
                            .extend(devs.clone());
                        steps.push(Step::DetachPoolFromProfile {
                            profile: prof.name.clone(),
                            devices: devs,
                        });
                    }
                }
                steps.push(Step::DeletePool(p.name.clone()));
                steps.push(Step::CreatePool(p.clone()));
            }
        }
    }
    for n in &seed.networks {
        if n.name.is_empty() {
            bail!("Every network needs a name");
        }
        match cur.networks.iter().find(|x| x.name == n.name) {
            Some(have) if have.managed => {
                if differs(&n.config, &have.config) || n.description != have.description {
                    let mut config = have.config.clone();
                    config.extend(n.config.clone());
                    steps.push(Step::UpdateNetwork(
                        n.name.clone(),
                        NetworkPut {
                            description: n.description.clone(),
                            config,
                        },
                    ));
                }
            }
            Some(_) => bail!(
                "{:?} is an interface of the host, not a managed network",
                n.name
            ),
            None => steps.push(Step::CreateNetwork(n.clone())),
        }
    }
    let mut seeded = Vec::new();
    for p in &seed.profiles {
        if p.name.is_empty() {
            bail!("Every profile needs a name");
        }
        seeded.push(p.name.clone());
        match cur.profiles.iter().find(|x| x.name == p.name) {
            None => steps.push(Step::CreateProfile(p.clone())),
            Some(have) => {
                let same = have.config == p.put.config
                    && have.devices == p.put.devices
                    && have.description == p.put.description;
                if !same || detached.contains_key(&p.name) {
                    steps.push(Step::UpdateProfile(p.name.clone(), p.put.clone()));
                }
            }
        }
    }
    // Profiles whose pool was replaced but which the preseed does not
    // redefine get their devices back (the new pool has the same name).
    for (name, _) in detached.iter().filter(|(n, _)| !seeded.contains(n)) {
        if let Some(have) = cur.profiles.iter().find(|x| &x.name == name) {
            steps.push(Step::UpdateProfile(name.clone(), ProfilePut::from(have)));
        }
    }
    Ok(steps)
}

/// How to take a step back.
enum Undo {
    ServerConfig(ConfigMap),
    Profile(String, ProfilePut),
    DeleteProfile(String),
    Pool(StoragePoolsPost),
    DeletePool(String),
    PoolPut(String, StoragePoolPut),
    DeleteNetwork(String),
    NetworkPut(String, NetworkPut),
}

/// The host's current state, as far as a preseed reaches.
pub async fn current(c: &Client) -> Result<Current> {
    let server: kante_client::kante_api::server::Server = c.get_json("/1.0").await?;
    Ok(Current {
        config: server.config,
        pools: c.storage_pools().await?,
        networks: c.networks().await?,
        profiles: c.profiles().await?,
    })
}

async fn apply_step(c: &Client, cur: &Current, step: &Step, undo: &mut Vec<Undo>) -> Result<()> {
    match step {
        Step::SetServerConfig(cfg) => {
            let mut config = cur.config.clone();
            config.extend(cfg.clone());
            c.put("/1.0", &ServerPut { config }).await?;
            undo.push(Undo::ServerConfig(cur.config.clone()));
        }
        Step::DetachPoolFromProfile { profile, devices } => {
            let (p, _) = c.profile_with_etag(profile).await?;
            let before = ProfilePut::from(&p);
            let mut put = before.clone();
            put.devices.retain(|d, _| !devices.contains(d));
            c.update_profile(profile, &put, None).await?;
            undo.push(Undo::Profile(profile.clone(), before));
        }
        Step::DeletePool(name) => {
            let have = cur
                .pools
                .iter()
                .find(|p| &p.name == name)
                .context("pool vanished")?;
            c.delete_storage_pool(name).await?;
            undo.push(Undo::Pool(StoragePoolsPost {
                name: have.name.clone(),
                driver: have.driver.clone(),
                description: have.description.clone(),
                config: have.config.clone(),
            }));
        }
        Step::CreatePool(post) => {
            c.create_storage_pool(post)
                .await
                .with_context(|| format!("creating storage pool {}", post.name))?;
            undo.push(Undo::DeletePool(post.name.clone()));
        }
        Step::UpdatePool(name, put) => {
            let have = c.storage_pool(name).await?;
            c.patch_storage_pool(name, put)
                .await
                .with_context(|| format!("updating storage pool {name}"))?;
            undo.push(Undo::PoolPut(name.clone(), StoragePoolPut::from(&have)));
        }
        Step::CreateNetwork(post) => {
            c.create_network(post)
                .await
                .with_context(|| format!("creating network {}", post.name))?;
            undo.push(Undo::DeleteNetwork(post.name.clone()));
        }
        Step::UpdateNetwork(name, put) => {
            let have = c.network(name).await?;
            c.update_network(name, put, None)
                .await
                .with_context(|| format!("updating network {name}"))?;
            undo.push(Undo::NetworkPut(
                name.clone(),
                NetworkPut {
                    description: have.description,
                    config: have.config,
                },
            ));
        }
        Step::CreateProfile(post) => {
            c.create_profile(post)
                .await
                .with_context(|| format!("creating profile {}", post.name))?;
            undo.push(Undo::DeleteProfile(post.name.clone()));
        }
        Step::UpdateProfile(name, put) => {
            // What it is now (a pool replacement may have changed it already).
            let before = ProfilePut::from(&c.profile(name).await?);
            c.update_profile(name, put, None)
                .await
                .with_context(|| format!("updating profile {name}"))?;
            undo.push(Undo::Profile(name.clone(), before));
        }
    }
    Ok(())
}

async fn revert(c: &Client, undo: Vec<Undo>) {
    for u in undo.into_iter().rev() {
        let r: Result<()> = async {
            match u {
                Undo::ServerConfig(config) => drop(c.put("/1.0", &ServerPut { config }).await?),
                Undo::Profile(n, put) => c.update_profile(&n, &put, None).await?,
                Undo::DeleteProfile(n) => c.delete_profile(&n).await?,
                Undo::Pool(post) => c.create_storage_pool(&post).await?,
                Undo::DeletePool(n) => c.delete_storage_pool(&n).await?,
                Undo::PoolPut(n, put) => c.update_storage_pool(&n, &put, None).await?,
                Undo::DeleteNetwork(n) => c.delete_network(&n).await?,
                Undo::NetworkPut(n, put) => c.update_network(&n, &put, None).await?,
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            eprintln!("Warning: reverting the preseed: {e:#}");
        }
    }
}

/// One line saying what `step` does.
pub fn describe(step: &Step) -> String {
    match step {
        Step::SetServerConfig(c) => format!(
            "server config: {}",
            c.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        Step::DetachPoolFromProfile { profile, devices } => {
            format!(
                "profile {profile}: devices {} off while their pool is replaced",
                devices.join(", ")
            )
        }
        Step::DeletePool(n) => format!("storage pool {n}: replaced (it was empty)"),
        Step::CreatePool(p) => format!("storage pool {} ({}) created", p.name, p.driver),
        Step::UpdatePool(n, _) => format!("storage pool {n} updated"),
        Step::CreateNetwork(n) => format!("network {} created", n.name),
        Step::UpdateNetwork(n, _) => format!("network {n} updated"),
        Step::CreateProfile(p) => format!("profile {} created", p.name),
        Step::UpdateProfile(n, _) => format!("profile {n} updated"),
    }
}

/// Parses `text` and applies it: all of it, or (after undoing) none.
pub async fn apply(c: &Client, text: &str) -> Result<()> {
    let seed: Preseed = serde_yaml::from_str(text).context("Invalid preseed YAML")?;
    let cur = current(c).await?;
    let steps = plan(&seed, &cur)?;
    if steps.is_empty() {
        println!("Nothing to do: the host already matches the preseed");
        return Ok(());
    }
    for line in apply_steps(c, &cur, &steps).await? {
        println!("{line}");
    }
    Ok(())
}

/// Applies planned `steps` to a host whose state was `cur`: all of them,
/// or (after undoing) none; returns what each did.
pub async fn apply_steps(c: &Client, cur: &Current, steps: &[Step]) -> Result<Vec<String>> {
    let mut undo = Vec::new();
    let mut done = Vec::new();
    for step in steps {
        if let Err(e) = apply_step(c, cur, step, &mut undo).await {
            revert(c, undo).await;
            return Err(e.context("the preseed was not applied (every change was undone)"));
        }
        done.push(describe(step));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kante_client::kante_api::DevicesMap;

    const SEED_000: &str = r#"
config: {}
cluster: null
networks: []
storage_pools:
- config:
    source: /dev/loop10
  description: ""
  name: default
  driver: btrfs
- config:
    source: /dev/loop11
  description: docker-storage
  name: docker
  driver: btrfs
profiles:
- name: default
  config: {}
  description: "Standard Konfiguration"
  devices:
    eth0: {nictype: bridged, name: eth0, parent: ovs0, type: nic}
    root: {path: /, pool: default, type: disk}
- name: docker
  config:
    security.nesting: true
    limits.memory.swap: false
    limits.memory: 16GB
    limits.cpu: 2
  description: "Universelle Docker Swarm Konfiguration"
  devices:
    root: {path: /, pool: docker, type: disk}
"#;

    fn fresh_host() -> Current {
        let root: DevicesMap = serde_json::from_value(serde_json::json!({
            "root": {"type": "disk", "path": "/", "pool": "default"}
        }))
        .unwrap();
        Current {
            config: ConfigMap::new(),
            pools: vec![StoragePool {
                name: "default".into(),
                driver: "dir".into(),
                used_by: vec!["/1.0/profiles/default".into()],
                ..Default::default()
            }],
            networks: vec![],
            profiles: vec![Profile {
                name: "default".into(),
                config: ConfigMap::new(),
                description: "Default Kante profile".into(),
                devices: root,
                used_by: vec![],
            }],
        }
    }

    #[test]
    fn seed_000_replaces_the_empty_default_pool_and_writes_typed_values_as_strings() {
        let seed: Preseed = serde_yaml::from_str(SEED_000).unwrap();
        let docker = &seed.profiles[1].put.config;
        assert_eq!(docker["security.nesting"], "true");
        assert_eq!(docker["limits.cpu"], "2");
        let steps = plan(&seed, &fresh_host()).unwrap();
        let names: Vec<String> = steps.iter().map(describe).collect();
        assert_eq!(
            names,
            vec![
                "profile default: devices root off while their pool is replaced",
                "storage pool default: replaced (it was empty)",
                "storage pool default (btrfs) created",
                "storage pool docker (btrfs) created",
                "profile default updated",
                "profile docker created",
            ]
        );
    }

    #[test]
    fn a_matching_host_needs_nothing() {
        let seed: Preseed = serde_yaml::from_str(SEED_000).unwrap();
        let mut cur = fresh_host();
        cur.pools = seed
            .storage_pools
            .iter()
            .map(|p| StoragePool {
                name: p.name.clone(),
                driver: p.driver.clone(),
                description: p.description.clone(),
                config: p.config.clone(),
                ..Default::default()
            })
            .collect();
        cur.profiles = seed
            .profiles
            .iter()
            .map(|p| Profile {
                name: p.name.clone(),
                config: p.put.config.clone(),
                description: p.put.description.clone(),
                devices: p.put.devices.clone(),
                used_by: vec![],
            })
            .collect();
        assert!(plan(&seed, &cur).unwrap().is_empty());
    }

    #[test]
    fn refused_up_front() {
        let mut cur = fresh_host();
        cur.pools[0].used_by.push("/1.0/instances/c1".into());
        let seed: Preseed = serde_yaml::from_str(SEED_000).unwrap();
        let err = plan(&seed, &cur).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        let cluster: Preseed = serde_yaml::from_str("cluster: {enabled: true}").unwrap();
        assert!(plan(&cluster, &fresh_host()).is_err());
        assert!(serde_yaml::from_str::<Preseed>("storage_poolz: []").is_err());
    }
}
