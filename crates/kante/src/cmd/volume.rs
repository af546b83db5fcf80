//! `kante storage volume …`: custom volumes, their snapshots, and attaching
//! them to instances as disk devices.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use kante_client::kante_api::instance::Instance;
use kante_client::{Client, StorageVolume, StorageVolumePut, StorageVolumesPost, VolumeSource};

use super::config::{parse_set_args, writable};
use super::{edit, parse_kv, print_list, to_yaml};
use crate::cli::VolumeCmd;
use crate::table::{render_table, Row};

/// Whether the volumes come from a cluster (their members named).
fn clustered(vols: &[StorageVolume]) -> bool {
    vols.iter()
        .any(|v| !v.location.is_empty() && v.location != "none")
}

/// lxc's columns: TYPE, NAME, DESCRIPTION, CONTENT-TYPE, USED BY, and
/// LOCATION in a cluster.
pub fn list_rows(vols: &[StorageVolume]) -> Vec<Row> {
    let located = clustered(vols);
    let mut sorted: Vec<&StorageVolume> = vols.iter().collect();
    sorted.sort_by(|a, b| (&a.kind, &a.name, &a.location).cmp(&(&b.kind, &b.name, &b.location)));
    sorted
        .iter()
        .map(|v| {
            let mut row = vec![
                v.kind.clone(),
                v.name.clone(),
                v.description.clone(),
                v.content_type.clone(),
                v.used_by.len().to_string(),
            ];
            if located {
                row.push(v.location.clone());
            }
            row
        })
        .collect()
}

/// The disk device `attach` adds.
pub fn attach_device(
    pool: &str,
    volume: &str,
    path: &str,
    readonly: bool,
) -> BTreeMap<String, String> {
    let mut d = BTreeMap::from([
        ("type".to_string(), "disk".to_string()),
        ("pool".to_string(), pool.to_string()),
        ("source".to_string(), volume.to_string()),
        ("path".to_string(), path.to_string()),
    ]);
    if readonly {
        d.insert("readonly".into(), "true".into());
    }
    d
}

/// `[DEVICE] PATH` of `attach`: the device is named after the volume by default.
fn device_and_path(volume: &str, rest: &[String]) -> Result<(String, String)> {
    match rest {
        [path] => Ok((volume.to_string(), path.clone())),
        [device, path] => Ok((device.clone(), path.clone())),
        _ => bail!("Expected [DEVICE] PATH"),
    }
}

/// The disk device of `inst` that mounts `pool`/`volume` (by name if given).
pub fn volume_device(
    inst: &Instance,
    pool: &str,
    volume: &str,
    device: Option<&str>,
) -> Result<String> {
    let uses = |d: &BTreeMap<String, String>| {
        d.get("type").map(String::as_str) == Some("disk")
            && d.get("pool").map(String::as_str) == Some(pool)
            && d.get("source").map(String::as_str) == Some(volume)
    };
    if let Some(name) = device {
        return match inst.devices.get(name) {
            None => bail!("The specified device doesn't exist"),
            Some(d) if !uses(d) => bail!("The specified device doesn't match the volume"),
            Some(_) => Ok(name.to_string()),
        };
    }
    let mut found = inst.devices.iter().filter(|(_, d)| uses(d));
    match (found.next(), found.next()) {
        (None, _) => bail!("No device found for this storage volume"),
        (Some(_), Some(_)) => bail!("More than one device matches, specify the device name"),
        (Some((name, _)), None) => Ok(name.clone()),
    }
}

