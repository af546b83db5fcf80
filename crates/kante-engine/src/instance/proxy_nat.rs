//! Proxy devices with `nat=true` (LXD's NAT mode): no listener in kanted
//! but port forwards in the kernel (kante-network's `forward`: DNAT from
//! the listen address to the instance's static address on a managed
//! bridge), so a connection keeps its client's address and its bytes never
//! pass through the daemon. The forwards outlive a daemon restart (the
//! restarted daemon puts the same table in place, and removes the tables of
//! instances that stopped meanwhile); they go when the device is removed or
//! the instance stops.

use std::collections::HashSet;
use std::net::IpAddr;

use kante_api::{ConfigMap, DevicesMap};
use kante_network::forward::{self, ForwardTable, IpNet, PortForward, L4};
use kante_network::ResolvedParent;

use super::proxy::{Endpoint, Proto, ProxyHandle, ProxySpec};
use crate::devices::DeviceError;
use crate::error::Result;
use crate::Engine;

/// Where a `nat=true` device forwards to: a NIC's static address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatTarget {
    /// The NIC device holding the address.
    pub nic: String,
    pub address: IpAddr,
    /// The NIC's network: its guests' connections through the forward are
    /// masqueraded (hairpin).
    pub subnet: IpNet,
    /// Whether that network is a Linux bridge (hairpin mode on its port
    /// when `br_netfilter` is on).
    pub linux_bridge: bool,
}

impl Engine {
    /// The NIC a `nat=true` device forwards to: one on a managed bridge
    /// with a static address of the listen address's family, the one whose
    /// address is the connect address (or the first, by device name, for a
    /// wildcard connect address, as LXD does).
    pub(crate) async fn nat_target(
        &self,
        device: &str,
        spec: &ProxySpec,
        devices: &DevicesMap,
    ) -> Result<NatTarget> {
        let (listen, connect) = inet_pair(device, spec)?;
        let v6 = listen.addr.is_ipv6();
        let key = if v6 { "ipv6.address" } else { "ipv4.address" };
        let networks = self.network_specs().await?;
        let mut statics = Vec::new();
        for (nic, cfg) in crate::devices::nics(devices) {
            let Some(addr) = cfg.get(key).and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            let parent = kante_network::resolve_parent(&self.net, cfg, &networks).await?;
            if let ResolvedParent::ManagedBridge {
                ipv4,
                ipv6,
                backend,
                ..
            } = parent
            {
                let subnet = match v6 {
                    false => ipv4.map(IpNet::from),
                    true => ipv6.map(IpNet::from),
                };
                if let Some(subnet) = subnet {
                    statics.push(NatTarget {
                        nic: nic.clone(),
                        address: addr,
                        subnet,
                        linux_bridge: backend == kante_network::driver::BridgeBackend::Native,
                    });
                }
            }
        }
        let want = connect.addr;
        let found = if want.is_unspecified() {
            statics.into_iter().next()
        } else {
            statics.into_iter().find(|t| t.address == want)
        };
        found.ok_or_else(|| {
            let why = if want.is_unspecified() {
                format!("nat=true needs a NIC with a static {key} on a managed bridge network (none of the instance's NICs has one)")
            } else {
                format!("nat=true: connect address {want} is not the static {key} of a NIC of the instance on a managed bridge network")
            };
            DeviceError::invalid(device, why).into()
        })
    }

    /// Refuses a `nat=true` device whose listen address is not one of this
    /// host's: its forward would never see a packet, or would take traffic
    /// passing through the host to someone else.
    pub(crate) fn check_nat_listen(&self, device: &str, spec: &ProxySpec) -> Result<()> {
        let l = inet_pair(device, spec)?.0.addr;
        if !kante_network::ifaddrs::host_ip_addresses().contains(&l) {
            return Err(DeviceError::invalid(
                device,
                format!("nat=true: listen address {l} is not an address of this host"),
            )
            .into());
        }
        Ok(())
    }

    /// Puts device `device`'s forwards in place for `instance`, whose NIC
    /// addresses are now made (`config` holds their `volatile` keys).
    pub(crate) async fn open_nat(
        &self,
        instance: &str,
        device: &str,
        spec: &ProxySpec,
        config: &ConfigMap,
    ) -> Result<ProxyHandle> {
        let target = spec
            .nat_target
            .as_ref()
            .ok_or_else(|| DeviceError::invalid(device, "nat=true: no target was resolved"))?;
        let table = forward::forward_table_name(&self.nft_prefix(), instance, device)?;
        let (listen, _) = inet_pair(device, spec)?;
        let l4 = match listen.proto {
            Proto::Tcp => L4::Tcp,
            Proto::Udp => L4::Udp,
        };
        let forwards = listen
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| PortForward {
                l4,
                listen: listen.addr,
                port: *port,
                target: target.address,
                target_port: spec.target_port(i),
            })
            .collect();
        if target.linux_bridge && forward::bridge_netfilter(target.address.is_ipv6()) {
            // As LXD: else the instance cannot reach its own forward.
            if let Some(port) = config.get(&format!("volatile.{}.host_name", target.nic)) {
                forward::set_hairpin(port)?;
            }
        }
        forward::apply(&ForwardTable {
            table: table.clone(),
            forwards,
            hairpin: vec![target.subnet],
        })
        .await?;
        Ok(ProxyHandle::nat(table))
    }

    /// After the running instances are re-attached: removes this daemon's
    /// forward tables that no running instance's device holds (instances
    /// that stopped while the daemon was away).
    pub(crate) async fn reconcile_forwards(&self) {
        let held: HashSet<String> = {
            let running = crate::lock(&self.running);
            running
                .values()
                .flat_map(|r| {
                    crate::lock(&r.proxies)
                        .values()
                        .filter_map(|h| h.nat_table().map(String::from))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let tables = match forward::list(&self.nft_prefix()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("listing proxy forwards: {e}");
                return;
            }
        };
        for t in tables.into_iter().filter(|t| !held.contains(t)) {
            match forward::remove(&t).await {
                Ok(_) => tracing::info!(table = %t, "removed the forwards of a stopped instance"),
                Err(e) => tracing::warn!(table = %t, "removing stale forwards: {e}"),
            }
        }
    }
}

/// A `nat=true` device's two IP endpoints (validation refused the rest).
fn inet_pair<'a>(device: &str, spec: &'a ProxySpec) -> Result<(&'a Endpoint, &'a Endpoint)> {
    spec.inet_pair()
        .ok_or_else(|| DeviceError::invalid(device, "nat=true forwards tcp or udp").into())
}
