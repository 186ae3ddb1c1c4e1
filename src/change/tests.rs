//! The change engine without a machine: operations on the default lab's model, the plans they
//! produce, and the refusals AWS would give.

use super::ops::{edit, validated, AclEntrySpec, Operation, RuleSpec};
use super::*;
use crate::model::{InstanceState, Model};
use crate::topology;

fn default_lab() -> Model {
    topology::parse(topology::DEFAULT_TOPOLOGY, "default.toml").unwrap()
}

/// Applies `op` to the default lab, validates, and returns the plan lines.
fn plan_of(op: Operation) -> Vec<String> {
    let old = default_lab();
    let new = validated(&edit(&old, &op).unwrap().model).unwrap();
    diff(&old, &new).unwrap().steps
}

fn refusal(op: Operation) -> AwsError {
    let old = default_lab();
    match edit(&old, &op).and_then(|e| validated(&e.model)).and_then(|new| diff(&old, &new)) {
        Ok(plan) => panic!("{op:?} was accepted: {plan:?}"),
        Err(e) => e,
    }
}

fn attach(eni: &str, inst: &str, dev: u32) -> Operation {
    Operation::AttachNetworkInterface { network_interface_id: eni.into(), instance_id: inst.into(), device_index: dev }
}

fn detach(eni: &str) -> Operation {
    Operation::DetachNetworkInterface { network_interface_id: eni.into(), force: false }
}

#[test]
fn moving_an_eni_is_a_detach_then_an_attach() {
    let old = default_lab();
    let m = edit(&old, &detach("eni-app-float")).unwrap().model;
    let m = edit(&m, &attach("eni-app-float", "standby", 1)).unwrap().model;
    let new = validated(&m).unwrap();
    let eni = &new.enis[new.eni_by_id("eni-app-float").unwrap().index()];
    let a = eni.attachment.unwrap();
    assert_eq!(new.instances[a.instance.index()].id, "standby");
    assert!(!a.delete_on_termination, "an ENI attached later is kept when its instance goes");
    assert_eq!(eni.mac.to_string(), "02:00:00:00:02:50", "the MAC moves with the ENI");
    assert_eq!(
        diff(&old, &new).unwrap().steps,
        ["DetachNetworkInterface eni-app-float from app", "AttachNetworkInterface eni-app-float -> standby (device 1)"]
    );
}

#[test]
fn attachment_refusals_carry_aws_codes() {
    assert_eq!(refusal(detach("eni-app")).code, "OperationNotPermitted");
    assert_eq!(refusal(attach("eni-app-float", "standby", 1)).code, "InvalidNetworkInterface.InUse");
    assert_eq!(refusal(attach("eni-nope", "standby", 1)).code, "InvalidNetworkInterfaceID.NotFound");
    assert_eq!(refusal(detach("eni-nope")).code, "InvalidNetworkInterfaceID.NotFound");
    let old = default_lab();
    let m = edit(&old, &detach("eni-app-float")).unwrap().model;
    let taken = edit(&m, &attach("eni-app-float", "standby", 0)).unwrap_err();
    assert_eq!(taken.code, "InvalidParameterValue");
    assert!(taken.message.contains("device index '0'"), "{taken}");
    assert_eq!(edit(&m, &detach("eni-app-float")).unwrap_err().code, "InvalidAttachmentID.NotFound");
}

#[test]
fn the_instance_types_eni_limit_is_attachment_limit_exceeded() {
    // web is a t3.micro (2 ENIs): a second fits, a third does not.
    let old = default_lab();
    let mut m = edit(&old, &detach("eni-app-float")).unwrap().model;
    let mut spare = m.enis[m.eni_by_id("eni-app-float").unwrap().index()].clone();
    spare.id = "eni-spare".into();
    spare.private_ip = "10.0.2.61".parse().unwrap();
    spare.mac = crate::model::Mac::generated("eni", "eni-spare");
    m.enis.push(spare);
    let m = validated(&m).unwrap();
    let m = edit(&m, &attach("eni-app-float", "web", 1)).unwrap().model;
    let err = edit(&m, &attach("eni-spare", "web", 2)).unwrap_err();
    assert_eq!(err.code, "AttachmentLimitExceeded", "{err}");
}

#[test]
fn private_ip_reassignment_needs_the_flag_and_moves_the_address() {
    let assign = |allow| Operation::AssignPrivateIpAddresses {
        network_interface_id: "eni-standby".into(),
        private_ip_addresses: vec!["10.0.2.50".into()],
        allow_reassignment: allow,
    };
    assert_eq!(refusal(assign(false)).code, "PrivateIpAddressInUse", "a primary IP never moves");
    let old = default_lab();
    let m = edit(
        &old,
        &Operation::AssignPrivateIpAddresses {
            network_interface_id: "eni-app-float".into(),
            private_ip_addresses: vec!["10.0.2.51".into()],
            allow_reassignment: false,
        },
    )
    .unwrap()
    .model;
    let take = |allow| Operation::AssignPrivateIpAddresses {
        network_interface_id: "eni-standby".into(),
        private_ip_addresses: vec!["10.0.2.51".into()],
        allow_reassignment: allow,
    };
    assert_eq!(edit(&m, &take(false)).unwrap_err().code, "PrivateIpAddressInUse");
    let moved = validated(&edit(&m, &take(true)).unwrap().model).unwrap();
    assert_eq!(
        diff(&m, &moved).unwrap().steps,
        ["UnassignPrivateIpAddresses eni-app-float 10.0.2.51", "AssignPrivateIpAddresses eni-standby 10.0.2.51"]
    );
}

