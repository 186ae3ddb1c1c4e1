//! Security group evaluation: allow rules only, per ENI. [`SecurityGroups`] is compiled once from a
//! [`Model`] (as OVN's northd compiles configuration into tables): per ENI, the merged allow set of
//! all its groups in each direction, compiled into a [`Classifier`] so that finding the first rule
//! that allows a flow does not scan the rules (1,000 rules cost a new flow what 10 do); per
//! address, the groups it is a member of, so that a rule naming a group is one hash lookup. ENIs
//! with the same groups share one compiled set. The compiled value is immutable; a changed
//! topology builds a new one.
//!
//! AWS semantics kept here: the rules of all of an ENI's groups merge (any rule allows); a rule
//! matches protocol, the **destination** port (never the source port) or ICMP type/code, and a peer
//! that is a CIDR or a group; a group peer matches the private IPs (primary and secondary) of its
//! members, never their public or Elastic IPs. Statefulness (letting responses back) is conntrack's
//! business, not this module's: it only answers which rule allows a packet, and whether AWS would
//! leave the flow untracked. Nothing here panics on any input, unknown indices included.

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use super::classifier::{ClassRule, Classifier};
use super::{describe_match, Direction};
use crate::model::{Cidr, EniIdx, Model, PortMatch, PortRange, Protocol, SgIdx, SgPeer, SgRule};
use crate::packet::{Flow, IpProto};

/// Which rule allowed a flow: a group, and the position of the rule in that group's `ingress` or
/// `egress` vector (the direction is the caller's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgMatch {
    /// The group whose rule matched.
    pub group: SgIdx,
    /// Index into that group's ingress or egress rules.
    pub rule: usize,
}

/// One direction of an ENI's merged allow set, compiled.
#[derive(Clone, Debug, Default)]
struct DirRules {
    /// The merged rules, in the order the linear scan took them (groups as the ENI names them,
    /// each group's rules in order): the classifier's first match is the scan's.
    classifier: Classifier,
    /// By merged rule index: where the rule came from.
    origins: Vec<SgMatch>,
    /// The destination ports of TCP, then UDP flows that AWS leaves untracked in this direction.
    untracked: [PortSet; 2],
}

/// The merged allow sets of the ENIs that have one list of groups.
#[derive(Clone, Debug, Default)]
struct EniRules {
    ingress: DirRules,
    egress: DirRules,
}

impl EniRules {
    fn get(&self, dir: Direction) -> &DirRules {
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
    /// Every private IP (primary and secondary) of every ENI -> the groups of the ENIs that have it.
    groups_of: HashMap<Ipv4Addr, Vec<SgIdx>>,
    /// By [`EniIdx`]: index into `compiled`.
    enis: Vec<usize>,
    /// One per distinct list of groups.
    compiled: Vec<EniRules>,
}

/// 0.0.0.0/0, the only peer that can make a flow untracked.
const ANYWHERE: SgPeer = SgPeer::Cidr(Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 });

