//! Tarballs read once, from a stream (an upload), never spooled: the
//! head of the archive is read until its first member is known, so a
//! caller can decide on that member (a backup's `backup/index.yaml`)
//! before anything is unpacked, then the rest goes through the scanner
//! into GNU tar exactly as [`crate::archive::extract`] takes a file.
//!
//! If the member does not come first (only directories may precede it),
//! the caller gets the raw bytes read so far and the rest of the source,
//! to spool and handle as a file.

use std::io::{self, BufReader, Cursor, Read, Write};
use std::sync::{Arc, Mutex};

use crate::compress::{decoder_send, sniff, Compression};
use crate::error::{ImageError, IoContext};
use crate::limits::Limits;
use crate::store::decode_error;
use crate::tarscan::{Layout, TarScanner};
use crate::unpack::{run_tar, Job};

const IO_BUF: usize = 256 * 1024;
/// Most decompressed bytes kept while looking for the first member
/// (extension headers and directories before it included).
const MAX_HEAD: usize = 32 << 20;
/// Report progress at most every this many source bytes.
const PROGRESS_STEP: u64 = 4 << 20;

/// A source shared by the decoder and, for spooling, the caller: what is
/// read while `recording` is also kept.
struct Source {
    src: Box<dyn Read + Send>,
    recording: bool,
    record: Vec<u8>,
    read: u64,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Source>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Source> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.lock();
        let n = s.src.read(buf)?;
        s.read += n as u64;
        if s.recording {
            s.record.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// A tarball being read from a stream, its head already looked at.
pub struct StreamedArchive {
    source: Shared,
    compression: Compression,
    layout: Layout,
    /// Decompressed bytes read so far: the archive's start.
    head: Vec<u8>,
    rest: Box<dyn Read + Send>,
}

/// Reads the start of the (possibly compressed) tarball `src` of `layout`
/// until its first member other than a directory: its contents if it is
/// the regular file `member` (e.g. `backup/index.yaml`), else `None`. The
/// part read is checked as an extraction would check it.
pub fn open_stream(
    src: Box<dyn Read + Send>,
    layout: Layout,
    member: &str,
) -> Result<(Option<Vec<u8>>, StreamedArchive), ImageError> {
    let source = Shared(Arc::new(Mutex::new(Source {
        src,
        recording: true,
        record: Vec::new(),
        read: 0,
    })));
    let (compression, sniffed) = sniff(source.clone()).ctx(|| "reading the upload".into())?;
    if compression == Compression::Squashfs {
        return Err(ImageError::InvalidImage(
            "a squashfs image where a tarball was expected".into(),
        ));
    }
    let mut rest = decoder_send(compression, BufReader::with_capacity(IO_BUF, sniffed));
    let mut scanner = TarScanner::capturing(layout, member.trim_start_matches("./").as_bytes());
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let found = loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decode_error(compression, e)),
        };
        head.extend_from_slice(&buf[..n]);
        scanner.feed(&buf[..n])?;
        match scanner.files_before_capture {
            Some(0) => {
                if let Some(data) = scanner.metadata.take() {
                    break Some(data);
                }
            }
            Some(_) => break None,
            None if scanner.files > 0 => break None,
            None => {}
        }
        if scanner.ended() || head.len() > MAX_HEAD {
            break None;
        }
    };
    source.lock().recording = false;
    let archive = StreamedArchive {
        source,
        compression,
        layout,
        head,
        rest,
    };
    Ok((found, archive))
}

/// Counts the source's bytes as the decoder takes them.
struct Counting<'a> {
    inner: &'a mut dyn Read,
    source: Shared,
    reported: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = self.source.lock().read;
        if read - self.reported >= PROGRESS_STEP {
            self.reported = read;
            (self.progress)(read);
        }
        Ok(n)
    }
}

impl std::fmt::Debug for StreamedArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedArchive")
            .field("compression", &self.compression)
            .field("head", &self.head.len())
            .finish_non_exhaustive()
    }
}

impl StreamedArchive {
    /// Source bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.source.lock().read
    }

    /// Unpacks the whole archive (its head included) into the existing
    /// directory `dir`, as [`crate::archive::extract`] does a file: every
    /// byte through the scanner, within `limits`, device nodes as empty
    /// files. `progress(read)` counts source bytes. Returns the bytes
    /// written, as the scanner counts them.
    pub fn extract(
        self,
        dir: &std::path::Path,
        limits: &Limits,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ImageError> {
        let StreamedArchive {
            source,
            compression,
            layout,
            head,
            mut rest,
        } = self;
        source.lock().record = Vec::new();
        let job = Job {
            layout,
            limits,
            deadline: limits.deadline(),
            acls: false,
            refuse_devices: false,
        };
        let mut whole = Cursor::new(head).chain(&mut rest);
        let mut input = Counting {
            inner: &mut whole,
            source: source.clone(),
            reported: 0,
            progress,
        };
        let written = run_tar(&mut input, compression, dir, &job, "the upload")?;
        progress(source.lock().read);
        Ok(written)
    }

    /// Writes the raw source, from its first byte to its end, to `out`
    /// (to handle it as a file after all). Returns the bytes written.
    pub fn spool(self, out: &mut dyn Write) -> io::Result<u64> {
        let StreamedArchive { source, rest, .. } = self;
        drop(rest);
        let mut s = source.lock();
        let record = std::mem::take(&mut s.record);
        out.write_all(&record)?;
        let copied = io::copy(&mut s.src, out)?;
        s.read += copied;
        Ok(record.len() as u64 + copied)
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
