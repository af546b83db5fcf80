//! Plans against a host's state, from data alone.

use super::*;
use serde_json::json;

const SITE: &str = r#"
site: lab
profiles:
  - name: web
    config: {limits.cpu: "1"}
instances:
  - name: new1
    image: debian/12
  - name: same
    image: debian/12
    config: {limits.memory: 256MiB}
  - name: changed
    image: debian/12
    profiles: [default, web]
    config: {limits.memory: 512MiB}
  - name: stopped
    image: debian/12
"#;

fn have(name: &str, status: &str, config: serde_json::Value, profiles: &[&str]) -> Have {
    serde_json::from_value(json!({
        "architecture": "x86_64", "config": config, "devices": {}, "ephemeral": false,
        "profiles": profiles, "stateful": false, "description": "",
        "created_at": "2026-01-01T00:00:00Z", "expanded_config": {}, "expanded_devices": {},
        "name": name, "status": status, "status_code": 103,
        "last_used_at": "2026-01-01T00:00:00Z", "location": "none", "type": "container",
        "project": "default"
    }))
    .unwrap()
}

fn state(instances: Vec<Have>) -> HostState {
    let default: kante_client::Profile = serde_json::from_value(json!({
        "name": "default", "description": "", "config": {}, "devices": {}, "used_by": []
    }))
    .unwrap();
    HostState {
        preseed: Current {
            profiles: vec![default],
            ..Default::default()
        },
        instances,
        cluster: Vec::new(),
        members: Vec::new(),
    }
}

fn host_state() -> HostState {
    state(vec![
        have(
            "same",
            "Running",
            json!({"limits.memory": "256MiB", "user.other": "x"}),
            &["default"],
        ),
        have(
            "changed",
            "Running",
            json!({"limits.memory": "256MiB"}),
            &["default"],
        ),
        have("stopped", "Stopped", json!({}), &["default"]),
        have("gone", "Running", json!({SITE_KEY: "lab"}), &["default"]),
        have("handmade", "Running", json!({}), &["default"]),
    ])
}

#[test]
fn the_plan_creates_changes_starts_and_leaves_alone() {
    let site = Site::parse("s.yaml", SITE, "h1").unwrap();
    let p = plan_host(&site, "h1", &host_state(), &BTreeMap::new(), false).unwrap();
    // The site's profile first, then the instances in file order.
    assert_eq!(p.preseed.len(), 1);
    assert!(matches!(&p.changes[0], Change::Create(i) if i.name == "new1"));
    let Change::Update {
        name,
        config,
        profiles,
        diff,
        ..
    } = &p.changes[1]
    else {
        panic!("{:?}", p.changes[1]);
    };
    assert_eq!(name, "changed");
    assert_eq!(config["limits.memory"], "512MiB");
    assert_eq!(
        profiles.as_deref(),
        Some(&["default".to_string(), "web".to_string()][..])
    );
    assert_eq!(diff[0], "config limits.memory: \"256MiB\" -> \"512MiB\"");
    assert_eq!(p.changes[2], Change::Start("stopped".into()));
    assert_eq!(p.changes.len(), 3, "{:?}", p.changes);
    // A key the file does not name (user.other) is left alone.
    assert_eq!(p.unchanged, ["same"]);
    let lines = p.lines().join("\n");
    assert!(
        lines.contains("+ instance new1 (image debian/12)"),
        "{lines}"
    );
    assert!(lines.contains("~ instance stopped: start"), "{lines}");
    assert!(!p.destroys());
}

#[test]
fn prune_deletes_only_what_this_site_made() {
    let site = Site::parse("s.yaml", SITE, "h1").unwrap();
    let p = plan_host(&site, "h1", &host_state(), &BTreeMap::new(), true).unwrap();
    let deletes: Vec<_> = p
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Delete(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deletes, ["gone"], "never handmade");
    assert!(p.destroys());
}

#[test]
fn a_converged_host_has_an_empty_plan() {
    let site = Site::parse("s.yaml", "instances:\n  - {name: a, image: x}\n", "h1").unwrap();
    let p = plan_host(
        &site,
        "h1",
        &state(vec![have("a", "Running", json!({}), &["default"])]),
        &BTreeMap::new(),
        true,
    )
    .unwrap();
    assert!(p.is_empty(), "{:?}", p.lines());
    assert_eq!(p.unchanged, ["a"]);
}

