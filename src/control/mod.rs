//! The daemon's control protocol: one JSON object per line over a Unix socket, one request and one
//! response per connection. The server runs on its own thread and reaches the data plane only
//! through its [`Handle`] (a channel and a waker), so the packet path never takes a lock.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::change::live::LiveLab;
use crate::dataplane::{Command, Handle};
use crate::model::{EniIdx, Model};
use crate::packet::IpProto;
use crate::pipeline::{ConnectionView, DropReason, EniCounters, Verdict};

/// How long a client waits for the daemon.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request line accepted (a topology file sent by `apply` fits many times over).
pub const MAX_REQUEST: u64 = 4 << 20;

/// How long the server waits for a request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests served at once; more are answered `busy` without a thread.
pub const MAX_CONNECTIONS: usize = 64;

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Every ENI with its live counters.
    Status,
    /// Explain what the pipeline would do with a synthesized packet (read-only).
    Trace {
        /// An ENI id, or an instance id (its device-0 ENI).
        from: String,
        /// Destination address.
        to: Ipv4Addr,
        /// IP protocol (a number in JSON).
        protocol: IpProto,
        /// Source port (ICMP: echo id).
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// The tracked connections, of one ENI (id or instance id) or all.
    Conntrack {
        /// The ENI, or none for all.
        eni: Option<String>,
    },
    /// Change the running lab (or, with `dry_run`, only plan it).
    Change {
        /// The operation or file.
        change: crate::change::Change,
        /// Plan only.
        dry_run: bool,
    },
    /// The running lab as a topology file.
    Export,
    /// Capture what the fabric does at some points, writing pcapng to the file or pipe passed
    /// with the request (`SCM_RIGHTS`): answered [`Response::Capturing`] at once, and
    /// [`Response::CaptureEnded`] when the capture ends (the client half-closes to end it).
    Capture {
        /// ENI ids, instance ids, NAT gateway ids, `internet` or `all`.
        targets: Vec<String>,
        /// Bytes kept of each frame.
        snaplen: u32,
        /// Only frames the fabric dropped.
        drops_only: bool,
        /// End after this many frames.
        count: Option<u64>,
        /// End after this many milliseconds.
        duration_ms: Option<u64>,
    },
    /// Every counter in the OpenMetrics text format.
    Metrics,
    /// Stop forwarding and tear the lab down.
    Shutdown,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(LabStatus),
    /// Answer to [`Request::Trace`].
    Trace(TraceReport),
    /// Answer to [`Request::Conntrack`].
    Connections {
        /// The connections.
        connections: Vec<ConnectionView>,
    },
    /// Answer to [`Request::Change`]: what was (or would be) done.
    Changed(crate::change::Outcome),
    /// A change refused or rolled back, with AWS's error code.
    Refused(crate::change::AwsError),
    /// Answer to [`Request::Export`].
    Exported {
        /// The topology file.
        text: String,
    },
    /// First answer to [`Request::Capture`]: the capture runs.
    Capturing,
    /// Last answer to [`Request::Capture`]: it ended; frames written and lost per interface.
    CaptureEnded {
        /// Interface names, in the file's order.
        interfaces: Vec<String>,
        /// Frames written, per interface.
        written: Vec<u64>,
        /// Frames lost because the queue was full, per interface (`isb_ifdrop`).
        lost: Vec<u64>,
    },
    /// Answer to [`Request::Metrics`].
    Metrics {
        /// OpenMetrics text, ending in `# EOF`.
        text: String,
    },
    /// The request was carried out.
    Ok,
    /// It was not, and why.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// What `trace` found: one line per stage, then the verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReport {
    /// The ENI the packet leaves from.
    pub from: String,
    /// The packet, in one line.
    pub packet: String,
    /// (stage, what it decided), in packet order.
    pub stages: Vec<TraceStage>,
    /// `delivered` or `dropped`.
    pub verdict: String,
    /// The ENI it reached, when delivered.
    pub delivered_to: Option<String>,
    /// The drop reason, when dropped.
    pub drop_reason: Option<String>,
    /// The Reachability-Analyzer-style explanation code, when dropped.
    pub explanation_code: Option<String>,
    /// The ENI charged with the drop.
    pub dropped_at: Option<String>,
}

