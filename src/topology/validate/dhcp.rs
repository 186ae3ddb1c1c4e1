//! `region` and `[[dhcp_options]]`: what the fabric's DHCP server hands out in each VPC (AWS's
//! `DhcpOptions`: name servers, domain, NTP servers), and the region that names its default domain.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::Checker;
use crate::model::{DhcpOptionsSet, InstanceNetwork, NameServer, VpcIdx};
use crate::topology::raw::{RawDhcpOptions, RawFile};

/// AWS allows four name servers and four NTP servers per options set.
const MAX_SERVERS: usize = 4;
/// A domain name is at most 253 characters (RFC 1035).
const MAX_DOMAIN: usize = 253;

/// The `region` setting, checked to look like an AWS region (`us-east-1`, `eu-west-3`, ...).
pub(super) fn region(c: &mut Checker<'_>, raw: &RawFile) -> Option<String> {
    let r = raw.region.as_ref()?;
    let name = r.get_ref();
    let parts: Vec<&str> = name.split('-').collect();
    let looks_like_region = parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.chars().all(|ch| ch.is_ascii_digit()));
    if !looks_like_region {
        c.err(r.span(), "region".into(), format!("`{name}` is not an AWS region name (e.g. us-east-1, eu-west-3)"));
        return None;
    }
    Some(name.clone())
}

/// The `instance_network` setting: `static` (the default) or `dhcp`.
pub(super) fn instance_network(c: &mut Checker<'_>, raw: &RawFile) -> InstanceNetwork {
    let Some(s) = raw.instance_network.as_ref() else { return InstanceNetwork::Static };
    match s.get_ref().as_str() {
        "static" => InstanceNetwork::Static,
        "dhcp" => InstanceNetwork::Dhcp,
        other => {
            let msg = format!("`{other}` is not an instance network: `static` (vpclab sets addresses) or `dhcp`");
            c.err(s.span(), "instance_network".into(), msg);
            InstanceNetwork::Static
        }
    }
}

/// Every DHCP options set, with the VPCs whose `dhcp_options` names it; a VPC naming an unknown
/// set is a problem at its `dhcp_options`.
pub(super) fn dhcp_options(c: &mut Checker<'_>, raw: &RawFile) -> Vec<DhcpOptionsSet> {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut sets = Vec::new();
    for d in &raw.dhcp_options {
        let id = d.id.get_ref();
        if let Some(&first) = by_id.get(id.as_str()) {
            let line = c.line(raw.dhcp_options[first].id.span());
            c.err(
                d.id.span(),
                field(id, "id"),
                format!("duplicate DHCP options id `{id}`: already used on line {line}"),
            );
            continue;
        }
        by_id.insert(id, sets.len());
        sets.push(options_set(c, d));
    }
    for (i, v) in raw.vpc.iter().enumerate() {
        let Some(name) = &v.dhcp_options else { continue };
        match by_id.get(name.get_ref().as_str()) {
            Some(&s) => sets[s].vpcs.push(VpcIdx(i as u32)),
            None => {
                let msg = format!("`{}` is not the id of a [[dhcp_options]] set", name.get_ref());
                c.err(name.span(), format!("vpc \"{}\".dhcp_options", v.id.get_ref()), msg);
            }
        }
    }
    sets
}

/// A DNS name of letters, digits and hyphens in dot-separated labels (RFC 1035's limits).
pub(super) fn is_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DOMAIN
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'))
}

fn field(id: &str, rest: &str) -> String {
    format!("dhcp_options \"{id}\".{rest}")
}

fn options_set(c: &mut Checker<'_>, d: &RawDhcpOptions) -> DhcpOptionsSet {
    let id = d.id.get_ref();
    let domain_name = d.domain_name.as_ref().and_then(|n| {
        let name = n.get_ref();
        let valid = is_domain_name(name);
        if !valid {
            c.err(n.span(), field(id, "domain_name"), format!("`{name}` is not a domain name"));
        }
        valid.then(|| name.clone())
    });
    let domain_name_servers = servers(c, id, "domain_name_servers", &d.domain_name_servers, true);
    let ntp_servers = servers(c, id, "ntp_servers", &d.ntp_servers, false)
        .into_iter()
        .filter_map(|s| match s {
            NameServer::Address(a) => Some(a),
            NameServer::AmazonProvidedDns => None,
        })
        .collect();
    DhcpOptionsSet { id: id.clone(), domain_name, domain_name_servers, ntp_servers, vpcs: Vec::new() }
}

/// A list of at most four IPv4 addresses (and, for name servers, `AmazonProvidedDNS`).
fn servers(
    c: &mut Checker<'_>,
    id: &str,
    name: &str,
    given: &[toml::Spanned<String>],
    amazon_allowed: bool,
) -> Vec<NameServer> {
    if let Some(extra) = given.get(MAX_SERVERS) {
        c.err(extra.span(), field(id, name), format!("at most {MAX_SERVERS} servers, as in AWS"));
    }
    let mut out = Vec::new();
    for s in given.iter().take(MAX_SERVERS) {
        let text = s.get_ref();
        if amazon_allowed && text == "AmazonProvidedDNS" {
            out.push(NameServer::AmazonProvidedDns);
            continue;
        }
        match text.parse::<Ipv4Addr>() {
            Ok(a) => out.push(NameServer::Address(a)),
            Err(_) => {
                let expected = if amazon_allowed { "an IPv4 address or AmazonProvidedDNS" } else { "an IPv4 address" };
                c.err(s.span(), field(id, name), format!("`{text}` is not {expected}"));
            }
        }
    }
    out
}
