//! The rsync processes of LXD's transfer (the engine's
//! `migration/rsync.rs` carries their bytes over the migration's
//! websocket): the receiver, `rsync --server` into a directory with the
//! arguments LXD 5.0 gives it, and the sender, the rsync client towards
//! `localhost:` whose remote shell (`-e`) is a `sh` with two `cat`s that
//! join the client's pipes to two descriptors of the caller (fd 3: the
//! peer's bytes in, fd 4: the client's bytes out). Both die with the
//! daemon.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The rsync options a feature list stands for (LXD's `rsyncFeatureArgs`).
pub fn feature_args(features: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    if features.contains(&"xattrs") {
        args.push("--xattrs".into());
        args.push("--filter=-x security.selinux".into());
    }
    if features.contains(&"delete") {
        args.push("--delete".into());
    }
    if features.contains(&"compress") {
        args.push("--compress".into());
        args.push("--compress-level=2".into());
    }
    args
}

fn with_slash(dir: &Path) -> String {
    let mut s = dir.display().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

/// `rsync --server` receiving into `dir` (LXD's `rsync.Recv`): its stdin,
/// stdout and stderr piped.
pub fn receiver(dir: &Path, features: &[&str]) -> std::io::Result<Child> {
    let mut cmd = Command::new("rsync");
    cmd.args([
        "--server",
        "-vlogDtpre.iLsfx",
        "--numeric-ids",
        "--devices",
        "--partial",
        "--sparse",
    ])
    .args(feature_args(features))
    .arg(".")
    .arg(with_slash(dir))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    crate::dies_with_daemon(&mut cmd);
    cmd.spawn()
}

/// The rsync client sending `dir` (LXD's `rsync.Send`): the peer's bytes
/// come in on `from_peer`, the client's go out on `to_peer`; its stderr
/// piped. The descriptors are the child's alone once it runs.
pub fn sender(
    dir: &Path,
    features: &[&str],
    from_peer: OwnedFd,
    to_peer: OwnedFd,
) -> std::io::Result<Child> {
    let (fd_in, fd_out) = (from_peer.as_raw_fd(), to_peer.as_raw_fd());
    let mut cmd = Command::new("rsync");
    cmd.args(["-ar", "--devices", "--numeric-ids", "--partial", "--sparse"])
        .args(feature_args(features))
        .arg(with_slash(dir))
        .arg("localhost:/kante")
        .arg("-e")
        // fd 3: the peer's bytes; fd 4: to the peer. The shell's own
        // process ends with the peer's direction (rsync waits for it before
        // it closes its socket); the background cat carries rsync's output
        // (its stdin saved as fd 5: a background job's is /dev/null) and
        // ends when rsync does.
        .arg("sh -c 'exec 5<&0; cat <&5 >&4 3<&- & exec cat <&3 4>&- 5<&-'")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::dies_with_daemon(&mut cmd);
    // SAFETY: only dup2 (async-signal-safe) between fork and exec; dup2
    // clears close-on-exec on the copies.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(fd_in, 3), (fd_out, 4)] {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    // The child's ends live only in the child now.
    drop((from_peer, to_peer));
    child
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_become_lxds_arguments() {
        assert_eq!(
            feature_args(&["xattrs", "delete"]),
            ["--xattrs", "--filter=-x security.selinux", "--delete"]
        );
        assert!(feature_args(&["bidirectional"]).is_empty());
        assert_eq!(with_slash(Path::new("/a/b")), "/a/b/");
        assert_eq!(with_slash(Path::new("/a/b/")), "/a/b/");
    }
}
