//! The Amazon DNS server (AWS's Route 53 Resolver, `AmazonProvidedDNS`) as every ENI sees it: UDP
//! queries to the VPC's base + 2 or to 169.254.169.253, answered by the fabric for the ENI's own
//! VPC (the VPC of the ENI the query came in on: VPCs may overlap, so never by source address).
//!
//! What it knows is [`Names`], compiled from the model in one place: the private DNS name of every
//! private IP (`ip-10-0-1-10.ec2.internal`), the public DNS name of every Elastic IP associated
//! with an ENI (split horizon: the private IP inside its VPC, the public one elsewhere), and the
//! `[internet]` hosts. Everything else is NXDOMAIN: there is no upstream. The wire format is
//! hickory-proto's; this module decides the answer and frames it. Pure: a query frame and the
//! names in, a reply frame or a reason to drop out. The per-ENI rate limit is a sans-IO
//! [`RateLimit`] the pipeline keeps per ENI and feeds with its clock.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::model::{Mac, Model, VpcIdx};
use crate::packet::{build, IpProto, Ipv4Meta, ETH_HEADER_LEN};

/// The DNS port.
pub const PORT: u16 = 53;
/// The Amazon DNS server's link-local address, the same in every VPC.
pub const LINK_LOCAL: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 253);
/// The longest query read. Queries are a header, one question (a name of at most 255 bytes) and
/// an EDNS record: a few hundred bytes. 1232 is the EDNS buffer size DNS Flag Day 2020 settled on.
pub const MAX_QUERY: usize = 1232;
/// The largest UDP answer to a query without EDNS (RFC 1035 4.2.1): past it, TC is set.
pub const PLAIN_UDP_LIMIT: usize = 512;
/// The largest UDP answer to a query with EDNS, whatever larger buffer it advertises.
pub const EDNS_LIMIT: u16 = 1232;
/// TTL of every answer, in seconds (AWS's private names answer with 60).
pub const TTL: u32 = 60;
/// AWS: "Each network interface in an Amazon VPC has a hard limit of 1024 packets that it can
/// send to the Amazon-provided DNS server every second."
pub const PACKETS_PER_SECOND: u32 = 1024;

/// Is a packet to `dst`, from an ENI of the VPC whose DNS server is at `vpc_resolver` (base + 2),
/// for the Amazon DNS server? Whatever its protocol: the server takes it, answering only UDP.
#[inline(always)]
pub fn is_for_resolver(dst: Ipv4Addr, vpc_resolver: Ipv4Addr) -> bool {
    dst == vpc_resolver || dst == LINK_LOCAL
}

/// Why a packet to the DNS server gets no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsDrop {
    /// Too long, truncated, or shorter than a DNS header.
    Malformed,
    /// Not a UDP query to port 53 (TCP, another port, a fragment, a DNS response).
    Unanswered,
}

/// Who sees a name's address, or an address's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Only ENIs of this VPC (private names; a public name's private address).
    Vpc(VpcIdx),
    /// Every VPC but this one (a public name's public address).
    OutsideVpc(VpcIdx),
    /// Every VPC (the internet's hosts, public addresses' reverse names).
    Everywhere,
}

impl Scope {
    fn sees(self, asker: VpcIdx) -> bool {
        match self {
            Scope::Vpc(v) => v == asker,
            Scope::OutsideVpc(v) => v != asker,
            Scope::Everywhere => true,
        }
    }
}

/// Every name the DNS server answers, compiled from the model: forward (name to addresses) and
/// reverse (address to name), each entry with the VPCs that see it. Names are kept lowercase,
/// without the final dot. [`Names::new`] is the one place names are made: add new kinds there.
#[derive(Clone, Debug, Default)]
pub struct Names {
    forward: HashMap<String, Vec<(Scope, Ipv4Addr)>>,
    reverse: HashMap<Ipv4Addr, Vec<(Scope, String)>>,
}

