//! An in-memory [`NetOps`] for unit tests of the planning logic: it keeps a
//! table of links and records every call.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::IpNet;

use crate::netlink::{LinkDetails, MacvlanRequest, NetOps, VethRequest};
use crate::netns::NetnsRef;
use crate::overlay::VxlanRequest;
use crate::tunnel::TunnelRequest;
use crate::{NetworkError, Result};

#[derive(Default)]
struct State {
    links: BTreeMap<String, LinkDetails>,
    addrs: BTreeMap<String, Vec<IpNet>>,
    /// Interfaces made inside other namespaces: (namespace path, name).
    foreign: Vec<(String, String)>,
    calls: Vec<String>,
    next_index: u32,
    /// All-zero FDB entries: (device, destination).
    fdb: std::collections::BTreeSet<(String, std::net::IpAddr)>,
}

/// See the module docs. Starts with `lo`.
pub struct FakeNetOps {
    state: Mutex<State>,
}

impl Default for FakeNetOps {
    fn default() -> Self {
        let f = FakeNetOps {
            state: Mutex::new(State {
                next_index: 1,
                ..Default::default()
            }),
        };
        f.add_link("lo", None);
        f
    }
}

impl FakeNetOps {
    pub fn new() -> FakeNetOps {
        FakeNetOps::default()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a host link of the given kind (`None`: a physical NIC).
    pub fn add_link(&self, name: &str, kind: Option<&str>) {
        let mut st = self.st();
        let index = st.next_index;
        st.next_index += 1;
        st.links.insert(
            name.to_string(),
            LinkDetails {
                index,
                name: name.to_string(),
                kind: kind.map(str::to_string),
                mtu: 1500,
                up: true,
                loopback: name == "lo",
                ..Default::default()
            },
        );
    }

    /// Every call so far, as `op arg…` strings.
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }

    /// Interfaces created in other namespaces, as (namespace path, name).
    pub fn foreign(&self) -> Vec<(String, String)> {
        self.st().foreign.clone()
    }

    fn record(&self, call: String) {
        self.st().calls.push(call);
    }

    /// The all-zero FDB entries, as (device, destination), sorted.
    pub fn fdb(&self) -> Vec<(String, std::net::IpAddr)> {
        self.st().fdb.iter().cloned().collect()
    }

    fn get(&self, name: &str) -> Result<LinkDetails> {
        self.st()
            .links
            .get(name)
            .cloned()
            .ok_or_else(|| NetworkError::NotFound(format!("interface {name}")))
    }
}

#[async_trait]
impl NetOps for FakeNetOps {
    async fn link(&self, name: &str) -> Result<Option<LinkDetails>> {
        Ok(self.st().links.get(name).cloned())
    }

    async fn links(&self) -> Result<Vec<LinkDetails>> {
        Ok(self.st().links.values().cloned().collect())
    }

    async fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<()> {
        self.record(format!("create_bridge {name} {mtu:?}"));
        if self.st().links.contains_key(name) {
            return Err(NetworkError::Exists(format!("interface {name}")));
        }
        self.add_link(name, Some("bridge"));
        if let Some(m) = mtu {
            self.st().links.get_mut(name).expect("just added").mtu = m;
        }
        Ok(())
    }

    async fn set_up(&self, name: &str) -> Result<()> {
        self.record(format!("set_up {name}"));
        self.get(name)?;
        self.st().links.get_mut(name).expect("checked").up = true;
        Ok(())
    }

