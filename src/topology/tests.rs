//! Tests of the topology format: the default lab and its filled-in defaults, then one test per
//! rejected mistake, each checking the message, the line and the field path.

use std::net::Ipv4Addr;

use super::*;
use crate::model::{AclAction, Mac, PortMatch, PortRange, Protocol, RouteTarget, SgPeer};

/// A minimal valid lab: one VPC, one subnet in az-a, one instance with its primary ENI.
const BASE: &str = r#"name = "t"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
availability_zone = "az-a"

[[instance]]
id = "i-a"

[[network_interface]]
id = "eni-a"
subnet = "subnet-a"
private_ip = "10.0.1.10"
attachment = { instance = "i-a", device_index = 0 }
"#;

/// A second VPC, for cross-VPC cases.
const VPC_B: &str = r#"
[[vpc]]
id = "vpc-b"
cidr = "10.1.0.0/16"

[[subnet]]
id = "subnet-b"
vpc = "vpc-b"
cidr = "10.1.1.0/24"
"#;

fn lab(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn ok(extra: &str) -> Model {
    match parse(&lab(extra), "t.toml") {
        Ok(m) => m,
        Err(e) => panic!("expected a valid lab, got:\n{e}"),
    }
}

fn problems(extra: &str) -> Vec<Problem> {
    match parse(&lab(extra), "t.toml") {
        Ok(_) => panic!("expected problems for:\n{extra}"),
        Err(e) => e.problems,
    }
}

/// The 1-based line of the last occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.rfind(needle).unwrap_or_else(|| panic!("`{needle}` not in the lab"));
    text[..at].matches('\n').count() + 1
}

/// Asserts the lab has exactly one problem, on the line of the last `needle`, at `field`, whose
/// message contains `message`.
fn rejects(extra: &str, needle: &str, field: &str, message: &str) {
    let ps = problems(extra);
    assert_eq!(ps.len(), 1, "expected one problem, got:\n{}", TopologyError { problems: ps.clone() });
    let p = &ps[0];
    assert_eq!(p.file, "t.toml");
    assert_eq!(p.field, field, "{p}");
    assert!(p.message.contains(message), "message `{}` lacks `{message}`", p.message);
    assert_eq!(p.line, line_of(&lab(extra), needle), "{p}");
}

// ---------------------------------------------------------------------------------------------
// The default lab and its defaults

#[test]
fn default_file_parses_with_aws_defaults() {
    let m = match parse(DEFAULT_TOPOLOGY, DEFAULT_TOPOLOGY_FILE) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(m.name, "demo");
    let sg = |id: &str| m.security_groups.iter().position(|g| g.id == id).expect("group exists");
    let eni = |id: &str| &m.enis[m.eni_by_id(id).expect("ENI exists").index()];

    // eni-web names sg-web; its EIP maps its primary address.
    assert_eq!(eni("eni-web").security_groups.iter().map(|g| g.index()).collect::<Vec<_>>(), vec![sg("sg-web")]);
    let web_eip = m.elastic_ips.iter().find(|e| e.id == "eipalloc-web").expect("EIP");
    assert_eq!(web_eip.association.map(|(_, ip)| ip), Some(Ipv4Addr::new(10, 0, 1, 10)));

    // eni-standby's MAC is generated from its id and stable; eni-app-float's is the given one.
    assert_eq!(eni("eni-standby").mac, Mac::generated("eni", "eni-standby"));
    assert_eq!(parse(DEFAULT_TOPOLOGY, "again").map(|m2| m2.enis[2].mac).ok(), Some(eni("eni-standby").mac));
    assert_eq!(eni("eni-app-float").mac.to_string(), "02:00:00:00:02:50");
    assert_eq!(eni("eni-app-float").attachment.map(|a| a.device_index), Some(1));
    assert!(eni("eni-web").source_dest_check);
    assert_eq!(eni("eni-web").connection_tracking, crate::model::ConntrackConfig::default());

    // subnet-public uses rtb-public: local route first, then the file's default route to the IGW.
    let public = &m.subnets[0];
    assert_eq!(public.id, "subnet-public");
    let rtb = &m.route_tables[public.route_table.index()];
    assert_eq!(rtb.id, "rtb-public");
    assert_eq!(rtb.routes[0].destination.to_string(), "10.0.0.0/16");
    assert_eq!(rtb.routes[0].target, RouteTarget::Local);
    assert_eq!(rtb.routes[1].destination.to_string(), "0.0.0.0/0");
    assert!(matches!(rtb.routes[1].target, RouteTarget::InternetGateway(_)));
    assert_eq!(m.route_tables[m.subnets[1].route_table.index()].routes.len(), 3);

    // The VPC's implicit objects.
    let vpc = &m.vpcs[0];
    assert_eq!(vpc.router_mac, Mac::generated("vpc-router", "vpc-main"));
    assert_eq!(m.route_tables[vpc.main_route_table.index()].id, "vpc-main/main");
    let dacl = &m.network_acls[vpc.default_network_acl.index()];
    assert_eq!(dacl.id, "vpc-main/default-acl");
    assert_eq!((dacl.ingress[0].number, dacl.ingress[0].action), (100, AclAction::Allow));
    assert_eq!(dacl.egress.len(), 1);
    // subnet-private names no ACL: the default one.
    assert_eq!(m.subnets[1].network_acl, vpc.default_network_acl);
    let dsg = &m.security_groups[vpc.default_security_group.index()];
    assert_eq!(dsg.id, "vpc-main/default");
    assert_eq!(dsg.ingress.len(), 1);
    assert_eq!(dsg.ingress[0].protocol, Protocol::All);
    assert_eq!(dsg.ingress[0].peer, SgPeer::Group(vpc.default_security_group));
    assert_eq!(dsg.egress.len(), 1);
    assert_eq!(dsg.egress[0].peer, SgPeer::Cidr("0.0.0.0/0".parse().expect("cidr")));

    // sg-web: egress left out = allow all; its ICMP rule has a type and all codes.
    let web = &m.security_groups[sg("sg-web")];
    assert_eq!(web.egress.len(), 1);
    assert_eq!(web.ingress[0].ports, PortMatch::Ports(PortRange { from: 80, to: 80 }));
    assert_eq!(web.ingress[1].ports, PortMatch::Icmp { icmp_type: Some(8), icmp_code: None });
    // sg-app's first rule names sg-web.
    assert_eq!(
        m.security_groups[sg("sg-app")].ingress[0].peer,
        SgPeer::Group(crate::model::SgIdx(sg("sg-web") as u32))
    );

    // The NAT gateway keeps its given address and EIP.
    assert_eq!(m.nat_gateways[0].private_ip, Ipv4Addr::new(10, 0, 1, 100));
    assert!(m.nat_gateways[0].elastic_ip.is_some());
    assert_eq!(m.internet_hosts[0].ip, Ipv4Addr::new(198, 51, 100, 7));
}

#[test]
fn minimal_lab_gets_defaults() {
    let m = ok("");
    assert_eq!(m.enis[0].security_groups, vec![m.vpcs[0].default_security_group]);
    assert_eq!(m.enis[0].mac, Mac::generated("eni", "eni-a"));
    assert_eq!(m.subnets[0].route_table, m.vpcs[0].main_route_table);
    assert_eq!(m.route_tables.len(), 1);
    assert_eq!(m.route_tables[0].routes.len(), 1);
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("vpclab-topology-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("lab.toml");
    std::fs::write(&path, BASE).expect("write");
    assert!(load(&path).is_ok());
    let _ = std::fs::remove_file(&path);
    let err = load(&path).expect_err("file is gone");
    assert!(err.to_string().contains("cannot read the topology file"), "{err}");
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn display_is_file_line_field_message() {
    let p = Problem { file: "f.toml".into(), line: 3, field: "name".into(), message: "bad".into() };
    assert_eq!(p.to_string(), "f.toml:3: name: bad");
    let e = TopologyError { problems: vec![p.clone(), p] };
    assert_eq!(e.to_string(), "f.toml:3: name: bad\nf.toml:3: name: bad");
}

// ---------------------------------------------------------------------------------------------
// TOML-level mistakes

#[test]
fn unknown_field_is_named() {
    rejects(
        "\n[[route_table]]\nid = \"r\"\nvpc = \"vpc-a\"\nroutez = []\n",
        "routez",
        "route_table \"r\".routez",
        "unknown field `routez`",
    );
}

#[test]
fn unknown_field_inside_inline_table() {
    let extra = "\n[[route_table]]\nid = \"r\"\nvpc = \"vpc-a\"\nroutes = [\n  { destination = \"0.0.0.0/0\", targt = \"blackhole\" },\n]\n";
    rejects(extra, "targt", "route_table \"r\".routes.targt", "unknown field `targt`");
}

#[test]
fn wrong_type_is_reported_with_line() {
    rejects(
        "\n[[instance]]\nid = \"i-b\"\ninstance_type = 3\n",
        "= 3",
        "instance \"i-b\".instance_type",
        "invalid type",
    );
}

#[test]
fn toml_syntax_error() {
    let ps = problems("\n[[instance]\nid = \"x\"\n");
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].line, line_of(&lab("\n[[instance]\n"), "[[instance]\n"));
}

