//! `kante file push|pull|delete`.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _, Result};
use kante_client::{Client, FileContent, FileKind, FilePushOptions};
use tokio::io::AsyncWrite;

use super::check_name;
use crate::cli::FileCmd;

/// Splits `instance/path` into the name and an absolute path.
pub fn parse_instance_path(s: &str) -> Result<(String, String)> {
    let Some((name, path)) = s.split_once('/') else {
        bail!("Invalid path \"{s}\": expected <instance>/<path>");
    };
    if name.is_empty() {
        bail!("Invalid path \"{s}\": expected <instance>/<path>");
    }
    check_name(name)?;
    Ok((name.to_string(), format!("/{path}")))
}

/// Joins a remote directory and a name with exactly one slash.
fn remote_join(dir: &str, name: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name)
}

fn base_name(p: &str) -> String {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Parses `--mode` as octal (`0644` or `644`).
pub fn parse_mode(s: &str) -> Result<u32> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .with_context(|| format!("Invalid mode \"{s}\""))
}

/// Where a link target points, relative links taken from the link's directory.
pub fn resolve_link(link_path: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let dir = link_path
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(d, _)| d)
        .unwrap_or("");
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

pub async fn run(c: &Client, cmd: FileCmd) -> Result<i32> {
    match cmd {
        FileCmd::Push {
            paths,
            uid,
            gid,
            mode,
            create_dirs,
            recursive,
        } => {
            let mode = mode.as_deref().map(parse_mode).transpose()?;
            let (sources, target) = paths.split_at(paths.len() - 1);
            let (name, tpath) = parse_instance_path(&target[0])?;
            let into_dir = sources.len() > 1 || tpath.ends_with('/') || recursive;
            let flags = Overrides { uid, gid, mode };
            for src in sources {
                let local = PathBuf::from(src);
                let meta = std::fs::symlink_metadata(&local)
                    .with_context(|| format!("Failed to read {src}"))?;
                let fname = local
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let dest = if into_dir {
                    remote_join(&tpath, &fname)
                } else {
                    tpath.clone()
                };
                if create_dirs {
                    mkdir_parents(c, &name, &dest, &flags).await?;
                }
                if meta.is_dir() {
                    if !recursive {
                        bail!("{src} is a directory (use -r to push it)");
                    }
                    push_tree(c, &name, &local, &dest, &flags).await?;
                } else {
                    push_one(c, &name, &local, &dest, &flags).await?;
                }
            }
            Ok(0)
        }
        FileCmd::Pull {
            paths,
            create_dirs,
            recursive,
        } => {
            let (sources, target) = paths.split_at(paths.len() - 1);
            let target = &target[0];
            if target == "-" {
                if recursive {
                    bail!("Cannot pull recursively to standard output");
                }
                for src in sources {
                    let (name, path) = parse_instance_path(src)?;
                    pull_to_stdout(c, &name, &path).await?;
                }
                return Ok(0);
            }
            let target = PathBuf::from(target);
            let into_dir =
                sources.len() > 1 || target.is_dir() || target.to_string_lossy().ends_with('/');
            for src in sources {
                let (name, path) = parse_instance_path(src)?;
                let dest = if into_dir {
                    target.join(base_name(&path))
                } else {
                    target.clone()
                };
                if create_dirs {
                    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                        std::fs::create_dir_all(parent)?;
                    }
                }
                if recursive {
                    pull_tree(c, &name, &path, &dest).await?;
                } else {
                    pull_file(c, &name, &path, &dest).await?;
                }
            }
            Ok(0)
        }
        FileCmd::Delete { paths } => {
            for p in &paths {
                let (name, path) = parse_instance_path(p)?;
                c.file_delete(&name, &path).await?;
            }
            Ok(0)
        }
    }
}

/// `--uid/--gid/--mode` given on the command line win over the local file's.
struct Overrides {
    uid: Option<i64>,
    gid: Option<i64>,
    mode: Option<u32>,
}

