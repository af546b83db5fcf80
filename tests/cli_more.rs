//! The `kante` verbs beyond instances and images, through the real binary
//! against a real daemon: profiles, snapshots and restore, copy and move,
//! storage pools and networks.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use kante_integration::{bin, run, Daemon, TestImage};

fn kante_in(d: &Daemon, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin("kante"))
        .args(args)
        .env("KANTE_DIR", &d.dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kante");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("wait for kante")
}

fn check_ok(args: &[&str], o: Output) -> String {
    assert!(
        o.status.success(),
        "kante {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    check_ok(args, kante_in(d, args, None))
}

fn ok_stdin(d: &Daemon, args: &[&str], stdin: &str) -> String {
    check_ok(args, kante_in(d, args, Some(stdin)))
}

/// A failure is one line on stderr, `Error: …`, and a non-zero exit.
fn fails(d: &Daemon, args: &[&str]) -> String {
    fails_stdin(d, args, None)
}

fn fails_stdin(d: &Daemon, args: &[&str], stdin: Option<&str>) -> String {
    let o = kante_in(d, args, stdin);
    assert!(
        !o.status.success(),
        "kante {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "kante {args:?}: expected one line, got {err:?}"
    );
    assert!(err.starts_with("Error: "), "{err:?}");
    err
}

/// The table row whose first cell is `name`.
fn row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table.lines().find(|l| l.starts_with(&format!("| {name} ")))
}

/// `/root/f` inside an instance, read through exec.
fn read_f(d: &Daemon, name: &str) -> String {
    ok(d, &["exec", name, "--", "cat", "/root/f"])
        .trim()
        .to_string()
}

fn write_f(d: &Daemon, name: &str, text: &str) {
    ok(
        d,
        &[
            "exec",
            name,
            "--",
            "sh",
            "-c",
            &format!("echo {text} > /root/f"),
        ],
    );
}

