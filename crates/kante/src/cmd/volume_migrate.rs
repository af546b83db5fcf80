//! `kante storage volume copy|move` of custom volumes. On one server (or
//! cluster): a copy is `POST …/volumes/custom` with `source.type: copy`
//! (`--target M`: made on member M, which takes the volume from the member
//! holding it), a move in one pool a rename, else a copy then the
//! source's delete (on its member). Between two servers, as lxc drives
//! it: the source offers the volume in a migration operation (`POST
//! …/volumes/custom/VOL` with `migration`), the target makes it from that
//! operation (`source.type: migration`), the data going straight between
//! the servers (`pull`, `push`) or through this client (`relay`), with
//! `cmd/migrate.rs`'s choice of mode and fallback; a move deletes the
//! source only once the target has the volume. The target's pool and the
//! free name are checked before any byte moves.

use anyhow::{bail, Context, Result};
use kante_api::operation::Operation;
use kante_api::storage::StorageVolume;
use kante_client::{path_segment, Client, StorageVolumesPost, VolumeSource};
use serde_json::{json, Value};

use super::migrate::{first_mode, follow, or_cancel, secrets, End, Failure};
use crate::cli::{Command, StorageCmd, TransferMode, VolumeCmd};
use crate::remote::route::VolumeCross;
use crate::remote::Config;

/// `POOL/VOLUME[/SNAPSHOT]` split.
fn pool_volume(s: &str) -> Result<(String, String)> {
    match s.split_once('/') {
        Some((p, v)) if !p.is_empty() && !v.is_empty() => Ok((p.to_string(), v.to_string())),
        _ => bail!("Expected [REMOTE:]POOL/VOLUME, got {s:?}"),
    }
}

/// Where a volume is in a cluster (`None` standalone).
fn member_of(v: &StorageVolume) -> Option<&str> {
    Some(v.location.as_str()).filter(|l| !l.is_empty() && *l != "none")
}

/// A copy or move on the one server `c` talks to; `target`: the cluster
/// member the volume goes to.
pub async fn on_one_server(c: &Client, target: Option<&str>, cmd: VolumeCmd) -> Result<i32> {
    let (src, dst, is_move, target_pool, volume_only) = match cmd {
        VolumeCmd::Copy {
            args,
            target_pool,
            volume_only,
            ..
        } => match args.as_slice() {
            [pool, src, dst] => (
                format!("{pool}/{src}"),
                format!("{}/{dst}", target_pool.as_deref().unwrap_or(pool)),
                false,
                None,
                volume_only,
            ),
            [src, dst] => (src.clone(), dst.clone(), false, target_pool, volume_only),
            _ => bail!("Expected SOURCE DESTINATION or POOL SOURCE DESTINATION"),
        },
        VolumeCmd::Move {
            source,
            destination,
            ..
        } => (source, destination, true, None, false),
        _ => bail!("not a copy or move"),
    };
    let (src_pool, src_vol) = pool_volume(&src)?;
    let (mut dst_pool, dst_vol) = pool_volume(&dst)?;
    if let Some(p) = target_pool {
        dst_pool = p;
    }
    if dst_vol.contains('/') {
        bail!("The destination must be POOL/VOLUME");
    }
    let base = src_vol.split('/').next().unwrap_or(&src_vol).to_string();
    if is_move && base != src_vol {
        bail!("A snapshot cannot be moved; copy it");
    }
    // Found wherever it is in a cluster (a name two members hold needs
    // the member: the error says so).
    let vol = c.storage_volume(&src_pool, &base).await?;
    let holder = member_of(&vol).map(str::to_string);
    if is_move && target.is_none() && src_pool == dst_pool {
        c.rename_storage_volume(&src_pool, &src_vol, &dst_vol)
            .await?;
        println!("Storage volume moved successfully!");
        return Ok(0);
    }
    if is_move && src_pool == dst_pool && src_vol == dst_vol && target == holder.as_deref() {
        bail!("The storage volume is already there");
    }
    let made_on = target.map(|t| c.with_target(t));
    let post = StorageVolumesPost {
        name: dst_vol.clone(),
        kind: "custom".into(),
        content_type: "filesystem".into(),
        source: VolumeSource {
            kind: "copy".into(),
            name: src_vol.clone(),
            pool: src_pool.clone(),
            volume_only,
            location: holder.clone().unwrap_or_default(),
            ..Default::default()
        },
        ..Default::default()
    };
    made_on
        .as_ref()
        .unwrap_or(c)
        .create_storage_volume(&dst_pool, &post)
        .await?;
    if !is_move {
        println!("Storage volume copied successfully!");
        return Ok(0);
    }
    let at_holder = holder.as_deref().map(|h| c.with_target(h));
    at_holder
        .as_ref()
        .unwrap_or(c)
        .delete_storage_volume(&src_pool, &src_vol)
        .await
        .context("The volume was copied, but deleting the source failed")?;
    println!("Storage volume moved successfully!");
    Ok(0)
}

