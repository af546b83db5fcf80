//! The framing of a volume stream (see the module above for the layout):
//! the magic and header, sections as length-prefixed chunks closed by a
//! count and a CRC-32 (or by an abort frame carrying the sender's error),
//! and the trailer. A section reader hands out exactly one section's bytes
//! and then end-of-file, so a tool reading it (GNU tar, `btrfs receive`)
//! can never read into the next section, and a stream cut anywhere is an
//! error, never a short success.

use std::io::{self, Read, Write};
use std::time::Instant;

use super::StreamHeader;
use crate::{Result, StorageError};

/// The first bytes of every stream ("Kante volume stream", format 1).
pub const MAGIC: &[u8; 8] = b"KANTEVS1";
/// The last bytes of a complete stream.
pub const TRAILER: &[u8; 8] = b"KANTEEND";
/// Largest header accepted.
const MAX_HEADER: u32 = 4 << 20;
/// Chunk size the sender writes.
const CHUNK: usize = 1 << 20;
/// Largest chunk accepted.
const MAX_CHUNK: u32 = 16 << 20;
const END: u32 = 0;
const ABORT: u32 = u32::MAX;
/// Longest abort message accepted.
const MAX_MESSAGE: u32 = 64 << 10;

fn stream_error(m: impl Into<String>) -> StorageError {
    StorageError::Stream(m.into())
}

/// Reads exactly `buf.len()` bytes; `what` names them if the stream ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8], what: &str) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the stream ended inside {what}"),
            )
        } else {
            e
        }
    })
}

fn read_u32(r: &mut dyn Read, what: &str) -> io::Result<u32> {
    let mut b = [0u8; 4];
    read_full(r, &mut b, what)?;
    Ok(u32::from_be_bytes(b))
}

fn io_stream_error(e: io::Error) -> StorageError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => stream_error(e.to_string()),
        _ => StorageError::Io {
            what: "reading the volume stream".into(),
            source: e,
        },
    }
}

/// Writes the magic and `header`.
pub fn write_header(w: &mut dyn Write, header: &StreamHeader) -> Result<()> {
    let body = serde_json::to_vec(header)
        .map_err(|e| StorageError::Command(format!("encoding the stream header: {e}")))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| *n <= MAX_HEADER)
        .ok_or_else(|| stream_error("the stream header is too large"))?;
    w.write_all(MAGIC)
        .and_then(|()| w.write_all(&len.to_be_bytes()))
        .and_then(|()| w.write_all(&body))
        .map_err(StorageError::io("writing the volume stream"))
}

/// Reads the magic and the header, and checks the header
/// ([`StreamHeader::check`]).
pub fn read_header(r: &mut dyn Read) -> Result<StreamHeader> {
    let mut magic = [0u8; 8];
    read_full(r, &mut magic, "its magic").map_err(io_stream_error)?;
    if &magic != MAGIC {
        return Err(stream_error("not a Kante volume stream (bad magic)"));
    }
    let len = read_u32(r, "the header").map_err(io_stream_error)?;
    if len > MAX_HEADER {
        return Err(stream_error(format!(
            "a header of {len} bytes (at most {MAX_HEADER})"
        )));
    }
    let mut body = vec![0u8; len as usize];
    read_full(r, &mut body, "the header").map_err(io_stream_error)?;
    let header: StreamHeader = serde_json::from_slice(&body)
        .map_err(|e| stream_error(format!("an invalid stream header: {e}")))?;
    header.check()?;
    Ok(header)
}

/// Writes the trailer that closes a complete stream.
pub fn write_trailer(w: &mut dyn Write) -> Result<()> {
    w.write_all(TRAILER)
        .and_then(|()| w.flush())
        .map_err(StorageError::io("writing the volume stream"))
}

/// Reads the trailer.
pub fn read_trailer(r: &mut dyn Read) -> Result<()> {
    let mut t = [0u8; 8];
    read_full(r, &mut t, "its trailer").map_err(io_stream_error)?;
    if &t != TRAILER {
        return Err(stream_error("the stream goes on after its last section"));
    }
    Ok(())
}

/// Ends the current section with the sender's error instead of its end
/// frame, so that the receiver says why (best effort: the stream may be
/// what failed).
pub fn write_abort(w: &mut dyn Write, message: &str) {
    let mut m = message.as_bytes();
    if m.len() > MAX_MESSAGE as usize {
        m = &m[..MAX_MESSAGE as usize];
    }
    let _ = w
        .write_all(&ABORT.to_be_bytes())
        .and_then(|()| w.write_all(&(m.len() as u32).to_be_bytes()))
        .and_then(|()| w.write_all(m))
        .and_then(|()| w.flush());
}

/// Writes one section: everything written to it goes out in chunks;
/// [`SectionWriter::finish`] writes the end frame.
pub struct SectionWriter<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    bytes: u64,
    crc: crc32fast::Hasher,
}

impl<'a> SectionWriter<'a> {
    pub fn new(out: &'a mut dyn Write) -> Self {
        SectionWriter {
            out,
            buf: Vec::with_capacity(CHUNK),
            bytes: 0,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.out.write_all(&(self.buf.len() as u32).to_be_bytes())?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered and the end frame; returns the section's
    /// bytes.
    pub fn finish(mut self) -> io::Result<u64> {
        self.flush_chunk()?;
        let crc = std::mem::take(&mut self.crc).finalize();
        let mut end = [0u8; 16];
        end[..4].copy_from_slice(&END.to_be_bytes());
        end[4..12].copy_from_slice(&self.bytes.to_be_bytes());
        end[12..].copy_from_slice(&crc.to_be_bytes());
        self.out.write_all(&end)?;
        Ok(self.bytes)
    }

    /// Drops what is buffered and ends the section with `message`.
    pub fn abort(self, message: &str) {
        write_abort(self.out, message);
    }
}

impl Write for SectionWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        self.bytes += n as u64;
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_chunk()?;
        self.out.flush()
    }
}

