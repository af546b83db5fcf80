//! The writes every record type shares, as etcd transactions that reach
//! the same outcomes, errors included, as SQLite's `Table` verbs: create
//! (compare-and-put on absence), update (read, rewrite the `MUTABLE`
//! columns, put only if nobody wrote in between), rename (delete and put
//! in one transaction, on the same conditions) and delete. A transaction
//! that lost to a concurrent writer is retried on a fresh read.

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp};
use kante_store::{Result, StoreError};
use serde_json::Value;

use crate::cache::decode;
use crate::keys::{self, Stored};
use crate::state::EtcdState;

/// How often a write is tried again after losing to a concurrent one.
const RETRIES: usize = 64;

fn contended() -> StoreError {
    StoreError::Unavailable("too many concurrent changes to one record".into())
}

/// How errors name record `label` of type `R`.
pub(crate) fn named<R: Stored>(label: &str) -> String {
    format!("{} {label:?}", R::ENTITY)
}

/// References to rewrite in a rename: the directory (relative) they live
/// in, and the new value of each record there that needs one.
pub(crate) type Follow<'a> = (
    &'a str,
    &'a (dyn Fn(&KeyValue) -> Result<Option<Vec<u8>>> + Sync),
);

impl EtcdState {
    /// Compares that nothing under `dir` (relative) changed after
    /// `revision` (a key made, rewritten or renamed into it since fails it).
    pub(crate) fn unchanged_since(&self, dir: &str, revision: i64) -> Compare {
        let start = self.key(dir);
        let end = keys::prefix_end(start.as_bytes());
        Compare::mod_revision(start, CompareOp::Less, revision + 1).with_range(end)
    }

    /// Records `row`; a taken key is a conflict.
    pub(crate) async fn create<R: Stored>(&self, row: &R) -> Result<()> {
        let key = self.key(&keys::record::<R>(row.label()));
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, serde_json::to_vec(row)?, None)]);
        if self.txn(txn, true).await?.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Conflict(named::<R>(row.label())))
        }
    }

    /// Rewrites the `MUTABLE` columns of the record with `row`'s key (the
    /// others, and fields a newer member wrote, stay). `requires`: a
    /// record (relative key, and how a missing one is named) that must
    /// exist when the update lands.
    pub(crate) async fn update<R: Stored>(
        &self,
        row: &R,
        requires: Option<(String, String)>,
    ) -> Result<()> {
        let rel = keys::record::<R>(row.label());
        let new = serde_json::to_value(row)?;
        for _ in 0..RETRIES {
            let Some(kv) = self.get_live(&rel).await? else {
                return Err(StoreError::NotFound(named::<R>(row.label())));
            };
            let mut merged: Value = decode(kv.value())?;
            for column in R::MUTABLE {
                merged[*column] = new[*column].clone();
            }
            let mut when = vec![Compare::mod_revision(
                self.key(&rel),
                CompareOp::Equal,
                kv.mod_revision(),
            )];
            if let Some((key, _)) = &requires {
                when.push(Compare::create_revision(
                    self.key(key),
                    CompareOp::Greater,
                    0,
                ));
            }
            let txn = Txn::new().when(when).and_then([TxnOp::put(
                self.key(&rel),
                serde_json::to_vec(&merged)?,
                None,
            )]);
            if self.txn(txn, true).await?.succeeded() {
                return Ok(());
            }
            if let Some((key, what)) = &requires {
                if self.get_live(key).await?.is_none() {
                    return Err(StoreError::NotFound(what.clone()));
                }
            }
        }
        Err(contended())
    }

    /// Renames record `old` of type `R` to `new` (a missing `old` is not
    /// found, a taken `new` a conflict), rewriting the references `follow`
    /// names in the same transaction.
    pub(crate) async fn rename<R: Stored>(
        &self,
        old: &str,
        new: &str,
        follow: Option<Follow<'_>>,
    ) -> Result<()> {
        let (from, to) = (keys::record::<R>(old), keys::record::<R>(new));
        for _ in 0..RETRIES {
            let Some(kv) = self.get_live(&from).await? else {
                return Err(StoreError::NotFound(named::<R>(old)));
            };
            if old == new {
                return Ok(());
            }
            let mut value: Value = decode(kv.value())?;
            value[R::KEY[R::KEY.len() - 1]] = Value::String(new.into());
            let mut when = vec![
                Compare::mod_revision(self.key(&from), CompareOp::Equal, kv.mod_revision()),
                Compare::create_revision(self.key(&to), CompareOp::Equal, 0),
            ];
            let mut ops = vec![
                TxnOp::delete(self.key(&from), None),
                TxnOp::put(self.key(&to), serde_json::to_vec(&value)?, None),
            ];
            if let Some((dir, rewrite)) = follow {
                let (kvs, revision) = self.dir_live(dir).await?;
                when.push(self.unchanged_since(dir, revision));
                for kv in &kvs {
                    if let Some(value) = rewrite(kv)? {
                        ops.push(TxnOp::put(kv.key(), value, None));
                    }
                }
            }
            let txn = Txn::new().when(when).and_then(ops);
            if self.txn(txn, true).await?.succeeded() {
                return Ok(());
            }
            if self.get_live(&to).await?.is_some() {
                return Err(StoreError::Conflict(named::<R>(new)));
            }
        }
        Err(contended())
    }

    /// Deletes relative key `key`; false if there was none.
    pub(crate) async fn delete_key(&self, key: &str) -> Result<bool> {
        let resp = self
            .quorate(self.client.kv_client().delete(self.key(key), None))
            .await?;
        let found = resp.deleted() > 0;
        if found {
            if let Some(h) = resp.header() {
                self.caught_up(h.revision()).await;
            }
        }
        Ok(found)
    }

    /// Deletes record `name` of type `R`, and the records of type `D`
    /// that `refers` says point at it (an image's aliases), together.
    pub(crate) async fn delete_with<R: Stored, D: Stored>(
        &self,
        name: &str,
        refers: impl Fn(&D) -> bool,
    ) -> Result<bool> {
        let key = keys::record::<R>(name);
        for _ in 0..RETRIES {
            let Some(kv) = self.get_live(&key).await? else {
                return Ok(false);
            };
            let (kvs, revision) = self.dir_live(D::DIR).await?;
            let mut ops = vec![TxnOp::delete(self.key(&key), None)];
            for dependent in &kvs {
                if refers(&decode::<D>(dependent.value())?) {
                    ops.push(TxnOp::delete(dependent.key(), None));
                }
            }
            let when = [
                Compare::mod_revision(self.key(&key), CompareOp::Equal, kv.mod_revision()),
                self.unchanged_since(D::DIR, revision),
            ];
            if self
                .txn(Txn::new().when(when).and_then(ops), true)
                .await?
                .succeeded()
            {
                return Ok(true);
            }
        }
        Err(contended())
    }
}
