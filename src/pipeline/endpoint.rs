//! VPC endpoints on the packet path.
//!
//! Gateway endpoint: the route lookup matches one of its prefix list's CIDRs (compiled into the
//! route table, see `policy::route_table`); the packet leaves the sender's subnet (its ACL) and
//! goes to the service's `[internet]` host untranslated: the host sees the instance's private
//! IP, as an S3 server log shows on AWS. No internet gateway, NAT gateway or public address is
//! involved.
//!
//! Interface endpoint: its interfaces own addresses in their subnets (the fabric answers ARP for
//! them). A packet to one crosses the ACLs between the sender's subnet and the interface's, is
//! judged by the endpoint's security groups (inbound, as an ENI's would be, for a new flow), and
//! its destination becomes the service host's (DNAT); the host sees the instance's private IP.
//!
//! Replies. The service host answers the instance's private IP; the internet namespace routes it
//! to the fabric. Such a packet is taken back only as a reply to a connection the instance's own
//! table tracks through an endpoint of its VPC (an endpoint carries no connection the service
//! starts, as on AWS): through a gateway endpoint as it is, through an interface endpoint with its
//! source turned back into the interface's address. Non-peered VPCs may overlap, so the ENI is
//! found by its connection table, never by the address alone.
//!
//! A flow through an endpoint is tracked on the sender even where AWS's rules would leave it
//! untracked (allow-all both ways): its entry is what the replies are matched against.
//!
//! Not modelled: endpoint policies (every endpoint allows all, AWS's default policy), ICMP errors
//! from the service host about an endpoint flow (dropped as answering nothing), and a fast path
//! for interface endpoint flows and for replies (each such packet takes the full walk).

use std::net::Ipv4Addr;
use std::time::Duration;

use hashbrown::{HashMap, HashSet};

use super::{DropReason, Hop, Next, Observer, Offload, Pipeline, SgOutcome, Source, Stage, Step, Verdict};
use crate::model::{AclIdx, EndpointKind, EniIdx, Mac, Model, SubnetIdx, VpcIdx, VpceIdx};
use crate::packet::{self, rewrite, Flow, Ipv4Meta};
use crate::policy::security_group::SecurityGroups;
use crate::policy::Direction;

/// One interface of an interface endpoint, as the packet path needs it.
#[derive(Clone, Copy, Debug)]
struct Iface {
    endpoint: VpceIdx,
    /// Its position in the endpoint's interfaces.
    at: usize,
    subnet: SubnetIdx,
    acl: AclIdx,
    mac: Mac,
    /// The service host it stands for: the first `[internet]` host playing the service.
    host: Ipv4Addr,
}

/// The endpoints of a lab, compiled; all empty in a lab without endpoints.
#[derive(Clone, Debug, Default)]
pub(super) struct Endpoints {
    /// (VPC, interface address) -> the interface.
    by_ip: HashMap<(VpcIdx, Ipv4Addr), Iface>,
    /// Interface MAC -> its (VPC, address).
    by_mac: HashMap<Mac, (VpcIdx, Ipv4Addr)>,
    /// Private IP -> the ENIs that have it in a VPC with an endpoint: whom a service host's
    /// reply may be for.
    inside: HashMap<Ipv4Addr, Vec<EniIdx>>,
    /// (VPC, service host) pairs a gateway endpoint of the VPC reaches.
    gateway_hosts: HashSet<(VpcIdx, Ipv4Addr)>,
    /// (VPC, service host) -> the addresses of the VPC's interfaces that stand for the host.
    interfaces_of_host: HashMap<(VpcIdx, Ipv4Addr), Vec<Ipv4Addr>>,
}

/// Whom a service host's packet answers: an ENI, and the interface (address, subnet) it went
/// through, or `None` for a gateway endpoint.
#[derive(Clone, Copy, Debug)]
pub(super) struct Back {
    to: EniIdx,
    via: Option<(Ipv4Addr, SubnetIdx)>,
}

impl Endpoints {
    pub(super) fn new(model: &Model) -> Endpoints {
        let mut t = Endpoints::default();
        for (i, e) in model.vpc_endpoints.iter().enumerate() {
            let hosts = model.service_hosts(&e.service);
            match &e.kind {
                EndpointKind::Gateway { .. } => t.gateway_hosts.extend(hosts.iter().map(|&h| (e.vpc, h))),
                EndpointKind::Interface { interfaces, .. } => {
                    let Some(&host) = hosts.first() else { continue };
                    for (at, x) in interfaces.iter().enumerate() {
                        let acl = model.subnets[x.subnet.index()].network_acl;
                        let iface = Iface { endpoint: VpceIdx(i as u32), at, subnet: x.subnet, acl, mac: x.mac, host };
                        t.by_ip.insert((e.vpc, x.private_ip), iface);
                        t.by_mac.insert(x.mac, (e.vpc, x.private_ip));
                        t.interfaces_of_host.entry((e.vpc, host)).or_default().push(x.private_ip);
                    }
                }
            }
        }
        let vpcs: HashSet<VpcIdx> = model.vpc_endpoints.iter().map(|e| e.vpc).collect();
        for (i, eni) in model.enis.iter().enumerate() {
            if vpcs.contains(&model.subnets[eni.subnet.index()].vpc) {
                for ip in eni.private_ips() {
                    t.inside.entry(ip).or_default().push(EniIdx(i as u32));
                }
            }
        }
        t
    }

