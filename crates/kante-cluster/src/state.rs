//! [`EtcdState`]: the connection, the cache it shares with its watcher,
//! and the calls to etcd every write goes through (each bounded by the
//! configured timeout, failing as [`StoreError::Unavailable`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use etcd_client::{Client, Event, GetOptions, GetResponse, KeyValue, PutOptions, Txn, TxnResponse};
use kante_store::{Result, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::Cache;
use crate::config::EtcdConfig;
use crate::keys::{self, MemberRecord};

/// What the state and its watcher share.
pub(crate) struct Shared {
    /// `/kante/<cluster>/`.
    pub prefix: String,
    cache: RwLock<Cache>,
    /// The cache's revision, for writers waiting to read their own write.
    revision: watch::Sender<i64>,
    /// Whether the watch is established (false while etcd is away).
    pub watching: AtomicBool,
    /// How often the whole prefix was read again after the watch lost
    /// its place (a compaction).
    pub reloads: AtomicU64,
    /// Unix milliseconds since which the cache has not been kept current
    /// (the watch broke, or never started); meaningless while watching.
    stale_since: AtomicU64,
}

/// Now, in unix milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    /// The watch is established: the cache is current.
    pub fn set_watching(&self) {
        self.watching.store(true, Ordering::Relaxed);
    }

    /// The watch broke: the cache is the last view from now on (the first
    /// break of an outage sets its start).
    pub fn set_broken(&self) {
        if self.watching.swap(false, Ordering::Relaxed) {
            self.stale_since.store(now_ms(), Ordering::Relaxed);
        }
    }

    pub fn cache(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn revision(&self) -> i64 {
        self.cache().revision()
    }

    /// Reads the whole prefix into the cache.
    pub async fn load(&self, client: &Client, timeout: Duration) -> Result<()> {
        let options = GetOptions::new().with_prefix();
        let resp = bounded(
            timeout,
            client
                .kv_client()
                .get(self.prefix.as_bytes(), Some(options)),
        )
        .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.load(&self.prefix, resp.kvs(), revision);
        drop(cache);
        self.revision.send_replace(revision);
        Ok(())
    }

    /// Replaces the cache with a snapshot's entries.
    pub fn restore(
        &self,
        entries: std::collections::BTreeMap<String, crate::cache::Entry>,
        revision: i64,
    ) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.restore(entries, revision);
        drop(cache);
        self.revision.send_replace(revision);
    }

    /// Applies watched events, then a progress notification's revision.
    pub fn apply(&self, events: &[Event], progress: Option<i64>) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        for event in events {
            if let Some(kv) = event.kv() {
                cache.apply(&self.prefix, event.event_type(), kv);
            }
        }
        if let Some(revision) = progress {
            cache.seen(revision);
        }
        let revision = cache.revision();
        drop(cache);
        self.revision.send_if_modified(|r| {
            let changed = *r != revision;
            *r = revision;
            changed
        });
    }
}

/// A [`kante_store::SharedState`] over etcd v3, one member's view: reads
/// from a cache of the cluster's whole prefix kept current by a watch,
/// writes as etcd transactions (`shared.rs`).
pub struct EtcdState {
    pub(crate) client: Client,
    pub(crate) shared: Arc<Shared>,
    pub(crate) member: MemberRecord,
    pub(crate) timeout: Duration,
    watcher: JoinHandle<()>,
    /// Writes the cache to its snapshot file as it changes.
    keeper: Option<JoinHandle<()>>,
}

impl Drop for EtcdState {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(k) = &self.keeper {
            k.abort();
        }
    }
}

