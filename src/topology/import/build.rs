//! AWS's objects to a [`Model`], in the order references need: VPCs, subnets, gateways and
//! peerings, groups, instances and their ENIs, addresses, NAT gateways, route tables, ACLs. A
//! reference to something not carried, or a construct vpclab lacks, becomes a line of
//! `not_carried` naming the object's id; a value that is not what AWS prints is an error naming
//! the file and field.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use super::{aws, ImportError, Input, Item, INTERNET_HOST};
use crate::model::{
    AclAction, AclIdx, AclRule, Attachment, Cidr, ConntrackConfig, EipIdx, ElasticIp, Eni, EniIdx, IgwIdx, Instance,
    InstanceIdx, InstanceState, InternetGateway, InternetHost, Mac, Model, NatGateway, NatIdx, NetworkAcl, PcxIdx,
    PortMatch, PortRange, Protocol, Route, RouteTable, RouteTarget, RtbIdx, SecurityGroup, SgIdx, SgPeer, SgRule,
    Subnet, SubnetIdx, Vpc, VpcIdx, VpcPeering,
};
use crate::packet::IpProto;
use crate::topology::instance_types;

/// The model and what it could not carry.
pub(super) struct Built {
    pub(super) model: Model,
    pub(super) not_carried: Vec<String>,
    pub(super) remarks: Vec<String>,
}

/// Builds the lab `name` from everything read.
pub(super) fn build(input: &Input, name: &str) -> Result<Built, ImportError> {
    let mut b = Builder { m: Model { name: name.to_string(), ..Model::default() }, ..Builder::default() };
    b.vpcs(input)?;
    b.subnets(input)?;
    b.internet_gateways(input);
    b.peerings(input);
    b.security_groups(input)?;
    b.instances_and_enis(input)?;
    b.elastic_ips(input)?;
    b.nat_gateways(input)?;
    b.public_ips();
    b.route_tables(input)?;
    b.network_acls(input)?;
    b.internet();
    Ok(Built { model: b.m, not_carried: b.not_carried, remarks: b.remarks })
}

/// An ENI to import, from `describe-network-interfaces` or from an instance's list.
struct Candidate<'a> {
    item: Item<&'a aws::NetworkInterface>,
    /// The instance it is attached to, and at which device index.
    instance: Option<&'a str>,
    device: Option<i64>,
}

#[derive(Default)]
struct Builder<'a> {
    m: Model,
    not_carried: Vec<String>,
    remarks: Vec<String>,
    vpc: HashMap<&'a str, VpcIdx>,
    subnet: HashMap<&'a str, SubnetIdx>,
    sg: HashMap<&'a str, SgIdx>,
    instance: HashMap<&'a str, InstanceIdx>,
    eni: HashMap<&'a str, EniIdx>,
    igw: HashMap<&'a str, IgwIdx>,
    nat: HashMap<&'a str, NatIdx>,
    eip: HashMap<&'a str, EipIdx>,
    pcx: HashMap<&'a str, PcxIdx>,
    rtb: HashMap<&'a str, RtbIdx>,
    acl: HashMap<&'a str, AclIdx>,
    /// AWS's id of a NAT gateway's own interface -> the NAT gateway (vpclab derives that ENI).
    nat_enis: HashMap<&'a str, &'a str>,
    /// Public addresses found on ENIs: (ENI, private IP, public IP, allocation id if an EIP).
    public_ips: Vec<(EniIdx, Ipv4Addr, Ipv4Addr, Option<&'a str>)>,
    /// Subnets given a route table / network ACL by an association (the rest use the VPC's).
    rtb_associated: HashSet<SubnetIdx>,
    acl_associated: HashSet<SubnetIdx>,
}

/// Records `id` -> `idx`, refusing an id given twice.
fn declare<'a, T, I>(
    map: &mut HashMap<&'a str, I>,
    id: &'a str,
    idx: I,
    item: &Item<T>,
    field: &str,
) -> Result<(), ImportError> {
    if map.insert(id, idx).is_some() {
        return Err(item.error(field, format!("`{id}` is given twice")));
    }
    Ok(())
}

fn cidr<T>(item: &Item<T>, field: &str, s: &str) -> Result<Cidr, ImportError> {
    s.trim().parse().map_err(|_| item.error(field, format!("`{s}` is not an IPv4 CIDR block")))
}

fn ip<T>(item: &Item<T>, field: &str, s: &str) -> Result<Ipv4Addr, ImportError> {
    s.trim().parse().map_err(|_| item.error(field, format!("`{s}` is not an IPv4 address")))
}

fn idx(len: usize) -> u32 {
    // The input is bounded (64 MiB a file), far below 2^32 objects of a kind.
    u32::try_from(len).expect("fewer than 2^32 objects")
}

impl<'a> Builder<'a> {
    fn skip(&mut self, line: String) {
        self.not_carried.push(line);
    }

    fn remark(&mut self, line: String) {
        self.remarks.push(line);
    }

    fn vpcs(&mut self, input: &'a Input) -> Result<(), ImportError> {
        for it in &input.vpcs {
            let v = &it.v;
            let id = v.vpc_id.as_str();
            let block = cidr(it, "CidrBlock", &v.cidr_block)?;
            for a in &v.cidr_block_association_set {
                let live = a.cidr_block_state.as_ref().is_none_or(|s| s.state == "associated");
                if live && a.cidr_block.trim() != v.cidr_block.trim() {
                    self.skip(format!(
                        "{id}: secondary CIDR block {}: a vpclab VPC has one block (subnets in it are not carried)",
                        a.cidr_block
                    ));
                }
            }
            for a in &v.ipv6_cidr_block_association_set {
                let block6 = a.ipv6_cidr_block.as_deref().unwrap_or("(pending)");
                self.skip(format!("{id}: IPv6 CIDR block {block6}: vpclab has no IPv6 yet"));
            }
            let vi = VpcIdx(idx(self.m.vpcs.len()));
            declare(&mut self.vpc, id, vi, it, "VpcId")?;
            let vpc = self.implicit_objects(id, vi, block);
            self.m.vpcs.push(vpc);
        }
        Ok(())
    }

