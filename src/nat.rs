//! Address translation at the VPC's edge: the internet gateway's 1:1 Elastic IP mappings
//! ([`IgwMap`]) and a NAT gateway's port allocation ([`NatTable`]).
//!
//! Contract. Both are pure: no clock reads, no I/O. [`IgwMap`] is compiled once from the model.
//! [`NatTable`] takes `now` (a [`Duration`] since the caller's epoch) on every call that depends on
//! time and is aged from outside with [`NatTable::poll_timeout`] / [`NatTable::handle_timeout`]
//! (sans-IO, like [`crate::conntrack`]). Nothing here panics on any input; deadlines saturate.
//!
//! AWS behaviour modelled (NAT gateway): the source becomes the NAT's address and a port from
//! 1024–65535 (ICMP: a new echo id from the same range); at most 55,000 simultaneous connections
//! per (destination IP, destination port, protocol), past which new connections fail and are
//! counted (`ErrorPortAllocation`); a port may serve several destinations at once; a mapping idle
//! for 350 s is gone, and a host that then sends on that TCP connection gets an RST (the caller
//! asks [`NatTable::expired_recently`] to decide); nothing unsolicited comes in.
//!
//! Invariants of [`NatTable`].
//! - A mapping is live iff `now < last_seen + idle_timeout`; an expired mapping is never answered
//!   by [`NatTable::inbound`], [`NatTable::peek_inbound`] or [`NatTable::peek_outbound`], even
//!   before it is reclaimed. `last_seen` never moves backwards.
//! - For one (protocol, remote ip, remote port) an outside port belongs to at most one mapping:
//!   the inbound index `(destination, outside port) -> flow` is exactly the in-use set.
//! - Per destination, at most `min(max_per_destination, ports in range)` mappings are held.
//! - Expiry queue as in conntrack: each mapping has one pending item at or before its deadline,
//!   stale items are dropped or re-queued lazily, one [`NatTable::handle_timeout`] call examines at
//!   most [`HANDLE_TIMEOUT_BUDGET`] items, and the queue is rebuilt when stale items outnumber
//!   mappings, so it stays O(mappings).
//! - Tombstones: the flow keys of TCP mappings that expired are remembered for [`TOMBSTONE_TTL`],
//!   at most [`TOMBSTONE_CAP`] of them (oldest forgotten first).
//!
//! Keys. The caller gives a flow as `(protocol, inside endpoint, remote endpoint)`, taken from the
//! packet's [`Flow`](crate::packet::Flow): for TCP/UDP the ports, for ICMP echo the id as the
//! inside "port" and 0 as the remote one. The private `FlowKey` holds exactly that: unlike
//! conntrack's `ConnKey` it is directed (inside and remote are not interchangeable) and carries no
//! flags or ICMP type, which a mapping does not depend on. `Dest` is its remote half, what the
//! per-destination limit counts over.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

use hashbrown::HashMap;

use crate::model::{EniIdx, Model, NatIdx, VpcIdx};
use crate::packet::IpProto;

/// AWS's source port range for NAT gateway translations.
pub const AWS_PORTS: RangeInclusive<u16> = 1024..=65535;
/// AWS's limit of simultaneous connections per (destination IP, destination port, protocol).
pub const AWS_MAX_PER_DESTINATION: usize = 55_000;
/// AWS's NAT gateway idle timeout.
pub const AWS_IDLE_TIMEOUT: Duration = Duration::from_secs(350);

/// How long the key of an expired TCP mapping is remembered, so that a host still sending on
/// that connection can be answered with an RST. AWS does not say; a few minutes covers TCP's
/// retransmission and keepalive-probe intervals.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(300);
/// Most tombstones kept at once; past it the oldest are forgotten (those hosts then open a new
/// mapping instead of getting an RST, which is harmless).
pub const TOMBSTONE_CAP: usize = 65_536;

/// Most expiry-queue items one [`NatTable::handle_timeout`] call examines (and most tombstones
/// it prunes), so one call never stalls the packet loop.
pub const HANDLE_TIMEOUT_BUDGET: usize = 4096;

/// Mappings a table may hold and still shrink after a large expiry (the re-hash is brief).
const SHRINK_BELOW: usize = 1 << 14;

/// What a shrunk table keeps room for, at least.
const SHRINK_FLOOR: usize = 1 << 10;

/// Stale queue items tolerated beyond twice the mapping count before the queue is rebuilt.
const COMPACT_SLACK: usize = 1024;

/// The internet gateway's 1:1 translations between private IPs and Elastic IPs, from the model's
/// Elastic IP associations and NAT gateways' Elastic IPs. Private addresses are per VPC (two
/// unpeered VPCs may use the same CIDR); public addresses are unique across the lab (validated).
#[derive(Clone, Debug, Default)]
pub struct IgwMap {
    to_public: HashMap<(VpcIdx, Ipv4Addr), Ipv4Addr>,
    to_eni: HashMap<Ipv4Addr, (EniIdx, Ipv4Addr)>,
    to_nat: HashMap<Ipv4Addr, (NatIdx, Ipv4Addr)>,
    /// Every public address in use (the keys of both maps), sorted: asked of every packet leaving
    /// through the gateway, which a binary search answers cheaper than two hashed lookups.
    in_use: Vec<u32>,
}

impl IgwMap {
    /// Compiles the mappings of `model`.
    pub fn new(model: &Model) -> IgwMap {
        let mut m = IgwMap::default();
        for eip in &model.elastic_ips {
            let Some((eni, private)) = eip.association else { continue };
            let Some(vpc) = model.enis.get(eni.index()).and_then(|e| model.subnets.get(e.subnet.index())) else {
                continue; // cannot happen in a validated model: indices always resolve
            };
            m.to_public.insert((vpc.vpc, private), eip.public_ip);
            m.to_eni.insert(eip.public_ip, (eni, private));
        }
        for (i, nat) in model.nat_gateways.iter().enumerate() {
            let Some(eip) = nat.elastic_ip.and_then(|e| model.elastic_ips.get(e.index())) else { continue };
            let Some(subnet) = model.subnets.get(nat.subnet.index()) else { continue };
            m.to_public.insert((subnet.vpc, nat.private_ip), eip.public_ip);
            m.to_nat.insert(eip.public_ip, (NatIdx(i as u32), nat.private_ip));
        }
        m.in_use = m.to_eni.keys().chain(m.to_nat.keys()).map(|&ip| u32::from(ip)).collect();
        m.in_use.sort_unstable();
        m
    }

    /// Whether `public` is an Elastic IP in use here (an ENI's or a NAT gateway's).
    pub fn in_use(&self, public: Ipv4Addr) -> bool {
        let ip = u32::from(public);
        // Public addresses of a lab sit together; most destinations fall outside their span.
        match (self.in_use.first(), self.in_use.last()) {
            (Some(&lo), Some(&hi)) if (lo..=hi).contains(&ip) => self.in_use.binary_search(&ip).is_ok(),
            _ => false,
        }
    }

    /// Outbound: the public address of `private` in `vpc` (an ENI's associated Elastic IP, or a
    /// public NAT gateway's), `None` when it has none (AWS drops the packet at the gateway).
    pub fn public_of(&self, vpc: VpcIdx, private: Ipv4Addr) -> Option<Ipv4Addr> {
        self.to_public.get(&(vpc, private)).copied()
    }

    /// Inbound: the ENI and private IP an Elastic IP is associated with. A NAT gateway's Elastic
    /// IP is not an ENI's: see [`IgwMap::nat_of`].
    pub fn private_of(&self, public: Ipv4Addr) -> Option<(EniIdx, Ipv4Addr)> {
        self.to_eni.get(&public).copied()
    }

    /// Inbound: the NAT gateway owning Elastic IP `public`, and its private IP.
    pub fn nat_of(&self, public: Ipv4Addr) -> Option<(NatIdx, Ipv4Addr)> {
        self.to_nat.get(&public).copied()
    }

    /// Number of translations (ENI and NAT gateway ones).
    pub fn len(&self) -> usize {
        self.to_public.len()
    }

    /// No translations.
    pub fn is_empty(&self) -> bool {
        self.to_public.is_empty()
    }
}

