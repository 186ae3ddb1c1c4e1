//! `vpclab capture` against real labs and real traffic: files read back with tcpdump and tshark,
//! verdicts in the comments (a refused SYN, a NAT rewrite), a capture to a pipe read while it
//! runs, Ctrl-C ending a valid file, and a flood that fills the queue without blocking forwarding.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};

use common::*;

/// The default lab's topology, under a test's own lab name.
fn default_lab(tag: &str) -> TestLab {
    let body: String = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/netns-setup/default.toml"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("name ="))
        .map(|l| format!("{l}\n"))
        .collect();
    TestLab::up(tag, &body)
}

/// A capture running in the background, killed (and its file removed) when dropped.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(lab: &TestLab, tag: &str, args: &[&str]) -> Capture {
        let file = std::env::temp_dir().join(format!("{}-{tag}.pcapng", lab.name));
        let mut all = vec!["capture", "--lab", &lab.name, "-w", file.to_str().unwrap()];
        all.extend_from_slice(args);
        let child = Command::new(BIN).args(&all).stderr(Stdio::piped()).spawn().expect("vpclab capture runs");
        let c = Capture { child, file };
        // The file's section and interface blocks are written once the capture is registered.
        assert!(eventually(10, || std::fs::metadata(&c.file).is_ok_and(|m| m.len() > 0)), "capture did not start");
        c
    }

    /// Ends it with SIGINT (as Ctrl-C does) and returns its standard error.
    fn stop(&mut self) -> String {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGINT)
            .unwrap();
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "capture failed: {err}");
        err
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// `tshark -r FILE -T fields -e ...`: one row per frame, fields split on tabs.
fn tshark(file: &std::path::Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["-r", file.to_str().unwrap(), "-T", "fields", "-E", "separator=\t"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let out = Command::new("tshark").args(&args).output().expect("tshark is installed (scripts/install-deps.sh)");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('\t').map(String::from).collect()).collect()
}

