//! Helpers for the volume stream tests: a volume filled with what a stream
//! must carry (owners, modes, setuid, xattrs, an ACL, hard links,
//! symlinks, a sparse file, a FIFO, long and non-ASCII names, a big file
//! shared by every snapshot), a comparable picture of a tree and of a
//! whole pool, and a transfer through a real pipe between a sending and a
//! receiving thread.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use kante_storage::stream::{Received, SendReport};
use kante_storage::{MigrationType, Pool, ReceiveOptions, Result, VolumeKind};

use super::write_file;

/// An ACL for `system.posix_acl_access`: user::rwx, user:1000:rwx,
/// group::r-x, mask::rwx, other::--x.
pub const ACL: &[u8] = &[
    2, 0, 0, 0, //
    1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff, //
    2, 0, 7, 0, 0xe8, 3, 0, 0, //
    4, 0, 5, 0, 0xff, 0xff, 0xff, 0xff, //
    0x10, 0, 7, 0, 0xff, 0xff, 0xff, 0xff, //
    0x20, 0, 1, 0, 0xff, 0xff, 0xff, 0xff,
];

pub fn setfattr(path: &Path, name: &str, value: &[u8]) {
    let st = Command::new("setfattr")
        .args(["-h", "-n", name, "-v"])
        .arg(format!("0x{}", hex(value)))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "setfattr {name} on {}", path.display());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(p: &Path, data: &str, mtime_secs: u64) {
    std::fs::write(p, data).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_secs);
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Fills the volume at `root` as generation `gen` of a history: 0 for the
/// first snapshot, 1 for the second, 2 for the live volume. `big` bytes
/// of incompressible data in `big` are written at generation 0 and never
/// touched again (shared by every later tree).
pub fn populate(root: &Path, gen: u32, big: usize) {
    match gen {
        0 => {
            chown(root, 1000, 1000);
            chmod(root, 0o751);
            if big > 0 {
                write_file(&root.join("big"), big);
            }
            write(&root.join("f"), "generation 0", 1_000_000_000);
            chmod(&root.join("f"), 0o640);
            chown(&root.join("f"), 1000, 1001);
            setfattr(&root.join("f"), "user.note", b"hello");
            setfattr(&root.join("f"), "trusted.t", b"\x00\x01binary");
            std::fs::hard_link(root.join("f"), root.join("hard")).unwrap();
            write(&root.join("gone"), "removed later", 1_000_000_000);
            write(&root.join("suid"), "#!/bin/true\n", 1_100_000_000);
            chmod(&root.join("suid"), 0o4755);
            std::os::unix::fs::symlink("/etc/passwd", root.join("sym-abs")).unwrap();
            std::os::unix::fs::symlink("f", root.join("sym-rel")).unwrap();
            chown(&root.join("sym-rel"), 1000, 1000);
            std::fs::create_dir(root.join("dir")).unwrap();
            write(&root.join("dir/nested"), "nested", 1_200_000_000);
            chown(&root.join("dir"), 1234, 1234);
            chmod(&root.join("dir"), 0o711);
            setfattr(&root.join("dir"), "system.posix_acl_access", ACL);
            let sparse = std::fs::File::create(root.join("sparse")).unwrap();
            sparse.set_len(32 << 20).unwrap();
            let mut sparse = sparse;
            use std::io::Seek;
            sparse.seek(std::io::SeekFrom::Start(16 << 20)).unwrap();
            sparse.write_all(b"in the middle of a hole").unwrap();
            // A name past ustar's 100 bytes, one with a space and UTF-8, a FIFO.
            let long = root.join("dir").join("n".repeat(150));
            write(&long, "a long name", 1_200_000_000);
            write(&root.join("with space é"), "spaced", 1_200_000_000);
            nix::unistd::mkfifo(
                &root.join("fifo"),
                nix::sys::stat::Mode::from_bits_truncate(0o620),
            )
            .unwrap();
            chmod(&root.join("fifo"), 0o620);
        }
        1 => {
            write(&root.join("f"), "generation 1", 1_300_000_000);
            std::fs::remove_file(root.join("gone")).unwrap();
            write(&root.join("new"), "new in generation 1", 1_300_000_000);
        }
        _ => {
            write(&root.join("f"), "the live volume", 1_400_000_000);
            std::fs::remove_file(root.join("dir/nested")).unwrap();
            write(&root.join("new2"), "new in the live volume", 1_400_000_000);
            setfattr(&root.join("new2"), "user.live", b"yes");
        }
    }
}

/// One entry of a tree, as a stream must carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// A file's bytes or a symlink's target.
    pub data: Vec<u8>,
    /// Regular files: link count and modification time.
    pub nlink: u64,
    pub mtime: i64,
    /// Every extended attribute, hex-encoded (the ACL included).
    pub xattrs: BTreeMap<String, String>,
}

