//! [`Request`]: every API verb as one typed value, with the object it is
//! about ([`Target`]) and a static name for logs and metrics.

use std::time::Duration;

use kante_api::backup::InstanceBackupsPost;
use kante_api::certificate::{CertificatePut, CertificatesPost};
use kante_api::console::ConsolePost;
use kante_api::exec::ExecPost;
use kante_api::image::{ImageAliasesPost, ImagePut, ImagesPost};
use kante_api::instance::{InstancePost, InstancePut, InstanceStatePut, InstancesPost};
use kante_api::network::{NetworkPut, NetworksPost};
use kante_api::profile::{ProfilePut, ProfilesPost};
use kante_api::project::ProjectPut;
use kante_api::storage::{
    StoragePoolPut, StoragePoolsPost, StorageVolumePost, StorageVolumePut, StorageVolumesPost,
    VolumeSnapshotsPost,
};
use kante_api::{ConfigMap, Timestamp};

use super::upload::{ByteStream, ImageUploadInfo, UploadBody};
use crate::instance::files::FilePut;
use crate::instance::snapshots::SnapshotsPost;

/// How much of each instance a listing carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListDetail {
    /// Names only (rendered as URLs).
    Names,
    /// The instances as `GET /1.0/instances/{name}` shows them.
    Records,
    /// With state, snapshots and backups (`recursion=2`).
    Full,
}

/// One API verb with its arguments. Names are the object's names as the
/// URL gives them (`instance`, `pool`, …); bodies are kante_api's request
/// types; uploads carry their byte stream.
pub enum Request {
    // The server, its operations and events.
    ServerGet,
    ServerUpdate {
        config: ConfigMap,
        merge: bool,
    },
    /// The operations of this member, and with `all_members` (a client's
    /// request, not another member's) those of every online member.
    OperationList {
        all_members: bool,
    },
    OperationGet {
        id: String,
    },
    OperationCancel {
        id: String,
    },
    /// Waits for the operation to end (or `timeout`), then shows it.
    OperationWait {
        id: String,
        timeout: Option<Duration>,
    },
    /// Claims one of an operation's websockets by its secret.
    OperationSocket {
        id: String,
        secret: String,
    },
    /// Subscribes to the event bus; `types` empty means all.
    Events {
        types: Vec<String>,
    },

    // The trust store.
    CertificateList,
    /// Adds a certificate (by a trusted caller, a token or the trust
    /// password) or, with `token: true`, makes a trust token.
    CertificateCreate(Box<CertificatesPost>),
    CertificateGet {
        fingerprint: String,
    },
    CertificateUpdate {
        fingerprint: String,
        put: CertificatePut,
        merge: bool,
    },
    CertificateDelete {
        fingerprint: String,
    },
    /// Exchanges a web view login link's token for a session (see
    /// `remote::sessions`).
    UiLogin {
        token: String,
    },
    /// Ends a web view session (its id, from the cookie).
    UiLogout {
        session: String,
    },

