//! Pure rule logic, no state: security groups, network ACLs and route tables. Every function here
//! takes a compiled configuration and a [`Flow`] (or, for routes, an address) and answers which
//! rule decided. Rules look at the flow's addresses, protocol, destination port and ICMP
//! type/code; its other transport fields (source port, flags, echo id) are not theirs to judge.

/// Which way a packet crosses an ENI or a subnet boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Into the ENI / subnet.
    Ingress,
    /// Out of the ENI / subnet.
    Egress,
}

pub mod classifier;
pub mod network_acl;
#[cfg(test)]
mod reference;
pub mod route_table;
pub mod security_group;

use std::fmt;

use crate::model::{PortMatch, Protocol};
use crate::packet::{Flow, IpProto};

/// Whether a rule's protocol and port/type-code part matches `flow`; shared by security groups and
/// network ACLs, which follow the same AWS matching rules:
/// - protocol `all` matches every packet, whatever `ports` says (AWS: "-1 allows all ports");
/// - TCP/UDP ranges apply to the destination port only, in both directions (never the source port);
/// - ICMP matches type, then code, `None` standing for AWS's -1 (all);
/// - any other protocol number has no ports, so a rule for it matches every packet of it.
///
/// A TCP/UDP rule carrying ICMP type/code, or an ICMP rule carrying ports, cannot come out of
/// validation; should one be built by hand, it matches nothing (a malformed allow fails closed).
pub fn rule_matches(protocol: Protocol, ports: PortMatch, flow: &Flow) -> bool {
    let n = match protocol {
        Protocol::All => return true,
        Protocol::Number(n) => n,
    };
    if n != flow.proto {
        return false;
    }
    let l4 = &flow.l4;
    match (n, ports) {
        (_, PortMatch::Any) => true,
        (IpProto::TCP | IpProto::UDP, PortMatch::Ports(r)) => r.contains(l4.dst_port),
        (IpProto::ICMP, PortMatch::Icmp { icmp_type, icmp_code }) => {
            icmp_type.is_none_or(|t| t == l4.icmp_type) && icmp_code.is_none_or(|c| c == l4.icmp_code)
        }
        (IpProto::TCP | IpProto::UDP | IpProto::ICMP, _) => false,
        _ => true,
    }
}

/// A rule's protocol and ports as `trace` prints them: `all`, `tcp 80`, `udp 1024-65535`, `icmp`,
/// `icmp type 8`, `icmp type 3 code 4`, `proto 47`.
pub fn describe_match(protocol: Protocol, ports: PortMatch) -> impl fmt::Display {
    fmt::from_fn(move |f| {
        let n = match protocol {
            Protocol::All => return f.write_str("all"),
            Protocol::Number(n) => n,
        };
        // `tcp`, `udp`, `icmp` or `proto N`: IpProto prints as rules name it.
        match ports {
            PortMatch::Any => write!(f, "{n}"),
            PortMatch::Ports(r) if r.from == r.to => write!(f, "{n} {}", r.from),
            PortMatch::Ports(r) => write!(f, "{n} {}-{}", r.from, r.to),
            PortMatch::Icmp { icmp_type: None, icmp_code: None } => write!(f, "{n}"),
            PortMatch::Icmp { icmp_type: Some(t), icmp_code: None } => write!(f, "{n} type {t}"),
            PortMatch::Icmp { icmp_type: Some(t), icmp_code: Some(c) } => write!(f, "{n} type {t} code {c}"),
            PortMatch::Icmp { icmp_type: None, icmp_code: Some(c) } => write!(f, "{n} code {c}"),
        }
    })
}
