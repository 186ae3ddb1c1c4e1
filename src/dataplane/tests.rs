//! The data plane's tests: the swap's bookkeeping, then the forwarding loop itself, run on a
//! thread over in-memory ports ([`MemPort`]) without root: frames in, frames out, counter
//! deltas asserted exactly. Conditions are waited for with a deadline, never a fixed sleep.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::model::{Mac, Model};
use crate::packet::{build, parse, L3Meta, ARP_REPLY};

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn taps_follow_their_port_id_and_leftovers_are_returned() {
    // eni-a is removed before eni-b, eni-n is inserted first, eni-c had no TAP and gets one.
    let old_ids = ids(&["eni-a", "eni-b", "eni-c", "internet"]);
    let old = vec![Some("tap-a"), Some("tap-b"), None, Some("tap-inet")];
    let new_ids = ids(&["eni-n", "eni-b", "eni-c", "internet"]);
    let new = vec![
        ("eni-n".to_string(), "tap-n"),
        ("eni-c".to_string(), "tap-c"),
        ("eni-b".to_string(), "tap-b2"), // eni-b keeps its TAP: this one is not used
        ("eni-x".to_string(), "tap-x"),  // no such port
    ];
    let r = rekey(&old_ids, old, &new_ids, new);
    assert_eq!(
        r.slots,
        vec![
            Some(("tap-n", Origin::Added)),
            Some(("tap-b", Origin::Kept(1))),
            Some(("tap-c", Origin::Added)),
            Some(("tap-inet", Origin::Kept(3))),
        ]
    );
    assert_eq!(r.gone, vec!["tap-a"]);
    assert_eq!(r.unused, vec!["tap-b2", "tap-x"]);
}

#[test]
fn a_reordered_port_changes_index_and_a_port_without_a_tap_stays_without() {
    let old_ids = ids(&["eni-a", "eni-b", "internet"]);
    let r = rekey(&old_ids, vec![Some(1), Some(2), None], &ids(&["eni-b", "eni-a", "internet"]), Vec::new());
    assert_eq!(r.slots, vec![Some((2, Origin::Kept(1))), Some((1, Origin::Kept(0))), None]);
    assert!(r.gone.is_empty() && r.unused.is_empty());
    // Everything removed: every value comes back, nothing is dropped silently.
    let r = rekey(&old_ids, vec![Some(1), Some(2), Some(3)], &ids(&["internet"]), vec![("internet".into(), 4)]);
    assert_eq!(r.slots, vec![Some((3, Origin::Kept(2)))]);
    assert_eq!((r.gone, r.unused), (vec![1, 2], vec![4]));
    // More old values than ids (cannot happen): the extra ones are returned, not lost.
    let r = rekey(&ids(&["internet"]), vec![Some(1), Some(2)], &ids(&["internet"]), Vec::new());
    assert_eq!((r.slots, r.gone), (vec![Some((1, Origin::Kept(0)))], vec![2]));
}

#[test]
fn counters_follow_their_port_id_and_new_ports_start_at_zero() {
    let mut a = EniCounters { rx_packets: 5, ..EniCounters::default() };
    a.count_drop(DropReason::NoRoute);
    let b = EniCounters { tx_packets: 7, ..EniCounters::default() };
    let inet = EniCounters { rx_bytes: 9, ..EniCounters::default() };
    let old = vec![Some(a.clone()), Some(b.clone()), Some(inet.clone())];
    let r = rekey(&ids(&["eni-a", "eni-b", "internet"]), old, &ids(&["eni-b", "eni-n", "internet"]), Vec::new());
    let counters: Vec<EniCounters> = r.slots.into_iter().map(|s| s.map(|(c, _)| c).unwrap_or_default()).collect();
    assert_eq!(counters, vec![b, EniCounters::default(), inet]);
    assert_eq!(r.gone, vec![a]);
}

// ---- The loop itself, on in-memory ports: no root, no namespace, no TAP. ----

/// Two ENIs in one subnet, one in another, one group letting UDP 53 in from the VPC; no internet.
const LAB: &str = r#"
name = "loop"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "sub-1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"

[[subnet]]
id = "sub-2"
vpc = "vpc-a"
cidr = "10.0.2.0/24"

[[security_group]]
id = "sg-dns"
vpc = "vpc-a"
ingress = [{ protocol = "udp", ports = "53", source = "10.0.0.0/16" }]

[[instance]]
id = "a"
[[instance]]
id = "b"
[[instance]]
id = "c"

[[network_interface]]
id = "eni-a"
subnet = "sub-1"
private_ip = "10.0.1.10"
security_groups = ["sg-dns"]
attachment = { instance = "a", device_index = 0 }

