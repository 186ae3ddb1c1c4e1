//! Writes the seed corpora of the `pipeline` and `control_request` targets:
//! `cargo run --example gen_corpus` (in `fuzz/`). Each pipeline seed is a short scenario of valid
//! frames (a flow and its replies, a NAT gateway running out of ports, a connection table
//! filling up, a translation timing out), so the fuzzer starts deep in the pipeline; some repeat
//! their frames as raw bytes for the byte-level mutations. The topology seeds are files copied
//! from the repository (see `fuzz/corpus/topology/`).

use std::net::Ipv4Addr;
use std::path::Path;

use vpclab::control::Request;
use vpclab::model::Mac;
use vpclab::packet::{IpProto, TcpFlags};
use vpclab_fuzz::*;

/// The ingress byte of an ENI, or of the internet.
fn entry(id: &str) -> u8 {
    let m = model();
    match m.eni_by_id(id) {
        Some(e) => e.index() as u8,
        None => m.enis.len() as u8,
    }
}

fn addr(a: &str) -> u8 {
    let a: Ipv4Addr = a.parse().unwrap();
    addresses().iter().position(|&x| x == a).unwrap_or_else(|| panic!("{a} not in the table")) as u8
}

fn mac_of(mac: Mac) -> u8 {
    macs().iter().position(|&x| x == mac).unwrap() as u8
}

struct Seed {
    data: Vec<u8>,
}

impl Seed {
    fn new() -> Seed {
        Seed { data: Vec::new() }
    }

    /// A built frame from `from`: `src` of `None` is its own address.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        from: &str,
        src: Option<&str>,
        dst: &str,
        kind: u8,
        ports: (u16, u16),
        tcp_flags: u8,
        flags: u8,
        time: u8,
    ) -> &mut Seed {
        let spec = Spec {
            src: src.map_or(0, addr),
            dst: addr(dst),
            kind,
            sport: ports.0,
            dport: ports.1,
            tcp_flags,
            ..Spec::default()
        };
        self.spec(from, spec, flags, 0, time)
    }

    fn spec(&mut self, from: &str, spec: Spec, flags: u8, gso: u16, time: u8) -> &mut Seed {
        encode(&mut self.data, entry(from), flags | F_BUILD, gso, time, &spec.bytes());
        self
    }

    fn raw(&mut self, from: &str, frame: &[u8], flags: u8, time: u8) -> &mut Seed {
        encode(&mut self.data, entry(from), flags, 0, time, frame);
        self
    }
}

const TCP: u8 = 0;
const UDP: u8 = 1;
const ECHO: u8 = 2;
const ECHO_REPLY: u8 = 3;
const ICMP_ERR_TCP: u8 = 4;
const ICMP_ERR_UDP: u8 = 5;
const ARP: u8 = 8;
// TCP flags bytes of a spec.
const SYN: u8 = TcpFlags::SYN.0;
const SYN_ACK: u8 = TcpFlags::SYN.union(TcpFlags::ACK).0;
const ACK: u8 = TcpFlags::ACK.0;
const FIN_ACK: u8 = TcpFlags::FIN.union(TcpFlags::ACK).0;
const INET: &str = "internet";
const HOST: &str = "198.51.100.7";

/// The pipeline seeds in the order they are written, each a named scenario.
#[derive(Default)]
struct Seeds(Vec<(String, Vec<u8>)>);

impl Seeds {
    /// Adds the scenario that `build` writes into a fresh seed, as `name`.
    fn add(&mut self, name: &str, build: impl FnOnce(&mut Seed)) {
        let mut s = Seed::new();
        build(&mut s);
        self.0.push((name.to_string(), s.data));
    }
}

fn pipeline_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Seeds::default();
    internet_gateway_seeds(&mut seeds);
    nat_gateway_seeds(&mut seeds);
    eni_to_eni_seeds(&mut seeds);
    arp_seeds(&mut seeds);
    limit_and_offload_seeds(&mut seeds);
    drop_seeds(&mut seeds);
    raw_seeds(&mut seeds);
    seeds.0
}

