//! Every counter of a lab in the OpenMetrics text format (the exposition format Prometheus
//! scrapes), for `vpclab metrics` and `up --metrics ADDR`'s `http://ADDR/metrics`.
//!
//! A scrape is a snapshot: the control side asks the data plane for its port counters and its
//! pipeline's table sizes and NAT gateway counters (two commands over the usual channel; the
//! packet path takes no lock and allocates nothing for metrics, it only bumps integers), joins
//! them with the model in a [`LabStatus`] — the very structure `vpclab status` prints, kernel
//! drops of the TAPs included — and [`render`]s text. The same numbers reach `status` and
//! `metrics`, so the two agree.
//!
//! Names: `vpclab_` and snake_case; per ENI the labels `lab`, `eni`, `instance` (empty for an
//! ENI attached nowhere), `direction` (`rx`: what the fabric received from the instance, `tx`:
//! what it delivered to it, as in `status`) and `reason` (a drop reason of `status`); the
//! connection-table families carry the names EC2's ENA driver uses
//! (`conntrack_allowance_available`, `conntrack_allowance_exceeded`); per NAT gateway the
//! CloudWatch metric names of `AWS/NATGateway` in snake_case, each HELP naming the CloudWatch
//! metric. Counters end in `_total`; the text ends with `# EOF`.
//!
//! The text is written by the `prometheus-client` crate: the snapshot is registered as a
//! [`Collector`] (the crate's way of exporting values read ad hoc on each scrape rather than
//! metric objects updated in place) and encoded with its OpenMetrics text encoder, which writes
//! the descriptors, appends `_total` to counter samples, escapes label values and ends with
//! `# EOF`. Family names are passed without `_total` and without a unit, so the names are the
//! ones listed above. The crate writes HELP text as given, so no HELP holds a backslash, double
//! quote or line feed. The tests check the output with Prometheus' own Python parser.
//!
//! The HTTP face ([`serve_http`]) is synchronous (no async runtime) and bounded: one connection
//! at a time on its own thread, by [`crate::http`]: a request head of at most 8 KiB read within
//! [`REQUEST_DEADLINE`], parsed by the `httparse` crate (hyper's request parser), one answer with
//! a `Content-Length`, and the connection closed. (`tiny_http` was tried: it sets no bound on a
//! request head's size or the time taken to send it, its issue #56.)

use std::fmt;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::change::live::LiveLab;
use crate::control::{self, LabStatus, KERNEL_INSTANCE_DROPPED, KERNEL_QUEUE_FULL};
use crate::dataplane::{Command, Handle};
use crate::http;
use crate::model::Model;
use crate::nat::NatCounters;
use crate::pipeline::{DropReason, PipelineStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of OpenMetrics text, version 1.0.0.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a client has to send its request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// How long the data plane has to answer a snapshot request.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes a snapshot of `model`'s running lab through `handle` and renders it.
pub fn collect(model: &Model, handle: &Handle) -> io::Result<String> {
    let status = control::status_of(model, handle)?;
    let stats = handle.ask(ASK_TIMEOUT, Command::Stats)?;
    render(status, stats).map_err(|_| io::Error::other("encoding the metrics failed"))
}

/// The snapshot of a live lab, taken under its lock like any control request (so the model and
/// the counters are of one generation).
pub fn collect_live(live: &Mutex<LiveLab>) -> io::Result<String> {
    let live = live.lock().unwrap_or_else(|p| p.into_inner());
    let model = live.model();
    let handle = live.handle().clone();
    collect(&model, &handle)
}

/// A lab's snapshot, taken on the control side before anything is encoded: `status` as
/// `vpclab status` has it and the pipeline's `stats` of the same generation. Registered as a
/// `prometheus-client` [`Collector`], it writes its families when the registry is encoded.
#[derive(Debug)]
struct Snapshot {
    status: LabStatus,
    stats: PipelineStats,
}

/// Writes one family: its descriptor (`name` as given: the crate appends `_total` to a counter's
/// samples itself), then one sample per (labels, value).
fn family<'l>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    kind: MetricType,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'l str, &'l str)>, u64)>,
) -> fmt::Result {
    // The crate escapes label values but writes HELP as given: keep it free of what would need
    // escaping there (backslash, double quote, line feed).
    debug_assert!(!help.contains(['\\', '"', '\n']), "{name}: HELP needs escaping");
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let sample = metric.encode_family(&labels)?;
        if kind == MetricType::Counter {
            ConstCounter::new(value).encode(sample)?;
        } else {
            ConstGauge::new(value).encode(sample)?;
        }
    }
    Ok(())
}

