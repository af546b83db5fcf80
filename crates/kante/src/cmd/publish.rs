//! `kante publish INSTANCE[/SNAPSHOT] [REMOTE:] --alias A [--public]
//! [KEY=VALUE…]`: asks the server to make an image of an instance or a
//! snapshot, as `lxc publish` does. A running instance is refused by the
//! server; `--force` stops it first and starts it again afterwards (the
//! client does it, as lxc does).

use anyhow::{bail, Context, Result};
use kante_api::image::{ImageAliasRef, ImagesPost};
use kante_api::names::validate_alias_name;
use kante_api::StatusCode;
use kante_client::Client;
use serde_json::json;

use super::{parse_kv, split_snapshot};
use crate::cli::PublishArgs;

/// The request `lxc publish` sends for these arguments.
pub fn publish_request(args: &PublishArgs) -> Result<ImagesPost> {
    for a in &args.aliases {
        validate_alias_name(a)?;
    }
    let mut properties = std::collections::BTreeMap::new();
    for kv in &args.properties {
        let (k, v) = parse_kv(kv)?;
        properties.insert(k, v);
    }
    let kind = match split_snapshot(&args.instance)? {
        Some(_) => "snapshot",
        None => "container",
    };
    let expires_at = match &args.expire {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("Bad expiry {t:?} (RFC 3339 expected)"))?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    Ok(ImagesPost {
        aliases: args
            .aliases
            .iter()
            .map(|a| ImageAliasRef {
                name: a.clone(),
                description: String::new(),
            })
            .collect(),
        public: args.public,
        properties,
        compression_algorithm: args.compression.clone().unwrap_or_default(),
        expires_at,
        source: Some(json!({"type": kind, "name": args.instance})),
        ..Default::default()
    })
}

pub async fn run(c: &Client, args: PublishArgs) -> Result<i32> {
    let req = publish_request(&args)?;
    let mut restart = false;
    let mut ephemeral = false;
    if split_snapshot(&args.instance)?.is_none() {
        let inst = c.instance(&args.instance).await?;
        let running = inst.status_code == StatusCode::Running as u16
            || inst.status_code == StatusCode::Frozen as u16;
        if running {
            if !args.force {
                bail!("The instance is currently running. Use --force to have it stopped and restarted");
            }
            // An ephemeral instance would be deleted by the stop: it is
            // made persistent until it runs again, as lxc does.
            if inst.ephemeral {
                c.patch_instance(&args.instance, &json!({"ephemeral": false}))
                    .await?;
            }
            c.stop_instance(&args.instance, true, -1).await?;
            restart = true;
            ephemeral = inst.ephemeral;
        }
    }
    let published = async {
        let resp = c.post("/1.0/images", &req).await?;
        let op = c
            .finish(resp)
            .await?
            .context("the server answered the publish without an operation")?;
        Ok::<_, anyhow::Error>(
            op.metadata["fingerprint"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }
    .await;
    if restart {
        c.start_instance(&args.instance).await?;
        if ephemeral {
            c.patch_instance(&args.instance, &json!({"ephemeral": true}))
                .await?;
        }
    }
    let fp = published?;
    println!("Instance published with fingerprint: {fp}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(instance: &str, props: &[&str]) -> PublishArgs {
        PublishArgs {
            instance: instance.into(),
            remote: None,
            properties: props.iter().map(|s| s.to_string()).collect(),
            aliases: vec!["pub1".into()],
            public: true,
            force: false,
            compression: None,
            expire: None,
        }
    }

    #[test]
    fn the_request_names_the_instance_or_snapshot_as_lxc_does() {
        let r = publish_request(&args("c1", &["os=Busybox"])).unwrap();
        assert_eq!(
            r.source.unwrap(),
            json!({"type": "container", "name": "c1"})
        );
        assert_eq!(r.properties["os"], "Busybox");
        assert_eq!(r.aliases[0].name, "pub1");
        assert!(r.public);
        let r = publish_request(&args("c1/s0", &[])).unwrap();
        assert_eq!(
            r.source.unwrap(),
            json!({"type": "snapshot", "name": "c1/s0"})
        );
        assert!(publish_request(&args("c1", &["novalue"])).is_err());
    }
}
