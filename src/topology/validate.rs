//! Validation: turns the file as written ([`RawFile`]) into a checked [`Model`], applying AWS's
//! defaults and rules. Every mistake becomes a [`Problem`] naming the line of the offending value
//! and a field path (`network_interface "eni-web".private_ip`); checking goes on after a mistake
//! so one run reports everything it can. A value that failed its own check is left out of the
//! checks that depend on it (an ENI in a missing subnet is not also reported as outside it).
//! The model is only assembled when no problem was found, so its typed indices always point at
//! something real.
//!
//! [`validate`] calls one function per section of the file, in an order where whatever a
//! reference can name has been checked before the reference; each returns a small struct of what
//! it learnt (`CheckedSubnet`, `Enis`, ...) for the sections after it and for the assembly. They
//! share a [`Checker`]: the problems so far and the id table, which also records the VPC of each
//! object a reference must find in the right VPC ([`Checker::resolve_in`]). Problems are sorted
//! by line only, so the order the sections run in still orders the problems of one line. The
//! model's vectors keep file order, declared objects first and then each VPC's implicit ones:
//! `export` round-trips depend on it.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::ops::Range;

use toml::Spanned;

use super::instance_types::{self, InstanceLimits};
use super::raw::{
    RawAclRule, RawElasticIp, RawEni, RawFile, RawInstance, RawNatGateway, RawRoute, RawRouteTable, RawSgRule,
    RawSubnet, StrOrInt,
};
use super::{LineIndex, Problem};
use crate::model::MetadataOptions;
use crate::model::{
    AclAction, AclIdx, AclRule, ApiSettings, Attachment, Cidr, ConntrackConfig, EipIdx, ElasticIp, Eni, EniIdx, IgwIdx,
    Instance, InstanceIdx, InstanceState, InternetGateway, InternetHost, Mac, Model, NatGateway, NatIdx, NetworkAcl,
    PcxIdx, PeeringStatus, PortMatch, PortRange, Protocol, Route, RouteTable, RouteTarget, RtbIdx, SecurityGroup,
    SgIdx, SgPeer, SgRule, Subnet, SubnetIdx, Uplink, Vpc, VpcIdx, VpcPeering,
};
use crate::packet::IpProto;

mod dhcp;
mod dns;
mod endpoints;
mod flow_logs;
mod mirror;

/// AWS's per-direction quota of security group rules.
const SG_RULES_PER_DIRECTION: usize = 60;
/// AWS's per-direction quota of network ACL rules.
const ACL_RULES_PER_DIRECTION: usize = 20;
/// AWS's quota of routes per route table (the local route counts).
const ROUTES_PER_TABLE: usize = 50;
/// AWS's limit of security groups per ENI (without a quota raise).
const SGS_PER_ENI: usize = 5;
/// The highest rule number a person may use; 32767 is the implicit `*` deny.
const MAX_ACL_RULE: i64 = 32766;

/// The kinds of object an id can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Vpc,
    Subnet,
    InternetGateway,
    ElasticIp,
    NatGateway,
    /// A NAT gateway's own network interface: implicit, its id derived from the gateway's.
    NatInterface,
    VpcPeering,
    RouteTable,
    NetworkAcl,
    SecurityGroup,
    Instance,
    NetworkInterface,
    InternetHost,
    TrafficMirrorTarget,
    TrafficMirrorFilter,
    TrafficMirrorSession,
    FlowLog,
    VpcEndpoint,
}

impl Kind {
    /// The name with its article, as AWS's documentation would say it.
    fn a(self) -> &'static str {
        match self {
            Kind::Vpc => "a VPC",
            Kind::Subnet => "a subnet",
            Kind::InternetGateway => "an internet gateway",
            Kind::ElasticIp => "an Elastic IP",
            Kind::NatGateway => "a NAT gateway",
            Kind::NatInterface => "a NAT gateway's network interface",
            Kind::VpcPeering => "a VPC peering connection",
            Kind::RouteTable => "a route table",
            Kind::NetworkAcl => "a network ACL",
            Kind::SecurityGroup => "a security group",
            Kind::Instance => "an instance",
            Kind::NetworkInterface => "a network interface",
            Kind::InternetHost => "an internet host",
            Kind::TrafficMirrorTarget => "a traffic mirror target",
            Kind::TrafficMirrorFilter => "a traffic mirror filter",
            Kind::TrafficMirrorSession => "a traffic mirror session",
            Kind::FlowLog => "a flow log",
            Kind::VpcEndpoint => "a VPC endpoint",
        }
    }

    /// The section of the file, which starts every field path.
    fn section(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::InternetGateway => "internet_gateway",
            Kind::ElasticIp => "elastic_ip",
            Kind::NatGateway | Kind::NatInterface => "nat_gateway",
            Kind::VpcPeering => "vpc_peering",
            Kind::RouteTable => "route_table",
            Kind::NetworkAcl => "network_acl",
            Kind::SecurityGroup => "security_group",
            Kind::Instance => "instance",
            Kind::NetworkInterface => "network_interface",
            Kind::InternetHost => "internet.hosts",
            Kind::TrafficMirrorTarget => "traffic_mirror_target",
            Kind::TrafficMirrorFilter => "traffic_mirror_filter",
            Kind::TrafficMirrorSession => "traffic_mirror_session",
            Kind::FlowLog => "flow_log",
            Kind::VpcEndpoint => "vpc_endpoint",
        }
    }
}

/// Where an id was declared.
#[derive(Clone, Copy, Debug)]
struct IdEntry {
    kind: Kind,
    index: usize,
    /// 0 for the implicit objects vpclab creates (default group, default ACL, main table).
    line: usize,
    /// The VPC the object is in, once its section has resolved it ([`Checker::place`]); `None`
    /// before that, for objects outside VPCs, and when the object's own `vpc` failed its check.
    vpc: Option<usize>,
}

/// `kind "id".rest`: the field path format of every validation problem.
fn path(kind: Kind, id: &str, rest: &str) -> String {
    if kind == Kind::InternetHost {
        // Hosts live in one inline array; their path is by id all the same, for consistency.
        format!("internet.hosts \"{id}\".{rest}")
    } else {
        format!("{} \"{}\".{}", kind.section(), id, rest)
    }
}

/// The id of VPC `i`, for messages.
fn vpc_id(raw: &RawFile, i: usize) -> &str {
    raw.vpc.get(i).map_or("?", |v| v.id.get_ref().as_str())
}

/// The name AWS's documentation gives each reserved address of a subnet.
fn reserved_role(subnet: Cidr, ip: Ipv4Addr) -> Option<&'static str> {
    if ip == subnet.last() {
        return Some("the broadcast address");
    }
    match u32::from(ip).wrapping_sub(u32::from(subnet.addr)) {
        0 => Some("the network address"),
        1 => Some("the VPC router's address"),
        2 => Some("the Amazon DNS server's address"),
        3 => Some("reserved by AWS for future use"),
        _ => None,
    }
}

/// Collects problems and the id table while checking.
struct Checker<'a> {
    file: &'a str,
    lines: &'a LineIndex,
    problems: Vec<Problem>,
    ids: HashMap<String, IdEntry>,
}