#[test]
fn missing_required_field() {
    let ps = problems("\n[[subnet]]\nid = \"subnet-x\"\nvpc = \"vpc-a\"\n");
    assert_eq!(ps.len(), 1);
    assert!(ps[0].message.contains("missing field `cidr`"), "{}", ps[0]);
    assert!(ps[0].field.starts_with("subnet \"subnet-x\""), "{}", ps[0]);
}

// ---------------------------------------------------------------------------------------------
// Name and ids

#[test]
fn bad_lab_name() {
    let text = BASE.replacen("name = \"t\"", "name = \"Lab_1\"", 1);
    let ps = parse(&text, "t.toml").expect_err("bad name").problems;
    assert_eq!((ps[0].line, ps[0].field.as_str()), (1, "name"));
    assert!(ps[0].message.contains("is not a lab name"));
    // A dash would let two labs need one namespace: lab `a` + instance `b-web`, lab `a-b` + `web`.
    let text = BASE.replacen("name = \"t\"", "name = \"a-b\"", 1);
    let ps = parse(&text, "t.toml").expect_err("dash in name").problems;
    assert!(ps[0].message.contains("no `-`"), "{}", ps[0].message);
    assert!(parse(&BASE.replacen("name = \"t\"", "name = \"lab_2\"", 1), "t.toml").is_ok());
    let text = BASE.replacen("name = \"t\"", "", 1);
    let ps = parse(&text, "t.toml").expect_err("no name").problems;
    assert!(ps[0].message.contains("needs a `name`"));
}

#[test]
fn duplicate_id_across_kinds() {
    rejects(
        "\n[[security_group]]\nid = \"subnet-a\"\nvpc = \"vpc-a\"\n",
        "id = \"subnet-a\"",
        "security_group \"subnet-a\".id",
        "duplicate id `subnet-a`: already the id of a subnet on line 8",
    );
}

#[test]
fn missing_reference() {
    let extra = "\n[[network_interface]]\nid = \"eni-b\"\nsubnet = \"subnet-nope\"\nprivate_ip = \"10.0.1.20\"\n";
    rejects(extra, "subnet-nope", "network_interface \"eni-b\".subnet", "`subnet-nope` does not exist");
}

#[test]
fn reference_to_wrong_kind() {
    let extra = "\n[[security_group]]\nid = \"sg-web\"\nvpc = \"vpc-a\"\n\n[[network_interface]]\nid = \"eni-b\"\nsubnet = \"sg-web\"\nprivate_ip = \"10.0.1.20\"\n";
    rejects(
        extra,
        "subnet = \"sg-web\"",
        "network_interface \"eni-b\".subnet",
        "`sg-web` is a security group, not a subnet",
    );
}

// ---------------------------------------------------------------------------------------------
// CIDRs and subnets

#[test]
fn host_bits_set() {
    let extra = "\n[[subnet]]\nid = \"subnet-b\"\nvpc = \"vpc-a\"\ncidr = \"10.0.2.5/24\"\n";
    rejects(extra, "10.0.2.5/24", "subnet \"subnet-b\".cidr", "has host bits set: did you mean 10.0.2.0/24?");
}

#[test]
fn overlapping_subnets() {
    let extra = "\n[[subnet]]\nid = \"subnet-b\"\nvpc = \"vpc-a\"\ncidr = \"10.0.1.128/25\"\n";
    rejects(
        extra,
        "10.0.1.128/25",
        "subnet \"subnet-b\".cidr",
        "overlaps subnet `subnet-a` (10.0.1.0/24) in the same VPC",
    );
}

#[test]
fn subnets_of_different_vpcs_may_overlap() {
    let m = ok("\n[[vpc]]\nid = \"vpc-b\"\ncidr = \"10.0.0.0/16\"\n\n[[subnet]]\nid = \"subnet-b\"\nvpc = \"vpc-b\"\ncidr = \"10.0.1.0/24\"\n");
    assert_eq!(m.subnets.len(), 2);
}

#[test]
fn subnet_outside_vpc() {
    let extra = "\n[[subnet]]\nid = \"subnet-b\"\nvpc = \"vpc-a\"\ncidr = \"10.9.0.0/24\"\n";
    rejects(extra, "10.9.0.0/24", "subnet \"subnet-b\".cidr", "is outside VPC `vpc-a`'s CIDR block 10.0.0.0/16");
}

#[test]
fn subnet_prefix_outside_16_to_28() {
    let extra = "\n[[subnet]]\nid = \"subnet-b\"\nvpc = \"vpc-a\"\ncidr = \"10.0.2.0/29\"\n";
    rejects(extra, "10.0.2.0/29", "subnet \"subnet-b\".cidr", "a subnet CIDR block must be /16 to /28");
}

#[test]
fn vpc_prefix_outside_16_to_28() {
    rejects(
        "\n[[vpc]]\nid = \"vpc-b\"\ncidr = \"10.0.0.0/8\"\n",
        "10.0.0.0/8",
        "vpc \"vpc-b\".cidr",
        "a VPC CIDR block must be /16 to /28",
    );
}

// ---------------------------------------------------------------------------------------------
// ENIs

fn eni_b(ip: &str) -> String {
    format!("\n[[network_interface]]\nid = \"eni-b\"\nsubnet = \"subnet-a\"\nprivate_ip = \"{ip}\"\n")
}

#[test]
fn eni_address_outside_subnet() {
    rejects(
        &eni_b("10.0.2.10"),
        "10.0.2.10",
        "network_interface \"eni-b\".private_ip",
        "10.0.2.10 is outside subnet `subnet-a` (10.0.1.0/24)",
    );
}

#[test]
fn eni_address_reserved_says_which() {
    for (ip, role) in [
        ("10.0.1.0", "the network address"),
        ("10.0.1.1", "the VPC router's address"),
        ("10.0.1.2", "the Amazon DNS server's address"),
        ("10.0.1.3", "reserved by AWS for future use"),
        ("10.0.1.255", "the broadcast address"),
    ] {
        rejects(&eni_b(ip), &format!("\"{ip}\""), "network_interface \"eni-b\".private_ip", role);
    }
    assert!(problems(&eni_b("10.0.1.1"))[0].message.contains("one of the five addresses AWS reserves"));
}

#[test]
fn duplicate_private_ip() {
    rejects(
        &eni_b("10.0.1.10"),
        "10.0.1.10",
        "network_interface \"eni-b\".private_ip",
        "10.0.1.10 is already used by network interface `eni-a`",
    );
}

#[test]
fn duplicate_secondary_ip() {
    let extra = format!("{}secondary_private_ips = [\"10.0.1.21\", \"10.0.1.21\"]\n", eni_b("10.0.1.20"));
    let ps = problems(&extra);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].field, "network_interface \"eni-b\".secondary_private_ips[1]");
    assert!(ps[0].message.contains("already used by network interface `eni-b`"));
}

#[test]
fn nat_gateway_ip_taken_by_eni() {
    let extra = "\n[[nat_gateway]]\nid = \"nat-a\"\nsubnet = \"subnet-a\"\nprivate_ip = \"10.0.1.10\"\n";
    rejects(extra, "\"10.0.1.10\"", "nat_gateway \"nat-a\".private_ip", "already used by network interface `eni-a`");
}

#[test]
fn duplicate_given_macs() {
    let extra = format!(
        "\n[[network_interface]]\nid = \"eni-b\"\nsubnet = \"subnet-a\"\nprivate_ip = \"10.0.1.20\"\nmac_address = \"02:00:00:00:00:01\"\n{}mac_address = \"02:00:00:00:00:01\"\n",
        eni_b("10.0.1.21").replace("eni-b", "eni-c")
    );
    rejects(
        &extra,
        "02:00:00:00:00:01",
        "network_interface \"eni-c\".mac_address",
        "MAC address 02:00:00:00:00:01 is already used by network interface `eni-b`",
    );
}

