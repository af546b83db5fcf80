//! The operator's surface of the CLI against a real daemon: shell
//! completion through a real bash (names come from the daemon), man
//! pages, `kante top` reading real counters, `launch -n/-t` as lxc's, and
//! the flags a user coming from lxc 5.0.2 reaches for (docs/cli-vs-lxc.md).

use std::process::{Command, Stdio};

use kante_integration::{bin, kante_fails as fails, kante_ok as ok, run, Daemon, TestImage};

/// What bash's completion function offers for `line` (the word under the
/// cursor is the last, possibly empty, word), with the daemon of `d` as
/// `local`, through the script `kante completion bash` prints.
fn complete(d: &Daemon, conf: &std::path::Path, line: &str) -> Vec<String> {
    let script = String::from_utf8(
        Command::new(bin("kante"))
            .args(["completion", "bash"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(script.contains("complete -o nospace"), "{script}");
    let program = format!(
        r#"{script}
read -ra COMP_WORDS <<< "$LINE"
[[ "$LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="$LINE"; COMP_POINT=${{#LINE}}; COMP_TYPE=9
_clap_complete_kante kante "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .env("LINE", line)
        .env("KANTE_DIR", &d.dir)
        .env("KANTE_CONF", conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    words.sort();
    words
}

#[test]
fn completion_man_pages_top_and_launch_flags() {
    run(async {
        let d = Daemon::start().await;
        let conf = tempfile::tempdir().unwrap();
        let fp = d.import(TestImage::Busybox).await;
        ok(&d, &["image", "alias", "create", "bbx", &fp]);
        ok(
            &d,
            &[
                "network",
                "create",
                "ktop0",
                "ipv4.address=10.231.7.1/24",
                "ipv6.address=none",
            ],
        );

        // launch -n NET -t cCPU-mGIB: eth0 on the network, the type's
        // limits in the cgroup; and init's host flags are not launch's.
        ok(
            &d,
            &["launch", "bbx", "alpha1", "-n", "ktop0", "-t", "c1-m0.25"],
        );
        ok(&d, &["launch", "bbx", "alpha2"]);
        ok(&d, &["init", "bbx", "beta"]);
        let show = ok(&d, &["config", "show", "alpha1"]);
        assert!(show.contains("network: ktop0"), "{show}");
        let limit = d.cgroup_read("alpha1", "memory", "memory.limit_in_bytes", "memory.max");
        assert_eq!(
            limit.trim(),
            (256u64 << 20).to_string(),
            "memory limit from -t c1-m0.25"
        );
        let addr = ok(&d, &["exec", "alpha1", "--", "ip", "link", "show", "eth0"]);
        assert!(addr.contains("eth0"), "{addr}");
        let e = fails(&d, &["launch", "bbx", "x1", "-t", "t2.micro"]);
        assert!(e.contains("t2.micro"), "{e}");
        let e = fails(&d, &["launch", "bbx", "x2", "--auto"]);
        assert!(e.contains("--auto"), "{e}");
        let e = fails(&d, &["launch"]);
        assert!(e.contains("image is required"), "{e}");
        // -d: a profile's device copied into the instance with the key set.
        ok(&d, &["init", "bbx", "gamma", "-d", "root,boot.priority=5"]);
        let gamma = d.client.instance("gamma").await.unwrap();
        assert_eq!(
            gamma.devices["root"]["boot.priority"], "5",
            "{:?}",
            gamma.devices
        );
        assert!(
            gamma.devices["root"].contains_key("pool"),
            "{:?}",
            gamma.devices
        );
        ok(&d, &["delete", "gamma"]);
        let e = fails(&d, &["launch", "bbx", "x3", "-d", "nosuch,size=1GiB"]);
        assert!(e.contains("nosuch"), "{e}");
        let listed = ok(&d, &["list", "-c", "n", "--format", "csv"]);
        assert!(
            !listed.contains("x1") && !listed.contains("x2") && !listed.contains("x3"),
            "{listed}"
        );

        // Completion: names from the daemon, filtered by what is typed.
        assert_eq!(
            complete(&d, conf.path(), "kante start al"),
            ["alpha1", "alpha2"]
        );
        // An empty word also offers the flags, as clap's completion does.
        let exec: Vec<String> = complete(&d, conf.path(), "kante exec ")
            .into_iter()
            .filter(|w| !w.starts_with('-'))
            .collect();
        assert_eq!(exec, ["alpha1", "alpha2", "beta"]);
        assert_eq!(
            complete(&d, conf.path(), "kante network show kt"),
            ["ktop0"]
        );
        assert_eq!(complete(&d, conf.path(), "kante launch bb"), ["bbx"]);
        let verbs = complete(&d, conf.path(), "kante st");
        assert!(
            verbs.contains(&"start".to_string()) && verbs.contains(&"stop".to_string()),
            "{verbs:?}"
        );
        assert!(complete(&d, conf.path(), "kante delete zz").is_empty());

        // Man pages: one per command, readable by man.
        let pages = tempfile::tempdir().unwrap();
        ok(&d, &["manpage", pages.path().to_str().unwrap()]);
        let launch = pages.path().join("kante-launch.1");
        let man = Command::new("man")
            .arg("-l")
            .arg(&launch)
            .env("MANWIDTH", "120")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .unwrap();
        // man's overstrike bold (`x\bx`) read as plain text.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&man.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        assert!(
            text.contains("kante-launch") && text.contains("--network"),
            "{text}"
        );
        assert!(
            !text.contains("--preseed"),
            "launch's page has no init flags: {text}"
        );

        // top: real counters of a guest that burns CPU and holds memory.
        ok(
            &d,
            &[
                "exec",
                "alpha2",
                "--",
                "sh",
                "-c",
                "(while :; do :; done) >/dev/null 2>&1 &",
            ],
        );
        ok(
            &d,
            &[
                "exec",
                "alpha2",
                "--",
                "sh",
                "-c",
                "head -c 33554432 /dev/zero > /dev/shm/hold",
            ],
        );
        let top = ok(&d, &["top", "--once", "--interval", "1", "--sort", "cpu"]);
        let rows: Vec<Vec<&str>> = top
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 3, "{top}");
        assert_eq!(rows[0][0], "alpha2", "the busy guest sorts first: {top}");
        let cpu: f64 = rows[0][2].parse().unwrap();
        assert!(cpu > 30.0, "a spinning shell shows its CPU: {top}");
        let beta = rows.iter().find(|r| r[0] == "beta").unwrap();
        assert_eq!(beta[1], "STOPPED", "{top}");
        let by_mem = ok(&d, &["top", "--once", "--interval", "0.5", "--sort", "mem"]);
        let first = by_mem
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>();
        assert_eq!(first[0], "alpha2", "32 MiB in /dev/shm: {by_mem}");
        assert!(first[3].ends_with("MiB"), "{by_mem}");
        let e = fails(&d, &["top", "--interval", "0"]);
        assert!(e.contains("--interval"), "{e}");

        // lxc's --all, exec -n, snapshot --no-expiry and delete -i.
        ok(&d, &["stop", "--all", "--force"]);
        let states = ok(&d, &["list", "-c", "ns", "--format", "csv"]);
        assert_eq!(states.matches("STOPPED").count(), 3, "{states}");
        ok(&d, &["start", "--all"]);
        let states = ok(&d, &["list", "-c", "ns", "--format", "csv"]);
        assert_eq!(states.matches("RUNNING").count(), 3, "{states}");
        let e = fails(&d, &["start", "alpha1", "--all"]);
        assert!(e.contains("--all"), "{e}");
        let read = ok(
            &d,
            &["exec", "beta", "-n", "--", "sh", "-c", "cat; echo done"],
        );
        assert_eq!(read.trim(), "done");
        ok(&d, &["config", "set", "beta", "snapshots.expiry=1d"]);
        ok(&d, &["snapshot", "beta", "keep", "--no-expiry"]);
        ok(&d, &["snapshot", "beta", "lapse"]);
        let keep = d.client.snapshot("beta", "keep").await.unwrap();
        let lapse = d.client.snapshot("beta", "lapse").await.unwrap();
        assert!(
            keep.expires_at.to_string().starts_with("0001-01-01"),
            "{:?}",
            keep.expires_at
        );
        assert!(
            !lapse.expires_at.to_string().starts_with("0001-01-01"),
            "{:?}",
            lapse.expires_at
        );
        let e = fails(&d, &["delete", "-i", "-f", "beta"]);
        assert!(e.contains("aborted"), "{e}");
        assert!(ok(&d, &["list", "-c", "n", "--format", "csv"]).contains("beta"));

        ok(&d, &["delete", "-f", "alpha1", "alpha2", "beta"]);
        ok(&d, &["network", "delete", "ktop0"]);
        d.shutdown().await;
    });
}

/// The rows of `kante ARGS --format csv`, split on commas.
fn csv(d: &Daemon, args: &[&str]) -> Vec<Vec<String>> {
    let mut argv = args.to_vec();
    argv.extend(["--format", "csv"]);
    ok(d, &argv)
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// lxc's `GetByteSizeStringIEC` of a byte count, for comparing `info
/// --resources` with /proc/meminfo.
fn iec(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["KiB", "MiB", "GiB", "TiB"] {
        value /= 1024.0;
        if value < 1024.0 {
            return format!("{value:.2}{unit}");
        }
    }
    format!("{value:.2}TiB")
}

#[test]
fn flags_users_bring_from_lxc() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        ok(&d, &["image", "alias", "create", "bbl", &fp]);
        ok(&d, &["profile", "create", "extra"]);
        ok(&d, &["launch", "bbl", "run1"]);
        ok(&d, &["init", "bbl", "src"]);

        // list --fast (lxc's nsacPt) and --all-projects (one project: a
        // PROJECT column saying `default`).
        let fast = csv(&d, &["list", "--fast"]);
        let src = fast.iter().find(|r| r[0] == "src").unwrap();
        assert_eq!(src[1], "STOPPED", "{fast:?}");
        assert_eq!(src[2], std::env::consts::ARCH, "{fast:?}");
        assert!(src[3].ends_with("UTC"), "created at: {fast:?}");
        assert_eq!((src[4].as_str(), src[5].as_str()), ("default", "CONTAINER"));
        let all = csv(&d, &["list", "--all-projects", "-c", "en"]);
        assert_eq!(all, [["default", "run1"], ["default", "src"]]);
        let all = csv(&d, &["list", "--all-projects"]);
        assert!(
            all.iter().all(|r| r[0] == "default") && all.len() == 2,
            "{all:?}"
        );
        let e = fails(&d, &["list", "--fast", "-c", "n"]);
        assert!(e.contains("--fast"), "{e}");

        // image list -c: the columns asked for.
        assert_eq!(
            csv(&d, &["image", "list", "-c", "lF"]),
            [["bbl", fp.as_str()]]
        );
        let e = fails(&d, &["image", "list", "-c", "lz"]);
        assert!(e.contains("'z'"), "{e}");

        // init --empty: an instance with an empty root filesystem, no image.
        ok(&d, &["init", "--empty", "void"]);
        let void = d.client.instance("void").await.unwrap();
        assert!(!void.config.contains_key("volatile.base_image"), "{void:?}");
        let rootfs = d.dir.join("storage-pools/default/containers/void/rootfs");
        let entries = std::fs::read_dir(&rootfs)
            .unwrap_or_else(|e| panic!("{}: {e}", rootfs.display()))
            .count();
        assert_eq!(entries, 0, "{} is not empty", rootfs.display());
        let e = fails(&d, &["init", "bbl", "x1", "--empty"]);
        assert!(e.contains("--empty cannot be combined"), "{e}");
        ok(&d, &["delete", "void"]);

        // --vm and --console=vga: refused before anything is made or started;
        // --console wants one instance, as in lxc (attaching: tests/console.rs).
        let e = fails(&d, &["launch", "bbl", "vm1", "--vm"]);
        assert!(e.contains("containers only"), "{e}");
        let e = fails(&d, &["launch", "bbl", "con1", "--console=vga"]);
        assert!(e.contains("virtual machine"), "{e}");
        let e = fails(&d, &["start", "src", "--console=vga"]);
        assert!(e.contains("virtual machine"), "{e}");
        let e = fails(&d, &["restart", "run1", "src", "--console"]);
        assert!(e.contains("single instance"), "{e}");
        let e = fails(&d, &["stop", "--all", "--console"]);
        assert!(e.contains("--all"), "{e}");
        let names = csv(&d, &["list", "-c", "ns"]);
        assert_eq!(names, [["run1", "RUNNING"], ["src", "STOPPED"]]);
        let e = fails(&d, &["console", "run1", "--type", "vga"]);
        assert!(e.contains("containers only"), "{e}");
        ok(&d, &["console", "run1", "--show-log", "--type", "console"]);

        // stop --stateful: the server refuses (no CRIU), the instance runs on;
        // start --stateless is a plain start.
        let e = fails(&d, &["stop", "run1", "--stateful"]);
        assert!(e.contains("CRIU"), "{e}");
        ok(&d, &["start", "src", "--stateless"]);
        let names = csv(&d, &["list", "-c", "ns"]);
        assert_eq!(names, [["run1", "RUNNING"], ["src", "RUNNING"]]);
        ok(&d, &["stop", "src", "-f"]);

        // copy -d: the profile's root disk copied into the copy with the key.
        ok(&d, &["copy", "src", "cp1", "-d", "root,boot.priority=7"]);
        let cp1 = d.client.instance("cp1").await.unwrap();
        assert_eq!(
            cp1.devices["root"]["boot.priority"], "7",
            "{:?}",
            cp1.devices
        );
        assert!(
            cp1.devices["root"].contains_key("pool"),
            "{:?}",
            cp1.devices
        );
        assert!(!d
            .client
            .instance("src")
            .await
            .unwrap()
            .devices
            .contains_key("root"));

        // move -c/-p/-d on one server: renamed with the changes, seen by a
        // process in the guest; a bad override changes nothing.
        let e = fails(
            &d,
            &["move", "cp1", "cp9", "-c", "user.x=1", "-d", "nosuch,a=b"],
        );
        assert!(e.contains("nosuch"), "{e}");
        let cp1 = d.client.instance("cp1").await.unwrap();
        assert!(!cp1.config.contains_key("user.x"), "{:?}", cp1.config);
        ok(
            &d,
            &[
                "move",
                "cp1",
                "mv1",
                "-c",
                "environment.MOVED=yes",
                "-p",
                "extra",
                "-d",
                "root,boot.priority=9",
            ],
        );
        let names = csv(&d, &["list", "-c", "n"]);
        assert_eq!(names, [["mv1"], ["run1"], ["src"]]);
        let mv1 = d.client.instance("mv1").await.unwrap();
        assert_eq!(mv1.profiles, ["default", "extra"]);
        assert_eq!(mv1.devices["root"]["boot.priority"], "9");
        ok(&d, &["start", "mv1"]);
        let moved = ok(&d, &["exec", "mv1", "--", "sh", "-c", "echo $MOVED"]);
        assert_eq!(moved.trim(), "yes");
        // --no-profiles: mv1 keeps a root disk of its own (from -d above).
        ok(&d, &["stop", "mv1", "-f"]);
        ok(&d, &["move", "mv1", "mv2", "--no-profiles"]);
        assert!(d.client.instance("mv2").await.unwrap().profiles.is_empty());

        // info: the server (no instance) and its hardware, as /proc sees it.
        let server = ok(&d, &["info"]);
        assert!(
            server.contains("api_version: '1.0'") || server.contains("api_version: \"1.0\""),
            "{server}"
        );
        let res = ok(&d, &["info", "--resources"]);
        let threads = res.lines().filter(|l| l.contains(" (id: ")).count();
        let cpus = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        assert_eq!(threads, cpus, "{res}");
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            res.contains(&format!("\n  Total: {}\n", iec(kib * 1024))),
            "{res}"
        );
        let e = fails(&d, &["info", "run1", "--resources"]);
        assert!(e.contains("--resources"), "{e}");

        // storage show --resources: the pool's filesystem, as statvfs says.
        let pool = ok(&d, &["storage", "show", "default", "--resources"]);
        let st = nix::sys::statvfs::statvfs(&d.dir.join("storage-pools/default")).unwrap();
        let space = "space:\n  used: ";
        assert!(pool.starts_with(space), "{pool}");
        let totals: Vec<u64> = pool
            .lines()
            .filter_map(|l| l.strip_prefix("  total: "))
            .map(|v| v.parse().unwrap())
            .collect();
        let bytes = st.blocks() as u64 * st.fragment_size() as u64;
        assert_eq!(totals, [bytes, st.files() as u64], "{pool}");

        // cluster add --name / remove --yes: the name reaches the server;
        // --force asks first (stdin closed: no) unless --yes.
        let e = fails(&d, &["cluster", "add"]);
        assert!(e.contains("Missing cluster member name"), "{e}");
        let e = fails(&d, &["cluster", "add", "--name", "h2"]);
        assert!(e.contains("not clustered"), "{e}");
        let e = fails(&d, &["cluster", "remove", "--force", "h2"]);
        assert!(e.contains("User aborted"), "{e}");
        let e = fails(&d, &["cluster", "remove", "--force", "--yes", "h2"]);
        assert!(!e.contains("User aborted"), "{e}");

        ok(&d, &["delete", "-f", "run1", "src", "mv2"]);
        ok(&d, &["profile", "delete", "extra"]);
        ok(&d, &["image", "alias", "delete", "bbl"]);
        d.shutdown().await;
    });
}
