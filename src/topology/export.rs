//! The inverse of [`super::parse`]: a checked model written back as a topology file, for
//! `vpclab export` and for the change engine (an edited model is exported and parsed again, so
//! the same validation judges it). The round trip is exact: parsing the output yields the same
//! model, vectors in the same order. What is implicit (the VPCs' default group, default ACL and
//! implicit main table, the local routes) and what equals AWS's default is left out, so the
//! output reads like a hand-written file. Written with `toml_edit`, rules as inline tables one per
//! line, as in `netns-setup/default.toml`.

use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use crate::model::{
    AclAction, AclRule, ConntrackConfig, Eni, Mac, Model, NatGateway, PortMatch, PortRange, Protocol, RouteTarget,
    SgPeer, SgRule, VpcIdx,
};
use crate::policy::route_table::target_name;

/// The model as a topology file that `parse` accepts and that yields the same model.
pub fn export(m: &Model) -> String {
    document(m).to_string()
}

/// The model as a topology document, for [`export`] and for edits ([`super::edit`]).
pub(crate) fn document(m: &Model) -> DocumentMut {
    let mut doc = DocumentMut::new();
    doc["name"] = value(&m.name);
    if let Some(r) = &m.region {
        doc["region"] = value(r);
    }
    if m.instance_network == crate::model::InstanceNetwork::Dhcp {
        doc["instance_network"] = value("dhcp");
    }
    let mut sections: Vec<(&str, ArrayOfTables)> = vec![
        ("dhcp_options", m.dhcp_options.iter().map(dhcp_options).collect()),
        ("vpc", m.vpcs.iter().enumerate().map(|(i, v)| vpc(m, VpcIdx(i as u32), v)).collect()),
        ("subnet", m.subnets.iter().map(|s| subnet(m, s)).collect()),
        ("internet_gateway", m.internet_gateways.iter().map(|g| igw(m, g)).collect()),
        ("elastic_ip", m.elastic_ips.iter().map(|e| eip(m, e)).collect()),
        ("nat_gateway", m.nat_gateways.iter().map(|n| nat(m, n)).collect()),
        ("vpc_peering", m.peerings.iter().map(|p| peering(m, p)).collect()),
        ("route_table", m.route_tables.iter().filter(|t| !is_implicit(&t.id)).map(|t| route_table(m, t)).collect()),
        ("network_acl", m.network_acls.iter().filter(|a| !is_implicit(&a.id)).map(|a| acl(m, a)).collect()),
        ("security_group", m.security_groups.iter().filter(|g| !is_implicit(&g.id)).map(|g| group(m, g)).collect()),
        ("instance", m.instances.iter().map(instance).collect()),
        ("network_interface", m.enis.iter().map(|e| eni(m, e)).collect()),
        ("traffic_mirror_target", m.traffic_mirror_targets.iter().map(|t| mirror_target(m, t)).collect()),
        ("traffic_mirror_filter", m.traffic_mirror_filters.iter().map(mirror_filter).collect()),
        ("traffic_mirror_session", m.traffic_mirror_sessions.iter().map(|s| mirror_session(m, s)).collect()),
        ("flow_log", m.flow_logs.iter().map(|f| flow_log(m, f)).collect()),
        ("vpc_endpoint", m.vpc_endpoints.iter().map(|e| vpc_endpoint(m, e)).collect()),
    ];
    for (name, tables) in sections.drain(..) {
        if !tables.is_empty() {
            doc[name] = Item::ArrayOfTables(tables);
        }
    }
    if m.has_emulated_internet() || m.uplink.is_some() {
        let mut t = Table::new();
        if m.has_emulated_internet() {
            let hosts = m.internet_hosts.iter().map(|h| {
                let mut fields = vec![("id", h.id.as_str().into()), ("ip", ip(h.ip))];
                if let Some(s) = &h.service {
                    fields.push(("service", s.as_str().into()));
                }
                if let Some(name) = &h.name {
                    fields.push(("name", name.as_str().into()));
                }
                inline(&fields)
            });
            t["hosts"] = value(lines(hosts));
        }
        if let Some(u) = &m.uplink {
            t["uplink"] = value(inline(&[("interface", u.interface.as_str().into()), ("gateway", ip(u.gateway))]));
        }
        doc["internet"] = Item::Table(t);
    }
    if m.api != crate::model::ApiSettings::default() {
        let mut t = Table::new();
        if let Some(l) = m.api.listen {
            t["listen"] = value(l.to_string());
        }
        if let Some((key, secret)) = &m.api.credentials {
            t["access_key_id"] = value(key);
            t["secret_access_key"] = value(secret);
        }
        doc["api"] = Item::Table(t);
    }
    doc
}

