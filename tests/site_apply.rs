//! `kante apply` on a lab of two hosts: a site file (a profile for every
//! host, a network on one, replicas spread over a group, a step whose
//! captured output a later step uses on the other host) is shown by
//! `--dry-run` without any change, then converged; a second run changes
//! nothing; a one-key change is shown as a diff, then applied live;
//! `--prune` deletes what the file no longer names (asking first: without
//! a terminal it needs `--yes`); a file naming an undefined profile is
//! refused at plan time with nothing made; the hosts exported as a site
//! file (`kante site export`) apply as no change. A host whose part fails does
//! not stop the other, and a re-run finishes the job; a host whose daemon
//! is dead at plan time is shown as unknown and skipped; a host whose
//! daemon is killed in the middle of its part fails that part alone, and
//! once it is back a re-run completes the site.

use std::path::Path;
use std::process::Output;

use kante_integration::lab::Lab;
use kante_integration::{run, TestImage};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn site(lab: &Lab, greeting: &str, with_one: bool) -> String {
    let (h1, h2) = (lab.remote(1), lab.remote(2));
    let mut s = format!(
        r#"site: test-site
profiles:
  - name: site-web
    config: {{limits.memory: 128MiB}}
hosts:
  host1: {{remote: {h1}}}
  host2:
    remote: {h2}
    networks:
      - name: sitebr1
        type: bridge
        config: {{ipv4.address: none, ipv6.address: none}}
groups:
  all: [host1, host2]
instances:
  - name: web{{n}}
    count: 2
    host: all
    image: bb
    profiles: [default, site-web]
    config: {{user.greeting: "{greeting} {{{{name}}}} on {{{{host}}}}"}}
"#
    );
    if with_one {
        s.push_str(
            r#"  - name: one
    host: host1
    image: bb
steps:
  - name: hello
    on: one
    run: echo token-$(hostname)
    capture: TOKEN
  - name: use
    on: [web1, web2]
    run: echo {{TOKEN}} > /tmp/token
"#,
        );
    }
    s
}

