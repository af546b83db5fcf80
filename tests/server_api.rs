//! The server-wide API as real clients call it, against a real kanted:
//! `/1.0/metrics` (a running instance's CPU counter grows while it burns
//! CPU, and Prometheus' own OpenMetrics parser accepts the text), `lxc
//! info --resources`, `lxc project list/show`, `lxc warning list`, `lxc
//! operation list`, `lxc query`, ETags with `If-Match` (a stale one is 412
//! and changes nothing; lxc's edit loops go through), and pylxd's older
//! `containers` API on the legacy `/1.0/containers` paths.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use kante_integration::{prerequisite, run, Daemon, TestImage};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lxc(d: &Daemon, args: &[&str], editor: Option<&Path>) -> Output {
    let conf = d.dir.join("lxc-client");
    std::fs::create_dir_all(conf.join("home")).unwrap();
    // lxc's `edit` verbs read the YAML from stdin unless it is a
    // terminal: with an editor, run lxc on a pty (`script`).
    let mut cmd = match editor {
        Some(_) => {
            let mut c = Command::new("script");
            c.args(["-qec", &format!("lxc {}", args.join(" ")), "/dev/null"]);
            c
        }
        None => {
            let mut c = Command::new("lxc");
            c.args(args);
            c
        }
    };
    cmd.env("LXD_DIR", &d.dir)
        .env("LXD_CONF", &conf)
        .env("HOME", conf.join("home"))
        .stdin(Stdio::null());
    if let Some(e) = editor {
        cmd.env("EDITOR", e).env("VISUAL", e);
    }
    cmd.output().expect("run lxc (apt-get install lxd-client)")
}

fn lxc_ok(d: &Daemon, args: &[&str]) -> String {
    let o = lxc(d, args, None);
    assert!(
        o.status.success(),
        "lxc {args:?}: {}{}\n{}",
        text(&o.stdout),
        text(&o.stderr),
        d.log_text()
    );
    text(&o.stdout)
}

fn lxc_fails(d: &Daemon, args: &[&str]) -> String {
    let o = lxc(d, args, None);
    assert!(
        !o.status.success(),
        "lxc {args:?} succeeded: {}",
        text(&o.stdout)
    );
    text(&o.stderr)
}

