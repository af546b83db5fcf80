//! What the engine asks the runtime to start. Serialised to JSON and handed
//! to the monitor process, so it is plain data.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Container uid/gid 0..size map to host host_uid.. and host_gid.. .
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub host_uid: u32,
    pub host_gid: u32,
    pub size: u32,
}

impl IdMap {
    /// Host uid of a container uid, if it is inside the map.
    pub fn host_uid_of(&self, uid: u32) -> Option<u32> {
        (uid < self.size).then(|| self.host_uid + uid)
    }

    pub fn host_gid_of(&self, gid: u32) -> Option<u32> {
        (gid < self.size).then(|| self.host_gid + gid)
    }

    /// The text written to `/proc/<pid>/uid_map`.
    pub fn uid_map_line(&self) -> String {
        format!("0 {} {}\n", self.host_uid, self.size)
    }

    pub fn gid_map_line(&self) -> String {
        format!("0 {} {}\n", self.host_gid, self.size)
    }
}

/// A bind mount from the host into the container (disk devices).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// Shift ownership into the container's id range with an idmapped mount.
    pub idmapped: bool,
}

/// Everything needed to start one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub hostname: String,
    /// Host path of the root filesystem directory.
    pub rootfs: PathBuf,
    /// Per-instance directory for the console log, exit status and the spec itself.
    pub runtime_dir: PathBuf,
    /// `None` runs privileged: no user namespace, container root is host root.
    pub idmap: Option<IdMap>,
    /// Relative cgroup path used in every hierarchy, e.g. `kante/c1`.
    pub cgroup: String,
    /// Command line of the container's init.
    pub init: Vec<String>,
    /// Environment of init (`container=lxc` is always added).
    pub env: Vec<String>,
    /// Capability numbers removed from the bounding set.
    pub cap_drop: Vec<u32>,
    pub mounts: Vec<BindMount>,
    /// Allow nested containers (extra proc/sys views, no masking that breaks runtimes).
    pub nesting: bool,
    /// Syscalls the monitor performs on the guest's behalf (seccomp user notification).
    #[serde(default)]
    pub intercept: Intercept,
    /// Keep at most this many bytes of console output in `console.log`.
    pub console_log_limit: u64,
    /// Where lxcfs serves (bound over the guest's /proc files); `None`
    /// leaves the kernel's host-wide files.
    #[serde(default)]
    pub lxcfs: Option<PathBuf>,
}

impl ContainerSpec {
    pub fn console_log_path(&self) -> PathBuf {
        self.runtime_dir.join("console.log")
    }

    pub fn exit_status_path(&self) -> PathBuf {
        self.runtime_dir.join("exit-status")
    }

    pub fn spec_path(&self) -> PathBuf {
        self.runtime_dir.join("spec.json")
    }

    pub fn privileged(&self) -> bool {
        self.idmap.is_none()
    }
}

/// Which syscalls are intercepted (`security.syscalls.intercept.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Intercept {
    /// mknod/mknodat of character devices: whiteouts and the standard devices.
    #[serde(default)]
    pub mknod: bool,
    /// setxattr family: `trusted.overlay.*` attributes.
    #[serde(default)]
    pub setxattr: bool,
}

impl Intercept {
    pub fn any(&self) -> bool {
        self.mknod || self.setxattr
    }

    /// Index in a table of the four combinations.
    pub fn index(&self) -> usize {
        (self.mknod as usize) | ((self.setxattr as usize) << 1)
    }

    /// The socket on which a running container's monitor accepts seccomp
    /// listeners of exec'd processes.
    pub fn socket_path(runtime_dir: &std::path::Path) -> PathBuf {
        runtime_dir.join("seccomp.sock")
    }
}

/// Capabilities a system container never gets (LXC's common.conf drops the same).
pub const DEFAULT_CAP_DROP: &[u32] = &[
    25, // CAP_SYS_TIME
    16, // CAP_SYS_MODULE
    17, // CAP_SYS_RAWIO: else sys-kernel-debug.mount fails and systemd is "degraded"
    33, // CAP_MAC_ADMIN
    32, // CAP_MAC_OVERRIDE
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idmap_lines_and_lookup() {
        let m = IdMap {
            host_uid: 1_000_000,
            host_gid: 1_000_000,
            size: 65536,
        };
        assert_eq!(m.uid_map_line(), "0 1000000 65536\n");
        assert_eq!(m.host_uid_of(0), Some(1_000_000));
        assert_eq!(m.host_uid_of(65535), Some(1_065_535));
        assert_eq!(m.host_uid_of(65536), None);
    }
}
