//! Kante's networking: managed bridges (native Linux or Open vSwitch) with
//! dnsmasq and nftables, macvlan networks, and the NICs of instances.
//!
//! Layers, bottom up:
//! * [`subnet`]: parsing and picking addresses, MACs (pure).
//! * [`netlink`]: the [`NetOps`] trait (links, addresses, veth/macvlan made
//!   straight inside a container's network namespace) over rtnetlink, and a
//!   fake for unit tests.
//! * [`ovs`], [`dnsmasq`], [`nft`]: the userspace tools, each driven as a
//!   child process; [`forward`]: port forwards in the kernel (a table per
//!   `nat=true` proxy device).
//! * [`driver`]: [`NetworkDriver`]s (`bridge`, `macvlan`, and
//!   [`overlay`]'s cluster-wide VXLAN segments) with an idempotent
//!   lifecycle, and [`nic`]: [`NicPlan`]s for `nic` devices.
//! * [`inspect`]: host interfaces for LXD's unmanaged network list.

pub mod dhcp;
pub mod dnsmasq;
pub mod driver;
pub mod forward;
pub mod ifaddrs;
mod ifreq;
pub mod inspect;
pub mod netlink;
pub mod nft;
pub mod nic;
pub mod overlay;
pub mod overlay_holds;
pub mod overlay_route;
pub mod overlay_wg;
pub mod ovs;
pub mod subnet;
pub mod tunnel;
pub mod wg_daemon;

mod fake;
pub mod netns;

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

pub use dnsmasq::{Dnsmasq, DnsmasqConfig, Lease};
pub use driver::{driver_for, NetworkDriver, NetworkSpec, DRIVER_KINDS};
pub use fake::FakeNetOps;
pub use inspect::{list_host_interfaces, HostInterface, InterfaceKind};
pub use netlink::{LinkDetails, LinkStats, MacvlanRequest, NetOps, RtNetlink, VethRequest};
pub use netns::{set_up_in_netns, NetnsRef};
pub use nic::{plan_nics, resolve_parent, AppliedNic, NicPlan, NicRequest, ResolvedParent};
pub use ovs::{Datapath, Ovs, PrivateOvs};
pub use subnet::{pick_free_ipv4, MacAddr};

/// Config maps as stored by the engine (same type as `kante_api::ConfigMap`).
pub type ConfigMap = BTreeMap<String, String>;

#[derive(Debug, Error)]
pub enum NetworkError {
    /// A network's config is wrong (HTTP 400).
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    /// A `nic` device's config is wrong (HTTP 400).
    #[error("invalid nic device: {0}")]
    InvalidDevice(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    /// Valid request that this host or kernel cannot do.
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("no free IPv4 /24 left in 10.0.0.0/8")]
    NoFreeSubnet,
    #[error("{0} is not installed (install the Debian package {1})")]
    MissingTool(&'static str, &'static str),
    #[error("netlink: {op}: {source}")]
    Netlink { op: String, source: std::io::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{program}: {message}")]
    Command { program: String, message: String },
}

impl NetworkError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::Io { what, source }
    }

    /// True when the caller's input is at fault (render as 400, not 500).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            NetworkError::InvalidConfig(_)
                | NetworkError::InvalidDevice(_)
                | NetworkError::NotFound(_)
                | NetworkError::Exists(_)
                | NetworkError::Unsupported(_)
        )
    }
}

pub type Result<T> = std::result::Result<T, NetworkError>;

/// What the networking layer shares between networks and NICs: the kernel
/// interface, the Open vSwitch database and the running dnsmasq children.
pub struct NetContext {
    pub ops: Arc<dyn NetOps>,
    pub ovs: Ovs,
    dnsmasq: std::sync::Mutex<BTreeMap<String, Dnsmasq>>,
    /// Names every managed network's dnsmasq forwards elsewhere (see
    /// [`NetContext::set_dns_forward`]).
    forwards: std::sync::RwLock<Vec<(String, std::net::SocketAddr)>>,
}

impl NetContext {
    pub fn new(ops: Arc<dyn NetOps>, ovs: Ovs) -> Arc<NetContext> {
        Arc::new(NetContext {
            ops,
            ovs,
            dnsmasq: Default::default(),
            forwards: Default::default(),
        })
    }

    /// From now on, dnsmasqs started for managed networks forward `name`
    /// (and the names under it) to `to` (the cluster's service names to
    /// kanted's responder). Set before the networks start.
    pub fn set_dns_forward(&self, name: &str, to: std::net::SocketAddr) {
        let mut f = self.forwards.write().unwrap_or_else(|e| e.into_inner());
        f.retain(|(n, _)| n != name);
        f.push((name.to_string(), to));
    }

    /// The names forwarded, as `set_dns_forward` left them.
    pub fn dns_forwards(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.forwards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The real thing: rtnetlink on the current tokio runtime and the
    /// system's Open vSwitch database, or the one `KANTE_OVS_DB` names (a
    /// private ovsdb-server, as the tests start).
    pub fn system() -> Result<Arc<NetContext>> {
        let ovs = match std::env::var_os("KANTE_OVS_DB") {
            Some(db) if !db.is_empty() => Ovs::with_db(std::path::PathBuf::from(db)),
            _ => Ovs::system(),
        };
        Ok(NetContext::new(Arc::new(RtNetlink::new()?), ovs))
    }

    fn dnsmasq_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Dnsmasq>> {
        // A panic while holding the map leaves it consistent (plain inserts).
        self.dnsmasq.lock().unwrap_or_else(|e| e.into_inner())
    }
}
