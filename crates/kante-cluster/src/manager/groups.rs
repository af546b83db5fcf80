//! Cluster groups (LXD's `clustering_groups`): named sets of members that
//! `--target @NAME` places among. In shared state, `groups/<name>` holds a
//! group's description and `member-groups/<member>` the groups of a member
//! (no key: `default` alone, where every member starts). A member is always
//! in at least one group; `default` cannot be renamed or deleted, and only
//! an empty group can be deleted, as in LXD. Each change is one etcd
//! transaction, so no reader sees half of it; edits made at the same time
//! from two members are settled by the later one.

use std::collections::BTreeMap;

use etcd_client::{Txn, TxnOp};
use kante_api::cluster::{ClusterGroup, ClusterGroupPut};
use serde::{Deserialize, Serialize};

use super::{check_name, ClusterError, Manager, Result};
use crate::EtcdState;

/// The directory of the groups' records.
pub const GROUPS: &str = "groups/";
/// The directory of the members' group lists.
pub const MEMBER_GROUPS: &str = "member-groups/";
/// The group every member starts in.
pub const DEFAULT: &str = "default";

/// A group's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GroupRecord {
    description: String,
}

/// What shared state says of the groups: each group's record, each
/// member's groups.
struct Groups {
    records: BTreeMap<String, GroupRecord>,
    of: BTreeMap<String, Vec<String>>,
}

impl Groups {
    fn read(m: &Manager, etcd: &EtcdState) -> Groups {
        let mut records: BTreeMap<String, GroupRecord> = etcd
            .cached_dir(GROUPS)
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?)))
            .collect();
        records.entry(DEFAULT.into()).or_insert(GroupRecord {
            description: "Default cluster group".into(),
        });
        let lists: BTreeMap<String, Vec<String>> = etcd
            .cached_dir(MEMBER_GROUPS)
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?)))
            .collect();
        let of = m
            .roster(etcd)
            .into_iter()
            .map(|r| {
                let list = lists
                    .get(&r.name)
                    .cloned()
                    .filter(|l| !l.is_empty())
                    .unwrap_or_else(|| vec![DEFAULT.to_string()]);
                (r.name, list)
            })
            .collect();
        Groups { records, of }
    }

    fn group(&self, name: &str) -> Option<ClusterGroup> {
        let r = self.records.get(name)?;
        Some(ClusterGroup {
            name: name.to_string(),
            description: r.description.clone(),
            members: self
                .of
                .iter()
                .filter(|(_, l)| l.iter().any(|g| g == name))
                .map(|(m, _)| m.clone())
                .collect(),
        })
    }

    fn require(&self, name: &str) -> Result<()> {
        match self.records.contains_key(name) {
            true => Ok(()),
            false => Err(ClusterError::NotFound(format!(
                "Cluster group {name:?} not found"
            ))),
        }
    }

    fn require_member(&self, name: &str) -> Result<()> {
        match self.of.contains_key(name) {
            true => Ok(()),
            false => Err(ClusterError::NotFound(format!(
                "Cluster member {name:?} not found"
            ))),
        }
    }

    /// The writes that make `group`'s members exactly `members`; refuses
    /// to leave a member in no group.
    fn set_members(
        &mut self,
        group: &str,
        members: &[String],
    ) -> Result<Vec<(String, Vec<String>)>> {
        for m in members {
            self.require_member(m)?;
        }
        let mut changed = Vec::new();
        for (m, list) in self.of.iter_mut() {
            let want = members.contains(m);
            let has = list.iter().any(|g| g == group);
            if want == has {
                continue;
            }
            if want {
                list.push(group.to_string());
            } else {
                list.retain(|g| g != group);
                if list.is_empty() {
                    return Err(ClusterError::Bad(format!(
                        "Cluster member {m:?} has to belong to at least one group"
                    )));
                }
            }
            changed.push((m.clone(), list.clone()));
        }
        Ok(changed)
    }
}

fn put_list(etcd: &EtcdState, member: &str, list: &[String]) -> Result<TxnOp> {
    Ok(TxnOp::put(
        etcd.key(&format!("{MEMBER_GROUPS}{member}")),
        serde_json::to_vec(list).map_err(|e| ClusterError::Internal(e.to_string()))?,
        None,
    ))
}

fn put_group(etcd: &EtcdState, name: &str, description: &str) -> Result<TxnOp> {
    let record = GroupRecord {
        description: description.to_string(),
    };
    Ok(TxnOp::put(
        etcd.key(&format!("{GROUPS}{name}")),
        serde_json::to_vec(&record).map_err(|e| ClusterError::Internal(e.to_string()))?,
        None,
    ))
}

impl Manager {
    /// Every group, `default` first then by name, with its members.
    pub fn groups(&self) -> Result<Vec<ClusterGroup>> {
        let (_, etcd) = self.clustered()?;
        let g = Groups::read(self, &etcd);
        let mut out: Vec<ClusterGroup> = g.records.keys().filter_map(|n| g.group(n)).collect();
        out.sort_by_key(|x| (x.name != DEFAULT, x.name.clone()));
        Ok(out)
    }

