//! The change engine without a machine: operations on the default lab's model, the plans they
//! produce, and the refusals AWS would give.

use super::ops::{edit, validated, AclEntrySpec, Operation, RuleSpec};
use super::*;
use crate::model::{InstanceState, Model, RouteTarget};
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

/// A `create-flow-logs` operation with one field changed.
macro_rules! with {
    ($op:expr, $field:ident = $v:expr) => {{
        let mut op = $op;
        if let Operation::CreateFlowLogs { ref mut $field, .. } = op {
            *$field = $v;
        }
        op
    }};
}

/// `create-flow-logs` for `resource` of `kind`, to `/var/log/vpclab/<file>`, as the CLI sends it.
fn create_flow_log(kind: &str, resource: &str, file: &str, id: Option<&str>) -> Operation {
    Operation::CreateFlowLogs {
        resource_ids: vec![resource.into()],
        resource_type: kind.into(),
        traffic_type: "ALL".into(),
        log_destination_type: "file".into(),
        log_destination: format!("/var/log/vpclab/{file}"),
        log_format: None,
        max_aggregation_interval: None,
        flow_log_id: id.map(str::to_string),
        account_id: None,
    }
}

#[test]
fn create_flow_logs_plans_the_same_step_as_a_file() {
    let op = create_flow_log("NetworkInterface", "eni-web", "web.log", Some("fl-web"));
    let op = with!(op, log_format = Some("${version} ${interface-id} ${action}".into()));
    let op = with!(op, max_aggregation_interval = Some(60));
    let op = with!(op, account_id = Some("111122223333".into()));
    let op = with!(op, traffic_type = "REJECT".into());
    assert_eq!(
        plan_of(op),
        ["CreateFlowLogs fl-web eni-web REJECT -> /var/log/vpclab/web.log every 60 s format `${version} \
             ${interface-id} ${action}` account 111122223333"]
    );
    assert_eq!(
        plan_of(create_flow_log("Subnet", "subnet-private", "p.log", Some("fl-p"))),
        ["CreateFlowLogs fl-p subnet-private ALL -> /var/log/vpclab/p.log every 600 s"]
    );
    // Without --flow-log-id: an id like AWS's, stable for the same request.
    let plan = plan_of(create_flow_log("VPC", "vpc-main", "vpc.log", None));
    let id = plan[0].split(' ').nth(1).unwrap().to_string();
    assert!(id.len() == 20 && id.starts_with("fl-") && id[3..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(plan, [format!("CreateFlowLogs {id} vpc-main ALL -> /var/log/vpclab/vpc.log every 600 s")]);
    assert_eq!(plan_of(create_flow_log("VPC", "vpc-main", "vpc.log", None)), plan);

    // The same model as the file saying it, and deleted again by id.
    let old = default_lab();
    let with =
        validated(&edit(&old, &create_flow_log("VPC", "vpc-main", "vpc.log", Some("fl-vpc"))).unwrap().model).unwrap();
    let fl = "\n[[flow_log]]\nid = \"fl-vpc\"\nresource = \"vpc-main\"\ntraffic_type = \"ALL\"\ndestination = \
              \"/var/log/vpclab/vpc.log\"\n";
    let json = |m: &Model| serde_json::to_value(m).unwrap();
    let file = topology::parse(&format!("{}{fl}", topology::DEFAULT_TOPOLOGY), "f.toml").unwrap();
    assert_eq!(json(&with), json(&file));
    let delete = Operation::DeleteFlowLogs { flow_log_ids: vec!["fl-vpc".into()] };
    let without = validated(&edit(&with, &delete).unwrap().model).unwrap();
    assert_eq!(diff(&with, &without).unwrap().steps, ["DeleteFlowLogs fl-vpc"]);
    assert_eq!(json(&without), json(&old));
}

#[test]
fn flow_log_refusals_carry_aws_codes() {
    let code = |op| refusal(op).code;
    assert_eq!(
        code(create_flow_log("NetworkInterface", "eni-nope", "a.log", None)),
        "InvalidNetworkInterfaceID.NotFound"
    );
    assert_eq!(code(create_flow_log("Subnet", "subnet-nope", "a.log", None)), "InvalidSubnetID.NotFound");
    assert_eq!(code(create_flow_log("Subnet", "eni-web", "a.log", None)), "InvalidSubnetID.NotFound", "not a subnet");
    assert_eq!(code(create_flow_log("VPC", "vpc-nope", "a.log", None)), "InvalidVpcID.NotFound");
    let e = refusal(create_flow_log("TransitGateway", "tgw-1", "a.log", None));
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(e.message.contains("NetworkInterface, Subnet or VPC"), "{e}");
    let base = || create_flow_log("NetworkInterface", "eni-web", "a.log", Some("fl-a"));
    let e = refusal(with!(base(), log_destination_type = "s3".into()));
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(e.message.contains("`s3` is not supported") && e.message.contains("use `file`"), "{e}");
    let e = refusal(with!(base(), traffic_type = "all".into()));
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(e.message.contains("ACCEPT, REJECT or ALL"), "{e}");
    // What the topology validation judges is worded with the file's field.
    let e = refusal(with!(base(), log_format = Some("${version} ${nope}".into())));
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(e.message.contains("flow_log \"fl-a\".log_format") && e.message.contains("`nope`"), "{e}");
    let e = refusal(with!(base(), max_aggregation_interval = Some(601)));
    assert!(e.code == "InvalidParameterValue" && e.message.contains("max_aggregation_interval"), "{e}");
    let e = refusal(with!(base(), account_id = Some("12".into())));
    assert!(e.code == "InvalidParameterValue" && e.message.contains("account_id"), "{e}");
    let e = refusal(with!(base(), flow_log_id = Some("eni-app".into())));
    assert!(e.code == "InvalidParameterValue" && e.message.contains("duplicate id `eni-app`"), "{e}");
    let e = refusal(with!(base(), log_destination = "flows/a.log".into()));
    assert!(e.code == "InvalidParameterValue" && e.message.contains("not an absolute path"), "{e}");
    let two = with!(base(), resource_ids = vec!["eni-web".into(), "eni-app".into()]);
    assert_eq!(code(two), "InvalidParameterValue");

    // A second flow log with the same id or the same file: AWS's duplicate.
    let old = default_lab();
    let with = validated(&edit(&old, &base()).unwrap().model).unwrap();
    let same_id = create_flow_log("Subnet", "subnet-public", "b.log", Some("fl-a"));
    assert_eq!(edit(&with, &same_id).unwrap_err().code, "FlowLogAlreadyExists");
    let same_file = create_flow_log("Subnet", "subnet-public", "a.log", Some("fl-b"));
    let e = edit(&with, &same_file).unwrap_err();
    assert!(e.code == "FlowLogAlreadyExists" && e.message.contains("fl-a"), "{e}");

    // Deleting: one unknown id refuses the whole change.
    let delete = |ids: &[&str]| Operation::DeleteFlowLogs { flow_log_ids: ids.iter().map(|s| s.to_string()).collect() };
    assert_eq!(edit(&with, &delete(&["fl-a", "fl-nope"])).unwrap_err().code, "InvalidFlowLogId.NotFound");
    assert_eq!(edit(&with, &delete(&[])).unwrap_err().code, "MissingParameter");
    assert_eq!(code(delete(&["fl-a"])), "InvalidFlowLogId.NotFound");
}

#[test]
fn create_flow_logs_takes_a_nat_gateway_s_interface_as_a_network_interface() {
    let old = default_lab();
    let m = edit(&old, &create_flow_log("NetworkInterface", "eni-nat-main", "n.log", Some("fl-n"))).unwrap().model;
    // Written to the file and read back: the derived id resolves to the NAT gateway's interface.
    let with = validated(&m).unwrap();
    let f = &with.flow_logs[0];
    assert_eq!(f.resource, crate::model::FlowLogResource::NatInterface(crate::model::NatIdx(0)));
    assert!(diff(&old, &with).unwrap().steps.iter().any(|s| s.starts_with("CreateFlowLogs fl-n eni-nat-main ALL")));
}

#[test]
fn a_terminated_enis_flow_log_goes_with_it_and_the_others_keep_their_eni() {
    let old = default_lab();
    let m = edit(&old, &create_flow_log("NetworkInterface", "eni-standby", "s.log", Some("fl-s"))).unwrap().model;
    let m = edit(&m, &create_flow_log("NetworkInterface", "eni-app-float", "f.log", Some("fl-f"))).unwrap().model;
    let with = validated(&m).unwrap();
    let covers = |m: &Model, id: &str| {
        m.flow_logs.iter().find(|f| f.id == id).map(|f| m.flow_log_resource_id(f.resource).to_string())
    };
    // eni-app goes: the indices after it shift, the flow logs still cover their own ENIs.
    let gone =
        validated(&edit(&with, &Operation::TerminateInstances { instance_ids: vec!["app".into()] }).unwrap().model)
            .unwrap();
    assert_eq!(covers(&gone, "fl-s").as_deref(), Some("eni-standby"));
    assert_eq!(covers(&gone, "fl-f").as_deref(), Some("eni-app-float"));
    // eni-standby goes: its flow log with it.
    let op = Operation::TerminateInstances { instance_ids: vec!["standby".into()] };
    let gone = validated(&edit(&with, &op).unwrap().model).unwrap();
    assert_eq!(covers(&gone, "fl-s"), None);
    assert_eq!(covers(&gone, "fl-f").as_deref(), Some("eni-app-float"));
    assert!(diff(&with, &gone).unwrap().steps.contains(&"DeleteFlowLogs fl-s".to_string()));
}

#[test]
fn the_api_endpoint_of_a_running_lab_cannot_change() {
    let old = default_lab();
    let mut new = old.clone();
    new.api.listen = Some("127.0.0.1:4566".parse().unwrap());
    let e = diff(&old, &new).unwrap_err();
    assert!(e.message.contains("[api]"), "{e}");
}

#[test]
fn dhcp_options_sets_are_created_associated_and_deleted_never_modified() {
    use crate::model::{DhcpOptionsSet, NameServer, VpcIdx};
    let old = default_lab();
    let mut with = old.clone();
    with.dhcp_options.push(DhcpOptionsSet {
        id: "dopt-corp".into(),
        domain_name: Some("corp.example".into()),
        domain_name_servers: vec![NameServer::Address("10.0.0.53".parse().unwrap())],
        ntp_servers: Vec::new(),
        vpcs: vec![VpcIdx(0)],
    });
    let vpc = &old.vpcs[0].id;
    let steps = diff(&old, &with).unwrap().steps;
    assert!(steps[0].starts_with("CreateDhcpOptions dopt-corp domain Some(\"corp.example\")"), "{steps:?}");
    assert_eq!(steps[1], format!("AssociateDhcpOptions dopt-corp -> {vpc}"));
    assert_eq!(
        diff(&with, &old).unwrap().steps,
        ["DeleteDhcpOptions dopt-corp".to_string(), format!("AssociateDhcpOptions default -> {vpc}")]
    );
    let mut changed = with.clone();
    changed.dhcp_options[0].domain_name = Some("other.example".into());
    assert_eq!(diff(&with, &changed).unwrap_err().code, "OperationNotPermitted");
    let mut moved = old.clone();
    moved.region = Some("eu-west-1".into());
    assert!(diff(&old, &moved).unwrap_err().message.contains("region"));
    let mut explicit = old.clone();
    explicit.region = Some("us-east-1".into());
    assert!(diff(&old, &explicit).unwrap().is_empty(), "writing the default region is no change");
}

#[test]
fn dns_attributes_plan_as_one_modify_vpc_attribute_each() {
    let old = default_lab();
    let vpc = old.vpcs[0].id.clone();
    let mut new = old.clone();
    new.vpcs[0].enable_dns_hostnames = true;
    assert_eq!(diff(&old, &new).unwrap().steps, [format!("ModifyVpcAttribute {vpc} enable_dns_hostnames true")]);
    let mut off = old.clone();
    off.vpcs[0].enable_dns_support = false;
    assert_eq!(diff(&new, &off).unwrap().steps.len(), 2);
    // Through a file: the exported lab with the attribute written is the same one-step plan.
    let text = topology::export(&old).replacen(
        &format!("id = \"{vpc}\"\n"),
        &format!("id = \"{vpc}\"\nenable_dns_hostnames = true\n"),
        1,
    );
    let parsed = topology::parse(&text, "t.toml").unwrap();
    assert_eq!(diff(&old, &parsed).unwrap().steps, [format!("ModifyVpcAttribute {vpc} enable_dns_hostnames true")]);
}

// ---------------------------------------------------------------------------------------------
// Creating and deleting whole objects

/// Applies `op` to `m` and validates: the new model and the ids created.
fn made(m: &Model, op: Operation) -> (Model, Vec<String>) {
    let e = edit(m, &op).unwrap_or_else(|e| panic!("{op:?} was refused: {e}"));
    (validated(&e.model).unwrap(), e.created)
}

/// Asserts `op` is refused with `code` before anything changes, and returns the message.
fn refused(m: &Model, op: Operation, code: &str) -> String {
    let before = topology::export(m);
    match edit(m, &op).and_then(|e| validated(&e.model)) {
        Ok(_) => panic!("{op:?} was accepted"),
        Err(e) => {
            assert_eq!(e.code, code, "{op:?}: {e}");
            assert_eq!(topology::export(m), before, "a refusal changes nothing");
            e.message
        }
    }
}

/// `prefix-` and 17 hex digits, as AWS shapes ids.
fn aws_shaped(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|hex| hex.len() == 17 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn create_vpc(cidr: &str) -> Operation {
    Operation::CreateVpc { cidr_block: cidr.into(), vpc_id: None }
}

fn create_subnet(vpc: &str, cidr: &str) -> Operation {
    Operation::CreateSubnet { vpc_id: vpc.into(), cidr_block: cidr.into(), availability_zone: None, subnet_id: None }
}

fn create_group(vpc: &str, name: &str) -> Operation {
    Operation::CreateSecurityGroup {
        vpc_id: vpc.into(),
        group_name: name.into(),
        description: "made by a test".into(),
        group_id: None,
    }
}

fn create_eni(subnet: &str, ip: Option<&str>, groups: &[&str]) -> Operation {
    Operation::CreateNetworkInterface {
        subnet_id: subnet.into(),
        private_ip_address: ip.map(Into::into),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        description: None,
        network_interface_id: None,
    }
}

fn run(subnet: &str, count: u32) -> Operation {
    Operation::RunInstances {
        subnet_id: subnet.into(),
        instance_type: Some("t3.micro".into()),
        private_ip_address: None,
        security_group_ids: Vec::new(),
        count,
        instance_id: None,
    }
}

#[test]
fn create_vpc_makes_aws_s_implicit_objects_under_a_stable_aws_shaped_id() {
    let old = default_lab();
    let (m, ids) = made(&old, create_vpc("10.9.0.0/16"));
    let [id] = ids.as_slice() else { panic!("{ids:?}") };
    assert!(aws_shaped(id, "vpc"), "{id}");
    assert_eq!(made(&old, create_vpc("10.9.0.0/16")).1, ids, "the same call on the same lab, the same id");
    let v = &m.vpcs[m.vpcs.len() - 1];
    assert_eq!((v.id.as_str(), v.cidr.to_string().as_str()), (id.as_str(), "10.9.0.0/16"));
    assert_eq!(m.security_groups[v.default_security_group.index()].name, "default");
    assert_eq!(m.route_tables[v.main_route_table.index()].id, format!("{id}/main"));
    assert!(diff(&old, &m).unwrap().steps.contains(&format!("CreateVpc {id} 10.9.0.0/16")));
    let given = Operation::CreateVpc { cidr_block: "10.9.0.0/16".into(), vpc_id: Some("vpc-lab".into()) };
    assert_eq!(made(&old, given).1, ["vpc-lab"]);

    refused(&old, create_vpc("10.0.0.0/8"), "InvalidVpc.Range");
    refused(&old, create_vpc("10.0.0.0/29"), "InvalidVpc.Range");
    refused(&old, create_vpc("10.0.0.5/16"), "InvalidParameterValue");
    let taken = Operation::CreateVpc { cidr_block: "10.9.0.0/16".into(), vpc_id: Some("sg-web".into()) };
    refused(&old, taken, "InvalidParameterValue");
}

#[test]
fn delete_vpc_needs_an_empty_vpc_and_undoes_create_vpc() {
    let old = default_lab();
    let msg = refused(&old, Operation::DeleteVpc { vpc_id: "vpc-main".into() }, "DependencyViolation");
    for left in ["subnet-public", "igw-main", "sg-web", "acl-public", "rtb-public"] {
        assert!(msg.contains(left), "{msg}");
    }
    refused(&old, Operation::DeleteVpc { vpc_id: "vpc-nope".into() }, "InvalidVpcID.NotFound");
    let (m, ids) = made(&old, create_vpc("10.9.0.0/16"));
    let (back, _) = made(&m, Operation::DeleteVpc { vpc_id: ids[0].clone() });
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&old).unwrap());
    assert_eq!(diff(&m, &back).unwrap().steps.first(), Some(&format!("DeleteVpc {}", ids[0])));
}

#[test]
fn subnets_are_created_inside_their_vpc_clear_of_the_others_and_deleted_when_empty() {
    let old = default_lab();
    let op = Operation::CreateSubnet {
        vpc_id: "vpc-main".into(),
        cidr_block: "10.0.3.0/24".into(),
        availability_zone: Some("az-b".into()),
        subnet_id: None,
    };
    let (m, ids) = made(&old, op);
    assert!(aws_shaped(&ids[0], "subnet"), "{ids:?}");
    let s = &m.subnets[m.subnets.len() - 1];
    assert_eq!((s.availability_zone.as_deref(), s.route_table), (Some("az-b"), m.vpcs[0].main_route_table));
    refused(&old, create_subnet("vpc-main", "10.0.1.128/25"), "InvalidSubnet.Conflict");
    refused(&old, create_subnet("vpc-main", "10.1.0.0/24"), "InvalidSubnet.Range");
    refused(&old, create_subnet("vpc-main", "10.0.3.0/29"), "InvalidSubnet.Range");
    refused(&old, create_subnet("vpc-nope", "10.0.3.0/24"), "InvalidVpcID.NotFound");

    let msg = refused(&old, Operation::DeleteSubnet { subnet_id: "subnet-public".into() }, "DependencyViolation");
    assert!(msg.contains("eni-web") && msg.contains("nat-main"), "{msg}");
    refused(&old, Operation::DeleteSubnet { subnet_id: "subnet-nope".into() }, "InvalidSubnetID.NotFound");
    let (back, _) = made(&m, Operation::DeleteSubnet { subnet_id: ids[0].clone() });
    assert_eq!(back.subnets.len(), old.subnets.len());
}

#[test]
fn a_new_group_allows_all_out_and_nothing_in_and_goes_when_nothing_uses_it() {
    let old = default_lab();
    let (m, ids) = made(&old, create_group("vpc-main", "web-tier"));
    let g = m.security_groups.iter().find(|g| g.id == ids[0]).unwrap();
    assert!(aws_shaped(&g.id, "sg"), "{}", g.id);
    assert_eq!((g.name.as_str(), g.description.as_deref()), ("web-tier", Some("made by a test")));
    assert!(g.ingress.is_empty());
    assert_eq!(g.egress.len(), 1, "AWS's one allow-all outbound rule");
    assert!(topology::export(&m).contains("name = \"web-tier\""));
    refused(&m, create_group("vpc-main", "web-tier"), "InvalidGroup.Duplicate");
    refused(&old, create_group("vpc-main", "default"), "InvalidGroup.Reserved");
    refused(&old, create_group("vpc-main", "sg-x"), "InvalidParameterValue");
    refused(&old, create_group("vpc-nope", "x"), "InvalidVpcID.NotFound");

    let delete = |id: &str| Operation::DeleteSecurityGroup { group_id: id.into() };
    let msg = refused(&old, delete("sg-web"), "DependencyViolation");
    assert!(msg.contains("eni-web") && msg.contains("sg-app"), "in use and named by sg-app's rule: {msg}");
    refused(&old, delete("vpc-main/default"), "CannotDelete");
    refused(&old, delete("sg-nope"), "InvalidGroup.NotFound");
    let rule =
        RuleSpec { protocol: "tcp".into(), port: Some("22".into()), cidr: None, source_group: Some(ids[0].clone()) };
    let (named, _) = made(&m, Operation::AuthorizeSecurityGroupIngress { group_id: "sg-app".into(), rule });
    let msg = refused(&named, delete(&ids[0]), "DependencyViolation");
    assert!(msg.contains("sg-app"), "{msg}");
    let (back, _) = made(&m, delete(&ids[0]));
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&old).unwrap());
}