/// The internet gateway: an Elastic IP's connections out and in.
fn internet_gateway_seeds(seeds: &mut Seeds) {
    // A TCP connection from the web ENI (an Elastic IP) to the internet and back, then closed.
    seeds.add("web-internet-tcp", |s| {
        s.frame("eni-web", None, HOST, TCP, (40000, 80), SYN, F_TRACE, 0)
            .frame(INET, Some(HOST), "203.0.113.20", TCP, (80, 40000), SYN_ACK, F_TRACE, 0)
            .frame("eni-web", None, HOST, TCP, (40000, 80), ACK, 0, 65)
            .frame("eni-web", None, HOST, TCP, (40000, 80), FIN_ACK, 0, 1)
            .frame(INET, Some(HOST), "203.0.113.20", TCP, (80, 40000), FIN_ACK, 0, 1);
    });

    // The internet reaches the web server, on its secondary address's Elastic IP too.
    seeds.add("internet-to-web", |s| {
        s.frame(INET, Some(HOST), "203.0.113.20", TCP, (50000, 80), SYN, F_TRACE, 0)
            .frame("eni-web", None, HOST, TCP, (80, 50000), SYN_ACK, F_TRACE, 0)
            .frame(INET, Some(HOST), "203.0.113.21", TCP, (50001, 443), SYN, 0, 0)
            .frame(INET, Some("198.51.100.66"), "203.0.113.20", TCP, (50002, 80), SYN, 0, 0)
            .frame(INET, Some(HOST), "203.0.113.30", UDP, (5000, 5000), 0, 0, 0);
    });
}

/// The NAT gateway: running out of ports, a translation timing out, ICMP through it.
fn nat_gateway_seeds(seeds: &mut Seeds) {
    // The private app through the NAT gateway: four ports, a fifth flow to the same destination
    // finds none; replies come back.
    seeds.add("nat-udp-ports", |s| {
        for sport in 40000..40005 {
            s.frame("eni-app", None, "8.8.8.8", UDP, (sport, 53), 0, 0, 0);
        }
        s.frame(INET, Some("8.8.8.8"), "203.0.113.10", UDP, (53, 1024), 0, F_TRACE, 0)
            .frame(INET, Some("8.8.8.8"), "203.0.113.10", UDP, (53, 1027), 0, 0, 0)
            .frame(INET, Some("8.8.8.8"), "203.0.113.10", UDP, (53, 2000), 0, 0, 0);
    });

    // A NAT'd TCP connection whose translation times out: the next segment gets a RST.
    seeds.add("nat-tcp-timeout", |s| {
        s.frame("eni-app", None, HOST, TCP, (41000, 443), SYN, 0, 0)
            .frame(INET, Some(HOST), "203.0.113.10", TCP, (443, 1024), SYN_ACK, 0, 0)
            .frame("eni-app", None, HOST, TCP, (41000, 443), ACK, 0, 0)
            .frame("eni-app", None, HOST, TCP, (41000, 443), ACK, F_TIMEOUT | F_TRACE, 0x80 | 7);
    });

    // Pings out through the NAT gateway and back, and an ICMP error about a NAT'd flow.
    seeds.add("nat-icmp", |s| {
        s.frame("eni-app", None, HOST, ECHO, (7, 0), 0, 0, 0)
            .frame(INET, Some(HOST), "203.0.113.10", ECHO_REPLY, (1024, 0), 0, F_TRACE, 0)
            .frame("eni-app", None, HOST, UDP, (42000, 33434), 0, 0, 0)
            .frame(INET, Some(HOST), "203.0.113.10", ICMP_ERR_UDP, (33434, 1025), 0, F_TRACE, 0);
    });
}

