//! Seeing what the fabric did: captures of the fabric itself (`vpclab capture`), written as
//! pcapng with every frame's verdict in its comment. Fed by the data plane through bounded
//! queues, never on the decision path: with no capture running the data plane pays one branch
//! per frame; with one running, a frame that concerns a captured point is copied, explained and
//! queued without blocking, and what does not fit is counted as lost.
//!
//! - [`Captures`] is the data plane's side: the running captures, which ports and NAT gateways
//!   each watches, and how a frame seen at one of them becomes a [`Record`], encoded as a
//!   pcapng block into the capture's [`queue`](mod@queue) (a ring of bytes).
//! - [`stream`] runs in the forwarder, one thread per capture: blocks from the ring to the file
//!   or pipe the client passed, between the file's header and its statistics.
//! - [`client`] is `vpclab capture`'s end: passes its file or standard output with the request,
//!   waits, and reports what was written and lost.
//! - [`metrics`] renders every counter in the OpenMetrics text format, and serves it over HTTP.
//! - [`mirror`] is traffic mirroring: VXLAN copies of a source ENI's frames to a target ENI.

pub mod client;
pub mod flow_log;
pub mod metrics;
pub mod mirror;
pub mod queue;
pub mod stream;

pub use queue::{queue, queues, Drain, Feed, Record, QUEUE_BYTES};

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::model::{EniIdx, Model, NatIdx};
use crate::pipeline::{Observer, Stage, Verdict, INTERNET_PORT};

/// The largest snapshot length (a TSO superframe is up to 64 KiB of IP plus Ethernet).
pub const MAX_SNAPLEN: u32 = 65_549;

/// Where a capture interface sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    /// A data-plane port, by id: an ENI id, or `internet`.
    Port(String),
    /// A NAT gateway, by id: the frames it translated or refused.
    NatGateway(String),
}

/// One interface of a capture, as its interface description block names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// What it watches.
    pub point: Point,
    /// `if_name`: the ENI, NAT gateway or `internet`.
    pub name: String,
    /// `if_description`: e.g. `i-web eth0`.
    pub description: String,
}

/// The interfaces `vpclab capture TARGET...` asks for: an ENI id, an instance id (each of its
/// ENIs, by device index), a NAT gateway id, `internet`, or `all` (every ENI, then the internet
/// when the lab has one). Duplicates are dropped; an unknown target is an error naming it.
pub fn interfaces(model: &Model, targets: &[String]) -> Result<Vec<Interface>, String> {
    let mut out: Vec<Interface> = Vec::new();
    let mut push = |i: Interface| {
        if !out.iter().any(|o| o.point == i.point) {
            out.push(i);
        }
    };
    let eni = |e: EniIdx| {
        let eni = &model.enis[e.index()];
        let description = match eni.attachment {
            Some(a) => format!("{} eth{}", model.instances[a.instance.index()].id, a.device_index),
            None => "not attached".to_string(),
        };
        Interface { point: Point::Port(eni.id.clone()), name: eni.id.clone(), description }
    };
    let internet = || Interface {
        point: Point::Port(INTERNET_PORT.to_string()),
        name: INTERNET_PORT.to_string(),
        description: "the internet side of the lab's internet gateways".to_string(),
    };
    if targets.is_empty() {
        return Err("name what to capture: an ENI, an instance, a NAT gateway, `internet` or `all`".into());
    }
    for t in targets {
        if t == "all" {
            (0..model.enis.len()).for_each(|e| push(eni(EniIdx(e as u32))));
            if model.has_internet() {
                push(internet());
            }
        } else if t == INTERNET_PORT {
            if !model.has_internet() {
                return Err(format!("lab `{}` has no internet side to capture", model.name));
            }
            push(internet());
        } else if let Some(e) = model.eni_by_id(t) {
            push(eni(e));
        } else if let Some(i) = model.instance_by_id(t) {
            model.enis_of(i).into_iter().for_each(|e| push(eni(e)));
        } else if let Some(n) = model.nat_gateways.iter().find(|n| n.id == *t) {
            let description = format!("NAT gateway {} in {}", n.private_ip, model.subnets[n.subnet.index()].id);
            push(Interface { point: Point::NatGateway(n.id.clone()), name: n.id.clone(), description });
        } else {
            return Err(format!(
                "no ENI, instance or NAT gateway `{t}` in lab `{}` (or `internet`, `all`)",
                model.name
            ));
        }
    }
    Ok(out)
}

