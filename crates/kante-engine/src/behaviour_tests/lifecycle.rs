//! The start/stop state machine: starts, stops (polite, forced, timed
//! out), freezes, restarts, guests that end on their own (shutdown, crash,
//! reboot), ephemeral instances, and a daemon restart that re-attaches.

use std::time::{Duration, Instant};

use crate::testing::{self, image, TestHost, FAKE_MEMORY_USAGE, FAKE_PID_BASE};
use kante_api::instance::{InstanceStatePut, InstanceStatus};
use kante_runtime::process::signal;
use kante_runtime::InitExit;

use super::{actions, config};

async fn running(host: &TestHost, name: &str) -> std::sync::Arc<crate::Engine> {
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.launch(&engine, name, "img").await;
    engine
}

#[tokio::test]
async fn start_then_stop_moves_through_the_states() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Stopped);
    testing::start(&engine, "c1").await;
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Running);
    assert_eq!(host.runtime.running(), vec!["c1"]);
    testing::stop(&engine, "c1").await;
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Stopped);
    assert!(host.runtime.running().is_empty());
    assert_eq!(
        host.runtime.calls_for("c1"),
        ["start c1", "signal c1 9", "cleanup c1"]
    );
}

#[tokio::test]
async fn start_records_the_power_state_and_emits_instance_started() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    let mut rx = engine.events.subscribe();
    testing::start(&engine, "c1").await;
    let c = config(&engine, "c1").await;
    assert_eq!(c["volatile.last_state.power"], "RUNNING");
    assert!(c["volatile.idmap.current"].contains("\"Hostid\""), "{c:?}");
    assert!(!c.contains_key("volatile.apply_template"));
    assert_eq!(actions(&mut rx), ["instance-started"]);
}

#[tokio::test]
async fn stop_records_stopped_and_emits_instance_stopped() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let mut rx = engine.events.subscribe();
    testing::stop(&engine, "c1").await;
    let c = config(&engine, "c1").await;
    assert_eq!(c["volatile.last_state.power"], "STOPPED");
    assert!(!c.contains_key("volatile.idmap.current"));
    assert_eq!(actions(&mut rx), ["instance-stopped"]);
}

#[tokio::test]
async fn starting_a_running_instance_fails() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let op = testing::state(&engine, "c1", "start", false).await;
    let done = testing::wait(&op).await;
    assert_eq!(
        (done.status_code, done.err.as_str()),
        (400, "The instance is already running")
    );
    assert_eq!(host.runtime.calls_for("c1"), ["start c1"]);
}

#[tokio::test]
async fn stopping_a_stopped_instance_fails() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    let op = testing::state(&engine, "c1", "stop", false).await;
    assert_eq!(
        testing::wait_err(&op).await,
        "The instance is already stopped"
    );
}

#[tokio::test]
async fn a_clean_stop_sends_sigpwr_to_a_plain_init() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let op = testing::state(&engine, "c1", "stop", false).await;
    testing::wait_ok(&op).await;
    assert_eq!(
        host.runtime.calls_for("c1")[1],
        format!("signal c1 {}", signal::PWR)
    );
}

#[tokio::test]
async fn a_clean_stop_sends_sigrtmin_3_to_systemd() {
    let host = TestHost::new();
    let engine = host.open().await;
    let spec = image::Spec {
        init_link: Some("/lib/systemd/systemd".into()),
        ..Default::default()
    };
    let tarball = image::build(host.path(), &spec);
    testing::import_tarball(&engine, &tarball, Some("sd")).await;
    host.launch(&engine, "c1", "sd").await;
    let op = testing::state(&engine, "c1", "stop", false).await;
    testing::wait_ok(&op).await;
    assert_eq!(
        host.runtime.calls_for("c1")[1],
        format!("signal c1 {}", signal::rtmin_plus(3))
    );
}

#[tokio::test]
async fn an_init_that_ignores_the_stop_signal_is_killed_after_the_timeout() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    host.runtime.ignore_stop_signals("c1");
    let t = Instant::now();
    let op = engine
        .instance_state_put(
            "c1",
            InstanceStatePut {
                action: "stop".into(),
                timeout: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    testing::wait_ok(&op).await;
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    let calls = host.runtime.calls_for("c1");
    assert_eq!(
        calls[1..3],
        [format!("signal c1 {}", signal::PWR), "signal c1 9".into()]
    );
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Stopped);
}

