//! Volume streams: an instance or custom volume with its snapshots, sent
//! over any byte stream (a pipe, a socket, a websocket) and received into
//! another pool, all or nothing. Incus's `MigrationTypes` /
//! `MigrateVolume` / `CreateVolumeFromMigration` are the idea; the peer
//! transfer of instances between hosts is built on this.
//!
//! **Negotiation.** The sender offers the [`MigrationType`]s it can send
//! the volume with ([`Pool::send_types`]: its driver's types, minus those
//! the volume's trees do not allow), the receiver picks with [`negotiate`]
//! the best of its own ([`Pool::receive_types`]) that is offered: `btrfs`
//! (`btrfs send`/`receive`) between btrfs pools, `tar` otherwise (every
//! driver sends and receives it). The exchange itself is the caller's (a
//! one-way pipe in the tests, the control channel of a migration later);
//! the chosen type is written in the stream's header, and the receiver
//! refuses a type it did not accept.
//!
//! **Wire format** (integers big-endian; see `codec`):
//!
//! ```text
//! magic     "KANTEVS1"
//! header    u32 length (at most 4 MiB), then a JSON StreamHeader
//! section   one per snapshot, in the header's order, then the volume's:
//!             chunks   u32 length (1 ..= 16 MiB), then that many bytes
//!             end      u32 0, u64 bytes in the section, u32 CRC-32 of them
//!           (or, if the sender failed: u32 0xffffffff, u32 length, message)
//! trailer   "KANTEEND"
//! ```
//!
//! A section's bytes are those of one tree, as its type writes it: `tar`
//! is GNU tar of the tree's contents (`--sparse`, `--xattrs` with every
//! namespace, `--acls`, `--numeric-owner`); `btrfs` is `btrfs send` of a
//! read-only subvolume, with `-p` the previous snapshot sent (the first one
//! whole). The live volume is sent from a read-only snapshot taken for the
//! purpose where the driver makes one in constant time (btrfs, for either
//! type), so what is sent is one point in time. Elsewhere (dir) the live
//! tree is read as it is: the caller stops or freezes the instance first,
//! and a file that changes while tar reads it fails the send. A subvolume
//! nested in a tree is not part of it (tar stays on one filesystem, `btrfs
//! send` sends it as an empty directory).
//!
//! **Receiving** trusts nothing of the sender. The header is checked
//! before anything is made (names, kind, type, that nothing of that name
//! exists, that the pool can enforce the size). Snapshots are built in
//! `<kind>-snapshots/.staging-<name>/` and the volume at
//! `<kind>/.staging-<name>`, the pool's usual staging paths (crash
//! leftovers that the next start removes); only once the trailer has
//! arrived are they renamed into place, snapshots first, the volume last.
//! Any failure (a cut or corrupt stream, a sender that aborts, a refused
//! entry, a cap) removes everything made. `tar` sections go through
//! kante-images' validating tar filter (no escaping names or links, no
//! device nodes, byte and time caps) into GNU tar. `btrfs` sections are
//! received with `btrfs receive --chroot` into the staging snapshots
//! directory, and each must have made exactly one new entry there: a
//! read-only subvolume carrying a received UUID, with no subvolume inside.
//! The received volume is then made writable by a snapshot of it.
//! `btrfs receive` may reuse (as parent or clone source) any subvolume of
//! the receiving filesystem whose UUID the stream names, and makes the
//! device nodes a stream carries, so `btrfs` is for peers the receiver
//! trusts; [`ReceiveOptions::accept`] restricts a receive to `tar`
//! otherwise. The byte and time caps are checked as data arrives: a
//! sender that stalls without closing blocks the receiving thread, so a
//! caller reading from a socket sets a read timeout on it.
//!
//! **Refresh** (`refresh.rs`): a copy already received is brought up to
//! date by differences from a snapshot both pools have (the header's
//! `base`, checked to exist on the receiver; a refresh stream is refused
//! where a new volume is expected, and the other way round), and its
//! volume swapped in atomically. [`TreeIdentity`] tells the two sides
//! whether the receiver's copy of a snapshot can be that base.
//!
//! **Tests.** `tests.rs` (no root): negotiation, the header and framing
//! (cut anywhere, corrupt, aborted, capped), a dir → dir stream.
//! `tests/streams.rs` (root, loop-backed btrfs): pool → pipe → pool for
//! dir→dir, dir→btrfs, btrfs→dir and btrfs→btrfs (as differences, and the
//! fallback to tar), comparing every tree's bytes, owners, modes, xattrs,
//! ACL, links, holes and times. `tests/stream_refresh.rs`: a refresh
//! after a small change (bytes sent, trees equal, older snapshots
//! untouched), cut and refused refreshes leaving the copy as it was.
//! `tests/stream_failures.rs`: cut, corrupt
//! and aborted streams, refused entries and names in use, each leaving
//! the receiving pool as it was.

