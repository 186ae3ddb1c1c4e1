//! VPC Flow Logs: one record per ENI per flow (5-tuple and direction) per aggregation interval,
//! written to a file as AWS writes them ([`format`](mod@format)).
//!
//! A NAT gateway's network interface is one more covered interface (an [`EniCtx`] like an
//! ENI's): the data plane names the NAT gateway a frame reached ([`Seen::nat`]), and the
//! interface logs the packet arriving (as its sender addressed it, `dstaddr` its private IP) and
//! leaving translated (`srcaddr` its private IP), as AWS's example "traffic through a NAT
//! gateway" shows. The Elastic IP never appears: the internet gateway maps it beyond.
//!
//! - [`FlowLogConfig`] is compiled from a model off the packet path (at start and after every
//!   live change) and handed to the data plane, which keeps the state by flow log id and ENI id.
//! - [`FlowLogs`] is the data plane's side: which ports are covered, and a bounded aggregation
//!   table ([`MAX_FLOWS`]) fed from the capture slow path with the frame as the instance sent it
//!   (sender side) and as it was delivered (receiver side). With no flow log the data plane pays
//!   one branch per frame. The housekeeping tick closes intervals; closed records go to the
//!   writer through a bounded queue ([`QUEUE`]), never blocking forwarding.
//! - [`writer`] runs in the forwarder: records in, lines appended to the destination files.
//!
//! Time is passed in (Unix seconds), so the aggregation is tested without a clock.
//!
//! What is logged, as in AWS: traffic a group or ACL let through (ACCEPT) or refused (REJECT);
//! not the fabric's own services (Amazon DNS, DHCP, metadata, time sync, the router's
//! addresses) nor ARP, nor frames the fabric dropped for other reasons (no route, source check).

pub mod format;
pub mod writer;

#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};
use hashbrown::HashMap;

use self::format::{aws_tcp_flags, az_id_of, parse_format, region_of, Action, EniInfo, Field, FlowData, RecordKind};
use super::Seen;
use crate::model::{Cidr, EniIdx, Model, NatIdx, TrafficType};
use crate::packet::{self, IpProto, L3Meta};
use crate::pipeline::{DropReason, Verdict};

/// Flows aggregated at once across every flow log; past it a new flow is counted as skipped and
/// its ENI gets a SKIPDATA record for the interval.
pub const MAX_FLOWS: usize = 16_384;

/// Batches of closed records queued towards the writer; past it records are lost (counted).
pub const QUEUE: usize = 1024;

/// The account id written when a flow log names none.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// One flow log, compiled.
#[derive(Debug)]
pub struct Spec {
    /// Its id.
    pub id: String,
    /// The file records are appended to.
    pub path: PathBuf,
    /// The record's fields.
    pub fields: Vec<Field>,
    /// `account-id`.
    pub account: String,
    /// Which records are kept.
    pub traffic: TrafficType,
    /// Seconds per aggregation interval.
    pub interval: u64,
    /// Records written to the file.
    pub written: AtomicU64,
    /// Records lost (the writer's queue was full, or the file could not be written).
    pub dropped: AtomicU64,
}

impl Spec {
    /// Whether two specs write the same records to the same place.
    fn same(&self, o: &Spec) -> bool {
        (&self.id, &self.path, &self.fields, &self.account, self.traffic, self.interval)
            == (&o.id, &o.path, &o.fields, &o.account, o.traffic, o.interval)
    }
}

/// An ENI a flow log covers, with what its records say about it.
#[derive(Debug, PartialEq, Eq)]
pub struct EniCtx {
    /// What records say about the ENI.
    pub info: EniInfo,
    /// Its subnet's CIDR (the router and DNS addresses are not logged).
    subnet: Cidr,
    /// Its VPC's CIDR (Amazon DNS is base + 2).
    vpc: Cidr,
    /// Public addresses associated with it (egress through them: traffic path 2).
    eips: Vec<Ipv4Addr>,
    /// The NAT gateway (by id) whose interface this is; `None` for an ENI.
    nat_gateway: Option<String>,
}

