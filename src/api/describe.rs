//! The `Describe*` actions: the model in force written as EC2 describes it, under the API's member
//! names (what `aws ec2 describe-* --output json` prints), narrowed by ids and filters and paged.
//!
//! Objects AWS gives ids the lab derives (attachment, association, rule ids) get stable ones, a
//! hash of what they belong to, so a script may keep them for the life of the lab.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::{strings, ApiError};
use crate::model::{
    AclAction, AclRule, Cidr, Eni, EniIdx, InstanceState, Model, PortMatch, Protocol, RouteTarget, SgPeer, SgRule,
};

/// The region every lab reports (its DNS names, ARNs and zones).
pub const REGION: &str = "us-east-1";
/// The zone of a subnet that names none.
const DEFAULT_ZONE: &str = "us-east-1a";

/// What one `Describe*` action lists: its input's id list, the error for an unknown id, the
/// output's list member, its filters (`name`, the item's member path, `.`-separated, lists
/// walked through).
struct Listing {
    ids: &'static str,
    id_member: &'static str,
    not_found: &'static str,
    output: &'static str,
    filters: &'static [(&'static str, &'static str)],
}

/// Answers `action` from `m`.
pub fn describe(action: &str, input: &Value, m: &Model) -> Result<Value, ApiError> {
    let (listing, items) = match action {
        "DescribeVpcs" => (&VPCS, vpcs(m)),
        "DescribeSubnets" => (&SUBNETS, subnets(m)),
        "DescribeNetworkInterfaces" => (&ENIS, network_interfaces(m)),
        "DescribeInstances" => (&INSTANCES, instances(m)),
        "DescribeSecurityGroups" => (&GROUPS, security_groups(m)),
        "DescribeSecurityGroupRules" => (&GROUP_RULES, security_group_rules(m)),
        "DescribeRouteTables" => (&ROUTE_TABLES, route_tables(m)),
        "DescribeNetworkAcls" => (&ACLS, network_acls(m)),
        "DescribeAddresses" => (&ADDRESSES, addresses(m)),
        "DescribeNatGateways" => (&NAT_GATEWAYS, nat_gateways(m)),
        "DescribeInternetGateways" => (&INTERNET_GATEWAYS, internet_gateways(m)),
        "DescribeVpcPeeringConnections" => (&PEERINGS, peerings(m)),
        "DescribeAvailabilityZones" => (&ZONES, zones(m)),
        "DescribeInstanceTypes" => (&INSTANCE_TYPES, instance_types()),
        "DescribeFlowLogs" => (&FLOW_LOGS, flow_logs(m)),
        _ => return Err(ApiError::invalid_action(action)),
    };
    let items = by_ids(listing, input, items)?;
    let items = filtered(listing, input, items)?;
    let items = by_alternate_keys(action, input, items)?;
    page(action, listing, input, items)
}

// ---------------------------------------------------------------------------------------------
// Narrowing and paging

fn by_ids(l: &Listing, input: &Value, items: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    let wanted = strings(input, l.ids);
    if wanted.is_empty() {
        return Ok(items);
    }
    let id_of = |v: &Value| v[l.id_member].as_str().unwrap_or_default().to_string();
    if let Some(missing) = wanted.iter().find(|w| !items.iter().any(|v| &id_of(v) == *w)) {
        return Err(ApiError::new(400, l.not_found, format!("The {} '{missing}' does not exist", l.id_member)));
    }
    Ok(items.into_iter().filter(|v| wanted.contains(&id_of(v))).collect())
}

/// Narrowing by the lists some actions take besides ids (`GroupName.N`, `PublicIp.N`).
fn by_alternate_keys(action: &str, input: &Value, items: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    let (list, member, code) = match action {
        "DescribeSecurityGroups" => ("GroupNames", "GroupName", "InvalidGroup.NotFound"),
        "DescribeAddresses" => ("PublicIps", "PublicIp", "InvalidAddress.NotFound"),
        "DescribeAvailabilityZones" => ("ZoneNames", "ZoneName", "InvalidParameterValue"),
        _ => return Ok(items),
    };
    let wanted = strings(input, list);
    if let Some(missing) = wanted.iter().find(|w| !items.iter().any(|v| v[member] == **w)) {
        return Err(ApiError::new(400, code, format!("The {member} '{missing}' does not exist")));
    }
    Ok(items.into_iter().filter(|v| wanted.is_empty() || wanted.iter().any(|w| v[member] == *w)).collect())
}

fn filtered(l: &Listing, input: &Value, items: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    let filters = input.get("Filters").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut items = items;
    for f in &filters {
        let name = f["Name"].as_str().ok_or_else(|| ApiError::missing("Filter.N.Name"))?;
        let values = strings(f, "Values");
        if name.starts_with("tag:") || name == "tag-key" || name == "tag-value" {
            // Lab objects carry no tags: a tag filter matches nothing, as on AWS for untagged objects.
            items.clear();
            continue;
        }
        let path = l
            .filters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .ok_or_else(|| ApiError::invalid_value(format!("The filter '{name}' is invalid")))?;
        items.retain(|v| at_path(v, path).iter().any(|have| values.iter().any(|want| glob(want, have))));
    }
    Ok(items)
}