/// The NAT gateway families: (name after `vpclab_nat_gateway_`, CloudWatch name, kind, what it
/// counts, the counter).
type NatFamily = (&'static str, &'static str, MetricType, &'static str, fn(&NatCounters) -> u64);

const NAT_FAMILIES: &[NatFamily] = &[
    (
        "active_connection_count",
        "ActiveConnectionCount",
        MetricType::Gauge,
        "TCP connections the NAT gateway translates now",
        |c| c.active_tcp_connections,
    ),
    (
        "connection_attempt_count",
        "ConnectionAttemptCount",
        MetricType::Counter,
        "new connections asked of the NAT gateway (translated or refused for want of a port)",
        |c| c.connection_attempts,
    ),
    (
        "connection_established_count",
        "ConnectionEstablishedCount",
        MetricType::Counter,
        "connections the destination answered (for TCP its SYN-ACK)",
        |c| c.connections_established,
    ),
    (
        "error_port_allocation",
        "ErrorPortAllocation",
        MetricType::Counter,
        "new connections refused because no source port was free for their destination",
        |c| c.port_allocation_errors,
    ),
    (
        "idle_timeout_count",
        "IdleTimeoutCount",
        MetricType::Counter,
        "translations ended after 350 s without packets",
        |c| c.idle_timeouts,
    ),
    (
        "packets_drop_count",
        "PacketsDropCount",
        MetricType::Counter,
        "packets the NAT gateway refused (protocol, fragment, no port, timed-out connection, unsolicited)",
        |c| c.packets_dropped,
    ),
    (
        "packets_in_from_source",
        "PacketsInFromSource",
        MetricType::Counter,
        "packets received from instances in the VPC",
        |c| c.packets_in_from_source,
    ),
    (
        "bytes_in_from_source",
        "BytesInFromSource",
        MetricType::Counter,
        "bytes (Ethernet frames) received from instances in the VPC",
        |c| c.bytes_in_from_source,
    ),
    (
        "packets_out_to_destination",
        "PacketsOutToDestination",
        MetricType::Counter,
        "packets translated and sent towards the destination",
        |c| c.packets_out_to_destination,
    ),
    (
        "bytes_out_to_destination",
        "BytesOutToDestination",
        MetricType::Counter,
        "bytes (Ethernet frames) translated and sent towards the destination",
        |c| c.bytes_out_to_destination,
    ),
    (
        "packets_in_from_destination",
        "PacketsInFromDestination",
        MetricType::Counter,
        "packets received from destinations (to the NAT gateway's address)",
        |c| c.packets_in_from_destination,
    ),
    (
        "bytes_in_from_destination",
        "BytesInFromDestination",
        MetricType::Counter,
        "bytes (Ethernet frames) received from destinations",
        |c| c.bytes_in_from_destination,
    ),
    (
        "packets_out_to_source",
        "PacketsOutToSource",
        MetricType::Counter,
        "packets translated back and delivered to instances",
        |c| c.packets_out_to_source,
    ),
    (
        "bytes_out_to_source",
        "BytesOutToSource",
        MetricType::Counter,
        "bytes (Ethernet frames) translated back and delivered to instances",
        |c| c.bytes_out_to_source,
    ),
];

/// Renders a lab's snapshot in the OpenMetrics text format: `status` as `vpclab status` has it
/// (ENIs in model order, then the internet or uplink port; NAT gateways in model order) and the
/// pipeline's `stats` of the same generation, through a `prometheus-client` registry holding
/// the snapshot as its one collector.
pub fn render(status: LabStatus, stats: PipelineStats) -> Result<String, fmt::Error> {
    let capacity = 4096 + status.enis.len() * 4096;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot { status, stats }));
    let mut text = String::with_capacity(capacity);
    encode(&mut text, &registry)?;
    Ok(text)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let (status, stats) = (&self.status, &self.stats);
        let lab = status.lab.as_str();

        for (name, help, rx, tx) in [
            (
                "vpclab_eni_packets",
                "Frames through the ENI (a TSO superframe counts once); direction rx: received by the fabric from \
                 the instance, tx: delivered by the fabric to the instance (as in vpclab status)",
                (|e: &control::EniStatus| e.rx_packets) as fn(&control::EniStatus) -> u64,
                (|e: &control::EniStatus| e.tx_packets) as fn(&control::EniStatus) -> u64,
            ),
            (
                "vpclab_eni_bytes",
                "Bytes of those frames (Ethernet header included, virtio-net header not); direction as for \
                 vpclab_eni_packets",
                |e: &control::EniStatus| e.rx_bytes,
                |e: &control::EniStatus| e.tx_bytes,
            ),
        ] {
            let samples = status.enis.iter().flat_map(|e| {
                [
                    (eni_labels(lab, e, Some(("direction", "rx"))), rx(e)),
                    (eni_labels(lab, e, Some(("direction", "tx"))), tx(e)),
                ]
            });
            family(&mut encoder, name, MetricType::Counter, help, samples)?;
        }

        let drops = status.enis.iter().flat_map(|e| {
            let count = |reason: &str| e.drops.get(reason).copied().unwrap_or(0);
            // The kernel's counters are read only for a TAP inside a running instance.
            let kernel: &[&str] = if e.instance_state.as_deref() == Some("running") {
                &[KERNEL_QUEUE_FULL, KERNEL_INSTANCE_DROPPED]
            } else {
                &[]
            };
            let reasons = DropReason::ALL.iter().map(|r| r.name()).chain(kernel.iter().copied());
            reasons.map(move |r| (eni_labels(lab, e, Some(("reason", r))), count(r)))
        });
        family(
            &mut encoder,
            "vpclab_eni_drops",
            MetricType::Counter,
            "Frames dropped, by reason (the reasons of vpclab status and trace); tap_queue_full: sent by the \
             instance but lost in its TAP's full queue, instance_kernel_dropped: delivered but dropped by the \
             instance's own stack (both read from the kernel, for ENIs of running instances)",
            drops,
        )?;

        // Connection tables exist for ENIs only (not the internet's port), in model order.
        let tables = || status.enis.iter().zip(&stats.conntrack);
        family(
            &mut encoder,
            "vpclab_eni_conntrack_entries",
            MetricType::Gauge,
            "Connections in the ENI's connection table (both directions of a connection are one entry)",
            tables().map(|(e, t)| (eni_labels(lab, e, None), t.entries)),
        )?;
        family(
            &mut encoder,
            "vpclab_eni_conntrack_max_entries",
            MetricType::Gauge,
            "The ENI's connection-table bound (connection_tracking.max_connections)",
            tables().map(|(e, t)| (eni_labels(lab, e, None), t.max_entries)),
        )?;
        family(
            &mut encoder,
            "vpclab_eni_conntrack_allowance_available",
            MetricType::Gauge,
            "Tracked connections the ENI can still establish before reaching its bound (ENA's \
             conntrack_allowance_available)",
            tables().map(|(e, t)| (eni_labels(lab, e, None), t.max_entries.saturating_sub(t.entries))),
        )?;
        family(
            &mut encoder,
            "vpclab_eni_conntrack_allowance_exceeded",
            MetricType::Counter,
            "Packets dropped because the ENI's connection table was full (ENA's conntrack_allowance_exceeded; \
             also vpclab_eni_drops_total with reason conntrack_allowance_exceeded)",
            tables().map(|(e, _)| {
                (eni_labels(lab, e, None), e.drops.get(DropReason::ConntrackFull.name()).copied().unwrap_or(0))
            }),
        )?;

        for &(suffix, aws, kind, what, get) in NAT_FAMILIES {
            let samples = status
                .nat_gateways
                .iter()
                .zip(&stats.nat_gateways)
                .map(|(nat, c)| (vec![("lab", lab), ("nat_gateway", nat.id.as_str())], get(c)));
            let (name, help) =
                (format!("vpclab_nat_gateway_{suffix}"), format!("CloudWatch AWS/NATGateway {aws}: {what}"));
            family(&mut encoder, &name, kind, &help, samples)?;
        }
        let per_log = |get: fn(&crate::capture::flow_log::FlowLogStats) -> u64| {
            status.flow_logs.iter().map(move |f| (vec![("lab", lab), ("flow_log", f.id.as_str())], get(f)))
        };
        let help = "flow log records written to the flow log's file";
        family(&mut encoder, "vpclab_flow_log_records_written", MetricType::Counter, help, per_log(|f| f.written))?;
        let help = "flow log records lost (the writer's queue was full, or the file could not be written)";
        family(&mut encoder, "vpclab_flow_log_records_dropped", MetricType::Counter, help, per_log(|f| f.dropped))?;
        Ok(())
    }
}

