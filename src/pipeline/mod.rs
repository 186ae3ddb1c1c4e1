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
//! delivered. Each entry caches a [`Hop`] per direction: where the ENI's own packets of that flow
//! go (another ENI, out through the internet gateway or a NAT gateway), or that the gateways bring
//! the flow's packets in to this ENI. Later packets take that fast path from either side
//! (`fast_path` from an ENI, `fast_from_internet` from the internet), skipping route lookup, ACLs
//! and rules, while the entry's generation is the pipeline's and the frame goes to the MAC the hop
//! was cached for (ICMP, whose type and code ACLs match but the entry's key does not hold, always
//! takes the full walk). The TTL is never touched: the VPC router is not a hop.
//!
//! With several forwarding workers each has a pipeline of its own holding its shard of the
//! connection and NAT tables (see `dataplane::owner`); only the per-ENI connection counts are
//! shared, taken before a new flow's entry is made (`commit_shared`).
//!
//! What the VPC would not carry is judged at the edge: a packet larger than the VPC's MTU (9001,
//! [`VPC_MTU`]) is dropped as `mtu_exceeded`; headers that are odd but valid (IP options, fragments
//! at any offset) pass; headers that contradict themselves (lengths, a UDP length under 8) are
//! `malformed`.
//!
//! Live changes. A pipeline is never edited: a changed lab is compiled into a new one
//! ([`Pipeline::new`], off the packet path), which takes over the old one's live state
//! ([`Pipeline::take_state_from`]) by object id, not index: each ENI's connection table, each NAT
//! gateway's translations, the uplink gateway's MAC. Its generation is past every carried entry's,
//! so each flow's next packet takes the full walk again (cached hops name ENIs by index, which may
//! now be another ENI's): a changed network ACL applies at once while tracked connections survive
//! rule changes, as on AWS.
//!
//! A stopped instance's ENIs stay attached but carry nothing: what they send is dropped, what is
//! for them is dropped on them (both [`DropReason::InstanceStopped`]), and the fabric does not
//! answer ARP for their addresses.

mod endpoint;
mod metadata;
mod verdict;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use hashbrown::HashMap;

pub use verdict::{DropReason, EniCounters, Verdict};

use crate::conntrack::{ConnTable, ConntrackFull};
use crate::model::{
    AclIdx, Cidr, DhcpSettings, EniIdx, InstanceState, Mac, Model, NatIdx, RouteTarget, SubnetIdx, VpcIdx,
    INTERNET_GATEWAY_IP, INTERNET_MTU,
};
use crate::nat::{IgwMap, NatError, NatTable};
use crate::packet::rewrite::{self, L4Csum};
use crate::packet::{self, build, ArpMeta, Flow, IpProto, Ipv4Meta, L3Meta, TcpFlags, ARP_REQUEST, ETH_HEADER_LEN};
use crate::policy::network_acl::{self, CompiledAcl};
use crate::policy::route_table::{self, CompiledRoutes};
use crate::policy::{security_group::SecurityGroups, Direction};
use crate::services::dhcp::{self, DhcpDrop};
use crate::services::dns::{self, DnsDrop};

/// The MTU inside a VPC, as on AWS.
pub const VPC_MTU: u16 = 9001;

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
    /// The fabric answers DHCP (before source check, groups, ACLs and flow logs, as AWS does).
    DhcpReply,
    /// Traffic to the VPC router's own address: ping answered, the rest dropped.
    Router,
    /// The Amazon DNS server answers queries to base + 2 and 169.254.169.253 (before source
    /// check, groups, ACLs and flow logs, as AWS does).
    DnsReply,
    /// To the instance metadata service and back (before source check, groups, ACLs and flow
    /// logs, as AWS serves it).
    Metadata,
    /// With the check on, the source IP must be one of the sender's private IPs.
    SourceCheck,
    /// The sender's security groups and connection table.
    SgEgress,
    /// Delivery by destination MAC within a subnet (no route lookup, no ACL, as in AWS).
    Layer2,
    /// Longest-prefix match in the subnet's route table.
    RouteLookup,
    /// A NAT gateway's many-to-one translation (source ports allocated per destination).
    NatGateway,
    /// An internet gateway's 1:1 translation between private and Elastic IPs, and its MTU.
    InternetGateway,
    /// The sender's subnet's network ACL, outbound (only when leaving the subnet).
    NaclEgress,
    /// The receiver's subnet's network ACL, inbound (only when entering another subnet).
    NaclIngress,
    /// With the check on, the destination IP must be one of the receiver's private IPs.
    DestinationCheck,
    /// The receiver's security groups and connection table.
    SgIngress,
    /// A VPC endpoint carries the packet to or from its service's host.
    VpcEndpoint,
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
            Stage::DhcpReply => "dhcp-reply",
            Stage::Router => "router",
            Stage::DnsReply => "dns-reply",
            Stage::Metadata => "metadata",
            Stage::SourceCheck => "source-check",
            Stage::SgEgress => "sg-egress",
            Stage::Layer2 => "layer2",
            Stage::RouteLookup => "route-lookup",
            Stage::NatGateway => "nat-gateway",
            Stage::InternetGateway => "internet-gateway",
            Stage::NaclEgress => "nacl-egress",
            Stage::NaclIngress => "nacl-ingress",
            Stage::DestinationCheck => "destination-check",
            Stage::SgIngress => "sg-ingress",
            Stage::VpcEndpoint => "vpc-endpoint",
            Stage::Deliver => "deliver",
        }
    }
}

/// Told what each stage decided. The forwarding path uses [`NoObserver`], which compiles away.
pub trait Observer {
    /// Stage `stage` ran and decided `detail`.
    fn record(&mut self, stage: Stage, detail: fmt::Arguments<'_>);

    /// The packet reached NAT gateway `n`'s interface (captures and flow logs of a NAT gateway
    /// want to know): past the sender's subnet, before the NAT gateway's subnet ACL.
    #[inline(always)]
    fn nat_gateway(&mut self, _n: NatIdx) {}
}

/// The observer of a frame whose NAT gateway a flow log wants: notes the NAT gateway the packet
/// reached and formats nothing, so forwarding pays one store.
#[derive(Clone, Copy, Debug, Default)]
pub struct NatReached(pub Option<NatIdx>);

impl Observer for NatReached {
    #[inline(always)]
    fn record(&mut self, _: Stage, _: fmt::Arguments<'_>) {}

    #[inline(always)]
    fn nat_gateway(&mut self, n: NatIdx) {
        self.0 = Some(n);
    }
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

/// Where the packets of a tracked flow go, cached on the connection entry of the ENI whose table
/// holds it: for the ENI's own packets, the next ENI or gateway; for packets the gateways bring
/// in, that they are delivered to this ENI. Each variant is followed only from the side it was
/// cached for (an ENI's port, or the internet's), so a packet never takes a hop meant for the
/// other side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// To another ENI (or the sender itself, an appliance).
    Eni {
        /// The destination ENI.
        to: EniIdx,
        /// Sent to the router MAC (rewrite MACs) rather than delivered at layer 2 (unchanged).
        routed: bool,
    },
    /// Out through the internet gateway, the source becoming `public` (the sender's Elastic IP).
    Internet {
        /// The sender's Elastic IP.
        public: Ipv4Addr,
    },
    /// Out through a NAT gateway (its translation is refreshed, and must still be live).
    Nat(NatIdx),
    /// In from the internet through the internet gateway, to this ENI.
    FromInternet,
    /// In from the internet through a NAT gateway's translation, to this ENI.
    FromNat(NatIdx),
    /// Out through a gateway VPC endpoint to its service's host, untranslated.
    GatewayEndpoint,
}

type Hops = [Option<Hop>; 2];

/// A NAT gateway as its fast paths see it.
#[derive(Clone, Copy, Debug)]
struct NatEdge {
    /// The VPC of its subnet, where the inside addresses it translates back to live.
    vpc: VpcIdx,
    /// Its Elastic IP, the source its traffic leaves with.
    public: Option<Ipv4Addr>,
}

/// What the fast path found for a packet: where it goes, with what its rewrite needs.
#[derive(Clone, Copy, Debug)]
enum Fast {
    /// To an ENI, routed or at layer 2 (what the gateways bring in is routed).
    Eni(EniIdx, bool),
    /// Out through the internet gateway as this Elastic IP.
    Internet(Ipv4Addr),
    /// Out through a NAT gateway as its Elastic IP and this port.
    Nat(NatIdx, Ipv4Addr, u16),
    /// Out through a gateway VPC endpoint, untranslated.
    GatewayEndpoint,
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
    /// Its VPC's DNS server: base + 2.
    resolver: Ipv4Addr,
    attached: bool,
    /// Attached to a stopped instance: carries nothing either way.
    stopped: bool,
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
    /// IP protocol (a number in JSON).
    pub protocol: IpProto,
    /// The endpoint that sent the first packet (address, port or ICMP id).
    pub initiator: (Ipv4Addr, u16),
    /// The other endpoint.
    pub responder: (Ipv4Addr, u16),
    /// For a NAT gateway's translation: the address and port the initiator appears as.
    pub translated: Option<(Ipv4Addr, u16)>,
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

/// What a TAP's virtio-net header says about a frame (`dataplane::tap` reads it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// The L4 checksum field holds only the pseudo-header sum (NEEDS_CSUM).
    pub csum_partial: bool,
    /// For a TSO/USO superframe: the payload size of each segment it becomes on the wire.
    pub gso_size: Option<u16>,
}

impl Offload {
    fn csum(self) -> L4Csum {
        if self.csum_partial {
            L4Csum::Partial
        } else {
            L4Csum::Full
        }
    }
}

/// Where a packet arriving at an ENI comes from, for the receiver-side stages.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// Another ENI, with what its security group stage decided.
    Eni(EniIdx, SgOutcome),
    /// The internet, through the internet gateway.
    Internet,
    /// The internet, translated back by this NAT gateway in this subnet.
    Nat(SubnetIdx, NatIdx),
    /// A traffic mirror copy made for this source ENI: sent from its address, not judged by its
    /// groups, and tracking nothing on its side.
    Mirror(EniIdx),
    /// A VPC endpoint's service host answering: through an interface endpoint's interface in
    /// this subnet, or (`None`) through a gateway endpoint.
    Endpoint(Option<SubnetIdx>),
}

/// Where the route lookup sends a packet.
#[derive(Clone, Copy, Debug)]
enum Next {
    Eni(EniIdx),
    InternetGateway,
    NatGateway(NatIdx),
    /// A gateway VPC endpoint (its prefix list's route).
    GatewayEndpoint(crate::model::VpceIdx),
    /// The address of an interface endpoint's interface.
    InterfaceEndpoint(Ipv4Addr),
}

/// A snapshot of the pipeline's own state for metrics ([`Pipeline::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Each ENI's connection table, by ENI index.
    pub conntrack: Vec<TableSize>,
    /// Each NAT gateway's counters, by NAT gateway index.
    pub nat_gateways: Vec<crate::nat::NatCounters>,
}

