//! A lab's life on this machine: its lock and record under [`run_dir`], building its namespaces and TAPs
//! from a checked model (all or nothing), running the forwarder, and tearing everything down.
//!
//! Invariants:
//! - A lab is owned by whoever holds the `flock` on `<run dir>/<lab>.lock` ([`LabLock`]): its
//!   forwarder for its whole life, or `down` while it cleans up. Two `up`s of one lab cannot both
//!   win, and a dead owner's lock is released by the kernel.
//! - `<run dir>/<lab>/record.json` is written (atomically) before anything is created.
//! - Every namespace is `<lab>-<instance>`, and lab names hold no `-`, so `<lab>-*` finds all of a
//!   lab's namespaces even without its record. `up` makes the TAPs of running instances inside
//!   their namespaces as `eth<device_index>`; every other TAP is born in the host namespace under
//!   a short temporary name (see [`tap_temp_name`]) and moved into an instance when it is placed.
//!   TAPs are persistent while the forwarder holds them (a dead forwarder leaves its instances'
//!   networks for `resume`); one it lets go is removed, by itself in the host namespace, with its
//!   namespace otherwise.
//! - A failed or interrupted build deletes whatever it created before returning the error.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::change::{self, live::LiveLab};
use crate::control;
use crate::dataplane::{tap::Tap, Command, Dataplane, Handle};
use crate::model::{
    Cidr, EniIdx, InstanceIdx, InstanceNetwork, InstanceState, Model, INTERNET_GATEWAY_IP, INTERNET_MTU,
};
use crate::netns::{self, LinkConfig, Netlink, RouteSpec};
use crate::pipeline::Pipeline;

pub mod guest;

/// Where running labs keep their locks, records, sockets and logs, unless `VPCLAB_RUN_DIR` says
/// otherwise (tests use that to see only their own labs).
pub const RUN_DIR: &str = "/run/vpclab";

/// Queue length of each TAP towards the forwarder, raised so a burst is not dropped in the kernel.
const TAP_TXQUEUELEN: u32 = 10_000;

/// Routing table of the ENI at device index N > 0 is `ENI_TABLE_BASE + N`, as ec2-net-utils
/// does (it uses 10000 + device number), with its rules at the same priority.
const ENI_TABLE_BASE: u32 = 10_000;

/// The main routing table.
const MAIN_TABLE: u32 = 254;

/// What `<run dir>/<lab>/record.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabRecord {
    /// The lab's name.
    pub lab: String,
    /// The forwarder's pid.
    pub pid: u32,
    /// Every namespace the lab may have created.
    pub namespaces: Vec<String>,
    /// Where the topology came from.
    pub topology: String,
}

/// The run directory in force.
pub fn run_dir() -> PathBuf {
    std::env::var_os("VPCLAB_RUN_DIR").map_or_else(|| PathBuf::from(RUN_DIR), PathBuf::from)
}

/// The lab's directory.
pub fn lab_dir(lab: &str) -> PathBuf {
    run_dir().join(lab)
}

/// The forwarder's control socket.
pub fn socket_path(lab: &str) -> PathBuf {
    lab_dir(lab).join("control.sock")
}

/// The forwarder's log (kept beside the lab's directory so it outlives a failed start).
pub fn log_path(lab: &str) -> PathBuf {
    run_dir().join(format!("{lab}.log"))
}

fn lock_path(lab: &str) -> PathBuf {
    run_dir().join(format!("{lab}.lock"))
}

