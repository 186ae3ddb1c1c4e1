//! Security group evaluation: allow rules only, per ENI. [`SecurityGroups`] is compiled once from a
//! [`Model`] (as OVN's northd compiles configuration into tables): per ENI, the merged allow set of
//! all its groups in each direction; per group, the set of its members' private IPs, so that a rule
//! naming a group is one hash lookup. The compiled value is immutable; a changed topology builds a
//! new one.
//!
//! AWS semantics kept here: the rules of all of an ENI's groups merge (any rule allows); a rule
//! matches protocol, the **destination** port (never the source port) or ICMP type/code, and a peer
//! that is a CIDR or a group; a group peer matches the private IPs (primary and secondary) of its
//! members, never their public or Elastic IPs. Statefulness (letting responses back) is conntrack's
//! business, not this module's: it only answers which rule allows a packet, and whether AWS would
//! leave the flow untracked. Nothing here panics on any input, unknown indices included.

use std::net::Ipv4Addr;

use hashbrown::HashSet;

use super::{describe_match, rule_matches, Direction};
use crate::model::{Cidr, EniIdx, Model, PortMatch, PortRange, Protocol, SgIdx, SgPeer, SgRule};
use crate::packet::Flow;

/// Which rule allowed a flow: a group, and the position of the rule in that group's `ingress` or
/// `egress` vector (the direction is the caller's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgMatch {
    /// The group whose rule matched.
    pub group: SgIdx,
    /// Index into that group's ingress or egress rules.
    pub rule: usize,
}

/// One rule of an ENI's merged allow set, with where it came from.
#[derive(Clone, Copy, Debug)]
struct MergedRule {
    protocol: Protocol,
    ports: PortMatch,
    peer: SgPeer,
    origin: SgMatch,
}

/// The merged allow sets of one ENI.
#[derive(Clone, Debug, Default)]
struct EniRules {
    ingress: Vec<MergedRule>,
    egress: Vec<MergedRule>,
}

impl EniRules {
    fn get(&self, dir: Direction) -> &[MergedRule] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// What `describe` needs of a group.
#[derive(Clone, Debug)]
struct GroupInfo {
    id: String,
    ingress: Vec<SgRule>,
    egress: Vec<SgRule>,
}

/// The security groups of a model, compiled for lookups on the slow path of new flows.
#[derive(Clone, Debug)]
pub struct SecurityGroups {
    /// By [`SgIdx`].
    groups: Vec<GroupInfo>,
    /// By [`SgIdx`]: every private IP (primary and secondary) of every member ENI.
    members: Vec<HashSet<Ipv4Addr>>,
    /// By [`EniIdx`].
    enis: Vec<EniRules>,
}

/// 0.0.0.0/0, the only peer that can make a flow untracked.
const ANYWHERE: SgPeer = SgPeer::Cidr(Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 });

impl SecurityGroups {
    /// Compiles the model's groups: member sets per group, merged rules per ENI.
    pub fn new(model: &Model) -> SecurityGroups {
        let groups: Vec<GroupInfo> = model
            .security_groups
            .iter()
            .map(|g| GroupInfo { id: g.id.clone(), ingress: g.ingress.clone(), egress: g.egress.clone() })
            .collect();
        let mut members = vec![HashSet::new(); groups.len()];
        let mut enis = Vec::with_capacity(model.enis.len());
        for eni in &model.enis {
            let mut rules = EniRules::default();
            let mut seen: Vec<SgIdx> = Vec::with_capacity(eni.security_groups.len());
            for &g in &eni.security_groups {
                // A group named twice on one ENI adds nothing; skipping it keeps the scan short.
                if seen.contains(&g) {
                    continue;
                }
                seen.push(g);
                let Some(group) = model.security_groups.get(g.index()) else { continue };
                if let Some(set) = members.get_mut(g.index()) {
                    set.extend(eni.private_ips());
                }
                let merge = |v: &[SgRule], out: &mut Vec<MergedRule>| {
                    out.extend(v.iter().enumerate().map(|(i, r)| MergedRule {
                        protocol: r.protocol,
                        ports: r.ports,
                        peer: r.peer,
                        origin: SgMatch { group: g, rule: i },
                    }));
                };
                merge(&group.ingress, &mut rules.ingress);
                merge(&group.egress, &mut rules.egress);
            }
            enis.push(rules);
        }
        SecurityGroups { groups, members, enis }
    }

