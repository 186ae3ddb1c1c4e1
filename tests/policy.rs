//! Security groups, network ACLs, source/destination check and conntrack, proven with real traffic
//! between the namespaces of real labs; for each behaviour `vpclab trace` must tell the same story.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use serde_json::Value;
use vpclab::packet::IpProto;

const VPC: &str = r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"
"#;

fn subnet(id: &str, cidr: &str, acl: Option<&str>) -> String {
    let acl = acl.map(|a| format!("network_acl = \"{a}\"\n")).unwrap_or_default();
    format!("\n[[subnet]]\nid = \"{id}\"\nvpc = \"vpc-test\"\ncidr = \"{cidr}\"\n{acl}")
}

/// An ENI attached to `instance` (declared too when `device` is 0); `extra` holds more fields.
fn eni(id: &str, subnet: &str, ip: &str, instance: &str, device: u8, extra: &str) -> String {
    let inst = if device == 0 { format!("\n[[instance]]\nid = \"{instance}\"\n") } else { String::new() };
    format!(
        "{inst}\n[[network_interface]]\nid = \"{id}\"\nsubnet = \"{subnet}\"\nprivate_ip = \"{ip}\"\n{extra}\n\
         attachment = {{ instance = \"{instance}\", device_index = {device} }}\n"
    )
}

/// The detail of the first stage named `stage`.
fn stage<'a>(t: &'a Value, stage: &str) -> Option<&'a str> {
    t["stages"].as_array().unwrap().iter().find(|s| s["stage"] == stage).and_then(|s| s["detail"].as_str())
}

/// A UDP socket bound in `ns`, with a short read timeout.
fn udp_bind(ns: &str, a: SocketAddrV4) -> UdpSocket {
    in_ns(ns, move || {
        let s = UdpSocket::bind(a).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
        s
    })
    .join()
    .unwrap()
}

#[test]
fn inbound_is_refused_without_a_rule_while_a_server_listens_and_allowed_with_one() {
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        subnet("subnet-b", "10.0.2.0/24", None),
        r#"
[[security_group]]
id = "sg-srv"
vpc = "vpc-test"
ingress = [ { protocol = "tcp", ports = "5001", source = "10.0.0.0/16" } ]
"#
        .to_string(),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, ""),
        eni("eni-b1", "subnet-b", "10.0.2.10", "b1", 0, "security_groups = [\"sg-srv\"]"),
    ]
    .concat();
    let lab = TestLab::up("sgin", &topo);
    let open = tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001));
    let _closed = tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5002));
    let srv = tcp_echo_all(open, 1, 30);
    // The server on 5002 does listen: from inside b1 it answers.
    assert!(tcp_connect(&lab.ns("b1"), addr("10.0.2.10", 5002), 2).is_ok());

    let before = lab.drops("eni-b1", "security_group_ingress");
    let refused = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5002), 2);
    assert!(refused.is_err(), "a connection without an ingress rule got through");
    assert!(lab.drops("eni-b1", "security_group_ingress") > before, "{}", lab.eni("eni-b1"));
    assert_eq!(lab.drops("eni-a1", "security_group_ingress"), 0, "counted on the sender");
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5002"]);
    assert_dropped(&t, "security_group_ingress", "ENI_SG_RULES_MISMATCH", "eni-b1");

    // ICMP has no rule either.
    let out = lab.exec("a1", &["ping", "-c", "1", "-W", "1", "10.0.2.10"]);
    assert!(!out.status.success(), "ping got through: {}", text(&out));
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--proto", "icmp"]);
    assert_dropped(&t, "security_group_ingress", "ENI_SG_RULES_MISMATCH", "eni-b1");

    let mut s = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).expect("the port with a rule");
    assert_eq!(echo_over(&mut s, b"allowed").unwrap(), b"allowed");
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5001"]);
    assert_delivered(&t, "eni-b1");
    assert!(stage(&t, "sg-ingress").unwrap().contains("sg-srv"), "{t:#}");
    drop(s);
    assert_eq!(srv.join().unwrap(), 1);
}

