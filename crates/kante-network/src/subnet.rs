//! Addresses, subnets, interface names and MAC addresses (pure, no I/O but
//! the host-route read in [`pick_free_ipv4`]).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::{NetworkError, Result};

/// Linux's IFNAMSIZ less the NUL.
pub const IFNAME_MAX: usize = 15;

/// `ipv4.address` of a network: `none`, `auto` or the gateway with prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Setting {
    None,
    Auto,
    /// The gateway address (the bridge's) and the subnet's prefix.
    Gateway(Ipv4Net),
}

/// `ipv6.address` of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Setting {
    None,
    Auto,
    Gateway(Ipv6Net),
}

fn invalid(msg: impl Into<String>) -> NetworkError {
    NetworkError::InvalidConfig(msg.into())
}

/// Parses `ipv4.address`: `none`, `auto` or e.g. `10.12.0.1/24`.
pub fn parse_ipv4_address(value: &str) -> Result<Ipv4Setting> {
    match value.trim() {
        "none" | "" => return Ok(Ipv4Setting::None),
        "auto" => return Ok(Ipv4Setting::Auto),
        _ => {}
    }
    let net: Ipv4Net = value.trim().parse().map_err(|_| {
        invalid(format!(
            "ipv4.address {value:?}: expected gateway/prefix like 10.12.0.1/24, auto or none"
        ))
    })?;
    validate_ipv4_gateway(net)?;
    Ok(Ipv4Setting::Gateway(net))
}

/// Checks that `net` (gateway + prefix) can be a bridge's subnet.
pub fn validate_ipv4_gateway(net: Ipv4Net) -> Result<()> {
    let what = format!("ipv4.address {net}");
    if !(8..=30).contains(&net.prefix_len()) {
        return Err(invalid(format!("{what}: prefix must be 8 to 30")));
    }
    let a = net.addr();
    if a.is_multicast() || a.is_loopback() || a.is_link_local() || a.is_unspecified() {
        return Err(invalid(format!(
            "{what}: multicast, loopback, link-local and unspecified addresses are not usable"
        )));
    }
    if a.octets()[0] == 0 || a.octets()[0] >= 240 {
        return Err(invalid(format!("{what}: reserved address")));
    }
    if a == net.network() {
        return Err(invalid(format!(
            "{what}: the gateway cannot be the network address"
        )));
    }
    if a == net.broadcast() {
        return Err(invalid(format!(
            "{what}: the gateway cannot be the broadcast address"
        )));
    }
    Ok(())
}

/// Parses `ipv6.address`: `none`, `auto` or e.g. `fd42:1:2:3::1/64`.
pub fn parse_ipv6_address(value: &str) -> Result<Ipv6Setting> {
    match value.trim() {
        "none" | "" => return Ok(Ipv6Setting::None),
        "auto" => return Ok(Ipv6Setting::Auto),
        _ => {}
    }
    let net: Ipv6Net = value.trim().parse().map_err(|_| {
        invalid(format!(
            "ipv6.address {value:?}: expected gateway/prefix like fd42:1:2:3::1/64, auto or none"
        ))
    })?;
    validate_ipv6_gateway(net)?;
    Ok(Ipv6Setting::Gateway(net))
}

pub fn validate_ipv6_gateway(net: Ipv6Net) -> Result<()> {
    let what = format!("ipv6.address {net}");
    if !(16..=126).contains(&net.prefix_len()) {
        return Err(invalid(format!("{what}: prefix must be 16 to 126")));
    }
    let a = net.addr();
    let first = a.segments()[0];
    if a.is_multicast() || a.is_loopback() || a.is_unspecified() || (first & 0xffc0) == 0xfe80 {
        return Err(invalid(format!(
            "{what}: multicast, loopback, link-local and unspecified addresses are not usable"
        )));
    }
    if a.to_ipv4_mapped().is_some() {
        return Err(invalid(format!(
            "{what}: IPv4-mapped addresses are not usable"
        )));
    }
    if a == net.network() {
        return Err(invalid(format!(
            "{what}: the gateway cannot be the subnet-router address"
        )));
    }
    Ok(())
}

