//! Backups' records and tarballs put back in step at start: the
//! `.<backup>.json` sidecars of older versions move into the state, and
//! what a crash left half done is finished or undone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kante_api::Timestamp;
use kante_store::BackupRow;
use serde::Deserialize;

use crate::util::{fmt_time, remove_file_if_present};
use crate::Engine;

/// The record older versions kept beside a tarball, as `.<backup>.json`.
#[derive(Debug, Deserialize)]
struct LegacyMeta {
    created_at: Timestamp,
    expires_at: Timestamp,
    instance_only: bool,
    optimized_storage: bool,
    compression: String,
}

/// The names of the entries of `dir` (none if it cannot be read).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

impl Engine {
    /// Moves the records older versions kept in `.<backup>.json` sidecars
    /// into this member's state, once: each sidecar goes when its record is
    /// made (one whose tarball is missing goes too: it described nothing).
    pub(super) async fn import_backup_sidecars(&self) {
        let root = self.paths.root.join("backups").join("instances");
        for instance in entries(&root) {
            let dir = root.join(&instance);
            for file in entries(&dir) {
                let Some(name) = file.strip_prefix('.').and_then(|f| f.strip_suffix(".json"))
                else {
                    continue;
                };
                let sidecar = dir.join(&file);
                let meta = std::fs::read(&sidecar)
                    .ok()
                    .and_then(|t| serde_json::from_slice::<LegacyMeta>(&t).ok());
                let moved = match meta {
                    Some(m) if dir.join(name).is_file() => {
                        let row = BackupRow {
                            instance: instance.clone(),
                            name: name.into(),
                            created_at: fmt_time(m.created_at),
                            expires_at: fmt_time(m.expires_at),
                            instance_only: m.instance_only,
                            optimized_storage: m.optimized_storage,
                            compression_algorithm: m.compression,
                        };
                        self.node.backup_put(&row).await.map(|()| true)
                    }
                    _ => Ok(false),
                };
                match moved {
                    Ok(recorded) => {
                        if let Err(e) = remove_file_if_present(&sidecar) {
                            tracing::warn!(instance = %instance, backup = %name, "removing its old record: {e}");
                        } else if recorded {
                            tracing::info!(instance = %instance, backup = %name, "backup record moved into the state");
                        }
                    }
                    Err(e) => {
                        tracing::error!(instance = %instance, backup = %name, "moving its record into the state: {e}")
                    }
                }
            }
        }
    }

    /// Puts records and tarballs back in step after a crash:
    /// * a pending record (a backup being made) goes with its tarball;
    /// * a complete record without its tarball (a delete cut short) goes;
    /// * the tarballs of an instance's directory that no record names (a
    ///   rename or create cut short) go, and so do directories of
    ///   instances that have no record (a delete cut short), unless they
    ///   hold the tarballs a renamed instance's records name (a rename cut
    ///   between its record and its backups' directory): those move there.
    pub(super) async fn reconcile_backups(&self) {
        match self.node.backups_pending().await {
            Ok(pending) => {
                for (instance, name) in pending {
                    tracing::warn!(instance = %instance, backup = %name, "removing a backup whose making was cut short");
                    let _ =
                        remove_file_if_present(&self.paths.instance_backups(&instance).join(&name));
                    let _ = self.node.backup_delete(&instance, &name).await;
                }
            }
            Err(e) => return tracing::error!("listing pending backups: {e}"),
        }
        let records = match self.node.backup_list_all().await {
            Ok(r) => r,
            Err(e) => return tracing::error!("listing backups: {e}"),
        };
        let mut recorded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for b in records {
            recorded.entry(b.instance).or_default().insert(b.name);
        }
        let root = self.paths.root.join("backups").join("instances");
        for instance in entries(&root) {
            let dir = root.join(&instance);
            if self
                .node
                .instance_get(&instance)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                continue;
            }
            let files: BTreeSet<String> = entries(&dir).into_iter().collect();
            // A rename cut short: some instance's records name these
            // tarballs, and its own directory is missing.
            let heir = recorded.iter().find(|(owner, names)| {
                !self.paths.instance_backups(owner).exists()
                    && !names.is_empty()
                    && names.is_subset(&files)
            });
            if let Some((owner, _)) = heir {
                match std::fs::rename(&dir, self.paths.instance_backups(owner)) {
                    Ok(()) => {
                        tracing::warn!(from = %instance, to = %owner, "moved backups a cut-short rename left behind");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(instance = %instance, "moving its backups to {owner}: {e}")
                    }
                }
            }
            tracing::warn!(instance = %instance, "removing the backups of an instance that is gone");
            let _ = std::fs::remove_dir_all(&dir);
        }
        for (instance, names) in &recorded {
            let dir = self.paths.instance_backups(instance);
            for name in names {
                if !dir.join(name).is_file() {
                    tracing::warn!(instance = %instance, backup = %name, "removing a backup record without its tarball");
                    let _ = self.node.backup_delete(instance, name).await;
                }
            }
            for file in entries(&dir) {
                if !file.starts_with('.') && !names.contains(&file) {
                    tracing::warn!(instance = %instance, backup = %file, "removing a tarball without a record");
                    let _ = remove_file_if_present(&dir.join(&file));
                }
            }
        }
        // Tarballs of instances with no complete record at all.
        for instance in entries(&root) {
            if recorded.contains_key(&instance) {
                continue;
            }
            let dir = root.join(&instance);
            for file in entries(&dir) {
                if !file.starts_with('.') {
                    tracing::warn!(instance = %instance, backup = %file, "removing a tarball without a record");
                    let _ = remove_file_if_present(&dir.join(&file));
                }
            }
        }
    }
}
