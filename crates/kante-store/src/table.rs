//! CRUD derived once: a [`Record`] says which table a row type lives in,
//! its key and how it maps to columns; [`Table`] writes the SQL for every
//! row type alike (insert with conflicts, get, list, update, rename, delete).

use std::marker::PhantomData;

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Row};

use crate::{Result, StoreError};

/// A row type stored in one table, one row per record.
pub trait Record: Sized {
    /// The SQL table.
    const TABLE: &'static str;
    /// The word errors name a record by ("Instance", "Profile", …).
    const ENTITY: &'static str;
    /// Every stored column, in the order of [`Record::values`] and
    /// [`Record::from_row`].
    const COLUMNS: &'static [&'static str];
    /// The columns that identify a record (a prefix-free subset of
    /// `COLUMNS`; the last one is what a rename changes).
    const KEY: &'static [&'static str];
    /// The columns an update rewrites.
    const MUTABLE: &'static [&'static str];
    /// `ORDER BY` of lists.
    const ORDER: &'static str;

    /// The name errors quote for this record.
    fn label(&self) -> &str;
    /// The column values, in `COLUMNS` order (maps and lists as JSON text).
    fn values(&self) -> Result<Vec<Value>>;
    /// Decodes a row selected with `COLUMNS`.
    fn from_row(row: &Row) -> Result<Self>;
}

/// JSON text of a map or list column.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<Value> {
    Ok(Value::Text(serde_json::to_string(v)?))
}

/// Decodes the JSON text column `i`.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(row: &Row, i: usize) -> Result<T> {
    let text: String = row.get(i)?;
    Ok(serde_json::from_str(&text)?)
}

pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// The SQL of one [`Record`] type; every function takes the connection (or
/// a transaction) to run on.
pub struct Table<R>(PhantomData<R>);

impl<R: Record> Table<R> {
    pub(crate) fn select() -> String {
        format!("SELECT {} FROM {}", R::COLUMNS.join(", "), R::TABLE)
    }

    pub(crate) fn key_match(first: usize) -> String {
        R::KEY
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ?{}", first + i))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    pub(crate) fn collect(conn: &Connection, sql: &str, args: &[&str]) -> Result<Vec<R>> {
        let mut st = conn.prepare_cached(sql)?;
        let mut rows = st.query(params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(R::from_row(r)?);
        }
        Ok(out)
    }

    /// Inserts a record; one whose key is taken is a conflict.
    pub fn insert(conn: &Connection, row: &R) -> Result<()> {
        Self::insert_with(conn, row, &[])
    }

    /// Inserts a record with `extra` columns besides its own, each set to
    /// an SQL literal (`pending.rs` marks with it); a taken key is a
    /// conflict.
    pub(crate) fn insert_with(conn: &Connection, row: &R, extra: &[(&str, &str)]) -> Result<()> {
        let mut columns: Vec<&str> = R::COLUMNS.to_vec();
        let mut values: Vec<String> = (1..=R::COLUMNS.len()).map(|i| format!("?{i}")).collect();
        for (column, literal) in extra {
            columns.push(column);
            values.push(literal.to_string());
        }
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            R::TABLE,
            columns.join(", "),
            values.join(", ")
        );
        match conn.execute(&sql, params_from_iter(row.values()?)) {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "{} {:?}",
                R::ENTITY,
                row.label()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Inserts a record, or rewrites the `MUTABLE` columns of the one with
    /// its key.
    pub fn upsert(conn: &Connection, row: &R) -> Result<()> {
        let marks: Vec<String> = (1..=R::COLUMNS.len()).map(|i| format!("?{i}")).collect();
        let sets: Vec<String> = R::MUTABLE
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
            R::TABLE,
            R::COLUMNS.join(", "),
            marks.join(", "),
            R::KEY.join(", "),
            sets.join(", ")
        );
        conn.execute(&sql, params_from_iter(row.values()?))?;
        Ok(())
    }

    /// The record with this key (one value per `KEY` column).
    pub fn get(conn: &Connection, key: &[&str]) -> Result<Option<R>> {
        let sql = format!("{} WHERE {}", Self::select(), Self::key_match(1));
        Ok(Self::collect(conn, &sql, key)?.into_iter().next())
    }

