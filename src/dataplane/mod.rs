//! The data plane: I/O only. One thread owns every TAP and a mio `Poll`; it reads frames in
//! bursts, asks the [`Pipeline`] for a verdict, writes the frame where the verdict says and counts
//! the outcome per ENI. Control requests arrive over a crossbeam channel with a mio `Waker`, so the
//! packet path takes no lock.
//!
//! mio registration is edge-triggered: a ready TAP is drained until `WouldBlock`, but at most
//! [`BURST`] frames per turn so one busy ENI cannot starve the others; a TAP cut off by the budget
//! stays on the ready list and the next poll does not sleep.

pub mod tap;
pub mod uplink;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::model::EniIdx;
use crate::pipeline::{ConnectionView, DropReason, EniCounters, NoObserver, Pipeline, Recorder, Verdict};
use tap::{Tap, MAX_FRAME, VNET_HDR_LEN};

/// Frames read from one TAP before the loop turns to the others.
pub const BURST: usize = 64;

const WAKER: Token = Token(usize::MAX);

/// How often expired connections are reclaimed (each pass does bounded work per table).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// A request from the control side to the data plane.
#[derive(Debug)]
pub enum Command {
    /// Send back a snapshot of every ENI's counters (indexed like the model's ENIs).
    Counters(Sender<Vec<EniCounters>>),
    /// Run `frame` from `from` through the pipeline read-only and send back what it decided.
    Trace {
        /// The sending ENI; `None` for the emulated internet.
        from: Option<EniIdx>,
        /// The synthesized frame.
        frame: Vec<u8>,
        /// Where the answer goes.
        reply: Sender<(Verdict, Recorder)>,
    },
    /// Send back the tracked connections (of one ENI, or all).
    Connections(Option<EniIdx>, Sender<Vec<ConnectionView>>),
    /// Stop the loop; `run` returns.
    Shutdown,
}

/// The control side's end: sends commands and wakes the loop.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl Handle {
    /// Queues a command and wakes the loop. Fails only when the loop has ended.
    pub fn send(&self, command: Command) -> io::Result<()> {
        self.commands
            .send(command)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the data plane has stopped"))?;
        self.waker.wake()
    }

    /// Sends the command `make` builds around a reply channel and waits (at most `timeout`).
    pub fn ask<T>(&self, timeout: Duration, make: impl FnOnce(Sender<T>) -> Command) -> io::Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(make(tx))?;
        rx.recv_timeout(timeout).map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the data plane did not answer"))
    }
}

/// The forwarding loop and everything it owns.
#[derive(Debug)]
pub struct Dataplane {
    poll: Poll,
    taps: Vec<Option<Tap>>,
    pipeline: Pipeline,
    counters: Vec<EniCounters>,
    commands: Receiver<Command>,
    buf: Vec<u8>,
    start: Instant,
}

