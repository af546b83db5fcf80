//! Tarballs of several directory trees: GNU tar packs each tree (a
//! *section*) under its own archive prefix into one compressed stream, and
//! extraction goes through the [`TarScanner`] like image unpacking does.
//!
//! Sections are joined without bind mounts or copies: tar runs once per
//! section with `--transform` (renaming `.` to the prefix; hard-link targets
//! follow, symlink targets are left alone) and `--record-size=512`, so its
//! output ends with exactly the 1024-byte end-of-archive marker, which is cut
//! off; one marker closes the whole archive. Sparse files stay sparse
//! (`--sparse`), and packing stops at the byte and time caps of
//! [`PackOptions::limits`].

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::compress::{decoder, sniff, Compression};
use crate::error::{ImageError, IoContext};
use crate::limits::Deadline;
pub use crate::limits::Limits;
use crate::process::{
    collect_stderr, dies_with_parent, first_line, spawn_error, wait_watched, Watchdog,
};
use crate::store::decode_error;
pub use crate::stream::{open_stream, StreamedArchive};
pub use crate::tarscan::Layout;
use crate::tarscan::TarScanner;

/// The end-of-archive marker: two zero blocks.
const END_MARKER: usize = 1024;
const IO_BUF: usize = 1 << 20;
/// Report progress at most every this many bytes of tar output.
const PROGRESS_STEP: u64 = 8 << 20;

/// One directory tree of an archive.
#[derive(Debug, Clone)]
pub struct Section {
    pub dir: PathBuf,
    /// The archive path `dir` is stored as (e.g. `backup/container`); empty:
    /// members are stored under their own names.
    pub prefix: String,
    /// Members of `dir` to pack, in this order; empty: all of `dir`.
    pub members: Vec<String>,
}

impl Section {
    /// All of `dir`, stored as `prefix`.
    pub fn tree(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Self {
        Section {
            dir: dir.into(),
            prefix: prefix.into(),
            members: Vec::new(),
        }
    }

    /// The tar arguments naming what to pack and how to rename it.
    fn tar_args(&self) -> Result<Vec<String>, ImageError> {
        let mut args = Vec::new();
        if self.members.is_empty() {
            if self.prefix.is_empty() {
                return Err(ImageError::InvalidImage(
                    "a whole-directory archive section needs a prefix".into(),
                ));
            }
            // `S`: symlink targets keep their text; names and hard-link targets are renamed.
            args.push(format!("--transform=s,^\\.,{},S", sed_escape(&self.prefix)));
            args.push(".".into());
        } else {
            if !self.prefix.is_empty() {
                args.push(format!("--transform=s,^,{}/,S", sed_escape(&self.prefix)));
            }
            args.push("--".into());
            args.extend(self.members.iter().cloned());
        }
        Ok(args)
    }
}

/// Escapes a literal for the replacement part of a `s,…,…,` expression.
fn sed_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '&' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveCompression {
    None,
    Gzip,
    Zstd { level: i32 },
}

impl ArchiveCompression {
    /// `gzip` (LXD's default), `zstd`, `none`; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gzip" => Some(ArchiveCompression::Gzip),
            "zstd" => Some(ArchiveCompression::Zstd { level: 3 }),
            "none" => Some(ArchiveCompression::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ArchiveCompression::None => "none",
            ArchiveCompression::Gzip => "gzip",
            ArchiveCompression::Zstd { .. } => "zstd",
        }
    }

    /// The usual file name ending.
    pub fn extension(self) -> &'static str {
        match self {
            ArchiveCompression::None => "tar",
            ArchiveCompression::Gzip => "tar.gz",
            ArchiveCompression::Zstd { .. } => "tar.zst",
        }
    }
}

/// How [`pack_sections`] writes its output.
#[derive(Debug, Clone)]
pub struct PackOptions {
    pub compression: ArchiveCompression,
    /// Mode of the finished file.
    pub mode: u32,
    /// Accept tar's "file changed as we read it" (exit status 1): packing a
    /// running instance.
    pub allow_changed_files: bool,
    /// Most tar bytes (before compression) and time the archive may take.
    pub limits: Limits,
}

enum Encoder<'a> {
    Plain(BufWriter<&'a File>),
    Gzip(flate2::write::GzEncoder<BufWriter<&'a File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<&'a File>>),
}

