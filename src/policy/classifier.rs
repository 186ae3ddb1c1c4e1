//! First-match classification, compiled: which is the first rule of an ordered list that matches
//! a flow, found without looking at the rules one by one. An ENI's merged security group rules and
//! a network ACL's rules (in number order) ask the same question under the same matching rules
//! ([`rule_matches`](super::rule_matches)), so both compile to a [`Classifier`].
//!
//! Shape. A rule matches a flow when its protocol, its peer and its range of the flow's 16-bit
//! *key* all do. The key is the destination port for TCP and UDP, `type << 8 | code` for ICMP,
//! and 0 for any other protocol (whose rules cover the whole key space). Per protocol some rule
//! names (and one more for the protocols none names), a [`PeerIndex`] maps each peer to the rules
//! that name it: per prefix length, network address -> [`KeyTree`], and per group -> [`KeyTree`].
//! A key tree cuts the key space into elementary intervals at its rules' range ends and keeps a
//! segment tree on them whose nodes hold the lowest index of a rule covering the node's range
//! exactly (a rule sits in at most two nodes per level). Protocol `all` rules are in every
//! protocol's index, covering every key.
//!
//! Cost of a lookup: one hash probe per prefix length the protocol's rules use (at most 33) and
//! one per group of the peer address, then, for each peer that matched, a binary search for the
//! key's interval and a leaf-to-root walk of array reads (`log2(2r + 1) + 1` nodes for `r` rules
//! of that peer: 12 for 1,000). The answer is the lowest index seen. Rules are never scanned:
//! the cost is bounded by the prefix lengths and groups in use, and grows with the logarithm of
//! the rule count at most.
//!
//! Size: a key tree of `r` rule ranges has at most `2r + 1` intervals and twice that many nodes,
//! so a classifier is linear in its rules (times the protocols an `all` rule is copied into):
//! nested wide port ranges cannot blow it up (a table of elementary intervals each holding its
//! rules would be quadratic). The one rule that is more than one range, ICMP code `c` of every
//! type (which validation refuses, but a hand-built model may hold), is 256 ranges. Compiling is
//! off the packet path (`Pipeline::new`): 1,000 group rules add about 0.2 ms to it
//! (`examples/pipeline_bench.rs --case sweep` prints the compile time of each lab).

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::model::{PortMatch, Protocol, SgIdx, SgPeer};
use crate::packet::{Flow, IpProto};

/// One rule as the classifier sees it; its index is its position in the list given to
/// [`Classifier::new`].
#[derive(Clone, Copy, Debug)]
pub struct ClassRule {
    /// The rule's protocol.
    pub protocol: Protocol,
    /// Its ports or ICMP type/code.
    pub ports: PortMatch,
    /// The address it looks at (source of ingress, destination of egress traffic): a prefix, or
    /// the members of a group.
    pub peer: SgPeer,
}

/// An inclusive range of keys.
type KeyRange = (u16, u16);

/// The key ranges of one peer's rules, each with its rule index, in index order.
type RuleRanges = Vec<(u32, KeyRange)>;

/// The rules of one list, compiled for first-match lookups. Immutable once built.
#[derive(Clone, Debug, Default)]
pub struct Classifier {
    /// One index per protocol some rule names, sorted by protocol.
    by_proto: Vec<(IpProto, PeerIndex)>,
    /// Flows of a protocol no rule names: only `all` rules can match them.
    others: PeerIndex,
    /// Whether any rule's peer is a group (so a lookup needs the peer's groups).
    has_groups: bool,
}

impl Classifier {
    /// Compiles `rules`; a rule that can match nothing (an ICMP rule with ports, an empty port
    /// range, a prefix longer than 32) is left out, as the linear scan would never pick it.
    pub fn new(rules: &[ClassRule]) -> Classifier {
        let mut protos: Vec<IpProto> = rules
            .iter()
            .filter_map(|r| match r.protocol {
                Protocol::Number(p) => Some(p),
                Protocol::All => None,
            })
            .collect();
        protos.sort_unstable();
        protos.dedup();
        let by_proto = protos.iter().map(|&p| (p, PeerIndex::new(rules, Protocol::Number(p)))).collect();
        Classifier {
            by_proto,
            others: PeerIndex::new(rules, Protocol::All),
            has_groups: rules.iter().any(|r| matches!(r.peer, SgPeer::Group(_))),
        }
    }

