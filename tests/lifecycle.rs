//! Engine core against a real kanted: busybox containers, checked from outside.

use std::time::Duration;

use kante_api::instance::InstanceStatePut;
use kante_client::{FileContent, FilePushOptions};
use kante_integration::{processes_mentioning, run, Daemon, TestImage};

/// One field of `/proc/<pid>/status`, e.g. `Uid`, without its label.
fn status_field(pid: i32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let prefix = format!("{key}:");
    let line = status.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
    line.unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

fn host_uid_of(pid: i32) -> u32 {
    status_field(pid, "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn unprivileged_container_runs_in_its_own_id_range() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;
        let i = d.client.instance("c1").await.unwrap();
        assert_eq!(i.status, "Running");

        // Seen from the host, PID 1 of the container is not root.
        let pid = d.init_pid("c1").await;
        assert!(pid > 1);
        let uid = host_uid_of(pid);
        assert!(uid >= 100_000, "init runs as host uid {uid}");
        assert_eq!(i.config["volatile.idmap.base"], uid.to_string());

        // Inside, a non-identity map: container 0 is that host uid.
        let out = d
            .client
            .exec_capture("c1", &["cat", "/proc/self/uid_map"], &[], None)
            .await
            .unwrap();
        let map = out.stdout_str();
        let fields: Vec<&str> = map.split_whitespace().collect();
        assert_eq!(fields[0], "0");
        assert_eq!(fields[1], uid.to_string());
        assert_eq!(fields[2], "65536");
        let out = d
            .client
            .exec_capture("c1", &["id", "-u"], &[], None)
            .await
            .unwrap();
        assert_eq!(out.stdout_str().trim(), "0");

        // Capabilities LXC drops are gone from the bounding set, and the
        // seccomp policy is in force (mode 2 = filter), for init and for exec.
        for pid_path in ["/proc/1/status", "/proc/self/status"] {
            let out = d
                .client
                .exec_capture("c1", &["cat", pid_path], &[], None)
                .await
                .unwrap();
            let status = out.stdout_str();
            let capbnd = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
            let bits = u64::from_str_radix(capbnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
            for cap in [16u32, 17, 25, 32, 33] {
                assert_eq!(
                    bits & (1 << cap),
                    0,
                    "capability {cap} still in {capbnd} of {pid_path}"
                );
            }
            assert!(
                bits & (1 << 21) != 0,
                "CAP_SYS_ADMIN (namespaced) should stay: {capbnd}"
            );
            let seccomp = status.lines().find(|l| l.starts_with("Seccomp:")).unwrap();
            assert_eq!(
                seccomp.split_whitespace().nth(1),
                Some("2"),
                "{pid_path}: {seccomp}"
            );
        }

        // Hostname is the instance name; the rootfs was never chowned.
        let out = d
            .client
            .exec_capture("c1", &["hostname"], &[], None)
            .await
            .unwrap();
        assert_eq!(out.stdout_str().trim(), "c1");
        let rootfs = d.dir.join("storage-pools/default/containers/c1/rootfs/bin");
        let md = std::fs::metadata(&rootfs).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            md.uid(),
            0,
            "on-disk owner must stay 0 (idmapped mount, no chown)"
        );

        // The cgroup the daemon created holds the container's processes (in
        // the memory controller's hierarchy: v1 on a hybrid host, else v2).
        let procs = d.cgroup_read("c1", "memory", "cgroup.procs", "cgroup.procs");
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "{procs}"
        );
        d.shutdown().await;
    });
}

#[test]
fn exec_passes_exit_codes_stdout_stderr_and_stdin() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[("environment.FROM_CONFIG", "yes")])
            .await;
        let out = d
            .client
            .exec_capture(
                "c1",
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");

        let out = d
            .client
            .exec_capture("c1", &["cat"], &[], Some(b"piped input".to_vec()))
            .await
            .unwrap();
        assert_eq!((out.code, out.stdout_str().as_str()), (0, "piped input"));

        let out = d
            .client
            .exec_capture(
                "c1",
                &["sh", "-c", "echo $FROM_CONFIG $FOO $HOME; pwd"],
                &[("FOO", "bar")],
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "yes bar /root\n/root\n");

        // Killed by a signal: 128 + N, as a shell reports it.
        let out = d
            .client
            .exec_capture("c1", &["sh", "-c", "kill -TERM $$"], &[], None)
            .await
            .unwrap();
        assert_eq!(out.code, 143);

        // The command is kanted's own child: the helper that joined the
        // container's namespaces has exited and holds nothing for the session.
        let client = d.client.clone();
        let session = tokio::spawn(async move {
            client
                .exec_capture("c1", &["sleep", "2"], &[], None)
                .await
                .unwrap()
        });
        let sleeper = wait_for_process("sleep 2").await;
        let ppid: i32 = status_field(sleeper, "PPid").parse().unwrap();
        assert_eq!(ppid, d.pid());
        assert_eq!(session.await.unwrap().code, 0);

        // A command that does not exist: 127 and a clear failure.
        let err = d
            .client
            .exec_capture("c1", &["/no/such/command"], &[], None)
            .await;
        match err {
            Ok(o) => assert_eq!(o.code, 127),
            Err(e) => assert!(e.to_string().contains("Command not found"), "{e}"),
        }

        // Non-root users, as the container sees them.
        let post = kante_api::exec::ExecPost {
            command: vec!["id".into()],
            user: 1000,
            group: 1000,
            cwd: "/tmp".into(),
            ..Default::default()
        };
        let out = d.client.exec_capture_with("c1", post, None).await.unwrap();
        assert!(
            out.stdout_str().starts_with("uid=1000 gid=1000"),
            "{}",
            out.stdout_str()
        );
        d.shutdown().await;
    });
}

