//! Row types and how each maps to its table (see [`crate::table::Record`]).

use kante_api::{ConfigMap, DevicesMap};
use rusqlite::types::Value;
use rusqlite::Row;

use crate::table::{from_json, json, Record};
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

impl Record for InstanceRow {
    const TABLE: &'static str = "instances";
    const ENTITY: &'static str = "Instance";
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "project",
        "type",
        "architecture",
        "ephemeral",
        "stateful",
        "description",
        "created_at",
        "last_used_at",
        "config",
        "devices",
        "profiles",
    ];
    const KEY: &'static [&'static str] = &["name"];
    const MUTABLE: &'static [&'static str] = &[
        "architecture",
        "ephemeral",
        "stateful",
        "description",
        "last_used_at",
        "config",
        "devices",
        "profiles",
    ];
    const ORDER: &'static str = "name";

    fn label(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.name.clone().into(),
            self.project.clone().into(),
            self.kind.clone().into(),
            self.architecture.clone().into(),
            self.ephemeral.into(),
            self.stateful.into(),
            self.description.clone().into(),
            self.created_at.clone().into(),
            self.last_used_at.clone().into(),
            json(&self.config)?,
            json(&self.devices)?,
            json(&self.profiles)?,
        ])
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(InstanceRow {
            name: r.get(0)?,
            project: r.get(1)?,
            kind: r.get(2)?,
            architecture: r.get(3)?,
            ephemeral: r.get(4)?,
            stateful: r.get(5)?,
            description: r.get(6)?,
            created_at: r.get(7)?,
            last_used_at: r.get(8)?,
            config: from_json(r, 9)?,
            devices: from_json(r, 10)?,
            profiles: from_json(r, 11)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRow {
    pub name: String,
    pub description: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
}

impl Record for ProfileRow {
    const TABLE: &'static str = "profiles";
    const ENTITY: &'static str = "Profile";
    const COLUMNS: &'static [&'static str] = &["name", "description", "config", "devices"];
    const KEY: &'static [&'static str] = &["name"];
    const MUTABLE: &'static [&'static str] = &["description", "config", "devices"];
    const ORDER: &'static str = "name";

    fn label(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.name.clone().into(),
            self.description.clone().into(),
            json(&self.config)?,
            json(&self.devices)?,
        ])
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(ProfileRow {
            name: r.get(0)?,
            description: r.get(1)?,
            config: from_json(r, 2)?,
            devices: from_json(r, 3)?,
        })
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

