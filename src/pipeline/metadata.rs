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
    /// address, or dropped when the service cannot be asked that way.
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

    fn metadata_answer<O: Observer>(&self, ip: &Ipv4Meta, frame: &mut [u8], off: Offload, obs: &mut O) -> Step<Verdict> {
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
