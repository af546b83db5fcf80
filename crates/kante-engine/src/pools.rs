//! Storage pools as the engine manages them (driver work is in kante-storage).

use kante_api::ConfigMap;
use kante_storage::Pool;
use kante_store::PoolRow;

use crate::error::{EngineError, Result};
use crate::Engine;

pub use kante_api::storage::{StoragePool, StoragePoolsPost};

impl Engine {
    pub(crate) async fn create_default_pool(&self) -> Result<()> {
        let driver = self.storage_drivers.get("dir")?;
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
        self.node
            .pool_create(&PoolRow {
                name: "default".into(),
                driver: "dir".into(),
                description: String::new(),
                config,
            })
            .await?;
        Ok(())
    }

    /// Brings every pool online (at start). A pool that cannot be mounted
    /// (say, its loop file is gone) is logged and left out; the others work.
    /// Leftovers of interrupted work are dealt with later, by
    /// `reconcile_at_start`, which needs them to tell what was interrupted.
    pub(crate) async fn load_pools(&self) -> Result<()> {
        let rows = self.node.pool_list().await?;
        let mut pools = self.pools.write().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            let result = (|| -> Result<Pool> {
                let driver = self.storage_drivers.get(&row.driver)?;
                let base = self.paths.pool(&row.name);
                driver.mount_pool(&base, &row.config)?;
                let pool = Pool {
                    name: row.name.clone(),
                    base,
                    config: row.config.clone(),
                    driver,
                };
                Ok(pool)
            })();
            match result {
                Ok(pool) => {
                    pools.insert(row.name, pool);
                }
                Err(e) => tracing::error!(pool = %row.name, "storage pool unavailable: {e}"),
            }
        }
        Ok(())
    }

    /// `POST /1.0/storage-pools`.
    pub(crate) async fn pool_create(&self, req: StoragePoolsPost) -> Result<()> {
        kante_api::names::validate_entity_name("Storage pool", &req.name)?;
        if self.node.pool_get(&req.name).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Storage pool {:?} already exists",
                req.name
            )));
        }
        let driver = self.storage_drivers.get(&req.driver)?;
        driver.validate_config(&req.config)?;
        let base = self.paths.pool(&req.name);
        let mut config = req.config.clone();
        let (d, b) = (driver.clone(), base.clone());
        let config = tokio::task::spawn_blocking(move || -> Result<ConfigMap> {
            d.create_pool(&b, &mut config)?;
            Ok(config)
        })
        .await??;
        let row = PoolRow {
            name: req.name.clone(),
            driver: req.driver.clone(),
            description: req.description.clone(),
            config: config.clone(),
        };
        if let Err(e) = self.node.pool_create(&row).await {
            let _ = driver.delete_pool(&base, &config);
            return Err(e.into());
        }
        self.pools
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                req.name.clone(),
                Pool {
                    name: req.name,
                    base,
                    config,
                    driver,
                },
            );
        Ok(())
    }

    /// `DELETE /1.0/storage-pools/{name}`: refused while anything uses it.
    pub(crate) async fn pool_delete(&self, name: &str) -> Result<()> {
        let info = self.pool_get(name).await?;
        if !info.used_by.is_empty() {
            return Err(EngineError::bad(format!(
                "The storage pool is currently in use by {}",
                info.used_by.join(", ")
            )));
        }
        let pool = self.pool(name)?;
        // Cached image volumes go with the pool.
        for fp in pool.list_volumes(kante_storage::VolumeKind::Image) {
            pool.delete_volume(kante_storage::VolumeKind::Image, &fp)?;
        }
        let p = pool.clone();
        tokio::task::spawn_blocking(move || p.driver.delete_pool(&p.base, &p.config)).await??;
        self.node.pool_delete(name).await?;
        self.pools
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(())
    }

    /// `PUT`/`PATCH`: the description and `user.*` keys; the rest is fixed at create.
    pub(crate) async fn pool_update(
        &self,
        name: &str,
        description: String,
        config: ConfigMap,
        merge: bool,
    ) -> Result<()> {
        let mut row = self
            .node
            .pool_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Storage pool not found".into()))?;
        for (k, v) in &config {
            if k.starts_with("user.") {
                continue;
            }
            if row.config.get(k) != Some(v) {
                return Err(EngineError::bad(format!(
                    "Storage pool key {k:?} cannot be changed after creation"
                )));
            }
        }
        if !merge {
            row.config
                .retain(|k, _| !k.starts_with("user.") || config.contains_key(k));
        }
        row.config.extend(config);
        // An empty value removes the key, as in LXD.
        row.config.retain(|_, v| !v.is_empty());
        if !merge || !description.is_empty() {
            row.description = description;
        }
        self.node.pool_update(&row).await?;
        Ok(())
    }

    pub(crate) async fn pool_list(&self) -> Result<Vec<StoragePool>> {
        let (instances, profiles) =
            tokio::join!(self.instances_expanded(), self.shared.profile_list());
        let (instances, profiles) = (instances?, profiles?);
        let root_pools: Vec<String> = instances
            .iter()
            .map(|(_, expanded)| crate::instance::root_pool(expanded.as_ref().ok().map(|(_, d)| d)))
            .collect();
        let instances: Vec<_> = instances.into_iter().map(|(i, _)| i).collect();
        Ok(self
            .node
            .pool_list()
            .await?
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
                        .zip(&root_pools)
                        .filter(|(i, root)| uses(&i.devices) || **root == row.name)
                        .map(|(i, _)| format!("/1.0/instances/{}", i.name)),
                );
                // Custom volumes keep the pool too (LXD lists them the same way).
                if let Ok(pool) = self.pool(&row.name) {
                    used_by.extend(
                        pool.list_custom_volumes()
                            .into_iter()
                            .map(|v| format!("/1.0/storage-pools/{}/volumes/custom/{v}", row.name)),
                    );
                }
                StoragePool {
                    name: row.name,
                    driver: row.driver,
                    description: row.description,
                    config: row.config,
                    status: "Created".into(),
                    locations: vec![self.location.get()],
                    used_by,
                }
            })
            .collect())
    }

    pub(crate) async fn pool_get(&self, name: &str) -> Result<StoragePool> {
        self.pool_list()
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| EngineError::NotFound("Storage pool not found".into()))
    }
}
