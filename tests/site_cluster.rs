//! `kante apply` on a cluster (issue 19's placement): a 3-host lab made
//! one cluster. First a site whose hosts stand for the members
//! (`member: h1`…`h3`, all through host 1's remote) with a profile of the
//! cluster and an instance placed on `host2`: the dry run shows the
//! profile once and the instance, and makes nothing; applied, the
//! instance runs on member h2 (its volume in h2's storage) with the
//! profile's limit seen from inside; a second run changes nothing. The
//! file then places it on `host3`: the diff names the move, and applied,
//! it runs on h3 only. A host standing for a member the cluster lacks is
//! refused at plan time with one line, nothing made. Then a site whose
//! one host is the cluster as a whole, three replicas with one
//! `anti_affinity` tag: the scheduler puts them on three members, and a
//! second run changes nothing. `kante site export` of the cluster alone
//! writes its members as the hosts, each instance on its member, and the
//! export applies as no change. `--prune` with emptied files deletes what
//! each site made; the lab goes down leaving nothing.

use std::path::Path;
use std::process::Output;

use kante_integration::cluster::{busybox_cluster, down_and_check, listed, location, on, only_on};
use kante_integration::lab::Lab;
use kante_integration::run;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn apply(lab: &Lab, file: &Path, extra: &[&str]) -> Output {
    let f = file.to_string_lossy().to_string();
    let mut args = vec!["apply", f.as_str()];
    args.extend(extra);
    lab.kante(&args)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The members' site: `pinned` on `on_host`, or nothing placed.
fn members_site(lab: &Lab, on_host: Option<&str>, member3: &str) -> String {
    let r = lab.remote(1);
    let mut s = format!(
        r#"site: cl-members
profiles:
  - name: cl-web
    config: {{limits.memory: 128MiB}}
hosts:
  host1: {{remote: {r}, member: h1}}
  host2: {{remote: {r}, member: h2}}
  host3: {{remote: {r}, member: {member3}}}
"#
    );
    if let Some(h) = on_host {
        s.push_str(&format!(
            r#"instances:
  - name: pinned
    host: {h}
    image: bb
    profiles: [default, cl-web]
"#
        ));
    }
    s
}

/// The scheduler's site: the cluster as one host, `n` replicas spread.
fn scheduled_site(lab: &Lab, n: u32) -> String {
    let mut s = format!(
        "site: cl-scheduled\nhosts:\n  cluster: {{remote: {}}}\n",
        lab.remote(2)
    );
    if n > 0 {
        s.push_str(&format!(
            "instances:\n  - name: spread{{n}}\n    count: {n}\n    host: cluster\n    image: bb\n    anti_affinity: spread\n"
        ));
    }
    s
}

#[test]
fn a_site_is_placed_on_members_moved_and_spread_by_the_scheduler() {
    run(async {
        let mut lab = Lab::up(3);
        busybox_cluster(&lab).await;
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("site.yaml");

        // The plan: the cluster's profile once (by host1), the instance
        // under host2; nothing made.
        std::fs::write(&file, members_site(&lab, Some("host2"), "h3")).unwrap();
        let plan = ok(&apply(&lab, &file, &["--dry-run"]));
        assert_eq!(plan.matches("profile cl-web created").count(), 1, "{plan}");
        let host2 = plan
            .split("host2 (")
            .nth(1)
            .unwrap_or_else(|| panic!("{plan}"));
        assert!(host2.contains("+ instance pinned"), "{plan}");
        // `--target host2`: host2 is the only member host run, so the
        // cluster's profile is its to plan.
        let plan = ok(&apply(&lab, &file, &["--dry-run", "--target", "host2"]));
        let host2 = plan
            .split("host2 (")
            .nth(1)
            .unwrap_or_else(|| panic!("{plan}"));
        assert!(host2.contains("profile cl-web created"), "{plan}");
        assert!(!plan.contains("host1 ("), "{plan}");
        assert!(listed(&lab, 1).is_empty());
        assert!(lab.client(3).profile("cl-web").await.is_err());

        // Applied: on member h2, with the cluster's profile.
        let out = ok(&apply(&lab, &file, &[]));
        assert!(out.contains("host2: instance pinned created"), "{out}");
        assert_eq!(location(&lab, 1, "pinned"), "h2");
        only_on(&lab, 2, "pinned");
        let (code, mem) = lab.sh(2, "pinned", "grep MemTotal /proc/meminfo").await;
        assert_eq!(code, 0, "{mem}");
        assert_eq!(mem.split_whitespace().nth(1), Some("131072"), "{mem}");
        let again = ok(&apply(&lab, &file, &[]));
        assert!(again.contains("Nothing to change"), "{again}");

        // Placed on host3 instead: shown as a move, then moved and running.
        std::fs::write(&file, members_site(&lab, Some("host3"), "h3")).unwrap();
        let plan = ok(&apply(&lab, &file, &["--dry-run"]));
        assert!(
            plan.contains("~ instance pinned: move from member h2 to h3"),
            "{plan}"
        );
        assert_eq!(location(&lab, 1, "pinned"), "h2", "a dry run moves nothing");
        let out = ok(&apply(&lab, &file, &[]));
        assert!(out.contains("instance pinned moved from h2 to h3"), "{out}");
        assert_eq!(location(&lab, 1, "pinned"), "h3");
        only_on(&lab, 3, "pinned");
        let (code, out) = lab.sh(3, "pinned", "echo up").await;
        assert_eq!((code, out.trim()), (0, "up"), "running again on h3");
        let again = ok(&apply(&lab, &file, &[]));
        assert!(again.contains("Nothing to change"), "{again}");

        // A member the cluster lacks: refused at plan time, one line.
        let bad = scratch.path().join("bad.yaml");
        std::fs::write(&bad, members_site(&lab, Some("host3"), "h9")).unwrap();
        let o = apply(&lab, &bad, &[]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            err.contains("member \"h9\", which its cluster does not have (members: h1, h2, h3)"),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(location(&lab, 1, "pinned"), "h3", "nothing changed");

        // The cluster as one host: the scheduler spreads the replicas.
        let sched = scratch.path().join("scheduled.yaml");
        std::fs::write(&sched, scheduled_site(&lab, 3)).unwrap();
        ok(&apply(&lab, &sched, &[]));
        let mut places: Vec<String> = (1..=3)
            .map(|n| location(&lab, 1, &format!("spread{n}")))
            .collect();
        places.sort();
        assert_eq!(places, ["h1", "h2", "h3"]);
        let again = ok(&apply(&lab, &sched, &[]));
        assert!(again.contains("Nothing to change"), "{again}");

        // The cluster exported alone (through member h3): its members are
        // the hosts, its profile is the file's, and each instance is on
        // the member it runs on; applied, the export changes nothing.
        let exported = ok(&lab.kante(&["site", "export", &lab.remote(3), "--name", "cl-copy"]));
        let doc: serde_yaml::Value = serde_yaml::from_str(&exported).unwrap();
        for m in ["h1", "h2", "h3"] {
            let host = &doc["hosts"][m];
            assert_eq!(host["member"].as_str(), Some(m), "{exported}");
            assert_eq!(
                host["remote"].as_str(),
                Some(lab.remote(3).as_str()),
                "{exported}"
            );
        }
        assert_eq!(
            doc["hosts"].as_mapping().map(|h| h.len()),
            Some(3),
            "{exported}"
        );
        let profiles: Vec<&str> = doc["profiles"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{exported}"))
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(profiles.contains(&"cl-web"), "{exported}");
        let mut placed: Vec<(String, String)> = doc["instances"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{exported}"))
            .iter()
            .map(|i| {
                let name = i["name"].as_str().unwrap_or_default().to_string();
                (name, i["host"].as_str().unwrap_or_default().to_string())
            })
            .collect();
        placed.sort();
        let mut expected: Vec<(String, String)> = ["pinned", "spread1", "spread2", "spread3"]
            .iter()
            .map(|n| (n.to_string(), location(&lab, 1, n)))
            .collect();
        expected.sort();
        assert_eq!(placed, expected, "{exported}");
        let copy = scratch.path().join("exported.yaml");
        std::fs::write(&copy, &exported).unwrap();
        let again = ok(&apply(&lab, &copy, &["--dry-run"]));
        assert!(
            again.contains("Nothing to change: the site is converged"),
            "{again}\n{exported}"
        );

        // Pruned: each site deletes what it made, and only that.
        std::fs::write(&sched, scheduled_site(&lab, 0)).unwrap();
        ok(&apply(&lab, &sched, &["--prune", "--yes"]));
        let names: Vec<String> = listed(&lab, 1).into_iter().map(|r| r.0).collect();
        assert_eq!(names, ["pinned"]);
        std::fs::write(&file, members_site(&lab, None, "h3")).unwrap();
        ok(&apply(&lab, &file, &["--prune", "--yes"]));
        assert!(listed(&lab, 1).is_empty());
        on(&lab, 1, &["profile", "delete", "cl-web"]);
        down_and_check(&mut lab, Vec::new());
    });
}
