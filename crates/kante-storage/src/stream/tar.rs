//! `tar` sections: GNU tar of a tree's contents on the sending side; on
//! the receiving side kante-images' validating filter (the names tar will
//! really use, nothing escaping the tree through `..`, absolute names or
//! the archive's own symlinks and hard links, no device nodes, byte and
//! time caps) in front of GNU tar, which restores owners (numeric), modes
//! (setuid included), xattrs of every namespace (`security.capability`),
//! POSIX ACLs, hard links, symlinks and holes.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use kante_images::{archive::extract_stream, Layout, Limits};

use super::image_error;
use super::tools::run_to;
use crate::Result;

/// Writes the tree at `src` (its contents, as `./…`) as a tar stream.
pub(crate) fn send_tree(src: &Path, out: &mut dyn Write) -> Result<()> {
    run_to(
        Command::new("tar")
            .args([
                "--create",
                "--file=-",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
                "--sparse",
                "--sort=name",
                "--one-file-system",
            ])
            .arg("--directory")
            .arg(src)
            .arg("."),
        &format!("tar of {}", src.display()),
        out,
    )
}

/// Extracts a tar section into the existing, empty directory `dst`.
/// Returns the bytes the extraction wrote.
pub(crate) fn receive_tree(input: &mut dyn Read, dst: &Path, limits: &Limits) -> Result<u64> {
    extract_stream(input, dst, Layout::Any, limits).map_err(image_error)
}
