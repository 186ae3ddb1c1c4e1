//! The checked, typed model of a lab: what `topology` produces once a file has passed validation,
//! and what every other module reads. References between objects are typed indices into the
//! model's vectors, so a `Model` can never point at something that does not exist. AWS defaults
//! (the VPC's main route table, default network ACL and default security group, an ENI's default
//! group, generated MACs) are already filled in here: nothing downstream re-applies a default.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Serialize;

use crate::packet::IpProto;

macro_rules! index_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub struct $name(pub u32);
        impl $name {
            /// The position in the model's vector.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    )*};
}

index_type!(
    /// Index into [`Model::vpcs`].
    VpcIdx,
    /// Index into [`Model::subnets`].
    SubnetIdx,
    /// Index into [`Model::enis`].
    EniIdx,
    /// Index into [`Model::instances`].
    InstanceIdx,
    /// Index into [`Model::security_groups`].
    SgIdx,
    /// Index into [`Model::network_acls`].
    AclIdx,
    /// Index into [`Model::route_tables`].
    RtbIdx,
    /// Index into [`Model::internet_gateways`].
    IgwIdx,
    /// Index into [`Model::nat_gateways`].
    NatIdx,
    /// Index into [`Model::elastic_ips`].
    EipIdx,
    /// Index into [`Model::peerings`].
    PcxIdx,
    /// Index into [`Model::traffic_mirror_targets`].
    TmtIdx,
    /// Index into [`Model::traffic_mirror_filters`].
    TmfIdx,
    /// Index into [`Model::vpc_endpoints`].
    VpceIdx,
);

mod endpoint;
pub use endpoint::{EndpointInterface, EndpointKind, PrefixList, VpcEndpoint, GATEWAY_SERVICES};

/// An IPv4 prefix, always stored with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix: u8,
}