    /// Whether some rule's peer is a group: only then does [`Classifier::first_match`] need the
    /// peer address's groups.
    pub fn has_groups(&self) -> bool {
        self.has_groups
    }

    /// The index of the first rule that matches `flow` with `peer` as the address its rules look
    /// at, `peer_groups` being the groups that address is a member of.
    pub fn first_match(&self, flow: &Flow, peer: Ipv4Addr, peer_groups: &[SgIdx]) -> Option<usize> {
        let index = match self.by_proto.binary_search_by_key(&flow.proto, |(p, _)| *p) {
            Ok(i) => &self.by_proto[i].1,
            Err(_) => &self.others,
        };
        index.first_match(flow_key(flow), u32::from(peer), peer_groups).map(|i| i as usize)
    }

    /// Segment tree nodes held, all trees together: the compiled size, for bounds in tests.
    pub fn nodes(&self) -> usize {
        self.by_proto.iter().map(|(_, t)| t.nodes()).sum::<usize>() + self.others.nodes()
    }
}

/// The key rules look at: the destination port for TCP/UDP, type and code for ICMP, none else.
fn flow_key(flow: &Flow) -> u16 {
    match flow.proto {
        IpProto::TCP | IpProto::UDP => flow.l4.dst_port,
        IpProto::ICMP => u16::from(flow.l4.icmp_type) << 8 | u16::from(flow.l4.icmp_code),
        _ => 0,
    }
}

/// The key ranges a rule matches in the index of `proto` (`Protocol::All` for the index of the
/// protocols no rule names); empty if it matches nothing there. Mirrors `rule_matches`.
fn key_ranges(rule: &ClassRule, proto: Protocol) -> Vec<KeyRange> {
    const FULL: KeyRange = (0, u16::MAX);
    if matches!(rule.peer, SgPeer::Cidr(c) if c.prefix > 32) {
        return Vec::new();
    }
    let n = match (rule.protocol, proto) {
        (Protocol::All, _) => return vec![FULL],
        (Protocol::Number(n), Protocol::Number(p)) if n == p => n,
        _ => return Vec::new(),
    };
    match (n, rule.ports) {
        (_, PortMatch::Any) => vec![FULL],
        (IpProto::TCP | IpProto::UDP, PortMatch::Ports(r)) if r.from <= r.to => vec![(r.from, r.to)],
        (IpProto::ICMP, PortMatch::Icmp { icmp_type, icmp_code }) => {
            let at = |t: u8, c: u8| u16::from(t) << 8 | u16::from(c);
            match (icmp_type, icmp_code) {
                (None, None) => vec![FULL],
                (Some(t), None) => vec![(at(t, 0), at(t, u8::MAX))],
                (Some(t), Some(c)) => vec![(at(t, c), at(t, c))],
                (None, Some(c)) => (0..=u8::MAX).map(|t| (at(t, c), at(t, c))).collect(),
            }
        }
        (IpProto::TCP | IpProto::UDP | IpProto::ICMP, _) => Vec::new(),
        _ => vec![FULL],
    }
}

/// The rules that can match one protocol, by peer.
#[derive(Clone, Debug, Default)]
struct PeerIndex {
    /// Per prefix length in use: (netmask, network address -> that peer's rules).
    prefixes: Vec<(u32, HashMap<u32, KeyTree>)>,
    /// The rules whose peer is 0.0.0.0/0, the commonest: every address is in it, so no probe.
    anywhere: Option<KeyTree>,
    /// Group -> the rules whose peer is that group.
    groups: HashMap<SgIdx, KeyTree>,
}

