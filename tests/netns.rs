//! Real namespaces and a real TAP through `vpclab::netns`, checked with `ip -j`.
//!
//! Needs root (skips with a note otherwise). Every name contains the test process's pid, a
//! `Cleanup` guard removes what a test made even when an assertion fails, and no frame leaves
//! the test's own namespace and TAP.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vpclab::model::{Cidr, Mac};
use vpclab::netns::{
    create_netns, create_netns_with, delete_netns, list_netns, netns_exists, run_in_netns, set_sysctl, set_sysctl_here,
    LinkConfig, Netlink, NetnsError, RouteSpec,
};

fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("note: {test} skipped: needs root for namespaces and TAP devices");
    }
    root
}

fn ns_name(tag: &str) -> String {
    format!("nltest{}-{tag}", std::process::id())
}

/// Removes the namespaces and host links a test made, whatever happened in the test.
#[derive(Default)]
struct Cleanup {
    namespaces: Vec<String>,
    host_links: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            if let Err(e) = delete_netns(ns) {
                eprintln!("cleanup: {e}");
            }
        }
        if let Ok(mut nl) = Netlink::open() {
            for link in &self.host_links {
                if let Err(e) = nl.delete_link(link) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
    }
}

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens a non-persistent TAP named `name` in the host namespace (gone when the fd closes).
fn open_tap(name: &str) -> File {
    let fd = nix::fcntl::open(
        "/dev/net/tun",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open /dev/net/tun");
    let tap = File::from(fd);
    let mut req =
        IfReqFlags { name: [0; libc::IFNAMSIZ], flags: (libc::IFF_TAP | libc::IFF_NO_PI) as _, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads a `struct ifreq` (name then flags; IfReqFlags has its size and
    // layout) from a pointer that is valid for the call; the fd is an open /dev/net/tun.
    let rc = unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReqFlags) };
    assert_eq!(rc, 0, "TUNSETIFF {name}: {}", std::io::Error::last_os_error());
    tap
}

fn ip_json(ns: &str, args: &[&str]) -> Value {
    let out = Command::new("ip").args(["-n", ns, "-j"]).args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
}

fn has_entry(list: &Value, want: &[(&str, &str)]) -> bool {
    list.as_array().unwrap().iter().any(|entry| {
        want.iter().all(|(k, v)| match &entry[*k] {
            Value::String(s) => s == v,
            Value::Number(n) => n.to_string() == *v,
            _ => false,
        })
    })
}

#[test]
fn namespaces_are_created_listed_and_deleted() {
    if !root_or_skip("namespaces_are_created_listed_and_deleted") {
        return;
    }
    let mut guard = Cleanup::default();
    let ns = ns_name("a");
    guard.namespaces.push(ns.clone());

    assert!(!netns_exists(&ns));
    create_netns(&ns).unwrap();
    assert!(netns_exists(&ns));
    assert!(list_netns().contains(&ns));

    // iproute2 sees it, and `lo` is up inside.
    let ip_list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&ip_list.stdout).contains(&ns));
    let lo = ip_json(&ns, &["link", "show", "lo"]);
    let flags = lo[0]["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "UP"), "lo not up: {lo}");

    match create_netns(&ns) {
        Err(NetnsError::Exists { netns }) => assert_eq!(netns, ns),
        other => panic!("second create_netns: {other:?}"),
    }
    assert!(netns_exists(&ns), "a failed create must not remove the existing namespace");

    // Closures run inside without moving the caller's thread.
    let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let inside = run_in_netns(&ns, || std::fs::read_link("/proc/thread-self/ns/net").unwrap()).unwrap();
    assert_ne!(own, inside);
    assert_eq!(own, std::fs::read_link("/proc/thread-self/ns/net").unwrap());

    set_sysctl(&ns, "net.ipv4.ip_forward", "1").unwrap();
    let fwd = run_in_netns(&ns, || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap());
    assert_eq!(fwd.unwrap().trim(), "1");
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let err = set_sysctl(&ns, "net.ipv4.no_such_key", "1").unwrap_err();
    assert!(err.to_string().contains("net.ipv4.no_such_key"), "{err}");
    assert_eq!(host_fwd, std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap());

    delete_netns(&ns).unwrap();
    assert!(!netns_exists(&ns));
    assert!(!list_netns().contains(&ns));
    delete_netns(&ns).expect("deleting an absent namespace is fine");
    assert!(matches!(run_in_netns(&ns, || ()), Err(NetnsError::NotFound { .. })));
}

