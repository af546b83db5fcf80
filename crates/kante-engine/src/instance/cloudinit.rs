//! cloud-init data in instance config: which keys carry it, refusing data
//! cloud-init could not read, the default network config, and when cloud-init
//! must see a new instance-id (so it runs again, as with LXD).

use kante_api::{ConfigMap, DevicesMap};

use crate::error::Result;
use crate::instance::config::ConfigError;

/// The `user.*` keys the seed templates read, with their `cloud-init.*`
/// spellings, which win when both are set (as in LXD).
const ALIASES: &[(&str, &str)] = &[
    ("user.user-data", "cloud-init.user-data"),
    ("user.vendor-data", "cloud-init.vendor-data"),
    ("user.network-config", "cloud-init.network-config"),
];

/// Every key whose change must make cloud-init run again.
const DATA_KEYS: &[&str] = &[
    "user.user-data",
    "user.vendor-data",
    "user.network-config",
    "user.meta-data",
    "cloud-init.user-data",
    "cloud-init.vendor-data",
    "cloud-init.network-config",
];

/// `config_get(key)` of templates: a `user.*` cloud-init key reads its
/// `cloud-init.*` spelling first.
pub fn lookup<'a>(config: &'a ConfigMap, key: &str) -> Option<&'a str> {
    if let Some((_, alias)) = ALIASES.iter().find(|(k, _)| *k == key) {
        if let Some(v) = config.get(*alias).filter(|v| !v.is_empty()) {
            return Some(v);
        }
    }
    config.get(key).map(String::as_str)
}

/// True if the cloud-init data differs between two expanded configs.
pub fn data_changed(old: &ConfigMap, new: &ConfigMap) -> bool {
    DATA_KEYS.iter().any(|k| old.get(*k) != new.get(*k))
}

/// Headers of user-data formats other than `#cloud-config` that cloud-init
/// takes as they are (scripts, includes, MIME multipart, Jinja).
const OTHER_FORMATS: &[&str] = &[
    "#!",
    "#include",
    "#cloud-boothook",
    "#part-handler",
    "#upstart-job",
    "## template: jinja",
    "content-type:",
    "mime-version:",
];

/// Refuses cloud-init data that cloud-init would choke on: YAML that does
/// not parse (cloud-config, network-config, meta-data) or user-data in no
/// format cloud-init knows.
pub fn validate(config: &ConfigMap) -> Result<()> {
    for (key, value) in config {
        if value.trim().is_empty() {
            continue;
        }
        let bad = |source: CloudInitError| ConfigError::CloudInit {
            key: key.clone(),
            source,
        };
        match key.as_str() {
            "user.user-data"
            | "user.vendor-data"
            | "cloud-init.user-data"
            | "cloud-init.vendor-data" => check_user_data(value).map_err(bad)?,
            "user.network-config" | "cloud-init.network-config" => {
                check_yaml_mapping(value, "network config").map_err(bad)?;
                let doc: serde_yaml::Value = serde_yaml::from_str(value).unwrap_or_default();
                let net = doc.get("network").unwrap_or(&doc);
                match net.get("version").and_then(serde_yaml::Value::as_u64) {
                    Some(1 | 2) => {}
                    _ => return Err(bad(CloudInitError::NetworkVersion).into()),
                }
            }
            "user.meta-data" => check_yaml_mapping(value, "meta-data").map_err(bad)?,
            _ => {}
        }
    }
    Ok(())
}

/// Why cloud-init data is refused.
#[derive(Debug, thiserror::Error)]
pub enum CloudInitError {
    #[error("#cloud-config-archive is not valid YAML: {0}")]
    ArchiveYaml(#[source] serde_yaml::Error),
    #[error("{what} is not valid YAML: {source}")]
    Yaml {
        what: &'static str,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{what} must be a YAML mapping (key: value)")]
    NotMapping { what: &'static str },
    #[error(
        "cloud-init data must start with #cloud-config (YAML), #! (a script) or another \
         cloud-init header (#include, #cloud-boothook, MIME); it starts with {first:?}"
    )]
    UnknownFormat { first: String },
    #[error("network config needs `version: 1` or `version: 2`")]
    NetworkVersion,
}

fn check_user_data(value: &str) -> std::result::Result<(), CloudInitError> {
    let text = value.trim_start();
    let first = text.lines().next().unwrap_or("").trim_end();
    if first.starts_with("#cloud-config-archive") {
        return serde_yaml::from_str::<serde_yaml::Value>(text)
            .map(|_| ())
            .map_err(CloudInitError::ArchiveYaml);
    }
    if first.starts_with("#cloud-config") {
        return check_yaml_mapping(text, "#cloud-config");
    }
    let lower = first.to_ascii_lowercase();
    if OTHER_FORMATS.iter().any(|h| lower.starts_with(h)) {
        return Ok(());
    }
    Err(CloudInitError::UnknownFormat {
        first: first.to_string(),
    })
}

/// The text must be YAML whose document is a mapping (or empty).
fn check_yaml_mapping(text: &str, what: &'static str) -> std::result::Result<(), CloudInitError> {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Mapping(_)) | Ok(serde_yaml::Value::Null) => Ok(()),
        Ok(_) => Err(CloudInitError::NotMapping { what }),
        Err(source) => Err(CloudInitError::Yaml { what, source }),
    }
}

