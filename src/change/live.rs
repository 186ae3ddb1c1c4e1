//! Applying a change to a running lab, all or nothing.
//!
//! Order: first what can be undone (namespaces created, TAPs created, ENIs taken out of or put
//! into instances, addresses added or removed), each step recording its undo in a journal; then
//! the forwarder swaps in the freshly compiled lab (one command, between two bursts); then what
//! cannot be undone and cannot fail the change (processes of stopped, rebooted or terminated
//! instances killed, namespaces of terminated instances deleted, retired TAPs closed). A failure
//! before the swap replays the journal backwards, so the lab is exactly as before; the lab's
//! record and exported topology are rewritten last.
//!
//! `VPCLAB_FAIL_AFTER_STEPS=N` in the forwarder's environment makes step N+1 of every change fail,
//! so tests can prove the rollback.

use std::fs;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::events::{self, Event};
use super::ops::{self, Operation};
use super::{diff, AwsError, Change, Outcome};
use crate::dataplane::tap::Tap;
use crate::dataplane::{Command, Handle, Swap, Watch};
use crate::lab::{self, Lab};
use crate::model::{EniIdx, InstanceIdx, InstanceState, Model};
use crate::netns::{self, Netlink};
use crate::pipeline::Pipeline;

/// How long a change waits for the forwarder to take the new lab.
const SWAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The running lab as the control side holds it: the checked model in force, the namespaces, a
/// netlink socket in the host namespace and the way to the forwarder. Changes are serialized by
/// whoever owns it (a mutex on the control side, never on the packet path).
#[derive(Debug)]
pub struct LiveLab {
    model: Arc<Model>,
    lab: Lab,
    handle: Handle,
    host: Netlink,
    host_ns: fs::File,
    topology: String,
    generation: u64,
    fail_after: Option<usize>,
}

/// Where an ENI's TAP lives: inside a running instance as `eth<N>`, or waiting in the host.
fn placement(m: &Model, e: EniIdx) -> Option<(InstanceIdx, u32)> {
    let a = m.enis[e.index()].attachment?;
    (m.instances[a.instance.index()].state == InstanceState::Running).then_some((a.instance, a.device_index))
}

/// A step done, and how to undo it.
#[derive(Debug)]
enum Undo {
    DeleteNamespace(String),
    Lift { model: Arc<Model>, eni: EniIdx, ns: String },
    Place { model: Arc<Model>, eni: EniIdx, ns: String },
    Transfer { old: Arc<Model>, old_eni: EniIdx, old_ns: String, new: Arc<Model>, new_eni: EniIdx, new_ns: String },
    DelAddress { ns: String, prefix: u8, device: u32, ip: Ipv4Addr },
    AddAddress { ns: String, prefix: u8, device: u32, ip: Ipv4Addr },
    DelHost { ns: String, ip: Ipv4Addr },
    AddHost { ns: String, ip: Ipv4Addr },
}

/// The steps done so far by one change.
#[derive(Debug, Default)]
struct Journal {
    undo: Vec<Undo>,
    done: usize,
}

impl LiveLab {
    /// Takes over a lab that `up` built and the handle of its running forwarder.
    pub fn new(model: Model, lab: Lab, handle: Handle, topology: &str) -> anyhow::Result<LiveLab> {
        let host = Netlink::open().context("opening netlink in the host namespace")?;
        let host_ns = fs::File::open("/proc/self/ns/net").context("opening the host's network namespace")?;
        let fail_after = std::env::var("VPCLAB_FAIL_AFTER_STEPS").ok().and_then(|v| v.parse().ok());
        let live = LiveLab {
            model: Arc::new(model),
            lab,
            handle,
            host,
            host_ns,
            topology: topology.to_string(),
            generation: 0,
            fail_after,
        };
        live.write_files();
        Ok(live)
    }

    /// The model in force.
    pub fn model(&self) -> Arc<Model> {
        Arc::clone(&self.model)
    }

    /// The way to the forwarder.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The running lab as a topology file.
    pub fn export(&self) -> String {
        crate::topology::export(&self.model)
    }