/// One stage of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStage {
    /// The stage's name (`sg-egress`, `nacl-ingress`, ...).
    pub stage: String,
    /// What it decided and why.
    pub detail: String,
}

/// A lab as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabStatus {
    /// The lab's name.
    pub lab: String,
    /// The daemon's pid.
    pub pid: u32,
    /// Every ENI, in file order.
    pub enis: Vec<EniStatus>,
    /// Every route of every route table, with whether it is usable.
    #[serde(default)]
    pub routes: Vec<RouteStatus>,
    /// Every NAT gateway with its addresses.
    #[serde(default)]
    pub nat_gateways: Vec<NatStatus>,
    /// Every traffic mirror session with its copies mirrored and refused.
    #[serde(default)]
    pub traffic_mirror_sessions: Vec<crate::capture::mirror::SessionStats>,
    /// What each flow log wrote and lost (empty when the lab has none).
    #[serde(default)]
    pub flow_logs: Vec<crate::capture::flow_log::FlowLogStats>,
}

/// A NAT gateway as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatStatus {
    /// Its id.
    pub id: String,
    /// Its subnet.
    pub subnet: String,
    /// Its network interface in the subnet (the id flow logs name it by).
    #[serde(default)]
    pub network_interface_id: String,
    /// Its private IP.
    pub private_ip: Ipv4Addr,
    /// Its Elastic IP (none: a private NAT gateway).
    pub elastic_ip: Option<Ipv4Addr>,
    /// The source ports it allocates, `from-to`.
    pub ports: String,
}

/// One route as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// The route table.
    pub table: String,
    /// The subnets using it (explicitly, or as their VPC's main table).
    pub subnets: Vec<String>,
    /// The destination prefix.
    pub destination: String,
    /// The target's id (`local`, `blackhole`, `igw-...`, `eni-...`).
    pub target: String,
    /// `active`, or `blackhole` with the reason when the target is unusable.
    pub state: String,
}

/// Every route with its state: a route whose target cannot take traffic is a blackhole, as AWS
/// shows it.
fn route_status(model: &Model) -> Vec<RouteStatus> {
    use crate::model::RouteTarget;
    let mut out = Vec::new();
    for (t, table) in model.route_tables.iter().enumerate() {
        let subnets: Vec<String> =
            model.subnets.iter().filter(|s| s.route_table.index() == t).map(|s| s.id.clone()).collect();
        for r in &table.routes {
            let state = match (r.target, crate::policy::route_table::unusable(model, r.target)) {
                (RouteTarget::Blackhole, _) => "blackhole".to_string(),
                (_, Some(why)) => format!("blackhole ({why})"),
                (_, None) => "active".to_string(),
            };
            out.push(RouteStatus {
                table: table.id.clone(),
                subnets: subnets.clone(),
                destination: r.destination.to_string(),
                target: crate::policy::route_table::target_name(model, r.target),
                state,
            });
        }
    }
    out
}

/// One ENI with its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniStatus {
    /// ENI id.
    pub id: String,
    /// The instance it is attached to.
    pub instance: Option<String>,
    /// The instance's state (`running`, `stopped`), when attached.
    #[serde(default)]
    pub instance_state: Option<String>,
    /// Its interface name inside the instance (`eth<device_index>`).
    pub interface: Option<String>,
    /// Its MAC.
    pub mac: String,
    /// Primary then secondary private IPs.
    pub ips: Vec<Ipv4Addr>,
    /// Frames the instance sent into the fabric.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the fabric delivered to the instance.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Drops by reason (only reasons that occurred).
    pub drops: BTreeMap<String, u64>,
}

