//! The operations that create and delete whole objects, from `create-vpc` to `run-instances`.
//! Each checks first what the EC2 API checks, with AWS's codes (unknown ids, dependencies left,
//! conflicts), so a refusal changes nothing. Then it edits the lab's topology document
//! ([`topology::edited`]): a new object is declared as a file would declare it, so a new VPC gets
//! its default group, default ACL and main route table, and every index is assigned, by the one
//! validation. What a deletion leaves pointing at the object is settled first, as AWS does it:
//! routes to a deleted gateway, NAT gateway, ENI or peering become blackholes.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::ops::Edit;
use super::{parse_ip, AwsError};
use crate::model::{Cidr, FlowLogResource, Model, PeeringStatus, RouteTarget, SgPeer, SubnetIdx, VpcIdx};
use crate::topology::{self, DocEdit, Field};

/// The most instances one `run-instances` call starts (AWS's limit is the account's quota).
pub const MAX_RUN_COUNT: u32 = 32;

/// Where an Elastic IP is allocated when none is asked for: the documentation ranges, in order.
const PUBLIC_POOLS: [Cidr; 3] = [
    Cidr { addr: Ipv4Addr::new(203, 0, 113, 0), prefix: 24 },
    Cidr { addr: Ipv4Addr::new(198, 51, 100, 0), prefix: 24 },
    Cidr { addr: Ipv4Addr::new(192, 0, 2, 0), prefix: 24 },
];

fn text(s: &str) -> Field {
    Field::Text(s.to_string())
}

fn add(section: &'static str, fields: Vec<(&'static str, Field)>) -> DocEdit {
    DocEdit::Add { section, fields }
}

fn remove(section: &'static str, id: &str) -> DocEdit {
    DocEdit::Remove { section, id: id.to_string() }
}

/// `m` with `edits` made, checked as a file is; `created` are the new objects' ids.
fn apply(m: &Model, edits: &[DocEdit], created: Vec<String>) -> Result<Edit, AwsError> {
    let model = topology::edited(m, edits).map_err(super::ops::rejected)?;
    Ok(Edit { model, reboot: Vec::new(), created })
}

/// An id like AWS's (`vpc-` and 17 hex digits), derived from the lab (its name and every
/// object it holds, as exported) and the kind, so the same calls on the same lab give the same
/// ids; never one in use.
pub(super) fn new_id(m: &Model, prefix: &str) -> String {
    new_id_besides(m, prefix, &[])
}

/// [`new_id`], neither in use nor one of `handed` (ids this operation gives out as well).
fn new_id_besides(m: &Model, prefix: &str, handed: &[String]) -> String {
    let file = topology::export(m);
    aws_id(prefix, &[m.name.as_bytes(), file.as_bytes()], |id| taken(m, &file, id) || handed.iter().any(|h| h == id))
}

/// `prefix-` and 17 hex digits: FNV-1a of `inputs` (joined by a zero byte) and a salt, the
/// first salt whose id is not `taken`.
pub(super) fn aws_id(prefix: &str, inputs: &[&[u8]], taken: impl Fn(&str) -> bool) -> String {
    (0u32..)
        .map(|salt| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let joined =
                inputs.iter().enumerate().flat_map(|(i, b)| (i > 0).then_some(0).into_iter().chain(b.iter().copied()));
            for b in joined.chain(salt.to_le_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("{prefix}-{:017x}", u128::from(h) << 4 | u128::from(salt & 0xf))
        })
        .find(|id| !taken(id))
        .expect("an unused id")
}

/// Whether `id` names something in the lab: a declared object (quoted in the exported `file`)
/// or a NAT gateway's network interface.
fn taken(m: &Model, file: &str, id: &str) -> bool {
    file.contains(&format!("\"{id}\"")) || m.nat_gateways.iter().any(|n| n.interface_id() == id)
}

/// The id asked for, or a new one.
fn id_or_new(m: &Model, given: Option<&str>, prefix: &str) -> Result<String, AwsError> {
    match given {
        Some(id) if taken(m, &topology::export(m), id) => {
            Err(AwsError::invalid(format!("the id '{id}' is already in use in this lab")))
        }
        Some(id) => Ok(id.to_string()),
        None => Ok(new_id(m, prefix)),
    }
}

fn vpc(m: &Model, id: &str) -> Result<VpcIdx, AwsError> {
    m.vpcs
        .iter()
        .position(|v| v.id == id)
        .map(|i| VpcIdx(i as u32))
        .ok_or_else(|| AwsError::new("InvalidVpcID.NotFound", format!("the vpc ID '{id}' does not exist")))
}

