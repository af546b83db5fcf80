//! Deleting with no half-deleted state: a volume (then its snapshots
//! directory) or a snapshot is first renamed aside to a `.deleting-<name>`
//! sibling, one atomic rename each, and only then removed. Whoever deletes
//! drops its record between the two steps, so after a crash the thing is
//! either whole under its name or gone from it: a record left without its
//! volume next to a `.deleting-` directory is an interrupted delete
//! ([`Pool::interrupted_delete`]), and the directory itself is a leftover
//! that the next start removes, as it removes `.staging-` ones.
//!
//! The prefix is not `.staging-`: `.staging-<name>` is where volume `name`
//! is built, and a volume may well be called `delete-x`. No name starts
//! with a dot, so `.deleting-<name>` is never another volume's staging path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{
    rename_noreplace, validate_snapshot_name, validate_volume_name, Pool, Result, StorageDriver,
    StorageError, VolumeKind,
};

/// Prefix of what is being deleted (a leftover after a crash).
pub(crate) const DELETE_PREFIX: &str = ".deleting-";

/// A unique `.deleting-` sibling for the tree a restore replaced (the
/// second dot keeps it apart from any volume's own `.deleting-<name>`).
pub(crate) fn replaced_path(staging: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = staging
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    staging.with_file_name(format!(
        "{DELETE_PREFIX}.replaced-{}-{}{name}",
        std::process::id(),
        n
    ))
}

/// Whether a directory entry of a pool is a leftover of work in progress
/// (a volume being built, unpacked, received, deleted or sent) rather than
/// a volume.
pub(crate) fn is_leftover(name: &str) -> bool {
    name.starts_with(".staging-")
        || name.starts_with(DELETE_PREFIX)
        || name.starts_with(crate::stream::SEND_PREFIX)
}

/// What [`Pool::set_aside`] or [`Pool::set_aside_snapshot`] moved out of
/// the way: [`Aside::remove`] deletes it, [`Aside::put_back`] undoes the
/// move. Dropped without either, it stays aside (a leftover for the next
/// start): a delete is never undone behind the caller's back.
#[must_use = "set aside: remove() or put_back()"]
pub struct Aside {
    driver: Arc<dyn StorageDriver>,
    moved: Vec<Moved>,
}

struct Moved {
    now: PathBuf,
    was: PathBuf,
    /// A directory of snapshot volumes rather than one volume.
    holds_snapshots: bool,
}

impl Aside {
    /// Deletes what was set aside, snapshots first.
    pub fn remove(self) -> Result<()> {
        for m in self.moved.iter().rev() {
            if m.holds_snapshots {
                remove_snapshots_dir(self.driver.as_ref(), &m.now)?;
            } else {
                self.driver.delete_volume(&m.now)?;
            }
        }
        Ok(())
    }

    /// Renames everything back (the caller could not drop its record).
    pub fn put_back(self) -> Result<()> {
        for m in self.moved.iter().rev() {
            rename_noreplace(&m.now, &m.was)?;
        }
        Ok(())
    }

    /// Whether anything was there to set aside.
    pub fn is_empty(&self) -> bool {
        self.moved.is_empty()
    }
}

/// Deletes a directory of snapshot volumes (each with the driver: read-only
/// subvolumes on btrfs), then the directory.
pub(crate) fn remove_snapshots_dir(driver: &dyn StorageDriver, dir: &Path) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(format!("reading {}", dir.display()))(e)),
    };
    for e in rd.flatten() {
        driver.delete_volume(&e.path())?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("removing {}", dir.display()))(e)),
    }
}

impl Pool {
    /// Renames volume `name` aside, then its snapshots directory (if any).
    /// The volume's rename is the commit point of a delete: from then on the
    /// volume is gone from its name, and what is left is cleanup. Nothing to
    /// set aside is no error (see [`Aside::is_empty`]).
    pub fn set_aside(&self, kind: VolumeKind, name: &str) -> Result<Aside> {
        validate_volume_name(name)?;
        let mut aside = Aside {
            driver: self.driver.clone(),
            moved: Vec::new(),
        };
        let vol = self.volume_path(kind, name);
        if vol.symlink_metadata().is_ok() {
            let to = self.delete_path(kind, name);
            self.move_aside(&vol, &to, false, &mut aside)?;
        }
        if let Some(dir) = self.snapshots_dir(kind, name) {
            if dir.symlink_metadata().is_ok() {
                let to = dir.with_file_name(format!("{DELETE_PREFIX}{name}"));
                if let Err(e) = self.move_aside(&dir, &to, true, &mut aside) {
                    if let Err(back) = aside.put_back() {
                        tracing::warn!(volume = name, "putting a volume back: {back}");
                    }
                    return Err(e);
                }
            }
        }
        Ok(aside)
    }

