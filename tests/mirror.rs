//! Traffic mirroring against a real lab: a Linux `vxlan` device in the target instance decodes
//! the copies; the filter is honoured (what it does not accept is not mirrored), `packet_length`
//! cuts each copy, and a target whose groups do not allow UDP 4789 gets nothing (the copies are
//! counted as refused). A TCP superframe (TSO) is mirrored as the wire packets it becomes.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const LAB: &str = r#"
[[vpc]]
id = "vpc-m"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-app"
vpc = "vpc-m"
cidr = "10.0.1.0/24"

[[subnet]]
id = "subnet-ids"
vpc = "vpc-m"
cidr = "10.0.2.0/24"

[[security_group]]
id = "sg-app"
vpc = "vpc-m"
ingress = [{ protocol = "all", source = "10.0.0.0/16" }]

[[security_group]]
id = "sg-ids"
vpc = "vpc-m"
ingress = [{ protocol = "udp", ports = "4789", source = "10.0.1.10/32" }]

[[instance]]
id = "web"

[[instance]]
id = "client"

[[instance]]
id = "ids"

[[network_interface]]
id = "eni-web"
subnet = "subnet-app"
private_ip = "10.0.1.10"
security_groups = ["sg-app"]
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-client"
subnet = "subnet-app"
private_ip = "10.0.1.20"
security_groups = ["sg-app"]
attachment = { instance = "client", device_index = 0 }

[[network_interface]]
id = "eni-ids"
subnet = "subnet-ids"
private_ip = "10.0.2.50"
security_groups = ["sg-ids"]
attachment = { instance = "ids", device_index = 0 }

[[traffic_mirror_target]]
id = "tmt-ids"
network_interface = "eni-ids"

[[traffic_mirror_filter]]
id = "tmf-7000"
ingress = [
  { rule = 100, action = "accept", protocol = "udp", destination_ports = "7000", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" },
  { rule = 200, action = "reject", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" },
]
egress = [
  { rule = 100, action = "accept", protocol = "udp", source_ports = "7000", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" },
]

[[traffic_mirror_session]]
id = "tms-web"
source = "eni-web"
target = "tmt-ids"
filter = "tmf-7000"
session_number = 1
virtual_network_id = 77
packet_length = 100

[[traffic_mirror_filter]]
id = "tmf-7100"
ingress = [
  { rule = 100, action = "accept", protocol = "tcp", destination_ports = "7100", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" },
]

[[traffic_mirror_session]]
id = "tms-web-tcp"
source = "eni-web"
target = "tmt-ids"
filter = "tmf-7100"
session_number = 2
virtual_network_id = 78
"#;

fn ip_n(ns: &str, args: &[&str]) {
    let out = Command::new("ip").arg("-n").arg(ns).args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip -n {ns} {args:?}: {}", text(&out));
}

/// Opens an AF_PACKET socket on `ifname` in namespace `ns` and collects the frames it sees
/// until `quiet` passes without one (after at least `want` came) or `secs` pass.
fn frames_on(ns: &str, ifname: &'static str, want: usize, secs: u64) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = in_ns(ns, move || {
        let (fd, mut sll) = packet_socket(ifname);
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(fd, (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
        };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
        // SAFETY: a valid timeval of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut idle = 0;
        while Instant::now() < deadline && !(frames.len() >= want && idle >= 5) {
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                frames.push(buf[..n as usize].to_vec());
                idle = 0;
            } else {
                idle += 1;
            }
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        frames
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("the reader is bound");
    h
}

/// The UDP ports of an inner (decoded) frame.
fn udp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip[9] != 17 {
        return None;
    }
    let l4 = usize::from(ip[0] & 0x0f) * 4;
    let p = ip.get(l4..l4 + 4)?;
    Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
}

fn session(lab: &TestLab) -> serde_json::Value {
    lab.status()["traffic_mirror_sessions"][0].clone()
}

#[test]
fn a_vxlan_device_in_the_target_decodes_filtered_truncated_copies_and_its_groups_can_refuse_them() {
    let lab = TestLab::up("mirror", LAB);
    let ids = lab.ns("ids");
    ip_n(
        &ids,
        &["link", "add", "vxlan0", "type", "vxlan", "id", "77", "dstport", "4789", "local", "10.0.2.50", "dev", "eth0"],
    );
    ip_n(&ids, &["link", "set", "vxlan0", "up"]);
    let web = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 10), 7000);
    let other = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 10), 7001);
    let payload = [0x5a_u8; 300];

    let reader = frames_on(&ids, "vxlan0", 6, 20);
    let server = udp_echo_server(&lab.ns("web"), web, 3);
    for _ in 0..3 {
        let back = udp_roundtrip(&lab.ns("client"), None, web, &payload).expect("the echo comes back");
        assert_eq!(back.len(), payload.len());
    }
    server.join().unwrap();
    // Not accepted by the filter (ingress rule 200 rejects it): delivered, never mirrored.
    for _ in 0..3 {
        udp_send(&lab.ns("client"), None, other, &payload);
    }
    let frames = reader.join().unwrap();
    let ports: Vec<(u16, u16)> = frames.iter().filter_map(|f| udp_ports(f)).collect();
    let requests = ports.iter().filter(|p| p.1 == 7000).count();
    let replies = ports.iter().filter(|p| p.0 == 7000).count();
    assert_eq!((requests, replies), (3, 3), "each request (ingress) and echo (egress) once: {ports:?}");
    assert!(!ports.iter().any(|p| p.1 == 7001), "the filter's reject is honoured: {ports:?}");
    for f in frames.iter().filter(|f| udp_ports(f).is_some()) {
        assert_eq!(f.len(), 100, "packet_length = 100 cuts each copy");
    }
    let s = session(&lab);
    assert_eq!(s["id"], "tms-web");
    assert_eq!(s["mirrored"].as_u64(), Some(6), "{s}");
    assert_eq!(lab.drops("eni-ids", "security_group_ingress"), 0);

    // The target's group no longer allows UDP 4789: the copies stop, counted as refused.
    let closed = std::env::temp_dir().join(format!("{}-closed.toml", lab.name));
    let body = std::fs::read_to_string(&lab.file).unwrap().replace(
        "ingress = [{ protocol = \"udp\", ports = \"4789\", source = \"10.0.1.10/32\" }]",
        "ingress = [{ protocol = \"udp\", ports = \"4790\", source = \"10.0.1.10/32\" }]",
    );
    std::fs::write(&closed, body).unwrap();
    let out = vpclab(&["apply", "--lab", &lab.name, closed.to_str().unwrap()]);
    let _ = std::fs::remove_file(&closed);
    assert!(out.status.success(), "apply: {}", text(&out));
    let reader = frames_on(&ids, "vxlan0", 1, 3);
    let server = udp_echo_server(&lab.ns("web"), web, 2);
    for _ in 0..2 {
        udp_roundtrip(&lab.ns("client"), None, web, &payload).expect("the echo comes back");
    }
    server.join().unwrap();
    assert!(
        eventually(10, || lab.drops("eni-ids", "security_group_ingress") >= 4),
        "the refused copies are counted on the target: {}",
        lab.eni("eni-ids")
    );
    let frames = reader.join().unwrap();
    assert!(frames.iter().all(|f| udp_ports(f).is_none()), "nothing decoded once refused: {}", frames.len());
    let s = session(&lab);
    assert_eq!(s["mirrored"].as_u64(), Some(6), "{s}");
    assert_eq!(s["dropped"]["security_group_ingress"].as_u64(), Some(4), "{s}");
}

