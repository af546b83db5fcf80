//! Cluster mode on the lab (`Lab::up(3)`): `kante cluster enable` on h1,
//! `add`/`join` for h2 and h3 make a 3-member cluster whose shared state
//! is etcd (one supervised etcd voter per host, TLS with client
//! certificates). Seen from outside: `kante cluster list` and Debian's
//! `lxc cluster list` on any host show 3 ONLINE members with the database
//! role; a profile made on h1 is seen on h3; a killed kanted is shown
//! OFFLINE within its lease's TTL and ONLINE again once restarted. Bad
//! input (a wrong, reused or unreachable token, a taken member name, an
//! instance name the cluster already has, removing a member that holds
//! instances) fails with one line and leaves the host as it was, and
//! `kante lab down` leaves nothing, etcd included. A bridge defined per
//! member (`network create --target hN bridge.external_interfaces=kxN`,
//! by kante and Debian's lxc, then the create without a target) enslaves
//! each host's own interface in its namespace; `network show --target`
//! shows each member's keys, `network set --target` changes one member's
//! (applied there), a global `network set` reaches every member, LXD's
//! refusals hold, and a delete leaves no bridge.

use std::process::{Command, Stdio};
use std::time::Duration;

use kante_integration::cluster::{
    await_state, down_and_check, etcd_pids, lxc as lxc_on, members, on, refused, restart_kanted,
    text, token,
};
use kante_integration::lab::Lab;
use kante_integration::{instance_post, run, TestImage};

/// Whether host i's daemon says it is clustered.
fn clustered(lab: &Lab, i: u32) -> bool {
    lab.host_kante(i, &["cluster", "list", "-f", "csv"])
        .status
        .success()
}

