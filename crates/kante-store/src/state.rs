//! The state traits, split by ownership as Incus splits `db.Node` from
//! `db.Cluster`:
//!
//! * [`NodeState`]: what belongs to this member alone: its instances (with
//!   their volatile keys and pending marks), their snapshots and backups,
//!   its storage pools' and custom volumes' records. Always local (SQLite).
//! * [`SharedState`]: what every member sees alike: profiles, networks,
//!   the image index and aliases, server config, certificates, members,
//!   and the reservations that keep names and id blocks unique across
//!   members (and say where an instance is placed). Standalone it is the
//!   same SQLite database; a cluster puts it in etcd behind a local cache.
//!
//! Reservations are compare-and-swap: [`SharedState::reserve`] takes a key
//! only if nobody holds it, atomically, so uniqueness never rests on a lock
//! held in one process (etcd: a transaction comparing the key's revision
//! with 0).

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::{
    AliasRow, BackupRow, CertificateRow, ImageRow, InstanceRow, NetworkRow, PoolRow, ProfileRow,
    Result, SnapshotRow, VolumeRow,
};

/// The only project Kante has (LXD's `project` on every record).
pub const PROJECT: &str = "default";

/// The member name of a host that is not part of a cluster (LXD's
/// `location` of every record then).
pub const STANDALONE_MEMBER: &str = "none";

/// What a reservation keeps unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationKind {
    /// An instance name; the holder is the member it is placed on.
    InstanceName,
    /// A block of subordinate ids (keyed by its first host id); the holder
    /// is the instance it maps.
    IdBlock,
    /// A network address (keyed `<network>/<address>`); the holder is the
    /// instance or device using it.
    Address,
    /// A member claimed by a creation in flight for a placement rule
    /// (keyed `anti-affinity/<tag>/<member>`); the holder is the instance
    /// being made. Held from the scheduler's decision until the instance
    /// is recorded on that member (or its creation failed), so that
    /// concurrent creations see each other's choices.
    Placement,
    /// An overlay network's VXLAN network identifier (keyed by the
    /// number); the holder is the network.
    Vni,
    /// A member's WireGuard public key for an encrypted overlay (keyed
    /// `<network>/<member>`); the "holder" is the key (base64). The
    /// private key never leaves the member.
    WgKey,
    /// A member's number in an overlay (keyed `<network>/<number>`, the
    /// `overlay.slice` of its record entry); the holder is the member.
    /// Taken by members that claim one after the overlay's create (a
    /// joiner), so two claimers never get the same number.
    OverlaySlice,
    /// An address an overlay keeps for an instance that moved between
    /// members (or a NIC's `ipv4.address` on an overlay), keyed
    /// `<network>/<address>`; the holder is `<instance>/<MAC>`. Every
    /// member's dnsmasq for the overlay reserves it for that MAC.
    OverlayAddress,
}

impl ReservationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationKind::InstanceName => "instance",
            ReservationKind::IdBlock => "idblock",
            ReservationKind::Address => "address",
            ReservationKind::Placement => "placement",
            ReservationKind::Vni => "vni",
            ReservationKind::WgKey => "wgkey",
            ReservationKind::OverlaySlice => "ovslice",
            ReservationKind::OverlayAddress => "ovaddr",
        }
    }

    /// How conflicts name a key of this kind (`Instance "c1"`).
    pub fn entity(self) -> &'static str {
        match self {
            ReservationKind::InstanceName => "Instance",
            ReservationKind::IdBlock => "Id block",
            ReservationKind::Address => "Address",
            ReservationKind::Placement => "Placement claim",
            ReservationKind::Vni => "VNI",
            ReservationKind::WgKey => "WireGuard key",
            ReservationKind::OverlaySlice => "Overlay slice",
            ReservationKind::OverlayAddress => "Overlay address",
        }
    }
}

/// A cluster member (standalone: this host, named [`STANDALONE_MEMBER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Where the other members reach it (empty standalone).
    pub address: String,
}

