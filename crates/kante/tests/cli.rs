//! The `kante` binary against the real API: `kante_http::router` over a
//! real engine on fakes of the host (`kante_http::testing::TestDaemon`).

use std::process::{Command, Output, Stdio};

use kante_engine::testing::{self, image, FAKE_PID_BASE};
use kante_http::testing::TestDaemon;

fn kante(d: &TestDaemon, args: &[&str]) -> Output {
    kante_stdin(d, args, None)
}

fn kante_stdin(d: &TestDaemon, args: &[&str], input: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kante"))
        .args(args)
        .env("KANTE_DIR", d.kante_dir())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(data) = input {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A daemon with the test image as `bookworm`, `trc-run` running and
/// `trc-stopped` stopped; also returns the image's fingerprint.
fn daemon_fp() -> (TestDaemon, String) {
    let d = TestDaemon::start_background();
    let fp = d.block_on(async {
        let fp = d.host.import_image(&d.engine, "bookworm").await;
        d.host.launch(&d.engine, "trc-run", "bookworm").await;
        d.host
            .create(&d.engine, "trc-stopped", "bookworm", &[])
            .await;
        fp
    });
    (d, fp)
}

fn daemon() -> TestDaemon {
    daemon_fp().0
}

fn status(d: &TestDaemon, name: &str) -> String {
    testing::instance_status(&d.engine, name)
        .as_str()
        .to_string()
}

#[test]
fn list_prints_lxc_table() {
    let d = daemon();
    let o = kante(&d, &["list"]);
    assert!(o.status.success(), "{}", err(&o));
    // The fake runtime's guests have no network state.
    let expected = "\
+-------------+---------+------+------+-----------+-----------+
|    NAME     |  STATE  | IPV4 | IPV6 |   TYPE    | SNAPSHOTS |
+-------------+---------+------+------+-----------+-----------+
| trc-run     | RUNNING |      |      | CONTAINER | 0         |
+-------------+---------+------+------+-----------+-----------+
| trc-stopped | STOPPED |      |      | CONTAINER | 0         |
+-------------+---------+------+------+-----------+-----------+
";
    assert_eq!(out(&o), expected);
    assert!(d
        .lines()
        .contains(&"GET /1.0/instances?recursion=2".to_string()));

    let o = kante(&d, &["list", "-c", "ns", "--format", "csv", "trc-r"]);
    assert_eq!(out(&o), "trc-run,RUNNING\n");
    assert!(d
        .lines()
        .contains(&"GET /1.0/instances?recursion=1".to_string()));

    let o = kante(&d, &["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert!(v[0]["state"]["pid"].as_i64().unwrap() > FAKE_PID_BASE as i64);
}

#[test]
fn launch_creates_and_starts() {
    let (d, fp) = daemon_fp();
    let o = kante(
        &d,
        &["launch", "bookworm", "c3", "-c", "limits.memory=256MiB"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "Creating c3\nStarting c3\n");
    let v = d.last("POST /1.0/instances").unwrap().json();
    assert_eq!(v["source"]["fingerprint"], fp);
    assert!(v["profiles"].is_null());
    assert_eq!(v["config"]["limits.memory"], "256MiB");
    let v = d.last("PUT /1.0/instances/c3/state").unwrap().json();
    assert_eq!(
        (v["action"].as_str(), v["timeout"].as_i64()),
        (Some("start"), Some(-1))
    );
    assert_eq!(status(&d, "c3"), "Running");
    assert_eq!(
        d.block_on(testing::instance_row(&d.engine, "c3"))
            .unwrap()
            .config["limits.memory"],
        "256MiB"
    );

    // Without a name the server picks one.
    let o = kante(&d, &["init", "bookworm"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("Instance name is: kante-"), "{}", out(&o));
}

#[test]
fn launch_wait_polls_systemd() {
    let d = daemon();
    for (alias, states) in [
        ("slowboot", "initializing\nstarting\ndegraded\n"),
        ("broken", "maintenance\n"),
    ] {
        let spec = image::Spec {
            file_name: format!("{alias}.tar.gz"),
            files: vec![("/run/fake-systemd".into(), states.into(), 0o644)],
            ..Default::default()
        };
        let tarball = image::build(d.scratch(), &spec);
        d.block_on(testing::import_tarball(&d.engine, &tarball, Some(alias)));
    }
    let o = kante(&d, &["launch", "slowboot", "w1", "--wait"]);
    assert!(o.status.success(), "{}", err(&o));
    let polls = d
        .host
        .runtime
        .calls_for("w1")
        .iter()
        .filter(|c| *c == "exec w1 systemctl is-system-running")
        .count();
    assert_eq!(polls, 3, "{:?}", d.host.runtime.calls_for("w1"));
    let states = std::fs::read_to_string(d.rootfs("w1").join("run/fake-systemd")).unwrap();
    assert!(states.is_empty(), "every state was read: {states:?}");

    let o = kante(&d, &["launch", "broken", "w2", "--wait"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "Error: Instance w2 did not boot cleanly: systemd reports \"maintenance\"\n"
    );
}

#[test]
fn errors_are_one_line() {
    let d = daemon();
    let o = kante(&d, &["launch", "nosuchimage", "trc-x"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(out(&o), "Creating trc-x\n");
    assert_eq!(err(&o), "Error: Image not found\n");

    let o = kante(&d, &["info", "trc-nope"]);
    assert_eq!(err(&o), "Error: Instance not found\n");

    let o = kante(&d, &["exec", "trc-stopped", "--", "true"]);
    assert_eq!(
        (o.status.code(), err(&o)),
        (Some(1), "Error: Instance is not running\n".to_string())
    );

    let o = kante(&d, &["start", "trc-run"]);
    assert_eq!(err(&o), "Error: The instance is already running\n");

    let o = kante(&d, &["launch", "bookworm", "bad_name"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o).lines().count(), 1);
    assert!(
        err(&o).starts_with("Error: Instance name \"bad_name\""),
        "{}",
        err(&o)
    );

    let o = kante(&d, &["frobnicate"]);
    assert_eq!((o.status.code(), err(&o).lines().count()), (Some(1), 1));
    assert!(err(&o).starts_with("Error: "));

    let gone = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kante"))
        .arg("list")
        .env("KANTE_DIR", gone.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("Error: Failed to connect to the Kante daemon at "),
        "{e}"
    );
}

#[test]
fn exec_passes_streams_and_exit_code() {
    let d = daemon();
    let o = kante(
        &d,
        &[
            "exec",
            "trc-run",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!((out(&o).as_str(), err(&o).as_str()), ("out\n", "err\n"));

    let o = kante_stdin(
        &d,
        &["exec", "trc-run", "--env", "A=B", "--", "cat"],
        Some(b"hello\n"),
    );
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), "hello\n"));
    let post = d.last("POST /1.0/instances/trc-run/exec").unwrap().json();
    assert_eq!(post["interactive"], false);
    assert_eq!(post["environment"]["A"], "B");

    let o = kante(&d, &["exec", "trc-run", "--", "nosuch"]);
    assert_eq!(o.status.code(), Some(127));
}

#[test]
fn delete_refuses_running_unless_forced() {
    let d = daemon();
    let o = kante(&d, &["delete", "trc-run"]);
    assert_eq!(
        err(&o),
        "Error: The instance is currently running, stop it first or pass --force\n"
    );
    assert!(!d.lines().iter().any(|l| l.starts_with("DELETE")));
    let o = kante(&d, &["delete", "-f", "trc-run", "trc-stopped"]);
    assert!(o.status.success(), "{}", err(&o));
    let v = d.last("PUT /1.0/instances/trc-run/state").unwrap().json();
    assert_eq!(
        (v["action"].as_str(), v["force"].as_bool()),
        (Some("stop"), Some(true))
    );
    assert!(d
        .block_on(testing::instance_names(&d.engine))
        .unwrap()
        .is_empty());
}

#[test]
fn lifecycle_verbs() {
    let d = daemon();
    assert!(kante(&d, &["pause", "trc-run"]).status.success());
    assert_eq!(status(&d, "trc-run"), "Frozen");
    assert!(kante(&d, &["start", "trc-run"]).status.success());
    let last_state = d
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.line.ends_with("/state"))
        .unwrap();
    assert_eq!(last_state.json()["action"], "unfreeze");
    assert_eq!(status(&d, "trc-run"), "Running");
    assert!(kante(&d, &["stop", "trc-run"]).status.success());
    assert_eq!(status(&d, "trc-run"), "Stopped");
    // A stopped instance cannot be restarted (the old fake daemon let it).
    let o = kante(&d, &["restart", "trc-run", "-f"]);
    assert_eq!(err(&o), "Error: The instance is already stopped\n");
    assert!(kante(&d, &["start", "trc-run"]).status.success());
    let pid = d.host.runtime.pid("trc-run");
    assert!(kante(&d, &["restart", "trc-run", "-f"]).status.success());
    assert_eq!(status(&d, "trc-run"), "Running");
    assert_ne!(d.host.runtime.pid("trc-run"), pid);
    assert!(kante(&d, &["rename", "trc-stopped", "trc-new"])
        .status
        .success());
    assert!(d
        .block_on(testing::instance_row(&d.engine, "trc-new"))
        .is_ok());
}

#[test]
fn file_push_pull_delete() {
    let d = daemon();
    let rootfs = d.rootfs("trc-run");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("hello.txt");
    std::fs::write(&local, "hi there\n").unwrap();
    std::fs::set_permissions(&local, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = kante(
        &d,
        &["file", "push", local.to_str().unwrap(), "trc-run/root/"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let pushed = rootfs.join("root/hello.txt");
    assert_eq!(std::fs::read(&pushed).unwrap(), b"hi there\n");
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o7777
    };
    assert_eq!(mode(&pushed), 0o600);

    let o = kante(
        &d,
        &[
            "file",
            "push",
            "--mode",
            "0644",
            local.to_str().unwrap(),
            "trc-run/opt/new/x",
            "-p",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(mode(&rootfs.join("opt/new/x")), 0o644);
    assert!(rootfs.join("opt/new").is_dir());

    // A symlink is followed on pull, like lxc.
    std::fs::remove_file(rootfs.join("etc/os-release")).unwrap();
    std::os::unix::fs::symlink("../root/hello.txt", rootfs.join("etc/os-release")).unwrap();
    let o = kante(&d, &["file", "pull", "trc-run/etc/os-release", "-"]);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), "hi there\n"));

    let target = dir.path().join("pulled");
    let o = kante(
        &d,
        &[
            "file",
            "pull",
            "trc-run/root/hello.txt",
            target.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "hi there\n");

    let o = kante(&d, &["file", "pull", "trc-run", "-"]);
    assert_eq!(
        err(&o),
        "Error: Invalid path \"trc-run\": expected <instance>/<path>\n"
    );
    let o = kante(&d, &["file", "pull", "trc-run/nonexistent", "-"]);
    assert_eq!(err(&o), "Error: No such file or directory\n");

    assert!(kante(&d, &["file", "delete", "trc-run/root/hello.txt"])
        .status
        .success());
    assert!(!pushed.exists());
}

#[test]
fn file_push_recursive() {
    let d = daemon();
    let rootfs = d.rootfs("trc-run");
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("pushdir");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(tree.join("sub/b.txt"), "beta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", tree.join("link")).unwrap();
    let o = kante(
        &d,
        &[
            "file",
            "push",
            "-r",
            tree.to_str().unwrap(),
            "trc-run/root/",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let pushed = rootfs.join("root/pushdir");
    assert!(pushed.is_dir());
    assert_eq!(std::fs::read(pushed.join("sub/b.txt")).unwrap(), b"beta\n");
    assert_eq!(
        std::fs::read_link(pushed.join("link")).unwrap().to_str(),
        Some("a.txt")
    );

    let back = dir.path().join("back");
    let o = kante(
        &d,
        &[
            "file",
            "pull",
            "-r",
            "trc-run/root/pushdir",
            back.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(back.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    assert_eq!(
        std::fs::read_link(back.join("link")).unwrap().to_str(),
        Some("a.txt")
    );
}

#[test]
fn config_set_get_show_and_devices() {
    let d = daemon();
    let o = kante(&d, &["config", "set", "trc-run", "limits.memory", "256MiB"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(d.last("PUT /1.0/instances/trc-run").is_some());
    assert_eq!(
        out(&kante(&d, &["config", "get", "trc-run", "limits.memory"])),
        "256MiB\n"
    );
    // Applied live to the running guest's cgroup.
    let cg = d
        .host
        .runtime
        .cgroup_dir(&d.engine.paths.instance_cgroup("trc-run"));
    assert_eq!(
        std::fs::read_to_string(cg.join("memory.max")).unwrap(),
        "268435456"
    );

    let o = kante(&d, &["config", "set", "trc-run", "limits.memory=bogus"]);
    assert_eq!(err(&o).lines().count(), 1);
    assert!(
        err(&o).starts_with("Error: Invalid value for limits.memory"),
        "{}",
        err(&o)
    );

    let o = kante_stdin(
        &d,
        &["config", "set", "trc-run", "user.network-config", "-"],
        Some(b"version: 2\n"),
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&kante(
            &d,
            &["config", "get", "trc-run", "user.network-config"]
        )),
        "version: 2\n\n"
    );

    let data = d.scratch().join("data");
    std::fs::create_dir(&data).unwrap();
    let source = format!("source={}", data.display());
    let add = [
        "config",
        "device",
        "add",
        "trc-run",
        "data",
        "disk",
        source.as_str(),
        "path=/mnt/data",
    ];
    let o = kante(&d, &add);
    assert_eq!(out(&o), "Device data added to trc-run\n", "{}", err(&o));
    assert_eq!(d.host.runtime.mounts("trc-run"), ["/mnt/data"]);
    let o = kante(&d, &add);
    assert_eq!(err(&o), "Error: The device already exists\n");
    let show = out(&kante(&d, &["config", "show", "trc-run"]));
    assert!(
        show.starts_with("architecture: x86_64\nconfig:\n"),
        "{show}"
    );
    assert!(
        show.contains("devices:\n  data:\n    path: /mnt/data\n"),
        "{show}"
    );
    assert!(
        show.ends_with("profiles:\n- default\nstateful: false\ndescription: ''\n"),
        "{show}"
    );
    let o = kante(&d, &["config", "device", "remove", "trc-run", "data"]);
    assert_eq!(out(&o), "Device data removed from trc-run\n");
    assert!(d.host.runtime.mounts("trc-run").is_empty());
    assert!(kante(&d, &["config", "unset", "trc-run", "limits.memory"])
        .status
        .success());
    assert_eq!(
        out(&kante(&d, &["config", "get", "trc-run", "limits.memory"])),
        "\n"
    );
}

#[test]
fn images_import_list_alias_delete() {
    let (d, fp0) = daemon_fp();
    let spec = image::Spec {
        file_name: "busybox-amd64.tar.gz".into(),
        description: "Another image".into(),
        ..Default::default()
    };
    let tarball = image::build(d.scratch(), &spec);
    let o = kante(
        &d,
        &[
            "image",
            "import",
            tarball.to_str().unwrap(),
            "--alias",
            "bb",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let fp = out(&o).trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(fp.len(), 64);
    assert_eq!(
        d.block_on(testing::alias_get(&d.engine, "bb"))
            .unwrap()
            .target,
        fp
    );
    // Importing again uploads nothing: the fingerprint is known.
    let uploads = |d: &TestDaemon| {
        d.lines()
            .iter()
            .filter(|l| *l == "POST /1.0/images")
            .count()
    };
    let before = uploads(&d);
    assert!(kante(&d, &["image", "import", tarball.to_str().unwrap()])
        .status
        .success());
    assert_eq!(uploads(&d), before);

    let list = out(&kante(&d, &["image", "list", "-f", "csv"]));
    assert!(
        list.contains(&format!(
            "bookworm,{},no,Kante test image,x86_64,CONTAINER,",
            &fp0[..12]
        )),
        "{list}"
    );
    assert!(
        list.contains(&format!(
            "bb,{},no,Another image,x86_64,CONTAINER,",
            &fp[..12]
        )),
        "{list}"
    );

    let info = out(&kante(&d, &["image", "info", "bookworm"]));
    assert!(info.starts_with(&format!("Fingerprint: {fp0}\n")), "{info}");
    assert!(kante(&d, &["image", "alias", "create", "deb", &fp0[..6]])
        .status
        .success());
    assert_eq!(
        d.block_on(testing::alias_get(&d.engine, "deb"))
            .unwrap()
            .target,
        fp0
    );
    assert!(kante(&d, &["image", "alias", "delete", "deb"])
        .status
        .success());
    assert_eq!(
        d.block_on(testing::alias_get(&d.engine, "deb"))
            .unwrap_err()
            .status(),
        404
    );
    assert!(kante(&d, &["image", "delete", "bb"]).status.success());
    assert_eq!(
        d.block_on(testing::image_get(&d.engine, &fp))
            .unwrap_err()
            .status(),
        404
    );
}

#[test]
fn info_and_console_log() {
    let d = daemon();
    let pid = d.host.runtime.pid("trc-run").unwrap();
    let o = kante(&d, &["info", "trc-run", "--show-log"]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with(&format!(
            "Name: trc-run\nStatus: RUNNING\nType: container\nArchitecture: x86_64\nPID: {pid}\n"
        )),
        "{text}"
    );
    assert!(text.contains("    Memory (current): 32.00MiB\n"), "{text}");
    assert!(
        text.ends_with("\nLog:\n\n[fake init] trc-run booted\n"),
        "{text}"
    );
    // lxc's layout: a heading, the log, a new line.
    assert_eq!(
        out(&kante(&d, &["console", "trc-run", "--show-log"])),
        "\nConsole log:\n\n[fake init] trc-run booted\n\n"
    );
    assert_eq!(
        out(&kante(&d, &["version"])),
        format!(
            "Client version: {v}\nServer version: {v}\n",
            v = env!("CARGO_PKG_VERSION")
        )
    );
}

/// Interactive exec under a real pty (util-linux `script`), when available.
#[test]
fn interactive_exec_under_a_pty() {
    if Command::new("script").arg("--version").output().is_err() {
        // Under scripts/test.sh (KANTE_REQUIRE_ALL=1) util-linux is there.
        assert_ne!(
            std::env::var("KANTE_REQUIRE_ALL").as_deref(),
            Ok("1"),
            "missing prerequisite: script (util-linux)"
        );
        eprintln!("SKIPPED: no `script` (util-linux)");
        return;
    }
    let d = daemon();
    let cmd = format!(
        "stty rows 30 cols 100; {} exec trc-run -- stty size",
        env!("CARGO_BIN_EXE_kante")
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KANTE_DIR", d.kante_dir())
        .env("TERM", "xterm-test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // script's stdin stays open (a pipe nobody writes to): kante must end
    // when the remote command ends, not when its input does.
    let mut o = o;
    let _keep_open = o.stdin.take();
    let o = o.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("30 100\r\n"), "{:?}", out(&o));
    let post = d.last("POST /1.0/instances/trc-run/exec").unwrap().json();
    assert_eq!(post["interactive"], true);
    assert_eq!(
        (post["width"].as_i64(), post["height"].as_i64()),
        (Some(100), Some(30))
    );
    assert_eq!(post["environment"]["TERM"], "xterm-test");
}

#[test]
fn exec_forwards_sigterm() {
    let d = daemon();
    let child = Command::new(env!("CARGO_BIN_EXE_kante"))
        .args(["exec", "trc-run", "--", "sleep", "30"])
        .env("KANTE_DIR", d.kante_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // kante installs its handlers before it POSTs the exec; wait for the
    // command to run.
    let t = std::time::Instant::now();
    while !d
        .host
        .runtime
        .calls_for("trc-run")
        .contains(&"exec trc-run sleep 30".to_string())
        && t.elapsed() < std::time::Duration::from_secs(20)
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    // The signal reached the command, which died of it (128 + 15).
    assert_eq!(o.status.code(), Some(143), "{}", err(&o));
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn exec_into_a_closed_pipe_ends() {
    let d = daemon();
    // 8 MB of output; `head -c 10` closes the pipe early.
    let cmd = format!(
        "{} exec trc-run -- head -c 8000000 /dev/zero | head -c 10",
        env!("CARGO_BIN_EXE_kante")
    );
    let o = Command::new("sh")
        .args(["-c", &cmd])
        .env("KANTE_DIR", d.kante_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.stdout, [0u8; 10]);
    assert_eq!(err(&o), "");
}
