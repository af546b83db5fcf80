//! The client against the real API: `kante_http::router` over a real engine
//! on fakes of the host (`kante_http::testing::TestDaemon`), on a unix
//! socket in a temporary directory. No root needed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kante_api::exec::{ExecControl, ExecPost};
use kante_api::instance::{InstancePut, InstanceSource, InstancesPost};
use kante_client::{
    Client, ClientError, ExecStreams, FileContent, FileKind, FilePushOptions, ImageUploadOptions,
};
use kante_engine::testing::{image, FAKE_PID_BASE};
use kante_http::testing::TestDaemon;

/// A daemon with the test image imported as `bookworm`; returns its fingerprint too.
async fn daemon() -> (TestDaemon, String) {
    let d = TestDaemon::start().await;
    let fp = d.host.import_image(&d.engine, "bookworm").await;
    (d, fp)
}

/// A daemon with instance `c1` running.
async fn with_c1() -> TestDaemon {
    let (d, _) = daemon().await;
    d.host.launch(&d.engine, "c1", "bookworm").await;
    d
}

fn client(d: &TestDaemon) -> Client {
    Client::with_socket(d.socket())
}

#[tokio::test]
async fn server_info_and_connect_errors() {
    let d = TestDaemon::start().await;
    let server = client(&d)
        .get_json::<kante_api::server::Server>("/1.0")
        .await
        .unwrap();
    assert_eq!(
        server.environment.server_version,
        env!("CARGO_PKG_VERSION"),
        "the engine's version"
    );
    assert_eq!(d.requests()[0].headers["host"], "unix.socket");

    let gone = Client::with_socket(d.scratch().join("nope.socket"));
    let err = gone.get("/1.0").await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.socket"));
}

#[tokio::test]
async fn error_envelope_becomes_api_error() {
    let d = TestDaemon::start().await;
    let err = client(&d).instance("missing").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.to_string(), "Instance not found");
}