/// The inner TCP packets (IP header on) of the VXLAN datagrams in `frames`, as seen on the
/// target's own interface (each outer datagram carries one copy: the TAP does no GRO).
fn inner_tcp(frames: &[Vec<u8>]) -> Vec<&[u8]> {
    const INNER_IP: usize = 14 + 20 + 8 + 8 + 14;
    frames
        .iter()
        .filter(|f| f.len() > INNER_IP + 40 && udp_ports(f).is_some_and(|p| p.1 == 4789) && f[INNER_IP + 9] == 6)
        .map(|f| &f[INNER_IP..])
        .collect()
}

#[test]
fn a_tso_superframe_is_mirrored_as_the_wire_packets_it_becomes() {
    let lab = TestLab::up("mirrortso", LAB);
    let reader = frames_on(&lab.ns("ids"), "eth0", 30, 20);
    let web = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 10), 7100);
    let echo = tcp_echo_all(tcp_listen(&lab.ns("web"), web), 1, 20);
    let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let mut s = tcp_connect(&lab.ns("client"), web, 5).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(echo_over(&mut s, &data).expect("echoed"), data);
    drop(s);
    echo.join().unwrap();
    let frames = reader.join().unwrap();
    let mut payload_by_seq = std::collections::BTreeMap::new();
    for ip in inner_tcp(&frames) {
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert!(total <= 9001, "a wire packet's length, not a superframe's: {total}");
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let doff = usize::from(ip[ihl + 12] >> 4) * 4;
        let seq = u32::from_be_bytes([ip[ihl + 4], ip[ihl + 5], ip[ihl + 6], ip[ihl + 7]]);
        payload_by_seq.insert(seq, total - ihl - doff);
    }
    let mirrored: usize = payload_by_seq.values().sum();
    assert_eq!(mirrored, data.len(), "every byte the client sent, in wire packets ({} copies)", payload_by_seq.len());
    assert!(payload_by_seq.len() >= data.len() / 8949, "at least as many packets as the MTU allows");
}

#[test]
fn with_two_workers_each_copy_reaches_the_target_once() {
    let lab = TestLab::up_with("mirrorwk", LAB, &["--workers", "2"]);
    let ids = lab.ns("ids");
    ip_n(
        &ids,
        &["link", "add", "vxlan0", "type", "vxlan", "id", "77", "dstport", "4789", "local", "10.0.2.50", "dev", "eth0"],
    );
    ip_n(&ids, &["link", "set", "vxlan0", "up"]);
    let web = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 10), 7000);
    let payload = [0x5a_u8; 300];
    // Eight exchanges, each from a port of its own: their copies' VXLAN flows (outer source port
    // hashed from the inner packet) are owned by both workers, whichever mirrored them.
    const EXCHANGES: usize = 8;
    let reader = frames_on(&ids, "vxlan0", 2 * EXCHANGES, 20);
    let server = udp_echo_server(&lab.ns("web"), web, EXCHANGES);
    for _ in 0..EXCHANGES {
        udp_roundtrip(&lab.ns("client"), None, web, &payload).expect("the echo comes back");
    }
    server.join().unwrap();
    let frames = reader.join().unwrap();
    let ports: Vec<(u16, u16)> = frames.iter().filter_map(|f| udp_ports(f)).collect();
    let requests = ports.iter().filter(|p| p.1 == 7000).count();
    let replies = ports.iter().filter(|p| p.0 == 7000).count();
    assert_eq!((requests, replies), (EXCHANGES, EXCHANGES), "each request and echo once: {ports:?}");
    let s = session(&lab);
    assert_eq!(s["mirrored"].as_u64(), Some(2 * EXCHANGES as u64), "both workers' counts summed: {s}");
    assert_eq!(lab.drops("eni-ids", "worker_handoff_lost"), 0);
}
