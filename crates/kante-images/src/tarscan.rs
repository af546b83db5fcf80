//! A push-based tar *scanner*: it never writes files, it only walks the
//! headers of a (decompressed) tar stream to
//!  - validate the archive structure (checksums, truncation),
//!  - reject entries that could escape the extraction directory (absolute
//!    paths, `..`, writing or hard-linking through a symlink from the archive),
//!  - capture `metadata.yaml` and note whether `rootfs/` is present.
//!
//! It is fed the same bytes that go to GNU tar, *before* they go there, so an
//! unsafe header is refused before tar ever sees it. GNU tar has its own
//! protections (it strips `/` and `..`, and delays symlinks); this is a second
//! line of defence that also turns such archives into clear errors.

use std::collections::HashSet;

use crate::error::ImageError;

const BLOCK: usize = 512;
/// Upper bound for GNU long names and pax headers kept in memory.
const MAX_EXT_HEADER: usize = 8 << 20;
/// Upper bound for a captured `metadata.yaml`.
pub(crate) const MAX_METADATA: usize = 16 << 20;

/// Where an entry's data bytes go.
enum Sink {
    Skip,
    LongName(Vec<u8>),
    LongLink(Vec<u8>),
    Pax(Vec<u8>),
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
    /// The member whose contents are captured (`metadata.yaml` for images).
    capture: Option<Vec<u8>>,
    /// Contents of the captured member (`metadata.yaml` at the archive root), if seen.
    pub metadata: Option<Vec<u8>>,
    /// Whether any `rootfs` / `rootfs/...` entry was seen.
    pub has_rootfs: bool,
    /// Number of real (non-extension) entries.
    pub entries: u64,
}

impl TarScanner {
    pub(crate) fn new(capture_metadata: bool) -> Self {
        let mut s = TarScanner::capturing(b"metadata.yaml");
        if !capture_metadata {
            s.capture = None;
        }
        s
    }

    /// A scanner that captures the regular file at `path` (normalised, e.g.
    /// `backup/index.yaml`) into `metadata`.
    pub(crate) fn capturing(path: &[u8]) -> Self {
        TarScanner {
            block: [0; BLOCK],
            fill: 0,
            state: State::Header,
            offset: 0,
            pending: Pending::default(),
            symlinks: HashSet::new(),
            current: String::new(),
            capture: Some(path.to_vec()),
            metadata: None,
            has_rootfs: false,
            entries: 0,
        }
    }

    /// True once the end-of-archive marker was seen.
    pub(crate) fn ended(&self) -> bool {
        matches!(self.state, State::End)
    }

