//! The mutating actions: each request becomes the live-change operations the CLI's verbs use
//! (`change::ops::Operation`), applied all or nothing by the running lab. A request that carries
//! several (two permissions, three instances) is judged as one change: the operations edit one
//! copy of the model in turn, and the result is applied as `vpclab apply` applies a file.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::describe::{derived_id, rule_id};
use super::{required, strings, text, ApiError};
use crate::change::live::LiveLab;
use crate::change::ops::{self, AclEntrySpec, Operation, RuleSpec};
use crate::change::{AwsError, Change, Outcome};
use crate::model::{InstanceState, Model};

/// Carries out `action` on the lab and answers as EC2 does.
pub fn act(action: &str, input: &Value, live: &Mutex<LiveLab>) -> Result<Value, ApiError> {
    let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
    let model = live.model();
    let dry_run = input.get("DryRun").and_then(Value::as_bool).unwrap_or(false);
    let (ops, answer) = match lifecycle(action, input, &model)? {
        Some(request) => request,
        None => request(action, input, &model)?,
    };
    let outcome = apply(&mut live, &model, &ops, dry_run)?;
    Ok(answer(&live.model(), &outcome))
}

/// How a request answers, from the model after it was applied and what the change did.
type Answer = Box<dyn FnOnce(&Model, &Outcome) -> Value>;

fn constant(v: Value) -> Answer {
    Box::new(move |_, _| v)
}

/// The operations `action` asks for, and how it answers.
fn request(action: &str, input: &Value, m: &Model) -> Result<(Vec<Operation>, Answer), ApiError> {
    let ok = || constant(json!({"Return": true}));
    Ok(match action {
        "AttachNetworkInterface" => {
            let eni = required(input, "NetworkInterfaceId")?.to_string();
            let device_index =
                input.get("DeviceIndex").and_then(Value::as_u64).ok_or_else(|| ApiError::missing("DeviceIndex"))?;
            let op = Operation::AttachNetworkInterface {
                network_interface_id: eni.clone(),
                instance_id: required(input, "InstanceId")?.to_string(),
                device_index: u32::try_from(device_index)
                    .map_err(|_| ApiError::invalid_value("DeviceIndex is too large"))?,
            };
            (vec![op], constant(json!({"AttachmentId": derived_id("eni-attach", &eni), "NetworkCardIndex": 0})))
        }
        "DetachNetworkInterface" => {
            let eni = eni_of_attachment(m, required(input, "AttachmentId")?)?;
            let force = input.get("Force").and_then(Value::as_bool).unwrap_or(false);
            (vec![Operation::DetachNetworkInterface { network_interface_id: eni, force }], constant(json!({})))
        }
        "AssignPrivateIpAddresses" => assign(input)?,
        "UnassignPrivateIpAddresses" => {
            let op = Operation::UnassignPrivateIpAddresses {
                network_interface_id: required(input, "NetworkInterfaceId")?.to_string(),
                private_ip_addresses: strings(input, "PrivateIpAddresses"),
            };
            (vec![op], constant(json!({})))
        }
        "AssociateAddress" => associate(input, m)?,
        "DisassociateAddress" => {
            let allocation_id = allocation_of(m, text(input, "AssociationId"), text(input, "PublicIp"))?;
            (vec![Operation::DisassociateAddress { allocation_id }], constant(json!({})))
        }
        "ModifyNetworkInterfaceAttribute" => (modify_eni(input)?, constant(json!({}))),
        "AuthorizeSecurityGroupIngress" | "AuthorizeSecurityGroupEgress" => {
            let (group, specs) = permissions(input, m)?;
            let egress = action.ends_with("Egress");
            let ops = specs
                .iter()
                .map(|rule| {
                    let (group_id, rule) = (group.clone(), rule.clone());
                    if egress {
                        Operation::AuthorizeSecurityGroupEgress { group_id, rule }
                    } else {
                        Operation::AuthorizeSecurityGroupIngress { group_id, rule }
                    }
                })
                .collect();
            (ops, Box::new(move |m: &Model, _: &Outcome| authorized(m, &group, egress, &specs)))
        }
        "RevokeSecurityGroupIngress" | "RevokeSecurityGroupEgress" => {
            let (group_id, specs) = permissions(input, m)?;
            let egress = action.ends_with("Egress");
            let ops = specs
                .into_iter()
                .map(|rule| {
                    let group_id = group_id.clone();
                    if egress {
                        Operation::RevokeSecurityGroupEgress { group_id, rule }
                    } else {
                        Operation::RevokeSecurityGroupIngress { group_id, rule }
                    }
                })
                .collect();
            (ops, ok())
        }
        "CreateRoute" | "ReplaceRoute" => {
            let route_table_id = required(input, "RouteTableId")?.to_string();
            let destination_cidr_block = required(input, "DestinationCidrBlock")?.to_string();
            let target = route_target(input, m)?;
            let op = if action == "CreateRoute" {
                Operation::CreateRoute { route_table_id, destination_cidr_block, target }
            } else {
                Operation::ReplaceRoute { route_table_id, destination_cidr_block, target }
            };
            (vec![op], if action == "CreateRoute" { ok() } else { constant(json!({})) })
        }
        "DeleteRoute" => {
            let op = Operation::DeleteRoute {
                route_table_id: required(input, "RouteTableId")?.to_string(),
                destination_cidr_block: required(input, "DestinationCidrBlock")?.to_string(),
            };
            (vec![op], constant(json!({})))
        }
        "ReplaceRouteTableAssociation" => {
            let association = required(input, "AssociationId")?;
            let subnet_id = subnet_of_association(m, association)?;
            let op = Operation::ReplaceRouteTableAssociation {
                subnet_id: subnet_id.clone(),
                route_table_id: required(input, "RouteTableId")?.to_string(),
            };
            let answer = json!({
                "NewAssociationId": derived_id("rtbassoc", &subnet_id), "AssociationState": {"State": "associated"},
            });
            (vec![op], constant(answer))
        }
        "CreateNetworkAclEntry" | "ReplaceNetworkAclEntry" | "DeleteNetworkAclEntry" => {
            (vec![acl_entry(action, input)?], constant(json!({})))
        }
        "StopInstances" | "StartInstances" | "TerminateInstances" | "RebootInstances" => instances(action, input, m)?,
        _ => return Err(ApiError::invalid_action(action)),
    })
}

