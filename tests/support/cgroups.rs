//! An instance's cgroup files as the host shows them, on either layout: a
//! hybrid host (v1 hierarchies per controller plus the unified one) or a
//! pure cgroup v2 host (Debian 12's default). Found from the host's own
//! mount table, not through the runtime's code, so the tests check it.

use std::path::{Path, PathBuf};

/// Where the host mounts its cgroup hierarchies.
#[derive(Debug, Clone)]
pub struct HostCgroups {
    /// v1 hierarchies: mount point and the controllers it carries.
    pub v1: Vec<(PathBuf, Vec<String>)>,
    /// The cgroup2 mount (`/sys/fs/cgroup/unified` on hybrid hosts).
    pub unified: Option<PathBuf>,
}

impl HostCgroups {
    pub fn read() -> HostCgroups {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut v1 = Vec::new();
        let mut unified = None;
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount = left.split(' ').nth(4).map(PathBuf::from);
            let right: Vec<&str> = right.split(' ').collect();
            match (right.first(), mount) {
                (Some(&"cgroup2"), Some(m)) if unified.is_none() => unified = Some(m),
                (Some(&"cgroup"), Some(m)) => {
                    let opts = right.get(2).copied().unwrap_or_default();
                    v1.push((m, opts.split(',').map(str::to_string).collect()));
                }
                _ => {}
            }
        }
        HostCgroups { v1, unified }
    }

    /// True on a host with no v1 hierarchy at all.
    pub fn is_pure_v2(&self) -> bool {
        self.v1.is_empty()
    }

    /// The v1 hierarchy carrying `controller`, if any.
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(_, opts)| opts.iter().any(|o| o == controller))
            .map(|(m, _)| m.as_path())
    }

    /// The directory of cgroup `rel` (`<prefix>/<instance>`) that holds
    /// `controller`'s files: its v1 hierarchy if it has one, else the
    /// unified hierarchy. `None` asks for the unified hierarchy itself.
    pub fn dir(&self, rel: &str, controller: Option<&str>) -> PathBuf {
        let base = controller
            .and_then(|c| self.v1_mount(c))
            .or(self.unified.as_deref())
            .expect("no cgroup hierarchy for the controller");
        base.join(rel)
    }

    /// `controller`'s file of cgroup `rel`: `v1_file` where a v1 hierarchy
    /// carries the controller, `v2_file` in the unified hierarchy otherwise.
    pub fn file(&self, rel: &str, controller: &str, v1_file: &str, v2_file: &str) -> PathBuf {
        let name = if self.v1_mount(controller).is_some() {
            v1_file
        } else {
            v2_file
        };
        self.dir(rel, Some(controller)).join(name)
    }
}

/// Every pid in the cgroup at `dir` and in its descendants (on cgroup v2 a
/// guest's systemd moves itself into `init.scope` below the instance's
/// cgroup: it is still in the instance's cgroup tree).
pub fn pids_in_tree(dir: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(pids_in_tree(&e.path()));
        }
    }
    out
}

impl crate::Daemon {
    /// `name`'s cgroup relative to each hierarchy's root.
    pub fn cgroup_rel(&self, name: &str) -> String {
        format!("{}/{name}", self.cgroup_prefix())
    }

    /// The path of a controller file of instance `name` on this host's
    /// layout (`memory`, `memory.limit_in_bytes`, `memory.max`).
    pub fn cgroup_file(&self, name: &str, controller: &str, v1: &str, v2: &str) -> PathBuf {
        HostCgroups::read().file(&self.cgroup_rel(name), controller, v1, v2)
    }

    /// The trimmed content of [`Daemon::cgroup_file`].
    pub fn cgroup_read(&self, name: &str, controller: &str, v1: &str, v2: &str) -> String {
        let p = self.cgroup_file(name, controller, v1, v2);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    }
}