fn flow_log(m: &Model, f: &crate::model::FlowLog) -> Table {
    let mut t = Table::new();
    t["id"] = value(&f.id);
    t["resource"] = value(m.flow_log_resource_id(f.resource));
    t["traffic_type"] = value(f.traffic_type.name());
    t["destination"] = value(&f.destination);
    if let Some(fmt) = &f.log_format {
        t["log_format"] = value(fmt);
    }
    if f.max_aggregation_interval != crate::model::FlowLog::DEFAULT_INTERVAL {
        t["max_aggregation_interval"] = value(i64::from(f.max_aggregation_interval));
    }
    if let Some(a) = &f.account_id {
        t["account_id"] = value(a);
    }
    t
}

/// Objects vpclab creates itself: `<vpc>/default`, `<vpc>/default-acl`, `<vpc>/main`. File ids
/// cannot hold `/`.
/// A VPC endpoint; an interface endpoint's addresses are written as resolved, its groups only
/// when they are not the VPC's default group alone, `private_dns_enabled` only when off.
fn vpc_endpoint(m: &Model, e: &crate::model::VpcEndpoint) -> Table {
    use crate::model::EndpointKind;
    let ids = |ids: Vec<&str>| value(ids.into_iter().map(Value::from).collect::<Array>());
    let mut t = Table::new();
    t["id"] = value(&e.id);
    t["vpc"] = value(&m.vpcs[e.vpc.index()].id);
    match &e.kind {
        EndpointKind::Gateway { route_tables } => {
            t["type"] = value("Gateway");
            t["service"] = value(&e.service);
            t["route_tables"] = ids(route_tables.iter().map(|r| m.route_tables[r.index()].id.as_str()).collect());
        }
        EndpointKind::Interface { interfaces, security_groups, private_dns_enabled } => {
            t["type"] = value("Interface");
            t["service"] = value(&e.service);
            t["subnets"] = ids(interfaces.iter().map(|i| m.subnets[i.subnet.index()].id.as_str()).collect());
            t["private_ips"] = value(interfaces.iter().map(|i| ip(i.private_ip)).collect::<Array>());
            if security_groups[..] != [m.vpcs[e.vpc.index()].default_security_group] {
                t["security_groups"] =
                    ids(security_groups.iter().map(|g| m.security_groups[g.index()].id.as_str()).collect());
            }
            if !private_dns_enabled {
                t["private_dns_enabled"] = value(false);
            }
        }
    }
    t
}

fn is_implicit(id: &str) -> bool {
    id.contains('/')
}

fn ip(a: std::net::Ipv4Addr) -> Value {
    a.to_string().into()
}

fn inline(fields: &[(&str, Value)]) -> InlineTable {
    let mut t = InlineTable::new();
    for (k, v) in fields {
        t.insert(*k, v.clone());
    }
    t
}

/// An array of inline tables, one per line.
fn lines(items: impl Iterator<Item = InlineTable>) -> Array {
    let mut a = Array::new();
    for t in items {
        let mut v = Value::InlineTable(t);
        v.decor_mut().set_prefix("\n  ");
        a.push_formatted(v);
    }
    if !a.is_empty() {
        a.set_trailing_comma(true);
        a.set_trailing("\n");
    }
    a
}

