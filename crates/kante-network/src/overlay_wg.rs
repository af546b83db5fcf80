//! Encrypted overlays (`security.encryption=wireguard`): the overlay's
//! VXLAN runs inside WireGuard between the members.
//!
//! Per member and encrypted overlay: a WireGuard interface `kwg<VNI>`
//! served by a userspace `wireguard-go` ([`crate::wg_daemon`]: the kernel
//! has no WireGuard module), a private key made here (`wg genkey`, file
//! `wg.key`, mode 0600, in the network's state dir; it never leaves the
//! member), listening on UDP [`listen_port`] of the VNI, and an *inner*
//! address [`inner_addr`]: the overlay's /24 of 100.64.0.0/10 (block
//! `VNI mod 16384`), host `slice + 1` (the member's recorded DHCP slice,
//! so an encrypted overlay spans the at most 8 members that have one).
//! The engine hands the driver this member's inner address as the
//! overlay's `overlay.local` and the peers' as `overlay.peers`, so the
//! VXLAN device's `local` and FDB destinations are inner addresses and
//! VXLAN's UDP goes through `kwg<VNI>` (connected route of the /24), and
//! the WireGuard peers as `overlay.wg.peers` (public key, underlay
//! endpoint, inner /32), which [`sync`] applies to the interface. Public
//! keys are published in shared state by the engine. MTUs: `kwg` gets
//! the underlay's minus [`WG_OVERHEAD`], the VXLAN and bridge that minus
//! VXLAN's 50 (found from the interface holding the inner address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};

use crate::driver::NetworkSpec;
use crate::wg_daemon;
use crate::{ConfigMap, NetContext, NetworkError, Result};

/// The user's key that asks for encryption.
pub const KEY_ENCRYPTION: &str = "security.encryption";
/// Its one accepted value (besides `none` and empty).
pub const WIREGUARD: &str = "wireguard";
/// The WireGuard peers of this member (computed by the engine): entries
/// `<inner address>=<public key>@<underlay address>:<port>`, comma-separated.
pub const KEY_WG_PEERS: &str = "overlay.wg.peers";
/// This member's underlay address (computed by the engine for encrypted
/// overlays, whose `overlay.local` is the inner address).
pub const KEY_WG_UNDERLAY: &str = "overlay.wg.underlay";
/// What WireGuard over IPv4 adds to a packet (IPv4 20, UDP 8, header 32,
/// tag 16, padding up to 4; the figure wg-quick uses).
pub const WG_OVERHEAD: u32 = 80;
/// How many overlays' inner /24s 100.64.0.0/10 holds.
pub const INNER_BLOCKS: u32 = 16_384;
/// The first listen port (the overlay's is this plus its block).
pub const PORT_BASE: u16 = 40_000;

fn invalid(msg: impl Into<String>) -> NetworkError {
    NetworkError::InvalidConfig(msg.into())
}

/// Whether `config` asks for WireGuard; an unknown value is refused.
pub fn encrypted(config: &ConfigMap) -> Result<bool> {
    match config.get(KEY_ENCRYPTION).map(String::as_str) {
        None | Some("") | Some("none") => Ok(false),
        Some(WIREGUARD) => Ok(true),
        Some(v) => Err(invalid(format!(
            "{KEY_ENCRYPTION} {v:?}: expected \"{WIREGUARD}\" or \"none\""
        ))),
    }
}

/// The WireGuard interface of the overlay with `vni`.
pub fn device_name(vni: u32) -> String {
    format!("kwg{vni}")
}

/// The overlay's block of 100.64.0.0/10.
fn block(vni: u32) -> u32 {
    vni % INNER_BLOCKS
}

/// The overlay's inner /24 (member-to-member transport, never routed
/// beyond the `kwg` interfaces).
pub fn inner_net(vni: u32) -> Ipv4Net {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (block(vni) << 8);
    Ipv4Net::new(Ipv4Addr::from(base), 24).expect("/24")
}

/// The inner address of the member with DHCP slice `slice`.
pub fn inner_addr(vni: u32, slice: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(inner_net(vni).network()) + slice + 1)
}

/// The UDP port every member's `kwg<VNI>` listens on.
pub fn listen_port(vni: u32) -> u16 {
    PORT_BASE + block(vni) as u16
}

/// Why two encrypted overlays would clash: the same inner block (and so
/// listen port); only possible with given VNIs.
pub fn clash(a: &ConfigMap, b: &ConfigMap) -> Option<String> {
    let vni = |c: &ConfigMap| -> Option<u32> {
        if !encrypted(c).ok()? {
            return None;
        }
        c.get("overlay.vni")?.parse().ok()
    };
    let (x, y) = (vni(a)?, vni(b)?);
    (x != y && block(x) == block(y)).then(|| {
        format!(
            "VNI {x} and {y} share the inner network {} and port {} (VNIs equal modulo {INNER_BLOCKS})",
            inner_net(x),
            listen_port(x)
        )
    })
}

/// One WireGuard peer of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    pub inner: Ipv4Addr,
    /// Base64, as `wg` prints it.
    pub public_key: String,
    pub endpoint: SocketAddr,
}