    fn rules(&self, eni: EniIdx, dir: Direction) -> &[MergedRule] {
        self.enis.get(eni.index()).map_or(&[], |r| r.get(dir))
    }

    fn peer_matches(&self, peer: SgPeer, addr: Ipv4Addr) -> bool {
        match peer {
            SgPeer::Cidr(c) => c.contains(addr),
            SgPeer::Group(g) => self.members.get(g.index()).is_some_and(|m| m.contains(&addr)),
        }
    }

    /// The first rule of the ENI's groups that allows `flow` in `dir`, or `None` (the packet is
    /// refused unless conntrack knows it as a response). Ingress rules look at the flow's source,
    /// egress rules at its destination. An unknown ENI has no rules.
    pub fn allows(&self, eni: EniIdx, dir: Direction, flow: &Flow) -> Option<SgMatch> {
        let peer = peer_addr(dir, flow);
        self.rules(eni, dir)
            .iter()
            .find(|r| self.peer_matches(r.peer, peer) && rule_matches(r.protocol, r.ports, flow))
            .map(|r| r.origin)
    }

    /// Whether AWS leaves this flow untracked: TCP or UDP only, allowed in `dir` by a rule whose
    /// peer is 0.0.0.0/0, with the opposite direction allowing that protocol on all ports to/from
    /// 0.0.0.0/0 (so that responses would pass on the rules alone). ICMP and every other protocol
    /// are always tracked.
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

    /// A match as `trace` prints it, e.g. `sg-web ingress rule 1: tcp 80 from 0.0.0.0/0`; rules are
    /// numbered from 1 in the order of the group's declaration.
    /// Written only when shown, like the other stages' words.
    pub fn describe(&self, m: SgMatch, dir: Direction) -> impl std::fmt::Display + '_ {
        std::fmt::from_fn(move |f| {
            let Some(group) = self.groups.get(m.group.index()) else {
                return write!(f, "unknown security group #{}", m.group.0);
            };
            let (name, rules, preposition) = match dir {
                Direction::Ingress => ("ingress", &group.ingress, "from"),
                Direction::Egress => ("egress", &group.egress, "to"),
            };
            let number = m.rule.saturating_add(1);
            let Some(rule) = rules.get(m.rule) else {
                return write!(f, "{} {name} rule {number}: (rule no longer present)", group.id);
            };
            let protocol = describe_match(rule.protocol, rule.ports);
            write!(f, "{} {name} rule {number}: {protocol} {preposition} ", group.id)?;
            match rule.peer {
                SgPeer::Cidr(c) => write!(f, "{c}"),
                SgPeer::Group(g) => match self.groups.get(g.index()) {
                    Some(p) => f.write_str(&p.id),
                    None => write!(f, "unknown security group #{}", g.0),
                },
            }
        })
    }
}

/// The address a rule's peer is compared with: the source of incoming, the destination of outgoing
/// traffic.
fn peer_addr(dir: Direction, flow: &Flow) -> Ipv4Addr {
    match dir {
        Direction::Ingress => flow.src,
        Direction::Egress => flow.dst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{IpProto, L4Meta};

    const LAB: &str = r#"name = "t"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-pub"
vpc = "vpc-a"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-priv"
vpc = "vpc-a"
cidr = "10.0.2.0/24"

[[security_group]]
id = "sg-web"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "80", source = "0.0.0.0/0" },
  { protocol = "icmp", icmp_type = 8, source = "10.0.0.0/16" },
  { protocol = "icmp", icmp_type = 3, icmp_code = 4, source = "0.0.0.0/0" },
]

[[security_group]]
id = "sg-ssh"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "22", source = "192.0.2.0/24" },
]

[[security_group]]
id = "sg-app"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "8080", source = "sg-web" },
  { protocol = "icmp", source = "10.0.0.0/16" },
  { protocol = 47, source = "0.0.0.0/0" },
]
egress = []