fn tcpdump(file: &std::path::Path) -> String {
    let out = Command::new("tcpdump").args(["-n", "-r", file.to_str().unwrap()]).output().expect("tcpdump runs");
    assert!(out.status.success(), "tcpdump: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_capture_shows_delivered_frames_both_ways_and_a_refused_syn_with_its_reason() {
    let lab = default_lab("capgrp");
    assert!(lab.ping("web", "10.0.2.10").status.success(), "ARP warm");
    let mut cap = Capture::start(&lab, "grp", &["eni-web", "eni-app"]);
    assert!(lab.ping("web", "10.0.2.10").status.success());
    // sg-app admits no SSH from web: the SYN is refused at eni-app's groups.
    let refused = tcp_connect(&lab.ns("web"), "10.0.2.10:22".parse().unwrap(), 1);
    assert!(refused.is_err(), "SSH to app must be refused by its groups");
    let err = cap.stop();
    let file = cap.file.clone();
    assert!(err.contains("captured on eni-web eni-app; 0 lost"), "{err}");

    let rows = tshark(
        &file,
        &["frame.interface_name", "frame.packet_flags_direction", "ip.src", "ip.dst", "icmp.type", "frame.comment"],
    );
    let has = |iface: &str, dir: &str, src: &str, icmp: &str, comment: &str| {
        rows.iter().any(|r| r[0] == iface && r[1] == dir && r[2] == src && r[4] == icmp && r[5] == comment)
    };
    // Direction from the instance's point of view: 0x2 outbound (sent), 0x1 inbound (delivered).
    assert!(has("eni-web", "0x00000002", "10.0.1.10", "8", "forwarded to eni-app"), "{rows:?}");
    assert!(has("eni-app", "0x00000001", "10.0.1.10", "8", "delivered from eni-web"), "{rows:?}");
    assert!(has("eni-app", "0x00000002", "10.0.2.10", "0", "forwarded to eni-web"), "{rows:?}");
    assert!(has("eni-web", "0x00000001", "10.0.2.10", "0", "delivered from eni-app"), "{rows:?}");
    let syn_comment = "dropped at eni-app: security_group_ingress: no rule of eni-app's security groups allows tcp 22 from 10.0.1.10 [ENI_SG_RULES_MISMATCH]";
    let syns: Vec<_> = rows.iter().filter(|r| r[5] == syn_comment).collect();
    assert!(syns.iter().any(|r| r[0] == "eni-web" && r[1] == "0x00000002"), "SYN as web sent it: {rows:?}");
    assert!(syns.iter().any(|r| r[0] == "eni-app" && r[1] == "0x00000001"), "SYN where it was refused: {rows:?}");
    // tcpdump reads the same file.
    let dump = tcpdump(&file);
    assert!(dump.contains("10.0.1.10 > 10.0.2.10: ICMP echo request"), "{dump}");
    assert!(dump.contains("10.0.1.10.") && dump.contains("> 10.0.2.10.22: Flags [S]"), "{dump}");
    // The capture changed nothing: the lab's counters agree with what the file holds.
    assert!(lab.drops("eni-app", "security_group_ingress") >= 1);
}

#[test]
fn a_nat_gateway_capture_shows_the_rewrite() {
    let lab = default_lab("capnat");
    let mut cap = Capture::start(&lab, "nat", &["nat-main", "app", "--snaplen", "96"]);
    assert!(lab.ping("app", "198.51.100.7").status.success(), "app reaches the internet through nat-main");
    cap.stop();
    let file = cap.file.clone();
    let rows = tshark(
        &file,
        &["frame.interface_name", "frame.packet_flags_direction", "ip.src", "ip.dst", "frame.cap_len", "frame.comment"],
    );
    let out_of_nat = rows
        .iter()
        .find(|r| r[0] == "nat-main" && r[1] == "0x00000002")
        .unwrap_or_else(|| panic!("no frame leaving nat-main: {rows:?}"));
    assert_eq!((out_of_nat[2].as_str(), out_of_nat[3].as_str()), ("203.0.113.10", "198.51.100.7"), "translated source");
    assert!(
        out_of_nat[5].starts_with("translated towards the internet; nat-main: source 10.0.2.10:"),
        "{out_of_nat:?}"
    );
    assert!(out_of_nat[5].contains("-> 10.0.1.100:"), "{out_of_nat:?}");
    let back = rows
        .iter()
        .find(|r| r[0] == "eni-app" && r[1] == "0x00000001" && r[2] == "198.51.100.7")
        .unwrap_or_else(|| panic!("no reply delivered to app: {rows:?}"));
    assert!(back[5].starts_with("delivered from the internet; "), "{back:?}");
    assert!(rows.iter().all(|r| r[4].parse::<u32>().unwrap() <= 96), "snaplen honoured: {rows:?}");
}

#[test]
fn a_capture_to_a_pipe_is_read_while_it_runs_and_ctrl_c_ends_it_cleanly() {
    let lab = default_lab("cappipe");
    let mut child = Command::new(BIN)
        .args(["capture", "--lab", &lab.name, "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until a packet block has arrived, then hand back what came so far.
        while !contains_packet_block(&got) {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        (got, stdout)
    });
    // Keep pinging until the reader has seen a frame: the pipe gets each one as it happens.
    assert!(eventually(20, || {
        let _ = lab.exec("web", &["ping", "-c", "1", "-W", "1", "10.0.2.10"]);
        reader.is_finished()
    }));
    let (mut got, mut stdout) = reader.join().unwrap();
    assert!(contains_packet_block(&got), "a frame reached the pipe while the capture ran");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    stdout.read_to_end(&mut got).unwrap();
    assert!(child.wait().unwrap().success());
    // The stream ends with a statistics block per interface: a complete, valid file.
    let file = std::env::temp_dir().join(format!("{}-pipe.pcapng", lab.name));
    std::fs::write(&file, &got).unwrap();
    let dump = tcpdump(&file);
    let _ = std::fs::remove_file(&file);
    assert!(dump.contains("ICMP echo request"), "{dump}");
    assert_eq!(block_types(&got).last(), Some(&5), "ends with whole blocks, the last an interface statistics block");
}

/// Whether the pcapng bytes hold an enhanced packet block (type 6).
fn contains_packet_block(bytes: &[u8]) -> bool {
    block_types(bytes).contains(&6)
}

/// The types of the whole blocks at the start of little-endian pcapng bytes.
fn block_types(bytes: &[u8]) -> Vec<u32> {
    let (mut at, mut types) = (0, Vec::new());
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if len < 12 || at + len > bytes.len() {
            break;
        }
        types.push(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()));
        at += len;
    }
    types
}

#[test]
fn a_flood_under_capture_is_written_or_counted_lost_and_never_blocks_forwarding() {
    let lab = default_lab("capflood");
    assert!(lab.ping("web", "10.0.2.10").status.success());
    let mut cap = Capture::start(&lab, "flood", &["web", "app"]);
    let read_before = lab.counter("eni-web", "rx_packets");
    let sent = in_ns(&lab.ns("web"), || {
        let s = std::net::UdpSocket::bind("10.0.1.10:0").unwrap();
        (0..60_000).filter(|_| s.send_to(b"flood", "10.0.2.10:9").is_ok()).count() as u64
    })
    .join()
    .unwrap();
    // Forwarding never waited for the writer: the lab still answers at once.
    assert!(lab.ping("web", "10.0.2.10").status.success(), "forwarding goes on under a capture");
    let err = cap.stop();
    let read = lab.counter("eni-web", "rx_packets") - read_before;
    let number =
        |text: &str| -> u64 { text.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{err}")) };
    let frames = number(&err);
    let lost = number(err.split("; ").nth(1).unwrap_or_else(|| panic!("no loss count in: {err}")));
    assert!(sent > 10_000 && read > 10_000, "sent {sent}, read {read}");
    // Every frame web sent is seen leaving web at least: written, or counted lost.
    assert!(frames + lost >= read, "frames {frames} + lost {lost} < frames read from web {read}: {err}");
    eprintln!("flood: {sent} sent, {read} read from web, {frames} captured, {lost} lost");
}
