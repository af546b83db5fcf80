//! The master side of an exec'd command's pty ([`PtyMaster`]): its reads,
//! writes, window size and blocking mode, so callers need no syscalls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// A pty master we own.
#[derive(Debug)]
pub struct PtyMaster {
    fd: OwnedFd,
}

impl PtyMaster {
    /// Takes ownership of `fd`, which must be a pty master.
    pub fn from_fd(fd: OwnedFd) -> PtyMaster {
        PtyMaster { fd }
    }

    /// Sets the window size; the kernel sends SIGWINCH to the foreground group.
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the local winsize; the fd is ours.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The window size (columns, rows).
    pub fn size(&self) -> io::Result<(u16, u16)> {
        window_size(self.fd.as_fd())
    }

    /// Makes reads and writes return `WouldBlock` instead of waiting (for
    /// an event loop).
    pub fn set_nonblocking(&self) {
        let fd = self.fd.as_raw_fd();
        // SAFETY: fcntl on a valid fd we own.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }

    /// A pty pair of the host's devpts, both ends close-on-exec, of
    /// `width`×`height` (at least 1×1): the master and the slave.
    pub fn open_host_pair(width: u16, height: u16) -> io::Result<(PtyMaster, OwnedFd)> {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name: CString = ptsname(&master, Vec::new())?;
        let slave = rustix::fs::open(
            name.as_c_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        rustix::termios::tcsetwinsize(
            &master,
            rustix::termios::Winsize {
                ws_row: height.max(1),
                ws_col: width.max(1),
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )?;
        Ok((PtyMaster { fd: master }, slave))
    }
}

/// The window size (columns, rows) of a terminal, either end of a pty.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(fd)?;
    Ok((ws.ws_col, ws.ws_row))
}

impl io::Read for &PtyMaster {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(&self.fd, buf).map_err(io::Error::from)
    }
}

impl io::Write for &PtyMaster {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        nix::unistd::write(&self.fd, data).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for PtyMaster {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PtyMaster {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<PtyMaster> for OwnedFd {
    fn from(m: PtyMaster) -> OwnedFd {
        m.fd
    }
}
