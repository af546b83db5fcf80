//! The lab's IPv4 ranges: the uplink subnet (the caller takes its first
//! address, host i the address `.10+i`) and the range the hosts' managed
//! bridges take their /24s from (host i the i-th /24).

use std::net::Ipv4Addr;

use anyhow::{bail, Result};

/// An IPv4 network: its first address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

/// The first host address after the caller's: host i is `.HOST_OFFSET+i`.
pub const HOST_OFFSET: u32 = 10;

impl Net {
    /// `a.b.c.d/len` with no host bits set.
    pub fn parse(text: &str) -> Result<Net> {
        let Some((a, p)) = text.trim().split_once('/') else {
            bail!("Invalid subnet {text:?}: expected ADDRESS/PREFIX, as 10.248.0.0/24");
        };
        let (Ok(base), Ok(prefix)) = (a.parse::<Ipv4Addr>(), p.parse::<u8>()) else {
            bail!("Invalid subnet {text:?}: expected ADDRESS/PREFIX, as 10.248.0.0/24");
        };
        if prefix > 32 {
            bail!("Invalid subnet {text:?}: the prefix is at most 32");
        }
        let net = Net { base, prefix };
        if u32::from(base) & !net.mask() != 0 {
            bail!(
                "Invalid subnet {text:?}: host bits are set (the network is {}/{prefix})",
                Ipv4Addr::from(u32::from(base) & net.mask())
            );
        }
        Ok(net)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// How many addresses it spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The n-th address of the network (0 is the network's own).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(n))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.base)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Net) -> bool {
        self.contains(other.base) || other.contains(self.base)
    }

    /// The `i`-th /24 of this range (i from 0).
    pub fn slash24(&self, i: u32) -> Net {
        Net {
            base: Ipv4Addr::from(u32::from(self.base).wrapping_add(i << 8)),
            prefix: 24,
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// The lab's addresses, checked to fit `hosts` hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub uplink: Net,
    pub bridges: Net,
}

impl Plan {
    pub fn new(uplink: Net, bridges: Net, hosts: u32) -> Result<Plan> {
        // The caller's .1, the hosts' .11…, and the broadcast address.
        if u64::from(HOST_OFFSET + hosts) + 1 >= uplink.size() {
            bail!("The subnet {uplink} is too small for {hosts} hosts (they take .11 to .{}): use a /27 or larger", HOST_OFFSET + hosts);
        }
        if bridges.prefix > 24 || (bridges.size() >> 8) <= u64::from(hosts) {
            bail!(
                "The bridge range {bridges} is too small for {hosts} hosts: host i takes its i-th /24, so it must hold {} of them",
                hosts + 1
            );
        }
        if uplink.overlaps(&bridges) {
            bail!("The subnet {uplink} and the bridge range {bridges} overlap");
        }
        Ok(Plan { uplink, bridges })
    }

    /// The caller's address on the uplink bridge.
    pub fn caller(&self) -> Ipv4Addr {
        self.uplink.nth(1)
    }

    /// Host `i`'s (from 1) address on the uplink.
    pub fn host(&self, i: u32) -> Ipv4Addr {
        self.uplink.nth(HOST_OFFSET + i)
    }

    /// Host `i`'s managed bridge: its address with the /24's prefix.
    pub fn host_bridge(&self, i: u32) -> String {
        format!("{}/24", self.bridges.slash24(i).nth(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse_nonsense() {
        let n = Net::parse("10.248.0.0/24").unwrap();
        assert_eq!(
            (n.base, n.prefix, n.size()),
            (Ipv4Addr::new(10, 248, 0, 0), 24, 256)
        );
        assert_eq!(n.to_string(), "10.248.0.0/24");
        for bad in [
            "10.248.0.0",
            "10.248.0.1/24",
            "10.248.0.0/33",
            "x/24",
            "10.248.0/24",
            "",
        ] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
        let e = Net::parse("10.248.0.5/24").unwrap_err().to_string();
        assert!(e.contains("10.248.0.0/24"), "{e}");
    }

    #[test]
    fn overlaps_either_way() {
        let a = Net::parse("10.248.0.0/16").unwrap();
        let b = Net::parse("10.248.7.0/24").unwrap();
        let c = Net::parse("10.249.0.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&b));
        assert!(Net::parse("0.0.0.0/0").unwrap().overlaps(&c));
    }

    #[test]
    fn hosts_get_their_addresses() {
        let p = Plan::new(
            Net::parse("10.248.0.0/24").unwrap(),
            Net::parse("10.249.0.0/16").unwrap(),
            3,
        )
        .unwrap();
        assert_eq!(p.caller(), Ipv4Addr::new(10, 248, 0, 1));
        assert_eq!(p.host(1), Ipv4Addr::new(10, 248, 0, 11));
        assert_eq!(p.host(3), Ipv4Addr::new(10, 248, 0, 13));
        assert_eq!(p.host_bridge(1), "10.249.1.1/24");
        assert_eq!(p.host_bridge(3), "10.249.3.1/24");
    }

    #[test]
    fn ranges_must_fit_the_hosts_and_not_overlap() {
        let net = |s| Net::parse(s).unwrap();
        // A /28 holds .11 to .14 below its broadcast .15; a /27 holds 16 hosts.
        assert!(Plan::new(net("10.1.0.0/28"), net("10.2.0.0/16"), 4).is_ok());
        assert!(Plan::new(net("10.1.0.0/28"), net("10.2.0.0/16"), 5).is_err());
        assert!(Plan::new(net("10.1.0.0/27"), net("10.2.0.0/16"), 16).is_ok());
        // Host i takes the i-th /24: 16 hosts need 17 of them.
        assert!(Plan::new(net("10.1.0.0/24"), net("10.2.0.0/20"), 15).is_ok());
        let e = Plan::new(net("10.1.0.0/24"), net("10.2.0.0/20"), 16).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
        assert!(Plan::new(net("10.1.0.0/24"), net("10.2.0.0/25"), 1).is_err());
        let e = Plan::new(net("10.1.0.0/24"), net("10.0.0.0/8"), 3).unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
    }
}
