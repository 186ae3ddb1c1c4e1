//! Frame parsing and in-place rewrites. Untrusted bytes are parsed once, here, with etherparse's
//! checked slices, and reduced to a small `Copy` [`PacketMeta`] that the pipeline decides on;
//! every change to a frame goes through a helper in this module. Parsing never panics: a frame
//! that does not hold what its headers claim is [`Malformed`].
//!
//! Frames here are bare Ethernet frames: the virtio-net header that TAPs carry is split off by
//! `dataplane::tap` and passes through untouched, which stays correct as long as rewrites do not
//! move the L3/L4 headers (MAC rewrites do not).

use std::net::Ipv4Addr;

use etherparse::{ArpPacketSlice, Ethernet2Slice, Ipv4HeaderSlice};

use crate::model::Mac;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Length of an Ethernet II header.
pub const ETH_HEADER_LEN: usize = 14;
/// ARP operation: request.
pub const ARP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const ARP_REPLY: u16 = 2;

/// Why a frame could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than an Ethernet header.
    #[error("frame shorter than an Ethernet header")]
    Ethernet,
    /// ARP that is truncated or not Ethernet/IPv4 ARP.
    #[error("ARP packet truncated or not Ethernet/IPv4")]
    Arp,
    /// IPv4 header invalid (version, IHL) or truncated.
    #[error("IPv4 header invalid or truncated")]
    Ipv4Header,
    /// IPv4 total length disagrees with the frame.
    #[error("IPv4 total length larger than the frame or smaller than the header")]
    Ipv4Length,
}

/// An ARP packet for IPv4 over Ethernet, summarized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpMeta {
    /// Operation (1 request, 2 reply).
    pub operation: u16,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

/// An IPv4 header, summarized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Meta {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Header length in bytes.
    pub header_len: u8,
    /// Total length from the header (a GSO superframe's full length).
    pub total_len: u16,
}

/// What layer 3 holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3Meta {
    /// ARP for IPv4 over Ethernet.
    Arp(ArpMeta),
    /// IPv4.
    Ipv4(Ipv4Meta),
    /// Anything else (IPv6 and the rest), by EtherType.
    Other(u16),
}

/// A parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// Destination MAC.
    pub dst_mac: Mac,
    /// Source MAC.
    pub src_mac: Mac,
    /// Layer 3.
    pub l3: L3Meta,
}

fn ipv4_from(bytes: &[u8]) -> Ipv4Addr {
    // Callers pass slices whose length etherparse already checked to be 4.
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

fn mac_from(bytes: &[u8]) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&bytes[..6]);
    Mac(m)
}

/// Parses an Ethernet frame (no FCS) into its summary.
pub fn parse(frame: &[u8]) -> Result<PacketMeta, Malformed> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).map_err(|_| Malformed::Ethernet)?;
    let ethertype = eth.ether_type().0;
    let payload = eth.payload_slice();
    let l3 = match ethertype {
        ETHERTYPE_ARP => {
            let arp = ArpPacketSlice::from_slice(payload).map_err(|_| Malformed::Arp)?;
            if arp.hw_addr_type().0 != 1 // Ethernet
                || arp.hw_addr_size() != 6 || arp.proto_addr_size() != 4 || arp.proto_addr_type().0 != ETHERTYPE_IPV4
            {
                return Err(Malformed::Arp);
            }
            L3Meta::Arp(ArpMeta {
                operation: arp.operation().0,
                sender_mac: mac_from(arp.sender_hw_addr()),
                sender_ip: ipv4_from(arp.sender_protocol_addr()),
                target_ip: ipv4_from(arp.target_protocol_addr()),
            })
        }
        ETHERTYPE_IPV4 => {
            let ip = Ipv4HeaderSlice::from_slice(payload).map_err(|_| Malformed::Ipv4Header)?;
            let header_len = ip.slice().len();
            let total_len = usize::from(ip.total_len());
            // Ethernet pads short frames, so the frame may be longer than the packet, never shorter.
            if total_len < header_len || total_len > payload.len() {
                return Err(Malformed::Ipv4Length);
            }
            L3Meta::Ipv4(Ipv4Meta {
                src: ip.source_addr(),
                dst: ip.destination_addr(),
                protocol: ip.protocol().0,
                ttl: ip.ttl(),
                header_len: header_len as u8,
                total_len: ip.total_len(),
            })
        }
        other => L3Meta::Other(other),
    };
    Ok(PacketMeta { dst_mac: Mac(eth.destination()), src_mac: Mac(eth.source()), l3 })
}