fn vpc(m: &Model, idx: VpcIdx, v: &crate::model::Vpc) -> Table {
    let mut t = Table::new();
    t["id"] = value(&v.id);
    t["cidr"] = value(v.cidr.to_string());
    let main = &m.route_tables[v.main_route_table.index()].id;
    if !is_implicit(main) {
        t["main_route_table"] = value(main);
    }
    if let Some(set) = m.dhcp_options.iter().find(|d| d.vpcs.contains(&idx)) {
        t["dhcp_options"] = value(&set.id);
    }
    // AWS's defaults are left out: enable_dns_support true, enable_dns_hostnames false.
    if !v.enable_dns_support {
        t["enable_dns_support"] = value(false);
    }
    if v.enable_dns_hostnames {
        t["enable_dns_hostnames"] = value(true);
    }
    t
}

fn dhcp_options(d: &crate::model::DhcpOptionsSet) -> Table {
    let mut t = Table::new();
    t["id"] = value(&d.id);
    if let Some(n) = &d.domain_name {
        t["domain_name"] = value(n);
    }
    if !d.domain_name_servers.is_empty() {
        let names = d.domain_name_servers.iter().map(|s| match s {
            crate::model::NameServer::AmazonProvidedDns => Value::from("AmazonProvidedDNS"),
            crate::model::NameServer::Address(a) => ip(*a),
        });
        t["domain_name_servers"] = value(names.collect::<Array>());
    }
    if !d.ntp_servers.is_empty() {
        t["ntp_servers"] = value(d.ntp_servers.iter().map(|a| ip(*a)).collect::<Array>());
    }
    t
}

fn subnet(m: &Model, s: &crate::model::Subnet) -> Table {
    let v = &m.vpcs[s.vpc.index()];
    let mut t = Table::new();
    t["id"] = value(&s.id);
    t["vpc"] = value(&v.id);
    t["cidr"] = value(s.cidr.to_string());
    if let Some(az) = &s.availability_zone {
        t["availability_zone"] = value(az);
    }
    if s.route_table != v.main_route_table {
        t["route_table"] = value(&m.route_tables[s.route_table.index()].id);
    }
    if s.network_acl != v.default_network_acl {
        t["network_acl"] = value(&m.network_acls[s.network_acl.index()].id);
    }
    t
}

fn igw(m: &Model, g: &crate::model::InternetGateway) -> Table {
    let mut t = Table::new();
    t["id"] = value(&g.id);
    if let Some(v) = g.vpc {
        t["vpc"] = value(&m.vpcs[v.index()].id);
    }
    t
}

fn eip(m: &Model, e: &crate::model::ElasticIp) -> Table {
    let mut t = Table::new();
    t["id"] = value(&e.id);
    t["public_ip"] = value(e.public_ip.to_string());
    if let Some((eni, private)) = e.association {
        let eni = &m.enis[eni.index()];
        t["network_interface"] = value(&eni.id);
        if private != eni.private_ip {
            t["private_ip"] = value(private.to_string());
        }
    }
    t
}

fn nat(m: &Model, n: &NatGateway) -> Table {
    let mut t = Table::new();
    t["id"] = value(&n.id);
    t["subnet"] = value(&m.subnets[n.subnet.index()].id);
    t["private_ip"] = value(n.private_ip.to_string());
    if let Some(e) = n.elastic_ip {
        t["elastic_ip"] = value(&m.elastic_ips[e.index()].id);
    }
    if n.ports != NatGateway::AWS_PORTS {
        t["ports"] = value(ports(n.ports));
    }
    if n.preserve_ports {
        t["source_ports"] = value("preserve");
    }
    t
}

fn peering(m: &Model, p: &crate::model::VpcPeering) -> Table {
    let mut t = Table::new();
    t["id"] = value(&p.id);
    t["requester_vpc"] = value(&m.vpcs[p.requester_vpc.index()].id);
    t["accepter_vpc"] = value(&m.vpcs[p.accepter_vpc.index()].id);
    if p.status != crate::model::PeeringStatus::Active {
        t["status"] = value(p.status.name());
    }
    t
}