    /// The default group, default ACL and main table that validation gives every VPC (ids with a
    /// `/`, never written). AWS's own defaults are imported as ordinary objects under their ids,
    /// with their rules as the JSON gives them; these only make the model whole.
    fn implicit_objects(&mut self, id: &str, vi: VpcIdx, block: Cidr) -> Vpc {
        let sg = SgIdx(idx(self.m.security_groups.len()));
        let anywhere = Cidr::new(Ipv4Addr::UNSPECIFIED, 0);
        self.m.security_groups.push(SecurityGroup {
            id: format!("{id}/default"),
            name: crate::topology::DEFAULT_GROUP_NAME.to_string(),
            description: None,
            vpc: vi,
            ingress: vec![SgRule { protocol: Protocol::All, ports: PortMatch::Any, peer: SgPeer::Group(sg) }],
            egress: vec![SgRule { protocol: Protocol::All, ports: PortMatch::Any, peer: SgPeer::Cidr(anywhere) }],
        });
        let acl = AclIdx(idx(self.m.network_acls.len()));
        let all = AclRule {
            number: 100,
            protocol: Protocol::All,
            ports: PortMatch::Any,
            cidr: anywhere,
            action: AclAction::Allow,
        };
        self.m.network_acls.push(NetworkAcl {
            id: format!("{id}/default-acl"),
            vpc: vi,
            ingress: vec![all.clone()],
            egress: vec![all],
        });
        let rtb = RtbIdx(idx(self.m.route_tables.len()));
        self.m.route_tables.push(RouteTable {
            id: format!("{id}/main"),
            vpc: vi,
            routes: vec![Route { destination: block, target: RouteTarget::Local }],
        });
        Vpc {
            id: id.to_string(),
            cidr: block,
            router_mac: Mac::generated("vpc", id),
            main_route_table: rtb,
            default_network_acl: acl,
            default_security_group: sg,
            // describe-vpcs does not carry the DNS attributes (describe-vpc-attribute does):
            // AWS's defaults for a VPC that is not the default VPC.
            enable_dns_support: true,
            enable_dns_hostnames: false,
        }
    }

    fn subnets(&mut self, input: &'a Input) -> Result<(), ImportError> {
        for it in &input.subnets {
            let s = &it.v;
            let id = s.subnet_id.as_str();
            // Values first: a bad one is an error whether or not its VPC is there.
            let block = cidr(it, "CidrBlock", &s.cidr_block)?;
            let Some(&vi) = self.vpc.get(s.vpc_id.as_str()) else {
                self.skip(format!("{id}: its VPC {} is not in the input", s.vpc_id));
                continue;
            };
            let vpc = &self.m.vpcs[vi.index()];
            if !vpc.cidr.contains_cidr(block) {
                let msg = format!("{id}: {block} lies outside {}'s primary block {}", vpc.id, vpc.cidr);
                self.skip(msg);
                continue;
            }
            let (main, acl) = (vpc.main_route_table, vpc.default_network_acl);
            for a in &s.ipv6_cidr_block_association_set {
                let block6 = a.ipv6_cidr_block.as_deref().unwrap_or("(pending)");
                self.skip(format!("{id}: IPv6 CIDR block {block6}: vpclab has no IPv6 yet"));
            }
            let si = SubnetIdx(idx(self.m.subnets.len()));
            declare(&mut self.subnet, id, si, it, "SubnetId")?;
            self.m.subnets.push(Subnet {
                id: id.to_string(),
                vpc: vi,
                cidr: block,
                availability_zone: s.availability_zone.clone().filter(|z| !z.is_empty()),
                route_table: main,
                network_acl: acl,
            });
        }
        Ok(())
    }

    fn internet_gateways(&mut self, input: &'a Input) {
        for it in &input.internet_gateways {
            let id = it.v.internet_gateway_id.as_str();
            let attached =
                it.v.attachments
                    .iter()
                    .find(|a| a.state.as_deref().is_none_or(|s| s == "available" || s == "attached"));
            let Some(a) = attached else {
                self.skip(format!("{id}: attached to no VPC"));
                continue;
            };
            let Some(&vi) = self.vpc.get(a.vpc_id.as_str()) else {
                self.skip(format!("{id}: attached to {}, which is not in the input", a.vpc_id));
                continue;
            };
            let gi = IgwIdx(idx(self.m.internet_gateways.len()));
            if self.igw.insert(id, gi).is_some() {
                continue; // the same gateway listed twice (two files): one is enough
            }
            self.m.internet_gateways.push(InternetGateway { id: id.to_string(), vpc: Some(vi) });
        }
    }

