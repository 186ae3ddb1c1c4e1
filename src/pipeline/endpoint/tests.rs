//! VPC endpoints through the pipeline with crafted frames, on `netns-setup/endpoints.toml`.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::super::{DropReason, Pipeline, Verdict};
use crate::model::{EniIdx, Mac, Model, PrefixList};
use crate::packet::{build, parse, L3Meta, TcpFlags};

const LAB: &str = include_str!("../../../netns-setup/endpoints.toml");
const NOW: Duration = Duration::from_secs(100);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

struct Lab {
    model: Model,
    p: Pipeline,
}

impl Lab {
    fn new(text: &str) -> Lab {
        let model = crate::topology::parse(text, "endpoints.toml").unwrap_or_else(|e| panic!("{e}"));
        let p = Pipeline::new(&model);
        Lab { model, p }
    }

    fn eni(&self, id: &str) -> EniIdx {
        self.model.eni_by_id(id).unwrap()
    }

    fn router(&self) -> Mac {
        self.model.vpcs[0].router_mac
    }

    /// A TCP segment from ENI `from` (its primary IP) to `dst`, sent to the router.
    fn tcp_from(&self, from: &str, dst: &str, dport: u16, flags: TcpFlags) -> Vec<u8> {
        let e = &self.model.enis[self.eni(from).index()];
        build::tcp(self.router(), e.mac, e.private_ip, ip(dst), 40000, dport, flags, b"")
    }

    /// A TCP segment as internet host `src` sends it to `dst`.
    fn tcp_from_internet(&self, src: &str, dst: &str, sport: u16, flags: TcpFlags) -> Vec<u8> {
        let (gw, host) = (self.model.internet_gateway_mac(), self.model.internet_host_mac());
        build::tcp(gw, host, ip(src), ip(dst), sport, 40000, flags, b"")
    }

    fn send(&mut self, from: &str, frame: &mut [u8]) -> Verdict {
        let e = self.eni(from);
        self.p.process(NOW, e, frame, &mut super::super::NoObserver)
    }

    fn trace(&mut self, from: &str, frame: &mut [u8]) -> String {
        let e = self.eni(from);
        let (_, rec) = self.p.trace(NOW, e, frame);
        rec.lines.iter().map(|(s, l)| format!("{}: {l}\n", s.name())).collect()
    }
}

fn addresses(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    match parse(frame).unwrap().l3 {
        L3Meta::Ipv4(m) => (m.flow.src, m.flow.dst),
        _ => panic!("not IPv4"),
    }
}

#[test]
fn a_private_subnet_reaches_s3_through_the_gateway_endpoint_untranslated_and_the_reply_comes_back() {
    let mut lab = Lab::new(LAB);
    let mut syn = lab.tcp_from("eni-private", "198.51.100.20", 80, TcpFlags::SYN);
    assert_eq!(lab.send("eni-private", &mut syn), Verdict::ToInternet);
    assert_eq!(addresses(&syn), (ip("10.0.2.10"), ip("198.51.100.20")), "the host sees the private IP");
    assert_eq!(&syn[..6], &lab.model.internet_host_mac().0);
    let mut reply = lab.tcp_from_internet("198.51.100.20", "10.0.2.10", 80, TcpFlags::SYN | TcpFlags::ACK);
    let v = lab.p.process_internet(NOW, &mut reply, Default::default(), &mut super::super::NoObserver);
    assert_eq!(v, Verdict::Forward(lab.eni("eni-private")));
    assert_eq!(addresses(&reply), (ip("198.51.100.20"), ip("10.0.2.10")));
    // The flow's next packet takes the cached hop, and still leaves untranslated.
    let mut ack = lab.tcp_from("eni-private", "198.51.100.20", 80, TcpFlags::ACK);
    assert_eq!(lab.send("eni-private", &mut ack), Verdict::ToInternet);
    assert_eq!(addresses(&ack), (ip("10.0.2.10"), ip("198.51.100.20")));
}

