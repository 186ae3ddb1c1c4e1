//! The instance metadata service (IMDS) at 169.254.169.254, as EC2's: IMDSv2 tokens (PUT
//! `/latest/api/token`), IMDSv1 where `http_tokens = "optional"`, and the paths an instance's
//! network tooling reads (`/latest/meta-data/...`). Pure: the model, the asking ENI, the token
//! table, `now` and a request in; an answer out. The server around it (`services::imds_server`)
//! does the I/O; the pipeline brings the request there.
//!
//! Which ENI asks is never judged by the instance's source address: the pipeline rewrites the
//! source of a frame from ENI port `i` to [`client_address`]`(i, k)`, an address of a private
//! pool that names the port and which of its private IPs (`k`) was the source, and
//! [`client_of`] reads both back. Non-peered VPCs may overlap; ports never do.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use hashbrown::HashMap;

use crate::model::{EniIdx, InstanceIdx, Model};

pub mod server;

/// The pool the per-ENI client addresses come from (RFC 6598's shared space, seen only inside
/// the service namespace): 16 bits of port index, 6 bits of private-IP slot.
pub const POOL: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// The pool's prefix length.
pub const POOL_PREFIX: u8 = 10;
/// Private-IP slots per ENI (AWS's largest ENIs hold 50 IPv4 addresses).
pub const SLOTS: usize = 64;
/// ENI ports the pool can name.
pub const MAX_PORTS: usize = 1 << 16;
/// The service namespace's next hop to the pool: the fabric answers ARP for it.
pub const SERVICE_GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 1);
/// The TCP port the service listens on.
pub const HTTP_PORT: u16 = 80;
/// Tokens held at once (over all instances); the one closest to expiry makes room.
pub const MAX_TOKENS: usize = 4096;
/// EC2's range for `X-aws-ec2-metadata-token-ttl-seconds`.
pub const MAX_TOKEN_TTL: u64 = 21_600;

const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";

/// The service-side address of private-IP slot `slot` of ENI port `port`, if the pool has one.
pub fn client_address(port: usize, slot: usize) -> Option<Ipv4Addr> {
    if port >= MAX_PORTS || slot >= SLOTS {
        return None;
    }
    Some(Ipv4Addr::from(u32::from(POOL) | ((port as u32) << 6) | slot as u32))
}

/// The (port, slot) a pool address stands for.
pub fn client_of(addr: Ipv4Addr) -> Option<(usize, usize)> {
    let a = u32::from(addr);
    let mask = u32::MAX << (32 - POOL_PREFIX);
    if a & mask != u32::from(POOL) {
        return None;
    }
    let low = a & !mask;
    Some(((low >> 6) as usize, (low & 0x3f) as usize))
}

/// IMDSv2 session tokens: random strings, each good for one instance until it expires. Bounded
/// by [`MAX_TOKENS`].
#[derive(Debug, Default)]
pub struct Tokens {
    by_token: HashMap<String, (String, Duration)>,
}

impl Tokens {
    /// Issues a token for `instance` valid `ttl` from `now`, its text made of `random`.
    pub fn issue(&mut self, now: Duration, instance: &str, ttl: Duration, random: [u8; 24]) -> String {
        if self.by_token.len() >= MAX_TOKENS {
            self.by_token.retain(|_, (_, until)| *until > now);
        }
        if self.by_token.len() >= MAX_TOKENS {
            let soonest = self.by_token.iter().min_by_key(|(_, (_, until))| *until).map(|(t, _)| t.clone());
            if let Some(t) = soonest {
                self.by_token.remove(&t);
            }
        }
        let token = hex::encode(random);
        self.by_token.insert(token.clone(), (instance.to_string(), now + ttl));
        token
    }

    /// Seconds left on `token` if it is live and `instance`'s.
    pub fn check(&self, now: Duration, instance: &str, token: &str) -> Option<u64> {
        let (owner, until) = self.by_token.get(token)?;
        (owner == instance && *until > now).then(|| (*until - now).as_secs())
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// A request as the service reads it.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The request target (a query string is ignored).
    pub target: &'a str,
    /// Header names and values as sent.
    pub headers: &'a [(String, String)],
}

impl Ask<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }
}

