//! The site file's reading and its plan-time refusals.

use super::*;

const SITE: &str = r#"
site: lab
profiles:
  - name: swarm
    config: {security.nesting: "true"}
hosts:
  host1: {}
  host2: {remote: other}
  host3:
    networks:
      - name: br1
        config: {ipv4.address: 10.9.0.1/24}
groups:
  workers: [host2, host3]
instances:
  - name: docker1
    host: host1
    image: debian/12
    profiles: [default, swarm]
    vars: {MAC: "00:16:3e:00:00:01"}
    devices:
      eth0: {type: nic, nictype: bridged, parent: br0, hwaddr: "{{MAC}}"}
    user_data: |
      #cloud-config
      hostname: {{name}}
  - name: worker{n}
    count: 3
    host: workers
    image: debian/12
    config: {user.role: "worker {{n}} on {{host}}"}
steps:
  - name: token
    on: docker1
    ready: cloud-init
    run: docker swarm join-token -q worker
    capture: TOKEN
  - name: join
    on: [worker1, worker2]
    ready: port:22
    run: docker swarm join --token {{TOKEN}} {{ip:docker1}}:2377
"#;

#[test]
fn a_site_reads_with_hosts_groups_replicas_and_steps() {
    let s = Site::parse("site.yaml", SITE, "local").unwrap();
    assert_eq!(s.name, "lab");
    assert_eq!(s.hosts["host2"], "other");
    assert_eq!(s.hosts["host1"], "host1");
    // The site-wide profile reaches every host; host3 adds its network.
    assert!(s.preseeds["host1"]
        .profiles
        .iter()
        .any(|p| p.name == "swarm"));
    assert_eq!(s.preseeds["host3"].networks.len(), 1);
    assert!(s.preseeds["host1"].networks.is_empty());
    let names: Vec<_> = s
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.host.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("docker1", "host1"),
            ("worker1", "host2"),
            ("worker2", "host3"),
            ("worker3", "host2")
        ]
    );
    let d = &s.instances[0];
    assert_eq!(d.devices["eth0"]["hwaddr"], "00:16:3e:00:00:01");
    assert_eq!(
        d.config["cloud-init.user-data"],
        "#cloud-config\nhostname: docker1\n"
    );
    assert_eq!(s.instances[2].config["user.role"], "worker 2 on host3");
    assert_eq!(s.steps[0].ready, Ready::CloudInit);
    assert_eq!(s.steps[1].ready, Ready::Port(22));
    assert_eq!(s.steps[1].on, ["worker1", "worker2"]);
}

#[test]
fn a_plain_preseed_is_a_one_host_site() {
    let s = Site::parse("p.yaml", "config: {core.https_address: ':8443'}\n", "local").unwrap();
    assert_eq!(s.hosts.keys().collect::<Vec<_>>(), ["local"]);
    assert_eq!(s.preseeds["local"].config["core.https_address"], ":8443");
    assert!(s.instances.is_empty());
}

