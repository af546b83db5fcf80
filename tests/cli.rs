//! The `kante` command line against a real daemon: the README's flows,
//! an interactive shell on a real pty, and one-line errors.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kante_integration::{bin, kante, kante_fails as fails, kante_ok as ok, run, Daemon, TestImage};

#[test]
fn readme_flow_with_busybox() {
    run(async {
        let d = Daemon::start().await;
        let img = TestImage::Busybox.path();
        ok(
            &d,
            &[
                "image",
                "import",
                img.to_str().unwrap(),
                "--alias",
                "busybox",
            ],
        );
        let out = ok(&d, &["image", "list"]);
        assert!(
            out.contains("busybox") && out.contains("CONTAINER"),
            "{out}"
        );

        let out = ok(&d, &["launch", "busybox", "c1"]);
        assert!(
            out.contains("Creating c1") && out.contains("Starting c1"),
            "{out}"
        );
        let out = ok(&d, &["list"]);
        let row = out
            .lines()
            .find(|l| l.contains("| c1 "))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            row.contains("RUNNING") && row.contains("CONTAINER"),
            "{row}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&ok(&d, &["list", "--format", "json"])).unwrap();
        assert_eq!(json[0]["name"], "c1");
        assert_eq!(json[0]["status"], "Running");
        let csv = ok(&d, &["list", "--format", "csv", "-c", "ns"]);
        assert_eq!(csv.trim(), "c1,RUNNING");

        // exec: exit code and streams pass through.
        let o = kante(
            &d,
            &[
                "exec",
                "c1",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 7",
            ],
        );
        assert_eq!(o.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
        assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");

        // file push / pull round trip, pull to stdout.
        let local = std::env::temp_dir().join(format!("kante-cli-push-{}", std::process::id()));
        std::fs::write(&local, b"pushed bytes\n").unwrap();
        ok(&d, &["file", "push", local.to_str().unwrap(), "c1/root/x"]);
        std::fs::remove_file(&local).unwrap();
        assert_eq!(
            ok(&d, &["file", "pull", "c1/root/x", "-"]),
            "pushed bytes\n"
        );
        assert_eq!(
            ok(&d, &["file", "pull", "c1/etc/hostname", "-"]).trim(),
            "c1"
        );
        let e = fails(&d, &["file", "pull", "c1/../../etc/shadow", "-"]);
        assert!(e.contains("escapes"), "{e}");

        // lifecycle verbs.
        ok(&d, &["stop", "c1"]);
        ok(&d, &["start", "c1"]);
        ok(&d, &["restart", "c1"]);
        ok(&d, &["pause", "c1"]);
        assert!(ok(&d, &["list", "-c", "ns", "--format", "csv"]).contains("FROZEN"));
        ok(&d, &["start", "c1"]);
        let info = ok(&d, &["info", "c1"]);
        assert!(
            info.contains("Name: c1") && info.contains("Status: RUNNING"),
            "{info}"
        );

        // Errors: one line, non-zero.
        let e = fails(&d, &["delete", "c1"]);
        assert!(e.contains("running"), "{e}");
        fails(&d, &["launch", "busybox", "1bad"]);
        fails(&d, &["launch", "no-such-image", "c2"]);
        fails(&d, &["info", "nope"]);
        let e = fails(&d, &["launch", "busybox", "c3", "-c", "no.such.key=1"]);
        assert!(e.contains("no.such.key"), "{e}");
        assert!(
            !ok(&d, &["list"]).contains("c3"),
            "a refused create left an instance"
        );

        ok(&d, &["delete", "-f", "c1"]);
        assert!(!ok(&d, &["list"]).contains("c1"));
        d.shutdown().await;
    });
}

/// Reads from the pty master until `needle` shows up (or times out).
fn read_until(master: &mut std::fs::File, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on our fd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
            if seen.contains(needle) {
                return seen;
            }
        }
    }
    panic!("did not see {needle:?} within {timeout:?}; got {seen:?}");
}

#[test]
fn interactive_exec_has_a_real_terminal() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;

        let pty = nix::pty::openpty(
            Some(&nix::pty::Winsize {
                ws_row: 33,
                ws_col: 101,
                ws_xpixel: 0,
                ws_ypixel: 0,
            }),
            None,
        )
        .unwrap();
        let slave: OwnedFd = pty.slave;
        let mut master = std::fs::File::from(pty.master);
        let mut child = Command::new(bin("kante"));
        child
            .args(["exec", "c1", "--", "sh"])
            .env("KANTE_DIR", &d.dir)
            .env("TERM", "xterm")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // Like a shell would: kante leads a session whose controlling terminal
        // is the pty, so resizes (SIGWINCH) and Ctrl-C reach it as in real use.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            child.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let mut child = child.spawn().unwrap();
        master
            .write_all(b"tty; stty size; echo $((6*7))\n")
            .unwrap();
        let out = read_until(&mut master, "42", Duration::from_secs(10));
        assert!(out.contains("/dev/pts/"), "not a terminal inside: {out:?}");
        assert!(out.contains("33 101"), "window size not passed: {out:?}");

        // A resize of the local terminal reaches the remote one.
        let ws = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: ioctl on our pty master; the kernel sends SIGWINCH to kante.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        tokio::time::sleep(Duration::from_millis(300)).await;
        master.write_all(b"stty size\n").unwrap();
        read_until(&mut master, "40 120", Duration::from_secs(10));

        // Ctrl-C interrupts the remote foreground job, not kante.
        // (Needles are computed by the shell so the terminal's echo of the
        // typed command cannot match them.)
        master
            .write_all(b"sleep 30; echo slept-$((40+2))\n")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        master.write_all(b"\x03").unwrap();
        master.write_all(b"echo after-$((6*7))\n").unwrap();
        let out = read_until(&mut master, "after-42", Duration::from_secs(10));
        assert!(
            t.elapsed() < Duration::from_secs(10) && !out.contains("slept-42"),
            "{out:?}"
        );

        master.write_all(b"exit 5\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "kante exec did not end");
            let mut buf = [0u8; 1024];
            let mut pfd = libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on our fd.
            if unsafe { libc::poll(&mut pfd, 1, 50) } > 0 {
                let _ = master.read(&mut buf);
            }
        };
        assert_eq!(status.code(), Some(5));
        d.shutdown().await;
    });
}

#[test]
fn launch_wait_reports_a_running_debian() {
    run(async {
        let d = Daemon::start().await;
        let img = TestImage::Debian.path();
        ok(
            &d,
            &[
                "image",
                "import",
                img.to_str().unwrap(),
                "--alias",
                "debian/12",
            ],
        );
        let t = Instant::now();
        ok(&d, &["launch", "debian/12", "c1", "--wait"]);
        eprintln!("kante launch --wait: {:?}", t.elapsed());
        assert_eq!(
            ok(&d, &["exec", "c1", "--", "systemctl", "is-system-running"]).trim(),
            "running"
        );
        let out = ok(&d, &["console", "c1", "--show-log"]);
        assert!(
            out.contains("Reached target") || out.contains("Started"),
            "console log: {out}"
        );
        ok(&d, &["delete", "-f", "c1"]);
        d.shutdown().await;
    });
}
