//! The JSON shapes that `aws ec2 describe-*` prints, as far as vpclab reads them. Field names are
//! AWS's (PascalCase); unknown fields are ignored, so output from newer CLIs still reads. Values a
//! person could get wrong (CIDRs, addresses, MACs) stay strings here and are checked by the
//! importer, which can then name the field that holds a bad one.

use serde::Deserialize;

/// `describe-vpcs`: `Vpcs[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Vpc {
    pub(crate) vpc_id: String,
    pub(crate) cidr_block: String,
    #[serde(default)]
    pub(crate) cidr_block_association_set: Vec<CidrAssociation>,
    #[serde(default)]
    pub(crate) ipv6_cidr_block_association_set: Vec<Ipv6CidrAssociation>,
}

/// One of a VPC's IPv4 CIDR blocks.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CidrAssociation {
    pub(crate) cidr_block: String,
    pub(crate) cidr_block_state: Option<BlockState>,
}

/// The state of a CIDR block association (`associated`, `disassociated`, ...).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BlockState {
    pub(crate) state: String,
}

/// One of a VPC's or subnet's IPv6 CIDR blocks.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Ipv6CidrAssociation {
    pub(crate) ipv6_cidr_block: Option<String>,
}

/// `describe-subnets`: `Subnets[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Subnet {
    pub(crate) subnet_id: String,
    pub(crate) vpc_id: String,
    pub(crate) cidr_block: String,
    pub(crate) availability_zone: Option<String>,
    #[serde(default)]
    pub(crate) ipv6_cidr_block_association_set: Vec<Ipv6CidrAssociation>,
}

/// `describe-network-interfaces`: `NetworkInterfaces[]`; also the shape of an instance's
/// `NetworkInterfaces[]` in `describe-instances` (whose attachment names no instance).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NetworkInterface {
    pub(crate) network_interface_id: String,
    pub(crate) subnet_id: String,
    pub(crate) private_ip_address: Option<String>,
    #[serde(default)]
    pub(crate) private_ip_addresses: Vec<PrivateIp>,
    #[serde(default)]
    pub(crate) ipv6_addresses: Vec<serde_json::Value>,
    pub(crate) mac_address: Option<String>,
    pub(crate) source_dest_check: Option<bool>,
    #[serde(default)]
    pub(crate) groups: Vec<GroupRef>,
    pub(crate) attachment: Option<EniAttachment>,
    /// `interface`, `nat_gateway`, `vpc_endpoint`, `transit_gateway`, `efa`, ...
    pub(crate) interface_type: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) connection_tracking_configuration: Option<ConnectionTracking>,
}

/// One private IPv4 address of an ENI, with its public address if it has one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PrivateIp {
    pub(crate) private_ip_address: String,
    #[serde(default)]
    pub(crate) primary: bool,
    pub(crate) association: Option<IpAssociation>,
}

/// The public address of a private IP: an Elastic IP (with an allocation id) or one AWS assigned.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct IpAssociation {
    pub(crate) public_ip: Option<String>,
    pub(crate) allocation_id: Option<String>,
}

/// A security group named by an ENI.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GroupRef {
    pub(crate) group_id: String,
}

/// An ENI's attachment.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EniAttachment {
    /// Absent inside `describe-instances` (the enclosing instance) and for service-owned ENIs.
    pub(crate) instance_id: Option<String>,
    pub(crate) device_index: Option<i64>,
    pub(crate) delete_on_termination: Option<bool>,
}

/// An ENI's connection tracking timeouts, when set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConnectionTracking {
    pub(crate) tcp_established_timeout: Option<i64>,
    pub(crate) udp_stream_timeout: Option<i64>,
    pub(crate) udp_timeout: Option<i64>,
}

/// `describe-instances`: `Reservations[].Instances[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Instance {
    pub(crate) instance_id: String,
    pub(crate) instance_type: Option<String>,
    pub(crate) state: Option<InstanceState>,
    #[serde(default)]
    pub(crate) network_interfaces: Vec<NetworkInterface>,
}

/// An instance's state (`pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InstanceState {
    pub(crate) name: String,
}

/// `describe-security-groups`: `SecurityGroups[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SecurityGroup {
    pub(crate) group_id: String,
    pub(crate) group_name: Option<String>,
    pub(crate) description: Option<String>,
    /// EC2-Classic groups have none.
    pub(crate) vpc_id: Option<String>,
    #[serde(default)]
    pub(crate) ip_permissions: Vec<Permission>,
    #[serde(default)]
    pub(crate) ip_permissions_egress: Vec<Permission>,
}

/// One `IpPermissions[]` entry: a protocol and ports, and the peers it allows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Permission {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `-1` (all) or a protocol number.
    pub(crate) ip_protocol: String,
    /// The first port; for ICMP the type (-1: all).
    pub(crate) from_port: Option<i64>,
    /// The last port; for ICMP the code (-1: all).
    pub(crate) to_port: Option<i64>,
    #[serde(default)]
    pub(crate) ip_ranges: Vec<IpRange>,
    #[serde(default)]
    pub(crate) ipv6_ranges: Vec<Ipv6Range>,
    #[serde(default)]
    pub(crate) prefix_list_ids: Vec<PrefixListId>,
    #[serde(default)]
    pub(crate) user_id_group_pairs: Vec<GroupPair>,
}

