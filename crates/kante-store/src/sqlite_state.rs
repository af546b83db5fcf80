//! The standalone implementation of both state traits: one SQLite
//! [`Store`] behind a mutex. Writes go to a thread of their own, so async
//! callers never block the runtime on a commit or a checkpoint's sync.
//! Reads run on the caller's thread when the store is free (a small
//! database in the page cache answers in microseconds, less than the two
//! thread wake-ups of a round trip) and queue behind the writes when not.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::state::{Member, NodeState, ReservationKind, SharedState, STANDALONE_MEMBER};
use crate::{
    AliasRow, BackupRow, CertificateRow, ImageRow, InstanceRow, NetworkRow, PoolRow, ProfileRow,
    Result, SnapshotRow, Store, StoreError, VolumeRow,
};

type Job = Box<dyn FnOnce(&Store) + Send>;

/// [`NodeState`] and [`SharedState`] over one SQLite database.
pub struct SqliteState {
    jobs: mpsc::Sender<Job>,
    store: Arc<Mutex<Store>>,
}

/// The store, even after a job panicked holding it: each call is one
/// statement or transaction, so it is consistent either way.
fn guard(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqliteState {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteState> {
        SqliteState::over(Store::open(path)?)
    }

    /// Serves `store` from a thread of its own, which ends with the last
    /// handle.
    pub fn over(store: Store) -> Result<SqliteState> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let store = Arc::new(Mutex::new(store));
        let shared = store.clone();
        std::thread::Builder::new()
            .name("kante-state".into())
            .spawn(move || {
                for job in queue {
                    // A job that panics fails its caller (its reply is
                    // dropped), not the thread.
                    let s = guard(&shared);
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&s)));
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(SqliteState { jobs, store })
    }

    /// Runs read-only `f` right here if the store is free, else on the
    /// store's thread behind what is queued there.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let f = match self.store.try_lock() {
            Ok(s) => return f(&s),
            Err(std::sync::TryLockError::Poisoned(e)) => return f(&e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => f,
        };
        self.call(f).await
    }

    /// Runs `f` on the store's thread.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Runs a [`Store`] method on the state thread, with owned copies of the
/// named arguments.
macro_rules! on_thread {
    ($self:ident, $($arg:ident),* => |$s:ident| $body:expr) => {{
        $(let $arg = $arg.to_owned();)*
        $self.call(move |$s: &Store| $body).await
    }};
}

/// Runs a read-only [`Store`] method (see [`SqliteState::read`]).
macro_rules! read {
    ($self:ident, $($arg:ident),* => |$s:ident| $body:expr) => {{
        $(let $arg = $arg.to_owned();)*
        $self.read(move |$s: &Store| $body).await
    }};
}

#[async_trait]
impl NodeState for SqliteState {
    async fn instance_create(&self, row: &InstanceRow) -> Result<()> {
        on_thread!(self, row => |s| s.instance_create(&row))
    }
    async fn instance_create_pending(&self, row: &InstanceRow) -> Result<()> {
        on_thread!(self, row => |s| s.instance_create_pending(&row))
    }
    async fn instance_created(&self, name: &str) -> Result<()> {
        on_thread!(self, name => |s| s.instance_created(&name))
    }
    async fn instances_pending(&self) -> Result<Vec<String>> {
        read!(self, => |s| s.instances_pending())
    }
    async fn instance_get(&self, name: &str) -> Result<Option<InstanceRow>> {
        read!(self, name => |s| s.instance_get(&name))
    }
    async fn instance_list(&self) -> Result<Vec<InstanceRow>> {
        read!(self, => |s| s.instance_list())
    }
    async fn instance_names(&self) -> Result<Vec<String>> {
        read!(self, => |s| s.instance_names())
    }
    async fn instance_update(&self, row: &InstanceRow) -> Result<()> {
        on_thread!(self, row => |s| s.instance_update(&row))
    }
    async fn instance_rename(&self, old: &str, new: &str) -> Result<()> {
        on_thread!(self, old, new => |s| s.instance_rename(&old, &new))
    }
    async fn instance_delete(&self, name: &str) -> Result<bool> {
        on_thread!(self, name => |s| s.instance_delete(&name))
    }
    async fn instances_rename_profile(&self, old: &str, new: &str) -> Result<()> {
        on_thread!(self, old, new => |s| s.instances_rename_profile(&old, &new))
    }