fn subnet(m: &Model, id: &str) -> Result<SubnetIdx, AwsError> {
    m.subnets
        .iter()
        .position(|s| s.id == id)
        .map(|i| SubnetIdx(i as u32))
        .ok_or_else(|| AwsError::new("InvalidSubnetID.NotFound", format!("the subnet ID '{id}' does not exist")))
}

fn not_found(code: &str, what: &str, id: &str) -> AwsError {
    AwsError::new(code, format!("the {what} '{id}' does not exist"))
}

fn dependency(what: &str, id: &str, left: &[String]) -> AwsError {
    AwsError::new(
        "DependencyViolation",
        format!("the {what} '{id}' has dependencies and cannot be deleted: {}", left.join(", ")),
    )
}

/// A CIDR block of a VPC or subnet: syntax as any CIDR, size /16 to /28 (`range_code` else).
fn block(s: &str, range_code: &str) -> Result<Cidr, AwsError> {
    let c = s.trim().parse::<Cidr>().map_err(|e| AwsError::invalid(e.to_string()))?;
    if !(16..=28).contains(&c.prefix) {
        return Err(AwsError::new(range_code, format!("the CIDR '{c}' is invalid: use a block of /16 to /28")));
    }
    Ok(c)
}

/// Routes to `target`, which is being deleted, become blackholes (as on AWS).
fn blackhole_routes_to(m: &mut Model, target: RouteTarget) {
    for r in m.route_tables.iter_mut().flat_map(|t| t.routes.iter_mut()) {
        if r.target == target {
            r.target = RouteTarget::Blackhole;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// VPCs and subnets

/// `create-vpc`: a VPC with AWS's default group, default ACL and main route table.
pub fn create_vpc(m: &Model, cidr_block: &str, vpc_id: Option<&str>) -> Result<Edit, AwsError> {
    let cidr = block(cidr_block, "InvalidVpc.Range")?;
    let id = id_or_new(m, vpc_id, "vpc")?;
    let fields = vec![("id", text(&id)), ("cidr", text(&cidr.to_string()))];
    apply(m, &[add("vpc", fields)], vec![id])
}

/// `delete-vpc`: only a VPC with nothing left in it but its implicit objects.
pub fn delete_vpc(m: &Model, vpc_id: &str) -> Result<Edit, AwsError> {
    let v = vpc(m, vpc_id)?;
    let main = m.vpcs[v.index()].main_route_table;
    let mut left: Vec<String> = m.subnets.iter().filter(|s| s.vpc == v).map(|s| s.id.clone()).collect();
    left.extend(m.internet_gateways.iter().filter(|g| g.vpc == Some(v)).map(|g| g.id.clone()));
    let own = |id: &str| !id.contains('/');
    left.extend(m.security_groups.iter().filter(|g| g.vpc == v && own(&g.id)).map(|g| g.id.clone()));
    left.extend(m.network_acls.iter().filter(|a| a.vpc == v && own(&a.id)).map(|a| a.id.clone()));
    let tables = m.route_tables.iter().enumerate();
    left.extend(tables.filter(|(i, t)| t.vpc == v && *i != main.index()).map(|(_, t)| t.id.clone()));
    let peered = |p: &crate::model::VpcPeering| p.requester_vpc == v || p.accepter_vpc == v;
    left.extend(m.peerings.iter().filter(|p| peered(p)).map(|p| p.id.clone()));
    if !left.is_empty() {
        return Err(dependency("vpc", vpc_id, &left));
    }
    let mut n = m.clone();
    n.flow_logs.retain(|f| f.resource != FlowLogResource::Vpc(v));
    let mut edits = vec![remove("vpc", vpc_id)];
    let main_id = &m.route_tables[main.index()].id;
    if own(main_id) {
        edits.push(remove("route_table", main_id));
    }
    apply(&n, &edits, Vec::new())
}

/// `create-subnet`: inside its VPC's block, clear of the VPC's other subnets.
pub fn create_subnet(
    m: &Model,
    vpc_id: &str,
    cidr_block: &str,
    availability_zone: Option<&str>,
    subnet_id: Option<&str>,
) -> Result<Edit, AwsError> {
    let v = vpc(m, vpc_id)?;
    let cidr = block(cidr_block, "InvalidSubnet.Range")?;
    let vpc_cidr = m.vpcs[v.index()].cidr;
    if !vpc_cidr.contains_cidr(cidr) {
        return Err(AwsError::new(
            "InvalidSubnet.Range",
            format!("the CIDR '{cidr}' is invalid: it is outside {vpc_id}'s block {vpc_cidr}"),
        ));
    }
    if let Some(other) = m.subnets.iter().find(|s| s.vpc == v && s.cidr.overlaps(cidr)) {
        return Err(AwsError::new(
            "InvalidSubnet.Conflict",
            format!("the CIDR '{cidr}' conflicts with subnet {} ({})", other.id, other.cidr),
        ));
    }
    let id = id_or_new(m, subnet_id, "subnet")?;
    let mut fields = vec![("id", text(&id)), ("vpc", text(vpc_id)), ("cidr", text(&cidr.to_string()))];
    if let Some(az) = availability_zone {
        fields.push(("availability_zone", text(az)));
    }
    apply(m, &[add("subnet", fields)], vec![id])
}

/// `delete-subnet`: only a subnet without network interfaces and NAT gateways. Its flow logs
/// go with it.
pub fn delete_subnet(m: &Model, subnet_id: &str) -> Result<Edit, AwsError> {
    let s = subnet(m, subnet_id)?;
    let mut left: Vec<String> = m.enis.iter().filter(|e| e.subnet == s).map(|e| e.id.clone()).collect();
    left.extend(m.nat_gateways.iter().filter(|n| n.subnet == s).map(|n| n.id.clone()));
    if !left.is_empty() {
        return Err(dependency("subnet", subnet_id, &left));
    }
    let mut n = m.clone();
    n.flow_logs.retain(|f| f.resource != FlowLogResource::Subnet(s));
    apply(&n, &[remove("subnet", subnet_id)], Vec::new())
}

// ---------------------------------------------------------------------------------------------
// Security groups

/// `create-security-group`: no inbound rules, one outbound rule allowing everything (AWS's).
pub fn create_security_group(
    m: &Model,
    vpc_id: &str,
    group_name: &str,
    description: &str,
    group_id: Option<&str>,
) -> Result<Edit, AwsError> {
    let v = vpc(m, vpc_id)?;
    if group_name == topology::DEFAULT_GROUP_NAME {
        return Err(AwsError::new("InvalidGroup.Reserved", "the security group name 'default' is reserved"));
    }
    if group_name.is_empty() || group_name.len() > 255 || group_name.starts_with("sg-") {
        return Err(AwsError::invalid(format!(
            "'{group_name}' is not a group name: use 1 to 255 characters, not starting with sg-"
        )));
    }
    if description.is_empty() || description.len() > 255 {
        return Err(AwsError::invalid("a group's description is 1 to 255 characters"));
    }
    if m.security_groups.iter().any(|g| g.vpc == v && g.name == group_name) {
        return Err(AwsError::new(
            "InvalidGroup.Duplicate",
            format!("the security group '{group_name}' already exists for VPC '{vpc_id}'"),
        ));
    }
    let id = id_or_new(m, group_id, "sg")?;
    let fields =
        vec![("id", text(&id)), ("vpc", text(vpc_id)), ("name", text(group_name)), ("description", text(description))];
    apply(m, &[add("security_group", fields)], vec![id])
}

/// `delete-security-group`: not a VPC's default group, not in use by an ENI, not named by
/// another group's rule.
pub fn delete_security_group(m: &Model, group_id: &str) -> Result<Edit, AwsError> {
    let g = m
        .security_groups
        .iter()
        .position(|g| g.id == group_id)
        .ok_or_else(|| not_found("InvalidGroup.NotFound", "security group", group_id))?;
    if m.vpcs.iter().any(|v| v.default_security_group.index() == g) {
        return Err(AwsError::new("CannotDelete", format!("{group_id} is its VPC's default group")));
    }
    let mut left: Vec<String> =
        m.enis.iter().filter(|e| e.security_groups.iter().any(|x| x.index() == g)).map(|e| e.id.clone()).collect();
    let names_it = |r: &crate::model::SgRule| matches!(r.peer, SgPeer::Group(x) if x.index() == g);
    let others = m.security_groups.iter().enumerate().filter(|(i, _)| *i != g);
    left.extend(others.filter(|(_, o)| o.ingress.iter().chain(&o.egress).any(names_it)).map(|(_, o)| o.id.clone()));
    if !left.is_empty() {
        return Err(dependency("security group", group_id, &left));
    }
    apply(m, &[remove("security_group", group_id)], Vec::new())
}

// ---------------------------------------------------------------------------------------------
// Network interfaces and instances

/// The private address a new ENI gets: the one asked for, if it is the subnet's and free; else
/// the subnet's first free address, as AWS assigns one.
fn private_ip(m: &Model, s: SubnetIdx, asked: Option<&str>) -> Result<Ipv4Addr, AwsError> {
    let cidr = m.subnets[s.index()].cidr;
    let used: HashSet<Ipv4Addr> = m
        .enis
        .iter()
        .filter(|e| e.subnet == s)
        .flat_map(|e| e.private_ips())
        .chain(m.nat_gateways.iter().filter(|n| n.subnet == s).map(|n| n.private_ip))
        .collect();
    let Some(asked) = asked else {
        let (first, last) = (u32::from(cidr.addr), u32::from(cidr.last()));
        return (first..=last).map(Ipv4Addr::from).find(|ip| !cidr.is_reserved(*ip) && !used.contains(ip)).ok_or_else(
            || {
                AwsError::new(
                    "InsufficientFreeAddressesInSubnet",
                    format!("subnet {} has no free address", m.subnets[s.index()].id),
                )
            },
        );
    };
    let ip = parse_ip(asked)?;
    if !cidr.contains(ip) || cidr.is_reserved(ip) {
        return Err(AwsError::invalid(format!(
            "address {ip} does not fall within the usable range of subnet {} ({cidr})",
            m.subnets[s.index()].id
        )));
    }
    if used.contains(&ip) {
        return Err(AwsError::new("InvalidIPAddress.InUse", format!("address {ip} is in use")));
    }
    Ok(ip)
}

/// Security groups for a new ENI in `s`'s VPC: the ones named (they must exist there), or none
/// written, which is the VPC's default group.
fn groups_for(m: &Model, s: SubnetIdx, groups: &[String]) -> Result<Option<Field>, AwsError> {
    let v = m.subnets[s.index()].vpc;
    for g in groups {
        if !m.security_groups.iter().any(|x| x.id == *g && x.vpc == v) {
            return Err(AwsError::new(
                "InvalidGroup.NotFound",
                format!("the security group '{g}' does not exist in VPC '{}'", m.vpcs[v.index()].id),
            ));
        }
    }
    Ok((!groups.is_empty()).then(|| Field::Texts(groups.to_vec())))
}

/// A new ENI's fields; `instance` attaches it at device 0 (it goes with its instance).
fn eni_fields(
    id: &str,
    subnet_id: &str,
    ip: Ipv4Addr,
    groups: Option<Field>,
    description: Option<&str>,
    instance: Option<&str>,
) -> Vec<(&'static str, Field)> {
    let mut fields = vec![("id", text(id)), ("subnet", text(subnet_id)), ("private_ip", text(&ip.to_string()))];
    if let Some(g) = groups {
        fields.push(("security_groups", g));
    }
    if let Some(d) = description {
        fields.push(("description", text(d)));
    }
    if let Some(i) = instance {
        fields.push(("attachment", Field::Table(vec![("instance", text(i)), ("device_index", Field::Int(0))])));
    }
    fields
}

/// `create-network-interface`: detached, in a subnet, with its groups and a private address.
pub fn create_network_interface(
    m: &Model,
    subnet_id: &str,
    private_ip_address: Option<&str>,
    groups: &[String],
    description: Option<&str>,
    network_interface_id: Option<&str>,
) -> Result<Edit, AwsError> {
    let s = subnet(m, subnet_id)?;
    let ip = private_ip(m, s, private_ip_address)?;
    let groups = groups_for(m, s, groups)?;
    let id = id_or_new(m, network_interface_id, "eni")?;
    let fields = eni_fields(&id, subnet_id, ip, groups, description, None);
    apply(m, &[add("network_interface", fields)], vec![id])
}

/// `delete-network-interface`: only a detached one. Routes to it become blackholes, its
/// Elastic IPs are disassociated, its flow logs and mirror sessions go with it.
pub fn delete_network_interface(m: &Model, network_interface_id: &str) -> Result<Edit, AwsError> {
    let e = m
        .eni_by_id(network_interface_id)
        .ok_or_else(|| not_found("InvalidNetworkInterfaceID.NotFound", "network interface", network_interface_id))?;
    if let Some(a) = m.enis[e.index()].attachment {
        return Err(AwsError::new(
            "InvalidNetworkInterface.InUse",
            format!(
                "interface {network_interface_id} is currently in use (attached to {})",
                m.instances[a.instance.index()].id
            ),
        ));
    }
    let mut n = m.clone();
    super::ops::remove_eni(&mut n, e);
    Ok(Edit { model: super::ops::validated(&n)?, reboot: Vec::new(), created: Vec::new() })
}

/// What `run-instances` is asked for.
#[derive(Clone, Copy, Debug)]
pub struct RunSpec<'a> {
    /// The subnet of each instance's primary ENI.
    pub subnet_id: &'a str,
    /// Checked against the instance-type table.
    pub instance_type: Option<&'a str>,
    /// Only with `count` 1.
    pub private_ip_address: Option<&'a str>,
    /// The primary ENIs' groups (none: the VPC's default group).
    pub security_group_ids: &'a [String],
    /// 1 to [`MAX_RUN_COUNT`].
    pub count: u32,
    /// Only with `count` 1.
    pub instance_id: Option<&'a str>,
}

/// `run-instances`: `count` instances, each with its primary ENI at device 0 (deleted with the
/// instance). The created ids are each instance's, then its ENI's.
pub fn run_instances(m: &Model, spec: &RunSpec<'_>) -> Result<Edit, AwsError> {
    let s = subnet(m, spec.subnet_id)?;
    if !(1..=MAX_RUN_COUNT).contains(&spec.count) {
        return Err(AwsError::invalid(format!("count must be 1 to {MAX_RUN_COUNT} here, not {}", spec.count)));
    }
    if spec.count > 1 && (spec.private_ip_address.is_some() || spec.instance_id.is_some()) {
        return Err(AwsError::new(
            "InvalidParameterCombination",
            "a private IP address or instance id names one instance: give count 1",
        ));
    }
    if let Some(t) = spec.instance_type {
        if topology::instance_types::limits(t).is_none() {
            return Err(AwsError::invalid(format!("invalid value '{t}' for InstanceType")));
        }
    }
    let groups = groups_for(m, s, spec.security_group_ids)?;
    let mut model = m.clone();
    let mut created = Vec::new();
    for _ in 0..spec.count {
        let ip = private_ip(&model, s, spec.private_ip_address)?;
        let instance_id = id_or_new(&model, spec.instance_id, "i")?;
        let mut instance = vec![("id", text(&instance_id))];
        if let Some(t) = spec.instance_type {
            instance.push(("instance_type", text(t)));
        }
        let eni_id = new_id_besides(&model, "eni", std::slice::from_ref(&instance_id));
        let eni = eni_fields(&eni_id, spec.subnet_id, ip, groups.clone(), None, Some(&instance_id));
        model = topology::edited(&model, &[add("instance", instance), add("network_interface", eni)])
            .map_err(super::ops::rejected)?;
        created.extend([instance_id, eni_id]);
    }
    Ok(Edit { model, reboot: Vec::new(), created })
}

// ---------------------------------------------------------------------------------------------
// Route tables

fn route_table(m: &Model, id: &str) -> Result<usize, AwsError> {
    m.route_tables
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(|| not_found("InvalidRouteTableID.NotFound", "route table ID", id))
}

/// `create-route-table`: holding only the local route.
pub fn create_route_table(m: &Model, vpc_id: &str, route_table_id: Option<&str>) -> Result<Edit, AwsError> {
    vpc(m, vpc_id)?;
    let id = id_or_new(m, route_table_id, "rtb")?;
    apply(m, &[add("route_table", vec![("id", text(&id)), ("vpc", text(vpc_id))])], vec![id])
}

/// `delete-route-table`: not a VPC's main table, associated with no subnet.
pub fn delete_route_table(m: &Model, route_table_id: &str) -> Result<Edit, AwsError> {
    let t = route_table(m, route_table_id)?;
    if m.vpcs.iter().any(|v| v.main_route_table.index() == t) {
        return Err(dependency("route table", route_table_id, &["it is its VPC's main route table".to_string()]));
    }
    let left: Vec<String> =
        m.subnets.iter().filter(|s| s.route_table.index() == t).map(|s| format!("{} uses it", s.id)).collect();
    if !left.is_empty() {
        return Err(dependency("route table", route_table_id, &left));
    }
    apply(m, &[remove("route_table", route_table_id)], Vec::new())
}

/// `associate-route-table`: a subnet still on its VPC's main table takes one of its VPC's.
pub fn associate_route_table(m: &Model, route_table_id: &str, subnet_id: &str) -> Result<Edit, AwsError> {
    let t = route_table(m, route_table_id)?;
    let s = subnet(m, subnet_id)?;
    let sub = &m.subnets[s.index()];
    if m.route_tables[t].vpc != sub.vpc {
        return Err(AwsError::invalid(format!(
            "route table {route_table_id} and subnet {subnet_id} belong to different networks"
        )));
    }
    if sub.route_table != m.vpcs[sub.vpc.index()].main_route_table {
        return Err(AwsError::new(
            "Resource.AlreadyAssociated",
            format!(
                "subnet {subnet_id} is already associated with route table {}: use replace-route-table-association",
                m.route_tables[sub.route_table.index()].id
            ),
        ));
    }
    let mut n = m.clone();
    n.subnets[s.index()].route_table = crate::model::RtbIdx(t as u32);
    Ok(Edit { model: super::ops::validated(&n)?, reboot: Vec::new(), created: Vec::new() })
}

/// `disassociate-route-table` (the subnet id stands for the association id): back to the
/// VPC's main table.
pub fn disassociate_route_table(m: &Model, subnet_id: &str) -> Result<Edit, AwsError> {
    let s = subnet(m, subnet_id)?;
    let main = m.vpcs[m.subnets[s.index()].vpc.index()].main_route_table;
    if m.subnets[s.index()].route_table == main {
        return Err(AwsError::new(
            "InvalidAssociationID.NotFound",
            format!("subnet {subnet_id} has no explicit route table association"),
        ));
    }
    let mut n = m.clone();
    n.subnets[s.index()].route_table = main;
    Ok(Edit { model: super::ops::validated(&n)?, reboot: Vec::new(), created: Vec::new() })
}

// ---------------------------------------------------------------------------------------------
// Internet gateways

fn igw(m: &Model, id: &str) -> Result<usize, AwsError> {
    m.internet_gateways
        .iter()
        .position(|g| g.id == id)
        .ok_or_else(|| not_found("InvalidInternetGatewayID.NotFound", "internet gateway", id))
}

/// `create-internet-gateway`: detached, as AWS creates it.
pub fn create_internet_gateway(m: &Model, internet_gateway_id: Option<&str>) -> Result<Edit, AwsError> {
    let id = id_or_new(m, internet_gateway_id, "igw")?;
    apply(m, &[add("internet_gateway", vec![("id", text(&id))])], vec![id])
}

/// `attach-internet-gateway`: a detached gateway to a VPC without one.
pub fn attach_internet_gateway(m: &Model, internet_gateway_id: &str, vpc_id: &str) -> Result<Edit, AwsError> {
    let g = igw(m, internet_gateway_id)?;
    let v = vpc(m, vpc_id)?;
    if let Some(at) = m.internet_gateways[g].vpc {
        return Err(AwsError::new(
            "Resource.AlreadyAssociated",
            format!("resource {internet_gateway_id} is already attached to network {}", m.vpcs[at.index()].id),
        ));
    }
    if let Some(other) = m.internet_gateways.iter().find(|x| x.vpc == Some(v)) {
        return Err(AwsError::new(
            "Resource.AlreadyAssociated",
            format!("network {vpc_id} already has internet gateway {} attached", other.id),
        ));
    }
    let mut n = m.clone();
    n.internet_gateways[g].vpc = Some(v);
    Ok(Edit { model: super::ops::validated(&n)?, reboot: Vec::new(), created: Vec::new() })
}

/// `detach-internet-gateway`: refused while the VPC has mapped public addresses (Elastic IPs
/// of its ENIs or NAT gateways), as on AWS; routes to it become blackholes until it is back.
pub fn detach_internet_gateway(m: &Model, internet_gateway_id: &str, vpc_id: &str) -> Result<Edit, AwsError> {
    let g = igw(m, internet_gateway_id)?;
    let v = vpc(m, vpc_id)?;
    if m.internet_gateways[g].vpc != Some(v) {
        return Err(AwsError::new(
            "Gateway.NotAttached",
            format!("resource {internet_gateway_id} is not attached to network {vpc_id}"),
        ));
    }
    let mapped: Vec<String> = m
        .elastic_ips
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            e.association.is_some_and(|(eni, _)| m.vpc_of(eni) == v)
                || m.nat_gateways
                    .iter()
                    .any(|n| n.elastic_ip.is_some_and(|x| x.index() == *i) && m.subnets[n.subnet.index()].vpc == v)
        })
        .map(|(_, e)| e.public_ip.to_string())
        .collect();
    if !mapped.is_empty() {
        return Err(AwsError::new(
            "DependencyViolation",
            format!("network {vpc_id} has some mapped public address(es): unmap {} first", mapped.join(", ")),
        ));
    }
    let mut n = m.clone();
    n.internet_gateways[g].vpc = None;
    Ok(Edit { model: super::ops::validated(&n)?, reboot: Vec::new(), created: Vec::new() })
}