#[test]
fn three_hosts_make_a_cluster_on_etcd() {
    run(async {
        let mut lab = Lab::up(3);
        // Standalone instances: h2's "keep" must survive its join; h3's
        // "dup" clashes with h1's.
        for (i, name) in [(1, "dup"), (2, "keep"), (3, "dup")] {
            let fp = lab.import(i, TestImage::Busybox).await;
            lab.client(i)
                .create_instance(&instance_post(&fp, name, &[], Default::default()))
                .await
                .unwrap_or_else(|e| panic!("creating {name} on h{i}: {e}"));
        }

        // Bad input before a cluster exists.
        let e = refused(&lab, 2, &["cluster", "join", "not-a-token"]);
        assert!(e.contains("Invalid join token"), "{e}");
        let e = refused(&lab, 2, &["cluster", "add", "h3"]);
        assert!(e.contains("not clustered"), "{e}");
        let e = refused(&lab, 2, &["network", "create", "kn0", "--target", "h2"]);
        assert!(e.contains("Target only allowed when clustered"), "{e}");

        on(&lab, 1, &["cluster", "enable", "h1"]);
        let e = refused(&lab, 1, &["cluster", "enable", "h1"]);
        assert!(e.contains("already clustered"), "{e}");
        assert_eq!(etcd_pids(&lab, 1).len(), 1, "h1 runs one etcd");

        // A token whose secret is wrong: refused, h2 stays standalone.
        let good = token(&lab, 1, "h2");
        let mut t: serde_json::Value =
            serde_json::from_slice(&kante_tls::decode_base64(good.as_bytes()).unwrap()).unwrap();
        t["secret"] = "00".repeat(32).into();
        let wrong = kante_tls::encode_base64(&serde_json::to_vec(&t).unwrap());
        let e = refused(&lab, 2, &["cluster", "join", &wrong]);
        assert!(e.contains("Invalid, expired or used join token"), "{e}");
        // A token naming an address where no member listens.
        t["addresses"] = serde_json::json!([format!("{}:9", lab.address(1))]);
        let unreachable = kante_tls::encode_base64(&serde_json::to_vec(&t).unwrap());
        let e = refused(&lab, 2, &["cluster", "join", &unreachable]);
        assert!(e.contains("Could not reach the cluster"), "{e}");
        assert!(!clustered(&lab, 2));
        assert!(!lab.state(2).join("cluster").exists());
        assert!(etcd_pids(&lab, 2).is_empty());

        // The right token: h2 joins with its instance.
        on(&lab, 2, &["cluster", "join", &good]);
        // (The list is the cluster's now: h1's "dup" is in it too.)
        let listed = on(&lab, 2, &["list", "-f", "csv", "-c", "nL"]);
        assert!(
            listed.lines().any(|l| l == "keep,h2"),
            "h2 lost its instance: {listed}"
        );
        // Spent: the same token again is refused (h3 tries it).
        let e = refused(&lab, 3, &["cluster", "join", &good]);
        assert!(e.contains("Invalid, expired or used join token"), "{e}");
        // A taken name.
        let e = refused(&lab, 1, &["cluster", "add", "h2"]);
        assert!(e.contains("already in the cluster"), "{e}");

        // h3's "dup" clashes with h1's: refused with the name; then
        // renamed away, the same (unspent) token works.
        let t3 = token(&lab, 2, "h3");
        let e = refused(&lab, 3, &["cluster", "join", &t3]);
        assert!(
            e.contains("Instance names already used in the cluster: dup"),
            "{e}"
        );
        assert!(!clustered(&lab, 3));
        on(&lab, 3, &["rename", "dup", "dup3"]);
        on(&lab, 3, &["cluster", "join", &t3]);

        // Three ONLINE voters, from any host, by kante and by lxc.
        for i in 1..=3 {
            await_state(&lab, i, "h3", "ONLINE", Duration::from_secs(15));
            let m = members(&lab, i);
            let names: Vec<&str> = m.iter().map(|x| x.name.as_str()).collect();
            assert_eq!(names, ["h1", "h2", "h3"], "{m:?}");
            for (j, row) in (1..=3).zip(&m) {
                assert_eq!(row.url, format!("https://{}:8443", lab.address(j)), "{m:?}");
                assert_eq!(row.roles, "database", "{m:?}");
                assert_eq!(row.state, "ONLINE", "{m:?}");
            }
        }
        for i in 1..=3 {
            assert_eq!(etcd_pids(&lab, i).len(), 1, "h{i} runs one etcd");
        }
        let lxc_home = tempfile::tempdir().unwrap();
        let lxc = Command::new("lxc")
            .args(["cluster", "list", "-f", "csv"])
            .env("LXD_DIR", lab.state(3))
            .env("LXD_CONF", lxc_home.path().join("conf"))
            .env("HOME", lxc_home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = text(&lxc);
        assert!(lxc.status.success(), "lxc cluster list: {out}");
        for j in 1..=3 {
            let row = out
                .lines()
                .find(|l| l.starts_with(&format!("h{j},")))
                .unwrap_or_else(|| panic!("h{j} not in lxc's list: {out}"));
            assert!(row.contains("ONLINE") && row.contains("database"), "{out}");
        }

        // Shared state: a profile made on h1 is on h3.
        on(&lab, 1, &["profile", "create", "shared-web"]);
        on(&lab, 1, &["profile", "set", "shared-web", "user.tier=web"]);
        let got = on(&lab, 3, &["profile", "show", "shared-web"]);
        assert!(got.contains("user.tier: web"), "{got}");

        networks_per_member(&lab, lxc_home.path());

        // h2 holds "keep": removing it without --force is refused, naming it.
        let e = refused(&lab, 1, &["cluster", "remove", "h2"]);
        assert!(e.contains("keep") && e.contains("--force"), "{e}");
        assert!(members(&lab, 1).iter().any(|m| m.name == "h2"));

        // h3's kanted killed: OFFLINE within the lease's TTL (10 s, plus
        // a heartbeat and the watch), then ONLINE again once restarted.
        let pid = lab.pid(3);
        // SAFETY: a kill of the lab's own daemon.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let took = await_state(&lab, 1, "h3", "OFFLINE", Duration::from_secs(20));
        assert!(took < Duration::from_secs(16), "offline after {took:?}");
        // Still a quorum (h1, h2): cluster writes go on.
        on(&lab, 2, &["profile", "create", "while-h3-away"]);
        let h3 = restart_kanted(&lab, 3);
        await_state(&lab, 1, "h3", "ONLINE", Duration::from_secs(20));
        let got = on(&lab, 3, &["profile", "list", "-f", "csv"]);
        assert!(got.contains("while-h3-away"), "h3 did not catch up: {got}");

        down_and_check(&mut lab, vec![h3]);
    });
}

/// `ip ARGS` in host i's network namespace: its stdout, or why it failed.
fn ip(lab: &Lab, i: u32, args: &[&str]) -> Result<String, String> {
    let o = Command::new("ip")
        .arg("-n")
        .arg(lab.netns(i))
        .args(args)
        .output()
        .unwrap();
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(text(&o))
    }
}

