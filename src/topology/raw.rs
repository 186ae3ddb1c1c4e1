//! The topology file exactly as written: serde structs that mirror the TOML, with every value a
//! person might get wrong wrapped in [`Spanned`] so validation can name its line. Nothing here is
//! checked beyond TOML types and field names (`deny_unknown_fields` everywhere, so a misspelt key is
//! an error rather than a silently applied default); `validate` turns this into a `Model`.

use serde::Deserialize;
use toml::Spanned;

/// A string or an integer, for values the format accepts either way (`protocol = 6` or `"6"`,
/// `ports = 80` or `"80"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StrOrInt {
    /// Written as a string.
    Str(String),
    /// Written as an integer.
    Int(i64),
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    /// Optional here so that a missing name is reported with the other problems.
    pub(crate) name: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) vpc: Vec<RawVpc>,
    #[serde(default)]
    pub(crate) subnet: Vec<RawSubnet>,
    #[serde(default)]
    pub(crate) internet_gateway: Vec<RawInternetGateway>,
    #[serde(default)]
    pub(crate) elastic_ip: Vec<RawElasticIp>,
    #[serde(default)]
    pub(crate) nat_gateway: Vec<RawNatGateway>,
    #[serde(default)]
    pub(crate) vpc_peering: Vec<RawPeering>,
    #[serde(default)]
    pub(crate) route_table: Vec<RawRouteTable>,
    #[serde(default)]
    pub(crate) network_acl: Vec<RawNetworkAcl>,
    #[serde(default)]
    pub(crate) security_group: Vec<RawSecurityGroup>,
    #[serde(default)]
    pub(crate) instance: Vec<RawInstance>,
    #[serde(default)]
    pub(crate) network_interface: Vec<RawEni>,
    pub(crate) internet: Option<RawInternet>,
    #[serde(default)]
    pub(crate) traffic_mirror_target: Vec<RawMirrorTarget>,
    #[serde(default)]
    pub(crate) traffic_mirror_filter: Vec<RawMirrorFilter>,
    #[serde(default)]
    pub(crate) traffic_mirror_session: Vec<RawMirrorSession>,
    #[serde(default)]
    pub(crate) flow_log: Vec<RawFlowLog>,
    pub(crate) api: Option<RawApi>,
    /// The lab's AWS region (default us-east-1): names DHCP's default domain.
    pub(crate) region: Option<Spanned<String>>,
    /// Who configures instance addresses: `static` (vpclab, the default) or `dhcp` (a client).
    pub(crate) instance_network: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) dhcp_options: Vec<RawDhcpOptions>,
    #[serde(default)]
    pub(crate) vpc_endpoint: Vec<RawVpcEndpoint>,
}

/// `[[vpc_endpoint]]`: a gateway endpoint (`route_tables`) or an interface endpoint (`subnets`,
/// `private_ips`, `security_groups`, `private_dns_enabled`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVpcEndpoint {
    pub(crate) id: Spanned<String>,
    pub(crate) vpc: Spanned<String>,
    /// `Gateway` or `Interface`, as AWS's `VpcEndpointType`.
    #[serde(rename = "type")]
    pub(crate) kind: Spanned<String>,
    pub(crate) service: Spanned<String>,
    pub(crate) route_tables: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) subnets: Option<Spanned<Vec<Spanned<String>>>>,
    /// One per subnet, in the same order; left out: each interface gets its subnet's first free
    /// address.
    pub(crate) private_ips: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) security_groups: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) private_dns_enabled: Option<Spanned<bool>>,
}

/// `[[dhcp_options]]`: a DHCP options set, used by the VPCs that name it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDhcpOptions {
    pub(crate) id: Spanned<String>,
    pub(crate) domain_name: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) domain_name_servers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) ntp_servers: Vec<Spanned<String>>,
}

/// `[api]`: the EC2 Query API endpoint (`up --api ADDR` overrides `listen`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) access_key_id: Option<Spanned<String>>,
    pub(crate) secret_access_key: Option<Spanned<String>>,
}

/// `[[flow_log]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlowLog {
    pub(crate) id: Spanned<String>,
    pub(crate) resource: Spanned<String>,
    pub(crate) traffic_type: Spanned<String>,
    pub(crate) destination: Spanned<String>,
    pub(crate) log_format: Option<Spanned<String>>,
    pub(crate) max_aggregation_interval: Option<Spanned<i64>>,
    pub(crate) account_id: Option<Spanned<String>>,
}

