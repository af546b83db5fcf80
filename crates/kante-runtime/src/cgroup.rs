//! Control groups for containers on hybrid (v1 + unified) and pure v2 hosts.
//!
//! Every container gets the same relative path (e.g. `kante/c1`) in every
//! hierarchy: v1 controllers carry the limits, the unified hierarchy is the
//! one the container sees (mounted as cgroup2 at its /sys/fs/cgroup, owned by
//! its root so systemd can manage its own sub-cgroups).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cgroup {0} did not freeze within the timeout")]
    FreezeTimeout(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One v1 hierarchy: where it is mounted and which controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

/// The host's cgroup mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLayout {
    pub v1: Vec<V1Hierarchy>,
    pub unified: Option<PathBuf>,
}

impl CgroupLayout {
    pub fn detect() -> Result<Self, CgroupError> {
        let p = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(p).map_err(io_err(p))?;
        let layout = Self::parse(&text);
        if layout.v1.is_empty() && layout.unified.is_none() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(layout)
    }

    /// Parses /proc/self/mountinfo text.
    pub fn parse(mountinfo: &str) -> Self {
        let mut v1 = Vec::new();
        let mut unified = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            if left.len() < 5 || right.len() < 3 {
                continue;
            }
            let mount = kante_syntax::mountinfo_path(left[4]);
            match right[0] {
                "cgroup2" if unified.is_none() => unified = Some(mount),
                "cgroup" => {
                    let controllers: Vec<String> = right[2]
                        .split(',')
                        .filter(|o| {
                            !matches!(
                                *o,
                                "rw" | "ro"
                                    | "nosuid"
                                    | "nodev"
                                    | "noexec"
                                    | "relatime"
                                    | "clone_children"
                                    | "noprefix"
                                    | "xattr"
                            )
                        })
                        .filter(|o| !o.starts_with("release_agent="))
                        .map(str::to_string)
                        .collect();
                    if !controllers.is_empty() && !v1.iter().any(|h: &V1Hierarchy| h.mount == mount)
                    {
                        v1.push(V1Hierarchy { mount, controllers });
                    }
                }
                _ => {}
            }
        }
        CgroupLayout { v1, unified }
    }

    pub fn is_pure_v2(&self) -> bool {
        self.v1.is_empty() && self.unified.is_some()
    }

    fn v1_with(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// One container's cgroup across all hierarchies.
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: CgroupLayout,
    rel: String,
}

