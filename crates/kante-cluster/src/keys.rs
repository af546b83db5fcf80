//! The key layout under a cluster's prefix (`/kante/<cluster>/`), one key
//! per record:
//!
//! | key (after the prefix) | value |
//! |---|---|
//! | `profiles/<name>` | a `ProfileRow`, JSON by column name |
//! | `networks/<name>` | a `NetworkRow` |
//! | `images/<fingerprint>` | an `ImageRow` |
//! | `aliases/<name>` | an `AliasRow` (the name may hold `/`) |
//! | `certificates/<fingerprint>` | a `CertificateRow` |
//! | `config` | the whole server config, one JSON object |
//! | `members/<name>` | a [`MemberRecord`] |
//! | `reservations/<kind>/<key>` | the holder, plain text (`kind`: `instance`, `idblock`, `address`, `placement`, `vni`) |
//! | `groups/<name>`, `member-groups/<member>` | a cluster group's description; a member's groups (see `manager/groups.rs`) |
//!
//! The cache holds keys relative to the prefix; etcd the full ones.

use kante_store::{
    AliasRow, CertificateRow, ImageRow, NetworkRow, ProfileRow, Record, ReservationKind,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A record type kept one per key under a directory of the prefix, its
/// key the record's label (name or fingerprint).
pub(crate) trait Stored:
    Record + Serialize + DeserializeOwned + Clone + Send + Sync
{
    /// The directory, with its trailing `/`.
    const DIR: &'static str;
}

impl Stored for ProfileRow {
    const DIR: &'static str = "profiles/";
}
impl Stored for NetworkRow {
    const DIR: &'static str = "networks/";
}
impl Stored for ImageRow {
    const DIR: &'static str = "images/";
}
impl Stored for AliasRow {
    const DIR: &'static str = "aliases/";
}
impl Stored for CertificateRow {
    const DIR: &'static str = "certificates/";
}

/// The relative key of record `name` of type `R`.
pub(crate) fn record<R: Stored>(name: &str) -> String {
    format!("{}{name}", R::DIR)
}

pub(crate) const CONFIG: &str = "config";
pub(crate) const MEMBERS: &str = "members/";
pub(crate) const RESERVATIONS: &str = "reservations/";

pub(crate) fn reservations_dir(kind: ReservationKind) -> String {
    format!("{RESERVATIONS}{}/", kind.as_str())
}

pub(crate) fn reservation(kind: ReservationKind, key: &str) -> String {
    format!("{}{key}", reservations_dir(kind))
}

pub(crate) fn member(name: &str) -> String {
    format!("{MEMBERS}{name}")
}

/// A member's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub name: String,
    /// Where the other members reach it.
    pub address: String,
}

/// The first key after every key that starts with `prefix` (etcd's range
/// end of a prefix).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key after it.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_successor() {
        assert_eq!(
            prefix_end(b"/kante/c/images/"),
            b"/kante/c/images0".to_vec()
        );
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(record::<AliasRow>("debian/12"), "aliases/debian/12");
        assert_eq!(
            reservation(ReservationKind::Address, "kbr0/10.0.0.2"),
            "reservations/address/kbr0/10.0.0.2"
        );
    }
}