/// Reads one section: its bytes, then end-of-file once its end frame has
/// arrived and checked out. A cut stream, a bad frame, a count or CRC
/// that does not match, an abort from the sender, more bytes than the cap
/// or a passed deadline are read errors; the first one is kept
/// ([`SectionReader::failure`]) so that whoever consumed the section (and
/// failed because of it) can say what really happened.
pub struct SectionReader<'a> {
    input: &'a mut dyn Read,
    what: String,
    left_in_chunk: u32,
    done: bool,
    bytes: u64,
    crc: crc32fast::Hasher,
    cap: Option<u64>,
    deadline: Option<Instant>,
    failure: Option<String>,
}

impl<'a> SectionReader<'a> {
    /// `what` names the section in messages ("snapshot s0").
    pub fn new(input: &'a mut dyn Read, what: impl Into<String>) -> Self {
        SectionReader {
            input,
            what: what.into(),
            left_in_chunk: 0,
            done: false,
            bytes: 0,
            crc: crc32fast::Hasher::new(),
            cap: None,
            deadline: None,
            failure: None,
        }
    }

    /// Fails once the section goes past `cap` bytes or `deadline`.
    pub fn with_caps(mut self, cap: Option<u64>, deadline: Option<Instant>) -> Self {
        self.cap = cap;
        self.deadline = deadline;
        self
    }

    /// Bytes of the section read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the end frame has been read and checked.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The first framing failure, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Reads (and drops) the rest of the section up to its end frame.
    pub fn finish(&mut self) -> Result<u64> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(self.bytes),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_stream_error(e)),
            }
        }
    }

    /// An error `e` of whoever consumed the section, replaced by the
    /// framing failure that caused it, if there was one.
    pub fn explain(&self, e: StorageError) -> StorageError {
        match &self.failure {
            Some(f) => stream_error(f.clone()),
            None => e,
        }
    }

    fn fail(&mut self, kind: io::ErrorKind, m: String) -> io::Error {
        if self.failure.is_none() {
            self.failure = Some(m.clone());
        }
        io::Error::new(kind, m)
    }

    fn next_frame(&mut self) -> io::Result<()> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            let m = format!("the volume stream took too long (in {})", self.what);
            return Err(self.fail(io::ErrorKind::TimedOut, m));
        }
        let what = self.what.clone();
        let len = match read_u32(self.input, &what) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(e.kind(), e.to_string())),
        };
        match len {
            END => {
                let mut end = [0u8; 12];
                if let Err(e) = read_full(self.input, &mut end, &what) {
                    return Err(self.fail(e.kind(), e.to_string()));
                }
                let count = u64::from_be_bytes(end[..8].try_into().expect("8 bytes"));
                let crc = u32::from_be_bytes(end[8..].try_into().expect("4 bytes"));
                let ours = std::mem::take(&mut self.crc).finalize();
                if count != self.bytes || crc != ours {
                    let m = format!(
                        "{what} does not check out: {} bytes with CRC {ours:08x} arrived, \
                         {count} bytes with CRC {crc:08x} were sent",
                        self.bytes
                    );
                    return Err(self.fail(io::ErrorKind::InvalidData, m));
                }
                self.done = true;
                Ok(())
            }
            ABORT => {
                let n = read_u32(self.input, &what).unwrap_or(0).min(MAX_MESSAGE);
                let mut m = vec![0u8; n as usize];
                let m = match read_full(self.input, &mut m, &what) {
                    Ok(()) => String::from_utf8_lossy(&m).into_owned(),
                    Err(_) => "(no reason given)".into(),
                };
                let m = format!("the sender failed in {what}: {m}");
                Err(self.fail(io::ErrorKind::Other, m))
            }
            n if n > MAX_CHUNK => {
                let m = format!("a chunk of {n} bytes in {what} (at most {MAX_CHUNK})");
                Err(self.fail(io::ErrorKind::InvalidData, m))
            }
            n => {
                if self.cap.is_some_and(|c| self.bytes + n as u64 > c) {
                    let m = format!(
                        "the volume stream carries more than its cap of {} bytes (in {what})",
                        self.cap.unwrap_or(0)
                    );
                    return Err(self.fail(io::ErrorKind::InvalidData, m));
                }
                self.left_in_chunk = n;
                Ok(())
            }
        }
    }
}

impl Read for SectionReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.failure {
            return Err(io::Error::other(f.clone()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        while self.left_in_chunk == 0 {
            if self.done {
                return Ok(0);
            }
            self.next_frame()?;
        }
        let want = buf.len().min(self.left_in_chunk as usize);
        let n = match self.input.read(&mut buf[..want]) {
            Ok(0) => {
                let m = format!("the stream ended inside {}", self.what);
                return Err(self.fail(io::ErrorKind::UnexpectedEof, m));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let m = format!("reading {}: {e}", self.what);
                return Err(self.fail(e.kind(), m));
            }
        };
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        self.left_in_chunk -= n as u32;
        Ok(n)
    }
}
