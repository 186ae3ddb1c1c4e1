//! `vpclab import` end to end: the shipped `aws ec2 describe-*` JSON (examples/aws-json) becomes
//! a topology that `check` accepts and `up` brings up, and real traffic follows the rules it
//! carried: the security groups (a CIDR rule, a group reference), the custom network ACL, the
//! Elastic IP behind the internet gateway, the NAT gateway and the peering connection.

mod common;

use std::process::Command;

use common::*;

const WEB: &str = "i-0a1b2c3d4e5f66001";
const APP: &str = "i-0a1b2c3d4e5f66002";
const DB: &str = "i-0a1b2c3d4e5f66003";
const WEB_ENI: &str = "eni-0a1b2c3d4e5f64001";
/// app's second ENI (device 1), in the public subnet with web, also in sg-app.
const APP_LEG_ENI: &str = "eni-0a1b2c3d4e5f64003";
const APP_LEG: &str = "10.0.1.20";
/// The Elastic IPs the example gives the web server and the NAT gateway.
const WEB_EIP: &str = "203.0.113.20";
const NAT_EIP: &str = "203.0.113.10";
/// The documentation host `import` puts on the internet.
const INTERNET: &str = "198.51.100.7";

fn examples() -> String {
    format!("{}/examples/aws-json", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_written_file_passes_check_and_lists_what_was_not_carried() {
    let dir = std::env::temp_dir().join(format!("vpclab-import-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_file = dir.join("lab.toml");
    let out = vpclab(&["import", &examples(), "-o", out_file.to_str().unwrap(), "--name", "prod"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "with -o nothing goes to standard output");
    let line = "vpclab import: not carried: rtb-0a1b2c3d4e5f6a003: route 192.168.0.0/16 -> tgw-0a1b2c3d4e5f6b001";
    assert!(stderr.contains(line), "{stderr}");
    let written = std::fs::read_to_string(&out_file).unwrap();
    assert!(written.contains("#   rtb-0a1b2c3d4e5f6a003: route 192.168.0.0/16 -> tgw-0a1b2c3d4e5f6b001"), "{written}");
    let check = vpclab(&["check", out_file.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("lab `prod` is valid: 2 VPC(s), 3 subnet(s), 3 instance(s), 4 ENI(s)"),
        "{}",
        text(&check)
    );

    // Without -o the topology goes to standard output.
    let to_stdout = vpclab(&["import", &examples(), "--name", "prod"]);
    assert!(to_stdout.status.success(), "{}", text(&to_stdout));
    assert_eq!(String::from_utf8_lossy(&to_stdout.stdout), written);

    // Bad input: the file and field are named, and nothing is written.
    let bad = dir.join("subnets.json");
    std::fs::write(&bad, r#"{"Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1", "CidrBlock": "10.0.300.0/24"}]}"#)
        .unwrap();
    let refused = vpclab(&["import", bad.to_str().unwrap(), "-o", dir.join("never.toml").to_str().unwrap()]);
    let said = text(&refused);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("subnets.json: Subnets[0].CidrBlock: `10.0.300.0/24` is not an IPv4 CIDR block"), "{said}");
    assert!(!dir.join("never.toml").exists());
}

/// Imports the example set under a unique lab name and brings it up.
fn imported_lab(tag: &str) -> TestLab {
    require_root();
    let name = lab_name(tag);
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    // Guard first, so a half-started lab is removed too.
    let mut lab = TestLab { name, file, up_output: String::new() };
    let out = vpclab(&["import", &examples(), "--name", &lab.name, "-o", lab.file.to_str().unwrap()]);
    assert!(out.status.success(), "import failed: {}", text(&out));
    let up = Command::new(BIN).arg("up").arg(&lab.file).output().expect("vpclab runs");
    lab.up_output = text(&up);
    assert!(up.status.success(), "vpclab up failed:\n{}", lab.up_output);
    lab
}

#[test]
fn an_imported_vpc_comes_up_and_traffic_follows_the_rules_it_carried() {
    let lab = imported_lab("import");
    let inet = lab.ns("internet");

    // The private instance reaches the internet host through the NAT gateway, seen as its EIP.
    let srv = tcp_peer_server(&inet, addr(INTERNET, 80), 15);
    let mut s = tcp_connect(&lab.ns(APP), addr(INTERNET, 80), 5).expect("app reaches the internet via the NAT");
    assert_eq!(echo_over(&mut s, b"via nat").unwrap(), b"via nat");
    drop(s);
    let peer = srv.join().unwrap().expect("the internet host was reached");
    assert_eq!(peer.ip().to_string(), NAT_EIP, "the internet sees the NAT gateway's Elastic IP");

    // From the internet to the web server's Elastic IP: port 80 is allowed by sg-web (0.0.0.0/0)
    // and by the public ACL's rule 100.
    let srv = tcp_peer_server(&lab.ns(WEB), addr("10.0.1.10", 80), 15);
    let mut s = tcp_connect(&inet, addr(WEB_EIP, 80), 5).expect("the internet reaches web's Elastic IP on 80");
    assert_eq!(echo_over(&mut s, b"hello web").unwrap(), b"hello web");
    drop(s);
    assert_eq!(srv.join().unwrap().expect("web was reached").ip().to_string(), INTERNET);

    // Port 8081 passes the ACL (rule 110, 1024-65535) but no rule of sg-web allows it.
    let _l8081 = tcp_listen(&lab.ns(WEB), addr("10.0.1.10", 8081));
    let before = lab.drops(WEB_ENI, "security_group_ingress");
    assert!(tcp_connect(&inet, addr(WEB_EIP, 8081), 2).is_err(), "sg-web let 8081 in");
    assert!(lab.drops(WEB_ENI, "security_group_ingress") > before, "{}", lab.eni(WEB_ENI));

    // Port 22 is denied by the public ACL's rule 90 before any group sees it.
    let _l22 = tcp_listen(&lab.ns(WEB), addr("10.0.1.10", 22));
    let before = lab.drops(WEB_ENI, "network_acl_ingress");
    assert!(tcp_connect(&inet, addr(WEB_EIP, 22), 2).is_err(), "ACL rule 90 let 22 in");
    assert!(lab.drops(WEB_ENI, "network_acl_ingress") > before, "{}", lab.eni(WEB_ENI));
}

#[test]
fn an_imported_group_reference_and_peering_carry_their_traffic() {
    let lab = imported_lab("imppeer");

    // sg-app allows 8080 from members of sg-web: web gets in to app's second ENI...
    let l8080 = tcp_listen(&lab.ns(APP), addr(APP_LEG, 8080));
    let served = tcp_echo_all(l8080, 1, 15);
    let mut s = tcp_connect(&lab.ns(WEB), addr(APP_LEG, 8080), 5).expect("a member of sg-web reaches app:8080");
    assert_eq!(echo_over(&mut s, b"member").unwrap(), b"member");
    drop(s);
    assert_eq!(served.join().unwrap(), 1);

    // ...db, across the peering connection (and through the public ACL's rule 150) but in no
    // such group, does not.
    let _again = tcp_listen(&lab.ns(APP), addr(APP_LEG, 8080));
    let before = lab.drops(APP_LEG_ENI, "security_group_ingress");
    assert!(tcp_connect(&lab.ns(DB), addr(APP_LEG, 8080), 2).is_err(), "a non-member reached app:8080");
    assert!(lab.drops(APP_LEG_ENI, "security_group_ingress") > before, "{}", lab.eni(APP_LEG_ENI));

    // app reaches db over the peering connection, which sg-db allows from 10.0.0.0/16.
    let srv = tcp_peer_server(&lab.ns(DB), addr("10.1.1.10", 5432), 15);
    let mut s = tcp_connect(&lab.ns(APP), addr("10.1.1.10", 5432), 5).expect("app reaches db over the peering");
    assert_eq!(echo_over(&mut s, b"peered").unwrap(), b"peered");
    drop(s);
    assert_eq!(srv.join().unwrap().expect("db was reached").ip().to_string(), "10.0.2.10");
}