/// The error of `text` (SITE with `from` replaced by `to`).
fn refused(from: &str, to: &str) -> String {
    assert!(SITE.contains(from), "{from}");
    Site::parse("site.yaml", &SITE.replacen(from, to, 1), "local")
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_sites_are_refused_with_the_line_and_a_reason() {
    let e = refused("site: lab", "site: lab\nsurprise: 1");
    assert!(e.starts_with("site.yaml:") && e.contains("surprise"), "{e}");
    let e = refused("host: workers", "host: nowhere");
    // The instance's own line.
    let line = SITE
        .lines()
        .position(|l| l.contains("name: worker{n}"))
        .unwrap()
        + 1;
    assert!(
        e.contains(&format!("site.yaml:{line}:")) && e.contains("nowhere"),
        "{e}"
    );
    let e = refused("name: worker{n}", "name: docker1");
    assert!(e.contains("count"), "{e}");
    let e = refused("name: worker{n}\n    count: 3", "name: docker1");
    assert!(e.contains("two instances are called \"docker1\""), "{e}");
    let e = refused(
        "user.role: \"worker {{n}} on {{host}}\"}",
        "user.x: \"{{nope}}\"}",
    );
    assert!(e.contains("unknown variable {{nope}}"), "{e}");
    let e = refused("on: [worker1, worker2]", "on: [worker1, worker9]");
    assert!(e.contains("worker9"), "{e}");
    // A variable used before the step that captures it.
    let e = refused("capture: TOKEN", "capture: OTHER");
    assert!(e.contains("{{TOKEN}}") && e.contains("earlier"), "{e}");
    let e = refused("ready: port:22", "ready: soon");
    assert!(e.contains("ready must be"), "{e}");
    let e = refused("workers: [host2, host3]", "workers: [host2, host9]");
    assert!(e.contains("host9"), "{e}");
}

#[test]
fn two_instances_with_one_mac_are_refused() {
    let text = SITE.replace(
        "config: {user.role: \"worker {{n}} on {{host}}\"}",
        "devices: {eth0: {type: nic, parent: br0, hwaddr: \"00:16:3E:00:00:01\"}}",
    );
    let e = Site::parse("site.yaml", &text, "local")
        .unwrap_err()
        .to_string();
    assert!(e.contains("same MAC 00:16:3e:00:00:01"), "{e}");
}

#[test]
fn merge_keys_share_an_instances_keys_and_errors_keep_their_line() {
    let text = "hosts: {h1: {}, h2: {}}\ninstances:\n  - &base\n    name: a\n    host: h1\n    image: img\n    vars: {X: \"1\"}\n    config: {user.x: \"{{X}}\"}\n  - <<: *base\n    name: b\n    host: h2\n    vars: {X: \"2\"}\n";
    let s = Site::parse("m.yaml", text, "local").unwrap();
    let b = &s.instances[1];
    assert_eq!(
        (b.name.as_str(), b.host.as_str(), b.image.as_str()),
        ("b", "h2", "img")
    );
    assert_eq!(b.config["user.x"], "2");
    let e = Site::parse(
        "m.yaml",
        &text.replace("    vars: {X: \"2\"}", "    colour: red"),
        "local",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("m.yaml:12:") && e.contains("colour"), "{e}");
}

#[test]
fn the_edge_lab_recipe_reads() {
    let text = include_str!("../../../examples/edge-lab/site.yaml");
    let s = Site::parse("site.yaml", text, "local").unwrap();
    let placed: Vec<_> = s
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.host.as_str()))
        .collect();
    assert_eq!(
        placed,
        [
            ("docker1", "host1"),
            ("docker4", "host1"),
            ("docker2", "host2"),
            ("docker5", "host2"),
            ("docker3", "host3")
        ]
    );
    let d5 = &s.instances[3];
    assert_eq!(d5.config["volatile.eth0.hwaddr"], "00:16:3e:78:c2:c7");
    assert!(d5.config["cloud-init.user-data"].contains("hostname: \"docker5\""));
    assert!(d5.config["cloud-init.network-config"].contains("10.42.0.15/24"));
    assert_eq!(s.steps[1].on.len(), 4);
}

#[test]
fn the_kubernetes_recipe_reads_whole_and_cut_before_kubeadm() {
    let text = include_str!("../../../examples/k8s-nodes/site.yaml");
    let s = Site::parse("site.yaml", text, "local").unwrap();
    let placed: Vec<_> = s
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.host.as_str()))
        .collect();
    assert_eq!(
        placed,
        [
            ("k8s-master", "host1"),
            ("k8s-node1", "host2"),
            ("k8s-node2", "host3")
        ]
    );
    assert!(s.instances[2].config["cloud-init.network-config"].contains("10.43.0.12/24"));
    let steps: Vec<_> = s.steps.iter().map(|st| st.name.as_str()).collect();
    assert_eq!(
        steps,
        ["preflight", "kubernetes", "kubeadm-init", "kubeadm-join"]
    );
    // What tests/site_recipes.rs applies: up to the marked line.
    let cut = text.find("  # --- below: needs pkgs.k8s.io").unwrap();
    let s = Site::parse("site.yaml", &text[..cut], "local").unwrap();
    assert_eq!(s.steps.len(), 1);
}

