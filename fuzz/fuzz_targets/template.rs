//! An image's templates (the pongo2 subset of kante-images' renderer), with
//! the context the engine gives them at start (`instance`, `config`,
//! `devices`, `properties`, `nics`, `config_get`).
#![no_main]

use std::collections::BTreeMap;

use kante_api::image::ImageTemplate;
use kante_engine::fuzzing::{render, TemplateInstance};
use libfuzzer_sys::fuzz_target;

fn instance() -> TemplateInstance {
    let config = [
        ("user.user-data", "#cloud-config\npackages: [vim]\n"),
        ("cloud-init.vendor-data", "#cloud-config\n{}\n"),
        ("user.meta-data", "a: b"),
        ("limits.cpu", "2"),
    ];
    let mut eth0 = BTreeMap::new();
    eth0.insert("type".to_string(), "nic".to_string());
    eth0.insert("nictype".to_string(), "bridged".to_string());
    eth0.insert("parent".to_string(), "br0".to_string());
    TemplateInstance {
        name: "c1".into(),
        architecture: "x86_64".into(),
        ephemeral: false,
        privileged: false,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        devices: [("eth0".to_string(), eth0)].into_iter().collect(),
        local: [(
            "volatile.eth0.hwaddr".to_string(),
            "00:16:3e:00:00:01".to_string(),
        )]
        .into_iter()
        .collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let tpl = ImageTemplate {
        when: vec!["create".into()],
        create_only: false,
        template: "t.tpl".into(),
        properties: [("default".to_string(), "x".to_string())]
            .into_iter()
            .collect(),
    };
    let _ = render(src, "/etc/hostname", "create", &tpl, &instance());
});
