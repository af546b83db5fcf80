//! The web view (`https://HOST:PORT/ui/`) in headless Chromium against a
//! real kanted on loopback HTTPS with busybox instances: `tests/ui/run.mjs`
//! (playwright-core driving Debian's `/usr/bin/chromium`, axe-core for the
//! accessibility check) shows that an untrusted browser gets only the
//! login step (the API answers 403), that the one-time link of `kante
//! config trust add --ui` opens a session (spent once; the cookie is
//! HttpOnly, Secure, SameSite=Strict, and useless without the page's
//! header), that the list shows the running instance with its DHCP
//! address, that the first view transfers under 200 KiB (the browser's
//! resource timings, cold cache, without xterm.js), that an instance
//! launched from the CLI appears without a reload or a list poll (from
//! `/1.0/events`), that stop and start from the page change what `kante
//! list` shows, that a restart from the page gives the instance a new init
//! (another PID in `kante list`) and leaves it running, that a snapshot
//! taken, restored and deleted from the page is counted by the CLI, that
//! deleting an instance from the page needs its confirmation (Cancel and
//! Escape keep it; the dialog is screenshot and passes axe) and then the
//! CLI no longer lists it, that the console runs `hostname` in the instance
//! (and a window resize reaches its tty), and that
//! `kante config trust remove` ends the session. Screenshots of each view
//! are kept in `target/ui-artifacts/`. This file checks the script's
//! report again and the daemon's state from outside.

use std::path::{Path, PathBuf};
use std::process::Command;

use kante_integration::net::{busybox_dhcp, devices, network_create, nic};
use kante_integration::{bin, kante_ok, listen_https, prerequisite, run, Daemon, TestImage};
use serde_json::{json, Value};

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

/// Whether node, Chromium and the script's npm packages are installed
/// (`scripts/deps.sh` installs all three).
fn browser_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let modules = ["playwright-core", "axe-core"].iter().all(|m| {
        ui_dir()
            .join("node_modules")
            .join(m)
            .join("package.json")
            .exists()
    });
    node && modules && Path::new("/usr/bin/chromium").exists()
}

#[test]
fn a_browser_logs_in_watches_acts_and_opens_a_console() {
    if !prerequisite(
        browser_ready(),
        "node, /usr/bin/chromium and tests/ui's npm packages (scripts/deps.sh)",
    ) {
        return;
    }
    run(async {
        let d = Daemon::start().await;
        let port = listen_https(&d);
        let fp = d.import(TestImage::Busybox).await;
        network_create(
            &d,
            "ktui0",
            json!({"ipv4.address": "auto", "ipv6.address": "none"}),
        )
        .await
        .unwrap();
        let eth0 = devices(&[("eth0", nic(&[("network", "ktui0")]))]);
        d.create_with_devices(&fp, "web1", &[], eth0).await;
        d.client.start_instance("web1").await.unwrap();
        let address = busybox_dhcp(&d, "web1", "eth0").await;

        let out = kante_ok(&d, &["config", "trust", "add", "--ui", "ui-browser"]);
        let link = out
            .lines()
            .find(|l| l.starts_with("https://"))
            .unwrap_or_else(|| panic!("no login link in {out:?}"))
            .to_string();
        assert!(
            link.starts_with(&format!("https://127.0.0.1:{port}/ui/login#")),
            "{link}"
        );

        let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-artifacts");
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).unwrap();
        let o = Command::new("node")
            .arg(ui_dir().join("run.mjs"))
            .current_dir(ui_dir())
            .env("KANTE_UI_URL", format!("https://127.0.0.1:{port}"))
            .env("KANTE_UI_LOGIN", &link)
            .env("KANTE_UI_INSTANCE", "web1")
            .env("KANTE_UI_ADDRESS", &address)
            .env("KANTE_UI_IMAGE", &fp)
            .env("KANTE_UI_NEW", "web2")
            .env("KANTE_BIN", bin("kante"))
            .env("KANTE_DIR", &d.dir)
            .env("KANTE_UI_ARTIFACTS", &artifacts)
            .output()
            .expect("run node");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "tests/ui/run.mjs failed ({}):\n{stdout}\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            d.log_text()
        );
        let report: Value = stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("RESULT "))
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_else(|| panic!("no RESULT line in {stdout}"));

        eprintln!(
            "web view: first view {} bytes; console saw {}; axe: {}",
            report["firstView"]["total"], report["console"], report["axe"]
        );
        // What the browser saw, checked again here.
        assert_eq!(report["untrusted"]["instances"], 403, "{report}");
        assert_eq!(report["csrf"], 403, "{report}");
        // The host card's load is the server's member state, which
        // counts this host's memory.
        let shown = report["hostLoad"].as_str().unwrap_or_default();
        assert_eq!(shown.split(", ").count(), 3, "{report}");
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let state: Value = d
            .client
            .get_json(&format!("/1.0/cluster/members/{}/state", host.trim()))
            .await
            .unwrap();
        let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert_eq!(state["sysinfo"]["total_ram"], mem_kib * 1024, "{state}");
        assert_eq!(
            state["sysinfo"]["load_averages"].as_array().unwrap().len(),
            3
        );
        assert!(
            state["storage_pools"]["default"]["resources"]["space"]["total"].as_u64() > Some(0)
        );
        let first = report["firstView"]["total"].as_u64().unwrap();
        assert!(first > 0 && first < 200 * 1024, "first view: {first} bytes");
        assert_eq!(report["console"], "web1", "{report}");
        assert_eq!(report["eventRow"], "web2", "{report}");
        for view in [
            "login",
            "overview",
            "instance",
            "console",
            "networks",
            "storage",
            "confirm-delete",
        ] {
            let png = artifacts.join(format!("{view}.png"));
            let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{} is missing or empty", png.display());
        }
        for view in [
            "login", "overview", "instance", "networks", "storage", "confirm",
        ] {
            assert!(
                report["axe"][view].is_array(),
                "no axe run on {view}: {report}"
            );
        }

        let (before, after) = (&report["restart"]["before"], &report["restart"]["after"]);
        assert!(
            before.as_u64().is_some() && after.as_u64().is_some() && before != after,
            "restart from the page: {report}"
        );
        assert_eq!(report["deleted"], "web2", "{report}");

        // From outside: the page's stop, start and restart left web1
        // running, web2 (launched by the CLI) was deleted from the page,
        // and the removed session is gone.
        let list = kante_ok(&d, &["list", "-c", "ns", "--format", "csv"]);
        assert_eq!(list.trim(), "web1,RUNNING", "{list}");
        assert!(
            d.client
                .instance("web2")
                .await
                .is_err_and(|e| e.is_not_found()),
            "web2 is still there"
        );
        let trust = kante_ok(&d, &["config", "trust", "list", "--format", "csv"]);
        assert!(!trust.contains("ui-browser"), "{trust}");

        d.client.stop_instance("web1", true, -1).await.unwrap();
        d.client.delete_instance("web1").await.unwrap();
        d.client.delete("/1.0/networks/ktui0").await.unwrap();
        d.shutdown().await;
    });
}
