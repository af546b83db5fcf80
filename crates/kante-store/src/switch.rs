//! [`SwitchState`]: the [`SharedState`] handle the engine holds, which a
//! member switches once, at run time, from its own SQLite database to a
//! cluster's store (`kante cluster enable` or `join` without a restart).
//! Every call goes to the current store. In a cluster, the server config
//! keys that belong to one member ([`MEMBER_LOCAL_KEYS`]: its addresses)
//! stay in the local database, as LXD keeps them node-local: `config_all`
//! merges them over the cluster's, `config_replace` splits them off.
//! The engine takes its member name right after a switch (its
//! `Location` handle); a reservation asked for by `none` (a call that
//! began before the switch) is held by this member's name in the
//! cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::state::{Member, ReservationKind, SharedState};
use crate::{AliasRow, CertificateRow, ImageRow, NetworkRow, ProfileRow, Result};

/// Server config keys each member keeps for itself, never shared.
pub const MEMBER_LOCAL_KEYS: &[&str] = &[
    "core.https_address",
    "cluster.https_address",
    "core.metrics_address",
    "core.debug_address",
    "core.bgp_address",
    "core.storage_buckets_address",
    "storage.backups_volume",
    "storage.images_volume",
];

/// Whether `key` is one member's own (see [`MEMBER_LOCAL_KEYS`]).
pub fn is_member_local(key: &str) -> bool {
    MEMBER_LOCAL_KEYS.contains(&key)
}

/// A shared-state handle that can be switched from the local database to
/// a cluster's store once (see the module doc).
pub struct SwitchState {
    local: Arc<dyn SharedState>,
    /// The cluster's store and this member's name in it.
    current: RwLock<Option<(Arc<dyn SharedState>, String)>>,
}

impl SwitchState {
    /// Over the local database; `cluster` if this member already is in one.
    pub fn new(local: Arc<dyn SharedState>) -> SwitchState {
        SwitchState {
            local,
            current: RwLock::new(None),
        }
    }

    /// From now on every call goes to `cluster`, where this member is
    /// `member`.
    pub fn switch_to(&self, cluster: Arc<dyn SharedState>, member: &str) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some((cluster, member.into()));
    }

    /// `holder` as the current store knows it (see the module doc).
    fn holder(&self, holder: &str) -> String {
        match &*self.current.read().unwrap_or_else(|e| e.into_inner()) {
            Some((_, member)) if holder == crate::STANDALONE_MEMBER => member.clone(),
            _ => holder.to_string(),
        }
    }

    /// Whether calls go to a cluster's store.
    pub fn is_clustered(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The member's own database (its shared records as they were before
    /// it joined a cluster).
    pub fn local(&self) -> &Arc<dyn SharedState> {
        &self.local
    }

    fn cur(&self) -> Arc<dyn SharedState> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| self.local.clone())
    }
}

