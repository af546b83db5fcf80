//! Custom volumes' records: what a volume carries besides its content
//! (description, config, creation time), kept per pool in this member's
//! state; the content is the storage pool's.

use kante_api::ConfigMap;
use rusqlite::types::Value;
use rusqlite::Row;

use crate::table::{from_json, json, Record, Table};
use crate::{Result, Store};

/// A custom volume's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeRow {
    pub pool: String,
    pub name: String,
    pub description: String,
    /// `size` and `user.*` keys.
    pub config: ConfigMap,
    /// RFC 3339 (empty when unknown).
    pub created_at: String,
}

impl Record for VolumeRow {
    const TABLE: &'static str = "custom_volumes";
    const ENTITY: &'static str = "Storage volume";
    const COLUMNS: &'static [&'static str] =
        &["pool", "name", "description", "config", "created_at"];
    const KEY: &'static [&'static str] = &["pool", "name"];
    const MUTABLE: &'static [&'static str] = &["description", "config", "created_at"];
    const ORDER: &'static str = "name";

    fn label(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.pool.clone().into(),
            self.name.clone().into(),
            self.description.clone().into(),
            json(&self.config)?,
            self.created_at.clone().into(),
        ])
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(VolumeRow {
            pool: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            config: from_json(r, 3)?,
            created_at: r.get(4)?,
        })
    }
}

impl Store {
    /// Records a custom volume, or replaces its record.
    pub fn volume_put(&self, row: &VolumeRow) -> Result<()> {
        Table::upsert(&self.lock(), row)
    }

    pub fn volume_get(&self, pool: &str, name: &str) -> Result<Option<VolumeRow>> {
        Table::get(&self.lock(), &[pool, name])
    }

    /// The records of a pool's custom volumes, by name.
    pub fn volume_list(&self, pool: &str) -> Result<Vec<VolumeRow>> {
        Table::list_where(&self.lock(), "pool", pool)
    }

    pub fn volume_rename(&self, pool: &str, old: &str, new: &str) -> Result<()> {
        Table::<VolumeRow>::rename(&self.lock(), &[pool, old], new)
    }

    pub fn volume_delete(&self, pool: &str, name: &str) -> Result<bool> {
        Table::<VolumeRow>::delete(&self.lock(), &[pool, name])
    }
}
