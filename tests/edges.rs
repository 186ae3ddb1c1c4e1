//! The VPC's edges (issue 4), proven with real traffic between the namespaces of real labs and the
//! emulated internet `<lab>-internet`: route tables, the internet gateway, the NAT gateway,
//! appliance routing and VPC peering; `vpclab trace` must tell the same story.

mod common;

use std::net::Ipv4Addr;

use common::*;
use serde_json::Value;
use vpclab::packet::IpProto;

const EXAMPLE: &str = "198.51.100.7";
const OTHER: &str = "198.51.100.8";
const NAT_EIP: &str = "203.0.113.10";
const NAT_IP: &str = "10.0.1.100";
const WEB_EIP: &str = "203.0.113.20";

/// One VPC with a public subnet (default route to the IGW: `web` with an Elastic IP, `nopub`
/// without, and the NAT gateway) and a private subnet (default route to the NAT gateway, a
/// blackhole for 192.0.2.0/24: `app`). The internet holds `example`, `other` and `hole`
/// (192.0.2.5, behind the blackhole). `nat_extra` adds fields to the NAT gateway.
fn edge_topology(nat_extra: &str) -> String {
    format!(
        r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-pub"
vpc = "vpc-test"
cidr = "10.0.1.0/24"
route_table = "rtb-pub"

[[subnet]]
id = "subnet-priv"
vpc = "vpc-test"
cidr = "10.0.2.0/24"
route_table = "rtb-priv"

[[internet_gateway]]
id = "igw-test"
vpc = "vpc-test"

[[elastic_ip]]
id = "eipalloc-nat"
public_ip = "{NAT_EIP}"

[[elastic_ip]]
id = "eipalloc-web"
public_ip = "{WEB_EIP}"
network_interface = "eni-web"

[[nat_gateway]]
id = "nat-test"
subnet = "subnet-pub"
private_ip = "{NAT_IP}"
elastic_ip = "eipalloc-nat"
{nat_extra}

[[route_table]]
id = "rtb-pub"
vpc = "vpc-test"
routes = [ {{ destination = "0.0.0.0/0", target = "igw-test" }} ]

[[route_table]]
id = "rtb-priv"
vpc = "vpc-test"
routes = [
  {{ destination = "0.0.0.0/0", target = "nat-test" }},
  {{ destination = "192.0.2.0/24", target = "blackhole" }},
]

[[security_group]]
id = "sg-web"
vpc = "vpc-test"
ingress = [
  {{ protocol = "tcp", ports = "8080", source = "0.0.0.0/0" }},
  {{ protocol = "icmp", source = "0.0.0.0/0" }},
]

[[instance]]
id = "web"

[[instance]]
id = "nopub"

[[instance]]
id = "app"

[[network_interface]]
id = "eni-web"
subnet = "subnet-pub"
private_ip = "10.0.1.10"
security_groups = ["sg-web"]
attachment = {{ instance = "web", device_index = 0 }}

[[network_interface]]
id = "eni-nopub"
subnet = "subnet-pub"
private_ip = "10.0.1.20"
security_groups = ["sg-web"]
attachment = {{ instance = "nopub", device_index = 0 }}

[[network_interface]]
id = "eni-app"
subnet = "subnet-priv"
private_ip = "10.0.2.10"
security_groups = ["sg-web"]
attachment = {{ instance = "app", device_index = 0 }}

[internet]
hosts = [
  {{ id = "example", ip = "{EXAMPLE}" }},
  {{ id = "other", ip = "{OTHER}" }},
  {{ id = "hole", ip = "192.0.2.5" }},
]
"#
    )
}

/// The details of every stage named `stage`, in order.
fn stages<'a>(t: &'a Value, stage: &str) -> Vec<&'a str> {
    t["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == stage)
        .filter_map(|s| s["detail"].as_str())
        .collect()
}

/// Index of the first stage named `stage`.
fn stage_at(t: &Value, stage: &str) -> usize {
    t["stages"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["stage"] == stage)
        .unwrap_or_else(|| panic!("no {stage}: {t:#}"))
}

/// NAT gateway translations (conntrack entries whose `eni` is the NAT gateway).
fn nat_entries(lab: &TestLab, nat: &str) -> Vec<Value> {
    lab.conntrack(None).into_iter().filter(|e| e["eni"] == nat).collect()
}

