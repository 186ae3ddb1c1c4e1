//! Frame parsing and in-place rewrites. Untrusted bytes are parsed once, here, with etherparse's
//! checked slices, and reduced to a small `Copy` [`PacketMeta`] that the pipeline decides on;
//! every change to a frame goes through a helper in this module. Parsing never panics: a frame
//! that does not hold what its headers claim is [`Malformed`].
//!
//! Frames here are bare Ethernet frames: the virtio-net header that TAPs carry is split off by
//! `dataplane::tap` and passes through untouched, which stays correct as long as rewrites do not
//! move the L3/L4 headers (MAC rewrites do not).
//!
//! Summaries. One set of small `Copy` types describes a packet to every other module, so a
//! protocol, a flag or a flow is spelled one way across the crate:
//! - [`IpProto`]: an IP protocol number (metas, flows, conntrack and NAT keys, rules, the control
//!   protocol); [`TcpFlags`]: the TCP flags byte.
//! - [`Flow`]: addresses, protocol and an [`L4Meta`] (ports, TCP flags, ICMP type/code/id), as
//!   sent. It is what rules, connection tracking and NAT decide on, and it describes both a
//!   packet's own headers and the packet an ICMP error quotes ([`icmp_quoted`]).
//! - [`Ipv4Meta`]: a [`Flow`] plus what only the header layout needs (TTL, lengths, fragment
//!   bit): rewrites take it to find fields; deciders take its `flow`.
//! - Keys stay types of their own where they must forget or reorder something: conntrack's
//!   direction-free `ConnKey` and the NAT's directed mapping key, both built from a flow's fields.

use std::fmt;
use std::net::Ipv4Addr;

use etherparse::{ArpPacketSlice, Ethernet2Slice, Icmpv4Slice, Ipv4HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};

use crate::model::Mac;

pub mod rewrite;
pub mod segment;

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
/// ICMP types that carry the packet they answer (RFC 792): destination unreachable (including
/// fragmentation needed), time exceeded, parameter problem.
pub const ICMP_ERROR_TYPES: [u8; 3] = [3, 11, 12];

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
    /// The TCP, UDP or ICMP header is truncated or invalid.
    #[error("TCP/UDP/ICMP header truncated or invalid")]
    Transport,
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

/// An IP protocol number (IANA), as the IPv4 header carries it. The one type every module uses
/// for a protocol: metas, flows, connection and NAT keys, rules.
///
/// It prints as rules and `trace` name it: `tcp`, `udp`, `icmp`, else `proto N`. It serializes
/// as the bare number, so JSON that carries a protocol is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct IpProto(pub u8);

impl IpProto {
    /// ICMP (1).
    pub const ICMP: IpProto = IpProto(1);
    /// TCP (6).
    pub const TCP: IpProto = IpProto(6);
    /// UDP (17).
    pub const UDP: IpProto = IpProto(17);

    /// Whether the protocol carries ports (TCP, UDP).
    pub fn has_ports(self) -> bool {
        matches!(self, IpProto::TCP | IpProto::UDP)
    }

    /// `tcp`, `udp` or `icmp`; `None` for any other protocol.
    pub fn name(self) -> Option<&'static str> {
        match self {
            IpProto::TCP => Some("tcp"),
            IpProto::UDP => Some("udp"),
            IpProto::ICMP => Some("icmp"),
            _ => None,
        }
    }
}

impl fmt::Display for IpProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "proto {}", self.0),
        }
    }
}

/// The TCP flags byte (byte 13 of the TCP header). The one type for TCP flags: parsed packets,
/// connection tracking, the RST the NAT gateway answers with, frame builders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No flag.
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);

    /// The flags of both (`|`, usable in consts).
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// A SYN without ACK or RST: the first segment of a new connection.
    pub const fn is_bare_syn(self) -> bool {
        self.contains(TcpFlags::SYN) && !self.contains(TcpFlags::ACK) && !self.contains(TcpFlags::RST)
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        self.union(rhs)
    }
}

/// An IPv4 header, summarized: the [`Flow`] it carries and the header's own fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Meta {
    /// Addresses, protocol and transport summary (zero transport fields in non-first fragments).
    pub flow: Flow,
    /// Time to live.
    pub ttl: u8,
    /// Header length in bytes.
    pub header_len: u8,
    /// Total length from the header (a GSO superframe's full length).
    pub total_len: u16,
    /// Part of a fragmented datagram (more-fragments set or a non-zero offset).
    pub fragment: bool,
}