impl Cidr {
    /// Builds a prefix, clearing host bits.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Cidr {
        assert!(prefix <= 32, "prefix length above 32");
        Cidr { addr: Ipv4Addr::from(u32::from(addr) & Self::mask_of(prefix)), prefix }
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    /// The netmask as a number.
    pub fn mask(self) -> u32 {
        Self::mask_of(self.prefix)
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether `other` lies wholly inside this prefix.
    pub fn contains_cidr(self, other: Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(self, other: Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }

    /// The address `n` places after the network address (wrapping inside the prefix is the caller's
    /// concern: used for base+1, base+2, ...).
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }

    /// The last address of the prefix (the broadcast address in AWS's reserved list).
    pub fn last(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// The VPC router's address in a subnet: base + 1.
    pub fn router(self) -> Ipv4Addr {
        self.nth(1)
    }

    /// AWS reserves base, base+1 (router), base+2 (DNS), base+3 and the last address.
    pub fn is_reserved(self, ip: Ipv4Addr) -> bool {
        let off = u32::from(ip).wrapping_sub(u32::from(self.addr));
        off <= 3 || ip == self.last()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a string is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/`.
    #[error("`{0}` is not a CIDR block: expected an address and a prefix length, like 10.0.0.0/16")]
    MissingSlash(String),
    /// The address part does not parse.
    #[error("`{0}` is not a CIDR block: the address is not an IPv4 address")]
    BadAddress(String),
    /// The prefix part does not parse or is above 32.
    #[error("`{0}` is not a CIDR block: the prefix length must be 0 to 32")]
    BadPrefix(String),
    /// Host bits are set (AWS rejects 10.0.1.5/24 as a subnet CIDR).
    #[error("`{0}` has host bits set: did you mean {1}?")]
    HostBits(String, Cidr),
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (a, p) = s.split_once('/').ok_or_else(|| CidrError::MissingSlash(s.into()))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::BadAddress(s.into()))?;
        let prefix: u8 = p.parse().map_err(|_| CidrError::BadPrefix(s.into()))?;
        if prefix > 32 {
            return Err(CidrError::BadPrefix(s.into()));
        }
        let c = Cidr::new(addr, prefix);
        if c.addr != addr {
            return Err(CidrError::HostBits(s.into(), c));
        }
        Ok(c)
    }
}

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast MAC derived stably from a name (FNV-1a of `salt` and `name`):
    /// the same ENI id always gets the same MAC, across runs and machines.
    pub fn generated(salt: &str, name: &str) -> Mac {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in salt.bytes().chain([0u8]).chain(name.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        // 0x02: locally administered, unicast. AWS's own ENI MACs start with 0x02 or 0x06 too.
        Mac([0x02, b[1], b[2], b[3], b[4], b[5]])
    }

    /// Whether the group (multicast/broadcast) bit is set.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        // `pad` so that tables can align MACs with `{:<18}`.
        f.pad(&format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]))
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address: expected six hex pairs like 02:00:00:00:02:50")]
pub struct MacError(pub String);

impl FromStr for Mac {
    type Err = MacError;
    fn from_str(s: &str) -> Result<Mac, MacError> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(|| MacError(s.into()))?;
            if p.len() != 2 {
                return Err(MacError(s.into()));
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| MacError(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(MacError(s.into()));
        }
        Ok(Mac(out))
    }
}

/// An IP protocol as security group and ACL rules name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// `all` or `-1`: every protocol, every port.
    All,
    /// One protocol, by IANA number (6 = TCP, 17 = UDP, 1 = ICMP, ...).
    Number(IpProto),
}

impl Protocol {
    /// TCP.
    pub const TCP: Protocol = Protocol::Number(IpProto::TCP);
    /// UDP.
    pub const UDP: Protocol = Protocol::Number(IpProto::UDP);
    /// ICMP.
    pub const ICMP: Protocol = Protocol::Number(IpProto::ICMP);

    /// Whether the protocol carries ports that rules may match (TCP, UDP).
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Number(p) if p.has_ports())
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port, inclusive.
    pub to: u16,
}

impl PortRange {
    /// Every port.
    pub const ALL: PortRange = PortRange { from: 0, to: 65535 };

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        self.from <= port && port <= self.to
    }
}

/// What a rule matches beyond the protocol: ports for TCP/UDP, type/code for ICMP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PortMatch {
    /// No restriction (protocol `all`, or a protocol without ports).
    Any,
    /// TCP/UDP destination port range.
    Ports(PortRange),
    /// ICMP type and code; `None` = all (AWS's -1).
    Icmp {
        /// ICMP type, or all.
        icmp_type: Option<u8>,
        /// ICMP code, or all.
        icmp_code: Option<u8>,
    },
}

/// The other side of a security group rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SgPeer {
    /// An IPv4 prefix.
    Cidr(Cidr),
    /// The private IPs of the ENIs that are members of this group.
    Group(SgIdx),
}

/// One allow rule of a security group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SgRule {
    /// The protocol matched.
    pub protocol: Protocol,
    /// Ports or ICMP type/code matched.
    pub ports: PortMatch,
    /// Source (ingress) or destination (egress).
    pub peer: SgPeer,
}

/// A security group.
#[derive(Clone, Debug, Serialize)]
pub struct SecurityGroup {
    /// Its id in the topology (`sg-web`), or `<vpc id>/default` for a VPC's default group.
    pub id: String,
    /// Its name (AWS's `GroupName`), unique in its VPC: as given, else its id; `default` for a
    /// VPC's default group.
    pub name: String,
    /// Free text (AWS's `Description`), if given.
    pub description: Option<String>,
    /// Its VPC.
    pub vpc: VpcIdx,
    /// Inbound allow rules.
    pub ingress: Vec<SgRule>,
    /// Outbound allow rules (a group declared without `egress` gets one allow-all rule).
    pub egress: Vec<SgRule>,
}

/// Allow or deny, for network ACL rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AclAction {
    /// Let the packet through.
    Allow,
    /// Drop it.
    Deny,
}

/// One numbered network ACL rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AclRule {
    /// Rule number, 1..=32766; lowest is evaluated first.
    pub number: u16,
    /// Protocol matched.
    pub protocol: Protocol,
    /// Ports or ICMP type/code matched.
    pub ports: PortMatch,
    /// Remote prefix (source for ingress, destination for egress).
    pub cidr: Cidr,
    /// What a match does.
    pub action: AclAction,
}

/// A network ACL. Rules are sorted by number; the implicit final deny (`*`) is not stored.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkAcl {
    /// Its id, or `<vpc id>/default-acl` for a VPC's default ACL.
    pub id: String,
    /// Its VPC.
    pub vpc: VpcIdx,
    /// Inbound rules, ascending by number.
    pub ingress: Vec<AclRule>,
    /// Outbound rules, ascending by number.
    pub egress: Vec<AclRule>,
}

/// Where a route sends matching packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RouteTarget {
    /// Within the VPC.
    Local,
    /// An internet gateway.
    InternetGateway(IgwIdx),
    /// A NAT gateway.
    NatGateway(NatIdx),
    /// An appliance ENI.
    Eni(EniIdx),
    /// A VPC peering connection.
    Peering(PcxIdx),
    /// A gateway VPC endpoint: only in compiled route tables, for the CIDRs of its service's
    /// prefix list (the model's routes never hold one; the endpoint names its tables).
    GatewayEndpoint(VpceIdx),
    /// Dropped.
    Blackhole,
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// The destination prefix.
    pub destination: Cidr,
    /// The target.
    pub target: RouteTarget,
}

/// A route table. `routes` holds the implicit local route for the VPC CIDR first, then the
/// file's routes in file order.
#[derive(Clone, Debug, Serialize)]
pub struct RouteTable {
    /// Its id, or `<vpc id>/main` for an implicit main table.
    pub id: String,
    /// Its VPC.
    pub vpc: VpcIdx,
    /// Routes, local first.
    pub routes: Vec<Route>,
}

/// A VPC.
#[derive(Clone, Debug, Serialize)]
pub struct Vpc {
    /// Its id.
    pub id: String,
    /// Its CIDR block.
    pub cidr: Cidr,
    /// The router's MAC (one per VPC), generated from the VPC id.
    pub router_mac: Mac,
    /// The main route table (given, or an implicit one holding only the local route).
    pub main_route_table: RtbIdx,
    /// The default network ACL (allows all both ways, rule 100).
    pub default_network_acl: AclIdx,
    /// The default security group (inbound from its own members, outbound all).
    pub default_security_group: SgIdx,
    /// `enable_dns_support`: the Amazon DNS server answers in this VPC (AWS's default: true).
    pub enable_dns_support: bool,
    /// `enable_dns_hostnames`: ENIs with an Elastic IP get a public DNS name (AWS's default for
    /// a VPC that is not the account's default VPC: false).
    pub enable_dns_hostnames: bool,
}

/// A subnet.
#[derive(Clone, Debug, Serialize)]
pub struct Subnet {
    /// Its id.
    pub id: String,
    /// Its VPC.
    pub vpc: VpcIdx,
    /// Its CIDR block, /16 to /28, inside the VPC's.
    pub cidr: Cidr,
    /// Availability zone, if given.
    pub availability_zone: Option<String>,
    /// The route table in force (its own, else the VPC's main table).
    pub route_table: RtbIdx,
    /// The network ACL in force (its own, else the VPC's default ACL).
    pub network_acl: AclIdx,
}

/// An ENI's connection tracking: idle timeouts in seconds (AWS defaults and ranges) and the
/// bound on tracked connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConntrackConfig {
    /// 60..=432000, default 432000.
    pub tcp_established: u32,
    /// 60..=180, default 180.
    pub udp_stream: u32,
    /// 30..=60, default 30.
    pub udp: u32,
    /// Most connections tracked at once; past it new ones are dropped (AWS's
    /// `conntrack_allowance_exceeded`). AWS sizes this per instance type and does not publish it;
    /// vpclab's default is [`ConntrackConfig::DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: u32,
}

impl ConntrackConfig {
    /// vpclab's default bound on tracked connections per ENI.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 65_536;
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            tcp_established: 432_000,
            udp_stream: 180,
            udp: 30,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Where an ENI is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// The instance.
    pub instance: InstanceIdx,
    /// Device index: the ENI appears as `eth<device_index>` in the instance.
    pub device_index: u32,
    /// Whether terminating the instance deletes the ENI (AWS: true for an ENI created with the
    /// instance, false for one attached later).
    pub delete_on_termination: bool,
}

/// An elastic network interface.
#[derive(Clone, Debug, Serialize)]
pub struct Eni {
    /// Its id.
    pub id: String,
    /// Its subnet.
    pub subnet: SubnetIdx,
    /// Primary private IPv4.
    pub private_ip: Ipv4Addr,
    /// Secondary private IPv4s.
    pub secondary_private_ips: Vec<Ipv4Addr>,
    /// Security groups, never empty (the VPC's default group when none is named).
    pub security_groups: Vec<SgIdx>,
    /// Its MAC (given, or generated from the id).
    pub mac: Mac,
    /// Source/destination check.
    pub source_dest_check: bool,
    /// Free text.
    pub description: Option<String>,
    /// Connection tracking timeouts and bound.
    pub connection_tracking: ConntrackConfig,
    /// Attachment, if any.
    pub attachment: Option<Attachment>,
}

impl Eni {
    /// Primary then secondary private IPs.
    pub fn private_ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.private_ip).chain(self.secondary_private_ips.iter().copied())
    }
}

/// An instance (a network namespace).
#[derive(Clone, Debug, Serialize)]
pub struct Instance {
    /// Its id; the namespace is `<lab>-<id>`.
    pub id: String,
    /// Instance type, if given (its ENI and IP limits were enforced).
    pub instance_type: Option<String>,
    /// Running or stopped (a terminated instance leaves the model).
    pub state: InstanceState,
    /// How its instance metadata service answers (`metadata_options`).
    pub metadata: MetadataOptions,
}

/// An instance's `metadata_options`, as EC2's `InstanceMetadataOptions`. The defaults are
/// RunInstances' without an AMI that asks otherwise: tokens optional, hop limit 1, enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MetadataOptions {
    /// `http_tokens = "required"`: IMDSv2 only; `"optional"`: IMDSv1 too.
    pub tokens_required: bool,
    /// `http_put_response_hop_limit` (1-64): the IP TTL of the token's reply.
    pub hop_limit: u8,
    /// `http_endpoint = "enabled"`: the instance reaches 169.254.169.254 at all.
    pub endpoint_enabled: bool,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions { tokens_required: false, hop_limit: 1, endpoint_enabled: true }
    }
}

