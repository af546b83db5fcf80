//! Syscalls the monitor performs on a guest's behalf (seccomp user
//! notification), for `security.syscalls.intercept.{mknod,setxattr}`.
//!
//! Only the safe set LXD documents is done with host privileges: mknod of
//! an overlayfs whiteout (char 0:0) and of the standard character devices,
//! and `trusted.overlay.*` extended attributes. Anything else is handed back
//! to the kernel (`Continue`), which answers as it would without us.
//!
//! An allowed call is made by a short-lived child of the monitor that enters
//! the caller's mount namespace, takes its root and working directory, its
//! filesystem ids, groups and umask, and keeps only the one capability the
//! operation needs; so the guest's own permission checks still apply.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use libseccomp::{ScmpArch, ScmpSyscall};

use crate::notify::{self, Notif, Reply};
use crate::spec::Intercept;

const CAP_MKNOD: u32 = 27;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_DAC_OVERRIDE: u32 = 1;
const AT_FDCWD: i32 = -100;
const PATH_MAX: usize = 4096;
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;

/// Character devices LXD lets a container create: whiteout, null, zero,
/// full, random, urandom, tty, console.
const ALLOWED_CHR: &[(u32, u32)] = &[
    (0, 0),
    (1, 3),
    (1, 5),
    (1, 7),
    (1, 8),
    (1, 9),
    (5, 0),
    (5, 1),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Mknod,
    Mknodat,
    Setxattr,
    Lsetxattr,
    Fsetxattr,
}

/// `(major, minor)` of the `dev` argument (the kernel's new_decode_dev of a u32).
pub fn decode_dev(dev: u64) -> (u32, u32) {
    let d = dev as u32;
    ((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00))
}

/// Whether mknod(mode, dev) is in the safe set.
pub fn mknod_allowed(mode: u32, dev: u64) -> bool {
    mode & libc::S_IFMT == libc::S_IFCHR && ALLOWED_CHR.contains(&decode_dev(dev))
}

/// Whether an xattr name is in the safe set.
pub fn xattr_allowed(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") && name.len() > b"trusted.overlay.".len()
}

/// The caller's credentials, from /proc/<tid>/status (host ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    /// Effective capabilities, relative to the caller's user namespace.
    pub cap_eff: u64,
    pub umask: u32,
    /// The caller's user namespace's uid and gid maps (inside, outside,
    /// count), read separately (`/proc/<pid>/{uid,gid}_map`).
    pub uid_map: Vec<(u32, u32, u32)>,
    pub gid_map: Vec<(u32, u32, u32)>,
}

impl Creds {
    pub fn parse(status: &str) -> Option<Creds> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
        };
        let nth = |name: &str, i: usize| -> Option<u32> {
            field(name)?.split_whitespace().nth(i)?.parse().ok()
        };
        Some(Creds {
            fsuid: nth("Uid:", 3)?,
            fsgid: nth("Gid:", 3)?,
            groups: field("Groups:")?
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect(),
            cap_eff: u64::from_str_radix(field("CapEff:")?, 16).ok()?,
            umask: field("Umask:")
                .and_then(|u| u32::from_str_radix(u, 8).ok())
                .unwrap_or(0o022),
            uid_map: Vec::new(),
            gid_map: Vec::new(),
        })
    }

    /// Parses an id map file (`inside outside count` per line).
    pub fn parse_map(text: &str) -> Vec<(u32, u32, u32)> {
        text.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
                Some((f.next()??, f.next()??, f.next()??))
            })
            .collect()
    }

    fn maps(map: &[(u32, u32, u32)], host: u32) -> bool {
        map.iter()
            .any(|&(_, out, n)| host >= out && u64::from(host) < u64::from(out) + u64::from(n))
    }

    fn has_cap(&self, cap: u32) -> bool {
        self.cap_eff & (1u64 << cap) != 0
    }
}