/// This member's own records.
#[async_trait]
pub trait NodeState: Send + Sync {
    // ---- instances placed here ----
    async fn instance_create(&self, row: &InstanceRow) -> Result<()>;
    /// Records an instance whose creation is under way (see
    /// [`NodeState::instance_created`], `pending.rs`).
    async fn instance_create_pending(&self, row: &InstanceRow) -> Result<()>;
    async fn instance_created(&self, name: &str) -> Result<()>;
    /// Names of the instances whose creation never completed, sorted.
    async fn instances_pending(&self) -> Result<Vec<String>>;
    async fn instance_get(&self, name: &str) -> Result<Option<InstanceRow>>;
    async fn instance_list(&self) -> Result<Vec<InstanceRow>>;
    async fn instance_names(&self) -> Result<Vec<String>>;
    async fn instance_update(&self, row: &InstanceRow) -> Result<()>;
    /// Renames an instance record, its snapshots' and backups' following it.
    async fn instance_rename(&self, old: &str, new: &str) -> Result<()>;
    /// Deletes an instance record and its snapshots' and backups'.
    async fn instance_delete(&self, name: &str) -> Result<bool>;
    /// Renames profile `old` to `new` in this member's instance records
    /// (idempotent; see [`SharedState::profile_rename`]).
    async fn instances_rename_profile(&self, old: &str, new: &str) -> Result<()>;

    // ---- snapshots ----
    async fn snapshot_create(&self, row: &SnapshotRow) -> Result<()>;
    async fn snapshot_get(&self, instance: &str, name: &str) -> Result<Option<SnapshotRow>>;
    /// Oldest first.
    async fn snapshot_list(&self, instance: &str) -> Result<Vec<SnapshotRow>>;
    /// Every instance's snapshots in one call (for whole listings).
    async fn snapshot_list_all(&self) -> Result<Vec<SnapshotRow>>;
    async fn snapshot_rename(&self, instance: &str, old: &str, new: &str) -> Result<()>;
    async fn snapshot_set_expiry(&self, instance: &str, name: &str, expires_at: &str)
        -> Result<()>;
    async fn snapshot_delete(&self, instance: &str, name: &str) -> Result<bool>;

    // ---- storage pools (their sources are this host's) ----
    async fn pool_create(&self, row: &PoolRow) -> Result<()>;
    async fn pool_get(&self, name: &str) -> Result<Option<PoolRow>>;
    async fn pool_list(&self) -> Result<Vec<PoolRow>>;
    async fn pool_update(&self, row: &PoolRow) -> Result<()>;
    async fn pool_delete(&self, name: &str) -> Result<bool>;

    // ---- custom volumes' records (their content is the pool's) ----
    /// Records a custom volume, or replaces its record (a pending one
    /// stays pending).
    async fn volume_put(&self, row: &VolumeRow) -> Result<()>;
    /// Records a custom volume being made, pending (`pending.rs`); a taken
    /// name, complete or pending, is a conflict.
    async fn volume_create_pending(&self, row: &VolumeRow) -> Result<()>;
    /// Marks a custom volume's record complete.
    async fn volume_created(&self, pool: &str, name: &str) -> Result<()>;
    /// Marks a complete record pending before its volume is deleted; false
    /// if there is none or it already is pending.
    async fn volume_deleting(&self, pool: &str, name: &str) -> Result<bool>;
    /// A complete record.
    async fn volume_get(&self, pool: &str, name: &str) -> Result<Option<VolumeRow>>;
    /// A pool's complete records, by name.
    async fn volume_list(&self, pool: &str) -> Result<Vec<VolumeRow>>;
    /// `(pool, name)` of the records still pending.
    async fn volumes_pending(&self) -> Result<Vec<(String, String)>>;
    async fn volume_rename(&self, pool: &str, old: &str, new: &str) -> Result<()>;
    /// Deletes a record, complete or pending.
    async fn volume_delete(&self, pool: &str, name: &str) -> Result<bool>;
    /// Deletes a complete record (one left without its volume); false if
    /// there is none or it is pending.
    async fn volume_delete_stale(&self, pool: &str, name: &str) -> Result<bool>;

    // ---- instance backups' records (their tarballs are files) ----
    /// Records a backup being made, pending; a taken name is a conflict.
    async fn backup_create_pending(&self, row: &BackupRow) -> Result<()>;
    /// Marks a backup's record complete (its tarball is made).
    async fn backup_created(&self, instance: &str, name: &str) -> Result<()>;
    /// Records a complete backup, or replaces its record.
    async fn backup_put(&self, row: &BackupRow) -> Result<()>;
    /// A complete record.
    async fn backup_get(&self, instance: &str, name: &str) -> Result<Option<BackupRow>>;
    /// An instance's complete records, by name.
    async fn backup_list(&self, instance: &str) -> Result<Vec<BackupRow>>;
    /// Every complete record of this member.
    async fn backup_list_all(&self) -> Result<Vec<BackupRow>>;
    /// `(instance, name)` of the records still pending.
    async fn backups_pending(&self) -> Result<Vec<(String, String)>>;
    async fn backup_rename(&self, instance: &str, old: &str, new: &str) -> Result<()>;
    /// Deletes a record, complete or pending.
    async fn backup_delete(&self, instance: &str, name: &str) -> Result<bool>;
}

