//! The file server of a running container: one long-lived helper per
//! container (LXD runs its `forkfile` the same way), started on the first
//! file operation, serving them one after the other for as long as the
//! container runs.
//!
//! It is `kanted __fileio` (the daemon's own binary, re-executed through
//! `/proc/self/exe`, so it starts small and single-threaded, with only the
//! fds handed to it): it makes itself non-dumpable, joins the container's
//! user and mount namespaces through init's pidfd (fd 4), becomes the
//! container's root, closes the pidfd and answers requests on a
//! `SOCK_SEQPACKET` socket (fd 3): one message a request (an operation and
//! its paths), one a reply (an outcome and an fd). It exits when the socket
//! closes: the daemon drops it when the container stops, when a request
//! times out (a stalled filesystem in the guest), or by dying itself.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fileio::{self, FileOp, Reply};

const SOCK_FD: RawFd = 3;
const PIDFD_FD: RawFd = 4;
/// Room for the largest request: four paths and the fixed fields.
const MAX_REQUEST: usize = 4 * 4096 + 64;

/// Where file operations on a running container are done: its file server,
/// or a stand-in (a fake runtime's, in tests). Dropping it ends it.
pub trait FileSession: Send {
    /// One operation; blocking (off the async runtime), at most `timeout`
    /// for the answer. After an error the session should be dropped.
    fn call(&self, op: &FileOp, timeout: Duration) -> io::Result<Reply>;
}

/// A running file server; dropping it ends the helper.
pub struct FileServer {
    child: Child,
    sock: OwnedFd,
}

