//! Test harness: brings up real labs under unique names and guarantees `down` runs, even when
//! an assertion fails. Needs root (CI runs as root); without it the tests fail loudly rather
//! than pass without having run.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_vpclab");

/// Two subnets of one VPC: `a1` (with a secondary IP) and `a2` in subnet A, `b1` in subnet B,
/// and `multi`, an instance with a second ENI in subnet B.
pub const TWO_SUBNETS: &str = r#"
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

[[instance]]
id = "a1"

[[instance]]
id = "a2"

[[instance]]
id = "b1"

[[instance]]
id = "multi"

[[network_interface]]
id = "eni-a1"
subnet = "subnet-a"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.11"]
attachment = { instance = "a1", device_index = 0 }

[[network_interface]]
id = "eni-a2"
subnet = "subnet-a"
private_ip = "10.0.1.20"
attachment = { instance = "a2", device_index = 0 }

[[network_interface]]
id = "eni-b1"
subnet = "subnet-b"
private_ip = "10.0.2.10"
attachment = { instance = "b1", device_index = 0 }

[[network_interface]]
id = "eni-multi-0"
subnet = "subnet-a"
private_ip = "10.0.1.30"
attachment = { instance = "multi", device_index = 0 }

[[network_interface]]
id = "eni-multi-1"
subnet = "subnet-b"
private_ip = "10.0.2.30"
attachment = { instance = "multi", device_index = 1 }
"#;

/// Subnets A and B route to each other through `eni-appl1` (subnet C); `eni-appl2` is a second
/// appliance with the source/destination check still on.
pub const APPLIANCES: &str = r#"
[[vpc]]
id = "vpc-test"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-test"
cidr = "10.0.1.0/24"
route_table = "rtb-a"

[[subnet]]
id = "subnet-b"
vpc = "vpc-test"
cidr = "10.0.2.0/24"
route_table = "rtb-b"

[[subnet]]
id = "subnet-c"
vpc = "vpc-test"
cidr = "10.0.3.0/24"

[[route_table]]
id = "rtb-a"
vpc = "vpc-test"
routes = [ { destination = "10.0.2.0/24", target = "eni-appl1" } ]

[[route_table]]
id = "rtb-b"
vpc = "vpc-test"
routes = [ { destination = "10.0.1.0/24", target = "eni-appl1" } ]

[[security_group]]
id = "sg-all"
vpc = "vpc-test"
ingress = [ { protocol = "all", source = "10.0.0.0/16" } ]

[[instance]]
id = "a1"

[[instance]]
id = "b1"

[[instance]]
id = "appl1"

[[instance]]
id = "appl2"

[[network_interface]]
id = "eni-a1"
subnet = "subnet-a"
private_ip = "10.0.1.10"
security_groups = ["sg-all"]
attachment = { instance = "a1", device_index = 0 }

[[network_interface]]
id = "eni-b1"
subnet = "subnet-b"
private_ip = "10.0.2.10"
security_groups = ["sg-all"]
attachment = { instance = "b1", device_index = 0 }

[[network_interface]]
id = "eni-appl1"
subnet = "subnet-c"
private_ip = "10.0.3.10"
security_groups = ["sg-all"]
source_dest_check = false
attachment = { instance = "appl1", device_index = 0 }

[[network_interface]]
id = "eni-appl2"
subnet = "subnet-c"
private_ip = "10.0.3.20"
security_groups = ["sg-all"]
attachment = { instance = "appl2", device_index = 0 }
"#;

/// The embedded default lab (web with an Elastic IP, app behind the NAT gateway, an internet
/// host 198.51.100.7), without its name line: `TestLab` gives it a unique one.
pub fn default_body() -> String {
    include_str!("../../netns-setup/default.toml")
        .lines()
        .filter(|l| !l.starts_with("name ="))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create namespaces and TAP devices: run them as root (scripts/test.sh does)"
    );
}

/// A unique lab name for this test process and tag (lab names hold no `-`).
pub fn lab_name(tag: &str) -> String {
    format!("t{}{tag}", std::process::id())
}

/// Polls `f` until it returns true or `secs` pass; returns its last answer.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn vpclab(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("vpclab runs")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `ip:port` from an address written as text.
pub fn addr(ip: &str, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.parse().unwrap(), port)
}

/// Whether one ping from `instance` to `dst` is answered within a second.
pub fn pings(lab: &TestLab, instance: &str, dst: &str) -> bool {
    lab.exec(instance, &["ping", "-c", "1", "-W", "1", dst]).status.success()
}

