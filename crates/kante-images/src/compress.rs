//! Compression detection (by magic bytes) and streaming decoders.

use std::io::{BufRead, Read};

/// How an image file is encoded, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain (uncompressed) data, normally a tar archive.
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    /// Not a compression but a filesystem image; only valid as a split rootfs.
    Squashfs,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Squashfs => "squashfs",
        }
    }
}

/// How many leading bytes `detect_compression` looks at.
pub const MAGIC_LEN: usize = 6;

/// Detects the compression of a stream from its first bytes (at least 6 for xz).
pub fn detect_compression(first_bytes: &[u8]) -> Compression {
    let b = first_bytes;
    if b.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if b.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if b.starts_with(b"BZh") {
        Compression::Bzip2
    } else if b.starts_with(b"hsqs") {
        // Little-endian squashfs superblock magic 0x73717368.
        Compression::Squashfs
    } else {
        Compression::None
    }
}

/// The sniffed head followed by the rest of the stream.
pub(crate) type Sniffed<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// Reads the first bytes of `r` (retrying short reads, so slow pipes and
/// sockets are detected correctly), detects the compression, and returns a
/// reader that yields the whole stream again, those bytes included.
pub(crate) fn sniff<R: Read>(mut r: R) -> std::io::Result<(Compression, Sniffed<R>)> {
    let mut head = vec![0u8; MAGIC_LEN];
    let mut n = 0;
    while n < MAGIC_LEN {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(n);
    let c = detect_compression(&head);
    Ok((c, std::io::Cursor::new(head).chain(r)))
}

/// Wraps `r` in the decoder for `c`. Multi-member/multi-stream variants are used
/// because parallel compressors (pigz, pixz, zstd -T) emit several frames.
pub(crate) fn decoder<'a, R: BufRead + 'a>(c: Compression, r: R) -> Box<dyn Read + 'a> {
    match c {
        Compression::None | Compression::Squashfs => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(r) {
            Ok(d) => Box::new(d),
            // Only fails if the zstd context cannot be allocated.
            Err(e) => Box::new(FailingReader(Some(e))),
        },
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
    }
}

/// [`decoder`] for a source that may move between threads.
pub(crate) fn decoder_send<'a, R: BufRead + Send + 'a>(
    c: Compression,
    r: R,
) -> Box<dyn Read + Send + 'a> {
    match c {
        Compression::None | Compression::Squashfs => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(r) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(FailingReader(Some(e))),
        },
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
    }
}

struct FailingReader(Option<std::io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("decoder unavailable")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_magics() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            detect_compression(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0x24]),
            Compression::Zstd
        );
        assert_eq!(detect_compression(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(detect_compression(b"hsqs\x10\0"), Compression::Squashfs);
        assert_eq!(detect_compression(b"metadata.yaml\0"), Compression::None);
        assert_eq!(detect_compression(&[]), Compression::None);
        // A truncated xz magic is not xz.
        assert_eq!(detect_compression(&[0xfd, b'7', b'z']), Compression::None);
    }

    #[test]
    fn decoders_round_trip() {
        use std::io::Write;
        let data = b"hello kante".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let xz = {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        let bz = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        for enc in [gz, xz, zst, bz] {
            let (c, r) = sniff(&enc[..]).unwrap();
            assert_ne!(c, Compression::None);
            let mut out = Vec::new();
            decoder(c, std::io::BufReader::new(r))
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{c:?}");
        }
    }
}
