//! The cache kept on disk (`EtcdConfig::snapshot`): written whenever its
//! revision moved (checked every 2 s, written to a temporary file then
//! renamed), read at connect when etcd does not answer, so a member that
//! starts during an outage serves from its last view of the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::Entry;
use crate::state::Shared;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    revision: i64,
    /// Key, value (UTF-8: JSON records and plain holders), create revision.
    entries: Vec<(String, String, i64)>,
}

/// Writes the cache to `path` (atomically).
pub(crate) fn save(path: &Path, shared: &Shared) -> std::io::Result<()> {
    let snap = {
        let cache = shared.cache();
        Snapshot {
            revision: cache.revision(),
            entries: cache
                .all()
                .filter_map(|(k, e)| {
                    let v = String::from_utf8(e.value.clone()).ok()?;
                    Some((k.clone(), v, e.create_revision))
                })
                .collect(),
        }
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&snap)?)?;
    std::fs::rename(&tmp, path)
}

/// The entries and revision saved at `path`, if any.
pub(crate) fn load(path: &Path) -> Option<(BTreeMap<String, Entry>, i64)> {
    let bytes = std::fs::read(path).ok()?;
    let snap: Snapshot = serde_json::from_slice(&bytes).ok()?;
    let entries = snap
        .entries
        .into_iter()
        .map(|(k, v, create_revision)| {
            (
                k,
                Entry {
                    value: v.into_bytes(),
                    create_revision,
                },
            )
        })
        .collect();
    Some((entries, snap.revision))
}

/// Saves the cache whenever its revision moved, until aborted.
pub(crate) async fn keep(shared: Arc<Shared>, path: PathBuf) {
    let mut saved = -1;
    loop {
        let revision = shared.revision();
        if revision != saved {
            match save(&path, &shared) {
                Ok(()) => saved = revision,
                Err(e) => tracing::warn!("saving the cluster state to {}: {e}", path.display()),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
