//! One capture's writer, in the forwarder: records from the data plane's queue in, pcapng out.
//!
//! The file is a section header, one interface description block per captured point (named by
//! its id, described with instance and device, Ethernet, nanosecond timestamps), one enhanced
//! packet block per record (direction in the flags word, the fabric's verdict in the comment),
//! and at the end one interface statistics block per interface with `isb_ifrecv` (frames seen)
//! and `isb_ifdrop` (frames lost because the queue was full). Output is flushed whenever the
//! queue runs empty (looked at every millisecond), so a reader at the other end of a pipe sees
//! each frame within about a millisecond.

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::TryRecvError;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::blocks::interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, PcapError};

use super::{Captured, Drain, Interface, Lost};

/// pcapng `epb_flags` direction bits (RFC draft, section 4.3.1): inbound and outbound.
const EPB_INBOUND: u32 = 0b01;
const EPB_OUTBOUND: u32 = 0b10;

/// `if_tsresol` 9: timestamps in nanoseconds.
const TSRESOL_NANOS: u8 = 9;

/// How long the writer naps when its queue is empty (it also looks at its stop conditions then).
/// At most this is added to a frame's way to the file or pipe; the queue (8,192 records) absorbs
/// several million frames a second meanwhile.
const NAP: Duration = Duration::from_millis(1);

/// When a capture ends by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// After this many frames.
    pub count: Option<u64>,
    /// After this long.
    pub duration: Option<Duration>,
}

/// What a finished capture wrote, per interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Frames written.
    pub written: Vec<u64>,
    /// Frames lost (queue full).
    pub lost: Vec<u64>,
}

/// The pcapng stream of one capture.
pub struct Writer<W: Write> {
    out: PcapNgWriter<BufWriter<W>>,
    written: Vec<u64>,
    started: Duration,
}

fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

impl<W: Write> Writer<W> {
    /// Writes the section header and one interface description per interface.
    pub fn new(out: W, interfaces: &[Interface], snaplen: u32) -> io::Result<Self> {
        let mut out = PcapNgWriter::new(BufWriter::new(out)).map_err(io_error)?;
        for i in interfaces {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(i.name.clone())),
                    InterfaceDescriptionOption::IfDescription(Cow::Owned(i.description.clone())),
                    InterfaceDescriptionOption::IfTsResol(TSRESOL_NANOS),
                ],
            };
            out.write_pcapng_block(idb).map_err(io_error)?;
        }
        out.get_mut().flush()?;
        Ok(Writer { out, written: vec![0; interfaces.len()], started: since_epoch() })
    }

    /// Writes one record (not flushed).
    pub fn packet(&mut self, r: &Captured) -> io::Result<()> {
        let flags = if r.outbound { EPB_OUTBOUND } else { EPB_INBOUND };
        let epb = EnhancedPacketBlock {
            interface_id: r.interface,
            timestamp: r.at,
            original_len: r.original_len,
            data: Cow::Borrowed(&r.data),
            options: vec![EnhancedPacketOption::Comment(Cow::Borrowed(&r.comment)), EnhancedPacketOption::Flags(flags)],
        };
        self.out.write_pcapng_block(epb).map_err(io_error)?;
        if let Some(n) = self.written.get_mut(r.interface as usize) {
            *n += 1;
        }
        Ok(())
    }

    /// Frames written so far.
    pub fn count(&self) -> u64 {
        self.written.iter().sum()
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.get_mut().flush()
    }

    /// Ends the file: one statistics block per interface, with `lost[i]` frames lost.
    pub fn finish(mut self, lost: &[u64]) -> io::Result<Totals> {
        let (start, end) = (self.started.as_nanos() as u64, since_epoch().as_nanos() as u64);
        for (i, &written) in self.written.iter().enumerate() {
            let dropped = lost.get(i).copied().unwrap_or(0);
            let isb = InterfaceStatisticsBlock {
                interface_id: i as u32,
                timestamp: end,
                options: vec![
                    InterfaceStatisticsOption::IsbStartTime(start),
                    InterfaceStatisticsOption::IsbEndTime(end),
                    InterfaceStatisticsOption::IsbIfRecv(written + dropped),
                    InterfaceStatisticsOption::IsbIfDrop(dropped),
                ],
            };
            self.out.write_pcapng_block(isb).map_err(io_error)?;
        }
        self.flush()?;
        Ok(Totals { written: self.written, lost: lost.to_vec() })
    }
}

/// Runs one capture to its end: writes records from `records` until `limits` are reached,
/// `stop` is set (the client went away or asked to end) or the queue's sender is gone; then
/// calls `detach` (which must stop the data plane feeding the queue), writes what was still
/// queued (within the count) and the statistics. A write error (the client gone) ends it too,
/// after `detach`.
pub fn run<W: Write>(
    mut w: Writer<W>,
    records: &Drain,
    lost: &Lost,
    limits: Limits,
    stop: &AtomicBool,
    detach: impl FnOnce(),
) -> io::Result<Totals> {
    let pumped = pump(&mut w, records, limits, stop);
    detach();
    pumped?;
    let room = |w: &Writer<W>| limits.count.is_none_or(|c| w.count() < c);
    while let Ok(r) = records.try_recv() {
        if !room(&w) {
            break;
        }
        w.packet(&r)?;
    }
    let lost: Vec<u64> = lost.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    w.finish(&lost)
}

fn pump<W: Write>(w: &mut Writer<W>, records: &Drain, limits: Limits, stop: &AtomicBool) -> io::Result<()> {
    let deadline = limits.duration.map(|d| Instant::now() + d);
    let mut unflushed = false;
    loop {
        if stop.load(Ordering::Relaxed) || limits.count.is_some_and(|c| w.count() >= c) {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        // Drain what is queued, then flush once and nap: the writer never blocks in the queue,
        // so the data plane's sends never have a sleeping receiver to wake (a system call per
        // frame); a reader at the end of a pipe sees each frame within a nap.
        match records.try_recv() {
            Ok(r) => {
                w.packet(&r)?;
                records.give_back(r);
                unflushed = true;
            }
            Err(TryRecvError::Empty) => {
                if unflushed {
                    w.flush()?;
                    unflushed = false;
                }
                std::thread::sleep(NAP);
            }
            Err(TryRecvError::Disconnected) => return Ok(()),
        }
    }
}
