//! Traffic mirroring, as AWS's VPC Traffic Mirroring does it: a copy of what a source ENI sends
//! or is delivered goes to a target ENI in VXLAN (RFC 7348). Fed by the data plane, never on the
//! decision path: with no session in the lab the data plane pays one branch per frame.
//!
//! - Which frames: for each frame the source's instance sent (judged by the filter's egress
//!   rules) that got past the source's own checks (its groups, its subnet's ACL: the fabric
//!   carried it on), and each frame delivered to the source (its ingress rules), the source's
//!   sessions are tried by session number, lowest first; the first whose filter accepts the
//!   packet mirrors it, once. A filter's rules are tried by rule number; the first match decides
//!   (accept or reject); no match, or no rules: not mirrored.
//! - Never mirrored (as on AWS): ARP (and anything but IPv4), DHCP, the instance metadata
//!   service (169.254.169.254) and Amazon Time Sync (169.254.169.123), and the copies
//!   themselves (they never enter the data plane as frames read from a TAP).
//! - The copy: outer Ethernet from the source's MAC to its VPC router, IPv4 from the source's
//!   primary IP to the target's (DF clear, TTL 64), UDP from a port hashed from the inner flow
//!   (49152-65535, RFC 7348 §5) to 4789 with checksum 0 (allowed for IPv4, RFC 7348 §5), the
//!   VXLAN header with the I flag and the session's VNI, then the frame as the source sent it or
//!   as it was delivered (MACs and NAT rewrites included), cut to `packet_length` bytes when the
//!   session sets one. The pipeline then routes and judges it (`Pipeline::process_mirror`):
//!   the target's groups must allow UDP 4789 from the source's address.
//! - A frame whose transport checksum the kernel left to the device (virtio NEEDS_CSUM) gets it
//!   completed in the copy, when the copy holds the whole packet.
//! - An offloaded TCP superframe (up to 64 KiB, TSO) is mirrored as the wire packets it is on
//!   EC2: cut into its segments first (`packet::segment`), each copied on its own, with complete
//!   checksums. A copy longer than the VPC's MTU of 9001 allows with the encapsulation (8965
//!   bytes of inner frame; a full 9001-byte packet is one) is cut to that, as a target with too
//!   small an MTU truncates on AWS.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::model::{EniIdx, Mac, Model, TrafficMirrorFilter};
use crate::packet::{self, rewrite, IpProto, L3Meta, ETHERTYPE_IPV4, ETH_HEADER_LEN};
use crate::pipeline::{DropReason, Verdict};

/// VXLAN's UDP port (IANA, RFC 7348).
pub const VXLAN_PORT: u16 = 4789;

/// Outer IPv4, UDP and VXLAN headers: what the encapsulation adds to the IP packet's size.
pub const ENCAP_IP_OVERHEAD: usize = 20 + 8 + 8;

/// The most of a frame a copy can carry within the VPC's MTU.
pub const MAX_INNER: usize = crate::pipeline::VPC_MTU as usize - ENCAP_IP_OVERHEAD;

/// Instance metadata (IMDS) and Amazon Time Sync: never mirrored.
const SERVICE_ADDRESSES: [Ipv4Addr; 2] = [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(169, 254, 169, 123)];

/// What one session did, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    /// The session's id.
    pub id: String,
    /// Copies delivered to the target.
    pub mirrored: u64,
    /// Copies the fabric refused, by drop reason name (`security_group_ingress`, ...).
    pub dropped: std::collections::BTreeMap<String, u64>,
}

/// How one session encapsulates, compiled from the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encap {
    /// The source ENI's MAC (outer source).
    pub source_mac: Mac,
    /// Its VPC router's MAC (outer destination: the copy is routed).
    pub router_mac: Mac,
    /// The source ENI's primary IP.
    pub source_ip: Ipv4Addr,
    /// The target ENI's primary IP.
    pub target_ip: Ipv4Addr,
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// Bytes of the frame kept after the VXLAN header; all when `None`.
    pub packet_length: Option<u16>,
}

#[derive(Clone, Debug)]
struct Session {
    /// Index into [`Mirrors::stats`].
    stat: usize,
    target: EniIdx,
    encap: Encap,
    filter: TrafficMirrorFilter,
}

/// The lab's sessions as the data plane runs them.
#[derive(Debug, Default)]
pub struct Mirrors {
    /// By port index: the sessions whose source it is, by session number.
    by_port: Vec<Vec<Session>>,
    active: bool,
    stats: Vec<SessionStats>,
    /// Per session: refusals by reason, indexed like `DropReason::ALL`.
    drops: Vec<[u64; DropReason::COUNT]>,
    /// The IPv4 identification of the next copy.
    ip_id: u16,
    /// The copy being sent: a zeroed virtio-net header, then the frame.
    pub buf: Vec<u8>,
}

