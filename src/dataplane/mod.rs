//! The data plane: I/O only. One thread owns every TAP (with `up --workers N`, each of N
//! threads owns one queue of every multiqueue TAP: see [`workers`]) and a mio `Poll`; it reads
//! frames in bursts, asks the [`Pipeline`] for a verdict, writes the frame where the verdict says and counts
//! the outcome per ENI. Control requests arrive over a crossbeam channel with a mio `Waker`, so the
//! packet path takes no lock.
//!
//! The loop sees its TAPs through the small [`Port`] trait, and [`Dataplane`] with what it takes
//! and answers ([`Swap`], [`SwapDone`], [`Command`], [`Handle`]) is generic over the port type,
//! with [`Tap`] as the default: the forwarder is compiled for TAPs alone (static dispatch, as
//! before), while unit tests run the same loop on in-memory [`MemPort`]s without root.
//!
//! mio registration is edge-triggered: a ready TAP is drained until `WouldBlock`, but at most
//! [`BURST`] frames per turn so one busy ENI cannot starve the others; a TAP cut off by the budget
//! stays on the ready list and the next poll does not sleep.
//!
//! Ports are indexed like the pipeline's ([`Pipeline::port_ids`]): the model's ENIs, then the
//! internet. A port's mio token is made by `port_token` from its index and read back by
//! `Source::of`, next to the waker's `WAKER`: what a token means is said in one place. A live
//! change arrives as a [`Command::Swap`]: a pipeline compiled off the packet path, which takes
//! over the old one's state by id; TAPs and counters follow their port id to its new index, TAPs
//! that moved are registered again under their new token, and every port is drained once (the
//! ready list held old indexes). What the swap leaves behind (TAPs of removed ports, the old
//! pipeline) goes back to the control thread to be closed there: closing a TAP can take
//! milliseconds, never on the packet thread.
//!
//! [`Watch`]es report data-plane moments once (the first frame written to a port, say, to time a
//! failover): with none armed they cost one branch per frame written; one that fires is removed
//! and sent without blocking.

pub mod owner;
pub mod port;
mod service;
pub mod tap;
pub mod uplink;
pub mod workers;

use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use hashbrown::HashMap;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::capture::flow_log::{FlowLogConfig, FlowLogs};
use crate::capture::mirror::{Mirrors, SessionStats};
use crate::capture::{CaptureTap, Captures, Seen};
use crate::model::EniIdx;
use crate::pipeline::{
    ConnectionView, DropReason, EniCounters, NatReached, NoObserver, Observer, Pipeline, Recorder, Verdict,
};
pub use port::{MemPort, Port};
use tap::{Tap, MAX_FRAME, VNET_HDR_LEN};

/// The largest frame a capture copies to explain it should it be dropped (a jumbo frame).
const EXPLAINED_FRAME: usize = 9216;

/// Frames read from one TAP before the loop turns to the others.
pub const BURST: usize = 64;

/// The waker's token: control commands are queued. Port tokens count up from 0 (see
/// [`port_token`]); the waker sits at the other end of the range so the two never meet.
const WAKER: Token = Token(usize::MAX);

/// The token port `index` (as in [`Pipeline::port_ids`]) is registered under.
fn port_token(index: usize) -> Token {
    Token(index)
}

/// What a ready token stands for: the one place that reads a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Commands are waiting.
    Waker,
    /// The service namespace's port has frames.
    Service,
    /// The port at this index has frames.
    Port(usize),
}

impl Source {
    fn of(token: Token) -> Source {
        if token == WAKER {
            Source::Waker
        } else if token == service::SERVICE {
            Source::Service
        } else {
            Source::Port(token.0)
        }
    }
}

/// How often expired connections are reclaimed (each pass does bounded work per table).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// A freshly compiled lab for the data plane to swap in.
#[derive(Debug)]
pub struct Swap<P = Tap> {
    /// Built with `Pipeline::new(&new_model)`: empty tables; it takes over the live state.
    pub pipeline: Pipeline,
    /// TAPs of ports that are new in this swap, by port id. A port that already has a TAP keeps
    /// it; one given here for it anyway is returned unused.
    pub new_taps: Vec<(String, P)>,
    /// Data-plane moments to report once; they replace those still armed. A watch on a port the
    /// new lab does not have is dropped: it could never fire.
    pub watches: Vec<Watch>,
    /// Where [`SwapDone`] goes. It should have room (bounded(1), or unbounded): the data plane
    /// does not wait for it.
    pub reply: Sender<SwapDone<P>>,
}

/// What a swap did, and what it left for the control thread to close.
#[derive(Debug)]
pub struct SwapDone<P = Tap> {
    /// Every TAP not kept: old ones whose port is gone, new ones not used. Drop them on the
    /// control thread (closing a TAP removes its device, which can take milliseconds).
    pub retired: Vec<P>,
    /// The pipeline swapped out, holding the state of removed objects and the empty tables the
    /// new one was built with. Drop it on the control thread too: its tables own memory.
    pub previous: Pipeline,
    /// The new pipeline's generation.
    pub generation: u64,
    /// How long the swap held the packet thread (state carried, TAPs re-registered).
    pub stalled: Duration,
}

