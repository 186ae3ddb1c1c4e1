//! Connection tracking: one [`ConnTable`] per ENI, the memory that makes security groups stateful.
//!
//! Contract. The table is pure: no clock reads, no I/O. Every call that depends on time takes
//! `now`, a [`Duration`] since an arbitrary epoch chosen by the caller; ageing is driven from
//! outside with [`ConnTable::poll_timeout`] / [`ConnTable::handle_timeout`] (sans-IO, as in
//! quinn-proto). Nothing here panics on any input, extreme times included (deadlines saturate).
//!
//! Packets. Every call takes the packet's [`Flow`] as sent (the one flow summary of
//! [`crate::packet`]): its addresses, protocol, ports, ICMP type and echo id, and TCP flags.
//!
//! Keys. A [`ConnKey`] is built from a [`Flow`] and normalized so both directions of a flow map to
//! one entry: protocol plus the two `(address, port)` endpoints in order. It is a type of its own,
//! not a `Flow`, because it forgets what a connection does not share between its packets (the
//! direction, flags, ICMP type). ICMP echo request and reply use the echo id as the "port" of both
//! ends; protocols other than TCP, UDP and ICMP are keyed by addresses and protocol only (AWS:
//! "tracked by addresses and protocol number only").
//!
//! Timeouts. An entry is idle-timed: it expires `timeout(state)` after its last packet. TCP
//! established, UDP stream and UDP single use the ENI's configured [`ConntrackConfig`]; states AWS
//! does not document follow Linux `nf_conntrack` defaults ([`FIXED_TIMEOUTS`]).
//!
//! Invariants.
//! - An entry is live iff `now < last_seen + timeout(state)`; an expired entry is never returned by
//!   [`ConnTable::lookup`], [`ConnTable::peek`] or [`ConnTable::related`], even before it is
//!   reclaimed. `last_seen` never moves backwards.
//! - Expiry queue: every entry has one pending queue item `(queued, key)` with
//!   `queued <= its deadline`; items of removed or since-touched entries are stale and are dropped
//!   or re-queued lazily when they come up, so reclaiming never scans the whole table. The queue is
//!   compacted (rebuilt from live entries, O(n)) when stale items outnumber entries, so its memory is
//!   O(entries).
//! - The table never holds more than `max_entries` entries; a new flow beyond that is refused with
//!   [`ConntrackFull`] (AWS's `conntrack_allowance_exceeded`) while existing entries keep working.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;
use std::time::Duration;

use hashbrown::hash_map::Entry as MapEntry;
use hashbrown::HashMap;

use crate::model::ConntrackConfig;
use crate::packet::{Flow, IpProto, TcpFlags};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// Most entries pre-allocated by [`ConnTable::new`]; a larger `max_entries` still works, the map
/// grows past this on demand. Keeps an absurd limit from allocating (or aborting) up front.
pub const PRESIZE_CAP: usize = 1 << 14;

/// Most expiry-queue items one [`ConnTable::handle_timeout`] call examines, so one call never
/// stalls the packet loop; when more work is due, [`ConnTable::poll_timeout`] is already `<= now`.
pub const HANDLE_TIMEOUT_BUDGET: usize = 4096;

/// Stale queue items tolerated beyond twice the entry count before the queue is rebuilt.
const COMPACT_SLACK: usize = 1024;

/// Idle timeouts AWS does not document (TCP handshake and closing states, ICMP) and the one it
/// documents but does not make configurable (other protocols).
///
/// vpclab's choice for the undocumented ones: Linux `nf_conntrack` defaults
/// (`net.netfilter.nf_conntrack_tcp_timeout_*`, `nf_conntrack_icmp_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedTimeouts {
    /// SYN sent, no answer yet (Linux `syn_sent` 120 s).
    pub tcp_syn_sent: Duration,
    /// SYN+ACK seen, handshake not completed (Linux `syn_recv` 60 s).
    pub tcp_syn_received: Duration,
    /// The initiator sent FIN first (Linux `fin_wait` 120 s).
    pub tcp_fin_wait: Duration,
    /// The responder sent FIN first (Linux `close_wait` 60 s).
    pub tcp_close_wait: Duration,
    /// Both sides sent FIN, the last ACK is awaited (Linux `last_ack` 30 s).
    pub tcp_last_ack: Duration,
    /// Closed by FINs, lingering for late segments (Linux `time_wait` 120 s).
    pub tcp_time_wait: Duration,
    /// Reset (Linux `close` 10 s).
    pub tcp_closed: Duration,
    /// ICMP echo and other ICMP (Linux `icmp` 30 s).
    pub icmp: Duration,
    /// Protocols other than TCP, UDP and ICMP: 600 s (AWS, documented).
    pub other: Duration,
}

/// The fixed timeouts table; see [`FixedTimeouts`] for where each value comes from.
pub const FIXED_TIMEOUTS: FixedTimeouts = FixedTimeouts {
    tcp_syn_sent: Duration::from_secs(120),
    tcp_syn_received: Duration::from_secs(60),
    tcp_fin_wait: Duration::from_secs(120),
    tcp_close_wait: Duration::from_secs(60),
    tcp_last_ack: Duration::from_secs(30),
    tcp_time_wait: Duration::from_secs(120),
    tcp_closed: Duration::from_secs(10),
    icmp: Duration::from_secs(30),
    other: Duration::from_secs(600),
};

/// The sending endpoint and the receiving one of a packet, with the "port" conntrack uses for its
/// protocol (TCP/UDP port, ICMP echo id at both ends, else 0).
fn endpoints(f: &Flow) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let (sp, dp) = match f.proto {
        IpProto::TCP | IpProto::UDP => (f.l4.src_port, f.l4.dst_port),
        IpProto::ICMP if f.l4.icmp_type == ICMP_ECHO_REQUEST || f.l4.icmp_type == ICMP_ECHO_REPLY => {
            (f.l4.icmp_id, f.l4.icmp_id)
        }
        _ => (0, 0),
    };
    ((f.src, sp), (f.dst, dp))
}

fn has(p: &Flow, flag: TcpFlags) -> bool {
    p.l4.tcp_flags.contains(flag)
}

