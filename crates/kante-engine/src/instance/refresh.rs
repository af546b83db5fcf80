//! `copy --refresh`: bring an existing (stopped) copy up to date with its
//! source. The volume is synced incrementally with rsync (as LXD does on
//! dir pools); snapshots the copy lacks are copied, and snapshots the
//! source no longer has are deleted. The copy keeps its own config, MACs
//! and name: refresh is for keeping a standby in step with its original.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kante_api::operation::OperationClass;
use kante_storage::VolumeKind;

use crate::error::{EngineError, Result};
use crate::operations::{instance_resources, Op};
use crate::Engine;

/// `rsync` flags that keep what a rootfs needs: numeric owners, hard links,
/// ACLs, xattrs (file capabilities), devices; deleting what the source lost.
const RSYNC_ARGS: &[&str] = &[
    "--archive",
    "--hard-links",
    "--acls",
    "--xattrs",
    "--numeric-ids",
    "--delete",
    "--sparse",
    // Compare mtimes to the nanosecond: a file rewritten within the same
    // second with the same size would otherwise be skipped.
    "--modify-window=-1",
    "--quiet",
];

fn rsync(src: &Path, dst: &Path) -> Result<()> {
    // Trailing slashes: sync the contents, not the directory itself.
    let out = kante_storage::dies_with_daemon(&mut Command::new("rsync"))
        .args(RSYNC_ARGS)
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| EngineError::internal(format!("running rsync (package rsync): {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(EngineError::internal(format!(
            "rsync failed ({}): {}",
            out.status,
            err.lines().next().unwrap_or("")
        )));
    }
    Ok(())
}

impl Engine {
    /// Starts refreshing `target` from `from` (both must exist, `target` stopped).
    pub(crate) async fn instance_refresh(
        &self,
        from: &str,
        target: &str,
        instance_only: bool,
    ) -> Result<Arc<Op>> {
        self.instance_row(from).await?;
        self.instance_row(target).await?;
        if from == target {
            return Err(EngineError::bad(
                "An instance cannot be refreshed from itself",
            ));
        }
        if self.running(target).is_some() {
            return Err(EngineError::bad(
                "The target instance must be stopped to be refreshed",
            ));
        }
        let op = self.ops.create(
            OperationClass::Task,
            "Refreshing instance",
            instance_resources(&[from, target], true),
        );
        let (engine, from, target) = (self.arc(), from.to_string(), target.to_string());
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&target);
            let _g = lock.lock().await;
            engine.refresh_locked(&from, &target, instance_only).await
        });
        Ok(op)
    }

    async fn refresh_locked(&self, from: &str, target: &str, instance_only: bool) -> Result<()> {
        if self.running(target).is_some() {
            return Err(EngineError::bad(
                "The target instance must be stopped to be refreshed",
            ));
        }
        let src_row = self.instance_row(from).await?;
        let dst_row = self.instance_row(target).await?;
        let src_pool = self.pool(&self.instance_pool_name(&src_row).await)?;
        let dst_pool = self.pool(&self.instance_pool_name(&dst_row).await)?;
        if !instance_only {
            let src_snaps = self.node.snapshot_list(from).await?;
            let dst_snaps = self.node.snapshot_list(target).await?;
            for gone in dst_snaps
                .iter()
                .filter(|d| !src_snaps.iter().any(|s| s.name == d.name))
            {
                self.remove_snapshot(target, &gone.name).await?;
            }
            for srow in src_snaps
                .iter()
                .filter(|s| !dst_snaps.iter().any(|d| d.name == s.name))
            {
                self.copy_snapshot(&src_pool, srow, &dst_pool, target)
                    .await?;
            }
        }
        let (src, dst) = (
            self.instance_volume(&src_row).await?,
            self.instance_volume(&dst_row).await?,
        );
        tokio::task::spawn_blocking(move || rsync(&src, &dst)).await??;
        // The sync brought the source's backup.yaml along; the copy's own record wins.
        self.write_backup_file(&dst_row).await;
        self.events.lifecycle(
            "instance-updated",
            &format!("/1.0/instances/{target}"),
            serde_json::json!({}),
        );
        Ok(())
    }
}

impl Engine {
    /// Copies snapshot `srow` (volume and record) to instance `name` in
    /// `pool`; the copy's record drops the source's MACs.
    pub(crate) async fn copy_snapshot(
        &self,
        src_pool: &kante_storage::Pool,
        srow: &kante_store::SnapshotRow,
        pool: &kante_storage::Pool,
        name: &str,
    ) -> Result<()> {
        let path = src_pool.snapshot_path(VolumeKind::Container, &srow.instance, &srow.name)?;
        let (p, n, s) = (pool.clone(), name.to_string(), srow.name.clone());
        tokio::task::spawn_blocking(move || p.snapshot_from(&path, VolumeKind::Container, &n, &s))
            .await??;
        let mut copy = srow.clone();
        copy.instance = name.to_string();
        copy.config.retain(|k, _| !k.ends_with(".hwaddr"));
        if let Err(e) = self.node.snapshot_create(&copy).await {
            let _ = pool.delete_snapshot(VolumeKind::Container, name, &srow.name);
            return Err(e.into());
        }
        Ok(())
    }
}