#[test]
fn a_group_reference_admits_members_and_refuses_others() {
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        subnet("subnet-b", "10.0.2.0/24", None),
        r#"
[[security_group]]
id = "sg-web"
vpc = "vpc-test"

[[security_group]]
id = "sg-app"
vpc = "vpc-test"
ingress = [
  { protocol = "tcp", ports = "5001", source = "sg-web" },
  { protocol = "udp", ports = "7000", source = "sg-web" },
]
"#
        .to_string(),
        eni(
            "eni-web",
            "subnet-a",
            "10.0.1.10",
            "web",
            0,
            "secondary_private_ips = [\"10.0.1.11\"]\nsecurity_groups = [\"sg-web\"]",
        ),
        eni("eni-other", "subnet-a", "10.0.1.20", "other", 0, ""),
        eni("eni-app", "subnet-b", "10.0.2.10", "app", 0, "security_groups = [\"sg-app\"]"),
    ]
    .concat();
    let lab = TestLab::up("sgref", &topo);
    let srv = tcp_echo_all(tcp_listen(&lab.ns("app"), addr("10.0.2.10", 5001)), 1, 30);
    let udp = udp_echo_server(&lab.ns("app"), addr("10.0.2.10", 7000), 2);

    // A member, by its primary and by its secondary address.
    let mut s = tcp_connect(&lab.ns("web"), addr("10.0.2.10", 5001), 3).expect("member connects");
    assert_eq!(echo_over(&mut s, b"member").unwrap(), b"member");
    let back = udp_roundtrip(&lab.ns("web"), Some(Ipv4Addr::new(10, 0, 1, 11)), addr("10.0.2.10", 7000), b"2nd")
        .expect("a member's secondary IP is matched by the reference");
    assert_eq!(back, b"2nd");
    assert_delivered(&lab.trace(&["--from", "web", "--to", "10.0.2.10", "--dport", "5001"]), "eni-app");

    // A non-member of the same subnet.
    let before = lab.drops("eni-app", "security_group_ingress");
    assert!(tcp_connect(&lab.ns("other"), addr("10.0.2.10", 5001), 2).is_err(), "a non-member got in");
    assert!(
        udp_roundtrip(&lab.ns("other"), None, addr("10.0.2.10", 7000), b"no").is_err(),
        "a non-member's datagram was answered"
    );
    assert!(lab.drops("eni-app", "security_group_ingress") >= before + 2, "{}", lab.eni("eni-app"));
    let t = lab.trace(&["--from", "other", "--to", "10.0.2.10", "--dport", "5001"]);
    assert_dropped(&t, "security_group_ingress", "ENI_SG_RULES_MISMATCH", "eni-app");
    let t = lab.trace(&["--from", "other", "--to", "10.0.2.10", "--proto", "udp", "--dport", "7000"]);
    assert_dropped(&t, "security_group_ingress", "ENI_SG_RULES_MISMATCH", "eni-app");
    drop(s);
    assert_eq!(srv.join().unwrap(), 1);
    // The UDP server got the two members' datagrams only (the second was the one it waited for).
    udp.join().unwrap();
}

