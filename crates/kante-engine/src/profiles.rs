//! Profiles: named config and device sets that instances inherit, in order.

use kante_api::{ConfigMap, DevicesMap};
use kante_store::ProfileRow;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::instance::config::{validate_config, validate_devices};
use crate::Engine;

/// A profile as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
    pub used_by: Vec<String>,
}

/// `POST /1.0/profiles` and the writable part for `PUT`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfilePut {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "kante_api::serde_util::string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "kante_api::serde_util::devices_map")]
    pub devices: DevicesMap,
}

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
    pub fn profile_get(&self, name: &str) -> Result<Profile> {
        let row = self
            .store
            .profile_get(name)?
            .ok_or_else(|| EngineError::NotFound("Profile not found".into()))?;
        Ok(self.render_profile(row))
    }

    pub fn profile_list(&self) -> Result<Vec<Profile>> {
        Ok(self
            .store
            .profile_list()?
            .into_iter()
            .map(|r| self.render_profile(r))
            .collect())
    }

    fn render_profile(&self, row: ProfileRow) -> Profile {
        let used_by = self
            .store
            .instance_list()
            .unwrap_or_default()
            .into_iter()
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

    pub fn profile_create(&self, req: ProfilePut) -> Result<()> {
        kante_api::names::validate_entity_name("Profile", &req.name)?;
        validate_config(&req.config)?;
        validate_devices(&req.devices)?;
        self.store.profile_create(&ProfileRow {
            name: req.name,
            description: req.description,
            config: req.config,
            devices: req.devices,
        })?;
        Ok(())
    }

    /// Replaces a profile. Instances using it see the change on their next
    /// start (live application of limits arrives with the limits work).
    pub fn profile_update(&self, name: &str, req: ProfilePut) -> Result<()> {
        self.store
            .profile_get(name)?
            .ok_or_else(|| EngineError::NotFound("Profile not found".into()))?;
        let mut req = req;
        // An empty value removes the key, as in LXD (and PATCH relies on it).
        req.config.retain(|_, v| !v.is_empty());
        validate_config(&req.config)?;
        validate_devices(&req.devices)?;
        self.store.profile_update(&ProfileRow {
            name: name.into(),
            description: req.description,
            config: req.config,
            devices: req.devices,
        })?;
        Ok(())
    }

    pub fn profile_delete(&self, name: &str) -> Result<()> {
        if name == "default" {
            return Err(EngineError::bad(
                "The \"default\" profile cannot be deleted",
            ));
        }
        let p = self.profile_get(name)?;
        if !p.used_by.is_empty() {
            return Err(EngineError::bad("Profile is currently in use"));
        }
        self.store.profile_delete(name)?;
        Ok(())
    }
}
