//! `kante image …`: build, import, list, delete, aliases, info, show.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kante_api::image::Image;
use kante_api::names::validate_alias_name;
use kante_client::{Client, ImageUploadOptions};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::to_yaml;
use crate::build::build_image;
use crate::cli::{AliasCmd, ImageCmd};
use crate::format::{date_short, date_upload, image_size, is_never};
use crate::table::{render, Format, Row};

pub async fn run(c: &Client, cmd: ImageCmd) -> Result<i32> {
    match cmd {
        ImageCmd::Build {
            name,
            aliases,
            output,
            no_import,
            verbose,
        } => {
            let recipe = name.clone();
            let path = tokio::task::spawn_blocking(move || build_image(&recipe, output, verbose))
                .await??;
            println!("Built {}", path.display());
            if no_import {
                return Ok(0);
            }
            let aliases = if aliases.is_empty() {
                vec![name]
            } else {
                aliases
            };
            let fp = import(c, &path, None, false).await?;
            println!("Image fingerprint: {fp}");
            point_aliases(c, &fp, &aliases).await?;
        }
        ImageCmd::Import {
            tarball,
            rootfs,
            aliases,
            public,
        } => {
            for a in &aliases {
                validate_alias_name(a)?;
            }
            let fp = import(c, &tarball, rootfs.as_deref(), public).await?;
            println!("Image imported with fingerprint: {fp}");
            for a in &aliases {
                c.create_image_alias(a, &fp, "").await?;
            }
        }
        ImageCmd::List {
            filters,
            columns,
            format,
        } => {
            print_images(c.images().await?, &filters, &columns, format)?;
        }
        ImageCmd::Delete { images } => {
            for i in &images {
                let fp = c.resolve_image(i).await?;
                c.delete_image(&fp).await?;
            }
        }
        ImageCmd::Alias(a) => alias(c, a).await?,
        ImageCmd::Refresh { images } => {
            for i in &images {
                refresh(c, i).await?;
            }
        }
        ImageCmd::Copy {
            source,
            aliases,
            auto_update,
            public,
            ..
        } => {
            let args = super::image_copy::CopyArgs {
                source,
                aliases,
                auto_update,
                public,
            };
            return super::image_copy::copy(c, args).await;
        }
        ImageCmd::Info { image } => {
            let fp = c.resolve_image(&image).await?;
            print!("{}", render_image_info(&c.image(&fp).await?));
        }
        ImageCmd::Show { image } => {
            let fp = c.resolve_image(&image).await?;
            let img = c.image(&fp).await?;
            let shown = ImageShow {
                auto_update: img.auto_update,
                properties: img.properties,
                public: img.public,
                expires_at: img.expires_at,
                profiles: img.profiles,
            };
            print!("{}", to_yaml(&shown)?);
        }
    }
    Ok(0)
}

/// Asks the server to refresh one image from its source, and says, as
/// lxc does, whether a newer one replaced it.
async fn refresh(c: &Client, image: &str) -> Result<()> {
    let fp = c.resolve_image(image).await?;
    let resp = c
        .post(&format!("/1.0/images/{fp}/refresh"), &serde_json::json!({}))
        .await?;
    let id = resp
        .operation_id()
        .context("the server answered the refresh without an operation")?;
    let op = c.wait_operation(&id, None).await?;
    if op.metadata["refreshed"] == serde_json::Value::Bool(true) {
        let new = op.metadata["fingerprint"].as_str().unwrap_or_default();
        println!("Image {image} refreshed: {}", &new[..new.len().min(12)]);
    } else {
        println!("Image {image} is already up to date");
    }
    Ok(())
}

/// The writable fields `lxc image show` prints.
#[derive(Serialize)]
struct ImageShow {
    auto_update: bool,
    properties: BTreeMap<String, String>,
    public: bool,
    expires_at: kante_api::Timestamp,
    profiles: Vec<String>,
}

async fn alias(c: &Client, cmd: AliasCmd) -> Result<()> {
    match cmd {
        AliasCmd::Create {
            alias,
            target,
            description,
        } => {
            validate_alias_name(&alias)?;
            let fp = c.image(&target).await?.fingerprint;
            c.create_image_alias(&alias, &fp, &description).await?;
        }
        AliasCmd::Delete { alias } => c.delete_image_alias(&alias).await?,
        AliasCmd::List { format, .. } => {
            let mut aliases = c.image_aliases().await?;
            aliases.sort_by(|a, b| a.name.cmp(&b.name));
            match format {
                Format::Json => println!("{}", serde_json::to_string(&aliases)?),
                Format::Yaml => print!("{}", to_yaml(&aliases)?),
                fmt => {
                    let rows: Vec<Row> = aliases
                        .iter()
                        .map(|a| {
                            vec![
                                a.name.clone(),
                                short_fp(&a.target),
                                a.kind.to_uppercase(),
                                a.description.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        render(fmt, &["ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION"], &rows)
                    );
                }
            }
        }
    }
    Ok(())
}

fn short_fp(fp: &str) -> String {
    fp.chars().take(12).collect()
}

pub(crate) fn image_matches(i: &Image, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => i.properties.get(k).map(String::as_str) == Some(v),
        None => {
            i.fingerprint.starts_with(f.as_str())
                || i.aliases.iter().any(|a| a.name.starts_with(f.as_str()))
        }
    })
}

