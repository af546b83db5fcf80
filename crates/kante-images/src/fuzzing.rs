//! Entry points for the fuzz targets (`fuzz/`): the crate's parsers of
//! untrusted bytes, reachable from outside without making them API.

use crate::error::ImageError;
use crate::tarscan::{Layout, TarScanner};

/// What the tar filter made of an archive.
#[derive(Debug)]
pub struct Filtered {
    /// The bytes GNU tar would be fed.
    pub out: Vec<u8>,
    /// The captured member (`metadata.yaml`, or `backup/index.yaml`).
    pub captured: Option<Vec<u8>>,
    /// Device entries rewritten into empty regular files.
    pub devices_dropped: u64,
    /// Entries seen (extension headers not counted).
    pub entries: u64,
}

/// Runs the validating tar filter over `data`, fed in pieces of `chunk`
/// bytes (at least 1), as an import of `layout` does, capturing the member
/// such an import reads (`metadata.yaml`, or `backup/index.yaml` for a backup).
pub fn filter_tar(layout: Layout, data: &[u8], chunk: usize) -> Result<Filtered, ImageError> {
    let mut s = match layout {
        Layout::Backup => TarScanner::capturing(layout, b"backup/index.yaml"),
        _ => TarScanner::new(layout, true),
    };
    let mut out = Vec::with_capacity(data.len());
    for piece in data.chunks(chunk.max(1)) {
        let used = s.filter(piece, &mut out)?;
        if used < piece.len() || s.ended() {
            break;
        }
    }
    s.finish()?;
    Ok(Filtered {
        out,
        captured: s.metadata.take(),
        devices_dropped: s.devices_dropped,
        entries: s.entries,
    })
}

/// Normalises an archive path as the filter does (`None`: refused).
pub fn normalize_path(raw: &[u8]) -> Option<Vec<u8>> {
    crate::tarscan::normalize(raw).ok()
}

/// Parses a `metadata.yaml` as read from an image.
pub fn parse_metadata_bytes(bytes: &[u8]) -> Result<kante_api::image::ImageMetadata, ImageError> {
    crate::metadata::parse_metadata_bytes(bytes)
}