    // Instances.
    InstanceList {
        detail: ListDetail,
        /// LXD's `filter=` (empty: everything).
        filter: String,
        /// On a clustered member, every member's instances (each member
        /// asked in parallel); `false`: this member's only (what a
        /// member asks another for).
        all_members: bool,
    },
    InstanceCreate(Box<InstancesPost>),
    /// A backup tarball to make an instance from (`X-LXD-name`, `X-LXD-pool`).
    InstanceImport {
        body: ByteStream,
        name: Option<String>,
        pool: Option<String>,
    },
    InstanceGet {
        instance: String,
        full: bool,
    },
    /// PUT: a whole update, or a restore when `put.restore` is set.
    InstanceUpdate {
        instance: String,
        put: InstancePut,
    },
    /// PATCH: the raw body, since which keys it names matters.
    InstancePatch {
        instance: String,
        body: serde_json::Value,
    },
    InstanceDelete {
        instance: String,
    },
    /// POST: a rename, or the sending side of a migration (`migration`),
    /// or with `?target=MEMBER` and `migration` a move to that member.
    InstanceRename {
        instance: String,
        post: InstancePost,
        target: Option<String>,
    },
    InstanceStateGet {
        instance: String,
    },
    InstanceStatePut {
        instance: String,
        put: InstanceStatePut,
    },
    InstanceExec {
        instance: String,
        post: ExecPost,
    },
    ConsoleLog {
        instance: String,
    },
    ConsoleClear {
        instance: String,
    },
    /// Attaching a terminal to the console (an operation with websockets).
    ConsoleAttach {
        instance: String,
        post: ConsolePost,
    },
    LogList {
        instance: String,
    },
    LogGet {
        instance: String,
        file: String,
    },
    SnapshotList {
        instance: String,
    },
    SnapshotCreate {
        instance: String,
        post: SnapshotsPost,
    },
    SnapshotGet {
        instance: String,
        snapshot: String,
    },
    /// POST on a snapshot: a rename, or the sending side of a migration
    /// of that snapshot as a new instance (`migration`).
    SnapshotRename {
        instance: String,
        snapshot: String,
        post: InstancePost,
    },
    SnapshotUpdate {
        instance: String,
        snapshot: String,
        expires_at: Option<Timestamp>,
    },
    SnapshotDelete {
        instance: String,
        snapshot: String,
    },
    BackupList {
        instance: String,
    },
    BackupCreate {
        instance: String,
        post: InstanceBackupsPost,
    },
    BackupGet {
        instance: String,
        backup: String,
    },
    BackupRename {
        instance: String,
        backup: String,
        new_name: String,
    },
    BackupDelete {
        instance: String,
        backup: String,
    },
    BackupExport {
        instance: String,
        backup: String,
    },
    FileGet {
        instance: String,
        path: String,
    },
    /// Writes `body` at `path` (a file's content, a symlink's target, nothing
    /// for a directory).
    FilePush {
        instance: String,
        path: String,
        put: FilePut,
        body: ByteStream,
    },
    FileDelete {
        instance: String,
        path: String,
    },

    // Images and aliases.
    ImageList,
    /// The JSON form of `POST /1.0/images` (a remote source).
    ImageCreate(ImagesPost),
    ImageUpload {
        info: ImageUploadInfo,
        body: UploadBody,
    },
    /// An image; an untrusted caller sees a private one only with a
    /// live secret of `ImageSecret` (`?secret=`).
    ImageGet {
        fingerprint: String,
        secret: Option<String>,
    },
    ImageUpdate {
        fingerprint: String,
        put: ImagePut,
        merge: bool,
    },
    ImageDelete {
        fingerprint: String,
    },
    /// An image's files; a secret of `ImageSecret` is used up by it.
    ImageExport {
        fingerprint: String,
        secret: Option<String>,
    },
    /// `POST /1.0/images/{fp}/secret`: a one-time secret (an operation
    /// of class `token`) by which an untrusted server may download a
    /// private image, as `lxc image copy` asks the source for.
    ImageSecret {
        fingerprint: String,
    },
    /// `POST /1.0/images/{fp}/refresh`: fetches a newer image from the
    /// source the image came from, if there is one.
    ImageRefresh {
        fingerprint: String,
    },
    AliasList,
    AliasCreate(ImageAliasesPost),
    AliasGet {
        name: String,
    },
    AliasUpdate {
        name: String,
        target: String,
        description: String,
    },
    AliasRename {
        name: String,
        new_name: String,
    },
    AliasDelete {
        name: String,
    },

    // Profiles.
    ProfileList,
    ProfileCreate(ProfilesPost),
    ProfileGet {
        name: String,
    },
    /// PUT, or PATCH when `merge` (given keys and devices are added or
    /// replaced, a non-empty description replaces the old one).
    ProfileUpdate {
        name: String,
        put: ProfilePut,
        merge: bool,
    },
    ProfileRename {
        name: String,
        new_name: String,
    },
    ProfileDelete {
        name: String,
    },

    // Networks.
    NetworkList,
    /// `target`: only that member's keys, recorded pending (`?target=`);
    /// `notified`: a member's global create telling this one to make it.
    NetworkCreate {
        post: NetworksPost,
        target: Option<String>,
        notified: bool,
    },
    /// `target`: that member's view.
    NetworkGet {
        name: String,
        target: Option<String>,
    },
    /// `target`: that member's own keys; `notified`: a member's change of
    /// the global keys telling this one to apply it (`put`: its merged view).
    NetworkUpdate {
        name: String,
        put: NetworkPut,
        merge: bool,
        target: Option<String>,
        notified: bool,
    },
    /// Renames a managed network nothing uses (standalone servers only).
    NetworkRename {
        name: String,
        new_name: String,
    },
    /// `notified`: a member's delete telling this one to delete its own.
    NetworkDelete {
        name: String,
        notified: bool,
    },
    NetworkState {
        name: String,
    },
    NetworkLeases {
        name: String,
    },

