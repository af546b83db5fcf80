//! One module per group of subcommands, plus small shared helpers.

pub mod apply;
pub mod cluster;
pub mod cluster_group;
pub mod config;
pub mod console;
pub mod copy;
pub mod edit;
pub mod exec;
pub mod export;
pub mod file;
pub mod host;
pub mod image;
pub mod image_copy;
pub mod image_streams;
pub mod info;
pub mod lab;
pub mod lifecycle;
pub mod list;
pub mod migrate;
pub mod misc;
pub mod network;
pub mod profile;
pub mod publish;
pub mod questions;
pub mod remote;
pub mod server_info;
pub mod snapshot;
pub mod storage;
pub mod top;
pub mod trust;
pub mod volume;
pub mod volume_migrate;

use anyhow::{bail, Result};
use kante_api::names::validate_instance_name;

use crate::table::{render, Format, Row};

/// A device from `device add`'s arguments: its type and `key=value` pairs.
pub fn device_from_args(
    kind: String,
    props: &[String],
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut dev = std::collections::BTreeMap::new();
    dev.insert("type".to_string(), kind);
    for p in props {
        let (k, v) = parse_kv(p)?;
        dev.insert(k, v);
    }
    Ok(dev)
}

/// `-d DEVICE,KEY=VALUE` on an instance that exists (copy, move): the
/// device is the instance's own or else its profiles' (`expanded`), copied
/// into its own devices with the key set, as lxc does.
pub fn override_devices(
    devices: &mut kante_api::DevicesMap,
    expanded: &kante_api::DevicesMap,
    specs: &[String],
) -> Result<()> {
    for spec in specs {
        let Some((dev, kv)) = spec.split_once(',') else {
            bail!("Bad device override syntax, expecting DEVICE,KEY=VALUE: {spec}");
        };
        let (key, value) = parse_kv(kv)?;
        if !devices.contains_key(dev) {
            let Some(d) = expanded.get(dev) else {
                bail!("Device {dev:?} doesn't exist in the instance or its profiles");
            };
            devices.insert(dev.to_string(), d.clone());
        }
        if let Some(d) = devices.get_mut(dev) {
            d.insert(key, value);
        }
    }
    Ok(())
}

/// Splits `key=value` (lxc's message when there is no `=`).
pub fn parse_kv(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("Bad key=value pair: {s}"),
    }
}

/// Client-side name check, as lxc does before sending anything.
pub fn check_name(name: &str) -> Result<()> {
    validate_instance_name(name)?;
    Ok(())
}

/// YAML for `show` commands.
pub fn to_yaml<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    Ok(serde_yaml::to_string(v)?)
}

/// A `list` command's output: the objects for json/yaml, else the table.
pub fn print_list<T: serde::Serialize + ?Sized>(
    format: Format,
    items: &T,
    header: &[&str],
    rows: impl FnOnce() -> Vec<Row>,
) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(items)?),
        Format::Yaml => print!("{}", to_yaml(items)?),
        fmt => print!("{}", render(fmt, header, &rows())),
    }
    Ok(())
}

/// `INSTANCE/SNAPSHOT` split at the first `/`; `None` for a plain instance.
pub fn split_snapshot(name: &str) -> Result<Option<(&str, &str)>> {
    match name.split_once('/') {
        None => Ok(None),
        Some((i, s)) if !i.is_empty() && !s.is_empty() && !s.contains('/') => Ok(Some((i, s))),
        Some(_) => bail!("Invalid snapshot name {name:?}: expected INSTANCE/SNAPSHOT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs() {
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_kv("a=").unwrap(), ("a".into(), "".into()));
        assert_eq!(
            parse_kv("novalue").unwrap_err().to_string(),
            "Bad key=value pair: novalue"
        );
        assert!(parse_kv("=x").is_err());
    }

    #[test]
    fn device_overrides_copy_a_profile_device() {
        let map = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let expanded: kante_api::DevicesMap = [(
            "root".to_string(),
            map(&[("type", "disk"), ("path", "/"), ("pool", "p")]),
        )]
        .into_iter()
        .collect();
        let mut own = kante_api::DevicesMap::new();
        override_devices(&mut own, &expanded, &["root,size=1GiB".into()]).unwrap();
        assert_eq!(own["root"]["size"], "1GiB");
        assert_eq!(own["root"]["pool"], "p");
        assert!(override_devices(&mut own, &expanded, &["eth0,mtu=1400".into()]).is_err());
        assert!(override_devices(&mut own, &expanded, &["root".into()]).is_err());
    }

    #[test]
    fn snapshot_names() {
        assert_eq!(split_snapshot("c1").unwrap(), None);
        assert_eq!(split_snapshot("c1/s0").unwrap(), Some(("c1", "s0")));
        assert!(split_snapshot("c1/").is_err());
        assert!(split_snapshot("/s0").is_err());
        assert!(split_snapshot("c1/s0/x").is_err());
    }
}