#[test]
fn replies_flow_with_no_egress_rules_but_the_server_cannot_initiate() {
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        subnet("subnet-b", "10.0.2.0/24", None),
        r#"
[[security_group]]
id = "sg-srv"
vpc = "vpc-test"
ingress = [
  { protocol = "tcp", ports = "5001", source = "10.0.0.0/16" },
  { protocol = "udp", ports = "7000", source = "10.0.0.0/16" },
]
egress = []

[[security_group]]
id = "sg-cli"
vpc = "vpc-test"
ingress = [ { protocol = "all", source = "10.0.0.0/16" } ]
"#
        .to_string(),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, "security_groups = [\"sg-cli\"]"),
        eni("eni-b1", "subnet-b", "10.0.2.10", "b1", 0, "security_groups = [\"sg-srv\"]"),
    ]
    .concat();
    let lab = TestLab::up("noegress", &topo);
    let srv = tcp_echo_all(tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001)), 1, 30);
    let udp = udp_echo_server(&lab.ns("b1"), addr("10.0.2.10", 7000), 2);

    // The server answers what it was asked, TCP and UDP (a request/response and then a stream).
    let mut s = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).expect("client connects");
    for i in 0..5u8 {
        let msg = vec![i; 3000];
        assert_eq!(echo_over(&mut s, &msg).unwrap(), msg);
    }
    let c = in_ns(&lab.ns("a1"), || {
        let c = UdpSocket::bind("10.0.1.10:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c
    })
    .join()
    .unwrap();
    for msg in [&b"one"[..], b"two"] {
        c.send_to(msg, "10.0.2.10:7000").unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = c.recv_from(&mut buf).expect("UDP reply with egress = []");
        assert_eq!(&buf[..n], msg);
    }
    udp.join().unwrap();
    assert_eq!(lab.drops("eni-b1", "security_group_egress"), 0, "a reply was dropped: {}", lab.eni("eni-b1"));
    assert_delivered(&lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--proto", "udp", "--dport", "7000"]), "eni-b1");

    // The same server initiating: nothing leaves.
    let _l = tcp_listen(&lab.ns("a1"), addr("10.0.1.10", 5003));
    let before = lab.drops("eni-b1", "security_group_egress");
    assert!(tcp_connect(&lab.ns("b1"), addr("10.0.1.10", 5003), 2).is_err(), "the server initiated");
    assert!(lab.drops("eni-b1", "security_group_egress") > before, "{}", lab.eni("eni-b1"));
    let t = lab.trace(&["--from", "b1", "--to", "10.0.1.10", "--dport", "5003"]);
    assert_dropped(&t, "security_group_egress", "ENI_SG_RULES_MISMATCH", "eni-b1");
    // The established connection still works after all that.
    assert_eq!(echo_over(&mut s, b"still").unwrap(), b"still");
    drop(s);
    srv.join().unwrap();
}

#[test]
fn a_low_numbered_acl_deny_beats_a_higher_allow() {
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        subnet("subnet-b", "10.0.2.0/24", Some("acl-b")),
        r#"
[[network_acl]]
id = "acl-b"
vpc = "vpc-test"
ingress = [
  { rule = 90, protocol = "tcp", ports = "5001", cidr = "10.0.1.0/24", action = "deny" },
  { rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" },
]
egress = [ { rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" } ]
"#
        .to_string(),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, ""),
        eni("eni-b1", "subnet-b", "10.0.2.10", "b1", 0, ""),
    ]
    .concat();
    let lab = TestLab::up("aclorder", &topo);
    let _denied = tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001));
    let srv = tcp_echo_all(tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5002)), 1, 30);

    let before = lab.drops("eni-b1", "network_acl_ingress");
    assert!(tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 2).is_err(), "rule 90 did not deny");
    assert!(lab.drops("eni-b1", "network_acl_ingress") > before, "{}", lab.eni("eni-b1"));
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5001"]);
    assert_dropped(&t, "network_acl_ingress", "NACL_DENY_RULE", "eni-b1");
    assert!(stage(&t, "nacl-ingress").unwrap().contains("rule 90"), "{t:#}");

    let mut s = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5002), 3).expect("rule 100 allows 5002");
    assert_eq!(echo_over(&mut s, b"5002").unwrap(), b"5002");
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5002"]);
    assert_delivered(&t, "eni-b1");
    assert!(stage(&t, "nacl-ingress").unwrap().contains("rule 100"), "{t:#}");
    drop(s);
    srv.join().unwrap();
}

