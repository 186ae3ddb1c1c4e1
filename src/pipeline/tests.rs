//! Crafted frames through the pipeline: (lab, ingress ENI, frame) -> verdict and rewritten frame.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::model::{Mac, Model};
use crate::packet::{build, parse, ArpMeta, Ipv4Meta, L3Meta, ARP_REPLY, ETH_HEADER_LEN};

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
fn the_router_answers_ping_to_its_own_address_and_drops_the_rest() {
    let mut lab = Lab::new();
    let (one, router) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 1));
    let mut f = build::icmp_echo(lab.router_mac(), lab.mac("eni-one"), one, router, 77);
    assert_eq!(lab.run("eni-one", &mut f), Verdict::Reply);
    let ip = match parse(&f).expect("the reply parses").l3 {
        L3Meta::Ipv4(ip) => ip,
        other => panic!("not IPv4: {other:?}"),
    };
    assert_eq!((ip.flow.src, ip.flow.dst, ip.flow.l4.icmp_type, ip.flow.l4.icmp_id), (router, one, 0, 77));
    assert_eq!((&f[0..6], &f[6..12]), (&lab.mac("eni-one").0[..], &lab.router_mac().0[..]));
    assert!(crate::packet::rewrite::verify(&f), "checksums of the reply");
    // Anything but ping to it, and another subnet's router address, are dropped as such.
    let mut tcp = build::tcp(lab.router_mac(), lab.mac("eni-one"), one, router, 40000, 22, TcpFlags::SYN, b"");
    assert_eq!(lab.run("eni-one", &mut tcp), Verdict::Drop(DropReason::RouterAddress));
    let mut far = build::icmp_echo(lab.router_mac(), lab.mac("eni-one"), one, Ipv4Addr::new(10, 0, 2, 1), 78);
    assert_eq!(lab.run("eni-one", &mut far), Verdict::Drop(DropReason::RouterAddress));
    // A spoofed source gets no answer from the router.
    let mut spoof = build::icmp_echo(lab.router_mac(), lab.mac("eni-one"), Ipv4Addr::new(10, 0, 1, 99), router, 79);
    assert_eq!(lab.run("eni-one", &mut spoof), Verdict::Drop(DropReason::RouterAddress));
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

/// Sets the IPv4 header checksum of an Ethernet frame after an edit.
fn fix_ip_checksum(f: &mut [u8]) {
    let ihl = usize::from(f[ETH_HEADER_LEN] & 0x0f) * 4;
    f[ETH_HEADER_LEN + 10..ETH_HEADER_LEN + 12].fill(0);
    let sum = crate::packet::rewrite::checksum(&f[ETH_HEADER_LEN..ETH_HEADER_LEN + ihl]);
    f[ETH_HEADER_LEN + 10..ETH_HEADER_LEN + 12].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn what_the_vpc_would_not_carry_is_judged_at_the_edge() {
    let mut lab = Lab::new();
    let two = lab.mac("eni-two");
    // Larger than the VPC's MTU (an instance that raised its own): dropped and counted.
    let mut big = build::udp(two, lab.mac("eni-one"), [10, 0, 1, 10].into(), [10, 0, 1, 20].into(), 1, 2, &[0; 9000]);
    assert_eq!(lab.run("eni-one", &mut big), Verdict::Drop(DropReason::MtuExceeded));
    let mut fits = build::udp(two, lab.mac("eni-one"), [10, 0, 1, 10].into(), [10, 0, 1, 20].into(), 1, 2, &[0; 8900]);
    assert_eq!(lab.run("eni-one", &mut fits), Verdict::Forward(lab.eni("eni-two")));
    // A UDP length under its own header is malformed.
    let mut short = lab.udp("eni-one", two, [10, 0, 1, 10], [10, 0, 1, 20]);
    let udp = ETH_HEADER_LEN + 20;
    short[udp + 4..udp + 6].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(lab.run("eni-one", &mut short), Verdict::Drop(DropReason::Malformed));
    // IP options of any bytes are odd but valid: forwarded, untouched.
    let plain = lab.udp("eni-one", two, [10, 0, 1, 10], [10, 0, 1, 20]);
    let mut opts = plain[..ETH_HEADER_LEN + 20].to_vec();
    opts.extend_from_slice(&[0x07, 0xa5, 0x5a, 0xff]);
    opts.extend_from_slice(&plain[ETH_HEADER_LEN + 20..]);
    opts[ETH_HEADER_LEN] = 0x46;
    let total = (opts.len() - ETH_HEADER_LEN) as u16;
    opts[ETH_HEADER_LEN + 2..ETH_HEADER_LEN + 4].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut opts);
    let before = opts.clone();
    assert_eq!(lab.run("eni-one", &mut opts), Verdict::Forward(lab.eni("eni-two")));
    assert_eq!(opts, before);
    // A fragment at an arbitrary offset carries no transport header: judged by addresses, passed.
    let mut frag = lab.udp("eni-one", two, [10, 0, 1, 10], [10, 0, 1, 20]);
    frag[ETH_HEADER_LEN + 6..ETH_HEADER_LEN + 8].copy_from_slice(&0x0123u16.to_be_bytes());
    fix_ip_checksum(&mut frag);
    assert_eq!(lab.run("eni-one", &mut frag), Verdict::Forward(lab.eni("eni-two")));
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
fn a_moved_address_is_delivered_to_its_new_owner_whatever_mac_the_sender_cached() {
    // 10.0.1.11 moves from eni-one to eni-two (assign-private-ip-addresses --allow-reassignment);
    // eni-four, whose ARP cache still says 10.0.1.11 is eni-one's MAC, reaches eni-two at once.
    let extra = "[[instance]]\nid = \"four\"\n[[network_interface]]\nid = \"eni-four\"\nsubnet = \"subnet-1\"\nprivate_ip = \"10.0.1.40\"\nattachment = { instance = \"four\", device_index = 0 }\n";
    let mut model = crate::topology::parse(&format!("{LAB}{extra}"), "pipe.toml").unwrap();
    let (one, two) = (model.eni_by_id("eni-one").unwrap(), model.eni_by_id("eni-two").unwrap());
    model.enis[one.index()].secondary_private_ips.clear();
    model.enis[two.index()].secondary_private_ips.push(Ipv4Addr::new(10, 0, 1, 11));
    let mut lab = Lab { pipeline: Pipeline::new(&model), model };
    let mut f = lab.udp("eni-four", lab.mac("eni-one"), [10, 0, 1, 40], [10, 0, 1, 11]);
    let mut rec = Recorder::default();
    let v = lab.pipeline.process(Duration::ZERO, lab.eni("eni-four"), &mut f, &mut rec);
    assert_eq!(v, Verdict::Forward(two), "{rec:?}");
    assert_eq!(&f[0..6], &lab.mac("eni-two").0, "the frame carries its new owner's MAC");
    assert!(rec.lines.iter().any(|(_, l)| l.contains("delivered by address")), "{rec:?}");
    // An address still owned by the MAC's ENI goes by MAC, unchanged.
    let mut g = lab.udp("eni-four", lab.mac("eni-one"), [10, 0, 1, 40], [10, 0, 1, 10]);
    let before = g.clone();
    assert_eq!(lab.run("eni-four", &mut g), Verdict::Forward(one));
    assert_eq!(g, before);
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

// ---------------------------------------------------------------------------------------------
// Security groups, connection tracking, network ACLs, source/destination check

const POLICY_LAB: &str = r#"
name = "pol"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "sub-1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
network_acl = "acl-1"

[[subnet]]
id = "sub-2"
vpc = "vpc-a"
cidr = "10.0.2.0/24"

[[network_acl]]
id = "acl-1"
vpc = "vpc-a"
ingress = [{ rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" }]
egress = [
  { rule = 90, protocol = "tcp", ports = "23", cidr = "0.0.0.0/0", action = "deny" },
  { rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" },
]

[[security_group]]
id = "sg-client"
vpc = "vpc-a"

[[security_group]]
id = "sg-server"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "80", source = "sg-client" },
  { protocol = "udp", ports = "53", source = "10.0.1.0/24" },
  { protocol = "tcp", ports = "23", source = "0.0.0.0/0" },
]
egress = []

[[security_group]]
id = "sg-open"
vpc = "vpc-a"
ingress = [{ protocol = "tcp", ports = "8080", source = "0.0.0.0/0" }]

[[instance]]
id = "client"
[[instance]]
id = "other"
[[instance]]
id = "server"
[[instance]]
id = "web"
[[instance]]
id = "box"
[[instance]]
id = "small"

[[network_interface]]
id = "eni-client"
subnet = "sub-1"
private_ip = "10.0.1.10"
security_groups = ["sg-client"]
attachment = { instance = "client", device_index = 0 }

[[network_interface]]
id = "eni-other"
subnet = "sub-1"
private_ip = "10.0.1.20"
security_groups = ["sg-server"]
attachment = { instance = "other", device_index = 0 }

[[network_interface]]
id = "eni-server"
subnet = "sub-2"
private_ip = "10.0.2.10"
security_groups = ["sg-server"]
attachment = { instance = "server", device_index = 0 }

[[network_interface]]
id = "eni-web"
subnet = "sub-2"
private_ip = "10.0.2.20"
security_groups = ["sg-open"]
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-box"
subnet = "sub-2"
private_ip = "10.0.2.30"
security_groups = ["sg-open"]
source_dest_check = false
attachment = { instance = "box", device_index = 0 }

[[network_interface]]
id = "eni-small"
subnet = "sub-2"
private_ip = "10.0.2.40"
security_groups = ["sg-server"]
connection_tracking = { max_connections = 1 }
attachment = { instance = "small", device_index = 0 }
"#;

struct Policy {
    model: Model,
    pipeline: Pipeline,
    now: Duration,
}

const SYN: TcpFlags = TcpFlags::SYN;
const SYN_ACK: TcpFlags = TcpFlags::SYN.union(TcpFlags::ACK);
const ACK: TcpFlags = TcpFlags::ACK;

impl Policy {
    fn new() -> Policy {
        let model = crate::topology::parse(POLICY_LAB, "pol.toml").expect("the policy lab is valid");
        let pipeline = Pipeline::new(&model);
        Policy { model, pipeline, now: Duration::ZERO }
    }

    fn eni(&self, id: &str) -> EniIdx {
        self.model.eni_by_id(id).expect("known ENI")
    }

    fn ip(&self, id: &str) -> Ipv4Addr {
        self.model.enis[self.eni(id).index()].private_ip
    }

    /// The MAC an instance on `from` would send to for `dst`: the owner's in its subnet, else the router's.
    fn next_hop_mac(&self, from: &str, dst: Ipv4Addr) -> Mac {
        let eni = &self.model.enis[self.eni(from).index()];
        let subnet = self.model.subnet_of(self.eni(from));
        match self.model.enis.iter().find(|e| e.subnet == eni.subnet && e.private_ips().any(|ip| ip == dst)) {
            Some(n) => n.mac,
            None => self.model.vpcs[subnet.vpc.index()].router_mac,
        }
    }

    fn tcp_from(
        &mut self,
        from: &str,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        flags: TcpFlags,
    ) -> Verdict {
        let mac = self.model.enis[self.eni(from).index()].mac;
        let mut f = build::tcp(self.next_hop_mac(from, dst), mac, src, dst, sport, dport, flags, b"");
        let from = self.eni(from);
        self.pipeline.process(self.now, from, &mut f, &mut NoObserver)
    }

    /// TCP between two ENIs by id, from the sender's primary IP.
    fn tcp(&mut self, from: &str, to: &str, sport: u16, dport: u16, flags: TcpFlags) -> Verdict {
        let (src, dst) = (self.ip(from), self.ip(to));
        self.tcp_from(from, src, dst, sport, dport, flags)
    }

    fn udp(&mut self, from: &str, to: &str, sport: u16, dport: u16) -> Verdict {
        let eni = &self.model.enis[self.eni(from).index()];
        let (mac, src, dst) = (eni.mac, eni.private_ip, self.ip(to));
        let mut f = build::udp(self.next_hop_mac(from, dst), mac, src, dst, sport, dport, b"q");
        let from = self.eni(from);
        self.pipeline.process(self.now, from, &mut f, &mut NoObserver)
    }

    fn tracked(&self, eni: &str) -> usize {
        self.pipeline.connections(self.now, Some(self.eni(eni))).len()
    }

    /// Swaps in `model` as the data plane does: a pipeline compiled from it takes the live state
    /// over. ENI indexes are the new model's from now on.
    fn swap_to(&mut self, model: Model) {
        let mut new = Pipeline::new(&model);
        new.take_state_from(&mut self.pipeline);
        self.pipeline = new;
        self.model = model;
    }
}

#[test]
fn new_inbound_needs_a_rule_and_replies_need_none() {
    let mut p = Policy::new();
    let server = p.eni("eni-server");
    // No rule for 22: refused at the receiver, counted there.
    assert_eq!(
        p.tcp("eni-client", "eni-server", 40000, 22, SYN),
        Verdict::DropAt(DropReason::SecurityGroupIngress, server)
    );
    // tcp 80 from members of sg-client: admitted; the server's `egress = []` does not stop replies.
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, SYN_ACK), Verdict::Forward(p.eni("eni-client")));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), Verdict::Forward(server));
    assert_eq!((p.tracked("eni-client"), p.tracked("eni-server")), (1, 1));
    // But with `egress = []` the server cannot start anything.
    assert_eq!(p.tcp("eni-server", "eni-client", 41000, 80, SYN), Verdict::Drop(DropReason::SecurityGroupEgress));
}

