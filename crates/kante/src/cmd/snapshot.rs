//! `kante snapshot`, `kante restore`, and the snapshot forms of `delete`,
//! `rename` and `move` (INSTANCE/SNAPSHOT names).

use anyhow::{bail, Result};
use kante_api::names::validate_snapshot_name;
use kante_client::Client;

use super::split_snapshot;
use crate::cli::MoveArgs;

pub async fn snapshot(
    c: &Client,
    instance: &str,
    snap: Option<&str>,
    reuse: bool,
    stateful: bool,
    no_expiry: bool,
) -> Result<i32> {
    let snap = snap.unwrap_or("");
    if !snap.is_empty() {
        validate_snapshot_name(snap)?;
        if reuse {
            match c.delete_snapshot(instance, snap).await {
                Err(e) if e.is_not_found() => {}
                r => r?,
            }
        }
    }
    if no_expiry {
        // lxc's --no-expiry: the zero time, which the server keeps as never.
        let body = serde_json::json!({
            "name": snap,
            "stateful": stateful,
            "expires_at": "0001-01-01T00:00:00Z",
        });
        let path = format!(
            "/1.0/instances/{}/snapshots",
            kante_client::path_segment(instance)
        );
        let resp = c.post(&path, &body).await?;
        c.finish(resp).await?;
    } else {
        c.create_snapshot(instance, snap, stateful).await?;
    }
    Ok(0)
}

pub async fn restore(c: &Client, instance: &str, snap: &str, stateful: bool) -> Result<i32> {
    // lxc accepts both `snap` and `instance/snap` here.
    let snap = match split_snapshot(snap)? {
        Some((i, s)) if i == instance => s,
        Some(_) => bail!("The snapshot {snap:?} does not belong to {instance}"),
        None => snap,
    };
    c.restore_snapshot(instance, snap, stateful).await?;
    Ok(0)
}

/// What a rename/move of `from` to `to` means once both names are parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Rename<'a> {
    Instance {
        from: &'a str,
        to: &'a str,
    },
    Snapshot {
        instance: &'a str,
        from: &'a str,
        to: &'a str,
    },
}

pub fn plan_rename<'a>(from: &'a str, to: &'a str) -> Result<Rename<'a>> {
    match (split_snapshot(from)?, split_snapshot(to)?) {
        (None, None) => Ok(Rename::Instance { from, to }),
        (Some((i, s)), Some((j, t))) if i == j => {
            validate_snapshot_name(t)?;
            Ok(Rename::Snapshot {
                instance: i,
                from: s,
                to: t,
            })
        }
        (Some(_), Some(_)) => bail!("Snapshots can only be renamed within their own instance"),
        (Some(_), None) => {
            bail!("A snapshot cannot be moved out of its instance; use `kante copy {from} {to}`")
        }
        (None, Some(_)) => bail!("An instance cannot be renamed to a snapshot name ({to})"),
    }
}

pub async fn rename(c: &Client, from: &str, to: &str) -> Result<i32> {
    match plan_rename(from, to)? {
        Rename::Instance { from, to } => {
            super::check_name(to)?;
            c.rename_instance(from, to).await?;
        }
        Rename::Snapshot { instance, from, to } => c.rename_snapshot(instance, from, to).await?,
    }
    Ok(0)
}

/// `remote:name` to `name` for the local remote; other remotes are refused.
pub fn local_name(name: &str) -> Result<&str> {
    match name.split_once(':') {
        None => Ok(name),
        Some(("local", rest)) => Ok(rest),
        Some((remote, _)) => bail!(
            "Remote {remote:?} is unknown: kante only works with the local server, so instances cannot be moved or copied between servers"
        ),
    }
}