/// The fields the parser expects where `doc` has an unknown one (from its
/// error, which lists them).
fn expected_fields(doc: &str) -> std::collections::BTreeSet<String> {
    let e = Site::parse("s.yaml", doc, "local").unwrap_err().to_string();
    let list = e
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{e}"));
    list.split(',')
        .map(|f| {
            f.trim()
                .trim_matches(|c: char| c == '`' || !c.is_ascii())
                .split('`')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

#[test]
fn the_json_schema_names_exactly_what_the_parser_takes() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/site.schema.json")).unwrap();
    let names = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let defs = &schema["$defs"];
    for (doc, object) in [
        ("zz: 1\n", &schema),
        ("hosts: {h: {zz: 1}}\n", &defs["host"]),
        (
            "instances:\n  - {name: a, image: x, zz: 1}\n",
            &defs["instance"],
        ),
        (
            "instances: [{name: a, image: x}]\nsteps:\n  - {name: s, on: a, run: x, zz: 1}\n",
            &defs["step"],
        ),
    ] {
        assert_eq!(expected_fields(doc), names(object), "{doc}");
        assert_eq!(object["additionalProperties"], false, "{doc}");
    }
}

const CLUSTER: &str = r#"
site: c
profiles:
  - name: web
hosts:
  host1: {remote: cl, member: h1}
  host2: {remote: cl, member: h2}
  whole: {remote: cl2}
instances:
  - name: web{n}
    count: 3
    host: whole
    image: x
    anti_affinity: web
"#;

#[test]
fn cluster_members_share_one_preseed_and_anti_affinity_is_config() {
    let site = Site::parse("s.yaml", CLUSTER, "local").unwrap();
    assert_eq!(site.members["host1"], "h1");
    assert_eq!(site.members["host2"], "h2");
    assert!(!site.members.contains_key("whole"));
    assert!(site.applies_preseed("host1"));
    assert!(
        !site.applies_preseed("host2"),
        "host1 plans the cluster's part"
    );
    assert!(site.applies_preseed("whole"));
    // `apply --target host2`: host2 is then the first member host planned.
    let mut only2 = Site::parse("s.yaml", CLUSTER, "local").unwrap();
    only2.target(&["host2".to_string()]).unwrap();
    assert!(
        only2.applies_preseed("host2"),
        "the targeted member plans it"
    );
    assert!(!only2.targeted("host1"));
    let e = only2.target(&["host9".to_string()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--target host9: the site has no host \"host9\""
    );
    assert!(site.same_cluster("host1", "host2"));
    assert!(!site.same_cluster("host1", "whole"));
    assert_eq!(site.instances.len(), 3);
    for i in &site.instances {
        assert_eq!(i.config["placement.anti-affinity"], "web");
        assert_eq!(i.host, "whole");
    }
}

#[test]
fn member_hosts_are_refused_when_ambiguous_or_with_parts_of_their_own() {
    for (text, says) in [
        (
            "hosts:\n  host1: {remote: cl, member: h1}\n  host2: {remote: cl}\n",
            "each name the member",
        ),
        (
            "hosts:\n  host1: {remote: cl, member: h1}\n  host2: {remote: cl, member: h1}\n",
            "both stand for member \"h1\"",
        ),
        (
            "hosts:\n  host1:\n    remote: cl\n    member: h1\n    profiles: [{name: p}]\n",
            "put them at the top of the file",
        ),
        (
            "hosts:\n  host1: {remote: cl, member: \"\"}\n",
            "empty member",
        ),
    ] {
        let e = Site::parse("s.yaml", text, "local")
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{text}: {e}");
        assert!(e.starts_with("s.yaml:"), "names the file and line: {e}");
    }
}