#[test]
fn stop_start_restart_freeze_and_delete() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;
        let first = d.init_pid("c1").await;

        d.client.restart_instance("c1", false, 30).await.unwrap();
        let second = d.init_pid("c1").await;
        assert_ne!(first, second, "restart must start a new init");
        assert!(
            std::fs::metadata(format!("/proc/{first}")).is_err(),
            "old init still exists"
        );

        d.client.freeze_instance("c1").await.unwrap();
        assert_eq!(d.client.instance("c1").await.unwrap().status, "Frozen");
        let stat = std::fs::read_to_string(format!("/proc/{second}/stat")).unwrap();
        let cg = kante_integration::HostCgroups::read()
            .dir(&d.cgroup_rel("c1"), None)
            .join("cgroup.events");
        assert!(
            std::fs::read_to_string(&cg).unwrap().contains("frozen 1"),
            "{stat}"
        );
        let e = d
            .client
            .exec_capture("c1", &["true"], &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        d.client.unfreeze_instance("c1").await.unwrap();
        assert_eq!(
            d.client
                .exec_capture("c1", &["true"], &[], None)
                .await
                .unwrap()
                .code,
            0
        );

        // Starting a running instance fails inside its operation, as in LXD.
        let e = d.client.start_instance("c1").await.unwrap_err();
        assert!(e.to_string().contains("already running"), "{e}");
        // A running instance cannot be deleted.
        let e = d.client.delete_instance("c1").await.unwrap_err();
        assert!(e.to_string().contains("running"), "{e}");

        d.client.stop_instance("c1", false, 30).await.unwrap();
        assert_eq!(d.client.instance("c1").await.unwrap().status, "Stopped");
        let st = d.client.instance_state("c1").await.unwrap();
        assert_eq!((st.pid, st.network.is_none()), (0, true));
        let e = d
            .client
            .exec_capture("c1", &["true"], &[], None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not running"), "{e}");
        let e = d.client.stop_instance("c1", false, 30).await.unwrap_err();
        assert!(e.to_string().contains("already stopped"), "{e}");

        d.client.start_instance("c1").await.unwrap();
        d.client.stop_instance("c1", true, -1).await.unwrap();
        d.client.delete_instance("c1").await.unwrap();
        assert!(d.client.instance("c1").await.unwrap_err().is_not_found());
        assert!(!d.dir.join("storage-pools/default/containers/c1").exists());
        d.shutdown().await;
    });
}

#[test]
fn containers_survive_kill_9_of_the_daemon() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;
        let pid = d.init_pid("c1").await;
        d.client
            .exec_capture("c1", &["sh", "-c", "echo before > /root/mark"], &[], None)
            .await
            .unwrap();

        d.kill9();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "container died with the daemon"
        );

        d.restart().await;
        let i = d.client.instance("c1").await.unwrap();
        assert_eq!(i.status, "Running");
        assert_eq!(d.init_pid("c1").await, pid, "re-attached to the same init");
        let out = d
            .client
            .exec_capture("c1", &["cat", "/root/mark"], &[], None)
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "before\n");
        // And it can still be stopped cleanly by the new daemon.
        d.client.stop_instance("c1", false, 30).await.unwrap();
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_err()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap()
                    .contains(") Z")
        );
        d.shutdown().await;
    });
}

#[test]
fn autostart_instances_start_with_the_daemon() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.create(&fp, "auto", &[("boot.autostart", "true")]).await;
        d.create(&fp, "manual", &[]).await;
        d.restart().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while d.client.instance("auto").await.unwrap().status != "Running" {
            assert!(
                std::time::Instant::now() < deadline,
                "autostart did not start the instance"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(d.client.instance("manual").await.unwrap().status, "Stopped");
        d.shutdown().await;
    });
}

