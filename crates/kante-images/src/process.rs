//! Running external tools (tar, unsquashfs, debootstrap, chroot ...) with
//! useful error messages.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::ImageError;

/// First non-empty line of `primary` (else of `fallback`), plus the last line
/// when it differs: tools often print a warning first and the real error last.
pub(crate) fn first_line(primary: &[u8], fallback: &[u8]) -> String {
    for text in [primary, fallback] {
        let text = String::from_utf8_lossy(text);
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if let Some(first) = lines.next() {
            return match lines.next_back() {
                Some(last) if last != first => format!("{first} (… {last})"),
                _ => first.to_string(),
            };
        }
    }
    "no error output".into()
}

fn status_text(status: ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("exit status {c}"),
        None => format!("{status}"),
    }
}

/// Maps a spawn failure: a missing binary gets a hint about the package.
pub(crate) fn spawn_error(tool: &str, package: &str, e: std::io::Error) -> ImageError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ImageError::MissingTool {
            tool: tool.into(),
            hint: format!("install it with `apt-get install {package}`"),
        }
    } else {
        ImageError::io(format!("starting {tool}"), e)
    }
}

/// Makes `cmd`'s child get SIGKILL when the thread spawning it dies (with
/// the daemon, say): an unpack or a pack must not go on writing after a
/// `kill -9` of kanted (audit F7). The signal is tied to the spawning
/// *thread*, so every tool here is waited for on the thread that started it
/// (which therefore outlives it, tokio blocking-pool threads included).
pub(crate) fn dies_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and raise are async-signal-safe; nothing is
    // allocated between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Re-parented already: the parent died before prctl took effect.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        })
    }
}

/// Runs `cmd` to completion, returning stdout; a failure carries stderr's first line.
pub(crate) fn run(cmd: &mut Command, tool: &str, package: &str) -> Result<Vec<u8>, ImageError> {
    let out = dies_with_parent(cmd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(tool, package, e))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(ImageError::tool(
            tool,
            format!(
                "{}: {}",
                status_text(out.status),
                first_line(&out.stderr, &out.stdout)
            ),
        ))
    }
}

/// Collects a child's stderr on a thread (so a chatty child never blocks on a
/// full pipe), keeping at most `limit` bytes.
pub(crate) fn collect_stderr(child: &mut Child, limit: usize) -> JoinHandle<Vec<u8>> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut s) = stderr {
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        kept
    })
}

/// Runs `cmd`, handing every stdout/stderr line to `on_line` as it arrives.
/// On failure the error carries the last lines of output.
pub(crate) fn run_streaming(
    cmd: &mut Command,
    tool: &str,
    package: &str,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let mut child = dies_with_parent(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(tool, package, e))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut line = Vec::new();
            while let Ok(n) = r.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if tx.send(text).is_err() {
                    break;
                }
                line.clear();
            }
        }));
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::new();
    for line in rx {
        on_line(&line);
        if tail.len() == 8 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| ImageError::io(format!("waiting for {tool}"), e))?;
    if status.success() {
        Ok(())
    } else {
        let tail: Vec<String> = tail.into_iter().filter(|l| !l.trim().is_empty()).collect();
        Err(ImageError::tool(
            tool,
            format!("{}: {}", status_text(status), tail.join(" | ")),
        ))
    }
}

/// Kills a child with SIGKILL when its time is up, unless stopped first.
pub(crate) struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<bool>>,
}

impl Watchdog {
    /// Watches `child` for `limit` (`None`: forever, no thread).
    pub(crate) fn start(child: &Child, limit: Option<Duration>) -> Self {
        let Some(limit) = limit else {
            return Watchdog {
                stop: None,
                thread: None,
            };
        };
        let pid = child.id() as libc::pid_t;
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || match rx.recv_timeout(limit) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // SAFETY: plain kill(2). The child is not reaped before
                // `stop` has joined this thread, so `pid` is still that child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                true
            }
            _ => false,
        });
        Watchdog {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops watching; true if the child was killed for its time. Call it
    /// before waiting for the child.
    pub(crate) fn stop(mut self) -> bool {
        self.halt()
    }

    fn halt(&mut self) -> bool {
        drop(self.stop.take());
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(false))
            .unwrap_or(false)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Waits for `child` under `watchdog`: blocks until the child has exited,
/// stops the watchdog while the child is still unreaped (so its pid cannot
/// have been reused), then reaps it. The status, and whether the watchdog
/// killed it.
pub(crate) fn wait_watched(
    child: &mut Child,
    watchdog: Watchdog,
) -> std::io::Result<(ExitStatus, bool)> {
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid writes into it, and
        // WNOWAIT leaves the child unreaped.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            drop(watchdog);
            return Err(e);
        }
    }
    let fired = watchdog.stop();
    Ok((child.wait()?, fired))
}

/// Makes `cmd` run without CAP_MKNOD (dropped from its bounding and
/// inheritable sets before exec, so root's exec cannot regain it): a device
/// entry that reached the tool anyway fails instead of becoming a node.
pub(crate) fn without_mknod(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure makes raw syscalls only (no allocation, no locks)
    // between fork and exec.
    unsafe { cmd.pre_exec(drop_mknod) }
}

const CAP_MKNOD: u32 = 27;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn drop_mknod() -> std::io::Result<()> {
    let bit = 1u32 << CAP_MKNOD;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, CAP_MKNOD as libc::c_ulong, 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        // Without CAP_SETPCAP (not root) there is nothing to regain at exec.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return Err(e);
        }
    }
    let mut h = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset read and write the header and two data structs we own.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        d[0].effective &= !bit;
        d[0].permitted &= !bit;
        d[0].inheritable &= !bit;
        if libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap_field(status: &str, name: &str) -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    }

    #[test]
    fn tools_run_without_cap_mknod() {
        let out = run(
            without_mknod(Command::new("cat").arg("/proc/self/status")),
            "cat",
            "coreutils",
        )
        .unwrap();
        let status = String::from_utf8(out).unwrap();
        let bit = 1u64 << CAP_MKNOD;
        for f in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            assert_eq!(cap_field(&status, f) & bit, 0, "{f}");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(cap_field(&status, "CapBnd:") & bit, 0, "CapBnd");
        }
    }

    #[test]
    fn tools_die_with_the_thread_that_started_them() {
        let pid = std::thread::spawn(|| {
            // Reaped below with waitpid (a Child's own wait would need it here).
            #[allow(clippy::zombie_processes)]
            let child = dies_with_parent(Command::new("sleep").arg("1000"))
                .spawn()
                .unwrap();
            child.id() as i32
        })
        .join()
        .unwrap();
        let mut status = 0;
        // SAFETY: reaping our own child; blocks until it has exited, which
        // only the parent-death signal makes happen before 1000 s.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    }

    #[test]
    fn the_watchdog_kills_only_when_time_is_up() {
        let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
        let wd = Watchdog::start(&child, Some(Duration::ZERO));
        let (status, fired) = wait_watched(&mut child, wd).unwrap();
        assert!(fired);
        assert!(!status.success());
        let mut child = Command::new("true").spawn().unwrap();
        let wd = Watchdog::start(&child, Some(Duration::from_secs(3600)));
        let (status, fired) = wait_watched(&mut child, wd).unwrap();
        assert!(!fired, "done before its time");
        assert!(status.success());
        let none = Watchdog::start(&child, None);
        assert!(!none.stop());
    }
}
