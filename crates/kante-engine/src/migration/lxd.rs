//! Migration with a real LXD (5.0) on the other end, which speaks no
//! Kante stream: the tree travels as LXD's rsync transfer (`rsync.rs`),
//! one session per snapshot (oldest first) then one for the volume. A peer
//! is LXD when its header lacks Kante's field 1000.
//!
//! Kante answers and offers index header version 0 (no JSON index frame on
//! `fs`), the rsync features both sides have (never compression unless LXD
//! is older than the negotiation), and no CRIU type for a stopped instance,
//! so LXD expects no final sync. LXD sends its tree shifted by its disk id
//! map (in the header); Kante's storage is unshifted, so each received tree
//! is shifted back (owners, set-id bits and file capabilities kept). A tree
//! Kante sends is unshifted and goes with an empty map, which LXD shifts at
//! the instance's first start.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kante_storage::{Pool, VolumeKind};

use super::link::{self, Control, Link, Progress};
use super::proto::{self, IdMapType, MigrationHeader, RsyncFeatures};
use super::rsync;
use super::send::{peer_failed, What};
use crate::error::{EngineError, Result};
use crate::operations::Op;
use crate::Engine;

/// The rsync features a header settles on (LXD 3.7 and older, without the
/// negotiation, always used these three).
fn features_of(h: &MigrationHeader) -> Vec<&'static str> {
    match &h.rsync_features {
        Some(f) if f.bidirectional == Some(true) => f.names(),
        _ => vec!["xattrs", "delete", "compress"],
    }
}

impl Engine {
    /// The source's side once the target chose rsync (LXD, or a Kante
    /// target refreshing its copy): the trees it asked for, then its verdict.
    pub(super) async fn send_rsync(
        &self,
        op: &Op,
        name: &str,
        what: &What,
        offered: &[String],
        answer: &MigrationHeader,
        link: &mut Link,
    ) -> Result<()> {
        if answer.fs != proto::FS_RSYNC {
            return Err(EngineError::bad(format!(
                "The LXD migration target chose transfer type {}; Kante sends to LXD with rsync only",
                answer.fs
            )));
        }
        if answer.index_header_version.unwrap_or(0) != 0 {
            return Err(EngineError::bad(
                "The LXD migration target asked for an index header, which was not offered",
            ));
        }
        let features = features_of(answer);
        if !(answer.kante_types.is_empty() || answer.kante_types == [RSYNC]) {
            return Err(EngineError::bad(
                "The migration target chose another transfer",
            ));
        }
        let row = self.instance_row(name).await?;
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let mut progress = Progress::new(op, name);
        match what {
            What::Snapshot(s) => {
                let dir = pool.snapshot_path(VolumeKind::Container, name, s)?;
                rsync::send(link, op, &mut progress, &dir, &features).await?;
            }
            What::Instance { .. } => {
                // A refreshing target names the snapshots it lacks.
                let snaps: Vec<String> = if answer.refresh == Some(true) {
                    answer.snapshot_names.clone()
                } else {
                    offered.to_vec()
                };
                for s in &snaps {
                    if !offered.contains(s) {
                        return Err(EngineError::bad(format!(
                            "The LXD migration target asked for snapshot {s:?}, which was not offered"
                        )));
                    }
                    let dir = pool.snapshot_path(VolumeKind::Container, name, s)?;
                    rsync::send(link, op, &mut progress, &dir, &features).await?;
                }
                let dir = pool.volume_path(VolumeKind::Container, name);
                rsync::send(link, op, &mut progress, &dir, &features).await?;
            }
        }
        progress.finish();
        match link::recv_control(&mut link.control, op).await? {
            Control::Done(c) if c.success => Ok(()),
            Control::Done(c) => Err(peer_failed(&c)),
            Control::Header(_) => Err(EngineError::bad(
                "The migration target sent a header instead of its verdict",
            )),
        }
    }

    /// The target's side of LXD's offer: the answer, then each snapshot
    /// received into the new volume and snapshotted, then the volume (and
    /// a final pass when LXD sends a running instance's last changes).
    pub(super) async fn receive_from_lxd(
        &self,
        op: &Op,
        name: &str,
        pool: &Pool,
        offer: &MigrationHeader,
        link: &mut Link,
    ) -> Result<()> {
        let answer = rsync_answer(offer, offer.snapshots.clone(), false);
        link::send_msg(&link.control, &answer).await?;
        {
            let (p, n) = (pool.clone(), name.to_string());
            blocking(move || Ok(p.create_instance_empty(&n)?)).await?;
        }
        self.receive_trees(op, name, pool, offer, &answer, link)
            .await
    }

    /// The trees the answer asked for, over rsync, into the volume `name`
    /// (which exists): each snapshot received into it then snapshotted,
    /// then the volume itself; each shifted back by the offer's id map.
    pub(super) async fn receive_trees(
        &self,
        op: &Op,
        name: &str,
        pool: &Pool,
        offer: &MigrationHeader,
        answer: &MigrationHeader,
        link: &mut Link,
    ) -> Result<()> {
        let features = features_of(answer);
        let final_sync = answer.criu == Some(proto::CRIU_NONE);
        let idmap = offer.idmap.clone();
        let dir = pool.volume_path(VolumeKind::Container, name);
        let mut progress = Progress::new(op, name);
        for s in &answer.snapshot_names {
            rsync::receive(link, op, &mut progress, &dir, &features).await?;
            let (p, n, s, d, m) = (
                pool.clone(),
                name.to_string(),
                s.clone(),
                dir.clone(),
                idmap.clone(),
            );
            blocking(move || {
                unshift_tree(&d, &m)?;
                p.snapshot(VolumeKind::Container, &n, &s)?;
                Ok(())
            })
            .await?;
        }
        rsync::receive(link, op, &mut progress, &dir, &features).await?;
        if final_sync {
            rsync::receive(link, op, &mut progress, &dir, &features).await?;
        }
        progress.finish();
        blocking(move || Ok(unshift_tree(&dir, &idmap)?)).await?;
        Ok(())
    }
}