/// `[[vpc]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVpc {
    pub(crate) id: Spanned<String>,
    pub(crate) cidr: Spanned<String>,
    pub(crate) main_route_table: Option<Spanned<String>>,
    pub(crate) dhcp_options: Option<Spanned<String>>,
    /// Default true: the Amazon DNS server answers in the VPC.
    pub(crate) enable_dns_support: Option<Spanned<bool>>,
    /// Default false (AWS's default outside the default VPC): no public DNS names.
    pub(crate) enable_dns_hostnames: Option<Spanned<bool>>,
}

/// `[[subnet]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubnet {
    pub(crate) id: Spanned<String>,
    pub(crate) vpc: Spanned<String>,
    pub(crate) cidr: Spanned<String>,
    pub(crate) availability_zone: Option<Spanned<String>>,
    pub(crate) route_table: Option<Spanned<String>>,
    pub(crate) network_acl: Option<Spanned<String>>,
}

/// `[[internet_gateway]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInternetGateway {
    pub(crate) id: Spanned<String>,
    /// Left out: detached.
    pub(crate) vpc: Option<Spanned<String>>,
}

/// `[[elastic_ip]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawElasticIp {
    pub(crate) id: Spanned<String>,
    pub(crate) public_ip: Spanned<String>,
    pub(crate) network_interface: Option<Spanned<String>>,
    pub(crate) private_ip: Option<Spanned<String>>,
}

/// `[[nat_gateway]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNatGateway {
    pub(crate) id: Spanned<String>,
    pub(crate) subnet: Spanned<String>,
    pub(crate) private_ip: Option<Spanned<String>>,
    pub(crate) elastic_ip: Option<Spanned<String>>,
    pub(crate) ports: Option<Spanned<StrOrInt>>,
    /// `random` (default) or `preserve`.
    pub(crate) source_ports: Option<Spanned<String>>,
}

/// `[[vpc_peering]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeering {
    pub(crate) id: Spanned<String>,
    pub(crate) requester_vpc: Spanned<String>,
    pub(crate) accepter_vpc: Spanned<String>,
    /// `active` (default) or `pending-acceptance`.
    pub(crate) status: Option<Spanned<String>>,
}

/// `[[route_table]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteTable {
    pub(crate) id: Spanned<String>,
    pub(crate) vpc: Spanned<String>,
    /// Spanned as a whole so the route quota can point at the list.
    pub(crate) routes: Option<Spanned<Vec<RawRoute>>>,
}

/// One entry of `routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) destination: Spanned<String>,
    pub(crate) target: Spanned<String>,
}

/// `[[network_acl]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetworkAcl {
    pub(crate) id: Spanned<String>,
    pub(crate) vpc: Spanned<String>,
    pub(crate) ingress: Option<Spanned<Vec<RawAclRule>>>,
    pub(crate) egress: Option<Spanned<Vec<RawAclRule>>>,
}

/// One network ACL rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAclRule {
    pub(crate) rule: Spanned<i64>,
    pub(crate) protocol: Spanned<StrOrInt>,
    pub(crate) ports: Option<Spanned<StrOrInt>>,
    pub(crate) icmp_type: Option<Spanned<i64>>,
    pub(crate) icmp_code: Option<Spanned<i64>>,
    pub(crate) cidr: Spanned<String>,
    pub(crate) action: Spanned<String>,
}

/// `[[security_group]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurityGroup {
    pub(crate) id: Spanned<String>,
    pub(crate) vpc: Spanned<String>,
    /// AWS's `GroupName` (default: the id).
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) description: Option<String>,
    pub(crate) ingress: Option<Spanned<Vec<RawSgRule>>>,
    /// `None` (left out) is AWS's allow-all default; `Some([])` allows nothing.
    pub(crate) egress: Option<Spanned<Vec<RawSgRule>>>,
}