    async fn snapshot_create(&self, row: &SnapshotRow) -> Result<()> {
        on_thread!(self, row => |s| s.snapshot_create(&row))
    }
    async fn snapshot_get(&self, instance: &str, name: &str) -> Result<Option<SnapshotRow>> {
        read!(self, instance, name => |s| s.snapshot_get(&instance, &name))
    }
    async fn snapshot_list(&self, instance: &str) -> Result<Vec<SnapshotRow>> {
        read!(self, instance => |s| s.snapshot_list(&instance))
    }
    async fn snapshot_list_all(&self) -> Result<Vec<SnapshotRow>> {
        read!(self, => |s| s.snapshot_list_all())
    }
    async fn snapshot_rename(&self, instance: &str, old: &str, new: &str) -> Result<()> {
        on_thread!(self, instance, old, new => |s| s.snapshot_rename(&instance, &old, &new))
    }
    async fn snapshot_set_expiry(
        &self,
        instance: &str,
        name: &str,
        expires_at: &str,
    ) -> Result<()> {
        on_thread!(self, instance, name, expires_at =>
            |s| s.snapshot_set_expiry(&instance, &name, &expires_at))
    }
    async fn snapshot_delete(&self, instance: &str, name: &str) -> Result<bool> {
        on_thread!(self, instance, name => |s| s.snapshot_delete(&instance, &name))
    }

    async fn pool_create(&self, row: &PoolRow) -> Result<()> {
        on_thread!(self, row => |s| s.pool_create(&row))
    }
    async fn pool_get(&self, name: &str) -> Result<Option<PoolRow>> {
        read!(self, name => |s| s.pool_get(&name))
    }
    async fn pool_list(&self) -> Result<Vec<PoolRow>> {
        read!(self, => |s| s.pool_list())
    }
    async fn pool_update(&self, row: &PoolRow) -> Result<()> {
        on_thread!(self, row => |s| s.pool_update(&row))
    }
    async fn pool_delete(&self, name: &str) -> Result<bool> {
        on_thread!(self, name => |s| s.pool_delete(&name))
    }

    async fn volume_put(&self, row: &VolumeRow) -> Result<()> {
        on_thread!(self, row => |s| s.volume_put(&row))
    }
    async fn volume_create_pending(&self, row: &VolumeRow) -> Result<()> {
        on_thread!(self, row => |s| s.volume_create_pending(&row))
    }
    async fn volume_created(&self, pool: &str, name: &str) -> Result<()> {
        on_thread!(self, pool, name => |s| s.volume_created(&pool, &name))
    }
    async fn volume_deleting(&self, pool: &str, name: &str) -> Result<bool> {
        on_thread!(self, pool, name => |s| s.volume_deleting(&pool, &name))
    }
    async fn volumes_pending(&self) -> Result<Vec<(String, String)>> {
        read!(self, => |s| s.volumes_pending())
    }
    async fn volume_delete_stale(&self, pool: &str, name: &str) -> Result<bool> {
        on_thread!(self, pool, name => |s| s.volume_delete_stale(&pool, &name))
    }
    async fn volume_get(&self, pool: &str, name: &str) -> Result<Option<VolumeRow>> {
        read!(self, pool, name => |s| s.volume_get(&pool, &name))
    }
    async fn volume_list(&self, pool: &str) -> Result<Vec<VolumeRow>> {
        read!(self, pool => |s| s.volume_list(&pool))
    }
    async fn volume_rename(&self, pool: &str, old: &str, new: &str) -> Result<()> {
        on_thread!(self, pool, old, new => |s| s.volume_rename(&pool, &old, &new))
    }
    async fn volume_delete(&self, pool: &str, name: &str) -> Result<bool> {
        on_thread!(self, pool, name => |s| s.volume_delete(&pool, &name))
    }

    async fn backup_create_pending(&self, row: &BackupRow) -> Result<()> {
        on_thread!(self, row => |s| s.backup_create_pending(&row))
    }
    async fn backup_created(&self, instance: &str, name: &str) -> Result<()> {
        on_thread!(self, instance, name => |s| s.backup_created(&instance, &name))
    }
    async fn backup_put(&self, row: &BackupRow) -> Result<()> {
        on_thread!(self, row => |s| s.backup_put(&row))
    }
    async fn backup_get(&self, instance: &str, name: &str) -> Result<Option<BackupRow>> {
        read!(self, instance, name => |s| s.backup_get(&instance, &name))
    }
    async fn backup_list(&self, instance: &str) -> Result<Vec<BackupRow>> {
        read!(self, instance => |s| s.backup_list(&instance))
    }
    async fn backup_list_all(&self) -> Result<Vec<BackupRow>> {
        read!(self, => |s| s.backup_list_all())
    }
    async fn backups_pending(&self) -> Result<Vec<(String, String)>> {
        read!(self, => |s| s.backups_pending())
    }
    async fn backup_rename(&self, instance: &str, old: &str, new: &str) -> Result<()> {
        on_thread!(self, instance, old, new => |s| s.backup_rename(&instance, &old, &new))
    }
    async fn backup_delete(&self, instance: &str, name: &str) -> Result<bool> {
        on_thread!(self, instance, name => |s| s.backup_delete(&instance, &name))
    }
}

#[async_trait]
impl SharedState for SqliteState {
    async fn local_member(&self) -> Result<Member> {
        Ok(Member {
            name: STANDALONE_MEMBER.into(),
            address: String::new(),
        })
    }
    async fn members(&self) -> Result<Vec<Member>> {
        Ok(vec![self.local_member().await?])
    }

