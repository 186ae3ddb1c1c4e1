//! Connection tracking: one [`ConnTable`] per ENI, the memory that makes security groups stateful.
//!
//! Contract. The table is pure: no clock reads, no I/O. Every call that depends on time takes
//! `now`, a [`Duration`] since an arbitrary epoch chosen by the caller; ageing is driven from
//! outside with [`ConnTable::poll_timeout`] / [`ConnTable::handle_timeout`] (sans-IO, as in
//! quinn-proto). Nothing here panics on any input, extreme times included (deadlines saturate).
//!
//! Keys. A [`ConnKey`] is normalized so both directions of a flow map to one entry: protocol plus
//! the two `(address, port)` endpoints in order. ICMP echo request and reply use the echo id as the
//! "port" of both ends; protocols other than TCP, UDP and ICMP are keyed by addresses and protocol
//! only (AWS: "tracked by addresses and protocol number only").
//!
//! Timeouts. An entry is idle-timed: it expires `timeout(state)` after its last packet. TCP
//! established, UDP stream and UDP single use the ENI's configured [`ConntrackTimeouts`]; states AWS
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

use crate::model::ConntrackTimeouts;
use crate::policy::Flow;

/// TCP FIN flag bit in [`PacketInfo::tcp_flags`].
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag bit in [`PacketInfo::tcp_flags`].
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag bit in [`PacketInfo::tcp_flags`].
pub const TCP_RST: u8 = 0x04;
/// TCP ACK flag bit in [`PacketInfo::tcp_flags`].
pub const TCP_ACK: u8 = 0x10;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// Most entries pre-allocated by [`ConnTable::new`]; a larger `max_entries` still works, the map
/// grows past this on demand. Keeps an absurd limit from allocating (or aborting) up front.
pub const PRESIZE_CAP: usize = 1 << 20;

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

/// What conntrack needs from one packet, as sent (source to destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PacketInfo {
    /// Addresses, protocol, ports, ICMP type/code.
    pub flow: Flow,
    /// Echo identifier for ICMP echo request/reply, else 0.
    pub icmp_id: u16,
    /// TCP flags ([`TCP_FIN`], [`TCP_SYN`], [`TCP_RST`], [`TCP_ACK`]); 0 unless TCP.
    pub tcp_flags: u8,
}

impl PacketInfo {
    /// The sending endpoint and the receiving one, with the "port" conntrack uses for the protocol.
    fn endpoints(&self) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
        let f = &self.flow;
        let (sp, dp) = match f.protocol {
            PROTO_TCP | PROTO_UDP => (f.src_port, f.dst_port),
            PROTO_ICMP if f.icmp_type == ICMP_ECHO_REQUEST || f.icmp_type == ICMP_ECHO_REPLY => {
                (self.icmp_id, self.icmp_id)
            }
            _ => (0, 0),
        };
        ((f.src, sp), (f.dst, dp))
    }

    fn has(&self, flag: u8) -> bool {
        self.tcp_flags & flag != 0
    }
}

/// A direction-independent connection key: protocol and the two endpoints, lower one first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    protocol: u8,
    lo: (Ipv4Addr, u16),
    hi: (Ipv4Addr, u16),
}

impl ConnKey {
    /// The key of a packet's connection; a packet and its reply give the same key.
    pub fn of(p: &PacketInfo) -> ConnKey {
        let (s, d) = p.endpoints();
        let (lo, hi) = if s <= d { (s, d) } else { (d, s) };
        ConnKey { protocol: p.flow.protocol, lo, hi }
    }

    /// IP protocol number.
    pub fn protocol(&self) -> u8 {
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

    fn is_reply(&self, p: &PacketInfo) -> bool {
        p.endpoints().0 != self.initiator
    }
}

/// The table is full: the new connection is refused (AWS's `conntrack_allowance_exceeded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection table full")]
pub struct ConntrackFull;

/// Idle timeouts in effect, as durations.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    tcp_established: Duration,
    udp_stream: Duration,
    udp: Duration,
}

