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

#[test]
fn udhcpc_gets_the_primary_ip_router_mtu_and_name_servers() {
    let lab = TestLab::up("dhcp", LAB);
    let script = std::env::temp_dir().join(format!("{}-lease.sh", lab.name));
    std::fs::write(&script, PRINT_LEASE).unwrap();
    let _cleanup = RemoveOnDrop(script.clone());
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = lab.exec(
        "d1",
        &[
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-f",
            "-q",
            "-n",
            "-t",
            "5",
            "-T",
            "1",
            "-O",
            "mtu",
            "-s",
            script.to_str().unwrap(),
        ],
    );
    let said = text(&out);
    assert!(out.status.success(), "udhcpc failed:\n{said}");
    let lease = said.lines().find(|l| l.starts_with("lease ")).unwrap_or_else(|| panic!("no lease:\n{said}"));
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
    // The group allows nothing out, yet DHCP was answered; nothing was counted as spoofed or malformed.
    assert_eq!(lab.drops("eni-d1", "security_group_egress"), 0);
    assert_eq!(lab.drops("eni-d1", "dhcp_spoof") + lab.drops("eni-d1", "dhcp_malformed"), 0);
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