/// `kante move` on one server (a move to another server went to
/// `migrate`): a rename of an instance or snapshot, with `-c`, `-p`,
/// `--no-profiles` and `-d` applied to the instance first (one PUT; the
/// old configuration is put back if the rename then fails). The transfer
/// flags have nothing to do here.
pub async fn move_(c: &Client, args: MoveArgs) -> Result<i32> {
    if let Some(member) = &args.target {
        return move_to_member(c, &args, member).await;
    }
    if args.destination.is_empty() {
        bail!("kante move needs a destination (a new name or REMOTE:), or --target MEMBER");
    }
    if args.storage.is_some() {
        bail!("Moving an instance to another pool of the same server is not supported yet");
    }
    if args.mode.is_some() || args.stateless || args.instance_only {
        bail!(
            "--mode, --stateless and --instance-only apply to a move to another server (REMOTE:)"
        );
    }
    let from = local_name(&args.source)?;
    let to = local_name(&args.destination)?;
    let changes = !args.config.is_empty()
        || !args.profiles.is_empty()
        || args.no_profiles
        || !args.device.is_empty();
    if !changes {
        return rename(c, from, to).await;
    }
    if split_snapshot(from)?.is_some() {
        bail!(
            "--config, --profile, --no-profiles and --device apply to an instance, not a snapshot"
        );
    }
    plan_rename(from, to)?;
    let (inst, etag) = c.instance_with_etag(from).await?;
    let before = super::config::writable(&inst, false);
    let mut put = before.clone();
    for kv in &args.config {
        let (k, v) = super::parse_kv(kv)?;
        put.config.insert(k, v);
    }
    let mut profiles = if args.no_profiles {
        vec![]
    } else {
        inst.profiles.clone()
    };
    for p in &args.profiles {
        if !profiles.contains(p) {
            profiles.push(p.clone());
        }
    }
    put.profiles = Some(profiles);
    super::override_devices(&mut put.devices, &inst.expanded_devices, &args.device)?;
    c.update_instance(from, &put, etag.as_deref()).await?;
    if let Err(e) = rename(c, from, to).await {
        if let Err(undo) = c.update_instance(from, &before, None).await {
            bail!("{e:#}; putting {from}'s configuration back failed too: {undo}");
        }
        return Err(e);
    }
    Ok(0)
}

/// `kante move NAME --target MEMBER`: to another member of the cluster,
/// keeping the name (`--stateless` is what it does anyway).
async fn move_to_member(c: &Client, args: &MoveArgs, member: &str) -> Result<i32> {
    let from = local_name(&args.source)?;
    let to = local_name(&args.destination)?;
    if split_snapshot(from)?.is_some() {
        bail!("--target moves an instance, not a snapshot");
    }
    if !to.is_empty() && to != from {
        bail!("--target keeps the instance's name: give it as the destination too, or rename it afterwards");
    }
    if args.storage.is_some()
        || args.mode.is_some()
        || args.instance_only
        || !args.config.is_empty()
        || !args.profiles.is_empty()
        || args.no_profiles
        || !args.device.is_empty()
    {
        bail!(
            "--target takes no --storage, --mode, --instance-only, --config, --profile or --device"
        );
    }
    c.move_instance_to_member(from, member).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_plans() {
        assert_eq!(
            plan_rename("c1", "c2").unwrap(),
            Rename::Instance {
                from: "c1",
                to: "c2"
            }
        );
        assert_eq!(
            plan_rename("c1/s0", "c1/s1").unwrap(),
            Rename::Snapshot {
                instance: "c1",
                from: "s0",
                to: "s1"
            }
        );
        assert!(plan_rename("c1/s0", "c2/s1").is_err());
        assert!(plan_rename("c1/s0", "c2").is_err());
        assert!(plan_rename("c1", "c1/s0").is_err());
        assert!(plan_rename("c1/s0", "c1/").is_err());
    }

    #[test]
    fn remotes() {
        assert_eq!(local_name("c1").unwrap(), "c1");
        assert_eq!(local_name("local:c1").unwrap(), "c1");
        let e = local_name("other:c1").unwrap_err().to_string();
        assert!(e.contains("\"other\"") && e.contains("local server"), "{e}");
    }
}