impl LabStatus {
    /// Joins the model with a counters snapshot.
    pub fn new(model: &Model, counters: &[EniCounters]) -> LabStatus {
        let enis: Vec<EniStatus> = model
            .enis
            .iter()
            .enumerate()
            .map(|(i, eni)| {
                let c = counters.get(i).cloned().unwrap_or_default();
                let attachment = model.enis[EniIdx(i as u32).index()].attachment;
                EniStatus {
                    id: eni.id.clone(),
                    instance: attachment.map(|a| model.instances[a.instance.index()].id.clone()),
                    instance_state: attachment.map(|a| model.instances[a.instance.index()].state.name().to_string()),
                    interface: attachment.map(|a| format!("eth{}", a.device_index)),
                    mac: eni.mac.to_string(),
                    ips: eni.private_ips().collect(),
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    drops: drops_of(&c),
                }
            })
            .collect();
        let mut enis = enis;
        if model.has_internet() {
            // The port after the ENIs is the emulated internet's.
            let c = counters.get(model.enis.len()).cloned().unwrap_or_default();
            let (id, interface, mac, ips) = match &model.uplink {
                Some(u) => ("uplink", u.interface.clone(), model.uplink_mac(), model.public_addresses().collect()),
                None => (
                    "internet",
                    "eth0".to_string(),
                    model.internet_host_mac(),
                    model.internet_hosts.iter().map(|h| h.ip).collect(),
                ),
            };
            enis.push(EniStatus {
                id: id.into(),
                instance: Some(id.into()),
                instance_state: None,
                interface: Some(interface),
                mac: mac.to_string(),
                ips,
                rx_packets: c.rx_packets,
                rx_bytes: c.rx_bytes,
                tx_packets: c.tx_packets,
                tx_bytes: c.tx_bytes,
                drops: drops_of(&c),
            });
        }
        let nat_gateways = model
            .nat_gateways
            .iter()
            .map(|n| NatStatus {
                id: n.id.clone(),
                subnet: model.subnets[n.subnet.index()].id.clone(),
                network_interface_id: n.interface_id(),
                private_ip: n.private_ip,
                elastic_ip: n.elastic_ip.map(|e| model.elastic_ips[e.index()].public_ip),
                ports: format!("{}-{}", n.ports.from, n.ports.to),
            })
            .collect();
        LabStatus {
            lab: model.name.clone(),
            pid: std::process::id(),
            enis,
            routes: route_status(model),
            nat_gateways,
            traffic_mirror_sessions: Vec::new(),
            flow_logs: Vec::new(),
        }
    }
}

/// Losses the forwarder never sees, read from each placed ENI's TAP in its instance: what the
/// instance sent that the kernel dropped because the TAP's queue was full (the forwarder fell
/// behind), and what the forwarder wrote that the instance's stack dropped.
fn add_kernel_drops(model: &Model, status: &mut LabStatus) {
    for (i, eni) in model.enis.iter().enumerate() {
        let Some(a) = eni.attachment else { continue };
        if model.instances[a.instance.index()].state != crate::model::InstanceState::Running {
            continue;
        }
        let ns = model.netns_name(a.instance);
        let ifname = format!("eth{}", a.device_index);
        let drops = crate::netns::Netlink::open_in(&ns).ok().and_then(|mut nl| nl.link_drops(&ifname).ok().flatten());
        if let (Some((rx_dropped, tx_dropped)), Some(e)) = (drops, status.enis.get_mut(i)) {
            for (name, n) in [(KERNEL_QUEUE_FULL, tx_dropped), (KERNEL_INSTANCE_DROPPED, rx_dropped)] {
                if n > 0 {
                    e.drops.insert(name.to_string(), n);
                }
            }
        }
    }
}

/// The drop reason `status` gives frames an instance sent that its TAP's full queue lost.
pub const KERNEL_QUEUE_FULL: &str = "tap_queue_full";

/// The drop reason `status` gives frames the fabric delivered that the instance's kernel dropped.
pub const KERNEL_INSTANCE_DROPPED: &str = "instance_kernel_dropped";

