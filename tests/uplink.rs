//! The uplink mode: the internet side on a host interface. The "real network" here is a veth
//! into a namespace this test creates, never the host's own network.

mod common;

use std::process::Command;

use common::*;

/// A veth whose host end is the lab's uplink and whose other end sits in a namespace playing
/// the outside network (gateway 192.0.2.1, the lab's Elastic IPs on-link). Removed on drop.
struct OutsideNetwork {
    ns: String,
    host_end: String,
}

impl OutsideNetwork {
    fn new(tag: &str) -> OutsideNetwork {
        // Not `<lab>-...`: that prefix is the lab's, and `down` removes it.
        let ns = format!("{}outside", lab_name(tag));
        let host_end = format!("vu{}{}", std::process::id() % 1_000_000, &tag[..2]);
        let net = OutsideNetwork { ns: ns.clone(), host_end: host_end.clone() };
        let peer = format!("{host_end}p");
        for args in [
            vec!["netns", "add", &ns],
            vec!["link", "add", &host_end, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &peer, "netns", &ns],
            vec!["link", "set", &host_end, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
            vec!["-n", &ns, "addr", "add", "192.0.2.1/24", "dev", &peer],
            vec!["-n", &ns, "link", "set", &peer, "up"],
            vec!["-n", &ns, "route", "add", "203.0.113.0/24", "dev", &peer, "scope", "link"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", text(&out));
        }
        net
    }
}

impl Drop for OutsideNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_end]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn lab_body(uplink: &str) -> String {
    format!(
        r#"
[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "sub"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
route_table = "rtb"

[[internet_gateway]]
id = "igw"
vpc = "vpc-a"

[[route_table]]
id = "rtb"
vpc = "vpc-a"
routes = [{{ destination = "0.0.0.0/0", target = "igw" }}]

[[security_group]]
id = "sg"
vpc = "vpc-a"
ingress = [{{ protocol = "tcp", ports = "5001", source = "0.0.0.0/0" }}, {{ protocol = "icmp", source = "0.0.0.0/0" }}]

[[instance]]
id = "web"

[[instance]]
id = "private"

[[network_interface]]
id = "eni-web"
subnet = "sub"
private_ip = "10.0.1.10"
security_groups = ["sg"]
attachment = {{ instance = "web", device_index = 0 }}

[[network_interface]]
id = "eni-private"
subnet = "sub"
private_ip = "10.0.1.20"
security_groups = ["sg"]
attachment = {{ instance = "private", device_index = 0 }}

[[elastic_ip]]
id = "eip-web"
public_ip = "203.0.113.20"
network_interface = "eni-web"

[internet]
uplink = {{ interface = "{uplink}", gateway = "192.0.2.1" }}
"#
    )
}

#[test]
fn an_uplink_carries_the_lab_to_a_network_outside_it_both_ways() {
    require_root();
    let outside = OutsideNetwork::new("uplink");
    let lab = TestLab::up("uplink", &lab_body(&outside.host_end));
    assert!(lab.up_output.contains(&format!("uplink {}", outside.host_end)), "{}", lab.up_output);
    // Out: the instance reaches the gateway, which sees the Elastic IP.
    let out = lab.ping("web", "192.0.2.1");
    assert!(out.status.success(), "{}", text(&out));
    let srv = tcp_echo_server(&outside.ns, "192.0.2.1:7000".parse().unwrap());
    // The outside host records who connects to a second listener, bound before anyone connects.
    let second = tcp_listen(&outside.ns, "192.0.2.1:7001".parse().unwrap());
    let seen = std::thread::spawn(move || second.accept().unwrap().1.ip());
    let back = tcp_echo_client(&lab.ns("web"), "192.0.2.1:7000".parse().unwrap(), vec![7u8; 200_000]).unwrap();
    assert_eq!(back.len(), 200_000);
    srv.join().unwrap();
    tcp_connect(&lab.ns("web"), "192.0.2.1:7001".parse().unwrap(), 2).expect("connect to the second listener");
    assert_eq!(seen.join().unwrap().to_string(), "203.0.113.20", "the outside sees the Elastic IP");
    // In: the outside reaches the Elastic IP (the instance sees only its private address).
    let srv = tcp_echo_server(&lab.ns("web"), "10.0.1.10:5001".parse().unwrap());
    let back = tcp_echo_client(&outside.ns, "203.0.113.20:5001".parse().unwrap(), b"inbound".to_vec()).unwrap();
    assert_eq!(back, b"inbound");
    srv.join().unwrap();
    // The lab's own Elastic IP comes back in through the internet gateway, never via the uplink.
    let srv = tcp_echo_server(&lab.ns("web"), "10.0.1.10:5001".parse().unwrap());
    let back = tcp_echo_client(&lab.ns("web"), "203.0.113.20:5001".parse().unwrap(), b"hairpin".to_vec()).unwrap();
    assert_eq!(back, b"hairpin");
    srv.join().unwrap();
    // No public address, no way out.
    assert!(!lab.exec("private", &["ping", "-c", "1", "-W", "1", "192.0.2.1"]).status.success());
    assert!(lab.drops("eni-private", "no_public_address") >= 1);
}

#[test]
fn an_uplink_without_a_gateway_answering_fails_up_and_leaves_nothing() {
    require_root();
    let outside = OutsideNetwork::new("nogw");
    // Nobody has 192.0.2.1 now.
    let out = Command::new("ip")
        .args(["-n", &outside.ns, "addr", "flush", "dev", &format!("{}p", outside.host_end)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let topo = TopologyFile::new("nogw", &lab_body(&outside.host_end));
    let up = vpclab(&["up", topo.path()]);
    assert!(!up.status.success());
    assert!(text(&up).contains("no ARP reply from the uplink's gateway 192.0.2.1"), "{}", text(&up));
    assert!(namespaces_of(&topo.name).is_empty(), "{:?}", namespaces_of(&topo.name));
}
