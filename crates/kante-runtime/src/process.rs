//! Our own children held by their pidfd ([`ChildProcess`]), and the signal
//! numbers the engine names ([`signal`]).
//!
//! A pid names a process only until it is reaped; after that the kernel may
//! give it to any new process. A pidfd names the process itself: once it has
//! been reaped, a signal through it fails with `ESRCH` instead of reaching
//! whatever got the pid next, and a wait through it fails with `ECHILD`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use thiserror::Error;

use crate::sys;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("opening a pidfd for process {pid}")]
    Open {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("signalling process {pid}")]
    Signal {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("waiting for process {pid}")]
    Wait {
        pid: i32,
        #[source]
        source: io::Error,
    },
}

impl ProcessError {
    /// The process was reaped already (or never was our child).
    pub fn is_gone(&self) -> bool {
        let source = match self {
            ProcessError::Open { source, .. }
            | ProcessError::Signal { source, .. }
            | ProcessError::Wait { source, .. } => source,
        };
        matches!(source.raw_os_error(), Some(libc::ESRCH | libc::ECHILD))
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Exited(i32),
    Signaled(i32),
}

impl Exit {
    /// As a shell reports it: the exit code, or 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Exited(code) => code,
            Exit::Signaled(sig) => 128 + sig,
        }
    }
}

/// A child of this process, held by its pidfd. Signals and waits go
/// through the pidfd, so none can reach another process after the reap.
/// The pidfd turns readable when the child exits (register it with an
/// event loop through [`AsRawFd`]).
#[derive(Debug)]
pub struct ChildProcess {
    pid: i32,
    pidfd: OwnedFd,
}

impl ChildProcess {
    /// Takes hold of `pid`, which must be our own child, not yet reaped:
    /// until we reap it, the pid cannot name another process.
    pub fn from_child(pid: i32) -> Result<ChildProcess, ProcessError> {
        let pidfd = sys::pidfd_open(pid).map_err(|source| ProcessError::Open { pid, source })?;
        Ok(ChildProcess { pid, pidfd })
    }

    /// Its host pid (for messages: signal and wait through the handle).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig`. Fails with `ESRCH` ([`ProcessError::is_gone`]) once
    /// the process has been reaped, whoever has its pid by then.
    pub fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        sys::pidfd_send_signal(self.pidfd.as_raw_fd(), sig).map_err(|source| ProcessError::Signal {
            pid: self.pid,
            source,
        })
    }

    /// Reaps the child if it has exited; `None` while it runs.
    pub fn try_wait(&self) -> Result<Option<Exit>, ProcessError> {
        self.waitid(libc::WNOHANG)
    }

    /// Blocks until the child exits, and reaps it.
    pub fn wait(&self) -> Result<Exit, ProcessError> {
        loop {
            if let Some(exit) = self.waitid(0)? {
                return Ok(exit);
            }
        }
    }

    fn waitid(&self, extra: libc::c_int) -> Result<Option<Exit>, ProcessError> {
        let flags = libc::WEXITED | libc::__WALL | extra;
        // SAFETY: siginfo_t is plain data, so all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own pidfd fills the local siginfo_t.
        let ret = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                self.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if ret != 0 {
            let source = io::Error::last_os_error();
            if source.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(ProcessError::Wait {
                pid: self.pid,
                source,
            });
        }
        // SAFETY: waitid succeeded, so si_pid and si_status are the child's.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(match info.si_code {
            libc::CLD_EXITED => Exit::Exited(status),
            _ => Exit::Signaled(status),
        }))
    }
}

impl AsFd for ChildProcess {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

impl AsRawFd for ChildProcess {
    fn as_raw_fd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }
}

/// Signal numbers, for [`crate::Runtime::signal`] and [`ChildProcess::signal`].
pub mod signal {
    pub const HUP: i32 = libc::SIGHUP;
    pub const INT: i32 = libc::SIGINT;
    pub const KILL: i32 = libc::SIGKILL;
    pub const TERM: i32 = libc::SIGTERM;
    pub const USR1: i32 = libc::SIGUSR1;
    pub const USR2: i32 = libc::SIGUSR2;
    pub const PWR: i32 = libc::SIGPWR;

    /// `SIGRTMIN+n` as this libc numbers it (glibc keeps the first few).
    pub fn rtmin_plus(n: i32) -> i32 {
        libc::SIGRTMIN() + n
    }
}

#[cfg(test)]
// The children are reaped through their pidfds, which clippy cannot see.
#[allow(clippy::zombie_processes)]
mod tests {
    use super::*;

    /// After the reap the pid is free for any process; the handle must not
    /// reach it: signalling fails with ESRCH and nothing is sent.
    #[test]
    fn a_reaped_child_cannot_be_signalled() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let p = ChildProcess::from_child(child.id() as i32).unwrap();
        assert_eq!(p.wait().unwrap(), Exit::Exited(0));
        let err = p.signal(signal::KILL).unwrap_err();
        assert!(err.is_gone(), "{err:?}");
        let err = p.try_wait().unwrap_err();
        assert!(err.is_gone(), "{err:?}");
    }

    #[test]
    fn exits_and_signals_read_as_a_shell_reports_them() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = ChildProcess::from_child(child.id() as i32).unwrap();
        assert_eq!(p.try_wait().unwrap(), None);
        p.signal(signal::TERM).unwrap();
        let exit = p.wait().unwrap();
        assert_eq!(exit, Exit::Signaled(libc::SIGTERM));
        assert_eq!(exit.shell_code(), 143);
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let p = ChildProcess::from_child(child.id() as i32).unwrap();
        assert_eq!(p.wait().unwrap().shell_code(), 7);
    }
}