/// How full one connection table is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSize {
    /// Entries held (expired ones awaiting the next reclaim, at most a second, included).
    pub entries: u64,
    /// The bound (`connection_tracking.max_connections`).
    pub max_entries: u64,
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
    acls: Vec<CompiledAcl>,
    conntrack: Vec<ConnTable<Hops>>,
    igw: IgwMap,
    nats: Vec<NatTable>,
    /// By NAT gateway index: what its fast paths need.
    nat_edges: Vec<NatEdge>,
    /// The internet side: the MAC the lab sends from, the MAC it sends to (the emulated
    /// internet's interface, or the uplink's gateway, learned by ARP), the uplink's gateway.
    inet_own_mac: Mac,
    inet_peer_mac: PeerMac,
    uplink_gateway: Option<Ipv4Addr>,
    generation: u64,
    /// By VPC index: what its DHCP server hands out.
    dhcp: Vec<DhcpSettings>,
    /// What the Amazon DNS server answers, and by VPC index whether it answers there at all.
    dns_names: dns::Names,
    dns_support: Vec<bool>,
    /// By ENI index: its allowance of packets to the DNS server.
    dns_limits: Vec<dns::RateLimit>,
    /// The link to the service namespace (instance metadata).
    service: metadata::ServiceLink,
    /// The last fabric answer too long to be written over its request (see [`Verdict::ReplyWith`]).
    answer: Vec<u8>,
    /// This pipeline's part when several workers forward the lab; `None` with one worker.
    shard: Option<Box<Shard>>,
    /// The VPC endpoints' tables (empty in a lab without endpoints).
    endpoints: endpoint::Endpoints,
}

