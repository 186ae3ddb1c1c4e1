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