    /// One group.
    pub fn group(&self, name: &str) -> Result<ClusterGroup> {
        let (_, etcd) = self.clustered()?;
        let g = Groups::read(self, &etcd);
        g.group(name)
            .ok_or_else(|| ClusterError::NotFound(format!("Cluster group {name:?} not found")))
    }

    /// Creates group `new.name` with its members (each keeps its other
    /// groups).
    pub async fn group_create(&self, new: ClusterGroup) -> Result<()> {
        let _serial = self.tasks.lock().await;
        let (_, etcd) = self.clustered()?;
        check_name(&new.name)?;
        let mut g = Groups::read(self, &etcd);
        if g.records.contains_key(&new.name) {
            return Err(ClusterError::Conflict(format!(
                "Cluster group {:?} already exists",
                new.name
            )));
        }
        let mut ops = vec![put_group(&etcd, &new.name, &new.description)?];
        for (m, list) in g.set_members(&new.name, &new.members)? {
            ops.push(put_list(&etcd, &m, &list)?);
        }
        self.commit(&etcd, ops).await
    }

    /// Sets group `name`'s description and members (`PUT`).
    pub async fn group_update(&self, name: &str, put: ClusterGroupPut) -> Result<()> {
        let _serial = self.tasks.lock().await;
        let (_, etcd) = self.clustered()?;
        let mut g = Groups::read(self, &etcd);
        g.require(name)?;
        let mut ops = vec![put_group(&etcd, name, &put.description)?];
        for (m, list) in g.set_members(name, &put.members)? {
            ops.push(put_list(&etcd, &m, &list)?);
        }
        self.commit(&etcd, ops).await
    }

    /// Renames group `name` to `new` (not `default`).
    pub async fn group_rename(&self, name: &str, new: &str) -> Result<()> {
        let _serial = self.tasks.lock().await;
        let (_, etcd) = self.clustered()?;
        check_name(new)?;
        let g = Groups::read(self, &etcd);
        g.require(name)?;
        if name == DEFAULT {
            return Err(ClusterError::Bad(
                "The default cluster group cannot be renamed".into(),
            ));
        }
        if g.records.contains_key(new) {
            return Err(ClusterError::Conflict(format!(
                "Cluster group {new:?} already exists"
            )));
        }
        let description = g.records[name].description.clone();
        let mut ops = vec![
            TxnOp::delete(etcd.key(&format!("{GROUPS}{name}")), None),
            put_group(&etcd, new, &description)?,
        ];
        for (m, list) in &g.of {
            if list.iter().any(|x| x == name) {
                let renamed: Vec<String> = list
                    .iter()
                    .map(|x| {
                        if x == name {
                            new.to_string()
                        } else {
                            x.clone()
                        }
                    })
                    .collect();
                ops.push(put_list(&etcd, m, &renamed)?);
            }
        }
        self.commit(&etcd, ops).await
    }

    /// Deletes group `name`: only an empty one, never `default`.
    pub async fn group_delete(&self, name: &str) -> Result<()> {
        let _serial = self.tasks.lock().await;
        let (_, etcd) = self.clustered()?;
        let g = Groups::read(self, &etcd);
        g.require(name)?;
        if name == DEFAULT {
            return Err(ClusterError::Bad(
                "The default cluster group cannot be deleted".into(),
            ));
        }
        let members = g.group(name).map(|x| x.members).unwrap_or_default();
        if !members.is_empty() {
            return Err(ClusterError::Bad(format!(
                "Only empty cluster groups can be removed: {name:?} holds {}",
                members.join(", ")
            )));
        }
        let ops = vec![TxnOp::delete(etcd.key(&format!("{GROUPS}{name}")), None)];
        self.commit(&etcd, ops).await
    }

    /// Puts member `name` in exactly `groups` (`PUT
    /// /1.0/cluster/members/NAME`, as `lxc cluster group assign` sends it):
    /// at least one, each existing.
    pub async fn set_member_groups(&self, name: &str, groups: &[String]) -> Result<()> {
        let _serial = self.tasks.lock().await;
        let (_, etcd) = self.clustered()?;
        let g = Groups::read(self, &etcd);
        g.require_member(name)?;
        if groups.is_empty() {
            return Err(ClusterError::Bad(format!(
                "Cluster member {name:?} has to belong to at least one group"
            )));
        }
        let mut list: Vec<String> = Vec::new();
        for x in groups {
            g.require(x)?;
            if !list.contains(x) {
                list.push(x.clone());
            }
        }
        if g.of.get(name) == Some(&list) {
            return Ok(());
        }
        let ops = vec![put_list(&etcd, name, &list)?];
        self.commit(&etcd, ops).await
    }

    /// Every member's groups, by member.
    pub(super) fn groups_by_member(&self, etcd: &EtcdState) -> BTreeMap<String, Vec<String>> {
        Groups::read(self, etcd).of
    }

    async fn commit(&self, etcd: &EtcdState, ops: Vec<TxnOp>) -> Result<()> {
        etcd.txn(Txn::new().and_then(ops), true).await?;
        Ok(())
    }
}
