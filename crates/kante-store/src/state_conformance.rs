//! The behaviour every [`SharedState`] implementation shares, as async
//! checks over an empty state: kante-store's tests run them against
//! [`crate::SqliteState`], kante-cluster's against its etcd-backed state
//! (feature `conformance`). Each check panics on the first difference.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{
    AliasRow, CertificateRow, ImageRow, NetworkRow, ProfileRow, ReservationKind, SharedState,
    StoreError,
};

/// Runs every check below on `s`, which must start empty. The checks use
/// disjoint names, so they can share one state.
pub async fn all<S: SharedState + ?Sized + 'static>(s: Arc<S>) {
    members(&*s).await;
    profiles(&*s).await;
    networks(&*s).await;
    images_and_aliases(&*s).await;
    server_config(&*s).await;
    certificates(&*s).await;
    reservations(&*s).await;
    concurrent_reservations(s.clone()).await;
}

pub fn profile(name: &str, description: &str) -> ProfileRow {
    ProfileRow {
        name: name.into(),
        description: description.into(),
        config: [("limits.cpu".to_string(), "1".to_string())].into(),
        devices: Default::default(),
    }
}

pub fn image(fingerprint: &str, uploaded_at: &str) -> ImageRow {
    ImageRow {
        fingerprint: fingerprint.into(),
        filename: "x.tar.zst".into(),
        size: 1,
        architecture: "x86_64".into(),
        kind: "container".into(),
        public: false,
        auto_update: false,
        cached: false,
        properties: Default::default(),
        profiles: vec!["default".into()],
        created_at: "t".into(),
        uploaded_at: uploaded_at.into(),
        last_used_at: "t".into(),
        expires_at: "t".into(),
        update_source: Default::default(),
    }
}

fn alias(name: &str, target: &str) -> AliasRow {
    AliasRow {
        name: name.into(),
        target: target.into(),
        description: String::new(),
    }
}

fn conflict<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    match r {
        Err(StoreError::Conflict(m)) => assert_eq!(m, what),
        other => panic!("expected a conflict on {what}, got {other:?}"),
    }
}

fn not_found<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    match r {
        Err(StoreError::NotFound(m)) => assert_eq!(m, what),
        other => panic!("expected {what} not found, got {other:?}"),
    }
}

/// The local member is one of the members.
pub async fn members<S: SharedState + ?Sized>(s: &S) {
    let me = s.local_member().await.unwrap();
    assert!(s.members().await.unwrap().contains(&me));
}

/// Create, conflict, get, list by name, update, rename (following into
/// images' profile lists), delete.
pub async fn profiles<S: SharedState + ?Sized>(s: &S) {
    assert!(s.profile_list().await.unwrap().is_empty());
    s.profile_create(&profile("web", "a")).await.unwrap();
    s.profile_create(&profile("db", "")).await.unwrap();
    conflict(
        s.profile_create(&profile("web", "b")).await,
        "Profile \"web\"",
    );
    assert_eq!(
        s.profile_get("web").await.unwrap(),
        Some(profile("web", "a"))
    );
    assert!(s.profile_get("nope").await.unwrap().is_none());
    let names: Vec<_> = s.profile_list().await.unwrap();
    assert_eq!(names, [profile("db", ""), profile("web", "a")]);

    let mut edited = profile("web", "edited");
    edited.devices.insert(
        "eth0".into(),
        [("type".to_string(), "nic".to_string())].into(),
    );
    s.profile_update(&edited).await.unwrap();
    assert_eq!(s.profile_get("web").await.unwrap(), Some(edited.clone()));
    not_found(
        s.profile_update(&profile("nope", "")).await,
        "Profile \"nope\"",
    );

    let mut img = image("ee01", "2026-01-01");
    img.profiles = vec!["default".into(), "web".into()];
    s.image_create(&img).await.unwrap();
    conflict(s.profile_rename("web", "db").await, "Profile \"db\"");
    not_found(s.profile_rename("nope", "x").await, "Profile \"nope\"");
    s.profile_rename("web", "frontend").await.unwrap();
    assert!(s.profile_get("web").await.unwrap().is_none());
    let renamed = s.profile_get("frontend").await.unwrap().unwrap();
    assert_eq!(renamed.description, "edited");
    assert_eq!(renamed.devices, edited.devices);
    assert_eq!(
        s.image_get("ee01").await.unwrap().unwrap().profiles,
        ["default", "frontend"]
    );
    assert!(s.image_delete("ee01").await.unwrap());

    assert!(s.profile_delete("frontend").await.unwrap());
    assert!(!s.profile_delete("frontend").await.unwrap());
    assert!(s.profile_delete("db").await.unwrap());
    assert!(s.profile_list().await.unwrap().is_empty());
}

