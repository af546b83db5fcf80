//! The engine's error type. Failures of the lower crates are kept whole
//! (their `source()` chain reaches the edge); the engine's own modules
//! have small enums of their own, converted here. [`EngineError::kind`]
//! is the one place that decides what a failure means to a client: the
//! HTTP status, which is also the LXD `error_code`. The HTTP layer only
//! renders `status()` and the message (`Display`).

use std::error::Error as StdError;
use std::io;

use kante_api::names::NameError;
use kante_images::ImageError;
use kante_network::NetworkError;
use kante_runtime::RuntimeError;
use kante_storage::StorageError;
use kante_store::StoreError;
use kante_syntax::SyntaxError;
use thiserror::Error;

use crate::devices::DeviceError;
use crate::instance::config::ConfigError;
use crate::instance::files::FileError;
use crate::operations::OperationError;

/// What a failure means to a client; each kind has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Forbidden,
    NotFound,
    Conflict,
    PreconditionFailed,
    Internal,
    NotImplemented,
    /// A resource limit is reached (say, too many websockets): try again later.
    Unavailable,
    /// A storage pool is full: free space and try again.
    InsufficientStorage,
}

impl ErrorKind {
    /// The HTTP status (= LXD `error_code`) of this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::Unavailable => 503,
            ErrorKind::InsufficientStorage => 507,
        }
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    // The engine's own messages, where a message is ad hoc.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Internal(String),
    /// A resource limit is reached (say, too many websockets): try again later.
    #[error("{0}")]
    Unavailable(String),
    /// A storage pool is full: free space and try again.
    #[error("{0}")]
    InsufficientStorage(String),

    // The engine's modules.
    /// An instance's config refused (`instance/config.rs`, `cloudinit.rs`).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A device refused (`devices/`).
    #[error("{0}")]
    Device(#[from] DeviceError),
    /// What an instance's filesystem answered (`instance/files.rs`).
    #[error("{0}")]
    File(#[from] FileError),
    /// An operation or its websockets (`operations.rs`).
    #[error("{0}")]
    Operation(#[from] OperationError),
    /// A value not in the syntax it must have (sizes, schedules, CPU sets…).
    #[error("{0}")]
    Syntax(#[from] SyntaxError),

    // The lower crates' failures, kept whole.
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Network(#[from] NetworkError),
    #[error("{}", image_message(.0))]
    Image(#[from] ImageError),
    #[error("{0}")]
    Name(#[from] NameError),
    /// An I/O failure; `context` says what was being done (may be empty).
    #[error("{}", with_context(context, source))]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A failure of this daemon whose cause is some other error (HTTP 500).
    #[error("{0}")]
    Failed(#[source] Box<dyn StdError + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// What users read for an image error: two are worded as LXD words them.
fn image_message(e: &ImageError) -> String {
    match e {
        ImageError::AlreadyExists(_) => "Image with same fingerprint already exists".into(),
        ImageError::NotFound(_) => "Image not found".into(),
        other => other.to_string(),
    }
}

fn with_context(context: &str, source: &io::Error) -> String {
    if context.is_empty() {
        source.to_string()
    } else {
        format!("{context}: {source}")
    }
}

impl EngineError {
    /// What this failure means to a client: the one place that decides it,
    /// for the engine's own errors and for every wrapped one.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            EngineError::BadRequest(_) => K::BadRequest,
            EngineError::Forbidden(_) => K::Forbidden,
            EngineError::NotFound(_) => K::NotFound,
            EngineError::Conflict(_) => K::Conflict,
            EngineError::PreconditionFailed(_) => K::PreconditionFailed,
            EngineError::Internal(_) => K::Internal,
            EngineError::NotImplemented(_) => K::NotImplemented,
            EngineError::Unavailable(_) => K::Unavailable,
            EngineError::InsufficientStorage(_) => K::InsufficientStorage,
            EngineError::Config(_)
            | EngineError::Device(_)
            | EngineError::Syntax(_)
            | EngineError::Name(_) => K::BadRequest,
            EngineError::File(e) => file_kind(e),
            EngineError::Operation(e) => operation_kind(e),
            EngineError::Store(e) => store_kind(e),
            EngineError::Storage(e) => storage_kind(e),
            EngineError::Network(e) => network_kind(e),
            EngineError::Image(e) => image_kind(e),
            EngineError::Runtime(_) | EngineError::Task(_) | EngineError::Failed(_) => K::Internal,
            EngineError::Io { source, .. } => io_kind(source),
        }
    }

    /// The HTTP status (= LXD `error_code`) of this error.
    pub fn status(&self) -> u16 {
        self.kind().status()
    }

    /// A refusal with an ad hoc message (HTTP 400).
    pub fn bad(msg: impl std::fmt::Display) -> Self {
        EngineError::BadRequest(msg.to_string())
    }

    /// A failure of this daemon with an ad hoc message (HTTP 500).
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        EngineError::Internal(msg.to_string())
    }

    /// An I/O failure while doing `context` (the message is `context: error`).
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }

    /// For `map_err`: an I/O failure while doing `context`.
    pub fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| EngineError::Io { context, source }
    }

    /// A failure of this daemon caused by `source` (HTTP 500, its message).
    pub fn failed(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        EngineError::Failed(source.into())
    }
}

impl From<io::Error> for EngineError {
    fn from(source: io::Error) -> Self {
        EngineError::io(String::new(), source)
    }
}

fn file_kind(e: &FileError) -> ErrorKind {
    match e {
        FileError::NotFound(_) => ErrorKind::NotFound,
        FileError::Exists | FileError::NotADirectory => ErrorKind::Conflict,
        FileError::PermissionDenied(_) => ErrorKind::Forbidden,
        FileError::Escapes(_)
        | FileError::IsDirectory
        | FileError::NotEmpty
        | FileError::NotRegular => ErrorKind::BadRequest,
    }
}

fn operation_kind(e: &OperationError) -> ErrorKind {
    match e {
        OperationError::NotFound => ErrorKind::NotFound,
        OperationError::SocketTaken => ErrorKind::Conflict,
        OperationError::BadSecret => ErrorKind::Forbidden,
        OperationError::NotCancellable => ErrorKind::BadRequest,
    }
}

fn store_kind(e: &StoreError) -> ErrorKind {
    match e {
        StoreError::Conflict(_) => ErrorKind::Conflict,
        StoreError::NotFound(_) => ErrorKind::NotFound,
        StoreError::Unavailable(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

fn storage_kind(e: &StorageError) -> ErrorKind {
    use StorageError::*;
    match e {
        UnknownDriver(..)
        | InvalidConfig(_)
        | InvalidName(_)
        | InUse(_)
        | Unsupported(_)
        | Fill { .. } => ErrorKind::BadRequest,
        Exists(_) => ErrorKind::Conflict,
        NotFound(_) => ErrorKind::NotFound,
        NoSpace { .. } => ErrorKind::InsufficientStorage,
        Io { .. } | Command(_) | Stream(_) => ErrorKind::Internal,
    }
}

fn network_kind(e: &NetworkError) -> ErrorKind {
    match e {
        NetworkError::NotFound(_) => ErrorKind::NotFound,
        NetworkError::Exists(_) => ErrorKind::Conflict,
        _ if e.is_user_error() => ErrorKind::BadRequest,
        _ => ErrorKind::Internal,
    }
}

fn image_kind(e: &ImageError) -> ErrorKind {
    match e {
        ImageError::AlreadyExists(_) => ErrorKind::Conflict,
        ImageError::NotFound(_) => ErrorKind::NotFound,
        ImageError::Io { .. }
        | ImageError::MissingTool { .. }
        | ImageError::Build(_)
        | ImageError::TimedOut(_)
        | ImageError::InvalidLimit(_) => ErrorKind::Internal,
        _ => ErrorKind::BadRequest,
    }
}

/// A full filesystem or quota is the pool's fault, not the daemon's.
fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::InsufficientStorage,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
