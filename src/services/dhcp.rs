//! The fabric's DHCPv4 server (RFC 2131), as every ENI sees it on AWS: the ENI's primary private IP,
//! its subnet's mask and router (base + 1, also the server identifier), MTU 9001, and the name
//! servers, domain and NTP servers of its VPC's DHCP options set. The wire format is `dhcproto`'s;
//! this module decides the answer and frames it. Pure: a request frame and the ENI's facts in, a
//! reply frame or a reason to drop out.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

use crate::model::{Cidr, DhcpSettings, Mac};
use crate::packet::{build, Ipv4Meta, ETH_HEADER_LEN};
use crate::pipeline::VPC_MTU;

/// The DHCP server's UDP port.
pub const SERVER_PORT: u16 = 67;
/// The DHCP client's UDP port.
pub const CLIENT_PORT: u16 = 68;
/// Lease time handed out (option 51), in seconds. AWS's leases are an hour.
pub const LEASE_SECS: u32 = 3600;
/// Renewal time T1 (option 58): half the lease, RFC 2131's default.
pub const RENEWAL_SECS: u32 = LEASE_SECS / 2;
/// Rebinding time T2 (option 59): seven eighths of the lease, RFC 2131's default.
pub const REBINDING_SECS: u32 = LEASE_SECS * 7 / 8;
/// The longest DHCP message read (RFC 2131's 576-byte IP datagram is the usual bound; jumbo
/// frames inside a VPC allow more, but no client sends more than a few hundred bytes).
pub const MAX_MESSAGE: usize = 1500;

const BROADCAST_MAC: Mac = Mac([0xff; 6]);

/// What the server knows about the ENI a request came in on.
#[derive(Clone, Copy, Debug)]
pub struct EniFacts<'a> {
    /// The ENI's MAC: the only hardware address it may ask for.
    pub mac: Mac,
    /// Its primary private IP: the only address handed out.
    pub primary_ip: Ipv4Addr,
    /// Its subnet: mask, and router at base + 1.
    pub subnet: Cidr,
    /// The VPC router's MAC, the replies' source.
    pub router_mac: Mac,
    /// Its VPC's DHCP settings.
    pub settings: &'a DhcpSettings,
}

/// Why a DHCP request gets no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpDrop {
    /// Not a well-formed BOOTREQUEST with a message type.
    Malformed,
    /// chaddr (or the frame's source MAC) is not the ENI's MAC.
    Spoofed,
    /// A message the server does not answer (RELEASE, DECLINE, a REQUEST for another server).
    Unanswered,
}

/// Is this IPv4 packet, from an ENI in `subnet`, addressed to the fabric's DHCP server
/// (UDP 68 -> 67, to the limited broadcast address or to the subnet router)?
pub fn is_request(ip: &Ipv4Meta, subnet: Cidr) -> bool {
    let f = &ip.flow;
    f.proto == crate::packet::IpProto::UDP
        && !ip.fragment
        && f.l4.src_port == CLIENT_PORT
        && f.l4.dst_port == SERVER_PORT
        && (f.dst == Ipv4Addr::BROADCAST || f.dst == subnet.router())
}

/// The reply frame to the DHCP request in `frame` (a frame [`is_request`] accepted), or why
/// there is none.
pub fn answer(frame: &[u8], ip: &Ipv4Meta, src_mac: Mac, eni: &EniFacts<'_>) -> Result<Vec<u8>, DhcpDrop> {
    let start = ETH_HEADER_LEN + usize::from(ip.header_len) + 8;
    let end = ETH_HEADER_LEN + usize::from(ip.total_len);
    let payload = frame.get(start..end).filter(|p| p.len() <= MAX_MESSAGE).ok_or(DhcpDrop::Malformed)?;
    let request = Message::decode(&mut Decoder::new(payload)).map_err(|_| DhcpDrop::Malformed)?;
    if request.opcode() != Opcode::BootRequest {
        return Err(DhcpDrop::Malformed);
    }
    let kind = request.opts().msg_type().ok_or(DhcpDrop::Malformed)?;
    if src_mac != eni.mac || request.chaddr() != eni.mac.0.as_slice() {
        return Err(DhcpDrop::Spoofed);
    }
    let reply_kind = decide(kind, &request, eni)?;
    let reply = reply_message(&request, reply_kind, eni);
    let bytes = reply.to_vec().map_err(|_| DhcpDrop::Malformed)?;
    Ok(frame_reply(&request, reply_kind, &bytes, eni))
}