/// A target's answer to an rsync transfer: LXD's terms (features both
/// have, no index frame, a final sync only for a running source), the
/// snapshots it wants; `refresh` tells the source to send only those. A
/// Kante source (its offer has field 1000) is told `rsync` there.
pub(super) fn rsync_answer(
    offer: &MigrationHeader,
    snapshots: Vec<proto::Snapshot>,
    refresh: bool,
) -> MigrationHeader {
    let final_sync = offer.criu == Some(proto::CRIU_NONE);
    MigrationHeader {
        fs: proto::FS_RSYNC,
        criu: final_sync.then_some(proto::CRIU_NONE),
        snapshot_names: snapshots.iter().map(|s| s.name.clone()).collect(),
        snapshots,
        predump: Some(false),
        rsync_features: Some(RsyncFeatures::common(offer.rsync_features.as_ref())),
        refresh: Some(refresh),
        index_header_version: Some(0),
        kante_types: if offer.kante_types.is_empty() {
            Vec::new()
        } else {
            vec![RSYNC.to_string()]
        },
        ..Default::default()
    }
}

/// Kante's name for the rsync transfer in field 1000 (offered last by a
/// Kante source; chosen by a target only to refresh).
pub(super) const RSYNC: &str = "rsync";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// The id `id` had before `map` shifted it (uids with `uid`, else gids);
/// `None` when no range holds it.
fn unshifted(map: &[IdMapType], id: u32, uid: bool) -> Option<u32> {
    map.iter()
        .filter(|m| if uid { m.isuid } else { m.isgid })
        .find_map(|m| {
            let (host, ns, range) = (m.hostid as i64, m.nsid as i64, m.maprange as i64);
            let id = id as i64;
            (id >= host && id < host + range).then(|| (ns + id - host) as u32)
        })
}

/// Shifts a tree back by `map` (host ids of LXD's disk map to the ids of
/// the container): owners, with the set-id bits and file capabilities a
/// chown clears put back (a v3 capability, which names a root id, as v2).
/// Symlinks are not followed. Returns the entries changed.
pub(super) fn unshift_tree(root: &Path, map: &[IdMapType]) -> std::io::Result<u64> {
    if map.is_empty() {
        return Ok(0);
    }
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let uid = unshifted(map, meta.uid(), true);
        let gid = unshifted(map, meta.gid(), false);
        if uid.is_some() || gid.is_some() {
            let caps = meta.is_file().then(|| get_caps(&path)).flatten();
            std::os::unix::fs::lchown(&path, uid, gid)?;
            if !meta.file_type().is_symlink() && meta.mode() & 0o6000 != 0 {
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(meta.mode() & 0o7777),
                )?;
            }
            if let Some(c) = caps {
                set_caps(&path, &c)?;
            }
            changed += 1;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&path)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(changed)
}

const CAPS: &[u8] = b"security.capability\0";

fn cpath(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

fn get_caps(path: &Path) -> Option<Vec<u8>> {
    let p = cpath(path).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and a buffer of the length given.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            CAPS.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n > 0).then(|| buf[..n as usize].to_vec())
}

/// Writes a capability back, a v3 one (24 bytes, a root id) as v2.
fn set_caps(path: &Path, caps: &[u8]) -> std::io::Result<()> {
    let mut v = caps.to_vec();
    if v.len() == 24 && v[3] == 0x03 {
        v.truncate(20);
        v[3] = 0x02;
    }
    let p = cpath(path)?;
    // SAFETY: valid C strings and a value of the length given.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            CAPS.as_ptr().cast(),
            v.as_ptr().cast(),
            v.len(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lxd_map() -> Vec<IdMapType> {
        vec![
            IdMapType {
                isuid: true,
                isgid: false,
                hostid: 100000,
                nsid: 0,
                maprange: 65536,
            },
            IdMapType {
                isuid: false,
                isgid: true,
                hostid: 200000,
                nsid: 0,
                maprange: 65536,
            },
        ]
    }

    #[test]
    fn ids_are_shifted_back_by_their_own_range() {
        let m = lxd_map();
        assert_eq!(unshifted(&m, 100000, true), Some(0));
        assert_eq!(unshifted(&m, 101000, true), Some(1000));
        assert_eq!(unshifted(&m, 200005, false), Some(5));
        // A gid in the uid range, an id outside every range: unchanged.
        assert_eq!(unshifted(&m, 100000, false), None);
        assert_eq!(unshifted(&m, 5, true), None);
        assert_eq!(unshifted(&m, 165536, true), None);
    }

    #[test]
    fn an_old_lxd_without_negotiation_means_compression() {
        let h = MigrationHeader::default();
        assert_eq!(features_of(&h), vec!["xattrs", "delete", "compress"]);
        let h = MigrationHeader {
            rsync_features: Some(RsyncFeatures::common(Some(&RsyncFeatures {
                xattrs: Some(true),
                delete: Some(true),
                compress: Some(true),
                bidirectional: Some(true),
            }))),
            ..Default::default()
        };
        // Kante never asks for compression.
        assert_eq!(features_of(&h), vec!["xattrs", "delete", "bidirectional"]);
    }
}
