//! `up --workers 2`: two forwarding threads over multiqueue TAPs. Connections are opened in
//! numbers so that both workers own some, and each one's packets cross whichever queue the
//! kernel picks: TCP and ping across subnets, in and out through the internet gateway and out
//! through the NAT gateway, and a flow the groups refuse stays refused; a capture sees them.

mod common;

use std::net::TcpStream;

use common::*;

const EXAMPLE: &str = "198.51.100.7";
/// web's Elastic IP in the default lab.
const WEB_EIP: &str = "203.0.113.20";

/// Opens `n` connections from `from_ns` to `to` (served by a listener on `bind` in
/// `server_ns`), sends a message over each and checks it comes back.
fn echo_many(server_ns: &str, bind: &str, from_ns: &str, to: &str, port: u16, n: usize) {
    let listener = tcp_listen(server_ns, addr(bind, port));
    let server = tcp_echo_all(listener, n, 30);
    let mut streams: Vec<TcpStream> = (0..n)
        .map(|i| {
            tcp_connect(from_ns, addr(to, port), 5).unwrap_or_else(|e| panic!("connection {i} to {to}:{port}: {e}"))
        })
        .collect();
    for (i, s) in streams.iter_mut().enumerate() {
        let msg = vec![i as u8; 64 * 1024];
        assert_eq!(echo_over(s, &msg).expect("echoed"), msg, "connection {i} to {to}:{port}");
    }
    drop(streams);
    assert_eq!(server.join().expect("the server ran"), n);
}

#[test]
fn two_workers_forward_tcp_and_ping_across_subnets_and_gateways_and_refuse_what_groups_refuse() {
    let lab = TestLab::up_with("wk", &default_body(), &["--workers", "2"]);
    let (web, app, inet) = (lab.ns("web"), lab.ns("app"), lab.ns("internet"));

    for (from, to) in [("web", "10.0.2.10"), ("app", "10.0.1.10"), ("web", EXAMPLE), ("app", EXAMPLE)] {
        assert!(lab.ping(from, to).status.success(), "{from} pings {to}");
    }
    // Across subnets (sg-app lets sg-web in on 8080), out through the NAT gateway, and from the
    // internet to web's Elastic IP: 8 connections each, spread over both workers.
    echo_many(&app, "10.0.2.10", &web, "10.0.2.10", 8080, 8);
    echo_many(&inet, EXAMPLE, &app, EXAMPLE, 80, 8);
    echo_many(&web, "10.0.1.10", &inet, WEB_EIP, 80, 8);

    // sg-app has nothing for 9090: refused, on whichever worker, counted where AWS would.
    let before = lab.drops("eni-app", "security_group_ingress");
    let listener = tcp_listen(&app, addr("10.0.2.10", 9090));
    assert!(tcp_connect(&web, addr("10.0.2.10", 9090), 2).is_err(), "sg-app refuses port 9090");
    drop(listener);
    assert!(eventually(5, || lab.drops("eni-app", "security_group_ingress") > before));

    // A capture gets one queue per worker: web's frames of 8 connections, whichever worker
    // owns them, end up in one file.
    let file = std::env::temp_dir().join(format!("{}.pcapng", lab.name));
    let capture = std::process::Command::new(BIN)
        .args(["capture", "--lab", &lab.name, "web", "--count", "40", "-w", file.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vpclab capture runs");
    assert!(eventually(10, || std::fs::metadata(&file).is_ok_and(|m| m.len() > 0)), "the capture started");
    echo_many(&app, "10.0.2.10", &web, "10.0.2.10", 8080, 8);
    let out = capture.wait_with_output().expect("the capture ends at its count");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success() && text(&out).contains("40 frame(s) captured"), "{}", text(&out));
}
