//! Images between cluster members. The image index (records, aliases) is
//! shared, but an image's files are each member's (`KANTE_DIR/images`),
//! and each heartbeat lists the fingerprints its member holds. When an
//! instance is made from an image whose files this member lacks (a
//! `--target` create, or the scheduler's pick when no member held them),
//! [`Engine::ensure_image_files`] fetches them, as LXD and Incus do at
//! create time: from an online member whose heartbeat lists them (the
//! other online members next, as a heartbeat may predate an import), by
//! `GET /1.0/images/FP/export` over the members' HTTPS
//! ([`crate::forward::PeerLink::download`]: this member's certificate,
//! which the cluster trusts, the holder's pinned), through the same
//! single-pass store an upload goes through (sha256 compared with the
//! fingerprint before anything is kept; nothing left on failure). Members
//! are tried in turn; when none gives them the create fails with one line
//! naming the image and each member's failure. Creates of one image on
//! one member fetch it once: the image's lock is held over the fetch and
//! the second finds the files there.

use std::time::Duration;

use kante_storage::{Pool, VolumeKind};

use crate::error::{EngineError, Result};
use crate::forward::{forward_of, Forward};
use crate::operations::Op;
use crate::Engine;

/// How long a holder may take to answer the export's headers (reaching it
/// is bounded tighter by the link; a stalled body by the store's reader).
const EXPORT_HEADERS: Duration = Duration::from_secs(30);

/// The first 12 digits of a fingerprint, as messages show it.
fn short(fp: &str) -> &str {
    &fp[..fp.len().min(12)]
}

impl Engine {
    /// Makes sure image `fp`'s files are here before an instance is made
    /// from it in `pool` (see the module's doc): nothing to do when they
    /// are, when `pool` has it unpacked already, or standalone (the
    /// unpack then says what is missing).
    pub(crate) async fn ensure_image_files(&self, op: &Op, fp: &str, pool: &Pool) -> Result<()> {
        let Some(me) = self.cluster.member_name() else {
            return Ok(());
        };
        let lock = self.image_lock(fp);
        let _g = lock.lock().await;
        let stored = self.paths.images().join(fp);
        if stored.is_file() || pool.has_volume(VolumeKind::Image, fp) {
            return Ok(());
        }
        // Members whose heartbeat lists the image first, then the other
        // online ones: a heartbeat is up to 3 s old, and an image imported
        // on a member just now is not in its heartbeat yet.
        let (mut ask, others): (Vec<_>, Vec<_>) = self
            .cluster
            .peers()
            .into_iter()
            .filter(|p| p.online && p.name != me)
            .partition(|p| {
                p.beat
                    .as_ref()
                    .is_some_and(|b| b.images.iter().any(|i| i == fp))
            });
        ask.extend(others);
        let holders: Vec<Forward> = ask.iter().map(forward_of).collect();
        if holders.is_empty() {
            return Err(EngineError::Unavailable(format!(
                "Image {} is not stored on cluster member {me:?} and no other cluster member is online",
                short(fp)
            )));
        }
        let mut failures = Vec::new();
        for from in &holders {
            match self.fetch_from_member(op, fp, from).await {
                Ok(()) => return Ok(()),
                // Stored meanwhile by another path (an upload of the same image).
                Err(_) if stored.is_file() => return Ok(()),
                Err(e) => {
                    tracing::warn!(image = fp, member = %from.member, "fetching an image's files: {e}");
                    failures.push(format!("{}: {e}", from.member));
                }
            }
        }
        Err(EngineError::Unavailable(format!(
            "Fetching image {} from the cluster failed ({})",
            short(fp),
            failures.join("; ")
        )))
    }

    /// Downloads image `fp`'s export from member `from` into the store,
    /// reporting `download_progress` on `op`.
    async fn fetch_from_member(&self, op: &Op, fp: &str, from: &Forward) -> Result<()> {
        let link = self
            .forwarding
            .link()
            .ok_or_else(|| EngineError::internal("no link to the other members"))?;
        tracing::info!(image = fp, member = %from.member, "fetching an image's files from a member");
        let got = link
            .download(from, &format!("/1.0/images/{fp}/export"), EXPORT_HEADERS)
            .await
            .map_err(|e| EngineError::Unavailable(format!("its export failed: {e}")))?;
        let task = self
            .store_export_reporting(op, fp, &got.content_type, got.body, got.length.unwrap_or(0))
            .await?;
        let stored = task
            .await
            .map_err(|_| EngineError::internal("the image store stopped"))??;
        tracing::info!(image = fp, member = %from.member, bytes = stored.size, "image files fetched from a member");
        Ok(())
    }
}