/// Frames lost per interface because the queue was full (`isb_ifdrop`).
pub type Lost = Arc<Vec<AtomicU64>>;

/// A capture as the data plane runs it.
#[derive(Debug)]
pub struct CaptureTap {
    /// Unique among the lab's captures.
    pub id: u64,
    /// What each interface watches, by interface index.
    pub points: Vec<Point>,
    /// Bytes kept of each frame.
    pub snaplen: u32,
    /// Only frames the fabric dropped.
    pub drops_only: bool,
    /// Where records go (bounded: [`QUEUE_BYTES`]).
    pub queue: Feed,
    /// Per interface, frames that did not fit in the queue.
    pub lost: Lost,
}

/// A running capture with its points resolved to the current port and NAT indexes.
#[derive(Debug)]
struct Active {
    tap: CaptureTap,
    /// By port index: this capture's interface for it.
    by_port: Vec<Option<u32>>,
    /// By NAT gateway index.
    by_nat: Vec<Option<u32>>,
}

impl Active {
    fn resolve(&mut self, names: &Names) {
        self.by_port = vec![None; names.ports.len()];
        self.by_nat = vec![None; names.nats.len()];
        for (i, point) in self.tap.points.iter().enumerate() {
            let (id, ids, slots) = match point {
                Point::Port(id) => (id, &names.ports, &mut self.by_port),
                Point::NatGateway(id) => (id, &names.nats, &mut self.by_nat),
            };
            if let Some(at) = ids.iter().position(|x| x == id) {
                slots[at] = Some(i as u32);
            }
        }
    }

