//! Old model against new, by id: a [`Plan`] of steps named like the EC2 actions they mirror, in
//! the manner of Terraform's plan. What AWS cannot change in place (a VPC's or subnet's CIDR, an
//! ENI's subnet, primary IP or MAC, the lab's name) is refused here with AWS's reason.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::AwsError;
use crate::model::{AclRule, Eni, Model, PeeringStatus, RouteTarget, SgPeer, SgRule};
use crate::policy::{describe_match, route_table::target_name};

/// What a change will do, one line per step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps, e.g. `AttachNetworkInterface eni-x -> standby (device 1)`.
    pub steps: Vec<String>,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    fn push(&mut self, step: String) {
        self.steps.push(step);
    }
}

/// Objects of one kind by id, so old and new are matched by id whatever their order.
fn by_id<T>(items: &[T], id: impl Fn(&T) -> &str) -> BTreeMap<&str, &T> {
    items.iter().map(|x| (id(x), x)).collect()
}

/// Walks the ids of both sides: `added`, `removed`, `both` in id order.
fn each<'a, T>(
    old: &BTreeMap<&'a str, &'a T>,
    new: &BTreeMap<&'a str, &'a T>,
    mut added: impl FnMut(&'a T),
    mut removed: impl FnMut(&'a T),
    mut both: impl FnMut(&'a T, &'a T) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    for (id, n) in new {
        match old.get(id) {
            Some(o) => both(o, n)?,
            None => added(n),
        }
    }
    for (id, o) in old {
        if !new.contains_key(id) {
            removed(o);
        }
    }
    Ok(())
}

fn immutable(what: String) -> AwsError {
    AwsError::not_permitted(format!("{what} cannot be changed in place on AWS: delete it and create a new one"))
}

/// The plan that turns `old` into `new`, or why it cannot be done.
pub fn diff(old: &Model, new: &Model) -> Result<Plan, AwsError> {
    if old.name != new.name {
        return Err(AwsError::not_permitted(format!(
            "the lab's name cannot change (`{}` to `{}`): it names every namespace; bring a new lab up instead",
            old.name, new.name
        )));
    }
    if old.api != new.api {
        return Err(AwsError::not_permitted(
            "the [api] of a running lab cannot change: it is bound when the lab comes up",
        ));
    }
    if old.uplink != new.uplink {
        return Err(AwsError::not_permitted("the [internet] uplink of a running lab cannot change"));
    }
    if old.has_emulated_internet() != new.has_emulated_internet() {
        return Err(AwsError::not_permitted(
            "the emulated internet cannot be added to or removed from a running lab (hosts can be)",
        ));
    }
    if old.instance_network != new.instance_network {
        return Err(AwsError::not_permitted(
            "the instance_network of a running lab cannot change: it decides how instances start",
        ));
    }
    if old.region() != new.region() {
        return Err(AwsError::not_permitted(format!(
            "the region of a running lab cannot change (`{}` to `{}`): AWS does not move a VPC between regions",
            old.region(),
            new.region()
        )));
    }
    let mut plan = Plan::default();
    vpcs(old, new, &mut plan)?;
    dhcp_options(old, new, &mut plan)?;
    subnets(old, new, &mut plan)?;
    gateways(old, new, &mut plan)?;
    route_tables(old, new, &mut plan)?;
    network_acls(old, new, &mut plan)?;
    security_groups(old, new, &mut plan)?;
    instances(old, new, &mut plan)?;
    enis(old, new, &mut plan)?;
    elastic_ips(old, new, &mut plan)?;
    internet_hosts(old, new, &mut plan);
    vpc_endpoints(old, new, &mut plan)?;
    traffic_mirroring(old, new, &mut plan);
    flow_logs(old, new, &mut plan)?;
    Ok(plan)
}

fn vpcs(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.vpcs, |v| &v.id), by_id(&new.vpcs, |v| &v.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |v| steps.borrow_mut().push(format!("CreateVpc {} {}", v.id, v.cidr)),
        |v| steps.borrow_mut().push(format!("DeleteVpc {}", v.id)),
        |a, b| {
            if a.cidr != b.cidr {
                return Err(immutable(format!("the CIDR of {} ({} to {})", a.id, a.cidr, b.cidr)));
            }
            // AWS changes one attribute per ModifyVpcAttribute call; the forwarder compiles the
            // DNS server's settings from the model at the swap, so they apply at once.
            if a.enable_dns_support != b.enable_dns_support {
                steps
                    .borrow_mut()
                    .push(format!("ModifyVpcAttribute {} enable_dns_support {}", b.id, b.enable_dns_support));
            }
            if a.enable_dns_hostnames != b.enable_dns_hostnames {
                steps
                    .borrow_mut()
                    .push(format!("ModifyVpcAttribute {} enable_dns_hostnames {}", b.id, b.enable_dns_hostnames));
            }
            if old.route_tables[a.main_route_table.index()].id != new.route_tables[b.main_route_table.index()].id {
                steps.borrow_mut().push(format!(
                    "ReplaceRouteTableAssociation {} main -> {}",
                    b.id,
                    new.route_tables[b.main_route_table.index()].id
                ));
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

/// DHCP options sets are immutable on AWS (there is no `ModifyDhcpOptions`): they are created,
/// deleted, and associated with VPCs. Instances see a new set at their next lease renewal.
fn dhcp_options(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let line = |d: &crate::model::DhcpOptionsSet| {
        format!("{} domain {:?} dns {:?} ntp {:?}", d.id, d.domain_name, d.domain_name_servers, d.ntp_servers)
    };
    let (o, n) = (by_id(&old.dhcp_options, |d| &d.id), by_id(&new.dhcp_options, |d| &d.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |d| steps.borrow_mut().push(format!("CreateDhcpOptions {}", line(d))),
        |d| steps.borrow_mut().push(format!("DeleteDhcpOptions {}", d.id)),
        |a, b| {
            if line(a) != line(b) {
                return Err(immutable(format!("DHCP options set {}", a.id)));
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    let set_of = |m: &Model, vpc: &str| {
        let idx = m.vpcs.iter().position(|v| v.id == vpc)?;
        let set = m.dhcp_options.iter().find(|d| d.vpcs.iter().any(|v| v.index() == idx))?;
        Some(set.id.clone())
    };
    for vpc in new.vpcs.iter().filter(|v| old.vpcs.iter().any(|o| o.id == v.id)) {
        let (before, after) = (set_of(old, &vpc.id), set_of(new, &vpc.id));
        if before != after {
            let set = after.unwrap_or_else(|| "default".to_string());
            plan.push(format!("AssociateDhcpOptions {set} -> {}", vpc.id));
        }
    }
    Ok(())
}

fn subnets(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.subnets, |v| &v.id), by_id(&new.subnets, |v| &v.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |s| steps.borrow_mut().push(format!("CreateSubnet {} {} in {}", s.id, s.cidr, new.vpcs[s.vpc.index()].id)),
        |s| steps.borrow_mut().push(format!("DeleteSubnet {}", s.id)),
        |a, b| {
            if a.cidr != b.cidr {
                return Err(immutable(format!("the CIDR of {} ({} to {})", a.id, a.cidr, b.cidr)));
            }
            if old.vpcs[a.vpc.index()].id != new.vpcs[b.vpc.index()].id || a.availability_zone != b.availability_zone {
                return Err(immutable(format!("the VPC and availability zone of {}", a.id)));
            }
            let (rt_a, rt_b) =
                (&old.route_tables[a.route_table.index()].id, &new.route_tables[b.route_table.index()].id);
            if rt_a != rt_b {
                steps.borrow_mut().push(format!("ReplaceRouteTableAssociation {} -> {rt_b}", b.id));
            }
            let (acl_a, acl_b) =
                (&old.network_acls[a.network_acl.index()].id, &new.network_acls[b.network_acl.index()].id);
            if acl_a != acl_b {
                steps.borrow_mut().push(format!("ReplaceNetworkAclAssociation {} -> {acl_b}", b.id));
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

fn gateways(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.internet_gateways, |v| &v.id), by_id(&new.internet_gateways, |v| &v.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |g| {
            steps.borrow_mut().push(format!("CreateInternetGateway {}", g.id));
            if let Some(v) = igw_vpc(new, g) {
                steps.borrow_mut().push(format!("AttachInternetGateway {} to {v}", g.id));
            }
        },
        |g| steps.borrow_mut().push(format!("DeleteInternetGateway {}", g.id)),
        |a, b| {
            let (was, is) = (igw_vpc(old, a), igw_vpc(new, b));
            if was != is {
                if let Some(v) = was {
                    steps.borrow_mut().push(format!("DetachInternetGateway {} from {v}", a.id));
                }
                if let Some(v) = is {
                    steps.borrow_mut().push(format!("AttachInternetGateway {} to {v}", b.id));
                }
            }
            Ok(())
        },
    )?;
    let (o, n) = (by_id(&old.nat_gateways, |v| &v.id), by_id(&new.nat_gateways, |v| &v.id));
    let eip_id = |m: &Model, e: Option<crate::model::EipIdx>| e.map(|e| m.elastic_ips[e.index()].id.clone());
    each(
        &o,
        &n,
        |g| {
            steps.borrow_mut().push(format!(
                "CreateNatGateway {} in {} ({})",
                g.id,
                new.subnets[g.subnet.index()].id,
                g.private_ip
            ))
        },
        |g| steps.borrow_mut().push(format!("DeleteNatGateway {}", g.id)),
        |a, b| {
            if old.subnets[a.subnet.index()].id != new.subnets[b.subnet.index()].id
                || a.private_ip != b.private_ip
                || eip_id(old, a.elastic_ip) != eip_id(new, b.elastic_ip)
            {
                return Err(immutable(format!("the subnet, private IP and Elastic IP of NAT gateway {}", a.id)));
            }
            if a.ports != b.ports || a.preserve_ports != b.preserve_ports {
                let policy = if b.preserve_ports { "preserve" } else { "random" };
                let (from, to) = (b.ports.from, b.ports.to);
                steps.borrow_mut().push(format!("ModifyNatGateway {} ports {from}-{to} source_ports {policy}", b.id));
            }
            Ok(())
        },
    )?;
    let (o, n) = (by_id(&old.peerings, |v| &v.id), by_id(&new.peerings, |v| &v.id));
    each(
        &o,
        &n,
        |p| {
            steps.borrow_mut().push(format!(
                "CreateVpcPeeringConnection {} {} <-> {}",
                p.id,
                new.vpcs[p.requester_vpc.index()].id,
                new.vpcs[p.accepter_vpc.index()].id
            ))
        },
        |p| steps.borrow_mut().push(format!("DeleteVpcPeeringConnection {}", p.id)),
        |a, b| {
            let ends = |m: &Model, p: &crate::model::VpcPeering| {
                (m.vpcs[p.requester_vpc.index()].id.clone(), m.vpcs[p.accepter_vpc.index()].id.clone())
            };
            if ends(old, a) != ends(new, b) {
                return Err(immutable(format!("the VPCs of peering connection {}", a.id)));
            }
            if a.status != b.status {
                let step = match b.status {
                    PeeringStatus::Active => format!("AcceptVpcPeeringConnection {}", b.id),
                    PeeringStatus::PendingAcceptance => {
                        return Err(AwsError::new(
                            "InvalidStateTransition",
                            format!("peering connection {} is active: it cannot go back to pending-acceptance", a.id),
                        ))
                    }
                };
                steps.borrow_mut().push(step);
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

/// The id of the VPC an internet gateway is attached to.
fn igw_vpc<'m>(m: &'m Model, g: &crate::model::InternetGateway) -> Option<&'m str> {
    g.vpc.map(|v| m.vpcs[v.index()].id.as_str())
}

fn route_tables(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.route_tables, |v| &v.id), by_id(&new.route_tables, |v| &v.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |t| {
            steps.borrow_mut().push(format!("CreateRouteTable {} in {}", t.id, new.vpcs[t.vpc.index()].id));
            for r in t.routes.iter().filter(|r| r.target != RouteTarget::Local) {
                steps.borrow_mut().push(format!(
                    "CreateRoute {} {} -> {}",
                    t.id,
                    r.destination,
                    target_name(new, r.target)
                ));
            }
        },
        |t| steps.borrow_mut().push(format!("DeleteRouteTable {}", t.id)),
        |a, b| {
            let before: BTreeMap<_, _> =
                a.routes.iter().map(|r| (r.destination.to_string(), target_name(old, r.target))).collect();
            let after: BTreeMap<_, _> =
                b.routes.iter().map(|r| (r.destination.to_string(), target_name(new, r.target))).collect();
            for (dest, t) in &after {
                match before.get(dest) {
                    None => steps.borrow_mut().push(format!("CreateRoute {} {dest} -> {t}", b.id)),
                    Some(was) if was != t => steps.borrow_mut().push(format!("ReplaceRoute {} {dest} -> {t}", b.id)),
                    Some(_) => {}
                }
            }
            for dest in before.keys().filter(|d| !after.contains_key(*d)) {
                steps.borrow_mut().push(format!("DeleteRoute {} {dest}", a.id));
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

fn acl_rule(r: &AclRule) -> String {
    let action = match r.action {
        crate::model::AclAction::Allow => "allow",
        crate::model::AclAction::Deny => "deny",
    };
    format!("{} {action} {} {}", r.number, describe_match(r.protocol, r.ports), r.cidr)
}

fn network_acls(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.network_acls, |v| &v.id), by_id(&new.network_acls, |v| &v.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |a| {
            steps.borrow_mut().push(format!("CreateNetworkAcl {} in {}", a.id, new.vpcs[a.vpc.index()].id));
            for (dir, rules) in [("ingress", &a.ingress), ("egress", &a.egress)] {
                for r in rules {
                    steps.borrow_mut().push(format!("CreateNetworkAclEntry {} {dir} {}", a.id, acl_rule(r)));
                }
            }
        },
        |a| steps.borrow_mut().push(format!("DeleteNetworkAcl {}", a.id)),
        |a, b| {
            for (dir, ra, rb) in [("ingress", &a.ingress, &b.ingress), ("egress", &a.egress, &b.egress)] {
                for r in rb {
                    match ra.iter().find(|x| x.number == r.number) {
                        None => {
                            steps.borrow_mut().push(format!("CreateNetworkAclEntry {} {dir} {}", b.id, acl_rule(r)))
                        }
                        Some(x) if x != r => {
                            steps.borrow_mut().push(format!("ReplaceNetworkAclEntry {} {dir} {}", b.id, acl_rule(r)))
                        }
                        Some(_) => {}
                    }
                }
                for r in ra.iter().filter(|x| !rb.iter().any(|y| y.number == x.number)) {
                    steps.borrow_mut().push(format!("DeleteNetworkAclEntry {} {dir} {}", a.id, r.number));
                }
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

/// A rule in words, with a group peer by id (so old and new compare whatever the indexes).
fn sg_rule(m: &Model, r: &SgRule, ingress: bool) -> String {
    let peer = match r.peer {
        SgPeer::Cidr(c) => c.to_string(),
        SgPeer::Group(g) => m.security_groups[g.index()].id.clone(),
    };
    format!("{} {} {peer}", describe_match(r.protocol, r.ports), if ingress { "from" } else { "to" })
}

fn security_groups(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.security_groups, |v| &v.id), by_id(&new.security_groups, |v| &v.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |g| {
            steps.borrow_mut().push(format!("CreateSecurityGroup {} in {}", g.id, new.vpcs[g.vpc.index()].id));
            for r in &g.ingress {
                steps.borrow_mut().push(format!("AuthorizeSecurityGroupIngress {} {}", g.id, sg_rule(new, r, true)));
            }
            for r in &g.egress {
                steps.borrow_mut().push(format!("AuthorizeSecurityGroupEgress {} {}", g.id, sg_rule(new, r, false)));
            }
        },
        |g| steps.borrow_mut().push(format!("DeleteSecurityGroup {}", g.id)),
        |a, b| {
            for (ingress, ra, rb) in [(true, &a.ingress, &b.ingress), (false, &a.egress, &b.egress)] {
                let before: Vec<String> = ra.iter().map(|r| sg_rule(old, r, ingress)).collect();
                let after: Vec<String> = rb.iter().map(|r| sg_rule(new, r, ingress)).collect();
                let way = if ingress { "Ingress" } else { "Egress" };
                for r in after.iter().filter(|r| !before.contains(r)) {
                    steps.borrow_mut().push(format!("AuthorizeSecurityGroup{way} {} {r}", b.id));
                }
                for r in before.iter().filter(|r| !after.contains(r)) {
                    steps.borrow_mut().push(format!("RevokeSecurityGroup{way} {} {r}", a.id));
                }
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

fn instances(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    use crate::model::InstanceState;
    let (o, n) = (by_id(&old.instances, |v| &v.id), by_id(&new.instances, |v| &v.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |i| {
            let ty = i.instance_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
            steps.borrow_mut().push(format!("RunInstances {}{ty}", i.id));
            if i.state == InstanceState::Stopped {
                steps.borrow_mut().push(format!("StopInstances {}", i.id));
            }
        },
        |i| steps.borrow_mut().push(format!("TerminateInstances {}", i.id)),
        |a, b| {
            if a.instance_type != b.instance_type {
                if a.state == InstanceState::Running || b.state == InstanceState::Running {
                    return Err(AwsError::new(
                        "IncorrectInstanceState",
                        format!("the instance type of {} can change only while it is stopped", a.id),
                    ));
                }
                let ty = b.instance_type.as_deref().unwrap_or("(none)");
                steps.borrow_mut().push(format!("ModifyInstanceAttribute {} instance-type {ty}", b.id));
            }
            if a.metadata != b.metadata {
                let m = b.metadata;
                let tokens = if m.tokens_required { "required" } else { "optional" };
                let endpoint = if m.endpoint_enabled { "enabled" } else { "disabled" };
                let what = format!("http-tokens {tokens} hop-limit {} http-endpoint {endpoint}", m.hop_limit);
                steps.borrow_mut().push(format!("ModifyInstanceMetadataOptions {} {what}", b.id));
            }
            match (a.state, b.state) {
                (InstanceState::Running, InstanceState::Stopped) => {
                    steps.borrow_mut().push(format!("StopInstances {}", b.id))
                }
                (InstanceState::Stopped, InstanceState::Running) => {
                    steps.borrow_mut().push(format!("StartInstances {}", b.id))
                }
                _ => {}
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

fn attachment_of(m: &Model, e: &Eni) -> Option<(String, u32, bool)> {
    e.attachment.map(|a| (m.instances[a.instance.index()].id.clone(), a.device_index, a.delete_on_termination))
}

fn group_ids(m: &Model, e: &Eni) -> Vec<String> {
    e.security_groups.iter().map(|g| m.security_groups[g.index()].id.clone()).collect()
}

fn enis(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.enis, |v| &v.id), by_id(&new.enis, |v| &v.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |e| {
            steps.borrow_mut().push(format!(
                "CreateNetworkInterface {} in {} ({})",
                e.id,
                new.subnets[e.subnet.index()].id,
                e.private_ips().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ));
            if let Some((inst, dev, _)) = attachment_of(new, e) {
                steps.borrow_mut().push(format!("AttachNetworkInterface {} -> {inst} (device {dev})", e.id));
            }
        },
        |e| {
            if let Some((inst, _, _)) = attachment_of(old, e) {
                steps.borrow_mut().push(format!("DetachNetworkInterface {} from {inst}", e.id));
            }
            steps.borrow_mut().push(format!("DeleteNetworkInterface {}", e.id));
        },
        |a, b| {
            if old.subnets[a.subnet.index()].id != new.subnets[b.subnet.index()].id {
                return Err(immutable(format!("the subnet of {}", a.id)));
            }
            if a.private_ip != b.private_ip {
                return Err(immutable(format!(
                    "the primary private IP of {} ({} to {})",
                    a.id, a.private_ip, b.private_ip
                )));
            }
            if a.mac != b.mac {
                return Err(immutable(format!("the MAC address of {}", a.id)));
            }
            let (was, now) = (attachment_of(old, a), attachment_of(new, b));
            let place = |x: &Option<(String, u32, bool)>| x.as_ref().map(|(i, d, _)| (i.clone(), *d));
            if place(&was) != place(&now) {
                if let Some((inst, _, _)) = &was {
                    steps.borrow_mut().push(format!("DetachNetworkInterface {} from {inst}", a.id));
                }
                if let Some((inst, dev, _)) = &now {
                    steps.borrow_mut().push(format!("AttachNetworkInterface {} -> {inst} (device {dev})", b.id));
                }
            } else if let (Some(x), Some(y)) = (&was, &now) {
                if x.2 != y.2 {
                    steps
                        .borrow_mut()
                        .push(format!("ModifyNetworkInterfaceAttribute {} delete-on-termination {}", b.id, y.2));
                }
            }
            let added: Vec<String> = b
                .secondary_private_ips
                .iter()
                .filter(|i| !a.secondary_private_ips.contains(i))
                .map(|i| i.to_string())
                .collect();
            let removed: Vec<String> = a
                .secondary_private_ips
                .iter()
                .filter(|i| !b.secondary_private_ips.contains(i))
                .map(|i| i.to_string())
                .collect();
            if !removed.is_empty() {
                steps.borrow_mut().push(format!("UnassignPrivateIpAddresses {} {}", b.id, removed.join(" ")));
            }
            if !added.is_empty() {
                steps.borrow_mut().push(format!("AssignPrivateIpAddresses {} {}", b.id, added.join(" ")));
            }
            if group_ids(old, a) != group_ids(new, b) {
                steps.borrow_mut().push(format!(
                    "ModifyNetworkInterfaceAttribute {} groups {}",
                    b.id,
                    group_ids(new, b).join(" ")
                ));
            }
            if a.source_dest_check != b.source_dest_check {
                steps.borrow_mut().push(format!(
                    "ModifyNetworkInterfaceAttribute {} source-dest-check {}",
                    b.id, b.source_dest_check
                ));
            }
            if a.description != b.description {
                steps.borrow_mut().push(format!("ModifyNetworkInterfaceAttribute {} description", b.id));
            }
            if a.connection_tracking != b.connection_tracking {
                let c = b.connection_tracking;
                steps.borrow_mut().push(format!(
                    "ModifyNetworkInterfaceAttribute {} connection-tracking tcp {}s udp-stream {}s udp {}s max {}",
                    b.id, c.tcp_established, c.udp_stream, c.udp, c.max_connections
                ));
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

fn elastic_ips(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.elastic_ips, |v| &v.id), by_id(&new.elastic_ips, |v| &v.id));
    let assoc = |m: &Model, a: &crate::model::ElasticIp| {
        a.association.map(|(e, ip)| format!("{} ({ip})", m.enis[e.index()].id))
    };
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |a| {
            steps.borrow_mut().push(format!("AllocateAddress {} {}", a.id, a.public_ip));
            if let Some(to) = assoc(new, a) {
                steps.borrow_mut().push(format!("AssociateAddress {} -> {to}", a.id));
            }
        },
        |a| steps.borrow_mut().push(format!("ReleaseAddress {}", a.id)),
        |a, b| {
            if a.public_ip != b.public_ip {
                return Err(immutable(format!("the public IP of {}", a.id)));
            }
            match (assoc(old, a), assoc(new, b)) {
                (x, y) if x == y => {}
                (_, Some(to)) => steps.borrow_mut().push(format!("AssociateAddress {} -> {to}", b.id)),
                (Some(_), None) => steps.borrow_mut().push(format!("DisassociateAddress {}", b.id)),
                (None, None) => {}
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

fn internet_hosts(old: &Model, new: &Model, plan: &mut Plan) {
    let key = |h: &crate::model::InternetHost| format!("{} {} name {}", h.id, h.ip, h.dns_name());
    let before: Vec<String> = old.internet_hosts.iter().map(key).collect();
    let after: Vec<String> = new.internet_hosts.iter().map(key).collect();
    for h in after.iter().filter(|h| !before.contains(h)) {
        plan.push(format!("AddInternetHost {h}"));
    }
    for h in before.iter().filter(|h| !after.contains(h)) {
        plan.push(format!("RemoveInternetHost {h}"));
    }
    // A host that stays but plays another service changes prefix lists and endpoints at once.
    for n in &new.internet_hosts {
        let Some(o) = old.internet_hosts.iter().find(|o| o.id == n.id && o.ip == n.ip) else { continue };
        if o.service != n.service {
            let service = n.service.as_deref().unwrap_or("none");
            plan.push(format!("ModifyInternetHost {} service {service}", n.id));
        }
    }
}

/// One line per VPC endpoint: its type, service and what it names, by id.
fn endpoint_line(m: &Model, e: &crate::model::VpcEndpoint) -> String {
    use crate::model::EndpointKind;
    let names = |v: Vec<String>| v.join(",");
    match &e.kind {
        EndpointKind::Gateway { route_tables } => {
            let tables = names(route_tables.iter().map(|t| m.route_tables[t.index()].id.clone()).collect());
            format!("{} Gateway {} route-tables {tables}", e.id, e.service)
        }
        EndpointKind::Interface { interfaces, security_groups, private_dns_enabled } => {
            let subnets = names(
                interfaces.iter().map(|i| format!("{}={}", m.subnets[i.subnet.index()].id, i.private_ip)).collect(),
            );
            let groups = names(security_groups.iter().map(|g| m.security_groups[g.index()].id.clone()).collect());
            format!(
                "{} Interface {} subnets {subnets} groups {groups} private-dns {private_dns_enabled}",
                e.id, e.service
            )
        }
    }
}

/// VPC endpoints: created, deleted, or modified in place (route tables, subnets, groups and
/// private DNS, as `ModifyVpcEndpoint` allows). Its VPC, type and service cannot change on AWS.
fn vpc_endpoints(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.vpc_endpoints, |e| &e.id), by_id(&new.vpc_endpoints, |e| &e.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |e| steps.borrow_mut().push(format!("CreateVpcEndpoint {}", endpoint_line(new, e))),
        |e| steps.borrow_mut().push(format!("DeleteVpcEndpoint {}", e.id)),
        |a, b| {
            let (va, vb) = (&old.vpcs[a.vpc.index()].id, &new.vpcs[b.vpc.index()].id);
            if va != vb || a.service != b.service || a.is_gateway() != b.is_gateway() {
                return Err(immutable(format!("the VPC, type or service of endpoint {}", a.id)));
            }
            let (la, lb) = (endpoint_line(old, a), endpoint_line(new, b));
            if la != lb {
                steps.borrow_mut().push(format!("ModifyVpcEndpoint {lb}"));
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}

/// Traffic mirror targets, filters and sessions, each described by ids (never indexes): a
/// description that changed is a `Modify...` step. The data plane compiles the sessions anew
/// with every swap, so each change applies at once; a session's counts go on by id.
fn traffic_mirroring(old: &Model, new: &Model, plan: &mut Plan) {
    fn target(m: &Model, t: &crate::model::TrafficMirrorTarget) -> String {
        format!("{} -> {}", t.id, m.enis[t.eni.index()].id)
    }
    fn filter(_: &Model, f: &crate::model::TrafficMirrorFilter) -> String {
        format!("{} ingress {:?} egress {:?}", f.id, f.ingress, f.egress)
    }
    fn session(m: &Model, s: &crate::model::TrafficMirrorSession) -> String {
        format!(
            "{} {} -> {} filter {} number {} vni {} length {:?}",
            s.id,
            m.enis[s.source.index()].id,
            m.traffic_mirror_targets[s.target.index()].id,
            m.traffic_mirror_filters[s.filter.index()].id,
            s.session_number,
            s.virtual_network_id,
            s.packet_length
        )
    }
    fn kind<T>(
        old: &Model,
        new: &Model,
        items: fn(&Model) -> &[T],
        id: fn(&T) -> &str,
        describe: fn(&Model, &T) -> String,
        name: &str,
        plan: &mut Plan,
    ) {
        let (o, n) = (by_id(items(old), id), by_id(items(new), id));
        for (k, b) in &n {
            match o.get(k) {
                None => plan.push(format!("CreateTrafficMirror{name} {}", describe(new, b))),
                Some(a) if describe(old, a) != describe(new, b) => {
                    plan.push(format!("ModifyTrafficMirror{name} {}", describe(new, b)))
                }
                Some(_) => {}
            }
        }
        for k in o.keys().filter(|k| !n.contains_key(*k)) {
            plan.push(format!("DeleteTrafficMirror{name} {k}"));
        }
    }
    kind(old, new, |m| &m.traffic_mirror_targets, |t| &t.id, target, "Target", plan);
    kind(old, new, |m| &m.traffic_mirror_filters, |f| &f.id, filter, "Filter", plan);
    kind(old, new, |m| &m.traffic_mirror_sessions, |s| &s.id, session, "Session", plan);
}

/// A flow log as the plan names it: what it covers, which traffic, where, how (resources by id,
/// so two models compare).
fn flow_log_line(m: &Model, f: &crate::model::FlowLog) -> String {
    format!(
        "{} {} {} -> {} every {} s{}{}",
        f.id,
        m.flow_log_resource_id(f.resource),
        f.traffic_type.name(),
        f.destination,
        f.max_aggregation_interval,
        f.log_format.as_ref().map_or(String::new(), |x| format!(" format `{x}`")),
        f.account_id.as_ref().map_or(String::new(), |a| format!(" account {a}")),
    )
}

/// Flow logs are created and deleted, never modified (AWS's `ModifyFlowLog` does not exist).
fn flow_logs(old: &Model, new: &Model, plan: &mut Plan) -> Result<(), AwsError> {
    let (o, n) = (by_id(&old.flow_logs, |f| &f.id), by_id(&new.flow_logs, |f| &f.id));
    let steps = RefCell::new(Vec::new());
    each(
        &o,
        &n,
        |f| steps.borrow_mut().push(format!("CreateFlowLogs {}", flow_log_line(new, f))),
        |f| steps.borrow_mut().push(format!("DeleteFlowLogs {}", f.id)),
        |a, b| {
            if flow_log_line(old, a) != flow_log_line(new, b) {
                return Err(immutable(format!("flow log {}", a.id)));
            }
            Ok(())
        },
    )?;
    plan.steps.extend(steps.into_inner());
    Ok(())
}
