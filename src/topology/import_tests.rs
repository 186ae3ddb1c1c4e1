//! `vpclab import`: each AWS construct maps to what the topology file says, what vpclab cannot
//! carry is listed by id, and bad input is refused naming the file and field.

use serde_json::{json, Value};

use super::import::{
    import, import_paths, ImportError, Imported, SourceFile, MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES,
};
use super::parse;
use crate::model::{AclAction, Cidr, InstanceState, Model, PortMatch, PortRange, Protocol, RouteTarget, SgPeer};

/// The shipped example set, as `import_paths` would read it from the folder.
fn example_files() -> Vec<SourceFile> {
    let files = [
        ("describe-addresses.json", include_str!("../../examples/aws-json/describe-addresses.json")),
        ("describe-instances.json", include_str!("../../examples/aws-json/describe-instances.json")),
        ("describe-internet-gateways.json", include_str!("../../examples/aws-json/describe-internet-gateways.json")),
        ("describe-nat-gateways.json", include_str!("../../examples/aws-json/describe-nat-gateways.json")),
        ("describe-network-acls.json", include_str!("../../examples/aws-json/describe-network-acls.json")),
        ("describe-network-interfaces.json", include_str!("../../examples/aws-json/describe-network-interfaces.json")),
        ("describe-route-tables.json", include_str!("../../examples/aws-json/describe-route-tables.json")),
        ("describe-security-groups.json", include_str!("../../examples/aws-json/describe-security-groups.json")),
        ("describe-subnets.json", include_str!("../../examples/aws-json/describe-subnets.json")),
        (
            "describe-vpc-peering-connections.json",
            include_str!("../../examples/aws-json/describe-vpc-peering-connections.json"),
        ),
        ("describe-vpcs.json", include_str!("../../examples/aws-json/describe-vpcs.json")),
    ];
    files.iter().map(|(n, t)| SourceFile { name: n.to_string(), text: t.to_string(), from_folder: true }).collect()
}

fn imported_example() -> (Imported, Model) {
    let out = import(&example_files(), "demo", "examples/aws-json").unwrap_or_else(|e| panic!("{e}"));
    let model = parse(&out.text, "imported.toml").unwrap_or_else(|e| panic!("{e}\n{}", out.text));
    (out, model)
}

/// A file named `name` holding `v` (as if named on the command line).
fn file(name: &str, v: Value) -> SourceFile {
    SourceFile { name: name.into(), text: v.to_string(), from_folder: false }
}

