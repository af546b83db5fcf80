//! The client against the in-memory fake daemon.

mod fake;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake::FakeDaemon;
use kante_api::exec::{ExecControl, ExecPost};
use kante_api::instance::{InstancePut, InstanceSource, InstancesPost};
use kante_api::StatusCode;
use kante_client::{
    Client, ClientError, ExecStreams, FileContent, FileKind, FilePushOptions, ImageUploadOptions,
};

#[tokio::test]
async fn server_info_and_connect_errors() {
    let d = FakeDaemon::start().await;
    let server = d
        .client()
        .get_json::<kante_api::server::Server>("/1.0")
        .await
        .unwrap();
    assert_eq!(server.environment.server_version, "9.9.9");
    assert_eq!(d.with(|s| s.headers[0].1["host"].clone()), "unix.socket");

    let gone = Client::with_socket(d.dir.path().join("nope.socket"));
    let err = gone.get("/1.0").await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.socket"));
}

#[tokio::test]
async fn error_envelope_becomes_api_error() {
    let d = FakeDaemon::start().await;
    let err = d.client().instance("missing").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.to_string(), "Instance not found");
}

#[tokio::test]
async fn create_start_stop_delete() {
    let d = FakeDaemon::start().await;
    d.add_image("e8b1265df84e0000", Some("bookworm"));
    let c = d.client();
    let fp = c.resolve_image("bookworm").await.unwrap();
    assert_eq!(fp, "e8b1265df84e0000");
    assert_eq!(c.resolve_image("e8b1").await.unwrap(), fp);
    assert_eq!(
        c.resolve_image("nosuch").await.unwrap_err().to_string(),
        "Image not found"
    );

    let post = InstancesPost {
        name: String::new(),
        kind: "container".into(),
        source: InstanceSource {
            kind: "image".into(),
            fingerprint: fp,
            ..Default::default()
        },
        ..Default::default()
    };
    let name = c.create_instance(&post).await.unwrap();
    assert_eq!(name, "auto-1");
    let body = d.with(|s| {
        s.bodies
            .iter()
            .find(|(l, _)| l == "POST /1.0/instances")
            .unwrap()
            .1
            .clone()
    });
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["profiles"].is_null(),
        "profiles must be null by default: {v}"
    );

    c.start_instance(&name).await.unwrap();
    assert_eq!(c.instance(&name).await.unwrap().status, "Running");
    let err = c.start_instance(&name).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Operation(ref m) if m == "The instance is already running"),
        "{err:?}"
    );
    assert_eq!(
        c.delete_instance(&name).await.unwrap_err().to_string(),
        "Instance is running"
    );

    let full = c.instances_full().await.unwrap();
    assert_eq!(full[0].state.as_ref().unwrap().pid, 4242);
    c.stop_instance(&name, true, -1).await.unwrap();
    c.delete_instance(&name).await.unwrap();
    assert!(c.instance_names().await.unwrap().is_empty());

    let named = c.launch("web-1", "bookworm").await.unwrap();
    assert_eq!(named, "web-1");
    assert_eq!(c.instance_state("web-1").await.unwrap().status, "Running");
    c.rename_instance("web-1", "web-2").await.unwrap();
    assert_eq!(c.instance_names().await.unwrap(), vec!["web-2"]);
}

#[tokio::test]
async fn update_sends_if_match_and_surfaces_operation_errors() {
    let d = FakeDaemon::start().await;
    d.add_instance("c1", StatusCode::Running);
    let c = d.client();
    let (inst, etag) = c.instance_with_etag("c1").await.unwrap();
    assert_eq!(etag.as_deref(), Some("\"etag-1\""));
    let mut put = InstancePut {
        architecture: inst.architecture,
        config: inst.config,
        ..Default::default()
    };
    put.config.insert("limits.memory".into(), "bogus".into());
    let err = c
        .update_instance("c1", &put, etag.as_deref())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Invalid config: Invalid value: bogus");
    put.config.insert("limits.memory".into(), "256MiB".into());
    c.update_instance("c1", &put, etag.as_deref())
        .await
        .unwrap();
    // The ETag moved on: the old one is refused.
    let err = c
        .update_instance("c1", &put, etag.as_deref())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(412));
    let put_headers = d.with(|s| {
        s.headers
            .iter()
            .filter(|(l, _)| l == "PUT /1.0/instances/c1")
            .count()
    });
    assert_eq!(put_headers, 3);
}

