//! Debian's pylxd (`python3-pylxd` 2.2.10), unchanged, against a real kanted:
//! `tests/compat/pylxd_smoke.py` connects through `LXD_DIR`, then creates,
//! starts, executes in (output, stderr, exit codes, environment), moves files
//! both ways, edits config, snapshots and restores, applies a profile, is
//! refused a bad name, and deletes, checking each result in Python. Here the
//! steps it reports are checked, that its websockets closed cleanly, and
//! that nothing is left on the host.

use std::process::Command;

use kante_integration::{run, Daemon, TestImage};

const STEPS: &[&str] = &[
    "connect",
    "images",
    "create and start",
    "execute",
    "files",
    "config and state",
    "snapshots",
    "profiles",
    "bad input",
    "stop and delete",
];

#[test]
fn pylxd_drives_kanted() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/pylxd_smoke.py");
        // Debian's interpreter, where python3-pylxd is installed (a pyenv
        // python earlier on PATH would not see it).
        let o = Command::new("/usr/bin/python3")
            .args(["-W", "ignore", script, &fp])
            .env("LXD_DIR", &d.dir)
            .output()
            .expect("run /usr/bin/python3 (apt-get install python3-pylxd)");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success(),
            "pylxd script failed ({}):\n{out}\n{err}\n{}",
            o.status,
            d.log_text()
        );
        let done: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("ok ")).collect();
        assert_eq!(done, STEPS, "{out}\n{err}");
        // Websockets close as RFC 6455 asks (the server waits for the
        // client's Close): ws4py logs a broken pipe otherwise.
        assert!(!err.contains("BrokenPipeError"), "{err}");
        // The script deleted what it made; the daemon agrees.
        assert!(d.client.instance_names().await.unwrap().is_empty());
        assert!(d.client.profile("pyprof").await.is_err());
        d.shutdown().await;
    });
}
