//! Every name validator of user input (instances, snapshots, aliases,
//! profiles, pools, networks, volumes, interfaces, backups). A name that
//! passes is checked against the alphabet its rule promises.
#![no_main]

use kante_api::names;
use libfuzzer_sys::fuzz_target;

fn free_name_ok(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if names::validate_instance_name(name).is_ok() {
        assert!((1..=63).contains(&name.len()));
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert!(name.as_bytes()[0].is_ascii_alphabetic());
        assert!(!name.ends_with('-'));
    }
    if names::validate_snapshot_name(name).is_ok() {
        assert!(free_name_ok(name, 255), "snapshot {name:?}");
    }
    if names::validate_entity_name("Profile", name).is_ok() {
        assert!(free_name_ok(name, 63), "profile {name:?}");
    }
    if names::validate_alias_name(name).is_ok() {
        assert!(!name.is_empty() && name.len() <= 255);
        assert!(!name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':'));
        assert!(name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".."));
    }
    if kante_storage::validate_volume_name(name).is_ok() {
        assert!(
            free_name_ok(name, 255) && !name.starts_with('.'),
            "volume {name:?}"
        );
    }
    if kante_storage::validate_snapshot_name(name).is_ok() {
        assert!(
            free_name_ok(name, 255) && !name.starts_with('.'),
            "volume snapshot {name:?}"
        );
    }
    if kante_network::driver::check_network_name(name).is_ok() {
        assert!((1..=15).contains(&name.len()));
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')));
        assert!(name != "." && name != "..");
    }
    if kante_network::subnet::validate_ifname(name).is_ok() {
        assert!((1..=15).contains(&name.len()));
        assert!(!name.contains(['/', ':']));
    }
    if kante_engine::fuzzing::validate_backup_name(name).is_ok() {
        assert!(
            free_name_ok(name, 255) && !name.starts_with('.'),
            "backup {name:?}"
        );
    }
});