/// curl on the daemon's socket: (status, headers, body).
fn curl(
    d: &Daemon,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (u16, String, String) {
    let hdr = d.dir.join("curl-headers");
    let mut cmd = Command::new("curl");
    cmd.arg("-s")
        .arg("--unix-socket")
        .arg(d.dir.join("unix.socket"))
        .arg("-X")
        .arg(method)
        .arg("-D")
        .arg(&hdr)
        .arg("-o")
        .arg("-")
        .arg("-w")
        .arg("\n%{http_code}");
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    if let Some(b) = body {
        cmd.arg("--data-binary").arg(b);
    }
    cmd.arg(format!("http://kante{path}"));
    let o = cmd.output().expect("run curl");
    let out = text(&o.stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    let headers = std::fs::read_to_string(&hdr).unwrap_or_default();
    (code.trim().parse().unwrap_or(0), headers, body.to_string())
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The value of the series whose line starts with `prefix`.
fn series(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

#[test]
fn metrics_move_with_the_instance_and_parse_as_openmetrics() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        // With a host directory as a second disk: its file system shows too.
        let scratch = tempfile::tempdir().unwrap();
        let shared = scratch.path().to_path_buf();
        let mut devices = kante_api::DevicesMap::new();
        devices.insert(
            "data".into(),
            [
                ("type", "disk"),
                ("source", shared.to_str().unwrap()),
                ("path", "/mnt/data"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        d.create_with_devices(&fp, "c1", &[], devices).await;
        d.client.start_instance("c1").await.unwrap();
        d.create(&fp, "c2", &[]).await;
        let (code, headers, body) = curl(&d, "GET", "/1.0/metrics", &[], None);
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
        let labels = "name=\"c1\",project=\"default\",type=\"container\"}";
        let user = format!("lxd_cpu_seconds_total{{cpu=\"0\",mode=\"user\",{labels}");
        let system = format!("lxd_cpu_seconds_total{{cpu=\"0\",mode=\"system\",{labels}");
        let cpu = |t: &str| series(t, &user).unwrap_or(0.0) + series(t, &system).unwrap_or(0.0);
        let before = cpu(&body);
        assert!(series(&body, &user).is_some(), "{body}");
        let total = series(&body, &format!("lxd_memory_MemTotal_bytes{{{labels}")).unwrap();
        let free = series(&body, &format!("lxd_memory_MemFree_bytes{{{labels}")).unwrap();
        assert!(total > 0.0 && free < total, "{body}");
        assert!(series(&body, &format!("lxd_procs_total{{{labels}")).unwrap() >= 1.0);
        let rootfs = "lxd_filesystem_size_bytes{device=";
        assert!(
            body.lines()
                .any(|l| l.starts_with(rootfs) && l.contains("mountpoint=\"/\",name=\"c1\"")),
            "{body}"
        );
        assert!(
            body.lines()
                .any(|l| l.starts_with("lxd_filesystem_avail_bytes{")
                    && l.contains("mountpoint=\"/mnt/data\",name=\"c1\"")),
            "{body}"
        );
        assert!(
            body.contains("lxd_network_receive_bytes_total{device=\"lo\","),
            "{body}"
        );
        assert!(
            !body.contains("name=\"c2\""),
            "a stopped instance has no figures: {body}"
        );
        // Burn about a second of CPU in the guest: the counter grows.
        let (rc, out) = d
            .sh("c1", "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done")
            .await;
        assert_eq!(rc, 0, "{out}");
        let (_, _, after) = curl(&d, "GET", "/1.0/metrics", &[], None);
        assert!(
            cpu(&after) > before + 0.2,
            "CPU {before} -> {}",
            cpu(&after)
        );
        // lxc query reads it too (as text).
        let q = lxc_ok(&d, &["query", "/1.0/metrics"]);
        assert!(q.contains("lxd_procs_total{"), "{q}");
        // Prometheus' own OpenMetrics parser accepts it.
        let parser = Command::new("/usr/bin/python3")
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if prerequisite(parser, "python3-prometheus-client (scripts/deps.sh)") {
            let file = d.dir.join("metrics.txt");
            std::fs::write(&file, &after).unwrap();
            let script = "import sys\n\
                from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                fams = list(p(open(sys.argv[1]).read()))\n\
                names = {s.name for f in fams for s in f.samples}\n\
                print(len(fams), sorted(names))\n";
            let o = Command::new("/usr/bin/python3")
                .args(["-c", script])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "the parser refused:\n{}\n{after}",
                text(&o.stderr)
            );
            let names = text(&o.stdout);
            for n in [
                "lxd_cpu_seconds_total",
                "lxd_memory_RSS_bytes",
                "lxd_procs_total",
                "lxd_network_transmit_bytes_total",
            ] {
                assert!(names.contains(&format!("'{n}'")), "{n} missing: {names}");
            }
        }
        d.shutdown().await;
    });
}

#[test]
fn lxc_reads_resources_projects_warnings_and_operations() {
    run(async {
        let d = Daemon::start().await;
        let info = lxc_ok(&d, &["info", "--resources"]);
        eprintln!("lxc info --resources:\n{info}");
        assert!(info.contains("CPU") && info.contains("Cores:"), "{info}");
        assert!(info.to_lowercase().contains("memory"), "{info}");
        let projects = lxc_ok(&d, &["project", "list"]);
        assert!(projects.contains("default"), "{projects}");
        let show = lxc_ok(&d, &["project", "show", "default"]);
        assert!(show.contains("features.profiles: \"true\""), "{show}");
        assert!(show.contains("/1.0/profiles/default"), "{show}");
        let err = lxc_fails(&d, &["project", "create", "p2"]);
        assert!(
            err.contains("Projects other than default are not supported"),
            "{err}"
        );
        let err = lxc_fails(&d, &["list", "--project", "p2"]);
        assert!(err.to_lowercase().contains("not found"), "{err}");
        lxc_ok(&d, &["list", "--project", "default"]);
        let warnings = lxc_ok(&d, &["warning", "list"]);
        assert!(warnings.contains("UUID"), "{warnings}");
        lxc_ok(&d, &["operation", "list"]);
        let server = lxc_ok(&d, &["query", "/1.0"]);
        assert!(server.contains("\"etag\""), "{server}");
        let pool = lxc_ok(&d, &["query", "/1.0/storage-pools/default/resources"]);
        let v: serde_json::Value = serde_json::from_str(&pool).unwrap();
        assert!(v["space"]["total"].as_u64().unwrap() > 0, "{pool}");
        assert!(v["inodes"]["total"].as_u64().is_some(), "{pool}");
        let (code, _, _) = curl(&d, "GET", "/1.0/instances?project=nope", &[], None);
        assert_eq!(code, 404);
        let (code, _, _) = curl(&d, "GET", "/1.0/instances?project=default", &[], None);
        assert_eq!(code, 200);
        d.shutdown().await;
    });
}

/// An editor script that runs `sed EXPR` on the file it is given.
fn editor(d: &Daemon, name: &str, expr: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = d.dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\nsed -i '{expr}' \"$1\"\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn etags_guard_updates_and_lxc_edit_loops_use_them() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.create(&fp, "c1", &[]).await;
        let (code, headers, _) = curl(&d, "GET", "/1.0/profiles/default", &[], None);
        assert_eq!(code, 200);
        let etag = header(&headers, "etag").expect("an ETag").to_string();
        assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
        // A stale If-Match: 412 in LXD's envelope, nothing changed.
        let body = r#"{"config":{},"description":"changed","devices":{}}"#;
        let (code, _, reply) = curl(
            &d,
            "PATCH",
            "/1.0/profiles/default",
            &["If-Match: \"0123\""],
            Some(body),
        );
        assert_eq!(code, 412, "{reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["error_code"], 412);
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("ETag doesn't match"),
            "{reply}"
        );
        let (_, again, _) = curl(&d, "GET", "/1.0/profiles/default", &[], None);
        assert_eq!(header(&again, "etag"), Some(etag.as_str()));
        // The current one goes through, and moves the ETag.
        let if_match = format!("If-Match: {etag}");
        let (code, _, reply) = curl(
            &d,
            "PATCH",
            "/1.0/profiles/default",
            &[&if_match],
            Some(body),
        );
        assert_eq!(code, 200, "{reply}");
        let (_, moved, _) = curl(&d, "GET", "/1.0/profiles/default", &[], None);
        assert_ne!(header(&moved, "etag"), Some(etag.as_str()));
        let (code, _, _) = curl(
            &d,
            "PATCH",
            "/1.0/profiles/default",
            &[&if_match],
            Some(body),
        );
        assert_eq!(code, 412);
        // Every single object lxc edits has one.
        let fp_path = format!("/1.0/images/{fp}");
        for path in [
            "/1.0",
            "/1.0/instances/c1",
            "/1.0/storage-pools/default",
            "/1.0/projects/default",
            fp_path.as_str(),
        ] {
            let (code, h, b) = curl(&d, "GET", path, &[], None);
            assert_eq!(code, 200, "{path}: {b}");
            assert!(header(&h, "etag").is_some(), "{path} has no ETag");
        }
        // lxc's edit loops: GET with the ETag, the editor, PUT with If-Match.
        let ed = editor(
            &d,
            "profile-editor",
            "s/^description: .*/description: edited by lxc/",
        );
        let o = lxc(&d, &["profile", "edit", "default"], Some(&ed));
        assert!(o.status.success(), "{}", text(&o.stderr));
        let shown = lxc_ok(&d, &["profile", "show", "default"]);
        assert!(shown.contains("description: edited by lxc"), "{shown}");
        let ed = editor(
            &d,
            "config-editor",
            "s/^config:.*/config:\\n  user.edited: \"yes\"/",
        );
        let o = lxc(&d, &["config", "edit", "c1"], Some(&ed));
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(
            lxc_ok(&d, &["config", "get", "c1", "user.edited"]).trim(),
            "yes"
        );
        // An edit that races another change is refused by its stale
        // If-Match: the other change stands.
        let racing = d.dir.join("racing-editor");
        std::fs::write(
            &racing,
            format!(
                "#!/bin/sh\ncurl -s --unix-socket {} -X PATCH -d '{{\"config\":{{\"user.racer\":\"won\"}}}}' http://kante/1.0/profiles/default >/dev/null\nsed -i 's/^description: .*/description: lost/' \"$1\"\n",
                d.dir.join("unix.socket").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&racing, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let o = lxc(&d, &["profile", "edit", "default"], Some(&racing));
        let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(said.contains("ETag doesn't match"), "{said}");
        let shown = lxc_ok(&d, &["profile", "show", "default"]);
        assert!(
            shown.contains("user.racer: won") && !shown.contains("description: lost"),
            "{shown}"
        );
        lxc_ok(&d, &["config", "set", "c1", "user.other", "1"]);
        lxc_ok(&d, &["profile", "set", "default", "user.p", "2"]);
        d.shutdown().await;
    });
}

#[test]
fn pylxd_older_containers_api_works() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.create(&fp, "c1", &[]).await;
        let script = format!(
            "import pylxd\n\
             c = pylxd.Client()\n\
             names = [x.name for x in c.containers.all()]\n\
             assert names == ['c1'], names\n\
             got = c.containers.get('c1')\n\
             assert got.status == 'Stopped', got.status\n\
             new = c.containers.create({{'name': 'c2', 'source': {{'type': 'image', 'fingerprint': '{fp}'}}}}, wait=True)\n\
             assert sorted(x.name for x in c.containers.all()) == ['c1', 'c2']\n\
             new.delete(wait=True)\n\
             print('ok')\n"
        );
        let o = Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .env("LXD_DIR", &d.dir)
            .output()
            .expect("run python3");
        assert!(
            o.status.success(),
            "{}{}\n{}",
            text(&o.stdout),
            text(&o.stderr),
            d.log_text()
        );
        let (code, _, body) = curl(&d, "GET", "/1.0/containers", &[], None);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("c1") && !body.contains("c2"), "{body}");
        d.shutdown().await;
    });
}