#[test]
fn a_new_eni_takes_the_first_free_address_or_a_free_one_asked_for() {
    let old = default_lab();
    let (m, ids) = made(&old, create_eni("subnet-private", None, &[]));
    let e = &m.enis[m.eni_by_id(&ids[0]).unwrap().index()];
    assert!(aws_shaped(&e.id, "eni"), "{}", e.id);
    assert_eq!(e.private_ip.to_string(), "10.0.2.4", "base + 4: the first address AWS does not reserve");
    assert_eq!(e.security_groups, [m.vpcs[0].default_security_group], "no groups: the VPC's default");
    assert!(e.attachment.is_none());
    let (m2, ids2) = made(&m, create_eni("subnet-private", Some("10.0.2.77"), &["sg-app", "sg-web"]));
    let e = &m2.enis[m2.eni_by_id(&ids2[0]).unwrap().index()];
    assert_eq!((e.private_ip.to_string().as_str(), e.security_groups.len()), ("10.0.2.77", 2));
    assert_ne!(ids, ids2);
    refused(&old, create_eni("subnet-private", Some("10.0.2.10"), &[]), "InvalidIPAddress.InUse");
    refused(&old, create_eni("subnet-private", Some("10.0.1.50"), &[]), "InvalidParameterValue");
    refused(&old, create_eni("subnet-private", Some("10.0.2.1"), &[]), "InvalidParameterValue");
    refused(&old, create_eni("subnet-private", None, &["sg-nope"]), "InvalidGroup.NotFound");
    refused(&old, create_eni("subnet-nope", None, &[]), "InvalidSubnetID.NotFound");

    let delete = |id: &str| Operation::DeleteNetworkInterface { network_interface_id: id.into() };
    refused(&old, delete("eni-app-float"), "InvalidNetworkInterface.InUse");
    refused(&old, delete("eni-nope"), "InvalidNetworkInterfaceID.NotFound");
    let (back, _) = made(&m, delete(&ids[0]));
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&old).unwrap());
}

