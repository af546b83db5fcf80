//! Which host ids an unprivileged instance maps to.
//!
//! Root's range in /etc/subuid and /etc/subgid (LXD's default of 1000000 +
//! 1000000000 when there is none) is cut into blocks of 65536. Block 0 is
//! shared by every instance (as in LXD); `security.idmap.isolated=true`
//! gives an instance a block of its own, picked at start and kept in
//! `volatile.idmap.base`. Storage is unshifted (the rootfs is idmapped at
//! mount time), so moving an instance to another block chowns nothing.

use kante_api::ConfigMap;
use kante_runtime::IdMap;
use kante_store::{ReservationKind, StoreError};
use serde_json::json;

use crate::util::is_true;
use crate::{Engine, EngineError, Result};

/// Ids per instance (uid and gid 0..65535 inside).
pub const BLOCK: u32 = 65536;

/// Root's subordinate id range on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIdRange {
    pub uid: u32,
    pub gid: u32,
    /// Ids in both ranges (the smaller of the two counts).
    pub count: u32,
}

impl HostIdRange {
    /// From the text of /etc/subuid and /etc/subgid (either may be missing).
    pub fn from_files(subuid: Option<&str>, subgid: Option<&str>) -> HostIdRange {
        let root = |text: Option<&str>| -> Option<(u32, u32)> {
            text?.lines().find_map(|l| {
                let mut p = l.trim().split(':');
                if p.next()? != "root" {
                    return None;
                }
                let start: u32 = p.next()?.parse().ok()?;
                let count: u32 = p.next()?.parse().ok()?;
                (count >= BLOCK).then_some((start, count))
            })
        };
        match (root(subuid), root(subgid)) {
            (Some((uid, uc)), Some((gid, gc))) => HostIdRange {
                uid,
                gid,
                count: uc.min(gc),
            },
            _ => HostIdRange {
                uid: 1_000_000,
                gid: 1_000_000,
                count: 1_000_000_000,
            },
        }
    }

    pub fn system() -> HostIdRange {
        let read = |f: &str| std::fs::read_to_string(f).ok();
        HostIdRange::from_files(
            read("/etc/subuid").as_deref(),
            read("/etc/subgid").as_deref(),
        )
    }

    /// Block `k` of the range, if the range has it.
    pub fn block(&self, k: u32) -> Option<IdMap> {
        let offset = k.checked_mul(BLOCK)?;
        (offset.checked_add(BLOCK)? <= self.count).then(|| IdMap {
            host_uid: self.uid + offset,
            host_gid: self.gid + offset,
            size: BLOCK,
        })
    }

    /// The block every non-isolated instance shares.
    pub fn shared(&self) -> IdMap {
        self.block(0).expect("a range holds at least one block")
    }

    /// The block that starts at host uid `base`, if it is one of ours.
    fn block_at(&self, base: u32) -> Option<IdMap> {
        let offset = base.checked_sub(self.uid)?;
        (offset % BLOCK == 0).then(|| self.block(offset / BLOCK))?
    }

    /// The lowest block other than the shared one that no base in `used` holds.
    pub fn free_block(&self, used: &[u32]) -> Option<IdMap> {
        (1..self.count / BLOCK)
            .filter_map(|k| self.block(k))
            .find(|m| !used.contains(&m.host_uid))
    }
}

