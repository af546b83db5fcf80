//! The pure parts of instance backups: `backup/index.yaml` as LXD writes it
//! (name, backend, pool, optimized, type, snapshot names and, as LXD 5.x
//! does, the instance's `backup.yaml` content under `config`), backup
//! names, and how an imported record is fitted to this host.

use kante_api::instance::{Instance, InstanceSnapshot};
use kante_api::serde_util::{devices_map, string_map};
use kante_api::{ConfigMap, DevicesMap, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::pools::StoragePool;

/// Where the index is in the tarball.
pub const INDEX_PATH: &str = "backup/index.yaml";
/// The instance's `backup.yaml`, read when an index has no `config`.
pub const BACKUP_YAML_PATH: &str = "backup/container/backup.yaml";

/// `backup/index.yaml`, written.
#[derive(Debug, Serialize)]
pub struct IndexOut {
    pub name: String,
    pub backend: String,
    pub pool: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    pub optimized: bool,
    pub optimized_header: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub config: ConfigOut,
}

/// The `config` of an index: what `backup.yaml` holds, snapshots included.
#[derive(Debug, Serialize)]
pub struct ConfigOut {
    pub container: Instance,
    pub snapshots: Vec<InstanceSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<StoragePool>,
}

/// `backup/index.yaml`, read (tolerant: LXD versions differ in what they write).
#[derive(Debug, Default, Deserialize)]
pub struct IndexIn {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub snapshots: Option<Vec<String>>,
    #[serde(default)]
    pub optimized: Option<bool>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub config: Option<ConfigIn>,
}

/// `config` of an index, or a `backup.yaml`.
#[derive(Debug, Default, Deserialize)]
pub struct ConfigIn {
    #[serde(default)]
    pub container: Option<RecordIn>,
    /// Newer LXD writes `instance` instead of `container`.
    #[serde(default)]
    pub instance: Option<RecordIn>,
    #[serde(default)]
    pub snapshots: Option<Vec<RecordIn>>,
}

impl ConfigIn {
    pub fn record(&self) -> Option<&RecordIn> {
        self.instance.as_ref().or(self.container.as_ref())
    }
}

/// An instance or snapshot as a backup describes it.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RecordIn {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "devices_map")]
    pub devices: DevicesMap,
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub stateful: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// Parses an index; what cannot be imported here is a 400.
pub fn parse_index(text: &[u8]) -> Result<IndexIn> {
    let index: IndexIn = serde_yaml::from_slice(text)
        .map_err(|e| EngineError::bad(format!("Invalid {INDEX_PATH}: {e}")))?;
    if index.optimized == Some(true) {
        return Err(EngineError::bad(format!(
            "Optimized backups (made by the {:?} driver) cannot be imported: export with optimized storage off",
            index.backend
        )));
    }
    match index.kind.as_deref() {
        None | Some("") | Some("container") => {}
        Some(other) => {
            return Err(EngineError::bad(format!(
                "Backups of type {other:?} are not supported (only containers)"
            )))
        }
    }
    for s in index.snapshots.iter().flatten() {
        kante_api::names::validate_snapshot_name(s)
            .map_err(|e| EngineError::bad(format!("Invalid snapshot in {INDEX_PATH}: {e}")))?;
    }
    Ok(index)
}

/// Parses a `backup.yaml` (the fallback source of the instance's record).
pub fn parse_backup_yaml(text: &[u8]) -> Result<ConfigIn> {
    serde_yaml::from_slice(text)
        .map_err(|e| EngineError::bad(format!("Invalid {BACKUP_YAML_PATH}: {e}")))
}

/// Checks a backup name: a path segment of the API and a file name.
pub fn validate_backup_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(EngineError::bad(format!(
            "Invalid backup name {name:?}: {why}"
        )))
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > 255 {
        return bad("must be at most 255 bytes");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if name.contains('/') {
        return bad("must not contain '/'");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    Ok(())
}

/// The first free `backupN`, as LXD names backups it is not told a name for.
pub fn next_backup_name(taken: &[String]) -> String {
    (0..)
        .map(|i| format!("backup{i}"))
        .find(|n| !taken.contains(n))
        .expect("an unbounded range has a free name")
}

/// An imported instance's config fitted to this host: the id map is this
/// host's, runtime-only keys go; MACs and the rest stay, as LXD keeps them.
pub fn fit_config(config: &ConfigMap, idmap_base: &str, idmap_next: &str) -> ConfigMap {
    let mut c: ConfigMap = config
        .iter()
        .filter(|(k, _)| {
            let runtime_only = matches!(
                k.as_str(),
                "volatile.last_state.power" | "volatile.idmap.current"
            ) || (k.starts_with("volatile.") && k.ends_with(".host_name"));
            !runtime_only
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    c.insert("volatile.idmap.base".into(), idmap_base.into());
    c.insert("volatile.idmap.next".into(), idmap_next.into());
    c.insert("volatile.last_state.idmap".into(), "[]".into());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lxd_style_indexes() {
        let text = br#"
name: c1
backend: btrfs
pool: default
snapshots:
- snap0
optimized: false
optimized_header: false
type: container
config:
  container:
    name: c1
    architecture: x86_64
    config:
      limits.cpu: 2
      volatile.eth0.hwaddr: 00:16:3e:00:00:01
    devices:
      root: {type: disk, path: /, pool: default}
    profiles: [default]
    created_at: 2024-01-02T03:04:05Z
    type: container
  snapshots:
  - name: snap0
    config: {}
    expires_at: 0001-01-01T00:00:00Z
"#;
        let i = parse_index(text).unwrap();
        assert_eq!(i.name, "c1");
        assert_eq!(i.snapshots.as_deref(), Some(&["snap0".to_string()][..]));
        let rec = i.config.as_ref().unwrap().record().unwrap();
        assert_eq!(rec.config["limits.cpu"], "2");
        assert_eq!(rec.devices["root"]["pool"], "default");
        assert_eq!(rec.profiles.as_deref(), Some(&["default".to_string()][..]));
        let snaps = i.config.unwrap().snapshots.unwrap();
        assert_eq!(snaps[0].name, "snap0");
    }

    #[test]
    fn refuses_what_cannot_be_imported() {
        assert!(parse_index(b"name: c1\noptimized: true\n").is_err());
        assert!(parse_index(b"name: v1\ntype: virtual-machine\n").is_err());
        assert!(parse_index(b"name: c1\nsnapshots: [\"../x\"]\n").is_err());
        assert!(parse_index(b"[not a map").is_err());
        // Old indexes: no type, no optimized, no config.
        let i = parse_index(b"name: c1\nbackend: dir\npool: default\n").unwrap();
        assert!(i.config.is_none() && i.snapshots.is_none());
    }

    #[test]
    fn index_round_trips_through_yaml() {
        let inst: Instance = serde_json::from_value(serde_json::json!({
            "architecture": "x86_64", "config": {"a": "b"}, "devices": {},
            "ephemeral": false, "profiles": ["default"], "stateful": false,
            "description": "", "created_at": "2024-01-02T03:04:05Z",
            "expanded_config": {}, "expanded_devices": {}, "name": "c1",
            "status": "Stopped", "status_code": 102,
            "last_used_at": "2024-01-02T03:04:05Z", "location": "none",
            "type": "container", "project": "default"
        }))
        .unwrap();
        let out = IndexOut {
            name: "c1".into(),
            backend: "dir".into(),
            pool: "default".into(),
            snapshots: vec!["snap0".into()],
            optimized: false,
            optimized_header: false,
            kind: "container".into(),
            config: ConfigOut {
                container: inst,
                snapshots: Vec::new(),
                pool: None,
            },
        };
        let text = serde_yaml::to_string(&out).unwrap();
        assert!(text.contains("optimized: false") && text.contains("type: container"));
        let back = parse_index(text.as_bytes()).unwrap();
        assert_eq!(back.config.unwrap().record().unwrap().config["a"], "b");
    }

    #[test]
    fn backup_names() {
        assert!(validate_backup_name("backup0").is_ok());
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(256)] {
            assert!(validate_backup_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(next_backup_name(&[]), "backup0");
        assert_eq!(
            next_backup_name(&["backup0".into(), "backup2".into()]),
            "backup1"
        );
    }

    #[test]
    fn fitted_config_keeps_macs_and_takes_this_hosts_idmap() {
        let mut c = ConfigMap::new();
        c.insert("volatile.eth0.hwaddr".into(), "00:16:3e:00:00:01".into());
        c.insert("volatile.eth0.host_name".into(), "vethX".into());
        c.insert("volatile.last_state.power".into(), "RUNNING".into());
        c.insert("volatile.idmap.base".into(), "1000000".into());
        c.insert("limits.cpu".into(), "1".into());
        let f = fit_config(&c, "200000", "[]");
        assert_eq!(f["volatile.eth0.hwaddr"], "00:16:3e:00:00:01");
        assert_eq!(f["volatile.idmap.base"], "200000");
        assert_eq!(f["limits.cpu"], "1");
        assert!(!f.contains_key("volatile.eth0.host_name"));
        assert!(!f.contains_key("volatile.last_state.power"));
    }
}
