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
//! Memory. An entry is 48 bytes with the pipeline's cached hops (`connection_entry_sizes` in the
//! pipeline's tests pins it): the key is stored once (a hashbrown `HashTable`, not a map that
//! repeats it), times are `u32` milliseconds since the table's epoch, and there is no expiry
//! queue: expired entries are found by an incremental sweep of the buckets. The entries are spread
//! over shards (independent hash tables, chosen by hash bits hashbrown does not use), so a table
//! grows and shrinks one shard at a time: no moment holds two copies of the whole table, and no
//! re-hash moves more than one shard's entries.
//!
//! Invariants.
//! - An entry is live iff `now < last_seen + timeout(state)`, in whole milliseconds; an expired
//!   entry is never returned by [`ConnTable::lookup`], [`ConnTable::peek`] or
//!   [`ConnTable::related`], even before it is reclaimed. `last_seen` never moves backwards.
//! - Reclaiming is a sweep: each [`ConnTable::handle_timeout`] call examines at most
//!   [`HANDLE_TIMEOUT_BUDGET`] buckets from where the last one stopped and removes the expired
//!   entries there; a full pass over every shard is a cycle. `earliest` is a lower bound of every
//!   entry's deadline (lowered by every insert and touch, raised to the smallest deadline seen at
//!   the end of a cycle), so [`ConnTable::poll_timeout`] is never late and `handle_timeout` does
//!   nothing before it. A shard re-hashed while the sweep is inside it is swept again from its
//!   start, as its entries moved.
//! - Time is kept as `u32` milliseconds since `epoch`. Before the count could overflow
//!   (2^31 ms, 24.8 days after the epoch), `handle_timeout` moves the epoch forward past the
//!   oldest instant a live entry can have been seen, dropping the entries older than that (all
//!   expired) and shifting the rest: one O(n) pass every 24 days of the caller's clock.
//! - The table never holds more than `max_entries` entries; a new flow beyond that is refused with
//!   [`ConntrackFull`] (AWS's `conntrack_allowance_exceeded`) while existing entries keep working.

use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::time::Duration;

use hashbrown::hash_table::Entry as SlotEntry;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::model::ConntrackConfig;
use crate::packet::{Flow, IpProto, TcpFlags};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// Most entries pre-allocated by [`ConnTable::new`] (over all shards); a larger `max_entries`
/// still works, the shards grow past this on demand. Keeps an absurd limit from allocating (or
/// aborting) up front.
pub const PRESIZE_CAP: usize = 1 << 14;

/// Most buckets one [`ConnTable::handle_timeout`] call examines, so one call never stalls the
/// packet loop (a bucket is a control byte and, when full, a deadline to compare, read in
/// order); when more work is due, [`ConnTable::poll_timeout`] is `<= now`.
pub const HANDLE_TIMEOUT_BUDGET: usize = 1 << 15;

/// Entries per shard at the configured bound: a table has `max_entries / SHARD_ENTRIES` shards
/// (rounded up to a power of two, at most [`MAX_SHARDS`]), so growing one shard copies at most
/// about this many entries.
const SHARD_ENTRIES: usize = 1 << 14;

/// Most shards of one table (for bounds above 4 M entries, shards grow past `SHARD_ENTRIES`).
const MAX_SHARDS: usize = 1 << 8;

/// Milliseconds since a table's epoch.
type Tick = u32;

/// The tick count past which [`ConnTable::handle_timeout`] moves the epoch forward: half the
/// range, so a caller that calls it at least every 24 days never sees the count saturate.
const REBASE_AT: Tick = 1 << 31;

/// `d` in whole milliseconds, saturating.
const fn millis(d: Duration) -> Tick {
    let ms = d.as_secs().saturating_mul(1000).saturating_add(d.subsec_millis() as u64);
    if ms > Tick::MAX as u64 {
        Tick::MAX
    } else {
        ms as Tick
    }
}

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnKey {
    protocol: IpProto,
    lo: (Ipv4Addr, u16),
    hi: (Ipv4Addr, u16),
}