impl Overrides {
    fn for_local(&self, meta: &std::fs::Metadata) -> FilePushOptions {
        FilePushOptions {
            uid: Some(self.uid.unwrap_or(meta.uid() as i64)),
            gid: Some(self.gid.unwrap_or(meta.gid() as i64)),
            mode: Some(self.mode.unwrap_or(meta.permissions().mode() & 0o7777)),
            append: false,
        }
    }
}

async fn mkdir_parents(c: &Client, name: &str, dest: &str, flags: &Overrides) -> Result<()> {
    let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
    let mut cur = String::new();
    let opts = FilePushOptions {
        uid: flags.uid,
        gid: flags.gid,
        mode: Some(0o755),
        append: false,
    };
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        cur.push('/');
        cur.push_str(part);
        c.file_mkdir(name, &cur, &opts).await?;
    }
    Ok(())
}

fn progress_bar(label: String) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg}: {percent}% ({binary_bytes_per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_message(label);
    pb
}

async fn push_one(
    c: &Client,
    name: &str,
    local: &Path,
    dest: &str,
    flags: &Overrides,
) -> Result<()> {
    let meta =
        std::fs::metadata(local).with_context(|| format!("Failed to read {}", local.display()))?;
    let opts = flags.for_local(&meta);
    let pb = progress_bar(format!("Pushing {} to {dest}", local.display()));
    let p2 = pb.clone();
    c.file_push_path(name, dest, local, &opts, move |sent, total| {
        p2.set_length(total);
        p2.set_position(sent);
    })
    .await?;
    pb.finish_and_clear();
    Ok(())
}

/// Pushes a local directory tree to `dest` (directories, files, symlinks).
async fn push_tree(
    c: &Client,
    name: &str,
    local: &Path,
    dest: &str,
    flags: &Overrides,
) -> Result<()> {
    let mut stack = vec![(local.to_path_buf(), dest.to_string())];
    while let Some((dir, rdir)) = stack.pop() {
        let meta = std::fs::metadata(&dir)?;
        c.file_mkdir(name, &rdir, &flags.for_local(&meta)).await?;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let rpath = remote_join(&rdir, &entry.file_name().to_string_lossy());
            let ft = entry.file_type()?;
            if ft.is_symlink() {
                let target = std::fs::read_link(&path)?;
                let meta = std::fs::symlink_metadata(&path)?;
                c.file_symlink(
                    name,
                    &rpath,
                    &target.to_string_lossy(),
                    &flags.for_local(&meta),
                )
                .await?;
            } else if ft.is_dir() {
                stack.push((path, rpath));
            } else {
                push_one(c, name, &path, &rpath, flags).await?;
            }
        }
    }
    Ok(())
}

/// Follows symlinks on the server side, as lxc does for single files.
async fn resolve_remote(c: &Client, name: &str, path: &str) -> Result<String> {
    let mut cur = path.to_string();
    for _ in 0..40 {
        let got = c.file_get(name, &cur).await?;
        match got.content {
            FileContent::Symlink(target) => cur = resolve_link(&cur, &target),
            _ => return Ok(cur),
        }
    }
    bail!("Too many levels of symbolic links: {path}")
}

async fn pull_to_stdout(c: &Client, name: &str, path: &str) -> Result<()> {
    let mut cur = path.to_string();
    for _ in 0..40 {
        let mut out = tokio::io::stdout();
        let got = c.file_get_into(name, &cur, &mut out).await?;
        match got.content {
            FileContent::Symlink(target) => cur = resolve_link(&cur, &target),
            FileContent::Directory(_) => bail!("{path} is a directory (use -r and a local target)"),
            FileContent::File(_) => return Ok(()),
        }
    }
    bail!("Too many levels of symbolic links: {path}")
}