#[test]
fn a_group_reference_admits_members_only() {
    let mut p = Policy::new();
    // eni-web is not in sg-client: tcp 80 is refused to it (only sg-client members may).
    assert_eq!(
        p.tcp("eni-web", "eni-server", 40000, 80, SYN),
        Verdict::DropAt(DropReason::SecurityGroupIngress, p.eni("eni-server"))
    );
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(p.eni("eni-server")));
}

#[test]
fn a_low_numbered_acl_deny_beats_a_higher_allow_but_not_inside_the_subnet() {
    let mut p = Policy::new();
    let mut rec = Recorder::default();
    let (src, dst) = (p.ip("eni-client"), p.ip("eni-server"));
    let mut f = build::tcp(p.next_hop_mac("eni-client", dst), p.model.enis[0].mac, src, dst, 40000, 23, SYN, b"");
    let v = p.pipeline.process(p.now, p.eni("eni-client"), &mut f, &mut rec);
    assert_eq!(v, Verdict::Drop(DropReason::NetworkAclEgress));
    assert!(rec.lines.iter().any(|(s, d)| *s == Stage::NaclEgress && d.contains("rule 90: deny")), "{rec:?}");
    // The same port to an ENI of the same subnet: no ACL between them.
    assert_eq!(p.tcp("eni-client", "eni-other", 40000, 23, SYN), Verdict::Forward(p.eni("eni-other")));
}

#[test]
fn source_and_destination_checks_and_the_appliance_that_turns_them_off() {
    let mut p = Policy::new();
    let foreign = Ipv4Addr::new(10, 0, 1, 99);
    let web = p.ip("eni-web");
    assert_eq!(p.tcp_from("eni-client", foreign, web, 40000, 8080, SYN), Verdict::Drop(DropReason::SourceCheck));
    // The appliance may send for others (check off) ...
    assert_eq!(p.tcp_from("eni-box", foreign, web, 40000, 8080, SYN), Verdict::Forward(p.eni("eni-web")));
    // ... and receive for others: a frame to its MAC for an address it does not own.
    let mut f = build::tcp(
        p.model.enis[p.eni("eni-box").index()].mac,
        p.model.enis[p.eni("eni-web").index()].mac,
        web,
        Ipv4Addr::new(192, 0, 2, 1),
        40000,
        8080,
        SYN,
        b"",
    );
    let v = p.pipeline.process(p.now, p.eni("eni-web"), &mut f, &mut NoObserver);
    assert_eq!(v, Verdict::Forward(p.eni("eni-box")));
    // An ENI with the check on may not receive for others.
    let mut f = build::tcp(
        p.model.enis[p.eni("eni-server").index()].mac,
        p.model.enis[p.eni("eni-web").index()].mac,
        web,
        Ipv4Addr::new(192, 0, 2, 1),
        8080,
        23,
        SYN,
        b"",
    );
    let v = p.pipeline.process(p.now, p.eni("eni-web"), &mut f, &mut NoObserver);
    assert_eq!(v, Verdict::DropAt(DropReason::DestinationCheck, p.eni("eni-server")));
}

#[test]
fn arp_may_only_claim_the_enis_own_addresses() {
    let mut p = Policy::new();
    let mac = p.model.enis[p.eni("eni-client").index()].mac;
    let mut f = build::arp_request(mac, Ipv4Addr::new(10, 0, 1, 99), Ipv4Addr::new(10, 0, 1, 1));
    let v = p.pipeline.process(p.now, p.eni("eni-client"), &mut f, &mut NoObserver);
    assert_eq!(v, Verdict::Drop(DropReason::ArpSpoof));
    let mut f = build::arp_request(mac, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 1, 1));
    assert_eq!(p.pipeline.process(p.now, p.eni("eni-client"), &mut f, &mut NoObserver), Verdict::Reply);
}

#[test]
fn a_full_connection_table_refuses_new_connections_only() {
    let mut p = Policy::new();
    let small = p.eni("eni-small");
    assert_eq!(p.tcp("eni-client", "eni-small", 40000, 80, SYN), Verdict::Forward(small));
    assert_eq!(p.tcp("eni-client", "eni-small", 40001, 80, SYN), Verdict::DropAt(DropReason::ConntrackFull, small));
    // The refusal left no half-open entry on the sender's side.
    assert_eq!(p.tracked("eni-client"), 1);
    // Trace reports the refusal as forwarding does.
    let mut f = synthesize_for(&p.model, p.eni("eni-client"), p.ip("eni-small"), IpProto::TCP, 40002, 80);
    let (v, rec) = p.pipeline.trace(p.now, p.eni("eni-client"), &mut f);
    assert_eq!(v, Verdict::DropAt(DropReason::ConntrackFull, small));
    assert!(rec.lines.last().is_some_and(|(_, d)| d.contains("connection table is full")), "{rec:?}");
    // The existing connection goes on, both ways.
    assert_eq!(p.tcp("eni-small", "eni-client", 80, 40000, SYN_ACK), Verdict::Forward(p.eni("eni-client")));
    assert_eq!(p.tcp("eni-client", "eni-small", 40000, 80, ACK), Verdict::Forward(small));
}

#[test]
fn flows_open_both_ways_to_anywhere_are_untracked() {
    let mut p = Policy::new();
    // sg-open allows tcp 8080 from 0.0.0.0/0 and everything out: untracked on eni-web's side.
    assert_eq!(p.tcp("eni-client", "eni-web", 40000, 8080, SYN), Verdict::Forward(p.eni("eni-web")));
    assert_eq!((p.tracked("eni-client"), p.tracked("eni-web")), (1, 0));
}

#[test]
fn connections_expire_on_the_idle_timeout() {
    let mut p = Policy::new();
    let client = p.eni("eni-client");
    assert_eq!(p.udp("eni-client", "eni-server", 5000, 53), Verdict::Forward(p.eni("eni-server")));
    p.now = Duration::from_secs(29);
    assert_eq!(p.udp("eni-server", "eni-client", 53, 5000), Verdict::Forward(client));
    // 30 s (AWS's UDP default) after the last packet the reply has no entry and no rule.
    p.now = Duration::from_secs(60);
    p.pipeline.handle_timeout(p.now);
    assert_eq!((p.tracked("eni-client"), p.tracked("eni-server")), (0, 0));
    assert_eq!(p.udp("eni-server", "eni-client", 53, 5000), Verdict::Drop(DropReason::SecurityGroupEgress));
}

#[test]
fn icmp_errors_about_tracked_flows_pass_whatever_the_rules() {
    let mut p = Policy::new();
    let client = p.eni("eni-client");
    let (cmac, smac) = (p.model.enis[client.index()].mac, p.model.enis[p.eni("eni-server").index()].mac);
    let (cip, sip) = (p.ip("eni-client"), p.ip("eni-server"));
    let router = p.model.vpcs[0].router_mac;
    let mut query = build::udp(router, cmac, cip, sip, 5000, 53, b"q");
    let quoted = query.clone();
    assert_eq!(p.pipeline.process(p.now, client, &mut query, &mut NoObserver), Verdict::Forward(p.eni("eni-server")));
    // Port unreachable back: sg-server allows nothing out and sg-client nothing in, but it is related.
    let mut err = build::icmp_error(router, smac, sip, cip, 3, 3, &quoted);
    let v = p.pipeline.process(p.now, p.eni("eni-server"), &mut err, &mut NoObserver);
    assert_eq!(v, Verdict::Forward(client));
    // An unrelated ICMP error (quoting a flow nobody tracks) is judged by the rules.
    let other = build::udp(router, cmac, cip, sip, 6000, 53, b"q");
    let mut err = build::icmp_error(router, smac, sip, cip, 3, 3, &other);
    let v = p.pipeline.process(p.now, p.eni("eni-server"), &mut err, &mut NoObserver);
    assert_eq!(v, Verdict::Drop(DropReason::SecurityGroupEgress));
}

#[test]
fn a_changed_acl_applies_to_the_next_packet_of_a_tracked_flow() {
    let mut p = Policy::new();
    let server = p.eni("eni-server");
    for flags in [SYN, ACK, ACK] {
        assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, flags), Verdict::Forward(server));
    }
    let original = p.model.clone();
    let mut changed = original.clone();
    let acl = changed.subnets[0].network_acl.index();
    changed.network_acls[acl].egress.retain(|r| r.number != 100);
    p.swap_to(changed);
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), Verdict::Drop(DropReason::NetworkAclEgress));
    // Security group changes do not cut a tracked connection (AWS): remove every rule, it goes on.
    let mut changed = original;
    for g in &mut changed.security_groups {
        g.ingress.clear();
    }
    p.swap_to(changed);
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), Verdict::Forward(server));
    assert_eq!(
        p.tcp("eni-client", "eni-server", 40001, 80, SYN),
        Verdict::DropAt(DropReason::SecurityGroupIngress, server)
    );
}

#[test]
fn trace_explains_without_creating_connections() {
    let mut p = Policy::new();
    let mut f = synthesize_for(&p.model, p.eni("eni-client"), p.ip("eni-server"), IpProto::TCP, 40000, 80);
    let (v, rec) = p.pipeline.trace(p.now, p.eni("eni-client"), &mut f);
    assert_eq!(v, Verdict::Forward(p.eni("eni-server")));
    assert!(rec.lines.iter().any(|(s, d)| *s == Stage::SgIngress && d.contains("sg-server ingress rule 1")), "{rec:?}");
    assert_eq!((p.tracked("eni-client"), p.tracked("eni-server")), (0, 0));
    // Real traffic afterwards agrees, and is then what a trace of the reply sees.
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(p.eni("eni-server")));
    let mut back = build::tcp(
        p.model.vpcs[0].router_mac,
        p.model.enis[p.eni("eni-server").index()].mac,
        p.ip("eni-server"),
        p.ip("eni-client"),
        80,
        40000,
        SYN_ACK,
        b"",
    );
    let (v, rec) = p.pipeline.trace(p.now, p.eni("eni-server"), &mut back);
    assert_eq!(v, Verdict::Forward(p.eni("eni-client")));
    assert!(rec.lines.iter().any(|(s, d)| *s == Stage::SgEgress && d.contains("tracked connection")), "{rec:?}");
}

// ---------------------------------------------------------------------------------------------
// Route tables: longest prefix, blackholes, appliances, peering

const ROUTE_LAB: &str = r#"
name = "rt"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[vpc]]
id = "vpc-b"
cidr = "10.1.0.0/16"

[[vpc]]
id = "vpc-c"
cidr = "10.2.0.0/16"

[[vpc_peering]]
id = "pcx-ab"
requester_vpc = "vpc-a"
accepter_vpc = "vpc-b"

[[vpc_peering]]
id = "pcx-bc"
requester_vpc = "vpc-b"
accepter_vpc = "vpc-c"

[[subnet]]
id = "sub-a1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
route_table = "rtb-a1"