#[test]
fn elastic_ips_move_unless_reassociation_is_refused() {
    let assoc = |allow| Operation::AssociateAddress {
        allocation_id: "eipalloc-web".into(),
        network_interface_id: Some("eni-standby".into()),
        private_ip_address: None,
        instance_id: None,
        allow_reassociation: allow,
    };
    assert_eq!(refusal(assoc(false)).code, "Resource.AlreadyAssociated");
    assert_eq!(plan_of(assoc(true)), ["AssociateAddress eipalloc-web -> eni-standby (10.0.2.20)"]);
    let nat_eip = Operation::AssociateAddress {
        allocation_id: "eipalloc-nat".into(),
        network_interface_id: Some("eni-standby".into()),
        private_ip_address: None,
        instance_id: None,
        allow_reassociation: true,
    };
    assert_eq!(refusal(nat_eip).code, "Resource.AlreadyAssociated");
    let by_instance = Operation::AssociateAddress {
        allocation_id: "eipalloc-web".into(),
        network_interface_id: None,
        private_ip_address: None,
        instance_id: Some("app".into()),
        allow_reassociation: true,
    };
    assert_eq!(refusal(by_instance).code, "InvalidInstanceID", "app has two ENIs");
}

#[test]
fn rule_edits_name_duplicates_and_missing_rules() {
    let ssh = || RuleSpec {
        protocol: "tcp".into(),
        port: Some("22".into()),
        cidr: Some("10.0.0.0/16".into()),
        source_group: None,
    };
    let auth = Operation::AuthorizeSecurityGroupIngress { group_id: "sg-app".into(), rule: ssh() };
    assert_eq!(plan_of(auth), ["AuthorizeSecurityGroupIngress sg-app tcp 22 from 10.0.0.0/16"]);
    let dup = RuleSpec { port: Some("8080".into()), cidr: None, source_group: Some("sg-web".into()), ..ssh() };
    let dup = Operation::AuthorizeSecurityGroupIngress { group_id: "sg-app".into(), rule: dup };
    assert_eq!(refusal(dup).code, "InvalidPermission.Duplicate");
    let revoke = Operation::RevokeSecurityGroupIngress { group_id: "sg-app".into(), rule: ssh() };
    assert_eq!(refusal(revoke).code, "InvalidPermission.NotFound");
    let nogroup = Operation::RevokeSecurityGroupIngress { group_id: "sg-nope".into(), rule: ssh() };
    assert_eq!(refusal(nogroup).code, "InvalidGroup.NotFound");
    // The implicit default group's rules have no place in a file: refused, never silently lost.
    let implicit = Operation::AuthorizeSecurityGroupIngress { group_id: "vpc-main/default".into(), rule: ssh() };
    assert_eq!(refusal(implicit).code, "UnsupportedOperation");
}

#[test]
fn routes_and_acl_entries_follow_ec2s_rules() {
    let route = |dest: &str, target: &str| Operation::ReplaceRoute {
        route_table_id: "rtb-private".into(),
        destination_cidr_block: dest.into(),
        target: target.into(),
    };
    assert_eq!(plan_of(route("0.0.0.0/0", "eni-standby")), ["ReplaceRoute rtb-private 0.0.0.0/0 -> eni-standby"]);
    assert_eq!(refusal(route("198.51.100.0/24", "nat-main")).code, "InvalidRoute.NotFound");
    assert_eq!(refusal(route("10.0.0.0/16", "nat-main")).code, "InvalidParameterValue", "the local route stays");
    assert_eq!(refusal(route("0.0.0.0/0", "igw-nope")).code, "InvalidGatewayID.NotFound");
    let create = Operation::CreateRoute {
        route_table_id: "rtb-private".into(),
        destination_cidr_block: "0.0.0.0/0".into(),
        target: "igw-main".into(),
    };
    assert_eq!(refusal(create).code, "RouteAlreadyExists");
    let entry = |n| Operation::CreateNetworkAclEntry {
        network_acl_id: "acl-public".into(),
        rule_number: n,
        egress: false,
        entry: AclEntrySpec {
            protocol: "tcp".into(),
            rule_action: "deny".into(),
            cidr_block: "10.0.2.0/24".into(),
            port_range: Some("From=80,To=80".into()),
        },
    };
    assert_eq!(plan_of(entry(50)), ["CreateNetworkAclEntry acl-public ingress 50 deny tcp 80 10.0.2.0/24"]);
    assert_eq!(refusal(entry(100)).code, "NetworkAclEntryAlreadyExists");
    let delete = Operation::DeleteNetworkAclEntry { network_acl_id: "acl-public".into(), rule_number: 7, egress: true };
    assert_eq!(refusal(delete).code, "InvalidNetworkAclEntry.NotFound");
}