#[test]
fn a_private_instance_reaches_the_internet_through_the_nat_gateway_as_its_elastic_ip() {
    let lab = TestLab::up("natout", &edge_topology(""));
    let inet = lab.ns("internet");

    // TCP: the internet host sees the NAT's Elastic IP, on a port of 1024-65535.
    let srv = tcp_peer_server(&inet, addr(EXAMPLE, 80), 15);
    let mut s = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 80), 5).expect("app reaches the internet via the NAT");
    assert_eq!(echo_over(&mut s, b"through the nat").unwrap(), b"through the nat");
    let local = s.local_addr().unwrap();
    assert_eq!(local.ip().to_string(), "10.0.2.10", "the instance uses its private address");

    // conntrack shows the translation while the connection is open.
    let tcp: Vec<Value> =
        nat_entries(&lab, "nat-test").into_iter().filter(|e| e["protocol"] == IpProto::TCP.0).collect();
    assert_eq!(tcp.len(), 1, "{tcp:#?}");
    let e = &tcp[0];
    assert_eq!(e["initiator"], serde_json::json!(["10.0.2.10", local.port()]), "{e:#}");
    assert_eq!(e["responder"], serde_json::json!([EXAMPLE, 80]), "{e:#}");
    assert_eq!(e["translated"][0], NAT_IP, "{e:#}");
    let nat_port = e["translated"][1].as_u64().unwrap();
    assert!((1024..=65535).contains(&nat_port), "{e:#}");
    // The handshake and the request's exchange went through the translation: its count is real.
    assert!(e["packets"].as_u64().unwrap() >= 3, "{e:#}");
    let table = text(&vpclab(&["conntrack", "--lab", &lab.name]));
    let row = table.lines().find(|l| l.starts_with("nat-test") && l.contains("tcp")).unwrap();
    let header = table.lines().next().unwrap();
    assert_eq!(row.find(&format!("as {NAT_IP}")), header.find("STATE"), "NAT rows aligned:\n{table}");
    drop(s);
    let peer = srv.join().unwrap().expect("the internet host accepted");
    assert_eq!(peer.ip().to_string(), NAT_EIP, "the internet must see the NAT's Elastic IP");
    assert_eq!(u64::from(peer.port()), nat_port, "the IGW keeps the NAT's port");

    // UDP.
    let usrv = udp_peer_server(&inet, addr(EXAMPLE, 53));
    let back = udp_roundtrip(&lab.ns("app"), None, addr(EXAMPLE, 53), b"udp via nat").expect("UDP via the NAT");
    assert_eq!(back, b"udp via nat");
    let peer = usrv.join().unwrap().expect("datagram arrived");
    assert_eq!(peer.ip().to_string(), NAT_EIP);
    assert!(peer.port() >= 1024, "{peer}");
    assert!(
        nat_entries(&lab, "nat-test").iter().any(|e| e["protocol"] == IpProto::UDP.0 && e["translated"][0] == NAT_IP),
        "{:#?}",
        lab.conntrack(None)
    );

    // ICMP echo.
    let out = lab.ping("app", EXAMPLE);
    assert!(out.status.success(), "ping via the NAT: {}", text(&out));
    assert!(
        nat_entries(&lab, "nat-test").iter().any(|e| e["protocol"] == IpProto::ICMP.0 && e["translated"][0] == NAT_IP),
        "{:#?}",
        lab.conntrack(None)
    );
}

