//! Custom volumes' records: what a volume carries besides its content
//! (description, config, creation time), kept per pool in this member's
//! state; the content is the storage pool's.

use kante_api::ConfigMap;

use crate::table::Table;
use crate::{Result, Store, StoreError};

record! {
    /// A custom volume's record.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct VolumeRow {
        pool: String => "pool",
        name: String => "name",
        description: String => "description",
        /// `size` and `user.*` keys.
        config: ConfigMap => "config",
        /// RFC 3339 (empty when unknown).
        created_at: String => "created_at",
    }
    table: "custom_volumes", entity: "Storage volume", key: ["pool", "name"],
    mutable: ["description", "config", "created_at"], order: "name", label: name,
}

impl Store {
    /// Records a custom volume, or replaces its record (a pending one stays
    /// pending).
    pub fn volume_put(&self, row: &VolumeRow) -> Result<()> {
        Table::upsert(&self.lock(), row)
    }

    /// Records a custom volume that is being made; a taken name (complete
    /// or pending) is a conflict: this is what keeps volume names unique.
    pub fn volume_create_pending(&self, row: &VolumeRow) -> Result<()> {
        Table::insert_pending(&self.lock(), row)
    }

    /// Marks a custom volume's record complete (the volume is made).
    pub fn volume_created(&self, pool: &str, name: &str) -> Result<()> {
        if !Table::<VolumeRow>::mark(&self.lock(), &[pool, name], false)? {
            return Err(StoreError::NotFound(format!("Storage volume {name:?}")));
        }
        Ok(())
    }

    /// Marks a complete record pending (its volume is being deleted); false
    /// if there is none or it already is.
    pub fn volume_deleting(&self, pool: &str, name: &str) -> Result<bool> {
        Table::<VolumeRow>::mark(&self.lock(), &[pool, name], true)
    }

    /// A complete custom volume's record.
    pub fn volume_get(&self, pool: &str, name: &str) -> Result<Option<VolumeRow>> {
        Table::get_complete(&self.lock(), &[pool, name])
    }

    /// The complete records of a pool's custom volumes, by name.
    pub fn volume_list(&self, pool: &str) -> Result<Vec<VolumeRow>> {
        Table::list_complete(&self.lock(), Some(("pool", pool)))
    }

    /// `(pool, name)` of the custom volumes being made or deleted.
    pub fn volumes_pending(&self) -> Result<Vec<(String, String)>> {
        Ok(crate::backups::pairs(Table::<VolumeRow>::pending(
            &self.lock(),
        )?))
    }

    pub fn volume_rename(&self, pool: &str, old: &str, new: &str) -> Result<()> {
        Table::<VolumeRow>::rename(&self.lock(), &[pool, old], new)
    }

    /// Deletes a custom volume's record, complete or pending.
    pub fn volume_delete(&self, pool: &str, name: &str) -> Result<bool> {
        Table::<VolumeRow>::delete(&self.lock(), &[pool, name])
    }

    /// Deletes a complete record (one a crash left without its volume);
    /// false if there is none or it is pending (someone is making it).
    pub fn volume_delete_stale(&self, pool: &str, name: &str) -> Result<bool> {
        Table::<VolumeRow>::delete_complete(&self.lock(), &[pool, name])
    }
}
