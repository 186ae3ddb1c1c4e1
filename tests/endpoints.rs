//! VPC endpoints with real traffic (issue 12): an S3-like host on the emulated internet reached
//! from a private subnet through a gateway endpoint, with no NAT or internet gateway on the way,
//! and unreachable from a subnet whose route table lacks the endpoint; an interface endpoint's
//! address answered by the service host as if it were the interface.

mod common;

use common::*;

/// `netns-setup/endpoints.toml` without its name (the harness gives each lab a unique one).
fn body() -> String {
    let text = include_str!("../netns-setup/endpoints.toml");
    text.lines().filter(|l| !l.starts_with("name = ")).collect::<Vec<_>>().join("\n")
}

const S3: &str = "198.51.100.20";
const SQS: &str = "198.51.100.40";

#[test]
fn a_private_subnet_reaches_s3_through_the_gateway_endpoint_and_only_through_it() {
    let lab = TestLab::up("vpce_gw", &body());
    let inet = lab.ns("internet");

    // The S3 host sees the instance's private address: no NAT or internet gateway translated it.
    let srv = tcp_peer_server(&inet, addr(S3, 80), 15);
    let mut s = tcp_connect(&lab.ns("private"), addr(S3, 80), 5).expect("the private subnet reaches s3");
    assert_eq!(echo_over(&mut s, b"GET /bucket").unwrap(), b"GET /bucket");
    drop(s);
    let peer = srv.join().unwrap().expect("the s3 host accepted");
    assert_eq!(peer.ip().to_string(), "10.0.2.10", "the service sees the private IP");
    assert!(lab.ping("private", S3).status.success(), "ping through the gateway endpoint");

    // The subnet whose table lacks the endpoint route has no way there.
    let before = lab.drops("eni-other", "no_route");
    let _srv = tcp_peer_server(&inet, addr(S3, 81), 3);
    assert!(tcp_connect(&lab.ns("other"), addr(S3, 81), 2).is_err(), "no route without the endpoint");
    assert!(eventually(5, || lab.drops("eni-other", "no_route") > before), "counted as no_route");

    // The private subnet reaches nothing else on the internet.
    assert!(!pings(&lab, "private", "198.51.100.30"), "only the prefix list is routed");

    // trace names the prefix list and the endpoint.
    let t = lab.trace(&["--from", "private", "--to", S3, "--dport", "80"]);
    let shown = t.to_string();
    assert!(shown.contains("-> vpce-s3") && shown.contains("vpc-endpoint"), "{t:#}");
}

#[test]
fn an_interface_endpoint_address_is_answered_by_the_service_host() {
    let lab = TestLab::up("vpce_if", &body());
    let inet = lab.ns("internet");
    let srv = tcp_peer_server(&inet, addr(SQS, 8080), 15);
    // The service's own name resolves to the endpoint inside the VPC (private DNS), through the
    // instance's resolver (the VPC's Amazon DNS server, from its DHCP options).
    let out = lab.exec("other", &["dig", "+short", "+time=2", "+tries=3", "sqs.us-east-1.amazonaws.com"]);
    assert_eq!(text(&out).trim(), "10.0.4.4", "dig: {}", text(&out));
    let mut s = tcp_connect(&lab.ns("other"), addr("10.0.4.4", 8080), 5).expect("the endpoint's address answers");
    assert_eq!(s.peer_addr().unwrap().ip().to_string(), "10.0.4.4");
    assert_eq!(echo_over(&mut s, b"SendMessage").unwrap(), b"SendMessage");
    drop(s);
    let peer = srv.join().unwrap().expect("the sqs host accepted");
    assert_eq!(peer.ip().to_string(), "10.0.3.10");
    // The endpoint's group allows tcp 8080 and ICMP from the VPC, nothing else.
    assert!(pings(&lab, "other", "10.0.4.4"), "ICMP to the interface is answered by the host");
    let _srv = tcp_peer_server(&inet, addr(SQS, 9090), 3);
    assert!(tcp_connect(&lab.ns("other"), addr("10.0.4.4", 9090), 2).is_err(), "refused by the endpoint's group");
}
