//! Tests of `export`: the round trip on the default lab, on a lab that uses every field, and on
//! models edited in code the way live changes edit them; then how the output reads. Every valid
//! lab any unit test parses is round-tripped too (`topology::parse` asserts it under test).

use std::net::Ipv4Addr;

use super::export;

/// Exports `m`, parses it back, and asserts the same model and, exported again, the same text.
fn assert_exports_exactly(m: &Model) -> String {
    let text = export(m);
    let back = parse(&text, "exported.toml")
        .unwrap_or_else(|e| panic!("the export does not parse:\n{e}\n--- export:\n{text}"));
    assert_eq!(serde_json::to_value(m).unwrap(), serde_json::to_value(&back).unwrap(), "--- export:\n{text}");
    assert_eq!(export(&back), text, "exporting the re-parsed model gives other text");
    text
}

/// Parses `text` (a valid lab, `file` naming it) and asserts its model survives the round trip.
fn assert_round_trip(text: &str, file: &str) -> Model {
    let m = parse(text, file).unwrap_or_else(|e| panic!("{file} is not a valid lab:\n{e}"));
    assert_exports_exactly(&m);
    m
}
use crate::model::{Attachment, EniIdx, InstanceState, Mac, Model, PortMatch, PortRange, Protocol, SgPeer, SgRule};
use crate::topology::{parse, DEFAULT_TOPOLOGY, DEFAULT_TOPOLOGY_FILE};

fn default_lab() -> Model {
    match parse(DEFAULT_TOPOLOGY, DEFAULT_TOPOLOGY_FILE) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

/// The default lab edited by `edit`, asserted to export and re-parse to exactly the edited model;
/// returns the model and its export.
fn edited(edit: impl FnOnce(&mut Model)) -> (Model, String) {
    let mut m = default_lab();
    edit(&mut m);
    let text = assert_exports_exactly(&m);
    (m, text)
}

/// The `[[section]]` of `text` whose id is `id`, up to the next section.
fn section<'t>(text: &'t str, id: &str) -> &'t str {
    let at = text.find(&format!("\nid = \"{id}\"\n")).unwrap_or_else(|| panic!("no section `{id}` in:\n{text}"));
    let start = text[..at].rfind("\n[").map_or(0, |i| i + 1);
    let end = text[at + 1..].find("\n[").map_or(text.len(), |i| at + 1 + i);
    &text[start..end]
}

fn eni(m: &Model, id: &str) -> EniIdx {
    m.eni_by_id(id).unwrap_or_else(|| panic!("no ENI `{id}`"))
}

fn sg(m: &Model, id: &str) -> crate::model::SgIdx {
    let i = m.security_groups.iter().position(|g| g.id == id).unwrap_or_else(|| panic!("no group `{id}`"));
    crate::model::SgIdx(i as u32)
}

// ---------------------------------------------------------------------------------------------
// The default lab

#[test]
fn the_default_lab_and_its_variants_round_trip() {
    assert_round_trip(DEFAULT_TOPOLOGY, DEFAULT_TOPOLOGY_FILE);
    let api = format!(
        "{DEFAULT_TOPOLOGY}\n[api]\nlisten = \"127.0.0.1:4566\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"s\"\n"
    );
    assert!(assert_round_trip(&api, "api.toml").api.credentials.is_some());
    // The variants other tests parse: narrowed NAT ports, an uplink instead of the hosts.
    let ports = DEFAULT_TOPOLOGY.replacen(
        "elastic_ip = \"eipalloc-nat\"",
        "elastic_ip = \"eipalloc-nat\"\nports = \"1024-1025\"",
        1,
    );
    assert_round_trip(&ports, "ports.toml");
    let uplink = DEFAULT_TOPOLOGY.replacen(
        "hosts = [\n  { id = \"example\", ip = \"198.51.100.7\" },\n]",
        "uplink = { interface = \"veth0\", gateway = \"192.0.2.1\" }",
        1,
    );
    let m = assert_round_trip(&uplink, "uplink.toml");
    assert!(export(&m).contains("[internet]\nuplink = { interface = \"veth0\", gateway = \"192.0.2.1\" }\n"));
}