#[test]
fn status_shows_the_nat_gateway_and_its_addresses() {
    let lab = TestLab::up("natstatus", &edge_topology(r#"ports = "2000-2010""#));
    let nats = lab.status()["nat_gateways"].clone();
    assert_eq!(nats[0]["id"], "nat-test", "{nats:#}");
    assert_eq!(nats[0]["private_ip"], NAT_IP);
    assert_eq!(nats[0]["elastic_ip"], NAT_EIP);
    assert_eq!(nats[0]["ports"], "2000-2010");
    let table = text(&vpclab(&["status", &lab.name]));
    assert!(table.contains("nat-test") && table.contains(NAT_EIP) && table.contains("SENT PKTS"), "{table}");
}

#[test]
fn trace_across_the_nat_gateway_shows_each_hop_and_its_rewrites() {
    let lab = TestLab::up("nattrace", &edge_topology(""));
    let t = lab.trace(&["--from", "app", "--to", EXAMPLE, "--dport", "80"]);
    assert_delivered(&t, "the internet");
    let routes = stages(&t, "route-lookup");
    assert_eq!(routes.len(), 2, "the private subnet's table, then the NAT's own: {t:#}");
    assert!(
        routes[0].contains("rtb-priv") && routes[0].contains("0.0.0.0/0") && routes[0].contains("nat-test"),
        "{t:#}"
    );
    assert!(routes[1].contains("rtb-pub") && routes[1].contains("igw-test"), "{t:#}");
    let nat = stages(&t, "nat-gateway");
    assert_eq!(nat.len(), 1, "{t:#}");
    assert!(nat[0].contains("10.0.2.10") && nat[0].contains(NAT_IP), "before and after: {t:#}");
    let igw = stages(&t, "internet-gateway");
    assert_eq!(igw.len(), 1, "{t:#}");
    assert!(igw[0].contains(NAT_IP) && igw[0].contains(NAT_EIP), "before and after: {t:#}");
    assert!(stage_at(&t, "route-lookup") < stage_at(&t, "nat-gateway"), "{t:#}");
    assert!(stage_at(&t, "nat-gateway") < stage_at(&t, "internet-gateway"), "{t:#}");
    // Read-only: no translation was made.
    assert!(nat_entries(&lab, "nat-test").is_empty(), "{:#?}", lab.conntrack(None));

    // The instance with an Elastic IP goes straight through the IGW, 1:1.
    let t = lab.trace(&["--from", "web", "--to", EXAMPLE, "--dport", "443"]);
    assert_delivered(&t, "the internet");
    assert!(stages(&t, "nat-gateway").is_empty(), "{t:#}");
    let igw = stages(&t, "internet-gateway");
    assert!(igw.len() == 1 && igw[0].contains("10.0.1.10") && igw[0].contains(WEB_EIP), "{t:#}");
}

#[test]
fn trace_shows_the_reply_path_from_the_internet() {
    let lab = TestLab::up("natback", &edge_topology(""));
    let t = lab.trace(&["--from", "example", "--to", WEB_EIP, "--dport", "8080"]);
    assert_delivered(&t, "eni-web");
    let igw = stages(&t, "internet-gateway");
    assert!(igw.len() == 1 && igw[0].contains(WEB_EIP) && igw[0].contains("10.0.1.10"), "{t:#}");
}

#[test]
fn the_internet_cannot_reach_private_addresses_nor_the_nat_unsolicited() {
    let lab = TestLab::up("natin", &edge_topology(""));
    let inet = lab.ns("internet");
    // Servers that sg-web admits from anywhere.
    let app_srv = tcp_echo_all(tcp_listen(&lab.ns("app"), addr("10.0.2.10", 8080)), 10, 12);
    let web_srv = tcp_echo_all(tcp_listen(&lab.ns("web"), addr("10.0.1.10", 8080)), 10, 12);

    // A NAT mapping exists (app -> example:80), so the NAT has a live port on its EIP.
    let ext = tcp_echo_all(tcp_listen(&inet, addr(EXAMPLE, 80)), 1, 20);
    let mut out_conn = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 80), 5).expect("outbound via the NAT");
    assert_eq!(echo_over(&mut out_conn, b"x").unwrap(), b"x");
    let nat_port = nat_entries(&lab, "nat-test")[0]["translated"][1].as_u64().unwrap() as u16;

    for dst in [addr("10.0.2.10", 8080), addr("10.0.1.10", 8080), addr(NAT_IP, 80)] {
        assert!(tcp_connect(&inet, dst, 2).is_err(), "the internet reached private {dst}");
    }
    // The NAT's EIP, on a common port and on the port of the live mapping, from another host
    // and from the mapped host's other ports.
    assert!(tcp_connect(&inet, addr(NAT_EIP, 8080), 2).is_err(), "unsolicited to the NAT's EIP");
    let other: Ipv4Addr = OTHER.parse().unwrap();
    let example: Ipv4Addr = EXAMPLE.parse().unwrap();
    assert!(tcp_connect_from(&inet, other, addr(NAT_EIP, nat_port), 2).is_err(), "another host rode the mapping");
    assert!(tcp_connect_from(&inet, example, addr(NAT_EIP, nat_port), 2).is_err(), "another port rode the mapping");
    for dst in ["10.0.2.10", "10.0.1.10", NAT_IP, NAT_EIP] {
        assert!(!ns_pings(&inet, dst), "the internet pinged {dst}");
    }
    // The established connection is unharmed.
    assert_eq!(echo_over(&mut out_conn, b"still").unwrap(), b"still");
    drop(out_conn);
    assert_eq!(ext.join().unwrap(), 1);
    assert_eq!(app_srv.join().unwrap(), 0, "the private instance accepted from the internet");
    assert_eq!(web_srv.join().unwrap(), 0, "reached at its private address from the internet");
}

