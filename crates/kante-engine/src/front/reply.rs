//! [`Reply`]: what the engine answers a [`super::Request`] with, typed, for
//! the HTTP layer to render (a JSON document, an operation, an empty
//! success, a created object's location, bytes or a stream).

use std::collections::BTreeMap;
use std::sync::Arc;

use kante_api::backup::InstanceBackup;
use kante_api::certificate::Certificate;
use kante_api::event::Event;
use kante_api::image::{Image, ImageAlias};
use kante_api::instance::{Instance, InstanceFull, InstanceSnapshot, InstanceState};
use kante_api::network::{Network, NetworkLease, NetworkState};
use kante_api::operation::Operation;
use kante_api::profile::Profile;
use kante_api::project::Project;
use kante_api::resources::{PoolResources, Resources};
use kante_api::server::{Server, ServerUntrusted};
use kante_api::storage::{StoragePool, StorageVolume, StorageVolumeSnapshot};
use tokio::sync::{broadcast, oneshot};

use crate::error::{EngineError, Result};
use crate::instance::files::FileGet;
use crate::instance::live::ChangeReport;
use crate::operations::Op;
use crate::ws::WsConn;

/// The engine's answer to one request.
pub enum Reply {
    /// Success with nothing to show.
    Empty,
    /// A new object at `location` (an API path).
    Created {
        location: String,
    },
    /// Long work, started: it goes on in this operation.
    Operation(Arc<Op>),
    /// An operation as it is now (a `GET` or the end of a wait).
    OperationState(Operation),
    Operations(Vec<Operation>),
    Server(Box<Server>),
    /// `GET /1.0` as an untrusted caller sees it.
    ServerUntrusted(Box<ServerUntrusted>),
    Certificates(Vec<Certificate>),
    Certificate(Box<Certificate>),
    /// A web view session just opened: its id goes into the cookie.
    UiSession(crate::remote::sessions::Session),
    /// Instance names (no details were asked for).
    InstanceNames(Vec<String>),
    Instances(Vec<Instance>),
    InstancesFull(Vec<InstanceFull>),
    Instance(Box<Instance>),
    InstanceFull(Box<InstanceFull>),
    InstanceState(Box<InstanceState>),
    /// What a change did at once and what waits for the next start.
    Changes(ChangeReport),
    /// The changes a profile update made, per instance using the profile.
    ProfileChanges(BTreeMap<String, ChangeReport>),
    Snapshots {
        instance: String,
        snapshots: Vec<InstanceSnapshot>,
    },
    Snapshot(Box<InstanceSnapshot>),
    Backups {
        instance: String,
        backups: Vec<InstanceBackup>,
    },
    Backup(Box<InstanceBackup>),
    /// The log files an instance has.
    Logs {
        instance: String,
        files: Vec<String>,
    },
    /// Plain text (a log).
    Text(Vec<u8>),
    /// Raw bytes (the console's buffer).
    Binary(Vec<u8>),
    /// A file, directory or symlink read from an instance at `path`.
    File {
        path: String,
        got: FileGet,
    },
    /// Files to stream to the client (an export).
    Download(Download),
    Images(Vec<Image>),
    Image(Box<Image>),
    Aliases(Vec<ImageAlias>),
    Alias(ImageAlias),
    Profiles(Vec<Profile>),
    Profile(Box<Profile>),
    Networks(Vec<Network>),
    Network(Box<Network>),
    NetworkState(Box<NetworkState>),
    Leases(Vec<NetworkLease>),
    Pools(Vec<StoragePool>),
    Pool(Box<StoragePool>),
    Volumes {
        pool: String,
        volumes: Vec<StorageVolume>,
    },
    Volume(Box<StorageVolume>),
    VolumeSnapshots {
        pool: String,
        volume: String,
        snapshots: Vec<StorageVolumeSnapshot>,
    },
    VolumeSnapshot(Box<StorageVolumeSnapshot>),
    /// Where the websocket a client claimed must be handed.
    Socket(oneshot::Sender<WsConn>),
    /// The event bus, filtered.
    Events(EventStream),
    /// OpenMetrics text (`GET /1.0/metrics`).
    Metrics(String),
    Resources(Box<Resources>),
    PoolResources(PoolResources),
    Projects(Vec<Project>),
    Project(Box<Project>),
    /// Warnings (Kante records none).
    Warnings(Vec<serde_json::Value>),
    Cluster(Box<kante_api::cluster::Cluster>),
    ClusterMembers(Vec<kante_api::cluster::ClusterMember>),
    ClusterMember(Box<kante_api::cluster::ClusterMember>),
    ClusterGroups(Vec<kante_api::cluster::ClusterGroup>),
    ClusterGroup(Box<kante_api::cluster::ClusterGroup>),
    ClusterMemberState(Box<kante_api::cluster::ClusterMemberState>),
    /// What a joining member is given.
    ClusterAccepted(Box<kante_api::cluster::ClusterAcceptReply>),
    /// The cluster's live services.
    Services(Vec<kante_api::service::Service>),
}

impl Reply {
    /// The verb's reply kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Empty => "empty",
            Reply::Created { .. } => "created",
            Reply::Operation(_) => "operation",
            Reply::Socket(_) => "socket",
            Reply::Events(_) => "events",
            Reply::File { .. } => "file",
            Reply::Download(_) => "download",
            Reply::Text(_) | Reply::Binary(_) | Reply::Metrics(_) => "bytes",
            _ => "document",
        }
    }

    /// The operation of a long-running verb.
    pub fn into_operation(self) -> Result<Arc<Op>> {
        match self {
            Reply::Operation(op) => Ok(op),
            other => Err(unexpected("operation", &other)),
        }
    }

    /// The websocket slot of [`super::Request::OperationSocket`].
    pub fn into_socket(self) -> Result<oneshot::Sender<WsConn>> {
        match self {
            Reply::Socket(s) => Ok(s),
            other => Err(unexpected("socket", &other)),
        }
    }

    /// The stream of [`super::Request::Events`].
    pub fn into_events(self) -> Result<EventStream> {
        match self {
            Reply::Events(s) => Ok(s),
            other => Err(unexpected("events", &other)),
        }
    }
}

fn unexpected(wanted: &str, got: &Reply) -> EngineError {
    EngineError::internal(format!("expected a {wanted} reply, got {}", got.kind()))
}

/// Whether a download is shown in place or saved (`Content-Disposition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Inline,
    Attachment,
}

/// One file of a download, opened.
pub struct DownloadPart {
    /// Its form field in a multipart download (`metadata`, `rootfs`).
    pub field: &'static str,
    /// The name the client saves it under.
    pub filename: String,
    pub file: tokio::fs::File,
    pub len: u64,
}

/// Files to stream: one as the body, several as `multipart/form-data`.
pub struct Download {
    pub disposition: Disposition,
    pub parts: Vec<DownloadPart>,
}

/// The event bus from the moment of subscribing, keeping only `types`
/// (all when empty); a reader that falls behind skips what it missed.
pub struct EventStream {
    rx: broadcast::Receiver<Event>,
    types: Vec<String>,
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<Event>, types: Vec<String>) -> Self {
        EventStream { rx, types }
    }

    /// The next event wanted; `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(ev) if self.types.is_empty() || self.types.contains(&ev.kind) => {
                    return Some(ev)
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