/// The labels of an ENI's sample: `lab`, `eni`, `instance`, then `extra` if any.
fn eni_labels<'a>(
    lab: &'a str,
    e: &'a control::EniStatus,
    extra: Option<(&'a str, &'a str)>,
) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("lab", lab), ("eni", e.id.as_str()), ("instance", instance(e))];
    labels.extend(extra);
    labels
}

/// The `instance` label of an ENI's samples: its instance, or empty when it is attached nowhere.
fn instance(e: &control::EniStatus) -> &str {
    e.instance.as_deref().unwrap_or("")
}

/// Serves `GET /metrics` on `listener` for the life of the forwarder, one connection at a time.
pub fn serve_http(listener: TcpListener, live: Arc<Mutex<LiveLab>>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        answer_http(conn, || collect_live(&live).map_err(|e| e.to_string()));
    }
}

/// Reads one request (see [`crate::http`]; a metrics request has no body) and answers it: `GET`
/// or `HEAD` of `/metrics` (a query string is ignored) with the snapshot `metrics` renders (503
/// with the reason when there is none), 405 for another method there, 404 elsewhere, and the
/// reader's answer (400, 413, 431) to what could not be read. The connection is closed after.
pub fn answer_http(mut conn: TcpStream, metrics: impl FnOnce() -> Result<String, String>) {
    let req = match http::read_request(&mut conn, 0, REQUEST_DEADLINE) {
        Ok(req) => req,
        Err(e) => {
            if let Some(status) = e.status() {
                http::respond(&mut conn, status, "", "", false);
            }
            return;
        }
    };
    let path = req.target.split('?').next().unwrap_or("");
    let head_only = req.method == "HEAD";
    let plain = "text/plain; charset=utf-8";
    match (req.method.as_str(), path) {
        ("GET" | "HEAD", "/metrics") => match metrics() {
            Ok(text) => http::respond(&mut conn, "200 OK", CONTENT_TYPE, &text, head_only),
            Err(e) => http::respond(&mut conn, "503 Service Unavailable", plain, &e, head_only),
        },
        (_, "/metrics") => {
            http::respond(&mut conn, "405 Method Not Allowed\r\nAllow: GET, HEAD", plain, "GET only\n", false)
        }
        _ => http::respond(&mut conn, "404 Not Found", plain, "not found: try /metrics\n", head_only),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{EniStatus, NatStatus};
    use crate::pipeline::TableSize;
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn eni(id: &str, instance: Option<&str>, state: Option<&str>) -> EniStatus {
        EniStatus {
            id: id.into(),
            instance: instance.map(Into::into),
            instance_state: state.map(Into::into),
            interface: instance.map(|_| "eth0".into()),
            mac: "02:00:00:00:00:01".into(),
            ips: vec![],
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: BTreeMap::new(),
        }
    }

    fn sample() -> (LabStatus, PipelineStats) {
        let mut web = eni("eni-web", Some("web"), Some("running"));
        (web.rx_packets, web.rx_bytes, web.tx_packets, web.tx_bytes) = (5, 500, 7, 700);
        web.drops.insert("security_group_ingress".into(), 3);
        web.drops.insert(KERNEL_QUEUE_FULL.into(), 2);
        web.drops.insert("conntrack_allowance_exceeded".into(), 4);
        let spare = eni("eni-spare", None, None);
        let mut internet = eni("internet", Some("internet"), None);
        internet.rx_packets = 9;
        let status = LabStatus {
            lab: "demo".into(),
            pid: 1,
            enis: vec![web, spare, internet],
            routes: vec![],
            nat_gateways: vec![NatStatus {
                id: "nat-main".into(),
                subnet: "subnet-public".into(),
                network_interface_id: "eni-nat-main".into(),
                private_ip: "10.0.1.100".parse().unwrap(),
                elastic_ip: None,
                ports: "1024-65535".into(),
            }],
            traffic_mirror_sessions: vec![],
            flow_logs: vec![crate::capture::flow_log::FlowLogStats { id: "fl-web".into(), written: 12, dropped: 1 }],
        };
        let stats = PipelineStats {
            conntrack: vec![TableSize { entries: 3, max_entries: 10 }, TableSize { entries: 0, max_entries: 65536 }],
            nat_gateways: vec![NatCounters {
                connection_attempts: 6,
                connections_established: 5,
                port_allocation_errors: 1,
                active_tcp_connections: 2,
                bytes_out_to_destination: 1234,
                ..NatCounters::default()
            }],
        };
        (status, stats)
    }

    fn line_of<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix}\n{text}"))
    }

    #[test]
    fn every_counter_is_rendered_with_its_labels_and_value() {
        let (status, stats) = sample();
        let text = render(status, stats).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let l = r#"lab="demo",eni="eni-web",instance="web""#;
        for (prefix, value) in [
            (format!(r#"vpclab_eni_packets_total{{{l},direction="rx"}}"#), 5),
            (format!(r#"vpclab_eni_packets_total{{{l},direction="tx"}}"#), 7),
            (format!(r#"vpclab_eni_bytes_total{{{l},direction="rx"}}"#), 500),
            (format!(r#"vpclab_eni_bytes_total{{{l},direction="tx"}}"#), 700),
            (format!(r#"vpclab_eni_drops_total{{{l},reason="security_group_ingress"}}"#), 3),
            (format!(r#"vpclab_eni_drops_total{{{l},reason="tap_queue_full"}}"#), 2),
            (format!(r#"vpclab_eni_drops_total{{{l},reason="instance_kernel_dropped"}}"#), 0),
            (format!(r#"vpclab_eni_drops_total{{{l},reason="malformed"}}"#), 0),
            (format!("vpclab_eni_conntrack_entries{{{l}}}"), 3),
            (format!("vpclab_eni_conntrack_max_entries{{{l}}}"), 10),
            (format!("vpclab_eni_conntrack_allowance_available{{{l}}}"), 7),
            (format!("vpclab_eni_conntrack_allowance_exceeded_total{{{l}}}"), 4),
            (r#"vpclab_eni_packets_total{lab="demo",eni="internet",instance="internet",direction="rx"}"#.into(), 9),
            (r#"vpclab_eni_conntrack_entries{lab="demo",eni="eni-spare",instance=""}"#.into(), 0),
            (r#"vpclab_nat_gateway_error_port_allocation_total{lab="demo",nat_gateway="nat-main"}"#.into(), 1),
            (r#"vpclab_nat_gateway_connection_attempt_count_total{lab="demo",nat_gateway="nat-main"}"#.into(), 6),
            (r#"vpclab_nat_gateway_connection_established_count_total{lab="demo",nat_gateway="nat-main"}"#.into(), 5),
            (r#"vpclab_nat_gateway_active_connection_count{lab="demo",nat_gateway="nat-main"}"#.into(), 2),
            (r#"vpclab_nat_gateway_bytes_out_to_destination_total{lab="demo",nat_gateway="nat-main"}"#.into(), 1234),
            (r#"vpclab_nat_gateway_idle_timeout_count_total{lab="demo",nat_gateway="nat-main"}"#.into(), 0),
            (r#"vpclab_flow_log_records_written_total{lab="demo",flow_log="fl-web"}"#.into(), 12),
            (r#"vpclab_flow_log_records_dropped_total{lab="demo",flow_log="fl-web"}"#.into(), 1),
        ] {
            assert_eq!(line_of(&text, &format!("{prefix} ")), format!("{prefix} {value}"));
        }
        // Kernel counters only where they are read; no connection table for the internet.
        assert!(!text.contains(r#"eni="eni-spare",instance="",reason="tap_queue_full""#), "{text}");
        assert!(!text.contains(r#"vpclab_eni_conntrack_entries{lab="demo",eni="internet""#), "{text}");
        // Families are declared once, counters without their `_total`, with AWS's name in HELP.
        assert_eq!(text.matches("# TYPE vpclab_eni_drops counter\n").count(), 1);
        assert!(text.contains("# TYPE vpclab_nat_gateway_active_connection_count gauge\n"));
        assert!(line_of(&text, "# HELP vpclab_nat_gateway_error_port_allocation ").contains("ErrorPortAllocation"));
        // One sample per reason per ENI: every reason of the enum, plus the kernel's two where read.
        let drops = text.lines().filter(|l| l.starts_with("vpclab_eni_drops_total{")).count();
        assert_eq!(drops, DropReason::COUNT * 3 + 2);
    }

    #[test]
    fn label_values_are_escaped_and_help_needs_no_escaping() {
        let (mut status, stats) = sample();
        status.lab = "odd\"lab\\\nend".into();
        let text = render(status, stats).unwrap();
        assert!(text.contains(r#"vpclab_eni_packets_total{lab="odd\"lab\\\nend",eni="eni-web""#), "{text}");
        // The crate writes HELP as given: none may hold what OpenMetrics would want escaped.
        for help in text.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(!help.contains(['"', '\\']), "{help}");
        }
    }

    /// A server on a loopback port answering with [`answer_http`] and `metrics`.
    fn server(metrics: fn() -> Result<String, String>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                answer_http(conn.unwrap(), metrics);
            }
        });
        addr
    }

    /// `request` sent over a real loopback connection to `addr`, and all that comes back until the
    /// server closes the connection.
    fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = client.write_all(request);
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[test]
    fn http_serves_metrics_and_nothing_else() {
        let addr = server(|| Ok("# EOF\n".to_string()));
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")), "{ok}");
        assert!(ok.contains("Content-Length: 6\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n# EOF\n"), "{ok}");
        let head = exchange(addr, b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(head.contains("Content-Length: 6\r\n"), "{head}");
        let missing = exchange(addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"), "{post}");
        let nonsense = exchange(addr, b"nonsense\r\n\r\n");
        assert!(nonsense.starts_with("HTTP/1.1 400 "), "{nonsense}");
    }

    #[test]
    fn http_refuses_an_over_long_head_and_goes_on_serving() {
        let addr = server(|| Ok("# EOF\n".to_string()));
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(crate::http::MAX_HEAD));
        let answer = exchange(addr, long.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    }

    #[test]
    fn http_answers_503_when_there_is_no_snapshot() {
        let addr = server(|| Err("the data plane did not answer".into()));
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.ends_with("\r\n\r\nthe data plane did not answer"), "{answer}");
    }
}