/// Create, conflict, get, list by name, an update that rewrites only
/// description, config, status and members, delete.
pub async fn networks<S: SharedState + ?Sized>(s: &S) {
    let net = |name: &str, kind: &str| NetworkRow {
        name: name.into(),
        kind: kind.into(),
        description: String::new(),
        config: [("ipv4.address".to_string(), "10.1.2.1/24".to_string())].into(),
        ..Default::default()
    };
    s.network_create(&net("kbr1", "bridge")).await.unwrap();
    s.network_create(&net("kbr0", "bridge")).await.unwrap();
    conflict(
        s.network_create(&net("kbr0", "macvlan")).await,
        "Network \"kbr0\"",
    );
    assert_eq!(
        s.network_get("kbr0").await.unwrap(),
        Some(net("kbr0", "bridge"))
    );
    let mut edited = net("kbr0", "macvlan");
    edited.description = "lan".into();
    edited.config.insert("ipv4.nat".into(), "true".into());
    s.network_update(&edited).await.unwrap();
    let got = s.network_get("kbr0").await.unwrap().unwrap();
    assert_eq!(got.kind, "bridge", "the type is not an update's to change");
    assert_eq!(got.description, "lan");
    assert_eq!(got.config["ipv4.nat"], "true");
    // A cluster's status and members' own keys are rewritten by an update.
    let mut pending = got.clone();
    pending.status = "Pending".into();
    pending.members.insert(
        "h2".into(),
        [("bridge.external_interfaces".to_string(), "eth1".to_string())].into(),
    );
    s.network_update(&pending).await.unwrap();
    assert_eq!(s.network_get("kbr0").await.unwrap(), Some(pending));
    not_found(
        s.network_update(&net("nope", "bridge")).await,
        "Network \"nope\"",
    );
    let names: Vec<_> = s
        .network_list()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["kbr0", "kbr1"]);
    assert!(s.network_delete("kbr0").await.unwrap());
    assert!(!s.network_delete("kbr0").await.unwrap());
    assert!(s.network_delete("kbr1").await.unwrap());
    assert!(s.network_get("kbr1").await.unwrap().is_none());
}