#[test]
fn route_tables_are_created_associated_disassociated_and_deleted() {
    let old = default_lab();
    let (m, subnet) = made(&old, create_subnet("vpc-main", "10.0.3.0/24"));
    let (m, rtb) = made(&m, Operation::CreateRouteTable { vpc_id: "vpc-main".into(), route_table_id: None });
    assert!(aws_shaped(&rtb[0], "rtb"), "{rtb:?}");
    let assoc = |t: &str, s: &str| Operation::AssociateRouteTable { route_table_id: t.into(), subnet_id: s.into() };
    let (with, _) = made(&m, assoc(&rtb[0], &subnet[0]));
    assert_eq!(diff(&m, &with).unwrap().steps, [format!("ReplaceRouteTableAssociation {} -> {}", subnet[0], rtb[0])]);
    refused(&with, assoc(&rtb[0], &subnet[0]), "Resource.AlreadyAssociated");
    refused(&m, assoc("rtb-nope", &subnet[0]), "InvalidRouteTableID.NotFound");
    refused(&m, assoc(&rtb[0], "subnet-nope"), "InvalidSubnetID.NotFound");
    let delete = |t: &str| Operation::DeleteRouteTable { route_table_id: t.into() };
    refused(&with, delete(&rtb[0]), "DependencyViolation");
    refused(&old, delete("vpc-main/main"), "DependencyViolation");
    refused(&old, delete("rtb-nope"), "InvalidRouteTableID.NotFound");

    let disassociate = |s: &str| Operation::DisassociateRouteTable { subnet_id: s.into() };
    let (without, _) = made(&with, disassociate(&subnet[0]));
    assert_eq!(serde_json::to_value(&without).unwrap(), serde_json::to_value(&m).unwrap());
    refused(&m, disassociate(&subnet[0]), "InvalidAssociationID.NotFound");
    let (gone, _) = made(&without, delete(&rtb[0]));
    assert_eq!(gone.route_tables.len(), old.route_tables.len());
}

