//! The uplink: a host interface (a veth, a NIC) as the internet side of a lab, instead of the
//! emulated internet. An `AF_PACKET` socket bound to it, asked for the same 12-byte virtio-net
//! header as the TAPs (`PACKET_VNET_HDR_SZ`, Linux 6.7+), reads and writes frames exactly like a
//! TAP, so the loop and the pipeline treat it as one more port. It listens promiscuously,
//! because the lab answers ARP for its public addresses with a MAC of its own, and ignores what
//! the host itself sends on the interface.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::tap::{Tap, TapError, VNET_HDR_LEN};
use crate::model::Mac;
use crate::packet::{self, L3Meta, ARP_REPLY};

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
    what: &'static str,
    ifname: &str,
) -> Result<(), TapError> {
    // SAFETY: value is valid for value.len() bytes for the duration of the call; fd is ours.
    let r =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), value.len() as libc::socklen_t) };
    if r < 0 {
        return Err(TapError::Ioctl { op: what, ifname: ifname.into(), source: io::Error::last_os_error() });
    }
    Ok(())
}

/// Opens the uplink on host interface `ifname` (in the caller's namespace).
pub fn open(ifname: &str) -> Result<Tap, TapError> {
    let cname = CString::new(ifname).map_err(|_| TapError::BadName(ifname.into()))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(TapError::Ioctl {
            op: "find interface",
            ifname: ifname.into(),
            source: io::Error::last_os_error(),
        });
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::c_int::from(proto),
        )
    };
    if raw < 0 {
        return Err(TapError::Open(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let hdr = (VNET_HDR_LEN as libc::c_int).to_ne_bytes();
    setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR_SZ, &hdr, "PACKET_VNET_HDR_SZ (needs Linux 6.7+)", ifname)?;
    let one = 1 as libc::c_int;
    setsockopt(
        &fd,
        libc::SOL_PACKET,
        libc::PACKET_IGNORE_OUTGOING,
        &one.to_ne_bytes(),
        "PACKET_IGNORE_OUTGOING",
        ifname,
    )?;
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll for the length given; fd is ours.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(TapError::Ioctl { op: "bind", ifname: ifname.into(), source: io::Error::last_os_error() });
    }
    // SAFETY: packet_mreq is a plain C struct; all-zero is valid.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex as i32;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    // SAFETY: reading the struct's bytes for setsockopt; it outlives the call.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&mreq as *const libc::packet_mreq).cast::<u8>(),
            std::mem::size_of::<libc::packet_mreq>(),
        )
    };
    setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, bytes, "PACKET_MR_PROMISC", ifname)?;
    Ok(Tap::from_fd(fd, ifname))
}

/// Learns the gateway's MAC before forwarding starts: ARP requests from `own_mac`/`own_ip`
/// every 300 ms until a reply from `gateway` arrives, at most `wait`.
pub fn resolve_gateway(
    port: &Tap,
    own_mac: Mac,
    own_ip: Ipv4Addr,
    gateway: Ipv4Addr,
    wait: Duration,
) -> io::Result<Mac> {
    let request = packet::build::arp_request(own_mac, own_ip, gateway);
    let mut out = vec![0u8; VNET_HDR_LEN];
    out.extend_from_slice(&request);
    let mut buf = vec![0u8; super::tap::MAX_FRAME];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        port.send(&out)?;
        let round = Instant::now() + Duration::from_millis(300);
        while Instant::now() < round {
            match port.recv(&mut buf) {
                Ok(n) if n > VNET_HDR_LEN => {
                    if let Ok(m) = packet::parse(&buf[VNET_HDR_LEN..n]) {
                        if let L3Meta::Arp(a) = m.l3 {
                            if a.operation == ARP_REPLY && a.sender_ip == gateway {
                                return Ok(a.sender_mac);
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(e),
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, format!("no ARP reply from the uplink's gateway {gateway}")))
}
