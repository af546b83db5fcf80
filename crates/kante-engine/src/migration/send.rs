//! The sending side: `POST /1.0/instances/{name}` with `migration: true`
//! (or `POST …/snapshots/{snap}`: that snapshot as a new instance).
//! Without `target` (pull, relay) the operation listens: its metadata holds
//! the `control` and `fs` secrets; with `target` (push) it dials the
//! target's operation. Then: the offer (snapshots with their records, the
//! stream types this pool can send), the sink's answer (the type), the
//! volume stream on `fs`, and the sink's verdict on `control`.

use std::sync::Arc;

use kante_api::instance::{InstancePost, InstanceStatus};
use kante_api::operation::OperationClass;
use kante_storage::{MigrationType, VolumeKind};
use kante_store::SnapshotRow;

use super::link::{self, peer_failed, Connect, Control, Link, Peer};
use super::lxd;
use super::proto::{self, MigrationControl, MigrationHeader};
use super::pump::stream_out;
use crate::error::{EngineError, Result};
use crate::operations::{instance_resources, Op};
use crate::Engine;

impl Engine {
    /// Starts the sending side of a migration of instance `name`, or of
    /// its `snapshot` as a new instance (`POST …/snapshots/{snap}`);
    /// everything that can be refused is refused here, before any
    /// operation exists. A running instance (lxc `--stateless`: `live`
    /// false) is frozen while its tree is read, then thawed; `live` (what
    /// lxc sends for a running instance otherwise) needs CRIU: refused.
    pub(crate) async fn migration_source(
        &self,
        name: &str,
        snapshot: Option<&str>,
        req: InstancePost,
    ) -> Result<Arc<Op>> {
        self.instance_row(name).await?;
        if req.live {
            return Err(EngineError::bad(
                "Live migration is not supported: stop the instance first, or use --stateless (it is then frozen while it is copied)",
            ));
        }
        match snapshot {
            Some(snap) => {
                self.snapshot_exists(name, snap).await?;
            }
            None => self.require_readable(name)?,
        }
        let dial = match &req.target {
            Some(t) if !t.operation.is_empty() => Some(Peer::parse(
                &t.operation,
                &t.certificate,
                &t.secrets.clone().into_iter().collect(),
            )?),
            _ => None,
        };
        let class = if dial.is_some() {
            OperationClass::Task
        } else {
            OperationClass::Websocket
        };
        let op = self.ops.create(
            class,
            "Migrating instance",
            instance_resources(&[name], true),
        );
        let connect = match dial {
            Some(peer) => Connect::Dial(peer),
            None => {
                let (meta, connect) = link::listen(&op);
                op.set_metadata(meta);
                connect
            }
        };
        op.set_cancellable();
        let what = match snapshot {
            Some(s) => What::Snapshot(s.to_string()),
            None => What::Instance {
                instance_only: req.instance_only || req.container_only,
            },
        };
        let (engine, name, op2) = (self.arc(), name.to_string(), op.clone());
        self.ops.run(op.clone(), async move {
            // Held from here to the verdict: no start, edit or delete while
            // the peer is awaited and the tree is read (a client that
            // deletes the source at once, as pylxd's `migrate()` without
            // `wait`, waits for the copy).
            let lock = engine.instance_lock(&name);
            let _g = lock.lock().await;
            let mut link = connect.link(&op2).await?;
            let r = engine.migration_send(&op2, &name, &what, &mut link).await;
            if let Err(e) = &r {
                let _ =
                    link::send_msg(&link.control, &MigrationControl::failed(&e.to_string())).await;
            }
            r
        });
        Ok(op)
    }

    /// Refuses an instance in error: neither stopped nor one that a
    /// freeze holds still.
    fn require_readable(&self, name: &str) -> Result<()> {
        match self.instance_status(name) {
            InstanceStatus::Error => Err(EngineError::bad(format!(
                "Instance {name:?} is in error: stop it before copying or moving it to another server"
            ))),
            _ => Ok(()),
        }
    }

