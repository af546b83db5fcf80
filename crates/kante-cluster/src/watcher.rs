//! Keeps the cache current: one watch on the whole prefix from the
//! cache's revision on. A broken watch (etcd gone, link down) is resumed
//! from the last revision seen, with backoff, for as long as the state
//! lives; a watch whose start was compacted away reloads the whole prefix
//! first (whatever changed meanwhile, deletions included, is then in it).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, WatchOptions};

use crate::state::Shared;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How a watch ended.
enum Ended {
    /// Its start revision is compacted, or etcd cancelled it: reload.
    Reload(String),
    /// The stream broke: resume from the last revision.
    Broken(String),
}

/// Follows the prefix until the task is aborted (the state dropped).
pub(crate) async fn run(client: Client, shared: Arc<Shared>, timeout: Duration) {
    let mut reload = false;
    let mut backoff = BACKOFF_MIN;
    loop {
        if reload {
            match shared.load(&client, timeout).await {
                Ok(()) => {
                    shared.reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(prefix = %shared.prefix, "cluster state reloaded");
                    reload = false;
                }
                Err(e) => {
                    tracing::debug!("reloading the cluster state: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        match follow(&client, &shared, timeout, &mut backoff).await {
            Ended::Reload(why) => {
                tracing::info!(prefix = %shared.prefix, "cluster watch lost its place ({why}): reloading");
                reload = true;
            }
            Ended::Broken(why) => {
                tracing::debug!(prefix = %shared.prefix, "cluster watch broken: {why}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        shared.set_broken();
    }
}

/// One watch, from the revision after the cache's, applied as it comes.
async fn follow(
    client: &Client,
    shared: &Shared,
    timeout: Duration,
    backoff: &mut Duration,
) -> Ended {
    let start = shared.revision() + 1;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_progress_notify();
    let mut watch = client.watch_client();
    let mut stream = match tokio::time::timeout(
        timeout,
        watch.watch(shared.prefix.as_bytes(), Some(options)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ended::Broken(e.to_string()),
        Err(_) => return Ended::Broken(format!("no answer in {timeout:?}")),
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ended::Broken("the watch stream ended".into()),
            Err(e) => return Ended::Broken(e.to_string()),
        };
        if resp.compact_revision() > 0 {
            return Ended::Reload(format!(
                "revision {start} compacted, now from {}",
                resp.compact_revision()
            ));
        }
        if resp.canceled() {
            return Ended::Reload(format!("cancelled: {}", resp.cancel_reason()));
        }
        if resp.created() {
            shared.set_watching();
            *backoff = BACKOFF_MIN;
            continue;
        }
        let progress = resp
            .events()
            .is_empty()
            .then(|| resp.header().map(|h| h.revision()))
            .flatten();
        shared.apply(resp.events(), progress);
    }
}
