use std::borrow::Cow;
use std::time::Duration;

use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
use pcap_file::pcapng::{Block, PcapNgReader};

use super::stream::{self, Limits, Writer};
use super::*;
use crate::model::EniIdx;
use crate::pipeline::DropReason;
use crate::topology;

fn model() -> Model {
    topology::parse(topology::DEFAULT_TOPOLOGY, topology::DEFAULT_TOPOLOGY_FILE).unwrap()
}

fn targets(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

fn names(ifaces: &[Interface]) -> Vec<(&str, &str)> {
    ifaces.iter().map(|i| (i.name.as_str(), i.description.as_str())).collect()
}

#[test]
fn targets_resolve_to_interfaces_once_each() {
    let m = model();
    let i = interfaces(&m, &targets(&["app", "eni-app", "nat-main"])).unwrap();
    assert_eq!(
        names(&i),
        vec![
            ("eni-app", "app eth0"),
            ("eni-app-float", "app eth1"),
            ("nat-main", "NAT gateway 10.0.1.100 in subnet-public")
        ]
    );
    assert_eq!(i[2].point, Point::NatGateway("nat-main".into()));
    let all = interfaces(&m, &targets(&["all", "internet"])).unwrap();
    assert_eq!(all.len(), m.enis.len() + 1);
    assert_eq!(all.last().unwrap().point, Point::Port("internet".into()));
    let e = interfaces(&m, &targets(&["eni-nope"])).unwrap_err();
    assert!(e.contains("no ENI, instance or NAT gateway `eni-nope`"), "{e}");
    assert!(interfaces(&m, &[]).is_err());
}

/// A capture of `points` with room for `bytes` of blocks.
fn tap(points: &[&str], bytes: usize, drops_only: bool) -> (CaptureTap, Drain) {
    let (tx, rx) = queue(bytes, points.len());
    let points: Vec<Point> = points
        .iter()
        .map(|p| match p.strip_prefix("nat:") {
            Some(n) => Point::NatGateway(n.to_string()),
            None => Point::Port(p.to_string()),
        })
        .collect();
    let lost = Arc::new(points.iter().map(|_| AtomicU64::new(0)).collect());
    (CaptureTap { id: 1, points, snaplen: 20, drops_only, queue: tx, lost }, rx)
}

fn captures(t: CaptureTap) -> Captures {
    let mut c = Captures::default();
    c.add(t, targets(&["eni-a", "eni-b", "internet"]), targets(&["nat-x"]));
    c
}

#[test]
fn a_forwarded_frame_is_seen_leaving_one_eni_and_reaching_the_other() {
    let (t, mut rx) = tap(&["eni-a", "eni-b"], 4096, false);
    let mut c = captures(t);
    assert_eq!([c.input_snaplen(0), c.input_snaplen(1), c.input_snaplen(2)], [20, 20, 0]);
    let input = [1u8; 30];
    let output = [2u8; 30];
    let seen = Seen {
        from: 0,
        verdict: Verdict::Forward(EniIdx(1)),
        input: &input,
        output: &output,
        input_len: 30,
        nat: None,
        gso_size: None,
    };
    c.record(&seen, 2);
    let [sent, got] = <[_; 2]>::try_from(rx.decode()).expect("two records");
    assert_eq!((sent.interface, sent.outbound, sent.original_len), (0, true, 30));
    assert_eq!(sent.data, vec![1u8; 20], "the frame as read, cut to the snapshot length");
    assert_eq!(sent.comment, "forwarded to eni-b");
    assert_eq!((got.interface, got.outbound), (1, false));
    assert_eq!(got.data, vec![2u8; 20], "the frame as written");
    assert_eq!(got.comment, "delivered from eni-a");
    assert!(rx.decode().is_empty());
}

#[test]
fn a_drop_says_where_why_in_the_stage_s_words_and_its_code() {
    let (t, mut rx) = tap(&["eni-b"], 4096, true);
    let mut c = captures(t);
    // Forwarding formats no stage's words but the translations' ...
    c.observer.record(Stage::SgIngress, format_args!("drop: no rule of eni-b's security groups allows tcp 22"));
    assert_eq!(c.observer.lines().count(), 0);
    // ... a drop is explained by a trace of it, as the data plane does.
    let rec = crate::pipeline::Recorder {
        lines: vec![
            (Stage::SgEgress, "new flow allowed by sg-a".into()),
            (Stage::SgIngress, "drop: no rule of eni-b's security groups allows tcp 22".into()),
        ],
    };
    c.observer.explain(rec);
    let frame = [0u8; 10];
    let verdict = Verdict::DropAt(DropReason::SecurityGroupIngress, EniIdx(1));
    c.record(&Seen { from: 0, verdict, input: &[], output: &frame, input_len: 10, nat: None, gso_size: None }, 2);
    let r = rx.decode().remove(0);
    assert_eq!((r.interface, r.outbound), (0, false));
    assert_eq!(
        r.comment,
        "dropped at eni-b: security_group_ingress: no rule of eni-b's security groups allows tcp 22 [ENI_SG_RULES_MISMATCH]"
    );
    // --drops-only: a forwarded frame is not captured.
    c.observer.clear();
    c.record(
        &Seen {
            from: 0,
            verdict: Verdict::Forward(EniIdx(1)),
            input: &[],
            output: &frame,
            input_len: 10,
            nat: None,
            gso_size: None,
        },
        2,
    );
    assert!(rx.decode().is_empty());
}

#[test]
fn a_nat_gateway_sees_what_it_translated_with_the_rewrite() {
    let (t, mut rx) = tap(&["nat:nat-x", "internet"], 4096, false);
    let mut c = captures(t);
    c.observer.nat_gateway(NatIdx(0));
    c.observer.record(Stage::NatGateway, format_args!("nat-x: source 10.0.2.10:40000 -> 10.0.1.100:1024"));
    let frame = [0u8; 10];
    let nat = c.observer.nat();
    c.record(
        &Seen { from: 0, verdict: Verdict::ToInternet, input: &[], output: &frame, input_len: 10, nat, gso_size: None },
        2,
    );
    let mut both = rx.decode();
    both.sort_by_key(|r| r.interface);
    let (at_nat, at_internet) = (both[0].clone(), both[1].clone());
    assert_eq!((at_nat.interface, at_nat.outbound), (0, true));
    assert_eq!(at_nat.comment, "translated towards the internet; nat-x: source 10.0.2.10:40000 -> 10.0.1.100:1024");
    assert_eq!((at_internet.interface, at_internet.outbound), (1, false));
    assert_eq!(at_internet.comment, "delivered from eni-a; nat-x: source 10.0.2.10:40000 -> 10.0.1.100:1024");
}

#[test]
fn a_full_queue_loses_frames_and_counts_them_per_interface() {
    // Room for one block of this size.
    let (t, mut rx) = tap(&["eni-a", "eni-b"], 100, false);
    let lost = Arc::clone(&t.lost);
    let mut c = captures(t);
    let frame = [0u8; 10];
    for _ in 0..3 {
        c.record(
            &Seen {
                from: 0,
                verdict: Verdict::Forward(EniIdx(1)),
                input: &frame,
                output: &frame,
                input_len: 10,
                nat: None,
                gso_size: None,
            },
            2,
        );
    }
    assert_eq!(rx.decode().len(), 1);
    assert_eq!(lost[0].load(Ordering::Relaxed), 2);
    assert_eq!(lost[1].load(Ordering::Relaxed), 3);
}

#[test]
fn after_a_swap_points_follow_their_ids() {
    let (t, mut rx) = tap(&["eni-b"], 4096, false);
    let mut c = captures(t);
    c.rekey(targets(&["eni-b", "eni-a", "internet"]), Vec::new());
    let frame = [0u8; 10];
    c.record(
        &Seen {
            from: 0,
            verdict: Verdict::Drop(DropReason::SourceCheck),
            input: &frame,
            output: &frame,
            input_len: 10,
            nat: None,
            gso_size: None,
        },
        2,
    );
    let r = rx.decode().remove(0);
    assert!(r.outbound && r.comment.starts_with("dropped at eni-b: source_check"), "{r:?}");
    c.remove(1);
    assert!(c.is_empty());
}

/// A 60-byte frame record at a fixed time.
fn record(interface: u32, outbound: bool, comment: &str) -> (u32, bool, &str) {
    (interface, outbound, comment)
}

fn ifaces() -> Vec<Interface> {
    let i = |n: &str, d: &str| Interface { point: Point::Port(n.into()), name: n.into(), description: d.into() };
    vec![i("eni-a", "a eth0"), i("eni-b", "b eth0")]
}

/// Queues `records` and writes them through a capture run with `limits`; returns the file.
fn write_file(records: Vec<(u32, bool, &str)>, limits: Limits, lost: [u64; 2]) -> (Vec<u8>, stream::Totals) {
    let (mut tx, mut rx) = queue(1 << 12, 2);
    let (at, data) = (Duration::from_secs(1_700_000_000), [0xab; 60]);
    for (interface, outbound, comment) in records {
        assert!(tx.offer(&Record { interface, outbound, at, original_len: 60, data: &data, comment }));
    }
    drop(tx);
    let lost: Lost = Arc::new(lost.iter().map(|&n| AtomicU64::new(n)).collect());
    let mut out = Vec::new();
    let w = Writer::new(&mut out, &ifaces(), 1500).unwrap();
    let mut detached = false;
    let totals = stream::run(w, &mut rx, &lost, limits, || false, || detached = true).unwrap();
    assert!(detached, "the data plane is always told to stop");
    (out, totals)
}

#[test]
fn the_file_is_pcapng_with_names_directions_comments_and_statistics() {
    let records = vec![record(0, true, "forwarded to eni-b"), record(1, false, "delivered from eni-a")];
    let (file, totals) = write_file(records, Limits::default(), [0, 7]);
    assert_eq!(totals.written, vec![1, 1]);
    let mut reader = PcapNgReader::new(&file[..]).unwrap();
    let mut seen = Vec::new();
    while let Some(block) = reader.next_block() {
        seen.push(block.unwrap().into_owned());
    }
    let idb_names: Vec<String> = seen
        .iter()
        .filter_map(|b| match b {
            Block::InterfaceDescription(i) => i.options.iter().find_map(|o| match o {
                InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                _ => None,
            }),
            _ => None,
        })
        .collect();
    assert_eq!(idb_names, vec!["eni-a", "eni-b"]);
    let epbs: Vec<_> = seen
        .iter()
        .filter_map(|b| match b {
            Block::EnhancedPacket(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(epbs.len(), 2);
    assert_eq!(epbs[0].timestamp, Duration::from_secs(1_700_000_000));
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption as O;
    assert!(epbs[0].options.contains(&O::Flags(0b10)), "outbound");
    assert!(epbs[1].options.contains(&O::Flags(0b01)), "inbound");
    assert!(epbs[1].options.contains(&O::Comment(Cow::Borrowed("delivered from eni-a"))));
    let drops: Vec<u64> = seen
        .iter()
        .filter_map(|b| match b {
            Block::InterfaceStatistics(s) => s.options.iter().find_map(|o| match o {
                InterfaceStatisticsOption::IsbIfDrop(n) => Some(*n),
                _ => None,
            }),
            _ => None,
        })
        .collect();
    assert_eq!(drops, vec![0, 7], "isb_ifdrop per interface");
}

#[test]
fn a_count_ends_the_capture_even_with_frames_queued() {
    let records = (0..5).map(|_| record(0, true, "x")).collect();
    let (_, totals) = write_file(records, Limits { count: Some(3), duration: None }, [0, 0]);
    assert_eq!(totals.written, vec![3, 0]);
}
