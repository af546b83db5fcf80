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
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |e| NetworkError::Io {
                        what: format!("setns into {name}"),
                        source: e.into(),
                    },
                )?;
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
