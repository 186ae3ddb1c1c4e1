//! Micro-benchmark of the pure pipeline: what [`Pipeline::process`] costs per packet, without
//! TAPs, system calls or root. It builds a small lab from [`TOPOLOGY`] (the default lab's shape:
//! a public subnet with an Elastic IP instance, a private subnet behind a NAT gateway), primes
//! one flow per case, and sends 64-byte UDP datagrams through it:
//!
//! | case | what each packet is |
//! | --- | --- |
//! | `copy` | no pipeline: only the restore of the frame from its template, which every other case also pays |
//! | `fast` | the next datagram of an established flow, web -> app across subnets (the cached hop) |
//! | `new-flow` | a datagram from a new source port each time, web -> app: a new connection on both ENIs |
//! | `nat` | the next datagram of an established flow app -> internet host through the NAT gateway |
//! | `igw` | the next datagram of an established flow web (Elastic IP) -> internet host through the internet gateway |
//! | `drop` | web -> app on a port app's security group does not allow, dropped at app's group |
//!
//! The pipeline rewrites frames in place, so every packet starts with a copy of its template
//! (a 106-byte `copy_from_slice`); the `copy` case measures that alone.
//!
//! Usage:
//!
//! ```text
//! cargo run --release --example pipeline_bench                  # every case, as a table
//! cargo run --release --example pipeline_bench -- --case nat --packets 100000 --runs 1
//! ```
//!
//! One case prints one line, `case=nat packets=100000 runs=1 ns_per_packet=...`; that mode is
//! what `scripts/pipeline-bench.sh` runs under callgrind, counting only what happens inside
//! [`run_batch`] (`--toggle-collect`), so setup and the untimed reset between batches of new
//! flows are left out of the instruction counts just as they are left out of the timings.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use vpclab::model::{EniIdx, Model};
use vpclab::packet::rewrite::{self, L4Csum};
use vpclab::packet::{build, parse, Ipv4Meta, L3Meta};
use vpclab::pipeline::{DropReason, NoObserver, Offload, Pipeline, Verdict};

/// The benchmark's lab: the default lab's shape with UDP allowed from web to app on 5000-5999,
/// network ACLs on both subnets (so a packet that crosses subnets is judged by two), an Elastic
/// IP on web and a NAT gateway for the private subnet.
const TOPOLOGY: &str = r#"
name = "pbench"

[[vpc]]
id = "vpc-bench"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-public"
vpc = "vpc-bench"
cidr = "10.0.1.0/24"
route_table = "rtb-public"
network_acl = "acl-bench"

[[subnet]]
id = "subnet-private"
vpc = "vpc-bench"
cidr = "10.0.2.0/24"
route_table = "rtb-private"
network_acl = "acl-bench"

[[internet_gateway]]
id = "igw-bench"
vpc = "vpc-bench"

[[elastic_ip]]
id = "eipalloc-nat"
public_ip = "203.0.113.10"

[[elastic_ip]]
id = "eipalloc-web"
public_ip = "203.0.113.20"
network_interface = "eni-web"

[[nat_gateway]]
id = "nat-bench"
subnet = "subnet-public"
private_ip = "10.0.1.100"
elastic_ip = "eipalloc-nat"

[[route_table]]
id = "rtb-public"
vpc = "vpc-bench"
routes = [{ destination = "0.0.0.0/0", target = "igw-bench" }]

[[route_table]]
id = "rtb-private"
vpc = "vpc-bench"
routes = [{ destination = "0.0.0.0/0", target = "nat-bench" }]