/// What a copy or move between servers asks.
struct Cross {
    x: VolumeCross,
    is_move: bool,
    mode: Option<TransferMode>,
    volume_only: bool,
    src_pool: String,
    src_vol: String,
    dst_pool: String,
    dst_vol: String,
}

/// A copy or move between two servers (see the module's doc).
pub async fn run(cfg: &Config, x: VolumeCross, cmd: Command) -> Result<i32> {
    let Command::Storage(StorageCmd::Volume { cmd, .. }) = cmd else {
        bail!("not a volume copy or move");
    };
    let (is_move, mode, volume_only) = match cmd {
        VolumeCmd::Copy {
            mode, volume_only, ..
        } => (false, mode, volume_only),
        VolumeCmd::Move { mode, .. } => (true, mode, false),
        _ => bail!("not a volume copy or move"),
    };
    let (src_pool, src_vol) = pool_volume(&x.source)?;
    let (dst_pool, dst_vol) = pool_volume(&x.destination)?;
    if dst_vol.contains('/') {
        bail!("The destination must be POOL/VOLUME");
    }
    if is_move && src_vol.contains('/') {
        bail!("A snapshot cannot be moved; copy it");
    }
    let req = Cross {
        x,
        is_move,
        mode,
        volume_only,
        src_pool,
        src_vol,
        dst_pool,
        dst_vol,
    };
    let src = End::open(cfg, &req.x.from).await?;
    let dst = End::open(cfg, &req.x.to).await?;
    // A snapshot (`VOLUME/SNAPSHOT`) goes as a volume of its own, with its
    // volume's config and description.
    let base = req.src_vol.split('/').next().unwrap_or_default();
    let vol = src
        .client
        .storage_volume(&req.src_pool, base)
        .await
        .with_context(|| format!("Storage volume {} on {}", req.x.source, src.remote))?;
    preflight(&req, &dst).await?;
    let body = json!({
        "name": req.dst_vol,
        "type": "custom",
        "config": vol.config,
        "description": vol.description,
        "content_type": "filesystem",
    });
    transfer(&req, &src, &dst, &body).await?;
    if req.is_move {
        src.client
            .delete_storage_volume(&req.src_pool, &req.src_vol)
            .await
            .with_context(|| {
                format!(
                    "The volume is on {}, but deleting it on {} failed",
                    dst.remote, src.remote
                )
            })?;
        println!("Storage volume moved successfully!");
    } else {
        println!("Storage volume copied successfully!");
    }
    Ok(0)
}

/// The target's pool exists and the name is free there.
async fn preflight(req: &Cross, dst: &End) -> Result<()> {
    let to = &dst.remote;
    let pool = format!("/1.0/storage-pools/{}", path_segment(&req.dst_pool));
    match dst.client.get(&pool).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => bail!("Storage pool {} doesn't exist on {to}", req.dst_pool),
        Err(e) => return Err(e).context(format!("Cannot check pool {} on {to}", req.dst_pool)),
    }
    match dst.client.storage_volume(&req.dst_pool, &req.dst_vol).await {
        Ok(_) => bail!(
            "Storage volume {} already exists on {to}",
            req.x.destination
        ),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e).context(format!("Cannot check {} on {to}", req.x.destination)),
    }
}

