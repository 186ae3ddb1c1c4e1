//! The fabric's DHCP server against a real client: busybox udhcpc, one-shot, inside an instance,
//! reporting the lease it got through a script that only prints it.

mod common;

use common::*;

const LAB: &str = r#"
region = "eu-west-1"

[[dhcp_options]]
id = "dopt-lab"
domain_name_servers = ["AmazonProvidedDNS", "192.0.2.53"]

[[vpc]]
id = "vpc-d"
cidr = "10.20.0.0/16"
dhcp_options = "dopt-lab"

[[subnet]]
id = "subnet-d"
vpc = "vpc-d"
cidr = "10.20.3.0/24"

[[security_group]]
id = "sg-closed"
vpc = "vpc-d"
egress = []

[[instance]]
id = "d1"

[[network_interface]]
id = "eni-d1"
subnet = "subnet-d"
private_ip = "10.20.3.40"
security_groups = ["sg-closed"]
attachment = { instance = "d1", device_index = 0 }
"#;

/// A udhcpc script that prints the lease on `bound` and changes nothing.
const PRINT_LEASE: &str = "#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease ip=$ip subnet=$subnet router=$router dns=$dns domain=$domain mtu=$mtu lease=$lease serverid=$serverid\"\nexit 0\n";

/// Runs busybox udhcpc one-shot in `d1` with a script that only prints the lease; returns the
/// `lease ...` line.
fn lease_of(lab: &TestLab, script: &std::path::Path) -> String {
    let args = ["busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-O", "mtu", "-s"];
    let mut cmd = args.to_vec();
    cmd.push(script.to_str().unwrap());
    let out = lab.exec("d1", &cmd);
    let said = text(&out);
    assert!(out.status.success(), "udhcpc failed:\n{said}");
    said.lines().find(|l| l.starts_with("lease ")).unwrap_or_else(|| panic!("no lease:\n{said}")).to_string()
}

#[test]
fn udhcpc_gets_the_primary_ip_router_mtu_and_name_servers() {
    let lab = TestLab::up("dhcp", LAB);
    let script = std::env::temp_dir().join(format!("{}-lease.sh", lab.name));
    std::fs::write(&script, PRINT_LEASE).unwrap();
    let _cleanup = RemoveOnDrop(script.clone());
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lease = lease_of(&lab, &script);
    for want in [
        "ip=10.20.3.40 ",
        "subnet=255.255.255.0 ",
        "router=10.20.3.1 ",
        "dns=10.20.0.2 192.0.2.53 ",
        "domain=eu-west-1.compute.internal ",
        "mtu=9001 ",
        "lease=3600 ",
        "serverid=10.20.3.1",
    ] {
        assert!(lease.contains(want), "`{want}` not in `{lease}`");
    }
    // Without a DHCP client the instance still resolves as one would: through its VPC's options.
    let resolv = text(&lab.exec("d1", &["cat", "/etc/resolv.conf"]));
    for want in ["search eu-west-1.compute.internal\n", "nameserver 10.20.0.2\n", "nameserver 192.0.2.53\n"] {
        assert!(resolv.contains(want), "`{want}` not in the instance's resolv.conf:\n{resolv}");
    }
    // The group allows nothing out, yet DHCP was answered; nothing was counted as spoofed or malformed.
    assert_eq!(lab.drops("eni-d1", "security_group_egress"), 0);
    assert_eq!(lab.drops("eni-d1", "dhcp_spoof") + lab.drops("eni-d1", "dhcp_malformed"), 0);

    // A new options set associated live is what the next lease hands out.
    let file = std::env::temp_dir().join(format!("{}-new.toml", lab.name));
    let _cleanup_file = RemoveOnDrop(file.clone());
    let body = LAB.replace("dhcp_options = \"dopt-lab\"", "dhcp_options = \"dopt-new\"")
        + "\n[[dhcp_options]]\nid = \"dopt-new\"\ndomain_name = \"corp.example\"\ndomain_name_servers = [\"192.0.2.99\"]\n";
    std::fs::write(&file, format!("name = \"{}\"\n{body}", lab.name)).unwrap();
    let out = vpclab(&["apply", "--lab", &lab.name, file.to_str().unwrap()]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("CreateDhcpOptions dopt-new") && said.contains("AssociateDhcpOptions dopt-new -> vpc-d"),
        "{said}"
    );
    let lease = lease_of(&lab, &script);
    assert!(lease.contains("dns=192.0.2.99 ") && lease.contains("domain=corp.example "), "{lease}");
}

