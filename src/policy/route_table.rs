//! Route tables compiled for longest-prefix match.
//!
//! Contract. [`CompiledRoutes::new`] turns one model [`RouteTable`] into an immutable lookup
//! structure; [`CompiledRoutes::lookup`] answers which route a destination address takes, as AWS
//! does: the most specific route wins. Lookup cost does not grow with the number of routes: one
//! hash map per prefix length present (at most 33), probed from the longest length down, so a
//! lookup is at most 33 hash probes whether the table holds 2 routes or 1000.
//!
//! A gateway endpoint's route (destination: its service's prefix list) is compiled as one entry
//! per CIDR of the list, so it takes part in the same longest-prefix match; where a static route
//! has the very same destination, the static route wins, as AWS's route priority says
//! (<https://docs.aws.amazon.com/vpc/latest/userguide/route-tables-priority.html>: longest
//! prefix first, then static routes, then prefix-list routes). A table without endpoint routes
//! compiles exactly as before.
//!
//! Invariants. Each prefix length's map is keyed by the network address (host bits clear, as
//! [`Cidr`] guarantees). Validation rejects duplicate destinations; should a table built by hand
//! hold one anyway, the first route in table order (the local route comes first) is kept.

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::model::{Cidr, EndpointKind, Model, RouteTable, RouteTarget, RtbIdx, VpceIdx};

/// One route table ready for lookups; built once per model [`RouteTable`].
#[derive(Clone, Debug)]
pub struct CompiledRoutes {
    /// Prefix lengths present, longest first, each with its routes keyed by network address.
    levels: Vec<(u8, HashMap<u32, RouteTarget>)>,
}

impl CompiledRoutes {
    /// Compiles `table`'s routes.
    pub fn new(table: &RouteTable) -> CompiledRoutes {
        CompiledRoutes::with_prefix_lists(table, &[])
    }

    /// Compiles `table`'s routes, then `extra` (each CIDR of a prefix-list route, with its
    /// target), which a static route of the same destination overrides.
    pub fn with_prefix_lists(table: &RouteTable, extra: &[(Cidr, RouteTarget)]) -> CompiledRoutes {
        let mut by_len: [Option<HashMap<u32, RouteTarget>>; 33] = std::array::from_fn(|_| None);
        let statics = table.routes.iter().map(|r| (r.destination, r.target));
        for (destination, target) in statics.chain(extra.iter().copied()) {
            // `Cidr` never holds a prefix above 32; `min` keeps a hand-built one from panicking.
            let len = usize::from(destination.prefix.min(32));
            let key = u32::from(destination.addr) & destination.mask();
            by_len[len].get_or_insert_with(HashMap::new).entry(key).or_insert(target);
        }
        let levels = by_len.into_iter().enumerate().rev().filter_map(|(len, m)| m.map(|m| (len as u8, m))).collect();
        CompiledRoutes { levels }
    }

    /// Longest-prefix match: the matching route's destination and target, `None` when no route
    /// covers `dst` (the packet is dropped: no route).
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<(Cidr, RouteTarget)> {
        let d = u32::from(dst);
        self.levels.iter().find_map(|(len, map)| {
            let c = Cidr::new(Ipv4Addr::from(d), *len);
            map.get(&u32::from(c.addr)).map(|&t| (c, t))
        })
    }

    /// Number of routes held.
    pub fn len(&self) -> usize {
        self.levels.iter().map(|(_, m)| m.len()).sum()
    }