/// A direction-independent connection key: protocol and the two endpoints, lower one first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    protocol: IpProto,
    lo: (Ipv4Addr, u16),
    hi: (Ipv4Addr, u16),
}

impl ConnKey {
    /// The key of a packet's connection; a packet and its reply give the same key.
    #[inline]
    pub fn of(p: &Flow) -> ConnKey {
        let (s, d) = endpoints(p);
        let (lo, hi) = if s <= d { (s, d) } else { (d, s) };
        ConnKey { protocol: p.proto, lo, hi }
    }

    /// IP protocol.
    pub fn protocol(&self) -> IpProto {
        self.protocol
    }

    /// The two endpoints `(address, port)`, lower first (port: TCP/UDP port, ICMP echo id, or 0).
    pub fn endpoints(&self) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
        (self.lo, self.hi)
    }
}

/// A connection's state. TCP states are named from the initiator's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// SYN seen from the initiator.
    TcpSynSent,
    /// SYN(+ACK) seen from the responder.
    TcpSynReceived,
    /// Handshake completed (or a connection picked up mid-stream).
    TcpEstablished,
    /// The initiator sent FIN first.
    TcpFinWait,
    /// The responder sent FIN first.
    TcpCloseWait,
    /// Both sides sent FIN; the final ACK is awaited.
    TcpLastAck,
    /// Final ACK seen after both FINs.
    TcpTimeWait,
    /// Reset.
    TcpClosed,
    /// UDP in one direction, or a single request/response.
    UdpSingle,
    /// UDP with more than one request/response.
    UdpStream,
    /// ICMP.
    Icmp,
    /// Any other protocol (addresses and protocol only).
    Other,
}

/// A bare SYN on the ports of a TCP connection that has ended (TIME_WAIT, CLOSED) starts a new
/// connection, which replaces the old entry (Linux does the same): it is judged afresh.
fn reopens<D>(e: &Entry<D>, p: &Flow) -> bool {
    p.proto == IpProto::TCP
        && matches!(e.state, ConnState::TcpTimeWait | ConnState::TcpClosed)
        && p.l4.tcp_flags.is_bare_syn()
}

/// One tracked connection.
#[derive(Clone, Debug)]
pub struct Entry<D> {
    /// Its key.
    pub key: ConnKey,
    /// The endpoint that sent the first packet (port as in [`ConnKey::endpoints`]).
    pub initiator: (Ipv4Addr, u16),
    /// Current state.
    pub state: ConnState,
    /// Time of the last packet (never moves backwards).
    pub last_seen: Duration,
    /// Packets seen, both directions, the first included.
    pub packets: u64,
    /// The decision cached for the flow's first packet; opaque to this module.
    pub decision: D,
    /// Configuration generation `decision` was made under.
    pub generation: u64,
    /// A packet in the reply direction has been seen.
    seen_reply: bool,
    /// Deadline of this entry's pending expiry-queue item (`<=` its real deadline).
    queued: Duration,
}

impl<D> Entry<D> {
    /// Whether a packet in the reply direction (from the non-initiator) has been seen.
    pub fn seen_reply(&self) -> bool {
        self.seen_reply
    }

    fn is_reply(&self, p: &Flow) -> bool {
        endpoints(p).0 != self.initiator
    }
}

/// The table is full: the new connection is refused (AWS's `conntrack_allowance_exceeded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection table full")]
pub struct ConntrackFull;

/// Idle timeouts in effect, as durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timeouts {
    tcp_established: Duration,
    udp_stream: Duration,
    udp: Duration,
}

impl From<ConntrackConfig> for Timeouts {
    fn from(t: ConntrackConfig) -> Self {
        Timeouts {
            tcp_established: Duration::from_secs(u64::from(t.tcp_established)),
            udp_stream: Duration::from_secs(u64::from(t.udp_stream)),
            udp: Duration::from_secs(u64::from(t.udp)),
        }
    }
}

impl Timeouts {
    fn of(&self, s: ConnState) -> Duration {
        let f = &FIXED_TIMEOUTS;
        match s {
            ConnState::TcpSynSent => f.tcp_syn_sent,
            ConnState::TcpSynReceived => f.tcp_syn_received,
            ConnState::TcpEstablished => self.tcp_established,
            ConnState::TcpFinWait => f.tcp_fin_wait,
            ConnState::TcpCloseWait => f.tcp_close_wait,
            ConnState::TcpLastAck => f.tcp_last_ack,
            ConnState::TcpTimeWait => f.tcp_time_wait,
            ConnState::TcpClosed => f.tcp_closed,
            ConnState::UdpSingle => self.udp,
            ConnState::UdpStream => self.udp_stream,
            ConnState::Icmp => f.icmp,
            ConnState::Other => f.other,
        }
    }

    fn deadline<D>(&self, e: &Entry<D>) -> Duration {
        e.last_seen.saturating_add(self.of(e.state))
    }

    fn expired<D>(&self, now: Duration, e: &Entry<D>) -> bool {
        now >= self.deadline(e)
    }
}

/// State of a new connection from its first packet.
///
/// A TCP first packet other than SYN, SYN+ACK or RST is picked up as established, as Linux does
/// with `nf_conntrack_tcp_loose=1` (the default): a connection that predates the table survives.
fn initial_state(p: &Flow) -> ConnState {
    match p.proto {
        IpProto::TCP if has(p, TcpFlags::RST) => ConnState::TcpClosed,
        IpProto::TCP if has(p, TcpFlags::SYN) && has(p, TcpFlags::ACK) => ConnState::TcpSynReceived,
        IpProto::TCP if has(p, TcpFlags::SYN) => ConnState::TcpSynSent,
        IpProto::TCP => ConnState::TcpEstablished,
        IpProto::UDP => ConnState::UdpSingle,
        IpProto::ICMP => ConnState::Icmp,
        _ => ConnState::Other,
    }
}