#[test]
fn undefined_profiles_and_instances_living_elsewhere_are_refused() {
    let text = "instances:\n  - {name: a, image: x, profiles: [nosuch]}\n";
    let site = Site::parse("s.yaml", text, "h1").unwrap();
    let e = plan_host(&site, "h1", &state(vec![]), &BTreeMap::new(), false).unwrap_err();
    assert!(e.to_string().contains("\"nosuch\""), "{e}");
    let text = "instances:\n  - {name: a, image: x, devices: {eth1: {type: nic, parent: nobr}}}\n";
    let site = Site::parse("s.yaml", text, "h1").unwrap();
    let e = plan_host(&site, "h1", &state(vec![]), &BTreeMap::new(), false).unwrap_err();
    assert!(e.to_string().contains("network \"nobr\""), "{e}");
    let site = Site::parse("s.yaml", "instances:\n  - {name: a, image: x}\n", "h1").unwrap();
    let others = BTreeMap::from([("a".to_string(), "h2".to_string())]);
    let e = plan_host(&site, "h1", &state(vec![]), &others, false).unwrap_err();
    assert!(e.to_string().contains("exists on h2"), "{e}");
}

fn located(name: &str, status: &str, member: &str) -> Have {
    // Made by this site (named "site": the file names none).
    let config = json!({"limits.memory": "128MiB", SITE_KEY: "site"});
    let mut h = have(name, status, config, &["default"]);
    h.location = member.into();
    h
}

const MEMBERS: &str = r#"
profiles:
  - name: web
hosts:
  host1: {remote: cl, member: h1}
  host2: {remote: cl, member: h2}
instances:
  - {name: a, host: host2, image: x, config: {limits.memory: 128MiB}}
  - {name: b, host: host2, image: x, config: {limits.memory: 256MiB}}
"#;

/// A member host's state as `read_host` makes it from the cluster's list.
fn member_state(member: &str, all: Vec<Have>) -> HostState {
    let mut s = state(
        all.iter()
            .filter(|i| i.location == member)
            .cloned()
            .collect(),
    );
    s.cluster = all;
    s.members = vec!["h1".into(), "h2".into(), "h3".into()];
    s
}

#[test]
fn a_member_host_moves_what_another_member_holds_then_compares_it() {
    let site = Site::parse("s.yaml", MEMBERS, "local").unwrap();
    let all = vec![located("a", "Running", "h1"), located("b", "Stopped", "h3")];
    let living = BTreeMap::from([("a".to_string(), "host1".to_string())]);
    let p = plan_host(
        &site,
        "host2",
        &member_state("h2", all.clone()),
        &living,
        false,
    )
    .unwrap();
    assert_eq!(
        p.changes[0],
        Change::Move {
            name: "a".into(),
            from: "h1".into(),
            to: "h2".into()
        }
    );
    // b is on h3, which no host of the site stands for: moved too, its
    // key changed, and started (it was stopped).
    assert!(
        matches!(&p.changes[1], Change::Move { name, from, .. } if name == "b" && from == "h3")
    );
    assert!(matches!(&p.changes[2], Change::Update { name, .. } if name == "b"));
    assert_eq!(p.changes[3], Change::Start("b".into()));
    assert_eq!(p.changes.len(), 4, "{:?}", p.changes);
    assert!(p.lines().join("\n").contains("move from member h1 to h2"));
    // The second member host plans no preseed (host1 has the cluster's).
    assert!(p.preseed.is_empty());
    let p1 = plan_host(
        &site,
        "host1",
        &member_state("h1", all.clone()),
        &BTreeMap::new(),
        true,
    )
    .unwrap();
    assert_eq!(p1.preseed.len(), 1, "the site's profile, once");
    assert!(
        !p1.destroys(),
        "a on h1 is wanted on host2 (moved there), not pruned"
    );
    // Converged: both on h2 as the file says.
    let done = vec![located("a", "Running", "h2"), {
        let mut b = located("b", "Running", "h2");
        b.config.insert("limits.memory".into(), "256MiB".into());
        b
    }];
    let p = plan_host(
        &site,
        "host2",
        &member_state("h2", done),
        &BTreeMap::new(),
        true,
    )
    .unwrap();
    assert!(p.is_empty(), "{:?}", p.lines());
}

#[test]
fn a_member_the_cluster_lacks_is_refused() {
    let site = Site::parse("s.yaml", MEMBERS, "local").unwrap();
    let mut s = member_state("h2", vec![]);
    s.members = vec!["h1".into(), "h3".into()];
    let e = plan_host(&site, "host2", &s, &BTreeMap::new(), false).unwrap_err();
    assert!(
        e.to_string().contains("does not have (members: h1, h3)"),
        "{e}"
    );
    s.members.clear();
    let e = plan_host(&site, "host2", &s, &BTreeMap::new(), false).unwrap_err();
    assert!(e.to_string().contains("not a cluster"), "{e}");
}