#[test]
fn internet_gateways_are_created_detached_then_attached_detached_and_deleted() {
    let old = default_lab();
    let (m, igw) = made(&old, Operation::CreateInternetGateway { internet_gateway_id: None });
    assert!(aws_shaped(&igw[0], "igw"), "{igw:?}");
    assert_eq!(m.internet_gateways[1].vpc, None, "AWS creates it detached");
    let attach =
        |g: &str, v: &str| Operation::AttachInternetGateway { internet_gateway_id: g.into(), vpc_id: v.into() };
    let detach =
        |g: &str, v: &str| Operation::DetachInternetGateway { internet_gateway_id: g.into(), vpc_id: v.into() };
    refused(&m, attach(&igw[0], "vpc-main"), "Resource.AlreadyAssociated");
    refused(&m, attach("igw-main", "vpc-main"), "Resource.AlreadyAssociated");
    refused(&m, attach("igw-nope", "vpc-main"), "InvalidInternetGatewayID.NotFound");
    let (m, vpc) = made(&m, create_vpc("10.9.0.0/16"));
    let (on, _) = made(&m, attach(&igw[0], &vpc[0]));
    assert_eq!(diff(&m, &on).unwrap().steps, [format!("AttachInternetGateway {} to {}", igw[0], vpc[0])]);
    refused(&on, detach(&igw[0], "vpc-main"), "Gateway.NotAttached");
    let msg = refused(&old, detach("igw-main", "vpc-main"), "DependencyViolation");
    assert!(msg.contains("203.0.113.20") && msg.contains("203.0.113.10"), "mapped addresses: {msg}");
    refused(&on, Operation::DeleteInternetGateway { internet_gateway_id: igw[0].clone() }, "DependencyViolation");
    let (off, _) = made(&on, detach(&igw[0], &vpc[0]));
    let (gone, _) = made(&off, Operation::DeleteInternetGateway { internet_gateway_id: igw[0].clone() });
    assert_eq!(gone.internet_gateways.len(), 1);
}