impl EniCtx {
    fn new(m: &Model, e: EniIdx) -> EniCtx {
        let eni = &m.enis[e.index()];
        let subnet = m.subnet_of(e);
        let vpc = &m.vpcs[subnet.vpc.index()];
        let az = subnet.availability_zone.as_deref();
        EniCtx {
            info: EniInfo {
                id: eni.id.clone(),
                primary: eni.private_ip,
                vpc_id: vpc.id.clone(),
                subnet_id: subnet.id.clone(),
                instance_id: eni.attachment.map(|a| m.instances[a.instance.index()].id.clone()),
                region: az.and_then(region_of),
                az_id: az.and_then(az_id_of),
            },
            subnet: subnet.cidr,
            vpc: vpc.cidr,
            eips: m
                .elastic_ips
                .iter()
                .filter(|x| x.association.is_some_and(|(a, _)| a == e))
                .map(|x| x.public_ip)
                .collect(),
            nat_gateway: None,
        }
    }

    /// NAT gateway `n`'s network interface: requester-managed, so no instance; its primary IP
    /// is the NAT gateway's private IP.
    fn of_nat(m: &Model, n: NatIdx) -> EniCtx {
        let nat = &m.nat_gateways[n.index()];
        let subnet = &m.subnets[nat.subnet.index()];
        let vpc = &m.vpcs[subnet.vpc.index()];
        let az = subnet.availability_zone.as_deref();
        EniCtx {
            info: EniInfo {
                id: nat.interface_id(),
                primary: nat.private_ip,
                vpc_id: vpc.id.clone(),
                subnet_id: subnet.id.clone(),
                instance_id: None,
                region: az.and_then(region_of),
                az_id: az.and_then(az_id_of),
            },
            subnet: subnet.cidr,
            vpc: vpc.cidr,
            eips: Vec::new(),
            nat_gateway: Some(nat.id.clone()),
        }
    }

    /// Traffic AWS does not log: to or from Amazon DNS, the router's reserved addresses,
    /// metadata and time sync, and DHCP.
    fn not_logged(&self, peer: Ipv4Addr, proto: IpProto, src_port: u16, dst_port: u16) -> bool {
        const LINK_LOCAL_SERVICES: [Ipv4Addr; 3] =
            [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(169, 254, 169, 123), Ipv4Addr::new(169, 254, 169, 253)];
        let off = u32::from(peer).wrapping_sub(u32::from(self.subnet.addr));
        LINK_LOCAL_SERVICES.contains(&peer)
            || (1..=3).contains(&off)
            || peer == self.vpc.nth(2)
            || (proto == IpProto::UDP && [67, 68].contains(&src_port) && [67, 68].contains(&dst_port))
    }
}

/// What one flow log wrote and lost, for `status` and `metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowLogStats {
    /// The flow log's id.
    pub id: String,
    /// Records written to its file.
    pub written: u64,
    /// Records lost (the writer's queue was full, or the file could not be written).
    pub dropped: u64,
}

/// Every flow log of a model, compiled, with the ENIs (and NAT gateway interfaces) each covers.
#[derive(Clone, Debug, Default)]
pub struct FlowLogConfig {
    logs: Vec<(Arc<Spec>, Vec<Arc<EniCtx>>)>,
    /// Every ENI's VPC (by ENI id), for `traffic-path`.
    vpc_of: Vec<(String, u32)>,
}