/// The instance metadata service's address, as on EC2.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// An instance's state, as EC2 reports it (the transitional states pass at once here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Its namespace carries traffic and runs processes.
    #[default]
    Running,
    /// Its processes ended; its ENIs stay attached but carry nothing.
    Stopped,
}

impl InstanceState {
    /// EC2's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Running => "running",
            InstanceState::Stopped => "stopped",
        }
    }
}

/// An internet gateway.
#[derive(Clone, Debug, Serialize)]
pub struct InternetGateway {
    /// Its id.
    pub id: String,
    /// The VPC it is attached to; `None` while detached (as AWS creates it): it carries nothing,
    /// and a route to it is a blackhole.
    pub vpc: Option<VpcIdx>,
}

/// An Elastic IP and its association.
#[derive(Clone, Debug, Serialize)]
pub struct ElasticIp {
    /// Its allocation id.
    pub id: String,
    /// The public address.
    pub public_ip: Ipv4Addr,
    /// Associated ENI and private IP (defaults to the ENI's primary), if any.
    pub association: Option<(EniIdx, Ipv4Addr)>,
}

/// A NAT gateway.
#[derive(Clone, Debug, Serialize)]
pub struct NatGateway {
    /// Its id.
    pub id: String,
    /// Its (public) subnet.
    pub subnet: SubnetIdx,
    /// Its private IP (given, or the subnet's first free address).
    pub private_ip: Ipv4Addr,
    /// Its Elastic IP; `None` is a private NAT gateway.
    pub elastic_ip: Option<EipIdx>,
    /// Source ports it allocates: AWS's 1024-65535 unless the file narrows it (`ports`, a
    /// vpclab extension for rehearsing port exhaustion).
    pub ports: PortRange,
    /// `source_ports = "preserve"` (a vpclab option): keep a client's source port when it is
    /// free, as a NAT instance does; by default ports are spread over the whole range, as AWS
    /// documents its NAT gateway's use of 1024-65535 (see the README).
    pub preserve_ports: bool,
}

