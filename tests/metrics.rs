//! Issue 9's metrics on real labs: `vpclab metrics` and `up --metrics ADDR` give every counter in
//! the OpenMetrics text format, which Prometheus' own Python parser (`prometheus_client`, in the
//! `.venv` that `scripts/install-deps.sh` makes) must accept, with values matching `vpclab status`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const EXAMPLE: &str = "198.51.100.7";
const NAT_EIP: &str = "203.0.113.10";

/// A public subnet (`web` with an Elastic IP, the NAT gateway) and a private one (`app`, whose
/// default route is the NAT gateway), and an internet host.
const TOPOLOGY: &str = r#"
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

[[elastic_ip]]
id = "eipalloc-web"
public_ip = "203.0.113.20"
network_interface = "eni-web"

[[nat_gateway]]
id = "nat-test"
subnet = "subnet-pub"
private_ip = "10.0.1.100"
elastic_ip = "eipalloc-nat"

[[route_table]]
id = "rtb-pub"
vpc = "vpc-test"
routes = [ { destination = "0.0.0.0/0", target = "igw-test" } ]

[[route_table]]
id = "rtb-priv"
vpc = "vpc-test"
routes = [ { destination = "0.0.0.0/0", target = "nat-test" } ]

[[security_group]]
id = "sg-open"
vpc = "vpc-test"
ingress = [ { protocol = "icmp", source = "0.0.0.0/0" }, { protocol = "udp", ports = "7000", source = "10.0.0.0/16" } ]

[[instance]]
id = "web"

[[instance]]
id = "app"

[[network_interface]]
id = "eni-web"
subnet = "subnet-pub"
private_ip = "10.0.1.10"
security_groups = ["sg-open"]
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-app"
subnet = "subnet-priv"
private_ip = "10.0.2.10"
security_groups = ["sg-open"]
attachment = { instance = "app", device_index = 0 }

[internet]
hosts = [ { id = "example", ip = "198.51.100.7" } ]
"#;

/// Parses OpenMetrics text with `prometheus_client.openmetrics.parser` (which refuses anything
/// that is not valid OpenMetrics, `# EOF` included) into `{"types": {family: type}, "samples":
/// [[name, labels, value], ...]}`. Fails loudly when the parser is missing.
fn parse_openmetrics(metrics: &str) -> Value {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
types, samples = {}, []
for f in text_string_to_metric_families(sys.stdin.read()):
    types[f.name] = f.type
    for s in f.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"types": types, "samples": samples}))
"#;
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is missing: scripts/install-deps.sh makes it (with prometheus_client)"
    );
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the OpenMetrics parser refused the text: {}\n{metrics}", text(&out));
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// The one sample named `name` whose labels include `labels`.
fn value(parsed: &Value, name: &str, labels: &[(&str, &str)]) -> u64 {
    let hits: Vec<&Value> = parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v))
        .collect();
    assert_eq!(hits.len(), 1, "{name} {labels:?}: {hits:?}");
    let v = hits[0][2].as_f64().unwrap();
    assert!(v >= 0.0 && v.fract() == 0.0, "{name} {labels:?} = {v}");
    v as u64
}

