use std::net::Ipv4Addr;

use crossbeam_channel::Receiver;

use super::format::*;
use super::*;
use crate::capture::Seen;
use crate::model::{EniIdx, Mac, Model, NatIdx};
use crate::packet::{build, TcpFlags};
use crate::pipeline::{DropReason, Verdict};
use crate::topology;

const WEB: usize = 0; // eni-web, 10.0.1.10 (secondary 10.0.1.11)
const APP: usize = 1; // eni-app, 10.0.2.10

fn lab(flow_logs: &str) -> Model {
    let text = format!("{}\n{flow_logs}", topology::DEFAULT_TOPOLOGY);
    topology::parse(&text, "flows.toml").unwrap()
}

/// A `[[flow_log]]` table for ENI `eni-{name}`: id `fl-{name}`, file `{name}.log`; the format
/// and the interval are the defaults (AWS's version 2 fields, 600 s) where `None`.
fn eni_flow_log(name: &str, traffic_type: &str, log_format: Option<&str>, interval: Option<u32>) -> String {
    let mut table = format!(
        "\n[[flow_log]]\nid = \"fl-{name}\"\nresource = \"eni-{name}\"\ntraffic_type = \"{traffic_type}\"\n\
         destination = \"{name}.log\"\n"
    );
    if let Some(f) = log_format {
        table += &format!("log_format = \"{f}\"\n");
    }
    if let Some(i) = interval {
        table += &format!("max_aggregation_interval = {i}\n");
    }
    table
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Flow logs of `m` in a data plane whose clock says `now`, with their records' queue.
fn flow_logs(m: &Model, now: u64) -> (FlowLogs, Receiver<Msg>, Vec<String>) {
    let (tx, rx) = crossbeam_channel::bounded(64);
    let mut f = FlowLogs::default();
    f.set_sink(tx);
    let mut ports: Vec<String> = m.enis.iter().map(|e| e.id.clone()).collect();
    ports.push("internet".into());
    f.configure(FlowLogConfig::new(m), &ports, &nat_ids(m), now);
    (f, rx, ports)
}

fn nat_ids(m: &Model) -> Vec<String> {
    m.nat_gateways.iter().map(|n| n.id.clone()).collect()
}

fn lines(rx: &Receiver<Msg>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Msg::Batch(b)) = rx.try_recv() {
        out.extend(b.iter().map(Record::line));
    }
    out
}

/// The lines written so far, sorted.
fn sorted_lines(rx: &Receiver<Msg>) -> Vec<String> {
    let mut got = lines(rx);
    got.sort();
    got
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
    build::tcp(Mac([2; 6]), Mac([4; 6]), ip(src), ip(dst), sport, dport, flags, payload)
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    build::udp(Mac([2; 6]), Mac([4; 6]), ip(src), ip(dst), sport, dport, payload)
}

/// One frame read from `from` with `verdict`, the same bytes as read and as written.
fn feed(f: &mut FlowLogs, ports: &[String], from: usize, verdict: Verdict, frame: &[u8], now: u64) {
    let seen = Seen { from, verdict, input: frame, output: frame, input_len: frame.len(), nat: None, gso_size: None };
    f.record(&seen, ports.len() - 1, now);
}

const ALL_FIELDS: &str = "${version} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} \
${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${vpc-id} ${subnet-id} ${instance-id} ${tcp-flags} \
${type} ${pkt-srcaddr} ${pkt-dstaddr} ${region} ${az-id} ${sublocation-type} ${sublocation-id} \
${pkt-src-aws-service} ${pkt-dst-aws-service} ${flow-direction} ${traffic-path}";

#[test]
fn formats_parse_and_name_their_version() {
    assert_eq!(header(DEFAULT_FORMAT), "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status");
    assert_eq!(format_version(DEFAULT_FORMAT), 2);
    let f = parse_format("${version} ${vpc-id}").unwrap();
    assert_eq!(format_version(&f), 3);
    assert_eq!(format_version(&parse_format("${az-id}").unwrap()), 4);
    assert_eq!(format_version(&parse_format(ALL_FIELDS).unwrap()), 5);
    assert_eq!(parse_format(ALL_FIELDS).unwrap().len(), Field::ALL.len() - 1, "all but account-id");
    assert!(parse_format("${nope}").unwrap_err().contains("`nope` is not a flow log field"));
    assert!(parse_format("version").unwrap_err().contains("${name}"));
    assert!(parse_format("${action} ${action}").unwrap_err().contains("twice"));
    assert!(parse_format("  ").unwrap_err().contains("at least one"));
    assert!(parse_format(&"${action} ".repeat(1000)).unwrap_err().contains("at most"));
}