#[tokio::test]
async fn wait_operation_times_out_and_reports_failure() {
    let d = FakeDaemon::start().await;
    let entry = d.with(|s| {
        s.new_op(
            kante_api::operation::OperationClass::Task,
            "x",
            &[],
            serde_json::Value::Null,
        )
    });
    let id = entry.snapshot().id;
    let c = d.client();
    let t = Instant::now();
    let err = c
        .wait_operation(&id, Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    entry.finish(Err("boom".into()));
    assert_eq!(
        c.wait_operation(&id, None).await.unwrap_err().to_string(),
        "boom"
    );
    assert_eq!(
        c.wait_operation_raw(&id, None).await.unwrap().status_code,
        400
    );
}

#[tokio::test]
async fn exec_capture_collects_streams_and_exit_code() {
    let d = FakeDaemon::start().await;
    d.add_instance("c1", StatusCode::Running);
    let c = d.client();
    let out = c
        .exec_capture("c1", &["fail"], &[("FOO", "bar")], None)
        .await
        .unwrap();
    assert_eq!(
        (
            out.code,
            out.stdout_str().as_str(),
            out.stderr_str().as_str()
        ),
        (3, "out\n", "err\n")
    );
    let post = d.with(|s| s.exec_posts[0].clone());
    assert_eq!(post["wait-for-websocket"], true);
    assert_eq!(post["interactive"], false);
    assert_eq!(post["environment"]["FOO"], "bar");

    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = c
        .exec_capture("c1", &["cat"], &[], Some(data.clone()))
        .await
        .unwrap();
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, data);

    let out = c
        .exec_capture("c1", &["big", "1000000"], &[], None)
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), 1_000_000);

    // 127 is a Failure operation but still an exit code, not an error.
    let out = c
        .exec_capture("c1", &["nosuchcmd"], &[], None)
        .await
        .unwrap();
    assert_eq!(out.code, 127);

    let err = c
        .exec_capture("nope", &["true"], &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Instance not found");
}

#[tokio::test]
async fn exec_capture_is_fast() {
    let d = FakeDaemon::start().await;
    d.add_instance("c1", StatusCode::Running);
    let c = d.client();
    c.exec_capture("c1", &["true"], &[], None).await.unwrap();
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(
            c.exec_capture("c1", &["true"], &[], None)
                .await
                .unwrap()
                .code,
            0
        );
    }
    let per = t.elapsed() / n;
    eprintln!("exec_capture round trip: {per:?}");
    // Generous for loaded CI machines; typically well under 2 ms here.
    assert!(per < Duration::from_millis(50), "exec round trip {per:?}");
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for SharedBuf {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn streaming_exec_forwards_signals() {
    let d = FakeDaemon::start().await;
    d.add_instance("c1", StatusCode::Running);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let out = SharedBuf::default();
    let streams = ExecStreams {
        stdin: None,
        stdout: Box::new(out.clone()),
        stderr: Box::new(SharedBuf::default()),
        control: Some(rx),
    };
    let post = ExecPost {
        command: vec!["wait-signal".into()],
        ..Default::default()
    };
    let c = d.client();
    let task = tokio::spawn(async move { c.exec("c1", post, streams).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(ExecControl::signal(15)).unwrap();
    assert_eq!(task.await.unwrap().unwrap(), 143);
    let msgs = d.with(|s| s.control_messages.clone());
    assert_eq!(
        msgs[0],
        serde_json::json!({"command": "signal", "args": null, "signal": 15})
    );
}

#[tokio::test]
async fn interactive_exec_uses_one_stream_and_resizes() {
    let d = FakeDaemon::start().await;
    d.add_instance("c1", StatusCode::Running);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(ExecControl::resize(120, 40)).unwrap();
    let out = SharedBuf::default();
    let streams = ExecStreams {
        stdin: Some(Box::new(&b"typed"[..])),
        stdout: Box::new(out.clone()),
        stderr: Box::new(SharedBuf::default()),
        control: Some(rx),
    };
    let post = ExecPost {
        command: vec!["tty-echo".into()],
        interactive: true,
        width: 100,
        height: 30,
        ..Default::default()
    };
    let code = d.client().exec("c1", post, streams).await.unwrap();
    assert_eq!(code, 0);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text, "30 100\r\nresized 40 120\r\ntyped");
}

#[tokio::test]
async fn files_push_pull_list_and_delete() {
    let d = FakeDaemon::start().await;
    d.add_instance("c1", StatusCode::Running);
    let c = d.client();
    let opts = FilePushOptions {
        uid: Some(0),
        gid: Some(0),
        mode: Some(0o640),
        append: false,
    };
    c.file_push_bytes("c1", "/root/a.txt", b"alpha\n".to_vec(), &opts)
        .await
        .unwrap();
    c.file_mkdir(
        "c1",
        "/root/sub",
        &FilePushOptions {
            mode: Some(0o755),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    c.file_symlink(
        "c1",
        "/root/link",
        "/root/a.txt",
        &FilePushOptions::default(),
    )
    .await
    .unwrap();

    let (_, h) = d.with(|s| {
        s.headers
            .iter()
            .find(|(l, _)| l.starts_with("POST /1.0/instances/c1/files"))
            .unwrap()
            .clone()
    });
    assert_eq!(h["x-lxd-mode"], "0640");
    assert_eq!(h["x-lxd-type"], "file");
    assert_eq!(h["x-lxd-write"], "overwrite");

    let got = c.file_get("c1", "/root/a.txt").await.unwrap();
    assert_eq!(got.content, FileContent::File(b"alpha\n".to_vec()));
    assert_eq!(got.meta.mode, 0o640);
    let dir = c.file_get("c1", "/root").await;
    assert!(dir.is_err(), "no /root entry in the fake");
    let sub = c.file_get("c1", "/root/sub").await.unwrap();
    assert_eq!(sub.meta.kind, FileKind::Directory);
    let link = c.file_get("c1", "/root/link").await.unwrap();
    assert_eq!(link.content, FileContent::Symlink("/root/a.txt".into()));

    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), vec![1u8; 500_000]).unwrap();
    let seen = Arc::new(Mutex::new((0u64, 0u64)));
    let s2 = seen.clone();
    c.file_push_path(
        "c1",
        "/big",
        tmp.path(),
        &FilePushOptions::default(),
        move |a, b| *s2.lock().unwrap() = (a, b),
    )
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), (500_000, 500_000));
    let chunked = d.with(|s| {
        s.headers
            .iter()
            .rev()
            .find(|(l, _)| l.contains("path=%2Fbig"))
            .unwrap()
            .1
            .clone()
    });
    assert_eq!(
        chunked.get("transfer-encoding").map(String::as_str),
        Some("chunked")
    );

    c.file_delete("c1", "/root/a.txt").await.unwrap();
    assert_eq!(
        c.file_get("c1", "/root/a.txt")
            .await
            .unwrap_err()
            .to_string(),
        "Not Found"
    );
}

