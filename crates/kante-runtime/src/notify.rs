//! Plumbing of seccomp user notification: passing listener fds between
//! processes (SCM_RIGHTS) and the raw notification ioctls.
//!
//! Every process of a container that intercepts syscalls carries a filter
//! whose listener the container's monitor polls: init's arrives over a
//! socketpair made before the clone, an exec'd command's over the monitor's
//! `seccomp.sock` (connected by the daemon before it forks).

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Sends one fd over a connected unix socket. Async-signal-safe: no allocation.
pub fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    send_with_fd(sock, b"f", Some(fd))
}

/// Sends `payload` and, if given, one fd (SCM_RIGHTS). Async-signal-safe.
pub fn send_with_fd(sock: RawFd, payload: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    // A u64 array keeps the control buffer aligned for cmsghdr.
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: msghdr and its control buffer live on this stack frame; the
    // CMSG macros stay inside cbuf (CMSG_SPACE(4) <= 32 bytes); the kernel
    // only reads the payload.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        }
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one fd sent with [`send_fd`]; `Ok(None)` at end of stream.
pub fn recv_fd(sock: RawFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8];
    match recv_with_fd(sock, &mut byte)? {
        (0, _) => Ok(None),
        (_, Some(fd)) => Ok(Some(fd)),
        (_, None) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message without a file descriptor",
        )),
    }
}

/// Receives a message into `buf` and the fd it carries, if any: (bytes, fd).
pub fn recv_with_fd(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in send_with_fd; the kernel fills at most msg_controllen
    // bytes of cbuf and buf.len() of buf.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        let n = loop {
            let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break n;
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        let fd = (!c.is_null()
            && (*c).cmsg_level == libc::SOL_SOCKET
            && (*c).cmsg_type == libc::SCM_RIGHTS)
            .then(|| OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast())));
        Ok((n as usize, fd))
    }
}

/// A socketpair for handing one listener from init's first process to the monitor.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two fds.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The uid of the process at the other end of a unix socket.
pub fn peer_uid(sock: &OwnedFd) -> io::Result<u32> {
    // SAFETY: ucred is plain data; all zeroes is a valid value.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for the call.
    if unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

// The notification ioctls (linux/seccomp.h): _IOWR('!', 0, notif),
// _IOWR('!', 1, resp), _IOW('!', 2, u64).
const IOC_RECV: libc::c_ulong = 0xc050_2100;
const IOC_SEND: libc::c_ulong = 0xc018_2101;
const IOC_ID_VALID: libc::c_ulong = 0x4008_2102;
/// Let the kernel run the syscall as if nothing intercepted it.
const FLAG_CONTINUE: u32 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// One intercepted syscall (`struct seccomp_notif`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Notif {
    pub id: u64,
    /// Thread id of the caller, in the monitor's (the host's) pid namespace.
    pub pid: u32,
    pub flags: u32,
    pub data: SeccompData,
}

#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

/// The answer to a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The syscall returns 0.
    Done,
    /// The syscall fails with this errno.
    Errno(i32),
    /// The kernel runs the syscall itself, with the caller's own privileges.
    Continue,
}

/// Receives the next notification. `Ok(None)`: it vanished (caller killed).
pub fn receive(listener: RawFd) -> io::Result<Option<Notif>> {
    // SAFETY: the kernel wants a zeroed seccomp_notif (checked since 5.5).
    let mut n: Notif = unsafe { zeroed() };
    // SAFETY: n has the layout of struct seccomp_notif (80 bytes).
    if unsafe { libc::ioctl(listener, IOC_RECV, &mut n as *mut Notif) } != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::EINTR) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(n))
}

/// True while the caller of notification `id` is still waiting for the
/// answer: checked after reading its /proc files, so a recycled pid is caught.
pub fn id_valid(listener: RawFd, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64.
    unsafe { libc::ioctl(listener, IOC_ID_VALID, &id as *const u64) == 0 }
}

pub fn respond(listener: RawFd, id: u64, reply: Reply) -> io::Result<()> {
    let mut r = NotifResp {
        id,
        val: 0,
        error: 0,
        flags: 0,
    };
    match reply {
        Reply::Done => {}
        Reply::Errno(e) => r.error = -e,
        Reply::Continue => r.flags = FLAG_CONTINUE,
    }
    // SAFETY: r has the layout of struct seccomp_notif_resp (24 bytes).
    if unsafe { libc::ioctl(listener, IOC_SEND, &mut r as *mut NotifResp) } != 0 {
        let e = io::Error::last_os_error();
        // ENOENT: the caller was killed meanwhile; nothing to answer.
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(size_of::<Notif>(), 80);
        assert_eq!(size_of::<NotifResp>(), 24);
        // _IOWR('!', 0, struct seccomp_notif): dir 3, size 80, type 0x21, nr 0.
        assert_eq!(IOC_RECV, (3 << 30) | (80 << 16) | (0x21 << 8));
        assert_eq!(IOC_SEND, (3 << 30) | (24 << 16) | (0x21 << 8) | 1);
        assert_eq!(IOC_ID_VALID, (1 << 30) | (8 << 16) | (0x21 << 8) | 2);
    }

    #[test]
    fn fds_travel_over_a_socketpair() {
        let (a, b) = socketpair().unwrap();
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        send_fd(a.as_raw_fd(), f.as_raw_fd()).unwrap();
        let got = recv_fd(b.as_raw_fd()).unwrap().unwrap();
        let same = |fd: RawFd| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(same(got.as_raw_fd()), same(f.as_raw_fd()));
        drop(a);
        assert!(recv_fd(b.as_raw_fd()).unwrap().is_none());
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        assert_eq!(peer_uid(&b).unwrap(), me);
    }
}
