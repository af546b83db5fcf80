//! Operations and events: exec's operations (return codes, failures,
//! recorded output, control signals), the operation list, and the
//! lifecycle events of a whole instance life, in order.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::testing::{self, TestHost};
use crate::ws::{WsConn, WsMsg};
use crate::{Engine, Op};
use kante_api::exec::ExecPost;
use kante_api::operation::OperationClass;

fn exec(command: &[&str]) -> ExecPost {
    ExecPost {
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn running(host: &TestHost) -> std::sync::Arc<Engine> {
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.launch(&engine, "c1", "img").await;
    engine
}

#[tokio::test]
async fn exec_reports_the_commands_exit_code() {
    let host = TestHost::new();
    let engine = running(&host).await;
    let op = engine
        .instance_exec("c1", exec(&["sh", "-c", "exit 3"]))
        .await
        .unwrap();
    assert_eq!(op.snapshot().class, OperationClass::Task);
    let done = testing::wait_ok(&op).await;
    assert_eq!(done.metadata["return"], 3);
    assert!(host
        .runtime
        .calls_for("c1")
        .contains(&"exec c1 sh -c exit 3".to_string()));
}

#[tokio::test]
async fn a_missing_command_fails_with_127() {
    let host = TestHost::new();
    let engine = running(&host).await;
    let op = engine
        .instance_exec("c1", exec(&["no-such-command-here"]))
        .await
        .unwrap();
    let done = testing::wait(&op).await;
    assert_eq!(
        (done.status.as_str(), done.err.as_str()),
        ("Failure", "Command not found")
    );
    assert_eq!(done.metadata["return"], 127);
}

#[tokio::test]
async fn exec_output_can_be_recorded_as_logs() {
    let host = TestHost::new();
    let engine = running(&host).await;
    let mut post = exec(&["sh", "-c", "echo out; echo err >&2"]);
    post.record_output = true;
    let op = engine.instance_exec("c1", post).await.unwrap();
    let done = testing::wait_ok(&op).await;
    let stdout = done.metadata["output"]["1"].as_str().unwrap().to_string();
    assert_eq!(
        stdout,
        format!("/1.0/instances/c1/logs/exec_{}.stdout", op.id())
    );
    let logs = engine.paths.instance_logs("c1");
    let read = |ext: &str| std::fs::read_to_string(logs.join(format!("exec_{}.{ext}", op.id())));
    assert_eq!(read("stdout").unwrap(), "out\n");
    assert_eq!(read("stderr").unwrap(), "err\n");
}

/// Connects every websocket of an exec operation; the client ends by name.
fn connect(op: &Op) -> BTreeMap<String, WsConn> {
    let fds = op.snapshot().metadata["fds"].as_object().unwrap().clone();
    fds.iter()
        .map(|(name, secret)| {
            let (engine_end, client_end) = WsConn::pair();
            let slot = op.claim_socket(secret.as_str().unwrap()).unwrap();
            assert!(slot.send(engine_end).is_ok());
            (name.clone(), client_end)
        })
        .collect()
}

/// A "signal" control message reaches the command, through the pidfd
/// the runtime handed over with it (never by a pid that could be reused).
#[tokio::test]
async fn exec_control_signals_reach_the_command() {
    let host = TestHost::new();
    let engine = running(&host).await;
    let mut post = exec(&["sleep", "30"]);
    post.wait_for_websocket = true;
    let op = engine.instance_exec("c1", post).await.unwrap();
    assert_eq!(op.snapshot().class, OperationClass::Websocket);
    let socks = connect(&op);
    let signal = r#"{"command": "signal", "signal": 15}"#;
    socks["control"]
        .outgoing
        .send(WsMsg::Text(signal.into()))
        .await
        .unwrap();
    let done = testing::wait_ok(&op).await;
    assert_eq!(done.metadata["return"], 128 + 15);
}

/// A client that closes the control socket while the command runs has it
/// killed, as LXD does.
#[tokio::test]
async fn exec_ends_when_its_control_socket_closes() {
    let host = TestHost::new();
    let engine = running(&host).await;
    let mut post = exec(&["sleep", "30"]);
    post.wait_for_websocket = true;
    let op = engine.instance_exec("c1", post).await.unwrap();
    let mut socks = connect(&op);
    drop(socks.remove("control"));
    let done = testing::wait_ok(&op).await;
    assert_eq!(done.metadata["return"], 128 + 9);
    drop(socks);
}

#[tokio::test]
async fn exec_runs_in_the_guest_with_its_environment() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[("environment.GREETING", "hello")])
        .await;
    testing::start(&engine, "c1").await;
    let mut post = exec(&[
        "sh",
        "-c",
        "echo \"$GREETING $HOME\" > greeting; pwd > where",
    ]);
    post.environment.insert("EXTRA".into(), "1".into());
    let op = engine.instance_exec("c1", post).await.unwrap();
    testing::wait_ok(&op).await;
    let root = engine
        .paths
        .pool("default")
        .join("containers/c1/rootfs/root");
    assert_eq!(
        std::fs::read_to_string(root.join("greeting")).unwrap(),
        "hello /root\n"
    );
    let env = op.snapshot().metadata;
    assert!(env.is_object());
}

