//! The decision core: [`Pipeline::process`] takes the ingress ENI and a frame and returns a
//! [`Verdict`], rewriting the frame in place when it forwards or answers. It is pure: no file
//! descriptors, no clock reads, no syscalls, so the same code forwards packets in the data plane
//! and is driven by unit tests with crafted frames. Time is passed in (`now`) for the stateful
//! stages that later issues add (connection tracking).
//!
//! The model is compiled once into lookup tables (ENI by MAC, ENI by (VPC, IP)), following OVN's
//! northd: the packet path only reads tables. The walk is a sequence of named [`Stage`]s in packet
//! order; an [`Observer`] is told what each stage decided (a no-op when forwarding, a recorder when
//! explaining).
//!
//! Implemented so far: ARP answered by the fabric, port security on the source MAC, and IPv4 along
//! the VPC's local route (same subnet at layer 2 with MACs unchanged; via the router MAC with the
//! router's MAC as source). The TTL is never touched: the VPC router is not a hop.

mod verdict;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use hashbrown::HashMap;

pub use verdict::{DropReason, EniCounters, Verdict};

use crate::model::{Cidr, EniIdx, Mac, Model, SubnetIdx, VpcIdx};
use crate::packet::{self, ArpMeta, L3Meta, ARP_REQUEST};

/// The pipeline's stages, in packet-walk order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Ethernet/ARP/IPv4 header parsing.
    Parse,
    /// The source MAC must be the sending ENI's.
    PortSecurity,
    /// The fabric answers ARP for the router and for ENIs of the same subnet.
    ArpReply,
    /// Delivery by destination MAC within a subnet (no route lookup, as in AWS).
    Layer2,
    /// Longest-prefix match in the subnet's route table (only the local route so far).
    RouteLookup,
    /// Handing the frame to the destination ENI.
    Deliver,
}

impl Stage {
    /// A short name for one-line-per-stage output.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::PortSecurity => "port-security",
            Stage::ArpReply => "arp-reply",
            Stage::Layer2 => "layer2",
            Stage::RouteLookup => "route-lookup",
            Stage::Deliver => "deliver",
        }
    }
}

/// Told what each stage decided. The forwarding path uses [`NoObserver`], which compiles away.
pub trait Observer {
    /// Stage `stage` ran and decided `detail`.
    fn record(&mut self, stage: Stage, detail: fmt::Arguments<'_>);
}

/// The observer of the forwarding path: records nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    #[inline(always)]
    fn record(&mut self, _: Stage, _: fmt::Arguments<'_>) {}
}

/// An observer that keeps one line per stage (for tests and `trace`).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// (stage, what it decided), in order.
    pub lines: Vec<(Stage, String)>,
}

impl Observer for Recorder {
    fn record(&mut self, stage: Stage, detail: fmt::Arguments<'_>) {
        self.lines.push((stage, detail.to_string()));
    }
}

/// What the pipeline knows about one ENI, compiled from the model.
#[derive(Clone, Debug)]
struct Port {
    id: String,
    mac: Mac,
    subnet: SubnetIdx,
    subnet_cidr: Cidr,
    vpc: VpcIdx,
    router_mac: Mac,
    attached: bool,
}

/// The compiled lab and the decision code that reads it.
#[derive(Debug)]
pub struct Pipeline {
    ports: Vec<Port>,
    vpc_cidrs: Vec<Cidr>,
    owner_by_ip: HashMap<(VpcIdx, Ipv4Addr), EniIdx>,
    owner_by_mac: HashMap<Mac, EniIdx>,
}

/// Continue to the next stage, or stop with a verdict.
type Step<T> = Result<T, Verdict>;

impl Pipeline {
    /// Compiles a checked model into lookup tables.
    pub fn new(model: &Model) -> Pipeline {
        let mut owner_by_ip = HashMap::new();
        let mut owner_by_mac = HashMap::new();
        let ports = model
            .enis
            .iter()
            .enumerate()
            .map(|(i, eni)| {
                let idx = EniIdx(i as u32);
                let subnet = &model.subnets[eni.subnet.index()];
                for ip in eni.private_ips() {
                    owner_by_ip.insert((subnet.vpc, ip), idx);
                }
                owner_by_mac.insert(eni.mac, idx);
                Port {
                    id: eni.id.clone(),
                    mac: eni.mac,
                    subnet: eni.subnet,
                    subnet_cidr: subnet.cidr,
                    vpc: subnet.vpc,
                    router_mac: model.vpcs[subnet.vpc.index()].router_mac,
                    attached: eni.attachment.is_some(),
                }
            })
            .collect();
        let vpc_cidrs = model.vpcs.iter().map(|v| v.cidr).collect();
        Pipeline { ports, vpc_cidrs, owner_by_ip, owner_by_mac }
    }

    /// Decides the fate of `frame`, sent by the instance on ENI `from`, rewriting it in place when
    /// the verdict is `Forward` or `Reply`. Never panics on any frame content.
    pub fn process<O: Observer>(&self, _now: Duration, from: EniIdx, frame: &mut [u8], obs: &mut O) -> Verdict {
        match self.walk(from, frame, obs) {
            Ok(v) | Err(v) => v,
        }
    }

