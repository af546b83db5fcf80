//! `kante cluster enable NAME`: this host becomes a cluster of one. A CA
//! is made, this member's certificate signed with it, a one-member etcd
//! started on its cluster address, this host's shared records (profiles,
//! networks, image index and aliases, server config but its own
//! addresses, certificates) and reservations copied into etcd, and only
//! then the engine's state switched. Anything failing undoes it all: the
//! host stays standalone, its SQLite untouched.

use std::collections::BTreeMap;
use std::sync::Arc;

use kante_store::{is_member_local, ReservationKind, SharedState, STANDALONE_MEMBER};

use super::{check_name, reachable_host, ClusterError, Manager, MemberConfig, Result};
use crate::membership::{RosterEntry, ROSTER};

impl Manager {
    /// Makes a one-member cluster with this member named `name`, reached
    /// at `https_address` (`core.https_address`).
    pub async fn enable(&self, name: &str, https_address: &str) -> Result<()> {
        check_name(name)?;
        let mut tasks = self.tasks.lock().await;
        if self.current().is_some() {
            return Err(ClusterError::Conflict(
                "This server is already clustered".into(),
            ));
        }
        let host = reachable_host(https_address).ok_or_else(|| {
            ClusterError::Bad(format!(
                "Set core.https_address to an address the other members can reach (it is {https_address:?})"
            ))
        })?;
        super::join::preflight(&host)?;
        let ca = crate::ca::new_ca(super::CLUSTER_NAME).map_err(ClusterError::Internal)?;
        let me = crate::ca::issue(&ca, name, &host).map_err(ClusterError::Internal)?;
        let peer = format!(
            "https://{}:{}",
            crate::etcd_proc::url_host(&host),
            super::ETCD_PEER_PORT
        );
        let client = format!(
            "https://{}:{}",
            crate::etcd_proc::url_host(&host),
            super::ETCD_CLIENT_PORT
        );
        let config = MemberConfig {
            cluster: super::CLUSTER_NAME.into(),
            member: name.into(),
            address: https_address.into(),
            host,
            voter: true,
            endpoints: vec![client.clone()],
            initial_cluster: format!("{name}={peer}"),
            new_cluster: true,
        };
        let _ = std::fs::remove_dir_all(self.etcd_dir());
        let done = async {
            self.write_files(&config, &ca, &me)?;
            // Copy first, switch last: started without switching.
            self.start_unswitched(&mut tasks, config.clone()).await?;
            let (_, etcd) = self.clustered()?;
            let local = self.switch.local().clone();
            copy_shared(local.as_ref(), etcd.as_ref(), name).await?;
            self.register(&etcd, &config, client).await?;
            self.switch
                .switch_to(etcd.clone() as Arc<dyn SharedState>, name);
            Ok::<(), ClusterError>(())
        }
        .await;
        if let Err(e) = done {
            self.undo(&mut tasks).await;
            return Err(e);
        }
        tracing::info!(member = name, "cluster enabled");
        Ok(())
    }

    /// [`Manager::start`], waiting for etcd, without switching the state
    /// yet: the caller copies what it must first.
    pub(super) async fn start_unswitched(
        &self,
        tasks: &mut super::Tasks,
        config: MemberConfig,
    ) -> Result<()> {
        self.start(tasks, config, true, false).await
    }

    /// Writes this member's roster entry.
    pub(super) async fn register(
        &self,
        etcd: &crate::EtcdState,
        config: &MemberConfig,
        etcd_url: String,
    ) -> Result<()> {
        let entry = RosterEntry {
            name: config.member.clone(),
            address: config.address.clone(),
            voter: config.voter,
            etcd_url: if config.voter {
                etcd_url
            } else {
                String::new()
            },
            architecture: crate::membership::architecture(),
            certificate: self.identity.cert_pem.clone(),
        };
        put_json(etcd, &format!("{ROSTER}{}", entry.name), &entry).await
    }
}

/// Puts `value`'s JSON at relative key `key`.
pub(super) async fn put_json<T: serde::Serialize>(
    etcd: &crate::EtcdState,
    key: &str,
    value: &T,
) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| ClusterError::Internal(e.to_string()))?;
    etcd.put(key, bytes).await.map_err(ClusterError::from)
}

/// Copies `from`'s shared records into `to` where `to` has none of that
/// name (the cluster's own win), and this member's reservations, its
/// instance names held by `member`. A name clash of a reservation fails.
pub(super) async fn copy_shared(
    from: &dyn SharedState,
    to: &dyn SharedState,
    member: &str,
) -> Result<()> {
    for p in from.profile_list().await? {
        if to.profile_get(&p.name).await?.is_none() {
            to.profile_create(&p).await?;
        }
    }
    for n in from.network_list().await? {
        if to.network_get(&n.name).await?.is_none() {
            to.network_create(&n).await?;
        }
    }
    for i in from.image_list().await? {
        if to.image_get(&i.fingerprint).await?.is_none() {
            to.image_create(&i).await?;
        }
    }
    for a in from.alias_list().await? {
        if to.alias_get(&a.name).await?.is_none() {
            to.alias_create(&a).await?;
        }
    }
    for c in from.certificate_list().await? {
        if to.certificate_get(&c.fingerprint).await?.is_none() {
            to.certificate_create(&c).await?;
        }
    }
    let mut config: BTreeMap<String, String> = to.config_all().await?;
    let before = config.clone();
    for (k, v) in from.config_all().await? {
        if !is_member_local(&k) {
            config.entry(k).or_insert(v);
        }
    }
    if config != before {
        to.config_replace(&config).await?;
    }
    for kind in [
        ReservationKind::InstanceName,
        ReservationKind::IdBlock,
        ReservationKind::Address,
    ] {
        for (key, holder) in from.reservations(kind).await? {
            let holder = if holder == STANDALONE_MEMBER {
                member.to_string()
            } else {
                holder
            };
            match to.reserve(kind, &key, &holder).await {
                Ok(()) => {}
                // Id blocks and addresses are this host's own resources:
                // another member's use of the same key does not clash here.
                Err(kante_store::StoreError::Conflict(_))
                    if kind != ReservationKind::InstanceName =>
                {
                    tracing::warn!(kind = kind.as_str(), key, "already reserved in the cluster");
                }
                Err(kante_store::StoreError::Conflict(_)) => {
                    return Err(ClusterError::Conflict(format!(
                        "{} {key:?} is already used in the cluster",
                        kind.entity()
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
