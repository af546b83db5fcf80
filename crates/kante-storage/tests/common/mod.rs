//! Helpers for the root-only storage tests: a scratch `KANTE_DIR` in a temp
//! directory whose guard unmounts, detaches and removes everything it made,
//! even when a test fails, and a lock so tests run one at a time (in this
//! process, and host-wide against every other Kante test run).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use kante_api::ConfigMap;
use kante_storage::{driver, Pool};

pub mod streams;
pub mod tree;

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests of one binary (they share loop devices and mounts)
/// and, through a `flock` on `/run/kante-tests.lock` held for the life of
/// the process once taken (as `tests/support` does), keeps them from
/// running beside another Kante test run on this host.
pub fn lock() -> MutexGuard<'static, ()> {
    let g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    host_lock();
    g
}

fn host_lock() {
    type Held = Option<nix::fcntl::Flock<std::fs::File>>;
    static HELD: std::sync::OnceLock<Held> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        // Without root there is no host to guard (the root tests skip).
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/kante-tests.lock")
            .ok()?;
        // Blocks until the other run ends.
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
    });
}

/// Whether the btrfs tests can run here (root, btrfs, btrfs-progs).
pub fn btrfs_ready() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let kernel = std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.trim_end().ends_with("btrfs")))
        .unwrap_or(false);
    let progs = Command::new("mkfs.btrfs").arg("--version").output().is_ok();
    prerequisite(
        root && kernel && progs,
        &format!("root (is {root}), btrfs in the kernel ({kernel}) and btrfs-progs ({progs})"),
    )
}

pub fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A scratch `KANTE_DIR`: `<root>/storage-pools/<pool>`, `<root>/disks/`.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("kante-storage-{tag}-{}", std::process::id()));
        cleanup(&root);
        std::fs::create_dir_all(root.join("storage-pools")).unwrap();
        Scratch { root }
    }

    pub fn base(&self, pool: &str) -> PathBuf {
        self.root.join("storage-pools").join(pool)
    }

    pub fn img(&self, pool: &str) -> PathBuf {
        self.root.join("disks").join(format!("{pool}.img"))
    }

    /// Creates a pool with `driver_name` and `config`.
    pub fn pool(&self, driver_name: &str, name: &str, config: &[(&str, &str)]) -> Pool {
        let driver = driver(driver_name).unwrap();
        let mut config = cfg(config);
        let base = self.base(name);
        driver
            .create_pool(&base, &mut config)
            .unwrap_or_else(|e| panic!("creating pool {name} ({driver_name}): {e}"));
        Pool {
            name: name.into(),
            base,
            config,
            driver,
        }
    }

    /// Lines of `losetup -a` naming a file in this scratch directory.
    pub fn loops(&self) -> Vec<String> {
        let out = Command::new("losetup").arg("-a").output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(self.root.to_str().unwrap()))
            .map(str::to_string)
            .collect()
    }

    /// Lines of /proc/mounts naming a path in this scratch directory.
    pub fn mounts(&self) -> Vec<String> {
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.contains(self.root.to_str().unwrap()))
            .map(str::to_string)
            .collect()
    }

    /// Asserts that nothing of this scratch directory is mounted or attached.
    pub fn assert_clean(&self) {
        // The kernel detaches autoclear loop devices at unmount; give it a moment.
        for _ in 0..100 {
            if self.loops().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(self.mounts().is_empty(), "mounts left: {:?}", self.mounts());
        assert!(
            self.loops().is_empty(),
            "loop devices left: {:?}",
            self.loops()
        );
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        cleanup(&self.root);
    }
}

/// Unmounts everything below `root` (deepest first), detaches loop devices
/// backed by files below it, removes it.
pub fn cleanup(root: &Path) {
    let prefix = root.to_str().unwrap().to_string();
    for _ in 0..3 {
        let mut mps: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(|s| s.replace("\\040", " ")))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        if mps.is_empty() {
            break;
        }
        mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mps {
            if nix::mount::umount2(m.as_str(), nix::mount::MntFlags::empty()).is_err() {
                let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                if b.starts_with(&prefix) {
                    let _ = Command::new("losetup")
                        .arg("-d")
                        .arg(format!("/dev/{name}"))
                        .status();
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(root);
}

/// Writes `size` bytes of incompressible-ish data to `path`.
pub fn write_file(path: &Path, size: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.sync_all().unwrap();
}

/// `btrfs subvolume show` as key → value.
pub fn subvolume_show(path: &Path) -> std::collections::BTreeMap<String, String> {
    let out = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "btrfs subvolume show {}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Bytes allocated on the filesystem holding `path` (statvfs).
pub fn fs_used(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
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