#[test]
fn a_route_to_a_deleted_gateway_is_a_blackhole() {
    let old = default_lab();
    let (m, _) = made(&old, Operation::DeleteNatGateway { nat_gateway_id: "nat-main".into() });
    let private = &m.route_tables.iter().find(|t| t.id == "rtb-private").unwrap().routes;
    assert!(private.iter().any(|r| r.destination.to_string() == "0.0.0.0/0" && r.target == RouteTarget::Blackhole));
    assert!(m.elastic_ips.iter().any(|e| e.id == "eipalloc-nat"), "its Elastic IP stays allocated");
    refused(&old, Operation::DeleteNatGateway { nat_gateway_id: "nat-nope".into() }, "NatGatewayNotFound");
}

#[test]
fn addresses_are_allocated_from_the_documentation_ranges_and_released_when_unused() {
    let old = default_lab();
    let (m, ids) = made(&old, Operation::AllocateAddress { public_ip: None });
    assert!(aws_shaped(&ids[0], "eipalloc"), "{ids:?}");
    let e = m.elastic_ips.iter().find(|e| e.id == ids[0]).unwrap();
    assert_eq!((e.public_ip.to_string().as_str(), e.association), ("203.0.113.1", None));
    let asked = Operation::AllocateAddress { public_ip: Some("192.0.2.33".into()) };
    assert_eq!(made(&old, asked).0.elastic_ips[2].public_ip.to_string(), "192.0.2.33");
    refused(&old, Operation::AllocateAddress { public_ip: Some("203.0.113.20".into()) }, "InvalidAddress.InUse");
    refused(&old, Operation::AllocateAddress { public_ip: Some("198.51.100.7".into()) }, "InvalidAddress.InUse");

    let release = |a: &str| Operation::ReleaseAddress { allocation_id: a.into() };
    refused(&old, release("eipalloc-web"), "InvalidIPAddress.InUse");
    refused(&old, release("eipalloc-nat"), "InvalidIPAddress.InUse");
    refused(&old, release("eipalloc-nope"), "InvalidAllocationID.NotFound");
    let (back, _) = made(&m, release(&ids[0]));
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&old).unwrap());
}