/// Why a NAT gateway could not translate a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    /// AWS `ErrorPortAllocation`: no free port for that (remote ip, remote port, protocol).
    #[error("no free NAT port for this destination (ErrorPortAllocation)")]
    PortAllocation,
}

/// A NAT gateway's counters, named after the CloudWatch metrics AWS publishes for one
/// (`AWS/NATGateway`). Plain integers bumped on the packet path; read in a snapshot.
///
/// vpclab's readings where AWS is terse: a connection *attempt* is a new translation asked for
/// (made, or refused for want of a port); it is *established* when the first packet from the
/// destination answers it (for TCP the SYN-ACK: AWS counts an attempt without a response as not
/// established); an *idle timeout* is a translation that ended after 350 s without packets (vpclab
/// does not follow TCP teardown at the NAT, so every translation ends that way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatCounters {
    /// `ConnectionAttemptCount`.
    pub connection_attempts: u64,
    /// `ConnectionEstablishedCount`.
    pub connections_established: u64,
    /// `ErrorPortAllocation`.
    pub port_allocation_errors: u64,
    /// `IdleTimeoutCount`.
    pub idle_timeouts: u64,
    /// `PacketsDropCount`: packets the NAT gateway itself refused (a protocol or fragment it does
    /// not translate, no port, a segment of a timed-out connection, unsolicited inbound).
    pub packets_dropped: u64,
    /// `PacketsInFromSource`: packets from instances that reached the NAT gateway.
    pub packets_in_from_source: u64,
    /// `BytesInFromSource`.
    pub bytes_in_from_source: u64,
    /// `PacketsOutToDestination`: packets translated and sent towards the internet.
    pub packets_out_to_destination: u64,
    /// `BytesOutToDestination`.
    pub bytes_out_to_destination: u64,
    /// `PacketsInFromDestination`: packets from the internet to the NAT gateway's address.
    pub packets_in_from_destination: u64,
    /// `BytesInFromDestination`.
    pub bytes_in_from_destination: u64,
    /// `PacketsOutToSource`: packets translated back and delivered to an instance.
    pub packets_out_to_source: u64,
    /// `BytesOutToSource`.
    pub bytes_out_to_source: u64,
    /// `ActiveConnectionCount` (a gauge): TCP translations held.
    pub active_tcp_connections: u64,
}

impl NatCounters {
    /// A packet of `len` bytes from an instance, translated and sent towards the internet.
    pub fn count_translated_out(&mut self, len: u64) {
        self.packets_in_from_source += 1;
        self.bytes_in_from_source += len;
        self.packets_out_to_destination += 1;
        self.bytes_out_to_destination += len;
    }

    /// A packet of `len` bytes from the internet, translated back and delivered to an instance.
    pub fn count_translated_in(&mut self, len: u64) {
        self.packets_in_from_destination += 1;
        self.bytes_in_from_destination += len;
        self.packets_out_to_source += 1;
        self.bytes_out_to_source += len;
    }
}

/// Counters of several workers' shards of one NAT gateway, added up.
impl std::ops::AddAssign for NatCounters {
    fn add_assign(&mut self, o: NatCounters) {
        self.connection_attempts += o.connection_attempts;
        self.connections_established += o.connections_established;
        self.port_allocation_errors += o.port_allocation_errors;
        self.idle_timeouts += o.idle_timeouts;
        self.packets_dropped += o.packets_dropped;
        self.packets_in_from_source += o.packets_in_from_source;
        self.bytes_in_from_source += o.bytes_in_from_source;
        self.packets_out_to_destination += o.packets_out_to_destination;
        self.bytes_out_to_destination += o.bytes_out_to_destination;
        self.packets_in_from_destination += o.packets_in_from_destination;
        self.bytes_in_from_destination += o.bytes_in_from_destination;
        self.packets_out_to_source += o.packets_out_to_source;
        self.bytes_out_to_source += o.bytes_out_to_source;
        self.active_tcp_connections += o.active_tcp_connections;
    }
}

/// One translation of a NAT gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatMapping {
    /// IP protocol.
    pub protocol: IpProto,
    /// The inside source address and port (ICMP: echo id).
    pub inside: (Ipv4Addr, u16),
    /// The source port (ICMP: echo id) on the NAT's address.
    pub outside_port: u16,
    /// The remote address and port (0 for ICMP).
    pub remote: (Ipv4Addr, u16),
    /// The last packet, either way.
    pub last_seen: Duration,
    /// Packets translated, both ways.
    pub packets: u64,
    /// Whether a packet from the remote side has answered it (`ConnectionEstablishedCount`).
    pub answered: bool,
}

/// What translating one outbound packet takes ([`NatTable::plan_outbound`]), to be carried out by
/// [`NatTable::apply`] when the packet is forwarded and only shown when it is traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatPlan {
    key: FlowKey,
    port: u16,
    /// `None`: refresh the live mapping. `Some(cursor)`: create one, moving the destination's
    /// cursor to `cursor` when the scan found the port.
    new: Option<Option<u16>>,
}

impl NatPlan {
    /// The source port (ICMP: echo id) the packet leaves with.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether a new mapping is made (rather than a live one refreshed).
    pub fn is_new(&self) -> bool {
        self.new.is_some()
    }
}

/// An outbound flow as the NAT keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FlowKey {
    protocol: IpProto,
    inside: (Ipv4Addr, u16),
    remote: (Ipv4Addr, u16),
}

impl FlowKey {
    fn dest(self) -> Dest {
        Dest { protocol: self.protocol, remote: self.remote }
    }
}

/// What the per-destination limit counts over: (protocol, remote ip, remote port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Dest {
    protocol: IpProto,
    remote: (Ipv4Addr, u16),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    m: NatMapping,
    /// The deadline of this mapping's pending queue item.
    queued: Duration,
}

/// Ports held towards one destination and where the next search starts.
#[derive(Clone, Copy, Debug)]
struct DestState {
    used: usize,
    cursor: u16,
}

/// One NAT gateway's translations (for one NAT address).
#[derive(Clone, Debug)]
pub struct NatTable {
    nat_ip: Ipv4Addr,
    first: u16,
    last: u16,
    /// Ports in `first..=last` (0 for an empty range).
    range_len: usize,
    max_per_destination: usize,
    idle_timeout: Duration,
    map: HashMap<FlowKey, Slot>,
    /// `(destination, outside port) -> flow`: the in-use set per destination.
    by_outside: HashMap<(Dest, u16), FlowKey>,
    dests: HashMap<Dest, DestState>,
    queue: BinaryHeap<Reverse<(Duration, FlowKey)>>,
    /// Expired TCP flows and when they expired.
    tombstones: HashMap<FlowKey, Duration>,
    /// The same, in the order they were added (may hold stale items; at most [`TOMBSTONE_CAP`]).
    tomb_order: VecDeque<(Duration, FlowKey)>,
    /// Counted here and by the pipeline ([`NatTable::counters_mut`]); `active_tcp_connections`
    /// is kept as mappings come and go.
    counters: NatCounters,
    /// `(class, of)`: new translations get only ports `p` with `p % of == class`, the share of
    /// one of `of` forwarding workers (`(0, 1)`: every port); see [`NatTable::set_share`].
    share: (u16, u16),
    /// Whether a new translation keeps the inside port when it is free (a NAT instance's
    /// iptables MASQUERADE does); else it starts at a keyed-hash port (RFC 6056's algorithm 3).
    preserve_ports: bool,
    /// The key of that hash: per table, so the ports are not predictable from outside.
    port_key: std::collections::hash_map::RandomState,
}