#[test]
fn tcp_flags_follow_aws() {
    assert_eq!(aws_tcp_flags(0x02), 2, "SYN");
    assert_eq!(aws_tcp_flags(0x12), 18, "SYN-ACK");
    assert_eq!(aws_tcp_flags(0x10), 0, "ACK alone");
    assert_eq!(aws_tcp_flags(0x18), 0, "PSH-ACK");
    assert_eq!(aws_tcp_flags(0x11), 1, "FIN-ACK");
    assert_eq!(aws_tcp_flags(0x14), 4, "RST-ACK");
}

#[test]
fn zones_give_region_and_zone_id() {
    assert_eq!(region_of("us-east-1a").as_deref(), Some("us-east-1"));
    assert_eq!(az_id_of("us-east-1a").as_deref(), Some("use1-az1"));
    assert_eq!(az_id_of("eu-west-2c").as_deref(), Some("euw2-az3"));
    assert_eq!(region_of("az-a"), None);
}

#[test]
fn a_flow_is_one_record_per_interval_with_counts_and_nodata_for_the_quiet() {
    let m = lab(r#"
[[flow_log]]
id = "fl-vpc"
resource = "vpc-main"
traffic_type = "ALL"
destination = "flows.log"
max_aggregation_interval = 60
"#);
    let t0 = 1_700_000_040; // a multiple of 60
    let (mut f, rx, ports) = flow_logs(&m, t0 + 1);
    let a = udp("10.0.1.10", "10.0.2.10", 4000, 5000, &[0; 10]);
    let b = udp("10.0.1.10", "10.0.2.10", 4000, 5000, &[0; 100]);
    feed(&mut f, &ports, WEB, Verdict::Forward(EniIdx(APP as u32)), &a, t0 + 5);
    feed(&mut f, &ports, WEB, Verdict::Forward(EniIdx(APP as u32)), &b, t0 + 9);
    f.tick(t0 + 30);
    assert!(lines(&rx).is_empty(), "nothing before the interval closes");
    f.tick(t0 + 60);
    let got = sorted_lines(&rx);
    let ip_bytes = (a.len() - 14 + b.len() - 14) as u64;
    let want_app =
        format!("2 123456789012 eni-app 10.0.1.10 10.0.2.10 4000 5000 17 2 {ip_bytes} {} {} ACCEPT OK", t0 + 5, t0 + 9);
    let want_web =
        format!("2 123456789012 eni-web 10.0.1.10 10.0.2.10 4000 5000 17 2 {ip_bytes} {} {} ACCEPT OK", t0 + 5, t0 + 9);
    assert!(got.contains(&want_app), "{got:#?}");
    assert!(got.contains(&want_web), "{got:#?}");
    let nodata = format!("2 123456789012 eni-standby - - - - - - - {t0} {} - NODATA", t0 + 60);
    assert!(got.contains(&nodata), "{got:#?}");
    // Every other ENI of the VPC had no traffic, nor had the NAT gateway's interface.
    let nat_nodata = format!("2 123456789012 eni-nat-main - - - - - - - {t0} {} - NODATA", t0 + 60);
    assert!(got.contains(&nat_nodata), "{got:#?}");
    assert_eq!(got.iter().filter(|l| l.ends_with("NODATA")).count(), m.enis.len() - 2 + 1, "{got:#?}");
    // The next interval starts empty: only NODATA.
    f.tick(t0 + 120);
    assert!(lines(&rx).iter().all(|l| l.ends_with("NODATA")));
}

#[test]
fn refused_traffic_is_reject_and_a_flow_with_both_gets_one_record_of_each() {
    let format =
        "${interface-id} ${srcaddr} ${dstport} ${packets} ${action} ${tcp-flags} ${flow-direction} ${traffic-path}";
    let (mut f, rx, ports) = flow_logs(&lab(&eni_flow_log("app", "ALL", Some(format), Some(1))), 100);
    let syn = tcp("10.0.1.10", "10.0.2.10", 40000, 22, TcpFlags::SYN, &[]);
    let to_app = EniIdx(APP as u32);
    feed(&mut f, &ports, WEB, Verdict::DropAt(DropReason::SecurityGroupIngress, to_app), &syn, 100);
    feed(&mut f, &ports, WEB, Verdict::DropAt(DropReason::SecurityGroupIngress, to_app), &syn, 100);
    feed(&mut f, &ports, WEB, Verdict::Forward(to_app), &syn, 100);
    // The answer leaves app: egress, same VPC.
    let synack = tcp("10.0.2.10", "10.0.1.10", 22, 40000, TcpFlags::SYN | TcpFlags::ACK, &[]);
    feed(&mut f, &ports, APP, Verdict::Forward(EniIdx(WEB as u32)), &synack, 100);
    // Sent by app, refused by its own group.
    let out = udp("10.0.2.10", "198.51.100.10", 5, 53, &[1]);
    feed(&mut f, &ports, APP, Verdict::Drop(DropReason::SecurityGroupEgress), &out, 100);
    // Dropped for another reason: not logged.
    feed(&mut f, &ports, APP, Verdict::Drop(DropReason::NoRoute), &udp("10.0.2.10", "8.8.8.8", 5, 6, &[]), 100);
    f.tick(101);
    let got = sorted_lines(&rx);
    assert_eq!(
        got,
        vec![
            "eni-app 10.0.1.10 22 1 ACCEPT 2 ingress -",
            "eni-app 10.0.1.10 22 2 REJECT 2 ingress -",
            "eni-app 10.0.2.10 40000 1 ACCEPT 18 egress 1",
            "eni-app 10.0.2.10 53 1 REJECT 0 egress -",
        ]
    );
}

#[test]
fn secondary_addresses_show_as_the_primary_and_pkt_fields_as_sent() {
    let format = "${version} ${srcaddr} ${dstaddr} ${pkt-srcaddr} ${pkt-dstaddr} ${flow-direction} ${vpc-id} ${subnet-id} ${instance-id} ${type} ${region} ${sublocation-id}";
    let (mut f, rx, ports) = flow_logs(&lab(&eni_flow_log("web", "ACCEPT", Some(format), Some(1))), 100);
    let out = udp("10.0.1.11", "10.0.2.10", 7, 8, &[]);
    feed(&mut f, &ports, WEB, Verdict::Forward(EniIdx(APP as u32)), &out, 100);
    let back = udp("10.0.2.10", "10.0.1.11", 8, 7, &[]);
    feed(&mut f, &ports, APP, Verdict::Forward(EniIdx(WEB as u32)), &back, 100);
    // REJECT is not kept by an ACCEPT flow log.
    feed(&mut f, &ports, APP, Verdict::DropAt(DropReason::NetworkAclIngress, EniIdx(WEB as u32)), &back, 100);
    f.tick(102);
    let got = sorted_lines(&rx);
    assert_eq!(
        got,
        vec![
            "5 10.0.1.10 10.0.2.10 10.0.1.11 10.0.2.10 egress vpc-main subnet-public web IPv4 - -",
            "5 10.0.2.10 10.0.1.10 10.0.2.10 10.0.1.11 ingress vpc-main subnet-public web IPv4 - -",
        ]
    );
}

#[test]
fn the_fabric_s_own_services_are_not_logged() {
    let (mut f, rx, ports) = flow_logs(&lab(&eni_flow_log("web", "ALL", None, Some(1))), 100);
    for dst in ["10.0.0.2", "10.0.1.1", "10.0.1.2", "169.254.169.254", "169.254.169.123"] {
        feed(&mut f, &ports, WEB, Verdict::ToInternet, &udp("10.0.1.10", dst, 5, 53, &[]), 100);
    }
    feed(&mut f, &ports, WEB, Verdict::ToInternet, &udp("10.0.1.10", "198.51.100.10", 68, 67, &[]), 100);
    f.tick(101);
    let got = lines(&rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].ends_with("NODATA"), "{got:?}");
}

