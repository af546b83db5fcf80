//! Image builders behind `kante image build`: each produces a unified,
//! zstd-compressed LXD-style tarball (metadata.yaml + rootfs/ + templates/).

mod busybox;
mod debian;
mod workdir;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kante_api::image::{normalise_architecture, ImageMetadata, ImageTemplate};

pub use busybox::{build_busybox, BUSYBOX_FALLBACK_STOP_SIGNAL};
pub use debian::{build_debian, DebianBuild};

use crate::archive::{pack_sections, ArchiveCompression, PackOptions, Section};
use crate::error::{ImageError, IoContext};

/// Bump whenever any recipe's output changes: cached tarballs with an older
/// stamp are rebuilt.
pub const RECIPE_VERSION: u32 = 3;

/// Debian mirror used when none is given.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Level 9 is the knee of the curve for a Debian rootfs on two cores:
/// ~7% smaller than level 3 for about twice the time; 12+ gains <1% at 2-10x.
const ZSTD_LEVEL: i32 = 9;

/// What a build reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// A new step started ("debootstrap", "apt", "configure", "pack", "cached", ...).
    Phase(String),
    /// Rough progress within the current phase.
    Progress { done: u64, total: u64 },
    /// A line of tool output worth showing in verbose mode.
    Log(String),
}

/// A buildable image, as named by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipe {
    /// Debian; `docker` adds Debian's `docker.io` (seed 000's guests).
    Debian {
        release: String,
        arch: String,
        docker: bool,
    },
    Busybox {
        arch: String,
    },
}

impl Recipe {
    /// Stable identifier, also the default output file stem
    /// (e.g. `debian-bookworm-amd64`).
    pub fn name(&self) -> String {
        match self {
            Recipe::Debian {
                release,
                arch,
                docker: false,
            } => format!("debian-{release}-{arch}"),
            Recipe::Debian { release, arch, .. } => format!("debian-docker-{release}-{arch}"),
            Recipe::Busybox { arch } => format!("busybox-{arch}"),
        }
    }

    /// Default output file name (`<name>.tar.zst`).
    pub fn file_name(&self) -> String {
        format!("{}.tar.zst", self.name())
    }

    /// Builds this recipe to `out`; `cache_dir` keeps downloads between builds.
    pub fn build(
        &self,
        out: &Path,
        cache_dir: &Path,
        events: &mut dyn FnMut(BuildEvent),
    ) -> Result<PathBuf, ImageError> {
        match self {
            Recipe::Debian {
                release,
                arch,
                docker,
            } => {
                let mut opts = DebianBuild::new(release, cache_dir);
                opts.arch = arch.clone();
                if *docker {
                    opts.extra_packages = vec!["docker.io".into()];
                }
                build_debian(&opts, out, events)
            }
            Recipe::Busybox { .. } => build_busybox(out, events),
        }
    }
}

/// Maps a user-facing name ("debian/12", "debian/bookworm", "debian/bookworm/amd64",
/// "debian", "busybox") to a recipe.
pub fn recipe_for(name: &str) -> Result<Recipe, ImageError> {
    let unknown = || {
        ImageError::UnknownRecipe {
        name: name.to_string(),
        known: "debian/12 (= debian/bookworm, debian), debian-docker/12 (Debian with docker.io), busybox".into(),
    }
    };
    let host = host_debian_arch();
    let parts: Vec<&str> = name.trim().trim_matches('/').split('/').collect();
    let (distro, release, arch) = match parts.as_slice() {
        [d] => (*d, None, None),
        [d, r] => (*d, Some(*r), None),
        [d, r, a] => (*d, Some(*r), Some(*a)),
        _ => return Err(unknown()),
    };
    let arch = match arch {
        // Only the host architecture can run the package scripts.
        Some(a) if debian_arch_of(a) != host => return Err(unknown()),
        _ => host.to_string(),
    };
    match (distro.to_ascii_lowercase().as_str(), release) {
        (d @ ("debian" | "debian-docker"), None | Some("12" | "bookworm" | "stable")) => {
            Ok(Recipe::Debian {
                release: "bookworm".into(),
                arch,
                docker: d == "debian-docker",
            })
        }
        ("busybox", None) => Ok(Recipe::Busybox { arch }),
        _ => Err(unknown()),
    }
}

/// Debian's name for the host architecture.
pub(crate) fn host_debian_arch() -> &'static str {
    debian_arch_of(std::env::consts::ARCH)
}

fn debian_arch_of(arch: &str) -> &'static str {
    match normalise_architecture(arch).as_str() {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7l" => "armhf",
        "i686" => "i386",
        "ppc64le" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => "unknown",
    }
}

// ---- cache stamps -------------------------------------------------------

fn stamp_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".stamp");
    PathBuf::from(s)
}

fn stamp_text(recipe: &str) -> String {
    format!("kante-image-recipe {recipe} version {RECIPE_VERSION}\n")
}

/// True if `out` was produced by this exact recipe version.
pub(crate) fn is_cached(out: &Path, recipe: &str) -> bool {
    out.is_file() && fs::read_to_string(stamp_path(out)).is_ok_and(|s| s == stamp_text(recipe))
}

pub(crate) fn write_stamp(out: &Path, recipe: &str) -> Result<(), ImageError> {
    let p = stamp_path(out);
    fs::write(&p, stamp_text(recipe)).ctx(|| format!("writing {}", p.display()))
}

