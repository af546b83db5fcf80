//! What the guest sees of its limits: lxcfs's /proc files bound over the
//! guest's, so `free -m`, `nproc` and `/proc/cpuinfo` inside show the
//! instance's limits, follow live changes, and come back when kanted
//! restarts a dead lxcfs. The test uses a private lxcfs (its own mount
//! point and pidfile), so killing it does not touch the host's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kante_integration::{Daemon, TestImage};
use serde_json::json;

/// A private lxcfs directory, torn down (process, mount, files) on drop.
struct PrivateLxcfs {
    dir: PathBuf,
}

impl PrivateLxcfs {
    fn new() -> PrivateLxcfs {
        let dir = PathBuf::from(format!("/tmp/kante-lxcfs-{}", std::process::id()));
        PrivateLxcfs { dir }
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.with_extension("pid")
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pidfile())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn kill(&self) {
        if let Some(pid) = self.pid() {
            // SAFETY: plain kill of the lxcfs this test's daemon started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::path::Path::new(&format!("/proc/{pid}")).exists()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PrivateLxcfs {
    fn drop(&mut self) {
        self.kill();
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_file(self.pidfile());
        let _ = std::fs::remove_file(self.dir.with_extension("stderr"));
    }
}

async fn sh(d: &Daemon, name: &str, script: &str) -> String {
    let o = d
        .client
        .exec_capture(name, &["sh", "-c", script], &[], None)
        .await
        .unwrap_or_else(|e| panic!("exec {script:?}: {e}"));
    assert_eq!(o.code, 0, "{script}: {}", o.stderr_str());
    o.stdout_str().trim().to_string()
}

/// The "total" column of `free -m`'s Mem line.
async fn free_total_mb(d: &Daemon, name: &str) -> u64 {
    let out = sh(d, name, "free -m").await;
    let line = out
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .unwrap_or_else(|| panic!("no Mem: line in {out}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn host_uptime() -> f64 {
    let s = std::fs::read_to_string("/proc/uptime").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn guest_sees_its_limits_through_lxcfs() {
    kante_integration::run(async {
        let lx = PrivateLxcfs::new();
        let dir = lx.dir.display().to_string();
        let d = Daemon::start_with_env(&[
            ("KANTE_LXCFS_DIR", dir.as_str()),
            ("KANTE_LXCFS_CHECK_SECS", "1"),
        ])
        .await;
        let fp = d.import(TestImage::Debian).await;
        let host_cpus = kante_engine::host::online_cpus();
        let host_mb = kante_engine::host::host_memory() >> 20;
        let started = Instant::now();
        d.launch(
            &fp,
            "lim",
            &[("limits.memory", "256MiB"), ("limits.cpu", "1")],
        )
        .await;
        let state = d.wait_systemd("lim", Duration::from_secs(90)).await;
        assert!(
            state == "running" || state == "degraded",
            "systemd: {state}"
        );
        assert!(lx.pid().is_some(), "kanted did not start lxcfs at {dir}");

        // From outside: the cgroup. From inside: the same limits.
        let limit = d.cgroup_read("lim", "memory", "memory.limit_in_bytes", "memory.max");
        assert_eq!(limit, (256u64 << 20).to_string());
        assert_eq!(
            free_total_mb(&d, "lim").await,
            256,
            "host has {host_mb} MiB"
        );
        assert_eq!(sh(&d, "lim", "nproc").await, "1");
        assert_eq!(sh(&d, "lim", "grep -c ^processor /proc/cpuinfo").await, "1");
        let online = sh(&d, "lim", "cat /sys/devices/system/cpu/online").await;
        assert_eq!(
            kante_engine::units::parse_cpu_set(&online).unwrap().len(),
            1,
            "online: {online}"
        );
        // The guest's uptime is its own, not the host's.
        let up: f64 = sh(&d, "lim", "cut -d' ' -f1 /proc/uptime")
            .await
            .parse()
            .unwrap();
        let since_launch = started.elapsed().as_secs_f64();
        assert!(
            up <= since_launch + 1.0 && up < host_uptime(),
            "guest uptime {up} s, launched {since_launch} s ago, host {} s",
            host_uptime()
        );
        // An unlimited guest beside it sees the host.
        d.launch(&fp, "free", &[]).await;
        let free_mb = free_total_mb(&d, "free").await;
        assert!(
            free_mb + 64 >= host_mb && free_mb <= host_mb,
            "unlimited guest sees {free_mb} MiB of {host_mb}"
        );

        // Live changes show inside at once.
        let cpus = host_cpus.min(2);
        d.client
            .patch_instance(
                "lim",
                &json!({"config": {"limits.memory": "384MiB", "limits.cpu": cpus.to_string()}}),
            )
            .await
            .unwrap();
        assert_eq!(free_total_mb(&d, "lim").await, 384);
        assert_eq!(sh(&d, "lim", "nproc").await, cpus.to_string());

        // lxcfs dies: its files in the guest fail until kanted, within its
        // check interval, restarts it and re-attaches them.
        let old = lx.pid().unwrap();
        lx.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        loop {
            let o = d
                .client
                .exec_capture("lim", &["sh", "-c", "free -m"], &[], None)
                .await
                .unwrap();
            if o.code == 0 && o.stdout_str().contains("384") {
                break;
            }
            last = format!("{}{}", o.stdout_str(), o.stderr_str());
            assert!(
                Instant::now() < deadline,
                "free -m after lxcfs died: {last}\n{}",
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let new = lx.pid().expect("lxcfs restarted");
        assert_ne!(new, old);
        assert!(d.log_text().contains("lxcfs files re-attached"), "{last}");

        d.shutdown().await;
        drop(lx);
        assert!(
            !std::path::Path::new(&dir).exists(),
            "private lxcfs dir left behind"
        );
    });
}