#[test]
fn without_the_endpoint_route_the_private_subnet_has_no_route_and_the_service_cannot_start_flows() {
    let mut lab = Lab::new(LAB);
    let mut syn = lab.tcp_from("eni-other", "198.51.100.20", 80, TcpFlags::SYN);
    assert_eq!(lab.send("eni-other", &mut syn), Verdict::Drop(DropReason::NoRoute));
    // Nor does the private subnet reach an internet host that does not play s3.
    let mut web = lab.tcp_from("eni-private", "198.51.100.30", 80, TcpFlags::SYN);
    assert_eq!(lab.send("eni-private", &mut web), Verdict::Drop(DropReason::NoRoute));
    // The service host cannot open a connection to the instance through the endpoint.
    let mut unsolicited = lab.tcp_from_internet("198.51.100.20", "10.0.2.10", 80, TcpFlags::SYN);
    let v = lab.p.process_internet(NOW, &mut unsolicited, Default::default(), &mut super::super::NoObserver);
    assert_eq!(v, Verdict::Drop(DropReason::NoSuchAddress));
}

#[test]
fn the_longest_prefix_wins_and_a_static_route_of_the_same_destination_beats_the_prefix_list() {
    let mut lab = Lab::new(LAB);
    // rtb-mixed: 0.0.0.0/0 -> igw-a is less specific than the prefix list's /32: the endpoint.
    let mut syn = lab.tcp_from("eni-mixed", "198.51.100.20", 80, TcpFlags::SYN);
    let text = lab.trace("eni-mixed", &mut syn.clone());
    let pl = PrefixList::id_of("us-east-1", "s3");
    assert!(text.contains(&format!("route-lookup: rtb-mixed: {pl} (198.51.100.20/32) -> vpce-s3")), "{text}");
    assert!(text.contains("vpc-endpoint: vpce-s3 (s3)"), "{text}");
    assert_eq!(lab.send("eni-mixed", &mut syn), Verdict::ToInternet);
    assert_eq!(addresses(&syn).0, ip("10.0.5.10"), "not the Elastic IP: no internet gateway");
    // 198.51.100.21/32 -> blackhole is a static route with the prefix list entry's destination.
    let mut syn = lab.tcp_from("eni-mixed", "198.51.100.21", 80, TcpFlags::SYN);
    assert_eq!(lab.send("eni-mixed", &mut syn), Verdict::Drop(DropReason::Blackhole));
    // Other internet hosts still go through the internet gateway.
    let mut web = lab.tcp_from("eni-mixed", "198.51.100.30", 80, TcpFlags::SYN);
    assert_eq!(lab.send("eni-mixed", &mut web), Verdict::ToInternet);
    assert_eq!(addresses(&web).0, ip("203.0.113.50"));
}

#[test]
fn a_security_group_rule_naming_the_prefix_list_matches_its_cidrs() {
    let pl = PrefixList::id_of("us-east-1", "s3");
    let text = LAB.replace(
        "security_groups = [\"sg-open\"]\nattachment = { instance = \"private\"",
        "security_groups = [\"sg-s3\"]\nattachment = { instance = \"private\"",
    ) + &format!(
        "\n[[security_group]]\nid = \"sg-s3\"\nvpc = \"vpc-a\"\negress = [{{ protocol = \"tcp\", ports = 80, destination = \"{pl}\" }}]\n"
    );
    let mut lab = Lab::new(&text);
    let mut syn = lab.tcp_from("eni-private", "198.51.100.20", 80, TcpFlags::SYN);
    assert_eq!(lab.send("eni-private", &mut syn), Verdict::ToInternet);
    let mut other_port = lab.tcp_from("eni-private", "198.51.100.20", 443, TcpFlags::SYN);
    assert_eq!(lab.send("eni-private", &mut other_port), Verdict::Drop(DropReason::SecurityGroupEgress));
    // The rule matches the list's CIDRs only: the endpoint's route would carry 10.0.0.0/16's
    // traffic locally, and the group refuses it.
    let mut inside = lab.tcp_from("eni-private", "10.0.3.10", 80, TcpFlags::SYN);
    assert_eq!(lab.send("eni-private", &mut inside), Verdict::Drop(DropReason::SecurityGroupEgress));
}