/// The key's 13 bytes as two words: two writes to the hasher instead of the derived five (it is
/// hashed on every packet).
impl std::hash::Hash for ConnKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let addrs = u64::from(self.lo.0.to_bits()) << 32 | u64::from(self.hi.0.to_bits());
        let rest = u64::from(self.lo.1) << 24 | u64::from(self.hi.1) << 8 | u64::from(self.protocol.0);
        state.write_u64(addrs);
        state.write_u64(rest);
    }
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

/// `Entry::flags`: a packet in the reply direction has been seen.
const SEEN_REPLY: u8 = 1;
/// `Entry::flags`: the initiator is the key's higher endpoint.
const INITIATOR_IS_HI: u8 = 2;

/// One tracked connection. 48 bytes with the pipeline's decision: fields are ordered by the
/// compiler, times and counts are 32-bit.
#[derive(Clone, Debug)]
pub struct Entry<D> {
    /// Its key.
    pub key: ConnKey,
    /// Current state.
    pub state: ConnState,
    /// [`SEEN_REPLY`], [`INITIATOR_IS_HI`].
    flags: u8,
    /// Time of the last packet, in ticks of the table (never moves backwards).
    last_seen: Tick,
    /// Packets seen, both directions, the first included; saturates.
    packets: u32,
    /// Configuration generation `decision` was made under.
    pub generation: u64,
    /// The decision cached for the flow's first packet; opaque to this module.
    pub decision: D,
}

impl<D> Entry<D> {
    /// Whether a packet in the reply direction (from the non-initiator) has been seen.
    pub fn seen_reply(&self) -> bool {
        self.flags & SEEN_REPLY != 0
    }

    /// The endpoint that sent the first packet (port as in [`ConnKey::endpoints`]).
    pub fn initiator(&self) -> (Ipv4Addr, u16) {
        if self.flags & INITIATOR_IS_HI != 0 {
            self.key.hi
        } else {
            self.key.lo
        }
    }

    /// Packets seen, both directions, the first included. A 32-bit count that stops at
    /// 4,294,967,295 (an hour of a flow at a million packets a second): it is shown, never
    /// decided on.
    pub fn packets(&self) -> u64 {
        u64::from(self.packets)
    }

    fn is_reply(&self, p: &Flow) -> bool {
        endpoints(p).0 != self.initiator()
    }
}

/// The table is full: the new connection is refused (AWS's `conntrack_allowance_exceeded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection table full")]
pub struct ConntrackFull;

/// Idle timeouts in effect, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timeouts {
    tcp_established: Tick,
    udp_stream: Tick,
    udp: Tick,
}

impl From<ConntrackConfig> for Timeouts {
    fn from(t: ConntrackConfig) -> Self {
        let ms = |secs: u32| millis(Duration::from_secs(u64::from(secs)));
        Timeouts { tcp_established: ms(t.tcp_established), udp_stream: ms(t.udp_stream), udp: ms(t.udp) }
    }
}

impl Timeouts {
    fn of(&self, s: ConnState) -> Tick {
        let f = &FIXED_TIMEOUTS;
        match s {
            ConnState::TcpSynSent => millis(f.tcp_syn_sent),
            ConnState::TcpSynReceived => millis(f.tcp_syn_received),
            ConnState::TcpEstablished => self.tcp_established,
            ConnState::TcpFinWait => millis(f.tcp_fin_wait),
            ConnState::TcpCloseWait => millis(f.tcp_close_wait),
            ConnState::TcpLastAck => millis(f.tcp_last_ack),
            ConnState::TcpTimeWait => millis(f.tcp_time_wait),
            ConnState::TcpClosed => millis(f.tcp_closed),
            ConnState::UdpSingle => self.udp,
            ConnState::UdpStream => self.udp_stream,
            ConnState::Icmp => millis(f.icmp),
            ConnState::Other => millis(f.other),
        }
    }

    /// The longest timeout of any state: an entry last seen longer ago than this has expired.
    fn longest(&self) -> Tick {
        let f = &FIXED_TIMEOUTS;
        [f.tcp_syn_sent, f.tcp_syn_received, f.tcp_fin_wait, f.tcp_close_wait, f.tcp_last_ack]
            .into_iter()
            .chain([f.tcp_time_wait, f.tcp_closed, f.icmp, f.other])
            .map(millis)
            .chain([self.tcp_established, self.udp_stream, self.udp])
            .max()
            .unwrap_or(Tick::MAX)
    }

