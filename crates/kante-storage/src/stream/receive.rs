//! Receiving a volume stream (see the module above), all or nothing: the
//! header is checked before anything is made; the sections are received
//! at the pool's staging paths; after the trailer, the staging snapshots
//! directory must hold exactly the announced snapshots, the size limit is
//! applied, and the snapshots then the volume are renamed into place. Any
//! failure before the volume's rename removes everything made.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::codec::{read_header, read_trailer, SectionReader};
use super::{image_error, MigrationType, ReceiveOptions, SectionTarget, StreamHeader};
use crate::aside::remove_snapshots_dir;
use crate::{
    format_size, rename_noreplace, validate_volume_name, Limits, Pool, Result, StorageError,
    VolumeKind, VolumeMeta,
};

/// What a receive made.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub kind: VolumeKind,
    pub name: String,
    /// The snapshots, in the order received.
    pub snapshots: Vec<String>,
    pub migration_type: MigrationType,
    /// The size limit applied.
    pub size: Option<u64>,
    /// Bytes of section data that arrived.
    pub bytes: u64,
    /// A custom volume's description and config as received (its `size`
    /// the one applied): the caller records them (the pool keeps no
    /// records).
    pub meta: Option<VolumeMeta>,
}

/// Everything decided from the header before anything is made.
pub(super) struct Plan {
    pub(super) ty: MigrationType,
    pub(super) kind: VolumeKind,
    pub(super) name: String,
    pub(super) size: Option<u64>,
    pub(super) meta: Option<VolumeMeta>,
    pub(super) limits: Limits,
}