/// curl over HTTPS (the server's certificate not checked), with a client
/// certificate if given: (status, body).
fn curl_https(port: u16, path: &str, cert: Option<(&Path, &Path)>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-k", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some((crt, key)) = cert {
        cmd.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    cmd.arg(format!("https://127.0.0.1:{port}{path}"));
    let out = text(&cmd.output().expect("run curl").stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_metrics_certificate_scrapes_over_https_and_reaches_nothing_else() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;
        let port = kante_integration::free_port();
        lxc_ok(
            &d,
            &[
                "config",
                "set",
                "core.https_address",
                &format!("127.0.0.1:{port}"),
            ],
        );
        // A certificate made as LXD's metrics documentation does.
        let (crt, key) = (d.dir.join("metrics.crt"), d.dir.join("metrics.key"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:secp384r1",
            ])
            .args([
                "-sha384",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=metrics.local",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .expect("run openssl");
        assert!(made.status.success(), "{}", text(&made.stderr));
        let unknown = curl_https(port, "/1.0/metrics", Some((&crt, &key)));
        assert_eq!(unknown.0, 403, "{}", unknown.1);
        lxc_ok(
            &d,
            &[
                "config",
                "trust",
                "add",
                crt.to_str().unwrap(),
                "--type=metrics",
            ],
        );
        let list = lxc_ok(&d, &["config", "trust", "list", "--format", "csv"]);
        assert!(list.contains("metrics"), "{list}");
        let (code, body) = curl_https(port, "/1.0/metrics", Some((&crt, &key)));
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains("lxd_procs_total{name=\"c1\",project=\"default\",type=\"container\"}"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
        for path in ["/1.0/instances", "/1.0/resources", "/1.0/certificates"] {
            let (code, body) = curl_https(port, path, Some((&crt, &key)));
            assert_eq!(code, 403, "{path}: {body}");
        }
        let (code, _) = curl_https(port, "/1.0/metrics", None);
        assert_eq!(code, 403);
        d.shutdown().await;
    });
}
