//! VPC endpoints: how a VPC reaches an AWS service (an `[internet]` host tagged with the
//! service) without an internet or NAT gateway.
//!
//! A gateway endpoint (`s3`, `dynamodb`) is a route target: each of its route tables gets a
//! route whose destination is the service's AWS-managed prefix list ([`PrefixList`]) and whose
//! target is the endpoint. An interface endpoint is one requester-managed network interface per
//! subnet; traffic to an interface's address is carried to the service host as if the host were
//! that interface. Endpoint policies are not modelled: every endpoint allows everything, which
//! is AWS's default full-access policy.

use std::net::Ipv4Addr;

use serde::Serialize;

use super::{Cidr, Mac, Model, RtbIdx, SgIdx, SubnetIdx, VpcIdx};

/// The services a gateway endpoint can reach, as on AWS; each has an AWS-managed prefix list.
pub const GATEWAY_SERVICES: &[&str] = &["s3", "dynamodb"];

/// A VPC endpoint (`[[vpc_endpoint]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VpcEndpoint {
    /// Its id (`vpce-s3`).
    pub id: String,
    /// Its VPC.
    pub vpc: VpcIdx,
    /// The service's short name (`s3`); AWS's `ServiceName` is [`VpcEndpoint::service_name`].
    pub service: String,
    /// Gateway or interface, with what each needs.
    pub kind: EndpointKind,
}

/// What kind of endpoint, with its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum EndpointKind {
    /// A route target for the service's prefix list in these route tables.
    Gateway {
        /// The route tables that get the prefix-list route.
        route_tables: Vec<RtbIdx>,
    },
    /// Network interfaces in subnets, answered by the service host.
    Interface {
        /// One per subnet, in the order the file names the subnets.
        interfaces: Vec<EndpointInterface>,
        /// The groups of every interface (the VPC's default group when none is named).
        security_groups: Vec<SgIdx>,
        /// Whether the service's default DNS name resolves to the interfaces inside the VPC.
        private_dns_enabled: bool,
    },
}

/// An interface endpoint's network interface in one subnet (requester-managed, like a NAT
/// gateway's: not an ENI of the model, no TAP; the fabric answers for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointInterface {
    /// `eni-<endpoint id>-<subnet id>` ([`VpcEndpoint::interface_id_of`]).
    pub id: String,
    /// Its subnet.
    pub subnet: SubnetIdx,
    /// Its private IP (given, or the subnet's first free address).
    pub private_ip: Ipv4Addr,
    /// Its MAC, generated from its id.
    pub mac: Mac,
}

/// An AWS-managed prefix list: the public ranges of a gateway service in the lab's region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrefixList {
    /// `pl-` and eight hex digits derived from the name ([`PrefixList::id_of`]).
    pub id: String,
    /// `com.amazonaws.<region>.<service>`, as AWS names it.
    pub name: String,
    /// The addresses of the `[internet]` hosts tagged with the service, each a /32, ascending.
    pub cidrs: Vec<Cidr>,
}

/// FNV-1a, 32 bits: the derivation of every stable name here.
fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

impl PrefixList {
    /// AWS's name of a service's prefix list: `com.amazonaws.<region>.<service>`.
    pub fn name_of(region: &str, service: &str) -> String {
        format!("com.amazonaws.{region}.{service}")
    }

    /// Its id: AWS's ids differ per region and are not derivable; the lab derives one from the
    /// name, so the same region and service always give the same `pl-...`.
    pub fn id_of(region: &str, service: &str) -> String {
        format!("pl-{:08x}", fnv32(&PrefixList::name_of(region, service)))
    }
}

impl VpcEndpoint {
    /// The id of an interface endpoint's network interface in subnet `subnet_id`.
    pub fn interface_id_of(endpoint_id: &str, subnet_id: &str) -> String {
        format!("eni-{endpoint_id}-{subnet_id}")
    }

    /// AWS's `ServiceName`: `com.amazonaws.<region>.<service>`.
    pub fn service_name(&self, region: &str) -> String {
        PrefixList::name_of(region, &self.service)
    }

    /// Whether it is a gateway endpoint.
    pub fn is_gateway(&self) -> bool {
        matches!(self.kind, EndpointKind::Gateway { .. })
    }

    /// AWS's regional DNS name of an interface endpoint:
    /// `<id>-<8 characters>.<service>.<region>.vpce.amazonaws.com`. AWS's characters are random;
    /// the lab derives them from the id.
    pub fn regional_dns_name(&self, region: &str) -> String {
        format!("{}-{:08x}.{}.{region}.vpce.amazonaws.com", self.id, fnv32(&self.id), self.service)
    }
}

impl Model {
    /// The addresses of the `[internet]` hosts that play `service`, in file order.
    pub fn service_hosts(&self, service: &str) -> Vec<Ipv4Addr> {
        self.internet_hosts.iter().filter(|h| h.service.as_deref() == Some(service)).map(|h| h.ip).collect()
    }

    /// The AWS-managed prefix list of a gateway service (`None` for any other service).
    pub fn prefix_list(&self, service: &str) -> Option<PrefixList> {
        if !GATEWAY_SERVICES.contains(&service) {
            return None;
        }
        let mut cidrs: Vec<Cidr> = self.service_hosts(service).into_iter().map(|ip| Cidr::new(ip, 32)).collect();
        cidrs.sort_by_key(|c| u32::from(c.addr));
        cidrs.dedup();
        let region = self.region();
        Some(PrefixList { id: PrefixList::id_of(region, service), name: PrefixList::name_of(region, service), cidrs })
    }

    /// The prefix lists of the gateway services some `[internet]` host plays.
    pub fn prefix_lists(&self) -> Vec<PrefixList> {
        GATEWAY_SERVICES
            .iter()
            .filter(|s| !self.service_hosts(s).is_empty())
            .filter_map(|s| self.prefix_list(s))
            .collect()
    }

    /// The DNS names the Amazon DNS server of `vpc` answers for its interface endpoints, each
    /// with its addresses (every interface of the endpoint): the regional name
    /// ([`VpcEndpoint::regional_dns_name`]) always, and the service's default name
    /// (`<service>.<region>.amazonaws.com`) when `private_dns_enabled`. Gateway endpoints have
    /// no DNS name: the service's public name already leads to its prefix list.
    pub fn endpoint_dns_names(&self, vpc: VpcIdx) -> Vec<(String, Vec<Ipv4Addr>)> {
        let region = self.region();
        let mut out = Vec::new();
        for e in self.vpc_endpoints.iter().filter(|e| e.vpc == vpc) {
            let EndpointKind::Interface { interfaces, private_dns_enabled, .. } = &e.kind else { continue };
            let ips: Vec<Ipv4Addr> = interfaces.iter().map(|i| i.private_ip).collect();
            out.push((e.regional_dns_name(region), ips.clone()));
            if *private_dns_enabled {
                out.push((format!("{}.{region}.amazonaws.com", e.service), ips));
            }
        }
        out
    }
}