#[test]
fn a_full_table_gives_skipdata_and_every_record_is_written_at_the_end() {
    let format = "${interface-id} ${srcport} ${log-status}";
    let (mut f, rx, ports) = flow_logs(&lab(&eni_flow_log("web", "ALL", Some(format), None)), 600);
    for p in 0..=MAX_FLOWS as u32 {
        let frame = udp("10.0.1.10", "198.51.100.10", (p % 60000) as u16, 1 + (p / 60000) as u16, &[]);
        feed(&mut f, &ports, WEB, Verdict::ToInternet, &frame, 601);
    }
    f.close_all(700);
    let got = lines(&rx);
    assert_eq!(got.len(), MAX_FLOWS + 1, "every flow that fitted, and one SKIPDATA");
    assert_eq!(got.iter().filter(|l| l.ends_with("SKIPDATA")).count(), 1);
    assert!(got.contains(&"eni-web - SKIPDATA".to_string()));
}

#[test]
fn a_live_change_keeps_flow_logs_by_id_and_writes_the_removed_ones() {
    let format = "${interface-id} ${packets} ${log-status}";
    let one = eni_flow_log("web", "ALL", Some(format), Some(60));
    let two = eni_flow_log("app", "ALL", Some(format), Some(60));
    let m = lab(&format!("{one}{two}"));
    let (mut f, rx, ports) = flow_logs(&m, 60);
    let frame = udp("10.0.1.10", "10.0.2.10", 1, 2, &[]);
    feed(&mut f, &ports, WEB, Verdict::Forward(EniIdx(APP as u32)), &frame, 61);
    // fl-app goes: its flow is written now; fl-web keeps counting the same flow.
    f.configure(FlowLogConfig::new(&lab(&one)), &ports, &nat_ids(&m), 62);
    assert_eq!(lines(&rx), vec!["eni-app 1 OK"]);
    feed(&mut f, &ports, WEB, Verdict::Forward(EniIdx(APP as u32)), &frame, 63);
    f.tick(120);
    assert_eq!(lines(&rx), vec!["eni-web 2 OK"]);
    // Ports reordered by a swap: coverage follows the ENI id.
    let mut moved = ports.clone();
    moved.swap(WEB, APP);
    f.rekey(&moved, &nat_ids(&m));
    assert!(f.watches(APP) && !f.watches(WEB));
    // No flow log left: inactive, and the interval in progress is written.
    f.configure(FlowLogConfig::new(&lab("")), &moved, &nat_ids(&m), 130);
    assert!(!f.is_active());
    assert_eq!(lines(&rx), vec!["eni-web - NODATA"]);
}