/// The instance's NICs in device-name order, as the guest names them.
pub fn nics(devices: &DevicesMap, local: &ConfigMap) -> Vec<Nic> {
    crate::devices::nics(devices)
        .map(|(dev, d)| Nic {
            device: dev.clone(),
            name: d
                .get("name")
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| dev.clone()),
            hwaddr: d
                .get("hwaddr")
                .or_else(|| local.get(&format!("volatile.{dev}.hwaddr")))
                .cloned()
                .unwrap_or_default(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub device: String,
    pub name: String,
    pub hwaddr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cloud_init_spelling_wins() {
        let c = map(&[
            ("user.user-data", "#cloud-config\na: 1"),
            ("cloud-init.user-data", "#cloud-config\nb: 2"),
            ("user.meta-data", "x: y"),
        ]);
        assert_eq!(lookup(&c, "user.user-data"), Some("#cloud-config\nb: 2"));
        assert_eq!(lookup(&c, "user.meta-data"), Some("x: y"));
        assert_eq!(lookup(&c, "user.vendor-data"), None);
        let c = map(&[("cloud-init.network-config", "version: 2")]);
        assert_eq!(lookup(&c, "user.network-config"), Some("version: 2"));
    }

    #[test]
    fn validation() {
        let ok = |k: &str, v: &str| validate(&map(&[(k, v)])).is_ok();
        assert!(ok("user.user-data", "#cloud-config\nusers:\n  - name: a\n"));
        assert!(ok("user.user-data", "#cloud-config\n"));
        assert!(ok(
            "cloud-init.user-data",
            "#!/bin/sh\necho ]]] not yaml {\n"
        ));
        assert!(ok(
            "user.vendor-data",
            "Content-Type: multipart/mixed; boundary=x\n"
        ));
        assert!(!ok("user.user-data", "#cloud-config\nusers: [unclosed\n"));
        assert!(!ok("cloud-init.vendor-data", "#cloud-config\n- a list\n"));
        assert!(!ok("user.user-data", "hello: world\n"));
        assert!(ok(
            "user.network-config",
            "version: 1\nconfig:\n  - type: physical\n    name: eth0\n"
        ));
        assert!(ok("cloud-init.network-config", "network:\n  version: 2\n"));
        assert!(!ok("user.network-config", "version: 1\nconfig: [\n"));
        assert!(!ok("user.network-config", "config: []\n"));
        assert!(!ok("user.network-config", "version: 3\n"));
        assert!(ok("user.meta-data", "foo: bar\n"));
        assert!(!ok("user.meta-data", "foo: [bar\n"));
        // Other user.* keys are free text.
        assert!(ok("user.anything", "{{{{ not yaml"));
        let e = validate(&map(&[("user.user-data", "#cloud-config\na: [\n")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("user.user-data") && e.contains("not valid YAML"),
            "{e}"
        );
    }

    #[test]
    fn changes_and_nics() {
        let a = map(&[("user.user-data", "#cloud-config\n"), ("limits.cpu", "1")]);
        let mut b = a.clone();
        b.insert("limits.cpu".into(), "2".into());
        assert!(!data_changed(&a, &b));
        b.insert("cloud-init.network-config".into(), "version: 2".into());
        assert!(data_changed(&a, &b));

        let mut devs = DevicesMap::new();
        devs.insert("root".into(), map(&[("type", "disk"), ("path", "/")]));
        devs.insert("z".into(), map(&[("type", "nic"), ("name", "if-demo")]));
        devs.insert("eth1".into(), map(&[("type", "nic")]));
        let local = map(&[("volatile.eth1.hwaddr", "00:16:3e:00:00:01")]);
        let n = nics(&devs, &local);
        assert_eq!(n.len(), 2);
        assert_eq!(
            (n[0].name.as_str(), n[0].hwaddr.as_str()),
            ("eth1", "00:16:3e:00:00:01")
        );
        assert_eq!(n[1].name, "if-demo");
    }
}
