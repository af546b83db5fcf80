//! The engine's error type. Each variant knows its HTTP status, so the HTTP
//! layer only renders it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
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
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    /// The HTTP status (= LXD `error_code`) of this error.
    pub fn status(&self) -> u16 {
        match self {
            EngineError::BadRequest(_) => 400,
            EngineError::Forbidden(_) => 403,
            EngineError::NotFound(_) => 404,
            EngineError::Conflict(_) => 409,
            EngineError::PreconditionFailed(_) => 412,
            EngineError::Internal(_) => 500,
            EngineError::NotImplemented(_) => 501,
            EngineError::Unavailable(_) => 503,
            EngineError::InsufficientStorage(_) => 507,
        }
    }

    pub fn bad(msg: impl Into<String>) -> Self {
        EngineError::BadRequest(msg.into())
    }

    pub fn internal(msg: impl std::fmt::Display) -> Self {
        EngineError::Internal(msg.to_string())
    }
}

impl From<kante_store::StoreError> for EngineError {
    fn from(e: kante_store::StoreError) -> Self {
        use kante_store::StoreError::*;
        match e {
            Conflict(m) => EngineError::Conflict(format!("{m} already exists")),
            NotFound(m) => EngineError::NotFound(format!("{m} not found")),
            other => EngineError::Internal(other.to_string()),
        }
    }
}

impl From<kante_api::names::NameError> for EngineError {
    fn from(e: kante_api::names::NameError) -> Self {
        EngineError::BadRequest(e.to_string())
    }
}

impl From<kante_storage::StorageError> for EngineError {
    fn from(e: kante_storage::StorageError) -> Self {
        use kante_storage::StorageError::*;
        match e {
            UnknownDriver(..) | InvalidConfig(_) | InvalidName(_) | InUse(_) | Unsupported(_) => {
                EngineError::BadRequest(e.to_string())
            }
            Exists(_) => EngineError::Conflict(e.to_string()),
            NotFound(_) => EngineError::NotFound(e.to_string()),
            Fill { .. } => EngineError::BadRequest(e.to_string()),
            NoSpace { .. } => EngineError::InsufficientStorage(e.to_string()),
            _ => EngineError::Internal(e.to_string()),
        }
    }
}

impl From<kante_runtime::RuntimeError> for EngineError {
    fn from(e: kante_runtime::RuntimeError) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for EngineError {
    fn from(e: tokio::task::JoinError) -> Self {
        EngineError::Internal(format!("background task failed: {e}"))
    }
}
