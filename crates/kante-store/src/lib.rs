//! Kante's embedded state: one SQLite database in WAL mode with versioned
//! migrations. Maps and lists are stored as JSON text: the daemon always
//! reads whole objects, and this keeps the schema small and obvious.
//!
//! The store is synchronous; every call is a short local transaction.

mod migrations;
mod pending;
mod rows;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

pub use rows::{AliasRow, ImageRow, InstanceRow, NetworkRow, PoolRow, ProfileRow, SnapshotRow};

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
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    conn: Mutex<Connection>,
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is
        // one statement or transaction), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- instances ----

    pub fn instance_create(&self, row: &InstanceRow) -> Result<()> {
        self.insert_instance(row, false)
    }

    /// Inserts an instance, complete or (`pending`) still being created.
    fn insert_instance(&self, row: &InstanceRow, pending: bool) -> Result<()> {
        let conn = self.lock();
        let r = conn.execute(
            "INSERT INTO instances (name, project, type, architecture, ephemeral, stateful, description,
                created_at, last_used_at, config, devices, profiles, pending)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                row.name,
                row.project,
                row.kind,
                row.architecture,
                row.ephemeral,
                row.stateful,
                row.description,
                row.created_at,
                row.last_used_at,
                serde_json::to_string(&row.config)?,
                serde_json::to_string(&row.devices)?,
                serde_json::to_string(&row.profiles)?,
                pending,
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Instance {:?}", row.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn instance_get(&self, name: &str) -> Result<Option<InstanceRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {} FROM instances WHERE name = ?1",
            InstanceRow::COLUMNS
        ))?;
        let row = st.query_row([name], InstanceRow::from_row).optional()?;
        row.map(|r| r.decode()).transpose()
    }

    pub fn instance_list(&self) -> Result<Vec<InstanceRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {} FROM instances ORDER BY name",
            InstanceRow::COLUMNS
        ))?;
        let rows = st
            .query_map([], InstanceRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| r.decode()).collect()
    }

    pub fn instance_names(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached("SELECT name FROM instances ORDER BY name")?;
        let names = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    /// Replaces the writable fields of an instance (by name).
    pub fn instance_update(&self, row: &InstanceRow) -> Result<()> {
        let n = self.lock().execute(
            "UPDATE instances SET architecture = ?2, ephemeral = ?3, stateful = ?4, description = ?5,
                last_used_at = ?6, config = ?7, devices = ?8, profiles = ?9 WHERE name = ?1",
            params![
                row.name,
                row.architecture,
                row.ephemeral,
                row.stateful,
                row.description,
                row.last_used_at,
                serde_json::to_string(&row.config)?,
                serde_json::to_string(&row.devices)?,
                serde_json::to_string(&row.profiles)?,
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("Instance {:?}", row.name)));
        }
        Ok(())
    }

    /// Renames an instance, its snapshots following it.
    pub fn instance_rename(&self, old: &str, new: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let r = tx.execute(
            "UPDATE instances SET name = ?2 WHERE name = ?1",
            params![old, new],
        );
        match r {
            Ok(0) => return Err(StoreError::NotFound(format!("Instance {old:?}"))),
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("Instance {new:?}")))
            }
            Err(e) => return Err(e.into()),
        }
        tx.execute(
            "UPDATE snapshots SET instance = ?2 WHERE instance = ?1",
            params![old, new],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes an instance and its snapshots' records.
    pub fn instance_delete(&self, name: &str) -> Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM snapshots WHERE instance = ?1", [name])?;
        let n = tx.execute("DELETE FROM instances WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    // ---- profiles ----

    pub fn profile_create(&self, row: &ProfileRow) -> Result<()> {
        let r = self.lock().execute(
            "INSERT INTO profiles (name, description, config, devices) VALUES (?1, ?2, ?3, ?4)",
            params![
                row.name,
                row.description,
                serde_json::to_string(&row.config)?,
                serde_json::to_string(&row.devices)?
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Profile {:?}", row.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn profile_get(&self, name: &str) -> Result<Option<ProfileRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT name, description, config, devices FROM profiles WHERE name = ?1",
        )?;
        let raw = st.query_row([name], ProfileRow::from_row).optional()?;
        raw.map(|r| r.decode()).transpose()
    }

    pub fn profile_list(&self) -> Result<Vec<ProfileRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT name, description, config, devices FROM profiles ORDER BY name",
        )?;
        let rows = st
            .query_map([], ProfileRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| r.decode()).collect()
    }

    pub fn profile_update(&self, row: &ProfileRow) -> Result<()> {
        let n = self.lock().execute(
            "UPDATE profiles SET description = ?2, config = ?3, devices = ?4 WHERE name = ?1",
            params![
                row.name,
                row.description,
                serde_json::to_string(&row.config)?,
                serde_json::to_string(&row.devices)?
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("Profile {:?}", row.name)));
        }
        Ok(())
    }

    /// Renames a profile and every instance's (and image's) reference to it, in one transaction.
    pub fn profile_rename(&self, name: &str, new: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let n = tx
            .execute("UPDATE profiles SET name = ?2 WHERE name = ?1", [name, new])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("Profile {new:?}"))
                } else {
                    e.into()
                }
            })?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("Profile {name:?}")));
        }
        for table in ["instances", "images"] {
            let key = if table == "images" {
                "fingerprint"
            } else {
                "name"
            };
            let rows: Vec<(String, String)> = tx
                .prepare(&format!("SELECT {key}, profiles FROM {table}"))?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<std::result::Result<_, _>>()?;
            for (id, profiles) in rows {
                let mut list: Vec<String> = serde_json::from_str(&profiles)?;
                if !list.iter().any(|p| p == name) {
                    continue;
                }
                for p in list.iter_mut().filter(|p| *p == name) {
                    *p = new.to_string();
                }
                tx.execute(
                    &format!("UPDATE {table} SET profiles = ?2 WHERE {key} = ?1"),
                    params![id, serde_json::to_string(&list)?],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn profile_delete(&self, name: &str) -> Result<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM profiles WHERE name = ?1", [name])?
            > 0)
    }

    // ---- images ----

    pub fn image_create(&self, row: &ImageRow) -> Result<()> {
        let r = self.lock().execute(
            "INSERT INTO images (fingerprint, filename, size, architecture, type, public, auto_update, cached,
                properties, profiles, created_at, uploaded_at, last_used_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                row.fingerprint,
                row.filename,
                row.size,
                row.architecture,
                row.kind,
                row.public,
                row.auto_update,
                row.cached,
                serde_json::to_string(&row.properties)?,
                serde_json::to_string(&row.profiles)?,
                row.created_at,
                row.uploaded_at,
                row.last_used_at,
                row.expires_at,
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Image {:?}", row.fingerprint)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Finds an image by full fingerprint or unique prefix. An ambiguous
    /// prefix is a conflict.
    pub fn image_get(&self, fp_or_prefix: &str) -> Result<Option<ImageRow>> {
        if fp_or_prefix.is_empty() || !fp_or_prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {} FROM images WHERE fingerprint >= ?1 AND fingerprint < ?1 || 'g' ORDER BY fingerprint LIMIT 2",
            ImageRow::COLUMNS
        ))?;
        let rows = st
            .query_map([fp_or_prefix.to_ascii_lowercase()], ImageRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(Some(rows.into_iter().next().expect("one").decode()?)),
            _ => Err(StoreError::Conflict(format!(
                "More than one image matches {fp_or_prefix:?}"
            ))),
        }
    }

    pub fn image_list(&self) -> Result<Vec<ImageRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {} FROM images ORDER BY uploaded_at",
            ImageRow::COLUMNS
        ))?;
        let rows = st
            .query_map([], ImageRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| r.decode()).collect()
    }

    pub fn image_update(&self, row: &ImageRow) -> Result<()> {
        self.lock().execute(
            "UPDATE images SET public = ?2, auto_update = ?3, properties = ?4, profiles = ?5, last_used_at = ?6
             WHERE fingerprint = ?1",
            params![
                row.fingerprint,
                row.public,
                row.auto_update,
                serde_json::to_string(&row.properties)?,
                serde_json::to_string(&row.profiles)?,
                row.last_used_at,
            ],
        )?;
        Ok(())
    }

    /// Deletes an image and its aliases.
    pub fn image_delete(&self, fingerprint: &str) -> Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM image_aliases WHERE target = ?1", [fingerprint])?;
        let n = tx.execute("DELETE FROM images WHERE fingerprint = ?1", [fingerprint])?;
        tx.commit()?;
        Ok(n > 0)
    }

    // ---- image aliases ----

    pub fn alias_create(&self, row: &AliasRow) -> Result<()> {
        let r = self.lock().execute(
            "INSERT INTO image_aliases (name, target, description) VALUES (?1, ?2, ?3)",
            params![row.name, row.target, row.description],
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Alias {:?}", row.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn alias_get(&self, name: &str) -> Result<Option<AliasRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT name, target, description FROM image_aliases WHERE name = ?1",
        )?;
        Ok(st.query_row([name], AliasRow::from_row).optional()?)
    }

    pub fn alias_list(&self) -> Result<Vec<AliasRow>> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached("SELECT name, target, description FROM image_aliases ORDER BY name")?;
        let rows = st
            .query_map([], AliasRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn alias_update(&self, row: &AliasRow) -> Result<()> {
        let n = self.lock().execute(
            "UPDATE image_aliases SET target = ?2, description = ?3 WHERE name = ?1",
            params![row.name, row.target, row.description],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("Alias {:?}", row.name)));
        }
        Ok(())
    }

    pub fn alias_rename(&self, old: &str, new: &str) -> Result<()> {
        match self.lock().execute(
            "UPDATE image_aliases SET name = ?2 WHERE name = ?1",
            params![old, new],
        ) {
            Ok(0) => Err(StoreError::NotFound(format!("Alias {old:?}"))),
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Alias {new:?}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn alias_delete(&self, name: &str) -> Result<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM image_aliases WHERE name = ?1", [name])?
            > 0)
    }

    // ---- storage pools ----

    pub fn pool_create(&self, row: &PoolRow) -> Result<()> {
        let r = self.lock().execute(
            "INSERT INTO storage_pools (name, driver, description, config) VALUES (?1, ?2, ?3, ?4)",
            params![
                row.name,
                row.driver,
                row.description,
                serde_json::to_string(&row.config)?
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Storage pool {:?}", row.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn pool_get(&self, name: &str) -> Result<Option<PoolRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT name, driver, description, config FROM storage_pools WHERE name = ?1",
        )?;
        let raw = st.query_row([name], PoolRow::from_row).optional()?;
        raw.map(|r| r.decode()).transpose()
    }

    pub fn pool_list(&self) -> Result<Vec<PoolRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT name, driver, description, config FROM storage_pools ORDER BY name",
        )?;
        let rows = st
            .query_map([], PoolRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| r.decode()).collect()
    }

    pub fn pool_update(&self, row: &PoolRow) -> Result<()> {
        self.lock().execute(
            "UPDATE storage_pools SET description = ?2, config = ?3 WHERE name = ?1",
            params![
                row.name,
                row.description,
                serde_json::to_string(&row.config)?
            ],
        )?;
        Ok(())
    }

    pub fn pool_delete(&self, name: &str) -> Result<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM storage_pools WHERE name = ?1", [name])?
            > 0)
    }

    // ---- snapshots ----

    pub fn snapshot_create(&self, row: &SnapshotRow) -> Result<()> {
        let r = self.lock().execute(
            &format!(
                "INSERT INTO snapshots ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                SnapshotRow::COLUMNS
            ),
            params![
                row.instance,
                row.name,
                row.created_at,
                row.expires_at,
                row.stateful,
                row.architecture,
                row.ephemeral,
                row.description,
                serde_json::to_string(&row.config)?,
                serde_json::to_string(&row.devices)?,
                serde_json::to_string(&row.profiles)?,
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Snapshot {:?}", row.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn snapshot_get(&self, instance: &str, name: &str) -> Result<Option<SnapshotRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {} FROM snapshots WHERE instance = ?1 AND name = ?2",
            SnapshotRow::COLUMNS
        ))?;
        let raw = st
            .query_row([instance, name], SnapshotRow::from_row)
            .optional()?;
        raw.map(|r| r.decode()).transpose()
    }

    /// Snapshots of an instance, oldest first.
    pub fn snapshot_list(&self, instance: &str) -> Result<Vec<SnapshotRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {} FROM snapshots WHERE instance = ?1 ORDER BY id",
            SnapshotRow::COLUMNS
        ))?;
        let rows = st
            .query_map([instance], SnapshotRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| r.decode()).collect()
    }

    pub fn snapshot_rename(&self, instance: &str, old: &str, new: &str) -> Result<()> {
        match self.lock().execute(
            "UPDATE snapshots SET name = ?3 WHERE instance = ?1 AND name = ?2",
            params![instance, old, new],
        ) {
            Ok(0) => Err(StoreError::NotFound(format!("Snapshot {old:?}"))),
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Snapshot {new:?}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn snapshot_set_expiry(&self, instance: &str, name: &str, expires_at: &str) -> Result<()> {
        self.lock().execute(
            "UPDATE snapshots SET expires_at = ?3 WHERE instance = ?1 AND name = ?2",
            params![instance, name, expires_at],
        )?;
        Ok(())
    }

    pub fn snapshot_delete(&self, instance: &str, name: &str) -> Result<bool> {
        Ok(self.lock().execute(
            "DELETE FROM snapshots WHERE instance = ?1 AND name = ?2",
            [instance, name],
        )? > 0)
    }

    // ---- networks ----

    pub fn network_create(&self, row: &NetworkRow) -> Result<()> {
        let r = self.lock().execute(
            "INSERT INTO networks (name, type, description, config) VALUES (?1, ?2, ?3, ?4)",
            params![
                row.name,
                row.kind,
                row.description,
                serde_json::to_string(&row.config)?
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("Network {:?}", row.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn network_get(&self, name: &str) -> Result<Option<NetworkRow>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT name, type, description, config FROM networks WHERE name = ?1",
        )?;
        let raw = st.query_row([name], NetworkRow::from_row).optional()?;
        raw.map(|r| r.decode()).transpose()
    }

    pub fn network_list(&self) -> Result<Vec<NetworkRow>> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached("SELECT name, type, description, config FROM networks ORDER BY name")?;
        let rows = st
            .query_map([], NetworkRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| r.decode()).collect()
    }

    pub fn network_update(&self, row: &NetworkRow) -> Result<()> {
        let n = self.lock().execute(
            "UPDATE networks SET description = ?2, config = ?3 WHERE name = ?1",
            params![
                row.name,
                row.description,
                serde_json::to_string(&row.config)?
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("Network {:?}", row.name)));
        }
        Ok(())
    }

    pub fn network_delete(&self, name: &str) -> Result<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM networks WHERE name = ?1", [name])?
            > 0)
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
mod tests;
