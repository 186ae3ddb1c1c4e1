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
//! | `nat-in` | the next reply of the `nat` flow, internet host -> app, translated back by the NAT gateway |
//! | `igw-in` | the next reply of the `igw` flow, internet host -> web's Elastic IP |
//! | `drop` | web -> app on a port app's security group does not allow, dropped at app's group |
//! | `table` | (only with `--case table --flows N`) N established flows web -> app held at once, then the next datagram of one chosen at random among them |
//! | `sweep` | (only with `--case sweep`) `new-flow` in a lab with N extra rules and routes, N = 0, 10, 100, 1000 (or `--rules N`) |
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
//!
//! `--case table --flows N` measures the connection tables at scale instead (issue 10): it fills
//! them with N established flows, then times packets of flows picked at random (so cache misses
//! show) against packets of one flow with the same per-packet work, and reads the process's
//! resident memory (`/proc/self/status`) and the tables' own allocation
//! ([`Pipeline::table_bytes`]) before filling, after filling and after every flow expired. Each
//! flow is tracked on both ENIs (two entries). Run one N per process, so one N's leftovers do not
//! colour the next's memory figures:
//!
//! ```text
//! for n in 10000 100000 1000000; do cargo run --release --example pipeline_bench -- --case table --flows $n; done
//! ```
//!
//! `--case sweep` measures the new-flow cost against the rule count (issue 10, "Scale"): the
//! `new-flow` case in the lab of [`Lab::with_rules`], which has N non-matching ingress rules
//! ahead of the one that allows the flow on app's group, 40 rules per direction in the subnets'
//! network ACL (the allowing one last) and N more routes in web's route table. It prints one line
//! for the unchanged lab (`rules=base`), then one per N (only N's with `--rules N`), each with the
//! time `Pipeline::new` takes to compile the lab. `--shape nested` makes the N rules the hardest
//! for the compiled lookup (see [`Shape`]).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use vpclab::model::{
    AclAction, AclRule, Cidr, ConntrackConfig, EniIdx, Model, PortMatch, PortRange, Protocol, Route, SgPeer, SgRule,
};
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
    NatIn,
    IgwIn,
    Drop,
    /// Connection tables at scale: not in [`Case::ALL`], run with `--flows`.
    Table,
    /// New flows against the rule count: not in [`Case::ALL`], optionally with `--rules`.
    Sweep,
}

impl Case {
    const ALL: [Case; 8] =
        [Case::Copy, Case::Fast, Case::NewFlow, Case::Nat, Case::Igw, Case::NatIn, Case::IgwIn, Case::Drop];

    fn name(self) -> &'static str {
        match self {
            Case::Copy => "copy",
            Case::Fast => "fast",
            Case::NewFlow => "new-flow",
            Case::Nat => "nat",
            Case::Igw => "igw",
            Case::NatIn => "nat-in",
            Case::IgwIn => "igw-in",
            Case::Drop => "drop",
            Case::Table => "table",
            Case::Sweep => "sweep",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Case::Copy => "restoring the frame from its template only",
            Case::Fast => "established UDP flow, ENI to ENI across subnets",
            Case::NewFlow => "new UDP flow (new source port), ENI to ENI",
            Case::Nat => "established UDP flow, NAT gateway to the internet",
            Case::Igw => "established UDP flow, Elastic IP to the internet",
            Case::NatIn => "established UDP flow, internet to NAT gateway to ENI",
            Case::IgwIn => "established UDP flow, internet to Elastic IP",
            Case::Drop => "UDP to a port the receiver's group refuses",
            Case::Table => "established UDP flow chosen at random among --flows held at once",
            Case::Sweep => "new UDP flow, ENI to ENI, with N extra rules and routes",
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
    /// `--case table`: concurrent flows to hold (each ENI's `max_connections` is raised to this
    /// in the benchmark's lab when it is above the default).
    #[arg(long, default_value_t = 100_000)]
    flows: u64,
    /// `--case sweep`: only this N (extra security group rules, and extra routes), without the
    /// `rules=base` line (so callgrind counts one lab); base, 0, 10, 100 and 1000 when left out.
    #[arg(long)]
    rules: Option<usize>,
    /// `--case sweep`: the shape of the N extra security group rules.
    #[arg(long, value_enum, default_value_t = Shape::Ports)]
    shape: Shape,
}

/// The shape of the sweep's extra security group rules (all UDP ingress on app's group, none
/// matching the benchmark's datagrams).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Shape {
    /// Rule `i`: port `6000 + i` from web's whole VPC (10.0.0.0/16): the peer matches, the port
    /// does not.
    Ports,
    /// Rule `i`: ports `i`..=`65535 - i` (nested ranges, all covering the datagrams' port) from a
    /// prefix in 172.16.0.0/12 of length `8 + i % 25` (25 lengths, none covering web): the port
    /// matches, the peer does not. The hardest shape for a compiled lookup: every tree node on
    /// the port's path holds rules, under many prefix lengths.
    Nested,
}