impl Checker<'_> {
    /// Records a problem at the line where `span` starts.
    fn err(&mut self, span: Range<usize>, field: String, message: String) {
        let line = self.lines.line(span.start);
        self.problems.push(Problem { file: self.file.to_string(), line, field, message });
    }

    /// The 1-based line where `span` starts.
    fn line(&self, span: Range<usize>) -> usize {
        self.lines.line(span.start)
    }

    /// Looks up a reference of one kind, reporting a missing id or an id of another kind.
    fn resolve(&mut self, r: &Spanned<String>, want: Kind, field: String) -> Option<usize> {
        self.lookup(r, want, field).map(|e| e.index)
    }

    /// [`Checker::resolve`], giving the whole id table entry.
    fn lookup(&mut self, r: &Spanned<String>, want: Kind, field: String) -> Option<IdEntry> {
        let id = r.get_ref();
        match self.ids.get(id.as_str()).copied() {
            None => {
                self.err(
                    r.span(),
                    field,
                    format!("`{id}` does not exist: no object has this id ({} expected)", want.a()),
                );
                None
            }
            Some(e) if e.kind != want => {
                self.err(r.span(), field, format!("`{id}` is {}, not {}", e.kind.a(), want.a()));
                None
            }
            Some(e) => Some(e),
        }
    }

    /// Records that the object declared as `id` (the `index`th of its `kind`) is in VPC `vpc`, for
    /// the references to it that are checked later. A duplicate or unusable id is not in the
    /// table, and no reference can reach its object: nothing to record.
    fn place(&mut self, kind: Kind, id: &str, index: usize, vpc: Option<usize>) {
        if let Some(e) = self.ids.get_mut(id) {
            if e.kind == kind && e.index == index {
                e.vpc = vpc;
            }
        }
    }

    /// The step every reference between the objects of a VPC shares: resolve `r` to an object of
    /// kind `want`, then hold its VPC against `home`, the VPC it must be in (see
    /// [`Checker::at_home`]). One problem at the reference for whichever step fails.
    fn resolve_in(
        &mut self,
        r: &Spanned<String>,
        want: Kind,
        field: String,
        home: Option<usize>,
        misplaced: impl FnOnce(usize, usize) -> Option<String>,
    ) -> Option<usize> {
        let e = self.lookup(r, want, field.clone())?;
        self.at_home(r.span(), field, e.vpc, home, misplaced).then_some(e.index)
    }

    /// Whether an object in VPC `theirs` may be used from VPC `home`. When they differ,
    /// `misplaced(theirs, home)` words the problem, or says `None` when that VPC will do all the
    /// same (a peered one). An unknown VPC on either side passes: its own check already failed.
    fn at_home(
        &mut self,
        span: Range<usize>,
        field: String,
        theirs: Option<usize>,
        home: Option<usize>,
        misplaced: impl FnOnce(usize, usize) -> Option<String>,
    ) -> bool {
        let (Some(theirs), Some(home)) = (theirs, home) else { return true };
        if theirs == home {
            return true;
        }
        match misplaced(theirs, home) {
            None => true,
            Some(msg) => {
                self.err(span, field, msg);
                false
            }
        }
    }

    /// Parses a CIDR; `sizes` limits the prefix length (subnets and VPCs: /16 to /28).
    fn cidr(&mut self, s: &Spanned<String>, field: &str, sizes: Option<(&str, u8, u8)>) -> Option<Cidr> {
        match s.get_ref().trim().parse::<Cidr>() {
            Err(e) => {
                self.err(s.span(), field.to_string(), e.to_string());
                None
            }
            Ok(c) => {
                if let Some((what, lo, hi)) = sizes {
                    if c.prefix < lo || c.prefix > hi {
                        let msg =
                            format!("{what} CIDR block must be /{lo} to /{hi} (AWS's limits); {c} is /{}", c.prefix);
                        self.err(s.span(), field.to_string(), msg);
                        return None;
                    }
                }
                Some(c)
            }
        }
    }

    /// Parses an IPv4 address.
    fn ip(&mut self, s: &Spanned<String>, field: &str) -> Option<Ipv4Addr> {
        match s.get_ref().trim().parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(s.span(), field.to_string(), format!("`{}` is not an IPv4 address", s.get_ref()));
                None
            }
        }
    }

    /// A numbered rule's number (1 to [`MAX_ACL_RULE`]) and whether it is the first use of it in
    /// its direction `dname` (`seen`: the line of each number used so far, updated).
    fn rule_number(
        &mut self,
        v: &Spanned<i64>,
        field: &str,
        what: &str,
        dname: &str,
        seen: &mut HashMap<i64, usize>,
    ) -> (Option<i64>, bool) {
        let number = self.int_in(v, field, 1..MAX_ACL_RULE + 1, what);
        let Some(n) = number else { return (None, true) };
        if let Some(line) = seen.get(&n) {
            self.err(v.span(), field.to_string(), format!("rule number {n} is already used in {dname} on line {line}"));
            return (number, false);
        }
        seen.insert(n, self.line(v.span()));
        (number, true)
    }

    /// An integer within `range`, else a problem naming AWS's range.
    fn int_in(&mut self, v: &Spanned<i64>, field: &str, range: Range<i64>, what: &str) -> Option<i64> {
        let n = *v.get_ref();
        if range.contains(&n) {
            Some(n)
        } else {
            let msg = format!("{what} must be {} to {}, got {n}", range.start, range.end - 1);
            self.err(v.span(), field.to_string(), msg);
            None
        }
    }

    /// A protocol: a name AWS accepts, or an IANA number.
    fn protocol(&mut self, p: &Spanned<StrOrInt>, field: &str) -> Option<Protocol> {
        let parsed = match p.get_ref() {
            StrOrInt::Int(-1) => Some(Protocol::All),
            StrOrInt::Int(n) => u8::try_from(*n).ok().map(|n| Protocol::Number(IpProto(n))),
            StrOrInt::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "tcp" => Some(Protocol::TCP),
                "udp" => Some(Protocol::UDP),
                "icmp" => Some(Protocol::ICMP),
                "all" | "-1" => Some(Protocol::All),
                other => other.parse::<u8>().ok().map(|n| Protocol::Number(IpProto(n))),
            },
        };
        if parsed.is_none() {
            let shown = match p.get_ref() {
                StrOrInt::Int(n) => n.to_string(),
                StrOrInt::Str(s) => s.clone(),
            };
            let msg = format!(
                "`{shown}` is not a protocol: use tcp, udp, icmp, all (or -1), or an IANA protocol number 0 to 255"
            );
            self.err(p.span(), field.to_string(), msg);
        }
        parsed
    }

    /// One port or a `low-high` range.
    fn port_range(&mut self, p: &Spanned<StrOrInt>, field: &str) -> Option<PortRange> {
        let parsed = match p.get_ref() {
            StrOrInt::Int(n) => u16::try_from(*n).ok().map(|n| PortRange { from: n, to: n }),
            StrOrInt::Str(s) => {
                let s = s.trim();
                match s.split_once('-') {
                    None => s.parse::<u16>().ok().map(|n| PortRange { from: n, to: n }),
                    Some((a, b)) => match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                        (Ok(from), Ok(to)) if from <= to => Some(PortRange { from, to }),
                        _ => None,
                    },
                }
            }
        };
        if parsed.is_none() {
            let shown = match p.get_ref() {
                StrOrInt::Int(n) => n.to_string(),
                StrOrInt::Str(s) => s.clone(),
            };
            let msg = format!(
                "`{shown}` is not a port range: use one port like \"80\" or a range like \"1024-65535\" (0 to 65535, low to high)"
            );
            self.err(p.span(), field.to_string(), msg);
        }
        parsed
    }

    /// Ports for TCP/UDP, type/code for ICMP, nothing for other protocols; fields that do not apply
    /// to the protocol are errors rather than silently ignored.
    fn port_match(
        &mut self,
        protocol: Protocol,
        ports: Option<&Spanned<StrOrInt>>,
        icmp_type: Option<&Spanned<i64>>,
        icmp_code: Option<&Spanned<i64>>,
        base: &str,
    ) -> Option<PortMatch> {
        let mut ok = true;
        if let Some(p) = ports {
            if !protocol.has_ports() {
                let msg = "ports apply only to protocol tcp or udp (6 or 17)".to_string();
                self.err(p.span(), format!("{base}.ports"), msg);
                ok = false;
            }
        }
        for (name, v) in [("icmp_type", icmp_type), ("icmp_code", icmp_code)] {
            if let Some(v) = v {
                if protocol != Protocol::ICMP {
                    self.err(v.span(), format!("{base}.{name}"), format!("{name} applies only to protocol icmp (1)"));
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        if protocol.has_ports() {
            return match ports {
                None => Some(PortMatch::Ports(PortRange::ALL)),
                Some(p) => self.port_range(p, &format!("{base}.ports")).map(PortMatch::Ports),
            };
        }
        if protocol == Protocol::ICMP {
            // AWS's -1 means "all types" / "all codes"; a code only narrows a given type.
            let mut icmp = |v: Option<&Spanned<i64>>, name: &str, ok: &mut bool| -> Option<u8> {
                let v = v?;
                match *v.get_ref() {
                    -1 => None,
                    n => match u8::try_from(n) {
                        Ok(n) => Some(n),
                        Err(_) => {
                            let msg = format!("{name} must be -1 (all) or 0 to 255, got {n}");
                            self.err(v.span(), format!("{base}.{name}"), msg);
                            *ok = false;
                            None
                        }
                    },
                }
            };
            let mut ok = true;
            let t = icmp(icmp_type, "icmp_type", &mut ok);
            let c = icmp(icmp_code, "icmp_code", &mut ok);
            if let (None, Some(_), Some(v)) = (t, c, icmp_code) {
                if ok {
                    let msg = "icmp_code needs an icmp_type: a code narrows one ICMP type".to_string();
                    self.err(v.span(), format!("{base}.icmp_code"), msg);
                    ok = false;
                }
            }
            return ok.then_some(PortMatch::Icmp { icmp_type: t, icmp_code: c });
        }
        Some(PortMatch::Any)
    }
}

/// Every id the file declares, in file order.
fn declared_ids(raw: &RawFile) -> Vec<(&Spanned<String>, Kind, usize)> {
    let mut all: Vec<(&Spanned<String>, Kind, usize)> = Vec::new();
    all.extend(raw.vpc.iter().enumerate().map(|(i, x)| (&x.id, Kind::Vpc, i)));
    all.extend(raw.subnet.iter().enumerate().map(|(i, x)| (&x.id, Kind::Subnet, i)));
    all.extend(raw.internet_gateway.iter().enumerate().map(|(i, x)| (&x.id, Kind::InternetGateway, i)));
    all.extend(raw.elastic_ip.iter().enumerate().map(|(i, x)| (&x.id, Kind::ElasticIp, i)));
    all.extend(raw.nat_gateway.iter().enumerate().map(|(i, x)| (&x.id, Kind::NatGateway, i)));
    all.extend(raw.vpc_peering.iter().enumerate().map(|(i, x)| (&x.id, Kind::VpcPeering, i)));
    all.extend(raw.route_table.iter().enumerate().map(|(i, x)| (&x.id, Kind::RouteTable, i)));
    all.extend(raw.network_acl.iter().enumerate().map(|(i, x)| (&x.id, Kind::NetworkAcl, i)));
    all.extend(raw.security_group.iter().enumerate().map(|(i, x)| (&x.id, Kind::SecurityGroup, i)));
    all.extend(raw.instance.iter().enumerate().map(|(i, x)| (&x.id, Kind::Instance, i)));
    all.extend(raw.network_interface.iter().enumerate().map(|(i, x)| (&x.id, Kind::NetworkInterface, i)));
    all.extend(raw.traffic_mirror_target.iter().enumerate().map(|(i, x)| (&x.id, Kind::TrafficMirrorTarget, i)));
    all.extend(raw.traffic_mirror_filter.iter().enumerate().map(|(i, x)| (&x.id, Kind::TrafficMirrorFilter, i)));
    all.extend(raw.traffic_mirror_session.iter().enumerate().map(|(i, x)| (&x.id, Kind::TrafficMirrorSession, i)));
    all.extend(raw.flow_log.iter().enumerate().map(|(i, x)| (&x.id, Kind::FlowLog, i)));
    all.extend(raw.vpc_endpoint.iter().enumerate().map(|(i, x)| (&x.id, Kind::VpcEndpoint, i)));
    if let Some(internet) = &raw.internet {
        all.extend(internet.hosts.iter().enumerate().map(|(i, x)| (&x.id, Kind::InternetHost, i)));
    }
    all.sort_by_key(|(id, _, _)| id.span().start);
    all
}

/// Whether `s` is a usable id: it ends up in namespace and device names and in messages, and `/`
/// is kept for the implicit objects (`vpc-main/default`).
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// What a lab name may be, said in [`LAB_NAME_RULE`].
pub(crate) fn valid_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The lab name prefixes namespace names `<lab>-<instance>`: without a `-` of its own, no two
/// labs can ever need the same namespace (lab `a` with instance `b-web` against lab `a-b` with
/// instance `web`), and it stays short and shell- and netlink-friendly.
pub(crate) const LAB_NAME_RULE: &str =
    "use 1 to 32 of a-z, 0-9 and _, starting with a letter; no `-`, which separates lab and instance in namespace names";

/// Checks a parsed file and builds its model, or returns every problem found.
///
/// The sections run in an order where everything a reference can point at is known before it is
/// checked: ids first, then the VPC of every object a subnet or ENI can name, and so on.
pub(crate) fn validate(raw: &RawFile, file: &str, lines: &LineIndex) -> Result<Model, Vec<Problem>> {
    let mut c = Checker { file, lines, problems: Vec::new(), ids: HashMap::new() };
    let name = lab_name(&mut c, raw);
    declare_ids(&mut c, raw);
    declare_nat_interfaces(&mut c, raw);
    let implicit_main = declare_implicit_objects(&mut c, raw);
    let vpc_of = VpcOf::resolve(&mut c, raw);
    let vpcs = vpcs(&mut c, raw, implicit_main);
    let peerings = peerings(&mut c, raw, &vpcs);
    let subnets = subnets(&mut c, raw, &vpcs);

    let limits = instances(&mut c, raw);
    let mut addresses = Addresses::default();
    let enis = network_interfaces(&mut c, raw, &subnets, &mut addresses);
    instance_enis(&mut c, raw, &limits, &enis);
    let eips = elastic_ips(&mut c, raw, &vpcs, &enis, &mut addresses);
    let nats = nat_gateways(&mut c, raw, &subnets, &mut addresses);

    let sg_rules = security_groups(&mut c, raw, &vpc_of, &peerings);
    let acl_rules = network_acls(&mut c, raw);
    let igw_vpc = internet_gateways(&mut c, raw);
    let rtb_routes = route_tables(&mut c, raw, &vpcs, &vpc_of, &peerings);

    let hosts = internet_hosts(&mut c, raw, &vpcs, &mut addresses);
    let uplink = uplink(&mut c, raw, &vpcs);
    let mirrors = mirror::traffic_mirroring(&mut c, raw);
    let flow_logs = flow_logs::flow_logs(&mut c, raw);
    let api = api(&mut c, raw);
    let region = dhcp::region(&mut c, raw);
    let dhcp_options = dhcp::dhcp_options(&mut c, raw);
    let instance_network = dhcp::instance_network(&mut c, raw);
    let vpc_endpoints = endpoints::vpc_endpoints(&mut c, raw, &subnets, &mut addresses);
    dns::vpc_attributes(&mut c, raw);
    dns::host_names(&mut c, raw);
    if !c.problems.is_empty() {
        return Err(c.problems);
    }

    let sections = Sections {
        name,
        vpcs,
        vpc_of,
        peerings,
        subnets,
        enis,
        eips,
        nats,
        sg_rules,
        acl_rules,
        igw_vpc,
        rtb_routes,
        hosts,
        uplink,
        mirrors,
    };
    // Every value was checked above, so a `None` here is a bug in this module.
    let model = sections.model(raw).and_then(|mut m| {
        m.flow_logs = flow_logs.into_iter().collect::<Option<Vec<_>>>()?;
        m.api = api;
        m.region = region;
        m.dhcp_options = dhcp_options;
        m.instance_network = instance_network;
        m.vpc_endpoints = vpc_endpoints.into_iter().collect::<Option<Vec<_>>>()?;
        Some(m)
    });
    model.ok_or_else(|| {
        vec![Problem {
            file: file.to_string(),
            line: 0,
            field: "(whole file)".into(),
            message:
                "internal error: a value passed validation but could not be placed in the model; please report this"
                    .into(),
        }]
    })
}

/// The lab's `name`: present, and usable in namespace names.
fn lab_name(c: &mut Checker<'_>, raw: &RawFile) -> Option<String> {
    match &raw.name {
        None => {
            let msg = format!("the lab needs a `name` ({LAB_NAME_RULE})");
            c.problems.push(Problem { file: c.file.to_string(), line: 1, field: "name".into(), message: msg });
            None
        }
        Some(n) if !valid_name(n.get_ref()) => {
            let msg = format!("`{}` is not a lab name: {LAB_NAME_RULE}", n.get_ref());
            c.err(n.span(), "name".into(), msg);
            None
        }
        Some(n) => Some(n.get_ref().clone()),
    }
}

/// Fills the id table with every id the file declares: usable, and unique across the whole file
/// and all kinds (the first declaration keeps the id).
fn declare_ids(c: &mut Checker<'_>, raw: &RawFile) {
    for (id, kind, index) in declared_ids(raw) {
        let field = path(kind, id.get_ref(), "id");
        if !valid_id(id.get_ref()) {
            let msg =
                format!("`{}` is not a usable id: use 1 to 64 of letters, digits, '-', '_' and '.'", id.get_ref());
            c.err(id.span(), field, msg);
            continue;
        }
        match c.ids.get(id.get_ref().as_str()).copied() {
            Some(first) => {
                let msg = format!(
                    "duplicate id `{}`: already the id of {} on line {}",
                    id.get_ref(),
                    first.kind.a(),
                    first.line
                );
                c.err(id.span(), field, msg);
            }
            None => {
                let line = c.line(id.span());
                c.ids.insert(id.get_ref().clone(), IdEntry { kind, index, line, vpc: None });
            }
        }
    }
}

/// Adds each NAT gateway's network interface to the id table under its derived id
/// ([`NatGateway::interface_id_of`]), so a flow log can name it. An object the file declares
/// with that id is refused at its own `id`: the two would be one id for two things.
fn declare_nat_interfaces(c: &mut Checker<'_>, raw: &RawFile) {
    for (index, n) in raw.nat_gateway.iter().enumerate() {
        let nat_id = n.id.get_ref();
        // A NAT gateway whose own id was refused (unusable, or another's) has no interface to name.
        if !c.ids.get(nat_id.as_str()).is_some_and(|e| e.kind == Kind::NatGateway && e.index == index) {
            continue;
        }
        let interface = NatGateway::interface_id_of(nat_id);
        let line = c.line(n.id.span());
        if let Some(clash) = declared_ids(raw).into_iter().find(|(id, _, _)| *id.get_ref() == interface) {
            let (id, kind, _) = clash;
            let msg = format!(
                "`{interface}` is the id of NAT gateway `{nat_id}`'s network interface (line {line}): give {} another id",
                kind.a()
            );
            c.err(id.span(), path(kind, &interface, "id"), msg);
            continue;
        }
        c.ids.insert(interface, IdEntry { kind: Kind::NatInterface, index, line, vpc: None });
    }
}

/// Adds each VPC's implicit objects to the id table: its default group and default ACL, and its
/// main route table unless the file names one. They come after the declared ones in the model's
/// vectors. Returns the index of each VPC's implicit main route table, if it has one.
fn declare_implicit_objects(c: &mut Checker<'_>, raw: &RawFile) -> Vec<Option<usize>> {
    let mut implicit_main: Vec<Option<usize>> = Vec::with_capacity(raw.vpc.len());
    let mut n_implicit_main = 0;
    for (i, v) in raw.vpc.iter().enumerate() {
        let vid = v.id.get_ref();
        let sg = IdEntry { kind: Kind::SecurityGroup, index: raw.security_group.len() + i, line: 0, vpc: Some(i) };
        let acl = IdEntry { kind: Kind::NetworkAcl, index: raw.network_acl.len() + i, line: 0, vpc: Some(i) };
        c.ids.entry(format!("{vid}/default")).or_insert(sg);
        c.ids.entry(format!("{vid}/default-acl")).or_insert(acl);
        if v.main_route_table.is_none() {
            let index = raw.route_table.len() + n_implicit_main;
            n_implicit_main += 1;
            let main = IdEntry { kind: Kind::RouteTable, index, line: 0, vpc: Some(i) };
            c.ids.entry(format!("{vid}/main")).or_insert(main);
            implicit_main.push(Some(index));
        } else {
            implicit_main.push(None);
        }
    }
    implicit_main
}

/// Resolves the `vpc` an object names and records it in the id table for references to the object.
fn owning_vpc(
    c: &mut Checker<'_>,
    kind: Kind,
    id: &Spanned<String>,
    index: usize,
    vpc: &Spanned<String>,
) -> Option<usize> {
    let v = c.resolve(vpc, Kind::Vpc, path(kind, id.get_ref(), "vpc"));
    c.place(kind, id.get_ref(), index, v);
    v
}

/// The VPC each declared route table, network ACL and security group names (`None`: it failed
/// its check).
struct VpcOf {
    route_table: Vec<Option<usize>>,
    network_acl: Vec<Option<usize>>,
    security_group: Vec<Option<usize>>,
}

impl VpcOf {
    /// Resolves the `vpc` of each route table, network ACL and security group, ahead of their
    /// own sections: VPCs, subnets and ENIs name these objects, and each such reference is held
    /// against the object's VPC.
    fn resolve(c: &mut Checker<'_>, raw: &RawFile) -> VpcOf {
        let mut of = |kind: Kind, objects: Vec<(&Spanned<String>, &Spanned<String>)>| -> Vec<Option<usize>> {
            objects.into_iter().enumerate().map(|(i, (id, vpc))| owning_vpc(c, kind, id, i, vpc)).collect()
        };
        VpcOf {
            route_table: of(Kind::RouteTable, raw.route_table.iter().map(|t| (&t.id, &t.vpc)).collect()),
            network_acl: of(Kind::NetworkAcl, raw.network_acl.iter().map(|a| (&a.id, &a.vpc)).collect()),
            security_group: of(Kind::SecurityGroup, raw.security_group.iter().map(|g| (&g.id, &g.vpc)).collect()),
        }
    }
}

/// What validation learnt about one VPC.
struct CheckedVpc {
    /// `None` when the CIDR block failed its check.
    cidr: Option<Cidr>,
    /// The named main route table, else the implicit one; `None` when the named one failed.
    main_route_table: Option<usize>,
    /// Whether the main route table is the implicit `<vpc>/main`.
    implicit_main: bool,
}

/// Checks each VPC's CIDR block, then its main route table (one of its own).
fn vpcs(c: &mut Checker<'_>, raw: &RawFile, implicit_main: Vec<Option<usize>>) -> Vec<CheckedVpc> {
    let mut vpcs: Vec<CheckedVpc> = raw
        .vpc
        .iter()
        .zip(implicit_main)
        .map(|(v, main)| CheckedVpc {
            cidr: c.cidr(&v.cidr, &path(Kind::Vpc, v.id.get_ref(), "cidr"), Some(("a VPC", 16, 28))),
            main_route_table: main,
            implicit_main: main.is_some(),
        })
        .collect();
    for (i, v) in raw.vpc.iter().enumerate() {
        let Some(m) = &v.main_route_table else { continue };
        let field = path(Kind::Vpc, v.id.get_ref(), "main_route_table");
        let misplaced = |tv, _| {
            Some(format!(
                "route table `{}` is in VPC `{}`: a VPC's main route table must be one of its own",
                m.get_ref(),
                vpc_id(raw, tv)
            ))
        };
        if let Some(t) = c.resolve_in(m, Kind::RouteTable, field, Some(i), misplaced) {
            vpcs[i].main_route_table = Some(t);
        }
    }
    vpcs
}

/// The checked peering connections.
struct Peerings {
    /// The (requester, accepter) VPCs of each connection; `None` when it failed its check.
    pairs: Vec<Option<(usize, usize)>>,
    /// Each connection's status; `None` when it failed its check.
    statuses: Vec<Option<PeeringStatus>>,
    /// The connection joining each pair of VPCs, lower index first.
    by_vpcs: HashMap<(usize, usize), String>,
    /// The pairs joined by an active connection, lower index first.
    active: HashSet<(usize, usize)>,
}

impl Peerings {
    /// Whether an active connection joins VPCs `a` and `b` (a pending one carries nothing, so
    /// a group across it cannot be named).
    fn peered(&self, a: usize, b: usize) -> bool {
        self.active.contains(&(a.min(b), a.max(b)))
    }
}

/// A peering connection's `status`: `active` unless it says `pending-acceptance`.
fn peering_status(c: &mut Checker<'_>, p: &super::raw::RawPeering) -> Option<PeeringStatus> {
    match p.status.as_ref().map(|s| (s, s.get_ref().trim())) {
        None | Some((_, "active")) => Some(PeeringStatus::Active),
        Some((_, "pending-acceptance")) => Some(PeeringStatus::PendingAcceptance),
        Some((s, other)) => {
            let msg = format!("`{other}` is not a peering status: use active or pending-acceptance");
            c.err(s.span(), path(Kind::VpcPeering, p.id.get_ref(), "status"), msg);
            None
        }
    }
}

/// Checks each peering connection: two different VPCs, CIDR blocks apart, one connection per pair.
fn peerings(c: &mut Checker<'_>, raw: &RawFile, vpcs: &[CheckedVpc]) -> Peerings {
    let mut out = Peerings { pairs: Vec::new(), statuses: Vec::new(), by_vpcs: HashMap::new(), active: HashSet::new() };
    for p in &raw.vpc_peering {
        let id = p.id.get_ref();
        let status = peering_status(c, p);
        out.statuses.push(status);
        let a = c.resolve(&p.requester_vpc, Kind::Vpc, path(Kind::VpcPeering, id, "requester_vpc"));
        let b = c.resolve(&p.accepter_vpc, Kind::Vpc, path(Kind::VpcPeering, id, "accepter_vpc"));
        let (Some(a), Some(b)) = (a, b) else {
            out.pairs.push(None);
            continue;
        };
        let field = path(Kind::VpcPeering, id, "accepter_vpc");
        if a == b {
            c.err(p.accepter_vpc.span(), field, format!("VPC `{}` cannot be peered with itself", vpc_id(raw, a)));
            out.pairs.push(None);
            continue;
        }
        if let (Some(ca), Some(cb)) = (vpcs[a].cidr, vpcs[b].cidr) {
            if ca.overlaps(cb) {
                let msg = format!(
                    "VPCs with overlapping CIDR blocks cannot be peered: `{}` is {ca}, `{}` is {cb}",
                    vpc_id(raw, a),
                    vpc_id(raw, b)
                );
                c.err(p.accepter_vpc.span(), field.clone(), msg);
            }
        }
        let key = (a.min(b), a.max(b));
        if let Some(other) = out.by_vpcs.get(&key) {
            let msg = format!(
                "VPCs `{}` and `{}` are already peered by `{other}`: AWS allows one peering connection between two VPCs",
                vpc_id(raw, a),
                vpc_id(raw, b)
            );
            c.err(p.accepter_vpc.span(), field, msg);
        } else {
            out.by_vpcs.insert(key, id.clone());
            if status == Some(PeeringStatus::Active) {
                out.active.insert(key);
            }
        }
        out.pairs.push(Some((a, b)));
    }
    out
}

/// What validation learnt about one subnet; `None` where a value failed its check.
struct CheckedSubnet {
    vpc: Option<usize>,
    cidr: Option<Cidr>,
    route_table: Option<usize>,
    network_acl: Option<usize>,
}

/// Checks each subnet: its VPC and CIDR block, its availability zone, and its route table and
/// network ACL (the VPC's main table and default ACL when none is named; else ones of its VPC).
fn subnets(c: &mut Checker<'_>, raw: &RawFile, vpcs: &[CheckedVpc]) -> Vec<CheckedSubnet> {
    let mut out: Vec<CheckedSubnet> = Vec::new();
    for s in &raw.subnet {
        let id = s.id.get_ref();
        let vpc = c.resolve(&s.vpc, Kind::Vpc, path(Kind::Subnet, id, "vpc"));
        let cidr = subnet_cidr(c, raw, s, vpc.map(|v| (v, vpcs[v].cidr)), &out);
        if let Some(az) = &s.availability_zone {
            if az.get_ref().trim().is_empty() {
                let msg = "an availability zone name is empty".into();
                c.err(az.span(), path(Kind::Subnet, id, "availability_zone"), msg);
            }
        }
        let route_table = match &s.route_table {
            None => vpc.and_then(|v| vpcs[v].main_route_table),
            Some(r) => {
                let misplaced = |tv, v| {
                    Some(format!(
                        "route table `{}` is in VPC `{}`, but subnet `{id}` is in VPC `{}`: a subnet's route table must be in its own VPC",
                        r.get_ref(),
                        vpc_id(raw, tv),
                        vpc_id(raw, v)
                    ))
                };
                c.resolve_in(r, Kind::RouteTable, path(Kind::Subnet, id, "route_table"), vpc, misplaced)
            }
        };
        let network_acl = match &s.network_acl {
            None => vpc.map(|v| raw.network_acl.len() + v),
            Some(a) => {
                let misplaced = |av, v| {
                    Some(format!(
                        "network ACL `{}` is in VPC `{}`, but subnet `{id}` is in VPC `{}`: a subnet's network ACL must be in its own VPC",
                        a.get_ref(),
                        vpc_id(raw, av),
                        vpc_id(raw, v)
                    ))
                };
                c.resolve_in(a, Kind::NetworkAcl, path(Kind::Subnet, id, "network_acl"), vpc, misplaced)
            }
        };
        out.push(CheckedSubnet { vpc, cidr, route_table, network_acl });
    }
    out
}

/// A subnet's CIDR block: /16 to /28, inside its VPC's block, and clear of the subnets of the
/// same VPC declared `before` it. `vpc` is the subnet's VPC with that VPC's block, when known.
fn subnet_cidr(
    c: &mut Checker<'_>,
    raw: &RawFile,
    s: &RawSubnet,
    vpc: Option<(usize, Option<Cidr>)>,
    before: &[CheckedSubnet],
) -> Option<Cidr> {
    let field = path(Kind::Subnet, s.id.get_ref(), "cidr");
    let sc = c.cidr(&s.cidr, &field, Some(("a subnet", 16, 28)))?;
    let Some((v, vc)) = vpc else { return Some(sc) };
    if let Some(vc) = vc {
        if !vc.contains_cidr(sc) {
            let msg = format!("subnet CIDR block {sc} is outside VPC `{}`'s CIDR block {vc}", vpc_id(raw, v));
            c.err(s.cidr.span(), field, msg);
            return None;
        }
    }
    let clash = before.iter().position(|o| o.vpc == Some(v) && o.cidr.is_some_and(|oc| oc.overlaps(sc)));
    if let Some(j) = clash {
        let other = &raw.subnet[j];
        let msg = format!(
            "subnet CIDR block {sc} overlaps subnet `{}` ({}) in the same VPC",
            other.id.get_ref(),
            other.cidr.get_ref()
        );
        c.err(s.cidr.span(), field, msg);
    }
    Some(sc)
}

/// Checks each instance's type and state; returns the network limits of its type, if given.
fn instances(c: &mut Checker<'_>, raw: &RawFile) -> Vec<Option<InstanceLimits>> {
    let mut out = Vec::new();
    for inst in &raw.instance {
        let mut limits = None;
        if let Some(t) = &inst.instance_type {
            limits = instance_types::limits(t.get_ref().trim());
            if limits.is_none() {
                let msg = format!(
                    "unknown instance type `{}`: vpclab knows the network limits of the {} families",
                    t.get_ref(),
                    instance_types::families().join(", ")
                );
                c.err(t.span(), path(Kind::Instance, inst.id.get_ref(), "instance_type"), msg);
            }
        }
        if let Some(st) = &inst.state {
            if !matches!(st.get_ref().as_str(), "running" | "stopped") {
                let msg = format!("state `{}` is not an instance state: use running or stopped", st.get_ref());
                c.err(st.span(), path(Kind::Instance, inst.id.get_ref(), "state"), msg);
            }
        }
        if let Some(m) = &inst.metadata_options {
            metadata_options(c, inst.id.get_ref(), m);
        }
        out.push(limits);
    }
    out
}

/// An instance's `metadata_options`: EC2's values and range.
fn metadata_options(c: &mut Checker<'_>, iid: &str, m: &super::raw::RawMetadataOptions) {
    let field = |f: &str| path(Kind::Instance, iid, &format!("metadata_options.{f}"));
    if let Some(t) = m.http_tokens.as_ref().filter(|t| !matches!(t.get_ref().as_str(), "optional" | "required")) {
        c.err(t.span(), field("http_tokens"), format!("`{}`: use optional or required", t.get_ref()));
    }
    if let Some(h) = m.http_put_response_hop_limit.as_ref().filter(|h| !(1..=64).contains(h.get_ref())) {
        c.err(h.span(), field("http_put_response_hop_limit"), format!("{} is outside 1-64, EC2's range", h.get_ref()));
    }
    if let Some(e) = m.http_endpoint.as_ref().filter(|e| !matches!(e.get_ref().as_str(), "enabled" | "disabled")) {
        c.err(e.span(), field("http_endpoint"), format!("`{}`: use enabled or disabled", e.get_ref()));
    }
}

/// Who holds each address so far, described for messages: private IPs are unique per VPC,
/// public ones (Elastic IPs, internet hosts) across the lab.
#[derive(Default)]
struct Addresses {
    private: HashMap<(usize, Ipv4Addr), String>,
    public: HashMap<Ipv4Addr, String>,
}

/// Where an ENI or a NAT gateway sits: its subnet's id (for messages), CIDR block and VPC, as far
/// as they checked out.
#[derive(Clone, Copy)]
struct SubnetPlace<'r> {
    id: &'r str,
    cidr: Option<Cidr>,
    vpc: Option<usize>,
}

impl<'r> SubnetPlace<'r> {
    /// The place of subnet `s` (`None`: the reference failed).
    fn of(raw: &'r RawFile, subnets: &[CheckedSubnet], s: Option<usize>) -> SubnetPlace<'r> {
        SubnetPlace {
            id: s.map_or("", |s| raw.subnet[s].id.get_ref().as_str()),
            cidr: s.and_then(|s| subnets[s].cidr),
            vpc: s.and_then(|s| subnets[s].vpc),
        }
    }
}

impl Addresses {
    /// Takes private IP `s` for `owner`: an address inside its subnet, not one of the five AWS
    /// reserves there, and not yet used in its VPC.
    fn claim_private(
        &mut self,
        c: &mut Checker<'_>,
        raw: &RawFile,
        at: SubnetPlace<'_>,
        s: &Spanned<String>,
        field: String,
        owner: &str,
    ) -> Option<Ipv4Addr> {
        let ip = c.ip(s, &field)?;
        let sc = at.cidr?;
        if !sc.contains(ip) {
            c.err(s.span(), field, format!("{ip} is outside subnet `{}` ({sc})", at.id));
            return None;
        }
        if let Some(role) = reserved_role(sc, ip) {
            let msg = format!("{ip} is one of the five addresses AWS reserves in subnet `{}` ({sc}): {role}", at.id);
            c.err(s.span(), field, msg);
            return None;
        }
        let v = at.vpc?;
        if let Some(other) = self.private.get(&(v, ip)) {
            let msg = format!("{ip} is already used by {other} in VPC `{}`", vpc_id(raw, v));
            c.err(s.span(), field, msg);
            return None;
        }
        self.private.insert((v, ip), owner.to_string());
        Some(ip)
    }
}

/// What validation learnt about one ENI; `None` where a value failed its check.
struct CheckedEni {
    subnet: Option<usize>,
    primary: Option<Ipv4Addr>,
    /// The secondary IPs that checked out.
    secondaries: Vec<Ipv4Addr>,
    security_groups: Option<Vec<usize>>,
    mac: Option<Mac>,
    conntrack: Option<ConntrackConfig>,
    /// `Some(None)`: no attachment; `None`: an attachment that did not check out.
    attachment: Option<Option<(usize, u32)>>,
}

/// The checked ENIs.
struct Enis {
    enis: Vec<CheckedEni>,
    /// Instances named by an attachment that failed its check: one of them may be the missing
    /// primary ENI, so that is not reported too.
    broken_attachment: HashSet<usize>,
}

impl Enis {
    /// The (device index, ENI) pairs attached to instance `ii`, by device index.
    fn attached_to(&self, ii: usize) -> Vec<(u32, usize)> {
        let mut attached: Vec<(u32, usize)> = self
            .enis
            .iter()
            .enumerate()
            .filter_map(|(ei, e)| match e.attachment {
                Some(Some((i, d))) if i == ii => Some((d, ei)),
                _ => None,
            })
            .collect();
        attached.sort_unstable();
        attached
    }
}

/// Checks each ENI: its subnet and private IPs, security groups, MAC, connection tracking and
/// attachment.
fn network_interfaces(
    c: &mut Checker<'_>,
    raw: &RawFile,
    subnets: &[CheckedSubnet],
    addresses: &mut Addresses,
) -> Enis {
    // A MAC is unique across the lab, and never a VPC router's.
    let mut macs: HashMap<Mac, String> = raw
        .vpc
        .iter()
        .map(|v| (Mac::generated("vpc-router", v.id.get_ref()), format!("the router of VPC `{}`", v.id.get_ref())))
        .collect();
    let mut devices: HashMap<(usize, u32), String> = HashMap::new();
    let mut out = Enis { enis: Vec::new(), broken_attachment: HashSet::new() };
    for (ei, e) in raw.network_interface.iter().enumerate() {
        let id = e.id.get_ref();
        let subnet = c.resolve(&e.subnet, Kind::Subnet, path(Kind::NetworkInterface, id, "subnet"));
        let at = SubnetPlace::of(raw, subnets, subnet);
        c.place(Kind::NetworkInterface, id, ei, at.vpc);
        let owner = format!("network interface `{id}`");
        let field = path(Kind::NetworkInterface, id, "private_ip");
        let primary = addresses.claim_private(c, raw, at, &e.private_ip, field, &owner);
        let mut secondaries = Vec::new();
        for (k, s) in e.secondary_private_ips.iter().enumerate() {
            let field = path(Kind::NetworkInterface, id, &format!("secondary_private_ips[{k}]"));
            secondaries.extend(addresses.claim_private(c, raw, at, s, field, &owner));
        }
        let security_groups = eni_security_groups(c, raw, e, at);
        let mac = eni_mac(c, e, &mut macs);
        let conntrack = eni_conntrack(c, e);
        let attachment = eni_attachment(c, e, &mut devices, &mut out.broken_attachment);
        out.enis.push(CheckedEni { subnet, primary, secondaries, security_groups, mac, conntrack, attachment });
    }
    out
}

/// An ENI's security groups: at most [`SGS_PER_ENI`], each once, each in the ENI's VPC; the VPC's
/// default group when none is named.
fn eni_security_groups(c: &mut Checker<'_>, raw: &RawFile, e: &RawEni, at: SubnetPlace<'_>) -> Option<Vec<usize>> {
    let id = e.id.get_ref();
    let list = match &e.security_groups {
        Some(list) if !list.get_ref().is_empty() => list,
        _ => return at.vpc.map(|v| vec![raw.security_group.len() + v]),
    };
    let f = path(Kind::NetworkInterface, id, "security_groups");
    let mut ok = true;
    if list.get_ref().len() > SGS_PER_ENI {
        let msg = format!(
            "a network interface can have at most {SGS_PER_ENI} security groups; {} are listed",
            list.get_ref().len()
        );
        c.err(list.span(), f.clone(), msg);
        ok = false;
    }
    let mut out: Vec<usize> = Vec::new();
    for (k, g) in list.get_ref().iter().enumerate() {
        let fk = format!("{f}[{k}]");
        // A group listed twice passes or fails the VPC check alike both times, so checking it
        // first reports the same as checking for the repeat first.
        let misplaced = |gv, v| {
            Some(format!(
                "security group `{}` is in VPC `{}`, but network interface `{id}` is in VPC `{}` (subnet `{}`): an ENI's groups must be in its own VPC",
                g.get_ref(),
                vpc_id(raw, gv),
                vpc_id(raw, v),
                at.id
            ))
        };
        let Some(gi) = c.resolve_in(g, Kind::SecurityGroup, fk.clone(), at.vpc, misplaced) else {
            ok = false;
            continue;
        };
        if out.contains(&gi) {
            c.err(g.span(), fk, format!("security group `{}` is listed twice", g.get_ref()));
            ok = false;
            continue;
        }
        out.push(gi);
    }
    ok.then_some(out)
}

/// An ENI's MAC: given, else generated from the id; unicast, and not yet used by an ENI or a
/// VPC router (`macs`, which it joins).
fn eni_mac(c: &mut Checker<'_>, e: &RawEni, macs: &mut HashMap<Mac, String>) -> Option<Mac> {
    let id = e.id.get_ref();
    let (mac, span, f) = match &e.mac_address {
        Some(m) => {
            let f = path(Kind::NetworkInterface, id, "mac_address");
            match m.get_ref().trim().parse::<Mac>() {
                Err(err) => {
                    c.err(m.span(), f, err.to_string());
                    return None;
                }
                Ok(mac) if mac.is_multicast() || mac == Mac([0; 6]) => {
                    let msg = format!("{mac} is not a unicast address: an ENI's MAC must be unicast and not all zero");
                    c.err(m.span(), f, msg);
                    return None;
                }
                Ok(mac) => (mac, m.span(), f),
            }
        }
        None => (Mac::generated("eni", id), e.id.span(), path(Kind::NetworkInterface, id, "id")),
    };
    if let Some(owner) = macs.get(&mac) {
        let how = if e.mac_address.is_some() { "" } else { "generated " };
        c.err(span, f, format!("{how}MAC address {mac} is already used by {owner}"));
        return None;
    }
    macs.insert(mac, format!("network interface `{id}`"));
    Some(mac)
}

/// An ENI's connection tracking: AWS's defaults, and AWS's ranges for what is given.
fn eni_conntrack(c: &mut Checker<'_>, e: &RawEni) -> Option<ConntrackConfig> {
    let d = ConntrackConfig::default();
    let Some(t) = &e.connection_tracking else { return Some(d) };
    let base = path(Kind::NetworkInterface, e.id.get_ref(), "connection_tracking");
    let mut get = |v: &Option<Spanned<i64>>, name: &str, range: Range<i64>, dflt: u32| -> Option<u32> {
        match v {
            None => Some(dflt),
            Some(v) => c
                .int_in(v, &format!("{base}.{name}"), range, &format!("{name} (seconds, AWS's range)"))
                .and_then(|n| u32::try_from(n).ok()),
        }
    };
    let tcp = get(&t.tcp_established_timeout, "tcp_established_timeout", 60..432_001, d.tcp_established);
    let us = get(&t.udp_stream_timeout, "udp_stream_timeout", 60..181, d.udp_stream);
    let u = get(&t.udp_timeout, "udp_timeout", 30..61, d.udp);
    let max = match &t.max_connections {
        None => Some(d.max_connections),
        Some(v) => c
            .int_in(v, &format!("{base}.max_connections"), 1..10_000_001, "max_connections")
            .and_then(|n| u32::try_from(n).ok()),
    };
    match (tcp, us, u, max) {
        (Some(tcp_established), Some(udp_stream), Some(udp), Some(max_connections)) => {
            Some(ConntrackConfig { tcp_established, udp_stream, udp, max_connections })
        }
        _ => None,
    }
}

/// An ENI's attachment: an instance and a device index no other ENI of that instance has
/// (`devices`, which it joins). `Some(None)` when the ENI is not attached.
fn eni_attachment(
    c: &mut Checker<'_>,
    e: &RawEni,
    devices: &mut HashMap<(usize, u32), String>,
    broken_attachment: &mut HashSet<usize>,
) -> Option<Option<(usize, u32)>> {
    let Some(a) = &e.attachment else { return Some(None) };
    let id = e.id.get_ref();
    let inst = c.resolve(&a.instance, Kind::Instance, path(Kind::NetworkInterface, id, "attachment.instance"));
    let f = path(Kind::NetworkInterface, id, "attachment.device_index");
    let dev =
        c.int_in(&a.device_index, &f, 0..i64::from(u32::MAX) + 1, "device_index").and_then(|n| u32::try_from(n).ok());
    match (inst, dev) {
        (Some(i), Some(d)) => {
            if let Some(other) = devices.get(&(i, d)) {
                let msg = format!(
                    "device index {d} of instance `{}` is already taken by network interface `{other}`",
                    a.instance.get_ref()
                );
                c.err(a.device_index.span(), f, msg);
                broken_attachment.insert(i);
                None
            } else {
                devices.insert((i, d), id.clone());
                Some(Some((i, d)))
            }
        }
        (Some(i), None) => {
            broken_attachment.insert(i);
            None
        }
        _ => None,
    }
}

/// Checks each instance against the ENIs attached to it: a primary ENI at device index 0, its
/// type's limits, one availability zone. Also refuses the id `internet`.
fn instance_enis(c: &mut Checker<'_>, raw: &RawFile, limits: &[Option<InstanceLimits>], enis: &Enis) {
    for (ii, inst) in raw.instance.iter().enumerate() {
        let iid = inst.id.get_ref();
        let attached = enis.attached_to(ii);
        if iid == "internet" {
            let msg = "`internet` is reserved: the emulated internet lives in namespace `<lab>-internet`".to_string();
            c.err(inst.id.span(), path(Kind::Instance, iid, "id"), msg);
        }
        if iid == "svc" {
            let msg = "`svc` is reserved: the fabric's services live in namespace `<lab>-svc`".to_string();
            c.err(inst.id.span(), path(Kind::Instance, iid, "id"), msg);
        }
        let primary = attached.iter().find(|(d, _)| *d == 0).map(|&(_, ei)| ei);
        if primary.is_none() && !enis.broken_attachment.contains(&ii) {
            let msg = format!(
                "instance `{iid}` has no network interface at device index 0: every instance needs a primary ENI (attachment = {{ instance = \"{iid}\", device_index = 0 }})"
            );
            c.err(inst.id.span(), path(Kind::Instance, iid, "id"), msg);
        }
        if let (Some(lim), Some(t)) = (limits[ii], &inst.instance_type) {
            instance_type_limits(c, raw, iid, lim, t, &attached);
        }
        if let Some(primary) = primary {
            same_availability_zone(c, raw, &enis.enis, iid, primary, &attached);
        }
    }
}

/// The network limits of instance `iid`'s type `t`: how many ENIs, and how many IPv4 addresses
/// on each `attached` one.
fn instance_type_limits(
    c: &mut Checker<'_>,
    raw: &RawFile,
    iid: &str,
    lim: InstanceLimits,
    t: &Spanned<String>,
    attached: &[(u32, usize)],
) {
    if attached.len() > lim.max_enis as usize {
        let names: Vec<String> =
            attached.iter().map(|&(_, ei)| format!("`{}`", raw.network_interface[ei].id.get_ref())).collect();
        let msg = format!(
            "instance type {} allows at most {} network interfaces; instance `{iid}` has {} ({})",
            t.get_ref(),
            lim.max_enis,
            attached.len(),
            names.join(", ")
        );
        c.err(t.span(), path(Kind::Instance, iid, "instance_type"), msg);
    }
    for &(_, ei) in attached {
        let e = &raw.network_interface[ei];
        let count = 1 + e.secondary_private_ips.len();
        if count > lim.ipv4_per_eni as usize {
            // Point at the first address past the limit.
            let k = (lim.ipv4_per_eni as usize).saturating_sub(1);
            let (span, f) = match e.secondary_private_ips.get(k) {
                Some(s) => (s.span(), format!("secondary_private_ips[{k}]")),
                None => (e.private_ip.span(), "private_ip".to_string()),
            };
            let msg = format!(
                "instance type {} allows {} IPv4 addresses per network interface; `{}` (attached to instance `{iid}`) has {count}, primary included",
                t.get_ref(),
                lim.ipv4_per_eni,
                e.id.get_ref()
            );
            c.err(span, path(Kind::NetworkInterface, e.id.get_ref(), &f), msg);
        }
    }
}

/// An instance lives in the availability zone of its `primary` ENI's subnet; every other
/// `attached` ENI must be in that zone too.
fn same_availability_zone(
    c: &mut Checker<'_>,
    raw: &RawFile,
    enis: &[CheckedEni],
    iid: &str,
    primary: usize,
    attached: &[(u32, usize)],
) {
    let az_of = |ei: usize| -> Option<(&str, &str)> {
        let s = enis[ei].subnet?;
        let az = raw.subnet[s].availability_zone.as_ref()?;
        Some((az.get_ref().as_str(), raw.subnet[s].id.get_ref().as_str()))
    };
    let Some((home, _)) = az_of(primary) else { return };
    for &(_, ei) in attached {
        let Some((az, sid)) = az_of(ei) else { continue };
        if az == home {
            continue;
        }
        let e = &raw.network_interface[ei];
        if let Some(a) = &e.attachment {
            let msg = format!(
                "network interface `{}` is in availability zone {az} (subnet `{sid}`), but instance `{iid}` is in {home}: an ENI attaches only to an instance in its own availability zone",
                e.id.get_ref()
            );
            c.err(a.instance.span(), path(Kind::NetworkInterface, e.id.get_ref(), "attachment.instance"), msg);
        }
    }
}

/// A public address (Elastic IP, internet host, uplink gateway): an IPv4 address outside every
/// VPC's CIDR block; `what` says why in the message.
fn outside_vpcs(
    c: &mut Checker<'_>,
    raw: &RawFile,
    vpcs: &[CheckedVpc],
    s: &Spanned<String>,
    field: &str,
    what: &str,
) -> Option<Ipv4Addr> {
    let ip = c.ip(s, field)?;
    for (i, v) in vpcs.iter().enumerate() {
        if let Some(vc) = v.cidr {
            if vc.contains(ip) {
                let msg = format!("{ip} is inside VPC `{}`'s CIDR block {vc}: {what}", vpc_id(raw, i));
                c.err(s.span(), field.to_string(), msg);
                return None;
            }
        }
    }
    Some(ip)
}

/// What validation learnt about one Elastic IP; `None` where a value failed its check.
struct CheckedEip {
    public_ip: Option<Ipv4Addr>,
    /// `Some(None)`: not associated.
    association: Option<Option<(usize, Ipv4Addr)>>,
}

/// Checks each Elastic IP: a public address of its own, and its association with an ENI.
fn elastic_ips(
    c: &mut Checker<'_>,
    raw: &RawFile,
    vpcs: &[CheckedVpc],
    enis: &Enis,
    addresses: &mut Addresses,
) -> Vec<CheckedEip> {
    let mut associated: HashMap<(usize, Ipv4Addr), String> = HashMap::new();
    let mut out = Vec::new();
    for eip in &raw.elastic_ip {
        let id = eip.id.get_ref();
        let f = path(Kind::ElasticIp, id, "public_ip");
        let what = "an Elastic IP must be a public address outside every VPC";
        let public_ip = outside_vpcs(c, raw, vpcs, &eip.public_ip, &f, what);
        if let Some(p) = public_ip {
            if let Some(owner) = addresses.public.get(&p) {
                c.err(eip.public_ip.span(), f, format!("public IP {p} is already used by {owner}"));
            } else {
                addresses.public.insert(p, format!("Elastic IP `{id}`"));
            }
        }
        let association = eip_association(c, eip, &enis.enis, &mut associated);
        out.push(CheckedEip { public_ip, association });
    }
    out
}

/// An Elastic IP's association: an ENI, and one of its private IPs (the primary unless named)
/// that has no other Elastic IP (`associated`, which it joins).
fn eip_association(
    c: &mut Checker<'_>,
    eip: &RawElasticIp,
    enis: &[CheckedEni],
    associated: &mut HashMap<(usize, Ipv4Addr), String>,
) -> Option<Option<(usize, Ipv4Addr)>> {
    let id = eip.id.get_ref();
    let n = match (&eip.network_interface, &eip.private_ip) {
        (None, None) => return Some(None),
        (None, Some(p)) => {
            let msg = "private_ip needs network_interface: it picks which of that ENI's addresses to map".into();
            c.err(p.span(), path(Kind::ElasticIp, id, "private_ip"), msg);
            return None;
        }
        (Some(n), _) => n,
    };
    let ei = c.resolve(n, Kind::NetworkInterface, path(Kind::ElasticIp, id, "network_interface"))?;
    // An ENI whose primary IP failed its check has nothing to map yet.
    let primary = enis[ei].primary?;
    let (ip, span, fname) = match &eip.private_ip {
        None => (primary, n.span(), "network_interface"),
        Some(p) => {
            let fp = path(Kind::ElasticIp, id, "private_ip");
            let ip = c.ip(p, &fp)?;
            let ips: Vec<Ipv4Addr> = std::iter::once(primary).chain(enis[ei].secondaries.iter().copied()).collect();
            if !ips.contains(&ip) {
                let list: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
                let msg =
                    format!("{ip} is not a private IP of network interface `{}` ({})", n.get_ref(), list.join(", "));
                c.err(p.span(), fp, msg);
                return None;
            }
            (ip, p.span(), "private_ip")
        }
    };
    if let Some(other) = associated.get(&(ei, ip)) {
        let msg = format!(
            "private IP {ip} of network interface `{}` already has Elastic IP `{other}`: one Elastic IP per private IP",
            n.get_ref()
        );
        c.err(span, path(Kind::ElasticIp, id, fname), msg);
        return None;
    }
    associated.insert((ei, ip), id.clone());
    Some(Some((ei, ip)))
}

/// What validation learnt about one NAT gateway; `None` where a value failed its check.
struct CheckedNat {
    subnet: Option<usize>,
    private_ip: Option<Ipv4Addr>,
    /// `Some(None)`: no Elastic IP.
    elastic_ip: Option<Option<usize>>,
    ports: Option<PortRange>,
    preserve_ports: Option<bool>,
}

/// Checks each NAT gateway: its source ports, subnet, private IP and Elastic IP. Given addresses
/// are taken first, then each of the others gets the first free one of its subnet.
fn nat_gateways(
    c: &mut Checker<'_>,
    raw: &RawFile,
    subnets: &[CheckedSubnet],
    addresses: &mut Addresses,
) -> Vec<CheckedNat> {
    let mut eip_used: HashMap<usize, String> = HashMap::new();
    let mut out = Vec::new();
    for (k, n) in raw.nat_gateway.iter().enumerate() {
        let id = n.id.get_ref();
        let ports = nat_ports(c, n);
        let subnet = c.resolve(&n.subnet, Kind::Subnet, path(Kind::NatGateway, id, "subnet"));
        let at = SubnetPlace::of(raw, subnets, subnet);
        c.place(Kind::NatGateway, id, k, at.vpc);
        let f = path(Kind::NatGateway, id, "private_ip");
        let private_ip = match &n.private_ip {
            None => None,
            Some(p) if at.vpc.is_some() => addresses.claim_private(c, raw, at, p, f, &format!("NAT gateway `{id}`")),
            // Without its subnet's VPC the address is only read (unlike an ENI's, whose subnet
            // and reserved addresses are checked all the same).
            Some(p) => {
                c.ip(p, &f);
                None
            }
        };
        let elastic_ip = nat_elastic_ip(c, raw, n, &mut eip_used);
        let preserve_ports = nat_source_ports(c, n);
        out.push(CheckedNat { subnet, private_ip, elastic_ip, ports, preserve_ports });
    }
    nat_free_addresses(c, raw, subnets, &mut out, addresses);
    out
}

/// A NAT gateway's source ports: AWS's 1024-65535, or (vpclab's extension, to rehearse port
/// exhaustion) a narrower range within it.
fn nat_ports(c: &mut Checker<'_>, n: &RawNatGateway) -> Option<PortRange> {
    let Some(p) = &n.ports else { return Some(NatGateway::AWS_PORTS) };
    let field = path(Kind::NatGateway, n.id.get_ref(), "ports");
    match c.port_range(p, &field) {
        Some(r) if r.from >= 1024 => Some(r),
        Some(r) => {
            let msg = format!("ports {}-{} start below 1024: a NAT gateway uses source ports 1024-65535", r.from, r.to);
            c.err(p.span(), field, msg);
            None
        }
        None => None,
    }
}

/// A NAT gateway's `source_ports`: `random` (the default, see [`NatGateway::preserve_ports`]) or
/// `preserve`.
fn nat_source_ports(c: &mut Checker<'_>, n: &RawNatGateway) -> Option<bool> {
    let Some(s) = &n.source_ports else { return Some(false) };
    match s.get_ref().as_str() {
        "random" => Some(false),
        "preserve" => Some(true),
        other => {
            let field = path(Kind::NatGateway, n.id.get_ref(), "source_ports");
            let msg = format!("`{other}` is not a source port policy: `random` (AWS's NAT gateway) or `preserve`");
            c.err(s.span(), field, msg);
            None
        }
    }
}

/// A NAT gateway's Elastic IP: one associated with no ENI and no other NAT gateway (`used`,
/// which it joins). `Some(None)` when none is named.
fn nat_elastic_ip(
    c: &mut Checker<'_>,
    raw: &RawFile,
    n: &RawNatGateway,
    used: &mut HashMap<usize, String>,
) -> Option<Option<usize>> {
    let Some(r) = &n.elastic_ip else { return Some(None) };
    let f = path(Kind::NatGateway, n.id.get_ref(), "elastic_ip");
    let ei = c.resolve(r, Kind::ElasticIp, f.clone())?;
    if let Some(eni) = &raw.elastic_ip[ei].network_interface {
        let msg = format!(
            "Elastic IP `{}` is associated with network interface `{}`; a NAT gateway needs an Elastic IP of its own",
            r.get_ref(),
            eni.get_ref()
        );
        c.err(r.span(), f, msg);
        None
    } else if let Some(other) = used.get(&ei) {
        c.err(r.span(), f, format!("Elastic IP `{}` is already used by NAT gateway `{other}`", r.get_ref()));
        None
    } else {
        used.insert(ei, n.id.get_ref().clone());
        Some(Some(ei))
    }
}

/// Gives each NAT gateway without a `private_ip` the first free address of its subnet, as AWS
/// does, once every given address is taken.
fn nat_free_addresses(
    c: &mut Checker<'_>,
    raw: &RawFile,
    subnets: &[CheckedSubnet],
    nats: &mut [CheckedNat],
    addresses: &mut Addresses,
) {
    for (n, nat) in raw.nat_gateway.iter().zip(nats.iter_mut()) {
        if n.private_ip.is_some() {
            continue;
        }
        let (Some(s), Some(v)) = (nat.subnet, nat.subnet.and_then(|s| subnets[s].vpc)) else { continue };
        let Some(sc) = subnets[s].cidr else { continue };
        // base+4 is the first address AWS hands out; the last is the broadcast address.
        let first = u32::from(sc.addr).saturating_add(4);
        let last = u32::from(sc.last());
        let free = (first..last).map(Ipv4Addr::from).find(|ip| !addresses.private.contains_key(&(v, *ip)));
        match free {
            Some(ip) => {
                addresses.private.insert((v, ip), format!("NAT gateway `{}`", n.id.get_ref()));
                nat.private_ip = Some(ip);
            }
            None => {
                let msg = format!(
                    "subnet `{}` ({sc}) has no free address left for this NAT gateway",
                    raw.subnet[s].id.get_ref()
                );
                c.err(n.subnet.span(), path(Kind::NatGateway, n.id.get_ref(), "subnet"), msg);
            }
        }
    }
}

/// Ingress and egress rules of a security group or network ACL; `None` when a rule or the quota
/// failed its check.
type Rules<R> = Option<(Vec<R>, Vec<R>)>;

/// A security group being checked: what its rules' peers are held against.
struct GroupCtx<'r> {
    raw: &'r RawFile,
    peerings: &'r Peerings,
    id: &'r str,
    /// The group's VPC (`None`: it failed its check).
    vpc: Option<usize>,
}

/// Checks each security group's rules. A group without `egress` gets AWS's default for a new
/// group: one rule allowing all outbound traffic.
fn security_groups(c: &mut Checker<'_>, raw: &RawFile, vpc_of: &VpcOf, peerings: &Peerings) -> Vec<Rules<SgRule>> {
    group_names(c, raw, vpc_of);
    let mut out = Vec::new();
    for (gi, g) in raw.security_group.iter().enumerate() {
        let group = GroupCtx { raw, peerings, id: g.id.get_ref(), vpc: vpc_of.security_group[gi] };
        let ingress = g.ingress.as_ref().map_or(Some(Vec::new()), |l| sg_rules(c, &group, l, true));
        let egress = match &g.egress {
            None => Some(vec![allow_all_rule()]),
            Some(l) => sg_rules(c, &group, l, false),
        };
        out.push(ingress.zip(egress));
    }
    out
}

/// The name of every VPC's default security group, which no other group may take.
pub const DEFAULT_GROUP_NAME: &str = "default";

/// Checks each group's name (its id when not given): 1 to 255 characters, not `default`, and
/// unique in its VPC, as AWS requires of `GroupName`.
fn group_names(c: &mut Checker<'_>, raw: &RawFile, vpc_of: &VpcOf) {
    let mut seen: HashMap<(usize, &str), &str> = HashMap::new();
    for (g, vpc) in raw.security_group.iter().zip(&vpc_of.security_group) {
        let named = g.name.as_ref().unwrap_or(&g.id);
        let (id, name) = (g.id.get_ref(), named.get_ref().as_str());
        let field = path(Kind::SecurityGroup, id, "name");
        let problem = if name.is_empty() || name.len() > 255 {
            Some(format!("`{name}` is not a group name: use 1 to 255 characters"))
        } else if name == DEFAULT_GROUP_NAME {
            Some("the name `default` is reserved for the VPC's default security group".to_string())
        } else {
            let other = vpc.and_then(|v| seen.insert((v, name), id));
            other.map(|other| format!("group `{other}` in the same VPC is already named `{name}`"))
        };
        if let Some(msg) = problem {
            c.err(named.span(), field, msg);
        }
    }
}

/// One direction of a group's rules: at most [`SG_RULES_PER_DIRECTION`], each checked.
fn sg_rules(
    c: &mut Checker<'_>,
    g: &GroupCtx<'_>,
    list: &Spanned<Vec<RawSgRule>>,
    ingress: bool,
) -> Option<Vec<SgRule>> {
    let dname = if ingress { "ingress" } else { "egress" };
    let mut ok = true;
    if list.get_ref().len() > SG_RULES_PER_DIRECTION {
        let msg = format!(
            "a security group holds at most {SG_RULES_PER_DIRECTION} {dname} rules; this one has {}",
            list.get_ref().len()
        );
        c.err(list.span(), path(Kind::SecurityGroup, g.id, dname), msg);
        ok = false;
    }
    let mut out = Vec::new();
    for (k, r) in list.get_ref().iter().enumerate() {
        let base = path(Kind::SecurityGroup, g.id, &format!("{dname}[{k}]"));
        match sg_rule(c, g, &base, r, ingress) {
            Some(rules) => out.extend(rules),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One security group rule: protocol, ports, and the peer of its direction (`source` for
/// ingress, `destination` for egress; the other one is a mistake). A rule naming a prefix list
/// becomes one rule per CIDR of the list.
fn sg_rule(c: &mut Checker<'_>, g: &GroupCtx<'_>, base: &str, r: &RawSgRule, ingress: bool) -> Option<Vec<SgRule>> {
    let dname = if ingress { "ingress" } else { "egress" };
    let protocol = c.protocol(&r.protocol, &format!("{base}.protocol"));
    let ports =
        protocol.and_then(|p| c.port_match(p, r.ports.as_ref(), r.icmp_type.as_ref(), r.icmp_code.as_ref(), base));
    let (want, wrong, peer, stray) = if ingress {
        ("source", "destination", &r.source, &r.destination)
    } else {
        ("destination", "source", &r.destination, &r.source)
    };
    if let Some(s) = stray {
        let msg = format!("an {dname} rule names its `{want}`, not a `{wrong}`");
        c.err(s.span(), format!("{base}.{wrong}"), msg);
    }
    let peer = match peer {
        // A rule that named the wrong side was reported just above: one mistake, one message.
        None if stray.is_some() => None,
        None => {
            let msg = format!("an {dname} rule needs a `{want}`: a CIDR block or a security group id");
            c.err(r.protocol.span(), format!("{base}.{want}"), msg);
            None
        }
        Some(p) => sg_peer(c, g, p, format!("{base}.{want}")),
    };
    match (protocol, ports, peer, stray) {
        (Some(protocol), Some(ports), Some(peers), None) => {
            Some(peers.into_iter().map(|peer| SgRule { protocol, ports, peer }).collect())
        }
        _ => None,
    }
}

/// A rule's peers: a CIDR block, a security group in the group's own VPC or a peered one, or
/// an AWS-managed prefix list (`pl-...`), which stands for each of its CIDRs.
fn sg_peer(c: &mut Checker<'_>, g: &GroupCtx<'_>, p: &Spanned<String>, field: String) -> Option<Vec<SgPeer>> {
    if p.get_ref().trim().starts_with(|ch: char| ch.is_ascii_digit()) {
        return c.cidr(p, &field, None).map(|cidr| vec![SgPeer::Cidr(cidr)]);
    }
    if p.get_ref().starts_with("pl-") {
        return endpoints::prefix_list_peers(c, g.raw, p, field);
    }
    let misplaced = |ov, v| {
        (!g.peerings.peered(ov, v)).then(|| {
            format!(
                "security group `{}` is in VPC `{}`, which is neither this group's VPC `{}` nor peered with it",
                p.get_ref(),
                vpc_id(g.raw, ov),
                vpc_id(g.raw, v)
            )
        })
    };
    c.resolve_in(p, Kind::SecurityGroup, field, g.vpc, misplaced).map(|other| vec![SgPeer::Group(SgIdx(other as u32))])
}

/// One outbound (or inbound) rule allowing everything to/from 0.0.0.0/0.
fn allow_all_rule() -> SgRule {
    SgRule { protocol: Protocol::All, ports: PortMatch::Any, peer: SgPeer::Cidr(Cidr::new(Ipv4Addr::UNSPECIFIED, 0)) }
}

/// Checks each network ACL's rules. A custom ACL without rules denies everything (only the
/// implicit `*` rule is left).
fn network_acls(c: &mut Checker<'_>, raw: &RawFile) -> Vec<Rules<AclRule>> {
    let mut out = Vec::new();
    for a in &raw.network_acl {
        let id = a.id.get_ref();
        let ingress = a.ingress.as_ref().map_or(Some(Vec::new()), |l| acl_rules(c, id, l, "ingress"));
        let egress = a.egress.as_ref().map_or(Some(Vec::new()), |l| acl_rules(c, id, l, "egress"));
        out.push(ingress.zip(egress));
    }
    out
}

/// One direction of ACL `id`'s rules: at most [`ACL_RULES_PER_DIRECTION`], each rule number once;
/// sorted by rule number, the order they are evaluated in.
fn acl_rules(c: &mut Checker<'_>, id: &str, list: &Spanned<Vec<RawAclRule>>, dname: &str) -> Option<Vec<AclRule>> {
    let within_quota = list.get_ref().len() <= ACL_RULES_PER_DIRECTION;
    if !within_quota {
        let msg = format!(
            "a network ACL holds at most {ACL_RULES_PER_DIRECTION} {dname} rules; this one has {}",
            list.get_ref().len()
        );
        c.err(list.span(), path(Kind::NetworkAcl, id, dname), msg);
    }
    let rules = numbered_rules(c, Kind::NetworkAcl, id, list.get_ref(), dname, acl_rule, |r| r.number);
    rules.filter(|_| within_quota)
}

/// One direction `dname` of a numbered rule list (a network ACL's entries, a traffic mirror
/// filter's rules) of the `kind` named `id`: each rule checked by `check`, which gets the rule's
/// path and the numbers `seen` so far in this direction; then sorted by number, the order AWS
/// evaluates them in. `None` if any rule failed its check.
fn numbered_rules<R, T>(
    c: &mut Checker<'_>,
    kind: Kind,
    id: &str,
    list: &[R],
    dname: &str,
    check: impl Fn(&mut Checker<'_>, &str, &R, &str, &mut HashMap<i64, usize>) -> Option<T>,
    number: impl Fn(&T) -> u16,
) -> Option<Vec<T>> {
    // The line of each rule number used so far.
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut out = Vec::new();
    let mut ok = true;
    for (k, r) in list.iter().enumerate() {
        let base = path(kind, id, &format!("{dname}[{k}]"));
        match check(c, &base, r, dname, &mut seen) {
            Some(rule) => out.push(rule),
            None => ok = false,
        }
    }
    out.sort_by_key(number);
    ok.then_some(out)
}

/// One network ACL rule: a rule number not yet `seen` in its direction, protocol, ports, CIDR
/// block and action.
fn acl_rule(
    c: &mut Checker<'_>,
    base: &str,
    r: &RawAclRule,
    dname: &str,
    seen: &mut HashMap<i64, usize>,
) -> Option<AclRule> {
    let what = "a rule number (32767 is the implicit `*` deny)";
    let (number, unique) = c.rule_number(&r.rule, &format!("{base}.rule"), what, dname, seen);
    let protocol = c.protocol(&r.protocol, &format!("{base}.protocol"));
    let ports =
        protocol.and_then(|p| c.port_match(p, r.ports.as_ref(), r.icmp_type.as_ref(), r.icmp_code.as_ref(), base));
    let cidr = c.cidr(&r.cidr, &format!("{base}.cidr"), None);
    let action = match r.action.get_ref().trim().to_ascii_lowercase().as_str() {
        "allow" => Some(AclAction::Allow),
        "deny" => Some(AclAction::Deny),
        other => {
            let msg = format!("`{other}` is not an action: use allow or deny");
            c.err(r.action.span(), format!("{base}.action"), msg);
            None
        }
    };
    match (unique, number.and_then(|n| u16::try_from(n).ok()), protocol, ports, cidr, action) {
        (true, Some(number), Some(protocol), Some(ports), Some(cidr), Some(action)) => {
            Some(AclRule { number, protocol, ports, cidr, action })
        }
        _ => None,
    }
}

/// Checks each internet gateway's VPC, then that no VPC has two: AWS attaches at most one.
/// Returns each gateway's VPC.
fn internet_gateways(c: &mut Checker<'_>, raw: &RawFile) -> Vec<CheckedIgw> {
    let vpcs: Vec<CheckedIgw> = raw
        .internet_gateway
        .iter()
        .enumerate()
        .map(|(k, g)| match &g.vpc {
            None => CheckedIgw::Detached,
            Some(v) => owning_vpc(c, Kind::InternetGateway, &g.id, k, v).map_or(CheckedIgw::Failed, CheckedIgw::In),
        })
        .collect();
    let mut igw_of_vpc: HashMap<usize, &str> = HashMap::new();
    for (g, vpc) in raw.internet_gateway.iter().zip(&vpcs) {
        let (CheckedIgw::In(v), Some(named)) = (*vpc, &g.vpc) else { continue };
        if let Some(other) = igw_of_vpc.get(&v) {
            let msg = format!(
                "VPC `{}` already has internet gateway `{other}`: AWS attaches at most one per VPC",
                vpc_id(raw, v)
            );
            c.err(named.span(), path(Kind::InternetGateway, g.id.get_ref(), "vpc"), msg);
        } else {
            igw_of_vpc.insert(v, g.id.get_ref());
        }
    }
    vpcs
}

/// Where validation found an internet gateway.
#[derive(Clone, Copy, Debug)]
enum CheckedIgw {
    /// Attached to this VPC.
    In(usize),
    /// Created without a VPC (no `vpc`).
    Detached,
    /// Its `vpc` failed its check.
    Failed,
}

/// A route table being checked: what its routes are held against.
struct TableCtx<'r> {
    raw: &'r RawFile,
    peerings: &'r Peerings,
    /// The table's VPC and that VPC's CIDR block (`None`: failed its check).
    vpc: Option<usize>,
    cidr: Option<Cidr>,
    /// What already routes each destination, for messages.
    seen: HashMap<Cidr, String>,
}

/// Checks each route table's routes.
fn route_tables(
    c: &mut Checker<'_>,
    raw: &RawFile,
    vpcs: &[CheckedVpc],
    vpc_of: &VpcOf,
    peerings: &Peerings,
) -> Vec<Option<Vec<Route>>> {
    let mut out = Vec::new();
    for (t, &vpc) in raw.route_table.iter().zip(&vpc_of.route_table) {
        let cidr = vpc.and_then(|v| vpcs[v].cidr);
        let mut table = TableCtx { raw, peerings, vpc, cidr, seen: HashMap::new() };
        out.push(route_table(c, t, &mut table));
    }
    out
}

/// One route table: the local route first, then the file's routes, at most
/// [`ROUTES_PER_TABLE`] in all and one per destination.
fn route_table(c: &mut Checker<'_>, t: &RawRouteTable, table: &mut TableCtx<'_>) -> Option<Vec<Route>> {
    let id = t.id.get_ref();
    let mut ok = table.cidr.is_some();
    let mut routes: Vec<Route> =
        table.cidr.map(|vc| vec![Route { destination: vc, target: RouteTarget::Local }]).unwrap_or_default();
    let empty = Vec::new();
    let list = t.routes.as_ref().map_or(&empty, |r| r.get_ref());
    if let Some(r) = &t.routes {
        if list.len() + 1 > ROUTES_PER_TABLE {
            let msg = format!(
                "a route table holds at most {ROUTES_PER_TABLE} routes, the local route included; this one has {}",
                list.len() + 1
            );
            c.err(r.span(), path(Kind::RouteTable, id, "routes"), msg);
            ok = false;
        }
    }
    if let Some(vc) = table.cidr {
        table.seen.insert(vc, "the local route".to_string());
    }
    for (k, r) in list.iter().enumerate() {
        let base = path(Kind::RouteTable, id, &format!("routes[{k}]"));
        match route(c, table, &base, r) {
            Some(route) => routes.push(route),
            None => ok = false,
        }
    }
    ok.then_some(routes)
}

/// One route: its destination, and its target (`local` only inside the VPC's block).
fn route(c: &mut Checker<'_>, table: &mut TableCtx<'_>, base: &str, r: &RawRoute) -> Option<Route> {
    let dest = route_destination(c, table, &r.destination, format!("{base}.destination"));
    let ft = format!("{base}.target");
    let target = match r.target.get_ref().trim() {
        "local" => match (dest, table.cidr) {
            (Some(d), Some(vc)) if !vc.contains_cidr(d) => {
                let msg = format!("target `local` only reaches inside the VPC's CIDR block {vc}; {d} is not inside it");
                c.err(r.target.span(), ft, msg);
                None
            }
            _ => Some(RouteTarget::Local),
        },
        "blackhole" => Some(RouteTarget::Blackhole),
        _ => route_target(c, table.raw, &r.target, ft, table.vpc, &table.peerings.pairs),
    };
    Some(Route { destination: dest?, target: target? })
}

/// Resolves a gateway, ENI or peering target and checks it belongs to the table's VPC.
fn route_target(
    c: &mut Checker<'_>,
    raw: &RawFile,
    t: &Spanned<String>,
    field: String,
    vpc: Option<usize>,
    peer_pair: &[Option<(usize, usize)>],
) -> Option<RouteTarget> {
    const KINDS: &str =
        "local, blackhole, or the id of an internet gateway, NAT gateway, network interface or VPC peering connection";
    let name = t.get_ref();
    let Some(e) = c.ids.get(name.trim()).copied() else {
        c.err(t.span(), field, format!("`{name}` does not exist: a route target is {KINDS}"));
        return None;
    };
    let target = match e.kind {
        Kind::InternetGateway => RouteTarget::InternetGateway(IgwIdx(e.index as u32)),
        Kind::NatGateway => RouteTarget::NatGateway(NatIdx(e.index as u32)),
        Kind::NetworkInterface => RouteTarget::Eni(EniIdx(e.index as u32)),
        Kind::VpcPeering => {
            // A peering belongs to two VPCs: the table's must be one of them.
            let (a, b) = peer_pair[e.index]?;
            if let Some(v) = vpc {
                if v != a && v != b {
                    let msg = format!(
                        "VPC peering connection `{name}` joins `{}` and `{}`, not this table's VPC `{}`",
                        vpc_id(raw, a),
                        vpc_id(raw, b),
                        vpc_id(raw, v)
                    );
                    c.err(t.span(), field, msg);
                    return None;
                }
            }
            return Some(RouteTarget::Peering(PcxIdx(e.index as u32)));
        }
        other => {
            c.err(t.span(), field, format!("`{name}` is {}, not a route target: a route target is {KINDS}", other.a()));
            return None;
        }
    };
    let misplaced = |tv, v| {
        Some(format!(
            "`{name}` is in VPC `{}`, not this table's VPC `{}`: a route's gateway or ENI must be in the table's VPC",
            vpc_id(raw, tv),
            vpc_id(raw, v)
        ))
    };
    c.at_home(t.span(), field, e.vpc, vpc, misplaced).then_some(target)
}

/// A route's destination: a CIDR block outside the range AWS reserves, not yet routed by the table.
fn route_destination(
    c: &mut Checker<'_>,
    table: &mut TableCtx<'_>,
    s: &Spanned<String>,
    field: String,
) -> Option<Cidr> {
    let reserved_range = Cidr::new(Ipv4Addr::new(169, 254, 168, 0), 22);
    let d = c.cidr(s, &field, None)?;
    if reserved_range.contains_cidr(d) {
        let msg = format!(
            "routes to {reserved_range} (or inside it) cannot be added: AWS reserves that range; {d} is inside it"
        );
        c.err(s.span(), field, msg);
        return None;
    }
    if let Some(other) = table.seen.get(&d) {
        let msg = format!("destination {d} is already routed by {other}: a table holds one route per destination");
        c.err(s.span(), field, msg);
        return None;
    }
    table.seen.insert(d, format!("the route on line {}", c.line(s.span())));
    Some(d)
}

/// Checks each host of the emulated internet: a public address of its own. Returns each one's
/// address.
fn internet_hosts(
    c: &mut Checker<'_>,
    raw: &RawFile,
    vpcs: &[CheckedVpc],
    addresses: &mut Addresses,
) -> Vec<Option<Ipv4Addr>> {
    let Some(internet) = &raw.internet else { return Vec::new() };
    let mut out = Vec::new();
    for h in &internet.hosts {
        let id = h.id.get_ref();
        let f = path(Kind::InternetHost, id, "ip");
        let ip = outside_vpcs(c, raw, vpcs, &h.ip, &f, "an internet host must be outside every VPC");
        if let Some(ip) = ip {
            if let Some(owner) = addresses.public.get(&ip) {
                c.err(h.ip.span(), f, format!("{ip} is already used by {owner}"));
            } else {
                addresses.public.insert(ip, format!("internet host `{id}`"));
            }
        }
        out.push(ip);
    }
    out
}

/// Checks the uplink, if any: an interface name, a gateway outside every VPC, and no emulated
/// hosts beside it.
fn uplink(c: &mut Checker<'_>, raw: &RawFile, vpcs: &[CheckedVpc]) -> Option<Uplink> {
    let u = raw.internet.as_ref().and_then(|i| i.uplink.as_ref())?;
    let name = u.interface.get_ref();
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
        let msg = format!("`{name}` is not an interface name (1 to 15 characters, no `/` or spaces)");
        c.err(u.interface.span(), "internet.uplink.interface".into(), msg);
    }
    let field = "internet.uplink.gateway";
    let gateway = outside_vpcs(c, raw, vpcs, &u.gateway, field, "the uplink's gateway must be outside every VPC");
    if raw.internet.as_ref().is_some_and(|i| !i.hosts.is_empty()) {
        let msg = "an uplink replaces the emulated internet: give `hosts` or `uplink`, not both".to_string();
        c.err(u.interface.span(), "internet.uplink".into(), msg);
    }
    gateway.map(|gateway| Uplink { interface: name.clone(), gateway })
}

/// Checks `[api]`: an address to listen on, and both credentials or neither.
fn api(c: &mut Checker<'_>, raw: &RawFile) -> ApiSettings {
    let Some(a) = &raw.api else { return ApiSettings::default() };
    let listen = a.listen.as_ref().and_then(|l| match l.get_ref().parse::<std::net::SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let msg = format!("`{}` is not an address and port (e.g. 127.0.0.1:4566)", l.get_ref());
            c.err(l.span(), "api.listen".into(), msg);
            None
        }
    });
    let credentials = match (&a.access_key_id, &a.secret_access_key) {
        (Some(k), Some(s)) if !k.get_ref().is_empty() && !s.get_ref().is_empty() => {
            Some((k.get_ref().clone(), s.get_ref().clone()))
        }
        (Some(k), _) | (None, Some(k)) => {
            let msg = "give both access_key_id and secret_access_key, neither empty, or neither".to_string();
            c.err(k.span(), "api".into(), msg);
            None
        }
        (None, None) => None,
    };
    ApiSettings { listen, credentials }
}

/// Everything the sections learnt, by section; assembled into the model when no problem was found.
struct Sections {
    name: Option<String>,
    vpcs: Vec<CheckedVpc>,
    vpc_of: VpcOf,
    peerings: Peerings,
    subnets: Vec<CheckedSubnet>,
    enis: Enis,
    eips: Vec<CheckedEip>,
    nats: Vec<CheckedNat>,
    sg_rules: Vec<Rules<SgRule>>,
    acl_rules: Vec<Rules<AclRule>>,
    igw_vpc: Vec<CheckedIgw>,
    rtb_routes: Vec<Option<Vec<Route>>>,
    hosts: Vec<Option<Ipv4Addr>>,
    uplink: Option<Uplink>,
    mirrors: mirror::Mirroring,
}

/// A model index; `None` past `u32::MAX`, which validation cannot let through.
fn idx(i: usize) -> Option<u32> {
    u32::try_from(i).ok()
}

impl Sections {
    /// The model: every vector in file order, each VPC's implicit objects after the declared ones
    /// (the order `export` writes back). `None` only if a checked value is missing: a bug.
    fn model(&self, raw: &RawFile) -> Option<Model> {
        Some(Model {
            name: self.name.clone()?,
            vpcs: self.model_vpcs(raw)?,
            subnets: self.model_subnets(raw)?,
            enis: self.model_enis(raw)?,
            instances: raw.instance.iter().map(model_instance).collect(),
            security_groups: self.model_security_groups(raw)?,
            network_acls: self.model_network_acls(raw)?,
            route_tables: self.model_route_tables(raw)?,
            internet_gateways: self.model_internet_gateways(raw)?,
            nat_gateways: self.model_nat_gateways(raw)?,
            elastic_ips: self.model_elastic_ips(raw)?,
            peerings: self.model_peerings(raw)?,
            internet_hosts: self.model_internet_hosts(raw)?,
            uplink: self.uplink.clone(),
            traffic_mirror_targets: self.mirrors.targets(raw)?,
            traffic_mirror_filters: self.mirrors.filters(raw)?,
            traffic_mirror_sessions: self.mirrors.sessions(raw)?,
            flow_logs: Vec::new(),
            api: ApiSettings::default(),
            region: None,
            dhcp_options: Vec::new(),
            instance_network: Default::default(),
            vpc_endpoints: Vec::new(),
        })
    }

    /// The VPCs, with their main route table and implicit default group and ACL.
    fn model_vpcs(&self, raw: &RawFile) -> Option<Vec<Vpc>> {
        let mut out = Vec::new();
        for (i, (v, checked)) in raw.vpc.iter().zip(&self.vpcs).enumerate() {
            out.push(Vpc {
                id: v.id.get_ref().clone(),
                cidr: checked.cidr?,
                router_mac: Mac::generated("vpc-router", v.id.get_ref()),
                main_route_table: RtbIdx(idx(checked.main_route_table?)?),
                default_network_acl: AclIdx(idx(raw.network_acl.len() + i)?),
                default_security_group: SgIdx(idx(raw.security_group.len() + i)?),
                enable_dns_support: v.enable_dns_support.as_ref().is_none_or(|b| *b.get_ref()),
                enable_dns_hostnames: v.enable_dns_hostnames.as_ref().is_some_and(|b| *b.get_ref()),
            });
        }
        Some(out)
    }

    /// The subnets, with the route table and network ACL each uses.
    fn model_subnets(&self, raw: &RawFile) -> Option<Vec<Subnet>> {
        let mut out = Vec::new();
        for (s, checked) in raw.subnet.iter().zip(&self.subnets) {
            out.push(Subnet {
                id: s.id.get_ref().clone(),
                vpc: VpcIdx(idx(checked.vpc?)?),
                cidr: checked.cidr?,
                availability_zone: s.availability_zone.as_ref().map(|a| a.get_ref().trim().to_string()),
                route_table: RtbIdx(idx(checked.route_table?)?),
                network_acl: AclIdx(idx(checked.network_acl?)?),
            });
        }
        Some(out)
    }

    /// The ENIs, with AWS's defaults for what the file leaves out.
    fn model_enis(&self, raw: &RawFile) -> Option<Vec<Eni>> {
        let mut out = Vec::new();
        for (e, checked) in raw.network_interface.iter().zip(&self.enis.enis) {
            let attachment = match checked.attachment? {
                None => None,
                Some((inst, d)) => Some(Attachment {
                    instance: InstanceIdx(idx(inst)?),
                    device_index: d,
                    // AWS: an ENI created with its instance (device 0 here) goes with it.
                    delete_on_termination: e
                        .attachment
                        .as_ref()
                        .and_then(|a| a.delete_on_termination)
                        .unwrap_or(d == 0),
                }),
            };
            let mut security_groups = Vec::new();
            for g in checked.security_groups.as_ref()? {
                security_groups.push(SgIdx(idx(*g)?));
            }
            out.push(Eni {
                id: e.id.get_ref().clone(),
                subnet: SubnetIdx(idx(checked.subnet?)?),
                private_ip: checked.primary?,
                secondary_private_ips: checked.secondaries.clone(),
                security_groups,
                mac: checked.mac?,
                source_dest_check: e.source_dest_check.unwrap_or(true),
                description: e.description.clone(),
                connection_tracking: checked.conntrack?,
                attachment,
            });
        }
        Some(out)
    }

    /// The declared security groups, then each VPC's default group: inbound from its own
    /// members, outbound everything (AWS's).
    fn model_security_groups(&self, raw: &RawFile) -> Option<Vec<SecurityGroup>> {
        let mut out = Vec::new();
        for ((g, rules), vpc) in raw.security_group.iter().zip(&self.sg_rules).zip(&self.vpc_of.security_group) {
            let (ingress, egress) = rules.clone()?;
            out.push(SecurityGroup {
                id: g.id.get_ref().clone(),
                name: g.name.as_ref().unwrap_or(&g.id).get_ref().clone(),
                description: g.description.clone(),
                vpc: VpcIdx(idx((*vpc)?)?),
                ingress,
                egress,
            });
        }
        for (i, v) in raw.vpc.iter().enumerate() {
            let own = SgIdx(idx(raw.security_group.len() + i)?);
            out.push(SecurityGroup {
                id: format!("{}/default", v.id.get_ref()),
                name: DEFAULT_GROUP_NAME.to_string(),
                description: None,
                vpc: VpcIdx(idx(i)?),
                ingress: vec![SgRule { protocol: Protocol::All, ports: PortMatch::Any, peer: SgPeer::Group(own) }],
                egress: vec![allow_all_rule()],
            });
        }
        Some(out)
    }

    /// The declared network ACLs, then each VPC's default ACL: rule 100 allows everything both
    /// ways (AWS's).
    fn model_network_acls(&self, raw: &RawFile) -> Option<Vec<NetworkAcl>> {
        let mut out = Vec::new();
        for ((a, rules), vpc) in raw.network_acl.iter().zip(&self.acl_rules).zip(&self.vpc_of.network_acl) {
            let (ingress, egress) = rules.clone()?;
            out.push(NetworkAcl { id: a.id.get_ref().clone(), vpc: VpcIdx(idx((*vpc)?)?), ingress, egress });
        }
        for (i, v) in raw.vpc.iter().enumerate() {
            let all = AclRule {
                number: 100,
                protocol: Protocol::All,
                ports: PortMatch::Any,
                cidr: Cidr::new(Ipv4Addr::UNSPECIFIED, 0),
                action: AclAction::Allow,
            };
            out.push(NetworkAcl {
                id: format!("{}/default-acl", v.id.get_ref()),
                vpc: VpcIdx(idx(i)?),
                ingress: vec![all.clone()],
                egress: vec![all],
            });
        }
        Some(out)
    }

    /// The declared route tables, then the implicit main table of each VPC that names none.
    fn model_route_tables(&self, raw: &RawFile) -> Option<Vec<RouteTable>> {
        let mut out = Vec::new();
        for ((t, routes), vpc) in raw.route_table.iter().zip(&self.rtb_routes).zip(&self.vpc_of.route_table) {
            out.push(RouteTable { id: t.id.get_ref().clone(), vpc: VpcIdx(idx((*vpc)?)?), routes: routes.clone()? });
        }
        for (i, (v, checked)) in raw.vpc.iter().zip(&self.vpcs).enumerate() {
            if checked.implicit_main {
                out.push(RouteTable {
                    id: format!("{}/main", v.id.get_ref()),
                    vpc: VpcIdx(idx(i)?),
                    routes: vec![Route { destination: checked.cidr?, target: RouteTarget::Local }],
                });
            }
        }
        Some(out)
    }

    /// The internet gateways.
    fn model_internet_gateways(&self, raw: &RawFile) -> Option<Vec<InternetGateway>> {
        let mut out = Vec::new();
        for (g, vpc) in raw.internet_gateway.iter().zip(&self.igw_vpc) {
            let vpc = match *vpc {
                CheckedIgw::In(v) => Some(VpcIdx(idx(v)?)),
                CheckedIgw::Detached => None,
                CheckedIgw::Failed => return None,
            };
            out.push(InternetGateway { id: g.id.get_ref().clone(), vpc });
        }
        Some(out)
    }

    /// The NAT gateways, with the address each was given or found.
    fn model_nat_gateways(&self, raw: &RawFile) -> Option<Vec<NatGateway>> {
        let mut out = Vec::new();
        for (n, checked) in raw.nat_gateway.iter().zip(&self.nats) {
            let elastic_ip = match checked.elastic_ip? {
                None => None,
                Some(e) => Some(EipIdx(idx(e)?)),
            };
            out.push(NatGateway {
                id: n.id.get_ref().clone(),
                subnet: SubnetIdx(idx(checked.subnet?)?),
                private_ip: checked.private_ip?,
                elastic_ip,
                ports: checked.ports?,
                preserve_ports: checked.preserve_ports?,
            });
        }
        Some(out)
    }

    /// The Elastic IPs and their associations.
    fn model_elastic_ips(&self, raw: &RawFile) -> Option<Vec<ElasticIp>> {
        let mut out = Vec::new();
        for (e, checked) in raw.elastic_ip.iter().zip(&self.eips) {
            let association = match checked.association? {
                None => None,
                Some((eni, ip)) => Some((EniIdx(idx(eni)?), ip)),
            };
            out.push(ElasticIp { id: e.id.get_ref().clone(), public_ip: checked.public_ip?, association });
        }
        Some(out)
    }

    /// The peering connections.
    fn model_peerings(&self, raw: &RawFile) -> Option<Vec<VpcPeering>> {
        let mut out = Vec::new();
        for ((p, pair), status) in raw.vpc_peering.iter().zip(&self.peerings.pairs).zip(&self.peerings.statuses) {
            let (a, b) = (*pair)?;
            out.push(VpcPeering {
                id: p.id.get_ref().clone(),
                requester_vpc: VpcIdx(idx(a)?),
                accepter_vpc: VpcIdx(idx(b)?),
                status: (*status)?,
            });
        }
        Some(out)
    }

    /// The hosts of the emulated internet.
    fn model_internet_hosts(&self, raw: &RawFile) -> Option<Vec<InternetHost>> {
        let hosts = raw.internet.as_ref().map_or(&[][..], |i| &i.hosts[..]);
        let mut out = Vec::new();
        for (h, ip) in hosts.iter().zip(&self.hosts) {
            let service = h.service.as_ref().map(|s| s.get_ref().clone());
            let name = h.name.as_ref().map(|n| n.get_ref().clone());
            out.push(InternetHost { id: h.id.get_ref().clone(), ip: (*ip)?, service, name });
        }
        Some(out)
    }
}

/// An instance, running unless the file says stopped.
fn model_instance(inst: &RawInstance) -> Instance {
    Instance {
        id: inst.id.get_ref().clone(),
        instance_type: inst.instance_type.as_ref().map(|t| t.get_ref().trim().to_string()),
        state: match inst.state.as_ref().map(|s| s.get_ref().as_str()) {
            Some("stopped") => InstanceState::Stopped,
            _ => InstanceState::Running,
        },
        metadata: inst.metadata_options.as_ref().map_or_else(MetadataOptions::default, |m| {
            let d = MetadataOptions::default();
            MetadataOptions {
                tokens_required: m.http_tokens.as_ref().map_or(d.tokens_required, |t| t.get_ref() == "required"),
                hop_limit: m.http_put_response_hop_limit.as_ref().map_or(d.hop_limit, |h| *h.get_ref() as u8),
                endpoint_enabled: m.http_endpoint.as_ref().map_or(d.endpoint_enabled, |e| e.get_ref() != "disabled"),
            }
        }),
    }
}