/// ENI to ENI: group references within a VPC, the peering, an appliance.
fn eni_to_eni_seeds(seeds: &mut Seeds) {
    // Security group references within the VPC: web -> app on 8080, the reply, and app -> web.
    seeds.add("sg-references", |s| {
        s.frame("eni-web", None, "10.0.2.10", TCP, (40000, 8080), SYN, F_TRACE, 0)
            .frame("eni-app", None, "10.0.1.10", TCP, (8080, 40000), SYN_ACK, F_TRACE, 0)
            .frame("eni-web", None, "10.0.2.10", TCP, (40000, 8080), ACK, F_TRACE, 0)
            .frame("eni-web", None, "10.0.2.10", TCP, (40000, 8080), ACK, F_TRACE, 0)
            .frame("eni-app", None, "10.0.1.10", TCP, (8080, 40000), ACK, F_TRACE, 0)
            .frame("eni-web", None, "10.0.2.10", UDP, (40001, 53), 0, 0, 0)
            .frame("eni-app", None, "10.0.1.10", UDP, (53, 40001), 0, 0, 0)
            .frame("eni-web", None, "10.0.2.10", TCP, (40002, 25), SYN, 0, 0);
    });

    // Across the peering: web -> b1 ssh (a group of the other VPC), app -> b1 whose replies its
    // ACL denies, pings both ways.
    seeds.add("peering", |s| {
        s.frame("eni-web", None, "10.1.1.10", TCP, (40000, 22), SYN, F_TRACE, 0)
            .frame("eni-b1", None, "10.0.1.10", TCP, (22, 40000), SYN_ACK, F_TRACE, 0)
            .frame("eni-app", None, "10.1.1.10", TCP, (40010, 22), SYN, 0, 0)
            .frame("eni-b1", None, "10.0.2.10", TCP, (22, 40010), SYN_ACK, 0, 0)
            .frame("eni-web", None, "10.1.1.10", ECHO, (9, 0), 0, F_TRACE, 0)
            .frame("eni-b1", None, "10.0.1.10", ECHO_REPLY, (9, 0), 0, F_TRACE, 0)
            .frame("eni-b1", None, "10.0.1.10", UDP, (40020, 53), 0, 0, 0)
            .frame("eni-b1", None, "10.1.1.20", UDP, (40021, 53), 0, 0, 0);
    });

    // The appliance: app -> the upper half of the public subnet goes to the appliance ENI, which
    // forwards it with the app's source address (its check is off).
    seeds.add("appliance", |s| {
        s.frame("eni-app", None, "10.0.1.200", TCP, (40000, 8080), SYN, F_TRACE, 0)
            .frame("eni-appl", Some("10.0.2.10"), "10.0.1.200", TCP, (40000, 8080), SYN, F_TRACE, 0)
            .frame("eni-app-pub", None, "10.0.2.10", TCP, (8080, 40000), SYN_ACK, F_TRACE, 0)
            .frame("eni-appl", Some("10.0.1.200"), "10.0.2.10", TCP, (8080, 40000), SYN_ACK, F_TRACE, 0)
            .frame("eni-appl", Some("8.8.8.8"), "10.0.1.10", UDP, (5000, 5001), 0, 0, 0);
    });
}

/// ARP from every ENI for its router and a neighbour; the internet asks for its gateway.
fn arp_seeds(seeds: &mut Seeds) {
    seeds.add("arp", |s| {
        let m = model();
        for e in &m.enis {
            let router = m.subnets[e.subnet.index()].cidr.router().to_string();
            s.frame(&e.id, None, &router, ARP, (0, 0), 0, 0, 0);
        }
        s.frame("eni-web", None, "10.0.1.200", ARP, (0, 0), 0, 0, 0)
            .frame("eni-web", None, "10.0.1.100", ARP, (0, 0), 0, 0, 0)
            .frame(INET, Some(HOST), "169.254.0.1", ARP, (0, 0), 0, F_TRACE, 0)
            .frame(INET, Some(HOST), "203.0.113.20", ARP, (0, 0), 0, 0, 0);
    });
}

