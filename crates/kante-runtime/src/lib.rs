//! Kante's container runtime for Linux, hand-written on nix/libc.
//!
//! A container is started by a small per-container *monitor* process
//! ([`monitor`]) that the daemon spawns from its own binary. The monitor
//! creates the namespaces (user, mount, pid, uts, ipc, net, cgroup), attaches
//! the rootfs through an idmapped mount ([`idmap`]), builds the mounts a
//! system container needs ([`mounts`]), pivots, drops capabilities, loads the
//! seccomp policy ([`seccomp`]) and execs init, then stays as init's parent.
//! The daemon talks to running containers through pidfds and cgroups
//! ([`linux::LinuxRuntime`]), and runs commands inside them with [`exec`].

pub mod cgroup;
pub mod console;
pub mod devices;
pub mod exec;
pub mod fileio;
pub mod fileserver;
pub mod host;
pub mod hotplug;
pub mod idmap;
pub mod intercept;
pub mod kmod;
pub mod linux;
pub mod lxcfs;
pub mod monitor;
pub mod mounts;
pub mod notify;
pub mod process;
pub mod pty;
pub mod rootdir;
pub mod seccomp;
pub mod spec;
pub mod sys;

pub use linux::{Container, ContainerRecord, LinuxRuntime, Runtime, Stats};
pub use monitor::InitExit;
pub use spec::{BindMount, ContainerSpec, IdMap, Intercept, DEFAULT_CAP_DROP};

use thiserror::Error;

/// What a start's `prepare` callback (see [`Runtime::start`]) fails with.
pub type PrepareError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The monitor or the new container's setup failed (its report is text).
    #[error("starting the container failed: {0}")]
    Start(String),
    /// The caller's `prepare` failed; the container was aborted.
    #[error("starting the container failed: {0}")]
    Prepare(#[source] PrepareError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