/// Applies the operations as one change (a dry run only judges them).
fn apply(live: &mut LiveLab, model: &Model, ops: &[Operation], dry_run: bool) -> Result<Outcome, ApiError> {
    let change = match ops {
        [] => return Err(ApiError::missing("the change (nothing was asked for)")),
        [op] => Change::Operation { op: op.clone() },
        many => {
            let mut m = model.clone();
            for op in many {
                m = ops::validated(&ops::edit(&m, op)?.model)?;
            }
            Change::File { text: crate::topology::export(&m), file: "the EC2 API request".into() }
        }
    };
    let outcome = live.change(&change, dry_run)?;
    if dry_run {
        return Err(ApiError::new(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."));
    }
    Ok(outcome)
}

fn not_found(code: &str, what: &str, id: &str) -> ApiError {
    ApiError::from(AwsError::new(code, format!("The {what} '{id}' does not exist")))
}

/// The ENI an attachment id (`eni-attach-...`, as `DescribeNetworkInterfaces` gives it) names.
fn eni_of_attachment(m: &Model, attachment: &str) -> Result<String, ApiError> {
    m.enis
        .iter()
        .find(|e| e.attachment.is_some() && derived_id("eni-attach", &e.id) == attachment)
        .map(|e| e.id.clone())
        .ok_or_else(|| not_found("InvalidAttachmentID.NotFound", "attachment ID", attachment))
}

/// The Elastic IP an association id or public address names.
fn allocation_of(m: &Model, association: Option<&str>, public_ip: Option<&str>) -> Result<String, ApiError> {
    let found = match (association, public_ip) {
        (Some(a), _) => m.elastic_ips.iter().find(|x| derived_id("eipassoc", &x.id) == a),
        (None, Some(ip)) => m.elastic_ips.iter().find(|x| x.public_ip.to_string() == ip),
        (None, None) => return Err(ApiError::missing("AssociationId")),
    };
    found.map(|x| x.id.clone()).ok_or_else(|| match association {
        Some(a) => not_found("InvalidAssociationID.NotFound", "association ID", a),
        None => not_found("InvalidAddress.NotFound", "address", public_ip.unwrap_or_default()),
    })
}

/// The subnet a route table association id (`rtbassoc-...`) names.
fn subnet_of_association(m: &Model, association: &str) -> Result<String, ApiError> {
    if m.vpcs.iter().any(|v| derived_id("rtbassoc", &format!("{}/main", v.id)) == association) {
        return Err(ApiError::from(AwsError::new(
            "UnsupportedOperation",
            "replacing a VPC's main route table association is not implemented by the API: set the VPC's \
             main_route_table in the topology and `vpclab apply` it",
        )));
    }
    m.subnets
        .iter()
        .find(|s| derived_id("rtbassoc", &s.id) == association)
        .map(|s| s.id.clone())
        .ok_or_else(|| not_found("InvalidAssociationID.NotFound", "association ID", association))
}

fn assign(input: &Value) -> Result<(Vec<Operation>, Answer), ApiError> {
    if input.get("SecondaryPrivateIpAddressCount").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid_value(
            "SecondaryPrivateIpAddressCount is not implemented by vpclab: name the addresses (PrivateIpAddress.N)",
        ));
    }
    let eni = required(input, "NetworkInterfaceId")?.to_string();
    let ips = strings(input, "PrivateIpAddresses");
    let op = Operation::AssignPrivateIpAddresses {
        network_interface_id: eni.clone(),
        private_ip_addresses: ips.clone(),
        allow_reassignment: input.get("AllowReassignment").and_then(Value::as_bool).unwrap_or(false),
    };
    let assigned: Vec<Value> = ips.iter().map(|ip| json!({"PrivateIpAddress": ip})).collect();
    Ok((vec![op], constant(json!({"NetworkInterfaceId": eni, "AssignedPrivateIpAddresses": assigned}))))
}

