//! The `kante` binary against the in-memory fake daemon of kante-client's tests.

#[path = "../../kante-client/tests/fake/mod.rs"]
mod fake;

use std::process::{Command, Output, Stdio};

use fake::FakeDaemon;
use kante_api::StatusCode;

const FP: &str = "e8b1265df84efdf3241ce4d57cde793e33a564fd76c38a5b0ad8938a45ea6d8f";

fn kante(d: &FakeDaemon, args: &[&str]) -> Output {
    kante_stdin(d, args, None)
}

fn kante_stdin(d: &FakeDaemon, args: &[&str], input: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kante"))
        .args(args)
        .env("KANTE_DIR", d.dir.path())
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

fn daemon() -> FakeDaemon {
    let d = FakeDaemon::start_background();
    d.add_image(FP, Some("bookworm"));
    d.add_instance("trc-run", StatusCode::Running);
    d.add_instance("trc-stopped", StatusCode::Stopped);
    d
}

#[test]
fn list_prints_lxc_table() {
    let d = daemon();
    let o = kante(&d, &["list"]);
    assert!(o.status.success(), "{}", err(&o));
    let expected = "\
+-------------+---------+-----------------+------+-----------+-----------+
|    NAME     |  STATE  |      IPV4       | IPV6 |   TYPE    | SNAPSHOTS |
+-------------+---------+-----------------+------+-----------+-----------+
| trc-run     | RUNNING | 10.0.3.5 (eth0) |      | CONTAINER | 0         |
+-------------+---------+-----------------+------+-----------+-----------+
| trc-stopped | STOPPED |                 |      | CONTAINER | 0         |
+-------------+---------+-----------------+------+-----------+-----------+
";
    assert_eq!(out(&o), expected);
    assert!(d.with(|s| s
        .log
        .contains(&"GET /1.0/instances?recursion=2".to_string())));

    let o = kante(&d, &["list", "-c", "ns", "--format", "csv", "trc-r"]);
    assert_eq!(out(&o), "trc-run,RUNNING\n");
    assert!(d.with(|s| s
        .log
        .contains(&"GET /1.0/instances?recursion=1".to_string())));

    let o = kante(&d, &["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v[0]["state"]["pid"], 4242);
}

#[test]
fn launch_creates_and_starts() {
    let d = daemon();
    let o = kante(
        &d,
        &["launch", "bookworm", "c3", "-c", "limits.memory=256MiB"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "Creating c3\nStarting c3\n");
    let body = d.with(|s| {
        s.bodies
            .iter()
            .find(|(l, _)| l == "POST /1.0/instances")
            .unwrap()
            .1
            .clone()
    });
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["source"]["fingerprint"], FP);
    assert!(v["profiles"].is_null());
    assert_eq!(v["config"]["limits.memory"], "256MiB");
    let start = d.with(|s| {
        s.bodies
            .iter()
            .find(|(l, _)| l == "PUT /1.0/instances/c3/state")
            .unwrap()
            .1
            .clone()
    });
    let v: serde_json::Value = serde_json::from_slice(&start).unwrap();
    assert_eq!(
        (v["action"].as_str(), v["timeout"].as_i64()),
        (Some("start"), Some(-1))
    );

    // Without a name the server picks one.
    let o = kante(&d, &["init", "bookworm", "--no-profiles"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("Instance name is: auto-"), "{}", out(&o));
}

#[test]
fn launch_wait_polls_systemd() {
    let d = daemon();
    d.with(|s| {
        s.systemd_states.extend([
            "initializing".to_string(),
            "starting".into(),
            "degraded".into(),
        ])
    });
    let o = kante(&d, &["launch", "bookworm", "w1", "--wait"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(d.with(|s| s.systemd_states.is_empty()));
    let posts = d.with(|s| s.exec_posts.clone());
    assert_eq!(
        posts[0]["command"],
        serde_json::json!(["systemctl", "is-system-running"])
    );

    d.with(|s| s.systemd_states.push_back("maintenance".into()));
    let o = kante(&d, &["launch", "bookworm", "w2", "--wait"]);
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
    let o = kante(&d, &["exec", "trc-run", "--", "fail"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!((out(&o).as_str(), err(&o).as_str()), ("out\n", "err\n"));

    let o = kante_stdin(
        &d,
        &["exec", "trc-run", "--env", "A=B", "--", "cat"],
        Some(b"hello\n"),
    );
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), "hello\n"));
    let post = d.with(|s| s.exec_posts.last().unwrap().clone());
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
    assert!(!d.with(|s| s.log.iter().any(|l| l.starts_with("DELETE"))));
    let o = kante(&d, &["delete", "-f", "trc-run", "trc-stopped"]);
    assert!(o.status.success(), "{}", err(&o));
    let stop = d.with(|s| {
        s.bodies
            .iter()
            .find(|(l, _)| l == "PUT /1.0/instances/trc-run/state")
            .unwrap()
            .1
            .clone()
    });
    let v: serde_json::Value = serde_json::from_slice(&stop).unwrap();
    assert_eq!(
        (v["action"].as_str(), v["force"].as_bool()),
        (Some("stop"), Some(true))
    );
    assert!(d.with(|s| s.instances.is_empty()));
}

#[test]
fn lifecycle_verbs() {
    let d = daemon();
    assert!(kante(&d, &["pause", "trc-run"]).status.success());
    assert_eq!(
        d.with(|s| s.instances["trc-run"].status),
        StatusCode::Frozen
    );
    assert!(kante(&d, &["start", "trc-run"]).status.success());
    let last_state = d.with(|s| {
        s.bodies
            .iter()
            .rev()
            .find(|(l, _)| l.ends_with("/state"))
            .unwrap()
            .1
            .clone()
    });
    assert!(String::from_utf8_lossy(&last_state).contains("\"unfreeze\""));
    assert!(kante(&d, &["stop", "trc-run"]).status.success());
    assert!(kante(&d, &["restart", "trc-run", "-f"]).status.success());
    assert_eq!(
        d.with(|s| s.instances["trc-run"].status),
        StatusCode::Running
    );
    assert!(kante(&d, &["rename", "trc-stopped", "trc-new"])
        .status
        .success());
    assert!(d.with(|s| s.instances.contains_key("trc-new")));
}

#[test]
fn file_push_pull_delete() {
    let d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("hello.txt");
    std::fs::write(&local, "hi there\n").unwrap();
    std::fs::set_permissions(&local, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = kante(
        &d,
        &["file", "push", local.to_str().unwrap(), "trc-run/root/"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let f = d.with(|s| s.files[&("trc-run".to_string(), "/root/hello.txt".to_string())].clone());
    assert_eq!((f.data.as_slice(), f.mode), (&b"hi there\n"[..], 0o600));

    let o = kante(
        &d,
        &[
            "file",
            "push",
            "--mode",
            "0644",
            local.to_str().unwrap(),
            "trc-run/etc/x",
            "-p",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        d.with(|s| s.files[&("trc-run".to_string(), "/etc/x".to_string())].mode),
        0o644
    );
    assert!(d.with(|s| s
        .files
        .contains_key(&("trc-run".to_string(), "/etc".to_string()))));

    // A symlink is followed on pull, like lxc.
    d.with(|s| {
        s.files.insert(
            ("trc-run".into(), "/etc/os-release".into()),
            fake::FakeFile {
                kind: "symlink",
                data: b"../root/hello.txt".to_vec(),
                uid: 0,
                gid: 0,
                mode: 0o777,
            },
        )
    });
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
    assert_eq!(err(&o), "Error: Not Found\n");

    assert!(kante(&d, &["file", "delete", "trc-run/root/hello.txt"])
        .status
        .success());
    assert!(!d.with(|s| s
        .files
        .contains_key(&("trc-run".to_string(), "/root/hello.txt".to_string()))));
}

#[test]
fn file_push_recursive() {
    let d = daemon();
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
    let files = d.with(|s| s.files.clone());
    let get = |p: &str| files[&("trc-run".to_string(), p.to_string())].clone();
    assert_eq!(get("/root/pushdir").kind, "directory");
    assert_eq!(get("/root/pushdir/sub/b.txt").data, b"beta\n");
    assert_eq!(
        (
            get("/root/pushdir/link").kind,
            get("/root/pushdir/link").data
        ),
        ("symlink", b"a.txt".to_vec())
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
    let h = d.with(|s| {
        s.headers
            .iter()
            .find(|(l, _)| l == "PUT /1.0/instances/trc-run")
            .unwrap()
            .1
            .clone()
    });
    assert_eq!(h["if-match"], "\"etag-1\"");
    assert_eq!(
        out(&kante(&d, &["config", "get", "trc-run", "limits.memory"])),
        "256MiB\n"
    );

    let o = kante(&d, &["config", "set", "trc-run", "limits.memory=bogus"]);
    assert_eq!(err(&o), "Error: Invalid config: Invalid value: bogus\n");

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

    let o = kante(
        &d,
        &[
            "config",
            "device",
            "add",
            "trc-run",
            "data",
            "disk",
            "source=/tmp",
            "path=/mnt/data",
        ],
    );
    assert_eq!(out(&o), "Device data added to trc-run\n");
    let o = kante(
        &d,
        &[
            "config",
            "device",
            "add",
            "trc-run",
            "data",
            "disk",
            "source=/tmp",
            "path=/mnt/data",
        ],
    );
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
    let d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("busybox-amd64.tar.zst");
    std::fs::write(&tarball, vec![5u8; 4096]).unwrap();
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
    assert_eq!(d.with(|s| s.aliases["bb"].target.clone()), fp);
    // Importing again uploads nothing: the fingerprint is known.
    let uploads = d.with(|s| s.log.iter().filter(|l| *l == "POST /1.0/images").count());
    assert!(kante(&d, &["image", "import", tarball.to_str().unwrap()])
        .status
        .success());
    assert_eq!(
        d.with(|s| s.log.iter().filter(|l| *l == "POST /1.0/images").count()),
        uploads
    );

    let list = out(&kante(&d, &["image", "list", "-f", "csv"]));
    assert!(
        list.contains("bookworm,e8b1265df84e,no,Debian bookworm amd64,x86_64,CONTAINER,96.27MB,"),
        "{list}"
    );
    assert!(
        list.contains(&format!(
            "bb,{},no,Debian bookworm amd64,x86_64,CONTAINER,0.00MB,",
            &fp[..12]
        )),
        "{list}"
    );

    let info = out(&kante(&d, &["image", "info", "bookworm"]));
    assert!(info.starts_with(&format!("Fingerprint: {FP}\n")), "{info}");
    assert!(kante(&d, &["image", "alias", "create", "deb", "e8b1"])
        .status
        .success());
    assert_eq!(d.with(|s| s.aliases["deb"].target.clone()), FP);
    assert!(kante(&d, &["image", "alias", "delete", "deb"])
        .status
        .success());
    assert!(kante(&d, &["image", "delete", "bb"]).status.success());
    assert!(!d.with(|s| s.images.contains_key(&fp)));
}

#[test]
fn info_and_console_log() {
    let d = daemon();
    d.with(|s| s.console = "systemd booted\n".into());
    let o = kante(&d, &["info", "trc-run", "--show-log"]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with(
            "Name: trc-run\nStatus: RUNNING\nType: container\nArchitecture: x86_64\nPID: 4242\n"
        ),
        "{text}"
    );
    assert!(text.contains("    Memory (current): 26.71MiB\n"), "{text}");
    assert!(text.ends_with("\nLog:\n\nsystemd booted\n"), "{text}");
    assert_eq!(
        out(&kante(&d, &["console", "trc-run", "--show-log"])),
        "systemd booted\n"
    );
    assert_eq!(
        out(&kante(&d, &["version"])),
        format!(
            "Client version: {}\nServer version: 9.9.9\n",
            env!("CARGO_PKG_VERSION")
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
        "stty rows 30 cols 100; {} exec trc-run -- tty",
        env!("CARGO_BIN_EXE_kante")
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KANTE_DIR", d.dir.path())
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
    let post = d.with(|s| s.exec_posts.last().unwrap().clone());
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
        .args(["exec", "trc-run", "--", "wait-signal"])
        .env("KANTE_DIR", d.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // kante installs its handlers before it POSTs the exec; wait for the POST.
    let t = std::time::Instant::now();
    while d.with(|s| s.exec_posts.is_empty()) && t.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", err(&o));
    let msgs = d.with(|s| s.control_messages.clone());
    assert!(
        msgs.contains(&serde_json::json!({"command": "signal", "args": null, "signal": 15})),
        "{msgs:?}"
    );
}

#[test]
fn exec_into_a_closed_pipe_ends() {
    let d = daemon();
    // `big` writes 8 MB; `head -c 10` closes the pipe early.
    let cmd = format!(
        "{} exec trc-run -- big 8000000 | head -c 10",
        env!("CARGO_BIN_EXE_kante")
    );
    let o = Command::new("sh")
        .args(["-c", &cmd])
        .env("KANTE_DIR", d.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out(&o), "xxxxxxxxxx");
    assert_eq!(err(&o), "");
}
