//! The way to the instance metadata service and back. The service runs on the fabric's side,
//! in the lab's service namespace behind one more port of the forwarder: a frame from ENI port
//! `i` to 169.254.169.254 leaves for it with its source rewritten to the pool address that names
//! port `i` and the slot of the private IP it came from (`services::imds::client_address`), so
//! the service knows the asking ENI by the port it came in on, never by its address (non-peered
//! VPCs may overlap). The answer comes back to that pool address and is rewritten to the
//! instance's address and delivered to port `i`. Stateless both ways: any worker judges either
//! direction. Before groups, ACLs and flow logs, as AWS serves metadata; the TTL is left as the
//! service sent it (the token's hop limit must reach the instance intact).

use std::net::Ipv4Addr;

use super::{DropReason, Observer, Offload, Pipeline, Stage, Step, Verdict};
use crate::model::{EniIdx, Mac, Model, METADATA_IP};
use crate::packet::rewrite;
use crate::packet::{self, ArpMeta, IpProto, Ipv4Meta, L3Meta, ARP_REQUEST};
use crate::services::imds;

/// The MACs of the link to the service namespace.
#[derive(Clone, Copy, Debug)]
pub(super) struct ServiceLink {
    /// The fabric's side: the source of frames to the service, its next hop's MAC.
    own: Mac,
    /// The service namespace's interface.
    peer: Mac,
}

impl ServiceLink {
    pub(super) fn new(model: &Model) -> ServiceLink {
        ServiceLink { own: model.service_gateway_mac(), peer: model.service_host_mac() }
    }
}

impl Pipeline {
    /// A frame from ENI `from` to 169.254.169.254: on to the service as the port's pool
    /// address, or dropped when the service cannot be asked that way. Cold and out of line: it
    /// must not swell `walk`, which every other packet takes.
    #[cold]
    #[inline(never)]
    pub(super) fn to_metadata<O: Observer>(
        &self,
        from: EniIdx,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
    ) -> Step<Verdict> {
        let f = &ip.flow;
        if f.proto != IpProto::TCP || f.l4.dst_port != imds::HTTP_PORT || ip.fragment {
            obs.record(Stage::Metadata, format_args!("drop: {METADATA_IP} serves TCP port {} only", imds::HTTP_PORT));
            return Err(Verdict::Drop(DropReason::MetadataUnsupported));
        }
        let port = &self.ports[from.index()];
        let slot = port.ips.iter().position(|&a| a == f.src);
        let Some(client) = slot.and_then(|k| imds::client_address(from.index(), k)) else {
            obs.record(
                Stage::Metadata,
                format_args!("drop: {} is not a private IP of {} the service can name", f.src, port.id),
            );
            return Err(Verdict::Drop(DropReason::MetadataUnknownSource));
        };
        rewrite::set_src_ip(frame, ip, client, off.csum());
        packet::set_macs(frame, self.service.peer, self.service.own);
        obs.record(Stage::Metadata, format_args!("to the metadata service as {client} ({} of {})", f.src, port.id));
        Ok(Verdict::ToService)
    }

