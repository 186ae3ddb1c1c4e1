//! VPC Flow Logs on a real lab: real traffic (ping, UDP from a secondary address, a TCP connect
//! refused by a group), records checked field by field, files read back with the Python package
//! `flowlogs-reader` (installed in `.venv` by scripts/install-deps.sh), a live flow log added by
//! `apply`, and the records of a long interval written at `down`.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// eni-b1 refuses everything but ICMP and UDP 5000 from the VPC.
const GROUP: &str = r#"
[[security_group]]
id = "sg-b1"
vpc = "vpc-test"
ingress = [
  { protocol = "icmp", source = "10.0.0.0/16" },
  { protocol = "udp", ports = "5000", source = "10.0.0.0/16" },
]
"#;

const CUSTOM: &str = "${version} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} \
${bytes} ${start} ${end} ${action} ${log-status} ${vpc-id} ${subnet-id} ${instance-id} ${tcp-flags} ${type} \
${pkt-srcaddr} ${pkt-dstaddr} ${flow-direction} ${traffic-path}";

fn flow_logs(dir: &str) -> String {
    format!(
        r#"
[[flow_log]]
id = "fl-b1"
resource = "eni-b1"
traffic_type = "ALL"
destination = "{dir}/b1.log"
max_aggregation_interval = 1
account_id = "111122223333"

[[flow_log]]
id = "fl-subnet-a"
resource = "subnet-a"
traffic_type = "ALL"
destination = "{dir}/a.log"
log_format = "{CUSTOM}"
max_aggregation_interval = 1

[[flow_log]]
id = "fl-long"
resource = "eni-b1"
traffic_type = "ACCEPT"
destination = "{dir}/long.log"
max_aggregation_interval = 600
"#
    )
}

fn topology(dir: &str) -> String {
    let enis =
        TWO_SUBNETS.replace("private_ip = \"10.0.2.10\"", "private_ip = \"10.0.2.10\"\nsecurity_groups = [\"sg-b1\"]");
    format!("{enis}{GROUP}{}", flow_logs(dir))
}

/// The record lines of a flow log file (the header left out).
fn records(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().skip(1).map(|l| l.split(' ').map(str::to_string).collect()).collect()
}

/// Sum of `packets` (or any numeric column) over the records matching `keep`.
fn sum(recs: &[Vec<String>], col: usize, keep: impl Fn(&[String]) -> bool) -> u64 {
    recs.iter().filter(|r| keep(r)).map(|r| r[col].parse::<u64>().unwrap_or(0)).sum()
}

/// Reads a file with flowlogs-reader's `FlowRecord`: the header names the fields, as its S3
/// reader does; each record comes back as JSON.
fn read_with_flowlogs_reader(path: &Path) -> Vec<serde_json::Value> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(python.exists(), "run scripts/install-deps.sh: it installs flowlogs-reader in .venv");
    let script = r#"
import json, sys
from flowlogs_reader import FlowRecord
lines = open(sys.argv[1]).read().splitlines()
fields = [f.replace('-', '_') for f in lines[0].split()]
out = []
for line in lines[1:]:
    r = FlowRecord(dict(zip(fields, line.split())))
    if fields[:14] == ['version', 'account_id', 'interface_id', 'srcaddr', 'dstaddr', 'srcport', 'dstport',
                       'protocol', 'packets', 'bytes', 'start', 'end', 'action', 'log_status']:
        assert FlowRecord.from_cwl_event({'message': line}) == r
    d = r.to_dict()
    d['start'] = int(d['start'].timestamp()) if 'start' in d else None
    d['end'] = int(d['end'].timestamp()) if 'end' in d else None
    out.append(d)
print(json.dumps(out))
"#;
    let out = Command::new(python).args(["-c", script, path.to_str().unwrap()]).output().expect("python runs");
    assert!(out.status.success(), "flowlogs-reader failed: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn flow_logs_record_real_traffic_as_aws_writes_it() {
    require_root();
    let dir = format!("{}-flows", lab_name("fl"));
    let abs_dir = std::env::temp_dir().join(&dir);
    let _ = std::fs::remove_dir_all(&abs_dir);
    let lab = TestLab::up("fl", &topology(&dir));
    let (b1_log, a_log, long_log) = (abs_dir.join("b1.log"), abs_dir.join("a.log"), abs_dir.join("long.log"));

    send_traffic(&lab);
    default_format_records_b1s_side(&b1_log);
    custom_format_records_subnet_a_with_nodata(&a_log);
    flowlogs_reader_reads_both(&b1_log, &a_log);
    a_flow_log_applied_live_records_and_cannot_change_in_place(&lab, &dir, &abs_dir);
    long_interval_is_written_whole_at_down(&lab, &long_log);
    drop(lab);
    let _ = std::fs::remove_dir_all(&abs_dir);
}