impl FileServer {
    /// Starts the helper for the container whose init is behind `pidfd`
    /// (`userns`: it has a user namespace).
    pub fn spawn(pidfd: RawFd, userns: bool) -> io::Result<FileServer> {
        let (ours, theirs) = seqpacket_pair()?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("__fileio")
            .arg(if userns { "userns" } else { "host" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: only fcntl and dup2 between fork and exec
        // (async-signal-safe). Both fds are first copied above any small
        // number, so placing one cannot overwrite the other; the copies and
        // fds 3 and 4 lose close-on-exec, and the helper closes everything
        // above 4 first thing.
        unsafe {
            cmd.pre_exec(move || {
                let high = [
                    libc::fcntl(theirs_fd, libc::F_DUPFD, 64),
                    libc::fcntl(pidfd, libc::F_DUPFD, 64),
                ];
                for (from, to) in high.into_iter().zip([SOCK_FD, PIDFD_FD]) {
                    if from < 0 || libc::dup2(from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        Ok(FileServer { child, sock: ours })
    }

    /// One operation; blocking (off the async runtime), at most `timeout`
    /// for the answer. After an error the server should be dropped.
    pub fn call(&self, op: &FileOp, timeout: Duration) -> io::Result<Reply> {
        let mut buf = Vec::with_capacity(256);
        encode(op, &mut buf);
        // SAFETY: a buffer of buf.len() bytes; our own socket.
        let n = unsafe {
            libc::send(
                self.sock.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        fileio::receive(&self.sock, timeout)
    }
}

impl FileSession for FileServer {
    fn call(&self, op: &FileOp, timeout: Duration) -> io::Result<Reply> {
        FileServer::call(self, op, timeout)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        // Closing the socket ends it; a helper stuck in a guest's
        // filesystem is killed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two fds.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A request: kind (1 byte), append (1), mode, uid, gid (4 each, native
/// order), then the op's paths, each NUL-terminated, in a fixed order.
fn encode(op: &FileOp, out: &mut Vec<u8>) {
    let (kind, append, mode, owner, paths): (u8, bool, u32, (u32, u32), Vec<&CStr>) = match *op {
        FileOp::Get { path } => (0, false, 0, (0, 0), vec![path]),
        FileOp::Write {
            path,
            parent,
            name,
            mode,
            owner,
            append,
        } => (1, append, mode, owner, vec![path, parent, name]),
        FileOp::Mkdir {
            parent,
            name,
            mode,
            owner,
        } => (2, false, mode, owner, vec![parent, name]),
        FileOp::Symlink {
            parent,
            name,
            target,
            owner,
        } => (3, false, 0, owner, vec![parent, name, target]),
        FileOp::Delete { parent, name } => (4, false, 0, (0, 0), vec![parent, name]),
    };
    out.push(kind);
    out.push(u8::from(append));
    for v in [mode, owner.0, owner.1] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    for p in paths {
        out.extend_from_slice(p.to_bytes_with_nul());
    }
}

fn decode(buf: &[u8]) -> Option<FileOp<'_>> {
    if buf.len() < 14 {
        return None;
    }
    let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (kind, append, mode) = (buf[0], buf[1] != 0, word(2));
    let owner = (word(6), word(10));
    let mut rest = &buf[14..];
    let mut next = || -> Option<&CStr> {
        let s = CStr::from_bytes_until_nul(rest).ok()?;
        rest = &rest[s.to_bytes_with_nul().len()..];
        Some(s)
    };
    Some(match kind {
        0 => FileOp::Get { path: next()? },
        1 => FileOp::Write {
            path: next()?,
            parent: next()?,
            name: next()?,
            mode,
            owner,
            append,
        },
        2 => FileOp::Mkdir {
            parent: next()?,
            name: next()?,
            mode,
            owner,
        },
        3 => FileOp::Symlink {
            parent: next()?,
            name: next()?,
            target: next()?,
            owner,
        },
        4 => FileOp::Delete {
            parent: next()?,
            name: next()?,
        },
        _ => return None,
    })
}

/// `kanted __fileio userns|host`: the helper's main (see the module doc).
pub fn serve_main(userns: bool) -> i32 {
    // SAFETY: plain prctl and close_range: only fds 0-4 are ours to keep.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
    }
    if let Err(e) = enter(userns) {
        eprintln!("kanted __fileio: {e}");
        return 1;
    }
    let root = match std::fs::File::open("/") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("kanted __fileio: opening the container's root: {e}");
            return 1;
        }
    };
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        // SAFETY: a buffer of buf.len() bytes; fd 3 is our socket.
        let n = unsafe { libc::recv(SOCK_FD, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            // The daemon closed its end (or died): done.
            return 0;
        }
        let reply = match decode(&buf[..n as usize]) {
            Some(op) => fileio::perform(root.as_raw_fd(), &op),
            None => Reply::failed(libc::EINVAL),
        };
        if fileio::send(SOCK_FD, &reply).is_err() {
            return 0;
        }
    }
}

/// Joins the container's mount (and user) namespace through init's pidfd
/// and becomes its root; the pidfd is closed afterwards.
fn enter(userns: bool) -> io::Result<()> {
    let mut ns = libc::CLONE_NEWNS;
    if userns {
        ns |= libc::CLONE_NEWUSER;
    }
    // SAFETY: plain syscalls; this process is single-threaded (a fresh exec).
    unsafe {
        if libc::setns(PIDFD_FD, ns) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::close(PIDFD_FD);
        if userns
            && (libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(0, 0, 0) != 0
                || libc::setresuid(0, 0, 0) != 0)
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let ops = [
            FileOp::Get {
                path: c"etc/hostname",
            },
            FileOp::Write {
                path: c"a/b",
                parent: c"a",
                name: c"b",
                mode: 0o640,
                owner: (1000, 1001),
                append: true,
            },
            FileOp::Mkdir {
                parent: c".",
                name: c"d",
                mode: 0o750,
                owner: (0, 0),
            },
            FileOp::Symlink {
                parent: c"etc",
                name: c"l",
                target: c"/x y",
                owner: (5, 6),
            },
            FileOp::Delete {
                parent: c"etc",
                name: c"l",
            },
        ];
        for op in ops {
            let mut buf = Vec::new();
            encode(&op, &mut buf);
            assert_eq!(format!("{:?}", decode(&buf).unwrap()), format!("{op:?}"));
        }
        assert!(decode(b"\x09").is_none());
        assert!(decode(&[7u8; 20]).is_none());
        let mut buf = Vec::new();
        encode(&FileOp::Get { path: c"x" }, &mut buf);
        buf.pop(); // no terminating NUL
        assert!(decode(&buf).is_none());
    }
}
