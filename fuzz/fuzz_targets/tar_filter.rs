//! The validating tar filter every image and backup goes through before GNU
//! tar (kante-images' tarscan). The first byte picks the layout and how the
//! stream is chunked; the rest is the (decompressed) archive, or with bit 5
//! of the first byte set, a description of one (`kante_fuzz::tarbuild`).
//!
//! Checked on what the filter lets through, with an independent reader (the
//! `tar` crate): no entry's path is absolute or has a `..`, none lies outside
//! the layout, no device node is left, and filtering again changes nothing.
#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::path::Component;

use kante_images::fuzzing::{filter_tar, normalize_path};
use kante_images::Layout;
use libfuzzer_sys::fuzz_target;

const LAYOUTS: [Layout; 4] = [
    Layout::Any,
    Layout::Image,
    Layout::ImageMeta,
    Layout::Backup,
];
const CHUNKS: [usize; 8] = [1, 7, 100, 511, 512, 513, 4096, usize::MAX];

fn allowed(layout: Layout, path: &[u8]) -> bool {
    let under =
        |dir: &[u8]| path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'));
    path.is_empty()
        || match layout {
            Layout::Any => true,
            Layout::Image => path == b"metadata.yaml" || under(b"rootfs") || under(b"templates"),
            Layout::ImageMeta => path == b"metadata.yaml" || under(b"templates"),
            Layout::Backup => {
                path == b"backup"
                    || path == b"backup/index.yaml"
                    || path == b"backup/snapshots"
                    || under(b"backup/container")
                    || path.len() > b"backup/snapshots/".len()
                        && path.starts_with(b"backup/snapshots/")
            }
        }
}

fn check_path(layout: Layout, raw: &[u8]) {
    // GNU tar takes names as C strings: they end at the first NUL (the
    // `tar` crate keeps what follows, say in a GNU long name's padding).
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(raw));
    for c in p.components() {
        assert!(
            !matches!(
                c,
                Component::RootDir | Component::ParentDir | Component::Prefix(_)
            ),
            "the filter let {raw:?} through"
        );
    }
    let norm = normalize_path(raw).expect("a path the filter let through normalises");
    assert!(allowed(layout, &norm), "{raw:?} is outside {layout:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, tar)) = data.split_first() else {
        return;
    };
    let layout = LAYOUTS[(sel & 3) as usize];
    let chunk = CHUNKS[((sel >> 2) & 7) as usize];
    // Bit 5: the rest describes an archive (valid checksums, pax lengths).
    let built;
    let tar = if sel & 0x20 != 0 {
        built = kante_fuzz::tarbuild::build(tar);
        &built[..]
    } else {
        tar
    };
    let Ok(f) = filter_tar(layout, tar, chunk) else {
        return;
    };
    // The output is what tar reads: walk it with another reader.
    let mut archive = tar::Archive::new(&f.out[..]);
    if let Ok(entries) = archive.entries() {
        for entry in entries {
            let Ok(mut e) = entry else { break };
            let kind = e.header().entry_type();
            if kind.is_pax_local_extensions()
                || kind.is_pax_global_extensions()
                || kind.is_gnu_longname()
                || kind.is_gnu_longlink()
            {
                // The `tar` crate reads these as extensions only under a
                // ustar (or GNU) magic; GNU tar, and the filter, always do.
                // From here the two readers name entries differently.
                break;
            }
            if kind.as_byte() == b'V' {
                continue; // a volume label: GNU tar makes no file of it
            }
            assert!(
                !kind.is_character_special() && !kind.is_block_special(),
                "a device node passed the filter"
            );
            // GNU tar names a sparse file by `GNU.sparse.name` over all
            // else (the `tar` crate does not know that key), and takes the
            // last of repeated pax keys (the `tar` crate the first).
            // A pax header the `tar` crate cannot read whole (a record
            // without its newline, say) GNU tar still takes: no oracle there.
            let (mut sparse_name, mut pax_path, mut pax_link) = (None, None, None);
            match e.pax_extensions() {
                Ok(None) => {}
                Ok(Some(exts)) => {
                    let Ok(exts) = exts.collect::<Result<Vec<_>, _>>() else {
                        continue;
                    };
                    if exts.iter().filter(|x| x.key_bytes() == b"size").count() > 1 {
                        // GNU tar takes the last `size`, the `tar` crate
                        // the first: past here they read different blocks.
                        break;
                    }
                    for ext in exts {
                        match ext.key_bytes() {
                            b"GNU.sparse.name" => sparse_name = Some(ext.value_bytes().to_vec()),
                            b"path" => pax_path = Some(ext.value_bytes().to_vec()),
                            b"linkpath" => pax_link = Some(ext.value_bytes().to_vec()),
                            _ => {}
                        }
                    }
                }
                Err(_) => continue,
            }
            let name = sparse_name.or(pax_path);
            check_path(layout, &name.unwrap_or_else(|| e.path_bytes().into_owned()));
            if kind.is_hard_link() {
                if let Some(link) = pax_link.or_else(|| e.link_name_bytes().map(|l| l.into_owned()))
                {
                    check_path(layout, &link);
                }
            }
        }
    }
    // Filtering is idempotent: the output is already what it should be.
    let again = filter_tar(layout, &f.out, 4096).expect("filtered output passes the filter");
    assert_eq!(again.out, f.out, "filtering twice changed the stream");
    assert_eq!(again.devices_dropped, 0);
});