#[async_trait]
impl SharedState for SwitchState {
    async fn local_member(&self) -> Result<Member> {
        self.cur().local_member().await
    }
    async fn members(&self) -> Result<Vec<Member>> {
        self.cur().members().await
    }
    async fn reserve(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<()> {
        self.cur().reserve(kind, key, &self.holder(holder)).await
    }
    async fn release(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<bool> {
        self.cur().release(kind, key, &self.holder(holder)).await
    }
    async fn transfer(
        &self,
        kind: ReservationKind,
        key: &str,
        from: &str,
        to: &str,
    ) -> Result<bool> {
        let (from, to) = (self.holder(from), self.holder(to));
        self.cur().transfer(kind, key, &from, &to).await
    }
    async fn reservations(&self, kind: ReservationKind) -> Result<BTreeMap<String, String>> {
        self.cur().reservations(kind).await
    }
    async fn profile_create(&self, row: &ProfileRow) -> Result<()> {
        self.cur().profile_create(row).await
    }
    async fn profile_get(&self, name: &str) -> Result<Option<ProfileRow>> {
        self.cur().profile_get(name).await
    }
    async fn profile_list(&self) -> Result<Vec<ProfileRow>> {
        self.cur().profile_list().await
    }
    async fn profile_update(&self, row: &ProfileRow) -> Result<()> {
        self.cur().profile_update(row).await
    }
    async fn profile_rename(&self, name: &str, new: &str) -> Result<()> {
        self.cur().profile_rename(name, new).await
    }
    async fn profile_delete(&self, name: &str) -> Result<bool> {
        self.cur().profile_delete(name).await
    }
    async fn network_create(&self, row: &NetworkRow) -> Result<()> {
        self.cur().network_create(row).await
    }
    async fn network_get(&self, name: &str) -> Result<Option<NetworkRow>> {
        self.cur().network_get(name).await
    }
    async fn network_list(&self) -> Result<Vec<NetworkRow>> {
        self.cur().network_list().await
    }
    async fn network_update(&self, row: &NetworkRow) -> Result<()> {
        self.cur().network_update(row).await
    }
    async fn network_delete(&self, name: &str) -> Result<bool> {
        self.cur().network_delete(name).await
    }
    async fn image_create(&self, row: &ImageRow) -> Result<()> {
        self.cur().image_create(row).await
    }
    async fn image_get(&self, fp_or_prefix: &str) -> Result<Option<ImageRow>> {
        self.cur().image_get(fp_or_prefix).await
    }
    async fn image_list(&self) -> Result<Vec<ImageRow>> {
        self.cur().image_list().await
    }
    async fn image_update(&self, row: &ImageRow) -> Result<()> {
        self.cur().image_update(row).await
    }
    async fn image_delete(&self, fingerprint: &str) -> Result<bool> {
        self.cur().image_delete(fingerprint).await
    }
    async fn alias_create(&self, row: &AliasRow) -> Result<()> {
        self.cur().alias_create(row).await
    }
    async fn alias_get(&self, name: &str) -> Result<Option<AliasRow>> {
        self.cur().alias_get(name).await
    }
    async fn alias_list(&self) -> Result<Vec<AliasRow>> {
        self.cur().alias_list().await
    }
    async fn alias_update(&self, row: &AliasRow) -> Result<()> {
        self.cur().alias_update(row).await
    }
    async fn alias_rename(&self, old: &str, new: &str) -> Result<()> {
        self.cur().alias_rename(old, new).await
    }
    async fn alias_delete(&self, name: &str) -> Result<bool> {
        self.cur().alias_delete(name).await
    }
    async fn config_all(&self) -> Result<BTreeMap<String, String>> {
        let cur = self.cur();
        if Arc::ptr_eq(&cur, &self.local) {
            return self.local.config_all().await;
        }
        let mut all: BTreeMap<String, String> = cur
            .config_all()
            .await?
            .into_iter()
            .filter(|(k, _)| !is_member_local(k))
            .collect();
        for (k, v) in self.local.config_all().await? {
            if is_member_local(&k) {
                all.insert(k, v);
            }
        }
        Ok(all)
    }
    async fn config_replace(&self, config: &BTreeMap<String, String>) -> Result<()> {
        let cur = self.cur();
        if Arc::ptr_eq(&cur, &self.local) {
            return self.local.config_replace(config).await;
        }
        let (mine, shared): (BTreeMap<_, _>, BTreeMap<_, _>) = config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| is_member_local(k));
        cur.config_replace(&shared).await?;
        let mut local: BTreeMap<String, String> = self
            .local
            .config_all()
            .await?
            .into_iter()
            .filter(|(k, _)| !is_member_local(k))
            .collect();
        local.extend(mine);
        self.local.config_replace(&local).await
    }
    async fn certificate_create(&self, row: &CertificateRow) -> Result<()> {
        self.cur().certificate_create(row).await
    }
    async fn certificate_get(&self, fingerprint: &str) -> Result<Option<CertificateRow>> {
        self.cur().certificate_get(fingerprint).await
    }
    async fn certificate_list(&self) -> Result<Vec<CertificateRow>> {
        self.cur().certificate_list().await
    }
    async fn certificate_update(&self, row: &CertificateRow) -> Result<()> {
        self.cur().certificate_update(row).await
    }
    async fn certificate_delete(&self, fingerprint: &str) -> Result<bool> {
        self.cur().certificate_delete(fingerprint).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteState;

    #[tokio::test]
    async fn a_switch_sends_calls_to_the_cluster_and_keeps_member_keys_local() {
        let mem = || Arc::new(SqliteState::over(crate::Store::open_in_memory().unwrap()).unwrap());
        let (local, cluster) = (mem(), mem());
        let s = SwitchState::new(local.clone());
        let cfg = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        s.config_replace(&cfg(&[("core.https_address", "10.0.0.1:8443")]))
            .await
            .unwrap();
        assert!(!s.is_clustered());
        s.switch_to(cluster.clone(), "h1");
        assert!(s.is_clustered());
        s.reserve(ReservationKind::InstanceName, "c1", "none")
            .await
            .unwrap();
        let held = cluster
            .reservations(ReservationKind::InstanceName)
            .await
            .unwrap();
        assert_eq!(held.get("c1").map(String::as_str), Some("h1"));
        assert!(s
            .release(ReservationKind::InstanceName, "c1", "none")
            .await
            .unwrap());
        s.config_replace(&cfg(&[
            ("core.https_address", "10.0.0.2:8443"),
            ("images.auto_update_interval", "0"),
        ]))
        .await
        .unwrap();
        // The address stayed this member's; the rest went to the cluster.
        assert_eq!(
            local.config_all().await.unwrap(),
            cfg(&[("core.https_address", "10.0.0.2:8443")])
        );
        assert_eq!(
            cluster.config_all().await.unwrap(),
            cfg(&[("images.auto_update_interval", "0")])
        );
        assert_eq!(s.config_all().await.unwrap().len(), 2);
        s.profile_create(&crate::ProfileRow {
            name: "p".into(),
            description: String::new(),
            config: Default::default(),
            devices: Default::default(),
        })
        .await
        .unwrap();
        assert!(cluster.profile_get("p").await.unwrap().is_some());
        assert!(local.profile_get("p").await.unwrap().is_none());
    }
}
