//! cloud-init keys in instance config (kante-engine's cloudinit): the first
//! byte picks the key, the rest is its value, checked as `validate` does
//! when an instance or profile is written, and read as templates read it.
#![no_main]

use kante_api::ConfigMap;
use kante_engine::fuzzing::cloudinit;
use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 8] = [
    "user.user-data",
    "user.vendor-data",
    "user.network-config",
    "user.meta-data",
    "cloud-init.user-data",
    "cloud-init.vendor-data",
    "cloud-init.network-config",
    "user.other",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let key = KEYS[(sel & 7) as usize];
    let mut config = ConfigMap::new();
    config.insert(key.to_string(), value.to_string());
    let _ = cloudinit::validate(&config);
    let old = ConfigMap::new();
    assert_eq!(cloudinit::data_changed(&old, &config), key != "user.other");
    for k in KEYS {
        let _ = cloudinit::lookup(&config, k);
    }
    let _ = cloudinit::nics(&Default::default(), &config);
});
