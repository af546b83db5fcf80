//! Naming another network namespace, and running a little work inside it.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::{NetworkError, Result};

/// A network namespace other than ours: a process's (`/proc/<pid>/ns/net`)
/// or a bind-mounted one such as `/run/netns/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsRef {
    Pid(u32),
    Path(PathBuf),
}

impl NetnsRef {
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsRef::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            NetnsRef::Path(p) => p.clone(),
        }
    }

    pub fn open(&self) -> Result<File> {
        let p = self.path();
        File::open(&p).map_err(NetworkError::io(format!(
            "opening network namespace {}",
            p.display()
        )))
    }

    /// Runs `f` on a fresh thread that has joined this namespace, so the
    /// caller's threads never change namespace. Sockets `f` opens live in
    /// the namespace.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let ns = self.open()?;
        let name = self.path().display().to_string();
        std::thread::Builder::new()
            .name("kante-netns".into())
            .spawn(move || {
                enter(&ns).map_err(|source| NetworkError::Io {
                    what: format!("setns into {name}"),
                    source,
                })?;
                f()
            })
            .map_err(NetworkError::io("spawning a netns thread"))?
            .join()
            .map_err(|_| NetworkError::Io {
                what: "netns thread".into(),
                source: std::io::Error::other("panicked"),
            })?
    }
}

/// Moves the calling thread (only it) into the network namespace `ns`
/// names (an open `/proc/<pid>/ns/net` or bind mount of one). Sockets the
/// thread makes afterwards belong to that namespace.
pub fn enter(ns: impl AsFd) -> std::io::Result<()> {
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// Brings `ifname` up inside `netns`, as LXC does for an instance's NICs
/// (the guest's DHCP client or static config then takes over).
pub fn set_up_in_netns(netns: &NetnsRef, ifname: &str) -> Result<()> {
    let name = ifname.to_string();
    netns.run(move || set_up_here(&name))
}

fn set_up_here(ifname: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = crate::ifreq::ifr_name(ifname)?;
    let sock = crate::ifreq::ioctl_socket("SIOCSIFFLAGS")?;
    // SAFETY: req outlives both calls; the kernel reads the name and
    // reads/writes the flags union member.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(NetworkError::io(format!("reading flags of {ifname}"))(
                std::io::Error::last_os_error(),
            ));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(NetworkError::io(format!("setting {ifname} up"))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