    /// Queues a record without waiting; counts it as lost when the queue is full.
    fn offer(&mut self, record: &Record<'_>) {
        if !self.tap.queue.offer(record) {
            if let Some(n) = self.tap.lost.get(record.interface as usize) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The ids the data plane's indexes stand for.
#[derive(Clone, Debug, Default)]
struct Names {
    /// By port index (the pipeline's `port_ids`).
    ports: Vec<String>,
    /// By NAT gateway index.
    nats: Vec<String>,
}

/// The pipeline observer used while captures run: keeps the lines a forwarded frame's comment
/// needs (the translations, the fabric's answers), reusing their strings, and the NAT gateway
/// crossed. Other stages' words are not even formatted: a dropped frame is explained afterwards
/// by a `trace` of it ([`CaptureObserver::explain`]), so a steady capture of forwarded traffic
/// pays for no text it does not write.
#[derive(Debug, Default)]
pub struct CaptureObserver {
    lines: Vec<(Stage, String)>,
    used: usize,
    nat: Option<NatIdx>,
}

impl CaptureObserver {
    /// Forgets the last frame's walk.
    pub fn clear(&mut self) {
        self.used = 0;
        self.nat = None;
    }

    /// The NAT gateway the last frame reached, if any.
    pub fn nat(&self) -> Option<NatIdx> {
        self.nat
    }

    fn lines(&self) -> impl Iterator<Item = &(Stage, String)> {
        self.lines[..self.used].iter()
    }
}

impl CaptureObserver {
    /// Takes a trace's full account of the frame (for a drop: where, why, which rule).
    pub fn explain(&mut self, rec: crate::pipeline::Recorder) {
        self.lines = rec.lines;
        self.used = self.lines.len();
    }
}

impl Observer for CaptureObserver {
    fn record(&mut self, stage: Stage, detail: fmt::Arguments<'_>) {
        if !matches!(stage, Stage::NatGateway | Stage::InternetGateway | Stage::ArpReply) {
            return;
        }
        if self.used == self.lines.len() {
            self.lines.push((stage, String::new()));
        }
        let (s, text) = &mut self.lines[self.used];
        *s = stage;
        text.clear();
        let _ = text.write_fmt(detail);
        self.used += 1;
    }

    fn nat_gateway(&mut self, n: NatIdx) {
        self.nat = Some(n);
    }
}

/// A frame the data plane handled, as the captures need to see it.
#[derive(Debug)]
pub struct Seen<'a> {
    /// The port it was read from.
    pub from: usize,
    /// What the pipeline decided.
    pub verdict: Verdict,
    /// The frame as read: whole when small enough to trace, else at least what the captures of its
    /// sender keep ([`Captures::input_snaplen`]); empty when nobody needs it.
    pub input: &'a [u8],
    /// The frame as written (rewritten, or the fabric's answer); for a drop, as the pipeline
    /// left it.
    pub output: &'a [u8],
    /// The length the frame had on the wire when read.
    pub input_len: usize,
    /// The NAT gateway whose interface it reached, when captures or flow logs asked.
    pub nat: Option<NatIdx>,
    /// The segment size, when it is a TCP superframe (TSO): it stands for that many wire packets.
    pub gso_size: Option<u16>,
}

/// Every running capture of the data plane.
#[derive(Debug, Default)]
pub struct Captures {
    active: Vec<Active>,
    names: Names,
    /// The observer the next captured frame is walked with.
    pub observer: CaptureObserver,
    /// The comment being written (its buffer reused).
    comment: String,
}

impl Captures {
    /// No capture runs: the data plane skips all of this.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Starts a capture; `ports` and `nats` name the current indexes.
    pub fn add(&mut self, tap: CaptureTap, ports: Vec<String>, nats: Vec<String>) {
        self.names = Names { ports, nats };
        let mut a = Active { tap, by_port: Vec::new(), by_nat: Vec::new() };
        a.resolve(&self.names);
        self.active.push(a);
    }

    /// Stops capture `id` (its queue's sender is dropped, so its writer sees the end).
    pub fn remove(&mut self, id: u64) {
        self.active.retain(|a| a.tap.id != id);
    }

    /// Ports or NAT gateways were added, removed or reordered: resolve every capture again.
    pub fn rekey(&mut self, ports: Vec<String>, nats: Vec<String>) {
        self.names = Names { ports, nats };
        for a in &mut self.active {
            a.resolve(&self.names);
        }
    }

    /// How many bytes of a frame read from `port` the captures keep as sent (the longest
    /// snapshot length of those watching `port`; 0 when none does): what must be copied before
    /// the pipeline rewrites it.
    pub fn input_snaplen(&self, port: usize) -> usize {
        let watching = self.active.iter().filter(|a| a.by_port.get(port).copied().flatten().is_some());
        watching.map(|a| a.tap.snaplen as usize).max().unwrap_or(0)
    }

    /// Turns one handled frame into records for every capture that watches where it went.
    pub fn record(&mut self, seen: &Seen<'_>, internet: usize) {
        let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let dropped = seen.verdict.drop_reason().is_some();
        let to = match seen.verdict {
            Verdict::Forward(e) | Verdict::DropAt(_, e) => Some(e.index()),
            Verdict::ToInternet => Some(internet),
            Verdict::Reply | Verdict::ReplyWith(_) => Some(seen.from),
            Verdict::Drop(_) | Verdict::ToService => None,
        };
        let Captures { active, names, observer, comment } = self;
        let text = Explained::new(names, observer, seen);
        for a in active {
            if a.tap.drops_only && !dropped {
                continue;
            }
            let sender = a.by_port.get(seen.from).copied().flatten();
            let receiver = to.and_then(|q| a.by_port.get(q).copied().flatten());
            let nat = seen.nat.and_then(|n| a.by_nat.get(n.index()).copied().flatten());
            let snaplen = a.tap.snaplen as usize;
            let mut record = |interface: u32, outbound: bool, data: &[u8], len: usize, words: &dyn Fn(&mut String)| {
                comment.clear();
                words(comment);
                let data = &data[..data.len().min(snaplen)];
                a.offer(&Record { interface, outbound, at, original_len: len as u32, data, comment });
            };
            if let Some(i) = sender {
                record(i, true, seen.input, seen.input_len, &|s| text.sent(s));
            }
            if let Some(i) = receiver {
                record(i, false, seen.output, seen.output.len(), &|s| text.received(s));
            }
            if let Some(i) = nat {
                let outbound = seen.verdict == Verdict::ToInternet;
                record(i, outbound, seen.output, seen.output.len(), &|s| text.at_nat(s));
            }
        }
    }
}

/// A handled frame put into words, for the comments of its records.
struct Explained<'a> {
    names: &'a Names,
    obs: &'a CaptureObserver,
    seen: &'a Seen<'a>,
}

impl<'a> Explained<'a> {
    fn new(names: &'a Names, obs: &'a CaptureObserver, seen: &'a Seen<'a>) -> Self {
        Explained { names, obs, seen }
    }