/// The lab as `status` shows it: the data plane's counters joined with `model`, plus the TAPs'
/// kernel drops.
pub fn status_of(model: &Model, handle: &Handle) -> std::io::Result<LabStatus> {
    let counters = handle.ask(Duration::from_secs(5), Command::Counters)?;
    let mut status = LabStatus::new(model, &counters);
    add_kernel_drops(model, &mut status);
    if !model.traffic_mirror_sessions.is_empty() {
        status.traffic_mirror_sessions = handle.ask(Duration::from_secs(5), Command::MirrorStats)?;
    }
    if !model.flow_logs.is_empty() {
        status.flow_logs = handle.ask(Duration::from_secs(5), Command::FlowLogStats)?;
    }
    Ok(status)
}

/// Drops by reason name, only the reasons that occurred.
fn drops_of(c: &EniCounters) -> BTreeMap<String, u64> {
    DropReason::ALL.iter().filter(|r| c.dropped(**r) > 0).map(|r| (r.name().to_string(), c.dropped(*r))).collect()
}

/// Serves requests on `listener`, one thread per connection so a silent client holds up no one.
/// Runs on its own thread for the life of the forwarder. Requests take the lab's lock for their
/// whole length, so a status or trace never mixes a model with another generation's counters and
/// changes are applied one at a time; the packet path never sees this lock.
pub fn serve(listener: UnixListener, live: Arc<Mutex<LiveLab>>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            // Answered here, at once, so a flood of idle clients costs no thread.
            let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
            reply(&conn, &Response::Error { message: format!("busy: {MAX_CONNECTIONS} requests in progress") });
            continue;
        }
        let (live, active) = (Arc::clone(&live), Arc::clone(&active));
        std::thread::spawn(move || {
            serve_one(conn, &live);
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Answers one connection: one request line, at most [`MAX_REQUEST`] bytes of UTF-8.
fn serve_one(conn: UnixStream, live: &Mutex<LiveLab>) {
    // A client sends its one line at once; an idle one gives its place up soon.
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = conn.set_write_timeout(Some(CLIENT_TIMEOUT));
    let Ok((line, passed)) = read_request(&conn) else { return };
    let response = match parse_request(&line) {
        Err(message) => Response::Error { message },
        Ok(Request::Capture { targets, snaplen, drops_only, count, duration_ms }) => {
            let limits = crate::capture::stream::Limits { count, duration: duration_ms.map(Duration::from_millis) };
            match (passed, start_capture(live, &targets, snaplen, drops_only)) {
                (Some(out), Ok(started)) => return started.stream(conn, out, limits),
                (None, Ok(started)) => {
                    started.detach();
                    Response::Error { message: "a capture needs the file to write to, passed with the request".into() }
                }
                (_, Err(message)) => Response::Error { message },
            }
        }
        Ok(req) => {
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            answer(&mut live, req)
        }
    };
    reply(&conn, &response);
}

/// Reads one request line (bounded: a topology file given to `apply` is the largest request) and
/// the file descriptor passed with it, if any (`SCM_RIGHTS`: a capture's output); any further
/// descriptors are closed.
fn read_request(conn: &UnixStream) -> io::Result<(Vec<u8>, Option<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (mut line, mut passed) = (Vec::new(), None);
    let mut buf = vec![0u8; 1 << 16];
    while line.last() != Some(&b'\n') && (line.len() as u64) < MAX_REQUEST {
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let n = msg.bytes;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the kernel just installed these descriptors in this process for us.
                let fds = fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
                fds.for_each(|fd| passed = passed.take().or(Some(fd)));
            }
        }
        if n == 0 {
            break;
        }
        let room = (MAX_REQUEST as usize).saturating_sub(line.len());
        let upto = buf[..n].iter().position(|&b| b == b'\n').map_or(n, |i| i + 1).min(room);
        line.extend_from_slice(&buf[..upto]);
    }
    Ok((line, passed))
}