#[test]
fn profiles() {
    run(async {
        let d = Daemon::start().await;
        let img = TestImage::Busybox.path();
        let img = img.to_str().unwrap();
        ok(&d, &["image", "import", img, "--alias", "busybox"]);

        assert_eq!(ok(&d, &["profile", "create", "p1"]), "Profile p1 created\n");
        let e = fails(&d, &["profile", "create", "p1"]);
        assert!(e.contains("exists"), "{e}");
        ok(
            &d,
            &[
                "profile",
                "set",
                "p1",
                "limits.memory=128MiB",
                "user.tier=web",
            ],
        );
        ok(&d, &["profile", "set", "p1", "user.color", "blue"]);
        assert_eq!(
            ok(&d, &["profile", "get", "p1", "limits.memory"]),
            "128MiB\n"
        );
        assert_eq!(ok(&d, &["profile", "get", "p1", "user.color"]), "blue\n");
        let e = fails(&d, &["profile", "set", "p1", "no.such.key=1"]);
        assert!(e.contains("no.such.key"), "{e}");

        // Any host directory that holds no system or Kante state (not /tmp,
        // which holds this test's KANTE_DIR).
        let out = ok(
            &d,
            &[
                "profile",
                "device",
                "add",
                "p1",
                "data",
                "disk",
                "path=/mnt/data",
                "source=/usr/share/doc",
            ],
        );
        assert_eq!(out, "Device data added to p1\n");
        fails(
            &d,
            &[
                "profile",
                "device",
                "add",
                "p1",
                "data",
                "disk",
                "path=/x",
                "source=/usr/share/doc",
            ],
        );
        assert_eq!(ok(&d, &["profile", "device", "list", "p1"]), "data\n");
        let show = ok(&d, &["profile", "device", "show", "p1"]);
        assert!(
            show.contains("data:") && show.contains("path: /mnt/data"),
            "{show}"
        );

        let show = ok(&d, &["profile", "show", "p1"]);
        assert!(show.starts_with("config:\n"), "{show}");
        for needle in [
            "limits.memory: 128MiB",
            "user.tier: web",
            "source: /usr/share/doc",
            "type: disk",
            "name: p1",
            "used_by: []",
        ] {
            assert!(show.contains(needle), "{needle} missing in {show}");
        }

        ok(&d, &["profile", "unset", "p1", "user.tier"]);
        assert_eq!(ok(&d, &["profile", "get", "p1", "user.tier"]), "\n");
        let e = fails(&d, &["profile", "unset", "p1", "user.tier"]);
        assert!(e.contains("not set"), "{e}");

        // copy, then edit the copy from stdin (the non-terminal path).
        ok(&d, &["profile", "copy", "p1", "p2"]);
        assert_eq!(ok(&d, &["profile", "get", "p2", "user.color"]), "blue\n");
        let mut yaml = ok(&d, &["profile", "show", "p2"]);
        yaml = yaml.replace("description: ''", "description: edited by stdin");
        yaml = yaml.replace("user.color: blue", "user.color: red");
        ok_stdin(&d, &["profile", "edit", "p2"], &yaml);
        let show = ok(&d, &["profile", "show", "p2"]);
        assert!(
            show.contains("description: edited by stdin") && show.contains("user.color: red"),
            "{show}"
        );
        let e = fails_stdin(
            &d,
            &["profile", "edit", "p2"],
            Some("config:\n  no.such.key: x\n"),
        );
        assert!(e.contains("no.such.key"), "{e}");
        fails_stdin(
            &d,
            &["profile", "edit", "p2"],
            Some("config: [not, a, map\n"),
        );
        // Renamed and back; the default profile keeps its name.
        assert_eq!(
            ok(&d, &["profile", "rename", "p2", "p3"]),
            "Profile p2 renamed to p3\n"
        );
        ok(&d, &["profile", "rename", "p3", "p2"]);
        let e = fails(&d, &["profile", "rename", "default", "std"]);
        assert!(e.contains("cannot be renamed"), "{e}");

        let list = ok(&d, &["profile", "list"]);
        assert!(
            list.contains("|  NAME   |      DESCRIPTION      | USED BY |"),
            "{list}"
        );
        let p2 = row(&list, "p2").unwrap_or_else(|| panic!("{list}"));
        assert!(
            p2.contains("edited by stdin") && p2.contains("| 0 "),
            "{p2}"
        );
        assert!(row(&list, "default").is_some(), "{list}");
        let json: serde_json::Value =
            serde_json::from_str(&ok(&d, &["profile", "list", "--format", "json"])).unwrap();
        let names: Vec<&str> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{json}");
        assert!(names.contains(&"p1") && names.contains(&"p2"), "{json}");

        // Profiles on an instance.
        ok(&d, &["init", "busybox", "c1"]);
        assert_eq!(
            ok(&d, &["profile", "add", "c1", "p2"]),
            "Profile p2 added to c1\n"
        );
        fails(&d, &["profile", "add", "c1", "p2"]);
        assert_eq!(
            ok(&d, &["list", "c1", "-c", "nP", "--format", "csv"]),
            "c1,\"default\np2\"\n"
        );
        assert_eq!(
            ok(&d, &["config", "get", "c1", "user.color", "-e"]),
            "red\n"
        );
        let list = ok(&d, &["profile", "list"]);
        assert!(row(&list, "p2").unwrap().contains("| 1 "), "{list}");
        let e = fails(&d, &["profile", "delete", "p2"]);
        assert!(e.contains("in use"), "{e}");
        assert_eq!(
            ok(&d, &["profile", "remove", "c1", "p2"]),
            "Profile p2 removed from c1\n"
        );
        fails(&d, &["profile", "remove", "c1", "p2"]);
        ok(&d, &["profile", "assign", "c1", "default,p1"]);
        assert_eq!(
            ok(&d, &["list", "c1", "-c", "P", "--format", "csv"]),
            "\"default\np1\"\n"
        );
        ok(&d, &["profile", "assign", "c1", "default"]);

        assert_eq!(
            ok(&d, &["profile", "device", "remove", "p1", "data"]),
            "Device data removed from p1\n"
        );
        assert_eq!(ok(&d, &["profile", "device", "list", "p1"]), "");
        assert_eq!(
            ok(&d, &["profile", "delete", "p1", "p2"]),
            "Profile p1 deleted\nProfile p2 deleted\n"
        );
        fails(&d, &["profile", "show", "p1"]);
        let e = fails(&d, &["profile", "delete", "default"]);
        assert!(e.contains("default"), "{e}");
        ok(&d, &["delete", "c1"]);
        d.shutdown().await;
    });
}

