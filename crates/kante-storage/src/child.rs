//! Helpers the daemon runs for long work (`cp`, `btrfs`, `rsync`, …) die
//! with it: a `kill -9` of kanted must not leave a copy writing into a
//! staging directory that the next daemon is about to remove (audit F7).
//!
//! `PR_SET_PDEATHSIG` is tied to the *thread* that forked the child, not to
//! the process: the signal comes when that thread exits. Every helper here
//! is run by a thread that then waits for it (`Command::output`/`status`,
//! or `spawn` followed by `wait` on the same thread), so the thread outlives
//! the child by construction, tokio blocking-pool threads included (a pool
//! thread only exits once idle, and it is busy waiting until the child is
//! gone). A helper meant to outlive the call that started it must not use
//! this: it would be killed when that thread went idle and exited.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd`'s child get SIGKILL when the thread spawning it (and so the
/// daemon) dies; a daemon already gone by the time the child runs kills it
/// at once.
pub fn dies_with_daemon(cmd: &mut Command) -> &mut Command {
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
            // The parent may have died between fork and prctl: then we were
            // re-parented already, and no signal will ever come.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Whether `pid` has exited (a zombie or gone).
    fn exited(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => s
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    fn wait_exited(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if exited(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_child_dies_with_the_thread_that_spawned_it() {
        // The spawning thread returns without waiting: its exit is what the
        // kernel reports to the child (as the daemon's death would).
        let pid = std::thread::spawn(|| {
            // Reaped below with waitpid (a Child's own wait would need it here).
            #[allow(clippy::zombie_processes)]
            let child = dies_with_daemon(Command::new("sleep").arg("1000"))
                .spawn()
                .unwrap();
            child.id() as i32
        })
        .join()
        .unwrap();
        assert!(wait_exited(pid), "sleep {pid} outlived its parent thread");
        let mut status = 0;
        // SAFETY: reaping our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    }
}