[[subnet]]
id = "sub-a2"
vpc = "vpc-a"
cidr = "10.0.2.0/24"

[[subnet]]
id = "sub-a3"
vpc = "vpc-a"
cidr = "10.0.3.0/24"

[[subnet]]
id = "sub-b"
vpc = "vpc-b"
cidr = "10.1.1.0/24"
route_table = "rtb-b"

[[subnet]]
id = "sub-c"
vpc = "vpc-c"
cidr = "10.2.1.0/24"

[[route_table]]
id = "rtb-a1"
vpc = "vpc-a"
routes = [
  { destination = "10.0.2.0/24", target = "eni-fw" },
  { destination = "10.0.3.128/25", target = "eni-loose" },
  { destination = "10.0.3.200/32", target = "blackhole" },
  { destination = "10.1.0.0/16", target = "pcx-ab" },
  { destination = "10.2.0.0/16", target = "pcx-ab" },
]

[[route_table]]
id = "rtb-b"
vpc = "vpc-b"
routes = [{ destination = "10.0.0.0/16", target = "pcx-ab" }]

[[security_group]]
id = "sg-all"
vpc = "vpc-a"
ingress = [{ protocol = "all", source = "10.0.0.0/8" }]

[[security_group]]
id = "sg-all-b"
vpc = "vpc-b"
ingress = [{ protocol = "all", source = "10.0.0.0/8" }]

[[instance]]
id = "one"
[[instance]]
id = "two"
[[instance]]
id = "three"
[[instance]]
id = "fw"
[[instance]]
id = "peer"

[[network_interface]]
id = "eni-one"
subnet = "sub-a1"
private_ip = "10.0.1.10"
security_groups = ["sg-all"]
attachment = { instance = "one", device_index = 0 }

[[network_interface]]
id = "eni-two"
subnet = "sub-a2"
private_ip = "10.0.2.10"
security_groups = ["sg-all"]
attachment = { instance = "two", device_index = 0 }

[[network_interface]]
id = "eni-three"
subnet = "sub-a3"
private_ip = "10.0.3.10"
security_groups = ["sg-all"]
attachment = { instance = "three", device_index = 0 }

[[network_interface]]
id = "eni-fw"
subnet = "sub-a3"
private_ip = "10.0.3.20"
security_groups = ["sg-all"]
source_dest_check = false
attachment = { instance = "fw", device_index = 0 }

[[network_interface]]
id = "eni-loose"
subnet = "sub-a3"
private_ip = "10.0.3.30"
source_dest_check = false

[[network_interface]]
id = "eni-peer"
subnet = "sub-b"
private_ip = "10.1.1.10"
security_groups = ["sg-all-b"]
attachment = { instance = "peer", device_index = 0 }
"#;

fn route_lab() -> Policy {
    let model = crate::topology::parse(ROUTE_LAB, "rt.toml").expect("the route lab is valid");
    let pipeline = Pipeline::new(&model);
    Policy { model, pipeline, now: Duration::ZERO }
}

#[test]
fn the_longest_prefix_wins_and_can_steer_a_subnet_through_an_appliance() {
    let mut p = route_lab();
    // 10.0.2.0/24 -> eni-fw is more specific than local 10.0.0.0/16.
    assert_eq!(p.tcp("eni-one", "eni-two", 40000, 80, SYN), Verdict::Forward(p.eni("eni-fw")));
    // The rest of the VPC follows the local route.
    assert_eq!(p.tcp("eni-one", "eni-three", 40000, 80, SYN), Verdict::Forward(p.eni("eni-three")));
    // Subnets without their own table use the main table: only local.
    assert_eq!(p.tcp("eni-two", "eni-one", 40000, 80, SYN), Verdict::Forward(p.eni("eni-one")));
}

