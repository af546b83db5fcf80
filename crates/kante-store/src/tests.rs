//! Unit tests of the SQLite store: rows, migrations, pending creates.

use super::*;

fn instance(name: &str) -> InstanceRow {
    let mut config = kante_api::ConfigMap::new();
    config.insert("limits.memory".into(), "512MiB".into());
    let mut devices = kante_api::DevicesMap::new();
    devices.insert(
        "root".into(),
        [
            ("type".to_string(), "disk".to_string()),
            ("path".into(), "/".into()),
        ]
        .into(),
    );
    InstanceRow {
        name: name.into(),
        project: "default".into(),
        kind: "container".into(),
        architecture: "x86_64".into(),
        ephemeral: false,
        stateful: false,
        description: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: "1970-01-01T00:00:00Z".into(),
        config,
        devices,
        profiles: vec!["default".into()],
    }
}

fn image(fp: &str) -> ImageRow {
    ImageRow {
        fingerprint: fp.into(),
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
        uploaded_at: "t".into(),
        last_used_at: "t".into(),
        expires_at: "t".into(),
        update_source: Default::default(),
    }
}

#[test]
fn instances_round_trip_and_conflict() {
    let s = Store::open_in_memory().unwrap();
    s.instance_create(&instance("c1")).unwrap();
    assert!(matches!(
        s.instance_create(&instance("c1")),
        Err(StoreError::Conflict(_))
    ));
    let got = s.instance_get("c1").unwrap().unwrap();
    assert_eq!(got, instance("c1"));
    let mut upd = got.clone();
    upd.config.insert("user.x".into(), "y".into());
    s.instance_update(&upd).unwrap();
    assert_eq!(s.instance_get("c1").unwrap().unwrap().config["user.x"], "y");
    s.instance_rename("c1", "c2").unwrap();
    assert!(s.instance_get("c1").unwrap().is_none());
    assert_eq!(s.instance_names().unwrap(), vec!["c2"]);
    assert!(s.instance_delete("c2").unwrap());
    assert!(!s.instance_delete("c2").unwrap());
}

#[test]
fn image_prefix_lookup_and_alias_cascade() {
    let s = Store::open_in_memory().unwrap();
    s.image_create(&image("abcd1234")).unwrap();
    s.image_create(&image("abce9999")).unwrap();
    assert_eq!(
        s.image_get("abcd").unwrap().unwrap().fingerprint,
        "abcd1234"
    );
    assert!(matches!(s.image_get("abc"), Err(StoreError::Conflict(_))));
    assert!(s.image_get("ffff").unwrap().is_none());
    assert!(s.image_get("not-hex").unwrap().is_none());
    s.alias_create(&AliasRow {
        name: "debian/12".into(),
        target: "abcd1234".into(),
        description: String::new(),
    })
    .unwrap();
    assert!(s
        .alias_create(&AliasRow {
            name: "debian/12".into(),
            target: "abce9999".into(),
            description: String::new()
        })
        .is_err());
    assert!(s.image_delete("abcd1234").unwrap());
    assert!(s.alias_get("debian/12").unwrap().is_none());
}