/// `delete-internet-gateway`: only a detached one; routes still naming it become blackholes.
pub fn delete_internet_gateway(m: &Model, internet_gateway_id: &str) -> Result<Edit, AwsError> {
    let g = igw(m, internet_gateway_id)?;
    if let Some(v) = m.internet_gateways[g].vpc {
        let attached = format!("it is attached to {}", m.vpcs[v.index()].id);
        return Err(dependency("internet gateway", internet_gateway_id, &[attached]));
    }
    let mut n = m.clone();
    blackhole_routes_to(&mut n, RouteTarget::InternetGateway(crate::model::IgwIdx(g as u32)));
    apply(&n, &[remove("internet_gateway", internet_gateway_id)], Vec::new())
}

// ---------------------------------------------------------------------------------------------
// Elastic IPs and NAT gateways

fn eip(m: &Model, id: &str) -> Result<usize, AwsError> {
    m.elastic_ips
        .iter()
        .position(|e| e.id == id)
        .ok_or_else(|| not_found("InvalidAllocationID.NotFound", "allocation ID", id))
}

/// `allocate-address`: the address asked for, else the first free one of 203.0.113.0/24 (then
/// the other documentation ranges).
pub fn allocate_address(m: &Model, public_ip: Option<&str>) -> Result<Edit, AwsError> {
    let used: HashSet<Ipv4Addr> = m
        .public_addresses()
        .chain(m.internet_hosts.iter().map(|h| h.ip))
        .chain(m.uplink.iter().map(|u| u.gateway))
        .collect();
    let free = |ip: &Ipv4Addr| !used.contains(ip) && !m.vpcs.iter().any(|v| v.cidr.contains(*ip));
    let ip = match public_ip {
        Some(s) => {
            let ip = parse_ip(s)?;
            if !free(&ip) {
                return Err(AwsError::new(
                    "InvalidAddress.InUse",
                    format!("address {ip} is already in use in this lab"),
                ));
            }
            ip
        }
        None => PUBLIC_POOLS
            .iter()
            .flat_map(|p| (1..255).map(move |n| p.nth(n)))
            .find(free)
            .ok_or_else(|| AwsError::new("AddressLimitExceeded", "every documentation address is allocated"))?,
    };
    let id = new_id(m, "eipalloc");
    apply(m, &[add("elastic_ip", vec![("id", text(&id)), ("public_ip", text(&ip.to_string()))])], vec![id])
}