/// The TCP state after packet `p` (`reply`: sent by the responder). Simplified from Linux's
/// `tcp_conntracks` table: no sequence-window tracking.
fn tcp_next(s: ConnState, p: &Flow, reply: bool) -> ConnState {
    use ConnState::*;
    if has(p, TcpFlags::RST) {
        return TcpClosed;
    }
    let syn = has(p, TcpFlags::SYN);
    let ack = has(p, TcpFlags::ACK);
    let fin = has(p, TcpFlags::FIN);
    match s {
        // SYN+ACK, or a bare SYN (simultaneous open), from the responder.
        TcpSynSent if reply && syn => TcpSynReceived,
        TcpSynReceived if !reply && ack && !syn => TcpEstablished,
        TcpEstablished if fin => {
            if reply {
                TcpCloseWait
            } else {
                TcpFinWait
            }
        }
        TcpFinWait if reply && fin => TcpLastAck,
        TcpCloseWait if !reply && fin => TcpLastAck,
        // Linux moves LAST_ACK to TIME_WAIT on an ACK in either direction.
        TcpLastAck if ack && !fin => TcpTimeWait,
        other => other,
    }
}

/// Updates `e` for packet `p` of its connection: state machine, `last_seen`, `packets`; queues
/// its deadline again when it moved earlier (a shorter state), as the pending item would fire too
/// late.
fn touch<D>(
    t: Timeouts,
    queue: &mut BinaryHeap<Reverse<(Duration, ConnKey)>>,
    e: &mut Entry<D>,
    now: Duration,
    p: &Flow,
    reply: bool,
) {
    e.state = match e.state {
        s @ (ConnState::UdpSingle | ConnState::UdpStream) => {
            if !reply && e.seen_reply {
                ConnState::UdpStream
            } else {
                s
            }
        }
        ConnState::Icmp | ConnState::Other => e.state,
        s => tcp_next(s, p, reply),
    };
    e.seen_reply |= reply;
    e.last_seen = e.last_seen.max(now);
    e.packets = e.packets.saturating_add(1);
    let deadline = t.deadline(e);
    if deadline < e.queued {
        e.queued = deadline;
        queue.push(Reverse((deadline, e.key)));
    }
}

/// One ENI's connection table. `D` is the caller's cached decision for a flow.
#[derive(Debug)]
pub struct ConnTable<D> {
    map: HashMap<ConnKey, Entry<D>>,
    /// Min-heap of `(deadline, key)`; see the module invariants.
    queue: BinaryHeap<Reverse<(Duration, ConnKey)>>,
    timeouts: Timeouts,
    config: ConntrackConfig,
    max_entries: usize,
}

impl<D> ConnTable<D> {
    /// An empty table refusing new connections beyond `max_entries`. The map and the expiry queue
    /// are pre-sized (up to [`PRESIZE_CAP`] entries) so growth does not stall the packet loop.
    pub fn new(timeouts: ConntrackConfig, max_entries: usize) -> Self {
        let presize = max_entries.min(PRESIZE_CAP);
        ConnTable {
            map: HashMap::with_capacity(presize),
            queue: BinaryHeap::with_capacity(presize.saturating_mul(2)),
            timeouts: timeouts.into(),
            config: timeouts,
            max_entries,
        }
    }

    /// The configured timeouts.
    pub fn timeouts(&self) -> ConntrackConfig {
        self.config
    }

    /// Changes the idle timeouts (an ENI's `connection_tracking` modified). Existing entries take
    /// the new timeouts at once, measured from their last packet. O(n) when a timeout changed
    /// (the expiry queue is rebuilt, so a shortened timeout reclaims on time); O(1) otherwise.
    /// `timeouts.max_connections` is only recorded: the bound is [`set_max_entries`](Self::set_max_entries).
    pub fn set_timeouts(&mut self, timeouts: ConntrackConfig) {
        self.config = timeouts;
        let t = Timeouts::from(timeouts);
        if t != self.timeouts {
            self.timeouts = t;
            self.rebuild_queue();
        }
    }

    /// The connection limit.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Changes the connection limit (an ENI's `max_connections` modified). O(1). Entries above a
    /// lowered limit stay until they expire or close; meanwhile every new connection is refused
    /// with [`ConntrackFull`]. A raised limit grows the map on demand past its pre-sized capacity.
    pub fn set_max_entries(&mut self, max_entries: usize) {
        self.max_entries = max_entries;
    }

    /// The live entry of this packet's connection (either direction), updated for the packet:
    /// state machine, `last_seen`, `packets`. Returns it with `true` when the packet goes in the
    /// reply direction (sent by the non-initiator). `None` when there is no entry or it has expired
    /// (an expired entry found here is removed), and for a bare TCP SYN that reuses the key of a
    /// connection in TIME_WAIT or CLOSED: the old entry is removed so the new connection is judged
    /// afresh by the caller and inserted.
    pub fn lookup(&mut self, now: Duration, p: &Flow) -> Option<(&mut Entry<D>, bool)> {
        let key = ConnKey::of(p);
        let MapEntry::Occupied(occ) = self.map.entry(key) else {
            return None;
        };
        let t = self.timeouts;
        let e = occ.get();
        if t.expired(now, e) {
            occ.remove();
            return None;
        }
        let reply = e.is_reply(p);
        if reopens(e, p) {
            occ.remove();
            return None;
        }
        let e = occ.into_mut();
        touch(t, &mut self.queue, e, now, p, reply);
        Some((e, reply))
    }

    /// The fast path's lookup, one probe: the live entry of this packet's connection is shown to
    /// `go` (with whether the packet goes in the reply direction) and updated for the packet, as
    /// [`lookup`](Self::lookup) does, only if `go` answers `Some`. An expired entry, or one this
    /// packet would replace, is not shown and not touched (the caller's full walk deals with it).
    #[inline]
    pub fn lookup_if<R>(
        &mut self,
        now: Duration,
        p: &Flow,
        go: impl FnOnce(&Entry<D>, bool) -> Option<R>,
    ) -> Option<R> {
        let t = self.timeouts;
        let e = self.map.get_mut(&ConnKey::of(p))?;
        if t.expired(now, e) || reopens(e, p) {
            return None;
        }
        let reply = e.is_reply(p);
        let answer = go(e, reply)?;
        touch(t, &mut self.queue, e, now, p, reply);
        Some(answer)
    }

