//! Minimal extended-attribute access (no symlink following).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(io::Error::other)
}

/// Value of xattr `name` on `path` itself (not its symlink target).
pub fn get(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let n = cstr(name.as_bytes())?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings; buf is writable for buf.len() bytes.
        let rc =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if rc >= 0 {
            buf.truncate(rc as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 16 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return Err(err);
    }
}

/// True if `path` carries xattr `name`.
pub fn has(path: &Path, name: &str) -> bool {
    get(path, name).is_ok()
}

/// Sets xattr `name` on `path` itself.
pub fn set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let n = cstr(name.as_bytes())?;
    // SAFETY: valid C strings; value is readable for value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
