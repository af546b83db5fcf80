//! Seed 000's `docker` profile on a Debian guest: nesting (namespaces, proc,
//! overlayfs, bridges, nested cgroups), syscall interception (mknod of safe
//! devices, trusted.overlay.* xattrs) against a guest without it, kernel
//! modules and the memory/CPU limits seen from outside.

use std::time::Duration;

use kante_api::instance::{InstanceSource, InstancesPost};
use kante_integration::{run, Daemon, TestImage};
use serde_json::json;

/// Seed 000's module list, as written.
const MODULES: &str = "ip_tables,ip6_tables,iptable_nat,iptable_mangle,bridge,nf_nat,br_netfilter,xfrm_user,xt_conntrack,xt_MASQUERADE,bonding,overlay,netlink_diag,ip_vs,ip_vs_dh,ip_vs_ftp,ip_vs_lblc,ip_vs_lblcr,ip_vs_lc,ip_vs_nq,ip_vs_rr,ip_vs_sed,ip_vs_sh,ip_vs_wlc,ip_vs_wrr";

/// x86_64 syscall numbers, for perl's `syscall` (perl-base is in every Debian).
const PERL_HELPERS: &str = r#"
use strict;
# syscall() may write into string arguments: pass copies, not literals.
sub try { my ($what, $r) = @_; print "$what=", ($r == -1 ? $!+0 : 0), "\n"; }
my ($px, $opq, $opq2, $rel) = ("/tmp/px", "/tmp/opq", "/tmp/opq2", "opq2");
my ($node, $opaque, $other, $redirect) = ("urandom", "trusted.overlay.opaque", "trusted.kante", "trusted.overlay.redirect");
my ($y, $x) = ("y", "/x");
mkdir $px; mkdir $opq; mkdir $opq2;
open(my $d, "<", $px) or die "open $px: $!";
try("mknodat_dirfd", syscall(259, fileno($d), $node, 0020600, (1 << 8) | 9));
try("setxattr_opaque", syscall(188, $opq, $opaque, $y, 1, 0));
try("setxattr_other_trusted", syscall(188, $opq, $other, $y, 1, 0));
open(my $d2, "<", $opq2) or die "open $opq2: $!";
try("fsetxattr_opaque", syscall(190, fileno($d2), $opaque, $y, 1, 0));
chdir "/tmp" or die;
try("lsetxattr_relative", syscall(189, $rel, $redirect, $x, 2, 0));
"#;

/// `key=value` lines of the perl helper.
async fn perl_results(d: &Daemon, name: &str) -> std::collections::HashMap<String, i32> {
    let o = d
        .client
        .exec_capture(name, &["perl", "-e", PERL_HELPERS], &[], None)
        .await
        .unwrap();
    assert_eq!(o.code, 0, "perl helper: {}", o.stderr_str());
    o.stdout_str()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
        .collect()
}