/// a1 -> b1: three pings, four UDP datagrams from a1's secondary address, a TCP connect that
/// sg-b1 refuses.
fn send_traffic(lab: &TestLab) {
    // ICMP: three echoes a1 -> b1 and their replies.
    let ping = lab.exec("a1", &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.2.10"]);
    assert!(ping.status.success(), "{}", text(&ping));
    // UDP: four datagrams of 100 bytes from a1's secondary address, one flow.
    in_ns(&lab.ns("a1"), || {
        let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 11), 40500)).unwrap();
        for _ in 0..4 {
            s.send_to(&[7u8; 100], SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 10), 5000)).unwrap();
        }
    })
    .join()
    .unwrap();
    // TCP to port 22: refused by sg-b1, the SYN is retransmitted until the connect gives up.
    let refused = tcp_connect(&lab.ns("a1"), SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 10), 22), 2);
    assert!(refused.is_err(), "sg-b1 allows no TCP");
}

/// Default format, b1's side: ICMP in and out, UDP in (as delivered), the refused SYNs.
fn default_format_records_b1s_side(b1_log: &Path) {
    let b1_has_all = || {
        let r = records(b1_log);
        let icmp_in = sum(&r, 8, |x| x[7] == "1" && x[3] == "10.0.1.10" && x[12] == "ACCEPT");
        let icmp_out = sum(&r, 8, |x| x[7] == "1" && x[4] == "10.0.1.10" && x[12] == "ACCEPT");
        let udp_in = sum(&r, 8, |x| x[7] == "17" && x[6] == "5000");
        let rejected = sum(&r, 8, |x| x[7] == "6" && x[12] == "REJECT");
        icmp_in == 3 && icmp_out == 3 && udp_in == 4 && rejected >= 1
    };
    assert!(eventually(20, b1_has_all), "b1.log:\n{}", std::fs::read_to_string(b1_log).unwrap_or_default());
    let text_b1 = std::fs::read_to_string(b1_log).unwrap();
    assert_eq!(
        text_b1.lines().next().unwrap(),
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
    );
    let r = records(b1_log);
    for rec in &r {
        assert_eq!(rec.len(), 14, "{rec:?}");
        assert_eq!((rec[0].as_str(), rec[1].as_str(), rec[2].as_str()), ("2", "111122223333", "eni-b1"));
        assert!(["OK", "NODATA"].contains(&rec[13].as_str()), "{rec:?}");
    }
    let udp = r.iter().find(|x| x[7] == "17" && x[6] == "5000").unwrap();
    assert_eq!(
        &udp[3..7],
        ["10.0.1.11", "10.0.2.10", "40500", "5000"],
        "the sender's secondary, as delivered: {udp:?}"
    );
    assert_eq!(sum(&r, 9, |x| x[7] == "17" && x[6] == "5000"), 4 * 128, "bytes are IP packets: 20 + 8 + 100");
    let syn = r.iter().find(|x| x[7] == "6" && x[12] == "REJECT").unwrap();
    assert_eq!((syn[3].as_str(), syn[4].as_str(), syn[6].as_str()), ("10.0.1.10", "10.0.2.10", "22"), "{syn:?}");
    let (start, end): (u64, u64) = (syn[10].parse().unwrap(), syn[11].parse().unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(start <= end && end <= now && now - start < 120, "start {start} end {end} now {now}");
    // The group let no TCP through, either way.
    assert!(!r.iter().any(|x| x[7] == "6" && x[12] == "ACCEPT"), "{r:?}");
}

/// Custom format, subnet A: a1's side shows its primary address with the packet's own in
/// pkt-srcaddr, version 5 fields, and NODATA for the idle a2.
fn custom_format_records_subnet_a_with_nodata(a_log: &Path) {
    let a_has_all = || {
        let r = records(a_log);
        let udp = sum(&r, 7, |x| x[1] == "eni-a1" && x[6] == "17" && x[5] == "5000");
        let tcp = sum(&r, 7, |x| x[1] == "eni-a1" && x[6] == "6" && x[5] == "22");
        let nodata = r.iter().any(|x| x[1] == "eni-a2" && x[12] == "NODATA");
        udp == 4 && tcp >= 1 && nodata
    };
    assert!(eventually(20, a_has_all), "a.log:\n{}", std::fs::read_to_string(a_log).unwrap_or_default());
    let r = records(a_log);
    let udp = r.iter().find(|x| x[1] == "eni-a1" && x[6] == "17" && x[5] == "5000").unwrap();
    assert_eq!(udp[0], "5", "version: the highest among the fields");
    assert_eq!(&udp[2..5], ["10.0.1.10", "10.0.2.10", "40500"], "srcaddr is the primary: {udp:?}");
    assert_eq!(&udp[13..16], ["vpc-test", "subnet-a", "a1"]);
    assert_eq!(&udp[16..22], ["0", "IPv4", "10.0.1.11", "10.0.2.10", "egress", "1"], "{udp:?}");
    let syn = r.iter().find(|x| x[1] == "eni-a1" && x[6] == "6").unwrap();
    assert_eq!((syn[11].as_str(), syn[16].as_str()), ("ACCEPT", "2"), "the SYN left a1; tcp-flags SYN: {syn:?}");
    let nodata = r.iter().find(|x| x[1] == "eni-a2").unwrap();
    assert_eq!(&nodata[2..9], ["-", "-", "-", "-", "-", "-", "-"], "{nodata:?}");
    assert_eq!((nodata[11].as_str(), nodata[12].as_str()), ("-", "NODATA"));
    assert!(!r.iter().any(|x| x[1] == "eni-b1"), "subnet A's flow log covers subnet A only");
}

/// flowlogs-reader reads both files (a snapshot of each: NODATA lines keep coming).
fn flowlogs_reader_reads_both(b1_log: &Path, a_log: &Path) {
    let snapshot = |p: &Path| {
        let copy = p.with_extension("snapshot");
        std::fs::copy(p, &copy).unwrap();
        copy
    };
    let b1_copy = snapshot(b1_log);
    let parsed = read_with_flowlogs_reader(&b1_copy);
    assert_eq!(parsed.len(), records(&b1_copy).len());
    let rej = parsed.iter().find(|p| p["action"] == "REJECT").unwrap();
    assert_eq!((rej["dstport"].as_u64(), rej["protocol"].as_u64()), (Some(22), Some(6)), "{rej}");
    assert_eq!(rej["interface_id"], "eni-b1");
    let parsed = read_with_flowlogs_reader(&snapshot(a_log));
    let u = parsed.iter().find(|p| p["protocol"] == 17 && p["dstport"] == 5000).unwrap();
    assert_eq!((u["pkt_srcaddr"].as_str(), u["srcaddr"].as_str()), (Some("10.0.1.11"), Some("10.0.1.10")), "{u}");
    assert_eq!(
        (u["flow_direction"].as_str(), u["traffic_path"].as_u64(), u["version"].as_u64()),
        (Some("egress"), Some(1), Some(5))
    );
    assert!(parsed.iter().any(|p| p["log_status"] == "NODATA" && p["interface_id"] == "eni-a2"));
}

/// Live: a flow log added by `apply` records a2's ping; changing one in place is refused;
/// `status` and `metrics` count what it wrote.
fn a_flow_log_applied_live_records_and_cannot_change_in_place(lab: &TestLab, dir: &str, abs_dir: &Path) {
    let live = format!(
        "name = \"{}\"\n{}\n[[flow_log]]\nid = \"fl-a2\"\nresource = \"eni-a2\"\ntraffic_type = \"ACCEPT\"\ndestination = \"{dir}/a2.log\"\nmax_aggregation_interval = 1\n",
        lab.name,
        topology(dir)
    );
    let live_file = std::env::temp_dir().join(format!("{}-live.toml", lab.name));
    std::fs::write(&live_file, &live).unwrap();
    let applied = vpclab(&["apply", live_file.to_str().unwrap(), "--lab", &lab.name]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(text(&applied).contains("CreateFlowLogs fl-a2"), "{}", text(&applied));
    assert!(lab.ping("a2", "10.0.1.10").status.success());
    let a2_log = abs_dir.join("a2.log");
    let a2_pings = || sum(&records(&a2_log), 8, |x| x[7] == "1" && x[3] == "10.0.1.20") == 2;
    assert!(eventually(20, a2_pings), "a2.log:\n{}", std::fs::read_to_string(&a2_log).unwrap_or_default());
    let changed =
        live.replace("traffic_type = \"ACCEPT\"\ndestination = \"", "traffic_type = \"ALL\"\ndestination = \"");
    std::fs::write(&live_file, changed).unwrap();
    let refused = vpclab(&["apply", live_file.to_str().unwrap(), "--lab", &lab.name]);
    assert!(
        !refused.status.success() && text(&refused).contains("flow log fl-a2 cannot be changed in place"),
        "{}",
        text(&refused)
    );
    let _ = std::fs::remove_file(&live_file);

    // `status` and `metrics` count what each flow log wrote: at least the lines read above.
    let written = |id: &str| -> u64 {
        let s = lab.status();
        let f = s["flow_logs"].as_array().unwrap().iter().find(|f| f["id"] == id).cloned().expect("flow log in status");
        assert_eq!(f["dropped"].as_u64(), Some(0), "{f}");
        f["written"].as_u64().unwrap()
    };
    assert!(written("fl-a2") >= 2, "status: {}", lab.status());
    let metrics = text(&vpclab(&["metrics", "--lab", &lab.name]));
    assert!(
        metrics.lines().any(|l| l.starts_with(&format!(
            "vpclab_flow_log_records_written_total{{lab=\"{}\",flow_log=\"fl-a2\"}} ",
            lab.name
        ))),
        "{metrics}"
    );
}

/// The 600 s interval has not closed: its records are written at `down`, none lost.
fn long_interval_is_written_whole_at_down(lab: &TestLab, long_log: &Path) {
    assert!(records(long_log).is_empty(), "{:?}", records(long_log));
    let down = vpclab(&["down", &lab.name]);
    assert!(down.status.success(), "{}", text(&down));
    let r = records(long_log);
    assert_eq!(sum(&r, 8, |x| x[7] == "17" && x[6] == "5000"), 4, "{r:?}");
    assert_eq!(sum(&r, 8, |x| x[7] == "1" && x[3] == "10.0.1.10"), 3, "three echoes in: {r:?}");
    assert_eq!(sum(&r, 8, |x| x[7] == "1" && x[4] == "10.0.1.10"), 3, "three replies out: {r:?}");
    assert!(!r.iter().any(|x| x[12] == "REJECT"), "an ACCEPT flow log keeps no REJECT: {r:?}");
}

/// `vpclab ARGS...` run from `dir` (a relative `--log-destination` is taken from there).
fn vpclab_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).current_dir(dir).output().expect("vpclab runs")
}