#[test]
fn blackholes_given_or_by_an_unusable_target_drop() {
    let mut p = route_lab();
    let one = p.ip("eni-one");
    let v = p.tcp_from("eni-one", one, Ipv4Addr::new(10, 0, 3, 200), 40000, 80, SYN);
    assert_eq!(v, Verdict::Drop(DropReason::Blackhole));
    // 10.0.3.128/25 -> eni-loose, which is attached nowhere.
    let v = p.tcp_from("eni-one", one, Ipv4Addr::new(10, 0, 3, 150), 40000, 80, SYN);
    assert_eq!(v, Verdict::Drop(DropReason::Blackhole));
    let v = p.tcp_from("eni-one", one, Ipv4Addr::new(192, 0, 2, 1), 40000, 80, SYN);
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn peering_works_both_ways_and_is_not_transitive() {
    let mut p = route_lab();
    let peer = p.eni("eni-peer");
    assert_eq!(p.tcp("eni-one", "eni-peer", 40000, 80, SYN), Verdict::Forward(peer));
    assert_eq!(p.tcp("eni-peer", "eni-one", 80, 40000, SYN_ACK), Verdict::Forward(p.eni("eni-one")));
    assert_eq!(p.tcp("eni-peer", "eni-one", 41000, 22, SYN), Verdict::Forward(p.eni("eni-one")));
    // vpc-c is peered with vpc-b, not vpc-a: a route to it through pcx-ab goes nowhere.
    let one = p.ip("eni-one");
    let v = p.tcp_from("eni-one", one, Ipv4Addr::new(10, 2, 1, 10), 40000, 80, SYN);
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
    // The peer's delivery comes from the peer VPC's router MAC.
    let (src, dst) = (p.ip("eni-one"), p.ip("eni-peer"));
    let mac = p.model.enis[p.eni("eni-one").index()].mac;
    let mut f = build::tcp(p.model.vpcs[0].router_mac, mac, src, dst, 42000, 80, SYN, b"");
    assert_eq!(p.pipeline.process(p.now, p.eni("eni-one"), &mut f, &mut NoObserver), Verdict::Forward(peer));
    assert_eq!(&f[6..12], &p.model.vpcs[1].router_mac.0);
}

#[test]
fn a_pending_peering_and_a_detached_internet_gateway_are_blackholes() {
    let mut p = route_lab();
    assert_eq!(p.model.peerings[0].id, "pcx-ab");
    p.model.peerings[0].status = crate::model::PeeringStatus::PendingAcceptance;
    p.pipeline = Pipeline::new(&p.model);
    assert_eq!(p.tcp("eni-one", "eni-peer", 40000, 80, SYN), Verdict::Drop(DropReason::Blackhole));

    let mut d = default_lab();
    let web = d.ip("eni-web");
    let example = Ipv4Addr::new(198, 51, 100, 7);
    assert_eq!(d.tcp_from("eni-web", web, example, 40000, 80, SYN), Verdict::ToInternet);
    d.model.internet_gateways[0].vpc = None;
    d.pipeline = Pipeline::new(&d.model);
    assert_eq!(d.tcp_from("eni-web", web, example, 40001, 80, SYN), Verdict::Drop(DropReason::Blackhole));
    // The NAT gateway's own way out is the same route.
    let app = d.ip("eni-app");
    assert_eq!(d.tcp_from("eni-app", app, example, 40002, 80, SYN), Verdict::Drop(DropReason::Blackhole));
}

// ---------------------------------------------------------------------------------------------
// The edges: internet gateway, NAT gateway, MTU

fn default_lab() -> Policy {
    let model = crate::topology::parse(crate::topology::DEFAULT_TOPOLOGY, "default.toml").expect("valid");
    let pipeline = Pipeline::new(&model);
    Policy { model, pipeline, now: Duration::ZERO }
}

const HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn ipv4(frame: &[u8]) -> Ipv4Meta {
    match parse(frame).expect("parses").l3 {
        L3Meta::Ipv4(ip) => ip,
        other => panic!("not IPv4: {other:?}"),
    }
}

impl Policy {
    fn inbound(&mut self, dst: Ipv4Addr, sport: u16, dport: u16, flags: TcpFlags) -> (Verdict, Vec<u8>) {
        let (gw, host) = (self.model.internet_gateway_mac(), self.model.internet_host_mac());
        let mut f = build::tcp(gw, host, HOST, dst, sport, dport, flags, b"");
        let v = self.pipeline.process_internet(self.now, &mut f, Offload::default(), &mut NoObserver);
        (v, f)
    }

    fn outbound(&mut self, from: &str, sport: u16, dport: u16, flags: TcpFlags) -> (Verdict, Vec<u8>) {
        let eni = &self.model.enis[self.eni(from).index()];
        let router = self.model.vpcs[0].router_mac;
        let mut f = build::tcp(router, eni.mac, eni.private_ip, HOST, sport, dport, flags, b"");
        let v = self.pipeline.process(self.now, self.eni(from), &mut f, &mut NoObserver);
        (v, f)
    }
}

#[test]
fn the_internet_gateway_maps_an_elastic_ip_one_to_one_both_ways() {
    let mut p = default_lab();
    let (v, out) = p.outbound("eni-web", 40000, 80, SYN);
    assert_eq!(v, Verdict::ToInternet);
    let ip = ipv4(&out);
    assert_eq!((ip.flow.src, ip.flow.dst, ip.flow.l4.src_port), (Ipv4Addr::new(203, 0, 113, 20), HOST, 40000));
    assert!(crate::packet::rewrite::verify(&out), "checksums after translation");
    assert_eq!(&out[0..6], &p.model.internet_host_mac().0);
    // The reply comes back to the private address, judged by the ENI's tracked connection.
    let (v, back) = p.inbound(Ipv4Addr::new(203, 0, 113, 20), 80, 40000, SYN_ACK);
    assert_eq!(v, Verdict::Forward(p.eni("eni-web")));
    assert_eq!(ipv4(&back).flow.dst, Ipv4Addr::new(10, 0, 1, 10));
    assert!(crate::packet::rewrite::verify(&back));
}

impl Policy {
    /// A TCP segment from `from`'s primary IP to `dst`, through the router; the verdict and the frame.
    fn via_router(&mut self, from: &str, dst: Ipv4Addr, sport: u16, dport: u16, flags: TcpFlags) -> (Verdict, Vec<u8>) {
        let eni = &self.model.enis[self.eni(from).index()];
        let router = self.model.vpcs[0].router_mac;
        let mut f = build::tcp(router, eni.mac, eni.private_ip, dst, sport, dport, flags, b"");
        let v = self.pipeline.process(self.now, self.eni(from), &mut f, &mut NoObserver);
        (v, f)
    }
}

#[test]
fn the_lab_s_own_public_addresses_come_back_in_through_the_internet_gateway() {
    let mut p = default_lab();
    let (web_eip, nat_eip) = (Ipv4Addr::new(203, 0, 113, 20), Ipv4Addr::new(203, 0, 113, 10));
    // app (private, behind the NAT gateway) to web's Elastic IP: web sees the NAT's public address.
    let (v, f) = p.via_router("eni-app", web_eip, 40000, 80, SYN);
    assert_eq!(v, Verdict::Forward(p.eni("eni-web")));
    let ip = ipv4(&f);
    assert_eq!((ip.flow.src, ip.flow.dst, ip.flow.l4.dst_port), (nat_eip, p.ip("eni-web"), 80));
    assert!(crate::packet::rewrite::verify(&f), "checksums after both translations");
    let nat_port = ip.flow.l4.src_port;
    // web answers the NAT's address: out through the gateway as its Elastic IP, back in through the NAT.
    let (v, f) = p.via_router("eni-web", nat_eip, 80, nat_port, SYN_ACK);
    assert_eq!(v, Verdict::Forward(p.eni("eni-app")));
    let ip = ipv4(&f);
    assert_eq!((ip.flow.src, ip.flow.dst, ip.flow.l4.dst_port), (web_eip, p.ip("eni-app"), 40000));
    assert!(crate::packet::rewrite::verify(&f));
    // web to its own Elastic IP works the same way.
    let (v, f) = p.via_router("eni-web", web_eip, 41000, 80, SYN);
    assert_eq!(v, Verdict::Forward(p.eni("eni-web")));
    assert_eq!(ipv4(&f).flow.src, web_eip);
    // sg-web admits echo from 10.0.0.0/16 only: the public source of a hairpin is not that.
    let eni = &p.model.enis[p.eni("eni-app").index()];
    let mut f = build::icmp_echo(p.model.vpcs[0].router_mac, eni.mac, eni.private_ip, web_eip, 7);
    let v = p.pipeline.process(p.now, p.eni("eni-app"), &mut f, &mut NoObserver);
    assert_eq!(v.drop_reason(), Some(DropReason::SecurityGroupIngress), "{v:?}");
}

#[test]
fn trace_shows_both_internet_gateway_crossings_of_a_hairpin() {
    let mut p = default_lab();
    let eni = &p.model.enis[p.eni("eni-web").index()];
    let mut f = build::tcp(
        p.model.vpcs[0].router_mac,
        eni.mac,
        eni.private_ip,
        Ipv4Addr::new(203, 0, 113, 20),
        41000,
        80,
        SYN,
        b"",
    );
    let (v, rec) = p.pipeline.trace(p.now, p.eni("eni-web"), &mut f);
    assert_eq!(v, Verdict::Forward(p.eni("eni-web")));
    let gateway: Vec<&str> =
        rec.lines.iter().filter(|(s, _)| *s == Stage::InternetGateway).map(|(_, l)| l.as_str()).collect();
    assert_eq!(gateway.len(), 3, "{gateway:?}");
    assert!(gateway[0].starts_with("source 10.0.1.10 -> 203.0.113.20"), "{gateway:?}");
    assert!(gateway[1].starts_with("hairpin: 203.0.113.20"), "{gateway:?}");
    assert!(gateway[2].starts_with("destination 203.0.113.20 -> 10.0.1.10"), "{gateway:?}");
}

#[test]
fn without_a_public_address_there_is_no_way_out() {
    let mut p = default_lab();
    // eni-web's secondary 10.0.1.11 has no Elastic IP.
    let mac = p.model.enis[p.eni("eni-web").index()].mac;
    let mut f = build::tcp(p.model.vpcs[0].router_mac, mac, Ipv4Addr::new(10, 0, 1, 11), HOST, 40000, 80, SYN, b"");
    let v = p.pipeline.process(p.now, p.eni("eni-web"), &mut f, &mut NoObserver);
    assert_eq!(v, Verdict::Drop(DropReason::NoPublicAddress));
}

#[test]
fn the_nat_gateway_translates_out_and_back_and_refuses_the_unsolicited() {
    let mut p = default_lab();
    let (v, out) = p.outbound("eni-app", 40000, 80, SYN);
    assert_eq!(v, Verdict::ToInternet);
    let ip = ipv4(&out);
    assert_eq!(ip.flow.src, Ipv4Addr::new(203, 0, 113, 10), "the NAT's Elastic IP");
    assert!(crate::packet::rewrite::verify(&out));
    let port = ip.flow.l4.src_port;
    let (v, back) = p.inbound(Ipv4Addr::new(203, 0, 113, 10), 80, port, SYN_ACK);
    assert_eq!(v, Verdict::Forward(p.eni("eni-app")));
    let b = ipv4(&back);
    assert_eq!((b.flow.dst, b.flow.l4.dst_port), (Ipv4Addr::new(10, 0, 2, 10), 40000));
    assert!(crate::packet::rewrite::verify(&back));
    // Nothing answers an unknown port or a private address from outside.
    let (v, _) = p.inbound(Ipv4Addr::new(203, 0, 113, 10), 80, port + 1, SYN);
    assert_eq!(v, Verdict::Drop(DropReason::NatNoMapping));
    let (v, _) = p.inbound(Ipv4Addr::new(10, 0, 2, 10), 80, 40000, SYN);
    assert_eq!(v, Verdict::Drop(DropReason::NoSuchAddress));
}

#[test]
fn the_nat_gateway_counts_its_cloudwatch_metrics_and_trace_counts_nothing() {
    let mut p = default_lab();
    let nat = |p: &Policy| p.pipeline.stats().nat_gateways[0];
    let (v, out) = p.outbound("eni-app", 40000, 80, SYN);
    assert_eq!(v, Verdict::ToInternet);
    let port = ipv4(&out).flow.l4.src_port;
    let c = nat(&p);
    assert_eq!((c.connection_attempts, c.connections_established, c.active_tcp_connections), (1, 0, 1));
    assert_eq!((c.packets_in_from_source, c.packets_out_to_destination), (1, 1));
    assert_eq!((c.bytes_in_from_source, c.bytes_out_to_destination), (out.len() as u64, out.len() as u64));
    let (v, back) = p.inbound(Ipv4Addr::new(203, 0, 113, 10), 80, port, SYN_ACK);
    assert_eq!(v, Verdict::Forward(p.eni("eni-app")));
    let c = nat(&p);
    assert_eq!((c.connections_established, c.packets_in_from_destination, c.packets_out_to_source), (1, 1, 1));
    assert_eq!((c.bytes_in_from_destination, c.bytes_out_to_source), (back.len() as u64, back.len() as u64));
    // Unsolicited inbound: received, dropped by the NAT gateway, delivered to no one.
    let (v, _) = p.inbound(Ipv4Addr::new(203, 0, 113, 10), 80, port + 1, SYN);
    assert_eq!(v, Verdict::Drop(DropReason::NatNoMapping));
    let c = nat(&p);
    assert_eq!((c.packets_in_from_destination, c.packets_dropped, c.packets_out_to_source), (2, 1, 1));
    // A trace walks the same stages and counts nothing.
    let before = nat(&p);
    let app = p.eni("eni-app");
    let eni = &p.model.enis[app.index()];
    let mut f = build::tcp(p.model.vpcs[0].router_mac, eni.mac, eni.private_ip, HOST, 40001, 80, SYN, b"");
    assert_eq!(p.pipeline.trace(p.now, app, &mut f).0, Verdict::ToInternet);
    assert_eq!(nat(&p), before);
    // Idle past 350 s: the translation ends as an idle timeout.
    p.now = Duration::from_secs(351);
    p.pipeline.handle_timeout(p.now);
    let c = nat(&p);
    assert_eq!((c.idle_timeouts, c.active_tcp_connections), (1, 0));
    // Its connection table sizes are the pipeline's too.
    let t = p.pipeline.stats().conntrack[app.index()];
    assert_eq!(t.max_entries, u64::from(eni.connection_tracking.max_connections));
}

#[test]
fn a_dead_nat_translation_answers_tcp_with_a_reset() {
    let mut p = default_lab();
    assert_eq!(p.outbound("eni-app", 40000, 80, SYN).0, Verdict::ToInternet);
    p.now = Duration::from_secs(351);
    p.pipeline.handle_timeout(p.now);
    let (v, rst) = p.outbound("eni-app", 40000, 80, ACK);
    let Verdict::ReplyWith(len) = v else { panic!("expected a RST, got {v:?}") };
    let ip = ipv4(&rst[..len]);
    assert_eq!(
        (ip.flow.src, ip.flow.dst, ip.flow.l4.tcp_flags.contains(TcpFlags::RST)),
        (HOST, Ipv4Addr::new(10, 0, 2, 10), true)
    );
    // A new connection (SYN) is translated again.
    assert_eq!(p.outbound("eni-app", 40000, 80, SYN).0, Verdict::ToInternet);
}

#[test]
fn the_nat_gateway_runs_out_of_ports_per_destination() {
    let text = crate::topology::DEFAULT_TOPOLOGY.replacen(
        "elastic_ip = \"eipalloc-nat\"",
        "elastic_ip = \"eipalloc-nat\"\nports = \"1024-1025\"",
        1,
    );
    let model = crate::topology::parse(&text, "d.toml").unwrap();
    let mut p = Policy { pipeline: Pipeline::new(&model), model, now: Duration::ZERO };
    assert_eq!(p.outbound("eni-app", 40000, 80, SYN).0, Verdict::ToInternet);
    assert_eq!(p.outbound("eni-app", 40001, 80, SYN).0, Verdict::ToInternet);
    assert_eq!(p.outbound("eni-app", 40002, 80, SYN).0, Verdict::Drop(DropReason::NatPortAllocation));
    // Another destination port has its own ports.
    assert_eq!(p.outbound("eni-app", 40002, 443, SYN).0, Verdict::ToInternet);
}

#[test]
fn too_big_for_the_internet_with_df_gets_fragmentation_needed() {
    let mut p = default_lab();
    let eni = &p.model.enis[p.eni("eni-web").index()];
    let mut f = build::udp(p.model.vpcs[0].router_mac, eni.mac, eni.private_ip, HOST, 5000, 53, &[0; 2000]);
    f[ETH_HEADER_LEN + 6] |= 0x40; // DF
    let v = p.pipeline.process(p.now, p.eni("eni-web"), &mut f, &mut NoObserver);
    let Verdict::ReplyWith(len) = v else { panic!("expected frag-needed, got {v:?}") };
    let ip = ipv4(&f[..len]);
    assert_eq!(
        (ip.flow.src, ip.flow.dst, ip.flow.l4.icmp_type, ip.flow.l4.icmp_code),
        (Ipv4Addr::new(10, 0, 1, 1), eni.private_ip, 3, 4)
    );
    // The same size as a TSO superframe of 1448-byte segments goes through.
    let mut f = build::tcp(p.model.vpcs[0].router_mac, eni.mac, eni.private_ip, HOST, 40000, 80, SYN, &[0; 3000]);
    let off = Offload { csum_partial: false, gso_size: Some(1448) };
    let v = p.pipeline.process_offloaded(p.now, p.eni("eni-web"), &mut f, off, &mut NoObserver);
    assert_eq!(v, Verdict::ToInternet);
}

#[test]
fn an_appliance_forwarding_both_directions_of_a_flow_sends_each_its_own_way() {
    let mut p = route_lab();
    let (one, two) = (p.ip("eni-one"), p.ip("eni-two"));
    // one -> two is steered through eni-fw, which forwards it on (its subnet's table: local).
    assert_eq!(p.tcp("eni-one", "eni-two", 40000, 80, SYN), Verdict::Forward(p.eni("eni-fw")));
    for flags in [SYN, ACK] {
        assert_eq!(p.tcp_from("eni-fw", one, two, 40000, 80, flags), Verdict::Forward(p.eni("eni-two")));
    }
    // The reply, forwarded by the same appliance, goes to one, not back to two.
    assert_eq!(p.tcp_from("eni-fw", two, one, 80, 40000, SYN_ACK), Verdict::Forward(p.eni("eni-one")));
    assert_eq!(p.tcp_from("eni-fw", two, one, 80, 40000, ACK), Verdict::Forward(p.eni("eni-one")));
    assert_eq!(p.tcp_from("eni-fw", one, two, 40000, 80, ACK), Verdict::Forward(p.eni("eni-two")));
}

#[test]
fn a_syn_reusing_a_closed_connections_ports_is_judged_as_a_new_connection() {
    let mut p = Policy::new();
    let (server, client) = (p.eni("eni-server"), p.eni("eni-client"));
    const FIN_ACK: TcpFlags = TcpFlags::FIN.union(TcpFlags::ACK);
    // A whole connection: handshake, then both sides close (TIME_WAIT).
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, SYN_ACK), Verdict::Forward(client));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, FIN_ACK), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, FIN_ACK), Verdict::Forward(client));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), Verdict::Forward(server));
    // The rule that admitted it is gone: a new SYN on the same ports must meet the rules.
    let original = p.model.clone();
    let mut changed = original.clone();
    for g in &mut changed.security_groups {
        g.ingress.clear();
    }
    p.swap_to(changed);
    let v = p.tcp("eni-client", "eni-server", 40000, 80, SYN);
    assert_eq!(v, Verdict::DropAt(DropReason::SecurityGroupIngress, server));
    // With the rule back, the reused ports make a working new connection, replies included.
    p.swap_to(original);
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, SYN_ACK), Verdict::Forward(client));
}

// ---------------------------------------------------------------------------------------------
// Live changes: a freshly compiled pipeline takes the state over by id; stopped instances

const SWAP_BASE: &str = r#"
name = "swap"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "sub-1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"

[[subnet]]
id = "sub-2"
vpc = "vpc-a"
cidr = "10.0.2.0/24"

[[security_group]]
id = "sg-client"
vpc = "vpc-a"

[[security_group]]
id = "sg-server"
vpc = "vpc-a"
ingress = [
  { protocol = "tcp", ports = "80", source = "sg-client" },
  { protocol = "udp", ports = "53", source = "10.0.0.0/8" },
]
egress = []
"#;

