//! Processes still working in a pool's leftovers after a crash.
//!
//! A daemon killed mid-copy may leave its `cp` (or `tar`, `unsquashfs`, …)
//! writing into a staging directory: its own helpers die with it
//! (`PR_SET_PDEATHSIG`), but the signal takes a moment to land, and an
//! older daemon's helpers had no such signal. Removing a leftover while
//! something still writes into it races with that writer, so at start the
//! daemon first stops every process started on a leftover path (its
//! command line names one: only the daemon starts work there), waits until
//! they have exited, and leaves alone any leftover that some other process
//! still has open (a file or its working directory), for a later start.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::aside::is_leftover;

/// How long to wait for stopped processes to exit.
const PATIENCE: Duration = Duration::from_secs(30);

/// The leftover (`.staging-*` or `.deleting-*` entry) under `base` that
/// `path` lies in, if any.
pub(crate) fn leftover_of(base: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(base).ok()?;
    let mut at = base.to_path_buf();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return None;
        };
        at.push(name);
        if is_leftover(&name.to_string_lossy()) {
            return Some(at);
        }
    }
    None
}

/// One process's use of leftovers under a pool.
struct Use {
    pid: i32,
    /// Leftovers its command line names (it was started to work there).
    started_on: BTreeSet<PathBuf>,
    /// Leftovers it has open (files, working directory).
    holds: BTreeSet<PathBuf>,
}

fn uses(base: &Path) -> Vec<Use> {
    let me = std::process::id() as i32;
    // Paths mean the same only in our mount namespace: a guest's processes
    // (a nested daemon's copies, say) are none of ours.
    let my_mnt = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let proc_dir = e.path();
        if my_mnt.is_none() || std::fs::read_link(proc_dir.join("ns/mnt")).ok() != my_mnt {
            continue;
        }
        let cwd = std::fs::read_link(proc_dir.join("cwd")).ok();
        let mut u = Use {
            pid,
            started_on: BTreeSet::new(),
            holds: BTreeSet::new(),
        };
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        for arg in cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()) {
            let arg = String::from_utf8_lossy(arg);
            // `--directory=/x` as well as `/x`.
            let value = match arg.split_once('=') {
                Some((opt, v)) if opt.starts_with('-') => v,
                _ => &arg,
            };
            let p = Path::new(value);
            let p = match (&cwd, p.is_absolute()) {
                (_, true) => p.to_path_buf(),
                (Some(c), false) => c.join(p),
                (None, false) => continue,
            };
            if let Some(l) = leftover_of(base, &p) {
                u.started_on.insert(l);
            }
        }
        let fds = std::fs::read_dir(proc_dir.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| std::fs::read_link(f.path()).ok());
        for p in fds.chain(cwd.clone()) {
            if let Some(l) = leftover_of(base, &p) {
                u.holds.insert(l);
            }
        }
        if !u.started_on.is_empty() || !u.holds.is_empty() {
            out.push(u);
        }
    }
    out
}

/// Whether `pid` has exited (a zombie: no more files, no more writes).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Kills the processes started on leftovers under `base` and waits for
/// them to exit; returns the leftovers something still has open.
pub(crate) fn stop_writers(base: &Path) -> BTreeSet<PathBuf> {
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let started: Vec<Use> = uses(&base)
        .into_iter()
        .filter(|u| !u.started_on.is_empty())
        .collect();
    for u in &started {
        tracing::warn!(
            pid = u.pid,
            leftovers = ?u.started_on,
            "stopping a process left working in a leftover by a previous daemon"
        );
        // SAFETY: plain kill(2).
        unsafe { libc::kill(u.pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + PATIENCE;
    while started.iter().any(|u| !exited(u.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy: BTreeSet<PathBuf> = uses(&base)
        .into_iter()
        .flat_map(|u| u.started_on.into_iter().chain(u.holds))
        .collect();
    for l in &busy {
        tracing::warn!(leftover = %l.display(), "still in use; it is left for a later start");
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_leftover_a_path_lies_in() {
        let base = Path::new("/p");
        let l = |p: &str| leftover_of(base, Path::new(p));
        assert_eq!(
            l("/p/containers/.staging-c2/rootfs/etc"),
            Some(PathBuf::from("/p/containers/.staging-c2"))
        );
        assert_eq!(
            l("/p/containers-snapshots/c1/.staging-s0"),
            Some(PathBuf::from("/p/containers-snapshots/c1/.staging-s0"))
        );
        assert_eq!(
            l("/p/containers/.deleting-c3/x"),
            Some(PathBuf::from("/p/containers/.deleting-c3"))
        );
        assert_eq!(l("/p/containers/c1/rootfs"), None);
        assert_eq!(l("/q/containers/.staging-c2"), None);
        assert_eq!(l("/p/containers/../containers/.staging-c2"), None);
    }

    #[test]
    fn stops_a_process_started_on_a_leftover() {
        let base = std::env::temp_dir().join(format!("kstorage-writers-{}", std::process::id()));
        let staging = base.join("containers/.staging-c9");
        std::fs::create_dir_all(&staging).unwrap();
        let other = base.join("containers/c1");
        std::fs::create_dir_all(&other).unwrap();
        // A writer named on its command line, and a bystander on a volume.
        let mut writer = std::process::Command::new("sh")
            .arg("-c")
            .arg("while :; do sleep 1; done")
            .arg(staging.join("f"))
            .spawn()
            .unwrap();
        let mut bystander = std::process::Command::new("sh")
            .arg("-c")
            .arg("while :; do sleep 1; done")
            .arg(&other)
            .spawn()
            .unwrap();
        let busy = stop_writers(&base);
        assert!(busy.is_empty(), "{busy:?}");
        let st = writer.wait().unwrap();
        assert!(!st.success(), "the writer was stopped");
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "the bystander runs on"
        );
        let _ = bystander.kill();
        let _ = bystander.wait();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
