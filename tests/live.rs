//! Live labs (issue 7): a running lab changed by the EC2-named verbs and by `apply`, proven with
//! real traffic between the namespaces of real labs before and after each change, and with what
//! `vpclab status --json`, `vpclab events --json` and the namespaces themselves (`ip -j ...`) say.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::Value;

const FLOAT: &str = "10.0.2.50";
const FLOAT_MAC: &str = "02:00:00:00:02:50";
const EXAMPLE: &str = "198.51.100.7";
const EIP: &str = "203.0.113.20";

/// One VPC: `client` in subnet A; `app` and `standby` (t3.micro: 2 ENIs each) in subnet B.
/// `eni-float` (10.0.2.50, its own group admitting tcp 5001 and udp 7000 from subnet A) is app's
/// device 1; `eni-spare` is attached nowhere.
const LIVE: &str = r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-test"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-b"
vpc = "vpc-test"
cidr = "10.0.2.0/24"

[[security_group]]
id = "sg-all"
vpc = "vpc-test"
ingress = [ { protocol = "all", source = "10.0.0.0/16" } ]

[[security_group]]
id = "sg-svc"
vpc = "vpc-test"
ingress = [
  { protocol = "tcp", ports = "5001", source = "10.0.1.0/24" },
  { protocol = "udp", ports = "7000", source = "10.0.1.0/24" },
  { protocol = "icmp", source = "10.0.0.0/16" },
]

[[instance]]
id = "client"

[[instance]]
id = "app"
instance_type = "t3.micro"

[[instance]]
id = "standby"
instance_type = "t3.micro"

[[network_interface]]
id = "eni-client"
subnet = "subnet-a"
private_ip = "10.0.1.10"
security_groups = ["sg-all"]
attachment = { instance = "client", device_index = 0 }

[[network_interface]]
id = "eni-app"
subnet = "subnet-b"
private_ip = "10.0.2.10"
security_groups = ["sg-all"]
attachment = { instance = "app", device_index = 0 }

[[network_interface]]
id = "eni-standby"
subnet = "subnet-b"
private_ip = "10.0.2.20"
security_groups = ["sg-all"]
attachment = { instance = "standby", device_index = 0 }

[[network_interface]]
id = "eni-float"
subnet = "subnet-b"
private_ip = "10.0.2.50"
mac_address = "02:00:00:00:02:50"
security_groups = ["sg-svc"]
attachment = { instance = "app", device_index = 1 }

[[network_interface]]
id = "eni-spare"
subnet = "subnet-b"
private_ip = "10.0.2.60"
security_groups = ["sg-all"]
"#;

const FLOAT_ON_APP: &str = r#"attachment = { instance = "app", device_index = 1 }"#;
const FLOAT_ON_STANDBY: &str = r#"attachment = { instance = "standby", device_index = 1 }"#;

/// [`LIVE`] with eni-float attached to standby instead of app.
fn live_moved() -> String {
    assert!(LIVE.contains(FLOAT_ON_APP));
    LIVE.replace(FLOAT_ON_APP, FLOAT_ON_STANDBY)
}

// ---------------------------------------------------------------------------------------------
// Changing the lab

/// `vpclab VERB --lab LAB ARGS...`.
fn change(lab: &TestLab, verb: &str, args: &[&str]) -> Output {
    let mut all = vec![verb, "--lab", &lab.name];
    all.extend_from_slice(args);
    vpclab(&all)
}

