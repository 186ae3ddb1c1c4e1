//! Real labs, real namespaces, real TAPs, real traffic through the forwarder.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::*;

fn addr(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

#[test]
fn ping_within_and_across_subnets_and_to_a_secondary_ip() {
    let lab = TestLab::up("ping", TWO_SUBNETS);
    for (from, to) in [("a1", "10.0.1.20"), ("a1", "10.0.2.10"), ("b1", "10.0.1.11"), ("a2", "10.0.1.10")] {
        let out = lab.ping(from, to);
        assert!(out.status.success(), "ping {from} -> {to}:\n{}", text(&out));
        // The VPC router is not a hop: the reply keeps the TTL its sender gave it.
        assert!(text(&out).contains("ttl=64"), "TTL changed on {from} -> {to}:\n{}", text(&out));
    }
    assert!(lab.eni("eni-b1")["tx_packets"].as_u64().unwrap() > 0);
}

#[test]
fn tcp_one_megabyte_echoed_intact_within_and_across_subnets() {
    let lab = TestLab::up("tcp", TWO_SUBNETS);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    for (client, server, ip) in [("a1", "b1", [10, 0, 2, 10]), ("a1", "a2", [10, 0, 1, 20])] {
        let srv = tcp_echo_server(&lab.ns(server), addr(ip, 5001));
        let back = tcp_echo_client(&lab.ns(client), addr(ip, 5001), data.clone())
            .unwrap_or_else(|e| panic!("TCP {client} -> {server}: {e}"));
        srv.join().unwrap();
        assert_eq!(back.len(), data.len(), "{client} -> {server}: length");
        assert!(back == data, "{client} -> {server}: bytes differ");
    }
}

#[test]
fn udp_within_and_across_subnets_and_from_a_secondary_ip() {
    let lab = TestLab::up("udp", TWO_SUBNETS);
    let srv = udp_echo_server(&lab.ns("b1"), addr([10, 0, 2, 10], 7000), 2);
    let back = udp_roundtrip(&lab.ns("a1"), None, addr([10, 0, 2, 10], 7000), b"across").unwrap();
    assert_eq!(back, b"across");
    let back =
        udp_roundtrip(&lab.ns("a1"), Some(Ipv4Addr::new(10, 0, 1, 11)), addr([10, 0, 2, 10], 7000), b"secondary")
            .unwrap();
    assert_eq!(back, b"secondary");
    srv.join().unwrap();
    let srv = udp_echo_server(&lab.ns("a2"), addr([10, 0, 1, 20], 7001), 1);
    let back = udp_roundtrip(&lab.ns("a1"), None, addr([10, 0, 1, 20], 7001), b"within").unwrap();
    assert_eq!(back, b"within");
    srv.join().unwrap();
}

#[test]
fn a_secondary_eni_answers_by_its_own_interface() {
    // multi has eth0 in subnet A and eth1 in subnet B. A client in A reaching eth1's address must
    // get replies from eth1 (source-based policy routing, as ec2-net-utils sets up); without it
    // the replies would leave by eth0 with eth1's source address and the fabric would carry them
    // from the wrong ENI.
    let lab = TestLab::up("multi", TWO_SUBNETS);
    let before = lab.eni("eni-multi-1");
    let out = lab.ping("a1", "10.0.2.30");
    assert!(out.status.success(), "{}", text(&out));
    let after = lab.eni("eni-multi-1");
    let sent = after["rx_packets"].as_u64().unwrap() - before["rx_packets"].as_u64().unwrap();
    assert!(sent >= 2, "replies did not leave by eth1: {before} -> {after}");
    let out = lab.exec("multi", &["ip", "rule", "show"]);
    assert!(text(&out).contains("from 10.0.2.30 lookup 10001"), "{}", text(&out));
    let out = lab.exec("multi", &["ip", "-d", "link", "show", "eth1"]);
    assert!(text(&out).contains("mtu 9001"), "{}", text(&out));
}

#[test]
fn arp_is_answered_for_the_router_and_neighbours_only() {
    let lab = TestLab::up("arp", TWO_SUBNETS);
    assert!(lab.ping("a1", "10.0.1.20").status.success());
    assert!(!lab.exec("a1", &["ping", "-c", "1", "-W", "1", "10.0.1.99"]).status.success());
    let neigh = text(&lab.exec("a1", &["ip", "neigh", "show"]));
    let a2_mac = lab.eni("eni-a2")["mac"].as_str().unwrap().to_string();
    assert!(neigh.contains(&format!("10.0.1.20 dev eth0 lladdr {a2_mac}")), "{neigh}");
    assert!(!neigh.contains("10.0.1.99 dev eth0 lladdr"), "an unknown address got an answer:\n{neigh}");
    assert!(lab.drops("eni-a1", "arp_unanswered") >= 1);
    // Across subnets, the next hop is the router.
    assert!(lab.ping("a1", "10.0.2.10").status.success());
    let neigh = text(&lab.exec("a1", &["ip", "neigh", "show", "10.0.1.1"]));
    assert!(neigh.contains("lladdr"), "router not resolved: {neigh}");
}

#[test]
fn down_removes_everything_and_is_idempotent() {
    require_root();
    let lab = TestLab::up("down", TWO_SUBNETS);
    // Four instances and the fabric's service namespace (instance metadata).
    assert_eq!(namespaces_of(&lab.name).len(), 5, "{:?}", namespaces_of(&lab.name));
    assert!(namespaces_of(&lab.name).contains(&format!("{}-svc", lab.name)));
    // A process left running in an instance must not outlive the lab (nor keep it alive).
    let mut sleeper =
        std::process::Command::new(BIN).args(["exec", "--lab", &lab.name, "b1", "--", "sleep", "600"]).spawn().unwrap();
    let ns = lab.ns("b1");
    assert!(eventually(5, || !namespace_pids(&ns).is_empty()), "sleep did not start in b1");
    assert!(sleeper.try_wait().unwrap().is_none(), "sleep ended early");
    let out = vpclab(&["down", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(namespaces_of(&lab.name).is_empty(), "{:?}", namespaces_of(&lab.name));
    for eni in ["eni-a1", "eni-a2", "eni-b1", "eni-multi-0", "eni-multi-1"] {
        let temp = vpclab::lab::tap_temp_name(&lab.name, eni);
        assert!(host_links_with_prefix(&temp).is_empty(), "{temp} left in the host namespace");
    }
    assert!(!std::path::Path::new(&format!("/run/vpclab/{}", lab.name)).exists());
    assert!(eventually(5, || sleeper.try_wait().unwrap().is_some()), "a process in the lab survived down");
    let again = vpclab(&["down", &lab.name]);
    assert!(again.status.success(), "second down: {}", text(&again));
    assert!(text(&again).contains("no such lab"), "{}", text(&again));
    assert!(!std::path::Path::new(&format!("/run/vpclab/{}.lock", lab.name)).exists(), "lock files must not pile up");
    let never = format!("{}never", lab.name);
    let out = vpclab(&["down", &never]);
    assert!(out.status.success() && text(&out).contains("no such lab"), "{}", text(&out));
    assert!(!std::path::Path::new(&format!("/run/vpclab/{never}.lock")).exists());
}

#[test]
fn up_right_after_the_forwarder_was_killed_replaces_it() {
    // The killed forwarder holds the lab's lock while the kernel closes its TAPs: `up` must wait
    // for a dying forwarder, not report it as running.
    let lab = TestLab::up("k9", TWO_SUBNETS);
    for _ in 0..2 {
        let pid = lab.status()["pid"].as_u64().unwrap() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        let again = vpclab(&["up", lab.file.to_str().unwrap()]);
        assert!(again.status.success(), "{}", text(&again));
        assert_ne!(lab.status()["pid"].as_u64().unwrap() as i32, pid);
        assert!(lab.ping("a1", "10.0.2.10").status.success());
    }
    // A live forwarder is still refused.
    let twice = vpclab(&["up", lab.file.to_str().unwrap()]);
    assert!(!twice.status.success() && text(&twice).contains("already running"), "{}", text(&twice));
}

#[test]
fn a_dead_forwarder_is_cleaned_up_by_down_or_replaced_by_up() {
    let lab = TestLab::up("dead", TWO_SUBNETS);
    let kill = |lab: &TestLab| {
        let pid = lab.status()["pid"].as_u64().unwrap() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(eventually(5, || text(&vpclab(&["status"])).contains(&format!("{} ", lab.name))
            && text(&vpclab(&["status"])).contains("forwarder dead")));
    };
    // `up` over the remains of a dead forwarder replaces them.
    kill(&lab);
    for cmd in [vec!["status", lab.name.as_str()], vec!["conntrack", "--lab", &lab.name]] {
        let out = vpclab(&cmd);
        assert!(!out.status.success() && text(&out).contains("forwarder dead"), "{cmd:?}: {}", text(&out));
    }
    let again = vpclab(&["up", lab.file.to_str().unwrap()]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(lab.ping("a1", "10.0.2.10").status.success());
    // `down` cleans up after one.
    kill(&lab);
    let out = vpclab(&["down", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(namespaces_of(&lab.name).is_empty(), "{:?}", namespaces_of(&lab.name));
    assert!(!std::path::Path::new(&format!("/run/vpclab/{}", lab.name)).exists());
}

#[test]
fn two_concurrent_ups_of_one_lab_make_one_lab() {
    require_root();
    let topo = TopologyFile::new("race", TWO_SUBNETS);
    let spawn = || std::process::Command::new(BIN).args(["up", topo.path()]).output().unwrap();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "exactly one up wins:\n{}\n{}", text(&a), text(&b));
    let loser = if a.status.success() { &b } else { &a };
    assert!(text(loser).contains("already running"), "{}", text(loser));
    let ping = vpclab(&["exec", "--lab", &topo.name, "a1", "--", "ping", "-c", "1", "-W", "2", "10.0.2.10"]);
    assert!(ping.status.success(), "the winner does not forward: {}", text(&ping));
    assert!(vpclab(&["down", &topo.name]).status.success());
    assert!(namespaces_of(&topo.name).is_empty());
}

#[test]
fn with_one_lab_running_the_lab_may_be_left_out() {
    require_root();
    // A run directory of its own, so this lab is the only one these commands see.
    let run_dir = std::env::temp_dir().join(lab_name("rundir"));
    std::fs::create_dir_all(&run_dir).unwrap();
    let topo = TopologyFile::new("single", TWO_SUBNETS);
    let cmd =
        |args: &[&str]| std::process::Command::new(BIN).env("VPCLAB_RUN_DIR", &run_dir).args(args).output().unwrap();
    struct Down<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down"]);
        }
    }
    let up = cmd(&["up", topo.path()]);
    assert!(up.status.success(), "{}", text(&up));
    let _down = Down(&cmd);
    let status = text(&cmd(&["status"]));
    assert!(status.contains(&topo.name) && status.contains("eni-multi-1"), "{status}");
    let ping = cmd(&["exec", "a1", "--", "ping", "-c", "1", "-W", "2", "10.0.2.10"]);
    assert!(ping.status.success(), "{}", text(&ping));
    let down = cmd(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(namespaces_of(&topo.name).is_empty());
    assert!(text(&cmd(&["status"])).contains("no lab is running"));
    let _ = std::fs::remove_dir_all(&run_dir);
}

#[test]
fn two_labs_with_the_same_addresses_run_side_by_side() {
    let one = TestLab::up("twin1", TWO_SUBNETS);
    let two = TestLab::up("twin2", TWO_SUBNETS);
    assert!(one.ping("a1", "10.0.2.10").status.success());
    assert!(two.ping("a1", "10.0.2.10").status.success());
    assert_ne!(one.status()["pid"], two.status()["pid"]);
    // Bringing the same lab up twice is refused and leaves the first one working.
    let again = vpclab(&["up", one.file.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already running"), "{}", text(&again));
    assert!(one.ping("a2", "10.0.1.10").status.success());
}

#[test]
fn an_invalid_topology_creates_nothing() {
    require_root();
    let name = lab_name("bad");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    let body = TWO_SUBNETS.replace("private_ip = \"10.0.2.10\"", "private_ip = \"10.0.2.1\"");
    std::fs::write(&file, format!("name = \"{name}\"\n{body}")).unwrap();
    for cmd in ["check", "up"] {
        let out = vpclab(&[cmd, file.to_str().unwrap()]);
        assert!(!out.status.success(), "{cmd} accepted a reserved address");
        let msg = text(&out);
        assert!(msg.contains(&format!("{name}.toml:")) && msg.contains("private_ip"), "{cmd}: {msg}");
    }
    assert!(namespaces_of(&name).is_empty());
    assert!(!std::path::Path::new(&format!("/run/vpclab/{name}")).exists());
    let _ = std::fs::remove_file(&file);
}

#[test]
fn the_default_lab_comes_up_and_forwards() {
    // The embedded default lab, under a name of the test's own so a person's `demo` is untouched.
    require_root();
    let name = lab_name("demo");
    let out = vpclab(&["up", "--name", &name]);
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = vpclab(&["down", &self.0]);
        }
    }
    let _down = Down(name.clone());
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("eni-app-float") && shown.contains("02:00:00:00:02:50"), "{shown}");
    assert!(shown.contains(&format!("internet `{name}-internet` (example 198.51.100.7)")), "{shown}");
    // Across subnets, out through the internet gateway (web has an Elastic IP), and out through
    // the NAT gateway (app is private).
    for (from, to) in [("web", "10.0.2.10"), ("web", "198.51.100.7"), ("app", "198.51.100.7")] {
        let ping = vpclab(&["exec", "--lab", &name, from, "--", "ping", "-c", "2", "-W", "2", to]);
        assert!(ping.status.success(), "{from} -> {to}: {}", text(&ping));
    }
    let bad = vpclab(&["up", "--name", "has-dash"]);
    assert!(!bad.status.success() && text(&bad).contains("no `-`"), "{}", text(&bad));
}

#[test]
fn bad_frames_are_counted_and_dropped_and_forwarding_goes_on() {
    use vpclab::model::Mac;
    use vpclab::packet::build;
    let lab = TestLab::up("frames", TWO_SUBNETS);
    let mac = |eni: &str| lab.eni(eni)["mac"].as_str().unwrap().parse::<Mac>().unwrap();
    let a1 = mac("eni-a1");
    let a2_tx_before = lab.eni("eni-a2")["tx_packets"].clone();
    let src: Ipv4Addr = "10.0.1.10".parse().unwrap();
    let dst: Ipv4Addr = "10.0.1.20".parse().unwrap();
    let spoofed = build::udp(mac("eni-a2"), Mac([2, 0xde, 0xad, 0, 0, 1]), src, dst, 1, 2, b"spoof");
    let mut ipv6 = build::udp(mac("eni-a2"), a1, src, dst, 1, 2, b"six");
    ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let mut truncated = build::udp(mac("eni-a2"), a1, src, dst, 1, 2, &[7; 100]);
    truncated.truncate(14 + 20 + 8 + 10); // the IPv4 header still claims 128 bytes
    let broadcast = build::udp(Mac([0xff; 6]), a1, src, "10.0.1.255".parse().unwrap(), 1, 2, b"all");
    // Larger than the VPC carries, sent by an instance that raised its own MTU.
    let oversized = build::udp(mac("eni-a2"), a1, src, dst, 1, 2, &[9; 9200]);
    let raised =
        std::process::Command::new("ip").args(["-n", &lab.ns("a1"), "link", "set", "eth0", "mtu", "9500"]).status();
    assert!(raised.unwrap().success(), "raising a1's MTU");
    let before = lab.eni("eni-a1");
    inject_frames(&lab.ns("a1"), "eth0", vec![spoofed, ipv6, truncated, broadcast, oversized]);
    let total =
        |e: &serde_json::Value| e["drops"].as_object().map_or(0, |d| d.values().filter_map(|v| v.as_u64()).sum());
    let before_total = total(&before);
    assert!(eventually(5, || total(&lab.eni("eni-a1")) >= before_total + 5), "the five frames were not all judged");
    let after = lab.eni("eni-a1");
    for reason in
        ["source_mac_mismatch", "unsupported_ethertype", "malformed", "broadcast_or_multicast", "mtu_exceeded"]
    {
        let delta = after["drops"][reason].as_u64().unwrap_or(0) - before["drops"][reason].as_u64().unwrap_or(0);
        assert_eq!(delta, 1, "{reason}: {before} -> {after}");
    }
    assert_eq!(lab.eni("eni-a2")["tx_packets"], a2_tx_before, "nothing bad reached a2");
    assert!(lab.ping("a1", "10.0.2.10").status.success(), "the forwarder stopped forwarding");
}

#[test]
fn up_foreground_forwards_until_ctrl_c_then_removes_the_lab() {
    use std::io::BufRead;
    require_root();
    let topo = TopologyFile::new("fg", TWO_SUBNETS);
    let mut child = std::process::Command::new(BIN)
        .args(["up", "--foreground", topo.path()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Reap(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = String::new();
    while !seen.contains("forwarding in the foreground") {
        let line = lines.next().expect("up --foreground ended before forwarding").unwrap();
        seen.push_str(&line);
        seen.push('\n');
    }
    assert!(seen.contains("eni-b1"), "{seen}");
    let ping = vpclab(&["exec", "--lab", &topo.name, "a1", "--", "ping", "-c", "1", "-W", "2", "10.0.2.10"]);
    assert!(ping.status.success(), "{}", text(&ping));
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "up --foreground ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(namespaces_of(&topo.name).is_empty(), "{:?}", namespaces_of(&topo.name));
    assert!(!std::path::Path::new(&format!("/run/vpclab/{}", topo.name)).exists());
}

#[test]
fn a_failed_up_leaves_everything_as_it_was() {
    require_root();
    let topo = TopologyFile::new("taken", TWO_SUBNETS);
    // Someone else's namespace has the name one of the lab's instances needs.
    let squatter = format!("{}-b1", topo.name);
    vpclab::netns::create_netns(&squatter).unwrap();
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = vpclab::netns::delete_netns(&self.0);
        }
    }
    let _remove = Remove(squatter.clone());
    let out = vpclab(&["up", topo.path()]);
    assert!(!out.status.success());
    assert!(text(&out).contains(&format!("namespace `{squatter}` already exists")), "{}", text(&out));
    assert_eq!(namespaces_of(&topo.name), vec![squatter.clone()], "up created or removed namespaces");
    assert!(!std::path::Path::new(&format!("/run/vpclab/{}", topo.name)).exists());
}

#[test]
fn a_route_to_an_unattached_eni_is_a_blackhole_in_status_and_in_traffic() {
    let body = TWO_SUBNETS.replacen("cidr = \"10.0.1.0/24\"\n", "cidr = \"10.0.1.0/24\"\nroute_table = \"rtb-a\"\n", 1)
        + r#"
[[route_table]]
id = "rtb-a"
vpc = "vpc-test"
routes = [{ destination = "10.0.9.0/24", target = "eni-spare" }]

[[network_interface]]
id = "eni-spare"
subnet = "subnet-b"
private_ip = "10.0.2.99"
source_dest_check = false
"#;
    let lab = TestLab::up("blackhole", &body);
    let routes = lab.status()["routes"].as_array().unwrap().clone();
    let spare = routes.iter().find(|r| r["target"] == "eni-spare").expect("the route is listed");
    assert_eq!(spare["state"], "blackhole (eni-spare is not attached)", "{spare}");
    assert_eq!(spare["subnets"][0], "subnet-a");
    assert!(routes.iter().any(|r| r["target"] == "local" && r["state"] == "active"));
    assert!(!lab.exec("a1", &["ping", "-c", "1", "-W", "1", "10.0.9.1"]).status.success());
    assert!(lab.drops("eni-a1", "blackhole") >= 1, "{}", lab.eni("eni-a1"));
}

#[test]
fn the_log_tells_start_changes_and_a_stop_by_signal() {
    let lab = TestLab::up("log", TWO_SUBNETS);
    let out = vpclab(&["stop-instances", "--lab", &lab.name, "--instance-ids", "b1"]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = lab.status()["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let log = std::path::PathBuf::from(format!("/run/vpclab/{}.log", lab.name));
    assert!(eventually(10, || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("is down"))));
    let text = std::fs::read_to_string(&log).unwrap();
    for needle in ["is up from", "applied: StopInstances b1", "SIGTERM received", "namespaces removed"] {
        assert!(text.contains(needle), "`{needle}` missing from the log:\n{text}");
    }
    assert!(text.lines().all(|l| l.starts_with("20") && l.as_bytes().get(23) == Some(&b'Z')), "timestamps:\n{text}");
    assert!(namespaces_of(&lab.name).is_empty(), "SIGTERM takes the lab down");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn the_control_socket_bounds_connections_and_request_size() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let lab = TestLab::up("ctl", TWO_SUBNETS);
    let pid = lab.status()["pid"].as_u64().unwrap();
    let sock = format!("/run/vpclab/{}/control.sock", lab.name);
    let threads = || {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse::<usize>().unwrap()
    };
    let before = threads();
    let idle: Vec<UnixStream> = (0..300).map(|_| UnixStream::connect(&sock).unwrap()).collect();
    // Whatever waits beyond the bound is answered `busy` at once, without a thread.
    let mut busy = 0;
    for c in &idle[200..] {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(c).read_line(&mut line);
        busy += usize::from(line.contains("busy"));
    }
    assert!(busy >= 100, "only {busy} of the last 100 idle connections were turned away");
    assert!(threads() <= before + vpclab::control::MAX_CONNECTIONS, "{} threads", threads());
    drop(idle);
    // Until the busy connections' threads are gone a status may be turned away: ask again.
    let status_ok = || {
        let out = vpclab(&["status", &lab.name, "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|v| v["enis"].is_array())
    };
    assert!(eventually(10, status_ok), "status works again once the idle clients go");
    // A line longer than the bound, and bytes that are not UTF-8, are answered with an error.
    let mut c = UnixStream::connect(&sock).unwrap();
    let long = vec![b'x'; vpclab::control::MAX_REQUEST as usize + 10];
    let _ = c.write_all(&long);
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line).unwrap();
    assert!(line.contains("longer than"), "{line}");
    let mut c = UnixStream::connect(&sock).unwrap();
    c.write_all(b"{\"cmd\":\"stat\xffus\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line).unwrap();
    assert!(line.contains("not UTF-8"), "{line}");
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = rss
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    assert!(kb < 200 * 1024, "the forwarder grew to {kb} kB");
}

#[test]
fn trace_refuses_a_port_for_icmp() {
    let out =
        vpclab(&["trace", "--lab", "nolab", "--from", "web", "--to", "10.0.2.10", "--proto", "icmp", "--dport", "22"]);
    assert!(!out.status.success() && text(&out).contains("--dport applies to tcp and udp only"), "{}", text(&out));
}

#[test]
fn exec_runs_with_the_instances_own_sys_and_ec2_hostname() {
    let lab = TestLab::up("sysfs", TWO_SUBNETS);
    let out = lab.exec("multi", &["sh", "-c", "hostname; ls /sys/class/net; cat /sys/class/net/eth1/address"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "ip-10-0-1-30", "EC2's private DNS name of the primary address: {t}");
    let ifaces: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    assert_eq!(ifaces, ["eth0", "eth1", "lo"], "only the instance's interfaces: {t}");
    let mac =
        lab.status()["enis"].as_array().unwrap().iter().find(|e| e["id"] == "eni-multi-1").unwrap()["mac"].clone();
    assert_eq!(lines[lines.len() - 1], mac.as_str().unwrap(), "{t}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "ip-10-0-1-30", "the host's hostname is untouched");
}

#[test]
fn a_lab_whose_forwarder_was_killed_under_traffic_is_resumed_with_its_instances_untouched() {
    let lab = TestLab::up("resume", TWO_SUBNETS);
    let mut sleeper =
        std::process::Command::new(BIN).args(["exec", "--lab", &lab.name, "b1", "--", "sleep", "600"]).spawn().unwrap();
    // A detached ENI waits in the host namespace: it must survive the crash too.
    let out = vpclab(&["detach-network-interface", "--lab", &lab.name, "--network-interface-id", "eni-multi-1"]);
    assert!(out.status.success(), "{}", text(&out));
    // Traffic flows while the forwarder dies.
    let mut ping = std::process::Command::new(BIN)
        .args(["exec", "--lab", &lab.name, "a1", "--", "ping", "-i", "0.01", "-c", "300", "-q", "10.0.2.10"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = lab.status()["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(eventually(5, || text(&vpclab(&["status", &lab.name])).contains("forwarder dead")));
    assert!(!lab.ping("a1", "10.0.2.10").status.success(), "nothing forwards without a forwarder");
    let out = vpclab(&["resume", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("connection tables start empty"), "{}", text(&out));
    assert!(lab.ping("a1", "10.0.2.10").status.success(), "forwarding again after resume");
    assert!(sleeper.try_wait().unwrap().is_none(), "a process in an instance survived the crash and the resume");
    let ns_mac =
        std::process::Command::new("ip").args(["-n", &lab.ns("b1"), "-br", "link", "show", "eth0"]).output().unwrap();
    assert!(text(&ns_mac).contains("UP"), "{}", text(&ns_mac));
    // The resumed lab is live: the detached ENI attaches elsewhere, and down removes everything.
    let out = vpclab(&[
        "attach-network-interface",
        "--lab",
        &lab.name,
        "--network-interface-id",
        "eni-multi-1",
        "--instance-id",
        "a2",
        "--device-index",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(lab.ping("b1", "10.0.2.30").status.success());
    let _ = ping.wait();
    let pid = lab.status()["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(eventually(5, || text(&vpclab(&["status", &lab.name])).contains("forwarder dead")));
    let out = vpclab(&["down", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    for eni in ["eni-a1", "eni-multi-1"] {
        let temp = vpclab::lab::tap_temp_name(&lab.name, eni);
        assert!(host_links_with_prefix(&temp).is_empty(), "{temp} left in the host namespace");
    }
    assert!(eventually(5, || sleeper.try_wait().unwrap().is_some()));
}

#[test]
fn frames_the_kernel_drops_in_a_full_tap_queue_are_counted_as_a_reason() {
    let lab = TestLab::up("tapq", TWO_SUBNETS);
    assert!(lab.ping("a1", "10.0.2.10").status.success(), "ARP resolved before the flood");
    let pid = nix::unistd::Pid::from_raw(lab.status()["pid"].as_u64().unwrap() as i32);
    // The forwarder stops reading; the instance sends far more than the TAP's queue holds.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let sent = in_ns(&lab.ns("a1"), || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_nonblocking(true).unwrap();
        (0..30_000).filter(|_| s.send_to(b"flood", "10.0.2.10:9").is_ok()).count() as u64
    })
    .join()
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(sent, 30_000);
    // Every datagram is accounted for: lost in the queue, or read by the forwarder (which also
    // read the ping and its ARP) once it has drained what was queued.
    let accounted = || lab.drops("eni-a1", "tap_queue_full") + lab.counter("eni-a1", "rx_packets");
    assert!(eventually(10, || accounted() >= sent), "{}", lab.status());
    let queue_full = lab.drops("eni-a1", "tap_queue_full");
    assert!(queue_full >= 10_000, "the queue holds 10,000 frames; {queue_full} lost");
    assert!(accounted() <= sent + 4, "{} vs {sent}", accounted());
}
