//! What the interface ioctls share (`SIOCETHTOOL`, `SIOCSIFFLAGS`): a socket
//! to issue them on and the interface name as `struct ifreq` carries it.

use std::os::fd::OwnedFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::{NetworkError, Result};

/// An AF_INET datagram socket, only to issue interface ioctls on; it lives
/// in the network namespace of the calling thread.
pub(crate) fn ioctl_socket(what: &str) -> Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| NetworkError::Io {
        what: format!("socket for {what}"),
        source: e.into(),
    })
}

/// `ifname` as `ifr_name`: NUL-padded, refused when it does not fit.
pub(crate) fn ifr_name(ifname: &str) -> Result<[libc::c_char; libc::IFNAMSIZ]> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(NetworkError::InvalidDevice(format!(
            "interface name {ifname:?} too long"
        )));
    }
    let mut name = [0; libc::IFNAMSIZ];
    for (d, s) in name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(name)
}
