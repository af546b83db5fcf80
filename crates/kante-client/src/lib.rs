//! Client library for Kante's REST API (LXD API 1.0 shapes) over the daemon's
//! unix socket, or over HTTPS to a remote daemon (`Client::https`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kante_client::ClientError> {
//! let client = kante_client::Client::local();
//! let out = client.exec_capture("c1", &["uname", "-a"], &[], None).await?;
//! println!("{} {}", out.code, out.stdout_str());
//! # Ok(()) }
//! ```

mod backups;
mod body;
mod client;
mod console;
mod error;
mod events;
mod exec;
mod files;
mod images;
mod instances;
mod networks;
mod operations;
mod profiles;
mod relay;
mod snapshots;
mod storage;
mod transport;

pub use backups::BackupImportOptions;
pub use body::ProgressFn;
pub use client::url::seg as path_segment;
pub use client::{ApiResponse, Client, DEFAULT_KANTE_DIR};
pub use console::{ConsoleEnd, ConsoleStreams};
pub use error::{ClientError, Result};
pub use events::EventStream;
pub use exec::{ExecOutput, ExecStreams};
pub use files::{FileContent, FileGet, FileKind, FileMeta, FilePushOptions};
pub use images::ImageUploadOptions;
pub use kante_tls;
pub use operations::{operation_instances, operation_result};
pub use profiles::{Profile, ProfilePut, ProfilesPost};
pub use relay::{relay, RelayEnd};
pub use storage::{
    ResourceUsage, StoragePool, StoragePoolPut, StoragePoolResources, StoragePoolsPost,
    StorageVolume, StorageVolumePost, StorageVolumePut, StorageVolumeSnapshot, StorageVolumesPost,
    VolumeSnapshotsPost, VolumeSource,
};
pub use transport::HttpsTarget;

/// Re-exported so callers need not depend on kante-api for the common types.
pub use kante_api;
