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

use super::{Ipv4Meta, ETHERTYPE_IPV4, ETH_HEADER_LEN, ICMP_ERROR_TYPES, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
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
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u64 {
    let acc = sum(&src.octets(), 0);
    let acc = sum(&dst.octets(), acc);
    acc + u64::from(protocol) + u64::from(l4_len)
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
fn l4_csum_field(protocol: u8, csum: L4Csum) -> Option<(usize, usize, Field)> {
    // (checksum offset, minimum header length, field kind)
    let (at, need, full) = match protocol {
        PROTO_TCP => (16, 20, Field::Full),
        PROTO_UDP => (6, 8, Field::Udp),
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
    if let Some((at, need, field)) = l4_csum_field(ip.protocol, csum) {
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
    let Some((at, need, field)) = l4_csum_field(ip.protocol, csum) else { return };
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
    if ip.protocol != PROTO_ICMP {
        return;
    }
    let Some((l4, _)) = l4_bounds(frame, ip, 8) else { return };
    if frame[l4] != 0 && frame[l4] != 8 {
        return;
    }
    let d = write_u16(frame, l4 + 4, new);
    adjust(frame, l4 + 2, d, Field::Full);
}

/// Rewrites the source (`addr_at` 12, `port_at` 0) or destination (16, 2) of the packet quoted in
/// an ICMP error.
fn set_quoted(frame: &mut [u8], ip: &Ipv4Meta, addr_at: usize, port_at: usize, new_ip: Ipv4Addr, port: Option<u16>) {
    if ip.protocol != PROTO_ICMP || ip.fragment {
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
        match frame[q + 9] {
            proto @ (PROTO_TCP | PROTO_UDP) => {
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
                let (at, field) = if proto == PROTO_TCP { (16, Field::Full) } else { (6, Field::Udp) };
                if l4 + at + 2 <= end {
                    outer.merge(adjust(frame, l4 + at, d, field));
                }
            }
            PROTO_ICMP => {
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
    protocol: u8,
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
    f.extend_from_slice(&[64, protocol, 0, 0]); // TTL 64, checksum below
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
    push_eth_ipv4(&mut f, dst_mac, router_mac, router_ip, dst, 0xc0, false, PROTO_ICMP, icmp_len);
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
    let flags = tcp.get(13).copied().unwrap_or(0);
    let (src, dst) = (addr_at(offending, IP + 12), addr_at(offending, IP + 16));

    let (rst_seq, rst_ack, rst_flags) = if flags & 0x10 != 0 {
        (ack, 0, 0x04) // RST
    } else {
        let data = total.saturating_sub(ihl + doff) as u32;
        let len = data + u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0);
        (0, seq.wrapping_add(len), 0x14) // RST + ACK
    };

    let mut f = Vec::with_capacity(IP + 40);
    push_eth_ipv4(&mut f, dst_mac, src_mac, dst, src, 0, true, PROTO_TCP, 20);
    let tcp_at = f.len();
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&rst_seq.to_be_bytes());
    f.extend_from_slice(&rst_ack.to_be_bytes());
    f.extend_from_slice(&[5 << 4, rst_flags, 0, 0, 0, 0, 0, 0]); // data offset 5, window 0, csum, urg
    let c = !fold(sum(&f[tcp_at..], pseudo_header_sum(dst, src, PROTO_TCP, 20)));
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
    match ip.protocol {
        PROTO_TCP => fold(sum(l4, pseudo_header_sum(ip.src, ip.dst, PROTO_TCP, l4_len))) == 0xffff,
        PROTO_UDP if l4[6..8] == [0, 0] => true,
        PROTO_UDP => fold(sum(l4, pseudo_header_sum(ip.src, ip.dst, PROTO_UDP, l4_len))) == 0xffff,
        PROTO_ICMP => fold(sum(l4, 0)) == 0xffff,
        _ => true,
    }
}