#[test]
fn given_mac_equal_to_generated_or_router_mac() {
    let generated = Mac::generated("eni", "eni-a");
    let extra = format!("{}mac_address = \"{generated}\"\n", eni_b("10.0.1.20"));
    rejects(
        &extra,
        &generated.to_string(),
        "network_interface \"eni-b\".mac_address",
        "is already used by network interface `eni-a`",
    );
    let router = Mac::generated("vpc-router", "vpc-a");
    let extra = format!("{}mac_address = \"{router}\"\n", eni_b("10.0.1.20"));
    rejects(
        &extra,
        &router.to_string(),
        "network_interface \"eni-b\".mac_address",
        "is already used by the router of VPC `vpc-a`",
    );
}

#[test]
fn multicast_mac_rejected() {
    let extra = format!("{}mac_address = \"01:00:5e:00:00:01\"\n", eni_b("10.0.1.20"));
    rejects(&extra, "01:00:5e", "network_interface \"eni-b\".mac_address", "is not a unicast address");
}

#[test]
fn eni_group_in_another_vpc() {
    let extra = format!(
        "{VPC_B}\n[[security_group]]\nid = \"sg-b\"\nvpc = \"vpc-b\"\n{}security_groups = [\"sg-b\"]\n",
        eni_b("10.0.1.20")
    );
    rejects(
        &extra,
        "[\"sg-b\"]",
        "network_interface \"eni-b\".security_groups[0]",
        "security group `sg-b` is in VPC `vpc-b`, but network interface `eni-b` is in VPC `vpc-a`",
    );
}

#[test]
fn more_than_five_groups() {
    let mut extra = String::new();
    for i in 0..6 {
        extra.push_str(&format!("\n[[security_group]]\nid = \"sg-{i}\"\nvpc = \"vpc-a\"\n"));
    }
    extra.push_str(&eni_b("10.0.1.20"));
    extra.push_str("security_groups = [\"sg-0\", \"sg-1\", \"sg-2\", \"sg-3\", \"sg-4\", \"sg-5\"]\n");
    rejects(
        &extra,
        "security_groups = ",
        "network_interface \"eni-b\".security_groups",
        "at most 5 security groups; 6 are listed",
    );
}

#[test]
fn conntrack_timeout_out_of_range() {
    let extra = format!("{}connection_tracking = {{ udp_timeout = 90 }}\n", eni_b("10.0.1.20"));
    rejects(
        &extra,
        "udp_timeout = 90",
        "network_interface \"eni-b\".connection_tracking.udp_timeout",
        "must be 30 to 60, got 90",
    );
    let m = ok(&format!("{}connection_tracking = {{ tcp_established_timeout = 3600 }}\n", eni_b("10.0.1.20")));
    assert_eq!(m.enis[1].connection_tracking.tcp_established, 3600);
    assert_eq!(m.enis[1].connection_tracking.udp, 30);
    let m = ok(&format!("{}connection_tracking = {{ max_connections = 3 }}\n", eni_b("10.0.1.20")));
    assert_eq!(m.enis[1].connection_tracking.max_connections, 3);
    let text = format!("{BASE}{}connection_tracking = {{ max_connections = 0 }}\n", eni_b("10.0.1.20"));
    let ps = parse(&text, "t.toml").expect_err("zero connections").problems;
    assert!(ps[0].field.ends_with("connection_tracking.max_connections"), "{}", ps[0]);
}

// ---------------------------------------------------------------------------------------------
// Instances and attachments

#[test]
fn same_device_index_twice() {
    let extra = format!("{}attachment = {{ instance = \"i-a\", device_index = 0 }}\n", eni_b("10.0.1.20"));
    rejects(
        &extra,
        "device_index = 0 }\n",
        "network_interface \"eni-b\".attachment.device_index",
        "device index 0 of instance `i-a` is already taken by network interface `eni-a`",
    );
}

#[test]
fn instance_without_primary_eni() {
    let extra = format!(
        "\n[[instance]]\nid = \"i-b\"\n{}attachment = {{ instance = \"i-b\", device_index = 1 }}\n",
        eni_b("10.0.1.20")
    );
    rejects(&extra, "id = \"i-b\"", "instance \"i-b\".id", "instance `i-b` has no network interface at device index 0");
}

#[test]
fn instance_state_is_running_or_stopped() {
    assert_eq!(ok("").instances[0].state, crate::model::InstanceState::Running);
    let text = BASE.replacen("id = \"i-a\"\n", "id = \"i-a\"\nstate = \"stopped\"\n", 1);
    assert_eq!(parse(&text, "t.toml").map(|m| m.instances[0].state), Ok(crate::model::InstanceState::Stopped));
    for bad in ["paused", "Stopped", "terminated", ""] {
        let text = BASE.replacen("id = \"i-a\"\n", &format!("id = \"i-a\"\nstate = \"{bad}\"\n"), 1);
        let ps = parse(&text, "t.toml").expect_err("not a state").problems;
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert_eq!((ps[0].line, ps[0].field.as_str()), (line_of(&text, "state ="), "instance \"i-a\".state"));
        assert!(ps[0].message.contains(&format!("state `{bad}` is not an instance state")), "{}", ps[0].message);
    }
    let text = BASE.replacen("id = \"i-a\"\n", "id = \"i-a\"\nstate = 1\n", 1);
    let ps = parse(&text, "t.toml").expect_err("not a string").problems;
    assert_eq!(ps[0].field, "instance \"i-a\".state", "{ps:?}");
}

#[test]
fn delete_on_termination_defaults_to_true_at_device_index_0_only() {
    let second = format!("{}attachment = {{ instance = \"i-a\", device_index = 1 }}\n", eni_b("10.0.1.20"));
    let m = ok(&second);
    let dot = |m: &Model, i: usize| m.enis[i].attachment.map(|a| a.delete_on_termination);
    assert_eq!((dot(&m, 0), dot(&m, 1)), (Some(true), Some(false)));
    let m = ok(&second.replace("device_index = 1 }", "device_index = 1, delete_on_termination = true }"));
    assert_eq!(dot(&m, 1), Some(true));
    let text = BASE.replace("device_index = 0 }", "device_index = 0, delete_on_termination = false }");
    assert_eq!(parse(&text, "t.toml").map(|m| dot(&m, 0)), Ok(Some(false)));
    rejects(
        &second.replace("device_index = 1 }", "device_index = 1, delete_on_termination = \"yes\" }"),
        "\"yes\"",
        "network_interface \"eni-b\".attachment.delete_on_termination",
        "invalid type",
    );
}

#[test]
fn unknown_instance_type() {
    let text = BASE.replacen("id = \"i-a\"\n", "id = \"i-a\"\ninstance_type = \"t9.huge\"\n", 1);
    let ps = parse(&text, "t.toml").expect_err("unknown type").problems;
    assert_eq!(ps.len(), 1);
    assert_eq!((ps[0].line, ps[0].field.as_str()), (line_of(&text, "t9.huge"), "instance \"i-a\".instance_type"));
    assert!(ps[0].message.contains("unknown instance type `t9.huge`"));
}

#[test]
fn too_many_enis_for_type() {
    let text = BASE.replacen("id = \"i-a\"\n", "id = \"i-a\"\ninstance_type = \"t2.micro\"\n", 1);
    let mut extra = String::new();
    for (k, ip) in ["10.0.1.20", "10.0.1.21"].iter().enumerate() {
        extra.push_str(&eni_b(ip).replace("eni-b", &format!("eni-x{k}")));
        extra.push_str(&format!("attachment = {{ instance = \"i-a\", device_index = {} }}\n", k + 1));
    }
    let text = format!("{text}{extra}");
    let ps = parse(&text, "t.toml").expect_err("3 ENIs on t2.micro").problems;
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!((ps[0].line, ps[0].field.as_str()), (line_of(&text, "t2.micro"), "instance \"i-a\".instance_type"));
    assert!(ps[0].message.contains("t2.micro allows at most 2 network interfaces; instance `i-a` has 3"), "{}", ps[0]);
}

