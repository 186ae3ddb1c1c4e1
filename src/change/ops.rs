//! The EC2-named operations, each an edit of a copy of the checked model. An edit checks what the
//! EC2 API checks before anything else (the ids exist, the state allows it, duplicates), with
//! AWS's error codes; the edited model then goes through the topology validation like any file
//! ([`validated`]), so limits, reserved addresses and references are judged by one code.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{create, parse_ip, AwsError};
use crate::model::{
    AclAction, AclRule, Cidr, EniIdx, FlowLog, FlowLogResource, InstanceIdx, InstanceState, Model, PortMatch,
    PortRange, Protocol, Route, RouteTarget, SgIdx, SgPeer, SgRule, SubnetIdx, TrafficType, VpcIdx,
};
use crate::packet::IpProto;
use crate::topology;

/// A security group rule as the CLI's flags give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// `tcp`, `udp`, `icmp`, `all`/`-1` or a number.
    pub protocol: String,
    /// `N` or `N-M` (TCP/UDP); the ICMP type for ICMP (`-1`: all).
    pub port: Option<String>,
    /// A CIDR block.
    pub cidr: Option<String>,
    /// A group whose members' private IPs match.
    pub source_group: Option<String>,
}

/// A network ACL entry as the CLI's flags give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntrySpec {
    /// `tcp`, `udp`, `icmp`, `all`/`-1` or a number.
    pub protocol: String,
    /// `allow` or `deny`.
    pub rule_action: String,
    /// The remote CIDR block.
    pub cidr_block: String,
    /// `From=N,To=M` or `N-M` (TCP/UDP).
    pub port_range: Option<String>,
}