impl SecurityGroups {
    /// Compiles the model's groups: the groups of each address, merged rules per list of groups.
    pub fn new(model: &Model) -> SecurityGroups {
        let groups: Vec<GroupInfo> = model
            .security_groups
            .iter()
            .map(|g| GroupInfo { id: g.id.clone(), ingress: g.ingress.clone(), egress: g.egress.clone() })
            .collect();
        let mut groups_of: HashMap<Ipv4Addr, Vec<SgIdx>> = HashMap::new();
        let mut by_list: HashMap<Vec<SgIdx>, usize> = HashMap::new();
        let mut compiled = Vec::new();
        let mut enis = Vec::with_capacity(model.enis.len());
        for eni in &model.enis {
            // A group named twice on one ENI adds nothing; one unknown to the model has no rules.
            let mut list: Vec<SgIdx> = Vec::with_capacity(eni.security_groups.len());
            for &g in &eni.security_groups {
                if !list.contains(&g) && model.security_groups.get(g.index()).is_some() {
                    list.push(g);
                }
            }
            for ip in eni.private_ips() {
                let of = groups_of.entry(ip).or_default();
                of.extend(list.iter().filter(|g| !of.contains(g)).copied().collect::<Vec<_>>());
            }
            let at = *by_list.entry(list).or_insert_with_key(|list| {
                compiled.push(EniRules::new(model, list));
                compiled.len() - 1
            });
            enis.push(at);
        }
        // Then one slot per VPC endpoint ([`endpoint_slot`]): an interface endpoint's
        // interfaces are judged by its groups as an ENI is; a gateway endpoint has none.
        for e in &model.vpc_endpoints {
            let list = match &e.kind {
                crate::model::EndpointKind::Interface { security_groups, .. } => security_groups.clone(),
                crate::model::EndpointKind::Gateway { .. } => Vec::new(),
            };
            compiled.push(EniRules::new(model, &list));
            enis.push(compiled.len() - 1);
        }
        SecurityGroups { groups, groups_of, enis, compiled }
    }

    /// Where [`allows`](Self::allows) finds the groups of VPC endpoint `e`: past every ENI.
    pub fn endpoint_slot(model: &Model, e: crate::model::VpceIdx) -> EniIdx {
        EniIdx((model.enis.len() + e.index()) as u32)
    }

    fn rules(&self, eni: EniIdx, dir: Direction) -> Option<&DirRules> {
        let at = *self.enis.get(eni.index())?;
        self.compiled.get(at).map(|r| r.get(dir))
    }

    /// The first rule of the ENI's groups that allows `flow` in `dir`, or `None` (the packet is
    /// refused unless conntrack knows it as a response). Ingress rules look at the flow's source,
    /// egress rules at its destination. An unknown ENI has no rules. "First" is in the order of
    /// the ENI's groups, then of each group's rules, as a scan would find it.
    pub fn allows(&self, eni: EniIdx, dir: Direction, flow: &Flow) -> Option<SgMatch> {
        let rules = self.rules(eni, dir)?;
        let peer = peer_addr(dir, flow);
        let peer_groups = match rules.classifier.has_groups() {
            true => self.groups_of.get(&peer).map_or(&[][..], Vec::as_slice),
            false => &[],
        };
        let index = rules.classifier.first_match(flow, peer, peer_groups)?;
        rules.origins.get(index).copied()
    }