#[tokio::test]
async fn image_upload_aliases_and_delete() {
    let d = FakeDaemon::start().await;
    let c = d.client();
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("debian-12-amd64.tar.zst");
    std::fs::write(&tarball, vec![9u8; 700_000]).unwrap();
    let progress = Arc::new(Mutex::new(Vec::new()));
    let p2 = progress.clone();
    let fp = c
        .upload_image(&tarball, &ImageUploadOptions::default(), move |a, b| {
            p2.lock().unwrap().push((a, b))
        })
        .await
        .unwrap();
    assert_eq!(fp.len(), 64);
    assert_eq!(progress.lock().unwrap().last(), Some(&(700_000, 700_000)));
    let h = d.with(|s| {
        s.headers
            .iter()
            .find(|(l, _)| l == "POST /1.0/images")
            .unwrap()
            .1
            .clone()
    });
    assert_eq!(h["x-lxd-filename"], "debian-12-amd64.tar.zst");
    assert_eq!(h["content-type"], "application/octet-stream");

    let err = c
        .upload_image(&tarball, &ImageUploadOptions::default(), |_, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"));

    c.create_image_alias("debian/12", &fp, "").await.unwrap();
    assert_eq!(
        c.create_image_alias("debian/12", &fp, "")
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    assert_eq!(c.image_alias("debian/12").await.unwrap().target, fp);
    assert_eq!(c.image_aliases().await.unwrap().len(), 1);
    assert_eq!(c.images().await.unwrap()[0].size, 700_000);

    let meta = tmp.path().join("meta.tar.xz");
    std::fs::write(&meta, b"metadata").unwrap();
    let fp2 = c
        .upload_image_split(&meta, &tarball, &ImageUploadOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_ne!(fp2, fp);
    let ct = d.with(|s| {
        s.headers
            .iter()
            .rev()
            .find(|(l, _)| l == "POST /1.0/images")
            .unwrap()
            .1["content-type"]
            .clone()
    });
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");

    c.delete_image_alias("debian/12").await.unwrap();
    c.delete_image(&fp).await.unwrap();
    assert_eq!(c.image(&fp).await.unwrap_err().status(), Some(404));
}

#[tokio::test]
async fn console_log_and_events() {
    let d = FakeDaemon::start().await;
    d.add_instance("c1", StatusCode::Running);
    d.with(|s| s.console = "boot ok\n".into());
    let c = d.client();
    assert_eq!(c.console_log("c1").await.unwrap(), b"boot ok\n");
    c.clear_console_log("c1").await.unwrap();
    assert!(c.console_log("c1").await.unwrap().is_empty());
    let mut ev = c.events("").await.unwrap();
    let first = ev.next().await.unwrap().unwrap();
    assert_eq!(first.kind, "lifecycle");
}