impl EtcdState {
    /// Connects, loads the cluster's records into the cache, starts the
    /// watch, and records this member (its name and address). Fails as
    /// unreachable when etcd does not answer within the timeout.
    pub async fn connect(config: &EtcdConfig) -> Result<EtcdState> {
        config.check()?;
        let options = config.options()?;
        let client = bounded(
            config.timeout,
            Client::connect(config.endpoint_urls(), Some(options)),
        )
        .await?;
        let (revision, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            prefix: config.prefix(),
            cache: RwLock::new(Cache::default()),
            revision,
            watching: AtomicBool::new(false),
            reloads: AtomicU64::new(0),
            stale_since: AtomicU64::new(now_ms()),
        });
        if let Err(e) = shared.load(&client, config.timeout).await {
            // Local-first: with a snapshot, start from the last view; the
            // watcher catches up once etcd answers.
            let Some(path) = &config.snapshot else {
                return Err(e);
            };
            tracing::warn!(
                "{e}; starting from the cluster state saved in {}",
                path.display()
            );
            if let Some((entries, revision)) = crate::snapshot::load(path) {
                shared.restore(entries, revision);
            }
        }
        let keeper = config
            .snapshot
            .clone()
            .map(|path| tokio::spawn(crate::snapshot::keep(shared.clone(), path)));
        let watcher = tokio::spawn(crate::watcher::run(
            client.clone(),
            shared.clone(),
            config.timeout,
        ));
        let state = EtcdState {
            client,
            shared,
            member: MemberRecord {
                name: config.member.clone(),
                address: config.address.clone(),
            },
            timeout: config.timeout,
            watcher,
            keeper,
        };
        let record = serde_json::to_vec(&state.member)?;
        let key = keys::member(&state.member.name);
        let known = state.shared.cache().get(&key).map(|e| e.value.clone());
        if known.as_deref() != Some(record.as_slice()) {
            match state.put(&key, record).await {
                Ok(()) => {}
                Err(e) if config.snapshot.is_some() => {
                    tracing::warn!("recording this member in the cluster: {e}")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(state)
    }

    /// Writes the cache to its snapshot file now (at shutdown).
    pub fn save_snapshot(&self, path: &std::path::Path) {
        if let Err(e) = crate::snapshot::save(path, &self.shared) {
            tracing::warn!("saving the cluster state to {}: {e}", path.display());
        }
    }

    /// A client of this member's etcd (membership, leases).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The cluster's key prefix (`/kante/<cluster>/`).
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The cached keys under `dir` (relative, ending with `/`), with
    /// `dir` cut off, and their values.
    pub fn cached_dir(&self, dir: &str) -> Vec<(String, Vec<u8>)> {
        self.shared
            .cache()
            .dir(dir)
            .map(|(k, e)| (k.to_string(), e.value.clone()))
            .collect()
    }

    /// The etcd revision the cache is current at.
    pub fn cache_revision(&self) -> i64 {
        self.shared.revision()
    }

    /// Whether the cache is being kept current (false while etcd is
    /// unreachable: reads then answer from the last view).
    pub fn is_watching(&self) -> bool {
        self.shared.watching.load(Ordering::Relaxed)
    }

    /// How long the cache has not been kept current (the age of the view
    /// reads answer from), or `None` while the watch keeps it current.
    pub fn stale_for(&self) -> Option<Duration> {
        if self.is_watching() {
            return None;
        }
        let since = self.shared.stale_since.load(Ordering::Relaxed);
        Some(Duration::from_millis(now_ms().saturating_sub(since)))
    }

    /// How often the cache was reloaded whole because the watch could not
    /// resume where it stopped (its revision compacted meanwhile).
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Waits until the cache has every change up to `revision` (so a
    /// write is read back by the member that made it). Bounded: past the
    /// timeout the write stands and its reader may see it a little late.
    pub(crate) async fn caught_up(&self, revision: i64) {
        let mut rx = self.shared.revision.subscribe();
        let waited = tokio::time::timeout(self.timeout, rx.wait_for(|r| *r >= revision)).await;
        if waited.is_err() {
            tracing::warn!(revision, "the cluster cache lags behind a write");
        }
    }

    /// The full etcd key of relative key `key`.
    pub(crate) fn key(&self, key: &str) -> String {
        format!("{}{key}", self.shared.prefix)
    }

    /// Reads `key` (relative) from etcd itself, not the cache.
    pub(crate) async fn get_live(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = self.key(key);
        let mut resp: GetResponse = reading(self.timeout, || {
            let (mut kv, key) = (self.client.kv_client(), key.clone());
            async move { kv.get(key, None).await }
        })
        .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// Reads every key under `dir` (relative) from etcd itself, with the
    /// revision of the read.
    pub(crate) async fn dir_live(&self, dir: &str) -> Result<(Vec<KeyValue>, i64)> {
        let dir = self.key(dir);
        let mut resp: GetResponse = reading(self.timeout, || {
            let (mut kv, dir) = (self.client.kv_client(), dir.clone());
            async move { kv.get(dir, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok((resp.take_kvs(), revision))
    }

    /// Runs a write once a linearizable read has shown that etcd has a
    /// quorum, both within one timeout. A write sent straight to a member
    /// that just lost its quorum (a leader that has not stepped down yet)
    /// sits in its log and is applied when the quorum returns, long after
    /// its caller was told it failed; the read before it fails instead,
    /// with no effect, and is tried again while the failure is transient
    /// (a leader election after a member stopped, as in a rolling restart).
    pub(crate) async fn quorate<T>(
        &self,
        write: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let start = tokio::time::Instant::now();
        let probe = self.key(keys::CONFIG);
        reading(self.timeout, || {
            let (mut kv, probe) = (self.client.kv_client(), probe.clone());
            async move {
                kv.get(probe, Some(GetOptions::new().with_count_only()))
                    .await
            }
        })
        .await?;
        writing(self.timeout.saturating_sub(start.elapsed()), write).await
    }

    /// Runs a transaction; when it succeeded, waits for the cache to hold
    /// its effect (`changes`: whether its success branch writes).
    pub(crate) async fn txn(&self, txn: Txn, changes: bool) -> Result<TxnResponse> {
        let resp = self.quorate(self.client.kv_client().txn(txn)).await?;
        if resp.succeeded() && changes {
            if let Some(h) = resp.header() {
                self.caught_up(h.revision()).await;
            }
        }
        Ok(resp)
    }

    /// Writes `key` (relative) unconditionally.
    pub(crate) async fn put(&self, key: &str, value: Vec<u8>) -> Result<()> {
        let resp = self
            .quorate(
                self.client
                    .kv_client()
                    .put(self.key(key), value, None::<PutOptions>),
            )
            .await?;
        if let Some(h) = resp.header() {
            self.caught_up(h.revision()).await;
        }
        Ok(())
    }
}

/// Awaits a call to etcd for at most `timeout`; a late or failed call is
/// [`StoreError::Unavailable`].
pub(crate) async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StoreError::Unavailable(describe(&e))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "etcd did not answer within {timeout:?}"
        ))),
    }
}

/// Awaits a write to etcd for at most `timeout`, like [`bounded`], but
/// says when its outcome is unknown: a write that was sent and then timed
/// out or lost its connection may still be committed (etcd applies it
/// when its quorum returns, or already has and the answer was lost), so
/// the caller must look before trying again. Only an answer in which etcd
/// itself refused the write (a bad request, an authentication failure, a
/// lost compare) is a failure with no effect.
pub(crate) async fn writing<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    const UNKNOWN: &str = "the change's result is unknown: it may still be applied, \
        so check before trying again";
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if refused(&e) => Err(StoreError::Unavailable(describe(&e))),
        Ok(Err(e)) => Err(StoreError::Unavailable(format!(
            "{}; {UNKNOWN}",
            describe(&e)
        ))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "etcd did not confirm the change within {timeout:?}; {UNKNOWN}"
        ))),
    }
}

