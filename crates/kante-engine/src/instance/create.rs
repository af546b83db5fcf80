//! Creating instances: from an image, empty, or as a copy of another.

use std::sync::Arc;

use kante_api::instance::InstancesPost;
use kante_api::operation::OperationClass;
use kante_api::ConfigMap;
use kante_storage::{Revert, VolumeKind};
use kante_store::InstanceRow;
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::instance::idmaps::idmap_json;
use crate::instance::{config, files};
use crate::operations::{instance_resources, Op};
use crate::util::fmt_time;
use crate::Engine;

/// The source of a new instance, resolved before any work starts.
enum Source {
    Image {
        fingerprint: String,
        properties: ConfigMap,
        architecture: String,
    },
    /// An image on another server, fetched (unless it is here already)
    /// by the operation, then an `Image`.
    Remote(crate::image_remote::RemoteImage),
    Empty,
    /// A copy of another instance (with its snapshots unless `instance_only`)
    /// or of one of its snapshots.
    Copy {
        from: String,
        snapshot: Option<String>,
        instance_only: bool,
    },
}

impl Engine {
    /// `POST /1.0/instances`: checks the request, then creates the instance
    /// in an operation ("Creating instance"). A creation that fails gives
    /// up the claim the cluster's scheduler made for it (`scheduler.rs`).
    pub(crate) async fn instance_create(&self, req: InstancesPost) -> Result<Arc<Op>> {
        let (name, config) = (req.name.clone(), req.put.config.clone());
        let made = self.instance_create_checked(req).await;
        if made.is_err() {
            self.release_placement_claim(&name, &config, &self.location.get())
                .await;
        }
        made
    }