/// The bounds and the offloads: the MTU and TSO, a full connection table, partial checksums.
fn limit_and_offload_seeds(seeds: &mut Seeds) {
    // The MTU towards the internet: with DF a big packet is answered (fragmentation needed),
    // without DF it is dropped; a TSO superframe is judged by its segments.
    seeds.add("mtu-and-gso", |s| {
        let big = |ip_bits: u8| Spec {
            dst: addr(HOST),
            kind: UDP,
            sport: 5000,
            dport: 5001,
            payload8: 200,
            ip_bits,
            ..Spec::default()
        };
        s.spec("eni-web", big(1), F_TRACE, 0, 0).spec("eni-web", big(0), 0, 0, 0).spec(
            "eni-app",
            big(1),
            F_TRACE,
            0,
            0,
        );
        let tso = Spec {
            dst: addr(HOST),
            kind: TCP,
            sport: 40000,
            dport: 80,
            tcp_flags: ACK,
            payload8: 250,
            ip_bits: 1,
            ..Spec::default()
        };
        s.frame("eni-web", None, HOST, TCP, (40000, 80), SYN, 0, 0)
            .spec("eni-web", tso, F_GSO | F_CSUM_PARTIAL, 1448, 0)
            .spec("eni-web", tso, F_GSO | F_CSUM_PARTIAL | F_TRACE, 8948, 0);
    });

    // The web ENI's table holds four connections: the fifth new flow is refused; time frees it.
    seeds.add("conntrack-full", |s| {
        for sport in 0..6u16 {
            s.frame("eni-web", None, HOST, UDP, (6000 + sport, 5000), 0, 0, 0);
        }
        s.frame("eni-web", None, HOST, UDP, (6010, 5000), 0, F_TIMEOUT | F_TRACE, 0x40 | 61)
            .frame("eni-app-pub", None, "10.0.1.10", TCP, (6020, 80), SYN, 0, 0)
            .frame("eni-app-pub", None, "10.0.1.10", TCP, (6021, 80), SYN, 0, 0)
            .frame("eni-app-pub", None, "10.0.1.10", TCP, (6022, 80), SYN, F_TRACE, 0);
    });

    // Checksum offload: partial checksums through the NAT gateway and the Elastic IP mapping.
    seeds.add("csum-partial", |s| {
        s.frame("eni-app", None, HOST, TCP, (43000, 80), SYN, F_CSUM_PARTIAL, 0)
            .frame(INET, Some(HOST), "203.0.113.10", TCP, (80, 1024), SYN_ACK, F_CSUM_PARTIAL, 0)
            .frame("eni-web", None, HOST, UDP, (43001, 53), 0, F_CSUM_PARTIAL, 0)
            .frame(INET, Some(HOST), "203.0.113.20", UDP, (53, 43001), 0, F_CSUM_PARTIAL, 0);
    });
}

/// What the pipeline drops or answers with an error: routes that drop, ICMP errors, spoofing.
fn drop_seeds(seeds: &mut Seeds) {
    // Routes that drop: blackhole, a detached ENI, no route, nobody, a stopped instance, and
    // fragments at the NAT gateway; ICMP errors about tracked flows.
    seeds.add("drops-and-errors", |s| {
        s.frame("eni-app", None, "192.0.2.5", UDP, (1, 2), 0, 0, 0)
            .frame("eni-app", None, "198.18.0.1", UDP, (1, 2), 0, F_TRACE, 0)
            .frame("eni-b1", None, "10.2.0.1", UDP, (1, 2), 0, 0, 0)
            .frame("eni-web", None, "10.0.9.9", UDP, (1, 2), 0, 0, 0)
            .frame("eni-web", None, "10.1.1.20", TCP, (1, 22), SYN, F_TRACE, 0)
            .frame("eni-b2", None, "10.1.1.10", UDP, (1, 2), 0, 0, 0)
            .spec(
                "eni-app",
                Spec { dst: addr(HOST), kind: UDP, sport: 7, dport: 7, ip_bits: 2, ..Spec::default() },
                0,
                0,
                0,
            )
            .frame("eni-web", None, "10.0.2.10", UDP, (44000, 53), 0, 0, 0)
            .frame("eni-app", None, "10.0.1.10", ICMP_ERR_UDP, (53, 44000), 0, F_TRACE, 0)
            .frame("eni-web", None, HOST, TCP, (44001, 80), SYN, 0, 0)
            .frame(INET, Some(HOST), "203.0.113.20", ICMP_ERR_TCP, (80, 44001), SYN, F_TRACE, 0);
    });

    // Spoofing: another ENI's MAC or address; the source check on and off.
    seeds.add("spoofing", |s| {
        let spoof = Spec {
            dst: addr("10.0.2.10"),
            kind: UDP,
            sport: 1,
            dport: 53,
            src_mac: mac_of(model().enis[1].mac),
            ..Spec::default()
        };
        s.spec("eni-web", spoof, 0, 0, 0)
            .frame("eni-web", Some("10.0.1.200"), "10.0.2.10", UDP, (1, 53), 0, 0, 0)
            .frame("eni-appl", Some("10.0.1.200"), "10.0.2.10", UDP, (1, 53), 0, 0, 0);
    });
}