/// RFC 2131 4.3: which answer a client message gets.
fn decide(kind: MessageType, request: &Message, eni: &EniFacts<'_>) -> Result<MessageType, DhcpDrop> {
    let server = eni.subnet.router();
    match kind {
        MessageType::Discover => Ok(MessageType::Offer),
        MessageType::Inform => Ok(MessageType::Ack),
        MessageType::Request => {
            if let Some(DhcpOption::ServerIdentifier(id)) = request.opts().get(OptionCode::ServerIdentifier) {
                if *id != server {
                    return Err(DhcpDrop::Unanswered); // the client chose another server
                }
            }
            // SELECTING/INIT-REBOOT name the address in option 50; RENEWING/REBINDING in ciaddr.
            let asked = match request.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(a)) => *a,
                _ => request.ciaddr(),
            };
            Ok(if asked == eni.primary_ip { MessageType::Ack } else { MessageType::Nak })
        }
        _ => Err(DhcpDrop::Unanswered),
    }
}

fn reply_message(request: &Message, kind: MessageType, eni: &EniFacts<'_>) -> Message {
    let server = eni.subnet.router();
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_xid(request.xid())
        .set_flags(request.flags())
        .set_giaddr(request.giaddr())
        .set_chaddr(request.chaddr());
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server));
    if kind == MessageType::Nak {
        return m;
    }
    // An INFORM's client already has its address: no yiaddr, no lease (RFC 2131 4.3.5).
    if kind == MessageType::Ack && request.opts().has_msg_type(MessageType::Inform) {
        m.set_ciaddr(request.ciaddr());
    } else {
        m.set_ciaddr(request.ciaddr()).set_yiaddr(eni.primary_ip);
        let opts = m.opts_mut();
        opts.insert(DhcpOption::AddressLeaseTime(LEASE_SECS));
        opts.insert(DhcpOption::Renewal(RENEWAL_SECS));
        opts.insert(DhcpOption::Rebinding(REBINDING_SECS));
    }
    let s = eni.settings;
    let opts = m.opts_mut();
    opts.insert(DhcpOption::SubnetMask(Ipv4Addr::from(eni.subnet.mask())));
    opts.insert(DhcpOption::Router(vec![server]));
    opts.insert(DhcpOption::InterfaceMtu(VPC_MTU));
    opts.insert(DhcpOption::DomainNameServer(s.dns_servers.clone()));
    opts.insert(DhcpOption::DomainName(s.domain_name.clone()));
    if !s.ntp_servers.is_empty() {
        opts.insert(DhcpOption::NtpServers(s.ntp_servers.clone()));
    }
    m
}

/// RFC 2131 4.1: a NAK, or an answer to a client with no address yet or asking for broadcast,
/// goes to the broadcast MAC and address; otherwise unicast to the client's address and MAC.
fn frame_reply(request: &Message, kind: MessageType, payload: &[u8], eni: &EniFacts<'_>) -> Vec<u8> {
    let ciaddr = request.ciaddr();
    let broadcast = kind == MessageType::Nak || request.flags().broadcast() || ciaddr.is_unspecified();
    let (dst_mac, dst) = if broadcast { (BROADCAST_MAC, Ipv4Addr::BROADCAST) } else { (eni.mac, ciaddr) };
    build::udp(dst_mac, eni.router_mac, eni.subnet.router(), dst, SERVER_PORT, CLIENT_PORT, payload)
}

