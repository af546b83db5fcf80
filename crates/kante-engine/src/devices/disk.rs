//! `disk` devices: the root disk (path `/`, the instance's volume in a
//! pool) and the others, bind mounts of a host path or of a custom volume,
//! made at start and hot-plugged into a running instance.

use std::path::{Path, PathBuf};

use kante_runtime::BindMount;

use super::{Claims, Device, DeviceConfig, DeviceError, RunPlan, StartCx, StopPlan};
use crate::error::Result;
use crate::units;
use crate::util::is_true;
use crate::Engine;

struct Disk {
    name: String,
    config: DeviceConfig,
}

pub(super) fn load(name: &str, config: &DeviceConfig) -> Box<dyn Device> {
    Box::new(Disk {
        name: name.to_string(),
        config: config.clone(),
    })
}

impl Disk {
    fn get(&self, key: &str) -> Option<&String> {
        self.config.get(key)
    }

    fn root(&self) -> bool {
        self.get("path").map(String::as_str) == Some("/")
    }

    /// `required=false`: a missing source is skipped rather than an error.
    fn optional(&self) -> bool {
        self.get("required").is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "off"
            )
        })
    }

    fn source(&self) -> &str {
        self.get("source").map(String::as_str).unwrap_or("")
    }
}

#[async_trait::async_trait]
impl Device for Disk {
    fn validate(&self) -> Result<()> {
        let (name, dev) = (&self.name, &self.config);
        for key in dev.keys() {
            if !matches!(
                key.as_str(),
                "type"
                    | "path"
                    | "pool"
                    | "source"
                    | "readonly"
                    | "size"
                    | "required"
                    | "shift"
                    | "propagation"
                    | "recursive"
                    | "boot.priority"
            ) {
                return Err(
                    DeviceError::invalid(name, format!("unknown disk option {key:?}")).into(),
                );
            }
        }
        let path = dev.get("path").map(String::as_str).unwrap_or("");
        if !path.starts_with('/') {
            return Err(DeviceError::invalid(name, "disk path must be absolute").into());
        }
        if path.split('/').any(|c| c == "..") {
            return Err(DeviceError::invalid(name, "disk path may not contain '..'").into());
        }
        if path == "/" {
            if dev.get("pool").map(String::is_empty).unwrap_or(true) {
                return Err(DeviceError::invalid(name, "the root disk needs a pool").into());
            }
            if dev.contains_key("source") {
                return Err(
                    DeviceError::invalid(name, "the root disk cannot have a source").into(),
                );
            }
            if let Some(size) = dev.get("size") {
                units::parse_size(size).map_err(DeviceError::cause(name))?;
            }
            return Ok(());
        }
        let source = self.source();
        if source.is_empty() {
            return Err(
                DeviceError::invalid(name, "a disk other than the root needs a source").into(),
            );
        }
        // A size belongs to the volume (the root disk's or a custom volume's config).
        if dev.contains_key("size") {
            return Err(DeviceError::invalid(
                name,
                "size only applies to the root disk (set it on the custom volume instead)",
            )
            .into());
        }
        for key in ["readonly", "required", "shift"] {
            if let Some(v) = dev.get(key) {
                if !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "true" | "false" | "1" | "0" | "yes" | "no" | "on" | "off" | ""
                ) {
                    return Err(DeviceError::invalid(
                        name,
                        format!("{key} must be a boolean, not {v:?}"),
                    )
                    .into());
                }
            }
        }
        if let Some(pool) = dev.get("pool") {
            // A custom volume of that pool; it must exist when the instance starts.
            kante_api::names::validate_entity_name("Storage pool", pool)
                .map_err(DeviceError::cause(name))?;
            kante_storage::validate_volume_name(source).map_err(DeviceError::cause(name))?;
            return Ok(());
        }
        if !source.starts_with('/') {
            return Err(DeviceError::invalid(
                name,
                "source must be an absolute host path (or a custom volume name with pool)",
            )
            .into());
        }
        Ok(())
    }

    async fn check_refs(&self, engine: &Engine, claims: &mut Claims) -> Result<()> {
        let name = &self.name;
        let Some(pool) = self.get("pool") else {
            if !self.root() {
                host_source(engine, name, Path::new(self.source()))?;
            }
            return Ok(());
        };
        engine
            .pool(pool)
            .map_err(|_| DeviceError::invalid(name, format!("storage pool {pool:?} not found")))?;
        if self.root() {
            return Ok(());
        }
        let source = self.source();
        if let Err(e) = engine.custom_volume_path(pool, source) {
            if !self.optional() {
                return Err(DeviceError::cause(name)(e).into());
            }
        }
        if let Some(other) = claims.claim(format!("volume {pool}/{source}"), name) {
            return Err(DeviceError::invalid(
                name,
                format!("storage volume {source:?} is already attached as device {other:?}"),
            )
            .into());
        }
        Ok(())
    }

    fn can_hot_plug(&self) -> bool {
        !self.root()
    }

    /// The root disk and custom volumes move with their pool's data; a
    /// host path is this host's.
    fn can_migrate(&self) -> bool {
        self.root() || self.config.contains_key("pool")
    }

    fn start_order(&self) -> u8 {
        0
    }

    /// A bind mount of the source; the root disk is the runtime's rootfs.
    async fn start(&self, cx: &StartCx<'_>, plan: &mut RunPlan) -> Result<()> {
        if self.root() {
            return Ok(());
        }
        let (dname, dev) = (&self.name, &self.config);
        let optional = self.optional();
        let raw = self.source();
        let source = match dev.get("pool") {
            // A custom volume: its directory in the pool is the bind source.
            Some(pool) => match cx.engine.custom_volume_path(pool, raw) {
                Ok(p) => p,
                Err(_) if optional => return Ok(()),
                Err(e) => return Err(DeviceError::cause(dname)(e).into()),
            },
            None => host_source(cx.engine, dname, Path::new(raw))?,
        };
        if !source.exists() {
            if optional {
                return Ok(());
            }
            return Err(DeviceError::invalid(
                dname,
                format!("source {} does not exist", source.display()),
            )
            .into());
        }
        // A custom volume is shifted like the rootfs (on-disk ids =
        // container ids) unless it opts out with shift=false. A host
        // path is not, as in LXD (audit F5): shifted, its root-owned
        // files would be the guest root's to rewrite and to make
        // setuid; `shift=true` asks for exactly that.
        let shift = match dev.get("shift").filter(|v| !v.is_empty()) {
            Some(v) => is_true(Some(v)),
            None => dev.contains_key("pool"),
        };
        plan.mounts.push((
            dname.clone(),
            BindMount {
                source,
                target: dev.get("path").cloned().unwrap_or_default(),
                readonly: is_true(dev.get("readonly")),
                idmapped: shift && !cx.privileged,
            },
        ));
        Ok(())
    }

    fn stop(&self, plan: &mut StopPlan) {
        if let Some(path) = self.get("path").filter(|_| !self.root()) {
            plan.unmounts.push(path.clone());
        }
    }

    fn is_root_disk(&self) -> bool {
        self.root()
    }

    fn uses_volume(&self, pool: &str, volume: &str) -> bool {
        !self.root()
            && self.get("pool").map(String::as_str) == Some(pool)
            && self.get("source").map(String::as_str) == Some(volume)
    }
}

/// A host directory or file for a disk device, resolved (symlinks
/// followed). Refuses what would hand the guest the host: the root, the
/// system's top directories, and Kante's own state (any path inside
/// KANTE_DIR, or above it). A path that does not exist (yet) is left
/// to the start, which refuses it unless the disk is optional.
fn host_source(engine: &Engine, dname: &str, source: &Path) -> Result<PathBuf> {
    const SYSTEM: [&str; 17] = [
        "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
        "/root", "/run", "/sbin", "/sys", "/usr", "/var", "/var/lib",
    ];
    let Ok(real) = std::fs::canonicalize(source) else {
        return Ok(source.to_path_buf());
    };
    let root = &engine.paths.root;
    let state = std::fs::canonicalize(root).unwrap_or(root.clone());
    let refused = SYSTEM.iter().any(|s| real == Path::new(s))
        || real.starts_with(&state)
        || state.starts_with(&real);
    if refused {
        return Err(DeviceError::invalid(
            dname,
            format!(
                "source {} cannot be shared with an instance (it is a system directory or holds Kante's own state)",
                real.display()
            ),
        )
        .into());
    }
    Ok(real)
}