    async fn instance_create_checked(&self, req: InstancesPost) -> Result<Arc<Op>> {
        let name = if req.name.is_empty() {
            self.generate_name().await?
        } else {
            req.name.clone()
        };
        kante_api::names::validate_instance_name(&name)?;
        let refresh = req.source.kind == "copy" && req.source.refresh;
        if refresh && self.node.instance_get(&name).await?.is_some() {
            let from = &req.source.source;
            if from.contains('/') {
                return Err(EngineError::bad(
                    "A refresh copies from an instance, not a snapshot",
                ));
            }
            return self
                .instance_refresh(from, &name, req.source.instance_only)
                .await;
        }
        match req.kind.as_str() {
            "" | "container" => {}
            "virtual-machine" => {
                return Err(EngineError::bad("Virtual machines are not supported"))
            }
            other => return Err(EngineError::bad(format!("Invalid instance type {other:?}"))),
        }
        if self.node.instance_get(&name).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Instance {name:?} already exists"
            )));
        }
        let mut req = req;
        let source = self.resolve_source(&req).await?;
        if let Source::Copy { from, snapshot, .. } = &source {
            inherit_from_copy_source(self, &mut req, from, snapshot.as_deref()).await?;
        }
        super::types::apply_instance_type(&mut req)?;
        let profiles = match &req.put.profiles {
            Some(p) => p.clone(),
            None => match &source {
                Source::Image { fingerprint, .. } => self
                    .shared
                    .image_get(fingerprint)
                    .await?
                    .map(|i| i.profiles)
                    .unwrap_or_else(|| vec!["default".into()]),
                _ => vec!["default".into()],
            },
        };
        // Clients may seed volatile.<nic>.hwaddr; other volatile keys are the server's.
        let mut local = req.put.config.clone();
        local.retain(|k, v| {
            !v.is_empty() && (!k.starts_with("volatile.") || k.ends_with(".hwaddr"))
        });
        // Where the cluster's placement put it, and why (`forward.rs`).
        if let Some(reason) = self.forwarding.take_placement(&name) {
            local.insert(crate::forward::PLACEMENT_KEY.into(), reason);
        }
        let NewInstance {
            profiles,
            local,
            pool,
        } = self
            .check_new_instance(&name, &req.put.devices, profiles, local)
            .await?;

        let op = self.ops.create(
            OperationClass::Task,
            "Creating instance",
            instance_resources(&[&name], true),
        );
        let engine = self.arc();
        let (op2, devices, description, ephemeral) = (
            op.clone(),
            req.put.devices.clone(),
            req.put.description.clone(),
            req.put.ephemeral,
        );
        self.ops.run(op.clone(), async move {
            let claimed = local.clone();
            let made = async {
                let source = match source {
                    Source::Remote(remote) => engine.remote_image_source(&op2, remote).await?,
                    s => s,
                };
                let lock = engine.instance_lock(&name);
                let _g = lock.lock().await;
                engine
                    .create_instance(
                        &op2,
                        &name,
                        source,
                        profiles,
                        local,
                        devices,
                        description,
                        ephemeral,
                        &pool,
                    )
                    .await
            }
            .await;
            if made.is_err() {
                let me = engine.location.get();
                engine.release_placement_claim(&name, &claimed, &me).await;
            }
            made
        });
        Ok(op)
    }

    /// Fetches a remote image for an instance (cached, as LXD marks it).
    async fn remote_image_source(
        &self,
        op: &Op,
        remote: crate::image_remote::RemoteImage,
    ) -> Result<Source> {
        let fp = self
            .fetch_image(op, Default::default(), remote, true)
            .await?;
        let img = self
            .shared
            .image_get(&fp)
            .await?
            .ok_or_else(|| EngineError::NotFound("Image not found".into()))?;
        Ok(Source::Image {
            fingerprint: img.fingerprint,
            properties: img.properties,
            architecture: img.architecture,
        })
    }

    async fn generate_name(&self) -> Result<String> {
        for _ in 0..16 {
            let n = format!("kante-{}", &crate::util::random_hex(3));
            if self.node.instance_get(&n).await?.is_none() {
                return Ok(n);
            }
        }
        Err(EngineError::internal("could not pick a free instance name"))
    }

    async fn resolve_source(&self, req: &InstancesPost) -> Result<Source> {
        let s = &req.source;
        match s.kind.as_str() {
            "image" => {
                if !s.server.is_empty() && !s.server.starts_with("unix:") {
                    let value = serde_json::to_value(s).map_err(EngineError::internal)?;
                    if let Some(remote) = crate::image_remote::RemoteImage::parse(&value)? {
                        return Ok(Source::Remote(remote));
                    }
                }
                let img = if !s.fingerprint.is_empty() {
                    self.shared.image_get(&s.fingerprint).await?
                } else if !s.alias.is_empty() {
                    match self.shared.alias_get(&s.alias).await? {
                        Some(a) => self.shared.image_get(&a.target).await?,
                        None => None,
                    }
                } else if !s.properties.is_empty() {
                    self.shared.image_list().await?.into_iter().rev().find(|i| {
                        s.properties
                            .iter()
                            .all(|(k, v)| i.properties.get(k) == Some(v))
                    })
                } else {
                    return Err(EngineError::bad(
                        "Image source needs a fingerprint, an alias or properties",
                    ));
                };
                let img = img.ok_or_else(|| EngineError::NotFound("Image not found".into()))?;
                Ok(Source::Image {
                    fingerprint: img.fingerprint,
                    properties: img.properties,
                    architecture: img.architecture,
                })
            }
            "none" => Ok(Source::Empty),
            "copy" => {
                let (from, snapshot) = match s.source.split_once('/') {
                    Some((i, snap)) => (i.to_string(), Some(snap.to_string())),
                    None => (s.source.clone(), None),
                };
                self.instance_row(&from).await?;
                if let Some(snap) = &snapshot {
                    self.node.snapshot_get(&from, snap).await?.ok_or_else(|| {
                        EngineError::NotFound(format!("Snapshot {from}/{snap} not found"))
                    })?;
                }
                Ok(Source::Copy {
                    from,
                    snapshot,
                    instance_only: s.instance_only,
                })
            }
            "migration" => Err(EngineError::NotImplemented(
                "Migration between servers is not supported yet".into(),
            )),
            "" => Err(EngineError::bad("Missing source type")),
            other => Err(EngineError::bad(format!("Unknown source type {other:?}"))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_instance(
        &self,
        op: &Op,
        name: &str,
        source: Source,
        profiles: Vec<String>,
        mut local: ConfigMap,
        devices: kante_api::DevicesMap,
        description: String,
        ephemeral: bool,
        pool_name: &str,
    ) -> Result<()> {
        let pool = self.pool(pool_name)?;
        let now = fmt_time(kante_api::now());
        let mut architecture = std::env::consts::ARCH.to_string();
        match &source {
            Source::Image {
                fingerprint,
                properties,
                architecture: arch,
            } => {
                architecture = arch.clone();
                for (k, v) in properties {
                    local.insert(format!("image.{k}"), v.clone());
                }
                local.insert("volatile.base_image".into(), fingerprint.clone());
                local.insert("volatile.apply_template".into(), "create".into());
            }
            Source::Copy { from, .. } => {
                let src = self.instance_row(from).await?;
                architecture = src.architecture.clone();
                for (k, v) in &src.config {
                    if k.starts_with("image.") || k == "volatile.base_image" {
                        local.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                // A copy is a new machine: new MACs unless the request names them.
                local.insert("volatile.apply_template".into(), "copy".into());
            }
            Source::Empty => {}
            Source::Remote(_) => {
                return Err(EngineError::internal(
                    "a remote image was not fetched first",
                ))
            }
        }
        local.insert("volatile.uuid".into(), uuid::Uuid::new_v4().to_string());
        local.insert(
            "volatile.cloud-init.instance-id".into(),
            uuid::Uuid::new_v4().to_string(),
        );
        local.insert(
            "volatile.idmap.base".into(),
            self.idmap.host_uid.to_string(),
        );
        local.insert("volatile.idmap.next".into(), idmap_json(&self.idmap));
        local.insert("volatile.last_state.idmap".into(), "[]".into());
        let row = InstanceRow {
            name: name.into(),
            project: kante_store::PROJECT.into(),
            kind: "container".into(),
            architecture,
            ephemeral,
            stateful: false,
            description,
            created_at: now,
            last_used_at: fmt_time(kante_api::zero_time()),
            config: local,
            devices,
            profiles,
        };
        // Recorded as pending until the last step: a crash on the way leaves
        // a record the next start removes with whatever was made (reconcile.rs).
        self.record_pending(&row).await?;
        let built = async {
            let mut revert = Revert::new();
            match source {
                Source::Image { fingerprint, .. } => {
                    // In a cluster, the files may be on another member only.
                    self.ensure_image_files(op, &fingerprint, &pool).await?;
                    self.ensure_image_volume(op, &fingerprint, &pool).await?;
                    let (p, n, f) = (pool.clone(), name.to_string(), fingerprint.clone());
                    let created =
                        tokio::task::spawn_blocking(move || p.create_instance_from_image(&f, &n))
                            .await?;
                    created?;
                    self.touch_image(&fingerprint).await;
                }
                Source::Empty | Source::Remote(_) => {
                    pool.create_instance_empty(name)?;
                }
                Source::Copy {
                    from,
                    snapshot,
                    instance_only,
                } => {
                    self.copy_volume(&from, snapshot.as_deref(), instance_only, name, &pool)
                        .await?;
                }
            }
            {
                let (p, n) = (pool.clone(), name.to_string());
                revert.add(move || {
                    let _ = p.delete_volume(VolumeKind::Container, &n);
                });
            }
            let (_, edevices) = self.expanded(&row).await?;
            if let Some(size) = config::root_disk(&edevices).and_then(|(_, d)| d.get("size")) {
                let bytes = crate::units::parse_size(size).map_err(EngineError::bad)?;
                pool.set_volume_size(VolumeKind::Container, name, Some(bytes))?;
            }
            let rootfs = pool.volume_path(VolumeKind::Container, name).join("rootfs");
            files::write_hostname(&rootfs, name)?;
            self.write_backup_file(&row).await;
            self.record_complete(&row).await?;
            revert.success();
            Ok::<_, EngineError>(())
        }
        .await;
        if let Err(e) = built {
            if let Err(undo) = self.drop_record(name).await {
                tracing::error!(
                    instance = name,
                    "dropping the record of a failed creation: {undo}"
                );
            }
            return Err(e);
        }
        op.set_metadata(json!({}));
        self.events.lifecycle(
            "instance-created",
            &format!("/1.0/instances/{name}"),
            json!({}),
        );
        Ok(())
    }
}

/// A new instance's request once checked: what its record will hold.
pub(crate) struct NewInstance {
    pub profiles: Vec<String>,
    /// The local config, MACs assigned.
    pub local: ConfigMap,
    /// The root disk's pool (loaded).
    pub pool: String,
}

impl Engine {
    /// Checks a new instance's profiles, config and devices before anything
    /// is made (a creation and a migration's receiving side): no duplicate
    /// profile, valid keys once expanded, devices that can be satisfied
    /// here (networks, pools, NIC names), a root disk on a loaded pool.
    /// Assigns the MACs the request does not set.
    pub(crate) async fn check_new_instance(
        &self,
        name: &str,
        devices: &kante_api::DevicesMap,
        profiles: Vec<String>,
        mut local: ConfigMap,
    ) -> Result<NewInstance> {
        let mut seen = std::collections::HashSet::new();
        for p in &profiles {
            if !seen.insert(p) {
                return Err(EngineError::bad(format!("Duplicate profile {p:?}")));
            }
        }
        config::validate_config(&local)?;
        config::validate_devices(devices)?;
        let layers = self.profile_layers(&profiles).await?;
        let (econfig, edevices) = config::expand(&layers, &local, devices);
        config::validate_config(&econfig)?;
        self.check_device_refs(&edevices).await?;
        self.check_instance_devices(&edevices).await?;
        // MACs are fixed at create, so the first lease is the lasting one.
        Engine::assign_hwaddrs(&edevices, &mut local);
        self.plan_instance_nics(name, &edevices, &local).await?;
        let (_, root) = config::root_disk(&edevices)
            .ok_or_else(|| EngineError::bad("Failed getting root disk: no root disk device (path \"/\") in the instance or its profiles"))?;
        let pool = root.get("pool").cloned().unwrap_or_default();
        let pool_handle = self.pool(&pool)?;
        if root.contains_key("size") && pool_handle.driver.info().name == "dir" {
            return Err(EngineError::bad(format!(
                "Root disk size limits need a btrfs pool; pool {pool:?} uses the dir driver"
            )));
        }
        Ok(NewInstance {
            profiles,
            local,
            pool,
        })
    }
}

/// A copy request that names no config, devices or profiles takes the
/// source's (lxc sends them itself); MAC addresses are never carried over,
/// so the copy gets new ones unless the request sets them.
async fn inherit_from_copy_source(
    engine: &Engine,
    req: &mut InstancesPost,
    from: &str,
    snapshot: Option<&str>,
) -> Result<()> {
    let (config, devices, profiles) = match snapshot {
        Some(snap) => {
            let s = engine
                .node
                .snapshot_get(from, snap)
                .await?
                .ok_or_else(|| EngineError::NotFound("Snapshot not found".into()))?;
            (s.config, s.devices, s.profiles)
        }
        None => {
            let r = engine.instance_row(from).await?;
            (r.config, r.devices, r.profiles)
        }
    };
    if req.put.config.is_empty() {
        req.put.config = config
            .into_iter()
            .filter(|(k, _)| !k.starts_with("volatile."))
            .collect();
    } else {
        req.put
            .config
            .retain(|k, _| !k.starts_with("volatile.") || req_sets_hwaddr(k));
    }
    if req.put.devices.is_empty() {
        req.put.devices = devices;
    }
    if req.put.profiles.is_none() {
        req.put.profiles = Some(profiles);
    }
    Ok(())
}

fn req_sets_hwaddr(k: &str) -> bool {
    k.ends_with(".hwaddr")
}

impl Engine {
    /// Copies an instance's volume (and its snapshots, with their records),
    /// or one snapshot, into a new instance volume in `pool`.
    async fn copy_volume(
        &self,
        from: &str,
        snapshot: Option<&str>,
        instance_only: bool,
        name: &str,
        pool: &kante_storage::Pool,
    ) -> Result<()> {
        let src_row = self.instance_row(from).await?;
        let src_pool = self.pool(&self.instance_pool_name(&src_row).await)?;
        let (p, n) = (pool.clone(), name.to_string());
        match snapshot {
            Some(snap) => {
                let path = src_pool.snapshot_path(VolumeKind::Container, from, snap)?;
                tokio::task::spawn_blocking(move || p.copy_into(&path, VolumeKind::Container, &n))
                    .await??;
                return Ok(());
            }
            None => {
                let src = self.instance_volume(&src_row).await?;
                tokio::task::spawn_blocking(move || p.copy_into(&src, VolumeKind::Container, &n))
                    .await??;
            }
        }
        if instance_only {
            return Ok(());
        }
        for srow in self.node.snapshot_list(from).await? {
            self.copy_snapshot(&src_pool, &srow, pool, name).await?;
        }
        Ok(())
    }
}