impl Dataplane {
    /// Registers the TAPs: indexed like the model's ENIs (`None` for an unattached ENI), then one
    /// more for the emulated internet (`None` when the lab has none).
    pub fn new(pipeline: Pipeline, taps: Vec<Option<Tap>>) -> io::Result<(Dataplane, Handle)> {
        let poll = Poll::new()?;
        for (i, tap) in taps.iter().enumerate() {
            if let Some(tap) = tap {
                let fd = std::os::fd::AsRawFd::as_raw_fd(tap);
                poll.registry().register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
            }
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = vec![EniCounters::default(); taps.len()];
        let dp = Dataplane {
            poll,
            taps,
            pipeline,
            counters,
            commands: rx,
            buf: vec![0u8; MAX_FRAME],
            start: Instant::now(),
        };
        Ok((dp, Handle { commands: tx, waker }))
    }

    /// Forwards until a [`Command::Shutdown`] arrives.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        // Ports to drain this turn, without duplicates (`queued` marks membership).
        let mut ready: Vec<usize> = Vec::with_capacity(self.taps.len());
        let mut still_ready: Vec<usize> = Vec::with_capacity(self.taps.len());
        let mut queued = vec![false; self.taps.len()];
        let mut next_housekeeping = HOUSEKEEPING;
        loop {
            let now = self.start.elapsed();
            if now >= next_housekeeping {
                self.pipeline.handle_timeout(now);
                next_housekeeping = now + HOUSEKEEPING;
            }
            let timeout = if ready.is_empty() { next_housekeeping.saturating_sub(now) } else { Duration::ZERO };
            let timeout = Some(timeout);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    if self.handle_commands() {
                        return Ok(());
                    }
                } else if !queued[ev.token().0] {
                    queued[ev.token().0] = true;
                    ready.push(ev.token().0);
                }
            }
            for &port in &ready {
                if self.drain(port) {
                    still_ready.push(port);
                } else {
                    queued[port] = false;
                }
            }
            ready.clear();
            std::mem::swap(&mut ready, &mut still_ready);
        }
    }

    /// Answers queued commands; true when told to shut down.
    fn handle_commands(&mut self) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                // The requester may have given up waiting; nothing to do then.
                Command::Counters(reply) => drop(reply.send(self.counters.clone())),
                Command::Trace { from, mut frame, reply } => {
                    let now = self.start.elapsed();
                    let traced = match from {
                        Some(eni) => self.pipeline.trace(now, eni, &mut frame),
                        None => self.pipeline.trace_internet(now, &mut frame),
                    };
                    drop(reply.send(traced));
                }
                Command::Connections(eni, reply) => {
                    drop(reply.send(self.pipeline.connections(self.start.elapsed(), eni)));
                }
                Command::Shutdown => return true,
            }
        }
        false
    }

    /// Reads up to a burst from one TAP; true if it may hold more.
    fn drain(&mut self, port: usize) -> bool {
        for _ in 0..BURST {
            let Some(tap) = &self.taps[port] else { return false };
            match tap.recv(&mut self.buf) {
                Ok(n) => self.handle_frame(port, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => match e.raw_os_error() {
                    // The device is gone (its namespace was deleted under it): stop polling it
                    // rather than spin on it, and say so in the forwarder's log.
                    Some(libc::EBADFD | libc::EIO | libc::ENXIO | libc::ENODEV) => {
                        if let Some(tap) = self.taps[port].take() {
                            eprintln!("vpclab: TAP of ENI #{port} ({}) is gone: {e}; no longer polled", tap.name());
                            let fd = std::os::fd::AsRawFd::as_raw_fd(&tap);
                            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                        }
                        return false;
                    }
                    // The kernel could not hand this one frame over and dropped it: count it and
                    // go on with the next.
                    _ => self.counters[port].count_drop(DropReason::RxError),
                },
            }
        }
        true
    }

    fn handle_frame(&mut self, port: usize, n: usize) {
        let counters = &mut self.counters[port];
        if n < VNET_HDR_LEN {
            counters.count_drop(DropReason::Malformed);
            return;
        }
        counters.rx_packets += 1;
        counters.rx_bytes += (n - VNET_HDR_LEN) as u64;
        let now = self.start.elapsed();
        let off = tap::offload(&self.buf[..VNET_HDR_LEN]);
        let internet = self.taps.len() - 1;
        let frame = &mut self.buf[VNET_HDR_LEN..n];
        let verdict = if port == internet {
            self.pipeline.process_internet(now, frame, off, &mut NoObserver)
        } else {
            self.pipeline.process_offloaded(now, EniIdx(port as u32), frame, off, &mut NoObserver)
        };
        match verdict {
            Verdict::Forward(to) => self.transmit(to.index(), n),
            Verdict::ToInternet => self.transmit(internet, n),
            Verdict::Reply => {
                self.buf[..VNET_HDR_LEN].fill(0);
                self.transmit(port, n);
            }
            Verdict::ReplyWith(len) => {
                self.buf[..VNET_HDR_LEN].fill(0);
                self.transmit(port, VNET_HDR_LEN + len);
            }
            Verdict::Drop(reason) => self.counters[port].count_drop(reason),
            Verdict::DropAt(reason, eni) => self.counters[eni.index()].count_drop(reason),
        }
    }

    fn transmit(&mut self, to: usize, n: usize) {
        let sent = match &self.taps[to] {
            Some(tap) => tap.send(&self.buf[..n]).is_ok(),
            None => false,
        };
        let c = &mut self.counters[to];
        if sent {
            c.tx_packets += 1;
            c.tx_bytes += (n - VNET_HDR_LEN) as u64;
        } else {
            c.count_drop(DropReason::TxFailed);
        }
    }
}