#[tokio::test]
async fn a_guest_that_shuts_down_by_itself_is_stopped() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let mut rx = engine.events.subscribe();
    assert!(host.runtime.exit("c1", InitExit::Exited(0)));
    assert!(testing::eventually(|| engine.instance_status("c1") == InstanceStatus::Stopped).await);
    assert!(
        testing::eventually_async(|| async {
            config(&engine, "c1").await["volatile.last_state.power"] == "STOPPED"
        })
        .await
    );
    // The event comes after the record is written: waited for as well.
    let mut seen = Vec::new();
    assert!(
        testing::eventually(|| {
            seen.extend(actions(&mut rx));
            !seen.is_empty()
        })
        .await
    );
    assert_eq!(seen, ["instance-stopped"]);
    assert_eq!(host.runtime.calls_for("c1"), ["start c1", "cleanup c1"]);
}

#[tokio::test]
async fn a_guest_that_reboots_is_started_again() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let first = host.runtime.pid("c1").unwrap();
    assert!(host.runtime.exit("c1", InitExit::Signaled(signal::HUP)));
    assert!(
        testing::eventually(|| host.runtime.pid("c1").is_some_and(|p| p != first)).await,
        "{:?}",
        host.runtime.calls_for("c1")
    );
    assert_eq!(
        host.runtime.calls_for("c1"),
        ["start c1", "cleanup c1", "start c1"]
    );
    // The runtime knows the new pid before the engine has recorded the
    // restart: wait for the engine's own view rather than race it.
    assert!(testing::eventually(|| engine.instance_status("c1") == InstanceStatus::Running).await);
    assert_eq!(
        config(&engine, "c1").await["volatile.last_state.power"],
        "RUNNING"
    );
}

#[tokio::test]
async fn an_ephemeral_instance_is_deleted_when_its_guest_ends() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let mut req = testing::create_request("e1", "img", &[]);
    req.put.ephemeral = true;
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
    testing::start(&engine, "e1").await;
    let volume = engine.paths.pool("default").join("containers/e1");
    assert!(volume.is_dir());
    host.runtime.exit("e1", InitExit::Exited(0));
    assert!(testing::eventually_async(|| async { engine.instance_row("e1").await.is_err() }).await);
    assert_eq!(engine.instance_row("e1").await.unwrap_err().status(), 404);
    assert!(testing::eventually(|| !volume.exists()).await);
}

#[tokio::test]
async fn freeze_and_unfreeze() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let mut rx = engine.events.subscribe();
    testing::wait_ok(&testing::state(&engine, "c1", "freeze", false).await).await;
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Frozen);
    let op = testing::state(&engine, "c1", "freeze", false).await;
    assert_eq!(
        testing::wait_err(&op).await,
        "The instance is already frozen"
    );
    testing::wait_ok(&testing::state(&engine, "c1", "unfreeze", false).await).await;
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Running);
    assert_eq!(actions(&mut rx), ["instance-paused", "instance-resumed"]);
    assert_eq!(
        host.runtime.calls_for("c1")[1..],
        ["freeze c1 true", "freeze c1 false"]
    );
}

#[tokio::test]
async fn start_thaws_a_frozen_instance() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    testing::wait_ok(&testing::state(&engine, "c1", "freeze", false).await).await;
    testing::start(&engine, "c1").await;
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Running);
    assert_eq!(
        host.runtime.calls_for("c1"),
        ["start c1", "freeze c1 true", "freeze c1 false"]
    );
}

#[tokio::test]
async fn freezing_a_stopped_instance_is_refused() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    let op = testing::state(&engine, "c1", "freeze", false).await;
    let done = testing::wait(&op).await;
    assert_eq!(
        (done.status_code, done.err.as_str()),
        (400, "The instance isn't running")
    );
}

#[tokio::test]
async fn restart_stops_then_starts() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let before = host.runtime.pid("c1").unwrap();
    testing::wait_ok(&testing::state(&engine, "c1", "restart", true).await).await;
    assert_eq!(
        host.runtime.calls_for("c1"),
        ["start c1", "signal c1 9", "cleanup c1", "start c1"]
    );
    assert_ne!(host.runtime.pid("c1"), Some(before));
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Running);
}