    /// The namespaces the lab holds now (for teardown).
    pub fn take_namespaces(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lab.namespaces)
    }

    /// Plans a change and, unless `dry_run`, applies it; every outcome goes to the timeline.
    pub fn change(&mut self, change: &Change, dry_run: bool) -> Result<Outcome, AwsError> {
        let name = self.model.name.clone();
        let result = self.change_inner(change, dry_run);
        match &result {
            Ok(o) if o.applied => {
                for step in &o.plan {
                    crate::log!("applied: {step}");
                }
                crate::log!("generation {} in {} ms (forwarder paused {} us)", o.generation, o.millis, o.swap_micros);
                let mut ev: Vec<Event> = o.plan.iter().map(|s| Event::now("applied", s.clone())).collect();
                ev.push(Event::now(
                    "applied",
                    format!("generation {} in {} ms (forwarder paused {} us)", o.generation, o.millis, o.swap_micros),
                ));
                events::append(&name, &ev);
            }
            Ok(_) => {}
            Err(e) if !dry_run => {
                let kind = if e.code == "InternalError" { "failed" } else { "refused" };
                crate::log!("{kind}: {}: {e}", describe(change));
                events::append(&name, &[Event::now(kind, format!("{}: {e}", describe(change)))]);
            }
            Err(_) => {}
        }
        result
    }

    fn change_inner(&mut self, change: &Change, dry_run: bool) -> Result<Outcome, AwsError> {
        let (new, reboot, created) = match change {
            Change::Operation { op } => {
                let edit = ops::edit(&self.model, op)?;
                (ops::validated(&edit.model)?, edit.reboot, edit.created)
            }
            Change::File { text, file } => {
                let new = crate::topology::parse(text, file).map_err(|e| AwsError::invalid(e.to_string()))?;
                (new, Vec::new(), Vec::new())
            }
        };
        let mut plan = diff(&self.model, &new)?;
        for r in &reboot {
            plan.steps.push(format!("RebootInstances {r}"));
        }
        let mut outcome = Outcome {
            plan: plan.steps,
            applied: false,
            generation: self.generation,
            millis: 0,
            swap_micros: 0,
            created,
        };
        if dry_run || outcome.plan.is_empty() {
            return Ok(outcome);
        }
        let start = Instant::now();
        let new = Arc::new(new);
        let reboot: Vec<InstanceIdx> = reboot.iter().filter_map(|r| new.instance_by_id(r)).collect();
        let (generation, swap) = self.apply(&new, &reboot).map_err(|e| AwsError::internal(format!("{e:#}")))?;
        // Flow logs follow the new model (kept by id: their intervals and flows go on).
        let flow_logs = crate::capture::flow_log::FlowLogConfig::new(&new);
        if let Err(e) = self.handle.send(Command::FlowLogs(Box::new(flow_logs))) {
            crate::log!("flow logs not updated: {e}");
        }
        self.model = new;
        self.generation = generation;
        self.write_files();
        outcome.applied = true;
        outcome.generation = generation;
        outcome.millis = start.elapsed().as_millis() as u64;
        outcome.swap_micros = swap.as_micros() as u64;
        Ok(outcome)
    }

    /// Brings the machine from the model in force to `new`; on failure before the swap, undoes
    /// every step and returns the error.
    fn apply(&mut self, new: &Arc<Model>, reboot: &[InstanceIdx]) -> anyhow::Result<(u64, Duration)> {
        let mut journal = Journal::default();
        let mut new_taps: Vec<(String, Tap)> = Vec::new();
        let prepared = self.prepare(new, reboot, &mut journal, &mut new_taps);
        let swapped = prepared.and_then(|()| self.swap(new, new_taps));
        let (retired, generation, stalled) = match swapped {
            Ok(done) => done,
            Err(e) => {
                let undo_errors = self.rollback(journal);
                if undo_errors.is_empty() {
                    return Err(e.context("the change was rolled back; the lab is as before"));
                }
                return Err(e.context(format!("rolling back also failed: {}", undo_errors.join("; "))));
            }
        };
        self.finish(new, reboot);
        drop(retired);
        Ok((generation, stalled))
    }

    /// Fails the step after the configured number, for tests of the rollback.
    fn step(&self, journal: &mut Journal) -> anyhow::Result<()> {
        if self.fail_after == Some(journal.done) {
            anyhow::bail!("injected failure at step {} (VPCLAB_FAIL_AFTER_STEPS)", journal.done + 1);
        }
        journal.done += 1;
        Ok(())
    }

    /// Everything that can be undone, in an order that keeps each step valid.
    fn prepare(
        &mut self,
        new: &Arc<Model>,
        reboot: &[InstanceIdx],
        journal: &mut Journal,
        new_taps: &mut Vec<(String, Tap)>,
    ) -> anyhow::Result<()> {
        let old = Arc::clone(&self.model);
        // New instances get their namespace.
        for i in 0..new.instances.len() {
            let inst = &new.instances[i];
            if old.instance_by_id(&inst.id).is_none() {
                self.step(journal)?;
                let ns = new.netns_name(InstanceIdx(i as u32));
                netns::create_netns(&ns).with_context(|| format!("creating namespace {ns}"))?;
                journal.undo.push(Undo::DeleteNamespace(ns.clone()));
                lab::disable_ipv6(&ns)?;
                self.lab.namespaces.push(ns);
            }
        }
        // New ENIs get their TAP, waiting in the host namespace.
        for eni in &new.enis {
            if old.eni_by_id(&eni.id).is_none() {
                self.step(journal)?;
                let temp = lab::tap_temp_name(&new.name, &eni.id);
                // One queue per forwarding worker: the k-th of an id is worker k's.
                let queues = Tap::create_queues(&temp, self.handle.workers())
                    .with_context(|| format!("creating the TAP of {}", eni.id))?;
                new_taps.extend(queues.into_iter().map(|tap| (eni.id.clone(), tap)));
            }
        }
        let rebooted = |m: &Model, at: Option<(InstanceIdx, u32)>| {
            at.is_some_and(|(i, _)| reboot.iter().any(|r| new.instances[r.index()].id == m.instances[i.index()].id))
        };
        let ns_of = |m: &Model, i: InstanceIdx| m.netns_name(i);
        // ENIs leaving their place (detached, deleted, stopped, rebooted) are lifted out to the
        // host; ENIs moving to another running instance go straight there, once every slot they
        // may take has been emptied.
        let mut transfers = Vec::new();
        for (o, eni) in old.enis.iter().enumerate() {
            let o = EniIdx(o as u32);
            let Some((inst, dev)) = placement(&old, o) else { continue };
            let ns = ns_of(&old, inst);
            let dest = new.eni_by_id(&eni.id).and_then(|n| placement(new, n).map(|(i, d)| (ns_of(new, i), d, n)));
            let is_rebooted = rebooted(&old, Some((inst, dev)));
            if dest.as_ref().is_some_and(|(n, d, _)| (n, *d) == (&ns, dev)) && !is_rebooted {
                continue;
            }
            match dest {
                Some((to_ns, _, n)) if to_ns != ns && !is_rebooted => transfers.push((o, ns, n, to_ns)),
                _ => {
                    self.step(journal)?;
                    let mut nl = Netlink::open_in(&ns)?;
                    lab::lift_eni(&old, o, &ns, &mut nl, &self.host_ns)?;
                    journal.undo.push(Undo::Place { model: Arc::clone(&old), eni: o, ns });
                }
            }
        }
        let mut transferred = Vec::new();
        for (o, from_ns, n, to_ns) in transfers {
            self.step(journal)?;
            let mut nl = Netlink::open_in(&from_ns)?;
            lab::transfer_eni(&old, o, &from_ns, &mut nl, new, n, &to_ns)?;
            journal.undo.push(Undo::Transfer {
                old: Arc::clone(&old),
                old_eni: o,
                old_ns: from_ns,
                new: Arc::clone(new),
                new_eni: n,
                new_ns: to_ns,
            });
            transferred.push(n);
        }
        // ENIs that stay put get their address changes, unless the instances configure their own
        // (`instance_network = "dhcp"`: secondary addresses are the instance's business, as on EC2).
        let dhcp = new.instance_network == crate::model::InstanceNetwork::Dhcp;
        for (n, eni) in new.enis.iter().enumerate().filter(|_| !dhcp) {
            let n = EniIdx(n as u32);
            let Some(o) = old.eni_by_id(&eni.id) else { continue };
            let (Some((inst, dev)), Some((old_inst, old_dev))) = (placement(new, n), placement(&old, o)) else {
                continue;
            };
            let ns = ns_of(new, inst);
            if ns != ns_of(&old, old_inst) || dev != old_dev || rebooted(new, Some((inst, dev))) {
                continue;
            }
            let prefix = new.subnet_of(n).cidr.prefix;
            let ifname = format!("eth{dev}");
            let before: Vec<Ipv4Addr> = old.enis[o.index()].private_ips().collect();
            let after: Vec<Ipv4Addr> = eni.private_ips().collect();
            for &ip in before.iter().filter(|ip| !after.contains(ip)) {
                self.step(journal)?;
                let mut nl = Netlink::open_in(&ns)?;
                lab::del_eni_address(&mut nl, prefix, dev, &ifname, ip)
                    .with_context(|| format!("removing {ip} from {} in {ns}", eni.id))?;
                journal.undo.push(Undo::AddAddress { ns: ns.clone(), prefix, device: dev, ip });
            }
            for &ip in after.iter().filter(|ip| !before.contains(ip)) {
                self.step(journal)?;
                let mut nl = Netlink::open_in(&ns)?;
                lab::add_eni_address(&mut nl, prefix, dev, &ifname, ip)
                    .with_context(|| format!("adding {ip} to {} in {ns}", eni.id))?;
                journal.undo.push(Undo::DelAddress { ns: ns.clone(), prefix, device: dev, ip });
            }
        }
        // ENIs arriving at a place (attached, moved, started, rebooted, new) are put there.
        for (n, eni) in new.enis.iter().enumerate() {
            let n = EniIdx(n as u32);
            let Some((inst, dev)) = placement(new, n) else { continue };
            let ns = ns_of(new, inst);
            let was = old.eni_by_id(&eni.id).and_then(|o| placement(&old, o)).map(|(i, d)| (ns_of(&old, i), d));
            if was == Some((ns.clone(), dev)) && !rebooted(new, Some((inst, dev))) {
                continue;
            }
            self.step(journal)?;
            let mut nl = Netlink::open_in(&ns)?;
            if transferred.contains(&n) {
                // Already there, bare; the transfer's undo takes it back.
                lab::configure_eni(new, n, &ns, &mut nl)?;
                continue;
            }
            lab::place_eni(new, n, &ns, &mut self.host, &mut nl)?;
            journal.undo.push(Undo::Lift { model: Arc::clone(new), eni: n, ns });
        }
        self.internet_hosts(&old, new, journal)
    }

    /// Hosts of the emulated internet come and go as addresses of its interface.
    fn internet_hosts(&mut self, old: &Model, new: &Model, journal: &mut Journal) -> anyhow::Result<()> {
        if !new.has_emulated_internet() {
            return Ok(());
        }
        let ns = new.internet_netns();
        let before: Vec<Ipv4Addr> = old.internet_hosts.iter().map(|h| h.ip).collect();
        let after: Vec<Ipv4Addr> = new.internet_hosts.iter().map(|h| h.ip).collect();
        for &ip in before.iter().filter(|ip| !after.contains(ip)) {
            self.step(journal)?;
            Netlink::open_in(&ns)?.del_address("eth0", ip, 32)?;
            journal.undo.push(Undo::AddHost { ns: ns.clone(), ip });
        }
        for &ip in after.iter().filter(|ip| !before.contains(ip)) {
            self.step(journal)?;
            Netlink::open_in(&ns)?.add_address("eth0", ip, 32)?;
            journal.undo.push(Undo::DelHost { ns: ns.clone(), ip });
        }
        Ok(())
    }

    /// Hands the freshly compiled lab to the forwarder and waits for it to take it.
    fn swap(&mut self, new: &Arc<Model>, new_taps: Vec<(String, Tap)>) -> anyhow::Result<(Vec<Tap>, u64, Duration)> {
        let pipeline = Pipeline::new(new);
        let watches = watches(&self.model, new);
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.handle
            .send(Command::Swap(Box::new(Swap { pipeline, new_taps, watches, reply })))
            .context("handing the new configuration to the forwarder")?;
        let done = answer.recv_timeout(SWAP_TIMEOUT).context("the forwarder did not take the new configuration")?;
        Ok((done.retired, done.generation, done.stalled))
    }

    /// What cannot be undone: processes of stopped, rebooted and terminated instances end, and
    /// the namespaces of terminated instances go.
    fn finish(&mut self, new: &Model, reboot: &[InstanceIdx]) {
        let old = Arc::clone(&self.model);
        for (i, inst) in old.instances.iter().enumerate() {
            let ns = old.netns_name(InstanceIdx(i as u32));
            match new.instance_by_id(&inst.id) {
                None => {
                    if let Err(e) = lab::teardown(std::slice::from_ref(&ns)) {
                        crate::log!("removing {ns}: {e:#}");
                    }
                    self.lab.namespaces.retain(|n| *n != ns);
                }
                Some(n) => {
                    let stopped = inst.state == InstanceState::Running
                        && new.instances[n.index()].state == InstanceState::Stopped;
                    if stopped || reboot.contains(&n) {
                        lab::kill_processes_in(&ns);
                    }
                }
            }
        }
    }

    /// Undoes the journal backwards; returns what could not be undone.
    fn rollback(&mut self, journal: Journal) -> Vec<String> {
        let mut errors = Vec::new();
        for undo in journal.undo.into_iter().rev() {
            if let Err(e) = self.undo(&undo) {
                errors.push(format!("{e:#}"));
            }
        }
        errors
    }

    fn undo(&mut self, undo: &Undo) -> anyhow::Result<()> {
        match undo {
            Undo::DeleteNamespace(ns) => {
                self.lab.namespaces.retain(|n| n != ns);
                lab::teardown(std::slice::from_ref(ns))
            }
            Undo::Lift { model, eni, ns } => {
                let mut nl = Netlink::open_in(ns)?;
                lab::lift_eni(model, *eni, ns, &mut nl, &self.host_ns)
            }
            Undo::Place { model, eni, ns } => {
                let mut nl = Netlink::open_in(ns)?;
                lab::place_eni(model, *eni, ns, &mut self.host, &mut nl)
            }
            Undo::Transfer { old, old_eni, old_ns, new, new_eni, new_ns } => {
                let mut nl = Netlink::open_in(new_ns)?;
                lab::transfer_eni(new, *new_eni, new_ns, &mut nl, old, *old_eni, old_ns)?;
                lab::configure_eni(old, *old_eni, old_ns, &mut Netlink::open_in(old_ns)?)
            }
            Undo::DelAddress { ns, prefix, device, ip } => {
                let mut nl = Netlink::open_in(ns)?;
                Ok(lab::del_eni_address(&mut nl, *prefix, *device, &format!("eth{device}"), *ip)?)
            }
            Undo::AddAddress { ns, prefix, device, ip } => {
                let mut nl = Netlink::open_in(ns)?;
                Ok(lab::add_eni_address(&mut nl, *prefix, *device, &format!("eth{device}"), *ip)?)
            }
            Undo::DelHost { ns, ip } => Ok(Netlink::open_in(ns)?.del_address("eth0", *ip, 32)?),
            Undo::AddHost { ns, ip } => Ok(Netlink::open_in(ns)?.add_address("eth0", *ip, 32)?),
        }
    }

    /// The record and the exported topology describe the running lab.
    fn write_files(&self) {
        let record = lab::LabRecord {
            lab: self.model.name.clone(),
            pid: std::process::id(),
            namespaces: self.lab.namespaces.clone(),
            topology: self.topology.clone(),
        };
        if let Err(e) = lab::write_record(&record) {
            crate::log!("writing the lab record: {e:#}");
        }
        let running = lab::lab_dir(&self.model.name).join("running.toml");
        if let Err(e) = fs::write(&running, self.export()) {
            crate::log!("writing {}: {e}", running.display());
        }
    }
}