/// One request line as the client sent it; why it is not a request otherwise.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    if line.last() != Some(&b'\n') && line.len() as u64 >= MAX_REQUEST {
        return Err(format!("bad request: longer than {MAX_REQUEST} bytes"));
    }
    let text = std::str::from_utf8(line).map_err(|e| format!("bad request: not UTF-8 ({e})"))?;
    serde_json::from_str::<Request>(text).map_err(|e| format!("bad request: {e}"))
}

/// A capture registered with the data plane, ready to stream.
struct StartedCapture {
    handle: Handle,
    id: u64,
    interfaces: Vec<crate::capture::Interface>,
    snaplen: u32,
    records: crate::capture::Drain,
    lost: crate::capture::Lost,
}

/// Resolves the targets on the current model and starts feeding a new capture's queue.
fn start_capture(
    live: &Mutex<LiveLab>,
    targets: &[String],
    snaplen: u32,
    drops_only: bool,
) -> Result<StartedCapture, String> {
    use crate::capture::{CaptureTap, MAX_SNAPLEN, QUEUE_BYTES};
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let (model, handle) = {
        let live = live.lock().unwrap_or_else(|p| p.into_inner());
        (live.model(), live.handle().clone())
    };
    let interfaces = crate::capture::interfaces(&model, targets)?;
    let snaplen = snaplen.clamp(1, MAX_SNAPLEN);
    // One queue per forwarding worker: each feeds its own, the writer drains them all.
    let (feeds, records) = crate::capture::queues(QUEUE_BYTES, interfaces.len(), handle.workers());
    let lost: crate::capture::Lost = Arc::new(interfaces.iter().map(|_| Default::default()).collect());
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let points: Vec<_> = interfaces.iter().map(|i| i.point.clone()).collect();
    for (worker, queue) in feeds.into_iter().enumerate() {
        let points = points.clone();
        let tap = CaptureTap { id, points, snaplen, drops_only, queue, lost: Arc::clone(&lost) };
        handle.send_to(worker, Command::Capture(Box::new(tap))).map_err(|e| format!("forwarder dead: {e}"))?;
    }
    Ok(StartedCapture { handle, id, interfaces, snaplen, records, lost })
}

impl StartedCapture {
    /// Stops the data plane feeding this capture.
    fn detach(&self) {
        detach_capture(&self.handle, self.id);
    }

    /// Answers `capturing`, then writes pcapng to `out` (the client's file or pipe) until the
    /// capture ends: its limits, the client half-closing (Ctrl-C) or going away, or the
    /// forwarder stopping; then tells the client what was written and lost.
    fn stream(self, conn: UnixStream, out: std::os::fd::OwnedFd, limits: crate::capture::stream::Limits) {
        use crate::capture::stream;
        let StartedCapture { handle, id, interfaces, snaplen, mut records, lost } = self;
        reply(&conn, &Response::Capturing);
        let detach = || detach_capture(&handle, id);
        let totals = match stream::Writer::new(stream::Output::new(out), &interfaces, snaplen) {
            Ok(w) => stream::run(w, &mut records, &lost, limits, || client_ended(&conn), detach),
            Err(e) => {
                detach();
                Err(e)
            }
        };
        let names: Vec<String> = interfaces.into_iter().map(|i| i.name).collect();
        let response = match totals {
            Ok(t) => {
                let (written, lost) = (t.written.iter().sum::<u64>(), t.lost.iter().sum::<u64>());
                crate::log!("capture {id} of {} ended: {written} frames written, {lost} lost", names.join(" "));
                Response::CaptureEnded { interfaces: names, written: t.written, lost: t.lost }
            }
            Err(e) => {
                crate::log!("capture {id} ended: {e}");
                Response::Error { message: format!("writing the capture: {e}") }
            }
        };
        let _ = conn.set_write_timeout(Some(CLIENT_TIMEOUT));
        reply(&conn, &response);
    }
}

fn detach_capture(handle: &Handle, id: u64) {
    let _ = handle.ask(Duration::from_secs(5), |done| Command::StopCapture { id, done });
}

