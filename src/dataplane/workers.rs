//! Several forwarding workers (`up --workers N`): each is a [`Dataplane`] with a whole
//! [`Pipeline`] (its shard of the connection and NAT tables, its own compiled configuration)
//! reading queue `w` of every multiqueue TAP.
//!
//! The kernel usually steers a flow to one queue, but not always, so a frame is judged by its
//! owner ([`Owners`]), not by whichever worker read it: a frame read by another worker is copied
//! into a single-producer single-consumer byte ring from the reader to the owner (one ring per
//! ordered pair of workers, no lock) and the owner is woken through its mio [`Waker`] (once per
//! loop turn, not per frame). The owner decides and writes the frame on its own queue. A ring
//! that is full, or a frame that crosses a configuration swap between reader and owner, is
//! dropped and counted (`worker_handoff_lost`), never waited for.
//!
//! The control side's [`Handle`] fans commands out: a swap reaches every worker (each gets its
//! own compiled pipeline and carries its own state over), `trace` goes to the traced flow's
//! owner, counters, statistics and listings are gathered from every worker and summed; a
//! capture gets one queue per worker, and traffic mirror sessions' counts are summed.
//!
//! A traffic mirror copy is a packet of its own (VXLAN from the source ENI to the target), judged
//! by the target's groups and connection table: it is handed to the owner of its own flow like a
//! frame, marked as a copy with the session that made it ([`Handed::Mirror`]), and that worker
//! judges it (`Pipeline::process_mirror`), writes it and counts it for the session.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use hashbrown::HashMap;
use mio::Waker;
use rtrb::{Consumer, Producer, RingBuffer};

use super::owner::Owners;
use super::{Command, Handle, Link, Swap, SwapDone};
use crate::capture::mirror::SessionStats;
use crate::pipeline::{EniCounters, Pipeline, PipelineStats};

/// Bytes queued from one worker to another: some 60 superframes of 64 KiB, or thousands of
/// small frames, before frames are dropped rather than waited for.
pub const HANDOFF_BYTES: usize = 4 << 20;

/// A handed-off frame's header in the ring: its length, its port index, what it is (0 for a frame
/// read from the port, 1 + the session's position among the port's sessions for a mirror copy)
/// and the configuration generation these indices belong to (native endian: the ring never
/// leaves the process).
const RECORD_HEADER: usize = 20;

/// How long a fanned-out question waits for each worker.
const PATIENCE: Duration = Duration::from_secs(5);

/// What one worker shares with the others.
#[derive(Debug)]
pub(crate) struct Crew {
    me: usize,
    owners: Owners,
    /// Rings to each other worker, by worker (`None` at `me`).
    outgoing: Vec<Option<Producer<u8>>>,
    /// Rings from each other worker.
    incoming: Vec<Consumer<u8>>,
    /// Every worker's waker, by worker.
    wakers: Vec<Arc<Waker>>,
    /// Workers handed a frame since they were last woken.
    to_wake: Vec<bool>,
}

/// What a handed-off record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handed {
    /// A frame read from port `port`, to be judged as read.
    Frame { port: usize },
    /// A traffic mirror copy made by session `at` of source port `port` (see
    /// `capture::mirror::Chosen`), to be judged as a copy.
    Mirror { port: usize, at: usize },
}

/// A frame taken from a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Nothing queued.
    Empty,
    /// A record of `len` bytes (virtio header included), now in the buffer.
    Frame { what: Handed, len: usize },
    /// A frame read under another configuration generation (its port index means nothing
    /// here), from port `port` as that one numbered them: dropped.
    Stale,
}

impl Crew {
    /// One crew per worker, wired to each other; `wakers` by worker.
    pub(crate) fn team(owners: &Owners, wakers: &[Arc<Waker>]) -> Vec<Crew> {
        let n = wakers.len();
        let mut outgoing: Vec<Vec<Option<Producer<u8>>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut incoming: Vec<Vec<Consumer<u8>>> = (0..n).map(|_| Vec::new()).collect();
        for (from, rings) in outgoing.iter_mut().enumerate() {
            for (to, ring) in rings.iter_mut().enumerate().filter(|&(to, _)| to != from) {
                let (tx, rx) = RingBuffer::new(HANDOFF_BYTES);
                *ring = Some(tx);
                incoming[to].push(rx);
            }
        }
        outgoing
            .into_iter()
            .zip(incoming)
            .enumerate()
            .map(|(me, (outgoing, incoming))| Crew {
                me,
                owners: owners.clone(),
                outgoing,
                incoming,
                wakers: wakers.to_vec(),
                to_wake: vec![false; n],
            })
            .collect()
    }

