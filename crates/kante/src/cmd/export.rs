//! `kante export` and `kante import`: an instance with its snapshots as a
//! backup tarball (LXD's format), and back.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kante_api::backup::InstanceBackupsPost;
use kante_client::{BackupImportOptions, Client};

use super::check_name;
use crate::cli::{ExportArgs, ImportArgs};

/// How long the server keeps the backup if we die before deleting it.
const BACKUP_EXPIRY_HOURS: i64 = 24;

fn bar(template: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

fn extension(compression: &str) -> Result<&'static str> {
    Ok(match compression {
        "gzip" => "tar.gz",
        "zstd" => "tar.zst",
        "none" => "tar",
        other => bail!("Unsupported compression {other:?} (use gzip, zstd or none)"),
    })
}

pub async fn export(c: &Client, args: ExportArgs) -> Result<i32> {
    check_name(&args.instance)?;
    let ext = extension(&args.compression)?;
    let target = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.{ext}", args.instance)));
    let req = InstanceBackupsPost {
        expires_at: Some(kante_api::now() + chrono::Duration::hours(BACKUP_EXPIRY_HOURS)),
        instance_only: args.instance_only,
        compression_algorithm: args.compression.clone(),
        ..Default::default()
    };
    let op = c.start_backup(&args.instance, &req).await?;
    let backup = op
        .resources
        .get("backups")
        .and_then(|v| v.first())
        .and_then(|u| u.rsplit('/').next())
        .map(str::to_string)
        .context("the server did not name the backup")?;
    let pb = bar("Backing up instance: [{bar:30}] {pos}% {msg}");
    pb.set_length(100);
    let p2 = pb.clone();
    let made = c
        .wait_operation_progress(&op.id, move |op| {
            let pct = op.metadata["progress"]["percent"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            p2.set_position(pct);
        })
        .await;
    pb.finish_and_clear();
    made?;
    let downloaded = download(c, &args.instance, &backup, &target).await;
    // The server-side copy goes in any case (it would expire anyway).
    let deleted = c.delete_backup(&args.instance, &backup).await;
    downloaded?;
    deleted.context("deleting the backup on the server")?;
    Ok(0)
}

/// Downloads into `<target>.partial`, renamed into place when complete.
async fn download(c: &Client, instance: &str, backup: &str, target: &Path) -> Result<()> {
    let mut partial = target.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut f = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let pb = bar("Exporting backup: [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})");
    let p2 = pb.clone();
    let got = c
        .download_backup(instance, backup, &mut f, move |got, total| {
            p2.set_length(total);
            p2.set_position(got);
        })
        .await;
    pb.finish_and_clear();
    let done = match got {
        Ok(_) => f.sync_all().await.map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    drop(f);
    if let Err(e) = done.and_then(|_| {
        std::fs::rename(&partial, target).with_context(|| format!("writing {}", target.display()))
    }) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok(())
}

pub async fn import(c: &Client, args: ImportArgs) -> Result<i32> {
    if let Some(n) = &args.name {
        check_name(n)?;
    }
    let meta = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", args.file.display());
    }
    let pb = bar("Importing backup: [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}) {msg}");
    let p2 = pb.clone();
    let opts = BackupImportOptions {
        name: args.name.clone(),
        pool: args.storage.clone(),
    };
    let result = c
        .import_backup(&args.file, &opts, move |sent, total| {
            p2.set_length(total);
            p2.set_position(sent);
            if sent == total {
                p2.set_message("unpacking…");
            }
        })
        .await;
    pb.finish_and_clear();
    result?;
    Ok(0)
}