fn associate(input: &Value, m: &Model) -> Result<(Vec<Operation>, Answer), ApiError> {
    let allocation_id = match (text(input, "AllocationId"), text(input, "PublicIp")) {
        (Some(a), _) => a.to_string(),
        (None, Some(ip)) => allocation_of(m, None, Some(ip))?,
        (None, None) => return Err(ApiError::missing("AllocationId")),
    };
    let op = Operation::AssociateAddress {
        allocation_id: allocation_id.clone(),
        network_interface_id: text(input, "NetworkInterfaceId").map(str::to_string),
        private_ip_address: text(input, "PrivateIpAddress").map(str::to_string),
        instance_id: text(input, "InstanceId").map(str::to_string),
        // In a VPC, reassociation is automatic unless the request says false.
        allow_reassociation: input.get("AllowReassociation").and_then(Value::as_bool).unwrap_or(true),
    };
    Ok((vec![op], constant(json!({"AssociationId": derived_id("eipassoc", &allocation_id)}))))
}

/// One attribute per call, as EC2 allows.
fn modify_eni(input: &Value) -> Result<Vec<Operation>, ApiError> {
    let eni = required(input, "NetworkInterfaceId")?.to_string();
    let source_dest_check = input.pointer("/SourceDestCheck/Value").and_then(Value::as_bool);
    let groups = input.get("Groups").map(|_| strings(input, "Groups"));
    if input.get("Description").is_some() || input.get("Attachment").is_some() {
        return Err(ApiError::invalid_value(
            "vpclab's ModifyNetworkInterfaceAttribute changes SourceDestCheck or Groups only",
        ));
    }
    if source_dest_check.is_some() == groups.is_some() {
        return Err(ApiError::new(
            400,
            "InvalidParameterCombination",
            "Specify exactly one attribute: SourceDestCheck or Groups",
        ));
    }
    Ok(vec![Operation::ModifyNetworkInterfaceAttribute { network_interface_id: eni, source_dest_check, groups }])
}