impl Pool {
    /// Receives a volume stream from `input` (read up to and including its
    /// trailer) as a new volume with its snapshots, or nothing at all; see
    /// [`ReceiveOptions`] for the name, the types accepted, the size and
    /// the caps. The pool refuses a name whose volume or snapshots exist;
    /// a custom volume's record lives in the caller's state, so the caller
    /// checks (or reserves) the name there first and records
    /// [`Received::meta`] after.
    pub fn receive_volume(&self, input: &mut dyn Read, opts: &ReceiveOptions) -> Result<Received> {
        let header = read_header(input)?;
        let plan = self.plan_receive(&header, opts, false)?;
        let Plan {
            ty,
            kind,
            ref name,
            size,
            ..
        } = plan;
        let vol_staging = self.staging_path(kind, name);
        let snaps_parent = self.base.join(
            kind.snapshots_dir_name()
                .expect("streamed kinds have snapshots"),
        );
        let snap_staging = snaps_parent.join(format!(".staging-{name}"));
        let mut revert = self.start_staging(&vol_staging)?;
        if snap_staging.symlink_metadata().is_ok() {
            remove_snapshots_dir(self.driver.as_ref(), &snap_staging)?;
        }
        std::fs::create_dir_all(&snaps_parent)
            .and_then(|()| std::fs::create_dir(&snap_staging))
            .and_then(|()| {
                std::fs::set_permissions(&snap_staging, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(StorageError::io(format!(
                "creating {}",
                snap_staging.display()
            )))?;
        {
            let (d, p) = (self.driver.clone(), snap_staging.clone());
            revert.add(move || {
                if let Err(e) = remove_snapshots_dir(d.as_ref(), &p) {
                    tracing::warn!(path = %p.display(), "removing a staging directory: {e}");
                }
            });
        }

        let deadline = plan.limits.timeout.map(|t| Instant::now() + t);
        let mut bytes = 0;
        for snap in &header.snapshots {
            let dst = snap_staging.join(snap);
            let target = (snap_staging.as_path(), dst.as_path(), true);
            let what = format!("snapshot {snap}");
            bytes += self.receive_one(&plan, input, target, bytes, deadline, &what)?;
        }
        let target = (snap_staging.as_path(), vol_staging.as_path(), false);
        bytes += self.receive_one(&plan, input, target, bytes, deadline, "the volume")?;
        read_trailer(input)?;

        // Exactly the announced snapshots, whatever a driver or a tool did.
        let found: BTreeSet<String> = std::fs::read_dir(&snap_staging)
            .and_then(|rd| {
                rd.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .map_err(StorageError::io(format!(
                "reading {}",
                snap_staging.display()
            )))?;
        let expected: BTreeSet<String> = header.snapshots.iter().cloned().collect();
        if found != expected {
            return Err(StorageError::Stream(format!(
                "the stream made {:?} where the snapshots {:?} were announced",
                found, expected
            )));
        }
        if vol_staging.symlink_metadata().is_err() {
            return Err(StorageError::Stream("the stream made no volume".into()));
        }
        if let Some(n) = size {
            self.driver.set_volume_size(&vol_staging, Some(n))?;
        }

        // Commit: the snapshots, then the volume (its rename is the point
        // from which the receive has happened).
        if header.snapshots.is_empty() {
            std::fs::remove_dir(&snap_staging).map_err(StorageError::io(format!(
                "removing {}",
                snap_staging.display()
            )))?;
        } else {
            let dst = snaps_parent.join(name);
            rename_noreplace(&snap_staging, &dst)?;
            let d = self.driver.clone();
            revert.add(move || {
                if let Err(e) = remove_snapshots_dir(d.as_ref(), &dst) {
                    tracing::warn!(path = %dst.display(), "removing received snapshots: {e}");
                }
            });
        }
        rename_noreplace(&vol_staging, &self.volume_path(kind, name))?;
        revert.success();
        Ok(Received {
            kind,
            name: name.clone(),
            snapshots: header.snapshots,
            migration_type: ty,
            size,
            bytes,
            meta: plan.meta.clone(),
        })
    }

    /// Decides everything from the header, refusing what this pool will
    /// not make: a type not accepted, a name in use, a size it cannot
    /// enforce, custom config keys it does not know. A `refresh` updates a
    /// volume that exists, from a snapshot of it that exists (the header's
    /// base); its size limit stays (`size` is then `None`).
    pub(super) fn plan_receive(
        &self,
        header: &StreamHeader,
        opts: &ReceiveOptions,
        refresh: bool,
    ) -> Result<Plan> {
        let ty = header.migration_type;
        let ours = self.receive_types();
        let accepted: Vec<MigrationType> = if opts.accept.is_empty() {
            ours
        } else {
            opts.accept
                .iter()
                .copied()
                .filter(|t| ours.contains(t))
                .collect()
        };
        if !accepted.contains(&ty) {
            return Err(StorageError::Stream(format!(
                "a {ty} stream, where pool {} accepts {}",
                self.name,
                accepted
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let kind = header.kind;
        let name = opts.name.clone().unwrap_or_else(|| header.name.clone());
        validate_volume_name(&name)?;
        // A refresh keeps the size limit of the volume it updates.
        let size = match refresh {
            true => None,
            false => opts.size.unwrap_or(header.size).filter(|n| *n > 0),
        };
        let mut size_config = kante_api::ConfigMap::new();
        if let Some(n) = size {
            size_config.insert("size".into(), format_size(n));
        }
        let meta = match kind {
            VolumeKind::Custom => {
                let mut meta = header.meta.clone().unwrap_or_default();
                meta.config.remove("size");
                meta.config.extend(size_config.clone());
                self.validate_custom_config(&meta.config)?;
                Some(meta)
            }
            _ => {
                self.validate_custom_config(&size_config)?;
                None
            }
        };
        let taken = |p: PathBuf| p.symlink_metadata().is_ok();
        match (refresh, &header.base) {
            (false, None) => {
                if taken(self.volume_path(kind, &name))
                    || self.snapshots_dir(kind, &name).is_some_and(taken)
                {
                    return Err(StorageError::Exists(format!(
                        "{} volume {name} (or its snapshots)",
                        kind.api_name()
                    )));
                }
            }
            (true, Some(base)) => {
                self.existing_volume(kind, &name)?;
                if !taken(self.snapshot_path(kind, &name, base)?) {
                    return Err(StorageError::NotFound(format!("snapshot {name}/{base}")));
                }
                for s in &header.snapshots {
                    if taken(self.snapshot_path(kind, &name, s)?) {
                        return Err(StorageError::Exists(format!("snapshot {name}/{s}")));
                    }
                }
            }
            (false, Some(base)) => {
                return Err(StorageError::Stream(format!(
                    "a refresh from snapshot {base:?}, where a new volume was expected"
                )))
            }
            (true, None) => {
                return Err(StorageError::Stream(
                    "a whole volume, where a refresh was expected".into(),
                ))
            }
        }
        let limits = match &opts.limits {
            Some(l) => l.clone(),
            None => Limits::import_into(&self.base).map_err(image_error)?,
        };
        Ok(Plan {
            ty,
            kind,
            name,
            size,
            meta,
            limits,
        })
    }

    /// Receives one section (`target`: the directory sections are received
    /// in, what this one becomes, whether it is a snapshot) within what is
    /// left of the caps once `used` bytes have arrived. Returns its bytes.
    pub(super) fn receive_one(
        &self,
        plan: &Plan,
        input: &mut dyn Read,
        target: (&Path, &Path, bool),
        used: u64,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<u64> {
        let rest = Limits {
            max_bytes: plan.limits.max_bytes.map(|m| m.saturating_sub(used)),
            max_bytes_from: plan.limits.max_bytes_from.clone(),
            timeout: deadline.map(|d| d.saturating_duration_since(Instant::now())),
        };
        let mut section = SectionReader::new(input, what).with_caps(rest.max_bytes, deadline);
        let (dir, dst, snapshot) = target;
        let target = SectionTarget {
            dir,
            dst,
            snapshot,
            limits: &rest,
        };
        self.driver
            .receive_section(plan.ty, &mut section, &target)
            .map_err(|e| section.explain(e))?;
        section.finish().map_err(|e| section.explain(e))
    }
}
