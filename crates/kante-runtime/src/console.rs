//! The container's /dev/console: a pty on the host whose slave the monitor
//! keeps open (so agetty never sees a hang-up) and whose output it logs.
//!
//! Attaching ([`attach`], `console.sock` in the runtime directory): the
//! monitor stays the console's only reader, so the log keeps everything
//! while someone is attached. It hands each client (root only) the pty
//! master by SCM_RIGHTS, for input and window size, and copies every byte
//! of output to it after the log ([`ConsoleHub`]). Because the socket
//! belongs to the monitor, attaching works the same after a restart of
//! `kanted`; the stream ends when init does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::notify;
use crate::pty::PtyMaster;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};

/// The host pty behind a container's /dev/console.
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
    /// Opens (appending) the log at `path`, rotating at `limit` bytes (0: never).
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

    /// Appends `data`, rotating first when it would pass the cap.
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

/// Where the log's older half goes when it rotates (`<name>.1`).
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

/// The monitor's console socket in a container's runtime directory.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("console.sock")
}

/// Output kept for a client that reads slowly; past it the client is dropped
/// (the log still has everything).
const CLIENT_BACKLOG: usize = 1 << 20;

struct Attached {
    sock: UnixStream,
    /// Output not yet written to it.
    pending: Vec<u8>,
}

impl Attached {
    /// Writes what it can; false once the client is gone or too far behind.
    fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match (&self.sock).write(&self.pending) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.pending.len() <= CLIENT_BACKLOG
    }
}

/// The monitor's side of attaching: the listening socket and the clients
/// attached to the console (see the module's doc).
pub struct ConsoleHub {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Attached>,
}

impl ConsoleHub {
    /// Binds `console.sock` in `runtime_dir` (mode 0600, non-blocking).
    pub fn bind(runtime_dir: &Path) -> io::Result<ConsoleHub> {
        use std::os::unix::fs::PermissionsExt;
        let path = socket_path(runtime_dir);
        let _ = fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ConsoleHub {
            listener,
            path,
            clients: Vec::new(),
        })
    }

    /// The listening socket, to poll for readability.
    pub fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Each client's socket, and whether output waits for it to be writable.
    pub fn clients(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        self.clients
            .iter()
            .map(|c| (c.sock.as_fd(), !c.pending.is_empty()))
            .collect()
    }

    /// Accepts the waiting connections of root and hands each the pty master.
    pub fn accept(&mut self, master: BorrowedFd<'_>) {
        while let Ok((sock, _)) = self.listener.accept() {
            let fd = OwnedFd::from(sock);
            if notify::peer_uid(&fd).ok() != Some(0) {
                continue;
            }
            if notify::send_fd(fd.as_raw_fd(), master.as_raw_fd()).is_err() {
                continue;
            }
            let sock = UnixStream::from(fd);
            if sock.set_nonblocking(true).is_ok() {
                self.clients.push(Attached {
                    sock,
                    pending: Vec::new(),
                });
            }
        }
    }

    /// Copies console output to every client.
    pub fn broadcast(&mut self, data: &[u8]) {
        self.clients.retain_mut(|c| {
            c.pending.extend_from_slice(data);
            c.flush()
        });
    }

    /// Handles the clients' poll results (in the order of [`Self::clients`]):
    /// a hang-up or end of stream detaches one, writability flushes it.
    pub fn service(&mut self, ready: &[(bool, bool)]) {
        let mut k = 0;
        self.clients.retain_mut(|c| {
            let (readable, writable) = ready.get(k).copied().unwrap_or((false, false));
            k += 1;
            if readable {
                // Clients send nothing: data is discarded, EOF or an error detaches.
                let mut buf = [0u8; 256];
                match (&c.sock).read(&mut buf) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
            }
            !writable || c.flush()
        });
    }
}

impl Drop for ConsoleHub {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The daemon's side of an attached console: output as the monitor copies
/// it (end of stream when the container stops), and the pty master for
/// input and the window size.
pub struct ConsoleSession {
    /// Console output.
    pub output: UnixStream,
    /// The console's pty master: write input here, resize it.
    pub master: PtyMaster,
}

/// Attaches to the console of the container whose monitor serves
/// `runtime_dir`.
pub fn attach(runtime_dir: &Path) -> io::Result<ConsoleSession> {
    let output = UnixStream::connect(socket_path(runtime_dir)).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                e.kind(),
                "this instance's monitor serves no console (it was started by an older kanted); restart the instance",
            )
        } else {
            e
        }
    })?;
    let master = notify::recv_fd(output.as_raw_fd())?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the monitor closed the console (the instance is stopping)",
        )
    })?;
    Ok(ConsoleSession {
        output,
        master: PtyMaster::from_fd(master),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attach gets the master (keys reach the slave, the size is set on
    /// it) and the output broadcast after it; a client that hangs up is
    /// dropped. The monitor answers root only, so this needs root.
    #[test]
    fn attached_clients_get_output_and_the_master() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the console socket answers root only");
            return;
        }
        let dir = std::env::temp_dir().join(format!("console-hub-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut hub = ConsoleHub::bind(&dir).unwrap();
        let (master, slave) = PtyMaster::open_host_pair(80, 25).unwrap();
        let d2 = dir.clone();
        let client = std::thread::spawn(move || attach(&d2).unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while hub.clients().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no client attached");
            hub.accept(master.as_fd());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut session = client.join().unwrap();
        hub.broadcast(b"login: ");
        let mut got = [0u8; 7];
        session.output.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"login: ");
        session.master.resize(120, 40).unwrap();
        assert_eq!(crate::pty::window_size(slave.as_fd()).unwrap(), (120, 40));
        (&session.master).write_all(b"root\n").unwrap();
        let mut line = [0u8; 5];
        File::from(slave.try_clone().unwrap())
            .read_exact(&mut line)
            .unwrap();
        assert_eq!(&line, b"root\n");
        drop(session);
        while !hub.clients().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the client stayed");
            hub.service(&[(true, false)]);
        }
        drop(hub);
        assert!(!socket_path(&dir).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

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