impl FlowLogConfig {
    /// Compiles the model's flow logs (checked by validation, so their formats parse).
    pub fn new(model: &Model) -> FlowLogConfig {
        let ctx: Vec<Arc<EniCtx>> =
            (0..model.enis.len()).map(|e| Arc::new(EniCtx::new(model, EniIdx(e as u32)))).collect();
        let nat_ctx: Vec<Arc<EniCtx>> =
            (0..model.nat_gateways.len()).map(|n| Arc::new(EniCtx::of_nat(model, NatIdx(n as u32)))).collect();
        let logs = model
            .flow_logs
            .iter()
            .map(|f| {
                let fields = match &f.log_format {
                    // Validation parsed it already; a format it let through always parses.
                    Some(s) => parse_format(s).unwrap_or_else(|_| format::DEFAULT_FORMAT.to_vec()),
                    None => format::DEFAULT_FORMAT.to_vec(),
                };
                let spec = Spec {
                    id: f.id.clone(),
                    path: PathBuf::from(&f.destination),
                    fields,
                    account: f.account_id.clone().unwrap_or_else(|| DEFAULT_ACCOUNT.to_string()),
                    traffic: f.traffic_type,
                    interval: u64::from(f.max_aggregation_interval.max(1)),
                    written: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                };
                let enis = model.flow_log_enis(f.resource).into_iter().map(|e| Arc::clone(&ctx[e.index()]));
                let nats = model.flow_log_nat_gateways(f.resource).into_iter().map(|n| Arc::clone(&nat_ctx[n.index()]));
                let enis = enis.chain(nats).collect();
                (Arc::new(spec), enis)
            })
            .collect();
        let vpc_of =
            (0..model.enis.len()).map(|e| (model.enis[e].id.clone(), model.vpc_of(EniIdx(e as u32)).0)).collect();
        FlowLogConfig { logs, vpc_of }
    }

    /// Whether the model has no flow log.
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }
}

/// A closed record on its way to the writer.
#[derive(Debug, Clone)]
pub struct Record {
    /// The flow log it belongs to.
    pub spec: Arc<Spec>,
    /// The ENI it is about.
    pub eni: Arc<EniCtx>,
    /// What it reports.
    pub kind: RecordKind,
    /// Unix seconds.
    pub start: u64,
    /// Unix seconds.
    pub end: u64,
}

impl Record {
    /// The record as a line of its flow log's format (no newline).
    pub fn line(&self) -> String {
        let mut s = String::new();
        format::write_record(
            &mut s,
            &self.spec.fields,
            &self.spec.account,
            &self.eni.info,
            &self.kind,
            self.start,
            self.end,
        );
        s
    }
}

/// What goes to the writer.
#[derive(Debug)]
pub enum Msg {
    /// Records of closed intervals.
    Batch(Vec<Record>),
    /// Write what came before and end.
    Stop,
}

/// An ENI of a flow log, in the data plane.
#[derive(Debug)]
struct Slot {
    ctx: Arc<EniCtx>,
    /// Traffic was seen in the current interval.
    seen: bool,
    /// New flows not aggregated for lack of room in the current interval.
    skipped: u64,
}

/// A flow log in the data plane: its current interval and ENIs.
#[derive(Debug)]
struct LogState {
    spec: Arc<Spec>,
    /// Start of the current interval (Unix seconds, a multiple of the interval).
    window: u64,
    enis: Vec<Slot>,
}

/// One aggregated flow: flow log, ENI (slot), the packet's 5-tuple, direction and action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    log: u16,
    slot: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    proto: u8,
    egress: bool,
    reject: bool,
}

/// Counts of one flow in the current interval.
#[derive(Clone, Copy, Debug)]
struct Agg {
    packets: u64,
    bytes: u64,
    first: u64,
    last: u64,
    tcp_flags: u8,
    traffic_path: Option<u8>,
}

