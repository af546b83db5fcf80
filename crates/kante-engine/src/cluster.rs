//! The cluster verbs (`/1.0/cluster`, `/1.0/cluster/members`, and the
//! joining member's `POST /internal/cluster/accept`), over kante-cluster's
//! [`kante_cluster::Manager`], which holds this member's part in a
//! cluster (its etcd, its heartbeat, the switch of the shared state; see
//! ARCHITECTURE.md, *Cluster mode*). Enabling and joining run as
//! operations, as in LXD; the checks that need no cluster are made first,
//! so bad input fails at once.

use std::sync::Arc;

use kante_api::cluster::{ClusterMembersPost, ClusterPut};
use kante_api::operation::OperationClass;
use kante_cluster::ClusterError;
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::front::{Reply, Request};
use crate::operations::Op;
use crate::Engine;

/// A cluster error as the API reports it.
pub(crate) fn err(e: ClusterError) -> EngineError {
    match e {
        ClusterError::Bad(m) => EngineError::BadRequest(m),
        ClusterError::Forbidden(m) => EngineError::Forbidden(m),
        ClusterError::NotFound(m) => EngineError::NotFound(m),
        ClusterError::Conflict(m) => EngineError::Conflict(m),
        ClusterError::Unavailable(m) => EngineError::Unavailable(m),
        ClusterError::Internal(m) => EngineError::Internal(m),
    }
}

impl Engine {
    /// One cluster verb.
    pub(crate) async fn cluster_api(&self, req: Request) -> Result<Reply> {
        use Request::*;
        Ok(match req {
            ClusterGet => Reply::Cluster(Box::new(self.cluster.cluster_get())),
            ClusterPut(put) => Reply::Operation(self.cluster_put(*put).await?),
            ClusterMembers => Reply::ClusterMembers(self.cluster.members().map_err(err)?),
            ClusterMemberGet { name } => {
                Reply::ClusterMember(Box::new(self.cluster.member(&name).map_err(err)?))
            }
            ClusterMemberDelete { name, force } => {
                self.cluster.remove(&name, force).await.map_err(err)?;
                // Its numbers in overlays are free for a later member.
                crate::network_overlay_slices::release_member(&*self.shared, &name).await;
                Reply::Empty
            }
            ClusterMemberAdd(post) => Reply::Operation(self.cluster_token(post).await?),
            ClusterAccept(post) => {
                Reply::ClusterAccepted(Box::new(self.cluster.accept(*post).await.map_err(err)?))
            }
            ServiceList => Reply::Services(self.cluster.services()),
            ClusterMemberPut { name, put } => {
                self.cluster_member_put(&name, put).await?;
                Reply::Empty
            }
            ClusterGroups => Reply::ClusterGroups(self.cluster.groups().map_err(err)?),
            ClusterGroupGet { name } => {
                Reply::ClusterGroup(Box::new(self.cluster.group(&name).map_err(err)?))
            }
            ClusterGroupCreate(g) => {
                self.cluster.group_create(g).await.map_err(err)?;
                Reply::Empty
            }
            ClusterGroupUpdate { name, put } => {
                self.cluster.group_update(&name, put).await.map_err(err)?;
                Reply::Empty
            }
            ClusterGroupRename { name, new } => {
                self.cluster.group_rename(&name, &new).await.map_err(err)?;
                Reply::Empty
            }
            ClusterGroupDelete { name } => {
                self.cluster.group_delete(&name).await.map_err(err)?;
                Reply::Empty
            }
            other => {
                return Err(EngineError::internal(format!(
                    "{} is not a cluster verb",
                    other.name()
                )))
            }
        })
    }

