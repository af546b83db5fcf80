//! Images and image aliases (`/1.0/images`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::{lenient_bool, null_default, string_map};
use crate::{ConfigMap, Timestamp};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ImageAliasRef {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// An image as `GET /1.0/images/{fingerprint}` returns it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Image {
    pub auto_update: bool,
    pub properties: ConfigMap,
    pub public: bool,
    pub expires_at: Timestamp,
    pub profiles: Vec<String>,
    pub aliases: Vec<ImageAliasRef>,
    pub architecture: String,
    pub cached: bool,
    pub filename: String,
    pub fingerprint: String,
    pub size: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub uploaded_at: Timestamp,
}

/// `GET /1.0/images/aliases/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageAlias {
    pub description: String,
    pub target: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `POST /1.0/images/aliases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageAliasesPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub target: String,
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
}

/// `PUT /1.0/images/{fingerprint}` (writable fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImagePut {
    #[serde(default, deserialize_with = "lenient_bool")]
    pub auto_update: bool,
    #[serde(default, deserialize_with = "string_map")]
    pub properties: ConfigMap,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub public: bool,
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
}

/// The JSON form of `POST /1.0/images` (the raw-tarball form carries no JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImagesPost {
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: Vec<ImageAliasRef>,
    #[serde(default, deserialize_with = "null_default")]
    pub filename: String,
    #[serde(default, deserialize_with = "string_map")]
    pub properties: ConfigMap,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub public: bool,
    /// Kept on the copy: refresh it from its source (stored only).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub auto_update: bool,
    /// A publish's tarball compression (`gzip` when empty).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub compression_algorithm: String,
    /// A publish's expiry (the zero time or none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub source: Option<serde_json::Value>,
}

/// An image's `metadata.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageMetadata {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub creation_date: i64,
    #[serde(default)]
    pub expiry_date: i64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub templates: BTreeMap<String, ImageTemplate>,
}

/// One entry of `metadata.yaml`'s `templates`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageTemplate {
    #[serde(default)]
    pub when: Vec<String>,
    #[serde(default)]
    pub create_only: bool,
    #[serde(default)]
    pub template: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Normalises architecture names the way LXD does (`amd64` is `x86_64`).
pub fn normalise_architecture(arch: &str) -> String {
    match arch {
        "amd64" | "x86_64" | "x64" => "x86_64".into(),
        "arm64" | "aarch64" => "aarch64".into(),
        "armhf" | "armv7l" | "armv7" => "armv7l".into(),
        "i386" | "i686" | "x86" => "i686".into(),
        "ppc64el" | "ppc64le" => "ppc64le".into(),
        "s390x" => "s390x".into(),
        "riscv64" => "riscv64".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_public_image_metadata() {
        let yaml = "architecture: amd64\ncreation_date: 1700000000\nproperties:\n  os: debian\n  release: bookworm\n\
templates:\n  /etc/hostname:\n    when:\n    - create\n    - copy\n    template: hostname.tpl\n";
        let m: ImageMetadata = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(normalise_architecture(&m.architecture), "x86_64");
        assert_eq!(m.templates["/etc/hostname"].when, vec!["create", "copy"]);
    }
}