/// The data plane's flow logs: coverage by port, the aggregation table, the way to the writer.
#[derive(Debug, Default)]
pub struct FlowLogs {
    sink: Option<Sender<Msg>>,
    logs: Vec<LogState>,
    /// By port index: the (flow log, slot) pairs covering it.
    by_port: Vec<Vec<(u16, u16)>>,
    /// By NAT gateway index: the (flow log, slot) pairs covering its interface.
    by_nat: Vec<Vec<(u16, u16)>>,
    /// Some NAT gateway's interface is covered (asked of every frame: kept, not searched).
    nat_watched: bool,
    /// By port index: the ENI's VPC.
    vpc_by_port: Vec<Option<u32>>,
    vpc_of: Vec<(String, u32)>,
    table: HashMap<Key, Agg>,
    /// Batches lost because the writer's queue was full.
    lost_batches: u64,
}

/// Where a frame is accounted: an ENI's port, or a NAT gateway's interface (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Covered {
    Port(usize),
    Nat(usize),
}

/// An address the interface saw other than the frame's: the internet gateway's 1:1 translation
/// of a NAT gateway's Elastic IP happens beyond its interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readdress {
    AsIs,
    Source(Ipv4Addr),
    Destination(Ipv4Addr),
}

/// What a NAT gateway's interface logs of a frame that reached it: whether it arrived (ACCEPT,
/// or REJECT when the NAT gateway's subnet ACL refused it on the way in), and whether it left
/// translated (ACCEPT with its traffic path, or REJECT when that ACL refused it on the way out).
/// As `refused()` says for ENIs, only an ACL makes REJECT (a NAT gateway has no security group):
/// what the NAT gateway itself refuses (unsolicited inbound, no free port, a protocol it does
/// not translate) arrived, ACCEPT, and never left, as AWS logs it.
fn at_nat(verdict: Verdict, from: usize, outbound: bool) -> (Option<Action>, Option<(Action, Option<u8>)>) {
    // Outbound, the pipeline finds the NAT gateway's own ACLs after the sender's subnet ACL
    // (before the NAT gateway is reached), so an ACL drop seen here is the NAT subnet's.
    let left_path = if matches!(verdict, Verdict::ToInternet) { Some(2) } else { Some(1) };
    match verdict {
        Verdict::Drop(DropReason::NetworkAclIngress) => (Some(Action::Reject), None),
        Verdict::Drop(DropReason::NetworkAclEgress) => (Some(Action::Accept), Some((Action::Reject, None))),
        // The sender's own connection table refused it: it never left the sender.
        Verdict::DropAt(_, e) if outbound && e.index() == from => (None, None),
        // Left towards the internet, or towards the instance (which may still refuse it).
        Verdict::ToInternet | Verdict::Forward(_) | Verdict::DropAt(..) => {
            (Some(Action::Accept), Some((Action::Accept, left_path)))
        }
        Verdict::Drop(_) | Verdict::Reply | Verdict::ReplyWith(_) | Verdict::ToService => (Some(Action::Accept), None),
    }
}

/// A frame as one interface saw it.
#[derive(Clone, Copy)]
struct Sighting<'a> {
    frame: &'a [u8],
    /// The segment size when the frame is a TCP superframe (TSO).
    gso_size: Option<u16>,
}

impl<'a> Sighting<'a> {
    fn input(seen: &Seen<'a>) -> Self {
        Sighting { frame: seen.input, gso_size: seen.gso_size }
    }

    fn output(seen: &Seen<'a>) -> Self {
        Sighting { frame: seen.output, gso_size: seen.gso_size }
    }

    /// Packets and IP bytes on the wire: a TSO superframe counts as the segments the device cuts
    /// it into on EC2, each with its own headers, as AWS counts them.
    fn wire(&self, total_len: u16) -> (u64, u64) {
        match self.gso_size.and_then(|mss| packet::segment::Superframe::new(self.frame, mss)) {
            Some(s) => (s.count() as u64, s.ip_bytes()),
            None => (1, u64::from(total_len)),
        }
    }
}

/// Drops a flow log reports as REJECT: what a group or a network ACL refused.
fn refused(r: DropReason) -> bool {
    matches!(
        r,
        DropReason::SecurityGroupEgress
            | DropReason::SecurityGroupIngress
            | DropReason::NetworkAclEgress
            | DropReason::NetworkAclIngress
    )
}

