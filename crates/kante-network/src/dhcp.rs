//! Giving back the DHCPv4 leases of a NIC that is deleted: a DHCPRELEASE
//! for each of its leases, sent to the network's own dnsmasq, which then
//! forgets the lease and rewrites its lease file. Without it the lease file
//! keeps every deleted instance's address until the lease time runs out,
//! and its addresses stay taken.
//!
//! The packet leaves from the host, bound to the network's bridge
//! (`SO_BINDTODEVICE`), towards the bridge's own address: the kernel then
//! reports the bridge as the packet's incoming interface, so dnsmasq takes
//! it as it would a release from the guest (the way dnsmasq's own
//! `dhcp_release` tool works). dnsmasq finds the lease by the client
//! address and MAC; no reply comes.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;

use crate::dnsmasq;
use crate::subnet::MacAddr;
use crate::{NetworkError, Result};

const BOOTREQUEST: u8 = 1;
const HTYPE_ETHERNET: u8 = 1;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_END: u8 = 255;
const DHCPRELEASE: u8 = 7;
const SERVER_PORT: u16 = 67;

/// A DHCPRELEASE (RFC 2131 §4.4.6) from `client` (`ciaddr`) with hardware
/// address `mac` to `server`.
pub fn release_packet(xid: u32, client: Ipv4Addr, mac: MacAddr, server: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = BOOTREQUEST;
    p[1] = HTYPE_ETHERNET;
    p[2] = 6; // hlen
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[12..16].copy_from_slice(&client.octets()); // ciaddr
    p[28..34].copy_from_slice(&mac.0); // chaddr
    p.extend_from_slice(&MAGIC_COOKIE);
    p.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, DHCPRELEASE]);
    p.extend_from_slice(&[OPT_SERVER_ID, 4]);
    p.extend_from_slice(&server.octets());
    p.push(OPT_END);
    p
}

/// Releases every IPv4 lease `mac` holds in the network whose dnsmasq
/// keeps its state in `state_dir` and serves `bridge`; returns how many.
/// A bridge without an IPv4 address (DHCPv4 off) has nothing to release.
pub fn release_leases(bridge: &str, state_dir: &Path, mac: MacAddr) -> Result<usize> {
    let leases: Vec<Ipv4Addr> = dnsmasq::read_leases(state_dir)?
        .into_iter()
        .filter(|l| l.hwaddr == Some(mac))
        .filter_map(|l| match l.address {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect();
    if leases.is_empty() {
        return Ok(0);
    }
    let Some(server) = bridge_ipv4(bridge)? else {
        return Ok(0);
    };
    let sock = UdpSocket::bind(SocketAddrV4::new(server, 0))
        .map_err(NetworkError::io("binding the DHCP release socket"))?;
    nix::sys::socket::setsockopt(
        &sock,
        nix::sys::socket::sockopt::BindToDevice,
        &OsString::from(bridge),
    )
    .map_err(|e| NetworkError::io(format!("binding to {bridge}"))(e.into()))?;
    for client in &leases {
        sock.send_to(
            &release_packet(rand::random(), *client, mac, server),
            SocketAddrV4::new(server, SERVER_PORT),
        )
        .map_err(NetworkError::io(format!("releasing {client} on {bridge}")))?;
    }
    Ok(leases.len())
}

/// The first IPv4 address of `bridge` in the host's namespace.
fn bridge_ipv4(bridge: &str) -> Result<Option<Ipv4Addr>> {
    let list = nix::ifaddrs::getifaddrs().map_err(|e| NetworkError::io("getifaddrs")(e.into()))?;
    Ok(list
        .filter(|a| a.interface_name == bridge)
        .find_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_names_the_client_its_mac_and_the_server() {
        let mac = MacAddr([0x00, 0x16, 0x3e, 0x01, 0x02, 0x03]);
        let p = release_packet(
            0x0a0b0c0d,
            Ipv4Addr::new(10, 1, 2, 50),
            mac,
            Ipv4Addr::new(10, 1, 2, 1),
        );
        assert_eq!(p.len(), 236 + 4 + 3 + 6 + 1);
        assert_eq!(&p[..4], &[1, 1, 6, 0]);
        assert_eq!(&p[4..8], &[0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(&p[12..16], &[10, 1, 2, 50], "ciaddr");
        assert_eq!(&p[16..28], &[0; 12], "yiaddr, siaddr and giaddr are empty");
        assert_eq!(&p[28..34], &mac.0, "chaddr");
        assert_eq!(&p[236..240], &MAGIC_COOKIE);
        assert_eq!(&p[240..243], &[53, 1, 7], "DHCPRELEASE");
        assert_eq!(&p[243..249], &[54, 4, 10, 1, 2, 1], "server identifier");
        assert_eq!(p[249], 255);
    }
}