/// The group a security group request names (by id, or by name) and its rules, one per CIDR
/// or group of each permission (the older flat parameters are one permission).
fn permissions(input: &Value, m: &Model) -> Result<(String, Vec<RuleSpec>), ApiError> {
    let group = match (text(input, "GroupId"), text(input, "GroupName")) {
        (Some(id), _) => id.to_string(),
        (None, Some(name)) => group_by_name(m, name)?,
        (None, None) => return Err(ApiError::missing("GroupId")),
    };
    let mut perms: Vec<Value> = input.get("IpPermissions").and_then(Value::as_array).cloned().unwrap_or_default();
    if perms.is_empty() && input.get("IpProtocol").is_some() {
        let mut p =
            json!({"IpProtocol": input["IpProtocol"], "FromPort": input["FromPort"], "ToPort": input["ToPort"]});
        if let Some(c) = text(input, "CidrIp") {
            p["IpRanges"] = json!([{"CidrIp": c}]);
        }
        perms.push(p);
    }
    let mut specs = Vec::new();
    for p in &perms {
        let protocol = p["IpProtocol"].as_str().ok_or_else(|| ApiError::missing("IpPermissions.N.IpProtocol"))?;
        let port = rule_port(protocol, &p["FromPort"], &p["ToPort"])?;
        let spec = |cidr: Option<String>, source_group: Option<String>| RuleSpec {
            protocol: protocol.to_string(),
            port: port.clone(),
            cidr,
            source_group,
        };
        for r in p["IpRanges"].as_array().into_iter().flatten() {
            specs.push(spec(r["CidrIp"].as_str().map(str::to_string), None));
        }
        for g in p["UserIdGroupPairs"].as_array().into_iter().flatten() {
            specs.push(spec(None, g["GroupId"].as_str().map(str::to_string)));
        }
        if !p["Ipv6Ranges"].as_array().is_none_or(Vec::is_empty)
            || !p["PrefixListIds"].as_array().is_none_or(Vec::is_empty)
        {
            return Err(ApiError::invalid_value(
                "vpclab has no IPv6 and no prefix lists: use IpRanges or UserIdGroupPairs",
            ));
        }
    }
    if specs.is_empty() {
        return Err(ApiError::missing("IpPermissions"));
    }
    Ok((group, specs))
}

/// A permission's ports as a rule spec gives them: `N-M` for TCP/UDP, the ICMP type for ICMP.
fn rule_port(protocol: &str, from: &Value, to: &Value) -> Result<Option<String>, ApiError> {
    let (from, to) = (from.as_i64(), to.as_i64());
    match protocol.to_ascii_lowercase().as_str() {
        "-1" | "all" => Ok(None),
        "icmp" | "1" => match (from, to) {
            (None | Some(-1), _) => Ok(None),
            (Some(t), None | Some(-1)) => Ok(Some(t.to_string())),
            (Some(_), Some(code)) => Err(ApiError::invalid_value(format!(
                "vpclab matches ICMP rules by type only (ToPort {code} would name one ICMP code): give ToPort -1"
            ))),
        },
        _ => match (from, to) {
            (Some(f), Some(t)) if f == -1 && t == -1 => Ok(None),
            (Some(f), Some(t)) => Ok(Some(format!("{f}-{t}"))),
            _ => Err(ApiError::missing("FromPort and ToPort")),
        },
    }
}

/// `AuthorizeSecurityGroup*`'s answer: the new rules, with their ids.
fn authorized(m: &Model, group: &str, egress: bool, specs: &[RuleSpec]) -> Value {
    let Some(g) = m.security_groups.iter().find(|g| g.id == group) else { return json!({"Return": true}) };
    let rules = if egress { &g.egress } else { &g.ingress };
    // The last `specs.len()` rules are the ones just added (authorize appends).
    let added = &rules[rules.len().saturating_sub(specs.len())..];
    let out: Vec<Value> = added
        .iter()
        .map(|r| json!({"SecurityGroupRuleId": rule_id(group, egress, r, m), "GroupId": group, "IsEgress": egress}))
        .collect();
    json!({"Return": true, "SecurityGroupRules": out})
}