#[test]
fn privileged_container_has_no_user_namespace() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "p1", &[("security.privileged", "true")])
            .await;
        let pid = d.init_pid("p1").await;
        assert_eq!(host_uid_of(pid), 0);
        let out = d
            .client
            .exec_capture("p1", &["cat", "/proc/self/uid_map"], &[], None)
            .await
            .unwrap();
        assert_eq!(
            out.stdout_str().split_whitespace().collect::<Vec<_>>(),
            vec!["0", "0", "4294967295"]
        );
        // /sys is read-only for a privileged container.
        let out = d
            .client
            .exec_capture("p1", &["sh", "-c", "touch /sys/x 2>&1; echo $?"], &[], None)
            .await
            .unwrap();
        assert_ne!(out.stdout_str().trim().lines().last(), Some("0"));
        d.shutdown().await;
    });
}

#[test]
fn files_round_trip_and_never_escape() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;
        let opts = FilePushOptions {
            uid: Some(1000),
            gid: Some(1000),
            mode: Some(0o640),
            append: false,
        };
        d.client
            .file_push_bytes("c1", "/root/hello.txt", b"hello\n".to_vec(), &opts)
            .await
            .unwrap();
        let got = d.client.file_get("c1", "/root/hello.txt").await.unwrap();
        assert_eq!(got.content, FileContent::File(b"hello\n".to_vec()));
        assert_eq!(
            (got.meta.uid, got.meta.gid, got.meta.mode),
            (1000, 1000, 0o640)
        );
        // The container sees the owner the API was given.
        let out = d
            .client
            .exec_capture(
                "c1",
                &["stat", "-c", "%u:%g %a", "/root/hello.txt"],
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout_str().trim(), "1000:1000 640");

        // Files written inside are readable from outside, on tmpfs mounts too.
        d.client
            .exec_capture("c1", &["sh", "-c", "echo inside > /tmp/t"], &[], None)
            .await
            .unwrap();
        let got = d.client.file_get("c1", "/tmp/t").await.unwrap();
        assert_eq!(got.content, FileContent::File(b"inside\n".to_vec()));

        // Directories, listing, symlinks.
        d.client
            .file_mkdir("c1", "/root/dir", &Default::default())
            .await
            .unwrap();
        d.client
            .file_push_bytes("c1", "/root/dir/a", b"a".to_vec(), &Default::default())
            .await
            .unwrap();
        match d.client.file_get("c1", "/root/dir").await.unwrap().content {
            FileContent::Directory(names) => assert_eq!(names, vec!["a"]),
            other => panic!("{other:?}"),
        }

        // `..` beyond the root is refused outright.
        let e = d
            .client
            .file_get("c1", "/../../../../etc/shadow")
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        let e = d
            .client
            .file_push_bytes(
                "c1",
                "/root/../../../../tmp/escaped",
                b"x".to_vec(),
                &Default::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(!std::path::Path::new("/tmp/escaped").exists());

        // A symlink pointing at the host's /etc resolves inside the container.
        d.client
            .exec_capture("c1", &["ln", "-s", "/etc", "/root/hostetc"], &[], None)
            .await
            .unwrap();
        d.client
            .file_push_bytes(
                "c1",
                "/root/hostetc/kante-escape-test",
                b"x".to_vec(),
                &Default::default(),
            )
            .await
            .unwrap();
        assert!(
            !std::path::Path::new("/etc/kante-escape-test").exists(),
            "write escaped to the host"
        );
        let out = d
            .client
            .exec_capture("c1", &["cat", "/etc/kante-escape-test"], &[], None)
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "x");

        // Stopped instances are reachable too.
        d.client.stop_instance("c1", true, -1).await.unwrap();
        let got = d.client.file_get("c1", "/root/hello.txt").await.unwrap();
        assert_eq!(got.content, FileContent::File(b"hello\n".to_vec()));
        d.shutdown().await;
    });
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let post = |name: &str, config: &[(&str, &str)]| {
            let mut p = kante_api::instance::InstancesPost {
                name: name.into(),
                ..Default::default()
            };
            p.source = kante_api::instance::InstanceSource {
                kind: "image".into(),
                fingerprint: fp.clone(),
                ..Default::default()
            };
            p.put.config = config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            p
        };
        for bad in ["1abc", "-x", "x-", "a_b", "a/b", &"a".repeat(64)] {
            let e = d.client.create_instance(&post(bad, &[])).await.unwrap_err();
            assert_eq!(e.status(), Some(400), "{bad}: {e}");
        }
        let e = d
            .client
            .create_instance(&post("c1", &[("bogus.key", "1")]))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        assert!(e.to_string().contains("bogus.key"), "{e}");
        let e = d
            .client
            .create_instance(&post("c1", &[("raw.lxc", "lxc.x=1")]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("raw.lxc"), "{e}");
        let e = d
            .client
            .create_instance(&post("c1", &[("limits.memory", "12XB")]))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        let mut p = post("c1", &[]);
        p.source.fingerprint = "0000".into();
        assert_eq!(
            d.client.create_instance(&p).await.unwrap_err().status(),
            Some(404)
        );
        assert!(d.client.instance_names().await.unwrap().is_empty());
        assert!(
            std::fs::read_dir(d.dir.join("storage-pools/default/containers"))
                .unwrap()
                .next()
                .is_none()
        );

        // Duplicate name.
        d.create(&fp, "c1", &[]).await;
        assert_eq!(
            d.client
                .create_instance(&post("c1", &[]))
                .await
                .unwrap_err()
                .status(),
            Some(409)
        );

        // A truncated image: a clear error, no half-imported image.
        let img = TestImage::Busybox.path();
        let bytes = std::fs::read(&img).unwrap();
        let cut =
            std::env::temp_dir().join(format!("kante-truncated-{}.tar.zst", std::process::id()));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = d
            .client
            .upload_image(&cut, &Default::default(), |_, _| {})
            .await
            .unwrap_err();
        std::fs::remove_file(&cut).unwrap();
        assert!(e.to_string().contains("truncated or corrupt"), "{e}");
        assert_eq!(d.client.images().await.unwrap().len(), 1);
        let stored: Vec<_> = std::fs::read_dir(d.dir.join("images"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .collect();
        assert_eq!(stored.len(), 1, "{stored:?}");

        // Unknown state actions and instances.
        let e = d
            .client
            .set_instance_state(
                "c1",
                &InstanceStatePut {
                    action: "dance".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        assert!(d.client.instance("nope").await.unwrap_err().is_not_found());
        d.shutdown().await;
    });
}

#[test]
fn console_log_records_init_output() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;
        // busybox init writes to /dev/console, which the monitor logs.
        d.client
            .exec_capture(
                "c1",
                &["sh", "-c", "echo hello-console > /dev/console"],
                &[],
                None,
            )
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log =
                String::from_utf8_lossy(&d.client.console_log("c1").await.unwrap()).into_owned();
            if log.contains("hello-console") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "console log: {log:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d.shutdown().await;
    });
}