/// The same from any namespace of the lab (the internet's included), by `ip netns exec`.
pub fn ns_pings(ns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", dst])
        .output()
        .expect("ip netns exec runs")
        .status
        .success()
}

/// A trace (`vpclab trace --json`) that ends in a drop by `reason`, explained by `code`, at `at`.
pub fn assert_dropped(t: &serde_json::Value, reason: &str, code: &str, at: &str) {
    assert_eq!(t["verdict"], "dropped", "trace: {t:#}");
    assert_eq!(t["drop_reason"], reason, "trace: {t:#}");
    assert_eq!(t["explanation_code"], code, "trace: {t:#}");
    assert_eq!(t["dropped_at"], at, "trace: {t:#}");
}

/// A trace that ends delivered to `to`.
pub fn assert_delivered(t: &serde_json::Value, to: &str) {
    assert_eq!(t["verdict"], "delivered", "trace: {t:#}");
    assert_eq!(t["delivered_to"], to, "trace: {t:#}");
    assert!(t["drop_reason"].is_null(), "trace: {t:#}");
}

/// A running lab; dropping it runs `vpclab down` and removes the topology file.
pub struct TestLab {
    pub name: String,
    pub file: PathBuf,
    pub up_output: String,
}

impl TestLab {
    /// Writes `name = "<unique>"` + `body` to a file and brings it up; panics with vpclab's
    /// output if that fails.
    pub fn up(tag: &str, body: &str) -> TestLab {
        TestLab::up_with(tag, body, &[])
    }