#[tokio::test]
async fn a_failed_start_leaves_the_instance_stopped() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    host.runtime.fail_next_start("monitor: pivot_root failed");
    let op = testing::state(&engine, "c1", "start", false).await;
    let err = testing::wait_err(&op).await;
    assert!(err.contains("pivot_root failed"), "{err}");
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Stopped);
    assert!(!config(&engine, "c1")
        .await
        .contains_key("volatile.last_state.power"));
    // The next start works.
    testing::start(&engine, "c1").await;
    assert_eq!(engine.instance_status("c1"), InstanceStatus::Running);
}

#[tokio::test]
async fn unknown_and_stateful_actions_are_refused_before_any_work() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let e = engine
        .instance_state_put(
            "c1",
            InstanceStatePut {
                action: "jump".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "Unknown state action \"jump\"")
    );
    let e = engine
        .instance_state_put(
            "c1",
            InstanceStatePut {
                action: "stop".into(),
                stateful: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    let e = engine
        .instance_state_put(
            "nope",
            InstanceStatePut {
                action: "start".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 404);
    assert_eq!(host.runtime.calls_for("c1"), ["start c1"]);
}

#[tokio::test]
async fn state_reports_the_runtime_figures() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let s = engine.instance_state("c1").await.unwrap();
    assert_eq!((s.status.as_str(), s.status_code), ("Running", 103));
    assert!(s.pid > FAKE_PID_BASE as i64, "{}", s.pid);
    assert_eq!(s.memory.usage, FAKE_MEMORY_USAGE);
    assert_eq!(s.processes, 1);
    testing::stop(&engine, "c1").await;
    let s = engine.instance_state("c1").await.unwrap();
    assert_eq!((s.status.as_str(), s.pid), ("Stopped", 0));
}

#[tokio::test]
async fn a_restarted_daemon_reattaches_to_running_guests() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let pid = host.runtime.pid("c1");
    let again = host.open().await;
    assert_eq!(again.instance_status("c1"), InstanceStatus::Running);
    assert_eq!(
        again.instance_state("c1").await.unwrap().pid,
        pid.unwrap() as i64
    );
    assert_eq!(host.runtime.calls_for("c1"), ["start c1", "attach c1"]);
    // The new daemon drives it.
    testing::stop(&again, "c1").await;
    assert_eq!(again.instance_status("c1"), InstanceStatus::Stopped);
    drop(engine);
}

/// A guest that died while no daemon ran is started again at the next
/// daemon start when it was running before (LXD's rule without
/// boot.autostart); one that was stopped stays stopped.
#[test]
fn guests_that_died_while_the_daemon_was_away_are_started_again() {
    let host = TestHost::new();
    let first = tokio::runtime::Runtime::new().unwrap();
    first.block_on(async {
        let engine = host.open().await;
        host.import_image(&engine, "img").await;
        host.launch(&engine, "was-running", "img").await;
        host.create(&engine, "was-stopped", "img", &[]).await;
    });
    // The daemon dies (its tasks with it), then the guest ends.
    drop(first);
    host.runtime
        .exit("was-running", InitExit::Signaled(signal::KILL));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let engine = host.open().await;
        assert!(
            testing::eventually(|| engine.instance_status("was-running") == InstanceStatus::Running)
                .await,
            "{:?}",
            host.runtime.calls()
        );
        assert_eq!(
            host.runtime.calls_for("was-running"),
            ["start was-running", "start was-running"]
        );
        assert_eq!(
            engine.instance_status("was-stopped"),
            InstanceStatus::Stopped
        );
        assert!(host.runtime.calls_for("was-stopped").is_empty());
    });
}

#[tokio::test]
async fn start_refuses_an_instance_whose_volume_is_gone() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    std::fs::remove_dir_all(engine.paths.pool("default").join("containers/c1")).unwrap();
    let op = testing::state(&engine, "c1", "start", false).await;
    let err = testing::wait_err(&op).await;
    assert!(
        err.starts_with("The instance's storage volume is missing"),
        "{err}"
    );
    assert!(host.runtime.calls_for("c1").is_empty());
}