impl PeerIndex {
    fn new(rules: &[ClassRule], proto: Protocol) -> PeerIndex {
        let mut by_prefix: Vec<(u32, HashMap<u32, RuleRanges>)> = Vec::new();
        let mut by_group: HashMap<SgIdx, RuleRanges> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let ranges = key_ranges(rule, proto);
            if ranges.is_empty() {
                continue;
            }
            let list = match rule.peer {
                SgPeer::Cidr(c) => {
                    let mask = c.mask();
                    let at = match by_prefix.iter().position(|(m, _)| *m == mask) {
                        Some(at) => at,
                        None => {
                            by_prefix.push((mask, HashMap::new()));
                            by_prefix.len() - 1
                        }
                    };
                    // The address as given: one with host bits set never equals a masked address,
                    // so it matches nothing, as `Cidr::contains` says.
                    by_prefix[at].1.entry(u32::from(c.addr)).or_default()
                }
                SgPeer::Group(g) => by_group.entry(g).or_default(),
            };
            list.extend(ranges.into_iter().map(|r| (i as u32, r)));
        }
        let anywhere = by_prefix.iter_mut().find(|(mask, _)| *mask == 0).and_then(|(_, m)| m.remove(&0));
        by_prefix.retain(|(_, m)| !m.is_empty());
        PeerIndex {
            prefixes: by_prefix
                .into_iter()
                .map(|(mask, m)| (mask, m.into_iter().map(|(a, l)| (a, KeyTree::new(&l))).collect()))
                .collect(),
            anywhere: anywhere.map(|l| KeyTree::new(&l)),
            groups: by_group.into_iter().map(|(g, l)| (g, KeyTree::new(&l))).collect(),
        }
    }

    fn first_match(&self, key: u16, peer: u32, peer_groups: &[SgIdx]) -> Option<u32> {
        // Plain loops, not a chain of three iterators: some builds left the chain's `try_fold`
        // out of line (+300 instructions per new flow) when unrelated code of the crate moved.
        let mut best = u32::MAX;
        let mut consider = |t: &KeyTree| best = best.min(t.first_match(key).unwrap_or(u32::MAX));
        if let Some(t) = &self.anywhere {
            consider(t);
        }
        for (mask, m) in &self.prefixes {
            if let Some(t) = m.get(&(peer & mask)) {
                consider(t);
            }
        }
        for g in peer_groups {
            if let Some(t) = self.groups.get(g) {
                consider(t);
            }
        }
        (best != u32::MAX).then_some(best)
    }

    fn nodes(&self) -> usize {
        let trees =
            self.prefixes.iter().flat_map(|(_, m)| m.values()).chain(&self.anywhere).chain(self.groups.values());
        trees.map(|t| t.first.len()).sum()
    }
}

/// The rules of one peer over the key space: elementary intervals and a segment tree on them.
#[derive(Clone, Debug, Default)]
struct KeyTree {
    /// First key of each elementary interval, ascending; the first is 0.
    starts: Vec<u16>,
    /// Bottom-up segment tree: node 1 is the root, node `i` has children `2i` and `2i + 1`, the
    /// leaf of interval `j` is node `starts.len() + j`; node 0 is unused. Each node holds the
    /// lowest index of a rule stored there, `u32::MAX` for none.
    first: Vec<u32>,
}

impl KeyTree {
    /// The tree of `(rule index, key range)` pairs.
    fn new(ranges: &[(u32, KeyRange)]) -> KeyTree {
        let mut starts = vec![0u16];
        for &(_, (from, to)) in ranges {
            starts.push(from);
            starts.extend(to.checked_add(1));
        }
        starts.sort_unstable();
        starts.dedup();
        let leaves = starts.len();
        let mut tree = KeyTree { starts, first: vec![u32::MAX; 2 * leaves] };
        for &(index, (from, to)) in ranges {
            let (mut l, mut r) = (tree.leaf(from) + leaves, tree.leaf(to) + 1 + leaves);
            while l < r {
                if l % 2 == 1 {
                    tree.first[l] = tree.first[l].min(index);
                    l += 1;
                }
                if r % 2 == 1 {
                    r -= 1;
                    tree.first[r] = tree.first[r].min(index);
                }
                l /= 2;
                r /= 2;
            }
        }
        tree
    }