#[test]
fn the_default_lab_exports_as_a_readable_topology() {
    let text = export(&default_lab());
    assert!(text.starts_with("name = \"demo\"\n\n[[vpc]]\nid = \"vpc-main\"\ncidr = \"10.0.0.0/16\"\n"), "{text}");
    for wanted in [
        "[[network_interface]]\nid = \"eni-web\"\n",
        "attachment = { instance = \"web\", device_index = 0 }\n",
        "routes = [\n  { destination = \"0.0.0.0/0\", target = \"nat-main\" },\n  { destination = \"192.0.2.0/24\", target = \"blackhole\" },\n]\n",
        "  { rule = 110, protocol = \"tcp\", ports = \"1024-65535\", cidr = \"0.0.0.0/0\", action = \"allow\" },\n",
        "  { protocol = \"icmp\", icmp_type = 8, source = \"10.0.0.0/16\" },\n",
        "  { protocol = \"tcp\", ports = \"8080\", source = \"sg-web\" },\n",
        "mac_address = \"02:00:00:00:02:50\"\n",
        "security_groups = [\"sg-app\"]\n",
        "secondary_private_ips = [\"10.0.1.11\"]\n",
        "[internet]\nhosts = [\n  { id = \"example\", ip = \"198.51.100.7\" },\n]\n",
    ] {
        assert!(text.contains(wanted), "no `{wanted}` in:\n{text}");
    }
    // The implicit objects, the local route and every default stay out.
    for unwanted in [
        "vpc-main/default-acl",
        "vpc-main/main",
        "vpc-main/default",
        "target = \"local\"",
        "egress = [\n  { protocol = \"all\"",
        "connection_tracking",
        "source_dest_check",
        "delete_on_termination",
        "state =",
        "ports = \"1024-65535\"\n",
        "main_route_table",
    ] {
        assert!(!text.contains(unwanted), "`{unwanted}` in:\n{text}");
    }
    // One section per declared object, in file order.
    assert_eq!(text.matches("[[network_interface]]").count(), 4);
    assert_eq!(text.matches("[[security_group]]").count(), 2);
    assert_eq!(text.matches("[[network_acl]]").count(), 1);
    assert_eq!(text.matches("[[route_table]]").count(), 2);
    let order: Vec<usize> =
        ["eni-web", "eni-app", "eni-standby", "eni-app-float"].iter().map(|id| text.find(id).unwrap_or(0)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    // The NAT gateway keeps its address; the EIP on the primary address names no private_ip.
    assert!(section(&text, "nat-main").contains("private_ip = \"10.0.1.100\"\n"));
    assert!(!section(&text, "eipalloc-web").contains("private_ip"));
}

// ---------------------------------------------------------------------------------------------
// Every field of the format

/// A lab that sets every field the format has, some to their defaults (which the export leaves out).
const EVERY_FIELD: &str = r#"
name = "every_field"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"
main_route_table = "rtb-main"

[[vpc]]
id = "vpc-b"
cidr = "10.1.0.0/16"

[[subnet]]
id = "sub-pub"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
availability_zone = "az-a"
route_table = "rtb-pub"
network_acl = "acl-pub"

[[subnet]]
id = "sub-priv"
vpc = "vpc-a"
cidr = "10.0.2.0/24"
availability_zone = "az-a"
route_table = "rtb-main"
network_acl = "vpc-a/default-acl"

[[subnet]]
id = "sub-b"
vpc = "vpc-b"
cidr = "10.1.1.0/28"
route_table = "vpc-b/main"

[[internet_gateway]]
id = "igw-a"
vpc = "vpc-a"

[[elastic_ip]]
id = "eip-nat"
public_ip = "203.0.113.10"

[[elastic_ip]]
id = "eip-web"
public_ip = "203.0.113.20"
network_interface = "eni-web"
private_ip = "10.0.1.11"

[[elastic_ip]]
id = "eip-web-primary"
public_ip = "203.0.113.21"
network_interface = "eni-web"
private_ip = "10.0.1.10"

[[elastic_ip]]
id = "eip-spare"
public_ip = "198.51.100.200"

[[nat_gateway]]
id = "nat-a"
subnet = "sub-pub"
elastic_ip = "eip-nat"
ports = "1024-1123"
source_ports = "preserve"

[[nat_gateway]]
id = "nat-private"
subnet = "sub-priv"
private_ip = "10.0.2.200"
ports = "1024-65535"

[[vpc_peering]]
id = "pcx-ab"
requester_vpc = "vpc-a"
accepter_vpc = "vpc-b"

[[route_table]]
id = "rtb-main"
vpc = "vpc-a"
routes = [
  { destination = "0.0.0.0/0", target = "nat-a" },
  { destination = "10.1.0.0/16", target = "pcx-ab" },
]

[[route_table]]
id = "rtb-pub"
vpc = "vpc-a"
routes = [
  { destination = "0.0.0.0/0", target = "igw-a" },
  { destination = "10.0.9.0/24", target = "eni-fw" },
  { destination = "10.0.2.0/25", target = "local" },
  { destination = "192.0.2.0/24", target = "blackhole" },
  { destination = "10.1.0.0/16", target = "pcx-ab" },
]

[[route_table]]
id = "rtb-empty"
vpc = "vpc-b"

[[network_acl]]
id = "acl-pub"
vpc = "vpc-a"
ingress = [
  { rule = 200, protocol = "all", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 100, protocol = "tcp", ports = 22, cidr = "192.0.2.0/24", action = "deny" },
  { rule = 110, protocol = "icmp", icmp_type = 3, icmp_code = 4, cidr = "0.0.0.0/0", action = "allow" },
  { rule = 120, protocol = 50, cidr = "10.0.0.0/8", action = "allow" },
  { rule = 130, protocol = "UDP", ports = "0-65535", cidr = "0.0.0.0/0", action = "Allow" },
  { rule = 140, protocol = "icmp", icmp_type = -1, cidr = "0.0.0.0/0", action = "deny" },
]
egress = [ { rule = 100, protocol = -1, cidr = "0.0.0.0/0", action = "allow" } ]

[[network_acl]]
id = "acl-none"
vpc = "vpc-b"

[[security_group]]
id = "sg-web"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "80", source = "0.0.0.0/0" },
  { protocol = "6", ports = "8000-8080", source = "sg-app" },
  { protocol = "icmp", icmp_type = 8, icmp_code = 0, source = "10.0.0.0/16" },
  { protocol = "all", source = "vpc-a/default" },
  { protocol = "udp", source = "sg-b" },
  { protocol = 132, source = "10.1.0.0/16" },
]
egress = [
  { protocol = "tcp", ports = "443", destination = "0.0.0.0/0" },
  { protocol = "all", destination = "sg-app" },
]