impl Record for ImageRow {
    const TABLE: &'static str = "images";
    const ENTITY: &'static str = "Image";
    const COLUMNS: &'static [&'static str] = &[
        "fingerprint",
        "filename",
        "size",
        "architecture",
        "type",
        "public",
        "auto_update",
        "cached",
        "properties",
        "profiles",
        "created_at",
        "uploaded_at",
        "last_used_at",
        "expires_at",
    ];
    const KEY: &'static [&'static str] = &["fingerprint"];
    const MUTABLE: &'static [&'static str] = &[
        "public",
        "auto_update",
        "properties",
        "profiles",
        "last_used_at",
    ];
    const ORDER: &'static str = "uploaded_at";

    fn label(&self) -> &str {
        &self.fingerprint
    }

    fn values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.fingerprint.clone().into(),
            self.filename.clone().into(),
            self.size.into(),
            self.architecture.clone().into(),
            self.kind.clone().into(),
            self.public.into(),
            self.auto_update.into(),
            self.cached.into(),
            json(&self.properties)?,
            json(&self.profiles)?,
            self.created_at.clone().into(),
            self.uploaded_at.clone().into(),
            self.last_used_at.clone().into(),
            self.expires_at.clone().into(),
        ])
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(ImageRow {
            fingerprint: r.get(0)?,
            filename: r.get(1)?,
            size: r.get(2)?,
            architecture: r.get(3)?,
            kind: r.get(4)?,
            public: r.get(5)?,
            auto_update: r.get(6)?,
            cached: r.get(7)?,
            properties: from_json(r, 8)?,
            profiles: from_json(r, 9)?,
            created_at: r.get(10)?,
            uploaded_at: r.get(11)?,
            last_used_at: r.get(12)?,
            expires_at: r.get(13)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRow {
    pub name: String,
    pub target: String,
    pub description: String,
}

impl Record for AliasRow {
    const TABLE: &'static str = "image_aliases";
    const ENTITY: &'static str = "Alias";
    const COLUMNS: &'static [&'static str] = &["name", "target", "description"];
    const KEY: &'static [&'static str] = &["name"];
    const MUTABLE: &'static [&'static str] = &["target", "description"];
    const ORDER: &'static str = "name";

    fn label(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.name.clone().into(),
            self.target.clone().into(),
            self.description.clone().into(),
        ])
    }

    fn from_row(r: &Row) -> Result<Self> {
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

impl Record for PoolRow {
    const TABLE: &'static str = "storage_pools";
    const ENTITY: &'static str = "Storage pool";
    const COLUMNS: &'static [&'static str] = &["name", "driver", "description", "config"];
    const KEY: &'static [&'static str] = &["name"];
    const MUTABLE: &'static [&'static str] = &["description", "config"];
    const ORDER: &'static str = "name";

    fn label(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.name.clone().into(),
            self.driver.clone().into(),
            self.description.clone().into(),
            json(&self.config)?,
        ])
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(PoolRow {
            name: r.get(0)?,
            driver: r.get(1)?,
            description: r.get(2)?,
            config: from_json(r, 3)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub config: ConfigMap,
}

impl Record for NetworkRow {
    const TABLE: &'static str = "networks";
    const ENTITY: &'static str = "Network";
    const COLUMNS: &'static [&'static str] = &["name", "type", "description", "config"];
    const KEY: &'static [&'static str] = &["name"];
    const MUTABLE: &'static [&'static str] = &["description", "config"];
    const ORDER: &'static str = "name";

    fn label(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.name.clone().into(),
            self.kind.clone().into(),
            self.description.clone().into(),
            json(&self.config)?,
        ])
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(NetworkRow {
            name: r.get(0)?,
            kind: r.get(1)?,
            description: r.get(2)?,
            config: from_json(r, 3)?,
        })
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

impl Record for SnapshotRow {
    const TABLE: &'static str = "snapshots";
    const ENTITY: &'static str = "Snapshot";
    const COLUMNS: &'static [&'static str] = &[
        "instance",
        "name",
        "created_at",
        "expires_at",
        "stateful",
        "architecture",
        "ephemeral",
        "description",
        "config",
        "devices",
        "profiles",
    ];
    const KEY: &'static [&'static str] = &["instance", "name"];
    const MUTABLE: &'static [&'static str] = &[
        "created_at",
        "expires_at",
        "stateful",
        "architecture",
        "ephemeral",
        "description",
        "config",
        "devices",
        "profiles",
    ];
    /// Oldest first.
    const ORDER: &'static str = "id";

    fn label(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.instance.clone().into(),
            self.name.clone().into(),
            self.created_at.clone().into(),
            self.expires_at.clone().into(),
            self.stateful.into(),
            self.architecture.clone().into(),
            self.ephemeral.into(),
            self.description.clone().into(),
            json(&self.config)?,
            json(&self.devices)?,
            json(&self.profiles)?,
        ])
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(SnapshotRow {
            instance: r.get(0)?,
            name: r.get(1)?,
            created_at: r.get(2)?,
            expires_at: r.get(3)?,
            stateful: r.get(4)?,
            architecture: r.get(5)?,
            ephemeral: r.get(6)?,
            description: r.get(7)?,
            config: from_json(r, 8)?,
            devices: from_json(r, 9)?,
            profiles: from_json(r, 10)?,
        })
    }
}