#[test]
fn the_nat_gateway_does_not_answer_ping_on_its_addresses() {
    let lab = TestLab::up("natping", &edge_topology(""));
    assert!(!ns_pings(&lab.ns("internet"), NAT_EIP), "the NAT answered ping on its EIP");
    // Nor on its private address from inside the VPC.
    assert!(!pings(&lab, "web", NAT_IP), "the NAT answered ping on its private IP");
    assert!(!pings(&lab, "app", NAT_IP), "the NAT answered ping on its private IP");
}

#[test]
fn an_elastic_ip_reaches_its_instance_which_sees_only_its_private_address() {
    let lab = TestLab::up("eipin", &edge_topology(""));
    let inet = lab.ns("internet");
    let example: Ipv4Addr = EXAMPLE.parse().unwrap();

    let srv = tcp_peer_server(&lab.ns("web"), addr("10.0.1.10", 8080), 15);
    let mut s = tcp_connect_from(&inet, example, addr(WEB_EIP, 8080), 5).expect("the EIP is reachable with a rule");
    assert_eq!(echo_over(&mut s, b"hello eip").unwrap(), b"hello eip");
    assert_eq!(s.peer_addr().unwrap().ip().to_string(), WEB_EIP, "the internet talks to the EIP");
    drop(s);
    let peer = srv.join().unwrap().expect("web accepted");
    assert_eq!(peer.ip().to_string(), EXAMPLE, "the instance sees the internet host's real address");

    // The instance has no public address.
    let out = lab.exec("web", &["ip", "-4", "-o", "addr"]);
    assert!(out.status.success());
    let addrs = text(&out);
    assert!(addrs.contains("10.0.1.10") && !addrs.contains(WEB_EIP), "{addrs}");
    assert!(ns_pings(&inet, WEB_EIP), "ICMP admitted by sg-web");

    // Without a rule: refused at the ENI's groups, though a server listens.
    let _closed = tcp_listen(&lab.ns("web"), addr("10.0.1.10", 9090));
    assert!(tcp_connect(&lab.ns("web"), addr("10.0.1.10", 9090), 2).is_ok(), "the server listens");
    let before = lab.drops("eni-web", "security_group_ingress");
    assert!(tcp_connect_from(&inet, example, addr(WEB_EIP, 9090), 2).is_err(), "admitted without a rule");
    assert!(lab.drops("eni-web", "security_group_ingress") > before, "{}", lab.eni("eni-web"));
}

#[test]
fn an_instance_without_a_public_address_cannot_use_the_internet_gateway() {
    let lab = TestLab::up("nopub", &edge_topology(""));
    let srv = tcp_echo_all(tcp_listen(&lab.ns("internet"), addr(EXAMPLE, 80)), 5, 10);
    let before = lab.drops("eni-nopub", "no_public_address");
    assert!(tcp_connect(&lab.ns("nopub"), addr(EXAMPLE, 80), 2).is_err(), "no public address, yet it got out");
    assert!(!pings(&lab, "nopub", EXAMPLE));
    assert!(lab.drops("eni-nopub", "no_public_address") > before, "{}", lab.eni("eni-nopub"));
    let t = lab.trace(&["--from", "nopub", "--to", EXAMPLE, "--dport", "80"]);
    assert_dropped(&t, "no_public_address", "IGW_NO_PUBLIC_ADDRESS", "eni-nopub");
    assert!(stages(&t, "route-lookup")[0].contains("igw-test"), "{t:#}");
    // Its neighbour with an Elastic IP gets out through the same route.
    let mut s = tcp_connect(&lab.ns("web"), addr(EXAMPLE, 80), 5).expect("web with its EIP");
    assert_eq!(echo_over(&mut s, b"ok").unwrap(), b"ok");
    drop(s);
    assert_eq!(srv.join().unwrap(), 1, "only web's connection arrived");
}

