//! The lab's own public addresses reached through the internet gateway (issue 13): the packet
//! leaves through the gateway and comes back in through it, as on AWS, so the receiver sees the
//! sender's public address and judges that with its groups and its subnet's ACL.

mod common;

use common::*;

const WEB_EIP: &str = "203.0.113.70";
const PEER_EIP: &str = "203.0.113.71";
const NAT_EIP: &str = "203.0.113.72";

/// vpc-a: `web` (Elastic IP) in a public subnet whose ACL refuses TCP 8082 in, `app` in a private
/// subnet behind a NAT gateway. vpc-b (not peered): `peer` with an Elastic IP. web's group admits
/// 8080 from sg-app (a group reference) and 8081 from anywhere.
const LAB: &str = r#"
[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[vpc]]
id = "vpc-b"
cidr = "10.9.0.0/16"

[[subnet]]
id = "pub-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
route_table = "rtb-pub-a"
network_acl = "acl-pub"

[[subnet]]
id = "priv-a"
vpc = "vpc-a"
cidr = "10.0.2.0/24"
route_table = "rtb-priv-a"

[[subnet]]
id = "pub-b"
vpc = "vpc-b"
cidr = "10.9.1.0/24"
route_table = "rtb-pub-b"

[[internet_gateway]]
id = "igw-a"
vpc = "vpc-a"

[[internet_gateway]]
id = "igw-b"
vpc = "vpc-b"

[[elastic_ip]]
id = "eip-web"
public_ip = "203.0.113.70"
network_interface = "eni-web"

[[elastic_ip]]
id = "eip-peer"
public_ip = "203.0.113.71"
network_interface = "eni-peer"

[[elastic_ip]]
id = "eip-nat"
public_ip = "203.0.113.72"

[[nat_gateway]]
id = "nat-a"
subnet = "pub-a"
elastic_ip = "eip-nat"

[[route_table]]
id = "rtb-pub-a"
vpc = "vpc-a"
routes = [{ destination = "0.0.0.0/0", target = "igw-a" }]

[[route_table]]
id = "rtb-priv-a"
vpc = "vpc-a"
routes = [{ destination = "0.0.0.0/0", target = "nat-a" }]

[[route_table]]
id = "rtb-pub-b"
vpc = "vpc-b"
routes = [{ destination = "0.0.0.0/0", target = "igw-b" }]

[[network_acl]]
id = "acl-pub"
vpc = "vpc-a"
ingress = [
  { rule = 100, protocol = "tcp", ports = "8082", cidr = "0.0.0.0/0", action = "deny" },
  { rule = 200, protocol = "all", cidr = "0.0.0.0/0", action = "allow" },
]
egress = [{ rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" }]

[[security_group]]
id = "sg-web"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "8080", source = "sg-app" },
  { protocol = "tcp", ports = "8081-8082", source = "0.0.0.0/0" },
  { protocol = "icmp", source = "0.0.0.0/0" },
]

[[security_group]]
id = "sg-app"
vpc = "vpc-a"
ingress = [{ protocol = "tcp", ports = "8081", source = "0.0.0.0/0" }]

[[security_group]]
id = "sg-peer"
vpc = "vpc-b"
ingress = [{ protocol = "tcp", ports = "8081", source = "0.0.0.0/0" }]

[[instance]]
id = "web"

[[instance]]
id = "app"

[[instance]]
id = "peer"

[[network_interface]]
id = "eni-web"
subnet = "pub-a"
private_ip = "10.0.1.10"
security_groups = ["sg-web"]
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-app"
subnet = "priv-a"
private_ip = "10.0.2.10"
security_groups = ["sg-app"]
attachment = { instance = "app", device_index = 0 }

[[network_interface]]
id = "eni-peer"
subnet = "pub-b"
private_ip = "10.9.1.10"
security_groups = ["sg-peer"]
attachment = { instance = "peer", device_index = 0 }

[internet]
hosts = [{ id = "example", ip = "198.51.100.7" }]
"#;

