//! `kante image list REMOTE:` for a simplestreams remote (`lxc image list
//! images:`): the client reads the server's catalog itself, as lxc does
//! (`streams/v1/index.json` and the products files it names), over HTTPS
//! verified by the certificate pinned for the remote or, with none, by the
//! system's CAs; each product's latest image is listed in the columns of
//! a server's images, filtered alike.

use anyhow::{bail, Context, Result};
use kante_api::image::{Image, ImageAliasRef};
use kante_client::kante_tls::{self, ServerPin};
use kante_client::{Client, HttpsTarget};
use kante_images::streams::{entries, parse_products, products_paths, Entry};

use super::image::print_images;
use crate::remote::address::Address;
use crate::remote::Config;
use crate::table::Format;

/// The largest index or products file read (images.linuxcontainers.org's
/// products file is a few MiB).
const MAX_CATALOG: usize = 64 << 20;

/// Lists the images of simplestreams remote `name`.
pub async fn list(
    cfg: &Config,
    name: &str,
    filters: &[String],
    columns: &str,
    format: Format,
) -> Result<i32> {
    let remote = cfg
        .remotes
        .get(name)
        .with_context(|| format!("The remote \"{name}\" doesn't exist"))?;
    let (client, base) = connect(cfg, name, &remote.addr)?;
    let fetch = |path: String| {
        let client = client.clone();
        async move {
            let body = client
                .get_body(&path)
                .await
                .with_context(|| format!("Reading {path} from the image server {name}"))?;
            if body.len() > MAX_CATALOG {
                bail!("{path} on {name} is larger than {MAX_CATALOG} bytes");
            }
            serde_json::from_slice::<serde_json::Value>(&body)
                .with_context(|| format!("{path} on {name} is not valid JSON (truncated?)"))
        }
    };
    let index = fetch(format!("{base}/streams/v1/index.json")).await?;
    let mut images = Vec::new();
    for path in products_paths(&index)? {
        let doc = fetch(format!("{base}/{}", path.trim_start_matches('/'))).await?;
        images.extend(entries(&parse_products(&path, doc)?).iter().map(as_image));
    }
    print_images(images, filters, columns, format)?;
    Ok(0)
}

/// A client of the server at `addr` (`https://HOST[:PORT][/PATH]`, port 443
/// by default) and the path its tree starts at.
fn connect(cfg: &Config, name: &str, addr: &str) -> Result<(Client, String)> {
    let rest = addr
        .strip_prefix("https://")
        .with_context(|| format!("The image server {name} ({addr}) is not an https:// address"))?;
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{}", p.trim_end_matches('/'))),
        None => (rest, String::new()),
    };
    let mut target = Address::parse(authority)?;
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(h, p)| p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')));
    if !has_port {
        target.port = 443;
    }
    let https = HttpsTarget {
        host: target.host,
        port: target.port,
        pin: ServerPin::default(),
        identity: None,
    };
    let pinned = cfg.server_cert_path(name);
    let client = if pinned.exists() {
        Client::https(HttpsTarget {
            pin: ServerPin {
                expected: Some(crate::remote::connect::pinned(cfg, name)?),
                ..Default::default()
            },
            ..https
        })?
    } else {
        let file = kante_tls::system_ca_file();
        let bundle = std::fs::read(&file).with_context(|| {
            format!("Reading the system's CA certificates ({})", file.display())
        })?;
        Client::https_with_roots(https, &bundle)?
    };
    Ok((client, path))
}

/// A catalog entry in the shape of a server's image.
fn as_image(e: &Entry) -> Image {
    let date = chrono::NaiveDateTime::parse_from_str(&e.version, "%Y%m%d_%H:%M")
        .map(|t| t.and_utc())
        .unwrap_or_else(|_| kante_api::zero_time());
    let mut properties = kante_api::ConfigMap::new();
    properties.insert("description".into(), e.description.clone());
    properties.insert("architecture".into(), e.architecture.clone());
    properties.insert("serial".into(), e.version.clone());
    Image {
        auto_update: false,
        properties,
        public: true,
        expires_at: kante_api::zero_time(),
        profiles: Vec::new(),
        aliases: e
            .aliases
            .iter()
            .map(|a| ImageAliasRef {
                name: a.clone(),
                description: String::new(),
            })
            .collect(),
        architecture: kernel_arch(&e.architecture).to_string(),
        cached: false,
        filename: String::new(),
        fingerprint: e.fingerprint.clone(),
        size: e.size as i64,
        kind: "container".into(),
        created_at: date,
        last_used_at: kante_api::zero_time(),
        uploaded_at: date,
    }
}

/// The kernel's name of a simplestreams architecture, as LXD shows it.
fn kernel_arch(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "armhf" => "armv7l",
        "i386" => "i686",
        "ppc64el" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::image::image_matches;

    #[test]
    fn entries_read_as_images() {
        let e = Entry {
            fingerprint: "ab".repeat(32),
            aliases: vec!["debian/12".into(), "debian/bookworm".into()],
            architecture: "amd64".into(),
            description: "Debian bookworm amd64 (default) (20260101_00:00)".into(),
            size: 1234,
            version: "20260101_07:30".into(),
        };
        let i = as_image(&e);
        assert_eq!(i.architecture, "x86_64");
        assert_eq!(i.uploaded_at.to_rfc3339(), "2026-01-01T07:30:00+00:00");
        assert_eq!(i.aliases.len(), 2);
        assert!(i.public);
        assert!(image_matches(&i, &["debian/1".into()]));
        assert!(!image_matches(&i, &["alpine".into()]));
    }
}
