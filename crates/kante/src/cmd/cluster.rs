//! `kante cluster …` over `/1.0/cluster` and `/1.0/cluster/members`, as
//! `lxc cluster` does: `enable` and `join` wait for their operation;
//! `add` prints the join token (base64 of the token operation's
//! metadata, LXD's format); `list` shows each member's state (ONLINE while
//! its heartbeat lease lives, EVACUATED from `evacuate` to `restore`)
//! and roles; `evacuate`/`restore` wait for their operation. `kante
//! service list` shows
//! `GET /1.0/services` (a Kante extension).

use anyhow::{bail, Result};
use kante_api::cluster::{ClusterJoinToken, ClusterMember, ClusterMemberStatePost, ClusterPut};
use kante_client::Client;

use super::{print_list, to_yaml};
use crate::cli::cluster::{ClusterCmd, ServiceCmd};

/// The arguments after a bare `REMOTE:` (already split off, so empty).
fn last(args: &[String], what: &str) -> Result<String> {
    let rest: Vec<&String> = args.iter().filter(|a| !a.is_empty()).collect();
    match rest.as_slice() {
        [one] => Ok((*one).clone()),
        _ => bail!("Expected [REMOTE:] {what}"),
    }
}

pub async fn run(c: &Client, cmd: ClusterCmd) -> Result<i32> {
    match cmd {
        ClusterCmd::Enable { args } => {
            let name = last(&args, "NAME")?;
            let put = ClusterPut {
                server_name: name.clone(),
                enabled: true,
                ..Default::default()
            };
            c.finish(c.put("/1.0/cluster", &put).await?).await?;
            println!("Clustering enabled: this server is member {name}");
        }
        ClusterCmd::Add { name, member } => {
            let name = match (member, name.filter(|n| !n.is_empty())) {
                (Some(m), None) => m,
                (None, Some(n)) => n,
                (Some(m), Some(n)) if m == n => m,
                (Some(_), Some(_)) => bail!("Give the member name once: as the argument or --name"),
                (None, None) => bail!("Missing cluster member name"),
            };
            let body = serde_json::json!({ "server_name": name });
            let resp = c.post("/1.0/cluster/members", &body).await?;
            let op: kante_api::operation::Operation = resp
                .metadata()
                .map_err(|_| anyhow::anyhow!("The server did not answer with a token operation"))?;
            let meta = &op.metadata;
            let s = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
            let token = ClusterJoinToken {
                server_name: s("serverName"),
                secret: s("secret"),
                fingerprint: s("fingerprint"),
                addresses: serde_json::from_value(meta["addresses"].clone()).unwrap_or_default(),
                expires_at: s("expiresAt"),
            };
            if token.secret.is_empty() {
                bail!("The server answered without a join token");
            }
            let json = serde_json::to_vec(&token)?;
            println!("Member {name} join token:");
            println!("{}", kante_tls::encode_base64(&json));
        }
        ClusterCmd::Join { args } => {
            let token = last(&args, "TOKEN")?;
            let put = ClusterPut {
                enabled: true,
                cluster_token: token,
                ..Default::default()
            };
            c.finish(c.put("/1.0/cluster", &put).await?).await?;
            let me: kante_api::cluster::Cluster = c.get_json("/1.0/cluster").await?;
            println!("Joined the cluster as member {}", me.server_name);
        }
        ClusterCmd::List { format, .. } => {
            let members: Vec<ClusterMember> =
                c.get_json("/1.0/cluster/members?recursion=1").await?;
            print_list(
                format,
                &members,
                &["NAME", "URL", "ROLES", "ARCHITECTURE", "STATE", "MESSAGE"],
                || {
                    members
                        .iter()
                        .map(|m| {
                            vec![
                                m.server_name.clone(),
                                m.url.clone(),
                                m.roles.join("\n"),
                                m.architecture.clone(),
                                m.status.to_uppercase(),
                                m.message.clone(),
                            ]
                        })
                        .collect()
                },
            )?;
        }
        ClusterCmd::Show { name } => {
            let m: ClusterMember = c
                .get_json(&format!(
                    "/1.0/cluster/members/{}",
                    kante_client::path_segment(&name)
                ))
                .await?;
            print!("{}", to_yaml(&m)?);
        }
        ClusterCmd::Evacuate { name, action, .. } => {
            member_state(c, &name, "evacuate", action.unwrap_or_default()).await?;
            println!("Member {name} evacuated");
        }
        ClusterCmd::Restore { name, .. } => {
            member_state(c, &name, "restore", String::new()).await?;
            println!("Member {name} restored");
        }
        ClusterCmd::Group(g) => return super::cluster_group::run(c, g).await,
        ClusterCmd::Remove { name, force, yes } => {
            if force && !yes {
                let question = format!(
                    "Forcefully removing a member should only be done as a last resort: it leaves \
                     the cluster even if it holds instances or cannot be reached, and its \
                     instances are no longer reachable through the cluster.\n\n\
                     Are you really sure you want to force removing {name}? (yes/no): "
                );
                if !super::lifecycle::confirm(&question)? {
                    bail!("User aborted delete operation");
                }
            }
            let mut path = format!("/1.0/cluster/members/{}", kante_client::path_segment(&name));
            if force {
                path.push_str("?force=1");
            }
            c.delete(&path).await?;
            println!("Member {name} removed from the cluster");
        }
    }
    Ok(0)
}

/// `POST /1.0/cluster/members/NAME/state` (as lxc's `cluster
/// evacuate|restore`), its operation waited for.
async fn member_state(c: &Client, name: &str, action: &str, mode: String) -> Result<()> {
    let post = ClusterMemberStatePost {
        action: action.into(),
        mode,
    };
    let path = format!(
        "/1.0/cluster/members/{}/state",
        kante_client::path_segment(name)
    );
    c.finish(c.post(&path, &post).await?).await?;
    Ok(())
}

/// `kante service …`.
pub async fn service(c: &Client, cmd: ServiceCmd) -> Result<i32> {
    match cmd {
        ServiceCmd::List { format, .. } => {
            let mut services: Vec<kante_api::service::Service> =
                c.get_json("/1.0/services").await?;
            services.sort_by(|a, b| (&a.name, &a.instance).cmp(&(&b.name, &b.instance)));
            print_list(
                format,
                &services,
                &["NAME", "INSTANCE", "ADDRESS", "PORT", "PROTOCOL", "MEMBER"],
                || {
                    services
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.instance.clone(),
                                s.address.clone(),
                                s.port.to_string(),
                                s.proto.clone(),
                                s.member.clone(),
                            ]
                        })
                        .collect()
                },
            )?;
        }
    }
    Ok(0)
}