/// Reads a lab's record, if it has one.
pub fn read_record(lab: &str) -> Option<LabRecord> {
    let text = fs::read_to_string(lab_dir(lab).join("record.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// An exclusive `flock` on `<run dir>/<lab>.lock`, held by whoever owns the lab: the forwarder
/// for its whole life, `down` while it cleans up. The kernel drops it when its holder dies, so a
/// held lock means a live owner, whatever pid files say.
#[derive(Debug)]
pub struct LabLock {
    _file: fs::File,
    path: PathBuf,
}

impl LabLock {
    /// Takes the lock, waiting at most `wait`; `None` if it stays held.
    pub fn acquire(lab: &str, wait: Duration) -> anyhow::Result<Option<LabLock>> {
        let dir = run_dir();
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = lock_path(lab);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let deadline = Instant::now() + wait;
        let mut file = file;
        loop {
            // SAFETY: flock on a descriptor we own; the result is checked.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                // The owner before us may have removed the file as it left: a lock on a removed
                // file guards nothing, so take the file at the path again.
                let same = match (file.metadata(), fs::metadata(&path)) {
                    (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                    _ => false,
                };
                if same {
                    return Ok(Some(LabLock { _file: file, path }));
                }
                file = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                continue;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::WouldBlock {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl LabLock {
    /// Removes the lock file while still holding it (the lab is gone), so lock files do not pile
    /// up; a waiter on the removed file notices and takes the file at the path anew.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether some process owns the lab (its forwarder, or a `down` in progress).
pub fn lab_running(lab: &str) -> bool {
    let Ok(file) = fs::File::open(lock_path(lab)) else { return false };
    // A shared probe conflicts only with an exclusive holder, and is released at once.
    // SAFETY: flock on a descriptor we own; the result is checked.
    let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    !free
}

/// Whether the lab's recorded forwarder process still lives (a zombie or a vanished pid does not).
pub fn forwarder_alive(lab: &str) -> bool {
    let Some(rec) = read_record(lab) else { return false };
    let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", rec.pid)) else { return false };
    // After the parenthesised command name: state (field 3), ..., flags (field 9). A killed
    // process closing its TAPs still runs, but the kernel has marked it PF_EXITING.
    const PF_EXITING: u64 = 0x4;
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let exiting = fields.get(6).and_then(|f| f.parse::<u64>().ok()).is_some_and(|f| f & PF_EXITING != 0);
    // Killed but not yet run since: SIGKILL still pending (shared or per-thread).
    let status = fs::read_to_string(format!("/proc/{}/status", rec.pid)).unwrap_or_default();
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    let kill_pending = status
        .lines()
        .filter_map(|l| l.strip_prefix("ShdPnd:").or_else(|| l.strip_prefix("SigPnd:")))
        .any(|mask| u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| m & SIGKILL_BIT != 0));
    !matches!(fields.first(), Some(&"Z" | &"X") | None) && !exiting && !kill_pending
}

/// A forwarder killed a moment ago still holds the lab's lock while the kernel closes its TAPs.
/// Waits (at most `wait`) for the lock to be released when the recorded forwarder is no longer
/// alive; true once it is free. A live forwarder answers false at once: a dead one is never
/// mistaken for a live one, nor a live one for a dead one.
pub fn wait_until_released(lab: &str, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    // A forwarder seen alive this long is alive (a kill is seen within a scheduling delay).
    let mut alive_since: Option<Instant> = None;
    while lab_running(lab) {
        if Instant::now() >= deadline {
            return false;
        }
        if forwarder_alive(lab) {
            let since = *alive_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_millis(300) {
                return false;
            }
        } else {
            alive_since = None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Labs that have a directory, with their record and whether they are running, by name.
pub fn known_labs() -> Vec<(String, Option<LabRecord>, bool)> {
    let Ok(dir) = fs::read_dir(run_dir()) else { return Vec::new() };
    let mut labs: Vec<_> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .map(|lab| {
            let rec = read_record(&lab);
            let running = lab_running(&lab);
            (lab, rec, running)
        })
        .collect();
    labs.sort_by(|a, b| a.0.cmp(&b.0));
    labs
}

/// Picks the lab a command means: the one named, else the only one running (or, with
/// `include_dead`, the only one known, so `down` can clean up after a dead forwarder).
pub fn resolve_lab(named: Option<&str>, include_dead: bool) -> anyhow::Result<String> {
    let candidates: Vec<String> = known_labs().into_iter().filter(|l| l.2 || include_dead).map(|l| l.0).collect();
    pick_lab(named, &candidates)
}

fn pick_lab(named: Option<&str>, running: &[String]) -> anyhow::Result<String> {
    if let Some(lab) = named {
        return Ok(lab.to_string());
    }
    match running {
        [one] => Ok(one.clone()),
        [] => bail!("no lab is running (start one with `vpclab up`)"),
        many => bail!("{} labs are running ({}): name one", many.len(), many.join(", ")),
    }
}

/// The namespaces on this machine that belong to `lab`: `<lab>-*`. Lab names hold no `-`, so
/// the prefix is unambiguous.
pub fn lab_namespaces(lab: &str) -> Vec<String> {
    let prefix = format!("{lab}-");
    netns::list_netns().into_iter().filter(|n| n.starts_with(&prefix)).collect()
}

/// Removes what is left of a lab whose owner is gone: every `<lab>-*` namespace, its directory
/// and its log. The caller holds the lab's lock.
pub fn clean_up(lab: &str) -> anyhow::Result<()> {
    // A dead forwarder's persistent TAPs: those in namespaces go with them; those waiting in the
    // host namespace (ENIs detached or of stopped instances) are named by the running lab.
    let running = fs::read_to_string(lab_dir(lab).join("running.toml")).ok();
    if let Some(model) = running.and_then(|t| crate::topology::parse(&t, "running.toml").ok()) {
        let mut host = Netlink::open().context("opening netlink in the host namespace")?;
        for eni in &model.enis {
            host.delete_link(&tap_temp_name(&model.name, &eni.id))?;
        }
    }
    let mut namespaces = lab_namespaces(lab);
    if let Some(rec) = read_record(lab) {
        namespaces.extend(rec.namespaces);
        namespaces.sort();
        namespaces.dedup();
    }
    teardown(&namespaces)?;
    let dir = lab_dir(lab);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// The temporary host-side name of an ENI's TAP before it moves into its instance: up to six
/// characters of the lab's name, a dash, and eight hex digits of a hash of the lab and ENI ids.
/// Always within Linux's 15-character limit; distinct labs and ENIs get distinct names.
pub fn tap_temp_name(lab: &str, eni_id: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in lab.bytes().chain([0]).chain(eni_id.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let prefix: String = lab.chars().filter(|c| c.is_ascii_alphanumeric()).take(6).collect();
    format!("{prefix}-{h:08x}")
}

/// Every namespace a lab creates: `<lab>-<instance>` per instance, `<lab>-internet`, and
/// `<lab>-svc` (the fabric's services).
pub fn planned_namespaces(model: &Model) -> Vec<String> {
    let mut v: Vec<String> = (0..model.instances.len()).map(|i| model.netns_name(InstanceIdx(i as u32))).collect();
    if model.has_emulated_internet() {
        v.push(model.internet_netns());
    }
    v.push(model.service_netns());
    v
}

/// Kills every process inside the namespaces, then deletes them. Idempotent; never fails half
/// way: every namespace is attempted and the first error is returned.
pub fn teardown(namespaces: &[String]) -> anyhow::Result<()> {
    let mut first_err = None;
    kill_processes_in_all(namespaces);
    for ns in namespaces {
        if let Err(e) = netns::delete_netns(ns) {
            first_err.get_or_insert(anyhow::Error::new(e).context(format!("deleting namespace {ns}")));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Processes left in a namespace (a server started with `vpclab exec`) would keep it alive,
/// unnamed, after `down`: kill them, as `ip netns pids | xargs kill` would.
pub(crate) fn kill_processes_in(ns: &str) {
    kill_processes_in_all(std::slice::from_ref(&ns.to_string()));
}

/// The same for many namespaces with one pass over `/proc` (a pass per namespace made taking
/// down a lab of 500 instances take seconds).
fn kill_processes_in_all(namespaces: &[String]) {
    let targets: std::collections::HashSet<(u64, u64)> = namespaces
        .iter()
        .filter_map(|ns| fs::metadata(Path::new("/run/netns").join(ns)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if targets.is_empty() {
        return;
    }
    let Ok(procs) = fs::read_dir("/proc") else { return };
    let me = std::process::id();
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(m) = fs::metadata(entry.path().join("ns/net")) else { continue };
        if targets.contains(&(m.dev(), m.ino())) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A lab's namespaces and TAPs. Dropping it tears the namespaces down.
#[derive(Debug)]
pub struct Lab {
    pub(crate) namespaces: Vec<String>,
    taps: Vec<Option<Tap>>,
    /// By port: the TAP's further queues, one per worker after the first (`up --workers N`).
    queues: Vec<Vec<Tap>>,
    /// The uplink gateway's MAC, when the internet side is an uplink.
    pub uplink_gateway_mac: Option<crate::model::Mac>,
    /// The service namespace's TAP, a queue per worker, and the metadata service's listening
    /// socket made inside it.
    service: Option<(Vec<Tap>, std::net::TcpListener)>,
}

impl Lab {
    /// Creates every namespace and TAP of the model, configured as on an EC2 instance. On error,
    /// everything created so far is deleted. Every ENI gets its TAP, attached or not: an ENI
    /// that is not in a running instance keeps its TAP, down, in the host namespace under its
    /// temporary name, ready to be attached live.
    /// `interrupted` is asked before each instance; when it says yes, the build stops.
    /// Every TAP gets a queue per worker (`workers`).
    pub fn build(model: &Model, workers: usize, interrupted: &dyn Fn() -> bool) -> anyhow::Result<Lab> {
        let mut lab = Lab {
            namespaces: Vec::new(),
            taps: (0..=model.enis.len()).map(|_| None).collect(),
            queues: (0..=model.enis.len()).map(|_| Vec::new()).collect(),
            uplink_gateway_mac: None,
            service: None,
        };
        if let Err(e) = lab.fill(model, workers, interrupted) {
            // Dropping the lab deletes its namespaces, and the TAPs inside go with them.
            leave_placed_taps(model, &mut lab.taps);
            return Err(e);
        }
        Ok(lab)
    }

    fn fill(&mut self, model: &Model, workers: usize, interrupted: &dyn Fn() -> bool) -> anyhow::Result<()> {
        for (i, eni) in model.enis.iter().enumerate() {
            if placement(model, EniIdx(i as u32)).is_none() {
                let temp = tap_temp_name(&model.name, &eni.id);
                let queues =
                    Tap::create_queues(&temp, workers).with_context(|| format!("creating the TAP of {}", eni.id))?;
                self.set_queues(i, queues);
            }
        }
        for i in 0..model.instances.len() {
            if interrupted() {
                bail!("interrupted by a signal while building the lab");
            }
            let inst = InstanceIdx(i as u32);
            let ns = model.netns_name(inst);
            let dressed = netns::create_netns_with(&ns, || dress_instance(model, inst, &ns, workers))
                .with_context(|| format!("creating namespace {ns}"))?;
            self.namespaces.push(ns);
            for (eni, queues) in dressed? {
                self.set_queues(eni.index(), queues);
            }
        }
        if let Some(u) = &model.uplink {
            let (port, mac) = open_uplink(model, u)?;
            self.uplink_gateway_mac = Some(mac);
            self.taps[model.enis.len()] = Some(port);
        }
        if model.has_emulated_internet() {
            if interrupted() {
                bail!("interrupted by a signal while building the lab");
            }
            let ns = model.internet_netns();
            let plumbed = netns::create_netns_with(&ns, || plumb_internet(model, &ns, workers))
                .with_context(|| format!("creating namespace {ns}"))?;
            self.namespaces.push(ns);
            self.set_queues(model.enis.len(), plumbed?);
        }
        let ns = model.service_netns();
        let plumbed = netns::create_netns_with(&ns, || plumb_service(model, &ns, workers))
            .with_context(|| format!("creating namespace {ns}"))?;
        self.namespaces.push(ns);
        self.service = Some(plumbed?);
        Ok(())
    }

    /// Hands over the service namespace's TAP queues (one per worker, or fewer) and the metadata
    /// service's listening socket.
    pub fn take_service(&mut self) -> Option<(Vec<Tap>, std::net::TcpListener)> {
        self.service.take()
    }

    /// Port `port`'s TAP: its first queue, and the others.
    fn set_queues(&mut self, port: usize, queues: Vec<Tap>) {
        let mut queues = queues.into_iter();
        self.taps[port] = queues.next();
        self.queues[port] = queues.collect();
    }

    /// Attaches to the persistent TAPs a dead forwarder of `model`'s lab left behind, wherever
    /// they are (inside running instances as `eth<N>`, else in the host namespace under their
    /// temporary names; the internet's as `eth0` in its namespace), touching nothing else: the
    /// instances, their addresses, routes and processes stay as they are. Fails, leaving
    /// everything as it was, if a namespace or TAP is missing.
    pub fn adopt(model: &Model) -> anyhow::Result<Lab> {
        let namespaces = planned_namespaces(model);
        if let Some(gone) = namespaces.iter().find(|ns| !netns::netns_exists(ns)) {
            bail!("namespace `{gone}` is gone: the lab cannot be resumed (`vpclab down` removes it)");
        }
        let mut taps: Vec<Option<Tap>> = (0..=model.enis.len()).map(|_| None).collect();
        for (i, eni) in model.enis.iter().enumerate() {
            let placed = eni.attachment.filter(|a| model.instances[a.instance.index()].state == InstanceState::Running);
            let (ns, ifname) = match placed {
                Some(a) => (Some(model.netns_name(a.instance)), format!("eth{}", a.device_index)),
                None => (None, tap_temp_name(&model.name, &eni.id)),
            };
            taps[i] = Some(attach_tap(ns.as_deref(), &ifname).with_context(|| format!("re-attaching {}", eni.id))?);
        }
        let mut uplink_gateway_mac = None;
        if let Some(u) = &model.uplink {
            let (port, mac) = open_uplink(model, u)?;
            uplink_gateway_mac = Some(mac);
            taps[model.enis.len()] = Some(port);
        } else if model.has_emulated_internet() {
            let ns = model.internet_netns();
            taps[model.enis.len()] = Some(attach_tap(Some(&ns), "eth0").context("re-attaching the internet's TAP")?);
        }
        let ns = model.service_netns();
        let mut service_tap = attach_tap(Some(&ns), "eth0").context("re-attaching the service namespace's TAP")?;
        let listener = netns::run_in_netns(&ns, listen_for_metadata)?
            .with_context(|| format!("listening for metadata requests in {ns}"))?;
        for tap in taps.iter_mut().flatten().chain(std::iter::once(&mut service_tap)) {
            tap.adopt();
        }
        let queues = taps.iter().map(|_| Vec::new()).collect();
        let service = Some((vec![service_tap], listener));
        Ok(Lab { namespaces, taps, queues, uplink_gateway_mac, service })
    }

    /// Hands the TAPs to the data plane: indexed like the model's ENIs, then the internet's.
    pub fn take_taps(&mut self) -> Vec<Option<Tap>> {
        std::mem::take(&mut self.taps)
    }

    /// Hands the TAPs' queues to `workers` workers: by worker, each indexed like
    /// [`take_taps`](Self::take_taps). The uplink's packet socket has one queue: every worker
    /// gets a descriptor of it. A TAP with fewer queues (one re-attached by `resume`) is read by
    /// worker 0 only.
    pub fn take_queues(&mut self, workers: usize) -> anyhow::Result<Vec<Vec<Option<Tap>>>> {
        let first = self.take_taps();
        let mut more = std::mem::take(&mut self.queues);
        let uplink = first.last().and_then(|p| p.as_ref()).filter(|_| self.uplink_gateway_mac.is_some());
        let mut all = Vec::with_capacity(workers);
        for _ in 1..workers {
            let mut ports = Vec::with_capacity(first.len());
            for (i, queues) in more.iter_mut().enumerate() {
                let port = match uplink {
                    Some(u) if i + 1 == first.len() => Some(u.duplicate().context("sharing the uplink's socket")?),
                    _ => (!queues.is_empty()).then(|| queues.remove(0)),
                };
                ports.push(port);
            }
            all.push(ports);
        }
        all.insert(0, first);
        Ok(all)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The namespaces first, the TAPs after: see `close_after_teardown`.
        let taps = vec![(std::mem::take(&mut self.taps), std::mem::take(&mut self.queues))];
        close_after_teardown(&self.namespaces, taps);
    }
}

/// Deletes `namespaces`, then closes `taps`. In that order because closing a TAP unregisters its
/// device on its own (about 20 ms each here, 10 s for 500 instances), while a namespace that goes
/// takes its devices with it in one batch; the closes after are cheap. A TAP opened inside its
/// namespace keeps that namespace alive until it closes: whoever knows where the devices are
/// leaves those inside namespaces to them first ([`leave_placed_taps`]).
fn close_after_teardown<T>(namespaces: &[String], taps: Vec<T>) {
    if let Err(e) = teardown(namespaces) {
        crate::log!("teardown: {e:#}");
    }
    drop(taps);
}

/// Where an ENI's TAP is: inside a running instance as `eth<N>`, or (`None`) waiting in the host
/// namespace under its temporary name.
fn placement(model: &Model, idx: EniIdx) -> Option<u32> {
    let a = model.enis[idx.index()].attachment?;
    (model.instances[a.instance.index()].state == InstanceState::Running).then_some(a.device_index)
}

/// Marks the TAPs whose devices are inside the lab's namespaces (ENIs in running instances, the
/// internet's) to go with those namespaces; the others, in the host namespace, are still removed
/// when they close. `taps` is indexed like the model's ENIs, then the internet's (or uplink's).
fn leave_placed_taps(model: &Model, taps: &mut [Option<Tap>]) {
    for (i, tap) in taps.iter_mut().enumerate() {
        let inside = if i < model.enis.len() {
            placement(model, EniIdx(i as u32)).is_some()
        } else {
            model.has_emulated_internet()
        };
        if let (true, Some(tap)) = (inside, tap) {
            tap.leave_to_namespace();
        }
    }
}

/// Opens the uplink's packet socket and learns its gateway's MAC by ARP.
fn open_uplink(model: &Model, u: &crate::model::Uplink) -> anyhow::Result<(Tap, crate::model::Mac)> {
    let port = crate::dataplane::uplink::open(&u.interface)
        .with_context(|| format!("opening the uplink on {}", u.interface))?;
    let own_ip = model.public_addresses().next().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mac =
        crate::dataplane::uplink::resolve_gateway(&port, model.uplink_mac(), own_ip, u.gateway, Duration::from_secs(3))
            .with_context(|| format!("uplink {}", u.interface))?;
    Ok((port, mac))
}

/// Attaches to an existing TAP `ifname` in namespace `ns` (the host's when `None`).
fn attach_tap(ns: Option<&str>, ifname: &str) -> anyhow::Result<Tap> {
    let exists = match ns {
        Some(ns) => Netlink::open_in(ns)?.link_index(ifname)?.is_some(),
        None => Netlink::open()?.link_index(ifname)?.is_some(),
    };
    if !exists {
        bail!("its TAP {ifname} is gone{}", ns.map(|n| format!(" from {n}")).unwrap_or_default());
    }
    Ok(match ns {
        Some(ns) => netns::run_in_netns(ns, || Tap::attach(ifname))??,
        None => Tap::attach(ifname)?,
    })
}

/// The fabric carries no IPv6 yet: keep a namespace's interfaces from sending it.
pub(crate) fn disable_ipv6(ns: &str) -> anyhow::Result<()> {
    netns::run_in_netns(ns, || disable_ipv6_here(ns))?
}

/// [`disable_ipv6`] from a thread inside `ns`. Before any interface but `lo` is made: an
/// interface takes the namespace's `default` settings when it is created.
fn disable_ipv6_here(ns: &str) -> anyhow::Result<()> {
    for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
        netns::set_sysctl_here(key, "1").with_context(|| format!("setting {key} in {ns}"))?;
    }
    Ok(())
}

/// Dresses a new instance from inside its namespace (on the thread that made it): IPv6 off, and
/// if it runs, a TAP made right there as `eth<N>` for each of its ENIs, configured by
/// [`configure_eni`]. Made inside, a TAP needs no move from the host namespace, which costs the
/// kernel 15-20 ms per move here (10 s for 500 instances).
fn dress_instance(
    model: &Model,
    inst: InstanceIdx,
    ns: &str,
    workers: usize,
) -> anyhow::Result<Vec<(EniIdx, Vec<Tap>)>> {
    disable_ipv6_here(ns)?;
    if model.instances[inst.index()].state != InstanceState::Running {
        return Ok(Vec::new());
    }
    let mut nl =
        Netlink::open_labelled(format!("namespace `{ns}`")).with_context(|| format!("opening netlink in {ns}"))?;
    let mut taps = Vec::new();
    for eni in model.enis_of(inst) {
        let device_index = placement(model, eni).expect("the ENIs of a running instance are placed");
        let ifname = format!("eth{device_index}");
        let queues = Tap::create_queues(&ifname, workers)
            .with_context(|| format!("creating the TAP of {} in {ns}", model.enis[eni.index()].id))?;
        taps.push((eni, queues));
        configure_eni(model, eni, ns, &mut nl)?;
    }
    Ok(taps)
}

/// Moves one ENI's TAP from the host namespace (where it waits under its temporary name) into
/// its instance and configures it the way EC2 and ec2-net-utils do: MAC, MTU 9001, addresses with
/// the subnet's prefix; device 0 gets the default route via the subnet router, others their own
/// table and a rule per address, so that replies leave by the ENI they came in on.
pub(crate) fn place_eni(
    model: &Model,
    idx: EniIdx,
    ns: &str,
    host: &mut Netlink,
    nl: &mut Netlink,
) -> anyhow::Result<()> {
    let eni = &model.enis[idx.index()];
    let attachment = eni.attachment.expect("only attached ENIs are placed");
    let ifname = format!("eth{}", attachment.device_index);
    let temp = tap_temp_name(&model.name, &eni.id);
    host.move_link(&temp, ns, &ifname).with_context(|| format!("moving {} into {ns} as {ifname}", eni.id))?;
    configure_eni(model, idx, ns, nl)
}

/// Moves an ENI's interface straight from one instance to another (one netlink move instead of
/// two through the host: a move costs the kernel milliseconds), leaving its rules behind in
/// neither; it arrives down and bare, and [`configure_eni`] dresses it.
pub(crate) fn transfer_eni(
    old: &Model,
    old_idx: EniIdx,
    from_ns: &str,
    from: &mut Netlink,
    new: &Model,
    new_idx: EniIdx,
    to_ns: &str,
) -> anyhow::Result<()> {
    let eni = &old.enis[old_idx.index()];
    let was = eni.attachment.expect("only attached ENIs are transferred");
    let will = new.enis[new_idx.index()].attachment.expect("only to an attachment");
    if was.device_index > 0 {
        let table = ENI_TABLE_BASE + was.device_index;
        for ip in eni.private_ips() {
            from.del_rule(ip, table, table).with_context(|| format!("removing the rule of {ip} in {from_ns}"))?;
        }
    }
    let (a, b) = (format!("eth{}", was.device_index), format!("eth{}", will.device_index));
    guest::stop_dhcp_client(&old.name, from_ns, &a);
    from.move_link(&a, to_ns, &b).with_context(|| format!("moving {} from {from_ns} to {to_ns} as {b}", eni.id))?;
    Ok(())
}

/// Configures an ENI's interface, already in its instance as `eth<device_index>`, the way EC2 and
/// ec2-net-utils do (see [`place_eni`]).
/// With `instance_network = "dhcp"` only the link is set (MAC, up) and a DHCP client started:
/// the address, MTU and routes come from the fabric's DHCP server.
pub(crate) fn configure_eni(model: &Model, idx: EniIdx, ns: &str, nl: &mut Netlink) -> anyhow::Result<()> {
    let eni = &model.enis[idx.index()];
    let attachment = eni.attachment.expect("only attached ENIs are configured");
    let ifname = format!("eth{}", attachment.device_index);
    let dhcp = model.instance_network == InstanceNetwork::Dhcp;
    let cfg = LinkConfig {
        mac: Some(eni.mac),
        mtu: (!dhcp).then_some(u32::from(crate::pipeline::VPC_MTU)),
        txqueuelen: Some(TAP_TXQUEUELEN),
        up: true,
    };
    nl.set_link(&ifname, &cfg).with_context(|| format!("configuring {ifname} in {ns}"))?;
    if attachment.device_index == 0 {
        guest::prepare_resolv_conf(model, attachment.instance)?;
    }
    if dhcp {
        return guest::start_dhcp_client(model, idx, ns);
    }
    let subnet = model.subnet_of(idx).cidr;
    for ip in eni.private_ips() {
        add_eni_address(nl, subnet.prefix, attachment.device_index, &ifname, ip)
            .with_context(|| format!("adding {ip} to {ifname} in {ns}"))?;
    }
    let default = Cidr::new(Ipv4Addr::UNSPECIFIED, 0);
    let via_router = |table| RouteSpec {
        table,
        destination: default,
        gateway: Some(subnet.router()),
        ifname: ifname.clone(),
        scope_link: false,
        source: None,
    };
    let ctx = || format!("adding routes for {ifname} in {ns}");
    if attachment.device_index == 0 {
        nl.add_route(&via_router(MAIN_TABLE)).with_context(ctx)?;
    } else {
        let table = ENI_TABLE_BASE + attachment.device_index;
        let connected = RouteSpec {
            table,
            destination: subnet,
            gateway: None,
            ifname: ifname.clone(),
            scope_link: true,
            source: Some(eni.private_ip),
        };
        nl.add_route(&connected).with_context(ctx)?;
        nl.add_route(&via_router(table)).with_context(ctx)?;
    }
    Ok(())
}

/// Adds one private IP to an ENI's interface, with the ec2-net-utils rule of a secondary ENI.
pub(crate) fn add_eni_address(
    nl: &mut Netlink,
    prefix: u8,
    device_index: u32,
    ifname: &str,
    ip: Ipv4Addr,
) -> Result<(), netns::NetnsError> {
    nl.add_address(ifname, ip, prefix)?;
    if device_index > 0 {
        let table = ENI_TABLE_BASE + device_index;
        nl.add_rule(ip, table, table)?;
    }
    Ok(())
}

/// Removes one private IP from an ENI's interface, and its rule.
pub(crate) fn del_eni_address(
    nl: &mut Netlink,
    prefix: u8,
    device_index: u32,
    ifname: &str,
    ip: Ipv4Addr,
) -> Result<(), netns::NetnsError> {
    if device_index > 0 {
        let table = ENI_TABLE_BASE + device_index;
        nl.del_rule(ip, table, table)?;
    }
    nl.del_address(ifname, ip, prefix)
}

/// Takes an ENI's TAP out of its instance: its rules go (the kernel drops its addresses and
/// routes with the move), and the TAP waits, down, in the host namespace under its temporary
/// name. The forwarder's descriptor keeps working.
pub(crate) fn lift_eni(
    model: &Model,
    idx: EniIdx,
    ns: &str,
    nl: &mut Netlink,
    host_ns: &fs::File,
) -> anyhow::Result<()> {
    let eni = &model.enis[idx.index()];
    let attachment = eni.attachment.expect("only attached ENIs are lifted");
    let ifname = format!("eth{}", attachment.device_index);
    if attachment.device_index > 0 {
        let table = ENI_TABLE_BASE + attachment.device_index;
        for ip in eni.private_ips() {
            nl.del_rule(ip, table, table).with_context(|| format!("removing the rule of {ip} in {ns}"))?;
        }
    }
    guest::stop_dhcp_client(&model.name, ns, &ifname);
    let temp = tap_temp_name(&model.name, &eni.id);
    nl.move_link_to(&ifname, host_ns, &temp).with_context(|| format!("moving {} out of {ns}", eni.id))?;
    Ok(())
}

/// The emulated internet: one TAP, `eth0` in `<lab>-internet`, MTU 1500, holding every
/// `[internet]` host's address (/32, so everything else is reached through the gateway) and a
/// default route via [`INTERNET_GATEWAY_IP`], which the forwarder answers for. Runs inside `ns`
/// (on the thread that made it), so the TAP (a queue per worker) is born there.
fn plumb_internet(model: &Model, ns: &str, workers: usize) -> anyhow::Result<Vec<Tap>> {
    disable_ipv6_here(ns)?;
    let queues = Tap::create_queues("eth0", workers).context("creating the internet's TAP")?;
    let mut nl =
        Netlink::open_labelled(format!("namespace `{ns}`")).with_context(|| format!("opening netlink in {ns}"))?;
    let cfg = LinkConfig {
        mac: Some(model.internet_host_mac()),
        mtu: Some(u32::from(INTERNET_MTU)),
        txqueuelen: Some(TAP_TXQUEUELEN),
        up: true,
    };
    nl.set_link("eth0", &cfg).with_context(|| format!("configuring eth0 in {ns}"))?;
    for h in &model.internet_hosts {
        nl.add_address("eth0", h.ip, 32).with_context(|| format!("adding {} to eth0 in {ns}", h.ip))?;
    }
    let ctx = || format!("adding routes in {ns}");
    let link = RouteSpec {
        table: MAIN_TABLE,
        destination: Cidr::new(INTERNET_GATEWAY_IP, 32),
        gateway: None,
        ifname: "eth0".into(),
        scope_link: true,
        source: None,
    };
    nl.add_route(&link).with_context(ctx)?;
    let default = RouteSpec {
        table: MAIN_TABLE,
        destination: Cidr::new(Ipv4Addr::UNSPECIFIED, 0),
        gateway: Some(INTERNET_GATEWAY_IP),
        ifname: "eth0".into(),
        scope_link: false,
        source: None,
    };
    nl.add_route(&default).with_context(ctx)?;
    Ok(queues)
}

/// The fabric's service namespace: one TAP, `eth0` in `<lab>-svc`, holding 169.254.169.254 and
/// reaching the metadata clients' pool through a next hop the forwarder answers ARP for, and
/// the metadata service's listening socket. Runs inside `ns`, so both are born there.
fn plumb_service(model: &Model, ns: &str, workers: usize) -> anyhow::Result<(Vec<Tap>, std::net::TcpListener)> {
    use crate::services::imds;
    disable_ipv6_here(ns)?;
    let queues = Tap::create_queues("eth0", workers).context("creating the service namespace's TAP")?;
    let mut nl =
        Netlink::open_labelled(format!("namespace `{ns}`")).with_context(|| format!("opening netlink in {ns}"))?;
    let cfg = LinkConfig {
        mac: Some(model.service_host_mac()),
        mtu: Some(u32::from(crate::pipeline::VPC_MTU)),
        txqueuelen: Some(TAP_TXQUEUELEN),
        up: true,
    };
    nl.set_link("eth0", &cfg).with_context(|| format!("configuring eth0 in {ns}"))?;
    nl.add_address("eth0", crate::model::METADATA_IP, 32).with_context(|| format!("addressing eth0 in {ns}"))?;
    let route = |destination, gateway| RouteSpec {
        table: MAIN_TABLE,
        destination,
        gateway,
        ifname: "eth0".into(),
        scope_link: gateway.is_none(),
        source: None,
    };
    let ctx = || format!("adding routes in {ns}");
    nl.add_route(&route(Cidr::new(imds::SERVICE_GATEWAY_IP, 32), None)).with_context(ctx)?;
    let pool = Cidr::new(imds::POOL, imds::POOL_PREFIX);
    nl.add_route(&route(pool, Some(imds::SERVICE_GATEWAY_IP))).with_context(ctx)?;
    Ok((queues, listen_for_metadata()?))
}

/// The metadata service's listening socket, in the namespace of the calling thread.
fn listen_for_metadata() -> anyhow::Result<std::net::TcpListener> {
    let addr = (crate::model::METADATA_IP, crate::services::imds::HTTP_PORT);
    std::net::TcpListener::bind(addr).context("listening on 169.254.169.254:80")
}

/// Writes `<run dir>/<lab>/record.json` atomically (a temporary file renamed over it).
pub fn write_record(record: &LabRecord) -> anyhow::Result<()> {
    let dir = lab_dir(&record.lab);
    let tmp = dir.join("record.json.tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(record)?.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join("record.json")).context("writing the lab record")
}

/// Owns a lab while it runs: its lock, and its directory, removed when dropped.
#[derive(Debug)]
struct Claim {
    dir: PathBuf,
    lock: Option<LabLock>,
    /// Whether dropping the claim removes the lab's directory: not for a resume that failed,
    /// whose lab must stay resumable (or removable by `down`).
    remove_dir: bool,
}

impl Claim {
    fn take(model: &Model, topology: &str) -> anyhow::Result<Claim> {
        let lab = &model.name;
        let Some(lock) = LabLock::acquire(lab, Duration::from_secs(1))? else {
            bail!("lab `{lab}` is already running; `vpclab down {lab}` stops it");
        };
        let dir = lab_dir(lab);
        // Whatever a dead forwarder of this lab left behind goes first. Without its directory
        // there was none, and a `<lab>-*` namespace is someone else's: leave it alone.
        if dir.exists() {
            clean_up(lab)?;
        }
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let claim = Claim { dir, lock: Some(lock), remove_dir: true };
        let namespaces = planned_namespaces(model);
        if let Some(taken) = namespaces.iter().find(|ns| netns::netns_exists(ns)) {
            bail!("namespace `{taken}` already exists and is not this lab's: remove it or rename the lab");
        }
        let record = LabRecord { lab: lab.clone(), pid: std::process::id(), namespaces, topology: topology.into() };
        write_record(&record)?;
        Ok(claim)
    }

    /// Takes over a lab whose forwarder died, leaving its directory and namespaces as they are.
    fn adopt(lab: &str) -> anyhow::Result<Claim> {
        // A forwarder killed a moment ago may still be closing its descriptors.
        let Some(lock) = LabLock::acquire(lab, Duration::from_secs(5))? else {
            bail!("lab `{lab}` is running: there is nothing to resume");
        };
        let dir = lab_dir(lab);
        if !dir.join("running.toml").exists() {
            lock.remove();
            bail!("no lab `{lab}` to resume (its record is gone)");
        }
        let _ = fs::remove_file(socket_path(lab));
        Ok(Claim { dir, lock: Some(lock), remove_dir: false })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.remove_dir {
            return;
        }
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(lock) = self.lock.take() {
            lock.remove();
        }
    }
}

/// Brings the lab up and forwards until told to stop (control socket `shutdown`, SIGTERM,
/// SIGINT or SIGHUP), then tears it down. `on_ready` runs once the data plane is about to poll.
/// With `metrics`, `http://ADDR/metrics` serves the lab's counters (bound before anything is
/// built, so an address in use fails the start and leaves nothing behind).
/// `workers` threads forward (`up --workers N`; see `dataplane::workers`).
pub fn run_forwarder(
    model: Model,
    topology: &str,
    endpoints: Endpoints,
    workers: usize,
    on_ready: impl FnOnce(&Model),
) -> anyhow::Result<()> {
    // Signals are caught from the start: one that arrives while the lab is being built stops the
    // build, which then removes what it made, instead of killing the process half way.
    const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];
    let stop = Arc::new(AtomicBool::new(false));
    for sig in STOP_SIGNALS {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    let signals = signal_hook::iterator::Signals::new(STOP_SIGNALS).context("installing signal handlers")?;
    let claim = Claim::take(&model, topology)?;
    let listeners = endpoints.bind(&model)?;
    let lab = Lab::build(&model, workers, &|| stop.load(Ordering::Relaxed))?;
    forward(model, lab, claim, topology, signals, listeners, workers, on_ready)
}

/// Re-adopts lab `lab` whose forwarder died: its namespaces, instances, processes and
/// interfaces stay as they are (the TAPs are persistent); a new forwarder attaches to the TAPs
/// and forwards again from the running lab's record (`running.toml`), with empty connection
/// tables, then runs until told to stop, like [`run_forwarder`].
pub fn resume_forwarder(lab: &str, endpoints: Endpoints, on_ready: impl FnOnce(&Model)) -> anyhow::Result<()> {
    const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];
    let signals = signal_hook::iterator::Signals::new(STOP_SIGNALS).context("installing signal handlers")?;
    let mut claim = Claim::adopt(lab)?;
    let running = lab_dir(lab).join("running.toml");
    let text = fs::read_to_string(&running).with_context(|| format!("reading {}", running.display()))?;
    let model = crate::topology::parse(&text, &running.display().to_string())?;
    let topology = read_record(lab).map_or_else(|| "running.toml".to_string(), |r| r.topology);
    let listeners = endpoints.bind(&model)?;
    let adopted = Lab::adopt(&model)?;
    crate::log!("lab `{lab}` resumed by a new forwarder: instances untouched, connection tables empty");
    claim.remove_dir = true;
    // One worker: the TAPs are re-attached with one queue each.
    forward(model, adopted, claim, &topology, signals, listeners, 1, on_ready)
}

/// The HTTP endpoints a forwarder serves besides its control socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct Endpoints {
    /// `up --metrics ADDR`: Prometheus metrics.
    pub metrics: Option<SocketAddr>,
    /// `up --api ADDR`: the EC2 Query API (else the topology's `[api] listen`, if any).
    pub api: Option<SocketAddr>,
}

/// Their listeners, bound before anything is built so that an address in use fails the start
/// and leaves nothing behind.
struct Listeners {
    metrics: Option<TcpListener>,
    api: Option<TcpListener>,
}

impl Endpoints {
    fn bind(self, model: &Model) -> anyhow::Result<Listeners> {
        let metrics = self
            .metrics
            .map(|a| TcpListener::bind(a).with_context(|| format!("--metrics {a}: cannot listen there")))
            .transpose()?;
        let api = self.api.or(model.api.listen).map(crate::api::bind).transpose()?;
        Ok(Listeners { metrics, api })
    }
}

/// Runs the forwarder over a built or adopted lab until told to stop, then tears it down.
#[allow(clippy::too_many_arguments)]
fn forward(
    model: Model,
    mut lab: Lab,
    claim: Claim,
    topology: &str,
    mut signals: signal_hook::iterator::Signals,
    listeners: Listeners,
    workers: usize,
    on_ready: impl FnOnce(&Model),
) -> anyhow::Result<()> {
    let listener = UnixListener::bind(socket_path(&model.name)).context("binding the control socket")?;
    let mut pipeline = Pipeline::new(&model);
    if let Some(mac) = lab.uplink_gateway_mac {
        pipeline.set_uplink_gateway_mac(mac);
    }
    let (fired_tx, fired) = crossbeam_channel::unbounded::<crate::dataplane::FiredWatch>();
    let service = lab.take_service();
    let (mut planes, handle) = Dataplane::workers(pipeline, lab.take_queues(workers)?, fired_tx)?;
    let metadata_listener = match service {
        Some((queues, listener)) => {
            for (dataplane, queue) in planes.iter_mut().zip(queues) {
                dataplane.set_service_port(queue).context("polling the service namespace's TAP")?;
            }
            Some(listener)
        }
        None => None,
    };
    // VPC Flow Logs: records are appended to their files by a writer thread of their own.
    let flow_writer = crate::capture::flow_log::writer::Writer::spawn().context("starting the flow log writer")?;
    for dataplane in &mut planes {
        dataplane.set_flow_log_sink(flow_writer.sender());
    }
    let flow_config = crate::capture::flow_log::FlowLogConfig::new(&model);
    if !flow_config.is_empty() {
        handle.send(Command::FlowLogs(Box::new(flow_config))).context("configuring flow logs")?;
    }
    // Data-plane moments (first delivery after a move) go to the lab's timeline.
    let timeline_lab = model.name.clone();
    std::thread::spawn(move || {
        for w in fired {
            change::events::append(&timeline_lab, &[change::events::Event::at(w.at, "dataplane", w.label)]);
        }
    });
    let ready_model = model.clone();
    let live = LiveLab::new(model, lab, handle.clone(), topology)?;
    let live = Arc::new(Mutex::new(live));

    let on_signal = handle.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let name = nix::sys::signal::Signal::try_from(sig).map_or("a signal", |s| s.as_str());
            crate::log!("{name} received: stopping the forwarder and taking the lab down");
            let _ = on_signal.send(Command::Shutdown);
        }
    });
    let server_live = Arc::clone(&live);
    std::thread::spawn(move || control::serve(listener, server_live));
    if let Some(listener) = metadata_listener {
        let metadata_live = Arc::clone(&live);
        let current = move || metadata_live.lock().unwrap_or_else(|p| p.into_inner()).model();
        std::thread::spawn(move || crate::services::imds::server::serve(listener, current));
    }
    if let Some(metrics) = listeners.metrics {
        let addr = metrics.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string());
        crate::log!("metrics served on http://{addr}/metrics");
        let metrics_live = Arc::clone(&live);
        std::thread::spawn(move || crate::capture::metrics::serve_http(metrics, metrics_live));
    }
    if let Some(api) = listeners.api {
        let addr = api.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string());
        let credentials = ready_model
            .api
            .credentials
            .clone()
            .map(|(access_key_id, secret_access_key)| crate::api::Credentials { access_key_id, secret_access_key });
        let signed = if credentials.is_some() { "SigV4 checked" } else { "any or no signature" };
        crate::log!("EC2 API served on http://{addr}/ ({signed})");
        let api_live = Arc::clone(&live);
        std::thread::spawn(move || crate::api::serve(api, api_live, credentials));
    }

    crate::log!(
        "lab `{}` is up from {topology}: {} instance(s), {} ENI(s); forwarder pid {}",
        ready_model.name,
        ready_model.instances.len(),
        ready_model.enis.len(),
        std::process::id()
    );
    on_ready(&ready_model);
    let (result, mut taps) = run_workers(planes, &handle);
    // The data plane wrote its last intervals as it stopped: append them before going.
    flow_writer.finish();
    // A change in progress finishes first; then the namespaces the lab holds now go.
    let (namespaces, model) = {
        let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
        (live.take_namespaces(), live.model())
    };
    // Worker 0 holds every TAP's first queue, the one that keeps its device.
    leave_placed_taps(&model, &mut taps[0]);
    close_after_teardown(&namespaces, taps);
    drop(claim);
    match &result {
        Ok(()) => crate::log!("lab `{}` is down: forwarder stopped, namespaces removed", ready_model.name),
        Err(e) => crate::log!("lab `{}` is down after the forwarding loop failed: {e}", ready_model.name),
    }
    result.context("the forwarding loop failed")
}

/// Runs worker 0 on this thread and the others on threads of their own until worker 0 stops,
/// then stops the others and returns the first failure (worker 0's first) with every worker's
/// ports, worker 0's first. Any worker that fails stops the lab: a worker gone would leave its
/// queues unread. The TAPs stay open until their namespaces are gone (`close_after_teardown`).
fn run_workers(mut planes: Vec<Dataplane>, handle: &Handle) -> (std::io::Result<()>, Vec<Vec<Option<Tap>>>) {
    let mut dataplane = planes.remove(0);
    let others: Vec<_> = planes
        .into_iter()
        .enumerate()
        .map(|(i, mut dp)| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                let result = dp.run();
                if let Err(e) = &result {
                    crate::log!("forwarding worker {} failed: {e}; stopping the lab", i + 1);
                    let _ = handle.send(Command::Shutdown);
                }
                (result, dp.take_ports())
            })
        })
        .collect();
    let mut result = dataplane.run();
    // Worker 0 stopped: so do the others (they have had the shutdown already, unless worker 0 failed).
    let _ = handle.send(Command::Shutdown);
    let mut taps = vec![dataplane.take_ports()];
    for (other, ports) in others.into_iter().filter_map(|t| t.join().ok()) {
        if result.is_ok() {
            result = other;
        }
        taps.push(ports);
    }
    (result, taps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_tap_names_fit_and_differ() {
        let long = "a-very-long-lab-name-that-goes-on";
        let n = tap_temp_name(long, "eni-0123456789abcdef0-with-a-long-tail");
        assert!(n.len() <= 15, "{n}");
        assert_ne!(tap_temp_name("lab1", "eni-web"), tap_temp_name("lab2", "eni-web"));
        assert_ne!(tap_temp_name("lab1", "eni-web"), tap_temp_name("lab1", "eni-app"));
        assert_eq!(tap_temp_name("demo", "eni-web"), tap_temp_name("demo", "eni-web"));
    }

    #[test]
    fn the_lab_may_be_left_out_when_one_runs() {
        let one = vec!["demo".to_string()];
        let two = vec!["a".to_string(), "b".to_string()];
        assert_eq!(pick_lab(None, &one).unwrap(), "demo");
        assert_eq!(pick_lab(Some("x"), &two).unwrap(), "x");
        assert!(pick_lab(None, &two).unwrap_err().to_string().contains("2 labs are running (a, b)"));
        assert!(pick_lab(None, &[]).unwrap_err().to_string().contains("no lab is running"));
    }
}