#[test]
fn snapshots_copy_and_move() {
    run(async {
        let d = Daemon::start().await;
        let img = TestImage::Busybox.path();
        let img = img.to_str().unwrap();
        ok(&d, &["image", "import", img, "--alias", "busybox"]);
        ok(&d, &["launch", "busybox", "c1"]);
        write_f(&d, "c1", "one");

        assert_eq!(ok(&d, &["snapshot", "c1", "s0"]), "");
        let info = ok(&d, &["info", "c1"]);
        assert!(info.contains("\nSnapshots:\n"), "{info}");
        assert!(
            info.contains("TAKEN AT") && info.contains("STATEFUL"),
            "{info}"
        );
        let s0 = row(&info, "s0").unwrap_or_else(|| panic!("{info}"));
        assert!(s0.contains(" UTC ") && s0.ends_with("| NO       |"), "{s0}");
        assert_eq!(
            ok(&d, &["list", "c1", "-c", "nS", "--format", "csv"]),
            "c1,1\n"
        );
        let e = fails(&d, &["snapshot", "c1", "s0"]);
        assert!(e.contains("exists"), "{e}");
        fails(&d, &["snapshot", "c1", "bad/name"]);

        // Restore puts the file back.
        write_f(&d, "c1", "two");
        assert_eq!(read_f(&d, "c1"), "two");
        ok(&d, &["restore", "c1", "s0"]);
        assert_eq!(read_f(&d, "c1"), "one");
        fails(&d, &["restore", "c1", "nope"]);

        // --reuse replaces an existing snapshot; an unnamed one gets snapN.
        write_f(&d, "c1", "three");
        ok(&d, &["snapshot", "c1", "s0", "--reuse"]);
        write_f(&d, "c1", "four");
        ok(&d, &["restore", "c1", "s0"]);
        assert_eq!(read_f(&d, "c1"), "three");
        ok(&d, &["snapshot", "c1"]);
        let info = ok(&d, &["info", "c1"]);
        assert!(row(&info, "snap0").is_some(), "{info}");
        ok(&d, &["rename", "c1/snap0", "c1/s1"]);
        ok(&d, &["move", "c1/s1", "c1/s2"]);
        let info = ok(&d, &["info", "c1"]);
        assert!(
            row(&info, "s2").is_some() && row(&info, "snap0").is_none(),
            "{info}"
        );
        fails(&d, &["rename", "c1/s2", "c9/s3"]);
        fails(&d, &["move", "c1/s2", "c9"]);

        // A copy is independent of its source.
        ok(&d, &["copy", "c1", "c2"]);
        let list = ok(&d, &["list", "-c", "nsS", "--format", "csv"]);
        assert!(list.contains("c2,STOPPED,2\n"), "{list}");
        ok(&d, &["start", "c2"]);
        assert_eq!(read_f(&d, "c2"), "three");
        write_f(&d, "c2", "changed-in-c2");
        assert_eq!(read_f(&d, "c1"), "three");
        assert_eq!(read_f(&d, "c2"), "changed-in-c2");
        let e = fails(&d, &["copy", "c1", "c2"]);
        assert!(e.contains("exists"), "{e}");
        // A refresh needs the copy stopped (tests/storage_live.rs refreshes one).
        let e = fails(&d, &["copy", "c1", "c2", "--refresh"]);
        assert!(e.contains("stopped"), "{e}");

        // From a snapshot, without snapshots, with extra config.
        ok(&d, &["copy", "c1/s0", "c3", "-c", "user.origin=s0"]);
        let e = fails(&d, &["copy", "c1", "c5", "--no-profiles", "-p", "default"]);
        assert!(e.contains("--no-profiles"), "{e}");
        ok(&d, &["copy", "c1", "c6", "--instance-only"]);
        let list = ok(&d, &["list", "-c", "nS", "--format", "csv"]);
        assert!(list.contains("c3,0\n") && list.contains("c6,0\n"), "{list}");
        assert_eq!(ok(&d, &["config", "get", "c3", "user.origin"]), "s0\n");
        assert_eq!(ok(&d, &["file", "pull", "c3/root/f", "-"]).trim(), "three");
        fails(&d, &["copy", "c1/nope", "c7"]);

        // move on one server = a rename; a remote must be configured.
        ok(&d, &["stop", "c2", "--force"]);
        ok(&d, &["move", "c2", "c4"]);
        let list = ok(&d, &["list", "-c", "n", "--format", "csv"]);
        assert!(list.contains("c4\n") && !list.contains("c2\n"), "{list}");
        assert_eq!(
            ok(&d, &["file", "pull", "c4/root/f", "-"]).trim(),
            "changed-in-c2"
        );
        let e = fails(&d, &["move", "c4", "elsewhere:c4"]);
        assert!(e.contains("\"elsewhere\" doesn't exist"), "{e}");

        // delete INSTANCE/SNAPSHOT removes only the snapshot.
        ok(&d, &["delete", "c1/s0"]);
        let info = ok(&d, &["info", "c1"]);
        assert!(
            row(&info, "s0").is_none() && row(&info, "s2").is_some(),
            "{info}"
        );
        fails(&d, &["delete", "c1/s0"]);
        assert!(ok(&d, &["list", "-c", "n", "--format", "csv"]).contains("c1\n"));

        // No loopback address in the IPV4 column.
        let ips = ok(&d, &["list", "c1", "-c", "n4", "--format", "csv"]);
        assert!(!ips.contains("127.0.0.1") && !ips.contains("(lo)"), "{ips}");

        ok(&d, &["delete", "-f", "c1"]);
        d.shutdown().await;
    });
}

