//! In-place NAT rewrites of IPv4 frames, and the few frames the fabric itself sends.
//!
//! # Contract
//!
//! * Every rewrite takes an Ethernet frame that [`parse`](super::parse) accepted as IPv4 and the
//!   [`Ipv4Meta`] it returned. The meta is used only for the header layout (header length, total
//!   length, protocol, ICMP type); the *old* values of the rewritten fields are read from the frame,
//!   so several rewrites may be applied in a row with the same meta.
//! * Checksums are updated incrementally, RFC 1624 equation 3: `HC' = ~(~HC + ~m + m')`, one
//!   16-bit word at a time. Nothing allocates, no header moves.
//! * [`L4Csum::Partial`] is the virtio-net `VIRTIO_NET_HDR_F_NEEDS_CSUM` case (Linux
//!   `CHECKSUM_PARTIAL`): the TCP/UDP checksum field holds the folded, *non-complemented* sum of the
//!   pseudo-header (RFC 793 §3.1, RFC 768) and the device completes it over the transport header and
//!   data later. So only address changes touch it (`S' = S + ~m + m'`, no complement), port
//!   changes leave it alone.
//! * A UDP checksum of zero means "no checksum" (RFC 768) and stays zero; a computed UDP checksum
//!   of zero is sent as `0xffff`.
//! * Fragments (RFC 791): a non-first fragment has no transport header, so address rewrites touch
//!   only the IPv4 header and port/id rewrites do nothing. The first fragment of a fragmented
//!   datagram carries the transport checksum (over the whole datagram), which is updated normally.
//! * No rewrite panics, even on a frame/meta pair that does not match: a field that is not within
//!   the frame is left alone.
//!
//! ICMP checksums (RFC 792) have no pseudo-header and are never offloaded, so they are always
//! complete checksums.

use std::net::Ipv4Addr;

use super::{IpProto, Ipv4Meta, TcpFlags, ETHERTYPE_IPV4, ETH_HEADER_LEN, ICMP_ERROR_TYPES};
use crate::model::Mac;

/// How the frame's L4 checksum field is to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Csum {
    /// A normal, complemented checksum over pseudo-header, transport header and data.
    Full,
    /// The virtio `NEEDS_CSUM` case: the field holds the (non-complemented) pseudo-header sum and
    /// the device completes it later. Only pseudo-header fields (addresses, length, protocol) are
    /// summed in it; ports are not.
    Partial,
}

// ---------------------------------------------------------------------------------------------
// Checksum arithmetic (RFC 1071, RFC 1624)
// ---------------------------------------------------------------------------------------------

/// Adds `bytes` as big-endian 16-bit words (an odd last byte padded with zero) to the unfolded
/// one's-complement accumulator `acc` (RFC 1071 §4.1). Callers fold with [`fold`].
pub fn sum(bytes: &[u8], mut acc: u64) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a one's-complement accumulator to 16 bits with end-around carry (RFC 1071 §4.1).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum of `bytes` (RFC 1071): the complement of their one's-complement sum.
pub fn checksum(bytes: &[u8]) -> u16 {
    !fold(sum(bytes, 0))
}

/// The unfolded sum of the IPv4 pseudo-header for TCP/UDP (RFC 793 §3.1, RFC 768): source,
/// destination, zero + protocol, transport length.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProto, l4_len: u16) -> u64 {
    let acc = sum(&src.octets(), 0);
    let acc = sum(&dst.octets(), acc);
    acc + u64::from(proto.0) + u64::from(l4_len)
}

/// One's-complement difference of a set of changed words, `Σ(~m + m')` (RFC 1624 §3), kept
/// unfolded; `u32` holds far more words than a rewrite changes.
#[derive(Clone, Copy, Default)]
struct Delta(u32);

impl Delta {
    fn add(&mut self, old: u16, new: u16) {
        self.0 += u32::from(!old) + u32::from(new);
    }
    fn merge(&mut self, other: Delta) {
        self.0 += other.0;
    }
    fn fold(self) -> u16 {
        fold(u64::from(self.0))
    }
}

fn read_u16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// Writes `new` at `at` and returns the change as a [`Delta`]. `at + 2 <= frame.len()` is checked
/// by every caller before it writes anything.
fn write_u16(frame: &mut [u8], at: usize, new: u16) -> Delta {
    let mut d = Delta::default();
    d.add(read_u16(frame, at), new);
    frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
    d
}

/// Writes the address `new` at `at` (4 bytes) and returns the change.
fn write_addr(frame: &mut [u8], at: usize, new: Ipv4Addr) -> Delta {
    let o = new.octets();
    let mut d = write_u16(frame, at, u16::from_be_bytes([o[0], o[1]]));
    d.merge(write_u16(frame, at + 2, u16::from_be_bytes([o[2], o[3]])));
    d
}

/// What kind of checksum field [`adjust`] updates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A complemented checksum (IPv4 header, ICMP, TCP).
    Full,
    /// A UDP checksum: zero means "none" and stays zero; a result of zero is sent as `0xffff`.
    Udp,
    /// A non-complemented partial (pseudo-header) sum.
    Partial,
}

/// Applies `delta` to the checksum field at `at` and returns the change of the field itself (so an
/// enclosing checksum, e.g. the ICMP checksum over a quoted header, can follow it).
fn adjust(frame: &mut [u8], at: usize, delta: Delta, field: Field) -> Delta {
    let old = read_u16(frame, at);
    let new = match field {
        // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
        Field::Full => !fold(u64::from(!old) + u64::from(delta.fold())),
        Field::Udp if old == 0 => return Delta::default(),
        Field::Udp => match !fold(u64::from(!old) + u64::from(delta.fold())) {
            0 => 0xffff, // RFC 768: a computed zero is transmitted as all ones
            c => c,
        },
        // The field is the sum itself, not its complement: S' = S + ~m + m'.
        Field::Partial => fold(u64::from(old) + u64::from(delta.fold())),
    };
    write_u16(frame, at, new)
}

// ---------------------------------------------------------------------------------------------
// Layout helpers
// ---------------------------------------------------------------------------------------------

