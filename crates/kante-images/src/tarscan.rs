//! A push-based tar *scanner* and filter: it never writes files, it walks
//! the headers of a (decompressed) tar stream to
//!  - validate the archive structure (checksums, truncation),
//!  - reject entries that could escape the extraction directory (absolute
//!    paths, `..`, writing or hard-linking through a symlink from the
//!    archive), judged on the name GNU tar will really use (pax `path`,
//!    `GNU.sparse.name`, GNU long names),
//!  - reject entries outside the archive's [`Layout`] and pax keys GNU tar
//!    acts on that the scanner does not understand (`GNU.*`),
//!  - count the bytes extraction will write, against a cap,
//!  - capture `metadata.yaml` and note whether `rootfs/` is present.
//!
//! [`TarScanner::filter`] also produces the stream GNU tar is fed: the same
//! bytes, except that character and block device entries become empty
//! regular files (setuid/setgid cleared, checksum recomputed), so an image
//! or a backup never materialises a device node. A header is passed on only
//! once it is complete and checked, whatever the chunking of the input.

use std::collections::HashSet;

use crate::error::ImageError;
use crate::limits::Limits;

const BLOCK: usize = 512;
/// Upper bound for GNU long names and pax headers kept in memory.
const MAX_EXT_HEADER: usize = 8 << 20;
/// Upper bound for a captured `metadata.yaml`.
pub(crate) const MAX_METADATA: usize = 16 << 20;

/// What may sit at the top of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Anything (a split image's rootfs tarball, unpacked into `rootfs/`).
    Any,
    /// A unified image: `metadata.yaml`, `rootfs/`, `templates/`.
    Image,
    /// The metadata tarball of a split image: `metadata.yaml`, `templates/`.
    ImageMeta,
    /// An instance backup: `backup/index.yaml`, `backup/container/`,
    /// `backup/snapshots/<snapshot>/`.
    Backup,
}

impl Layout {
    /// Whether the (normalised) archive path may be unpacked.
    pub(crate) fn allows(self, path: &[u8]) -> bool {
        let under = |dir: &[u8]| {
            path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
        };
        if path.is_empty() {
            return true; // `./`: the extraction directory itself
        }
        match self {
            Layout::Any => true,
            Layout::Image => path == b"metadata.yaml" || under(b"rootfs") || under(b"templates"),
            Layout::ImageMeta => path == b"metadata.yaml" || under(b"templates"),
            Layout::Backup => {
                if path == b"backup" || path == b"backup/index.yaml" || path == b"backup/snapshots"
                {
                    return true;
                }
                if under(b"backup/container") {
                    return true;
                }
                // backup/snapshots/<s> and below; <s> is one real component.
                path.strip_prefix(b"backup/snapshots/")
                    .is_some_and(|rest| !rest.is_empty())
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Layout::Any => "anything",
            Layout::Image => "metadata.yaml, rootfs/ and templates/",
            Layout::ImageMeta => "metadata.yaml and templates/",
            Layout::Backup => {
                "backup/index.yaml, backup/container/ and backup/snapshots/<snapshot>/"
            }
        }
    }
}

/// Where an entry's data bytes go.
enum Sink {
    Skip,
    LongName(Vec<u8>),
    LongLink(Vec<u8>),
    Pax(Vec<u8>),
    GlobalPax(Vec<u8>),
    Metadata(Vec<u8>),
}

enum State {
    Header,
    /// Old GNU sparse headers may be followed by extension blocks.
    SparseExt {
        size: u64,
    },
    Data {
        remaining: u64,
        pad: u64,
        sink: Sink,
    },
    End,
}

#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_linkpath: Option<Vec<u8>>,
    pax_size: Option<u64>,
    /// `GNU.sparse.name`: GNU tar's name for the entry, over `path`.
    sparse_name: Option<Vec<u8>>,
    /// Any `GNU.sparse.*` key: the entry is a sparse file.
    sparse: bool,
}

