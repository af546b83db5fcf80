//! An imported backup's `backup/index.yaml` and `backup.yaml` (kante-engine's
//! backup_index): parsed, names checked, the config fitted to this host.
#![no_main]

use kante_engine::fuzzing::{fit_config, parse_backup_yaml, parse_index, validate_backup_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = parse_index(data) {
        for s in index.snapshots.iter().flatten() {
            assert!(kante_api::names::validate_snapshot_name(s).is_ok());
        }
        let _ = validate_backup_name(&index.name);
    }
    if let Ok(cfg) = parse_backup_yaml(data) {
        if let Some(rec) = cfg.record() {
            let fitted = fit_config(&rec.config, "1000000", "1065536");
            assert!(!fitted.contains_key("volatile.last_state.power"));
            assert_eq!(fitted["volatile.idmap.base"], "1000000");
        }
        for snap in cfg.snapshots.iter().flatten() {
            let _ = kante_api::names::validate_snapshot_name(&snap.name);
        }
    }
    if let Ok(name) = std::str::from_utf8(data) {
        if validate_backup_name(name).is_ok() {
            assert!(!name.is_empty() && !name.contains('/') && !name.starts_with('.'));
        }
    }
});