[[security_group]]
id = "sg-app"
vpc = "vpc-a"
egress = []

[[security_group]]
id = "sg-open"
vpc = "vpc-a"
egress = [ { protocol = "all", destination = "0.0.0.0/0" } ]

[[security_group]]
id = "sg-b"
vpc = "vpc-b"
egress = [ { protocol = "all", destination = "10.0.0.0/8" } ]

[[instance]]
id = "web"
instance_type = "t3.large"

[[instance]]
id = "fw"
state = "stopped"

[[instance]]
id = "b1"
state = "running"

[[network_interface]]
id = "eni-web"
subnet = "sub-pub"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.11", "10.0.1.12"]
security_groups = ["sg-web", "vpc-a/default"]
description = "web \"front\" end\nsecond line\twith a tab"
attachment = { instance = "web", device_index = 0, delete_on_termination = false }

[[network_interface]]
id = "eni-web-1"
subnet = "sub-priv"
private_ip = "10.0.2.10"
security_groups = ["vpc-a/default"]
mac_address = "02:aa:bb:cc:dd:ee"
connection_tracking = { tcp_established_timeout = 3600, udp_timeout = 60, max_connections = 100 }
attachment = { instance = "web", device_index = 1, delete_on_termination = true }

[[network_interface]]
id = "eni-fw"
subnet = "sub-priv"
private_ip = "10.0.2.20"
security_groups = ["sg-open", "sg-app"]
source_dest_check = false
attachment = { instance = "fw", device_index = 0, delete_on_termination = true }