    /// No routes held.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}

/// Compiles every route table of `model`, with the prefix-list routes of the gateway endpoints
/// that name it; the result is indexed like `model.route_tables`.
pub fn compile_all(model: &Model) -> Vec<CompiledRoutes> {
    let mut extra: Vec<Vec<(Cidr, RouteTarget)>> = vec![Vec::new(); model.route_tables.len()];
    for (i, e) in model.vpc_endpoints.iter().enumerate() {
        let EndpointKind::Gateway { route_tables } = &e.kind else { continue };
        let Some(list) = model.prefix_list(&e.service) else { continue };
        let target = RouteTarget::GatewayEndpoint(VpceIdx(i as u32));
        for t in route_tables {
            if let Some(x) = extra.get_mut(t.index()) {
                x.extend(list.cidrs.iter().map(|&c| (c, target)));
            }
        }
    }
    model.route_tables.iter().zip(&extra).map(|(t, x)| CompiledRoutes::with_prefix_lists(t, x)).collect()
}

/// How `trace` names a route target: `local`, `blackhole`, or the target's id.
pub fn target_name(model: &Model, target: RouteTarget) -> String {
    fn id<T>(v: &[T], i: usize, f: impl Fn(&T) -> &str) -> String {
        v.get(i).map_or_else(|| format!("<unknown #{i}>"), |x| f(x).to_string())
    }
    match target {
        RouteTarget::Local => "local".to_string(),
        RouteTarget::Blackhole => "blackhole".to_string(),
        RouteTarget::InternetGateway(i) => id(&model.internet_gateways, i.index(), |x| &x.id),
        RouteTarget::NatGateway(i) => id(&model.nat_gateways, i.index(), |x| &x.id),
        RouteTarget::Eni(i) => id(&model.enis, i.index(), |x| &x.id),
        RouteTarget::Peering(i) => id(&model.peerings, i.index(), |x| &x.id),
        RouteTarget::GatewayEndpoint(i) => id(&model.vpc_endpoints, i.index(), |x| &x.id),
    }
}

/// Why a route's target cannot take traffic, if it cannot: one rule for `status` (which shows
/// such a route as `blackhole`, as AWS does) and for the pipeline (which drops its packets as
/// `blackhole`). A route given as `blackhole` is not asked about.
pub fn unusable(model: &Model, target: RouteTarget) -> Option<String> {
    match target {
        RouteTarget::Eni(e) => {
            let eni = model.enis.get(e.index())?;
            match eni.attachment {
                None => Some(format!("{} is not attached", eni.id)),
                Some(a) => {
                    let inst = model.instances.get(a.instance.index())?;
                    (inst.state != crate::model::InstanceState::Running)
                        .then(|| format!("{}'s instance {} is {}", eni.id, inst.id, inst.state.name()))
                }
            }
        }
        RouteTarget::InternetGateway(_) if !model.has_internet() => Some("the lab has no internet side".to_string()),
        RouteTarget::InternetGateway(g) => {
            let igw = model.internet_gateways.get(g.index())?;
            igw.vpc.is_none().then(|| format!("{} is detached", igw.id))
        }
        RouteTarget::Peering(p) => {
            let pcx = model.peerings.get(p.index())?;
            (pcx.status != crate::model::PeeringStatus::Active).then(|| format!("{} is {}", pcx.id, pcx.status.name()))
        }
        _ => None,
    }
}

/// One line for `trace`: `rtb-private: 0.0.0.0/0 -> nat-main` for a hit, `rtb-x: no route to
/// 192.0.2.1` for a miss. `dst` is the address looked up (only printed on a miss).
/// Written only when shown, like the other stages' words.
pub fn describe(
    model: &Model,
    rtb: RtbIdx,
    dst: Ipv4Addr,
    hit: Option<(Cidr, RouteTarget)>,
) -> impl std::fmt::Display + '_ {
    std::fmt::from_fn(move |f| {
        let table = model.route_tables.get(rtb.index()).map_or("<unknown route table>", |t| t.id.as_str());
        match hit {
            Some((cidr, target @ RouteTarget::GatewayEndpoint(e))) => {
                // AWS shows the route's destination as the prefix list: name it, and the entry hit.
                let service = model.vpc_endpoints.get(e.index()).map_or("", |x| x.service.as_str());
                let list = crate::model::PrefixList::id_of(model.region(), service);
                write!(f, "{table}: {list} ({cidr}) -> {}", target_name(model, target))
            }
            Some((cidr, target)) => write!(f, "{table}: {cidr} -> {}", target_name(model, target)),
            None => write!(f, "{table}: no route to {dst}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IgwIdx, NatIdx, Route, VpcIdx};

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn table(routes: &[(&str, RouteTarget)]) -> RouteTable {
        RouteTable {
            id: "rtb-test".into(),
            vpc: VpcIdx(0),
            routes: routes.iter().map(|&(d, target)| Route { destination: c(d), target }).collect(),
        }
    }

    #[test]
    fn longest_prefix_wins_with_overlaps() {
        let t = CompiledRoutes::new(&table(&[
            ("10.0.0.0/16", RouteTarget::Local),
            ("0.0.0.0/0", RouteTarget::InternetGateway(IgwIdx(0))),
            ("10.0.2.0/24", RouteTarget::NatGateway(NatIdx(0))),
            ("10.0.2.7/32", RouteTarget::Blackhole),
            ("192.0.2.0/24", RouteTarget::Blackhole),
        ]));
        assert_eq!(t.len(), 5);
        assert_eq!(t.lookup(ip("10.0.1.5")), Some((c("10.0.0.0/16"), RouteTarget::Local)));
        assert_eq!(t.lookup(ip("10.0.2.5")), Some((c("10.0.2.0/24"), RouteTarget::NatGateway(NatIdx(0)))));
        assert_eq!(t.lookup(ip("10.0.2.7")), Some((c("10.0.2.7/32"), RouteTarget::Blackhole)));
        assert_eq!(t.lookup(ip("192.0.2.9")), Some((c("192.0.2.0/24"), RouteTarget::Blackhole)));
        assert_eq!(t.lookup(ip("8.8.8.8")), Some((c("0.0.0.0/0"), RouteTarget::InternetGateway(IgwIdx(0)))));
        assert_eq!(t.lookup(ip("255.255.255.255")).unwrap().0, c("0.0.0.0/0"));
    }

    #[test]
    fn no_route_without_default() {
        let t = CompiledRoutes::new(&table(&[("10.0.0.0/16", RouteTarget::Local)]));
        assert_eq!(t.lookup(ip("10.0.255.255")), Some((c("10.0.0.0/16"), RouteTarget::Local)));
        assert_eq!(t.lookup(ip("10.1.0.0")), None);
        assert_eq!(t.lookup(ip("0.0.0.0")), None);
        let empty = CompiledRoutes::new(&table(&[]));
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(ip("10.0.0.1")), None);
    }

    #[test]
    fn duplicate_keeps_the_first() {
        let t = CompiledRoutes::new(&table(&[
            ("10.0.0.0/16", RouteTarget::Local),
            ("10.0.0.0/16", RouteTarget::Blackhole),
        ]));
        assert_eq!(t.lookup(ip("10.0.0.9")), Some((c("10.0.0.0/16"), RouteTarget::Local)));
    }

    #[test]
    fn large_table_answers_right() {
        // 1000 routes: a /24 per 10.x.y.0 plus a /32 inside each tenth one, and a default.
        let mut routes = vec![Route { destination: c("0.0.0.0/0"), target: RouteTarget::Blackhole }];
        for i in 0..1000u32 {
            let base = Ipv4Addr::from(0x0a00_0000 | (i << 8));
            routes.push(Route { destination: Cidr::new(base, 24), target: RouteTarget::NatGateway(NatIdx(i)) });
        }
        for i in (0..1000u32).step_by(10) {
            let host = Ipv4Addr::from(0x0a00_0000 | (i << 8) | 42);
            routes.push(Route { destination: Cidr::new(host, 32), target: RouteTarget::InternetGateway(IgwIdx(i)) });
        }
        let t = CompiledRoutes::new(&RouteTable { id: "big".into(), vpc: VpcIdx(0), routes });
        assert_eq!(t.len(), 1101);
        assert_eq!(t.levels.len(), 3);
        for i in 0..1000u32 {
            let host = Ipv4Addr::from(0x0a00_0000 | (i << 8) | 42);
            let want =
                if i % 10 == 0 { RouteTarget::InternetGateway(IgwIdx(i)) } else { RouteTarget::NatGateway(NatIdx(i)) };
            assert_eq!(t.lookup(host).unwrap().1, want, "{host}");
            let other = Ipv4Addr::from(0x0a00_0000 | (i << 8) | 43);
            assert_eq!(t.lookup(other), Some((Cidr::new(other, 24), RouteTarget::NatGateway(NatIdx(i)))));
        }
        assert_eq!(t.lookup(ip("10.3.232.1")).unwrap(), (c("0.0.0.0/0"), RouteTarget::Blackhole));
    }

    const LAB: &str = r#"
name = "rt"

[[vpc]]
id = "vpc-main"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-public"
vpc = "vpc-main"
cidr = "10.0.1.0/24"
route_table = "rtb-public"

[[subnet]]
id = "subnet-private"
vpc = "vpc-main"
cidr = "10.0.2.0/24"
route_table = "rtb-private"

[[internet_gateway]]
id = "igw-main"
vpc = "vpc-main"

[[elastic_ip]]
id = "eipalloc-nat"
public_ip = "203.0.113.10"

[[nat_gateway]]
id = "nat-main"
subnet = "subnet-public"
elastic_ip = "eipalloc-nat"

[[route_table]]
id = "rtb-public"
vpc = "vpc-main"
routes = [{ destination = "0.0.0.0/0", target = "igw-main" }]

[[route_table]]
id = "rtb-private"
vpc = "vpc-main"
routes = [
  { destination = "0.0.0.0/0", target = "nat-main" },
  { destination = "192.0.2.0/24", target = "blackhole" },
]
"#;

    #[test]
    fn compile_all_and_describe() {
        let m = crate::topology::parse(LAB, "rt.toml").unwrap();
        let all = compile_all(&m);
        assert_eq!(all.len(), m.route_tables.len());
        let private = RtbIdx(m.route_tables.iter().position(|t| t.id == "rtb-private").unwrap() as u32);
        let public = RtbIdx(m.route_tables.iter().position(|t| t.id == "rtb-public").unwrap() as u32);
        let rt = &all[private.index()];
        let d = ip("198.51.100.7");
        assert_eq!(describe(&m, private, d, rt.lookup(d)).to_string(), "rtb-private: 0.0.0.0/0 -> nat-main");
        let d = ip("10.0.1.10");
        assert_eq!(describe(&m, private, d, rt.lookup(d)).to_string(), "rtb-private: 10.0.0.0/16 -> local");
        let d = ip("192.0.2.1");
        assert_eq!(describe(&m, private, d, rt.lookup(d)).to_string(), "rtb-private: 192.0.2.0/24 -> blackhole");
        let d = ip("8.8.8.8");
        assert_eq!(
            describe(&m, public, d, all[public.index()].lookup(d)).to_string(),
            "rtb-public: 0.0.0.0/0 -> igw-main"
        );
        // The VPC's implicit main table holds only the local route.
        let main = m.vpcs[0].main_route_table;
        let d = ip("192.0.2.1");
        assert_eq!(all[main.index()].lookup(d), None);
        assert_eq!(
            describe(&m, main, d, None).to_string(),
            format!("{}: no route to 192.0.2.1", m.route_tables[main.index()].id)
        );
    }

    #[test]
    fn one_rule_says_which_targets_cannot_take_traffic() {
        let text = "name = \"u\"\n[[vpc]]\nid = \"v\"\ncidr = \"10.0.0.0/16\"\n[[subnet]]\nid = \"s\"\nvpc = \"v\"\ncidr = \"10.0.1.0/24\"\n[[internet_gateway]]\nid = \"igw\"\nvpc = \"v\"\n[[instance]]\nid = \"i\"\nstate = \"stopped\"\n[[network_interface]]\nid = \"eni-i\"\nsubnet = \"s\"\nprivate_ip = \"10.0.1.10\"\nattachment = { instance = \"i\", device_index = 0 }\n[[network_interface]]\nid = \"eni-loose\"\nsubnet = \"s\"\nprivate_ip = \"10.0.1.11\"\n";
        let m = crate::topology::parse(text, "u.toml").unwrap();
        let eni = |id: &str| RouteTarget::Eni(m.eni_by_id(id).unwrap());
        assert_eq!(unusable(&m, eni("eni-loose")).as_deref(), Some("eni-loose is not attached"));
        assert_eq!(unusable(&m, eni("eni-i")).as_deref(), Some("eni-i's instance i is stopped"));
        assert_eq!(
            unusable(&m, RouteTarget::InternetGateway(IgwIdx(0))).as_deref(),
            Some("the lab has no internet side")
        );
        assert_eq!(unusable(&m, RouteTarget::Local), None);
    }

    #[test]
    fn a_detached_gateway_and_a_pending_peering_are_blackholes() {
        let text = "name = \"u\"\n[[vpc]]\nid = \"v\"\ncidr = \"10.0.0.0/16\"\n[[vpc]]\nid = \"w\"\ncidr = \"10.1.0.0/16\"\n[[internet_gateway]]\nid = \"igw-on\"\nvpc = \"v\"\n[[internet_gateway]]\nid = \"igw-off\"\n[[vpc_peering]]\nid = \"pcx\"\nrequester_vpc = \"v\"\naccepter_vpc = \"w\"\nstatus = \"pending-acceptance\"\n[internet]\nhosts = [ { id = \"h\", ip = \"198.51.100.7\" } ]\n";
        let mut m = crate::topology::parse(text, "u.toml").unwrap();
        assert_eq!(unusable(&m, RouteTarget::InternetGateway(IgwIdx(0))), None);
        assert_eq!(unusable(&m, RouteTarget::InternetGateway(IgwIdx(1))).as_deref(), Some("igw-off is detached"));
        let pcx = RouteTarget::Peering(crate::model::PcxIdx(0));
        assert_eq!(unusable(&m, pcx).as_deref(), Some("pcx is pending-acceptance"));
        m.peerings[0].status = crate::model::PeeringStatus::Active;
        assert_eq!(unusable(&m, pcx), None);
    }
}