    /// Consumes `data`. Returns how many bytes belong to the archive: all of
    /// them, unless the end-of-archive marker was reached inside `data`.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<usize, ImageError> {
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
                    }
                }
                State::Data {
                    remaining,
                    pad,
                    sink,
                } => {
                    let avail = (data.len() - pos) as u64;
                    let take = avail.min(*remaining + *pad);
                    let body = take.min(*remaining);
                    let chunk = &data[pos..pos + body as usize];
                    match sink {
                        Sink::Skip => {}
                        Sink::LongName(b) | Sink::LongLink(b) | Sink::Pax(b) => {
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
            Sink::Pax(b) => self.parse_pax(&b)?,
            Sink::Metadata(b) => self.metadata = Some(b),
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
        self.verify_checksum(&h)?;
        let typeflag = h[156];
        let header_size =
            parse_numeric(&h[124..136]).ok_or_else(|| self.corrupt("bad size field"))?;
        match typeflag {
            b'L' => return self.start_data(header_size, Sink::LongName(Vec::new())),
            b'K' => return self.start_data(header_size, Sink::LongLink(Vec::new())),
            b'x' => return self.start_data(header_size, Sink::Pax(Vec::new())),
            // Global pax headers and volume labels carry nothing we act on.
            b'g' | b'V' => return self.start_data(header_size, Sink::Skip),
            b'M' | b'N' => {
                return Err(self.corrupt("unsupported GNU multi-volume/old long-name entry"))
            }
            _ => {}
        }

        let pending = std::mem::take(&mut self.pending);
        let raw_name = match pending.pax_path.or(pending.long_name) {
            Some(n) => n,
            None => ustar_name(&h),
        };
        let size = pending.pax_size.unwrap_or(header_size);
        self.current = String::from_utf8_lossy(&raw_name).into_owned();
        let path = normalize(&raw_name)
            .map_err(|why| ImageError::UnsafePath(format!("{:?}: {why}", self.current)))?;
        self.entries += 1;
        self.check_not_through_symlink(&path, &self.current)?;
        if path == b"rootfs" || path.starts_with(b"rootfs/") {
            self.has_rootfs = true;
        }
        if typeflag != b'2' {
            // A later non-symlink entry replaces the symlink on extraction.
            self.symlinks.remove(&path);
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
                if typeflag == b'1' {
                    let raw_link = pending.pax_linkpath.or(pending.long_link);
                    let raw_link = raw_link.unwrap_or_else(|| field(&h[157..257]).to_vec());
                    let shown = String::from_utf8_lossy(&raw_link).into_owned();
                    let target = normalize(&raw_link).map_err(|why| {
                        ImageError::UnsafePath(format!(
                            "hard link {:?} -> {shown:?}: {why}",
                            self.current
                        ))
                    })?;
                    if target.is_empty() {
                        return Err(ImageError::UnsafePath(format!(
                            "hard link {:?} points at the archive root",
                            self.current
                        )));
                    }
                    self.check_not_through_symlink(&target, &shown)?;
                    if self.symlinks.contains(&target) {
                        return Err(ImageError::UnsafePath(format!(
                            "hard link {:?} targets symlink {shown:?}",
                            self.current
                        )));
                    }
                } else if typeflag == b'2' {
                    self.symlinks.insert(path);
                }
                self.state = State::Header;
                Ok(())
            }
            b'S' => {
                // Old GNU sparse: the size field is the stored data size.
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
                let is_file = matches!(typeflag, b'0' | 0 | b'7');
                let sink = if is_file && self.capture.as_deref() == Some(&path[..]) {
                    if size > MAX_METADATA as u64 {
                        return Err(ImageError::InvalidImage(format!(
                            "{} is larger than {} MiB",
                            String::from_utf8_lossy(&path),
                            MAX_METADATA >> 20
                        )));
                    }
                    Sink::Metadata(Vec::with_capacity(size as usize))
                } else {
                    Sink::Skip
                };
                self.start_data(size, sink)
            }
        }
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

    fn verify_checksum(&self, h: &[u8; BLOCK]) -> Result<(), ImageError> {
        let stored = parse_octal(&h[148..156]).ok_or_else(|| self.corrupt("invalid tar header"))?;
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
            Err(self.corrupt("invalid tar header (checksum mismatch)"))
        }
    }

    fn parse_pax(&mut self, data: &[u8]) -> Result<(), ImageError> {
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
            let record = &rest[sp + 1..len];
            let record = record.strip_suffix(b"\n").unwrap_or(record);
            if let Some(eq) = record.iter().position(|&b| b == b'=') {
                let (key, value) = (&record[..eq], &record[eq + 1..]);
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
                    _ => {}
                }
            }
            rest = &rest[len..];
        }
        Ok(())
    }
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
pub(crate) mod testtar {
    //! A tiny ustar writer for tests, able to produce hostile archives that
    //! real tools refuse to create.