// A NAT gateway's interface: app (10.0.2.10) reaches example (198.51.100.7) through nat-main
// (10.0.1.100, Elastic IP 203.0.113.10), which translates app's port 40000 to its port 1024.

const NAT: NatIdx = NatIdx(0);

/// One frame that reached nat-main, read from `from` as `input` and written as `output`.
fn feed_nat(f: &mut FlowLogs, ports: &[String], from: usize, verdict: Verdict, io: (&[u8], &[u8]), now: u64) {
    let (input, output) = io;
    let seen = Seen { from, verdict, input, output, input_len: input.len(), nat: Some(NAT), gso_size: None };
    f.record(&seen, ports.len() - 1, now);
}

/// app's datagram out through nat-main and the answer back, both translated: (out as app sent
/// it, out as the internet gets it, back as the internet sent it, back as app gets it).
fn nat_round_trip() -> [Vec<u8>; 4] {
    [
        udp("10.0.2.10", "198.51.100.7", 40000, 53, &[0; 20]),
        udp("203.0.113.10", "198.51.100.7", 1024, 53, &[0; 20]),
        udp("198.51.100.7", "203.0.113.10", 53, 1024, &[0; 40]),
        udp("198.51.100.7", "10.0.2.10", 53, 40000, &[0; 40]),
    ]
}

fn feed_round_trip(f: &mut FlowLogs, ports: &[String], now: u64) {
    let [out_sent, out_translated, back_sent, back_translated] = nat_round_trip();
    let internet = ports.len() - 1;
    feed_nat(f, ports, APP, Verdict::ToInternet, (&out_sent, &out_translated), now);
    feed_nat(f, ports, internet, Verdict::Forward(EniIdx(APP as u32)), (&back_sent, &back_translated), now);
}

/// A `[[flow_log]]` of `resource` writing `name.log` every second in `format`.
fn flow_log_on(resource: &str, name: &str, format: Option<&str>) -> String {
    let format = format.map_or(String::new(), |f| format!("log_format = \"{f}\"\n"));
    format!(
        "\n[[flow_log]]\nid = \"fl-{name}\"\nresource = \"{resource}\"\ntraffic_type = \"ALL\"\n\
         destination = \"{name}.log\"\nmax_aggregation_interval = 1\n{format}"
    )
}