/// Images: by fingerprint or unique prefix, listed by upload time, updates
/// that rewrite only their mutable fields. Aliases: create, conflict,
/// update, rename, delete, and going with their image.
pub async fn images_and_aliases<S: SharedState + ?Sized>(s: &S) {
    s.image_create(&image("abcd1234", "2026-01-03"))
        .await
        .unwrap();
    s.image_create(&image("abce9999", "2026-01-01"))
        .await
        .unwrap();
    s.image_create(&image("0123", "2026-01-02")).await.unwrap();
    conflict(
        s.image_create(&image("abcd1234", "x")).await,
        "Image \"abcd1234\"",
    );
    let fp = |r: Option<ImageRow>| r.map(|r| r.fingerprint);
    assert_eq!(
        fp(s.image_get("abcd1234").await.unwrap()).unwrap(),
        "abcd1234"
    );
    assert_eq!(fp(s.image_get("abcd").await.unwrap()).unwrap(), "abcd1234");
    assert_eq!(fp(s.image_get("ABCE").await.unwrap()).unwrap(), "abce9999");
    conflict(
        s.image_get("abc").await,
        "More than one image matches \"abc\"",
    );
    assert!(s.image_get("ffff").await.unwrap().is_none());
    assert!(s.image_get("not-hex").await.unwrap().is_none());
    assert!(s.image_get("").await.unwrap().is_none());
    let order: Vec<_> = s
        .image_list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.fingerprint)
        .collect();
    assert_eq!(order, ["abce9999", "0123", "abcd1234"]);

    let mut edited = image("abcd1234", "changed");
    edited.public = true;
    edited.size = 999;
    edited.properties.insert("os".into(), "debian".into());
    edited.last_used_at = "later".into();
    s.image_update(&edited).await.unwrap();
    let got = s.image_get("abcd1234").await.unwrap().unwrap();
    assert!(got.public);
    assert_eq!(got.properties["os"], "debian");
    assert_eq!(got.last_used_at, "later");
    assert_eq!(got.size, 1, "the size is not an update's to change");
    assert_eq!(got.uploaded_at, "2026-01-03");
    not_found(s.image_update(&image("ffff", "t")).await, "Image \"ffff\"");

    s.alias_create(&alias("debian/12", "abcd1234"))
        .await
        .unwrap();
    s.alias_create(&alias("alpine", "abce9999")).await.unwrap();
    conflict(
        s.alias_create(&alias("debian/12", "abce9999")).await,
        "Alias \"debian/12\"",
    );
    assert!(
        s.alias_create(&alias("orphan", "ffff")).await.is_err(),
        "an alias needs its image"
    );
    assert!(s.alias_get("orphan").await.unwrap().is_none());
    assert_eq!(
        s.alias_get("debian/12").await.unwrap(),
        Some(alias("debian/12", "abcd1234"))
    );
    let mut moved = alias("alpine", "0123");
    moved.description = "small".into();
    s.alias_update(&moved).await.unwrap();
    assert_eq!(s.alias_get("alpine").await.unwrap(), Some(moved));
    not_found(
        s.alias_update(&alias("nope", "0123")).await,
        "Alias \"nope\"",
    );
    conflict(
        s.alias_rename("alpine", "debian/12").await,
        "Alias \"debian/12\"",
    );
    not_found(s.alias_rename("nope", "x").await, "Alias \"nope\"");
    s.alias_rename("alpine", "alpine/3").await.unwrap();
    let names: Vec<_> = s
        .alias_list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["alpine/3", "debian/12"]);
    assert!(s.alias_delete("alpine/3").await.unwrap());
    assert!(!s.alias_delete("alpine/3").await.unwrap());

    assert!(s.image_delete("abcd1234").await.unwrap());
    assert!(!s.image_delete("abcd1234").await.unwrap());
    assert!(s.alias_get("debian/12").await.unwrap().is_none());
    assert!(s.alias_list().await.unwrap().is_empty());
    assert!(s.image_delete("abce9999").await.unwrap());
    assert!(s.image_delete("0123").await.unwrap());
    assert!(s.image_list().await.unwrap().is_empty());
}

/// The server config is replaced whole.
pub async fn server_config<S: SharedState + ?Sized>(s: &S) {
    assert!(s.config_all().await.unwrap().is_empty());
    let mut c = BTreeMap::new();
    c.insert("core.https_address".to_string(), ":8443".to_string());
    c.insert("images.auto_update_interval".to_string(), "0".to_string());
    s.config_replace(&c).await.unwrap();
    assert_eq!(s.config_all().await.unwrap(), c);
    c.remove("core.https_address");
    s.config_replace(&c).await.unwrap();
    assert_eq!(s.config_all().await.unwrap(), c);
    s.config_replace(&BTreeMap::new()).await.unwrap();
    assert!(s.config_all().await.unwrap().is_empty());
}