impl<'a> Encoder<'a> {
    fn new(c: ArchiveCompression, f: &'a File) -> io::Result<Self> {
        let w = BufWriter::with_capacity(IO_BUF, f);
        Ok(match c {
            ArchiveCompression::None => Encoder::Plain(w),
            ArchiveCompression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::new(6),
            )),
            ArchiveCompression::Zstd { level } => {
                let mut e = zstd::stream::write::Encoder::new(w, level)?;
                e.multithread(2)?;
                Encoder::Zstd(e)
            }
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w,
            Encoder::Zstd(w) => w,
        }
    }

    fn finish(self) -> io::Result<()> {
        let mut w = match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Zstd(e) => e.finish()?,
        };
        w.flush()
    }
}

/// Packs `sections`, in order, into one tarball at `out` (written to a temp
/// file beside it, then renamed). `progress(done, total)` counts tar bytes
/// against an estimate made from the trees' sizes. Returns the file's size.
/// Trees whose data already exceeds the byte cap are refused before tar
/// runs; tar output past it, or past the time cap, stops the packing. On
/// any error nothing is left at `out` or beside it.
pub fn pack_sections(
    sections: &[Section],
    out: &Path,
    opts: &PackOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, ImageError> {
    let deadline = opts.limits.deadline();
    let total: u64 = sections.iter().map(section_size).sum();
    if opts.limits.exceeded_by(total) {
        return Err(opts.limits.too_large("the data to pack is"));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".kante-pack-")
        .tempfile_in(parent)
        .ctx(|| format!("creating a temporary file in {}", parent.display()))?;
    let mut enc = Encoder::new(opts.compression, tmp.as_file())
        .ctx(|| format!("starting {}", opts.compression.name()))?;
    let mut done = 0u64;
    let mut reported = 0u64;
    progress(0, total);
    for sec in sections {
        pack_one(sec, opts, &deadline, enc.writer(), &mut |n| {
            done += n;
            if opts.limits.exceeded_by(done) {
                return Err(opts.limits.too_large("the archive's data is"));
            }
            if done - reported >= PROGRESS_STEP {
                reported = done;
                progress(done, total.max(done));
            }
            Ok(())
        })?;
    }
    let w = enc.writer();
    w.write_all(&[0u8; END_MARKER])
        .ctx(|| format!("writing {}", out.display()))?;
    enc.finish().ctx(|| format!("writing {}", out.display()))?;
    progress(done + END_MARKER as u64, done + END_MARKER as u64);
    tmp.as_file()
        .sync_all()
        .ctx(|| format!("syncing {}", out.display()))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(opts.mode))
        .ctx(|| format!("chmod {}", tmp.path().display()))?;
    tmp.persist(out)
        .map_err(|e| ImageError::io(format!("storing {}", out.display()), e.error))?;
    fs::metadata(out)
        .map(|m| m.len())
        .ctx(|| format!("stat {}", out.display()))
}

/// Runs tar for one section, writing its output minus the end marker.
fn pack_one(
    sec: &Section,
    opts: &PackOptions,
    deadline: &Deadline,
    w: &mut dyn Write,
    advance: &mut dyn FnMut(u64) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    deadline.check("packing the archive")?;
    let mut child = dies_with_parent(&mut Command::new("tar"))
        .args([
            "--create",
            "--file=-",
            "--record-size=512",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--sort=name",
            // Holes stay holes (a guest's `truncate -s 2G` is a few blocks).
            "--sparse",
        ])
        .arg("--directory")
        .arg(&sec.dir)
        .args(sec.tar_args()?)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("tar", "tar", e))?;
    let stderr = collect_stderr(&mut child, 64 * 1024);
    let watchdog = Watchdog::start(&child, deadline.remaining());
    let mut stdout = child.stdout.take().expect("piped stdout");
    let result = strip_end_marker(&mut stdout, w, advance);
    drop(stdout);
    if result.is_err() {
        let _ = child.kill();
    }
    let (status, fired) = wait_watched(&mut child, watchdog).ctx(|| "waiting for tar".into())?;
    let err_text = stderr.join().unwrap_or_default();
    if fired {
        return Err(deadline.error(&format!("packing {}", sec.dir.display())));
    }
    // Our own stop (the cap, a write error) explains tar's broken pipe.
    if matches!(result, Err(ImageError::TooLarge(_) | ImageError::Io { .. })) {
        return result;
    }
    let changed_only = opts.allow_changed_files && status.code() == Some(1);
    if !status.success() && !changed_only {
        return Err(ImageError::tool(
            "tar",
            format!(
                "packing {} failed ({status}): {}",
                sec.dir.display(),
                first_line(&err_text, b"")
            ),
        ));
    }
    if changed_only {
        tracing::warn!(dir = %sec.dir.display(), "files changed while being packed");
    }
    result
}