/// One packet's flow, as sent (source to destination): what rules, connection tracking and NAT
/// look at. The same type summarizes a packet's own headers ([`Ipv4Meta::flow`]) and the packet
/// an ICMP error quotes ([`icmp_quoted`]); keys (conntrack's direction-free `ConnKey`, the NAT's
/// directed key) are built from it. `Copy` and 20 bytes: it is passed by value on the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub proto: IpProto,
    /// Ports, flags, ICMP type/code/id (zero where they do not apply).
    pub l4: L4Meta,
}

/// The transport header, summarized. Fields that do not apply to the protocol are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct L4Meta {
    /// TCP/UDP source port.
    pub src_port: u16,
    /// TCP/UDP destination port.
    pub dst_port: u16,
    /// TCP flags; none unless TCP (and none in a quoted packet: only 8 bytes are quoted).
    pub tcp_flags: TcpFlags,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
    /// ICMP echo identifier (types 0 and 8).
    pub icmp_id: u16,
}

impl L4Meta {
    /// TCP/UDP ports, nothing else.
    pub fn ports(src_port: u16, dst_port: u16) -> L4Meta {
        L4Meta { src_port, dst_port, ..L4Meta::default() }
    }

    /// ICMP type, code and echo id, nothing else.
    pub fn icmp(icmp_type: u8, icmp_code: u8, icmp_id: u16) -> L4Meta {
        L4Meta { icmp_type, icmp_code, icmp_id, ..L4Meta::default() }
    }
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
            let fragment = ip.is_fragmenting_payload();
            let proto = IpProto(ip.protocol().0);
            let l4 = if ip.fragments_offset().value() != 0 {
                L4Meta::default() // only the first fragment carries the transport header
            } else {
                parse_l4(proto, &payload[header_len..total_len], fragment)?
            };
            L3Meta::Ipv4(Ipv4Meta {
                flow: Flow { src: ip.source_addr(), dst: ip.destination_addr(), proto, l4 },
                ttl: ip.ttl(),
                header_len: header_len as u8,
                total_len: ip.total_len(),
                fragment,
            })
        }
        other => L3Meta::Other(other),
    };
    Ok(PacketMeta { dst_mac: Mac(eth.destination()), src_mac: Mac(eth.source()), l3 })
}

fn parse_l4(proto: IpProto, l4: &[u8], fragment: bool) -> Result<L4Meta, Malformed> {
    Ok(match proto {
        IpProto::TCP => {
            let tcp = TcpHeaderSlice::from_slice(l4).map_err(|_| Malformed::Transport)?;
            L4Meta {
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                tcp_flags: TcpFlags(tcp.slice()[13]),
                ..L4Meta::default()
            }
        }
        IpProto::UDP => {
            let udp = UdpHeaderSlice::from_slice(l4).map_err(|_| Malformed::Transport)?;
            // RFC 768: the length counts the 8-byte header; a first fragment holds only part of
            // the datagram, so only a whole one must hold all it claims.
            let len = usize::from(udp.length());
            if len < 8 || (!fragment && len > l4.len()) {
                return Err(Malformed::Transport);
            }
            L4Meta::ports(udp.source_port(), udp.destination_port())
        }
        IpProto::ICMP => {
            let icmp = Icmpv4Slice::from_slice(l4).map_err(|_| Malformed::Transport)?;
            let (icmp_type, icmp_code) = (icmp.type_u8(), icmp.code_u8());
            let rest = icmp.bytes5to8();
            let icmp_id = if icmp_type == 0 || icmp_type == 8 { u16::from_be_bytes([rest[0], rest[1]]) } else { 0 };
            L4Meta::icmp(icmp_type, icmp_code, icmp_id)
        }
        _ => L4Meta::default(),
    })
}

