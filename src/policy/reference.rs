//! The linear scans that security groups and network ACLs used before they were compiled into
//! classifiers, kept only as the reference the compiled lookups must equal, and the property
//! tests that compare them on random rule sets and flows.

use std::net::Ipv4Addr;

use hashbrown::HashSet;

use super::security_group::SgMatch;
use super::{network_acl::AclDecision, rule_matches, Direction};
use crate::model::{Cidr, EniIdx, Model, NetworkAcl, PortMatch, PortRange, Protocol, SgIdx, SgPeer};
use crate::packet::Flow;

/// One rule of an ENI's merged allow set, with where it came from.
#[derive(Clone, Copy, Debug)]
struct MergedRule {
    protocol: Protocol,
    ports: PortMatch,
    peer: SgPeer,
    origin: SgMatch,
}

/// Security groups as a scan of each ENI's merged rules (the implementation before issue 10).
pub struct LinearSecurityGroups {
    /// By [`SgIdx`]: every private IP (primary and secondary) of every member ENI.
    members: Vec<HashSet<Ipv4Addr>>,
    /// By [`EniIdx`]: merged ingress and egress rules.
    enis: Vec<[Vec<MergedRule>; 2]>,
}

/// 0.0.0.0/0, the only peer that can make a flow untracked.
const ANYWHERE: SgPeer = SgPeer::Cidr(Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 });