/// One change, spelled like the `aws ec2` command it mirrors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Operation {
    /// `attach-network-interface`.
    AttachNetworkInterface {
        /// ENI.
        network_interface_id: String,
        /// Instance.
        instance_id: String,
        /// Device index (`eth<N>`).
        device_index: u32,
    },
    /// `detach-network-interface` (the ENI id stands for the attachment id).
    DetachNetworkInterface {
        /// ENI.
        network_interface_id: String,
        /// `--force`: accepted; vpclab's detach never waits for the instance.
        force: bool,
    },
    /// `assign-private-ip-addresses`.
    AssignPrivateIpAddresses {
        /// ENI.
        network_interface_id: String,
        /// Addresses to add as secondary IPs.
        private_ip_addresses: Vec<String>,
        /// Take them from another ENI that has them.
        allow_reassignment: bool,
    },
    /// `unassign-private-ip-addresses`.
    UnassignPrivateIpAddresses {
        /// ENI.
        network_interface_id: String,
        /// Secondary addresses to remove.
        private_ip_addresses: Vec<String>,
    },
    /// `associate-address`.
    AssociateAddress {
        /// The Elastic IP's allocation id.
        allocation_id: String,
        /// ENI (or `instance_id`).
        network_interface_id: Option<String>,
        /// Which of the ENI's private IPs (default: its primary).
        private_ip_address: Option<String>,
        /// An instance with exactly one ENI.
        instance_id: Option<String>,
        /// Move it if it is associated elsewhere (AWS's default).
        allow_reassociation: bool,
    },
    /// `disassociate-address` (the allocation id stands for the association id).
    DisassociateAddress {
        /// The Elastic IP's allocation id.
        allocation_id: String,
    },
    /// `modify-network-interface-attribute`: one attribute per call.
    ModifyNetworkInterfaceAttribute {
        /// ENI.
        network_interface_id: String,
        /// `--source-dest-check` / `--no-source-dest-check`.
        source_dest_check: Option<bool>,
        /// `--groups`: the whole new set.
        groups: Option<Vec<String>>,
    },
    /// `authorize-security-group-ingress`.
    AuthorizeSecurityGroupIngress {
        /// Group.
        group_id: String,
        /// The rule.
        rule: RuleSpec,
    },
    /// `authorize-security-group-egress`.
    AuthorizeSecurityGroupEgress {
        /// Group.
        group_id: String,
        /// The rule.
        rule: RuleSpec,
    },
    /// `revoke-security-group-ingress`.
    RevokeSecurityGroupIngress {
        /// Group.
        group_id: String,
        /// The rule.
        rule: RuleSpec,
    },
    /// `revoke-security-group-egress`.
    RevokeSecurityGroupEgress {
        /// Group.
        group_id: String,
        /// The rule.
        rule: RuleSpec,
    },
    /// `create-route`.
    CreateRoute {
        /// Route table.
        route_table_id: String,
        /// Destination.
        destination_cidr_block: String,
        /// Target id (internet gateway, NAT gateway, ENI or peering).
        target: String,
    },
    /// `replace-route`.
    ReplaceRoute {
        /// Route table.
        route_table_id: String,
        /// Destination of an existing route.
        destination_cidr_block: String,
        /// New target id.
        target: String,
    },
    /// `delete-route`.
    DeleteRoute {
        /// Route table.
        route_table_id: String,
        /// Destination.
        destination_cidr_block: String,
    },
    /// `replace-route-table-association` (the subnet id stands for the association id).
    ReplaceRouteTableAssociation {
        /// Subnet.
        subnet_id: String,
        /// Its new route table.
        route_table_id: String,
    },
    /// `create-network-acl-entry`.
    CreateNetworkAclEntry {
        /// ACL.
        network_acl_id: String,
        /// 1..=32766.
        rule_number: u16,
        /// Outbound rule (else inbound).
        egress: bool,
        /// The entry.
        entry: AclEntrySpec,
    },
    /// `replace-network-acl-entry`.
    ReplaceNetworkAclEntry {
        /// ACL.
        network_acl_id: String,
        /// An existing rule number.
        rule_number: u16,
        /// Outbound rule (else inbound).
        egress: bool,
        /// The entry.
        entry: AclEntrySpec,
    },
    /// `delete-network-acl-entry`.
    DeleteNetworkAclEntry {
        /// ACL.
        network_acl_id: String,
        /// The rule number.
        rule_number: u16,
        /// Outbound rule (else inbound).
        egress: bool,
    },
    /// `stop-instances`.
    StopInstances {
        /// Instances.
        instance_ids: Vec<String>,
    },
    /// `start-instances`.
    StartInstances {
        /// Instances.
        instance_ids: Vec<String>,
    },
    /// `reboot-instances`.
    RebootInstances {
        /// Instances.
        instance_ids: Vec<String>,
    },
    /// `terminate-instances`.
    TerminateInstances {
        /// Instances.
        instance_ids: Vec<String>,
    },
    /// `create-flow-logs`: one flow log, written to a file.
    CreateFlowLogs {
        /// What it covers: one ENI, subnet or VPC id (AWS takes several; here each flow log
        /// writes its own file).
        resource_ids: Vec<String>,
        /// `NetworkInterface`, `Subnet` or `VPC`.
        resource_type: String,
        /// `ACCEPT`, `REJECT` or `ALL`.
        traffic_type: String,
        /// Only `file` (a lab extension: AWS's are `cloud-watch-logs`, `s3`,
        /// `kinesis-data-firehose`).
        log_destination_type: String,
        /// The file, an absolute path.
        log_destination: String,
        /// AWS's `${field}` format (default: version 2).
        log_format: Option<String>,
        /// Seconds per aggregation interval (default 600).
        max_aggregation_interval: Option<u32>,
        /// The flow log's id (a lab extension; default a generated `fl-<hex>`).
        flow_log_id: Option<String>,
        /// The account id written in records.
        account_id: Option<String>,
    },
    /// `delete-flow-logs`.
    DeleteFlowLogs {
        /// Flow logs.
        flow_log_ids: Vec<String>,
    },
    /// `create-vpc`, with AWS's default group, default ACL and main route table.
    CreateVpc {
        /// /16 to /28.
        cidr_block: String,
        /// Its id (a lab extension; default a generated `vpc-<hex>`).
        vpc_id: Option<String>,
    },
    /// `delete-vpc`: nothing may be left in it but its implicit objects.
    DeleteVpc {
        /// VPC.
        vpc_id: String,
    },
    /// `create-subnet`.
    CreateSubnet {
        /// VPC.
        vpc_id: String,
        /// /16 to /28, inside the VPC's block, clear of its other subnets.
        cidr_block: String,
        /// Availability zone, if given.
        availability_zone: Option<String>,
        /// Its id (default a generated `subnet-<hex>`).
        subnet_id: Option<String>,
    },
    /// `delete-subnet`: no network interfaces or NAT gateways may be left in it.
    DeleteSubnet {
        /// Subnet.
        subnet_id: String,
    },
    /// `create-security-group`: no inbound rules, one outbound rule allowing everything.
    CreateSecurityGroup {
        /// VPC.
        vpc_id: String,
        /// AWS's `GroupName`, unique in the VPC.
        group_name: String,
        /// AWS's `Description`.
        description: String,
        /// Its id (default a generated `sg-<hex>`).
        group_id: Option<String>,
    },
    /// `delete-security-group`: not a default group, not in use, not named by another's rule.
    DeleteSecurityGroup {
        /// Group.
        group_id: String,
    },
    /// `create-network-interface`, detached.
    CreateNetworkInterface {
        /// Subnet.
        subnet_id: String,
        /// Its primary private IP (default the subnet's first free address).
        private_ip_address: Option<String>,
        /// Security groups (empty: the VPC's default group).
        #[serde(default)]
        groups: Vec<String>,
        /// Free text.
        description: Option<String>,
        /// Its id (default a generated `eni-<hex>`).
        network_interface_id: Option<String>,
    },
    /// `delete-network-interface`: only a detached one.
    DeleteNetworkInterface {
        /// ENI.
        network_interface_id: String,
    },
    /// `create-route-table`, holding the local route.
    CreateRouteTable {
        /// VPC.
        vpc_id: String,
        /// Its id (default a generated `rtb-<hex>`).
        route_table_id: Option<String>,
    },
    /// `delete-route-table`: not a main table, associated with no subnet.
    DeleteRouteTable {
        /// Route table.
        route_table_id: String,
    },
    /// `associate-route-table`.
    AssociateRouteTable {
        /// Route table.
        route_table_id: String,
        /// A subnet still on its VPC's main table.
        subnet_id: String,
    },
    /// `disassociate-route-table` (the subnet id stands for the association id): back to the
    /// main table.
    DisassociateRouteTable {
        /// Subnet.
        subnet_id: String,
    },
    /// `create-internet-gateway`, detached.
    CreateInternetGateway {
        /// Its id (default a generated `igw-<hex>`).
        internet_gateway_id: Option<String>,
    },
    /// `attach-internet-gateway`.
    AttachInternetGateway {
        /// Internet gateway.
        internet_gateway_id: String,
        /// VPC.
        vpc_id: String,
    },
    /// `detach-internet-gateway`.
    DetachInternetGateway {
        /// Internet gateway.
        internet_gateway_id: String,
        /// The VPC it is attached to.
        vpc_id: String,
    },
    /// `delete-internet-gateway`: only a detached one.
    DeleteInternetGateway {
        /// Internet gateway.
        internet_gateway_id: String,
    },
    /// `allocate-address`.
    AllocateAddress {
        /// The address (default the first free one of 203.0.113.0/24, then 198.51.100.0/24,
        /// then 192.0.2.0/24).
        public_ip: Option<String>,
    },
    /// `release-address`: only an address associated with nothing.
    ReleaseAddress {
        /// The Elastic IP's allocation id.
        allocation_id: String,
    },
    /// `create-nat-gateway`.
    CreateNatGateway {
        /// Subnet.
        subnet_id: String,
        /// Its Elastic IP (none: a private NAT gateway).
        allocation_id: Option<String>,
        /// Its id (default a generated `nat-<hex>`).
        nat_gateway_id: Option<String>,
    },
    /// `delete-nat-gateway`.
    DeleteNatGateway {
        /// NAT gateway.
        nat_gateway_id: String,
    },
    /// `create-vpc-peering-connection`: pending acceptance.
    CreateVpcPeeringConnection {
        /// Requester VPC.
        vpc_id: String,
        /// Accepter VPC.
        peer_vpc_id: String,
        /// Its id (default a generated `pcx-<hex>`).
        vpc_peering_connection_id: Option<String>,
    },
    /// `accept-vpc-peering-connection`.
    AcceptVpcPeeringConnection {
        /// Peering connection.
        vpc_peering_connection_id: String,
    },
    /// `delete-vpc-peering-connection`.
    DeleteVpcPeeringConnection {
        /// Peering connection.
        vpc_peering_connection_id: String,
    },
    /// `run-instances`: each instance with its primary ENI at device 0.
    RunInstances {
        /// The primary ENIs' subnet.
        subnet_id: String,
        /// Checked against the instance-type table.
        instance_type: Option<String>,
        /// The primary private IP (count 1 only; default the subnet's first free address).
        private_ip_address: Option<String>,
        /// The primary ENIs' groups (empty: the VPC's default group).
        #[serde(default)]
        security_group_ids: Vec<String>,
        /// How many (AWS's min = max count), 1 to 32.
        count: u32,
        /// Its id (count 1 only; default a generated `i-<hex>`).
        instance_id: Option<String>,
    },
}