[[network_interface]]
id = "eni-b"
subnet = "sub-1"
private_ip = "10.0.1.20"
security_groups = ["sg-dns"]
attachment = { instance = "b", device_index = 0 }

[[network_interface]]
id = "eni-c"
subnet = "sub-2"
private_ip = "10.0.2.10"
security_groups = ["sg-dns"]
attachment = { instance = "c", device_index = 0 }
"#;

/// The same lab with `eni-n` inserted first: every other ENI's port index moves by one.
fn lab_with_new_first_eni() -> String {
    let n = "[[instance]]\nid = \"n\"\n[[network_interface]]\nid = \"eni-n\"\nsubnet = \"sub-1\"\n\
             private_ip = \"10.0.1.30\"\nsecurity_groups = [\"sg-dns\"]\n\
             attachment = { instance = \"n\", device_index = 0 }\n";
    let at = LAB.find("[[instance]]").expect("the lab has instances");
    format!("{}{n}{}", &LAB[..at], &LAB[at..])
}

/// How long a condition may take before a test fails: generous, as the machine is shared.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running loop on in-memory ports, and the instance end of each port by ENI id.
struct Rig {
    model: Model,
    peers: HashMap<String, MemPort>,
    handle: Handle<MemPort>,
    forwarder: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Rig {
    fn start(topology: &str) -> Rig {
        let model = crate::topology::parse(topology, "loop.toml").expect("the test lab is valid");
        let mut peers = HashMap::new();
        let mut ports: Vec<Option<MemPort>> = Vec::new();
        for eni in &model.enis {
            let (port, peer) = MemPort::pair(&eni.id).expect("a socket pair");
            ports.push(Some(port));
            peers.insert(eni.id.clone(), peer);
        }
        ports.push(None); // the lab has no internet
        let (events, _) = crossbeam_channel::unbounded();
        let (mut dp, handle) = Dataplane::new(Pipeline::new(&model), ports, events).expect("the data plane starts");
        let forwarder = Some(std::thread::spawn(move || dp.run()));
        Rig { model, peers, handle, forwarder }
    }

    fn index(&self, id: &str) -> usize {
        self.model.eni_by_id(id).expect("known ENI").index()
    }

    fn mac(&self, id: &str) -> Mac {
        self.model.enis[self.index(id)].mac
    }

    fn ip(&self, id: &str) -> Ipv4Addr {
        self.model.enis[self.index(id)].private_ip
    }

    /// A UDP datagram as the instance behind `from` would send it to `dst`, through `dst_mac`.
    fn udp(&self, from: &str, dst_mac: Mac, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
        build::udp(dst_mac, self.mac(from), self.ip(from), dst, 40000, dport, b"query")
    }

    /// The instance behind `from` sends `frame` (behind a zeroed virtio-net header).
    fn send(&self, from: &str, frame: &[u8]) {
        self.peers[from].send_frame(frame).expect("the socket takes the frame");
    }

    /// What the instance behind `at` receives next, virtio-net header included; fails the test
    /// if nothing comes in time.
    fn recv(&self, at: &str) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_FRAME];
        match self.peers[at].recv_timeout(&mut buf, PATIENCE) {
            Ok(Some(n)) => buf[..n].to_vec(),
            Ok(None) => panic!("nothing arrived at {at}"),
            Err(e) => panic!("reading at {at}: {e}"),
        }
    }

    /// Asserts no instance has a frame waiting. Call it once the loop is known to be done with
    /// the frames sent (a counter moved): it wrote what it was going to before counting.
    fn assert_silent(&self) {
        let mut buf = vec![0u8; MAX_FRAME];
        for (id, peer) in &self.peers {
            match Port::recv(peer, &mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("{id} got something: {other:?}"),
            }
        }
    }

    fn counters(&self) -> Vec<EniCounters> {
        self.handle.ask(PATIENCE, Command::Counters).expect("the loop answers")
    }

    /// Waits until the counters are exactly `expected` (by port index) and fails with the
    /// difference if they are not by the deadline.
    fn expect_counters(&self, expected: &[EniCounters]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self.counters();
            if now == expected {
                return;
            }
            if Instant::now() >= deadline {
                assert_eq!(now, expected, "counters by port ({:?})", self.model.enis.iter().map(|e| &e.id));
            }
            std::thread::yield_now();
        }
    }

    /// Stops the loop and returns what `run` returned.
    fn shutdown(&mut self) -> io::Result<()> {
        self.handle.send(Command::Shutdown).expect("the loop runs");
        let forwarder = self.forwarder.take().expect("the loop was started");
        let deadline = Instant::now() + PATIENCE;
        while !forwarder.is_finished() {
            assert!(Instant::now() < deadline, "run did not return after Shutdown");
            std::thread::sleep(Duration::from_millis(1));
        }
        forwarder.join().expect("the loop did not panic")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if self.forwarder.is_some() && !std::thread::panicking() {
            self.shutdown().expect("run ends cleanly");
        } else if self.forwarder.is_some() {
            // A test failed: stop the loop but do not wait on it.
            let _ = self.handle.send(Command::Shutdown);
        }
    }
}