/// The MAC the internet side sends to, shared by every worker's pipeline: only the worker that
/// reads the uplink gateway's ARP relearns it, and every worker sends to it.
#[derive(Clone)]
struct PeerMac(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl fmt::Debug for PeerMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl PeerMac {
    fn new(mac: Mac) -> PeerMac {
        let p = PeerMac(Default::default());
        p.set(mac);
        p
    }

    fn get(&self) -> Mac {
        let bytes = self.0.load(std::sync::atomic::Ordering::Relaxed).to_le_bytes();
        Mac(bytes[..6].try_into().expect("six of eight bytes"))
    }

    fn set(&self, mac: Mac) {
        let mut bytes = [0; 8];
        bytes[..6].copy_from_slice(&mac.0);
        self.0.store(u64::from_le_bytes(bytes), std::sync::atomic::Ordering::Relaxed);
    }
}

/// A worker's part of a lab forwarded by several workers (`dataplane::owner` says which worker
/// judges which frame): its NAT tables allocate its residue class of ports, and its connection
/// tables count their entries in totals shared by every worker, so each ENI's
/// `max_connections` bounds the sum of the workers' tables exactly.
#[derive(Debug)]
struct Shard {
    /// Per ENI (by index): tracked connections over every worker's table.
    counts: Vec<std::sync::Arc<std::sync::atomic::AtomicU32>>,
    /// Per ENI: what this worker's table has added to `counts` (its length when last settled).
    published: Vec<u32>,
}

/// Continue to the next stage, or stop with a verdict.
type Step<T> = Result<T, Verdict>;

/// The id of the last port of every pipeline: the internet side (emulated, or an uplink).
pub const INTERNET_PORT: &str = "internet";

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
            igw: IgwMap::new(model),
            nat_edges: Vec::new(),
            nats: model
                .nat_gateways
                .iter()
                .map(|n| {
                    let mut table = NatTable::new(
                        n.private_ip,
                        n.ports.from..=n.ports.to,
                        crate::nat::AWS_MAX_PER_DESTINATION,
                        crate::nat::AWS_IDLE_TIMEOUT,
                    );
                    table.set_preserve_ports(n.preserve_ports);
                    table
                })
                .collect(),
            inet_own_mac: model.internet_gateway_mac(),
            inet_peer_mac: PeerMac::new(model.internet_host_mac()),
            uplink_gateway: model.uplink.as_ref().map(|u| u.gateway),
            generation: 0,
            dhcp: Vec::new(),
            dns_names: dns::Names::default(),
            dns_support: Vec::new(),
            dns_limits: vec![dns::RateLimit::default(); model.enis.len()],
            service: metadata::ServiceLink::new(model),
            answer: Vec::new(),
            shard: None,
            endpoints: endpoint::Endpoints::default(),
        };
        if model.uplink.is_some() {
            // Unknown until `set_uplink_gateway_mac`; broadcast meanwhile rather than nothing.
            p.inet_own_mac = model.uplink_mac();
            p.inet_peer_mac = PeerMac::new(Mac([0xff; 6]));
        }
        p.compile(model);
        p
    }

    /// The port ids by port index: the model's ENI ids in order, then [`INTERNET_PORT`] (the
    /// last port is always the internet's, even in a lab without an internet side).
    pub fn port_ids(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.id.clone()).chain(std::iter::once(INTERNET_PORT.to_string())).collect()
    }

    /// A pipeline compiled from the same model, with empty tables, sharing the uplink gateway's
    /// MAC with this one: another worker's.
    pub fn replica(&self) -> Pipeline {
        let mut p = Pipeline::new(&self.model);
        p.inet_peer_mac = self.inet_peer_mac.clone();
        p
    }

    /// Makes this pipeline worker `worker`'s of `workers` (see [`Shard`]): `counts` holds, per ENI
    /// of the model by index, the connections tracked for it by every worker, shared by all of
    /// them. Called before the pipeline forwards or takes state over.
    pub fn set_shard(
        &mut self,
        worker: usize,
        workers: usize,
        counts: Vec<std::sync::Arc<std::sync::atomic::AtomicU32>>,
    ) {
        assert_eq!(counts.len(), self.conntrack.len(), "one shared count per ENI");
        let (worker, workers) = (worker as u16, workers.max(1) as u16);
        for t in &mut self.nats {
            t.set_share(worker, workers);
        }
        let published = vec![0; counts.len()];
        self.shard = Some(Box::new(Shard { counts, published }));
    }

    /// With a shard: brings ENI `eni`'s shared count up to date with its table's length.
    fn settle(&mut self, eni: usize) {
        let Some(shard) = &mut self.shard else { return };
        let len = self.conntrack[eni].len() as u32;
        let was = std::mem::replace(&mut shard.published[eni], len);
        let count = &shard.counts[eni];
        if len < was {
            count.fetch_sub(was - len, std::sync::atomic::Ordering::Relaxed);
        } else if len > was {
            count.fetch_add(len - was, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[cold]
    #[inline(never)]
    /// With a shard: takes one of ENI `eni`'s connection slots, counted over every worker;
    /// false when all are taken (after this worker reclaimed its own expired entries).
    fn reserve(&mut self, now: Duration, eni: usize) -> bool {
        use std::sync::atomic::Ordering;
        if self.shard_full(now, eni) {
            return false;
        }
        let Some(shard) = &mut self.shard else { return true };
        let max = self.conntrack[eni].max_entries() as u32;
        let count = &shard.counts[eni];
        let taken = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| (c < max).then_some(c + 1)).is_ok();
        if taken {
            shard.published[eni] += 1;
        }
        taken
    }

    /// With a shard: whether ENI `eni` has no connection slot left over every worker, after
    /// this worker reclaimed its own expired entries. Entries expired on another worker free
    /// their slot at that worker's next housekeeping (at most a second later).
    #[cold]
    #[inline(never)]
    fn shard_full(&mut self, now: Duration, eni: usize) -> bool {
        use std::sync::atomic::Ordering;
        let Some(shard) = &self.shard else { return false };
        let max = self.conntrack[eni].max_entries() as u32;
        if shard.counts[eni].load(Ordering::Relaxed) < max {
            return false;
        }
        self.conntrack[eni].handle_timeout(now);
        self.settle(eni);
        self.shard.as_ref().is_some_and(|s| s.counts[eni].load(Ordering::Relaxed) >= max)
    }

    /// The model this pipeline was compiled from.
    pub fn model(&self) -> &std::sync::Arc<Model> {
        &self.model
    }

    /// A traffic mirror copy (a VXLAN packet from `source`'s primary IP to `target`'s) on its
    /// way to the target: routed by `source`'s subnet's route table, which must lead to
    /// `target`, then judged as any packet arriving there (network ACLs when it crosses subnets,
    /// the target's groups and connection table), but not by the source's groups: AWS does not
    /// apply them to mirrored traffic. Rewrites the MACs as the fabric delivers it.
    pub fn process_mirror<O: Observer>(
        &mut self,
        now: Duration,
        source: EniIdx,
        target: EniIdx,
        frame: &mut [u8],
        obs: &mut O,
    ) -> Verdict {
        match self.walk_mirror(now, source, target, frame, obs) {
            Ok(v) | Err(v) => v,
        }
    }

    fn walk_mirror<O: Observer>(
        &mut self,
        now: Duration,
        source: EniIdx,
        target: EniIdx,
        frame: &mut [u8],
        obs: &mut O,
    ) -> Step<Verdict> {
        let ip = match packet::parse(frame).map(|m| m.l3) {
            Ok(L3Meta::Ipv4(ip)) => ip,
            _ => {
                obs.record(Stage::Parse, format_args!("drop: a mirror copy is an IPv4 packet"));
                return Err(Verdict::DropAt(DropReason::Malformed, target));
            }
        };
        within_vpc_mtu(&ip, frame, Offload::default(), obs)?;
        match self.route_lookup(source, ip.flow.dst, obs) {
            Ok(Next::Eni(to)) if to == target => {}
            Ok(_) => {
                obs.record(Stage::RouteLookup, format_args!("drop: the route does not lead to the mirror target"));
                return Err(Verdict::DropAt(DropReason::NoRoute, target));
            }
            Err(v) => return Err(Verdict::DropAt(v.drop_reason().unwrap_or(DropReason::NoRoute), target)),
        }
        let info = ip.flow;
        self.arrive(now, Source::Mirror(source), target, true, &ip, &info, frame, obs, true)
    }

    /// The NAT gateway ids by NAT gateway index.
    pub fn nat_ids(&self) -> Vec<String> {
        self.model.nat_gateways.iter().map(|n| n.id.clone()).collect()
    }

    /// The configuration generation: a hop cached under another one is never followed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes over the live state of `old`, the pipeline this freshly compiled one replaces,
    /// re-keyed by id (ENIs may have been added, removed or reordered):
    ///
    /// - each ENI's connection table, with this model's `connection_tracking` for that ENI
    ///   (changed timeouts apply to existing entries at once; under a lowered `max_connections`
    ///   existing entries stay until they expire while new connections are refused). An ENI new
    ///   in this model keeps its empty table;
    /// - each NAT gateway's translations, with this model's port range for new ones (a NAT
    ///   gateway whose private IP changed, which AWS does not allow, starts afresh);
    /// - the uplink gateway's MAC learnt so far, if the uplink's gateway is the same.
    ///
    /// State of objects that are gone stays in `old`, which is left consistent (holding the
    /// empty tables this one was built with) and is meant to be dropped, off the packet path: its
    /// tables own memory. The generation moves past `old`'s, so no hop cached on a carried entry
    /// is followed: each flow's next packet takes the full walk.
    ///
    /// Cost: O(ENIs + NAT gateways), plus O(entries) for a table whose timeouts changed (its
    /// earliest deadline is recomputed).
    pub fn take_state_from(&mut self, old: &mut Pipeline) {
        for j in 0..old.conntrack.len() {
            old.settle(j);
        }
        let old_enis: HashMap<&str, usize> = old.ports.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
        for i in 0..self.ports.len() {
            let Some(&j) = old_enis.get(self.ports[i].id.as_str()) else { continue };
            std::mem::swap(&mut self.conntrack[i], &mut old.conntrack[j]);
            self.dns_limits[i] = old.dns_limits[j];
            let config = self.model.enis[i].connection_tracking;
            let table = &mut self.conntrack[i];
            table.set_timeouts(config);
            table.set_max_entries(config.max_connections as usize);
            // Its entries are counted already: the shared count of an ENI id is the same one.
            let len = table.len() as u32;
            if let Some(shard) = &mut self.shard {
                shard.published[i] = len;
            }
            if let Some(shard) = &mut old.shard {
                shard.published[j] = 0;
            }
        }
        let old_nats: HashMap<&str, usize> =
            old.model.nat_gateways.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        for (i, nat) in self.model.nat_gateways.iter().enumerate() {
            let Some(&j) = old_nats.get(nat.id.as_str()) else { continue };
            if old.nats[j].nat_ip() != nat.private_ip {
                continue;
            }
            std::mem::swap(&mut self.nats[i], &mut old.nats[j]);
            self.nats[i].set_ports(nat.ports.from..=nat.ports.to);
            self.nats[i].set_preserve_ports(nat.preserve_ports);
        }
        if self.uplink_gateway.is_some() && self.uplink_gateway == old.uplink_gateway {
            self.inet_peer_mac = old.inet_peer_mac.clone();
        }
        // Past every carried entry's generation (all are <= old's), whatever either was.
        self.generation = self.generation.max(old.generation) + 1;
    }

    fn compile(&mut self, model: &Model) {
        let mut owner_by_ip = HashMap::new();
        let mut owner_by_mac = HashMap::new();
        self.dhcp = (0..model.vpcs.len()).map(|v| model.dhcp_settings(VpcIdx(v as u32))).collect();
        self.dns_names = dns::Names::new(model);
        self.dns_support = model.vpcs.iter().map(|v| v.enable_dns_support).collect();
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
                    resolver: model.vpcs[subnet.vpc.index()].cidr.nth(2),
                    attached: eni.attachment.is_some(),
                    stopped: eni
                        .attachment
                        .is_some_and(|a| model.instances[a.instance.index()].state == InstanceState::Stopped),
                }
            })
            .collect();
        self.owner_by_ip = owner_by_ip;
        self.owner_by_mac = owner_by_mac;
        self.vpc_cidrs = model.vpcs.iter().map(|v| v.cidr).collect();
        self.acls = model.network_acls.iter().map(CompiledAcl::new).collect();
        self.routes = route_table::compile_all(model);
        self.igw = IgwMap::new(model);
        self.nat_edges = model
            .nat_gateways
            .iter()
            .map(|n| {
                let vpc = model.subnets[n.subnet.index()].vpc;
                NatEdge { vpc, public: self.igw.public_of(vpc, n.private_ip) }
            })
            .collect();
        self.endpoints = endpoint::Endpoints::new(model);
        self.model = std::sync::Arc::new(model.clone());
    }

    /// Decides the fate of `frame`, sent by the instance on ENI `from`, rewriting it in place when
    /// the verdict is `Forward` or `Reply`, and tracking connections. Never panics on any frame.
    pub fn process<O: Observer>(&mut self, now: Duration, from: EniIdx, frame: &mut [u8], obs: &mut O) -> Verdict {
        self.process_offloaded(now, from, frame, Offload::default(), obs)
    }

    /// [`process`](Self::process) for a frame with offload information from its TAP.
    pub fn process_offloaded<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
    ) -> Verdict {
        match self.walk_out(now, from, frame, off, obs, true) {
            Ok(v) | Err(v) => v,
        }
    }

    /// A frame from the emulated internet (its TAP).
    pub fn process_internet<O: Observer>(
        &mut self,
        now: Duration,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
    ) -> Verdict {
        match self.walk_internet(now, frame, off, obs, true) {
            Ok(v) | Err(v) => v,
        }
    }

    /// [`trace`](Self::trace) for a frame from the internet.
    pub fn trace_internet(&mut self, now: Duration, frame: &mut [u8]) -> (Verdict, Recorder) {
        let mut rec = Recorder::default();
        let v = match self.walk_internet(now, frame, Offload::default(), &mut rec, false) {
            Ok(v) | Err(v) => v,
        };
        (v, rec)
    }

    /// Explains what would become of `frame` from `from` against the live state, stage by stage,
    /// without changing anything: no connection entry is created or refreshed.
    pub fn trace(&mut self, now: Duration, from: EniIdx, frame: &mut [u8]) -> (Verdict, Recorder) {
        let mut rec = Recorder::default();
        let v = match self.walk_out(now, from, frame, Offload::default(), &mut rec, false) {
            Ok(v) | Err(v) => v,
        };
        (v, rec)
    }

    /// The uplink gateway's MAC, resolved before forwarding starts (and relearned from its ARP).
    pub fn set_uplink_gateway_mac(&mut self, mac: Mac) {
        self.inet_peer_mac.set(mac);
    }

    /// Reclaims expired connection entries (bounded work per table).
    pub fn handle_timeout(&mut self, now: Duration) {
        for i in 0..self.conntrack.len() {
            self.conntrack[i].handle_timeout(now);
            self.settle(i);
        }
        for t in &mut self.nats {
            t.handle_timeout(now);
        }
    }

    /// Bytes the state tables have allocated: `(connection tables, NAT gateway tables)`, summed
    /// over ENIs and NAT gateways (see [`ConnTable::heap_bytes`], [`NatTable::heap_bytes`]). What
    /// the benchmark counts per flow; O(ENIs + NAT gateways).
    pub fn table_bytes(&self) -> (usize, usize) {
        (self.conntrack.iter().map(ConnTable::heap_bytes).sum(), self.nats.iter().map(NatTable::heap_bytes).sum())
    }

    /// What metrics read besides the data plane's port counters: each ENI's connection table
    /// (entries held, bound) and each NAT gateway's counters, by model index. O(ENIs + NAT
    /// gateways): no table is scanned.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            conntrack: self
                .conntrack
                .iter()
                .map(|t| TableSize { entries: t.len() as u64, max_entries: t.max_entries() as u64 })
                .collect(),
            nat_gateways: self.nats.iter().map(NatTable::counters).collect(),
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
                let responder = if a == e.initiator() { b } else { a };
                out.push(ConnectionView {
                    translated: None,
                    eni: self.ports[i].id.clone(),
                    protocol: e.key.protocol(),
                    initiator: e.initiator(),
                    responder,
                    state: format!("{:?}", e.state),
                    packets: e.packets(),
                    expires_in_secs: remaining.as_secs(),
                });
            }
        }
        if eni.is_none() {
            for (n, table) in self.nats.iter().enumerate() {
                let nat = &self.model.nat_gateways[n];
                for m in table.mappings() {
                    let remaining = table.remaining(now, m);
                    if remaining.is_zero() {
                        continue;
                    }
                    out.push(ConnectionView {
                        eni: nat.id.clone(),
                        protocol: m.protocol,
                        initiator: m.inside,
                        responder: m.remote,
                        translated: Some((nat.private_ip, m.outside_port)),
                        state: "Translated".into(),
                        packets: m.packets,
                        expires_in_secs: remaining.as_secs(),
                    });
                }
            }
        }
        out
    }

    /// [`walk`](Self::walk), and for a packet that left through the internet gateway towards one
    /// of the lab's own public addresses (an Elastic IP, a NAT gateway's), its way back in through
    /// the gateway, as on AWS: the receiver sees the public source, and its subnet's ACL and its
    /// groups judge that. The packet never reaches the internet side, so this holds in the
    /// emulated internet and with an uplink alike.
    fn walk_out<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let verdict = self.walk(now, from, frame, off, obs, commit)?;
        if verdict != Verdict::ToInternet {
            return Ok(verdict);
        }
        let Some(dst) = packet::ipv4_dst(frame) else { return Ok(verdict) };
        if !self.igw.in_use(dst) {
            return Ok(verdict);
        }
        obs.record(
            Stage::InternetGateway,
            format_args!("hairpin: {dst} is this lab's own public address: back in through the internet gateway"),
        );
        let Ok(packet::PacketMeta { l3: L3Meta::Ipv4(ip), .. }) = packet::parse(frame) else {
            return Err(Verdict::Drop(DropReason::Malformed));
        };
        self.walk_internet_ipv4(now, &ip, frame, off, obs, commit)
    }

    fn walk<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let port = &self.ports[from.index()];
        if port.stopped {
            obs.record(
                Stage::PortSecurity,
                format_args!(
                    "drop: {}'s instance {} is stopped: its ENIs carry nothing",
                    port.id,
                    self.instance_of(from)
                ),
            );
            return Err(Verdict::Drop(DropReason::InstanceStopped));
        }
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
        let port = &self.ports[from.index()];
        if dhcp::is_request(&ip, port.subnet_cidr) {
            return self.dhcp_reply(from, &ip, meta.src_mac, frame, obs);
        }
        if dns::is_for_resolver(ip.flow.dst, port.resolver) {
            return self.dns_reply(now, from, &ip, frame, obs, commit);
        }
        if ip.flow.dst == port.subnet_cidr.router() {
            return self.to_router(from, &ip, frame, obs);
        }
        if metadata::is_metadata(ip.flow.dst) {
            return self.to_metadata(from, &ip, frame, off, obs);
        }
        within_vpc_mtu(&ip, frame, off, obs)?;
        let info = ip.flow;
        if commit {
            if let Some(v) = self.fast_path(now, from, &ip, frame, off, obs) {
                return Ok(v);
            }
        }
        let port = &self.ports[from.index()];
        if port.source_dest_check && !port.owns(ip.flow.src) {
            obs.record(
                Stage::SourceCheck,
                format_args!("drop: {} is not a private IP of {} (source/destination check on)", ip.flow.src, port.id),
            );
            return Err(Verdict::Drop(DropReason::SourceCheck));
        }
        if port.source_dest_check {
            obs.record(Stage::SourceCheck, format_args!("{} is {}'s", ip.flow.src, port.id));
        } else {
            obs.record(Stage::SourceCheck, format_args!("skipped: source/destination check off on {}", port.id));
        }
        let egress = self.security_group(now, from, Direction::Egress, &ip, &info, frame, obs)?;
        let routed = meta.dst_mac == port.router_mac;
        let (next, rewrite_macs) = if routed {
            (self.route_lookup(from, ip.flow.dst, obs)?, true)
        } else if let Some(addr) = self.endpoints.interface_of_mac(meta.dst_mac) {
            (self.interface_in_subnet(from, meta.dst_mac, addr, obs)?, true)
        } else {
            let (to, by_address) = self.layer2(from, meta.dst_mac, ip.flow.dst, obs)?;
            (Next::Eni(to), by_address)
        };
        match next {
            Next::Eni(to) => {
                self.arrive(now, Source::Eni(from, egress), to, rewrite_macs, &ip, &info, frame, obs, commit)
            }
            Next::InternetGateway => self.towards_internet(now, from, egress, &ip, &info, frame, off, obs, commit),
            Next::NatGateway(n) => self.via_nat(now, from, egress, n, &ip, &info, frame, off, obs, commit),
            Next::GatewayEndpoint(e) => {
                self.via_gateway_endpoint(now, from, egress, e, &ip, &info, frame, off, obs, commit)
            }
            Next::InterfaceEndpoint(addr) => {
                self.via_interface_endpoint(now, from, egress, addr, &ip, &info, frame, off, obs, commit)
            }
        }
    }

    /// The receiver's side: network ACLs when the packet crosses into another subnet, the
    /// destination check, the receiver's security groups, room in both connection tables, and
    /// only then the commit and the delivery.
    #[allow(clippy::too_many_arguments)]
    fn arrive<O: Observer>(
        &mut self,
        now: Duration,
        source: Source,
        to: EniIdx,
        routed: bool,
        ip: &Ipv4Meta,
        info: &Flow,
        frame: &mut [u8],
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let dst_port = &self.ports[to.index()];
        if !dst_port.attached {
            obs.record(Stage::Deliver, format_args!("drop: {} is not attached to an instance", dst_port.id));
            return Err(Verdict::Drop(DropReason::DestinationNotAttached));
        }
        if dst_port.stopped {
            obs.record(
                Stage::Deliver,
                format_args!(
                    "drop: {}'s instance {} is stopped: its ENIs carry nothing",
                    dst_port.id,
                    self.instance_of(to)
                ),
            );
            return Err(Verdict::DropAt(DropReason::InstanceStopped, to));
        }
        let (dst_subnet, dst_acl) = (dst_port.subnet, dst_port.acl);
        let src_subnet = match source {
            Source::Eni(e, _) => Some(self.ports[e.index()].subnet),
            Source::Nat(s, _) => Some(s),
            Source::Mirror(e) => Some(self.ports[e.index()].subnet),
            Source::Internet => None,
            Source::Endpoint(s) => s,
        };
        if src_subnet != Some(dst_subnet) {
            if let Some(s) = src_subnet {
                let acl = self.model.subnets[s.index()].network_acl;
                self.network_acl(acl, Direction::Egress, info, None, obs)?;
            }
            self.network_acl(dst_acl, Direction::Ingress, info, Some(to), obs)?;
        }
        let dst_port = &self.ports[to.index()];
        if dst_port.source_dest_check && !dst_port.owns(ip.flow.dst) {
            obs.record(
                Stage::DestinationCheck,
                format_args!(
                    "drop: {} is not a private IP of {} (source/destination check on)",
                    ip.flow.dst, dst_port.id
                ),
            );
            return Err(Verdict::DropAt(DropReason::DestinationCheck, to));
        }
        if dst_port.source_dest_check {
            obs.record(Stage::DestinationCheck, format_args!("{} is {}'s", ip.flow.dst, dst_port.id));
        } else {
            obs.record(
                Stage::DestinationCheck,
                format_args!("skipped: source/destination check off on {}", dst_port.id),
            );
        }
        let ingress = self.security_group(now, to, Direction::Ingress, ip, info, frame, obs)?;
        // Room on both sides before anything is committed: a refusal leaves no half-open entry,
        // and trace reports it as forwarding would.
        if let Source::Eni(from, egress) = source {
            self.room(now, from, egress, Stage::SgEgress, obs)?;
        }
        self.room(now, to, ingress, Stage::SgIngress, obs)?;
        if commit {
            if let Source::Eni(from, egress) = source {
                self.commit_either(now, from, egress, info, Some(Hop::Eni { to, routed }))?;
            }
            // What the gateways bring in is cached on the receiver's entry: it has no sender's.
            let inbound = match source {
                Source::Internet => Some(Hop::FromInternet),
                Source::Nat(_, n) => Some(Hop::FromNat(n)),
                Source::Eni(..) | Source::Mirror(_) | Source::Endpoint(_) => None,
            };
            self.commit_either(now, to, ingress, info, inbound)?;
        }
        self.deliver(to, routed, frame, obs);
        Ok(Verdict::Forward(to))
    }

    /// Whether `eni`'s table can take the new connection `outcome` would create.
    fn room<O: Observer>(
        &mut self,
        now: Duration,
        eni: EniIdx,
        outcome: SgOutcome,
        stage: Stage,
        obs: &mut O,
    ) -> Step<()> {
        let new = outcome == (SgOutcome::NewFlow { tracked: true });
        let full = new
            && match self.shard {
                None => self.conntrack[eni.index()].is_full(now),
                Some(_) => self.shard_full(now, eni.index()),
            };
        if full {
            let port = &self.ports[eni.index()];
            let max = self.conntrack[eni.index()].max_entries();
            obs.record(stage, format_args!("drop: {}'s connection table is full ({max} connections)", port.id));
            return Err(Verdict::DropAt(DropReason::ConntrackFull, eni));
        }
        Ok(())
    }

    /// Towards the internet gateway: the packet leaves the subnet (its ACL), its source must have
    /// an Elastic IP (1:1 translation), and it must fit the internet's MTU.
    #[allow(clippy::too_many_arguments)]
    fn towards_internet<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        egress: SgOutcome,
        ip: &Ipv4Meta,
        info: &Flow,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let (acl, vpc) = (self.ports[from.index()].acl, self.ports[from.index()].vpc);
        self.network_acl(acl, Direction::Egress, info, None, obs)?;
        let Some(public) = self.igw.public_of(vpc, ip.flow.src) else {
            obs.record(
                Stage::InternetGateway,
                format_args!(
                    "drop: {} has no Elastic or public IP, so it cannot use the internet gateway",
                    ip.flow.src
                ),
            );
            return Err(Verdict::Drop(DropReason::NoPublicAddress));
        };
        self.internet_exists(obs)?;
        self.check_mtu(from, ip, frame, off, obs)?;
        self.room(now, from, egress, Stage::SgEgress, obs)?;
        if commit {
            self.commit_either(now, from, egress, info, Some(Hop::Internet { public }))?;
        }
        obs.record(Stage::InternetGateway, format_args!("source {} -> {public} (its Elastic IP)", ip.flow.src));
        if let Some(q) = packet::icmp_quoted(frame, ip) {
            // An ICMP error about a packet that came in through the gateway quotes the private
            // address it was delivered to: show the internet the address it sent to.
            if q.dst == ip.flow.src {
                rewrite::set_quoted_dst(frame, ip, public, None);
            }
        }
        rewrite::set_src_ip(frame, ip, public, off.csum());
        packet::set_macs(frame, self.inet_peer_mac.get(), self.inet_own_mac);
        Ok(Verdict::ToInternet)
    }

    fn internet_exists<O: Observer>(&self, obs: &mut O) -> Step<()> {
        if self.model.has_internet() {
            return Ok(());
        }
        // The same rule as the route lookup's: an internet gateway without an internet behind it.
        obs.record(Stage::InternetGateway, format_args!("drop: blackhole: the lab has no internet side"));
        Err(Verdict::Drop(DropReason::Blackhole))
    }

    /// Towards the internet the MTU is 1500: a larger packet with DF set is answered with ICMP
    /// fragmentation needed (RFC 1191) from the sender's subnet router, so PMTU discovery works;
    /// without DF it is dropped (vpclab does not fragment). A TSO superframe is judged by the size
    /// of the segments it becomes.
    fn check_mtu<O: Observer>(
        &self,
        from: EniIdx,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
    ) -> Step<()> {
        let wire = wire_size(ip, frame, off);
        if wire <= INTERNET_MTU {
            return Ok(());
        }
        let dont_fragment = frame.get(ETH_HEADER_LEN + 6).is_some_and(|b| b & 0x40 != 0);
        if !dont_fragment {
            obs.record(Stage::InternetGateway, format_args!("drop: {wire} bytes exceed the MTU of {INTERNET_MTU}"));
            return Err(Verdict::Drop(DropReason::MtuExceeded));
        }
        let port = &self.ports[from.index()];
        let reply = rewrite::icmp_frag_needed(frame, port.router_mac, port.subnet_cidr.router(), INTERNET_MTU);
        obs.record(
            Stage::InternetGateway,
            format_args!("{wire} bytes exceed the MTU of {INTERNET_MTU} with DF set: ICMP fragmentation needed back"),
        );
        if reply.len() > frame.len() {
            return Err(Verdict::Drop(DropReason::MtuExceeded));
        }
        frame[..reply.len()].copy_from_slice(&reply);
        Err(Verdict::ReplyWith(reply.len()))
    }

    /// Through a NAT gateway: into its subnet (ACLs), TCP/UDP/ICMP echo only and no fragments,
    /// then its subnet's route table must lead to the internet gateway, which maps its private
    /// address to its Elastic IP. The source becomes the NAT's address and a port it allocates
    /// for the destination. A segment of a TCP connection whose translation timed out is answered
    /// with a RST, as AWS does.
    #[allow(clippy::too_many_arguments)]
    fn via_nat<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        egress: SgOutcome,
        n: NatIdx,
        ip: &Ipv4Meta,
        info: &Flow,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let model = std::sync::Arc::clone(&self.model);
        let nat = &model.nat_gateways[n.index()];
        let nat_subnet = &model.subnets[nat.subnet.index()];
        let port = &self.ports[from.index()];
        let (src_subnet, src_acl, vpc) = (port.subnet, port.acl, port.vpc);
        if src_subnet != nat.subnet {
            self.network_acl(src_acl, Direction::Egress, info, None, obs)?;
        }
        // Past the sender's subnet: the packet reaches the NAT gateway's interface, where its
        // subnet's ACL may still refuse it (a flow log of the interface logs that as REJECT).
        obs.nat_gateway(n);
        if src_subnet != nat.subnet {
            self.network_acl(nat_subnet.network_acl, Direction::Ingress, info, None, obs)?;
        }
        if commit {
            let c = self.nats[n.index()].counters_mut();
            c.packets_in_from_source += 1;
            c.bytes_in_from_source += frame.len() as u64;
        }
        let (inside_port, remote_port) = match ip.flow.proto {
            IpProto::TCP | IpProto::UDP => (ip.flow.l4.src_port, ip.flow.l4.dst_port),
            IpProto::ICMP if ip.flow.l4.icmp_type == 8 => (ip.flow.l4.icmp_id, 0),
            p => {
                obs.record(
                    Stage::NatGateway,
                    format_args!("drop: {} translates TCP, UDP and ICMP echo only (protocol {})", nat.id, p.0),
                );
                self.count_nat_drop(n, commit);
                return Err(Verdict::Drop(DropReason::NatUnsupportedProtocol));
            }
        };
        if ip.fragment {
            // AWS drops TCP and ICMP fragments; UDP fragments would need reassembly to be
            // translated here, so vpclab drops them too.
            obs.record(Stage::NatGateway, format_args!("drop: {} does not translate fragments", nat.id));
            self.count_nat_drop(n, commit);
            return Err(Verdict::Drop(DropReason::NatFragment));
        }
        let inside = (ip.flow.src, inside_port);
        let remote = (ip.flow.dst, remote_port);
        let hit = self.routes[nat_subnet.route_table.index()].lookup(ip.flow.dst);
        let route = route_table::describe(&model, nat_subnet.route_table, ip.flow.dst, hit);
        match hit {
            Some((_, t @ RouteTarget::InternetGateway(_))) => {
                if let Some(why) = route_table::unusable(&model, t) {
                    obs.record(Stage::RouteLookup, format_args!("drop: {route}: blackhole: {why}"));
                    return Err(Verdict::Drop(DropReason::Blackhole));
                }
            }
            _ => {
                obs.record(
                    Stage::RouteLookup,
                    format_args!("drop: {route} (a NAT gateway sends to the internet gateway only)"),
                );
                return Err(Verdict::Drop(DropReason::NoRoute));
            }
        }
        obs.record(Stage::RouteLookup, format_args!("{route}"));
        self.network_acl(nat_subnet.network_acl, Direction::Egress, info, None, obs)?;
        let Some(public) = self.igw.public_of(vpc, nat.private_ip) else {
            obs.record(
                Stage::InternetGateway,
                format_args!("drop: {} has no Elastic IP (private NAT gateway)", nat.id),
            );
            return Err(Verdict::Drop(DropReason::NoPublicAddress));
        };
        self.internet_exists(obs)?;
        self.check_mtu(from, ip, frame, off, obs)?;
        let table = &self.nats[n.index()];
        let is_syn = ip.flow.l4.tcp_flags.contains(TcpFlags::SYN);
        if ip.flow.proto == IpProto::TCP
            && !is_syn
            && table.peek_outbound(now, IpProto::TCP, inside, remote).is_none()
            && table.expired_recently(now, IpProto::TCP, inside, remote)
        {
            let router_mac = self.ports[from.index()].router_mac;
            let rst = rewrite::tcp_rst_for(frame, router_mac, self.ports[from.index()].mac);
            obs.record(
                Stage::NatGateway,
                format_args!("drop: the translation of this TCP connection timed out: RST back"),
            );
            self.count_nat_drop(n, commit);
            if rst.len() <= frame.len() {
                frame[..rst.len()].copy_from_slice(&rst);
                return Err(Verdict::ReplyWith(rst.len()));
            }
            return Err(Verdict::Drop(DropReason::NatNoMapping));
        }
        self.room(now, from, egress, Stage::SgEgress, obs)?;
        // One plan: trace shows it, forwarding carries it out, so the two never name different ports.
        let plan = match self.nats[n.index()].plan_outbound(now, ip.flow.proto, inside, remote) {
            Ok(plan) => plan,
            Err(NatError::PortAllocation) => {
                if commit {
                    self.nats[n.index()].count_refusal();
                }
                self.count_nat_drop(n, commit);
                obs.record(
                    Stage::NatGateway,
                    format_args!("drop: no free port for {}:{} ({} ErrorPortAllocation)", remote.0, remote.1, nat.id),
                );
                return Err(Verdict::Drop(DropReason::NatPortAllocation));
            }
        };
        if commit {
            self.commit_either(now, from, egress, info, Some(Hop::Nat(n)))?;
            let t = &mut self.nats[n.index()];
            t.apply(now, plan);
            let c = t.counters_mut();
            c.packets_out_to_destination += 1;
            c.bytes_out_to_destination += frame.len() as u64;
        }
        let outside = plan.port();
        obs.record(
            Stage::NatGateway,
            format_args!("{}: source {}:{} -> {}:{outside}", nat.id, ip.flow.src, inside_port, nat.private_ip),
        );
        obs.record(
            Stage::InternetGateway,
            format_args!("source {} -> {public} ({}'s Elastic IP)", nat.private_ip, nat.id),
        );
        rewrite::set_src_ip(frame, ip, public, off.csum());
        match ip.flow.proto {
            IpProto::ICMP => rewrite::set_icmp_echo_id(frame, ip, outside),
            _ => rewrite::set_src_port(frame, ip, outside, off.csum()),
        }
        packet::set_macs(frame, self.inet_peer_mac.get(), self.inet_own_mac);
        Ok(Verdict::ToInternet)
    }

    fn walk_internet<O: Observer>(
        &mut self,
        now: Duration,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let meta = match packet::parse(frame) {
            Ok(m) => m,
            Err(e) => {
                obs.record(Stage::Parse, format_args!("drop: {e}"));
                return Err(Verdict::Drop(DropReason::Malformed));
            }
        };
        // The emulated internet has one interface; an uplink is a real network of many.
        if self.uplink_gateway.is_none() && meta.src_mac != self.inet_peer_mac.get() {
            obs.record(Stage::PortSecurity, format_args!("drop: source MAC {} is not the internet's", meta.src_mac));
            return Err(Verdict::Drop(DropReason::SourceMacMismatch));
        }
        let ip = match meta.l3 {
            L3Meta::Arp(arp) => {
                if commit && Some(arp.sender_ip) == self.uplink_gateway {
                    self.inet_peer_mac.set(arp.sender_mac);
                }
                let ours = match self.uplink_gateway {
                    None => arp.target_ip == INTERNET_GATEWAY_IP,
                    Some(_) => self.model.public_addresses().any(|p| p == arp.target_ip),
                };
                if arp.operation != ARP_REQUEST {
                    return Err(Verdict::Drop(DropReason::ArpNotRequest));
                }
                if !ours {
                    obs.record(Stage::ArpReply, format_args!("drop: {} is not the lab's", arp.target_ip));
                    return Err(Verdict::Drop(DropReason::ArpUnanswered));
                }
                let mac = self.inet_own_mac;
                packet::arp_reply_in_place(frame, &arp, mac);
                obs.record(Stage::ArpReply, format_args!("{} is-at {mac}", arp.target_ip));
                return Ok(Verdict::Reply);
            }
            L3Meta::Ipv4(ip) => ip,
            L3Meta::Other(_) => return Err(Verdict::Drop(DropReason::UnsupportedEthertype)),
        };
        self.walk_internet_ipv4(now, &ip, frame, off, obs, commit)
    }

    /// An IPv4 packet in from the internet side, to an Elastic IP or a NAT gateway's.
    fn walk_internet_ipv4<O: Observer>(
        &mut self,
        now: Duration,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let ip = *ip;
        within_vpc_mtu(&ip, frame, off, obs)?;
        if commit {
            if let Some(v) = self.fast_from_internet(now, &ip, frame, off, obs) {
                return Ok(v);
            }
        }
        let quoted = packet::icmp_quoted(frame, &ip);
        if let Some((eni, private)) = self.igw.private_of(ip.flow.dst) {
            let vpc = self.ports[eni.index()].vpc;
            if !self.model.internet_gateways.iter().any(|g| g.vpc == Some(vpc)) {
                obs.record(
                    Stage::InternetGateway,
                    format_args!("drop: {}'s VPC has no internet gateway", self.ports[eni.index()].id),
                );
                return Err(Verdict::Drop(DropReason::NoRoute));
            }
            obs.record(
                Stage::InternetGateway,
                format_args!("destination {} -> {private} ({})", ip.flow.dst, self.ports[eni.index()].id),
            );
            if quoted.is_some_and(|q| q.src == ip.flow.dst) {
                rewrite::set_quoted_src(frame, &ip, private, None);
            }
            rewrite::set_dst_ip(frame, &ip, private, off.csum());
            let mut inside = ip;
            inside.flow.dst = private;
            let info = inside.flow;
            return self.arrive(now, Source::Internet, eni, true, &inside, &info, frame, obs, commit);
        }
        if let Some((n, nat_ip)) = self.igw.nat_of(ip.flow.dst) {
            return self.back_through_nat(now, n, nat_ip, &ip, quoted, frame, off, obs, commit);
        }
        if let Some(back) = self.endpoint_reply(&ip, now) {
            return self.back_from_service(now, back, &ip, frame, off, obs, commit);
        }
        obs.record(Stage::InternetGateway, format_args!("drop: {} is not an Elastic IP of this lab", ip.flow.dst));
        Err(Verdict::Drop(DropReason::NoSuchAddress))
    }

    /// A reply from the internet to a NAT gateway's Elastic IP: translated back to the inside
    /// host it answers, or dropped when it answers nothing (a NAT gateway accepts no unsolicited
    /// inbound traffic and does not answer ping).
    #[allow(clippy::too_many_arguments)]
    fn back_through_nat<O: Observer>(
        &mut self,
        now: Duration,
        n: NatIdx,
        nat_ip: Ipv4Addr,
        ip: &Ipv4Meta,
        quoted: Option<Flow>,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        obs.nat_gateway(n);
        let model = std::sync::Arc::clone(&self.model);
        let nat = &model.nat_gateways[n.index()];
        let nat_subnet = &model.subnets[nat.subnet.index()];
        obs.record(Stage::InternetGateway, format_args!("destination {} -> {nat_ip} ({})", ip.flow.dst, nat.id));
        let flow = ip.flow;
        self.network_acl(nat_subnet.network_acl, Direction::Ingress, &flow, None, obs)?;
        if commit {
            let c = self.nats[n.index()].counters_mut();
            c.packets_in_from_destination += 1;
            c.bytes_in_from_destination += frame.len() as u64;
        }
        // What the packet answers: (remote, the NAT's port), from the packet or the quote.
        let key = match (flow.proto, quoted) {
            (IpProto::TCP | IpProto::UDP, _) => Some((flow.proto, (flow.src, flow.l4.src_port), flow.l4.dst_port)),
            (IpProto::ICMP, None) if flow.l4.icmp_type == 0 => Some((IpProto::ICMP, (flow.src, 0), flow.l4.icmp_id)),
            (IpProto::ICMP, Some(q)) => match q.proto {
                IpProto::TCP | IpProto::UDP => Some((q.proto, (q.dst, q.l4.dst_port), q.l4.src_port)),
                IpProto::ICMP => Some((IpProto::ICMP, (q.dst, 0), q.l4.icmp_id)),
                _ => None,
            },
            _ => None,
        };
        let inside = key.and_then(|(proto, remote, outside)| {
            let t = &mut self.nats[n.index()];
            if commit {
                t.inbound(now, proto, remote, outside)
            } else {
                t.peek_inbound(now, proto, remote, outside)
            }
        });
        let Some((inside_ip, inside_port)) = inside else {
            obs.record(Stage::NatGateway, format_args!("drop: {} has no translation this packet answers", nat.id));
            self.count_nat_drop(n, commit);
            return Err(Verdict::Drop(DropReason::NatNoMapping));
        };
        obs.record(Stage::NatGateway, format_args!("{}: destination -> {inside_ip}:{inside_port}", nat.id));
        match quoted {
            Some(_) => rewrite::set_quoted_src(frame, ip, inside_ip, Some(inside_port)),
            None if ip.flow.proto == IpProto::ICMP => rewrite::set_icmp_echo_id(frame, ip, inside_port),
            None => rewrite::set_dst_port(frame, ip, inside_port, off.csum()),
        }
        rewrite::set_dst_ip(frame, ip, inside_ip, off.csum());
        let hit = self.routes[nat_subnet.route_table.index()].lookup(inside_ip);
        let route = route_table::describe(&model, nat_subnet.route_table, inside_ip, hit);
        let to = match hit.map(|h| h.1) {
            Some(RouteTarget::Local) => self.owner_by_ip.get(&(nat_subnet.vpc, inside_ip)).copied(),
            _ => None,
        };
        let Some(to) = to else {
            obs.record(Stage::RouteLookup, format_args!("drop: {route}"));
            return Err(Verdict::Drop(DropReason::NoRoute));
        };
        obs.record(Stage::RouteLookup, format_args!("{route}: {}", self.ports[to.index()].id));
        let mut inside = *ip;
        inside.flow.dst = inside_ip;
        if quoted.is_none() {
            match ip.flow.proto {
                IpProto::ICMP => inside.flow.l4.icmp_id = inside_port,
                _ => inside.flow.l4.dst_port = inside_port,
            }
        }
        let info = inside.flow;
        let verdict = self.arrive(now, Source::Nat(nat.subnet, n), to, true, &inside, &info, frame, obs, commit)?;
        if commit {
            let c = self.nats[n.index()].counters_mut();
            c.packets_out_to_source += 1;
            c.bytes_out_to_source += frame.len() as u64;
        }
        Ok(verdict)
    }

    /// Counts a packet the NAT gateway itself refused (`PacketsDropCount`), when forwarding.
    fn count_nat_drop(&mut self, n: NatIdx, commit: bool) {
        if commit {
            self.nats[n.index()].counters_mut().packets_dropped += 1;
        }
    }

    /// A tracked flow whose sender-side entry caches a hop made under the current generation
    /// goes straight there: to an ENI (both connection entries refreshed), or out through the
    /// internet gateway or a NAT gateway (the translation refreshed), with no route lookup and
    /// no ACL or rule scan. `None`: take the full walk.
    ///
    /// The generation check is what makes a hop safe to follow: a hop names its ENI or NAT
    /// gateway by index, which after a swap may be another's or none, and the ACLs, routes and
    /// addresses it was decided under may have changed. Every entry carried over by
    /// [`take_state_from`](Pipeline::take_state_from) is of an older generation than the new
    /// pipeline's, so its hops are never followed, and [`commit`](Self::commit) clears them
    /// before caching a hop of the current generation.
    fn fast_path<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
    ) -> Option<Verdict> {
        let info = &ip.flow;
        // ICMP never: network ACLs match ICMP type and code, which the connection key does not
        // hold (one entry stands for every non-echo ICMP between two addresses, and echo request
        // and reply share one), so the cached hop would skip the ACLs for a type they deny.
        if info.proto == IpProto::ICMP {
            return None;
        }
        // One probe per table. Touch nothing unless the packet goes this way: a packet that
        // falls back to the full walk must update each entry once, there, or TCP state would see
        // its flags twice. So the sender's entry is updated only after the receiver's lookup (or
        // the NAT translation's refresh) succeeded, which also proves it is still there (it may
        // have expired on its own, with shorter timeouts).
        let (generation, ports, nats, nat_edges) = (self.generation, &self.ports, &mut self.nats, &self.nat_edges);
        let (before, rest) = self.conntrack.split_at_mut(from.index());
        let (sender, after) = rest.split_first_mut()?;
        let router_mac = ports[from.index()].router_mac;
        let fast = sender.lookup_if(now, info, |e, reply| {
            let hop = if e.generation == generation { e.decision[usize::from(reply)]? } else { return None };
            // The hop was cached for frames to the router's MAC (routed) or to the receiver's
            // own (layer 2): a frame of the flow sent to any other MAC takes another walk, which
            // may drop it (an unknown MAC) or route it. A frame parsed as IPv4 holds its
            // Ethernet header.
            // Towards the internet only what fits its MTU: the rest needs the full walk's answer.
            let fits_internet = || frame[..6] == router_mac.0 && wire_size(ip, frame, off) <= INTERNET_MTU;
            match hop {
                Hop::Eni { to, routed } => {
                    debug_assert!(to.index() < ports.len(), "a hop of the current generation names a port");
                    let cached_for = if routed { router_mac } else { ports[to.index()].mac };
                    if frame[..6] != cached_for.0 {
                        return None;
                    }
                    let receiver = match to.index().cmp(&from.index()) {
                        std::cmp::Ordering::Less => before.get_mut(to.index()),
                        std::cmp::Ordering::Greater => after.get_mut(to.index() - from.index() - 1),
                        std::cmp::Ordering::Equal => return Some(Fast::Eni(to, routed)),
                    };
                    receiver?.lookup(now, info).map(|_| Fast::Eni(to, routed))
                }
                Hop::Internet { public } => fits_internet().then_some(Fast::Internet(public)),
                Hop::Nat(n) if !ip.fragment && fits_internet() => {
                    let public = nat_edges.get(n.index())?.public?;
                    let (inside, remote) = ((info.src, info.l4.src_port), (info.dst, info.l4.dst_port));
                    let port = nats.get_mut(n.index())?.refresh_outbound(now, info.proto, inside, remote)?;
                    Some(Fast::Nat(n, public, port))
                }
                Hop::GatewayEndpoint => fits_internet().then_some(Fast::GatewayEndpoint),
                Hop::Nat(_) | Hop::FromInternet | Hop::FromNat(_) => None,
            }
        })?;
        if let Fast::Eni(to, routed) = fast {
            // The common case, kept in line.
            self.deliver(to, routed, frame, &mut NoObserver);
            return Some(Verdict::Forward(to));
        }
        Some(self.take_fast(fast, ip, frame, off, obs))
    }

    /// A packet from the internet of a flow whose receiving ENI's entry says the internet
    /// gateway or that NAT gateway brought the flow's packets in under the current generation:
    /// translated back (the NAT's translation refreshed) and delivered with no route lookup and
    /// no ACL or rule scan. `None`: take the full walk. ICMP never, as on the ENI fast path.
    fn fast_from_internet<O: Observer>(
        &mut self,
        now: Duration,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
    ) -> Option<Verdict> {
        if ip.flow.proto == IpProto::ICMP {
            return None;
        }
        let generation = self.generation;
        let is_cached = |e: &crate::conntrack::Entry<Hops>, reply: bool, want: Hop| {
            (e.generation == generation && e.decision[usize::from(reply)] == Some(want)).then_some(())
        };
        let mut inside = *ip;
        if let Some((to, private)) = self.igw.private_of(ip.flow.dst) {
            inside.flow.dst = private;
            let table = self.conntrack.get_mut(to.index())?;
            table.lookup_if(now, &inside.flow, |e, reply| is_cached(e, reply, Hop::FromInternet))?;
            rewrite::set_dst_ip(frame, ip, private, off.csum());
            return Some(self.take_fast(Fast::Eni(to, true), ip, frame, off, obs));
        }
        let (n, _) = self.igw.nat_of(ip.flow.dst)?;
        let vpc = self.nat_edges.get(n.index())?.vpc;
        let (conntrack, owner_by_ip) = (&mut self.conntrack, &self.owner_by_ip);
        let remote = (ip.flow.src, ip.flow.l4.src_port);
        let to = self.nats.get_mut(n.index())?.inbound_if(
            now,
            ip.flow.proto,
            remote,
            ip.flow.l4.dst_port,
            |(addr, port)| {
                inside.flow.dst = addr;
                inside.flow.l4.dst_port = port;
                let to = *owner_by_ip.get(&(vpc, addr))?;
                conntrack
                    .get_mut(to.index())?
                    .lookup_if(now, &inside.flow, |e, reply| is_cached(e, reply, Hop::FromNat(n)))?;
                Some(to)
            },
        )?;
        obs.nat_gateway(n);
        self.nats[n.index()].counters_mut().count_translated_in(frame.len() as u64);
        rewrite::set_dst_port(frame, ip, inside.flow.l4.dst_port, off.csum());
        rewrite::set_dst_ip(frame, ip, inside.flow.dst, off.csum());
        Some(self.take_fast(Fast::Eni(to, true), ip, frame, off, obs))
    }

    /// Carries out what [`fast_path`](Self::fast_path) found: the rewrites the full walk made
    /// for the flow's first packet, and its counters.
    fn take_fast<O: Observer>(
        &mut self,
        fast: Fast,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
    ) -> Verdict {
        match fast {
            Fast::Eni(to, routed) => {
                self.deliver(to, routed, frame, &mut NoObserver);
                Verdict::Forward(to)
            }
            Fast::Internet(public) => {
                rewrite::set_src_ip(frame, ip, public, off.csum());
                packet::set_macs(frame, self.inet_peer_mac.get(), self.inet_own_mac);
                Verdict::ToInternet
            }
            Fast::Nat(n, public, port) => {
                obs.nat_gateway(n);
                self.nats[n.index()].counters_mut().count_translated_out(frame.len() as u64);
                rewrite::set_src_ip(frame, ip, public, off.csum());
                rewrite::set_src_port(frame, ip, port, off.csum());
                packet::set_macs(frame, self.inet_peer_mac.get(), self.inet_own_mac);
                Verdict::ToInternet
            }
            Fast::GatewayEndpoint => {
                packet::set_macs(frame, self.inet_peer_mac.get(), self.inet_own_mac);
                Verdict::ToInternet
            }
        }
    }

    fn deliver<O: Observer>(&self, to: EniIdx, routed: bool, frame: &mut [u8], obs: &mut O) {
        let dst = &self.ports[to.index()];
        if routed {
            // The receiver's own VPC router sends it (across a peering, that is the peer's).
            packet::set_macs(frame, dst.mac, dst.router_mac);
            obs.record(Stage::Deliver, format_args!("to {} as {} from router {}", dst.id, dst.mac, dst.router_mac));
        } else {
            obs.record(Stage::Deliver, format_args!("to {}, frame unchanged", dst.id));
        }
    }

    /// [`commit`](Self::commit), and with a shard, [`commit_shared`](Self::commit_shared).
    #[inline(always)]
    fn commit_either(
        &mut self,
        now: Duration,
        eni: EniIdx,
        outcome: SgOutcome,
        info: &Flow,
        hop: Option<Hop>,
    ) -> Step<()> {
        if self.shard.is_some() {
            return self.commit_shared(now, eni, outcome, info, hop);
        }
        self.commit(now, eni, outcome, info, hop)
    }

    /// [`commit`](Self::commit) with a shard: a new flow's slot is taken from the count every
    /// worker shares first (another worker may have taken the last one since `room` looked), and
    /// the count is settled after. An insert that replaces an entry of the same key (a SYN
    /// reusing a closed connection's ports; an appliance routed to itself, whose egress and
    /// ingress entries are one) adds none, so it takes no slot, as with one worker.
    /// Apart from `commit`, so that one worker's `commit` is compiled as it was.
    #[cold]
    #[inline(never)]
    fn commit_shared(
        &mut self,
        now: Duration,
        eni: EniIdx,
        outcome: SgOutcome,
        info: &Flow,
        hop: Option<Hop>,
    ) -> Step<()> {
        let adds = outcome == (SgOutcome::NewFlow { tracked: true }) && !self.conntrack[eni.index()].holds(info);
        if adds && !self.reserve(now, eni.index()) {
            return Err(Verdict::DropAt(DropReason::ConntrackFull, eni));
        }
        let done = self.commit(now, eni, outcome, info, hop);
        self.settle(eni.index());
        done
    }

    /// Creates the connection entry a delivered packet's new flow needs on one side, and caches
    /// the sender's hop on the sender's entry.
    fn commit(&mut self, now: Duration, eni: EniIdx, outcome: SgOutcome, info: &Flow, hop: Option<Hop>) -> Step<()> {
        let generation = self.generation;
        let table = &mut self.conntrack[eni.index()];
        match outcome {
            // The first packet goes in the original direction.
            SgOutcome::NewFlow { tracked: true } => match table.insert(now, info, [hop, None], generation) {
                Ok(_) => Ok(()),
                Err(ConntrackFull) => Err(Verdict::DropAt(DropReason::ConntrackFull, eni)),
            },
            SgOutcome::Tracked => {
                // Refresh the entry (state, idle timer); on the sender's side, cache the hop.
                if let (Some((e, reply)), Some(hop)) = (table.lookup(now, info), hop) {
                    if e.generation != generation {
                        e.decision = [None, None];
                        e.generation = generation;
                    }
                    e.decision[usize::from(reply)] = Some(hop);
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
        info: &Flow,
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
            if table.related(now, &quoted).is_some() {
                obs.record(stage, format_args!("ICMP error about a tracked connection of {}: allowed", port.id));
                return Ok(SgOutcome::Related);
            }
        }
        let peer = if dir == Direction::Egress { "to" } else { "from" };
        let peer_ip = if dir == Direction::Egress { ip.flow.dst } else { ip.flow.src };
        match self.groups.allows(eni, dir, info) {
            Some(m) => {
                let tracked = !self.groups.is_untracked(eni, dir, info);
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
                        crate::policy::describe_match(crate::model::Protocol::Number(info.proto), flow_ports(info))
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

    /// A network ACL stage. A deny is counted on `drop_at` (the receiving ENI) when given, else
    /// on the port the packet came from.
    fn network_acl<O: Observer>(
        &self,
        acl: AclIdx,
        dir: Direction,
        flow: &Flow,
        drop_at: Option<EniIdx>,
        obs: &mut O,
    ) -> Step<()> {
        let acl = &self.acls[acl.index()];
        let d = acl.evaluate(dir, flow);
        let text = network_acl::describe(acl.acl(), dir, d);
        let stage = if dir == Direction::Egress { Stage::NaclEgress } else { Stage::NaclIngress };
        if d.allows() {
            obs.record(stage, format_args!("{text}"));
            return Ok(());
        }
        obs.record(stage, format_args!("drop: {text}"));
        let reason =
            if dir == Direction::Egress { DropReason::NetworkAclEgress } else { DropReason::NetworkAclIngress };
        Err(match drop_at {
            Some(eni) => Verdict::DropAt(reason, eni),
            None => Verdict::Drop(reason),
        })
    }

    /// The fabric answers DHCP on every ENI. The reply is written over the request when it fits,
    /// else kept in [`answer`](Self::answer) for the caller to copy (see [`Verdict::ReplyWith`]).
    fn dhcp_reply<O: Observer>(
        &mut self,
        from: EniIdx,
        ip: &Ipv4Meta,
        src_mac: Mac,
        frame: &mut [u8],
        obs: &mut O,
    ) -> Step<Verdict> {
        let port = &self.ports[from.index()];
        let Some(&primary_ip) = port.ips.first() else {
            obs.record(Stage::DhcpReply, format_args!("drop: {} has no private IP", port.id));
            return Err(Verdict::Drop(DropReason::DhcpUnanswered));
        };
        let facts = dhcp::EniFacts {
            mac: port.mac,
            primary_ip,
            subnet: port.subnet_cidr,
            router_mac: port.router_mac,
            settings: &self.dhcp[port.vpc.index()],
        };
        let reply = match dhcp::answer(frame, ip, src_mac, &facts) {
            Ok(r) => r,
            Err(why) => {
                obs.record(Stage::DhcpReply, format_args!("drop: {why:?}"));
                return Err(Verdict::Drop(match why {
                    DhcpDrop::Malformed => DropReason::DhcpMalformed,
                    DhcpDrop::Spoofed => DropReason::DhcpSpoof,
                    DhcpDrop::Unanswered => DropReason::DhcpUnanswered,
                }));
            }
        };
        obs.record(Stage::DhcpReply, format_args!("answered {} for {}", primary_ip, port.id));
        self.reply_with(reply, frame)
    }

    /// The Amazon DNS server answers a packet sent to it, unless DNS support is off in the
    /// ENI's VPC or the ENI spent its allowance (1024 packets a second; a trace takes none).
    /// Cold and out of line: inlined, it made `walk` heavier for every packet of the slow path.
    #[cold]
    #[inline(never)]
    fn dns_reply<O: Observer>(
        &mut self,
        now: Duration,
        from: EniIdx,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        obs: &mut O,
        commit: bool,
    ) -> Step<Verdict> {
        let port = &self.ports[from.index()];
        if !self.dns_support[port.vpc.index()] {
            let vpc = &self.model.vpcs[port.vpc.index()].id;
            obs.record(Stage::DnsReply, format_args!("drop: DNS resolution is off in {vpc} (enable_dns_support)"));
            return Err(Verdict::Drop(DropReason::DnsDisabled));
        }
        let mut bucket = self.dns_limits[from.index()];
        let allowed = bucket.allow(now);
        if commit {
            self.dns_limits[from.index()] = bucket;
        }
        if !allowed {
            obs.record(
                Stage::DnsReply,
                format_args!("drop: {} sent over {} packets this second", port.id, dns::PACKETS_PER_SECOND),
            );
            return Err(Verdict::Drop(DropReason::DnsRateExceeded));
        }
        let reply = match dns::answer(frame, ip, port.mac, port.router_mac, port.vpc, &self.dns_names) {
            Ok(r) => r,
            Err(why) => {
                obs.record(Stage::DnsReply, format_args!("drop: {why:?}"));
                return Err(Verdict::Drop(match why {
                    DnsDrop::Malformed => DropReason::DnsMalformed,
                    DnsDrop::Unanswered => DropReason::DnsUnanswered,
                }));
            }
        };
        obs.record(Stage::DnsReply, format_args!("answered {} from {}", ip.flow.src, ip.flow.dst));
        self.reply_with(reply, frame)
    }

    /// A fabric answer: written over the request when it fits, else kept in
    /// [`answer`](Self::answer) for the caller to copy.
    fn reply_with(&mut self, reply: Vec<u8>, frame: &mut [u8]) -> Step<Verdict> {
        if let Some(head) = frame.get_mut(..reply.len()) {
            head.copy_from_slice(&reply);
        }
        let len = reply.len();
        self.answer = reply;
        Err(Verdict::ReplyWith(len))
    }

    /// Traffic to the subnet router's own address, which groups and ACLs do not filter (as on
    /// AWS): an echo request from the ENI's own address is answered, anything else dropped.
    fn to_router<O: Observer>(&self, from: EniIdx, ip: &Ipv4Meta, frame: &mut [u8], obs: &mut O) -> Step<Verdict> {
        let port = &self.ports[from.index()];
        if port.owns(ip.flow.src) && rewrite::echo_reply_in_place(frame, ip, port.router_mac) {
            obs.record(Stage::Router, format_args!("echo reply from the VPC router {}", ip.flow.dst));
            return Err(Verdict::Reply);
        }
        obs.record(
            Stage::Router,
            format_args!("drop: {} is the VPC router's own address: it answers ping and nothing else", ip.flow.dst),
        );
        Err(Verdict::Drop(DropReason::RouterAddress))
    }

    /// Whether `ip` is base + 1 of a subnet of `vpc` (only asked on the way to a drop).
    fn is_subnet_router(&self, vpc: VpcIdx, ip: Ipv4Addr) -> bool {
        self.model.subnets.iter().any(|s| s.vpc == vpc && s.cidr.router() == ip)
    }

    /// A fabric answer longer than the frame it answers (see [`Verdict::ReplyWith`]).
    pub fn answer(&self) -> &[u8] {
        &self.answer
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
        let answer = if target == port.subnet_cidr.router() || target == crate::model::METADATA_IP {
            Some(port.router_mac)
        } else {
            let owner = self
                .owner_by_ip
                .get(&(port.vpc, target))
                .map(|&e| (e, &self.ports[e.index()]))
                .filter(|(e, p)| *e != from && p.subnet == port.subnet && p.attached);
            if let Some((e, p)) = owner.filter(|(_, p)| p.stopped) {
                obs.record(
                    Stage::ArpReply,
                    format_args!("drop: {target} is {}'s, whose instance {} is stopped", p.id, self.instance_of(e)),
                );
                return Err(Verdict::Drop(DropReason::ArpUnanswered));
            }
            owner.map(|(_, p)| p.mac).or_else(|| self.endpoints.mac_in_subnet(port.vpc, port.subnet, target))
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

    /// The id of the instance `eni` is attached to, for explanations.
    fn instance_of(&self, eni: EniIdx) -> &str {
        self.model.enis[eni.index()]
            .attachment
            .and_then(|a| self.model.instances.get(a.instance.index()))
            .map_or("(none)", |i| i.id.as_str())
    }

    /// Frames addressed to a MAC other than the router's stay in the subnet: they go to the ENI
    /// that owns that MAC, unchanged, without a route lookup or a network ACL. The fabric
    /// delivers by (VPC, address), not by the MAC a sender cached: when the MAC's ENI checks its
    /// destination and does not own the address but another ENI of the subnet does (the address
    /// moved with `--allow-reassignment`), the frame goes to the address's owner, its MACs
    /// rewritten (`true`), so a stale ARP entry never black-holes a moved address. An ENI with the
    /// check off (an appliance) gets what is sent to its MAC, as a next hop.
    fn layer2<O: Observer>(&self, from: EniIdx, dst_mac: Mac, dst: Ipv4Addr, obs: &mut O) -> Step<(EniIdx, bool)> {
        let port = &self.ports[from.index()];
        if dst_mac.is_multicast() {
            obs.record(Stage::Layer2, format_args!("drop: {dst_mac} is broadcast/multicast"));
            return Err(Verdict::Drop(DropReason::BroadcastOrMulticast));
        }
        let in_subnet = |to: EniIdx| to != from && self.ports[to.index()].subnet == port.subnet;
        match self.owner_by_mac.get(&dst_mac) {
            Some(&to) if in_subnet(to) => {
                let p = &self.ports[to.index()];
                let owner = self.owner_by_ip.get(&(port.vpc, dst)).copied();
                if let Some(owner) = owner.filter(|&o| p.source_dest_check && !p.owns(dst) && in_subnet(o)) {
                    let id = &self.ports[owner.index()].id;
                    obs.record(
                        Stage::Layer2,
                        format_args!("{dst_mac} is {}, but {dst} is {id}'s now: delivered by address", p.id),
                    );
                    return Ok((owner, true));
                }
                obs.record(Stage::Layer2, format_args!("{dst_mac} is {} in {}", p.id, port.subnet_cidr));
                Ok((to, false))
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
    fn route_lookup<O: Observer>(&self, from: EniIdx, dst: Ipv4Addr, obs: &mut O) -> Step<Next> {
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
                None if self.endpoints.is_interface(port.vpc, dst) => {
                    obs.record(
                        Stage::RouteLookup,
                        format_args!("{route}: {}", self.endpoint_interface_id(port.vpc, dst)),
                    );
                    return Ok(Next::InterfaceEndpoint(dst));
                }
                None if self.is_subnet_router(port.vpc, dst) => {
                    let why = format_args!("{dst} is another subnet's router address: the router answers only its own");
                    return drop(obs, why, DropReason::RouterAddress);
                }
                None => return drop(obs, format_args!("no ENI owns {dst}"), DropReason::NoSuchAddress),
            },
            Some((_, target @ (RouteTarget::Eni(_) | RouteTarget::InternetGateway(_) | RouteTarget::Peering(_))))
                if route_table::unusable(&self.model, target).is_some() =>
            {
                let why = route_table::unusable(&self.model, target).unwrap_or_default();
                return drop(obs, format_args!("blackhole: {why}"), DropReason::Blackhole);
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
            Some((_, RouteTarget::InternetGateway(_))) => {
                obs.record(Stage::RouteLookup, format_args!("{route}"));
                return Ok(Next::InternetGateway);
            }
            Some((_, RouteTarget::NatGateway(n))) => {
                obs.record(Stage::RouteLookup, format_args!("{route}"));
                return Ok(Next::NatGateway(n));
            }
            Some((_, RouteTarget::GatewayEndpoint(e))) => {
                obs.record(Stage::RouteLookup, format_args!("{route}"));
                return Ok(Next::GatewayEndpoint(e));
            }
        };
        obs.record(Stage::RouteLookup, format_args!("{route}: {}", self.ports[to.index()].id));
        Ok(Next::Eni(to))
    }
}

/// A packet as the instance on `from` would send it to `to` from its primary IP: a TCP SYN,
/// a UDP datagram, an ICMP echo request (id `src_port`), or a bare packet of another protocol.
/// It goes to the owner's MAC when `to` is an ENI of the sender's subnet, else to the router's.
pub fn synthesize_for(
    model: &Model,
    from: EniIdx,
    to: Ipv4Addr,
    protocol: IpProto,
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
    probe(dst_mac, eni.mac, eni.private_ip, to, protocol, src_port, dst_port)
}

/// The same, as internet host `from` would send it to its gateway.
pub fn synthesize_from_internet(
    model: &Model,
    from: Ipv4Addr,
    to: Ipv4Addr,
    protocol: IpProto,
    src_port: u16,
    dst_port: u16,
) -> Vec<u8> {
    let (dst_mac, src_mac) = (model.internet_gateway_mac(), model.internet_host_mac());
    probe(dst_mac, src_mac, from, to, protocol, src_port, dst_port)
}

fn probe(
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv4Addr,
    to: Ipv4Addr,
    protocol: IpProto,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    match protocol {
        IpProto::TCP => build::tcp(dst_mac, src_mac, src, to, sport, dport, TcpFlags::SYN, b""),
        IpProto::UDP => build::udp(dst_mac, src_mac, src, to, sport, dport, b"vpclab trace"),
        IpProto::ICMP => build::icmp_echo(dst_mac, src_mac, src, to, sport),
        other => build::ip_proto(dst_mac, src_mac, src, to, other),
    }
}

/// The size of the IPv4 packets `frame` is on the wire: itself, or for a TSO superframe each
/// segment it becomes (the IP and transport headers and up to gso_size bytes).
fn wire_size(ip: &Ipv4Meta, frame: &[u8], off: Offload) -> u16 {
    match off.gso_size {
        Some(gso) => {
            let l4 = ETH_HEADER_LEN + usize::from(ip.header_len);
            let l4_header = match ip.flow.proto {
                IpProto::TCP => frame.get(l4 + 12).map_or(20, |b| u16::from(b >> 4) * 4),
                _ => 8,
            };
            (u16::from(ip.header_len) + l4_header).saturating_add(gso)
        }
        None => ip.total_len,
    }
}

/// The VPC carries packets of at most its MTU: larger ones (an instance that raised its MTU) are
/// dropped and counted, as AWS drops them; vpclab does not fragment.
fn within_vpc_mtu<O: Observer>(ip: &Ipv4Meta, frame: &[u8], off: Offload, obs: &mut O) -> Step<()> {
    let wire = wire_size(ip, frame, off);
    if wire <= VPC_MTU {
        return Ok(());
    }
    obs.record(Stage::Parse, format_args!("drop: {wire} bytes exceed the VPC's MTU of {VPC_MTU}"));
    Err(Verdict::Drop(DropReason::MtuExceeded))
}

/// The flow's own ports or ICMP type/code, in rule terms, for messages.
fn flow_ports(flow: &Flow) -> crate::model::PortMatch {
    use crate::model::{PortMatch, PortRange};
    let l4 = &flow.l4;
    match flow.proto {
        IpProto::TCP | IpProto::UDP => PortMatch::Ports(PortRange { from: l4.dst_port, to: l4.dst_port }),
        IpProto::ICMP => PortMatch::Icmp { icmp_type: Some(l4.icmp_type), icmp_code: Some(l4.icmp_code) },
        _ => PortMatch::Any,
    }
}

#[cfg(test)]
mod tests;
