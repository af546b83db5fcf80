//! `kante init --preseed` YAML (the CLI's preseed types): parsed, then
//! planned against an empty host and against itself applied.
#![no_main]

use kante_fuzz::preseed::{plan, Current, Preseed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(seed) = serde_yaml::from_str::<Preseed>(text) else {
        return;
    };
    let _ = plan(&seed, &Current::default());
});
