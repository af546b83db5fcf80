//! Instance backups' records: what a backup is (its instance, name, times
//! and how it was made), kept in this member's state; the tarball is a
//! file under `$KANTE_DIR/backups/`. A record is made pending before its
//! tarball and completed after it (`pending.rs`), and follows its
//! instance's renames and deletion (`Store::instance_rename`,
//! `Store::instance_delete`).

use crate::table::Table;
use crate::{Result, Store, StoreError};

record! {
    /// An instance backup's record (LXD's `InstanceBackup`).
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct BackupRow {
        instance: String => "instance",
        name: String => "name",
        /// RFC 3339.
        created_at: String => "created_at",
        /// RFC 3339; the zero time when it never expires.
        expires_at: String => "expires_at",
        instance_only: bool => "instance_only",
        optimized_storage: bool => "optimized_storage",
        /// `gzip`, `zstd` or `none`.
        compression_algorithm: String => "compression_algorithm",
    }
    table: "instance_backups", entity: "Backup", key: ["instance", "name"],
    mutable: ["expires_at"], order: "name", label: name,
}

impl Store {
    /// Records a backup whose tarball is being made; a taken name (complete
    /// or pending) is a conflict.
    pub fn backup_create_pending(&self, row: &BackupRow) -> Result<()> {
        Table::insert_pending(&self.lock(), row)
    }

    /// Marks a backup complete (its tarball is made).
    pub fn backup_created(&self, instance: &str, name: &str) -> Result<()> {
        if !Table::<BackupRow>::mark(&self.lock(), &[instance, name], false)? {
            return Err(StoreError::NotFound(format!("Backup {name:?}")));
        }
        Ok(())
    }

    /// Records a complete backup, or replaces its record (imports).
    pub fn backup_put(&self, row: &BackupRow) -> Result<()> {
        Table::upsert(&self.lock(), row)
    }

    /// A complete backup's record.
    pub fn backup_get(&self, instance: &str, name: &str) -> Result<Option<BackupRow>> {
        Table::get_complete(&self.lock(), &[instance, name])
    }

    /// An instance's complete backups, by name.
    pub fn backup_list(&self, instance: &str) -> Result<Vec<BackupRow>> {
        Table::list_complete(&self.lock(), Some(("instance", instance)))
    }

    /// Every complete backup of this member, by name.
    pub fn backup_list_all(&self) -> Result<Vec<BackupRow>> {
        Table::list_complete(&self.lock(), None)
    }

    /// `(instance, name)` of the backups whose making never completed.
    pub fn backups_pending(&self) -> Result<Vec<(String, String)>> {
        Ok(pairs(Table::<BackupRow>::pending(&self.lock())?))
    }

    pub fn backup_rename(&self, instance: &str, old: &str, new: &str) -> Result<()> {
        Table::<BackupRow>::rename(&self.lock(), &[instance, old], new)
    }

    /// Deletes a backup's record, complete or pending.
    pub fn backup_delete(&self, instance: &str, name: &str) -> Result<bool> {
        Table::<BackupRow>::delete(&self.lock(), &[instance, name])
    }
}

/// Two-column keys as pairs.
pub(crate) fn pairs(keys: Vec<Vec<String>>) -> Vec<(String, String)> {
    keys.into_iter()
        .filter_map(|k| match <[String; 2]>::try_from(k) {
            Ok([a, b]) => Some((a, b)),
            Err(_) => None,
        })
        .collect()
}