    /// Every record, in `ORDER` order.
    pub fn list(conn: &Connection) -> Result<Vec<R>> {
        let sql = format!("{} ORDER BY {}", Self::select(), R::ORDER);
        Self::collect(conn, &sql, &[])
    }

    /// The records whose `column` is `value`, in `ORDER` order.
    pub fn list_where(conn: &Connection, column: &str, value: &str) -> Result<Vec<R>> {
        let sql = format!(
            "{} WHERE {column} = ?1 ORDER BY {}",
            Self::select(),
            R::ORDER
        );
        Self::collect(conn, &sql, &[value])
    }

    /// The records whose `column` lies in `[from, to)`, in `ORDER` order, at
    /// most `limit`.
    pub fn list_range(
        conn: &Connection,
        column: &str,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<R>> {
        let sql = format!(
            "{} WHERE {column} >= ?1 AND {column} < ?2 ORDER BY {} LIMIT {limit}",
            Self::select(),
            R::ORDER
        );
        Self::collect(conn, &sql, &[from, to])
    }

    /// The `KEY` values of every record, in `ORDER` order (the last key
    /// column only, e.g. names).
    pub fn names(conn: &Connection) -> Result<Vec<String>> {
        let key = R::KEY[R::KEY.len() - 1];
        let sql = format!("SELECT {key} FROM {} ORDER BY {}", R::TABLE, R::ORDER);
        let mut st = conn.prepare_cached(&sql)?;
        let names = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    /// Rewrites the `MUTABLE` columns of the record with `row`'s key.
    pub fn update(conn: &Connection, row: &R) -> Result<()> {
        let values = row.values()?;
        let mut args = Vec::new();
        let mut sets = Vec::new();
        for col in R::MUTABLE {
            let i = Self::index(col);
            args.push(values[i].clone());
            sets.push(format!("{col} = ?{}", args.len()));
        }
        for col in R::KEY {
            args.push(values[Self::index(col)].clone());
        }
        let sql = format!(
            "UPDATE {} SET {} WHERE {}",
            R::TABLE,
            sets.join(", "),
            Self::key_match(R::MUTABLE.len() + 1)
        );
        if conn.execute(&sql, params_from_iter(args))? == 0 {
            return Err(StoreError::NotFound(format!(
                "{} {:?}",
                R::ENTITY,
                row.label()
            )));
        }
        Ok(())
    }

    /// Sets one column of the record with this key.
    pub fn set(conn: &Connection, key: &[&str], column: &str, value: Value) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET {column} = ?1 WHERE {}",
            R::TABLE,
            Self::key_match(2)
        );
        let mut args = vec![value];
        args.extend(key.iter().map(|k| Value::Text(k.to_string())));
        Ok(conn.execute(&sql, params_from_iter(args))? > 0)
    }

    /// Changes the last key column of the record with this key to `new`.
    pub fn rename(conn: &Connection, key: &[&str], new: &str) -> Result<()> {
        let col = R::KEY[R::KEY.len() - 1];
        let old = key[key.len() - 1];
        let sql = format!(
            "UPDATE {} SET {col} = ?1 WHERE {}",
            R::TABLE,
            Self::key_match(2)
        );
        let mut args = vec![new];
        args.extend_from_slice(key);
        match conn.execute(&sql, params_from_iter(args)) {
            Ok(0) => Err(StoreError::NotFound(format!("{} {old:?}", R::ENTITY))),
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("{} {new:?}", R::ENTITY)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the record with this key; false if there was none.
    pub fn delete(conn: &Connection, key: &[&str]) -> Result<bool> {
        let sql = format!("DELETE FROM {} WHERE {}", R::TABLE, Self::key_match(1));
        Ok(conn.execute(&sql, params_from_iter(key))? > 0)
    }

    /// Deletes the records whose `column` is `value`; how many there were.
    pub fn delete_where(conn: &Connection, column: &str, value: &str) -> Result<usize> {
        let sql = format!("DELETE FROM {} WHERE {column} = ?1", R::TABLE);
        Ok(conn.execute(&sql, [value])?)
    }

    fn index(col: &str) -> usize {
        R::COLUMNS
            .iter()
            .position(|c| *c == col)
            .unwrap_or_else(|| panic!("{}: {col} is not one of its columns", R::TABLE))
    }
}
