//! The simplestreams index and products parsing, and which image a
//! request picks (`simplestreams.rs`), on trees in the format
//! images.linuxcontainers.org publishes.

use super::*;
use kante_images::streams::{entries, Products};
use serde_json::{json, Value};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const D: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
const E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

fn index() -> Value {
    json!({
        "format": "index:1.0",
        "index": {
            "images": {
                "datatype": "image-downloads",
                "path": "streams/v1/images.json",
                "format": "products:1.0",
                "products": ["debian:bookworm:amd64:default"]
            },
            "other": {"datatype": "content-download", "path": "streams/v1/other.json"}
        }
    })
}

fn split_version(meta_sha: &str, root_sha: &str, combined: &str) -> Value {
    json!({"items": {
        "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "images/debian/bookworm/lxd.tar.xz",
            "sha256": meta_sha, "size": 100, "combined_sha256": combined,
            "combined_rootxz_sha256": combined},
        "root.tar.xz": {"ftype": "root.tar.xz", "path": "images/debian/bookworm/root.tar.xz",
            "sha256": root_sha, "size": 2000}
    }})
}

fn products() -> Products {
    serde_json::from_value(json!({
        "content_id": "images",
        "datatype": "image-downloads",
        "format": "products:1.0",
        "products": {
            "debian:bookworm:amd64:default": {
                "aliases": "debian/bookworm/default,debian/bookworm,debian/12",
                "arch": "amd64", "os": "Debian", "release": "bookworm",
                "release_title": "bookworm", "variant": "default",
                "versions": {
                    "20231201_05:24": split_version(A, B, C),
                    "20231202_05:24": split_version(A, B, D),
                    // The latest has no usable items: skipped.
                    "20231203_05:24": {"items": {"lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "x", "sha256": "short"}}}
                }
            },
            "debian:bookworm:arm64:default": {
                "aliases": "debian/bookworm/default,debian/bookworm,debian/12",
                "arch": "arm64", "os": "Debian", "release": "bookworm", "variant": "default",
                "versions": {"20231202_05:24": split_version(A, B, E)}
            },
            "alpine:edge:arm64:default": {
                "aliases": "alpine/edge", "arch": "arm64", "os": "Alpine", "release": "edge",
                "versions": {"20231202_05:24": split_version(A, B, E)}
            },
            "busybox:1:amd64:default": {
                "aliases": "busybox", "arch": "amd64", "os": "Busybox", "release": "1",
                "versions": {"1": {"items": {
                    "lxd_combined.tar.gz": {"ftype": "lxd_combined.tar.gz", "path": "bb.tar.gz", "sha256": E, "size": 5}
                }}}
            }
        }
    }))
    .unwrap()
}

#[test]
fn the_index_names_the_image_downloads_products() {
    assert_eq!(
        products_paths(&index()).unwrap(),
        vec!["streams/v1/images.json".to_string()]
    );
    assert!(products_paths(&json!({"index": {}})).is_err());
    assert!(products_paths(&json!({"index": "junk"})).is_err());
}

#[test]
fn an_alias_picks_the_latest_usable_version_for_the_arch() {
    let c = choose(&products(), "debian/12", "amd64").unwrap();
    assert_eq!(c.fingerprint, D);
    assert_eq!(c.meta.path, "images/debian/bookworm/lxd.tar.xz");
    assert_eq!(c.meta.sha256, A);
    let root = c.rootfs.unwrap();
    assert_eq!((root.sha256.as_str(), root.size), (B, 2000));
    assert_eq!(c.properties["os"], "Debian");
    assert_eq!(c.properties["serial"], "20231202_05:24");
    assert_eq!(
        c.properties["description"],
        "Debian bookworm amd64 (default) (20231202_05:24)"
    );
    // Another architecture's product of the same alias.
    assert_eq!(
        choose(&products(), "debian/12", "arm64")
            .unwrap()
            .fingerprint,
        E
    );
}

#[test]
fn a_fingerprint_prefix_or_a_unified_image_is_found_too() {
    let c = choose(&products(), &C[..16], "amd64").unwrap();
    assert_eq!(c.fingerprint, C);
    let u = choose(&products(), "busybox", "amd64").unwrap();
    assert_eq!(u.fingerprint, E);
    assert!(u.rootfs.is_none());
    assert_eq!(u.meta.path, "bb.tar.gz");
}

#[test]
fn the_catalog_lists_each_products_latest_usable_version() {
    let mut all = entries(&products());
    all.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    let debian = all
        .iter()
        .find(|e| e.fingerprint == D)
        .expect("debian amd64");
    assert_eq!(debian.architecture, "amd64");
    assert_eq!(debian.version, "20231202_05:24");
    assert!(
        debian.aliases.contains(&"debian/12".to_string()),
        "{debian:?}"
    );
    assert_eq!(debian.size, 100 + 2000);
    assert_eq!(
        debian.description,
        "Debian bookworm amd64 (default) (20231202_05:24)"
    );
    // One entry per product (4), never an older version of one.
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|e| e.fingerprint != C), "{all:?}");
}

#[test]
fn unknown_aliases_and_other_architectures_are_clear_errors() {
    let e = choose(&products(), "debian/99", "amd64").unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    let e = choose(&products(), "alpine/edge", "amd64").unwrap_err();
    assert!(e.to_string().contains("architecture"), "{e}");
    // A short prefix is not a fingerprint.
    assert!(choose(&products(), &C[..4], "amd64").is_err());
}

#[test]
fn a_source_names_a_server_and_an_image() {
    let s = StreamsSource::parse(&json!({"type": "image", "protocol": "simplestreams",
        "server": "https://images.example.org/sub/", "alias": "debian/12"}))
    .unwrap();
    assert_eq!(s.endpoint.authority, "images.example.org:443");
    assert_eq!(s.url("streams/v1/index.json"), "/sub/streams/v1/index.json");
    assert_eq!(s.name, "debian/12");
    let s =
        StreamsSource::parse(&json!({"server": "https://h:8443", "fingerprint": "abc"})).unwrap();
    assert_eq!(s.url("/x"), "/x");
    for bad in [
        json!({"server": "http://h", "alias": "a"}),
        json!({"server": "https://h"}),
        json!({"server": "https://h", "alias": "a", "certificate": "junk"}),
        json!({"server": "https://h", "alias": "a", "mode": "push"}),
    ] {
        assert!(StreamsSource::parse(&bad).is_err(), "{bad}");
    }
}

fn stream_of(chunks: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
    futures_util::stream::iter(items).boxed()
}

async fn collect(mut s: ByteStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

#[tokio::test]
async fn a_download_fails_on_a_wrong_hash_or_size() {
    let sha = hex::encode(Sha256::digest(b"hello world"));
    let d = |size: u64, sha: &str| Download {
        path: "f".into(),
        sha256: sha.into(),
        size,
    };
    let ok = collect(verified(stream_of(&[b"hello ", b"world"]), d(11, &sha))).await;
    assert_eq!(ok.unwrap(), b"hello world");
    let short = collect(verified(stream_of(&[b"hello "]), d(11, &sha))).await;
    assert!(short.unwrap_err().to_string().contains("truncated"));
    let long = collect(verified(stream_of(&[b"hello world!"]), d(11, &sha))).await;
    assert!(long.unwrap_err().to_string().contains("longer"));
    let wrong = collect(verified(stream_of(&[b"hello worle"]), d(11, &sha))).await;
    assert!(wrong.unwrap_err().to_string().contains("sha256"));
}