impl Names {
    /// The names of `model`:
    ///
    /// - every private IP of every ENI and NAT gateway: `ip-a-b-c-d.<region's domain>` in its VPC
    ///   (the region's default domain, whatever the DHCP options set hands out, as on AWS);
    /// - every Elastic IP associated with an ENI of a VPC with `enable_dns_hostnames`:
    ///   `ec2-a-b-c-d.<public domain>`, its private IP inside that VPC, its public IP elsewhere
    ///   (a peered VPC included: AWS's peering DNS option is off by default);
    /// - every `[internet]` host, by its `name` (default: its id), from everywhere;
    /// - every interface endpoint's names in its VPC (`Model::endpoint_dns_names`): its regional
    ///   name, and with private DNS the service's own name, which inside the VPC hides the
    ///   service's public addresses, as the private hosted zone AWS makes for it does.
    pub fn new(model: &Model) -> Names {
        let mut names = Names::default();
        for eni in &model.enis {
            let vpc = model.subnets[eni.subnet.index()].vpc;
            for ip in eni.private_ips() {
                names.both(Scope::Vpc(vpc), &model.private_dns_name(ip), ip);
            }
        }
        for nat in &model.nat_gateways {
            let vpc = model.subnets[nat.subnet.index()].vpc;
            names.both(Scope::Vpc(vpc), &model.private_dns_name(nat.private_ip), nat.private_ip);
        }
        for eip in &model.elastic_ips {
            let Some((eni, private)) = eip.association else { continue };
            let vpc = model.vpc_of(eni);
            if !model.vpcs[vpc.index()].enable_dns_hostnames {
                continue;
            }
            let name = model.public_dns_name(eip.public_ip);
            names.add_forward(Scope::Vpc(vpc), &name, private);
            names.add_forward(Scope::OutsideVpc(vpc), &name, eip.public_ip);
            names.add_reverse(Scope::Everywhere, &name, eip.public_ip);
        }
        for host in &model.internet_hosts {
            names.both(Scope::Everywhere, host.dns_name(), host.ip);
        }
        for v in 0..model.vpcs.len() {
            let vpc = VpcIdx(v as u32);
            for (name, ips) in model.endpoint_dns_names(vpc) {
                for ip in ips {
                    names.add_forward(Scope::Vpc(vpc), &name, ip);
                }
            }
        }
        names
    }

    /// `name` -> `ip` and back, for `scope`.
    fn both(&mut self, scope: Scope, name: &str, ip: Ipv4Addr) {
        self.add_forward(scope, name, ip);
        self.add_reverse(scope, name, ip);
    }

    fn add_forward(&mut self, scope: Scope, name: &str, ip: Ipv4Addr) {
        self.forward.entry(name.to_ascii_lowercase()).or_default().push((scope, ip));
    }

    fn add_reverse(&mut self, scope: Scope, name: &str, ip: Ipv4Addr) {
        self.reverse.entry(ip).or_default().push((scope, name.to_ascii_lowercase()));
    }

    /// The addresses `name` (lowercase, no final dot) has for an ENI of `vpc`; `None` when the
    /// name does not exist there.
    pub fn addresses(&self, vpc: VpcIdx, name: &str) -> Option<Vec<Ipv4Addr>> {
        let entries = self.forward.get(name)?;
        // A name of the VPC's own (an endpoint's private DNS) hides the same name elsewhere.
        let own = entries.iter().any(|(s, _)| *s == Scope::Vpc(vpc));
        let seen: Vec<Ipv4Addr> = entries
            .iter()
            .filter(|(s, _)| if own { *s == Scope::Vpc(vpc) } else { s.sees(vpc) })
            .map(|&(_, ip)| ip)
            .collect();
        (!seen.is_empty()).then_some(seen)
    }

    /// The name of `ip` for an ENI of `vpc`, if it has one there.
    pub fn name_of(&self, vpc: VpcIdx, ip: Ipv4Addr) -> Option<&str> {
        self.reverse.get(&ip)?.iter().find(|(s, _)| s.sees(vpc)).map(|(_, n)| n.as_str())
    }
}

/// A token bucket of [`PACKETS_PER_SECOND`] tokens, refilled continuously: AWS's per-ENI limit on
/// packets to the DNS server. Time is the caller's (`now`, as the pipeline's clock passes it).
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    tokens: u32,
    /// When the tokens were last topped up (whole tokens only, so no fraction is lost).
    last: Duration,
}

/// One token's worth of time: a second over 1024, rounded up so the rate never exceeds 1024/s.
const TOKEN_NANOS: u128 = 1_000_000_000_u128.div_ceil(PACKETS_PER_SECOND as u128);

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { tokens: PACKETS_PER_SECOND, last: Duration::ZERO }
    }
}

