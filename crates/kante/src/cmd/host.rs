//! `kante init --auto`: a host set up with sane defaults, as `lxd init --auto`
//! does: the default storage pool (made by the daemon itself), a managed bridge
//! with NAT on a subnet no host route or address uses, and `eth0` on it in the
//! default profile. Running it again changes nothing.

use anyhow::{bail, Context, Result};
use kante_client::kante_api::network::NetworksPost;
use kante_client::{Client, ProfilePut};

pub async fn init_auto(c: &Client, network: &str) -> Result<()> {
    match c.network(network).await {
        Ok(n) if n.managed => println!("Network {network} already exists"),
        Ok(_) => bail!(
            "{network} is an interface of the host, not a Kante network: pick another name with --network-name"
        ),
        Err(e) if e.status() == Some(404) => {
            // The daemon picks free subnets for "auto" from host routes and
            // addresses only: nothing is probed on the wire.
            let config = [
                ("ipv4.address", "auto"),
                ("ipv4.nat", "true"),
                ("ipv6.address", "auto"),
                ("ipv6.nat", "true"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let post = NetworksPost {
                name: network.into(),
                kind: "bridge".into(),
                description: "Made by kante init --auto".into(),
                config,
            };
            c.create_network(&post)
                .await
                .with_context(|| format!("creating network {network}"))?;
            let n = c.network(network).await?;
            let addr = |k: &str| n.config.get(k).cloned().unwrap_or_else(|| "-".into());
            println!(
                "Network {network} created: {} {}",
                addr("ipv4.address"),
                addr("ipv6.address")
            );
        }
        Err(e) => return Err(e.into()),
    }
    let profile = c.profile("default").await?;
    if profile
        .devices
        .values()
        .any(|d| d.get("type").map(String::as_str) == Some("nic"))
    {
        println!("The default profile already has a network interface");
        return Ok(());
    }
    if profile.devices.contains_key("eth0") {
        bail!("The default profile has a device named eth0 that is not a nic");
    }
    let mut put = ProfilePut::from(&profile);
    put.devices.insert(
        "eth0".into(),
        [("type", "nic"), ("network", network), ("name", "eth0")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    c.update_profile("default", &put, None)
        .await
        .context("adding eth0 to the default profile")?;
    println!("Default profile: eth0 on {network}");
    Ok(())
}