/// One VPC, one subnet, one group and one instance with its ENI: the smallest lab worth importing.
fn small() -> Vec<SourceFile> {
    vec![
        file("vpcs.json", json!({"Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}]})),
        file(
            "subnets.json",
            json!({"Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1", "CidrBlock": "10.0.1.0/24", "AvailabilityZone": "eu-west-1b"}]}),
        ),
        file(
            "sgs.json",
            json!({"SecurityGroups": [{"GroupId": "sg-1", "VpcId": "vpc-1", "IpPermissions": [], "IpPermissionsEgress": []}]}),
        ),
        file("instances.json", json!({"Reservations": [{"Instances": [instance("i-1", "eni-1", "10.0.1.10")]}]})),
    ]
}

fn instance(id: &str, eni: &str, ip: &str) -> Value {
    json!({
        "InstanceId": id, "InstanceType": "t3.micro", "State": {"Code": 16, "Name": "running"},
        "NetworkInterfaces": [{
            "NetworkInterfaceId": eni, "SubnetId": "subnet-1", "PrivateIpAddress": ip,
            "PrivateIpAddresses": [{"Primary": true, "PrivateIpAddress": ip}],
            "Groups": [{"GroupId": "sg-1", "GroupName": "one"}],
            "Attachment": {"DeviceIndex": 0, "DeleteOnTermination": true}
        }]
    })
}

/// `small()` with `extra` files added.
fn small_with(extra: Vec<SourceFile>) -> Result<(Imported, Model), ImportError> {
    let mut files = small();
    files.extend(extra);
    let out = import(&files, "t", "test")?;
    let model = parse(&out.text, "imported.toml").unwrap_or_else(|e| panic!("{e}\n{}", out.text));
    Ok((out, model))
}

fn input_error(r: Result<impl std::fmt::Debug, ImportError>) -> String {
    match r {
        Err(e @ ImportError::Input { .. }) => e.to_string(),
        other => panic!("expected an input error, got {other:?}"),
    }
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

#[test]
fn vpcs_subnets_gateways_and_peerings_keep_their_ids_cidrs_and_zones() {
    let (_, m) = imported_example();
    let ids: Vec<&str> = m.vpcs.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["vpc-0a1b2c3d4e5f60001", "vpc-0a1b2c3d4e5f60002"]);
    assert_eq!(m.vpcs[1].cidr, cidr("10.1.0.0/16"));
    let public = m.subnets.iter().find(|s| s.id == "subnet-0a1b2c3d4e5f61001").unwrap();
    assert_eq!((public.cidr, public.availability_zone.as_deref()), (cidr("10.0.1.0/24"), Some("us-east-1a")));
    assert_eq!(m.internet_gateways[0].id, "igw-0a1b2c3d4e5f62001");
    assert_eq!(m.vpcs[m.internet_gateways[0].vpc.unwrap().index()].id, "vpc-0a1b2c3d4e5f60001");
    assert_eq!(m.peerings.len(), 1, "only the active peering");
    let p = &m.peerings[0];
    assert_eq!(p.id, "pcx-0a1b2c3d4e5f6c001");
    assert_eq!(
        (m.vpcs[p.requester_vpc.index()].id.as_str(), m.vpcs[p.accepter_vpc.index()].id.as_str()),
        (ids[0], ids[1])
    );
}

#[test]
fn enis_keep_addresses_macs_checks_attachments_and_instances_their_types() {
    let (_, m) = imported_example();
    let web = &m.enis[m.eni_by_id("eni-0a1b2c3d4e5f64001").unwrap().index()];
    assert_eq!(web.private_ip.to_string(), "10.0.1.10");
    assert_eq!(web.secondary_private_ips, ["10.0.1.11".parse::<std::net::Ipv4Addr>().unwrap()]);
    assert_eq!(web.mac.to_string(), "02:1b:2c:3d:40:01");
    assert!(web.source_dest_check);
    let leg = &m.enis[m.eni_by_id("eni-0a1b2c3d4e5f64003").unwrap().index()];
    assert!(!leg.source_dest_check);
    let att = leg.attachment.unwrap();
    assert_eq!((m.instances[att.instance.index()].id.as_str(), att.device_index), ("i-0a1b2c3d4e5f66002", 1));
    assert!(!att.delete_on_termination);
    let groups: Vec<&str> = leg.security_groups.iter().map(|g| m.security_groups[g.index()].id.as_str()).collect();
    assert_eq!(groups, ["sg-0a1b2c3d4e5f67003", "sg-0a1b2c3d4e5f67001"]);
    let app = &m.instances[m.instance_by_id("i-0a1b2c3d4e5f66002").unwrap().index()];
    assert_eq!((app.instance_type.as_deref(), app.state), (Some("t3.small"), InstanceState::Running));
    assert_eq!(m.instances.len(), 3, "the terminated instance is not carried");
    assert!(m.eni_by_id("eni-0a1b2c3d4e5f64099").is_none(), "the NAT gateway's own ENI is the NAT gateway's");
    assert!(m.eni_by_id("eni-0a1b2c3d4e5f64098").is_none(), "an endpoint's ENI is not carried");
}

#[test]
fn group_rules_keep_protocols_ports_icmp_and_group_references() {
    let (_, m) = imported_example();
    let group = |id: &str| &m.security_groups[m.security_groups.iter().position(|g| g.id == id).unwrap()];
    let web = group("sg-0a1b2c3d4e5f67002");
    assert_eq!(web.ingress.len(), 2, "{:?}", web.ingress);
    assert_eq!(web.ingress[0].protocol, Protocol::TCP);
    assert_eq!(web.ingress[0].ports, PortMatch::Ports(PortRange { from: 80, to: 80 }));
    assert_eq!(web.ingress[1].ports, PortMatch::Icmp { icmp_type: Some(8), icmp_code: None });
    assert_eq!(web.egress[0].protocol, Protocol::All);
    let app = group("sg-0a1b2c3d4e5f67003");
    let web_idx = m.security_groups.iter().position(|g| g.id == "sg-0a1b2c3d4e5f67002").unwrap();
    assert_eq!(app.ingress[0].peer, SgPeer::Group(crate::model::SgIdx(web_idx as u32)));
    assert_eq!(app.ingress[1].ports, PortMatch::Icmp { icmp_type: None, icmp_code: None });
    let default = group("sg-0a1b2c3d4e5f67001");
    assert!(matches!(default.ingress[0].peer, SgPeer::Group(g) if m.security_groups[g.index()].id == default.id));
}

#[test]
fn route_tables_map_every_target_kind_and_their_associations() {
    let (out, m) = imported_example();
    let table = |id: &str| &m.route_tables[m.route_tables.iter().position(|t| t.id == id).unwrap()];
    let target = |id: &str, dest: &str| table(id).routes.iter().find(|r| r.destination == cidr(dest)).map(|r| r.target);
    let name = |t: RouteTarget| crate::policy::route_table::target_name(&m, t);
    let private = "rtb-0a1b2c3d4e5f6a003";
    assert_eq!(target(private, "10.0.0.0/16"), Some(RouteTarget::Local));
    assert_eq!(name(target(private, "0.0.0.0/0").unwrap()), "nat-0a1b2c3d4e5f65001");
    assert_eq!(name(target(private, "10.1.0.0/16").unwrap()), "pcx-0a1b2c3d4e5f6c001");
    assert_eq!(name(target(private, "172.16.0.0/12").unwrap()), "eni-0a1b2c3d4e5f64003");
    assert_eq!(target(private, "10.99.0.0/16"), Some(RouteTarget::Blackhole));
    let said = "rtb-0a1b2c3d4e5f6a003: route 10.99.0.0/16 is a blackhole in AWS";
    assert!(out.remarks.iter().any(|r| r.starts_with(said)), "{:#?}", out.remarks);
    assert_eq!(target(private, "192.168.0.0/16"), None, "the transit gateway route is not carried");
    assert_eq!(name(target("rtb-0a1b2c3d4e5f6a002", "0.0.0.0/0").unwrap()), "igw-0a1b2c3d4e5f62001");
    let subnet = |id: &str| &m.subnets[m.subnets.iter().position(|s| s.id == id).unwrap()];
    assert_eq!(m.route_tables[subnet("subnet-0a1b2c3d4e5f61002").route_table.index()].id, private);
    // The shared subnet has no association of its own: its VPC's main table.
    assert_eq!(m.route_tables[subnet("subnet-0a1b2c3d4e5f61003").route_table.index()].id, "rtb-0a1b2c3d4e5f6a004");
    assert_eq!(m.route_tables[m.vpcs[0].main_route_table.index()].id, "rtb-0a1b2c3d4e5f6a001");
}

#[test]
fn acls_keep_numbers_directions_actions_ports_and_subnets() {
    let (_, m) = imported_example();
    let acl = &m.network_acls[m.network_acls.iter().position(|a| a.id == "acl-0a1b2c3d4e5f69002").unwrap()];
    let numbers: Vec<u16> = acl.ingress.iter().map(|r| r.number).collect();
    assert_eq!(numbers, [90, 100, 110, 120, 130, 140, 150], "sorted, rule * left implicit");
    assert_eq!(
        (acl.ingress[0].action, acl.ingress[0].ports),
        (AclAction::Deny, PortMatch::Ports(PortRange { from: 22, to: 22 }))
    );
    assert_eq!(acl.ingress[2].ports, PortMatch::Ports(PortRange { from: 1024, to: 65535 }));
    assert_eq!(acl.ingress[4].ports, PortMatch::Icmp { icmp_type: None, icmp_code: None });
    assert_eq!(acl.egress.len(), 1);
    let public = m.subnets.iter().find(|s| s.id == "subnet-0a1b2c3d4e5f61001").unwrap();
    assert_eq!(m.network_acls[public.network_acl.index()].id, acl.id);
}

#[test]
fn elastic_ips_nat_gateways_and_the_internet_host_are_carried() {
    let (out, m) = imported_example();
    let eip = |id: &str| &m.elastic_ips[m.elastic_ips.iter().position(|e| e.id == id).unwrap()];
    let web = eip("eipalloc-0a1b2c3d4e5f63002");
    assert_eq!(web.public_ip.to_string(), "203.0.113.20");
    let (eni, private) = web.association.unwrap();
    assert_eq!((m.enis[eni.index()].id.as_str(), private.to_string().as_str()), ("eni-0a1b2c3d4e5f64001", "10.0.1.10"));
    assert!(eip("eipalloc-0a1b2c3d4e5f63001").association.is_none(), "the NAT gateway's address is named by it");
    let nat = &m.nat_gateways[0];
    assert_eq!((nat.id.as_str(), nat.private_ip.to_string().as_str()), ("nat-0a1b2c3d4e5f65001", "10.0.1.100"));
    assert_eq!(m.subnets[nat.subnet.index()].id, "subnet-0a1b2c3d4e5f61001");
    assert_eq!(m.elastic_ips[nat.elastic_ip.unwrap().index()].id, "eipalloc-0a1b2c3d4e5f63001");
    assert_eq!(m.internet_hosts[0].ip.to_string(), "198.51.100.7");
    assert!(out.text.contains("# the internet: AWS's JSON names no hosts there"), "{}", out.text);
}

#[test]
fn what_cannot_be_carried_is_listed_by_id_in_the_file_and_the_result() {
    let (out, _) = imported_example();
    let expected = [
        "rtb-0a1b2c3d4e5f6a003: route 192.168.0.0/16 -> tgw-0a1b2c3d4e5f6b001: a transit gateway",
        "rtb-0a1b2c3d4e5f6a003: route to prefix list pl-63a5400a",
        "sg-0a1b2c3d4e5f67002: inbound rule tcp 443 from prefix list pl-0a1b2c3d4e5f6b201",
        "sg-0a1b2c3d4e5f67003: inbound rule tcp 8080 from 2001:db8::/32",
        "acl-0a1b2c3d4e5f69002: inbound rule 101 for ::/0",
        "eni-0a1b2c3d4e5f64098: a `vpc_endpoint` interface",
        "i-0a1b2c3d4e5f66004: state `terminated`",
        "pcx-0a1b2c3d4e5f6c002: its VPC vpc-0fedcba9876543210 (account 210987654321, region eu-west-1) is not in the input",
    ];
    for e in expected {
        assert!(out.not_carried.iter().any(|l| l.starts_with(e)), "`{e}` not listed: {:#?}", out.not_carried);
        assert!(out.text.lines().any(|l| l.starts_with(&format!("#   {e}"))), "`{e}` not in the file:\n{}", out.text);
    }
    assert_eq!(out.not_carried.len(), expected.len(), "{:#?}", out.not_carried);
    let header_end = out.text.find("name = ").unwrap();
    assert!(out.text[..header_end].lines().all(|l| l.is_empty() || l.starts_with('#')), "{}", out.text);
}

#[test]
fn a_pending_peering_between_imported_vpcs_is_kept_pending() {
    let extra = vec![
        file("vpc2.json", json!({"Vpcs": [{"VpcId": "vpc-2", "CidrBlock": "10.1.0.0/16"}]})),
        file(
            "pending.json",
            json!({"VpcPeeringConnections": [{"VpcPeeringConnectionId": "pcx-pending",
                "Status": {"Code": "pending-acceptance"},
                "RequesterVpcInfo": {"VpcId": "vpc-1"}, "AccepterVpcInfo": {"VpcId": "vpc-2"}}]}),
        ),
    ];
    let (_, m) = small_with(extra).unwrap();
    let p = m.peerings.iter().find(|p| p.id == "pcx-pending").expect("the pending peering is carried");
    assert_eq!(p.status, crate::model::PeeringStatus::PendingAcceptance);
}

#[test]
fn references_to_objects_outside_the_input_are_listed_not_dropped() {
    let extra = vec![
        file(
            "peer.json",
            json!({"VpcPeeringConnections": [{"VpcPeeringConnectionId": "pcx-9", "Status": {"Code": "active"},
                "RequesterVpcInfo": {"VpcId": "vpc-1"}, "AccepterVpcInfo": {"VpcId": "vpc-other", "OwnerId": "999", "Region": "eu-west-2"}}]}),
        ),
        file(
            "more-sgs.json",
            json!({"SecurityGroups": [{"GroupId": "sg-2", "VpcId": "vpc-1",
                "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": "sg-elsewhere"}]},
                                  {"IpProtocol": "icmpv6", "FromPort": -1, "ToPort": -1, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]}]}),
        ),
        file(
            "eips.json",
            json!({"Addresses": [{"AllocationId": "eipalloc-9", "PublicIp": "203.0.113.9", "NetworkInterfaceId": "eni-gone"}]}),
        ),
        file("igw.json", json!({"InternetGateways": [{"InternetGatewayId": "igw-9", "Attachments": []}]})),
    ];
    let (out, m) = small_with(extra).unwrap();
    for e in [
        "pcx-9: its VPC vpc-other (account 999, region eu-west-2) is not in the input",
        "sg-2: inbound rule tcp 22 from group sg-elsewhere: not in the input",
        "sg-2: inbound rule for icmpv6",
        "eipalloc-9: associated with eni-gone, which is not carried: imported unassociated",
        "igw-9: attached to no VPC",
    ] {
        assert!(out.not_carried.iter().any(|l| l.starts_with(e)), "`{e}` not listed: {:#?}", out.not_carried);
    }
    assert!(m.elastic_ips[0].association.is_none());
    assert!(m.internet_hosts.is_empty(), "no internet gateway, no internet host");
}