    fn deadline<D>(&self, e: &Entry<D>) -> Tick {
        e.last_seen.saturating_add(self.of(e.state))
    }

    fn expired<D>(&self, now: Tick, e: &Entry<D>) -> bool {
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

/// Updates `e` for packet `p` of its connection: state machine, `last_seen`, `packets`. Returns
/// its new deadline.
fn touch<D>(t: Timeouts, e: &mut Entry<D>, now: Tick, p: &Flow, reply: bool) -> Tick {
    e.state = match e.state {
        s @ (ConnState::UdpSingle | ConnState::UdpStream) => {
            if !reply && e.seen_reply() {
                ConnState::UdpStream
            } else {
                s
            }
        }
        ConnState::Icmp | ConnState::Other => e.state,
        s => tcp_next(s, p, reply),
    };
    if reply {
        e.flags |= SEEN_REPLY;
    }
    e.last_seen = e.last_seen.max(now);
    e.packets = e.packets.saturating_add(1);
    t.deadline(e)
}

/// Where the sweep is, and what it knows about deadlines (see the module invariants).
#[derive(Clone, Copy, Debug)]
struct Expiry {
    /// A lower bound of every entry's deadline (`Tick::MAX` when there were none).
    earliest: Tick,
    /// The smallest deadline seen in the current cycle: of the entries swept, inserted or
    /// touched since it began. Becomes `earliest` when the cycle ends.
    cycle_min: Tick,
    /// The shard being swept, and the next bucket in it.
    shard: usize,
    bucket: usize,
}

impl Expiry {
    const START: Expiry = Expiry { earliest: Tick::MAX, cycle_min: Tick::MAX, shard: 0, bucket: 0 };

    /// The deadline of the entry in bucket `at` (shard, bucket) was set. The cycle's minimum
    /// takes it only if the sweep has passed that bucket: an entry ahead of it is seen when
    /// swept, or is gone by then.
    fn note(&mut self, deadline: Tick, at: (usize, usize)) {
        self.earliest = self.earliest.min(deadline);
        if at < (self.shard, self.bucket) {
            self.cycle_min = self.cycle_min.min(deadline);
        }
    }
}

/// Entries a shard's buckets hold at hashbrown's 7/8 load. Not `HashTable::capacity`: that is
/// what fits before the next re-hash, and every entry removed from a crowded group leaves a
/// tombstone that lowers it, so a shard emptied by the sweep could look full and keep its memory.
fn allocated_room<T>(shard: &HashTable<T>) -> usize {
    shard.num_buckets() / 8 * 7
}

/// One ENI's connection table. `D` is the caller's cached decision for a flow.
#[derive(Debug)]
pub struct ConnTable<D> {
    /// The entries, in a power-of-two number of shards; see [`ConnTable::shard_of`].
    shards: Box<[HashTable<Entry<D>>]>,
    hasher: DefaultHashBuilder,
    /// Entries over all shards (expired ones awaiting reclaim included).
    len: usize,
    timeouts: Timeouts,
    config: ConntrackConfig,
    max_entries: usize,
    /// Entries each shard is pre-sized for, and never shrinks below.
    shard_presize: usize,
    /// The instant tick 0 stands for.
    epoch: Duration,
    expiry: Expiry,
}

impl<D> ConnTable<D> {
    /// An empty table refusing new connections beyond `max_entries`. Its shards are pre-sized
    /// (up to [`PRESIZE_CAP`] entries in all) so growth does not stall the packet loop.
    pub fn new(timeouts: ConntrackConfig, max_entries: usize) -> Self {
        let count = (max_entries / SHARD_ENTRIES).next_power_of_two().min(MAX_SHARDS);
        let shard_presize = max_entries.min(PRESIZE_CAP).div_ceil(count);
        ConnTable {
            shards: (0..count).map(|_| HashTable::with_capacity(shard_presize)).collect(),
            hasher: DefaultHashBuilder::default(),
            len: 0,
            timeouts: timeouts.into(),
            config: timeouts,
            max_entries,
            shard_presize,
            epoch: Duration::ZERO,
            expiry: Expiry::START,
        }
    }

    /// The configured timeouts.
    pub fn timeouts(&self) -> ConntrackConfig {
        self.config
    }

    /// Changes the idle timeouts (an ENI's `connection_tracking` modified). Existing entries take
    /// the new timeouts at once, measured from their last packet. O(n) when a timeout changed
    /// (the earliest deadline is recomputed, so a shortened timeout reclaims on time); O(1)
    /// otherwise. `timeouts.max_connections` is only recorded: the bound is
    /// [`set_max_entries`](Self::set_max_entries).
    pub fn set_timeouts(&mut self, timeouts: ConntrackConfig) {
        self.config = timeouts;
        let t = Timeouts::from(timeouts);
        if t != self.timeouts {
            self.timeouts = t;
            let earliest = self.iter().map(|e| t.deadline(e)).min().unwrap_or(Tick::MAX);
            self.expiry.earliest = earliest;
            self.expiry.cycle_min = self.expiry.cycle_min.min(earliest);
        }
    }

    /// The connection limit.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Changes the connection limit (an ENI's `max_connections` modified). O(1). Entries above a
    /// lowered limit stay until they expire or close; meanwhile every new connection is refused
    /// with [`ConntrackFull`]. A raised limit grows the shards on demand past their pre-size.
    pub fn set_max_entries(&mut self, max_entries: usize) {
        self.max_entries = max_entries;
    }

    /// `now` in ticks since the epoch (0 before it, `Tick::MAX` past the range).
    fn tick(&self, now: Duration) -> Tick {
        millis(now.saturating_sub(self.epoch))
    }

    /// The hash of `key` and the shard it lives in. hashbrown places an entry by the hash's low
    /// bits and tags it with the top seven, so the shard is chosen by bits in between.
    fn shard_of(&self, key: &ConnKey) -> (usize, u64) {
        let hash = self.hasher.hash_one(key);
        ((hash >> 40) as usize & (self.shards.len() - 1), hash)
    }

    /// The live entry of this packet's connection (either direction), updated for the packet:
    /// state machine, `last_seen`, `packets`. Returns it with `true` when the packet goes in the
    /// reply direction (sent by the non-initiator). `None` when there is no entry or it has expired
    /// (an expired entry found here is removed), and for a bare TCP SYN that reuses the key of a
    /// connection in TIME_WAIT or CLOSED: the old entry is removed so the new connection is judged
    /// afresh by the caller and inserted.
    pub fn lookup(&mut self, now: Duration, p: &Flow) -> Option<(&mut Entry<D>, bool)> {
        if self.len == 0 {
            return None; // no key to hash (as hashbrown's maps do)
        }
        let key = ConnKey::of(p);
        let (s, hash) = self.shard_of(&key);
        let (now, t) = (self.tick(now), self.timeouts);
        let Ok(slot) = self.shards[s].find_entry(hash, |e| e.key == key) else {
            return None;
        };
        let e = slot.get();
        if t.expired(now, e) || reopens(e, p) {
            slot.remove();
            self.len -= 1;
            return None;
        }
        let (reply, at) = (e.is_reply(p), (s, slot.bucket_index()));
        let e = slot.into_mut();
        self.expiry.note(touch(t, e, now, p, reply), at);
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
        if self.len == 0 {
            return None;
        }
        let key = ConnKey::of(p);
        let (s, hash) = self.shard_of(&key);
        let (now, t) = (self.tick(now), self.timeouts);
        let mut slot = self.shards[s].find_entry(hash, |e| e.key == key).ok()?;
        let e = slot.get();
        if t.expired(now, e) || reopens(e, p) {
            return None;
        }
        let reply = e.is_reply(p);
        let answer = go(e, reply)?;
        let at = (s, slot.bucket_index());
        self.expiry.note(touch(t, slot.get_mut(), now, p, reply), at);
        Some(answer)
    }

    /// Read-only lookup (for `trace`, and to look before touching): the live entry of this
    /// packet's connection and whether the packet goes in the reply direction. Changes nothing,
    /// not even an expired entry.
    pub fn peek(&self, now: Duration, p: &Flow) -> Option<(&Entry<D>, bool)> {
        if self.len == 0 {
            return None;
        }
        let key = ConnKey::of(p);
        let (s, hash) = self.shard_of(&key);
        let e = self.shards[s].find(hash, |e| e.key == key)?;
        // As `lookup` sees it: an expired entry, or one this packet replaces, is no connection.
        if self.timeouts.expired(self.tick(now), e) || reopens(e, p) {
            return None;
        }
        Some((e, e.is_reply(p)))
    }

    /// Whether an entry, live or not, is held under this packet's connection key: an
    /// [`insert`](Self::insert) of it then replaces that entry instead of adding one.
    pub fn holds(&self, p: &Flow) -> bool {
        if self.len == 0 {
            return false;
        }
        let key = ConnKey::of(p);
        let (s, hash) = self.shard_of(&key);
        self.shards[s].find(hash, |e| e.key == key).is_some()
    }

    /// Whether a new connection would be refused now: the table holds `max_entries` entries
    /// after expired ones are reclaimed (bounded work, as in [`handle_timeout`](Self::handle_timeout)).
    /// Lets a caller refuse before committing anything elsewhere, and `trace` report the refusal.
    pub fn is_full(&mut self, now: Duration) -> bool {
        if self.len >= self.max_entries {
            self.handle_timeout(now);
        }
        self.len >= self.max_entries
    }

    /// Creates the entry for the first packet of a new connection, with the caller's `decision`
    /// made under configuration `generation`. An entry already under that key (live or not) is
    /// replaced. `Err(ConntrackFull)` when the table holds `max_entries` entries after expired ones
    /// are reclaimed (bounded work, as in [`handle_timeout`](Self::handle_timeout); the caller
    /// drops the packet and counts it); existing entries keep working.
    pub fn insert(
        &mut self,
        now: Duration,
        p: &Flow,
        decision: D,
        generation: u64,
    ) -> Result<&mut Entry<D>, ConntrackFull> {
        let key = ConnKey::of(p);
        let (s, hash) = self.shard_of(&key);
        if self.len >= self.max_entries && self.shards[s].find(hash, |e| e.key == key).is_none() {
            self.handle_timeout(now);
            if self.len >= self.max_entries {
                return Err(ConntrackFull);
            }
        }
        let flags = if endpoints(p).0 == key.lo { 0 } else { INITIATOR_IS_HI };
        let last_seen = self.tick(now);
        let e = Entry { key, state: initial_state(p), flags, last_seen, packets: 1, generation, decision };
        let deadline = self.timeouts.deadline(&e);
        let (shard, hasher) = (&mut self.shards[s], &self.hasher);
        // A shard with no room left re-hashes on a new entry: its entries move, so a sweep
        // inside it starts it again.
        if shard.len() == shard.capacity() && self.expiry.shard == s {
            self.expiry.bucket = 0;
        }
        let slot = match shard.entry(hash, |x| x.key == key, |x| hasher.hash_one(x.key)) {
            SlotEntry::Occupied(mut slot) => {
                *slot.get_mut() = e;
                slot
            }
            SlotEntry::Vacant(slot) => {
                self.len += 1;
                slot.insert(e)
            }
        };
        self.expiry.note(deadline, (s, slot.bucket_index()));
        Ok(slot.into_mut())
    }

    /// For an ICMP error: the live entry of the connection quoted inside it. `inner` describes the
    /// quoted packet as it was sent (its original direction); either direction of the connection
    /// is found. Read-only.
    pub fn related(&self, now: Duration, inner: &Flow) -> Option<&Entry<D>> {
        self.peek(now, inner).map(|(e, _)| e)
    }

    /// Idle time left before `e` expires (zero once expired).
    pub fn remaining(&self, now: Duration, e: &Entry<D>) -> Duration {
        Duration::from_millis(u64::from(self.timeouts.deadline(e).saturating_sub(self.tick(now))))
    }

    /// When `e` saw its last packet (to the millisecond).
    pub fn last_seen(&self, e: &Entry<D>) -> Duration {
        self.epoch.saturating_add(Duration::from_millis(u64::from(e.last_seen)))
    }

    /// The earliest instant [`handle_timeout`](Self::handle_timeout) may have work, `None` when
    /// the table is empty. It may be early (entries touched since the last sweep cycle, or a cycle
    /// still under way); calls at that instant then sweep on and move it.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let earliest = Duration::from_millis(u64::from(self.expiry.earliest));
        (self.len > 0).then(|| self.epoch.saturating_add(earliest))
    }

    /// Reclaims entries expired at `now`, examining at most [`HANDLE_TIMEOUT_BUDGET`] buckets from
    /// where the last call stopped: never a scan of the table (but once every 24 days of the
    /// caller's clock, when the epoch moves). Nothing before [`poll_timeout`](Self::poll_timeout).
    /// If work remains, `poll_timeout` is `<= now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.maybe_rebase(now);
        let now = self.tick(now);
        if now >= self.expiry.earliest {
            self.sweep(now);
        }
    }