[[network_acl]]
id = "acl-bench"
vpc = "vpc-bench"
ingress = [
  { rule = 100, protocol = "tcp", ports = "80", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 110, protocol = "tcp", ports = "1024-65535", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 120, protocol = "udp", ports = "1024-65535", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 130, protocol = "icmp", cidr = "0.0.0.0/0", action = "allow" },
  { rule = 140, protocol = "all", cidr = "10.0.0.0/16", action = "allow" },
]
egress = [{ rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" }]

[[security_group]]
id = "sg-web"
vpc = "vpc-bench"
ingress = [{ protocol = "tcp", ports = "80", source = "0.0.0.0/0" }]

[[security_group]]
id = "sg-app"
vpc = "vpc-bench"
ingress = [
  { protocol = "udp", ports = "5000-5999", source = "sg-web" },
  { protocol = "tcp", ports = "8080", source = "sg-web" },
  { protocol = "icmp", source = "10.0.0.0/16" },
]

[[instance]]
id = "web"

[[instance]]
id = "app"

[[network_interface]]
id = "eni-web"
subnet = "subnet-public"
private_ip = "10.0.1.10"
security_groups = ["sg-web"]
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-app"
subnet = "subnet-private"
private_ip = "10.0.2.10"
security_groups = ["sg-app"]
attachment = { instance = "app", device_index = 0 }

[internet]
hosts = [{ id = "example", ip = "198.51.100.7" }]
"#;

/// The internet host every outbound case talks to.
const HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// A UDP payload of 64 bytes, as in `scripts/bench.sh`'s small-packet rows.
const PAYLOAD: [u8; 64] = [0x5a; 64];
/// The established flows' ports.
const SPORT: u16 = 40000;
const DPORT: u16 = 5001;
/// A port sg-app does not open.
const REFUSED_PORT: u16 = 9999;
/// New flows per batch. Between batches the clock jumps past the UDP timeout and the tables are
/// emptied (untimed), so the table never holds more than this many entries: below the 16,384
/// a table is pre-sized for (`conntrack::PRESIZE_CAP`, so no growth is measured) and far below
/// the 65,536-entry bound (so no new flow is refused).
const NEW_FLOW_BATCH: u64 = 10_000;
/// Source ports new flows cycle through (all unprivileged ports).
const FIRST_NEW_PORT: u16 = 1024;
/// Every case runs its packets in batches of this size; batches are what the clock times.
const BATCH: u64 = NEW_FLOW_BATCH;
/// Packets of the untimed warm-up run of each case.
const WARMUP: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Case {
    Copy,
    Fast,
    NewFlow,
    Nat,
    Igw,
    Drop,
}

impl Case {
    const ALL: [Case; 6] = [Case::Copy, Case::Fast, Case::NewFlow, Case::Nat, Case::Igw, Case::Drop];

    fn name(self) -> &'static str {
        match self {
            Case::Copy => "copy",
            Case::Fast => "fast",
            Case::NewFlow => "new-flow",
            Case::Nat => "nat",
            Case::Igw => "igw",
            Case::Drop => "drop",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Case::Copy => "restoring the frame from its template only",
            Case::Fast => "established UDP flow, ENI to ENI across subnets",
            Case::NewFlow => "new UDP flow (new source port), ENI to ENI",
            Case::Nat => "established UDP flow, NAT gateway to the internet",
            Case::Igw => "established UDP flow, Elastic IP to the internet",
            Case::Drop => "UDP to a port the receiver's group refuses",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Per-packet cost of vpclab's pure pipeline (no TAPs, no root)")]
struct Args {
    /// Run only this case and print one `case=... ns_per_packet=...` line; every case as a table
    /// when left out.
    #[arg(long, value_enum)]
    case: Option<Case>,
    /// Packets per run.
    #[arg(long, default_value_t = 100_000)]
    packets: u64,
    /// Runs per case; the median is reported.
    #[arg(long, default_value_t = 7)]
    runs: usize,
}

/// One case, ready to run: a pipeline whose flow is primed, the frame to send and what must
/// become of it.
struct Scenario {
    pipeline: Pipeline,
    now: Duration,
    from: EniIdx,
    template: Vec<u8>,
    /// The template's parsed header, for rewriting its source port.
    meta: Ipv4Meta,
    expected: Verdict,
    /// Each packet gets a source port of its own (the `new-flow` case).
    new_source_ports: bool,
    /// Packets sent so far, which picks the next new source port.
    sent: u64,
    /// `copy`: do not call the pipeline at all.
    copy_only: bool,
}

/// The lab's model and the ENIs the cases send from.
struct Lab {
    model: Model,
    web: EniIdx,
    app: EniIdx,
}

impl Lab {
    fn new() -> Lab {
        let model = vpclab::topology::parse(TOPOLOGY, "pipeline_bench.rs").expect("the benchmark lab is valid");
        let web = model.eni_by_id("eni-web").expect("eni-web");
        let app = model.eni_by_id("eni-app").expect("eni-app");
        Lab { model, web, app }
    }

    /// A datagram from `from`'s primary IP, to the router (every case crosses a subnet or leaves
    /// the VPC).
    fn udp_from(&self, from: EniIdx, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
        let eni = &self.model.enis[from.index()];
        let router = self.model.vpcs[0].router_mac;
        build::udp(router, eni.mac, eni.private_ip, dst, sport, dport, &PAYLOAD)
    }

    /// A datagram from the internet host to `dst` (a reply, to make a flow two-way).
    fn udp_from_internet(&self, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
        let (gw, host) = (self.model.internet_gateway_mac(), self.model.internet_host_mac());
        build::udp(gw, host, HOST, dst, sport, dport, &PAYLOAD)
    }

    fn ip(&self, eni: EniIdx) -> Ipv4Addr {
        self.model.enis[eni.index()].private_ip
    }

    fn scenario(&self, case: Case) -> Scenario {
        let mut pipeline = Pipeline::new(&self.model);
        let now = Duration::from_secs(1);
        let (from, template, expected) = match case {
            Case::Copy | Case::Fast | Case::NewFlow => {
                (self.web, self.udp_from(self.web, self.ip(self.app), SPORT, DPORT), Verdict::Forward(self.app))
            }
            Case::Drop => (
                self.web,
                self.udp_from(self.web, self.ip(self.app), SPORT, REFUSED_PORT),
                Verdict::DropAt(DropReason::SecurityGroupIngress, self.app),
            ),
            Case::Nat => (self.app, self.udp_from(self.app, HOST, SPORT, DPORT), Verdict::ToInternet),
            Case::Igw => (self.web, self.udp_from(self.web, HOST, SPORT, DPORT), Verdict::ToInternet),
        };
        if matches!(case, Case::Fast | Case::Nat | Case::Igw) {
            self.prime(&mut pipeline, now, from, &template, expected);
        }
        let meta = match parse(&template).expect("the template parses").l3 {
            L3Meta::Ipv4(ip) => ip,
            other => panic!("the template is not IPv4: {other:?}"),
        };
        Scenario {
            pipeline,
            now,
            from,
            template,
            meta,
            expected,
            new_source_ports: case == Case::NewFlow,
            sent: 0,
            copy_only: case == Case::Copy,
        }
    }

    /// Makes the template's flow established and two-way: its first packet (the full walk, which
    /// creates the connection entries and caches the hop), the peer's reply, then a second
    /// packet, so what is measured is the flow's steady state.
    fn prime(&self, p: &mut Pipeline, now: Duration, from: EniIdx, template: &[u8], expected: Verdict) {
        let mut f = template.to_vec();
        assert_eq!(p.process(now, from, &mut f, &mut NoObserver), expected, "the flow's first packet");
        // `f` is now as it left: its source is what the peer answers to.
        let out = match parse(&f).expect("the forwarded frame parses").l3 {
            L3Meta::Ipv4(ip) => ip.flow,
            other => panic!("not IPv4: {other:?}"),
        };
        let mut reply = match expected {
            Verdict::Forward(to) => {
                let mut r = self.udp_from(to, out.src, out.l4.dst_port, out.l4.src_port);
                let v = p.process(now, to, &mut r, &mut NoObserver);
                assert_eq!(v, Verdict::Forward(from), "the reply");
                r
            }
            _ => {
                let mut r = self.udp_from_internet(out.src, out.l4.dst_port, out.l4.src_port);
                let v = p.process_internet(now, &mut r, Offload::default(), &mut NoObserver);
                assert_eq!(v, Verdict::Forward(from), "the reply from the internet");
                r
            }
        };
        black_box(&mut reply);
        let mut f = template.to_vec();
        assert_eq!(p.process(now, from, &mut f, &mut NoObserver), expected, "the flow's second packet");
    }
}

impl Scenario {
    /// Empties the connection tables (and NAT translations) after a batch of new flows: the
    /// clock jumps past every timeout and the bounded `handle_timeout` is called until nothing
    /// is left. Untimed, and outside [`run_batch`], so callgrind does not count it either.
    fn expire_all(&mut self) {
        self.now += Duration::from_secs(3600);
        for _ in 0..1000 {
            self.pipeline.handle_timeout(self.now);
            if self.pipeline.stats().conntrack.iter().all(|t| t.entries == 0) {
                return;
            }
        }
        panic!("the connection tables did not empty");
    }
}

/// The measured loop: `count` packets, each restored from the template (and given a new source
/// port in `new-flow`), then judged. Returns how many verdicts were not the expected one.
/// Never inlined: `scripts/pipeline-bench.sh` counts instructions inside this function only.
#[inline(never)]
fn run_batch(s: &mut Scenario, buf: &mut [u8], count: u64) -> u64 {
    let mut wrong = 0;
    for _ in 0..count {
        buf.copy_from_slice(&s.template);
        if s.new_source_ports {
            let port = FIRST_NEW_PORT + (s.sent % u64::from(u16::MAX - FIRST_NEW_PORT)) as u16;
            rewrite::set_src_port(buf, &s.meta, port, L4Csum::Full);
        }
        s.sent += 1;
        if s.copy_only {
            black_box(&mut *buf);
            continue;
        }
        let v = s.pipeline.process(s.now, s.from, black_box(&mut *buf), &mut NoObserver);
        wrong += u64::from(black_box(v) != s.expected);
    }
    wrong
}

/// Sends `packets` packets in batches and returns the time spent inside [`run_batch`]. Between
/// batches of new flows the tables are emptied, untimed.
fn run(s: &mut Scenario, buf: &mut [u8], packets: u64) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = packets;
    while left > 0 {
        let n = left.min(BATCH);
        let start = Instant::now();
        let wrong = run_batch(s, buf, n);
        spent += start.elapsed();
        assert_eq!(wrong, 0, "{wrong} packet(s) got another verdict than {:?}", s.expected);
        if s.new_source_ports {
            s.expire_all();
        }
        left -= n;
    }
    spent
}

/// Nanoseconds per packet of each run, sorted, after one untimed warm-up run.
fn measure(lab: &Lab, case: Case, packets: u64, runs: usize) -> Vec<f64> {
    let mut s = lab.scenario(case);
    let mut buf = s.template.clone();
    if s.new_source_ports {
        // One frame of the batch, checked once: the incremental update keeps the checksum right.
        let mut f = s.template.clone();
        rewrite::set_src_port(&mut f, &s.meta, FIRST_NEW_PORT + 1, L4Csum::Full);
        assert!(rewrite::verify(&f), "a new flow's frame has a right UDP checksum");
    }
    run(&mut s, &mut buf, WARMUP);
    let mut ns: Vec<f64> =
        (0..runs).map(|_| run(&mut s, &mut buf, packets).as_nanos() as f64 / packets as f64).collect();
    ns.sort_by(f64::total_cmp);
    ns
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.packets == 0 || args.runs == 0 {
        eprintln!("--packets and --runs must be at least 1");
        return ExitCode::FAILURE;
    }
    let lab = Lab::new();
    if let Some(case) = args.case {
        let ns = measure(&lab, case, args.packets, args.runs);
        println!("case={} packets={} runs={} ns_per_packet={:.1}", case.name(), args.packets, args.runs, median(&ns));
        return ExitCode::SUCCESS;
    }
    println!("{} packets per run, median of {} runs (min-max), ns per packet:", args.packets, args.runs);
    println!("{:<9} {:>8} {:>17}  what", "case", "median", "min-max");
    for case in Case::ALL {
        let ns = measure(&lab, case, args.packets, args.runs);
        let range = format!("{:.1}-{:.1}", ns[0], ns[ns.len() - 1]);
        println!("{:<9} {:>8.1} {:>17}  {}", case.name(), median(&ns), range, case.what());
    }
    println!("(every case includes the copy of the frame from its template, the `copy` row)");
    ExitCode::SUCCESS
}