    // Storage pools and their volumes (`kind` is the URL's volume type).
    PoolList,
    PoolCreate(StoragePoolsPost),
    PoolGet {
        pool: String,
    },
    PoolUpdate {
        pool: String,
        put: StoragePoolPut,
        merge: bool,
    },
    PoolDelete {
        pool: String,
    },
    /// All kinds when `kind` is `None`; with `all_members` (a client's
    /// request to a clustered member) every member's.
    VolumeList {
        pool: String,
        kind: Option<String>,
        all_members: bool,
    },
    /// `kind` from the URL, if it names one; it must agree with the body's.
    VolumeCreate {
        pool: String,
        kind: Option<String>,
        post: StorageVolumesPost,
    },
    VolumeGet {
        pool: String,
        kind: String,
        volume: String,
    },
    VolumeUpdate {
        pool: String,
        kind: String,
        volume: String,
        put: StorageVolumePut,
        merge: bool,
    },
    VolumeRename {
        pool: String,
        kind: String,
        volume: String,
        post: StorageVolumePost,
    },
    VolumeDelete {
        pool: String,
        kind: String,
        volume: String,
    },
    VolumeSnapshotList {
        pool: String,
        kind: String,
        volume: String,
    },
    VolumeSnapshotCreate {
        pool: String,
        kind: String,
        volume: String,
        post: VolumeSnapshotsPost,
    },
    VolumeSnapshotGet {
        pool: String,
        kind: String,
        volume: String,
        snapshot: String,
    },
    VolumeSnapshotDelete {
        pool: String,
        kind: String,
        volume: String,
        snapshot: String,
    },

    // The host, projects, warnings and metrics (see `super::server_api`).
    /// OpenMetrics text of the running instances.
    Metrics,
    Resources,
    PoolResources {
        pool: String,
    },
    ProjectList,
    ProjectCreate {
        name: String,
    },
    ProjectGet {
        name: String,
    },
    ProjectUpdate {
        name: String,
        put: ProjectPut,
        merge: bool,
    },
    ProjectRename {
        name: String,
    },
    ProjectDelete {
        name: String,
    },
    WarningList,
    WarningGet {
        id: String,
    },

    // The cluster (`crate::cluster`).
    ClusterGet,
    /// Enables clustering, or joins with a token.
    ClusterPut(Box<kante_api::cluster::ClusterPut>),
    ClusterMembers,
    ClusterMemberGet {
        name: String,
    },
    ClusterMemberDelete {
        name: String,
        force: bool,
    },
    /// A join token for a new member.
    ClusterMemberAdd(kante_api::cluster::ClusterMembersPost),
    /// Evacuates or restores member `name` (`evacuate.rs`), served by it.
    ClusterMemberState {
        name: String,
        post: kante_api::cluster::ClusterMemberStatePost,
    },
    /// Member `name`'s load, memory and pools (`GET
    /// /1.0/cluster/members/NAME/state`), served by it; a standalone
    /// server answers for its own name.
    ClusterMemberStateGet {
        name: String,
    },
    /// A joining member's request (open to untrusted callers: its token's
    /// secret is the credential).
    ClusterAccept(Box<kante_api::cluster::ClusterAcceptPost>),
    /// Member `name`'s groups (`PUT /1.0/cluster/members/NAME`).
    ClusterMemberPut {
        name: String,
        put: kante_api::cluster::ClusterMemberPut,
    },
    /// Cluster groups (`/1.0/cluster/groups`; kante-cluster's
    /// `manager/groups.rs`).
    ClusterGroups,
    ClusterGroupGet {
        name: String,
    },
    ClusterGroupCreate(kante_api::cluster::ClusterGroup),
    ClusterGroupUpdate {
        name: String,
        put: kante_api::cluster::ClusterGroupPut,
    },
    ClusterGroupRename {
        name: String,
        new: String,
    },
    ClusterGroupDelete {
        name: String,
    },
    /// The cluster's live services (`GET /1.0/services`, a Kante
    /// extension; see `crate::services`).
    ServiceList,
}

