//! Shared pieces of Kante's fuzz targets: the preseed and site types (the
//! `kante-site` library) and small helpers to split fuzz input.

pub use kante_site::preseed;
pub mod tarbuild;

/// Splits `data` at the first NUL: (before, after); no NUL: (data, []).
pub fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