pub(crate) mod btrfs;
mod codec;
mod receive;
mod refresh;
mod send;
mod tar;
mod tools;

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    validate_snapshot_name, validate_volume_name, Limits, Result, StorageDriver, StorageError,
    VolumeKind, VolumeMeta,
};

pub use codec::{
    read_header, read_trailer, write_abort, write_header, write_trailer, SectionReader,
    SectionWriter, MAGIC, TRAILER,
};
pub use receive::Received;
pub use send::SendReport;
pub(crate) use send::SEND_PREFIX;

/// The stream format this code writes and reads.
pub const STREAM_VERSION: u32 = 1;
/// Most snapshots one stream may carry.
pub const MAX_SNAPSHOTS: usize = 10_000;

/// How the trees of a volume are written into a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MigrationType {
    /// `btrfs send` of each read-only subvolume (`-p` the previous one),
    /// `btrfs receive` on the other side: btrfs to btrfs only.
    #[serde(rename = "btrfs")]
    BtrfsSend,
    /// GNU tar of each tree, through the validating filter on receipt:
    /// any driver to any driver.
    #[serde(rename = "tar")]
    Tar,
}

impl MigrationType {
    /// The name in a stream's header (`btrfs`, `tar`).
    pub fn name(self) -> &'static str {
        match self {
            MigrationType::BtrfsSend => "btrfs",
            MigrationType::Tar => "tar",
        }
    }

    pub fn parse(name: &str) -> Option<MigrationType> {
        match name {
            "btrfs" => Some(MigrationType::BtrfsSend),
            "tar" => Some(MigrationType::Tar),
            _ => None,
        }
    }
}

impl std::fmt::Display for MigrationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The type to stream with: the first of the receiver's types (`accepted`,
/// best first) that the sender `offered`. Every driver sends and receives
/// [`MigrationType::Tar`], so two pools always agree unless one side
/// narrowed its list.
pub fn negotiate(offered: &[MigrationType], accepted: &[MigrationType]) -> Result<MigrationType> {
    accepted
        .iter()
        .copied()
        .find(|t| offered.contains(t))
        .ok_or_else(|| {
            let names =
                |l: &[MigrationType]| l.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
            StorageError::Unsupported(format!(
                "no common volume stream type (offered: {}; accepted: {})",
                names(offered),
                names(accepted)
            ))
        })
}

/// What a stream says about itself before its data: the receiver makes
/// exactly these volumes, or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamHeader {
    /// [`STREAM_VERSION`].
    pub version: u32,
    #[serde(rename = "type")]
    pub migration_type: MigrationType,
    /// `container` or `custom`.
    pub kind: VolumeKind,
    /// The volume's name on the sending side.
    pub name: String,
    /// Snapshot names, oldest first: the order of the sections.
    pub snapshots: Vec<String>,
    /// The volume's size limit in bytes (`None`: none).
    #[serde(default)]
    pub size: Option<u64>,
    /// A custom volume's description and config.
    #[serde(default)]
    pub meta: Option<VolumeMeta>,
    /// A refresh ([`Pool::send_refresh`](crate::Pool::send_refresh)): the
    /// snapshot both sides have that the first section is the difference
    /// from; the receiver updates its existing volume rather than making one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// How a tree (a snapshot) is known to a driver that sends differences,
/// so two pools can tell whether a difference from it can be received:
/// the receiver's copy answers to `received_as` what the sender's
/// original names itself (`sent_as`). For btrfs, a UUID and transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeIdentity {
    /// How a difference from this tree names it.
    pub sent_as: String,
    /// For a read-only copy made by receiving a stream: the `sent_as` of
    /// the original it was received from.
    pub received_as: Option<String>,
}

