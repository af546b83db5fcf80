//! Hostile guests that race or flood the daemon (issue 20): root inside a
//! container swaps a directory for a symlink to a host path while files
//! are pushed and pulled through it; floods its monitor with intercepted
//! syscalls; exhausts its memory while the daemon execs into it. Checked
//! from outside: no host file is written or read, the daemon and the
//! instance's monitor keep answering, and their fds and threads come back.

use std::time::{Duration, Instant};

use kante_integration::{fd_count, proc_status_number, run, Daemon, TestImage};

/// `GET /1.0` answers within a few seconds (a hang is the failure).
async fn answers(d: &Daemon, what: &str) {
    let t = tokio::time::timeout(Duration::from_secs(10), d.client.get("/1.0")).await;
    assert!(
        matches!(t, Ok(Ok(_))),
        "the daemon stopped answering {what}"
    );
}

/// The pid of `name`'s monitor (`kanted __monitor SPEC`, the spec under
/// the daemon's directory, in a directory named after the instance).
fn monitor_pid(d: &Daemon, name: &str) -> Option<i32> {
    let dir = d.dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let monitor = args.iter().any(|a| a == "__monitor");
        let ours = args
            .iter()
            .any(|a| a.starts_with(&dir) && a.contains(&format!("/{name}/")));
        (monitor && ours).then_some(pid)
    })
}

#[test]
fn a_symlink_swapped_during_transfers_never_reaches_the_host() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "swap", &[]).await;
        let host = std::path::PathBuf::from(format!("/tmp/kante-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&host);
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("secret"), "HOST-SECRET\n").unwrap();
        // The guest flips /root/d between its own directory (holding a
        // `secret` of its own) and a link to the host directory's path, as
        // fast as it can, for the whole test.
        let (code, out) = d
            .sh(
                "swap",
                &format!(
                    "mkdir -p /root/real && echo guest > /root/real/secret && \
                     (while true; do ln -sfn {} /root/d; rm -f /root/d; ln -sfn /root/real /root/d; \
                      rm -f /root/d; mkdir -p /root/d; echo guest > /root/d/secret; rm -rf /root/d; done) \
                     >/dev/null 2>&1 & echo started",
                    host.display()
                ),
            )
            .await;
        assert_eq!((code, out.trim()), (0, "started"), "{out}");
        let t0 = Instant::now();
        let (mut pushed, mut pulled) = (0, 0);
        for i in 0..300 {
            let name = format!("/root/d/pushed{}", i % 7);
            if d.client
                .file_push_bytes("swap", &name, "from-host\n", &Default::default())
                .await
                .is_ok()
            {
                pushed += 1;
            }
            if let Ok(got) = d.client.file_get("swap", "/root/d/secret").await {
                if let kante_client::FileContent::File(data) = got.content {
                    assert_ne!(
                        String::from_utf8_lossy(&data).trim(),
                        "HOST-SECRET",
                        "a pull through the swapped link read the host's file"
                    );
                    pulled += 1;
                }
            }
        }
        eprintln!(
            "{pushed} pushes and {pulled} pulls went through in {:?}",
            t0.elapsed()
        );
        // Some went through (the race was real), and the host directory
        // holds only what the test put there.
        assert!(pushed + pulled > 0, "no transfer ever went through");
        let mut left: Vec<String> = std::fs::read_dir(&host)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["secret"], "the daemon wrote into the host dir");
        assert_eq!(
            std::fs::read_to_string(host.join("secret")).unwrap(),
            "HOST-SECRET\n"
        );
        answers(&d, "after the race").await;
        std::fs::remove_dir_all(&host).unwrap();
        d.shutdown().await;
    });
}