    /// A frame from the service namespace: an answer delivered to the ENI its pool address
    /// names, as the instance's address, or the service's ARP for its next hop answered.
    pub fn process_service<O: Observer>(&self, frame: &mut [u8], off: Offload, obs: &mut O) -> Verdict {
        let meta = match packet::parse(frame) {
            Ok(m) => m,
            Err(e) => {
                obs.record(Stage::Parse, format_args!("drop: {e}"));
                return Verdict::Drop(DropReason::Malformed);
            }
        };
        match meta.l3 {
            L3Meta::Arp(arp) => self.service_arp(&arp, frame, obs),
            L3Meta::Ipv4(ip) => match self.metadata_answer(&ip, frame, off, obs) {
                Ok(v) | Err(v) => v,
            },
            L3Meta::Other(_) => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    fn service_arp<O: Observer>(&self, arp: &ArpMeta, frame: &mut [u8], obs: &mut O) -> Verdict {
        if arp.operation != ARP_REQUEST || arp.target_ip != imds::SERVICE_GATEWAY_IP {
            obs.record(Stage::ArpReply, format_args!("drop: the service link answers {}", imds::SERVICE_GATEWAY_IP));
            return Verdict::Drop(DropReason::ArpUnanswered);
        }
        packet::arp_reply_in_place(frame, arp, self.service.own);
        obs.record(Stage::ArpReply, format_args!("{} is-at {}", arp.target_ip, self.service.own));
        Verdict::Reply
    }

    fn metadata_answer<O: Observer>(
        &self,
        ip: &Ipv4Meta,
        frame: &mut [u8],
        off: Offload,
        obs: &mut O,
    ) -> Step<Verdict> {
        let (src, dst) = (ip.flow.src, ip.flow.dst);
        let to = imds::client_of(dst)
            .filter(|_| src == METADATA_IP)
            .and_then(|(port, slot)| Some((port, *self.ports.get(port)?.ips.get(slot)?)));
        let Some((port, instance_ip)) = to else {
            obs.record(Stage::Metadata, format_args!("drop: {src} -> {dst} answers no ENI"));
            return Err(Verdict::Drop(DropReason::MetadataUnknownClient));
        };
        let p = &self.ports[port];
        if !p.attached || p.stopped {
            obs.record(Stage::Metadata, format_args!("drop: {} carries nothing now", p.id));
            return Err(Verdict::Drop(DropReason::MetadataUnknownClient));
        }
        rewrite::set_dst_ip(frame, ip, instance_ip, off.csum());
        packet::set_macs(frame, p.mac, p.router_mac);
        obs.record(Stage::Metadata, format_args!("answer to {instance_ip} of {}", p.id));
        Ok(Verdict::Forward(EniIdx(port as u32)))
    }
}

/// Whether an IPv4 destination is the metadata service's.
#[inline(always)]
pub(super) fn is_metadata(dst: Ipv4Addr) -> bool {
    dst == METADATA_IP
}

#[cfg(test)]
mod tests {
    //! Crafted frames to 169.254.169.254 and back: the rewrite, its checksums, and the drops.

    use std::time::Duration;

    use super::*;
    use crate::packet::{build, rewrite::verify, TcpFlags};
    use crate::pipeline::{NoObserver, Recorder};

    const LAB: &str = r#"
name = "mdpipe"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[vpc]]
id = "vpc-b"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-b"
vpc = "vpc-b"
cidr = "10.0.1.0/24"

[[security_group]]
id = "sg-closed"
vpc = "vpc-a"
egress = []

[[instance]]
id = "one"

[[instance]]
id = "two"

[[network_interface]]
id = "eni-one"
subnet = "subnet-a"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.11"]
security_groups = ["sg-closed"]
attachment = { instance = "one", device_index = 0 }

[[network_interface]]
id = "eni-two"
subnet = "subnet-b"
private_ip = "10.0.1.10"
attachment = { instance = "two", device_index = 0 }
"#;

    fn setup() -> (Pipeline, Model) {
        let m = crate::topology::parse(LAB, "mdpipe.toml").expect("the test lab is valid");
        (Pipeline::new(&m), m)
    }

    fn request(m: &Model, eni: usize, src: Ipv4Addr, dport: u16) -> Vec<u8> {
        let e = &m.enis[eni];
        let router = m.vpcs[m.subnets[e.subnet.index()].vpc.index()].router_mac;
        build::tcp(router, e.mac, src, METADATA_IP, 40000, dport, TcpFlags::SYN, b"")
    }

    fn answer_to(m: &Model, client: Ipv4Addr) -> Vec<u8> {
        build::tcp(m.service_gateway_mac(), m.service_host_mac(), METADATA_IP, client, 80, 40000, TcpFlags::ACK, b"ok")
    }

    fn ipv4(frame: &[u8]) -> Ipv4Meta {
        match packet::parse(frame).expect("parses").l3 {
            L3Meta::Ipv4(ip) => ip,
            _ => panic!("not IPv4"),
        }
    }

    #[test]
    fn a_request_leaves_as_its_port_and_slot_and_the_answer_comes_back_unchanged_in_ttl() {
        let (mut p, m) = setup();
        let now = Duration::ZERO;
        for (eni, src, slot) in [(0, "10.0.1.10", 0), (0, "10.0.1.11", 1), (1, "10.0.1.10", 0)] {
            let src: Ipv4Addr = src.parse().unwrap();
            let mut f = request(&m, eni, src, 80);
            let v = p.process(now, EniIdx(eni as u32), &mut f, &mut NoObserver);
            assert_eq!(v, Verdict::ToService, "from {src} on port {eni}");
            let client = imds::client_address(eni, slot).unwrap();
            let meta = packet::parse(&f).unwrap();
            assert_eq!((meta.dst_mac, meta.src_mac), (m.service_host_mac(), m.service_gateway_mac()));
            assert_eq!((ipv4(&f).flow.src, ipv4(&f).flow.dst), (client, METADATA_IP));
            assert!(verify(&f), "checksums fixed on the way out");

            let mut back = answer_to(&m, client);
            let ttl = ipv4(&back).ttl;
            let v = p.process_service(&mut back, Offload::default(), &mut NoObserver);
            assert_eq!(v, Verdict::Forward(EniIdx(eni as u32)));
            let e = &m.enis[eni];
            let meta = packet::parse(&back).unwrap();
            assert_eq!(meta.dst_mac, e.mac);
            assert_eq!((ipv4(&back).flow.dst, ipv4(&back).ttl), (src, ttl));
            assert!(verify(&back), "checksums fixed on the way back");
        }
        // Neither groups (closed egress on eni-one) nor conntrack saw it.
        assert!(p.connections(now, None).is_empty());
    }

    #[test]
    fn what_the_service_cannot_take_is_counted_not_sent() {
        let (mut p, m) = setup();
        let now = Duration::ZERO;
        let mut udp =
            build::udp(m.vpcs[0].router_mac, m.enis[0].mac, "10.0.1.10".parse().unwrap(), METADATA_IP, 5000, 80, b"x");
        assert_eq!(
            p.process(now, EniIdx(0), &mut udp, &mut NoObserver),
            Verdict::Drop(DropReason::MetadataUnsupported)
        );
        let mut other_port = request(&m, 0, "10.0.1.10".parse().unwrap(), 443);
        let v = p.process(now, EniIdx(0), &mut other_port, &mut NoObserver);
        assert_eq!(v, Verdict::Drop(DropReason::MetadataUnsupported));
        // eni-two has its source check on, but metadata comes first: a foreign source is refused here.
        let mut foreign = request(&m, 1, "10.0.1.99".parse().unwrap(), 80);
        let (v, rec) = p.trace(now, EniIdx(1), &mut foreign);
        assert_eq!(v, Verdict::Drop(DropReason::MetadataUnknownSource));
        assert!(rec.lines.iter().any(|(s, _)| *s == Stage::Metadata), "{:?}", rec.lines);

        for client in [
            imds::client_address(7, 0).unwrap(), // no such port
            imds::client_address(0, 5).unwrap(), // no such slot
            Ipv4Addr::new(10, 0, 1, 10),         // not the pool
        ] {
            let mut back = answer_to(&m, client);
            let v = p.process_service(&mut back, Offload::default(), &mut NoObserver);
            assert_eq!(v, Verdict::Drop(DropReason::MetadataUnknownClient), "{client}");
        }
        let mut spoofed = build::tcp(
            m.service_gateway_mac(),
            m.service_host_mac(),
            Ipv4Addr::new(169, 254, 169, 9),
            imds::client_address(0, 0).unwrap(),
            80,
            40000,
            TcpFlags::ACK,
            b"",
        );
        let v = p.process_service(&mut spoofed, Offload::default(), &mut NoObserver);
        assert_eq!(v, Verdict::Drop(DropReason::MetadataUnknownClient));
        for len in 0..40 {
            let mut junk = vec![0xa5; len];
            let v = p.process_service(&mut junk, Offload::default(), &mut Recorder::default());
            assert!(v.drop_reason().is_some(), "{len} bytes of junk");
        }
    }

    #[test]
    fn the_fabric_answers_arp_on_both_sides() {
        let (mut p, m) = setup();
        let mut ask = build::arp_request(m.service_host_mac(), METADATA_IP, imds::SERVICE_GATEWAY_IP);
        assert_eq!(p.process_service(&mut ask, Offload::default(), &mut NoObserver), Verdict::Reply);
        assert_eq!(packet::parse(&ask).unwrap().src_mac, m.service_gateway_mac());
        let mut other = build::arp_request(m.service_host_mac(), METADATA_IP, Ipv4Addr::new(169, 254, 169, 2));
        let v = p.process_service(&mut other, Offload::default(), &mut NoObserver);
        assert_eq!(v, Verdict::Drop(DropReason::ArpUnanswered));
        let mut from_instance = build::arp_request(m.enis[0].mac, "10.0.1.10".parse().unwrap(), METADATA_IP);
        assert_eq!(p.process(Duration::ZERO, EniIdx(0), &mut from_instance, &mut NoObserver), Verdict::Reply);
        assert_eq!(packet::parse(&from_instance).unwrap().src_mac, m.vpcs[0].router_mac);
    }
}
