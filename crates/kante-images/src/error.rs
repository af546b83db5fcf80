//! The crate's single error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while storing, reading, unpacking or building images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {0} already exists")]
    AlreadyExists(String),

    #[error("image {0} not found")]
    NotFound(String),

    #[error("invalid image fingerprint {0:?} (expected 64 lowercase hex digits)")]
    InvalidFingerprint(String),

    #[error("image fingerprint mismatch: expected {expected}, got {actual}")]
    FingerprintMismatch { expected: String, actual: String },

    #[error("invalid image metadata: {0}")]
    InvalidMetadata(String),

    /// Structurally valid archive that is not a usable image (no rootfs, no metadata.yaml, ...).
    #[error("invalid image: {0}")]
    InvalidImage(String),

    #[error("image tarball is truncated or corrupt: {0}")]
    Corrupt(String),

    #[error("unsafe path in image archive: {0}")]
    UnsafePath(String),

    /// The archive would write more than its cap allows (a decompression
    /// bomb, an import bigger than the disk, a backup past its limit).
    #[error("too large: {0}")]
    TooLarge(String),

    /// Unpacking or packing went past its time cap.
    #[error("timed out: {0}")]
    TimedOut(String),

    /// A limit from the environment does not parse.
    #[error("invalid limit: {0}")]
    InvalidLimit(String),

    #[error("destination {0} already exists")]
    DestinationExists(PathBuf),

    #[error("{tool} is not available: {hint}")]
    MissingTool { tool: String, hint: String },

    /// An external tool (tar, unsquashfs, debootstrap, apt-get, ...) failed.
    #[error("{tool} failed: {message}")]
    Tool { tool: String, message: String },

    #[error("unknown image recipe {name:?}; known: {known}")]
    UnknownRecipe { name: String, known: String },

    #[error("image build failed: {0}")]
    Build(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn tool(tool: impl Into<String>, message: impl Into<String>) -> Self {
        ImageError::Tool {
            tool: tool.into(),
            message: message.into(),
        }
    }
}

/// Attaches a human context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(context(), e))
    }
}