/// lxc's ALIAS cell: the shortest alias, plus how many others there are.
fn alias_cell(i: &Image) -> String {
    let mut names: Vec<&str> = i.aliases.iter().map(|a| a.name.as_str()).collect();
    names.sort_by_key(|n| (n.len(), *n));
    match names.len() {
        0 => String::new(),
        1 => names[0].to_string(),
        n => format!("{} ({} more)", names[0], n - 1),
    }
}

/// Prints the images that match `filters`, as `lxc image list` does (a
/// server's own, or a simplestreams catalog's), in the `-c` columns.
pub(crate) fn print_images(
    mut images: Vec<Image>,
    filters: &[String],
    columns: &str,
    format: Format,
) -> Result<()> {
    let cols = image_columns(columns)?;
    images.retain(|i| image_matches(i, filters));
    match format {
        Format::Json => println!("{}", serde_json::to_string(&images)?),
        Format::Yaml => print!("{}", to_yaml(&images)?),
        fmt => {
            let header: Vec<&str> = cols.iter().map(|c| image_header(*c)).collect();
            print!("{}", render(fmt, &header, &image_rows(&images, &cols)));
        }
    }
    Ok(())
}

/// lxc's image list columns, checked: l (shortest alias), L (all
/// aliases), f/F (short/full fingerprint), p, d, a, t, s, u.
pub fn image_columns(spec: &str) -> Result<Vec<char>> {
    let cols: Vec<char> = spec.chars().filter(|c| *c != ',').collect();
    if let Some(bad) = cols.iter().find(|c| !"lLfFpdatsu".contains(**c)) {
        anyhow::bail!("Unknown column shorthand char '{bad}' in '{spec}'");
    }
    Ok(cols)
}

fn image_header(c: char) -> &'static str {
    match c {
        'l' => "ALIAS",
        'L' => "ALIASES",
        'f' | 'F' => "FINGERPRINT",
        'p' => "PUBLIC",
        'd' => "DESCRIPTION",
        'a' => "ARCHITECTURE",
        't' => "TYPE",
        's' => "SIZE",
        _ => "UPLOAD DATE",
    }
}

fn image_cell(i: &Image, c: char) -> String {
    match c {
        'l' => alias_cell(i),
        'L' => {
            let mut names: Vec<&str> = i.aliases.iter().map(|a| a.name.as_str()).collect();
            names.sort();
            names.join("\n")
        }
        'f' => short_fp(&i.fingerprint),
        'F' => i.fingerprint.clone(),
        'p' => if i.public { "yes" } else { "no" }.to_string(),
        'd' => i.properties.get("description").cloned().unwrap_or_default(),
        'a' => i.architecture.clone(),
        't' => i.kind.to_uppercase(),
        's' => image_size(i.size),
        _ => date_upload(&i.uploaded_at),
    }
}

pub fn image_rows(images: &[Image], cols: &[char]) -> Vec<Row> {
    let mut rows: Vec<Row> = images
        .iter()
        .map(|i| cols.iter().map(|c| image_cell(i, *c)).collect())
        .collect();
    rows.sort();
    rows
}

pub fn render_image_info(i: &Image) -> String {
    let mut out = String::new();
    let never_or = |t: &kante_api::Timestamp| {
        if is_never(t) {
            "never".to_string()
        } else {
            date_short(t)
        }
    };
    let _ = writeln!(out, "Fingerprint: {}", i.fingerprint);
    let _ = writeln!(out, "Size: {}", image_size(i.size));
    let _ = writeln!(out, "Architecture: {}", i.architecture);
    let _ = writeln!(out, "Type: {}", i.kind);
    let _ = writeln!(out, "Public: {}", if i.public { "yes" } else { "no" });
    out.push_str("Timestamps:\n");
    let _ = writeln!(out, "    Created: {}", never_or(&i.created_at));
    let _ = writeln!(out, "    Uploaded: {}", never_or(&i.uploaded_at));
    let _ = writeln!(out, "    Expires: {}", never_or(&i.expires_at));
    let _ = writeln!(out, "    Last used: {}", never_or(&i.last_used_at));
    out.push_str("Properties:\n");
    for (k, v) in &i.properties {
        let _ = writeln!(out, "    {k}: {v}");
    }
    out.push_str("Aliases:\n");
    for a in &i.aliases {
        let _ = writeln!(out, "    - {}", a.name);
    }
    let _ = writeln!(out, "Cached: {}", if i.cached { "yes" } else { "no" });
    let _ = writeln!(
        out,
        "Auto update: {}",
        if i.auto_update { "enabled" } else { "disabled" }
    );
    out.push_str("Profiles:\n");
    for p in &i.profiles {
        let _ = writeln!(out, "    - {p}");
    }
    out
}

