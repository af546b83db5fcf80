//! Local-first under faults, on one 3-host lab cluster (`Lab::up(3)`,
//! `kante cluster enable`/`join`, one supervised etcd voter per host),
//! each host with a running busybox instance of its own, made while the
//! host was standalone (its `location` is `none`, then the member's name
//! right after `enable`/`join`, without a restart, as is its start
//! operation's):
//!
//! * **Quorum lost**: h2's and h3's etcd members are stopped with
//!   SIGSTOP (not killed: kanted's supervision would restart a killed
//!   member at once, and a stopped process is also the harsher fault, a
//!   peer whose connections stay open but never answer). On every host,
//!   the two whose own etcd is frozen included, `kante list` shows its
//!   instance, stop/start, exec (output checked), file push/pull and a
//!   snapshot work, the members' view is marked stale with its age, and
//!   cluster writes (`profile create`, `cluster add`) fail with one line
//!   naming the unreachable store within an asserted bound. After
//!   SIGCONT, writes work again without operator action, every member is
//!   ONLINE and a profile made before and one made after the outage are
//!   seen on every host. An instance deleted on h1 during the outage
//!   (its name's reservation could not be given up then) has its name
//!   given up by h1's keeper afterwards: h2 makes one of that name
//!   without any restart.
//! * **Host cut off**: h3's uplink port is set down inside its namespace.
//!   h3 keeps serving its instance, its cluster writes fail fast; h1 and
//!   h2 go on writing and see h3 OFFLINE within the lease; h3's list
//!   shows h1's and h2's instances as ERROR, marked stale with the age of
//!   its view; once the link
//!   is back h3 is ONLINE and has the profile h1 made meanwhile.

use std::time::{Duration, Instant};

use kante_integration::cluster::{
    await_state, down_and_check, etcd_pids, form, members, on, refused, text,
};
use kante_integration::lab::Lab;
use kante_integration::{instance_post, run, TestImage};

/// The longest a refused cluster write may take (the store's bound is
/// 3 s per call to etcd).
const FAIL_FAST: Duration = Duration::from_secs(5);

/// A cluster write on host i fails with one line naming the unreachable
/// store, within [`FAIL_FAST`].
fn write_fails_fast(lab: &Lab, i: u32, args: &[&str]) {
    let start = Instant::now();
    let e = refused(lab, i, args);
    let took = start.elapsed();
    assert!(
        took < FAIL_FAST,
        "h{i}: kante {args:?} took {took:?} to fail: {e}"
    );
    assert!(e.contains("unreachable"), "h{i}: kante {args:?}: {e}");
}

