//! `kante lab`: N hosts on one machine, each a network namespace with its
//! own kanted on a shared uplink. Three hosts come up, answer over HTTPS
//! from the caller and from each other, carry instances that meet at
//! layer 2 across hosts, and `down` leaves nothing; an `up` that cannot
//! start (a subnet in use, a daemon that dies) leaves nothing either. A
//! client of a host that is cut off (its uplink down) in the middle of a
//! command gets an error in bounded time instead of waiting forever, and
//! so does a new command, until the link is back.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kante_integration::lab::{unique, Lab};
use kante_integration::net::{devices, link_exists, nic};
use kante_integration::{cgroup_prefix_of, instance_post, leaks_of, mounts_under, run, TestImage};

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// Everything a lab may leave, for the assertions after `down`.
fn left_of(lab: &Lab, pids: &[i32]) -> Vec<String> {
    let mut left = Vec::new();
    for i in 1..=lab.hosts {
        if netns_exists(&lab.netns(i)) {
            left.push(format!("namespace {}", lab.netns(i)));
        }
        let state = lab.state(i);
        left.extend(leaks_of(&state, &cgroup_prefix_of(&state)));
    }
    for l in lab.links() {
        if link_exists(&l) {
            left.push(format!("link {l}"));
        }
    }
    for p in pids.iter().filter(|p| alive(**p)) {
        left.push(format!("kanted {p}"));
    }
    for m in mounts_under(lab.dir()) {
        left.push(format!("mount {}", m.display()));
    }
    if lab.dir().exists() {
        left.push(format!("directory {}", lab.dir().display()));
    }
    let remotes = std::fs::read_to_string(lab.conf.join("config.yml")).unwrap_or_default();
    for i in 1..=lab.hosts {
        if remotes.contains(&lab.remote(i)) {
            left.push(format!("remote {}", lab.remote(i)));
        }
        if lab
            .conf
            .join("servercerts")
            .join(format!("{}.crt", lab.remote(i)))
            .exists()
        {
            left.push(format!("pinned certificate of {}", lab.remote(i)));
        }
    }
    left
}

#[test]
fn three_hosts_meet_over_the_uplink_and_leave_nothing() {
    run(async {
        let mut lab = Lab::up(3);
        let pids: Vec<i32> = (1..=3).map(|i| lab.pid(i)).collect();
        assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");

        // The caller reaches a host's API over HTTPS at its uplink address.
        let remotes = lab.kante_ok(&["remote", "list", "-f", "csv"]);
        for i in 1..=3 {
            let want = format!("{},https://{}:8443,", lab.remote(i), lab.address(i));
            assert!(remotes.contains(&want), "{want} not in:\n{remotes}");
        }
        for i in 1..=3 {
            lab.kante_ok(&["list", "-f", "csv", &format!("{}:", lab.remote(i))]);
        }
        // Host 1, from its own namespace, reaches host 3 by its remote.
        let from_h1 = lab.exec_ok(1, &["kante", "remote", "list", "-f", "csv"]);
        assert!(
            from_h1.contains(&format!("h3,https://{}:8443,", lab.address(3)))
                && !from_h1.contains("h1,https"),
            "{from_h1}"
        );
        lab.exec_ok(1, &["kante", "list", "-f", "csv", "h3:"]);
        // The command's exit code is lab exec's.
        let o = lab.exec(2, &["sh", "-c", "exit 7"]);
        assert_eq!(o.status.code(), Some(7), "{o:?}");
        // It is host 1's namespace: its uplink bridge carries host 1's address.
        let addrs = lab.exec_ok(1, &["ip", "-4", "-o", "addr", "show", "dev", "uplink0"]);
        assert!(addrs.contains(&format!("{}/24", lab.address(1))), "{addrs}");

        // An instance on h1 and one on h3, bridged onto their uplink0.
        let base = lab.subnet.trim_end_matches(".0/24").to_string();
        let devs = devices(&[(
            "eth0",
            nic(&[("nictype", "bridged"), ("parent", "uplink0")]),
        )]);
        for (i, name) in [(1, "a1"), (3, "a3")] {
            let fp = lab.import(i, TestImage::Busybox).await;
            let c = lab.client(i);
            c.create_instance(&instance_post(&fp, name, &[], devs.clone()))
                .await
                .unwrap_or_else(|e| panic!("creating {name} on h{i}: {e}\n{}", lab.log(i)));
            c.start_instance(name)
                .await
                .unwrap_or_else(|e| panic!("starting {name} on h{i}: {e}\n{}", lab.log(i)));
            let (code, out) = lab
                .sh(
                    i,
                    name,
                    &format!("ip addr add {base}.{}/24 dev eth0", 100 + i),
                )
                .await;
            assert_eq!(code, 0, "{out}");
        }
        let (code, out) = lab.sh(1, "a1", &format!("ping -c2 -W3 {base}.103")).await;
        assert_eq!(code, 0, "a1 on h1 cannot reach a3 on h3: {out}");
        let (code, out) = lab.sh(3, "a3", &format!("ping -c1 -W3 {base}.101")).await;
        assert_eq!(code, 0, "a3 on h3 cannot reach a1 on h1: {out}");

        // Host 1's own socket sees its instance (and only it).
        let o = lab.host_kante(1, &["list", "-f", "csv", "-c", "n"]);
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "a1", "{o:?}");
        let status = lab.status();
        let rows: Vec<&str> = status.lines().filter(|l| l.starts_with("| h")).collect();
        assert_eq!(rows.len(), 3, "{status}");
        for (i, row) in (1..=3).zip(&rows) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let count = if i == 2 { "0" } else { "1" };
            assert_eq!(
                &cells[1..9],
                &[
                    format!("h{i}").as_str(),
                    lab.netns(i).as_str(),
                    lab.address(i).as_str(),
                    pids[i as usize - 1].to_string().as_str(),
                    "running",
                    "yes",
                    "yes",
                    count
                ],
                "{status}"
            );
        }

        let o = lab.down();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let left = left_of(&lab, &pids);
        assert!(left.is_empty(), "left after down: {left:#?}");
        // Twice is fine.
        let o = lab.down();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
}