#[test]
fn too_many_ips_per_eni_for_type() {
    let text = BASE.replacen("id = \"i-a\"\n", "id = \"i-a\"\ninstance_type = \"t3.nano\"\n", 1).replacen(
        "private_ip = \"10.0.1.10\"\n",
        "private_ip = \"10.0.1.10\"\nsecondary_private_ips = [\"10.0.1.11\", \"10.0.1.12\"]\n",
        1,
    );
    let ps = parse(&text, "t.toml").expect_err("3 IPs on t3.nano").problems;
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(
        (ps[0].line, ps[0].field.as_str()),
        (line_of(&text, "10.0.1.12"), "network_interface \"eni-a\".secondary_private_ips[1]")
    );
    assert!(ps[0]
        .message
        .contains("t3.nano allows 2 IPv4 addresses per network interface; `eni-a` (attached to instance `i-a`) has 3"));
}

#[test]
fn eni_in_another_availability_zone() {
    let extra = format!(
        "\n[[subnet]]\nid = \"subnet-z\"\nvpc = \"vpc-a\"\ncidr = \"10.0.9.0/24\"\navailability_zone = \"az-b\"\n{}attachment = {{ instance = \"i-a\", device_index = 1 }}\n",
        eni_b("10.0.9.10").replace("subnet-a", "subnet-z")
    );
    rejects(
        &extra,
        "instance = \"i-a\", device_index = 1",
        "network_interface \"eni-b\".attachment.instance",
        "is in availability zone az-b (subnet `subnet-z`), but instance `i-a` is in az-a",
    );
}

// ---------------------------------------------------------------------------------------------
// Route tables, network ACLs, security groups

#[test]
fn subnet_route_table_in_another_vpc() {
    let extra = format!("{VPC_B}\n[[route_table]]\nid = \"rtb-b\"\nvpc = \"vpc-b\"\n\n[[subnet]]\nid = \"subnet-c\"\nvpc = \"vpc-a\"\ncidr = \"10.0.3.0/24\"\nroute_table = \"rtb-b\"\n");
    rejects(
        &extra,
        "route_table = \"rtb-b\"",
        "subnet \"subnet-c\".route_table",
        "route table `rtb-b` is in VPC `vpc-b`, but subnet `subnet-c` is in VPC `vpc-a`",
    );
}

#[test]
fn subnet_acl_in_another_vpc() {
    let extra = format!("{VPC_B}\n[[network_acl]]\nid = \"acl-b\"\nvpc = \"vpc-b\"\n\n[[subnet]]\nid = \"subnet-c\"\nvpc = \"vpc-a\"\ncidr = \"10.0.3.0/24\"\nnetwork_acl = \"acl-b\"\n");
    rejects(
        &extra,
        "network_acl = \"acl-b\"",
        "subnet \"subnet-c\".network_acl",
        "network ACL `acl-b` is in VPC `vpc-b`, but subnet `subnet-c` is in VPC `vpc-a`",
    );
}

fn rtb(routes: &str) -> String {
    format!("\n[[internet_gateway]]\nid = \"igw-a\"\nvpc = \"vpc-a\"\n\n[[route_table]]\nid = \"rtb-a\"\nvpc = \"vpc-a\"\nroutes = [\n{routes}]\n")
}

#[test]
fn routes_resolve_targets() {
    let m = ok(&rtb("  { destination = \"0.0.0.0/0\", target = \"igw-a\" },\n  { destination = \"10.9.0.0/16\", target = \"eni-a\" },\n  { destination = \"192.0.2.0/24\", target = \"blackhole\" },\n"));
    let t = &m.route_tables[0];
    assert_eq!(t.routes.len(), 4);
    assert_eq!(t.routes[0].target, RouteTarget::Local);
    assert!(matches!(t.routes[2].target, RouteTarget::Eni(e) if e.index() == 0));
    assert_eq!(t.routes[3].target, RouteTarget::Blackhole);
}

#[test]
fn route_to_reserved_range() {
    rejects(
        &rtb("  { destination = \"169.254.169.0/24\", target = \"igw-a\" },\n"),
        "169.254.169.0/24",
        "route_table \"rtb-a\".routes[0].destination",
        "routes to 169.254.168.0/22 (or inside it) cannot be added",
    );
}

#[test]
fn duplicate_route_destination() {
    let r = "  { destination = \"0.0.0.0/0\", target = \"igw-a\" },\n  { destination = \"0.0.0.0/0\", target = \"blackhole\" },\n";
    rejects(
        &rtb(r),
        "\"0.0.0.0/0\", target = \"blackhole\"",
        "route_table \"rtb-a\".routes[1].destination",
        "destination 0.0.0.0/0 is already routed",
    );
    rejects(
        &rtb("  { destination = \"10.0.0.0/16\", target = \"eni-a\" },\n"),
        "\"10.0.0.0/16\", target",
        "route_table \"rtb-a\".routes[0].destination",
        "already routed by the local route",
    );
}

#[test]
fn route_target_of_wrong_kind_or_missing() {
    rejects(
        &rtb("  { destination = \"0.0.0.0/0\", target = \"subnet-a\" },\n"),
        "target = \"subnet-a\"",
        "route_table \"rtb-a\".routes[0].target",
        "`subnet-a` is a subnet, not a route target",
    );
    rejects(
        &rtb("  { destination = \"0.0.0.0/0\", target = \"igw-zz\" },\n"),
        "igw-zz",
        "route_table \"rtb-a\".routes[0].target",
        "`igw-zz` does not exist",
    );
}

#[test]
fn route_target_in_another_vpc() {
    let extra = format!(
        "{VPC_B}\n[[internet_gateway]]\nid = \"igw-b\"\nvpc = \"vpc-b\"\n{}",
        rtb("  { destination = \"0.0.0.0/0\", target = \"igw-b\" },\n")
    );
    rejects(
        &extra,
        "target = \"igw-b\"",
        "route_table \"rtb-a\".routes[0].target",
        "`igw-b` is in VPC `vpc-b`, not this table's VPC `vpc-a`",
    );
}

#[test]
fn too_many_routes() {
    let routes: String =
        (0..50).map(|i| format!("  {{ destination = \"192.168.{i}.0/24\", target = \"blackhole\" }},\n")).collect();
    rejects(
        &rtb(&routes),
        "routes = [",
        "route_table \"rtb-a\".routes",
        "at most 50 routes, the local route included; this one has 51",
    );
}

#[test]
fn peering_rules() {
    let peer = "\n[[vpc_peering]]\nid = \"pcx-ab\"\nrequester_vpc = \"vpc-a\"\naccepter_vpc = \"vpc-b\"\n";
    let m = ok(&format!("{VPC_B}{peer}{}", rtb("  { destination = \"10.1.0.0/16\", target = \"pcx-ab\" },\n")));
    assert!(matches!(m.route_tables[0].routes[1].target, RouteTarget::Peering(_)));
    rejects(
        &format!("{VPC_B}{peer}{}", peer.replace("pcx-ab", "pcx-again")),
        "accepter_vpc = \"vpc-b\"",
        "vpc_peering \"pcx-again\".accepter_vpc",
        "already peered by `pcx-ab`",
    );
    rejects(
        "\n[[vpc_peering]]\nid = \"pcx-self\"\nrequester_vpc = \"vpc-a\"\naccepter_vpc = \"vpc-a\"\n",
        "accepter_vpc",
        "vpc_peering \"pcx-self\".accepter_vpc",
        "cannot be peered with itself",
    );
    let overlapping = VPC_B.replace("10.1.0.0/16", "10.0.0.0/16").replace("10.1.1.0/24", "10.0.1.0/24");
    rejects(
        &format!("{overlapping}{peer}"),
        "accepter_vpc",
        "vpc_peering \"pcx-ab\".accepter_vpc",
        "overlapping CIDR blocks cannot be peered",
    );
}

#[test]
fn peering_route_from_an_uninvolved_vpc() {
    let vpc_c = "\n[[vpc]]\nid = \"vpc-c\"\ncidr = \"10.2.0.0/16\"\n";
    let extra = format!(
        "{VPC_B}{vpc_c}\n[[vpc_peering]]\nid = \"pcx-bc\"\nrequester_vpc = \"vpc-b\"\naccepter_vpc = \"vpc-c\"\n{}",
        rtb("  { destination = \"10.2.0.0/16\", target = \"pcx-bc\" },\n")
    );
    rejects(
        &extra,
        "target = \"pcx-bc\"",
        "route_table \"rtb-a\".routes[0].target",
        "joins `vpc-b` and `vpc-c`, not this table's VPC `vpc-a`",
    );
}

