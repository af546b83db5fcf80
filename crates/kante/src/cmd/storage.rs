//! `kante storage …`: storage pools.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use kante_client::{Client, StoragePool, StoragePoolPut, StoragePoolResources, StoragePoolsPost};

use super::config::parse_set_args;
use super::{edit, parse_kv, print_list, to_yaml};
use crate::cli::{StorageCmd, VolumeCmd};
use crate::format::size_iec;
use crate::table::Row;

pub fn list_rows(pools: &[StoragePool]) -> Vec<Row> {
    let mut sorted: Vec<&StoragePool> = pools.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.driver.clone(),
                p.config.get("source").cloned().unwrap_or_default(),
                p.description.clone(),
                p.used_by.len().to_string(),
                p.status.to_uppercase(),
            ]
        })
        .collect()
}

/// `/1.0/instances/c1?project=x` to `("instances", "c1")`.
fn used_by_entry(url: &str) -> Option<(String, String)> {
    let path = url.split('?').next()?.strip_prefix("/1.0/")?;
    let (kind, name) = path.split_once('/')?;
    Some((kind.to_string(), name.to_string()))
}

/// The YAML `lxc storage info` prints: `info` (sizes when the server
/// reports them) and, if anything uses the pool, `used by` per kind.
pub fn render_info(
    p: &StoragePool,
    res: Option<&StoragePoolResources>,
    bytes: bool,
) -> Result<String> {
    let mut info: BTreeMap<&str, String> = BTreeMap::new();
    info.insert("name", p.name.clone());
    info.insert("driver", p.driver.clone());
    info.insert("description", p.description.clone());
    if let Some(r) = res {
        let size = |n: u64| {
            if bytes {
                n.to_string()
            } else {
                size_iec(n as i64)
            }
        };
        info.insert("total space", size(r.space.total));
        info.insert("space used", size(r.space.used));
    }
    let mut out = to_yaml(&BTreeMap::from([("info", info)]))?;
    if !p.used_by.is_empty() {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (kind, name) in p.used_by.iter().filter_map(|u| used_by_entry(u)) {
            by.entry(kind).or_default().push(name);
        }
        out.push_str(&to_yaml(&BTreeMap::from([("used by", by)]))?);
    }
    Ok(out)
}

pub async fn run(c: &Client, cmd: StorageCmd) -> Result<i32> {
    match cmd {
        StorageCmd::Create {
            pool,
            driver,
            config,
            description,
        } => {
            let post = StoragePoolsPost {
                name: pool.clone(),
                driver,
                description: description.unwrap_or_default(),
                config: config
                    .iter()
                    .map(|kv| parse_kv(kv))
                    .collect::<Result<_>>()?,
            };
            c.create_storage_pool(&post).await?;
            println!("Storage pool {pool} created");
        }
        StorageCmd::List { format, .. } => {
            let pools = c.storage_pools().await?;
            let header = [
                "NAME",
                "DRIVER",
                "SOURCE",
                "DESCRIPTION",
                "USED BY",
                "STATE",
            ];
            print_list(format, &pools, &header, || list_rows(&pools))?;
        }
        StorageCmd::Show {
            pool,
            resources: true,
        } => return super::server_info::pool_resources(c, &pool).await,
        StorageCmd::Show { pool, .. } => print!("{}", to_yaml(&c.storage_pool(&pool).await?)?),
        StorageCmd::Info { pool, bytes } => {
            let p = c.storage_pool(&pool).await?;
            // A server without the pool resources endpoint (an older LXD)
            // answers 404: the info is shown without space figures.
            let res = match c.storage_pool_resources(&pool).await {
                Ok(r) => Some(r),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            print!("{}", render_info(&p, res.as_ref(), bytes)?);
        }
        StorageCmd::Delete { pool } => {
            c.delete_storage_pool(&pool).await?;
            println!("Storage pool {pool} deleted");
        }
        StorageCmd::Get { pool, key } => {
            let p = c.storage_pool(&pool).await?;
            println!("{}", p.config.get(&key).map(String::as_str).unwrap_or(""));
        }
        StorageCmd::Set { pool, args } => {
            let patch = StoragePoolPut {
                config: parse_set_args(&args)?.into_iter().collect(),
                description: String::new(),
            };
            c.patch_storage_pool(&pool, &patch).await?;
        }
        StorageCmd::Unset { pool, keys } => {
            // A PUT of the whole config without the keys: the pool's PATCH
            // would keep a key sent with an empty value.
            let (p, etag) = c.storage_pool_with_etag(&pool).await?;
            let mut put = StoragePoolPut::from(&p);
            for k in &keys {
                if put.config.remove(k).is_none() {
                    bail!("Key {k} is not set");
                }
            }
            c.update_storage_pool(&pool, &put, etag.as_deref()).await?;
        }
        StorageCmd::Edit { pool } => {
            let (p, etag) = c.storage_pool_with_etag(&pool).await?;
            edit::edit("storage pool", &to_yaml(&p)?, |new: StoragePoolPut| {
                let (pool, etag) = (pool.clone(), etag.clone());
                async move { Ok(c.update_storage_pool(&pool, &new, etag.as_deref()).await?) }
            })
            .await?;
        }
        StorageCmd::Volume { cmd, target } => {
            if let VolumeCmd::Copy { .. } | VolumeCmd::Move { .. } = cmd {
                let target = target.as_deref().filter(|t| !t.is_empty());
                return super::volume_migrate::on_one_server(c, target, cmd).await;
            }
            let targeted;
            let c = match target.as_deref().filter(|t| !t.is_empty()) {
                Some(member) => {
                    targeted = c.with_target(member);
                    &targeted
                }
                None => c,
            };
            return super::volume::run(c, cmd).await;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kante_client::ResourceUsage;

    fn pool() -> StoragePool {
        serde_json::from_value(serde_json::json!({
            "name": "default", "driver": "dir", "description": "",
            "config": {"source": "/var/lib/kante/storage-pools/default"},
            "status": "Created", "locations": ["none"],
            "used_by": ["/1.0/instances/c1", "/1.0/profiles/default", "/1.0/instances/c2?project=p"]
        }))
        .unwrap()
    }

    #[test]
    fn list_like_lxc() {
        assert_eq!(
            list_rows(&[pool()])[0],
            vec![
                "default",
                "dir",
                "/var/lib/kante/storage-pools/default",
                "",
                "3",
                "CREATED"
            ]
        );
    }

    #[test]
    fn info_like_lxc() {
        let res = StoragePoolResources {
            space: ResourceUsage {
                used: 1024 * 1024,
                total: 2 * 1024 * 1024 * 1024,
            },
            ..Default::default()
        };
        let out = render_info(&pool(), Some(&res), false).unwrap();
        assert_eq!(
            out,
            "info:\n  description: ''\n  driver: dir\n  name: default\n  space used: 1.00MiB\n  total space: 2.00GiB\nused by:\n  instances:\n  - c1\n  - c2\n  profiles:\n  - default\n"
        );
        let out = render_info(&pool(), None, false).unwrap();
        assert!(!out.contains("space"), "{out}");
        assert!(render_info(&pool(), Some(&res), true)
            .unwrap()
            .contains("space used: '1048576'"));
    }

    #[test]
    fn show_yaml_round_trips_into_put() {
        let yaml = to_yaml(&pool()).unwrap();
        assert!(yaml.starts_with("config:\n  source: "), "{yaml}");
        let put: StoragePoolPut = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(put.config, pool().config);
    }
}