/// A client's DHCP message of `kind` from `mac` to `dst`, framed as a client sends it.
#[cfg(test)]
pub(crate) fn client_frame(
    mac: Mac,
    kind: MessageType,
    ciaddr: Ipv4Addr,
    dst: Ipv4Addr,
    opts: &[DhcpOption],
) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest).set_xid(0x1234_5678).set_chaddr(&mac.0).set_ciaddr(ciaddr);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o.clone());
    }
    let bytes = m.to_vec().expect("encoding a message built here cannot fail");
    build::udp(BROADCAST_MAC, mac, ciaddr, dst, CLIENT_PORT, SERVER_PORT, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{parse, L3Meta};

    const ENI_MAC: Mac = Mac([2, 0, 0, 0, 0, 0x10]);
    const ROUTER_MAC: Mac = Mac([2, 0, 0, 0, 0, 0x01]);
    const PRIMARY: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);

    fn settings() -> DhcpSettings {
        DhcpSettings {
            domain_name: "ec2.internal".into(),
            dns_servers: vec![Ipv4Addr::new(10, 0, 0, 2)],
            ntp_servers: Vec::new(),
        }
    }

    fn facts(settings: &DhcpSettings) -> EniFacts<'_> {
        EniFacts {
            mac: ENI_MAC,
            primary_ip: PRIMARY,
            subnet: Cidr::new(Ipv4Addr::new(10, 0, 1, 0), 24),
            router_mac: ROUTER_MAC,
            settings,
        }
    }

    fn ask(frame: &[u8], settings: &DhcpSettings) -> Result<(Vec<u8>, Message), DhcpDrop> {
        let meta = parse(frame).expect("test frames parse");
        let L3Meta::Ipv4(ip) = meta.l3 else { panic!("not IPv4") };
        assert!(is_request(&ip, facts(settings).subnet));
        let reply = answer(frame, &ip, meta.src_mac, &facts(settings))?;
        let L3Meta::Ipv4(rip) = parse(&reply).expect("replies parse").l3 else { panic!("reply not IPv4") };
        let start = ETH_HEADER_LEN + usize::from(rip.header_len) + 8;
        let msg = Message::decode(&mut Decoder::new(&reply[start..])).expect("replies decode");
        Ok((reply, msg))
    }

    fn discover() -> Vec<u8> {
        client_frame(ENI_MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &[])
    }

    fn request(asked: Ipv4Addr) -> Vec<u8> {
        let opts = [DhcpOption::RequestedIpAddress(asked), DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 1))];
        client_frame(ENI_MAC, MessageType::Request, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &opts)
    }

    #[test]
    fn discover_is_offered_the_primary_ip_with_aws_options() {
        let s = settings();
        let (frame, m) = ask(&discover(), &s).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(
            (m.opcode(), m.xid(), m.yiaddr(), m.chaddr()),
            (Opcode::BootReply, 0x1234_5678, PRIMARY, &ENI_MAC.0[..])
        );
        let o = m.opts();
        assert_eq!(o.get(OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0))));
        assert_eq!(o.get(OptionCode::Router), Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 1, 1)])));
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 1)))
        );
        assert_eq!(o.get(OptionCode::InterfaceMtu), Some(&DhcpOption::InterfaceMtu(9001)));
        assert_eq!(o.get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(3600)));
        assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
        assert_eq!(o.get(OptionCode::Rebinding), Some(&DhcpOption::Rebinding(3150)));
        assert_eq!(o.get(OptionCode::DomainName), Some(&DhcpOption::DomainName("ec2.internal".into())));
        let dns = DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(o.get(OptionCode::DomainNameServer), Some(&dns));
        assert_eq!(o.get(OptionCode::NtpServers), None);
        // No address yet: to the broadcast MAC and address, from the router.
        let meta = parse(&frame).unwrap();
        let L3Meta::Ipv4(ip) = meta.l3 else { panic!() };
        assert_eq!((meta.dst_mac, meta.src_mac), (BROADCAST_MAC, ROUTER_MAC));
        assert_eq!((ip.flow.src, ip.flow.dst), (Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::BROADCAST));
        assert_eq!((ip.flow.l4.src_port, ip.flow.l4.dst_port), (SERVER_PORT, CLIENT_PORT));
    }

    #[test]
    fn request_for_the_primary_ip_is_acked_and_any_other_is_naked() {
        let s = settings();
        let (_, ack) = ask(&request(PRIMARY), &s).unwrap();
        assert_eq!((ack.opts().msg_type(), ack.yiaddr()), (Some(MessageType::Ack), PRIMARY));
        let (frame, nak) = ask(&request(Ipv4Addr::new(10, 0, 1, 99)), &s).unwrap();
        assert_eq!((nak.opts().msg_type(), nak.yiaddr()), (Some(MessageType::Nak), Ipv4Addr::UNSPECIFIED));
        assert_eq!(nak.opts().get(OptionCode::AddressLeaseTime), None);
        assert_eq!(parse(&frame).unwrap().dst_mac, BROADCAST_MAC);
    }

    #[test]
    fn renewal_is_unicast_to_the_client() {
        let s = settings();
        let renew = client_frame(ENI_MAC, MessageType::Request, PRIMARY, Ipv4Addr::new(10, 0, 1, 1), &[]);
        let (frame, ack) = ask(&renew, &s).unwrap();
        assert_eq!((ack.opts().msg_type(), ack.yiaddr()), (Some(MessageType::Ack), PRIMARY));
        let meta = parse(&frame).unwrap();
        let L3Meta::Ipv4(ip) = meta.l3 else { panic!() };
        assert_eq!((meta.dst_mac, ip.flow.dst), (ENI_MAC, PRIMARY));
    }

    #[test]
    fn inform_is_acked_without_a_lease() {
        let s = settings();
        let inform = client_frame(ENI_MAC, MessageType::Inform, PRIMARY, Ipv4Addr::BROADCAST, &[]);
        let (_, ack) = ask(&inform, &s).unwrap();
        assert_eq!(
            (ack.opts().msg_type(), ack.yiaddr(), ack.ciaddr()),
            (Some(MessageType::Ack), Ipv4Addr::UNSPECIFIED, PRIMARY)
        );
        assert_eq!(ack.opts().get(OptionCode::AddressLeaseTime), None);
        assert!(ack.opts().get(OptionCode::DomainNameServer).is_some());
    }

    #[test]
    fn a_spoofed_chaddr_or_source_mac_is_dropped() {
        let s = settings();
        let other = Mac([2, 0, 0, 0, 0, 0x66]);
        // chaddr another MAC, frame from the ENI's.
        let mut f = client_frame(other, MessageType::Discover, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &[]);
        f[6..12].copy_from_slice(&ENI_MAC.0);
        assert_eq!(ask(&f, &s).unwrap_err(), DhcpDrop::Spoofed);
        // chaddr the ENI's, frame from another MAC.
        let mut f = discover();
        f[6..12].copy_from_slice(&other.0);
        assert_eq!(ask(&f, &s).unwrap_err(), DhcpDrop::Spoofed);
    }

    #[test]
    fn malformed_requests_are_dropped_not_panicked_on() {
        let s = settings();
        let short = build::udp(BROADCAST_MAC, ENI_MAC, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &[1; 100]);
        assert_eq!(ask(&short, &s).unwrap_err(), DhcpDrop::Malformed);
        // A BOOTREPLY sent to the server, and a message without a type.
        let mut reply = discover();
        reply[ETH_HEADER_LEN + 28] = 2;
        assert_eq!(ask(&reply, &s).unwrap_err(), DhcpDrop::Malformed);
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest).set_chaddr(&ENI_MAC.0);
        let untyped = build::udp(
            BROADCAST_MAC,
            ENI_MAC,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            &m.to_vec().unwrap(),
        );
        assert_eq!(ask(&untyped, &s).unwrap_err(), DhcpDrop::Malformed);
        // Every truncation of a good request, and garbage options: an answer or a drop, never a panic.
        let good = discover();
        let payload = ETH_HEADER_LEN + 28;
        for cut in payload..good.len() {
            let f = build::udp(
                BROADCAST_MAC,
                ENI_MAC,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                68,
                67,
                &good[payload..cut],
            );
            let _ = ask(&f, &s);
        }
        let mut bad_opts = good[payload..].to_vec();
        bad_opts[240..].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 37) as u8);
        let f = build::udp(BROADCAST_MAC, ENI_MAC, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &bad_opts);
        let _ = ask(&f, &s);
    }

    #[test]
    fn release_decline_and_requests_for_another_server_are_unanswered() {
        let s = settings();
        let release = client_frame(ENI_MAC, MessageType::Release, PRIMARY, Ipv4Addr::new(10, 0, 1, 1), &[]);
        assert_eq!(ask(&release, &s).unwrap_err(), DhcpDrop::Unanswered);
        let other_server = [DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 7))];
        let f = client_frame(ENI_MAC, MessageType::Request, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &other_server);
        assert_eq!(ask(&f, &s).unwrap_err(), DhcpDrop::Unanswered);
    }

    #[test]
    fn a_custom_options_set_is_handed_out() {
        let s = DhcpSettings {
            domain_name: "corp.example".into(),
            dns_servers: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(192, 0, 2, 53)],
            ntp_servers: vec![Ipv4Addr::new(169, 254, 169, 123)],
        };
        let (_, m) = ask(&discover(), &s).unwrap();
        let o = m.opts();
        assert_eq!(o.get(OptionCode::DomainName), Some(&DhcpOption::DomainName("corp.example".into())));
        let dns = DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(192, 0, 2, 53)]);
        assert_eq!(o.get(OptionCode::DomainNameServer), Some(&dns));
        let ntp = DhcpOption::NtpServers(vec![Ipv4Addr::new(169, 254, 169, 123)]);
        assert_eq!(o.get(OptionCode::NtpServers), Some(&ntp));
    }
}