impl NatGateway {
    /// The source ports AWS's NAT gateway uses.
    pub const AWS_PORTS: PortRange = PortRange { from: 1024, to: 65535 };

    /// The id of the network interface a NAT gateway with id `nat_id` has in its subnet:
    /// `eni-` and the NAT gateway's whole id (`nat-main` -> `eni-nat-main`). AWS gives this
    /// requester-managed interface an unrelated random id; the lab derives it, so it is stable
    /// for the life of the lab and says whose it is. The one place the derivation is made: flow
    /// logs, validation and `status` all call this.
    pub fn interface_id_of(nat_id: &str) -> String {
        format!("eni-{nat_id}")
    }

    /// The id of its network interface ([`NatGateway::interface_id_of`]).
    pub fn interface_id(&self) -> String {
        NatGateway::interface_id_of(&self.id)
    }
}

/// A VPC peering connection.
#[derive(Clone, Debug, Serialize)]
pub struct VpcPeering {
    /// Its id.
    pub id: String,
    /// Requester side.
    pub requester_vpc: VpcIdx,
    /// Accepter side.
    pub accepter_vpc: VpcIdx,
    /// Active, or waiting for the accepter (as AWS creates it): a pending connection carries
    /// nothing, and a route to it is a blackhole.
    pub status: PeeringStatus,
}

/// A VPC peering connection's state, as EC2 names it (the transitional ones pass at once here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeeringStatus {
    /// Accepted: traffic flows where routes send it.
    #[default]
    Active,
    /// Requested, not yet accepted.
    PendingAcceptance,
}

impl PeeringStatus {
    /// EC2's name for the state: `active`, `pending-acceptance`.
    pub fn name(self) -> &'static str {
        match self {
            PeeringStatus::Active => "active",
            PeeringStatus::PendingAcceptance => "pending-acceptance",
        }
    }
}

/// A host on the emulated internet.
#[derive(Clone, Debug, Serialize)]
pub struct InternetHost {
    /// Its id.
    pub id: String,
    /// Its public address.
    pub ip: Ipv4Addr,
    /// The AWS service it plays (`s3`, `dynamodb`, ...), which VPC endpoints reach it as.
    pub service: Option<String>,
    /// Its DNS name (`name`), if given; see [`InternetHost::dns_name`].
    pub name: Option<String>,
}

impl InternetHost {
    /// The name the Amazon DNS server answers for it: its `name`, else its id.
    pub fn dns_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// The internet side on a host interface instead of the emulated internet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Uplink {
    /// The host interface (a veth, a NIC) whose network plays the internet.
    pub interface: String,
    /// The next hop on it for everything leaving through the internet gateway.
    pub gateway: Ipv4Addr,
}