/// Offset of the IPv4 header in the frame.
const IP: usize = ETH_HEADER_LEN;

/// True if the IPv4 header at `ip_at` has a non-zero fragment offset (RFC 791), i.e. its packet
/// carries no transport header.
fn non_first_fragment(frame: &[u8], ip_at: usize) -> bool {
    read_u16(frame, ip_at + 6) & 0x1fff != 0
}

/// Offset of the transport header and the end of the packet, if the IPv4 header and `need`
/// transport bytes are inside the frame and the packet is not a non-first fragment.
fn l4_bounds(frame: &[u8], ip: &Ipv4Meta, need: usize) -> Option<(usize, usize)> {
    let l4 = IP + usize::from(ip.header_len);
    let end = (IP + usize::from(ip.total_len)).min(frame.len());
    if usize::from(ip.header_len) < 20 || l4 + need > end || non_first_fragment(frame, IP) {
        return None;
    }
    Some((l4, end))
}

/// Offset of the TCP/UDP checksum field within its header, and how it is treated.
fn l4_csum_field(proto: IpProto, csum: L4Csum) -> Option<(usize, usize, Field)> {
    // (checksum offset, minimum header length, field kind)
    let (at, need, full) = match proto {
        IpProto::TCP => (16, 20, Field::Full),
        IpProto::UDP => (6, 8, Field::Udp),
        _ => return None,
    };
    Some((at, need, if csum == L4Csum::Partial { Field::Partial } else { full }))
}

fn ip_header_ok(frame: &[u8], ip: &Ipv4Meta) -> bool {
    usize::from(ip.header_len) >= 20 && frame.len() >= IP + usize::from(ip.header_len)
}

// ---------------------------------------------------------------------------------------------
// Rewrites
// ---------------------------------------------------------------------------------------------

/// Rewrites the address at IPv4 header offset `field_at` (12 source, 16 destination).
fn set_ip(frame: &mut [u8], ip: &Ipv4Meta, field_at: usize, new: Ipv4Addr, csum: L4Csum) {
    if !ip_header_ok(frame, ip) {
        return;
    }
    let d = write_addr(frame, IP + field_at, new);
    adjust(frame, IP + 10, d, Field::Full);
    // The address is in the TCP/UDP pseudo-header (RFC 793 §3.1, RFC 768); ICMP has none.
    if let Some((at, need, field)) = l4_csum_field(ip.flow.proto, csum) {
        if let Some((l4, _)) = l4_bounds(frame, ip, need) {
            adjust(frame, l4 + at, d, field);
        }
    }
}

/// Rewrites the IPv4 source address, updating the IPv4 header checksum and the TCP/UDP checksum
/// (the address is in their pseudo-header). A UDP checksum of zero stays zero; ICMP has no
/// pseudo-header and is not touched; a non-first fragment has only its IPv4 header changed.
pub fn set_src_ip(frame: &mut [u8], ip: &Ipv4Meta, new: Ipv4Addr, csum: L4Csum) {
    set_ip(frame, ip, 12, new, csum);
}

/// Rewrites the IPv4 destination address; checksums as for [`set_src_ip`].
pub fn set_dst_ip(frame: &mut [u8], ip: &Ipv4Meta, new: Ipv4Addr, csum: L4Csum) {
    set_ip(frame, ip, 16, new, csum);
}

/// Rewrites the TCP/UDP port at transport offset `port_at` (0 source, 2 destination).
fn set_port(frame: &mut [u8], ip: &Ipv4Meta, port_at: usize, new: u16, csum: L4Csum) {
    let Some((at, need, field)) = l4_csum_field(ip.flow.proto, csum) else { return };
    let Some((l4, _)) = l4_bounds(frame, ip, need) else { return };
    let d = write_u16(frame, l4 + port_at, new);
    // Ports are not in the pseudo-header: a partial sum does not change.
    if field != Field::Partial {
        adjust(frame, l4 + at, d, field);
    }
}

/// Rewrites the TCP/UDP source port. With [`L4Csum::Full`] the checksum is updated (a UDP
/// checksum of zero stays zero); with [`L4Csum::Partial`] it is left alone, ports not being part
/// of the pseudo-header sum. Other protocols and non-first fragments are left unchanged.
pub fn set_src_port(frame: &mut [u8], ip: &Ipv4Meta, new: u16, csum: L4Csum) {
    set_port(frame, ip, 0, new, csum);
}

/// Rewrites the TCP/UDP destination port; checksums as for [`set_src_port`].
pub fn set_dst_port(frame: &mut [u8], ip: &Ipv4Meta, new: u16, csum: L4Csum) {
    set_port(frame, ip, 2, new, csum);
}

/// Rewrites the identifier of an ICMP echo request or reply (RFC 792, types 8 and 0) and updates
/// the ICMP checksum. Anything else is left unchanged.
pub fn set_icmp_echo_id(frame: &mut [u8], ip: &Ipv4Meta, new: u16) {
    if ip.flow.proto != IpProto::ICMP {
        return;
    }
    let Some((l4, _)) = l4_bounds(frame, ip, 8) else { return };
    if frame[l4] != 0 && frame[l4] != 8 {
        return;
    }
    let d = write_u16(frame, l4 + 4, new);
    adjust(frame, l4 + 2, d, Field::Full);
}

/// Turns an ICMP echo request into its reply in place: type 0, the addresses swapped (the IPv4
/// checksum does not change with their order), TTL 64, from `src_mac` back to the requester.
/// Returns false, changing nothing, for anything but a whole echo request.
pub fn echo_reply_in_place(frame: &mut [u8], ip: &Ipv4Meta, src_mac: crate::model::Mac) -> bool {
    if ip.flow.proto != IpProto::ICMP || ip.fragment || ip.flow.l4.icmp_type != 8 {
        return false;
    }
    let Some((icmp, _)) = l4_bounds(frame, ip, 8) else { return false };
    let requester = crate::model::Mac(frame[6..12].try_into().expect("an Ethernet header"));
    crate::packet::set_macs(frame, requester, src_mac);
    let d = write_u16(frame, icmp, 0);
    adjust(frame, icmp + 2, d, Field::Full);
    let ttl_at = ETH_HEADER_LEN + 8;
    let d = write_u16(frame, ttl_at, u16::from_be_bytes([64, frame[ttl_at + 1]]));
    adjust(frame, ETH_HEADER_LEN + 10, d, Field::Full);
    let (src, dst) = (ip.flow.src.octets(), ip.flow.dst.octets());
    frame[ETH_HEADER_LEN + 12..ETH_HEADER_LEN + 16].copy_from_slice(&dst);
    frame[ETH_HEADER_LEN + 16..ETH_HEADER_LEN + 20].copy_from_slice(&src);
    true
}