/// One case, ready to run: a pipeline whose flow is primed, the frame to send and what must
/// become of it.
struct Scenario {
    pipeline: Pipeline,
    now: Duration,
    /// The sending ENI; `None`: the internet.
    from: Option<EniIdx>,
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
        Lab::from_topology(TOPOLOGY)
    }

    /// The lab with both ENIs' connection-table bound (`connection_tracking.max_connections`,
    /// the topology's setting) at least `max_connections`.
    fn with_max_connections(max_connections: u64) -> Lab {
        let max = max_connections.max(u64::from(ConntrackConfig::DEFAULT_MAX_CONNECTIONS));
        let setting = format!("connection_tracking = {{ max_connections = {max} }}\nattachment = {{");
        Lab::from_topology(&TOPOLOGY.replace("attachment = {", &setting))
    }

    /// The lab at scale, for `--case sweep`: app's group (the receiver's) gets `n` ingress rules
    /// of `shape` that do not match the benchmark's datagrams ahead of its own, so the one that
    /// allows them is the last of `n + 3` (a scan would take them all); the
    /// subnets' ACL (both subnets share it) gets 40 rules per direction, 39 that do not match
    /// then the allowing one at 32766, the highest number below the default `*`; web's route
    /// table (the sender's) gets `n` routes, /24s in 172.16.0.0/12, none covering app.
    ///
    /// These go into the parsed model, past the topology's validation: the validator keeps AWS's
    /// default quotas (60 rules per group and direction, 5 groups per ENI, 20 ACL rules per
    /// direction, 50 routes per table), which refuse a lab this size; AWS lets them be raised
    /// (1,000 group rules per ENI, 40 ACL rules, 1,000 routes), and the pipeline compiles a model
    /// without looking at quotas.
    fn with_rules(n: usize, shape: Shape) -> Lab {
        let mut lab = Lab::new();
        let m = &mut lab.model;
        let sg = m.security_groups.iter_mut().find(|g| g.id == "sg-app").expect("sg-app");
        sg.ingress.splice(0..0, (0..n).map(|i| extra_rule(i, shape)));
        let acl = m.network_acls.iter_mut().find(|a| a.id == "acl-bench").expect("acl-bench");
        let anywhere = Cidr::new(Ipv4Addr::UNSPECIFIED, 0);
        let acl_rules = || {
            let mut v: Vec<AclRule> = (0..39u16)
                .map(|i| AclRule {
                    number: 100 + 10 * i,
                    protocol: Protocol::TCP,
                    ports: PortMatch::Ports(PortRange { from: 6000 + i, to: 6000 + i }),
                    cidr: anywhere,
                    action: AclAction::Deny,
                })
                .collect();
            v.push(AclRule {
                number: 32766,
                protocol: Protocol::All,
                ports: PortMatch::Any,
                cidr: anywhere,
                action: AclAction::Allow,
            });
            v
        };
        acl.ingress = acl_rules();
        acl.egress = acl_rules();
        let rtb = m.route_tables.iter_mut().find(|r| r.id == "rtb-public").expect("rtb-public");
        let igw = rtb.routes.iter().find(|r| r.destination.prefix == 0).expect("the default route").target;
        assert!(n <= 4096, "at most 4096 /24s in 172.16.0.0/12");
        let base = u32::from(Ipv4Addr::new(172, 16, 0, 0));
        rtb.routes.extend(
            (0..n as u32).map(|i| Route { destination: Cidr::new(Ipv4Addr::from(base + (i << 8)), 24), target: igw }),
        );
        lab
    }

    fn from_topology(text: &str) -> Lab {
        let model = vpclab::topology::parse(text, "pipeline_bench.rs").expect("the benchmark lab is valid");
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
            Case::Copy | Case::Fast | Case::NewFlow | Case::Sweep => {
                (self.web, self.udp_from(self.web, self.ip(self.app), SPORT, DPORT), Verdict::Forward(self.app))
            }
            Case::Drop => (
                self.web,
                self.udp_from(self.web, self.ip(self.app), SPORT, REFUSED_PORT),
                Verdict::DropAt(DropReason::SecurityGroupIngress, self.app),
            ),
            Case::Nat | Case::NatIn => (self.app, self.udp_from(self.app, HOST, SPORT, DPORT), Verdict::ToInternet),
            Case::Igw | Case::IgwIn => (self.web, self.udp_from(self.web, HOST, SPORT, DPORT), Verdict::ToInternet),
            // `main` sends `table` to `table_case` before any scenario is built.
            Case::Table => unreachable!("the table case has no single-flow scenario"),
        };
        let (from, template, expected) = match case {
            Case::Fast | Case::Nat | Case::Igw => {
                self.prime(&mut pipeline, now, from, &template, expected);
                (Some(from), template, expected)
            }
            Case::NatIn | Case::IgwIn => {
                let reply = self.prime(&mut pipeline, now, from, &template, expected);
                (None, reply, Verdict::Forward(from))
            }
            _ => (Some(from), template, expected),
        };
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
            new_source_ports: matches!(case, Case::NewFlow | Case::Sweep),
            sent: 0,
            copy_only: case == Case::Copy,
        }
    }

    /// Makes the template's flow established and two-way: its first packet (the full walk, which
    /// creates the connection entries and caches the hop), the peer's reply, then a second
    /// packet, so what is measured is the flow's steady state. Returns the reply as it was sent.
    fn prime(&self, p: &mut Pipeline, now: Duration, from: EniIdx, template: &[u8], expected: Verdict) -> Vec<u8> {
        let mut f = template.to_vec();
        assert_eq!(p.process(now, from, &mut f, &mut NoObserver), expected, "the flow's first packet");
        // `f` is now as it left: its source is what the peer answers to.
        let out = match parse(&f).expect("the forwarded frame parses").l3 {
            L3Meta::Ipv4(ip) => ip.flow,
            other => panic!("not IPv4: {other:?}"),
        };
        let reply = match expected {
            Verdict::Forward(to) => {
                let r = self.udp_from(to, out.src, out.l4.dst_port, out.l4.src_port);
                let v = p.process(now, to, &mut r.clone(), &mut NoObserver);
                assert_eq!(v, Verdict::Forward(from), "the reply");
                r
            }
            _ => {
                let r = self.udp_from_internet(out.src, out.l4.dst_port, out.l4.src_port);
                let v = p.process_internet(now, &mut r.clone(), Offload::default(), &mut NoObserver);
                assert_eq!(v, Verdict::Forward(from), "the reply from the internet");
                r
            }
        };
        let mut f = template.to_vec();
        assert_eq!(p.process(now, from, &mut f, &mut NoObserver), expected, "the flow's second packet");
        reply
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
        let frame = black_box(&mut *buf);
        let v = match s.from {
            Some(from) => s.pipeline.process(s.now, from, frame, &mut NoObserver),
            None => s.pipeline.process_internet(s.now, frame, Offload::default(), &mut NoObserver),
        };
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

/// Source ports the `table` case's flows take (all unprivileged ones); flow `i` goes from port
/// `1024 + i % TABLE_PORTS` to app's UDP port `5000 + i / TABLE_PORTS`, inside the 5000-5999
/// app's group opens, so up to 64,512,000 distinct flows.
const TABLE_PORTS: u64 = 65_536 - 1024;

/// The `table` case: N flows web -> app, each primed like the `fast` case's one (first packet,
/// reply, second packet), held at once.
struct Table {
    pipeline: Pipeline,
    now: Duration,
    web: EniIdx,
    app: EniIdx,
    /// A datagram web -> app and app's reply, whose ports each packet rewrites.
    out: (Vec<u8>, Ipv4Meta),
    back: (Vec<u8>, Ipv4Meta),
    flows: u64,
}

/// The ports of flow `i`: (web's, app's).
fn table_ports(i: u64) -> (u16, u16) {
    ((1024 + i % TABLE_PORTS) as u16, (5000 + i / TABLE_PORTS) as u16)
}

fn ipv4(frame: &[u8]) -> Ipv4Meta {
    match parse(frame).expect("the template parses").l3 {
        L3Meta::Ipv4(ip) => ip,
        other => panic!("the template is not IPv4: {other:?}"),
    }
}

impl Table {
    fn new(lab: &Lab, flows: u64) -> Table {
        assert!(flows <= 1000 * TABLE_PORTS, "at most {} flows", 1000 * TABLE_PORTS);
        let out = lab.udp_from(lab.web, lab.ip(lab.app), SPORT, DPORT);
        let back = lab.udp_from(lab.app, lab.ip(lab.web), DPORT, SPORT);
        Table {
            pipeline: Pipeline::new(&lab.model),
            now: Duration::from_secs(1),
            web: lab.web,
            app: lab.app,
            out: (out.clone(), ipv4(&out)),
            back: (back.clone(), ipv4(&back)),
            flows,
        }
    }

    /// Sends flow `i`'s next datagram web -> app (`reply`: app -> web) through the pipeline.
    fn send(&mut self, buf: &mut [u8], i: u64, reply: bool) -> Verdict {
        let (web_port, app_port) = table_ports(i);
        let ((template, meta), from, sport, dport) =
            if reply { (&self.back, self.app, app_port, web_port) } else { (&self.out, self.web, web_port, app_port) };
        buf.copy_from_slice(template);
        rewrite::set_src_port(buf, meta, sport, L4Csum::Full);
        rewrite::set_dst_port(buf, meta, dport, L4Csum::Full);
        self.pipeline.process(self.now, from, black_box(buf), &mut NoObserver)
    }

    /// Makes every flow established and two-way, as [`Lab::prime`] does for one.
    fn fill(&mut self, buf: &mut [u8]) {
        let (web, app) = (self.web, self.app);
        for i in 0..self.flows {
            assert_eq!(self.send(buf, i, false), Verdict::Forward(app), "flow {i}'s first packet");
            assert_eq!(self.send(buf, i, true), Verdict::Forward(web), "flow {i}'s reply");
            assert_eq!(self.send(buf, i, false), Verdict::Forward(app), "flow {i}'s second packet");
        }
        let held = self.pipeline.stats().conntrack;
        assert!(held.iter().all(|t| t.entries == self.flows), "every flow is held on both ENIs: {held:?}");
    }

    /// Empties the tables as [`Scenario::expire_all`] does; returns the `handle_timeout` calls it took.
    fn expire_all(&mut self) -> u64 {
        self.now += Duration::from_secs(3600);
        for calls in 1..=1_000_000 {
            self.pipeline.handle_timeout(self.now);
            if self.pipeline.stats().conntrack.iter().all(|t| t.entries == 0) {
                return calls;
            }
        }
        panic!("the connection tables did not empty");
    }
}

/// The `table` case's measured loop: `count` datagrams web -> app of flows picked by an
/// xorshift generator among the first `among` (1: always the same flow, with the same work per
/// packet). Returns how many verdicts were not `Forward(app)`.
#[inline(never)]
fn run_table_batch(t: &mut Table, buf: &mut [u8], rng: &mut u64, among: u64, count: u64) -> u64 {
    let mut wrong = 0;
    for _ in 0..count {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let v = t.send(buf, *rng % among, false);
        wrong += u64::from(black_box(v) != Verdict::Forward(t.app));
    }
    wrong
}

/// Nanoseconds per packet, median of `runs` runs of `packets` packets, after a warm-up.
fn time_table(t: &mut Table, buf: &mut [u8], among: u64, packets: u64, runs: usize) -> f64 {
    let mut rng = 0x9e37_79b9_7f4a_7c15;
    assert_eq!(run_table_batch(t, buf, &mut rng, among, WARMUP), 0);
    let mut ns: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let wrong = run_table_batch(t, buf, &mut rng, among, packets);
            let spent = start.elapsed();
            assert_eq!(wrong, 0, "{wrong} packet(s) not forwarded to app");
            spent.as_nanos() as f64 / packets as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    median(&ns)
}

/// The process's resident memory now and at its peak, in bytes (`VmRSS`, `VmHWM`).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb = |field: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
        line[field.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().expect("a number of kB") * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The `table` case: one line for `flows` concurrent flows.
fn table_case(flows: u64, packets: u64, runs: usize) {
    let lab = Lab::with_max_connections(flows);
    let mut t = Table::new(&lab, flows);
    let mut buf = t.out.0.clone();
    let (rss0, _) = rss();
    let (ct0, _) = t.pipeline.table_bytes();
    let start = Instant::now();
    t.fill(&mut buf);
    let fill = start.elapsed();
    let (rss1, peak) = rss();
    let (ct1, _) = t.pipeline.table_bytes();
    let ns_random = time_table(&mut t, &mut buf, flows, packets, runs);
    let ns_one = time_table(&mut t, &mut buf, 1, packets, runs);
    let calls = t.expire_all();
    let (rss2, _) = rss();
    let (ct2, _) = t.pipeline.table_bytes();
    let per_flow = |b: u64| b as f64 / flows as f64;
    println!(
        "case=table flows={flows} packets={packets} runs={runs} ns_random={ns_random:.1} ns_one_flow={ns_one:.1} \
         fill_s={:.2} rss_bytes_per_flow={:.0} table_bytes_per_flow={:.0} rss_mib={:.1}->{:.1}->{:.1} peak_rss_mib={:.1} \
         table_mib={:.1}->{:.1}->{:.1} expiry_calls={calls}",
        fill.as_secs_f64(),
        per_flow(rss1.saturating_sub(rss0)),
        per_flow(ct1 as u64),
        mib(rss0),
        mib(rss1),
        mib(rss2),
        mib(peak),
        mib(ct0 as u64),
        mib(ct1 as u64),
        mib(ct2 as u64),
    );
}

/// Extra rule `i` of the sweep's lab (see [`Shape`]): it never matches the benchmark's datagrams.
fn extra_rule(i: usize, shape: Shape) -> SgRule {
    match shape {
        Shape::Ports => {
            assert!(i < 59_000, "the extra rules' ports stay in 6000-64999, away from DPORT");
            let port = 6000 + i as u16;
            SgRule {
                protocol: Protocol::UDP,
                ports: PortMatch::Ports(PortRange { from: port, to: port }),
                peer: SgPeer::Cidr(Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 16)),
            }
        }
        Shape::Nested => {
            assert!(i <= usize::from(DPORT), "the nested ranges all cover DPORT");
            let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + ((i as u32) << 4));
            SgRule {
                protocol: Protocol::UDP,
                ports: PortMatch::Ports(PortRange { from: i as u16, to: 65535 - i as u16 }),
                peer: SgPeer::Cidr(Cidr::new(addr, 8 + (i % 25) as u8)),
            }
        }
    }
}