/// The ENIs a swap lab may hold (each with its own instance): (ENI id, subnet, IP, group, instance).
const SWAP_ENIS: [(&str, &str, &str, &str, &str); 5] = [
    ("eni-client", "sub-1", "10.0.1.10", "sg-client", "client"),
    ("eni-other", "sub-1", "10.0.1.20", "sg-server", "other"),
    ("eni-server", "sub-2", "10.0.2.10", "sg-server", "server"),
    ("eni-gone", "sub-2", "10.0.2.20", "sg-server", "gone"),
    ("eni-new", "sub-2", "10.0.2.30", "sg-server", "newbie"),
];

/// A lab holding these ENIs, in this order: removing, inserting and reordering ENIs is a matter of
/// listing them differently. Neither the client nor the server group admits what the other sends
/// back, so a reply passes only as part of a tracked connection.
fn swap_model(enis: &[&str]) -> Model {
    let mut text = SWAP_BASE.to_string();
    for id in enis {
        let (id, subnet, ip, sg, instance) = *SWAP_ENIS.iter().find(|e| e.0 == *id).expect("an ENI of the catalogue");
        text += &format!(
            "\n[[instance]]\nid = \"{instance}\"\n\n[[network_interface]]\nid = \"{id}\"\nsubnet = \"{subnet}\"\n\
             private_ip = \"{ip}\"\nsecurity_groups = [\"{sg}\"]\nattachment = {{ instance = \"{instance}\", device_index = 0 }}\n"
        );
    }
    crate::topology::parse(&text, "swap.toml").expect("the swap lab is valid")
}

fn swap_policy(enis: &[&str]) -> Policy {
    let model = swap_model(enis);
    Policy { pipeline: Pipeline::new(&model), model, now: Duration::ZERO }
}

impl Policy {
    /// `process` with a recorder: the verdict and the stages that ran.
    fn tcp_recorded(&mut self, from: &str, to: &str, sport: u16, dport: u16, flags: TcpFlags) -> (Verdict, Recorder) {
        let eni = &self.model.enis[self.eni(from).index()];
        let (mac, src, dst) = (eni.mac, eni.private_ip, self.ip(to));
        let mut f = build::tcp(self.next_hop_mac(from, dst), mac, src, dst, sport, dport, flags, b"");
        let mut rec = Recorder::default();
        let v = self.pipeline.process(self.now, self.eni(from), &mut f, &mut rec);
        (v, rec)
    }

    fn set_instance_state(&self, instance: &str, state: InstanceState) -> Model {
        let mut m = self.model.clone();
        let i = m.instance_by_id(instance).expect("known instance");
        m.instances[i.index()].state = state;
        m
    }
}

#[test]
fn port_ids_are_the_enis_in_order_then_the_internet() {
    let p = swap_policy(&["eni-server", "eni-client"]);
    assert_eq!(p.pipeline.port_ids(), ["eni-server", "eni-client", INTERNET_PORT]);
    assert!(!p.model.has_internet(), "the last port is the internet's even without one");
    let d = default_lab();
    assert_eq!(d.pipeline.port_ids(), ["eni-web", "eni-app", "eni-standby", "eni-app-float", "internet"]);
}

#[test]
fn state_follows_each_eni_by_id_when_enis_are_removed_and_inserted() {
    let mut p = swap_policy(&["eni-client", "eni-other", "eni-gone", "eni-server"]);
    let (client, server, gone) = (p.eni("eni-client"), p.eni("eni-server"), p.eni("eni-gone"));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, SYN_ACK), Verdict::Forward(client));
    assert_eq!(p.tcp("eni-client", "eni-gone", 40001, 80, SYN), Verdict::Forward(gone));
    assert_eq!((p.tracked("eni-client"), p.tracked("eni-server"), p.tracked("eni-gone")), (2, 1, 1));
    let generation = p.pipeline.generation();

    // eni-other and eni-gone go, eni-new comes first: every survivor moves to another index.
    p.swap_to(swap_model(&["eni-new", "eni-client", "eni-server"]));
    assert_eq!(p.pipeline.generation(), generation + 1);
    let (client2, server2) = (p.eni("eni-client"), p.eni("eni-server"));
    assert_ne!((client2, server2), (client, server));
    assert_eq!((p.tracked("eni-client"), p.tracked("eni-server"), p.tracked("eni-new")), (2, 1, 0));
    assert!(p.pipeline.connections(p.now, None).iter().all(|c| c.eni != "eni-gone" && c.eni != "eni-other"));
    // The connection goes on both ways, as tracked on both sides, at the new indexes: neither
    // group would admit these packets as new flows.
    let (v, rec) = p.tcp_recorded("eni-client", "eni-server", 40000, 80, ACK);
    assert_eq!(v, Verdict::Forward(server2));
    for stage in [Stage::SgEgress, Stage::SgIngress] {
        assert!(rec.lines.iter().any(|(s, d)| *s == stage && d.contains("tracked connection")), "{rec:?}");
    }
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, ACK), Verdict::Forward(client2));
    // The new ENI's table is empty: the server's SYN+ACK to it is no reply to anything.
    let v = p.tcp("eni-new", "eni-client", 80, 40002, SYN_ACK);
    assert_eq!(v, Verdict::Drop(DropReason::SecurityGroupEgress));

    // eni-gone comes back: its state was dropped with it, so its reply is refused.
    p.swap_to(swap_model(&["eni-gone", "eni-new", "eni-client", "eni-server"]));
    assert_eq!(p.tracked("eni-gone"), 0);
    assert_eq!(p.tcp("eni-gone", "eni-client", 80, 40001, SYN_ACK), Verdict::Drop(DropReason::SecurityGroupEgress));
}

#[test]
fn changed_conntrack_timeouts_apply_to_carried_tables() {
    let mut p = swap_policy(&["eni-client", "eni-server"]);
    let (client, server) = (p.eni("eni-client"), p.eni("eni-server"));
    assert_eq!(p.udp("eni-client", "eni-server", 5000, 53), Verdict::Forward(server));
    // UDP 30 s -> 60 s: at 45 s the reply still belongs to the connection.
    let mut changed = p.model.clone();
    for e in &mut changed.enis {
        e.connection_tracking.udp = 60;
    }
    p.swap_to(changed);
    p.now = Duration::from_secs(45);
    p.pipeline.handle_timeout(p.now);
    assert_eq!(p.udp("eni-server", "eni-client", 53, 5000), Verdict::Forward(client));
    let view = p.pipeline.connections(p.now, Some(client));
    assert_eq!(view[0].expires_in_secs, 60);
    // A second request after the reply makes it a stream (180 s); lowered to 60 s, it ends sooner.
    p.now = Duration::from_secs(46);
    assert_eq!(p.udp("eni-client", "eni-server", 5000, 53), Verdict::Forward(server));
    let mut changed = p.model.clone();
    for e in &mut changed.enis {
        e.connection_tracking.udp_stream = 60;
    }
    p.swap_to(changed);
    assert_eq!(p.pipeline.connections(p.now, Some(server))[0].expires_in_secs, 60);
    p.now = Duration::from_secs(46 + 60);
    p.pipeline.handle_timeout(p.now);
    assert_eq!((p.tracked("eni-client"), p.tracked("eni-server")), (0, 0));
    assert_eq!(p.udp("eni-server", "eni-client", 53, 5000), Verdict::Drop(DropReason::SecurityGroupEgress));
}

#[test]
fn a_lowered_max_connections_refuses_new_connections_while_existing_ones_pass() {
    let mut p = swap_policy(&["eni-client", "eni-server"]);
    for port in 40000..40003 {
        assert_eq!(p.tcp("eni-client", "eni-server", port, 80, SYN), Verdict::Forward(p.eni("eni-server")));
    }
    // Reordered as well, so the table is found by id.
    let mut changed = swap_model(&["eni-server", "eni-client"]);
    changed.enis[0].connection_tracking.max_connections = 1;
    p.swap_to(changed);
    let (client, server) = (p.eni("eni-client"), p.eni("eni-server"));
    assert_eq!(server, EniIdx(0));
    for port in 40000..40003 {
        assert_eq!(p.tcp("eni-server", "eni-client", 80, port, SYN_ACK), Verdict::Forward(client), "{port}");
        assert_eq!(p.tcp("eni-client", "eni-server", port, 80, ACK), Verdict::Forward(server), "{port}");
    }
    assert_eq!(p.tcp("eni-client", "eni-server", 40003, 80, SYN), Verdict::DropAt(DropReason::ConntrackFull, server));
    assert_eq!((p.tracked("eni-client"), p.tracked("eni-server")), (3, 3));
}

#[test]
fn nat_translations_follow_their_nat_id_and_new_flows_use_the_new_port_range() {
    let mut p = default_lab();
    let (v, out) = p.outbound("eni-app", 40000, 80, SYN);
    assert_eq!(v, Verdict::ToInternet);
    let outside = ipv4(&out).flow.l4.src_port;
    assert!(outside >= 1024, "{outside}");
    // A private NAT gateway is added before nat-main (which moves to index 1), and nat-main's
    // ports are narrowed.
    let text = crate::topology::DEFAULT_TOPOLOGY
        .replacen(
            "[[nat_gateway]]\nid = \"nat-main\"",
            "[[nat_gateway]]\nid = \"nat-private\"\nsubnet = \"subnet-private\"\nprivate_ip = \"10.0.2.200\"\n\n\
             [[nat_gateway]]\nid = \"nat-main\"",
            1,
        )
        .replacen("elastic_ip = \"eipalloc-nat\"", "elastic_ip = \"eipalloc-nat\"\nports = \"2000-2001\"", 1);
    let changed = crate::topology::parse(&text, "d.toml").expect("valid");
    assert_eq!(changed.nat_gateways[1].id, "nat-main");
    p.swap_to(changed);
    // The translation survived (as did eni-app's connection): the reply comes back in.
    let (v, back) = p.inbound(Ipv4Addr::new(203, 0, 113, 10), 80, outside, SYN_ACK);
    assert_eq!(v, Verdict::Forward(p.eni("eni-app")));
    assert_eq!(ipv4(&back).flow.l4.dst_port, 40000);
    let (v, out) = p.outbound("eni-app", 40000, 80, ACK);
    assert_eq!((v, ipv4(&out).flow.l4.src_port), (Verdict::ToInternet, outside));
    let views = p.pipeline.connections(p.now, None);
    assert!(views.iter().any(|c| c.eni == "nat-main" && c.translated.is_some_and(|t| t.1 == outside)), "{views:?}");
    // A new flow gets a port of the new range.
    let (v, out) = p.outbound("eni-app", 40001, 80, SYN);
    assert_eq!(v, Verdict::ToInternet);
    assert!((2000..=2001).contains(&ipv4(&out).flow.l4.src_port), "{:?}", ipv4(&out));
}

#[test]
fn a_cached_hop_is_not_followed_after_a_swap_moved_its_eni() {
    let mut p = swap_policy(&["eni-client", "eni-other", "eni-gone", "eni-server"]);
    let server = p.eni("eni-server");
    assert_eq!(server, EniIdx(3));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, SYN_ACK), Verdict::Forward(p.eni("eni-client")));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), Verdict::Forward(server));
    // Cached: the next packet takes the fast path (nothing past port security is recorded).
    let (v, rec) = p.tcp_recorded("eni-client", "eni-server", 40000, 80, ACK);
    assert_eq!((v, rec.lines.len()), (Verdict::Forward(server), 1), "{rec:?}");
    // The server moves to index 0; index 3 is no port at all now.
    p.swap_to(swap_model(&["eni-server", "eni-client"]));
    let server = p.eni("eni-server");
    assert_eq!(server, EniIdx(0));
    let (v, rec) = p.tcp_recorded("eni-client", "eni-server", 40000, 80, ACK);
    assert_eq!(v, Verdict::Forward(server));
    assert!(rec.lines.iter().any(|(s, _)| *s == Stage::SgIngress), "judged again: {rec:?}");
    assert!(rec.lines.iter().any(|(s, d)| *s == Stage::Deliver && d.contains("eni-server")), "{rec:?}");
    // ... which cached the new hop: the next packet is fast again, to the right ENI.
    let (v, rec) = p.tcp_recorded("eni-client", "eni-server", 40000, 80, ACK);
    assert_eq!((v, rec.lines.len()), (Verdict::Forward(server), 1), "{rec:?}");
    // The reply direction's hop, cached on the server's entry, was judged again too.
    let (v, rec) = p.tcp_recorded("eni-server", "eni-client", 80, 40000, ACK);
    assert_eq!(v, Verdict::Forward(p.eni("eni-client")));
    assert!(rec.lines.len() > 1, "{rec:?}");
}

