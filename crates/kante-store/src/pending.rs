//! Instances whose creation is still under way.
//!
//! Creating an instance (from an image, as a copy, from a backup) records
//! it first, so that its name is taken while its volume is built, and marks
//! the record complete as the last step. A record still pending when the
//! daemon starts belongs to a creation that a crash interrupted: the daemon
//! removes it with whatever was made for it, as the failed creation itself
//! would have. The mark is not part of [`InstanceRow`]: the API never sees
//! it.

use crate::{InstanceRow, Result, Store, StoreError, Table};

impl Store {
    /// Records a new instance as being created (see [`Store::instance_created`]).
    pub fn instance_create_pending(&self, row: &InstanceRow) -> Result<()> {
        self.insert_instance(row, true)
    }

    /// Marks the creation of `name` complete.
    pub fn instance_created(&self, name: &str) -> Result<()> {
        if !Table::<InstanceRow>::set(&self.lock(), &[name], "pending", false.into())? {
            return Err(StoreError::NotFound(format!("Instance {name:?}")));
        }
        Ok(())
    }

    /// Names of the instances whose creation has not completed, sorted.
    pub fn instances_pending(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st =
            conn.prepare_cached("SELECT name FROM instances WHERE pending != 0 ORDER BY name")?;
        let names = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }
}