fn render_info(v: &StorageVolume, snaps: &[kante_client::StorageVolumeSnapshot]) -> String {
    let mut out = format!(
        "Name: {}\nType: {}\nContent type: {}\nCreated: {}\n",
        v.name,
        v.kind,
        v.content_type,
        v.created_at.format("%Y/%m/%d %H:%M %Z")
    );
    if !v.used_by.is_empty() {
        out.push_str("Used by:\n");
        for u in &v.used_by {
            out.push_str(&format!("  - {u}\n"));
        }
    }
    if !snaps.is_empty() {
        let rows: Vec<Row> = snaps
            .iter()
            .map(|s| {
                vec![
                    s.name.rsplit('/').next().unwrap_or(&s.name).to_string(),
                    s.description.clone(),
                    s.created_at.format("%Y/%m/%d %H:%M %Z").to_string(),
                ]
            })
            .collect();
        out.push_str("\nSnapshots:\n");
        out.push_str(&render_table(&["NAME", "DESCRIPTION", "TAKEN AT"], &rows));
    }
    out
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create {
            pool,
            volume,
            config,
            content_type,
            description,
        } => {
            let post = StorageVolumesPost {
                name: volume.clone(),
                kind: "custom".into(),
                description: description.unwrap_or_default(),
                config: config
                    .iter()
                    .map(|kv| parse_kv(kv))
                    .collect::<Result<_>>()?,
                content_type,
                source: VolumeSource::default(),
            };
            c.create_storage_volume(&pool, &post).await?;
            println!("Storage volume {volume} created");
        }
        VolumeCmd::List { pool, format } => {
            let vols = c.storage_volumes(&pool).await?;
            let mut header = vec!["TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED BY"];
            if clustered(&vols) {
                header.push("LOCATION");
            }
            print_list(format, &vols, &header, || list_rows(&vols))?;
        }
        VolumeCmd::Show { pool, volume } => match volume.split_once('/') {
            Some((vol, snap)) => {
                let snaps = c.storage_volume_snapshots(&pool, vol).await?;
                let Some(s) = snaps
                    .iter()
                    .find(|s| s.name.rsplit('/').next() == Some(snap))
                else {
                    bail!("Storage volume snapshot not found");
                };
                print!("{}", to_yaml(s)?);
            }
            None => print!("{}", to_yaml(&c.storage_volume(&pool, &volume).await?)?),
        },
        VolumeCmd::Info { pool, volume } => {
            let v = c.storage_volume(&pool, &volume).await?;
            let snaps = c.storage_volume_snapshots(&pool, &volume).await?;
            print!("{}", render_info(&v, &snaps));
        }
        VolumeCmd::Get { pool, volume, key } => {
            let v = c.storage_volume(&pool, &volume).await?;
            println!("{}", v.config.get(&key).map(String::as_str).unwrap_or(""));
        }
        VolumeCmd::Set { pool, volume, args } => {
            let (v, etag) = c.storage_volume_with_etag(&pool, &volume).await?;
            let mut put = StorageVolumePut::from(&v);
            put.config.extend(parse_set_args(&args)?);
            c.update_storage_volume(&pool, &volume, &put, etag.as_deref())
                .await?;
        }
        VolumeCmd::Unset { pool, volume, keys } => {
            let (v, etag) = c.storage_volume_with_etag(&pool, &volume).await?;
            let mut put = StorageVolumePut::from(&v);
            for k in &keys {
                if put.config.remove(k).is_none() {
                    bail!("Key {k} is not set");
                }
            }
            c.update_storage_volume(&pool, &volume, &put, etag.as_deref())
                .await?;
        }
        VolumeCmd::Edit { pool, volume } => {
            let (v, etag) = c.storage_volume_with_etag(&pool, &volume).await?;
            edit::edit(
                "storage volume",
                &to_yaml(&StorageVolumePut::from(&v))?,
                |new: StorageVolumePut| {
                    let (pool, volume, etag) = (pool.clone(), volume.clone(), etag.clone());
                    async move {
                        Ok(
                            c.update_storage_volume(&pool, &volume, &new, etag.as_deref())
                                .await?,
                        )
                    }
                },
            )
            .await?;
        }
        VolumeCmd::Rename {
            pool,
            volume,
            new_name,
        } => {
            c.rename_storage_volume(&pool, &volume, &new_name).await?;
            println!("Renamed storage volume from \"{volume}\" to \"{new_name}\"");
        }
        VolumeCmd::Copy { .. } | VolumeCmd::Move { .. } => {
            bail!("copy and move are handled by volume_migrate")
        }
        VolumeCmd::Delete { pool, volume } => match volume.split_once('/') {
            Some((vol, snap)) => {
                c.delete_storage_volume_snapshot(&pool, vol, snap).await?;
                println!("Storage volume snapshot {volume} deleted");
            }
            None => {
                c.delete_storage_volume(&pool, &volume).await?;
                println!("Storage volume {volume} deleted");
            }
        },
        VolumeCmd::Attach {
            pool,
            volume,
            instance,
            rest,
            readonly,
        } => {
            let (device, path) = device_and_path(&volume, &rest)?;
            // The volume must exist; the daemon checks it too, but this gives lxc's message first.
            c.storage_volume(&pool, &volume).await?;
            let (inst, etag) = c.instance_with_etag(&instance).await?;
            if inst.devices.contains_key(&device) {
                bail!("The device already exists");
            }
            let mut put = writable(&inst, false);
            put.devices
                .insert(device, attach_device(&pool, &volume, &path, readonly));
            c.update_instance(&instance, &put, etag.as_deref()).await?;
        }
        VolumeCmd::Detach {
            pool,
            volume,
            instance,
            device,
        } => {
            let (inst, etag) = c.instance_with_etag(&instance).await?;
            let dev = volume_device(&inst, &pool, &volume, device.as_deref())?;
            let mut put = writable(&inst, false);
            put.devices.remove(&dev);
            c.update_instance(&instance, &put, etag.as_deref()).await?;
        }
        VolumeCmd::Snapshot {
            pool,
            volume,
            snapshot,
        } => {
            let name = snapshot.unwrap_or_default();
            c.create_storage_volume_snapshot(&pool, &volume, &name)
                .await?;
        }
        VolumeCmd::Restore {
            pool,
            volume,
            snapshot,
        } => {
            c.restore_storage_volume(&pool, &volume, &snapshot).await?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(devices: serde_json::Value) -> Instance {
        serde_json::from_value(serde_json::json!({
            "name": "c1", "architecture": "x86_64", "config": {}, "devices": devices,
            "ephemeral": false, "profiles": [], "stateful": false, "description": "",
            "created_at": "2026-11-22T00:00:00Z", "expanded_config": {}, "expanded_devices": {},
            "status": "Stopped", "status_code": 102, "last_used_at": "2026-11-22T00:00:00Z",
            "location": "none", "type": "container", "project": "default",
        }))
        .expect("instance")
    }

    #[test]
    fn attach_names_the_device_after_the_volume() {
        let (d, p) = device_and_path("vol1", &["/data".into()]).expect("one arg");
        assert_eq!((d.as_str(), p.as_str()), ("vol1", "/data"));
        let (d, p) = device_and_path("vol1", &["data".into(), "/mnt".into()]).expect("two args");
        assert_eq!((d.as_str(), p.as_str()), ("data", "/mnt"));
        let dev = attach_device("docker", "vol1", "/var/lib/docker", true);
        assert_eq!(dev["type"], "disk");
        assert_eq!(dev["source"], "vol1");
        assert_eq!(dev["readonly"], "true");
    }

    #[test]
    fn detach_finds_the_one_device_of_the_volume() {
        let i = inst(serde_json::json!({
            "root": {"type": "disk", "path": "/", "pool": "default"},
            "data": {"type": "disk", "pool": "p", "source": "vol1", "path": "/d"},
            "other": {"type": "disk", "pool": "p", "source": "vol2", "path": "/e"},
        }));
        assert_eq!(volume_device(&i, "p", "vol1", None).expect("found"), "data");
        assert!(volume_device(&i, "p", "vol3", None).is_err());
        assert!(volume_device(&i, "p", "vol1", Some("other")).is_err());
        assert!(volume_device(&i, "p", "vol1", Some("missing")).is_err());
    }
}