/// Rewrites the source (`addr_at` 12, `port_at` 0) or destination (16, 2) of the packet quoted in
/// an ICMP error.
fn set_quoted(frame: &mut [u8], ip: &Ipv4Meta, addr_at: usize, port_at: usize, new_ip: Ipv4Addr, port: Option<u16>) {
    if ip.flow.proto != IpProto::ICMP || ip.fragment {
        return;
    }
    let Some((icmp, end)) = l4_bounds(frame, ip, 8) else { return };
    if !ICMP_ERROR_TYPES.contains(&frame[icmp]) {
        return;
    }
    // The quoted IPv4 header must be whole and followed by 8 bytes (RFC 792), as `icmp_quoted`
    // requires.
    let q = icmp + 8;
    let Some(&vihl) = frame.get(q) else { return };
    let qihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || qihl < 20 || q + qihl + 8 > end {
        return;
    }
    // Everything changed inside the ICMP message, for the outer ICMP checksum.
    let mut outer = Delta::default();
    let addr = write_addr(frame, q + addr_at, new_ip);
    outer.merge(addr);
    outer.merge(adjust(frame, q + 10, addr, Field::Full));

    let l4 = q + qihl;
    if !non_first_fragment(frame, q) {
        match IpProto(frame[q + 9]) {
            proto @ (IpProto::TCP | IpProto::UDP) => {
                let mut d = addr; // the address is in the quoted packet's pseudo-header
                if let Some(p) = port {
                    let pd = write_u16(frame, l4 + port_at, p);
                    outer.merge(pd);
                    d.merge(pd);
                }
                // The quoted L4 checksum covers data that is usually cut off, so nobody can
                // verify it; still, keep it consistent when it is inside the quote (always for
                // UDP, for TCP only if more than 8 bytes are quoted, as Linux does) so that a
                // whole quoted packet stays valid.
                let (at, field) = if proto == IpProto::TCP { (16, Field::Full) } else { (6, Field::Udp) };
                if l4 + at + 2 <= end {
                    outer.merge(adjust(frame, l4 + at, d, field));
                }
            }
            IpProto::ICMP => {
                // A quoted echo's "port" is its identifier, whichever side is rewritten.
                if let Some(id) = port.filter(|_| frame[l4] == 0 || frame[l4] == 8) {
                    let d = write_u16(frame, l4 + 4, id);
                    outer.merge(d);
                    outer.merge(adjust(frame, l4 + 2, d, Field::Full));
                }
            }
            _ => {}
        }
    }
    adjust(frame, icmp + 2, outer, Field::Full);
}

/// For an ICMP error (RFC 792 types 3, 11, 12) whose quote [`icmp_quoted`](super::icmp_quoted)
/// accepts: rewrites the quoted packet's source address and, if `new_port` is given, its TCP/UDP
/// source port (for a quoted ICMP echo, its identifier). Fixes the quoted IPv4 header checksum and
/// the outer ICMP checksum; the quoted TCP/UDP checksum is adjusted too when it lies inside the
/// quote (a UDP one of zero stays zero). Other frames are left unchanged.
pub fn set_quoted_src(frame: &mut [u8], ip: &Ipv4Meta, new_ip: Ipv4Addr, new_port: Option<u16>) {
    set_quoted(frame, ip, 12, 0, new_ip, new_port);
}

/// As [`set_quoted_src`], for the quoted packet's destination address and port.
pub fn set_quoted_dst(frame: &mut [u8], ip: &Ipv4Meta, new_ip: Ipv4Addr, new_port: Option<u16>) {
    set_quoted(frame, ip, 16, 2, new_ip, new_port);
}

// ---------------------------------------------------------------------------------------------
// Frames the fabric sends
// ---------------------------------------------------------------------------------------------

/// Appends an Ethernet II header and a 20-byte IPv4 header (no options, checksum filled in) for a
/// payload of `payload_len` bytes.
#[allow(clippy::too_many_arguments)]
fn push_eth_ipv4(
    f: &mut Vec<u8>,
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    tos: u8,
    dont_fragment: bool,
    proto: IpProto,
    payload_len: usize,
) {
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_at = f.len();
    let total = (20 + payload_len) as u16;
    let flags: u16 = if dont_fragment { 0x4000 } else { 0 };
    f.extend_from_slice(&[0x45, tos]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0]); // identification
    f.extend_from_slice(&flags.to_be_bytes());
    f.extend_from_slice(&[64, proto.0, 0, 0]); // TTL 64, checksum below
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let c = checksum(&f[ip_at..ip_at + 20]);
    f[ip_at + 10..ip_at + 12].copy_from_slice(&c.to_be_bytes());
}

fn addr_at(frame: &[u8], at: usize) -> Ipv4Addr {
    match frame.get(at..at + 4) {
        Some(b) => Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        None => Ipv4Addr::UNSPECIFIED,
    }
}

