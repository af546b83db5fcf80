//! `kante init --preseed` YAML and `kante apply` site files (kante-site):
//! a preseed parsed and planned against an empty host; the same text read
//! as a site (every check before any host is asked) and each host's part
//! planned against an empty host.
#![no_main]

use kante_fuzz::preseed::{plan, Current, Preseed};
use kante_site::plan::{plan_host, HostState};
use kante_site::Site;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(seed) = serde_yaml::from_str::<Preseed>(text) {
        let _ = plan(&seed, &Current::default());
    }
    let Ok(site) = Site::parse("fuzz.yaml", text, "local") else {
        return;
    };
    // Member hosts are planned against a cluster of the members the file
    // names (and one it does not), so their checks and moves run too.
    let mut members: Vec<String> = site.members.values().cloned().collect();
    members.push("other".into());
    let empty = HostState {
        preseed: Current::default(),
        instances: Vec::new(),
        cluster: Vec::new(),
        members,
    };
    for host in site.hosts.keys() {
        let _ = plan_host(&site, host, &empty, &Default::default(), true);
    }
});