impl NatTable {
    /// A table translating to `nat_ip` with source ports from `ports` (AWS: [`AWS_PORTS`]), at
    /// most `max_per_destination` mappings per destination (AWS: [`AWS_MAX_PER_DESTINATION`]),
    /// and mappings dropped after `idle_timeout` without packets (AWS: [`AWS_IDLE_TIMEOUT`]).
    /// An empty `ports` range makes every new flow fail with [`NatError::PortAllocation`].
    pub fn new(
        nat_ip: Ipv4Addr,
        ports: RangeInclusive<u16>,
        max_per_destination: usize,
        idle_timeout: Duration,
    ) -> NatTable {
        let (first, last) = (*ports.start(), *ports.end());
        let range_len = if first <= last { usize::from(last - first) + 1 } else { 0 };
        NatTable {
            nat_ip,
            first,
            last,
            range_len,
            max_per_destination,
            idle_timeout,
            map: HashMap::new(),
            by_outside: HashMap::new(),
            dests: HashMap::new(),
            queue: BinaryHeap::new(),
            tombstones: HashMap::new(),
            tomb_order: VecDeque::new(),
            counters: NatCounters::default(),
            share: (0, 1),
            preserve_ports: true,
            port_key: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Whether new translations keep the inside port when it is free (`true`, the default of a
    /// bare table) or start at a port chosen by a keyed hash of the flow over the whole range
    /// (`false`: what AWS's NAT gateway is configured to do in a lab, see the README).
    pub fn set_preserve_ports(&mut self, preserve: bool) {
        self.preserve_ports = preserve;
    }

    /// Makes this table worker `class`'s of `of` forwarding workers (`dataplane::owner`): new
    /// translations get only ports (and echo ids) `p` with `p % of == class`, so replies, which
    /// are owned by their port, come back to the worker holding the mapping; and the
    /// per-destination limit is shared out (each worker allows `max_per_destination / of`), so
    /// the workers together never exceed it. Existing translations keep their ports.
    pub fn set_share(&mut self, class: u16, of: u16) {
        self.share = (class % of.max(1), of.max(1));
    }

    /// The address translations use as source.
    pub fn nat_ip(&self) -> Ipv4Addr {
        self.nat_ip
    }

    /// Changes the source ports new translations are given (the NAT gateway's `ports` modified).
    /// Existing translations keep their ports, inside the new range or not, until they expire;
    /// meanwhile they still count towards their destination's limit. A destination's cursor
    /// outside the new range restarts at its first port. An empty range refuses every new flow.
    pub fn set_ports(&mut self, ports: RangeInclusive<u16>) {
        let (first, last) = (*ports.start(), *ports.end());
        self.first = first;
        self.last = last;
        self.range_len = if first <= last { usize::from(last - first) + 1 } else { 0 };
    }

    /// The source ports new translations are given.
    pub fn ports(&self) -> RangeInclusive<u16> {
        self.first..=self.last
    }

    fn deadline(&self, m: &NatMapping) -> Duration {
        m.last_seen.saturating_add(self.idle_timeout)
    }

    fn live(&self, now: Duration, m: &NatMapping) -> bool {
        now < self.deadline(m)
    }

    /// How long `m` lives on without packets; zero once it has expired (awaiting reclaim).
    pub fn remaining(&self, now: Duration, m: &NatMapping) -> Duration {
        self.deadline(m).saturating_sub(now)
    }

    /// Outbound packet from `inside` to `remote`: the outside source port (ICMP: echo id) of its
    /// mapping, refreshed, or of a new mapping: [`plan_outbound`](Self::plan_outbound) then
    /// [`apply`](Self::apply), or the refusal counted. `Err(PortAllocation)` when the destination
    /// has no port left; existing mappings keep working and other destinations are unaffected.
    ///
    /// For TCP the caller asks [`expired_recently`](Self::expired_recently) first: a segment other
    /// than a SYN on a timed-out connection is answered with an RST rather than translated.
    pub fn outbound(
        &mut self,
        now: Duration,
        protocol: IpProto,
        inside: (Ipv4Addr, u16),
        remote: (Ipv4Addr, u16),
    ) -> Result<u16, NatError> {
        match self.plan_outbound(now, protocol, inside, remote) {
            Ok(plan) => Ok(self.apply(now, plan)),
            Err(e) => {
                self.count_refusal();
                Err(e)
            }
        }
    }

    /// What translating this outbound packet takes, decided without changing any translation,
    /// so that `trace` shows exactly what forwarding then does with [`apply`](Self::apply): the
    /// live mapping's port, or the port a new mapping gets. A new mapping keeps the inside port
    /// when it is in range and no live mapping holds it for that destination, else takes the
    /// first such port from the destination's cursor on (wrapping).
    ///
    /// At the destination's limit, mappings that have already expired are reclaimed first (what
    /// [`handle_timeout`](Self::handle_timeout) does at its next call, which no lookup can tell
    /// apart), so a full destination frees up at the idle timeout exactly; then, still full, the
    /// packet is refused at once, without a scan. Trace and forwarding both plan this way, so the
    /// state they plan on, and the port they name, is the same.
    pub fn plan_outbound(
        &mut self,
        now: Duration,
        protocol: IpProto,
        inside: (Ipv4Addr, u16),
        remote: (Ipv4Addr, u16),
    ) -> Result<NatPlan, NatError> {
        let key = FlowKey { protocol, inside, remote };
        if let Some(slot) = self.map.get(&key) {
            if self.live(now, &slot.m) {
                return Ok(NatPlan { key, port: slot.m.outside_port, new: None });
            }
        }
        let dest = key.dest();
        let (class, of) = self.share;
        let capacity = (self.max_per_destination / usize::from(of)).min(self.range_len);
        let full = |t: &NatTable| t.dests.get(&dest).map_or(0, |d| d.used) >= capacity;
        if full(self) {
            self.handle_timeout(now);
            if full(self) {
                return Err(NatError::PortAllocation);
            }
        }
        let usable = |port: u16| match self.by_outside.get(&(dest, port)) {
            None => true,
            Some(holder) => self.map.get(holder).is_none_or(|slot| !self.live(now, &slot.m)),
        };
        let ours = |port: u16| (self.first..=self.last).contains(&port) && port % of == class;
        if self.preserve_ports && ours(inside.1) && usable(inside.1) {
            return Ok(NatPlan { key, port: inside.1, new: Some(None) });
        }
        let mut port = if self.preserve_ports {
            self.dests.get(&dest).map_or(self.first, |d| d.cursor)
        } else {
            // The same flow asks for the same start, so a trace and the forwarding agree.
            let hash = std::hash::BuildHasher::hash_one(&self.port_key, key);
            self.first.wrapping_add((hash % self.range_len.max(1) as u64) as u16)
        };
        for _ in 0..self.range_len {
            if !(self.first..=self.last).contains(&port) {
                port = self.first;
            }
            let next = if port == self.last { self.first } else { port + 1 };
            if ours(port) && usable(port) {
                return Ok(NatPlan { key, port, new: Some(Some(next)) });
            }
            port = next;
        }
        Err(NatError::PortAllocation)
    }

    /// Carries out a plan [`plan_outbound`](Self::plan_outbound) made at this `now` on this
    /// table, unchanged since: refreshes the mapping, or creates it (reclaiming the expired
    /// mappings it replaces: its own flow's, and the port's holder, which leaves a tombstone).
    /// Returns the outside port.
    pub fn apply(&mut self, now: Duration, plan: NatPlan) -> u16 {
        let NatPlan { key, port, new } = plan;
        let Some(cursor) = new else {
            if let Some(slot) = self.map.get_mut(&key) {
                slot.m.last_seen = slot.m.last_seen.max(now);
                slot.m.packets += 1;
            }
            return port;
        };
        self.remove(key, false);
        let dest = key.dest();
        if let Some(&holder) = self.by_outside.get(&(dest, port)) {
            self.remove(holder, true);
        }
        self.maybe_compact();
        let m = NatMapping {
            protocol: key.protocol,
            inside: key.inside,
            outside_port: port,
            remote: key.remote,
            last_seen: now,
            packets: 1,
            answered: false,
        };
        self.counters.connection_attempts += 1;
        if key.protocol == IpProto::TCP {
            self.counters.active_tcp_connections += 1;
        }
        let queued = self.deadline(&m);
        self.queue.push(Reverse((queued, key)));
        self.map.insert(key, Slot { m, queued });
        self.by_outside.insert((dest, port), key);
        let d = self.dests.entry(dest).or_insert(DestState { used: 0, cursor: self.first });
        d.used += 1;
        if let Some(c) = cursor {
            d.cursor = c;
        }
        self.tombstones.remove(&key);
        port
    }

    /// The fast path's [`plan_outbound`](Self::plan_outbound) + [`apply`](Self::apply) for a flow
    /// whose live mapping is known to exist: refreshes it and returns its port, in one probe;
    /// `None` (nothing changed) when the mapping is gone or has expired.
    pub fn refresh_outbound(
        &mut self,
        now: Duration,
        protocol: IpProto,
        inside: (Ipv4Addr, u16),
        remote: (Ipv4Addr, u16),
    ) -> Option<u16> {
        let idle_timeout = self.idle_timeout;
        let slot = self.map.get_mut(&FlowKey { protocol, inside, remote })?;
        if now >= slot.m.last_seen.saturating_add(idle_timeout) {
            return None;
        }
        slot.m.last_seen = slot.m.last_seen.max(now);
        slot.m.packets += 1;
        Some(slot.m.outside_port)
    }

    /// Counts a new flow refused for want of a port (a plan that failed, its packet dropped).
    pub fn count_refusal(&mut self) {
        self.counters.port_allocation_errors += 1;
        // A refused attempt is an attempt: it never becomes established.
        self.counters.connection_attempts += 1;
    }

    /// Removes the mapping of `key` and its port; leaves a tombstone for TCP if `tombstone`.
    /// Only expired mappings are ever removed, so each removal is an idle timeout.
    fn remove(&mut self, key: FlowKey, tombstone: bool) {
        let Some(slot) = self.map.remove(&key) else { return };
        self.counters.idle_timeouts += 1;
        if key.protocol == IpProto::TCP {
            self.counters.active_tcp_connections = self.counters.active_tcp_connections.saturating_sub(1);
        }
        let dest = key.dest();
        let port_key = (dest, slot.m.outside_port);
        if self.by_outside.get(&port_key) == Some(&key) {
            self.by_outside.remove(&port_key);
        }
        if let Some(d) = self.dests.get_mut(&dest) {
            d.used = d.used.saturating_sub(1);
            if d.used == 0 {
                self.dests.remove(&dest);
            }
        }
        if tombstone && key.protocol == IpProto::TCP {
            let at = self.deadline(&slot.m);
            self.tombstones.insert(key, at);
            self.tomb_order.push_back((at, key));
            while self.tomb_order.len() > TOMBSTONE_CAP {
                self.pop_tombstone();
            }
        }
    }

    fn pop_tombstone(&mut self) {
        if let Some((at, key)) = self.tomb_order.pop_front() {
            if self.tombstones.get(&key) == Some(&at) {
                self.tombstones.remove(&key);
            }
        }
    }

    fn inbound_key(
        &self,
        now: Duration,
        protocol: IpProto,
        remote: (Ipv4Addr, u16),
        outside_port: u16,
    ) -> Option<FlowKey> {
        let key = *self.by_outside.get(&(Dest { protocol, remote }, outside_port))?;
        let slot = self.map.get(&key)?;
        self.live(now, &slot.m).then_some(key)
    }

    /// Inbound packet from `remote` to the NAT's address and `outside_port` (ICMP: echo id, remote
    /// port 0): the inside endpoint of the live mapping it answers, refreshed; `None` when it
    /// answers nothing (unsolicited: the caller drops it).
    pub fn inbound(
        &mut self,
        now: Duration,
        protocol: IpProto,
        remote: (Ipv4Addr, u16),
        outside_port: u16,
    ) -> Option<(Ipv4Addr, u16)> {
        let key = self.inbound_key(now, protocol, remote, outside_port)?;
        let slot = self.map.get_mut(&key)?;
        slot.m.last_seen = slot.m.last_seen.max(now);
        slot.m.packets += 1;
        if !slot.m.answered {
            slot.m.answered = true;
            self.counters.connections_established += 1;
        }
        Some(slot.m.inside)
    }

    /// [`inbound`](Self::inbound) for the fast path: `go` gets the inside endpoint of the live
    /// mapping, and the mapping is refreshed only when `go` answers (a packet that goes on to
    /// the full walk is refreshed there, once). `None` when no live mapping answers or `go` did not.
    pub fn inbound_if<R>(
        &mut self,
        now: Duration,
        protocol: IpProto,
        remote: (Ipv4Addr, u16),
        outside_port: u16,
        go: impl FnOnce((Ipv4Addr, u16)) -> Option<R>,
    ) -> Option<R> {
        let key = self.inbound_key(now, protocol, remote, outside_port)?;
        let slot = self.map.get_mut(&key)?;
        let answer = go(slot.m.inside)?;
        slot.m.last_seen = slot.m.last_seen.max(now);
        slot.m.packets += 1;
        // The fast path follows only flows that were answered already.
        if !slot.m.answered {
            slot.m.answered = true;
            self.counters.connections_established += 1;
        }
        Some(answer)
    }

    /// [`inbound`](Self::inbound) without refreshing anything, for `trace`.
    pub fn peek_inbound(
        &self,
        now: Duration,
        protocol: IpProto,
        remote: (Ipv4Addr, u16),
        outside_port: u16,
    ) -> Option<(Ipv4Addr, u16)> {
        let key = self.inbound_key(now, protocol, remote, outside_port)?;
        self.map.get(&key).map(|s| s.m.inside)
    }

    /// The outside port of a live mapping for this outbound flow, without creating or refreshing
    /// one, for `trace`.
    pub fn peek_outbound(
        &self,
        now: Duration,
        protocol: IpProto,
        inside: (Ipv4Addr, u16),
        remote: (Ipv4Addr, u16),
    ) -> Option<u16> {
        let slot = self.map.get(&FlowKey { protocol, inside, remote })?;
        self.live(now, &slot.m).then_some(slot.m.outside_port)
    }

    /// Whether this outbound TCP flow had a mapping that timed out, now or within the last
    /// [`TOMBSTONE_TTL`], and has not been opened again since. AWS answers a host that sends on
    /// such a connection with an RST: the caller does so for any segment but a SYN, instead of
    /// calling [`outbound`](Self::outbound). Always false for other protocols. Read-only.
    pub fn expired_recently(
        &self,
        now: Duration,
        protocol: IpProto,
        inside: (Ipv4Addr, u16),
        remote: (Ipv4Addr, u16),
    ) -> bool {
        if protocol != IpProto::TCP {
            return false;
        }
        let key = FlowKey { protocol, inside, remote };
        if let Some(slot) = self.map.get(&key) {
            return !self.live(now, &slot.m);
        }
        self.tombstones.get(&key).is_some_and(|&at| now < at.saturating_add(TOMBSTONE_TTL))
    }

    /// The earliest instant [`handle_timeout`](Self::handle_timeout) has work (a mapping may be
    /// due, or a tombstone may be forgotten), `None` when there is none. It may be early (a
    /// mapping refreshed since it was queued); the call then re-queues it.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let q = self.queue.peek().map(|Reverse((d, _))| *d);
        let t = self.tomb_order.front().map(|(at, _)| at.saturating_add(TOMBSTONE_TTL));
        match (q, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Reclaims mappings idle at `now` (their TCP keys become tombstones) and forgets old
    /// tombstones, examining at most [`HANDLE_TIMEOUT_BUDGET`] queue items: never a scan of the
    /// table. If work remains, [`poll_timeout`](Self::poll_timeout) is `<= now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.maybe_compact();
        for _ in 0..HANDLE_TIMEOUT_BUDGET {
            let Some(&Reverse((d, key))) = self.queue.peek() else { break };
            if d > now {
                break;
            }
            self.queue.pop();
            let Some(slot) = self.map.get(&key) else {
                continue; // stale: the mapping was removed
            };
            if !self.live(now, &slot.m) {
                self.remove(key, true);
                continue;
            }
            if slot.queued == d {
                // Its own item, but refreshed since: queue its real deadline (> now).
                let deadline = self.deadline(&slot.m);
                if let Some(s) = self.map.get_mut(&key) {
                    s.queued = deadline;
                }
                self.queue.push(Reverse((deadline, key)));
            }
        }
        for _ in 0..HANDLE_TIMEOUT_BUDGET {
            match self.tomb_order.front() {
                Some(&(at, _)) if at.saturating_add(TOMBSTONE_TTL) <= now => self.pop_tombstone(),
                _ => break,
            }
        }
        self.maybe_shrink();
    }

    /// Gives memory back once most mappings are gone, as the connection tables do: when the
    /// mappings fill at most a quarter of the map's capacity and number at most [`SHRINK_BELOW`]
    /// (so moving them is brief), every index shrinks to twice what it holds (at least
    /// [`SHRINK_FLOOR`]). Bounded work, once per large drop.
    fn maybe_shrink(&mut self) {
        let len = self.map.len();
        let keep = len.saturating_mul(2).max(SHRINK_FLOOR);
        if len > SHRINK_BELOW || self.map.capacity() <= keep.saturating_mul(2) {
            return;
        }
        self.maybe_compact();
        self.map.shrink_to(keep);
        self.by_outside.shrink_to(keep);
        self.dests.shrink_to(self.dests.len().saturating_mul(2).max(SHRINK_FLOOR));
        self.queue.shrink_to(keep.saturating_mul(2).max(self.queue.len()));
        self.tombstones.shrink_to(self.tombstones.len().saturating_mul(2).max(SHRINK_FLOOR));
        self.tomb_order.shrink_to(self.tomb_order.len().saturating_mul(2).max(SHRINK_FLOOR));
    }

    /// All mappings held, in no particular order (expired ones awaiting reclaim included).
    pub fn mappings(&self) -> impl Iterator<Item = &NatMapping> {
        self.map.values().map(|s| &s.m)
    }

    /// Bytes the table has allocated: its maps' buckets at their current capacity, the expiry
    /// queue's and the tombstone queue's capacities. O(1).
    pub fn heap_bytes(&self) -> usize {
        self.map.allocation_size()
            + self.by_outside.allocation_size()
            + self.dests.allocation_size()
            + self.tombstones.allocation_size()
            + self.queue.capacity() * std::mem::size_of::<Reverse<(Duration, FlowKey)>>()
            + self.tomb_order.capacity() * std::mem::size_of::<(Duration, FlowKey)>()
    }

    /// Number of mappings held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No mappings held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// New flows refused for want of a port (AWS's `ErrorPortAllocation` metric), since creation.
    pub fn port_allocation_errors(&self) -> u64 {
        self.counters.port_allocation_errors
    }

    /// A snapshot of the NAT gateway's counters since creation (they move with the table when a
    /// live change carries it over).
    pub fn counters(&self) -> NatCounters {
        self.counters
    }

    /// The counters the pipeline bumps (packets and bytes each way, drops).
    pub fn counters_mut(&mut self) -> &mut NatCounters {
        &mut self.counters
    }

    /// Rebuilds the queue when stale items outnumber mappings: amortized O(1) per item pushed.
    fn maybe_compact(&mut self) {
        let limit = self.map.len().saturating_mul(2).saturating_add(COMPACT_SLACK);
        if self.queue.len() > limit {
            let mut items = std::mem::take(&mut self.queue).into_vec();
            items.clear();
            let timeout = self.idle_timeout;
            for (key, s) in self.map.iter_mut() {
                s.queued = s.m.last_seen.saturating_add(timeout);
                items.push(Reverse((s.queued, *key)));
            }
            self.queue = BinaryHeap::from(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes one translated flow costs, from `size_of` (the README's "Connection tables at
    /// scale" quotes these; `--nocapture` shows them): a slot in `map` and one in `by_outside`
    /// (hashbrown: the pair plus a control byte, at most 7/8 of the buckets full), an expiry-queue
    /// item, and per destination a slot in `dests`. An expired TCP flow leaves a tombstone (a slot
    /// in `tombstones` and an item in `tomb_order`) for `TOMBSTONE_TTL`, at most `TOMBSTONE_CAP`.
    #[test]
    fn translation_sizes() {
        use std::mem::size_of;
        let map = size_of::<(FlowKey, Slot)>();
        let by_outside = size_of::<((Dest, u16), FlowKey)>();
        let item = size_of::<Reverse<(Duration, FlowKey)>>();
        let dest = size_of::<(Dest, DestState)>();
        let tomb = (size_of::<(FlowKey, Duration)>(), size_of::<(Duration, FlowKey)>());
        println!("FlowKey {} B; map slot {map} B, by_outside slot {by_outside} B (+1 control byte each), queue item {item} B; per destination {dest} B; tombstone {tomb:?} B", size_of::<FlowKey>());
        assert_eq!(
            (map, by_outside, item, dest, tomb),
            (72, 24, 32, 24, (32, 32)),
            "update the README's per-entry table"
        );
    }

    const TCP: IpProto = IpProto::TCP;
    const UDP: IpProto = IpProto::UDP;
    const ICMP: IpProto = IpProto::ICMP;
    const NAT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 100);
    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 10);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 20);
    const D1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const D2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn aws() -> NatTable {
        NatTable::new(NAT, AWS_PORTS, AWS_MAX_PER_DESTINATION, AWS_IDLE_TIMEOUT)
    }

    #[test]
    fn without_port_preservation_ports_spread_over_the_whole_range_and_stay_per_flow() {
        let mut t = aws();
        t.set_preserve_ports(false);
        let ports: Vec<u16> =
            (0..200).map(|i| t.outbound(secs(0), TCP, (A, 40000 + i), (D1, 443)).expect("a free port")).collect();
        assert!(ports.iter().all(|p| AWS_PORTS.contains(p)), "{ports:?}");
        let kept = ports.iter().zip(40000..).filter(|(p, i)| **p == *i).count();
        assert!(kept < 5, "{kept} of 200 kept their inside port");
        // A Linux client's ephemeral range (32768-60999) is no guide to what comes back.
        let outside_linux = ports.iter().filter(|p| !(32768..=60999).contains(*p)).count();
        assert!(outside_linux > 40, "{outside_linux} of 200 outside 32768-60999");
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 200, "one port per flow to one destination");
        // The same flow keeps its translation.
        assert_eq!(t.outbound(secs(1), TCP, (A, 40000), (D1, 443)), Ok(ports[0]));
        // With preservation (the option), a free inside port is kept.
        let mut kept = aws();
        assert_eq!(kept.outbound(secs(0), TCP, (A, 40000), (D1, 443)), Ok(40000));
    }

    #[test]
    fn a_workers_share_gets_its_residue_class_and_its_part_of_the_destination_limit() {
        let mut t = NatTable::new(NAT, 1024..=1033, 6, AWS_IDLE_TIMEOUT);
        t.set_share(1, 3);
        // Port 1030 is ours (1030 % 3 == 1) and kept; 1029 is not: the first of ours is given.
        assert_eq!(t.outbound(secs(0), UDP, (A, 1030), (D1, 53)), Ok(1030));
        assert_eq!(t.outbound(secs(0), UDP, (A, 1029), (D1, 53)), Ok(1024));
        assert_eq!(t.outbound(secs(0), UDP, (B, 1029), (D2, 53)), Ok(1024));
        assert_eq!(t.outbound(secs(0), UDP, (B, 1030), (D2, 53)), Ok(1030));
        // 6 per destination over 3 workers: 2 each; D1 has had its 2.
        assert_eq!(t.outbound(secs(0), UDP, (B, 7), (D1, 53)), Err(NatError::PortAllocation));
    }

    fn small() -> NatTable {
        NatTable::new(NAT, 1024..=1027, AWS_MAX_PER_DESTINATION, AWS_IDLE_TIMEOUT)
    }

    fn drain(t: &mut NatTable, now: Duration) -> usize {
        let mut calls = 0;
        while t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
            calls += 1;
            assert!(calls < 1000, "handle_timeout makes no progress");
        }
        calls
    }

    #[test]
    fn memory_comes_back_once_the_mappings_expired() {
        let mut t = NatTable::new(NAT, 1024..=65535, AWS_MAX_PER_DESTINATION, AWS_IDLE_TIMEOUT);
        let empty = t.heap_bytes();
        for i in 0..100_000u32 {
            let (inside, host) = (Ipv4Addr::from(0x0a00_0000 + i), Ipv4Addr::from(0xc633_6400 + i % 16));
            t.outbound(secs(0), UDP, (inside, 5000), (host, 53)).unwrap();
        }
        let full = t.heap_bytes();
        assert!(full > 1 << 20, "{full} bytes for 100,000 mappings");
        let later = AWS_IDLE_TIMEOUT + secs(1);
        while t.poll_timeout().is_some_and(|d| d <= later) {
            t.handle_timeout(later);
        }
        assert!(t.is_empty());
        assert!(t.heap_bytes() < full / 20, "{} bytes left of {full} ({empty} when new)", t.heap_bytes());
        t.outbound(later, UDP, (A, 5000), (D1, 53)).unwrap();
        assert_eq!(t.len(), 1, "still a working table");
    }

    #[test]
    fn a_plan_translates_nothing_and_applying_it_is_outbound() {
        let h = |n: u8| Ipv4Addr::new(10, 0, 2, n);
        let remote = (Ipv4Addr::new(198, 51, 100, 7), 80);
        let mut t = NatTable::new(Ipv4Addr::new(10, 0, 1, 100), 1024..=1025, AWS_MAX_PER_DESTINATION, AWS_IDLE_TIMEOUT);
        let now = Duration::ZERO;
        for n in 1..=2 {
            let plan = t.plan_outbound(now, TCP, (h(n), 40000), remote).unwrap();
            assert!(plan.is_new());
            assert_eq!(t.len(), usize::from(n) - 1, "planning allocated");
            assert_eq!(Ok(plan.port()), t.outbound(now, TCP, (h(n), 40000), remote));
        }
        assert_eq!(t.plan_outbound(now, TCP, (h(3), 40000), remote), Err(NatError::PortAllocation));
        assert_eq!(t.port_allocation_errors(), 0, "a plan counts nothing");
        assert_eq!(t.len(), 2);
        let again = t.plan_outbound(now, TCP, (h(1), 40000), remote).unwrap();
        assert!(!again.is_new());
        assert_eq!(Ok(again.port()), t.outbound(now, TCP, (h(1), 40000), remote));
        let later = AWS_IDLE_TIMEOUT + Duration::from_secs(1);
        let plan = t.plan_outbound(later, TCP, (h(3), 40000), remote).unwrap();
        assert_eq!(Ok(plan.port()), t.outbound(later, TCP, (h(3), 40000), remote));
    }

    /// The fuzzer's finding (issue 8): once every translation to a destination had expired,
    /// forwarding reclaimed them all (dropping the destination's cursor) and took the range's
    /// first port, while `trace` still scanned from the old cursor and named another. Now both
    /// are one plan.
    #[test]
    fn the_plan_names_the_port_forwarding_takes_after_every_mapping_expired() {
        let mut t = NatTable::new(NAT, 1024..=1026, 3, AWS_IDLE_TIMEOUT);
        for i in 0..3 {
            t.outbound(secs(0), UDP, (A, 5000 + i), (D1, 53)).unwrap();
        }
        let later = AWS_IDLE_TIMEOUT + secs(1);
        for i in 0..3 {
            let plan = t.plan_outbound(later, UDP, (B, 6000 + i), (D1, 53)).unwrap();
            assert_eq!(t.outbound(later, UDP, (B, 6000 + i), (D1, 53)), Ok(plan.port()));
        }
        assert_eq!(t.plan_outbound(later, UDP, (B, 7000), (D1, 53)), Err(NatError::PortAllocation));
    }

    #[test]
    fn same_flow_reuses_its_mapping_both_ways() {
        let mut t = aws();
        assert_eq!(t.nat_ip(), NAT);
        let p = t.outbound(secs(0), TCP, (A, 40000), (D1, 443)).unwrap();
        assert_eq!(p, 40000, "the inside port is kept when free");
        assert_eq!(t.outbound(secs(1), TCP, (A, 40000), (D1, 443)), Ok(p));
        assert_eq!(t.peek_outbound(secs(1), TCP, (A, 40000), (D1, 443)), Some(p));
        assert_eq!(t.inbound(secs(2), TCP, (D1, 443), p), Some((A, 40000)));
        assert_eq!(t.peek_inbound(secs(2), TCP, (D1, 443), p), Some((A, 40000)));
        assert_eq!(t.len(), 1);
        let m = *t.mappings().next().unwrap();
        assert_eq!(
            m,
            NatMapping {
                protocol: TCP,
                inside: (A, 40000),
                outside_port: p,
                remote: (D1, 443),
                last_seen: secs(2),
                packets: 3,
                answered: true,
            }
        );
        // An inside port below the range is not kept.
        assert_eq!(t.outbound(secs(0), UDP, (A, 53), (D1, 53)), Ok(1024));
    }

    #[test]
    fn counters_follow_attempts_answers_refusals_and_idle_timeouts() {
        let mut t = NatTable::new(NAT, 1024..=1024, AWS_MAX_PER_DESTINATION, AWS_IDLE_TIMEOUT);
        let p = t.outbound(secs(0), TCP, (A, 40000), (D1, 443)).unwrap();
        // Refreshing a translation is no new attempt; a refusal is one, never established.
        t.outbound(secs(1), TCP, (A, 40000), (D1, 443)).unwrap();
        assert_eq!(t.outbound(secs(1), TCP, (B, 40000), (D1, 443)), Err(NatError::PortAllocation));
        let c = t.counters();
        assert_eq!((c.connection_attempts, c.connections_established, c.port_allocation_errors), (2, 0, 1));
        assert_eq!(c.active_tcp_connections, 1);
        // The first answer establishes it; later ones do not count again.
        t.inbound(secs(2), TCP, (D1, 443), p).unwrap();
        t.inbound(secs(3), TCP, (D1, 443), p).unwrap();
        assert_eq!(t.counters().connections_established, 1);
        // Unsolicited inbound establishes nothing.
        assert_eq!(t.inbound(secs(3), TCP, (D2, 443), p), None);
        assert_eq!(t.counters().connections_established, 1);
        // UDP counts as a connection but not towards the TCP gauge.
        t.outbound(secs(3), UDP, (A, 5353), (D2, 53)).unwrap();
        assert_eq!(t.counters().active_tcp_connections, 1);
        // Idle past the timeout: both end, each counted once, and the gauge falls.
        let later = secs(3) + AWS_IDLE_TIMEOUT;
        t.handle_timeout(later);
        t.handle_timeout(later);
        let c = t.counters();
        assert_eq!((c.idle_timeouts, c.active_tcp_connections, c.connection_attempts), (2, 0, 3));
        assert!(t.is_empty());
    }

    #[test]
    fn different_hosts_get_different_ports_to_one_destination() {
        let mut t = aws();
        let pa = t.outbound(secs(0), TCP, (A, 40000), (D1, 443)).unwrap();
        let pb = t.outbound(secs(0), TCP, (B, 40000), (D1, 443)).unwrap();
        assert_ne!(pa, pb);
        assert_eq!(t.inbound(secs(1), TCP, (D1, 443), pa), Some((A, 40000)));
        assert_eq!(t.inbound(secs(1), TCP, (D1, 443), pb), Some((B, 40000)));
        // The same inside port to another destination keeps it: ports are per destination.
        assert_eq!(t.outbound(secs(0), TCP, (B, 40000), (D2, 443)), Ok(40000));
        assert_eq!(t.outbound(secs(0), TCP, (B, 40000), (D1, 80)), Ok(40000));
        assert_eq!(t.outbound(secs(0), UDP, (B, 40000), (D1, 443)), Ok(40000));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn cursor_moves_on_from_the_first_allocation() {
        let mut t = aws();
        assert_eq!(t.outbound(secs(0), UDP, (A, 53), (D1, 53)), Ok(1024));
        assert_eq!(t.dests[&Dest { protocol: UDP, remote: (D1, 53) }].cursor, 1025);
        assert_eq!(t.outbound(secs(0), UDP, (B, 53), (D1, 53)), Ok(1025));
        // Wraps at the end of the range.
        let mut t = NatTable::new(NAT, 1024..=1025, 10, AWS_IDLE_TIMEOUT);
        assert_eq!(t.outbound(secs(0), UDP, (A, 1025), (D1, 53)), Ok(1025));
        assert_eq!(t.outbound(secs(0), UDP, (B, 1025), (D1, 53)), Ok(1024));
    }

    #[test]
    fn one_port_serves_several_destinations() {
        let mut t = NatTable::new(NAT, 1024..=1024, 10, AWS_IDLE_TIMEOUT);
        assert_eq!(t.outbound(secs(0), UDP, (A, 5000), (D1, 53)), Ok(1024));
        assert_eq!(t.outbound(secs(0), UDP, (B, 5000), (D2, 53)), Ok(1024));
        assert_eq!(t.inbound(secs(1), UDP, (D1, 53), 1024), Some((A, 5000)));
        assert_eq!(t.inbound(secs(1), UDP, (D2, 53), 1024), Some((B, 5000)));
        assert_eq!(t.outbound(secs(0), UDP, (B, 5000), (D1, 53)), Err(NatError::PortAllocation));
    }

    #[test]
    fn exhaustion_counted_other_destinations_work_ports_return_after_idle() {
        let mut t = small();
        let mut ports: Vec<u16> = (0..4).map(|i| t.outbound(secs(0), TCP, (A, 50000 + i), (D1, 80)).unwrap()).collect();
        ports.sort();
        assert_eq!(ports, vec![1024, 1025, 1026, 1027]);
        assert_eq!(t.outbound(secs(1), TCP, (A, 50004), (D1, 80)), Err(NatError::PortAllocation));
        assert_eq!(t.port_allocation_errors(), 1);
        assert_eq!(t.outbound(secs(2), TCP, (B, 1024), (D1, 80)), Err(NatError::PortAllocation));
        assert_eq!(t.port_allocation_errors(), 2);
        // Existing flows keep working; another destination (or port, or protocol) is unaffected.
        assert_eq!(t.outbound(secs(100), TCP, (A, 50000), (D1, 80)).unwrap(), ports[0]);
        assert_eq!(t.outbound(secs(3), TCP, (A, 50004), (D2, 80)), Ok(1024));
        assert_eq!(t.outbound(secs(3), TCP, (A, 50004), (D1, 81)), Ok(1024));
        assert_eq!(t.outbound(secs(3), UDP, (A, 50004), (D1, 80)), Ok(1024));
        assert_eq!(t.port_allocation_errors(), 2);
        // After the idle timeout the three untouched mappings are gone and their ports free up:
        // outbound reclaims them itself, without waiting for the caller's handle_timeout.
        assert_eq!(t.outbound(secs(349), TCP, (A, 50004), (D1, 80)), Err(NatError::PortAllocation));
        let p = t.outbound(secs(350), TCP, (A, 50004), (D1, 80)).unwrap();
        assert!((1024..=1027).contains(&p));
        assert_eq!(t.inbound(secs(350), TCP, (D1, 80), p), Some((A, 50004)));
        assert_eq!(t.port_allocation_errors(), 3);
    }

    #[test]
    fn limit_per_destination_below_range() {
        let mut t = NatTable::new(NAT, 1024..=65535, 2, AWS_IDLE_TIMEOUT);
        t.outbound(secs(0), UDP, (A, 1), (D1, 53)).unwrap();
        t.outbound(secs(0), UDP, (A, 2), (D1, 53)).unwrap();
        assert_eq!(t.outbound(secs(0), UDP, (A, 3), (D1, 53)), Err(NatError::PortAllocation));
        assert!(t.outbound(secs(0), UDP, (A, 3), (D2, 53)).is_ok());
        // An empty range refuses everything.
        #[allow(clippy::reversed_empty_ranges)]
        let mut e = NatTable::new(NAT, 2000..=1999, 10, AWS_IDLE_TIMEOUT);
        assert_eq!(e.outbound(secs(0), UDP, (A, 2000), (D1, 53)), Err(NatError::PortAllocation));
        assert_eq!(e.port_allocation_errors(), 1);
    }

    #[test]
    fn a_port_in_use_is_never_handed_out_twice() {
        let mut t = NatTable::new(NAT, 1024..=1100, AWS_MAX_PER_DESTINATION, AWS_IDLE_TIMEOUT);
        let mut seen = std::collections::HashSet::new();
        // Many hosts whose inside ports collide with ports the cursor already gave out.
        for i in 0..77u32 {
            let host = Ipv4Addr::from(0x0a00_0200 + i);
            let p = t.outbound(secs(0), UDP, (host, 1024 + ((i * 7) % 77) as u16), (D1, 53)).unwrap();
            assert!(seen.insert(p), "port {p} handed out twice");
        }
        assert_eq!(seen.len(), 77);
        assert!(t.outbound(secs(0), UDP, (B, 9), (D1, 53)).is_err());
    }

    #[test]
    fn a_new_port_range_serves_new_flows_and_keeps_existing_translations() {
        let mut t = aws();
        let old = t.outbound(secs(0), TCP, (A, 40000), (D1, 443)).unwrap();
        assert_eq!(old, 40000);
        t.set_ports(2000..=2001);
        assert_eq!(t.ports(), 2000..=2001);
        // The existing translation keeps its port, both ways.
        assert_eq!(t.outbound(secs(1), TCP, (A, 40000), (D1, 443)), Ok(old));
        assert_eq!(t.inbound(secs(1), TCP, (D1, 443), old), Some((A, 40000)));
        // New flows get ports of the new range, even when their inside port was in the old one.
        assert_eq!(t.plan_outbound(secs(1), TCP, (B, 40000), (D1, 443)).map(|p| p.port()), Ok(2000));
        assert_eq!(t.outbound(secs(1), TCP, (B, 40000), (D1, 443)), Ok(2000));
        // The old translation still counts towards its destination's limit until it expires.
        assert_eq!(t.outbound(secs(1), TCP, (B, 2001), (D1, 443)), Err(NatError::PortAllocation));
        // Another destination has the whole new range.
        assert_eq!(t.outbound(secs(1), TCP, (B, 2001), (D2, 443)), Ok(2001));
        assert_eq!(t.outbound(secs(1), TCP, (B, 1), (D2, 443)), Ok(2000));
        // Once the old translation has expired, its destination has both new ports.
        assert_eq!(t.outbound(secs(400), TCP, (B, 2001), (D1, 443)), Ok(2001));
        assert_eq!(t.outbound(secs(400), TCP, (B, 2), (D1, 443)), Ok(2000));
        #[allow(clippy::reversed_empty_ranges)]
        t.set_ports(1..=0);
        assert_eq!(t.outbound(secs(1), TCP, (B, 3), (D2, 80)), Err(NatError::PortAllocation));
    }

    #[test]
    fn unsolicited_inbound_is_refused() {
        let mut t = aws();
        assert_eq!(t.inbound(secs(0), TCP, (D1, 443), 40000), None);
        let p = t.outbound(secs(0), TCP, (A, 40000), (D1, 443)).unwrap();
        assert_eq!(t.inbound(secs(0), TCP, (D1, 443), p + 1), None, "wrong port");
        assert_eq!(t.inbound(secs(0), TCP, (D1, 444), p), None, "wrong remote port");
        assert_eq!(t.inbound(secs(0), TCP, (D2, 443), p), None, "wrong remote address");
        assert_eq!(t.inbound(secs(0), UDP, (D1, 443), p), None, "wrong protocol");
        assert_eq!(t.inbound(secs(350), TCP, (D1, 443), p), None, "expired");
        assert_eq!(t.peek_inbound(secs(350), TCP, (D1, 443), p), None);
        assert_eq!(t.peek_outbound(secs(350), TCP, (A, 40000), (D1, 443)), None);
    }

    #[test]
    fn icmp_echo_ids_are_translated() {
        let mut t = aws();
        let ia = t.outbound(secs(0), ICMP, (A, 7), (D1, 0)).unwrap();
        let ib = t.outbound(secs(0), ICMP, (B, 7), (D1, 0)).unwrap();
        assert_eq!(ia, 1024, "echo id 7 is below the range: a new id");
        assert_eq!(ib, 1025);
        assert_eq!(t.inbound(secs(1), ICMP, (D1, 0), ia), Some((A, 7)));
        assert_eq!(t.inbound(secs(1), ICMP, (D1, 0), ib), Some((B, 7)));
        assert_eq!(t.outbound(secs(2), ICMP, (A, 7), (D1, 0)), Ok(ia));
        assert!(!t.expired_recently(secs(400), ICMP, (A, 7), (D1, 0)));
    }

    #[test]
    fn refreshed_mappings_survive_idle_ones_are_reclaimed() {
        let mut t = aws();
        let p = t.outbound(secs(0), UDP, (A, 5000), (D1, 53)).unwrap();
        t.outbound(secs(0), UDP, (B, 5000), (D1, 53)).unwrap();
        assert_eq!(t.poll_timeout(), Some(secs(350)));
        // Only inbound traffic refreshes it.
        t.inbound(secs(200), UDP, (D1, 53), p).unwrap();
        t.handle_timeout(secs(349));
        assert_eq!(t.len(), 2);
        t.handle_timeout(secs(350));
        assert_eq!(t.len(), 1);
        assert_eq!(t.mappings().next().unwrap().inside, (A, 5000));
        assert_eq!(t.poll_timeout(), Some(secs(550)), "re-queued at its new deadline");
        drain(&mut t, secs(550));
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None, "UDP leaves no tombstone");
    }

    #[test]
    fn expiry_without_full_scan() {
        let mut t = aws();
        for i in 0..10_000u16 {
            t.outbound(secs(0), UDP, (A, 20_000 + i), (D1, 53)).unwrap();
        }
        for i in (0..10_000u16).step_by(2) {
            t.outbound(secs(100), UDP, (A, 20_000 + i), (D1, 53)).unwrap();
        }
        t.handle_timeout(secs(349));
        assert_eq!(t.len(), 10_000);
        // One call does bounded work; repeated calls finish.
        t.handle_timeout(secs(350));
        assert!(t.len() >= 10_000 - HANDLE_TIMEOUT_BUDGET);
        assert!(t.poll_timeout().unwrap() <= secs(350));
        drain(&mut t, secs(350));
        assert_eq!(t.len(), 5_000);
        assert!(t.mappings().all(|m| m.inside.1 % 2 == 0));
        assert_eq!(t.poll_timeout(), Some(secs(450)));
        drain(&mut t, secs(450));
        assert!(t.is_empty());
        assert!(t.queue.len() <= COMPACT_SLACK);
    }

    #[test]
    fn timed_out_tcp_leaves_a_tombstone_for_rst() {
        let mut t = aws();
        let (a, d) = ((A, 40000), (D1, 443));
        t.outbound(secs(0), TCP, a, d).unwrap();
        assert!(!t.expired_recently(secs(349), TCP, a, d), "live");
        assert!(!t.expired_recently(secs(0), TCP, (B, 1), d), "never seen");
        // Expired, not yet reclaimed.
        assert!(t.expired_recently(secs(350), TCP, a, d));
        drain(&mut t, secs(360));
        assert!(t.is_empty());
        // Reclaimed: the tombstone answers until TOMBSTONE_TTL after the expiry.
        assert!(t.expired_recently(secs(360), TCP, a, d));
        assert!(t.expired_recently(secs(649), TCP, a, d));
        assert!(!t.expired_recently(secs(650), TCP, a, d));
        assert_eq!(t.poll_timeout(), Some(secs(650)));
        drain(&mut t, secs(650));
        assert_eq!(t.poll_timeout(), None);
        assert!(t.tombstones.is_empty() && t.tomb_order.is_empty());
        // A new SYN reopens the flow and clears its tombstone.
        let mut t = aws();
        t.outbound(secs(0), TCP, a, d).unwrap();
        drain(&mut t, secs(400));
        assert!(t.expired_recently(secs(400), TCP, a, d));
        t.outbound(secs(400), TCP, a, d).unwrap();
        assert!(!t.expired_recently(secs(401), TCP, a, d));
        // UDP never gets one.
        t.outbound(secs(0), UDP, a, d).unwrap();
        assert!(!t.expired_recently(secs(1000), UDP, a, d));
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut t = aws();
        for i in 0..(TOMBSTONE_CAP as u32 + 10) {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            t.outbound(secs(0), TCP, (ip, 40000), (D1, 443)).unwrap();
            drain(&mut t, secs(400));
        }
        assert!(t.tomb_order.len() <= TOMBSTONE_CAP);
        assert!(t.tombstones.len() <= TOMBSTONE_CAP);
        assert!(!t.expired_recently(secs(400), TCP, (Ipv4Addr::from(0x0a00_0000), 40000), (D1, 443)));
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let mut t = aws();
        t.outbound(Duration::MAX, TCP, (A, 1), (D1, 1)).unwrap();
        assert_eq!(t.peek_inbound(Duration::MAX, TCP, (D1, 1), 1024), None, "saturated deadline: expired");
        t.outbound(secs(10), UDP, (A, 2000), (D1, 1)).unwrap();
        // Time going backwards: last_seen does not move back.
        t.outbound(secs(5), UDP, (A, 2000), (D1, 1)).unwrap();
        assert!(t.mappings().any(|m| m.protocol == UDP && m.last_seen == secs(10)));
        t.handle_timeout(Duration::MAX);
        drain(&mut t, Duration::MAX);
        assert!(t.is_empty());
    }

    const LAB: &str = r#"
name = "igw"

[[vpc]]
id = "vpc-main"
cidr = "10.0.0.0/16"

[[vpc]]
id = "vpc-twin"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-public"
vpc = "vpc-main"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-twin"
vpc = "vpc-twin"
cidr = "10.0.1.0/24"

[[internet_gateway]]
id = "igw-main"
vpc = "vpc-main"

[[elastic_ip]]
id = "eipalloc-nat"
public_ip = "203.0.113.10"

[[elastic_ip]]
id = "eipalloc-web"
public_ip = "203.0.113.20"
network_interface = "eni-web"

[[elastic_ip]]
id = "eipalloc-web2"
public_ip = "203.0.113.21"
network_interface = "eni-web"
private_ip = "10.0.1.11"

[[elastic_ip]]
id = "eipalloc-twin"
public_ip = "203.0.113.30"
network_interface = "eni-twin"

[[elastic_ip]]
id = "eipalloc-spare"
public_ip = "203.0.113.40"

[[nat_gateway]]
id = "nat-main"
subnet = "subnet-public"
private_ip = "10.0.1.100"
elastic_ip = "eipalloc-nat"

[[instance]]
id = "web"

[[instance]]
id = "twin"

[[network_interface]]
id = "eni-web"
subnet = "subnet-public"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.11", "10.0.1.12"]
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-twin"
subnet = "subnet-twin"
private_ip = "10.0.1.10"
attachment = { instance = "twin", device_index = 0 }
"#;

    #[test]
    fn igw_map_from_model() {
        let m = crate::topology::parse(LAB, "igw.toml").unwrap();
        let g = IgwMap::new(&m);
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let (main, twin) = (VpcIdx(0), VpcIdx(1));
        let web = m.eni_by_id("eni-web").unwrap();
        let twin_eni = m.eni_by_id("eni-twin").unwrap();
        assert_eq!(g.public_of(main, ip("10.0.1.10")), Some(ip("203.0.113.20")));
        assert_eq!(g.public_of(main, ip("10.0.1.11")), Some(ip("203.0.113.21")));
        assert_eq!(g.public_of(main, ip("10.0.1.12")), None, "secondary IP without an EIP");
        // The same private address in another VPC has its own EIP.
        assert_eq!(g.public_of(twin, ip("10.0.1.10")), Some(ip("203.0.113.30")));
        assert_eq!(g.private_of(ip("203.0.113.20")), Some((web, ip("10.0.1.10"))));
        assert_eq!(g.private_of(ip("203.0.113.21")), Some((web, ip("10.0.1.11"))));
        assert_eq!(g.private_of(ip("203.0.113.30")), Some((twin_eni, ip("10.0.1.10"))));
        assert_eq!(g.private_of(ip("203.0.113.40")), None, "unassociated EIP");
        // The NAT gateway's EIP maps to the NAT, not to an ENI.
        assert_eq!(g.public_of(main, ip("10.0.1.100")), Some(ip("203.0.113.10")));
        assert_eq!(g.private_of(ip("203.0.113.10")), None);
        assert_eq!(g.nat_of(ip("203.0.113.10")), Some((NatIdx(0), ip("10.0.1.100"))));
        assert_eq!(g.len(), 4);
    }
}