/// Which of a port's sessions mirrors a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chosen {
    port: usize,
    at: usize,
}

impl Chosen {
    /// The source port of the session.
    pub fn port(self) -> usize {
        self.port
    }

    /// The session's position among its source's sessions (by session number).
    pub fn at(self) -> usize {
        self.at
    }
}

impl Mirrors {
    /// Compiles the model's sessions; counts of sessions that `previous` ran too (same id) go on.
    pub fn new(model: &Model, previous: Option<&Mirrors>) -> Mirrors {
        let mut by_port: Vec<Vec<Session>> = vec![Vec::new(); model.enis.len() + 1];
        let mut stats = Vec::new();
        let mut drops = Vec::new();
        for s in &model.traffic_mirror_sessions {
            let source = &model.enis[s.source.index()];
            let target = model.traffic_mirror_targets[s.target.index()].eni;
            let old = previous.and_then(|p| p.stats.iter().position(|x| x.id == s.id));
            stats.push(old.map_or_else(
                || SessionStats { id: s.id.clone(), ..SessionStats::default() },
                |i| previous.map(|p| p.stats[i].clone()).unwrap_or_default(),
            ));
            drops.push(old.and_then(|i| previous.map(|p| p.drops[i])).unwrap_or([0; DropReason::COUNT]));
            let encap = Encap {
                source_mac: source.mac,
                router_mac: model.vpcs[model.vpc_of(s.source).index()].router_mac,
                source_ip: source.private_ip,
                target_ip: model.enis[target.index()].private_ip,
                vni: s.virtual_network_id,
                packet_length: s.packet_length,
            };
            by_port[s.source.index()].push(Session {
                stat: stats.len() - 1,
                target,
                encap,
                filter: model.traffic_mirror_filters[s.filter.index()].clone(),
            });
        }
        let numbers: std::collections::HashMap<&str, u16> =
            model.traffic_mirror_sessions.iter().map(|s| (s.id.as_str(), s.session_number)).collect();
        for list in &mut by_port {
            list.sort_by_key(|s| numbers.get(stats[s.stat].id.as_str()).copied().unwrap_or(u16::MAX));
        }
        let active = !model.traffic_mirror_sessions.is_empty();
        Mirrors { by_port, active, stats, drops, ip_id: 0, buf: Vec::new() }
    }

    /// Whether the lab has any session: the data plane's one branch.
    #[inline]
    pub fn active(&self) -> bool {
        self.active
    }

    /// Whether port `port` is the source of a session.
    pub fn is_source(&self, port: usize) -> bool {
        self.by_port.get(port).is_some_and(|s| !s.is_empty())
    }

    /// The session that mirrors `frame` (sent by `port`'s instance, or delivered to it when
    /// `ingress`), if any: the first by session number whose filter accepts it.
    pub fn choose(&self, port: usize, ingress: bool, frame: &[u8]) -> Option<Chosen> {
        let sessions = self.by_port.get(port).filter(|s| !s.is_empty())?;
        let Ok(L3Meta::Ipv4(ip)) = packet::parse(frame).map(|m| m.l3) else { return None };
        let f = ip.flow;
        let (sport, dport) = (f.l4.src_port, f.l4.dst_port);
        if SERVICE_ADDRESSES.iter().any(|a| *a == f.src || *a == f.dst)
            || (f.proto == IpProto::UDP && [67, 68].iter().any(|p| *p == sport || *p == dport))
        {
            return None;
        }
        let at = sessions.iter().position(|s| s.filter.accepts(ingress, f.proto, f.src, f.dst, sport, dport))?;
        Some(Chosen { port, at })
    }

    /// Session `at` of source port `port` (as another worker chose it under the same
    /// configuration), if there is one.
    pub fn chosen(&self, port: usize, at: usize) -> Option<Chosen> {
        self.by_port.get(port).filter(|s| at < s.len()).map(|_| Chosen { port, at })
    }

    /// The target ENI of a chosen session.
    pub fn target(&self, c: Chosen) -> EniIdx {
        self.by_port[c.port][c.at].target
    }

    /// The source ENI of a chosen session.
    pub fn source(&self, c: Chosen) -> EniIdx {
        EniIdx(c.port as u32)
    }

