//! Small LXD-format images for tests, packed with GNU tar: a `metadata.yaml`
//! (with one `create`/`copy` template), a rootfs with `/sbin/init` and a
//! `systemctl` script for the fake runtime's exec (it answers
//! `is-system-running` with the lines of `/run/fake-systemd`, one per call,
//! then `running`), and whatever files a test adds. Entries are owned by
//! the test's own user, so they unpack without root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What goes into an image.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The tarball's file name (also decides compression: `.tar.gz`, `.tar`).
    pub file_name: String,
    /// `properties.description` in metadata.yaml.
    pub description: String,
    /// `/sbin/init`: a symlink target (`Some`) or a small script (`None`).
    pub init_link: Option<String>,
    /// More rootfs files: (path inside, content, mode).
    pub files: Vec<(String, String, u32)>,
    /// Make the rootfs (and metadata) this big, in bytes of filler.
    pub filler: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            file_name: "test-image.tar.gz".into(),
            description: "Kante test image".into(),
            init_link: None,
            files: Vec::new(),
            filler: 0,
        }
    }
}

const SYSTEMCTL: &str = r#"#!/bin/sh
# The fake runtime's systemctl: `is-system-running` answers the first line
# of /run/fake-systemd (removing it), or "running" when there is none.
f="$FAKE_ROOTFS/run/fake-systemd"
state=running
if [ -s "$f" ]; then
    state=$(head -n 1 "$f")
    tail -n +2 "$f" > "$f.next" && mv "$f.next" "$f"
fi
echo "$state"
[ "$state" = running ]
"#;

fn metadata(description: &str) -> String {
    format!(
        "architecture: x86_64\n\
         creation_date: 1700000000\n\
         properties:\n  os: kantetest\n  release: one\n  description: {description}\n\
         templates:\n  /etc/hosts:\n    when: [create, copy]\n    template: hosts.tpl\n"
    )
}

fn write(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("image directory");
    }
    std::fs::write(path, content).expect("image file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("image mode");
}

/// Lays out the image tree under `dir/tree-<n>`; returns it.
fn tree(dir: &Path, spec: &Spec) -> PathBuf {
    let tree = dir.join(format!("image-tree-{}", uuid::Uuid::new_v4()));
    write(
        &tree.join("metadata.yaml"),
        &metadata(&spec.description),
        0o644,
    );
    write(
        &tree.join("templates/hosts.tpl"),
        "127.0.1.1 {{ container.name }}\n",
        0o644,
    );
    let rootfs = tree.join("rootfs");
    for d in ["root", "tmp", "run", "etc", "usr/bin", "sbin"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("rootfs directory");
    }
    match &spec.init_link {
        Some(target) => std::os::unix::fs::symlink(target, rootfs.join("sbin/init")).expect("init"),
        None => write(
            &rootfs.join("sbin/init"),
            "#!/bin/sh\nexec sleep 1000000\n",
            0o755,
        ),
    }
    write(&rootfs.join("usr/bin/systemctl"), SYSTEMCTL, 0o755);
    write(&rootfs.join("etc/os-release"), "NAME=kantetest\n", 0o644);
    for (path, content, mode) in &spec.files {
        write(&rootfs.join(path.trim_start_matches('/')), content, *mode);
    }
    if spec.filler > 0 {
        // Incompressible, so the tarball's size follows.
        let mut bytes = Vec::with_capacity(spec.filler);
        let mut x: u32 = 0x2545_f491;
        for _ in 0..spec.filler {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bytes.push(x as u8);
        }
        std::fs::write(rootfs.join("filler"), bytes).expect("filler");
    }
    tree
}

/// Runs GNU tar over `members` of `tree` into `out`, owned by the caller.
fn pack(tree: &Path, out: &Path, members: &[&str]) {
    let (owner, group) = kante_runtime::host::effective_ids();
    let mut cmd = Command::new("tar");
    cmd.arg("--create")
        .arg("--file")
        .arg(out)
        .arg("--numeric-owner")
        .arg(format!("--owner={owner}"))
        .arg(format!("--group={group}"))
        .arg("--directory")
        .arg(tree);
    if out.to_string_lossy().ends_with(".gz") {
        cmd.arg("--gzip");
    }
    let status = cmd.args(members).status().expect("running tar");
    assert!(status.success(), "tar failed: {status}");
}

/// A unified image (`metadata.yaml`, `templates/`, `rootfs/` in one
/// tarball) in `dir`; returns the tarball's path.
pub fn build(dir: &Path, spec: &Spec) -> PathBuf {
    let tree = tree(dir, spec);
    let out = dir.join(&spec.file_name);
    pack(&tree, &out, &["metadata.yaml", "templates", "rootfs"]);
    let _ = std::fs::remove_dir_all(&tree);
    out
}

/// A split image: (metadata tarball, rootfs tarball) in `dir`.
pub fn build_split(dir: &Path, spec: &Spec) -> (PathBuf, PathBuf) {
    let tree = tree(dir, spec);
    let meta = dir.join(format!("meta-{}", spec.file_name));
    let rootfs = dir.join(format!("rootfs-{}", spec.file_name));
    pack(&tree, &meta, &["metadata.yaml", "templates"]);
    pack(&tree.join("rootfs"), &rootfs, &["."]);
    let _ = std::fs::remove_dir_all(&tree);
    (meta, rootfs)
}
