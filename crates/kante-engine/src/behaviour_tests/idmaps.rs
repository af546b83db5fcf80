//! Which host ids a start maps a guest to: the shared block, a block of
//! its own for `security.idmap.isolated` (kept across restarts, until the
//! range is used up), none for privileged guests.

use crate::testing::{self, TestHost, TEST_ID_BLOCKS};

use super::config;

#[tokio::test]
async fn guests_share_block_zero_by_default() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.launch(&engine, "c1", "img").await;
    let map = host.runtime.spec("c1").unwrap().idmap.unwrap();
    assert_eq!((map.host_uid, map.size), (host.id_range.uid, 65536));
    assert_eq!(
        config(&engine, "c1").await["volatile.idmap.base"],
        host.id_range.uid.to_string()
    );
}

#[tokio::test]
async fn a_privileged_guest_has_no_map() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "p1", "img", &[("security.privileged", "true")])
        .await;
    testing::start(&engine, "p1").await;
    assert_eq!(host.runtime.spec("p1").unwrap().idmap, None);
    assert_eq!(config(&engine, "p1").await["volatile.idmap.current"], "[]");
}

#[tokio::test]
async fn isolated_guests_get_blocks_of_their_own_until_none_is_left() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let base = host.id_range.uid;
    let mut bases = Vec::new();
    for i in 1..TEST_ID_BLOCKS {
        let name = format!("iso{i}");
        host.create(
            &engine,
            &name,
            "img",
            &[("security.idmap.isolated", "true")],
        )
        .await;
        testing::start(&engine, &name).await;
        bases.push(host.runtime.spec(&name).unwrap().idmap.unwrap().host_uid);
    }
    assert_eq!(bases, [base + 65536, base + 2 * 65536, base + 3 * 65536]);
    // A restart keeps the block.
    testing::wait_ok(&testing::state(&engine, "iso2", "restart", true).await).await;
    assert_eq!(
        host.runtime.spec("iso2").unwrap().idmap.unwrap().host_uid,
        base + 2 * 65536
    );
    // The range is used up.
    host.create(
        &engine,
        "iso4",
        "img",
        &[("security.idmap.isolated", "true")],
    )
    .await;
    let op = testing::state(&engine, "iso4", "start", false).await;
    let err = testing::wait_err(&op).await;
    assert!(err.starts_with("No free id range left"), "{err}");
    assert!(host.runtime.calls_for("iso4").is_empty());
}