/// A change that must succeed; returns its plan (stdout).
fn ok(lab: &TestLab, verb: &str, args: &[&str]) -> String {
    let out = change(lab, verb, args);
    assert!(out.status.success(), "vpclab {verb} {args:?} failed ({:?}):\n{}", out.status.code(), text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `detach-network-interface` -> `DetachNetworkInterface`.
fn action(verb: &str) -> String {
    verb.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The AWS CLI's refusal: exit 254 and `An error occurred (CODE) when calling the ACTION
/// operation: ...` on standard error.
fn assert_refused(out: &Output, code: &str, action: Option<&str>, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{what}: expected exit 254 ({code}):\n{}", text(out));
    let head = match action {
        Some(a) => format!("An error occurred ({code}) when calling the {a} operation: "),
        None => format!("An error occurred ({code}) when calling the "),
    };
    assert!(stderr.contains(&head), "{what}: expected `{head}` on stderr:\n{}", text(out));
}

/// A change that must be refused with `code`.
fn refused(lab: &TestLab, verb: &str, args: &[&str], code: &str) {
    let out = change(lab, verb, args);
    assert_refused(&out, code, Some(&action(verb)), &format!("vpclab {verb} {args:?}"));
}

/// A topology file for `apply` to a running lab (the lab's own name, then `body`); removed when
/// dropped.
struct LabFile(PathBuf);

impl LabFile {
    fn new(lab: &TestLab, tag: &str, body: &str) -> LabFile {
        LabFile::raw(lab, tag, &format!("name = \"{}\"\n{body}", lab.name))
    }

    fn raw(lab: &TestLab, tag: &str, text: &str) -> LabFile {
        let path = std::env::temp_dir().join(format!("{}-{tag}.toml", lab.name));
        std::fs::write(&path, text).unwrap();
        LabFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for LabFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn apply(lab: &TestLab, file: &LabFile, dry_run: bool) -> Output {
    let mut args = vec!["apply", "--lab", &lab.name, file.path()];
    if dry_run {
        args.push("--dry-run");
    }
    vpclab(&args)
}

/// An `apply` that must succeed; returns its output.
fn apply_ok(lab: &TestLab, file: &LabFile, dry_run: bool) -> String {
    let out = apply(lab, file, dry_run);
    assert!(out.status.success(), "vpclab apply {} (dry run: {dry_run}) failed:\n{}", file.path(), text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_plan_has(plan: &str, step: &str) {
    assert!(plan.lines().any(|l| l.trim() == step), "plan lacks `{step}`:\n{plan}");
}

// ---------------------------------------------------------------------------------------------
// What the lab says

/// `vpclab events --lab LAB --json`, one object per line.
fn events(lab: &TestLab) -> Vec<Value> {
    let out = vpclab(&["events", "--lab", &lab.name, "--json"]);
    assert!(out.status.success(), "events failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("events --json line {l:?}: {e}")))
        .collect()
}

fn has_event(evs: &[Value], kind: &str, needle: &str) -> bool {
    evs.iter().any(|e| e["kind"] == kind && e["text"].as_str().is_some_and(|t| t.contains(needle)))
}

fn count_events(evs: &[Value], kind: &str, text: &str) -> usize {
    evs.iter().filter(|e| e["kind"] == kind && e["text"] == text).count()
}

/// Waits for an event of `kind` whose text contains `needle`.
fn await_event(lab: &TestLab, kind: &str, needle: &str) {
    let mut seen = Vec::new();
    let found = eventually(5, || {
        seen = events(lab);
        has_event(&seen, kind, needle)
    });
    assert!(found, "no {kind} event containing `{needle}`; events:\n{}", pretty(&seen));
}

fn pretty(evs: &[Value]) -> String {
    evs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
}

fn status_enis(lab: &TestLab) -> Vec<Value> {
    lab.status()["enis"].as_array().expect("status has enis").clone()
}

fn find_eni(lab: &TestLab, id: &str) -> Option<Value> {
    status_enis(lab).into_iter().find(|e| e["id"] == id)
}

/// Each ENI's placement and addresses (no counters), by id: what a refused change must not touch.
fn placements(lab: &TestLab) -> Vec<Value> {
    let mut v: Vec<Value> = status_enis(lab)
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e["id"], "instance": e["instance"], "instance_state": e["instance_state"],
                "interface": e["interface"], "mac": e["mac"], "ips": e["ips"],
            })
        })
        .collect();
    v.sort_by_key(|e| e["id"].to_string());
    v
}

/// Where status says an ENI is: (instance, interface).
fn placed(lab: &TestLab, eni: &str) -> (Value, Value) {
    let e = lab.eni(eni);
    (e["instance"].clone(), e["interface"].clone())
}

fn ips_of(lab: &TestLab, eni: &str) -> Vec<String> {
    lab.eni(eni)["ips"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect()
}

/// Sum of one drop reason over every ENI of the lab.
fn drops_total(lab: &TestLab, reason: &str) -> u64 {
    status_enis(lab).iter().map(|e| e["drops"][reason].as_u64().unwrap_or(0)).sum()
}

// ---------------------------------------------------------------------------------------------
// Inside the namespaces

/// `ip -n NS -j ARGS...`, parsed; None when ip fails (no such namespace or device).
fn ip_json(ns: &str, args: &[&str]) -> Option<Value> {
    let out = Command::new("ip").args(["-n", ns, "-j"]).args(args).output().expect("ip runs");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn has_link(ns: &str, dev: &str) -> bool {
    ip_json(ns, &["link", "show", "dev", dev]).is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
}

fn link_mac(ns: &str, dev: &str) -> Option<String> {
    let v = ip_json(ns, &["link", "show", "dev", dev])?;
    v[0]["address"].as_str().map(str::to_string)
}

/// The IPv4 addresses of `dev` in `ns`.
fn ipv4s(ns: &str, dev: &str) -> Vec<String> {
    let Some(v) = ip_json(ns, &["-4", "addr", "show", "dev", dev]) else { return Vec::new() };
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().map(str::to_string))
        .collect()
}

fn ip_lines(ns: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new("ip").args(["-n", ns]).args(args).output().expect("ip runs");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect();
    v.sort();
    v
}

/// A namespace's interfaces (name, MAC, MTU, state, addresses), policy rules and routes of every
/// table: what a rolled-back change must leave exactly as it was.
fn ns_state(ns: &str) -> Value {
    let links = ip_json(ns, &["addr"]).unwrap_or_else(|| panic!("ip -n {ns} -j addr"));
    let mut ifaces: Vec<Value> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let mut addrs: Vec<String> = l["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} {}/{}", a["family"], a["local"], a["prefixlen"]))
                .collect();
            addrs.sort();
            serde_json::json!({
                "ifname": l["ifname"], "address": l["address"], "mtu": l["mtu"],
                "operstate": l["operstate"], "flags": l["flags"], "addrs": addrs,
            })
        })
        .collect();
    ifaces.sort_by_key(|i| i["ifname"].to_string());
    serde_json::json!({
        "interfaces": ifaces,
        "rules": ip_lines(ns, &["rule"]),
        "routes": ip_lines(ns, &["route", "show", "table", "all"]),
    })
}

/// One ping from an instance, one second to answer.
/// Pids of processes in a namespace whose command is `comm`.
fn procs_in(ns: &str, comm: &str) -> Vec<u32> {
    let out = Command::new("ip").args(["netns", "pids", ns]).output().expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

/// A process started in an instance with `vpclab exec`; killed (by its pid) if still running
/// when dropped.
struct Proc(Child);

impl Proc {
    fn start(lab: &TestLab, instance: &str, cmd: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .args(["exec", "--lab", &lab.name, instance, "--"])
            .args(cmd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("vpclab exec starts");
        Proc(child)
    }

    fn ended(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_some()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.ended() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Services that say who they are

/// A server thread stopped (and joined) when dropped.
struct Service {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    accepted: Arc<AtomicUsize>,
}

impl Service {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP server in `ns` on `a` answering every datagram with `name`.
fn udp_whoami(ns: &str, a: SocketAddrV4, name: &str) -> Service {
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let (st, acc, name) = (Arc::clone(&stop), Arc::clone(&accepted), name.to_string());
    let thread = in_ns(ns, move || {
        let s = match UdpSocket::bind(a) {
            Ok(s) => s,
            Err(e) => {
                tx.send(Err(e.to_string())).unwrap();
                return;
            }
        };
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        tx.send(Ok(())).unwrap();
        let mut buf = [0u8; 2048];
        while !st.load(Ordering::SeqCst) {
            if let Ok((_, from)) = s.recv_from(&mut buf) {
                acc.fetch_add(1, Ordering::SeqCst);
                let _ = s.send_to(name.as_bytes(), from);
            }
        }
    });
    let bound = rx.recv_timeout(Duration::from_secs(5)).expect("server thread answers");
    bound.unwrap_or_else(|e| panic!("binding {a} in {ns}: {e}"));
    Service { stop, thread: Some(thread), accepted }
}

/// Asks a [`udp_whoami`] server who it is (from any address of `ns`); None: no answer in 3 s.
fn udp_ask(ns: &str, dst: SocketAddrV4) -> Option<String> {
    udp_roundtrip(ns, None, dst, b"who are you").ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Accepts on `l` until stopped, handing each connection to `serve` on its own thread.
fn accept_loop(l: std::net::TcpListener, serve: fn(std::net::TcpStream, &str), name: &str) -> Service {
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (st, acc, name) = (Arc::clone(&stop), Arc::clone(&accepted), name.to_string());
    l.set_nonblocking(true).unwrap();
    let thread = thread::spawn(move || {
        while !st.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => {
                    acc.fetch_add(1, Ordering::SeqCst);
                    s.set_nonblocking(false).unwrap();
                    let name = name.clone();
                    thread::spawn(move || serve(s, &name));
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Service { stop, thread: Some(thread), accepted }
}

/// A TCP server in `ns` on `a` that writes `name` to each connection and closes it.
fn tcp_whoami(ns: &str, a: SocketAddrV4, name: &str) -> Service {
    accept_loop(
        tcp_listen(ns, a),
        |mut s, name| {
            let _ = s.write_all(name.as_bytes());
        },
        name,
    )
}

/// Connects from `ns` and reads what a [`tcp_whoami`] server says.
fn tcp_ask(ns: &str, dst: SocketAddrV4) -> std::io::Result<String> {
    let mut s = tcp_connect(ns, dst, 3)?;
    let mut back = String::new();
    s.read_to_string(&mut back)?;
    Ok(back)
}

/// A TCP echo server in `ns` on `a`, echoing every connection until its peer closes it.
fn tcp_echo(ns: &str, a: SocketAddrV4) -> Service {
    accept_loop(
        tcp_listen(ns, a),
        |mut s, _| {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = vec![0u8; 65536];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        },
        "",
    )
}

// ---------------------------------------------------------------------------------------------
// 1, 2: moving an ENI

#[test]
fn an_eni_moved_with_detach_and_attach_takes_its_address_mac_and_groups_to_the_new_instance() {
    let lab = TestLab::up("mvcli", LIVE);
    let (client, app, standby) = (lab.ns("client"), lab.ns("app"), lab.ns("standby"));
    assert_eq!(lab.eni("eni-float")["mac"], FLOAT_MAC, "{}", lab.eni("eni-float"));
    assert_eq!(link_mac(&app, "eth1").as_deref(), Some(FLOAT_MAC));

    // Before: the floating address is served by app.
    let svc = udp_whoami(&app, addr(FLOAT, 7000), "app");
    assert_eq!(udp_ask(&client, addr(FLOAT, 7000)).as_deref(), Some("app"));
    drop(svc);

    let plan = ok(&lab, "detach-network-interface", &["--network-interface-id", "eni-float"]);
    assert_plan_has(&plan, "DetachNetworkInterface eni-float from app");
    assert!(!has_link(&app, "eth1"), "app still has eth1 after the detach: {:?}", ip_json(&app, &["link"]));
    let e = lab.eni("eni-float");
    assert!(e["instance"].is_null() && e["interface"].is_null(), "a detached ENI has no instance: {e}");
    assert!(!pings(&lab, "client", FLOAT), "a detached ENI answered");

    let plan = ok(
        &lab,
        "attach-network-interface",
        &["--network-interface-id", "eni-float", "--instance-id", "standby", "--device-index", "1"],
    );
    assert_plan_has(&plan, "AttachNetworkInterface eni-float -> standby (device 1)");

    // Inside standby: eth1, the same MAC, the floating address, ec2-net-utils policy routing.
    assert_eq!(link_mac(&standby, "eth1").as_deref(), Some(FLOAT_MAC), "{:?}", ip_json(&standby, &["link"]));
    assert_eq!(ipv4s(&standby, "eth1"), [FLOAT]);
    let rules = ip_lines(&standby, &["rule"]).join("\n");
    assert!(rules.contains(&format!("from {FLOAT} lookup 10001")), "{rules}");
    assert!(!has_link(&app, "eth1"), "app has eth1 again");
    assert_eq!(ipv4s(&app, "eth0"), ["10.0.2.10"], "app keeps its own address only");
    assert_eq!(placed(&lab, "eni-float"), ("standby".into(), "eth1".into()), "{}", lab.eni("eni-float"));
    assert_eq!(lab.eni("eni-float")["mac"], FLOAT_MAC);
    assert_eq!(ips_of(&lab, "eni-float"), [FLOAT]);

    // The service on the floating address now answers from standby, UDP and TCP, and the ENI's
    // group (sg-svc) came along: it admits 5001 from subnet A and nothing on 5002.
    let svc = udp_whoami(&standby, addr(FLOAT, 7000), "standby");
    assert_eq!(udp_ask(&client, addr(FLOAT, 7000)).as_deref(), Some("standby"));
    let tcp = tcp_whoami(&standby, addr(FLOAT, 5001), "standby over tcp");
    assert_eq!(tcp_ask(&client, addr(FLOAT, 5001)).expect("TCP to the moved address"), "standby over tcp");
    let _closed = tcp_whoami(&standby, addr(FLOAT, 5002), "no rule");
    let before = lab.drops("eni-float", "security_group_ingress");
    assert!(tcp_ask(&client, addr(FLOAT, 5002)).is_err(), "sg-svc did not move with the ENI");
    assert!(lab.drops("eni-float", "security_group_ingress") > before, "{}", lab.eni("eni-float"));
    assert_eq!(svc.accepted(), 1);
    assert_eq!(tcp.accepted(), 1);

    let evs = events(&lab);
    assert!(has_event(&evs, "applied", "DetachNetworkInterface eni-float from app"), "{}", pretty(&evs));
    assert!(has_event(&evs, "applied", "AttachNetworkInterface eni-float -> standby (device 1)"), "{}", pretty(&evs));
    await_event(&lab, "dataplane", "first frame delivered to eni-float in standby (eth1)");
    for e in events(&lab) {
        assert!(e["at_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "at_ms is unix ms: {e}");
    }
}

#[test]
fn apply_moves_an_eni_and_a_second_apply_or_a_dry_run_changes_nothing() {
    let lab = TestLab::up("mvapply", LIVE);
    let (client, app, standby) = (lab.ns("client"), lab.ns("app"), lab.ns("standby"));
    let moved = LabFile::new(&lab, "moved", &live_moved());
    let before = placements(&lab);

    let dry = apply_ok(&lab, &moved, true);
    assert_plan_has(&dry, "DetachNetworkInterface eni-float from app");
    assert_plan_has(&dry, "AttachNetworkInterface eni-float -> standby (device 1)");
    assert!(dry.contains("(dry run: nothing was changed)"), "{dry}");
    assert!(!dry.contains("applied: generation"), "{dry}");
    assert_eq!(placements(&lab), before, "the dry run changed the lab");
    assert_eq!(ipv4s(&app, "eth1"), [FLOAT]);
    assert!(!has_link(&standby, "eth1"));
    assert!(pings(&lab, "client", FLOAT));

    let out = apply_ok(&lab, &moved, false);
    assert_plan_has(&out, "DetachNetworkInterface eni-float from app");
    assert_plan_has(&out, "AttachNetworkInterface eni-float -> standby (device 1)");
    assert!(out.lines().any(|l| l.starts_with("applied: generation ")), "{out}");
    assert_eq!(placed(&lab, "eni-float"), ("standby".into(), "eth1".into()));
    assert!(!has_link(&app, "eth1"), "app kept eth1");
    assert_eq!(ipv4s(&standby, "eth1"), [FLOAT]);
    assert_eq!(link_mac(&standby, "eth1").as_deref(), Some(FLOAT_MAC));

    let svc = tcp_whoami(&standby, addr(FLOAT, 5001), "standby");
    assert_eq!(tcp_ask(&client, addr(FLOAT, 5001)).expect("TCP follows the ENI"), "standby");
    assert!(pings(&lab, "client", FLOAT));
    drop(svc);

    let again = apply_ok(&lab, &moved, false);
    assert_eq!(again.trim(), "No changes.", "{again}");
    let again = apply_ok(&lab, &moved, true);
    assert_eq!(again.trim(), "No changes.", "{again}");

    // The timeline holds the applied steps once: neither the dry run nor the no-op recorded any.
    let evs = events(&lab);
    assert_eq!(count_events(&evs, "applied", "DetachNetworkInterface eni-float from app"), 1, "{}", pretty(&evs));
    assert_eq!(
        count_events(&evs, "applied", "AttachNetworkInterface eni-float -> standby (device 1)"),
        1,
        "{}",
        pretty(&evs)
    );
    await_event(&lab, "dataplane", "first frame delivered to eni-float in standby (eth1)");

    // And back, by applying the original.
    let back = LabFile::new(&lab, "back", LIVE);
    let out = apply_ok(&lab, &back, false);
    assert_plan_has(&out, "DetachNetworkInterface eni-float from standby");
    assert_plan_has(&out, "AttachNetworkInterface eni-float -> app (device 1)");
    assert_eq!(placed(&lab, "eni-float"), ("app".into(), "eth1".into()));
    let _svc = udp_whoami(&app, addr(FLOAT, 7000), "app again");
    assert_eq!(udp_ask(&client, addr(FLOAT, 7000)).as_deref(), Some("app again"));
}

// ---------------------------------------------------------------------------------------------
// 3: private IP reassignment

/// `app` holds 10.0.2.11 as a secondary address; `standby` is to take it. `near` is a client in
/// the same subnet (its ARP cache holds the address), `far` one in another subnet.
const REASSIGN: &str = r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-test"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-b"
vpc = "vpc-test"
cidr = "10.0.2.0/24"

[[security_group]]
id = "sg-all"
vpc = "vpc-test"
ingress = [ { protocol = "all", source = "10.0.0.0/16" } ]

[[instance]]
id = "app"

[[instance]]
id = "standby"

[[instance]]
id = "near"

[[instance]]
id = "far"

[[network_interface]]
id = "eni-app"
subnet = "subnet-b"
private_ip = "10.0.2.10"
secondary_private_ips = ["10.0.2.11"]
security_groups = ["sg-all"]
attachment = { instance = "app", device_index = 0 }

[[network_interface]]
id = "eni-standby"
subnet = "subnet-b"
private_ip = "10.0.2.20"
security_groups = ["sg-all"]
attachment = { instance = "standby", device_index = 0 }

[[network_interface]]
id = "eni-near"
subnet = "subnet-b"
private_ip = "10.0.2.30"
security_groups = ["sg-all"]
attachment = { instance = "near", device_index = 0 }

[[network_interface]]
id = "eni-far"
subnet = "subnet-a"
private_ip = "10.0.1.10"
security_groups = ["sg-all"]
attachment = { instance = "far", device_index = 0 }
"#;

/// The near client's neighbour entry for `ip`: its MAC, if any.
fn neighbour(ns: &str, ip: &str) -> Option<String> {
    let v = ip_json(ns, &["neigh", "show", ip])?;
    v.as_array()?.iter().find_map(|n| n["lladdr"].as_str().map(str::to_string))
}

#[test]
fn a_secondary_ip_moves_with_allow_reassignment_and_answers_from_its_new_owner_at_once() {
    let lab = TestLab::up("reassign", REASSIGN);
    let (app, standby, near, far) = (lab.ns("app"), lab.ns("standby"), lab.ns("near"), lab.ns("far"));
    let moving = addr("10.0.2.11", 7000);

    let old_owner = udp_whoami(&app, moving, "app");
    assert_eq!(udp_ask(&near, moving).as_deref(), Some("app"));
    assert_eq!(udp_ask(&far, moving).as_deref(), Some("app"));
    let cached = neighbour(&near, "10.0.2.11");
    assert!(cached.is_some(), "near resolved 10.0.2.11: {:?}", ip_json(&near, &["neigh"]));

    // Without --allow-reassignment: refused, and nothing moved.
    let before = placements(&lab);
    refused(
        &lab,
        "assign-private-ip-addresses",
        &["--network-interface-id", "eni-standby", "--private-ip-addresses", "10.0.2.11"],
        "PrivateIpAddressInUse",
    );
    assert_eq!(placements(&lab), before);
    assert_eq!(ipv4s(&app, "eth0"), ["10.0.2.10", "10.0.2.11"]);
    assert_eq!(ipv4s(&standby, "eth0"), ["10.0.2.20"]);
    assert_eq!(udp_ask(&near, moving).as_deref(), Some("app"), "after the refusal");
    assert_eq!(udp_ask(&far, moving).as_deref(), Some("app"), "after the refusal");
    await_event(&lab, "refused", "PrivateIpAddressInUse");

    // With it: the address is standby's at once.
    let plan = ok(
        &lab,
        "assign-private-ip-addresses",
        &["--network-interface-id", "eni-standby", "--private-ip-addresses", "10.0.2.11", "--allow-reassignment"],
    );
    assert!(plan.contains("AssignPrivateIpAddresses eni-standby 10.0.2.11"), "{plan}");
    assert_eq!(ipv4s(&standby, "eth0"), ["10.0.2.20", "10.0.2.11"], "standby's eth0 holds the address");
    assert_eq!(ipv4s(&app, "eth0"), ["10.0.2.10"], "app's eth0 let it go");
    let new_owner = udp_whoami(&standby, moving, "standby");
    // The same client, its ARP cache untouched, no waiting: the first datagram is answered by standby.
    assert_eq!(
        udp_ask(&near, moving).as_deref(),
        Some("standby"),
        "the first try after the move, near's neighbour entry for 10.0.2.11 still {cached:?}; eni-app: {}",
        lab.eni("eni-app")
    );
    assert_eq!(neighbour(&near, "10.0.2.11"), cached, "the test relies on the client's cached entry");
    assert_eq!(udp_ask(&far, moving).as_deref(), Some("standby"));
    for _ in 0..3 {
        assert_eq!(udp_ask(&near, moving).as_deref(), Some("standby"));
    }
    assert!(pings(&lab, "far", "10.0.2.11"));
    let old_count = old_owner.accepted();
    assert_eq!(old_count, 4, "app answered only before the move (2) and after the refusal (2)");
    assert_eq!(new_owner.accepted(), 5);

    assert_eq!(ips_of(&lab, "eni-standby"), ["10.0.2.20", "10.0.2.11"]);
    assert_eq!(ips_of(&lab, "eni-app"), ["10.0.2.10"]);
    await_event(&lab, "dataplane", "first delivery of 10.0.2.11 to its new owner eni-standby");
    let evs = events(&lab);
    assert!(has_event(&evs, "applied", "AssignPrivateIpAddresses eni-standby 10.0.2.11"), "{}", pretty(&evs));
}

// ---------------------------------------------------------------------------------------------
// 4: Elastic IP re-association

const EIP_TOPOLOGY: &str = r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-pub"
vpc = "vpc-test"
cidr = "10.0.1.0/24"
route_table = "rtb-pub"

[[internet_gateway]]
id = "igw-test"
vpc = "vpc-test"

[[elastic_ip]]
id = "eipalloc-web"
public_ip = "203.0.113.20"
network_interface = "eni-a"

[[route_table]]
id = "rtb-pub"
vpc = "vpc-test"
routes = [ { destination = "0.0.0.0/0", target = "igw-test" } ]

[[security_group]]
id = "sg-web"
vpc = "vpc-test"
ingress = [
  { protocol = "tcp", ports = "8080", source = "0.0.0.0/0" },
  { protocol = "icmp", source = "0.0.0.0/0" },
]

[[instance]]
id = "a"

[[instance]]
id = "b"

[[network_interface]]
id = "eni-a"
subnet = "subnet-pub"
private_ip = "10.0.1.10"
security_groups = ["sg-web"]
attachment = { instance = "a", device_index = 0 }

[[network_interface]]
id = "eni-b"
subnet = "subnet-pub"
private_ip = "10.0.1.20"
security_groups = ["sg-web"]
attachment = { instance = "b", device_index = 0 }

[internet]
hosts = [ { id = "example", ip = "198.51.100.7" } ]
"#;

#[test]
fn an_elastic_ip_reassociated_to_another_eni_reaches_it_and_no_allow_reassociation_is_refused() {
    let lab = TestLab::up("eipmove", EIP_TOPOLOGY);
    let inet = lab.ns("internet");
    let _a = tcp_whoami(&lab.ns("a"), addr("10.0.1.10", 8080), "a");
    let _b = tcp_whoami(&lab.ns("b"), addr("10.0.1.20", 8080), "b");

    assert_eq!(tcp_ask(&inet, addr(EIP, 8080)).expect("the EIP reaches a"), "a");
    assert!(pings(&lab, "a", EXAMPLE), "a reaches the internet with its EIP");
    assert!(!pings(&lab, "b", EXAMPLE), "b has no public address yet");

    let plan = ok(&lab, "associate-address", &["--allocation-id", "eipalloc-web", "--network-interface-id", "eni-b"]);
    assert_plan_has(&plan, "AssociateAddress eipalloc-web -> eni-b (10.0.1.20)");
    assert_eq!(tcp_ask(&inet, addr(EIP, 8080)).expect("the EIP reaches b"), "b");
    assert!(ns_pings(&inet, EIP), "the EIP answers ping at b");
    assert!(pings(&lab, "b", EXAMPLE), "b reaches the internet with the EIP");
    let before = lab.drops("eni-a", "no_public_address");
    assert!(!pings(&lab, "a", EXAMPLE), "a kept a public address");
    assert!(lab.drops("eni-a", "no_public_address") > before, "{}", lab.eni("eni-a"));
    await_event(&lab, "dataplane", "first delivery of Elastic IP 203.0.113.20 to eni-b (10.0.1.20)");

    // Associated (with b): --no-allow-reassociation refuses to move it back.
    refused(
        &lab,
        "associate-address",
        &["--allocation-id", "eipalloc-web", "--network-interface-id", "eni-a", "--no-allow-reassociation"],
        "Resource.AlreadyAssociated",
    );
    assert_eq!(tcp_ask(&inet, addr(EIP, 8080)).expect("the EIP still reaches b"), "b");

    // The default allows reassociation, also by instance id.
    let plan = ok(&lab, "associate-address", &["--allocation-id", "eipalloc-web", "--instance-id", "a"]);
    assert_plan_has(&plan, "AssociateAddress eipalloc-web -> eni-a (10.0.1.10)");
    assert_eq!(tcp_ask(&inet, addr(EIP, 8080)).expect("the EIP is back at a"), "a");

    // Disassociated: the address leads nowhere, and a has no way out.
    let plan = ok(&lab, "disassociate-address", &["--allocation-id", "eipalloc-web"]);
    assert_plan_has(&plan, "DisassociateAddress eipalloc-web");
    assert!(tcp_ask(&inet, addr(EIP, 8080)).is_err(), "a disassociated EIP still reaches an instance");
    assert!(!pings(&lab, "a", EXAMPLE), "a kept a public address");
}

// ---------------------------------------------------------------------------------------------
// 5, 6: security group and network ACL edits

/// `client` in subnet A, `server` in subnet B (network ACL `acl-b`, allowing everything); the
/// server's group admits only ICMP.
const POLICY: &str = r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-test"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-b"
vpc = "vpc-test"
cidr = "10.0.2.0/24"
network_acl = "acl-b"

[[network_acl]]
id = "acl-b"
vpc = "vpc-test"
ingress = [ { rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" } ]
egress = [ { rule = 100, protocol = "all", cidr = "0.0.0.0/0", action = "allow" } ]

[[security_group]]
id = "sg-cli"
vpc = "vpc-test"
ingress = [ { protocol = "all", source = "10.0.0.0/16" } ]

[[security_group]]
id = "sg-srv"
vpc = "vpc-test"
ingress = [ { protocol = "icmp", source = "10.0.0.0/16" } ]

[[instance]]
id = "client"

[[instance]]
id = "server"

[[network_interface]]
id = "eni-client"
subnet = "subnet-a"
private_ip = "10.0.1.10"
security_groups = ["sg-cli"]
attachment = { instance = "client", device_index = 0 }

[[network_interface]]
id = "eni-server"
subnet = "subnet-b"
private_ip = "10.0.2.10"
security_groups = ["sg-srv"]
attachment = { instance = "server", device_index = 0 }
"#;

#[test]
fn security_group_edits_apply_to_new_connections_while_tracked_ones_continue() {
    let lab = TestLab::up("sgedit", POLICY);
    let (client, server) = (lab.ns("client"), lab.ns("server"));
    let srv = tcp_echo(&server, addr("10.0.2.10", 5001));
    let rule = ["--group-id", "sg-srv", "--protocol", "tcp", "--port", "5001", "--cidr", "10.0.1.0/24"];

    let before = lab.drops("eni-server", "security_group_ingress");
    assert!(tcp_connect(&client, addr("10.0.2.10", 5001), 2).is_err(), "admitted without a rule");
    assert!(lab.drops("eni-server", "security_group_ingress") > before, "{}", lab.eni("eni-server"));
    assert_eq!(srv.accepted(), 0);

    let plan = ok(&lab, "authorize-security-group-ingress", &rule);
    assert_plan_has(&plan, "AuthorizeSecurityGroupIngress sg-srv tcp 5001 from 10.0.1.0/24");
    let mut held = tcp_connect(&client, addr("10.0.2.10", 5001), 3).expect("a new connection after the authorize");
    assert_eq!(echo_over(&mut held, b"opened").unwrap(), b"opened");
    refused(&lab, "authorize-security-group-ingress", &rule, "InvalidPermission.Duplicate");

    let plan = ok(&lab, "revoke-security-group-ingress", &rule);
    assert_plan_has(&plan, "RevokeSecurityGroupIngress sg-srv tcp 5001 from 10.0.1.0/24");
    for i in 0..5 {
        let msg = format!("tracked {i}");
        assert_eq!(echo_over(&mut held, msg.as_bytes()).expect("the tracked connection continues"), msg.as_bytes());
    }
    let before = lab.drops("eni-server", "security_group_ingress");
    assert!(tcp_connect(&client, addr("10.0.2.10", 5001), 2).is_err(), "a new connection after the revoke");
    assert!(lab.drops("eni-server", "security_group_ingress") > before, "{}", lab.eni("eni-server"));
    assert_eq!(echo_over(&mut held, b"still here").unwrap(), b"still here");
    assert_eq!(srv.accepted(), 1, "only the connection made while the rule existed arrived");
    refused(&lab, "revoke-security-group-ingress", &rule, "InvalidPermission.NotFound");

    // Replacing the ENI's groups: sg-cli admits everything from the VPC.
    let plan =
        ok(&lab, "modify-network-interface-attribute", &["--network-interface-id", "eni-server", "--groups", "sg-cli"]);
    assert_plan_has(&plan, "ModifyNetworkInterfaceAttribute eni-server groups sg-cli");
    let mut other = tcp_connect(&client, addr("10.0.2.10", 5001), 3).expect("admitted by the new group");
    assert_eq!(echo_over(&mut other, b"new group").unwrap(), b"new group");
    assert_eq!(echo_over(&mut held, b"and the old one").unwrap(), b"and the old one");
    assert_eq!(srv.accepted(), 2);

    let evs = events(&lab);
    assert!(has_event(&evs, "applied", "AuthorizeSecurityGroupIngress sg-srv tcp 5001 from 10.0.1.0/24"));
    assert!(has_event(&evs, "applied", "RevokeSecurityGroupIngress sg-srv tcp 5001 from 10.0.1.0/24"));
    assert!(has_event(&evs, "refused", "InvalidPermission.Duplicate"), "{}", pretty(&evs));
    assert!(has_event(&evs, "refused", "InvalidPermission.NotFound"), "{}", pretty(&evs));
}

#[test]
fn a_network_acl_deny_entry_stops_an_established_connection_and_deleting_it_restores_it() {
    let lab = TestLab::up("acledit", POLICY);
    let (client, server) = (lab.ns("client"), lab.ns("server"));
    ok(
        &lab,
        "authorize-security-group-ingress",
        &["--group-id", "sg-srv", "--protocol", "tcp", "--port", "5001", "--cidr", "10.0.1.0/24"],
    );
    let srv = tcp_echo(&server, addr("10.0.2.10", 5001));
    let mut c = tcp_connect(&client, addr("10.0.2.10", 5001), 3).expect("connects");
    assert_eq!(echo_over(&mut c, b"before").unwrap(), b"before");

    let plan = ok(
        &lab,
        "create-network-acl-entry",
        &[
            "--network-acl-id",
            "acl-b",
            "--rule-number",
            "10",
            "--ingress",
            "--protocol",
            "tcp",
            "--rule-action",
            "deny",
            "--cidr-block",
            "10.0.1.0/24",
            "--port-range",
            "From=5001,To=5001",
        ],
    );
    assert!(plan.lines().any(|l| l.starts_with("CreateNetworkAclEntry acl-b ingress 10 ")), "{plan}");
    refused(
        &lab,
        "create-network-acl-entry",
        &[
            "--network-acl-id",
            "acl-b",
            "--rule-number",
            "10",
            "--ingress",
            "--protocol",
            "all",
            "--rule-action",
            "allow",
            "--cidr-block",
            "0.0.0.0/0",
        ],
        "NetworkAclEntryAlreadyExists",
    );

    // The same connection's next exchange does not get through, nor does a new connection.
    let before = drops_total(&lab, "network_acl_ingress");
    c.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    c.write_all(b"blocked").unwrap();
    let mut back = [0u8; 7];
    assert!(c.read_exact(&mut back).is_err(), "the established connection crossed the deny entry");
    assert!(drops_total(&lab, "network_acl_ingress") > before, "{:#?}", status_enis(&lab));
    assert!(tcp_connect(&client, addr("10.0.2.10", 5001), 2).is_err(), "a new connection crossed the deny entry");
    assert!(pings(&lab, "client", "10.0.2.10"), "the entry denies tcp 5001 only");

    let plan = ok(&lab, "delete-network-acl-entry", &["--network-acl-id", "acl-b", "--rule-number", "10", "--ingress"]);
    assert!(plan.contains("DeleteNetworkAclEntry acl-b ingress 10"), "{plan}");
    // TCP retransmits what was held back; the echo arrives.
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.read_exact(&mut back).expect("the retransmission gets through once the entry is gone");
    assert_eq!(&back, b"blocked");
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(echo_over(&mut c, b"restored").unwrap(), b"restored");
    assert_eq!(srv.accepted(), 1, "one connection throughout");
}

// ---------------------------------------------------------------------------------------------
// 7: swinging a route between two appliances

#[test]
fn replace_route_swings_traffic_and_an_established_flow_from_one_appliance_to_the_other() {
    let lab = TestLab::up("swing", APPLIANCES);
    for appl in ["appl1", "appl2"] {
        for s in ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"]
        {
            lab.must(appl, &["sysctl", "-w", s]);
        }
    }
    let plan = ok(
        &lab,
        "modify-network-interface-attribute",
        &["--network-interface-id", "eni-appl2", "--no-source-dest-check"],
    );
    assert_plan_has(&plan, "ModifyNetworkInterfaceAttribute eni-appl2 source-dest-check false");

    // rx_packets: frames an appliance sent out (forwarded); tx_packets: frames handed to it.
    let rx = |eni: &str| lab.counter(eni, "rx_packets");
    let tx = |eni: &str| lab.counter(eni, "tx_packets");
    let _srv = tcp_echo(&lab.ns("b1"), addr("10.0.2.10", 5001));
    let (rx1, tx2) = (rx("eni-appl1"), tx("eni-appl2"));
    assert!(lab.ping("a1", "10.0.2.10").status.success(), "a1 -> b1 through appl1");
    let mut flow = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).expect("TCP through appl1");
    assert_eq!(echo_over(&mut flow, b"via appl1").unwrap(), b"via appl1");
    assert!(rx("eni-appl1") >= rx1 + 4, "appl1 carried the traffic: {}", lab.eni("eni-appl1"));
    assert_eq!(tx("eni-appl2"), tx2, "appl2 was handed something: {}", lab.eni("eni-appl2"));

    for (rtb, dest) in [("rtb-a", "10.0.2.0/24"), ("rtb-b", "10.0.1.0/24")] {
        let plan = ok(
            &lab,
            "replace-route",
            &["--route-table-id", rtb, "--destination-cidr-block", dest, "--network-interface-id", "eni-appl2"],
        );
        assert_plan_has(&plan, &format!("ReplaceRoute {rtb} {dest} -> eni-appl2"));
    }
    // appl1 stops forwarding: whatever still gets through went through appl2.
    lab.must("appl1", &["sysctl", "-w", "net.ipv4.ip_forward=0"]);
    let (tx1, rx2) = (tx("eni-appl1"), rx("eni-appl2"));
    assert!(lab.ping("a1", "10.0.2.10").status.success(), "a1 -> b1 through appl2");
    assert!(lab.ping("b1", "10.0.1.10").status.success(), "b1 -> a1 through appl2");
    for i in 0..3 {
        let msg = format!("via appl2 {i}");
        assert_eq!(
            echo_over(&mut flow, msg.as_bytes()).expect("the established flow follows the route"),
            msg.as_bytes()
        );
    }
    let mut fresh = tcp_connect(&lab.ns("a1"), addr("10.0.2.10", 5001), 3).expect("a new connection via appl2");
    assert_eq!(echo_over(&mut fresh, b"new").unwrap(), b"new");
    assert_eq!(tx("eni-appl1"), tx1, "appl1 was still handed traffic: {}", lab.eni("eni-appl1"));
    assert!(rx("eni-appl2") >= rx2 + 8, "appl2 carried the traffic: {}", lab.eni("eni-appl2"));
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10", "--dport", "5001"]);
    assert_eq!(t["verdict"], "delivered", "{t:#}");
    assert_eq!(t["delivered_to"], "eni-appl2", "{t:#}");

    // A route that does not exist cannot be replaced; one that does cannot be created again.
    refused(
        &lab,
        "replace-route",
        &[
            "--route-table-id",
            "rtb-a",
            "--destination-cidr-block",
            "10.9.0.0/16",
            "--network-interface-id",
            "eni-appl2",
        ],
        "InvalidRoute.NotFound",
    );
    refused(
        &lab,
        "create-route",
        &[
            "--route-table-id",
            "rtb-a",
            "--destination-cidr-block",
            "10.0.2.0/24",
            "--network-interface-id",
            "eni-appl1",
        ],
        "RouteAlreadyExists",
    );
}

// ---------------------------------------------------------------------------------------------
// 8, 9: instance states

/// `client` in subnet A; `srv` with two ENIs and `other` in subnet B; `eni-warm` attached nowhere.
const STATES: &str = r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-test"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-b"
vpc = "vpc-test"
cidr = "10.0.2.0/24"

[[security_group]]
id = "sg-all"
vpc = "vpc-test"
ingress = [ { protocol = "all", source = "10.0.0.0/16" } ]

[[instance]]
id = "client"

[[instance]]
id = "srv"

[[instance]]
id = "other"

[[network_interface]]
id = "eni-client"
subnet = "subnet-a"
private_ip = "10.0.1.10"
security_groups = ["sg-all"]
attachment = { instance = "client", device_index = 0 }

[[network_interface]]
id = "eni-srv"
subnet = "subnet-b"
private_ip = "10.0.2.10"
security_groups = ["sg-all"]
attachment = { instance = "srv", device_index = 0 }

[[network_interface]]
id = "eni-srv-2"
subnet = "subnet-b"
private_ip = "10.0.2.60"
security_groups = ["sg-all"]
attachment = { instance = "srv", device_index = 1 }

[[network_interface]]
id = "eni-other"
subnet = "subnet-b"
private_ip = "10.0.2.20"
security_groups = ["sg-all"]
attachment = { instance = "other", device_index = 0 }

[[network_interface]]
id = "eni-warm"
subnet = "subnet-b"
private_ip = "10.0.2.70"
security_groups = ["sg-all"]
"#;

/// Starts `sleep` in an instance and waits until it runs there.
fn sleeper(lab: &TestLab, instance: &str) -> Proc {
    let p = Proc::start(lab, instance, &["sleep", "300"]);
    let ns = lab.ns(instance);
    assert!(eventually(5, || !procs_in(&ns, "sleep").is_empty()), "sleep did not start in {ns}");
    p
}

#[test]
fn stop_start_reboot_and_terminate_an_instance() {
    let lab = TestLab::up("states", STATES);
    let srv = lab.ns("srv");
    let (mac0, mac1) = (lab.eni("eni-srv")["mac"].clone(), lab.eni("eni-srv-2")["mac"].clone());
    assert!(pings(&lab, "client", "10.0.2.10") && pings(&lab, "client", "10.0.2.60"));

    // Stop: the process ends, the ENIs carry nothing.
    let mut p = sleeper(&lab, "srv");
    let plan = ok(&lab, "stop-instances", &["--instance-ids", "srv"]);
    assert_plan_has(&plan, "StopInstances srv");
    assert!(eventually(5, || p.ended()), "a process in the stopped instance lives on");
    assert!(procs_in(&srv, "sleep").is_empty());
    assert_eq!(lab.eni("eni-srv")["instance_state"], "stopped", "{}", lab.eni("eni-srv"));
    assert_eq!(lab.eni("eni-srv")["instance"], "srv", "a stopped instance keeps its ENIs");
    let (tx0, tx1) = (lab.counter("eni-srv", "tx_packets"), lab.counter("eni-srv-2", "tx_packets"));
    let dropped = lab.drops("eni-srv", "instance_stopped") + lab.drops("eni-srv-2", "instance_stopped");
    assert!(!pings(&lab, "client", "10.0.2.10"), "a stopped instance answered");
    assert!(!pings(&lab, "client", "10.0.2.60"), "a stopped instance answered on its second ENI");
    assert_eq!(lab.counter("eni-srv", "tx_packets"), tx0, "frames were delivered to a stopped instance");
    assert_eq!(lab.counter("eni-srv-2", "tx_packets"), tx1, "frames were delivered to a stopped instance");
    let now = lab.drops("eni-srv", "instance_stopped") + lab.drops("eni-srv-2", "instance_stopped");
    assert!(
        now >= dropped + 2 || !has_link(&srv, "eth0"),
        "frames to a stopped instance are counted as instance_stopped or it has no interface: {:#?}",
        status_enis(&lab)
    );
    refused(&lab, "reboot-instances", &["--instance-ids", "srv"], "IncorrectInstanceState");

    // Start: the same interfaces and addresses.
    let plan = ok(&lab, "start-instances", &["--instance-ids", "srv"]);
    assert_plan_has(&plan, "StartInstances srv");
    assert_eq!(lab.eni("eni-srv")["instance_state"], "running");
    assert!(eventually(5, || pings(&lab, "client", "10.0.2.10")), "no answer after the start");
    assert!(eventually(5, || pings(&lab, "client", "10.0.2.60")), "no answer on eth1 after the start");
    assert_eq!(ipv4s(&srv, "eth0"), ["10.0.2.10"]);
    assert_eq!(ipv4s(&srv, "eth1"), ["10.0.2.60"]);
    assert_eq!(link_mac(&srv, "eth0").as_deref(), mac0.as_str());
    assert_eq!(link_mac(&srv, "eth1").as_deref(), mac1.as_str());
    assert!(pings(&lab, "srv", "10.0.1.10"), "the started instance reaches out");

    // Reboot: the process ends, the interfaces come back.
    let mut p = sleeper(&lab, "srv");
    let plan = ok(&lab, "reboot-instances", &["--instance-ids", "srv"]);
    assert_plan_has(&plan, "RebootInstances srv");
    assert!(eventually(5, || p.ended()), "a process survived the reboot");
    assert!(eventually(5, || pings(&lab, "client", "10.0.2.10")), "no answer after the reboot");
    assert!(eventually(5, || pings(&lab, "client", "10.0.2.60")), "no answer on eth1 after the reboot");
    assert_eq!(ipv4s(&srv, "eth0"), ["10.0.2.10"]);
    assert_eq!(ipv4s(&srv, "eth1"), ["10.0.2.60"]);
    assert_eq!(lab.eni("eni-srv")["instance_state"], "running");

    // Terminate: the namespace goes, so does the primary ENI; the secondary stays, available.
    let plan = ok(&lab, "terminate-instances", &["--instance-ids", "srv"]);
    assert_plan_has(&plan, "TerminateInstances srv");
    assert!(eventually(5, || !namespaces_of(&lab.name).contains(&srv)), "{srv} outlived its instance");
    assert!(find_eni(&lab, "eni-srv").is_none(), "the primary ENI outlived its instance: {:#?}", status_enis(&lab));
    let spare = find_eni(&lab, "eni-srv-2").expect("eni-srv-2 (delete_on_termination false) is kept");
    assert!(spare["instance"].is_null() && spare["interface"].is_null(), "{spare}");
    assert!(!pings(&lab, "client", "10.0.2.60"));
    assert!(!pings(&lab, "client", "10.0.2.10"));
    refused(&lab, "start-instances", &["--instance-ids", "srv"], "InvalidInstanceID.NotFound");

    let plan = ok(
        &lab,
        "attach-network-interface",
        &["--network-interface-id", "eni-srv-2", "--instance-id", "other", "--device-index", "1"],
    );
    assert_plan_has(&plan, "AttachNetworkInterface eni-srv-2 -> other (device 1)");
    assert_eq!(ipv4s(&lab.ns("other"), "eth1"), ["10.0.2.60"]);
    assert_eq!(link_mac(&lab.ns("other"), "eth1").as_deref(), mac1.as_str());
    assert!(eventually(5, || pings(&lab, "client", "10.0.2.60")), "the kept ENI works in its new instance");
    await_event(&lab, "dataplane", "first frame delivered to eni-srv-2 in other (eth1)");
}

#[test]
fn an_eni_attached_to_a_stopped_instance_works_once_it_starts() {
    let lab = TestLab::up("warm", STATES);
    let other = lab.ns("other");
    ok(&lab, "stop-instances", &["--instance-ids", "other"]);
    let plan = ok(
        &lab,
        "attach-network-interface",
        &["--network-interface-id", "eni-warm", "--instance-id", "other", "--device-index", "1"],
    );
    assert_plan_has(&plan, "AttachNetworkInterface eni-warm -> other (device 1)");
    assert_eq!(lab.eni("eni-warm")["instance"], "other", "{}", lab.eni("eni-warm"));
    assert_eq!(lab.eni("eni-warm")["instance_state"], "stopped", "{}", lab.eni("eni-warm"));
    assert!(!pings(&lab, "client", "10.0.2.70"), "an ENI of a stopped instance answered");

    let plan = ok(&lab, "start-instances", &["--instance-ids", "other"]);
    assert_plan_has(&plan, "StartInstances other");
    assert!(eventually(5, || pings(&lab, "client", "10.0.2.70")), "the warm-attached ENI does not answer");
    assert!(pings(&lab, "client", "10.0.2.20"), "the primary does not answer");
    assert_eq!(ipv4s(&other, "eth1"), ["10.0.2.70"]);
    assert_eq!(ipv4s(&other, "eth0"), ["10.0.2.20"]);
    assert_eq!(placed(&lab, "eni-warm"), ("other".into(), "eth1".into()));
    let _svc = udp_whoami(&other, addr("10.0.2.70", 7000), "other");
    assert_eq!(udp_ask(&lab.ns("client"), addr("10.0.2.70", 7000)).as_deref(), Some("other"));
    await_event(&lab, "dataplane", "first frame delivered to eni-warm in other (eth1)");
}

// ---------------------------------------------------------------------------------------------
// 10, 11: refusals and rollback leave the lab as it was

#[test]
fn refused_changes_leave_status_and_traffic_untouched() {
    let lab = TestLab::up("refuse", LIVE);
    let before = placements(&lab);
    let app_before = ns_state(&lab.ns("app"));
    assert!(pings(&lab, "client", FLOAT));

    let cases: [(&str, Vec<&str>, &str); 6] = [
        ("detach-network-interface", vec!["--network-interface-id", "eni-app"], "OperationNotPermitted"),
        (
            "attach-network-interface",
            vec!["--network-interface-id", "eni-float", "--instance-id", "standby", "--device-index", "1"],
            "InvalidNetworkInterface.InUse",
        ),
        (
            "attach-network-interface",
            vec!["--network-interface-id", "eni-spare", "--instance-id", "app", "--device-index", "2"],
            "AttachmentLimitExceeded",
        ),
        ("detach-network-interface", vec!["--network-interface-id", "eni-nope"], "InvalidNetworkInterfaceID.NotFound"),
        (
            "attach-network-interface",
            vec!["--network-interface-id", "eni-spare", "--instance-id", "nope", "--device-index", "1"],
            "InvalidInstanceID.NotFound",
        ),
        (
            "authorize-security-group-ingress",
            vec!["--group-id", "sg-svc", "--protocol", "tcp", "--port", "5001", "--cidr", "10.0.1.0/24"],
            "InvalidPermission.Duplicate",
        ),
    ];
    for (verb, args, code) in &cases {
        refused(&lab, verb, args, code);
        assert_eq!(placements(&lab), before, "{verb} {args:?} changed status");
        assert!(pings(&lab, "client", FLOAT), "traffic stopped after the refused {verb} {args:?}");
    }
    // A device index already taken.
    refused(
        &lab,
        "attach-network-interface",
        &["--network-interface-id", "eni-spare", "--instance-id", "standby", "--device-index", "0"],
        "InvalidParameterValue",
    );

    // apply: a subnet's CIDR cannot change (the new one still holds every address).
    let shrunk = LIVE.replace("cidr = \"10.0.2.0/24\"", "cidr = \"10.0.2.0/25\"");
    assert_ne!(shrunk, LIVE);
    let file = LabFile::new(&lab, "cidr", &shrunk);
    let out = apply(&lab, &file, false);
    assert_refused(&out, "OperationNotPermitted", None, "apply with a changed subnet CIDR");
    assert!(String::from_utf8_lossy(&out.stderr).contains("subnet-b"), "{}", text(&out));
    // Nor the lab's name.
    let renamed = LabFile::raw(&lab, "renamed", &format!("name = \"{}x\"\n{LIVE}", lab.name));
    assert_refused(&apply(&lab, &renamed, false), "OperationNotPermitted", None, "apply with another name");
    // Nor an ENI's primary IP.
    let readdressed = LabFile::new(&lab, "readdr", &LIVE.replace("10.0.2.50", "10.0.2.51"));
    assert_refused(&apply(&lab, &readdressed, false), "OperationNotPermitted", None, "apply with another primary IP");

    assert_eq!(placements(&lab), before, "a refused apply changed status");
    assert_eq!(ns_state(&lab.ns("app")), app_before, "a refusal changed app's namespace");
    assert!(pings(&lab, "client", FLOAT));
    assert!(pings(&lab, "client", "10.0.2.10"));
    let svc = udp_whoami(&lab.ns("app"), addr(FLOAT, 7000), "app");
    assert_eq!(udp_ask(&lab.ns("client"), addr(FLOAT, 7000)).as_deref(), Some("app"));
    drop(svc);

    let evs = events(&lab);
    for (_, _, code) in &cases {
        assert!(has_event(&evs, "refused", code), "no refused event with {code}:\n{}", pretty(&evs));
    }
    assert!(!evs.iter().any(|e| e["kind"] == "applied"), "a refusal was recorded as applied:\n{}", pretty(&evs));
}

#[test]
fn a_change_failing_half_way_is_rolled_back() {
    let lab = TestLab::up_with_env("rollback", LIVE, &[("VPCLAB_FAIL_AFTER_STEPS", "1")]);
    let (client, app, standby) = (lab.ns("client"), lab.ns("app"), lab.ns("standby"));
    let before = placements(&lab);
    let (app_before, standby_before) = (ns_state(&app), ns_state(&standby));
    assert!(pings(&lab, "client", FLOAT));

    // Moving an ENI takes two steps (out of app, into standby): the second fails.
    let moved = LabFile::new(&lab, "moved", &live_moved());
    let out = apply(&lab, &moved, false);
    assert_refused(&out, "InternalError", None, "a move with an injected failure");

    assert_eq!(placements(&lab), before, "status changed by a rolled-back change");
    assert_eq!(ns_state(&app), app_before, "app's namespace differs after the rollback");
    assert_eq!(ns_state(&standby), standby_before, "standby's namespace differs after the rollback");
    assert_eq!(ipv4s(&app, "eth1"), [FLOAT]);
    assert_eq!(link_mac(&app, "eth1").as_deref(), Some(FLOAT_MAC));
    assert!(!has_link(&standby, "eth1"));
    assert!(eventually(5, || pings(&lab, "client", FLOAT)), "the ENI does not answer after the rollback");
    let _svc = udp_whoami(&app, addr(FLOAT, 7000), "app");
    assert_eq!(udp_ask(&client, addr(FLOAT, 7000)).as_deref(), Some("app"));

    let evs = events(&lab);
    assert!(has_event(&evs, "failed", "InternalError"), "no failed event:\n{}", pretty(&evs));
    assert!(
        !evs.iter().any(|e| e["kind"] == "applied"),
        "a rolled-back change was recorded as applied:\n{}",
        pretty(&evs)
    );
    // The lab still plans the same move: nothing of the failed attempt was kept.
    let out = apply(&lab, &moved, true);
    assert!(out.status.success(), "a dry run after the rollback: {}", text(&out));
    assert_plan_has(&String::from_utf8_lossy(&out.stdout), "AttachNetworkInterface eni-float -> standby (device 1)");
}

// ---------------------------------------------------------------------------------------------
// 12, 13: apply adding and removing instances; export

const EXTRA: &str = r#"
[[instance]]
id = "extra"

[[network_interface]]
id = "eni-extra"
subnet = "subnet-b"
private_ip = "10.0.2.40"
security_groups = ["sg-all"]
attachment = { instance = "extra", device_index = 0 }
"#;

#[test]
fn apply_runs_a_new_instance_with_its_eni_and_terminates_it_again() {
    let lab = TestLab::up("addinst", LIVE);
    let extra = lab.ns("extra");
    let grown = LabFile::new(&lab, "grown", &format!("{LIVE}{EXTRA}"));
    let plan = apply_ok(&lab, &grown, false);
    assert_plan_has(&plan, "RunInstances extra");
    assert_plan_has(&plan, "CreateNetworkInterface eni-extra in subnet-b (10.0.2.40)");
    assert_plan_has(&plan, "AttachNetworkInterface eni-extra -> extra (device 0)");
    assert!(namespaces_of(&lab.name).contains(&extra), "{:?}", namespaces_of(&lab.name));
    assert_eq!(ipv4s(&extra, "eth0"), ["10.0.2.40"]);
    assert_eq!(placed(&lab, "eni-extra"), ("extra".into(), "eth0".into()));
    assert!(eventually(5, || pings(&lab, "client", "10.0.2.40")), "the new instance does not answer");
    assert!(pings(&lab, "extra", "10.0.1.10"), "the new instance cannot reach the client");
    let _svc = tcp_whoami(&extra, addr("10.0.2.40", 5001), "extra");
    assert_eq!(tcp_ask(&lab.ns("client"), addr("10.0.2.40", 5001)).unwrap(), "extra");
    // The rest of the lab is as it was.
    assert!(pings(&lab, "client", FLOAT));
    assert_eq!(apply_ok(&lab, &grown, false).trim(), "No changes.");

    let shrunk = LabFile::new(&lab, "shrunk", LIVE);
    let plan = apply_ok(&lab, &shrunk, false);
    assert_plan_has(&plan, "TerminateInstances extra");
    assert_plan_has(&plan, "DeleteNetworkInterface eni-extra");
    assert!(eventually(5, || !namespaces_of(&lab.name).contains(&extra)), "{extra} outlived its instance");
    assert!(find_eni(&lab, "eni-extra").is_none(), "{:#?}", status_enis(&lab));
    assert!(!pings(&lab, "client", "10.0.2.40"));
    assert!(pings(&lab, "client", FLOAT));
    let evs = events(&lab);
    assert!(has_event(&evs, "applied", "RunInstances extra"), "{}", pretty(&evs));
    assert!(has_event(&evs, "applied", "TerminateInstances extra"), "{}", pretty(&evs));
}

/// `vpclab export LAB`, written to a file.
fn export(lab: &TestLab, tag: &str) -> (String, LabFile) {
    let out = vpclab(&["export", &lab.name]);
    assert!(out.status.success(), "export failed: {}", text(&out));
    let exported = String::from_utf8_lossy(&out.stdout).into_owned();
    let file = LabFile::raw(lab, tag, &exported);
    let check = vpclab(&["check", file.path()]);
    assert!(check.status.success(), "vpclab check refuses the export:\n{}\n---\n{exported}", text(&check));
    (exported, file)
}

/// The `attachment` of one ENI in a topology file.
fn attachment_in(topology: &str, eni: &str) -> Value {
    let doc: toml::Value = toml::from_str(topology).unwrap_or_else(|e| panic!("export is TOML: {e}\n{topology}"));
    let enis = doc["network_interface"].as_array().expect("network_interface array");
    let e = enis.iter().find(|e| e["id"].as_str() == Some(eni)).unwrap_or_else(|| panic!("{eni} in\n{topology}"));
    e.get("attachment").map(|a| serde_json::to_value(a).unwrap()).unwrap_or(Value::Null)
}

#[test]
fn export_round_trips_and_follows_a_move() {
    let lab = TestLab::up("export", LIVE);
    let (text1, file) = export(&lab, "export1");
    let doc: toml::Value = toml::from_str(&text1).expect("export is TOML");
    assert_eq!(doc["name"].as_str(), Some(lab.name.as_str()), "{text1}");
    assert_eq!(apply_ok(&lab, &file, false).trim(), "No changes.", "{text1}");
    let a = attachment_in(&text1, "eni-float");
    assert_eq!((a["instance"].as_str(), a["device_index"].as_i64()), (Some("app"), Some(1)), "{text1}");
    assert!(attachment_in(&text1, "eni-spare").is_null(), "{text1}");

    ok(&lab, "detach-network-interface", &["--network-interface-id", "eni-float"]);
    ok(
        &lab,
        "attach-network-interface",
        &["--network-interface-id", "eni-float", "--instance-id", "standby", "--device-index", "1"],
    );
    let (text2, file2) = export(&lab, "export2");
    let a = attachment_in(&text2, "eni-float");
    assert_eq!((a["instance"].as_str(), a["device_index"].as_i64()), (Some("standby"), Some(1)), "{text2}");
    assert_eq!(apply_ok(&lab, &file2, false).trim(), "No changes.", "{text2}");

    // The first export is now a plan to move it back; applying it does, and traffic follows.
    let plan = apply_ok(&lab, &file, false);
    assert_plan_has(&plan, "DetachNetworkInterface eni-float from standby");
    assert_plan_has(&plan, "AttachNetworkInterface eni-float -> app (device 1)");
    assert_eq!(placed(&lab, "eni-float"), ("app".into(), "eth1".into()));
    let _svc = tcp_whoami(&lab.ns("app"), addr(FLOAT, 5001), "app");
    assert_eq!(tcp_ask(&lab.ns("client"), addr(FLOAT, 5001)).unwrap(), "app");
}
