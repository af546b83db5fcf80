//! A storage driver for tests (feature `testing`): volumes are plain
//! directories made and copied with `std::fs` alone (no `cp`, no root, no
//! special filesystem), every call is recorded, and a test can make any
//! operation fail, to see that the engine undoes what it had begun.
//!
//! The idea is Incus's `storage/drivers/mock`; a pool of this driver is
//! created as `driver: "mock"` once the driver is in the engine's registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kante_api::ConfigMap;

use crate::{
    create_layout, in_use_error, volumes_in_use, DriverInfo, Result, StorageDriver, StorageError,
};

#[derive(Default)]
struct State {
    calls: Vec<String>,
    /// Operation name → the message it fails with, while set.
    failing: BTreeMap<String, String>,
    sizes: BTreeMap<PathBuf, u64>,
}

/// See the module docs.
#[derive(Default)]
pub struct MockDriver {
    state: Mutex<State>,
}

impl MockDriver {
    pub fn new() -> Arc<MockDriver> {
        Arc::new(MockDriver::default())
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far, as `operation path…` (each path shortened to its
    /// last two components, e.g. `containers/c1`).
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }

    /// Makes every later call of `operation` (a method name such as
    /// `copy_volume`) fail with `message`, until [`MockDriver::heal`].
    pub fn fail(&self, operation: &str, message: &str) {
        self.st()
            .failing
            .insert(operation.to_string(), message.to_string());
    }

    pub fn heal(&self, operation: &str) {
        self.st().failing.remove(operation);
    }

    /// Records the call, then fails it if the test asked for that.
    fn enter(&self, operation: &str, paths: &[&Path]) -> Result<()> {
        let mut line = operation.to_string();
        for p in paths {
            line.push(' ');
            line.push_str(&short(p));
        }
        let mut st = self.st();
        st.calls.push(line);
        match st.failing.get(operation) {
            Some(m) => Err(StorageError::Command(format!("mock {operation}: {m}"))),
            None => Ok(()),
        }
    }
}

/// The last two components of `p` (`containers/.staging-c1`).
fn short(p: &Path) -> String {
    let mut parts: Vec<String> = p
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.reverse();
    parts.join("/")
}

/// Copies a tree: directories and files with their modes, symlinks as
/// symlinks. Owners are the caller's (a copy never needs root).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)
    } else if ft.is_dir() {
        std::fs::create_dir(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        std::fs::set_permissions(dst, meta.permissions())
    } else if ft.is_file() {
        std::fs::copy(src, dst).map(drop)
    } else {
        // Device nodes, FIFOs, sockets: not in test trees; an empty file keeps the name.
        std::fs::write(dst, b"")
    }
}

impl StorageDriver for MockDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: "mock",
            version: "1".into(),
            remote: false,
        }
    }

    fn validate_config(&self, config: &ConfigMap) -> Result<()> {
        self.enter("validate_config", &[])?;
        for key in config.keys() {
            let known = matches!(key.as_str(), "source" | "size")
                || key.starts_with("volume.")
                || key.starts_with("user.");
            if !known {
                return Err(StorageError::InvalidConfig(format!(
                    "unknown key {key:?} for the mock driver"
                )));
            }
        }
        Ok(())
    }

    fn create_pool(&self, base: &Path, config: &mut ConfigMap) -> Result<()> {
        self.enter("create_pool", &[base])?;
        create_layout(base)?;
        config.insert("source".into(), base.display().to_string());
        Ok(())
    }

    fn mount_pool(&self, base: &Path, _config: &ConfigMap) -> Result<()> {
        self.enter("mount_pool", &[base])?;
        create_layout(base)
    }

    fn delete_pool(&self, base: &Path, _config: &ConfigMap) -> Result<()> {
        self.enter("delete_pool", &[base])?;
        let used = volumes_in_use(base);
        if !used.is_empty() {
            return Err(in_use_error(base, &used));
        }
        match std::fs::remove_dir_all(base) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io {
                what: format!("removing {}", base.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn create_volume(&self, path: &Path) -> Result<()> {
        self.enter("create_volume", &[path])?;
        std::fs::create_dir_all(path)
            .map_err(StorageError::io(format!("creating {}", path.display())))
    }

    fn copy_volume(&self, src: &Path, dst: &Path) -> Result<()> {
        self.enter("copy_volume", &[src, dst])?;
        copy_tree(src, dst).map_err(StorageError::io(format!(
            "copying {} to {}",
            src.display(),
            dst.display()
        )))
    }

    fn seal_volume(&self, path: &Path) -> Result<()> {
        self.enter("seal_volume", &[path])
    }

    fn delete_volume(&self, path: &Path) -> Result<()> {
        self.enter("delete_volume", &[path])?;
        self.st().sizes.remove(path);
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io {
                what: format!("removing {}", path.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn set_volume_size(&self, path: &Path, size: Option<u64>) -> Result<()> {
        self.enter("set_volume_size", &[path])?;
        let mut st = self.st();
        match size {
            Some(n) if n > 0 => st.sizes.insert(path.to_path_buf(), n),
            _ => st.sizes.remove(path),
        };
        Ok(())
    }

    fn volume_size(&self, path: &Path) -> Result<Option<u64>> {
        Ok(self.st().sizes.get(path).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_copies_and_fails_on_request() {
        let tmp = std::env::temp_dir().join(format!("kstorage-mock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let d = MockDriver::new();
        let mut config = ConfigMap::new();
        d.create_pool(&tmp, &mut config).unwrap();
        let src = tmp.join("images/a");
        d.create_volume(&src).unwrap();
        std::fs::write(src.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", src.join("l")).unwrap();
        let dst = tmp.join("containers/b");
        d.copy_volume(&src, &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("f")).unwrap(), b"x");
        assert_eq!(std::fs::read_link(dst.join("l")).unwrap(), Path::new("f"));
        d.fail("copy_volume", "disk full");
        let e = d.copy_volume(&src, &tmp.join("containers/c")).unwrap_err();
        assert_eq!(e.to_string(), "mock copy_volume: disk full");
        assert!(!tmp.join("containers/c").exists());
        d.heal("copy_volume");
        d.copy_volume(&src, &tmp.join("containers/c")).unwrap();
        assert_eq!(
            d.calls()[..3],
            [
                format!("create_pool {}", short(&tmp)),
                "create_volume images/a".to_string(),
                "copy_volume images/a containers/b".to_string(),
            ]
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