[[network_interface]]
id = "eni-loose"
subnet = "sub-priv"
private_ip = "10.0.2.30"
source_dest_check = true
description = ""
connection_tracking = { tcp_established_timeout = 432000, udp_stream_timeout = 180 }

[[network_interface]]
id = "eni-b1"
subnet = "sub-b"
private_ip = "10.1.1.4"
security_groups = ["sg-b"]
attachment = { instance = "b1", device_index = 2, delete_on_termination = false }

[[network_interface]]
id = "eni-b1-0"
subnet = "sub-b"
private_ip = "10.1.1.5"
attachment = { instance = "b1", device_index = 0 }

[internet]
hosts = [
  { id = "example", ip = "198.51.100.7" },
  { id = "other", ip = "192.0.2.99" },
]
"#;

#[test]
fn every_field_round_trips_and_defaults_are_left_out() {
    let m = assert_round_trip(EVERY_FIELD, "every.toml");
    let text = export(&m);
    // What differs from the defaults is written...
    assert!(section(&text, "vpc-a").contains("main_route_table = \"rtb-main\""), "{text}");
    assert!(section(&text, "sub-pub").contains("route_table = \"rtb-pub\"\nnetwork_acl = \"acl-pub\""));
    assert!(section(&text, "eip-web").contains("private_ip = \"10.0.1.11\""));
    assert!(
        section(&text, "nat-a").contains("private_ip = \"10.0.1.4\"\nelastic_ip = \"eip-nat\"\nports = \"1024-1123\"")
    );
    assert!(section(&text, "rtb-pub").contains("{ destination = \"10.0.2.0/25\", target = \"local\" }"));
    assert!(section(&text, "acl-pub").contains(
        "{ rule = 110, protocol = \"icmp\", icmp_type = 3, icmp_code = 4, cidr = \"0.0.0.0/0\", action = \"allow\" }"
    ));
    assert!(
        section(&text, "acl-pub").contains("{ rule = 120, protocol = 50, cidr = \"10.0.0.0/8\", action = \"allow\" }")
    );
    assert!(section(&text, "acl-pub")
        .contains("{ rule = 130, protocol = \"udp\", cidr = \"0.0.0.0/0\", action = \"allow\" }"));
    assert!(section(&text, "acl-pub")
        .contains("{ rule = 140, protocol = \"icmp\", cidr = \"0.0.0.0/0\", action = \"deny\" }"));
    assert!(section(&text, "sg-web").contains("{ protocol = \"all\", source = \"vpc-a/default\" }"));
    assert!(section(&text, "sg-web").contains("{ protocol = \"tcp\", ports = \"8000-8080\", source = \"sg-app\" }"));
    assert!(section(&text, "sg-web").contains("{ protocol = \"all\", destination = \"sg-app\" }"));
    assert!(section(&text, "sg-app").contains("egress = []"));
    assert!(section(&text, "fw").contains("state = \"stopped\""));
    let web = section(&text, "eni-web");
    assert!(web.contains("security_groups = [\"sg-web\", \"vpc-a/default\"]"), "{web}");
    assert!(web.contains("delete_on_termination = false"), "{web}");
    let web1 = section(&text, "eni-web-1");
    assert!(web1.contains("mac_address = \"02:aa:bb:cc:dd:ee\""), "{web1}");
    assert!(
        web1.contains(
            "connection_tracking = { tcp_established_timeout = 3600, udp_timeout = 60, max_connections = 100 }"
        ),
        "{web1}"
    );
    assert!(web1.contains("delete_on_termination = true"), "{web1}");
    assert!(section(&text, "eni-fw").contains("source_dest_check = false"));
    assert!(section(&text, "eni-loose").contains("description = \"\""));
    // ...and what equals them is not.
    assert!(!section(&text, "sub-priv").contains("route_table") && !section(&text, "sub-priv").contains("acl"));
    assert!(!section(&text, "sub-b").contains("route_table"));
    assert!(!section(&text, "eip-web-primary").contains("private_ip"));
    assert!(!section(&text, "nat-private").contains("ports"));
    assert!(!section(&text, "sg-open").contains("egress"));
    assert!(!section(&text, "b1").contains("state"));
    assert!(!web1.contains("\"vpc-a/default\""));
    assert!(!section(&text, "eni-loose").contains("connection_tracking"));
    assert!(!section(&text, "eni-loose").contains("source_dest_check"));
    assert!(!section(&text, "eni-b1-0").contains("delete_on_termination"));
}

