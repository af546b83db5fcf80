//! Cluster "one view" on the lab (`Lab::up(3)`, made a 3-member cluster
//! by `kante cluster enable`/`add`/`join`): any member answers for any
//! instance. From h1, `kante launch … --target h3` lands on h3 (its
//! volume is in h3's storage, and h3's own list has it) and Debian's
//! `lxc launch --target h2` on h2; h1's `kante list` shows all members'
//! instances with LOCATION; h1 execs into h3's instance, pushes and
//! pulls a file, stops, starts and deletes it (forwarded to h3, the
//! exec's websockets joined through h1; Debian's `lxc exec` too; its
//! console attached through h1 shows what c3 writes); h2 lists h3's
//! running exec among the operations (kante and lxc, with its location); three instances with one
//! `placement.anti-affinity` tag land on three members (also when
//! launched at once from the three members; a refused creation's claim
//! is given up) and
//! `placement.affinity` puts one beside its partner, the reason shown by
//! `kante info`; Debian's lxc makes a cluster group of h2 and `--target
//! @group` (kante and lxc) places there, an unknown group, deleting a
//! group with members and leaving a member in no group are refused.
//! Custom volumes are made on a member with `--target` (lxc and kante),
//! listed by every member with their location, read, changed and
//! deleted through members that do not hold them; a name held by two
//! members needs a target. With
//! h3's kanted killed, h1 still lists its own and
//! h2's instances and h3's as ERROR, and an exec on h3's instance
//! through h1 fails within 5 s naming h3. The lab goes down leaving
//! nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use kante_integration::bin;
use kante_integration::cluster::{
    down_and_check, holds, listed, location, lxc, on, only_on, restart_kanted, text, token,
};
use kante_integration::lab::Lab;
use kante_integration::pty::{clean, drive, then_detach, DETACH_HINT};
use kante_integration::{run, TestImage};
use serde_json::json;

