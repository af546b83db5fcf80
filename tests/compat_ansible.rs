//! Ansible (`ansible` from PyPI, in `/opt/kante-ansible`: scripts/deps.sh),
//! unchanged, against a real kanted: `tests/compat/ansible/site.yml` makes
//! a profile with `community.general.lxd_profile` (config and a disk
//! device), a container with `lxd_container` (from an image alias, with
//! that profile, config and a device of its own, started), and runs a task
//! inside it through the `community.general.lxd` connection plugin (`lxc
//! exec`, Debian's lxc). The playbook runs twice: the second PLAY RECAP
//! must show no change; then with another role, which both modules apply
//! in place (and a fourth run changes nothing again). Then `cleanup.yml`
//! removes both with `state: absent`. Once over the unix socket, once over
//! HTTPS with a client certificate the modules get trusted by the trust
//! password (and an `lxc` remote added the same way). Effects are checked
//! from outside: the daemon's records, a file read back through exec, the
//! shared directory on the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kante_integration::{free_port, kante_ok, prerequisite, run, Daemon, TestImage};
use serde_json::Value;

const PLAYBOOK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/ansible");
const ANSIBLE_PLAYBOOK: &str = "/opt/kante-ansible/bin/ansible-playbook";
const ALIAS: &str = "ansible-busybox";

/// How a run reaches the daemon: the playbook's extra vars and the
/// environment of `ansible-playbook` (and of the `lxc` it spawns).
struct Target {
    vars: Vec<(String, String)>,
    env: Vec<(String, PathBuf)>,
}

/// One line of the PLAY RECAP per host: its counters (`ok`, `changed`, …).
type Recap = BTreeMap<String, BTreeMap<String, u32>>;

fn recap(out: &str) -> Recap {
    let mut r = Recap::new();
    let Some(at) = out.find("PLAY RECAP") else {
        return r;
    };
    for line in out[at..].lines().skip(1) {
        let Some((host, counts)) = line.split_once(" : ") else {
            continue;
        };
        let counts = counts
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        r.insert(host.trim().to_string(), counts);
    }
    r
}

/// Runs `playbook` (a file of tests/compat/ansible) against `t` with
/// `extra` vars; its recap.
fn playbook(d: &Daemon, t: &Target, playbook: &str, extra: &[(&str, &str)]) -> Recap {
    let home = d.dir.join("ansible-home");
    std::fs::create_dir_all(&home).unwrap();
    let vars: serde_json::Map<String, Value> = t
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .chain(
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string()))),
        )
        .collect();
    let mut cmd = Command::new(ANSIBLE_PLAYBOOK);
    cmd.arg("-i")
        .arg("ans1,")
        .arg("-e")
        .arg(Value::Object(vars).to_string())
        .arg(Path::new(PLAYBOOK_DIR).join(playbook))
        .current_dir(&home)
        .env_remove("LXD_DIR")
        .env("HOME", &home)
        .env("LXD_CONF", d.dir.join("lxc-conf"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_DEPRECATION_WARNINGS", "0");
    for (k, v) in &t.env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run ansible-playbook");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "ansible-playbook {playbook} failed ({}):\n{out}\n{err}\n{}",
        o.status,
        d.log_text()
    );
    let r = recap(&out);
    for (host, counts) in &r {
        assert_eq!(counts.get("failed"), Some(&0), "{host}: {out}");
        assert_eq!(counts.get("unreachable"), Some(&0), "{host}: {out}");
    }
    r
}

fn changed(r: &Recap, host: &str) -> u32 {
    r.get(host)
        .and_then(|c| c.get("changed"))
        .copied()
        .unwrap_or_else(|| panic!("no recap line for {host}: {r:?}"))
}