/// A random unique-local /64 (`fd42:xxxx:xxxx:xxxx::1/64`), as LXD does.
pub fn random_ipv6_ula() -> Ipv6Net {
    let mut rng = rand::rng();
    let seg = |r: &mut rand::rngs::ThreadRng| r.random::<u16>();
    let a = Ipv6Addr::new(
        0xfd42,
        seg(&mut rng),
        seg(&mut rng),
        seg(&mut rng),
        0,
        0,
        0,
        1,
    );
    Ipv6Net::new(a, 64).expect("64 is a valid prefix")
}

/// True when the two subnets share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

pub fn overlaps_v4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn v4_add(a: Ipv4Addr, n: i64) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(a) as i64 + n) as u32)
}

/// The default DHCP range: network+2 .. broadcast-1 (`.2`–`.254` of a /24).
pub fn default_dhcp_range(net: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    (v4_add(net.network(), 2), v4_add(net.broadcast(), -1))
}

/// Parses `ipv4.dhcp.ranges` (`a-b,c-d`), each inside `net`.
pub fn parse_dhcp_ranges(value: &str, net: Ipv4Net) -> Result<Vec<(Ipv4Addr, Ipv4Addr)>> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| invalid(format!("ipv4.dhcp.ranges: {part:?} is not start-end")))?;
        let parse = |s: &str| {
            Ipv4Addr::from_str(s.trim())
                .map_err(|_| invalid(format!("ipv4.dhcp.ranges: {s:?} is not an IPv4 address")))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if u32::from(a) > u32::from(b) {
            return Err(invalid(format!(
                "ipv4.dhcp.ranges: {part:?} ends before it starts"
            )));
        }
        for x in [a, b] {
            if !net.contains(&x) || x == net.network() || x == net.broadcast() {
                return Err(invalid(format!(
                    "ipv4.dhcp.ranges: {x} is not a host address of {}",
                    net.trunc()
                )));
            }
        }
        out.push((a, b));
    }
    if out.is_empty() {
        return Err(invalid("ipv4.dhcp.ranges is empty"));
    }
    Ok(out)
}

/// Picks a free /24 in 10.0.0.0/8, starting at a random one (as LXD does),
/// that overlaps no host route, no host address and none of `existing`.
/// Returns the gateway (`.1`) with its prefix. Reads the host's routes from
/// `/proc/net/route` and its addresses with getifaddrs: nothing is probed.
pub fn pick_free_ipv4(existing: &[Ipv4Net]) -> Result<Ipv4Net> {
    let mut taken = host_ipv4_networks()?;
    taken.extend_from_slice(existing);
    pick_free_ipv4_among(&taken, rand::rng().random::<u16>())
}

/// The pure part of [`pick_free_ipv4`]: `start` chooses the first candidate
/// (`10.<start>.0/24`), then candidates go up and wrap around.
pub fn pick_free_ipv4_among(taken: &[Ipv4Net], start: u16) -> Result<Ipv4Net> {
    // A default route (prefix 0) covers everything and says nothing.
    let taken: Vec<&Ipv4Net> = taken.iter().filter(|n| n.prefix_len() > 0).collect();
    for i in 0..=u16::MAX {
        let k = start.wrapping_add(i);
        let candidate = Ipv4Net::new(Ipv4Addr::new(10, (k >> 8) as u8, k as u8, 0), 24)
            .expect("24 is a valid prefix");
        if !taken.iter().any(|t| overlaps_v4(t, &candidate)) {
            let gw = Ipv4Addr::new(10, (k >> 8) as u8, k as u8, 1);
            return Ok(Ipv4Net::new(gw, 24).expect("24 is a valid prefix"));
        }
    }
    Err(NetworkError::NoFreeSubnet)
}

/// The host's IPv4 routes (main table, `/proc/net/route`) and the subnets of
/// its addresses.
pub fn host_ipv4_networks() -> Result<Vec<Ipv4Net>> {
    let mut out = match std::fs::read_to_string("/proc/net/route") {
        Ok(text) => parse_proc_net_route(&text),
        Err(e) => return Err(NetworkError::io("reading /proc/net/route")(e)),
    };
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| NetworkError::Io {
        what: "getifaddrs".into(),
        source: e.into(),
    })?;
    for ifa in addrs {
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) else {
            continue;
        };
        let prefix = u32::from(m.ip()).leading_ones() as u8;
        if let Ok(n) = Ipv4Net::new(a.ip(), prefix) {
            out.push(n.trunc());
        }
    }
    Ok(out)
}