#[test]
fn a_nat_gateway_s_interface_logs_both_legs_both_ways_as_aws_s_example() {
    // AWS's example format, then what else the interface's records say.
    let format = "${instance-id} ${interface-id} ${srcaddr} ${dstaddr} ${pkt-srcaddr} ${pkt-dstaddr} ${srcport} \
${dstport} ${protocol} ${packets} ${action} ${flow-direction} ${traffic-path} ${vpc-id} ${subnet-id} ${log-status}";
    let m = lab(&flow_log_on("eni-nat-main", "nat", Some(format)));
    let (mut f, rx, ports) = flow_logs(&m, 100);
    assert!(f.watches_nat_gateways() && !f.watches(APP), "the NAT gateway's interface only");
    feed_round_trip(&mut f, &ports, 100);
    f.tick(101);
    let got = sorted_lines(&rx);
    let tail = "vpc-main subnet-public OK";
    assert_eq!(
        got,
        vec![
            // Back from the host: arrives at the private IP (the IGW mapped the Elastic IP)...
            format!("- eni-nat-main 10.0.1.100 10.0.2.10 198.51.100.7 10.0.2.10 53 40000 17 1 ACCEPT egress 1 {tail}"),
            // ... and leaves to the instance, the host as pkt-srcaddr.
            format!(
                "- eni-nat-main 10.0.1.100 198.51.100.7 10.0.1.100 198.51.100.7 1024 53 17 1 ACCEPT egress 2 {tail}"
            ),
            // The instance's datagram arrives: dstaddr the NAT's private IP, pkt-dstaddr the host.
            format!("- eni-nat-main 10.0.2.10 10.0.1.100 10.0.2.10 198.51.100.7 40000 53 17 1 ACCEPT ingress - {tail}"),
            format!(
                "- eni-nat-main 198.51.100.7 10.0.1.100 198.51.100.7 10.0.1.100 53 1024 17 1 ACCEPT ingress - {tail}"
            ),
        ]
    );
    assert!(!got.iter().any(|l| l.contains("203.0.113.10")), "the Elastic IP is beyond the interface");
}

#[test]
fn a_subnet_flow_log_covers_its_nat_gateway_in_the_default_format_with_nodata() {
    let m = lab(&flow_log_on("subnet-public", "public", None));
    let (mut f, rx, ports) = flow_logs(&m, 200);
    feed_round_trip(&mut f, &ports, 200);
    f.tick(201);
    let got = sorted_lines(&rx);
    let (out_bytes, back_bytes) = (20 + 8 + 20, 20 + 8 + 40);
    let rec = |fields: &str, bytes: u32| format!("2 123456789012 eni-nat-main {fields} 17 1 {bytes} 200 200 ACCEPT OK");
    assert_eq!(
        got,
        vec![
            rec("10.0.1.100 10.0.2.10 53 40000", back_bytes),
            rec("10.0.1.100 198.51.100.7 1024 53", out_bytes),
            rec("10.0.2.10 10.0.1.100 40000 53", out_bytes),
            rec("198.51.100.7 10.0.1.100 53 1024", back_bytes),
            "2 123456789012 eni-web - - - - - - - 200 201 - NODATA".to_string(),
        ]
    );
    // Quiet next second: NODATA for the NAT gateway's interface too.
    f.tick(202);
    assert!(sorted_lines(&rx).contains(&"2 123456789012 eni-nat-main - - - - - - - 201 202 - NODATA".to_string()));
}

