//! Who is calling: a connection to an instance's guest socket is answered
//! only if the peer process (its `SO_PEERCRED` pid, which the kernel gives
//! and the caller cannot choose) is inside that instance: in the pid
//! namespace of its init, or in its cgroup subtree (a process of a
//! container nested in it). Anything else, the host's processes and other
//! instances' included, is refused.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The instance a socket belongs to, as the kernel knows it.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Its init, in the daemon's pid namespace.
    pub init_pid: i32,
    /// Its cgroup, relative to each hierarchy's root (`kante/c1`).
    pub cgroup: String,
}

impl Owner {
    /// True if process `pid` (in the daemon's pid namespace) is one of
    /// the instance's.
    pub fn owns(&self, pid: i32) -> bool {
        self.owns_at(Path::new("/proc"), pid)
    }

    fn owns_at(&self, proc_: &Path, pid: i32) -> bool {
        if pid <= 0 || self.init_pid <= 0 {
            return false;
        }
        let ns = |p: i32| {
            std::fs::metadata(proc_.join(p.to_string()).join("ns/pid"))
                .ok()
                .map(|m| (m.dev(), m.ino()))
        };
        if let (Some(a), Some(b)) = (ns(pid), ns(self.init_pid)) {
            if a == b {
                return true;
            }
        }
        // The init must still be there: a cgroup path alone names nothing
        // once the instance has gone.
        if ns(self.init_pid).is_none() {
            return false;
        }
        std::fs::read_to_string(proc_.join(pid.to_string()).join("cgroup"))
            .map(|text| in_cgroup(&text, &self.cgroup))
            .unwrap_or(false)
    }
}

/// True if a `/proc/PID/cgroup` text puts the process at or under `rel`
/// in any hierarchy.
pub fn in_cgroup(text: &str, rel: &str) -> bool {
    let rel = rel.trim_matches('/');
    if rel.is_empty() {
        return false;
    }
    text.lines().any(|line| {
        // hierarchy-id:controllers:path
        let path = match line.splitn(3, ':').nth(2) {
            Some(p) => p.trim_start_matches('/'),
            None => return false,
        };
        path == rel || path.strip_prefix(rel).is_some_and(|r| r.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_lines_match_the_instance_subtree_only() {
        let v2 = "0::/kante-1/c1/init.scope\n";
        assert!(in_cgroup(v2, "kante-1/c1"));
        assert!(in_cgroup("0::/kante-1/c1\n", "/kante-1/c1"));
        assert!(!in_cgroup(v2, "kante-1/c"));
        assert!(!in_cgroup("0::/kante-1/c10/x\n", "kante-1/c1"));
        assert!(!in_cgroup("0::/user.slice/session-1.scope\n", "kante-1/c1"));
        let v1 = "12:pids:/kante-1/c1\n1:name=systemd:/kante-1/c1/a\n";
        assert!(in_cgroup(v1, "kante-1/c1"));
        assert!(!in_cgroup(v1, ""));
    }

    #[test]
    fn the_host_is_not_an_instance() {
        let me = std::process::id() as i32;
        // An init that does not exist owns nothing.
        let gone = Owner {
            init_pid: i32::MAX,
            cgroup: "kante-test/c1".into(),
        };
        assert!(!gone.owns(me));
        assert!(!gone.owns(0) && !gone.owns(-1));
    }
}
