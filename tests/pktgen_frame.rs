//! The benchmark's packet generator (`examples/pktgen`) builds its frames from a template and
//! patches ports and the UDP checksum per packet. These tests check that what it would send is a
//! well-formed frame: the crate's parser reads back the addresses and ports, `rewrite::verify`
//! accepts both checksums, and etherparse computes the same checksums independently; and that a
//! new-flow run really makes a new flow per packet. No root, no I/O.

#[path = "../examples/pktgen/frame.rs"]
#[allow(dead_code)]
mod frame;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use etherparse::{Ipv4HeaderSlice, UdpSlice};
use frame::{Endpoints, PortStepper, Template};
use vpclab::packet::{parse, rewrite, IpProto, L3Meta};

const ENDS: Endpoints = Endpoints {
    src_mac: [0x02, 0, 0, 0, 0x01, 0x0a],
    dst_mac: [0x02, 0, 0, 0, 0xff, 0x01],
    src: Ipv4Addr::new(10, 0, 1, 10),
    dst: Ipv4Addr::new(10, 0, 2, 10),
};

/// Checks one frame every way: the crate's parser and verifier, and etherparse's checksums.
fn check(frame: &[u8], sport: u16, dport: u16, payload_len: usize) {
    assert_eq!(frame.len(), 14 + 20 + 8 + payload_len);
    let meta = parse(frame).expect("the crate's parser accepts the frame");
    assert_eq!(meta.dst_mac.0, ENDS.dst_mac);
    assert_eq!(meta.src_mac.0, ENDS.src_mac);
    let L3Meta::Ipv4(ip) = meta.l3 else { panic!("not IPv4: {meta:?}") };
    let f = ip.flow;
    assert_eq!((f.src, f.dst, f.proto), (ENDS.src, ENDS.dst, IpProto::UDP));
    assert_eq!((f.l4.src_port, f.l4.dst_port), (sport, dport));
    assert_eq!((ip.ttl, usize::from(ip.total_len), ip.fragment), (64, 28 + payload_len, false));
    assert!(rewrite::verify(frame), "IPv4 or UDP checksum invalid for ports {sport} -> {dport}");

    let ip_hdr = Ipv4HeaderSlice::from_slice(&frame[14..]).unwrap().to_header();
    assert_eq!(ip_hdr.header_checksum, ip_hdr.calc_header_checksum());
    let udp = UdpSlice::from_slice(&frame[34..]).unwrap();
    let expected = udp.to_header().calc_checksum_ipv4_raw(ENDS.src.octets(), ENDS.dst.octets(), udp.payload()).unwrap();
    assert_eq!(udp.checksum(), expected, "UDP checksum for ports {sport} -> {dport}");
}

#[test]
fn frames_parse_back_with_valid_checksums() {
    for payload_len in [0, 1, 18, 64, 1000, frame::MAX_PAYLOAD] {
        let t = Template::new(ENDS, payload_len);
        let mut buf = vec![0u8; t.frame_len()];
        for (s, d) in [(10000, 5001), (0, 0), (65535, 65535), (1024, 5999), (1, 65534)] {
            t.write(&mut buf, s, d);
            check(&buf, s, d, payload_len);
        }
    }
}

#[test]
fn patching_ports_in_place_gives_the_frame_written_afresh() {
    let t = Template::new(ENDS, 64);
    let mut reused = vec![0u8; t.frame_len()];
    t.write(&mut reused, 1, 2);
    let mut fresh = vec![0u8; t.frame_len()];
    for (s, d) in [(40000, 5000), (40001, 5999), (1024, 9)] {
        t.write_ports(&mut reused, s, d);
        t.write(&mut fresh, s, d);
        assert_eq!(reused, fresh);
        check(&reused, s, d, 64);
    }
}

/// RFC 768: a UDP checksum that computes to zero is sent as 0xffff. Every source port with one
/// destination port sweeps the checksum through all its values, so one of them hits the case.
#[test]
fn a_zero_checksum_is_sent_as_all_ones() {
    let t = Template::new(ENDS, 64);
    let mut buf = vec![0u8; t.frame_len()];
    let mut hit = false;
    for s in 0..=u16::MAX {
        t.write_ports(&mut buf, s, 5001);
        if buf[40..42] == [0xff, 0xff] {
            t.write(&mut buf, s, 5001);
            check(&buf, s, 5001, 64);
            hit = true;
        }
        assert_ne!(buf[40..42], [0, 0], "a zero checksum means none (port {s})");
    }
    assert!(hit, "no source port gave the all-ones checksum");
}

#[test]
fn new_flows_are_all_different_until_the_ranges_wrap() {
    let ports = PortStepper::new((1024, 1123), (5000, 5009), true);
    assert_eq!(ports.distinct(), 1000);
    let seen: HashSet<(u16, u16)> = (0..1000).map(|i| ports.ports(i)).collect();
    assert_eq!(seen.len(), 1000);
    assert!(seen.iter().all(|&(s, d)| (1024..=1123).contains(&s) && (5000..=5009).contains(&d)));
    assert_eq!(ports.ports(1000), ports.ports(0), "wraps after every pair");
    assert_eq!(ports.ports(0), (1024, 5000));
    assert_eq!(ports.ports(1), (1024, 5001), "the destination port steps fastest");

    let full = PortStepper::new((0, u16::MAX), (0, u16::MAX), true);
    assert_eq!(full.distinct(), 1 << 32);
    assert_eq!(full.ports((1 << 32) - 1), (u16::MAX, u16::MAX));

    let one = PortStepper::new((1024, 65535), (5000, 5999), false);
    assert_eq!(one.distinct(), 1);
    assert!((0..100).all(|i| one.ports(i) == (1024, 5000)));
}