/// ICMP destination unreachable, code 4 "fragmentation needed and DF set" with the next-hop `mtu`
/// (RFC 1191 §4), from `router_ip` (Ethernet source `router_mac`) back to the sender of
/// `offending`, an Ethernet frame [`parse`](super::parse) accepted as IPv4. It quotes the offending
/// IPv4 header and the first 8 bytes of its payload (RFC 792); TTL 64, TOS 0xc0 (RFC 1812
/// §4.3.2.5), valid IPv4 and ICMP checksums; Ethernet destination = the offending source MAC.
///
/// The caller decides whether an error may be sent at all (never about an ICMP error, a
/// broadcast or a non-first fragment: RFC 1812 §4.3.2.7). Never panics; on a frame that is not
/// IPv4 the quote is whatever bytes are there.
pub fn icmp_frag_needed(offending: &[u8], router_mac: Mac, router_ip: Ipv4Addr, mtu: u16) -> Vec<u8> {
    let ip = offending.get(IP..).unwrap_or(&[]);
    let ihl = ip.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    let total = ip.get(2..4).map_or(ip.len(), |t| usize::from(u16::from_be_bytes([t[0], t[1]])));
    let quote = &ip[..(ihl + 8).min(total).min(ip.len())];
    let dst_mac = offending.get(6..12).map_or(Mac([0; 6]), |m| Mac([m[0], m[1], m[2], m[3], m[4], m[5]]));
    let dst = addr_at(offending, IP + 12);

    let icmp_len = 8 + quote.len();
    let mut f = Vec::with_capacity(IP + 20 + icmp_len);
    push_eth_ipv4(&mut f, dst_mac, router_mac, router_ip, dst, 0xc0, false, IpProto::ICMP, icmp_len);
    let icmp_at = f.len();
    // RFC 1191 §4: type 3, code 4, checksum, unused (16 bits), next-hop MTU.
    f.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&mtu.to_be_bytes());
    f.extend_from_slice(quote);
    let c = checksum(&f[icmp_at..]);
    f[icmp_at + 2..icmp_at + 4].copy_from_slice(&c.to_be_bytes());
    f
}

/// A TCP RST answering `offending`, a TCP segment [`parse`](super::parse) accepted: addresses and
/// ports swapped, Ethernet addresses as given. Per RFC 793 §3.4 ("Reset Generation"): if the
/// segment has ACK set, the RST's sequence number is its acknowledgment number (and ACK is not
/// set); otherwise the sequence number is zero, ACK is set and the acknowledgment number is the
/// segment's sequence number plus its length (data, plus one each for SYN and FIN). Window zero,
/// TTL 64, DF set, valid checksums.
///
/// The caller must not answer an RST with an RST (RFC 793). Never panics; missing fields of a
/// truncated input read as zero.
pub fn tcp_rst_for(offending: &[u8], src_mac: Mac, dst_mac: Mac) -> Vec<u8> {
    let ip = offending.get(IP..).unwrap_or(&[]);
    let ihl = ip.first().map_or(20, |b| usize::from(b & 0x0f) * 4);
    let total = ip.get(2..4).map_or(0, |t| usize::from(u16::from_be_bytes([t[0], t[1]])));
    let tcp = ip.get(ihl..).unwrap_or(&[]);
    let word = |at: usize| tcp.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let half = |at: usize| tcp.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let (sport, dport, seq, ack) = (half(0), half(2), word(4), word(8));
    let doff = tcp.get(12).map_or(20, |b| usize::from(b >> 4) * 4);
    let flags = TcpFlags(tcp.get(13).copied().unwrap_or(0));
    let (src, dst) = (addr_at(offending, IP + 12), addr_at(offending, IP + 16));

    let (rst_seq, rst_ack, rst_flags) = if flags.contains(TcpFlags::ACK) {
        (ack, 0, TcpFlags::RST)
    } else {
        let data = total.saturating_sub(ihl + doff) as u32;
        let len = data + u32::from(flags.contains(TcpFlags::SYN)) + u32::from(flags.contains(TcpFlags::FIN));
        (0, seq.wrapping_add(len), TcpFlags::RST | TcpFlags::ACK)
    };

    let mut f = Vec::with_capacity(IP + 40);
    push_eth_ipv4(&mut f, dst_mac, src_mac, dst, src, 0, true, IpProto::TCP, 20);
    let tcp_at = f.len();
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&rst_seq.to_be_bytes());
    f.extend_from_slice(&rst_ack.to_be_bytes());
    f.extend_from_slice(&[5 << 4, rst_flags.0, 0, 0, 0, 0, 0, 0]); // data offset 5, window 0, csum, urg
    let c = !fold(sum(&f[tcp_at..], pseudo_header_sum(dst, src, IpProto::TCP, 20)));
    f[tcp_at + 16..tcp_at + 18].copy_from_slice(&c.to_be_bytes());
    f
}

// ---------------------------------------------------------------------------------------------
// Verification (tests and debugging)
// ---------------------------------------------------------------------------------------------