/// `create-flow-logs`' parameters, borrowed from the operation.
struct FlowLogSpec<'a> {
    resource_ids: &'a [String],
    resource_type: &'a str,
    traffic_type: &'a str,
    log_destination_type: &'a str,
    log_destination: &'a str,
    log_format: Option<&'a str>,
    max_aggregation_interval: Option<u32>,
    flow_log_id: Option<&'a str>,
    account_id: Option<&'a str>,
}

/// An operation's result: the edited model (not yet validated) and the instances to reboot (a
/// reboot changes no model, only the namespace).
#[derive(Debug)]
pub struct Edit {
    /// The model after the operation.
    pub model: Model,
    /// Instances whose processes end and whose interfaces come back.
    pub reboot: Vec<String>,
    /// The ids of the objects the operation created, in creation order.
    pub created: Vec<String>,
}

/// Applies `op` to a copy of `model`.
pub fn edit(model: &Model, op: &Operation) -> Result<Edit, AwsError> {
    let mut m = model.clone();
    let mut reboot = Vec::new();
    match op {
        Operation::AttachNetworkInterface { network_interface_id, instance_id, device_index } => {
            attach(&mut m, network_interface_id, instance_id, *device_index)?
        }
        Operation::DetachNetworkInterface { network_interface_id, force: _ } => detach(&mut m, network_interface_id)?,
        Operation::AssignPrivateIpAddresses { network_interface_id, private_ip_addresses, allow_reassignment } => {
            assign_ips(&mut m, network_interface_id, private_ip_addresses, *allow_reassignment)?
        }
        Operation::UnassignPrivateIpAddresses { network_interface_id, private_ip_addresses } => {
            unassign_ips(&mut m, network_interface_id, private_ip_addresses)?
        }
        Operation::AssociateAddress {
            allocation_id,
            network_interface_id,
            private_ip_address,
            instance_id,
            allow_reassociation,
        } => associate_address(
            &mut m,
            allocation_id,
            network_interface_id.as_deref(),
            private_ip_address.as_deref(),
            instance_id.as_deref(),
            *allow_reassociation,
        )?,
        Operation::DisassociateAddress { allocation_id } => {
            let e = eip(&m, allocation_id)?;
            if m.elastic_ips[e].association.take().is_none() {
                return Err(AwsError::new(
                    "InvalidAssociationID.NotFound",
                    format!("Elastic IP {allocation_id} is not associated"),
                ));
            }
        }
        Operation::ModifyNetworkInterfaceAttribute { network_interface_id, source_dest_check, groups } => {
            modify_eni(&mut m, network_interface_id, *source_dest_check, groups.as_deref())?
        }
        Operation::AuthorizeSecurityGroupIngress { group_id, rule } => sg_rule(&mut m, group_id, rule, true, true)?,
        Operation::AuthorizeSecurityGroupEgress { group_id, rule } => sg_rule(&mut m, group_id, rule, false, true)?,
        Operation::RevokeSecurityGroupIngress { group_id, rule } => sg_rule(&mut m, group_id, rule, true, false)?,
        Operation::RevokeSecurityGroupEgress { group_id, rule } => sg_rule(&mut m, group_id, rule, false, false)?,
        Operation::CreateRoute { route_table_id, destination_cidr_block, target } => {
            route(&mut m, route_table_id, destination_cidr_block, Some(target), RouteEdit::Create)?
        }
        Operation::ReplaceRoute { route_table_id, destination_cidr_block, target } => {
            route(&mut m, route_table_id, destination_cidr_block, Some(target), RouteEdit::Replace)?
        }
        Operation::DeleteRoute { route_table_id, destination_cidr_block } => {
            route(&mut m, route_table_id, destination_cidr_block, None, RouteEdit::Delete)?
        }
        Operation::ReplaceRouteTableAssociation { subnet_id, route_table_id } => {
            let s = m.subnets.iter().position(|s| &s.id == subnet_id).ok_or_else(|| {
                AwsError::new("InvalidSubnetID.NotFound", format!("the subnet ID '{subnet_id}' does not exist"))
            })?;
            let t = route_table(&m, route_table_id)?;
            m.subnets[s].route_table = crate::model::RtbIdx(t as u32);
        }
        Operation::CreateNetworkAclEntry { network_acl_id, rule_number, egress, entry } => {
            acl_entry(&mut m, network_acl_id, *rule_number, *egress, Some(entry), RouteEdit::Create)?
        }
        Operation::ReplaceNetworkAclEntry { network_acl_id, rule_number, egress, entry } => {
            acl_entry(&mut m, network_acl_id, *rule_number, *egress, Some(entry), RouteEdit::Replace)?
        }
        Operation::DeleteNetworkAclEntry { network_acl_id, rule_number, egress } => {
            acl_entry(&mut m, network_acl_id, *rule_number, *egress, None, RouteEdit::Delete)?
        }
        Operation::StopInstances { instance_ids } => {
            for id in instance_ids {
                let i = instance(&m, id)?;
                m.instances[i.index()].state = InstanceState::Stopped;
            }
        }
        Operation::StartInstances { instance_ids } => {
            for id in instance_ids {
                let i = instance(&m, id)?;
                m.instances[i.index()].state = InstanceState::Running;
            }
        }
        Operation::RebootInstances { instance_ids } => {
            for id in instance_ids {
                let i = instance(&m, id)?;
                if m.instances[i.index()].state != InstanceState::Running {
                    return Err(AwsError::new(
                        "IncorrectInstanceState",
                        format!("instance {id} is not running: it cannot be rebooted"),
                    ));
                }
                reboot.push(id.clone());
            }
        }
        Operation::TerminateInstances { instance_ids } => {
            for id in instance_ids {
                instance(&m, id)?;
            }
            for id in instance_ids {
                terminate(&mut m, id);
            }
        }
        Operation::CreateFlowLogs {
            resource_ids,
            resource_type,
            traffic_type,
            log_destination_type,
            log_destination,
            log_format,
            max_aggregation_interval,
            flow_log_id,
            account_id,
        } => create_flow_log(
            &mut m,
            &FlowLogSpec {
                resource_ids,
                resource_type,
                traffic_type,
                log_destination_type,
                log_destination,
                log_format: log_format.as_deref(),
                max_aggregation_interval: *max_aggregation_interval,
                flow_log_id: flow_log_id.as_deref(),
                account_id: account_id.as_deref(),
            },
        )?,
        Operation::DeleteFlowLogs { flow_log_ids } => {
            if flow_log_ids.is_empty() {
                return Err(AwsError::new("MissingParameter", "give at least one flow log id"));
            }
            // All or nothing: one unknown id refuses the whole change.
            for id in flow_log_ids {
                if !m.flow_logs.iter().any(|f| &f.id == id) {
                    return Err(AwsError::new(
                        "InvalidFlowLogId.NotFound",
                        format!("the flow log ID '{id}' does not exist"),
                    ));
                }
            }
            m.flow_logs.retain(|f| !flow_log_ids.contains(&f.id));
        }
        whole => return create_or_delete(model, whole),
    }
    Ok(Edit { model: m, reboot, created: Vec::new() })
}

