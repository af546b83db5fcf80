//! Where things live under `KANTE_DIR`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into() }
    }

    pub fn socket(&self) -> PathBuf {
        self.root.join("unix.socket")
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("database").join("kante.db")
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn pools(&self) -> PathBuf {
        self.root.join("storage-pools")
    }

    pub fn pool(&self, name: &str) -> PathBuf {
        self.pools().join(name)
    }

    /// An instance's backup tarballs: `backups/instances/<instance>`.
    pub fn instance_backups(&self, instance: &str) -> PathBuf {
        self.root.join("backups").join("instances").join(instance)
    }

    /// Per-instance logs and runtime state (console.log, runtime.json, …).
    pub fn instance_logs(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(name)
    }

    pub fn logs(&self) -> &Path {
        &self.root
    }

    /// The cgroup prefix: `kante` for the default directory, otherwise a name
    /// derived from the directory, so several daemons (tests) never collide.
    pub fn cgroup_prefix(&self) -> String {
        if self.root == Path::new("/var/lib/kante") {
            return "kante".into();
        }
        format!(
            "kante-{:08x}",
            fnv1a(self.root.to_string_lossy().as_bytes()) as u32
        )
    }

    /// An instance's cgroup, relative to each hierarchy's root.
    pub fn instance_cgroup(&self, name: &str) -> String {
        format!("{}/{name}", self.cgroup_prefix())
    }
}

/// FNV-1a: a tiny stable hash, so a directory always gets the same prefix.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_prefix_is_stable_and_distinct() {
        assert_eq!(Paths::new("/var/lib/kante").cgroup_prefix(), "kante");
        let a = Paths::new("/tmp/a").cgroup_prefix();
        assert_eq!(a, Paths::new("/tmp/a").cgroup_prefix());
        assert_ne!(a, Paths::new("/tmp/b").cgroup_prefix());
        assert!(a.starts_with("kante-"));
    }
}