pub(crate) struct TarScanner {
    block: [u8; BLOCK],
    fill: usize,
    state: State,
    /// Bytes of the tar stream consumed so far (for error messages).
    offset: u64,
    pending: Pending,
    symlinks: HashSet<Vec<u8>>,
    current: String,
    layout: Layout,
    limits: Limits,
    /// The member whose contents are captured (`metadata.yaml` for images).
    capture: Option<Vec<u8>>,
    /// Contents of the captured member (`metadata.yaml` at the archive root), if seen.
    pub metadata: Option<Vec<u8>>,
    /// Whether any `rootfs` / `rootfs/...` entry was seen.
    pub has_rootfs: bool,
    /// Number of real (non-extension) entries.
    pub entries: u64,
    /// Number of real entries other than directories.
    pub files: u64,
    /// Entries other than directories seen before the captured member's
    /// (once its capture has started).
    pub files_before_capture: Option<u64>,
    /// Bytes extraction writes: each entry's data (a sparse file's stored
    /// data) plus a block per entry for its inode.
    pub unpacked: u64,
    /// Device entries turned into empty regular files, and the first names.
    pub devices_dropped: u64,
    pub dropped_names: Vec<String>,
    /// Refuse device entries instead of rewriting them.
    refuse_devices: bool,
}

impl TarScanner {
    /// A scanner for archives of `layout`, capturing `metadata.yaml` if asked.
    pub(crate) fn new(layout: Layout, capture_metadata: bool) -> Self {
        let mut s = TarScanner::capturing(layout, b"metadata.yaml");
        if !capture_metadata {
            s.capture = None;
        }
        s
    }

    /// A scanner that captures the regular file at `path` (normalised, e.g.
    /// `backup/index.yaml`) into `metadata`.
    pub(crate) fn capturing(layout: Layout, path: &[u8]) -> Self {
        TarScanner {
            block: [0; BLOCK],
            fill: 0,
            state: State::Header,
            offset: 0,
            pending: Pending::default(),
            symlinks: HashSet::new(),
            current: String::new(),
            layout,
            limits: Limits::none(),
            capture: Some(path.to_vec()),
            metadata: None,
            has_rootfs: false,
            entries: 0,
            files: 0,
            files_before_capture: None,
            unpacked: 0,
            devices_dropped: 0,
            dropped_names: Vec::new(),
            refuse_devices: false,
        }
    }

    /// Refuse archives whose extraction writes more than `limits.max_bytes`.
    pub(crate) fn with_limits(mut self, limits: &Limits) -> Self {
        self.limits = limits.clone();
        self
    }

    /// Refuse archives holding a device node (a copy of a volume, which
    /// must arrive whole or not at all) rather than turning it into an
    /// empty file (an image, whose device nodes a container never needs).
    pub(crate) fn refusing_devices(mut self) -> Self {
        self.refuse_devices = true;
        self
    }

    /// True once the end-of-archive marker was seen.
    pub(crate) fn ended(&self) -> bool {
        matches!(self.state, State::End)
    }