    /// A snapshot's existence, as a 404.
    async fn snapshot_exists(&self, name: &str, snap: &str) -> Result<()> {
        self.node
            .snapshot_get(name, snap)
            .await?
            .map(|_| ())
            .ok_or_else(|| EngineError::NotFound(format!("Snapshot {name}/{snap} not found")))
    }

    /// Sends, a running instance frozen for the time (thawed whatever
    /// the outcome; a frozen one stays so).
    async fn migration_send(
        &self,
        op: &Op,
        name: &str,
        what: &What,
        link: &mut Link,
    ) -> Result<()> {
        let thaw = match what {
            What::Instance { .. } => {
                self.require_readable(name)?;
                if self.instance_status(name) == InstanceStatus::Running {
                    self.freeze(name, true).await?;
                    true
                } else {
                    false
                }
            }
            What::Snapshot(_) => false,
        };
        let r = self.send_tree(op, name, what, link).await;
        if thaw {
            if let Err(e) = self.freeze(name, false).await {
                tracing::error!(instance = name, "thawing after a migration: {e}");
            }
        }
        r
    }

    async fn send_tree(&self, op: &Op, name: &str, what: &What, link: &mut Link) -> Result<()> {
        let row = self.instance_row(name).await?;
        let snaps: Vec<SnapshotRow> = match what {
            What::Snapshot(snap) => {
                self.snapshot_exists(name, snap).await?;
                Vec::new()
            }
            What::Instance { instance_only } => {
                if *instance_only {
                    Vec::new()
                } else {
                    self.node.snapshot_list(name).await?
                }
            }
        };
        let names: Vec<String> = snaps.iter().map(|s| s.name.clone()).collect();
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let (offered, identities) = {
            let trees = match what {
                What::Snapshot(snap) => vec![snap.clone()],
                What::Instance { .. } => names.clone(),
            };
            let (p, n, snaps) = (pool.clone(), name.to_string(), names.clone());
            tokio::task::spawn_blocking(move || {
                let ids: Vec<Option<String>> = snaps
                    .iter()
                    .map(|s| {
                        p.snapshot_identity(VolumeKind::Container, &n, s)
                            .map(|i| i.sent_as)
                    })
                    .collect();
                p.send_types(VolumeKind::Container, &n, &trees)
                    .map(|t| (t, ids))
            })
            .await??
        };
        // No CRIU type: an LXD target then expects no final sync (the
        // tree is read stopped or frozen, once). The rsync features are
        // for an LXD target; a Kante one answers in field 1000.
        let offer = MigrationHeader {
            fs: proto::FS_RSYNC,
            snapshot_names: names.clone(),
            snapshots: snaps
                .iter()
                .zip(identities)
                .map(|(s, tree)| proto::Snapshot {
                    kante_tree: tree,
                    ..snapshot_message(s)
                })
                .collect(),
            rsync_features: Some(proto::RsyncFeatures::kante()),
            kante_types: offered
                .iter()
                .map(|t| t.name().to_string())
                .chain([lxd::RSYNC.to_string()])
                .collect(),
            ..Default::default()
        };
        link::send_msg(&link.control, &offer).await?;
        let ty = match link::recv_control(&mut link.control, op).await? {
            // A Kante target refreshing its btrfs copy as differences.
            Control::Header(h) if h.refresh == Some(true) && h.kante_base.is_some() => {
                return self
                    .send_refresh(op, name, what, &pool, &names, &offered, &h, link)
                    .await;
            }
            // LXD (no field 1000), or a Kante target refreshing its copy.
            Control::Header(h) if h.kante_types.is_empty() || h.kante_types == [lxd::RSYNC] => {
                let offered = match what {
                    What::Snapshot(_) => Vec::new(),
                    What::Instance { .. } => names,
                };
                return self.send_rsync(op, name, what, &offered, &h, link).await;
            }
            Control::Header(h) => MigrationType::parse(&h.kante_types[0])
                .filter(|t| offered.contains(t))
                .ok_or_else(|| {
                    EngineError::bad(format!(
                        "The migration target chose stream type {:?}, which was not offered",
                        h.kante_types[0]
                    ))
                })?,
            Control::Done(c) => return Err(peer_failed(&c)),
        };

        let (p, n, snap) = (pool.clone(), name.to_string(), what.snapshot());
        stream_out(op, name, link, move |w| match snap {
            Some(s) => p.send_snapshot_as_volume(VolumeKind::Container, &n, &s, ty, None, w),
            None => p.send_volume(VolumeKind::Container, &n, &names, ty, None, w),
        })
        .await
    }