/// The packet quoted by an ICMP error (types in [`ICMP_ERROR_TYPES`]) in a frame [`parse`]
/// accepted, summarized as it was sent, or `None` if it is not an ICMP error or quotes too little
/// to tell the flow. Its TCP flags are always none.
pub fn icmp_quoted(frame: &[u8], ip: &Ipv4Meta) -> Option<Flow> {
    if ip.flow.proto != IpProto::ICMP || ip.fragment || !ICMP_ERROR_TYPES.contains(&ip.flow.l4.icmp_type) {
        return None;
    }
    let start = ETH_HEADER_LEN + usize::from(ip.header_len) + 8;
    let end = ETH_HEADER_LEN + usize::from(ip.total_len);
    let quoted = frame.get(start..end)?;
    let inner = Ipv4HeaderSlice::from_slice(quoted).ok()?;
    // RFC 792 quotes the header and at least 8 bytes of the transport header: enough for ports
    // and the ICMP type and id, not for a whole TCP header, so read those bytes directly.
    let t = quoted.get(inner.slice().len()..inner.slice().len() + 8)?;
    let proto = IpProto(inner.protocol().0);
    let l4 = match proto {
        IpProto::TCP | IpProto::UDP => {
            L4Meta::ports(u16::from_be_bytes([t[0], t[1]]), u16::from_be_bytes([t[2], t[3]]))
        }
        IpProto::ICMP => {
            L4Meta::icmp(t[0], t[1], if t[0] == 0 || t[0] == 8 { u16::from_be_bytes([t[4], t[5]]) } else { 0 })
        }
        _ => L4Meta::default(),
    };
    Some(Flow { src: inner.source_addr(), dst: inner.destination_addr(), proto, l4 })
}