/// `release-address`: only an address associated with nothing.
pub fn release_address(m: &Model, allocation_id: &str) -> Result<Edit, AwsError> {
    let a = eip(m, allocation_id)?;
    let by_nat = m.nat_gateways.iter().find(|n| n.elastic_ip.is_some_and(|x| x.index() == a));
    let user = match (m.elastic_ips[a].association, by_nat) {
        (Some((e, _)), _) => Some(m.enis[e.index()].id.clone()),
        (None, Some(n)) => Some(n.id.clone()),
        (None, None) => None,
    };
    if let Some(user) = user {
        return Err(AwsError::new(
            "InvalidIPAddress.InUse",
            format!("address {} is in use by {user}: disassociate it first", m.elastic_ips[a].public_ip),
        ));
    }
    apply(m, &[remove("elastic_ip", allocation_id)], Vec::new())
}

/// `create-nat-gateway`: in a subnet, with an Elastic IP no one else uses (none: a private NAT
/// gateway); its private address is the subnet's first free one.
pub fn create_nat_gateway(
    m: &Model,
    subnet_id: &str,
    allocation_id: Option<&str>,
    nat_gateway_id: Option<&str>,
) -> Result<Edit, AwsError> {
    subnet(m, subnet_id)?;
    let id = id_or_new(m, nat_gateway_id, "nat")?;
    let mut fields = vec![("id", text(&id)), ("subnet", text(subnet_id))];
    if let Some(alloc) = allocation_id {
        let a = eip(m, alloc)?;
        let nat = m.nat_gateways.iter().find(|n| n.elastic_ip.is_some_and(|x| x.index() == a));
        if m.elastic_ips[a].association.is_some() || nat.is_some() {
            return Err(AwsError::new(
                "Resource.AlreadyAssociated",
                format!("Elastic IP {alloc} is already associated"),
            ));
        }
        fields.push(("elastic_ip", text(alloc)));
    }
    apply(m, &[add("nat_gateway", fields)], vec![id])
}