    /// The address of the interface with MAC `mac`, if it is one.
    pub(super) fn interface_of_mac(&self, mac: Mac) -> Option<Ipv4Addr> {
        if self.by_mac.is_empty() {
            return None;
        }
        self.by_mac.get(&mac).map(|&(_, ip)| ip)
    }

    /// Whether `ip` is an interface's address in `vpc`.
    pub(super) fn is_interface(&self, vpc: VpcIdx, ip: Ipv4Addr) -> bool {
        !self.by_ip.is_empty() && self.by_ip.contains_key(&(vpc, ip))
    }

    /// The MAC of the interface owning `ip` in `subnet`, for the fabric's ARP answer.
    pub(super) fn mac_in_subnet(&self, vpc: VpcIdx, subnet: SubnetIdx, ip: Ipv4Addr) -> Option<Mac> {
        self.by_ip.get(&(vpc, ip)).filter(|i| i.subnet == subnet).map(|i| i.mac)
    }
}

/// A new flow through an endpoint is always tracked on the sender, even one AWS's rules would
/// leave untracked: its entry is how the service host's replies find the ENI they answer.
fn tracked(egress: SgOutcome) -> SgOutcome {
    match egress {
        SgOutcome::NewFlow { .. } => SgOutcome::NewFlow { tracked: true },
        other => other,
    }
}

impl Pipeline {
    /// The id of the interface owning `ip` in `vpc`, for explanations.
    pub(super) fn endpoint_interface_id(&self, vpc: VpcIdx, ip: Ipv4Addr) -> &str {
        let Some(i) = self.endpoints.by_ip.get(&(vpc, ip)) else { return "<no endpoint interface>" };
        match &self.model.vpc_endpoints[i.endpoint.index()].kind {
            EndpointKind::Interface { interfaces, .. } => interfaces[i.at].id.as_str(),
            EndpointKind::Gateway { .. } => "<no endpoint interface>",
        }
    }

    /// A frame sent to an interface's MAC: it must be in the sender's subnet and VPC, as any
    /// neighbour at layer 2.
    pub(super) fn interface_in_subnet<O: Observer>(
        &self,
        from: EniIdx,
        mac: Mac,
        addr: Ipv4Addr,
        obs: &mut O,
    ) -> Step<Next> {
        let port = &self.ports[from.index()];
        match self.endpoints.by_ip.get(&(port.vpc, addr)) {
            Some(i) if i.subnet == port.subnet && i.mac == mac => {
                let id = self.endpoint_interface_id(port.vpc, addr);
                obs.record(Stage::Layer2, format_args!("{mac} is {id} in {}", port.subnet_cidr));
                Ok(Next::InterfaceEndpoint(addr))
            }
            _ => {
                obs.record(Stage::Layer2, format_args!("drop: no ENI of {} has MAC {mac}", port.subnet_cidr));
                Err(Verdict::Drop(DropReason::UnknownDestinationMac))
            }
        }
    }

