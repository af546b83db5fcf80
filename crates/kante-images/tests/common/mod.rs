//! Shared helpers: staging image trees, packing them with real tools, and a
//! raw ustar writer for hostile archives real tools refuse to produce.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub const METADATA: &str = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: testos\n  release: \"1\"\n\
templates:\n  /etc/hostname:\n    when: [create, copy]\n    template: hostname.tpl\n";

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

pub fn is_root() -> bool {
    // SAFETY: trivial libc getter.
    unsafe { libc::geteuid() == 0 }
}

/// A minimal unified image tree: metadata.yaml, templates/, rootfs/.
pub fn stage_unified(dir: &Path) {
    fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    fs::create_dir_all(dir.join("templates")).unwrap();
    fs::write(dir.join("metadata.yaml"), METADATA).unwrap();
    fs::write(dir.join("templates/hostname.tpl"), "{{ instance.name }}\n").unwrap();
    fs::write(dir.join("rootfs/etc/hostname"), "image\n").unwrap();
    fs::write(dir.join("rootfs/etc/big"), vec![7u8; 300_000]).unwrap();
}

/// `tar -c` of `members` in `dir` with GNU tar, then compressed by the CLI tool.
pub fn tar_of(dir: &Path, members: &[&str], compression: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args([
            "--create",
            "--file=-",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
        ])
        .arg("-C")
        .arg(dir)
        .args(members)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    compress(&out.stdout, compression)
}

pub fn compress(data: &[u8], compression: &str) -> Vec<u8> {
    let args: &[&str] = match compression {
        "none" => return data.to_vec(),
        "gzip" => &["gzip", "-c"],
        "xz" => &["xz", "-c", "-T1"],
        "zstd" => &["zstd", "-c", "-q"],
        "bzip2" => &["bzip2", "-c"],
        other => panic!("unknown compression {other}"),
    };
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Files left in a directory (to check that failures clean up).
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

pub struct Entry<'a> {
    pub name: &'a str,
    pub kind: u8,
    pub link: &'a str,
    pub data: &'a [u8],
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: b'0',
        link: "",
        data,
    }
}
pub fn dir(name: &str) -> Entry<'_> {
    Entry {
        name,
        kind: b'5',
        link: "",
        data: b"",
    }
}
pub fn symlink<'a>(name: &'a str, target: &'a str) -> Entry<'a> {
    Entry {
        name,
        kind: b'2',
        link: target,
        data: b"",
    }
}

fn octal(dst: &mut [u8], v: u64) {
    let s = format!("{:0width$o}\0", v, width = dst.len() - 1);
    dst.copy_from_slice(s.as_bytes());
}

/// Raw ustar archive, names taken verbatim (so `../x` and `/x` survive).
pub fn raw_tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        h[..e.name.len()].copy_from_slice(e.name.as_bytes());
        let mode = if e.kind == b'5' { 0o755 } else { 0o644 };
        octal(&mut h[100..108], mode);
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
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Whether a test's prerequisite is there. A missing one is a skip, said on
/// stderr, except under `KANTE_REQUIRE_ALL=1` (set by `scripts/test.sh`,
/// which installs everything the tests need): there it fails the test, so a
/// missing tool or module can never pass for a green test.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("KANTE_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("missing prerequisite: {what} (KANTE_REQUIRE_ALL=1)");
    }
    eprintln!("SKIPPED: {what}");
    false
}