#[test]
fn an_up_that_cannot_finish_leaves_nothing() {
    run(async {
        // Bad input: one line, nothing made.
        let mut lab = Lab::unmade(2);
        for bad in [
            &["--hosts", "0"][..],
            &["--hosts", "17"],
            &["--subnet", "10.248.0.1/24"],
            &["--name", "much-too-long"],
        ] {
            let dir = lab.dir.to_string_lossy().to_string();
            let mut args = vec!["lab", "up", "--dir", &dir];
            args.extend(bad);
            let o = lab.kante(&args);
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(!o.status.success(), "{bad:?} succeeded");
            assert!(
                err.starts_with("Error: ") && err.trim_end().lines().count() == 1,
                "{err}"
            );
            assert!(!lab.dir.exists(), "{bad:?} made {}", lab.dir.display());
        }

        // A subnet in use on this machine: refused before anything is made.
        let (dummy, _, _) = unique();
        let dummy = format!("{dummy}d");
        let used = format!("{}.5/24", lab.subnet.trim_end_matches(".0/24"));
        let sh = |c: &str| Command::new("sh").args(["-c", c]).status().unwrap();
        assert!(sh(&format!(
            "ip link add {dummy} type bridge && ip addr add {used} dev {dummy}"
        ))
        .success());
        let o = lab.run_up(&[]);
        let _ = sh(&format!("ip link del {dummy}"));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "up on a used subnet succeeded");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("in use") && err.contains(&dummy), "{err}");
        let left = left_of(&lab, &[]);
        assert!(left.is_empty(), "left after a refused up: {left:#?}");

        // A daemon that dies at start: everything made so far is undone.
        let o = lab.run_up(&["--kanted", "/bin/false"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "up with a dead kanted succeeded");
        assert!(err.contains("exited during start-up"), "{err}");
        let left = left_of(&lab, &[]);
        assert!(left.is_empty(), "left after a failed up: {left:#?}");
        // And down on what is not there is fine.
        let o = lab.down();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

        // `up` killed half-way (its first daemons run, its links are
        // made): the record it wrote as it went lets `down` remove it all.
        let mut child = lab
            .up_command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while lab.pids().is_empty() {
            assert!(Instant::now() < deadline, "no kanted started");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let pids = lab.pids();
        assert!(pids.iter().any(|p| alive(*p)), "{pids:?}");
        assert!(netns_exists(&lab.netns(1)) && link_exists(&lab.links()[0]));
        let o = lab.down();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let left = left_of(&lab, &pids);
        assert!(left.is_empty(), "left after down of a killed up: {left:#?}");
    });
}

/// Waits for `child` until `bound`; its exit status, or a panic naming `what`.
async fn ends_within(
    child: &mut std::process::Child,
    bound: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still waiting after {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_client_of_a_host_cut_off_gets_an_error_not_a_hang() {
    run(async {
        let mut lab = Lab::up(1);
        let pids = vec![lab.pid(1)];
        let fp = lab.import(1, TestImage::Busybox).await;
        let post = instance_post(&fp, "w1", &[], Default::default());
        lab.client(1).create_instance(&post).await.unwrap();
        lab.client(1).start_instance("w1").await.unwrap();

        // An exec over HTTPS that waits in silence (its command sleeps).
        let scratch = tempfile::tempdir().unwrap();
        let err = scratch.path().join("exec.err");
        let target = format!("{}:w1", lab.remote(1));
        let mut exec = lab
            .kante_cmd(&["exec", &target, "--", "sleep", "300"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !lab.sh(1, "w1", "ps").await.1.contains("sleep 300") {
            assert!(Instant::now() < deadline, "the exec never started");
            assert!(exec.try_wait().unwrap().is_none(), "the exec ended early");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Cut off: the client notices by itself (keepalive probes), in
        // well under a minute; it would otherwise wait forever.
        lab.exec_ok(1, &["ip", "link", "set", "uplink0p", "down"]);
        let status =
            ends_within(&mut exec, Duration::from_secs(60), "exec on a cut-off host").await;
        assert!(!status.success());
        let said = std::fs::read_to_string(&err).unwrap();
        assert!(said.starts_with("Error: "), "{said}");
        // A new command fails in bounded time too (connect and handshake).
        let mut list = lab
            .kante_cmd(&["list", "-f", "csv", &format!("{}:", lab.remote(1))])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let status =
            ends_within(&mut list, Duration::from_secs(40), "list of a cut-off host").await;
        assert!(!status.success());

        // Back: the same command answers again.
        lab.exec_ok(1, &["ip", "link", "set", "uplink0p", "up"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = lab.kante(&[
                "list",
                "-f",
                "csv",
                "-c",
                "n",
                &format!("{}:", lab.remote(1)),
            ]);
            if o.status.success() {
                assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "w1");
                break;
            }
            assert!(Instant::now() < deadline, "the host never answered again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        lab.client(1).stop_instance("w1", true, -1).await.unwrap();
        lab.client(1).delete_instance("w1").await.unwrap();
        let o = lab.down();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let left = left_of(&lab, &pids);
        assert!(left.is_empty(), "left after down: {left:#?}");
    });
}