    /// The elementary interval holding `key`.
    fn leaf(&self, key: u16) -> usize {
        self.starts.partition_point(|&s| s <= key).saturating_sub(1)
    }

    /// The lowest index of a rule whose range holds `key`.
    fn first_match(&self, key: u16) -> Option<u32> {
        let mut node = self.leaf(key) + self.starts.len();
        let mut best = u32::MAX;
        while node > 0 {
            best = best.min(self.first.get(node).copied().unwrap_or(u32::MAX));
            node /= 2;
        }
        (best != u32::MAX).then_some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cidr, PortRange};
    use crate::packet::L4Meta;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    fn cidr(s: &str) -> SgPeer {
        let (a, p) = s.split_once('/').expect("a/p");
        SgPeer::Cidr(Cidr::new(ip(a), p.parse().expect("prefix")))
    }

    fn rule(protocol: Protocol, ports: PortMatch, peer: SgPeer) -> ClassRule {
        ClassRule { protocol, ports, peer }
    }

    fn tcp(from: u16, to: u16, peer: SgPeer) -> ClassRule {
        rule(Protocol::TCP, PortMatch::Ports(PortRange { from, to }), peer)
    }

    fn icmp(icmp_type: Option<u8>, icmp_code: Option<u8>, peer: SgPeer) -> ClassRule {
        rule(Protocol::ICMP, PortMatch::Icmp { icmp_type, icmp_code }, peer)
    }

    fn flow(proto: IpProto, dst_port: u16) -> Flow {
        Flow { src: ip("10.0.0.1"), dst: ip("10.0.0.2"), proto, l4: L4Meta::ports(40000, dst_port) }
    }

    fn icmp_flow(t: u8, c: u8) -> Flow {
        Flow { proto: IpProto::ICMP, l4: L4Meta::icmp(t, c, 0), ..flow(IpProto::ICMP, 0) }
    }

    #[test]
    fn the_first_rule_wins_over_a_more_specific_later_one() {
        let c = Classifier::new(&[
            tcp(1000, 2000, cidr("10.0.0.0/8")),
            tcp(1500, 1500, cidr("10.1.2.3/32")),
            tcp(0, 65535, cidr("0.0.0.0/0")),
        ]);
        let first = |port, peer| c.first_match(&flow(IpProto::TCP, port), ip(peer), &[]);
        assert_eq!(first(1500, "10.1.2.3"), Some(0));
        assert_eq!(first(1500, "192.0.2.1"), Some(2));
        assert_eq!(first(999, "10.1.2.3"), Some(2));
        assert_eq!(first(2000, "10.9.9.9"), Some(0));
        assert_eq!(first(2001, "10.9.9.9"), Some(2));
        assert_eq!(first(65535, "10.9.9.9"), Some(2));
        assert_eq!(c.first_match(&flow(IpProto::UDP, 1500), ip("10.1.2.3"), &[]), None);
    }

    #[test]
    fn group_peers_match_the_address_groups() {
        let (a, b) = (SgIdx(0), SgIdx(1));
        let c = Classifier::new(&[
            tcp(80, 80, SgPeer::Group(b)),
            tcp(0, 65535, SgPeer::Group(a)),
            tcp(80, 80, cidr("10.0.0.0/16")),
        ]);
        assert!(c.has_groups());
        let f = flow(IpProto::TCP, 80);
        assert_eq!(c.first_match(&f, ip("10.0.0.1"), &[a, b]), Some(0));
        assert_eq!(c.first_match(&f, ip("10.0.0.1"), &[a]), Some(1));
        assert_eq!(c.first_match(&f, ip("10.0.0.1"), &[]), Some(2));
        assert_eq!(c.first_match(&f, ip("10.9.0.1"), &[SgIdx(7)]), None);
        assert!(!Classifier::new(&[tcp(80, 80, cidr("10.0.0.0/16"))]).has_groups());
    }