/// Parses `/proc/net/route` (hex, host byte order on little-endian hosts).
pub fn parse_proc_net_route(text: &str) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dst), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The kernel prints the raw network-order word: read it back as bytes.
        let dst = Ipv4Addr::from(dst.to_ne_bytes());
        let mask = u32::from(Ipv4Addr::from(mask.to_ne_bytes()));
        if let Ok(n) = Ipv4Net::new(dst, mask.leading_ones() as u8) {
            out.push(n);
        }
    }
    out
}

/// Why a Linux interface name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfnameError {
    #[error("interface name {0:?} must be 1 to {max} characters", max = IFNAME_MAX)]
    Length(String),
    #[error("interface name {0:?} is reserved")]
    Reserved(String),
    #[error("interface name {0:?} contains '/', ':' or whitespace")]
    BadCharacter(String),
}

/// Checks a Linux interface name: 1..=15 bytes, no `/`, `:`, whitespace,
/// not `.` or `..`.
pub fn validate_ifname(name: &str) -> std::result::Result<(), IfnameError> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(IfnameError::Length(name.into()));
    }
    if name == "." || name == ".." {
        return Err(IfnameError::Reserved(name.into()));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(IfnameError::BadCharacter(name.into()));
    }
    Ok(())
}

/// The host end of an instance's veth: `kt` + 8 hex digits, stable for a
/// (daemon, instance, device) triple so a restarted daemon finds it again.
pub fn host_veth_name(daemon_id: &str, instance: &str, device: &str) -> String {
    let mut h = Sha256::new();
    for part in [daemon_id, instance, device] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!("kt{}", &hex::encode(h.finalize())[..8])
}

