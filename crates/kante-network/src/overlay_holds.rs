//! An overlay's held addresses in one member's dnsmasq: every address the
//! cluster keeps for a MAC on the overlay (an instance that moved between
//! members, or a NIC's `ipv4.address`) is a `dhcp-host=<MAC>,<IP>` line of
//! the member's hosts file, on every member.
//!
//! dnsmasq never hands a `dhcp-host` address to another client, and it
//! serves it to its MAC even outside the member's DHCP slice: a
//! `dhcp-host` address need only be in the subnet of some `dhcp-range`
//! (dnsmasq(8), `--dhcp-host`), and every slice's ranges carry the
//! overlay's netmask. (Checked with dnsmasq 2.90 and busybox udhcpc in a
//! network namespace: a MAC held at .100 got .100 from a server whose
//! range was .10-.11, and a third client got "no address available" when
//! the range's last free address was held for another MAC.)
//!
//! The lines this module wrote are recorded in the state directory
//! (`dnsmasq.holds`), so a hold given up loses its address again without
//! touching what NICs wrote (their lines carry the instance's name).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::dnsmasq::{self, HostEntry};
use crate::subnet::MacAddr;
use crate::{NetworkError, Result};

/// The record of the holds applied last.
pub const RECORD: &str = "dnsmasq.holds";

fn read_record(dir: &Path) -> BTreeMap<MacAddr, Ipv4Addr> {
    std::fs::read_to_string(dir.join(RECORD))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (m, a) = l.trim().split_once(',')?;
            Some((m.parse().ok()?, a.parse().ok()?))
        })
        .collect()
}

fn write_record(dir: &Path, holds: &BTreeMap<MacAddr, Ipv4Addr>) -> Result<()> {
    let body: String = holds.iter().map(|(m, a)| format!("{m},{a}\n")).collect();
    let tmp = dir.join(format!("{RECORD}.tmp"));
    std::fs::write(&tmp, body).map_err(NetworkError::io("writing the holds record"))?;
    std::fs::rename(&tmp, dir.join(RECORD)).map_err(NetworkError::io("writing the holds record"))
}

/// What [`apply`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The hosts file changed (dnsmasq was told to re-read it).
    pub changed: bool,
    /// Holds not applied: their address is another MAC's line here.
    pub clashes: Vec<(MacAddr, Ipv4Addr, MacAddr)>,
}

/// Makes the hosts file in `dir` carry `holds` (MAC → address): each
/// held MAC's line gets its address (a line is added if there was none);
/// a MAC held before and no longer loses the address it was held at (its
/// line goes if nothing else is on it). SIGHUPs the dnsmasq of `dir` when
/// the file changed. Only when `dir` exists (the overlay is made here).
pub fn apply(dir: &Path, holds: &BTreeMap<MacAddr, Ipv4Addr>) -> Result<Applied> {
    let mut out = Applied::default();
    if !dir.is_dir() {
        return Ok(out);
    }
    {
        let _g = dnsmasq::HOSTS_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = dnsmasq::read_hosts(dir)?;
        let mut entries = before.clone();
        let had = read_record(dir);
        for (mac, ip) in had.iter().filter(|(m, _)| !holds.contains_key(m)) {
            if let Some(e) = entries.iter_mut().find(|e| e.hwaddr == *mac) {
                if e.ipv4 == Some(*ip) {
                    e.ipv4 = None;
                }
            }
        }
        entries.retain(|e| e.ipv4.is_some() || e.ipv6.is_some() || e.name.is_some());
        let mut applied = BTreeMap::new();
        for (mac, ip) in holds {
            if let Some(other) = entries
                .iter()
                .find(|e| e.hwaddr != *mac && e.ipv4 == Some(*ip))
            {
                out.clashes.push((*mac, *ip, other.hwaddr));
                continue;
            }
            match entries.iter_mut().find(|e| e.hwaddr == *mac) {
                Some(e) => e.ipv4 = Some(*ip),
                None => entries.push(HostEntry {
                    hwaddr: *mac,
                    ipv4: Some(*ip),
                    ipv6: None,
                    name: None,
                }),
            }
            applied.insert(*mac, *ip);
        }
        if entries != before {
            dnsmasq::write_hosts(dir, &entries)?;
            out.changed = true;
        }
        if applied != had {
            write_record(dir, &applied)?;
        }
    }
    if out.changed {
        dnsmasq::reload_hosts_at(dir)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0, 0x16, 0x3e, 0, 0, n])
    }

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 9, n)
    }

    #[test]
    fn holds_come_and_go_without_touching_nic_lines() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        dnsmasq::set_host(
            dir,
            HostEntry {
                hwaddr: mac(1),
                ipv4: None,
                ipv6: None,
                name: Some("c1".into()),
            },
        )
        .unwrap();
        dnsmasq::set_host(
            dir,
            HostEntry {
                hwaddr: mac(3),
                ipv4: Some(ip(30)),
                ipv6: None,
                name: Some("c3".into()),
            },
        )
        .unwrap();
        let holds = BTreeMap::from([(mac(1), ip(10)), (mac(2), ip(20)), (mac(4), ip(30))]);
        let a = apply(dir, &holds).unwrap();
        assert!(a.changed);
        assert_eq!(a.clashes, vec![(mac(4), ip(30), mac(3))]);
        let text = std::fs::read_to_string(dir.join(dnsmasq::HOSTS)).unwrap();
        assert!(text.contains("00:16:3e:00:00:01,10.0.9.10,c1\n"), "{text}");
        assert!(text.contains("00:16:3e:00:00:02,10.0.9.20\n"), "{text}");
        assert!(text.contains("00:16:3e:00:00:03,10.0.9.30,c3\n"), "{text}");
        // Again: nothing to do.
        assert!(!apply(dir, &holds).unwrap().changed);
        // Given up: the addresses go, the name stays, c3 untouched.
        let a = apply(dir, &BTreeMap::new()).unwrap();
        assert!(a.changed);
        let text = std::fs::read_to_string(dir.join(dnsmasq::HOSTS)).unwrap();
        assert_eq!(
            text,
            "00:16:3e:00:00:01,c1\n00:16:3e:00:00:03,10.0.9.30,c3\n"
        );
    }

    #[test]
    fn a_line_a_nic_rewrote_gets_its_address_back() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let holds = BTreeMap::from([(mac(1), ip(10))]);
        apply(dir, &holds).unwrap();
        // A NIC's delete drops the MAC's line…
        dnsmasq::remove_host(dir, mac(1)).unwrap();
        // …and the next pass puts the hold back.
        assert!(apply(dir, &holds).unwrap().changed);
        let text = std::fs::read_to_string(dir.join(dnsmasq::HOSTS)).unwrap();
        assert_eq!(text, "00:16:3e:00:00:01,10.0.9.10\n");
    }

    #[test]
    fn nothing_where_the_overlay_is_not_made() {
        let holds = BTreeMap::from([(mac(1), ip(10))]);
        let a = apply(Path::new("/nonexistent/kante-ov"), &holds).unwrap();
        assert_eq!(a, Applied::default());
    }
}