impl From<ConntrackTimeouts> for Timeouts {
    fn from(t: ConntrackTimeouts) -> Self {
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
fn initial_state(p: &PacketInfo) -> ConnState {
    match p.flow.protocol {
        PROTO_TCP if p.has(TCP_RST) => ConnState::TcpClosed,
        PROTO_TCP if p.has(TCP_SYN) && p.has(TCP_ACK) => ConnState::TcpSynReceived,
        PROTO_TCP if p.has(TCP_SYN) => ConnState::TcpSynSent,
        PROTO_TCP => ConnState::TcpEstablished,
        PROTO_UDP => ConnState::UdpSingle,
        PROTO_ICMP => ConnState::Icmp,
        _ => ConnState::Other,
    }
}

/// The TCP state after packet `p` (`reply`: sent by the responder). Simplified from Linux's
/// `tcp_conntracks` table: no sequence-window tracking.
fn tcp_next(s: ConnState, p: &PacketInfo, reply: bool) -> ConnState {
    use ConnState::*;
    if p.has(TCP_RST) {
        return TcpClosed;
    }
    let syn = p.has(TCP_SYN);
    let ack = p.has(TCP_ACK);
    let fin = p.has(TCP_FIN);
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

/// One ENI's connection table. `D` is the caller's cached decision for a flow.
#[derive(Debug)]
pub struct ConnTable<D> {
    map: HashMap<ConnKey, Entry<D>>,
    /// Min-heap of `(deadline, key)`; see the module invariants.
    queue: BinaryHeap<Reverse<(Duration, ConnKey)>>,
    timeouts: Timeouts,
    config: ConntrackTimeouts,
    max_entries: usize,
}

impl<D> ConnTable<D> {
    /// An empty table refusing new connections beyond `max_entries`. The map and the expiry queue
    /// are pre-sized (up to [`PRESIZE_CAP`] entries) so growth does not stall the packet loop.
    pub fn new(timeouts: ConntrackTimeouts, max_entries: usize) -> Self {
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
    pub fn timeouts(&self) -> ConntrackTimeouts {
        self.config
    }

    /// Changes the idle timeouts (an ENI's `connection_tracking` modified). Existing entries take
    /// the new timeouts at once, measured from their last packet. O(n): rebuilds the expiry queue.
    pub fn set_timeouts(&mut self, timeouts: ConntrackTimeouts) {
        self.config = timeouts;
        self.timeouts = timeouts.into();
        self.rebuild_queue();
    }

    /// The connection limit.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The live entry of this packet's connection (either direction), updated for the packet:
    /// state machine, `last_seen`, `packets`. Returns it with `true` when the packet goes in the
    /// reply direction (sent by the non-initiator). `None` when there is no entry or it has expired
    /// (an expired entry found here is removed), and for a bare TCP SYN that reuses the key of a
    /// connection in TIME_WAIT or CLOSED: the old entry is removed so the new connection is judged
    /// afresh by the caller and inserted.
    pub fn lookup(&mut self, now: Duration, p: &PacketInfo) -> Option<(&mut Entry<D>, bool)> {
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
        let reopen = p.flow.protocol == PROTO_TCP
            && matches!(e.state, ConnState::TcpTimeWait | ConnState::TcpClosed)
            && p.has(TCP_SYN)
            && !p.has(TCP_ACK)
            && !p.has(TCP_RST);
        if reopen {
            occ.remove();
            return None;
        }
        let e = occ.into_mut();
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
            // The deadline moved earlier (a shorter state): the pending item would fire too late.
            e.queued = deadline;
            self.queue.push(Reverse((deadline, key)));
        }
        Some((e, reply))
    }

    /// Read-only lookup (for `trace`): the live entry of this packet's connection and whether the
    /// packet goes in the reply direction. Changes nothing, not even an expired entry.
    pub fn peek(&self, now: Duration, p: &PacketInfo) -> Option<(&Entry<D>, bool)> {
        let e = self.map.get(&ConnKey::of(p))?;
        if self.timeouts.expired(now, e) {
            return None;
        }
        Some((e, e.is_reply(p)))
    }

    /// Creates the entry for the first packet of a new connection, with the caller's `decision`
    /// made under configuration `generation`. An entry already under that key (live or not) is
    /// replaced. `Err(ConntrackFull)` when the table holds `max_entries` entries after expired ones
    /// are reclaimed (the caller drops the packet and counts it); existing entries keep working.
    pub fn insert(
        &mut self,
        now: Duration,
        p: &PacketInfo,
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
            initiator: p.endpoints().0,
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
    pub fn related(&self, now: Duration, inner: &PacketInfo) -> Option<&Entry<D>> {
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