#[test]
fn second_internet_gateway() {
    let extra = "\n[[internet_gateway]]\nid = \"igw-1\"\nvpc = \"vpc-a\"\n\n[[internet_gateway]]\nid = \"igw-2\"\nvpc = \"vpc-a\"\n";
    rejects(extra, "vpc = \"vpc-a\"", "internet_gateway \"igw-2\".vpc", "already has internet gateway `igw-1`");
}

fn acl(ingress: &str) -> String {
    format!("\n[[network_acl]]\nid = \"acl-a\"\nvpc = \"vpc-a\"\ningress = [\n{ingress}]\n")
}

#[test]
fn acl_rules_sorted_and_custom_acl_denies_all() {
    let m = ok(&acl("  { rule = 200, protocol = \"udp\", ports = 53, cidr = \"0.0.0.0/0\", action = \"deny\" },\n  { rule = 100, protocol = 6, ports = \"22\", cidr = \"10.0.0.0/8\", action = \"allow\" },\n"));
    let a = &m.network_acls[0];
    assert_eq!(a.ingress.iter().map(|r| r.number).collect::<Vec<_>>(), vec![100, 200]);
    assert_eq!(a.ingress[1].action, AclAction::Deny);
    assert_eq!(a.ingress[1].ports, PortMatch::Ports(PortRange { from: 53, to: 53 }));
    assert!(a.egress.is_empty());
    let m = ok("\n[[network_acl]]\nid = \"acl-empty\"\nvpc = \"vpc-a\"\n");
    assert!(m.network_acls[0].ingress.is_empty() && m.network_acls[0].egress.is_empty());
}

#[test]
fn acl_rule_number_range_and_duplicates() {
    rejects(
        &acl("  { rule = 32767, protocol = \"all\", cidr = \"0.0.0.0/0\", action = \"deny\" },\n"),
        "32767",
        "network_acl \"acl-a\".ingress[0].rule",
        "must be 1 to 32766",
    );
    let dup = "  { rule = 100, protocol = \"all\", cidr = \"0.0.0.0/0\", action = \"deny\" },\n  { rule = 100, protocol = \"tcp\", cidr = \"0.0.0.0/0\", action = \"allow\" },\n";
    rejects(
        &acl(dup),
        "rule = 100, protocol = \"tcp\"",
        "network_acl \"acl-a\".ingress[1].rule",
        "rule number 100 is already used in ingress",
    );
}

#[test]
fn acl_quota() {
    let rules: String = (1..=21)
        .map(|i| format!("  {{ rule = {i}, protocol = \"all\", cidr = \"0.0.0.0/0\", action = \"deny\" }},\n"))
        .collect();
    rejects(&acl(&rules), "ingress = [", "network_acl \"acl-a\".ingress", "at most 20 ingress rules; this one has 21");
}

#[test]
fn acl_bad_action_and_protocol() {
    rejects(
        &acl("  { rule = 1, protocol = \"all\", cidr = \"0.0.0.0/0\", action = \"permit\" },\n"),
        "permit",
        "network_acl \"acl-a\".ingress[0].action",
        "`permit` is not an action",
    );
    rejects(
        &acl("  { rule = 1, protocol = \"tpc\", cidr = \"0.0.0.0/0\", action = \"allow\" },\n"),
        "tpc",
        "network_acl \"acl-a\".ingress[0].protocol",
        "`tpc` is not a protocol",
    );
}

fn sg(body: &str) -> String {
    format!("\n[[security_group]]\nid = \"sg-a\"\nvpc = \"vpc-a\"\n{body}")
}

#[test]
fn security_group_egress_default_and_empty() {
    let m = ok(&sg(""));
    assert_eq!(m.security_groups[0].egress.len(), 1);
    assert!(m.security_groups[0].ingress.is_empty());
    let m = ok(&sg("egress = []\n"));
    assert!(m.security_groups[0].egress.is_empty());
    let m = ok(&sg(
        "ingress = [ { protocol = \"-1\", source = \"vpc-a/default\" }, { protocol = 47, source = \"10.0.0.0/8\" } ]\n",
    ));
    assert_eq!(m.security_groups[0].ingress[0].peer, SgPeer::Group(m.vpcs[0].default_security_group));
    assert_eq!(m.security_groups[0].ingress[1].protocol, Protocol::Number(crate::packet::IpProto(47)));
    assert_eq!(m.security_groups[0].ingress[1].ports, PortMatch::Any);
}

#[test]
fn security_group_ports_only_for_tcp_udp() {
    rejects(
        &sg("ingress = [ { protocol = \"icmp\", ports = \"80\", source = \"0.0.0.0/0\" } ]\n"),
        "ports",
        "security_group \"sg-a\".ingress[0].ports",
        "ports apply only to protocol tcp or udp",
    );
    rejects(
        &sg("ingress = [ { protocol = \"tcp\", icmp_type = 8, source = \"0.0.0.0/0\" } ]\n"),
        "icmp_type",
        "security_group \"sg-a\".ingress[0].icmp_type",
        "applies only to protocol icmp",
    );
    rejects(
        &sg("ingress = [ { protocol = \"tcp\", ports = \"90-80\", source = \"0.0.0.0/0\" } ]\n"),
        "90-80",
        "security_group \"sg-a\".ingress[0].ports",
        "is not a port range",
    );
}

#[test]
fn security_group_source_and_destination() {
    rejects(
        &sg("ingress = [ { protocol = \"all\", destination = \"0.0.0.0/0\" } ]\n"),
        "destination",
        "security_group \"sg-a\".ingress[0].destination",
        "an ingress rule names its `source`, not a `destination`",
    );
    rejects(
        &sg("egress = [ { protocol = \"all\" } ]\n"),
        "protocol = \"all\"",
        "security_group \"sg-a\".egress[0].destination",
        "an egress rule needs a `destination`",
    );
    rejects(
        &sg("ingress = [ { protocol = \"all\", source = \"eni-a\" } ]\n"),
        "\"eni-a\" }",
        "security_group \"sg-a\".ingress[0].source",
        "`eni-a` is a network interface, not a security group",
    );
}

#[test]
fn security_group_reference_across_vpcs_needs_peering() {
    let other = format!("{VPC_B}\n[[security_group]]\nid = \"sg-b\"\nvpc = \"vpc-b\"\n");
    let body = "ingress = [ { protocol = \"tcp\", ports = \"443\", source = \"sg-b\" } ]\n";
    rejects(
        &format!("{other}{}", sg(body)),
        "source = \"sg-b\"",
        "security_group \"sg-a\".ingress[0].source",
        "neither this group's VPC `vpc-a` nor peered with it",
    );
    let peer = "\n[[vpc_peering]]\nid = \"pcx-ab\"\nrequester_vpc = \"vpc-a\"\naccepter_vpc = \"vpc-b\"\n";
    ok(&format!("{other}{peer}{}", sg(body)));
}

#[test]
fn security_group_quota() {
    let rules: Vec<String> =
        (0..61).map(|i| format!("{{ protocol = \"tcp\", ports = {}, source = \"0.0.0.0/0\" }}", 1000 + i)).collect();
    rejects(
        &sg(&format!("ingress = [ {} ]\n", rules.join(", "))),
        "ingress = [",
        "security_group \"sg-a\".ingress",
        "at most 60 ingress rules; this one has 61",
    );
}

// ---------------------------------------------------------------------------------------------
// Elastic IPs, NAT gateways, the internet

