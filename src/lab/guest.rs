//! What an instance's own operating system does with its network, done for it: the resolver
//! configuration DHCP would have given it (`/etc/resolv.conf` inside the instance, a file of the
//! lab bound over the host's by `vpclab exec`), and, with `instance_network = "dhcp"`, a real
//! DHCP client (Debian's `dhclient`) on each interface instead of addresses set by vpclab.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use anyhow::Context;

use super::lab_dir;
use crate::model::{EniIdx, InstanceIdx, Model};

/// Route metric of the default route through device N, as amazon-ec2-net-utils 2.x gives it
/// (512 + 10 x device number, `create_if_overrides` in its lib.sh), so device 0 is preferred and
/// each interface still has its own.
const METRIC_BASE: u32 = 512;
const METRIC_STEP: u32 = 10;

/// The instance's `/etc/resolv.conf`, kept in the lab's directory.
pub fn resolv_conf(lab: &str, instance: &str) -> PathBuf {
    lab_dir(lab).join("instances").join(instance).join("resolv.conf")
}

/// Writes the instance's resolver file: with addresses set by vpclab, what the VPC's DHCP
/// options would give (search domain and name servers of device 0's VPC); with a DHCP client,
/// an empty file for `dhclient-script` to fill.
pub fn prepare_resolv_conf(model: &Model, inst: InstanceIdx) -> anyhow::Result<()> {
    let instance = &model.instances[inst.index()];
    let path = resolv_conf(&model.name, &instance.id);
    let dir = path.parent().expect("the path has a directory");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = match model.instance_network {
        crate::model::InstanceNetwork::Dhcp if path.exists() => return Ok(()),
        crate::model::InstanceNetwork::Dhcp => String::new(),
        crate::model::InstanceNetwork::Static => static_resolv_conf(model, inst),
    };
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn static_resolv_conf(model: &Model, inst: InstanceIdx) -> String {
    let Some(&first) = model.enis_of(inst).first() else { return String::new() };
    let settings = model.dhcp_settings(model.subnet_of(first).vpc);
    let mut text = String::from("# What the VPC's DHCP options give this instance (written by vpclab).\n");
    let _ = writeln!(text, "search {}", settings.domain_name);
    for server in &settings.dns_servers {
        let _ = writeln!(text, "nameserver {server}");
    }
    text
}

/// `dhclient`'s configuration: what EC2's DHCP hands out, asked for, and quick retries, since the
/// fabric answers at once (the defaults wait up to minutes after a lost first DISCOVER).
const DHCLIENT_CONF: &str = "\
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
        domain-search, host-name, interface-mtu, ntp-servers;
send host-name = gethostname();
timeout 60;
retry 5;
initial-interval 1;
backoff-cutoff 2;
";

fn client_file(lab: &str, ns: &str, ifname: &str, ext: &str) -> PathBuf {
    lab_dir(lab).join("dhclient").join(format!("{ns}.{ifname}.{ext}"))
}

/// Starts `dhclient` on `eth<device>` of the ENI's instance, as the instance's own OS would: it
/// runs inside the instance (its namespaces, hostname and resolver file, through the hidden
/// `vpclab guest-run`) and goes to the background at once (`-nw`).
pub fn start_dhcp_client(model: &Model, idx: EniIdx, ns: &str) -> anyhow::Result<()> {
    let eni = &model.enis[idx.index()];
    let attachment = eni.attachment.expect("only attached ENIs get a DHCP client");
    let inst = attachment.instance;
    let ifname = format!("eth{}", attachment.device_index);
    let conf = lab_dir(&model.name).join("dhclient").join("dhclient.conf");
    fs::create_dir_all(conf.parent().expect("has a directory")).context("creating the dhclient directory")?;
    fs::write(&conf, DHCLIENT_CONF).with_context(|| format!("writing {}", conf.display()))?;
    let exe = std::env::current_exe().context("finding the vpclab executable")?;
    let instance_id = &model.instances[inst.index()].id;
    let status = std::process::Command::new(exe)
        .args(["guest-run", "--netns", ns, "--hostname", &model.instance_hostname(inst), "--resolv-conf"])
        .arg(resolv_conf(&model.name, instance_id))
        .args(["--", "dhclient", "-4", "-nw", "-cf"])
        .arg(&conf)
        .arg("-pf")
        .arg(client_file(&model.name, ns, &ifname, "pid"))
        .arg("-lf")
        .arg(client_file(&model.name, ns, &ifname, "leases"))
        .args(["-e", &format!("IF_METRIC={}", METRIC_BASE + METRIC_STEP * attachment.device_index), &ifname])
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("starting dhclient on {ifname} in {ns}"))?;
    anyhow::ensure!(
        status.success(),
        "dhclient on {ifname} in {ns} failed to start ({status}); is isc-dhcp-client installed?"
    );
    Ok(())
}

/// Stops the DHCP client of `ifname` in `ns`, if one runs (the interface is leaving).
pub fn stop_dhcp_client(lab: &str, ns: &str, ifname: &str) {
    let pidfile = client_file(lab, ns, ifname, "pid");
    let pid = fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|&p| p > 1) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let _ = fs::remove_file(pidfile);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InstanceIdx;

    fn lab(extra: &str) -> Model {
        let text = format!("{extra}\n{}", crate::topology::DEFAULT_TOPOLOGY);
        crate::topology::parse(&text, "lab.toml").unwrap()
    }

    #[test]
    fn a_static_instance_resolves_through_its_vpc_s_dhcp_options() {
        let m = lab("region = \"eu-west-1\"");
        let text = static_resolv_conf(&m, InstanceIdx(0));
        assert!(text.contains("search eu-west-1.compute.internal\n"), "{text}");
        let vpc = m.subnet_of(m.enis_of(InstanceIdx(0))[0]).vpc;
        let base_plus_2 = m.dhcp_settings(vpc).dns_servers[0];
        assert!(text.contains(&format!("nameserver {base_plus_2}\n")), "{text}");
    }
}