async fn pull_file(c: &Client, name: &str, path: &str, dest: &Path) -> Result<()> {
    let real = resolve_remote(c, name, path).await?;
    let mut out = LazyFile::new(dest);
    let got = c.file_get_into(name, &real, &mut out).await?;
    if got.meta.kind == FileKind::Directory {
        bail!("{path} is a directory (use -r)");
    }
    out.finish()?;
    std::fs::set_permissions(dest, local_mode(got.meta.mode))?;
    Ok(())
}

/// The mode a pulled file or directory gets on this host: the guest's
/// permission bits without setuid, setgid and sticky (as `cp` does), so a
/// guest cannot hand the admin a setuid-root program.
fn local_mode(guest_mode: u32) -> std::fs::Permissions {
    std::fs::Permissions::from_mode(guest_mode & 0o777)
}

/// `p` as path components, `.` dropped and `..` applied (never above `/`).
fn clean_components(p: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            name => out.push(name),
        }
    }
    out
}

/// How to recreate the symlink at instance path `link`, pointing to
/// `target`, in a pull of the tree at instance path `root`: a relative
/// target to the same place inside the pulled tree, or `None` when it
/// points outside it (absolute targets such as `/etc`, or `../../..`),
/// where a host link would reach the host's own files. The server hands
/// targets back absolute, resolved in the instance, as LXD does; a relative
/// one is taken from the link's directory. The result is made of leading
/// `..` and then names only, so it cannot climb out once recreated.
pub fn link_inside_tree(root: &str, link: &str, target: &str) -> Option<String> {
    let root = clean_components(root);
    let link = clean_components(link);
    if link.len() <= root.len() || !link.starts_with(&root) {
        // The pulled path itself is the link: it lives outside the tree.
        return None;
    }
    let dir = &link[..link.len() - 1];
    let mut abs: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        dir.to_vec()
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                abs.pop();
            }
            name => abs.push(name),
        }
    }
    if !abs.starts_with(&root) {
        return None;
    }
    let common = dir.iter().zip(&abs).take_while(|(a, b)| a == b).count();
    let mut rel = vec![".."; dir.len() - common];
    rel.extend(&abs[common..]);
    Some(if rel.is_empty() {
        ".".to_string()
    } else {
        rel.join("/")
    })
}