#[test]
fn a_blackhole_route_drops_at_the_sender() {
    let lab = TestLab::up("hole", &edge_topology(""));
    // 192.0.2.5 is on the internet: web (default route to the IGW) reaches it.
    assert!(pings(&lab, "web", "192.0.2.5"), "web reaches the host behind app's blackhole");
    let before = lab.drops("eni-app", "blackhole");
    assert!(!pings(&lab, "app", "192.0.2.5"), "the blackhole let a ping through");
    assert!(tcp_connect(&lab.ns("app"), addr("192.0.2.5", 80), 2).is_err());
    assert!(lab.drops("eni-app", "blackhole") >= before + 2, "{}", lab.eni("eni-app"));
    for args in [&["--proto", "icmp"][..], &["--dport", "80"][..]] {
        let mut a = vec!["--from", "app", "--to", "192.0.2.5"];
        a.extend_from_slice(args);
        let t = lab.trace(&a);
        assert_dropped(&t, "blackhole", "BLACKHOLE_ROUTE", "eni-app");
        assert!(stages(&t, "route-lookup")[0].contains("192.0.2.0/24"), "{t:#}");
    }
    // Other destinations still use the NAT route.
    assert!(pings(&lab, "app", EXAMPLE));
}

const APPLIANCE: &str = r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-test"
cidr = "10.0.1.0/24"
route_table = "rtb-a"

[[subnet]]
id = "subnet-b"
vpc = "vpc-test"
cidr = "10.0.2.0/24"
route_table = "rtb-b"

[[subnet]]
id = "subnet-c"
vpc = "vpc-test"
cidr = "10.0.3.0/24"

[[route_table]]
id = "rtb-a"
vpc = "vpc-test"
routes = [ { destination = "10.0.2.0/24", target = "eni-appl" } ]

[[route_table]]
id = "rtb-b"
vpc = "vpc-test"
routes = [ { destination = "10.0.1.0/24", target = "eni-appl" } ]

[[security_group]]
id = "sg-all"
vpc = "vpc-test"
ingress = [ { protocol = "all", source = "10.0.0.0/16" } ]

[[instance]]
id = "a1"

[[instance]]
id = "b1"

[[instance]]
id = "appl"

[[network_interface]]
id = "eni-a1"
subnet = "subnet-a"
private_ip = "10.0.1.10"
security_groups = ["sg-all"]
attachment = { instance = "a1", device_index = 0 }

[[network_interface]]
id = "eni-b1"
subnet = "subnet-b"
private_ip = "10.0.2.10"
security_groups = ["sg-all"]
attachment = { instance = "b1", device_index = 0 }

[[network_interface]]
id = "eni-appl"
subnet = "subnet-c"
private_ip = "10.0.3.10"
security_groups = ["sg-all"]
source_dest_check = false
attachment = { instance = "appl", device_index = 0 }
"#;

fn sysctl(lab: &TestLab, instance: &str, setting: &str) {
    lab.must(instance, &["sysctl", "-w", setting]);
}

/// The appliance topology with a second appliance ENI in subnet D, rtb-b pointing at it, and the
/// appliance routing subnet B out of that ENI: each direction leaves by its own ENI.
fn appliance_two_enis() -> String {
    APPLIANCE.replace(
        r#"routes = [ { destination = "10.0.1.0/24", target = "eni-appl" } ]"#,
        r#"routes = [ { destination = "10.0.1.0/24", target = "eni-appl-1" } ]"#,
    ) + r#"
[[subnet]]
id = "subnet-d"
vpc = "vpc-test"
cidr = "10.0.4.0/24"

[[network_interface]]
id = "eni-appl-1"
subnet = "subnet-d"
private_ip = "10.0.4.10"
security_groups = ["sg-all"]
source_dest_check = false
attachment = { instance = "appl", device_index = 1 }
"#
}