/// A whole checked lab.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Model {
    /// The lab's name: prefixes every namespace and device.
    pub name: String,
    /// VPCs.
    pub vpcs: Vec<Vpc>,
    /// Subnets.
    pub subnets: Vec<Subnet>,
    /// ENIs.
    pub enis: Vec<Eni>,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Security groups, the VPCs' default groups included.
    pub security_groups: Vec<SecurityGroup>,
    /// Network ACLs, the VPCs' default ACLs included.
    pub network_acls: Vec<NetworkAcl>,
    /// Route tables, implicit main tables included.
    pub route_tables: Vec<RouteTable>,
    /// Internet gateways.
    pub internet_gateways: Vec<InternetGateway>,
    /// NAT gateways.
    pub nat_gateways: Vec<NatGateway>,
    /// Elastic IPs.
    pub elastic_ips: Vec<ElasticIp>,
    /// Peering connections.
    pub peerings: Vec<VpcPeering>,
    /// Hosts of the emulated internet.
    pub internet_hosts: Vec<InternetHost>,
    /// The internet on a host interface instead (exclusive with `internet_hosts`).
    pub uplink: Option<Uplink>,
    /// Traffic mirror targets.
    pub traffic_mirror_targets: Vec<TrafficMirrorTarget>,
    /// Traffic mirror filters.
    pub traffic_mirror_filters: Vec<TrafficMirrorFilter>,
    /// Traffic mirror sessions.
    pub traffic_mirror_sessions: Vec<TrafficMirrorSession>,
    /// VPC Flow Logs.
    pub flow_logs: Vec<FlowLog>,
    /// `[api]`: where the EC2 Query API listens and the credentials it checks.
    pub api: ApiSettings,
    /// The lab's AWS region as written (`region`); `None` is us-east-1, see [`Model::region`].
    pub region: Option<String>,
    /// DHCP options sets (`[[dhcp_options]]`), each with the VPCs that use it.
    pub dhcp_options: Vec<DhcpOptionsSet>,
    /// VPC endpoints (`[[vpc_endpoint]]`), gateway and interface.
    pub vpc_endpoints: Vec<VpcEndpoint>,
    /// Who gives instances their addresses (`instance_network`).
    pub instance_network: InstanceNetwork,
}

/// Who configures an instance's interfaces when it starts or an ENI is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum InstanceNetwork {
    /// vpclab sets addresses, MTU and routes itself, as ec2-net-utils would (the default).
    #[default]
    Static,
    /// A DHCP client (Debian's `dhclient`) runs on each interface and asks the fabric.
    Dhcp,
}

/// The region a lab without a `region` setting is in.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A name server entry of a DHCP options set: the VPC's own resolver (base + 2) or an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NameServer {
    /// `AmazonProvidedDNS`: the VPC's base + 2.
    AmazonProvidedDns,
    /// A given address.
    Address(Ipv4Addr),
}

/// A DHCP options set (AWS's `DhcpOptions`), as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DhcpOptionsSet {
    /// Its id (`dopt-...`).
    pub id: String,
    /// The domain name handed out; `None`: AWS's default for the region.
    pub domain_name: Option<String>,
    /// Name servers; empty: `AmazonProvidedDNS`.
    pub domain_name_servers: Vec<NameServer>,
    /// NTP servers (option 42); empty: none handed out.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// The VPCs associated with it.
    pub vpcs: Vec<VpcIdx>,
}

/// What the fabric's DHCP server hands out in one VPC, resolved from its options set (or AWS's
/// defaults when it has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpSettings {
    /// Option 15.
    pub domain_name: String,
    /// Option 6.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 42 (omitted when empty).
    pub ntp_servers: Vec<Ipv4Addr>,
}

/// The EC2 Query API's settings (`[api]`); the endpoint is off unless `listen` (or `up --api`)
/// gives an address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApiSettings {
    /// The address to serve on.
    pub listen: Option<std::net::SocketAddr>,
    /// The access key id and secret requests must be signed with (SigV4); `None`: any
    /// signature, or none, is accepted.
    pub credentials: Option<(String, String)>,
}

/// Accept or reject, for traffic mirror filter rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MirrorAction {
    /// Mirror the packet.
    Accept,
    /// Do not mirror it.
    Reject,
}

/// One numbered rule of a traffic mirror filter (AWS's `TrafficMirrorFilterRule`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MirrorRule {
    /// Rule number, 1..=32766; lowest is evaluated first.
    pub number: u16,
    /// What a match does.
    pub action: MirrorAction,
    /// Protocol matched (`All` when the rule names none).
    pub protocol: Protocol,
    /// Source ports matched (TCP and UDP only; every port otherwise).
    pub source_ports: PortRange,
    /// Destination ports matched (TCP and UDP only; every port otherwise).
    pub destination_ports: PortRange,
    /// Source prefix.
    pub source_cidr: Cidr,
    /// Destination prefix.
    pub destination_cidr: Cidr,
}