async fn transfer(req: &Cross, src: &End, dst: &End, body: &Value) -> Result<()> {
    let mode = first_mode(req.mode, src, dst);
    match attempt(req, src, dst, body, mode).await {
        Err(Failure::Unreached(e)) if req.mode.is_none() && mode != TransferMode::Relay => {
            eprintln!("{e}; relaying through this client instead");
            attempt(req, src, dst, body, TransferMode::Relay)
                .await
                .map_err(Failure::into_error)
        }
        r => r.map_err(Failure::into_error),
    }
}

async fn start_source(req: &Cross, src: &End, target: Option<Value>) -> Result<Operation> {
    let mut post = json!({
        "name": req.src_vol,
        "pool": req.src_pool,
        "migration": true,
        "volume_only": req.volume_only,
    });
    if let Some(t) = target {
        post["target"] = t;
    }
    let path = format!(
        "/1.0/storage-pools/{}/volumes/custom/{}",
        path_segment(&req.src_pool),
        path_segment(&req.src_vol)
    );
    let resp = src
        .client
        .post(&path, &post)
        .await
        .with_context(|| format!("{} refused to send {}", src.remote, req.x.source))?;
    Ok(resp.metadata()?)
}

async fn start_target(req: &Cross, dst: &End, body: &Value, source: Value) -> Result<Operation> {
    let mut post = body.clone();
    post["source"] = source;
    let path = format!(
        "/1.0/storage-pools/{}/volumes/custom",
        path_segment(&req.dst_pool)
    );
    let resp = dst
        .client
        .post(&path, &post)
        .await
        .with_context(|| format!("{} refused to receive the volume", dst.remote))?;
    Ok(resp.metadata()?)
}

fn migration_source(req: &Cross, mode: &str) -> Value {
    json!({
        "type": "migration",
        "mode": mode,
        "name": req.src_vol,
        "pool": req.src_pool,
        "volume_only": req.volume_only,
    })
}

async fn attempt(
    req: &Cross,
    src: &End,
    dst: &End,
    body: &Value,
    mode: TransferMode,
) -> std::result::Result<(), Failure> {
    let (sop, top) = match mode {
        TransferMode::Pull => {
            let sop = start_source(req, src, None).await?;
            let mut source = migration_source(req, "pull");
            source["operation"] = json!(src.operation_url(&sop.id)?);
            source["certificate"] = json!(src.certificate);
            source["secrets"] = json!(secrets(&sop));
            let top = or_cancel(src, &sop.id, start_target(req, dst, body, source).await).await?;
            (sop, top)
        }
        TransferMode::Push => {
            let top = start_target(req, dst, body, migration_source(req, "push")).await?;
            let target = json!({
                "operation": dst.operation_url(&top.id)?,
                "certificate": dst.certificate,
                "secrets": secrets(&top),
            });
            let sop = or_cancel(dst, &top.id, start_source(req, src, Some(target)).await).await?;
            (sop, top)
        }
        TransferMode::Relay => {
            let sop = start_source(req, src, None).await?;
            let push = migration_source(req, "push");
            let top = or_cancel(src, &sop.id, start_target(req, dst, body, push).await).await?;
            (sop, top)
        }
    };
    follow(mode, src, &sop, dst, &top, "the volume").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_named_pool_slash_volume() {
        assert_eq!(
            pool_volume("default/v1").unwrap(),
            ("default".into(), "v1".into())
        );
        assert_eq!(
            pool_volume("default/v1/snap0").unwrap(),
            ("default".into(), "v1/snap0".into())
        );
        assert!(pool_volume("v1").is_err());
        assert!(pool_volume("/v1").is_err());
    }
}