/// A route's target from whichever of EC2's target parameters is given (an instance stands for
/// its primary ENI, as on AWS).
fn route_target(input: &Value, m: &Model) -> Result<String, ApiError> {
    for key in ["GatewayId", "NatGatewayId", "NetworkInterfaceId", "VpcPeeringConnectionId"] {
        if let Some(t) = text(input, key) {
            return Ok(t.to_string());
        }
    }
    if let Some(id) = text(input, "InstanceId") {
        let i = m.instance_by_id(id).ok_or_else(|| not_found("InvalidInstanceID.NotFound", "instance ID", id))?;
        let enis = m.enis_of(i);
        return match enis.as_slice() {
            [one] => Ok(m.enis[one.index()].id.clone()),
            _ => Err(ApiError::from(AwsError::new(
                "InvalidInstanceID",
                format!("There are multiple interfaces attached to instance '{id}'. Please specify an interface ID for the operation instead."),
            ))),
        };
    }
    for unsupported in [
        "TransitGatewayId",
        "EgressOnlyInternetGatewayId",
        "LocalGatewayId",
        "CarrierGatewayId",
        "VpcEndpointId",
        "CoreNetworkArn",
    ] {
        if input.get(unsupported).is_some() {
            return Err(ApiError::invalid_value(format!("vpclab has no {unsupported} targets")));
        }
    }
    Err(ApiError::missing("GatewayId"))
}

fn acl_entry(action: &str, input: &Value) -> Result<Operation, ApiError> {
    let network_acl_id = required(input, "NetworkAclId")?.to_string();
    let number = input.get("RuleNumber").and_then(Value::as_i64).ok_or_else(|| ApiError::missing("RuleNumber"))?;
    let rule_number = u16::try_from(number)
        .map_err(|_| ApiError::invalid_value(format!("rule number {number} is outside 1 to 32766")))?;
    let egress = input.get("Egress").and_then(Value::as_bool).ok_or_else(|| ApiError::missing("Egress"))?;
    if action == "DeleteNetworkAclEntry" {
        return Ok(Operation::DeleteNetworkAclEntry { network_acl_id, rule_number, egress });
    }
    let protocol = required(input, "Protocol")?.to_string();
    let port_range = match (input.pointer("/PortRange/From"), input.pointer("/IcmpTypeCode/Type")) {
        (Some(from), _) => {
            let to = input.pointer("/PortRange/To").unwrap_or(from);
            Some(format!("From={from},To={to}"))
        }
        (None, Some(t)) if t.as_i64() != Some(-1) => Some(t.to_string()),
        _ => None,
    };
    let entry = AclEntrySpec {
        protocol,
        rule_action: required(input, "RuleAction")?.to_string(),
        cidr_block: required(input, "CidrBlock")?.to_string(),
        port_range,
    };
    Ok(if action == "CreateNetworkAclEntry" {
        Operation::CreateNetworkAclEntry { network_acl_id, rule_number, egress, entry }
    } else {
        Operation::ReplaceNetworkAclEntry { network_acl_id, rule_number, egress, entry }
    })
}

fn state_json(state: Option<InstanceState>) -> Value {
    match state {
        Some(InstanceState::Running) => json!({"Code": 16, "Name": "running"}),
        Some(InstanceState::Stopped) => json!({"Code": 80, "Name": "stopped"}),
        None => json!({"Code": 48, "Name": "terminated"}),
    }
}