    /// Out through gateway endpoint `e`: the sender's subnet's ACL, the internet's MTU, then to
    /// the service host with the packet unchanged but for its MACs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn via_gateway_endpoint<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        egress: SgOutcome,
        e: VpceIdx,
        ip: &Ipv4Meta,
        info: &Flow,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        self.network_acl(self.ports[from.index()].acl, Direction::Egress, info, None, obs)?;
        let egress = tracked(egress);
        self.check_mtu(from, ip, frame, off, obs)?;
        self.room(now, from, egress, Stage::SgEgress, obs)?;
        if commit {
            self.commit_either(now, from, egress, info, Some(Hop::GatewayEndpoint))?;
        }
        let endpoint = &self.model.vpc_endpoints[e.index()];
        obs.record(
            Stage::VpcEndpoint,
            format_args!(
                "{} ({}): to {} untranslated, source {} (no internet or NAT gateway)",
                endpoint.id, endpoint.service, ip.flow.dst, ip.flow.src
            ),
        );
        packet::set_macs(frame, self.inet_peer_mac.get(), self.inet_own_mac);
        Ok(Verdict::ToInternet)
    }

    /// To interface endpoint address `addr`: the ACLs between the sender's subnet and the
    /// interface's, the endpoint's groups for a new flow, then to the service host (DNAT).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn via_interface_endpoint<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        egress: SgOutcome,
        addr: Ipv4Addr,
        ip: &Ipv4Meta,
        info: &Flow,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let port = &self.ports[from.index()];
        let (vpc, src_subnet, src_acl) = (port.vpc, port.subnet, port.acl);
        let Some(&iface) = self.endpoints.by_ip.get(&(vpc, addr)) else {
            return Err(Verdict::Drop(DropReason::NoSuchAddress));
        };
        if src_subnet != iface.subnet {
            self.network_acl(src_acl, Direction::Egress, info, None, obs)?;
            self.network_acl(iface.acl, Direction::Ingress, info, None, obs)?;
        }
        self.endpoint_groups(iface, egress, info, obs)?;
        let egress = tracked(egress);
        self.check_mtu(from, ip, frame, off, obs)?;
        self.room(now, from, egress, Stage::SgEgress, obs)?;
        if commit {
            self.commit_either(now, from, egress, info, None)?;
        }
        let id = self.endpoint_interface_id(vpc, addr);
        obs.record(Stage::VpcEndpoint, format_args!("{id}: destination {addr} -> {} (service host)", iface.host));
        rewrite::set_dst_ip(frame, ip, iface.host, off.csum());
        packet::set_macs(frame, self.inet_peer_mac.get(), self.inet_own_mac);
        Ok(Verdict::ToInternet)
    }

    /// The endpoint's security groups judge a new flow coming in to its interface; a flow the
    /// sender tracks already passed them (groups are stateful).
    fn endpoint_groups<O: Observer>(&self, iface: Iface, egress: SgOutcome, info: &Flow, obs: &mut O) -> Step<()> {
        if !matches!(egress, SgOutcome::NewFlow { .. }) {
            obs.record(Stage::SgIngress, format_args!("tracked connection through the endpoint"));
            return Ok(());
        }
        let slot = SecurityGroups::endpoint_slot(&self.model, iface.endpoint);
        let endpoint = &self.model.vpc_endpoints[iface.endpoint.index()];
        match self.groups.allows(slot, Direction::Ingress, info) {
            Some(m) => {
                obs.record(
                    Stage::SgIngress,
                    format_args!("{}: allowed by {}", endpoint.id, self.groups.describe(m, Direction::Ingress)),
                );
                Ok(())
            }
            None => {
                obs.record(
                    Stage::SgIngress,
                    format_args!(
                        "drop: no rule of {}'s security groups allows this flow from {}",
                        endpoint.id, info.src
                    ),
                );
                Err(Verdict::Drop(DropReason::SecurityGroupIngress))
            }
        }
    }

    /// Whom a packet from the internet answers through an endpoint, if anyone: an ENI having the
    /// destination address whose table tracks the flow, through a gateway endpoint reaching the
    /// source host or an interface standing for it.
    pub(super) fn endpoint_reply(&self, ip: &Ipv4Meta, now: Duration) -> Option<Back> {
        let candidates = self.endpoints.inside.get(&ip.flow.dst)?;
        let host = ip.flow.src;
        candidates.iter().find_map(|&to| {
            let vpc = self.ports[to.index()].vpc;
            let table = &self.conntrack[to.index()];
            if self.endpoints.gateway_hosts.contains(&(vpc, host)) && table.peek(now, &ip.flow).is_some() {
                return Some(Back { to, via: None });
            }
            let addrs = self.endpoints.interfaces_of_host.get(&(vpc, host))?;
            addrs.iter().find_map(|&addr| {
                let mut flow = ip.flow;
                flow.src = addr;
                table.peek(now, &flow)?;
                let subnet = self.endpoints.by_ip.get(&(vpc, addr))?.subnet;
                Some(Back { to, via: Some((addr, subnet)) })
            })
        })
    }

    /// Delivers a service host's reply `back` found: through an interface its source becomes
    /// the interface's address again; then the ACLs and groups of the way in, as for any packet.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn back_from_service<O: Observer>(
        &mut self,
        now: Duration,
        back: Back,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let mut inside = *ip;
        let vpc = self.ports[back.to.index()].vpc;
        match back.via {
            Some((addr, _)) => {
                let id = self.endpoint_interface_id(vpc, addr);
                obs.record(Stage::VpcEndpoint, format_args!("{id}: source {} -> {addr} (reply)", ip.flow.src));
                rewrite::set_src_ip(frame, ip, addr, off.csum());
                inside.flow.src = addr;
            }
            None => obs.record(
                Stage::VpcEndpoint,
                format_args!("reply from {} through a gateway endpoint of the VPC", ip.flow.src),
            ),
        }
        let info = inside.flow;
        let source = Source::Endpoint(back.via.map(|(_, s)| s));
        self.arrive(now, source, back.to, true, &inside, &info, frame, obs, commit)
    }
}

#[cfg(test)]
mod tests;