    /// The worker that must judge `frame` (an Ethernet frame), when it is not this one.
    pub(crate) fn owner_elsewhere(&self, frame: &[u8]) -> Option<usize> {
        self.owners.of(frame).filter(|&w| w != self.me)
    }

    /// How many workers forward.
    pub(crate) fn workers(&self) -> usize {
        self.wakers.len()
    }

    /// A new configuration's owner function.
    pub(crate) fn set_owners(&mut self, owners: Owners) {
        self.owners = owners;
    }

    /// Queues `frame` (virtio header included), `what` under `generation`, for worker `to`;
    /// false when its ring has no room (the frame is lost).
    pub(crate) fn hand_off(&mut self, to: usize, what: Handed, generation: u64, frame: &[u8]) -> bool {
        let Some(ring) = self.outgoing[to].as_mut() else { return false };
        let Ok(mut chunk) = ring.write_chunk(RECORD_HEADER + frame.len()) else { return false };
        let mut header = [0u8; RECORD_HEADER];
        header[..4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        let (port, kind) = match what {
            Handed::Frame { port } => (port, 0),
            Handed::Mirror { port, at } => (port, at + 1),
        };
        header[4..8].copy_from_slice(&(port as u32).to_ne_bytes());
        header[8..12].copy_from_slice(&(kind as u32).to_ne_bytes());
        header[12..].copy_from_slice(&generation.to_ne_bytes());
        let (head, tail) = chunk.as_mut_slices();
        write_at(head, tail, 0, &header);
        write_at(head, tail, RECORD_HEADER, frame);
        chunk.commit_all();
        self.to_wake[to] = true;
        true
    }

    /// Wakes the workers handed frames since the last call.
    pub(crate) fn wake_peers(&mut self) {
        for (w, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                // A failed wake leaves the frames queued until the owner's next turn.
                let _ = self.wakers[w].wake();
            }
        }
    }

    /// Rings to read from, by position (`0..incoming()`).
    pub(crate) fn incoming(&self) -> usize {
        self.incoming.len()
    }

    /// Takes the next frame of ring `from` into `buf` if it belongs to `generation`.
    pub(crate) fn take(&mut self, from: usize, generation: u64, buf: &mut [u8]) -> Taken {
        let ring = &mut self.incoming[from];
        let Ok(chunk) = ring.read_chunk(RECORD_HEADER) else { return Taken::Empty };
        let mut header = [0u8; RECORD_HEADER];
        let (head, tail) = chunk.as_slices();
        // Not committed: the header is read again with its frame below.
        read_at(head, tail, 0, &mut header);
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let port = u32::from_ne_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let kind = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let made_under = u64::from_ne_bytes(header[12..].try_into().unwrap_or_default());
        let Ok(chunk) = ring.read_chunk(RECORD_HEADER + len) else {
            // The writer commits whole records: a header is never without its frame.
            unreachable!("a handed-off frame is committed whole")
        };
        let taken = if made_under == generation && len <= buf.len() {
            let (head, tail) = chunk.as_slices();
            read_at(head, tail, RECORD_HEADER, &mut buf[..len]);
            let what = match kind {
                0 => Handed::Frame { port },
                _ => Handed::Mirror { port, at: kind - 1 },
            };
            Taken::Frame { what, len }
        } else {
            Taken::Stale
        };
        chunk.commit_all();
        taken
    }
}

/// Copies `src` into a ring chunk's two slices (`head` then `tail`), from byte `at` on; the
/// chunk was asked for room enough.
fn write_at(head: &mut [u8], tail: &mut [u8], at: usize, src: &[u8]) {
    let in_head = head.len().saturating_sub(at).min(src.len());
    let from = at.min(head.len());
    head[from..][..in_head].copy_from_slice(&src[..in_head]);
    let at_tail = at.saturating_sub(head.len());
    tail[at_tail..][..src.len() - in_head].copy_from_slice(&src[in_head..]);
}

/// Fills `out` from a ring chunk's two slices (`head` then `tail`), from byte `at` on.
fn read_at(head: &[u8], tail: &[u8], at: usize, out: &mut [u8]) {
    let in_head = head.len().saturating_sub(at).min(out.len());
    out[..in_head].copy_from_slice(&head[at.min(head.len())..][..in_head]);
    let at_tail = at.saturating_sub(head.len());
    let rest = out.len() - in_head;
    out[in_head..].copy_from_slice(&tail[at_tail..][..rest]);
}

