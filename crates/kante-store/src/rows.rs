//! Row types and their decoding from SQLite.

use kante_api::{ConfigMap, DevicesMap};
use rusqlite::Row;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    pub name: String,
    pub project: String,
    pub kind: String,
    pub architecture: String,
    pub ephemeral: bool,
    pub stateful: bool,
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    pub last_used_at: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
    pub profiles: Vec<String>,
}

/// A row as read, JSON columns still text.
pub(crate) struct RawInstance(InstanceRow, String, String, String);

impl InstanceRow {
    pub(crate) const COLUMNS: &'static str =
        "name, project, type, architecture, ephemeral, stateful, description,
        created_at, last_used_at, config, devices, profiles";

    pub(crate) fn from_row(r: &Row) -> rusqlite::Result<RawInstance> {
        Ok(RawInstance(
            InstanceRow {
                name: r.get(0)?,
                project: r.get(1)?,
                kind: r.get(2)?,
                architecture: r.get(3)?,
                ephemeral: r.get(4)?,
                stateful: r.get(5)?,
                description: r.get(6)?,
                created_at: r.get(7)?,
                last_used_at: r.get(8)?,
                config: ConfigMap::new(),
                devices: DevicesMap::new(),
                profiles: Vec::new(),
            },
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
        ))
    }
}

impl RawInstance {
    pub(crate) fn decode(self) -> Result<InstanceRow> {
        let RawInstance(mut row, config, devices, profiles) = self;
        row.config = serde_json::from_str(&config)?;
        row.devices = serde_json::from_str(&devices)?;
        row.profiles = serde_json::from_str(&profiles)?;
        Ok(row)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRow {
    pub name: String,
    pub description: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
}

pub(crate) struct RawProfile(ProfileRow, String, String);

impl ProfileRow {
    pub(crate) fn from_row(r: &Row) -> rusqlite::Result<RawProfile> {
        Ok(RawProfile(
            ProfileRow {
                name: r.get(0)?,
                description: r.get(1)?,
                config: ConfigMap::new(),
                devices: DevicesMap::new(),
            },
            r.get(2)?,
            r.get(3)?,
        ))
    }
}

impl RawProfile {
    pub(crate) fn decode(self) -> Result<ProfileRow> {
        let RawProfile(mut row, config, devices) = self;
        row.config = serde_json::from_str(&config)?;
        row.devices = serde_json::from_str(&devices)?;
        Ok(row)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub fingerprint: String,
    pub filename: String,
    pub size: i64,
    pub architecture: String,
    pub kind: String,
    pub public: bool,
    pub auto_update: bool,
    pub cached: bool,
    pub properties: ConfigMap,
    pub profiles: Vec<String>,
    pub created_at: String,
    pub uploaded_at: String,
    pub last_used_at: String,
    pub expires_at: String,
}

pub(crate) struct RawImage(ImageRow, String, String);

impl ImageRow {
    pub(crate) const COLUMNS: &'static str =
        "fingerprint, filename, size, architecture, type, public, auto_update,
        cached, properties, profiles, created_at, uploaded_at, last_used_at, expires_at";

    pub(crate) fn from_row(r: &Row) -> rusqlite::Result<RawImage> {
        Ok(RawImage(
            ImageRow {
                fingerprint: r.get(0)?,
                filename: r.get(1)?,
                size: r.get(2)?,
                architecture: r.get(3)?,
                kind: r.get(4)?,
                public: r.get(5)?,
                auto_update: r.get(6)?,
                cached: r.get(7)?,
                properties: ConfigMap::new(),
                profiles: Vec::new(),
                created_at: r.get(10)?,
                uploaded_at: r.get(11)?,
                last_used_at: r.get(12)?,
                expires_at: r.get(13)?,
            },
            r.get(8)?,
            r.get(9)?,
        ))
    }
}

impl RawImage {
    pub(crate) fn decode(self) -> Result<ImageRow> {
        let RawImage(mut row, properties, profiles) = self;
        row.properties = serde_json::from_str(&properties)?;
        row.profiles = serde_json::from_str(&profiles)?;
        Ok(row)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRow {
    pub name: String,
    pub target: String,
    pub description: String,
}

impl AliasRow {
    pub(crate) fn from_row(r: &Row) -> rusqlite::Result<AliasRow> {
        Ok(AliasRow {
            name: r.get(0)?,
            target: r.get(1)?,
            description: r.get(2)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub name: String,
    pub driver: String,
    pub description: String,
    pub config: ConfigMap,
}

pub(crate) struct RawPool(PoolRow, String);

impl PoolRow {
    pub(crate) fn from_row(r: &Row) -> rusqlite::Result<RawPool> {
        Ok(RawPool(
            PoolRow {
                name: r.get(0)?,
                driver: r.get(1)?,
                description: r.get(2)?,
                config: ConfigMap::new(),
            },
            r.get(3)?,
        ))
    }
}

impl RawPool {
    pub(crate) fn decode(self) -> Result<PoolRow> {
        let RawPool(mut row, config) = self;
        row.config = serde_json::from_str(&config)?;
        Ok(row)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub config: ConfigMap,
}

pub(crate) struct RawNetwork(NetworkRow, String);

impl NetworkRow {
    pub(crate) fn from_row(r: &Row) -> rusqlite::Result<RawNetwork> {
        Ok(RawNetwork(
            NetworkRow {
                name: r.get(0)?,
                kind: r.get(1)?,
                description: r.get(2)?,
                config: ConfigMap::new(),
            },
            r.get(3)?,
        ))
    }
}

impl RawNetwork {
    pub(crate) fn decode(self) -> Result<NetworkRow> {
        let RawNetwork(mut row, config) = self;
        row.config = serde_json::from_str(&config)?;
        Ok(row)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub instance: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: String,
    pub stateful: bool,
    pub architecture: String,
    pub ephemeral: bool,
    pub description: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
    pub profiles: Vec<String>,
}

pub(crate) struct RawSnapshot(SnapshotRow, String, String, String);

impl SnapshotRow {
    pub(crate) const COLUMNS: &'static str =
        "instance, name, created_at, expires_at, stateful, architecture, ephemeral, description, config, devices, profiles";

    pub(crate) fn from_row(r: &Row) -> rusqlite::Result<RawSnapshot> {
        Ok(RawSnapshot(
            SnapshotRow {
                instance: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
                stateful: r.get(4)?,
                architecture: r.get(5)?,
                ephemeral: r.get(6)?,
                description: r.get(7)?,
                config: ConfigMap::new(),
                devices: DevicesMap::new(),
                profiles: Vec::new(),
            },
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
        ))
    }
}

impl RawSnapshot {
    pub(crate) fn decode(self) -> Result<SnapshotRow> {
        let RawSnapshot(mut row, config, devices, profiles) = self;
        row.config = serde_json::from_str(&config)?;
        row.devices = serde_json::from_str(&devices)?;
        row.profiles = serde_json::from_str(&profiles)?;
        Ok(row)
    }
}