/// `peers` as [`KEY_WG_PEERS`] holds them.
pub fn render_peers(peers: &[WgPeer]) -> String {
    let v: Vec<String> = peers
        .iter()
        .map(|p| format!("{}={}@{}", p.inner, p.public_key, p.endpoint))
        .collect();
    v.join(",")
}

fn is_key(k: &str) -> bool {
    k.len() == 44
        && k.ends_with('=')
        && k[..43]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}

/// Parses [`KEY_WG_PEERS`].
pub fn parse_peers(text: &str) -> Result<Vec<WgPeer>> {
    let mut out = Vec::new();
    for e in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || invalid(format!("{KEY_WG_PEERS}: bad entry {e:?}"));
        let (inner, rest) = e.split_once('=').ok_or_else(bad)?;
        let (key, endpoint) = rest.rsplit_once('@').ok_or_else(bad)?;
        if !is_key(key) {
            return Err(bad());
        }
        out.push(WgPeer {
            inner: inner.parse().map_err(|_| bad())?,
            public_key: key.to_string(),
            endpoint: endpoint.parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}

/// What the driver needs of an encrypted overlay's config.
struct WgSetup {
    vni: u32,
    inner: Ipv4Addr,
    underlay: IpAddr,
    /// `None`: unknown (not computed), left as they are.
    peers: Option<Vec<WgPeer>>,
}

fn setup(config: &ConfigMap) -> Result<WgSetup> {
    let get = |k: &str| config.get(k).map(String::as_str);
    let vni: u32 = get("overlay.vni")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("the overlay has no VNI yet"))?;
    let inner = match get("overlay.local").map(str::parse::<Ipv4Addr>) {
        Some(Ok(a)) if inner_net(vni).contains(&a) => a,
        _ => {
            return Err(invalid(
                "this member has no inner address in the encrypted overlay (no DHCP slice: it \
                 joined after the overlay was made)",
            ))
        }
    };
    let underlay = get(KEY_WG_UNDERLAY)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("this member's underlay address is unknown"))?;
    Ok(WgSetup {
        vni,
        inner,
        underlay,
        peers: get(KEY_WG_PEERS).map(parse_peers).transpose()?,
    })
}

/// This member's public key of the overlay `net` (what the engine
/// publishes); an error while it has no private key (made by [`ensure`]
/// only, so a deleted overlay's is never made again here).
pub async fn public_key(net: &NetworkSpec) -> Result<String> {
    wg_daemon::public_key(&net.state_dir).await
}

/// Serializes the changes to WireGuard daemons of this process: the
/// keeper's [`sync`] never restarts a daemon an overlay's delete is
/// stopping.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails naming the package when a program encrypted overlays need is
/// missing (checked before anything is made).
pub fn check_tools() -> Result<()> {
    for (prog, package) in [
        ("wireguard-go", "wireguard-go"),
        ("wg", "wireguard-tools"),
        ("nsenter", "util-linux"),
    ] {
        if crate::ovs::find_program(prog).is_none() {
            return Err(NetworkError::MissingTool(prog, package));
        }
    }
    Ok(())
}

/// Whether peers were computed for `config` (an encrypted overlay's
/// FDB is left alone until they are).
pub fn peers_known(config: &ConfigMap) -> bool {
    config.contains_key(KEY_WG_PEERS)
}

/// Brings this member's `kwg<VNI>` up (started, keyed, addressed, MTU
/// set, peers applied); called before the overlay's VXLAN is made, as
/// that needs the inner address. Idempotent; restarts a dead daemon.
pub async fn ensure(ctx: &NetContext, net: &NetworkSpec) -> Result<()> {
    let _held = LOCK.lock().await;
    ensure_locked(ctx, net).await
}

async fn ensure_locked(ctx: &NetContext, net: &NetworkSpec) -> Result<()> {
    let s = setup(&net.config)?;
    let (_, underlay_mtu) = crate::overlay::underlay_mtu(&*ctx.ops, s.underlay).await?;
    let dev = device_name(s.vni);
    let key = wg_daemon::ensure_key(&net.state_dir).await?;
    let pid = wg_daemon::ensure_running(ctx, &dev, &net.state_dir).await?;
    let port = listen_port(s.vni).to_string();
    let key = key.display().to_string();
    wg_daemon::wg(
        pid,
        &["set", &dev, "listen-port", &port, "private-key", &key],
    )
    .await?;
    let want = IpNet::V4(Ipv4Net::new(s.inner, 24).expect("/24"));
    if !ctx.ops.addresses(&dev).await?.contains(&want) {
        ctx.ops.add_address(&dev, want).await?;
    }
    ctx.ops
        .set_mtu(&dev, underlay_mtu.saturating_sub(WG_OVERHEAD))
        .await?;
    ctx.ops.set_up(&dev).await?;
    if let Some(peers) = &s.peers {
        apply_peers(pid, &dev, peers).await?;
    }
    Ok(())
}

