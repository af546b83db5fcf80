//! Exports from data alone, read back by the site parser.

use super::*;
use crate::preseed::Current;
use crate::Site;

fn have(name: &str, location: &str, status: &str) -> Have {
    serde_json::from_value(json!({
        "architecture": "x86_64", "config": {"volatile.base_image": "f00", "limits.cpu": "1"},
        "devices": {}, "ephemeral": false, "profiles": ["default", "web"], "stateful": false,
        "description": "", "created_at": "2026-01-01T00:00:00Z", "expanded_config": {},
        "expanded_devices": {}, "name": name, "status": status, "status_code": 103,
        "last_used_at": "2026-01-01T00:00:00Z", "location": location, "type": "container",
        "project": "default"
    }))
    .unwrap()
}

fn state(instances: Vec<Have>) -> HostState {
    let profile = |name: &str| -> kante_client::Profile {
        serde_json::from_value(json!({
            "name": name, "description": "", "config": {}, "devices": {}, "used_by": []
        }))
        .unwrap()
    };
    HostState {
        preseed: Current {
            profiles: vec![profile("default"), profile("web")],
            ..Default::default()
        },
        instances,
        cluster: Vec::new(),
        members: Vec::new(),
    }
}

#[test]
fn a_cluster_alone_is_written_as_its_members() {
    let st = state(vec![have("b", "m2", "Stopped"), have("a", "m1", "Running")]);
    let aliases = [("debian/12".to_string(), "f00".to_string())];
    let members = ["m1".to_string(), "m2".to_string(), "m3".to_string()];
    let text = export(
        "copy",
        &[Exported {
            host: "cl",
            remote: "cl",
            state: &st,
            aliases: &aliases,
            members: &members,
        }],
    )
    .unwrap();
    let site = Site::parse("export.yaml", &text, "local").unwrap();
    let m: Vec<(&str, &str)> = site
        .members
        .iter()
        .map(|(h, m)| (h.as_str(), m.as_str()))
        .collect();
    assert_eq!(m, [("m1", "m1"), ("m2", "m2"), ("m3", "m3")], "{text}");
    assert!(site.hosts.values().all(|r| r == "cl"), "{text}");
    let placed: Vec<(&str, &str, bool)> = site
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.host.as_str(), i.start))
        .collect();
    assert_eq!(placed, [("a", "m1", true), ("b", "m2", false)], "{text}");
    assert_eq!(site.instances[0].image, "debian/12");
    assert!(!text.contains("volatile."), "{text}");
    // The cluster's profiles once, at the top: planned by its first member.
    let names: Vec<&str> = site.preseeds["m1"]
        .profiles
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["default", "web"], "{text}");
}

#[test]
fn a_cluster_among_other_remotes_stays_one_host() {
    let cl = state(vec![have("a", "m1", "Running")]);
    let other = state(vec![have("c", "none", "Running")]);
    let members = ["m1".to_string(), "m2".to_string()];
    let text = export(
        "two",
        &[
            Exported {
                host: "cl",
                remote: "cl",
                state: &cl,
                aliases: &[],
                members: &members,
            },
            Exported {
                host: "solo",
                remote: "solo",
                state: &other,
                aliases: &[],
                members: &[],
            },
        ],
    )
    .unwrap();
    let site = Site::parse("export.yaml", &text, "local").unwrap();
    assert!(site.members.is_empty(), "{text}");
    let placed: Vec<(&str, &str)> = site
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.host.as_str()))
        .collect();
    assert_eq!(placed, [("a", "cl"), ("c", "solo")], "{text}");
    assert_eq!(site.instances[0].image, "f00", "no alias: the fingerprint");
}