    /// Whether AWS leaves this flow untracked: TCP or UDP only, allowed in `dir` by a rule whose
    /// peer is 0.0.0.0/0, with the opposite direction allowing that protocol on all ports to/from
    /// 0.0.0.0/0 (so that responses would pass on the rules alone). ICMP and every other protocol
    /// are always tracked. Precomputed per ENI, direction and protocol: a binary search.
    pub fn is_untracked(&self, eni: EniIdx, dir: Direction, flow: &Flow) -> bool {
        let Some(rules) = self.rules(eni, dir) else { return false };
        match flow.proto {
            IpProto::TCP => rules.untracked[0].contains(flow.l4.dst_port),
            IpProto::UDP => rules.untracked[1].contains(flow.l4.dst_port),
            _ => false,
        }
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

/// One merged rule: what the classifier matches, and where it came from.
type Merged = (ClassRule, SgMatch);

impl EniRules {
    /// Merges the rules of `list` (groups in the ENI's order, each group's rules in order) and
    /// compiles each direction.
    fn new(model: &Model, list: &[SgIdx]) -> EniRules {
        let merged = |dir: Direction| -> Vec<Merged> {
            let mut out = Vec::new();
            for &g in list {
                let Some(group) = model.security_groups.get(g.index()) else { continue };
                let rules = if dir == Direction::Ingress { &group.ingress } else { &group.egress };
                out.extend(rules.iter().enumerate().map(|(i, r)| {
                    (ClassRule { protocol: r.protocol, ports: r.ports, peer: r.peer }, SgMatch { group: g, rule: i })
                }));
            }
            out
        };
        let (ingress, egress) = (merged(Direction::Ingress), merged(Direction::Egress));
        EniRules { ingress: DirRules::new(&ingress, &egress), egress: DirRules::new(&egress, &ingress) }
    }
}

impl DirRules {
    fn new(rules: &[Merged], opposite: &[Merged]) -> DirRules {
        let class: Vec<ClassRule> = rules.iter().map(|(r, _)| *r).collect();
        DirRules {
            classifier: Classifier::new(&class),
            origins: rules.iter().map(|(_, o)| *o).collect(),
            untracked: [IpProto::TCP, IpProto::UDP].map(|p| untracked_ports(rules, opposite, p)),
        }
    }
}

/// The destination ports of `proto` flows that AWS leaves untracked: those a 0.0.0.0/0 rule of
/// `rules` allows, provided a 0.0.0.0/0 rule of `opposite` allows every port of `proto` back.
fn untracked_ports(rules: &[Merged], opposite: &[Merged], proto: IpProto) -> PortSet {
    let all_back = opposite.iter().any(|(r, _)| {
        r.peer == ANYWHERE
            && match r.protocol {
                Protocol::All => true,
                p => {
                    p == Protocol::Number(proto) && matches!(r.ports, PortMatch::Any | PortMatch::Ports(PortRange::ALL))
                }
            }
    });
    if !all_back {
        return PortSet::default();
    }
    // As `rule_matches` for a TCP/UDP flow: ICMP type/code on a TCP/UDP rule matches nothing.
    PortSet::new(rules.iter().filter(|(r, _)| r.peer == ANYWHERE).filter_map(|(r, _)| match (r.protocol, r.ports) {
        (Protocol::All, _) => Some(PortRange::ALL),
        (Protocol::Number(p), _) if p != proto => None,
        (_, PortMatch::Any) => Some(PortRange::ALL),
        (_, PortMatch::Ports(range)) if range.from <= range.to => Some(range),
        _ => None,
    }))
}

/// A set of ports as sorted, disjoint, non-adjacent ranges.
#[derive(Clone, Debug, Default)]
struct PortSet(Vec<PortRange>);

impl PortSet {
    fn new(ranges: impl Iterator<Item = PortRange>) -> PortSet {
        let mut sorted: Vec<PortRange> = ranges.collect();
        sorted.sort_unstable_by_key(|r| r.from);
        let mut merged: Vec<PortRange> = Vec::with_capacity(sorted.len());
        for r in sorted {
            match merged.last_mut() {
                Some(last) if u32::from(r.from) <= u32::from(last.to) + 1 => last.to = last.to.max(r.to),
                _ => merged.push(r),
            }
        }
        PortSet(merged)
    }

    fn contains(&self, port: u16) -> bool {
        let i = self.0.partition_point(|r| r.to < port);
        self.0.get(i).is_some_and(|r| r.contains(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::L4Meta;
    use crate::policy::reference::LinearSecurityGroups;

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
        reference: LinearSecurityGroups,
    }

    impl Lab {
        fn new() -> Lab {
            let model = crate::topology::parse(LAB, "t.toml").expect("test topology is valid");
            let sgs = SecurityGroups::new(&model);
            let reference = LinearSecurityGroups::new(&model);
            Lab { model, sgs, reference }
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

        /// The compiled answer, checked against the reference scan's.
        fn allows(&self, eni: &str, dir: Direction, flow: Flow) -> Option<SgMatch> {
            let m = self.sgs.allows(self.eni(eni), dir, &flow);
            assert_eq!(m, self.reference.allows(self.eni(eni), dir, &flow), "{eni} {dir:?} {flow:?}");
            m
        }

        fn untracked(&self, eni: &str, dir: Direction, flow: Flow) -> bool {
            let u = self.sgs.is_untracked(self.eni(eni), dir, &flow);
            assert_eq!(u, self.reference.is_untracked(self.eni(eni), dir, &flow), "{eni} {dir:?} {flow:?}");
            u
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