/// Counts a frame the instance behind port `i` sent in.
fn received(c: &mut [EniCounters], i: usize, len: usize) {
    c[i].rx_packets += 1;
    c[i].rx_bytes += len as u64;
}

/// Counts a frame delivered to the instance behind port `i`.
fn delivered(c: &mut [EniCounters], i: usize, len: usize) {
    c[i].tx_packets += 1;
    c[i].tx_bytes += len as u64;
}

#[test]
fn a_frame_to_another_subnet_arrives_at_its_eni_with_the_router_as_source() {
    let rig = Rig::start(LAB);
    let (a, c) = (rig.index("eni-a"), rig.index("eni-c"));
    let router = rig.model.vpcs[0].router_mac;
    let frame = rig.udp("eni-a", router, rig.ip("eni-c"), 53);
    let mut expected = rig.counters();

    rig.send("eni-a", &frame);
    let got = rig.recv("eni-c");

    // The header is passed through; the frame is what the pipeline makes of it.
    assert_eq!(&got[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
    let out = &got[VNET_HDR_LEN..];
    assert_eq!((&out[0..6], &out[6..12]), (&rig.mac("eni-c").0[..], &router.0[..]));
    let mut reference = frame.clone();
    let verdict = Pipeline::new(&rig.model).process(Duration::ZERO, EniIdx(a as u32), &mut reference, &mut NoObserver);
    assert_eq!(verdict, Verdict::Forward(EniIdx(c as u32)));
    assert_eq!(out, &reference[..], "the loop writes what the pipeline rewrote");

    received(&mut expected, a, frame.len());
    delivered(&mut expected, c, frame.len());
    rig.expect_counters(&expected);
    rig.assert_silent();
}

#[test]
fn arp_for_the_subnet_router_is_answered_on_the_asking_port() {
    let rig = Rig::start(LAB);
    let a = rig.index("eni-a");
    let request = build::arp_request(rig.mac("eni-a"), rig.ip("eni-a"), Ipv4Addr::new(10, 0, 1, 1));
    let mut expected = rig.counters();

    rig.send("eni-a", &request);
    let got = rig.recv("eni-a");

    assert_eq!(&got[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN], "a generated frame has a zeroed header");
    let L3Meta::Arp(arp) = parse(&got[VNET_HDR_LEN..]).expect("the answer parses").l3 else {
        panic!("not ARP: {got:?}");
    };
    assert_eq!(arp.operation, ARP_REPLY);
    assert_eq!((arp.sender_mac, arp.sender_ip), (rig.model.vpcs[0].router_mac, Ipv4Addr::new(10, 0, 1, 1)));
    assert_eq!(arp.target_ip, rig.ip("eni-a"));
    assert_eq!(&got[VNET_HDR_LEN..][..6], &rig.mac("eni-a").0[..], "the answer goes to the asker");

    received(&mut expected, a, request.len());
    delivered(&mut expected, a, got.len() - VNET_HDR_LEN);
    rig.expect_counters(&expected);
    rig.assert_silent();
}

#[test]
fn dropped_frames_arrive_nowhere_and_are_counted_where_the_pipeline_says() {
    let rig = Rig::start(LAB);
    let (a, c) = (rig.index("eni-a"), rig.index("eni-c"));
    let router = rig.model.vpcs[0].router_mac;
    let mut expected = rig.counters();

    // Not a port eni-c's group lets in: refused at eni-c's ingress, counted on eni-c.
    let denied = rig.udp("eni-a", router, rig.ip("eni-c"), 54);
    rig.send("eni-a", &denied);
    received(&mut expected, a, denied.len());
    expected[c].count_drop(DropReason::SecurityGroupIngress);
    rig.expect_counters(&expected);
    rig.assert_silent();

    // A source address that is not eni-a's: refused as it enters, counted on eni-a.
    let spoofed = build::udp(router, rig.mac("eni-a"), Ipv4Addr::new(10, 0, 1, 99), rig.ip("eni-c"), 1, 53, b"x");
    rig.send("eni-a", &spoofed);
    received(&mut expected, a, spoofed.len());
    expected[a].count_drop(DropReason::SourceCheck);
    rig.expect_counters(&expected);
    rig.assert_silent();
}

#[test]
fn a_read_shorter_than_the_virtio_header_is_malformed_and_not_received() {
    let rig = Rig::start(LAB);
    let b = rig.index("eni-b");
    let mut expected = rig.counters();

    Port::send(&rig.peers["eni-b"], &[0u8; VNET_HDR_LEN - 1]).expect("the socket takes it");
    expected[b].count_drop(DropReason::Malformed);
    rig.expect_counters(&expected);
    rig.assert_silent();
}

#[test]
fn a_swap_keeps_forwarding_and_counters_follow_their_port_id() {
    let mut rig = Rig::start(LAB);
    let (a, c) = (rig.index("eni-a"), rig.index("eni-c"));
    let router = rig.model.vpcs[0].router_mac;
    let first = rig.udp("eni-a", router, rig.ip("eni-c"), 53);
    let mut before = rig.counters();
    rig.send("eni-a", &first);
    rig.recv("eni-c");
    received(&mut before, a, first.len());
    delivered(&mut before, c, first.len());
    rig.expect_counters(&before);

    // eni-n comes first: every other port moves up by one index.
    let m2 = crate::topology::parse(&lab_with_new_first_eni(), "loop.toml").expect("the new lab is valid");
    let (port_n, peer_n) = MemPort::pair("eni-n").expect("a socket pair");
    let (reply, done) = crossbeam_channel::bounded(1);
    let swap =
        Swap { pipeline: Pipeline::new(&m2), new_taps: vec![("eni-n".into(), port_n)], watches: Vec::new(), reply };
    rig.handle.send(Command::Swap(Box::new(swap))).expect("the loop runs");
    let done = done.recv_timeout(PATIENCE).expect("the swap is answered");
    assert!(done.retired.is_empty(), "every port is kept or used: {:?}", done.retired);
    assert!(done.generation > done.previous.generation(), "the swap moves the generation on");
    let m1 = std::mem::replace(&mut rig.model, m2);
    rig.peers.insert("eni-n".into(), peer_n);

    // The counters moved with their ports (the internet's slot last); eni-n starts at zero.
    let mut expected: Vec<EniCounters> = vec![EniCounters::default(); rig.model.enis.len() + 1];
    for eni in &m1.enis {
        expected[rig.index(&eni.id)] = before[m1.eni_by_id(&eni.id).expect("an old ENI").index()].clone();
    }
    expected[rig.model.enis.len()] = before[m1.enis.len()].clone();
    assert_ne!(rig.index("eni-a"), a, "the swap moved eni-a to another index");
    rig.expect_counters(&expected);

    // Frames still go where they should, read and written under the new indexes.
    let (a, c, n) = (rig.index("eni-a"), rig.index("eni-c"), rig.index("eni-n"));
    let again = rig.udp("eni-a", router, rig.ip("eni-c"), 53);
    rig.send("eni-a", &again);
    assert_eq!(&rig.recv("eni-c")[VNET_HDR_LEN..][..6], &rig.mac("eni-c").0[..]);
    let from_n = rig.udp("eni-n", rig.mac("eni-a"), rig.ip("eni-a"), 53);
    rig.send("eni-n", &from_n);
    assert_eq!(&rig.recv("eni-a")[VNET_HDR_LEN..], &from_n[..], "same subnet: the frame is unchanged");
    received(&mut expected, a, again.len());
    delivered(&mut expected, c, again.len());
    received(&mut expected, n, from_n.len());
    delivered(&mut expected, a, from_n.len());
    rig.expect_counters(&expected);
    rig.assert_silent();
}

#[test]
fn shutdown_ends_run() {
    let mut rig = Rig::start(LAB);
    rig.shutdown().expect("run returns Ok");
    assert!(rig.handle.send(Command::Shutdown).is_err(), "the loop is gone: its handle says so");
}

#[test]
fn a_port_whose_other_end_closed_is_no_longer_read_and_the_others_go_on() {
    let mut rig = Rig::start(LAB);
    let (a, b, c) = (rig.index("eni-a"), rig.index("eni-b"), rig.index("eni-c"));
    let mut expected = rig.counters();

    // The instance end of eni-b goes away: eni-b's reads fail as a TAP's whose device is gone.
    drop(rig.peers.remove("eni-b"));

    // A frame for eni-b cannot be delivered: counted on eni-b, nothing else.
    let to_b = rig.udp("eni-a", rig.mac("eni-b"), rig.ip("eni-b"), 53);
    rig.send("eni-a", &to_b);
    received(&mut expected, a, to_b.len());
    expected[b].count_drop(DropReason::TxFailed);
    rig.expect_counters(&expected);

    // The loop goes on for the others, and eni-b's dead end is not counted as frames or errors
    // over and over: it was taken out of the poll set once.
    let router = rig.model.vpcs[0].router_mac;
    let to_c = rig.udp("eni-a", router, rig.ip("eni-c"), 53);
    rig.send("eni-a", &to_c);
    rig.recv("eni-c");
    received(&mut expected, a, to_c.len());
    delivered(&mut expected, c, to_c.len());
    rig.expect_counters(&expected);
    rig.assert_silent();
}

/// Starts a capture of `eni` keeping `snaplen` bytes; returns its writer's end.
fn capture(rig: &Rig, eni: &str, snaplen: u32) -> crate::capture::Drain {
    use crate::capture::{queue, CaptureTap, Point};
    let (feed, drain) = queue(1 << 16, 1);
    let lost = std::sync::Arc::new(vec![Default::default()]);
    let points = vec![Point::Port(eni.to_string())];
    let tap = CaptureTap { id: 7, points, snaplen, drops_only: false, queue: feed, lost };
    rig.handle.send(Command::Capture(Box::new(tap))).expect("the loop runs");
    drain
}

/// The next capture record, waiting for it.
fn next_record(drain: &mut crate::capture::Drain) -> crate::capture::queue::Decoded {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(r) = drain.decode().pop() {
            return r;
        }
        assert!(Instant::now() < deadline, "no capture record came");
        std::thread::yield_now();
    }
}

#[test]
fn a_captured_drop_is_explained_in_the_stage_s_words_unless_too_large_to_trace() {
    let rig = Rig::start(LAB);
    let router = rig.model.vpcs[0].router_mac;
    let mut drain = capture(&rig, "eni-a", 64);

    let denied = rig.udp("eni-a", router, rig.ip("eni-c"), 54);
    rig.send("eni-a", &denied);
    let r = next_record(&mut drain);
    assert!(r.outbound && r.data == denied, "the frame as sent, whole: {r:?}");
    assert!(r.comment.starts_with("dropped at eni-c: security_group_ingress: no rule of"), "{}", r.comment);
    assert!(r.comment.ends_with("[ENI_SG_RULES_MISMATCH]"), "{}", r.comment);

    // Larger than a capture copies whole: named by its reason and code, without a trace.
    let payload = vec![0u8; EXPLAINED_FRAME];
    let jumbo = build::udp(router, rig.mac("eni-a"), rig.ip("eni-a"), rig.ip("eni-c"), 40000, 53, &payload);
    rig.send("eni-a", &jumbo);
    let r = next_record(&mut drain);
    assert_eq!((r.data.len(), r.original_len as usize), (64, jumbo.len()), "cut to the snapshot length");
    assert_eq!(r.comment, "dropped at eni-a: mtu_exceeded [MTU_EXCEEDED]");
}

// ---- Several workers, on in-memory multiqueue ports: each ENI has one port pair per worker. ----

/// A loop of two workers; the instance end of each ENI's queue, by ENI id then worker.
struct Crew2 {
    model: Model,
    queues: HashMap<String, Vec<MemPort>>,
    handle: Handle<MemPort>,
    threads: Vec<std::thread::JoinHandle<io::Result<()>>>,
}

impl Crew2 {
    fn start(topology: &str) -> Crew2 {
        const WORKERS: usize = 2;
        let model = crate::topology::parse(topology, "loop.toml").expect("the test lab is valid");
        let mut queues: HashMap<String, Vec<MemPort>> = HashMap::new();
        let mut by_worker: Vec<Vec<Option<MemPort>>> = (0..WORKERS).map(|_| Vec::new()).collect();
        for eni in &model.enis {
            for ports in by_worker.iter_mut() {
                let (port, peer) = MemPort::pair(&eni.id).expect("a socket pair");
                ports.push(Some(port));
                queues.entry(eni.id.clone()).or_default().push(peer);
            }
        }
        for ports in by_worker.iter_mut() {
            ports.push(None); // the lab has no internet
        }
        let (events, _) = crossbeam_channel::unbounded();
        let (planes, handle) =
            Dataplane::workers(Pipeline::new(&model), by_worker, events).expect("the data plane starts");
        let threads = planes.into_iter().map(|mut dp| std::thread::spawn(move || dp.run())).collect();
        Crew2 { model, queues, handle, threads }
    }

    fn eni(&self, id: &str) -> &crate::model::Eni {
        &self.model.enis[self.model.eni_by_id(id).expect("known ENI").index()]
    }

    /// A UDP datagram from the instance behind `from` to the one behind `to` (same subnet).
    fn udp(&self, from: &str, to: &str, sport: u16, dport: u16) -> Vec<u8> {
        let (f, t) = (self.eni(from), self.eni(to));
        build::udp(t.mac, f.mac, f.private_ip, t.private_ip, sport, dport, b"query")
    }

    /// The instance behind `from` sends `frame` into its TAP's queue `queue`.
    fn send(&self, from: &str, queue: usize, frame: &[u8]) {
        self.queues[from][queue].send_frame(frame).expect("the socket takes the frame");
    }

    /// What the instance behind `at` receives next, on whichever queue; fails if nothing comes.
    fn recv(&self, at: &str) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_FRAME];
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            for q in &self.queues[at] {
                if let Ok(Some(n)) = q.recv_timeout(&mut buf, Duration::from_millis(5)) {
                    return buf[..n].to_vec();
                }
            }
        }
        panic!("nothing arrived at {at}")
    }

    fn counters(&self) -> Vec<EniCounters> {
        self.handle.ask(PATIENCE, Command::Counters).expect("the workers answer")
    }

    /// Waits until `done` holds for the summed counters; fails with them if it does not.
    fn wait_for(&self, what: &str, done: impl Fn(&[EniCounters]) -> bool) -> Vec<EniCounters> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let c = self.counters();
            if done(&c) {
                return c;
            }
            assert!(Instant::now() < deadline, "{what}: counters {c:?}");
            std::thread::yield_now();
        }
    }
}

