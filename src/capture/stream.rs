//! One capture's writer, in the forwarder: blocks from the data plane's queue in, pcapng out.
//!
//! The file is a section header, one interface description block per captured point (named by
//! its id, described with instance and device, Ethernet, nanosecond timestamps), one enhanced
//! packet block per frame (direction in the flags word, the fabric's verdict in the comment;
//! encoded by the data plane, see [`super::queue`](mod@super::queue)), and at the end one interface statistics
//! block per interface with `isb_ifrecv` (frames seen) and `isb_ifdrop` (frames lost because
//! the queue was full). Output is written whenever the queue runs empty (looked at every
//! millisecond), so a reader at the other end of a pipe sees each frame within about a
//! millisecond.

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::blocks::interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, PcapError};

use super::{Drain, Interface, Lost};

/// `if_tsresol` 9: timestamps in nanoseconds.
const TSRESOL_NANOS: u8 = 9;

/// How long the writer naps when its queue is empty (it also looks at its stop conditions then).
/// At most this is added to a frame's way to the file or pipe; the queue absorbs several million
/// frames a second meanwhile.
const NAP: Duration = Duration::from_millis(1);

/// The writer's buffer: one system call (and one wake-up of the client) per this many bytes.
const BUFFER: usize = 1 << 16;

/// How long in all a write waits for a reader who stopped reading before the capture ends.
const STALL: Duration = Duration::from_secs(30);

/// A capture's output as its client passed it: a file, or a pipe to Wireshark or tcpdump. The
/// writer writes to it directly (no copy through the client). Made non-blocking, so that a
/// reader who stops reading cannot hold the writer forever: a write waits for room at most
/// 30 s, then fails and ends the capture. Its flags are restored when it is dropped.
#[derive(Debug)]
pub struct Output {
    file: std::fs::File,
    flags: Option<nix::fcntl::OFlag>,
}

impl Output {
    /// Takes over `fd`.
    pub fn new(fd: std::os::fd::OwnedFd) -> Self {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = fcntl(&fd, FcntlArg::F_GETFL).ok().map(OFlag::from_bits_truncate);
        if let Some(f) = flags {
            let _ = fcntl(&fd, FcntlArg::F_SETFL(f | OFlag::O_NONBLOCK));
        }
        Output { file: fd.into(), flags }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = Instant::now() + STALL;
        loop {
            match self.file.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the reader stopped reading"));
                    }
                    let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(100u16));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(f) = self.flags {
            let _ = nix::fcntl::fcntl(&self.file, nix::fcntl::FcntlArg::F_SETFL(f));
        }
    }
}

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
        let mut out = PcapNgWriter::new(BufWriter::with_capacity(BUFFER, out)).map_err(io_error)?;
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

    /// Writes what is queued in `records` (not flushed), within `limits`' count.
    pub fn blocks(&mut self, records: &mut Drain, limits: Limits) -> io::Result<u64> {
        let room = limits.count.map_or(u64::MAX, |c| c.saturating_sub(self.count()));
        let written = &mut self.written;
        records.pass_to(self.out.get_mut(), room, |i| {
            if let Some(n) = written.get_mut(i as usize) {
                *n += 1;
            }
        })
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

/// Runs one capture to its end: writes blocks from `records` until `limits` are reached,
/// `asked_to_stop` says so (the client went away or asked to end; it is asked whenever the queue
/// runs empty) or the data plane let go of the queue; then calls `detach` (which must stop the
/// data plane feeding the queue), writes what was still queued (within the count) and the
/// statistics. A write error (the reader gone) ends it too, after `detach`.
pub fn run<W: Write>(
    mut w: Writer<W>,
    records: &mut Drain,
    lost: &Lost,
    limits: Limits,
    asked_to_stop: impl FnMut() -> bool,
    detach: impl FnOnce(),
) -> io::Result<Totals> {
    let pumped = pump(&mut w, records, limits, asked_to_stop);
    detach();
    pumped?;
    w.blocks(records, limits)?;
    let lost: Vec<u64> = lost.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    w.finish(&lost)
}

fn pump<W: Write>(
    w: &mut Writer<W>,
    records: &mut Drain,
    limits: Limits,
    mut asked_to_stop: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = limits.duration.map(|d| Instant::now() + d);
    loop {
        if limits.count.is_some_and(|c| w.count() >= c) {
            return Ok(());
        }
        // Write what is queued; when nothing was, flush and nap: the writer never blocks on the
        // queue, so the data plane never has a sleeping writer to wake (a system call per
        // frame); a reader at the end of a pipe sees each frame within a nap.
        let written = w.blocks(records, limits)?;
        if written == 0 {
            w.flush()?;
        }
        if asked_to_stop() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        if written > 0 {
            continue;
        }
        if records.is_abandoned() {
            return Ok(());
        }
        std::thread::sleep(NAP);
    }
}
