//! Records of a received instance: which of the source's keys travel,
//! and a received snapshot's record (shared by a new copy, `sink.rs`, and
//! a refresh, `refresh.rs`).

use kante_api::ConfigMap;
use kante_store::{InstanceRow, SnapshotRow};

use super::proto;
use crate::instance::config;
use crate::util::fmt_time;

/// The volatile keys that travel with an instance (lxc sends them all on a
/// move): its MACs, its image, its identity, where an evacuation took it
/// from (`evacuate.rs`). The others (id maps, last
/// state, templates to apply) are this server's.
pub(super) fn travels(key: &str) -> bool {
    !key.starts_with("volatile.")
        || key.ends_with(".hwaddr")
        || key == "volatile.base_image"
        || key == "volatile.uuid"
        || key == crate::evacuate::ORIGIN_KEY
}

/// A received snapshot's record.
pub(super) fn snapshot_row(instance: &str, row: &InstanceRow, s: &proto::Snapshot) -> SnapshotRow {
    let time = |secs: Option<i64>| {
        secs.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(fmt_time)
            .unwrap_or_else(|| fmt_time(kante_api::zero_time()))
    };
    // As the instance's: the volatile keys that travel, and a MAC only
    // where the instance kept it (a move), never the source's on a copy.
    let config: ConfigMap = s
        .local_config
        .iter()
        .filter(|c| travels(&c.key))
        .filter(|c| !c.key.ends_with(".hwaddr") || row.config.get(&c.key) == Some(&c.value))
        .map(|c| (c.key.clone(), c.value.clone()))
        .collect();
    SnapshotRow {
        instance: instance.into(),
        name: s.name.clone(),
        created_at: match s.creation_date {
            Some(_) => time(s.creation_date),
            None => fmt_time(kante_api::now()),
        },
        expires_at: time(s.expiry_date),
        stateful: false,
        architecture: if s.architecture == 0 {
            row.architecture.clone()
        } else {
            proto::arch_name(s.architecture)
        },
        ephemeral: s.ephemeral,
        description: s.description.clone().unwrap_or_default(),
        config,
        devices: snapshot_devices(row, s),
        profiles: s.profiles.clone(),
    }
}

/// A received snapshot's devices: the source's, with the root disk on
/// the pool its tree now lives in (the instance's local root disk, which
/// lxc's `-s POOL` adds; a snapshot without one gets it, or a restore
/// would look for the tree in the profile's pool).
fn snapshot_devices(row: &InstanceRow, s: &proto::Snapshot) -> kante_api::DevicesMap {
    let mut devices: kante_api::DevicesMap = s
        .local_devices
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.config
                    .iter()
                    .map(|c| (c.key.clone(), c.value.clone()))
                    .collect(),
            )
        })
        .collect();
    if let Some((name, root)) = config::root_disk(&row.devices) {
        let own = config::root_disk(&devices).map(|(n, _)| n.clone());
        match own {
            Some(n) => {
                if let (Some(d), Some(pool)) = (devices.get_mut(&n), root.get("pool")) {
                    d.insert("pool".into(), pool.clone());
                }
            }
            None => {
                devices.insert(name.clone(), root.clone());
            }
        }
    }
    devices
}