/// Whether a capture's client half-closed its end (Ctrl-C) or went away: it sends nothing after
/// its request, so end of input or an error means it wants to stop. Looked at without waiting,
/// by the writer itself (a thread blocked reading the socket would be woken by every read of
/// the client at the other end).
fn client_ended(conn: &UnixStream) -> bool {
    let mut buf = [0u8; 64];
    let fd = std::os::fd::AsRawFd::as_raw_fd(conn);
    // SAFETY: `buf` is valid for writes of its length; MSG_DONTWAIT keeps the call from blocking.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    match n {
        0 => true,
        n if n > 0 => false,
        _ => !matches!(
            std::io::Error::last_os_error().kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}

fn reply(conn: &UnixStream, response: &Response) {
    let mut out = serde_json::to_string(response).expect("responses always serialize");
    out.push('\n');
    let _ = (&*conn).write_all(out.as_bytes());
}

fn answer(live: &mut LiveLab, req: Request) -> Response {
    let model = live.model();
    let model = &*model;
    let handle = live.handle().clone();
    let handle = &handle;
    match req {
        Request::Status => match status_of(model, handle) {
            Ok(status) => Response::Status(status),
            Err(e) => Response::Error { message: e.to_string() },
        },
        Request::Metrics => match crate::capture::metrics::collect(model, handle) {
            Ok(text) => Response::Metrics { text },
            Err(e) => Response::Error { message: e.to_string() },
        },
        Request::Trace { from, to, protocol, src_port, dst_port } => {
            // An ENI or instance; else an internet host by id, or `internet` for the first one.
            let host = model.internet_hosts.iter().find(|h| h.id == from || from == "internet");
            match (find_eni(model, &from), host) {
                (Some(eni), _) => trace(handle, model, Ok(eni), to, protocol, src_port, dst_port),
                (None, Some(h)) => trace(handle, model, Err((h.id.clone(), h.ip)), to, protocol, src_port, dst_port),
                (None, None) => Response::Error {
                    message: format!("no ENI, instance or internet host `{from}` in lab `{}`", model.name),
                },
            }
        }
        Request::Conntrack { eni } => {
            let idx = match eni.as_deref().map(|e| find_eni(model, e)) {
                Some(None) => None,
                Some(Some(i)) => Some(Some(i)),
                None => Some(None),
            };
            match idx {
                None => Response::Error {
                    message: format!("no ENI or instance `{}` in lab `{}`", eni.unwrap_or_default(), model.name),
                },
                Some(idx) => match handle.ask(Duration::from_secs(5), |tx| Command::Connections(idx, tx)) {
                    Ok(connections) => Response::Connections { connections },
                    Err(e) => Response::Error { message: e.to_string() },
                },
            }
        }
        Request::Change { change, dry_run } => match live.change(&change, dry_run) {
            Ok(outcome) => Response::Changed(outcome),
            Err(e) => Response::Refused(e),
        },
        Request::Export => Response::Exported { text: live.export() },
        // Served by `serve_one` itself, which streams; it never reaches here.
        Request::Capture { .. } => Response::Error { message: "a capture needs a connection of its own".into() },
        Request::Shutdown => {
            crate::log!("shutdown requested on the control socket (vpclab down)");
            match handle.send(Command::Shutdown) {
                Ok(()) => Response::Ok,
                Err(e) => Response::Error { message: e.to_string() },
            }
        }
    }
}

/// An ENI by id, or an instance's device-0 ENI by instance id.
fn find_eni(model: &Model, name: &str) -> Option<EniIdx> {
    model.eni_by_id(name).or_else(|| model.instance_by_id(name).and_then(|i| model.enis_of(i).first().copied()))
}

/// Builds the packet, has the data plane run it read-only, and words the answer. `from` is an
/// ENI, or an internet host (id, address).
fn trace(
    handle: &Handle,
    model: &Model,
    from: Result<EniIdx, (String, Ipv4Addr)>,
    to: Ipv4Addr,
    protocol: IpProto,
    sport: u16,
    dport: u16,
) -> Response {
    let (from_name, src, frame) = match &from {
        Ok(e) => {
            let eni = &model.enis[e.index()];
            (eni.id.clone(), eni.private_ip, crate::pipeline::synthesize_for(model, *e, to, protocol, sport, dport))
        }
        Err((id, ip)) => {
            (id.clone(), *ip, crate::pipeline::synthesize_from_internet(model, *ip, to, protocol, sport, dport))
        }
    };
    let from = from.ok();
    let packet = match protocol {
        IpProto::TCP => format!("tcp {src}:{sport} -> {to}:{dport} [SYN]"),
        IpProto::UDP => format!("udp {src}:{sport} -> {to}:{dport}"),
        IpProto::ICMP => format!("icmp echo request {src} -> {to} id {sport}"),
        p => format!("protocol {} {src} -> {to}", p.0),
    };
    let (verdict, rec) = match handle.ask(Duration::from_secs(5), |reply| Command::Trace { from, frame, reply }) {
        Ok(r) => r,
        Err(e) => return Response::Error { message: e.to_string() },
    };
    let name = |e: EniIdx| model.enis[e.index()].id.clone();
    let stages = rec.lines.into_iter().map(|(s, d)| TraceStage { stage: s.name().to_string(), detail: d }).collect();
    let mut report = TraceReport {
        from: from_name.clone(),
        packet,
        stages,
        verdict: "delivered".into(),
        delivered_to: None,
        drop_reason: None,
        explanation_code: None,
        dropped_at: None,
    };
    match verdict {
        Verdict::Forward(eni) => {
            report.delivered_to = Some(name(eni));
            if !model.enis[eni.index()].private_ips().any(|ip| ip == to) {
                report.stages.push(TraceStage {
                    stage: "appliance".into(),
                    detail: format!(
                        "{to} is not {}'s: the trace stops at this appliance; what comes next is its instance's decision",
                        name(eni)
                    ),
                });
            }
        }
        Verdict::ToInternet => report.delivered_to = Some("the internet".into()),
        Verdict::ToService => report.delivered_to = Some("the instance metadata service".into()),
        Verdict::Reply | Verdict::ReplyWith(_) => report.verdict = "answered by the fabric".into(),
        Verdict::Drop(r) | Verdict::DropAt(r, _) => {
            report.verdict = "dropped".into();
            report.drop_reason = Some(r.name().into());
            report.explanation_code = Some(r.explanation_code().into());
            report.dropped_at = Some(match verdict {
                Verdict::DropAt(_, at) => name(at),
                _ => from_name,
            });
        }
    }
    Response::Trace(report)
}

/// Sends one request to the daemon listening on `socket` and returns its response.
pub fn request(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    use anyhow::Context;
    let conn = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the lab's forwarder at {}", socket.display()))?;
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    conn.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    (&conn).write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .with_context(|| format!("no answer from the forwarder at {}", socket.display()))?;
    serde_json::from_str(&answer).with_context(|| format!("unreadable answer from the forwarder: {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_tagged_json_lines() {
        assert_eq!(serde_json::to_string(&Request::Status).unwrap(), r#"{"cmd":"status"}"#);
        assert_eq!(serde_json::from_str::<Request>(r#"{"cmd":"shutdown"}"#).unwrap(), Request::Shutdown);
        assert_eq!(serde_json::to_string(&Response::Ok).unwrap(), r#"{"result":"ok"}"#);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }

    #[test]
    fn requests_must_be_bounded_utf8_json() {
        assert_eq!(parse_request(b"{\"cmd\":\"status\"}\n"), Ok(Request::Status));
        assert!(parse_request(b"{\"cmd\":\"st\xffatus\"}\n").unwrap_err().contains("not UTF-8"));
        let long = vec![b' '; MAX_REQUEST as usize];
        assert!(parse_request(&long).unwrap_err().contains("longer than"));
        assert!(parse_request(b"[1,2\n").unwrap_err().starts_with("bad request"));
    }
}