[[security_group]]
id = "sg-db"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "5432", source = "sg-app" },
]
egress = [
  { protocol = "tcp", ports = "443", destination = "0.0.0.0/0" },
  { protocol = "udp", ports = "53", destination = "sg-web" },
]

[[security_group]]
id = "sg-half"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "443", source = "0.0.0.0/0" },
  { protocol = "udp", ports = "53", source = "0.0.0.0/0" },
]
egress = [
  { protocol = "tcp", destination = "0.0.0.0/0" },
  { protocol = "udp", ports = "1024-65535", destination = "0.0.0.0/0" },
]

[[security_group]]
id = "sg-allin"
vpc = "vpc-a"
ingress = [
  { protocol = "all", source = "0.0.0.0/0" },
]

[[network_interface]]
id = "eni-web"
subnet = "subnet-pub"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.11"]
security_groups = ["sg-web"]

[[network_interface]]
id = "eni-web2"
subnet = "subnet-pub"
private_ip = "10.0.1.20"
security_groups = ["sg-web", "sg-ssh"]

[[network_interface]]
id = "eni-app"
subnet = "subnet-priv"
private_ip = "10.0.2.10"
secondary_private_ips = ["10.0.2.11"]
security_groups = ["sg-app"]

[[network_interface]]
id = "eni-db"
subnet = "subnet-priv"
private_ip = "10.0.2.30"
security_groups = ["sg-db"]

[[network_interface]]
id = "eni-def"
subnet = "subnet-pub"
private_ip = "10.0.1.40"

[[network_interface]]
id = "eni-def2"
subnet = "subnet-priv"
private_ip = "10.0.2.40"

[[network_interface]]
id = "eni-half"
subnet = "subnet-pub"
private_ip = "10.0.1.50"
security_groups = ["sg-half"]