// ---------------------------------------------------------------------------------------------
// Models edited in code, as live changes will edit them

#[test]
fn an_eni_moved_to_another_instance_round_trips() {
    let (m, text) = edited(|m| {
        let float = eni(m, "eni-app-float");
        let standby = m.instance_by_id("standby").expect("standby");
        m.enis[float.index()].attachment =
            Some(Attachment { instance: standby, device_index: 1, delete_on_termination: false });
    });
    assert_eq!(m.enis_of(m.instance_by_id("standby").expect("standby")).len(), 2);
    // false is the default at device index 1: nothing to say.
    assert!(section(&text, "eni-app-float").contains("attachment = { instance = \"standby\", device_index = 1 }\n"));

    // The values that differ from AWS's defaults are written.
    let (_, text) = edited(|m| {
        let float = eni(m, "eni-app-float");
        m.enis[float.index()].attachment.as_mut().expect("attached").delete_on_termination = true;
        let web = eni(m, "eni-web");
        m.enis[web.index()].attachment.as_mut().expect("attached").delete_on_termination = false;
    });
    assert!(section(&text, "eni-app-float")
        .contains("attachment = { instance = \"app\", device_index = 1, delete_on_termination = true }\n"));
    assert!(section(&text, "eni-web")
        .contains("attachment = { instance = \"web\", device_index = 0, delete_on_termination = false }\n"));

    // Detached: no attachment at all.
    let (_, text) = edited(|m| {
        let float = eni(m, "eni-app-float");
        m.enis[float.index()].attachment = None;
    });
    assert!(!section(&text, "eni-app-float").contains("attachment"));
}

#[test]
fn a_stopped_instance_round_trips() {
    let (_, text) = edited(|m| {
        let app = m.instance_by_id("app").expect("app");
        m.instances[app.index()].state = InstanceState::Stopped;
    });
    assert!(section(&text, "app").contains("state = \"stopped\""));
    assert!(!section(&text, "web").contains("state"));
}

#[test]
fn an_elastic_ip_on_a_secondary_address_round_trips() {
    let (_, text) = edited(|m| {
        let web = eni(m, "eni-web");
        let eip = m.elastic_ips.iter_mut().find(|e| e.id == "eipalloc-web").expect("EIP");
        eip.association = Some((web, Ipv4Addr::new(10, 0, 1, 11)));
    });
    assert!(section(&text, "eipalloc-web").contains("network_interface = \"eni-web\"\nprivate_ip = \"10.0.1.11\"\n"));
    // And associated anew, with another ENI's primary address, or with none.
    let (_, text) = edited(|m| {
        let app = eni(m, "eni-app");
        m.elastic_ips[1].association = Some((app, Ipv4Addr::new(10, 0, 2, 10)));
        m.elastic_ips[0].association = None;
    });
    assert!(section(&text, "eipalloc-web").contains("network_interface = \"eni-app\"\n"));
    assert!(!section(&text, "eipalloc-web").contains("private_ip"));
}