impl Drop for Crew2 {
    fn drop(&mut self) {
        let _ = self.handle.send(Command::Shutdown);
        if std::thread::panicking() {
            return;
        }
        for t in self.threads.drain(..) {
            t.join().expect("a worker did not panic").expect("a worker ends cleanly");
        }
    }
}

#[test]
fn a_reply_read_by_the_other_worker_is_judged_by_its_connection() {
    let crew = Crew2::start(LAB);
    let (a, b) = (crew.model.eni_by_id("eni-a").unwrap().index(), crew.model.eni_by_id("eni-b").unwrap().index());
    // a's group lets in only UDP to port 53: b's answer from port 53 to port 40000 passes only as
    // the reply of a's query. Query into queue 0, answer into queue 1: one of the two workers
    // reads a frame it does not own.
    let query = crew.udp("eni-a", "eni-b", 40000, 53);
    crew.send("eni-a", 0, &query);
    assert_eq!(&crew.recv("eni-b")[VNET_HDR_LEN..], &query[..], "the query is delivered as sent");
    let answer = crew.udp("eni-b", "eni-a", 53, 40000);
    crew.send("eni-b", 1, &answer);
    assert_eq!(&crew.recv("eni-a")[VNET_HDR_LEN..], &answer[..], "the answer is delivered: the connection is known");
    // And the other way round: a second flow's query into queue 1, its answer into queue 0.
    let query = crew.udp("eni-a", "eni-b", 40001, 53);
    crew.send("eni-a", 1, &query);
    crew.recv("eni-b");
    crew.send("eni-b", 0, &crew.udp("eni-b", "eni-a", 53, 40001));
    crew.recv("eni-a");
    // The same datagram without a query before it is refused, on either queue.
    for q in 0..2 {
        crew.send("eni-b", q, &crew.udp("eni-b", "eni-a", 53, 41000 + q as u16));
    }
    let c = crew.wait_for("two unsolicited answers refused", |c| c[a].dropped(DropReason::SecurityGroupIngress) == 2);
    assert_eq!((c[a].tx_packets, c[b].tx_packets, c[a].rx_packets, c[b].rx_packets), (2, 2, 2, 4));
    assert_eq!(c.iter().map(|c| c.dropped(DropReason::HandoffLost)).sum::<u64>(), 0);
}

