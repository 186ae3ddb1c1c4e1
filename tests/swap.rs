//! The data plane swaps a freshly compiled lab in while it runs. Real TAPs in a namespace this
//! test creates, each with a packet socket on its interface playing the instance behind it: ports
//! are removed, added and reordered, and frames keep going to the right TAP, read and written
//! under their new indexes. Needs root (CI runs as root).

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use vpclab::dataplane::tap::{Tap, VNET_HDR_LEN};
use vpclab::dataplane::{uplink, Command, Dataplane, FiredWatch, Swap, SwapDone, Watch};
use vpclab::model::{EniIdx, Model};
use vpclab::netns::{self, LinkConfig, Netlink};
use vpclab::packet::build;
use vpclab::pipeline::{DropReason, EniCounters, Pipeline};

/// The namespace holding the test's TAPs; deleted (with them) on drop.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = netns::delete_netns(&self.0);
    }
}

/// ENIs by (id, private IP, running), all in one subnet and the VPC's default group.
fn model(enis: &[(&str, &str, bool)]) -> Model {
    let mut text = "name = \"swap\"\n[[vpc]]\nid = \"vpc\"\ncidr = \"10.0.0.0/16\"\n\
                    [[subnet]]\nid = \"sub\"\nvpc = \"vpc\"\ncidr = \"10.0.1.0/24\"\n"
        .to_string();
    for (id, ip, running) in enis {
        let state = if *running { "running" } else { "stopped" };
        text += &format!(
            "[[instance]]\nid = \"i-{id}\"\nstate = \"{state}\"\n[[network_interface]]\nid = \"{id}\"\n\
             subnet = \"sub\"\nprivate_ip = \"{ip}\"\nattachment = {{ instance = \"i-{id}\", device_index = 0 }}\n"
        );
    }
    vpclab::topology::parse(&text, "swap.toml").expect("valid")
}

/// A TAP for the data plane and a packet socket on its interface (the instance's side).
fn port(ns: &str, name: &str) -> (Tap, Tap) {
    netns::run_in_netns(ns, || {
        let tap = Tap::create(name).expect("create the TAP");
        let up = LinkConfig { up: true, ..LinkConfig::default() };
        Netlink::open().unwrap().set_link(name, &up).expect("set the TAP up");
        let peer = uplink::open(name).expect("a packet socket on the TAP");
        (tap, peer)
    })
    .expect("enter the test namespace")
}

fn ip(model: &Model, id: &str) -> Ipv4Addr {
    model.enis[model.eni_by_id(id).unwrap().index()].private_ip
}

/// The instance behind `from` sends a UDP datagram carrying `tag` to `to`, in its subnet.
fn send(peer: &Tap, model: &Model, from: &str, to: &str, tag: &[u8]) {
    let (f, t) = (model.eni_by_id(from).unwrap(), model.eni_by_id(to).unwrap());
    let (fe, te) = (&model.enis[f.index()], &model.enis[t.index()]);
    let mut frame = vec![0u8; VNET_HDR_LEN];
    frame.extend(build::udp(te.mac, fe.mac, fe.private_ip, te.private_ip, 5000, 6000, tag));
    peer.send(&frame).expect("the packet socket takes the frame");
}