    fn walk<O: Observer>(&self, from: EniIdx, frame: &mut [u8], obs: &mut O) -> Step<Verdict> {
        let port = &self.ports[from.index()];
        let meta = match packet::parse(frame) {
            Ok(m) => m,
            Err(e) => {
                obs.record(Stage::Parse, format_args!("drop: {e}"));
                return Err(Verdict::Drop(DropReason::Malformed));
            }
        };
        if meta.src_mac != port.mac {
            obs.record(
                Stage::PortSecurity,
                format_args!("drop: source MAC {} is not {}'s {}", meta.src_mac, port.id, port.mac),
            );
            return Err(Verdict::Drop(DropReason::SourceMacMismatch));
        }
        obs.record(Stage::PortSecurity, format_args!("source MAC {} is {}'s", meta.src_mac, port.id));
        let ip = match meta.l3 {
            L3Meta::Arp(arp) => return self.arp_reply(port, from, &arp, frame, obs),
            L3Meta::Ipv4(ip) => ip,
            L3Meta::Other(ethertype) => {
                obs.record(Stage::Parse, format_args!("drop: EtherType {ethertype:#06x} is neither ARP nor IPv4"));
                return Err(Verdict::Drop(DropReason::UnsupportedEthertype));
            }
        };
        let to = if meta.dst_mac == port.router_mac {
            self.route_lookup(port, ip.dst, obs)?
        } else {
            self.layer2(port, from, meta.dst_mac, obs)?
        };
        let dst = &self.ports[to.index()];
        if !dst.attached {
            obs.record(Stage::Deliver, format_args!("drop: {} is not attached to an instance", dst.id));
            return Err(Verdict::Drop(DropReason::DestinationNotAttached));
        }
        if meta.dst_mac == port.router_mac {
            packet::set_macs(frame, dst.mac, port.router_mac);
            obs.record(Stage::Deliver, format_args!("to {} as {} from router {}", dst.id, dst.mac, port.router_mac));
        } else {
            obs.record(Stage::Deliver, format_args!("to {}, frame unchanged", dst.id));
        }
        Ok(Verdict::Forward(to))
    }

    /// The fabric answers ARP: the router's MAC for the subnet router, the owner's MAC for an
    /// address of another ENI in the same subnet. Anything else goes unanswered, as on AWS.
    fn arp_reply<O: Observer>(
        &self,
        port: &Port,
        from: EniIdx,
        arp: &ArpMeta,
        frame: &mut [u8],
        obs: &mut O,
    ) -> Step<Verdict> {
        if arp.operation != ARP_REQUEST {
            obs.record(Stage::ArpReply, format_args!("drop: ARP operation {} is not a request", arp.operation));
            return Err(Verdict::Drop(DropReason::ArpNotRequest));
        }
        let target = arp.target_ip;
        let answer = if target == port.subnet_cidr.router() {
            Some(port.router_mac)
        } else {
            self.owner_by_ip
                .get(&(port.vpc, target))
                .map(|&e| (e, &self.ports[e.index()]))
                .filter(|(e, p)| *e != from && p.subnet == port.subnet && p.attached)
                .map(|(_, p)| p.mac)
        };
        match answer {
            Some(mac) => {
                packet::arp_reply_in_place(frame, arp, mac);
                obs.record(Stage::ArpReply, format_args!("{target} is-at {mac}"));
                Ok(Verdict::Reply)
            }
            None => {
                obs.record(Stage::ArpReply, format_args!("drop: nobody in {} owns {target}", port.subnet_cidr));
                Err(Verdict::Drop(DropReason::ArpUnanswered))
            }
        }
    }

    /// Frames addressed to a MAC other than the router's stay in the subnet: they go to the ENI
    /// that owns that MAC, unchanged, without a route lookup or a network ACL.
    fn layer2<O: Observer>(&self, port: &Port, from: EniIdx, dst_mac: Mac, obs: &mut O) -> Step<EniIdx> {
        if dst_mac.is_multicast() {
            obs.record(Stage::Layer2, format_args!("drop: {dst_mac} is broadcast/multicast"));
            return Err(Verdict::Drop(DropReason::BroadcastOrMulticast));
        }
        match self.owner_by_mac.get(&dst_mac) {
            Some(&to) if to != from && self.ports[to.index()].subnet == port.subnet => {
                obs.record(
                    Stage::Layer2,
                    format_args!("{dst_mac} is {} in {}", self.ports[to.index()].id, port.subnet_cidr),
                );
                Ok(to)
            }
            _ => {
                obs.record(Stage::Layer2, format_args!("drop: no ENI of {} has MAC {dst_mac}", port.subnet_cidr));
                Err(Verdict::Drop(DropReason::UnknownDestinationMac))
            }
        }
    }

    /// Frames to the router MAC are routed. Only the local route is enforced so far: a
    /// destination inside the VPC CIDR goes to the ENI owning it.
    fn route_lookup<O: Observer>(&self, port: &Port, dst: Ipv4Addr, obs: &mut O) -> Step<EniIdx> {
        let vpc_cidr = self.vpc_cidrs[port.vpc.index()];
        if !vpc_cidr.contains(dst) {
            obs.record(Stage::RouteLookup, format_args!("drop: {dst} matches no route (local is {vpc_cidr})"));
            return Err(Verdict::Drop(DropReason::NoRoute));
        }
        match self.owner_by_ip.get(&(port.vpc, dst)) {
            Some(&to) => {
                obs.record(
                    Stage::RouteLookup,
                    format_args!("{dst} via local {vpc_cidr}: {}", self.ports[to.index()].id),
                );
                Ok(to)
            }
            None => {
                obs.record(Stage::RouteLookup, format_args!("drop: {dst} via local {vpc_cidr}, but no ENI owns it"));
                Err(Verdict::Drop(DropReason::NoSuchAddress))
            }
        }
    }
}

#[cfg(test)]
mod tests;