impl StreamHeader {
    /// Checks what a receiver must never take on trust: the version, the
    /// kind, the names (no `..`, no `/`, no leading dot), snapshot names
    /// unique and at most [`MAX_SNAPSHOTS`] of them.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(StorageError::Stream(m));
        if self.version != STREAM_VERSION {
            return bad(format!(
                "stream version {} is not supported (this side speaks {STREAM_VERSION})",
                self.version
            ));
        }
        if self.kind == VolumeKind::Image {
            return bad("image volumes are not streamed (images travel as images)".into());
        }
        validate_volume_name(&self.name)?;
        if self.snapshots.len() > MAX_SNAPSHOTS {
            return bad(format!(
                "{} snapshots (at most {MAX_SNAPSHOTS})",
                self.snapshots.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.snapshots {
            validate_snapshot_name(s)?;
            if !seen.insert(s.as_str()) {
                return bad(format!("snapshot {s:?} is listed twice"));
            }
        }
        if self.meta.is_some() && self.kind != VolumeKind::Custom {
            return bad("only custom volumes carry volume metadata".into());
        }
        if let Some(b) = &self.base {
            validate_snapshot_name(b)?;
            if self.snapshots.contains(b) {
                return bad(format!("the base snapshot {b:?} is also sent"));
            }
        }
        Ok(())
    }
}

/// How [`Pool::receive_volume`] treats a stream.
///
/// [`Pool::receive_volume`]: crate::Pool::receive_volume
#[derive(Debug, Clone, Default)]
pub struct ReceiveOptions {
    /// Create the volume under this name rather than the sender's.
    pub name: Option<String>,
    /// The types accepted; empty: every type the pool receives. A stream
    /// of another type is refused before anything is made (`[Tar]` for a
    /// peer not trusted with `btrfs receive`).
    pub accept: Vec<MigrationType>,
    /// The size limit to apply instead of the sender's (`Some(None)`:
    /// none, e.g. into a pool that cannot enforce one).
    pub size: Option<Option<u64>>,
    /// Caps on the bytes the stream carries and on its time; `None`: those
    /// of an import (`KANTE_MAX_IMPORT_BYTES`, else the pool's free space
    /// minus a reserve; `KANTE_MAX_IMPORT_SECONDS`, else six hours).
    pub limits: Option<Limits>,
}

/// Where one received section goes (see
/// [`StorageDriver::receive_section`]).
pub struct SectionTarget<'a> {
    /// The directory every section of the stream is received in: the
    /// staging snapshots directory, holding the snapshots received so far.
    pub dir: &'a Path,
    /// What the section becomes (it does not exist yet): `dir/<snapshot>`
    /// for a snapshot, the volume's staging path for the volume.
    pub dst: &'a Path,
    /// A snapshot (made read-only where the driver can) or the volume.
    pub snapshot: bool,
    /// Caps on what the section may write and on its time.
    pub limits: &'a Limits,
}

/// The `tar` section of the tree at `src` (any driver whose volumes are
/// directories).
pub(crate) fn send_tar_section(src: &Path, out: &mut dyn Write) -> Result<()> {
    tar::send_tree(src, out)
}

/// Receives a `tar` section as a new volume of `driver` at `target.dst`.
pub(crate) fn receive_tar_section<D: StorageDriver + ?Sized>(
    driver: &D,
    input: &mut dyn Read,
    target: &SectionTarget,
) -> Result<()> {
    driver.create_volume(target.dst)?;
    tar::receive_tree(input, target.dst, target.limits)?;
    if target.snapshot {
        driver.seal_volume(target.dst)?;
    }
    Ok(())
}

/// The error for a type a driver does not handle.
pub(crate) fn unsupported(driver: &str, ty: MigrationType) -> StorageError {
    StorageError::Unsupported(format!(
        "the {driver} driver does not handle {ty} volume streams"
    ))
}

/// A tar or image-layer failure, as a storage error: what the stream
/// carried is the sender's fault, the rest ours.
pub(crate) fn image_error(e: kante_images::ImageError) -> StorageError {
    use kante_images::ImageError::*;
    match e {
        Corrupt(_) | UnsafePath(_) | InvalidImage(_) | TooLarge(_) | TimedOut(_) | Tool { .. } => {
            StorageError::Stream(e.to_string())
        }
        other => StorageError::Command(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