/// `delete-nat-gateway`: routes to it become blackholes, its Elastic IP stays allocated, the
/// flow logs of its interface go with it.
pub fn delete_nat_gateway(m: &Model, nat_gateway_id: &str) -> Result<Edit, AwsError> {
    let g = m
        .nat_gateways
        .iter()
        .position(|n| n.id == nat_gateway_id)
        .ok_or_else(|| not_found("NatGatewayNotFound", "NAT gateway", nat_gateway_id))?;
    let mut n = m.clone();
    let nat = crate::model::NatIdx(g as u32);
    blackhole_routes_to(&mut n, RouteTarget::NatGateway(nat));
    n.flow_logs.retain(|f| f.resource != FlowLogResource::NatInterface(nat));
    apply(&n, &[remove("nat_gateway", nat_gateway_id)], Vec::new())
}

// ---------------------------------------------------------------------------------------------
// VPC peering

fn peering(m: &Model, id: &str) -> Result<usize, AwsError> {
    m.peerings
        .iter()
        .position(|p| p.id == id)
        .ok_or_else(|| not_found("InvalidVpcPeeringConnectionID.NotFound", "vpc peering connection ID", id))
}

/// `create-vpc-peering-connection`: pending acceptance, between two VPCs not yet peered.
pub fn create_vpc_peering_connection(
    m: &Model,
    vpc_id: &str,
    peer_vpc_id: &str,
    vpc_peering_connection_id: Option<&str>,
) -> Result<Edit, AwsError> {
    let (a, b) = (vpc(m, vpc_id)?, vpc(m, peer_vpc_id)?);
    if a == b {
        return Err(AwsError::invalid(format!("VPC {vpc_id} cannot be peered with itself")));
    }
    let joins = |p: &crate::model::VpcPeering| {
        (p.requester_vpc, p.accepter_vpc) == (a, b) || (p.requester_vpc, p.accepter_vpc) == (b, a)
    };
    if let Some(p) = m.peerings.iter().find(|p| joins(p)) {
        return Err(AwsError::new(
            "VpcPeeringConnectionAlreadyExists",
            format!("{vpc_id} and {peer_vpc_id} are already peered by {} ({})", p.id, p.status.name()),
        ));
    }
    let id = id_or_new(m, vpc_peering_connection_id, "pcx")?;
    let fields = vec![
        ("id", text(&id)),
        ("requester_vpc", text(vpc_id)),
        ("accepter_vpc", text(peer_vpc_id)),
        ("status", text(PeeringStatus::PendingAcceptance.name())),
    ];
    apply(m, &[add("vpc_peering", fields)], vec![id])
}

