//! Network ACL evaluation: stateless, per subnet. Rules are evaluated lowest number first and the
//! first match decides; when none matches, the fixed final rule `*` (32767) denies. Ingress rules
//! match the packet's source address, egress rules its destination; TCP/UDP port ranges match the
//! destination port (so responses need their own rules, typically ephemeral ports 1024-65535).
//!
//! The model keeps each direction's rules sorted by number; [`CompiledAcl`] compiles them into a
//! [`Classifier`] (as security groups are), so evaluation finds the first match without scanning
//! the rules: AWS allows up to 40 per direction, and a scan of 40 on every packet that crosses a
//! subnet adds up. Nothing here panics on any input.

use std::fmt;

use super::classifier::{ClassRule, Classifier};
use super::{describe_match, Direction};
use crate::model::{AclAction, AclRule, NetworkAcl, SgPeer};
use crate::packet::Flow;

/// Which rule of a network ACL decided a packet's fate, and what it decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclDecision {
    /// The number of the rule that matched; `None` is the final `*` rule (deny all).
    pub rule: Option<u16>,
    /// Allow or deny.
    pub action: AclAction,
}

impl AclDecision {
    /// The implicit final rule `*`: deny everything.
    pub const DEFAULT_DENY: AclDecision = AclDecision { rule: None, action: AclAction::Deny };

    /// Whether the packet may pass.
    pub fn allows(self) -> bool {
        self.action == AclAction::Allow
    }
}

fn rules(acl: &NetworkAcl, dir: Direction) -> &[AclRule] {
    match dir {
        Direction::Ingress => &acl.ingress,
        Direction::Egress => &acl.egress,
    }
}

/// A network ACL compiled for evaluation: each direction's rules as a [`Classifier`], with the
/// ACL itself for [`describe`].
#[derive(Clone, Debug)]
pub struct CompiledAcl {
    acl: NetworkAcl,
    ingress: Classifier,
    egress: Classifier,
}

impl CompiledAcl {
    /// Compiles both directions of `acl` (off the packet path: a few microseconds for 40 rules).
    pub fn new(acl: &NetworkAcl) -> CompiledAcl {
        let compile = |rules: &[AclRule]| {
            let class: Vec<ClassRule> = rules
                .iter()
                .map(|r| ClassRule { protocol: r.protocol, ports: r.ports, peer: SgPeer::Cidr(r.cidr) })
                .collect();
            Classifier::new(&class)
        };
        CompiledAcl { acl: acl.clone(), ingress: compile(&acl.ingress), egress: compile(&acl.egress) }
    }

    /// The ACL as the model has it.
    pub fn acl(&self) -> &NetworkAcl {
        &self.acl
    }

    /// Evaluates `flow` crossing the subnet boundary in `dir`: the first rule (lowest number)
    /// whose CIDR, protocol and ports match decides; no match is the final `*` deny.
    pub fn evaluate(&self, dir: Direction, flow: &Flow) -> AclDecision {
        // AWS: the CIDR of an inbound rule is the traffic's source, of an outbound rule its destination.
        let (classifier, remote) = match dir {
            Direction::Ingress => (&self.ingress, flow.src),
            Direction::Egress => (&self.egress, flow.dst),
        };
        classifier
            .first_match(flow, remote, &[])
            .and_then(|i| rules(&self.acl, dir).get(i))
            .map_or(AclDecision::DEFAULT_DENY, |r| AclDecision { rule: Some(r.number), action: r.action })
    }
}