#[test]
fn replies_are_lost_when_an_acl_lacks_ephemeral_ports() {
    // Clients in two subnets: A's ACL lets in only tcp 80, C's also 1024-65535.
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", Some("acl-noeph")),
        subnet("subnet-b", "10.0.2.0/24", None),
        subnet("subnet-c", "10.0.3.0/24", Some("acl-eph")),
        r#"
[[network_acl]]
id = "acl-noeph"
vpc = "vpc-test"
ingress = [ { rule = 100, protocol = "tcp", ports = "80", cidr = "0.0.0.0/0", action = "allow" } ]
egress = [ { rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" } ]

[[network_acl]]
id = "acl-eph"
vpc = "vpc-test"
ingress = [
  { rule = 100, protocol = "tcp", ports = "80", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 110, protocol = "tcp", ports = "1024-65535", cidr = "0.0.0.0/0", action = "allow" },
]
egress = [ { rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" } ]
"#
        .to_string(),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, ""),
        eni("eni-b1", "subnet-b", "10.0.2.10", "b1", 0, ""),
        eni("eni-c1", "subnet-c", "10.0.3.10", "c1", 0, ""),
    ]
    .concat();
    let lab = TestLab::up("ephemeral", &topo);
    let srv = tcp_echo_all(tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001)), 1, 30);

    let before = lab.drops("eni-a1", "network_acl_ingress");
    assert!(tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 2).is_err(), "replies got in");
    // The SYN went out and was answered; the answers died at A's ACL, counted on the client.
    assert!(lab.counter("eni-b1", "rx_packets") >= 1, "{}", lab.eni("eni-b1"));
    assert!(lab.drops("eni-a1", "network_acl_ingress") > before, "{}", lab.eni("eni-a1"));
    assert_eq!(lab.drops("eni-b1", "network_acl_ingress"), 0);
    // trace: the request passes, the reply (5001 -> an ephemeral port) is denied entering A.
    assert_delivered(&lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5001"]), "eni-b1");
    let t = lab.trace(&["--from", "b1", "--to", "10.0.1.10", "--sport", "5001", "--dport", "40000"]);
    assert_dropped(&t, "network_acl_ingress", "NACL_DENY_RULE", "eni-a1");

    let mut s = tcp_connect(&lab.ns("c1"), addr("10.0.2.10", 5001), 3).expect("with ephemeral ports allowed");
    assert_eq!(echo_over(&mut s, b"ephemeral").unwrap(), b"ephemeral");
    assert_eq!(lab.drops("eni-c1", "network_acl_ingress"), 0);
    let t = lab.trace(&["--from", "b1", "--to", "10.0.3.10", "--sport", "5001", "--dport", "40000"]);
    assert_delivered(&t, "eni-c1");
    assert!(stage(&t, "nacl-ingress").unwrap().contains("rule 110"), "{t:#}");
    drop(s);
    srv.join().unwrap();
}

#[test]
fn no_acl_applies_inside_a_subnet() {
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", Some("acl-deny")),
        subnet("subnet-b", "10.0.2.0/24", None),
        "\n[[network_acl]]\nid = \"acl-deny\"\nvpc = \"vpc-test\"\n".to_string(),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, ""),
        eni("eni-a2", "subnet-a", "10.0.1.20", "a2", 0, ""),
        eni("eni-b1", "subnet-b", "10.0.2.10", "b1", 0, ""),
    ]
    .concat();
    let lab = TestLab::up("intra", &topo);
    let srv = tcp_echo_all(tcp_listen(&lab.ns("a2"), addr("10.0.1.20", 5001)), 1, 30);
    let mut s = tcp_connect(&lab.ns("a1"), addr("10.0.1.20", 5001), 3).expect("within a deny-all subnet");
    assert_eq!(echo_over(&mut s, b"inside").unwrap(), b"inside");
    let out = lab.ping("a1", "10.0.1.20");
    assert!(out.status.success(), "{}", text(&out));
    let t = lab.trace(&["--from", "a1", "--to", "10.0.1.20", "--dport", "5001"]);
    assert_delivered(&t, "eni-a2");
    assert!(stage(&t, "nacl-egress").is_none() && stage(&t, "nacl-ingress").is_none(), "{t:#}");

    // The ACL is in force for traffic leaving the subnet.
    let _l = tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001));
    let before = lab.drops("eni-a1", "network_acl_egress");
    assert!(tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 2).is_err(), "the deny-all ACL let it out");
    assert!(lab.drops("eni-a1", "network_acl_egress") > before, "{}", lab.eni("eni-a1"));
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5001"]);
    assert_dropped(&t, "network_acl_egress", "NACL_DENY_RULE", "eni-a1");
    drop(s);
    srv.join().unwrap();
}