/// Every extended attribute below `root` (`getfattr -R`), by relative path.
fn all_xattrs(root: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let out = Command::new("getfattr")
        .args([
            "-R",
            "-P",
            "-h",
            "-d",
            "-m",
            "-",
            "-e",
            "hex",
            "--absolute-names",
        ])
        .arg(root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("# file: ") {
            let rel = Path::new(f).strip_prefix(root).unwrap_or(Path::new(""));
            current = rel.display().to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            map.entry(current.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
    }
    map
}

/// The tree at `root`, by relative path ("" for the root itself).
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut xattrs = all_xattrs(root);
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = p.symlink_metadata().unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = md.file_type();
        let (kind, data, nlink, mtime) = if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            ("dir", Vec::new(), 0, 0)
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            ("symlink", t.into_os_string().into_encoded_bytes(), 0, 0)
        } else if ft.is_file() {
            let data = std::fs::read(&p).unwrap();
            ("file", data, md.nlink(), md.mtime())
        } else {
            ("other", Vec::new(), md.nlink(), 0)
        };
        out.insert(
            rel.clone(),
            Node {
                kind,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                data,
                nlink,
                mtime,
                xattrs: xattrs.remove(&rel).unwrap_or_default(),
            },
        );
    }
    out
}

/// Bytes allocated to the file at `p`.
pub fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

/// Everything in a pool: each entry below its base (path, kind, mode,
/// size), and on btrfs every subvolume with its flags. Equal before and
/// after a failed receive: nothing was left behind and nothing was lost.
pub fn pool_state(pool: &Pool) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![pool.base.clone()];
    while let Some(p) = todo.pop() {
        let md = p.symlink_metadata().unwrap();
        let rel = p.strip_prefix(&pool.base).unwrap().display().to_string();
        if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            out.push(format!("{rel}/ {:o}", md.mode()));
        } else {
            out.push(format!("{rel} {:o} {}", md.mode(), md.len()));
        }
    }
    if pool.driver.info().name == "btrfs" {
        let o = Command::new("btrfs")
            .args(["subvolume", "list", "-o", "-r"])
            .arg(&pool.base)
            .output()
            .unwrap();
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| format!("ro subvolume {}", l.rsplit(' ').next().unwrap_or(""))),
        );
        let o = Command::new("btrfs")
            .args(["subvolume", "list"])
            .arg(&pool.base)
            .output()
            .unwrap();
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| format!("subvolume {}", l.rsplit(' ').next().unwrap_or(""))),
        );
    }
    out.sort();
    out
}

/// The record a sender's state holds for a custom volume (its `size`, if
/// any, travels apart: the receiver records the size it applied).
pub fn custom_meta() -> kante_storage::VolumeMeta {
    kante_storage::VolumeMeta {
        description: "a streamed volume".into(),
        config: [("user.purpose".to_string(), "streams".to_string())].into(),
        created_at: "2024-05-06T07:08:09Z".into(),
    }
}

/// Sends volume `name` of `from` with `snaps` as `ty` through a pipe into
/// `to`, the sender on its own thread.
pub fn transfer(
    from: &Pool,
    to: &Pool,
    kind: VolumeKind,
    name: &str,
    snaps: &[String],
    ty: MigrationType,
    opts: &ReceiveOptions,
) -> (Result<SendReport>, Result<Received>) {
    let (mut r, mut w) = std::io::pipe().unwrap();
    std::thread::scope(|s| {
        let sender = s.spawn(move || {
            let meta = (kind == VolumeKind::Custom).then(custom_meta);
            let res = from.send_volume(kind, name, snaps, ty, meta.as_ref(), &mut w);
            drop(w);
            res
        });
        let got = to.receive_volume(&mut r, opts);
        // A receiver that stopped early hangs up: the sender then fails.
        drop(r);
        (sender.join().unwrap(), got)
    })
}

/// Sends into memory.
pub fn send_to_vec(
    from: &Pool,
    kind: VolumeKind,
    name: &str,
    snaps: &[String],
    ty: MigrationType,
) -> Vec<u8> {
    let mut v = Vec::new();
    let meta = (kind == VolumeKind::Custom).then(custom_meta);
    from.send_volume(kind, name, snaps, ty, meta.as_ref(), &mut v)
        .unwrap();
    v
}

/// Offsets in a stream: the end of its header, then the end of each
/// section (where the next one, or the trailer, starts), read from the
/// framing documented in `kante_storage::stream`.
pub fn section_ends(stream: &[u8]) -> Vec<usize> {
    let u32_at = |i: usize| u32::from_be_bytes(stream[i..i + 4].try_into().unwrap()) as usize;
    let mut at = 8;
    at += 4 + u32_at(at);
    let mut ends = vec![at];
    while at + 8 < stream.len() {
        loop {
            let n = u32_at(at);
            at += 4;
            if n == 0 {
                at += 12;
                break;
            }
            at += n;
        }
        ends.push(at);
    }
    assert_eq!(&stream[at..], b"KANTEEND");
    ends
}

/// The paths of the volume and its snapshots in `pool`.
pub fn trees_of(pool: &Pool, kind: VolumeKind, name: &str, snaps: &[&str]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = snaps
        .iter()
        .map(|s| pool.snapshot_path(kind, name, s).unwrap())
        .collect();
    v.push(pool.volume_path(kind, name));
    v
}

/// Nothing of a send or receive left in the pool's volume directories.
pub fn assert_no_leftovers(pool: &Pool) {
    for line in pool_state(pool) {
        assert!(
            !line.contains(".staging-") && !line.contains(".sending-"),
            "leftover in pool {}: {line}",
            pool.name
        );
    }
}