    /// Consumes `data`. Returns how many bytes belong to the archive: all of
    /// them, unless the end-of-archive marker was reached inside `data`.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<usize, ImageError> {
        self.run(data, None)
    }

    /// Consumes `data` like [`TarScanner::feed`] and appends to `out` the
    /// bytes to hand to GNU tar: checked headers (device entries rewritten)
    /// and entry data, up to and including the first end-of-archive block.
    pub(crate) fn filter(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, ImageError> {
        self.run(data, Some(out))
    }

    fn run(&mut self, data: &[u8], mut out: Option<&mut Vec<u8>>) -> Result<usize, ImageError> {
        let mut pos = 0;
        while pos < data.len() {
            match &mut self.state {
                State::End => return Ok(pos),
                State::Header | State::SparseExt { .. } => {
                    let n = (BLOCK - self.fill).min(data.len() - pos);
                    self.block[self.fill..self.fill + n].copy_from_slice(&data[pos..pos + n]);
                    self.fill += n;
                    pos += n;
                    self.offset += n as u64;
                    if self.fill == BLOCK {
                        self.fill = 0;
                        self.process_block()?;
                        if let Some(o) = out.as_deref_mut() {
                            o.extend_from_slice(&self.block);
                        }
                    }
                }
                State::Data {
                    remaining,
                    pad,
                    sink,
                } => {
                    let avail = (data.len() - pos) as u64;
                    let take = avail.min(remaining.saturating_add(*pad));
                    let body = take.min(*remaining);
                    let chunk = &data[pos..pos + body as usize];
                    match sink {
                        Sink::Skip => {}
                        Sink::LongName(b)
                        | Sink::LongLink(b)
                        | Sink::Pax(b)
                        | Sink::GlobalPax(b) => {
                            if b.len() + chunk.len() > MAX_EXT_HEADER {
                                return Err(self.corrupt("oversized extended header"));
                            }
                            b.extend_from_slice(chunk);
                        }
                        Sink::Metadata(b) => {
                            if b.len() + chunk.len() > MAX_METADATA {
                                return Err(ImageError::InvalidImage(format!(
                                    "metadata.yaml is larger than {} MiB",
                                    MAX_METADATA >> 20
                                )));
                            }
                            b.extend_from_slice(chunk);
                        }
                    }
                    if let Some(o) = out.as_deref_mut() {
                        o.extend_from_slice(&data[pos..pos + take as usize]);
                    }
                    *remaining -= body;
                    *pad -= take - body;
                    pos += take as usize;
                    self.offset += take;
                    if *remaining == 0 && *pad == 0 {
                        let State::Data { sink, .. } =
                            std::mem::replace(&mut self.state, State::Header)
                        else {
                            unreachable!()
                        };
                        self.finish_sink(sink)?;
                    }
                }
            }
        }
        Ok(pos)
    }

    /// Called at the end of the decompressed stream.
    pub(crate) fn finish(&self) -> Result<(), ImageError> {
        match &self.state {
            State::End => Ok(()),
            _ if self.offset == 0 => Err(ImageError::Corrupt("the archive is empty".into())),
            State::Data { .. } => Err(ImageError::Corrupt(format!(
                "unexpected end of data inside entry {:?}",
                self.current
            ))),
            _ => Err(ImageError::Corrupt(format!(
                "unexpected end of archive at byte {} (no end-of-archive marker)",
                self.offset
            ))),
        }
    }

    fn corrupt(&self, what: &str) -> ImageError {
        ImageError::Corrupt(format!(
            "{what} at byte {}",
            self.offset.saturating_sub(BLOCK as u64)
        ))
    }

    fn start_data(&mut self, size: u64, sink: Sink) -> Result<(), ImageError> {
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        if size == 0 {
            self.state = State::Header;
            self.finish_sink(sink)
        } else {
            self.state = State::Data {
                remaining: size,
                pad,
                sink,
            };
            Ok(())
        }
    }

    fn finish_sink(&mut self, sink: Sink) -> Result<(), ImageError> {
        match sink {
            Sink::Skip => {}
            Sink::LongName(b) => self.pending.long_name = Some(trim_nul(&b).to_vec()),
            Sink::LongLink(b) => self.pending.long_link = Some(trim_nul(&b).to_vec()),
            Sink::Pax(b) => self.parse_pax(&b, false)?,
            Sink::GlobalPax(b) => self.parse_pax(&b, true)?,
            Sink::Metadata(b) => self.metadata = Some(b),
        }
        Ok(())
    }

    /// Adds an entry's cost to the bytes extraction writes, within the cap.
    fn count(&mut self, data: u64) -> Result<(), ImageError> {
        self.unpacked = self
            .unpacked
            .saturating_add(BLOCK as u64)
            .saturating_add(data);
        if self.limits.exceeded_by(self.unpacked) {
            return Err(self.limits.too_large("the archive unpacks to"));
        }
        Ok(())
    }

    fn process_block(&mut self) -> Result<(), ImageError> {
        if let State::SparseExt { size } = self.state {
            // isextended flag of a sparse extension block.
            if self.block[504] == 0 {
                return self.start_data(size, Sink::Skip);
            }
            return Ok(());
        }
        let h = self.block;
        if h.iter().all(|&b| b == 0) {
            // GNU tar stops at the first zero block too (a lone one only warns).
            self.state = State::End;
            return Ok(());
        }
        verify_checksum(&h).map_err(|what| self.corrupt(what))?;
        let typeflag = h[156];
        let header_size =
            parse_numeric(&h[124..136]).ok_or_else(|| self.corrupt("bad size field"))?;
        match typeflag {
            b'L' => return self.start_data(header_size, Sink::LongName(Vec::new())),
            b'K' => return self.start_data(header_size, Sink::LongLink(Vec::new())),
            b'x' => return self.start_data(header_size, Sink::Pax(Vec::new())),
            b'g' => return self.start_data(header_size, Sink::GlobalPax(Vec::new())),
            // Volume labels carry nothing we act on, but, as for GNU tar,
            // they take the long name and pax keys before them.
            b'V' => {
                let pending = std::mem::take(&mut self.pending);
                return self.start_data(pending.pax_size.unwrap_or(header_size), Sink::Skip);
            }
            b'M' | b'N' => {
                return Err(self.corrupt("unsupported GNU multi-volume/old long-name entry"))
            }
            _ => {}
        }

        let pending = std::mem::take(&mut self.pending);
        // GNU tar's order: GNU.sparse.name over pax path over a GNU long name.
        let raw_name = match pending
            .sparse_name
            .or(pending.pax_path)
            .or(pending.long_name)
        {
            Some(n) => n,
            None => ustar_name(&h),
        };
        let size = pending.pax_size.unwrap_or(header_size);
        self.current = String::from_utf8_lossy(&raw_name).into_owned();
        let path = normalize(&raw_name)
            .map_err(|why| ImageError::UnsafePath(format!("{:?}: {why}", self.current)))?;
        self.entries += 1;
        if typeflag != b'5' {
            self.files += 1;
        }
        self.check_layout(&path, &self.current)?;
        self.check_not_through_symlink(&path, &self.current)?;
        if path == b"rootfs" || path.starts_with(b"rootfs/") {
            self.has_rootfs = true;
        }
        if typeflag != b'2' {
            // A later non-symlink entry replaces the symlink on extraction.
            self.symlinks.remove(&path);
        }
        let is_file = matches!(typeflag, b'0' | 0 | b'7');
        if pending.sparse && !is_file {
            return Err(ImageError::InvalidImage(format!(
                "entry {:?} of type '{}' carries GNU.sparse keys",
                self.current, typeflag as char
            )));
        }

        match typeflag {
            b'1' | b'2' | b'3' | b'4' | b'5' | b'6' => {
                // GNU tar and other readers disagree on whether these carry data;
                // refuse the ambiguity instead of risking a desync with tar.
                if size != 0 {
                    return Err(ImageError::Corrupt(format!(
                        "entry {:?} of type '{}' unexpectedly carries {size} bytes of data",
                        self.current, typeflag as char
                    )));
                }
                self.count(0)?;
                if typeflag == b'1' {
                    let raw_link = pending.pax_linkpath.or(pending.long_link);
                    let raw_link = raw_link.unwrap_or_else(|| field(&h[157..257]).to_vec());
                    self.check_hard_link(&raw_link)?;
                } else if typeflag == b'2' {
                    self.symlinks.insert(path);
                } else if typeflag == b'3' || typeflag == b'4' {
                    if self.refuse_devices {
                        return Err(ImageError::UnsafePath(format!(
                            "device node {:?} (device nodes are not accepted)",
                            self.current
                        )));
                    }
                    self.drop_device()?;
                }
                self.state = State::Header;
                Ok(())
            }
            b'S' => {
                // Old GNU sparse: the size field is the stored data size.
                self.count(size)?;
                if h[482] != 0 {
                    self.state = State::SparseExt { size };
                    Ok(())
                } else {
                    self.start_data(size, Sink::Skip)
                }
            }
            _ => {
                // Regular files ('0', NUL, '7'), GNU dumpdirs ('D') and unknown
                // types (POSIX: treat as regular) all carry `size` bytes.
                self.count(size)?;
                let sink =
                    if is_file && !pending.sparse && self.capture.as_deref() == Some(&path[..]) {
                        if size > MAX_METADATA as u64 {
                            return Err(ImageError::InvalidImage(format!(
                                "{} is larger than {} MiB",
                                String::from_utf8_lossy(&path),
                                MAX_METADATA >> 20
                            )));
                        }
                        self.files_before_capture = Some(self.files - 1);
                        Sink::Metadata(Vec::with_capacity(size as usize))
                    } else {
                        Sink::Skip
                    };
                self.start_data(size, sink)
            }
        }
    }

    fn check_layout(&self, path: &[u8], shown: &str) -> Result<(), ImageError> {
        if self.layout.allows(path) {
            Ok(())
        } else {
            Err(ImageError::UnsafePath(format!(
                "{shown:?} is outside the archive's layout (only {} may be present)",
                self.layout.describe()
            )))
        }
    }

    fn check_hard_link(&self, raw_link: &[u8]) -> Result<(), ImageError> {
        let shown = String::from_utf8_lossy(raw_link).into_owned();
        let target = normalize(raw_link).map_err(|why| {
            ImageError::UnsafePath(format!("hard link {:?} -> {shown:?}: {why}", self.current))
        })?;
        if target.is_empty() {
            return Err(ImageError::UnsafePath(format!(
                "hard link {:?} points at the archive root",
                self.current
            )));
        }
        self.check_layout(&target, &shown)?;
        self.check_not_through_symlink(&target, &shown)?;
        if self.symlinks.contains(&target) {
            return Err(ImageError::UnsafePath(format!(
                "hard link {:?} targets symlink {shown:?}",
                self.current
            )));
        }
        Ok(())
    }

    /// Turns the character or block device header in `self.block` into an
    /// empty regular file without setuid/setgid bits.
    fn drop_device(&mut self) -> Result<(), ImageError> {
        let h = &mut self.block;
        let mode = parse_numeric(&h[100..108]).ok_or_else(|| {
            ImageError::Corrupt(format!("bad mode field of entry {:?}", self.current))
        })?;
        write_octal(&mut h[100..108], mode & 0o1777);
        h[156] = b'0';
        h[157..257].fill(0); // linkname
        h[329..345].fill(0); // devmajor, devminor
        set_checksum(h);
        self.devices_dropped += 1;
        if self.dropped_names.len() < 8 {
            self.dropped_names.push(self.current.clone());
        }
        Ok(())
    }

    fn check_not_through_symlink(&self, path: &[u8], shown: &str) -> Result<(), ImageError> {
        for (i, &b) in path.iter().enumerate() {
            if b == b'/' && self.symlinks.contains(&path[..i]) {
                return Err(ImageError::UnsafePath(format!(
                    "{shown:?} goes through symlink {:?} from the same archive",
                    String::from_utf8_lossy(&path[..i])
                )));
            }
        }
        Ok(())
    }

    fn parse_pax(&mut self, data: &[u8], global: bool) -> Result<(), ImageError> {
        let mut rest = data;
        while !rest.is_empty() {
            let sp = rest
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| self.corrupt("malformed pax header"))?;
            let len: usize = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|&l| l > sp + 1 && l <= rest.len())
                .ok_or_else(|| self.corrupt("malformed pax header"))?;
            // GNU tar stops at a malformed record and ignores the rest:
            // refuse it, or the records after it would be ours alone.
            let (record, eq) = rest[sp + 1..len]
                .strip_suffix(b"\n")
                .and_then(|r| Some((r, r.iter().position(|&b| b == b'=')?)))
                .ok_or_else(|| self.corrupt("malformed pax header"))?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            if global {
                check_global_key(key)?;
            } else {
                self.pax_record(key, value)?;
            }
            rest = &rest[len..];
        }
        Ok(())
    }

    fn pax_record(&mut self, key: &[u8], value: &[u8]) -> Result<(), ImageError> {
        match key {
            b"path" => self.pending.pax_path = Some(value.to_vec()),
            b"linkpath" => self.pending.pax_linkpath = Some(value.to_vec()),
            b"size" => {
                let size = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| self.corrupt("bad pax size"))?;
                self.pending.pax_size = Some(size);
            }
            b"GNU.sparse.name" => {
                self.pending.sparse = true;
                self.pending.sparse_name = Some(value.to_vec());
            }
            k if SPARSE_KEYS.contains(&k) => self.pending.sparse = true,
            k if k.starts_with(b"GNU.") => {
                return Err(ImageError::InvalidImage(format!(
                    "unsupported pax key {:?}",
                    String::from_utf8_lossy(k)
                )))
            }
            // mtime, uid, uname, SCHILY.xattr.*, …: nothing to check.
            _ => {}
        }
        Ok(())
    }
}

