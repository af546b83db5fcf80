//! What the engine takes from the host it runs on, given to
//! [`crate::Engine::open`]: the container runtime, the kernel's network
//! interface (links, Open vSwitch, dnsmasq), the host's lxcfs, root's
//! subordinate id range and the storage drivers. `kanted` passes the real
//! ones ([`HostDeps::system`]); tests pass fakes (the `testing` feature's
//! [`crate::testing`]), so a real engine runs without root.

use std::sync::Arc;

use kante_network::NetContext;
use kante_runtime::lxcfs::Lxcfs;
use kante_runtime::Runtime;
use kante_storage::Registry;

use crate::instance::idmaps::HostIdRange;
use crate::Result;

pub struct HostDeps {
    /// Starts, signals, freezes and enters containers.
    pub(crate) runtime: Arc<dyn Runtime>,
    /// Kernel links, Open vSwitch and the dnsmasq children of managed networks.
    pub(crate) net: Arc<NetContext>,
    /// The host's lxcfs, bound over the guests' /proc files.
    pub(crate) lxcfs: Arc<Lxcfs>,
    /// Root's subordinate ids, cut into per-instance blocks.
    pub(crate) id_range: HostIdRange,
    /// The drivers pools can be made with.
    pub(crate) storage: Registry,
}

impl HostDeps {
    /// This host's: rtnetlink (on the current tokio runtime) and the
    /// system's Open vSwitch, lxcfs at its usual place (`KANTE_LXCFS*`),
    /// `/etc/subuid` and `/etc/subgid`, and the built-in storage drivers.
    pub fn system(runtime: Arc<dyn Runtime>) -> Result<HostDeps> {
        Ok(HostDeps {
            runtime,
            net: NetContext::system()?,
            lxcfs: Arc::new(Lxcfs::system()),
            id_range: HostIdRange::system(),
            storage: Registry::builtin(),
        })
    }
}
