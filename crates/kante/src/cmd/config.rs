//! `kante config …`: GET the instance, change it, PUT it back whole (with
//! `If-Match`), and wait for the operation, as lxc does.

use anyhow::{bail, Result};
use kante_api::instance::{Instance, InstancePut};
use kante_client::Client;

use super::edit::{self, read_stdin};
use super::{parse_kv, to_yaml};
use crate::cli::{ConfigCmd, DeviceCmd};

/// The writable part of an instance, as `config show` prints and PUT sends.
pub fn writable(i: &Instance, expanded: bool) -> InstancePut {
    InstancePut {
        architecture: i.architecture.clone(),
        config: if expanded {
            i.expanded_config.clone()
        } else {
            i.config.clone()
        },
        devices: if expanded {
            i.expanded_devices.clone()
        } else {
            i.devices.clone()
        },
        ephemeral: i.ephemeral,
        profiles: Some(i.profiles.clone()),
        stateful: i.stateful,
        description: i.description.clone(),
        restore: String::new(),
    }
}

/// `set` arguments: `KEY VALUE`, or any number of `KEY=VALUE` (lxc's rule).
pub fn parse_set_args(args: &[String]) -> Result<Vec<(String, String)>> {
    if args.len() == 2 && !args[0].contains('=') {
        return Ok(vec![(args[0].clone(), args[1].clone())]);
    }
    args.iter().map(|a| parse_kv(a)).collect()
}

async fn modify(
    c: &Client,
    name: &str,
    change: impl FnOnce(&Instance, &mut InstancePut) -> Result<()>,
) -> Result<()> {
    let (inst, etag) = c.instance_with_etag(name).await?;
    let mut put = writable(&inst, false);
    change(&inst, &mut put)?;
    c.update_instance(name, &put, etag.as_deref()).await?;
    Ok(())
}

/// Whether the first argument of `config set` names the server rather
/// than an instance: empty (a bare `REMOTE:`, already split off), a key
/// (keys have a dot, instance names never do) or a `KEY=VALUE`.
pub fn names_server(first: &str) -> bool {
    first.is_empty() || first.contains('.') || first.contains('=')
}

pub async fn run(c: &Client, cmd: ConfigCmd) -> Result<i32> {
    match cmd {
        ConfigCmd::Set { args } => {
            let (name, rest) = match args.split_first() {
                Some((first, rest)) if first.is_empty() => (None, rest),
                Some((first, _)) if names_server(first) => (None, &args[..]),
                Some((first, rest)) => (Some(first.clone()), rest),
                None => bail!("Missing key"),
            };
            let mut pairs = parse_set_args(rest)?;
            for (_, v) in pairs.iter_mut() {
                if v == "-" {
                    *v = read_stdin()?;
                }
            }
            match name {
                None => server::set(c, pairs).await?,
                Some(name) => {
                    modify(c, &name, |_, put| {
                        for (k, v) in pairs {
                            put.config.insert(k, v);
                        }
                        Ok(())
                    })
                    .await?
                }
            }
        }
        ConfigCmd::Unset { name, mut keys } => {
            if names_server(&name) {
                if !name.is_empty() {
                    keys.insert(0, name);
                }
                return server::unset(c, keys).await.map(|_| 0);
            }
            if keys.is_empty() {
                bail!("Missing key");
            }
            modify(c, &name, |_, put| {
                for k in &keys {
                    if put.config.remove(k).is_none() {
                        bail!("Key {k} is not set");
                    }
                }
                Ok(())
            })
            .await?;
        }
        ConfigCmd::Get {
            name,
            key: None,
            expanded: _,
        } => server::get(c, &name).await?,
        ConfigCmd::Get {
            name,
            key: Some(key),
            expanded: _,
        } if name.is_empty() => server::get(c, &key).await?,
        ConfigCmd::Get {
            name,
            key: Some(key),
            expanded,
        } => {
            let inst = c.instance(&name).await?;
            let cfg = if expanded {
                &inst.expanded_config
            } else {
                &inst.config
            };
            println!("{}", cfg.get(&key).map(String::as_str).unwrap_or(""));
        }
        ConfigCmd::Show { name, expanded } => match name.filter(|n| !n.is_empty()) {
            None => server::show(c).await?,
            Some(name) => {
                let inst = c.instance(&name).await?;
                print!("{}", to_yaml(&writable(&inst, expanded))?);
            }
        },
        ConfigCmd::Trust(t) => return super::trust::run(c, t).await,
        ConfigCmd::Edit { name } => {
            let (inst, etag) = c.instance_with_etag(&name).await?;
            let current = to_yaml(&writable(&inst, false))?;
            edit::edit("instance", &current, |new: InstancePut| {
                let (name, etag) = (name.clone(), etag.clone());
                async move { Ok(c.update_instance(&name, &new, etag.as_deref()).await?) }
            })
            .await?;
        }
        ConfigCmd::Device(d) => device(c, d).await?,
    }
    Ok(0)
}

