//! Attacks on the daemon itself (audit of 7d20a1f: F8, F10, F11, S4 and
//! unquoted network names), each checked from outside: kanted's threads and
//! fds in /proc, what a guest sees in its own /proc, the socket on disk,
//! what a client is told, what `kante file pull` leaves on the host.
//! Every test here failed against the audited binaries.

use std::collections::BTreeMap;
use std::os::fd::FromRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kante_integration::{
    attack_program, fd_count, free_port, kante, nft_tables_of, proc_status_number, push_executable,
    run, Daemon, PreExec, TestImage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Only ever detects a hang: nothing here should come near it.
const HANG: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {HANG:?} (hung)"))
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

fn dev(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One request through the proxy: "echo:" and what was sent, or an error.
async fn round_trip(port: u16, msg: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(msg.as_bytes()).await?;
    s.shutdown().await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no reply"))??;
    Ok(out)
}

/// F8: 2000 connections to a proxy whose guest service never accepts.
/// On 7d20a1f each cost a blocking thread (1027 threads) and the API
/// slowed to seconds; now kanted stays small and answers throughout.
#[test]
fn a_proxy_flood_does_not_starve_the_daemon() {
    run(async {
        raise_nofile();
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let port = free_port();
        let devices = [(
            "flood".to_string(),
            dev(&[
                ("type", "proxy"),
                ("listen", &format!("tcp:127.0.0.1:{port}")),
                ("connect", "tcp:127.0.0.1:7000"),
            ]),
        )]
        .into_iter()
        .collect();
        d.create_with_devices(&fp, "p1", &[], devices).await;
        d.client.start_instance("p1").await.unwrap();
        d.launch(&fp, "other", &[]).await;
        let prog = attack_program(&d, "listen0");
        push_executable(&d, "p1", &prog, "/root/listen0").await;
        // Returns once the service listens (backlog 0, accepting nothing).
        let (code, out) = d.sh("p1", "/root/listen0 7000 /tmp/go").await;
        assert_eq!(code, 0, "{out}");

        let pid = d.pid();
        let (threads_before, fds_before) =
            (proc_status_number(pid, "Threads"), fd_count(pid) as usize);
        // Sample kanted's threads and fds for as long as the flood lasts.
        let (most_threads, most_fds) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sampler = {
            let (t, f, mut stop) = (most_threads.clone(), most_fds.clone(), stop_rx.clone());
            tokio::spawn(async move {
                while !*stop.borrow() {
                    t.fetch_max(
                        proc_status_number(pid, "Threads") as usize,
                        Ordering::SeqCst,
                    );
                    f.fetch_max(fd_count(pid) as usize, Ordering::SeqCst);
                    let _ = tokio::time::timeout(Duration::from_millis(20), stop.changed()).await;
                }
            })
        };
        // The flood: 2000 clients connect and hold their connections.
        let connected = Arc::new(AtomicUsize::new(0));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..2000 {
            let (n, mut release) = (connected.clone(), stop_rx.clone());
            clients.spawn(async move {
                let c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
                if let Ok(s) = c {
                    n.fetch_add(1, Ordering::SeqCst);
                    let _ = release.wait_for(|r| *r).await;
                    drop(s);
                }
            });
        }
        within("the flood's connects", async {
            while connected.load(Ordering::SeqCst) < 1000 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        // During it, the API and exec into another instance still answer.
        for i in 0..5 {
            within("GET /1.0 during the flood", d.client.get("/1.0"))
                .await
                .unwrap();
            let (code, out) = within(
                "exec during the flood",
                d.sh("other", &format!("echo alive{i}")),
            )
            .await;
            assert_eq!((code, out.trim()), (0, format!("alive{i}").as_str()));
        }
        stop_tx.send(true).unwrap();
        sampler.await.unwrap();
        clients.shutdown().await;
        let (threads, fds) = (
            most_threads.load(Ordering::SeqCst),
            most_fds.load(Ordering::SeqCst),
        );
        eprintln!(
            "kanted during the flood: threads {threads_before} -> at most {threads}, \
             fds {fds_before} -> at most {fds}; {} clients connected",
            connected.load(Ordering::SeqCst)
        );
        assert!(
            threads < 100,
            "kanted grew to {threads} threads during the flood"
        );
        // 256 connections per device, two fds each, plus what it had.
        assert!(fds < fds_before + 2 * 256 + 100, "kanted grew to {fds} fds");

        // Afterwards the same device proxies normally.
        let (code, out) = d.sh("p1", "touch /tmp/go").await;
        assert_eq!(code, 0, "{out}");
        let reply = within("a proxied request after the flood", async {
            loop {
                match round_trip(port, "hello").await {
                    Ok(r) if r == "echo:hello" => return r,
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await;
        assert_eq!(reply, "echo:hello");
        d.shutdown().await;
    });
}

/// The fds of `pid` (>= 3) that are not close-on-exec, with their targets.
fn inheritable_fds(pid: i32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(fd) = name.parse::<i32>() else {
            continue;
        };
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok());
        // A fd closed since the listing has no flags: skip it.
        if fd >= 3 && flags.is_some_and(|f| f & libc::O_CLOEXEC as u32 == 0) {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            out.push(format!("{fd} -> {target}"));
        }
    }
    out
}

/// F11: an fd the launcher leaves open, and the daemon's pidfds of every
/// init, reached every exec'd command (7d20a1f: `dup` of init's pidfd,
/// nothing marked close-on-exec at start). Now the daemon closes what it
/// inherits, and the guest sees neither.
#[test]
fn inherited_fds_and_pidfds_reach_no_guest() {
    run(async {
        // A pipe the "launcher" leaves open, non-CLOEXEC, at fd 200.
        let mut p = [0i32; 2];
        // SAFETY: pipe2 fills the array.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", p[0]))
            .unwrap()
            .ino();
        let leaked = format!("pipe:[{ino}]");
        let read_end = p[0];
        let hook: PreExec = Arc::new(move || {
            // SAFETY: dup2 is async-signal-safe; the copy is not close-on-exec.
            if unsafe { libc::dup2(read_end, 200) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
        let d = Daemon::start_with_pre_exec(&[], Some(hook)).await;
        // The daemon closed what it inherited: it holds no end of the pipe
        // (a launcher waiting for the pipe's end, or a `flock(1)` lock
        // handed down this way, is not held for the daemon's life).
        let held: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|t| t.display().to_string())
            .filter(|t| *t == leaked)
            .collect();
        assert!(held.is_empty(), "kanted still holds the launcher's pipe");
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "b1", &[]).await;
        d.launch(&fp, "b2", &[]).await;

        // What an exec'd command and the guest's init hold.
        for what in ["/proc/self/fd", "/proc/1/fd"] {
            let (code, out) = d.sh("b1", &format!("ls -l {what}/")).await;
            assert_eq!(code, 0, "{out}");
            assert!(
                !out.contains(&leaked),
                "{what} in b1 holds the launcher's pipe:\n{out}"
            );
            assert!(!out.contains("pidfd"), "{what} in b1 holds a pidfd:\n{out}");
        }
        // On the host: every fd of kanted is close-on-exec, and no monitor
        // (kanted's child) got the launcher's pipe.
        let open = inheritable_fds(d.pid());
        assert!(
            open.is_empty(),
            "kanted fds without close-on-exec: {open:?}"
        );
        let dir = d.dir.display().to_string();
        let monitors: Vec<i32> = kante_integration::processes_mentioning(&dir)
            .iter()
            .filter(|p| p.contains("__monitor"))
            .filter_map(|p| p.split_whitespace().next()?.parse().ok())
            .collect();
        assert_eq!(monitors.len(), 2, "one monitor per instance");
        for m in monitors {
            for e in std::fs::read_dir(format!("/proc/{m}/fd"))
                .unwrap()
                .flatten()
            {
                let t = std::fs::read_link(e.path()).unwrap_or_default();
                assert_ne!(
                    t.display().to_string(),
                    leaked,
                    "monitor {m} holds the pipe"
                );
            }
        }
        d.shutdown().await;
        // SAFETY: closing our own pipe.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
    });
}

/// Sends a websocket upgrade for `/1.0/events` by hand; the status and,
/// for a refusal, the body (the connection is closed after it).
async fn raw_events_upgrade(socket: &Path) -> (u16, String) {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    s.write_all(
        b"GET /1.0/events HTTP/1.1\r\nHost: unix.socket\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the headers are complete (an accepted upgrade sends no more).
    let head_end = loop {
        let n = within("the upgrade's answer", s.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0, "connection closed without an answer");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    if status == 101 {
        return (status, String::new());
    }
    within("the refusal's body", s.read_to_end(&mut got))
        .await
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&got[head_end..]).into_owned(),
    )
}

/// F11: idle event websockets took 7d20a1f to RLIMIT_NOFILE and hung the
/// API. Now beyond the cap they are refused (503, LXD's error envelope),
/// the API keeps answering, and closing some frees their slots.
#[test]
fn websockets_beyond_the_cap_are_refused() {
    run(async {
        let d = Daemon::start_with_env(&[("KANTE_MAX_WEBSOCKETS", "8")]).await;
        let socket = d.dir.join("unix.socket");
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(
                within("an event websocket", d.client.events(""))
                    .await
                    .unwrap(),
            );
        }
        for _ in 0..4 {
            let (status, body) = raw_events_upgrade(&socket).await;
            assert_eq!(status, 503, "a websocket beyond the cap was accepted");
            let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error_code"], 503, "{v}");
            assert!(v["error"].as_str().unwrap().contains("limit is 8"), "{v}");
        }
        within("GET /1.0 at the cap", d.client.get("/1.0"))
            .await
            .unwrap();
        // Two clients leave: two new subscribers fit, a third does not.
        held.truncate(6);
        within("slots coming back", async {
            while held.len() < 8 {
                match d.client.events("").await {
                    Ok(s) => held.push(s),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await;
        assert_eq!(raw_events_upgrade(&socket).await.0, 503);
        drop(held);
        d.shutdown().await;
    });
}

/// S4: 7d20a1f bound the API socket in place and chmodded it afterwards,
/// so under `umask 0` it was connectable by anyone (0777) for a moment.
/// inotify on KANTE_DIR sees how it arrives: a socket *created* there was
/// born with the umask's mode; now it only ever arrives by rename, already
/// 0660 root:root.
#[test]
fn the_api_socket_is_never_open_to_others() {
    run(async {
        // SAFETY: plain syscalls on fds this test owns.
        let ino = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(ino >= 0);
        let tmp = std::ffi::CString::new("/tmp").unwrap();
        // SAFETY: as above.
        assert!(unsafe { libc::inotify_add_watch(ino, tmp.as_ptr(), libc::IN_CREATE) } >= 0);
        let mut go = [0i32; 2];
        // SAFETY: pipe2 fills the array.
        assert_eq!(unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (go_r, go_w) = (go[0], go[1]);
        // The daemon waits (before exec) until the watch on its directory
        // is in place: a byte on the pipe, or its end if the watcher died.
        let hook: PreExec = Arc::new(move || {
            let mut b = [0u8; 1];
            // SAFETY: close, read and umask are async-signal-safe.
            unsafe {
                libc::close(go_w);
                libc::read(go_r, b.as_mut_ptr().cast(), 1);
                libc::umask(0);
            }
            Ok(())
        });
        let prefix = format!("kante-test-{}-", std::process::id());
        // SAFETY: the watcher owns the write end from here on.
        let go_w = unsafe { std::os::fd::OwnedFd::from_raw_fd(go_w) };
        let watcher = std::thread::spawn(move || watch_socket_arrival(ino, &prefix, go_w));
        let d = Daemon::start_with_pre_exec(&[], Some(hook)).await;
        let events = watcher.join().unwrap();
        let socket = d.dir.join("unix.socket");
        let m = std::fs::symlink_metadata(&socket).unwrap();
        assert_eq!(
            (m.permissions().mode() & 0o7777, m.uid(), m.gid()),
            (0o660, 0, 0),
            "socket mode and owner"
        );
        assert!(
            !events.contains(&"IN_CREATE unix.socket".to_string()),
            "the socket was created in place under umask 0: {events:?}"
        );
        assert!(
            events.contains(&"IN_MOVED_TO unix.socket".to_string()),
            "{events:?}"
        );
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(go_r);
            libc::close(ino);
        }
        d.shutdown().await;
    });
}

/// Waits for the test daemon's directory under /tmp, watches it, lets the
/// daemon go (a byte on `go`), and returns what happened there until the
/// socket arrived: "IN_CREATE name" / "IN_MOVED_TO name".
fn watch_socket_arrival(ino: i32, prefix: &str, go: std::os::fd::OwnedFd) -> Vec<String> {
    use std::io::Write;
    let mut go = Some(std::fs::File::from(go));
    let mut dir_wd = -1;
    let mut events = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: reading inotify events into our buffer.
        let n = unsafe { libc::read(ino, buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n > 0, "inotify read failed");
        let mut off = 0usize;
        while off < n as usize {
            // SAFETY: the kernel wrote whole events; read the header unaligned.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            let hdr = std::mem::size_of::<libc::inotify_event>();
            let raw = &buf[off + hdr..off + hdr + ev.len as usize];
            let name =
                String::from_utf8_lossy(raw.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
            off += hdr + ev.len as usize;
            if dir_wd < 0 {
                if ev.mask & libc::IN_ISDIR != 0 && name.starts_with(prefix) {
                    let path = std::ffi::CString::new(format!("/tmp/{name}")).unwrap();
                    // SAFETY: adding a watch on the new directory.
                    dir_wd = unsafe {
                        libc::inotify_add_watch(
                            ino,
                            path.as_ptr(),
                            libc::IN_CREATE | libc::IN_MOVED_TO,
                        )
                    };
                    assert!(dir_wd >= 0);
                    // One byte lets the daemon go; our end is closed with it.
                    if let Some(mut g) = go.take() {
                        g.write_all(b"g").unwrap();
                    }
                }
                continue;
            }
            if ev.wd != dir_wd {
                continue;
            }
            let kind = if ev.mask & libc::IN_MOVED_TO != 0 {
                "IN_MOVED_TO"
            } else {
                "IN_CREATE"
            };
            events.push(format!("{kind} {name}"));
            if name == "unix.socket" {
                return events;
            }
        }
    }
}

/// Network names are written into nftables rules (`iifname "<name>"`):
/// one with a quote and a `;` is refused with 400 before anything is made.
#[test]
fn network_names_with_nft_syntax_are_refused() {
    run(async {
        let d = Daemon::start().await;
        let bad = "a\"b;";
        let e = d
            .client
            .post(
                "/1.0/networks",
                &serde_json::json!({"name": bad, "type": "bridge", "config": {}}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains("letters, digits"), "{e}");
        assert!(
            !Path::new("/sys/class/net").join(bad).exists(),
            "a bridge was made"
        );
        assert!(
            nft_tables_of(&d.cgroup_prefix()).is_empty(),
            "an nft table was made"
        );
        let nets: Vec<serde_json::Value> = d
            .client
            .get_json("/1.0/networks?recursion=1")
            .await
            .unwrap();
        assert!(nets.iter().all(|n| n["name"] != bad), "{nets:?}");
        // The CLI says so in one line.
        let o = kante(&d, &["network", "create", bad]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("Error: ") && err.trim_end().lines().count() == 1,
            "{err}"
        );
        d.shutdown().await;
    });
}

/// F10: `kante file pull` gave the admin a setuid-root copy of a guest's
/// program and recreated guest symlinks to the host's /etc.
#[test]
fn file_pull_masks_special_bits_and_keeps_links_inside() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "b1", &[]).await;
        let (code, out) = d
            .sh(
                "b1",
                "cp /bin/busybox /root/tool && chmod 6755 /root/tool \
                 && mkdir -p /root/tree/sub/deep && echo hi > /root/tree/ok \
                 && chmod 1777 /root/tree/sub \
                 && ln -s /etc /root/tree/etc-link && ln -s ../../.. /root/tree/up \
                 && ln -s ../../../../etc /root/tree/sub/deep/out \
                 && ln -s ../ok /root/tree/sub/fine && ln -s ../../ok /root/tree/sub/deep/fine2 \
                 && ln -s /root/tree/ok /root/tree/abs-in",
            )
            .await;
        assert_eq!(code, 0, "{out}");
        let host = tempfile::tempdir().unwrap();
        let tool = host.path().join("tool");
        let o = kante(
            &d,
            &["file", "pull", "b1/root/tool", tool.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mode = std::fs::metadata(&tool).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "pulled tool mode {mode:o}");

        let o = kante(
            &d,
            &[
                "file",
                "pull",
                "-r",
                "b1/root/tree",
                host.path().to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        let tree = host.path().join("tree");
        for escaping in ["etc-link", "up", "sub/deep/out"] {
            assert!(
                std::fs::symlink_metadata(tree.join(escaping)).is_err(),
                "{escaping} was recreated on the host"
            );
            assert!(err.contains(escaping), "no warning for {escaping}: {err}");
        }
        assert_eq!(
            err.lines().count(),
            3,
            "one warning line per skipped link: {err}"
        );
        // Links that stay inside the tree are kept, and lead where they did.
        assert_eq!(
            std::fs::read_link(tree.join("sub/fine")).unwrap(),
            Path::new("../ok")
        );
        assert_eq!(
            std::fs::read_to_string(tree.join("sub/deep/fine2")).unwrap(),
            "hi\n"
        );
        // An absolute link into the tree comes back relative.
        assert_eq!(
            std::fs::read_link(tree.join("abs-in")).unwrap(),
            Path::new("ok")
        );
        let sub = std::fs::metadata(tree.join("sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            sub & 0o7777,
            0o777,
            "sticky bit kept on a directory: {sub:o}"
        );
        d.shutdown().await;
    });
}