impl Engine {
    /// The id map `name` starts with: none when privileged, its own block
    /// when isolated (kept if still its alone, else a free one), else the
    /// shared block. Records it in `config` (`volatile.idmap.base`/`next`).
    pub(crate) async fn idmap_for_start(
        &self,
        name: &str,
        econfig: &ConfigMap,
        config: &mut ConfigMap,
    ) -> Result<Option<IdMap>> {
        if is_true(econfig.get("security.privileged")) {
            return Ok(None);
        }
        let map = if is_true(econfig.get("security.idmap.isolated")) {
            // Taken blocks: those reserved by others, and those recorded
            // before blocks were reserved (kept in the instances' volatile
            // keys). A reservation that loses the race adds its block to
            // them and the next free one is tried.
            let mut used: Vec<u32> = self
                .node
                .instance_list()
                .await?
                .into_iter()
                .filter(|r| r.name != name)
                .filter_map(|r| r.config.get("volatile.idmap.base")?.parse().ok())
                .collect();
            let mut mine = Vec::new();
            for (base, holder) in self.shared.reservations(ReservationKind::IdBlock).await? {
                let Ok(base) = base.parse::<u32>() else {
                    continue;
                };
                if holder == name {
                    mine.push(base);
                } else {
                    used.push(base);
                }
            }
            let map = loop {
                let current = config
                    .get("volatile.idmap.base")
                    .and_then(|b| b.parse::<u32>().ok())
                    .and_then(|b| self.id_range.block_at(b))
                    .filter(|m| *m != self.idmap && !used.contains(&m.host_uid));
                let map = match current {
                    Some(m) => m,
                    None => self.id_range.free_block(&used).ok_or_else(|| {
                        EngineError::bad(
                            "No free id range left for security.idmap.isolated (root's subuid range is used up)",
                        )
                    })?,
                };
                if mine.contains(&map.host_uid) {
                    break map;
                }
                let base = map.host_uid.to_string();
                match self
                    .shared
                    .reserve(ReservationKind::IdBlock, &base, name)
                    .await
                {
                    Ok(()) => break map,
                    Err(StoreError::Conflict(_)) => used.push(map.host_uid),
                    Err(e) => return Err(e.into()),
                }
            };
            self.release_id_blocks(name, Some(map.host_uid)).await?;
            self.record_idmap(name, &map, config).await?;
            map
        } else {
            self.release_id_blocks(name, None).await?;
            self.record_idmap(name, &self.idmap, config).await?;
            self.idmap
        };
        Ok(Some(map))
    }

    /// Writes the map into `config` and, at once, into the stored row (its
    /// reservation is what keeps the block this instance's alone).
    async fn record_idmap(&self, name: &str, map: &IdMap, config: &mut ConfigMap) -> Result<()> {
        let base = map.host_uid.to_string();
        if config.get("volatile.idmap.base") == Some(&base) {
            return Ok(());
        }
        config.insert("volatile.idmap.base".into(), base);
        config.insert("volatile.idmap.next".into(), idmap_json(map));
        if let Some(mut row) = self.node.instance_get(name).await? {
            row.config
                .insert("volatile.idmap.base".into(), map.host_uid.to_string());
            row.config
                .insert("volatile.idmap.next".into(), idmap_json(map));
            self.node.instance_update(&row).await?;
        }
        Ok(())
    }
}

/// LXD's JSON form of an id map (volatile.idmap.*).
pub fn idmap_json(m: &kante_runtime::IdMap) -> String {
    json!([
        {"Isuid": true, "Isgid": false, "Hostid": m.host_uid, "Nsid": 0, "Maprange": m.size},
        {"Isuid": false, "Isgid": true, "Hostid": m.host_gid, "Nsid": 0, "Maprange": m.size},
    ])
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_from_subuid_or_lxd_default() {
        let r = HostIdRange::from_files(
            Some("alice:100000:65536\nroot:200000:196608\n"),
            Some("root:300000:131072\n"),
        );
        assert_eq!((r.uid, r.gid, r.count), (200000, 300000, 131072));
        assert_eq!(r.shared().host_uid, 200000);
        assert_eq!(r.block(1).unwrap().host_gid, 300000 + BLOCK);
        assert_eq!(r.block(2), None, "only two blocks fit");

        let d = HostIdRange::from_files(None, Some("root:1:65536"));
        assert_eq!((d.uid, d.count), (1_000_000, 1_000_000_000));
    }

    #[test]
    fn free_blocks_skip_the_shared_one_and_used_ones() {
        let r = HostIdRange::from_files(Some("root:1000:262144"), Some("root:1000:262144"));
        assert_eq!(r.free_block(&[]).unwrap().host_uid, 1000 + BLOCK);
        let used = [1000 + BLOCK, 1000 + 3 * BLOCK];
        assert_eq!(r.free_block(&used).unwrap().host_uid, 1000 + 2 * BLOCK);
        assert_eq!(
            r.free_block(&[1000 + BLOCK, 1000 + 2 * BLOCK, 1000 + 3 * BLOCK]),
            None
        );
        assert_eq!(
            r.block_at(1000 + 2 * BLOCK).unwrap().host_uid,
            1000 + 2 * BLOCK
        );
        assert_eq!(r.block_at(1000 + 5), None, "not on a block boundary");
        assert_eq!(r.block_at(999), None);
    }
}