fn slot(dir: Direction) -> usize {
    match dir {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

fn peer_addr(dir: Direction, flow: &Flow) -> Ipv4Addr {
    match dir {
        Direction::Ingress => flow.src,
        Direction::Egress => flow.dst,
    }
}

impl LinearSecurityGroups {
    pub fn new(model: &Model) -> LinearSecurityGroups {
        let mut members = vec![HashSet::new(); model.security_groups.len()];
        let mut enis = Vec::with_capacity(model.enis.len());
        for eni in &model.enis {
            let mut rules: [Vec<MergedRule>; 2] = Default::default();
            let mut seen: Vec<SgIdx> = Vec::new();
            for &g in &eni.security_groups {
                if seen.contains(&g) {
                    continue;
                }
                seen.push(g);
                let Some(group) = model.security_groups.get(g.index()) else { continue };
                if let Some(set) = members.get_mut(g.index()) {
                    set.extend(eni.private_ips());
                }
                for (v, out) in [(&group.ingress, 0), (&group.egress, 1)] {
                    rules[out].extend(v.iter().enumerate().map(|(i, r)| MergedRule {
                        protocol: r.protocol,
                        ports: r.ports,
                        peer: r.peer,
                        origin: SgMatch { group: g, rule: i },
                    }));
                }
            }
            enis.push(rules);
        }
        LinearSecurityGroups { members, enis }
    }

    fn rules(&self, eni: EniIdx, dir: Direction) -> &[MergedRule] {
        self.enis.get(eni.index()).map_or(&[], |r| &r[slot(dir)])
    }

    fn peer_matches(&self, peer: SgPeer, addr: Ipv4Addr) -> bool {
        match peer {
            SgPeer::Cidr(c) => c.contains(addr),
            SgPeer::Group(g) => self.members.get(g.index()).is_some_and(|m| m.contains(&addr)),
        }
    }

    pub fn allows(&self, eni: EniIdx, dir: Direction, flow: &Flow) -> Option<SgMatch> {
        let peer = peer_addr(dir, flow);
        self.rules(eni, dir)
            .iter()
            .find(|r| self.peer_matches(r.peer, peer) && rule_matches(r.protocol, r.ports, flow))
            .map(|r| r.origin)
    }

    pub fn is_untracked(&self, eni: EniIdx, dir: Direction, flow: &Flow) -> bool {
        if !flow.proto.has_ports() {
            return false;
        }
        let proto = Protocol::Number(flow.proto);
        let peer = peer_addr(dir, flow);
        let allowed_from_anywhere = self
            .rules(eni, dir)
            .iter()
            .any(|r| r.peer == ANYWHERE && self.peer_matches(r.peer, peer) && rule_matches(r.protocol, r.ports, flow));
        if !allowed_from_anywhere {
            return false;
        }
        let opposite = match dir {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        };
        self.rules(eni, opposite).iter().any(|r| {
            r.peer == ANYWHERE
                && match r.protocol {
                    Protocol::All => true,
                    p => p == proto && matches!(r.ports, PortMatch::Any | PortMatch::Ports(PortRange::ALL)),
                }
        })
    }
}

/// A network ACL as a scan of its rules (the implementation before issue 10).
pub fn evaluate_acl(acl: &NetworkAcl, dir: Direction, flow: &Flow) -> AclDecision {
    let (rules, remote) = match dir {
        Direction::Ingress => (&acl.ingress, flow.src),
        Direction::Egress => (&acl.egress, flow.dst),
    };
    rules
        .iter()
        .find(|r| r.cidr.contains(remote) && rule_matches(r.protocol, r.ports, flow))
        .map_or(AclDecision::DEFAULT_DENY, |r| AclDecision { rule: Some(r.number), action: r.action })
}

#[cfg(test)]
mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::model::{AclAction, AclRule};
    use crate::packet::{IpProto, L4Meta};
    use crate::policy::classifier::{ClassRule, Classifier};
    use crate::policy::network_acl::CompiledAcl;
    use crate::policy::security_group::SecurityGroups;

    /// Addresses rules and flows draw from: few, so that prefixes and groups often match.
    const ADDRS: [[u8; 4]; 10] = [
        [10, 0, 1, 10],
        [10, 0, 1, 11],
        [10, 0, 1, 12],
        [10, 0, 1, 13],
        [10, 0, 1, 200],
        [10, 0, 2, 9],
        [10, 1, 0, 1],
        [198, 51, 100, 7],
        [0, 0, 0, 0],
        [255, 255, 255, 255],
    ];

    fn addr() -> impl Strategy<Value = Ipv4Addr> {
        (0..ADDRS.len()).prop_map(|i| Ipv4Addr::from(ADDRS[i]))
    }

    /// Ports near the ends of the space and a few in between, so ranges overlap and touch.
    fn port() -> impl Strategy<Value = u16> {
        prop_oneof![0u16..6, 65530u16..=65535, Just(1024), Just(443), any::<u16>()]
    }

    fn proto() -> impl Strategy<Value = IpProto> {
        prop_oneof![Just(IpProto::TCP), Just(IpProto::UDP), Just(IpProto::ICMP), Just(IpProto(47)), Just(IpProto(50))]
    }

    fn small_u8() -> impl Strategy<Value = u8> {
        prop_oneof![0u8..4, Just(255)]
    }

    fn protocol() -> impl Strategy<Value = Protocol> {
        prop_oneof![1 => Just(Protocol::All), 4 => proto().prop_map(Protocol::Number)]
    }

    /// Any port match, those validation refuses included (ICMP type/code on TCP, an empty range,
    /// a code without a type): the compiled lookup must agree with the scan on them too.
    fn ports() -> impl Strategy<Value = PortMatch> {
        prop_oneof![
            1 => Just(PortMatch::Any),
            1 => Just(PortMatch::Ports(PortRange::ALL)),
            4 => (port(), port()).prop_map(|(from, to)| PortMatch::Ports(PortRange { from, to })),
            3 => (proptest::option::of(small_u8()), proptest::option::of(small_u8()))
                .prop_map(|(icmp_type, icmp_code)| PortMatch::Icmp { icmp_type, icmp_code }),
        ]
    }

    fn cidr() -> impl Strategy<Value = Cidr> {
        prop_oneof![
            1 => Just(Cidr::new(Ipv4Addr::UNSPECIFIED, 0)),
            4 => (addr(), prop_oneof![0u8..=32, Just(8), Just(16), Just(24), Just(32)]).prop_map(|(a, p)| Cidr::new(a, p)),
        ]
    }

    /// Groups 0-3 of the test model, and 9, which it does not have.
    fn peer() -> impl Strategy<Value = SgPeer> {
        prop_oneof![
            3 => cidr().prop_map(SgPeer::Cidr),
            2 => prop_oneof![0u32..4, Just(9)].prop_map(|g| SgPeer::Group(SgIdx(g))),
        ]
    }

    fn class_rule() -> impl Strategy<Value = ClassRule> {
        (protocol(), ports(), peer()).prop_map(|(protocol, ports, peer)| ClassRule { protocol, ports, peer })
    }

    fn flow() -> impl Strategy<Value = Flow> {
        (addr(), addr(), proto(), port(), port(), small_u8(), small_u8()).prop_map(|(src, dst, proto, sp, dp, t, c)| {
            let l4 = if proto == IpProto::ICMP { L4Meta::icmp(t, c, 0) } else { L4Meta::ports(sp, dp) };
            Flow { src, dst, proto, l4 }
        })
    }

    /// Every group 0-3 of [`LAB`]'s model.
    const GROUPS: usize = 4;

    /// ENIs with one, two and three groups, a secondary IP, and one ENI in the VPC's default
    /// group; [`lab`] names one of eni-3's groups twice, which validation refuses.
    const LAB: &str = r#"name = "p"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
network_acl = "acl-a"

[[network_acl]]
id = "acl-a"
vpc = "vpc-a"

[[security_group]]
id = "sg-a"
vpc = "vpc-a"

[[security_group]]
id = "sg-b"
vpc = "vpc-a"

[[security_group]]
id = "sg-c"
vpc = "vpc-a"

[[network_interface]]
id = "eni-1"
subnet = "subnet-a"
private_ip = "10.0.1.10"
security_groups = ["sg-a"]

[[network_interface]]
id = "eni-2"
subnet = "subnet-a"
private_ip = "10.0.1.11"
secondary_private_ips = ["10.0.1.12"]
security_groups = ["sg-b", "sg-a"]

[[network_interface]]
id = "eni-3"
subnet = "subnet-a"
private_ip = "10.0.1.13"
security_groups = ["sg-c", "sg-a", "sg-b"]

[[network_interface]]
id = "eni-4"
subnet = "subnet-a"
private_ip = "10.0.1.200"
"#;

    fn lab() -> Model {
        let mut model = crate::topology::parse(LAB, "p.toml").expect("property lab is valid");
        let eni3 = model.eni_by_id("eni-3").expect("eni-3");
        let first = model.enis[eni3.index()].security_groups[0];
        model.enis[eni3.index()].security_groups.push(first);
        assert_eq!(model.security_groups.len(), GROUPS, "three groups and the VPC's default");
        model
    }

    fn acl_rule() -> impl Strategy<Value = AclRule> {
        (protocol(), ports(), cidr(), any::<bool>()).prop_map(|(protocol, ports, cidr, allow)| AclRule {
            number: 0,
            protocol,
            ports,
            cidr,
            action: if allow { AclAction::Allow } else { AclAction::Deny },
        })
    }

    fn sg_rule(r: ClassRule) -> crate::model::SgRule {
        crate::model::SgRule { protocol: r.protocol, ports: r.ports, peer: r.peer }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The classifier alone against a scan, group membership given as a fixed map.
        #[test]
        fn classifier_finds_the_first_match(rules in vec(class_rule(), 0..48), flows in vec((flow(), addr()), 1..32)) {
            let classifier = Classifier::new(&rules);
            // Group g has the addresses ADDRS[g], ADDRS[g + 1] (groups overlap); group 9 is empty.
            let groups_of = |a: Ipv4Addr| -> Vec<SgIdx> {
                (0..GROUPS as u32).filter(|&g| [g, g + 1].iter().any(|&i| Ipv4Addr::from(ADDRS[i as usize]) == a))
                    .map(SgIdx).collect()
            };
            for (f, peer) in flows {
                let groups = groups_of(peer);
                let scan = rules.iter().position(|r| {
                    let peer_ok = match r.peer {
                        SgPeer::Cidr(c) => c.contains(peer),
                        SgPeer::Group(g) => groups.contains(&g),
                    };
                    peer_ok && rule_matches(r.protocol, r.ports, &f)
                });
                prop_assert_eq!(classifier.first_match(&f, peer, &groups), scan, "{:?} from {}", f, peer);
            }
        }

        /// Whole security groups (merged rules, group peers, untracked flows) against the scan.
        #[test]
        fn security_groups_equal_the_scan(
            rules in vec((vec(class_rule(), 0..24), vec(class_rule(), 0..24)), GROUPS),
            flows in vec((flow(), 0u32..5), 1..48),
        ) {
            let mut model = lab();
            for (g, (ingress, egress)) in model.security_groups.iter_mut().zip(rules) {
                g.ingress = ingress.into_iter().map(sg_rule).collect();
                g.egress = egress.into_iter().map(sg_rule).collect();
            }
            let (compiled, scan) = (SecurityGroups::new(&model), LinearSecurityGroups::new(&model));
            // ENI 4 is not in the model: no rules.
            for (f, eni) in flows {
                for dir in [Direction::Ingress, Direction::Egress] {
                    let eni = EniIdx(eni);
                    prop_assert_eq!(compiled.allows(eni, dir, &f), scan.allows(eni, dir, &f), "{:?} {:?}", dir, f);
                    prop_assert_eq!(compiled.is_untracked(eni, dir, &f), scan.is_untracked(eni, dir, &f), "{:?} {:?}", dir, f);
                }
            }
        }

        /// Network ACLs against the scan.
        #[test]
        fn network_acls_equal_the_scan(
            ingress in vec(acl_rule(), 0..48),
            egress in vec(acl_rule(), 0..48),
            flows in vec(flow(), 1..48),
        ) {
            let mut acl = lab().network_acls.into_iter().find(|a| a.id == "acl-a").expect("acl-a");
            // Numbered in the vector's order, as the model keeps them.
            let number = |rules: Vec<AclRule>| -> Vec<AclRule> {
                rules.into_iter().enumerate().map(|(i, r)| AclRule { number: 100 + i as u16, ..r }).collect()
            };
            acl.ingress = number(ingress);
            acl.egress = number(egress);
            let compiled = CompiledAcl::new(&acl);
            for f in flows {
                for dir in [Direction::Ingress, Direction::Egress] {
                    prop_assert_eq!(compiled.evaluate(dir, &f), evaluate_acl(&acl, dir, &f), "{:?} {:?}", dir, f);
                }
            }
        }
    }
}