/// The operations that create or delete whole objects ([`create`]).
fn create_or_delete(m: &Model, op: &Operation) -> Result<Edit, AwsError> {
    use Operation as O;
    let d = Option::as_deref;
    match op {
        O::CreateVpc { cidr_block, vpc_id } => create::create_vpc(m, cidr_block, d(vpc_id)),
        O::DeleteVpc { vpc_id } => create::delete_vpc(m, vpc_id),
        O::CreateSubnet { vpc_id, cidr_block, availability_zone, subnet_id } => {
            create::create_subnet(m, vpc_id, cidr_block, d(availability_zone), d(subnet_id))
        }
        O::DeleteSubnet { subnet_id } => create::delete_subnet(m, subnet_id),
        O::CreateSecurityGroup { vpc_id, group_name, description, group_id } => {
            create::create_security_group(m, vpc_id, group_name, description, d(group_id))
        }
        O::DeleteSecurityGroup { group_id } => create::delete_security_group(m, group_id),
        O::CreateNetworkInterface { subnet_id, private_ip_address, groups, description, network_interface_id } => {
            let (ip, desc, id) = (d(private_ip_address), d(description), d(network_interface_id));
            create::create_network_interface(m, subnet_id, ip, groups, desc, id)
        }
        O::DeleteNetworkInterface { network_interface_id } => create::delete_network_interface(m, network_interface_id),
        O::CreateRouteTable { vpc_id, route_table_id } => create::create_route_table(m, vpc_id, d(route_table_id)),
        O::DeleteRouteTable { route_table_id } => create::delete_route_table(m, route_table_id),
        O::AssociateRouteTable { route_table_id, subnet_id } => {
            create::associate_route_table(m, route_table_id, subnet_id)
        }
        O::DisassociateRouteTable { subnet_id } => create::disassociate_route_table(m, subnet_id),
        O::CreateInternetGateway { internet_gateway_id } => create::create_internet_gateway(m, d(internet_gateway_id)),
        O::AttachInternetGateway { internet_gateway_id, vpc_id } => {
            create::attach_internet_gateway(m, internet_gateway_id, vpc_id)
        }
        O::DetachInternetGateway { internet_gateway_id, vpc_id } => {
            create::detach_internet_gateway(m, internet_gateway_id, vpc_id)
        }
        O::DeleteInternetGateway { internet_gateway_id } => create::delete_internet_gateway(m, internet_gateway_id),
        O::AllocateAddress { public_ip } => create::allocate_address(m, d(public_ip)),
        O::ReleaseAddress { allocation_id } => create::release_address(m, allocation_id),
        O::CreateNatGateway { subnet_id, allocation_id, nat_gateway_id } => {
            create::create_nat_gateway(m, subnet_id, d(allocation_id), d(nat_gateway_id))
        }
        O::DeleteNatGateway { nat_gateway_id } => create::delete_nat_gateway(m, nat_gateway_id),
        O::CreateVpcPeeringConnection { vpc_id, peer_vpc_id, vpc_peering_connection_id } => {
            create::create_vpc_peering_connection(m, vpc_id, peer_vpc_id, d(vpc_peering_connection_id))
        }
        O::AcceptVpcPeeringConnection { vpc_peering_connection_id } => {
            create::accept_vpc_peering_connection(m, vpc_peering_connection_id)
        }
        O::DeleteVpcPeeringConnection { vpc_peering_connection_id } => {
            create::delete_vpc_peering_connection(m, vpc_peering_connection_id)
        }
        O::RunInstances { subnet_id, instance_type, private_ip_address, security_group_ids, count, instance_id } => {
            let spec = create::RunSpec {
                subnet_id,
                instance_type: d(instance_type),
                private_ip_address: d(private_ip_address),
                security_group_ids,
                count: *count,
                instance_id: d(instance_id),
            };
            create::run_instances(m, &spec)
        }
        other => Err(AwsError::internal(format!("{other:?} is not an operation that creates or deletes an object"))),
    }
}

/// Checks an edited model with the topology validation: it is written as a topology file and
/// parsed again, so a refused change is worded exactly as `vpclab check` would word the file.
pub fn validated(model: &Model) -> Result<Model, AwsError> {
    let text = topology::export(model);
    let checked = topology::parse(&text, "the changed lab").map_err(rejected)?;
    // What the file cannot say would be lost without a word: refuse it instead.
    if serde_json::to_value(model).ok() != serde_json::to_value(&checked).ok() {
        return Err(AwsError::new(
            "UnsupportedOperation",
            "vpclab cannot express this change in a topology file: the VPCs' implicit objects (default \
             security group `<vpc>/default`, default network ACL `<vpc>/default-acl`, implicit main route \
             table `<vpc>/main`) keep AWS's defaults; declare your own and use it",
        ));
    }
    Ok(checked)
}

/// A change the topology validation refused, worded by its first problem.
pub(super) fn rejected(e: topology::TopologyError) -> AwsError {
    match e.problems.first() {
        Some(p) => AwsError::invalid(format!("{}: {}", p.field, p.message)),
        None => AwsError::invalid(e.to_string()),
    }
}

