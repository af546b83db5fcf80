//! `btrfs` sections: `btrfs send` of a read-only subvolume (with `-p` the
//! previous snapshot of the stream, so only the difference travels), and
//! `btrfs receive` on the other side.
//!
//! Every section of a stream is received in the same directory (the
//! staging snapshots directory), with `--chroot` so the tool works inside
//! it, and must have made exactly one new entry there: a read-only
//! subvolume with a received UUID and no subvolume inside. A snapshot is
//! then renamed to its name (a read-only subvolume can only be renamed
//! within its directory, which is why the snapshots are received where
//! they stay); the volume is snapshotted writable to its staging path and
//! the received copy deleted.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use super::tools::{run_from, run_to};
use super::SectionTarget;
use crate::btrfs_ioctl as ioctl;
use crate::{rename_noreplace, Result, StorageError};

/// Writes `btrfs send` of the read-only subvolume `src`, as the difference
/// from the read-only subvolume `parent` when given.
pub(crate) fn send_subvolume(src: &Path, parent: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let mut cmd = Command::new("btrfs");
    cmd.args(["send", "--quiet"]);
    if let Some(p) = parent {
        cmd.arg("-p").arg(p);
    }
    cmd.arg(src);
    run_to(&mut cmd, &format!("btrfs send of {}", src.display()), out)
}

/// Makes `dst` a read-only snapshot of the live volume `src` to send
/// from, if `src` is a subvolume.
pub(crate) fn freeze(src: &Path, dst: &Path) -> Result<bool> {
    if !ioctl::is_subvolume(src) {
        return Ok(false);
    }
    ioctl::snapshot(src, dst, true).map_err(StorageError::io(format!(
        "snapshotting {} as {}",
        src.display(),
        dst.display()
    )))?;
    Ok(true)
}

fn entries(dir: &Path) -> Result<BTreeSet<std::ffi::OsString>> {
    std::fs::read_dir(dir)
        .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect())
        .map_err(StorageError::io(format!("reading {}", dir.display())))
}

fn refused(m: String) -> StorageError {
    StorageError::Stream(m)
}

/// Receives one `btrfs` section into `target.dir`, checks what it made,
/// and puts it at `target.dst` (see the module docs).
pub(crate) fn receive_subvolume(input: &mut dyn Read, target: &SectionTarget) -> Result<()> {
    let dir = target.dir;
    let before = entries(dir)?;
    run_from(
        Command::new("btrfs")
            .args(["receive", "--quiet", "--chroot"])
            .arg(dir),
        "btrfs receive",
        input,
    )?;
    let made: Vec<_> = entries(dir)?.difference(&before).cloned().collect();
    let [name] = &made[..] else {
        return Err(refused(format!(
            "a btrfs section made {} entries where one subvolume was expected ({:?})",
            made.len(),
            made.iter().take(4).collect::<Vec<_>>()
        )));
    };
    let got = dir.join(name);
    if !ioctl::is_subvolume(&got) {
        return Err(refused(format!(
            "a btrfs section made {name:?}, which is not a subvolume"
        )));
    }
    let info =
        ioctl::subvolume_info(&got).map_err(StorageError::io(format!("inspecting {name:?}")))?;
    if !info.readonly || info.received_uuid == [0; 16] {
        return Err(refused(format!(
            "{name:?} is not a finished received subvolume (read-only: {}, received UUID set: {})",
            info.readonly,
            info.received_uuid != [0; 16]
        )));
    }
    let nested =
        ioctl::child_subvolumes(&got).map_err(StorageError::io(format!("inspecting {name:?}")))?;
    if !nested.is_empty() {
        return Err(refused(format!(
            "{name:?} holds {} subvolume(s) of its own",
            nested.len()
        )));
    }
    if target.snapshot {
        if got != target.dst {
            rename_noreplace(&got, target.dst)?;
        }
        return Ok(());
    }
    ioctl::snapshot(&got, target.dst, false).map_err(StorageError::io(format!(
        "snapshotting {} as {}",
        got.display(),
        target.dst.display()
    )))?;
    ioctl::delete_subvolume(&got).map_err(StorageError::io(format!(
        "deleting subvolume {}",
        got.display()
    )))
}

fn hex(uuid: &[u8; 16]) -> String {
    uuid.iter().map(|b| format!("{b:02x}")).collect()
}

/// How subvolume `path` is known to `btrfs receive` as the parent of a
/// difference (see [`TreeIdentity`](super::TreeIdentity)): `btrfs send`
/// names a parent by its received UUID if it has one, else its own UUID,
/// with its `ctransid`; a received subvolume answers to its received UUID
/// with the sender's `ctransid` (its `stransid`).
pub(crate) fn identity(path: &Path) -> Option<super::TreeIdentity> {
    if !ioctl::is_subvolume(path) {
        return None;
    }
    let info = ioctl::subvolume_info(path).ok()?;
    let received = info.received_uuid != [0; 16];
    let sent_uuid = if received {
        &info.received_uuid
    } else {
        &info.uuid
    };
    Some(super::TreeIdentity {
        sent_as: format!("{}:{}", hex(sent_uuid), info.ctransid),
        received_as: (received && info.readonly)
            .then(|| format!("{}:{}", hex(&info.received_uuid), info.stransid)),
    })
}