/// Create, conflict, get, list by fingerprint, an update that keeps the
/// certificate itself, delete.
pub async fn certificates<S: SharedState + ?Sized>(s: &S) {
    assert!(s.certificate_list().await.unwrap().is_empty());
    let cert = |fp: &str| CertificateRow {
        fingerprint: fp.into(),
        kind: "client".into(),
        name: "admin".into(),
        certificate: "-----BEGIN CERTIFICATE-----".into(),
        restricted: false,
        description: String::new(),
        projects: vec![],
    };
    s.certificate_create(&cert("abcd")).await.unwrap();
    s.certificate_create(&cert("0bcd")).await.unwrap();
    conflict(
        s.certificate_create(&cert("abcd")).await,
        "Certificate \"abcd\"",
    );
    assert_eq!(s.certificate_get("abcd").await.unwrap(), Some(cert("abcd")));
    let edited = CertificateRow {
        name: "ops".into(),
        kind: "metrics".into(),
        restricted: true,
        projects: vec!["default".into()],
        description: "d".into(),
        certificate: "other".into(),
        ..cert("abcd")
    };
    s.certificate_update(&edited).await.unwrap();
    assert_eq!(
        s.certificate_get("abcd").await.unwrap(),
        Some(CertificateRow {
            certificate: "-----BEGIN CERTIFICATE-----".into(),
            ..edited
        })
    );
    not_found(
        s.certificate_update(&cert("ffff")).await,
        "Certificate \"ffff\"",
    );
    let fps: Vec<_> = s
        .certificate_list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.fingerprint)
        .collect();
    assert_eq!(fps, ["0bcd", "abcd"]);
    assert!(s.certificate_delete("abcd").await.unwrap());
    assert!(!s.certificate_delete("abcd").await.unwrap());
    assert!(s.certificate_get("abcd").await.unwrap().is_none());
    assert!(s.certificate_delete("0bcd").await.unwrap());
}

/// A held key is a conflict, even for its holder; kinds are separate
/// spaces; only the holder releases or transfers; listings by key.
pub async fn reservations<S: SharedState + ?Sized>(s: &S) {
    let k = ReservationKind::IdBlock;
    assert!(s.reservations(k).await.unwrap().is_empty());
    s.reserve(k, "1065536", "c1").await.unwrap();
    conflict(s.reserve(k, "1065536", "c1").await, "Id block \"1065536\"");
    conflict(s.reserve(k, "1065536", "c2").await, "Id block \"1065536\"");
    s.reserve(ReservationKind::InstanceName, "1065536", "c2")
        .await
        .unwrap();
    s.reserve(ReservationKind::Address, "kbr0/10.1.2.3", "c2")
        .await
        .unwrap();
    conflict(
        s.reserve(ReservationKind::Address, "kbr0/10.1.2.3", "c3")
            .await,
        "Address \"kbr0/10.1.2.3\"",
    );
    assert!(!s.release(k, "1065536", "c2").await.unwrap());
    assert!(!s.release(k, "nope", "c1").await.unwrap());
    assert!(s.transfer(k, "1065536", "c1", "c3").await.unwrap());
    assert!(!s.transfer(k, "1065536", "c1", "c4").await.unwrap());
    assert!(!s.transfer(k, "nope", "c1", "c4").await.unwrap());
    assert!(s.release(k, "1065536", "c3").await.unwrap());
    s.reserve(k, "1065536", "c2").await.unwrap();
    s.reserve(k, "1000000", "c5").await.unwrap();
    let held: Vec<_> = s.reservations(k).await.unwrap().into_iter().collect();
    assert_eq!(
        held,
        [
            ("1000000".to_string(), "c5".to_string()),
            ("1065536".to_string(), "c2".to_string())
        ]
    );
    let names = s.reservations(ReservationKind::InstanceName).await.unwrap();
    assert_eq!(names.get("1065536").map(String::as_str), Some("c2"));
    for (kind, key, holder) in [
        (k, "1065536", "c2"),
        (k, "1000000", "c5"),
        (ReservationKind::InstanceName, "1065536", "c2"),
        (ReservationKind::Address, "kbr0/10.1.2.3", "c2"),
    ] {
        assert!(s.release(kind, key, holder).await.unwrap());
    }
}

/// Of 16 concurrent takers of one name exactly one wins, and holds it.
pub async fn concurrent_reservations<S: SharedState + ?Sized + 'static>(s: Arc<S>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.reserve(ReservationKind::InstanceName, "race", &format!("m{i}"))
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => won.push(format!("m{i}")),
            Err(StoreError::Conflict(m)) => assert_eq!(m, "Instance \"race\""),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let held = s.reservations(ReservationKind::InstanceName).await.unwrap();
    assert_eq!(held.get("race"), Some(&won[0]));
    assert!(s
        .release(ReservationKind::InstanceName, "race", &won[0])
        .await
        .unwrap());
}