/// Reported once, the first time the data plane writes an IPv4 frame to `port` (a port id) —
/// whose destination is `dst_ip`, when given. The fabric's ARP answers do not count: a drill
/// wants the first traffic delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The port id ([`Pipeline::port_ids`]).
    pub port: String,
    /// Only frames to this IPv4 destination count, when given.
    pub dst_ip: Option<Ipv4Addr>,
    /// What to report.
    pub label: String,
}

/// A [`Watch`] that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredWatch {
    /// When the frame was written.
    pub at: SystemTime,
    /// The watch's label.
    pub label: String,
}

/// A watch with its port resolved to an index.
#[derive(Debug)]
struct Armed {
    port: usize,
    dst_ip: Option<Ipv4Addr>,
    label: String,
    /// Set by the first worker that reports it (several workers share one).
    once: Arc<AtomicBool>,
}

/// A request from the control side to the data plane.
#[derive(Debug)]
pub enum Command<P = Tap> {
    /// Send back a snapshot of every port's counters (indexed like [`Pipeline::port_ids`]).
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
    /// Send back the pipeline's connection-table sizes and NAT gateway counters, for metrics.
    Stats(Sender<crate::pipeline::PipelineStats>),
    /// Send back the tracked connections (of one ENI, or all).
    Connections(Option<EniIdx>, Sender<Vec<ConnectionView>>),
    /// Swap in a freshly compiled lab between two bursts; see [`Swap`].
    Swap(Box<Swap<P>>),
    /// Start feeding a capture's queue.
    Capture(Box<CaptureTap>),
    /// Stop feeding capture `id`; `done` is told once no more records will come.
    StopCapture {
        /// The capture.
        id: u64,
        /// Answered when it is stopped.
        done: Sender<()>,
    },
    /// Send back what each flow log wrote and lost.
    FlowLogStats(Sender<Vec<crate::capture::flow_log::FlowLogStats>>),
    /// Send back what each traffic mirror session did (in the model's order).
    MirrorStats(Sender<Vec<SessionStats>>),
    /// Take the lab's flow logs (at start, and after each live change); see [`FlowLogs::configure`].
    FlowLogs(Box<FlowLogConfig>),
    /// One worker's part of a swap when several forward: made by the handle's fan-out (see
    /// `workers`), with one flag per watch shared by every worker so each is reported once.
    WorkerSwap(Box<Swap<P>>, Vec<Arc<AtomicBool>>),
    /// Stop the loop; `run` returns.
    Shutdown,
}

/// What the commands of one wake-up ask of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterCommands {
    /// Go on.
    Go,
    /// Port indexes changed: the ready list must be rebuilt.
    Swapped,
    /// Return from `run`.
    Stop,
}

/// The control side's end: sends commands and wakes the loop (every worker's, with several:
/// see [`workers`]).
#[derive(Debug)]
pub struct Handle<P = Tap> {
    /// By worker.
    links: Vec<Link<P>>,
    /// With several workers: what the fan-out keeps; `None` with one.
    fanout: Option<Arc<Mutex<workers::Fanout>>>,
}

/// One worker's command queue and waker.
#[derive(Debug)]
struct Link<P> {
    commands: Sender<Command<P>>,
    waker: Arc<Waker>,
}

// Not derived: a derive would ask for `P: Clone`, and a handle clones without cloning ports.
impl<P> Clone for Handle<P> {
    fn clone(&self) -> Self {
        let links =
            self.links.iter().map(|l| Link { commands: l.commands.clone(), waker: Arc::clone(&l.waker) }).collect();
        Handle { links, fanout: self.fanout.clone() }
    }
}

impl<P: Send + 'static> Handle<P> {
    /// Queues a command and wakes the loop (with several workers, those it concerns). Fails
    /// when the loop has ended, or for a capture with several workers (see `send_to`).
    pub fn send(&self, command: Command<P>) -> io::Result<()> {
        match self.links.as_slice() {
            [one] => one.send(command),
            _ => self.fan_out(command),
        }
    }

    /// How many workers forward.
    pub fn workers(&self) -> usize {
        self.links.len()
    }

    /// Queues a command for worker `worker` alone (a capture's queue of that worker); with one
    /// worker, [`send`](Self::send).
    pub fn send_to(&self, worker: usize, command: Command<P>) -> io::Result<()> {
        match self.links.get(worker) {
            Some(link) => link.send(command),
            None => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no worker {worker}"))),
        }
    }

    /// Sends the command `make` builds around a reply channel and waits (at most `timeout`).
    pub fn ask<T>(&self, timeout: Duration, make: impl FnOnce(Sender<T>) -> Command<P>) -> io::Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(make(tx))?;
        rx.recv_timeout(timeout).map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the data plane did not answer"))
    }
}