impl MirrorRule {
    /// Whether the rule matches a packet of `proto` from `src`:`sport` to `dst`:`dport`.
    pub fn matches(&self, proto: IpProto, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> bool {
        let proto_ok = match self.protocol {
            Protocol::All => true,
            Protocol::Number(p) => p == proto,
        };
        let ports_ok =
            !self.protocol.has_ports() || (self.source_ports.contains(sport) && self.destination_ports.contains(dport));
        proto_ok && ports_ok && self.source_cidr.contains(src) && self.destination_cidr.contains(dst)
    }
}

/// Where mirrored traffic goes: an ENI (AWS also offers load balancers, not emulated here).
#[derive(Clone, Debug, Serialize)]
pub struct TrafficMirrorTarget {
    /// Its id.
    pub id: String,
    /// The ENI receiving the copies.
    pub eni: EniIdx,
}

/// What a session mirrors: inbound and outbound rules, each sorted by number. No rules in a
/// direction: nothing of that direction is mirrored.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficMirrorFilter {
    /// Its id.
    pub id: String,
    /// Rules for traffic delivered to the source ENI, ascending by number.
    pub ingress: Vec<MirrorRule>,
    /// Rules for traffic the source ENI sends, ascending by number.
    pub egress: Vec<MirrorRule>,
}

impl TrafficMirrorFilter {
    /// Whether the first rule of a direction that matches accepts the packet.
    pub fn accepts(&self, ingress: bool, proto: IpProto, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> bool {
        let rules = if ingress { &self.ingress } else { &self.egress };
        rules
            .iter()
            .find(|r| r.matches(proto, src, dst, sport, dport))
            .is_some_and(|r| r.action == MirrorAction::Accept)
    }
}

/// A traffic mirror session: copies of what `source` sends and receives that `filter` accepts go
/// to `target` in VXLAN.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficMirrorSession {
    /// Its id.
    pub id: String,
    /// The mirrored ENI.
    pub source: EniIdx,
    /// Where copies go.
    pub target: TmtIdx,
    /// What is mirrored.
    pub filter: TmfIdx,
    /// 1..=32766: of a source's sessions, the lowest number whose filter accepts a packet
    /// mirrors it.
    pub session_number: u16,
    /// The VXLAN network identifier (24 bits).
    pub virtual_network_id: u32,
    /// Bytes kept of each packet after the VXLAN header; the whole packet when `None`.
    pub packet_length: Option<u16>,
}

impl TrafficMirrorSession {
    /// The VNI a session gets when the file gives none: AWS picks a random unique one; vpclab
    /// derives one from the session id (FNV-1a, 24 bits) so the same file gives the same lab.
    pub fn default_vni(id: &str) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in id.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h & 0x00ff_ffff
    }
}

/// What a flow log covers: one ENI, every ENI of a subnet, or every ENI of a VPC. A NAT
/// gateway's network interface counts as an ENI of its subnet and VPC, as on AWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FlowLogResource {
    /// One ENI.
    Eni(EniIdx),
    /// One NAT gateway's network interface.
    NatInterface(NatIdx),
    /// The ENIs of a subnet.
    Subnet(SubnetIdx),
    /// The ENIs of a VPC.
    Vpc(VpcIdx),
}

/// Which records a flow log keeps (AWS's `TrafficType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TrafficType {
    /// Accepted traffic only.
    Accept,
    /// Rejected traffic only.
    Reject,
    /// Both.
    All,
}

impl TrafficType {
    /// AWS's name: `ACCEPT`, `REJECT` or `ALL`.
    pub fn name(self) -> &'static str {
        match self {
            TrafficType::Accept => "ACCEPT",
            TrafficType::Reject => "REJECT",
            TrafficType::All => "ALL",
        }
    }
}

/// A VPC Flow Log delivered to a file (`[[flow_log]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowLog {
    /// Its id (`fl-web`).
    pub id: String,
    /// What it covers.
    pub resource: FlowLogResource,
    /// Which records it keeps.
    pub traffic_type: TrafficType,
    /// The file records are appended to: as written, or made absolute against the topology
    /// file's folder when the file was read from disk.
    pub destination: String,
    /// AWS's `${field}` format, checked; `None` is the default (version 2) format.
    pub log_format: Option<String>,
    /// Seconds per aggregation interval: 60 or 600 as in AWS, 1 to 600 in a lab.
    pub max_aggregation_interval: u32,
    /// The account id written in records, if given.
    pub account_id: Option<String>,
}

impl FlowLog {
    /// AWS's default aggregation interval.
    pub const DEFAULT_INTERVAL: u32 = 600;
}