#[test]
fn migrations_are_idempotent_on_disk() {
    let dir = std::env::temp_dir().join(format!("kstore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    {
        let s = Store::open(&path).unwrap();
        s.profile_create(&ProfileRow {
            name: "default".into(),
            description: "d".into(),
            config: Default::default(),
            devices: Default::default(),
        })
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), migrations::latest());
    assert_eq!(s.profile_list().unwrap().len(), 1);
    let mode: String = s
        .lock()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn server_config_replace() {
    let s = Store::open_in_memory().unwrap();
    let mut c = std::collections::BTreeMap::new();
    c.insert("core.https_address".to_string(), ":8443".to_string());
    s.config_replace(&c).unwrap();
    assert_eq!(s.config_all().unwrap(), c);
    s.config_replace(&Default::default()).unwrap();
    assert!(s.config_all().unwrap().is_empty());
}

#[test]
fn networks_round_trip() {
    let s = Store::open_in_memory().unwrap();
    let mut row = NetworkRow {
        name: "kantebr0".into(),
        kind: "bridge".into(),
        description: String::new(),
        config: Default::default(),
        ..Default::default()
    };
    row.config
        .insert("ipv4.address".into(), "10.1.2.1/24".into());
    s.network_create(&row).unwrap();
    assert!(matches!(
        s.network_create(&row),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.network_get("kantebr0").unwrap().unwrap(), row);
    row.config.insert("ipv4.nat".into(), "true".into());
    s.network_update(&row).unwrap();
    assert_eq!(s.network_list().unwrap()[0].config["ipv4.nat"], "true");
    assert!(s.network_delete("kantebr0").unwrap());
}

#[test]
fn snapshots_follow_their_instance() {
    let s = Store::open_in_memory().unwrap();
    s.instance_create(&instance("c1")).unwrap();
    let snap = |n: &str| SnapshotRow {
        instance: "c1".into(),
        name: n.into(),
        created_at: "t".into(),
        expires_at: "t".into(),
        stateful: false,
        architecture: "x86_64".into(),
        ephemeral: false,
        description: String::new(),
        config: Default::default(),
        devices: Default::default(),
        profiles: vec![],
    };
    s.snapshot_create(&snap("snap0")).unwrap();
    s.snapshot_create(&snap("snap1")).unwrap();
    assert!(matches!(
        s.snapshot_create(&snap("snap0")),
        Err(StoreError::Conflict(_))
    ));
    s.snapshot_rename("c1", "snap1", "before-upgrade").unwrap();
    s.instance_rename("c1", "c2").unwrap();
    let names: Vec<String> = s
        .snapshot_list("c2")
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["snap0", "before-upgrade"]);
    s.instance_delete("c2").unwrap();
    assert!(s.snapshot_list("c2").unwrap().is_empty());
}

#[test]
fn profile_rename_follows_into_instances_and_images() {
    let s = Store::open_in_memory().unwrap();
    let p = |name: &str| ProfileRow {
        name: name.into(),
        description: String::new(),
        config: Default::default(),
        devices: Default::default(),
    };
    s.profile_create(&p("web")).unwrap();
    s.profile_create(&p("db")).unwrap();
    let mut c1 = instance("c1");
    c1.profiles = vec!["default".into(), "web".into()];
    s.instance_create(&c1).unwrap();
    let mut img = image("abcd1234");
    img.profiles = vec!["web".into()];
    s.image_create(&img).unwrap();

    assert!(matches!(
        s.profile_rename("web", "db"),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.profile_rename("nope", "x"),
        Err(StoreError::NotFound(_))
    ));
    s.profile_rename("web", "frontend").unwrap();
    assert!(s.profile_get("web").unwrap().is_none());
    assert!(s.profile_get("frontend").unwrap().is_some());
    assert_eq!(
        s.instance_get("c1").unwrap().unwrap().profiles,
        vec!["default", "frontend"]
    );
    assert_eq!(
        s.image_get("abcd1234").unwrap().unwrap().profiles,
        vec!["frontend"]
    );
}

#[test]
fn pending_creations_are_marked_until_complete() {
    let s = Store::open_in_memory().unwrap();
    s.instance_create(&instance("done")).unwrap();
    s.instance_create_pending(&instance("c2")).unwrap();
    s.instance_create_pending(&instance("c1")).unwrap();
    // Pending or not, the name is taken and the record is an instance's.
    assert!(matches!(
        s.instance_create_pending(&instance("c1")),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.instance_get("c1").unwrap().unwrap(), instance("c1"));
    assert_eq!(s.instance_names().unwrap(), ["c1", "c2", "done"]);
    assert_eq!(s.instances_pending().unwrap(), ["c1", "c2"]);
    s.instance_created("c1").unwrap();
    assert_eq!(s.instances_pending().unwrap(), ["c2"]);
    // The mark follows a rename and goes with a delete.
    s.instance_rename("c2", "c3").unwrap();
    assert_eq!(s.instances_pending().unwrap(), ["c3"]);
    s.instance_delete("c3").unwrap();
    assert!(s.instances_pending().unwrap().is_empty());
    assert!(matches!(
        s.instance_created("gone"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn records_from_before_the_pending_mark_are_complete() {
    let dir = std::env::temp_dir().join(format!("kstore-v3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    {
        // A database of schema 3 with an instance in it.
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        for (i, sql) in migrations::MIGRATIONS.iter().take(3).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO instances (name, architecture, created_at, last_used_at)
             VALUES ('old', 'x86_64', '', '')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.instance_names().unwrap(), ["old"]);
    assert!(s.instances_pending().unwrap().is_empty());
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A row type of the tests' own, to show the generic table alone.
#[derive(Debug, Clone, PartialEq)]
struct Thing {
    group: String,
    name: String,
    size: i64,
    tags: Vec<String>,
}

impl Record for Thing {
    const TABLE: &'static str = "things";
    const ENTITY: &'static str = "Thing";
    const COLUMNS: &'static [&'static str] = &["grp", "name", "size", "tags"];
    const KEY: &'static [&'static str] = &["grp", "name"];
    const MUTABLE: &'static [&'static str] = &["tags"];
    const ORDER: &'static str = "name";

    fn label(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Result<Vec<rusqlite::types::Value>> {
        Ok(vec![
            self.group.clone().into(),
            self.name.clone().into(),
            self.size.into(),
            table::json(&self.tags)?,
        ])
    }

    fn from_row(r: &rusqlite::Row) -> Result<Self> {
        Ok(Thing {
            group: r.get(0)?,
            name: r.get(1)?,
            size: r.get(2)?,
            tags: table::from_json(r, 3)?,
        })
    }
}

#[test]
fn generic_table_derives_every_verb() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE things (grp TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
            tags TEXT NOT NULL, UNIQUE (grp, name))",
    )
    .unwrap();
    let t = |g: &str, n: &str| Thing {
        group: g.into(),
        name: n.into(),
        size: 1,
        tags: vec!["a".into()],
    };
    Table::insert(&conn, &t("g", "b")).unwrap();
    Table::insert(&conn, &t("g", "a")).unwrap();
    Table::insert(&conn, &t("h", "a")).unwrap();
    match Table::insert(&conn, &t("g", "a")) {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "Thing \"a\""),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(Table::get(&conn, &["g", "a"]).unwrap(), Some(t("g", "a")));
    assert_eq!(Table::<Thing>::get(&conn, &["g", "zz"]).unwrap(), None);
    let names: Vec<_> = Table::<Thing>::list_where(&conn, "grp", "g")
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["a", "b"]);

    // An update writes the mutable columns only.
    let mut changed = t("g", "a");
    changed.size = 99;
    changed.tags = vec!["x".into(), "y".into()];
    Table::update(&conn, &changed).unwrap();
    let got = Table::<Thing>::get(&conn, &["g", "a"]).unwrap().unwrap();
    assert_eq!((got.size, got.tags.len()), (1, 2));
    assert!(matches!(
        Table::update(&conn, &t("g", "nope")),
        Err(StoreError::NotFound(m)) if m == "Thing \"nope\""
    ));

    // Renames keep the other key columns and refuse a taken name.
    assert!(matches!(
        Table::<Thing>::rename(&conn, &["g", "a"], "b"),
        Err(StoreError::Conflict(m)) if m == "Thing \"b\""
    ));
    assert!(matches!(
        Table::<Thing>::rename(&conn, &["g", "gone"], "c"),
        Err(StoreError::NotFound(_))
    ));
    Table::<Thing>::rename(&conn, &["g", "a"], "c").unwrap();
    assert!(Table::<Thing>::get(&conn, &["h", "a"]).unwrap().is_some());
    assert_eq!(Table::<Thing>::names(&conn).unwrap(), ["a", "b", "c"]);

    assert!(Table::<Thing>::delete(&conn, &["g", "c"]).unwrap());
    assert!(!Table::<Thing>::delete(&conn, &["g", "c"]).unwrap());
    assert_eq!(Table::<Thing>::delete_where(&conn, "grp", "g").unwrap(), 1);
    assert_eq!(Table::<Thing>::list(&conn).unwrap(), [t("h", "a")]);
}