#[test]
fn a_nat_gateway_is_created_with_a_free_elastic_ip_and_the_subnet_s_first_free_address() {
    let old = default_lab();
    let (m, eip) = made(&old, Operation::AllocateAddress { public_ip: None });
    let nat = |a: &str| Operation::CreateNatGateway {
        subnet_id: "subnet-public".into(),
        allocation_id: Some(a.into()),
        nat_gateway_id: None,
    };
    let (n, ids) = made(&m, nat(&eip[0]));
    assert!(aws_shaped(&ids[0], "nat"), "{ids:?}");
    assert_eq!(n.nat_gateways[1].private_ip.to_string(), "10.0.1.4");
    assert!(diff(&m, &n).unwrap().steps[0].starts_with(&format!("CreateNatGateway {}", ids[0])));
    refused(&m, nat("eipalloc-web"), "Resource.AlreadyAssociated");
    refused(&m, nat("eipalloc-nat"), "Resource.AlreadyAssociated");
    refused(&m, nat("eipalloc-nope"), "InvalidAllocationID.NotFound");
    let (back, _) = made(&n, Operation::DeleteNatGateway { nat_gateway_id: ids[0].clone() });
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&m).unwrap());
}

#[test]
fn a_peering_waits_for_acceptance_and_its_routes_are_blackholes_until_then() {
    let old = default_lab();
    let (m, vpc) = made(&old, create_vpc("10.9.0.0/16"));
    let peer = |a: &str, b: &str| Operation::CreateVpcPeeringConnection {
        vpc_id: a.into(),
        peer_vpc_id: b.into(),
        vpc_peering_connection_id: None,
    };
    let (pending, pcx) = made(&m, peer("vpc-main", &vpc[0]));
    assert!(aws_shaped(&pcx[0], "pcx"), "{pcx:?}");
    assert_eq!(pending.peerings[0].status, crate::model::PeeringStatus::PendingAcceptance);
    let route = Operation::CreateRoute {
        route_table_id: "rtb-private".into(),
        destination_cidr_block: "10.9.0.0/16".into(),
        target: pcx[0].clone(),
    };
    let (routed, _) = made(&pending, route);
    let target = crate::model::RouteTarget::Peering(crate::model::PcxIdx(0));
    assert!(crate::policy::route_table::unusable(&routed, target).is_some(), "pending: a blackhole");
    let accept = |p: &str| Operation::AcceptVpcPeeringConnection { vpc_peering_connection_id: p.into() };
    let (active, _) = made(&routed, accept(&pcx[0]));
    assert_eq!(diff(&routed, &active).unwrap().steps, [format!("AcceptVpcPeeringConnection {}", pcx[0])]);
    assert!(crate::policy::route_table::unusable(&active, target).is_none());
    refused(&active, accept(&pcx[0]), "InvalidStateTransition");
    refused(&active, peer(&vpc[0], "vpc-main"), "VpcPeeringConnectionAlreadyExists");
    refused(&m, peer("vpc-main", "vpc-main"), "InvalidParameterValue");
    refused(&m, peer("vpc-main", "vpc-nope"), "InvalidVpcID.NotFound");
    refused(&m, accept("pcx-nope"), "InvalidVpcPeeringConnectionID.NotFound");
    let delete = Operation::DeleteVpcPeeringConnection { vpc_peering_connection_id: pcx[0].clone() };
    let (gone, _) = made(&active, delete);
    assert!(gone.peerings.is_empty());
    let private = &gone.route_tables.iter().find(|t| t.id == "rtb-private").unwrap().routes;
    assert!(private.iter().any(|r| r.destination.to_string() == "10.9.0.0/16" && r.target == RouteTarget::Blackhole));
}