#[test]
fn a_group_without_egress_rules_writes_an_empty_list() {
    let (_, text) = edited(|m| {
        let web = sg(m, "sg-web");
        m.security_groups[web.index()].egress.clear();
    });
    assert!(section(&text, "sg-web").contains("egress = []\n"));
    // A narrowed egress is written out; a rule added to the allow-all one too.
    let (_, text) = edited(|m| {
        let web = sg(m, "sg-web");
        let rule = SgRule {
            protocol: Protocol::UDP,
            ports: PortMatch::Ports(PortRange { from: 53, to: 53 }),
            peer: SgPeer::Cidr("10.0.0.2/32".parse().expect("cidr")),
        };
        m.security_groups[web.index()].egress.push(rule);
    });
    assert!(section(&text, "sg-web").contains(
        "egress = [\n  { protocol = \"all\", destination = \"0.0.0.0/0\" },\n  { protocol = \"udp\", ports = \"53\", destination = \"10.0.0.2/32\" },\n]\n"
    ));
}

#[test]
fn default_group_references_round_trip() {
    let (_, text) = edited(|m| {
        let default = m.vpcs[0].default_security_group;
        let (web, app, standby) = (eni(m, "eni-web"), eni(m, "eni-app"), eni(m, "eni-standby"));
        m.enis[web.index()].security_groups.push(default);
        m.enis[app.index()].security_groups = vec![default];
        m.enis[standby.index()].security_groups.insert(0, default);
        let sg_app = sg(m, "sg-app");
        m.security_groups[sg_app.index()].ingress[0].peer = SgPeer::Group(default);
    });
    assert!(section(&text, "eni-web").contains("security_groups = [\"sg-web\", \"vpc-main/default\"]\n"));
    // Exactly the default group: the file says nothing.
    assert!(!section(&text, "eni-app").contains("security_groups"));
    assert!(section(&text, "eni-standby").contains("security_groups = [\"vpc-main/default\", \"sg-app\"]\n"));
    assert!(
        section(&text, "sg-app").contains("{ protocol = \"tcp\", ports = \"8080\", source = \"vpc-main/default\" }")
    );
    assert!(!text.contains("id = \"vpc-main/default\""));
}

#[test]
fn a_nat_gateway_with_narrowed_ports_round_trips() {
    let (_, text) = edited(|m| m.nat_gateways[0].ports = PortRange { from: 2000, to: 2099 });
    assert!(section(&text, "nat-main").contains("ports = \"2000-2099\"\n"));
    let (_, text) = edited(|m| m.nat_gateways[0].ports = PortRange { from: 5000, to: 5000 });
    assert!(section(&text, "nat-main").contains("ports = \"5000\"\n"));
    // A private NAT gateway (its Elastic IP released).
    let (_, text) = edited(|m| m.nat_gateways[0].elastic_ip = None);
    assert!(!section(&text, "nat-main").contains("elastic_ip"));
}