#[test]
fn at_a_nat_gateway_only_its_subnet_acl_rejects_and_its_own_refusals_arrive_accepted() {
    let format = "${srcaddr} ${dstaddr} ${pkt-srcaddr} ${srcport} ${action} ${flow-direction}";
    let m = lab(&flow_log_on("subnet-public", "public", Some(format)));
    let (mut f, rx, ports) = flow_logs(&m, 300);
    let internet = ports.len() - 1;
    let [out_sent, out_translated, back_sent, _] = nat_round_trip();
    let unsolicited = udp("198.51.100.9", "203.0.113.10", 7, 2000, &[]);
    let drop = |r| Verdict::Drop(r);
    // Unsolicited inbound: the ACL let it in, the NAT gateway had no translation for it.
    feed_nat(&mut f, &ports, internet, drop(DropReason::NatNoMapping), (&unsolicited, &unsolicited), 300);
    // The NAT gateway's subnet ACL refused the answer on its way in.
    feed_nat(&mut f, &ports, internet, drop(DropReason::NetworkAclIngress), (&back_sent, &back_sent), 300);
    // No free port: arrived, never left.
    let other = udp("10.0.2.10", "198.51.100.8", 40001, 53, &[]);
    feed_nat(&mut f, &ports, APP, drop(DropReason::NatPortAllocation), (&other, &other), 300);
    // Its subnet ACL refused it on the way out (the ACL is checked before a port is taken).
    feed_nat(&mut f, &ports, APP, drop(DropReason::NetworkAclEgress), (&out_sent, &out_sent), 300);
    // Accepted both ways, for contrast.
    feed_nat(&mut f, &ports, APP, Verdict::ToInternet, (&out_sent, &out_translated), 300);
    // app's own table was full: the datagram never left app, nothing at the NAT gateway.
    let full = udp("10.0.2.10", "198.51.100.8", 40002, 53, &[]);
    feed_nat(&mut f, &ports, APP, Verdict::DropAt(DropReason::ConntrackFull, EniIdx(APP as u32)), (&full, &full), 300);
    f.tick(301);
    assert_eq!(
        sorted_lines(&rx),
        vec![
            "- - - - - -", // eni-web's NODATA
            "10.0.1.100 198.51.100.7 10.0.1.100 1024 ACCEPT egress",
            "10.0.1.100 198.51.100.7 10.0.1.100 40000 REJECT egress",
            "10.0.2.10 10.0.1.100 10.0.2.10 40000 ACCEPT ingress",
            "10.0.2.10 10.0.1.100 10.0.2.10 40001 ACCEPT ingress",
            "198.51.100.7 10.0.1.100 198.51.100.7 53 REJECT ingress",
            "198.51.100.9 10.0.1.100 198.51.100.9 7 ACCEPT ingress",
        ]
    );
}

#[test]
fn nat_gateway_coverage_follows_its_id_across_a_swap_and_costs_nothing_without_it() {
    let m = lab(&flow_log_on("subnet-public", "public", None));
    let (mut f, _rx, ports) = flow_logs(&m, 100);
    assert!(f.watches_nat_gateways());
    f.rekey(&ports, &["nat-new".to_string(), "nat-main".to_string()]);
    assert_eq!((f.slots(Covered::Nat(0)).len(), f.slots(Covered::Nat(1)).len()), (0, 1));
    let (f, _rx, _) = flow_logs(&lab(&eni_flow_log("web", "ALL", None, None)), 100);
    assert!(!f.watches_nat_gateways(), "an ENI's flow log leaves NAT gateways unobserved");
}

#[test]
fn a_tso_superframe_counts_as_the_wire_packets_it_becomes() {
    let format = "${interface-id} ${flow-direction} ${packets} ${bytes}";
    let (mut f, rx, ports) = flow_logs(&lab(&eni_flow_log("app", "ALL", Some(format), Some(1))), 100);
    let superframe = tcp("10.0.1.10", "10.0.2.10", 40000, 22, TcpFlags::ACK, &[7; 3000]);
    let seen = Seen {
        from: WEB,
        verdict: Verdict::Forward(EniIdx(APP as u32)),
        input: &superframe,
        output: &superframe,
        input_len: superframe.len(),
        nat: None,
        gso_size: Some(1448),
    };
    f.record(&seen, ports.len() - 1, 100);
    f.tick(101);
    // Three segments of 1448, 1448 and 104 payload bytes, each with 40 bytes of headers.
    assert_eq!(lines(&rx), vec!["eni-app ingress 3 3120".to_string()]);
}

#[test]
fn a_packet_refused_beyond_its_sender_at_the_nat_gateway_left_the_sender_accepted() {
    let format = "${interface-id} ${flow-direction} ${action}";
    let (mut f, rx, ports) = flow_logs(&lab(&eni_flow_log("app", "ALL", Some(format), Some(1))), 100);
    let [out_sent, ..] = nat_round_trip();
    // Past app's own group and subnet ACL, refused by nat-main's subnet ACL.
    feed_nat(&mut f, &ports, APP, Verdict::Drop(DropReason::NetworkAclIngress), (&out_sent, &out_sent), 100);
    // Refused by app's own subnet ACL: it never reached the NAT gateway.
    feed(&mut f, &ports, APP, Verdict::Drop(DropReason::NetworkAclEgress), &out_sent, 100);
    f.tick(101);
    assert_eq!(sorted_lines(&rx), vec!["eni-app egress ACCEPT", "eni-app egress REJECT"]);
}