/// The AWS CLI's refusal line, exit 254.
fn assert_refused(out: &std::process::Output, code: &str, action: &str) {
    let head = format!("An error occurred ({code}) when calling the {action} operation: ");
    assert!(
        out.status.code() == Some(254) && String::from_utf8_lossy(&out.stderr).contains(&head),
        "expected `{head}`, exit 254:\n{}",
        text(out)
    );
}

#[test]
fn flow_log_verbs_create_and_delete_flow_logs_live() {
    require_root();
    let lab = TestLab::up("flverbs", TWO_SUBNETS);
    let dir = std::env::temp_dir().join(format!("{}-flows", lab.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (a1_log, b_log) = (dir.join("a1.log"), dir.join("b.log"));
    let flow_log_ids = || -> Vec<String> {
        let s = lab.status();
        s["flow_logs"].as_array().map_or(vec![], |a| a.iter().map(|f| f["id"].as_str().unwrap().to_string()).collect())
    };
    let create = |args: &[&str]| {
        let mut all = vec!["create-flow-logs", "--lab", &lab.name, "--log-destination-type", "file"];
        all.extend_from_slice(args);
        vpclab_in(&dir, &all)
    };

    // eni-a1, every second, to a path relative to the CLI's directory; the id is generated.
    let out = create(&[
        "--resource-ids",
        "eni-a1",
        "--resource-type",
        "NetworkInterface",
        "--traffic-type",
        "ALL",
        "--log-destination",
        "a1.log",
        "--max-aggregation-interval",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = stdout.lines().find_map(|l| l.strip_prefix("FlowLogIds: ")).expect("FlowLogIds line").to_string();
    assert!(id.starts_with("fl-") && id.len() == 20, "{stdout}");
    assert!(
        stdout.contains(&format!("CreateFlowLogs {id} eni-a1 ALL -> {} every 1 s", a1_log.display())),
        "the destination is made absolute against the CLI's directory:\n{stdout}"
    );
    // subnet B, with an id of our own: the witness that records go on being written.
    let out = create(&[
        "--resource-ids",
        "subnet-b",
        "--resource-type",
        "Subnet",
        "--traffic-type",
        "ACCEPT",
        "--log-destination",
        b_log.to_str().unwrap(),
        "--max-aggregation-interval",
        "1",
        "--flow-log-id",
        "fl-witness",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("FlowLogIds: fl-witness"), "{}", text(&out));
    assert_eq!(flow_log_ids(), [id.clone(), "fl-witness".to_string()]);

    // Real traffic is recorded on both sides.
    assert!(lab.ping("a1", "10.0.2.10").status.success());
    let a1_pings = || sum(&records(&a1_log), 8, |x| x[7] == "1" && x[3] == "10.0.1.10" && x[12] == "ACCEPT") == 2;
    assert!(eventually(20, a1_pings), "a1.log:\n{}", std::fs::read_to_string(&a1_log).unwrap_or_default());
    let b1_pings = || sum(&records(&b_log), 8, |x| x[7] == "1" && x[2] == "eni-b1" && x[3] == "10.0.1.10") == 2;
    assert!(eventually(20, b1_pings), "b.log:\n{}", std::fs::read_to_string(&b_log).unwrap_or_default());

    // Refusals, each with AWS's code, leave the lab as it was.
    let export = || text(&vpclab(&["export", &lab.name]));
    let before = export();
    assert!(before.contains(&format!("id = \"{id}\"")) && before.contains(&a1_log.display().to_string()), "{before}");
    let abs = |f: &str| dir.join(f).display().to_string();
    let (x_log, b_path) = (abs("x.log"), b_log.display().to_string());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--resource-ids", "eni-nope", "--resource-type", "NetworkInterface"],
            "InvalidNetworkInterfaceID.NotFound",
        ),
        (vec!["--resource-ids", "subnet-nope", "--resource-type", "Subnet"], "InvalidSubnetID.NotFound"),
        (vec!["--resource-ids", "eni-a2", "--resource-type", "VPC"], "InvalidVpcID.NotFound"),
        (
            vec!["--resource-ids", "eni-a2", "--resource-type", "NetworkInterface", "--log-format", "${nope}"],
            "InvalidParameterValue",
        ),
        (
            vec!["--resource-ids", "eni-a2", "--resource-type", "NetworkInterface", "--flow-log-id", "fl-witness"],
            "FlowLogAlreadyExists",
        ),
    ];
    for (args, code) in &cases {
        let mut all = args.clone();
        all.extend_from_slice(&["--traffic-type", "ALL", "--log-destination", &x_log]);
        assert_refused(&create(&all), code, "CreateFlowLogs");
        assert_eq!(export(), before, "{args:?} changed the lab");
    }
    let a2 = ["--resource-ids", "eni-a2", "--resource-type", "NetworkInterface"];
    let bad_traffic = [&a2[..], &["--traffic-type", "all", "--log-destination", &x_log]].concat();
    assert_refused(&create(&bad_traffic), "InvalidParameterValue", "CreateFlowLogs");
    let same_file = [&a2[..], &["--traffic-type", "ALL", "--log-destination", &b_path]].concat();
    assert_refused(&create(&same_file), "FlowLogAlreadyExists", "CreateFlowLogs");
    let s3 = ["--resource-ids", "eni-a2", "--resource-type", "NetworkInterface", "--traffic-type", "ALL"];
    let s3 = [&s3[..], &["--log-destination-type", "s3", "--log-destination", "arn:aws:s3:::bucket"]].concat();
    let mut all = vec!["create-flow-logs", "--lab", &lab.name];
    all.extend_from_slice(&s3);
    let out = vpclab(&all);
    assert_refused(&out, "InvalidParameterValue", "CreateFlowLogs");
    assert!(text(&out).contains("use `file`"), "{}", text(&out));
    // One unknown id refuses the whole deletion: the known one stays.
    let out = vpclab(&["delete-flow-logs", "--lab", &lab.name, "--flow-log-ids", &id, "fl-nope"]);
    assert_refused(&out, "InvalidFlowLogId.NotFound", "DeleteFlowLogs");
    assert_eq!(export(), before, "refusals changed the lab");
    assert_eq!(flow_log_ids(), [id.clone(), "fl-witness".to_string()]);
    assert!(!dir.join("x.log").exists(), "a refused flow log opened its file");

    // Deleted: a1's next flow is not recorded, while the witness records it at b1.
    let out = vpclab(&["delete-flow-logs", "--lab", &lab.name, "--flow-log-ids", &id]);
    assert!(out.status.success() && text(&out).contains(&format!("DeleteFlowLogs {id}")), "{}", text(&out));
    assert_eq!(flow_log_ids(), ["fl-witness"]);
    assert!(!export().contains(&id));
    udp_send(&lab.ns("a1"), None, SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 10), 6000), &[1u8; 64]);
    let witnessed = || sum(&records(&b_log), 8, |x| x[7] == "17" && x[6] == "6000") == 1;
    assert!(eventually(20, witnessed), "b.log:\n{}", std::fs::read_to_string(&b_log).unwrap_or_default());
    let r = records(&a1_log);
    assert!(!r.iter().any(|x| x[6] == "6000"), "a deleted flow log wrote a record: {r:?}");
    assert_eq!(sum(&r, 8, |x| x[7] == "1" && x[3] == "10.0.1.10"), 2, "{r:?}");

    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A private instance `app` (10.0.2.10) behind NAT gateway `nat-test` (10.0.1.100, Elastic IP
/// 203.0.113.10) in subnet-pub, the internet host `example` (198.51.100.7), and a flow log of
/// subnet-pub in a format after AWS's NAT gateway example.
fn nat_topology(dir: &str) -> String {
    format!(
        r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-pub"
vpc = "vpc-test"
cidr = "10.0.1.0/24"
route_table = "rtb-pub"

[[subnet]]
id = "subnet-priv"
vpc = "vpc-test"
cidr = "10.0.2.0/24"
route_table = "rtb-priv"

[[internet_gateway]]
id = "igw-test"
vpc = "vpc-test"

[[elastic_ip]]
id = "eipalloc-nat"
public_ip = "203.0.113.10"

[[nat_gateway]]
id = "nat-test"
subnet = "subnet-pub"
private_ip = "10.0.1.100"
elastic_ip = "eipalloc-nat"

[[route_table]]
id = "rtb-pub"
vpc = "vpc-test"
routes = [ {{ destination = "0.0.0.0/0", target = "igw-test" }} ]

[[route_table]]
id = "rtb-priv"
vpc = "vpc-test"
routes = [ {{ destination = "0.0.0.0/0", target = "nat-test" }} ]

[[instance]]
id = "app"

[[network_interface]]
id = "eni-app"
subnet = "subnet-priv"
private_ip = "10.0.2.10"
attachment = {{ instance = "app", device_index = 0 }}

[internet]
hosts = [ {{ id = "example", ip = "198.51.100.7" }} ]

[[flow_log]]
id = "fl-pub"
resource = "subnet-pub"
traffic_type = "ALL"
destination = "{dir}/pub.log"
log_format = "{NAT_FORMAT}"
max_aggregation_interval = 1
"#
    )
}

/// AWS's example fields, then ports, counts and where the traffic went.
const NAT_FORMAT: &str = "${version} ${instance-id} ${interface-id} ${srcaddr} ${dstaddr} ${pkt-srcaddr} \
${pkt-dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${action} ${flow-direction} ${traffic-path} ${log-status}";

/// Columns of [`NAT_FORMAT`].
const INSTANCE: usize = 1;
const IFACE: usize = 2;
const PROTO: usize = 9;
const PACKETS: usize = 10;

#[test]
fn a_nat_gateway_s_interface_logs_traffic_through_it_as_aws_s_example() {
    require_root();
    let dir = format!("{}-flows", lab_name("flnat"));
    let abs_dir = std::env::temp_dir().join(&dir);
    let _ = std::fs::remove_dir_all(&abs_dir);
    let lab = TestLab::up("flnat", &nat_topology(&dir));
    let pub_log = abs_dir.join("pub.log");
    assert_eq!(lab.status()["nat_gateways"][0]["network_interface_id"], "eni-nat-test");

    // Three echoes app -> example and back; one UDP datagram from app's port 40600 and its echo.
    let ping = lab.exec("app", &["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.7"]);
    assert!(ping.status.success(), "{}", text(&ping));
    let server = udp_peer_server(&lab.ns("internet"), addr("198.51.100.7", 5300));
    let echoed = in_ns(&lab.ns("app"), || {
        let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 10), 40600)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
        s.send_to(&[9u8; 50], addr("198.51.100.7", 5300)).unwrap();
        s.recv(&mut [0u8; 100]).is_ok()
    });
    assert!(echoed.join().unwrap(), "the echo came back through the NAT gateway");
    let nat_port = server.join().unwrap().expect("example got the datagram").port().to_string();

    // The four legs of each flow, summed over intervals: (srcaddr, dstaddr, pkt-srcaddr,
    // pkt-dstaddr, direction, traffic-path).
    let legs = [
        ["10.0.2.10", "10.0.1.100", "10.0.2.10", "198.51.100.7", "ingress", "-"],
        ["10.0.1.100", "198.51.100.7", "10.0.1.100", "198.51.100.7", "egress", "2"],
        ["198.51.100.7", "10.0.1.100", "198.51.100.7", "10.0.1.100", "ingress", "-"],
        ["10.0.1.100", "10.0.2.10", "198.51.100.7", "10.0.2.10", "egress", "1"],
    ];
    let packets = |r: &[Vec<String>], proto: &str, leg: &[&str; 6]| {
        sum(r, PACKETS, |x| x[PROTO] == proto && x[3..7] == leg[..4] && x[12] == leg[4] && x[13] == leg[5])
    };
    let all_logged = || {
        let r = records(&pub_log);
        legs.iter().all(|leg| packets(&r, "1", leg) == 3 && packets(&r, "17", leg) == 1)
    };
    assert!(eventually(20, all_logged), "pub.log:\n{}", std::fs::read_to_string(&pub_log).unwrap_or_default());

    let r = records(&pub_log);
    for rec in r.iter().filter(|x| x[IFACE] == "eni-nat-test") {
        assert_eq!((rec[0].as_str(), rec[INSTANCE].as_str()), ("5", "-"), "requester-managed: {rec:?}");
        assert!(rec[11] == "ACCEPT" || rec[14] == "NODATA", "{rec:?}");
        assert!(!rec.contains(&"203.0.113.10".to_string()), "the Elastic IP is beyond the interface: {rec:?}");
    }
    assert!(r.iter().all(|x| x[IFACE] == "eni-nat-test"), "subnet-pub has no other interface: {r:?}");
    // Ports: the instance's own on its side, the NAT gateway's on the internet's.
    let udp = |leg: &[&str; 6]| r.iter().find(|x| x[PROTO] == "17" && x[3..7] == leg[..4]).unwrap().clone();
    assert_eq!(udp(&legs[0])[7..9], ["40600", "5300"]);
    assert_eq!(udp(&legs[1])[7..9], [nat_port.as_str(), "5300"]);
    assert_eq!(udp(&legs[2])[7..9], ["5300", nat_port.as_str()]);
    assert_eq!(udp(&legs[3])[7..9], ["5300", "40600"]);
    print_records_for_the_readme(&r);

    // flowlogs-reader reads them (a snapshot: NODATA lines keep coming).
    let copy = pub_log.with_extension("snapshot");
    std::fs::copy(&pub_log, &copy).unwrap();
    let parsed = read_with_flowlogs_reader(&copy);
    assert_eq!(parsed.len(), records(&copy).len());
    let out = parsed
        .iter()
        .find(|p| p["protocol"] == 17 && p["flow_direction"] == "egress" && p["dstaddr"] == "10.0.2.10")
        .expect("the answer leaving towards app");
    assert_eq!((out["srcaddr"].as_str(), out["pkt_srcaddr"].as_str()), (Some("10.0.1.100"), Some("198.51.100.7")));
    assert_eq!((out["interface_id"].as_str(), out["traffic_path"].as_u64()), (Some("eni-nat-test"), Some(1)));
    drop(lab);
    let _ = std::fs::remove_dir_all(&abs_dir);
}

/// The run's records, for the README's example (shown with `--nocapture`).
fn print_records_for_the_readme(r: &[Vec<String>]) {
    for rec in r.iter().filter(|x| x[14] == "OK") {
        println!("{}", rec.join(" "));
    }
}