/// One security group rule; `source` belongs to ingress rules, `destination` to egress rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSgRule {
    pub(crate) protocol: Spanned<StrOrInt>,
    pub(crate) ports: Option<Spanned<StrOrInt>>,
    pub(crate) icmp_type: Option<Spanned<i64>>,
    pub(crate) icmp_code: Option<Spanned<i64>>,
    pub(crate) source: Option<Spanned<String>>,
    pub(crate) destination: Option<Spanned<String>>,
}

/// `[[instance]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstance {
    pub(crate) id: Spanned<String>,
    pub(crate) instance_type: Option<Spanned<String>>,
    /// `running` (default) or `stopped`.
    pub(crate) state: Option<Spanned<String>>,
    pub(crate) metadata_options: Option<RawMetadataOptions>,
}

/// An instance's `metadata_options` table, named as EC2's `InstanceMetadataOptions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetadataOptions {
    pub(crate) http_tokens: Option<Spanned<String>>,
    pub(crate) http_put_response_hop_limit: Option<Spanned<i64>>,
    pub(crate) http_endpoint: Option<Spanned<String>>,
}

/// `[[network_interface]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEni {
    pub(crate) id: Spanned<String>,
    pub(crate) subnet: Spanned<String>,
    pub(crate) private_ip: Spanned<String>,
    #[serde(default)]
    pub(crate) secondary_private_ips: Vec<Spanned<String>>,
    pub(crate) security_groups: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) mac_address: Option<Spanned<String>>,
    pub(crate) source_dest_check: Option<bool>,
    pub(crate) description: Option<String>,
    pub(crate) connection_tracking: Option<RawConntrack>,
    pub(crate) attachment: Option<RawAttachment>,
}

/// An ENI's `connection_tracking` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConntrack {
    pub(crate) tcp_established_timeout: Option<Spanned<i64>>,
    pub(crate) udp_stream_timeout: Option<Spanned<i64>>,
    pub(crate) udp_timeout: Option<Spanned<i64>>,
    pub(crate) max_connections: Option<Spanned<i64>>,
}

/// An ENI's `attachment` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttachment {
    pub(crate) instance: Spanned<String>,
    pub(crate) device_index: Spanned<i64>,
    /// Default: true at device index 0 (created with the instance), else false.
    pub(crate) delete_on_termination: Option<bool>,
}

/// `[internet]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInternet {
    #[serde(default)]
    pub(crate) hosts: Vec<RawHost>,
    pub(crate) uplink: Option<RawUplink>,
}

/// `[internet] uplink`: a host interface instead of the emulated internet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUplink {
    pub(crate) interface: Spanned<String>,
    pub(crate) gateway: Spanned<String>,
}

/// One host of `[internet]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub(crate) id: Spanned<String>,
    pub(crate) ip: Spanned<String>,
    /// The AWS service the host plays (`s3`), for VPC endpoints.
    pub(crate) service: Option<Spanned<String>>,
    /// Its DNS name for the Amazon DNS server (default: its id).
    pub(crate) name: Option<Spanned<String>>,
}

/// `[[traffic_mirror_target]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirrorTarget {
    pub(crate) id: Spanned<String>,
    pub(crate) network_interface: Spanned<String>,
}

/// `[[traffic_mirror_filter]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirrorFilter {
    pub(crate) id: Spanned<String>,
    pub(crate) ingress: Option<Spanned<Vec<RawMirrorRule>>>,
    pub(crate) egress: Option<Spanned<Vec<RawMirrorRule>>>,
}

/// One traffic mirror filter rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirrorRule {
    pub(crate) rule: Spanned<i64>,
    pub(crate) action: Spanned<String>,
    pub(crate) protocol: Option<Spanned<StrOrInt>>,
    pub(crate) source_ports: Option<Spanned<StrOrInt>>,
    pub(crate) destination_ports: Option<Spanned<StrOrInt>>,
    pub(crate) source_cidr: Spanned<String>,
    pub(crate) destination_cidr: Spanned<String>,
}

/// `[[traffic_mirror_session]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirrorSession {
    pub(crate) id: Spanned<String>,
    pub(crate) source: Spanned<String>,
    pub(crate) target: Spanned<String>,
    pub(crate) filter: Spanned<String>,
    pub(crate) session_number: Spanned<i64>,
    pub(crate) virtual_network_id: Option<Spanned<i64>>,
    pub(crate) packet_length: Option<Spanned<i64>>,
}