const DHCP_LAB: &str = r#"
instance_network = "dhcp"

[[vpc]]
id = "vpc-n"
cidr = "10.30.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-n"
cidr = "10.30.1.0/24"

[[subnet]]
id = "subnet-b"
vpc = "vpc-n"
cidr = "10.30.2.0/24"

[[security_group]]
id = "sg-open"
vpc = "vpc-n"
ingress = [{ protocol = "icmp", source = "10.30.0.0/16" }]

[[instance]]
id = "a"

[[instance]]
id = "b"

[[network_interface]]
id = "eni-a"
subnet = "subnet-a"
private_ip = "10.30.1.10"
secondary_private_ips = ["10.30.1.11"]
security_groups = ["sg-open"]
attachment = { instance = "a", device_index = 0 }

[[network_interface]]
id = "eni-b"
subnet = "subnet-b"
private_ip = "10.30.2.10"
security_groups = ["sg-open"]
attachment = { instance = "b", device_index = 0 }

[[network_interface]]
id = "eni-spare"
subnet = "subnet-b"
private_ip = "10.30.2.60"
security_groups = ["sg-open"]
"#;

/// The `ip -4 -o addr` lines of `eth<dev>` inside an instance.
fn addresses(lab: &TestLab, instance: &str, ifname: &str) -> String {
    text(&lab.exec(instance, &["ip", "-4", "-o", "addr", "show", "dev", ifname]))
}

#[test]
fn with_instance_network_dhcp_a_real_dhclient_configures_every_interface() {
    let lab = TestLab::up("dhcpnet", DHCP_LAB);
    let leased = |inst: &str, ifname: &str, ip: &str| {
        eventually(20, || addresses(&lab, inst, ifname).contains(&format!("inet {ip}/24")))
    };
    assert!(leased("a", "eth0", "10.30.1.10"), "a never got its lease: {}", addresses(&lab, "a", "eth0"));
    assert!(leased("b", "eth0", "10.30.2.10"), "b never got its lease: {}", addresses(&lab, "b", "eth0"));
    // Only the primary address comes from DHCP (secondaries are the instance's own business).
    assert!(!addresses(&lab, "a", "eth0").contains("10.30.1.11"));
    let link = text(&lab.exec("a", &["ip", "-o", "link", "show", "dev", "eth0"]));
    assert!(link.contains("mtu 9001"), "option 26 not applied: {link}");
    let routes = || text(&lab.exec("a", &["ip", "-4", "route"]));
    assert!(eventually(10, || routes().contains("default via 10.30.1.1 dev eth0 metric 512")), "{}", routes());
    // dhclient-script writes the resolver file last, after the address and routes.
    let resolv = || text(&lab.exec("a", &["cat", "/etc/resolv.conf"]));
    let resolves = |r: String| r.contains("nameserver 10.30.0.2") && r.contains("search ec2.internal");
    assert!(eventually(10, || resolves(resolv())), "{}", resolv());
    let out = lab.ping("a", "10.30.2.10");
    assert!(out.status.success(), "a cannot reach b over DHCP-made addresses:\n{}", text(&out));

    // A hot-attached ENI gets its client too, and loses it when it leaves.
    let attach = vpclab(&[
        "attach-network-interface",
        "--lab",
        &lab.name,
        "--network-interface-id",
        "eni-spare",
        "--instance-id",
        "b",
        "--device-index",
        "1",
    ]);
    assert!(attach.status.success(), "{}", text(&attach));
    assert!(leased("b", "eth1", "10.30.2.60"), "eth1 never got its lease: {}", addresses(&lab, "b", "eth1"));
    let routes = || text(&lab.exec("b", &["ip", "-4", "route"]));
    let eth1_route = "default via 10.30.2.1 dev eth1 metric 522";
    assert!(eventually(10, || routes().contains(eth1_route)), "{}", routes());
    let pidfile = format!("/run/vpclab/{}/dhclient/{}.eth1.pid", lab.name, lab.ns("b"));
    let pid = std::fs::read_to_string(&pidfile).expect("eth1's client writes its pid");
    let detach = vpclab(&["detach-network-interface", "--lab", &lab.name, "--network-interface-id", "eni-spare"]);
    assert!(detach.status.success(), "{}", text(&detach));
    let proc_dir = format!("/proc/{}", pid.trim());
    assert!(
        eventually(10, || std::fs::read_to_string(format!("{proc_dir}/cmdline"))
            .map_or(true, |c| !c.contains("dhclient"))),
        "eth1's dhclient outlived the detach"
    );
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