/// `accept-vpc-peering-connection`: a pending connection becomes active.
pub fn accept_vpc_peering_connection(m: &Model, vpc_peering_connection_id: &str) -> Result<Edit, AwsError> {
    let p = peering(m, vpc_peering_connection_id)?;
    if m.peerings[p].status != PeeringStatus::PendingAcceptance {
        return Err(AwsError::new(
            "InvalidStateTransition",
            format!(
                "peering connection {vpc_peering_connection_id} is {}, not pending-acceptance",
                m.peerings[p].status.name()
            ),
        ));
    }
    let mut n = m.clone();
    n.peerings[p].status = PeeringStatus::Active;
    Ok(Edit { model: super::ops::validated(&n)?, reboot: Vec::new(), created: Vec::new() })
}

/// `delete-vpc-peering-connection`: routes to it become blackholes, and the rules naming a
/// group on the other side go (AWS keeps them as stale rules that match nothing).
pub fn delete_vpc_peering_connection(m: &Model, vpc_peering_connection_id: &str) -> Result<Edit, AwsError> {
    let p = peering(m, vpc_peering_connection_id)?;
    let (a, b) = (m.peerings[p].requester_vpc, m.peerings[p].accepter_vpc);
    let mut n = m.clone();
    blackhole_routes_to(&mut n, RouteTarget::Peering(crate::model::PcxIdx(p as u32)));
    let vpc_of_group: Vec<VpcIdx> = m.security_groups.iter().map(|g| g.vpc).collect();
    for g in &mut n.security_groups {
        let own = g.vpc;
        let kept = |r: &crate::model::SgRule| match r.peer {
            SgPeer::Group(x) => ![(a, b), (b, a)].contains(&(own, vpc_of_group[x.index()])),
            SgPeer::Cidr(_) => true,
        };
        g.ingress.retain(kept);
        g.egress.retain(kept);
    }
    apply(&n, &[remove("vpc_peering", vpc_peering_connection_id)], Vec::new())
}
