//! Records whose making (or unmaking) is under way: instances, custom
//! volumes and backups carry a `pending` mark beside their columns.
//!
//! Creating one records it first, marked, so that its name is taken while
//! what it describes (a volume, a tarball) is built, and clears the mark as
//! the last step; deleting a custom volume marks its record before the
//! volume goes. A record still marked when the daemon starts belongs to
//! work a crash interrupted: the daemon removes it with whatever was made
//! for it. The mark is not part of the row types: the API never sees it.
//! For custom volumes and backups, gets and lists see complete records
//! only; an instance's pending record stays visible (its name is taken).

use rusqlite::{params_from_iter, Connection};

use crate::{InstanceRow, Record, Result, Store, StoreError, Table};

impl<R: Record> Table<R> {
    /// Inserts a record marked pending; a taken key is a conflict.
    pub fn insert_pending(conn: &Connection, row: &R) -> Result<()> {
        Self::insert_with(conn, row, &[("pending", "1")])
    }

    /// Sets or clears the mark of the record with this key; false if there
    /// is no such record or its mark already was `pending`.
    pub fn mark(conn: &Connection, key: &[&str], pending: bool) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET pending = {} WHERE pending = {} AND {}",
            R::TABLE,
            u8::from(pending),
            u8::from(!pending),
            Self::key_match(1)
        );
        Ok(conn.execute(&sql, params_from_iter(key))? > 0)
    }

    /// The complete (unmarked) record with this key.
    pub fn get_complete(conn: &Connection, key: &[&str]) -> Result<Option<R>> {
        let sql = format!(
            "{} WHERE pending = 0 AND {}",
            Self::select(),
            Self::key_match(1)
        );
        Ok(Self::collect(conn, &sql, key)?.into_iter().next())
    }

    /// The complete records whose `column` is `value` (every complete one
    /// without a column), in `ORDER` order.
    pub fn list_complete(conn: &Connection, filter: Option<(&str, &str)>) -> Result<Vec<R>> {
        match filter {
            Some((column, value)) => {
                let sql = format!(
                    "{} WHERE pending = 0 AND {column} = ?1 ORDER BY {}",
                    Self::select(),
                    R::ORDER
                );
                Self::collect(conn, &sql, &[value])
            }
            None => {
                let sql = format!("{} WHERE pending = 0 ORDER BY {}", Self::select(), R::ORDER);
                Self::collect(conn, &sql, &[])
            }
        }
    }

    /// Deletes the record with this key if it is complete; false if there
    /// was none (or it is pending: someone is working on it).
    pub fn delete_complete(conn: &Connection, key: &[&str]) -> Result<bool> {
        let sql = format!(
            "DELETE FROM {} WHERE pending = 0 AND {}",
            R::TABLE,
            Self::key_match(1)
        );
        Ok(conn.execute(&sql, params_from_iter(key))? > 0)
    }

    /// The keys of the pending records, in `ORDER` order.
    pub fn pending(conn: &Connection) -> Result<Vec<Vec<String>>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE pending != 0 ORDER BY {}",
            R::KEY.join(", "),
            R::TABLE,
            R::ORDER
        );
        let mut st = conn.prepare_cached(&sql)?;
        let keys = st
            .query_map([], |r| {
                (0..R::KEY.len())
                    .map(|i| r.get::<_, String>(i))
                    .collect::<rusqlite::Result<Vec<String>>>()
            })?
            .collect::<rusqlite::Result<Vec<Vec<String>>>>()?;
        Ok(keys)
    }
}

impl Store {
    /// Records a new instance as being created (see [`Store::instance_created`]).
    pub fn instance_create_pending(&self, row: &InstanceRow) -> Result<()> {
        Table::insert_pending(&self.lock(), row)
    }

    /// Marks the creation of `name` complete.
    pub fn instance_created(&self, name: &str) -> Result<()> {
        let conn = self.lock();
        if !Table::<InstanceRow>::mark(&conn, &[name], false)?
            && Table::<InstanceRow>::get(&conn, &[name])?.is_none()
        {
            return Err(StoreError::NotFound(format!("Instance {name:?}")));
        }
        Ok(())
    }

    /// Names of the instances whose creation has not completed, sorted.
    pub fn instances_pending(&self) -> Result<Vec<String>> {
        let keys = Table::<InstanceRow>::pending(&self.lock())?;
        Ok(keys.into_iter().flatten().collect())
    }
}