#[test]
fn a_namespace_is_dressed_from_inside_by_the_thread_that_made_it() {
    if !root_or_skip("a_namespace_is_dressed_from_inside_by_the_thread_that_made_it") {
        return;
    }
    let mut guard = Cleanup::default();
    let ns = ns_name("d");
    guard.namespaces.push(ns.clone());

    let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let (inside, tap) = create_netns_with(&ns, || {
        set_sysctl_here("net.ipv6.conf.default.disable_ipv6", "1").unwrap();
        // Made inside, the TAP is born in the namespace: no move from the host.
        let tap = open_tap("eth0");
        (std::fs::read_link("/proc/thread-self/ns/net").unwrap(), tap)
    })
    .unwrap();
    assert_ne!(own, inside);
    assert_eq!(own, std::fs::read_link("/proc/thread-self/ns/net").unwrap(), "the caller stayed where it was");
    let named = run_in_netns(&ns, || std::fs::read_link("/proc/thread-self/ns/net").unwrap()).unwrap();
    assert_eq!(named, inside, "the closure ran in the namespace that got the name");
    let link = &ip_json(&ns, &["link", "show", "eth0"])[0];
    assert_eq!(link["ifname"], "eth0", "{link}");
    let lo = &ip_json(&ns, &["link", "show", "lo"])[0];
    assert!(lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "lo not up: {lo}");
    let v6 = run_in_netns(&ns, || std::fs::read_to_string("/proc/sys/net/ipv6/conf/eth0/disable_ipv6").unwrap());
    assert_eq!(v6.unwrap().trim(), "1", "eth0 took the namespace's default set before it was made");

    // A name that is taken runs nothing; a closure that fails leaves the namespace to the caller.
    let ran = std::sync::atomic::AtomicBool::new(false);
    let taken = create_netns_with(&ns, || ran.store(true, std::sync::atomic::Ordering::Relaxed));
    assert!(matches!(taken, Err(NetnsError::Exists { .. })), "{taken:?}");
    assert!(!ran.load(std::sync::atomic::Ordering::Relaxed));
    let failing = ns_name("e");
    guard.namespaces.push(failing.clone());
    let result = create_netns_with(&failing, || set_sysctl_here("net.ipv4.no_such_key", "1")).unwrap();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("net.ipv4.no_such_key"), "{err}");
    assert!(netns_exists(&failing), "the caller removes it");
    drop(tap);
}

#[test]
fn a_tap_moves_in_and_gets_addresses_routes_and_rules() {
    if !root_or_skip("a_tap_moves_in_and_gets_addresses_routes_and_rules") {
        return;
    }
    let mut guard = Cleanup::default();
    let ns = ns_name("b");
    let tap_name = format!("nlt{}b", std::process::id());
    guard.namespaces.push(ns.clone());
    guard.host_links.push(tap_name.clone());

    create_netns(&ns).unwrap();
    // No IPv6 chatter (router solicitations, DAD) on the TAP: only frames this test causes.
    set_sysctl(&ns, "net.ipv6.conf.default.disable_ipv6", "1").unwrap();
    set_sysctl(&ns, "net.ipv6.conf.all.disable_ipv6", "1").unwrap();

    let mut tap = open_tap(&tap_name);
    let mut host = Netlink::open().unwrap();
    assert!(host.link_index(&tap_name).unwrap().is_some());
    host.move_link(&tap_name, &ns, "eth0").unwrap();
    assert_eq!(host.link_index(&tap_name).unwrap(), None, "the TAP left the host namespace");

    let mut nl = Netlink::open_in(&ns).unwrap();
    assert!(nl.link_index("eth0").unwrap().is_some());
    let mac: Mac = "02:00:00:00:01:0a".parse().unwrap();
    let cfg = LinkConfig { mac: Some(mac), mtu: Some(9001), txqueuelen: Some(5000), up: true };
    nl.set_link("eth0", &cfg).unwrap();

    let (ip1, ip2) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 11));
    let router = Ipv4Addr::new(10, 0, 1, 1);
    nl.add_address("eth0", ip1, 24).unwrap();
    nl.add_address("eth0", ip2, 24).unwrap();
    let default = Cidr::new(Ipv4Addr::UNSPECIFIED, 0);
    nl.add_route(&RouteSpec {
        table: 254,
        destination: default,
        gateway: Some(router),
        ifname: "eth0".into(),
        scope_link: false,
        source: Some(ip1),
    })
    .unwrap();
    let subnet: Cidr = "10.0.1.0/24".parse().unwrap();
    nl.add_route(&RouteSpec {
        table: 100,
        destination: subnet,
        gateway: None,
        ifname: "eth0".into(),
        scope_link: true,
        source: Some(ip2),
    })
    .unwrap();
    nl.add_route(&RouteSpec {
        table: 100,
        destination: default,
        gateway: Some(router),
        ifname: "eth0".into(),
        scope_link: false,
        source: Some(ip2),
    })
    .unwrap();
    nl.add_rule(ip2, 100, 1000).unwrap();

    // What iproute2 sees.
    let link = &ip_json(&ns, &["addr", "show", "dev", "eth0"])[0];
    assert_eq!(link["address"], "02:00:00:00:01:0a");
    assert_eq!(link["mtu"], 9001);
    assert_eq!(link["txqlen"], 5000);
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{link}");
    let addrs = &link["addr_info"];
    assert!(has_entry(addrs, &[("family", "inet"), ("local", "10.0.1.10"), ("prefixlen", "24")]));
    assert!(has_entry(addrs, &[("family", "inet"), ("local", "10.0.1.11"), ("prefixlen", "24")]));

    let main = ip_json(&ns, &["route", "show", "table", "main"]);
    assert!(
        has_entry(&main, &[("dst", "default"), ("gateway", "10.0.1.1"), ("dev", "eth0"), ("prefsrc", "10.0.1.10")]),
        "{main}"
    );
    let t100 = ip_json(&ns, &["route", "show", "table", "100"]);
    assert!(has_entry(&t100, &[("dst", "default"), ("gateway", "10.0.1.1"), ("dev", "eth0")]), "{t100}");
    assert!(has_entry(&t100, &[("dst", "10.0.1.0/24"), ("scope", "link"), ("prefsrc", "10.0.1.11")]), "{t100}");
    let rules = ip_json(&ns, &["rule", "show"]);
    assert!(has_entry(&rules, &[("priority", "1000"), ("src", "10.0.1.11"), ("table", "100")]), "{rules}");

    // Error paths name what was wrong.
    let err = nl.add_address("nosuch0", ip1, 24).unwrap_err();
    assert!(matches!(&err, NetnsError::NoSuchLink { ifname, .. } if ifname == "nosuch0"), "{err:?}");
    assert!(err.to_string().contains("nosuch0"), "{err}");
    let err = nl.add_address("eth0", ip1, 24).unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::EEXIST), "{err}");
    assert!(err.to_string().contains("add address 10.0.1.10/24 to eth0"), "{err}");
    let err = nl.add_rule(ip2, 100, 1000).unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::EEXIST), "{err}");

    // A gateway that is not on any link: refused, with the kernel's extended-ACK text.
    let err = nl
        .add_route(&RouteSpec {
            table: 100,
            destination: "192.0.2.0/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(198, 51, 100, 1)),
            ifname: "eth0".into(),
            scope_link: false,
            source: None,
        })
        .unwrap_err();
    eprintln!("expected error: {err}");
    assert!(err.to_string().contains("via 198.51.100.1 dev eth0 table 100"), "{err}");
    assert!(matches!(&err, NetnsError::Netlink { message: Some(_), .. }), "{err:?}");

    // The fd opened in the host namespace still drives the moved device, both ways.
    let rx_before = rx_packets(&ns);
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x01, 0x63]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // IEEE local experimental: dropped
    tap.write_all(&frame).unwrap();
    assert_eq!(rx_packets(&ns), rx_before + 1, "a frame written to the fd reaches eth0");

    // An on-link destination makes the namespace ARP for it on eth0, i.e. write to our fd.
    run_in_netns(&ns, || {
        let s = UdpSocket::bind((ip1, 0)).unwrap();
        s.send_to(b"x", (Ipv4Addr::new(10, 0, 1, 99), 9)).unwrap();
    })
    .unwrap();
    let arp = read_frame(&mut tap, |f| f.len() >= 42 && f[12..14] == [0x08, 0x06]);
    assert_eq!(&arp[6..12], &mac.0, "ARP request from eth0's MAC");
    assert_eq!(&arp[38..42], &[10, 0, 1, 99], "asking for the on-link destination");

    drop(nl);
    nl_delete_in(&ns, "eth0");
}