/// A frame built from `spec` as the ENI (or the internet) `from` sends it.
fn raw_frame(from: &str, spec: Spec, partial: bool) -> Vec<u8> {
    let m = model();
    build_frame(m, m.eni_by_id(from), &spec, partial)
}

/// Frames of the scenarios above as raw bytes, for the byte mutations (checksums fixed before
/// sending).
fn raw_seeds(seeds: &mut Seeds) {
    seeds.add("raw-web-internet", |s| {
        let syn = Spec { dst: addr(HOST), kind: TCP, sport: 40000, dport: 80, tcp_flags: SYN, ..Spec::default() };
        let synack = Spec {
            src: addr(HOST),
            dst: addr("203.0.113.20"),
            kind: TCP,
            sport: 80,
            dport: 40000,
            tcp_flags: SYN_ACK,
            ..Spec::default()
        };
        s.raw("eni-web", &raw_frame("eni-web", syn, false), F_FIX_CSUM | F_TRACE, 0);
        s.raw(INET, &raw_frame(INET, synack, false), F_FIX_CSUM | F_TRACE, 0);
    });
    seeds.add("raw-nat", |s| {
        let nat = Spec { dst: addr("8.8.8.8"), kind: UDP, sport: 40000, dport: 53, payload8: 4, ..Spec::default() };
        let back = Spec {
            src: addr("8.8.8.8"),
            dst: addr("203.0.113.10"),
            kind: UDP,
            sport: 53,
            dport: 1024,
            ..Spec::default()
        };
        s.raw("eni-app", &raw_frame("eni-app", nat, true), F_FIX_CSUM | F_CSUM_PARTIAL, 0);
        s.raw(INET, &raw_frame(INET, back, false), F_FIX_CSUM | F_TRACE, 0);
    });
    seeds.add("raw-misc", |s| {
        let m = model();
        let peer = Spec { dst: addr("10.1.1.10"), kind: ECHO, sport: 5, ..Spec::default() };
        let err = Spec {
            src: addr("10.0.2.10"),
            dst: addr(HOST),
            kind: ICMP_ERR_UDP,
            sport: 53,
            dport: 1024,
            ..Spec::default()
        };
        s.raw("eni-web", &raw_frame("eni-web", peer, false), F_TRACE, 0)
            .raw("eni-app", &raw_frame("eni-app", err, false), F_FIX_CSUM, 0)
            .raw(
                "eni-web",
                &vpclab::packet::build::arp_request(m.enis[0].mac, m.enis[0].private_ip, "10.0.1.1".parse().unwrap()),
                F_TRACE,
                0,
            );
    });
}