fn eni(m: &Model, id: &str) -> Result<EniIdx, AwsError> {
    m.eni_by_id(id).ok_or_else(|| {
        AwsError::new("InvalidNetworkInterfaceID.NotFound", format!("the network interface '{id}' does not exist"))
    })
}

fn instance(m: &Model, id: &str) -> Result<InstanceIdx, AwsError> {
    m.instance_by_id(id)
        .ok_or_else(|| AwsError::new("InvalidInstanceID.NotFound", format!("the instance ID '{id}' does not exist")))
}

fn eip(m: &Model, id: &str) -> Result<usize, AwsError> {
    m.elastic_ips.iter().position(|e| e.id == id).ok_or_else(|| {
        AwsError::new("InvalidAllocationID.NotFound", format!("the allocation ID '{id}' does not exist"))
    })
}

fn group(m: &Model, id: &str) -> Result<SgIdx, AwsError> {
    m.security_groups
        .iter()
        .position(|g| g.id == id)
        .map(|i| SgIdx(i as u32))
        .ok_or_else(|| AwsError::new("InvalidGroup.NotFound", format!("the security group '{id}' does not exist")))
}

fn route_table(m: &Model, id: &str) -> Result<usize, AwsError> {
    m.route_tables.iter().position(|t| t.id == id).ok_or_else(|| {
        AwsError::new("InvalidRouteTableID.NotFound", format!("the route table ID '{id}' does not exist"))
    })
}

