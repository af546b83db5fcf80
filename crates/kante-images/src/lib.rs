//! Kante's image handling: the LXD-compatible content-addressed image store
//! (import of unified and split images, metadata, unpacking into instance
//! directories) and the image builders used by `kante image build`.
//!
//! Layout of `images_dir` (same as LXD):
//! - `<fingerprint>`: a unified image tarball, or the metadata tarball of a split image
//! - `<fingerprint>.rootfs`: the rootfs (tarball or squashfs) of a split image
//!
//! Extraction uses GNU tar and unsquashfs; building uses debootstrap, chroot
//! and apt (Debian) or Debian's busybox-static binary.

pub mod archive;
mod build;
mod compress;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod limits;
mod metadata;
mod process;
mod squashfs;
mod store;
mod stream;
pub mod streams;
mod tarscan;
pub mod template;
mod unpack;
pub mod xattr;

pub use build::{
    build_busybox, build_debian, recipe_for, BuildEvent, DebianBuild, Recipe,
    BUSYBOX_FALLBACK_STOP_SIGNAL, DEFAULT_MIRROR, RECIPE_VERSION,
};
pub use compress::{detect_compression, Compression};
pub use error::ImageError;
pub use limits::Limits;
pub use metadata::parse_metadata;
pub use store::{
    read_stored, remove_stored, store_split, store_unified, store_upload, validate_fingerprint,
    StoredImage,
};
pub use tarscan::Layout;
pub use unpack::unpack;
