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
    assert_eq!(namespaces_of(&lab.name).len(), 4, "{:?}", namespaces_of(&lab.name));
    let out = vpclab(&["down", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(namespaces_of(&lab.name).is_empty(), "{:?}", namespaces_of(&lab.name));
    assert!(host_links_with_prefix(&format!("{}-", &lab.name[..lab.name.len().min(6)])).is_empty());
    assert!(!std::path::Path::new(&format!("/run/vpclab/{}", lab.name)).exists());
    let again = vpclab(&["down", &lab.name]);
    assert!(again.status.success(), "second down: {}", text(&again));
}

#[test]
fn down_cleans_up_after_a_dead_forwarder() {
    let lab = TestLab::up("dead", TWO_SUBNETS);
    let pid = lab.status()["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let listing = text(&vpclab(&["status"]));
    assert!(listing.contains(&lab.name) && listing.contains("dead"), "{listing}");
    let out = vpclab(&["down", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(namespaces_of(&lab.name).is_empty());
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
    // The embedded default lab is named "demo"; run it only if no "demo" lab is already up on
    // this machine (a person's own), so the test never disturbs it.
    require_root();
    if std::path::Path::new("/run/vpclab/demo").exists() {
        eprintln!("skipping: a `demo` lab is already running here");
        return;
    }
    let out = vpclab(&["up"]);
    struct Down;
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = vpclab(&["down", "demo"]);
        }
    }
    let _down = Down;
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("eni-app-float") && shown.contains("02:00:00:00:02:50"), "{shown}");
    assert!(shown.contains("not yet enforced"), "{shown}");
    let ping = vpclab(&["exec", "--lab", "demo", "web", "--", "ping", "-c", "2", "-W", "2", "10.0.2.10"]);
    assert!(ping.status.success(), "{}", text(&ping));
}
