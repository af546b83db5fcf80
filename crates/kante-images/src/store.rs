//! The content-addressed image store: `images_dir/<fingerprint>` (unified
//! tarball or split metadata tarball) and `images_dir/<fingerprint>.rootfs`
//! (split rootfs: tarball or squashfs), exactly like LXD lays them out.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use kante_api::image::ImageMetadata;
use sha2::{Digest, Sha256};

use crate::compress::{decoder, sniff, Compression};
use crate::error::{ImageError, IoContext};
use crate::limits::Limits;
use crate::metadata::parse_metadata_bytes;
use crate::tarscan::{Layout, TarScanner};

/// An image as it sits in the store.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// sha256 (lowercase hex) of the stored bytes (metadata ++ rootfs for split images).
    pub fingerprint: String,
    /// Total bytes stored.
    pub size: u64,
    /// Parsed `metadata.yaml`.
    pub metadata: ImageMetadata,
    /// True if metadata and rootfs are separate files.
    pub split: bool,
}

const IO_BUF: usize = 256 * 1024;

/// Checks and canonicalises (lowercases) a fingerprint; it becomes a file
/// name, so nothing but 64 hex digits may pass.
pub fn validate_fingerprint(fp: &str) -> Result<String, ImageError> {
    if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(fp.to_ascii_lowercase())
    } else {
        Err(ImageError::InvalidFingerprint(fp.to_string()))
    }
}

/// Paths of a stored image: the main file and, for split images, the rootfs.
pub(crate) fn stored_paths(
    images_dir: &Path,
    fingerprint: &str,
) -> Result<(PathBuf, Option<PathBuf>), ImageError> {
    let fp = validate_fingerprint(fingerprint)?;
    let main = images_dir.join(&fp);
    if !main.is_file() {
        return Err(ImageError::NotFound(fp));
    }
    let rootfs = images_dir.join(format!("{fp}.rootfs"));
    Ok((main, rootfs.is_file().then_some(rootfs)))
}

/// What `scan_archive` learnt about one stream.
pub(crate) struct Scanned {
    /// None for squashfs.
    pub scanner: Option<TarScanner>,
}

/// How `scan_archive` reads a stream.
pub(crate) struct ScanOptions<'a> {
    pub layout: Layout,
    pub capture_metadata: bool,
    pub allow_squashfs: bool,
    /// Return as soon as metadata.yaml is seen.
    pub stop_at_metadata: bool,
    pub limits: &'a Limits,
}

impl<'a> ScanOptions<'a> {
    /// A whole tarball of `layout` whose `metadata.yaml` is kept (an image,
    /// or a split image's metadata half).
    fn with_metadata(layout: Layout, limits: &'a Limits) -> ScanOptions<'a> {
        ScanOptions {
            layout,
            capture_metadata: true,
            allow_squashfs: false,
            stop_at_metadata: false,
            limits,
        }
    }
}

/// Decompresses `r` and walks its tar structure. Decoder errors become
/// `Corrupt`.
pub(crate) fn scan_archive<R: Read>(r: R, o: &ScanOptions) -> Result<Scanned, ImageError> {
    let (capture_metadata, allow_squashfs, stop_at_metadata) =
        (o.capture_metadata, o.allow_squashfs, o.stop_at_metadata);
    let deadline = o.limits.deadline();
    let (compression, head) = sniff(r).ctx(|| "reading image data".into())?;
    if compression == Compression::Squashfs {
        if !allow_squashfs {
            return Err(ImageError::InvalidImage(
                "a squashfs file can only be the rootfs of a split image".into(),
            ));
        }
        return Ok(Scanned { scanner: None });
    }
    let mut dec = decoder(compression, BufReader::with_capacity(IO_BUF, head));
    let mut scanner = TarScanner::new(o.layout, capture_metadata).with_limits(o.limits);
    let mut buf = vec![0u8; IO_BUF];
    loop {
        deadline.check("reading the image")?;
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decode_error(compression, e)),
        };
        // After the end marker, keep reading only so the decoder verifies
        // the rest of the stream (checksums, truncation).
        if !scanner.ended() {
            scanner.feed(&buf[..n])?;
        }
        if stop_at_metadata && scanner.metadata.is_some() {
            return Ok(Scanned {
                scanner: Some(scanner),
            });
        }
    }
    scanner.finish()?;
    Ok(Scanned {
        scanner: Some(scanner),
    })
}