/// The forwarding loop and everything it owns.
#[derive(Debug)]
pub struct Dataplane<P = Tap> {
    poll: Poll,
    /// By port index ([`port_token`]); `None` for a port without a TAP.
    ports: Vec<Option<P>>,
    pipeline: Pipeline,
    /// By port index.
    counters: Vec<EniCounters>,
    commands: Receiver<Command<P>>,
    watches: Vec<Armed>,
    events: Sender<FiredWatch>,
    buf: Vec<u8>,
    start: Instant,
    /// Running captures; empty (one branch per frame) when nobody captures.
    captures: Captures,
    /// A frame as read, kept while the pipeline rewrites it, for captures and mirror sessions
    /// of its sender.
    capture_input: Vec<u8>,
    /// One wire packet of a superframe being mirrored (its buffer reused).
    segment: Vec<u8>,
    /// The lab's traffic mirror sessions; inactive (one branch per frame) when it has none.
    mirrors: Mirrors,
    /// Captures run, the lab mirrors traffic or logs flows: frames take the observed path. One
    /// flag, so that without any of them the data plane pays one branch per frame.
    observed: bool,
    /// VPC Flow Logs; inactive (one branch per frame) when the lab has none.
    flow_logs: FlowLogs,
    /// With several workers: the other workers and the rings to them; `None` (one branch per
    /// frame) with one.
    crew: Option<Box<workers::Crew>>,
    /// The port to the service namespace (instance metadata), if the lab has one.
    service: service::ServicePort<P>,
}