#[test]
fn a_stopped_instance_carries_nothing_either_way_and_is_not_answered_for() {
    let mut p = swap_policy(&["eni-client", "eni-server", "eni-gone"]);
    let (client, server) = (p.eni("eni-client"), p.eni("eni-server"));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, SYN_ACK), Verdict::Forward(client));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), Verdict::Forward(server));
    p.swap_to(p.set_instance_state("server", InstanceState::Stopped));
    let stopped = Verdict::DropAt(DropReason::InstanceStopped, server);
    // To it: the tracked connection (its cached hop included) and new ones, counted on it.
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), stopped);
    assert_eq!(p.tcp("eni-client", "eni-server", 40001, 80, SYN), stopped);
    // From it: anything, ARP included.
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, ACK), Verdict::Drop(DropReason::InstanceStopped));
    let smac = p.model.enis[server.index()].mac;
    let mut arp = build::arp_request(smac, p.ip("eni-server"), Ipv4Addr::new(10, 0, 2, 1));
    assert_eq!(
        p.pipeline.process(p.now, server, &mut arp, &mut NoObserver),
        Verdict::Drop(DropReason::InstanceStopped)
    );
    // Its neighbour's ARP for it goes unanswered.
    let gone = p.eni("eni-gone");
    let mut arp = build::arp_request(p.model.enis[gone.index()].mac, p.ip("eni-gone"), p.ip("eni-server"));
    let (v, rec) = p.pipeline.trace(p.now, gone, &mut arp);
    assert_eq!(v, Verdict::Drop(DropReason::ArpUnanswered));
    assert!(
        rec.lines.iter().any(|(s, d)| *s == Stage::ArpReply && d.contains("instance server is stopped")),
        "{rec:?}"
    );
    // Trace says so, both ways.
    let mut f = synthesize_for(&p.model, client, p.ip("eni-server"), IpProto::TCP, 40002, 80);
    let (v, rec) = p.pipeline.trace(p.now, client, &mut f);
    assert_eq!(v, stopped);
    assert!(rec.lines.last().is_some_and(|(s, d)| *s == Stage::Deliver && d.contains("is stopped")), "{rec:?}");
    let mut f = synthesize_for(&p.model, server, p.ip("eni-client"), IpProto::TCP, 40002, 80);
    let (v, rec) = p.pipeline.trace(p.now, server, &mut f);
    assert_eq!(v, Verdict::Drop(DropReason::InstanceStopped));
    assert_eq!(rec.lines.len(), 1);
    assert_eq!(rec.lines[0].0, Stage::PortSecurity);
    assert!(rec.lines[0].1.contains("eni-server's instance server is stopped"), "{rec:?}");
    assert_eq!(
        (DropReason::InstanceStopped.name(), DropReason::InstanceStopped.explanation_code()),
        ("instance_stopped", "INSTANCE_STOPPED")
    );
    assert!(DropReason::ALL.contains(&DropReason::InstanceStopped));
    // Started again: it carries traffic again.
    p.swap_to(p.set_instance_state("server", InstanceState::Running));
    assert_eq!(p.tcp("eni-client", "eni-server", 40003, 80, SYN), Verdict::Forward(server));
    let mut arp = build::arp_request(p.model.enis[gone.index()].mac, p.ip("eni-gone"), p.ip("eni-server"));
    assert_eq!(p.pipeline.process(p.now, gone, &mut arp, &mut NoObserver), Verdict::Reply);
}

#[test]
fn a_route_to_an_appliance_of_a_stopped_instance_is_a_blackhole() {
    let text = ROUTE_LAB.replacen("[[instance]]\nid = \"fw\"", "[[instance]]\nid = \"fw\"\nstate = \"stopped\"", 1);
    let model = crate::topology::parse(&text, "rt.toml").expect("valid");
    let mut p = Policy { pipeline: Pipeline::new(&model), model, now: Duration::ZERO };
    // 10.0.2.0/24 -> eni-fw: its instance is stopped, so the route is a blackhole (as `status`
    // shows it, and as AWS shows a route to a stopped instance).
    assert_eq!(p.tcp("eni-one", "eni-two", 40000, 80, SYN), Verdict::Drop(DropReason::Blackhole));
    // The rest of the VPC is unaffected.
    assert_eq!(p.tcp("eni-one", "eni-three", 40000, 80, SYN), Verdict::Forward(p.eni("eni-three")));
}

#[test]
fn a_cached_hop_is_followed_only_by_frames_to_the_mac_it_was_cached_for() {
    // Found by the `pipeline` fuzz target: the fast path forwarded a tracked flow's frame
    // whatever its destination MAC, so a frame to an unknown MAC, or to another ENI of the
    // subnet, still reached the flow's peer (and `trace` disagreed with forwarding).
    let mut p = swap_policy(&["eni-client", "eni-other", "eni-server"]);
    let (client, other, server) = (p.eni("eni-client"), p.eni("eni-other"), p.eni("eni-server"));
    let frame = |p: &Policy, dst_mac: Mac, to: &str, sport: u16| {
        let (src, dst) = (p.ip("eni-client"), p.ip(to));
        build::tcp(dst_mac, p.model.enis[client.index()].mac, src, dst, sport, 80, ACK, b"")
    };
    // A routed connection, its hop cached on the client's entry.
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, SYN), Verdict::Forward(server));
    assert_eq!(p.tcp("eni-server", "eni-client", 80, 40000, SYN_ACK), Verdict::Forward(client));
    assert_eq!(p.tcp("eni-client", "eni-server", 40000, 80, ACK), Verdict::Forward(server));
    let mut f = frame(&p, Mac([2, 9, 9, 9, 9, 9]), "eni-server", 40000);
    let v = p.pipeline.process(p.now, client, &mut f, &mut NoObserver);
    assert_eq!(v, Verdict::Drop(DropReason::UnknownDestinationMac));
    let mut f = frame(&p, p.model.enis[other.index()].mac, "eni-server", 40000);
    let v = p.pipeline.process(p.now, client, &mut f, &mut NoObserver);
    assert_eq!(v, Verdict::DropAt(DropReason::DestinationCheck, other), "layer 2 to another ENI, as the full walk");
    // A layer-2 connection in the subnet; a frame of it sent to the router is routed, its MACs
    // rewritten, as the full walk does.
    assert_eq!(p.tcp("eni-client", "eni-other", 40001, 80, SYN), Verdict::Forward(other));
    assert_eq!(p.tcp("eni-other", "eni-client", 80, 40001, SYN_ACK), Verdict::Forward(client));
    assert_eq!(p.tcp("eni-client", "eni-other", 40001, 80, ACK), Verdict::Forward(other));
    let router = p.model.vpcs[0].router_mac;
    let mut f = frame(&p, router, "eni-other", 40001);
    let mut copy = f.clone();
    let (traced, _) = p.pipeline.trace(p.now, client, &mut copy);
    let v = p.pipeline.process(p.now, client, &mut f, &mut NoObserver);
    assert_eq!((v, traced), (Verdict::Forward(other), Verdict::Forward(other)));
    assert_eq!((&f[0..6], &f[6..12]), (&p.model.enis[other.index()].mac.0[..], &router.0[..]));
    assert_eq!(f, copy, "forwarding rewrites the frame as trace does");
}

#[test]
fn icmp_of_a_type_the_acl_denies_is_dropped_even_on_a_tracked_connection() {
    // Found by the `pipeline` fuzz target: one connection entry stands for every non-echo ICMP
    // message between two addresses, and its cached hop skipped the network ACLs, so after an
    // ICMP message the ACL allowed, one of a type it denies went through (trace dropped it).
    let text = r#"
name = "icmpacl"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "sub-1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"

[[subnet]]
id = "sub-2"
vpc = "vpc-a"
cidr = "10.0.2.0/24"
network_acl = "acl-2"

[[network_acl]]
id = "acl-2"
vpc = "vpc-a"
ingress = [ { rule = 100, protocol = "icmp", icmp_type = 40, cidr = "10.0.0.0/16", action = "allow" } ]
egress = [ { rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" } ]

[[instance]]
id = "client"

[[instance]]
id = "server"

[[network_interface]]
id = "eni-client"
subnet = "sub-1"
private_ip = "10.0.1.10"
attachment = { instance = "client", device_index = 0 }

[[network_interface]]
id = "eni-server"
subnet = "sub-2"
private_ip = "10.0.2.10"
attachment = { instance = "server", device_index = 0 }
"#;
    let model = crate::topology::parse(text, "icmpacl.toml").unwrap();
    let mut p = Pipeline::new(&model);
    let (client, server) = (model.eni_by_id("eni-client").unwrap(), model.eni_by_id("eni-server").unwrap());
    let (mac, router) = (model.enis[client.index()].mac, model.vpcs[0].router_mac);
    let (a, b) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 2, 10));
    let quoted = build::udp(mac, router, b, a, 1, 2, b"");
    let icmp = |icmp_type: u8| build::icmp_error(router, mac, a, b, icmp_type, 0, &quoted);
    // Messages of type 40 pass the ACL; the second one is a tracked connection's.
    for _ in 0..2 {
        assert_eq!(p.process(Duration::ZERO, client, &mut icmp(40), &mut NoObserver), Verdict::Forward(server));
    }
    // A redirect (type 5) is the same connection entry, but the ACL denies it.
    let denied = Verdict::DropAt(DropReason::NetworkAclIngress, server);
    let (traced, _) = p.trace(Duration::ZERO, client, &mut icmp(5));
    assert_eq!(traced, denied);
    assert_eq!(p.process(Duration::ZERO, client, &mut icmp(5), &mut NoObserver), denied);
}

/// The bytes one tracked connection costs, from `size_of` (the README's "Connection tables at
/// scale" table quotes these; run with `--nocapture` to see them). An entry is a hashbrown
/// `HashTable` slot plus one control byte; a shard keeps at most 7/8 of its power-of-two bucket
/// count full. There is no expiry queue (the sweep reads the buckets).
#[test]
fn connection_entry_sizes() {
    use std::mem::size_of;
    let key = size_of::<crate::conntrack::ConnKey>();
    let entry = size_of::<crate::conntrack::Entry<Hops>>();
    println!("ConnKey {key} B, Entry<Hops> {entry} B (Hops {} B) + 1 control byte", size_of::<Hops>());
    assert_eq!((key, entry), (14, 48), "update the README's per-entry table");
}

impl Policy {
    /// A TCP segment from the internet host to `dst`, traced on a copy first, then forwarded
    /// with a recorder: the verdict, the forwarded frame, and whether the full walk ran (it
    /// records stages; the fast path records none).
    fn inbound_twice(&mut self, dst: Ipv4Addr, sport: u16, dport: u16) -> (Verdict, Vec<u8>, bool) {
        let (gw, host) = (self.model.internet_gateway_mac(), self.model.internet_host_mac());
        let mut f = build::tcp(gw, host, HOST, dst, sport, dport, ACK, b"data");
        let mut traced = f.clone();
        let (v_traced, _) = self.pipeline.trace_internet(self.now, &mut traced);
        let mut rec = Recorder::default();
        let v = self.pipeline.process_internet(self.now, &mut f, Offload::default(), &mut rec);
        assert_eq!((v, &f), (v_traced, &traced), "the fast path forwards as the full walk traces");
        (v, f, !rec.lines.is_empty())
    }

