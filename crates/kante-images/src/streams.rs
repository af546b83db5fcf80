//! Simplestreams catalogs (`streams/v1/index.json` and the products files
//! it names, as images.linuxcontainers.org publishes them), read alike by
//! the daemon (which downloads) and the CLI (which lists): which products
//! file holds image downloads, which version of which product an alias or
//! fingerprint names, and each image's LXD fingerprint (the metadata
//! item's `combined_rootxz_sha256`, `combined_sha256` in older trees, or
//! `combined_squashfs_sha256`; a unified tarball's own sha256).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use kante_api::ConfigMap;

/// Why a catalog gave no image.
#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    /// The index or a products file is not what simplestreams writes.
    #[error("{0}")]
    Invalid(String),
    /// No image of that name (for this architecture).
    #[error("{0}")]
    NotFound(String),
    /// A fingerprint prefix names several images.
    #[error("{0}")]
    Conflict(String),
}

type Result<T> = std::result::Result<T, StreamsError>;

/// `streams/v1/index.json`.
#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    index: BTreeMap<String, IndexEntry>,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    #[serde(default)]
    datatype: String,
    #[serde(default)]
    path: String,
}

/// A products file.
#[derive(Debug, Deserialize)]
pub struct Products {
    #[serde(default)]
    products: BTreeMap<String, Product>,
}

#[derive(Debug, Deserialize)]
struct Product {
    #[serde(default)]
    aliases: String,
    #[serde(default)]
    arch: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    release: String,
    #[serde(default)]
    release_title: String,
    #[serde(default)]
    variant: String,
    #[serde(default)]
    versions: BTreeMap<String, Version>,
}

#[derive(Debug, Deserialize)]
struct Version {
    #[serde(default)]
    items: BTreeMap<String, Item>,
}

#[derive(Debug, Clone, Deserialize)]
struct Item {
    #[serde(default)]
    ftype: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    combined_sha256: String,
    #[serde(default)]
    combined_rootxz_sha256: String,
    #[serde(default)]
    combined_squashfs_sha256: String,
}

/// One file to download, as the products file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// The image a request resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub fingerprint: String,
    /// The metadata tarball and the rootfs (split), or the unified tarball.
    pub meta: Download,
    pub rootfs: Option<Download>,
    pub properties: ConfigMap,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// This host's architecture as simplestreams names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "x86" => "i386",
        "powerpc64" => "ppc64el",
        other => other,
    }
}

/// The products files the index names for image downloads.
pub fn products_paths(index: &Value) -> Result<Vec<String>> {
    let index: Index = serde_json::from_value(index.clone())
        .map_err(|e| StreamsError::Invalid(format!("The simplestreams index is invalid: {e}")))?;
    let paths: Vec<String> = index
        .index
        .into_values()
        .filter(|e| e.datatype == "image-downloads" && !e.path.is_empty())
        .map(|e| e.path)
        .collect();
    if paths.is_empty() {
        return Err(StreamsError::Invalid(
            "The simplestreams index names no image-downloads products".into(),
        ));
    }
    Ok(paths)
}

/// The usable image of one version: `(fingerprint, meta, rootfs)`.
fn version_image(v: &Version) -> Option<(String, Download, Option<Download>)> {
    let dl = |i: &Item| {
        (is_sha256(&i.sha256) && !i.path.is_empty()).then(|| Download {
            path: i.path.clone(),
            sha256: i.sha256.to_ascii_lowercase(),
            size: i.size,
        })
    };
    let by_type = |t: &str| v.items.values().find(|i| i.ftype == t);
    if let Some(meta) = by_type("lxd.tar.xz") {
        if let Some(root) = by_type("root.tar.xz") {
            let fp = if meta.combined_rootxz_sha256.is_empty() {
                &meta.combined_sha256
            } else {
                &meta.combined_rootxz_sha256
            };
            if is_sha256(fp) {
                return Some((fp.to_ascii_lowercase(), dl(meta)?, Some(dl(root)?)));
            }
        }
        if let Some(root) = by_type("squashfs") {
            if is_sha256(&meta.combined_squashfs_sha256) {
                let fp = meta.combined_squashfs_sha256.to_ascii_lowercase();
                return Some((fp, dl(meta)?, Some(dl(root)?)));
            }
        }
    }
    let unified = by_type("lxd_combined.tar.gz")?;
    let d = dl(unified)?;
    Some((d.sha256.clone(), d, None))
}