#[test]
fn an_instance_route_goes_to_its_primary_eni_and_unknown_gateways_are_listed() {
    let tables = file(
        "rtb.json",
        json!({"RouteTables": [{"RouteTableId": "rtb-1", "VpcId": "vpc-1",
            "Routes": [{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local", "State": "active"},
                       {"DestinationCidrBlock": "172.16.0.0/12", "InstanceId": "i-1", "State": "active"},
                       {"DestinationCidrBlock": "192.168.0.0/16", "GatewayId": "vgw-1", "State": "active"},
                       {"DestinationIpv6CidrBlock": "::/0", "EgressOnlyInternetGatewayId": "eigw-1", "State": "active"},
                       {"DestinationCidrBlock": "100.64.0.0/10", "CarrierGatewayId": "cagw-1", "State": "active"}],
            "Associations": [{"Main": true}, {"Main": false, "GatewayId": "igw-x"}]}]}),
    );
    let (out, m) = small_with(vec![tables]).unwrap();
    let t = &m.route_tables[m.vpcs[0].main_route_table.index()];
    assert_eq!(t.id, "rtb-1");
    let routes: Vec<String> = t
        .routes
        .iter()
        .map(|r| format!("{} {}", r.destination, crate::policy::route_table::target_name(&m, r.target)))
        .collect();
    assert_eq!(routes, ["10.0.0.0/16 local", "172.16.0.0/12 eni-1"]);
    for e in [
        "route 192.168.0.0/16 -> vgw-1: a virtual private gateway",
        "route to ::/0",
        "route 100.64.0.0/10 -> cagw-1",
        "edge association with igw-x",
    ] {
        assert!(out.not_carried.iter().any(|l| l.contains(e)), "`{e}` not listed: {:#?}", out.not_carried);
    }
}

#[test]
fn instances_that_cannot_be_placed_and_unknown_types_are_listed() {
    let mut files = small();
    files[3] = file(
        "instances.json",
        json!({"Reservations": [{"Instances": [
            instance("i-1", "eni-1", "10.0.1.10"),
            {"InstanceId": "i-noeni", "InstanceType": "t3.micro", "State": {"Name": "running"}, "NetworkInterfaces": []},
            {"InstanceId": "i-stopped", "InstanceType": "x9.huge", "State": {"Name": "stopped"},
             "NetworkInterfaces": [{"NetworkInterfaceId": "eni-s", "SubnetId": "subnet-1", "PrivateIpAddress": "10.0.1.20",
                                    "Groups": [{"GroupId": "sg-1"}], "Attachment": {"DeviceIndex": 0}}]}
        ]}]}),
    );
    let out = import(&files, "t", "test").unwrap();
    let m = parse(&out.text, "x.toml").unwrap();
    assert!(
        out.not_carried.iter().any(|l| l.starts_with("i-noeni: no primary network interface")),
        "{:#?}",
        out.not_carried
    );
    assert!(
        out.not_carried.iter().any(|l| l.starts_with("i-stopped: instance type `x9.huge`")),
        "{:#?}",
        out.not_carried
    );
    let stopped = &m.instances[m.instance_by_id("i-stopped").unwrap().index()];
    assert_eq!((stopped.state, stopped.instance_type.as_deref()), (InstanceState::Stopped, None));
}

#[test]
fn a_public_ip_aws_assigned_at_launch_is_carried_as_an_elastic_ip() {
    let mut files = small();
    let mut inst = instance("i-1", "eni-1", "10.0.1.10");
    inst["NetworkInterfaces"][0]["PrivateIpAddresses"][0]["Association"] =
        json!({"PublicIp": "198.51.100.44", "IpOwnerId": "amazon"});
    files[3] = file("instances.json", json!({"Reservations": [{"Instances": [inst]}]}));
    let out = import(&files, "t", "test").unwrap();
    let m = parse(&out.text, "x.toml").unwrap();
    let e = &m.elastic_ips[0];
    assert_eq!((e.id.as_str(), e.public_ip.to_string().as_str()), ("pubip-198-51-100-44", "198.51.100.44"));
    assert_eq!(m.enis[e.association.unwrap().0.index()].id, "eni-1");
    assert!(out.remarks.iter().any(|r| r.contains("AWS-assigned public IP 198.51.100.44")), "{:#?}", out.remarks);
}

#[test]
fn the_lab_name_is_the_one_asked_for() {
    let out = import(&small(), "mylab", "test").unwrap();
    assert_eq!(parse(&out.text, "x.toml").unwrap().name, "mylab");
}

#[test]
fn a_bad_value_names_the_file_the_element_and_the_field() {
    let mut files = small();
    files[1] = file(
        "subnets.json",
        json!({"Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1", "CidrBlock": "10.0.1.0/24"},
                           {"SubnetId": "subnet-2", "VpcId": "vpc-1", "CidrBlock": "10.0.2.0/24"},
                           {"SubnetId": "subnet-3", "VpcId": "vpc-1", "CidrBlock": "10.0.300.0/24"}]}),
    );
    assert_eq!(
        input_error(import(&files, "t", "test")),
        "subnets.json: Subnets[2].CidrBlock: `10.0.300.0/24` is not an IPv4 CIDR block"
    );
}

