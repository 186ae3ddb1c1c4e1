//! Pure rule logic, no state: security groups, network ACLs (and, later, route tables). Every
//! function here takes a compiled configuration and a [`Flow`] and answers which rule decided.

use std::net::Ipv4Addr;

/// Which way a packet crosses an ENI or a subnet boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Into the ENI / subnet.
    Ingress,
    /// Out of the ENI / subnet.
    Egress,
}

/// What rules look at in a packet: addresses, protocol, and ports or ICMP type/code.
/// Ports are 0 for protocols without ports; `icmp_type`/`icmp_code` are 0 unless ICMP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// TCP/UDP source port.
    pub src_port: u16,
    /// TCP/UDP destination port.
    pub dst_port: u16,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
}