    pub struct Entry<'a> {
        pub name: &'a str,
        pub kind: u8,
        pub link: &'a str,
        pub data: &'a [u8],
        pub mode: u32,
    }

    impl<'a> Entry<'a> {
        pub fn file(name: &'a str, data: &'a [u8]) -> Self {
            Entry {
                name,
                kind: b'0',
                link: "",
                data,
                mode: 0o644,
            }
        }
        pub fn dir(name: &'a str) -> Self {
            Entry {
                name,
                kind: b'5',
                link: "",
                data: b"",
                mode: 0o755,
            }
        }
        pub fn symlink(name: &'a str, target: &'a str) -> Self {
            Entry {
                name,
                kind: b'2',
                link: target,
                data: b"",
                mode: 0o777,
            }
        }
        pub fn hardlink(name: &'a str, target: &'a str) -> Self {
            Entry {
                name,
                kind: b'1',
                link: target,
                data: b"",
                mode: 0o644,
            }
        }
    }

    fn octal(dst: &mut [u8], v: u64) {
        let s = format!("{:0width$o}\0", v, width = dst.len() - 1);
        dst.copy_from_slice(s.as_bytes());
    }

    pub fn build(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            let mut h = [0u8; 512];
            h[..e.name.len()].copy_from_slice(e.name.as_bytes());
            octal(&mut h[100..108], e.mode as u64);
            octal(&mut h[108..116], 0);
            octal(&mut h[116..124], 0);
            octal(&mut h[124..136], e.data.len() as u64);
            octal(&mut h[136..148], 1_700_000_000);
            h[156] = e.kind;
            h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].fill(b' ');
            let sum: u64 = h.iter().map(|&b| b as u64).sum();
            let s = format!("{sum:06o}\0 ");
            h[148..156].copy_from_slice(s.as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(e.data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testtar::{build, Entry};
    use super::*;

    fn scan(data: &[u8], chunk: usize) -> Result<TarScanner, ImageError> {
        let mut s = TarScanner::new(true);
        for c in data.chunks(chunk) {
            s.feed(c)?;
        }
        s.finish()?;
        Ok(s)
    }

    #[test]
    fn scans_metadata_and_rootfs_in_any_chunking() {
        let tar = build(&[
            Entry::file("./metadata.yaml", b"architecture: x86_64\n"),
            Entry::dir("rootfs/"),
            Entry::file("rootfs/etc/hostname", b"x\n"),
        ]);
        for chunk in [1, 7, 512, 100_000] {
            let s = scan(&tar, chunk).unwrap();
            assert_eq!(s.metadata.as_deref(), Some(&b"architecture: x86_64\n"[..]));
            assert!(s.has_rootfs);
            assert_eq!(s.entries, 3);
        }
    }

    #[test]
    fn rejects_escapes() {
        for entries in [
            vec![Entry::file("../evil", b"x")],
            vec![Entry::file("/abs", b"x")],
            vec![Entry::file("rootfs/../../evil", b"x")],
            vec![
                Entry::symlink("rootfs/l", "/tmp"),
                Entry::file("rootfs/l/evil", b"x"),
            ],
            vec![Entry::symlink("l", "."), Entry::dir("l/sub/")],
            vec![
                Entry::symlink("l", "/etc"),
                Entry::hardlink("h", "l/shadow"),
            ],
            vec![Entry::hardlink("h", "../outside")],
        ] {
            let err = scan(&build(&entries), 512).err().expect("must fail");
            assert!(matches!(err, ImageError::UnsafePath(_)), "{err}");
        }
        // Replacing a symlink with a directory makes later entries fine.
        let ok = build(&[
            Entry::symlink("a", "/tmp"),
            Entry::dir("a/"),
            Entry::file("a/f", b"x"),
        ]);
        scan(&ok, 512).unwrap();
    }

    #[test]
    fn detects_truncation_and_garbage() {
        let tar = build(&[Entry::file("metadata.yaml", &[b'a'; 3000])]);
        for cut in [100, 512, 1500, 3584] {
            let err = scan(&tar[..cut], 512).err().expect("truncated");
            assert!(matches!(err, ImageError::Corrupt(_)), "{cut}: {err}");
        }
        let err = scan(&[0x55; 2048], 512).err().unwrap();
        assert!(err.to_string().contains("invalid tar header"), "{err}");
        assert!(scan(&[], 512).is_err());
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_numeric(b"00000000012\0"), Some(10));
        assert_eq!(parse_numeric(b"     12 \0\0\0\0"), Some(10));
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 1;
        b256[10] = 2;
        assert_eq!(parse_numeric(&b256), Some(513));
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"./").unwrap(), b"");
    }
}