    /// One slice of the sweep: see the module invariants. A shard swept to its end is shrunk if
    /// mostly empty; the end of the last shard ends the cycle (and the call).
    fn sweep(&mut self, now: Tick) {
        let t = self.timeouts;
        let mut budget = HANDLE_TIMEOUT_BUDGET;
        while budget > 0 {
            let x = &mut self.expiry;
            let shard = &mut self.shards[x.shard];
            let end = shard.num_buckets().min(x.bucket.saturating_add(budget));
            for i in x.bucket..end {
                if let Ok(slot) = shard.get_bucket_entry(i) {
                    let deadline = t.deadline(slot.get());
                    if now >= deadline {
                        slot.remove();
                        self.len -= 1;
                    } else {
                        x.cycle_min = x.cycle_min.min(deadline);
                    }
                }
            }
            budget = budget.saturating_sub((end - x.bucket).max(1));
            x.bucket = end;
            if end < shard.num_buckets() {
                return;
            }
            let done = x.shard;
            (x.shard, x.bucket) = ((done + 1) % self.shards.len(), 0);
            if x.shard == 0 {
                (x.earliest, x.cycle_min) = (x.cycle_min, Tick::MAX);
            }
            self.maybe_shrink(done);
            if self.expiry.shard == 0 {
                return;
            }
        }
    }

