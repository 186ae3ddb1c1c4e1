//! Crafted frames through the pipeline: (lab, ingress ENI, frame) -> verdict and rewritten frame.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::model::{Mac, Model};
use crate::packet::{build, parse, ArpMeta, L3Meta, ARP_REPLY, ETH_HEADER_LEN};

const LAB: &str = r#"
name = "pipe"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-2"
vpc = "vpc-a"
cidr = "10.0.2.0/24"

[[instance]]
id = "one"

[[instance]]
id = "two"

[[instance]]
id = "three"

[[network_interface]]
id = "eni-one"
subnet = "subnet-1"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.11"]
attachment = { instance = "one", device_index = 0 }

[[network_interface]]
id = "eni-two"
subnet = "subnet-1"
private_ip = "10.0.1.20"
attachment = { instance = "two", device_index = 0 }

[[network_interface]]
id = "eni-three"
subnet = "subnet-2"
private_ip = "10.0.2.10"
attachment = { instance = "three", device_index = 0 }

[[network_interface]]
id = "eni-loose"
subnet = "subnet-2"
private_ip = "10.0.2.30"
"#;

struct Lab {
    model: Model,
    pipeline: Pipeline,
}

impl Lab {
    fn new() -> Lab {
        let model = crate::topology::parse(LAB, "pipe.toml").expect("the test lab is valid");
        let pipeline = Pipeline::new(&model);
        Lab { model, pipeline }
    }

    fn eni(&self, id: &str) -> EniIdx {
        self.model.eni_by_id(id).expect("known ENI")
    }

    fn mac(&self, id: &str) -> Mac {
        self.model.enis[self.eni(id).index()].mac
    }

    fn router_mac(&self) -> Mac {
        self.model.vpcs[0].router_mac
    }

    fn run(&mut self, from: &str, frame: &mut [u8]) -> Verdict {
        self.pipeline.process(Duration::ZERO, self.eni(from), frame, &mut NoObserver)
    }

    fn udp(&self, from: &str, dst_mac: Mac, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        build::udp(dst_mac, self.mac(from), src.into(), dst.into(), 40000, 53, b"query")
    }
}

fn arp_answer(frame: &[u8]) -> ArpMeta {
    match parse(frame).expect("reply parses").l3 {
        L3Meta::Arp(a) => a,
        other => panic!("not ARP: {other:?}"),
    }
}

#[test]
fn arp_for_the_router_gets_the_router_mac() {
    let mut lab = Lab::new();
    let mut f = build::arp_request(lab.mac("eni-one"), Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 1));
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Reply);
    let a = arp_answer(&f);
    assert_eq!(a.operation, ARP_REPLY);
    assert_eq!((a.sender_mac, a.sender_ip), (lab.router_mac(), Ipv4Addr::new(10, 0, 1, 1)));
    assert_eq!(a.target_ip, Ipv4Addr::new(10, 0, 1, 10));
    assert_eq!(&f[0..6], &lab.mac("eni-one").0, "the reply goes to the asker");
}

#[test]
fn arp_for_a_neighbour_gets_its_mac_secondary_ips_included() {
    let mut lab = Lab::new();
    let mut f = build::arp_request(lab.mac("eni-two"), Ipv4Addr::new(10, 0, 1, 20), Ipv4Addr::new(10, 0, 1, 11));
    assert_eq!(lab.run("eni-two", &mut f), Verdict::Reply);
    assert_eq!(arp_answer(&f).sender_mac, lab.mac("eni-one"));
}

#[test]
fn arp_unanswered_outside_the_subnet_for_unknown_and_own_addresses() {
    let mut lab = Lab::new();
    let me = Ipv4Addr::new(10, 0, 1, 10);
    for target in [
        Ipv4Addr::new(10, 0, 2, 10), // an ENI, but in the other subnet
        Ipv4Addr::new(10, 0, 1, 99), // nobody
        me,                          // its own address (duplicate address detection)
        Ipv4Addr::new(10, 0, 2, 1),  // the other subnet's router
    ] {
        let mut f = build::arp_request(lab.mac("eni-one"), me, target);
        assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::ArpUnanswered), "{target}");
    }
}

#[test]
fn a_detached_eni_is_neither_answered_for_nor_delivered_to() {
    let mut lab = Lab::new();
    let me = Ipv4Addr::new(10, 0, 2, 10);
    let mut f = build::arp_request(lab.mac("eni-three"), me, Ipv4Addr::new(10, 0, 2, 30));
    assert_eq!(lab.run("eni-three", &mut f), Verdict::Drop(DropReason::ArpUnanswered));
    let mut f = lab.udp("eni-three", lab.mac("eni-loose"), [10, 0, 2, 10], [10, 0, 2, 30]);
    assert_eq!(lab.run("eni-three", &mut f), Verdict::Drop(DropReason::DestinationNotAttached));
}

#[test]
fn arp_replies_from_instances_are_not_forwarded() {
    let mut lab = Lab::new();
    let mut f = build::arp_request(lab.mac("eni-one"), Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 1));
    f[ETH_HEADER_LEN + 7] = 2;
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::ArpNotRequest));
}