/// The scalar values at `path` (`Attachment.InstanceId`, `PrivateIpAddresses.PrivateIpAddress`),
/// as strings, lists walked through.
fn at_path(v: &Value, path: &str) -> Vec<String> {
    let mut here = vec![v];
    for part in path.split('.') {
        here = here
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().filter_map(|x| x.get(part)).collect::<Vec<_>>(),
                other => other.get(part).into_iter().collect(),
            })
            .collect();
    }
    here.into_iter()
        .flat_map(|v| match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        })
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// EC2's filter wildcards: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            (pi, ti) = (pi + 1, ti + 1);
        } else if pi < p.len() && p[pi] == '*' {
            (star, mark, pi) = (Some(pi), ti, pi + 1);
        } else if let Some(s) = star {
            (pi, mark, ti) = (s + 1, mark + 1, mark + 1);
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

const TOKEN_PREFIX: &str = "vpclab-page-";

fn page(action: &str, l: &Listing, input: &Value, items: Vec<Value>) -> Result<Value, ApiError> {
    let start = match input.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => t
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n <= items.len())
            .ok_or_else(|| ApiError::invalid_value(format!("The value passed for nextToken ({t}) is invalid")))?,
    };
    let max = match input.get("MaxResults").and_then(Value::as_i64) {
        None => usize::MAX,
        Some(n) if (5..=1000).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid_value(format!("Value ({n}) for parameter maxResults is invalid: 5 to 1000")))
        }
    };
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| format!("{TOKEN_PREFIX}{end}"));
    let items: Vec<Value> = items[start..end].to_vec();
    let list = if action == "DescribeInstances" {
        Value::Array(items.into_iter().map(|i| reservation(&i)).collect())
    } else {
        Value::Array(items)
    };
    let mut out = json!({ l.output: list });
    if let Some(next) = next {
        out["NextToken"] = Value::String(next);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Stable derived values

/// The lab's account id: twelve digits from its name.
pub fn owner_id(m: &Model) -> String {
    format!("{:012}", fnv(&m.name) % 1_000_000_000_000)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// An id of `kind` derived from what it belongs to: `eni-attach-` + 17 hex digits.
pub fn derived_id(kind: &str, of: &str) -> String {
    format!("{kind}-0{:016x}", fnv(&format!("{kind}/{of}")))
}

fn zone(az: Option<&String>) -> &str {
    az.map_or(DEFAULT_ZONE, String::as_str)
}

fn protocol_name(p: Protocol) -> String {
    match p {
        Protocol::All => "-1".into(),
        Protocol::TCP => "tcp".into(),
        Protocol::UDP => "udp".into(),
        Protocol::ICMP => "icmp".into(),
        Protocol::Number(n) => n.0.to_string(),
    }
}

/// `(from, to)` as EC2 reports a rule's ports: the port range, or ICMP type and code (-1: all).
fn port_fields(p: PortMatch) -> (Option<i64>, Option<i64>) {
    match p {
        PortMatch::Any => (None, None),
        PortMatch::Ports(r) => (Some(r.from.into()), Some(r.to.into())),
        PortMatch::Icmp { icmp_type, icmp_code } => {
            (Some(icmp_type.map_or(-1, i64::from)), Some(icmp_code.map_or(-1, i64::from)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// VPCs, subnets

const VPCS: Listing = Listing {
    ids: "VpcIds",
    id_member: "VpcId",
    not_found: "InvalidVpcID.NotFound",
    output: "Vpcs",
    filters: &[
        ("vpc-id", "VpcId"),
        ("cidr", "CidrBlock"),
        ("cidr-block-association.cidr-block", "CidrBlockAssociationSet.CidrBlock"),
        ("cidr-block-association.association-id", "CidrBlockAssociationSet.AssociationId"),
        ("state", "State"),
        ("is-default", "IsDefault"),
        ("owner-id", "OwnerId"),
        ("dhcp-options-id", "DhcpOptionsId"),
    ],
};

fn vpcs(m: &Model) -> Vec<Value> {
    m.vpcs
        .iter()
        .map(|v| {
            json!({
                "VpcId": v.id, "CidrBlock": v.cidr.to_string(), "State": "available", "DhcpOptionsId": "default",
                "InstanceTenancy": "default", "IsDefault": false, "OwnerId": owner_id(m),
                "CidrBlockAssociationSet": [{
                    "AssociationId": derived_id("vpc-cidr-assoc", &v.id), "CidrBlock": v.cidr.to_string(),
                    "CidrBlockState": {"State": "associated"},
                }],
            })
        })
        .collect()
}

const SUBNETS: Listing = Listing {
    ids: "SubnetIds",
    id_member: "SubnetId",
    not_found: "InvalidSubnetID.NotFound",
    output: "Subnets",
    filters: &[
        ("subnet-id", "SubnetId"),
        ("vpc-id", "VpcId"),
        ("cidr-block", "CidrBlock"),
        ("cidr", "CidrBlock"),
        ("cidrBlock", "CidrBlock"),
        ("availability-zone", "AvailabilityZone"),
        ("state", "State"),
        ("default-for-az", "DefaultForAz"),
        ("owner-id", "OwnerId"),
        ("subnet-arn", "SubnetArn"),
    ],
};

fn subnets(m: &Model) -> Vec<Value> {
    m.subnets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let used = m.enis.iter().filter(|e| e.subnet.index() == i).map(|e| e.private_ips().count()).sum::<usize>()
                + m.nat_gateways.iter().filter(|n| n.subnet.index() == i).count();
            // AWS reserves five addresses of every subnet.
            let free = (1u64 << (32 - s.cidr.prefix)).saturating_sub(5 + used as u64);
            json!({
                "SubnetId": s.id, "VpcId": m.vpcs[s.vpc.index()].id, "CidrBlock": s.cidr.to_string(),
                "AvailabilityZone": zone(s.availability_zone.as_ref()), "AvailableIpAddressCount": free,
                "State": "available", "DefaultForAz": false, "MapPublicIpOnLaunch": false, "OwnerId": owner_id(m),
                "SubnetArn": format!("arn:aws:ec2:{REGION}:{}:subnet/{}", owner_id(m), s.id),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Network interfaces and instances

const ENIS: Listing = Listing {
    ids: "NetworkInterfaceIds",
    id_member: "NetworkInterfaceId",
    not_found: "InvalidNetworkInterfaceID.NotFound",
    output: "NetworkInterfaces",
    filters: &[
        ("network-interface-id", "NetworkInterfaceId"),
        ("attachment.instance-id", "Attachment.InstanceId"),
        ("attachment.attachment-id", "Attachment.AttachmentId"),
        ("attachment.device-index", "Attachment.DeviceIndex"),
        ("attachment.status", "Attachment.Status"),
        ("subnet-id", "SubnetId"),
        ("vpc-id", "VpcId"),
        ("availability-zone", "AvailabilityZone"),
        ("private-ip-address", "PrivateIpAddresses.PrivateIpAddress"),
        ("addresses.private-ip-address", "PrivateIpAddresses.PrivateIpAddress"),
        ("addresses.primary", "PrivateIpAddresses.Primary"),
        ("addresses.association.public-ip", "PrivateIpAddresses.Association.PublicIp"),
        ("association.public-ip", "PrivateIpAddresses.Association.PublicIp"),
        ("association.allocation-id", "PrivateIpAddresses.Association.AllocationId"),
        ("association.association-id", "PrivateIpAddresses.Association.AssociationId"),
        ("group-id", "Groups.GroupId"),
        ("group-name", "Groups.GroupName"),
        ("status", "Status"),
        ("mac-address", "MacAddress"),
        ("source-dest-check", "SourceDestCheck"),
        ("description", "Description"),
        ("interface-type", "InterfaceType"),
        ("owner-id", "OwnerId"),
        ("requester-managed", "RequesterManaged"),
    ],
};

/// The Elastic IP associated with `ip` of ENI `e`, as EC2 shows it on the address.
fn ip_association(m: &Model, e: EniIdx, ip: Ipv4Addr) -> Value {
    match m.elastic_ips.iter().find(|x| x.association == Some((e, ip))) {
        Some(x) => json!({
            "PublicIp": x.public_ip.to_string(), "IpOwnerId": owner_id(m), "AllocationId": x.id,
            "AssociationId": derived_id("eipassoc", &x.id),
            "PublicDnsName": public_dns(m, e, x.public_ip),
        }),
        None => Value::Null,
    }
}

/// The public DNS name of ENI `e`'s public address `ip`: empty unless its VPC has DNS hostnames
/// on, as EC2 shows it.
fn public_dns(m: &Model, e: EniIdx, ip: Ipv4Addr) -> String {
    if m.vpcs[m.vpc_of(e).index()].enable_dns_hostnames {
        m.public_dns_name(ip)
    } else {
        String::new()
    }
}

fn group_refs(m: &Model, e: &Eni) -> Value {
    Value::Array(e.security_groups.iter().map(|g| group_ref(m, g.index())).collect())
}

fn group_ref(m: &Model, g: usize) -> Value {
    json!({"GroupId": m.security_groups[g].id, "GroupName": m.security_groups[g].name})
}

/// One ENI as `DescribeNetworkInterfaces` shows it.
fn network_interface(m: &Model, i: usize) -> Value {
    let e = &m.enis[i];
    let idx = EniIdx(i as u32);
    let subnet = &m.subnets[e.subnet.index()];
    let addresses: Vec<Value> = e
        .private_ips()
        .map(|ip| {
            json!({
                "Primary": ip == e.private_ip, "PrivateIpAddress": ip.to_string(),
                "PrivateDnsName": m.private_dns_name(ip), "Association": ip_association(m, idx, ip),
            })
        })
        .collect();
    let attachment = e.attachment.map_or(Value::Null, |a| {
        json!({
            "AttachmentId": derived_id("eni-attach", &e.id), "DeviceIndex": a.device_index,
            "InstanceId": m.instances[a.instance.index()].id, "InstanceOwnerId": owner_id(m),
            "Status": "attached", "DeleteOnTermination": a.delete_on_termination, "NetworkCardIndex": 0,
        })
    });
    json!({
        "NetworkInterfaceId": e.id, "SubnetId": subnet.id, "VpcId": m.vpcs[subnet.vpc.index()].id,
        "AvailabilityZone": zone(subnet.availability_zone.as_ref()), "Description": e.description.clone().unwrap_or_default(),
        "Groups": group_refs(m, e), "InterfaceType": "interface", "MacAddress": e.mac.to_string(), "OwnerId": owner_id(m),
        "PrivateIpAddress": e.private_ip.to_string(), "PrivateDnsName": m.private_dns_name(e.private_ip),
        "PrivateIpAddresses": addresses, "Association": ip_association(m, idx, e.private_ip),
        "SourceDestCheck": e.source_dest_check, "Status": if e.attachment.is_some() { "in-use" } else { "available" },
        "Attachment": attachment, "RequesterManaged": false,
    })
}

/// A NAT gateway's requester-managed interface, as AWS lists it among the ENIs.
fn nat_interface(m: &Model, n: &crate::model::NatGateway) -> Value {
    let subnet = &m.subnets[n.subnet.index()];
    let eip = n.elastic_ip.map(|x| &m.elastic_ips[x.index()]);
    let association = eip.map_or(Value::Null, |x| {
        json!({
            "PublicIp": x.public_ip.to_string(), "IpOwnerId": "amazon", "AllocationId": x.id,
            "AssociationId": derived_id("eipassoc", &x.id),
        })
    });
    json!({
        "NetworkInterfaceId": n.interface_id(), "SubnetId": subnet.id, "VpcId": m.vpcs[subnet.vpc.index()].id,
        "AvailabilityZone": zone(subnet.availability_zone.as_ref()),
        "Description": format!("Interface for NAT Gateway {}", n.id), "Groups": [],
        "InterfaceType": "nat_gateway", "MacAddress": crate::model::Mac::generated("nat", &n.id).to_string(),
        "OwnerId": owner_id(m), "PrivateIpAddress": n.private_ip.to_string(), "PrivateDnsName": m.private_dns_name(n.private_ip),
        "PrivateIpAddresses": [{
            "Primary": true, "PrivateIpAddress": n.private_ip.to_string(), "PrivateDnsName": m.private_dns_name(n.private_ip),
            "Association": association.clone(),
        }],
        "Association": association, "SourceDestCheck": false, "Status": "in-use", "RequesterManaged": true,
        "RequesterId": "amazon",
    })
}

fn network_interfaces(m: &Model) -> Vec<Value> {
    let enis = (0..m.enis.len()).map(|i| network_interface(m, i));
    enis.chain(m.nat_gateways.iter().map(|n| nat_interface(m, n))).collect()
}

const INSTANCES: Listing = Listing {
    ids: "InstanceIds",
    id_member: "InstanceId",
    not_found: "InvalidInstanceID.NotFound",
    output: "Reservations",
    filters: &[
        ("instance-id", "InstanceId"),
        ("instance-state-name", "State.Name"),
        ("instance-state-code", "State.Code"),
        ("instance-type", "InstanceType"),
        ("vpc-id", "VpcId"),
        ("subnet-id", "SubnetId"),
        ("availability-zone", "Placement.AvailabilityZone"),
        ("private-ip-address", "PrivateIpAddress"),
        ("ip-address", "PublicIpAddress"),
        ("private-dns-name", "PrivateDnsName"),
        ("network-interface.network-interface-id", "NetworkInterfaces.NetworkInterfaceId"),
        ("network-interface.subnet-id", "NetworkInterfaces.SubnetId"),
        ("network-interface.vpc-id", "NetworkInterfaces.VpcId"),
        ("network-interface.addresses.private-ip-address", "NetworkInterfaces.PrivateIpAddresses.PrivateIpAddress"),
        ("network-interface.attachment.device-index", "NetworkInterfaces.Attachment.DeviceIndex"),
        ("instance.group-id", "SecurityGroups.GroupId"),
        ("instance.group-name", "SecurityGroups.GroupName"),
        ("group-id", "SecurityGroups.GroupId"),
    ],
};

/// One instance as `DescribeInstances` shows it (inside its reservation, added by [`reservation`]).
fn instance(m: &Model, i: usize) -> Value {
    let inst = &m.instances[i];
    let mut enis = m.enis_of(crate::model::InstanceIdx(i as u32));
    enis.sort_by_key(|e| m.enis[e.index()].attachment.map(|a| a.device_index));
    let interfaces: Vec<Value> = enis.iter().map(|e| instance_interface(m, network_interface(m, e.index()))).collect();
    let (code, name) = match inst.state {
        InstanceState::Running => (16, "running"),
        InstanceState::Stopped => (80, "stopped"),
    };
    let mut groups: Vec<Value> = Vec::new();
    for e in &enis {
        for g in &m.enis[e.index()].security_groups {
            let r = group_ref(m, g.index());
            if !groups.contains(&r) {
                groups.push(r);
            }
        }
    }
    let mut out = json!({
        "InstanceId": inst.id, "InstanceType": inst.instance_type, "State": {"Code": code, "Name": name},
        "NetworkInterfaces": interfaces, "SecurityGroups": groups, "Architecture": "x86_64",
    });
    if let Some(primary) = enis.first().map(|e| &m.enis[e.index()]) {
        let subnet = &m.subnets[primary.subnet.index()];
        out["SubnetId"] = subnet.id.clone().into();
        out["VpcId"] = m.vpcs[subnet.vpc.index()].id.clone().into();
        out["Placement"] = json!({"AvailabilityZone": zone(subnet.availability_zone.as_ref()), "Tenancy": "default"});
        out["PrivateIpAddress"] = primary.private_ip.to_string().into();
        out["PrivateDnsName"] = m.private_dns_name(primary.private_ip).into();
        out["SourceDestCheck"] = primary.source_dest_check.into();
        let eni = EniIdx(enis[0].0);
        if let Some(x) = m.elastic_ips.iter().find(|x| x.association == Some((eni, primary.private_ip))) {
            out["PublicIpAddress"] = x.public_ip.to_string().into();
            out["PublicDnsName"] = public_dns(m, eni, x.public_ip).into();
        }
    }
    out
}

/// An ENI as an instance's `NetworkInterfaces` member shows it (fewer members than the ENI's own).
fn instance_interface(m: &Model, eni: Value) -> Value {
    let mut v = json!({});
    for k in [
        "NetworkInterfaceId",
        "SubnetId",
        "VpcId",
        "Description",
        "Groups",
        "InterfaceType",
        "MacAddress",
        "PrivateIpAddress",
        "PrivateDnsName",
        "SourceDestCheck",
        "Status",
        "OwnerId",
    ] {
        v[k] = eni[k].clone();
    }
    v["Association"] = eni["Association"].clone();
    if let Value::Object(a) = &mut v["Association"] {
        a.remove("AllocationId");
        a.remove("AssociationId");
    }
    let mut attachment = eni["Attachment"].clone();
    if let Value::Object(a) = &mut attachment {
        a.remove("InstanceId");
        a.remove("InstanceOwnerId");
    }
    v["Attachment"] = attachment;
    v["PrivateIpAddresses"] = Value::Array(
        eni["PrivateIpAddresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let mut a = a.clone();
                if let Value::Object(assoc) = &mut a["Association"] {
                    assoc.remove("AllocationId");
                    assoc.remove("AssociationId");
                }
                a
            })
            .collect(),
    );
    let _ = m;
    v
}

fn instances(m: &Model) -> Vec<Value> {
    (0..m.instances.len()).map(|i| instance(m, i)).collect()
}

/// An instance in a reservation of its own (the lab launches each instance by itself).
fn reservation(instance: &Value) -> Value {
    let id = instance["InstanceId"].as_str().unwrap_or_default();
    let owner = instance["NetworkInterfaces"][0]["OwnerId"].clone();
    json!({"ReservationId": derived_id("r", id), "OwnerId": owner, "Groups": [], "Instances": [instance]})
}

// ---------------------------------------------------------------------------------------------
// Security groups

const GROUPS: Listing = Listing {
    ids: "GroupIds",
    id_member: "GroupId",
    not_found: "InvalidGroup.NotFound",
    output: "SecurityGroups",
    filters: &[
        ("group-id", "GroupId"),
        ("group-name", "GroupName"),
        ("vpc-id", "VpcId"),
        ("owner-id", "OwnerId"),
        ("description", "Description"),
        ("ip-permission.protocol", "IpPermissions.IpProtocol"),
        ("ip-permission.cidr", "IpPermissions.IpRanges.CidrIp"),
        ("ip-permission.from-port", "IpPermissions.FromPort"),
        ("ip-permission.to-port", "IpPermissions.ToPort"),
        ("ip-permission.group-id", "IpPermissions.UserIdGroupPairs.GroupId"),
        ("egress.ip-permission.protocol", "IpPermissionsEgress.IpProtocol"),
        ("egress.ip-permission.cidr", "IpPermissionsEgress.IpRanges.CidrIp"),
        ("egress.ip-permission.group-id", "IpPermissionsEgress.UserIdGroupPairs.GroupId"),
    ],
};

/// Rules as EC2 reports them: one permission per protocol and port range, its CIDRs and groups
/// gathered under it, in the order they first appear.
fn permissions(m: &Model, rules: &[SgRule]) -> Value {
    /// A permission: its protocol and ports, its CIDRs, its groups.
    type Permission = ((Protocol, PortMatch), Vec<Value>, Vec<Value>);
    let mut out: Vec<Permission> = Vec::new();
    for r in rules {
        let key = (r.protocol, r.ports);
        let at = match out.iter().position(|(k, _, _)| *k == key) {
            Some(at) => at,
            None => {
                out.push((key, Vec::new(), Vec::new()));
                out.len() - 1
            }
        };
        match r.peer {
            SgPeer::Cidr(c) => out[at].1.push(json!({"CidrIp": c.to_string()})),
            SgPeer::Group(g) => {
                out[at].2.push(json!({"GroupId": m.security_groups[g.index()].id, "UserId": owner_id(m)}))
            }
        }
    }
    Value::Array(
        out.into_iter()
            .map(|((protocol, ports), cidrs, groups)| {
                let (from, to) = port_fields(ports);
                json!({
                    "IpProtocol": protocol_name(protocol), "FromPort": from, "ToPort": to, "IpRanges": cidrs,
                    "UserIdGroupPairs": groups, "Ipv6Ranges": [], "PrefixListIds": [],
                })
            })
            .collect(),
    )
}

fn security_groups(m: &Model) -> Vec<Value> {
    m.security_groups
        .iter()
        .map(|g| {
            let description = match &g.description {
                Some(d) => d.clone(),
                None if g.name == crate::topology::DEFAULT_GROUP_NAME => "default VPC security group".to_string(),
                None => String::new(),
            };
            json!({
                "GroupId": g.id, "GroupName": g.name, "Description": description, "VpcId": m.vpcs[g.vpc.index()].id,
                "OwnerId": owner_id(m), "IpPermissions": permissions(m, &g.ingress),
                "IpPermissionsEgress": permissions(m, &g.egress),
            })
        })
        .collect()
}

const GROUP_RULES: Listing = Listing {
    ids: "SecurityGroupRuleIds",
    id_member: "SecurityGroupRuleId",
    not_found: "InvalidSecurityGroupRuleId.NotFound",
    output: "SecurityGroupRules",
    filters: &[("group-id", "GroupId"), ("security-group-rule-id", "SecurityGroupRuleId")],
};

/// A rule's id: stable while the rule exists (a hash of its group, direction and content).
pub fn rule_id(group: &str, egress: bool, r: &SgRule, m: &Model) -> String {
    let peer = match r.peer {
        SgPeer::Cidr(c) => c.to_string(),
        SgPeer::Group(g) => m.security_groups[g.index()].id.clone(),
    };
    derived_id("sgr", &format!("{group}/{egress}/{:?}/{:?}/{peer}", r.protocol, r.ports))
}

fn security_group_rules(m: &Model) -> Vec<Value> {
    let mut out = Vec::new();
    for g in &m.security_groups {
        for (egress, rules) in [(false, &g.ingress), (true, &g.egress)] {
            for r in rules {
                let (from, to) = port_fields(r.ports);
                let (from, to) = (from.unwrap_or(-1), to.unwrap_or(-1));
                let mut v = json!({
                    "SecurityGroupRuleId": rule_id(&g.id, egress, r, m), "GroupId": g.id, "GroupOwnerId": owner_id(m),
                    "IsEgress": egress, "IpProtocol": protocol_name(r.protocol), "FromPort": from, "ToPort": to,
                });
                match r.peer {
                    SgPeer::Cidr(c) => v["CidrIpv4"] = c.to_string().into(),
                    SgPeer::Group(p) => {
                        v["ReferencedGroupInfo"] =
                            json!({"GroupId": m.security_groups[p.index()].id, "UserId": owner_id(m)})
                    }
                }
                out.push(v);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Route tables and network ACLs

const ROUTE_TABLES: Listing = Listing {
    ids: "RouteTableIds",
    id_member: "RouteTableId",
    not_found: "InvalidRouteTableID.NotFound",
    output: "RouteTables",
    filters: &[
        ("route-table-id", "RouteTableId"),
        ("vpc-id", "VpcId"),
        ("owner-id", "OwnerId"),
        ("association.subnet-id", "Associations.SubnetId"),
        ("association.main", "Associations.Main"),
        ("association.route-table-association-id", "Associations.RouteTableAssociationId"),
        ("association.route-table-id", "Associations.RouteTableId"),
        ("route.destination-cidr-block", "Routes.DestinationCidrBlock"),
        ("route.gateway-id", "Routes.GatewayId"),
        ("route.nat-gateway-id", "Routes.NatGatewayId"),
        ("route.network-interface-id", "Routes.NetworkInterfaceId"),
        ("route.instance-id", "Routes.InstanceId"),
        ("route.vpc-peering-connection-id", "Routes.VpcPeeringConnectionId"),
        ("route.state", "Routes.State"),
        ("route.origin", "Routes.Origin"),
    ],
};

fn route(m: &Model, destination: Cidr, target: RouteTarget) -> Value {
    let mut r = json!({
        "DestinationCidrBlock": destination.to_string(), "State": "active",
        "Origin": if target == RouteTarget::Local { "CreateRouteTable" } else { "CreateRoute" },
    });
    match target {
        RouteTarget::Local => r["GatewayId"] = "local".into(),
        RouteTarget::InternetGateway(g) => r["GatewayId"] = m.internet_gateways[g.index()].id.clone().into(),
        RouteTarget::NatGateway(n) => r["NatGatewayId"] = m.nat_gateways[n.index()].id.clone().into(),
        RouteTarget::Peering(p) => r["VpcPeeringConnectionId"] = m.peerings[p.index()].id.clone().into(),
        RouteTarget::GatewayEndpoint(e) => r["GatewayId"] = m.vpc_endpoints[e.index()].id.clone().into(),
        RouteTarget::Eni(e) => {
            let eni = &m.enis[e.index()];
            r["NetworkInterfaceId"] = eni.id.clone().into();
            match eni.attachment {
                Some(a) => {
                    r["InstanceId"] = m.instances[a.instance.index()].id.clone().into();
                    r["InstanceOwnerId"] = owner_id(m).into();
                    if m.instances[a.instance.index()].state != InstanceState::Running {
                        r["State"] = "blackhole".into();
                    }
                }
                None => r["State"] = "blackhole".into(),
            }
        }
        RouteTarget::Blackhole => r["State"] = "blackhole".into(),
    }
    r
}

fn route_tables(m: &Model) -> Vec<Value> {
    m.route_tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut associations: Vec<Value> = m
                .subnets
                .iter()
                .filter(|s| s.route_table.index() == i)
                .map(|s| {
                    json!({
                        "Main": false, "RouteTableAssociationId": derived_id("rtbassoc", &s.id), "RouteTableId": t.id,
                        "SubnetId": s.id, "AssociationState": {"State": "associated"},
                    })
                })
                .collect();
            if let Some(v) = m.vpcs.iter().find(|v| v.main_route_table.index() == i) {
                associations.push(json!({
                    "Main": true, "RouteTableAssociationId": derived_id("rtbassoc", &format!("{}/main", v.id)),
                    "RouteTableId": t.id, "AssociationState": {"State": "associated"},
                }));
            }
            json!({
                "RouteTableId": t.id, "VpcId": m.vpcs[t.vpc.index()].id, "OwnerId": owner_id(m),
                "Routes": t.routes.iter().map(|r| route(m, r.destination, r.target)).collect::<Vec<_>>(),
                "Associations": associations, "PropagatingVgws": [],
            })
        })
        .collect()
}

const ACLS: Listing = Listing {
    ids: "NetworkAclIds",
    id_member: "NetworkAclId",
    not_found: "InvalidNetworkAclID.NotFound",
    output: "NetworkAcls",
    filters: &[
        ("network-acl-id", "NetworkAclId"),
        ("vpc-id", "VpcId"),
        ("default", "IsDefault"),
        ("owner-id", "OwnerId"),
        ("association.subnet-id", "Associations.SubnetId"),
        ("association.association-id", "Associations.NetworkAclAssociationId"),
        ("association.network-acl-id", "Associations.NetworkAclId"),
        ("entry.rule-number", "Entries.RuleNumber"),
        ("entry.cidr", "Entries.CidrBlock"),
        ("entry.egress", "Entries.Egress"),
        ("entry.rule-action", "Entries.RuleAction"),
        ("entry.protocol", "Entries.Protocol"),
    ],
};

/// The number EC2 reports for a network ACL entry's protocol (`-1`, `6`, `17`, `1`, ...).
fn acl_protocol(p: Protocol) -> String {
    match p {
        Protocol::All => "-1".into(),
        Protocol::Number(n) => n.0.to_string(),
    }
}

fn acl_entry(r: &AclRule, egress: bool) -> Value {
    let mut v = json!({
        "RuleNumber": r.number, "Protocol": acl_protocol(r.protocol), "Egress": egress,
        "CidrBlock": r.cidr.to_string(),
        "RuleAction": match r.action { AclAction::Allow => "allow", AclAction::Deny => "deny" },
    });
    match r.ports {
        PortMatch::Ports(p) => v["PortRange"] = json!({"From": p.from, "To": p.to}),
        PortMatch::Icmp { icmp_type, icmp_code } => {
            v["IcmpTypeCode"] =
                json!({"Type": icmp_type.map_or(-1, i64::from), "Code": icmp_code.map_or(-1, i64::from)})
        }
        PortMatch::Any => {}
    }
    v
}

fn network_acls(m: &Model) -> Vec<Value> {
    m.network_acls
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut entries: Vec<Value> = Vec::new();
            for (egress, rules) in [(false, &a.ingress), (true, &a.egress)] {
                entries.extend(rules.iter().map(|r| acl_entry(r, egress)));
                // The final deny (`*`) every ACL ends with, as EC2 lists it.
                entries.push(json!({
                    "RuleNumber": 32767, "Protocol": "-1", "Egress": egress, "CidrBlock": "0.0.0.0/0", "RuleAction": "deny",
                }));
            }
            let associations: Vec<Value> = m
                .subnets
                .iter()
                .filter(|s| s.network_acl.index() == i)
                .map(|s| {
                    json!({
                        "NetworkAclAssociationId": derived_id("aclassoc", &s.id), "NetworkAclId": a.id, "SubnetId": s.id,
                    })
                })
                .collect();
            json!({
                "NetworkAclId": a.id, "VpcId": m.vpcs[a.vpc.index()].id, "OwnerId": owner_id(m),
                "IsDefault": m.vpcs.iter().any(|v| v.default_network_acl.index() == i),
                "Entries": entries, "Associations": associations,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Addresses and gateways

const ADDRESSES: Listing = Listing {
    ids: "AllocationIds",
    id_member: "AllocationId",
    not_found: "InvalidAllocationID.NotFound",
    output: "Addresses",
    filters: &[
        ("allocation-id", "AllocationId"),
        ("public-ip", "PublicIp"),
        ("association-id", "AssociationId"),
        ("instance-id", "InstanceId"),
        ("network-interface-id", "NetworkInterfaceId"),
        ("private-ip-address", "PrivateIpAddress"),
        ("domain", "Domain"),
        ("network-interface-owner-id", "NetworkInterfaceOwnerId"),
    ],
};

fn addresses(m: &Model) -> Vec<Value> {
    m.elastic_ips
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let mut v = json!({
                "AllocationId": x.id, "PublicIp": x.public_ip.to_string(), "Domain": "vpc",
                "PublicIpv4Pool": "amazon", "NetworkBorderGroup": REGION,
            });
            let assoc = |v: &mut Value, eni: String, ip: Ipv4Addr| {
                v["AssociationId"] = derived_id("eipassoc", &x.id).into();
                v["NetworkInterfaceId"] = eni.into();
                v["NetworkInterfaceOwnerId"] = owner_id(m).into();
                v["PrivateIpAddress"] = ip.to_string().into();
            };
            if let Some((e, ip)) = x.association {
                let eni = &m.enis[e.index()];
                assoc(&mut v, eni.id.clone(), ip);
                if let Some(a) = eni.attachment {
                    v["InstanceId"] = m.instances[a.instance.index()].id.clone().into();
                }
            } else if let Some(n) = m.nat_gateways.iter().find(|n| n.elastic_ip.map(|e| e.index()) == Some(i)) {
                assoc(&mut v, n.interface_id(), n.private_ip);
            }
            v
        })
        .collect()
}

const NAT_GATEWAYS: Listing = Listing {
    ids: "NatGatewayIds",
    id_member: "NatGatewayId",
    not_found: "NatGatewayNotFound",
    output: "NatGateways",
    filters: &[("nat-gateway-id", "NatGatewayId"), ("state", "State"), ("subnet-id", "SubnetId"), ("vpc-id", "VpcId")],
};

fn nat_gateways(m: &Model) -> Vec<Value> {
    m.nat_gateways
        .iter()
        .map(|n| {
            let subnet = &m.subnets[n.subnet.index()];
            let mut address = json!({
                "NetworkInterfaceId": n.interface_id(), "PrivateIp": n.private_ip.to_string(),
                "IsPrimary": true, "Status": "succeeded",
            });
            if let Some(x) = n.elastic_ip.map(|x| &m.elastic_ips[x.index()]) {
                address["AllocationId"] = x.id.clone().into();
                address["PublicIp"] = x.public_ip.to_string().into();
                address["AssociationId"] = derived_id("eipassoc", &x.id).into();
            }
            json!({
                "NatGatewayId": n.id, "SubnetId": subnet.id, "VpcId": m.vpcs[subnet.vpc.index()].id,
                "State": "available", "ConnectivityType": if n.elastic_ip.is_some() { "public" } else { "private" },
                "NatGatewayAddresses": [address],
            })
        })
        .collect()
}

const INTERNET_GATEWAYS: Listing = Listing {
    ids: "InternetGatewayIds",
    id_member: "InternetGatewayId",
    not_found: "InvalidInternetGatewayID.NotFound",
    output: "InternetGateways",
    filters: &[
        ("internet-gateway-id", "InternetGatewayId"),
        ("attachment.vpc-id", "Attachments.VpcId"),
        ("attachment.state", "Attachments.State"),
        ("owner-id", "OwnerId"),
    ],
};

fn internet_gateways(m: &Model) -> Vec<Value> {
    m.internet_gateways
        .iter()
        .map(|g| {
            json!({
                "InternetGatewayId": g.id, "OwnerId": owner_id(m),
                "Attachments": g.vpc.map_or_else(Vec::new, |v| vec![json!({"VpcId": m.vpcs[v.index()].id, "State": "available"})]),
            })
        })
        .collect()
}

const PEERINGS: Listing = Listing {
    ids: "VpcPeeringConnectionIds",
    id_member: "VpcPeeringConnectionId",
    not_found: "InvalidVpcPeeringConnectionID.NotFound",
    output: "VpcPeeringConnections",
    filters: &[
        ("vpc-peering-connection-id", "VpcPeeringConnectionId"),
        ("requester-vpc-info.vpc-id", "RequesterVpcInfo.VpcId"),
        ("requester-vpc-info.cidr-block", "RequesterVpcInfo.CidrBlock"),
        ("accepter-vpc-info.vpc-id", "AccepterVpcInfo.VpcId"),
        ("accepter-vpc-info.cidr-block", "AccepterVpcInfo.CidrBlock"),
        ("status-code", "Status.Code"),
    ],
};

fn peerings(m: &Model) -> Vec<Value> {
    let side = |v: &crate::model::Vpc| {
        json!({
            "VpcId": v.id, "CidrBlock": v.cidr.to_string(), "CidrBlockSet": [{"CidrBlock": v.cidr.to_string()}],
            "OwnerId": owner_id(m), "Region": REGION,
        })
    };
    m.peerings
        .iter()
        .map(|p| {
            json!({
                "VpcPeeringConnectionId": p.id, "RequesterVpcInfo": side(&m.vpcs[p.requester_vpc.index()]),
                "AccepterVpcInfo": side(&m.vpcs[p.accepter_vpc.index()]),
                "Status": {"Code": p.status.name(), "Message": match p.status {
                    crate::model::PeeringStatus::Active => "Active",
                    crate::model::PeeringStatus::PendingAcceptance => "Pending Acceptance by the accepter's owner",
                }},
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Zones, instance types, flow logs

const ZONES: Listing = Listing {
    ids: "ZoneIds",
    id_member: "ZoneId",
    not_found: "InvalidParameterValue",
    output: "AvailabilityZones",
    filters: &[
        ("zone-name", "ZoneName"),
        ("zone-id", "ZoneId"),
        ("state", "State"),
        ("region-name", "RegionName"),
        ("zone-type", "ZoneType"),
    ],
};

/// The zones the lab's subnets name (the region's first zone when none does).
fn zones(m: &Model) -> Vec<Value> {
    let mut names: Vec<&str> = m.subnets.iter().map(|s| zone(s.availability_zone.as_ref())).collect();
    if names.is_empty() {
        names.push(DEFAULT_ZONE);
    }
    names.sort_unstable();
    names.dedup();
    names
        .iter()
        .enumerate()
        .map(|(i, z)| {
            json!({
                "ZoneName": z, "ZoneId": format!("use1-az{}", i + 1), "State": "available", "RegionName": REGION,
                "ZoneType": "availability-zone", "OptInStatus": "opt-in-not-required", "GroupName": REGION,
                "NetworkBorderGroup": REGION, "Messages": [],
            })
        })
        .collect()
}

const INSTANCE_TYPES: Listing = Listing {
    ids: "InstanceTypes",
    id_member: "InstanceType",
    not_found: "InvalidInstanceType",
    output: "InstanceTypes",
    filters: &[
        ("instance-type", "InstanceType"),
        ("network-info.maximum-network-interfaces", "NetworkInfo.MaximumNetworkInterfaces"),
        ("network-info.ipv4-addresses-per-interface", "NetworkInfo.Ipv4AddressesPerInterface"),
    ],
};

/// The instance types whose network limits the lab enforces (`src/topology/instance_types.rs`).
fn instance_types() -> Vec<Value> {
    crate::topology::instance_types::INSTANCE_TYPES
        .iter()
        .map(|(name, enis, ips)| {
            json!({
                "InstanceType": name,
                "NetworkInfo": {
                    "MaximumNetworkInterfaces": enis, "Ipv4AddressesPerInterface": ips,
                    "Ipv6AddressesPerInterface": 0, "Ipv6Supported": false, "MaximumNetworkCards": 1,
                    "DefaultNetworkCardIndex": 0,
                    "NetworkCards": [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": enis}],
                },
            })
        })
        .collect()
}

const FLOW_LOGS: Listing = Listing {
    ids: "FlowLogIds",
    id_member: "FlowLogId",
    not_found: "InvalidFlowLogId.NotFound",
    output: "FlowLogs",
    filters: &[
        ("flow-log-id", "FlowLogId"),
        ("resource-id", "ResourceId"),
        ("traffic-type", "TrafficType"),
        ("log-destination-type", "LogDestinationType"),
        ("deliver-log-status", "DeliverLogsStatus"),
    ],
};

/// Flow logs; a lab writes them to a file, which EC2 has no destination type for: the type is
/// left out and `LogDestination` is the file's path.
fn flow_logs(m: &Model) -> Vec<Value> {
    m.flow_logs
        .iter()
        .map(|f| {
            json!({
                "FlowLogId": f.id, "ResourceId": m.flow_log_resource_id(f.resource),
                "TrafficType": f.traffic_type.name(), "LogDestination": f.destination,
                "LogFormat": f.log_format.clone().unwrap_or_else(default_log_format),
                "MaxAggregationInterval": f.max_aggregation_interval, "FlowLogStatus": "ACTIVE",
                "DeliverLogsStatus": "SUCCESS",
            })
        })
        .collect()
}

/// AWS's default flow log format, spelled as `DescribeFlowLogs` shows it.
fn default_log_format() -> String {
    let fields = crate::capture::flow_log::format::DEFAULT_FORMAT.iter().map(|f| format!("${{{}}}", f.name()));
    fields.collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