/// Decides and performs intercepted syscalls for one container.
pub struct Interceptor {
    calls: Vec<(ScmpArch, i32, Call)>,
}

impl Interceptor {
    pub fn new(intercept: Intercept) -> Self {
        let mut names: Vec<(&str, Call)> = Vec::new();
        if intercept.mknod {
            names.extend([("mknod", Call::Mknod), ("mknodat", Call::Mknodat)]);
        }
        if intercept.setxattr {
            names.extend([
                ("setxattr", Call::Setxattr),
                ("lsetxattr", Call::Lsetxattr),
                ("fsetxattr", Call::Fsetxattr),
            ]);
        }
        let mut arches = vec![ScmpArch::native()];
        if arches[0] == ScmpArch::X8664 {
            arches.extend([ScmpArch::X86, ScmpArch::X32]);
        }
        let mut calls = Vec::new();
        for arch in arches {
            for (name, call) in &names {
                if let Ok(sc) = ScmpSyscall::from_name_by_arch(name, arch) {
                    calls.push((arch, sc.as_raw_syscall(), *call));
                }
            }
        }
        Interceptor { calls }
    }

    /// Receives one notification from `listener` and answers it.
    pub fn handle(&self, listener: RawFd) -> io::Result<()> {
        let Some(n) = notify::receive(listener)? else {
            return Ok(());
        };
        let reply = match self.decide(listener, &n) {
            Ok(Some(r)) => r,
            // The caller went away while we looked: nobody to answer.
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::debug!("intercepted syscall of {}: {e}", n.pid);
                Reply::Errno(e.raw_os_error().unwrap_or(libc::EPERM))
            }
        };
        notify::respond(listener, n.id, reply)
    }

    fn call_of(&self, n: &Notif) -> Option<Call> {
        let arch = arch_of_audit(n.data.arch)?;
        // x32 shares x86_64's token; its numbers carry bit 30.
        let x32 = arch == ScmpArch::X8664 && n.data.nr & 0x4000_0000 != 0;
        let arch = if x32 { ScmpArch::X32 } else { arch };
        self.calls
            .iter()
            .find(|(a, nr, _)| *a == arch && *nr == n.data.nr)
            .map(|(_, _, c)| *c)
    }

    fn decide(&self, listener: RawFd, n: &Notif) -> io::Result<Option<Reply>> {
        let Some(call) = self.call_of(n) else {
            return Ok(Some(Reply::Continue));
        };
        let a = n.data.args;
        let pid = n.pid;
        let (op, needs_cap) = match call {
            Call::Mknod | Call::Mknodat => {
                let (dirfd, path, mode, dev) = match call {
                    Call::Mknod => (AT_FDCWD, a[0], a[1] as u32, a[2]),
                    _ => (a[0] as i32, a[1], a[2] as u32, a[3]),
                };
                if !mknod_allowed(mode, dev) {
                    return Ok(Some(Reply::Continue));
                }
                let (major, minor) = decode_dev(dev);
                let mem = open_mem(pid)?;
                let path = read_cstr(&mem, path, PATH_MAX)?;
                // The kernel needs no CAP_MKNOD for a whiteout; for real devices
                // the caller must hold it in its own user namespace.
                let cap = ((major, minor) != (0, 0)).then_some(CAP_MKNOD);
                let op = Op::Mknod {
                    at: Target::path(pid, dirfd, &path)?,
                    path,
                    mode,
                    dev: libc::makedev(major, minor),
                };
                (op, cap)
            }
            Call::Setxattr | Call::Lsetxattr | Call::Fsetxattr => {
                let mem = open_mem(pid)?;
                let name = read_cstr(&mem, a[1], XATTR_NAME_MAX + 1)?;
                if !xattr_allowed(name.as_bytes()) {
                    return Ok(Some(Reply::Continue));
                }
                let size = a[3] as usize;
                if size > XATTR_SIZE_MAX {
                    return Ok(Some(Reply::Errno(libc::E2BIG)));
                }
                let mut value = vec![0u8; size];
                if size > 0 {
                    mem.read_exact_at(&mut value, a[2])
                        .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
                }
                let flags = a[4] as i32;
                let op = if call == Call::Fsetxattr {
                    Op::Fsetxattr {
                        file: open_proc(pid, &format!("fd/{}", a[0] as i32), libc::O_PATH)
                            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
                        name,
                        value,
                        flags,
                    }
                } else {
                    let path = read_cstr(&mem, a[0], PATH_MAX)?;
                    Op::Setxattr {
                        at: Target::path(pid, AT_FDCWD, &path)?,
                        path,
                        name,
                        value,
                        flags,
                        follow: call == Call::Setxattr,
                    }
                };
                (op, Some(CAP_SYS_ADMIN))
            }
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let mut creds = Creds::parse(&status)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable status"))?;
        creds.uid_map = Creds::parse_map(&std::fs::read_to_string(format!("/proc/{pid}/uid_map"))?);
        creds.gid_map = Creds::parse_map(&std::fs::read_to_string(format!("/proc/{pid}/gid_map"))?);
        // Everything about the caller is read: if its notification is still
        // pending, the pid was not recycled in between.
        if !notify::id_valid(listener, n.id) {
            return Ok(None);
        }
        if let Some(cap) = needs_cap {
            if !creds.has_cap(cap) {
                return Ok(Some(Reply::Errno(libc::EPERM)));
            }
        }
        let cap = match op {
            Op::Mknod { .. } => CAP_MKNOD,
            _ => CAP_SYS_ADMIN,
        };
        Ok(Some(match run_helper(&op, &creds, cap) {
            0 => Reply::Done,
            e => Reply::Errno(e),
        }))
    }
}

