//! The Debian package on a clean Debian 12 root, as its README tells a user
//! to take it: `scripts/deb.sh` packages the binaries under test, a Debian
//! guest (privileged, nesting, systemd as its init) installs it with apt
//! (the dependencies come from Debian's mirror), `systemctl enable --now
//! kanted` starts the daemon under systemd, and that kanted launches an
//! instance of its own that gets an address from its own bridge.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kante_integration::{bin, kante_ok, prerequisite, push_executable, run, Daemon, TestImage};

const GUEST: &str = "pkg";

async fn sh_ok(d: &Daemon, script: &str) -> String {
    let (code, out) = d.sh(GUEST, script).await;
    assert_eq!(code, 0, "{script}:\n{out}");
    out
}

/// Builds the package from the binaries this test runs (`KANTE_BIN_DIR`)
/// into `out`; returns its path.
fn build_package(out: &Path) -> std::path::PathBuf {
    let bins = bin("kante");
    let o = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deb.sh"))
        .env("KANTE_BIN_DIR", bins.parent().unwrap())
        .env("KANTE_DEB_OUT", out)
        .output()
        .expect("run scripts/deb.sh");
    assert!(
        o.status.success(),
        "deb.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let deb = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let deb = std::path::PathBuf::from(deb.lines().last().unwrap_or_default());
    assert!(deb.exists(), "no package at {}", deb.display());
    deb
}

/// The udhcpc hook busybox needs to configure what it leased (a printf
/// format: `\n` are newlines).
const DHCP_HOOK: &str =
    r#"#!/bin/sh\n[ "$1" = bound ] && ip addr add $ip/$mask dev $interface\nexit 0\n"#;

#[test]
fn the_package_installs_starts_under_systemd_and_launches_an_instance() {
    if !prerequisite(
        Path::new("/usr/bin/dpkg-deb").exists(),
        "dpkg-deb (apt-get install dpkg-dev)",
    ) {
        return;
    }
    run(async {
        let d = Daemon::start().await;
        let pkg_dir = tempfile::tempdir().unwrap();
        let deb = build_package(pkg_dir.path());

        // A clean Debian 12 root with systemd as init, on a NAT bridge (its
        // only traffic off the host: Debian's mirror, through apt).
        let fp = d.import(TestImage::Debian).await;
        kante_ok(
            &d,
            &[
                "network",
                "create",
                "ktpkg0",
                "ipv4.address=10.250.79.1/24",
                "ipv4.nat=true",
                "ipv6.address=none",
            ],
        );
        let nic: kante_api::DevicesMap = serde_json::from_value(serde_json::json!({
            "eth0": {"type": "nic", "network": "ktpkg0", "name": "eth0"}
        }))
        .unwrap();
        // A daemon that makes containers needs what a nested LXD needs.
        let config = [
            ("security.privileged", "true"),
            ("security.nesting", "true"),
        ];
        d.create_with_devices(&fp, GUEST, &config, nic).await;
        d.client.start_instance(GUEST).await.unwrap();
        let state = d.wait_systemd(GUEST, Duration::from_secs(120)).await;
        assert!(state == "running" || state == "degraded", "{state}");
        assert_eq!(
            sh_ok(&d, "command -v kanted kante || echo none")
                .await
                .trim(),
            "none",
            "the root is clean"
        );

        push_executable(&d, GUEST, &deb, "/root/kante_amd64.deb").await;
        push_executable(
            &d,
            GUEST,
            &TestImage::Busybox.path(),
            "/root/busybox.tar.zst",
        )
        .await;
        sh_ok(
            &d,
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/tmp/apt.log 2>&1 && \
             apt-get install -y -q /root/kante_amd64.deb >>/tmp/apt.log 2>&1 \
             || { tail -20 /tmp/apt.log; exit 1; }",
        )
        .await;
        // Installed as a package, with what it declares and ships.
        let status = sh_ok(&d, "dpkg-query -W -f '${Status} ${Version}' kante").await;
        assert!(status.starts_with("install ok installed"), "{status}");
        sh_ok(
            &d,
            "command -v dnsmasq nft lxcfs btrfs mksquashfs >/dev/null && \
             test -s /usr/share/man/man1/kante-launch.1.gz && \
             test -s /usr/share/bash-completion/completions/kante && \
             test -f /lib/systemd/system/kanted.service",
        )
        .await;

        // Started by systemd, as the README says.
        sh_ok(&d, "systemctl enable --now kanted >/dev/null 2>&1").await;
        let active = sh_ok(
            &d,
            "systemctl is-active kanted; systemctl is-enabled kanted",
        )
        .await;
        assert_eq!(active, "active\nenabled\n");
        sh_ok(&d, "kante wait-ready --timeout 30").await;
        let main_pid = sh_ok(&d, "systemctl show -p MainPID --value kanted").await;
        let comm = sh_ok(&d, &format!("cat /proc/{}/comm", main_pid.trim())).await;
        assert_eq!(comm.trim(), "kanted", "systemd's main process is kanted");
        // This guest's cgroup2 offers no controllers (a hybrid host's are
        // all v1): kanted says so in its journal, and limits are refused.
        let journal = sh_ok(&d, "journalctl -u kanted --no-pager -o cat").await;
        assert!(
            journal.contains("do not offer the memory, cpu, cpuset, pids controller(s)"),
            "{journal}"
        );

        // That kanted launches an instance of its own, on its own bridge.
        sh_ok(&d, "kante init --auto >/dev/null").await;
        sh_ok(
            &d,
            "kante image import /root/busybox.tar.zst --alias bb >/dev/null && kante launch bb inner >/dev/null",
        )
        .await;
        assert_eq!(sh_ok(&d, "kante exec inner -- hostname").await, "inner\n");
        let (code, out) = d
            .sh(GUEST, "kante launch bb limited -c limits.memory=64MiB")
            .await;
        assert_ne!(code, 0, "a memory limit without the controller: {out}");
        assert!(
            out.contains("limits.memory needs the cgroup memory controller"),
            "{out}"
        );
        sh_ok(&d, "kante delete -f limited").await;
        sh_ok(
            &d,
            &format!(
                "printf '{DHCP_HOOK}' > /tmp/dhcp.sh && \
                 kante file push /tmp/dhcp.sh inner/tmp/dhcp.sh --mode 0755 && \
                 kante exec inner -- udhcpc -i eth0 -n -q -t 10 -T 1 -s /tmp/dhcp.sh >/dev/null 2>&1"
            ),
        )
        .await;
        let list = sh_ok(&d, "kante list inner -c ns4 -f csv").await;
        assert!(list.starts_with("inner,RUNNING,10."), "{list}");
        let gateway = sh_ok(&d, "kante network get kantebr0 ipv4.address | cut -d/ -f1").await;
        sh_ok(
            &d,
            &format!("kante exec inner -- ping -c1 -W2 {}", gateway.trim()),
        )
        .await;

        // Restarted by systemd, the daemon finds its instance still running.
        let pid_before = sh_ok(&d, "kante list inner -c p -f csv").await;
        sh_ok(
            &d,
            "systemctl restart kanted && kante wait-ready --timeout 30",
        )
        .await;
        let pid_after = sh_ok(&d, "kante list inner -c p -f csv").await;
        assert_eq!(pid_before, pid_after, "the instance kept running");
        let new_main = sh_ok(&d, "systemctl show -p MainPID --value kanted").await;
        assert_ne!(new_main, main_pid, "systemd started a new kanted");

        // Removal stops the daemon; the instance goes with the guest.
        sh_ok(
            &d,
            "kante delete -f inner && apt-get remove -y -q kante >/dev/null 2>&1",
        )
        .await;
        let gone = sh_ok(&d, "systemctl is-active kanted || true").await;
        assert_eq!(gone.trim(), "inactive");

        kante_ok(&d, &["delete", "-f", GUEST]);
        kante_ok(&d, &["network", "delete", "ktpkg0"]);
        pkg_dir.close().unwrap();
        d.shutdown().await;
    });
}
