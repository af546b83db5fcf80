//! Unit tests of image templates: triggers, rendering inside the rootfs, never outside it.

use std::path::PathBuf;

use super::*;

struct Vol(PathBuf);

impl Drop for Vol {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An instance volume with `templates` (path → (file, when, create_only,
/// content)) in its metadata.yaml.
fn volume(tag: &str, templates: &[(&str, &str, &[&str], bool, &str)]) -> Vol {
    let dir = std::env::temp_dir().join(format!("ktpl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    let mut yaml = String::from("architecture: x86_64\ncreation_date: 1\ntemplates:\n");
    for (path, file, when, create_only, content) in templates {
        yaml.push_str(&format!(
            "  {path}:\n    template: {file}\n    when: [{}]\n    create_only: {create_only}\n    \
             properties:\n      default: \"#cloud-config\\n{{}}\"\n",
            when.join(", ")
        ));
        std::fs::write(dir.join("templates").join(file), content).unwrap();
    }
    std::fs::write(dir.join("metadata.yaml"), yaml).unwrap();
    Vol(dir)
}

fn inst(config: &[(&str, &str)]) -> TemplateInstance {
    let mut devices = DevicesMap::new();
    devices.insert(
        "eth0".into(),
        BTreeMap::from([
            ("type".to_string(), "nic".to_string()),
            ("network".to_string(), "kantebr0".to_string()),
        ]),
    );
    TemplateInstance {
        name: "c1".into(),
        architecture: "x86_64".into(),
        ephemeral: false,
        privileged: false,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        devices,
        local: ConfigMap::new(),
    }
}

fn read(v: &Vol, p: &str) -> Option<String> {
    std::fs::read_to_string(v.0.join("rootfs").join(p)).ok()
}

#[test]
fn triggers_decide_what_is_rendered() {
    let v = volume(
        "trig",
        &[
            (
                "/etc/hostname",
                "hostname.tpl",
                &["create", "copy"],
                false,
                "{{ instance.name }}\n",
            ),
            (
                "/etc/on-copy",
                "copy.tpl",
                &["copy"],
                false,
                "copied {{ trigger }}",
            ),
            (
                "/etc/every-start",
                "start.tpl",
                &["start"],
                false,
                "{{ container.name }} {{ trigger }}",
            ),
        ],
    );
    let i = inst(&[]);
    apply(&v.0, None, &i).unwrap();
    assert_eq!(read(&v, "etc/hostname"), None);
    assert_eq!(read(&v, "etc/every-start").unwrap(), "c1 start");
    apply(&v.0, Some("create"), &i).unwrap();
    assert_eq!(read(&v, "etc/hostname").unwrap(), "c1\n");
    assert_eq!(read(&v, "etc/on-copy"), None);
    apply(&v.0, Some("copy"), &i).unwrap();
    assert_eq!(read(&v, "etc/on-copy").unwrap(), "copied copy");
    // Mode of new files; existing ones are truncated, not appended.
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(v.0.join("rootfs/etc/hostname")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o644);
}

#[test]
fn cloud_init_seed_templates() {
    let net = "{% if config_get(\"user.network-config\", \"\") == \"\" %}version: 1\nconfig:\n\
               {%- for nic in nics %}{% if forloop.first %}\n  - type: physical\n    name: {{ nic.name }}\n    \
               subnets:\n      - type: dhcp\n        control: auto{% endif %}{% endfor %}\n\
               {%- else %}{{ config_get(\"user.network-config\", \"\") }}{% endif %}\n";
    let v = volume(
        "ci",
        &[
            (
                "/var/lib/cloud/seed/nocloud-net/meta-data",
                "meta.tpl",
                &["create", "copy", "start"],
                false,
                "instance-id: {{ config_get(\"volatile.cloud-init.instance-id\", instance.name) }}\n\
                 local-hostname: {{ instance.name }}\n{{ config_get(\"user.meta-data\", \"\") }}\n",
            ),
            (
                "/var/lib/cloud/seed/nocloud-net/user-data",
                "user.tpl",
                &["create", "copy", "start"],
                false,
                "{{ config_get(\"user.user-data\", properties.default) }}\n",
            ),
            ("/var/lib/cloud/seed/nocloud-net/network-config", "net.tpl", &["start"], false, net),
        ],
    );
    let i = inst(&[
        ("volatile.cloud-init.instance-id", "id-1"),
        ("user.user-data", "#cloud-config\na: 1\n"),
        ("cloud-init.user-data", "#cloud-config\nb: 2\n"),
    ]);
    apply(&v.0, Some("create"), &i).unwrap();
    let seed = "var/lib/cloud/seed/nocloud-net";
    assert_eq!(
        read(&v, &format!("{seed}/meta-data")).unwrap(),
        "instance-id: id-1\nlocal-hostname: c1\n\n"
    );
    assert_eq!(
        read(&v, &format!("{seed}/user-data")).unwrap(),
        "#cloud-config\nb: 2\n"
    );
    let got = read(&v, &format!("{seed}/network-config")).unwrap();
    assert_eq!(
        got,
        "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n      \
         - type: dhcp\n        control: auto\n"
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&got).unwrap();
    assert_eq!(doc["config"][0]["name"].as_str(), Some("eth0"));
    // Without cloud-init data: the image's default.
    apply(&v.0, Some("create"), &inst(&[])).unwrap();
    assert_eq!(
        read(&v, &format!("{seed}/user-data")).unwrap(),
        "#cloud-config\n{}\n"
    );
    // A given network config replaces the default.
    let i = inst(&[("user.network-config", "version: 2\nethernets: {}\n")]);
    apply(&v.0, None, &i).unwrap();
    assert_eq!(
        read(&v, &format!("{seed}/network-config")).unwrap(),
        "version: 2\nethernets: {}\n"
    );
}

#[test]
fn create_only_keeps_an_existing_file() {
    let v = volume(
        "conly",
        &[("/etc/keep", "keep.tpl", &["create"], true, "new")],
    );
    std::fs::write(v.0.join("rootfs/etc/keep"), "old").unwrap();
    apply(&v.0, Some("create"), &inst(&[])).unwrap();
    assert_eq!(read(&v, "etc/keep").unwrap(), "old");
    std::fs::remove_file(v.0.join("rootfs/etc/keep")).unwrap();
    apply(&v.0, Some("create"), &inst(&[])).unwrap();
    assert_eq!(read(&v, "etc/keep").unwrap(), "new");
}

#[test]
fn nothing_leaves_the_rootfs() {
    // A symlink at the target pointing out of the rootfs writes inside it.
    let v = volume("esc", &[("/etc/link", "t.tpl", &["create"], false, "x")]);
    std::os::unix::fs::symlink(v.0.join("outside"), v.0.join("rootfs/etc/link")).unwrap();
    // (its directories do not exist in the rootfs: an error, but nothing outside)
    assert!(apply(&v.0, Some("create"), &inst(&[])).is_err());
    assert!(!v.0.join("outside").exists());
    std::fs::remove_file(v.0.join("rootfs/etc/link")).unwrap();
    std::os::unix::fs::symlink("/etc/real", v.0.join("rootfs/etc/link")).unwrap();
    apply(&v.0, Some("create"), &inst(&[])).unwrap();
    assert_eq!(read(&v, "etc/real").unwrap(), "x");
    // A symlinked parent directory, relative and climbing, stays inside too.
    let v = volume("esc2", &[("/up/x/file", "t.tpl", &["create"], false, "x")]);
    std::os::unix::fs::symlink("../../..", v.0.join("rootfs/up")).unwrap();
    apply(&v.0, Some("create"), &inst(&[])).unwrap();
    assert_eq!(read(&v, "x/file").unwrap(), "x");
    assert!(!v.0.join("x").exists());
    // `..` in the target is refused; so is a template file outside templates/.
    let v = volume("esc3", &[("../escape", "t.tpl", &["create"], false, "x")]);
    assert!(apply(&v.0, Some("create"), &inst(&[])).is_err());
    assert!(!v.0.join("escape").exists());
    let v = volume(
        "esc4",
        &[("/etc/a", "../metadata.yaml", &["create"], false, "")],
    );
    assert!(apply(&v.0, Some("create"), &inst(&[])).is_err());
    // A symlinked template file is refused.
    let v = volume("esc5", &[("/etc/a", "real.tpl", &["create"], false, "x")]);
    std::fs::remove_file(v.0.join("templates/real.tpl")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", v.0.join("templates/real.tpl")).unwrap();
    assert!(apply(&v.0, Some("create"), &inst(&[])).is_err());
    assert_eq!(read(&v, "etc/a"), None);
    // A directory at the target and the root itself are errors.
    let v = volume("dir", &[("/etc", "t.tpl", &["create"], false, "x")]);
    assert!(apply(&v.0, Some("create"), &inst(&[])).is_err());
    let v = volume("root", &[("/", "t.tpl", &["create"], false, "x")]);
    assert!(apply(&v.0, Some("create"), &inst(&[])).is_err());
}

#[test]
fn no_metadata_means_nothing_to_do_and_bad_templates_are_errors() {
    let dir = std::env::temp_dir().join(format!("ktpl-none-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let v = Vol(dir);
    apply(&v.0, Some("create"), &inst(&[])).unwrap();
    let v = volume(
        "bad",
        &[("/etc/a", "t.tpl", &["create"], false, "{% if %}")],
    );
    let e = apply(&v.0, Some("create"), &inst(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/etc/a"), "{e}");
}
