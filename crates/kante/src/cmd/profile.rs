//! `kante profile …`: profiles, their devices, and which instances use them.
//! Changes are GET + PUT (with `If-Match`), as lxc does: the daemon's PATCH
//! merges maps and cannot remove a key or a device.

use anyhow::{bail, Result};
use kante_client::{Client, Profile, ProfilePut, ProfilesPost};

use super::config::{parse_set_args, writable};
use super::{edit, print_list, to_yaml};
use crate::cli::{DeviceCmd, ProfileCmd};
use crate::table::Row;

pub fn list_rows(profiles: &[Profile]) -> Vec<Row> {
    let mut sorted: Vec<&Profile> = profiles.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.description.clone(),
                p.used_by.len().to_string(),
            ]
        })
        .collect()
}

/// `profile assign`'s list: comma separated, `""` for none.
pub fn parse_profile_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

async fn modify(
    c: &Client,
    name: &str,
    change: impl FnOnce(&mut ProfilePut) -> Result<()>,
) -> Result<()> {
    let (p, etag) = c.profile_with_etag(name).await?;
    let mut put = ProfilePut::from(&p);
    change(&mut put)?;
    c.update_profile(name, &put, etag.as_deref()).await?;
    Ok(())
}

/// Changes an instance's profile list (GET + PUT).
async fn modify_instance_profiles(
    c: &Client,
    instance: &str,
    change: impl FnOnce(&mut Vec<String>) -> Result<()>,
) -> Result<()> {
    let (inst, etag) = c.instance_with_etag(instance).await?;
    let mut put = writable(&inst, false);
    let mut profiles = inst.profiles.clone();
    change(&mut profiles)?;
    put.profiles = Some(profiles);
    c.update_instance(instance, &put, etag.as_deref()).await?;
    Ok(())
}

pub async fn run(c: &Client, cmd: ProfileCmd) -> Result<i32> {
    match cmd {
        ProfileCmd::List { format, .. } => {
            let list = c.profiles().await?;
            print_list(format, &list, &["NAME", "DESCRIPTION", "USED BY"], || {
                list_rows(&list)
            })?;
        }
        ProfileCmd::Show { name } => print!("{}", to_yaml(&c.profile(&name).await?)?),
        ProfileCmd::Create { name, description } => {
            let post = ProfilesPost {
                name: name.clone(),
                put: ProfilePut {
                    description: description.unwrap_or_default(),
                    ..Default::default()
                },
            };
            c.create_profile(&post).await?;
            println!("Profile {name} created");
        }
        ProfileCmd::Copy {
            source,
            destination,
        } => {
            let p = c.profile(&source).await?;
            let post = ProfilesPost {
                name: destination,
                put: ProfilePut::from(&p),
            };
            c.create_profile(&post).await?;
        }
        ProfileCmd::Delete { names } => {
            for name in names {
                c.delete_profile(&name).await?;
                println!("Profile {name} deleted");
            }
        }
        ProfileCmd::Get { name, key } => {
            let p = c.profile(&name).await?;
            println!("{}", p.config.get(&key).map(String::as_str).unwrap_or(""));
        }
        ProfileCmd::Set { name, args } => {
            let pairs = parse_set_args(&args)?;
            modify(c, &name, |put| {
                put.config.extend(pairs);
                Ok(())
            })
            .await?;
        }
        ProfileCmd::Unset { name, keys } => {
            modify(c, &name, |put| {
                for k in &keys {
                    if put.config.remove(k).is_none() {
                        bail!("Key {k} is not set");
                    }
                }
                Ok(())
            })
            .await?;
        }
        ProfileCmd::Edit { name } => {
            let (p, etag) = c.profile_with_etag(&name).await?;
            edit::edit("profile", &to_yaml(&p)?, |new: ProfilePut| {
                let (name, etag) = (name.clone(), etag.clone());
                async move { Ok(c.update_profile(&name, &new, etag.as_deref()).await?) }
            })
            .await?;
        }
        ProfileCmd::Rename { name, new_name } => {
            c.rename_profile(&name, &new_name).await?;
            println!("Profile {name} renamed to {new_name}");
        }
        ProfileCmd::Device(d) => device(c, d).await?,
        ProfileCmd::Add { instance, profile } => {
            modify_instance_profiles(c, &instance, |ps| {
                if ps.contains(&profile) {
                    bail!("Profile {profile} is already applied to {instance}");
                }
                ps.push(profile.clone());
                Ok(())
            })
            .await?;
            println!("Profile {profile} added to {instance}");
        }
        ProfileCmd::Remove { instance, profile } => {
            modify_instance_profiles(c, &instance, |ps| {
                let before = ps.len();
                ps.retain(|p| p != &profile);
                if ps.len() == before {
                    bail!("Profile {profile} isn't currently applied to {instance}");
                }
                Ok(())
            })
            .await?;
            println!("Profile {profile} removed from {instance}");
        }
        ProfileCmd::Assign { instance, profiles } => {
            let list = parse_profile_list(&profiles);
            let shown = list.join(",");
            modify_instance_profiles(c, &instance, |ps| {
                *ps = list;
                Ok(())
            })
            .await?;
            if shown.is_empty() {
                println!("Profiles removed from {instance}");
            } else {
                println!("Profiles {shown} applied to {instance}");
            }
        }
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
            modify(c, &name, |put| {
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
            modify(c, &name, |put| {
                for d in &devices {
                    if put.devices.remove(d).is_none() {
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
        DeviceCmd::Show { name } => print!("{}", to_yaml(&c.profile(&name).await?.devices)?),
        DeviceCmd::List { name } => {
            for d in c.profile(&name).await?.devices.keys() {
                println!("{d}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        serde_json::from_value(serde_json::json!({
            "name": "web", "description": "Web servers",
            "config": {"limits.memory": "256MiB"},
            "devices": {"root": {"type": "disk", "path": "/", "pool": "default"}},
            "used_by": ["/1.0/instances/c1", "/1.0/instances/c2"]
        }))
        .unwrap()
    }

    #[test]
    fn list_like_lxc() {
        assert_eq!(list_rows(&[profile()])[0], vec!["web", "Web servers", "2"]);
    }

    #[test]
    fn show_yaml_round_trips_into_put() {
        let yaml = to_yaml(&profile()).unwrap();
        assert!(
            yaml.starts_with(
                "config:\n  limits.memory: 256MiB\ndescription: Web servers\ndevices:\n"
            ),
            "{yaml}"
        );
        let put: ProfilePut = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(put.devices["root"]["pool"], "default");
        assert_eq!(put.config["limits.memory"], "256MiB");
        // Numbers written by hand in the editor become strings, as LXD stores them.
        let put: ProfilePut = serde_yaml::from_str("config:\n  limits.cpu: 2\n").unwrap();
        assert_eq!(put.config["limits.cpu"], "2");
    }

    #[test]
    fn profile_lists() {
        assert_eq!(parse_profile_list("default, web"), vec!["default", "web"]);
        assert!(parse_profile_list("").is_empty());
    }
}