/// The data-plane moments a drill's outage is read from: the first frame delivered to each ENI
/// that arrives somewhere, and the first delivery of each address (private or Elastic) to its new
/// owner.
fn watches(old: &Model, new: &Model) -> Vec<Watch> {
    let mut out = Vec::new();
    for (n, eni) in new.enis.iter().enumerate() {
        let Some((inst, dev)) = placement(new, EniIdx(n as u32)) else { continue };
        let was = old
            .eni_by_id(&eni.id)
            .and_then(|o| placement(old, o))
            .map(|(i, d)| (old.instances[i.index()].id.clone(), d));
        let now = (new.instances[inst.index()].id.clone(), dev);
        if was.as_ref() != Some(&now) {
            out.push(Watch {
                port: eni.id.clone(),
                dst_ip: None,
                label: format!("first frame delivered to {} in {} (eth{dev})", eni.id, now.0),
            });
        }
        for ip in eni.private_ips() {
            let before = old.enis.iter().find(|e| e.private_ips().any(|x| x == ip)).map(|e| e.id.as_str());
            if before.is_some_and(|b| b != eni.id) {
                out.push(Watch {
                    port: eni.id.clone(),
                    dst_ip: Some(ip),
                    label: format!("first delivery of {ip} to its new owner {}", eni.id),
                });
            }
        }
    }
    for a in &new.elastic_ips {
        let Some((e, ip)) = a.association else { continue };
        let owner = &new.enis[e.index()].id;
        let before = old
            .elastic_ips
            .iter()
            .find(|b| b.id == a.id)
            .and_then(|b| b.association)
            .map(|(e, ip)| (old.enis[e.index()].id.clone(), ip));
        if before != Some((owner.clone(), ip)) {
            out.push(Watch {
                port: owner.clone(),
                dst_ip: Some(ip),
                label: format!("first delivery of Elastic IP {} to {owner} ({ip})", a.public_ip),
            });
        }
    }
    out
}

/// A change in one line, for the timeline.
fn describe(change: &Change) -> String {
    match change {
        Change::Operation { op } => op_name(op),
        Change::File { file, .. } => format!("apply {file}"),
    }
}

/// The EC2 action an operation mirrors.
pub fn op_name(op: &Operation) -> String {
    let json = serde_json::to_value(op).unwrap_or_default();
    let kebab = json.get("action").and_then(|a| a.as_str()).unwrap_or("operation").to_string();
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}