impl<P: Port> Dataplane<P> {
    /// Registers the ports (TAPs and the uplink; in-memory ports in tests), indexed like the
    /// pipeline's ([`Pipeline::port_ids`]): the model's ENIs (`None` for an unattached ENI), then
    /// the internet (`None` when the lab has none). Fired [`Watch`]es go to `events` (sent
    /// without blocking: give it room).
    pub fn new(
        pipeline: Pipeline,
        taps: Vec<Option<P>>,
        events: Sender<FiredWatch>,
    ) -> io::Result<(Dataplane<P>, Handle<P>)> {
        let ports = pipeline.port_ids().len();
        if taps.len() != ports {
            let msg = format!("{} TAPs for the pipeline's {ports} ports", taps.len());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        let poll = Poll::new()?;
        for (i, tap) in taps.iter().enumerate() {
            if let Some(tap) = tap {
                let fd = tap.as_raw_fd();
                poll.registry().register(&mut SourceFd(&fd), port_token(i), Interest::READABLE)?;
            }
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = vec![EniCounters::default(); taps.len()];
        let mirrors = Mirrors::new(pipeline.model(), None);
        let dp = Dataplane {
            poll,
            ports: taps,
            pipeline,
            counters,
            commands: rx,
            watches: Vec::new(),
            events,
            buf: vec![0u8; MAX_FRAME],
            start: Instant::now(),
            captures: Captures::default(),
            capture_input: Vec::new(),
            segment: Vec::new(),
            observed: mirrors.active(),
            mirrors,
            flow_logs: FlowLogs::default(),
            crew: None,
            service: service::ServicePort::default(),
        };
        Ok((dp, Handle { links: vec![Link { commands: tx, waker }], fanout: None }))
    }

    /// `queues.len()` workers (at least one), worker `w` reading `queues[w]` (its queue of each
    /// port, indexed like the pipeline's ports; see [`Dataplane::new`]), each with its own
    /// pipeline: `pipeline` for worker 0, the others compiled from its model. One handle
    /// reaches them all. Each worker's [`run`](Self::run) is meant for a thread of its own.
    pub fn workers(
        pipeline: Pipeline,
        queues: Vec<Vec<Option<P>>>,
        events: Sender<FiredWatch>,
    ) -> io::Result<(Vec<Dataplane<P>>, Handle<P>)> {
        let n = queues.len();
        if n <= 1 {
            let taps = queues.into_iter().next().unwrap_or_default();
            let (dp, handle) = Dataplane::new(pipeline, taps, events)?;
            return Ok((vec![dp], handle));
        }
        let owners = owner::Owners::new(pipeline.model(), n);
        let mut fanout = workers::Fanout::new(owners.clone());
        let pipelines = workers::shard(pipeline, n, &mut fanout);
        let mut planes = Vec::with_capacity(n);
        let mut links = Vec::with_capacity(n);
        for (pipeline, taps) in pipelines.into_iter().zip(queues) {
            let (dp, handle) = Dataplane::new(pipeline, taps, events.clone())?;
            planes.push(dp);
            links.extend(handle.links);
        }
        let wakers: Vec<Arc<Waker>> = links.iter().map(|l| Arc::clone(&l.waker)).collect();
        for (dp, crew) in planes.iter_mut().zip(workers::Crew::team(&owners, &wakers)) {
            dp.crew = Some(Box::new(crew));
        }
        Ok((planes, Handle { links, fanout: Some(Arc::new(Mutex::new(fanout))) }))
    }

    /// Forwards until a [`Command::Shutdown`] arrives.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        // Ports to drain this turn, without duplicates (`queued` marks membership).
        let mut ready: Vec<usize> = Vec::with_capacity(self.ports.len());
        let mut still_ready: Vec<usize> = Vec::with_capacity(self.ports.len());
        let mut queued = vec![false; self.ports.len()];
        let mut next_housekeeping = HOUSEKEEPING;
        // With several workers: frames handed to this one may still be queued.
        let mut handed = false;
        loop {
            let now = self.start.elapsed();
            if now >= next_housekeeping {
                self.pipeline.handle_timeout(now);
                if self.flow_logs.is_active() {
                    self.flow_logs.tick(unix_now());
                }
                next_housekeeping = now + HOUSEKEEPING;
            }
            let idle = ready.is_empty() && !handed && !self.service.ready;
            let timeout = if idle { next_housekeeping.saturating_sub(now) } else { Duration::ZERO };
            let timeout = Some(timeout);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut swapped = false;
            for ev in events.iter() {
                match Source::of(ev.token()) {
                    Source::Waker => match self.handle_commands() {
                        AfterCommands::Go => {}
                        AfterCommands::Swapped => swapped = true,
                        AfterCommands::Stop => return Ok(()),
                    },
                    Source::Service => self.service.ready = true,
                    // The rest of this batch may name ports by their index before the swap;
                    // every port is drained below anyway.
                    Source::Port(_) if swapped => {}
                    Source::Port(port) => {
                        if !queued[port] {
                            queued[port] = true;
                            ready.push(port);
                        }
                    }
                }
            }
            if swapped {
                // Ports moved: drain every one once (each stops at WouldBlock), which also
                // catches frames that arrived while a TAP was being registered again.
                ready.clear();
                still_ready.clear();
                ready.extend(0..self.ports.len());
                queued.clear();
                queued.resize(self.ports.len(), true);
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
            if self.service.ready {
                self.service.ready = self.drain_service();
            }
            if self.crew.is_some() {
                handed = self.take_handoffs();
            }
        }
    }

    /// With several workers: judges up to a burst of the frames each other worker handed this
    /// one, then wakes the workers this turn handed frames to. True if a ring may hold more.
    fn take_handoffs(&mut self) -> bool {
        let Some(rings) = self.crew.as_ref().map(|c| c.incoming()) else { return false };
        let generation = self.pipeline.generation();
        let mut more = false;
        for from in 0..rings {
            let mut budget = BURST;
            loop {
                if budget == 0 {
                    more = true;
                    break;
                }
                budget -= 1;
                // The crew stays in place: judging a frame may hand its mirror copy on.
                let Some(crew) = self.crew.as_mut() else { return false };
                match crew.take(from, generation, &mut self.buf) {
                    workers::Taken::Empty => break,
                    workers::Taken::Frame { what, len } => self.handle_handed(what, len),
                    workers::Taken::Stale => {
                        let internet = self.ports.len() - 1;
                        self.counters[internet].count_drop(DropReason::HandoffLost);
                    }
                }
            }
        }
        if let Some(crew) = self.crew.as_mut() {
            crew.wake_peers();
        }
        more
    }

    /// Judges a record another worker handed this one (now in the buffer): a frame as read, or
    /// a mirror copy; one whose port or session this configuration lacks is counted as lost.
    fn handle_handed(&mut self, what: workers::Handed, len: usize) {
        let chosen = match what {
            workers::Handed::Frame { port } if port < self.ports.len() => return self.handle_owned(port, len),
            workers::Handed::Frame { .. } => None,
            workers::Handed::Mirror { port, at } => self.mirrors.chosen(port, at),
        };
        let Some(c) = chosen else {
            let internet = self.ports.len() - 1;
            return self.counters[internet].count_drop(DropReason::HandoffLost);
        };
        let mut copy = std::mem::take(&mut self.mirrors.buf);
        copy.clear();
        copy.extend_from_slice(&self.buf[..len]);
        self.mirrors.buf = copy;
        self.judge_copy(c, len);
    }

    /// Answers queued commands.
    fn handle_commands(&mut self) -> AfterCommands {
        let mut after = AfterCommands::Go;
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                // The requester may have given up waiting; nothing to do then.
                Command::Counters(reply) => drop(reply.send(self.counters.clone())),
                Command::Trace { from, mut frame, reply } => {
                    let now = self.start.elapsed();
                    let traced = match from {
                        // An index from a model a swap has since replaced may name no ENI:
                        // the requester sees no answer rather than the loop panicking.
                        Some(eni) if eni.index() + 1 >= self.ports.len() => continue,
                        Some(eni) => self.pipeline.trace(now, eni, &mut frame),
                        None => self.pipeline.trace_internet(now, &mut frame),
                    };
                    drop(reply.send(traced));
                }
                Command::Stats(reply) => drop(reply.send(self.pipeline.stats())),
                Command::Connections(eni, reply) => {
                    drop(reply.send(self.pipeline.connections(self.start.elapsed(), eni)));
                }
                Command::Swap(swap) => {
                    let once = swap.watches.iter().map(|_| Arc::default()).collect();
                    self.swap(*swap, once);
                    after = AfterCommands::Swapped;
                }
                Command::WorkerSwap(swap, once) => {
                    self.swap(*swap, once);
                    after = AfterCommands::Swapped;
                }
                Command::Capture(tap) => {
                    self.captures.add(*tap, self.pipeline.port_ids(), self.pipeline.nat_ids());
                }
                Command::StopCapture { id, done } => {
                    self.captures.remove(id);
                    let _ = done.send(());
                }
                Command::MirrorStats(reply) => drop(reply.send(self.mirrors.stats())),
                Command::FlowLogStats(reply) => drop(reply.send(self.flow_logs.stats())),
                Command::FlowLogs(config) => {
                    let (ports, nats) = (self.pipeline.port_ids(), self.pipeline.nat_ids());
                    self.flow_logs.configure(*config, &ports, &nats, unix_now());
                }
                Command::Shutdown => {
                    // Nothing is lost: the intervals in progress are written as they stand.
                    self.flow_logs.close_all(unix_now());
                    return AfterCommands::Stop;
                }
            }
        }
        self.observed = !self.captures.is_empty() || self.mirrors.active() || self.flow_logs.is_active();
        after
    }

