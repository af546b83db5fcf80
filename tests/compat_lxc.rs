//! Debian's own LXD client (`lxc` from `lxd-client` 5.0.2), unchanged,
//! against a real kanted: `LXD_DIR` points it at the daemon's unix socket and
//! `LXD_CONF`/`HOME` at a scratch directory. Each verb's effect is checked
//! from outside (the host's /proc and cgroups, the pool on disk, byte
//! comparisons), not only by exit codes. This is what backs the claim that
//! the `lxc` client works against Kante as it is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kante_integration::{run, Daemon, TestImage};

fn lxc_cmd(d: &Daemon, program: &str) -> Command {
    let conf = d.dir.join("lxc-client");
    std::fs::create_dir_all(conf.join("home")).unwrap();
    let mut cmd = Command::new(program);
    cmd.env("LXD_DIR", &d.dir)
        .env("LXD_CONF", &conf)
        .env("HOME", conf.join("home"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn lxc_in(d: &Daemon, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = lxc_cmd(d, "lxc");
    cmd.args(args);
    kante_integration::output_with_stdin(cmd, stdin)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `lxc ARGS` (stdin piped from `stdin`) must succeed; its stdout.
fn ok_in(d: &Daemon, args: &[&str], stdin: Option<&[u8]>) -> String {
    let o = lxc_in(d, args, stdin);
    assert!(
        o.status.success(),
        "lxc {args:?} failed ({}): {}{}\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr),
        d.log_text()
    );
    text(&o.stdout)
}

fn okv(d: &Daemon, args: &[&str]) -> String {
    ok_in(d, args, None)
}

fn words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().collect()
}

/// `lxc CMD` (its words split on spaces) must succeed; its stdout.
fn ok(d: &Daemon, cmd: &str) -> String {
    okv(d, &words(cmd))
}

/// The exit status of `lxc CMD`.
fn code(d: &Daemon, cmd: &str) -> Option<i32> {
    lxc_in(d, &words(cmd), None).status.code()
}

/// `lxc CMD` must fail; its stderr.
fn fails(d: &Daemon, cmd: &str) -> String {
    let o = lxc_in(d, &words(cmd), None);
    assert!(!o.status.success(), "lxc {cmd} unexpectedly succeeded");
    text(&o.stderr)
}

/// Names and states, as `lxc list` sees them.
fn states(d: &Daemon) -> String {
    ok(d, "list --format csv -c ns")
}

/// The host pid of an instance's init, as `lxc info` reports it.
fn pid(d: &Daemon, name: &str) -> u32 {
    let info = ok(d, &format!("info {name}"));
    info.lines()
        .find_map(|l| l.strip_prefix("PID: "))
        .unwrap_or_else(|| panic!("no PID in {info}"))
        .parse()
        .unwrap()
}

/// The memory limit of `name`'s cgroup on the host (v1 or v2 layout).
fn host_memory_limit(d: &Daemon, name: &str) -> String {
    d.cgroup_read(name, "memory", "memory.limit_in_bytes", "memory.max")
}

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    text(&o.stdout)[..64].to_string()
}

/// `lxc image import` of the busybox test image as `alias`; its fingerprint.
fn import_busybox(d: &Daemon, alias: &str) -> String {
    let img = TestImage::Busybox.path();
    let img_s = img.display();
    let out = ok(d, &format!("image import {img_s} --alias {alias}"));
    let fp = out
        .trim()
        .strip_prefix("Image imported with fingerprint: ")
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert_eq!(fp, sha256(&img), "the fingerprint is the file's sha256");
    fp
}

fn rootfs_of(d: &Daemon, name: &str) -> PathBuf {
    d.dir.join("storage-pools/default/containers").join(name)
}

fn contains_all(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "{n:?} missing in {haystack}");
    }
}