/// The IPv4 destination of a frame, by its fixed offset, without parsing anything else: for the
/// data plane's watches on frames it has already judged. `None` unless EtherType IPv4 and long
/// enough to hold the address.
pub fn ipv4_dst(frame: &[u8]) -> Option<Ipv4Addr> {
    if frame.get(12..14)? != ETHERTYPE_IPV4.to_be_bytes() {
        return None;
    }
    let dst: [u8; 4] = frame.get(ETH_HEADER_LEN + 16..ETH_HEADER_LEN + 20)?.try_into().ok()?;
    Some(Ipv4Addr::from(dst))
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

    /// A TCP/IPv4 frame with the given flags (of them SYN, ACK, FIN and RST are set).
    #[allow(clippy::too_many_arguments)]
    pub fn tcp(
        dst_mac: Mac,
        src_mac: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        flags: TcpFlags,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = etherparse::PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ipv4(src.octets(), dst.octets(), 64)
            .tcp(sport, dport, 1, 65535);
        if flags.contains(TcpFlags::SYN) {
            b = b.syn();
        }
        if flags.contains(TcpFlags::ACK) {
            b = b.ack(1);
        }
        if flags.contains(TcpFlags::FIN) {
            b = b.fin();
        }
        if flags.contains(TcpFlags::RST) {
            b = b.rst();
        }
        let mut f = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut f, payload).expect("writing to a Vec cannot fail");
        f
    }

    /// An ICMP echo request with identifier `id`.
    pub fn icmp_echo(dst_mac: Mac, src_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ipv4(src.octets(), dst.octets(), 64)
            .icmpv4_echo_request(id, 1);
        let mut f = Vec::with_capacity(b.size(8));
        b.write(&mut f, &[0; 8]).expect("writing to a Vec cannot fail");
        f
    }

    /// A packet of IP protocol `proto` with an 8-byte payload.
    pub fn ip_proto(dst_mac: Mac, src_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, proto: IpProto) -> Vec<u8> {
        let mut f = udp(dst_mac, src_mac, src, dst, 0, 0, &[]);
        let ip = &mut f[ETH_HEADER_LEN..];
        ip[9] = proto.0;
        ip[10..12].fill(0);
        let sum = ipv4_header_checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f
    }

    /// An ICMP error of `icmp_type`/`code` from `src` to `dst` quoting `quoted` (an Ethernet
    /// frame whose IPv4 header and first 8 transport bytes are copied, per RFC 792).
    #[allow(clippy::too_many_arguments)]
    pub fn icmp_error(
        dst_mac: Mac,
        src_mac: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        icmp_type: u8,
        code: u8,
        quoted: &[u8],
    ) -> Vec<u8> {
        let ihl = usize::from(quoted[ETH_HEADER_LEN] & 0x0f) * 4;
        let q = &quoted[ETH_HEADER_LEN..(ETH_HEADER_LEN + ihl + 8).min(quoted.len())];
        let mut icmp = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(q);
        let sum = ipv4_header_checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut f = udp(dst_mac, src_mac, src, dst, 0, 0, &[]);
        f.truncate(ETH_HEADER_LEN + 20);
        f.extend_from_slice(&icmp);
        let total = (20 + icmp.len()) as u16;
        let ip = &mut f[ETH_HEADER_LEN..];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[9] = IpProto::ICMP.0;
        ip[10..12].fill(0);
        let sum = ipv4_header_checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f
    }

    /// The Internet checksum (RFC 1071) of `bytes`.
    fn ipv4_header_checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for chunk in bytes.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

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
        let f = ip.flow;
        assert_eq!((f.src, f.dst, f.proto, ip.ttl, ip.total_len), (ip_a, ip_b, IpProto::UDP, 64, 30));
    }

    #[test]
    fn parses_transport_headers_and_icmp_quotes() {
        let (a, b) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 2, 10));
        let syn = build::tcp(B, A, a, b, 40000, 80, TcpFlags::SYN, b"");
        let L3Meta::Ipv4(ip) = parse(&syn).unwrap().l3 else { panic!() };
        let l4 = ip.flow.l4;
        assert_eq!((l4.src_port, l4.dst_port, l4.tcp_flags), (40000, 80, TcpFlags::SYN));
        let echo = build::icmp_echo(B, A, a, b, 77);
        let L3Meta::Ipv4(ip) = parse(&echo).unwrap().l3 else { panic!() };
        assert_eq!((ip.flow.l4.icmp_type, ip.flow.l4.icmp_id), (8, 77));
        let err = build::icmp_error(A, B, b, a, 3, 4, &syn);
        let L3Meta::Ipv4(ip) = parse(&err).unwrap().l3 else { panic!() };
        let q = icmp_quoted(&err, &ip).expect("quotes the SYN");
        assert_eq!((q.src, q.dst, q.proto, q.l4.src_port, q.l4.dst_port), (a, b, IpProto::TCP, 40000, 80));
        assert_eq!(
            icmp_quoted(
                &echo,
                &match parse(&echo).unwrap().l3 {
                    L3Meta::Ipv4(ip) => ip,
                    _ => unreachable!(),
                }
            ),
            None
        );
        let mut short = build::tcp(B, A, a, b, 1, 2, TcpFlags::SYN, b"");
        short.truncate(ETH_HEADER_LEN + 20 + 10);
        short[ETH_HEADER_LEN + 2..ETH_HEADER_LEN + 4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(parse(&short), Err(Malformed::Transport));
    }

    #[test]
    fn ip_proto_prints_as_rules_name_it_and_serializes_as_a_number() {
        let shown: Vec<String> = [IpProto::TCP, IpProto::UDP, IpProto::ICMP, IpProto(47)].map(|p| p.to_string()).into();
        assert_eq!(shown, ["tcp", "udp", "icmp", "proto 47"]);
        assert_eq!(serde_json::to_string(&IpProto::TCP).unwrap(), "6");
        assert_eq!(serde_json::from_str::<IpProto>("17").unwrap(), IpProto::UDP);
        assert!(IpProto::UDP.has_ports() && !IpProto::ICMP.has_ports());
    }

    #[test]
    fn tcp_flags_contain_and_combine() {
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        assert_eq!(syn_ack, TcpFlags(0x12));
        assert!(syn_ack.contains(TcpFlags::SYN) && syn_ack.contains(syn_ack) && !syn_ack.contains(TcpFlags::FIN));
        assert!(TcpFlags::SYN.is_bare_syn() && (TcpFlags::SYN | TcpFlags::PSH).is_bare_syn());
        assert!(!syn_ack.is_bare_syn() && !(TcpFlags::SYN | TcpFlags::RST).is_bare_syn());
    }

    #[test]
    fn ipv4_dst_reads_the_address_of_ipv4_frames_only() {
        let (a, b) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 2, 10));
        let udp = build::udp(B, A, a, b, 1, 2, b"x");
        assert_eq!(ipv4_dst(&udp), Some(b));
        assert_eq!(ipv4_dst(&udp[..ETH_HEADER_LEN + 19]), None);
        assert_eq!(ipv4_dst(&build::arp_request(A, a, b)), None);
        assert_eq!(ipv4_dst(&[]), None);
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
