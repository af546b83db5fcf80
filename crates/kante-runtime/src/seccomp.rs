//! The seccomp policy every container gets: what LXC/LXD deny by default.
//!
//! The filter is compiled once with libseccomp into classic BPF and then
//! loaded with a bare prctl, so it can also be installed in a forked child of
//! the multi-threaded daemon (exec) where nothing may allocate.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use std::os::fd::RawFd;

use thiserror::Error;

use crate::spec::Intercept;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("seccomp: {0}")]
    Lib(#[from] libseccomp::error::SeccompError),
    #[error("seccomp: {0}")]
    Io(#[from] std::io::Error),
}

/// Syscalls denied with ENOSYS, as LXD's default policy does.
const DENIED: &[&str] = &[
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
];

/// A compiled filter ready to be loaded.
#[derive(Debug, Clone)]
pub struct Program {
    filter: Vec<libc::sock_filter>,
}

impl Program {
    /// Builds the default policy for the native architecture plus its compat
    /// architectures (so 32-bit syscalls cannot route around it).
    pub fn default_policy() -> Result<Self, SeccompError> {
        Self::policy(Intercept::default())
    }

    /// The default policy plus user-notification rules for the intercepted
    /// syscalls: mknod/mknodat of character devices only (everything else
    /// goes to the kernel untouched), and every setxattr variant (the
    /// monitor lets those it does not handle continue).
    pub fn policy(intercept: Intercept) -> Result<Self, SeccompError> {
        let mut ctx = ScmpFilterContext::new(ScmpAction::Allow)?;
        // libseccomp sets no_new_privs by default; system containers need setuid binaries.
        ctx.set_ctl_nnp(false)?;
        let native = ScmpArch::native();
        if native == ScmpArch::X8664 {
            for a in [ScmpArch::X86, ScmpArch::X32] {
                let _ = ctx.add_arch(a);
            }
        }
        for name in DENIED {
            if let Ok(sc) = ScmpSyscall::from_name(name) {
                ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), sc)?;
            }
        }
        // umount2(.., MNT_FORCE) could pull mounts out from under the host.
        let umount2 = ScmpSyscall::from_name("umount2")?;
        ctx.add_rule_conditional(
            ScmpAction::Errno(libc::EACCES),
            umount2,
            &[ScmpArgCompare::new(
                1,
                ScmpCompareOp::MaskedEqual(libc::MNT_FORCE as u64),
                libc::MNT_FORCE as u64,
            )],
        )?;
        let chr = |arg: u32| {
            ScmpArgCompare::new(
                arg,
                ScmpCompareOp::MaskedEqual(libc::S_IFMT as u64),
                libc::S_IFCHR as u64,
            )
        };
        if intercept.mknod {
            for (name, mode_arg) in [("mknod", 1), ("mknodat", 2)] {
                if let Ok(sc) = ScmpSyscall::from_name(name) {
                    ctx.add_rule_conditional(ScmpAction::Notify, sc, &[chr(mode_arg)])?;
                }
            }
        }
        if intercept.setxattr {
            for name in ["setxattr", "lsetxattr", "fsetxattr"] {
                if let Ok(sc) = ScmpSyscall::from_name(name) {
                    ctx.add_rule(ScmpAction::Notify, sc)?;
                }
            }
        }
        // libseccomp 2.5 (Debian 12) exports only to an fd: go through a memfd.
        let memfd =
            nix::sys::memfd::memfd_create(c"kante-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map_err(std::io::Error::from)?;
        let mut file = std::fs::File::from(memfd);
        ctx.export_bpf(&file)?;
        let mut bpf = Vec::new();
        use std::io::{Read, Seek};
        file.seek(std::io::SeekFrom::Start(0))?;
        file.read_to_end(&mut bpf)?;
        let filter = bpf
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Program { filter })
    }

    pub fn len(&self) -> usize {
        self.filter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// Installs the filter on the calling thread. Async-signal-safe: no allocation.
    /// Needs CAP_SYS_ADMIN in the caller's user namespace (we never set no_new_privs).
    pub fn load(&self) -> std::io::Result<()> {
        let prog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr() as *mut _,
        };
        // SAFETY: prog points at a filter that outlives the call.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const _,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Installs the filter and returns its user-notification listener
    /// (close-on-exec). Async-signal-safe, like [`Program::load`].
    pub fn load_with_listener(&self) -> std::io::Result<RawFd> {
        const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
        const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
        let prog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr() as *mut _,
        };
        // SAFETY: prog points at a filter that outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &prog as *const libc::sock_fprog,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd as RawFd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_to_a_nonempty_program() {
        let p = Program::default_policy().unwrap();
        assert!(p.len() > 10, "{}", p.len());
    }

    #[test]
    fn denies_in_a_child_process() {
        let p = Program::default_policy().unwrap();
        // SAFETY: the child only makes raw syscalls and exits.
        match unsafe { libc::fork() } {
            0 => {
                if p.load().is_err() {
                    // Not permitted without CAP_SYS_ADMIN when not root: nothing to check.
                    // SAFETY: leaving the forked test child.
                    unsafe { libc::_exit(3) };
                }
                // SAFETY: a syscall the filter must refuse; valid C string.
                let r = unsafe { libc::syscall(libc::SYS_delete_module, c"x".as_ptr(), 0) };
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                // SAFETY: leaving the forked test child.
                unsafe {
                    libc::_exit(if r == -1 && errno == libc::ENOSYS {
                        0
                    } else {
                        1
                    })
                };
            }
            pid => {
                let mut status = 0;
                // SAFETY: reaping our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                let code = libc::WEXITSTATUS(status);
                assert!(
                    code == 0 || code == 3,
                    "delete_module was not denied with ENOSYS (code {code})"
                );
            }
        }
    }
}