/// Keeps `kwg<VNI>` to `net`'s config: a dead daemon is restarted (and
/// configured again), the peers are made to match. Nothing is done once
/// the overlay's VXLAN device is gone (its delete). Returns whether the
/// daemon had to be restarted.
pub async fn sync(ctx: &NetContext, net: &NetworkSpec) -> Result<bool> {
    let _held = LOCK.lock().await;
    let s = setup(&net.config)?;
    if ctx
        .ops
        .link(&crate::overlay::device_name(s.vni))
        .await?
        .is_none()
    {
        return Ok(false);
    }
    let dev = device_name(s.vni);
    match wg_daemon::running_pid(&net.state_dir, &dev) {
        Some(pid) if ctx.ops.link(&dev).await?.is_some() => {
            if let Some(peers) = &s.peers {
                apply_peers(pid, &dev, peers).await?;
            }
            Ok(false)
        }
        _ => {
            ensure_locked(ctx, net).await?;
            Ok(true)
        }
    }
}

/// Makes the interface's peers `want` (by public key; endpoint and
/// allowed IPs updated where they differ), leaving unchanged ones alone
/// so their sessions live on.
async fn apply_peers(pid: u32, dev: &str, want: &[WgPeer]) -> Result<()> {
    let have = wg_daemon::dump(pid, dev).await?.peers;
    for p in have
        .iter()
        .filter(|h| !want.iter().any(|w| w.public_key == h.public_key))
    {
        wg_daemon::wg(pid, &["set", dev, "peer", &p.public_key, "remove"]).await?;
    }
    for w in want {
        let allowed = format!("{}/32", w.inner);
        let same = have.iter().any(|h| {
            h.public_key == w.public_key
                && h.endpoint == Some(w.endpoint)
                && h.allowed_ips == allowed
        });
        if !same {
            let endpoint = w.endpoint.to_string();
            wg_daemon::wg(
                pid,
                &[
                    "set",
                    dev,
                    "peer",
                    &w.public_key,
                    "endpoint",
                    &endpoint,
                    "allowed-ips",
                    &allowed,
                    "persistent-keepalive",
                    "25",
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Stops this member's `kwg<VNI>` of `net` (the daemon, the link, the key).
pub async fn remove(ctx: &NetContext, net: &NetworkSpec, vni: u32) -> Result<()> {
    let _held = LOCK.lock().await;
    let dev = device_name(vni);
    wg_daemon::stop(&net.state_dir, &dev)?;
    if let Some(l) = ctx.ops.link(&dev).await? {
        if l.kind.as_deref() == Some("tun") || l.kind.is_none() {
            ctx.ops.delete_link(&dev).await?;
        }
    }
    wg_daemon::remove_key(&net.state_dir)
}

pub use wg_daemon::{WgDump, WgPeerState};

/// The live state of this member's `kwg<VNI>` (`wg show … dump`), or
/// `None` when its daemon does not run.
/// `state_dir`: the network's.
pub async fn state(state_dir: &std::path::Path, vni: u32) -> Result<Option<WgDump>> {
    let dev = device_name(vni);
    match wg_daemon::running_pid(state_dir, &dev) {
        Some(pid) => wg_daemon::dump(pid, &dev).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_checked() {
        assert!(!encrypted(&cfg(&[])).unwrap());
        assert!(!encrypted(&cfg(&[(KEY_ENCRYPTION, "none")])).unwrap());
        assert!(encrypted(&cfg(&[(KEY_ENCRYPTION, "wireguard")])).unwrap());
        let e = encrypted(&cfg(&[(KEY_ENCRYPTION, "ipsec")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"ipsec\"") && e.contains("wireguard"), "{e}");
    }

    #[test]
    fn inner_plan() {
        assert_eq!(inner_net(4096).to_string(), "100.80.0.0/24");
        assert_eq!(inner_addr(4096, 0), Ipv4Addr::new(100, 80, 0, 1));
        assert_eq!(inner_addr(4097, 2), Ipv4Addr::new(100, 80, 1, 3));
        assert_eq!(inner_net(16_383).to_string(), "100.127.255.0/24");
        assert_eq!(listen_port(4096), 44_096);
        assert_eq!(listen_port(16_383), 56_383);
        let enc = |v: &str| cfg(&[(KEY_ENCRYPTION, "wireguard"), ("overlay.vni", v)]);
        assert!(clash(&enc("5"), &enc(&(5 + INNER_BLOCKS).to_string())).is_some());
        assert!(clash(&enc("5"), &enc("6")).is_none());
        assert!(clash(&cfg(&[("overlay.vni", "5")]), &enc("16389")).is_none());
    }

    #[test]
    fn peers_round_trip() {
        let p = vec![WgPeer {
            inner: Ipv4Addr::new(100, 80, 0, 2),
            public_key: "x".repeat(43) + "=",
            endpoint: "192.0.2.2:44096".parse().unwrap(),
        }];
        let text = render_peers(&p);
        assert_eq!(parse_peers(&text).unwrap(), p);
        assert!(parse_peers("100.80.0.2=short@192.0.2.2:1").is_err());
        assert!(parse_peers("").unwrap().is_empty());
    }
}