impl FlowLogs {
    /// Whether any flow log runs: without one the data plane skips all of this.
    #[inline]
    pub fn is_active(&self) -> bool {
        !self.logs.is_empty()
    }

    /// Whether a flow log covers `port` (the frame it reads must be kept as read).
    pub fn watches(&self, port: usize) -> bool {
        self.by_port.get(port).is_some_and(|v| !v.is_empty())
    }

    /// Whether a flow log covers a NAT gateway's interface: then every frame is walked with an
    /// observer that notes the NAT gateway, and kept as read (its way in is logged from it).
    #[inline]
    pub fn watches_nat_gateways(&self) -> bool {
        self.nat_watched
    }

    /// The (flow log, slot) pairs covering `at`.
    fn slots(&self, at: Covered) -> &[(u16, u16)] {
        let v = match at {
            Covered::Port(p) => self.by_port.get(p),
            Covered::Nat(n) => self.by_nat.get(n),
        };
        v.map_or(&[], Vec::as_slice)
    }

    /// Where closed records go.
    pub fn set_sink(&mut self, sink: Sender<Msg>) {
        self.sink = Some(sink);
    }

    /// Batches lost because the writer's queue was full.
    pub fn lost_batches(&self) -> u64 {
        self.lost_batches
    }

    /// What each flow log wrote and lost so far.
    pub fn stats(&self) -> Vec<FlowLogStats> {
        self.logs
            .iter()
            .map(|l| FlowLogStats {
                id: l.spec.id.clone(),
                written: l.spec.written.load(Ordering::Relaxed),
                dropped: l.spec.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Takes a new configuration (a live change): flow logs that stay (same id, same settings)
    /// keep their interval and flows, re-keyed by ENI id; those removed or changed, and flows
    /// of ENIs no longer covered, are written now.
    pub fn configure(&mut self, config: FlowLogConfig, port_ids: &[String], nat_ids: &[String], now: u64) {
        let old_logs = std::mem::take(&mut self.logs);
        let mut remap: HashMap<(u16, u16), (u16, u16)> = HashMap::new();
        let mut kept_old = vec![false; old_logs.len()];
        for (spec, enis) in config.logs.into_iter().take(usize::from(u16::MAX)) {
            let l = self.logs.len() as u16;
            let prev = old_logs.iter().position(|o| o.spec.same(&spec));
            let (spec, window) = match prev {
                Some(p) => {
                    kept_old[p] = true;
                    (Arc::clone(&old_logs[p].spec), old_logs[p].window)
                }
                None => {
                    let w = now - now % spec.interval;
                    (spec, w)
                }
            };
            let mut slots = Vec::with_capacity(enis.len());
            for (s, ctx) in enis.into_iter().take(usize::from(u16::MAX)).enumerate() {
                let mut slot = Slot { ctx, seen: false, skipped: 0 };
                if let Some(p) = prev {
                    if let Some(os) = old_logs[p].enis.iter().position(|o| o.ctx.info.id == slot.ctx.info.id) {
                        slot.seen = old_logs[p].enis[os].seen;
                        slot.skipped = old_logs[p].enis[os].skipped;
                        remap.insert((p as u16, os as u16), (l, s as u16));
                    }
                }
                slots.push(slot);
            }
            self.logs.push(LogState { spec, window, enis: slots });
        }
        // Flows carried over, or written now.
        let mut out = Vec::new();
        let old_table = std::mem::take(&mut self.table);
        self.table.reserve(if self.logs.is_empty() { 0 } else { MAX_FLOWS });
        for (k, a) in old_table {
            match remap.get(&(k.log, k.slot)) {
                Some(&(log, slot)) => {
                    self.table.insert(Key { log, slot, ..k }, a);
                }
                None => out.push(flow_record(&old_logs, &k, &a)),
            }
        }
        for (p, o) in old_logs.iter().enumerate() {
            if !kept_old[p] {
                status_records(o, now.max(o.window), &mut out);
            }
        }
        self.vpc_of = config.vpc_of;
        self.rekey(port_ids, nat_ids);
        self.emit(out);
    }

    /// Ports or NAT gateways were added, removed or reordered (a swap): resolve coverage by ENI
    /// id and NAT gateway id again.
    pub fn rekey(&mut self, port_ids: &[String], nat_ids: &[String]) {
        let index: HashMap<&str, usize> = port_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let nat_index: HashMap<&str, usize> = nat_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        self.by_port = vec![Vec::new(); port_ids.len()];
        self.by_nat = vec![Vec::new(); nat_ids.len()];
        for (l, log) in self.logs.iter().enumerate() {
            for (s, slot) in log.enis.iter().enumerate() {
                let at = match &slot.ctx.nat_gateway {
                    Some(nat) => nat_index.get(nat.as_str()).map(|&n| &mut self.by_nat[n]),
                    None => index.get(slot.ctx.info.id.as_str()).map(|&p| &mut self.by_port[p]),
                };
                if let Some(at) = at {
                    at.push((l as u16, s as u16));
                }
            }
        }
        self.nat_watched = self.by_nat.iter().any(|v| !v.is_empty());
        self.vpc_by_port = vec![None; port_ids.len()];
        for (id, vpc) in &self.vpc_of {
            if let Some(&p) = index.get(id.as_str()) {
                self.vpc_by_port[p] = Some(*vpc);
            }
        }
    }

    /// Accounts one handled frame: the sender's side with the frame as read, the receiver's
    /// with the frame as delivered (or as refused), and the interface of the NAT gateway it
    /// reached, both ways. `now` is Unix seconds.
    pub fn record(&mut self, seen: &Seen<'_>, internet: usize, now: u64) {
        if let Some(n) = seen.nat {
            if !self.slots(Covered::Nat(n.index())).is_empty() {
                self.record_at_nat(n, seen, internet, now);
            }
        }
        let from = seen.from;
        if from != internet && self.watches(from) {
            let action = match seen.verdict {
                Verdict::Forward(_) | Verdict::ToInternet => Some(Action::Accept),
                Verdict::DropAt(r, e) if e.index() == from => refused(r).then_some(Action::Reject),
                // Let out by the sender, refused at the receiver.
                Verdict::DropAt(..) => Some(Action::Accept),
                // Let out by the sender, refused at the NAT gateway's interface (its subnet's ACL).
                Verdict::Drop(_) if seen.nat.is_some() => Some(Action::Accept),
                Verdict::Drop(r) => refused(r).then_some(Action::Reject),
                // Fabric answers and instance metadata are never logged, as on AWS.
                Verdict::Reply | Verdict::ReplyWith(_) | Verdict::ToService => None,
            };
            let path = match seen.verdict {
                Verdict::ToInternet => {
                    let via_own_eip = packet::parse(seen.output).ok().is_some_and(|m| match m.l3 {
                        L3Meta::Ipv4(ip) => self.first_ctx(from).is_some_and(|c| c.eips.contains(&ip.flow.src)),
                        _ => false,
                    });
                    // Through the internet gateway, else through a NAT gateway in the VPC.
                    Some(if via_own_eip { 2 } else { 1 })
                }
                Verdict::Forward(to) | Verdict::DropAt(_, to) => {
                    let same = self.vpc_by_port.get(to.index()) == self.vpc_by_port.get(from);
                    Some(if same { 1 } else { 4 })
                }
                _ => None,
            };
            if let Some(action) = action {
                let path = if action == Action::Accept { path } else { None };
                self.account(Covered::Port(from), Sighting::input(seen), true, action, path, Readdress::AsIs, now);
            }
        }
        let to = match seen.verdict {
            Verdict::Forward(e) | Verdict::DropAt(_, e) => e.index(),
            _ => return,
        };
        if to != internet && self.watches(to) {
            let action = match seen.verdict {
                Verdict::Forward(_) => Some(Action::Accept),
                Verdict::DropAt(r, _) if refused(r) => Some(Action::Reject),
                _ => None,
            };
            if let Some(action) = action {
                self.account(Covered::Port(to), Sighting::output(seen), false, action, None, Readdress::AsIs, now);
            }
        }
    }

    /// NAT gateway `n`'s interface: the packet arriving, then leaving translated (see
    /// [`at_nat`]). Outbound it leaves with the NAT gateway's private IP as source (the
    /// internet gateway maps it to the Elastic IP beyond); inbound it arrived at that private IP
    /// (the internet gateway mapped the Elastic IP to it).
    fn record_at_nat(&mut self, n: NatIdx, seen: &Seen<'_>, internet: usize, now: u64) {
        let at = Covered::Nat(n.index());
        let Some(&(l, s)) = self.slots(at).first() else { return };
        let own = self.logs[usize::from(l)].enis[usize::from(s)].ctx.info.primary;
        let outbound = seen.from != internet;
        let (arrived, left) = at_nat(seen.verdict, seen.from, outbound);
        if let Some(action) = arrived {
            let addressed = if outbound { Readdress::AsIs } else { Readdress::Destination(own) };
            self.account(at, Sighting::input(seen), false, action, None, addressed, now);
        }
        if let Some((action, path)) = left {
            let addressed = if outbound { Readdress::Source(own) } else { Readdress::AsIs };
            self.account(at, Sighting::output(seen), true, action, path, addressed, now);
        }
    }

    fn first_ctx(&self, port: usize) -> Option<&Arc<EniCtx>> {
        let &(l, s) = self.by_port.get(port)?.first()?;
        Some(&self.logs[usize::from(l)].enis[usize::from(s)].ctx)
    }

    /// Adds one frame to every flow log covering `at`, with its addresses as that interface saw
    /// them.
    #[allow(clippy::too_many_arguments)]
    fn account(
        &mut self,
        at: Covered,
        sighting: Sighting<'_>,
        egress: bool,
        action: Action,
        path: Option<u8>,
        addressed: Readdress,
        now: u64,
    ) {
        let Ok(meta) = packet::parse(sighting.frame) else { return };
        let L3Meta::Ipv4(ip) = meta.l3 else { return };
        let (packets, bytes) = sighting.wire(ip.total_len);
        let mut flow = ip.flow;
        match addressed {
            Readdress::AsIs => {}
            Readdress::Source(a) => flow.src = a,
            Readdress::Destination(a) => flow.dst = a,
        }
        let (src_port, dst_port) = if flow.proto.has_ports() { (flow.l4.src_port, flow.l4.dst_port) } else { (0, 0) };
        let tcp = if flow.proto == IpProto::TCP { aws_tcp_flags(flow.l4.tcp_flags.0) } else { 0 };
        let peer = if egress { flow.dst } else { flow.src };
        for i in 0..self.slots(at).len() {
            let (l, s) = self.slots(at)[i];
            let (li, si) = (usize::from(l), usize::from(s));
            if self.logs[li].enis[si].ctx.not_logged(peer, flow.proto, src_port, dst_port) {
                continue;
            }
            if now >= self.logs[li].window + self.logs[li].spec.interval {
                self.close_log(li, now);
            }
            let log = &mut self.logs[li];
            log.enis[si].seen = true;
            let keep = match log.spec.traffic {
                TrafficType::All => true,
                TrafficType::Accept => action == Action::Accept,
                TrafficType::Reject => action == Action::Reject,
            };
            if !keep {
                continue;
            }
            let key = Key {
                log: l,
                slot: s,
                src: flow.src,
                dst: flow.dst,
                src_port,
                dst_port,
                proto: flow.proto.0,
                egress,
                reject: action == Action::Reject,
            };
            let full = self.table.len() >= MAX_FLOWS;
            match self.table.get_mut(&key) {
                Some(a) => {
                    a.packets += packets;
                    a.bytes += bytes;
                    a.last = now;
                    a.tcp_flags |= tcp;
                }
                None if full => log.enis[si].skipped += 1,
                None => {
                    let agg = Agg { packets, bytes, first: now, last: now, tcp_flags: tcp, traffic_path: path };
                    self.table.insert(key, agg);
                }
            }
        }
    }

    /// Closes every interval that has ended by `now` (the housekeeping tick).
    pub fn tick(&mut self, now: u64) {
        for l in 0..self.logs.len() {
            if now >= self.logs[l].window + self.logs[l].spec.interval {
                self.close_log(l, now);
            }
        }
    }

    /// Writes every flow log's current interval as it stands (the forwarder stops).
    pub fn close_all(&mut self, now: u64) {
        let mut out = Vec::new();
        for (k, a) in self.table.drain() {
            out.push(flow_record(&self.logs, &k, &a));
        }
        for log in &mut self.logs {
            status_records(log, now.max(log.window), &mut out);
            log.window = now;
        }
        self.emit(out);
    }

    /// Writes log `l`'s interval and starts the one holding `now`.
    fn close_log(&mut self, l: usize, now: u64) {
        let log = &self.logs[l];
        let next = now - now % log.spec.interval;
        let mut out: Vec<Record> = Vec::new();
        let logs = &self.logs;
        for (k, a) in self.table.extract_if(|k, _| usize::from(k.log) == l) {
            out.push(flow_record(logs, &k, &a));
        }
        let end = (log.window + log.spec.interval).max(next);
        status_records(log, end, &mut out);
        let log = &mut self.logs[l];
        log.window = next;
        for s in &mut log.enis {
            s.seen = false;
            s.skipped = 0;
        }
        self.emit(out);
    }

    /// Queues records for the writer without waiting; counts what does not fit.
    fn emit(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let Some(sink) = &self.sink else { return };
        match sink.try_send(Msg::Batch(records)) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Batch(lost)) | TrySendError::Disconnected(Msg::Batch(lost))) => {
                self.lost_batches += 1;
                for r in lost {
                    r.spec.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {}
        }
    }
}

/// The record of one aggregated flow. AWS's address rule: `srcaddr` (egress) or `dstaddr`
/// (ingress) is the ENI's primary private IP whatever address of the ENI the packet used.
fn flow_record(logs: &[LogState], k: &Key, a: &Agg) -> Record {
    let log = &logs[usize::from(k.log)];
    let ctx = &log.enis[usize::from(k.slot)].ctx;
    let primary = ctx.info.primary;
    let (src, dst) = if k.egress { (primary, k.dst) } else { (k.src, primary) };
    let data = FlowData {
        src,
        dst,
        pkt_src: k.src,
        pkt_dst: k.dst,
        src_port: k.src_port,
        dst_port: k.dst_port,
        protocol: k.proto,
        packets: a.packets,
        bytes: a.bytes,
        action: if k.reject { Action::Reject } else { Action::Accept },
        tcp_flags: a.tcp_flags,
        egress: k.egress,
        traffic_path: if k.egress { a.traffic_path } else { None },
    };
    Record {
        spec: Arc::clone(&log.spec),
        eni: Arc::clone(ctx),
        kind: RecordKind::Flow(data),
        start: a.first,
        end: a.last,
    }
}

/// NODATA for each ENI without traffic in the interval, SKIPDATA for each that lost records.
fn status_records(log: &LogState, end: u64, out: &mut Vec<Record>) {
    for s in &log.enis {
        let kind = if s.skipped > 0 {
            RecordKind::SkipData
        } else if !s.seen {
            RecordKind::NoData
        } else {
            continue;
        };
        out.push(Record { spec: Arc::clone(&log.spec), eni: Arc::clone(&s.ctx), kind, start: log.window, end });
    }
}
