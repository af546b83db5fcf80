//! `kante console` and Debian's `lxc console` against a real daemon, driven
//! on a pty (support/pty_drive.py): a busybox guest whose inittab runs a
//! shell on /dev/console answers commands, sees the terminal's size and its
//! changes, Ctrl+a q detaches and leaves it running, attaches come and go
//! (also after a restart of kanted, the monitor holding the console), the
//! console log keeps what was typed; `start --console` attaches after the
//! start and `stop --console` ends with the stop; a Debian guest's
//! console shows systemd's login prompt.

use std::process::Command;
use std::time::Duration;

use kante_client::FilePushOptions;
use kante_integration::pty::{clean, drive, then_detach as steps, DETACH_HINT as HINT};
use kante_integration::{bin, lxc, run, Daemon, TestImage};
use serde_json::{json, Value};

/// busybox's inittab plus a shell on the console, respawned.
const INITTAB: &str =
    "::sysinit:/bin/hostname -F /etc/hostname\n::respawn:/bin/sh\n::shutdown:/bin/true\n";

fn kante_cmd(d: &Daemon, args: &[&str]) -> Command {
    let mut c = Command::new(bin("kante"));
    c.args(args).env("KANTE_DIR", &d.dir);
    c
}

/// The report must say every step happened and the program exited with 0.
fn assert_clean(what: &str, report: &Value, d: &Daemon) {
    eprintln!("{what}: {}", report["output"]);
    assert!(clean(report), "{what}: {report:#}\n{}", d.log_text());
}

async fn status(d: &Daemon, name: &str) -> String {
    d.client.instance(name).await.unwrap().status
}

async fn console_log(d: &Daemon, name: &str) -> String {
    String::from_utf8_lossy(&d.client.console_log(name).await.unwrap()).into_owned()
}

#[test]
fn a_busybox_console_answers_through_kante_and_lxc_and_survives_detach() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.create(&fp, "c1", &[]).await;
        let opts = FilePushOptions {
            uid: Some(0),
            gid: Some(0),
            mode: Some(0o644),
            append: false,
        };
        d.client
            .file_push_bytes("c1", "/etc/inittab", INITTAB.as_bytes().to_vec(), &opts)
            .await
            .unwrap();
        d.client.start_instance("c1").await.unwrap();

        // kante console: the size of the terminal, a command, a resize, Ctrl+a q.
        let report = drive(
            kante_cmd(&d, &["console", "c1"]),
            (111, 33),
            steps(json!([
                ["expect", HINT],
                ["send", "\r"],
                ["send", "stty size; echo con-$((6*7))\r"],
                ["expect", "33 111"],
                ["expect", "con-42"],
                ["resize", 120, 40],
                // The resize travels on the control socket: ask until it is seen.
                ["send", "sleep 1; stty size\r"],
                ["expect", "40 120", 10],
            ])),
        );
        assert_clean("kante console", &report, &d);
        assert_eq!(status(&d, "c1").await, "Running");

        // A second attach, with Debian's lxc as the client.
        let conf = lxc::conf(&d, "admin");
        let cmd = lxc::lxc_cmd(&d, &conf, "console c1");
        let report = drive(
            cmd,
            (100, 30),
            steps(json!([
                ["expect", HINT],
                ["send", "echo again-$((2*3))\r"],
                ["expect", "again-6"],
            ])),
        );
        assert_clean("lxc console", &report, &d);
        assert_eq!(status(&d, "c1").await, "Running");

        // kanted restarts; the monitor still serves the console.
        d.restart().await;
        let report = drive(
            kante_cmd(&d, &["console", "c1"]),
            (80, 24),
            steps(json!([
                ["expect", HINT],
                ["send", "echo after-$((3*3))-restart\r"],
                ["expect", "after-9-restart"],
            ])),
        );
        assert_clean("kante console after a restart", &report, &d);

        // The log kept what the console showed while attached.
        let log = console_log(&d, "c1").await;
        for want in ["con-42", "again-6", "after-9-restart"] {
            assert!(log.contains(want), "console log lacks {want}: {log:?}");
        }

        // start --console: attached right after the start.
        d.client.stop_instance("c1", true, -1).await.unwrap();
        let report = drive(
            kante_cmd(&d, &["start", "c1", "--console"]),
            (80, 24),
            steps(json!([
                ["expect", HINT],
                ["send", "\recho started-$((4*4))\r"],
                ["expect", "started-16"],
            ])),
        );
        assert_clean("start --console", &report, &d);
        assert_eq!(status(&d, "c1").await, "Running");

        // stop --console: attached while the stop runs, ended by it.
        let report = drive(
            kante_cmd(&d, &["stop", "c1", "--force", "--console"]),
            (80, 24),
            json!([]),
        );
        assert_clean("stop --console", &report, &d);
        assert_eq!(status(&d, "c1").await, "Stopped");

        // Refusals: a stopped instance, vga, --console with two instances.
        let out = kante_integration::kante(&d, &["console", "c1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Instance is not running"),
            "{err}"
        );
        let e = kante_integration::kante_fails(&d, &["start", "c1", "c2", "--console"]);
        assert!(e.contains("single instance"), "{e}");
        let e = kante_integration::kante_fails(&d, &["console", "c1", "--type", "vga"]);
        assert!(e.contains("containers only"), "{e}");
        d.shutdown().await;
    });
}

#[test]
fn a_debian_console_shows_a_login_prompt() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        d.launch(&fp, "deb1", &[]).await;
        d.wait_systemd("deb1", Duration::from_secs(90)).await;
        let conf = lxc::conf(&d, "admin");
        let cmd = lxc::lxc_cmd(&d, &conf, "console deb1");
        let report = drive(
            cmd,
            (80, 24),
            steps(json!([
                ["expect", HINT],
                ["send", "\r"],
                ["expect", "login:", 30],
            ])),
        );
        assert_clean("lxc console of Debian", &report, &d);
        assert_eq!(status(&d, "deb1").await, "Running");
        assert!(console_log(&d, "deb1").await.contains("login:"));
        d.shutdown().await;
    });
}