    /// The source's side of a refresh as `btrfs` differences: the target
    /// holds snapshot `kante_base` (a copy received from ours) and names
    /// the newer snapshots it lacks; they and the volume go as differences
    /// from it. Anything not offered, or out of order, is refused.
    #[allow(clippy::too_many_arguments)]
    async fn send_refresh(
        &self,
        op: &Op,
        name: &str,
        what: &What,
        pool: &kante_storage::Pool,
        names: &[String],
        offered: &[MigrationType],
        answer: &MigrationHeader,
        link: &mut Link,
    ) -> Result<()> {
        let ty = MigrationType::BtrfsSend;
        if !matches!(what, What::Instance { .. })
            || answer.kante_types != [ty.name()]
            || !offered.contains(&ty)
        {
            return Err(EngineError::bad(
                "The migration target asked for a btrfs refresh, which was not offered",
            ));
        }
        let base = answer.kante_base.clone().unwrap_or_default();
        let pos = |s: &str| names.iter().position(|n| n == s);
        let mut last = pos(&base).ok_or_else(|| {
            EngineError::bad(format!(
                "The migration target refreshes from snapshot {base:?}, which was not offered"
            ))
        })?;
        for s in &answer.snapshot_names {
            match pos(s) {
                Some(i) if i > last => last = i,
                _ => {
                    return Err(EngineError::bad(format!(
                        "The migration target asked for snapshot {s:?}, which does not follow \
                         {base:?} and the snapshots before it"
                    )))
                }
            }
        }
        let (p, n, wanted) = (
            pool.clone(),
            name.to_string(),
            answer.snapshot_names.clone(),
        );
        stream_out(op, name, link, move |w| {
            p.send_refresh(VolumeKind::Container, &n, &base, &wanted, ty, w)
        })
        .await
    }
}

/// What a source sends.
pub(super) enum What {
    /// The instance, with its snapshots unless `instance_only`.
    Instance { instance_only: bool },
    /// One snapshot, as a new instance's volume.
    Snapshot(String),
}

impl What {
    fn snapshot(&self) -> Option<String> {
        match self {
            What::Snapshot(s) => Some(s.clone()),
            What::Instance { .. } => None,
        }
    }
}

/// A snapshot's record as LXD's `Snapshot` message (and Kante's field).
fn snapshot_message(s: &SnapshotRow) -> proto::Snapshot {
    let secs = |t: &str| {
        let t = crate::util::parse_time(t);
        (t.timestamp() > 0).then_some(t.timestamp())
    };
    proto::Snapshot {
        name: s.name.clone(),
        local_config: s
            .config
            .iter()
            .map(|(k, v)| proto::Config {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        profiles: s.profiles.clone(),
        ephemeral: s.ephemeral,
        local_devices: s
            .devices
            .iter()
            .map(|(d, cfg)| proto::Device {
                name: d.clone(),
                config: cfg
                    .iter()
                    .map(|(k, v)| proto::Config {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            })
            .collect(),
        architecture: proto::arch_id(&s.architecture),
        stateful: s.stateful,
        creation_date: secs(&s.created_at),
        last_used_date: None,
        expiry_date: secs(&s.expires_at),
        description: Some(s.description.clone()).filter(|d| !d.is_empty()),
        kante_tree: None,
    }
}