/// The whole scenario against `t`: site.yml twice, its effects, cleanup.yml.
async fn scenario(d: &Daemon, t: &Target, share: &Path) {
    let first = playbook(d, t, "site.yml", &[]);
    assert_eq!(changed(&first, "localhost"), 2, "{first:?}");
    assert_eq!(changed(&first, "ans1"), 1, "{first:?}");

    // The profile as the module asked for it.
    let p: Value = d.client.get_json("/1.0/profiles/ansprof").await.unwrap();
    assert_eq!(p["description"], "Made by Ansible", "{p}");
    assert_eq!(p["config"]["limits.memory"], "128MiB", "{p}");
    assert_eq!(p["config"]["user.role"], "web", "{p}");
    assert_eq!(p["devices"]["share"]["path"], "/srv/share", "{p}");
    // The container: running, both profiles in order, its own config, the
    // profile's config in the expanded view.
    let i: Value = d.client.get_json("/1.0/instances/ans1").await.unwrap();
    assert_eq!(i["status"], "Running", "{i}");
    assert_eq!(i["profiles"], serde_json::json!(["default", "ansprof"]));
    assert_eq!(i["config"]["user.managed-by"], "ansible", "{i}");
    assert_eq!(i["config"]["user.tier"], "web", "{i}");
    assert_eq!(i["config"]["limits.processes"], "200", "{i}");
    assert_eq!(i["expanded_config"]["limits.memory"], "128MiB", "{i}");
    assert_eq!(i["devices"]["again"]["path"], "/mnt/again", "{i}");
    assert_eq!(i["ephemeral"], false, "{i}");
    // The task ran inside the container: its file, read back through exec
    // and seen on the host through the profile's disk device.
    let (code, out) = d.sh("ans1", "cat /srv/share/mark").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "written by ansible in ans1");
    let on_host = std::fs::read_to_string(share.join("mark")).unwrap();
    assert_eq!(on_host.trim(), "written by ansible in ans1");
    // The container's own device: the same directory, read-only.
    let (code, out) = d
        .sh("ans1", "cat /mnt/again/mark; touch /mnt/again/x")
        .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.starts_with("written by ansible in ans1"), "{out}");

    // Nothing to do the second time.
    let second = playbook(d, t, "site.yml", &[]);
    assert_eq!(changed(&second, "localhost"), 0, "{second:?}");
    assert_eq!(changed(&second, "ans1"), 0, "{second:?}");

    // Another role: the profile and the container are edited in place (the
    // container keeps running), and the guest's mark is left alone.
    let pid = d.init_pid("ans1").await;
    let third = playbook(d, t, "site.yml", &[("role", "db")]);
    assert_eq!(changed(&third, "localhost"), 2, "{third:?}");
    assert_eq!(changed(&third, "ans1"), 0, "{third:?}");
    let p: Value = d.client.get_json("/1.0/profiles/ansprof").await.unwrap();
    assert_eq!(p["config"]["user.role"], "db", "{p}");
    assert_eq!(p["devices"]["share"]["path"], "/srv/share", "{p}");
    let i: Value = d.client.get_json("/1.0/instances/ans1").await.unwrap();
    assert_eq!(i["config"]["user.tier"], "db", "{i}");
    assert_eq!(i["expanded_config"]["user.role"], "db", "{i}");
    assert_eq!(i["profiles"], serde_json::json!(["default", "ansprof"]));
    assert_eq!(i["status"], "Running", "{i}");
    assert_eq!(d.init_pid("ans1").await, pid, "the container was restarted");
    let again = playbook(d, t, "site.yml", &[("role", "db")]);
    assert_eq!(changed(&again, "localhost"), 0, "{again:?}");

    let gone = playbook(d, t, "cleanup.yml", &[]);
    assert_eq!(changed(&gone, "localhost"), 2, "{gone:?}");
    assert!(d.client.instance_names().await.unwrap().is_empty());
    assert!(d.client.profile("ansprof").await.is_err());
}

/// A daemon with the busybox image under an alias, and a share directory
/// (outside the daemon's own, which no device may share).
async fn daemon() -> (Daemon, tempfile::TempDir) {
    let d = Daemon::start().await;
    let fp = d.import(TestImage::Busybox).await;
    d.client.create_image_alias(ALIAS, &fp, "").await.unwrap();
    let share = tempfile::Builder::new()
        .prefix("kante-ansible-share-")
        .tempdir()
        .unwrap();
    // Writable by the guest's root, which is an unprivileged host uid.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(share.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    (d, share)
}

fn ansible_installed() -> bool {
    prerequisite(
        Path::new(ANSIBLE_PLAYBOOK).exists(),
        "ansible in /opt/kante-ansible (scripts/deps.sh)",
    )
}

#[test]
fn ansible_drives_kanted_over_the_unix_socket() {
    if !ansible_installed() {
        return;
    }
    run(async {
        let (d, share) = daemon().await;
        let t = Target {
            vars: vec![
                (
                    "lxd_url".into(),
                    format!("unix:{}", d.dir.join("unix.socket").display()),
                ),
                ("image_alias".into(), ALIAS.into()),
                ("share_dir".into(), share.path().display().to_string()),
                ("lxc_remote".into(), "local".into()),
            ],
            env: vec![("LXD_DIR".into(), d.dir.clone())],
        };
        scenario(&d, &t, share.path()).await;
        d.shutdown().await;
    });
}

#[test]
fn ansible_drives_kanted_over_https_with_a_client_certificate() {
    if !ansible_installed() {
        return;
    }
    run(async {
        let (d, share) = daemon().await;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        kante_ok(&d, &["config", "set", "core.https_address", &addr]);
        kante_ok(&d, &["config", "set", "core.trust_password", "ans-sesame"]);
        let pair =
            kante_tls::KeyPair::generate(kante_tls::Role::Client, &["ansible".into()]).unwrap();
        let (crt, key) = (d.dir.join("ansible.crt"), d.dir.join("ansible.key"));
        std::fs::write(&crt, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        // The connection plugin's `lxc` reaches the daemon by a remote
        // added by the trust password, as an operator would.
        let lxc_conf = d.dir.join("lxc-conf");
        let o = Command::new("lxc")
            .args(["remote", "add", "kr", &format!("https://{addr}")])
            .args(["--password", "ans-sesame", "--accept-certificate"])
            .env_remove("LXD_DIR")
            .env("LXD_CONF", &lxc_conf)
            .env("HOME", &d.dir)
            .output()
            .expect("run lxc (apt-get install lxd-client)");
        assert!(o.status.success(), "{o:?}");
        let t = Target {
            vars: vec![
                ("lxd_url".into(), format!("https://{addr}")),
                ("image_alias".into(), ALIAS.into()),
                ("share_dir".into(), share.path().display().to_string()),
                ("lxc_remote".into(), "kr".into()),
                ("client_cert".into(), crt.display().to_string()),
                ("client_key".into(), key.display().to_string()),
                ("trust_password".into(), "ans-sesame".into()),
            ],
            // The modules verify the server against the default CA store
            // (they take no server certificate): point it at kanted's own.
            env: vec![("SSL_CERT_FILE".into(), d.dir.join("server.crt"))],
        };
        scenario(&d, &t, share.path()).await;
        // The daemon trusts the modules' certificate, learnt by the password.
        let trusted = kante_ok(&d, &["config", "trust", "list"]);
        assert!(trusted.contains(&pair.fingerprint()[..12]), "{trusted}");
        kante_ok(&d, &["config", "unset", "core.https_address"]);
        d.shutdown().await;
    });
}