#[test]
fn a_flood_of_intercepted_syscalls_stalls_neither_the_monitor_nor_the_daemon() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(
            &fp,
            "flood",
            &[("security.syscalls.intercept.mknod", "true")],
        )
        .await;
        d.launch(&fp, "calm", &[]).await;
        let monitor = monitor_pid(&d, "flood").expect("the monitor of flood");
        // One device the monitor makes on the guest's behalf, to know the
        // interception is on.
        let (code, out) = d
            .sh("flood", "mknod /tmp/probe c 1 3 && ls -l /tmp/probe")
            .await;
        assert_eq!(code, 0, "intercepted mknod failed: {out}");
        let (fds0, threads0) = (fd_count(monitor), proc_status_number(monitor, "Threads"));
        // Four loops of mknod, each call a notification the monitor answers.
        let (code, out) = d
            .sh(
                "flood",
                "for j in 1 2 3 4; do (while true; do mknod /tmp/n$j c 1 3; rm -f /tmp/n$j; done) \
                 >/dev/null 2>&1 & done; echo started",
            )
            .await;
        assert_eq!((code, out.trim()), (0, "started"), "{out}");
        let until = Instant::now() + Duration::from_secs(8);
        let mut rounds = 0;
        while Instant::now() < until {
            answers(&d, "during the flood").await;
            let o = tokio::time::timeout(
                Duration::from_secs(20),
                d.client.exec_capture("calm", &["echo", "ok"], &[], None),
            )
            .await
            .expect("exec into another instance hung during the flood")
            .unwrap();
            assert_eq!(o.stdout_str().trim(), "ok");
            // The flooding guest itself is still served.
            let o = tokio::time::timeout(
                Duration::from_secs(20),
                d.client.exec_capture("flood", &["echo", "ok"], &[], None),
            )
            .await
            .expect("exec into the flooding guest hung")
            .unwrap();
            assert_eq!(o.stdout_str().trim(), "ok");
            rounds += 1;
        }
        assert!(rounds > 0);
        // Stopping the guest ends the flood; the monitor did not pile up
        // fds or threads while it lasted.
        let (fds1, threads1) = (fd_count(monitor), proc_status_number(monitor, "Threads"));
        assert!(
            fds1 <= fds0 + 8 && threads1 <= threads0 + 4,
            "the monitor grew: fds {fds0} -> {fds1}, threads {threads0} -> {threads1}"
        );
        let t0 = Instant::now();
        d.client.stop_instance("flood", true, -1).await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(30));
        assert_eq!(
            d.client.instance_state("flood").await.unwrap().status,
            "Stopped"
        );
        answers(&d, "after the flood").await;
        d.shutdown().await;
    });
}

#[test]
fn a_guest_out_of_memory_is_still_exec_d_into_and_stopped() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "hog", &[("limits.memory", "48MiB")]).await;
        let kanted = d.pid();
        let (rss0, fds0) = (proc_status_number(kanted, "VmRSS"), fd_count(kanted));
        // Allocations that cannot fit, again and again: the guest's own OOM
        // killer keeps firing inside its cgroup.
        let (code, out) = d
            .sh(
                "hog",
                "(while true; do x=$(head -c 100000000 /dev/zero | tr '\\000' x); done) \
                 >/dev/null 2>&1 & echo started",
            )
            .await;
        assert_eq!((code, out.trim()), (0, "started"), "{out}");
        // The execs start once the guest really is out of memory: its
        // cgroup's OOM killer has fired.
        let cg = format!("{}/hog", d.cgroup_prefix());
        let oom_kills = || {
            [
                format!("/sys/fs/cgroup/memory/{cg}/memory.oom_control"),
                format!("/sys/fs/cgroup/{cg}/memory.events"),
            ]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
            })
            .expect("the guest's oom_kill counter")
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while oom_kills() == 0 {
            assert!(
                Instant::now() < deadline,
                "the guest never ran out of memory"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut ran = 0;
        for _ in 0..15 {
            answers(&d, "while the guest is out of memory").await;
            let exec = tokio::time::timeout(
                Duration::from_secs(30),
                d.client.exec_capture("hog", &["echo", "alive"], &[], None),
            )
            .await
            .expect("exec into the out-of-memory guest hung");
            // The exec may itself be killed by the guest's OOM killer; it
            // must come back either way, as an answer.
            if let Ok(o) = exec {
                if o.code == 0 && o.stdout_str().trim() == "alive" {
                    ran += 1;
                }
            }
        }
        eprintln!("{ran} of 15 execs ran to the end in the out-of-memory guest");
        let state = d.client.instance_state("hog").await.unwrap();
        assert!(
            state.memory.usage <= 48 << 20,
            "the guest exceeded its limit: {}",
            state.memory.usage
        );
        d.client.stop_instance("hog", true, -1).await.unwrap();
        answers(&d, "after the out-of-memory guest stopped").await;
        // The daemon did not carry the guest's memory, nor leak fds.
        let (rss1, fds1) = (proc_status_number(kanted, "VmRSS"), fd_count(kanted));
        assert!(
            rss1 < rss0 + 32 * 1024 && fds1 <= fds0 + 16,
            "kanted grew: RSS {rss0} -> {rss1} kB, fds {fds0} -> {fds1}"
        );
        d.shutdown().await;
    });
}