pub(crate) fn decode_error(c: Compression, e: io::Error) -> ImageError {
    let what = if c == Compression::None {
        "tar stream".to_string()
    } else {
        format!("{} stream", c.name())
    };
    ImageError::Corrupt(format!("{what}: {e}"))
}

/// Copies everything read from the source into the temp file and the hash.
/// Errors of its own (source or disk) are remembered so they are not
/// misreported as a corrupt archive by the decoder sitting on top.
struct Tee<'a, R> {
    src: R,
    hasher: &'a mut Sha256,
    out: BufWriter<&'a File>,
    bytes: u64,
    error: Option<ImageError>,
}

impl<'a, R: Read> Tee<'a, R> {
    fn new(src: R, hasher: &'a mut Sha256, file: &'a File) -> Self {
        Tee {
            src,
            hasher,
            out: BufWriter::with_capacity(IO_BUF, file),
            bytes: 0,
            error: None,
        }
    }
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.src.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(ImageError::io("reading image data", e));
                return Err(io::Error::other(msg));
            }
        };
        self.hasher.update(&buf[..n]);
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let msg = e.to_string();
            self.error = Some(ImageError::io("writing to the images directory", e));
            return Err(io::Error::other(msg));
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Streams one part of an image into `file`, validating it on the way.
fn ingest<R: Read>(
    src: R,
    hasher: &mut Sha256,
    file: &File,
    opts: &ScanOptions,
) -> Result<(Scanned, u64), ImageError> {
    let mut tee = Tee::new(src, hasher, file);
    let scanned = scan_archive(&mut tee, opts);
    // Whatever follows the archive (padding, trailing frames) is stored and hashed too.
    let rest = scanned
        .as_ref()
        .ok()
        .map(|_| io::copy(&mut tee, &mut io::sink()));
    if let Some(err) = tee.error.take() {
        return Err(err);
    }
    let scanned = scanned?;
    if let Some(Err(e)) = rest {
        return Err(ImageError::io("reading image data", e));
    }
    tee.out
        .flush()
        .ctx(|| "writing to the images directory".into())?;
    let bytes = tee.bytes;
    drop(tee);
    file.sync_all()
        .ctx(|| "syncing the imported image".into())?;
    Ok((scanned, bytes))
}

fn temp_in(images_dir: &Path) -> Result<tempfile::NamedTempFile, ImageError> {
    fs::create_dir_all(images_dir).ctx(|| format!("creating {}", images_dir.display()))?;
    tempfile::Builder::new()
        .prefix(".kante-import-")
        .tempfile_in(images_dir)
        .ctx(|| format!("creating a temporary file in {}", images_dir.display()))
}

fn check_expected(expected: Option<&str>, images_dir: &Path) -> Result<Option<String>, ImageError> {
    let Some(exp) = expected else { return Ok(None) };
    let exp = validate_fingerprint(exp)?;
    // Cheap early answer before streaming gigabytes.
    if images_dir.join(&exp).exists() {
        return Err(ImageError::AlreadyExists(exp));
    }
    Ok(Some(exp))
}

