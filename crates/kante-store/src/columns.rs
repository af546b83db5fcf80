//! How a row type is declared: [`record!`] writes the struct and its
//! [`crate::table::Record`] impl from one field list, and [`Column`] says
//! how each field type is stored (text, integer, or JSON text for maps
//! and lists), so adding an entity is its field list and a migration.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::Row;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Result;

/// A field type that maps to one SQLite column.
pub trait Column: Sized {
    /// The value stored.
    fn to_value(&self) -> Result<Value>;
    /// Decodes column `i` of `row`.
    fn from_column(row: &Row, i: usize) -> Result<Self>;
}

macro_rules! plain_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn to_value(&self) -> Result<Value> {
                Ok(self.clone().into())
            }
            fn from_column(row: &Row, i: usize) -> Result<Self> {
                Ok(row.get(i)?)
            }
        }
    )*};
}

plain_column!(String, bool, i64);

/// Maps are stored as JSON text.
impl<K, V> Column for BTreeMap<K, V>
where
    K: Ord + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn to_value(&self) -> Result<Value> {
        crate::table::json(self)
    }
    fn from_column(row: &Row, i: usize) -> Result<Self> {
        crate::table::from_json(row, i)
    }
}

/// Lists are stored as JSON text.
impl<T: Serialize + DeserializeOwned> Column for Vec<T> {
    fn to_value(&self) -> Result<Value> {
        crate::table::json(self)
    }
    fn from_column(row: &Row, i: usize) -> Result<Self> {
        crate::table::from_json(row, i)
    }
}

/// Declares a row type and its [`crate::table::Record`] impl from its
/// fields, each with the column it is stored in (in table order):
///
/// ```ignore
/// record! {
///     /// A thing.
///     #[derive(Debug, Clone, PartialEq, Eq)]
///     pub struct ThingRow {
///         name: String => "name",
///         kind: String => "type",
///         config: ConfigMap => "config",
///     }
///     table: "things", entity: "Thing", key: ["name"],
///     mutable: ["config"], order: "name", label: name,
/// }
/// ```
///
/// `key` identifies a record (its last column is what a rename changes),
/// `mutable` lists the columns an update rewrites, `order` is lists'
/// `ORDER BY` and `label` the field errors quote. How each field is
/// stored comes from its type's [`Column`] impl. The struct is also
/// (de)serialisable, as a JSON object keyed by column names (the form an
/// etcd-backed `SharedState` stores a record in, whose updates rewrite the
/// same `mutable` columns).
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $col:literal ),+ $(,)?
        }
        table: $table:literal, entity: $entity:literal, key: [$($key:literal),+],
        mutable: [$($mutable:literal),* $(,)?], order: $order:literal, label: $label:ident $(,)?
    ) => {
        $(#[$meta])*
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct $name {
            // A field an older member never wrote reads as its default
            // (records of a newer version carry more, in etcd too).
            $( $(#[$fmeta])* #[serde(rename = $col, default)] pub $field: $ty, )+
        }

        impl $crate::table::Record for $name {
            const TABLE: &'static str = $table;
            const ENTITY: &'static str = $entity;
            const COLUMNS: &'static [&'static str] = &[$($col),+];
            const KEY: &'static [&'static str] = &[$($key),+];
            const MUTABLE: &'static [&'static str] = &[$($mutable),*];
            const ORDER: &'static str = $order;

            fn label(&self) -> &str {
                &self.$label
            }

            fn values(&self) -> $crate::Result<Vec<rusqlite::types::Value>> {
                Ok(vec![$( $crate::columns::Column::to_value(&self.$field)? ),+])
            }

            fn from_row(r: &rusqlite::Row) -> $crate::Result<Self> {
                let mut index = 0usize..;
                $(
                    let $field = <$ty as $crate::columns::Column>::from_column(
                        r,
                        index.next().unwrap_or_default(),
                    )?;
                )+
                Ok($name { $($field),+ })
            }
        }
    };
}