    async fn set_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        self.record(format!("set_mtu {name} {mtu}"));
        self.get(name)?;
        self.st().links.get_mut(name).expect("checked").mtu = mtu;
        Ok(())
    }

    async fn set_master(&self, name: &str, master: Option<&str>) -> Result<()> {
        self.record(format!("set_master {name} {master:?}"));
        let m = match master {
            Some(m) => Some(self.get(m)?.index),
            None => None,
        };
        self.get(name)?;
        self.st().links.get_mut(name).expect("checked").master = m;
        Ok(())
    }

    async fn add_address(&self, name: &str, addr: IpNet) -> Result<()> {
        self.record(format!("add_address {name} {addr}"));
        self.get(name)?;
        let mut st = self.st();
        let v = st.addrs.entry(name.to_string()).or_default();
        if !v.contains(&addr) {
            v.push(addr);
        }
        Ok(())
    }

    async fn addresses(&self, name: &str) -> Result<Vec<IpNet>> {
        self.get(name)?;
        Ok(self.st().addrs.get(name).cloned().unwrap_or_default())
    }

    async fn create_veth(&self, req: &VethRequest) -> Result<()> {
        self.record(format!(
            "create_veth {} {} {} master={:?}",
            req.host_name,
            req.peer_name,
            req.peer_netns.path().display(),
            req.master
        ));
        if self.st().links.contains_key(&req.host_name) {
            return Err(NetworkError::Exists(format!("interface {}", req.host_name)));
        }
        let master = match &req.master {
            Some(m) => Some(self.get(m)?.index),
            None => None,
        };
        self.add_link(&req.host_name, Some("veth"));
        let mut st = self.st();
        st.links.get_mut(&req.host_name).expect("just added").master = master;
        let ns = req.peer_netns.path().display().to_string();
        st.foreign.push((ns, req.peer_name.clone()));
        Ok(())
    }

    async fn create_macvlan(&self, req: &MacvlanRequest) -> Result<()> {
        self.record(format!(
            "create_macvlan {} {} {}",
            req.name, req.parent, req.mode
        ));
        self.get(&req.parent)?;
        let ns = req.netns.path().display().to_string();
        self.st().foreign.push((ns, req.name.clone()));
        Ok(())
    }

    async fn ensure_vlan(&self, parent: &str, id: u16) -> Result<String> {
        self.record(format!("ensure_vlan {parent} {id}"));
        self.get(parent)?;
        let name = format!("{parent}.{id}");
        if !self.st().links.contains_key(&name) {
            self.add_link(&name, Some("vlan"));
        }
        Ok(name)
    }

    async fn delete_link(&self, name: &str) -> Result<bool> {
        self.record(format!("delete_link {name}"));
        let mut st = self.st();
        st.addrs.remove(name);
        Ok(st.links.remove(name).is_some())
    }

    async fn create_tunnel(&self, req: &TunnelRequest) -> Result<()> {
        self.record(format!(
            "create_tunnel {} {} id={} mtu={}",
            req.device, req.tunnel.protocol, req.tunnel.id, req.mtu
        ));
        if self.st().links.contains_key(&req.device) {
            return Err(NetworkError::Exists(format!("interface {}", req.device)));
        }
        let kind = if req.tunnel.protocol == "gre" {
            "gretap"
        } else {
            "vxlan"
        };
        self.add_link(&req.device, Some(kind));
        self.st()
            .links
            .get_mut(&req.device)
            .expect("just added")
            .mtu = req.mtu;
        Ok(())
    }

    async fn set_up_in(&self, netns: &NetnsRef, name: &str) -> Result<()> {
        let ns = netns.path().display().to_string();
        self.record(format!("set_up_in {ns} {name}"));
        match self.st().foreign.iter().any(|(n, i)| *n == ns && i == name) {
            true => Ok(()),
            false => Err(NetworkError::NotFound(format!("interface {name} in {ns}"))),
        }
    }
    async fn create_vxlan(&self, req: &VxlanRequest) -> Result<()> {
        self.record(format!(
            "create_vxlan {} vni={} local={} port={} mtu={}",
            req.device, req.vni, req.local, req.port, req.mtu
        ));
        if self.st().links.contains_key(&req.device) {
            return Err(NetworkError::Exists(format!("interface {}", req.device)));
        }
        self.add_link(&req.device, Some("vxlan"));
        self.st()
            .links
            .get_mut(&req.device)
            .expect("just added")
            .mtu = req.mtu;
        Ok(())
    }

    async fn fdb_append(&self, device: &str, dst: std::net::IpAddr) -> Result<()> {
        self.record(format!("fdb_append {device} {dst}"));
        self.get(device)?;
        self.st().fdb.insert((device.to_string(), dst));
        Ok(())
    }

    async fn fdb_delete(&self, device: &str, dst: std::net::IpAddr) -> Result<bool> {
        self.record(format!("fdb_delete {device} {dst}"));
        Ok(self.st().fdb.remove(&(device.to_string(), dst)))
    }
}
