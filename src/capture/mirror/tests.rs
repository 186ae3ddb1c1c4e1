//! Session choice, exclusions, the VXLAN bytes, truncation and checksum completion.

use super::*;
use crate::packet::{build, TcpFlags};

const LAB: &str = r#"name = "m"
[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"
[[subnet]]
id = "sub-1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
[[instance]]
id = "web"
[[instance]]
id = "ids"
[[network_interface]]
id = "eni-web"
subnet = "sub-1"
private_ip = "10.0.1.10"
attachment = { instance = "web", device_index = 0 }
[[network_interface]]
id = "eni-ids"
subnet = "sub-1"
private_ip = "10.0.1.20"
attachment = { instance = "ids", device_index = 0 }
[[traffic_mirror_target]]
id = "tmt-ids"
network_interface = "eni-ids"
[[traffic_mirror_filter]]
id = "tmf-http"
egress = [{ rule = 1, action = "accept", protocol = "tcp", destination_ports = "80", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" }]
[[traffic_mirror_filter]]
id = "tmf-all"
egress = [
  { rule = 1, action = "reject", protocol = "udp", destination_ports = "9", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" },
  { rule = 2, action = "accept", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" },
]
[[traffic_mirror_session]]
id = "tms-all"
source = "eni-web"
target = "tmt-ids"
filter = "tmf-all"
session_number = 20
virtual_network_id = 2
[[traffic_mirror_session]]
id = "tms-http"
source = "eni-web"
target = "tmt-ids"
filter = "tmf-http"
session_number = 10
virtual_network_id = 1
packet_length = 60
"#;

fn mirrors() -> (Model, Mirrors) {
    let m = crate::topology::parse(LAB, "m.toml").unwrap();
    let mirrors = Mirrors::new(&m, None);
    (m, mirrors)
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

const A: Mac = Mac([2, 0, 0, 0, 0, 0xa]);
const B: Mac = Mac([2, 0, 0, 0, 0, 0xb]);

/// The VNI of the session chosen for a frame sent by eni-web, if any.
fn vni_for(ms: &mut Mirrors, frame: &[u8]) -> Option<u32> {
    let c = ms.choose(0, false, frame)?;
    let n = ms.encapsulate(c, frame, false, 0);
    let b = &ms.buf[..n];
    Some(u32::from_be_bytes([0, b[46], b[47], b[48]]))
}

#[test]
fn the_first_session_by_number_whose_filter_accepts_mirrors() {
    let (_, mut ms) = mirrors();
    assert!(ms.active() && ms.is_source(0) && !ms.is_source(1));
    let http = build::tcp(B, A, ip("10.0.1.10"), ip("10.0.1.30"), 40000, 80, TcpFlags::SYN, b"");
    assert_eq!(vni_for(&mut ms, &http), Some(1), "session 10 (tms-http) comes before 20");
    let ssh = build::tcp(B, A, ip("10.0.1.10"), ip("10.0.1.30"), 40000, 22, TcpFlags::SYN, b"");
    assert_eq!(vni_for(&mut ms, &ssh), Some(2), "tms-http's filter does not match: tms-all takes it");
    let discard = build::udp(B, A, ip("10.0.1.10"), ip("10.0.1.30"), 40000, 9, b"x");
    assert_eq!(vni_for(&mut ms, &discard), None, "tms-all's rule 1 rejects it, and no other session accepts");
    assert_eq!(ms.choose(0, true, &ssh), None, "no ingress rules: nothing delivered is mirrored");
}

#[test]
fn arp_dhcp_metadata_and_time_sync_are_never_mirrored() {
    let (_, ms) = mirrors();
    let arp = build::arp_request(A, ip("10.0.1.10"), ip("10.0.1.1"));
    let dhcp = build::udp(B, A, ip("10.0.1.10"), ip("10.0.1.1"), 68, 67, b"x");
    let imds = build::tcp(B, A, ip("10.0.1.10"), ip("169.254.169.254"), 40000, 80, TcpFlags::SYN, b"");
    let ntp = build::udp(B, A, ip("10.0.1.10"), ip("169.254.169.123"), 40000, 123, b"x");
    for f in [arp, dhcp, imds, ntp] {
        assert_eq!(ms.choose(0, false, &f), None);
    }
    let dns = build::udp(B, A, ip("10.0.1.10"), ip("10.0.0.2"), 40000, 53, b"x");
    assert!(ms.choose(0, false, &dns).is_some(), "DNS is mirrored, as on AWS");
}

#[test]
fn the_copy_is_vxlan_from_source_to_target_cut_to_packet_length() {
    let (m, mut ms) = mirrors();
    let payload = [7u8; 100];
    let http = build::tcp(B, A, ip("10.0.1.10"), ip("10.0.1.30"), 40000, 80, TcpFlags::ACK, &payload);
    let c = ms.choose(0, false, &http).unwrap();
    let n = ms.encapsulate(c, &http, false, 12);
    assert!(ms.buf[..12].iter().all(|b| *b == 0), "a zeroed virtio-net header: no offload");
    let copy = ms.buf[12..n].to_vec();
    let copy = &copy[..];
    let sliced = etherparse::SlicedPacket::from_ethernet(copy).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = sliced.link else { panic!("not Ethernet") };
    assert_eq!(eth.source(), m.enis[0].mac.0);
    assert_eq!(eth.destination(), m.vpcs[0].router_mac.0, "sent to the router: the fabric routes it");
    let Some(etherparse::NetSlice::Ipv4(ipv4)) = sliced.net else { panic!("not IPv4") };
    let h = ipv4.header();
    assert_eq!((h.source_addr(), h.destination_addr()), (ip("10.0.1.10"), ip("10.0.1.20")));
    assert_eq!(rewrite::checksum(h.slice()), 0, "a valid header checksum");
    assert_eq!(usize::from(h.total_len()), 20 + 8 + 8 + 60);
    let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else { panic!("not UDP") };
    assert_eq!(udp.destination_port(), VXLAN_PORT);
    assert!(udp.source_port() >= 49152);
    assert_eq!(udp.checksum(), 0, "no UDP checksum (RFC 7348 allows it over IPv4)");
    let vxlan = udp.payload();
    assert_eq!(&vxlan[..8], &[0x08, 0, 0, 0, 0, 0, 1, 0], "I flag, VNI 1");
    assert_eq!(&vxlan[8..], &http[..60], "the frame as sent, cut to packet_length");
    // The same inner flow keeps its outer source port.
    let port = [copy[34], copy[35]];
    let again = ms.encapsulate(c, &http, false, 0);
    assert_eq!(again, n - 12);
    assert_eq!([ms.buf[34], ms.buf[35]], port);
}

#[test]
fn superframes_are_cut_to_the_vpc_mtu_and_partial_checksums_completed() {
    let encap = Encap {
        source_mac: A,
        router_mac: B,
        source_ip: ip("10.0.1.10"),
        target_ip: ip("10.0.1.20"),
        vni: 77,
        packet_length: None,
    };
    let big = build::udp(B, A, ip("10.0.1.10"), ip("10.0.1.30"), 1, 2, &vec![1u8; 20_000]);
    let mut out = Vec::new();
    encapsulate(&mut out, &encap, &big, false, 0);
    assert_eq!(out.len(), 14 + 20 + 8 + 8 + MAX_INNER);
    assert_eq!(u16::from_be_bytes([out[16], out[17]]), crate::pipeline::VPC_MTU, "the copy fills the MTU");
    // A UDP datagram whose checksum field holds only the pseudo-header sum (NEEDS_CSUM).
    let mut partial = build::udp(B, A, ip("10.0.1.10"), ip("10.0.1.30"), 1000, 2000, b"hello");
    let good = u16::from_be_bytes([partial[40], partial[41]]);
    let pseudo = rewrite::fold(rewrite::pseudo_header_sum(ip("10.0.1.10"), ip("10.0.1.30"), IpProto::UDP, 13));
    partial[40..42].copy_from_slice(&pseudo.to_be_bytes());
    out.clear();
    encapsulate(&mut out, &encap, &partial, true, 0);
    let inner = &out[50..];
    assert_eq!(u16::from_be_bytes([inner[40], inner[41]]), good, "the checksum is completed in the copy");
}