#[test]
fn the_connection_limit_of_an_eni_holds_over_both_workers() {
    let lab = LAB.replace(
        "attachment = { instance = \"b\", device_index = 0 }",
        "attachment = { instance = \"b\", device_index = 0 }\nconnection_tracking = { max_connections = 3 }",
    );
    let crew = Crew2::start(&lab);
    let b = crew.model.eni_by_id("eni-b").unwrap().index();
    // Eight new flows to b, owned by both workers (four each), read from alternating queues.
    let owners = owner::Owners::new(&crew.model, 2);
    let mut flows = Vec::new();
    let mut per_owner = [0; 2];
    for sport in 20000.. {
        let frame = crew.udp("eni-a", "eni-b", sport, 53);
        let w = owners.of(&frame).expect("a UDP frame has an owner");
        if per_owner[w] < 4 {
            per_owner[w] += 1;
            flows.push(frame);
        }
        if flows.len() == 8 {
            break;
        }
    }
    for (i, frame) in flows.iter().enumerate() {
        crew.send("eni-a", i % 2, frame);
    }
    let c = crew.wait_for("eight flows judged", |c| c[b].tx_packets + c[b].dropped(DropReason::ConntrackFull) == 8);
    assert_eq!((c[b].tx_packets, c[b].dropped(DropReason::ConntrackFull)), (3, 5), "exactly the limit is admitted");
    let stats = crew.handle.ask(PATIENCE, Command::Stats).expect("the workers answer");
    assert_eq!((stats.conntrack[b].entries, stats.conntrack[b].max_entries), (3, 3));
}