/// The service's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Status code and reason, e.g. `200 OK`.
    pub status: &'static str,
    /// Header lines besides the length, content type and connection.
    pub headers: Vec<(&'static str, String)>,
    /// The body (text).
    pub body: String,
    /// The IP TTL to answer with (the PUT response hop limit), if not the default.
    pub ttl: Option<u8>,
}

impl Reply {
    fn status(status: &'static str) -> Reply {
        Reply { status, headers: Vec::new(), body: String::new(), ttl: None }
    }
}

/// Answers `ask` from ENI `eni` of `model`, as IMDS does (statuses as AWS documents them: 400
/// for a token PUT without a valid TTL, 401 for a missing token where required or any invalid
/// one, 403 for a token PUT carrying `X-Forwarded-For` or an instance whose endpoint is off, 404
/// for an unknown path, 405 for another method). `random` makes a new token's text.
pub fn answer(model: &Model, eni: EniIdx, tokens: &mut Tokens, now: Duration, random: [u8; 24], ask: Ask<'_>) -> Reply {
    let Some(instance) = model.enis.get(eni.index()).and_then(|e| e.attachment).map(|a| a.instance) else {
        return Reply::status("404 Not Found");
    };
    let options = model.instances[instance.index()].metadata;
    if !options.endpoint_enabled {
        return Reply::status("403 Forbidden");
    }
    let iid = model.instances[instance.index()].id.as_str();
    let path = ask.target.split('?').next().unwrap_or_default();
    if path == "/latest/api/token" {
        return token_put(tokens, now, iid, options.hop_limit, random, ask);
    }
    if !matches!(ask.method, "GET" | "HEAD") {
        return Reply::status("405 Method Not Allowed");
    }
    let ttl_left = match ask.header(TOKEN_HEADER) {
        Some(t) => match tokens.check(now, iid, t) {
            Some(left) => Some(left),
            None => return Reply::status("401 Unauthorized"),
        },
        None if options.tokens_required => return Reply::status("401 Unauthorized"),
        None => None,
    };
    let Some(body) = lookup(model, instance, path) else { return Reply::status("404 Not Found") };
    let mut reply = Reply { status: "200 OK", headers: Vec::new(), body, ttl: None };
    if let Some(left) = ttl_left {
        reply.headers.push((TTL_HEADER, left.to_string()));
    }
    reply
}

/// `PUT /latest/api/token`: a token for the asking instance, its reply leaving with the
/// instance's hop limit as IP TTL.
fn token_put(tokens: &mut Tokens, now: Duration, iid: &str, hop: u8, random: [u8; 24], ask: Ask<'_>) -> Reply {
    if ask.method != "PUT" {
        return Reply::status("405 Method Not Allowed");
    }
    // IMDS refuses tokens to requests that went through a proxy (AWS's SSRF defence).
    if ask.header("X-Forwarded-For").is_some() {
        return Reply::status("403 Forbidden");
    }
    let ttl = match ask.header(TTL_HEADER).and_then(|v| v.parse::<u64>().ok()) {
        Some(t) if (1..=MAX_TOKEN_TTL).contains(&t) => t,
        _ => return Reply::status("400 Bad Request"),
    };
    let token = tokens.issue(now, iid, Duration::from_secs(ttl), random);
    Reply { status: "200 OK", headers: vec![(TTL_HEADER, ttl.to_string())], body: token, ttl: Some(hop) }
}

/// The text at `path` for `instance`: a value, or a directory's listing (names one a line,
/// subdirectories ending in `/`, as IMDS lists them); `None` for what is not there.
pub fn lookup(model: &Model, instance: InstanceIdx, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/latest")?;
    let tree = tree(model, instance);
    let key = rest.trim_start_matches('/');
    if key.is_empty() {
        return Some("meta-data".to_string());
    }
    let key = key.strip_prefix("meta-data")?;
    if !(key.is_empty() || key.starts_with('/')) {
        return None;
    }
    let key = key.trim_start_matches('/');
    if let Some(v) = tree.get(key) {
        return Some(v.clone());
    }
    let dir = if key.is_empty() || key.ends_with('/') { key.to_string() } else { format!("{key}/") };
    let mut names: Vec<String> = tree
        .range(dir.clone()..)
        .take_while(|(k, _)| k.starts_with(&dir))
        .map(|(k, _)| match k[dir.len()..].split_once('/') {
            Some((d, _)) => format!("{d}/"),
            None => k[dir.len()..].to_string(),
        })
        .collect();
    names.dedup();
    (!names.is_empty()).then(|| names.join("\n"))
}