    /// Read-only lookup (for `trace`, and to look before touching): the live entry of this packet's connection and whether the
    /// packet goes in the reply direction. Changes nothing, not even an expired entry.
    pub fn peek(&self, now: Duration, p: &Flow) -> Option<(&Entry<D>, bool)> {
        let e = self.map.get(&ConnKey::of(p))?;
        // As `lookup` sees it: an expired entry, or one this packet replaces, is no connection.
        if self.timeouts.expired(now, e) || reopens(e, p) {
            return None;
        }
        Some((e, e.is_reply(p)))
    }

    /// Whether a new connection would be refused now: the table holds `max_entries` entries
    /// after expired ones are reclaimed (bounded work, as in [`handle_timeout`](Self::handle_timeout)).
    /// Lets a caller refuse before committing anything elsewhere, and `trace` report the refusal.
    pub fn is_full(&mut self, now: Duration) -> bool {
        if self.map.len() >= self.max_entries {
            self.handle_timeout(now);
        }
        self.map.len() >= self.max_entries
    }

    /// Creates the entry for the first packet of a new connection, with the caller's `decision`
    /// made under configuration `generation`. An entry already under that key (live or not) is
    /// replaced. `Err(ConntrackFull)` when the table holds `max_entries` entries after expired ones
    /// are reclaimed (the caller drops the packet and counts it); existing entries keep working.
    pub fn insert(
        &mut self,
        now: Duration,
        p: &Flow,
        decision: D,
        generation: u64,
    ) -> Result<&mut Entry<D>, ConntrackFull> {
        let key = ConnKey::of(p);
        if !self.map.contains_key(&key) && self.map.len() >= self.max_entries {
            self.handle_timeout(now);
            if self.map.len() >= self.max_entries {
                return Err(ConntrackFull);
            }
        }
        self.maybe_compact();
        let state = initial_state(p);
        let mut e = Entry {
            key,
            initiator: endpoints(p).0,
            state,
            last_seen: now,
            packets: 1,
            decision,
            generation,
            seen_reply: false,
            queued: Duration::ZERO,
        };
        e.queued = self.timeouts.deadline(&e);
        self.queue.push(Reverse((e.queued, key)));
        Ok(match self.map.entry(key) {
            MapEntry::Occupied(mut occ) => {
                occ.insert(e);
                occ.into_mut()
            }
            MapEntry::Vacant(v) => v.insert(e),
        })
    }

    /// For an ICMP error: the live entry of the connection quoted inside it. `inner` describes the
    /// quoted packet as it was sent (its original direction); either direction of the connection
    /// is found. Read-only.
    pub fn related(&self, now: Duration, inner: &Flow) -> Option<&Entry<D>> {
        self.peek(now, inner).map(|(e, _)| e)
    }

    /// Idle time left before `e` expires (zero once expired).
    pub fn remaining(&self, now: Duration, e: &Entry<D>) -> Duration {
        self.timeouts.deadline(e).saturating_sub(now)
    }

