//! `[[vpc_endpoint]]`, the `service` tag of `[internet]` hosts, and security group rules that
//! name a prefix list. A gateway endpoint names route tables of its VPC; an interface endpoint
//! names subnets of its VPC (one per availability zone, as AWS allows), takes an address in each
//! (given, else the first free one) and security groups of its VPC. Either needs an `[internet]`
//! host playing its service.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use toml::Spanned;

use super::{path, vpc_id, Addresses, CheckedSubnet, Checker, Kind, SubnetPlace, SGS_PER_ENI};
use crate::model::{
    Cidr, EndpointInterface, EndpointKind, Mac, PrefixList, RtbIdx, SgIdx, SgPeer, SubnetIdx, VpcEndpoint, VpcIdx,
    DEFAULT_REGION, GATEWAY_SERVICES,
};
use crate::topology::raw::{RawFile, RawVpcEndpoint};

/// A list of ids as written.
type IdList = Spanned<Vec<Spanned<String>>>;

/// Whether `s` can be a service's short name (`s3`, `ec2`, `execute-api`, `s3-outposts`).
fn valid_service(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The services the `[internet]` hosts play, after checking each tag's spelling.
fn host_services<'r>(c: &mut Checker<'_>, raw: &'r RawFile) -> HashSet<&'r str> {
    let mut out = HashSet::new();
    for h in raw.internet.iter().flat_map(|i| &i.hosts) {
        let Some(s) = &h.service else { continue };
        if valid_service(s.get_ref()) {
            out.insert(s.get_ref().as_str());
        } else {
            let msg = format!("`{}` is not a service name: use a-z, 0-9 and '-', like s3 or dynamodb", s.get_ref());
            c.err(s.span(), path(Kind::InternetHost, h.id.get_ref(), "service"), msg);
        }
    }
    out
}

/// Checks every VPC endpoint; `None` for one that failed a check.
pub(super) fn vpc_endpoints(
    c: &mut Checker<'_>,
    raw: &RawFile,
    subnets: &[CheckedSubnet],
    addresses: &mut Addresses,
) -> Vec<Option<VpcEndpoint>> {
    let services = host_services(c, raw);
    let mut in_table: HashMap<(usize, String), String> = HashMap::new();
    let mut out = Vec::new();
    for (k, e) in raw.vpc_endpoint.iter().enumerate() {
        let id = e.id.get_ref();
        let vpc = super::owning_vpc(c, Kind::VpcEndpoint, &e.id, k, &e.vpc);
        let service = service(c, e, &services);
        let kind = match e.kind.get_ref().as_str() {
            "Gateway" => gateway(c, raw, e, vpc, &mut in_table),
            "Interface" => interface(c, raw, e, vpc, subnets, addresses),
            other => {
                let msg = format!("`{other}` is not an endpoint type: `Gateway` or `Interface`");
                c.err(e.kind.span(), path(Kind::VpcEndpoint, id, "type"), msg);
                None
            }
        };
        out.push((|| Some(VpcEndpoint { id: id.clone(), vpc: VpcIdx(vpc? as u32), service: service?, kind: kind? }))());
    }
    interface_free_addresses(c, raw, subnets, addresses, &mut out);
    out
}

/// The endpoint's service: a name some `[internet]` host plays, and for a gateway endpoint one
/// of AWS's gateway services.
fn service(c: &mut Checker<'_>, e: &RawVpcEndpoint, services: &HashSet<&str>) -> Option<String> {
    let (s, field) = (e.service.get_ref(), path(Kind::VpcEndpoint, e.id.get_ref(), "service"));
    let problem = if e.kind.get_ref() == "Gateway" && !GATEWAY_SERVICES.contains(&s.as_str()) {
        Some(format!("a gateway endpoint serves {} only, not `{s}`", GATEWAY_SERVICES.join(" or ")))
    } else if !services.contains(s.as_str()) {
        Some(format!("no [internet] host plays `{s}`: give one `service = \"{s}\"` to stand for the service"))
    } else {
        None
    };
    match problem {
        Some(msg) => {
            c.err(e.service.span(), field, msg);
            None
        }
        None => Some(s.clone()),
    }
}

/// Refuses a field the endpoint's type does not take.
fn stray<T>(c: &mut Checker<'_>, e: &RawVpcEndpoint, value: &Option<Spanned<T>>, name: &str) -> bool {
    let Some(v) = value else { return false };
    let msg = format!("a {} endpoint takes no `{name}`", e.kind.get_ref());
    c.err(v.span(), path(Kind::VpcEndpoint, e.id.get_ref(), name), msg);
    true
}

/// The ids of `list` resolved to objects of kind `want` in the endpoint's VPC, each once.
fn ids_in_vpc(
    c: &mut Checker<'_>,
    raw: &RawFile,
    e: &RawVpcEndpoint,
    list: &IdList,
    (want, name): (Kind, &str),
    vpc: Option<usize>,
) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, r) in list.get_ref().iter().enumerate() {
        let field = path(Kind::VpcEndpoint, e.id.get_ref(), &format!("{name}[{i}]"));
        let misplaced = |theirs, home| {
            Some(format!(
                "`{}` is in VPC `{}`, not the endpoint's VPC `{}`",
                r.get_ref(),
                vpc_id(raw, theirs),
                vpc_id(raw, home)
            ))
        };
        match c.resolve_in(r, want, field.clone(), vpc, misplaced) {
            Some(x) if out.contains(&x) => {
                c.err(r.span(), field, format!("`{}` is named twice", r.get_ref()));
                ok = false;
            }
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    if list.get_ref().is_empty() {
        let msg = format!("a {} endpoint needs at least one of `{name}`", e.kind.get_ref());
        c.err(list.span(), path(Kind::VpcEndpoint, e.id.get_ref(), name), msg);
        ok = false;
    }
    ok.then_some(out)
}

/// A gateway endpoint: its route tables, none already holding an endpoint route for the same
/// service (AWS refuses two endpoints of one service in a table: their prefix lists would be one
/// destination twice).
fn gateway(
    c: &mut Checker<'_>,
    raw: &RawFile,
    e: &RawVpcEndpoint,
    vpc: Option<usize>,
    in_table: &mut HashMap<(usize, String), String>,
) -> Option<EndpointKind> {
    let id = e.id.get_ref();
    let strays = [
        stray(c, e, &e.subnets, "subnets"),
        stray(c, e, &e.private_ips, "private_ips"),
        stray(c, e, &e.security_groups, "security_groups"),
        stray(c, e, &e.private_dns_enabled, "private_dns_enabled"),
    ];
    let Some(list) = &e.route_tables else {
        let msg = "a Gateway endpoint needs `route_tables`: the tables that get its prefix-list route".to_string();
        c.err(e.kind.span(), path(Kind::VpcEndpoint, id, "route_tables"), msg);
        return None;
    };
    let tables = ids_in_vpc(c, raw, e, list, (Kind::RouteTable, "route_tables"), vpc)?;
    for (t, r) in tables.iter().zip(list.get_ref()) {
        let service = e.service.get_ref().clone();
        if let Some(other) = in_table.insert((*t, service.clone()), id.clone()) {
            let msg = format!("`{}` already routes {service} to endpoint `{other}`", r.get_ref());
            c.err(r.span(), path(Kind::VpcEndpoint, id, "route_tables"), msg);
            return None;
        }
    }
    if strays.contains(&true) {
        return None;
    }
    Some(EndpointKind::Gateway { route_tables: tables.into_iter().map(|t| RtbIdx(t as u32)).collect() })
}

/// An interface endpoint: its subnets (one per availability zone), their given addresses, and
/// its security groups. Interfaces without a given address get one in
/// [`interface_free_addresses`].
fn interface(
    c: &mut Checker<'_>,
    raw: &RawFile,
    e: &RawVpcEndpoint,
    vpc: Option<usize>,
    subnets: &[CheckedSubnet],
    addresses: &mut Addresses,
) -> Option<EndpointKind> {
    let id = e.id.get_ref();
    let stray_tables = stray(c, e, &e.route_tables, "route_tables");
    let Some(list) = &e.subnets else {
        let msg = "an Interface endpoint needs `subnets`: one network interface is made in each".to_string();
        c.err(e.kind.span(), path(Kind::VpcEndpoint, id, "subnets"), msg);
        return None;
    };
    let chosen = ids_in_vpc(c, raw, e, list, (Kind::Subnet, "subnets"), vpc)?;
    one_per_zone(c, raw, e, list, &chosen)?;
    let groups = match &e.security_groups {
        None => vec![raw.security_group.len() + vpc?],
        Some(g) if g.get_ref().len() > SGS_PER_ENI => {
            let msg = format!("an endpoint's interfaces take at most {SGS_PER_ENI} security groups");
            c.err(g.span(), path(Kind::VpcEndpoint, id, "security_groups"), msg);
            return None;
        }
        Some(g) => ids_in_vpc(c, raw, e, g, (Kind::SecurityGroup, "security_groups"), vpc)?,
    };
    let given = given_addresses(c, raw, e, &chosen, subnets, addresses)?;
    let interfaces = chosen
        .iter()
        .zip(given)
        .map(|(&s, ip)| {
            let iid = VpcEndpoint::interface_id_of(id, raw.subnet[s].id.get_ref());
            let mac = Mac::generated("vpc-endpoint", &iid);
            // An address still unspecified is handed out once every given one is taken.
            EndpointInterface {
                id: iid,
                subnet: SubnetIdx(s as u32),
                private_ip: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                mac,
            }
        })
        .collect();
    if stray_tables {
        return None;
    }
    let security_groups = groups.into_iter().map(|g| SgIdx(g as u32)).collect();
    let private_dns_enabled = e.private_dns_enabled.as_ref().is_none_or(|p| *p.get_ref());
    Some(EndpointKind::Interface { interfaces, security_groups, private_dns_enabled })
}

/// AWS makes at most one endpoint interface per availability zone.
fn one_per_zone(c: &mut Checker<'_>, raw: &RawFile, e: &RawVpcEndpoint, list: &IdList, chosen: &[usize]) -> Option<()> {
    let mut zones: HashMap<&str, &str> = HashMap::new();
    for (&s, r) in chosen.iter().zip(list.get_ref()) {
        let Some(az) = &raw.subnet[s].availability_zone else { continue };
        if let Some(other) = zones.insert(az.get_ref(), raw.subnet[s].id.get_ref()) {
            let msg =
                format!("`{other}` is in {} already: an endpoint takes one subnet per availability zone", az.get_ref());
            c.err(r.span(), path(Kind::VpcEndpoint, e.id.get_ref(), "subnets"), msg);
            return None;
        }
    }
    Some(())
}

/// The `private_ips` of an interface endpoint, one per subnet in order, each claimed in its
/// subnet; `None` in the result where none was given.
fn given_addresses(
    c: &mut Checker<'_>,
    raw: &RawFile,
    e: &RawVpcEndpoint,
    chosen: &[usize],
    subnets: &[CheckedSubnet],
    addresses: &mut Addresses,
) -> Option<Vec<Option<Ipv4Addr>>> {
    let id = e.id.get_ref();
    let Some(ips) = &e.private_ips else { return Some(vec![None; chosen.len()]) };
    if ips.get_ref().len() != chosen.len() {
        let msg = format!("give one address per subnet: {} subnets, {} addresses", chosen.len(), ips.get_ref().len());
        c.err(ips.span(), path(Kind::VpcEndpoint, id, "private_ips"), msg);
        return None;
    }
    let mut out = Vec::new();
    for (i, (&s, ip)) in chosen.iter().zip(ips.get_ref()).enumerate() {
        let at = SubnetPlace::of(raw, subnets, Some(s));
        let field = path(Kind::VpcEndpoint, id, &format!("private_ips[{i}]"));
        let owner = format!("endpoint `{id}`'s interface");
        out.push(Some(addresses.claim_private(c, raw, at, ip, field, &owner)?));
    }
    Some(out)
}

/// Gives each endpoint interface without an address its subnet's first free one (base + 4 up),
/// as AWS does, once every given address is taken.
fn interface_free_addresses(
    c: &mut Checker<'_>,
    raw: &RawFile,
    subnets: &[CheckedSubnet],
    addresses: &mut Addresses,
    endpoints: &mut [Option<VpcEndpoint>],
) {
    for (e, checked) in raw.vpc_endpoint.iter().zip(endpoints.iter_mut()) {
        let Some(VpcEndpoint { kind: EndpointKind::Interface { interfaces, .. }, vpc, .. }) = checked else { continue };
        for i in interfaces.iter_mut().filter(|i| i.private_ip.is_unspecified()) {
            let Some(sc) = subnets[i.subnet.index()].cidr else { continue };
            let first = u32::from(sc.addr).saturating_add(4);
            let free = (first..u32::from(sc.last()))
                .map(Ipv4Addr::from)
                .find(|ip| !addresses.private.contains_key(&(vpc.index(), *ip)));
            match free {
                Some(ip) => {
                    addresses.private.insert((vpc.index(), ip), format!("endpoint `{}`'s interface", e.id.get_ref()));
                    i.private_ip = ip;
                }
                None => {
                    let sid = raw.subnet[i.subnet.index()].id.get_ref();
                    let msg = format!("subnet `{sid}` ({sc}) has no free address left for this endpoint's interface");
                    c.err(e.id.span(), path(Kind::VpcEndpoint, e.id.get_ref(), "subnets"), msg);
                }
            }
        }
    }
}

/// The peers a security group rule naming prefix list `p` stands for: each CIDR of the
/// AWS-managed prefix list of a gateway service some `[internet]` host plays.
pub(super) fn prefix_list_peers(
    c: &mut Checker<'_>,
    raw: &RawFile,
    p: &Spanned<String>,
    field: String,
) -> Option<Vec<SgPeer>> {
    let region = raw.region.as_ref().map_or(DEFAULT_REGION, |r| r.get_ref().as_str());
    let hosts = raw.internet.iter().flat_map(|i| &i.hosts);
    let service = GATEWAY_SERVICES.iter().find(|s| PrefixList::id_of(region, s) == *p.get_ref());
    let cidrs: Vec<SgPeer> = hosts
        .filter(|h| service.is_some_and(|s| h.service.as_ref().is_some_and(|t| t.get_ref() == s)))
        .filter_map(|h| h.ip.get_ref().trim().parse::<Ipv4Addr>().ok())
        .map(|ip| SgPeer::Cidr(Cidr::new(ip, 32)))
        .collect();
    if cidrs.is_empty() {
        let known: Vec<String> = GATEWAY_SERVICES
            .iter()
            .filter(|s| hosts_play(raw, s))
            .map(|s| format!("{} ({})", PrefixList::id_of(region, s), PrefixList::name_of(region, s)))
            .collect();
        let known =
            if known.is_empty() { "none: no [internet] host plays s3 or dynamodb".into() } else { known.join(", ") };
        c.err(
            p.span(),
            field,
            format!("`{}` is not a prefix list of this lab; its prefix lists: {known}", p.get_ref()),
        );
        return None;
    }
    Some(cidrs)
}

/// Whether some `[internet]` host plays `service`.
fn hosts_play(raw: &RawFile, service: &str) -> bool {
    raw.internet.iter().flat_map(|i| &i.hosts).any(|h| h.service.as_ref().is_some_and(|s| s.get_ref() == service))
}