/// An Ethernet address usable by an interface (unicast, not all-zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random address in Xen's OUI `00:16:3e`, which LXD uses too.
    pub fn random_kante() -> MacAddr {
        let mut rng = rand::rng();
        MacAddr([0x00, 0x16, 0x3e, rng.random(), rng.random(), rng.random()])
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddr {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<MacAddr> {
        let bad = |why: &str| NetworkError::InvalidDevice(format!("hwaddr {s:?}: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad("expected six hex bytes like 00:16:3e:12:34:56"));
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(bad("expected six hex bytes like 00:16:3e:12:34:56"));
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| bad("not hexadecimal"))?;
        }
        if b == [0xff; 6] {
            return Err(bad("the broadcast address"));
        }
        if b[0] & 1 == 1 {
            return Err(bad("a multicast address (odd first byte)"));
        }
        if b == [0; 6] {
            return Err(bad("the all-zero address"));
        }
        Ok(MacAddr(b))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Parses a boolean config value the way LXD does.
pub fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(format!("{key}: {value:?} is not a boolean"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_gateways() {
        assert_eq!(
            parse_ipv4_address("10.12.0.1/24").unwrap(),
            Ipv4Setting::Gateway(net("10.12.0.1/24"))
        );
        assert_eq!(parse_ipv4_address("auto").unwrap(), Ipv4Setting::Auto);
        assert_eq!(parse_ipv4_address("none").unwrap(), Ipv4Setting::None);
        for bad in [
            "10.12.0.0/24",   // network address
            "10.12.0.255/24", // broadcast
            "10.12.0.1/31",
            "10.12.0.1/7",
            "224.0.0.1/24",
            "127.0.0.1/8",
            "169.254.1.1/16",
            "10.12.0.1",
            "10.12.0.300/24",
            "garbage",
        ] {
            let e = parse_ipv4_address(bad).unwrap_err();
            assert!(matches!(e, NetworkError::InvalidConfig(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn ipv6_gateways() {
        assert!(matches!(
            parse_ipv6_address("fd42:1:2:3::1/64").unwrap(),
            Ipv6Setting::Gateway(_)
        ));
        for bad in [
            "fd42:1:2:3::/64",
            "fe80::1/64",
            "ff02::1/64",
            "::1/64",
            "fd42::1/127",
            "x",
        ] {
            assert!(parse_ipv6_address(bad).is_err(), "{bad}");
        }
        let ula = random_ipv6_ula();
        assert_eq!(ula.prefix_len(), 64);
        validate_ipv6_gateway(ula).unwrap();
    }

    #[test]
    fn overlap_and_ranges() {
        let a: IpNet = "10.0.0.1/16".parse().unwrap();
        let b: IpNet = "10.0.200.1/24".parse().unwrap();
        let c: IpNet = "10.1.0.1/24".parse().unwrap();
        assert!(overlaps(&a, &b) && overlaps(&b, &a));
        assert!(!overlaps(&a, &c));
        assert_eq!(
            default_dhcp_range(net("10.5.6.1/24")),
            ("10.5.6.2".parse().unwrap(), "10.5.6.254".parse().unwrap())
        );
        assert_eq!(
            default_dhcp_range(net("10.5.0.1/22")),
            ("10.5.0.2".parse().unwrap(), "10.5.3.254".parse().unwrap())
        );
        let r = parse_dhcp_ranges(
            "10.5.6.10-10.5.6.20, 10.5.6.30-10.5.6.40",
            net("10.5.6.1/24"),
        );
        assert_eq!(r.unwrap().len(), 2);
        assert!(parse_dhcp_ranges("10.5.6.20-10.5.6.10", net("10.5.6.1/24")).is_err());
        assert!(parse_dhcp_ranges("10.5.7.2-10.5.7.9", net("10.5.6.1/24")).is_err());
        assert!(parse_dhcp_ranges("10.5.6.0-10.5.6.9", net("10.5.6.1/24")).is_err());
    }

    #[test]
    fn picking_avoids_taken() {
        let taken = vec![net("10.0.0.0/24"), net("10.0.1.0/24"), net("0.0.0.0/0")];
        assert_eq!(pick_free_ipv4_among(&taken, 0).unwrap(), net("10.0.2.1/24"));
        // A wider route hides all its /24s.
        let taken = vec![net("10.0.0.0/15")];
        assert_eq!(pick_free_ipv4_among(&taken, 0).unwrap(), net("10.2.0.1/24"));
        // Wraps around the end of 10/8.
        let taken = vec![net("10.255.255.0/24")];
        assert_eq!(
            pick_free_ipv4_among(&taken, u16::MAX).unwrap(),
            net("10.0.0.1/24")
        );
        assert!(matches!(
            pick_free_ipv4_among(&[net("10.0.0.0/8")], 7),
            Err(NetworkError::NoFreeSubnet)
        ));
    }

    #[test]
    fn proc_net_route() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let got = parse_proc_net_route(text);
        assert_eq!(got, vec![net("0.0.0.0/0"), net("192.0.2.0/24")]);
    }

    #[test]
    fn host_networks_are_read() {
        // Every host has at least loopback's 127.0.0.0/8.
        let nets = host_ipv4_networks().unwrap();
        assert!(
            nets.iter().any(|n| n.contains(&Ipv4Addr::LOCALHOST)),
            "{nets:?}"
        );
        let picked = pick_free_ipv4(&[]).unwrap();
        assert!(!nets
            .iter()
            .filter(|n| n.prefix_len() > 0)
            .any(|n| overlaps_v4(n, &picked)));
    }

    #[test]
    fn macs() {
        let m: MacAddr = "00:16:3E:aa:bb:cc".parse().unwrap();
        assert_eq!(m.to_string(), "00:16:3e:aa:bb:cc");
        for bad in [
            "01:16:3e:aa:bb:cc",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "00:16:3e:aa:bb",
            "00:16:3e:aa:bb:cc:dd",
            "00:16:3e:aa:bb:zz",
            "0:16:3e:aa:bb:cc",
            "",
        ] {
            let e = bad.parse::<MacAddr>().unwrap_err();
            assert!(matches!(e, NetworkError::InvalidDevice(_)), "{bad}");
        }
        let r = MacAddr::random_kante();
        assert_eq!(&r.0[..3], &[0x00, 0x16, 0x3e]);
        r.to_string().parse::<MacAddr>().unwrap();
    }

    #[test]
    fn names() {
        let a = host_veth_name("d1", "c1", "eth0");
        assert_eq!(a.len(), 10);
        assert!(a.starts_with("kt"));
        assert_eq!(a, host_veth_name("d1", "c1", "eth0"));
        assert_ne!(a, host_veth_name("d2", "c1", "eth0"));
        assert_ne!(
            host_veth_name("d", "ab", "c"),
            host_veth_name("d", "a", "bc")
        );
        assert!(validate_ifname("if-public").is_ok());
        assert!(validate_ifname("a-very-long-name0").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("").is_err());
    }
}
