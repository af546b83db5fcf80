//! Readiness after a crash (issue 20): a killed daemon's stale socket is
//! replaced by the next daemon first thing, and `kante wait-ready` returns
//! only once the API answers, as `lxd waitready` does.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kante_integration::{bin, kante, kante_ok, run, Daemon};

#[test]
fn wait_ready_returns_once_a_restarted_daemon_answers() {
    run(async {
        let mut d = Daemon::start().await;
        let sock = d.dir.join("unix.socket");
        let stale = std::fs::metadata(&sock).unwrap().ino();
        d.kill9();
        // What a script waiting for the socket file saw: it is there, and
        // it refuses connections.
        let refused = std::os::unix::net::UnixStream::connect(&sock).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        d.restart_unwaited();
        let started = Instant::now();
        let o = kante(&d, &["wait-ready", "--timeout", "30"]);
        assert!(
            o.status.success(),
            "wait-ready: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            d.log_text()
        );
        assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
        eprintln!("wait-ready returned after {:?}", started.elapsed());
        // It returned because the API answers: the very next request works,
        // through the CLI as through the library, on a new daemon's socket.
        kante_ok(&d, &["list", "--format", "csv"]);
        d.client.get("/1.0").await.unwrap();
        assert_ne!(std::fs::metadata(&sock).unwrap().ino(), stale);
        // Readiness of an answering daemon is immediate.
        kante_ok(&d, &["wait-ready", "--timeout", "1"]);
        d.shutdown().await;
    });
}

#[test]
fn the_socket_is_replaced_before_the_daemon_is_ready() {
    run(async {
        let mut d = Daemon::start().await;
        let sock = d.dir.join("unix.socket");
        // Inode numbers are reused: the change time tells the files apart.
        let id = |m: std::fs::Metadata| (m.ino(), m.ctime(), m.ctime_nsec());
        let stale = id(std::fs::metadata(&sock).unwrap());
        d.restart_unwaited();
        // Once the file is the new daemon's, no connection is refused: a
        // request sent while the daemon may still be opening its state
        // waits in the backlog and gets its answer.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&sock).map(id).ok() == Some(stale) {
            assert!(
                Instant::now() < deadline,
                "the stale socket was never replaced"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let answer = tokio::time::timeout(Duration::from_secs(20), d.client.get("/1.0")).await;
        assert!(matches!(answer, Ok(Ok(_))), "{answer:?}\n{}", d.log_text());
        // The live socket keeps its mode (bound in a private directory).
        let m = std::fs::symlink_metadata(&sock).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o660);
        assert_eq!((m.uid(), m.gid()), (0, 0));
        d.shutdown().await;
    });
}

#[test]
fn wait_ready_without_a_daemon_times_out_with_one_line() {
    let _g = kante_integration::serial();
    let dir = tempfile::tempdir().unwrap();
    // A stale socket (nobody listens) and no socket at all.
    let stale = dir.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    drop(std::os::unix::net::UnixListener::bind(stale.join("unix.socket")).unwrap());
    for kante_dir in [stale, dir.path().join("none")] {
        let started = Instant::now();
        let o = Command::new(bin("kante"))
            .args(["wait-ready", "--timeout", "2"])
            .env("KANTE_DIR", &kante_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let waited = started.elapsed();
        assert!(!o.status.success());
        assert!(o.stdout.is_empty());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
        assert!(
            err.starts_with("Error: Daemon still not ready after 2s"),
            "{err:?}"
        );
        assert!(
            waited >= Duration::from_millis(1800) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
    }
}
