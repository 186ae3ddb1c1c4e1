//! The generator's frames: one Ethernet/IPv4/UDP template built once, then only the ports and
//! the UDP checksum patched per packet, so a new flow per packet costs a few additions.
//!
//! Shared with `tests/pktgen_frame.rs` (by `#[path]`), which checks every frame parses with the
//! crate's parser and carries valid IPv4 and UDP checksums.

use std::net::Ipv4Addr;

use vpclab::packet::rewrite::{checksum, fold, pseudo_header_sum, sum};
use vpclab::packet::IpProto;

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// Offset of the UDP header in the frame.
const UDP_AT: usize = ETH_LEN + IP_LEN;
/// The largest payload a template takes: a 1500-byte MTU less the IPv4 and UDP headers.
pub const MAX_PAYLOAD: usize = 1500 - IP_LEN - UDP_LEN;

/// Addresses of the frames a [`Template`] makes.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    /// The sending interface's MAC.
    pub src_mac: [u8; 6],
    /// The next hop's MAC (the subnet router, or the destination itself when on-link).
    pub dst_mac: [u8; 6],
    /// The sender's address.
    pub src: Ipv4Addr,
    /// The destination's address.
    pub dst: Ipv4Addr,
}

/// A UDP/IPv4 frame with everything but its ports fixed, and the part of its UDP checksum that
/// does not depend on them.
#[derive(Clone, Debug)]
pub struct Template {
    frame: Vec<u8>,
    /// Unfolded one's-complement sum of the pseudo-header, the UDP length and the payload.
    fixed_sum: u64,
}

impl Template {
    /// A template for `payload_len` bytes of payload (zeros with a marker), at most [`MAX_PAYLOAD`].
    pub fn new(ends: Endpoints, payload_len: usize) -> Template {
        let payload_len = payload_len.min(MAX_PAYLOAD);
        let udp_len = (UDP_LEN + payload_len) as u16;
        let ip_len = IP_LEN as u16 + udp_len;
        let mut f = Vec::with_capacity(ETH_LEN + usize::from(ip_len));
        f.extend_from_slice(&ends.dst_mac);
        f.extend_from_slice(&ends.src_mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        // Version 4, IHL 5, no TOS, total length, id 0, DF, TTL 64, UDP, checksum below.
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&ip_len.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, IpProto::UDP.0, 0, 0]);
        f.extend_from_slice(&ends.src.octets());
        f.extend_from_slice(&ends.dst.octets());
        let ip_csum = checksum(&f[ETH_LEN..UDP_AT]);
        f[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&ip_csum.to_be_bytes());
        // Ports 0 and checksum 0 until `write_ports`; the length is fixed.
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        let mut payload = vec![0u8; payload_len];
        let marker = b"vpclab pktgen";
        let n = marker.len().min(payload_len);
        payload[..n].copy_from_slice(&marker[..n]);
        f.extend_from_slice(&payload);
        // The UDP length appears twice in the sum: in the pseudo-header and in the header.
        let fixed_sum = sum(&f[UDP_AT..], pseudo_header_sum(ends.src, ends.dst, IpProto::UDP, udp_len));
        Template { frame: f, fixed_sum }
    }

    /// The frame's length in bytes.
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Copies the template into `out` (at least [`Template::frame_len`] bytes) with these ports.
    pub fn write(&self, out: &mut [u8], sport: u16, dport: u16) {
        out[..self.frame.len()].copy_from_slice(&self.frame);
        self.write_ports(out, sport, dport);
    }

    /// Sets the ports and the UDP checksum of `out`, a frame [`Template::write`] wrote: the rest
    /// is left as it is, so a buffer is copied once and patched per packet.
    pub fn write_ports(&self, out: &mut [u8], sport: u16, dport: u16) {
        out[UDP_AT..UDP_AT + 2].copy_from_slice(&sport.to_be_bytes());
        out[UDP_AT + 2..UDP_AT + 4].copy_from_slice(&dport.to_be_bytes());
        let csum = !fold(self.fixed_sum + u64::from(sport) + u64::from(dport));
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        let csum = if csum == 0 { 0xffff } else { csum };
        out[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&csum.to_be_bytes());
    }
}

/// The ports of packet `i` of a run: one fixed flow, or a new flow per packet with the
/// destination port stepping fastest through its range, then the source port, so the first
/// `sports.len() * dports.len()` packets are all different connections.
#[derive(Clone, Copy, Debug)]
pub struct PortStepper {
    sports: (u16, u16),
    dports: (u16, u16),
    new_flows: bool,
}

impl PortStepper {
    /// Ranges are inclusive `(first, last)`; a reversed range is taken as its first port alone.
    pub fn new(sports: (u16, u16), dports: (u16, u16), new_flows: bool) -> PortStepper {
        let fix = |(a, b): (u16, u16)| (a, b.max(a));
        PortStepper { sports: fix(sports), dports: fix(dports), new_flows }
    }

    /// How many different flows the stepper makes before it repeats.
    pub fn distinct(&self) -> u64 {
        if !self.new_flows {
            return 1;
        }
        let n = |(a, b): (u16, u16)| u64::from(b - a) + 1;
        n(self.sports) * n(self.dports)
    }

    /// `(source port, destination port)` of packet `i`.
    pub fn ports(&self, i: u64) -> (u16, u16) {
        if !self.new_flows {
            return (self.sports.0, self.dports.0);
        }
        let dn = u64::from(self.dports.1 - self.dports.0) + 1;
        let sn = u64::from(self.sports.1 - self.sports.0) + 1;
        let d = self.dports.0 + (i % dn) as u16;
        let s = self.sports.0 + ((i / dn) % sn) as u16;
        (s, d)
    }
}