    /// The earliest instant [`handle_timeout`](Self::handle_timeout) has work, `None` when the
    /// table is empty of queue items. It may be early (an entry touched since was queued at its
    /// older deadline); the call then just re-queues it.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.queue.peek().map(|Reverse((d, _))| *d)
    }

    /// Reclaims entries expired at `now`, examining at most [`HANDLE_TIMEOUT_BUDGET`] queue items:
    /// never a scan of the table. Entries touched since they were queued are re-queued at their
    /// current deadline. If work remains, [`poll_timeout`](Self::poll_timeout) is `<= now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.maybe_compact();
        let t = self.timeouts;
        for _ in 0..HANDLE_TIMEOUT_BUDGET {
            let Some(&Reverse((d, key))) = self.queue.peek() else {
                break;
            };
            if d > now {
                break;
            }
            self.queue.pop();
            let MapEntry::Occupied(mut occ) = self.map.entry(key) else {
                continue; // stale: the entry was removed
            };
            if t.expired(now, occ.get()) {
                occ.remove();
                continue;
            }
            let e = occ.get_mut();
            if e.queued == d {
                // The entry's own item, but it was touched since: queue its real deadline (> now).
                e.queued = t.deadline(e);
                self.queue.push(Reverse((e.queued, key)));
            }
            // Otherwise a stale extra item: the entry's own item is still pending.
        }
        self.maybe_shrink();
    }

    /// Gives memory back once most entries are gone: a map holding at most a quarter of its
    /// capacity, and few enough entries that moving them is brief (at most [`PRESIZE_CAP`]),
    /// shrinks to twice what it holds, never below its pre-size; the expiry queue likewise.
    /// Bounded work, once per large drop (after it, the capacity is within the threshold).
    fn maybe_shrink(&mut self) {
        let presize = self.max_entries.min(PRESIZE_CAP);
        let len = self.map.len();
        let keep = len.saturating_mul(2).max(presize);
        if len <= PRESIZE_CAP && self.map.capacity() > keep.saturating_mul(2) {
            self.map.shrink_to(keep);
            self.maybe_compact();
            self.queue.shrink_to(keep.saturating_mul(2).max(self.queue.len()));
        }
    }

    /// Bytes the table has allocated: the map's buckets (slots and control bytes, at its current
    /// capacity, not its length) and the expiry queue's capacity. What the table costs in memory,
    /// whatever the allocator then does with it. O(1).
    pub fn heap_bytes(&self) -> usize {
        self.map.allocation_size() + self.queue.capacity() * std::mem::size_of::<Reverse<(Duration, ConnKey)>>()
    }

    /// Number of entries held (some may have expired and await reclaiming).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No entries held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All entries held, in no particular order (expired ones awaiting reclaim included).
    pub fn iter(&self) -> impl Iterator<Item = &Entry<D>> {
        self.map.values()
    }

    /// Removes every entry (capacity is kept).
    pub fn clear(&mut self) {
        self.map.clear();
        self.queue.clear();
    }

    /// Rebuilds the queue when stale items outnumber entries: amortized O(1) per item pushed.
    fn maybe_compact(&mut self) {
        let limit = self.map.len().saturating_mul(2).saturating_add(COMPACT_SLACK);
        if self.queue.len() > limit {
            self.rebuild_queue();
        }
    }

    /// One item per entry at its real deadline. O(n), reusing the queue's allocation.
    fn rebuild_queue(&mut self) {
        let t = self.timeouts;
        let mut items = std::mem::take(&mut self.queue).into_vec();
        items.clear();
        for e in self.map.values_mut() {
            e.queued = t.deadline(e);
            items.push(Reverse((e.queued, e.key)));
        }
        self.queue = BinaryHeap::from(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::L4Meta;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 20);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn flow(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProto, sp: u16, dp: u16) -> Flow {
        Flow { src, dst, proto, l4: L4Meta::ports(sp, dp) }
    }

    fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16, flags: TcpFlags) -> Flow {
        let mut f = flow(src, dst, IpProto::TCP, sp, dp);
        f.l4.tcp_flags = flags;
        f
    }

    fn udp(src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16) -> Flow {
        flow(src, dst, IpProto::UDP, sp, dp)
    }

    fn icmp(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, id: u16) -> Flow {
        Flow { src, dst, proto: IpProto::ICMP, l4: L4Meta::icmp(ty, 0, id) }
    }

    fn table() -> ConnTable<u32> {
        ConnTable::new(ConntrackConfig::default(), 1000)
    }

    /// Drives `lookup` and returns the state and reply flag.
    fn step(t: &mut ConnTable<u32>, now: Duration, p: &Flow) -> (ConnState, bool) {
        let (e, reply) = t.lookup(now, p).expect("entry");
        (e.state, reply)
    }

    fn drain(t: &mut ConnTable<u32>, now: Duration) -> usize {
        let mut calls = 0;
        while t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
            calls += 1;
            assert!(calls < 1000, "handle_timeout makes no progress");
        }
        calls
    }

    #[test]
    fn both_directions_share_one_entry() {
        let mut t = table();
        let out = udp(A, B, 40000, 53);
        let back = udp(B, A, 53, 40000);
        assert_eq!(ConnKey::of(&out), ConnKey::of(&back));
        assert_ne!(ConnKey::of(&out), ConnKey::of(&udp(A, B, 40001, 53)));
        t.insert(secs(0), &out, 7, 3).unwrap();
        let (e, reply) = t.lookup(secs(1), &back).unwrap();
        assert!(reply);
        assert_eq!((e.decision, e.generation, e.packets), (7, 3, 2));
        assert_eq!(e.initiator, (A, 40000));
        let (_, reply) = t.lookup(secs(2), &out).unwrap();
        assert!(!reply);
        assert_eq!(t.len(), 1);
        assert_eq!(t.iter().count(), 1);
    }

    #[test]
    fn tcp_handshake_established_teardown() {
        let mut t = table();
        let (c, s) = ((A, 40000), (B, 443));
        let fwd = |f| tcp(c.0, s.0, c.1, s.1, f);
        let rev = |f| tcp(s.0, c.0, s.1, c.1, f);
        let e = t.insert(secs(0), &fwd(TcpFlags::SYN), 0, 0).unwrap();
        assert_eq!(e.state, ConnState::TcpSynSent);
        let e = t.peek(secs(0), &fwd(TcpFlags::SYN)).unwrap().0;
        assert_eq!(t.remaining(secs(0), e), secs(120));
        assert_eq!(step(&mut t, secs(1), &rev(TcpFlags::SYN | TcpFlags::ACK)), (ConnState::TcpSynReceived, true));
        let e = t.peek(secs(1), &fwd(TcpFlags::NONE)).unwrap().0;
        assert_eq!(t.remaining(secs(1), e), secs(60));
        assert_eq!(step(&mut t, secs(2), &fwd(TcpFlags::ACK)), (ConnState::TcpEstablished, false));
        let e = t.peek(secs(2), &fwd(TcpFlags::NONE)).unwrap().0;
        assert_eq!(t.remaining(secs(2), e), secs(432_000));
        // Data both ways keeps it established.
        assert_eq!(step(&mut t, secs(3), &rev(TcpFlags::ACK)).0, ConnState::TcpEstablished);
        // The client closes first.
        assert_eq!(step(&mut t, secs(4), &fwd(TcpFlags::FIN | TcpFlags::ACK)).0, ConnState::TcpFinWait);
        let e = t.peek(secs(4), &fwd(TcpFlags::NONE)).unwrap().0;
        assert_eq!(t.remaining(secs(4), e), secs(120));
        assert_eq!(step(&mut t, secs(5), &rev(TcpFlags::ACK)).0, ConnState::TcpFinWait);
        assert_eq!(step(&mut t, secs(6), &rev(TcpFlags::FIN | TcpFlags::ACK)).0, ConnState::TcpLastAck);
        let e = t.peek(secs(6), &fwd(TcpFlags::NONE)).unwrap().0;
        assert_eq!(t.remaining(secs(6), e), secs(30));
        assert_eq!(step(&mut t, secs(7), &fwd(TcpFlags::ACK)).0, ConnState::TcpTimeWait);
        let e = t.peek(secs(7), &fwd(TcpFlags::NONE)).unwrap().0;
        assert_eq!(t.remaining(secs(7), e), secs(120));
        // Gone 120 s later, reclaimed by the queue.
        drain(&mut t, secs(127));
        assert!(t.is_empty());
    }

    #[test]
    fn tcp_responder_closes_first() {
        let mut t = table();
        let fwd = |f| tcp(A, B, 40000, 22, f);
        let rev = |f| tcp(B, A, 22, 40000, f);
        t.insert(secs(0), &fwd(TcpFlags::SYN), 0, 0).unwrap();
        step(&mut t, secs(0), &rev(TcpFlags::SYN | TcpFlags::ACK));
        step(&mut t, secs(0), &fwd(TcpFlags::ACK));
        assert_eq!(step(&mut t, secs(1), &rev(TcpFlags::FIN | TcpFlags::ACK)).0, ConnState::TcpCloseWait);
        let e = t.peek(secs(1), &fwd(TcpFlags::NONE)).unwrap().0;
        assert_eq!(t.remaining(secs(1), e), secs(60));
        // A FIN retransmitted by the same side changes nothing.
        assert_eq!(step(&mut t, secs(2), &rev(TcpFlags::FIN | TcpFlags::ACK)).0, ConnState::TcpCloseWait);
        assert_eq!(step(&mut t, secs(3), &fwd(TcpFlags::FIN | TcpFlags::ACK)).0, ConnState::TcpLastAck);
        assert_eq!(step(&mut t, secs(4), &rev(TcpFlags::ACK)).0, ConnState::TcpTimeWait);
    }

    #[test]
    fn tcp_rst_closes_and_syn_reopens() {
        let mut t = table();
        let fwd = |f| tcp(A, B, 40000, 80, f);
        let rev = |f| tcp(B, A, 80, 40000, f);
        t.insert(secs(0), &fwd(TcpFlags::SYN), 0, 0).unwrap();
        step(&mut t, secs(0), &rev(TcpFlags::SYN | TcpFlags::ACK));
        step(&mut t, secs(0), &fwd(TcpFlags::ACK));
        assert_eq!(step(&mut t, secs(1), &rev(TcpFlags::RST)), (ConnState::TcpClosed, true));
        let e = t.peek(secs(1), &fwd(TcpFlags::NONE)).unwrap().0;
        assert_eq!(t.remaining(secs(1), e), secs(10));
        // A stray ACK keeps it closed; a new SYN on the same ports is a new connection.
        assert_eq!(step(&mut t, secs(2), &fwd(TcpFlags::ACK)).0, ConnState::TcpClosed);
        assert!(t.lookup(secs(3), &fwd(TcpFlags::SYN)).is_none());
        assert!(t.is_empty());
        let e = t.insert(secs(3), &fwd(TcpFlags::SYN), 1, 1).unwrap();
        assert_eq!((e.state, e.decision), (ConnState::TcpSynSent, 1));
        // Expires 10 s after the RST when nothing else comes.
        let mut t = table();
        t.insert(secs(0), &fwd(TcpFlags::SYN), 0, 0).unwrap();
        step(&mut t, secs(1), &rev(TcpFlags::RST | TcpFlags::ACK));
        assert!(t.peek(secs(10), &fwd(TcpFlags::NONE)).is_some());
        assert!(t.peek(secs(11), &fwd(TcpFlags::NONE)).is_none());
        drain(&mut t, secs(11));
        assert!(t.is_empty());
    }

    #[test]
    fn tcp_mid_stream_pickup_is_established() {
        let mut t = table();
        let e = t.insert(secs(0), &tcp(A, B, 40000, 80, TcpFlags::ACK), 0, 0).unwrap();
        assert_eq!(e.state, ConnState::TcpEstablished);
        let e = t.insert(secs(0), &tcp(A, B, 40001, 80, TcpFlags::RST), 0, 0).unwrap();
        assert_eq!(e.state, ConnState::TcpClosed);
    }

    #[test]
    fn udp_single_vs_stream_default_timeouts() {
        let mut t = table();
        let q = udp(A, B, 40000, 53);
        let r = udp(B, A, 53, 40000);
        t.insert(secs(0), &q, 0, 0).unwrap();
        // More requests without an answer: still single, 30 s.
        assert_eq!(step(&mut t, secs(1), &q), (ConnState::UdpSingle, false));
        // One request/response: still single.
        assert_eq!(step(&mut t, secs(2), &r), (ConnState::UdpSingle, true));
        let e = t.peek(secs(2), &q).unwrap().0;
        assert_eq!(t.remaining(secs(2), e), secs(30));
        // A second request after the response: stream, 180 s.
        assert_eq!(step(&mut t, secs(3), &q), (ConnState::UdpStream, false));
        let e = t.peek(secs(3), &q).unwrap().0;
        assert_eq!(t.remaining(secs(3), e), secs(180));
        assert!(t.peek(secs(182), &q).is_some());
        assert!(t.peek(secs(183), &q).is_none());

        // A single flow expires after 30 s.
        let mut t = table();
        t.insert(secs(0), &q, 0, 0).unwrap();
        step(&mut t, secs(1), &r);
        assert!(t.peek(secs(30), &q).is_some());
        assert!(t.lookup(secs(31), &q).is_none());
        assert!(t.is_empty(), "expired entry removed by lookup");
    }

    #[test]
    fn configured_timeouts_are_honored() {
        let cfg = ConntrackConfig { tcp_established: 60, udp_stream: 120, udp: 45, ..ConntrackConfig::default() };
        let mut t: ConnTable<u32> = ConnTable::new(cfg, 10);
        assert_eq!(t.timeouts(), cfg);
        let q = udp(A, B, 1, 2);
        let r = udp(B, A, 2, 1);
        t.insert(secs(0), &q, 0, 0).unwrap();
        assert_eq!(t.remaining(secs(0), t.peek(secs(0), &q).unwrap().0), secs(45));
        step(&mut t, secs(0), &r);
        step(&mut t, secs(0), &q);
        assert_eq!(t.remaining(secs(0), t.peek(secs(0), &q).unwrap().0), secs(120));
        let s = tcp(A, B, 5, 6, TcpFlags::ACK);
        t.insert(secs(0), &s, 0, 0).unwrap();
        assert_eq!(t.remaining(secs(0), t.peek(secs(0), &s).unwrap().0), secs(60));
        // Changing the timeouts applies to existing entries at once.
        t.set_timeouts(ConntrackConfig {
            tcp_established: 432_000,
            udp_stream: 60,
            udp: 30,
            ..ConntrackConfig::default()
        });
        assert_eq!(t.remaining(secs(0), t.peek(secs(0), &q).unwrap().0), secs(60));
        drain(&mut t, secs(60));
        assert!(t.peek(secs(60), &q).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn icmp_echo_keyed_by_id() {
        let mut t = table();
        let req = icmp(A, B, ICMP_ECHO_REQUEST, 77);
        let rep = icmp(B, A, ICMP_ECHO_REPLY, 77);
        assert_eq!(ConnKey::of(&req), ConnKey::of(&rep));
        assert_ne!(ConnKey::of(&req), ConnKey::of(&icmp(A, B, ICMP_ECHO_REQUEST, 78)));
        let e = t.insert(secs(0), &req, 0, 0).unwrap();
        assert_eq!(e.state, ConnState::Icmp);
        assert_eq!(step(&mut t, secs(1), &rep), (ConnState::Icmp, true));
        assert!(t.lookup(secs(1), &icmp(B, A, ICMP_ECHO_REPLY, 78)).is_none());
        t.insert(secs(1), &icmp(A, B, ICMP_ECHO_REQUEST, 78), 0, 0).unwrap();
        assert_eq!(t.len(), 2);
        // 30 s (Linux's default).
        assert!(t.peek(secs(30), &req).is_some());
        assert!(t.peek(secs(31), &req).is_none());
    }

    #[test]
    fn other_protocols_by_addresses_only() {
        let mut t = table();
        let mut gre = flow(A, B, IpProto(47), 1, 2);
        (gre.l4.icmp_id, gre.l4.tcp_flags) = (9, TcpFlags(0xff));
        let back = flow(B, A, IpProto(47), 3, 4);
        assert_eq!(ConnKey::of(&gre), ConnKey::of(&back));
        assert_eq!(ConnKey::of(&gre).endpoints(), ((A, 0), (B, 0)));
        assert_eq!(ConnKey::of(&gre).protocol(), IpProto(47));
        let e = t.insert(secs(0), &gre, 0, 0).unwrap();
        assert_eq!(e.state, ConnState::Other);
        assert_eq!(step(&mut t, secs(0), &back), (ConnState::Other, true));
        assert!(t.peek(secs(599), &gre).is_some());
        assert!(t.peek(secs(600), &gre).is_none());
    }

    #[test]
    fn expiry_gone_after_timeout_kept_if_touched() {
        let mut t = table();
        let p = udp(A, B, 1000, 2000);
        let q = udp(A, B, 1001, 2000);
        t.insert(secs(0), &p, 0, 0).unwrap();
        t.insert(secs(0), &q, 0, 0).unwrap();
        assert_eq!(t.poll_timeout(), Some(secs(30)));
        t.lookup(secs(20), &p).unwrap();
        t.handle_timeout(secs(30));
        assert!(t.peek(secs(30), &p).is_some());
        assert!(t.peek(secs(30), &q).is_none());
        assert_eq!(t.len(), 1);
        // The touched entry was re-queued at its new deadline.
        assert_eq!(t.poll_timeout(), Some(secs(50)));
        t.handle_timeout(secs(49));
        assert_eq!(t.len(), 1);
        t.handle_timeout(secs(50));
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn handle_timeout_reclaims_only_idle_with_bounded_work() {
        let mut t: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), 20_000);
        let pkt = |i: u32| udp(A, B, (i % 60_000) as u16, 53 + (i / 60_000) as u16);
        for i in 0..10_000 {
            t.insert(secs(0), &pkt(i), i, 0).unwrap();
        }
        for i in (0..10_000).step_by(2) {
            t.lookup(secs(20), &pkt(i)).unwrap();
        }
        // Nothing is due before 30 s.
        t.handle_timeout(secs(29));
        assert_eq!(t.len(), 10_000);
        // One call does bounded work; repeated calls finish the job.
        t.handle_timeout(secs(30));
        assert!(t.len() >= 10_000 - HANDLE_TIMEOUT_BUDGET);
        let calls = drain(&mut t, secs(30));
        assert!(calls >= 1);
        assert_eq!(t.len(), 5_000);
        assert!(t.iter().all(|e| e.decision % 2 == 0 && e.packets == 2));
        assert_eq!(t.poll_timeout(), Some(secs(50)));
        drain(&mut t, secs(50));
        assert!(t.is_empty());
    }

    #[test]
    fn memory_comes_back_once_the_flows_expired() {
        let mut t: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), 1_000_000);
        let empty = t.heap_bytes();
        let pkt = |i: u32| udp(A, B, (i % 60_000) as u16, 53 + (i / 60_000) as u16);
        for i in 0..200_000 {
            t.insert(secs(0), &pkt(i), i, 0).unwrap();
        }
        let full = t.heap_bytes();
        assert!(full > 4 * empty, "{full} bytes for 200,000 entries, {empty} empty");
        // Half of them stay busy: too many to move at once, nothing is given back yet.
        for i in 0..100_000 {
            t.lookup(secs(20), &pkt(i)).unwrap();
        }
        drain(&mut t, secs(30));
        assert_eq!((t.len(), t.heap_bytes()), (100_000, full));
        // All gone: back to about the pre-sized table's size.
        drain(&mut t, secs(50));
        assert!(t.is_empty());
        assert!(t.heap_bytes() <= 2 * empty, "{} bytes left, {empty} when new", t.heap_bytes());
        // Still a working table.
        t.insert(secs(51), &pkt(7), 7, 0).unwrap();
        assert!(t.lookup(secs(52), &pkt(7)).is_some());
    }

    #[test]
    fn limit_refuses_new_flows_keeps_old_ones() {
        let mut t: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), 2);
        t.insert(secs(0), &udp(A, B, 1, 53), 0, 0).unwrap();
        t.insert(secs(1), &udp(A, B, 2, 53), 0, 0).unwrap();
        assert_eq!(t.insert(secs(2), &udp(A, B, 3, 53), 0, 0).unwrap_err(), ConntrackFull);
        assert_eq!(t.len(), 2);
        assert!(t.lookup(secs(2), &udp(B, A, 53, 1)).is_some());
        assert!(t.lookup(secs(2), &udp(A, B, 2, 53)).is_some());
        // Re-inserting an existing key replaces it; no room needed.
        let e = t.insert(secs(3), &udp(A, B, 2, 53), 9, 1).unwrap();
        assert_eq!((e.decision, e.packets), (9, 1));
        // Entry 1 was last seen at 2 s: expired at 32 s, its slot is reclaimed by insert itself.
        assert_eq!(t.insert(secs(31), &udp(A, B, 3, 53), 0, 0).unwrap_err(), ConntrackFull);
        t.insert(secs(32), &udp(A, B, 3, 53), 0, 0).unwrap();
        assert_eq!(t.len(), 2);
        // A zero limit refuses everything.
        let mut z: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), 0);
        assert_eq!(z.insert(secs(0), &udp(A, B, 1, 53), 0, 0).unwrap_err(), ConntrackFull);
    }

    #[test]
    fn a_lowered_limit_keeps_existing_entries_and_refuses_new_ones() {
        let mut t: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), 10);
        for port in 1..=3 {
            t.insert(secs(0), &udp(A, B, port, 53), 0, 0).unwrap();
        }
        t.set_max_entries(1);
        assert_eq!(t.max_entries(), 1);
        assert!(t.is_full(secs(1)));
        assert_eq!(t.insert(secs(1), &udp(A, B, 4, 53), 0, 0).unwrap_err(), ConntrackFull);
        for port in 1..=3 {
            assert!(t.peek(secs(1), &udp(B, A, 53, port)).is_some(), "existing entry {port} kept");
        }
        // Two of the three expire: still at the limit. All three: room again.
        t.lookup(secs(20), &udp(A, B, 1, 53)).unwrap();
        assert_eq!(t.insert(secs(31), &udp(A, B, 4, 53), 0, 0).unwrap_err(), ConntrackFull);
        assert_eq!(t.len(), 1);
        t.insert(secs(50), &udp(A, B, 4, 53), 0, 0).unwrap();
        // Raised: room for more at once.
        t.set_max_entries(3);
        t.insert(secs(50), &udp(A, B, 5, 53), 0, 0).unwrap();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn unchanged_timeouts_keep_the_queue_changed_ones_reclaim_on_time() {
        let mut t = table();
        let p = udp(A, B, 1, 53);
        t.insert(secs(0), &p, 0, 0).unwrap();
        t.lookup(secs(10), &p).unwrap();
        // Same durations (the bound differs): nothing rebuilt, the stale early item stays.
        t.set_timeouts(ConntrackConfig { max_connections: 5, ..ConntrackConfig::default() });
        assert_eq!(t.timeouts().max_connections, 5);
        assert_eq!(t.poll_timeout(), Some(secs(30)));
        // A longer UDP timeout: the queue is rebuilt at the real deadlines.
        t.set_timeouts(ConntrackConfig { udp: 60, ..ConntrackConfig::default() });
        assert_eq!(t.poll_timeout(), Some(secs(70)));
        drain(&mut t, secs(69));
        assert_eq!(t.len(), 1);
        drain(&mut t, secs(70));
        assert!(t.is_empty());
    }

    #[test]
    fn peek_changes_nothing() {
        let mut t = table();
        let p = tcp(A, B, 40000, 80, TcpFlags::SYN);
        t.insert(secs(0), &p, 0, 0).unwrap();
        let syn_ack = tcp(B, A, 80, 40000, TcpFlags::SYN | TcpFlags::ACK);
        let (e, reply) = t.peek(secs(5), &syn_ack).unwrap();
        assert!(reply);
        assert_eq!((e.state, e.packets, e.last_seen), (ConnState::TcpSynSent, 1, secs(0)));
        assert!(!e.seen_reply());
        // An expired entry is not returned, and not removed either.
        assert!(t.peek(secs(500), &p).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(t.poll_timeout(), Some(secs(120)));
    }

    #[test]
    fn related_finds_the_quoted_flow() {
        let mut t = table();
        t.insert(secs(0), &udp(A, B, 40000, 4789), 5, 0).unwrap();
        // Fragmentation needed from a router, quoting A's packet as it was sent.
        let e = t.related(secs(1), &udp(A, B, 40000, 4789)).unwrap();
        assert_eq!(e.decision, 5);
        // Quoting a packet of the reply direction finds it too.
        assert!(t.related(secs(1), &udp(B, A, 4789, 40000)).is_some());
        assert!(t.related(secs(1), &udp(A, B, 40001, 4789)).is_none());
        assert!(t.related(secs(31), &udp(A, B, 40000, 4789)).is_none());
        // Echo quoted in an error.
        t.insert(secs(0), &icmp(A, B, ICMP_ECHO_REQUEST, 3), 6, 0).unwrap();
        assert_eq!(t.related(secs(1), &icmp(A, B, ICMP_ECHO_REQUEST, 3)).unwrap().decision, 6);
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let mut t: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), usize::MAX);
        let p = tcp(A, A, 0, 0, TcpFlags(0xff));
        t.insert(Duration::MAX, &p, 0, 0).unwrap();
        assert!(t.lookup(Duration::MAX, &p).is_none(), "saturated deadline: expired");
        t.insert(secs(10), &p, 0, 0).unwrap();
        // Time going backwards: last_seen does not move back.
        let (e, reply) = t.lookup(secs(5), &p).unwrap();
        assert_eq!((e.last_seen, reply), (secs(10), false));
        t.handle_timeout(Duration::MAX);
        assert!(t.is_empty());
        t.clear();
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn queue_stays_bounded_by_compaction() {
        let mut t = table();
        // Long connections reset after their queue item moved to the far deadline leave stale
        // far items behind; compaction keeps the queue O(entries).
        for i in 0..5_000u16 {
            let now = secs(u64::from(i) * 100);
            let fwd = |f| tcp(A, B, i, 80, f);
            t.insert(now, &fwd(TcpFlags::SYN), 0, 0).unwrap();
            step(&mut t, now, &tcp(B, A, 80, i, TcpFlags::SYN | TcpFlags::ACK));
            step(&mut t, now, &fwd(TcpFlags::ACK));
            t.handle_timeout(now + secs(61)); // re-queued at the established deadline
            step(&mut t, now + secs(62), &fwd(TcpFlags::RST));
            drain(&mut t, now + secs(72));
            assert!(t.queue.len() <= 2 * t.len() + COMPACT_SLACK + 2, "queue {}", t.queue.len());
        }
        assert!(t.is_empty());
    }
}