#[test]
fn spoofed_source_ip_mac_and_arp_never_leave_the_eni() {
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, ""),
        eni("eni-a2", "subnet-a", "10.0.1.20", "a2", 0, ""),
    ]
    .concat();
    let lab = TestLab::up("spoof", &topo);
    let mac = |e: &str| -> vpclab::model::Mac { lab.eni(e)["mac"].as_str().unwrap().parse().unwrap() };
    let (a1_mac, a2_mac) = (mac("eni-a1"), mac("eni-a2"));
    let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
    let sink = udp_bind(&lab.ns("a2"), addr("10.0.1.20", 7000));
    let received = |sink: &UdpSocket| {
        let mut buf = [0u8; 64];
        sink.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
    };

    // An honest ARP request is answered, not counted as spoofing.
    inject_frames(
        &lab.ns("a1"),
        "eth0",
        vec![vpclab::packet::build::arp_request(a1_mac, ip("10.0.1.10"), ip("10.0.1.20"))],
    );
    // ARP claiming an address a1 does not own.
    inject_frames(
        &lab.ns("a1"),
        "eth0",
        vec![vpclab::packet::build::arp_request(a1_mac, ip("10.0.1.99"), ip("10.0.1.20"))],
    );
    assert!(eventually(3, || lab.drops("eni-a1", "arp_spoof") == 1), "{}", lab.eni("eni-a1"));

    // A frame from a MAC that is not the ENI's.
    let fake_mac: vpclab::model::Mac = "02:00:00:00:00:99".parse().unwrap();
    let frame = vpclab::packet::build::udp(a2_mac, fake_mac, ip("10.0.1.10"), ip("10.0.1.20"), 5555, 7000, b"mac");
    inject_frames(&lab.ns("a1"), "eth0", vec![frame]);
    assert!(eventually(3, || lab.drops("eni-a1", "source_mac_mismatch") >= 1), "{}", lab.eni("eni-a1"));
    assert_eq!(received(&sink), None, "the spoofed-MAC frame was delivered");

    // A source IP a1 does not own, sent by a1's own stack (neighbour pinned so no ARP is needed).
    lab.must("a1", &["ip", "addr", "add", "10.0.1.99/32", "dev", "eth0"]);
    lab.must(
        "a1",
        &["ip", "neigh", "replace", "10.0.1.20", "lladdr", &a2_mac.to_string(), "dev", "eth0", "nud", "permanent"],
    );
    udp_send(&lab.ns("a1"), Some(ip("10.0.1.99")), addr("10.0.1.20", 7000), b"spoofed");
    assert!(eventually(3, || lab.drops("eni-a1", "source_check") >= 1), "{}", lab.eni("eni-a1"));
    assert_eq!(received(&sink), None, "the spoofed-source datagram was delivered");
    // The same socket path with a1's own address gets through (the drops above were the spoofing's).
    udp_send(&lab.ns("a1"), Some(ip("10.0.1.10")), addr("10.0.1.20", 7000), b"honest");
    assert_eq!(received(&sink).as_deref(), Some(&b"honest"[..]));
    assert_delivered(&lab.trace(&["--from", "a1", "--to", "10.0.1.20", "--proto", "udp", "--dport", "7000"]), "eni-a2");
    assert_eq!(lab.drops("eni-a1", "arp_spoof"), 1);
}

/// An appliance between subnets A and B: `router` has eth0 in A and eth1 in B.
fn appliance_lab(tag: &str, check: bool) -> TestLab {
    let sdc = format!("source_dest_check = {check}\nsecurity_groups = [\"sg-all\"]");
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        subnet("subnet-b", "10.0.2.0/24", None),
        r#"
[[security_group]]
id = "sg-all"
vpc = "vpc-test"
ingress = [ { protocol = "all", source = "10.0.0.0/16" } ]
"#
        .to_string(),
        eni("eni-r0", "subnet-a", "10.0.1.5", "router", 0, &sdc),
        eni("eni-r1", "subnet-b", "10.0.2.5", "router", 1, &sdc),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, "security_groups = [\"sg-all\"]"),
        eni("eni-b1", "subnet-b", "10.0.2.10", "b1", 0, "security_groups = [\"sg-all\"]"),
    ]
    .concat();
    let lab = TestLab::up(tag, &topo);
    lab.must("router", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for k in ["all", "default", "eth0", "eth1"] {
        lab.must("router", &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.rp_filter=0")]);
    }
    lab.must("router", &["ip", "route", "replace", "10.0.2.10/32", "dev", "eth1"]);
    lab.must("router", &["ip", "route", "replace", "10.0.1.10/32", "dev", "eth0"]);
    lab.must("a1", &["ip", "route", "add", "10.0.2.10/32", "via", "10.0.1.5"]);
    lab.must("b1", &["ip", "route", "add", "10.0.1.10/32", "via", "10.0.2.5"]);
    lab
}

#[test]
fn an_appliance_with_the_check_off_forwards_and_with_it_on_does_not() {
    let lab = appliance_lab("applianceoff", false);
    let srv = tcp_echo_all(tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001)), 1, 30);
    let (r0_in, r1_out) = (lab.counter("eni-r0", "tx_packets"), lab.counter("eni-r1", "rx_packets"));
    let mut s = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).expect("through the appliance");
    let msg = vec![7u8; 20000];
    assert_eq!(echo_over(&mut s, &msg).unwrap(), msg);
    // It went through the router's two ENIs, not straight across the VPC router.
    assert!(lab.counter("eni-r0", "tx_packets") >= r0_in + 3, "{}", lab.eni("eni-r0"));
    assert!(lab.counter("eni-r1", "rx_packets") >= r1_out + 3, "{}", lab.eni("eni-r1"));
    let out = lab.exec("a1", &["ping", "-c", "1", "-W", "2", "10.0.2.10"]);
    assert!(out.status.success(), "{}", text(&out));
    for e in ["eni-r0", "eni-r1"] {
        for r in ["source_check", "destination_check"] {
            assert_eq!(lab.drops(e, r), 0, "{}", lab.eni(e));
        }
    }
    drop(s);
    srv.join().unwrap();

    let on = appliance_lab("applianceon", true);
    let _l = tcp_listen(&on.ns("b1"), addr("10.0.2.10", 5001));
    assert!(tcp_connect(&on.ns("a1"), addr("10.0.2.10", 5001), 2).is_err(), "the check let it through");
    assert!(on.drops("eni-r0", "destination_check") >= 1, "{}", on.eni("eni-r0"));
    assert_eq!(on.counter("eni-r1", "rx_packets"), 0, "the router forwarded something: {}", on.eni("eni-r1"));
}