/// Picks the image `name` (an alias of a product, or a fingerprint or a
/// prefix of one) for architecture `arch`: the product's latest version
/// with a usable image.
pub fn choose(products: &Products, name: &str, arch: &str) -> Result<Choice> {
    let mut other_arch = false;
    let mut found: Option<Choice> = None;
    for (id, p) in &products.products {
        let by_alias = p.aliases.split(',').any(|a| a.trim() == name);
        for (version, v) in p.versions.iter().rev() {
            let Some((fp, meta, rootfs)) = version_image(v) else {
                continue;
            };
            let by_fp = name.len() >= 12 && fp.starts_with(&name.to_ascii_lowercase());
            if !by_alias && !by_fp {
                continue;
            }
            if p.arch != arch {
                other_arch = true;
                break;
            }
            if let Some(f) = &found {
                if by_fp && f.fingerprint != fp {
                    return Err(StreamsError::Conflict(format!(
                        "More than one image on the server matches {name:?}"
                    )));
                }
                break;
            }
            let mut properties = ConfigMap::new();
            let title = if p.release_title.is_empty() {
                &p.release
            } else {
                &p.release_title
            };
            for (k, val) in [
                ("os", &p.os),
                ("release", &p.release),
                ("variant", &p.variant),
                ("architecture", &p.arch),
                ("serial", version),
            ] {
                if !val.is_empty() {
                    properties.insert(k.into(), val.clone());
                }
            }
            properties.insert(
                "description".into(),
                format!("{} {title} {} ({}) ({version})", p.os, p.arch, p.variant),
            );
            tracing::debug!(product = %id, %version, "simplestreams image chosen");
            found = Some(Choice {
                fingerprint: fp,
                meta,
                rootfs,
                properties,
            });
            if by_alias {
                // The latest version of the aliased product.
                break;
            }
        }
    }
    found.ok_or_else(|| {
        if other_arch {
            StreamsError::NotFound(format!(
                "The image {name:?} is not available for this host's architecture ({arch})"
            ))
        } else {
            StreamsError::NotFound(format!("The image {name:?} was not found on the server"))
        }
    })
}

/// Reads a products file.
pub fn parse_products(path: &str, doc: Value) -> Result<Products> {
    serde_json::from_value(doc).map_err(|e| {
        StreamsError::Invalid(format!(
            "The simplestreams products file {path} is invalid: {e}"
        ))
    })
}

/// One image of a catalog, as `image list REMOTE:` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub fingerprint: String,
    pub aliases: Vec<String>,
    pub architecture: String,
    pub description: String,
    /// Bytes to download (metadata and rootfs).
    pub size: u64,
    /// The version's name (a date and time, as `20260101_00:00`).
    pub version: String,
}

/// Every product's latest usable version, by product id.
pub fn entries(products: &Products) -> Vec<Entry> {
    let mut out = Vec::new();
    for p in products.products.values() {
        let latest = p
            .versions
            .iter()
            .rev()
            .find_map(|(version, v)| version_image(v).map(|i| (version, i)));
        let Some((version, (fingerprint, meta, rootfs))) = latest else {
            continue;
        };
        let title = if p.release_title.is_empty() {
            &p.release
        } else {
            &p.release_title
        };
        out.push(Entry {
            fingerprint,
            aliases: p
                .aliases
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
            architecture: p.arch.clone(),
            description: format!("{} {title} {} ({}) ({version})", p.os, p.arch, p.variant),
            size: meta.size + rootfs.map_or(0, |r| r.size),
            version: version.clone(),
        });
    }
    out
}