fn metrics_text(lab: &TestLab) -> String {
    let out = vpclab(&["metrics", "--lab", &lab.name]);
    assert!(out.status.success(), "vpclab metrics failed: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Every ENI counter of `m` lies between the same counter in `before` and `after` (status taken
/// just before and after the metrics): the two faces read the same counters.
fn assert_between(lab: &str, before: &Value, m: &Value, after: &Value) {
    let enis = |s: &Value| s["enis"].as_array().unwrap().clone();
    for (b, a) in enis(before).iter().zip(enis(after).iter()) {
        let id = a["id"].as_str().unwrap();
        let labels = |extra: (&'static str, &'static str)| [("lab", lab), ("eni", id), extra];
        for (field, name, dir) in [
            ("rx_packets", "vpclab_eni_packets_total", "rx"),
            ("tx_packets", "vpclab_eni_packets_total", "tx"),
            ("rx_bytes", "vpclab_eni_bytes_total", "rx"),
            ("tx_bytes", "vpclab_eni_bytes_total", "tx"),
        ] {
            let v = value(m, name, &labels(("direction", dir)));
            let (lo, hi) = (b[field].as_u64().unwrap(), a[field].as_u64().unwrap());
            assert!(lo <= v && v <= hi, "{id} {field}: status {lo}..{hi}, metrics {v}");
        }
        let reasons: Vec<String> = a["drops"].as_object().unwrap().keys().cloned().collect();
        for reason in &reasons {
            let v = value(m, "vpclab_eni_drops_total", &[("lab", lab), ("eni", id), ("reason", reason)]);
            let (lo, hi) = (b["drops"][reason].as_u64().unwrap_or(0), a["drops"][reason].as_u64().unwrap());
            assert!(lo <= v && v <= hi, "{id} drops {reason}: status {lo}..{hi}, metrics {v}");
        }
        // A reason status does not show (none occurred) is 0 in the metrics.
        for s in m["samples"].as_array().unwrap() {
            if s[0] == "vpclab_eni_drops_total" && s[1]["eni"] == id {
                let reason = s[1]["reason"].as_str().unwrap();
                if !reasons.iter().any(|r| r == reason) {
                    assert_eq!(s[2].as_f64().unwrap(), 0.0, "{id} {reason} not in status: {s}");
                }
            }
        }
    }
}

#[test]
fn vpclab_metrics_parses_as_openmetrics_and_matches_status() {
    let lab = TestLab::up("metrics", TOPOLOGY);
    let inet = lab.ns("internet");

    // Traffic: ping across subnets, UDP between instances, TCP, UDP and ping through the NAT
    // gateway, and an unsolicited ping from the internet to the NAT gateway's address.
    assert!(lab.ping("web", "10.0.2.10").status.success());
    let srv = udp_echo_server(&lab.ns("app"), addr("10.0.2.10", 7000), 1);
    assert_eq!(udp_roundtrip(&lab.ns("web"), None, addr("10.0.2.10", 7000), b"hello").unwrap(), b"hello");
    srv.join().unwrap();
    let tsrv = tcp_peer_server(&inet, addr(EXAMPLE, 80), 15);
    let mut s = tcp_connect(&lab.ns("app"), addr(EXAMPLE, 80), 5).expect("TCP through the NAT gateway");
    assert_eq!(echo_over(&mut s, b"through the nat").unwrap(), b"through the nat");
    let usrv = udp_peer_server(&inet, addr(EXAMPLE, 53));
    assert_eq!(udp_roundtrip(&lab.ns("app"), None, addr(EXAMPLE, 53), b"udp").unwrap(), b"udp");
    usrv.join().unwrap();
    assert!(lab.ping("app", EXAMPLE).status.success());
    assert!(!ns_pings(&inet, NAT_EIP), "the NAT gateway must not answer ping");

    let before = lab.status();
    let text = metrics_text(&lab);
    let after = lab.status();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let m = parse_openmetrics(&text);

    // Types as declared: counters (their samples end in _total) and gauges.
    for (family, kind) in [
        ("vpclab_eni_packets", "counter"),
        ("vpclab_eni_bytes", "counter"),
        ("vpclab_eni_drops", "counter"),
        ("vpclab_eni_conntrack_entries", "gauge"),
        ("vpclab_eni_conntrack_allowance_available", "gauge"),
        ("vpclab_eni_conntrack_allowance_exceeded", "counter"),
        ("vpclab_nat_gateway_active_connection_count", "gauge"),
        ("vpclab_nat_gateway_connection_attempt_count", "counter"),
        ("vpclab_nat_gateway_error_port_allocation", "counter"),
        ("vpclab_nat_gateway_bytes_out_to_destination", "counter"),
    ] {
        assert_eq!(m["types"][family], kind, "{family}: {}", m["types"]);
    }

    assert_between(&lab.name, &before, &m, &after);
    assert!(value(&m, "vpclab_eni_packets_total", &[("eni", "eni-app"), ("direction", "tx")]) > 0);
    // Kernel drops are there for running instances' TAPs, and the internet saw the refused ping.
    value(&m, "vpclab_eni_drops_total", &[("eni", "eni-web"), ("reason", "tap_queue_full")]);
    assert!(value(&m, "vpclab_eni_drops_total", &[("eni", "internet"), ("reason", "nat_no_translation")]) >= 1);

    // Connection tables: app tracks its connections; the bound is the default; available is the rest.
    let app = [("lab", lab.name.as_str()), ("eni", "eni-app"), ("instance", "app")];
    let entries = value(&m, "vpclab_eni_conntrack_entries", &app);
    let max = value(&m, "vpclab_eni_conntrack_max_entries", &app);
    assert!(entries >= 3, "TCP, UDP and ICMP through the NAT, and web's: {entries}");
    assert_eq!(max, 65536);
    assert_eq!(value(&m, "vpclab_eni_conntrack_allowance_available", &app), max - entries);
    assert_eq!(value(&m, "vpclab_eni_conntrack_allowance_exceeded_total", &app), 0);

    // The NAT gateway's CloudWatch metrics, counted for real.
    let nat = |name: &str| value(&m, &format!("vpclab_nat_gateway_{name}"), &[("nat_gateway", "nat-test")]);
    assert!(nat("connection_attempt_count_total") >= 3, "TCP, UDP, ICMP");
    assert!(nat("connection_established_count_total") >= 3, "each was answered");
    assert!(nat("connection_established_count_total") <= nat("connection_attempt_count_total"));
    assert_eq!(nat("active_connection_count"), 1, "the TCP connection, still translated");
    assert_eq!(nat("error_port_allocation_total"), 0);
    assert_eq!(nat("idle_timeout_count_total"), 0);
    assert!(nat("packets_drop_count_total") >= 1, "the unsolicited ping");
    assert!(nat("packets_out_to_destination_total") >= 5);
    assert!(nat("packets_out_to_destination_total") <= nat("packets_in_from_source_total"));
    assert!(nat("packets_out_to_source_total") >= 5);
    assert!(nat("packets_out_to_source_total") <= nat("packets_in_from_destination_total"));
    assert!(nat("bytes_out_to_destination_total") >= 60 * nat("packets_out_to_destination_total"));
    assert!(nat("bytes_in_from_destination_total") >= nat("bytes_out_to_source_total"));
    // What left through the NAT gateway is among what app sent (and reached the internet).
    let app_rx = value(&m, "vpclab_eni_packets_total", &[("eni", "eni-app"), ("direction", "rx")]);
    let inet_tx = value(&m, "vpclab_eni_packets_total", &[("eni", "internet"), ("direction", "tx")]);
    assert!(nat("packets_in_from_source_total") <= app_rx);
    assert!(nat("packets_out_to_destination_total") <= inet_tx);

    drop(s);
    tsrv.join().unwrap();
}

/// `GET path` on `addr` as HTTP/1.1 clients such as Prometheus send it (the server may keep the
/// connection open for another request): (status line, headers, the body of Content-Length bytes).
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.is_empty() || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let head = head.trim_end_matches("\r\n");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let length = headers
        .split("\r\n")
        .find_map(|h| h.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .map(|(_, v)| v.trim().parse::<usize>().unwrap())
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    (status.to_string(), headers.to_string(), String::from_utf8(body).unwrap())
}

/// A port nobody listens on now (the kernel picks it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn up_with_metrics_serves_them_over_http() {
    require_root();
    let name = lab_name("metricshttp");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&file, format!("name = \"{name}\"\n{TOPOLOGY}")).unwrap();
    // The guard first, so a half-started lab is removed too.
    let mut lab = TestLab { name, file, up_output: String::new() };
    let addr = format!("127.0.0.1:{}", free_port());
    let out = vpclab(&["up", lab.file.to_str().unwrap(), "--metrics", &addr]);
    lab.up_output = text(&out);
    assert!(out.status.success(), "vpclab up --metrics failed:\n{}", lab.up_output);

    assert!(lab.ping("web", "10.0.2.10").status.success());
    let (status, headers, body) = http_get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
    assert!(headers.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"), "{headers}");
    let served = parse_openmetrics(&body);
    let printed = parse_openmetrics(&metrics_text(&lab));
    // The same series both ways (values move with the lab's own traffic, such as ARP).
    let series = |m: &Value| {
        let mut v: Vec<String> = m["samples"].as_array().unwrap().iter().map(|s| format!("{}{}", s[0], s[1])).collect();
        v.sort();
        v
    };
    assert_eq!(series(&served), series(&printed));
    let pings = value(&served, "vpclab_eni_packets_total", &[("eni", "eni-web"), ("direction", "rx")]);
    assert!(pings >= 2, "web's pings: {pings}");
    assert!(pings <= lab.counter("eni-web", "rx_packets"), "served before status was read");
    let (status, _, _) = http_get(&addr, "/");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    let dir = std::env::var("VPCLAB_RUN_DIR").unwrap_or_else(|_| "/run/vpclab".into());
    let log = std::fs::read_to_string(format!("{dir}/{}.log", lab.name)).unwrap();
    assert!(log.contains(&format!("metrics served on http://{addr}/metrics")), "{log}");
}

#[test]
fn up_with_a_metrics_address_in_use_fails_and_leaves_nothing() {
    require_root();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let name = lab_name("metricsbusy");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&file, format!("name = \"{name}\"\n{TOPOLOGY}")).unwrap();
    let lab = TestLab { name, file, up_output: String::new() };
    let out = vpclab(&["up", lab.file.to_str().unwrap(), "--metrics", &addr]);
    assert!(!out.status.success(), "up must fail: {}", text(&out));
    assert!(text(&out).contains(&format!("--metrics {addr}")), "{}", text(&out));
    assert!(namespaces_of(&lab.name).is_empty(), "{:?}", namespaces_of(&lab.name));
}