/// Rewrites the Ethernet destination and source addresses.
///
/// The frame must be at least [`ETH_HEADER_LEN`] long (true for any frame [`parse`] accepted).
pub fn set_macs(frame: &mut [u8], dst: Mac, src: Mac) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
}

/// Turns an ARP request (already parsed as `req`) into the reply that `answer_mac` owns
/// `req.target_ip`, in place: Ethernet addresses, operation, and both address pairs.
///
/// The frame must be one that [`parse`] accepted as ARP.
pub fn arp_reply_in_place(frame: &mut [u8], req: &ArpMeta, answer_mac: Mac) {
    set_macs(frame, req.sender_mac, answer_mac);
    let arp = &mut frame[ETH_HEADER_LEN..];
    arp[6..8].copy_from_slice(&ARP_REPLY.to_be_bytes());
    arp[8..14].copy_from_slice(&answer_mac.0);
    arp[14..18].copy_from_slice(&req.target_ip.octets());
    arp[18..24].copy_from_slice(&req.sender_mac.0);
    arp[24..28].copy_from_slice(&req.sender_ip.octets());
}

/// Frame builders for tests and for `trace`'s synthesized packets.
pub mod build {
    use super::*;

    /// An ARP request from `sender` asking who has `target_ip`.
    pub fn arp_request(sender_mac: Mac, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&sender_mac.0);
        f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
        f.extend_from_slice(&ARP_REQUEST.to_be_bytes());
        f.extend_from_slice(&sender_mac.0);
        f.extend_from_slice(&sender_ip.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target_ip.octets());
        f
    }

    /// A UDP/IPv4 frame with a valid IPv4 header checksum and `payload`.
    pub fn udp(
        dst_mac: Mac,
        src_mac: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ipv4(src.octets(), dst.octets(), 64)
            .udp(sport, dport);
        let mut f = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut f, payload).expect("writing to a Vec cannot fail");
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = Mac([2, 0, 0, 0, 0, 0xa]);
    const B: Mac = Mac([2, 0, 0, 0, 0, 0xb]);

    #[test]
    fn parses_udp() {
        let ip_a = Ipv4Addr::new(10, 0, 1, 10);
        let ip_b = Ipv4Addr::new(10, 0, 1, 20);
        let f = build::udp(B, A, ip_a, ip_b, 1000, 53, b"hi");
        let m = parse(&f).unwrap();
        assert_eq!((m.dst_mac, m.src_mac), (B, A));
        let L3Meta::Ipv4(ip) = m.l3 else { panic!("not ipv4: {m:?}") };
        assert_eq!((ip.src, ip.dst, ip.protocol, ip.ttl, ip.total_len), (ip_a, ip_b, 17, 64, 30));
    }

    #[test]
    fn arp_reply_swaps_everything() {
        let (ip_a, gw) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 1));
        let mut f = build::arp_request(A, ip_a, gw);
        let L3Meta::Arp(req) = parse(&f).unwrap().l3 else { panic!() };
        arp_reply_in_place(&mut f, &req, B);
        let m = parse(&f).unwrap();
        assert_eq!((m.dst_mac, m.src_mac), (A, B));
        let L3Meta::Arp(rep) = m.l3 else { panic!() };
        assert_eq!(rep, ArpMeta { operation: ARP_REPLY, sender_mac: B, sender_ip: gw, target_ip: ip_a });
        assert_eq!(&f[ETH_HEADER_LEN + 18..ETH_HEADER_LEN + 24], &A.0);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert_eq!(parse(&[0u8; 5]), Err(Malformed::Ethernet));
        let mut arp = build::arp_request(A, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
        arp.truncate(30);
        assert_eq!(parse(&arp), Err(Malformed::Arp));
        let mut udp = build::udp(B, A, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 2, b"x");
        udp[ETH_HEADER_LEN] = 0x45;
        udp[ETH_HEADER_LEN + 2..ETH_HEADER_LEN + 4].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(parse(&udp), Err(Malformed::Ipv4Length));
        udp[ETH_HEADER_LEN] = 0x65;
        assert_eq!(parse(&udp), Err(Malformed::Ipv4Header));
        // Every prefix of a valid frame parses or errors; none panics.
        let f = build::udp(B, A, Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST, 1, 2, b"payload");
        for n in 0..f.len() {
            let _ = parse(&f[..n]);
        }
    }
}