fn attach(m: &mut Model, eni_id: &str, instance_id: &str, device_index: u32) -> Result<(), AwsError> {
    let e = eni(m, eni_id)?;
    let i = instance(m, instance_id)?;
    if let Some(a) = m.enis[e.index()].attachment {
        let owner = &m.instances[a.instance.index()].id;
        return Err(AwsError::new(
            "InvalidNetworkInterface.InUse",
            format!("interface {eni_id} is currently in use (attached to {owner} as eth{})", a.device_index),
        ));
    }
    if let Some(other) =
        m.enis.iter().find(|x| x.attachment.is_some_and(|a| a.instance == i && a.device_index == device_index))
    {
        return Err(AwsError::invalid(format!(
            "instance '{instance_id}' already has an interface attached at device index '{device_index}' ({})",
            other.id
        )));
    }
    let attached = m.enis_of(i).len();
    let limits = m.instances[i.index()].instance_type.as_deref().and_then(topology::instance_types::limits);
    if let Some(l) = limits {
        if attached >= l.max_enis as usize {
            return Err(AwsError::new(
                "AttachmentLimitExceeded",
                format!(
                    "instance {instance_id} ({}) already has {attached} network interfaces, its type's maximum",
                    m.instances[i.index()].instance_type.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    let own_vpc = m.vpc_of(e);
    if let Some(primary) = m.enis_of(i).first() {
        if m.vpc_of(*primary) != own_vpc {
            return Err(AwsError::invalid(format!(
                "{eni_id} and instance {instance_id} are in different VPCs: an ENI attaches only within its VPC"
            )));
        }
    }
    m.enis[e.index()].attachment =
        Some(crate::model::Attachment { instance: i, device_index, delete_on_termination: false });
    Ok(())
}

fn detach(m: &mut Model, eni_id: &str) -> Result<(), AwsError> {
    let e = eni(m, eni_id)?;
    match m.enis[e.index()].attachment {
        None => {
            Err(AwsError::new("InvalidAttachmentID.NotFound", format!("network interface {eni_id} is not attached")))
        }
        Some(a) if a.device_index == 0 => Err(AwsError::not_permitted(format!(
            "the network interface at device index 0 cannot be detached ({eni_id} is {}'s primary)",
            m.instances[a.instance.index()].id
        ))),
        Some(_) => {
            m.enis[e.index()].attachment = None;
            Ok(())
        }
    }
}

fn assign_ips(m: &mut Model, eni_id: &str, ips: &[String], allow_reassignment: bool) -> Result<(), AwsError> {
    let e = eni(m, eni_id)?;
    if ips.is_empty() {
        return Err(AwsError::new("MissingParameter", "give at least one private IP address"));
    }
    let vpc = m.vpc_of(e);
    for s in ips {
        let ip = parse_ip(s)?;
        let owner = (0..m.enis.len())
            .map(|i| EniIdx(i as u32))
            .find(|&o| m.vpc_of(o) == vpc && m.enis[o.index()].private_ips().any(|x| x == ip));
        match owner {
            Some(o) if o == e => {
                return Err(AwsError::invalid(format!("{ip} is already assigned to {eni_id}")));
            }
            Some(o) if m.enis[o.index()].private_ip == ip => {
                return Err(AwsError::new(
                    "PrivateIpAddressInUse",
                    format!("{ip} is the primary private IP of {}: it cannot be reassigned", m.enis[o.index()].id),
                ));
            }
            Some(o) if !allow_reassignment => {
                return Err(AwsError::new(
                    "PrivateIpAddressInUse",
                    format!("{ip} is assigned to {}; --allow-reassignment moves it", m.enis[o.index()].id),
                ));
            }
            Some(o) => {
                m.enis[o.index()].secondary_private_ips.retain(|&x| x != ip);
                // Its Elastic IP goes with it, as on AWS.
                for a in &mut m.elastic_ips {
                    if a.association == Some((o, ip)) {
                        a.association = Some((e, ip));
                    }
                }
            }
            None => {}
        }
        let limits = m.enis[e.index()]
            .attachment
            .and_then(|a| m.instances[a.instance.index()].instance_type.as_deref())
            .and_then(topology::instance_types::limits);
        let count = m.enis[e.index()].private_ips().count();
        if let Some(l) = limits {
            if count >= l.ipv4_per_eni as usize {
                return Err(AwsError::new(
                    "PrivateIpAddressLimitExceeded",
                    format!("{eni_id} already has {count} private IPs, its instance type's maximum"),
                ));
            }
        }
        m.enis[e.index()].secondary_private_ips.push(ip);
    }
    Ok(())
}

fn unassign_ips(m: &mut Model, eni_id: &str, ips: &[String]) -> Result<(), AwsError> {
    let e = eni(m, eni_id)?;
    for s in ips {
        let ip = parse_ip(s)?;
        let x = &mut m.enis[e.index()];
        if x.private_ip == ip {
            return Err(AwsError::invalid(format!("{ip} is {eni_id}'s primary private IP: it cannot be unassigned")));
        }
        if !x.secondary_private_ips.contains(&ip) {
            return Err(AwsError::invalid(format!("{ip} is not a secondary private IP of {eni_id}")));
        }
        x.secondary_private_ips.retain(|&y| y != ip);
        // Its Elastic IP is disassociated (and stays allocated).
        for a in &mut m.elastic_ips {
            if a.association == Some((e, ip)) {
                a.association = None;
            }
        }
    }
    Ok(())
}

fn associate_address(
    m: &mut Model,
    allocation_id: &str,
    eni_id: Option<&str>,
    private_ip: Option<&str>,
    instance_id: Option<&str>,
    allow_reassociation: bool,
) -> Result<(), AwsError> {
    let a = eip(m, allocation_id)?;
    let e = match (eni_id, instance_id) {
        (Some(e), None) => eni(m, e)?,
        (None, Some(i)) => {
            let i = instance(m, i)?;
            match m.enis_of(i).as_slice() {
                [one] => *one,
                _ => {
                    return Err(AwsError::new(
                        "InvalidInstanceID",
                        format!(
                            "instance {} has more than one network interface: name one with --network-interface-id",
                            m.instances[i.index()].id
                        ),
                    ))
                }
            }
        }
        _ => return Err(AwsError::new("MissingParameter", "give either --network-interface-id or --instance-id")),
    };
    let ip = match private_ip {
        Some(s) => parse_ip(s)?,
        None => m.enis[e.index()].private_ip,
    };
    if !m.enis[e.index()].private_ips().any(|x| x == ip) {
        return Err(AwsError::invalid(format!("{ip} is not a private IP of {}", m.enis[e.index()].id)));
    }
    if let Some(nat) = m.nat_gateways.iter().find(|n| n.elastic_ip.is_some_and(|x| x.index() == a)) {
        return Err(AwsError::new(
            "Resource.AlreadyAssociated",
            format!("Elastic IP {allocation_id} is in use by NAT gateway {}", nat.id),
        ));
    }
    if let Some((old, old_ip)) = m.elastic_ips[a].association {
        if (old, old_ip) == (e, ip) {
            return Ok(());
        }
        if !allow_reassociation {
            return Err(AwsError::new(
                "Resource.AlreadyAssociated",
                format!("Elastic IP {allocation_id} is already associated with {} ({old_ip})", m.enis[old.index()].id),
            ));
        }
    }
    // The private IP's former Elastic IP is disassociated and stays allocated.
    for other in &mut m.elastic_ips {
        if other.association == Some((e, ip)) {
            other.association = None;
        }
    }
    m.elastic_ips[a].association = Some((e, ip));
    Ok(())
}

fn modify_eni(m: &mut Model, eni_id: &str, sdc: Option<bool>, groups: Option<&[String]>) -> Result<(), AwsError> {
    let e = eni(m, eni_id)?;
    match (sdc, groups) {
        (Some(flag), None) => m.enis[e.index()].source_dest_check = flag,
        (None, Some(gs)) => {
            if gs.is_empty() {
                return Err(AwsError::invalid("--groups needs at least one security group"));
            }
            let mut set = Vec::new();
            for g in gs {
                let gi = group(m, g)?;
                if !set.contains(&gi) {
                    set.push(gi);
                }
            }
            m.enis[e.index()].security_groups = set;
        }
        _ => {
            return Err(AwsError::invalid(
                "give exactly one attribute: --source-dest-check, --no-source-dest-check or --groups",
            ))
        }
    }
    Ok(())
}

/// A protocol as AWS's CLI takes it.
fn protocol(s: &str) -> Result<Protocol, AwsError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::TCP),
        "udp" => Ok(Protocol::UDP),
        "icmp" => Ok(Protocol::ICMP),
        "all" | "-1" => Ok(Protocol::All),
        other => other.parse::<u8>().map(|n| Protocol::Number(IpProto(n))).map_err(|_| {
            AwsError::invalid(format!("`{s}` is not a protocol: use tcp, udp, icmp, all (-1) or a number 0 to 255"))
        }),
    }
}

/// `N`, `N-M` or `From=N,To=M`.
fn port_range(s: &str) -> Result<PortRange, AwsError> {
    let bad = || AwsError::invalid(format!("`{s}` is not a port range: use 80, 1024-65535 or From=1024,To=65535"));
    let t = s.trim();
    let (a, b) = if let Some(rest) = t.strip_prefix("From=") {
        let (a, b) = rest.split_once(",To=").ok_or_else(bad)?;
        (a, b)
    } else {
        t.split_once('-').unwrap_or((t, t))
    };
    let (from, to) = (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?);
    if from > to {
        return Err(bad());
    }
    Ok(PortRange { from, to })
}

/// What a rule matches beyond its protocol, as the topology file would give it.
fn port_match(p: Protocol, port: Option<&str>) -> Result<PortMatch, AwsError> {
    if p.has_ports() {
        return Ok(PortMatch::Ports(match port {
            None => PortRange::ALL,
            Some(s) => port_range(s)?,
        }));
    }
    if p == Protocol::ICMP {
        let icmp_type = match port.map(str::trim) {
            None | Some("-1") => None,
            Some(s) => Some(s.parse::<u8>().map_err(|_| AwsError::invalid(format!("`{s}` is not an ICMP type")))?),
        };
        return Ok(PortMatch::Icmp { icmp_type, icmp_code: None });
    }
    if let Some(s) = port {
        return Err(AwsError::invalid(format!("ports ({s}) apply only to tcp and udp (and the type to icmp)")));
    }
    Ok(PortMatch::Any)
}

fn cidr(s: &str) -> Result<Cidr, AwsError> {
    s.trim().parse::<Cidr>().map_err(|e| AwsError::invalid(e.to_string()))
}

fn sg_rule(m: &mut Model, group_id: &str, spec: &RuleSpec, ingress: bool, add: bool) -> Result<(), AwsError> {
    let g = group(m, group_id)?;
    let p = protocol(&spec.protocol)?;
    let peer = match (&spec.cidr, &spec.source_group) {
        (Some(c), None) => SgPeer::Cidr(cidr(c)?),
        (None, Some(s)) => SgPeer::Group(group(m, s)?),
        _ => return Err(AwsError::new("MissingParameter", "give either --cidr or --source-group")),
    };
    let rule = SgRule { protocol: p, ports: port_match(p, spec.port.as_deref())?, peer };
    let rules =
        if ingress { &mut m.security_groups[g.index()].ingress } else { &mut m.security_groups[g.index()].egress };
    let at = rules.iter().position(|r| *r == rule);
    match (add, at) {
        (true, Some(_)) => Err(AwsError::new(
            "InvalidPermission.Duplicate",
            format!("the specified rule already exists in {group_id}"),
        )),
        (true, None) => {
            rules.push(rule);
            Ok(())
        }
        (false, Some(i)) => {
            rules.remove(i);
            Ok(())
        }
        (false, None) => {
            Err(AwsError::new("InvalidPermission.NotFound", format!("the specified rule does not exist in {group_id}")))
        }
    }
}

/// Whether a route or ACL edit creates, replaces or deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteEdit {
    Create,
    Replace,
    Delete,
}

/// A route target by id: an internet gateway, NAT gateway, ENI or peering connection.
fn target(m: &Model, id: &str) -> Result<RouteTarget, AwsError> {
    use crate::model::{IgwIdx, NatIdx, PcxIdx};
    if let Some(i) = m.internet_gateways.iter().position(|g| g.id == id) {
        return Ok(RouteTarget::InternetGateway(IgwIdx(i as u32)));
    }
    if let Some(i) = m.nat_gateways.iter().position(|g| g.id == id) {
        return Ok(RouteTarget::NatGateway(NatIdx(i as u32)));
    }
    if let Some(e) = m.eni_by_id(id) {
        return Ok(RouteTarget::Eni(e));
    }
    if let Some(i) = m.peerings.iter().position(|g| g.id == id) {
        return Ok(RouteTarget::Peering(PcxIdx(i as u32)));
    }
    Err(AwsError::new("InvalidGatewayID.NotFound", format!("the route target '{id}' does not exist")))
}

fn route(m: &mut Model, rtb: &str, dest: &str, tgt: Option<&str>, how: RouteEdit) -> Result<(), AwsError> {
    let t = route_table(m, rtb)?;
    let destination = cidr(dest)?;
    let target = tgt.map(|id| target(m, id)).transpose()?;
    let routes = &mut m.route_tables[t].routes;
    let at = routes.iter().position(|r| r.destination == destination);
    if at.is_some_and(|i| routes[i].target == RouteTarget::Local) && how != RouteEdit::Create {
        return Err(AwsError::invalid(format!("the local route {destination} of {rtb} cannot be changed or deleted")));
    }
    match (how, at, target) {
        (RouteEdit::Create, Some(_), _) => Err(AwsError::new(
            "RouteAlreadyExists",
            format!("the route identified by {destination} already exists in {rtb}"),
        )),
        (RouteEdit::Create, None, Some(target)) => {
            routes.push(Route { destination, target });
            Ok(())
        }
        (RouteEdit::Replace, Some(i), Some(target)) => {
            routes[i].target = target;
            Ok(())
        }
        (RouteEdit::Delete, Some(i), _) => {
            routes.remove(i);
            Ok(())
        }
        (RouteEdit::Replace | RouteEdit::Delete, None, _) => {
            Err(AwsError::new("InvalidRoute.NotFound", format!("no route with destination {destination} in {rtb}")))
        }
        (_, _, None) => Err(AwsError::new("MissingParameter", "give a route target")),
    }
}

fn acl_entry(
    m: &mut Model,
    acl_id: &str,
    number: u16,
    egress: bool,
    spec: Option<&AclEntrySpec>,
    how: RouteEdit,
) -> Result<(), AwsError> {
    let a = m.network_acls.iter().position(|a| a.id == acl_id).ok_or_else(|| {
        AwsError::new("InvalidNetworkAclID.NotFound", format!("the network ACL '{acl_id}' does not exist"))
    })?;
    if !(1..=32766).contains(&number) {
        return Err(AwsError::invalid(format!("rule number {number} is outside 1 to 32766")));
    }
    let rule = spec
        .map(|s| -> Result<AclRule, AwsError> {
            let p = protocol(&s.protocol)?;
            let action = match s.rule_action.trim().to_ascii_lowercase().as_str() {
                "allow" => AclAction::Allow,
                "deny" => AclAction::Deny,
                other => return Err(AwsError::invalid(format!("rule action `{other}` is neither allow nor deny"))),
            };
            let ports = port_match(p, s.port_range.as_deref())?;
            Ok(AclRule { number, protocol: p, ports, cidr: cidr(&s.cidr_block)?, action })
        })
        .transpose()?;
    let acl = &mut m.network_acls[a];
    let rules = if egress { &mut acl.egress } else { &mut acl.ingress };
    let at = rules.iter().position(|r| r.number == number);
    let dir = if egress { "egress" } else { "ingress" };
    match (how, at, rule) {
        (RouteEdit::Create, Some(_), _) => {
            Err(AwsError::new("NetworkAclEntryAlreadyExists", format!("{acl_id} already has {dir} rule {number}")))
        }
        (RouteEdit::Create, None, Some(r)) => {
            rules.push(r);
            rules.sort_by_key(|r| r.number);
            Ok(())
        }
        (RouteEdit::Replace, Some(i), Some(r)) => {
            rules[i] = r;
            Ok(())
        }
        (RouteEdit::Delete, Some(i), _) => {
            rules.remove(i);
            Ok(())
        }
        (RouteEdit::Replace | RouteEdit::Delete, None, _) => {
            Err(AwsError::new("InvalidNetworkAclEntry.NotFound", format!("{acl_id} has no {dir} rule {number}")))
        }
        (_, _, None) => Err(AwsError::new("MissingParameter", "give the entry's protocol, action and CIDR")),
    }
}

/// Removes an instance: ENIs whose attachment says `delete_on_termination` go with it (routes
/// to them become blackholes, their Elastic IPs are disassociated), the others become available.
fn terminate(m: &mut Model, id: &str) {
    let Some(i) = m.instance_by_id(id) else { return };
    let doomed: Vec<EniIdx> = m
        .enis_of(i)
        .into_iter()
        .filter(|&e| m.enis[e.index()].attachment.is_some_and(|a| a.delete_on_termination))
        .collect();
    for e in doomed.into_iter().rev() {
        remove_eni(m, e);
    }
    for e in &mut m.enis {
        match e.attachment {
            Some(a) if a.instance == i => e.attachment = None,
            Some(ref mut a) if a.instance.index() > i.index() => a.instance = InstanceIdx(a.instance.0 - 1),
            _ => {}
        }
    }
    m.instances.remove(i.index());
}

/// Removes an ENI and every reference to it.
pub(super) fn remove_eni(m: &mut Model, e: EniIdx) {
    let shift = |x: EniIdx| if x.index() > e.index() { EniIdx(x.0 - 1) } else { x };
    for a in &mut m.elastic_ips {
        a.association = match a.association {
            Some((x, _)) if x == e => None,
            Some((x, ip)) => Some((shift(x), ip)),
            None => None,
        };
    }
    for t in &mut m.route_tables {
        for r in &mut t.routes {
            r.target = match r.target {
                RouteTarget::Eni(x) if x == e => RouteTarget::Blackhole,
                RouteTarget::Eni(x) => RouteTarget::Eni(shift(x)),
                other => other,
            };
        }
    }
    // Mirror sessions of the ENI go with it, and so do targets on it with their sessions (AWS
    // refuses to delete an ENI in use; here the instance's termination takes them along).
    let doomed_targets: Vec<usize> =
        (0..m.traffic_mirror_targets.len()).filter(|&t| m.traffic_mirror_targets[t].eni == e).collect();
    m.traffic_mirror_sessions.retain(|s| s.source != e && !doomed_targets.contains(&s.target.index()));
    for t in doomed_targets.iter().rev() {
        m.traffic_mirror_targets.remove(*t);
        for s in &mut m.traffic_mirror_sessions {
            if s.target.index() > *t {
                s.target = crate::model::TmtIdx(s.target.0 - 1);
            }
        }
    }
    for t in &mut m.traffic_mirror_targets {
        t.eni = shift(t.eni);
    }
    // A flow log of the ENI goes with it (nothing is left for it to log); the others keep
    // their ENI, whose index shifts.
    m.flow_logs.retain(|f| f.resource != FlowLogResource::Eni(e));
    for f in &mut m.flow_logs {
        if let FlowLogResource::Eni(x) = f.resource {
            f.resource = FlowLogResource::Eni(shift(x));
        }
    }
    for s in &mut m.traffic_mirror_sessions {
        s.source = shift(s.source);
    }
    m.enis.remove(e.index());
}

/// Adds one flow log. What AWS's API checks first is checked here (the resource exists as the
/// type named, the values are ones AWS takes, no flow log has this id or file); the rest (the
/// format's fields, the interval's range, the account id) is the topology validation's.
fn create_flow_log(m: &mut Model, spec: &FlowLogSpec<'_>) -> Result<(), AwsError> {
    let resource_id = match spec.resource_ids {
        [one] => one.as_str(),
        [] => return Err(AwsError::new("MissingParameter", "give the resource to log with --resource-ids")),
        _ => {
            return Err(AwsError::invalid(
                "one resource per flow log in vpclab: each flow log writes its own file (call once per resource)",
            ))
        }
    };
    if spec.log_destination_type != "file" {
        return Err(AwsError::invalid(format!(
            "log destination type `{}` is not supported: vpclab writes flow logs to files only (use `file`)",
            spec.log_destination_type
        )));
    }
    let resource = match spec.resource_type {
        "NetworkInterface" => match m.nat_gateways.iter().position(|n| n.interface_id() == resource_id) {
            // A NAT gateway's interface is a network interface to flow logs, as on AWS.
            Some(n) => FlowLogResource::NatInterface(crate::model::NatIdx(n as u32)),
            None => FlowLogResource::Eni(eni(m, resource_id)?),
        },
        "Subnet" => FlowLogResource::Subnet(m.subnets.iter().position(|s| s.id == resource_id).map_or_else(
            || Err(AwsError::new("InvalidSubnetID.NotFound", format!("the subnet ID '{resource_id}' does not exist"))),
            |i| Ok(SubnetIdx(i as u32)),
        )?),
        "VPC" => FlowLogResource::Vpc(m.vpcs.iter().position(|v| v.id == resource_id).map_or_else(
            || Err(AwsError::new("InvalidVpcID.NotFound", format!("the vpc ID '{resource_id}' does not exist"))),
            |i| Ok(VpcIdx(i as u32)),
        )?),
        other => {
            return Err(AwsError::invalid(format!(
                "resource type `{other}` is not supported: use NetworkInterface, Subnet or VPC"
            )))
        }
    };
    let traffic_type = match spec.traffic_type {
        "ACCEPT" => TrafficType::Accept,
        "REJECT" => TrafficType::Reject,
        "ALL" => TrafficType::All,
        other => return Err(AwsError::invalid(format!("`{other}` is not a traffic type: use ACCEPT, REJECT or ALL"))),
    };
    let destination = spec.log_destination;
    if !std::path::Path::new(destination).is_absolute() {
        return Err(AwsError::invalid(format!(
            "log destination `{destination}` is not an absolute path: the lab has no current directory of yours"
        )));
    }
    if let Some(other) = m.flow_logs.iter().find(|f| f.destination == destination) {
        return Err(AwsError::new(
            "FlowLogAlreadyExists",
            format!("flow log {} already writes to `{destination}`: give each flow log its own file", other.id),
        ));
    }
    let id = match spec.flow_log_id {
        Some(id) if m.flow_logs.iter().any(|f| f.id == id) => {
            return Err(AwsError::new("FlowLogAlreadyExists", format!("flow log {id} already exists")));
        }
        Some(id) => id.to_string(),
        None => generated_flow_log_id(m, resource_id, destination),
    };
    m.flow_logs.push(FlowLog {
        id,
        resource,
        traffic_type,
        destination: destination.to_string(),
        log_format: spec.log_format.map(str::to_string),
        max_aggregation_interval: spec.max_aggregation_interval.unwrap_or(FlowLog::DEFAULT_INTERVAL),
        account_id: spec.account_id.map(str::to_string),
    });
    Ok(())
}

/// An id like AWS's (`fl-` and 17 hex digits), derived from what the flow log covers and where
/// it writes (stable, so a plan reads the same twice), never one the lab already uses.
fn generated_flow_log_id(m: &Model, resource_id: &str, destination: &str) -> String {
    let file = topology::export(m);
    let taken = |id: &str| file.contains(&format!("\"{id}\""));
    super::create::aws_id("fl", &[resource_id.as_bytes(), destination.as_bytes()], taken)
}

/// The private IPs of an ENI, for messages.
pub fn ips_of(m: &Model, e: EniIdx) -> Vec<Ipv4Addr> {
    m.enis[e.index()].private_ips().collect()
}
