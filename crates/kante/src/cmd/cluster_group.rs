//! `kante cluster group …` over `/1.0/cluster/groups` and a member's
//! `PUT /1.0/cluster/members/NAME`, as `lxc cluster group` does: `assign`
//! puts a member in exactly the listed groups, `remove` takes it out of
//! one (the server refuses to leave it in none), `delete` only an empty
//! group.

use anyhow::Result;
use kante_api::cluster::{ClusterGroup, ClusterGroupPost, ClusterMember, ClusterMemberPut};
use kante_client::{path_segment, Client};

use super::{print_list, to_yaml};
use crate::cli::cluster::GroupCmd;

fn group_path(name: &str) -> String {
    format!("/1.0/cluster/groups/{}", path_segment(name))
}

fn member_path(name: &str) -> String {
    format!("/1.0/cluster/members/{}", path_segment(name))
}

/// Sets member `name`'s groups, the rest of it as the server shows it.
async fn set_groups(c: &Client, name: &str, groups: Vec<String>) -> Result<()> {
    let m: ClusterMember = c.get_json(&member_path(name)).await?;
    let put = ClusterMemberPut {
        roles: m.roles,
        failure_domain: m.failure_domain,
        description: m.description,
        config: m.config,
        groups,
    };
    c.put(&member_path(name), &put).await?;
    Ok(())
}

pub async fn run(c: &Client, cmd: GroupCmd) -> Result<i32> {
    match cmd {
        GroupCmd::Create { name, description } => {
            let g = ClusterGroup {
                name: name.clone(),
                description: description.unwrap_or_default(),
                members: Vec::new(),
            };
            c.post("/1.0/cluster/groups", &g).await?;
            println!("Cluster group {name} created");
        }
        GroupCmd::List { format, .. } => {
            let groups: Vec<ClusterGroup> = c.get_json("/1.0/cluster/groups?recursion=1").await?;
            print_list(format, &groups, &["NAME", "DESCRIPTION", "MEMBERS"], || {
                groups
                    .iter()
                    .map(|g| vec![g.name.clone(), g.description.clone(), g.members.join("\n")])
                    .collect()
            })?;
        }
        GroupCmd::Show { name } => {
            let g: ClusterGroup = c.get_json(&group_path(&name)).await?;
            print!("{}", to_yaml(&g)?);
        }
        GroupCmd::Assign { member, groups } => {
            let list: Vec<String> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            set_groups(c, &member, list).await?;
            println!("Cluster member {member} added to cluster groups {groups}");
        }
        GroupCmd::Remove { member, group } => {
            let m: ClusterMember = c.get_json(&member_path(&member)).await?;
            if !m.groups.contains(&group) {
                anyhow::bail!("Cluster group {group} doesn't have member {member}");
            }
            let rest: Vec<String> = m.groups.into_iter().filter(|g| *g != group).collect();
            set_groups(c, &member, rest).await?;
            println!("Cluster member {member} removed from group {group}");
        }
        GroupCmd::Rename { name, new } => {
            c.post(&group_path(&name), &ClusterGroupPost { name: new.clone() })
                .await?;
            println!("Cluster group {name} renamed to {new}");
        }
        GroupCmd::Delete { name } => {
            c.delete(&group_path(&name)).await?;
            println!("Cluster group {name} deleted");
        }
    }
    Ok(0)
}
