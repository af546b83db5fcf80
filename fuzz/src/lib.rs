//! Shared pieces of Kante's fuzz targets: the CLI's preseed types (the
//! `kante` crate is a binary, so its file is compiled in here) and small
//! helpers to split fuzz input.

#[allow(dead_code, unused_imports)]
#[path = "../../crates/kante/src/cmd/preseed.rs"]
pub mod preseed;
pub mod tarbuild;

/// Splits `data` at the first NUL: (before, after); no NUL: (data, []).
pub fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