fn control_seeds() -> Vec<(String, String)> {
    use vpclab::change::{Change, Operation};
    let op = |name: &str, op: Operation| {
        (format!("change-{name}"), Request::Change { change: Change::Operation { op }, dry_run: false })
    };
    let mut reqs = vec![
        ("status".to_string(), Request::Status),
        (
            "trace".to_string(),
            Request::Trace {
                from: "web".into(),
                to: "10.0.2.10".parse().unwrap(),
                protocol: IpProto::TCP,
                src_port: 40000,
                dst_port: 8080,
            },
        ),
        ("conntrack-all".to_string(), Request::Conntrack { eni: None }),
        ("conntrack-eni".to_string(), Request::Conntrack { eni: Some("eni-web".into()) }),
        (
            "change-file".to_string(),
            Request::Change {
                change: Change::File { text: vpclab::topology::DEFAULT_TOPOLOGY.into(), file: "default.toml".into() },
                dry_run: true,
            },
        ),
        ("export".to_string(), Request::Export),
        ("shutdown".to_string(), Request::Shutdown),
    ];
    reqs.push(op(
        "attach",
        Operation::AttachNetworkInterface {
            network_interface_id: "eni-app-float".into(),
            instance_id: "standby".into(),
            device_index: 1,
        },
    ));
    reqs.push(op(
        "detach",
        Operation::DetachNetworkInterface { network_interface_id: "eni-app-float".into(), force: true },
    ));
    reqs.push(op(
        "assign-ips",
        Operation::AssignPrivateIpAddresses {
            network_interface_id: "eni-web".into(),
            private_ip_addresses: vec!["10.0.1.12".into()],
            allow_reassignment: true,
        },
    ));
    reqs.push(op(
        "associate-address",
        Operation::AssociateAddress {
            allocation_id: "eipalloc-web".into(),
            network_interface_id: Some("eni-web".into()),
            private_ip_address: Some("10.0.1.11".into()),
            instance_id: None,
            allow_reassociation: true,
        },
    ));
    reqs.push(op(
        "modify-eni",
        Operation::ModifyNetworkInterfaceAttribute {
            network_interface_id: "eni-web".into(),
            source_dest_check: Some(false),
            groups: Some(vec!["sg-web".into(), "sg-app".into()]),
        },
    ));
    reqs.push(op(
        "authorize-ingress",
        Operation::AuthorizeSecurityGroupIngress {
            group_id: "sg-web".into(),
            rule: vpclab::change::ops::RuleSpec {
                protocol: "tcp".into(),
                port: Some("22-23".into()),
                cidr: None,
                source_group: Some("sg-app".into()),
            },
        },
    ));
    reqs.push(op(
        "create-route",
        Operation::CreateRoute {
            route_table_id: "rtb-private".into(),
            destination_cidr_block: "192.0.2.0/25".into(),
            target: "eni-app".into(),
        },
    ));
    reqs.push(op(
        "create-acl-entry",
        Operation::CreateNetworkAclEntry {
            network_acl_id: "acl-public".into(),
            rule_number: 90,
            egress: false,
            entry: vpclab::change::ops::AclEntrySpec {
                protocol: "udp".into(),
                rule_action: "deny".into(),
                cidr_block: "0.0.0.0/0".into(),
                port_range: Some("From=53,To=53".into()),
            },
        },
    ));
    reqs.push(op("stop", Operation::StopInstances { instance_ids: vec!["app".into(), "standby".into()] }));
    reqs.push(op(
        "create-flow-logs",
        Operation::CreateFlowLogs {
            resource_ids: vec!["subnet-private".into()],
            resource_type: "Subnet".into(),
            traffic_type: "REJECT".into(),
            log_destination_type: "file".into(),
            log_destination: "/tmp/vpclab-fuzz/private.log".into(),
            log_format: Some("${version} ${interface-id} ${tcp-flags} ${action}".into()),
            max_aggregation_interval: Some(60),
            flow_log_id: Some("fl-private".into()),
            account_id: None,
        },
    ));
    reqs.push(op("delete-flow-logs", Operation::DeleteFlowLogs { flow_log_ids: vec!["fl-private".into()] }));
    reqs.into_iter()
        .map(|(n, r)| {
            let mut line = serde_json::to_string(&r).unwrap();
            line.push('\n');
            (n, line)
        })
        .collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, data) in pipeline_seeds() {
        // Every seed passes the target's own checks before it is written.
        let tally = run_pipeline(&data);
        assert!(tally.frames > 0, "{name}");
        write(&root.join("pipeline"), &name, &data);
        println!("pipeline/{name}: {} bytes, {tally:?}", data.len());
    }
    for (name, line) in control_seeds() {
        vpclab_fuzz::control::run(line.as_bytes());
        write(&root.join("control_request"), &name, line.as_bytes());
        println!("control_request/{name}: {} bytes", line.len());
    }
}