fn apply(lab: &Lab, file: &Path, extra: &[&str]) -> Output {
    let f = file.to_string_lossy().to_string();
    let mut args = vec!["apply", f.as_str()];
    args.extend(extra);
    lab.kante(&args)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn a_site_is_planned_converged_changed_and_pruned() {
    run(async {
        let lab = Lab::up(2);
        for i in [1, 2] {
            let fp = lab.import(i, TestImage::Busybox).await;
            lab.client(i)
                .create_image_alias("bb", &fp, "")
                .await
                .unwrap();
        }
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("site.yaml");
        std::fs::write(&file, site(&lab, "hello", true)).unwrap();

        // The plan, and nothing made.
        let plan = ok(&apply(&lab, &file, &["--dry-run"]));
        for line in [
            "+ instance web1",
            "+ instance web2",
            "+ instance one",
            "network sitebr1 created",
            "+ step hello on one",
            "+ step use on web2",
        ] {
            assert!(plan.contains(line), "{line:?} missing:\n{plan}");
        }
        assert!(lab.client(1).instances().await.unwrap().is_empty());
        assert!(lab.client(2).network("sitebr1").await.is_err());

        // Converged: replicas spread, the step's capture used on the other host.
        let out = ok(&apply(&lab, &file, &[]));
        assert!(out.contains("step use ran on web2"), "{out}");
        let web1 = lab.client(1).instance("web1").await.unwrap();
        let web2 = lab.client(2).instance("web2").await.unwrap();
        assert_eq!(
            (web1.status.as_str(), web2.status.as_str()),
            ("Running", "Running")
        );
        assert_eq!(web2.config["user.greeting"], "hello web2 on host2");
        assert_eq!(web2.profiles, ["default", "site-web"]);
        assert_eq!(web2.config["user.kante.site"], "test-site");
        assert!(lab.client(2).instance("web1").await.is_err());
        assert_eq!(
            lab.client(1).profile("site-web").await.unwrap().config["limits.memory"],
            "128MiB"
        );
        assert!(lab.client(2).network("sitebr1").await.unwrap().managed);
        let (code, token) = lab.sh(2, "web2", "cat /tmp/token").await;
        assert_eq!((code, token.trim()), (0, "token-one"));
        // The guest sees the profile's limit (lxcfs's meminfo, from inside).
        let (_, mem) = lab.sh(1, "web1", "grep MemTotal /proc/meminfo").await;
        assert_eq!(mem.split_whitespace().nth(1), Some("131072"), "{mem}");

        // A second run changes nothing and says so.
        let again = ok(&apply(&lab, &file, &[]));
        assert!(
            again.contains("Nothing to change: the site is converged"),
            "{again}"
        );

        // The hosts exported as a site file: applying it changes nothing.
        let exported = ok(&lab.kante(&[
            "site",
            "export",
            &lab.remote(1),
            &lab.remote(2),
            "--name",
            "copy",
        ]));
        assert!(exported.contains("name: web2"), "{exported}");
        assert!(!exported.contains("volatile."), "{exported}");
        let copy = scratch.path().join("exported.yaml");
        std::fs::write(&copy, &exported).unwrap();
        let again = ok(&apply(&lab, &copy, &["--dry-run"]));
        assert!(
            again.contains("Nothing to change: the site is converged"),
            "{again}\n{exported}"
        );

        // One key changed: the diff first, then applied live (still running).
        std::fs::write(&file, site(&lab, "hi", true)).unwrap();
        let plan = ok(&apply(&lab, &file, &["--dry-run"]));
        assert!(plan.contains("~ instance web2"), "{plan}");
        assert!(
            plan.contains("config user.greeting: \"hello web2 on host2\" -> \"hi web2 on host2\""),
            "{plan}"
        );
        assert!(!plan.contains("+ instance"), "{plan}");
        ok(&apply(&lab, &file, &[]));
        let web2 = lab.client(2).instance("web2").await.unwrap();
        assert_eq!(web2.config["user.greeting"], "hi web2 on host2");
        assert_eq!(web2.status, "Running");

        // `one` leaves the file: --prune asks first (no terminal: refused).
        std::fs::write(&file, site(&lab, "hi", false)).unwrap();
        let o = apply(&lab, &file, &["--prune"]);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains("--yes"), "{}", text(&o.stderr));
        assert!(lab.client(1).instance("one").await.is_ok());
        let out = ok(&apply(&lab, &file, &["--prune", "--yes"]));
        assert!(out.contains("instance one deleted"), "{out}");
        assert!(lab.client(1).instance("one").await.is_err());
        assert!(
            lab.client(1).instance("web1").await.is_ok(),
            "only what the file dropped"
        );

        // An undefined profile: refused at plan time, nothing made.
        let bad = site(&lab, "hi", false)
            .replace("[default, site-web]", "[default, nosuch]")
            .replace("count: 2", "count: 3");
        std::fs::write(&file, bad).unwrap();
        let o = apply(&lab, &file, &[]);
        assert!(!o.status.success());
        assert!(
            text(&o.stderr).contains("\"nosuch\""),
            "{}",
            text(&o.stderr)
        );
        assert!(lab.client(1).instance("web3").await.is_err());

        for (i, name) in [(1, "web1"), (2, "web2")] {
            lab.client(i).stop_instance(name, true, -1).await.unwrap();
            lab.client(i).delete_instance(name).await.unwrap();
        }
        let mut lab = lab;
        let o = lab.down();
        assert!(o.status.success(), "{}", text(&o.stderr));
    });
}

/// Two instances, one per host, from alias `bb` on each.
fn pair(lab: &Lab) -> String {
    format!(
        "site: faults\nhosts:\n  host1: {{remote: {}}}\n  host2: {{remote: {}}}\ninstances:\n  - {{name: a1, host: host1, image: bb}}\n  - {{name: a2, host: host2, image: bb}}\n",
        lab.remote(1),
        lab.remote(2)
    )
}

