//! The decision core: [`Pipeline::process`] takes the ingress ENI and a frame and returns a
//! [`Verdict`], rewriting the frame in place when it forwards or answers. It does no I/O: no file
//! descriptors, no clock reads, no syscalls; time is passed in (`now`). The same code forwards
//! packets in the data plane, explains them in `trace` ([`Pipeline::trace`], read-only: it creates
//! no connection-tracking entry) and is driven by unit tests with crafted frames.
//!
//! The model is compiled once into lookup tables (ENI by MAC, ENI by (VPC, IP), security groups'
//! merged allow sets and member sets), following OVN's northd: the packet path only reads tables.
//! The walk is a sequence of named [`Stage`]s in packet order, as in AWS's VPC:
//!
//! port security (source MAC) -> ARP by the fabric -> source check -> security group egress
//! (with the sender's connection table) -> layer 2 in the subnet, or route lookup -> network ACL
//! egress and ingress (only when the packet crosses subnets) -> destination check -> security
//! group ingress (with the receiver's connection table) -> deliver.
//!
//! Connection tracking is per ENI. A new flow's entries are created only when its packet is
//! delivered. Each entry caches where the ENI's own packets of that flow go; later packets take
//! that fast path, skipping route lookup, ACLs and rules, until the configuration generation
//! changes ([`Pipeline::reconfigure`]): then the next packet takes the full walk again, so a
//! changed network ACL applies at once while tracked connections survive rule changes, as on AWS.
//! The TTL is never touched: the VPC router is not a hop.

mod verdict;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use hashbrown::HashMap;

pub use verdict::{DropReason, EniCounters, Verdict};

use crate::conntrack::{ConnTable, ConntrackFull, PacketInfo};
use crate::model::{AclIdx, Cidr, EniIdx, Mac, Model, NetworkAcl, RouteTarget, SubnetIdx, VpcIdx};
use crate::packet::{self, build, ArpMeta, Ipv4Meta, L3Meta, ARP_REQUEST, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::policy::route_table::{self, CompiledRoutes};
use crate::policy::{network_acl, security_group::SecurityGroups, Direction, Flow};

/// The pipeline's stages, in packet-walk order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Ethernet/ARP/IPv4/transport header parsing.
    Parse,
    /// The source MAC must be the sending ENI's.
    PortSecurity,
    /// The fabric answers ARP for the router and for ENIs of the same subnet.
    ArpReply,
    /// With the check on, the source IP must be one of the sender's private IPs.
    SourceCheck,
    /// The sender's security groups and connection table.
    SgEgress,
    /// Delivery by destination MAC within a subnet (no route lookup, no ACL, as in AWS).
    Layer2,
    /// Longest-prefix match in the subnet's route table.
    RouteLookup,
    /// The sender's subnet's network ACL, outbound (only when leaving the subnet).
    NaclEgress,
    /// The receiver's subnet's network ACL, inbound (only when entering another subnet).
    NaclIngress,
    /// With the check on, the destination IP must be one of the receiver's private IPs.
    DestinationCheck,
    /// The receiver's security groups and connection table.
    SgIngress,
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
            Stage::SourceCheck => "source-check",
            Stage::SgEgress => "sg-egress",
            Stage::Layer2 => "layer2",
            Stage::RouteLookup => "route-lookup",
            Stage::NaclEgress => "nacl-egress",
            Stage::NaclIngress => "nacl-ingress",
            Stage::DestinationCheck => "destination-check",
            Stage::SgIngress => "sg-ingress",
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

/// Where an ENI's own packets of a tracked flow go: cached on its connection entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The destination ENI.
    pub to: EniIdx,
    /// Sent to the router MAC (rewrite MACs) rather than delivered at layer 2 (unchanged).
    pub routed: bool,
}

/// What the pipeline knows about one ENI, compiled from the model.
#[derive(Clone, Debug)]
struct Port {
    id: String,
    mac: Mac,
    ips: Vec<Ipv4Addr>,
    source_dest_check: bool,
    subnet: SubnetIdx,
    subnet_cidr: Cidr,
    acl: AclIdx,
    vpc: VpcIdx,
    router_mac: Mac,
    attached: bool,
}

impl Port {
    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.ips.contains(&ip)
    }
}