#[test]
fn storage_pools() {
    run(async {
        let d = Daemon::start().await;
        let list = ok(&d, &["storage", "list"]);
        assert!(
            list.contains("| DRIVER |") && list.contains("| DESCRIPTION | USED BY |  STATE  |"),
            "{list}"
        );
        let def = row(&list, "default").unwrap_or_else(|| panic!("{list}"));
        assert!(def.contains("| dir ") && def.contains("CREATED"), "{def}");
        let json: serde_json::Value =
            serde_json::from_str(&ok(&d, &["storage", "list", "-f", "json"])).unwrap();
        assert_eq!(json[0]["name"], "default");
        assert_eq!(json[0]["driver"], "dir");

        let show = ok(&d, &["storage", "show", "default"]);
        assert!(show.starts_with("config:\n"), "{show}");
        assert!(
            show.contains("name: default") && show.contains("driver: dir"),
            "{show}"
        );
        assert!(show.contains("- /1.0/profiles/default"), "{show}");
        let source = ok(&d, &["storage", "get", "default", "source"]);
        assert!(
            source.trim().starts_with(d.dir.to_str().unwrap()),
            "{source}"
        );

        let info = ok(&d, &["storage", "info", "default"]);
        assert!(info.starts_with("info:\n"), "{info}");
        assert!(
            info.contains("  driver: dir\n") && info.contains("  name: default\n"),
            "{info}"
        );
        assert!(
            info.contains("used by:\n  profiles:\n  - default\n"),
            "{info}"
        );

        ok(&d, &["storage", "set", "default", "user.team=edge"]);
        assert_eq!(
            ok(&d, &["storage", "get", "default", "user.team"]),
            "edge\n"
        );
        ok(&d, &["storage", "unset", "default", "user.team"]);
        assert_eq!(ok(&d, &["storage", "get", "default", "user.team"]), "\n");
        assert!(!ok(&d, &["storage", "show", "default"]).contains("user.team"));
        let e = fails(&d, &["storage", "set", "default", "source=/elsewhere"]);
        assert!(e.contains("source"), "{e}");

        let mut yaml = ok(&d, &["storage", "show", "default"]);
        yaml = yaml.replace("description: ''", "description: the default pool");
        ok_stdin(&d, &["storage", "edit", "default"], &yaml);
        let list = ok(&d, &["storage", "list"]);
        assert!(
            row(&list, "default").unwrap().contains("the default pool"),
            "{list}"
        );

        assert_eq!(
            ok(&d, &["storage", "create", "extra", "dir"]),
            "Storage pool extra created\n"
        );
        assert!(row(&ok(&d, &["storage", "list"]), "extra").is_some());
        fails(&d, &["storage", "create", "extra", "dir"]);
        fails(&d, &["storage", "create", "bad", "nosuchdriver"]);
        let e = fails(&d, &["storage", "delete", "default"]);
        assert!(e.contains("in use"), "{e}");
        assert_eq!(
            ok(&d, &["storage", "delete", "extra"]),
            "Storage pool extra deleted\n"
        );
        fails(&d, &["storage", "show", "extra"]);
        d.shutdown().await;
    });
}

