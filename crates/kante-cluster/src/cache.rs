//! The local copy of a cluster's whole prefix: loaded at connect, kept
//! current by the watch (`watcher.rs`), and what every read answers from,
//! so reads go on while etcd is unreachable.

use std::collections::BTreeMap;
use std::ops::Bound;

use etcd_client::{EventType, KeyValue};
use kante_store::{Result, StoreError};
use serde::de::DeserializeOwned;

use crate::keys::{self, Stored};

/// One key's value and revisions.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub value: Vec<u8>,
    /// The revision that created the key (insertion order, as SQLite's
    /// row ids).
    pub create_revision: i64,
}

/// Keys relative to the prefix, and the etcd revision they are current at.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    entries: BTreeMap<String, Entry>,
    revision: i64,
}

impl Cache {
    /// The etcd revision every change up to which is in the cache.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Replaces everything with `kvs` (a whole-prefix read at `revision`).
    pub fn load(&mut self, prefix: &str, kvs: &[KeyValue], revision: i64) {
        self.entries.clear();
        for kv in kvs {
            if let Some(key) = relative(prefix, kv.key()) {
                self.entries.insert(
                    key,
                    Entry {
                        value: kv.value().to_vec(),
                        create_revision: kv.create_revision(),
                    },
                );
            }
        }
        self.revision = revision;
    }

    /// Applies one watched event.
    pub fn apply(&mut self, prefix: &str, kind: EventType, kv: &KeyValue) {
        if kv.mod_revision() > self.revision {
            self.revision = kv.mod_revision();
        }
        let Some(key) = relative(prefix, kv.key()) else {
            return;
        };
        match kind {
            EventType::Put => {
                self.entries.insert(
                    key,
                    Entry {
                        value: kv.value().to_vec(),
                        create_revision: kv.create_revision(),
                    },
                );
            }
            EventType::Delete => {
                self.entries.remove(&key);
            }
        }
    }

    /// Notes that every change up to `revision` has been seen (a watch's
    /// progress notification).
    pub fn seen(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    /// Replaces everything with `entries` at `revision` (a snapshot).
    pub fn restore(&mut self, entries: BTreeMap<String, Entry>, revision: i64) {
        self.entries = entries;
        self.revision = revision;
    }

    /// Every key, in order.
    pub fn all(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The keys under `dir` (which ends with `/`), in key order, with
    /// `dir` cut off.
    pub fn dir<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.range(dir, Bound::Unbounded)
            .take_while(move |(k, _)| k.starts_with(dir))
            .map(move |(k, e)| (&k[dir.len()..], e))
    }

    /// Keys from `from` (included) to `to`.
    pub fn range<'a>(
        &'a self,
        from: &str,
        to: Bound<&str>,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let to = to.map(str::to_string);
        self.entries
            .range::<String, _>((Bound::Included(from.to_string()), to))
    }

    /// Record `name` of type `R`.
    pub fn record<R: Stored>(&self, name: &str) -> Result<Option<R>> {
        self.get(&keys::record::<R>(name))
            .map(|e| decode(&e.value))
            .transpose()
    }

    /// Every record of type `R`, in its list order: by key when that is
    /// the order, else by the order column, then by creation (SQLite's row
    /// order among equals).
    pub fn records<R: Stored>(&self) -> Result<Vec<R>> {
        if R::ORDER == R::KEY[R::KEY.len() - 1] {
            return self.dir(R::DIR).map(|(_, e)| decode(&e.value)).collect();
        }
        let mut rows = Vec::new();
        for (_, e) in self.dir(R::DIR) {
            let value: serde_json::Value = decode(&e.value)?;
            let order = match &value[R::ORDER] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rows.push((order, e.create_revision, serde_json::from_value(value)?));
        }
        rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Ok(rows.into_iter().map(|(_, _, r)| r).collect())
    }
}

/// A stored JSON value.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(StoreError::Json)
}

/// `key` without `prefix`, if it is under it and UTF-8.
fn relative(prefix: &str, key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    String::from_utf8(rest.to_vec()).ok()
}