/// Microseconds `Pipeline::new` takes to compile `lab` (median of 5): the compile is off the
/// packet path, but it is what a topology change costs the control thread.
fn compile_us(lab: &Lab) -> f64 {
    let mut us: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            black_box(Pipeline::new(black_box(&lab.model)));
            start.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect();
    us.sort_by(f64::total_cmp);
    median(&us)
}

/// The `sweep` case: one line for the unchanged lab, then one per N; only N's line with `--rules`.
fn sweep_case(rules: Option<usize>, shape: Shape, packets: u64, runs: usize) {
    let line = |label: String, lab: &Lab| {
        let ns = measure(lab, Case::Sweep, packets, runs);
        let (sg, acl, routes) = (
            lab.model.security_groups.iter().find(|g| g.id == "sg-app").map_or(0, |g| g.ingress.len()),
            lab.model.network_acls.iter().find(|a| a.id == "acl-bench").map_or(0, |a| a.ingress.len()),
            lab.model.route_tables.iter().find(|r| r.id == "rtb-public").map_or(0, |r| r.routes.len()),
        );
        println!(
            "case=sweep shape={} rules={label} sg_app_ingress_rules={sg} acl_rules_per_direction={acl} \
             rtb_public_routes={routes} packets={packets} runs={runs} ns_per_packet={:.1} min={:.1} max={:.1} \
             compile_us={:.0}",
            shape.to_possible_value().expect("no skipped variant").get_name(),
            median(&ns),
            ns[0],
            ns[ns.len() - 1],
            compile_us(lab),
        );
    };
    if rules.is_none() {
        line("base".to_string(), &Lab::new());
    }
    let ns: Vec<usize> = rules.map_or_else(|| vec![0, 10, 100, 1000], |n| vec![n]);
    for n in ns {
        line(n.to_string(), &Lab::with_rules(n, shape));
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.packets == 0 || args.runs == 0 {
        eprintln!("--packets and --runs must be at least 1");
        return ExitCode::FAILURE;
    }
    if args.case == Some(Case::Table) {
        if args.flows == 0 {
            eprintln!("--flows must be at least 1");
            return ExitCode::FAILURE;
        }
        table_case(args.flows, args.packets, args.runs);
        return ExitCode::SUCCESS;
    }
    if args.case == Some(Case::Sweep) {
        sweep_case(args.rules, args.shape, args.packets, args.runs);
        return ExitCode::SUCCESS;
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