fn route_table(m: &Model, r: &crate::model::RouteTable) -> Table {
    let mut t = Table::new();
    t["id"] = value(&r.id);
    t["vpc"] = value(&m.vpcs[r.vpc.index()].id);
    // The implicit local route (the VPC's CIDR) is left out; a more specific `local` route stays.
    let vpc_cidr = m.vpcs[r.vpc.index()].cidr;
    let implicit = |x: &crate::model::Route| x.target == RouteTarget::Local && x.destination == vpc_cidr;
    let routes = r.routes.iter().filter(|x| !implicit(x)).map(|x| {
        inline(&[("destination", x.destination.to_string().into()), ("target", target_name(m, x.target).into())])
    });
    let routes = lines(routes);
    if !routes.is_empty() {
        t["routes"] = value(routes);
    }
    t
}

fn ports(r: PortRange) -> String {
    if r.from == r.to {
        r.from.to_string()
    } else {
        format!("{}-{}", r.from, r.to)
    }
}

fn protocol(p: Protocol) -> Value {
    match p {
        Protocol::All => "all".into(),
        Protocol::TCP => "tcp".into(),
        Protocol::UDP => "udp".into(),
        Protocol::ICMP => "icmp".into(),
        Protocol::Number(n) => i64::from(n.0).into(),
    }
}

/// `protocol`, then `ports` or `icmp_type`/`icmp_code` as the file gives them.
fn match_fields(p: Protocol, m: PortMatch, out: &mut InlineTable) {
    out.insert("protocol", protocol(p));
    match m {
        PortMatch::Ports(r) if r != PortRange::ALL => {
            out.insert("ports", ports(r).into());
        }
        PortMatch::Icmp { icmp_type, icmp_code } => {
            if let Some(t) = icmp_type {
                out.insert("icmp_type", i64::from(t).into());
            }
            if let Some(c) = icmp_code {
                out.insert("icmp_code", i64::from(c).into());
            }
        }
        _ => {}
    }
}

fn acl_rule(r: &AclRule) -> InlineTable {
    let mut t = InlineTable::new();
    t.insert("rule", i64::from(r.number).into());
    match_fields(r.protocol, r.ports, &mut t);
    t.insert("cidr", r.cidr.to_string().into());
    t.insert("action", if r.action == AclAction::Allow { "allow" } else { "deny" }.into());
    t
}

fn acl(m: &Model, a: &crate::model::NetworkAcl) -> Table {
    let mut t = Table::new();
    t["id"] = value(&a.id);
    t["vpc"] = value(&m.vpcs[a.vpc.index()].id);
    t["ingress"] = value(lines(a.ingress.iter().map(acl_rule)));
    t["egress"] = value(lines(a.egress.iter().map(acl_rule)));
    t
}

fn sg_rule(m: &Model, r: &SgRule, ingress: bool) -> InlineTable {
    let mut t = InlineTable::new();
    match_fields(r.protocol, r.ports, &mut t);
    let peer: Value = match r.peer {
        SgPeer::Cidr(c) => c.to_string().into(),
        SgPeer::Group(g) => m.security_groups[g.index()].id.as_str().into(),
    };
    t.insert(if ingress { "source" } else { "destination" }, peer);
    t
}

/// AWS's default for a new group's outbound rules: one rule allowing everything.
fn is_allow_all_egress(rules: &[SgRule]) -> bool {
    matches!(rules, [r] if r.protocol == Protocol::All
        && r.ports == PortMatch::Any
        && r.peer == SgPeer::Cidr(crate::model::Cidr::new(std::net::Ipv4Addr::UNSPECIFIED, 0)))
}

fn group(m: &Model, g: &crate::model::SecurityGroup) -> Table {
    let mut t = Table::new();
    t["id"] = value(&g.id);
    t["vpc"] = value(&m.vpcs[g.vpc.index()].id);
    if g.name != g.id {
        t["name"] = value(&g.name);
    }
    if let Some(d) = &g.description {
        t["description"] = value(d);
    }
    t["ingress"] = value(lines(g.ingress.iter().map(|r| sg_rule(m, r, true))));
    if !is_allow_all_egress(&g.egress) {
        t["egress"] = value(lines(g.egress.iter().map(|r| sg_rule(m, r, false))));
    }
    t
}