/// True if `frame` parses as IPv4 and its IPv4 header checksum and, where it can be checked, its
/// TCP/UDP/ICMP checksum (RFC 1071, with the RFC 793/768 pseudo-header) are valid. A UDP checksum
/// of zero ("none") is valid; the transport checksum of a fragment is not checked (it covers the
/// whole datagram); other protocols have only the IPv4 header checked. Not for the fast path: it
/// sums the whole packet.
pub fn verify(frame: &[u8]) -> bool {
    let Ok(meta) = super::parse(frame) else { return false };
    let super::L3Meta::Ipv4(ip) = meta.l3 else { return false };
    let hl = usize::from(ip.header_len);
    if fold(sum(&frame[IP..IP + hl], 0)) != 0xffff {
        return false;
    }
    if ip.fragment {
        return true;
    }
    let l4 = &frame[IP + hl..IP + usize::from(ip.total_len)];
    let l4_len = l4.len() as u16;
    let f = ip.flow;
    match f.proto {
        IpProto::UDP if l4[6..8] == [0, 0] => true,
        IpProto::TCP | IpProto::UDP => fold(sum(l4, pseudo_header_sum(f.src, f.dst, f.proto, l4_len))) == 0xffff,
        IpProto::ICMP => fold(sum(l4, 0)) == 0xffff,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{build, icmp_quoted, parse, L3Meta};
    use super::*;

    const A: Mac = Mac([2, 0, 0, 0, 0, 0xa]);
    const B: Mac = Mac([2, 0, 0, 0, 0, 0xb]);
    const PRIV: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
    const HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const EIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
    const NAT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

    fn meta(f: &[u8]) -> Ipv4Meta {
        match parse(f).expect("parses").l3 {
            L3Meta::Ipv4(ip) => ip,
            other => panic!("not IPv4: {other:?}"),
        }
    }

    fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(A.0, B.0).ipv4(src.octets(), dst.octets(), 64).udp(sport, dport);
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        f
    }

    fn tcp(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: Option<u32>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = etherparse::PacketBuilder::ethernet2(A.0, B.0)
            .ipv4(src.octets(), dst.octets(), 64)
            .tcp(sport, dport, seq, 64240);
        b = match ack {
            Some(a) => b.ack(a).psh(),
            None => b.syn(),
        };
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        f
    }

    fn echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, reply: bool) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(A.0, B.0).ipv4(src.octets(), dst.octets(), 64);
        let b = if reply { b.icmpv4_echo_reply(id, 3) } else { b.icmpv4_echo_request(id, 3) };
        let mut f = Vec::new();
        b.write(&mut f, b"0123456789abcdef").unwrap();
        f
    }

    fn l4_csum_at(f: &[u8]) -> usize {
        let ip = meta(f);
        IP + usize::from(ip.header_len) + if ip.flow.proto == IpProto::TCP { 16 } else { 6 }
    }

    fn field(f: &[u8], at: usize) -> u16 {
        read_u16(f, at)
    }

    fn ip_header_valid(f: &[u8]) -> bool {
        let hl = usize::from(f[IP] & 0x0f) * 4;
        fold(sum(&f[IP..IP + hl], 0)) == 0xffff
    }

    /// The folded pseudo-header sum of the frame as it is now (what Linux leaves in the field
    /// with CHECKSUM_PARTIAL).
    fn pseudo_fold(f: &[u8]) -> u16 {
        let ip = meta(f);
        let len = ip.total_len - u16::from(ip.header_len);
        fold(pseudo_header_sum(ip.flow.src, ip.flow.dst, ip.flow.proto, len))
    }

    /// Turns a frame with a full TCP/UDP checksum into a NEEDS_CSUM one.
    fn to_partial(mut f: Vec<u8>) -> Vec<u8> {
        let at = l4_csum_at(&f);
        let p = pseudo_fold(&f);
        f[at..at + 2].copy_from_slice(&p.to_be_bytes());
        f
    }

    /// What the device does with a NEEDS_CSUM frame: sum from the transport header on (the field
    /// included) and store the complement.
    fn complete_partial(mut f: Vec<u8>) -> Vec<u8> {
        let ip = meta(&f);
        let l4 = IP + usize::from(ip.header_len);
        let end = IP + usize::from(ip.total_len);
        let at = l4_csum_at(&f);
        let c = !fold(sum(&f[l4..end], 0));
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// The L4 checksum recomputed from scratch (RFC 1071), UDP zero sent as 0xffff.
    fn recomputed(f: &[u8]) -> u16 {
        let ip = meta(f);
        let l4 = IP + usize::from(ip.header_len);
        let end = IP + usize::from(ip.total_len);
        let at = l4_csum_at(f);
        let mut copy = f[l4..end].to_vec();
        copy[at - l4..at - l4 + 2].fill(0);
        let c = !fold(sum(&copy, pseudo_header_sum(ip.flow.src, ip.flow.dst, ip.flow.proto, (end - l4) as u16)));
        if ip.flow.proto == IpProto::UDP && c == 0 {
            0xffff
        } else {
            c
        }
    }

    /// Checksums equal as one's-complement numbers (0 and 0xffff are both zero).
    fn same(a: u16, b: u16) -> bool {
        a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
    }

    #[test]
    fn address_rewrites_keep_every_checksum_valid() {
        let frames = [
            tcp(PRIV, HOST, 40000, 443, 1000, None, b""),
            tcp(PRIV, HOST, 40000, 443, 1000, Some(5), b"GET / HTTP/1.1\r\n\r\n"),
            udp(PRIV, HOST, 5353, 53, b"query"),
            udp(PRIV, HOST, 5353, 53, b"odd"),
            echo(PRIV, HOST, 77, false),
        ];
        for orig in frames {
            assert!(verify(&orig));
            let mut f = orig.clone();
            let ip = meta(&f);
            set_src_ip(&mut f, &ip, EIP, L4Csum::Full);
            assert!(verify(&f), "after src: {f:?}");
            let after = meta(&f);
            assert_eq!((after.flow.src, after.flow.dst, after.flow.l4), (EIP, HOST, ip.flow.l4));
            set_dst_ip(&mut f, &ip, NAT, L4Csum::Full);
            assert!(verify(&f));
            assert_eq!((meta(&f).flow.src, meta(&f).flow.dst), (EIP, NAT));
            // Back again: the original bytes (checksums are deterministic for these values).
            set_src_ip(&mut f, &ip, PRIV, L4Csum::Full);
            set_dst_ip(&mut f, &ip, HOST, L4Csum::Full);
            assert!(verify(&f));
            assert_eq!(meta(&f), ip);
        }
    }

    #[test]
    fn port_rewrites_keep_checksums_valid() {
        for orig in [tcp(PRIV, HOST, 40000, 443, 7, Some(9), b"data"), udp(PRIV, HOST, 5353, 53, b"query")] {
            let mut f = orig.clone();
            let ip = meta(&f);
            set_src_port(&mut f, &ip, 1024, L4Csum::Full);
            assert!(verify(&f));
            set_dst_port(&mut f, &ip, 65535, L4Csum::Full);
            assert!(verify(&f));
            let l4 = meta(&f).flow.l4;
            assert_eq!((l4.src_port, l4.dst_port), (1024, 65535));
            assert_eq!(&f[..IP + 20], &orig[..IP + 20], "IPv4 header untouched");
        }
        // Ports of other protocols do not exist: nothing changes.
        let mut e = echo(PRIV, HOST, 77, false);
        let orig = e.clone();
        let ip = meta(&e);
        set_src_port(&mut e, &ip, 1, L4Csum::Full);
        set_dst_port(&mut e, &ip, 2, L4Csum::Partial);
        assert_eq!(e, orig);
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut f = udp(PRIV, HOST, 5353, 53, b"no checksum");
        let at = l4_csum_at(&f);
        f[at..at + 2].fill(0);
        let ip = meta(&f);
        set_src_ip(&mut f, &ip, EIP, L4Csum::Full);
        set_dst_ip(&mut f, &ip, NAT, L4Csum::Full);
        set_src_port(&mut f, &ip, 2000, L4Csum::Full);
        set_dst_port(&mut f, &ip, 3000, L4Csum::Full);
        assert_eq!(field(&f, at), 0);
        assert!(verify(&f));
        let after = meta(&f);
        assert_eq!(
            (after.flow.src, after.flow.dst, after.flow.l4.src_port, after.flow.l4.dst_port),
            (EIP, NAT, 2000, 3000)
        );
    }

    #[test]
    fn partial_checksum_follows_the_pseudo_header_only() {
        for orig in [tcp(PRIV, HOST, 40000, 443, 1, Some(1), &[0x5a; 3000]), udp(PRIV, HOST, 5353, 53, b"partial")] {
            let mut f = to_partial(orig.clone());
            let ip = meta(&f);
            let at = l4_csum_at(&f);
            set_src_ip(&mut f, &ip, EIP, L4Csum::Partial);
            assert!(ip_header_valid(&f));
            assert_eq!(field(&f, at), pseudo_fold(&f), "pseudo-header sum of the new source");
            set_dst_ip(&mut f, &ip, NAT, L4Csum::Partial);
            assert_eq!(field(&f, at), pseudo_fold(&f), "pseudo-header sum of the new destination");
            let before_ports = field(&f, at);
            set_src_port(&mut f, &ip, 1111, L4Csum::Partial);
            set_dst_port(&mut f, &ip, 2222, L4Csum::Partial);
            assert_eq!(field(&f, at), before_ports, "ports are not in the pseudo-header");
            assert_eq!((meta(&f).flow.l4.src_port, meta(&f).flow.l4.dst_port), (1111, 2222));
            // The device completes it into a valid checksum.
            assert!(verify(&complete_partial(f)));
        }
    }

    #[test]
    fn icmp_echo_id_rewrite() {
        for reply in [false, true] {
            let mut f = echo(PRIV, HOST, 77, reply);
            let ip = meta(&f);
            set_icmp_echo_id(&mut f, &ip, 40001);
            assert!(verify(&f));
            assert_eq!(meta(&f).flow.l4.icmp_id, 40001);
            // Address rewrites do not touch the ICMP checksum (no pseudo-header).
            let icmp_csum = field(&f, IP + 22);
            set_src_ip(&mut f, &ip, EIP, L4Csum::Full);
            assert_eq!(field(&f, IP + 22), icmp_csum);
            assert!(verify(&f));
        }
        // Not an echo: unchanged.
        let mut err = build::icmp_error(A, B, HOST, PRIV, 3, 3, &udp(PRIV, HOST, 1, 2, b""));
        let orig = err.clone();
        let ip = meta(&err);
        set_icmp_echo_id(&mut err, &ip, 5);
        assert_eq!(err, orig);
    }

    /// An ICMP error quoting the whole of `quoted` (Linux quotes up to 576 bytes).
    fn icmp_error_whole(src: Ipv4Addr, dst: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
        let q = &quoted[IP..];
        let mut f = Vec::new();
        push_eth_ipv4(&mut f, A, B, src, dst, 0, false, IpProto::ICMP, 8 + q.len());
        let at = f.len();
        f.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(q);
        let c = checksum(&f[at..]);
        f[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// The quoted packet as an Ethernet frame of its own.
    fn quoted_frame(f: &[u8]) -> Vec<u8> {
        let ip = meta(f);
        let mut q = f[..IP].to_vec();
        q.extend_from_slice(&f[IP + usize::from(ip.header_len) + 8..]);
        q
    }

    #[test]
    fn quoted_rewrites_fix_quoted_header_and_icmp_checksums() {
        // The NAT's outbound packet (EIP:port -> host), answered by the host with an ICMP error
        // to the EIP; the reverse translation rewrites the quoted source back to the private IP.
        let sent = [
            udp(EIP, HOST, 1024, 53, b"query"),
            tcp(EIP, HOST, 1024, 443, 99, None, b""),
            tcp(EIP, HOST, 1024, 443, 99, Some(1), b"data"),
            echo(EIP, HOST, 1024, false),
        ];
        for s in &sent {
            for whole in [false, true] {
                let mut f =
                    if whole { icmp_error_whole(HOST, EIP, s) } else { build::icmp_error(A, B, HOST, EIP, 3, 3, s) };
                let ip = meta(&f);
                assert!(verify(&f));
                set_quoted_src(&mut f, &ip, PRIV, Some(40000));
                set_dst_ip(&mut f, &ip, PRIV, L4Csum::Full);
                assert!(verify(&f), "outer checksums");
                let q = icmp_quoted(&f, &meta(&f)).expect("still quotes");
                assert_eq!((q.src, q.dst), (PRIV, HOST));
                let id = if q.proto == IpProto::ICMP { q.l4.icmp_id } else { q.l4.src_port };
                assert_eq!(id, 40000);
                let inner = quoted_frame(&f);
                assert!(ip_header_valid(&inner), "quoted IPv4 header checksum");
                if whole {
                    assert!(verify(&inner), "a whole quoted packet stays valid");
                }
                // And the destination side.
                set_quoted_dst(&mut f, &ip, NAT, Some(8080));
                assert!(verify(&f));
                let q = icmp_quoted(&f, &meta(&f)).unwrap();
                assert_eq!(q.dst, NAT);
                if q.proto != IpProto::ICMP {
                    assert_eq!(q.l4.dst_port, 8080);
                }
                assert!(ip_header_valid(&quoted_frame(&f)));
                if whole {
                    assert!(verify(&quoted_frame(&f)));
                }
                // Without a port only the address changes.
                set_quoted_src(&mut f, &ip, EIP, None);
                assert!(verify(&f));
                let q2 = icmp_quoted(&f, &meta(&f)).unwrap();
                assert_eq!((q2.src, q2.l4), (EIP, q.l4));
            }
        }
        // Not an ICMP error: unchanged.
        let mut e = echo(PRIV, HOST, 1, false);
        let orig = e.clone();
        let ip = meta(&e);
        set_quoted_src(&mut e, &ip, EIP, Some(1));
        assert_eq!(e, orig);
    }

    #[test]
    fn frag_needed_quotes_the_offending_packet() {
        let mut big = udp(PRIV, HOST, 5353, 53, &[7; 3000]);
        big[IP + 6] = 0x40; // DF
        big[IP + 10..IP + 12].fill(0);
        let c = checksum(&big[IP..IP + 20]);
        big[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
        let router = Mac([2, 0, 0, 0, 0, 1]);
        let gw = Ipv4Addr::new(10, 0, 1, 1);
        let f = icmp_frag_needed(&big, router, gw, 1500);
        assert!(verify(&f));
        let m = parse(&f).unwrap();
        assert_eq!((m.dst_mac, m.src_mac), (A, router));
        let ip = meta(&f);
        assert_eq!((ip.flow.src, ip.flow.dst, ip.ttl, ip.flow.proto), (gw, PRIV, 64, IpProto::ICMP));
        assert_eq!((ip.flow.l4.icmp_type, ip.flow.l4.icmp_code), (3, 4));
        assert_eq!(read_u16(&f, IP + 20 + 6), 1500, "next-hop MTU");
        assert_eq!(usize::from(ip.total_len), 20 + 8 + 20 + 8);
        let q = icmp_quoted(&f, &ip).unwrap();
        assert_eq!((q.src, q.dst, q.proto, q.l4.src_port, q.l4.dst_port), (PRIV, HOST, IpProto::UDP, 5353, 53));
        assert_eq!(&f[IP + 28..], &big[IP..IP + 28]);
        // Never panics on junk.
        for n in 0..40 {
            let _ = icmp_frag_needed(&big[..n], router, gw, 1500);
        }
    }

    #[test]
    fn rst_answers_per_rfc_793() {
        // A SYN (no ACK): seq 0, ACK set, ack = seq + 1 (the SYN counts one).
        let syn = tcp(PRIV, HOST, 40000, 443, 1000, None, b"");
        let r = tcp_rst_for(&syn, B, A);
        assert!(verify(&r));
        let m = parse(&r).unwrap();
        assert_eq!((m.dst_mac, m.src_mac), (A, B));
        let ip = meta(&r);
        assert_eq!((ip.flow.src, ip.flow.dst, ip.flow.l4.src_port, ip.flow.l4.dst_port), (HOST, PRIV, 443, 40000));
        assert_eq!(ip.flow.l4.tcp_flags, TcpFlags::RST | TcpFlags::ACK);
        let t = etherparse::TcpHeaderSlice::from_slice(&r[IP + 20..]).unwrap();
        assert_eq!((t.sequence_number(), t.acknowledgment_number()), (0, 1001));
        // A data segment with ACK: seq = its ack, no ACK.
        let data = tcp(PRIV, HOST, 40000, 443, 5000, Some(0xdead_beef), b"payload");
        let r = tcp_rst_for(&data, B, A);
        assert!(verify(&r));
        assert_eq!(meta(&r).flow.l4.tcp_flags, TcpFlags::RST);
        let t = etherparse::TcpHeaderSlice::from_slice(&r[IP + 20..]).unwrap();
        assert_eq!((t.sequence_number(), t.acknowledgment_number()), (0xdead_beef, 0));
        // Data without ACK: ack = seq + data length (+1 for SYN).
        let mut syn_data = tcp(PRIV, HOST, 1, 2, u32::MAX, None, b"abc");
        syn_data[IP + 20 + 13] |= TcpFlags::FIN.0; // and FIN (checksum irrelevant to the RST)
        let r = tcp_rst_for(&syn_data, B, A);
        let t = etherparse::TcpHeaderSlice::from_slice(&r[IP + 20..]).unwrap();
        assert_eq!(t.acknowledgment_number(), u32::MAX.wrapping_add(3 + 2));
        for n in 0..syn.len() {
            let _ = tcp_rst_for(&syn[..n], B, A);
        }
    }

    /// xorshift64*, enough for a property loop without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn u16(&mut self) -> u16 {
            self.next() as u16
        }
        fn addr(&mut self) -> Ipv4Addr {
            Ipv4Addr::from(self.next() as u32)
        }
    }

    #[test]
    fn incremental_equals_full_recomputation() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..3000 {
            let payload: Vec<u8> = (0..rng.next() % 64).map(|_| rng.next() as u8).collect();
            let (src, dst, sp, dp) = (rng.addr(), rng.addr(), rng.u16(), rng.u16());
            let orig = if i % 2 == 0 {
                tcp(src, dst, sp, dp, rng.next() as u32, None, &payload)
            } else {
                udp(src, dst, sp, dp, &payload)
            };
            let ip = meta(&orig);
            let at = l4_csum_at(&orig);

            let mut f = orig.clone();
            let (nsrc, ndst, nsp, ndp) = (rng.addr(), rng.addr(), rng.u16(), rng.u16());
            set_src_ip(&mut f, &ip, nsrc, L4Csum::Full);
            set_dst_ip(&mut f, &ip, ndst, L4Csum::Full);
            set_src_port(&mut f, &ip, nsp, L4Csum::Full);
            set_dst_port(&mut f, &ip, ndp, L4Csum::Full);
            assert!(verify(&f), "iteration {i}");
            assert!(same(field(&f, at), recomputed(&f)), "iteration {i}");
            let mut hdr = f[IP..IP + 20].to_vec();
            hdr[10..12].fill(0);
            assert!(same(field(&f, IP + 10), checksum(&hdr)), "iteration {i}");
            let m = meta(&f);
            assert_eq!((m.flow.src, m.flow.dst, m.flow.l4.src_port, m.flow.l4.dst_port), (nsrc, ndst, nsp, ndp));

            let mut p = to_partial(orig);
            set_src_ip(&mut p, &ip, nsrc, L4Csum::Partial);
            set_dst_ip(&mut p, &ip, ndst, L4Csum::Partial);
            set_src_port(&mut p, &ip, nsp, L4Csum::Partial);
            assert_eq!(field(&p, at), pseudo_fold(&p), "iteration {i}");
            assert!(verify(&complete_partial(p)), "iteration {i}");
        }
    }

    fn with_options(mut f: Vec<u8>) -> Vec<u8> {
        // NOP, NOP, NOP, end of options: IHL 6 (RFC 791 §3.1).
        f.splice(IP + 20..IP + 20, [1, 1, 1, 0]);
        f[IP] = 0x46;
        let total = read_u16(&f, IP + 2) + 4;
        f[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
        f[IP + 10..IP + 12].fill(0);
        let c = checksum(&f[IP..IP + 24]);
        f[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn odd_frames_ip_options_and_minimal_sizes() {
        let frames = [
            with_options(tcp(PRIV, HOST, 1, 2, 3, None, b"")),
            with_options(udp(PRIV, HOST, 1, 2, b"x")),
            with_options(echo(PRIV, HOST, 9, false)),
            udp(PRIV, HOST, 1, 2, b""),
            tcp(PRIV, HOST, 1, 2, 3, Some(4), b""),
        ];
        for orig in frames {
            assert!(verify(&orig));
            let mut f = orig.clone();
            let ip = meta(&f);
            set_src_ip(&mut f, &ip, EIP, L4Csum::Full);
            set_dst_ip(&mut f, &ip, NAT, L4Csum::Full);
            set_src_port(&mut f, &ip, 7, L4Csum::Full);
            set_dst_port(&mut f, &ip, 8, L4Csum::Full);
            set_icmp_echo_id(&mut f, &ip, 10);
            assert!(verify(&f));
            let m = meta(&f);
            assert_eq!((m.flow.src, m.flow.dst), (EIP, NAT));
            // Ethernet padding after the packet is left alone.
            let mut padded = orig.clone();
            padded.resize(orig.len().max(60) + 4, 0xee);
            let ip = meta(&padded);
            set_src_ip(&mut padded, &ip, EIP, L4Csum::Full);
            set_src_port(&mut padded, &ip, 7, L4Csum::Full);
            assert!(verify(&padded));
            assert!(padded[orig.len()..].iter().all(|&b| b == 0xee));
        }
    }

    #[test]
    fn fragments() {
        // The whole datagram and its first fragment (MF set, 16 bytes of UDP).
        let whole = udp(PRIV, HOST, 5353, 53, &[3; 40]);
        let mut first = whole[..IP + 20 + 16].to_vec();
        first[IP + 2..IP + 4].copy_from_slice(&36u16.to_be_bytes());
        first[IP + 6] = 0x20; // MF
        first[IP + 10..IP + 12].fill(0);
        let c = checksum(&first[IP..IP + 20]);
        first[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
        let (mut w, mut f1) = (whole.clone(), first.clone());
        let (iw, i1) = (meta(&w), meta(&f1));
        assert!(i1.fragment);
        set_src_ip(&mut w, &iw, EIP, L4Csum::Full);
        set_src_ip(&mut f1, &i1, EIP, L4Csum::Full);
        set_src_port(&mut w, &iw, 1024, L4Csum::Full);
        set_src_port(&mut f1, &i1, 1024, L4Csum::Full);
        assert!(verify(&w) && ip_header_valid(&f1));
        assert_eq!(&f1[IP + 20..], &w[IP + 20..IP + 36], "the first fragment's UDP header follows the datagram");

        // A later fragment (offset 2 = 16 bytes): only the IPv4 header changes.
        let mut later = whole.clone();
        later.drain(IP + 20..IP + 36);
        let total = read_u16(&later, IP + 2) - 16;
        later[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
        later[IP + 6..IP + 8].copy_from_slice(&2u16.to_be_bytes());
        later[IP + 10..IP + 12].fill(0);
        let c = checksum(&later[IP..IP + 20]);
        later[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
        let ip = meta(&later);
        let orig = later.clone();
        set_src_ip(&mut later, &ip, EIP, L4Csum::Full);
        set_dst_ip(&mut later, &ip, NAT, L4Csum::Partial);
        set_src_port(&mut later, &ip, 1, L4Csum::Full);
        assert!(verify(&later));
        assert_eq!(&later[IP + 20..], &orig[IP + 20..], "payload untouched");
        assert_eq!((meta(&later).flow.src, meta(&later).flow.dst), (EIP, NAT));
    }

    #[test]
    fn mismatched_or_truncated_frames_do_not_panic() {
        let sources = [
            tcp(PRIV, HOST, 1, 2, 3, None, b"abc"),
            udp(PRIV, HOST, 1, 2, b"abc"),
            echo(PRIV, HOST, 1, false),
            build::icmp_error(A, B, HOST, PRIV, 3, 4, &tcp(PRIV, HOST, 1, 2, 3, None, b"")),
        ];
        for src in &sources {
            let ip = meta(src);
            for n in 0..=src.len() {
                let mut f = src[..n].to_vec();
                set_src_ip(&mut f, &ip, EIP, L4Csum::Full);
                set_dst_ip(&mut f, &ip, EIP, L4Csum::Partial);
                set_src_port(&mut f, &ip, 1, L4Csum::Full);
                set_dst_port(&mut f, &ip, 1, L4Csum::Full);
                set_icmp_echo_id(&mut f, &ip, 1);
                set_quoted_src(&mut f, &ip, EIP, Some(1));
                set_quoted_dst(&mut f, &ip, EIP, Some(1));
                let _ = verify(&f);
            }
            // A meta from another frame.
            for other in &sources {
                let mut f = other.clone();
                set_quoted_dst(&mut f, &ip, EIP, Some(1));
                set_src_port(&mut f, &ip, 1, L4Csum::Full);
            }
        }
    }
}
