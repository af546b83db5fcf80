//! A rolling restart of a 3-member lab cluster (`Lab::up(3)`, one
//! supervised etcd voter per host), as an upgrade does it: each member's
//! kanted in turn is stopped (SIGTERM, as `systemctl restart` sends) and
//! started again. While one member is down, the other two still list
//! every instance (the down member's as ERROR, by its location), exec into
//! every instance the two of them hold through either API (forwarded
//! where the other owns it), and make cluster changes (a profile key); the
//! down member's guest keeps running (its init pid is alive). Back up, the
//! member sees the change made while it was away, and its instance is
//! RUNNING with the same init, reachable from all three.

use std::time::{Duration, Instant};

use kante_integration::cluster::{
    alive, await_state, down_and_check, form, listed, on, restart_kanted,
};
use kante_integration::lab::Lab;
use kante_integration::{run, TestImage};

/// Waits until host i lists `name` as `state` on `member` (bounded).
fn await_listed(lab: &Lab, i: u32, name: &str, state: &str, member: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = listed(lab, i);
        if all
            .iter()
            .any(|r| r.0 == name && r.1 == state && r.2 == member)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "h{i} does not list {name} {state} on {member}: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The init pid of `name`, as its own member reports it.
fn init_pid(lab: &Lab, i: u32, name: &str) -> i32 {
    on(lab, i, &["list", name, "-f", "csv", "-c", "p"])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("h{i}: pid of {name}: {e}"))
}

/// SIGTERM to `pid`, then waits (bounded) until it is gone.
fn stop_gracefully(pid: i32, what: &str) {
    // SAFETY: a signal to the lab's own daemon.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_rolling_restart_never_cuts_the_other_members_off() {
    run(async {
        let mut lab = Lab::up(3);
        for i in 1..=3 {
            let fp = lab.import(i, TestImage::Busybox).await;
            on(&lab, i, &["image", "alias", "create", "bb", &fp]);
        }
        form(&lab);
        for i in 1..=3 {
            on(
                &lab,
                1,
                &[
                    "launch",
                    "bb",
                    &format!("r{i}"),
                    "--target",
                    &format!("h{i}"),
                ],
            );
        }
        let inits: Vec<i32> = (1..=3)
            .map(|i| init_pid(&lab, i, &format!("r{i}")))
            .collect();
        let mut pids: Vec<i32> = (1..=3).map(|i| lab.pid(i)).collect();
        let mut children = Vec::new();

        for down in 1..=3u32 {
            let up: Vec<u32> = (1..=3).filter(|i| *i != down).collect();
            stop_gracefully(pids[down as usize - 1], &format!("h{down}'s kanted"));
            let gone = format!("r{down}");
            // The down member's guest goes on running.
            assert!(
                alive(inits[down as usize - 1]),
                "{gone}'s init died with its daemon"
            );
            for &i in &up {
                await_listed(&lab, i, &gone, "ERROR", &format!("h{down}"));
                for &j in &up {
                    let name = format!("r{j}");
                    await_listed(&lab, i, &name, "RUNNING", &format!("h{j}"));
                    let host = on(&lab, i, &["exec", &name, "--", "hostname"]);
                    assert_eq!(host.trim(), name, "h{i} → {name} (h{down} down)");
                }
            }
            // Its member state is answered by it alone: a 503 naming it.
            let err = lab
                .client(up[0])
                .get(
                    "/1.0/cluster/members/h{down}/state"
                        .replace("{down}", &down.to_string())
                        .as_str(),
                )
                .await
                .expect_err("the state of a member that is down");
            assert!(err.to_string().contains(&format!("h{down}")), "{err}");
            // Cluster changes go on without the down member (2 of 3 voters).
            let key = format!("user.rolled.h{down}");
            on(&lab, up[0], &["profile", "set", "default", &key, "yes"]);

            children.push(restart_kanted(&lab, down));
            pids[down as usize - 1] = children.last().unwrap().id() as i32;
            for i in 1..=3 {
                await_state(
                    &lab,
                    i,
                    &format!("h{down}"),
                    "ONLINE",
                    Duration::from_secs(30),
                );
            }
            // Back: it has what changed meanwhile, and its instance kept its init.
            let got = on(&lab, down, &["profile", "get", "default", &key]);
            assert_eq!(
                got.trim(),
                "yes",
                "h{down} missed the change made while down"
            );
            assert_eq!(
                init_pid(&lab, down, &gone),
                inits[down as usize - 1],
                "{gone} was restarted with its daemon"
            );
            let state: serde_json::Value = lab
                .client(up[0])
                .get_json(&format!("/1.0/cluster/members/h{down}/state"))
                .await
                .unwrap_or_else(|e| panic!("h{down}'s state through h{}: {e}", up[0]));
            assert_eq!(
                state["sysinfo"]["load_averages"].as_array().map(Vec::len),
                Some(3)
            );
            assert!(state["storage_pools"]["default"].is_object(), "{state}");
            for i in 1..=3 {
                await_listed(&lab, i, &gone, "RUNNING", &format!("h{down}"));
                let host = on(&lab, i, &["exec", &gone, "--", "hostname"]);
                assert_eq!(host.trim(), gone, "h{i} → {gone} after h{down}'s restart");
            }
        }

        for i in 1..=3 {
            on(&lab, 1, &["delete", &format!("r{i}"), "--force"]);
        }
        down_and_check(&mut lab, children);
    });
}