#[test]
fn networks() {
    run(async {
        let d = Daemon::start().await;
        let list = ok(&d, &["network", "list"]);
        assert!(
            list.contains("MANAGED") && list.contains("USED BY"),
            "{list}"
        );
        let lo = row(&list, "lo").unwrap_or_else(|| panic!("{list}"));
        assert!(lo.contains("| loopback ") && lo.contains("| NO "), "{lo}");

        let show = ok(&d, &["network", "show", "lo"]);
        assert!(
            show.contains("name: lo") && show.contains("managed: false"),
            "{show}"
        );
        let info = ok(&d, &["network", "info", "lo"]);
        assert!(info.starts_with("Name: lo\n"), "{info}");
        assert!(info.contains("inet\t127.0.0.1/8 (local)"), "{info}");
        assert!(
            info.contains("Type: loopback") && info.contains("Bytes received: "),
            "{info}"
        );
        let e = fails(&d, &["network", "set", "lo", "user.x=1"]);
        assert!(e.contains("Only managed networks"), "{e}");
        fails(&d, &["network", "show", "nosuch0"]);

        // A managed bridge, end to end.
        let out = ok(
            &d,
            &[
                "network",
                "create",
                "ktclibr0",
                "ipv4.address=10.251.77.1/24",
                "ipv6.address=none",
                "--type",
                "bridge",
            ],
        );
        assert_eq!(out, "Network ktclibr0 created\n");
        let list = ok(&d, &["network", "list"]);
        let br = row(&list, "ktclibr0").unwrap_or_else(|| panic!("{list}"));
        assert!(
            br.contains("| bridge ") && br.contains("| YES ") && br.contains("10.251.77.1/24"),
            "{br}"
        );
        assert_eq!(
            ok(&d, &["network", "get", "ktclibr0", "ipv4.address"]),
            "10.251.77.1/24\n"
        );
        ok(&d, &["network", "set", "ktclibr0", "user.site=lab"]);
        assert_eq!(
            ok(&d, &["network", "get", "ktclibr0", "user.site"]),
            "lab\n"
        );
        ok(&d, &["network", "unset", "ktclibr0", "user.site"]);
        assert_eq!(ok(&d, &["network", "get", "ktclibr0", "user.site"]), "\n");
        let yaml = ok(&d, &["network", "show", "ktclibr0"])
            .replace("description: ''", "description: cli bridge");
        ok_stdin(&d, &["network", "edit", "ktclibr0"], &yaml);
        assert!(ok(&d, &["network", "show", "ktclibr0"]).contains("description: cli bridge"));
        let info = ok(&d, &["network", "info", "ktclibr0"]);
        assert!(info.contains("10.251.77.1/24 (global)"), "{info}");
        let leases = ok(&d, &["network", "leases", "ktclibr0"]);
        assert!(
            leases.contains("HOSTNAME") && leases.contains("MAC ADDRESS"),
            "{leases}"
        );

        // attach / detach on a stopped instance.
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
        ok(&d, &["init", "busybox", "c1"]);
        ok(&d, &["network", "attach", "ktclibr0", "c1", "eth9", "if9"]);
        let devs = ok(&d, &["config", "device", "show", "c1"]);
        assert!(
            devs.contains("eth9:")
                && devs.contains("network: ktclibr0")
                && devs.contains("name: if9"),
            "{devs}"
        );
        fails(&d, &["network", "attach", "ktclibr0", "c1", "eth9"]);
        let e = fails(&d, &["network", "delete", "ktclibr0"]);
        assert!(e.contains("in use"), "{e}");
        ok(&d, &["network", "detach", "ktclibr0", "c1"]);
        assert!(!ok(&d, &["config", "device", "show", "c1"]).contains("eth9"));
        let e = fails(&d, &["network", "detach", "ktclibr0", "c1"]);
        assert!(e.contains("No device found"), "{e}");

        assert_eq!(
            ok(&d, &["network", "delete", "ktclibr0"]),
            "Network ktclibr0 deleted\n"
        );
        assert!(row(&ok(&d, &["network", "list"]), "ktclibr0").is_none());
        ok(&d, &["delete", "c1"]);
        d.shutdown().await;
    });
}