/// The object a request is about: where a cluster sends it (see the
/// module docs of [`crate::front`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An instance: served by the member that holds it.
    Instance(String),
    /// An image by fingerprint.
    Image(String),
    /// A network (defined for all members, realised on each).
    Network(String),
    /// A storage pool (defined for all members, realised on each).
    Pool(String),
    /// A volume of a pool: served by the member that holds it.
    Volume { pool: String, name: String },
    /// An operation: served by the member that runs it.
    Operation(String),
    /// A cluster member's own verb (its evacuation): served by it.
    ClusterMember(String),
    /// The server as a whole: shared records (profiles, aliases, config),
    /// whole-server lists and new objects whose member placement picks.
    Server,
    /// This member only, never forwarded (its event stream, uploads that
    /// arrive here).
    Member,
}

impl Request {
    /// The verb's static name (`instance_create`, …), for logs and metrics.
    pub fn name(&self) -> &'static str {
        use Request::*;
        match self {
            ServerGet => "server_get",
            ServerUpdate { .. } => "server_update",
            OperationList { .. } => "operation_list",
            OperationGet { .. } => "operation_get",
            OperationCancel { .. } => "operation_cancel",
            OperationWait { .. } => "operation_wait",
            OperationSocket { .. } => "operation_socket",
            Events { .. } => "events",
            CertificateList => "certificate_list",
            CertificateCreate(_) => "certificate_create",
            CertificateGet { .. } => "certificate_get",
            CertificateUpdate { .. } => "certificate_update",
            CertificateDelete { .. } => "certificate_delete",
            UiLogin { .. } => "ui_login",
            UiLogout { .. } => "ui_logout",
            InstanceList { .. } => "instance_list",
            InstanceCreate(_) => "instance_create",
            InstanceImport { .. } => "instance_import",
            InstanceGet { .. } => "instance_get",
            InstanceUpdate { .. } => "instance_update",
            InstancePatch { .. } => "instance_patch",
            InstanceDelete { .. } => "instance_delete",
            InstanceRename { .. } => "instance_rename",
            InstanceStateGet { .. } => "instance_state_get",
            InstanceStatePut { .. } => "instance_state_put",
            InstanceExec { .. } => "instance_exec",
            ConsoleLog { .. } => "console_log",
            ConsoleClear { .. } => "console_clear",
            ConsoleAttach { .. } => "console_attach",
            LogList { .. } => "log_list",
            LogGet { .. } => "log_get",
            SnapshotList { .. } => "snapshot_list",
            SnapshotCreate { .. } => "snapshot_create",
            SnapshotGet { .. } => "snapshot_get",
            SnapshotRename { .. } => "snapshot_rename",
            SnapshotUpdate { .. } => "snapshot_update",
            SnapshotDelete { .. } => "snapshot_delete",
            BackupList { .. } => "backup_list",
            BackupCreate { .. } => "backup_create",
            BackupGet { .. } => "backup_get",
            BackupRename { .. } => "backup_rename",
            BackupDelete { .. } => "backup_delete",
            BackupExport { .. } => "backup_export",
            FileGet { .. } => "file_get",
            FilePush { .. } => "file_push",
            FileDelete { .. } => "file_delete",
            ImageList => "image_list",
            ImageCreate(_) => "image_create",
            ImageUpload { .. } => "image_upload",
            ImageGet { .. } => "image_get",
            ImageUpdate { .. } => "image_update",
            ImageDelete { .. } => "image_delete",
            ImageExport { .. } => "image_export",
            ImageSecret { .. } => "image_secret",
            ImageRefresh { .. } => "image_refresh",
            AliasList => "alias_list",
            AliasCreate(_) => "alias_create",
            AliasGet { .. } => "alias_get",
            AliasUpdate { .. } => "alias_update",
            AliasRename { .. } => "alias_rename",
            AliasDelete { .. } => "alias_delete",
            ProfileList => "profile_list",
            ProfileCreate(_) => "profile_create",
            ProfileGet { .. } => "profile_get",
            ProfileUpdate { .. } => "profile_update",
            ProfileRename { .. } => "profile_rename",
            ProfileDelete { .. } => "profile_delete",
            NetworkList => "network_list",
            NetworkCreate { .. } => "network_create",
            NetworkGet { .. } => "network_get",
            NetworkUpdate { .. } => "network_update",
            NetworkRename { .. } => "network_rename",
            NetworkDelete { .. } => "network_delete",
            NetworkState { .. } => "network_state",
            NetworkLeases { .. } => "network_leases",
            PoolList => "pool_list",
            PoolCreate(_) => "pool_create",
            PoolGet { .. } => "pool_get",
            PoolUpdate { .. } => "pool_update",
            PoolDelete { .. } => "pool_delete",
            VolumeList { .. } => "volume_list",
            VolumeCreate { .. } => "volume_create",
            VolumeGet { .. } => "volume_get",
            VolumeUpdate { .. } => "volume_update",
            VolumeRename { .. } => "volume_rename",
            VolumeDelete { .. } => "volume_delete",
            VolumeSnapshotList { .. } => "volume_snapshot_list",
            VolumeSnapshotCreate { .. } => "volume_snapshot_create",
            VolumeSnapshotGet { .. } => "volume_snapshot_get",
            VolumeSnapshotDelete { .. } => "volume_snapshot_delete",
            Metrics => "metrics",
            Resources => "resources",
            PoolResources { .. } => "pool_resources",
            ProjectList => "project_list",
            ProjectCreate { .. } => "project_create",
            ProjectGet { .. } => "project_get",
            ProjectUpdate { .. } => "project_update",
            ProjectRename { .. } => "project_rename",
            ProjectDelete { .. } => "project_delete",
            WarningList => "warning_list",
            WarningGet { .. } => "warning_get",
            ClusterGet => "cluster_get",
            ClusterPut(_) => "cluster_put",
            ClusterMembers => "cluster_members",
            ServiceList => "service_list",
            ClusterMemberGet { .. } => "cluster_member_get",
            ClusterMemberDelete { .. } => "cluster_member_delete",
            ClusterMemberAdd(_) => "cluster_member_add",
            ClusterMemberState { .. } => "cluster_member_state",
            ClusterMemberStateGet { .. } => "cluster_member_state_get",
            ClusterAccept(_) => "cluster_accept",
            ClusterMemberPut { .. } => "cluster_member_put",
            ClusterGroups => "cluster_groups",
            ClusterGroupGet { .. } => "cluster_group_get",
            ClusterGroupCreate(_) => "cluster_group_create",
            ClusterGroupUpdate { .. } => "cluster_group_update",
            ClusterGroupRename { .. } => "cluster_group_rename",
            ClusterGroupDelete { .. } => "cluster_group_delete",
        }
    }

    /// Whether an untrusted caller may make this request: only `GET /1.0`,
    /// `POST /1.0/certificates`, an operation's websocket by its secret,
    /// and the image server's reads (which then show public images only;
    /// see `crate::remote`).
    pub fn open_to_untrusted(&self) -> bool {
        use Request::*;
        matches!(
            self,
            ServerGet | CertificateCreate(_) | OperationSocket { .. } | ImageList | ImageGet { .. }
        ) || matches!(
            self,
            ImageExport { .. } | AliasList | AliasGet { .. } | ClusterAccept(_) | UiLogin { .. }
        )
    }

    /// What the request is about, decided from the request alone (no
    /// state read): where a cluster forwards it before any local logic.
    pub fn target(&self) -> Target {
        use Request::*;
        match self {
            ServerGet | ServerUpdate { .. } | OperationList { .. } | InstanceList { .. } => {
                Target::Server
            }
            CertificateList | CertificateCreate(_) | CertificateGet { .. } => Target::Server,
            CertificateUpdate { .. } | CertificateDelete { .. } => Target::Server,
            UiLogin { .. } | UiLogout { .. } => Target::Server,
            InstanceCreate(_) | InstanceImport { .. } | ImageCreate(_) => Target::Server,
            ImageList | AliasList | ProfileList | NetworkList | PoolList => Target::Server,
            AliasCreate(_) | AliasGet { .. } | AliasUpdate { .. } => Target::Server,
            AliasRename { .. } | AliasDelete { .. } => Target::Server,
            ProfileCreate(_) | ProfileGet { .. } | ProfileUpdate { .. } => Target::Server,
            ProfileRename { .. } | ProfileDelete { .. } => Target::Server,
            NetworkCreate { .. } | PoolCreate(_) => Target::Server,
            ProjectList | ProjectCreate { .. } | ProjectGet { .. } => Target::Server,
            ProjectUpdate { .. } | ProjectRename { .. } | ProjectDelete { .. } => Target::Server,
            WarningList | WarningGet { .. } => Target::Server,
            ClusterGet | ClusterMembers | ClusterMemberGet { .. } => Target::Server,
            ServiceList => Target::Server,
            ClusterMemberDelete { .. } | ClusterMemberAdd(_) => Target::Server,
            ClusterMemberPut { .. } | ClusterGroups | ClusterGroupGet { .. } => Target::Server,
            ClusterGroupCreate(_) | ClusterGroupUpdate { .. } => Target::Server,
            ClusterGroupRename { .. } | ClusterGroupDelete { .. } => Target::Server,
            ClusterPut(_) | ClusterAccept(_) => Target::Member,
            ClusterMemberState { name, .. } | ClusterMemberStateGet { name } => {
                Target::ClusterMember(name.clone())
            }
            // What this member runs and has.
            Metrics | Resources => Target::Member,
            PoolResources { pool } => Target::Pool(pool.clone()),
            Events { .. } | ImageUpload { .. } => Target::Member,
            OperationGet { id }
            | OperationCancel { id }
            | OperationWait { id, .. }
            | OperationSocket { id, .. } => Target::Operation(id.clone()),
            InstanceGet { instance, .. }
            | InstanceUpdate { instance, .. }
            | InstancePatch { instance, .. }
            | InstanceDelete { instance }
            | InstanceRename { instance, .. }
            | InstanceStateGet { instance }
            | InstanceStatePut { instance, .. }
            | InstanceExec { instance, .. }
            | ConsoleLog { instance }
            | ConsoleClear { instance }
            | ConsoleAttach { instance, .. }
            | LogList { instance }
            | LogGet { instance, .. }
            | SnapshotList { instance }
            | SnapshotCreate { instance, .. }
            | SnapshotGet { instance, .. }
            | SnapshotRename { instance, .. }
            | SnapshotUpdate { instance, .. }
            | SnapshotDelete { instance, .. }
            | BackupList { instance }
            | BackupCreate { instance, .. }
            | BackupGet { instance, .. }
            | BackupRename { instance, .. }
            | BackupDelete { instance, .. }
            | BackupExport { instance, .. }
            | FileGet { instance, .. }
            | FilePush { instance, .. }
            | FileDelete { instance, .. } => Target::Instance(instance.clone()),
            ImageGet { fingerprint, .. }
            | ImageUpdate { fingerprint, .. }
            | ImageDelete { fingerprint }
            | ImageExport { fingerprint, .. }
            | ImageSecret { fingerprint }
            | ImageRefresh { fingerprint } => Target::Image(fingerprint.clone()),
            NetworkGet { name, .. }
            | NetworkUpdate { name, .. }
            | NetworkRename { name, .. }
            | NetworkDelete { name, .. }
            | NetworkState { name }
            | NetworkLeases { name } => Target::Network(name.clone()),
            PoolGet { pool } | PoolUpdate { pool, .. } | PoolDelete { pool } => {
                Target::Pool(pool.clone())
            }
            VolumeList { pool, .. } | VolumeCreate { pool, .. } => Target::Pool(pool.clone()),
            VolumeGet { pool, volume, .. }
            | VolumeUpdate { pool, volume, .. }
            | VolumeRename { pool, volume, .. }
            | VolumeDelete { pool, volume, .. }
            | VolumeSnapshotList { pool, volume, .. }
            | VolumeSnapshotCreate { pool, volume, .. }
            | VolumeSnapshotGet { pool, volume, .. }
            | VolumeSnapshotDelete { pool, volume, .. } => Target::Volume {
                pool: pool.clone(),
                name: volume.clone(),
            },
        }
    }
}

impl std::fmt::Debug for Request {
    /// The verb and its target: bodies and streams are left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("verb", &self.name())
            .field("target", &self.target())
            .finish()
    }
}
