//! The instance metadata service against real `curl` inside instances: IMDSv1 and v2, a
//! token-required instance refusing v1, live changes showing at once, overlapping VPCs each
//! seeing their own, the PUT response hop limit, and an ec2-net-utils-style script configuring a
//! hot-attached interface from metadata alone.

mod common;

use std::process::Output;

use common::*;

const MD: &str = "http://169.254.169.254/latest";

/// Two VPCs with the same CIDR, not peered: `web` and `twin` hold the same address. Security
/// groups allow nothing out and ACLs deny everything: metadata is neither filtered nor refused.
const LAB: &str = r#"
[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[vpc]]
id = "vpc-b"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
availability_zone = "us-east-1c"
network_acl = "acl-deny"

[[subnet]]
id = "subnet-b"
vpc = "vpc-b"
cidr = "10.0.1.0/24"

[[security_group]]
id = "sg-closed"
vpc = "vpc-a"
egress = []

[[security_group]]
id = "sg-closed-b"
vpc = "vpc-b"
egress = []

[[network_acl]]
id = "acl-deny"
vpc = "vpc-a"

[[instance]]
id = "web"
instance_type = "t3.small"

[[instance]]
id = "locked"
metadata_options = { http_tokens = "required" }

[[instance]]
id = "twin"

[[network_interface]]
id = "eni-web"
subnet = "subnet-a"
private_ip = "10.0.1.10"
security_groups = ["sg-closed"]
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-locked"
subnet = "subnet-a"
private_ip = "10.0.1.20"
secondary_private_ips = ["10.0.1.21"]
security_groups = ["sg-closed"]
attachment = { instance = "locked", device_index = 0 }

[[network_interface]]
id = "eni-spare"
subnet = "subnet-a"
private_ip = "10.0.1.30"
mac_address = "02:00:00:00:1d:30"
security_groups = ["sg-closed"]

[[network_interface]]
id = "eni-twin"
subnet = "subnet-b"
private_ip = "10.0.1.10"
security_groups = ["sg-closed-b"]
attachment = { instance = "twin", device_index = 0 }
"#;