[[network_interface]]
id = "eni-allin"
subnet = "subnet-pub"
private_ip = "10.0.1.60"
security_groups = ["sg-allin"]
"#;

    struct Lab {
        model: Model,
        sgs: SecurityGroups,
    }

    impl Lab {
        fn new() -> Lab {
            let model = crate::topology::parse(LAB, "t.toml").expect("test topology is valid");
            let sgs = SecurityGroups::new(&model);
            Lab { model, sgs }
        }

        fn eni(&self, id: &str) -> EniIdx {
            self.model.eni_by_id(id).expect("ENI exists")
        }

        fn sg(&self, id: &str) -> SgIdx {
            let i = self.model.security_groups.iter().position(|g| g.id == id).expect("group exists");
            SgIdx(u32::try_from(i).expect("few groups"))
        }

        fn hit(&self, id: &str, rule: usize) -> Option<SgMatch> {
            Some(SgMatch { group: self.sg(id), rule })
        }

        fn allows(&self, eni: &str, dir: Direction, flow: Flow) -> Option<SgMatch> {
            self.sgs.allows(self.eni(eni), dir, &flow)
        }

        fn untracked(&self, eni: &str, dir: Direction, flow: Flow) -> bool {
            self.sgs.is_untracked(self.eni(eni), dir, &flow)
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    fn tcp(src: &str, dst: &str, src_port: u16, dst_port: u16) -> Flow {
        Flow { src: ip(src), dst: ip(dst), proto: IpProto::TCP, l4: L4Meta::ports(src_port, dst_port) }
    }

    fn udp(src: &str, dst: &str, src_port: u16, dst_port: u16) -> Flow {
        Flow { proto: IpProto::UDP, ..tcp(src, dst, src_port, dst_port) }
    }

    fn icmp(src: &str, dst: &str, icmp_type: u8, icmp_code: u8) -> Flow {
        Flow { src: ip(src), dst: ip(dst), proto: IpProto::ICMP, l4: L4Meta::icmp(icmp_type, icmp_code, 0) }
    }

    use Direction::{Egress, Ingress};

    #[test]
    fn ports_match_the_destination_port_not_the_source_port() {
        let l = Lab::new();
        assert_eq!(l.allows("eni-web", Ingress, tcp("198.51.100.7", "10.0.1.10", 40000, 80)), l.hit("sg-web", 0));
        // Source port 80 to another destination port: not the port-80 rule.
        assert_eq!(l.allows("eni-web", Ingress, tcp("198.51.100.7", "10.0.1.10", 80, 8080)), None);
        // UDP to port 80 is not TCP.
        assert_eq!(l.allows("eni-web", Ingress, udp("198.51.100.7", "10.0.1.10", 40000, 80)), None);
        // Egress: the range applies to the destination port too.
        assert_eq!(l.allows("eni-db", Egress, tcp("10.0.2.30", "198.51.100.7", 40000, 443)), l.hit("sg-db", 0));
        assert_eq!(l.allows("eni-db", Egress, tcp("10.0.2.30", "198.51.100.7", 443, 40000)), None);
    }

    #[test]
    fn icmp_type_and_code_with_wildcards() {
        let l = Lab::new();
        // sg-web: echo request (type 8, any code) from the VPC only.
        assert_eq!(l.allows("eni-web", Ingress, icmp("10.0.2.10", "10.0.1.10", 8, 0)), l.hit("sg-web", 1));
        assert_eq!(l.allows("eni-web", Ingress, icmp("10.0.2.10", "10.0.1.10", 8, 9)), l.hit("sg-web", 1));
        assert_eq!(l.allows("eni-web", Ingress, icmp("198.51.100.7", "10.0.1.10", 8, 0)), None);
        assert_eq!(l.allows("eni-web", Ingress, icmp("10.0.2.10", "10.0.1.10", 0, 0)), None);
        // Type 3 code 4 only.
        assert_eq!(l.allows("eni-web", Ingress, icmp("198.51.100.7", "10.0.1.10", 3, 4)), l.hit("sg-web", 2));
        assert_eq!(l.allows("eni-web", Ingress, icmp("198.51.100.7", "10.0.1.10", 3, 3)), None);
        // sg-app: all ICMP from the VPC.
        for (t, c) in [(0, 0), (8, 0), (3, 4), (11, 1), (255, 255)] {
            assert_eq!(l.allows("eni-app", Ingress, icmp("10.0.1.40", "10.0.2.10", t, c)), l.hit("sg-app", 1));
        }
    }

    #[test]
    fn protocol_all_and_other_numbers() {
        let l = Lab::new();
        let gre = Flow { proto: IpProto(47), ..tcp("198.51.100.7", "10.0.2.10", 1234, 5678) };
        assert_eq!(l.allows("eni-app", Ingress, gre), l.hit("sg-app", 2));
        assert_eq!(l.allows("eni-app", Ingress, Flow { proto: IpProto(50), ..gre }), None);
        // Protocol all: any protocol, any port.
        for f in [
            tcp("198.51.100.7", "10.0.1.60", 1, 65535),
            udp("198.51.100.7", "10.0.1.60", 0, 0),
            icmp("198.51.100.7", "10.0.1.60", 3, 4),
            Flow { proto: IpProto(132), ..gre },
        ] {
            assert_eq!(l.allows("eni-allin", Ingress, f), l.hit("sg-allin", 0));
        }
    }

    #[test]
    fn group_reference_matches_primary_and_secondary_ips_of_members_only() {
        let l = Lab::new();
        let ok = l.hit("sg-app", 0);
        assert_eq!(l.allows("eni-app", Ingress, tcp("10.0.1.10", "10.0.2.10", 40000, 8080)), ok);
        assert_eq!(l.allows("eni-app", Ingress, tcp("10.0.1.11", "10.0.2.10", 40000, 8080)), ok);
        // eni-web2 is a member too: sg-web is one of its two groups.
        assert_eq!(l.allows("eni-app", Ingress, tcp("10.0.1.20", "10.0.2.10", 40000, 8080)), ok);
        // Not members of sg-web: eni-def, an unused address in the subnet, an outside address.
        for src in ["10.0.1.40", "10.0.1.12", "198.51.100.7"] {
            assert_eq!(l.allows("eni-app", Ingress, tcp(src, "10.0.2.10", 40000, 8080)), None, "{src}");
        }
        // eni-db: 5432 from sg-app's members, the secondary IP included.
        assert_eq!(l.allows("eni-db", Ingress, tcp("10.0.2.11", "10.0.2.30", 40000, 5432)), l.hit("sg-db", 0));
        assert_eq!(l.allows("eni-db", Ingress, tcp("10.0.1.10", "10.0.2.30", 40000, 5432)), None);
        // Egress to a group: the peer is the destination.
        assert_eq!(l.allows("eni-db", Egress, udp("10.0.2.30", "10.0.1.11", 40000, 53)), l.hit("sg-db", 1));
        assert_eq!(l.allows("eni-db", Egress, udp("10.0.2.30", "10.0.2.10", 40000, 53)), None);
    }

    #[test]
    fn groups_of_one_eni_merge() {
        let l = Lab::new();
        // eni-web2 has sg-web (80 from anywhere) and sg-ssh (22 from 192.0.2.0/24).
        assert_eq!(l.allows("eni-web2", Ingress, tcp("198.51.100.7", "10.0.1.20", 40000, 80)), l.hit("sg-web", 0));
        assert_eq!(l.allows("eni-web2", Ingress, tcp("192.0.2.9", "10.0.1.20", 40000, 22)), l.hit("sg-ssh", 0));
        assert_eq!(l.allows("eni-web2", Ingress, tcp("198.51.100.7", "10.0.1.20", 40000, 22)), None);
        // eni-web has only sg-web: no SSH.
        assert_eq!(l.allows("eni-web", Ingress, tcp("192.0.2.9", "10.0.1.10", 40000, 22)), None);
    }

    #[test]
    fn default_group_lets_members_in_and_everything_out() {
        let l = Lab::new();
        let default = l.model.vpcs[0].default_security_group;
        let hit = Some(SgMatch { group: default, rule: 0 });
        assert_eq!(l.allows("eni-def", Ingress, tcp("10.0.2.40", "10.0.1.40", 40000, 22)), hit);
        assert_eq!(l.allows("eni-def", Ingress, icmp("10.0.2.40", "10.0.1.40", 8, 0)), hit);
        assert_eq!(l.allows("eni-def", Ingress, tcp("10.0.1.10", "10.0.1.40", 40000, 22)), None);
        assert_eq!(l.allows("eni-def", Egress, udp("10.0.1.40", "198.51.100.7", 40000, 53)), hit);
        assert_eq!(
            l.sgs.describe(SgMatch { group: default, rule: 0 }, Ingress).to_string(),
            "vpc-a/default ingress rule 1: all from vpc-a/default"
        );
        assert_eq!(
            l.sgs.describe(SgMatch { group: default, rule: 0 }, Egress).to_string(),
            "vpc-a/default egress rule 1: all to 0.0.0.0/0"
        );
    }

    #[test]
    fn group_without_egress_allows_everything_out_empty_egress_nothing() {
        let l = Lab::new();
        assert_eq!(l.allows("eni-web", Egress, tcp("10.0.1.10", "198.51.100.7", 40000, 443)), l.hit("sg-web", 0));
        for f in [
            tcp("10.0.2.10", "198.51.100.7", 40000, 443),
            udp("10.0.2.10", "10.0.1.10", 40000, 53),
            icmp("10.0.2.10", "10.0.1.10", 8, 0),
        ] {
            assert_eq!(l.allows("eni-app", Egress, f), None);
        }
    }

    #[test]
    fn unknown_indices_do_not_panic() {
        let l = Lab::new();
        let f = tcp("198.51.100.7", "10.0.1.10", 40000, 80);
        assert_eq!(l.sgs.allows(EniIdx(999), Ingress, &f), None);
        assert!(!l.sgs.is_untracked(EniIdx(999), Ingress, &f));
        assert_eq!(
            l.sgs.describe(SgMatch { group: SgIdx(999), rule: 0 }, Ingress).to_string(),
            "unknown security group #999"
        );
        assert_eq!(
            l.sgs.describe(SgMatch { group: l.sg("sg-ssh"), rule: 5 }, Ingress).to_string(),
            "sg-ssh ingress rule 6: (rule no longer present)"
        );
    }

    #[test]
    fn untracked_flows() {
        let l = Lab::new();
        // sg-web: 80 from anywhere, egress all to anywhere -> untracked.
        assert!(l.untracked("eni-web", Ingress, tcp("198.51.100.7", "10.0.1.10", 40000, 80)));
        // ICMP is always tracked, even allowed from anywhere with egress all.
        assert!(!l.untracked("eni-web", Ingress, icmp("198.51.100.7", "10.0.1.10", 3, 4)));
        assert!(!l.untracked("eni-allin", Ingress, icmp("198.51.100.7", "10.0.1.60", 8, 0)));
        // So is any protocol other than TCP/UDP.
        assert!(!l.untracked(
            "eni-allin",
            Ingress,
            Flow { proto: IpProto(47), ..tcp("198.51.100.7", "10.0.1.60", 0, 0) }
        ));
        // Not allowed at all -> not untracked.
        assert!(!l.untracked("eni-web", Ingress, tcp("198.51.100.7", "10.0.1.10", 40000, 81)));
        // Allowed by a narrower CIDR (sg-ssh 192.0.2.0/24) -> tracked.
        assert!(!l.untracked("eni-web2", Ingress, tcp("192.0.2.9", "10.0.1.20", 40000, 22)));
        // sg-half: tcp 443 in from anywhere, tcp all ports out to anywhere -> untracked.
        assert!(l.untracked("eni-half", Ingress, tcp("198.51.100.7", "10.0.1.50", 40000, 443)));
        // udp 53 in from anywhere, but udp out only 1024-65535 -> tracked.
        assert!(!l.untracked("eni-half", Ingress, udp("198.51.100.7", "10.0.1.50", 40000, 53)));
        // Egress: sg-web allows all out, but ingress allows tcp 80 only -> tracked.
        assert!(!l.untracked("eni-web", Egress, tcp("10.0.1.10", "198.51.100.7", 40000, 443)));
        // sg-allin: all in from anywhere, default egress all -> untracked both ways.
        assert!(l.untracked("eni-allin", Egress, udp("10.0.1.60", "198.51.100.7", 40000, 53)));
        assert!(l.untracked("eni-allin", Ingress, tcp("198.51.100.7", "10.0.1.60", 40000, 22)));
        // Default group: ingress peer is a group, not 0.0.0.0/0 -> egress flows are tracked.
        assert!(!l.untracked("eni-def", Egress, tcp("10.0.1.40", "198.51.100.7", 40000, 443)));
        // sg-app: egress = [] -> nothing in is untracked.
        assert!(!l.untracked("eni-app", Ingress, tcp("10.0.1.10", "10.0.2.10", 40000, 8080)));
    }

    #[test]
    fn describe_texts() {
        let l = Lab::new();
        let d =
            |g: &str, rule: usize, dir: Direction| l.sgs.describe(SgMatch { group: l.sg(g), rule }, dir).to_string();
        assert_eq!(d("sg-web", 0, Ingress), "sg-web ingress rule 1: tcp 80 from 0.0.0.0/0");
        assert_eq!(d("sg-web", 1, Ingress), "sg-web ingress rule 2: icmp type 8 from 10.0.0.0/16");
        assert_eq!(d("sg-web", 2, Ingress), "sg-web ingress rule 3: icmp type 3 code 4 from 0.0.0.0/0");
        assert_eq!(d("sg-web", 0, Egress), "sg-web egress rule 1: all to 0.0.0.0/0");
        assert_eq!(d("sg-app", 0, Ingress), "sg-app ingress rule 1: tcp 8080 from sg-web");
        assert_eq!(d("sg-app", 1, Ingress), "sg-app ingress rule 2: icmp from 10.0.0.0/16");
        assert_eq!(d("sg-app", 2, Ingress), "sg-app ingress rule 3: proto 47 from 0.0.0.0/0");
        assert_eq!(d("sg-db", 1, Egress), "sg-db egress rule 2: udp 53 to sg-web");
        assert_eq!(d("sg-half", 0, Egress), "sg-half egress rule 1: tcp 0-65535 to 0.0.0.0/0");
        assert_eq!(d("sg-half", 1, Egress), "sg-half egress rule 2: udp 1024-65535 to 0.0.0.0/0");
    }
}
