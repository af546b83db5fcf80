//! [`SharedState`] for [`EtcdState`]: reads from the cache, writes through
//! `ops.rs` or as their own transactions (reservations, aliases, config).

use std::collections::BTreeMap;
use std::ops::Bound;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp};
use kante_store::{
    AliasRow, CertificateRow, ImageRow, Member, NetworkRow, ProfileRow, ReservationKind, Result,
    SharedState, StoreError,
};

use crate::cache::decode;
use crate::keys::{self, MemberRecord, Stored};
use crate::ops::named;
use crate::state::EtcdState;

impl EtcdState {
    /// Record `name` of type `R`, from the cache.
    fn cached<R: Stored>(&self, name: &str) -> Result<Option<R>> {
        self.shared.cache().record(name)
    }

    /// Every record of type `R`, from the cache, in list order.
    fn cached_all<R: Stored>(&self) -> Result<Vec<R>> {
        self.shared.cache().records()
    }
}

/// An image record with `old` renamed `new` in its profile list, if it
/// has `old`. Edited as JSON, so fields a newer member wrote stay.
fn image_profile_renamed(kv: &KeyValue, old: &str, new: &str) -> Result<Option<Vec<u8>>> {
    let mut image: serde_json::Value = decode(kv.value())?;
    let Some(profiles) = image["profiles"].as_array_mut() else {
        return Ok(None);
    };
    let mut renamed = false;
    for p in profiles.iter_mut().filter(|p| p.as_str() == Some(old)) {
        *p = new.into();
        renamed = true;
    }
    Ok(renamed.then(|| serde_json::to_vec(&image)).transpose()?)
}

#[async_trait]
impl SharedState for EtcdState {
    async fn local_member(&self) -> Result<Member> {
        Ok(Member {
            name: self.member.name.clone(),
            address: self.member.address.clone(),
        })
    }

    async fn members(&self) -> Result<Vec<Member>> {
        let cache = self.shared.cache();
        cache
            .dir(keys::MEMBERS)
            .map(|(_, e)| {
                let m: MemberRecord = decode(&e.value)?;
                Ok(Member {
                    name: m.name,
                    address: m.address,
                })
            })
            .collect()
    }

