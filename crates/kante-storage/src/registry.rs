//! The storage drivers a daemon can make pools with, by name. The daemon
//! uses the built-in set (`dir`, `btrfs`); tests add a mock driver.

use std::sync::Arc;

use crate::{BtrfsDriver, DirDriver, Result, StorageDriver, StorageError};

/// Drivers by name (`DriverInfo::name`), in the order they were added.
#[derive(Clone)]
pub struct Registry {
    drivers: Vec<Arc<dyn StorageDriver>>,
}

impl Registry {
    /// No driver at all.
    pub fn empty() -> Registry {
        Registry {
            drivers: Vec::new(),
        }
    }

    /// The drivers this build supports on a real host: `dir` and `btrfs`.
    pub fn builtin() -> Registry {
        Registry::empty()
            .with(Arc::new(DirDriver))
            .with(Arc::new(BtrfsDriver))
    }

    /// Adds `driver`, replacing one of the same name.
    pub fn with(mut self, driver: Arc<dyn StorageDriver>) -> Registry {
        let name = driver.info().name;
        self.drivers.retain(|d| d.info().name != name);
        self.drivers.push(driver);
        self
    }

    /// The driver called `name`, or [`StorageError::UnknownDriver`].
    pub fn get(&self, name: &str) -> Result<Arc<dyn StorageDriver>> {
        self.drivers
            .iter()
            .find(|d| d.info().name == name)
            .cloned()
            .ok_or_else(|| StorageError::UnknownDriver(name.into(), self.names().join(", ")))
    }

    /// The names of the drivers, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.drivers.iter().map(|d| d.info().name).collect()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}