fn instance(i: &crate::model::Instance) -> Table {
    let mut t = Table::new();
    t["id"] = value(&i.id);
    if let Some(ty) = &i.instance_type {
        t["instance_type"] = value(ty);
    }
    if i.state != crate::model::InstanceState::Running {
        t["state"] = value(i.state.name());
    }
    let m = i.metadata;
    if m != crate::model::MetadataOptions::default() {
        let tokens = if m.tokens_required { "required" } else { "optional" };
        let endpoint = if m.endpoint_enabled { "enabled" } else { "disabled" };
        t["metadata_options"] = value(inline(&[
            ("http_tokens", tokens.into()),
            ("http_put_response_hop_limit", i64::from(m.hop_limit).into()),
            ("http_endpoint", endpoint.into()),
        ]));
    }
    t
}

fn eni(m: &Model, e: &Eni) -> Table {
    let mut t = Table::new();
    t["id"] = value(&e.id);
    t["subnet"] = value(&m.subnets[e.subnet.index()].id);
    t["private_ip"] = value(e.private_ip.to_string());
    if !e.secondary_private_ips.is_empty() {
        t["secondary_private_ips"] = value(e.secondary_private_ips.iter().map(|i| i.to_string()).collect::<Array>());
    }
    let vpc = &m.vpcs[m.subnets[e.subnet.index()].vpc.index()];
    if e.security_groups != [vpc.default_security_group] {
        let ids: Array = e.security_groups.iter().map(|g| m.security_groups[g.index()].id.clone()).collect();
        t["security_groups"] = value(ids);
    }
    if e.mac != Mac::generated("eni", &e.id) {
        t["mac_address"] = value(e.mac.to_string());
    }
    if !e.source_dest_check {
        t["source_dest_check"] = value(false);
    }
    if let Some(d) = &e.description {
        t["description"] = value(d);
    }
    if e.connection_tracking != ConntrackConfig::default() {
        // Only what differs from AWS's defaults.
        let (c, d) = (e.connection_tracking, ConntrackConfig::default());
        let fields: Vec<(&str, Value)> = [
            ("tcp_established_timeout", c.tcp_established, d.tcp_established),
            ("udp_stream_timeout", c.udp_stream, d.udp_stream),
            ("udp_timeout", c.udp, d.udp),
            ("max_connections", c.max_connections, d.max_connections),
        ]
        .into_iter()
        .filter(|(_, v, default)| v != default)
        .map(|(k, v, _)| (k, i64::from(v).into()))
        .collect();
        t["connection_tracking"] = value(inline(&fields));
    }
    if let Some(a) = e.attachment {
        let mut at = inline(&[
            ("instance", m.instances[a.instance.index()].id.as_str().into()),
            ("device_index", i64::from(a.device_index).into()),
        ]);
        if a.delete_on_termination != (a.device_index == 0) {
            at.insert("delete_on_termination", a.delete_on_termination.into());
        }
        t["attachment"] = value(at);
    }
    t
}

fn mirror_target(m: &Model, t: &crate::model::TrafficMirrorTarget) -> Table {
    let mut out = Table::new();
    out["id"] = value(&t.id);
    out["network_interface"] = value(&m.enis[t.eni.index()].id);
    out
}

fn mirror_rule(r: &crate::model::MirrorRule) -> InlineTable {
    let mut t = InlineTable::new();
    t.insert("rule", i64::from(r.number).into());
    t.insert("action", if r.action == crate::model::MirrorAction::Accept { "accept" } else { "reject" }.into());
    if r.protocol != Protocol::All {
        t.insert("protocol", protocol(r.protocol));
    }
    if r.source_ports != PortRange::ALL {
        t.insert("source_ports", ports(r.source_ports).into());
    }
    if r.destination_ports != PortRange::ALL {
        t.insert("destination_ports", ports(r.destination_ports).into());
    }
    t.insert("source_cidr", r.source_cidr.to_string().into());
    t.insert("destination_cidr", r.destination_cidr.to_string().into());
    t
}