/// What host i must still do with its own instance `name`.
async fn serves_its_own(lab: &Lab, i: u32, name: &str, round: &str) {
    let listed = on(lab, i, &["list", "-f", "csv", "-c", "ns"]);
    assert!(
        listed.lines().any(|l| l == format!("{name},RUNNING")),
        "h{i} ({round}): {listed}"
    );
    on(lab, i, &["stop", name, "--force"]);
    let listed = on(lab, i, &["list", "-f", "csv", "-c", "ns"]);
    assert!(
        listed.lines().any(|l| l == format!("{name},STOPPED")),
        "h{i} ({round}): {listed}"
    );
    on(lab, i, &["start", name]);
    let said = on(
        lab,
        i,
        &["exec", name, "--", "echo", &format!("{round}-{name}")],
    );
    assert_eq!(said.trim(), format!("{round}-{name}"), "h{i}");

    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("in");
    std::fs::write(&local, format!("pushed during {round}\n")).unwrap();
    let target = format!("{name}/root/{round}");
    on(lab, i, &["file", "push", local.to_str().unwrap(), &target]);
    let back = tmp.path().join("out");
    on(lab, i, &["file", "pull", &target, back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        format!("pushed during {round}\n")
    );
    let (code, out) = lab.sh(i, name, &format!("cat /root/{round}")).await;
    assert_eq!(
        (code, out.trim()),
        (0, format!("pushed during {round}").as_str())
    );

    on(lab, i, &["snapshot", name, round]);
    let info = on(lab, i, &["info", name]);
    assert!(info.contains(round), "h{i}: no snapshot {round}: {info}");
}

/// `location` of instance `name` as host i's API shows it.
async fn location_of(lab: &Lab, i: u32, name: &str) -> String {
    let resp = lab
        .client(i)
        .get(&format!("/1.0/instances/{name}"))
        .await
        .unwrap_or_else(|e| panic!("h{i}: GET {name}: {e}"));
    resp.envelope.metadata["location"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sends `sig` to every etcd process of host i.
fn signal_etcd(lab: &Lab, i: u32, sig: i32) -> Vec<i32> {
    let pids = etcd_pids(lab, i);
    assert_eq!(pids.len(), 1, "h{i} runs one etcd: {pids:?}");
    for pid in &pids {
        // SAFETY: a signal to the lab's own etcd.
        assert_eq!(unsafe { libc::kill(*pid, sig) }, 0);
    }
    pids
}

/// Waits until `kante profile create NAME` succeeds on host i (writes
/// work again without operator action), bounded. An attempt refused as a
/// timeout may still have been committed by etcd (its result was unknown
/// to the member): the next attempt's "already exists" then shows the
/// write came back, and the profile must be there.
fn await_write(lab: &Lab, i: u32, name: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut tried = false;
    loop {
        let o = lab.host_kante(i, &["profile", "create", name]);
        if o.status.success() {
            return start.elapsed();
        }
        if tried && text(&o).contains("already exists") {
            let shown = lab.host_kante(i, &["profile", "show", name]);
            assert!(
                shown.status.success(),
                "h{i}: {name} exists yet cannot be shown"
            );
            return start.elapsed();
        }
        tried = true;
        assert!(
            start.elapsed() < limit,
            "h{i}: writes did not come back within {limit:?}: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until host i lists profile `name`, bounded.
fn await_profile(lab: &Lab, i: u32, name: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let got = on(lab, i, &["profile", "list", "-f", "csv"]);
        if got.lines().any(|l| l.split(',').next() == Some(name)) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "h{i} does not see profile {name} after {limit:?}: {got}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_member_serves_its_own_instances_without_quorum_or_uplink() {
    run(async {
        let mut lab = Lab::up(3);
        // Instances made standalone (images are shared once clustered).
        let mut fp = String::new();
        for i in 1..=3 {
            fp = lab.import(i, TestImage::Busybox).await;
            let name = format!("c{i}");
            lab.client(i)
                .create_instance(&instance_post(&fp, &name, &[], Default::default()))
                .await
                .unwrap_or_else(|e| panic!("creating {name} on h{i}: {e}\n{}", lab.log(i)));
            assert_eq!(location_of(&lab, i, &name).await, "none");
        }
        form(&lab);
        // Each member uses its name at once, without a restart: an
        // instance's and an operation's location.
        for i in 1..=3 {
            let name = format!("c{i}");
            assert_eq!(location_of(&lab, i, &name).await, format!("h{i}"));
            let c = lab.client(i);
            let resp = c
                .put(
                    &format!("/1.0/instances/{name}/state"),
                    &serde_json::json!({"action": "start", "timeout": 30}),
                )
                .await
                .unwrap_or_else(|e| panic!("starting {name} on h{i}: {e}\n{}", lab.log(i)));
            assert_eq!(
                resp.envelope.metadata["location"],
                format!("h{i}"),
                "{:?}",
                resp.envelope
            );
            c.finish(resp)
                .await
                .unwrap_or_else(|e| panic!("starting {name} on h{i}: {e}\n{}", lab.log(i)));
        }
        on(&lab, 1, &["profile", "create", "before-outage"]);
        on(&lab, 1, &["init", &fp, "gone", "--target", "h1"]);

        // ---- quorum lost: h2's and h3's etcd frozen ----
        let frozen: Vec<i32> = [2, 3]
            .into_iter()
            .flat_map(|i| signal_etcd(&lab, i, libc::SIGSTOP))
            .collect();
        for i in 1..=3 {
            serves_its_own(&lab, i, &format!("c{i}"), "noquorum").await;
            write_fails_fast(&lab, i, &["profile", "create", &format!("during-h{i}")]);
            write_fails_fast(&lab, i, &["cluster", "add", &format!("x{i}")]);
        }
        // A delete is h1's own: done, though its name's reservation
        // cannot be given up now.
        on(&lab, 1, &["delete", "gone"]);
        // The members' view is marked as stale, with its age.
        for i in 1..=3 {
            let m = members(&lab, i);
            assert_eq!(m.len(), 3, "{m:?}");
            assert!(
                m.iter()
                    .all(|r| r.message.contains("as last seen") && r.message.contains("s ago")),
                "h{i}: {m:?}"
            );
        }
        for pid in &frozen {
            // SAFETY: a signal to the lab's own etcd.
            assert_eq!(unsafe { libc::kill(*pid, libc::SIGCONT) }, 0);
        }
        // Writes come back by themselves, on every host.
        for i in 1..=3 {
            await_write(&lab, i, &format!("after-h{i}"), Duration::from_secs(60));
        }
        for i in 1..=3 {
            for j in 1..=3 {
                await_state(&lab, i, &format!("h{j}"), "ONLINE", Duration::from_secs(30));
            }
            for p in ["before-outage", "after-h1", "after-h2", "after-h3"] {
                await_profile(&lab, i, p, Duration::from_secs(10));
            }
            let got = on(&lab, i, &["profile", "list", "-f", "csv"]);
            assert!(
                !got.contains("during-"),
                "h{i}: a refused write is there: {got}"
            );
            assert!(
                members(&lab, i)
                    .iter()
                    .all(|r| !r.message.contains("as last seen")),
                "h{i}: still stale after recovery"
            );
        }
        // The name of the instance deleted meanwhile is given up by h1's
        // keeper (no record of it for 10 s): free for h2 without a restart.
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let o = lab.host_kante(2, &["init", &fp, "gone", "--target", "h2"]);
            if o.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the name stays taken: {}
{}",
                text(&o),
                lab.log(1)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        on(&lab, 2, &["delete", "gone"]);

        // ---- h3 cut off: its uplink port down ----
        lab.exec_ok(3, &["ip", "link", "set", "uplink0p", "down"]);
        let took = await_state(&lab, 1, "h3", "OFFLINE", Duration::from_secs(25));
        assert!(took < Duration::from_secs(20), "h3 offline after {took:?}");
        await_state(&lab, 2, "h3", "OFFLINE", Duration::from_secs(10));
        // h1 and h2 (a quorum) go on writing.
        on(&lab, 1, &["profile", "create", "while-h3-cut"]);
        on(
            &lab,
            2,
            &["profile", "set", "while-h3-cut", "user.made=meanwhile"],
        );
        // h3 serves its own, and refuses cluster writes fast.
        serves_its_own(&lab, 3, "c3", "cutoff").await;
        write_fails_fast(&lab, 3, &["profile", "create", "from-h3-cut"]);
        let m = members(&lab, 3);
        assert!(
            m.iter().all(|r| r.message.contains("as last seen")),
            "h3 does not say its view is stale: {m:?}"
        );
        // Its list: its own instance live, the others' from the cluster's
        // records, marked stale with the view's age.
        let o = lab.host_kante(3, &["list", "-f", "csv", "-c", "nsL"]);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(o.status.success(), "{out}{err}");
        for row in ["c1,ERROR,h1", "c2,ERROR,h2", "c3,RUNNING,h3"] {
            assert!(
                out.lines().any(|l| l == row),
                "h3's list lacks {row}: {out}"
            );
        }
        for member in ["h1", "h2"] {
            assert!(
                err.contains(&format!(
                    "Cluster member {member} is unreachable (stale: as the cluster was seen "
                )),
                "h3's list does not mark {member}'s instances stale: {err}"
            );
        }
        // h1 and h2 still serve theirs.
        for i in 1..=2 {
            let said = on(&lab, i, &["exec", &format!("c{i}"), "--", "echo", "ok"]);
            assert_eq!(said.trim(), "ok");
        }
        lab.exec_ok(3, &["ip", "link", "set", "uplink0p", "up"]);
        for i in 1..=3 {
            await_state(&lab, i, "h3", "ONLINE", Duration::from_secs(60));
        }
        await_profile(&lab, 3, "while-h3-cut", Duration::from_secs(20));
        let shown = on(&lab, 3, &["profile", "show", "while-h3-cut"]);
        assert!(shown.contains("user.made: meanwhile"), "{shown}");
        await_write(&lab, 3, "after-cut", Duration::from_secs(30));
        await_profile(&lab, 1, "after-cut", Duration::from_secs(10));

        // Every instance still runs where it was.
        for i in 1..=3 {
            let listed = on(&lab, i, &["list", "-f", "csv", "-c", "ns"]);
            assert!(
                listed.lines().any(|l| l == format!("c{i},RUNNING")),
                "h{i}: {listed}"
            );
        }

        down_and_check(&mut lab, Vec::new());
    });
}