    async fn reserve(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<()> {
        let k = self.key(&keys::reservation(kind, key));
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k, holder, None)]);
        if self.txn(txn, true).await?.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("{} {key:?}", kind.entity())))
        }
    }

    async fn release(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<bool> {
        let k = self.key(&keys::reservation(kind, key));
        let txn = Txn::new()
            .when([Compare::value(k.clone(), CompareOp::Equal, holder)])
            .and_then([TxnOp::delete(k, None)]);
        Ok(self.txn(txn, true).await?.succeeded())
    }

    async fn transfer(
        &self,
        kind: ReservationKind,
        key: &str,
        from: &str,
        to: &str,
    ) -> Result<bool> {
        let k = self.key(&keys::reservation(kind, key));
        let txn = Txn::new()
            .when([Compare::value(k.clone(), CompareOp::Equal, from)])
            .and_then([TxnOp::put(k, to, None)]);
        Ok(self.txn(txn, true).await?.succeeded())
    }

    async fn reservations(&self, kind: ReservationKind) -> Result<BTreeMap<String, String>> {
        let dir = keys::reservations_dir(kind);
        let cache = self.shared.cache();
        Ok(cache
            .dir(&dir)
            .map(|(k, e)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(&e.value).into_owned(),
                )
            })
            .collect())
    }

    async fn profile_create(&self, row: &ProfileRow) -> Result<()> {
        self.create(row).await
    }
    async fn profile_get(&self, name: &str) -> Result<Option<ProfileRow>> {
        self.cached(name)
    }
    async fn profile_list(&self) -> Result<Vec<ProfileRow>> {
        self.cached_all()
    }
    async fn profile_update(&self, row: &ProfileRow) -> Result<()> {
        self.update(row, None).await
    }
    async fn profile_rename(&self, name: &str, new: &str) -> Result<()> {
        let rewrite = |kv: &KeyValue| image_profile_renamed(kv, name, new);
        self.rename::<ProfileRow>(name, new, Some((ImageRow::DIR, &rewrite)))
            .await
    }
    async fn profile_delete(&self, name: &str) -> Result<bool> {
        self.delete_key(&keys::record::<ProfileRow>(name)).await
    }

    async fn network_create(&self, row: &NetworkRow) -> Result<()> {
        self.create(row).await
    }
    async fn network_get(&self, name: &str) -> Result<Option<NetworkRow>> {
        self.cached(name)
    }
    async fn network_list(&self) -> Result<Vec<NetworkRow>> {
        self.cached_all()
    }
    async fn network_update(&self, row: &NetworkRow) -> Result<()> {
        self.update(row, None).await
    }
    async fn network_delete(&self, name: &str) -> Result<bool> {
        self.delete_key(&keys::record::<NetworkRow>(name)).await
    }

    async fn image_create(&self, row: &ImageRow) -> Result<()> {
        self.create(row).await
    }
    async fn image_get(&self, fp_or_prefix: &str) -> Result<Option<ImageRow>> {
        // As SQLite's: a hex prefix, lower-cased, matching the range
        // [prefix, prefix + "g").
        if fp_or_prefix.is_empty() || !fp_or_prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let from = keys::record::<ImageRow>(&fp_or_prefix.to_ascii_lowercase());
        let to = format!("{from}g");
        let cache = self.shared.cache();
        let found: Vec<_> = cache
            .range(&from, Bound::Excluded(&to))
            .take(2)
            .map(|(_, e)| e.value.clone())
            .collect();
        drop(cache);
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(decode(one)?)),
            _ => Err(StoreError::Conflict(format!(
                "More than one image matches {fp_or_prefix:?}"
            ))),
        }
    }
    async fn image_list(&self) -> Result<Vec<ImageRow>> {
        self.cached_all()
    }
    async fn image_update(&self, row: &ImageRow) -> Result<()> {
        self.update(row, None).await
    }
    async fn image_delete(&self, fingerprint: &str) -> Result<bool> {
        self.delete_with::<ImageRow, AliasRow>(fingerprint, |a| a.target == fingerprint)
            .await
    }

    async fn alias_create(&self, row: &AliasRow) -> Result<()> {
        let key = keys::record::<AliasRow>(&row.name);
        let image = keys::record::<ImageRow>(&row.target);
        let txn = Txn::new()
            .when([
                Compare::create_revision(self.key(&key), CompareOp::Equal, 0),
                Compare::create_revision(self.key(&image), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(self.key(&key), serde_json::to_vec(row)?, None)]);
        if self.txn(txn, true).await?.succeeded() {
            Ok(())
        } else if self.get_live(&key).await?.is_some() {
            Err(StoreError::Conflict(named::<AliasRow>(&row.name)))
        } else {
            Err(StoreError::NotFound(named::<ImageRow>(&row.target)))
        }
    }
    async fn alias_get(&self, name: &str) -> Result<Option<AliasRow>> {
        self.cached(name)
    }
    async fn alias_list(&self) -> Result<Vec<AliasRow>> {
        self.cached_all()
    }
    async fn alias_update(&self, row: &AliasRow) -> Result<()> {
        let image = keys::record::<ImageRow>(&row.target);
        self.update(row, Some((image, named::<ImageRow>(&row.target))))
            .await
    }
    async fn alias_rename(&self, old: &str, new: &str) -> Result<()> {
        self.rename::<AliasRow>(old, new, None).await
    }
    async fn alias_delete(&self, name: &str) -> Result<bool> {
        self.delete_key(&keys::record::<AliasRow>(name)).await
    }

    async fn config_all(&self) -> Result<BTreeMap<String, String>> {
        match self.shared.cache().get(keys::CONFIG) {
            Some(e) => decode(&e.value),
            None => Ok(BTreeMap::new()),
        }
    }
    async fn config_replace(&self, config: &BTreeMap<String, String>) -> Result<()> {
        self.put(keys::CONFIG, serde_json::to_vec(config)?).await
    }

    async fn certificate_create(&self, row: &CertificateRow) -> Result<()> {
        self.create(row).await
    }
    async fn certificate_get(&self, fingerprint: &str) -> Result<Option<CertificateRow>> {
        self.cached(fingerprint)
    }
    async fn certificate_list(&self) -> Result<Vec<CertificateRow>> {
        self.cached_all()
    }
    async fn certificate_update(&self, row: &CertificateRow) -> Result<()> {
        self.update(row, None).await
    }
    async fn certificate_delete(&self, fingerprint: &str) -> Result<bool> {
        self.delete_key(&keys::record::<CertificateRow>(fingerprint))
            .await
    }
}