/// The `GNU.sparse.*` keys of GNU tar's sparse formats 0.0, 0.1 and 1.0
/// (other than `GNU.sparse.name`).
const SPARSE_KEYS: [&[u8]; 8] = [
    b"GNU.sparse.major",
    b"GNU.sparse.minor",
    b"GNU.sparse.size",
    b"GNU.sparse.realsize",
    b"GNU.sparse.numblocks",
    b"GNU.sparse.offset",
    b"GNU.sparse.numbytes",
    b"GNU.sparse.map",
];

/// A global pax header applies to every later entry: none of the keys
/// that name, size or link an entry may be there.
fn check_global_key(key: &[u8]) -> Result<(), ImageError> {
    if matches!(key, b"path" | b"linkpath" | b"size") || key.starts_with(b"GNU.") {
        return Err(ImageError::InvalidImage(format!(
            "pax key {:?} in a global header",
            String::from_utf8_lossy(key)
        )));
    }
    Ok(())
}

fn verify_checksum(h: &[u8; BLOCK]) -> Result<(), &'static str> {
    let stored = parse_octal(&h[148..156]).ok_or("invalid tar header")?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += (b as i8) as i64;
    }
    // Some historic writers summed signed chars.
    if stored == unsigned || stored as i64 == signed {
        Ok(())
    } else {
        Err("invalid tar header (checksum mismatch)")
    }
}