#[test]
fn instance_states_and_termination() {
    assert_eq!(plan_of(Operation::StopInstances { instance_ids: vec!["app".into()] }), ["StopInstances app"]);
    let old = default_lab();
    let stopped = edit(&old, &Operation::StopInstances { instance_ids: vec!["app".into()] }).unwrap().model;
    assert_eq!(stopped.instances[stopped.instance_by_id("app").unwrap().index()].state, InstanceState::Stopped);
    let err = edit(&stopped, &Operation::RebootInstances { instance_ids: vec!["app".into()] }).unwrap_err();
    assert_eq!(err.code, "IncorrectInstanceState");
    let reboot = edit(&old, &Operation::RebootInstances { instance_ids: vec!["app".into()] }).unwrap();
    assert_eq!(reboot.reboot, ["app"]);
    let gone =
        validated(&edit(&old, &Operation::TerminateInstances { instance_ids: vec!["app".into()] }).unwrap().model)
            .unwrap();
    assert!(gone.instance_by_id("app").is_none());
    assert!(gone.eni_by_id("eni-app").is_none(), "delete_on_termination: the primary goes");
    let float = &gone.enis[gone.eni_by_id("eni-app-float").unwrap().index()];
    assert!(float.attachment.is_none(), "an ENI attached later becomes available");
    assert_eq!(
        diff(&old, &gone).unwrap().steps,
        [
            "TerminateInstances app",
            "DetachNetworkInterface eni-app-float from app",
            "DetachNetworkInterface eni-app from app",
            "DeleteNetworkInterface eni-app",
        ]
    );
    let err = edit(&old, &Operation::TerminateInstances { instance_ids: vec!["nope".into()] }).unwrap_err();
    assert_eq!(err.code, "InvalidInstanceID.NotFound");
}

#[test]
fn what_aws_cannot_change_in_place_is_refused() {
    let old = default_lab();
    let mut new = old.clone();
    new.subnets[0].cidr = "10.0.3.0/24".parse().unwrap();
    assert_eq!(diff(&old, &new).unwrap_err().code, "OperationNotPermitted");
    let mut new = old.clone();
    new.enis[0].private_ip = "10.0.1.12".parse().unwrap();
    assert_eq!(diff(&old, &new).unwrap_err().code, "OperationNotPermitted");
    let mut new = old.clone();
    new.name = "other".into();
    assert_eq!(diff(&old, &new).unwrap_err().code, "OperationNotPermitted");
    assert!(diff(&old, &old).unwrap().is_empty());
}

#[test]
fn a_file_adding_an_instance_plans_its_creation() {
    let old = default_lab();
    let text = format!(
        "{}\n[[instance]]\nid = \"extra\"\n\n[[network_interface]]\nid = \"eni-extra\"\nsubnet = \"subnet-private\"\nprivate_ip = \"10.0.2.60\"\nattachment = {{ instance = \"extra\", device_index = 0 }}\n",
        topology::DEFAULT_TOPOLOGY.split("[internet]").next().unwrap()
    ) + "[internet]\nhosts = [ { id = \"example\", ip = \"198.51.100.7\" } ]\n";
    let new = topology::parse(&text, "more.toml").unwrap();
    assert_eq!(
        diff(&old, &new).unwrap().steps,
        [
            "RunInstances extra",
            "CreateNetworkInterface eni-extra in subnet-private (10.0.2.60)",
            "AttachNetworkInterface eni-extra -> extra (device 0)",
        ]
    );
    assert_eq!(diff(&new, &old).unwrap().steps[0], "TerminateInstances extra");
}

#[test]
fn flow_logs_are_created_and_deleted_never_modified() {
    let old = default_lab();
    let fl =
        "\n[[flow_log]]\nid = \"fl-web\"\nresource = \"eni-web\"\ntraffic_type = \"ALL\"\ndestination = \"web.log\"\n";
    let with = topology::parse(&format!("{}{fl}", topology::DEFAULT_TOPOLOGY), "with.toml").unwrap();
    let plan = diff(&old, &with).unwrap();
    assert_eq!(plan.steps, vec!["CreateFlowLogs fl-web eni-web ALL -> web.log every 600 s"]);
    assert_eq!(diff(&with, &old).unwrap().steps, vec!["DeleteFlowLogs fl-web"]);
    let changed =
        topology::parse(&format!("{}{}", topology::DEFAULT_TOPOLOGY, fl.replace("ALL", "REJECT")), "c.toml").unwrap();
    let e = diff(&with, &changed).unwrap_err();
    assert!(e.to_string().contains("flow log fl-web cannot be changed in place"), "{e}");
}
