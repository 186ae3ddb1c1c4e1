//! Which worker owns a frame, when several forward (`up --workers N`).
//!
//! Each worker holds a shard of the connection and NAT tables, so a frame must be judged by the
//! worker whose shard holds its connection, whichever queue of a multiqueue TAP it was read
//! from. The owner is computed from the frame alone (no table is read), the same way for both
//! directions of a connection:
//!
//! - the connection's endpoints, normalised as conntrack's `ConnKey` does (lower end first, TCP
//!   and UDP ports, ICMP echo id); for an ICMP error, those of the packet it quotes;
//! - an Elastic IP at either end stands for the private address it is associated with, so a
//!   frame from the internet to an instance's Elastic IP hashes like the instance's own frames
//!   of that connection;
//! - an end at a NAT gateway's address (Elastic IP or private IP) decides by its port (or echo
//!   id) modulo N: each worker's NAT tables allocate only ports of its own residue class (see
//!   `NatTable::set_share`), so the replies to a translated flow come back to the worker that
//!   translated it, which also owns the flow's inside half;
//! - anything else: a hash of the normalised endpoints, modulo N.
//!
//! Frames without a flow (ARP, anything not IPv4, malformed) have no owner: the worker that read
//! them handles them (their answers and drops need no shared state).

use std::net::Ipv4Addr;

use hashbrown::{HashMap, HashSet};

use crate::conntrack::ConnKey;
use crate::model::Model;
use crate::packet::{self, Flow, L3Meta};

/// The owner function of one lab for `workers` workers.
#[derive(Clone, Debug)]
pub struct Owners {
    workers: usize,
    /// Elastic IP to the private address it stands for.
    eips: HashMap<Ipv4Addr, Ipv4Addr>,
    /// Every NAT gateway's addresses, public and private.
    nats: HashSet<Ipv4Addr>,
}

impl Owners {
    /// The owners of `model`'s frames among `workers` workers (at least one).
    pub fn new(model: &Model, workers: usize) -> Owners {
        let eips =
            model.elastic_ips.iter().filter_map(|e| e.association.map(|(_, private)| (e.public_ip, private))).collect();
        let mut nats = HashSet::new();
        for nat in &model.nat_gateways {
            nats.insert(nat.private_ip);
            if let Some(eip) = nat.elastic_ip.and_then(|e| model.elastic_ips.get(e.index())) {
                nats.insert(eip.public_ip);
            }
        }
        Owners { workers: workers.max(1), eips, nats }
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The worker that owns `frame` (an Ethernet frame), `None` when it has no flow.
    pub fn of(&self, frame: &[u8]) -> Option<usize> {
        let meta = packet::parse(frame).ok()?;
        let L3Meta::Ipv4(ip) = meta.l3 else { return None };
        let flow = packet::icmp_quoted(frame, &ip).unwrap_or(ip.flow);
        Some(self.of_flow(&flow))
    }

    /// The worker that owns `flow`'s connection (either direction gives the same).
    pub fn of_flow(&self, flow: &Flow) -> usize {
        let key = ConnKey::of(flow);
        let (lo, hi) = key.endpoints();
        for (addr, port) in [lo, hi] {
            if self.nats.contains(&addr) {
                return usize::from(port) % self.workers;
            }
        }
        let private = |(addr, port): (Ipv4Addr, u16)| (self.eips.get(&addr).copied().unwrap_or(addr), port);
        let (a, b) = (private(lo), private(hi));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let word = |(addr, port): (Ipv4Addr, u16)| (u64::from(u32::from(addr)) << 16) | u64::from(port);
        let h = mix(mix(u64::from(key.protocol().0)) ^ word(lo)) ^ word(hi);
        (mix(h) % self.workers as u64) as usize
    }
}

/// A 64-bit finaliser (splitmix64's): every input bit moves every output bit, so consecutive
/// ports and addresses spread evenly over the workers.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{IpProto, L4Meta};

    fn flow(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Flow {
        Flow { src: src.into(), dst: dst.into(), proto: IpProto::UDP, l4: L4Meta::ports(sp, dp) }
    }

    fn owners(workers: usize) -> Owners {
        let mut o = Owners::new(&Model::default(), workers);
        o.eips.insert([203, 0, 113, 10].into(), [10, 0, 1, 10].into());
        o.nats.insert([203, 0, 113, 20].into());
        o.nats.insert([10, 0, 1, 20].into());
        o
    }

    #[test]
    fn both_directions_have_one_owner_and_flows_spread() {
        let o = owners(4);
        let mut seen = [0usize; 4];
        for port in 1000..1400 {
            let out = flow([10, 0, 1, 10], port, [10, 0, 2, 10], 80);
            let back = flow([10, 0, 2, 10], 80, [10, 0, 1, 10], port);
            assert_eq!(o.of_flow(&out), o.of_flow(&back));
            seen[o.of_flow(&out)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "400 flows over 4 workers: {seen:?}");
    }

    #[test]
    fn an_elastic_ip_hashes_as_its_private_address() {
        let o = owners(8);
        for port in 1000..1100 {
            let out = flow([10, 0, 1, 10], port, [198, 51, 100, 7], 443);
            let inbound = flow([198, 51, 100, 7], 443, [203, 0, 113, 10], port);
            assert_eq!(o.of_flow(&out), o.of_flow(&inbound));
        }
    }

    #[test]
    fn a_nat_gateway_end_decides_by_its_port() {
        let o = owners(3);
        for port in 1024..1100 {
            let reply = flow([198, 51, 100, 7], 443, [203, 0, 113, 20], port);
            assert_eq!(o.of_flow(&reply), usize::from(port) % 3);
            let private = flow([10, 0, 2, 5], 53, [10, 0, 1, 20], port);
            assert_eq!(o.of_flow(&private), usize::from(port) % 3);
        }
    }

    #[test]
    fn an_icmp_error_belongs_to_the_flow_it_quotes_and_arp_to_nobody() {
        let o = owners(4);
        let (a, b) = ([10, 0, 1, 10].into(), [10, 0, 2, 10].into());
        let mac = crate::model::Mac([2, 0, 0, 0, 0, 1]);
        for port in 2000..2050 {
            let udp = packet::build::udp(mac, mac, a, b, port, 53, b"q");
            let error = packet::build::icmp_error(mac, mac, b, a, 3, 3, &udp);
            assert_eq!(o.of(&error), o.of(&udp));
            assert_eq!(o.of(&udp), Some(o.of_flow(&flow([10, 0, 1, 10], port, [10, 0, 2, 10], 53))));
        }
        assert_eq!(o.of(&packet::build::arp_request(mac, a, b)), None);
        assert_eq!(o.of(&[0u8; 10]), None);
    }
}