    /// [`inbound_twice`](Self::inbound_twice) for a segment from `from` to the internet host.
    fn outbound_twice(&mut self, from: &str, sport: u16, dport: u16) -> (Verdict, Vec<u8>, bool) {
        let eni = &self.model.enis[self.eni(from).index()];
        let router = self.model.vpcs[0].router_mac;
        let mut f = build::tcp(router, eni.mac, eni.private_ip, HOST, sport, dport, ACK, b"data");
        let mut traced = f.clone();
        let (v_traced, _) = self.pipeline.trace(self.now, self.eni(from), &mut traced);
        let mut rec = Recorder::default();
        let v = self.pipeline.process(self.now, self.eni(from), &mut f, &mut rec);
        assert_eq!((v, &f), (v_traced, &traced), "the fast path forwards as the full walk traces");
        // Port security is recorded before the fast path is tried.
        (v, f, rec.lines.len() > 1)
    }
}

#[test]
fn gateway_flows_take_the_fast_path_both_ways_and_rewrite_as_the_full_walk() {
    let mut p = default_lab();
    let nat = |p: &Policy| p.pipeline.stats().nat_gateways[0];
    for (from, public) in [("eni-web", Ipv4Addr::new(203, 0, 113, 20)), ("eni-app", Ipv4Addr::new(203, 0, 113, 10))] {
        let eni = p.eni(from);
        let (v, out) = p.outbound(from, 40000, 80, SYN);
        assert_eq!(v, Verdict::ToInternet, "{from}");
        let port = ipv4(&out).flow.l4.src_port;
        assert_eq!(p.inbound(public, 80, port, SYN_ACK).0, Verdict::Forward(eni), "{from}");
        // From here on both directions are cached: no stage runs, the frames are the walk's.
        for _ in 0..3 {
            let (v, out, walked) = p.outbound_twice(from, 40000, 80);
            assert_eq!((v, walked), (Verdict::ToInternet, false), "{from} out");
            let ip = ipv4(&out);
            assert_eq!((ip.flow.src, ip.flow.l4.src_port), (public, port), "{from}");
            assert!(crate::packet::rewrite::verify(&out), "{from}: checksums");
            let (v, back, walked) = p.inbound_twice(public, 80, port);
            assert_eq!((v, walked), (Verdict::Forward(eni), false), "{from} in");
            let b = ipv4(&back);
            assert_eq!((b.flow.dst, b.flow.l4.dst_port), (p.model.enis[eni.index()].private_ip, 40000), "{from}");
            assert!(crate::packet::rewrite::verify(&back), "{from}: checksums");
        }
    }
    // The NAT gateway counted every fast packet as the walk counts them: SYN, SYN-ACK, 3 each way.
    let c = nat(&p);
    assert_eq!((c.packets_in_from_source, c.packets_out_to_destination), (4, 4));
    assert_eq!((c.packets_in_from_destination, c.packets_out_to_source), (4, 4));
    // Fast packets keep the translation alive: 300 s apart, past its 350 s idle timeout in all.
    for step in 1..=3 {
        p.now = Duration::from_secs(300 * step);
        p.pipeline.handle_timeout(p.now);
        let (v, _, walked) = p.outbound_twice("eni-app", 40000, 80);
        assert_eq!((v, walked), (Verdict::ToInternet, false), "at {:?}", p.now);
        let port = p.pipeline.connections(p.now, None).iter().find_map(|c| c.translated).expect("translated").1;
        let (v, _, walked) = p.inbound_twice(Ipv4Addr::new(203, 0, 113, 10), 80, port);
        assert_eq!((v, walked), (Verdict::Forward(p.eni("eni-app")), false), "at {:?}", p.now);
    }
}

#[test]
fn a_changed_acl_or_an_expired_translation_stops_the_gateway_fast_path() {
    let mut p = default_lab();
    let (web_public, nat_public) = (Ipv4Addr::new(203, 0, 113, 20), Ipv4Addr::new(203, 0, 113, 10));
    for (from, public) in [("eni-web", web_public), ("eni-app", nat_public)] {
        let port = ipv4(&p.outbound(from, 40000, 80, SYN).1).flow.l4.src_port;
        assert_eq!(p.inbound(public, 80, port, SYN_ACK).0, Verdict::Forward(p.eni(from)));
        assert!(!p.outbound_twice(from, 40000, 80).2, "{from}: cached");
    }
    // Deny the host in both subnets' ACLs, both ways: the next packet of each flow is judged
    // again, as on AWS (network ACLs are stateless), though its connection is tracked.
    let mut changed = p.model.clone();
    for acl in &mut changed.network_acls {
        for rules in [&mut acl.ingress, &mut acl.egress] {
            let deny = crate::model::AclRule {
                number: 1,
                protocol: crate::model::Protocol::All,
                ports: crate::model::PortMatch::Any,
                cidr: Cidr::new(HOST, 32),
                action: crate::model::AclAction::Deny,
            };
            rules.insert(0, deny);
        }
    }
    let original = p.model.clone();
    p.swap_to(changed);
    for (from, public) in [("eni-web", web_public), ("eni-app", nat_public)] {
        let (v, _, walked) = p.outbound_twice(from, 40000, 80);
        assert!(walked && matches!(v, Verdict::Drop(_) | Verdict::DropAt(..)), "{from} out: {v:?}");
        let port = if from == "eni-app" {
            p.pipeline.connections(p.now, None).iter().find_map(|c| c.translated).expect("translated").1
        } else {
            40000
        };
        let (v, _, walked) = p.inbound_twice(public, 80, port);
        assert!(walked && matches!(v, Verdict::Drop(_) | Verdict::DropAt(..)), "{from} in: {v:?}");
    }
    // Allowed again: judged once more, then fast.
    p.swap_to(original);
    assert_eq!(p.outbound_twice("eni-app", 40000, 80).0, Verdict::ToInternet);
    assert!(!p.outbound_twice("eni-app", 40000, 80).2, "fast again");
    // The translation dies at its idle timeout while eni-app's connection lives on: the next
    // segment takes the walk, which answers it with a reset, as AWS does.
    p.now = Duration::from_secs(351);
    p.pipeline.handle_timeout(p.now);
    let (v, _, walked) = p.outbound_twice("eni-app", 40000, 80);
    assert!(walked && matches!(v, Verdict::ReplyWith(_)), "{v:?}");
}

#[test]
fn with_a_shard_an_appliance_routed_to_itself_takes_one_slot_as_one_worker_does() {
    // sub-a3 takes rtb-a1 too: eni-fw forwarding to 10.0.2.0/24 is routed back to itself, so
    // its egress and ingress entries are one entry, and its one slot is enough.
    let text = ROUTE_LAB.replacen("cidr = \"10.0.3.0/24\"\n", "cidr = \"10.0.3.0/24\"\nroute_table = \"rtb-a1\"\n", 1);
    let mut model = crate::topology::parse(&text, "rt.toml").expect("the route lab is valid");
    let fw = model.eni_by_id("eni-fw").expect("eni-fw");
    model.enis[fw.index()].connection_tracking.max_connections = 1;
    // 0: no shard, as one worker forwards.
    for workers in [0, 2] {
        let mut pipeline = Pipeline::new(&model);
        if workers > 0 {
            let counts = (0..model.enis.len()).map(|_| std::sync::Arc::default()).collect();
            pipeline.set_shard(0, workers, counts);
        }
        let mut p = Policy { model: model.clone(), pipeline, now: Duration::ZERO };
        let (one, two) = (p.ip("eni-one"), p.ip("eni-two"));
        assert_eq!(p.tcp_from("eni-fw", one, two, 40000, 80, SYN), Verdict::Forward(fw), "{workers} worker(s)");
        assert_eq!(p.tracked("eni-fw"), 1);
    }
}

#[test]
fn every_worker_sends_to_the_uplink_gateway_mac_any_worker_relearned() {
    let hosts = "hosts = [\n  { id = \"example\", ip = \"198.51.100.7\" },\n]";
    let uplink = "uplink = { interface = \"veth0\", gateway = \"192.0.2.1\" }";
    let text = crate::topology::DEFAULT_TOPOLOGY.replacen(hosts, uplink, 1);
    let model = crate::topology::parse(&text, "d.toml").unwrap();
    let first = Pipeline::new(&model);
    let mut p = Policy { pipeline: first.replica(), model, now: Duration::ZERO };
    let mut first = first;
    let (old, new) = (Mac([0x02, 0, 0, 0, 0, 1]), Mac([0x02, 0, 0, 0, 0, 2]));
    first.set_uplink_gateway_mac(old);
    assert_eq!(&p.outbound("eni-web", 40000, 80, SYN).1[0..6], &old.0);
    // The gateway's ARP (here a request for an Elastic IP) reaches the first worker only.
    let public = p.model.public_addresses().next().expect("an Elastic IP");
    let mut arp = build::arp_request(new, Ipv4Addr::new(192, 0, 2, 1), public);
    assert_eq!(first.process_internet(Duration::ZERO, &mut arp, Offload::default(), &mut NoObserver), Verdict::Reply);
    assert_eq!(&p.outbound("eni-web", 40001, 80, SYN).1[0..6], &new.0, "the other worker sends to the new MAC");
    // And a configuration swap keeps sharing it.
    let mut swapped = Pipeline::new(&p.model);
    swapped.take_state_from(&mut p.pipeline);
    first.set_uplink_gateway_mac(old);
    p.pipeline = swapped;
    assert_eq!(&p.outbound("eni-web", 40002, 80, SYN).1[0..6], &old.0);
}

// ---------------------------------------------------------------------------------------------
// DHCP: answered by the fabric before groups and ACLs

const DHCP_LAB: &str = r#"
name = "dhcp"
region = "eu-west-1"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "sub-1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
network_acl = "acl-deny"

[[network_acl]]
id = "acl-deny"
vpc = "vpc-a"
ingress = []
egress = []

[[security_group]]
id = "sg-closed"
vpc = "vpc-a"
egress = []

[[instance]]
id = "one"

[[network_interface]]
id = "eni-one"
subnet = "sub-1"
private_ip = "10.0.1.10"
security_groups = ["sg-closed"]
attachment = { instance = "one", device_index = 0 }
"#;

/// The reply of a `ReplyWith(len)` verdict: over the request, or kept by the pipeline when longer.
fn fabric_reply(p: &Pipeline, frame: &[u8], len: usize) -> Vec<u8> {
    if len <= frame.len() {
        frame[..len].to_vec()
    } else {
        p.answer()[..len].to_vec()
    }
}

#[test]
fn dhcp_is_answered_whatever_the_groups_and_acls_say() {
    use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
    use dhcproto::{Decodable, Decoder};
    let model = crate::topology::parse(DHCP_LAB, "dhcp.toml").expect("the DHCP lab is valid");
    let mut p = Pipeline::new(&model);
    let eni = model.eni_by_id("eni-one").unwrap();
    let mac = model.enis[eni.index()].mac;
    let mut f = dhcp::client_frame(mac, MessageType::Discover, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &[]);
    let mut rec = Recorder::default();
    let Verdict::ReplyWith(len) = p.process(Duration::ZERO, eni, &mut f, &mut rec) else { panic!("not answered") };
    assert_eq!(rec.lines.iter().map(|l| l.0).collect::<Vec<_>>(), [Stage::PortSecurity, Stage::DhcpReply]);
    let reply = fabric_reply(&p, &f, len);
    let start = ETH_HEADER_LEN + 20 + 8;
    let m = Message::decode(&mut Decoder::new(&reply[start..])).expect("the reply decodes");
    assert_eq!((m.opts().msg_type(), m.yiaddr()), (Some(MessageType::Offer), Ipv4Addr::new(10, 0, 1, 10)));
    let domain = DhcpOption::DomainName("eu-west-1.compute.internal".into());
    assert_eq!(m.opts().get(OptionCode::DomainName), Some(&domain));
    // Other UDP from the same ENI is still refused by its group.
    let mut other =
        build::udp(model.vpcs[0].router_mac, mac, [10, 0, 1, 10].into(), [10, 0, 1, 20].into(), 40000, 53, b"x");
    assert_eq!(
        p.process(Duration::ZERO, eni, &mut other, &mut NoObserver),
        Verdict::Drop(DropReason::SecurityGroupEgress)
    );
}