impl Model {
    /// The lab's region: its `region` setting, else us-east-1.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(DEFAULT_REGION)
    }

    /// The region's domain for private DNS names, and the DHCP default: `ec2.internal` in
    /// us-east-1, else `<region>.compute.internal`.
    pub fn private_domain(&self) -> String {
        match self.region() {
            DEFAULT_REGION => "ec2.internal".to_string(),
            region => format!("{region}.compute.internal"),
        }
    }

    /// An address's private DNS name: `ip-10-0-1-10.ec2.internal`. Always under the region's
    /// domain, whatever domain the VPC's DHCP options set hands out (as on AWS).
    pub fn private_dns_name(&self, ip: Ipv4Addr) -> String {
        let o = ip.octets();
        format!("ip-{}-{}-{}-{}.{}", o[0], o[1], o[2], o[3], self.private_domain())
    }

    /// A public address's DNS name: `ec2-203-0-113-20.compute-1.amazonaws.com` in us-east-1,
    /// else `ec2-...<region>.compute.amazonaws.com`.
    pub fn public_dns_name(&self, ip: Ipv4Addr) -> String {
        let o = ip.octets();
        match self.region() {
            DEFAULT_REGION => format!("ec2-{}-{}-{}-{}.compute-1.amazonaws.com", o[0], o[1], o[2], o[3]),
            region => format!("ec2-{}-{}-{}-{}.{region}.compute.amazonaws.com", o[0], o[1], o[2], o[3]),
        }
    }

    /// What the DHCP server hands out in `vpc`: its options set's values, AWS's defaults where
    /// absent (`AmazonProvidedDNS` at base + 2; [`Model::private_domain`]).
    pub fn dhcp_settings(&self, vpc: VpcIdx) -> DhcpSettings {
        let set = self.dhcp_options.iter().find(|d| d.vpcs.contains(&vpc));
        let amazon_dns = self.vpcs[vpc.index()].cidr.nth(2);
        let default_domain = self.private_domain();
        let servers = set.map(|d| d.domain_name_servers.as_slice()).unwrap_or_default();
        let dns_servers = if servers.is_empty() {
            vec![amazon_dns]
        } else {
            servers
                .iter()
                .map(|s| match s {
                    NameServer::AmazonProvidedDns => amazon_dns,
                    NameServer::Address(a) => *a,
                })
                .collect()
        };
        DhcpSettings {
            domain_name: set.and_then(|d| d.domain_name.clone()).unwrap_or(default_domain),
            dns_servers,
            ntp_servers: set.map(|d| d.ntp_servers.clone()).unwrap_or_default(),
        }
    }

    /// The ENIs a flow log covers, in model order.
    pub fn flow_log_enis(&self, resource: FlowLogResource) -> Vec<EniIdx> {
        (0..self.enis.len() as u32)
            .map(EniIdx)
            .filter(|&e| match resource {
                FlowLogResource::Eni(x) => x == e,
                FlowLogResource::NatInterface(_) => false,
                FlowLogResource::Subnet(s) => self.enis[e.index()].subnet == s,
                FlowLogResource::Vpc(v) => self.vpc_of(e) == v,
            })
            .collect()
    }

    /// The NAT gateways whose network interface a flow log covers, in model order.
    pub fn flow_log_nat_gateways(&self, resource: FlowLogResource) -> Vec<NatIdx> {
        (0..self.nat_gateways.len() as u32)
            .map(NatIdx)
            .filter(|&n| {
                let subnet = self.nat_gateways[n.index()].subnet;
                match resource {
                    FlowLogResource::Eni(_) => false,
                    FlowLogResource::NatInterface(x) => x == n,
                    FlowLogResource::Subnet(s) => subnet == s,
                    FlowLogResource::Vpc(v) => self.subnets[subnet.index()].vpc == v,
                }
            })
            .collect()
    }

    /// The id of what a flow log covers.
    pub fn flow_log_resource_id(&self, resource: FlowLogResource) -> String {
        match resource {
            FlowLogResource::Eni(e) => self.enis[e.index()].id.clone(),
            FlowLogResource::NatInterface(n) => self.nat_gateways[n.index()].interface_id(),
            FlowLogResource::Subnet(s) => self.subnets[s.index()].id.clone(),
            FlowLogResource::Vpc(v) => self.vpcs[v.index()].id.clone(),
        }
    }
}

/// The emulated internet's next hop for its hosts: the forwarder answers ARP for it with the
/// internet gateway's MAC. Link-local, so it can never be one of the lab's addresses.
pub const INTERNET_GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);

/// The MTU towards the internet gateway, as on AWS.
pub const INTERNET_MTU: u16 = 1500;

impl Model {
    /// Whether the lab has an internet side: the emulated one, or an uplink.
    pub fn has_internet(&self) -> bool {
        !self.internet_hosts.is_empty() || self.uplink.is_some()
    }