#[test]
fn elastic_ip_rules() {
    let m = ok("\n[[elastic_ip]]\nid = \"eip-a\"\npublic_ip = \"203.0.113.1\"\nnetwork_interface = \"eni-a\"\n");
    assert_eq!(m.elastic_ips[0].association, Some((crate::model::EniIdx(0), Ipv4Addr::new(10, 0, 1, 10))));
    rejects(
        "\n[[elastic_ip]]\nid = \"eip-a\"\npublic_ip = \"10.0.5.5\"\n",
        "10.0.5.5",
        "elastic_ip \"eip-a\".public_ip",
        "inside VPC `vpc-a`'s CIDR block 10.0.0.0/16",
    );
    rejects("\n[[elastic_ip]]\nid = \"eip-a\"\npublic_ip = \"203.0.113.1\"\nnetwork_interface = \"eni-a\"\nprivate_ip = \"10.0.1.11\"\n", "10.0.1.11", "elastic_ip \"eip-a\".private_ip", "10.0.1.11 is not a private IP of network interface `eni-a` (10.0.1.10)");
    let two = "\n[[elastic_ip]]\nid = \"eip-a\"\npublic_ip = \"203.0.113.1\"\nnetwork_interface = \"eni-a\"\n\n[[elastic_ip]]\nid = \"eip-b\"\npublic_ip = \"203.0.113.2\"\nnetwork_interface = \"eni-a\"\n";
    rejects(
        two,
        "network_interface = \"eni-a\"",
        "elastic_ip \"eip-b\".network_interface",
        "already has Elastic IP `eip-a`",
    );
    let same = "\n[[elastic_ip]]\nid = \"eip-a\"\npublic_ip = \"203.0.113.1\"\n\n[[elastic_ip]]\nid = \"eip-b\"\npublic_ip = \"203.0.113.1\"\n";
    rejects(
        same,
        "203.0.113.1",
        "elastic_ip \"eip-b\".public_ip",
        "public IP 203.0.113.1 is already used by Elastic IP `eip-a`",
    );
}

#[test]
fn nat_gateway_default_address_is_first_free() {
    // 10.0.1.4 is the first address AWS hands out; take it with an ENI so the NAT gets .5.
    let m = ok(&format!("{}\n[[nat_gateway]]\nid = \"nat-a\"\nsubnet = \"subnet-a\"\n", eni_b("10.0.1.4")));
    assert_eq!(m.nat_gateways[0].private_ip, Ipv4Addr::new(10, 0, 1, 5));
    assert_eq!(m.nat_gateways[0].elastic_ip, None);
}

#[test]
fn nat_gateway_rejects_reserved_address_and_associated_eip() {
    rejects(
        "\n[[nat_gateway]]\nid = \"nat-a\"\nsubnet = \"subnet-a\"\nprivate_ip = \"10.0.1.2\"\n",
        "10.0.1.2",
        "nat_gateway \"nat-a\".private_ip",
        "the Amazon DNS server's address",
    );
    let extra = "\n[[elastic_ip]]\nid = \"eip-a\"\npublic_ip = \"203.0.113.1\"\nnetwork_interface = \"eni-a\"\n\n[[nat_gateway]]\nid = \"nat-a\"\nsubnet = \"subnet-a\"\nelastic_ip = \"eip-a\"\n";
    rejects(
        extra,
        "elastic_ip = \"eip-a\"",
        "nat_gateway \"nat-a\".elastic_ip",
        "Elastic IP `eip-a` is associated with network interface `eni-a`",
    );
}

#[test]
fn internet_host_inside_a_vpc() {
    rejects(
        "\n[internet]\nhosts = [ { id = \"h\", ip = \"10.0.7.7\" } ]\n",
        "10.0.7.7",
        "internet.hosts \"h\".ip",
        "an internet host must be outside every VPC",
    );
}

#[test]
fn several_problems_reported_together() {
    let extra = format!(
        "{}{}",
        eni_b("10.0.1.1"),
        "\n[[subnet]]\nid = \"subnet-b\"\nvpc = \"vpc-a\"\ncidr = \"10.0.2.0/29\"\n"
    );
    let ps = problems(&extra);
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert!(ps.iter().any(|p| p.field.ends_with("private_ip")));
    assert!(ps.iter().any(|p| p.field.ends_with("cidr")));
}

#[test]
fn internet_is_a_reserved_instance_id_and_nat_ports_are_checked() {
    let text = BASE.replacen("name = \"t\"", "name = \"t\"\n[[instance]]\nid = \"internet\"\n", 1);
    let ps = parse(&text, "t.toml").expect_err("reserved id").problems;
    assert!(ps.iter().any(|p| p.message.contains("`internet` is reserved")), "{ps:?}");
    let nat = |ports: &str| {
        let text = super::DEFAULT_TOPOLOGY.replacen(
            "elastic_ip = \"eipalloc-nat\"",
            &format!("elastic_ip = \"eipalloc-nat\"\nports = \"{ports}\""),
            1,
        );
        parse(&text, "d.toml")
    };
    assert_eq!(nat("2000-2003").unwrap().nat_gateways[0].ports, crate::model::PortRange { from: 2000, to: 2003 });
    let ps = nat("80-90").expect_err("ports below 1024").problems;
    assert!(ps[0].field.ends_with(".ports") && ps[0].message.contains("below 1024"), "{ps:?}");
    let m = parse(super::DEFAULT_TOPOLOGY, "d.toml").unwrap();
    assert_eq!(m.nat_gateways[0].ports, crate::model::NatGateway::AWS_PORTS);
    assert!(!m.nat_gateways[0].preserve_ports, "AWS's NAT gateway spreads ports by default");
    let policy = |value: &str| {
        let text = super::DEFAULT_TOPOLOGY.replacen(
            "elastic_ip = \"eipalloc-nat\"",
            &format!("elastic_ip = \"eipalloc-nat\"\nsource_ports = \"{value}\""),
            1,
        );
        parse(&text, "d.toml")
    };
    assert!(policy("preserve").unwrap().nat_gateways[0].preserve_ports);
    assert!(!policy("random").unwrap().nat_gateways[0].preserve_ports);
    let ps = policy("sequential").expect_err("an unknown policy").problems;
    assert!(ps[0].field.ends_with(".source_ports") && ps[0].message.contains("`preserve`"), "{ps:?}");
}

#[test]
fn an_uplink_is_checked_and_replaces_the_emulated_internet() {
    let with = |internet: &str| {
        let text = super::DEFAULT_TOPOLOGY.replacen(
            "hosts = [\n  { id = \"example\", ip = \"198.51.100.7\" },\n]",
            internet,
            1,
        );
        parse(&text, "d.toml")
    };
    let m = with("uplink = { interface = \"veth0\", gateway = \"192.0.2.1\" }").expect("valid uplink");
    let u = m.uplink.as_ref().unwrap();
    assert_eq!((u.interface.as_str(), u.gateway), ("veth0", "192.0.2.1".parse().unwrap()));
    assert!(m.has_internet() && !m.has_emulated_internet());
    let ps = with("uplink = { interface = \"veth0\", gateway = \"10.0.0.9\" }").expect_err("gateway inside").problems;
    assert_eq!(ps[0].field, "internet.uplink.gateway", "{ps:?}");
    let ps = with("uplink = { interface = \"a/b\", gateway = \"192.0.2.1\" }").expect_err("bad name").problems;
    assert!(ps[0].message.contains("not an interface name"), "{ps:?}");
    let both =
        "hosts = [{ id = \"h\", ip = \"198.51.100.7\" }]\nuplink = { interface = \"veth0\", gateway = \"192.0.2.1\" }";
    let ps = with(both).expect_err("both").problems;
    assert!(ps[0].message.contains("not both"), "{ps:?}");
}

// ---------------------------------------------------------------------------------------------
// Flow logs

const FLOW_LOG: &str = r#"
[[flow_log]]
id = "fl-a"
resource = "eni-a"
traffic_type = "ALL"
destination = "flows/a.log"
"#;

#[test]
fn flow_logs_parse_with_aws_defaults_and_cover_their_resource() {
    use crate::model::{FlowLogResource, TrafficType};
    let m = ok(FLOW_LOG);
    let f = &m.flow_logs[0];
    assert_eq!(f.resource, FlowLogResource::Eni(crate::model::EniIdx(0)));
    assert_eq!((f.traffic_type, f.max_aggregation_interval), (TrafficType::All, 600));
    assert_eq!((f.log_format.as_deref(), f.account_id.as_deref()), (None, None));
    assert_eq!(f.destination, "flows/a.log", "relative to a file given by a relative name: as written");
    let m = ok(&FLOW_LOG.replace("\"eni-a\"", "\"vpc-a\"").replace(
        "\"ALL\"",
        "\"REJECT\"\nmax_aggregation_interval = 1\naccount_id = \"111122223333\"\nlog_format = \"${version} ${az-id}\"",
    ));
    assert_eq!(m.flow_logs[0].resource, FlowLogResource::Vpc(crate::model::VpcIdx(0)));
    assert_eq!(m.flow_log_enis(m.flow_logs[0].resource).len(), 1);
    assert_eq!(m.flow_logs[0].max_aggregation_interval, 1);
    let m = ok(&FLOW_LOG.replace("\"eni-a\"", "\"subnet-a\""));
    assert_eq!(m.flow_logs[0].resource, FlowLogResource::Subnet(crate::model::SubnetIdx(0)));
}

