//! `kante image copy REMOTE:IMAGE [DEST:] --alias A [--auto-update]`: the
//! destination pulls the image from the source over HTTPS (LXD's `lxd`
//! protocol), as `lxc image copy` asks it to. The CLI resolves the image
//! on the source (an alias or a fingerprint prefix, with its own trusted
//! client), and hands the destination the source's address and the
//! certificate pinned for it; the destination sees the source's public
//! images, and a private one by a one-time secret this client asks the
//! source for (`POST /1.0/images/{fp}/secret`), as lxc does. An alias
//! given travels with the request, so the copy's refresh follows it. From
//! a simplestreams remote the destination resolves the alias itself
//! (`protocol: simplestreams`). The download's progress is shown as a
//! bar.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kante_api::image::{ImageAliasRef, ImagesPost};
use kante_api::names::validate_alias_name;
use kante_client::Client;
use serde_json::json;

use crate::remote::{self, connect, Config, LOCAL};

/// What `image copy` was given (the destination's remote already split
/// off by the router: `dst` is its client).
pub struct CopyArgs {
    pub source: String,
    pub aliases: Vec<String>,
    pub auto_update: bool,
    pub public: bool,
}

/// The `source` of a pull request (an image copy or a launch) for the
/// image `name` (an alias or a fingerprint) on remote `src`, as lxc sends
/// it: the server, its protocol and the certificate pinned for it (a
/// simplestreams remote may have none: the system's CAs then decide).
pub fn remote_image_source(cfg: &Config, src: &str, name: &str) -> Result<serde_json::Value> {
    let r = cfg
        .remotes
        .get(src)
        .with_context(|| format!("The remote \"{src}\" doesn't exist"))?;
    if r.protocol == "simplestreams" {
        let certificate = std::fs::read_to_string(cfg.server_cert_path(src)).unwrap_or_default();
        return Ok(json!({
            "type": "image",
            "mode": "pull",
            "protocol": "simplestreams",
            "server": r.addr,
            "certificate": certificate,
            "alias": name,
        }));
    }
    let path = cfg.server_cert_path(src);
    let certificate = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "No certificate is pinned for remote {src} ({}); remove the remote and add it again",
            path.display()
        )
    })?;
    Ok(json!({
        "type": "image",
        "mode": "pull",
        "protocol": "lxd",
        "server": r.addr,
        "certificate": certificate,
        "fingerprint": name,
    }))
}

/// What a server pulling the image `name` of remote `src` is told (an
/// image copy's or a launch's `source`). A simplestreams server's alias
/// the puller resolves itself; an LXD server's image is resolved here,
/// with this client's trust, and a private one gets a one-time secret.
pub async fn pull_source(cfg: &Config, src: &str, name: &str) -> Result<serde_json::Value> {
    let simplestreams = cfg
        .remotes
        .get(src)
        .is_some_and(|r| r.protocol == "simplestreams");
    let mut source = if simplestreams {
        remote_image_source(cfg, src, name)?
    } else {
        let client = connect::client(cfg, src)?;
        let fp = client
            .resolve_image(name)
            .await
            .with_context(|| format!("Image {name:?} on {src}"))?;
        let mut source = remote_image_source(cfg, src, &fp)?;
        if !fp.starts_with(&name.to_ascii_lowercase()) {
            source["alias"] = json!(name);
        }
        if !client.image(&fp).await?.public {
            source["secret"] = json!(image_secret(&client, &fp).await?);
        }
        source
    };
    if let Some(obj) = source.as_object_mut() {
        obj.retain(|_, v| v.as_str() != Some(""));
    }
    Ok(source)
}

/// A one-time secret for the private image `fp` on `src`: the running
/// operation the source made carries it.
async fn image_secret(src: &Client, fp: &str) -> Result<String> {
    let resp = src
        .post(&format!("/1.0/images/{fp}/secret"), &json!({}))
        .await
        .context("Asking the source for a secret for its private image")?;
    let secret = resp.envelope.metadata["metadata"]["secret"]
        .as_str()
        .unwrap_or("");
    if secret.is_empty() {
        bail!("The source gave no secret for its private image {fp}");
    }
    Ok(secret.to_string())
}

pub async fn copy(dst: &Client, args: CopyArgs) -> Result<i32> {
    for a in &args.aliases {
        validate_alias_name(a)?;
    }
    let cfg = Config::load()?;
    let (src, name) = remote::route::split(&cfg, &args.source)?;
    let src = src.unwrap_or(&cfg.default_remote).to_string();
    if src == LOCAL {
        bail!("The source must be a remote (REMOTE:IMAGE): the destination downloads from it over HTTPS");
    }
    if name.is_empty() {
        bail!("No image named: REMOTE:ALIAS or REMOTE:FINGERPRINT");
    }
    let mut source = pull_source(&cfg, &src, name).await?;
    let req = ImagesPost {
        aliases: args
            .aliases
            .iter()
            .map(|a| ImageAliasRef {
                name: a.clone(),
                description: String::new(),
            })
            .collect(),
        public: args.public,
        auto_update: args.auto_update,
        source: Some(std::mem::take(&mut source)),
        ..Default::default()
    };
    let resp = dst.post("/1.0/images", &req).await?;
    let id = resp
        .operation_id()
        .context("the destination answered the copy without an operation")?;
    let pb = ProgressBar::new(100);
    pb.set_style(
        ProgressStyle::with_template("Copying the image: [{bar:30}] {pos}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let p2 = pb.clone();
    let done = dst
        .wait_operation_progress(&id, move |op| {
            let pct = op.metadata["progress"]["percent"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            p2.set_position(pct);
            if let Some(line) = op.metadata["download_progress"].as_str() {
                // "rootfs: 45% (12.30MB/s)": the speed part.
                if let Some(speed) = line.rsplit_once('(').map(|(_, s)| s.trim_end_matches(')')) {
                    p2.set_message(speed.to_string());
                }
            }
        })
        .await;
    pb.finish_and_clear();
    done?;
    println!("Image copied successfully!");
    Ok(0)
}