fn instances(action: &str, input: &Value, m: &Model) -> Result<(Vec<Operation>, Answer), ApiError> {
    let instance_ids = strings(input, "InstanceIds");
    if instance_ids.is_empty() {
        return Err(ApiError::missing("InstanceId"));
    }
    let before: Vec<(String, Option<InstanceState>)> = instance_ids
        .iter()
        .map(|id| (id.clone(), m.instance_by_id(id).map(|i| m.instances[i.index()].state)))
        .collect();
    let op = match action {
        "StopInstances" => Operation::StopInstances { instance_ids },
        "StartInstances" => Operation::StartInstances { instance_ids },
        "TerminateInstances" => Operation::TerminateInstances { instance_ids },
        _ => return Ok((vec![Operation::RebootInstances { instance_ids }], constant(json!({})))),
    };
    let list = match action {
        "StopInstances" => "StoppingInstances",
        "StartInstances" => "StartingInstances",
        _ => "TerminatingInstances",
    };
    let answer = move |m: &Model, _: &Outcome| {
        let changes: Vec<Value> = before
            .iter()
            .map(|(id, was)| {
                let now = m.instance_by_id(id).map(|i| m.instances[i.index()].state);
                json!({"InstanceId": id, "PreviousState": state_json(*was), "CurrentState": state_json(now)})
            })
            .collect();
        json!({ list: changes })
    };
    Ok((vec![op], Box::new(answer)))
}

/// The create/delete actions: the operation, and the answer describing what was created (read
/// back from the model after the change, by the ids the change reports).
fn lifecycle(action: &str, input: &Value, m: &Model) -> Result<Option<(Vec<Operation>, Answer)>, ApiError> {
    match vpc_objects(action, input, m)? {
        Some(request) => Ok(Some(request)),
        None => edge_objects(action, input),
    }
}

/// VPCs, subnets, groups, network interfaces and route tables.
fn vpc_objects(action: &str, input: &Value, m: &Model) -> Result<Option<(Vec<Operation>, Answer)>, ApiError> {
    let s = |name: &str| required(input, name).map(str::to_string);
    let o = |name: &str| text(input, name).map(str::to_string);
    let empty = || constant(json!({}));
    Ok(Some(match action {
        "CreateVpc" => (
            vec![Operation::CreateVpc { cidr_block: s("CidrBlock")?, vpc_id: None }],
            created("DescribeVpcs", "VpcIds", "Vpc"),
        ),
        "DeleteVpc" => (vec![Operation::DeleteVpc { vpc_id: s("VpcId")? }], empty()),
        "CreateSubnet" => {
            let op = Operation::CreateSubnet {
                vpc_id: s("VpcId")?,
                cidr_block: s("CidrBlock")?,
                availability_zone: o("AvailabilityZone"),
                subnet_id: None,
            };
            (vec![op], created("DescribeSubnets", "SubnetIds", "Subnet"))
        }
        "DeleteSubnet" => (vec![Operation::DeleteSubnet { subnet_id: s("SubnetId")? }], empty()),
        "CreateSecurityGroup" => {
            let op = Operation::CreateSecurityGroup {
                vpc_id: s("VpcId")?,
                group_name: s("GroupName")?,
                description: s("Description")?,
                group_id: None,
            };
            (vec![op], Box::new(|_: &Model, out: &Outcome| json!({"GroupId": out.created.first()})))
        }
        "DeleteSecurityGroup" => {
            let group_id = match (o("GroupId"), o("GroupName")) {
                (Some(id), _) => id,
                (None, Some(name)) => group_by_name(m, &name)?,
                (None, None) => return Err(ApiError::missing("GroupId")),
            };
            (
                vec![Operation::DeleteSecurityGroup { group_id: group_id.clone() }],
                constant(json!({"Return": true, "GroupId": group_id})),
            )
        }
        "CreateNetworkInterface" => {
            let op = Operation::CreateNetworkInterface {
                subnet_id: s("SubnetId")?,
                private_ip_address: o("PrivateIpAddress"),
                groups: strings(input, "Groups"),
                description: o("Description"),
                network_interface_id: None,
            };
            (vec![op], created("DescribeNetworkInterfaces", "NetworkInterfaceIds", "NetworkInterface"))
        }
        "DeleteNetworkInterface" => {
            (vec![Operation::DeleteNetworkInterface { network_interface_id: s("NetworkInterfaceId")? }], empty())
        }
        "CreateRouteTable" => (
            vec![Operation::CreateRouteTable { vpc_id: s("VpcId")?, route_table_id: None }],
            created("DescribeRouteTables", "RouteTableIds", "RouteTable"),
        ),
        "DeleteRouteTable" => (vec![Operation::DeleteRouteTable { route_table_id: s("RouteTableId")? }], empty()),
        "AssociateRouteTable" => {
            let subnet_id = s("SubnetId")?;
            let answer = json!({"AssociationId": derived_id("rtbassoc", &subnet_id), "AssociationState": {"State": "associated"}});
            (vec![Operation::AssociateRouteTable { route_table_id: s("RouteTableId")?, subnet_id }], constant(answer))
        }
        "DisassociateRouteTable" => {
            let subnet_id = subnet_of_association(m, &s("AssociationId")?)?;
            (vec![Operation::DisassociateRouteTable { subnet_id }], empty())
        }
        _ => return Ok(None),
    }))
}