#[test]
fn bad_rules_macs_and_addresses_are_refused_with_their_path() {
    let cases = [
        (
            json!({"SecurityGroups": [{"GroupId": "sg-2", "VpcId": "vpc-1", "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 70000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}]}),
            "x.json: SecurityGroups[0].IpPermissions[0].ToPort: `70000` is not a port (0-65535)",
        ),
        (
            json!({"SecurityGroups": [{"GroupId": "sg-2", "VpcId": "vpc-1", "IpPermissionsEgress": [{"IpProtocol": "gre"}]}]}),
            "x.json: SecurityGroups[0].IpPermissionsEgress[0].IpProtocol: `gre` is not a protocol",
        ),
        (
            json!({"NetworkAcls": [{"NetworkAclId": "acl-1", "VpcId": "vpc-1", "Entries": [{"RuleNumber": 100, "Protocol": "-1", "RuleAction": "maybe", "Egress": false, "CidrBlock": "0.0.0.0/0"}]}]}),
            "x.json: NetworkAcls[0].Entries[0].RuleAction: `maybe` is neither allow nor deny",
        ),
        (
            json!({"NetworkAcls": [{"NetworkAclId": "acl-1", "VpcId": "vpc-1", "Entries": [{"RuleNumber": 0, "Protocol": "-1", "RuleAction": "allow", "Egress": true, "CidrBlock": "0.0.0.0/0"}]}]}),
            "x.json: NetworkAcls[0].Entries[0].RuleNumber: `0` is not a rule number (1-32766)",
        ),
        (
            json!({"NetworkInterfaces": [{"NetworkInterfaceId": "eni-2", "SubnetId": "subnet-1", "PrivateIpAddress": "10.0.1.30", "MacAddress": "02:zz:00:00:00:01"}]}),
            "x.json: NetworkInterfaces[0].MacAddress: `02:zz:00:00:00:01` is not a MAC address",
        ),
        (
            json!({"Addresses": [{"AllocationId": "eipalloc-1", "PublicIp": "203.0.113.999"}]}),
            "x.json: Addresses[0].PublicIp: `203.0.113.999` is not an IPv4 address",
        ),
        (
            json!({"NetworkInterfaces": [{"NetworkInterfaceId": "eni-2", "PrivateIpAddress": "10.0.1.30"}]}),
            "x.json: NetworkInterfaces[0]: missing field `SubnetId`",
        ),
        (json!({"Subnets": {"SubnetId": "subnet-9"}}), "x.json: Subnets: not a list"),
        (
            json!({"Vpcs": [{"VpcId": "vpc-2", "CidrBlock": 5}]}),
            "x.json: Vpcs[0].CidrBlock: invalid type: integer `5`, expected a string",
        ),
        (
            json!({"NetworkInterfaces": [{"NetworkInterfaceId": "eni-2", "SubnetId": "subnet-1", "PrivateIpAddress": "10.0.1.30",
                "Groups": [{"GroupId": "sg-1"}, {"GroupId": ["sg-x"]}]}]}),
            "x.json: NetworkInterfaces[0].Groups[1].GroupId: invalid type: sequence, expected a string",
        ),
        (
            json!({"Reservations": [{"Instances": [{"InstanceId": "i-2", "State": {"Code": 16}}]}]}),
            "x.json: Reservations[0].Instances[0].State: missing field `Name`",
        ),
        (
            json!({"NetworkAcls": [{"NetworkAclId": "acl-1", "VpcId": "vpc-1", "Entries": [
                {"RuleNumber": 100, "Protocol": "-1", "RuleAction": "allow", "Egress": false, "CidrBlock": "0.0.0.0/0"},
                {"RuleNumber": 110, "Protocol": "6", "RuleAction": "allow", "Egress": false, "CidrBlock": "0.0.0.0/0",
                 "PortRange": {"From": "80", "To": 80}}]}]}),
            "x.json: NetworkAcls[0].Entries[1].PortRange.From: invalid type: string \"80\", expected i64",
        ),
        (
            json!({"Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}]}),
            "x.json: Vpcs[0].VpcId: `vpc-1` is given twice",
        ),
    ];
    for (v, want) in cases {
        let got = input_error(small_with(vec![file("x.json", v)]));
        assert!(got.starts_with(want), "got `{got}`, want `{want}`");
    }
}

#[test]
fn a_file_that_is_not_describe_output_is_an_error_unless_it_was_found_in_a_folder() {
    let not_json = SourceFile { name: "notes.json".into(), text: "{ nope".into(), from_folder: true };
    let got = input_error(small_with(vec![not_json]));
    assert!(got.starts_with("notes.json: not the JSON object that `aws ec2 describe-*` prints"), "{got}");
    let other = json!({"VpcEndpoints": []});
    let got = input_error(small_with(vec![file("endpoints.json", other.clone())]));
    assert!(got.starts_with("endpoints.json: none of the top-level keys"), "{got}");
    assert!(got.ends_with("it has: VpcEndpoints"), "{got}");
    let found = SourceFile { name: "dir/endpoints.json".into(), text: other.to_string(), from_folder: true };
    let (out, _) = small_with(vec![found]).unwrap();
    assert!(out.not_carried.iter().any(|l| l.starts_with("dir/endpoints.json: not read: none of the top-level keys")));
}

#[test]
fn what_fails_validation_is_refused_with_the_validation_message() {
    // AWS would never hand out an address outside the subnet; validation catches it all the same.
    let mut files = small();
    files[3] =
        file("instances.json", json!({"Reservations": [{"Instances": [instance("i-1", "eni-1", "10.0.9.10")]}]}));
    match import(&files, "t", "test") {
        Err(ImportError::Invalid(e)) => assert!(e.to_string().contains("10.0.9.10"), "{e}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn a_file_over_the_bound_is_refused_naming_it() {
    let dir = std::env::temp_dir().join(format!("vpclab-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("huge.json");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_FILE_BYTES + 1).unwrap(); // sparse: costs no disk
    let got = input_error(import_paths(std::slice::from_ref(&big), "t"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(got, format!("{}: larger than 64 MiB: not describe-* output", big.display()));
}

#[test]
fn too_many_files_or_too_much_json_in_all_is_refused_before_reading() {
    let dir = std::env::temp_dir().join(format!("vpclab-import-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..=MAX_FILES {
        std::fs::write(dir.join(format!("{i:04}.json")), "").unwrap();
    }
    let many = input_error(import_paths(std::slice::from_ref(&dir), "t"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(many, format!("{}: more than {MAX_FILES} JSON files to read", dir.display()));

    std::fs::create_dir_all(&dir).unwrap();
    let per_file = MAX_FILE_BYTES - 1;
    for i in 0..=(MAX_TOTAL_BYTES / per_file) {
        let f = std::fs::File::create(dir.join(format!("{i}.json"))).unwrap();
        f.set_len(per_file).unwrap(); // sparse: costs no disk, and is never read
    }
    let much = input_error(import_paths(std::slice::from_ref(&dir), "t"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(much, format!("{}: more than 256 MiB of JSON in all", dir.display()));
}

#[test]
fn a_folder_is_read_file_by_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aws-json");
    let out = import_paths(&[dir], "demo").unwrap();
    let (from_texts, _) = imported_example();
    assert_eq!(out.not_carried, from_texts.not_carried);
    let body = |t: &str| t[t.find("name = ").unwrap()..].to_string();
    assert_eq!(body(&out.text), body(&from_texts.text));
}