#[test]
fn an_interface_endpoint_address_is_answered_by_the_service_host_as_if_it_were_the_interface() {
    let mut lab = Lab::new(LAB);
    let endpoint_ip = ip("10.0.4.4");
    let mut syn = lab.tcp_from("eni-other", "10.0.4.4", 8080, TcpFlags::SYN);
    let text = lab.trace("eni-other", &mut syn.clone());
    assert!(text.contains("eni-vpce-sqs-subnet-endpoints: destination 10.0.4.4 -> 198.51.100.40"), "{text}");
    assert!(text.contains("vpce-sqs: allowed by sg-endpoint ingress rule 1"), "{text}");
    assert_eq!(lab.send("eni-other", &mut syn), Verdict::ToInternet);
    assert_eq!(addresses(&syn), (ip("10.0.3.10"), ip("198.51.100.40")));
    let mut reply = lab.tcp_from_internet("198.51.100.40", "10.0.3.10", 8080, TcpFlags::SYN | TcpFlags::ACK);
    let v = lab.p.process_internet(NOW, &mut reply, Default::default(), &mut super::super::NoObserver);
    assert_eq!(v, Verdict::Forward(lab.eni("eni-other")));
    assert_eq!(addresses(&reply), (endpoint_ip, ip("10.0.3.10")), "the reply comes from the interface's address");
    // The endpoint's groups allow tcp 8080 only.
    let mut denied = lab.tcp_from("eni-other", "10.0.4.4", 9090, TcpFlags::SYN);
    assert_eq!(lab.send("eni-other", &mut denied), Verdict::Drop(DropReason::SecurityGroupIngress));
}

#[test]
fn the_fabric_answers_arp_for_an_interface_in_the_subnet_and_frames_to_its_mac_reach_the_service() {
    let text = LAB.replace(
        "subnet = \"subnet-other\"\nprivate_ip = \"10.0.3.10\"",
        "subnet = \"subnet-endpoints\"\nprivate_ip = \"10.0.4.10\"",
    );
    let mut lab = Lab::new(&text);
    let e = lab.model.enis[lab.eni("eni-other").index()].clone();
    let mut arp = build::arp_request(e.mac, e.private_ip, ip("10.0.4.4"));
    assert_eq!(lab.send("eni-other", &mut arp), Verdict::Reply);
    let crate::model::EndpointKind::Interface { interfaces, .. } = &lab.model.vpc_endpoints[1].kind else {
        panic!("vpce-sqs is an interface endpoint")
    };
    let iface_mac = interfaces[0].mac;
    assert_eq!(&arp[22..28], &iface_mac.0, "ARP answers with the interface's MAC");
    let mut syn = build::tcp(iface_mac, e.mac, e.private_ip, ip("10.0.4.4"), 40000, 8080, TcpFlags::SYN, b"");
    assert_eq!(lab.send("eni-other", &mut syn), Verdict::ToInternet);
    assert_eq!(addresses(&syn), (ip("10.0.4.10"), ip("198.51.100.40")));
}

#[test]
fn endpoint_dns_names_give_the_regional_name_and_with_private_dns_the_service_name() {
    let lab = Lab::new(LAB);
    let names = lab.model.endpoint_dns_names(crate::model::VpcIdx(0));
    let want_ips = vec![ip("10.0.4.4")];
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].0.starts_with("vpce-sqs-"), "{names:?}");
    assert!(names[0].0.ends_with(".sqs.us-east-1.vpce.amazonaws.com"), "{names:?}");
    assert_eq!(names[0].1, want_ips);
    assert_eq!(names[1], ("sqs.us-east-1.amazonaws.com".to_string(), want_ips));
    let off =
        Lab::new(&LAB.replace("service = \"sqs\"\nsubnets", "service = \"sqs\"\nprivate_dns_enabled = false\nsubnets"));
    assert_eq!(off.model.endpoint_dns_names(crate::model::VpcIdx(0)).len(), 1);
}