/// seccomp_data.arch (AUDIT_ARCH_*) of the architectures we filter.
fn arch_of_audit(token: u32) -> Option<ScmpArch> {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
    match token {
        AUDIT_ARCH_X86_64 => Some(ScmpArch::X8664),
        AUDIT_ARCH_I386 => Some(ScmpArch::X86),
        AUDIT_ARCH_AARCH64 => Some(ScmpArch::Aarch64),
        _ => None,
    }
}

fn open_proc(pid: u32, rel: &str, flags: i32) -> io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/{rel}"))?
        .into())
}

fn open_mem(pid: u32) -> io::Result<File> {
    File::open(format!("/proc/{pid}/mem"))
}

/// Reads a NUL-terminated string of at most `max` bytes from the caller.
fn read_cstr(mem: &File, addr: u64, max: usize) -> io::Result<CString> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while out.len() < max {
        // A short read at a page boundary is fine; a failed one is EFAULT.
        let n = mem
            .read_at(&mut buf, addr + out.len() as u64)
            .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Ok(CString::new(out).expect("no NUL before the end"));
        }
        out.extend_from_slice(&buf[..n]);
    }
    Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
}

/// Where a path argument is resolved: the caller's root and mount
/// namespace, and the directory a relative path starts from.
struct Target {
    mntns: OwnedFd,
    root: OwnedFd,
    base: Option<OwnedFd>,
}

impl Target {
    fn path(pid: u32, dirfd: i32, path: &CString) -> io::Result<Target> {
        let dir = libc::O_PATH | libc::O_DIRECTORY;
        let base = if path.as_bytes().starts_with(b"/") {
            None
        } else if dirfd == AT_FDCWD {
            Some(open_proc(pid, "cwd", dir)?)
        } else {
            Some(open_proc(pid, &format!("fd/{dirfd}"), dir).map_err(
                |e| match e.raw_os_error() {
                    Some(libc::ENOTDIR) => e,
                    _ => io::Error::from_raw_os_error(libc::EBADF),
                },
            )?)
        };
        Ok(Target {
            mntns: open_proc(pid, "ns/mnt", libc::O_RDONLY)?,
            root: open_proc(pid, "root", dir)?,
            base,
        })
    }
}