/// b1 may track 2 connections; two from a1 are open and echoed.
fn full_conntrack_lab(tag: &str) -> (TestLab, TcpStream, TcpStream, std::thread::JoinHandle<usize>) {
    // The default group's ingress is a group reference, so flows to b1 are tracked.
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        subnet("subnet-b", "10.0.2.0/24", None),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, ""),
        eni("eni-b1", "subnet-b", "10.0.2.10", "b1", 0, "connection_tracking = { max_connections = 2 }"),
    ]
    .concat();
    let lab = TestLab::up(tag, &topo);
    let srv = tcp_echo_all(tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001)), 2, 30);
    let mut c1 = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).expect("first");
    let mut c2 = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).expect("second");
    assert_eq!(echo_over(&mut c1, b"c1").unwrap(), b"c1");
    assert_eq!(echo_over(&mut c2, b"c2").unwrap(), b"c2");
    assert_eq!(lab.conntrack(Some("eni-b1")).len(), 2, "{:#?}", lab.conntrack(None));
    (lab, c1, c2, srv)
}

#[test]
fn the_conntrack_bound_refuses_new_connections_only() {
    let (lab, mut c1, mut c2, srv) = full_conntrack_lab("ctfull");
    let before = lab.drops("eni-b1", "conntrack_allowance_exceeded");
    assert!(tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 2).is_err(), "a third connection got in");
    assert!(lab.drops("eni-b1", "conntrack_allowance_exceeded") > before, "{}", lab.eni("eni-b1"));
    assert_eq!(lab.conntrack(Some("eni-b1")).len(), 2, "{:#?}", lab.conntrack(None));

    // The two existing connections still carry data.
    for _ in 0..3 {
        assert_eq!(echo_over(&mut c1, b"still c1").unwrap(), b"still c1");
        assert_eq!(echo_over(&mut c2, b"still c2").unwrap(), b"still c2");
    }
    drop((c1, c2));
    assert_eq!(srv.join().unwrap(), 2);
}

#[test]
fn trace_agrees_that_a_full_conntrack_table_refuses_a_new_connection() {
    let (lab, c1, c2, _srv) = full_conntrack_lab("cttrace");
    assert!(tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 2).is_err(), "a third connection got in");
    assert!(lab.drops("eni-b1", "conntrack_allowance_exceeded") >= 1, "{}", lab.eni("eni-b1"));
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5001"]);
    assert_dropped(&t, "conntrack_allowance_exceeded", "CONNTRACK_ALLOWANCE_EXCEEDED", "eni-b1");
    drop((c1, c2));
}