/// A source port from 40000 up whose query from eni-a to eni-b (UDP 53) worker `w` owns.
fn sport_owned_by(crew: &Crew2, w: usize) -> u16 {
    let owners = owner::Owners::new(&crew.model, 2);
    (40000..).find(|&p| owners.of(&crew.udp("eni-a", "eni-b", p, 53)) == Some(w)).expect("some port hashes there")
}

#[test]
fn trace_reads_the_connection_state_of_the_flows_owner() {
    let crew = Crew2::start(LAB);
    let a = crew.model.eni_by_id("eni-a").unwrap().index();
    for w in 0..2 {
        let sport = sport_owned_by(&crew, w);
        // The query goes in on the other worker's queue: handed to `w`, which tracks it.
        crew.send("eni-a", 1 - w, &crew.udp("eni-a", "eni-b", sport, 53));
        crew.recv("eni-b");
        let answer = crew.udp("eni-b", "eni-a", 53, sport);
        let from = crew.model.eni_by_id("eni-b");
        let (verdict, _) = crew
            .handle
            .ask(PATIENCE, |reply| Command::Trace { from, frame: answer, reply })
            .expect("the owner answers");
        assert_eq!(verdict, Verdict::Forward(EniIdx(a as u32)), "the answer of a flow of worker {w} is its reply");
    }
}