    /// Renames snapshot `snap` of `volume` aside (it must exist).
    pub fn set_aside_snapshot(&self, kind: VolumeKind, volume: &str, snap: &str) -> Result<Aside> {
        validate_volume_name(volume)?;
        validate_snapshot_name(snap)?;
        let p = self.snapshot_path(kind, volume, snap)?;
        if p.symlink_metadata().is_err() {
            return Err(StorageError::NotFound(format!("snapshot {volume}/{snap}")));
        }
        let mut aside = Aside {
            driver: self.driver.clone(),
            moved: Vec::new(),
        };
        let to = p.with_file_name(format!("{DELETE_PREFIX}{snap}"));
        self.move_aside(&p, &to, false, &mut aside)?;
        Ok(aside)
    }

    /// Whether a delete of volume `name` was interrupted: its volume has
    /// been set aside and not yet removed.
    pub fn interrupted_delete(&self, kind: VolumeKind, name: &str) -> bool {
        self.delete_path(kind, name).symlink_metadata().is_ok()
    }

    /// Whether a snapshot's creation or deletion was interrupted: its
    /// staging copy, or what was set aside to delete it, is still there.
    pub fn interrupted_snapshot(&self, kind: VolumeKind, volume: &str, snap: &str) -> bool {
        let Some(dir) = self.snapshots_dir(kind, volume) else {
            return false;
        };
        [format!(".staging-{snap}"), format!("{DELETE_PREFIX}{snap}")]
            .iter()
            .any(|n| dir.join(n).symlink_metadata().is_ok())
    }

    fn delete_path(&self, kind: VolumeKind, name: &str) -> PathBuf {
        self.base
            .join(kind.dir_name())
            .join(format!("{DELETE_PREFIX}{name}"))
    }

    fn move_aside(
        &self,
        from: &Path,
        to: &Path,
        holds_snapshots: bool,
        aside: &mut Aside,
    ) -> Result<()> {
        // A leftover of an earlier delete whose removal failed: garbage.
        if to.symlink_metadata().is_ok() {
            if holds_snapshots {
                remove_snapshots_dir(self.driver.as_ref(), to)?;
            } else {
                self.driver.delete_volume(to)?;
            }
        }
        rename_noreplace(from, to)?;
        aside.moved.push(Moved {
            now: to.to_path_buf(),
            was: from.to_path_buf(),
            holds_snapshots,
        });
        Ok(())
    }
}

impl Pool {
    /// Removes what a crash left of work in progress: volumes and snapshots
    /// being built (`.staging-*`) or deleted (`.deleting-*`), once no process
    /// works in them any more (one still in use is left for a later start).
    /// Empty snapshot directories go too.
    pub fn remove_staging_leftovers(&self) {
        let busy = self.stop_staging_writers();
        let busy = |p: &Path| {
            let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            busy.contains(&p)
        };
        for kind in [VolumeKind::Image, VolumeKind::Container, VolumeKind::Custom] {
            self.remove_leftovers_in(&self.base.join(kind.dir_name()), &busy);
            let Some(d) = kind.snapshots_dir_name() else {
                continue;
            };
            for e in std::fs::read_dir(self.base.join(d))
                .into_iter()
                .flatten()
                .flatten()
            {
                let p = e.path();
                if is_leftover(&e.file_name().to_string_lossy()) {
                    // A volume's whole snapshots directory, set aside.
                    if !busy(&p) {
                        if let Err(err) = remove_snapshots_dir(self.driver.as_ref(), &p) {
                            tracing::warn!(path = %p.display(), "removing a leftover: {err}");
                        }
                    }
                    continue;
                }
                self.remove_leftovers_in(&p, &busy);
                // Only succeeds if no snapshot is left.
                let _ = std::fs::remove_dir(&p);
            }
        }
    }

    fn remove_leftovers_in(&self, dir: &Path, busy: &dyn Fn(&Path) -> bool) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if is_leftover(&e.file_name().to_string_lossy()) && !busy(&p) {
                if let Err(err) = self.driver.delete_volume(&p) {
                    tracing::warn!(path = %p.display(), "removing a leftover: {err}");
                }
            }
        }
    }
}