    /// `PUT /1.0/cluster/members/NAME`: Kante keeps each member's groups
    /// (`lxc cluster group assign`); the other fields must be as the member
    /// shows them (a change there is refused, not dropped).
    async fn cluster_member_put(
        &self,
        name: &str,
        put: kante_api::cluster::ClusterMemberPut,
    ) -> Result<()> {
        let now = self.cluster.member(name).map_err(err)?;
        let roles_same = {
            let (mut a, mut b) = (put.roles.clone(), now.roles.clone());
            a.sort();
            b.sort();
            a == b
        };
        let domain_same = put.failure_domain.is_empty() || put.failure_domain == now.failure_domain;
        if !roles_same
            || !domain_same
            || put.description != now.description
            || put.config != now.config
        {
            return Err(EngineError::bad(
                "Only a cluster member's groups can be changed (roles, failure domain, description and config are fixed)",
            ));
        }
        self.cluster
            .set_member_groups(name, &put.groups)
            .await
            .map_err(err)
    }

    /// This member's HTTPS address, which clustering needs.
    async fn https_address(&self) -> Result<String> {
        let config = self.shared.config_all().await?;
        let address = config
            .get("core.https_address")
            .cloned()
            .unwrap_or_default();
        if kante_cluster::reachable_host(&address).is_none() {
            return Err(EngineError::bad(format!(
                "Clustering needs core.https_address set to an address the other members can reach (it is {address:?})"
            )));
        }
        Ok(address)
    }

    /// `PUT /1.0/cluster`: enable (`server_name`, `enabled`) or join
    /// (`cluster_token`). Disabling is not offered.
    async fn cluster_put(&self, put: ClusterPut) -> Result<Arc<Op>> {
        if self.cluster.member_name().is_some() {
            return Err(EngineError::Conflict(
                "This server is already clustered".into(),
            ));
        }
        if !put.enabled {
            return Err(EngineError::NotImplemented(
                "Leaving a cluster is not supported yet".into(),
            ));
        }
        let address = self.https_address().await?;
        let cluster = self.cluster.clone();
        let op = if put.cluster_token.is_empty() {
            kante_cluster::check_name(&put.server_name).map_err(err)?;
            let op = self.ops.create(
                OperationClass::Task,
                "Enabling clustering",
                Default::default(),
            );
            let name = put.server_name;
            let location = self.location.clone();
            self.ops.run(op.clone(), async move {
                cluster.enable(&name, &address).await.map_err(err)?;
                // From now on this member's records, events and
                // operations carry its name, without a restart.
                location.set(&name);
                Ok(())
            });
            op
        } else {
            kante_cluster::decode_token(&put.cluster_token).map_err(err)?;
            let op = self
                .ops
                .create(OperationClass::Task, "Joining cluster", Default::default());
            let (token, name) = (put.cluster_token, put.server_name);
            let location = self.location.clone();
            self.ops.run(op.clone(), async move {
                cluster.join(&token, &name, &address).await.map_err(err)?;
                if let Some(member) = cluster.member_name() {
                    location.set(&member);
                }
                Ok(())
            });
            op
        };
        Ok(op)
    }

    /// `POST /1.0/cluster/members`: a join token, as an operation of class
    /// `token` whose metadata lxc and kante turn into the token they print.
    async fn cluster_token(&self, post: ClusterMembersPost) -> Result<Arc<Op>> {
        let token = self.cluster.token(&post.server_name).await.map_err(err)?;
        let op = self.ops.create(
            OperationClass::Token,
            "Executing operation",
            Default::default(),
        );
        op.set_metadata(json!({
            "serverName": token.server_name,
            "secret": token.secret,
            "fingerprint": token.fingerprint,
            "addresses": token.addresses,
            "expiresAt": token.expires_at,
        }));
        let ttl = std::time::Duration::from_secs(kante_cluster::TOKEN_TTL as u64);
        self.ops.run(op.clone(), async move {
            tokio::time::sleep(ttl).await;
            Ok(())
        });
        Ok(op)
    }

    /// The daemon is stopping: this member's heartbeat is revoked (it is
    /// shown offline at once) and its etcd stopped. Called by kanted.
    pub async fn cluster_shutdown(&self) {
        self.cluster.shutdown().await;
    }
}