/// A decision as `trace` prints it, e.g. `acl-public ingress rule 100: allow tcp 80 from 0.0.0.0/0`
/// or `acl-x egress rule *: deny all`.
/// Written only when shown: the forwarding path passes it to an observer that ignores it.
pub fn describe(acl: &NetworkAcl, dir: Direction, d: AclDecision) -> impl fmt::Display + '_ {
    fmt::from_fn(move |f| {
        let (dir_name, preposition) = match dir {
            Direction::Ingress => ("ingress", "from"),
            Direction::Egress => ("egress", "to"),
        };
        let action = |a: AclAction| match a {
            AclAction::Allow => "allow",
            AclAction::Deny => "deny",
        };
        let Some(number) = d.rule else {
            return write!(f, "{} {dir_name} rule *: {} all", acl.id, action(d.action));
        };
        match rules(acl, dir).iter().find(|r| r.number == number) {
            Some(r) => write!(
                f,
                "{} {dir_name} rule {number}: {} {} {preposition} {}",
                acl.id,
                action(r.action),
                describe_match(r.protocol, r.ports),
                r.cidr
            ),
            // A decision kept from before the ACL changed (ACL changes apply on the next packet).
            None => write!(f, "{} {dir_name} rule {number}: {} (rule no longer present)", acl.id, action(d.action)),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::Model;
    use crate::packet::{IpProto, L4Meta};

    const LAB: &str = r#"name = "t"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
network_acl = "acl-public"

[[network_acl]]
id = "acl-public"
vpc = "vpc-a"
ingress = [
  { rule = 90, protocol = "tcp", ports = "22", cidr = "192.0.2.0/24", action = "deny" },
  { rule = 100, protocol = "tcp", ports = "22", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 110, protocol = "tcp", ports = "80", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 120, protocol = "tcp", ports = "1024-65535", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 130, protocol = "icmp", icmp_type = 3, icmp_code = 4, cidr = "0.0.0.0/0", action = "allow" },
  { rule = 140, protocol = "icmp", icmp_type = 8, cidr = "10.0.0.0/16", action = "allow" },
  { rule = 150, protocol = 47, cidr = "198.51.100.0/24", action = "allow" },
]
egress = [
  { rule = 50, protocol = "all", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 60, protocol = "tcp", ports = "25", cidr = "0.0.0.0/0", action = "deny" },
]

[[network_acl]]
id = "acl-x"
vpc = "vpc-a"
ingress = [
  { rule = 200, protocol = "udp", ports = "53", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 100, protocol = "udp", cidr = "0.0.0.0/0", action = "deny" },
]
"#;

    /// The compiled evaluation, checked against the reference scan's.
    fn evaluate(acl: &NetworkAcl, dir: Direction, flow: &Flow) -> AclDecision {
        let d = CompiledAcl::new(acl).evaluate(dir, flow);
        assert_eq!(d, crate::policy::reference::evaluate_acl(acl, dir, flow), "{dir:?} {flow:?}");
        d
    }

    fn model() -> Model {
        crate::topology::parse(LAB, "t.toml").expect("test topology is valid")
    }

    fn acl<'m>(m: &'m Model, id: &str) -> &'m NetworkAcl {
        m.network_acls.iter().find(|a| a.id == id).expect("ACL exists")
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

    fn allow(n: u16) -> AclDecision {
        AclDecision { rule: Some(n), action: AclAction::Allow }
    }

    fn deny(n: u16) -> AclDecision {
        AclDecision { rule: Some(n), action: AclAction::Deny }
    }

    #[test]
    fn lower_numbered_deny_beats_higher_allow() {
        let m = model();
        let a = acl(&m, "acl-public");
        let f = tcp("192.0.2.9", "10.0.1.10", 40000, 22);
        assert_eq!(evaluate(a, Direction::Ingress, &f), deny(90));
        // Outside the denied prefix, rule 100 allows.
        assert_eq!(evaluate(a, Direction::Ingress, &tcp("203.0.113.9", "10.0.1.10", 40000, 22)), allow(100));
    }

    #[test]
    fn lower_numbered_allow_beats_higher_deny() {
        let m = model();
        let a = acl(&m, "acl-public");
        // Egress 50 allows all before 60 denies SMTP.
        let smtp = tcp("10.0.1.10", "198.51.100.7", 40000, 25);
        assert_eq!(evaluate(a, Direction::Egress, &smtp), allow(50));
    }

    #[test]
    fn rules_are_taken_in_number_order_not_file_order() {
        let m = model();
        let a = acl(&m, "acl-x");
        // The file lists 200 (allow udp 53) before 100 (deny udp); 100 is evaluated first.
        assert_eq!(evaluate(a, Direction::Ingress, &udp("198.51.100.7", "10.0.1.10", 40000, 53)), deny(100));
    }

    #[test]
    fn no_match_is_the_implicit_deny() {
        let m = model();
        let a = acl(&m, "acl-public");
        assert_eq!(
            evaluate(a, Direction::Ingress, &udp("198.51.100.7", "10.0.1.10", 53, 53)),
            AclDecision::DEFAULT_DENY
        );
        // acl-x has no egress rules: everything out is denied.
        let x = acl(&m, "acl-x");
        assert_eq!(
            evaluate(x, Direction::Egress, &tcp("10.0.1.10", "198.51.100.7", 40000, 443)),
            AclDecision::DEFAULT_DENY
        );
        assert!(!AclDecision::DEFAULT_DENY.allows());
    }

    #[test]
    fn ports_match_the_destination_port_only() {
        let m = model();
        let a = acl(&m, "acl-public");
        // A response from a web server: source port 80, destination an ephemeral port -> rule 120.
        let resp = tcp("198.51.100.7", "10.0.1.10", 80, 50000);
        assert_eq!(evaluate(a, Direction::Ingress, &resp), allow(120));
        // Source port 80 to a low destination port is not let in by the port-80 rule.
        let low = tcp("198.51.100.7", "10.0.1.10", 80, 443);
        assert_eq!(evaluate(a, Direction::Ingress, &low), AclDecision::DEFAULT_DENY);
        // Ephemeral range bounds.
        assert_eq!(evaluate(a, Direction::Ingress, &tcp("198.51.100.7", "10.0.1.10", 1, 1024)), allow(120));
        assert_eq!(evaluate(a, Direction::Ingress, &tcp("198.51.100.7", "10.0.1.10", 1, 65535)), allow(120));
        assert_eq!(
            evaluate(a, Direction::Ingress, &tcp("198.51.100.7", "10.0.1.10", 1, 1023)),
            AclDecision::DEFAULT_DENY
        );
    }

    #[test]
    fn ingress_matches_source_egress_matches_destination() {
        let m = model();
        let a = acl(&m, "acl-public");
        // Rule 140: echo request from inside the VPC only.
        assert_eq!(evaluate(a, Direction::Ingress, &icmp("10.0.2.5", "10.0.1.10", 8, 0)), allow(140));
        assert_eq!(
            evaluate(a, Direction::Ingress, &icmp("198.51.100.7", "10.0.1.10", 8, 0)),
            AclDecision::DEFAULT_DENY
        );
        // Source inside the VPC, destination outside: the ingress CIDR looks at the source.
        assert_eq!(evaluate(a, Direction::Ingress, &icmp("10.0.2.5", "198.51.100.7", 8, 0)), allow(140));
    }

    #[test]
    fn icmp_type_and_code() {
        let m = model();
        let a = acl(&m, "acl-public");
        // Rule 130: fragmentation needed (3/4) only.
        assert_eq!(evaluate(a, Direction::Ingress, &icmp("198.51.100.7", "10.0.1.10", 3, 4)), allow(130));
        assert_eq!(
            evaluate(a, Direction::Ingress, &icmp("198.51.100.7", "10.0.1.10", 3, 1)),
            AclDecision::DEFAULT_DENY
        );
        // Rule 140: type 8, any code.
        assert_eq!(evaluate(a, Direction::Ingress, &icmp("10.0.0.1", "10.0.1.10", 8, 7)), allow(140));
        assert_eq!(evaluate(a, Direction::Ingress, &icmp("10.0.0.1", "10.0.1.10", 0, 0)), AclDecision::DEFAULT_DENY);
    }

    #[test]
    fn other_protocol_numbers_match_all_their_packets() {
        let m = model();
        let a = acl(&m, "acl-public");
        let gre = Flow { proto: IpProto(47), ..tcp("198.51.100.7", "10.0.1.10", 0, 0) };
        assert_eq!(evaluate(a, Direction::Ingress, &gre), allow(150));
        let other = Flow { proto: IpProto(50), ..gre };
        assert_eq!(evaluate(a, Direction::Ingress, &other), AclDecision::DEFAULT_DENY);
    }

    #[test]
    fn default_acl_allows_all_both_ways() {
        let m = model();
        let d = &m.network_acls[m.vpcs[0].default_network_acl.index()];
        for f in [
            tcp("198.51.100.7", "10.0.1.10", 1, 2),
            udp("10.0.1.10", "198.51.100.7", 53, 53),
            icmp("198.51.100.7", "10.0.1.10", 3, 4),
            Flow { proto: IpProto(132), ..tcp("10.0.1.10", "10.0.2.10", 0, 0) },
        ] {
            assert_eq!(evaluate(d, Direction::Ingress, &f), allow(100));
            assert_eq!(evaluate(d, Direction::Egress, &f), allow(100));
        }
        // A custom ACL with no rules for a direction denies all of it (acl-x egress, above); the
        // default ACL is a different one, used by subnets that name none.
        assert_ne!(m.subnets[0].network_acl, m.vpcs[0].default_network_acl);
    }

    #[test]
    fn describe_texts() {
        let m = model();
        let a = acl(&m, "acl-public");
        let x = acl(&m, "acl-x");
        let ing = Direction::Ingress;
        assert_eq!(
            describe(a, ing, allow(110)).to_string(),
            "acl-public ingress rule 110: allow tcp 80 from 0.0.0.0/0"
        );
        assert_eq!(
            describe(a, ing, allow(120)).to_string(),
            "acl-public ingress rule 120: allow tcp 1024-65535 from 0.0.0.0/0"
        );
        assert_eq!(describe(a, ing, deny(90)).to_string(), "acl-public ingress rule 90: deny tcp 22 from 192.0.2.0/24");
        assert_eq!(
            describe(a, ing, allow(130)).to_string(),
            "acl-public ingress rule 130: allow icmp type 3 code 4 from 0.0.0.0/0"
        );
        assert_eq!(
            describe(a, ing, allow(140)).to_string(),
            "acl-public ingress rule 140: allow icmp type 8 from 10.0.0.0/16"
        );
        assert_eq!(
            describe(a, ing, allow(150)).to_string(),
            "acl-public ingress rule 150: allow proto 47 from 198.51.100.0/24"
        );
        assert_eq!(
            describe(a, Direction::Egress, allow(50)).to_string(),
            "acl-public egress rule 50: allow all to 0.0.0.0/0"
        );
        assert_eq!(
            describe(x, Direction::Egress, AclDecision::DEFAULT_DENY).to_string(),
            "acl-x egress rule *: deny all"
        );
        assert_eq!(describe(x, ing, deny(100)).to_string(), "acl-x ingress rule 100: deny udp 0-65535 from 0.0.0.0/0");
        // A stale decision does not panic.
        assert_eq!(describe(x, ing, allow(7)).to_string(), "acl-x ingress rule 7: allow (rule no longer present)");
    }
}
