//! The queue between the data plane and one capture's writer: a single-producer,
//! single-consumer ring of bytes (`rtrb`) holding whole pcapng enhanced packet blocks, encoded by
//! the data plane as it handles the frame. The writer only walks the blocks' headers (to count
//! them per interface) and copies the bytes to the file or pipe. So a captured frame costs one
//! encoding in the forwarder and a share of one `write` in the writer: nothing allocated or
//! sent through a channel per frame, and the bytes cross between cores as one sequential
//! stream. (Records sent as structs through a channel cost the forwarder about a microsecond
//! per frame, mostly in cache lines bouncing between the two threads.)
//!
//! Blocks are in the machine's byte order, as `PcapNgWriter::new` writes its section header.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use rtrb::{Consumer, Producer, RingBuffer};

/// Bytes queued between the data plane and one capture's writer (about 20,000 frames at a
/// snapshot length of 128); past it frames are lost (counted per interface) rather than
/// slowing forwarding.
pub const QUEUE_BYTES: usize = 4 << 20;

/// pcapng `epb_flags` direction bits (RFC draft, section 4.3.1): inbound and outbound.
pub const EPB_INBOUND: u32 = 0b01;
/// See [`EPB_INBOUND`].
pub const EPB_OUTBOUND: u32 = 0b10;

/// A frame seen at a captured interface, as its block says it.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The interface's index in the capture.
    pub interface: u32,
    /// From the instance's point of view: sent by it (true) or delivered to it. For the
    /// internet: sent by the internet. For a NAT gateway: leaving towards the internet.
    pub outbound: bool,
    /// When the data plane read it, since the Unix epoch.
    pub at: Duration,
    /// The frame's length on the wire.
    pub original_len: u32,
    /// The frame, cut to the snapshot length.
    pub data: &'a [u8],
    /// What the fabric did, in words (pcapng `opt_comment`).
    pub comment: &'a str,
}

/// The data plane's end: encodes records and queues them whole, never waiting.
pub struct Feed {
    ring: Producer<u8>,
    /// Encodes one block at a time into its buffer (its interfaces let it check the ids).
    encoder: PcapNgWriter<Vec<u8>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("free", &self.ring.slots()).finish()
    }
}

/// The writer's end: one ring per forwarding worker (each feeds its own).
#[derive(Debug)]
pub struct Drain {
    rings: Vec<Consumer<u8>>,
}

/// A queue of `bytes` for a capture of `interfaces` interfaces.
pub fn queue(bytes: usize, interfaces: usize) -> (Feed, Drain) {
    let (mut feeds, drain) = queues(bytes, interfaces, 1);
    (feeds.remove(0), drain)
}

/// `feeds` queues of `bytes` each (one per forwarding worker), drained by one writer.
pub fn queues(bytes: usize, interfaces: usize, feeds: usize) -> (Vec<Feed>, Drain) {
    let mut all = Vec::with_capacity(feeds);
    let mut rings = Vec::with_capacity(feeds);
    for _ in 0..feeds.max(1) {
        let (ring, drain) = RingBuffer::new(bytes);
        let mut encoder = PcapNgWriter::new(Vec::with_capacity(1 << 12)).expect("writing to memory does not fail");
        for _ in 0..interfaces {
            let idb = InterfaceDescriptionBlock { linktype: DataLink::ETHERNET, snaplen: 0, options: vec![] };
            encoder.write_pcapng_block(idb).expect("writing to memory does not fail");
        }
        all.push(Feed { ring, encoder });
        rings.push(drain);
    }
    (all, Drain { rings })
}

impl Feed {
    /// Queues `r` as one enhanced packet block; false when it does not fit (it is then lost).
    pub fn offer(&mut self, r: &Record<'_>) -> bool {
        let flags = if r.outbound { EPB_OUTBOUND } else { EPB_INBOUND };
        let epb = EnhancedPacketBlock {
            interface_id: r.interface,
            timestamp: r.at,
            original_len: r.original_len,
            data: Cow::Borrowed(r.data),
            options: vec![EnhancedPacketOption::Comment(Cow::Borrowed(r.comment)), EnhancedPacketOption::Flags(flags)],
        };
        self.encoder.get_mut().clear();
        if self.encoder.write_pcapng_block(epb).is_err() {
            return false;
        }
        self.ring.push_entire_slice(self.encoder.get_ref()).is_ok()
    }
}

impl Drain {
    /// Whether the data plane let go of its ends (the capture was stopped there).
    pub fn is_abandoned(&self) -> bool {
        self.rings.iter().all(Consumer::is_abandoned)
    }

    /// Writes the queued blocks to `out`, at most `max` of them, calling `counted` with each
    /// one's interface; returns how many were written. Rings are taken in turn: with several
    /// workers, blocks are in each worker's order, not all in time order (pcapng allows it).
    pub fn pass_to(&mut self, out: &mut impl Write, max: u64, mut counted: impl FnMut(u32)) -> io::Result<u64> {
        let mut written = 0;
        for ring in &mut self.rings {
            written += pass_ring(ring, out, max - written, &mut counted)?;
        }
        Ok(written)
    }
}

/// [`Drain::pass_to`] for one ring.
fn pass_ring(
    ring: &mut Consumer<u8>,
    out: &mut impl Write,
    max: u64,
    counted: &mut impl FnMut(u32),
) -> io::Result<u64> {
    let queued = ring.slots();
    let Ok(chunk) = ring.read_chunk(queued) else { return Ok(0) };
    let (head, tail) = chunk.as_slices();
    let word = |at: usize| {
        let byte = |i: usize| if i < head.len() { head[i] } else { tail[i - head.len()] };
        u32::from_ne_bytes([byte(at), byte(at + 1), byte(at + 2), byte(at + 3)])
    };
    // The data plane commits whole blocks only: every block here is complete.
    let (mut end, mut blocks) = (0, 0);
    while end < queued && blocks < max {
        counted(word(end + 8));
        end += (word(end + 4) as usize).max(12);
        blocks += 1;
    }
    let split = end.min(head.len());
    out.write_all(&head[..split])?;
    out.write_all(&tail[..end - split])?;
    chunk.commit(end);
    Ok(blocks)
}

/// A queued block read back, for tests.
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub interface: u32,
    pub outbound: bool,
    pub original_len: u32,
    pub data: Vec<u8>,
    pub comment: String,
}

#[cfg(test)]
impl Drain {
    /// Takes every queued block and decodes it with pcap-file's parser.
    pub fn decode(&mut self) -> Vec<Decoded> {
        use pcap_file::pcapng::{Block, PcapNgParser};
        let mut file = PcapNgWriter::new(Vec::new()).unwrap().into_inner();
        self.pass_to(&mut file, u64::MAX, |_| {}).unwrap();
        let (mut rest, mut parser) = PcapNgParser::new(&file).unwrap();
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (r, block) = parser.next_block(rest).unwrap();
            rest = r;
            let Block::EnhancedPacket(epb) = block else { panic!("only packets are queued: {block:?}") };
            let (mut comment, mut flags) = (String::new(), 0);
            for o in &epb.options {
                match o {
                    EnhancedPacketOption::Comment(c) => comment = c.to_string(),
                    EnhancedPacketOption::Flags(f) => flags = *f,
                    _ => {}
                }
            }
            out.push(Decoded {
                interface: epb.interface_id,
                outbound: flags == EPB_OUTBOUND,
                original_len: epb.original_len,
                data: epb.data.to_vec(),
                comment,
            });
        }
        out
    }
}