/// Removes a stale stamp before rebuilding, so a failed build never leaves a
/// stamp vouching for an old tarball.
pub(crate) fn clear_stamp(out: &Path) {
    let _ = fs::remove_file(stamp_path(out));
}

// ---- files ---------------------------------------------------------------

pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), ImageError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    }
    // Replace rather than write through: the path may be a symlink into the host.
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => {
            fs::remove_file(path).ctx(|| format!("removing {}", path.display()))?
        }
        _ => {}
    }
    fs::write(path, contents).ctx(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {}", path.display()))
}

/// Replaces whatever is at `link` by a symlink to `target`.
pub(crate) fn force_symlink(target: &str, link: &Path) -> Result<(), ImageError> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    }
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).ctx(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .ctx(|| format!("symlinking {} -> {target}", link.display()))
}

/// One template of metadata.yaml plus the file in templates/.
pub(crate) struct Template {
    pub path: &'static str,
    pub file: &'static str,
    pub content: &'static str,
    pub properties: &'static [(&'static str, &'static str)],
    /// Triggers: `create`, `copy`, `start`.
    pub when: &'static [&'static str],
}

/// /etc/hostname and /etc/hosts, rendered by the daemon on create and copy.
pub(crate) const HOSTNAME_TEMPLATES: [Template; 2] = [
    Template {
        path: "/etc/hostname",
        file: "hostname.tpl",
        content: "{{ instance.name }}\n",
        properties: &[],
        when: &["create", "copy"],
    },
    Template {
        path: "/etc/hosts",
        file: "hosts.tpl",
        content: "127.0.0.1\tlocalhost\n127.0.1.1\t{{ instance.name }}\n\n\
                  ::1\tlocalhost ip6-localhost ip6-loopback\n\
                  ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        properties: &[],
        when: &["create", "copy"],
    },
];

/// Writes `work/metadata.yaml` and `work/templates/*`.
pub(crate) fn write_image_metadata(
    work: &Path,
    debian_arch: &str,
    properties: BTreeMap<String, String>,
    templates: &[Template],
) -> Result<(), ImageError> {
    let mut meta = ImageMetadata {
        architecture: normalise_architecture(debian_arch),
        creation_date: chrono::Utc::now().timestamp(),
        expiry_date: 0,
        properties,
        templates: BTreeMap::new(),
    };
    for t in templates {
        write_file(&work.join("templates").join(t.file), t.content, 0o644)?;
        meta.templates.insert(
            t.path.to_string(),
            ImageTemplate {
                when: t.when.iter().map(|w| w.to_string()).collect(),
                create_only: false,
                template: t.file.to_string(),
                properties: t
                    .properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        );
    }
    let yaml = serde_yaml::to_string(&meta).map_err(|e| ImageError::Build(e.to_string()))?;
    write_file(&work.join("metadata.yaml"), &yaml, 0o644)
}

/// `YYYYMMDD_HHMM` (UTC), the serial format of public images.
pub(crate) fn serial_now() -> String {
    chrono::Utc::now().format("%Y%m%d_%H%M").to_string()
}

/// Packs `work/{metadata.yaml,templates,rootfs}` with GNU tar into a
/// zstd-compressed tarball at `out` (written to a temp file, then renamed).
pub(crate) fn pack(
    work: &Path,
    out: &Path,
    events: &mut dyn FnMut(BuildEvent),
) -> Result<(), ImageError> {
    events(BuildEvent::Phase("pack".into()));
    // metadata.yaml first, so readers find it without decompressing the rootfs.
    let mut members = vec!["metadata.yaml".to_string()];
    if work.join("templates").is_dir() {
        members.push("templates".into());
    }
    members.push("rootfs".into());
    let section = Section {
        dir: work.to_path_buf(),
        prefix: String::new(),
        members,
    };
    let opts = PackOptions {
        compression: ArchiveCompression::Zstd { level: ZSTD_LEVEL },
        mode: 0o644,
        allow_changed_files: false,
        limits: crate::Limits::none(),
    };
    pack_sections(&[section], out, &opts, &mut |done, total| {
        events(BuildEvent::Progress { done, total })
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_recipe_names() {
        let host = host_debian_arch();
        for n in [
            "debian/12",
            "debian/bookworm",
            "debian",
            "Debian/12/",
            &format!("debian/12/{host}"),
        ] {
            assert_eq!(
                recipe_for(n).unwrap(),
                Recipe::Debian {
                    release: "bookworm".into(),
                    arch: host.into(),
                    docker: false,
                },
                "{n}"
            );
        }
        assert_eq!(
            recipe_for("debian-docker/12").unwrap().name(),
            format!("debian-docker-bookworm-{host}")
        );
        assert_eq!(
            recipe_for("busybox").unwrap(),
            Recipe::Busybox { arch: host.into() }
        );
        assert_eq!(
            recipe_for("debian/12").unwrap().name(),
            format!("debian-bookworm-{host}")
        );
        for bad in [
            "ubuntu/22.04",
            "debian/11",
            "debian/12/mips",
            "",
            "busybox/1",
        ] {
            assert!(
                matches!(recipe_for(bad), Err(ImageError::UnknownRecipe { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn stamps_gate_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("x.tar.zst");
        assert!(!is_cached(&out, "r"));
        fs::write(&out, b"x").unwrap();
        assert!(!is_cached(&out, "r"));
        write_stamp(&out, "r").unwrap();
        assert!(is_cached(&out, "r"));
        assert!(!is_cached(&out, "other"));
        clear_stamp(&out);
        assert!(!is_cached(&out, "r"));
    }
}