    /// Builds the copy of `frame` in [`Mirrors::buf`] behind `vnet_hdr_len` zero bytes (no
    /// offload: the copy is complete); `csum_partial` says the frame's transport checksum is
    /// the kernel's partial one. Returns the length written.
    pub fn encapsulate(&mut self, c: Chosen, frame: &[u8], csum_partial: bool, vnet_hdr_len: usize) -> usize {
        let id = self.ip_id;
        self.ip_id = self.ip_id.wrapping_add(1);
        let encap = &self.by_port[c.port][c.at].encap;
        self.buf.clear();
        self.buf.resize(vnet_hdr_len, 0);
        encapsulate(&mut self.buf, encap, frame, csum_partial, id);
        self.buf.len()
    }

    /// Counts what became of a chosen session's copy.
    pub fn count(&mut self, c: Chosen, verdict: Verdict) {
        let stat = self.by_port[c.port][c.at].stat;
        match verdict.drop_reason() {
            None => self.stats[stat].mirrored += 1,
            Some(r) => self.drops[stat][r as usize] += 1,
        }
    }

    /// Every session's counts, in the model's order.
    pub fn stats(&self) -> Vec<SessionStats> {
        self.stats
            .iter()
            .zip(&self.drops)
            .map(|(s, d)| {
                let mut s = s.clone();
                s.dropped = DropReason::ALL
                    .iter()
                    .filter(|r| d[**r as usize] > 0)
                    .map(|r| (r.name().to_string(), d[*r as usize]))
                    .collect();
                s
            })
            .collect()
    }
}

/// The UDP source port of a copy: a hash of the inner frame's addresses and ports, in the
/// dynamic range (RFC 7348 §5), so one inner flow keeps one outer flow.
fn source_port(frame: &[u8]) -> u16 {
    let key = frame.get(ETH_HEADER_LEN + 12..ETH_HEADER_LEN + 24).unwrap_or(&[]);
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    49152 + (h % 16384) as u16
}

/// Appends to `out` the VXLAN copy of `frame` for `encap`, with IPv4 identification `id`. The
/// frame is cut to the session's packet length and to [`MAX_INNER`]; a complete TCP or UDP
/// packet whose checksum is the kernel's partial one gets its checksum completed.
pub fn encapsulate(out: &mut Vec<u8>, encap: &Encap, frame: &[u8], csum_partial: bool, id: u16) {
    let keep = frame.len().min(MAX_INNER).min(encap.packet_length.map_or(usize::MAX, usize::from));
    let inner = &frame[..keep];
    let ip_len = (ENCAP_IP_OVERHEAD + inner.len()) as u16;
    out.extend_from_slice(&encap.router_mac.0);
    out.extend_from_slice(&encap.source_mac.0);
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_at = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&ip_len.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0, 0, 64, IpProto::UDP.0, 0, 0]);
    out.extend_from_slice(&encap.source_ip.octets());
    out.extend_from_slice(&encap.target_ip.octets());
    let sum = rewrite::checksum(&out[ip_at..ip_at + 20]);
    out[ip_at + 10..ip_at + 12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&source_port(frame).to_be_bytes());
    out.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    out.extend_from_slice(&(ip_len - 20).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    // VXLAN (RFC 7348 §5): flags with I set, 24 reserved bits, the VNI, 8 reserved bits.
    out.extend_from_slice(&[0x08, 0, 0, 0]);
    out.extend_from_slice(&(encap.vni << 8).to_be_bytes());
    let inner_at = out.len();
    out.extend_from_slice(inner);
    if csum_partial && keep == frame.len() {
        complete_checksum(&mut out[inner_at..]);
    }
}

/// Completes the transport checksum of a whole TCP or UDP frame whose checksum field holds the
/// pseudo-header sum (virtio NEEDS_CSUM): the sum over the segment with that field as it is,
/// complemented. Leaves anything else alone.
fn complete_checksum(frame: &mut [u8]) {
    let Ok(L3Meta::Ipv4(ip)) = packet::parse(frame).map(|m| m.l3) else { return };
    if ip.fragment {
        return;
    }
    let l4 = ETH_HEADER_LEN + usize::from(ip.header_len);
    let end = ETH_HEADER_LEN + usize::from(ip.total_len);
    let field = match ip.flow.proto {
        IpProto::TCP => l4 + 16,
        IpProto::UDP => l4 + 6,
        _ => return,
    };
    if end > frame.len() || field + 2 > end {
        return;
    }
    let mut sum = rewrite::checksum(&frame[l4..end]);
    if sum == 0 && ip.flow.proto == IpProto::UDP {
        sum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests;
