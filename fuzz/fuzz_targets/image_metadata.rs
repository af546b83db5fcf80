//! An image's `metadata.yaml` (kante-images), as read from an imported image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = kante_images::fuzzing::parse_metadata_bytes(data) {
        assert!(!meta.architecture.trim().is_empty());
        assert!(meta.creation_date > 0);
        // What was accepted serialises and reads back.
        let text = serde_yaml::to_string(&meta).expect("metadata serialises");
        let again = kante_images::parse_metadata(&text).expect("serialised metadata parses");
        assert_eq!(again.architecture, meta.architecture);
        assert_eq!(again.creation_date, meta.creation_date);
    }
});
