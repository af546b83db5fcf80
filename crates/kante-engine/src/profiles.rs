//! Profiles: named config and device sets that instances inherit, in order.

pub use kante_api::profile::{Profile, ProfilePut, ProfilesPost};
use kante_api::{ConfigMap, DevicesMap};
use kante_store::{InstanceRow, ProfileRow};

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use crate::instance::config::{expand, root_disk, validate_config, validate_devices};
use crate::instance::live::ChangeReport;
use crate::Engine;

/// The key of the local lock (`Engine::object_lock`) that serialises
/// profile updates on this host: each checks every user against the new
/// profile, with the other profiles as they are. Names are kept unique by
/// the state (`SharedState::profile_create` conflicts on a taken one).
const PROFILE_UPDATES: &str = "profiles";

pub fn default_profile() -> ProfileRow {
    let mut devices = DevicesMap::new();
    devices.insert(
        "root".into(),
        [("type", "disk"), ("path", "/"), ("pool", "default")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    ProfileRow {
        name: "default".into(),
        description: "Default Kante profile".into(),
        config: ConfigMap::new(),
        devices,
    }
}

impl Engine {
    pub(crate) async fn profile_get(&self, name: &str) -> Result<Profile> {
        let row = self
            .shared
            .profile_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Profile not found".into()))?;
        let instances = self.node.instance_list().await.unwrap_or_default();
        Ok(render_profile(row, &instances))
    }

    /// Every profile, the instances read once for all of them.
    pub(crate) async fn profile_list(&self) -> Result<Vec<Profile>> {
        let (rows, instances) = tokio::join!(self.shared.profile_list(), self.node.instance_list());
        let instances = instances.unwrap_or_default();
        Ok(rows?
            .into_iter()
            .map(|r| render_profile(r, &instances))
            .collect())
    }

    pub(crate) async fn profile_create(&self, req: ProfilesPost) -> Result<()> {
        kante_api::names::validate_entity_name("Profile", &req.name)?;
        let put = req.put;
        validate_config(&put.config)?;
        validate_devices(&put.devices)?;
        self.check_device_refs(&put.devices).await?;
        self.shared
            .profile_create(&ProfileRow {
                name: req.name,
                description: put.description,
                config: put.config,
                devices: put.devices,
            })
            .await?;
        Ok(())
    }

    /// Replaces a profile and applies it to every instance using it: each
    /// must still be valid (checked before anything is stored), and running
    /// ones take what can change live at once. Returns, per instance, which
    /// changes took effect and which wait for its next start.
    pub(crate) async fn profile_update(
        &self,
        name: &str,
        req: ProfilePut,
    ) -> Result<BTreeMap<String, ChangeReport>> {
        let lock = self.object_lock(PROFILE_UPDATES);
        let _g = lock.lock().await;
        let current = self
            .shared
            .profile_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Profile not found".into()))?;
        let mut req = req;
        // An empty value removes the key, as in LXD (and PATCH relies on it).
        req.config.retain(|_, v| !v.is_empty());
        validate_config(&req.config)?;
        validate_devices(&req.devices)?;
        self.check_device_refs(&req.devices).await?;
        let users: Vec<_> = self
            .node
            .instance_list()
            .await?
            .into_iter()
            .filter(|i| i.profiles.iter().any(|p| p == name))
            .collect();
        // Every user, expanded with the new profile, must still be a valid instance.
        let table = self.profile_table().await?;
        let layers_with = |row: &kante_store::InstanceRow, cfg: &ConfigMap, devs: &DevicesMap| {
            let mut layers = crate::instance::layers_from(&table, &row.profiles)?;
            for (p, layer) in row.profiles.iter().zip(layers.iter_mut()) {
                if p == name {
                    *layer = (cfg.clone(), devs.clone());
                }
            }
            Ok::<_, EngineError>(expand(&layers, &row.config, &row.devices))
        };
        for row in &users {
            let (econfig, edevices) = layers_with(row, &req.config, &req.devices)
                .map_err(|e| EngineError::bad(format!("Instance {:?}: {e}", row.name)))?;
            let checked = match validate_config(&econfig) {
                Ok(()) => self.check_device_refs(&edevices).await,
                Err(e) => Err(e),
            };
            checked.map_err(|e| EngineError::bad(format!("Instance {:?}: {e}", row.name)))?;
            if root_disk(&edevices).is_none() {
                return Err(EngineError::bad(format!(
                    "Instance {:?} would have no root disk device",
                    row.name
                )));
            }
        }
        self.shared
            .profile_update(&ProfileRow {
                name: name.into(),
                description: req.description.clone(),
                config: req.config.clone(),
                devices: req.devices.clone(),
            })
            .await?;
        let mut reports = BTreeMap::new();
        let mut failures = Vec::new();
        for row in users {
            let old = layers_with(&row, &current.config, &current.devices)?;
            let new = layers_with(&row, &req.config, &req.devices)?;
            let report = ChangeReport::between(&old, &new);
            if crate::instance::cloudinit::data_changed(&old.0, &new.0) {
                // As for an instance edit: a new instance-id makes cloud-init run again.
                let lock = self.instance_lock(&row.name);
                let _g = lock.lock().await;
                let mut fresh = self.instance_row(&row.name).await?;
                fresh.config.insert(
                    "volatile.cloud-init.instance-id".into(),
                    uuid::Uuid::new_v4().to_string(),
                );
                self.node.instance_update(&fresh).await?;
            }
            if let Err(e) = self.apply_profile_live(&row.name, &old, &new).await {
                failures.push(format!("{}: {e}", row.name));
            }
            reports.insert(row.name, report);
        }
        if !failures.is_empty() {
            return Err(EngineError::bad(format!(
                "The profile was saved, but applying it to running instances failed: {}",
                failures.join("; ")
            )));
        }
        Ok(reports)
    }

    /// Applies a profile change to one running instance (no-op if stopped).
    async fn apply_profile_live(
        &self,
        name: &str,
        old: &(ConfigMap, DevicesMap),
        new: &(ConfigMap, DevicesMap),
    ) -> Result<()> {
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        let Some(r) = self.running(name) else {
            return Ok(());
        };
        let mut row = self.instance_row(name).await?;
        let mut config = row.config.clone();
        Engine::assign_hwaddrs(&new.1, &mut config);
        self.apply_live(&r, name, old, new, &mut config).await?;
        if config != row.config {
            row.config = config;
            self.node.instance_update(&row).await?;
        }
        let guard = crate::lock(&r.container);
        if let Some(c) = guard.as_ref() {
            self.apply_limits(c, &new.0)?;
        }
        Ok(())
    }

    /// `POST /1.0/profiles/{name}`: renames it everywhere it is used.
    pub(crate) async fn profile_rename(&self, name: &str, new: &str) -> Result<()> {
        if name == "default" {
            return Err(EngineError::bad(
                "The \"default\" profile cannot be renamed",
            ));
        }
        kante_api::names::validate_entity_name("Profile", new)?;
        self.shared.profile_rename(name, new).await?;
        self.node.instances_rename_profile(name, new).await?;
        Ok(())
    }

    pub(crate) async fn profile_delete(&self, name: &str) -> Result<()> {
        if name == "default" {
            return Err(EngineError::bad(
                "The \"default\" profile cannot be deleted",
            ));
        }
        let p = self.profile_get(name).await?;
        if !p.used_by.is_empty() {
            return Err(EngineError::bad("Profile is currently in use"));
        }
        self.shared.profile_delete(name).await?;
        Ok(())
    }
}

/// A profile as the API shows it, with the instances that use it.
fn render_profile(row: ProfileRow, instances: &[InstanceRow]) -> Profile {
    let used_by = instances
        .iter()
        .filter(|i| i.profiles.contains(&row.name))
        .map(|i| format!("/1.0/instances/{}", i.name))
        .collect();
    Profile {
        name: row.name,
        description: row.description,
        config: row.config,
        devices: row.devices,
        used_by,
    }
}