/// Internet and NAT gateways, addresses, peerings and instances.
fn edge_objects(action: &str, input: &Value) -> Result<Option<(Vec<Operation>, Answer)>, ApiError> {
    let s = |name: &str| required(input, name).map(str::to_string);
    let o = |name: &str| text(input, name).map(str::to_string);
    let empty = || constant(json!({}));
    let ok = || constant(json!({"Return": true}));
    Ok(Some(match action {
        "CreateInternetGateway" => (
            vec![Operation::CreateInternetGateway { internet_gateway_id: None }],
            created("DescribeInternetGateways", "InternetGatewayIds", "InternetGateway"),
        ),
        "AttachInternetGateway" => (
            vec![Operation::AttachInternetGateway {
                internet_gateway_id: s("InternetGatewayId")?,
                vpc_id: s("VpcId")?,
            }],
            empty(),
        ),
        "DetachInternetGateway" => (
            vec![Operation::DetachInternetGateway {
                internet_gateway_id: s("InternetGatewayId")?,
                vpc_id: s("VpcId")?,
            }],
            empty(),
        ),
        "DeleteInternetGateway" => {
            (vec![Operation::DeleteInternetGateway { internet_gateway_id: s("InternetGatewayId")? }], empty())
        }
        "AllocateAddress" => {
            let answer = |m: &Model, out: &Outcome| {
                let item = read_back(m, "DescribeAddresses", "AllocationIds", out);
                json!({"AllocationId": item["AllocationId"], "PublicIp": item["PublicIp"], "Domain": "vpc",
                       "PublicIpv4Pool": "amazon", "NetworkBorderGroup": super::describe::REGION})
            };
            (vec![Operation::AllocateAddress { public_ip: o("Address") }], Box::new(answer))
        }
        "ReleaseAddress" => (vec![Operation::ReleaseAddress { allocation_id: s("AllocationId")? }], empty()),
        "CreateNatGateway" => {
            if o("ConnectivityType").is_some_and(|c| c != "public") {
                return Err(ApiError::invalid_value(
                    "vpclab's NAT gateways are public: ConnectivityType private is not implemented",
                ));
            }
            let op = Operation::CreateNatGateway {
                subnet_id: s("SubnetId")?,
                allocation_id: o("AllocationId"),
                nat_gateway_id: None,
            };
            (vec![op], created("DescribeNatGateways", "NatGatewayIds", "NatGateway"))
        }
        "DeleteNatGateway" => {
            let id = s("NatGatewayId")?;
            (vec![Operation::DeleteNatGateway { nat_gateway_id: id.clone() }], constant(json!({"NatGatewayId": id})))
        }
        "CreateVpcPeeringConnection" => {
            if o("PeerOwnerId").is_some() || o("PeerRegion").is_some_and(|r| r != super::describe::REGION) {
                return Err(ApiError::invalid_value(
                    "a lab has one account and one region: PeerOwnerId and another PeerRegion are not implemented",
                ));
            }
            let op = Operation::CreateVpcPeeringConnection {
                vpc_id: s("VpcId")?,
                peer_vpc_id: s("PeerVpcId")?,
                vpc_peering_connection_id: None,
            };
            (vec![op], created("DescribeVpcPeeringConnections", "VpcPeeringConnectionIds", "VpcPeeringConnection"))
        }
        "AcceptVpcPeeringConnection" => {
            let id = s("VpcPeeringConnectionId")?;
            let answer = move |m: &Model, _: &Outcome| {
                let v = super::describe::describe(
                    "DescribeVpcPeeringConnections",
                    &json!({"VpcPeeringConnectionIds": [id]}),
                    m,
                );
                json!({"VpcPeeringConnection": v.map(|v| v["VpcPeeringConnections"][0].clone()).unwrap_or_default()})
            };
            (
                vec![Operation::AcceptVpcPeeringConnection { vpc_peering_connection_id: s("VpcPeeringConnectionId")? }],
                Box::new(answer),
            )
        }
        "DeleteVpcPeeringConnection" => (
            vec![Operation::DeleteVpcPeeringConnection { vpc_peering_connection_id: s("VpcPeeringConnectionId")? }],
            ok(),
        ),
        "RunInstances" => run_instances(input)?,
        _ => return Ok(None),
    }))
}

