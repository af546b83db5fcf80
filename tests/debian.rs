//! A Debian bookworm system container (built by `kante image build debian/12`)
//! boots systemd to `running` under the unprivileged runtime.

use std::time::{Duration, Instant};

use kante_integration::{run, Daemon, TestImage};

#[test]
fn debian_boots_systemd_to_running() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        let t0 = Instant::now();
        d.launch(&fp, "deb1", &[]).await;
        let state = d.wait_systemd("deb1", Duration::from_secs(90)).await;
        let failed = d
            .client
            .exec_capture(
                "deb1",
                &["systemctl", "--failed", "--no-legend", "--plain"],
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            state,
            "running",
            "systemd state {state:?}; failed units:\n{}",
            failed.stdout_str()
        );
        eprintln!("launch to running: {:?}", t0.elapsed());

        // What the guest sees: its name, container=lxc, its own cgroup2 tree, a console.
        let out = d
            .client
            .exec_capture("deb1", &["hostname"], &[], None)
            .await
            .unwrap();
        assert_eq!(out.stdout_str().trim(), "deb1");
        let out = d
            .client
            .exec_capture("deb1", &["systemd-detect-virt", "--container"], &[], None)
            .await
            .unwrap();
        assert_eq!(out.stdout_str().trim(), "lxc");
        let out = d
            .client
            .exec_capture(
                "deb1",
                &["stat", "-f", "-c", "%T", "/sys/fs/cgroup"],
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout_str().trim(), "cgroup2fs");
        // An exec'd command joins the guest's cgroups in every hierarchy, also
        // on a pure v2 host where the booted systemd has enabled controllers
        // below the guest's cgroup (a path outside the guest's cgroup
        // namespace would start with "/..").
        let out = d
            .client
            .exec_capture("deb1", &["cat", "/proc/self/cgroup"], &[], None)
            .await
            .unwrap();
        let cg = out.stdout_str();
        assert!(
            !cg.is_empty() && !cg.contains("/.."),
            "exec'd command outside the guest's cgroups:\n{cg}"
        );
        let out = d
            .client
            .exec_capture("deb1", &["readlink", "/proc/1/exe"], &[], None)
            .await
            .unwrap();
        assert!(out.stdout_str().contains("systemd"), "{}", out.stdout_str());
        // File capabilities survive (no chown of the rootfs): ping keeps cap_net_raw.
        let out = d
            .client
            .exec_capture("deb1", &["getcap", "/usr/bin/ping"], &[], None)
            .await;
        if let Ok(o) = out {
            if o.code == 0 {
                assert!(o.stdout_str().contains("cap_net_raw"), "{}", o.stdout_str());
            }
        }
        let out = d
            .client
            .exec_capture("deb1", &["ping", "-c1", "-W1", "127.0.0.1"], &[], None)
            .await
            .unwrap();
        assert_eq!(
            out.code,
            0,
            "ping as container root over loopback: {}",
            out.stderr_str()
        );
        let out = d
            .client
            .exec_capture(
                "deb1",
                &[
                    "su",
                    "-s",
                    "/bin/sh",
                    "nobody",
                    "-c",
                    "ping -c1 -W1 127.0.0.1 >/dev/null && echo ok",
                ],
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            out.stdout_str().trim(),
            "ok",
            "unprivileged ping needs the file capability: {}",
            out.stderr_str()
        );

        // Kernel surfaces LXC keeps away from containers.
        let out = d
            .client
            .exec_capture(
                "deb1",
                &["sh", "-c", "echo 1 > /proc/sys/kernel/panic 2>&1; echo $?"],
                &[],
                None,
            )
            .await
            .unwrap();
        assert_ne!(
            out.stdout_str().trim().lines().last(),
            Some("0"),
            "/proc/sys must be read-only"
        );
        // Kernel internals are masked: a file the host has reads as the
        // empty /dev/null in the guest (this host's kernel has timer_list
        // but no kcore; one it lacks is absent in the guest too).
        let mut masked = 0;
        for f in ["kcore", "timer_list", "sched_debug"] {
            let on_host = std::path::Path::new("/proc").join(f).exists();
            let out = d
                .client
                .exec_capture(
                    "deb1",
                    &["sh", "-c", &format!("wc -c < /proc/{f}")],
                    &[],
                    None,
                )
                .await
                .unwrap();
            if on_host {
                masked += 1;
                assert_eq!(
                    (out.code, out.stdout_str().trim()),
                    (0, "0"),
                    "/proc/{f} must be masked: {}",
                    out.stderr_str()
                );
            } else {
                assert_ne!(out.code, 0, "/proc/{f} appeared in the guest");
            }
        }
        assert!(masked > 0, "no masked file exists on this host to check");

        // A clean stop through systemd (SIGRTMIN+3) is quick.
        let t = Instant::now();
        d.client.stop_instance("deb1", false, 30).await.unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "clean stop took {:?}",
            t.elapsed()
        );
        let log =
            String::from_utf8_lossy(&d.client.console_log("deb1").await.unwrap()).into_owned();
        assert!(
            log.contains("System Halt") || log.contains("Halting"),
            "console log lacks the shutdown:\n{log}"
        );
        d.shutdown().await;
    });
}