fn mirror_filter(f: &crate::model::TrafficMirrorFilter) -> Table {
    let mut t = Table::new();
    t["id"] = value(&f.id);
    if !f.ingress.is_empty() {
        t["ingress"] = value(lines(f.ingress.iter().map(mirror_rule)));
    }
    if !f.egress.is_empty() {
        t["egress"] = value(lines(f.egress.iter().map(mirror_rule)));
    }
    t
}

fn mirror_session(m: &Model, s: &crate::model::TrafficMirrorSession) -> Table {
    let mut t = Table::new();
    t["id"] = value(&s.id);
    t["source"] = value(&m.enis[s.source.index()].id);
    t["target"] = value(&m.traffic_mirror_targets[s.target.index()].id);
    t["filter"] = value(&m.traffic_mirror_filters[s.filter.index()].id);
    t["session_number"] = value(i64::from(s.session_number));
    if s.virtual_network_id != crate::model::TrafficMirrorSession::default_vni(&s.id) {
        t["virtual_network_id"] = value(i64::from(s.virtual_network_id));
    }
    if let Some(n) = s.packet_length {
        t["packet_length"] = value(i64::from(n));
    }
    t
}

/// Exports and parses again with `parse`; panics unless the model comes back unchanged.
#[cfg(test)]
pub(crate) fn assert_round_trip(m: &Model, parse: fn(&str, &str) -> Result<Model, super::TopologyError>) {
    let text = export(m);
    let back = parse(&text, "exported.toml").unwrap_or_else(|e| panic!("{e}\n--- exported:\n{text}"));
    assert_eq!(
        serde_json::to_value(m).unwrap(),
        serde_json::to_value(&back).unwrap(),
        "round trip changed the model:\n{text}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{parse, DEFAULT_TOPOLOGY};

    fn round_trip(m: &Model) {
        assert_round_trip(m, parse);
    }

    #[test]
    fn the_default_lab_round_trips_and_reads_like_a_topology_file() {
        let m = parse(DEFAULT_TOPOLOGY, "default.toml").unwrap();
        round_trip(&m);
        let text = export(&m);
        assert!(text.contains("[[network_interface]]\nid = \"eni-web\""), "{text}");
        assert!(text.contains("{ protocol = \"tcp\", ports = \"8080\", source = \"sg-web\" }"), "{text}");
        assert!(!text.contains("default-acl") && !text.contains("vpc-main/main"), "{text}");
        assert!(text.contains("mac_address = \"02:00:00:00:02:50\""), "a given MAC is kept: {text}");
    }

    #[test]
    fn edited_models_round_trip() {
        let base = parse(DEFAULT_TOPOLOGY, "default.toml").unwrap();
        let mut m = base.clone();
        let float = m.eni_by_id("eni-app-float").unwrap().index();
        let standby = m.instance_by_id("standby").unwrap();
        m.enis[float].attachment =
            Some(crate::model::Attachment { instance: standby, device_index: 1, delete_on_termination: false });
        let app = m.instance_by_id("app").unwrap().index();
        m.instances[app].state = crate::model::InstanceState::Stopped;
        let web = m.eni_by_id("eni-web").unwrap();
        m.elastic_ips[1].association = Some((web, "10.0.1.11".parse().unwrap()));
        let sg = m.security_groups.iter().position(|g| g.id == "sg-web").unwrap();
        m.security_groups[sg].egress.clear();
        let default_group = m.vpcs[0].default_security_group;
        m.enis[float].security_groups = vec![default_group, crate::model::SgIdx(sg as u32)];
        m.nat_gateways[0].ports = PortRange { from: 2000, to: 2010 };
        m.enis[0].source_dest_check = false;
        m.enis[0].connection_tracking.udp = 45;
        round_trip(&m);
        let text = export(&m);
        assert!(text.contains("state = \"stopped\""), "{text}");
        assert!(text.contains("egress = []"), "{text}");
        assert!(text.contains("\"vpc-main/default\""), "the default group is referenced by id: {text}");
    }
}