#[tokio::test]
async fn create_start_stop_delete() {
    let (d, fp) = daemon().await;
    let c = client(&d);
    assert_eq!(c.resolve_image("bookworm").await.unwrap(), fp);
    assert_eq!(c.resolve_image(&fp[..4]).await.unwrap(), fp);
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
    assert!(name.starts_with("kante-"), "the server picks: {name}");
    let body = d.last("POST /1.0/instances").unwrap().json();
    assert!(
        body["profiles"].is_null(),
        "profiles must be null by default: {body}"
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
    assert!(full[0].state.as_ref().unwrap().pid > FAKE_PID_BASE as i64);
    c.stop_instance(&name, true, -1).await.unwrap();
    assert_eq!(
        d.host.runtime.calls_for(&name)[1],
        format!("signal {name} 9")
    );
    c.delete_instance(&name).await.unwrap();
    assert!(c.instance_names().await.unwrap().is_empty());

    let named = c.launch("web-1", "bookworm").await.unwrap();
    assert_eq!(named, "web-1");
    assert_eq!(c.instance_state("web-1").await.unwrap().status, "Running");
    c.stop_instance("web-1", true, -1).await.unwrap();
    c.rename_instance("web-1", "web-2").await.unwrap();
    assert_eq!(c.instance_names().await.unwrap(), vec!["web-2"]);
}

#[tokio::test]
async fn update_surfaces_operation_errors() {
    let d = with_c1().await;
    let c = client(&d);
    // kanted sends the instance's ETag, quoted, as LXD does.
    let (inst, etag) = c.instance_with_etag("c1").await.unwrap();
    let etag = etag.expect("an ETag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let mut put = InstancePut {
        architecture: inst.architecture,
        config: inst.config,
        devices: inst.devices,
        profiles: Some(inst.profiles),
        ..Default::default()
    };
    put.config.insert("limits.memory".into(), "bogus".into());
    let err = c.update_instance("c1", &put, None).await.unwrap_err();
    assert!(matches!(err, ClientError::Operation(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("Invalid value for limits.memory"),
        "{err}"
    );
    put.config.insert("limits.memory".into(), "256MiB".into());
    // An If-Match that is not the ETag: 412, nothing changed.
    let err = c
        .update_instance("c1", &put, Some("\"some-etag\""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ETag doesn't match"), "{err}");
    assert!(!c
        .instance("c1")
        .await
        .unwrap()
        .config
        .contains_key("limits.memory"));
    c.update_instance("c1", &put, Some(&etag)).await.unwrap();
    assert_eq!(
        c.instance("c1").await.unwrap().config["limits.memory"],
        "256MiB"
    );
    let puts: Vec<_> = d
        .requests()
        .into_iter()
        .filter(|r| r.line == "PUT /1.0/instances/c1")
        .collect();
    assert_eq!(puts.len(), 3);
    assert!(!puts[0].headers.contains_key("if-match"));
    assert_eq!(puts[1].headers["if-match"], "\"some-etag\"");
    assert_eq!(puts[2].headers["if-match"], etag.as_str());
}

#[tokio::test]
async fn wait_operation_times_out_and_reports_failure() {
    let d = with_c1().await;
    let c = client(&d);
    let exec = |argv: &[&str]| ExecPost {
        command: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let resp = c
        .post("/1.0/instances/c1/exec", &exec(&["sleep", "2"]))
        .await
        .unwrap();
    let id = resp.operation_id().unwrap();
    let t = Instant::now();
    let err = c
        .wait_operation(&id, Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    c.wait_operation(&id, None).await.unwrap();

    let resp = c
        .post("/1.0/instances/c1/exec", &exec(&["no-such-command"]))
        .await
        .unwrap();
    let id = resp.operation_id().unwrap();
    assert_eq!(
        c.wait_operation(&id, None).await.unwrap_err().to_string(),
        "Command not found"
    );
    assert_eq!(
        c.wait_operation_raw(&id, None).await.unwrap().status_code,
        400
    );
}

/// Prints to both streams and fails with 3.
const FAIL: &[&str] = &["sh", "-c", "echo out; echo err >&2; exit 3"];

#[tokio::test]
async fn exec_capture_collects_streams_and_exit_code() {
    let d = with_c1().await;
    let c = client(&d);
    let out = c
        .exec_capture("c1", FAIL, &[("FOO", "bar")], None)
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
    let post = d.last("POST /1.0/instances/c1/exec").unwrap().json();
    assert_eq!(post["wait-for-websocket"], true);
    assert_eq!(post["interactive"], false);
    assert_eq!(post["environment"]["FOO"], "bar");
    let out = c
        .exec_capture(
            "c1",
            &["sh", "-c", "printf %s \"$FOO\""],
            &[("FOO", "bar")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "bar");

    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = c
        .exec_capture("c1", &["cat"], &[], Some(data.clone()))
        .await
        .unwrap();
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, data);

    let out = c
        .exec_capture("c1", &["head", "-c", "1000000", "/dev/zero"], &[], None)
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
    let d = with_c1().await;
    let c = client(&d);
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
    // Generous for loaded CI machines (a process is started each time).
    assert!(per < Duration::from_millis(100), "exec round trip {per:?}");
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

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
    let d = with_c1().await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let out = SharedBuf::default();
    let streams = ExecStreams {
        stdin: None,
        stdout: Box::new(out.clone()),
        stderr: Box::new(SharedBuf::default()),
        control: Some(rx),
    };
    let post = ExecPost {
        command: vec!["sh".into(), "-c".into(), "echo ready; exec sleep 30".into()],
        ..Default::default()
    };
    let c = client(&d);
    let task = tokio::spawn(async move { c.exec("c1", post, streams).await });
    let t = Instant::now();
    while out.text().is_empty() && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(ExecControl::signal(15)).unwrap();
    // Killed by SIGTERM: 128 + 15.
    assert_eq!(task.await.unwrap().unwrap(), 143);
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn interactive_exec_uses_one_stream_and_resizes() {
    let d = with_c1().await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(ExecControl::resize(120, 40)).unwrap();
    let out = SharedBuf::default();
    let streams = ExecStreams {
        stdin: Some(Box::new(&b"typed\n"[..])),
        stdout: Box::new(out.clone()),
        stderr: Box::new(SharedBuf::default()),
        control: Some(rx),
    };
    // Waits (at most ~5 s) for the resize, then echoes a line of input.
    let script = "i=0; while [ \"$(stty size)\" != '40 120' ] && [ $i -lt 250 ]; do \
                  sleep 0.02; i=$((i+1)); done; stty size; read line; echo \"got $line\"";
    let post = ExecPost {
        command: vec!["sh".into(), "-c".into(), script.into()],
        interactive: true,
        width: 100,
        height: 30,
        ..Default::default()
    };
    let code = client(&d).exec("c1", post, streams).await.unwrap();
    assert_eq!(code, 0);
    let text = out.text();
    assert!(text.contains("40 120\r\n"), "{text:?}");
    assert!(text.contains("got typed\r\n"), "{text:?}");
    let post = d.last("POST /1.0/instances/c1/exec").unwrap().json();
    assert_eq!(
        (post["width"].as_i64(), post["height"].as_i64()),
        (Some(100), Some(30))
    );
    assert_eq!(post["interactive"], true);
}

#[tokio::test]
async fn files_push_pull_list_and_delete() {
    let d = with_c1().await;
    let c = client(&d);
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

    let h = d
        .requests()
        .into_iter()
        .find(|r| r.line.starts_with("POST /1.0/instances/c1/files"))
        .unwrap()
        .headers;
    assert_eq!(h["x-lxd-mode"], "0640");
    assert_eq!(h["x-lxd-type"], "file");
    assert_eq!(h["x-lxd-write"], "overwrite");
    // They are in the guest's rootfs.
    let rootfs = d.rootfs("c1");
    assert_eq!(
        std::fs::read(rootfs.join("root/a.txt")).unwrap(),
        b"alpha\n"
    );
    assert!(rootfs.join("root/sub").is_dir());

    let got = c.file_get("c1", "/root/a.txt").await.unwrap();
    assert_eq!(got.content, FileContent::File(b"alpha\n".to_vec()));
    assert_eq!((got.meta.mode, got.meta.uid), (0o640, 0));
    let dir = c.file_get("c1", "/root").await.unwrap();
    assert_eq!(dir.meta.kind, FileKind::Directory);
    match dir.content {
        FileContent::Directory(names) => {
            for n in ["a.txt", "link", "sub"] {
                assert!(names.contains(&n.to_string()), "{names:?}");
            }
        }
        other => panic!("{other:?}"),
    }
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
    assert_eq!(
        std::fs::metadata(rootfs.join("big")).unwrap().len(),
        500_000
    );
    let chunked = d
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.line.contains("path=%2Fbig"))
        .unwrap()
        .headers;
    assert_eq!(
        chunked.get("transfer-encoding").map(String::as_str),
        Some("chunked")
    );

    c.file_delete("c1", "/root/a.txt").await.unwrap();
    assert!(!rootfs.join("root/a.txt").exists());
    assert_eq!(
        c.file_get("c1", "/root/a.txt").await.unwrap_err().status(),
        Some(404)
    );
}

#[tokio::test]
async fn image_upload_aliases_and_delete() {
    let d = TestDaemon::start().await;
    let c = client(&d);
    let spec = image::Spec {
        file_name: "debian-12-amd64.tar.gz".into(),
        filler: 700_000,
        ..Default::default()
    };
    let tarball = image::build(d.scratch(), &spec);
    let size = std::fs::metadata(&tarball).unwrap().len();
    let progress = Arc::new(Mutex::new(Vec::new()));
    let p2 = progress.clone();
    let fp = c
        .upload_image(&tarball, &ImageUploadOptions::default(), move |a, b| {
            p2.lock().unwrap().push((a, b))
        })
        .await
        .unwrap();
    assert_eq!(fp.len(), 64);
    assert_eq!(progress.lock().unwrap().last(), Some(&(size, size)));
    let h = d.last("POST /1.0/images").unwrap().headers;
    assert_eq!(h["x-lxd-filename"], "debian-12-amd64.tar.gz");
    assert_eq!(h["content-type"], "application/octet-stream");

    let err = c
        .upload_image(&tarball, &ImageUploadOptions::default(), |_, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

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
    assert_eq!(c.images().await.unwrap()[0].size, size as i64);

    let split = image::Spec {
        file_name: "split.tar".into(),
        description: "split".into(),
        ..Default::default()
    };
    let (meta, rootfs) = image::build_split(d.scratch(), &split);
    let fp2 = c
        .upload_image_split(&meta, &rootfs, &ImageUploadOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_ne!(fp2, fp);
    let ct = d.last("POST /1.0/images").unwrap().headers["content-type"].clone();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    assert_eq!(
        c.image(&fp2).await.unwrap().properties["description"],
        "split"
    );

    c.delete_image_alias("debian/12").await.unwrap();
    c.delete_image(&fp).await.unwrap();
    assert_eq!(c.image(&fp).await.unwrap_err().status(), Some(404));
}

#[tokio::test]
async fn console_log_and_events() {
    let d = with_c1().await;
    let c = client(&d);
    assert_eq!(
        c.console_log("c1").await.unwrap(),
        b"[fake init] c1 booted\n"
    );
    c.clear_console_log("c1").await.unwrap();
    assert!(c.console_log("c1").await.unwrap().is_empty());
    let mut ev = c.events("lifecycle").await.unwrap();
    c.stop_instance("c1", true, -1).await.unwrap();
    let first = ev.next().await.unwrap().unwrap();
    assert_eq!(first.kind, "lifecycle");
    assert_eq!(first.metadata["action"], "instance-stopped");
    assert_eq!(first.metadata["source"], "/1.0/instances/c1");
}