/// a1 (subnet A) and b1 (subnet B) talk through the appliance while it forwards, and not when
/// it stops; `enis` are the appliance's ENIs, whose counters must rise.
fn appliance_forwards_only_while_enabled(lab: &TestLab, enis: &[&str]) {
    for s in ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"] {
        sysctl(lab, "appl", s);
    }
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5001"]);
    assert_delivered(&t, enis[0]);
    let route = stages(&t, "route-lookup")[0];
    assert!(route.contains("rtb-a") && route.contains("10.0.2.0/24") && route.contains(enis[0]), "{t:#}");
    let stop = stages(&t, "appliance");
    assert!(stop.len() == 1 && stop[0].contains("trace stops at this appliance"), "{t:#}");
    let t = lab.trace(&["--from", "b1", "--to", "10.0.1.10", "--proto", "icmp"]);
    assert_delivered(&t, enis[enis.len() - 1]);

    let sum = |name: &str| enis.iter().map(|e| lab.counter(e, name)).sum::<u64>();
    let (rx0, tx0) = (sum("rx_packets"), sum("tx_packets"));
    let out = lab.ping("a1", "10.0.2.10");
    assert!(out.status.success(), "a1 -> b1 through the appliance: {}", text(&out));
    let out = lab.ping("b1", "10.0.1.10");
    assert!(out.status.success(), "b1 -> a1 through the appliance: {}", text(&out));
    let srv = tcp_echo_server(&lab.ns("b1"), addr("10.0.2.10", 5001));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let back =
        tcp_echo_client(&lab.ns("a1"), addr("10.0.2.10", 5001), data.clone()).expect("TCP through the appliance");
    assert!(back == data, "echo differs");
    srv.join().unwrap();
    // 4 echo requests and 4 replies, each into the appliance and back out of it, and TCP too.
    let (rx, tx) = (sum("rx_packets") - rx0, sum("tx_packets") - tx0);
    assert!(rx >= 8 && tx >= 8, "appliance counters rose by rx {rx} tx {tx}");

    sysctl(lab, "appl", "net.ipv4.ip_forward=0");
    // Counters are the forwarder's: tx_packets are frames handed to the instance.
    let tx1 = sum("tx_packets");
    assert!(!pings(lab, "a1", "10.0.2.10"), "a1 -> b1 without forwarding");
    assert!(!pings(lab, "b1", "10.0.1.10"), "b1 -> a1 without forwarding");
    assert!(tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5002), 2).is_err());
    assert!(sum("tx_packets") > tx1, "the packets still went to the appliance");

    sysctl(lab, "appl", "net.ipv4.ip_forward=1");
    assert!(eventually(5, || pings(lab, "a1", "10.0.2.10")), "forwarding again");
}

#[test]
fn an_appliance_with_an_eni_per_direction_routes_between_subnets_only_while_it_forwards() {
    let lab = TestLab::up("appl2", &appliance_two_enis());
    lab.must("appl", &["ip", "route", "add", "10.0.2.0/24", "via", "10.0.4.1", "dev", "eth1"]);
    lab.must("appl", &["sysctl", "-w", "net.ipv4.conf.eth1.send_redirects=0"]);
    appliance_forwards_only_while_enabled(&lab, &["eni-appl", "eni-appl-1"]);
}

#[test]
fn an_appliance_with_one_eni_routes_between_subnets_only_while_it_forwards() {
    let lab = TestLab::up("appl", APPLIANCE);
    appliance_forwards_only_while_enabled(&lab, &["eni-appl"]);
}

const PEERING: &str = r#"
[[vpc]]
id = "vpc-a"
cidr = "10.1.0.0/16"

[[vpc]]
id = "vpc-b"
cidr = "10.2.0.0/16"

[[vpc]]
id = "vpc-c"
cidr = "10.3.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-a"
cidr = "10.1.1.0/24"
route_table = "rtb-a"

[[subnet]]
id = "subnet-b"
vpc = "vpc-b"
cidr = "10.2.1.0/24"
route_table = "rtb-b"

[[subnet]]
id = "subnet-c"
vpc = "vpc-c"
cidr = "10.3.1.0/24"
route_table = "rtb-c"

[[vpc_peering]]
id = "pcx-ab"
requester_vpc = "vpc-a"
accepter_vpc = "vpc-b"

[[vpc_peering]]
id = "pcx-bc"
requester_vpc = "vpc-b"
accepter_vpc = "vpc-c"

[[route_table]]
id = "rtb-a"
vpc = "vpc-a"
routes = [
  { destination = "10.2.0.0/16", target = "pcx-ab" },
  { destination = "10.3.0.0/16", target = "pcx-ab" },
]

[[route_table]]
id = "rtb-b"
vpc = "vpc-b"
routes = [
  { destination = "10.1.0.0/16", target = "pcx-ab" },
  { destination = "10.3.0.0/16", target = "pcx-bc" },
]

[[route_table]]
id = "rtb-c"
vpc = "vpc-c"
routes = [
  { destination = "10.2.0.0/16", target = "pcx-bc" },
  { destination = "10.1.0.0/16", target = "pcx-bc" },
]

[[security_group]]
id = "sg-a"
vpc = "vpc-a"
ingress = [ { protocol = "all", source = "10.0.0.0/8" } ]

[[security_group]]
id = "sg-b"
vpc = "vpc-b"
ingress = [ { protocol = "all", source = "10.0.0.0/8" } ]

[[security_group]]
id = "sg-c"
vpc = "vpc-c"
ingress = [ { protocol = "all", source = "10.0.0.0/8" } ]

[[instance]]
id = "a1"

[[instance]]
id = "b1"

[[instance]]
id = "c1"