/// Waits until host i lists every member ONLINE (bounded).
fn await_online(lab: &Lab, i: u32, limit: Duration) {
    let start = Instant::now();
    loop {
        let out = on(lab, i, &["cluster", "list", "-f", "csv"]);
        if out.lines().count() == 3 && out.lines().all(|l| l.contains(",ONLINE,")) {
            return;
        }
        assert!(start.elapsed() < limit, "h{i}: not all ONLINE: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn any_member_answers_for_any_instance() {
    run(async {
        let mut lab = Lab::up(3);
        let mut fp = String::new();
        for i in 1..=3 {
            fp = lab.import(i, TestImage::Busybox).await;
        }
        on(&lab, 1, &["image", "alias", "create", "bb", &fp]);
        on(&lab, 1, &["cluster", "enable", "h1"]);
        let t = token(&lab, 1, "h2");
        on(&lab, 2, &["cluster", "join", &t]);
        let t = token(&lab, 1, "h3");
        on(&lab, 3, &["cluster", "join", &t]);
        for i in 1..=3 {
            await_online(&lab, i, Duration::from_secs(20));
        }

        // Every member's server certificate is trusted by the cluster.
        let trusted = on(&lab, 2, &["config", "trust", "list", "-f", "csv"]);
        for j in 1..=3 {
            assert!(
                trusted.contains(&format!("cluster member h{j}")),
                "h{j}'s certificate is not trusted: {trusted}"
            );
        }

        // Placement by --target, from h1.
        on(&lab, 1, &["launch", "bb", "c3", "--target", "h3"]);
        only_on(&lab, 3, "c3");
        let own3 = on(&lab, 3, &["list", "-f", "csv", "-c", "nL"]);
        assert!(own3.contains("c3,h3"), "h3's own list: {own3}");
        on(&lab, 1, &["launch", "bb", "c1", "--target", "h1"]);
        only_on(&lab, 1, "c1");
        let info = on(&lab, 1, &["info", "c3"]);
        assert!(info.contains("Placement: target h3 requested"), "{info}");

        // Debian's lxc, through h1: `lxc launch --target h2`.
        let home = tempfile::tempdir().unwrap();
        let o = lxc(
            &lab,
            1,
            home.path(),
            &["launch", "bb", "lx2", "--target", "h2"],
        );
        assert!(o.status.success(), "lxc launch --target: {}", text(&o));
        only_on(&lab, 2, "lx2");

        // One view: h1 lists all three members' instances with LOCATION.
        let all = listed(&lab, 1);
        for (name, member) in [("c1", "h1"), ("lx2", "h2"), ("c3", "h3")] {
            assert!(
                all.iter()
                    .any(|r| r.0 == name && r.1 == "RUNNING" && r.2 == member),
                "{name} on {member} not in h1's list: {all:?}"
            );
        }
        let table = on(&lab, 1, &["list"]);
        assert!(table.contains("LOCATION"), "{table}");
        let o = lxc(&lab, 2, home.path(), &["list", "-f", "csv", "-c", "nL"]);
        let out = text(&o);
        assert!(o.status.success(), "lxc list: {out}");
        assert!(out.contains("c3,h3") && out.contains("c1,h1"), "{out}");

        // h1 drives h3's instance: exec, files, stop, start.
        let host = on(&lab, 1, &["exec", "c3", "--", "hostname"]);
        assert_eq!(host.trim(), "c3");
        // lxc too: its websockets joined through h1, and it waits for the
        // operation on h1's event stream, where h1 relays its end.
        let o = lxc(&lab, 1, home.path(), &["exec", "c3", "--", "hostname"]);
        assert!(o.status.success(), "lxc exec through h1: {}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "c3");
        // A member lists every member's operations: an exec running on h3
        // (asked through h1) shows on h2, with its location, in kante's
        // list and in Debian's lxc's.
        let mut long = Command::new(bin("kante"))
            .args(["exec", "c3", "--", "sleep", "6"])
            .env("KANTE_DIR", lab.state(1))
            .env("KANTE_CONF", &lab.conf)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let ops = loop {
            let ops = on(&lab, 2, &["operation", "list", "-f", "csv"]);
            if ops
                .lines()
                .any(|l| l.contains("RUNNING") && l.ends_with(",h3"))
            {
                break ops;
            }
            assert!(
                Instant::now() < deadline,
                "h3's exec not in h2's list: {ops}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(ops.contains("Executing command"), "{ops}");
        let o = lxc(&lab, 2, home.path(), &["operation", "list", "-f", "csv"]);
        let out = text(&o);
        assert!(o.status.success(), "lxc operation list: {out}");
        assert!(
            out.lines()
                .any(|l| l.contains("RUNNING") && l.contains(",h3")),
            "lxc on h2 does not show h3's exec: {out}"
        );
        assert!(long.wait().unwrap().success());
        // The console as well: h1 forwards the attach and joins its
        // websockets to h3's; what c3 writes to /dev/console (again and
        // again until the attached terminal has seen it) shows through h1.
        let mut cmd = Command::new(bin("kante"));
        cmd.args(["console", "c3"])
            .env("KANTE_DIR", lab.state(1))
            .env("KANTE_CONF", &lab.conf);
        let steps = then_detach(json!([["expect", DETACH_HINT], ["expect", "via-h1", 60]]));
        let attached = std::thread::spawn(move || drive(cmd, (80, 24), steps));
        while !attached.is_finished() {
            on(
                &lab,
                3,
                &["exec", "c3", "--", "sh", "-c", "echo via-h1 > /dev/console"],
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let report = attached.join().unwrap();
        assert!(clean(&report), "console of c3 through h1: {report:#}");
        let local = tempfile::tempdir().unwrap();
        let src = local.path().join("note.txt");
        std::fs::write(&src, "through h1\n").unwrap();
        on(
            &lab,
            1,
            &["file", "push", src.to_str().unwrap(), "c3/root/note.txt"],
        );
        let got = on(&lab, 3, &["exec", "c3", "--", "cat", "/root/note.txt"]);
        assert_eq!(got, "through h1\n", "pushed through h1, read on h3");
        let back = local.path().join("back.txt");
        on(
            &lab,
            1,
            &["file", "pull", "c3/root/note.txt", back.to_str().unwrap()],
        );
        assert_eq!(std::fs::read_to_string(&back).unwrap(), "through h1\n");
        on(&lab, 1, &["stop", "c3", "--force"]);
        assert_eq!(location(&lab, 3, "c3"), "h3");
        let state = on(&lab, 3, &["list", "-f", "csv", "-c", "ns"]);
        assert!(state.contains("c3,STOPPED"), "{state}");
        on(&lab, 1, &["start", "c3"]);
        let state = on(&lab, 3, &["list", "-f", "csv", "-c", "ns"]);
        assert!(state.contains("c3,RUNNING"), "{state}");

        // Anti-affinity spreads a tag over the three members.
        let mut spread = Vec::new();
        for n in ["web1", "web2", "web3"] {
            on(
                &lab,
                1,
                &["launch", "bb", n, "-c", "placement.anti-affinity=web"],
            );
            spread.push(location(&lab, 1, n));
        }
        spread.sort();
        assert_eq!(spread, ["h1", "h2", "h3"], "anti-affinity");
        for (n, i) in ["web1", "web2", "web3"]
            .iter()
            .map(|n| (*n, location(&lab, 2, n)))
            .map(|(n, l)| (n, l[1..].parse::<u32>().unwrap()))
        {
            only_on(&lab, i, n);
        }
        // Three launches with one tag at once, one from each member:
        // each claims its member in etcd (a compare-and-swap) before the
        // instance exists, so none lands where another is going.
        std::thread::scope(|s| {
            for i in 1..=3u32 {
                let lab = &lab;
                s.spawn(move || {
                    let n = format!("fan{i}");
                    on(
                        lab,
                        i,
                        &["launch", "bb", &n, "-c", "placement.anti-affinity=fan"],
                    );
                });
            }
        });
        let mut fan: Vec<String> = (1..=3)
            .map(|i| location(&lab, 1, &format!("fan{i}")))
            .collect();
        fan.sort();
        assert_eq!(fan, ["h1", "h2", "h3"], "concurrent anti-affinity");
        on(&lab, 2, &["delete", "fan1", "fan2", "fan3", "--force"]);
        // A creation refused where it was placed gives its claim up: the
        // next launch with that tag avoids nobody.
        let o = lab.host_kante(
            1,
            &[
                "launch",
                "bb",
                "solo0",
                "-c",
                "placement.anti-affinity=solo",
                "-c",
                "limits.memory=lots",
            ],
        );
        assert!(!o.status.success(), "a bad limits.memory was taken");
        on(
            &lab,
            1,
            &[
                "launch",
                "bb",
                "solo1",
                "-c",
                "placement.anti-affinity=solo",
            ],
        );
        let info = on(&lab, 1, &["info", "solo1"]);
        assert!(
            info.contains("Placement: scheduler chose") && !info.contains("avoiding"),
            "a failed creation's claim was kept: {info}"
        );
        on(&lab, 1, &["delete", "solo1", "--force"]);
        // Affinity: beside c3 (on h3), asked on h2.
        on(
            &lab,
            2,
            &["launch", "bb", "pal", "-c", "placement.affinity=c3"],
        );
        only_on(&lab, 3, "pal");
        assert_eq!(location(&lab, 1, "pal"), "h3");
        let info = on(&lab, 1, &["info", "pal"]);
        assert!(
            info.contains("Placement: scheduler chose h3")
                && info.contains("beside c3 (placement.affinity)"),
            "{info}"
        );

        // Cluster groups, driven by Debian's lxc through h1: h2 alone in
        // group "edge", then `--target @edge` places there (kante and lxc).
        let lxc_ok = |args: &[&str]| {
            let o = lxc(&lab, 1, home.path(), args);
            assert!(o.status.success(), "lxc {args:?}: {}", text(&o));
            text(&o)
        };
        lxc_ok(&["cluster", "group", "create", "edge"]);
        lxc_ok(&["cluster", "group", "assign", "h2", "edge"]);
        // kante's verbs, on another member, see the same groups.
        let listed_groups = on(&lab, 3, &["cluster", "group", "list", "-f", "csv"]);
        assert!(
            listed_groups.contains("edge,,h2") && listed_groups.contains("default,"),
            "{listed_groups}"
        );
        let shown = lxc_ok(&["cluster", "show", "h2"]);
        assert!(
            shown.contains("- edge") && !shown.contains("- default"),
            "{shown}"
        );
        let edge = lxc_ok(&["cluster", "group", "show", "edge"]);
        assert!(edge.contains("- h2") && !edge.contains("- h1"), "{edge}");
        let default = lxc_ok(&["cluster", "group", "show", "default"]);
        assert!(
            default.contains("- h1") && !default.contains("- h2"),
            "{default}"
        );
        on(&lab, 1, &["launch", "bb", "g1", "--target", "@edge"]);
        only_on(&lab, 2, "g1");
        let info = on(&lab, 1, &["info", "g1"]);
        assert!(info.contains("in group edge"), "{info}");
        lxc_ok(&["launch", "bb", "g2", "--target", "@edge"]);
        only_on(&lab, 2, "g2");
        // Refused: an unknown group, a group with members, a member in none.
        let o = lab.host_kante(1, &["launch", "bb", "g3", "--target", "@nope"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success() && err.contains("\"nope\" not found"),
            "{err}"
        );
        assert!(!listed(&lab, 1).iter().any(|r| r.0 == "g3"));
        let o = lxc(
            &lab,
            1,
            home.path(),
            &["cluster", "group", "delete", "edge"],
        );
        assert!(!o.status.success(), "a group with members was deleted");
        assert!(
            text(&o).contains("Only empty cluster groups"),
            "{}",
            text(&o)
        );
        let o = lxc(
            &lab,
            1,
            home.path(),
            &["cluster", "group", "remove", "h2", "edge"],
        );
        assert!(!o.status.success(), "h2 was left in no group");
        assert!(text(&o).contains("at least one group"), "{}", text(&o));
        // Back to default (kante), and the empty group goes (lxc).
        on(&lab, 2, &["cluster", "group", "assign", "h2", "default"]);
        lxc_ok(&["cluster", "group", "delete", "edge"]);
        let groups = lxc_ok(&["cluster", "group", "list", "-f", "csv"]);
        assert!(
            !groups.contains("edge") && groups.contains("default"),
            "{groups}"
        );
        on(&lab, 1, &["delete", "g1", "g2", "--force"]);

        // Custom volumes live on one member each: made with --target
        // (lxc, then kante), listed from any member with their location,
        // changed and read through members that do not hold them
        // (forwarded to the holder); one name on two members needs a
        // target, and a delete without one finds the last holder.
        let vol_on = |i: u32, v: &str| {
            lab.state(i)
                .join("storage-pools/default/custom")
                .join(v)
                .exists()
        };
        lxc_ok(&[
            "storage", "volume", "create", "default", "v1", "--target", "h2",
        ]);
        assert!(vol_on(2, "v1") && !vol_on(1, "v1") && !vol_on(3, "v1"));
        let vols = lxc_ok(&["storage", "volume", "list", "default", "--format", "csv"]);
        assert!(
            vols.lines()
                .any(|l| l.starts_with("custom,v1,") && l.ends_with(",h2")),
            "{vols}"
        );
        lxc_ok(&[
            "storage",
            "volume",
            "set",
            "default",
            "v1",
            "user.note",
            "through-h1",
        ]);
        let note = on(
            &lab,
            3,
            &["storage", "volume", "get", "default", "v1", "user.note"],
        );
        assert_eq!(note.trim(), "through-h1");
        on(
            &lab,
            1,
            &[
                "storage", "volume", "create", "default", "v1", "--target", "h3",
            ],
        );
        assert!(vol_on(3, "v1") && vol_on(2, "v1"));
        let o = lxc(
            &lab,
            1,
            home.path(),
            &["storage", "volume", "show", "default", "v1"],
        );
        assert!(
            !o.status.success() && text(&o).contains("More than one cluster member (h2, h3)"),
            "{}",
            text(&o)
        );
        let shown = lxc_ok(&[
            "storage", "volume", "show", "default", "v1", "--target", "h2",
        ]);
        assert!(
            shown.contains("user.note: through-h1") && shown.contains("location: h2"),
            "{shown}"
        );
        let vols = on(
            &lab,
            2,
            &["storage", "volume", "list", "default", "-f", "csv"],
        );
        for member in ["h2", "h3"] {
            assert!(
                vols.lines()
                    .any(|l| l.starts_with("custom,v1,") && l.ends_with(member)),
                "{vols}"
            );
        }
        on(
            &lab,
            1,
            &[
                "storage", "volume", "delete", "default", "v1", "--target", "h3",
            ],
        );
        assert!(!vol_on(3, "v1") && vol_on(2, "v1"));
        lxc_ok(&["storage", "volume", "delete", "default", "v1"]);
        assert!((1..=3).all(|i| !vol_on(i, "v1")), "v1 left behind");

        // A delete through h1 removes it from h3.
        on(&lab, 1, &["delete", "web1", "--force"]);
        assert!(!listed(&lab, 1).iter().any(|r| r.0 == "web1"));
        for j in 1..=3 {
            assert!(!holds(&lab, j, "web1"), "web1 left on h{j}");
        }

        // h3's kanted killed: h1 lists what it can and shows h3's as ERROR.
        let pid = lab.pid(3);
        // SAFETY: a kill of the lab's own daemon.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            seen = listed(&lab, 1);
            if seen.iter().any(|r| r.0 == "c3" && r.1 == "ERROR") {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        for (name, state, member) in [
            ("c1", "RUNNING", "h1"),
            ("lx2", "RUNNING", "h2"),
            ("c3", "ERROR", "h3"),
            ("pal", "ERROR", "h3"),
        ] {
            assert!(
                seen.iter()
                    .any(|r| r.0 == name && r.1 == state && r.2 == member),
                "{name} {state} on {member} not in h1's list: {seen:?}"
            );
        }
        assert!(lab.log(1).contains("did not answer the instance list"));
        // An exec on h3's instance through h1 fails fast, naming h3.
        let start = Instant::now();
        let o = lab.host_kante(1, &["exec", "c3", "--", "true"]);
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "exec on a dead member succeeded");
        assert!(took < Duration::from_secs(5), "took {took:?}: {err}");
        assert!(err.contains("\"h3\""), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");

        let h3 = restart_kanted(&lab, 3);
        await_online(&lab, 1, Duration::from_secs(20));
        on(&lab, 1, &["delete", "c3", "--force"]);
        assert!(!holds(&lab, 3, "c3"));

        down_and_check(&mut lab, vec![h3]);
    });
}