    /// Gives a shard's memory back once most of its entries are gone: a shard with room for more
    /// than four times what it holds shrinks to twice that, never below its pre-size. Called for a
    /// shard the sweep has just finished, so the entries it moves are already swept.
    fn maybe_shrink(&mut self, s: usize) {
        let (shard, hasher) = (&mut self.shards[s], &self.hasher);
        let keep = shard.len().saturating_mul(2).max(self.shard_presize);
        if allocated_room(shard) > keep.saturating_mul(2) {
            shard.shrink_to(keep, |e| hasher.hash_one(e.key));
        }
    }

    /// Moves the epoch forward when the tick count nears its end (see the module invariants):
    /// entries last seen before the new epoch have expired and go, the others are shifted.
    fn maybe_rebase(&mut self, now: Duration) {
        let shift = self.tick(now).saturating_sub(self.timeouts.longest());
        if self.tick(now) < REBASE_AT || shift == 0 {
            return;
        }
        for shard in self.shards.iter_mut() {
            shard.retain(|e| {
                e.last_seen = e.last_seen.saturating_sub(shift);
                e.last_seen > 0
            });
        }
        self.len = self.shards.iter().map(HashTable::len).sum();
        self.epoch = self.epoch.saturating_add(Duration::from_millis(u64::from(shift)));
        self.expiry.earliest = self.expiry.earliest.saturating_sub(shift);
        self.expiry.cycle_min = self.expiry.cycle_min.saturating_sub(shift);
    }

