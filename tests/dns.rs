//! The fabric's Amazon DNS server against a real resolver client: `dig` inside an instance,
//! asking base + 2 and 169.254.169.253, forward and reverse, with a security group that lets
//! nothing out (DNS is not filtered). The instance reaches both addresses by its default route
//! through the subnet router, as on EC2.

mod common;

use common::*;

const LAB: &str = r#"
[[vpc]]
id = "vpc-n"
cidr = "10.30.0.0/16"
enable_dns_hostnames = true

[[subnet]]
id = "subnet-n"
vpc = "vpc-n"
cidr = "10.30.1.0/24"

[[security_group]]
id = "sg-closed"
vpc = "vpc-n"
egress = []

[[internet_gateway]]
id = "igw-n"
vpc = "vpc-n"

[[elastic_ip]]
id = "eipalloc-n2"
public_ip = "203.0.113.62"
network_interface = "eni-n2"

[[instance]]
id = "n1"

[[instance]]
id = "n2"

[[network_interface]]
id = "eni-n1"
subnet = "subnet-n"
private_ip = "10.30.1.10"
security_groups = ["sg-closed"]
attachment = { instance = "n1", device_index = 0 }

[[network_interface]]
id = "eni-n2"
subnet = "subnet-n"
private_ip = "10.30.1.20"
secondary_private_ips = ["10.30.1.21"]
attachment = { instance = "n2", device_index = 0 }

[internet]
hosts = [{ id = "web", ip = "198.51.100.77", name = "www.example.com" }]
"#;

/// `dig +short` from `instance` at `server`: the answer lines, after checking dig succeeded.
fn dig_short(lab: &TestLab, instance: &str, server: &str, query: &[&str]) -> Vec<String> {
    let at = format!("@{server}");
    let mut args = vec!["dig", at.as_str(), "+short", "+time=2", "+tries=3"];
    args.extend_from_slice(query);
    let out = lab.exec(instance, &args);
    assert!(out.status.success(), "dig {query:?} at {server} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The status dig's header reports (`NOERROR`, `NXDOMAIN`, ...).
fn dig_status(lab: &TestLab, instance: &str, server: &str, query: &[&str]) -> String {
    let at = format!("@{server}");
    let mut args = vec!["dig", at.as_str(), "+time=2", "+tries=3"];
    args.extend_from_slice(query);
    let out = lab.exec(instance, &args);
    let said = text(&out);
    let status = said.split("status: ").nth(1).and_then(|s| s.split(',').next());
    status.unwrap_or_else(|| panic!("no status in dig's output:\n{said}")).to_string()
}

#[test]
fn dig_resolves_private_public_and_internet_names_at_both_addresses() {
    let lab = TestLab::up("dns", LAB);
    for server in ["10.30.0.2", "169.254.169.253"] {
        let forward = dig_short(&lab, "n1", server, &["ip-10-30-1-21.ec2.internal", "A"]);
        assert_eq!(forward, ["10.30.1.21"], "forward at {server}");
        let reverse = dig_short(&lab, "n1", server, &["-x", "10.30.1.20"]);
        assert_eq!(reverse, ["ip-10-30-1-20.ec2.internal."], "reverse at {server}");
        // The Elastic IP's public name is the private IP inside the VPC (split horizon).
        let public = dig_short(&lab, "n1", server, &["ec2-203-0-113-62.compute-1.amazonaws.com", "A"]);
        assert_eq!(public, ["10.30.1.20"], "public name at {server}");
        let reverse_public = dig_short(&lab, "n1", server, &["-x", "203.0.113.62"]);
        assert_eq!(reverse_public, ["ec2-203-0-113-62.compute-1.amazonaws.com."], "at {server}");
        assert_eq!(dig_short(&lab, "n1", server, &["www.example.com", "A"]), ["198.51.100.77"]);
        assert_eq!(dig_status(&lab, "n1", server, &["aws.amazon.com", "A"]), "NXDOMAIN");
        assert_eq!(dig_status(&lab, "n1", server, &["ip-10-30-1-10.ec2.internal", "AAAA"]), "NOERROR");
    }
    // The group lets nothing out, yet DNS was answered: nothing counted against the group, no
    // query dropped.
    assert_eq!(lab.drops("eni-n1", "security_group_egress"), 0);
    for reason in ["dns_malformed", "dns_unanswered", "linklocal_allowance_exceeded", "dns_disabled"] {
        assert_eq!(lab.drops("eni-n1", reason), 0, "{reason}");
    }
}