#[test]
fn a_swap_reaches_both_workers_and_new_taps_give_each_its_queue() {
    let mut crew = Crew2::start(LAB);
    let m2 = crate::topology::parse(&lab_with_new_first_eni(), "loop.toml").expect("the new lab is valid");
    let (mut new_taps, mut peers) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let (port, peer) = MemPort::pair("eni-n").expect("a socket pair");
        new_taps.push(("eni-n".to_string(), port));
        peers.push(peer);
    }
    let (reply, done) = crossbeam_channel::bounded(1);
    let swap = Swap { pipeline: Pipeline::new(&m2), new_taps, watches: Vec::new(), reply };
    crew.handle.send(Command::Swap(Box::new(swap))).expect("the workers run");
    let done = done.recv_timeout(PATIENCE).expect("the swap is answered once, for both workers");
    assert!(done.retired.is_empty(), "each worker used its queue: {:?}", done.retired);
    assert_eq!(done.generation, 1);
    crew.model = m2;
    crew.queues.insert("eni-n".into(), peers);
    // Flows owned by each worker, read on each queue, under the new port indexes: eni-n's
    // queries to b, and b's answers, which eni-n's group admits only as replies.
    let owners = owner::Owners::new(&crew.model, 2);
    let mut seen = [false; 2];
    for sport in 30000..30016 {
        let q = usize::from(sport % 2);
        let query = crew.udp("eni-n", "eni-b", sport, 53);
        seen[owners.of(&query).expect("owned")] = true;
        crew.send("eni-n", q, &query);
        assert_eq!(&crew.recv("eni-b")[VNET_HDR_LEN..], &query[..]);
        crew.send("eni-b", 1 - q, &crew.udp("eni-b", "eni-n", 53, sport));
        crew.recv("eni-n");
    }
    assert_eq!(seen, [true, true], "both workers owned some of the flows");
    let n = crew.model.eni_by_id("eni-n").unwrap().index();
    let c = crew.wait_for("16 answers delivered to eni-n", |c| c[n].tx_packets == 16);
    assert_eq!(c[n].rx_packets, 16);
}