    /// Swaps in a freshly compiled lab: its pipeline takes the old one's state, TAPs and counters
    /// follow their port id, TAPs at a new index are registered under their new token, watches
    /// are replaced; what is left over goes back with the reply.
    fn swap(&mut self, swap: Swap<P>, once: Vec<Arc<AtomicBool>>) {
        let started = Instant::now();
        let Swap { pipeline: mut new, new_taps, watches, reply } = swap;
        new.take_state_from(&mut self.pipeline);
        let (old_ids, new_ids) = (self.pipeline.port_ids(), new.port_ids());
        let previous = std::mem::replace(&mut self.pipeline, new);

        let taps = rekey(&old_ids, std::mem::take(&mut self.ports), &new_ids, new_taps);
        let registry = self.poll.registry();
        let mut retired = Vec::with_capacity(taps.gone.len() + taps.unused.len());
        for tap in taps.gone {
            let fd = tap.as_raw_fd();
            let _ = registry.deregister(&mut SourceFd(&fd));
            retired.push(tap);
        }
        retired.extend(taps.unused);
        self.ports = Vec::with_capacity(taps.slots.len());
        for (i, slot) in taps.slots.into_iter().enumerate() {
            let Some((tap, origin)) = slot else {
                self.ports.push(None);
                continue;
            };
            let fd = tap.as_raw_fd();
            let registered = match origin {
                Origin::Kept(was) if was == i => Ok(()),
                Origin::Kept(_) => registry.reregister(&mut SourceFd(&fd), port_token(i), Interest::READABLE),
                Origin::Added => registry.register(&mut SourceFd(&fd), port_token(i), Interest::READABLE),
            };
            if let Err(e) = registered {
                // Frames can still be written to it; say why none are read.
                crate::log!("TAP of port {} ({}) cannot be polled: {e}", new_ids[i], tap.name());
            }
            self.ports.push(Some(tap));
        }

        let counters = std::mem::take(&mut self.counters).into_iter().map(Some).collect();
        let counters = rekey(&old_ids, counters, &new_ids, Vec::new());
        self.counters = counters.slots.into_iter().map(|s| s.map(|(c, _)| c).unwrap_or_default()).collect();

        self.watches = watches
            .into_iter()
            .zip(once)
            .filter_map(|(w, once)| {
                let port = new_ids.iter().position(|id| *id == w.port)?;
                Some(Armed { port, dst_ip: w.dst_ip, label: w.label, once })
            })
            .collect();
        if let Some(crew) = &mut self.crew {
            crew.set_owners(owner::Owners::new(self.pipeline.model(), crew.workers()));
        }

        if !self.captures.is_empty() {
            self.captures.rekey(new_ids.clone(), self.pipeline.nat_ids());
        }
        self.mirrors = Mirrors::new(self.pipeline.model(), Some(&self.mirrors));
        if self.flow_logs.is_active() {
            self.flow_logs.rekey(&new_ids, &self.pipeline.nat_ids());
        }

        let done = SwapDone { retired, previous, generation: self.pipeline.generation(), stalled: started.elapsed() };
        // Nobody waiting: what it carries is closed here, the one case it is.
        let _ = reply.try_send(done);
    }

    /// Takes the ports out of a stopped data plane, so that the caller decides when they close
    /// (after the namespaces went: the kernel then removes their devices in one batch).
    pub fn take_ports(&mut self) -> Vec<Option<P>> {
        std::mem::take(&mut self.ports)
    }