#[test]
fn untracked_flows_do_not_count_against_the_bound() {
    // All TCP in from 0.0.0.0/0 and all out to 0.0.0.0/0: AWS does not track these flows.
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        subnet("subnet-b", "10.0.2.0/24", None),
        r#"
[[security_group]]
id = "sg-open"
vpc = "vpc-test"
ingress = [ { protocol = "tcp", ports = "0-65535", source = "0.0.0.0/0" } ]
"#
        .to_string(),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, ""),
        eni(
            "eni-b1",
            "subnet-b",
            "10.0.2.10",
            "b1",
            0,
            "security_groups = [\"sg-open\"]\nconnection_tracking = { max_connections = 2 }",
        ),
    ]
    .concat();
    let lab = TestLab::up("untracked", &topo);
    let srv = tcp_echo_all(tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001)), 3, 30);
    let mut conns: Vec<TcpStream> = (0..3)
        .map(|i| tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).unwrap_or_else(|e| panic!("conn {i}: {e}")))
        .collect();
    for c in &mut conns {
        assert_eq!(echo_over(c, b"untracked").unwrap(), b"untracked");
    }
    assert!(lab.conntrack(Some("eni-b1")).is_empty(), "{:#?}", lab.conntrack(None));
    // a1's default group lets in only members: its side of the same flows is tracked.
    assert_eq!(lab.conntrack(Some("eni-a1")).len(), 3, "{:#?}", lab.conntrack(None));
    assert_eq!(lab.drops("eni-b1", "conntrack_allowance_exceeded"), 0);
    drop(conns);
    assert_eq!(srv.join().unwrap(), 3);
}

#[test]
fn conntrack_lists_a_live_connection_on_both_enis_and_trace_changes_nothing() {
    let topo = [
        VPC.to_string(),
        subnet("subnet-a", "10.0.1.0/24", None),
        subnet("subnet-b", "10.0.2.0/24", None),
        eni("eni-a1", "subnet-a", "10.0.1.10", "a1", 0, ""),
        eni("eni-b1", "subnet-b", "10.0.2.10", "b1", 0, ""),
    ]
    .concat();
    let lab = TestLab::up("ctlist", &topo);
    let srv = tcp_echo_all(tcp_listen(&lab.ns("b1"), addr("10.0.2.10", 5001)), 1, 30);
    let mut s = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).expect("connect");
    assert_eq!(echo_over(&mut s, b"tracked").unwrap(), b"tracked");
    let sport = s.local_addr().unwrap().port();

    let entries = lab.conntrack(None);
    for e in ["eni-a1", "eni-b1"] {
        let entry = entries
            .iter()
            .find(|c| {
                c["eni"] == e
                    && c["protocol"] == IpProto::TCP.0
                    && c["initiator"] == serde_json::json!(["10.0.1.10", sport])
                    && c["responder"] == serde_json::json!(["10.0.2.10", 5001])
            })
            .unwrap_or_else(|| panic!("no entry on {e}: {entries:#?}"));
        assert_eq!(entry["state"], "TcpEstablished", "{entry}");
        // AWS's default established timeout is 5 days.
        assert!(entry["expires_in_secs"].as_u64().unwrap() > 3600, "{entry}");
    }
    let only_b1 = lab.conntrack(Some("eni-b1"));
    assert!(!only_b1.is_empty() && only_b1.iter().all(|c| c["eni"] == "eni-b1"), "{only_b1:#?}");

    // trace is read-only: delivered and dropped traces leave the tables as they were.
    let key = |v: &[Value]| {
        let mut k: Vec<String> = v
            .iter()
            .map(|c| format!("{} {} {} {} {}", c["eni"], c["protocol"], c["initiator"], c["responder"], c["state"]))
            .collect();
        k.sort();
        k
    };
    let before = key(&entries);
    assert_delivered(&lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5002"]), "eni-b1");
    assert_delivered(&lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--proto", "udp", "--dport", "7000"]), "eni-b1");
    assert_delivered(&lab.trace(&["--from", "b1", "--to", "10.0.1.10", "--proto", "icmp"]), "eni-a1");
    assert_eq!(key(&lab.conntrack(None)), before, "trace created or changed conntrack entries");
    assert_eq!(echo_over(&mut s, b"after").unwrap(), b"after");
    drop(s);
    srv.join().unwrap();
}