    async fn reserve(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<()> {
        on_thread!(self, key, holder => |s| s.reserve(kind, &key, &holder))
    }
    async fn release(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<bool> {
        on_thread!(self, key, holder => |s| s.release(kind, &key, &holder))
    }
    async fn transfer(
        &self,
        kind: ReservationKind,
        key: &str,
        from: &str,
        to: &str,
    ) -> Result<bool> {
        on_thread!(self, key, from, to => |s| s.transfer(kind, &key, &from, &to))
    }
    async fn reservations(&self, kind: ReservationKind) -> Result<BTreeMap<String, String>> {
        let rows = read!(self, => |s| s.reservations(kind))?;
        Ok(rows.into_iter().map(|r| (r.key, r.holder)).collect())
    }

    async fn profile_create(&self, row: &ProfileRow) -> Result<()> {
        on_thread!(self, row => |s| s.profile_create(&row))
    }
    async fn profile_get(&self, name: &str) -> Result<Option<ProfileRow>> {
        read!(self, name => |s| s.profile_get(&name))
    }
    async fn profile_list(&self) -> Result<Vec<ProfileRow>> {
        read!(self, => |s| s.profile_list())
    }
    async fn profile_update(&self, row: &ProfileRow) -> Result<()> {
        on_thread!(self, row => |s| s.profile_update(&row))
    }
    async fn profile_rename(&self, name: &str, new: &str) -> Result<()> {
        on_thread!(self, name, new => |s| s.profile_rename(&name, &new))
    }
    async fn profile_delete(&self, name: &str) -> Result<bool> {
        on_thread!(self, name => |s| s.profile_delete(&name))
    }

    async fn network_create(&self, row: &NetworkRow) -> Result<()> {
        on_thread!(self, row => |s| s.network_create(&row))
    }
    async fn network_get(&self, name: &str) -> Result<Option<NetworkRow>> {
        read!(self, name => |s| s.network_get(&name))
    }
    async fn network_list(&self) -> Result<Vec<NetworkRow>> {
        read!(self, => |s| s.network_list())
    }
    async fn network_update(&self, row: &NetworkRow) -> Result<()> {
        on_thread!(self, row => |s| s.network_update(&row))
    }
    async fn network_delete(&self, name: &str) -> Result<bool> {
        on_thread!(self, name => |s| s.network_delete(&name))
    }

    async fn image_create(&self, row: &ImageRow) -> Result<()> {
        on_thread!(self, row => |s| s.image_create(&row))
    }
    async fn image_get(&self, fp_or_prefix: &str) -> Result<Option<ImageRow>> {
        read!(self, fp_or_prefix => |s| s.image_get(&fp_or_prefix))
    }
    async fn image_list(&self) -> Result<Vec<ImageRow>> {
        read!(self, => |s| s.image_list())
    }
    async fn image_update(&self, row: &ImageRow) -> Result<()> {
        on_thread!(self, row => |s| s.image_update(&row))
    }
    async fn image_delete(&self, fingerprint: &str) -> Result<bool> {
        on_thread!(self, fingerprint => |s| s.image_delete(&fingerprint))
    }
    async fn alias_create(&self, row: &AliasRow) -> Result<()> {
        on_thread!(self, row => |s| s.alias_create(&row))
    }
    async fn alias_get(&self, name: &str) -> Result<Option<AliasRow>> {
        read!(self, name => |s| s.alias_get(&name))
    }
    async fn alias_list(&self) -> Result<Vec<AliasRow>> {
        read!(self, => |s| s.alias_list())
    }
    async fn alias_update(&self, row: &AliasRow) -> Result<()> {
        on_thread!(self, row => |s| s.alias_update(&row))
    }
    async fn alias_rename(&self, old: &str, new: &str) -> Result<()> {
        on_thread!(self, old, new => |s| s.alias_rename(&old, &new))
    }
    async fn alias_delete(&self, name: &str) -> Result<bool> {
        on_thread!(self, name => |s| s.alias_delete(&name))
    }

    async fn config_all(&self) -> Result<BTreeMap<String, String>> {
        read!(self, => |s| s.config_all())
    }
    async fn config_replace(&self, config: &BTreeMap<String, String>) -> Result<()> {
        on_thread!(self, config => |s| s.config_replace(&config))
    }

    async fn certificate_create(&self, row: &CertificateRow) -> Result<()> {
        on_thread!(self, row => |s| s.certificate_create(&row))
    }
    async fn certificate_get(&self, fingerprint: &str) -> Result<Option<CertificateRow>> {
        read!(self, fingerprint => |s| s.certificate_get(&fingerprint))
    }
    async fn certificate_list(&self) -> Result<Vec<CertificateRow>> {
        read!(self, => |s| s.certificate_list())
    }
    async fn certificate_update(&self, row: &CertificateRow) -> Result<()> {
        on_thread!(self, row => |s| s.certificate_update(&row))
    }
    async fn certificate_delete(&self, fingerprint: &str) -> Result<bool> {
        on_thread!(self, fingerprint => |s| s.certificate_delete(&fingerprint))
    }
}