#[tokio::test]
async fn exec_needs_a_running_instance_and_a_command() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    let e = engine
        .instance_exec("c1", exec(&["true"]))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "Instance is not running")
    );
    testing::start(&engine, "c1").await;
    let e = engine.instance_exec("c1", exec(&[])).await.unwrap_err();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "No command given")
    );
    let e = engine
        .instance_exec("nope", exec(&["true"]))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 404);
    testing::wait_ok(&testing::state(&engine, "c1", "freeze", false).await).await;
    let e = engine
        .instance_exec("c1", exec(&["true"]))
        .await
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "Instance is frozen");
}

#[tokio::test]
async fn a_running_operation_is_listed_until_it_ends() {
    let host = TestHost::new();
    let engine = running(&host).await;
    let op = engine
        .instance_exec("c1", exec(&["sleep", "1"]))
        .await
        .unwrap();
    let listed = engine.ops.list();
    let me = listed.iter().find(|o| o.id == op.id()).expect("listed");
    assert_eq!(me.status, "Running");
    assert_eq!(me.resources["instances"], ["/1.0/instances/c1"]);
    let early = op.wait(Some(Duration::from_millis(100))).await;
    assert_eq!(early.status, "Running");
    assert_eq!(testing::wait_ok(&op).await.status_code, 200);
    assert_eq!(
        engine.ops.get(&op.id()).unwrap().snapshot().status,
        "Success"
    );
    assert_eq!(engine.ops.get("not-an-id").unwrap_err().status(), 404);
}

#[tokio::test]
async fn operation_events_carry_the_progress() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    let mut rx = engine.events.subscribe();
    let op = testing::state(&engine, "c1", "start", false).await;
    testing::wait_ok(&op).await;
    let mut statuses = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if e.kind == "operation" && e.metadata["id"] == op.id() {
            statuses.push(e.metadata["status"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(statuses.first().map(String::as_str), Some("Running"));
    assert_eq!(statuses.last().map(String::as_str), Some("Success"));
}

#[tokio::test]
async fn a_whole_life_emits_its_lifecycle_events_in_order() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let mut rx = engine.events.subscribe();
    host.launch(&engine, "c1", "img").await;
    testing::stop(&engine, "c1").await;
    engine.instance_rename("c1", "c2").await.unwrap();
    engine.instance_delete("c2").await.unwrap();
    assert_eq!(
        super::lifecycle_events(&mut rx),
        [
            (
                "instance-created".to_string(),
                "/1.0/instances/c1".to_string()
            ),
            ("instance-started".into(), "/1.0/instances/c1".into()),
            ("instance-stopped".into(), "/1.0/instances/c1".into()),
            ("instance-renamed".into(), "/1.0/instances/c2".into()),
            ("instance-deleted".into(), "/1.0/instances/c2".into()),
        ]
    );
}
