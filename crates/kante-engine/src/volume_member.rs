//! Custom volumes copied between cluster members (`POST
//! /1.0/storage-pools/{pool}/volumes/custom?target=M` with `source.type:
//! "copy"`, forwarded to member M; `kante storage volume copy|move …
//! --target M`). A member asked to copy a volume that another member holds
//! (`source.location`, else the one member that answers for it, as
//! [`Engine::route_volume`] finds it; two holders are a 400) migrates it
//! itself: it asks the holder over the peer link for a migration of the
//! volume (`POST …/volumes/custom/{name}` with `migration`, served by the
//! holder) and receives it from that operation in pull mode
//! (`migration/volume.rs`), the holder's certificate pinned; a snapshot
//! (`VOLUME/SNAPSHOT`) goes as a volume of its own. The copy's
//! config is the source's with the request's keys over it, as a local
//! copy's. A move is the client's: this copy, then the source's delete on
//! its member.

use std::sync::Arc;
use std::time::Duration;

use kante_api::storage::{StorageVolumesPost, VolumeSource};
use kante_api::ConfigMap;
use kante_storage::VolumeKind;
use serde_json::{json, Value};

use crate::error::{EngineError, Result};
use crate::forward::{forward_of, Forward, Route, FAN_OUT_TIMEOUT};
use crate::operations::Op;
use crate::util::percent;
use crate::volumes::exists;
use crate::Engine;

/// How long the holder may take to start its side.
const START: Duration = Duration::from_secs(30);

impl Engine {
    /// A copy whose source volume another member holds, as an operation;
    /// `None` when it is a copy on this member (standalone, or the
    /// source is here).
    pub(crate) async fn volume_copy_from_member(
        &self,
        pool: &str,
        req: &StorageVolumesPost,
    ) -> Result<Option<Arc<Op>>> {
        let Some(me) = self.cluster.member_name() else {
            return Ok(None);
        };
        let src = &req.source;
        let src_pool = if src.pool.is_empty() {
            pool
        } else {
            src.pool.as_str()
        };
        let (vol, snap) = match src.name.split_once('/') {
            Some((v, s)) => (v, Some(s)),
            None => (src.name.as_str(), None),
        };
        let elsewhere = !src.location.is_empty() && src.location != me;
        let here = self
            .pool(src_pool)
            .map(|p| p.has_volume(VolumeKind::Custom, vol))
            .unwrap_or(false);
        if here && !elsewhere {
            return Ok(None);
        }
        let holder = if elsewhere {
            self.member_forward(&src.location)?
        } else {
            match self.route_volume(src_pool, vol).await? {
                Route::Forward(f) => f,
                // No member has it: the local copy says so (a 404).
                Route::Local => return Ok(None),
            }
        };
        // What this member can refuse, before the holder is asked.
        kante_storage::validate_volume_name(&req.name)?;
        let p = self.pool(pool)?;
        if p.has_volume(VolumeKind::Custom, &req.name) {
            return Err(exists(&req.name));
        }
        let link = self
            .forwarding
            .link()
            .ok_or_else(|| EngineError::internal("No link to the other members"))?;
        let path = format!(
            "/1.0/storage-pools/{}/volumes/custom/{}",
            percent(src_pool),
            percent(vol)
        );
        let on = |e: String| EngineError::Unavailable(format!("On {}: {e}", holder.member));
        let shown = link
            .get(&holder, &path, FAN_OUT_TIMEOUT)
            .await
            .map_err(on)?;
        let mut config: ConfigMap =
            serde_json::from_value(shown.get("config").cloned().unwrap_or_default())
                .unwrap_or_default();
        config.extend(req.config.clone());
        let description = match req.description.is_empty() {
            true => text(&shown, "description"),
            false => req.description.clone(),
        };
        let body = json!({
            "name": vol,
            "pool": src_pool,
            "migration": true,
            "volume_only": src.volume_only,
        });
        // A snapshot goes as a volume of its own (`VOLUME/SNAPSHOT`).
        let sent = match snap {
            Some(s) => format!("{path}{}", percent(&format!("/{s}"))),
            None => path.clone(),
        };
        let started = link
            .send(&holder, "POST", &sent, Some(body), START)
            .await
            .map_err(on)?;
        let id = text(&started, "id");
        if id.is_empty() {
            return Err(on("the migration answered no operation".into()));
        }
        let secrets: ConfigMap = started
            .get("metadata")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let post = StorageVolumesPost {
            name: req.name.clone(),
            kind: "custom".into(),
            description,
            config,
            content_type: req.content_type.clone(),
            source: VolumeSource {
                kind: "migration".into(),
                mode: "pull".into(),
                operation: format!("https://{}/1.0/operations/{id}", holder.address),
                certificate: holder.certificate.clone(),
                secrets,
                volume_only: src.volume_only,
                ..Default::default()
            },
        };
        match self.volume_migration_create(pool, post).await {
            Ok(op) => Ok(Some(op)),
            Err(e) => {
                // The holder's side waits for a peer that will not come.
                let cancel = format!("/1.0/operations/{id}");
                let _ = link
                    .send(&holder, "DELETE", &cancel, None, FAN_OUT_TIMEOUT)
                    .await;
                Err(e)
            }
        }
    }

    /// Member `name`, online, as a peer to ask.
    fn member_forward(&self, name: &str) -> Result<Forward> {
        match self.cluster.peers().into_iter().find(|p| p.name == name) {
            Some(p) if p.online => Ok(forward_of(&p)),
            Some(_) => Err(EngineError::Unavailable(format!(
                "Cluster member {name:?} is offline"
            ))),
            None => Err(EngineError::NotFound(format!(
                "Cluster member {name:?} not found"
            ))),
        }
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