/// [`LAB`] with eni-a open to UDP from the VPC, and a's UDP to port 53 mirrored to eni-c, whose
/// group (sg-dns) lets no VXLAN in: a copy passes only as the reply of a flow c started.
fn mirror_lab() -> String {
    let lab = LAB.replace(
        "security_groups = [\"sg-dns\"]\nattachment = { instance = \"a\"",
        "security_groups = [\"sg-udp\"]\nattachment = { instance = \"a\"",
    );
    lab + r#"
[[security_group]]
id = "sg-udp"
vpc = "vpc-a"
ingress = [{ protocol = "udp", ports = "1-65535", source = "10.0.0.0/16" }]

[[traffic_mirror_target]]
id = "tmt-c"
network_interface = "eni-c"

[[traffic_mirror_filter]]
id = "tmf-dns"
egress = [
  { rule = 100, action = "accept", protocol = "udp", destination_ports = "53", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" },
]

[[traffic_mirror_session]]
id = "tms-a"
source = "eni-a"
target = "tmt-c"
filter = "tmf-dns"
session_number = 1
virtual_network_id = 9
"#
}

/// The VXLAN copy session tms-a makes of `frame` (as the data plane builds it, IP id aside).
fn copy_of(crew: &Crew2, frame: &[u8]) -> Vec<u8> {
    let (a, c) = (crew.eni("eni-a"), crew.eni("eni-c"));
    let vpc = &crew.model.vpcs[crew.model.vpc_of(crew.model.eni_by_id("eni-a").unwrap()).index()];
    let encap = crate::capture::mirror::Encap {
        source_mac: a.mac,
        router_mac: vpc.router_mac,
        source_ip: a.private_ip,
        target_ip: c.private_ip,
        vni: 9,
        packet_length: None,
    };
    let mut copy = Vec::new();
    crate::capture::mirror::encapsulate(&mut copy, &encap, frame, false, 0);
    copy
}

fn mirror_stats(crew: &Crew2) -> Vec<crate::capture::mirror::SessionStats> {
    crew.handle.ask(PATIENCE, Command::MirrorStats).expect("the workers answer")
}

#[test]
fn a_mirror_copy_is_judged_and_delivered_once_by_the_owner_of_its_own_flow() {
    let crew = Crew2::start(&mirror_lab());
    let owners = owner::Owners::new(&crew.model, 2);
    let (b, c) = (crew.model.eni_by_id("eni-b").unwrap().index(), crew.model.eni_by_id("eni-c").unwrap().index());
    // Queries from a that worker 0 owns (and reads, on queue 0) whose copies worker 1 owns.
    let mut queries = (40000..).map(|p| crew.udp("eni-a", "eni-b", p, 53)).filter(|f| {
        let copy = copy_of(&crew, f);
        owners.of(f) == Some(0) && owners.of(&copy) == Some(1)
    });
    let (first, second) = (queries.next().unwrap(), queries.next().unwrap());
    let copy = copy_of(&crew, &first);
    let outer_sport = u16::from_be_bytes([copy[34], copy[35]]);
    // c opens the VXLAN flow the first copy is the reply of (its own frame, owned by worker 1).
    let (ce, ae) = (crew.eni("eni-c"), crew.eni("eni-a"));
    let router = crew.model.vpcs[crew.model.vpc_of(crew.model.eni_by_id("eni-c").unwrap()).index()].router_mac;
    let opener = build::udp(router, ce.mac, ce.private_ip, ae.private_ip, 4789, outer_sport, b"hello");
    crew.send("eni-c", 1, &opener);
    crew.recv("eni-a");

    crew.send("eni-a", 0, &first);
    assert_eq!(&crew.recv("eni-b")[VNET_HDR_LEN..], &first[..], "the query is delivered");
    let got = crew.recv("eni-c");
    let (got, want) = (&got[VNET_HDR_LEN..], &copy[..]);
    // Routed to c (MACs rewritten); the IP identification (and so the header checksum) is the
    // worker's own count.
    assert_eq!(&got[..6], &ce.mac.0[..], "delivered to c");
    assert_eq!((&got[12..18], &got[24..], got.len()), (&want[12..18], &want[24..], want.len()), "the copy as made");
    // The second copy's flow was opened by nobody: worker 1 refuses it (a's group is not c's).
    crew.send("eni-a", 0, &second);
    crew.recv("eni-b");
    let cnt = crew.wait_for("the second copy judged", |k| k[c].dropped(DropReason::SecurityGroupIngress) == 1);
    assert_eq!((cnt[b].tx_packets, cnt[c].tx_packets), (2, 1), "each query once, one copy delivered once");
    assert_eq!(cnt.iter().map(|k| k.dropped(DropReason::HandoffLost)).sum::<u64>(), 0);
    let s = &mirror_stats(&crew)[0];
    assert_eq!((s.mirrored, s.dropped.get("security_group_ingress")), (1, Some(&1)), "both workers' counts: {s:?}");
}
