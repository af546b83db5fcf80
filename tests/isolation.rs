//! `security.idmap.isolated`: an isolated instance gets a host id block of
//! its own (disjoint from the shared one and from every other isolated
//! instance, a copy included), kept across restarts and given back when
//! isolation is turned off. Storage stays unshifted: what the guest writes
//! is uid 0 on disk whichever block it runs with.

use kante_integration::{kante_ok, Daemon, TestImage};

/// The host uid that container uid 0 maps to, read from outside.
fn host_root_of(pid: i32) -> u32 {
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let f: Vec<u32> = map.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!((f[0], f[2]), (0, 65536), "uid_map {map}");
    f[1]
}

/// The uid a process runs as on the host (first field of `Uid:`).
fn host_uid_of_process(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn base_of(d: &Daemon, name: &str) -> u32 {
    let i = d.client.instance(name).await.unwrap();
    i.config["volatile.idmap.base"].parse().unwrap()
}

#[test]
fn isolated_instances_get_disjoint_id_blocks() {
    kante_integration::run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "shared", &[]).await;
        d.launch(&fp, "iso", &[("security.idmap.isolated", "true")])
            .await;
        kante_ok(&d, &["copy", "iso", "iso2"]);
        kante_ok(&d, &["start", "iso2"]);

        let shared = host_root_of(d.init_pid("shared").await);
        let iso = host_root_of(d.init_pid("iso").await);
        let iso2 = host_root_of(d.init_pid("iso2").await);
        let mut all = [shared, iso, iso2];
        all.sort_unstable();
        assert!(
            all.windows(2).all(|w| w[1] - w[0] >= 65536),
            "overlapping blocks: shared {shared}, iso {iso}, iso2 {iso2}"
        );
        assert_eq!(base_of(&d, "shared").await, shared);
        assert_eq!(base_of(&d, "iso").await, iso);
        assert_eq!(
            base_of(&d, "iso2").await,
            iso2,
            "the copy got a block of its own"
        );
        assert_eq!(host_uid_of_process(d.init_pid("iso").await), iso);
        let current = &d.client.instance("iso").await.unwrap().config["volatile.idmap.current"];
        assert!(current.contains(&format!("\"Hostid\":{iso}")), "{current}");

        // What the isolated guest writes is uid 0 on disk.
        kante_ok(
            &d,
            &["exec", "iso", "--", "sh", "-c", "echo x > /root-file"],
        );
        let on_disk = d
            .dir
            .join("storage-pools/default/containers/iso/rootfs/root-file");
        let md = std::fs::metadata(&on_disk).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((md.uid(), md.gid()), (0, 0), "{}", on_disk.display());

        // A restart keeps the block; turning isolation off gives it back.
        kante_ok(&d, &["restart", "iso", "--force"]);
        assert_eq!(host_root_of(d.init_pid("iso").await), iso);
        kante_ok(&d, &["stop", "iso", "--force"]);
        kante_ok(
            &d,
            &["config", "set", "iso", "security.idmap.isolated", "false"],
        );
        kante_ok(&d, &["start", "iso"]);
        assert_eq!(host_root_of(d.init_pid("iso").await), shared);
        let out = kante_ok(&d, &["exec", "iso", "--", "cat", "/root-file"]);
        assert_eq!(out.trim(), "x", "the file survives the move between blocks");

        // A freed block is handed out again: the lowest free one.
        kante_ok(&d, &["stop", "iso2", "--force"]);
        kante_ok(
            &d,
            &["config", "set", "iso", "security.idmap.isolated", "true"],
        );
        kante_ok(&d, &["restart", "iso", "--force"]);
        let again = host_root_of(d.init_pid("iso").await);
        assert_ne!(again, iso2, "iso2 still holds its block while stopped");
        assert_eq!(again, iso, "the lowest free block: the one iso had");
        d.shutdown().await;
    });
}
