//! Trees described for comparison: everything a copy or restore must
//! reproduce, by relative path.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Runs `cmd` with `sh -c`; panics with its stderr if it fails.
pub fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything about a tree that a restore must reproduce, by relative path;
/// hard links as the first path of their inode group.
pub fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut first_of: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let all_xattrs = xattrs_of_tree(root);
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let xattrs = all_xattrs.get(&rel).cloned().unwrap_or_default();
        let mut d = format!(
            "mode={:o} uid={} gid={} xattrs=[{xattrs}]",
            m.mode(),
            m.uid(),
            m.gid()
        );
        if !ft.is_symlink() {
            d += &format!(" mtime={}.{}", m.mtime(), m.mtime_nsec());
        }
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                let n = e.unwrap().file_name().into_string().unwrap();
                stack.push(if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                });
            }
        } else if !ft.is_symlink() && !ft.is_file() {
            d += &format!(" rdev={:x}", m.rdev());
        } else if ft.is_symlink() {
            d += &format!(" -> {}", std::fs::read_link(&p).unwrap().display());
        } else if ft.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            d += &format!(" size={} sum={:x}", bytes.len(), fnv(&bytes));
            d += &format!(" sparse={}", m.blocks() * 512 < m.size());
            // Links within the tree (a file linked from the current tree
            // has more links, outside this one).
            let first = first_of.entry((m.dev(), m.ino())).or_insert(rel.clone());
            d += &format!(" linkgroup={first}");
        }
        out.insert(rel, d);
    }
    // Hard-link groups are named by whichever path was met first: name
    // them by the smallest instead, so two trees compare (a group of one
    // is the file itself).
    let mut groups: BTreeMap<String, String> = BTreeMap::new();
    for (rel, d) in &out {
        if let Some(g) = d.split(" linkgroup=").nth(1) {
            let e = groups.entry(g.to_string()).or_insert(rel.clone());
            if rel < e {
                *e = rel.clone();
            }
        }
    }
    out.into_iter()
        .map(|(rel, d)| match d.split_once(" linkgroup=") {
            Some((head, g)) => (rel, format!("{head} linkgroup={}", groups[g])),
            None => (rel, d),
        })
        .collect()
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, x| {
        (h ^ *x as u64).wrapping_mul(0x100000001b3)
    })
}

/// Every entry's xattrs (sorted names and hex values), by relative path:
/// one Python run for the whole tree.
fn xattrs_of_tree(root: &Path) -> BTreeMap<String, String> {
    let script = r#"
import os, sys
r = sys.argv[1]
def show(p):
    x = sorted((n, os.getxattr(p, n, follow_symlinks=False).hex())
               for n in os.listxattr(p, follow_symlinks=False))
    print(os.path.relpath(p, r) if p != r else "", x, sep="\t")
show(r)
for d, dirs, files in os.walk(r):
    for n in dirs + files:
        show(os.path.join(d, n))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, x)| (p.to_string(), x.to_string()))
        .collect()
}