/// Whether etcd answered a write by refusing it, so that it had no
/// effect: a gRPC status that etcd gives only before applying.
fn refused(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::OutOfRange
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::ResourceExhausted
                | Code::NotFound
                | Code::AlreadyExists
                | Code::Unimplemented
        ),
        // Options the client itself rejects before sending anything.
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => true,
        _ => false,
    }
}

/// A read from etcd (safe to repeat), tried again while it fails
/// transiently ([`transient`]), all within `timeout`.
pub(crate) async fn reading<T, F, Fut>(timeout: Duration, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let attempts = async {
        loop {
            match call().await {
                Err(e) if transient(&e) => {
                    tracing::debug!(
                        "etcd read failed transiently, trying again: {}",
                        describe(&e)
                    );
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    };
    bounded(timeout, attempts).await
}

/// The pause between tries of a transiently failed read.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Whether an etcd error may pass by itself: no leader for the moment
/// (an election), a leader that changed under a linearizable read, an
/// endpoint that went away (the client goes on with the others).
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// An etcd client error in a few words.
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            format!("etcd: {} ({:?})", s.message(), s.code())
        }
        other => format!("etcd: {other}"),
    }
}

/// Whether etcd answers a read with `config` (bounded by its timeout).
pub(crate) async fn probe(config: &EtcdConfig) -> Result<()> {
    let options = config.options()?;
    let client = bounded(
        config.timeout,
        Client::connect(config.endpoint_urls(), Some(options)),
    )
    .await?;
    bounded(config.timeout, client.kv_client().get("probe", None)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, "x"))
    }

    #[tokio::test]
    async fn a_write_that_times_out_is_reported_as_of_unknown_result() {
        let never = std::future::pending::<std::result::Result<(), etcd_client::Error>>();
        let e = writing(Duration::from_millis(20), never).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("result is unknown"), "{text}");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_write_etcd_refused_is_not_of_unknown_result_but_a_lost_one_is() {
        let refused = async { Err::<(), _>(status(tonic::Code::InvalidArgument)) };
        let text = writing(Duration::from_secs(1), refused)
            .await
            .unwrap_err()
            .to_string();
        assert!(!text.contains("unknown"), "{text}");
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Unknown,
        ] {
            let lost = async move { Err::<(), _>(status(code)) };
            let text = writing(Duration::from_secs(1), lost)
                .await
                .unwrap_err()
                .to_string();
            assert!(text.contains("result is unknown"), "{code:?}: {text}");
        }
        let ok = async { Ok::<u8, etcd_client::Error>(7) };
        assert_eq!(writing(Duration::from_secs(1), ok).await.unwrap(), 7);
    }
}
