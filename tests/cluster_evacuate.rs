//! Evacuation and restore on a 3-host lab cluster (`kante cluster
//! enable`/`add`/`join`). On h2: `mover` running (busybox) with a file
//! written in it, and `stayer` with `cluster.evacuate=stop`. `kante
//! cluster evacuate h2`, asked on h1 (forwarded to h2): `mover` runs on
//! another member, its file still there, its volume there only, and it
//! carries `volatile.evacuate.origin=h2`; `stayer` is stopped on h2;
//! `cluster list` shows h2 EVACUATED; new instances placed by the
//! scheduler avoid h2, and a `--target h2` is refused. `kante cluster
//! restore h2`: `mover` runs on h2 again with its file (the origin key
//! gone), `stayer` runs again, h2 is ONLINE. A bad `cluster.evacuate`
//! value and a second restore are refused with one line. Debian's
//! `lxc cluster evacuate h1` then `lxc cluster restore h1` stop and
//! restart h1's only instance (`cluster.evacuate=stop`). Everything is
//! deleted and the lab goes down leaving nothing.

use std::time::Duration;

use kante_integration::cluster::{
    await_state, busybox_cluster, down_and_check, holds, listed, lxc, on, only_on, refused, text,
};
use kante_integration::lab::Lab;
use kante_integration::run;

/// (state, location) of `name` in host i's list.
fn where_is(lab: &Lab, i: u32, name: &str) -> (String, String) {
    let all = listed(lab, i);
    all.iter()
        .find(|r| r.0 == name)
        .map(|r| (r.1.clone(), r.2.clone()))
        .unwrap_or_else(|| panic!("{name} not in h{i}'s list: {all:?}"))
}

#[test]
fn evacuate_moves_or_stops_and_restore_brings_back() {
    run(async {
        let mut lab = Lab::up(3);
        busybox_cluster(&lab).await;

        let bad = refused(
            &lab,
            1,
            &["launch", "bb", "bad", "-c", "cluster.evacuate=sometimes"],
        );
        assert!(bad.contains("cluster.evacuate"), "{bad}");

        on(&lab, 1, &["launch", "bb", "mover", "--target", "h2"]);
        on(
            &lab,
            1,
            &[
                "launch",
                "bb",
                "stayer",
                "--target",
                "h2",
                "-c",
                "cluster.evacuate=stop",
            ],
        );
        only_on(&lab, 2, "mover");
        on(
            &lab,
            1,
            &["exec", "mover", "--", "sh", "-c", "echo kept > /root/mark"],
        );

        // Evacuate, asked on h1: the request is served by h2.
        let out = on(&lab, 1, &["cluster", "evacuate", "h2"]);
        assert!(out.contains("evacuated"), "{out}");
        let (state, member) = where_is(&lab, 1, "mover");
        assert_eq!(state, "RUNNING", "mover after evacuation");
        assert_ne!(member, "h2", "mover still on h2");
        let now_on: u32 = member[1..].parse().unwrap();
        only_on(&lab, now_on, "mover");
        let mark = on(&lab, 1, &["exec", "mover", "--", "cat", "/root/mark"]);
        assert_eq!(mark, "kept\n", "the file written before the move");
        let host = on(&lab, 3, &["exec", "mover", "--", "hostname"]);
        assert_eq!(host.trim(), "mover");
        let origin = on(
            &lab,
            1,
            &["config", "get", "mover", "volatile.evacuate.origin"],
        );
        assert_eq!(origin.trim(), "h2");
        assert_eq!(
            where_is(&lab, 1, "stayer"),
            ("STOPPED".to_string(), "h2".to_string())
        );
        only_on(&lab, 2, "stayer");
        let members = kante_integration::cluster::members(&lab, 1);
        assert!(
            members
                .iter()
                .any(|m| m.name == "h2" && m.state == "EVACUATED"),
            "{members:?}"
        );
        // The scheduler places nothing on h2; a target there is refused.
        for n in ["fresh1", "fresh2", "fresh3"] {
            on(&lab, 1, &["launch", "bb", n]);
            let (_, member) = where_is(&lab, 1, n);
            assert_ne!(member, "h2", "{n} placed on the evacuated h2");
        }
        let e = refused(&lab, 1, &["launch", "bb", "nope", "--target", "h2"]);
        assert!(e.contains("evacuated"), "{e}");
        let e = refused(&lab, 3, &["cluster", "evacuate", "h2"]);
        assert!(e.contains("already evacuated"), "{e}");

        // Restore, asked on h3.
        let out = on(&lab, 3, &["cluster", "restore", "h2"]);
        assert!(out.contains("restored"), "{out}");
        assert_eq!(
            where_is(&lab, 1, "mover"),
            ("RUNNING".to_string(), "h2".to_string())
        );
        only_on(&lab, 2, "mover");
        let mark = on(&lab, 2, &["exec", "mover", "--", "cat", "/root/mark"]);
        assert_eq!(mark, "kept\n", "the file after the way back");
        let origin = on(
            &lab,
            2,
            &["config", "get", "mover", "volatile.evacuate.origin"],
        );
        assert_eq!(origin.trim(), "", "the origin key is cleared");
        assert_eq!(
            where_is(&lab, 1, "stayer"),
            ("RUNNING".to_string(), "h2".to_string())
        );
        let up = on(&lab, 2, &["exec", "stayer", "--", "hostname"]);
        assert_eq!(up.trim(), "stayer");
        await_state(&lab, 1, "h2", "ONLINE", Duration::from_secs(10));
        let e = refused(&lab, 1, &["cluster", "restore", "h2"]);
        assert!(e.contains("not evacuated"), "{e}");

        // Debian's lxc (5.0.2: no --action), through h3, on h1 holding
        // only `pinned` (cluster.evacuate=stop): stopped, then started.
        for n in ["fresh1", "fresh2", "fresh3"] {
            on(&lab, 1, &["delete", n, "--force"]);
        }
        on(
            &lab,
            1,
            &[
                "launch",
                "bb",
                "pinned",
                "--target",
                "h1",
                "-c",
                "cluster.evacuate=stop",
            ],
        );
        let home = tempfile::tempdir().unwrap();
        let o = lxc(
            &lab,
            3,
            home.path(),
            &["cluster", "evacuate", "h1", "--force"],
        );
        assert!(o.status.success(), "lxc cluster evacuate: {}", text(&o));
        assert_eq!(
            where_is(&lab, 2, "pinned"),
            ("STOPPED".to_string(), "h1".to_string())
        );
        let o = lxc(&lab, 3, home.path(), &["cluster", "list", "-f", "csv"]);
        assert!(
            text(&o).contains("EVACUATED"),
            "lxc cluster list: {}",
            text(&o)
        );
        let o = lxc(
            &lab,
            3,
            home.path(),
            &["cluster", "restore", "h1", "--force"],
        );
        assert!(o.status.success(), "lxc cluster restore: {}", text(&o));
        assert_eq!(
            where_is(&lab, 2, "pinned"),
            ("RUNNING".to_string(), "h1".to_string())
        );

        for n in ["mover", "stayer", "pinned"] {
            on(&lab, 1, &["delete", n, "--force"]);
            for j in 1..=3 {
                assert!(!holds(&lab, j, n), "{n} left on h{j}");
            }
        }
        down_and_check(&mut lab, Vec::new());
    });
}