/// Copies `r` to `w` except its last 1024 bytes, which must be zeros (tar's
/// end-of-archive marker at a 512-byte record size).
fn strip_end_marker(
    r: &mut dyn Read,
    w: &mut dyn Write,
    advance: &mut dyn FnMut(u64) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let mut buf = vec![0u8; IO_BUF];
    let mut pending: Vec<u8> = Vec::with_capacity(IO_BUF + END_MARKER);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io("reading from tar", e)),
        };
        pending.extend_from_slice(&buf[..n]);
        if pending.len() > END_MARKER {
            let cut = pending.len() - END_MARKER;
            advance(cut as u64)?;
            w.write_all(&pending[..cut])
                .ctx(|| "writing the archive".into())?;
            pending.drain(..cut);
        }
    }
    if pending.len() != END_MARKER || pending.iter().any(|b| *b != 0) {
        return Err(ImageError::tool(
            "tar",
            "its output does not end with an end-of-archive marker",
        ));
    }
    Ok(())
}

/// Bytes tar will write for `sec`: an estimate (headers and padding).
fn section_size(sec: &Section) -> u64 {
    if sec.members.is_empty() {
        return tree_size(&sec.dir);
    }
    sec.members
        .iter()
        .map(|m| tree_size(&sec.dir.join(m)))
        .sum()
}

/// Bytes of regular files under `path` (a file or a tree), rounded the way
/// tar stores them: a header and 512-byte blocks each; a sparse file counts
/// the blocks it really has, as `--sparse` stores it.
pub(crate) fn tree_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        total += 512;
        if m.is_file() {
            let stored = m.len().min(m.blocks().saturating_mul(512));
            total += stored.div_ceil(512) * 512;
        } else if m.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// Extracts a (possibly compressed) tarball into the existing directory
/// `dir` with GNU tar (numeric owners, modes, xattrs, FIFOs, hard links,
/// sparse files), every byte checked by the scanner first: traversal,
/// links out of the tree, entries outside `layout`, truncation and
/// corruption are errors, device nodes become empty regular files, and the
/// bytes written and the time taken stay within `limits`.
/// `progress(done, total)` counts bytes of the file.
pub fn extract(
    archive: &Path,
    dir: &Path,
    layout: Layout,
    limits: &Limits,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ImageError> {
    crate::unpack::extract_file(archive, dir, layout, limits, progress)
}

/// Extracts the plain (uncompressed) tar stream read from `input` into the
/// existing directory `dir`, as [`extract`] does a file: every byte through
/// the scanner first (the same checks, `limits` on bytes and time), then
/// GNU tar, which restores POSIX ACLs too. Unlike an image, a stream (a
/// copy of a volume) with a device node is refused, not rewritten. `input`
/// is read to its end (bytes after the end-of-archive marker are read and
/// dropped), so a framed stream is left at its next frame. Returns the
/// bytes the extraction writes, as the scanner counts them.
pub fn extract_stream(
    input: &mut dyn Read,
    dir: &Path,
    layout: Layout,
    limits: &Limits,
) -> Result<u64, ImageError> {
    let job = crate::unpack::Job {
        layout,
        limits,
        deadline: limits.deadline(),
        acls: true,
        refuse_devices: true,
    };
    crate::unpack::run_tar(input, Compression::None, dir, &job, "the tar stream")
}

/// The contents of the regular file `member` (e.g. `backup/index.yaml`) of
/// a tarball of `layout`, reading only as far as needed; `None` if it has
/// none. The part read is checked like an extraction would check it.
pub fn read_member(
    archive: &Path,
    member: &str,
    layout: Layout,
) -> Result<Option<Vec<u8>>, ImageError> {
    let file = File::open(archive).ctx(|| format!("opening {}", archive.display()))?;
    let (compression, head) = sniff(file).ctx(|| format!("reading {}", archive.display()))?;
    if compression == Compression::Squashfs {
        return Err(ImageError::InvalidImage(
            "a squashfs image where a tarball was expected".into(),
        ));
    }
    let mut dec = decoder(compression, BufReader::with_capacity(256 * 1024, head));
    let mut scanner = TarScanner::capturing(layout, member.trim_start_matches("./").as_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decode_error(compression, e)),
        };
        scanner.feed(&buf[..n])?;
        if let Some(data) = scanner.metadata.take() {
            return Ok(Some(data));
        }
        if scanner.ended() {
            return Ok(None);
        }
    }
    scanner.finish()?;
    Ok(None)
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
