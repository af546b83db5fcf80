//! Byte sizes, memory limits and CPU sets as users write them in config
//! (`size=`, `limits.memory`, `limits.cpu`): kante-syntax and the engine's units.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = kante_syntax::parse_size(s) {
        // What is formatted parses back to the same number.
        let text = kante_syntax::format_size(n);
        assert_eq!(
            kante_syntax::parse_size(&text),
            Ok(n),
            "{s:?} -> {n} -> {text:?}"
        );
        assert_eq!(kante_engine::units::parse_size(s), Ok(n));
    }
    let _ = kante_engine::units::parse_memory_limit(s, 8 << 30);
    if let Ok(cpus) = kante_engine::units::parse_cpu_set(s) {
        assert!(cpus.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    }
    let _ = kante_engine::units::parse_cpu_limit(s);
    let _ = kante_engine::units::parse_cpu_allowance(s);
    let _ = kante_syntax::mountinfo_path(s);
});