/// `curl -s` in `instance` with `args`; (HTTP status, body).
fn curl(lab: &TestLab, instance: &str, args: &[&str]) -> (u16, String) {
    let mut all = vec!["curl", "-s", "--max-time", "5", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = lab.exec(instance, &all);
    status_and_body(&out)
}

fn status_and_body(out: &Output) -> (u16, String) {
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = said.rsplit_once('\n').unwrap_or(("", &said));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn get(lab: &TestLab, instance: &str, path: &str) -> (u16, String) {
    curl(lab, instance, &[&format!("{MD}/meta-data/{path}")])
}

fn token(lab: &TestLab, instance: &str) -> String {
    let (code, token) = curl(
        lab,
        instance,
        &["-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 300", &format!("{MD}/api/token")],
    );
    assert_eq!(code, 200, "{instance}: token PUT answered {code}: {token}");
    token
}

fn get_v2(lab: &TestLab, instance: &str, token: &str, path: &str) -> (u16, String) {
    let header = format!("X-aws-ec2-metadata-token: {token}");
    curl(lab, instance, &["-H", &header, &format!("{MD}/meta-data/{path}")])
}

#[test]
fn v1_and_v2_answer_each_instance_from_its_own_eni() {
    let lab = TestLab::up("imds", LAB);
    assert_eq!(get(&lab, "web", "instance-id"), (200, "web".into()));
    assert_eq!(get(&lab, "web", "instance-type"), (200, "t3.small".into()));
    assert_eq!(get(&lab, "web", "local-ipv4"), (200, "10.0.1.10".into()));
    assert_eq!(get(&lab, "web", "placement/availability-zone"), (200, "us-east-1c".into()));
    assert_eq!(get(&lab, "web", "hostname"), (200, "ip-10-0-1-10.ec2.internal".into()));
    let (code, mac) = get(&lab, "web", "mac");
    assert_eq!(code, 200);
    assert_eq!(get(&lab, "web", "network/interfaces/macs/"), (200, format!("{mac}/")));
    let dir = format!("network/interfaces/macs/{mac}");
    assert_eq!(get(&lab, "web", &format!("{dir}/subnet-id")), (200, "subnet-a".into()));
    assert_eq!(get(&lab, "web", &format!("{dir}/vpc-id")), (200, "vpc-a".into()));
    assert_eq!(get(&lab, "web", &format!("{dir}/security-group-ids")), (200, "sg-closed".into()));
    assert_eq!(get(&lab, "web", "iam/security-credentials/").0, 404);
    assert_eq!(get(&lab, "web", "no-such-thing").0, 404);
    assert_eq!(curl(&lab, "web", &["-X", "POST", &format!("{MD}/meta-data/")]).0, 405);

    // The same address in another VPC: its own instance's answers.
    assert_eq!(get(&lab, "twin", "instance-id"), (200, "twin".into()));
    assert_eq!(get(&lab, "twin", "local-ipv4"), (200, "10.0.1.10".into()));
    let (_, twin_mac) = get(&lab, "twin", "mac");
    assert_eq!(get(&lab, "twin", &format!("network/interfaces/macs/{twin_mac}/vpc-id")), (200, "vpc-b".into()));

    // IMDSv2 where v1 is allowed too; a token is one instance's only.
    let t = token(&lab, "web");
    assert_eq!(get_v2(&lab, "web", &t, "instance-id"), (200, "web".into()));
    assert_eq!(get_v2(&lab, "twin", &t, "instance-id").0, 401);
    let proxied = curl(
        &lab,
        "web",
        &[
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
            "-H",
            "X-Forwarded-For: 10.9.9.9",
            &format!("{MD}/api/token"),
        ],
    );
    assert_eq!(proxied.0, 403);
    assert_eq!(curl(&lab, "web", &["-X", "PUT", &format!("{MD}/api/token")]).0, 400);

    // Tokens required: v1 refused, v2 answered.
    assert_eq!(get(&lab, "locked", "instance-id").0, 401);
    let t = token(&lab, "locked");
    assert_eq!(get_v2(&lab, "locked", &t, "instance-id"), (200, "locked".into()));
    assert_eq!(get_v2(&lab, "locked", &t, "local-ipv4"), (200, "10.0.1.20".into()));

    // From a secondary address too.
    let from_secondary = curl(
        &lab,
        "locked",
        &[
            "--interface",
            "10.0.1.21",
            "-H",
            &format!("X-aws-ec2-metadata-token: {t}"),
            &format!("{MD}/meta-data/instance-id"),
        ],
    );
    assert_eq!(from_secondary, (200, "locked".into()));

    // Closed groups and a deny-all ACL filtered nothing of it.
    assert_eq!(lab.drops("eni-web", "security_group_egress"), 0);
    assert_eq!(lab.drops("eni-web", "network_acl_egress"), 0);
}

/// `vpclab VERB --lab LAB ARGS...`, which must succeed.
fn change(lab: &TestLab, verb: &str, args: &[&str]) {
    let mut all = vec![verb, "--lab", &lab.name];
    all.extend_from_slice(args);
    let out = vpclab(&all);
    assert!(out.status.success(), "vpclab {verb} {args:?} failed:\n{}", text(&out));
}

#[test]
fn a_hot_attached_eni_and_a_reassigned_address_show_at_once() {
    let lab = TestLab::up("imdslive", LAB);
    let t = token(&lab, "locked");
    let (_, locked_mac) = get_v2(&lab, "locked", &t, "mac");
    let locked_ips = format!("network/interfaces/macs/{locked_mac}/local-ipv4s");
    assert_eq!(get_v2(&lab, "locked", &t, &locked_ips), (200, "10.0.1.20\n10.0.1.21".into()));

    change(
        &lab,
        "attach-network-interface",
        &["--network-interface-id", "eni-spare", "--instance-id", "web", "--device-index", "1"],
    );
    let (_, web_mac) = get(&lab, "web", "mac");
    assert_eq!(get(&lab, "web", "network/interfaces/macs/"), (200, format!("02:00:00:00:1d:30/\n{web_mac}/")));
    let spare = "network/interfaces/macs/02:00:00:00:1d:30";
    assert_eq!(get(&lab, "web", &format!("{spare}/device-number")), (200, "1".into()));
    assert_eq!(get(&lab, "web", &format!("{spare}/interface-id")), (200, "eni-spare".into()));
    assert_eq!(get(&lab, "web", &format!("{spare}/local-ipv4s")), (200, "10.0.1.30".into()));

    change(
        &lab,
        "assign-private-ip-addresses",
        &["--network-interface-id", "eni-web", "--private-ip-addresses", "10.0.1.21", "--allow-reassignment"],
    );
    let web_ips = format!("network/interfaces/macs/{web_mac}/local-ipv4s");
    assert_eq!(get(&lab, "web", &web_ips), (200, "10.0.1.10\n10.0.1.21".into()));
    assert_eq!(get_v2(&lab, "locked", &t, &locked_ips), (200, "10.0.1.20".into()));
    // The address is web's now: asking from it is asking as web.
    let from_moved = curl(&lab, "web", &["--interface", "10.0.1.21", &format!("{MD}/meta-data/instance-id")]);
    assert_eq!(from_moved, (200, "web".into()));
}

/// Open groups and ACLs; `gw` routes a namespace behind it that holds gw's secondary address.
const ROUTED: &str = r#"
[[vpc]]
id = "vpc-r"
cidr = "10.5.0.0/16"

[[subnet]]
id = "subnet-r"
vpc = "vpc-r"
cidr = "10.5.1.0/24"

[[instance]]
id = "gw"

[[instance]]
id = "peer"

[[network_interface]]
id = "eni-gw"
subnet = "subnet-r"
private_ip = "10.5.1.40"
secondary_private_ips = ["10.5.1.41"]
attachment = { instance = "gw", device_index = 0 }

[[network_interface]]
id = "eni-peer"
subnet = "subnet-r"
private_ip = "10.5.1.50"
attachment = { instance = "peer", device_index = 0 }

[[network_interface]]
id = "eni-extra"
subnet = "subnet-r"
private_ip = "10.5.1.60"
"#;

/// A namespace of the test's own, deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(cmd: &str) {
    let out = std::process::Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", text(&out));
}

#[test]
fn the_token_reaches_one_routed_hop_further_only_with_hop_limit_two() {
    let lab = TestLab::up("imdshop", ROUTED);
    let (gw, behind) = (lab.ns("gw"), Netns(format!("{}-behind", lab.name)));
    let b = &behind.0;
    // gw gives its secondary address to the namespace behind it and routes for it.
    sh(&format!("ip netns add {b}"));
    sh(&format!("ip -n {gw} addr del 10.5.1.41/24 dev eth0"));
    sh(&format!("ip -n {gw} link add vg type veth peer name vb netns {b}"));
    sh(&format!("ip -n {gw} addr add 192.168.77.1/32 dev vg && ip -n {gw} link set vg up"));
    sh(&format!("ip -n {gw} route add 10.5.1.41/32 dev vg"));
    sh(&format!("ip netns exec {gw} sysctl -qw net.ipv4.ip_forward=1"));
    sh(&format!("ip -n {b} link set lo up && ip -n {b} addr add 10.5.1.41/32 dev vb && ip -n {b} link set vb up"));
    sh(&format!("ip -n {b} route add 192.168.77.1/32 dev vb && ip -n {b} route add default via 192.168.77.1"));
    let put = |ns: &str| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-s", "--max-time", "3", "-w", "\n%{http_code}", "-X", "PUT"])
            .args(["-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", &format!("{MD}/api/token")])
            .output()
            .unwrap();
        status_and_body(&out).0
    };
    // From gw itself: answered. From behind it: the answer leaves with TTL 1 and dies at gw.
    assert_eq!(put(&gw), 200);
    assert_eq!(put(b), 0, "a token reached one hop further with hop limit 1");
    // A GET is not limited: behind gw, v1 still answers.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", b, "curl", "-s", "--max-time", "3", &format!("{MD}/meta-data/instance-id")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "gw");

    let file = std::env::temp_dir().join(format!("{}-hop2.toml", lab.name));
    let hop2 = ROUTED.replace("id = \"gw\"\n", "id = \"gw\"\nmetadata_options = { http_put_response_hop_limit = 2 }\n");
    std::fs::write(&file, format!("name = \"{}\"\n{hop2}", lab.name)).unwrap();
    let out = vpclab(&["apply", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "apply: {}", text(&out));
    assert!(text(&out).contains("ModifyInstanceMetadataOptions gw"), "{}", text(&out));
    assert_eq!(put(b), 200, "hop limit 2 reaches one routed hop further");
}

#[test]
fn an_ec2_net_utils_style_script_configures_a_hot_attached_eni_from_metadata_alone() {
    let lab = TestLab::up("imdsifup", ROUTED);
    change(
        &lab,
        "attach-network-interface",
        &["--network-interface-id", "eni-extra", "--instance-id", "peer", "--device-index", "1"],
    );
    let peer = lab.ns("peer");
    // Forget what the lab configured on eth1: the script must find it all in metadata.
    sh(&format!("ip -n {peer} addr flush dev eth1"));
    sh(&format!("ip -n {peer} rule del from 10.5.1.60 lookup 10001 || true"));
    sh(&format!("ip -n {peer} route flush table 10001 || true"));
    let addrs = |ns: &str| {
        text(
            &std::process::Command::new("ip")
                .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "eth1"])
                .output()
                .unwrap(),
        )
    };
    assert!(!addrs(&peer).contains("10.5.1.60"));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/ec2-ifup-from-metadata.sh");
    let out = lab.exec("peer", &["sh", script, "eth1"]);
    assert!(out.status.success(), "the script failed: {}", text(&out));
    assert!(addrs(&peer).contains("10.5.1.60/24"), "{}", addrs(&peer));
    let rules = text(&std::process::Command::new("ip").args(["-n", &peer, "rule"]).output().unwrap());
    assert!(rules.contains("from 10.5.1.60 lookup 10001"), "{rules}");

    // Traffic from the new address leaves over eth1, on eni-extra, and is answered.
    let before = lab.counter("eni-extra", "rx_packets");
    let out = lab.exec("peer", &["ping", "-c", "2", "-i", "0.2", "-W", "2", "-I", "10.5.1.60", "10.5.1.40"]);
    assert!(out.status.success(), "ping over eth1 failed: {}", text(&out));
    assert!(lab.counter("eni-extra", "rx_packets") >= before + 2, "{}", lab.eni("eni-extra"));
}