#[test]
fn flow_log_destinations_are_relative_to_the_topology_file() {
    let m = parse(&lab(FLOW_LOG), "/etc/labs/t.toml").unwrap();
    assert_eq!(m.flow_logs[0].destination, "/etc/labs/flows/a.log");
    let abs = FLOW_LOG.replace("flows/a.log", "/var/log/a.log");
    assert_eq!(parse(&lab(&abs), "/etc/labs/t.toml").unwrap().flow_logs[0].destination, "/var/log/a.log");
}

#[test]
fn flow_log_mistakes_name_their_field() {
    rejects(&FLOW_LOG.replace("\"eni-a\"", "\"eni-zz\""), "eni-zz", "flow_log \"fl-a\".resource", "does not exist");
    rejects(&FLOW_LOG.replace("\"eni-a\"", "\"i-a\""), "\"i-a\"", "flow_log \"fl-a\".resource", "is an instance");
    rejects(
        &FLOW_LOG.replace("\"ALL\"", "\"all\""),
        "\"all\"",
        "flow_log \"fl-a\".traffic_type",
        "ACCEPT, REJECT or ALL",
    );
    rejects(
        &FLOW_LOG.replace("flows/a.log", ""),
        "destination",
        "flow_log \"fl-a\".destination",
        "needs a destination",
    );
    let fmt = format!("{FLOW_LOG}log_format = \"${{version}} ${{nope}}\"\n");
    rejects(&fmt, "log_format", "flow_log \"fl-a\".log_format", "`nope` is not a flow log field");
    let interval = format!("{FLOW_LOG}max_aggregation_interval = 601\n");
    rejects(&interval, "max_aggregation", "flow_log \"fl-a\".max_aggregation_interval", "1 to 600");
    let acct = format!("{FLOW_LOG}account_id = \"12\"\n");
    rejects(&acct, "account_id", "flow_log \"fl-a\".account_id", "twelve digits");
    let twice = format!("{FLOW_LOG}{}", FLOW_LOG.replace("fl-a", "fl-b"));
    rejects(&twice, "flows/a.log", "flow_log \"fl-b\".destination", "flow log `fl-a` already writes");
    let dup = format!("{FLOW_LOG}{}", FLOW_LOG.replace("flows/a.log", "b.log"));
    rejects(&dup, "id = \"fl-a\"", "flow_log \"fl-a\".id", "duplicate id");
    let unknown = format!("{FLOW_LOG}color = \"red\"\n");
    let ps = problems(&unknown);
    assert!(ps[0].field.starts_with("flow_log \"fl-a\"") && ps[0].message.contains("unknown field"), "{:?}", ps);
}

/// A NAT gateway in subnet-a: its network interface is `eni-nat-a`.
const NAT_A: &str = "\n[[nat_gateway]]\nid = \"nat-a\"\nsubnet = \"subnet-a\"\n";

#[test]
fn a_flow_log_may_name_a_nat_gateway_s_interface_and_its_subnet_covers_it() {
    use crate::model::{FlowLogResource, NatIdx};
    let m = ok(&format!("{NAT_A}{}", FLOW_LOG.replace("\"eni-a\"", "\"eni-nat-a\"")));
    assert_eq!(m.nat_gateways[0].interface_id(), "eni-nat-a");
    let resource = m.flow_logs[0].resource;
    assert_eq!(resource, FlowLogResource::NatInterface(NatIdx(0)));
    assert_eq!((m.flow_log_nat_gateways(resource), m.flow_log_enis(resource)), (vec![NatIdx(0)], vec![]));
    assert_eq!(m.flow_log_resource_id(resource), "eni-nat-a", "exported and planned by its id");
    for covering in ["\"subnet-a\"", "\"vpc-a\""] {
        let m = ok(&format!("{NAT_A}{}", FLOW_LOG.replace("\"eni-a\"", covering)));
        let resource = m.flow_logs[0].resource;
        assert_eq!((m.flow_log_nat_gateways(resource), m.flow_log_enis(resource).len()), (vec![NatIdx(0)], 1));
    }
    let only_eni = ok(&format!("{NAT_A}{FLOW_LOG}"));
    assert!(only_eni.flow_log_nat_gateways(only_eni.flow_logs[0].resource).is_empty());
}

#[test]
fn an_id_that_is_a_nat_gateway_s_interface_is_refused_wherever_it_stands() {
    let eni = "\n[[network_interface]]\nid = \"eni-nat-a\"\nsubnet = \"subnet-a\"\nprivate_ip = \"10.0.1.20\"\n";
    for file in [format!("{NAT_A}{eni}"), format!("{eni}{NAT_A}")] {
        rejects(
            &file,
            "id = \"eni-nat-a\"",
            "network_interface \"eni-nat-a\".id",
            "`eni-nat-a` is the id of NAT gateway `nat-a`'s network interface (line ",
        );
    }
    let group = "\n[[security_group]]\nid = \"eni-nat-a\"\nvpc = \"vpc-a\"\n";
    rejects(
        &format!("{NAT_A}{group}"),
        "id = \"eni-nat-a\"",
        "security_group \"eni-nat-a\".id",
        "give a security group",
    );
}

#[test]
fn the_api_setting_is_checked_and_names_its_field() {
    let with = |api: &str| parse(&format!("{}\n[api]\n{api}\n", super::DEFAULT_TOPOLOGY), "d.toml");
    let m = with("listen = \"127.0.0.1:4566\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"s\"").unwrap();
    assert_eq!(m.api.listen, Some("127.0.0.1:4566".parse().unwrap()));
    assert_eq!(m.api.credentials, Some(("AKID".to_string(), "s".to_string())));
    let ps = with("listen = \"localhost\"").expect_err("no port").problems;
    assert_eq!(ps[0].field, "api.listen", "{ps:?}");
    let ps = with("access_key_id = \"AKID\"").expect_err("half the credentials").problems;
    assert!(ps[0].message.contains("both access_key_id and secret_access_key"), "{ps:?}");
    assert!(with("colour = \"blue\"").is_err(), "unknown fields are refused");
    assert_eq!(parse(super::DEFAULT_TOPOLOGY, "d.toml").unwrap().api, crate::model::ApiSettings::default());
}

// ---------------------------------------------------------------------------------------------
// What AWS creates before it is complete: a detached internet gateway, a pending peering

#[test]
fn an_internet_gateway_without_vpc_is_detached_and_round_trips() {
    let m = ok("\n[[internet_gateway]]\nid = \"igw-a\"\n");
    assert_eq!(m.internet_gateways[0].vpc, None);
    let m = ok("\n[[internet_gateway]]\nid = \"igw-a\"\nvpc = \"vpc-a\"\n[[internet_gateway]]\nid = \"igw-b\"\n");
    assert_eq!(m.internet_gateways[0].vpc, Some(crate::model::VpcIdx(0)));
    assert_eq!(m.internet_gateways[1].vpc, None, "a detached gateway is not the VPC's second one");
}

#[test]
fn a_pending_peering_is_declared_by_its_status_and_joins_no_groups() {
    let peer = "\n[[vpc_peering]]\nid = \"pcx-ab\"\nrequester_vpc = \"vpc-a\"\naccepter_vpc = \"vpc-b\"\n";
    let pending = format!("{VPC_B}{peer}status = \"pending-acceptance\"\n");
    let m = ok(&pending);
    assert_eq!(m.peerings[0].status, crate::model::PeeringStatus::PendingAcceptance);
    assert!(export(&m).contains("status = \"pending-acceptance\""));
    assert_eq!(ok(&format!("{VPC_B}{peer}")).peerings[0].status, crate::model::PeeringStatus::Active);
    rejects(
        &format!("{VPC_B}{peer}status = \"accepted\"\n"),
        "status = \"accepted\"",
        "vpc_peering \"pcx-ab\".status",
        "use active or pending-acceptance",
    );
    // Until it is accepted, a group across it cannot be named.
    let other = "\n[[security_group]]\nid = \"sg-b\"\nvpc = \"vpc-b\"\n";
    let body = "ingress = [ { protocol = \"tcp\", ports = \"443\", source = \"sg-b\" } ]\n";
    rejects(
        &format!("{pending}{other}{}", sg(body)),
        "source = \"sg-b\"",
        "security_group \"sg-a\".ingress[0].source",
        "nor peered with it",
    );
}