/// One tracked connection, as `vpclab conntrack` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionView {
    /// The ENI whose table holds it.
    pub eni: String,
    /// IP protocol number.
    pub protocol: u8,
    /// The endpoint that sent the first packet (address, port or ICMP id).
    pub initiator: (Ipv4Addr, u16),
    /// The other endpoint.
    pub responder: (Ipv4Addr, u16),
    /// State, e.g. `TcpEstablished`, `UdpStream`.
    pub state: String,
    /// Packets seen, both directions.
    pub packets: u64,
    /// Idle seconds left before it expires.
    pub expires_in_secs: u64,
}

/// What the security group stages decided for one side, before anything is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SgOutcome {
    /// An entry exists in the ENI's table.
    Tracked,
    /// An ICMP error about a tracked flow.
    Related,
    /// Allowed by a rule; `tracked` says whether to create an entry on delivery.
    NewFlow { tracked: bool },
}

/// The compiled lab, its connection tables, and the decision code that reads them.
#[derive(Debug)]
pub struct Pipeline {
    /// The model, for names in explanations (never read on the fast path).
    model: std::sync::Arc<Model>,
    ports: Vec<Port>,
    routes: Vec<CompiledRoutes>,
    vpc_cidrs: Vec<Cidr>,
    owner_by_ip: HashMap<(VpcIdx, Ipv4Addr), EniIdx>,
    owner_by_mac: HashMap<Mac, EniIdx>,
    groups: SecurityGroups,
    acls: Vec<NetworkAcl>,
    conntrack: Vec<ConnTable<Option<Hop>>>,
    generation: u64,
}

/// Continue to the next stage, or stop with a verdict.
type Step<T> = Result<T, Verdict>;

impl Pipeline {
    /// Compiles a checked model into lookup tables, with empty connection tables.
    pub fn new(model: &Model) -> Pipeline {
        let conntrack = model
            .enis
            .iter()
            .map(|e| ConnTable::new(e.connection_tracking, e.connection_tracking.max_connections as usize))
            .collect();
        let mut p = Pipeline {
            model: std::sync::Arc::new(model.clone()),
            ports: Vec::new(),
            routes: Vec::new(),
            vpc_cidrs: Vec::new(),
            owner_by_ip: HashMap::new(),
            owner_by_mac: HashMap::new(),
            groups: SecurityGroups::new(model),
            acls: Vec::new(),
            conntrack,
            generation: 0,
        };
        p.compile(model);
        p
    }

    /// Applies a changed model (same ENIs) without losing tracked connections: the generation
    /// moves on, so every flow's next packet is judged again by the new ACLs and routes.
    pub fn reconfigure(&mut self, model: &Model) {
        self.groups = SecurityGroups::new(model);
        self.compile(model);
        self.generation += 1;
    }