    /// [`TestLab::up`] with more arguments for `vpclab up` (`--workers 2`, say).
    pub fn up_with(tag: &str, body: &str, args: &[&str]) -> TestLab {
        require_root();
        let name = lab_name(tag);
        let file = std::env::temp_dir().join(format!("{name}.toml"));
        std::fs::write(&file, format!("name = \"{name}\"\n{body}")).unwrap();
        // Guard first, so a half-started lab is removed too.
        let mut lab = TestLab { name, file, up_output: String::new() };
        let mut all = vec!["up", lab.file.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = vpclab(&all);
        lab.up_output = text(&out);
        assert!(out.status.success(), "vpclab up failed:\n{}", lab.up_output);
        lab
    }

    pub fn ns(&self, instance: &str) -> String {
        format!("{}-{instance}", self.name)
    }

    /// Runs a command in an instance through `vpclab exec`.
    pub fn exec(&self, instance: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", "--lab", &self.name, instance, "--"];
        args.extend_from_slice(cmd);
        vpclab(&args)
    }

    pub fn ping(&self, instance: &str, dst: &str) -> Output {
        self.exec(instance, &["ping", "-c", "2", "-i", "0.2", "-W", "2", dst])
    }

    pub fn status(&self) -> serde_json::Value {
        let out = vpclab(&["status", &self.name, "--json"]);
        assert!(out.status.success(), "status failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// The status entry of one ENI.
    pub fn eni(&self, id: &str) -> serde_json::Value {
        let s = self.status();
        s["enis"].as_array().unwrap().iter().find(|e| e["id"] == id).cloned().expect("ENI in status")
    }

    pub fn drops(&self, eni: &str, reason: &str) -> u64 {
        self.eni(eni)["drops"][reason].as_u64().unwrap_or(0)
    }

    /// A counter (`rx_packets`, `tx_packets`, ...) of one ENI.
    pub fn counter(&self, eni: &str, name: &str) -> u64 {
        self.eni(eni)[name].as_u64().expect("counter in status")
    }

    /// `vpclab trace --lab <lab> --json ARGS...`, parsed.
    pub fn trace(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["trace", "--lab", &self.name, "--json"];
        all.extend_from_slice(args);
        let out = vpclab(&all);
        assert!(out.status.success(), "trace {args:?} failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("trace --json: {e}: {}", text(&out)))
    }

    /// `vpclab conntrack --lab <lab> --json [ENI]`, parsed: one object per entry.
    pub fn conntrack(&self, eni: Option<&str>) -> Vec<serde_json::Value> {
        let mut all = vec!["conntrack", "--lab", &self.name, "--json"];
        all.extend(eni);
        let out = vpclab(&all);
        assert!(out.status.success(), "conntrack failed: {}", text(&out));
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("conntrack --json: {e}: {}", text(&out)));
        v.as_array().expect("conntrack --json is an array").clone()
    }

    /// Runs a command in an instance and panics with its output if it fails.
    pub fn must(&self, instance: &str, cmd: &[&str]) {
        let out = self.exec(instance, cmd);
        assert!(out.status.success(), "{instance}: {cmd:?} failed: {}", text(&out));
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let out = vpclab(&["down", &self.name]);
        if !out.status.success() {
            eprintln!("vpclab down {} failed: {}", self.name, text(&out));
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Runs `f` on a new thread that has entered instance namespace `ns`; sockets it opens live there.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    let ns = ns.to_string();
    thread::spawn(move || {
        vpclab::netns::enter_netns(&ns).expect("enter namespace");
        f()
    })
}

/// A TCP echo server in `ns` on `addr`; returns once it listens. It serves one connection.
pub fn tcp_echo_server(ns: &str, addr: SocketAddrV4) -> thread::JoinHandle<()> {
    let (tx, rx) = mpsc::channel();
    let h = in_ns(ns, move || {
        let l = TcpListener::bind(addr).expect("bind");
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).expect("echo"),
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server listening");
    h
}

/// Connects from `ns` to `addr`, sends `data`, and returns what came back.
pub fn tcp_echo_client(ns: &str, addr: SocketAddrV4, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    in_ns(ns, move || {
        let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut w = s.try_clone()?;
        let writer = thread::spawn(move || {
            w.write_all(&data)?;
            w.shutdown(std::net::Shutdown::Write)
        });
        let mut back = Vec::new();
        (&s).read_to_end(&mut back)?;
        writer.join().expect("writer")?;
        Ok(back)
    })
    .join()
    .expect("client thread")
}

/// A UDP echo server in `ns` answering `count` datagrams.
pub fn udp_echo_server(ns: &str, addr: SocketAddrV4, count: usize) -> thread::JoinHandle<()> {
    let (tx, rx) = mpsc::channel();
    let h = in_ns(ns, move || {
        let s = UdpSocket::bind(addr).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        for _ in 0..count {
            let Ok((n, from)) = s.recv_from(&mut buf) else { return };
            s.send_to(&buf[..n], from).unwrap();
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server bound");
    h
}

/// Sends one datagram from `ns` (from `src`, or any address) and waits for the echo.
pub fn udp_roundtrip(ns: &str, src: Option<Ipv4Addr>, dst: SocketAddrV4, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let payload = payload.to_vec();
    in_ns(ns, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(src.unwrap_or(Ipv4Addr::UNSPECIFIED), 0))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.send_to(&payload, dst)?;
        let mut buf = [0u8; 2048];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(buf[..n].to_vec())
    })
    .join()
    .expect("client thread")
}

/// A TCP listener bound in `ns` (the socket stays in that namespace wherever it is used).
pub fn tcp_listen(ns: &str, addr: SocketAddrV4) -> TcpListener {
    in_ns(ns, move || TcpListener::bind(addr).expect("bind")).join().expect("listen thread")
}

/// Echoes every connection accepted on `l` (each on its own thread) until `max` were accepted or
/// `secs` pass; a connection is echoed until its peer closes it or it idles for 20 s.
pub fn tcp_echo_all(l: TcpListener, max: usize, secs: u64) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let mut accepted = 0;
        while accepted < max && std::time::Instant::now() < deadline {
            match l.accept() {
                Ok((mut s, _)) => {
                    accepted += 1;
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n @ 1..) = s.read(&mut buf) {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
        accepted
    })
}

/// Connects from `ns` to `addr` within `secs` seconds.
pub fn tcp_connect(ns: &str, addr: SocketAddrV4, secs: u64) -> std::io::Result<TcpStream> {
    in_ns(ns, move || {
        let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(secs))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(s)
    })
    .join()
    .expect("connect thread")
}

/// Sends `msg` on an echoed connection and reads the echo back.
pub fn echo_over(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// Sends one UDP datagram from `ns` (from `src`, or any address) without waiting for anything.
pub fn udp_send(ns: &str, src: Option<Ipv4Addr>, dst: SocketAddrV4, payload: &[u8]) {
    let payload = payload.to_vec();
    in_ns(ns, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(src.unwrap_or(Ipv4Addr::UNSPECIFIED), 0)).expect("bind");
        s.send_to(&payload, dst).expect("send");
    })
    .join()
    .expect("send thread")
}

/// Namespaces whose name starts with the lab's name and a dash.
pub fn namespaces_of(lab: &str) -> Vec<String> {
    let prefix = format!("{lab}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Host links whose name starts with `prefix`.
pub fn host_links_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes a topology file for a lab that a test brings up itself; removes it when dropped.
pub struct TopologyFile {
    pub name: String,
    pub path: PathBuf,
}

impl TopologyFile {
    pub fn new(tag: &str, body: &str) -> TopologyFile {
        let name = lab_name(tag);
        let path = std::env::temp_dir().join(format!("{name}.toml"));
        std::fs::write(&path, format!("name = \"{name}\"\n{body}")).unwrap();
        TopologyFile { name, path }
    }

    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TopologyFile {
    fn drop(&mut self) {
        let _ = vpclab(&["down", &self.name]);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An AF_PACKET socket for every protocol, in the calling thread's namespace, and a link-layer
/// address naming `ifname` (its family and index set, the rest zero) to bind or send to. The
/// caller closes the socket.
pub fn packet_socket(ifname: &str) -> (libc::c_int, libc::sockaddr_ll) {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
    assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex > 0, "no interface {ifname}");
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    (fd, sll)
}

/// Sends raw Ethernet frames out of `ifname` inside `ns` through an AF_PACKET socket, so they
/// reach the forwarder exactly as written (bad ones included).
pub fn inject_frames(ns: &str, ifname: &str, frames: Vec<Vec<u8>>) {
    let ifname = ifname.to_string();
    in_ns(ns, move || {
        let (fd, mut sll) = packet_socket(&ifname);
        sll.sll_halen = 6;
        for f in frames {
            // SAFETY: f and sll are valid for the lengths given, for the duration of the call.
            let n = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(n, f.len() as isize, "sendto: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is ours and closed once.
        unsafe { libc::close(fd) };
    })
    .join()
    .expect("inject thread");
}

/// Connects from `ns` to `addr` from source address `src` (any port), within `secs` seconds
/// (Linux bounds `connect` by `SO_SNDTIMEO`).
pub fn tcp_connect_from(ns: &str, src: Ipv4Addr, addr: SocketAddrV4, secs: u64) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    in_ns(ns, move || {
        let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
        setsockopt(&fd, sockopt::SendTimeout, &nix::sys::time::TimeVal::new(secs as i64, 0))?;
        bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))?;
        connect(fd.as_raw_fd(), &SockaddrIn::from(addr))?;
        let s = TcpStream::from(fd);
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(s)
    })
    .join()
    .expect("connect thread")
}

/// A TCP server in `ns` on `addr`: accepts one connection within `secs` seconds, echoes it until
/// the peer closes it, and returns the peer's address as the server saw it (None: nobody came).
pub fn tcp_peer_server(ns: &str, addr: SocketAddrV4, secs: u64) -> thread::JoinHandle<Option<std::net::SocketAddr>> {
    let l = tcp_listen(ns, addr);
    thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    return Some(peer);
                }
                Err(_) if std::time::Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Err(_) => return None,
            }
        }
    })
}

/// A UDP server in `ns` on `addr`: echoes one datagram and returns its sender as seen there.
pub fn udp_peer_server(ns: &str, addr: SocketAddrV4) -> thread::JoinHandle<Option<std::net::SocketAddr>> {
    let (tx, rx) = mpsc::channel();
    let h = in_ns(ns, move || {
        let s = UdpSocket::bind(addr).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = s.recv_from(&mut buf).ok()?;
        s.send_to(&buf[..n], from).ok()?;
        Some(from)
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server bound");
    h
}

impl TestLab {
    /// Like [`TestLab::up`], with environment variables for `vpclab up` (its forwarder inherits
    /// them), e.g. `VPCLAB_FAIL_AFTER_STEPS`.
    pub fn up_with_env(tag: &str, body: &str, env: &[(&str, &str)]) -> TestLab {
        require_root();
        let name = lab_name(tag);
        let file = std::env::temp_dir().join(format!("{name}.toml"));
        std::fs::write(&file, format!("name = \"{name}\"\n{body}")).unwrap();
        let mut lab = TestLab { name, file, up_output: String::new() };
        let out = Command::new(BIN).arg("up").arg(&lab.file).envs(env.iter().copied()).output().expect("vpclab runs");
        lab.up_output = text(&out);
        assert!(out.status.success(), "vpclab up failed:\n{}", lab.up_output);
        lab
    }
}

/// The pids of the processes inside network namespace `ns` (as `ip netns pids` lists them).
pub fn namespace_pids(ns: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(format!("/run/netns/{ns}")) else { return Vec::new() };
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
        })
        .collect()
}
