//! Storage pools as the engine manages them (driver work is in kante-storage).

use kante_api::ConfigMap;
use kante_storage::Pool;
use kante_store::PoolRow;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::Engine;

/// A pool as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoragePool {
    pub name: String,
    pub driver: String,
    pub description: String,
    pub config: ConfigMap,
    pub status: String,
    pub locations: Vec<String>,
    pub used_by: Vec<String>,
}

impl Engine {
    pub(crate) fn create_default_pool(&self) -> Result<()> {
        let driver = kante_storage::driver("dir")?;
        let base = self.paths.pool("default");
        let mut config = ConfigMap::new();
        if base.join("containers").is_dir() && base.join("images").is_dir() {
            // The database was lost but the pool is still there: adopt it, so
            // its instances can be recovered from their backup.yaml.
            tracing::info!(pool = %base.display(), "adopting the existing default pool");
            config.insert("source".into(), base.display().to_string());
        } else {
            driver.create_pool(&base, &mut config)?;
        }
        self.store.pool_create(&PoolRow {
            name: "default".into(),
            driver: "dir".into(),
            description: String::new(),
            config,
        })?;
        Ok(())
    }

    /// Brings every pool online (at start).
    pub(crate) fn load_pools(&self) -> Result<()> {
        let mut pools = self.pools.write().unwrap_or_else(|p| p.into_inner());
        for row in self.store.pool_list()? {
            let driver = kante_storage::driver(&row.driver)?;
            let base = self.paths.pool(&row.name);
            driver.mount_pool(&base, &row.config)?;
            let pool = Pool {
                name: row.name.clone(),
                base,
                config: row.config,
                driver,
            };
            pool.remove_staging_leftovers();
            pools.insert(row.name, pool);
        }
        Ok(())
    }

    pub fn pool(&self, name: &str) -> Result<Pool> {
        self.pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("Storage pool {name:?} not found")))
    }

    pub fn pool_list(&self) -> Result<Vec<StoragePool>> {
        let instances = self.store.instance_list()?;
        let profiles = self.store.profile_list()?;
        Ok(self
            .store
            .pool_list()?
            .into_iter()
            .map(|row| {
                let uses = |devices: &kante_api::DevicesMap| {
                    devices.values().any(|d| d.get("pool") == Some(&row.name))
                };
                let mut used_by: Vec<String> = profiles
                    .iter()
                    .filter(|p| uses(&p.devices))
                    .map(|p| format!("/1.0/profiles/{}", p.name))
                    .collect();
                used_by.extend(
                    instances
                        .iter()
                        .filter(|i| uses(&i.devices) || self.instance_pool_name(i) == row.name)
                        .map(|i| format!("/1.0/instances/{}", i.name)),
                );
                StoragePool {
                    name: row.name,
                    driver: row.driver,
                    description: row.description,
                    config: row.config,
                    status: "Created".into(),
                    locations: vec!["none".into()],
                    used_by,
                }
            })
            .collect())
    }

    pub fn pool_get(&self, name: &str) -> Result<StoragePool> {
        self.pool_list()?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| EngineError::NotFound("Storage pool not found".into()))
    }
}