/// The first created object as `describe` lists it.
fn read_back(m: &Model, describe: &str, ids: &str, out: &Outcome) -> Value {
    let Some(id) = out.created.first() else { return Value::Null };
    let list = super::describe::describe(describe, &json!({ ids: [id] }), m);
    list.ok()
        .and_then(|v| v.as_object().and_then(|o| o.values().find(|x| x.is_array()).cloned()))
        .map_or(Value::Null, |a| a[0].clone())
}

/// An answer `{member: the created object}`.
fn created(describe: &'static str, ids: &'static str, member: &'static str) -> Answer {
    Box::new(move |m: &Model, out: &Outcome| json!({ member: read_back(m, describe, ids, out) }))
}

fn group_by_name(m: &Model, name: &str) -> Result<String, ApiError> {
    m.security_groups
        .iter()
        .find(|g| g.name == name)
        .map(|g| g.id.clone())
        .ok_or_else(|| not_found("InvalidGroup.NotFound", "security group", name))
}

/// `RunInstances`: `MinCount` instances (the lab always has the capacity), each with its primary
/// ENI in the subnet given directly or as the first `NetworkInterfaces` entry.
fn run_instances(input: &Value) -> Result<(Vec<Operation>, Answer), ApiError> {
    let nic = input.pointer("/NetworkInterfaces/0").cloned().unwrap_or(Value::Null);
    let subnet_id =
        text(input, "SubnetId").or_else(|| text(&nic, "SubnetId")).ok_or_else(|| ApiError::missing("SubnetId"))?;
    let mut groups = strings(input, "SecurityGroupIds");
    groups.extend(strings(&nic, "Groups"));
    let count = input.get("MinCount").and_then(Value::as_u64).ok_or_else(|| ApiError::missing("MinCount"))?;
    let max = input.get("MaxCount").and_then(Value::as_u64).ok_or_else(|| ApiError::missing("MaxCount"))?;
    if count == 0 || count > max || count > 64 {
        return Err(ApiError::invalid_value(format!(
            "MinCount {count} and MaxCount {max}: 1 <= MinCount <= MaxCount, at most 64 at once"
        )));
    }
    let op = Operation::RunInstances {
        subnet_id: subnet_id.to_string(),
        instance_type: text(input, "InstanceType").map(str::to_string),
        private_ip_address: text(input, "PrivateIpAddress")
            .or_else(|| text(&nic, "PrivateIpAddress"))
            .map(str::to_string),
        security_group_ids: groups,
        count: count as u32,
        instance_id: None,
    };
    let answer = |m: &Model, out: &Outcome| {
        let ids: Vec<&String> = out.created.iter().filter(|id| m.instance_by_id(id).is_some()).collect();
        let v = super::describe::describe("DescribeInstances", &json!({"InstanceIds": ids}), m).unwrap_or_default();
        let instances: Vec<Value> =
            v["Reservations"].as_array().into_iter().flatten().map(|r| r["Instances"][0].clone()).collect();
        let first = ids.first().map_or(String::new(), |i| i.to_string());
        json!({"ReservationId": derived_id("r", &first), "OwnerId": super::describe::owner_id(m), "Groups": [], "Instances": instances})
    };
    Ok((vec![op], Box::new(answer)))
}