enum Op {
    Mknod {
        at: Target,
        path: CString,
        mode: u32,
        dev: libc::dev_t,
    },
    Setxattr {
        at: Target,
        path: CString,
        name: CString,
        value: Vec<u8>,
        flags: i32,
        follow: bool,
    },
    Fsetxattr {
        file: OwnedFd,
        name: CString,
        value: Vec<u8>,
        flags: i32,
    },
}

/// Runs `op` in a child of the (single-threaded) monitor; returns 0 or an errno.
fn run_helper(op: &Op, creds: &Creds, cap: u32) -> i32 {
    // SAFETY: the monitor is single-threaded, so the child may do anything;
    // it leaves with _exit and never returns into the monitor's code.
    match unsafe { libc::fork() } {
        -1 => io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
        0 => {
            let code = match helper(op, creds, cap) {
                Ok(()) => 0,
                Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
            };
            // SAFETY: leaving the child.
            unsafe { libc::_exit(code) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: reaping our own child.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
                if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return libc::EIO;
                }
            }
            if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                libc::EIO
            }
        }
    }
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn enter(at: &Target) -> io::Result<()> {
    // SAFETY: plain syscalls on fds we own.
    unsafe {
        cvt(libc::setns(at.mntns.as_raw_fd(), libc::CLONE_NEWNS))?;
        cvt(libc::fchdir(at.root.as_raw_fd()))?;
        cvt(libc::chroot(c".".as_ptr()))?;
        match &at.base {
            Some(b) => cvt(libc::fchdir(b.as_raw_fd())),
            None => cvt(libc::chdir(c"/".as_ptr())),
        }
    }
}

/// Takes the caller's fs ids, groups and umask, and keeps only `cap` effective.
fn become_caller(creds: &Creds, cap: u32) -> io::Result<()> {
    // SAFETY: plain syscalls on this thread.
    unsafe {
        cvt(libc::setgroups(creds.groups.len(), creds.groups.as_ptr()))?;
        libc::setfsgid(creds.fsgid);
        libc::setfsuid(creds.fsuid);
        libc::umask(creds.umask as libc::mode_t);
    }
    // The fsuid change dropped the filesystem capabilities; raise just ours.
    crate::sys::set_effective_caps(|_| 1u64 << cap)?;
    Ok(())
}

/// `trusted.*` xattrs need only CAP_SYS_ADMIN, which the helper holds on
/// the host: so first ask whether the caller could write the file itself
/// (audit S3), with its fs ids (after `become_caller`), or through its own
/// CAP_DAC_OVERRIDE, which covers files whose owner and group are mapped in
/// its user namespace (the kernel's rule). A guest cannot tag a file it
/// cannot write, such as a host-owned one on a `shift=false` disk.
fn caller_may_write(path: &CString, follow: bool, creds: &Creds) -> io::Result<()> {
    let nofollow = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: valid C string.
    let r = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK,
            libc::AT_EACCESS | nofollow,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let denied = io::Error::last_os_error();
    if creds.has_cap(CAP_DAC_OVERRIDE) {
        // SAFETY: st is written by the kernel; valid C string.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstatat(libc::AT_FDCWD, path.as_ptr(), &mut st, nofollow) } == 0
            && Creds::maps(&creds.uid_map, st.st_uid)
            && Creds::maps(&creds.gid_map, st.st_gid)
        {
            return Ok(());
        }
    }
    Err(denied)
}