/// Records every member sees alike.
#[async_trait]
pub trait SharedState: Send + Sync {
    // ---- members and placement ----
    /// The member this daemon is.
    async fn local_member(&self) -> Result<Member>;
    async fn members(&self) -> Result<Vec<Member>>;

    // ---- reservations (compare-and-swap) ----
    /// Takes `key` for `holder` if nobody holds it (compare-and-swap on
    /// absence: of concurrent callers exactly one wins, whoever they are).
    /// A held key, even by `holder`, is [`crate::StoreError::Conflict`].
    async fn reserve(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<()>;
    /// Gives `key` up if `holder` has it; false if it did not.
    async fn release(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<bool>;
    /// Moves `key` from `from` to `to` (a rename), if `from` has it.
    async fn transfer(
        &self,
        kind: ReservationKind,
        key: &str,
        from: &str,
        to: &str,
    ) -> Result<bool>;
    /// Every reservation of `kind`, key to holder.
    async fn reservations(&self, kind: ReservationKind) -> Result<BTreeMap<String, String>>;

    // ---- profiles ----
    async fn profile_create(&self, row: &ProfileRow) -> Result<()>;
    async fn profile_get(&self, name: &str) -> Result<Option<ProfileRow>>;
    async fn profile_list(&self) -> Result<Vec<ProfileRow>>;
    async fn profile_update(&self, row: &ProfileRow) -> Result<()>;
    /// Renames a profile and the shared references to it (images); each
    /// member renames its instances' with
    /// [`NodeState::instances_rename_profile`]. (Standalone SQLite does it
    /// all in this one transaction.)
    async fn profile_rename(&self, name: &str, new: &str) -> Result<()>;
    async fn profile_delete(&self, name: &str) -> Result<bool>;

    // ---- networks ----
    async fn network_create(&self, row: &NetworkRow) -> Result<()>;
    async fn network_get(&self, name: &str) -> Result<Option<NetworkRow>>;
    async fn network_list(&self) -> Result<Vec<NetworkRow>>;
    async fn network_update(&self, row: &NetworkRow) -> Result<()>;
    async fn network_delete(&self, name: &str) -> Result<bool>;

    // ---- image index and aliases ----
    async fn image_create(&self, row: &ImageRow) -> Result<()>;
    /// By full fingerprint or unique prefix (an ambiguous one is a conflict).
    async fn image_get(&self, fp_or_prefix: &str) -> Result<Option<ImageRow>>;
    async fn image_list(&self) -> Result<Vec<ImageRow>>;
    async fn image_update(&self, row: &ImageRow) -> Result<()>;
    /// Deletes an image and its aliases.
    async fn image_delete(&self, fingerprint: &str) -> Result<bool>;
    async fn alias_create(&self, row: &AliasRow) -> Result<()>;
    async fn alias_get(&self, name: &str) -> Result<Option<AliasRow>>;
    async fn alias_list(&self) -> Result<Vec<AliasRow>>;
    async fn alias_update(&self, row: &AliasRow) -> Result<()>;
    async fn alias_rename(&self, old: &str, new: &str) -> Result<()>;
    async fn alias_delete(&self, name: &str) -> Result<bool>;

    // ---- server config ----
    async fn config_all(&self) -> Result<BTreeMap<String, String>>;
    /// Replaces the whole server config at once.
    async fn config_replace(&self, config: &BTreeMap<String, String>) -> Result<()>;

    // ---- certificates (trusted clients) ----
    async fn certificate_create(&self, row: &CertificateRow) -> Result<()>;
    async fn certificate_get(&self, fingerprint: &str) -> Result<Option<CertificateRow>>;
    async fn certificate_list(&self) -> Result<Vec<CertificateRow>>;
    /// Rewrites name, type, restricted, description and projects.
    async fn certificate_update(&self, row: &CertificateRow) -> Result<()>;
    async fn certificate_delete(&self, fingerprint: &str) -> Result<bool>;
}