/// Whether the instance behind `peer` receives a frame carrying `tag` within a few seconds.
fn receives(peer: &Tap, tag: &[u8]) -> bool {
    let mut buf = vec![0u8; 70_000];
    common::eventually(5, || loop {
        match peer.recv(&mut buf) {
            Ok(n) if buf[..n].ends_with(tag) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    })
}

fn counters(handle: &vpclab::dataplane::Handle) -> Vec<EniCounters> {
    handle.ask(Duration::from_secs(5), Command::Counters).expect("counters")
}

fn swap(
    handle: &vpclab::dataplane::Handle,
    model: &Model,
    new_taps: Vec<(String, Tap)>,
    watches: Vec<Watch>,
) -> SwapDone {
    let (reply, done) = crossbeam_channel::bounded(1);
    let swap = Swap { pipeline: Pipeline::new(model), new_taps, watches, reply };
    handle.send(Command::Swap(Box::new(swap))).expect("the data plane runs");
    done.recv_timeout(Duration::from_secs(5)).expect("the swap is answered")
}

#[test]
fn ports_are_removed_added_and_reordered_while_frames_flow() {
    let ns = Namespace(format!("t{}swap", std::process::id()));
    netns::create_netns(&ns.0).expect("create the test namespace (needs root)");
    for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
        netns::set_sysctl(&ns.0, key, "1").unwrap();
    }
    let tag = std::process::id() % 100_000;
    let ((tap_a, a), (tap_b, b)) = (port(&ns.0, &format!("sw{tag}a")), port(&ns.0, &format!("sw{tag}b")));

    let m1 = model(&[("eni-a", "10.0.1.10", true), ("eni-b", "10.0.1.20", true)]);
    let (events, fired) = crossbeam_channel::unbounded::<FiredWatch>();
    let (mut dp, handle) = Dataplane::new(Pipeline::new(&m1), vec![Some(tap_a), Some(tap_b), None], events).unwrap();
    let forwarder = std::thread::spawn(move || dp.run());

    send(&a, &m1, "eni-a", "eni-b", b"one");
    assert!(receives(&b, b"one"));

    // eni-c is new and comes first; eni-a and eni-b trade places.
    let (tap_c, c) = port(&ns.0, &format!("sw{tag}c"));
    let m2 = model(&[("eni-c", "10.0.1.30", true), ("eni-b", "10.0.1.20", true), ("eni-a", "10.0.1.10", true)]);
    let watches = vec![
        Watch { port: "eni-a".into(), dst_ip: Some(ip(&m2, "eni-a")), label: "eni-a reached".into() },
        Watch { port: "eni-c".into(), dst_ip: Some(Ipv4Addr::new(192, 0, 2, 1)), label: "never".into() },
        Watch { port: "eni-gone".into(), dst_ip: None, label: "no such port".into() },
    ];
    let done = swap(&handle, &m2, vec![("eni-c".into(), tap_c)], watches);
    assert!(done.retired.is_empty(), "{:?}", done.retired);
    assert_eq!(done.generation, 1);
    // Counters followed their port.
    let c2 = counters(&handle);
    assert_eq!(c2.len(), 4);
    assert_eq!((c2[0].rx_packets, c2[0].tx_packets), (0, 0), "eni-c starts at zero");
    assert_eq!((c2[1].rx_packets, c2[1].tx_packets), (0, 1), "eni-b");
    assert_eq!((c2[2].rx_packets, c2[2].tx_packets), (1, 0), "eni-a");

    // Each TAP is read under its new index: a, moved; c, new; b, kept.
    send(&b, &m2, "eni-b", "eni-a", b"two");
    assert!(receives(&a, b"two"));
    let w = fired.recv_timeout(Duration::from_secs(5)).expect("the watch fired");
    assert_eq!(w.label, "eni-a reached");
    send(&a, &m2, "eni-a", "eni-c", b"three");
    assert!(receives(&c, b"three"));
    send(&c, &m2, "eni-c", "eni-b", b"four");
    assert!(receives(&b, b"four"));
    send(&b, &m2, "eni-b", "eni-a", b"five");
    assert!(receives(&a, b"five"));
    assert!(fired.try_recv().is_err(), "a watch fires once; the others never matched");

    // eni-c's instance stops: its TAP stays, and nothing goes to it or from it.
    let m3 = model(&[("eni-c", "10.0.1.30", false), ("eni-b", "10.0.1.20", true), ("eni-a", "10.0.1.10", true)]);
    let done = swap(&handle, &m3, Vec::new(), Vec::new());
    assert!(done.retired.is_empty());
    send(&a, &m3, "eni-a", "eni-c", b"six");
    send(&c, &m3, "eni-c", "eni-a", b"seven");
    assert!(common::eventually(5, || {
        let c3 = counters(&handle);
        c3[0].dropped(DropReason::InstanceStopped) == 2
    }));

    // Only eni-b is left; a TAP offered for it is returned unused, with the removed ones.
    let (tap_d, _d) = port(&ns.0, &format!("sw{tag}d"));
    let m4 = model(&[("eni-b", "10.0.1.20", true)]);
    let done = swap(&handle, &m4, vec![("eni-b".into(), tap_d)], Vec::new());
    let mut retired: Vec<&str> = done.retired.iter().map(|t| t.name()).collect();
    retired.sort();
    assert_eq!(retired, [format!("sw{tag}a"), format!("sw{tag}c"), format!("sw{tag}d")]);
    assert_eq!(done.generation, 3);
    let c4 = counters(&handle);
    assert_eq!(c4.len(), 2);
    assert_eq!((c4[0].rx_packets, c4[0].tx_packets), (2, 2), "eni-b's counters, at index 0 again");
    // A trace naming an ENI index the swap removed gets no answer, and the loop goes on.
    let stale = handle.ask(Duration::from_secs(5), |reply| Command::Trace {
        from: Some(EniIdx(2)),
        frame: build::udp(m4.enis[0].mac, m4.enis[0].mac, ip(&m4, "eni-b"), ip(&m4, "eni-b"), 1, 2, b"x"),
        reply,
    });
    assert!(stale.is_err());
    assert_eq!(counters(&handle).len(), 2);

    handle.send(Command::Shutdown).unwrap();
    forwarder.join().unwrap().expect("the loop ends cleanly");
    drop(done);
}