fn helper(op: &Op, creds: &Creds, cap: u32) -> io::Result<()> {
    match op {
        Op::Mknod {
            at,
            path,
            mode,
            dev,
        } => {
            enter(at)?;
            become_caller(creds, cap)?;
            // SAFETY: valid C string.
            cvt(unsafe { libc::mknod(path.as_ptr(), *mode as libc::mode_t, *dev) })
        }
        Op::Setxattr {
            at,
            path,
            name,
            value,
            flags,
            follow,
        } => {
            enter(at)?;
            become_caller(creds, cap)?;
            caller_may_write(path, *follow, creds)?;
            let f = if *follow {
                libc::setxattr
            } else {
                libc::lsetxattr
            };
            // SAFETY: valid C strings and a buffer of value.len() bytes.
            cvt(unsafe {
                f(
                    path.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    *flags,
                )
            })
        }
        Op::Fsetxattr {
            file,
            name,
            value,
            flags,
        } => {
            // The O_PATH fd already names the caller's file: reach it through
            // the host's /proc, no namespace to enter.
            let p = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .expect("no NUL in a number");
            become_caller(creds, cap)?;
            caller_may_write(&p, true, creds)?;
            // SAFETY: valid C strings and a buffer of value.len() bytes.
            cvt(unsafe {
                libc::setxattr(
                    p.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    *flags,
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_safe_devices() {
        let chr = libc::S_IFCHR | 0o644;
        let dev = |ma: u32, mi: u32| libc::makedev(ma, mi);
        assert_eq!(decode_dev(dev(1, 3)), (1, 3));
        assert_eq!(decode_dev(dev(5, 300)), (5, 300));
        assert!(mknod_allowed(chr, dev(0, 0)));
        for (ma, mi) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1)] {
            assert!(mknod_allowed(chr, dev(ma, mi)), "{ma}:{mi}");
        }
        // /dev/mem, /dev/kmsg, ptmx, a disk; and block devices at all.
        for (ma, mi) in [(1, 1), (1, 11), (5, 2), (8, 0), (0, 1)] {
            assert!(!mknod_allowed(chr, dev(ma, mi)), "{ma}:{mi}");
        }
        assert!(!mknod_allowed(libc::S_IFBLK | 0o600, dev(0, 0)));
        assert!(!mknod_allowed(libc::S_IFIFO | 0o600, 0));
    }

    #[test]
    fn only_overlay_xattrs() {
        assert!(xattr_allowed(b"trusted.overlay.opaque"));
        assert!(xattr_allowed(b"trusted.overlay.redirect"));
        assert!(!xattr_allowed(b"trusted.overlay."));
        assert!(!xattr_allowed(b"trusted.evil"));
        assert!(!xattr_allowed(b"security.capability"));
        assert!(!xattr_allowed(b"user.overlay.opaque"));
    }

    #[test]
    fn creds_from_status() {
        let status = "Name:\tsh\nUmask:\t0002\nUid:\t1000000\t1000001\t1000002\t1000003\n\
                      Gid:\t1000000\t1000000\t1000000\t1000005\nGroups:\t1000004 1000027 \n\
                      CapEff:\t000001ffffffffff\n";
        let c = Creds::parse(status).unwrap();
        assert_eq!((c.fsuid, c.fsgid, c.umask), (1000003, 1000005, 0o002));
        assert_eq!(c.groups, vec![1000004, 1000027]);
        assert!(c.has_cap(CAP_MKNOD) && c.has_cap(CAP_SYS_ADMIN));
        let none = status.replace("000001ffffffffff", "0000000000000000");
        assert!(!Creds::parse(&none).unwrap().has_cap(CAP_MKNOD));
        assert!(Creds::parse("Name:\tx\n").is_none());
    }

    #[test]
    fn syscall_table_knows_the_native_calls() {
        let i = Interceptor::new(Intercept {
            mknod: true,
            setxattr: true,
        });
        assert!(i.calls.iter().any(|(_, _, c)| *c == Call::Mknodat));
        assert!(i.calls.iter().any(|(_, _, c)| *c == Call::Fsetxattr));
        assert!(Interceptor::new(Intercept::default()).calls.is_empty());
    }
}