/// Every leaf of `instance`'s `meta-data/` tree, by path under it.
fn tree(model: &Model, instance: InstanceIdx) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    let inst = &model.instances[instance.index()];
    let mut enis: Vec<(u32, usize)> = model
        .enis
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.attachment.filter(|a| a.instance == instance).map(|a| (a.device_index, i)))
        .collect();
    enis.sort_unstable();
    t.insert("instance-id".into(), inst.id.clone());
    if let Some(ty) = &inst.instance_type {
        t.insert("instance-type".into(), ty.clone());
    }
    if let Some(&(_, primary)) = enis.iter().find(|(d, _)| *d == 0) {
        let e = &model.enis[primary];
        let subnet = &model.subnets[e.subnet.index()];
        let zone = subnet.availability_zone.clone().unwrap_or_else(|| format!("{}a", model.region()));
        t.insert("local-ipv4".into(), e.private_ip.to_string());
        t.insert("mac".into(), e.mac.to_string());
        t.insert("hostname".into(), private_dns(model, e.private_ip));
        t.insert("local-hostname".into(), private_dns(model, e.private_ip));
        t.insert("placement/availability-zone".into(), zone);
        t.insert("placement/region".into(), model.region().to_string());
        if let Some(public) = public_of(model, EniIdx(primary as u32), e.private_ip) {
            t.insert("public-ipv4".into(), public.to_string());
        }
    }
    for (device, i) in enis {
        interface(model, device, i, &mut t);
    }
    t
}

/// `network/interfaces/macs/<mac>/...` of ENI `i` at `device`.
fn interface(model: &Model, device: u32, i: usize, t: &mut BTreeMap<String, String>) {
    let e = &model.enis[i];
    let subnet = &model.subnets[e.subnet.index()];
    let vpc = &model.vpcs[subnet.vpc.index()];
    let dir = format!("network/interfaces/macs/{}/", e.mac);
    let mut put = |k: &str, v: String| {
        t.insert(format!("{dir}{k}"), v);
    };
    let join = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>().join("\n");
    put("device-number", device.to_string());
    put("interface-id", e.id.clone());
    put("local-hostname", private_dns(model, e.private_ip));
    put("local-ipv4s", join(&mut e.private_ips().map(|ip| ip.to_string())));
    put("mac", e.mac.to_string());
    put("owner-id", crate::api::describe::owner_id(model));
    put("security-group-ids", join(&mut e.security_groups.iter().map(|g| model.security_groups[g.index()].id.clone())));
    put("security-groups", join(&mut e.security_groups.iter().map(|g| model.security_groups[g.index()].name.clone())));
    put("subnet-id", subnet.id.clone());
    put("subnet-ipv4-cidr-block", subnet.cidr.to_string());
    put("vpc-id", vpc.id.clone());
    put("vpc-ipv4-cidr-block", vpc.cidr.to_string());
    put("vpc-ipv4-cidr-blocks", vpc.cidr.to_string());
    let publics: Vec<(Ipv4Addr, Ipv4Addr)> =
        e.private_ips().filter_map(|ip| public_of(model, EniIdx(i as u32), ip).map(|p| (p, ip))).collect();
    if !publics.is_empty() {
        put("public-ipv4s", join(&mut publics.iter().map(|(p, _)| p.to_string())));
        for (public, private) in publics {
            put(&format!("ipv4-associations/{public}"), private.to_string());
        }
    }
}

/// The Elastic IP associated with `ip` of ENI `eni`, if any.
fn public_of(model: &Model, eni: EniIdx, ip: Ipv4Addr) -> Option<Ipv4Addr> {
    model.elastic_ips.iter().find(|x| x.association == Some((eni, ip))).map(|x| x.public_ip)
}

/// EC2's private DNS name of `ip`: `ip-a-b-c-d.ec2.internal` in us-east-1, else
/// `ip-a-b-c-d.<region>.compute.internal`.
fn private_dns(model: &Model, ip: Ipv4Addr) -> String {
    let o = ip.octets();
    let region = model.region();
    let domain = if region == "us-east-1" { "ec2.internal".to_string() } else { format!("{region}.compute.internal") };
    format!("ip-{}-{}-{}-{}.{domain}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests;