/// The fan-out's own state, shared by clones of the handle.
#[derive(Debug)]
pub(crate) struct Fanout {
    /// The current configuration's owner function (for `trace`).
    owners: Owners,
    /// Per ENI id: connections tracked for it by every worker (see `Pipeline::set_shard`).
    counts: HashMap<String, Arc<AtomicU32>>,
}

impl Fanout {
    pub(crate) fn new(owners: Owners) -> Fanout {
        Fanout { owners, counts: HashMap::new() }
    }

    /// The shared counts for `pipeline`'s ENIs, by index (an ENI id keeps its count across
    /// swaps; counts of ENIs gone are forgotten).
    pub(crate) fn counts_for(&mut self, pipeline: &Pipeline) -> Vec<Arc<AtomicU32>> {
        let ids = pipeline.port_ids();
        let enis = &ids[..ids.len() - 1];
        self.counts.retain(|id, _| enis.contains(id));
        enis.iter().map(|id| Arc::clone(self.counts.entry(id.clone()).or_default())).collect()
    }
}

/// Makes `pipeline` worker 0's and builds workers 1.. of `workers` from its model, each with
/// its shard of the shared counts.
pub(crate) fn shard(mut pipeline: Pipeline, workers: usize, fanout: &mut Fanout) -> Vec<Pipeline> {
    let counts = fanout.counts_for(&pipeline);
    let mut all: Vec<Pipeline> = (1..workers).map(|_| pipeline.replica()).collect();
    pipeline.set_shard(0, workers, counts.clone());
    for (i, p) in all.iter_mut().enumerate() {
        p.set_shard(i + 1, workers, counts.clone());
    }
    all.insert(0, pipeline);
    all
}

impl<P: Send + 'static> Handle<P> {
    /// Sends `command` to the workers it concerns (more than one worker).
    pub(crate) fn fan_out(&self, command: Command<P>) -> io::Result<()> {
        let fanout = self.fanout.as_ref().expect("fan_out is called with several workers");
        match command {
            Command::Counters(reply) => self.gather(reply, Command::Counters, sum_counters),
            Command::Stats(reply) => self.gather(reply, Command::Stats, sum_stats),
            Command::Connections(eni, reply) => {
                self.gather(reply, move |tx| Command::Connections(eni, tx), |all| all.concat())
            }
            Command::FlowLogStats(reply) => self.gather(reply, Command::FlowLogStats, sum_flow_logs),
            Command::MirrorStats(reply) => self.gather(reply, Command::MirrorStats, sum_mirrors),
            Command::Trace { from, frame, reply } => {
                let owner = lock(fanout).owners.of(&frame[..]).unwrap_or(0);
                self.links[owner].send(Command::Trace { from, frame, reply })
            }
            Command::FlowLogs(config) => {
                for link in &self.links {
                    link.send(Command::FlowLogs(config.clone()))?;
                }
                Ok(())
            }
            Command::Swap(swap) => self.fan_out_swap(*swap, fanout),
            // Each worker feeds a queue of its own: see `Handle::send_to`.
            Command::Capture(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "with several workers a capture is given to each worker (Handle::send_to)",
            )),
            Command::StopCapture { id, done } => {
                self.gather(done, move |tx| Command::StopCapture { id, done: tx }, |_| ())
            }
            Command::WorkerSwap(..) => unreachable!("only the fan-out makes a worker's swap"),
            Command::Shutdown => {
                for link in &self.links {
                    link.send(Command::Shutdown)?;
                }
                Ok(())
            }
        }
    }

    /// Asks every worker the question `make` builds and sends `merge` of the answers to
    /// `reply`, from a thread of its own (nothing waits here).
    fn gather<T: Send + 'static>(
        &self,
        reply: Sender<T>,
        make: impl Fn(Sender<T>) -> Command<P>,
        merge: impl FnOnce(Vec<T>) -> T + Send + 'static,
    ) -> io::Result<()> {
        let mut answers = Vec::with_capacity(self.links.len());
        for link in &self.links {
            let (tx, rx) = crossbeam_channel::bounded(1);
            link.send(make(tx))?;
            answers.push(rx);
        }
        std::thread::spawn(move || {
            let all: Option<Vec<T>> = answers.iter().map(|rx| rx.recv_timeout(PATIENCE).ok()).collect();
            if let Some(all) = all {
                let _ = reply.send(merge(all));
            }
        });
        Ok(())
    }

    /// A swap for every worker: its own pipeline compiled here (off the packet path), its own
    /// queues of the new TAPs (the k-th TAP given for a port id is worker k's queue), the same
    /// watches (each reported once, by whichever worker sees it first); the answers are merged
    /// into one [`SwapDone`].
    fn fan_out_swap(&self, swap: Swap<P>, fanout: &Mutex<Fanout>) -> io::Result<()> {
        let Swap { pipeline, new_taps, watches, reply } = swap;
        let n = self.links.len();
        let pipelines = {
            let mut f = lock(fanout);
            f.owners = Owners::new(pipeline.model(), n);
            shard(pipeline, n, &mut f)
        };
        let mut taps: Vec<Vec<(String, P)>> = (0..n).map(|_| Vec::new()).collect();
        let mut given: HashMap<String, usize> = HashMap::new();
        for (id, tap) in new_taps {
            let k = given.entry(id.clone()).or_default();
            taps[*k % n].push((id, tap));
            *k += 1;
        }
        let once: Vec<Arc<AtomicBool>> = watches.iter().map(|_| Arc::default()).collect();
        let mut answers = Vec::with_capacity(n);
        for ((link, pipeline), new_taps) in self.links.iter().zip(pipelines).zip(taps) {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let part = Swap { pipeline, new_taps, watches: watches.clone(), reply: tx };
            link.send(Command::WorkerSwap(Box::new(part), once.clone()))?;
            answers.push(rx);
        }
        std::thread::spawn(move || {
            let mut merged: Option<SwapDone<P>> = None;
            for rx in answers {
                let Ok(done) = rx.recv_timeout(PATIENCE) else { return };
                merged = Some(match merged {
                    None => done,
                    Some(mut m) => {
                        m.retired.extend(done.retired);
                        m.generation = m.generation.max(done.generation);
                        m.stalled = m.stalled.max(done.stalled);
                        m
                    }
                });
            }
            if let Some(m) = merged {
                let _ = reply.send(m);
            }
        });
        Ok(())
    }
}