/// The fingerprint LXD computes: SHA-256 of the file, or of metadata then rootfs.
pub fn local_fingerprint(files: &[&Path]) -> Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file =
            std::fs::File::open(f).with_context(|| format!("Failed to open {}", f.display()))?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Uploads unless the server already has this fingerprint; returns it.
async fn import(c: &Client, tarball: &Path, rootfs: Option<&Path>, public: bool) -> Result<String> {
    let files: Vec<PathBuf> = std::iter::once(tarball.to_path_buf())
        .chain(rootfs.map(Path::to_path_buf))
        .collect();
    let fp = tokio::task::spawn_blocking(move || {
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        local_fingerprint(&refs)
    })
    .await??;
    match c.image(&fp).await {
        Ok(_) => return Ok(fp),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "Uploading image: [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let p2 = pb.clone();
    let progress = move |sent: u64, total: u64| {
        p2.set_length(total);
        p2.set_position(sent);
    };
    let opts = ImageUploadOptions {
        filename: None,
        public,
    };
    let result = match rootfs {
        None => c.upload_image(tarball, &opts, progress).await,
        Some(r) => c.upload_image_split(tarball, r, &opts, progress).await,
    };
    pb.finish_and_clear();
    match result {
        Ok(server_fp) => Ok(server_fp),
        // Uploaded meanwhile by someone else: the local fingerprint is the one.
        Err(e) if e.is_conflict() || e.to_string().contains("already exists") => Ok(fp),
        Err(e) => Err(e.into()),
    }
}

/// Points each alias at `fp`, moving aliases that point elsewhere.
async fn point_aliases(c: &Client, fp: &str, aliases: &[String]) -> Result<()> {
    for a in aliases {
        validate_alias_name(a)?;
        match c.image_alias(a).await {
            Ok(existing) if existing.target == fp => {}
            Ok(existing) => {
                c.delete_image_alias(a).await?;
                c.create_image_alias(a, fp, &existing.description).await?;
            }
            Err(e) if e.is_not_found() => c.create_image_alias(a, fp, "").await?,
            Err(e) => return Err(e.into()),
        }
        println!("Alias {a} -> {}", short_fp(fp));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Image {
        serde_json::from_value(serde_json::json!({
            "auto_update": false, "properties": {"description": "Debian bookworm amd64 (anchor, debootstrap minbase)",
            "os": "debian"}, "public": false, "expires_at": "1970-01-01T00:00:00Z", "profiles": ["default"],
            "aliases": [{"name": "bookworm", "description": ""}, {"name": "d", "description": ""}],
            "architecture": "x86_64", "cached": false, "filename": "bookworm-unified.tar.gz",
            "fingerprint": "e8b1265df84efdf3241ce4d57cde793e33a564fd76c38a5b0ad8938a45ea6d8f", "size": 100949597,
            "type": "container", "created_at": "2026-11-22T12:15:30Z", "last_used_at": "2026-11-22T13:14:44.722968701Z",
            "uploaded_at": "2026-11-22T12:15:48.904439855Z"}))
        .unwrap()
    }

    #[test]
    fn list_row_like_lxc() {
        let rows = image_rows(&[image()], &image_columns("lfpdatsu").unwrap());
        assert_eq!(
            rows[0],
            vec![
                "d (1 more)",
                "e8b1265df84e",
                "no",
                "Debian bookworm amd64 (anchor, debootstrap minbase)",
                "x86_64",
                "CONTAINER",
                "96.27MB",
                "Nov 22, 2026 at 12:15pm (UTC)"
            ]
        );
    }

    #[test]
    fn chosen_columns() {
        let cols = image_columns("L,F,a").unwrap();
        let rows = image_rows(&[image()], &cols);
        assert_eq!(
            rows[0],
            vec![
                "bookworm\nd",
                "e8b1265df84efdf3241ce4d57cde793e33a564fd76c38a5b0ad8938a45ea6d8f",
                "x86_64"
            ]
        );
        let e = image_columns("lz").unwrap_err().to_string();
        assert_eq!(e, "Unknown column shorthand char 'z' in 'lz'");
    }

    #[test]
    fn info_like_lxc() {
        let text = render_image_info(&image());
        assert!(text.starts_with("Fingerprint: e8b1265df84efdf3241ce4d57cde793e33a564fd76c38a5b0ad8938a45ea6d8f\nSize: 96.27MB\n"));
        assert!(text.contains("Timestamps:\n    Created: 2026/11/22 12:15 UTC\n    Uploaded: 2026/11/22 12:15 UTC\n    Expires: never\n    Last used: 2026/11/22 13:14 UTC\n"));
        assert!(text.ends_with("Cached: no\nAuto update: disabled\nProfiles:\n    - default\n"));
    }

    #[test]
    fn filters_and_fingerprints() {
        assert!(image_matches(&image(), &["book".into()]));
        assert!(image_matches(
            &image(),
            &["e8b1".into(), "os=debian".into()]
        ));
        assert!(!image_matches(&image(), &["os=alpine".into()]));
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"abc").unwrap();
        std::fs::write(&b, b"").unwrap();
        let fp = local_fingerprint(&[&a, &b]).unwrap();
        assert_eq!(
            fp,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