/// The bridge host i's interface `dev` is enslaved to, if any.
/// `bridge.external_interfaces` of kn0 on `member`, asked through host i.
fn external_interfaces(lab: &Lab, i: u32, member: &str) -> String {
    on(
        lab,
        i,
        &[
            "network",
            "get",
            "kn0",
            "bridge.external_interfaces",
            "--target",
            member,
        ],
    )
}

fn master_of(lab: &Lab, i: u32, dev: &str) -> Option<String> {
    let out = ip(lab, i, &["-o", "link", "show", dev]).unwrap();
    let words: Vec<&str> = out.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "master")?;
    words.get(at + 1).map(|m| m.to_string())
}

/// Debian's lxc on host i must succeed; its stdout.
fn lxc_ok(lab: &Lab, i: u32, home: &std::path::Path, args: &[&str]) -> String {
    let o = lxc_on(lab, i, home, args);
    assert!(o.status.success(), "h{i}: lxc {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Debian's lxc on host i must fail; its stderr.
fn lxc_refused(lab: &Lab, i: u32, home: &std::path::Path, args: &[&str]) -> String {
    let o = lxc_on(lab, i, home, args);
    assert!(!o.status.success(), "h{i}: lxc {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The cluster's STATE of network `name` in lxc's list on host i.
fn lxc_state(lab: &Lab, i: u32, home: &std::path::Path, name: &str) -> String {
    let out = lxc_ok(lab, i, home, &["network", "list", "-f", "csv"]);
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("{name},")))
        .unwrap_or_else(|| panic!("{name} not in lxc's list: {out}"));
    row.rsplit(',').next().unwrap_or_default().to_string()
}

/// A bridge with one external interface per member (`kxN`, a veth made
/// in host N's namespace): defined member by member, created once,
/// checked on each host, one member's key changed, deleted everywhere.
fn networks_per_member(lab: &Lab, home: &std::path::Path) {
    // A veth pair per interface (the lab's kernel may lack `dummy`).
    let veth = |i: u32, name: &str| {
        let peer = format!("{name}p");
        ip(
            lab,
            i,
            &["link", "add", name, "type", "veth", "peer", "name", &peer],
        )
        .unwrap();
    };
    for i in 1..=3 {
        veth(i, &format!("kx{i}"));
    }
    veth(2, "kx2b");
    let ext = |i: u32| format!("bridge.external_interfaces=kx{i}");

    on(
        lab,
        1,
        &["network", "create", "kn0", "--target", "h1", &ext(1)],
    );
    lxc_ok(
        lab,
        1,
        home,
        &["network", "create", "kn0", "--target", "h2", &ext(2)],
    );
    assert_eq!(lxc_state(lab, 3, home, "kn0"), "PENDING");
    // LXD's refusals: a global key with --target, a member key without,
    // a create before every member is defined, a member defined twice.
    let e = refused(
        lab,
        2,
        &[
            "network",
            "create",
            "kn0",
            "--target",
            "h3",
            "ipv4.nat=true",
        ],
    );
    assert!(
        e.contains(r#"Config key "ipv4.nat" may not be used as member-specific key"#),
        "{e}"
    );
    let e = refused(lab, 2, &["network", "create", "kn0", &ext(2)]);
    assert!(
        e.contains(r#"Config key "bridge.external_interfaces" is cluster member specific"#),
        "{e}"
    );
    let e = refused(lab, 2, &["network", "create", "kn0"]);
    assert!(e.contains("Network not defined on nodes: h3"), "{e}");
    let e = lxc_refused(
        lab,
        3,
        home,
        &["network", "create", "kn0", "--target", "h1", &ext(1)],
    );
    assert!(
        e.contains(r#"The network is already defined on member "h1""#),
        "{e}"
    );
    assert!(
        ip(lab, 1, &["link", "show", "kn0"]).is_err(),
        "made while pending"
    );

    on(
        lab,
        2,
        &["network", "create", "kn0", "--target", "h3", &ext(3)],
    );
    let global = [
        "network",
        "create",
        "kn0",
        "ipv4.address=10.77.0.1/24",
        "ipv4.nat=false",
        "ipv6.address=none",
    ];
    lxc_ok(lab, 3, home, &global);
    assert_eq!(lxc_state(lab, 1, home, "kn0"), "CREATED");
    // Each host's bridge holds its own interface (the others' are not
    // in its namespace), with the global address.
    for i in 1..=3 {
        let own = format!("kx{i}");
        assert_eq!(master_of(lab, i, &own), Some("kn0".into()), "h{i}");
        let ports = ip(lab, i, &["-o", "link", "show", "master", "kn0"]).unwrap();
        assert_eq!(ports.lines().count(), 1, "h{i}: {ports}");
        assert!(ports.contains(&format!("kx{i}@")), "h{i}: {ports}");
        let addr = ip(lab, i, &["-o", "-4", "addr", "show", "dev", "kn0"]).unwrap();
        assert!(addr.contains("10.77.0.1/24"), "h{i}: {addr}");
    }
    assert_eq!(master_of(lab, 2, "kx2b"), None);
    // Each member's view, from any member, by lxc and kante.
    for (i, by) in [(1, 3), (2, 1), (3, 2)] {
        let shown = lxc_ok(
            lab,
            by,
            home,
            &["network", "show", "kn0", "--target", &format!("h{i}")],
        );
        assert!(
            shown.contains(&format!("bridge.external_interfaces: kx{i}")),
            "{shown}"
        );
        assert!(shown.contains("ipv4.address: 10.77.0.1/24"), "{shown}");
        let got = external_interfaces(lab, by, &format!("h{i}"));
        assert_eq!(got.trim(), format!("kx{i}"));
    }
    let global_view = lxc_ok(lab, 2, home, &["network", "show", "kn0"]);
    assert!(
        !global_view.contains("external_interfaces"),
        "{global_view}"
    );
    assert!(
        global_view.contains("ipv4.address: 10.77.0.1/24"),
        "{global_view}"
    );

    // One member's key changed (by lxc through h1): applied on h2 only.
    lxc_ok(
        lab,
        1,
        home,
        &[
            "network",
            "set",
            "kn0",
            "bridge.external_interfaces=kx2b",
            "--target",
            "h2",
        ],
    );
    assert_eq!(master_of(lab, 2, "kx2b"), Some("kn0".into()));
    assert_eq!(master_of(lab, 2, "kx2"), None, "kx2 still enslaved");
    assert_eq!(master_of(lab, 1, "kx1"), Some("kn0".into()));
    let got = external_interfaces(lab, 3, "h2");
    assert_eq!(got.trim(), "kx2b");
    let e = lxc_refused(
        lab,
        1,
        home,
        &["network", "set", "kn0", "ipv4.nat=true", "--target", "h2"],
    );
    assert!(
        e.contains(r#"Config key "ipv4.nat" may not be used as member-specific key"#),
        "{e}"
    );
    let e = refused(
        lab,
        3,
        &["network", "set", "kn0", "bridge.external_interfaces=kx3"],
    );
    assert!(
        e.contains(r#"Config key "bridge.external_interfaces" is cluster member specific"#),
        "{e}"
    );
    // A global key changed without a target (by lxc through h3) reaches
    // every member, each keeping its own interface.
    lxc_ok(
        lab,
        3,
        home,
        &["network", "set", "kn0", "ipv4.address=10.78.0.1/24"],
    );
    for (i, own) in [(1, "kx1"), (2, "kx2b"), (3, "kx3")] {
        let addr = ip(lab, i, &["-o", "-4", "addr", "show", "dev", "kn0"]).unwrap();
        assert!(
            addr.contains("10.78.0.1/24") && !addr.contains("10.77."),
            "h{i}: {addr}"
        );
        assert_eq!(master_of(lab, i, own), Some("kn0".into()), "h{i}");
    }
    let got = external_interfaces(lab, 2, "h2");
    assert_eq!(got.trim(), "kx2b");

    // Deleted through h2: no bridge left on any host, no record anywhere.
    on(lab, 2, &["network", "delete", "kn0"]);
    for i in 1..=3 {
        assert!(
            ip(lab, i, &["link", "show", "kn0"]).is_err(),
            "h{i} kept kn0"
        );
        let listed = on(lab, i, &["network", "list", "-f", "csv"]);
        assert!(!listed.contains("kn0"), "h{i}: {listed}");
        ip(lab, i, &["link", "del", &format!("kx{i}")]).unwrap();
    }
    ip(lab, 2, &["link", "del", "kx2b"]).unwrap();
}