/// Recomputes a header's checksum (the unsigned sum, as GNU tar writes it).
fn set_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Writes `v` as a NUL-terminated, zero-padded octal field.
fn write_octal(f: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = f.len() - 1);
    f.copy_from_slice(s.as_bytes());
}

/// The bytes of a NUL-terminated header field.
fn field(f: &[u8]) -> &[u8] {
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    &f[..end]
}

fn trim_nul(b: &[u8]) -> &[u8] {
    field(b)
}

/// Name from the header itself: POSIX ustar splits long names into prefix/name;
/// GNU format reuses the prefix area for other data, so only honour it for ustar.
fn ustar_name(h: &[u8; BLOCK]) -> Vec<u8> {
    let name = field(&h[0..100]);
    if &h[257..263] == b"ustar\0" {
        let prefix = field(&h[345..500]);
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(name);
            return full;
        }
    }
    name.to_vec()
}

/// Normalises an archive path (drops `.` and empty components) and rejects
/// anything that could resolve outside the extraction root.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path contains '..'"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

fn parse_octal(f: &[u8]) -> Option<u64> {
    let s = field(f);
    let s: Vec<u8> = s.iter().copied().filter(|&b| b != b' ').collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// Numeric header field: octal, or GNU base-256 when the high bit is set.
fn parse_numeric(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        if f[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = (f[0] & 0x3f) as u64;
        for &b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        Some(v)
    } else {
        parse_octal(f)
    }
}

#[cfg(test)]
#[path = "tarscan_tests.rs"]
pub(crate) mod tests;
