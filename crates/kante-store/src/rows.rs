//! Row types and how each maps to its table, declared with [`record!`]
//! (`columns.rs`): a field list with the column of each field, then the
//! table, its key, the columns an update rewrites and the list order.

use std::collections::BTreeMap;

use kante_api::{ConfigMap, DevicesMap};

record! {
    /// An instance placed on this member.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct InstanceRow {
        name: String => "name",
        project: String => "project",
        kind: String => "type",
        architecture: String => "architecture",
        ephemeral: bool => "ephemeral",
        stateful: bool => "stateful",
        description: String => "description",
        /// RFC 3339.
        created_at: String => "created_at",
        last_used_at: String => "last_used_at",
        config: ConfigMap => "config",
        devices: DevicesMap => "devices",
        profiles: Vec<String> => "profiles",
    }
    table: "instances", entity: "Instance", key: ["name"],
    mutable: [
        "architecture", "ephemeral", "stateful", "description", "last_used_at",
        "config", "devices", "profiles",
    ],
    order: "name", label: name,
}

record! {
    /// A profile.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ProfileRow {
        name: String => "name",
        description: String => "description",
        config: ConfigMap => "config",
        devices: DevicesMap => "devices",
    }
    table: "profiles", entity: "Profile", key: ["name"],
    mutable: ["description", "config", "devices"], order: "name", label: name,
}

record! {
    /// An image of the index.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ImageRow {
        fingerprint: String => "fingerprint",
        filename: String => "filename",
        size: i64 => "size",
        architecture: String => "architecture",
        kind: String => "type",
        public: bool => "public",
        auto_update: bool => "auto_update",
        cached: bool => "cached",
        properties: ConfigMap => "properties",
        profiles: Vec<String> => "profiles",
        created_at: String => "created_at",
        uploaded_at: String => "uploaded_at",
        last_used_at: String => "last_used_at",
        expires_at: String => "expires_at",
        /// Where a pulled image came from (server, protocol, certificate,
        /// alias or fingerprint), what a refresh asks again; empty for
        /// an upload or a publish.
        update_source: ConfigMap => "update_source",
    }
    table: "images", entity: "Image", key: ["fingerprint"],
    mutable: ["public", "auto_update", "cached", "properties", "profiles", "last_used_at", "update_source"],
    order: "uploaded_at", label: fingerprint,
}

record! {
    /// An image alias.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AliasRow {
        name: String => "name",
        target: String => "target",
        description: String => "description",
    }
    table: "image_aliases", entity: "Alias", key: ["name"],
    mutable: ["target", "description"], order: "name", label: name,
}

record! {
    /// A storage pool.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PoolRow {
        name: String => "name",
        driver: String => "driver",
        description: String => "description",
        config: ConfigMap => "config",
    }
    table: "storage_pools", entity: "Storage pool", key: ["name"],
    mutable: ["description", "config"], order: "name", label: name,
}

record! {
    /// A managed network.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct NetworkRow {
        name: String => "name",
        kind: String => "type",
        description: String => "description",
        config: ConfigMap => "config",
        /// In a cluster: `Pending` while only members' keys are defined
        /// (`network create --target`), `Errored` while a create did not
        /// reach every member; empty (or `Created`) once made.
        status: String => "status",
        /// In a cluster: each member's own keys (`bridge.external_interfaces`,
        /// `parent`, …), merged over `config` on that member.
        members: BTreeMap<String, ConfigMap> => "members",
    }
    table: "networks", entity: "Network", key: ["name"],
    mutable: ["description", "config", "status", "members"], order: "name", label: name,
}

record! {
    /// An instance snapshot (listed oldest first: by row id).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SnapshotRow {
        instance: String => "instance",
        name: String => "name",
        created_at: String => "created_at",
        expires_at: String => "expires_at",
        stateful: bool => "stateful",
        architecture: String => "architecture",
        ephemeral: bool => "ephemeral",
        description: String => "description",
        config: ConfigMap => "config",
        devices: DevicesMap => "devices",
        profiles: Vec<String> => "profiles",
    }
    table: "snapshots", entity: "Snapshot", key: ["instance", "name"],
    mutable: [
        "created_at", "expires_at", "stateful", "architecture", "ephemeral",
        "description", "config", "devices", "profiles",
    ],
    order: "id", label: name,
}
