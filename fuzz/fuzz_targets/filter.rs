//! The `filter=` query of list endpoints (kante-engine's `front::filter`,
//! which kante-http serves), against a listed instance as the API shows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(filter) = std::str::from_utf8(data) else {
        return;
    };
    let obj = json!({
        "name": "c1",
        "status": "Running",
        "type": "container",
        "ephemeral": false,
        "stateful": false,
        "architecture": "x86_64",
        "config": {"image.os": "Debian", "user.tag": "web", "limits.cpu": "2"},
        "devices": {"root": {"path": "/", "pool": "default", "type": "disk"}},
        "profiles": ["default"],
        "expanded_config": {"image.os": "Debian"},
        "location": "none",
        "status_code": 103,
    });
    let _ = kante_engine::front::filter::matches(filter, &obj);
    let _ = kante_engine::front::filter::matches(filter, &json!(null));
});