/// Pulls a tree: directories are recreated, symlinks kept as symlinks when
/// they point inside the tree; others are skipped with a warning.
async fn pull_tree(c: &Client, name: &str, path: &str, dest: &Path) -> Result<()> {
    let mut stack = vec![(path.to_string(), dest.to_path_buf())];
    while let Some((rpath, local)) = stack.pop() {
        let mut out = LazyFile::new(&local);
        let got = c.file_get_into(name, &rpath, &mut out).await?;
        match got.content {
            FileContent::Directory(entries) => {
                std::fs::create_dir_all(&local)?;
                std::fs::set_permissions(&local, local_mode(got.meta.mode))?;
                for e in entries {
                    stack.push((remote_join(&rpath, &e), local.join(&e)));
                }
            }
            FileContent::Symlink(target) => match link_inside_tree(path, &rpath, &target) {
                Some(inside) => {
                    let _ = std::fs::remove_file(&local);
                    std::os::unix::fs::symlink(inside, &local)?;
                }
                None => eprintln!(
                    "Warning: skipped symlink {} -> {target} (it points outside the pulled tree)",
                    local.display()
                ),
            },
            FileContent::File(_) => {
                out.finish()?;
                std::fs::set_permissions(&local, local_mode(got.meta.mode))?;
            }
        }
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// A local file created on first write (or at `finish`), so that a
/// directory or symlink answer leaves nothing behind.
struct LazyFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl LazyFile {
    fn new(path: &Path) -> LazyFile {
        LazyFile {
            path: path.to_path_buf(),
            file: None,
        }
    }

    fn open(&mut self) -> std::io::Result<&mut tokio::fs::File> {
        if self.file.is_none() {
            let f = std::fs::File::create(&self.path)?;
            self.file = Some(tokio::fs::File::from_std(f));
        }
        Ok(self.file.as_mut().expect("just opened"))
    }

    /// Makes sure an empty file exists too.
    fn finish(&mut self) -> std::io::Result<()> {
        self.open().map(|_| ())
    }
}

impl AsyncWrite for LazyFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.open() {
            Ok(f) => Pin::new(f).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.file.as_mut() {
            Some(f) => Pin::new(f).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.file.as_mut() {
            Some(f) => Pin::new(f).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_paths() {
        assert_eq!(
            parse_instance_path("c1/etc/hosts").unwrap(),
            ("c1".into(), "/etc/hosts".into())
        );
        assert_eq!(
            parse_instance_path("c1/root/").unwrap(),
            ("c1".into(), "/root/".into())
        );
        assert_eq!(
            parse_instance_path("c1/").unwrap(),
            ("c1".into(), "/".into())
        );
        let e = parse_instance_path("c1").unwrap_err().to_string();
        assert_eq!(e, "Invalid path \"c1\": expected <instance>/<path>");
        assert!(parse_instance_path("/etc/hosts").is_err());
        assert!(parse_instance_path("bad_name/x").is_err());
    }

    #[test]
    fn links_resolve_like_paths() {
        assert_eq!(
            resolve_link("/etc/os-release", "../usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(
            resolve_link("/etc/os-release", "/usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(resolve_link("/a/b/c", "./d"), "/a/b/d");
    }

    #[test]
    fn pulled_links_must_stay_in_the_tree() {
        let inside = |link: &str, target: &str| link_inside_tree("/root/tree/", link, target);
        // Targets as the server sends them (absolute in the instance) or relative.
        assert_eq!(
            inside("/root/tree/sub/fine", "/root/tree/ok").as_deref(),
            Some("../ok")
        );
        assert_eq!(
            inside("/root/tree/sub/fine", "../ok").as_deref(),
            Some("../ok")
        );
        assert_eq!(
            inside("/root/tree/a", "/root/tree/sub/x").as_deref(),
            Some("sub/x")
        );
        assert_eq!(
            inside("/root/tree/sub/d/l", "/root/tree/sub").as_deref(),
            Some("..")
        );
        assert_eq!(inside("/root/tree/l", "/root/tree").as_deref(), Some("."));
        assert_eq!(inside("/root/tree/a/l", "./b/../c").as_deref(), Some("c"));
        for (link, target) in [
            ("/root/tree/etc-link", "/etc"),
            ("/root/tree/up", "/"),
            ("/root/tree/up", "../../.."),
            ("/root/tree/sub/deep/out", "../../../../etc"),
            ("/root/tree/x", "/root/tree-other/x"),
            ("/root/tree/x", "/root"),
            ("/root/tree/a/l", "../../x"),
        ] {
            assert_eq!(inside(link, target), None, "{link} -> {target}");
        }
        // The pulled path itself being a link: nothing to keep it inside.
        assert_eq!(link_inside_tree("/root/l", "/root/l", "/root/l/x"), None);
        // Whatever comes out has only leading `..` and then names.
        assert_eq!(
            link_inside_tree("/", "/a/b/c/l", "/x/y").as_deref(),
            Some("../../../x/y")
        );
    }

    #[test]
    fn pulled_modes_lose_special_bits() {
        assert_eq!(local_mode(0o6755).mode(), 0o755);
        assert_eq!(local_mode(0o1777).mode(), 0o777);
        assert_eq!(local_mode(0o2750).mode(), 0o750);
        assert_eq!(local_mode(0o644).mode(), 0o644);
    }

    #[test]
    fn modes_and_joins() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert!(parse_mode("9").is_err());
        assert_eq!(remote_join("/root/", "a"), "/root/a");
        assert_eq!(base_name("/etc/hosts"), "hosts");
    }
}
