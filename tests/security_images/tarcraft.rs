//! Hostile tarballs for tests/security_images.rs, written header by header
//! (GNU tar will not make a device entry without a real node, nor a pax
//! `GNU.sparse.name` that disagrees with the entry), and the host-side
//! checks those tests make.
#![allow(dead_code)]

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn octal(h: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = h.len() - 1);
    h.copy_from_slice(s.as_bytes());
}

fn field(f: &[u8]) -> &[u8] {
    &f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())]
}

fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// One ustar header.
pub fn header(
    name: &str,
    kind: u8,
    size: u64,
    mode: u32,
    dev: (u32, u32),
    link: &str,
) -> [u8; 512] {
    assert!(name.len() <= 100 && link.len() <= 100, "short names only");
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], dev.0 as u64);
    octal(&mut h[337..345], dev.1 as u64);
    set_checksum(&mut h);
    h
}

fn padded(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// A character (`b'3'`) or block (`b'4'`) device entry.
pub fn device(name: &str, kind: u8, major: u32, minor: u32, mode: u32) -> Vec<u8> {
    header(name, kind, 0, mode, (major, minor), "").to_vec()
}

pub fn file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut v = header(name, b'0', data.len() as u64, 0o644, (0, 0), "").to_vec();
    v.extend_from_slice(&padded(data.to_vec()));
    v
}

pub fn symlink(name: &str, target: &str) -> Vec<u8> {
    header(name, b'2', 0, 0o777, (0, 0), target).to_vec()
}

/// A pax extended header (`x`) with `records`, to precede an entry.
pub fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = format!(" {k}={v}\n");
        let mut len = rest.len() + 1;
        while len.to_string().len() + rest.len() != len {
            len += 1;
        }
        body.extend_from_slice(format!("{len}{rest}").as_bytes());
    }
    let mut v = header("PaxHeaders/x", b'x', body.len() as u64, 0o644, (0, 0), "").to_vec();
    v.extend_from_slice(&padded(body));
    v
}

/// (offset, header) of every header of `tar`, up to its end marker.
fn headers(tar: &[u8]) -> (Vec<(usize, [u8; 512])>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 512 <= tar.len() {
        let h: [u8; 512] = tar[pos..pos + 512].try_into().unwrap();
        if h.iter().all(|&b| b == 0) {
            return (out, pos);
        }
        let size = std::str::from_utf8(field(&h[124..136]))
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim(), 8).ok())
            .expect("octal size field") as usize;
        out.push((pos, h));
        pos += 512 + size.div_ceil(512) * 512;
    }
    panic!("no end-of-archive marker");
}

/// The entries of `tar`, then `extra`, then an end-of-archive marker.
pub fn append(tar: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let (_, end) = headers(tar);
    let mut out = tar[..end].to_vec();
    for e in extra {
        out.extend_from_slice(e);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// `tar` with the regular file `name` holding `data` instead.
pub fn replace_member(tar: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let (hs, end) = headers(tar);
    let (at, h) = hs
        .iter()
        .find(|(_, h)| h[156] == b'0' && field(&h[..100]) == name.as_bytes())
        .unwrap_or_else(|| panic!("{name} not in the archive"));
    let old = std::str::from_utf8(field(&h[124..136]))
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 8).ok())
        .unwrap() as usize;
    let mut nh = *h;
    octal(&mut nh[124..136], data.len() as u64);
    set_checksum(&mut nh);
    let mut out = tar[..*at].to_vec();
    out.extend_from_slice(&nh);
    out.extend_from_slice(&padded(data.to_vec()));
    out.extend_from_slice(&tar[at + 512 + old.div_ceil(512) * 512..end]);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The contents of the regular file `name` of `tar`.
pub fn member(tar: &[u8], name: &str) -> Vec<u8> {
    let (hs, _) = headers(tar);
    let (at, h) = hs
        .iter()
        .find(|(_, h)| h[156] == b'0' && field(&h[..100]) == name.as_bytes())
        .unwrap_or_else(|| panic!("{name} not in the archive"));
    let size = std::str::from_utf8(field(&h[124..136]))
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 8).ok())
        .unwrap() as usize;
    tar[at + 512..at + 512 + size].to_vec()
}

/// A zstd file, decompressed by the `zstd` tool.
pub fn unzstd(path: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .args(["-dc", "--"])
        .arg(path)
        .output()
        .expect("zstd");
    assert!(out.status.success(), "zstd -dc {}", path.display());
    out.stdout
}

/// Character and block devices under `dir` (not following symlinks, not
/// crossing into other filesystems).
pub fn device_nodes_under(dir: &Path) -> Vec<PathBuf> {
    let dev = std::fs::symlink_metadata(dir).unwrap().dev();
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let t = m.file_type();
        if t.is_char_device() || t.is_block_device() {
            found.push(p);
        } else if t.is_dir() && m.dev() == dev {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        }
    }
    found
}

/// A loop device over a scratch file with known content; detached on drop.
pub struct LoopDev {
    pub dev: PathBuf,
    pub backing: PathBuf,
    pub major: u32,
    pub minor: u32,
}

pub const LOOP_CONTENT: &[u8] = b"HOST-LOOP-ORIGINAL\n";

impl LoopDev {
    pub fn new(dir: &Path) -> LoopDev {
        let backing = dir.join("scratch.img");
        let mut data = LOOP_CONTENT.to_vec();
        data.resize(1 << 20, 0);
        std::fs::write(&backing, &data).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output()
            .expect("losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let rdev = std::fs::metadata(&dev).unwrap().rdev();
        LoopDev {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
            dev,
            backing,
        }
    }

    /// The scratch file still holds only what the test wrote.
    pub fn untouched(&self) -> bool {
        let data = std::fs::read(&self.backing).unwrap();
        data.starts_with(LOOP_CONTENT) && data[LOOP_CONTENT.len()..].iter().all(|&b| b == 0)
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}
