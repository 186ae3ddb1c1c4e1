//! A lab grown by the create operations alone, sent as `Change::Operation` over the control
//! socket (the request the EC2 API face sends): a new VPC, subnet, route table and group, an
//! instance run in it, and a peering to the VPC that was there; then real traffic between the
//! new instance and the old one.

mod common;

use common::*;
use vpclab::change::ops::RuleSpec;
use vpclab::change::{AwsError, Change, Operation, Outcome};
use vpclab::control::{request, Request, Response};

/// One VPC with one instance, `old` (10.0.1.10), whose group admits ICMP and TCP 5001 from
/// 10.20.0.0/16, and whose subnet has a route table of its own.
const OLD: &str = r#"
[[vpc]]
id = "vpc-old"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-old"
vpc = "vpc-old"
cidr = "10.0.1.0/24"
route_table = "rtb-old"

[[route_table]]
id = "rtb-old"
vpc = "vpc-old"

[[security_group]]
id = "sg-old"
vpc = "vpc-old"
ingress = [
  { protocol = "icmp", source = "10.20.0.0/16" },
  { protocol = "tcp", ports = "5001", source = "10.20.0.0/16" },
]

[[instance]]
id = "old"

[[network_interface]]
id = "eni-old"
subnet = "subnet-old"
private_ip = "10.0.1.10"
security_groups = ["sg-old"]
attachment = { instance = "old", device_index = 0 }
"#;

/// Sends one operation to the lab's forwarder.
fn send(lab: &TestLab, op: Operation) -> Result<Outcome, AwsError> {
    let req = Request::Change { change: Change::Operation { op: op.clone() }, dry_run: false };
    match request(&vpclab::lab::socket_path(&lab.name), &req).expect("the forwarder answers") {
        Response::Changed(o) => Ok(o),
        Response::Refused(e) => Err(e),
        other => panic!("{op:?}: unexpected answer {other:?}"),
    }
}

/// Sends `op`, which must be applied; returns the ids it created.
fn created(lab: &TestLab, op: Operation) -> Vec<String> {
    let o = send(lab, op.clone()).unwrap_or_else(|e| panic!("{op:?} refused: {e}"));
    assert!(o.applied, "{op:?}: {o:?}");
    o.created
}

/// Sends `op`, which creates exactly one object; returns its id.
fn one(lab: &TestLab, op: Operation) -> String {
    let ids = created(lab, op.clone());
    assert_eq!(ids.len(), 1, "{op:?}: {ids:?}");
    ids[0].clone()
}

fn rule(protocol: &str, port: Option<&str>, cidr: &str) -> RuleSpec {
    RuleSpec { protocol: protocol.into(), port: port.map(Into::into), cidr: Some(cidr.into()), source_group: None }
}

#[test]
fn a_vpc_built_by_create_operations_carries_traffic_to_the_old_one_once_peered() {
    let lab = TestLab::up("create", OLD);
    let vpc = one(&lab, Operation::CreateVpc { cidr_block: "10.20.0.0/16".into(), vpc_id: None });
    assert!(vpc.starts_with("vpc-") && vpc.len() == 21, "{vpc}");
    let subnet = one(
        &lab,
        Operation::CreateSubnet {
            vpc_id: vpc.clone(),
            cidr_block: "10.20.1.0/24".into(),
            availability_zone: None,
            subnet_id: None,
        },
    );
    let rtb = one(&lab, Operation::CreateRouteTable { vpc_id: vpc.clone(), route_table_id: None });
    assert!(created(&lab, Operation::AssociateRouteTable { route_table_id: rtb.clone(), subnet_id: subnet.clone() })
        .is_empty());
    let sg = one(
        &lab,
        Operation::CreateSecurityGroup {
            vpc_id: vpc.clone(),
            group_name: "svc".into(),
            description: "the new service".into(),
            group_id: None,
        },
    );
    for r in [rule("icmp", None, "10.0.0.0/16"), rule("tcp", Some("5001"), "10.0.0.0/16")] {
        created(&lab, Operation::AuthorizeSecurityGroupIngress { group_id: sg.clone(), rule: r });
    }
    let ids = created(
        &lab,
        Operation::RunInstances {
            subnet_id: subnet.clone(),
            instance_type: Some("t3.micro".into()),
            private_ip_address: None,
            security_group_ids: vec![sg.clone()],
            count: 1,
            instance_id: None,
        },
    );
    let [instance, eni] = ids.as_slice() else { panic!("an instance and its ENI: {ids:?}") };
    assert!(instance.starts_with("i-") && eni.starts_with("eni-"), "{ids:?}");
    let new_ip = "10.20.1.4"; // the subnet's first address AWS does not reserve
    assert_eq!(lab.eni(eni)["ips"][0], new_ip, "{:#}", lab.eni(eni));
    assert!(namespaces_of(&lab.name).contains(&lab.ns(instance)), "{:?}", namespaces_of(&lab.name));

    // Peered, but not yet accepted: the routes to it are blackholes.
    let pcx = one(
        &lab,
        Operation::CreateVpcPeeringConnection {
            vpc_id: "vpc-old".into(),
            peer_vpc_id: vpc.clone(),
            vpc_peering_connection_id: None,
        },
    );
    for (table, dest) in [("rtb-old", "10.20.0.0/16"), (rtb.as_str(), "10.0.0.0/16")] {
        created(
            &lab,
            Operation::CreateRoute {
                route_table_id: table.into(),
                destination_cidr_block: dest.into(),
                target: pcx.clone(),
            },
        );
    }
    let t = lab.trace(&["--from", "old", "--to", new_ip, "--proto", "icmp"]);
    assert_eq!((t["verdict"].as_str(), t["drop_reason"].as_str()), (Some("dropped"), Some("blackhole")), "{t:#}");

    created(&lab, Operation::AcceptVpcPeeringConnection { vpc_peering_connection_id: pcx.clone() });
    assert!(eventually(5, || pings(&lab, "old", new_ip)), "the old instance cannot reach the new one");
    assert!(pings(&lab, instance, "10.0.1.10"), "the new instance cannot reach the old one");
    let _server = tcp_echo_server(&lab.ns("old"), addr("10.0.1.10", 5001));
    let echoed = tcp_echo_client(&lab.ns(instance), addr("10.0.1.10", 5001), b"from a new VPC".to_vec()).unwrap();
    assert_eq!(echoed, b"from a new VPC");

    // What is still in it keeps the VPC: refused, and the traffic goes on.
    let e = send(&lab, Operation::DeleteVpc { vpc_id: vpc.clone() }).unwrap_err();
    assert_eq!(e.code, "DependencyViolation", "{e}");
    assert!(e.message.contains(&subnet) && e.message.contains(&pcx), "{e}");
    assert!(pings(&lab, "old", new_ip));
    // The exported lab holds what was created.
    let exported = text(&vpclab(&["export", &lab.name]));
    for id in [&vpc, &subnet, &rtb, &sg, instance, eni, &pcx] {
        assert!(exported.contains(&format!("\"{id}\"")), "{id} missing from:\n{exported}");
    }
}