async fn device(c: &Client, cmd: DeviceCmd) -> Result<()> {
    match cmd {
        DeviceCmd::Add {
            name,
            device,
            kind,
            props,
        } => {
            let dev = super::device_from_args(kind, &props)?;
            modify(c, &name, |_, put| {
                if put.devices.contains_key(&device) {
                    bail!("The device already exists");
                }
                put.devices.insert(device.clone(), dev);
                Ok(())
            })
            .await?;
            println!("Device {device} added to {name}");
        }
        DeviceCmd::Remove { name, devices } => {
            modify(c, &name, |inst, put| {
                for d in &devices {
                    if put.devices.remove(d).is_none() {
                        if inst.expanded_devices.contains_key(d) {
                            bail!("Device from profile(s) cannot be removed from individual instance. Override device or modify profile instead");
                        }
                        bail!("Device {d} doesn't exist");
                    }
                }
                Ok(())
            })
            .await?;
            for d in &devices {
                println!("Device {d} removed from {name}");
            }
        }
        DeviceCmd::Show { name } => {
            let inst = c.instance(&name).await?;
            print!("{}", to_yaml(&inst.devices)?);
        }
        DeviceCmd::List { name } => {
            let inst = c.instance(&name).await?;
            for d in inst.devices.keys() {
                println!("{d}");
            }
        }
    }
    Ok(())
}

/// The server's own configuration (`GET`/`PATCH /1.0`), as `lxc config`
/// without an instance.
mod server {
    use anyhow::{bail, Result};
    use kante_client::Client;
    use serde_json::{Map, Value};

    /// The `config` map of `GET /1.0`; values as text (LXD shows a set
    /// `core.trust_password` as `true`).
    async fn config(c: &Client) -> Result<Map<String, Value>> {
        let resp = c.get("/1.0").await?;
        Ok(match resp.envelope.metadata.get("config") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        })
    }

    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    pub async fn get(c: &Client, key: &str) -> Result<()> {
        let cfg = config(c).await?;
        println!("{}", cfg.get(key).map(text).unwrap_or_default());
        Ok(())
    }

    /// PATCH only the keys given: the others (a hidden password among
    /// them) are never sent back.
    pub async fn set(c: &Client, pairs: Vec<(String, String)>) -> Result<()> {
        let config: Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        c.patch("/1.0", &serde_json::json!({ "config": config }))
            .await?;
        Ok(())
    }

    /// An empty value in a PATCH removes the key (LXD's rule).
    pub async fn unset(c: &Client, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() {
            bail!("Missing key");
        }
        let cfg = config(c).await?;
        for k in &keys {
            if !cfg.contains_key(k) {
                bail!("Key {k} is not set");
            }
        }
        set(c, keys.into_iter().map(|k| (k, String::new())).collect()).await
    }

    pub async fn show(c: &Client) -> Result<()> {
        let cfg: std::collections::BTreeMap<String, String> = config(c)
            .await?
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect();
        print!("{}", super::to_yaml(&serde_json::json!({ "config": cfg }))?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_argument_forms() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_set_args(&v(&["limits.memory", "256MiB"])).unwrap(),
            vec![("limits.memory".into(), "256MiB".into())]
        );
        assert_eq!(parse_set_args(&v(&["a=1", "b=2"])).unwrap().len(), 2);
        assert_eq!(
            parse_set_args(&v(&["a=1"])).unwrap(),
            vec![("a".into(), "1".into())]
        );
        assert!(parse_set_args(&v(&["a"])).is_err());
        assert!(parse_set_args(&v(&["a", "b", "c"])).is_err());
    }

    #[test]
    fn server_keys_are_told_from_instances() {
        assert!(names_server(""));
        assert!(names_server("core.https_address"));
        assert!(names_server("core.https_address=[::]:8443"));
        assert!(!names_server("c1"));
    }
}