/// Connects from `client` to `dst`:`port` served by `server` on `server_ip`; echoes a message
/// and returns the source address the server saw.
fn seen_by_server(lab: &TestLab, client: &str, server: &str, server_ip: &str, dst: &str, port: u16) -> Option<String> {
    let srv = tcp_peer_server(&lab.ns(server), addr(server_ip, port), 10);
    let mut s = tcp_connect(&lab.ns(client), addr(dst, port), 5).ok()?;
    assert_eq!(echo_over(&mut s, b"hairpin").unwrap(), b"hairpin");
    drop(s);
    srv.join().unwrap().map(|p| p.ip().to_string())
}

#[test]
fn elastic_ips_of_the_lab_are_reached_back_in_through_the_internet_gateway() {
    let lab = TestLab::up("hairpin", LAB);
    // Another VPC's instance, by Elastic IP: it sees web's Elastic IP.
    let seen = seen_by_server(&lab, "web", "peer", "10.9.1.10", PEER_EIP, 8081);
    assert_eq!(seen.as_deref(), Some(WEB_EIP), "peer saw the wrong source");
    // The same VPC, from behind the NAT gateway: web sees the NAT gateway's Elastic IP.
    let seen = seen_by_server(&lab, "app", "web", "10.0.1.10", WEB_EIP, 8081);
    assert_eq!(seen.as_deref(), Some(NAT_EIP), "web saw the wrong source");
    // An instance to its own Elastic IP.
    let seen = seen_by_server(&lab, "web", "web", "10.0.1.10", WEB_EIP, 8081);
    assert_eq!(seen.as_deref(), Some(WEB_EIP));
    // The VPC router answers ping to its own address (groups and ACLs do not filter it), and
    // drops anything else sent to it under its own reason.
    assert!(pings(&lab, "app", "10.0.2.1"), "{}", text(&lab.ping("app", "10.0.2.1")));
    let _ = tcp_connect(&lab.ns("app"), addr("10.0.2.1", 22), 1);
    assert!(lab.drops("eni-app", "router_address") >= 1, "{}", lab.eni("eni-app"));
    // Ping over the hairpin works both ways through the NAT gateway.
    assert!(pings(&lab, "app", WEB_EIP), "{}", text(&lab.ping("app", WEB_EIP)));
}

#[test]
fn a_hairpin_is_judged_by_its_public_source_and_both_subnets_acls() {
    let lab = TestLab::up("hairjudge", LAB);
    // sg-web admits 8080 from sg-app's members, but what arrives comes from the NAT's address.
    let _srv = tcp_listen(&lab.ns("web"), addr("10.0.1.10", 8080));
    let before = lab.drops("eni-web", "security_group_ingress");
    assert!(tcp_connect(&lab.ns("app"), addr(WEB_EIP, 8080), 2).is_err(), "a group reference matched a public source");
    assert!(lab.drops("eni-web", "security_group_ingress") > before, "{}", lab.eni("eni-web"));
    // Directly, by private address, the group reference admits it.
    assert!(tcp_connect(&lab.ns("app"), addr("10.0.1.10", 8080), 2).is_ok());
    // web's subnet ACL refuses 8082 on the way in, though the group admits it.
    let _srv2 = tcp_listen(&lab.ns("web"), addr("10.0.1.10", 8082));
    let before = lab.drops("eni-web", "network_acl_ingress");
    assert!(tcp_connect(&lab.ns("peer"), addr(WEB_EIP, 8082), 2).is_err(), "the ACL let 8082 in");
    assert!(lab.drops("eni-web", "network_acl_ingress") > before, "{}", lab.eni("eni-web"));
    // The internet's MTU of 1500 applies on the way: DF and 1501 bytes get fragmentation needed.
    let out = lab.exec("peer", &["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1473", WEB_EIP]);
    let said = text(&out);
    assert!(!out.status.success() && said.contains("mtu = 1500"), "{said}");
    // trace shows the way out and back in.
    let t = lab.trace(&["--from", "peer", "--to", WEB_EIP, "--dport", "8081"]);
    assert_delivered(&t, "eni-web");
    let said = t.to_string();
    assert!(said.contains("hairpin") && said.contains("203.0.113.71") && said.contains("10.0.1.10"), "{t:#}");
}
