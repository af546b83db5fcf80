//! The error type of every client call.

use std::path::PathBuf;

use thiserror::Error;

/// Everything a request to the daemon can fail with.
///
/// `Api` and `Operation` display the server's own text unchanged, so a CLI can
/// print `Error: <display>` and match what `lxc` shows.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The unix socket could not be reached (daemon not running, wrong path, permissions).
    #[error("Failed to connect to the Kante daemon at {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A remote daemon could not be reached over TCP and TLS.
    #[error("Failed to connect to {addr}: {source}")]
    ConnectRemote {
        addr: String,
        source: std::io::Error,
    },
    /// The remote presented another certificate than the one pinned for
    /// it: refused, showing both fingerprints.
    #[error("The certificate of {addr} has changed: expected fingerprint {expected}, the server presented {presented}; if the server was really re-keyed, remove the remote and add it again")]
    CertificateMismatch {
        addr: String,
        expected: String,
        presented: String,
    },
    /// An error envelope: `status` is the HTTP status, `message` the envelope's `error`.
    #[error("{message}")]
    Api { status: u16, message: String },
    /// A background operation ended in Failure or Cancelled; the text is its `err`.
    #[error("{0}")]
    Operation(String),
    /// An operation was not final when the wait timed out.
    #[error("Timed out waiting for operation {0}")]
    Timeout(String),
    /// A request the server should have answered within a bound (a
    /// bounded wait) got no answer: the server or the link to it is gone.
    #[error("No answer from the server within {0} s")]
    NoAnswer(u64),
    /// The server answered something that does not follow the API.
    #[error("Invalid response from server: {0}")]
    Protocol(String),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("Websocket error: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("Invalid JSON from server: {0}")]
    Json(#[from] serde_json::Error),
}

impl ClientError {
    /// The HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