/// An IPv4 peer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct IpRange {
    pub(crate) cidr_ip: String,
}

/// An IPv6 peer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Ipv6Range {
    pub(crate) cidr_ipv6: String,
}

/// A prefix list peer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PrefixListId {
    pub(crate) prefix_list_id: String,
}

/// A security group peer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GroupPair {
    pub(crate) group_id: Option<String>,
}

/// `describe-route-tables`: `RouteTables[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RouteTable {
    pub(crate) route_table_id: String,
    pub(crate) vpc_id: String,
    #[serde(default)]
    pub(crate) routes: Vec<Route>,
    #[serde(default)]
    pub(crate) associations: Vec<RouteTableAssociation>,
}

/// One route: a destination and exactly one target field.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Route {
    pub(crate) destination_cidr_block: Option<String>,
    pub(crate) destination_ipv6_cidr_block: Option<String>,
    pub(crate) destination_prefix_list_id: Option<String>,
    /// `local`, `igw-...`, `vgw-...` or a gateway endpoint `vpce-...`.
    pub(crate) gateway_id: Option<String>,
    pub(crate) nat_gateway_id: Option<String>,
    pub(crate) network_interface_id: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) transit_gateway_id: Option<String>,
    pub(crate) vpc_peering_connection_id: Option<String>,
    pub(crate) egress_only_internet_gateway_id: Option<String>,
    pub(crate) carrier_gateway_id: Option<String>,
    pub(crate) local_gateway_id: Option<String>,
    pub(crate) core_network_arn: Option<String>,
    /// `active`, or `blackhole` when the target is gone.
    pub(crate) state: Option<String>,
}

/// A route table's association with a subnet, a gateway (edge association) or the VPC (main).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RouteTableAssociation {
    #[serde(default)]
    pub(crate) main: bool,
    pub(crate) subnet_id: Option<String>,
    pub(crate) gateway_id: Option<String>,
}

/// `describe-network-acls`: `NetworkAcls[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NetworkAcl {
    pub(crate) network_acl_id: String,
    pub(crate) vpc_id: String,
    #[serde(default)]
    pub(crate) entries: Vec<AclEntry>,
    #[serde(default)]
    pub(crate) associations: Vec<AclAssociation>,
}

/// One network ACL entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AclEntry {
    pub(crate) rule_number: i64,
    /// A protocol number as a string, or `-1` for all.
    pub(crate) protocol: String,
    /// `allow` or `deny`.
    pub(crate) rule_action: String,
    pub(crate) egress: bool,
    pub(crate) cidr_block: Option<String>,
    pub(crate) ipv6_cidr_block: Option<String>,
    pub(crate) port_range: Option<AclPortRange>,
    pub(crate) icmp_type_code: Option<IcmpTypeCode>,
}

/// An ACL entry's ports.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AclPortRange {
    pub(crate) from: Option<i64>,
    pub(crate) to: Option<i64>,
}

/// An ACL entry's ICMP type and code (-1: all).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct IcmpTypeCode {
    #[serde(rename = "Type")]
    pub(crate) icmp_type: Option<i64>,
    pub(crate) code: Option<i64>,
}

/// A network ACL's subnet association.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AclAssociation {
    pub(crate) subnet_id: String,
}

/// `describe-addresses`: `Addresses[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Address {
    /// EC2-Classic addresses have none.
    pub(crate) allocation_id: Option<String>,
    pub(crate) public_ip: String,
    pub(crate) network_interface_id: Option<String>,
    pub(crate) private_ip_address: Option<String>,
}

/// `describe-nat-gateways`: `NatGateways[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NatGateway {
    pub(crate) nat_gateway_id: String,
    pub(crate) subnet_id: String,
    /// `pending`, `available`, `deleting`, `deleted`, `failed`.
    pub(crate) state: Option<String>,
    /// `public` (default) or `private`.
    pub(crate) connectivity_type: Option<String>,
    #[serde(default)]
    pub(crate) nat_gateway_addresses: Vec<NatAddress>,
}

/// One address of a NAT gateway.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NatAddress {
    pub(crate) allocation_id: Option<String>,
    pub(crate) network_interface_id: Option<String>,
    pub(crate) private_ip: Option<String>,
    pub(crate) public_ip: Option<String>,
    pub(crate) is_primary: Option<bool>,
}

/// `describe-internet-gateways`: `InternetGateways[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InternetGateway {
    pub(crate) internet_gateway_id: String,
    #[serde(default)]
    pub(crate) attachments: Vec<GatewayAttachment>,
}

/// An internet gateway's attachment (`available` once attached).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GatewayAttachment {
    pub(crate) vpc_id: String,
    pub(crate) state: Option<String>,
}

/// `describe-vpc-peering-connections`: `VpcPeeringConnections[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PeeringConnection {
    pub(crate) vpc_peering_connection_id: String,
    pub(crate) status: Option<PeeringStatus>,
    pub(crate) requester_vpc_info: PeerVpc,
    pub(crate) accepter_vpc_info: PeerVpc,
}

/// A peering connection's status (`active`, `pending-acceptance`, `deleted`, ...).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PeeringStatus {
    pub(crate) code: String,
}

/// One side of a peering connection.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PeerVpc {
    pub(crate) vpc_id: Option<String>,
    pub(crate) owner_id: Option<String>,
    pub(crate) region: Option<String>,
}