impl Cgroup {
    pub fn new(layout: CgroupLayout, rel: impl Into<String>) -> Self {
        Cgroup {
            layout,
            rel: rel.into(),
        }
    }

    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The directories of this cgroup, unified last.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .layout
            .v1
            .iter()
            .map(|h| h.mount.join(&self.rel))
            .collect();
        if let Some(u) = &self.layout.unified {
            v.push(u.join(&self.rel));
        }
        v
    }

    pub fn unified_dir(&self) -> Option<PathBuf> {
        self.layout.unified.as_ref().map(|u| u.join(&self.rel))
    }

    /// `cgroup.procs` of the container's root in every hierarchy; exec joins these.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Where exec'd commands go when the container's unified cgroup cannot
    /// take processes: once a guest enables controllers for its sub-cgroups
    /// (its systemd does on a pure cgroup v2 host), the kernel refuses
    /// processes in the cgroup itself (EBUSY). Made here, owned like the
    /// cgroup so the guest's root may manage it, when the cgroup already
    /// delegates controllers; the exec helper makes it if the guest enables
    /// them in between. `None` without a unified hierarchy.
    pub fn exec_leaf(&self) -> Option<PathBuf> {
        let dir = self.unified_dir()?;
        let leaf = dir.join(EXEC_LEAF);
        let delegating = fs::read_to_string(dir.join("cgroup.subtree_control"))
            .is_ok_and(|s| !s.trim().is_empty());
        if delegating {
            if let Err(e) = make_owned_like(&dir, &leaf) {
                tracing::warn!("exec leaf cgroup {}: {e}", leaf.display());
            }
        }
        Some(leaf)
    }

    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// Creates the cgroup everywhere. `owner` delegates the unified cgroup to
    /// the container's root (host uid, gid) so its systemd can manage it.
    /// The device policy (`devices.rs`) is installed before any task joins.
    pub fn create(&self, owner: Option<(u32, u32)>) -> Result<(), CgroupError> {
        for h in &self.layout.v1 {
            let is_cpuset = h.controllers.iter().any(|c| c == "cpuset");
            mkdir_chain(&h.mount, &self.rel, is_cpuset)?;
            if h.controllers.iter().any(|c| c == "devices") {
                let dir = h.mount.join(&self.rel);
                device_policy(crate::devices::apply_v1(
                    &dir,
                    &crate::devices::DEFAULT_RULES,
                ))
                .map_err(io_err(&dir))?;
            }
        }
        if let Some(u) = &self.layout.unified {
            if self.layout.is_pure_v2() {
                enable_v2_controllers(u, &self.rel);
            }
            mkdir_chain(u, &self.rel, false)?;
            let dir = u.join(&self.rel);
            device_policy(crate::devices::attach_v2(
                &dir,
                &crate::devices::DEFAULT_RULES,
            ))
            .map_err(io_err(&dir))?;
            if let Some((uid, gid)) = owner {
                let dir = u.join(&self.rel);
                for p in [
                    dir.clone(),
                    dir.join("cgroup.procs"),
                    dir.join("cgroup.threads"),
                    dir.join("cgroup.subtree_control"),
                ] {
                    if p.exists() {
                        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(io_err(&p))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves `pid` into this cgroup in every hierarchy.
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        for f in self.procs_files() {
            fs::write(&f, pid.to_string()).map_err(io_err(&f))?;
        }
        Ok(())
    }

    /// Removes the cgroup (and any sub-cgroups the container made) everywhere.
    /// Retries briefly: a just-exited task may still pin the cgroup.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.dirs() {
            loop {
                match remove_tree(&dir) {
                    Ok(()) => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        return Err(CgroupError::Io {
                            path: dir,
                            source: e,
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the cgroup's directories that are empty (no sub-cgroup, no
    /// task) and leaves the others: the kernel's rmdir decides, so nothing
    /// in use is touched. For a daemon's own parent cgroup when it exits.
    pub fn remove_if_empty(&self) {
        for dir in self.dirs() {
            let _ = fs::remove_dir(&dir);
        }
    }

    /// Freezes every process of the container and waits until the kernel says so.
    pub fn freeze(&self, frozen: bool, timeout: Duration) -> Result<(), CgroupError> {
        if let Some(u) = self
            .unified_dir()
            .filter(|d| d.join("cgroup.freeze").exists())
        {
            let f = u.join("cgroup.freeze");
            fs::write(&f, if frozen { "1" } else { "0" }).map_err(io_err(&f))?;
            let events = u.join("cgroup.events");
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            let deadline = Instant::now() + timeout;
            loop {
                let text = fs::read_to_string(&events).map_err(io_err(&events))?;
                if text.lines().any(|l| l.trim() == want) {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(CgroupError::FreezeTimeout(self.rel.clone()));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let h = self
            .layout
            .v1_with("freezer")
            .ok_or(CgroupError::NoHierarchy)?;
        let f = h.mount.join(&self.rel).join("freezer.state");
        fs::write(&f, if frozen { "FROZEN" } else { "THAWED" }).map_err(io_err(&f))?;
        let deadline = Instant::now() + timeout;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        loop {
            if fs::read_to_string(&f).map_err(io_err(&f))?.trim() == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::FreezeTimeout(self.rel.clone()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn is_frozen(&self) -> bool {
        if let Some(u) = self.unified_dir() {
            if let Ok(t) = fs::read_to_string(u.join("cgroup.events")) {
                return t.lines().any(|l| l.trim() == "frozen 1");
            }
        }
        if let Some(h) = self.layout.v1_with("freezer") {
            if let Ok(t) = fs::read_to_string(h.mount.join(&self.rel).join("freezer.state")) {
                return t.trim() == "FROZEN";
            }
        }
        false
    }

    /// Writes a controller file (`memory.limit_in_bytes`, `memory.max`, …) in
    /// the hierarchy that carries `controller`.
    pub fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let dir = self
            .controller_dir(controller)
            .ok_or(CgroupError::NoHierarchy)?;
        let p = dir.join(file);
        fs::write(&p, value).map_err(io_err(&p))
    }

    pub fn read(&self, controller: &str, file: &str) -> Option<String> {
        let dir = self.controller_dir(controller)?;
        fs::read_to_string(dir.join(file))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The directory holding `controller`'s files for this cgroup.
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        if let Some(h) = self.layout.v1_with(controller) {
            return Some(h.mount.join(&self.rel));
        }
        self.unified_dir()
    }

    /// True when this cgroup can use `controller`: a v1 hierarchy carries
    /// it, or its unified `cgroup.controllers` lists it. A host (or an outer
    /// container) may offer none: then limits of that kind cannot be set.
    pub fn offers(&self, controller: &str) -> bool {
        if self.is_v1(controller) {
            return true;
        }
        self.unified_dir()
            .and_then(|d| fs::read_to_string(d.join("cgroup.controllers")).ok())
            .is_some_and(|list| list.split_whitespace().any(|c| c == controller))
    }

    /// True when `controller` is handled by a v1 hierarchy.
    pub fn is_v1(&self, controller: &str) -> bool {
        self.layout.v1_with(controller).is_some()
    }

    /// Sets the memory limit (`None`: unlimited) and whether the container
    /// may swap. Returns false when swap could not be limited because the
    /// host kernel does not account swap (no memsw / swap.max files).
    pub fn set_memory(&self, limit: Option<u64>, swap: bool) -> Result<bool, CgroupError> {
        let v1 = self.is_v1("memory");
        let (mem_file, swap_file) = if v1 {
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        } else {
            ("memory.max", "memory.swap.max")
        };
        let dir = self
            .controller_dir("memory")
            .ok_or(CgroupError::NoHierarchy)?;
        let accounted = dir.join(swap_file).exists();
        let unlimited = if v1 { "-1" } else { "max" };
        // v1 wants memsw >= memory at every step: lift it first.
        if v1 && accounted {
            self.write("memory", swap_file, unlimited)?;
        }
        let mem = limit.map(|b| b.to_string());
        self.write("memory", mem_file, mem.as_deref().unwrap_or(unlimited))?;
        if !accounted {
            return Ok(swap);
        }
        let swap_value = match (swap, v1, &mem) {
            (true, _, _) => unlimited,
            // memory+swap = memory: no room for swap.
            (false, true, Some(m)) => m.as_str(),
            (false, true, None) => unlimited,
            (false, false, _) => "0",
        };
        self.write("memory", swap_file, swap_value)?;
        if v1 {
            // Without a memory limit memsw cannot stop swapping: swappiness 0
            // does; swapping allowed again takes the parent's value.
            let value = match (swap, limit) {
                (false, None) => Some("0".to_string()),
                _ => dir
                    .parent()
                    .and_then(|p| fs::read_to_string(p.join("memory.swappiness")).ok())
                    .map(|v| v.trim().to_string()),
            };
            if let Some(v) = value {
                let _ = self.write("memory", "memory.swappiness", &v);
            }
        }
        Ok(true)
    }

    /// Memory charged to the container: (usage, peak, swap usage).
    pub fn memory_usage(&self) -> (i64, i64, i64) {
        let num = |s: Option<String>| s.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        if self.is_v1("memory") {
            let usage = num(self.read("memory", "memory.usage_in_bytes"));
            let peak = num(self.read("memory", "memory.max_usage_in_bytes"));
            let memsw = num(self.read("memory", "memory.memsw.usage_in_bytes"));
            (usage, peak, (memsw - usage).max(0))
        } else {
            (
                num(self.read("memory", "memory.current")),
                num(self.read("memory", "memory.peak")),
                num(self.read("memory", "memory.swap.current")),
            )
        }
    }

    /// CPU time used, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> i64 {
        if self.is_v1("cpuacct") {
            return self
                .read("cpuacct", "cpuacct.usage")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        self.read("cpu", "cpu.stat")
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("usage_usec ")
                        .and_then(|v| v.trim().parse::<i64>().ok())
                })
            })
            .map(|us| us * 1000)
            .unwrap_or(0)
    }

    /// Number of processes in the container.
    pub fn process_count(&self) -> i64 {
        if let Some(v) = self
            .read("pids", "pids.current")
            .and_then(|v| v.parse().ok())
        {
            return v;
        }
        self.unified_dir().map(|d| count_procs(&d)).unwrap_or(0)
    }
}

/// The leaf cgroup below a container's unified cgroup for exec'd commands.
pub const EXEC_LEAF: &str = ".kante-exec";

/// mkdir of cgroup `dir` (if missing), its directory and the files a
/// delegate writes owned like `parent`.
fn make_owned_like(parent: &Path, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let owner = fs::metadata(parent)?;
    if fs::metadata(dir)?.uid() == owner.uid() {
        return Ok(());
    }
    for p in [
        dir.to_path_buf(),
        dir.join("cgroup.procs"),
        dir.join("cgroup.threads"),
        dir.join("cgroup.subtree_control"),
    ] {
        if p.exists() {
            std::os::unix::fs::chown(&p, Some(owner.uid()), Some(owner.gid()))?;
        }
    }
    Ok(())
}

fn count_procs(dir: &Path) -> i64 {
    let mut n = fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().count() as i64)
        .unwrap_or(0);
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                n += count_procs(&e.path());
            }
        }
    }
    n
}

/// mkdir -p of `rel` under `mount`; new v1 cpuset cgroups need cpus/mems
/// copied from their parent before any task can join.
/// A device policy that cannot be installed fails the start, except where
/// this kanted itself runs in a container (not the initial user namespace):
/// there the kernel refuses it, and the outer container's policy, which
/// covers every cgroup below it, still applies.
fn device_policy(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !in_initial_user_namespace() => {
            tracing::warn!("device policy not installed (nested; the outer one applies): {e}");
            Ok(())
        }
        other => other,
    }
}

fn in_initial_user_namespace() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

fn mkdir_chain(mount: &Path, rel: &str, cpuset: bool) -> Result<(), CgroupError> {
    let mut cur = mount.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        let parent = cur.clone();
        cur.push(part);
        match fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(CgroupError::Io {
                    path: cur,
                    source: e,
                })
            }
        }
        if cpuset {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let mine = cur.join(f);
                let empty = fs::read_to_string(&mine)
                    .map(|s| s.trim().is_empty())
                    .unwrap_or(false);
                if empty {
                    let from_parent =
                        fs::read_to_string(parent.join(f)).map_err(io_err(&parent))?;
                    fs::write(&mine, from_parent.trim()).map_err(io_err(&mine))?;
                }
            }
        }
    }
    Ok(())
}