    /// Whether the lab has the emulated internet (a namespace holding the `[internet]` hosts).
    pub fn has_emulated_internet(&self) -> bool {
        !self.internet_hosts.is_empty()
    }

    /// Every public address of the lab (Elastic IPs), which the internet side reaches it at.
    pub fn public_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.elastic_ips.iter().map(|e| e.public_ip)
    }

    /// The emulated internet's namespace: `<lab>-internet` (`internet` is no instance id).
    pub fn internet_netns(&self) -> String {
        format!("{}-internet", self.name)
    }

    /// The namespace of the fabric's own services (instance metadata): `<lab>-svc`.
    pub fn service_netns(&self) -> String {
        format!("{}-svc", self.name)
    }

    /// The MAC of the service namespace's interface.
    pub fn service_host_mac(&self) -> Mac {
        Mac::generated("service-host", &self.name)
    }

    /// The MAC the fabric sends to the service namespace from (and answers its ARP with).
    pub fn service_gateway_mac(&self) -> Mac {
        Mac::generated("service-gateway", &self.name)
    }

    /// The MAC of the internet namespace's interface.
    pub fn internet_host_mac(&self) -> Mac {
        Mac::generated("internet-hosts", &self.name)
    }

    /// The MAC the lab answers ARP with on an uplink, for its public addresses.
    pub fn uplink_mac(&self) -> Mac {
        Mac::generated("uplink", &self.name)
    }

    /// The MAC the internet side sees for the internet gateway (its next hop).
    pub fn internet_gateway_mac(&self) -> Mac {
        Mac::generated("internet-gateway", &self.name)
    }

    /// The subnet an ENI is in.
    pub fn subnet_of(&self, eni: EniIdx) -> &Subnet {
        &self.subnets[self.enis[eni.index()].subnet.index()]
    }

    /// The VPC an ENI is in.
    pub fn vpc_of(&self, eni: EniIdx) -> VpcIdx {
        self.subnet_of(eni).vpc
    }

    /// The network namespace name of an instance: `<lab>-<instance id>`.
    pub fn netns_name(&self, instance: InstanceIdx) -> String {
        format!("{}-{}", self.name, self.instances[instance.index()].id)
    }

    /// The instance's hostname as EC2 sets it: the private DNS name's first label of its primary
    /// address (`ip-10-0-1-10`); the instance id while it has no ENI.
    pub fn instance_hostname(&self, instance: InstanceIdx) -> String {
        match self.enis_of(instance).first() {
            Some(e) => format!("ip-{}", self.enis[e.index()].private_ip.to_string().replace('.', "-")),
            None => self.instances[instance.index()].id.clone(),
        }
    }

    /// Finds an instance by id.
    pub fn instance_by_id(&self, id: &str) -> Option<InstanceIdx> {
        self.instances.iter().position(|i| i.id == id).map(|i| InstanceIdx(i as u32))
    }

    /// Finds an ENI by id.
    pub fn eni_by_id(&self, id: &str) -> Option<EniIdx> {
        self.enis.iter().position(|e| e.id == id).map(|i| EniIdx(i as u32))
    }

    /// ENIs attached to `instance`, by device index.
    pub fn enis_of(&self, instance: InstanceIdx) -> Vec<EniIdx> {
        let mut v: Vec<(u32, EniIdx)> = self
            .enis
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let a = e.attachment?;
                (a.instance == instance).then_some((a.device_index, EniIdx(i as u32)))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, e)| e).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_reserved() {
        let c: Cidr = "10.0.1.0/24".parse().unwrap();
        assert_eq!(c.router(), Ipv4Addr::new(10, 0, 1, 1));
        assert!(c.is_reserved(Ipv4Addr::new(10, 0, 1, 3)));
        assert!(c.is_reserved(Ipv4Addr::new(10, 0, 1, 255)));
        assert!(!c.is_reserved(Ipv4Addr::new(10, 0, 1, 4)));
        assert!(matches!("10.0.1.5/24".parse::<Cidr>(), Err(CidrError::HostBits(..))));
        assert!("10.0.0.0/16".parse::<Cidr>().unwrap().contains_cidr(c));
        assert!(c.overlaps("10.0.0.0/16".parse().unwrap()));
        assert!(!c.overlaps("10.0.2.0/24".parse().unwrap()));
    }

    #[test]
    fn generated_macs_are_stable_local_unicast() {
        let a = Mac::generated("eni", "eni-web");
        assert_eq!(a, Mac::generated("eni", "eni-web"));
        assert_ne!(a, Mac::generated("eni", "eni-app"));
        assert_eq!(a.0[0], 0x02);
        assert_eq!("02:00:00:00:02:50".parse::<Mac>().unwrap().to_string(), "02:00:00:00:02:50");
    }
}
