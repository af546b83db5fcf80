//! `PUT`/`PATCH /1.0/instances/{name}`: a new config, devices and
//! profiles, checked as a whole, applied live to a running instance where
//! they can be, then stored.

use kante_api::instance::InstancePut;
use kante_api::ConfigMap;

use crate::error::{EngineError, Result};
use crate::instance::{cloudinit, config, live};
use crate::Engine;

impl Engine {
    /// `PUT /1.0/instances/{name}` (full replace of the writable fields) or
    /// `PATCH` (merge) — `merge` selects which.
    pub(crate) async fn instance_update(
        &self,
        name: &str,
        req: InstancePut,
        merge: bool,
    ) -> Result<live::ChangeReport> {
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        let mut row = self.instance_row(name).await?;
        let mut config = if merge {
            row.config.clone()
        } else {
            ConfigMap::new()
        };
        // Server-owned volatile keys keep their values whatever the client sends
        // back (lxc and Ansible echo them); only volatile.<dev>.hwaddr is the user's.
        let volatile: ConfigMap = row
            .config
            .iter()
            .filter(|(k, _)| k.starts_with("volatile."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in req.config {
            if k.starts_with("volatile.") && !k.ends_with(".hwaddr") {
                continue;
            }
            config.insert(k, v);
        }
        for (k, v) in volatile {
            config.entry(k).or_insert(v);
        }
        config.retain(|_, v| !v.is_empty());
        let devices = if merge {
            let mut d = row.devices.clone();
            d.extend(req.devices);
            d
        } else {
            req.devices
        };
        let profiles = match req.profiles {
            Some(p) => p,
            None if merge => row.profiles.clone(),
            None => row.profiles.clone(),
        };
        config::validate_config(&config)?;
        config::validate_devices(&devices)?;
        let layers = self.profile_layers(&profiles).await?;
        let (econfig, edevices) = config::expand(&layers, &config, &devices);
        config::validate_config(&econfig)?;
        if config::root_disk(&edevices).is_none() {
            return Err(EngineError::bad("Failed getting root disk: no root disk device (path \"/\") in the instance or its profiles"));
        }
        Engine::assign_hwaddrs(&edevices, &mut config);
        self.plan_instance_nics(name, &edevices, &config).await?;
        self.check_device_refs(&edevices).await?;
        self.check_instance_devices(&edevices).await?;
        let old = self.expanded(&row).await?;
        let new = (econfig, edevices);
        let report = live::ChangeReport::between(&old, &new);
        // New cloud-init data gets a new instance-id, so cloud-init runs again (as in LXD).
        if cloudinit::data_changed(&old.0, &new.0) {
            config.insert(
                "volatile.cloud-init.instance-id".into(),
                uuid::Uuid::new_v4().to_string(),
            );
        }
        if let Some(r) = self.running(name) {
            // Devices change live; if that fails, the stored config stays as it was.
            self.apply_live(&r, name, &old, &new, &mut config).await?;
        }
        let (econfig, _) = new;
        row.config = config;
        row.devices = devices;
        row.profiles = profiles;
        if !merge || !req.description.is_empty() {
            row.description = req.description;
        }
        row.ephemeral = req.ephemeral;
        self.node.instance_update(&row).await?;
        self.write_backup_file(&row).await;
        if let Some(r) = self.running(name) {
            let guard = crate::lock(&r.container);
            if let Some(c) = guard.as_ref() {
                self.apply_limits(c, &econfig)?;
            }
        }
        self.events.lifecycle(
            "instance-updated",
            &format!("/1.0/instances/{name}"),
            serde_json::json!({}),
        );
        Ok(report)
    }
}