fn enable_v2_controllers(unified: &Path, rel: &str) {
    // Each ancestor must delegate the controllers to its children. Failures
    // are fine: a controller the host does not offer is simply not limited.
    let mut cur = unified.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        for c in ["cpu", "cpuset", "memory", "pids", "io"] {
            let _ = fs::write(cur.join("cgroup.subtree_control"), format!("+{c}"));
        }
        cur.push(part);
        if i + 1 < parts.len() {
            let _ = fs::create_dir(&cur);
        }
    }
}

/// Depth-first rmdir of a cgroup directory tree (only directories: cgroupfs
/// files vanish with their directory).
fn remove_tree(dir: &Path) -> io::Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&e.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/cpuset rw,relatime shared:12 - cgroup cgroup rw,cpuset
29 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/systemd rw,relatime shared:14 - cgroup cgroup rw,xattr,name=systemd
31 25 0:28 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_hybrid_layout() {
        let l = CgroupLayout::parse(HYBRID);
        assert_eq!(l.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(l.v1.len(), 5);
        assert_eq!(
            l.v1_with("memory").unwrap().mount,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            l.v1_with("name=systemd").unwrap().mount,
            PathBuf::from("/sys/fs/cgroup/systemd")
        );
        assert!(!l.is_pure_v2());
        let cg = Cgroup::new(l, "kante/c1");
        assert_eq!(
            cg.controller_dir("memory").unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/kante/c1")
        );
        assert_eq!(
            cg.controller_dir("hugetlb").unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified/kante/c1")
        );
        assert_eq!(
            cg.procs_files().last().unwrap(),
            &PathBuf::from("/sys/fs/cgroup/unified/kante/c1/cgroup.procs")
        );
    }

    #[test]
    fn parses_pure_v2_layout() {
        let l = CgroupLayout::parse(
            "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert!(l.is_pure_v2());
        assert_eq!(
            Cgroup::new(l, "kante/c1").controller_dir("memory").unwrap(),
            PathBuf::from("/sys/fs/cgroup/kante/c1")
        );
    }

    /// Exec's leaf is made only once the guest delegates controllers (the
    /// case where the kernel refuses processes in the cgroup itself).
    #[test]
    fn exec_leaf_is_made_when_the_cgroup_delegates_controllers() {
        let root = std::env::temp_dir().join(format!("kante-exec-leaf-{}", std::process::id()));
        let layout = CgroupLayout {
            v1: vec![],
            unified: Some(root.clone()),
        };
        let cg = Cgroup::new(layout, "kante/c1");
        let dir = root.join("kante/c1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        let leaf = cg.exec_leaf().unwrap();
        assert_eq!(leaf, dir.join(EXEC_LEAF));
        assert!(!leaf.exists(), "made with nothing delegated");
        fs::write(dir.join("cgroup.subtree_control"), "memory pids\n").unwrap();
        assert_eq!(cg.exec_leaf().unwrap(), leaf);
        assert!(leaf.is_dir());
        assert!(Cgroup::new(
            CgroupLayout {
                v1: vec![],
                unified: None
            },
            "x"
        )
        .exec_leaf()
        .is_none());
    }

    /// A controller is offered by a v1 hierarchy or by the unified
    /// `cgroup.controllers` (a nested host may list none).
    #[test]
    fn offers_reads_v1_hierarchies_and_unified_controllers() {
        let hybrid = Cgroup::new(CgroupLayout::parse(HYBRID), "kante/c1");
        assert!(hybrid.offers("memory") && hybrid.offers("cpuset"));
        let root = std::env::temp_dir().join(format!("kante-offers-{}", std::process::id()));
        let dir = root.join("kante/c1");
        fs::create_dir_all(&dir).unwrap();
        let v2 = Cgroup::new(
            CgroupLayout {
                v1: vec![],
                unified: Some(root.clone()),
            },
            "kante/c1",
        );
        fs::write(dir.join("cgroup.controllers"), "\n").unwrap();
        assert!(!v2.offers("memory"));
        fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        assert!(v2.offers("memory") && v2.offers("pids") && !v2.offers("hugetlb"));
        fs::remove_dir_all(&root).unwrap();
    }
}