impl RateLimit {
    /// Takes a token for a packet at `now`; false when the second's allowance is spent.
    pub fn allow(&mut self, now: Duration) -> bool {
        let earned = now.saturating_sub(self.last).as_nanos() / TOKEN_NANOS;
        if earned > 0 {
            let room = PACKETS_PER_SECOND - self.tokens;
            if earned >= u128::from(room) {
                self.tokens = PACKETS_PER_SECOND;
                self.last = now;
            } else {
                self.tokens += earned as u32;
                self.last += Duration::from_nanos((earned * TOKEN_NANOS) as u64);
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The reply frame to the packet in `frame` (one [`is_for_resolver`] accepted) from an ENI of
/// `vpc` with MAC `client_mac`: UDP from the address the query was sent to, port 53, from the
/// VPC router's MAC; or why there is none.
pub fn answer(
    frame: &[u8],
    ip: &Ipv4Meta,
    client_mac: Mac,
    router_mac: Mac,
    vpc: VpcIdx,
    names: &Names,
) -> Result<Vec<u8>, DnsDrop> {
    let f = &ip.flow;
    if f.proto != IpProto::UDP || f.l4.dst_port != PORT || ip.fragment {
        return Err(DnsDrop::Unanswered);
    }
    let start = ETH_HEADER_LEN + usize::from(ip.header_len) + 8;
    let end = ETH_HEADER_LEN + usize::from(ip.total_len);
    let query = frame.get(start..end).ok_or(DnsDrop::Malformed)?;
    let reply = respond(query, vpc, names)?;
    Ok(build::udp(client_mac, router_mac, f.dst, f.src, PORT, f.l4.src_port, &reply))
}

/// The DNS message answering `query` (a UDP payload) for an ENI of `vpc`, or why there is none.
/// A message with a readable header but an unreadable body is answered FORMERR; one without a
/// header, or a response (answering it could loop), is not answered.
pub fn respond(query: &[u8], vpc: VpcIdx, names: &Names) -> Result<Vec<u8>, DnsDrop> {
    if query.len() > MAX_QUERY {
        return Err(DnsDrop::Malformed);
    }
    let header = Header::read(&mut BinDecoder::new(query)).map_err(|_| DnsDrop::Malformed)?;
    if header.metadata.message_type != MessageType::Query {
        return Err(DnsDrop::Unanswered);
    }
    let reply = match Message::from_vec(query) {
        Ok(request) => decide(&request, vpc, names),
        Err(_) => refusal(&header.metadata, ResponseCode::FormErr),
    };
    let limit = reply.edns.as_ref().map_or(PLAIN_UDP_LIMIT, |e| usize::from(e.max_payload()));
    let bytes = reply.to_vec().map_err(|_| DnsDrop::Malformed)?;
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    // Too long for the client's buffer: the question alone, with TC set (RFC 2181 9).
    reply.truncate().to_vec().map_err(|_| DnsDrop::Malformed)
}

/// An answer with no records and `code`, echoing the request's id, opcode and RD bit.
fn refusal(request: &Metadata, code: ResponseCode) -> Message {
    let mut m = Message::new(request.id, MessageType::Response, request.op_code);
    m.metadata = Metadata::response_from_request(request);
    m.metadata.recursion_available = true;
    m.metadata.response_code = code;
    m
}

/// What the server answers to a well-formed message.
fn decide(request: &Message, vpc: VpcIdx, names: &Names) -> Message {
    let meta = &request.metadata;
    if meta.op_code != OpCode::Query {
        return refusal(meta, ResponseCode::NotImp);
    }
    let [question] = request.queries.as_slice() else {
        return refusal(meta, ResponseCode::FormErr); // RFC 9619: exactly one question
    };
    let mut reply = refusal(meta, ResponseCode::NoError);
    reply.add_query(question.clone());
    if let Some(edns) = &request.edns {
        // RFC 6891 7: a request with EDNS gets EDNS back; version 0 is the only one there is.
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload().min(EDNS_LIMIT));
        reply.set_edns(ours);
        if edns.version() > 0 {
            reply.metadata.response_code = ResponseCode::BADVERS;
            reply.queries.clear();
            return reply;
        }
    }
    if !matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) {
        reply.metadata.response_code = ResponseCode::Refused;
        return reply;
    }
    match lookup(question, vpc, names) {
        Some(records) => reply.answers = records,
        None => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply
}

/// The records answering `question` for an ENI of `vpc`: `None` when the name does not exist
/// there (NXDOMAIN); empty when it does but has no record of that type (NODATA, e.g. AAAA).
fn lookup(question: &Query, vpc: VpcIdx, names: &Names) -> Option<Vec<Record>> {
    let asked = question.name().to_lowercase().to_ascii();
    let asked = asked.strip_suffix('.').unwrap_or(&asked);
    let owner = question.name().clone();
    let qtype = question.query_type();
    if let Some(ip) = reverse_name(asked) {
        let name = names.name_of(vpc, ip)?;
        if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
            return Some(Vec::new());
        }
        let target = Name::from_ascii(format!("{name}.")).ok()?;
        return Some(vec![Record::from_rdata(owner, TTL, RData::PTR(PTR(target)))]);
    }
    let addresses = names.addresses(vpc, asked)?;
    if !matches!(qtype, RecordType::A | RecordType::ANY) {
        return Some(Vec::new());
    }
    Some(addresses.into_iter().map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(ip)))).collect())
}

