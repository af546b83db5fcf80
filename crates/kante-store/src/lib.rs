//! Kante's embedded state: one SQLite database in WAL mode with versioned
//! migrations. Maps and lists are stored as JSON text: the daemon always
//! reads whole objects, and this keeps the schema small and obvious.
//!
//! [`Store`] is synchronous; every call is a short local transaction.
//! [`SqliteState`] serves it to async code as both [`NodeState`] and
//! [`SharedState`] (`state.rs`), from a thread of its own.

#[macro_use]
mod columns;
mod backups;
mod migrations;
mod pending;
mod reservations;
mod rows;
mod sqlite_state;
pub mod state;
#[cfg(any(test, feature = "conformance"))]
pub mod state_conformance;
mod switch;
pub mod table;
mod volumes;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection};
use thiserror::Error;

pub use backups::BackupRow;
pub use reservations::{CertificateRow, ReservationRow};
pub use rows::{AliasRow, ImageRow, InstanceRow, NetworkRow, PoolRow, ProfileRow, SnapshotRow};
pub use sqlite_state::SqliteState;
pub use state::{Member, NodeState, ReservationKind, SharedState, PROJECT, STANDALONE_MEMBER};
pub use switch::{is_member_local, SwitchState, MEMBER_LOCAL_KEYS};
pub use table::{Record, Table};
pub use volumes::VolumeRow;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database record is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("database schema version {found} is newer than this kanted ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("starting the state thread")]
    Thread(#[source] std::io::Error),
    #[error("the state thread has stopped")]
    Closed,
    /// The shared store (a cluster's etcd) could not be reached in time:
    /// a write that needs it fails fast with this (the API's 503), while
    /// reads go on from the local cache.
    #[error("the cluster's store is unreachable: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    conn: Mutex<Connection>,
}

/// Renames profile `old` to `new` in the profile lists of every `R` record.
pub(crate) fn rename_profile_refs<R: Record>(
    conn: &Connection,
    old: &str,
    new: &str,
    profiles: impl Fn(&mut R) -> &mut Vec<String>,
) -> Result<()> {
    for mut row in Table::<R>::list(conn)? {
        let list = profiles(&mut row);
        if !list.iter().any(|p| p == old) {
            continue;
        }
        for p in list.iter_mut().filter(|p| *p == old) {
            *p = new.to_string();
        }
        Table::update(conn, &row)?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        migrations::apply(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is
        // one statement or transaction), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- instances ----

    pub fn instance_create(&self, row: &InstanceRow) -> Result<()> {
        Table::insert(&self.lock(), row)
    }

    pub fn instance_get(&self, name: &str) -> Result<Option<InstanceRow>> {
        Table::get(&self.lock(), &[name])
    }

    pub fn instance_list(&self) -> Result<Vec<InstanceRow>> {
        Table::list(&self.lock())
    }

    pub fn instance_names(&self) -> Result<Vec<String>> {
        Table::<InstanceRow>::names(&self.lock())
    }

    /// Replaces the writable fields of an instance (by name).
    pub fn instance_update(&self, row: &InstanceRow) -> Result<()> {
        Table::update(&self.lock(), row)
    }

    /// Renames an instance, its snapshots' and backups' records following it.
    pub fn instance_rename(&self, old: &str, new: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        Table::<InstanceRow>::rename(&tx, &[old], new)?;
        for table in ["snapshots", "instance_backups"] {
            tx.execute(
                &format!("UPDATE {table} SET instance = ?2 WHERE instance = ?1"),
                params![old, new],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes an instance and its snapshots' and backups' records.
    pub fn instance_delete(&self, name: &str) -> Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        Table::<SnapshotRow>::delete_where(&tx, "instance", name)?;
        Table::<BackupRow>::delete_where(&tx, "instance", name)?;
        let found = Table::<InstanceRow>::delete(&tx, &[name])?;
        tx.commit()?;
        Ok(found)
    }

    // ---- profiles ----

    pub fn profile_create(&self, row: &ProfileRow) -> Result<()> {
        Table::insert(&self.lock(), row)
    }

    pub fn profile_get(&self, name: &str) -> Result<Option<ProfileRow>> {
        Table::get(&self.lock(), &[name])
    }

    pub fn profile_list(&self) -> Result<Vec<ProfileRow>> {
        Table::list(&self.lock())
    }

    pub fn profile_update(&self, row: &ProfileRow) -> Result<()> {
        Table::update(&self.lock(), row)
    }

    /// Renames a profile and every instance's (and image's) reference to it, in one transaction.
    pub fn profile_rename(&self, name: &str, new: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        Table::<ProfileRow>::rename(&tx, &[name], new)?;
        rename_profile_refs::<InstanceRow>(&tx, name, new, |r| &mut r.profiles)?;
        rename_profile_refs::<ImageRow>(&tx, name, new, |r| &mut r.profiles)?;
        tx.commit()?;
        Ok(())
    }

    pub fn profile_delete(&self, name: &str) -> Result<bool> {
        Table::<ProfileRow>::delete(&self.lock(), &[name])
    }

    // ---- images ----

    pub fn image_create(&self, row: &ImageRow) -> Result<()> {
        Table::insert(&self.lock(), row)
    }

    /// Finds an image by full fingerprint or unique prefix. An ambiguous
    /// prefix is a conflict.
    pub fn image_get(&self, fp_or_prefix: &str) -> Result<Option<ImageRow>> {
        if fp_or_prefix.is_empty() || !fp_or_prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let from = fp_or_prefix.to_ascii_lowercase();
        let to = format!("{from}g");
        let conn = self.lock();
        let rows = Table::<ImageRow>::list_range(&conn, "fingerprint", &from, &to, 2)?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.into_iter().next()),
            _ => Err(StoreError::Conflict(format!(
                "More than one image matches {fp_or_prefix:?}"
            ))),
        }
    }

    pub fn image_list(&self) -> Result<Vec<ImageRow>> {
        Table::list(&self.lock())
    }

    pub fn image_update(&self, row: &ImageRow) -> Result<()> {
        Table::update(&self.lock(), row)
    }

    /// Deletes an image and its aliases.
    pub fn image_delete(&self, fingerprint: &str) -> Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        Table::<AliasRow>::delete_where(&tx, "target", fingerprint)?;
        let found = Table::<ImageRow>::delete(&tx, &[fingerprint])?;
        tx.commit()?;
        Ok(found)
    }

    // ---- image aliases ----

    pub fn alias_create(&self, row: &AliasRow) -> Result<()> {
        Table::insert(&self.lock(), row)
    }

    pub fn alias_get(&self, name: &str) -> Result<Option<AliasRow>> {
        Table::get(&self.lock(), &[name])
    }

    pub fn alias_list(&self) -> Result<Vec<AliasRow>> {
        Table::list(&self.lock())
    }

    pub fn alias_update(&self, row: &AliasRow) -> Result<()> {
        Table::update(&self.lock(), row)
    }

    pub fn alias_rename(&self, old: &str, new: &str) -> Result<()> {
        Table::<AliasRow>::rename(&self.lock(), &[old], new)
    }

    pub fn alias_delete(&self, name: &str) -> Result<bool> {
        Table::<AliasRow>::delete(&self.lock(), &[name])
    }

    // ---- storage pools ----

    pub fn pool_create(&self, row: &PoolRow) -> Result<()> {
        Table::insert(&self.lock(), row)
    }

    pub fn pool_get(&self, name: &str) -> Result<Option<PoolRow>> {
        Table::get(&self.lock(), &[name])
    }

    pub fn pool_list(&self) -> Result<Vec<PoolRow>> {
        Table::list(&self.lock())
    }

    pub fn pool_update(&self, row: &PoolRow) -> Result<()> {
        Table::update(&self.lock(), row)
    }

    pub fn pool_delete(&self, name: &str) -> Result<bool> {
        Table::<PoolRow>::delete(&self.lock(), &[name])
    }

    // ---- snapshots ----

    pub fn snapshot_create(&self, row: &SnapshotRow) -> Result<()> {
        Table::insert(&self.lock(), row)
    }

    pub fn snapshot_get(&self, instance: &str, name: &str) -> Result<Option<SnapshotRow>> {
        Table::get(&self.lock(), &[instance, name])
    }

    /// Snapshots of an instance, oldest first.
    pub fn snapshot_list(&self, instance: &str) -> Result<Vec<SnapshotRow>> {
        Table::list_where(&self.lock(), "instance", instance)
    }

    /// Every instance's snapshots, by instance, oldest first (one query
    /// for a whole listing).
    pub fn snapshot_list_all(&self) -> Result<Vec<SnapshotRow>> {
        Table::list(&self.lock())
    }

    pub fn snapshot_rename(&self, instance: &str, old: &str, new: &str) -> Result<()> {
        Table::<SnapshotRow>::rename(&self.lock(), &[instance, old], new)
    }

    pub fn snapshot_set_expiry(&self, instance: &str, name: &str, expires_at: &str) -> Result<()> {
        Table::<SnapshotRow>::set(
            &self.lock(),
            &[instance, name],
            "expires_at",
            expires_at.to_string().into(),
        )?;
        Ok(())
    }

    pub fn snapshot_delete(&self, instance: &str, name: &str) -> Result<bool> {
        Table::<SnapshotRow>::delete(&self.lock(), &[instance, name])
    }

    // ---- networks ----

    pub fn network_create(&self, row: &NetworkRow) -> Result<()> {
        Table::insert(&self.lock(), row)
    }

    pub fn network_get(&self, name: &str) -> Result<Option<NetworkRow>> {
        Table::get(&self.lock(), &[name])
    }

    pub fn network_list(&self) -> Result<Vec<NetworkRow>> {
        Table::list(&self.lock())
    }

    pub fn network_update(&self, row: &NetworkRow) -> Result<()> {
        Table::update(&self.lock(), row)
    }

    pub fn network_delete(&self, name: &str) -> Result<bool> {
        Table::<NetworkRow>::delete(&self.lock(), &[name])
    }

    // ---- server config ----

    pub fn config_all(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached("SELECT key, value FROM config ORDER BY key")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
        Ok(rows.into_iter().collect())
    }

    /// Replaces the whole server config in one transaction.
    pub fn config_replace(
        &self,
        config: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM config", [])?;
        for (k, v) in config {
            tx.execute(
                "INSERT INTO config (key, value) VALUES (?1, ?2)",
                params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod pending_tests;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;