    fn compile(&mut self, model: &Model) {
        let mut owner_by_ip = HashMap::new();
        let mut owner_by_mac = HashMap::new();
        self.ports = model
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
                    ips: eni.private_ips().collect(),
                    source_dest_check: eni.source_dest_check,
                    subnet: eni.subnet,
                    subnet_cidr: subnet.cidr,
                    acl: subnet.network_acl,
                    vpc: subnet.vpc,
                    router_mac: model.vpcs[subnet.vpc.index()].router_mac,
                    attached: eni.attachment.is_some(),
                }
            })
            .collect();
        self.owner_by_ip = owner_by_ip;
        self.owner_by_mac = owner_by_mac;
        self.vpc_cidrs = model.vpcs.iter().map(|v| v.cidr).collect();
        self.acls = model.network_acls.clone();
        self.routes = route_table::compile_all(model);
        self.model = std::sync::Arc::new(model.clone());
    }

    /// Decides the fate of `frame`, sent by the instance on ENI `from`, rewriting it in place when
    /// the verdict is `Forward` or `Reply`, and tracking connections. Never panics on any frame.
    pub fn process<O: Observer>(&mut self, now: Duration, from: EniIdx, frame: &mut [u8], obs: &mut O) -> Verdict {
        match self.walk(now, from, frame, obs, true) {
            Ok(v) | Err(v) => v,
        }
    }

    /// Explains what would become of `frame` from `from` against the live state, stage by stage,
    /// without changing anything: no connection entry is created or refreshed.
    pub fn trace(&mut self, now: Duration, from: EniIdx, frame: &mut [u8]) -> (Verdict, Recorder) {
        let mut rec = Recorder::default();
        let v = match self.walk(now, from, frame, &mut rec, false) {
            Ok(v) | Err(v) => v,
        };
        (v, rec)
    }

    /// Reclaims expired connection entries (bounded work per table).
    pub fn handle_timeout(&mut self, now: Duration) {
        for t in &mut self.conntrack {
            t.handle_timeout(now);
        }
    }

    /// Every tracked connection, of one ENI or of all.
    pub fn connections(&self, now: Duration, eni: Option<EniIdx>) -> Vec<ConnectionView> {
        let mut out = Vec::new();
        for (i, table) in self.conntrack.iter().enumerate() {
            if eni.is_some_and(|e| e.index() != i) {
                continue;
            }
            for e in table.iter() {
                let remaining = table.remaining(now, e);
                if remaining.is_zero() {
                    continue;
                }
                let (a, b) = e.key.endpoints();
                let responder = if a == e.initiator { b } else { a };
                out.push(ConnectionView {
                    eni: self.ports[i].id.clone(),
                    protocol: e.key.protocol(),
                    initiator: e.initiator,
                    responder,
                    state: format!("{:?}", e.state),
                    packets: e.packets,
                    expires_in_secs: remaining.as_secs(),
                });
            }
        }
        out
    }

    fn walk<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        frame: &mut [u8],
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
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
            L3Meta::Arp(arp) => return self.arp_reply(from, &arp, frame, obs),
            L3Meta::Ipv4(ip) => ip,
            L3Meta::Other(ethertype) => {
                obs.record(Stage::Parse, format_args!("drop: EtherType {ethertype:#06x} is neither ARP nor IPv4"));
                return Err(Verdict::Drop(DropReason::UnsupportedEthertype));
            }
        };
        let info = packet_info(&ip);
        if commit {
            if let Some(v) = self.fast_path(now, from, &info, frame) {
                return Ok(v);
            }
        }
        let port = &self.ports[from.index()];
        if port.source_dest_check && !port.owns(ip.src) {
            obs.record(
                Stage::SourceCheck,
                format_args!("drop: {} is not a private IP of {} (source/destination check on)", ip.src, port.id),
            );
            return Err(Verdict::Drop(DropReason::SourceCheck));
        }
        if port.source_dest_check {
            obs.record(Stage::SourceCheck, format_args!("{} is {}'s", ip.src, port.id));
        } else {
            obs.record(Stage::SourceCheck, format_args!("skipped: source/destination check off on {}", port.id));
        }
        let egress = self.security_group(now, from, Direction::Egress, &ip, &info, frame, obs)?;
        let routed = meta.dst_mac == port.router_mac;
        let to = if routed { self.route_lookup(from, ip.dst, obs)? } else { self.layer2(from, meta.dst_mac, obs)? };
        let (src_port, dst_port) = (&self.ports[from.index()], &self.ports[to.index()]);
        if !dst_port.attached {
            obs.record(Stage::Deliver, format_args!("drop: {} is not attached to an instance", dst_port.id));
            return Err(Verdict::Drop(DropReason::DestinationNotAttached));
        }
        if src_port.subnet != dst_port.subnet {
            self.network_acl(from, Direction::Egress, &info.flow, obs)?;
            self.network_acl(to, Direction::Ingress, &info.flow, obs)?;
        }
        let dst_port = &self.ports[to.index()];
        if dst_port.source_dest_check && !dst_port.owns(ip.dst) {
            obs.record(
                Stage::DestinationCheck,
                format_args!("drop: {} is not a private IP of {} (source/destination check on)", ip.dst, dst_port.id),
            );
            return Err(Verdict::DropAt(DropReason::DestinationCheck, to));
        }
        if dst_port.source_dest_check {
            obs.record(Stage::DestinationCheck, format_args!("{} is {}'s", ip.dst, dst_port.id));
        } else {
            obs.record(
                Stage::DestinationCheck,
                format_args!("skipped: source/destination check off on {}", dst_port.id),
            );
        }
        let ingress = self.security_group(now, to, Direction::Ingress, &ip, &info, frame, obs)?;
        // Room on both sides before anything is committed: a refusal leaves no half-open entry,
        // and trace reports it as forwarding would.
        for (eni, outcome, stage) in [(from, egress, Stage::SgEgress), (to, ingress, Stage::SgIngress)] {
            if outcome == (SgOutcome::NewFlow { tracked: true }) && self.conntrack[eni.index()].is_full(now) {
                let port = &self.ports[eni.index()];
                let max = self.conntrack[eni.index()].max_entries();
                obs.record(stage, format_args!("drop: {}'s connection table is full ({max} connections)", port.id));
                return Err(Verdict::DropAt(DropReason::ConntrackFull, eni));
            }
        }
        let hop = Hop { to, routed };
        if commit {
            self.commit(now, from, egress, &info, Some(hop))?;
            self.commit(now, to, ingress, &info, None)?;
        }
        self.deliver(hop, frame, obs);
        Ok(Verdict::Forward(to))
    }

    /// A tracked flow whose sender-side entry caches a hop made under the current generation
    /// goes straight there; both connection entries are refreshed. `None`: take the full walk.
    fn fast_path(&mut self, now: Duration, from: EniIdx, info: &PacketInfo, frame: &mut [u8]) -> Option<Verdict> {
        // Look before touching: a packet that falls back to the full walk must update each
        // entry once, there, or TCP state would see its flags twice.
        let hop = match self.conntrack[from.index()].peek(now, info) {
            Some((e, _)) if e.generation == self.generation => e.decision?,
            _ => return None,
        };
        if hop.to != from && self.conntrack[hop.to.index()].peek(now, info).is_none() {
            // The receiver's entry expired on its own (shorter timeouts): judge afresh.
            return None;
        }
        self.conntrack[from.index()].lookup(now, info);
        if hop.to != from {
            self.conntrack[hop.to.index()].lookup(now, info);
        }
        self.deliver(hop, frame, &mut NoObserver);
        Some(Verdict::Forward(hop.to))
    }

    fn deliver<O: Observer>(&self, hop: Hop, frame: &mut [u8], obs: &mut O) {
        let dst = &self.ports[hop.to.index()];
        if hop.routed {
            // The receiver's own VPC router sends it (across a peering, that is the peer's).
            packet::set_macs(frame, dst.mac, dst.router_mac);
            obs.record(Stage::Deliver, format_args!("to {} as {} from router {}", dst.id, dst.mac, dst.router_mac));
        } else {
            obs.record(Stage::Deliver, format_args!("to {}, frame unchanged", dst.id));
        }
    }

    /// Creates the connection entry a delivered packet's new flow needs on one side, and caches
    /// the sender's hop on the sender's entry.
    fn commit(
        &mut self,
        now: Duration,
        eni: EniIdx,
        outcome: SgOutcome,
        info: &PacketInfo,
        hop: Option<Hop>,
    ) -> Step<()> {
        let generation = self.generation;
        let table = &mut self.conntrack[eni.index()];
        match outcome {
            SgOutcome::NewFlow { tracked: true } => match table.insert(now, info, hop, generation) {
                Ok(_) => Ok(()),
                Err(ConntrackFull) => Err(Verdict::DropAt(DropReason::ConntrackFull, eni)),
            },
            SgOutcome::Tracked => {
                // Refresh the entry (state, idle timer); on the sender's side, cache the hop.
                if let Some((e, _)) = table.lookup(now, info) {
                    if hop.is_some() {
                        e.decision = hop;
                        e.generation = generation;
                    }
                }
                Ok(())
            }
            SgOutcome::NewFlow { tracked: false } | SgOutcome::Related => Ok(()),
        }
    }

    /// A security group stage: an existing connection passes whatever the rules; an ICMP error
    /// about a tracked connection passes; a new flow needs an allow rule of one of the ENI's groups.
    #[allow(clippy::too_many_arguments)]
    fn security_group<O: Observer>(
        &self,
        now: Duration,
        eni: EniIdx,
        dir: Direction,
        ip: &Ipv4Meta,
        info: &PacketInfo,
        frame: &[u8],
        obs: &mut O,
    ) -> Step<SgOutcome> {
        let stage = if dir == Direction::Egress { Stage::SgEgress } else { Stage::SgIngress };
        let port = &self.ports[eni.index()];
        let table = &self.conntrack[eni.index()];
        if let Some((e, reply)) = table.peek(now, info) {
            let way = if reply { "reply" } else { "original" };
            obs.record(stage, format_args!("tracked connection of {} ({:?}, {way} direction)", port.id, e.state));
            return Ok(SgOutcome::Tracked);
        }
        if let Some(quoted) = packet::icmp_quoted(frame, ip) {
            let inner = PacketInfo {
                flow: Flow {
                    src: quoted.src,
                    dst: quoted.dst,
                    protocol: quoted.protocol,
                    src_port: quoted.l4.src_port,
                    dst_port: quoted.l4.dst_port,
                    icmp_type: quoted.l4.icmp_type,
                    icmp_code: quoted.l4.icmp_code,
                },
                icmp_id: quoted.l4.icmp_id,
                tcp_flags: 0,
            };
            if table.related(now, &inner).is_some() {
                obs.record(stage, format_args!("ICMP error about a tracked connection of {}: allowed", port.id));
                return Ok(SgOutcome::Related);
            }
        }
        let peer = if dir == Direction::Egress { "to" } else { "from" };
        let peer_ip = if dir == Direction::Egress { ip.dst } else { ip.src };
        match self.groups.allows(eni, dir, &info.flow) {
            Some(m) => {
                let tracked = !self.groups.is_untracked(eni, dir, &info.flow);
                let note = if tracked { "new tracked connection" } else { "untracked flow" };
                obs.record(stage, format_args!("{note}, allowed by {}", self.groups.describe(m, dir)));
                Ok(SgOutcome::NewFlow { tracked })
            }
            None => {
                obs.record(
                    stage,
                    format_args!(
                        "drop: no rule of {}'s security groups allows {} {peer} {peer_ip}",
                        port.id,
                        crate::policy::describe_match(
                            crate::model::Protocol::Number(info.flow.protocol),
                            flow_ports(&info.flow)
                        )
                    ),
                );
                Err(if dir == Direction::Egress {
                    Verdict::Drop(DropReason::SecurityGroupEgress)
                } else {
                    Verdict::DropAt(DropReason::SecurityGroupIngress, eni)
                })
            }
        }
    }

    /// A network ACL stage, on the subnet of `eni`.
    fn network_acl<O: Observer>(&self, eni: EniIdx, dir: Direction, flow: &Flow, obs: &mut O) -> Step<()> {
        let acl = &self.acls[self.ports[eni.index()].acl.index()];
        let d = network_acl::evaluate(acl, dir, flow);
        let text = network_acl::describe(acl, dir, d);
        let stage = if dir == Direction::Egress { Stage::NaclEgress } else { Stage::NaclIngress };
        if d.allows() {
            obs.record(stage, format_args!("{text}"));
            Ok(())
        } else {
            obs.record(stage, format_args!("drop: {text}"));
            Err(if dir == Direction::Egress {
                Verdict::Drop(DropReason::NetworkAclEgress)
            } else {
                Verdict::DropAt(DropReason::NetworkAclIngress, eni)
            })
        }
    }

    /// The fabric answers ARP: the router's MAC for the subnet router, the owner's MAC for an
    /// address of another ENI in the same subnet. Anything else goes unanswered, as on AWS. An
    /// instance cannot claim an address (or a MAC) that is not its ENI's.
    fn arp_reply<O: Observer>(&self, from: EniIdx, arp: &ArpMeta, frame: &mut [u8], obs: &mut O) -> Step<Verdict> {
        let port = &self.ports[from.index()];
        if arp.sender_mac != port.mac || !(arp.sender_ip.is_unspecified() || port.owns(arp.sender_ip)) {
            obs.record(
                Stage::ArpReply,
                format_args!("drop: ARP claims {} at {}, which is not {}'s", arp.sender_ip, arp.sender_mac, port.id),
            );
            return Err(Verdict::Drop(DropReason::ArpSpoof));
        }
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
    fn layer2<O: Observer>(&self, from: EniIdx, dst_mac: Mac, obs: &mut O) -> Step<EniIdx> {
        let port = &self.ports[from.index()];
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

    /// Frames to the router MAC are routed by the sender's subnet's route table (longest prefix):
    /// `local` to the ENI owning the address in the VPC, an ENI target to that appliance, a
    /// peering to the ENI owning the address in the peer VPC (and only there: no transit).
    fn route_lookup<O: Observer>(&self, from: EniIdx, dst: Ipv4Addr, obs: &mut O) -> Step<EniIdx> {
        let port = &self.ports[from.index()];
        let rtb = self.model.subnets[port.subnet.index()].route_table;
        let hit = self.routes[rtb.index()].lookup(dst);
        let route = route_table::describe(&self.model, rtb, dst, hit);
        let owner = |vpc: VpcIdx| self.owner_by_ip.get(&(vpc, dst)).copied();
        let drop = |obs: &mut O, why: fmt::Arguments<'_>, reason| {
            obs.record(Stage::RouteLookup, format_args!("drop: {route}: {why}"));
            Err(Verdict::Drop(reason))
        };
        let to = match hit {
            None => {
                obs.record(Stage::RouteLookup, format_args!("drop: {route}"));
                return Err(Verdict::Drop(DropReason::NoRoute));
            }
            Some((_, RouteTarget::Blackhole)) => return drop(obs, format_args!("blackhole"), DropReason::Blackhole),
            Some((_, RouteTarget::Local)) => match owner(port.vpc) {
                Some(to) => to,
                None => return drop(obs, format_args!("no ENI owns {dst}"), DropReason::NoSuchAddress),
            },
            Some((_, RouteTarget::Eni(e))) if !self.ports[e.index()].attached => {
                let id = &self.ports[e.index()].id;
                return drop(obs, format_args!("blackhole: {id} is not attached"), DropReason::Blackhole);
            }
            Some((_, RouteTarget::Eni(e))) => e,
            Some((_, RouteTarget::Peering(pcx))) => {
                let p = &self.model.peerings[pcx.index()];
                let peer = if p.requester_vpc == port.vpc { p.accepter_vpc } else { p.requester_vpc };
                let peer_cidr = self.vpc_cidrs[peer.index()];
                if !peer_cidr.contains(dst) {
                    // No transitive routing: a peering carries traffic to the peer VPC only.
                    let why = format_args!("{} reaches only {peer_cidr}", p.id);
                    return drop(obs, why, DropReason::NoRoute);
                }
                match owner(peer) {
                    Some(to) => to,
                    None => return drop(obs, format_args!("no ENI owns {dst}"), DropReason::NoSuchAddress),
                }
            }
            Some((_, target @ (RouteTarget::InternetGateway(_) | RouteTarget::NatGateway(_)))) => {
                let name = route_table::target_name(&self.model, target);
                return drop(obs, format_args!("{name} is not emulated yet"), DropReason::NoRoute);
            }
        };
        obs.record(Stage::RouteLookup, format_args!("{route}: {}", self.ports[to.index()].id));
        Ok(to)
    }
}