#[test]
fn run_instances_starts_each_instance_with_its_primary_eni() {
    let old = default_lab();
    let (m, ids) = made(&old, run("subnet-private", 2));
    assert_eq!(ids.len(), 4, "{ids:?}");
    for pair in ids.chunks(2) {
        assert!(aws_shaped(&pair[0], "i") && aws_shaped(&pair[1], "eni"), "{pair:?}");
        let i = m.instance_by_id(&pair[0]).unwrap();
        assert_eq!(m.instances[i.index()].instance_type.as_deref(), Some("t3.micro"));
        let [eni] = m.enis_of(i)[..] else { panic!("one ENI") };
        let e = &m.enis[eni.index()];
        assert_eq!(e.id, pair[1]);
        let a = e.attachment.unwrap();
        assert!(a.device_index == 0 && a.delete_on_termination, "{a:?}");
    }
    let ips: Vec<String> =
        ids.chunks(2).map(|p| m.enis[m.eni_by_id(&p[1]).unwrap().index()].private_ip.to_string()).collect();
    assert_eq!(ips, ["10.0.2.4", "10.0.2.5"]);
    let steps = diff(&old, &m).unwrap().steps;
    assert!(steps.iter().any(|s| s.starts_with(&format!("RunInstances {}", ids[0]))), "{steps:?}");

    let mut bad_type = run("subnet-private", 1);
    if let Operation::RunInstances { instance_type, .. } = &mut bad_type {
        *instance_type = Some("t9.huge".into());
    }
    refused(&old, bad_type, "InvalidParameterValue");
    refused(&old, run("subnet-private", 0), "InvalidParameterValue");
    refused(&old, run("subnet-private", 33), "InvalidParameterValue");
    let mut two_at_one_ip = run("subnet-private", 2);
    if let Operation::RunInstances { private_ip_address, .. } = &mut two_at_one_ip {
        *private_ip_address = Some("10.0.2.99".into());
    }
    refused(&old, two_at_one_ip, "InvalidParameterCombination");
    refused(&old, run("subnet-nope", 1), "InvalidSubnetID.NotFound");
    let mut in_use = run("subnet-private", 1);
    if let Operation::RunInstances { private_ip_address, .. } = &mut in_use {
        *private_ip_address = Some("10.0.2.10".into());
    }
    refused(&old, in_use, "InvalidIPAddress.InUse");
}

#[test]
fn create_operations_travel_as_tagged_json() {
    let op: Operation = serde_json::from_str(r#"{"action":"create-vpc","cidr_block":"10.9.0.0/16"}"#).unwrap();
    assert_eq!(op, create_vpc("10.9.0.0/16"));
    let op: Operation =
        serde_json::from_str(r#"{"action":"run-instances","subnet_id":"subnet-private","count":1}"#).unwrap();
    assert!(matches!(op, Operation::RunInstances { ref security_group_ids, .. } if security_group_ids.is_empty()));
    let outcome: Outcome =
        serde_json::from_str(r#"{"plan":[],"applied":false,"generation":0,"millis":0,"swap_micros":0}"#).unwrap();
    assert!(outcome.created.is_empty(), "an outcome from before `created` still reads");
}