#[test]
fn other_edits_round_trip() {
    edited(|m| {
        let (float, web, app) = (eni(m, "eni-app-float"), eni(m, "eni-web"), eni(m, "eni-app"));
        // MACs: back to the generated one, or a new one.
        m.enis[float.index()].mac = Mac::generated("eni", "eni-app-float");
        m.enis[web.index()].mac = "02:12:34:56:78:9a".parse().expect("mac");
        m.enis[app.index()].source_dest_check = false;
        m.enis[app.index()].description = Some("line one\nline \"two\"\\".into());
        // Text that TOML must escape or quote with care.
        let standby = eni(m, "eni-standby");
        m.enis[standby.index()].description = Some("\n\"\"\" ''' \\ \r\n\t\u{7f} é ✓ \u{0}\"".into());
        m.enis[app.index()].connection_tracking.udp_stream = 120;
        m.enis[web.index()].secondary_private_ips.push(Ipv4Addr::new(10, 0, 1, 12));
        m.instances[0].instance_type = Some("m5.large".into());
        // A subnet on the VPC's main table and default ACL.
        m.subnets[0].route_table = m.vpcs[0].main_route_table;
        m.subnets[0].network_acl = m.vpcs[0].default_network_acl;
        // A route appended, an ACL rule appended at the end of the numbering.
        let rtb = m.subnets[1].route_table.index();
        let route = crate::model::Route {
            destination: "10.0.200.0/24".parse().expect("cidr"),
            target: crate::model::RouteTarget::Eni(float),
        };
        m.route_tables[rtb].routes.push(route);
        let mut rule = m.network_acls[0].ingress[0].clone();
        rule.number = 32766;
        rule.protocol = Protocol::ICMP;
        rule.ports = PortMatch::Icmp { icmp_type: Some(0), icmp_code: Some(0) };
        m.network_acls[0].ingress.push(rule);
        // An instance started again.
        m.instances[1].state = InstanceState::Running;
    });
}

#[test]
fn an_invalid_edit_is_reported_by_the_parse_with_its_field() {
    // An Elastic IP moved to an address its ENI does not have: the export writes it as it is, and
    // the parse names the field, as `vpclab check` would.
    let mut m = default_lab();
    let web = eni(&m, "eni-web");
    m.elastic_ips[1].association = Some((web, Ipv4Addr::new(10, 0, 1, 99)));
    let problems = parse(&export(&m), "edit").expect_err("not an address of eni-web").problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "elastic_ip \"eipalloc-web\".private_ip");
    // An ENI attached at a device index that is taken.
    let mut m = default_lab();
    let float = eni(&m, "eni-app-float");
    m.enis[float.index()].attachment.as_mut().expect("attached").device_index = 0;
    let problems = parse(&export(&m), "edit").expect_err("device 0 of app is taken").problems;
    assert_eq!(problems[0].field, "network_interface \"eni-app-float\".attachment.device_index");
}

#[test]
fn dhcp_options_and_the_region_round_trip() {
    let text = r#"name = "d"
region = "ap-southeast-2"
instance_network = "dhcp"

[[dhcp_options]]
id = "dopt-corp"
domain_name = "corp.example"
domain_name_servers = ["AmazonProvidedDNS", "192.0.2.53"]
ntp_servers = ["169.254.169.123"]

[[dhcp_options]]
id = "dopt-bare"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"
dhcp_options = "dopt-corp"

[[vpc]]
id = "vpc-b"
cidr = "10.1.0.0/16"
dhcp_options = "dopt-bare"
"#;
    let m = assert_round_trip(text, "dhcp.toml");
    assert_eq!(m.region(), "ap-southeast-2");
    let exported = export(&m);
    assert!(exported.contains("dhcp_options = \"dopt-corp\""), "{exported}");
    assert!(exported.contains("region = \"ap-southeast-2\""), "{exported}");
    assert!(exported.contains("instance_network = \"dhcp\""), "{exported}");
}

#[test]
fn dns_attributes_and_host_names_round_trip() {
    let text = r#"name = "d"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"
enable_dns_hostnames = true

[[vpc]]
id = "vpc-b"
cidr = "10.1.0.0/16"
enable_dns_support = false

[internet]
hosts = [
  { id = "web", ip = "198.51.100.7", name = "www.example.com" },
  { id = "bare", ip = "198.51.100.8" },
]
"#;
    let m = assert_round_trip(text, "dns.toml");
    assert!(m.vpcs[0].enable_dns_hostnames && !m.vpcs[1].enable_dns_support);
    let exported = export(&m);
    assert!(exported.contains("enable_dns_hostnames = true"), "{exported}");
    assert!(!exported.contains("enable_dns_support = true"), "AWS's default is left out:\n{exported}");
}