    /// Reads up to a burst from one TAP; true if it may hold more.
    fn drain(&mut self, port: usize) -> bool {
        for _ in 0..BURST {
            let Some(tap) = &self.ports[port] else { return false };
            match tap.recv(&mut self.buf) {
                Ok(n) => self.handle_frame(port, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => match e.raw_os_error() {
                    // The device is gone (its namespace was deleted under it): stop polling it
                    // rather than spin on it, and say so in the forwarder's log.
                    Some(libc::EBADFD | libc::EIO | libc::ENXIO | libc::ENODEV) => {
                        if let Some(tap) = self.ports[port].take() {
                            crate::log!("TAP of ENI #{port} ({}) is gone: {e}; no longer polled", tap.name());
                            let fd = tap.as_raw_fd();
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
        if let Some(crew) = &mut self.crew {
            if n > VNET_HDR_LEN {
                if let Some(owner) = crew.owner_elsewhere(&self.buf[VNET_HDR_LEN..n]) {
                    let what = workers::Handed::Frame { port };
                    if !crew.hand_off(owner, what, self.pipeline.generation(), &self.buf[..n]) {
                        self.counters[port].count_drop(DropReason::HandoffLost);
                    }
                    return;
                }
            }
        }
        self.handle_owned(port, n);
    }

    /// Judges and carries out a frame this worker owns (every frame, with one worker).
    fn handle_owned(&mut self, port: usize, n: usize) {
        let counters = &mut self.counters[port];
        if n < VNET_HDR_LEN {
            counters.count_drop(DropReason::Malformed);
            return;
        }
        counters.rx_packets += 1;
        counters.rx_bytes += (n - VNET_HDR_LEN) as u64;
        if self.observed {
            return self.handle_captured_frame(port, n);
        }
        let verdict = self.decide(port, n, &mut NoObserver);
        self.carry_out(port, n, verdict);
    }

    /// The pipeline's verdict on the frame in the buffer, read from `port`.
    fn decide<O: Observer>(&mut self, port: usize, n: usize, obs: &mut O) -> Verdict {
        let now = self.start.elapsed();
        let off = tap::offload(&self.buf[..VNET_HDR_LEN]);
        let internet = self.ports.len() - 1;
        let frame = &mut self.buf[VNET_HDR_LEN..n];
        let verdict = if port == internet {
            self.pipeline.process_internet(now, frame, off, obs)
        } else {
            self.pipeline.process_offloaded(now, EniIdx(port as u32), frame, off, obs)
        };
        if let Verdict::ReplyWith(len) = verdict {
            // A fabric answer longer than its request (a DHCP reply) is kept by the pipeline.
            if len > n - VNET_HDR_LEN {
                self.buf[VNET_HDR_LEN..VNET_HDR_LEN + len].copy_from_slice(self.pipeline.answer());
            }
        }
        verdict
    }

    /// [`handle_frame`](Self::handle_frame) while captures run, the lab mirrors traffic or logs
    /// flows: the frame as read is kept for captures, mirror sessions and flow logs of its sender
    /// (every frame, when a flow log covers a NAT gateway's interface: whether it crosses one is
    /// known only after), the walk is observed (for captures, or only for the NAT gateway it
    /// reaches), and what was done is offered to them.
    #[cold]
    fn handle_captured_frame(&mut self, port: usize, n: usize) {
        let capturing = !self.captures.is_empty();
        let len = n - VNET_HDR_LEN;
        // Mirror sessions and flow logs read the whole frame as sent; a capture explains a drop
        // with a trace of it, so it keeps every frame small enough to copy cheaply whole, and of
        // a larger one (a TSO superframe) only what its captures of the sender write.
        let logged = self.flow_logs.watches(port) || self.flow_logs.watches_nat_gateways();
        let keep = if self.mirrors.is_source(port) || logged || (capturing && len <= EXPLAINED_FRAME) {
            len
        } else if capturing {
            len.min(self.captures.input_snaplen(port))
        } else {
            0
        };
        self.capture_input.clear();
        self.capture_input.extend_from_slice(&self.buf[VNET_HDR_LEN..VNET_HDR_LEN + keep]);
        let off = tap::offload(&self.buf[..VNET_HDR_LEN]);
        let (verdict, nat) = if capturing {
            let mut obs = std::mem::take(&mut self.captures.observer);
            obs.clear();
            let verdict = self.decide(port, n, &mut obs);
            let nat = obs.nat();
            self.captures.observer = obs;
            if verdict.drop_reason().is_some() {
                self.explain_drop(port, len);
            }
            (verdict, nat)
        } else if self.flow_logs.is_active() {
            // Flow logs need the NAT gateway the frame reached: for its interface's records, and
            // to tell a packet that left its sender (refused beyond, at the NAT gateway's subnet)
            // from one its sender's own checks refused. Costs a store: stages' words are lazy.
            let mut obs = NatReached::default();
            (self.decide(port, n, &mut obs), obs.0)
        } else {
            (self.decide(port, n, &mut NoObserver), None)
        };
        let written = self.carry_out(port, n, verdict);
        if self.mirrors.active() {
            self.mirror(port, verdict, written, off);
        }
        if !capturing && !self.flow_logs.is_active() {
            return;
        }
        let seen = Seen {
            from: port,
            verdict,
            input: &self.capture_input,
            output: &self.buf[VNET_HDR_LEN..VNET_HDR_LEN.max(written)],
            input_len: n - VNET_HDR_LEN,
            nat,
            gso_size: off.gso_size,
        };
        let internet = self.ports.len() - 1;
        if capturing {
            self.captures.record(&seen, internet);
        }
        if self.flow_logs.is_active() {
            self.flow_logs.record(&seen, internet, unix_now());
        }
    }

    /// Puts a trace's account of the dropped frame as read (kept in `capture_input`) into the
    /// capture observer: the stage, rule and words that a capture's comment quotes. Trace is
    /// read-only, and a drop changed nothing it reads, so it tells the same story.
    /// A frame kept only in part (a superframe) is not traced: its drop is named without the
    /// deciding stage's words.
    #[cold]
    fn explain_drop(&mut self, port: usize, len: usize) {
        if self.capture_input.len() != len {
            return self.captures.observer.explain(crate::pipeline::Recorder::default());
        }
        let now = self.start.elapsed();
        let mut frame = self.capture_input.clone();
        let (_, rec) = if port == self.ports.len() - 1 {
            self.pipeline.trace_internet(now, &mut frame)
        } else {
            self.pipeline.trace(now, EniIdx(port as u32), &mut frame)
        };
        self.captures.observer.explain(rec);
    }

    /// Sends closed flow log records to `writer` (the forwarder's writer thread).
    pub fn set_flow_log_sink(&mut self, writer: crossbeam_channel::Sender<crate::capture::flow_log::Msg>) {
        self.flow_logs.set_sink(writer);
    }

    /// Sends the traffic mirror copies of the frame just handled: of the frame as read when its
    /// sender is a source and the fabric carried it past the sender's own checks, and of the
    /// frame as written when it was delivered to a source (see `capture::mirror`).
    fn mirror(&mut self, port: usize, verdict: Verdict, written: usize, off: crate::pipeline::Offload) {
        let carried = match verdict {
            Verdict::Forward(_) | Verdict::ToInternet => true,
            Verdict::DropAt(_, e) => e.index() != port,
            _ => false,
        };
        if carried {
            if let Some(c) = self.mirrors.choose(port, false, &self.capture_input) {
                let input = std::mem::take(&mut self.capture_input);
                self.send_mirrored(c, &input, off);
                self.capture_input = input;
            }
        }
        if let Verdict::Forward(to) = verdict {
            if to.index() != port {
                let frame = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN.max(written)];
                if let Some(c) = self.mirrors.choose(to.index(), true, frame) {
                    let out = std::mem::take(&mut self.buf);
                    self.send_mirrored(c, &out[VNET_HDR_LEN..VNET_HDR_LEN.max(written)], off);
                    self.buf = out;
                }
            }
        }
    }

    /// Sends session `c`'s copies of `frame`: one per wire packet it is on EC2 (a TSO superframe
    /// is cut into its segments first, see `packet::segment`), else one of the frame itself.
    fn send_mirrored(&mut self, c: crate::capture::mirror::Chosen, frame: &[u8], off: crate::pipeline::Offload) {
        let Some(superframe) = off.gso_size.and_then(|mss| crate::packet::segment::Superframe::new(frame, mss)) else {
            return self.send_copy(c, frame, off.csum_partial);
        };
        let mut segment = std::mem::take(&mut self.segment);
        for k in 0..superframe.count() {
            superframe.write(k, &mut segment);
            self.send_copy(c, &segment, false);
        }
        self.segment = segment;
    }

    /// Encapsulates `frame` for session `c` and has the copy judged: here, or by the worker
    /// that owns the copy's own flow (with several workers), which writes and counts it.
    fn send_copy(&mut self, c: crate::capture::mirror::Chosen, frame: &[u8], csum_partial: bool) {
        let len = self.mirrors.encapsulate(c, frame, csum_partial, VNET_HDR_LEN);
        if let Some(crew) = &mut self.crew {
            if let Some(owner) = crew.owner_elsewhere(&self.mirrors.buf[VNET_HDR_LEN..len]) {
                let what = workers::Handed::Mirror { port: c.port(), at: c.at() };
                if !crew.hand_off(owner, what, self.pipeline.generation(), &self.mirrors.buf[..len]) {
                    self.counters[self.mirrors.target(c).index()].count_drop(DropReason::HandoffLost);
                    self.mirrors.count(c, Verdict::DropAt(DropReason::HandoffLost, self.mirrors.target(c)));
                }
                return;
            }
        }
        self.judge_copy(c, len);
    }

    /// Has the pipeline route and judge session `c`'s copy (`len` bytes of
    /// [`Mirrors::buf`](crate::capture::mirror::Mirrors::buf)), and writes it to the target or
    /// counts its refusal (on the target and the session).
    fn judge_copy(&mut self, c: crate::capture::mirror::Chosen, len: usize) {
        let (source, target) = (self.mirrors.source(c), self.mirrors.target(c));
        let now = self.start.elapsed();
        let copy = &mut self.mirrors.buf[VNET_HDR_LEN..len];
        let verdict = self.pipeline.process_mirror(now, source, target, copy, &mut NoObserver);
        let delivered = match verdict {
            Verdict::Forward(to) => match &self.ports[to.index()] {
                Some(tap) => tap.send(&self.mirrors.buf[..len]).is_ok(),
                None => false,
            },
            _ => false,
        };
        let counters = &mut self.counters[target.index()];
        match verdict.drop_reason() {
            Some(reason) => counters.count_drop(reason),
            None if delivered => {
                counters.tx_packets += 1;
                counters.tx_bytes += (len - VNET_HDR_LEN) as u64;
            }
            None => counters.count_drop(DropReason::TxFailed),
        }
        let verdict = if delivered || verdict.drop_reason().is_some() {
            verdict
        } else {
            Verdict::DropAt(DropReason::TxFailed, target)
        };
        self.mirrors.count(c, verdict);
    }

    /// Writes, answers or counts the frame as `verdict` says; returns the length (with the
    /// virtio header) of what is in the buffer now (the frame as written, or as dropped).
    fn carry_out(&mut self, port: usize, n: usize, verdict: Verdict) -> usize {
        let internet = self.ports.len() - 1;
        match verdict {
            Verdict::Forward(to) => self.transmit(to.index(), n),
            Verdict::ToInternet => self.transmit(internet, n),
            Verdict::ToService => self.transmit_service(n),
            Verdict::Reply => {
                self.buf[..VNET_HDR_LEN].fill(0);
                self.transmit(port, n);
            }
            Verdict::ReplyWith(len) => {
                self.buf[..VNET_HDR_LEN].fill(0);
                self.transmit(port, VNET_HDR_LEN + len);
                return VNET_HDR_LEN + len;
            }
            Verdict::Drop(reason) => self.counters[port].count_drop(reason),
            Verdict::DropAt(reason, eni) => self.counters[eni.index()].count_drop(reason),
        }
        n
    }

    fn transmit(&mut self, to: usize, n: usize) {
        let sent = match &self.ports[to] {
            Some(tap) => tap.send(&self.buf[..n]).is_ok(),
            None => false,
        };
        let c = &mut self.counters[to];
        if sent {
            c.tx_packets += 1;
            c.tx_bytes += (n - VNET_HDR_LEN) as u64;
            if !self.watches.is_empty() {
                self.fire_watches(to, n);
            }
        } else {
            c.count_drop(DropReason::TxFailed);
        }
    }

    /// Reports (once) each watch the frame just written to port `to` meets.
    #[cold]
    fn fire_watches(&mut self, to: usize, n: usize) {
        let dst = crate::packet::ipv4_dst(&self.buf[VNET_HDR_LEN..n]);
        let mut i = 0;
        while i < self.watches.len() {
            let w = &self.watches[i];
            // A watch without an address waits for traffic (IPv4), not the fabric's ARP answers.
            if w.port == to && w.dst_ip.map_or(dst.is_some(), |ip| Some(ip) == dst) {
                let w = self.watches.swap_remove(i);
                // Another worker may have seen it first. Never wait on the listener; a report it
                // has no room for is lost.
                if !w.once.swap(true, Ordering::Relaxed) {
                    let _ = self.events.try_send(FiredWatch { at: SystemTime::now(), label: w.label });
                }
            } else {
                i += 1;
            }
        }
    }
}

/// The wall clock in Unix seconds, for flow log records.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Where a port's value (its TAP) comes from after a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The old value of the same id, which was at this old index.
    Kept(usize),
    /// One handed in with the swap.
    Added,
}

/// Values laid out by the new ports; see [`rekey`].
#[derive(Debug)]
struct Rekeyed<T> {
    /// By new port index: the value and where it came from; `None` for a port with none.
    slots: Vec<Option<(T, Origin)>>,
    /// Old values whose port id is gone.
    gone: Vec<T>,
    /// Values handed in but not used: their id is no new port's, or the port kept its old one.
    unused: Vec<T>,
}

/// The swap's bookkeeping, pure: for each id of `new_ids`, the value `old` held for that id
/// (`old` is indexed like `old_ids`), else the one `new` gives for it, else none. Nothing is
/// lost: every value ends up in a slot, `gone` or `unused`.
fn rekey<T>(old_ids: &[String], old: Vec<Option<T>>, new_ids: &[String], new: Vec<(String, T)>) -> Rekeyed<T> {
    let index: HashMap<&str, usize> = new_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut slots: Vec<Option<(T, Origin)>> = new_ids.iter().map(|_| None).collect();
    let mut gone = Vec::new();
    for (i, value) in old.into_iter().enumerate() {
        let Some(value) = value else { continue };
        match old_ids.get(i).and_then(|id| index.get(id.as_str())) {
            Some(&j) if slots[j].is_none() => slots[j] = Some((value, Origin::Kept(i))),
            _ => gone.push(value),
        }
    }
    let mut unused = Vec::new();
    for (id, value) in new {
        match index.get(id.as_str()) {
            Some(&j) if slots[j].is_none() => slots[j] = Some((value, Origin::Added)),
            _ => unused.push(value),
        }
    }
    Rekeyed { slots, gone, unused }
}

#[cfg(test)]
mod tests;