[[network_interface]]
id = "eni-a1"
subnet = "subnet-a"
private_ip = "10.1.1.10"
security_groups = ["sg-a"]
attachment = { instance = "a1", device_index = 0 }

[[network_interface]]
id = "eni-b1"
subnet = "subnet-b"
private_ip = "10.2.1.10"
security_groups = ["sg-b"]
attachment = { instance = "b1", device_index = 0 }

[[network_interface]]
id = "eni-c1"
subnet = "subnet-c"
private_ip = "10.3.1.10"
security_groups = ["sg-c"]
attachment = { instance = "c1", device_index = 0 }
"#;

#[test]
fn peering_works_both_ways_and_is_not_transitive() {
    let lab = TestLab::up("pcx", PEERING);
    for (from, to) in [("a1", "10.2.1.10"), ("b1", "10.1.1.10"), ("b1", "10.3.1.10"), ("c1", "10.2.1.10")] {
        assert!(lab.ping(from, to).status.success(), "{from} -> {to} over the peering");
    }
    let srv = tcp_echo_server(&lab.ns("b1"), addr("10.2.1.10", 5001));
    let back = tcp_echo_client(&lab.ns("a1"), addr("10.2.1.10", 5001), b"over pcx-ab".to_vec()).expect("TCP a -> b");
    assert_eq!(back, b"over pcx-ab");
    srv.join().unwrap();
    let srv = tcp_echo_server(&lab.ns("a1"), addr("10.1.1.10", 5001));
    let back = tcp_echo_client(&lab.ns("b1"), addr("10.1.1.10", 5001), b"and back".to_vec()).expect("TCP b -> a");
    assert_eq!(back, b"and back");
    srv.join().unwrap();
    let t = lab.trace(&["--from", "a1", "--to", "10.2.1.10", "--dport", "5001"]);
    assert_delivered(&t, "eni-b1");
    assert!(stages(&t, "route-lookup").iter().any(|d| d.contains("pcx-ab")), "{t:#}");

    // Not transitive: a1 routes 10.3/16 to pcx-ab, but B does not pass it on to C.
    let before = lab.drops("eni-a1", "no_route");
    assert!(!pings(&lab, "a1", "10.3.1.10"), "a1 reached c1 through b's peering");
    assert!(!pings(&lab, "c1", "10.1.1.10"), "c1 reached a1 through b's peering");
    let _srv = tcp_listen(&lab.ns("c1"), addr("10.3.1.10", 5001));
    assert!(tcp_connect(&lab.ns("a1"), addr("10.3.1.10", 5001), 2).is_err());
    assert!(lab.drops("eni-a1", "no_route") > before, "{}", lab.eni("eni-a1"));
    let t = lab.trace(&["--from", "a1", "--to", "10.3.1.10", "--dport", "5001"]);
    assert_dropped(&t, "no_route", "NO_ROUTE_TO_DESTINATION", "eni-a1");
    let route = stages(&t, "route-lookup").join(" | ");
    assert!(route.contains("pcx-ab") && route.contains("10.2.0.0/16"), "the pcx reaches only B's CIDR: {t:#}");
}