/// `d.c.b.a.in-addr.arpa` (lowercase, no final dot) as a.b.c.d.
fn reverse_name(name: &str) -> Option<Ipv4Addr> {
    let digits = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut labels = digits.split('.');
    for o in octets.iter_mut().rev() {
        let label = labels.next()?;
        if label.is_empty() || label.len() > 3 || !label.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = label.parse().ok()?;
    }
    labels.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// A query for `name` of `qtype` from `mac` at `src` to `dst`, framed as a stub resolver sends it.
#[cfg(test)]
pub(crate) fn query_frame(mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, name: &str, qtype: RecordType) -> Vec<u8> {
    let bytes = query_message(name, qtype).to_vec().expect("a query built here encodes");
    build::udp(Mac([2, 0, 0, 0, 0, 1]), mac, src, dst, 40000, PORT, &bytes)
}

#[cfg(test)]
pub(crate) fn query_message(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("a test name parses"), qtype));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
name = "dns"
region = "eu-west-3"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"
enable_dns_hostnames = true

[[vpc]]
id = "vpc-b"
cidr = "10.1.0.0/16"

[[subnet]]
id = "sub-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"

[[subnet]]
id = "sub-b"
vpc = "vpc-b"
cidr = "10.1.1.0/24"

[[internet_gateway]]
id = "igw-a"
vpc = "vpc-a"

[[elastic_ip]]
id = "eipalloc-a"
public_ip = "203.0.113.20"
network_interface = "eni-a"

[[elastic_ip]]
id = "eipalloc-b"
public_ip = "203.0.113.30"
network_interface = "eni-b"

[[instance]]
id = "a"

[[instance]]
id = "b"

[[network_interface]]
id = "eni-a"
subnet = "sub-a"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.11"]
attachment = { instance = "a", device_index = 0 }

[[network_interface]]
id = "eni-b"
subnet = "sub-b"
private_ip = "10.1.1.10"
attachment = { instance = "b", device_index = 0 }