    #[test]
    fn icmp_type_and_code() {
        let any = cidr("0.0.0.0/0");
        let c = Classifier::new(&[
            icmp(Some(3), Some(4), any),
            icmp(Some(3), None, any),
            // Refused by validation, built by hand: code 0 of every type.
            icmp(None, Some(0), any),
            icmp(None, None, any),
        ]);
        let first = |t, code| c.first_match(&icmp_flow(t, code), ip("192.0.2.1"), &[]);
        assert_eq!(first(3, 4), Some(0));
        assert_eq!(first(3, 0), Some(1));
        assert_eq!(first(3, 255), Some(1));
        assert_eq!(first(8, 0), Some(2));
        assert_eq!(first(255, 0), Some(2));
        assert_eq!(first(8, 1), Some(3));
    }

    #[test]
    fn protocol_all_and_other_numbers() {
        let any = cidr("0.0.0.0/0");
        let c = Classifier::new(&[
            rule(Protocol::Number(IpProto(47)), PortMatch::Any, any),
            tcp(22, 22, any),
            rule(Protocol::All, PortMatch::Ports(PortRange { from: 1, to: 1 }), cidr("10.0.0.0/8")),
        ]);
        let first = |proto, port, peer| c.first_match(&flow(proto, port), ip(peer), &[]);
        assert_eq!(first(IpProto(47), 0, "192.0.2.1"), Some(0));
        assert_eq!(first(IpProto::TCP, 22, "10.0.0.1"), Some(1));
        // `all` matches every port whatever its ports say, and protocols no rule names.
        assert_eq!(first(IpProto::TCP, 23, "10.0.0.1"), Some(2));
        assert_eq!(first(IpProto(50), 0, "10.0.0.1"), Some(2));
        assert_eq!(c.first_match(&icmp_flow(8, 0), ip("10.0.0.1"), &[]), Some(2));
        assert_eq!(first(IpProto(50), 0, "192.0.2.1"), None);
    }

    #[test]
    fn rules_that_match_nothing_are_left_out() {
        let any = cidr("0.0.0.0/0");
        let c = Classifier::new(&[
            tcp(90, 80, any),
            rule(Protocol::TCP, PortMatch::Icmp { icmp_type: Some(8), icmp_code: None }, any),
            rule(Protocol::ICMP, PortMatch::Ports(PortRange::ALL), any),
            tcp(0, 65535, SgPeer::Cidr(Cidr { addr: ip("10.0.0.0"), prefix: 40 })),
            tcp(0, 65535, SgPeer::Cidr(Cidr { addr: ip("10.0.0.1"), prefix: 24 })),
        ]);
        // Only the prefix with host bits set is stored (one interval: two nodes); it matches nothing.
        assert_eq!(c.nodes(), 2);
        assert_eq!(c.first_match(&flow(IpProto::TCP, 85), ip("10.0.0.1"), &[]), None);
        assert_eq!(c.first_match(&icmp_flow(8, 0), ip("10.0.0.1"), &[]), None);
    }

    /// Nested wide ranges, the shape that makes a table of elementary intervals quadratic, innermost
    /// first so that each key's first match is a different rule: the tree stays linear.
    #[test]
    fn nested_ranges_stay_linear() {
        let n: u16 = 1000;
        let depth = |i: u16| 30 * (n - 1 - i);
        let rules: Vec<ClassRule> = (0..n).map(|i| tcp(depth(i), 65535 - depth(i), cidr("10.0.0.0/8"))).collect();
        let c = Classifier::new(&rules);
        assert!(c.nodes() <= 2 * (2 * usize::from(n) + 1), "{} nodes", c.nodes());
        let first = |port| c.first_match(&flow(IpProto::TCP, port), ip("10.1.2.3"), &[]);
        for i in [0u16, 1, 500, 998, 999] {
            assert_eq!(first(depth(i)), Some(usize::from(i)));
            assert_eq!(first(65535 - depth(i)), Some(usize::from(i)));
        }
        assert_eq!(first(depth(0) + 1), Some(0));
        assert_eq!(c.first_match(&flow(IpProto::TCP, 0), ip("11.0.0.1"), &[]), None);
    }
}