#[test]
fn a_group_is_named_by_its_id_unless_named_and_names_are_unique_per_vpc() {
    let m = ok(&sg("name = \"web\"\ndescription = \"web servers\"\n"));
    assert_eq!(
        (m.security_groups[0].name.as_str(), m.security_groups[0].description.as_deref()),
        ("web", Some("web servers"))
    );
    assert_eq!(m.security_groups[1].name, "default", "the VPC's default group");
    assert_eq!(ok(&sg("")).security_groups[0].name, "sg-a");
    let second = "\n[[security_group]]\nid = \"sg-b\"\nvpc = \"vpc-a\"\nname = \"web\"\n";
    rejects(
        &format!("{}{second}", sg("name = \"web\"\n")),
        "name = \"web\"",
        "security_group \"sg-b\".name",
        "already named `web`",
    );
    rejects(&sg("name = \"default\"\n"), "name = \"default\"", "security_group \"sg-a\".name", "reserved");
}

// ---------------------------------------------------------------------------------------------
// DHCP options sets and the region

const DHCP_VPC: &str = r#"
[[dhcp_options]]
id = "dopt-corp"
domain_name = "corp.example"
domain_name_servers = ["AmazonProvidedDNS", "192.0.2.53"]
ntp_servers = ["169.254.169.123"]

[[vpc]]
id = "vpc-d"
cidr = "10.9.0.0/16"
dhcp_options = "dopt-corp"
"#;

#[test]
fn dhcp_options_resolve_with_aws_defaults_where_absent() {
    let m = ok(DHCP_VPC);
    let (a, d) = (crate::model::VpcIdx(0), crate::model::VpcIdx(1));
    let plain = m.dhcp_settings(a);
    assert_eq!(plain.domain_name, "ec2.internal");
    assert_eq!(plain.dns_servers, [Ipv4Addr::new(10, 0, 0, 2)]);
    assert!(plain.ntp_servers.is_empty());
    let corp = m.dhcp_settings(d);
    assert_eq!(corp.domain_name, "corp.example");
    assert_eq!(corp.dns_servers, [Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(192, 0, 2, 53)]);
    assert_eq!(corp.ntp_servers, [Ipv4Addr::new(169, 254, 169, 123)]);
    let elsewhere = parse(&format!("region = \"eu-west-3\"\n{}", &lab("")), "t.toml").unwrap();
    assert_eq!(elsewhere.dhcp_settings(a).domain_name, "eu-west-3.compute.internal");
}

#[test]
fn dhcp_options_mistakes_are_named_at_their_field() {
    let bad_dns = DHCP_VPC.replace("\"192.0.2.53\"", "\"dns.example\"");
    rejects(&bad_dns, "dns.example", "dhcp_options \"dopt-corp\".domain_name_servers", "not an IPv4 address");
    let amazon_ntp = DHCP_VPC.replace("\"169.254.169.123\"", "\"AmazonProvidedDNS\"");
    rejects(&amazon_ntp, "ntp_servers", "dhcp_options \"dopt-corp\".ntp_servers", "not an IPv4 address");
    let bad_domain = DHCP_VPC.replace("corp.example", "corp..example");
    rejects(&bad_domain, "corp..example", "dhcp_options \"dopt-corp\".domain_name", "not a domain name");
    let unknown = DHCP_VPC.replace("dhcp_options = \"dopt-corp\"", "dhcp_options = \"dopt-none\"");
    rejects(&unknown, "dopt-none", "vpc \"vpc-d\".dhcp_options", "not the id of a [[dhcp_options]]");
    let five = DHCP_VPC.replace("\"192.0.2.53\"]", "\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\", \"192.0.2.4\"]");
    rejects(&five, "192.0.2.4", "dhcp_options \"dopt-corp\".domain_name_servers", "at most 4");
    let twice = format!("{DHCP_VPC}\n[[dhcp_options]]\nid = \"dopt-corp\"\n");
    let ps = problems(&twice);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(ps[0].message.contains("duplicate DHCP options id"), "{}", ps[0]);
    let region = parse(&format!("region = \"mars\"\n{}", lab("")), "t.toml").unwrap_err().problems;
    assert_eq!((region.len(), region[0].field.as_str(), region[0].line), (1, "region", 1), "{region:?}");
    let network = parse(&format!("instance_network = \"dhcpv6\"\n{}", lab("")), "t.toml").unwrap_err().problems;
    assert_eq!((network.len(), network[0].field.as_str(), network[0].line), (1, "instance_network", 1));
    assert!(network[0].message.contains("`static`"), "{}", network[0]);
    let dhcp = parse(&format!("instance_network = \"dhcp\"\n{}", lab("")), "t.toml").unwrap();
    assert_eq!(dhcp.instance_network, crate::model::InstanceNetwork::Dhcp);
    assert_eq!(parse(&lab(""), "t.toml").unwrap().instance_network, crate::model::InstanceNetwork::Static);
}

// ---------------------------------------------------------------------------------------------
// The Amazon DNS server's settings

#[test]
fn dns_attributes_default_as_aws_and_hostnames_need_support() {
    let m = ok("");
    assert!(m.vpcs[0].enable_dns_support && !m.vpcs[0].enable_dns_hostnames, "AWS's defaults");
    let set = VPC_B.replace("cidr = \"10.1.0.0/16\"", "cidr = \"10.1.0.0/16\"\nenable_dns_hostnames = true");
    assert!(ok(&set).vpcs[1].enable_dns_hostnames);
    let off = VPC_B.replace("cidr = \"10.1.0.0/16\"", "cidr = \"10.1.0.0/16\"\nenable_dns_support = false");
    assert!(!ok(&off).vpcs[1].enable_dns_support);
    let both = off.replace("enable_dns_support = false", "enable_dns_support = false\nenable_dns_hostnames = true");
    rejects(&both, "enable_dns_hostnames", "vpc \"vpc-b\".enable_dns_hostnames", "need DNS support");
    let typo = VPC_B.replace("cidr = \"10.1.0.0/16\"", "cidr = \"10.1.0.0/16\"\nenable_dns_support = \"yes\"");
    assert_eq!(problems(&typo).len(), 1);
}

#[test]
fn internet_hosts_answer_to_their_name_or_their_id() {
    let hosts = "\n[internet]\nhosts = [\n  { id = \"web\", ip = \"198.51.100.7\", name = \"www.example.com\" },\n  { id = \"bare\", ip = \"198.51.100.8\" },\n]\n";
    let m = ok(hosts);
    assert_eq!((m.internet_hosts[0].dns_name(), m.internet_hosts[1].dns_name()), ("www.example.com", "bare"));
    let bad = hosts.replace("www.example.com", "www..example.com");
    rejects(&bad, "www..example.com", "internet.hosts \"web\".name", "not a DNS name");
    let dotted = hosts.replace("www.example.com", "www.example.com.");
    rejects(&dotted, "www.example.com.", "internet.hosts \"web\".name", "not a DNS name");
}

#[test]
fn private_and_public_dns_names_follow_the_region() {
    let ip = Ipv4Addr::new(10, 0, 1, 10);
    let public = Ipv4Addr::new(203, 0, 113, 20);
    let m = ok("");
    assert_eq!(m.private_dns_name(ip), "ip-10-0-1-10.ec2.internal");
    assert_eq!(m.public_dns_name(public), "ec2-203-0-113-20.compute-1.amazonaws.com");
    let elsewhere = parse(&format!("region = \"eu-west-3\"\n{}", lab("")), "t.toml").unwrap();
    assert_eq!(elsewhere.private_dns_name(ip), "ip-10-0-1-10.eu-west-3.compute.internal");
    assert_eq!(elsewhere.public_dns_name(public), "ec2-203-0-113-20.eu-west-3.compute.amazonaws.com");
    // A DHCP options set's domain changes what DHCP hands out, not the private names.
    let custom = "\n[[dhcp_options]]\nid = \"dopt-c\"\ndomain_name = \"corp.example\"\n";
    let mut m = ok(custom);
    m.dhcp_options[0].vpcs.push(crate::model::VpcIdx(0));
    assert_eq!(m.dhcp_settings(crate::model::VpcIdx(0)).domain_name, "corp.example");
    assert_eq!(m.private_dns_name(ip), "ip-10-0-1-10.ec2.internal");
}