fn nl_delete_in(ns: &str, ifname: &str) {
    let mut nl = Netlink::open_in(ns).unwrap();
    nl.delete_link(ifname).unwrap();
    assert_eq!(nl.link_index(ifname).unwrap(), None);
    nl.delete_link(ifname).expect("deleting an absent link is fine");
}

fn rx_packets(ns: &str) -> u64 {
    let link = ip_json(ns, &["-s", "link", "show", "eth0"]);
    link[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets in ip -s output")
}

/// Reads frames from the non-blocking TAP until one matches, for up to two seconds.
fn read_frame(tap: &mut File, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        match tap.read(&mut buf) {
            Ok(n) if wanted(&buf[..n]) => return buf[..n].to_vec(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("read from TAP: {e}"),
        }
    }
    panic!("no matching frame on the TAP within 2 s");
}

#[test]
fn moving_to_a_missing_namespace_or_link_fails_with_names() {
    if !root_or_skip("moving_to_a_missing_namespace_or_link_fails_with_names") {
        return;
    }
    let mut guard = Cleanup::default();
    let tap_name = format!("nlt{}c", std::process::id());
    guard.host_links.push(tap_name.clone());
    let _tap = open_tap(&tap_name);
    let mut host = Netlink::open().unwrap();
    let missing = ns_name("missing");
    match host.move_link(&tap_name, &missing, "eth0") {
        Err(NetnsError::NotFound { netns }) => assert_eq!(netns, missing),
        other => panic!("move to a missing namespace: {other:?}"),
    }
    let err = host.move_link("nosuch1", &missing, "eth0").unwrap_err();
    assert!(err.to_string().contains("nosuch1"), "{err}");
    let err = host.set_link("nosuch1", &LinkConfig::default()).unwrap_err();
    assert!(matches!(err, NetnsError::NoSuchLink { .. }), "{err:?}");
    assert!(matches!(Netlink::open_in(&missing), Err(NetnsError::NotFound { .. })));
    assert!(matches!(create_netns("../etc"), Err(NetnsError::InvalidName { .. })));
}