    fn peerings(&mut self, input: &'a Input) {
        for it in &input.peerings {
            let p = &it.v;
            let id = p.vpc_peering_connection_id.as_str();
            let code = p.status.as_ref().map_or("active", |s| s.code.as_str());
            let status = match code {
                "active" => crate::model::PeeringStatus::Active,
                // Requested, not yet accepted: carried as such (it carries no traffic until then).
                "pending-acceptance" => crate::model::PeeringStatus::PendingAcceptance,
                _ => {
                    self.skip(format!("{id}: status `{code}`: only an active or pending peering connection is kept"));
                    continue;
                }
            };
            let side = |v: &aws::PeerVpc| v.vpc_id.as_deref().and_then(|v| self.vpc.get(v).copied());
            match (side(&p.requester_vpc_info), side(&p.accepter_vpc_info)) {
                (Some(requester_vpc), Some(accepter_vpc)) => {
                    let pi = PcxIdx(idx(self.m.peerings.len()));
                    if self.pcx.insert(id, pi).is_none() {
                        self.m.peerings.push(VpcPeering { id: id.to_string(), requester_vpc, accepter_vpc, status });
                    }
                }
                (r, _) => {
                    let missing = if r.is_none() { &p.requester_vpc_info } else { &p.accepter_vpc_info };
                    self.skip(format!(
                        "{id}: its VPC {} (account {}, region {}) is not in the input",
                        missing.vpc_id.as_deref().unwrap_or("?"),
                        missing.owner_id.as_deref().unwrap_or("?"),
                        missing.region.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
    }

    /// Groups first without rules, so that a rule can name any group, then their rules.
    fn security_groups(&mut self, input: &'a Input) -> Result<(), ImportError> {
        let mut carried = Vec::new();
        for it in &input.security_groups {
            let id = it.v.group_id.as_str();
            let Some(vi) = it.v.vpc_id.as_deref().and_then(|v| self.vpc.get(v).copied()) else {
                let vpc = it.v.vpc_id.as_deref().unwrap_or("(EC2-Classic)");
                self.skip(format!("{id}: its VPC {vpc} is not in the input"));
                continue;
            };
            let gi = SgIdx(idx(self.m.security_groups.len()));
            declare(&mut self.sg, id, gi, it, "GroupId")?;
            // AWS's own default group comes over as an ordinary group: the lab's implicit one
            // holds the name `default`, so it keeps its id as its name.
            let name = match it.v.group_name.as_deref() {
                Some(n) if n != crate::topology::DEFAULT_GROUP_NAME => n.to_string(),
                _ => id.to_string(),
            };
            let description = it.v.description.clone();
            self.m.security_groups.push(SecurityGroup {
                id: id.to_string(),
                name,
                description,
                vpc: vi,
                ingress: vec![],
                egress: vec![],
            });
            carried.push((gi, it));
        }
        for (gi, it) in carried {
            let ingress = self.permissions(it, "IpPermissions", &it.v.ip_permissions, true)?;
            let egress = self.permissions(it, "IpPermissionsEgress", &it.v.ip_permissions_egress, false)?;
            let g = &mut self.m.security_groups[gi.index()];
            (g.ingress, g.egress) = (ingress, egress);
        }
        Ok(())
    }

    /// One direction's `IpPermissions`: one vpclab rule per IPv4 range or group peer.
    fn permissions(
        &mut self,
        it: &Item<aws::SecurityGroup>,
        field: &str,
        list: &[aws::Permission],
        ingress: bool,
    ) -> Result<Vec<SgRule>, ImportError> {
        let gid = &it.v.group_id;
        let (dir, side) = if ingress { ("inbound", "from") } else { ("outbound", "to") };
        let mut out = Vec::new();
        for (k, p) in list.iter().enumerate() {
            let path = format!("{field}[{k}]");
            let Some((protocol, ports)) = sg_match(it, &path, p)? else {
                self.skip(format!("{gid}: {dir} rule for {}: vpclab has no IPv6 yet", p.ip_protocol));
                continue;
            };
            let what = describe(protocol, ports);
            for (j, r) in p.ip_ranges.iter().enumerate() {
                let peer = SgPeer::Cidr(cidr(it, &format!("{path}.IpRanges[{j}].CidrIp"), &r.cidr_ip)?);
                out.push(SgRule { protocol, ports, peer });
            }
            for r in &p.ipv6_ranges {
                self.skip(format!("{gid}: {dir} rule {what} {side} {}: vpclab has no IPv6 yet", r.cidr_ipv6));
            }
            for r in &p.prefix_list_ids {
                let pl = &r.prefix_list_id;
                self.skip(format!("{gid}: {dir} rule {what} {side} prefix list {pl}: vpclab has no prefix lists"));
            }
            for pair in &p.user_id_group_pairs {
                let other = pair.group_id.as_deref().unwrap_or("?");
                match self.sg.get(other) {
                    Some(&g) => out.push(SgRule { protocol, ports, peer: SgPeer::Group(g) }),
                    None => self.skip(format!("{gid}: {dir} rule {what} {side} group {other}: not in the input")),
                }
            }
        }
        Ok(out)
    }

    fn instances_and_enis(&mut self, input: &'a Input) -> Result<(), ImportError> {
        for n in &input.nat_gateways {
            for a in &n.v.nat_gateway_addresses {
                if let Some(e) = &a.network_interface_id {
                    self.nat_enis.insert(e, &n.v.nat_gateway_id);
                }
            }
        }
        let candidates = self.eni_candidates(input);
        self.instances(input, &candidates);
        for c in &candidates {
            self.eni(c)?;
        }
        Ok(())
    }

    /// Every ENI once (`describe-instances` repeats what `describe-network-interfaces` gives),
    /// leaving out the NAT gateways' own and the kinds vpclab has no place for.
    fn eni_candidates(&mut self, input: &'a Input) -> Vec<Candidate<'a>> {
        let from_file = input.network_interfaces.iter().map(|it| {
            let att = it.v.attachment.as_ref();
            let item = Item { file: it.file.clone(), path: it.path.clone(), v: &it.v };
            Candidate {
                item,
                instance: att.and_then(|a| a.instance_id.as_deref()),
                device: att.and_then(|a| a.device_index),
            }
        });
        let from_instances = input.instances.iter().flat_map(|i| {
            i.v.network_interfaces.iter().enumerate().map(move |(k, e)| Candidate {
                item: Item { file: i.file.clone(), path: format!("{}.NetworkInterfaces[{k}]", i.path), v: e },
                instance: Some(i.v.instance_id.as_str()),
                device: e.attachment.as_ref().and_then(|a| a.device_index),
            })
        });
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for c in from_file.chain(from_instances) {
            let e = c.item.v;
            let id = e.network_interface_id.as_str();
            if !seen.insert(id) {
                continue;
            }
            if let Some(nat) = self.nat_enis.get(id) {
                let own = NatGateway::interface_id_of(nat);
                self.remark(format!("{id}: the interface of NAT gateway {nat}, carried by it (vpclab names it {own})"));
                continue;
            }
            match e.interface_type.as_deref() {
                None | Some("interface" | "efa") => {}
                Some(kind) => {
                    self.skip(format!("{id}: a `{kind}` interface: vpclab has no such interface"));
                    continue;
                }
            }
            if !self.subnet.contains_key(e.subnet_id.as_str()) {
                self.skip(format!("{id}: its subnet {} is not carried", e.subnet_id));
                continue;
            }
            out.push(c);
        }
        out
    }

    /// Running and stopped instances with a primary ENI to carry.
    fn instances(&mut self, input: &'a Input, candidates: &[Candidate<'a>]) {
        for it in &input.instances {
            let i = &it.v;
            let id = i.instance_id.as_str();
            let state = match i.state.as_ref().map_or("running", |s| s.name.as_str()) {
                "running" | "pending" => InstanceState::Running,
                "stopped" | "stopping" => InstanceState::Stopped,
                other => {
                    self.skip(format!("{id}: state `{other}`: only running and stopped instances are carried"));
                    continue;
                }
            };
            if !candidates.iter().any(|c| c.instance == Some(id) && c.device == Some(0)) {
                self.skip(format!("{id}: no primary network interface (device index 0) in a carried subnet: the instance cannot be placed"));
                continue;
            }
            let instance_type = match i.instance_type.as_deref().map(str::trim) {
                Some(t) if instance_types::limits(t).is_some() => Some(t.to_string()),
                Some(t) => {
                    self.skip(format!("{id}: instance type `{t}` is not in vpclab's table: carried without its ENI and address limits"));
                    None
                }
                None => None,
            };
            let ii = InstanceIdx(idx(self.m.instances.len()));
            if self.instance.insert(id, ii).is_some() {
                continue; // listed twice (two files): one is enough
            }
            self.m.instances.push(Instance { id: id.to_string(), instance_type, state, metadata: Default::default() });
        }
    }

    fn eni(&mut self, c: &Candidate<'a>) -> Result<(), ImportError> {
        let (it, e) = (&c.item, c.item.v);
        let id = e.network_interface_id.as_str();
        let si = self.subnet[e.subnet_id.as_str()];
        let (private_ip, secondary_private_ips) = addresses(it)?;
        let mac = match e.mac_address.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => m.parse::<Mac>().map_err(|err| it.error("MacAddress", err))?,
            None => Mac::generated("eni", id),
        };
        let mut security_groups = Vec::new();
        for g in &e.groups {
            match self.sg.get(g.group_id.as_str()) {
                Some(&gi) => security_groups.push(gi),
                None => self.skip(format!("{id}: security group {}: not in the input", g.group_id)),
            }
        }
        if security_groups.is_empty() {
            let vpc = &self.m.vpcs[self.m.subnets[si.index()].vpc.index()];
            security_groups.push(vpc.default_security_group);
            self.skip(format!("{id}: none of its security groups is in the input: it gets vpclab's default group"));
        }
        if !e.ipv6_addresses.is_empty() {
            self.skip(format!("{id}: {} IPv6 address(es): vpclab has no IPv6 yet", e.ipv6_addresses.len()));
        }
        let attachment = self.attachment(c)?;
        let ei = EniIdx(idx(self.m.enis.len()));
        declare(&mut self.eni, id, ei, it, "NetworkInterfaceId")?;
        for (k, p) in e.private_ip_addresses.iter().enumerate() {
            let Some(a) = &p.association else { continue };
            if let Some(public) = &a.public_ip {
                let private = ip(it, &format!("PrivateIpAddresses[{k}].PrivateIpAddress"), &p.private_ip_address)?;
                let public = ip(it, &format!("PrivateIpAddresses[{k}].Association.PublicIp"), public)?;
                self.public_ips.push((ei, private, public, a.allocation_id.as_deref()));
            }
        }
        self.m.enis.push(Eni {
            id: id.to_string(),
            subnet: si,
            private_ip,
            secondary_private_ips,
            security_groups,
            mac,
            source_dest_check: e.source_dest_check.unwrap_or(true),
            description: e.description.clone().filter(|d| !d.is_empty()),
            connection_tracking: conntrack(it)?,
            attachment,
        });
        Ok(())
    }

    /// The ENI's attachment, if it is attached to an instance that is carried.
    fn attachment(&mut self, c: &Candidate<'a>) -> Result<Option<Attachment>, ImportError> {
        let id = &c.item.v.network_interface_id;
        let Some(inst) = c.instance else { return Ok(None) };
        let Some(&instance) = self.instance.get(inst) else {
            self.skip(format!("{id}: attached to {inst}, which is not carried: imported unattached"));
            return Ok(None);
        };
        let field = "Attachment.DeviceIndex";
        let device = c.device.ok_or_else(|| c.item.error(field, "missing for an attached interface"))?;
        let device_index =
            u32::try_from(device).map_err(|_| c.item.error(field, format!("`{device}` is not a device index")))?;
        let given = c.item.v.attachment.as_ref().and_then(|a| a.delete_on_termination);
        Ok(Some(Attachment { instance, device_index, delete_on_termination: given.unwrap_or(device_index == 0) }))
    }

    fn elastic_ips(&mut self, input: &'a Input) -> Result<(), ImportError> {
        for it in &input.addresses {
            let a = &it.v;
            let Some(alloc) = a.allocation_id.as_deref() else {
                self.skip(format!("{}: an EC2-Classic address (no allocation id)", a.public_ip));
                continue;
            };
            let public_ip = ip(it, "PublicIp", &a.public_ip)?;
            let association = match a.network_interface_id.as_deref() {
                None => None,
                // The NAT gateway names its address itself.
                Some(e) if self.nat_enis.contains_key(e) => None,
                Some(e) => match self.eni.get(e) {
                    Some(&ei) => {
                        let private = match a.private_ip_address.as_deref() {
                            Some(p) => ip(it, "PrivateIpAddress", p)?,
                            None => self.m.enis[ei.index()].private_ip,
                        };
                        Some((ei, private))
                    }
                    None => {
                        self.skip(format!("{alloc}: associated with {e}, which is not carried: imported unassociated"));
                        None
                    }
                },
            };
            let xi = EipIdx(idx(self.m.elastic_ips.len()));
            declare(&mut self.eip, alloc, xi, it, "AllocationId")?;
            self.m.elastic_ips.push(ElasticIp { id: alloc.to_string(), public_ip, association });
        }
        Ok(())
    }

    fn nat_gateways(&mut self, input: &'a Input) -> Result<(), ImportError> {
        for it in &input.nat_gateways {
            let n = &it.v;
            let id = n.nat_gateway_id.as_str();
            let state = n.state.as_deref().unwrap_or("available");
            if !matches!(state, "available" | "pending") {
                self.skip(format!("{id}: state `{state}`: only an available NAT gateway is carried"));
                continue;
            }
            let Some(&subnet) = self.subnet.get(n.subnet_id.as_str()) else {
                self.skip(format!("{id}: its subnet {} is not carried", n.subnet_id));
                continue;
            };
            let addrs = &n.nat_gateway_addresses;
            let primary = addrs.iter().position(|a| a.is_primary == Some(true)).unwrap_or(0);
            let Some(addr) = addrs.get(primary) else {
                self.skip(format!("{id}: it lists no address"));
                continue;
            };
            for (k, a) in addrs.iter().enumerate().filter(|(k, _)| *k != primary) {
                let shown = a.private_ip.as_deref().or(a.public_ip.as_deref()).unwrap_or("?");
                self.skip(format!("{id}: secondary address {k} ({shown}): a vpclab NAT gateway has one address"));
            }
            let field = format!("NatGatewayAddresses[{primary}]");
            let private =
                addr.private_ip.as_deref().ok_or_else(|| it.error(&format!("{field}.PrivateIp"), "missing"))?;
            let private_ip = ip(it, &format!("{field}.PrivateIp"), private)?;
            let elastic_ip = match (n.connectivity_type.as_deref(), addr.allocation_id.as_deref()) {
                (Some("private"), _) => None,
                (_, None) => return Err(it.error(&format!("{field}.AllocationId"), "missing for a public NAT gateway")),
                (_, Some(alloc)) => Some(self.eip_of_nat(it, &field, id, alloc, addr.public_ip.as_deref())?),
            };
            let ni = NatIdx(idx(self.m.nat_gateways.len()));
            declare(&mut self.nat, id, ni, it, "NatGatewayId")?;
            self.m.nat_gateways.push(NatGateway {
                id: id.to_string(),
                subnet,
                private_ip,
                elastic_ip,
                ports: NatGateway::AWS_PORTS,
                preserve_ports: false,
            });
        }
        Ok(())
    }

    /// A NAT gateway's Elastic IP: from the addresses read, else from the NAT gateway's own view.
    fn eip_of_nat(
        &mut self,
        it: &Item<aws::NatGateway>,
        field: &str,
        nat: &str,
        alloc: &'a str,
        public: Option<&str>,
    ) -> Result<EipIdx, ImportError> {
        if let Some(&xi) = self.eip.get(alloc) {
            return Ok(xi);
        }
        let public =
            public.ok_or_else(|| it.error(&format!("{field}.PublicIp"), "missing, and not in the addresses"))?;
        let public_ip = ip(it, &format!("{field}.PublicIp"), public)?;
        let xi = EipIdx(idx(self.m.elastic_ips.len()));
        self.eip.insert(alloc, xi);
        self.m.elastic_ips.push(ElasticIp { id: alloc.to_string(), public_ip, association: None });
        self.remark(format!("{alloc}: not among the addresses read; carried from NAT gateway {nat}"));
        Ok(xi)
    }

    /// Public addresses seen on ENIs but not among the Elastic IPs read: an Elastic IP from a
    /// missing `describe-addresses`, or one AWS assigned at launch (carried as an Elastic IP,
    /// vpclab's one kind of public address).
    fn public_ips(&mut self) {
        let known: HashSet<Ipv4Addr> = self.m.elastic_ips.iter().map(|e| e.public_ip).collect();
        for (ei, private, public, alloc) in std::mem::take(&mut self.public_ips) {
            if known.contains(&public) {
                continue;
            }
            let eni = &self.m.enis[ei.index()].id;
            let id = match alloc {
                Some(a) => a.to_string(),
                None => format!("pubip-{}", public.to_string().replace('.', "-")),
            };
            let line = match alloc {
                Some(_) => {
                    format!("{id}: not among the addresses read; carried from {eni}, which it is associated with")
                }
                None => format!("{eni}: its AWS-assigned public IP {public} is carried as elastic_ip {id}"),
            };
            self.remark(line);
            self.m.elastic_ips.push(ElasticIp { id, public_ip: public, association: Some((ei, private)) });
        }
    }

    fn route_tables(&mut self, input: &'a Input) -> Result<(), ImportError> {
        // An instance route goes to the instance's primary ENI.
        let primary_eni: HashMap<String, EniIdx> = (self.m.enis.iter().enumerate())
            .filter_map(|(k, e)| {
                let a = e.attachment.filter(|a| a.device_index == 0)?;
                Some((self.m.instances[a.instance.index()].id.clone(), EniIdx(idx(k))))
            })
            .collect();
        for it in &input.route_tables {
            let t = &it.v;
            let id = t.route_table_id.as_str();
            let Some(&vi) = self.vpc.get(t.vpc_id.as_str()) else {
                self.skip(format!("{id}: its VPC {} is not in the input", t.vpc_id));
                continue;
            };
            let routes = self.routes(it, vi, &primary_eni)?;
            let ri = RtbIdx(idx(self.m.route_tables.len()));
            declare(&mut self.rtb, id, ri, it, "RouteTableId")?;
            self.m.route_tables.push(RouteTable { id: id.to_string(), vpc: vi, routes });
            for a in &t.associations {
                if a.main {
                    self.m.vpcs[vi.index()].main_route_table = ri;
                } else if let Some(si) = a.subnet_id.as_deref().and_then(|s| self.subnet.get(s).copied()) {
                    self.m.subnets[si.index()].route_table = ri;
                    self.rtb_associated.insert(si);
                } else if let Some(g) = &a.gateway_id {
                    self.skip(format!("{id}: edge association with {g}: vpclab has no gateway route tables"));
                }
            }
        }
        // A subnet without an association of its own uses its VPC's main table.
        for (k, s) in self.m.subnets.iter_mut().enumerate() {
            if !self.rtb_associated.contains(&SubnetIdx(idx(k))) {
                s.route_table = self.m.vpcs[s.vpc.index()].main_route_table;
            }
        }
        Ok(())
    }

    /// A table's routes: the implicit local route first (as validation makes it), then each
    /// route whose destination and target vpclab knows.
    fn routes(
        &mut self,
        it: &Item<aws::RouteTable>,
        vi: VpcIdx,
        primary_eni: &HashMap<String, EniIdx>,
    ) -> Result<Vec<Route>, ImportError> {
        let id = &it.v.route_table_id;
        let block = self.m.vpcs[vi.index()].cidr;
        let mut routes = vec![Route { destination: block, target: RouteTarget::Local }];
        for (k, r) in it.v.routes.iter().enumerate() {
            let field = format!("Routes[{k}].DestinationCidrBlock");
            let destination =
                match (&r.destination_cidr_block, &r.destination_ipv6_cidr_block, &r.destination_prefix_list_id) {
                    (Some(d), _, _) => cidr(it, &field, d)?,
                    (None, Some(d6), _) => {
                        self.skip(format!("{id}: route to {d6}: vpclab has no IPv6 yet"));
                        continue;
                    }
                    (None, None, Some(pl)) => {
                        self.skip(format!("{id}: route to prefix list {pl}: vpclab has no prefix lists"));
                        continue;
                    }
                    (None, None, None) => return Err(it.error(&field, "missing: a route needs a destination")),
                };
            match self.route_target(r, block, destination, primary_eni) {
                Ok(None) => {}
                Ok(Some(RouteTarget::Blackhole)) => {
                    self.remark(format!(
                        "{id}: route {destination} is a blackhole in AWS (its target is gone): carried as one"
                    ));
                    routes.push(Route { destination, target: RouteTarget::Blackhole });
                }
                Ok(Some(target)) => routes.push(Route { destination, target }),
                Err(why) => self.skip(format!("{id}: route {destination} -> {why}")),
            }
        }
        Ok(routes)
    }

    /// What a route points at; `None` for the VPC's local route (implicit in vpclab); `Err`
    /// says why vpclab cannot carry it.
    fn route_target(
        &self,
        r: &aws::Route,
        block: Cidr,
        destination: Cidr,
        primary_eni: &HashMap<String, EniIdx>,
    ) -> Result<Option<RouteTarget>, String> {
        let known = |found: Option<RouteTarget>, id: &str, what: &str| {
            found.map(Some).ok_or_else(|| format!("{id}: {what} that is not carried"))
        };
        if r.state.as_deref() == Some("blackhole") {
            return Ok(Some(RouteTarget::Blackhole));
        }
        if let Some(g) = r.gateway_id.as_deref() {
            return match g {
                "local" if destination == block => Ok(None),
                "local" if block.contains_cidr(destination) => Ok(Some(RouteTarget::Local)),
                "local" => Err("local: the local route of a secondary CIDR block".into()),
                _ if g.starts_with("vgw-") => Err(format!("{g}: a virtual private gateway (VPN): not carried")),
                _ if g.starts_with("vpce-") => Err(format!("{g}: a gateway VPC endpoint: not carried")),
                _ => known(self.igw.get(g).map(|&i| RouteTarget::InternetGateway(i)), g, "an internet gateway"),
            };
        }
        if let Some(n) = r.nat_gateway_id.as_deref() {
            return known(self.nat.get(n).map(|&i| RouteTarget::NatGateway(i)), n, "a NAT gateway");
        }
        if let Some(p) = r.vpc_peering_connection_id.as_deref() {
            return known(self.pcx.get(p).map(|&i| RouteTarget::Peering(i)), p, "a peering connection");
        }
        if let Some(e) = r.network_interface_id.as_deref() {
            return known(self.eni.get(e).map(|&i| RouteTarget::Eni(i)), e, "a network interface");
        }
        if let Some(i) = r.instance_id.as_deref() {
            return known(primary_eni.get(i).map(|&e| RouteTarget::Eni(e)), i, "an instance");
        }
        let other = [
            (&r.transit_gateway_id, "a transit gateway"),
            (&r.egress_only_internet_gateway_id, "an egress-only internet gateway (IPv6)"),
            (&r.carrier_gateway_id, "a carrier gateway (Wavelength)"),
            (&r.local_gateway_id, "a local gateway (Outposts)"),
            (&r.core_network_arn, "a Cloud WAN core network"),
        ];
        match other.iter().find_map(|(id, what)| id.as_deref().map(|id| (id, what))) {
            Some((id, what)) => Err(format!("{id}: {what}: not carried")),
            None => Err("a target vpclab does not know".into()),
        }
    }

    fn network_acls(&mut self, input: &'a Input) -> Result<(), ImportError> {
        for it in &input.network_acls {
            let a = &it.v;
            let id = a.network_acl_id.as_str();
            let Some(&vi) = self.vpc.get(a.vpc_id.as_str()) else {
                self.skip(format!("{id}: its VPC {} is not in the input", a.vpc_id));
                continue;
            };
            let (mut ingress, mut egress) = (Vec::new(), Vec::new());
            for (k, e) in a.entries.iter().enumerate() {
                // Every ACL ends with rule `*` (32767), denying all: implicit in vpclab.
                if e.rule_number == 32767 {
                    continue;
                }
                let dir = if e.egress { "outbound" } else { "inbound" };
                let Some(block) = e.cidr_block.as_deref() else {
                    let block6 = e.ipv6_cidr_block.as_deref().unwrap_or("?");
                    self.skip(format!("{id}: {dir} rule {} for {block6}: vpclab has no IPv6 yet", e.rule_number));
                    continue;
                };
                let rule = acl_rule(it, &format!("Entries[{k}]"), e, block)?;
                if e.egress {
                    egress.push(rule)
                } else {
                    ingress.push(rule)
                }
            }
            ingress.sort_by_key(|r| r.number);
            egress.sort_by_key(|r| r.number);
            let ai = AclIdx(idx(self.m.network_acls.len()));
            declare(&mut self.acl, id, ai, it, "NetworkAclId")?;
            self.m.network_acls.push(NetworkAcl { id: id.to_string(), vpc: vi, ingress, egress });
            for s in &a.associations {
                if let Some(&si) = self.subnet.get(s.subnet_id.as_str()) {
                    self.m.subnets[si.index()].network_acl = ai;
                    self.acl_associated.insert(si);
                }
            }
        }
        if !input.network_acls.is_empty() {
            for k in 0..self.m.subnets.len() {
                if !self.acl_associated.contains(&SubnetIdx(idx(k))) {
                    let s = &self.m.subnets[k].id;
                    self.remark(format!(
                        "{s}: no network ACL association read: vpclab's default ACL (allow all) applies"
                    ));
                }
            }
        }
        Ok(())
    }

    /// AWS's JSON names nobody on the internet: one documentation host stands in.
    fn internet(&mut self) {
        if self.m.internet_gateways.is_empty() {
            return;
        }
        self.m.internet_hosts.push(InternetHost {
            id: "internet-host".into(),
            ip: INTERNET_HOST,
            service: None,
            name: None,
        });
        self.remark(format!(
            "the internet: AWS's JSON names no hosts there; `internet-host` ({INTERNET_HOST}, a documentation address) stands in"
        ));
    }
}

/// A permission's protocol and ports; `None` for ICMPv6 (IPv6 only).
fn sg_match(
    it: &Item<aws::SecurityGroup>,
    path: &str,
    p: &aws::Permission,
) -> Result<Option<(Protocol, PortMatch)>, ImportError> {
    let protocol = match p.ip_protocol.trim().to_ascii_lowercase().as_str() {
        "-1" | "all" => return Ok(Some((Protocol::All, PortMatch::Any))),
        "icmpv6" | "58" => return Ok(None),
        other => protocol(it, &format!("{path}.IpProtocol"), other)?,
    };
    let ports = if protocol.has_ports() {
        PortMatch::Ports(port_range(
            it,
            (&format!("{path}.FromPort"), p.from_port),
            (&format!("{path}.ToPort"), p.to_port),
        )?)
    } else if protocol == Protocol::ICMP {
        // AWS puts the ICMP type in FromPort and the code in ToPort.
        let icmp_type = icmp(it, &format!("{path}.FromPort"), p.from_port)?;
        let icmp_code = icmp(it, &format!("{path}.ToPort"), p.to_port)?;
        PortMatch::Icmp { icmp_type, icmp_code }
    } else {
        PortMatch::Any
    };
    Ok(Some((protocol, ports)))
}

/// `tcp`, `udp`, `icmp` or a protocol number.
fn protocol<T>(it: &Item<T>, field: &str, s: &str) -> Result<Protocol, ImportError> {
    let n = match s {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        n => n.parse::<u8>().map_err(|_| {
            it.error(field, format!("`{s}` is not a protocol: tcp, udp, icmp, icmpv6, -1 or a number 0-255"))
        })?,
    };
    Ok(Protocol::Number(IpProto(n)))
}

/// A port range from its two ends; both absent or -1: every port.
fn port_range<T>(it: &Item<T>, from: (&str, Option<i64>), to: (&str, Option<i64>)) -> Result<PortRange, ImportError> {
    let port = |(field, v): (&str, i64)| {
        u16::try_from(v).map_err(|_| it.error(field, format!("`{v}` is not a port (0-65535)")))
    };
    match (from.1, to.1) {
        (None | Some(-1), None | Some(-1)) => Ok(PortRange::ALL),
        (Some(f), Some(t)) => {
            let (f, t) = (port((from.0, f))?, port((to.0, t))?);
            if f > t {
                return Err(it.error(from.0, format!("`{f}` is above the last port `{t}`")));
            }
            Ok(PortRange { from: f, to: t })
        }
        _ => Err(it.error(from.0, "a port range needs both ends")),
    }
}

/// An ICMP type or code; absent or -1: all.
fn icmp<T>(it: &Item<T>, field: &str, v: Option<i64>) -> Result<Option<u8>, ImportError> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) => u8::try_from(n).map(Some).map_err(|_| it.error(field, format!("`{n}` is not an ICMP type or code"))),
    }
}

/// A short description of what a rule matches, for the not-carried list: `tcp 443`.
fn describe(protocol: Protocol, ports: PortMatch) -> String {
    let name = match protocol {
        Protocol::All => return "all traffic".into(),
        Protocol::TCP => "tcp".to_string(),
        Protocol::UDP => "udp".to_string(),
        Protocol::ICMP => "icmp".to_string(),
        Protocol::Number(n) => format!("protocol {}", n.0),
    };
    match ports {
        PortMatch::Ports(r) if r == PortRange::ALL => name,
        PortMatch::Ports(r) if r.from == r.to => format!("{name} {}", r.from),
        PortMatch::Ports(r) => format!("{name} {}-{}", r.from, r.to),
        PortMatch::Icmp { icmp_type: Some(t), .. } => format!("{name} type {t}"),
        _ => name,
    }
}

/// One network ACL entry with an IPv4 block.
fn acl_rule(it: &Item<aws::NetworkAcl>, path: &str, e: &aws::AclEntry, block: &str) -> Result<AclRule, ImportError> {
    let number = u16::try_from(e.rule_number).ok().filter(|n| (1..=32766).contains(n)).ok_or_else(|| {
        it.error(&format!("{path}.RuleNumber"), format!("`{}` is not a rule number (1-32766)", e.rule_number))
    })?;
    let protocol = match e.protocol.trim() {
        "-1" | "all" => Protocol::All,
        p => protocol(it, &format!("{path}.Protocol"), p)?,
    };
    let ports = if protocol.has_ports() {
        let r = e.port_range.as_ref();
        let from = (format!("{path}.PortRange.From"), r.and_then(|r| r.from));
        let to = (format!("{path}.PortRange.To"), r.and_then(|r| r.to));
        PortMatch::Ports(port_range(it, (&from.0, from.1), (&to.0, to.1))?)
    } else if protocol == Protocol::ICMP {
        let tc = e.icmp_type_code.as_ref();
        let icmp_type = icmp(it, &format!("{path}.IcmpTypeCode.Type"), tc.and_then(|t| t.icmp_type))?;
        let icmp_code = icmp(it, &format!("{path}.IcmpTypeCode.Code"), tc.and_then(|t| t.code))?;
        PortMatch::Icmp { icmp_type, icmp_code }
    } else {
        PortMatch::Any
    };
    let action = match e.rule_action.as_str() {
        "allow" => AclAction::Allow,
        "deny" => AclAction::Deny,
        other => return Err(it.error(&format!("{path}.RuleAction"), format!("`{other}` is neither allow nor deny"))),
    };
    Ok(AclRule { number, protocol, ports, cidr: cidr(it, &format!("{path}.CidrBlock"), block)?, action })
}

/// An ENI's primary private IP (the one marked `Primary`, else `PrivateIpAddress`) and the
/// secondary ones.
fn addresses(it: &Item<&aws::NetworkInterface>) -> Result<(Ipv4Addr, Vec<Ipv4Addr>), ImportError> {
    let e = it.v;
    let mut listed = Vec::new();
    for (k, p) in e.private_ip_addresses.iter().enumerate() {
        listed.push((ip(it, &format!("PrivateIpAddresses[{k}].PrivateIpAddress"), &p.private_ip_address)?, p.primary));
    }
    let primary = match (listed.iter().find(|(_, primary)| *primary), e.private_ip_address.as_deref()) {
        (Some((a, _)), _) => *a,
        (None, Some(a)) => ip(it, "PrivateIpAddress", a)?,
        (None, None) => match listed.first() {
            Some((a, _)) => *a,
            None => return Err(it.error("PrivateIpAddress", "missing: an ENI needs a primary private IP")),
        },
    };
    Ok((primary, listed.into_iter().map(|(a, _)| a).filter(|a| *a != primary).collect()))
}

/// An ENI's connection tracking timeouts; AWS's defaults where the JSON has none.
fn conntrack(it: &Item<&aws::NetworkInterface>) -> Result<ConntrackConfig, ImportError> {
    let mut c = ConntrackConfig::default();
    let Some(t) = &it.v.connection_tracking_configuration else { return Ok(c) };
    let secs = |field: &str, v: Option<i64>, default: u32| {
        v.map_or(Ok(default), |n| {
            u32::try_from(n).map_err(|_| {
                it.error(
                    &format!("ConnectionTrackingConfiguration.{field}"),
                    format!("`{n}` is not a number of seconds"),
                )
            })
        })
    };
    c.tcp_established = secs("TcpEstablishedTimeout", t.tcp_established_timeout, c.tcp_established)?;
    c.udp_stream = secs("UdpStreamTimeout", t.udp_stream_timeout, c.udp_stream)?;
    c.udp = secs("UdpTimeout", t.udp_timeout, c.udp)?;
    Ok(c)
}