#[test]
fn server_images_instances_exec_files_and_config() {
    run(async {
        let d = Daemon::start().await;
        assert_eq!(ok(&d, "remote get-default"), "local\n");
        let info = ok(&d, "info");
        contains_all(
            &info,
            &["api_version: \"1.0\"", "auth: trusted", "server: kante"],
        );

        // Images: import, list, alias, export (the same bytes come back).
        let fp = import_busybox(&d, "bb");
        let short = &fp[..12];
        let images = ok(&d, "image list --format csv -c lfa");
        assert_eq!(images, format!("bb,{short},x86_64\n"));
        ok(&d, &format!("image alias create bb2 {short}"));
        let aliases = ok(&d, "image alias list --format csv");
        assert!(aliases.contains(&format!("bb2,{short},")), "{aliases}");
        let exported = d.dir.join("exported");
        ok(&d, &format!("image export bb2 {}", exported.display()));
        let file = exported.with_extension("tar.zst");
        assert_eq!(sha256(&file), fp);
        std::fs::remove_file(file).unwrap();

        // launch: a running container on the host, in its own UTS namespace.
        ok(&d, "launch bb c1");
        assert_eq!(states(&d), "c1,RUNNING\n");
        let p = pid(&d, "c1");
        let uts = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/uts")).unwrap();
        assert_ne!(uts(&p.to_string()), uts("self"));

        // exec: output, stdin, exit status, env/cwd/user, a terminal.
        assert_eq!(ok(&d, "exec c1 -- cat /etc/hostname"), "c1\n");
        let input: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let script = "cat > /root/in; wc -c < /root/in";
        let wc = ok_in(&d, &["exec", "c1", "--", "sh", "-c", script], Some(&input));
        assert_eq!(wc.trim(), "100000");
        let in_guest = format!("/proc/{p}/root/root/in");
        assert_eq!(std::fs::read(in_guest).unwrap(), input);
        let o = lxc_in(&d, &["exec", "c1", "--", "sh", "-c", "exit 3"], None);
        assert_eq!(o.status.code(), Some(3), "the exit status comes through");
        assert_eq!(code(&d, "exec c1 -- no-such-command"), Some(127));
        let args = "exec c1 --env FOO=bar --cwd /tmp --user 1000 -- sh -c";
        let mut args: Vec<&str> = args.split(' ').collect();
        args.push("echo $FOO $(pwd) $(id -u)");
        assert_eq!(okv(&d, &args), "bar /tmp 1000\n");
        // `-t` needs a terminal on our side: util-linux's `script` gives one.
        let o = lxc_cmd(&d, "script")
            .args(["-qec", "lxc exec c1 -t -- tty", "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(text(&o.stdout).contains("/dev/pts/"), "{o:?}");

        // file push/pull: bytes, mode and owner; directories both ways.
        let blob: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (src, back) = (d.dir.join("blob"), d.dir.join("blob.back"));
        std::fs::write(&src, &blob).unwrap();
        let src = src.display();
        let push = "file push --mode 0640 --uid 1000 --gid 1000";
        ok(&d, &format!("{push} {src} c1/root/blob"));
        let st = ok(&d, "exec c1 -- stat -c %a:%u:%g:%s /root/blob");
        assert_eq!(st, "640:1000:1000:300000\n");
        let in_guest = format!("/proc/{p}/root/root/blob");
        assert_eq!(std::fs::read(&in_guest).unwrap(), blob);
        ok(&d, &format!("file pull c1/root/blob {}", back.display()));
        assert_eq!(std::fs::read(&back).unwrap(), blob);
        ok(&d, &format!("file push -p {src} c1/root/a/b/blob"));
        let pulled = d.dir.join("pulled");
        std::fs::create_dir(&pulled).unwrap();
        ok(&d, &format!("file pull -r c1/root/a {}", pulled.display()));
        assert_eq!(std::fs::read(pulled.join("a/b/blob")).unwrap(), blob);
        ok(&d, "file delete c1/root/blob");
        assert!(!Path::new(&in_guest).exists());

        // config: a live memory limit, show, edit from stdin.
        ok(&d, "config set c1 limits.memory 128MiB");
        assert_eq!(ok(&d, "config get c1 limits.memory"), "128MiB\n");
        assert_eq!(host_memory_limit(&d, "c1"), "134217728");
        ok(&d, "config set c1 user.a=1 user.b=2");
        ok(&d, "config unset c1 user.b");
        let show = ok(&d, "config show c1");
        let base = format!("volatile.base_image: {fp}");
        contains_all(
            &show,
            &["limits.memory: 128MiB", "user.a: \"1\"", &base, "- default"],
        );
        assert!(!show.contains("user.b"), "{show}");
        let yaml = show.replace("description: \"\"", "description: edited by lxc");
        ok_in(&d, &["config", "edit", "c1"], Some(yaml.as_bytes()));
        let list = ok(&d, "list c1 --format json");
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        assert_eq!(list[0]["description"], "edited by lxc");

        // pause/resume, restart, stop: the init process goes away on the host.
        ok(&d, "pause c1");
        assert_eq!(states(&d), "c1,FROZEN\n");
        ok(&d, "start c1");
        assert_eq!(states(&d), "c1,RUNNING\n");
        ok(&d, "restart c1");
        let p = pid(&d, "c1");
        ok(&d, "stop c1");
        assert_eq!(states(&d), "c1,STOPPED\n");
        assert!(!Path::new(&format!("/proc/{p}")).exists());

        // Bad input: clear errors, nothing created.
        let e = fails(&d, "launch bb bad_name!");
        assert!(
            e.contains("Instance name \"bad_name!\" may only contain"),
            "{e}"
        );
        let e = fails(&d, "launch no-such-image c9");
        assert!(e.contains("Image not found"), "{e}");
        let e = fails(&d, "exec c1 -- true");
        assert!(e.contains("not running"), "{e}");
        assert_eq!(states(&d), "c1,STOPPED\n");
        assert!(!rootfs_of(&d, "bad_name!").exists() && !rootfs_of(&d, "c9").exists());

        ok(&d, "start c1");
        let e = fails(&d, "delete c1");
        assert!(e.contains("stop it first"), "{e}");
        ok(&d, "delete --force c1");
        assert_eq!(states(&d), "");
        assert!(!rootfs_of(&d, "c1").exists());
        ok(&d, "image delete bb");
        assert_eq!(ok(&d, "image list --format csv"), "");
        d.shutdown().await;
    });
}

#[test]
fn snapshots_copies_and_profiles() {
    run(async {
        let d = Daemon::start().await;
        import_busybox(&d, "bb");
        ok(&d, "launch bb c1");
        let sh = |name: &str, script: &str| okv(&d, &["exec", name, "--", "sh", "-c", script]);

        // snapshot, change, restore: the later writes are gone.
        sh("c1", "echo before > /root/f");
        ok(&d, "snapshot c1 s1");
        sh("c1", "echo after > /root/f; echo new > /root/g");
        let info = ok(&d, "info c1");
        let snaps = info.split("Snapshots:").nth(1).unwrap_or_default();
        assert!(snaps.contains("| s1 "), "{info}");
        assert_eq!(ok(&d, "list --format csv -c nS"), "c1,1\n");
        ok(&d, "restore c1 s1");
        assert_eq!(sh("c1", "cat /root/f; ls /root"), "before\nf\n");

        // copy (stopped copy, own hostname), copy of a snapshot, move.
        ok(&d, "copy c1 c2");
        ok(&d, "copy c1/s1 c3");
        ok(&d, "move c3 c4");
        assert_eq!(states(&d), "c1,RUNNING\nc2,STOPPED\nc4,STOPPED\n");
        ok(&d, "start c2");
        assert_eq!(sh("c2", "cat /etc/hostname /root/f"), "c2\nbefore\n");
        assert!(rootfs_of(&d, "c4").exists() && !rootfs_of(&d, "c3").exists());
        ok(&d, "delete c1/s1");
        assert!(!ok(&d, "info c1").contains("Snapshots:"));

        // export to a tarball and import it under a new name: the data comes
        // back, and the backup made on the way is deleted by lxc afterwards.
        let tarball = d.dir.join("c2.tar.gz");
        ok(&d, &format!("export c2 {}", tarball.display()));
        assert!(std::fs::metadata(&tarball).unwrap().len() > 0);
        let backups = d.dir.join("backups/instances/c2");
        let left = std::fs::read_dir(&backups).map_or(0, |r| r.count());
        assert_eq!(left, 0, "lxc export left a backup in {}", backups.display());
        ok(&d, &format!("import {} c6", tarball.display()));
        ok(&d, "start c6");
        assert_eq!(sh("c6", "cat /root/f"), "before\n");
        ok(&d, "delete --force c6");

        // profiles: create, set, show, assign to a running instance (live).
        assert_eq!(ok(&d, "profile create p1"), "Profile p1 created\n");
        ok(&d, "profile set p1 limits.memory 64MiB");
        ok(&d, "profile set p1 user.tier=web");
        assert_eq!(ok(&d, "profile get p1 user.tier"), "web\n");
        ok(&d, "profile assign c2 default,p1");
        assert_eq!(host_memory_limit(&d, "c2"), "67108864");
        assert_eq!(ok(&d, "config get --expanded c2 user.tier"), "web\n");
        let show = ok(&d, "profile show p1");
        contains_all(
            &show,
            &[
                "limits.memory: 64MiB",
                "user.tier: web",
                "- /1.0/instances/c2",
            ],
        );
        let profiles = ok(&d, "profile list --format csv");
        assert!(profiles.lines().any(|l| l.starts_with("p1,")), "{profiles}");
        ok(&d, "profile add c4 p1");
        ok(&d, "init bb c5 -p default -p p1 -c user.x=1");
        contains_all(&ok(&d, "config show c5"), &["- p1", "user.x: \"1\""]);
        ok(&d, "profile remove c2 p1");
        ok(&d, "profile remove c4 p1");
        let e = fails(&d, "profile delete p1");
        assert!(e.contains("Profile is currently in use"), "{e}");
        ok(&d, "delete c5");
        ok(&d, "profile delete p1");

        // lxc monitor: the events websocket carries lifecycle events. Poke
        // c1 until the monitor has seen one, so it is surely connected.
        let events = d.dir.join("events.yaml");
        let mut mon = lxc_cmd(&d, "lxc")
            .args(["monitor", "--type", "lifecycle"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&events).unwrap())
            .spawn()
            .unwrap();
        let seen = |what: &str| std::fs::read_to_string(&events).unwrap().contains(what);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen("action: instance-updated") {
            assert!(Instant::now() < deadline, "lxc monitor saw no event");
            ok(&d, "config set c1 user.poke=1");
            std::thread::sleep(Duration::from_millis(100));
        }
        ok(&d, "stop c1 c2");
        assert_eq!(states(&d), "c1,STOPPED\nc2,STOPPED\nc4,STOPPED\n");
        while !seen("source: /1.0/instances/c2\n") {
            assert!(Instant::now() < deadline, "no stop event for c2");
            std::thread::sleep(Duration::from_millis(100));
        }
        mon.kill().unwrap();
        mon.wait().unwrap();
        let events = std::fs::read_to_string(&events).unwrap();
        assert!(events.contains("action: instance-stopped"), "{events}");
        ok(&d, "delete c1 c2 c4");
        assert_eq!(states(&d), "");
        d.shutdown().await;
    });
}

#[test]
fn networks_volumes_and_devices() {
    run(async {
        let d = Daemon::start().await;
        import_busybox(&d, "bb");

        // A managed bridge with DHCP; the guest leases an address from it.
        ok(
            &d,
            "network create ktlxc0 ipv4.address=10.203.77.1/24 ipv4.nat=false ipv6.address=none",
        );
        let nets = ok(&d, "network list --format csv");
        assert!(nets.contains("ktlxc0,bridge,YES,10.203.77.1/24"), "{nets}");
        assert!(Path::new("/sys/class/net/ktlxc0/bridge").exists());
        ok(&d, "launch bb n1 --network ktlxc0");
        // busybox's udhcpc configures nothing without a script.
        let dhcp = "printf '#!/bin/sh\\n[ \"$1\" = bound ] && ip addr add $ip/$mask dev $interface\\nexit 0\\n' \
                    > /tmp/dhcp.sh && chmod +x /tmp/dhcp.sh && udhcpc -i eth0 -n -q -t 10 -T 1 -s /tmp/dhcp.sh";
        okv(&d, &["exec", "n1", "--", "sh", "-c", dhcp]);
        let row = ok(&d, "list n1 --format csv -c n4");
        let ip = row
            .trim()
            .strip_prefix("n1,")
            .and_then(|s| s.strip_suffix(" (eth0)"))
            .unwrap_or_else(|| panic!("no address in {row:?}"))
            .to_string();
        assert!(ip.starts_with("10.203.77."), "{ip}");
        let leases = ok(&d, "network list-leases ktlxc0 --format csv");
        assert!(leases.contains(&format!(",{ip},DYNAMIC")), "{leases}");
        let ping = Command::new("ping").args(["-c1", "-W2", &ip]).output();
        assert!(ping.unwrap().status.success(), "the host reaches {ip}");

        // A custom volume: attached, detached, attached elsewhere: data kept.
        ok(&d, "storage volume create default vol1");
        ok(&d, "storage volume attach default vol1 n1 /mnt/vol");
        ok(&d, "exec n1 -- cp /etc/hostname /mnt/vol/x");
        let vols = ok(&d, "storage volume list default --format csv");
        assert!(vols.contains("custom,vol1,"), "{vols}");
        ok(&d, "storage volume detach default vol1 n1");
        assert_eq!(code(&d, "exec n1 -- cat /mnt/vol/x"), Some(1), "detached");
        ok(&d, "storage volume attach default vol1 n1 /mnt/again");
        assert_eq!(ok(&d, "exec n1 -- cat /mnt/again/x"), "n1\n");
        ok(&d, "storage volume detach default vol1 n1");
        ok(&d, "storage volume delete default vol1");

        // A host directory as a disk device, hot-plugged and removed.
        // Outside KANTE_DIR: Kante's own state cannot be shared.
        let host = std::path::PathBuf::from(format!("{}-shared", d.dir.display()));
        let _ = std::fs::remove_dir_all(&host);
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("hello"), "from the host\n").unwrap();
        let source = host.display();
        ok(
            &d,
            &format!("config device add n1 hd disk source={source} path=/mnt/host"),
        );
        // lxc prints the devices in Go's map order: compare as a set.
        let mut devices: Vec<String> = ok(&d, "config device list n1")
            .lines()
            .map(str::to_string)
            .collect();
        devices.sort();
        assert_eq!(devices, ["eth0", "hd"]);
        assert_eq!(ok(&d, "exec n1 -- cat /mnt/host/hello"), "from the host\n");
        ok(&d, "config device remove n1 hd");
        assert_eq!(
            code(&d, "exec n1 -- cat /mnt/host/hello"),
            Some(1),
            "unmounted"
        );

        std::fs::remove_dir_all(&host).unwrap();
        ok(&d, "delete --force n1");
        ok(&d, "network delete ktlxc0");
        assert!(!Path::new("/sys/class/net/ktlxc0").exists());
        d.shutdown().await;
    });
}