#[test]
fn same_subnet_goes_at_layer_2_unchanged() {
    let mut lab = Lab::new();
    let mut f = lab.udp("eni-one", lab.mac("eni-two"), [10, 0, 1, 10], [10, 0, 1, 20]);
    let before = f.clone();
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Forward(lab.eni("eni-two")));
    assert_eq!(f, before);
}

#[test]
fn across_subnets_the_router_mac_is_the_source_and_ttl_is_untouched() {
    let mut lab = Lab::new();
    let mut f = lab.udp("eni-one", lab.router_mac(), [10, 0, 1, 11], [10, 0, 2, 10]);
    let before = f.clone();
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Forward(lab.eni("eni-three")));
    assert_eq!(&f[0..6], &lab.mac("eni-three").0);
    assert_eq!(&f[6..12], &lab.router_mac().0);
    assert_eq!(&f[12..], &before[12..], "IP header (TTL, checksum) and payload unchanged");
}

#[test]
fn spoofed_source_mac_is_dropped() {
    let mut lab = Lab::new();
    let mut f =
        build::udp(lab.router_mac(), Mac([2, 9, 9, 9, 9, 9]), [10, 0, 1, 10].into(), [10, 0, 2, 10].into(), 1, 2, b"x");
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::SourceMacMismatch));
    // Another ENI's MAC is just as foreign.
    let mut f = lab.udp("eni-two", lab.router_mac(), [10, 0, 1, 10], [10, 0, 2, 10]);
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::SourceMacMismatch));
}

#[test]
fn only_arp_and_ipv4_pass() {
    let mut lab = Lab::new();
    let mut f = lab.udp("eni-one", lab.router_mac(), [10, 0, 1, 10], [10, 0, 2, 10]);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::UnsupportedEthertype));
}

#[test]
fn no_broadcast_and_no_unknown_macs() {
    let mut lab = Lab::new();
    let mut f = lab.udp("eni-one", Mac([0xff; 6]), [10, 0, 1, 10], [10, 0, 1, 255]);
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::BroadcastOrMulticast));
    let mut f = lab.udp("eni-one", Mac([2, 1, 2, 3, 4, 5]), [10, 0, 1, 10], [10, 0, 1, 20]);
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::UnknownDestinationMac));
    // Layer 2 does not cross subnets: another subnet's ENI MAC is unknown here.
    let mut f = lab.udp("eni-one", lab.mac("eni-three"), [10, 0, 1, 10], [10, 0, 2, 10]);
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::UnknownDestinationMac));
}

#[test]
fn routing_drops_name_their_reason() {
    let mut lab = Lab::new();
    let cases = [
        ([192, 0, 2, 1], DropReason::NoRoute),
        ([10, 0, 3, 10], DropReason::NoSuchAddress),
        ([10, 0, 2, 30], DropReason::DestinationNotAttached),
    ];
    for (dst, reason) in cases {
        let mut f = lab.udp("eni-one", lab.router_mac(), [10, 0, 1, 10], dst);
        assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(reason), "{dst:?}");
    }
}

#[test]
fn malformed_frames_are_dropped() {
    let mut lab = Lab::new();
    let mut f = lab.udp("eni-one", lab.router_mac(), [10, 0, 1, 10], [10, 0, 2, 10]);
    f.truncate(ETH_HEADER_LEN + 10);
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Drop(DropReason::Malformed));
    assert_eq!(lab.run("eni-one", &mut [0u8; 3]), Verdict::Drop(DropReason::Malformed));
}

#[test]
fn the_recorder_sees_each_stage_in_order() {
    let mut lab = Lab::new();
    let mut f = lab.udp("eni-one", lab.router_mac(), [10, 0, 1, 10], [10, 0, 2, 10]);
    let mut rec = Recorder::default();
    lab.pipeline.process(Duration::ZERO, lab.eni("eni-one"), &mut f, &mut rec);
    let stages: Vec<Stage> = rec.lines.iter().map(|l| l.0).collect();
    use Stage::*;
    assert_eq!(
        stages,
        [
            PortSecurity,
            SourceCheck,
            SgEgress,
            RouteLookup,
            NaclEgress,
            NaclIngress,
            DestinationCheck,
            SgIngress,
            Deliver
        ]
    );
    assert!(rec.lines[3].1.contains("eni-three"), "{:?}", rec.lines);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut lab = Lab::new();
    let udp = lab.udp("eni-one", lab.router_mac(), [10, 0, 1, 10], [10, 0, 2, 10]);
    let arp = build::arp_request(lab.mac("eni-one"), Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 20));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20_000 {
        let valid = if round % 2 == 0 { &udp } else { &arp };
        let mut f = valid.clone();
        let len = (next() % (valid.len() as u64 + 8)) as usize;
        f.resize(len, 0);
        // Keep the source MAC valid half the time so deeper stages see the garbage too.
        let flips = next() % 6;
        for _ in 0..flips {
            let i = (next() as usize) % f.len().max(1);
            if let Some(b) = f.get_mut(i) {
                if (6..12).contains(&i) && next() % 2 == 0 {
                    continue;
                }
                *b = next() as u8;
            }
        }
        let _ = lab.run("eni-one", &mut f);
    }
}
