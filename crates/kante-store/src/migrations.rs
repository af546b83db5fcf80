//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.
//! Never edit a released migration: append a new one.

use rusqlite::Connection;

use crate::{Result, StoreError};

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the engine core.
    "CREATE TABLE instances (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL DEFAULT 'default',
        type TEXT NOT NULL DEFAULT 'container',
        architecture TEXT NOT NULL,
        ephemeral INTEGER NOT NULL DEFAULT 0,
        stateful INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        filename TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL,
        architecture TEXT NOT NULL,
        type TEXT NOT NULL DEFAULT 'container',
        public INTEGER NOT NULL DEFAULT 0,
        auto_update INTEGER NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0,
        properties TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[\"default\"]',
        created_at TEXT NOT NULL,
        uploaded_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE image_aliases (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        target TEXT NOT NULL REFERENCES images(fingerprint),
        description TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE storage_pools (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE config (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // 2: managed networks.
    "CREATE TABLE networks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}'
    );",
    // 3: instance snapshots.
    "CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY,
        instance TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        stateful INTEGER NOT NULL DEFAULT 0,
        architecture TEXT NOT NULL,
        ephemeral INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]',
        UNIQUE (instance, name)
    );",
    // 4: instances whose creation is still under way (see pending.rs).
    "ALTER TABLE instances ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;",
    // 5: shared reservations (compare-and-swap uniqueness; the instances
    // recorded so far hold their names, on the standalone member) and
    // trusted client certificates.
    "CREATE TABLE reservations (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        holder TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    );
    INSERT INTO reservations (kind, key, holder) SELECT 'instance', name, 'none' FROM instances;
    CREATE TABLE certificates (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL DEFAULT 'client',
        name TEXT NOT NULL,
        certificate TEXT NOT NULL,
        restricted INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT ''
    );",
    // 6: custom volumes' description and config (until now the pools'
    // `custom-meta/<vol>.json` sidecars, imported at the daemon's start).
    "CREATE TABLE custom_volumes (
        id INTEGER PRIMARY KEY,
        pool TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT '',
        UNIQUE (pool, name)
    );",
    // 7: instance backups' records (until now `.<backup>.json` beside each
    // tarball, imported at the daemon's start), and the pending mark of
    // custom volumes being made or deleted (see pending.rs).
    "CREATE TABLE instance_backups (
        id INTEGER PRIMARY KEY,
        instance TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        instance_only INTEGER NOT NULL DEFAULT 0,
        optimized_storage INTEGER NOT NULL DEFAULT 0,
        compression_algorithm TEXT NOT NULL DEFAULT '',
        pending INTEGER NOT NULL DEFAULT 0,
        UNIQUE (instance, name)
    );
    ALTER TABLE custom_volumes ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;",
    // 8: the projects a restricted certificate may reach (LXD's
    // `projects`), for `/1.0/certificates`.
    "ALTER TABLE certificates ADD COLUMN projects TEXT NOT NULL DEFAULT '[]';",
    // 9: where a pulled image came from, for its refresh (LXD's
    // `images_source`).
    "ALTER TABLE images ADD COLUMN update_source TEXT NOT NULL DEFAULT '{}';",
    // 10: a cluster network's status and its members' own keys
    // (`network create --target`, LXD's `networks_nodes` and node config).
    "ALTER TABLE networks ADD COLUMN status TEXT NOT NULL DEFAULT '';
    ALTER TABLE networks ADD COLUMN members TEXT NOT NULL DEFAULT '{}';",
];

pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn apply(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > latest() {
        return Err(StoreError::TooNew {
            found: current,
            known: latest(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