#[test]
fn a_failed_start_leaves_no_cgroup_or_process() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.create(&fp, "broken", &[]).await;
        // An init that cannot be executed: the monitor's start fails after the
        // namespaces, mounts and cgroups were made, and must undo them.
        d.client.file_delete("broken", "/sbin/init").await.unwrap();
        let opts = FilePushOptions {
            uid: Some(0),
            gid: Some(0),
            mode: Some(0o644),
            append: false,
        };
        d.client
            .file_push_bytes("broken", "/sbin/init", b"not a program".to_vec(), &opts)
            .await
            .unwrap();
        let e = d.client.start_instance("broken").await.unwrap_err();
        assert!(e.to_string().contains("/sbin/init"), "{e}");
        assert_eq!(d.client.instance("broken").await.unwrap().status, "Stopped");
        let leaks = kante_integration::leaks_of(&d.dir, &d.cgroup_prefix());
        assert!(leaks.is_empty(), "{leaks:#?}");
        // An instance without any init is refused before anything is made.
        let mut post = kante_api::instance::InstancesPost {
            name: "empty".into(),
            ..Default::default()
        };
        post.source.kind = "none".into();
        d.client.create_instance(&post).await.unwrap();
        let e = d.client.start_instance("empty").await.unwrap_err();
        assert!(e.to_string().contains("/sbin/init"), "{e}");
        d.shutdown().await;
    });
}

#[test]
fn instances_are_recovered_from_backup_yaml_when_the_database_is_lost() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "keep", &[("user.note", "survives")]).await;
        let pid = d.init_pid("keep").await;
        d.kill9();
        for f in ["kante.db", "kante.db-wal", "kante.db-shm"] {
            let _ = std::fs::remove_file(d.dir.join("database").join(f));
        }
        d.restart().await;
        let i = d.client.instance("keep").await.unwrap();
        assert_eq!(i.config["user.note"], "survives");
        assert_eq!(
            i.status, "Running",
            "the running container is re-attached too"
        );
        assert_eq!(d.init_pid("keep").await, pid);
        d.shutdown().await;
    });
}

/// The host pid of the one process whose command line is exactly `cmd`
/// (arguments joined by spaces), once it exists.
async fn wait_for_process(cmd: &str) -> i32 {
    for _ in 0..200 {
        let found: Vec<i32> = processes_mentioning(cmd)
            .iter()
            .filter_map(|l| {
                let (pid, line) = l.split_once(' ')?;
                (line.trim_end() == cmd).then(|| pid.parse().ok())?
            })
            .collect();
        if let [pid] = found[..] {
            return pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no single process runs {cmd:?}");
}