#[test]
fn dhcp_spoofed_and_malformed_requests_are_counted_drops() {
    use dhcproto::v4::MessageType;
    let mut lab = Lab::new();
    let other = lab.mac("eni-two");
    let mut spoof = dhcp::client_frame(other, MessageType::Discover, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &[]);
    spoof[6..12].copy_from_slice(&lab.mac("eni-one").0);
    assert_eq!(lab.run("eni-one", &mut spoof), Verdict::Drop(DropReason::DhcpSpoof));
    let mut junk =
        build::udp(Mac([0xff; 6]), lab.mac("eni-one"), Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &[0; 64]);
    assert_eq!(lab.run("eni-one", &mut junk), Verdict::Drop(DropReason::DhcpMalformed));
    let mut request = dhcp::client_frame(
        lab.mac("eni-one"),
        MessageType::Request,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &[dhcproto::v4::DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 1, 11))],
    );
    // The secondary IP is the ENI's, but DHCP hands out only the primary: NAK.
    let Verdict::ReplyWith(len) = lab.run("eni-one", &mut request) else { panic!("not answered") };
    let reply = fabric_reply(&lab.pipeline, &request, len);
    assert_eq!(parse(&reply).unwrap().dst_mac, Mac([0xff; 6]));
}

// ---------------------------------------------------------------------------------------------
// The Amazon DNS server: answered by the fabric before groups and ACLs, per the ENI's VPC

/// Two VPCs with the same CIDR (not peered): the DNS server must tell them apart by the ENI a
/// query came in on. vpc-a's ENIs are behind a group and an ACL that let nothing through.
const DNS_LAB: &str = r#"
name = "dns"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"
enable_dns_hostnames = true

[[vpc]]
id = "vpc-b"
cidr = "10.0.0.0/16"

[[vpc]]
id = "vpc-off"
cidr = "10.2.0.0/16"
enable_dns_support = false

[[subnet]]
id = "sub-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
network_acl = "acl-deny"

[[subnet]]
id = "sub-b"
vpc = "vpc-b"
cidr = "10.0.1.0/24"

[[subnet]]
id = "sub-off"
vpc = "vpc-off"
cidr = "10.2.1.0/24"

[[network_acl]]
id = "acl-deny"
vpc = "vpc-a"
ingress = []
egress = []

[[security_group]]
id = "sg-closed"
vpc = "vpc-a"
egress = []

[[internet_gateway]]
id = "igw-a"
vpc = "vpc-a"

[[elastic_ip]]
id = "eipalloc-a"
public_ip = "203.0.113.20"
network_interface = "eni-a"

[[instance]]
id = "a"

[[instance]]
id = "b"

[[instance]]
id = "off"

[[network_interface]]
id = "eni-a"
subnet = "sub-a"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.20"]
security_groups = ["sg-closed"]
attachment = { instance = "a", device_index = 0 }

[[network_interface]]
id = "eni-b"
subnet = "sub-b"
private_ip = "10.0.1.10"
attachment = { instance = "b", device_index = 0 }

[[network_interface]]
id = "eni-off"
subnet = "sub-off"
private_ip = "10.2.1.10"
attachment = { instance = "off", device_index = 0 }

[internet]
hosts = [{ id = "example", ip = "198.51.100.7", name = "www.example.com" }]
"#;

struct DnsLab {
    model: Model,
    pipeline: Pipeline,
}

impl DnsLab {
    fn new() -> DnsLab {
        let model = crate::topology::parse(DNS_LAB, "dns.toml").expect("the DNS lab is valid");
        let pipeline = Pipeline::new(&model);
        DnsLab { model, pipeline }
    }

    fn query(&self, eni: &str, server: [u8; 4], name: &str, qtype: hickory_proto::rr::RecordType) -> Vec<u8> {
        let e = &self.model.enis[self.model.eni_by_id(eni).unwrap().index()];
        dns::query_frame(e.mac, e.private_ip, server.into(), name, qtype)
    }

    /// Sends `frame` from `eni` at `now`; the reply frame, or the verdict that was not one.
    fn ask(&mut self, eni: &str, now: Duration, frame: &mut [u8]) -> Result<Vec<u8>, Verdict> {
        let e = self.model.eni_by_id(eni).unwrap();
        match self.pipeline.process(now, e, frame, &mut NoObserver) {
            Verdict::ReplyWith(len) => Ok(fabric_reply(&self.pipeline, frame, len)),
            other => Err(other),
        }
    }

    /// The DNS message in a reply frame.
    fn message(reply: &[u8]) -> hickory_proto::op::Message {
        let L3Meta::Ipv4(ip) = parse(reply).expect("the reply parses").l3 else { panic!("not IPv4") };
        let start = ETH_HEADER_LEN + usize::from(ip.header_len) + 8;
        hickory_proto::op::Message::from_vec(&reply[start..]).expect("the reply decodes")
    }
}

fn a_records(m: &hickory_proto::op::Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn dns_is_answered_from_both_addresses_whatever_the_groups_and_acls_say() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    let mut lab = DnsLab::new();
    for server in [[10, 0, 0, 2], [169, 254, 169, 253]] {
        let mut q = lab.query("eni-a", server, "ip-10-0-1-20.ec2.internal.", RecordType::A);
        let mut rec = Recorder::default();
        let e = lab.model.eni_by_id("eni-a").unwrap();
        let Verdict::ReplyWith(len) = lab.pipeline.process(Duration::ZERO, e, &mut q, &mut rec) else {
            panic!("not answered")
        };
        assert_eq!(rec.lines.iter().map(|l| l.0).collect::<Vec<_>>(), [Stage::PortSecurity, Stage::DnsReply]);
        let reply = fabric_reply(&lab.pipeline, &q, len);
        let meta = parse(&reply).unwrap();
        let L3Meta::Ipv4(ip) = meta.l3 else { panic!("not IPv4") };
        // From the address asked, port 53, to the client, from the router's MAC.
        assert_eq!((meta.src_mac, meta.dst_mac), (lab.model.vpcs[0].router_mac, lab.model.enis[0].mac));
        assert_eq!((ip.flow.src, ip.flow.dst), (Ipv4Addr::from(server), Ipv4Addr::new(10, 0, 1, 10)));
        assert_eq!((ip.flow.l4.src_port, ip.flow.l4.dst_port), (53, 40000));
        let m = DnsLab::message(&reply);
        assert_eq!(
            (m.metadata.response_code, a_records(&m)),
            (ResponseCode::NoError, vec![Ipv4Addr::new(10, 0, 1, 20)])
        );
    }
}

#[test]
fn dns_answers_for_the_vpc_of_the_eni_asking_even_when_vpcs_overlap() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{RData, RecordType};
    let mut lab = DnsLab::new();
    // 10.0.1.20 is vpc-a's only: eni-b (same address as eni-a, other VPC) gets NXDOMAIN.
    let name = "ip-10-0-1-20.ec2.internal.";
    let mut q = lab.query("eni-b", [10, 0, 0, 2], name, RecordType::A);
    let m = DnsLab::message(&lab.ask("eni-b", Duration::ZERO, &mut q).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Reverse, in each VPC: its own owner's name.
    for eni in ["eni-a", "eni-b"] {
        let mut q = lab.query(eni, [169, 254, 169, 253], "10.1.0.10.in-addr.arpa.", RecordType::PTR);
        let m = DnsLab::message(&lab.ask(eni, Duration::ZERO, &mut q).unwrap());
        let RData::PTR(ptr) = &m.answers[0].data else { panic!("not a PTR") };
        assert_eq!(ptr.0.to_ascii(), "ip-10-0-1-10.ec2.internal.", "{eni}");
    }
    let mut q = lab.query("eni-b", [10, 0, 0, 2], "20.1.0.10.in-addr.arpa.", RecordType::PTR);
    let m = DnsLab::message(&lab.ask("eni-b", Duration::ZERO, &mut q).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // The Elastic IP's public name: its private IP inside vpc-a, its public one elsewhere.
    let public = "ec2-203-0-113-20.compute-1.amazonaws.com.";
    for (eni, expected) in [("eni-a", [10, 0, 1, 10]), ("eni-b", [203, 0, 113, 20])] {
        let mut q = lab.query(eni, [10, 0, 0, 2], public, RecordType::A);
        let m = DnsLab::message(&lab.ask(eni, Duration::ZERO, &mut q).unwrap());
        assert_eq!(a_records(&m), [Ipv4Addr::from(expected)], "{eni}");
    }
    // The internet's hosts from anywhere; nothing else.
    let mut q = lab.query("eni-b", [10, 0, 0, 2], "www.example.com.", RecordType::A);
    assert_eq!(
        a_records(&DnsLab::message(&lab.ask("eni-b", Duration::ZERO, &mut q).unwrap())),
        [Ipv4Addr::new(198, 51, 100, 7)]
    );
    let mut q = lab.query("eni-a", [10, 0, 0, 2], "example.org.", RecordType::A);
    let m = DnsLab::message(&lab.ask("eni-a", Duration::ZERO, &mut q).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn dns_support_off_tcp_and_junk_are_counted_drops() {
    use hickory_proto::rr::RecordType;
    let mut lab = DnsLab::new();
    let mut q = lab.query("eni-off", [10, 2, 0, 2], "ip-10-2-1-10.ec2.internal.", RecordType::A);
    assert_eq!(lab.ask("eni-off", Duration::ZERO, &mut q), Err(Verdict::Drop(DropReason::DnsDisabled)));
    let mut q = lab.query("eni-off", [169, 254, 169, 253], "ip-10-2-1-10.ec2.internal.", RecordType::A);
    assert_eq!(lab.ask("eni-off", Duration::ZERO, &mut q), Err(Verdict::Drop(DropReason::DnsDisabled)));
    let (mac, router) = (lab.model.enis[0].mac, lab.model.vpcs[0].router_mac);
    let (me, server) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 0, 2));
    let mut tcp = build::tcp(router, mac, me, server, 40000, 53, TcpFlags::SYN, b"");
    assert_eq!(lab.ask("eni-a", Duration::ZERO, &mut tcp), Err(Verdict::Drop(DropReason::DnsUnanswered)));
    let mut short = build::udp(router, mac, me, server, 40000, 53, &[0; 5]);
    assert_eq!(lab.ask("eni-a", Duration::ZERO, &mut short), Err(Verdict::Drop(DropReason::DnsMalformed)));
    // Another server's address is not intercepted: it takes the normal walk (closed group).
    let mut elsewhere = build::udp(router, mac, me, Ipv4Addr::new(10, 0, 1, 53), 40000, 53, &[0; 20]);
    assert_eq!(lab.ask("eni-a", Duration::ZERO, &mut elsewhere), Err(Verdict::Drop(DropReason::SecurityGroupEgress)));
}

#[test]
fn dns_allows_1024_packets_a_second_per_eni() {
    use hickory_proto::rr::RecordType;
    let mut lab = DnsLab::new();
    let t = Duration::from_secs(10);
    let q = lab.query("eni-a", [10, 0, 0, 2], "www.example.com.", RecordType::A);
    for i in 0..1024 {
        assert!(lab.ask("eni-a", t, &mut q.clone()).is_ok(), "query {i}");
    }
    // A trace explains the drop without spending anything.
    let e = lab.model.eni_by_id("eni-a").unwrap();
    let (v, _) = lab.pipeline.trace(t, e, &mut q.clone());
    assert_eq!(v, Verdict::Drop(DropReason::DnsRateExceeded));
    assert_eq!(lab.ask("eni-a", t, &mut q.clone()), Err(Verdict::Drop(DropReason::DnsRateExceeded)));
    // Another ENI has its own allowance; a second later eni-a has its allowance back.
    let qb = lab.query("eni-b", [10, 0, 0, 2], "www.example.com.", RecordType::A);
    assert!(lab.ask("eni-b", t, &mut qb.clone()).is_ok());
    assert!(lab.ask("eni-a", t + Duration::from_secs(1), &mut q.clone()).is_ok());
    // The allowance survives a swap to a recompiled pipeline (by ENI id).
    let later = t + Duration::from_secs(1);
    for _ in 0..1023 {
        let _ = lab.ask("eni-a", later, &mut q.clone());
    }
    let mut next = Pipeline::new(&lab.model);
    next.take_state_from(&mut lab.pipeline);
    lab.pipeline = next;
    assert_eq!(lab.ask("eni-a", later, &mut q.clone()), Err(Verdict::Drop(DropReason::DnsRateExceeded)));
}