fn check_fingerprint(expected: &Option<String>, actual: &str) -> Result<(), ImageError> {
    match expected {
        Some(exp) if exp != actual => Err(ImageError::FingerprintMismatch {
            expected: exp.clone(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

fn metadata_of(scanned: &Scanned, what: &str) -> Result<ImageMetadata, ImageError> {
    let yaml = scanned
        .scanner
        .as_ref()
        .and_then(|s| s.metadata.as_deref())
        .ok_or_else(|| ImageError::InvalidImage(format!("{what} has no metadata.yaml")))?;
    parse_metadata_bytes(yaml)
}

fn persist(tmp: tempfile::NamedTempFile, dest: &Path, fp: &str) -> Result<(), ImageError> {
    tmp.persist_noclobber(dest).map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            ImageError::AlreadyExists(fp.to_string())
        } else {
            ImageError::io(format!("storing {}", dest.display()), e.error)
        }
    })?;
    Ok(())
}

/// Streams a unified image tarball (metadata.yaml + rootfs/ + templates/; plain,
/// gzip, xz, zstd or bzip2) into `images_dir/<sha256>`. Nothing is left behind
/// on error; an image that would unpack to more than `limits` allow is refused.
pub fn store_unified(
    images_dir: &Path,
    reader: impl Read,
    expected_fingerprint: Option<&str>,
    limits: &Limits,
) -> Result<StoredImage, ImageError> {
    // The upload path without a second part: one body, one pass.
    store_upload(
        images_dir,
        reader,
        || Ok(None::<io::Empty>),
        expected_fingerprint,
        limits,
    )
}

/// Stores a split image: `meta` (tarball with metadata.yaml) as `images_dir/<fp>`
/// and `rootfs` (tarball or squashfs) as `images_dir/<fp>.rootfs`, where
/// fp = sha256(meta ++ rootfs) as in LXD.
pub fn store_split(
    images_dir: &Path,
    meta: impl Read,
    rootfs: impl Read,
    expected_fingerprint: Option<&str>,
    limits: &Limits,
) -> Result<StoredImage, ImageError> {
    let expected = check_expected(expected_fingerprint, images_dir)?;
    let tmp_meta = temp_in(images_dir)?;
    let mut hasher = Sha256::new();
    let meta_opts = ScanOptions::with_metadata(Layout::ImageMeta, limits);
    let (meta_scan, meta_size) = ingest(meta, &mut hasher, tmp_meta.as_file(), &meta_opts)?;
    let metadata = metadata_of(&meta_scan, "the metadata tarball")?;
    let meta = Ingested {
        tmp: tmp_meta,
        size: meta_size,
        metadata,
    };
    store_rootfs(images_dir, meta, hasher, rootfs, &expected, limits)
}

/// Stores an upload whose first part is read before it is known whether a
/// second follows (a `multipart/form-data` body, read once): `meta`, then
/// whatever `rootfs()` gives once `meta` is read. With a rootfs, a split
/// image as [`store_split`] stores it (the metadata tarball may not hold
/// `rootfs/`); without, `meta` is a unified image as for [`store_unified`].
pub fn store_upload<R: Read>(
    images_dir: &Path,
    meta: impl Read,
    rootfs: impl FnOnce() -> Result<Option<R>, ImageError>,
    expected_fingerprint: Option<&str>,
    limits: &Limits,
) -> Result<StoredImage, ImageError> {
    let expected = check_expected(expected_fingerprint, images_dir)?;
    let tmp = temp_in(images_dir)?;
    let mut hasher = Sha256::new();
    let opts = ScanOptions::with_metadata(Layout::Image, limits);
    let (scanned, size) = ingest(meta, &mut hasher, tmp.as_file(), &opts)?;
    let has_rootfs = scanned.scanner.as_ref().is_some_and(|s| s.has_rootfs);
    match rootfs()? {
        Some(r) => {
            if has_rootfs {
                return Err(ImageError::InvalidImage(
                    "the metadata tarball of a split image contains rootfs/".into(),
                ));
            }
            let metadata = metadata_of(&scanned, "the metadata tarball")?;
            let meta = Ingested {
                tmp,
                size,
                metadata,
            };
            store_rootfs(images_dir, meta, hasher, r, &expected, limits)
        }
        None => {
            let metadata = metadata_of(&scanned, "the image tarball")?;
            if !has_rootfs {
                return Err(ImageError::InvalidImage(
                    "the image tarball has no rootfs/ directory".into(),
                ));
            }
            let fp = hex::encode(hasher.finalize());
            check_fingerprint(&expected, &fp)?;
            persist(tmp, &images_dir.join(&fp), &fp)?;
            Ok(StoredImage {
                fingerprint: fp,
                size,
                metadata,
                split: false,
            })
        }
    }
}

/// The metadata part of a split image, in its temp file.
struct Ingested {
    tmp: tempfile::NamedTempFile,
    size: u64,
    metadata: ImageMetadata,
}

/// Stores the rootfs of a split image after its metadata part `meta`
/// (whose bytes `hasher` has seen), then both under the fingerprint.
fn store_rootfs(
    images_dir: &Path,
    meta: Ingested,
    mut hasher: Sha256,
    rootfs: impl Read,
    expected: &Option<String>,
    limits: &Limits,
) -> Result<StoredImage, ImageError> {
    let tmp_rootfs = temp_in(images_dir)?;
    let rootfs_opts = ScanOptions {
        layout: Layout::Any,
        capture_metadata: false,
        allow_squashfs: true,
        stop_at_metadata: false,
        limits,
    };
    let (rootfs_scan, rootfs_size) =
        ingest(rootfs, &mut hasher, tmp_rootfs.as_file(), &rootfs_opts)?;
    match &rootfs_scan.scanner {
        Some(s) if s.entries == 0 => {
            return Err(ImageError::InvalidImage(
                "the rootfs tarball is empty".into(),
            ))
        }
        Some(_) => {}
        None => {
            check_squashfs(tmp_rootfs.path())?;
            crate::squashfs::list(tmp_rootfs.path(), limits)?;
        }
    }

    let fp = hex::encode(hasher.finalize());
    check_fingerprint(expected, &fp)?;
    let meta_dest = images_dir.join(&fp);
    let rootfs_dest = images_dir.join(format!("{fp}.rootfs"));
    if rootfs_dest.exists() {
        return Err(ImageError::AlreadyExists(fp));
    }
    persist(meta.tmp, &meta_dest, &fp)?;
    if let Err(e) = persist(tmp_rootfs, &rootfs_dest, &fp) {
        let _ = fs::remove_file(&meta_dest);
        return Err(e);
    }
    Ok(StoredImage {
        fingerprint: fp,
        size: meta.size + rootfs_size,
        metadata: meta.metadata,
        split: true,
    })
}

/// Checks the squashfs superblock so a truncated or broken file is refused at
/// import, not at first launch. Data blocks are only verified by unsquashfs
/// at unpack time.
fn check_squashfs(path: &Path) -> Result<(), ImageError> {
    let mut sb = [0u8; 96];
    let mut f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let len = f
        .metadata()
        .ctx(|| format!("stat {}", path.display()))?
        .len();
    f.read_exact(&mut sb)
        .map_err(|_| ImageError::Corrupt("squashfs rootfs: shorter than its superblock".into()))?;
    // bytes_used: the filesystem's real size, at offset 40 of the superblock.
    let used = u64::from_le_bytes(sb[40..48].try_into().expect("8 bytes"));
    if used > len {
        return Err(ImageError::Corrupt(format!(
            "squashfs rootfs: {len} bytes but the superblock says {used}"
        )));
    }
    let out = match Command::new("unsquashfs").arg("-s").arg(path).output() {
        Ok(out) => out,
        // Without squashfs-tools the checks above must do; unpack will complain.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io("running unsquashfs", e)),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(ImageError::Corrupt(format!(
            "squashfs rootfs: {}",
            crate::process::first_line(&out.stderr, &out.stdout)
        )))
    }
}