impl<P> Link<P> {
    pub(super) fn send(&self, command: Command<P>) -> io::Result<()> {
        self.commands
            .send(command)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the data plane has stopped"))?;
        self.waker.wake()
    }
}

fn lock(m: &Mutex<Fanout>) -> std::sync::MutexGuard<'_, Fanout> {
    // The state stays consistent under a panic elsewhere: every change is one assignment.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Port counters of every worker, added up port by port.
fn sum_counters(all: Vec<Vec<EniCounters>>) -> Vec<EniCounters> {
    let mut it = all.into_iter();
    let mut sum = it.next().unwrap_or_default();
    for counters in it {
        for (s, c) in sum.iter_mut().zip(counters) {
            s.rx_packets += c.rx_packets;
            s.rx_bytes += c.rx_bytes;
            s.tx_packets += c.tx_packets;
            s.tx_bytes += c.tx_bytes;
            for (a, b) in s.drops.iter_mut().zip(c.drops) {
                *a += b;
            }
        }
    }
    sum
}

/// Table sizes added up (the bound is the same on every worker), NAT counters added up.
fn sum_stats(all: Vec<PipelineStats>) -> PipelineStats {
    let mut it = all.into_iter();
    let mut sum = it.next().unwrap_or_default();
    for stats in it {
        for (s, t) in sum.conntrack.iter_mut().zip(stats.conntrack) {
            s.entries += t.entries;
        }
        for (s, t) in sum.nat_gateways.iter_mut().zip(stats.nat_gateways) {
            *s += t;
        }
    }
    sum
}

/// Flow log records written and lost, added up by flow log.
fn sum_flow_logs(all: Vec<Vec<crate::capture::flow_log::FlowLogStats>>) -> Vec<crate::capture::flow_log::FlowLogStats> {
    let mut by_id: BTreeMap<String, crate::capture::flow_log::FlowLogStats> = BTreeMap::new();
    let mut order = Vec::new();
    for stats in all.into_iter().flatten() {
        match by_id.get_mut(&stats.id) {
            Some(s) => {
                s.written += stats.written;
                s.dropped += stats.dropped;
            }
            None => {
                order.push(stats.id.clone());
                by_id.insert(stats.id.clone(), stats);
            }
        }
    }
    order.into_iter().filter_map(|id| by_id.remove(&id)).collect()
}

/// Traffic mirror sessions' counts added up session by session (every worker runs the same
/// sessions in the same order; each counts the copies it judged or lost).
fn sum_mirrors(all: Vec<Vec<SessionStats>>) -> Vec<SessionStats> {
    let mut it = all.into_iter();
    let mut sum = it.next().unwrap_or_default();
    for stats in it {
        for (s, t) in sum.iter_mut().zip(stats) {
            s.mirrored += t.mirrored;
            for (reason, n) in t.dropped {
                *s.dropped.entry(reason).or_default() += n;
            }
        }
    }
    sum
}