#[test]
fn path_mtu_discovery_towards_the_internet() {
    let lab = TestLab::up("pmtu", &edge_topology(""));
    let out = lab.exec("web", &["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "2000", EXAMPLE]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("Frag needed") && said.contains("mtu = 1500"), "{said}");
    // The instance learnt the path MTU (on the route its address's rule picks: eth0's table).
    let route = text(&lab.exec("web", &["ip", "route", "get", EXAMPLE, "from", "10.0.1.10"]));
    assert!(route.contains("mtu 1500"), "{route}");
    // A large ping that fits the inside (9001) but not the internet, without DF, still works.
    let out = lab.exec("web", &["ping", "-c", "1", "-W", "2", "-s", "1472", EXAMPLE]);
    assert!(out.status.success(), "{}", text(&out));

    let srv = tcp_echo_server(&lab.ns("internet"), addr(EXAMPLE, 8000));
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let back = tcp_echo_client(&lab.ns("web"), addr(EXAMPLE, 8000), data.clone()).expect("1 MB through the IGW");
    assert!(back == data, "1 MB echo differs: {} bytes back", back.len());
    srv.join().unwrap();
    // The same through the NAT gateway.
    let srv = tcp_echo_server(&lab.ns("internet"), addr(EXAMPLE, 8001));
    let back = tcp_echo_client(&lab.ns("app"), addr(EXAMPLE, 8001), data.clone()).expect("1 MB through the NAT");
    assert!(back == data, "1 MB echo via NAT differs: {} bytes back", back.len());
    srv.join().unwrap();
}

#[test]
fn a_small_nat_port_range_runs_out_per_destination() {
    let lab = TestLab::up("natports", &edge_topology(r#"ports = "1024-1025""#));
    let inet = lab.ns("internet");
    let srv80 = tcp_echo_all(tcp_listen(&inet, addr(EXAMPLE, 80)), 3, 12);
    let srv81 = tcp_echo_all(tcp_listen(&inet, addr(EXAMPLE, 81)), 1, 30);
    let srv_other = tcp_echo_all(tcp_listen(&inet, addr(OTHER, 80)), 1, 30);

    let mut c1 = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 80), 5).expect("first connection");
    let mut c2 = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 80), 5).expect("second connection");
    assert_eq!(echo_over(&mut c1, b"one").unwrap(), b"one");
    assert_eq!(echo_over(&mut c2, b"two").unwrap(), b"two");
    let mut ports: Vec<u64> =
        nat_entries(&lab, "nat-test").iter().map(|e| e["translated"][1].as_u64().unwrap()).collect();
    ports.sort();
    assert_eq!(ports, [1024, 1025], "{:#?}", lab.conntrack(None));

    let before = lab.drops("eni-app", "nat_port_allocation");
    assert!(tcp_connect(&lab.ns("app"), addr(EXAMPLE, 80), 2).is_err(), "a third connection got a port");
    assert!(lab.drops("eni-app", "nat_port_allocation") > before, "{}", lab.eni("eni-app"));

    // Another port, another host: other destinations, ports of their own.
    let mut c3 = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 81), 5).expect("another port");
    assert_eq!(echo_over(&mut c3, b"three").unwrap(), b"three");
    let mut c4 = tcp_connect(&lab.ns("app"), addr(OTHER, 80), 5).expect("another host");
    assert_eq!(echo_over(&mut c4, b"four").unwrap(), b"four");
    // The held connections go on.
    assert_eq!(echo_over(&mut c1, b"still").unwrap(), b"still");
    drop((c1, c2, c3, c4));
    assert_eq!(srv80.join().unwrap(), 2, "the third connection reached the server");
    assert_eq!(srv81.join().unwrap(), 1);
    assert_eq!(srv_other.join().unwrap(), 1);
}

#[test]
fn trace_agrees_with_nat_port_exhaustion() {
    let lab = TestLab::up("natportstr", &edge_topology(r#"ports = "1024-1025""#));
    let t = lab.trace(&["--from", "app", "--to", EXAMPLE, "--dport", "80"]);
    let nat = stages(&t, "nat-gateway");
    assert!(nat.len() == 1 && (nat[0].contains(":1024") || nat[0].contains(":1025")), "a port of the range: {t:#}");
    let srv = tcp_echo_all(tcp_listen(&lab.ns("internet"), addr(EXAMPLE, 80)), 2, 10);
    let c1 = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 80), 5).expect("first connection");
    let c2 = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 80), 5).expect("second connection");
    let t = lab.trace(&["--from", "app", "--to", EXAMPLE, "--dport", "80"]);
    assert_dropped(&t, "nat_port_allocation", "NAT_ERROR_PORT_ALLOCATION", "eni-app");
    drop((c1, c2));
    assert_eq!(srv.join().unwrap(), 2);
}

/// Three connections from `app` through the NAT gateway: how many kept their source port.
fn nat_kept_ports(lab: &TestLab) -> usize {
    let inet = lab.ns("internet");
    let mut kept = 0;
    for i in 0..3u16 {
        let srv = tcp_peer_server(&inet, addr(EXAMPLE, 8100 + i), 10);
        let s = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 8100 + i), 5).expect("through the NAT gateway");
        let local = s.local_addr().unwrap().port();
        drop(s);
        let peer = srv.join().unwrap().expect("the host accepted");
        assert_eq!(peer.ip().to_string(), NAT_EIP);
        kept += usize::from(peer.port() == local);
    }
    kept
}

#[test]
fn the_nat_gateway_spreads_source_ports_unless_told_to_preserve_them() {
    let lab = TestLab::up("natsport", &edge_topology(""));
    assert!(nat_kept_ports(&lab) < 3, "every connection kept its client port");
    let kept = TestLab::up("natkeep", &edge_topology(r#"source_ports = "preserve""#));
    assert_eq!(nat_kept_ports(&kept), 3, "source_ports = \"preserve\" did not keep the client ports");
}