fn host_xattr(pid: i32, path: &str, attr: &str) -> String {
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", attr])
        .arg(format!("/proc/{pid}/root{path}"))
        .output()
        .expect("getfattr on the host");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn docker_profile_nesting_and_interception() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;

        // The seed's docker profile minus its pool/bridge devices, memory scaled to this host.
        let host_mb = kante_engine::host::host_memory() / 1_000_000;
        let memory = format!("{}MB", host_mb / 4);
        let cpus = kante_engine::host::online_cpus().min(2);
        d.client
            .post(
                "/1.0/profiles",
                &json!({
                    "name": "docker",
                    "description": "Universelle Docker Swarm Konfiguration",
                    "config": {
                        "security.nesting": "true",
                        "security.syscalls.intercept.mknod": "true",
                        "security.syscalls.intercept.setxattr": "true",
                        "linux.kernel_modules": MODULES,
                        "limits.memory.swap": "false",
                        "limits.memory": memory,
                        "limits.cpu": cpus.to_string(),
                    },
                    "devices": {},
                }),
            )
            .await
            .expect("creating the docker profile");
        // Bad values are refused before anything is stored.
        let bad = d
            .client
            .post(
                "/1.0/profiles",
                &json!({"name": "bad", "config": {"linux.kernel_modules": "ip_tables;reboot"}}),
            )
            .await;
        assert!(bad.is_err(), "a malformed module list was accepted");

        let mut post = InstancesPost {
            name: "dk".into(),
            ..Default::default()
        };
        post.source = InstanceSource {
            kind: "image".into(),
            fingerprint: fp.clone(),
            ..Default::default()
        };
        post.put.profiles = Some(vec!["default".into(), "docker".into()]);
        d.client.create_instance(&post).await.unwrap();
        d.client
            .start_instance("dk")
            .await
            .unwrap_or_else(|e| panic!("starting dk: {e}\n{}", d.log_text()));
        d.launch(&fp, "plain", &[]).await;
        let state = d.wait_systemd("dk", Duration::from_secs(90)).await;
        assert!(
            state == "running" || state == "degraded",
            "systemd in dk: {state}"
        );

        // Kernel modules: checked before the start, never silently: built in
        // or loaded already ("present"), or loaded by kanted (a kernel with
        // loadable modules, as Debian's), and in the kernel afterwards.
        let log = d.log_text();
        assert!(
            log.contains("kernel module overlay: present")
                || log.contains("kernel module overlay: loaded with modprobe"),
            "{log}"
        );
        assert!(std::path::Path::new("/sys/module/overlay").exists());
        assert!(log.contains("kernel module ip_vs"), "{log}");

        // Limits, from outside (v1 files on a hybrid host, v2 on a pure one).
        let want = (host_mb / 4 * 1_000_000).to_string();
        let memory = d.cgroup_read("dk", "memory", "memory.limit_in_bytes", "memory.max");
        assert_eq!(
            memory,
            // The kernel rounds down to pages.
            ((host_mb / 4 * 1_000_000) / 4096 * 4096).to_string(),
            "asked for {want}"
        );
        let swap = d.cgroup_file(
            "dk",
            "memory",
            "memory.memsw.limit_in_bytes",
            "memory.swap.max",
        );
        if swap.exists() {
            // v1: memory+swap = memory; v2: no swap at all.
            let v1 = swap.ends_with("memory.memsw.limit_in_bytes");
            assert_eq!(
                std::fs::read_to_string(&swap).unwrap().trim(),
                if v1 { memory.as_str() } else { "0" },
                "limits.memory.swap=false ({})",
                swap.display()
            );
        }
        let cpuset = d.cgroup_read("dk", "cpuset", "cpuset.cpus", "cpuset.cpus");
        let n = kante_engine::units::parse_cpu_set(&cpuset).unwrap().len();
        assert_eq!(n, cpus, "cpuset {cpuset}");

        // Nesting.
        let (code, out) = d.sh("dk", "unshare -m -p -f --mount-proc true").await;
        assert_eq!(code, 0, "unshare with its own proc: {out}");
        let nested_userns =
            "unshare -U -r -n -m -p -f --mount-proc sh -c 'mount -t sysfs sysfs /sys'";
        let (code, out) = d.sh("dk", nested_userns).await;
        assert_eq!(code, 0, "proc and sysfs in a nested user namespace: {out}");
        let (code, out) = d.sh("plain", nested_userns).await;
        assert_ne!(code, 0, "without nesting proc stays covered: {out}");
        let overlay = "set -e; mkdir /tmp/ov; mount -t tmpfs tmpfs /tmp/ov; \
            mkdir /tmp/ov/l /tmp/ov/u /tmp/ov/w /tmp/ov/m; echo hi > /tmp/ov/l/f; \
            mount -t overlay overlay -o lowerdir=/tmp/ov/l,upperdir=/tmp/ov/u,workdir=/tmp/ov/w /tmp/ov/m; \
            cat /tmp/ov/m/f; rm /tmp/ov/m/f; stat -c '%F %t:%T' /tmp/ov/u/f; \
            umount /tmp/ov/m; umount /tmp/ov; rmdir /tmp/ov";
        let (code, out) = d.sh("dk", overlay).await;
        assert_eq!(code, 0, "overlayfs on tmpfs: {out}");
        assert!(
            out.contains("hi") && out.contains("character special file 0:0"),
            "{out}"
        );
        let (code, out) = d
            .sh(
                "dk",
                "ip link add br0 type bridge && ip link set br0 up && ip link del br0",
            )
            .await;
        assert_eq!(code, 0, "a bridge inside: {out}");
        let cg = "set -e; mkdir /sys/fs/cgroup/nested; \
            sh -c 'echo $$ > /sys/fs/cgroup/nested/cgroup.procs; grep -x 0::/nested /proc/self/cgroup'; \
            rmdir /sys/fs/cgroup/nested";
        let (code, out) = d.sh("dk", cg).await;
        assert_eq!(code, 0, "a nested cgroup: {out}");

        // mknod: the safe set with the intercept, the kernel's answer otherwise.
        let (code, out) = d.sh("dk", "mknod /tmp/wh c 0 0 && cd /tmp && mknod null c 1 3 && stat -c '%F %t:%T %U' /tmp/wh /tmp/null").await;
        assert_eq!(code, 0, "mknod with the intercept: {out}");
        assert!(out.contains("character special file 0:0 root"), "{out}");
        assert!(out.contains("character special file 1:3 root"), "{out}");
        for (what, cmd) in [
            ("/dev/mem", "mknod /tmp/mem c 1 1"),
            ("a block device", "mknod /tmp/sda b 8 0"),
            (
                "a non-root caller",
                "su -s /bin/sh nobody -c 'mknod /tmp/n2 c 1 3'",
            ),
        ] {
            let (code, out) = d.sh("dk", cmd).await;
            assert_ne!(code, 0, "{what} was created: {out}");
            assert!(out.contains("Operation not permitted"), "{what}: {out}");
        }
        let (code, out) = d.sh("plain", "mknod /tmp/null c 1 3").await;
        assert_ne!(code, 0, "mknod of 1:3 without the intercept: {out}");
        assert!(out.contains("Operation not permitted"), "{out}");
        // Whiteouts need no privilege since Linux 5.8: the kernel itself
        // allows them in a user namespace, intercept or not.
        let (_, wh) = d.sh("plain", "mknod /tmp/wh c 0 0 && echo made").await;
        eprintln!("whiteout without the intercept: {}", wh.trim());

        // Through dirfds, cwd and the setxattr family.
        let r = perl_results(&d, "dk").await;
        assert_eq!(r["mknodat_dirfd"], 0, "{r:?}");
        assert_eq!(r["setxattr_opaque"], 0, "{r:?}");
        assert_eq!(r["setxattr_other_trusted"], libc::EPERM, "{r:?}");
        assert_eq!(r["fsetxattr_opaque"], 0, "{r:?}");
        assert_eq!(r["lsetxattr_relative"], 0, "{r:?}");
        let (code, out) = d.sh("dk", "stat -c '%t:%T' /tmp/px/urandom").await;
        assert_eq!((code, out.trim()), (0, "1:9"));
        let pid = d.init_pid("dk").await;
        assert_eq!(host_xattr(pid, "/tmp/opq", "trusted.overlay.opaque"), "y");
        assert_eq!(host_xattr(pid, "/tmp/opq2", "trusted.overlay.opaque"), "y");
        assert_eq!(
            host_xattr(pid, "/tmp/opq2", "trusted.overlay.redirect"),
            "/x"
        );
        let r = perl_results(&d, "plain").await;
        assert_eq!(r["mknodat_dirfd"], libc::EPERM, "{r:?}");
        assert_eq!(r["setxattr_opaque"], libc::EPERM, "{r:?}");
        assert_eq!(r["fsetxattr_opaque"], libc::EPERM, "{r:?}");

        // The intercept survives a daemon restart (exec reaches the same monitor).
        d.restart().await;
        let (code, out) = d
            .sh("dk", "mknod /tmp/after c 1 5 && stat -c %t:%T /tmp/after")
            .await;
        assert_eq!((code, out.trim()), (0, "1:5"), "{out}");

        d.shutdown().await;
    });
}
