//! The container's /dev/console: a pty on the host whose slave the monitor
//! keeps open (so agetty never sees a hang-up) and whose output it logs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};

pub struct ConsolePty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_path: PathBuf,
}

/// Opens a host pty pair; `owner` (host uid, host gid of the container's
/// root) makes the slave belong to the container's root and tty group.
pub fn open_console(owner: Option<(u32, u32)>) -> io::Result<ConsolePty> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let slave_path = PathBuf::from(ptsname_r(&master)?);
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&slave_path)?;
    if let Some((uid, gid)) = owner {
        // gid 5 is "tty" in Debian's base-passwd.
        std::os::unix::fs::chown(&slave_path, Some(uid), Some(gid + 5))?;
    }
    let master: OwnedFd = master.into();
    Ok(ConsolePty {
        master,
        slave: slave.into(),
        slave_path,
    })
}

use std::os::unix::fs::OpenOptionsExt;

/// Append-only console log with a size cap: when full, the current file
/// becomes `<name>.1` and a new one starts, so at most twice the cap is kept.
pub struct ConsoleLog {
    path: PathBuf,
    file: File,
    written: u64,
    limit: u64,
}

impl ConsoleLog {
    pub fn open(path: &Path, limit: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(ConsoleLog {
            path: path.to_path_buf(),
            file,
            written,
            limit,
        })
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.limit > 0 && self.written + data.len() as u64 > self.limit {
            let old = rotated_path(&self.path);
            fs::rename(&self.path, &old)?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.written = 0;
        }
        self.file.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }
}

pub fn rotated_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// The whole retained console log (older part first).
pub fn read_log(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = fs::read(rotated_path(path)).unwrap_or_default();
    match fs::read(path) {
        Ok(mut cur) => out.append(&mut cur),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_at_the_cap_and_reads_back_in_order() {
        let dir = std::env::temp_dir().join(format!("console-log-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("console.log");
        let mut log = ConsoleLog::open(&p, 10).unwrap();
        log.write(b"0123456").unwrap();
        log.write(b"789abc").unwrap();
        log.write(b"def").unwrap();
        assert_eq!(read_log(&p).unwrap(), b"0123456789abcdef");
        assert_eq!(fs::read(&p).unwrap(), b"789abcdef");
        fs::remove_dir_all(&dir).unwrap();
    }
}