/// Re-reads a stored image's metadata (only as far into the archive as needed).
pub fn read_stored(images_dir: &Path, fingerprint: &str) -> Result<StoredImage, ImageError> {
    let (main, rootfs) = stored_paths(images_dir, fingerprint)?;
    let file = File::open(&main).ctx(|| format!("opening {}", main.display()))?;
    let mut size = file
        .metadata()
        .ctx(|| format!("stat {}", main.display()))?
        .len();
    if let Some(r) = &rootfs {
        size += fs::metadata(r)
            .ctx(|| format!("stat {}", r.display()))?
            .len();
    }
    let opts = ScanOptions {
        layout: if rootfs.is_some() {
            Layout::ImageMeta
        } else {
            Layout::Image
        },
        capture_metadata: true,
        allow_squashfs: false,
        stop_at_metadata: true,
        limits: &Limits::none(),
    };
    let scanned = scan_archive(BufReader::with_capacity(IO_BUF, file), &opts)?;
    let metadata = metadata_of(&scanned, "the stored image")?;
    Ok(StoredImage {
        fingerprint: validate_fingerprint(fingerprint)?,
        size,
        metadata,
        split: rootfs.is_some(),
    })
}

/// Removes the stored files of an image.
pub fn remove_stored(images_dir: &Path, fingerprint: &str) -> Result<(), ImageError> {
    let (main, rootfs) = stored_paths(images_dir, fingerprint)?;
    if let Some(r) = rootfs {
        fs::remove_file(&r).ctx(|| format!("removing {}", r.display()))?;
    }
    fs::remove_file(&main).ctx(|| format!("removing {}", main.display()))
}