    /// Bytes the table has allocated: every shard's buckets (slots and control bytes, at its
    /// current capacity, not its length) and the shard array. What the table costs in memory,
    /// whatever the allocator then does with it. O(shards).
    pub fn heap_bytes(&self) -> usize {
        let shards = self.shards.len() * std::mem::size_of::<HashTable<Entry<D>>>();
        shards + self.shards.iter().map(HashTable::allocation_size).sum::<usize>()
    }

    /// Number of entries held (some may have expired and await reclaiming).
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All entries held, in no particular order (expired ones awaiting reclaim included).
    pub fn iter(&self) -> impl Iterator<Item = &Entry<D>> {
        self.shards.iter().flat_map(HashTable::iter)
    }

    /// Removes every entry (capacity is kept).
    pub fn clear(&mut self) {
        self.shards.iter_mut().for_each(HashTable::clear);
        self.len = 0;
        self.expiry = Expiry::START;
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
        assert_eq!((e.decision, e.generation, e.packets()), (7, 3, 2));
        assert_eq!(e.initiator(), (A, 40000));
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
        let mut t: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), 200_000);
        let pkt = |i: u32| udp(A, B, (i % 60_000) as u16, 53 + (i / 60_000) as u16);
        for i in 0..100_000 {
            t.insert(secs(0), &pkt(i), i, 0).unwrap();
        }
        for i in (0..100_000).step_by(2) {
            t.lookup(secs(20), &pkt(i)).unwrap();
        }
        // Nothing is due before 30 s.
        t.handle_timeout(secs(29));
        assert_eq!(t.len(), 100_000);
        // One call does bounded work (50,000 are due, more than one call's buckets hold);
        // repeated calls finish the job.
        t.handle_timeout(secs(30));
        assert!(t.len() >= 100_000 - HANDLE_TIMEOUT_BUDGET, "{} left", t.len());
        assert!(t.poll_timeout().is_some_and(|d| d <= secs(30)), "more work is due");
        let calls = drain(&mut t, secs(30));
        assert!(calls >= 1);
        assert_eq!(t.len(), 50_000);
        assert!(t.iter().all(|e| e.decision % 2 == 0 && e.packets() == 2));
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
        // Half of them stay busy: a shard still more than a quarter full keeps its buckets (with
        // some hash seeds a shard that grew once more is less, and rightly shrinks).
        let buckets: Vec<usize> = t.shards.iter().map(HashTable::num_buckets).collect();
        for i in 0..100_000 {
            t.lookup(secs(20), &pkt(i)).unwrap();
        }
        drain(&mut t, secs(30));
        assert_eq!(t.len(), 100_000);
        for (s, &before) in t.shards.iter().zip(&buckets) {
            if 4 * s.len() >= before / 8 * 7 {
                assert_eq!(s.num_buckets(), before, "a shard with {} entries moved", s.len());
            }
        }
        // A tenth stays busy: the shards shrink one by one around the 20,000 live entries.
        for i in 0..20_000 {
            t.lookup(secs(40), &pkt(i)).unwrap();
        }
        drain(&mut t, secs(50));
        assert_eq!(t.len(), 20_000);
        assert!(t.heap_bytes() < full / 2, "{} bytes for 20,000 entries, {full} for 200,000", t.heap_bytes());
        for s in t.shards.iter() {
            assert!(
                allocated_room(s) <= 4 * s.len().max(t.shard_presize),
                "{} buckets for {} entries",
                s.num_buckets(),
                s.len()
            );
        }
        assert!((0..20_000).all(|i| t.peek(secs(50), &pkt(i)).is_some_and(|(e, _)| e.decision == i)));
        // All gone: back to about the pre-sized table's size.
        drain(&mut t, secs(70));
        assert!(t.is_empty());
        assert!(t.heap_bytes() <= 2 * empty, "{} bytes left, {empty} when new", t.heap_bytes());
        // Still a working table.
        t.insert(secs(71), &pkt(7), 7, 0).unwrap();
        assert!(t.lookup(secs(72), &pkt(7)).is_some());
    }

    #[test]
    fn a_shard_emptied_through_tombstones_still_shrinks() {
        // One shard, filled to its last free slot with hashes that put entry i in bucket i: one
        // unbroken run, so removing an entry from it leaves a tombstone, whatever the hash seed.
        let mut t: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), 16);
        t.set_max_entries(2048);
        t.shards[0] = HashTable::with_capacity(1792);
        assert_eq!(t.shards[0].num_buckets(), 2048);
        let pkt = |i: u32| udp(A, B, i as u16, 53);
        for i in 0..1792 {
            // Every eighth flow stays busy (due at 50 s), the others are due at 30 s.
            let last_seen = if i % 8 == 0 { 20_000 } else { 0 };
            let key = ConnKey::of(&pkt(i));
            let e =
                Entry { key, state: ConnState::UdpSingle, flags: 0, last_seen, packets: 1, generation: 0, decision: i };
            let hash = u64::from(i);
            t.shards[0].insert_unique(hash, e, |_| unreachable!("no growth before the shard is full"));
        }
        assert_eq!(t.shards[0].capacity(), 1792);
        (t.len, t.expiry.earliest) = (1792, 30_000);
        let full = t.heap_bytes();
        drain(&mut t, secs(30));
        // 224 entries left in room for 1792: the shard shrinks although tombstones fill it.
        assert_eq!(t.len(), 224);
        assert!(t.heap_bytes() < full / 2, "{} bytes for 224 entries, {full} for 1792", t.heap_bytes());
        assert!((0..1792).step_by(8).all(|i| t.peek(secs(30), &pkt(i)).is_some_and(|(e, _)| e.decision == i)));
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
        assert_eq!((e.decision, e.packets()), (9, 1));
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
        assert_eq!((e.state, e.packets(), t.last_seen(e)), (ConnState::TcpSynSent, 1, secs(0)));
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
        let (_, reply) = t.lookup(secs(5), &p).unwrap();
        let (e, _) = t.peek(secs(5), &p).unwrap();
        assert_eq!((t.last_seen(e), reply), (secs(10), false));
        t.handle_timeout(Duration::MAX);
        assert!(t.is_empty());
        t.clear();
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn a_shard_rehashed_under_the_sweep_is_swept_again() {
        // One shard (the bound at construction is small), raised so it grows past what one
        // call sweeps.
        let mut t: ConnTable<u32> = ConnTable::new(ConntrackConfig::default(), 1000);
        t.set_max_entries(200_000);
        assert_eq!(t.shards.len(), 1);
        let pkt = |i: u32| udp(A, B, (i % 60_000) as u16, 53 + (i / 60_000) as u16);
        // Even flows are due at 30 s, odd ones at 40 s.
        for i in 0..30_000 {
            t.insert(secs(u64::from(i % 2) * 10), &pkt(i), i, 0).unwrap();
        }
        t.handle_timeout(secs(30));
        assert!(t.expiry.bucket > 0 && t.expiry.bucket < t.shards[0].num_buckets(), "stopped inside the shard");
        // New flows until the shard re-hashes: its entries move, some behind where the sweep was.
        let buckets = t.shards[0].num_buckets();
        let mut i = 30_000;
        while t.shards[0].num_buckets() == buckets {
            t.insert(secs(30), &pkt(i), i, 0).unwrap();
            i += 1;
        }
        assert_eq!(t.expiry.bucket, 0, "the sweep starts the shard again");
        // The cycle still finds every due entry, and the bound it sets is the true earliest.
        drain(&mut t, secs(30));
        assert_eq!(t.len(), 15_000 + (i - 30_000) as usize);
        assert!(t.iter().all(|e| e.decision % 2 == 1 || e.decision >= 30_000));
        assert_eq!(t.poll_timeout(), Some(secs(40)));
    }

    #[test]
    fn the_epoch_moves_on_before_the_milliseconds_run_out() {
        let mut t = table();
        let day = |d: u64| secs(d * 86_400);
        let (ssh, dns) = (tcp(A, B, 1, 22, TcpFlags::ACK), udp(A, B, 2, 53));
        t.insert(day(21), &ssh, 1, 0).unwrap();
        t.insert(day(21), &dns, 2, 0).unwrap();
        // 25 days is past 2^31 ms: the epoch moves on. The DNS flow expired long ago and goes.
        t.handle_timeout(day(25));
        assert!(t.epoch > Duration::ZERO);
        assert_eq!(t.len(), 1);
        let e = t.peek(day(25), &ssh).unwrap().0;
        assert_eq!((t.last_seen(e), t.remaining(day(25), e)), (day(21), day(1)));
        // Kept busy (the established timeout is 5 days) well past 2^32 ms (49.7 days).
        for d in (25..=100).step_by(3) {
            assert!(t.lookup(day(d), &ssh).is_some(), "day {d}");
            t.handle_timeout(day(d));
        }
        let e = t.peek(day(100), &ssh).unwrap().0;
        assert_eq!((t.last_seen(e), t.remaining(day(100), e)), (day(100), secs(432_000)));
        assert!(t.peek(day(105), &ssh).is_none());
    }
}