    fn port(&self, i: usize) -> &str {
        self.names.ports.get(i).map_or("?", String::as_str)
    }

    /// `dropped at eni-app: security_group_ingress: no rule of ... [ENI_SG_RULES_MISMATCH]`:
    /// where, why, the deciding stage's own words and the explanation code, as `trace` says it.
    /// False when the frame was not dropped.
    fn drop_text(&self, out: &mut String) -> bool {
        let (reason, at) = match self.seen.verdict {
            Verdict::Drop(r) => (r, self.seen.from),
            Verdict::DropAt(r, e) => (r, e.index()),
            _ => return false,
        };
        let _ = write!(out, "dropped at {}: {}", self.port(at), reason.name());
        if let Some((_, d)) = self.obs.lines().last() {
            let _ = write!(out, ": {}", d.strip_prefix("drop: ").unwrap_or(d));
        }
        let _ = write!(out, " [{}]", reason.explanation_code());
        true
    }

    /// `: ` and the last stage's words (what an answer answered), or nothing.
    fn last_words(&self, out: &mut String) {
        if let Some((_, d)) = self.obs.lines().last() {
            let _ = write!(out, ": {d}");
        }
    }

    /// The translations the frame went through (`nat-main: source 10.0.2.10:40000 -> ...`).
    fn rewrites(&self, out: &mut String) {
        for (stage, d) in self.obs.lines() {
            if matches!(stage, Stage::NatGateway | Stage::InternetGateway) && d.contains(" -> ") {
                let _ = write!(out, "; {d}");
            }
        }
    }

    /// For the interface that sent it.
    fn sent(&self, out: &mut String) {
        if self.drop_text(out) {
            return;
        }
        match self.seen.verdict {
            Verdict::Forward(e) => {
                let _ = write!(out, "forwarded to {}", self.port(e.index()));
            }
            Verdict::ToInternet => out.push_str("forwarded to the internet"),
            _ => {
                out.push_str("answered by the fabric");
                return self.last_words(out);
            }
        }
        self.rewrites(out);
    }

    /// For the interface it was delivered to (or refused at).
    fn received(&self, out: &mut String) {
        if self.drop_text(out) {
            return;
        }
        match self.seen.verdict {
            Verdict::Reply | Verdict::ReplyWith(_) => {
                out.push_str("the fabric's answer");
                return self.last_words(out);
            }
            _ if self.port(self.seen.from) == INTERNET_PORT => out.push_str("delivered from the internet"),
            _ => {
                let _ = write!(out, "delivered from {}", self.port(self.seen.from));
            }
        }
        self.rewrites(out);
    }

    /// For a NAT gateway it crossed.
    fn at_nat(&self, out: &mut String) {
        if self.drop_text(out) {
            return;
        }
        out.push_str(match self.seen.verdict {
            Verdict::ToInternet => "translated towards the internet",
            _ => "translated back",
        });
        self.rewrites(out);
    }
}

#[cfg(test)]
mod tests;