[internet]
hosts = [
  { id = "example", ip = "198.51.100.7", name = "www.example.com" },
  { id = "plain", ip = "198.51.100.8" },
]
"#;

    const A: VpcIdx = VpcIdx(0);
    const B: VpcIdx = VpcIdx(1);

    fn names() -> Names {
        Names::new(&crate::topology::parse(LAB, "dns.toml").expect("the DNS lab is valid"))
    }

    fn ask(vpc: VpcIdx, name: &str, qtype: RecordType) -> Message {
        let bytes = query_message(name, qtype).to_vec().unwrap();
        Message::from_vec(&respond(&bytes, vpc, &names()).expect("answered")).expect("the answer decodes")
    }

    fn addresses(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    fn ptr(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(p) => Some(p.0.to_ascii()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn private_names_resolve_forward_and_back_in_their_vpc_only() {
        let m = ask(A, "ip-10-0-1-10.eu-west-3.compute.internal.", RecordType::A);
        assert_eq!(
            (m.metadata.response_code, addresses(&m)),
            (ResponseCode::NoError, vec![Ipv4Addr::new(10, 0, 1, 10)])
        );
        assert_eq!((m.metadata.id, m.metadata.recursion_desired, m.metadata.recursion_available), (0x4242, true, true));
        // A secondary IP has its name too; names are case-insensitive.
        let m = ask(A, "IP-10-0-1-11.EU-West-3.compute.internal.", RecordType::A);
        assert_eq!(addresses(&m), [Ipv4Addr::new(10, 0, 1, 11)]);
        let m = ask(A, "11.1.0.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(ptr(&m), ["ip-10-0-1-11.eu-west-3.compute.internal."]);
        // vpc-b's names and addresses are not vpc-a's.
        let m = ask(A, "ip-10-1-1-10.eu-west-3.compute.internal.", RecordType::A);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NXDomain, 0));
        assert_eq!(ask(A, "10.1.1.1.10.in-addr.arpa.", RecordType::PTR).metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(ask(A, "10.1.1.10.in-addr.arpa.", RecordType::PTR).metadata.response_code, ResponseCode::NXDomain);
        let m = ask(B, "10.1.1.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(ptr(&m), ["ip-10-1-1-10.eu-west-3.compute.internal."]);
        // The region's domain, not another one.
        assert_eq!(ask(A, "ip-10-0-1-10.ec2.internal.", RecordType::A).metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn public_names_are_split_horizon_and_need_dns_hostnames() {
        let name = "ec2-203-0-113-20.eu-west-3.compute.amazonaws.com.";
        assert_eq!(addresses(&ask(A, name, RecordType::A)), [Ipv4Addr::new(10, 0, 1, 10)]);
        assert_eq!(addresses(&ask(B, name, RecordType::A)), [Ipv4Addr::new(203, 0, 113, 20)]);
        assert_eq!(ptr(&ask(B, "20.113.0.203.in-addr.arpa.", RecordType::PTR)), [name]);
        assert_eq!(ptr(&ask(A, "20.113.0.203.in-addr.arpa.", RecordType::PTR)), [name]);
        // vpc-b has DNS hostnames off (AWS's default): its Elastic IP has no public name.
        let off = "ec2-203-0-113-30.eu-west-3.compute.amazonaws.com.";
        assert_eq!(ask(A, off, RecordType::A).metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(ask(B, off, RecordType::A).metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn internet_hosts_resolve_by_name_or_id_everywhere() {
        for vpc in [A, B] {
            assert_eq!(addresses(&ask(vpc, "www.example.com.", RecordType::A)), [Ipv4Addr::new(198, 51, 100, 7)]);
            assert_eq!(addresses(&ask(vpc, "plain.", RecordType::A)), [Ipv4Addr::new(198, 51, 100, 8)]);
            assert_eq!(ptr(&ask(vpc, "7.100.51.198.in-addr.arpa.", RecordType::PTR)), ["www.example.com."]);
        }
        assert_eq!(ask(A, "example.", RecordType::A).metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn unknown_names_are_nxdomain_and_other_types_of_known_names_nodata() {
        let m = ask(A, "aws.amazon.com.", RecordType::A);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NXDomain, 0));
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let m = ask(A, "ip-10-0-1-10.eu-west-3.compute.internal.", qtype);
            assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0), "{qtype}");
        }
        let m = ask(A, "10.1.0.10.in-addr.arpa.", RecordType::A);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(m.queries.len(), 1, "the question is echoed");
    }

    #[test]
    fn opcodes_classes_and_malformed_messages_get_their_codes() {
        let n = names();
        let mut status = query_message("plain.", RecordType::A);
        status.metadata.op_code = OpCode::Status;
        let reply = Message::from_vec(&respond(&status.to_vec().unwrap(), A, &n).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
        let mut chaos = query_message("version.bind.", RecordType::TXT);
        chaos.queries[0].set_query_class(DNSClass::CH);
        let reply = Message::from_vec(&respond(&chaos.to_vec().unwrap(), A, &n).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        let mut two = query_message("plain.", RecordType::A);
        two.add_query(Query::query(Name::from_ascii("www.example.com.").unwrap(), RecordType::A));
        let reply = Message::from_vec(&respond(&two.to_vec().unwrap(), A, &n).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        // A header that claims a question it does not carry: FORMERR with the id.
        let mut cut = query_message("plain.", RecordType::A).to_vec().unwrap();
        cut.truncate(14);
        let reply = Message::from_vec(&respond(&cut, A, &n).unwrap()).unwrap();
        assert_eq!((reply.metadata.id, reply.metadata.response_code), (0x4242, ResponseCode::FormErr));
        // No header, too long, or a response: no answer at all.
        assert_eq!(respond(&cut[..11], A, &n), Err(DnsDrop::Malformed));
        assert_eq!(respond(&vec![0; MAX_QUERY + 1], A, &n), Err(DnsDrop::Malformed));
        let mut response = query_message("plain.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert_eq!(respond(&response.to_vec().unwrap(), A, &n), Err(DnsDrop::Unanswered));
        // Every truncation of a good query: an answer or a drop, never a panic.
        let good = query_message("ip-10-0-1-10.eu-west-3.compute.internal.", RecordType::A).to_vec().unwrap();
        for len in 0..good.len() {
            let _ = respond(&good[..len], A, &n);
        }
    }

    #[test]
    fn edns_is_echoed_and_only_version_0_is_served() {
        let n = names();
        let mut q = query_message("plain.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        q.set_edns(edns.clone());
        let reply = Message::from_vec(&respond(&q.to_vec().unwrap(), A, &n).unwrap()).unwrap();
        assert_eq!(reply.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_LIMIT));
        assert_eq!(addresses(&reply), [Ipv4Addr::new(198, 51, 100, 8)]);
        edns.set_version(1);
        q.set_edns(edns);
        let reply = Message::from_vec(&respond(&q.to_vec().unwrap(), A, &n).unwrap()).unwrap();
        // 16 is BADVERS in an answer with EDNS and BADSIG with TSIG: hickory reads it as BADSIG.
        assert_eq!(u16::from(reply.metadata.response_code), 16);
        assert!(reply.queries.is_empty() && reply.answers.is_empty());
    }

    #[test]
    fn an_answer_over_512_bytes_without_edns_is_truncated() {
        let mut n = Names::default();
        for i in 0..40 {
            n.add_forward(Scope::Everywhere, "many.example", Ipv4Addr::new(198, 51, 100, i));
        }
        let plain = query_message("many.example.", RecordType::A).to_vec().unwrap();
        let bytes = respond(&plain, A, &n).unwrap();
        let reply = Message::from_vec(&bytes).unwrap();
        assert!(bytes.len() <= PLAIN_UDP_LIMIT);
        assert_eq!((reply.metadata.truncation, reply.answers.len(), reply.queries.len()), (true, 0, 1));
        // With EDNS and room, all 40 fit (40 * 16 bytes with name compression).
        let mut q = query_message("many.example.", RecordType::A);
        q.set_edns(Edns::new().set_max_payload(1232).clone());
        let reply = Message::from_vec(&respond(&q.to_vec().unwrap(), A, &n).unwrap()).unwrap();
        assert_eq!((reply.metadata.truncation, reply.answers.len()), (false, 40));
    }

    #[test]
    fn the_rate_limit_allows_1024_a_second() {
        let mut r = RateLimit::default();
        let t0 = Duration::from_secs(100);
        assert_eq!((0..2000).filter(|_| r.allow(t0)).count(), 1024);
        assert!(!r.allow(t0 + Duration::from_micros(900)), "less than a token's time later");
        assert!(r.allow(t0 + Duration::from_millis(1)));
        assert!(!r.allow(t0 + Duration::from_millis(1)));
        // Half a second refills half the bucket; a long idle refills it, never more.
        let half = t0 + Duration::from_millis(501);
        assert_eq!((0..2000).filter(|_| r.allow(half)).count(), 512);
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..2000).filter(|_| r.allow(later)).count(), 1024);
        // A clock that steps back takes nothing and gives nothing.
        assert!(!r.allow(t0));
    }

    #[test]
    fn reverse_names_parse_only_as_four_octets() {
        assert_eq!(reverse_name("10.1.0.10.in-addr.arpa"), Some(Ipv4Addr::new(10, 0, 1, 10)));
        for bad in
            ["1.0.10.in-addr.arpa", "1.1.0.10.10.in-addr.arpa", "256.1.0.10.in-addr.arpa", "+1.1.0.10.in-addr.arpa"]
        {
            assert_eq!(reverse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_interface_endpoint_s_names_resolve_to_its_interfaces_inside_its_vpc_only() {
        let text = include_str!("../../netns-setup/endpoints.toml");
        let model = crate::topology::parse(text, "endpoints.toml").expect("the example is valid");
        let names = Names::new(&model);
        let vpc = VpcIdx(0);
        let endpoint: Vec<Ipv4Addr> = model.endpoint_dns_names(vpc).into_iter().flat_map(|(_, ips)| ips).collect();
        assert!(!endpoint.is_empty());
        let service = "sqs.us-east-1.amazonaws.com";
        assert_eq!(names.addresses(vpc, service), Some(vec![endpoint[0]]), "private DNS hides the public name");
        let regional = &model.endpoint_dns_names(vpc)[0].0;
        assert_eq!(names.addresses(vpc, regional), Some(vec![endpoint[0]]));
        for v in 1..model.vpcs.len() {
            assert_eq!(names.addresses(VpcIdx(v as u32), regional), None, "seen from another VPC");
        }
    }
}