/// A packet as the instance on `from` would send it to `to` from its primary IP: a TCP SYN,
/// a UDP datagram, an ICMP echo request (id `src_port`), or a bare packet of another protocol.
/// It goes to the owner's MAC when `to` is an ENI of the sender's subnet, else to the router's.
pub fn synthesize_for(
    model: &Model,
    from: EniIdx,
    to: Ipv4Addr,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
) -> Vec<u8> {
    let eni = &model.enis[from.index()];
    let subnet = model.subnet_of(from);
    let router_mac = model.vpcs[subnet.vpc.index()].router_mac;
    let neighbour = model.enis.iter().find(|e| e.subnet == eni.subnet && e.private_ips().any(|ip| ip == to));
    let dst_mac = match neighbour {
        Some(n) if subnet.cidr.contains(to) => n.mac,
        _ => router_mac,
    };
    let src = eni.private_ip;
    match protocol {
        PROTO_TCP => build::tcp(dst_mac, eni.mac, src, to, src_port, dst_port, crate::conntrack::TCP_SYN, b""),
        PROTO_UDP => build::udp(dst_mac, eni.mac, src, to, src_port, dst_port, b"vpclab trace"),
        PROTO_ICMP => build::icmp_echo(dst_mac, eni.mac, src, to, src_port),
        other => build::ip_proto(dst_mac, eni.mac, src, to, other),
    }
}

/// What rules and conntrack look at in an IPv4 packet.
fn packet_info(ip: &Ipv4Meta) -> PacketInfo {
    PacketInfo {
        flow: Flow {
            src: ip.src,
            dst: ip.dst,
            protocol: ip.protocol,
            src_port: ip.l4.src_port,
            dst_port: ip.l4.dst_port,
            icmp_type: ip.l4.icmp_type,
            icmp_code: ip.l4.icmp_code,
        },
        icmp_id: ip.l4.icmp_id,
        tcp_flags: ip.l4.tcp_flags,
    }
}

/// The flow's own ports or ICMP type/code, in rule terms, for messages.
fn flow_ports(flow: &Flow) -> crate::model::PortMatch {
    use crate::model::{PortMatch, PortRange};
    match flow.protocol {
        PROTO_TCP | PROTO_UDP => PortMatch::Ports(PortRange { from: flow.dst_port, to: flow.dst_port }),
        PROTO_ICMP => PortMatch::Icmp { icmp_type: Some(flow.icmp_type), icmp_code: Some(flow.icmp_code) },
        _ => PortMatch::Any,
    }
}

#[cfg(test)]
mod tests;