#[test]
fn a_failing_or_dead_host_does_not_stop_the_others() {
    run(async {
        let mut lab = Lab::up(2);
        let fp = lab.import(1, TestImage::Busybox).await;
        lab.client(1)
            .create_image_alias("bb", &fp, "")
            .await
            .unwrap();
        lab.import(2, TestImage::Busybox).await;
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("site.yaml");
        std::fs::write(&file, pair(&lab)).unwrap();

        // host2 has no `bb`: its part fails, host1's is done; exit 1.
        let o = apply(&lab, &file, &[]);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains("host2"), "{}", text(&o.stderr));
        assert_eq!(
            lab.client(1).instance("a1").await.unwrap().status,
            "Running"
        );
        assert!(
            lab.client(2).instance("a2").await.is_err(),
            "nothing half-made"
        );
        // Fixed, a re-run finishes the job and leaves host1 alone.
        lab.client(2)
            .create_image_alias("bb", &fp, "")
            .await
            .unwrap();
        let out = ok(&apply(&lab, &file, &[]));
        assert!(out.contains("host1 ("), "{out}");
        assert!(out.contains("host2: instance a2 created"), "{out}");
        assert!(!out.contains("instance a1 created"), "{out}");
        assert_eq!(
            lab.client(2).instance("a2").await.unwrap().status,
            "Running"
        );

        // host2's daemon dead at plan time: shown as unknown and skipped,
        // host1's change applies; exit 1.
        let changed = pair(&lab).replace("image: bb}", "image: bb, config: {user.x: \"1\"}}");
        std::fs::write(&file, changed).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(lab.pid(2)),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let o = apply(&lab, &file, &[]);
        assert!(!o.status.success());
        let out = text(&o.stdout);
        assert!(
            out.contains("host2") && out.contains("unknown, skipped"),
            "{out}"
        );
        assert_eq!(
            lab.client(1).instance("a1").await.unwrap().config["user.x"],
            "1"
        );

        lab.client(1).stop_instance("a1", true, -1).await.unwrap();
        lab.client(1).delete_instance("a1").await.unwrap();
        let o = lab.down();
        assert!(o.status.success(), "{}", text(&o.stderr));
    });
}

/// One instance on host1, four on host2 (made one after another).
fn lopsided(lab: &Lab) -> String {
    format!(
        "site: midway\nhosts:\n  host1: {{remote: {}}}\n  host2: {{remote: {}}}\ninstances:\n  - {{name: m1, host: host1, image: bb}}\n  - {{name: \"mb{{n}}\", count: 4, host: host2, image: bb}}\n",
        lab.remote(1),
        lab.remote(2)
    )
}

#[test]
fn a_host_killed_while_converging_fails_alone_and_a_rerun_completes() {
    use kante_integration::cluster::restart_kanted;
    use std::time::{Duration, Instant};
    run(async {
        let mut lab = Lab::up(2);
        for i in [1, 2] {
            let fp = lab.import(i, TestImage::Busybox).await;
            lab.client(i)
                .create_image_alias("bb", &fp, "")
                .await
                .unwrap();
        }
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("site.yaml");
        std::fs::write(&file, lopsided(&lab)).unwrap();
        let f = file.to_string_lossy().to_string();
        let out = scratch.path().join("apply.out");
        let err = scratch.path().join("apply.err");
        let mut child = lab
            .kante_cmd(&["apply", &f])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();

        // As soon as host2 has its first instance, its daemon dies.
        let c2 = lab.client(2);
        let deadline = Instant::now() + Duration::from_secs(120);
        while c2.instance("mb1").await.is_err() {
            assert!(Instant::now() < deadline, "host2 never got mb1");
            if child.try_wait().unwrap().is_some() {
                let said = std::fs::read_to_string(&err).unwrap_or_default();
                panic!("apply ended first: {said}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(lab.pid(2)),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();

        // apply ends (it does not wait on the dead host), non-zero, naming
        // host2; host1's part is done.
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "apply hung on a dead host");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (stdout, stderr) = (
            std::fs::read_to_string(&out).unwrap(),
            std::fs::read_to_string(&err).unwrap(),
        );
        assert!(!status.success(), "{stdout}{stderr}");
        assert!(stderr.contains("host2"), "{stdout}{stderr}");
        assert_eq!(
            lab.client(1).instance("m1").await.unwrap().status,
            "Running"
        );

        // host2 back: what the kill interrupted is finished or undone by
        // its daemon, and a re-run makes the rest; host1 is left alone.
        let mut h2 = restart_kanted(&lab, 2);
        let made = lab.client(2).instances().await.unwrap().len();
        assert!(made < 4, "the kill came after host2's part was done");
        let again = ok(&apply(&lab, &file, &[]));
        assert!(!again.contains("instance m1 created"), "{again}");
        for n in 1..=4 {
            let name = format!("mb{n}");
            let i = lab.client(2).instance(&name).await.unwrap();
            assert_eq!(i.status, "Running", "{name}");
        }
        let quiet = ok(&apply(&lab, &file, &[]));
        assert!(!quiet.contains("created"), "{quiet}");

        for (i, names) in [
            (1, vec!["m1".to_string()]),
            (2, (1..=4).map(|n| format!("mb{n}")).collect()),
        ] {
            for n in names {
                lab.client(i).stop_instance(&n, true, -1).await.unwrap();
                lab.client(i).delete_instance(&n).await.unwrap();
            }
        }
        let o = lab.down();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let _ = h2.wait();
    });
}
