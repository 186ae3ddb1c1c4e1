//! The live-change verbs, spelled like the AWS CLI's `aws ec2` commands and flags, and `apply`,
//! `export`, `events`. Each verb becomes one [`Operation`] sent to the lab's forwarder; nothing
//! here decides anything.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use vpclab::change::ops::{AclEntrySpec, RuleSpec};
use vpclab::change::{events, live::op_name, Change, Operation, Outcome};
use vpclab::control::{Request, Response};
use vpclab::lab;

/// `--lab`, optional with one lab running.
#[derive(Args, Debug)]
pub struct LabArg {
    /// The lab; may be left out when one lab is running.
    #[arg(long)]
    lab: Option<String>,
}

/// A security group rule's flags.
#[derive(Args, Debug)]
pub struct RuleArgs {
    /// The group.
    #[arg(long)]
    group_id: String,
    /// tcp, udp, icmp, all (-1) or a protocol number.
    #[arg(long)]
    protocol: String,
    /// A port or range (N or N-M); for icmp the ICMP type (-1: all).
    #[arg(long, allow_hyphen_values = true)]
    port: Option<String>,
    /// The peer as a CIDR block.
    #[arg(long, conflicts_with = "source_group")]
    cidr: Option<String>,
    /// The peer as a security group (its members' private IPs).
    #[arg(long)]
    source_group: Option<String>,
    #[command(flatten)]
    lab: LabArg,
}

/// A route's target: exactly one.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// An internet gateway.
    #[arg(long)]
    gateway_id: Option<String>,
    /// A NAT gateway.
    #[arg(long)]
    nat_gateway_id: Option<String>,
    /// An ENI (appliance).
    #[arg(long)]
    network_interface_id: Option<String>,
    /// A VPC peering connection.
    #[arg(long)]
    vpc_peering_connection_id: Option<String>,
}

impl TargetArgs {
    fn id(self) -> String {
        self.gateway_id
            .or(self.nat_gateway_id)
            .or(self.network_interface_id)
            .or(self.vpc_peering_connection_id)
            .expect("clap requires one target")
    }
}

/// A network ACL entry's flags.
#[derive(Args, Debug)]
pub struct AclEntryArgs {
    /// The network ACL.
    #[arg(long)]
    network_acl_id: String,
    /// The rule number, 1 to 32766.
    #[arg(long)]
    rule_number: u16,
    /// An inbound rule.
    #[arg(long, conflicts_with = "egress")]
    ingress: bool,
    /// An outbound rule.
    #[arg(long)]
    egress: bool,
    /// tcp, udp, icmp, all (-1) or a protocol number.
    #[arg(long)]
    protocol: String,
    /// allow or deny.
    #[arg(long)]
    rule_action: String,
    /// The remote CIDR block.
    #[arg(long)]
    cidr_block: String,
    /// From=N,To=M (or N-M).
    #[arg(long)]
    port_range: Option<String>,
    #[command(flatten)]
    lab: LabArg,
}

impl AclEntryArgs {
    fn entry(&self) -> AclEntrySpec {
        AclEntrySpec {
            protocol: self.protocol.clone(),
            rule_action: self.rule_action.clone(),
            cidr_block: self.cidr_block.clone(),
            port_range: self.port_range.clone(),
        }
    }
}

/// Instances for the instance-state verbs.
#[derive(Args, Debug)]
pub struct InstancesArgs {
    /// The instances.
    #[arg(long, num_args = 1.., required = true)]
    instance_ids: Vec<String>,
    #[command(flatten)]
    lab: LabArg,
}

/// The verbs that change a running lab.
#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Converge a running lab to a topology file, printing the plan (`--dry-run`: only the plan).
    Apply {
        /// The topology file.
        file: PathBuf,
        /// Print the plan without applying it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Print the running lab as a topology file.
    Export {
        /// The lab; may be left out when one lab is running.
        lab: Option<String>,
    },
    /// The lab's timeline: changes applied or refused, and first deliveries after them.
    Events {
        /// Keep printing new events as they come.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Attach an ENI to an instance (hot, or warm when it is stopped).
    AttachNetworkInterface {
        /// The ENI.
        #[arg(long)]
        network_interface_id: String,
        /// The instance.
        #[arg(long)]
        instance_id: String,
        /// Its device index: it appears as eth<N>.
        #[arg(long)]
        device_index: u32,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Detach a secondary ENI (the ENI id stands for AWS's attachment id).
    DetachNetworkInterface {
        /// The ENI (or its attachment id, which is the ENI id here).
        #[arg(long, alias = "attachment-id")]
        network_interface_id: String,
        /// Accepted for AWS CLI compatibility.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Add secondary private IPs to an ENI, or move them from another ENI.
    AssignPrivateIpAddresses {
        /// The ENI.
        #[arg(long)]
        network_interface_id: String,
        /// The addresses.
        #[arg(long, num_args = 1.., required = true)]
        private_ip_addresses: Vec<String>,
        /// Take addresses another ENI holds.
        #[arg(long)]
        allow_reassignment: bool,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Remove secondary private IPs from an ENI.
    UnassignPrivateIpAddresses {
        /// The ENI.
        #[arg(long)]
        network_interface_id: String,
        /// The addresses.
        #[arg(long, num_args = 1.., required = true)]
        private_ip_addresses: Vec<String>,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Associate an Elastic IP with an ENI's private IP (moving it, unless refused).
    AssociateAddress {
        /// The Elastic IP.
        #[arg(long)]
        allocation_id: String,
        /// The ENI.
        #[arg(long, conflicts_with = "instance_id")]
        network_interface_id: Option<String>,
        /// Which private IP of the ENI (default: its primary).
        #[arg(long)]
        private_ip_address: Option<String>,
        /// An instance with one ENI.
        #[arg(long)]
        instance_id: Option<String>,
        /// Move the address if it is associated elsewhere (AWS's default).
        #[arg(long, conflicts_with = "no_allow_reassociation")]
        allow_reassociation: bool,
        /// Refuse an address that is associated elsewhere.
        #[arg(long)]
        no_allow_reassociation: bool,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Disassociate an Elastic IP (the allocation id stands for the association id).
    DisassociateAddress {
        /// The Elastic IP.
        #[arg(long, alias = "association-id")]
        allocation_id: String,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Change one attribute of an ENI.
    ModifyNetworkInterfaceAttribute {
        /// The ENI.
        #[arg(long)]
        network_interface_id: String,
        /// Turn the source/destination check on.
        #[arg(long, conflicts_with_all = ["no_source_dest_check", "groups"])]
        source_dest_check: bool,
        /// Turn it off (routers, NAT instances, firewalls).
        #[arg(long, conflicts_with = "groups")]
        no_source_dest_check: bool,
        /// Replace the ENI's security groups.
        #[arg(long, num_args = 1..)]
        groups: Option<Vec<String>>,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Add an inbound rule to a security group.
    AuthorizeSecurityGroupIngress(RuleArgs),
    /// Add an outbound rule to a security group.
    AuthorizeSecurityGroupEgress(RuleArgs),
    /// Remove an inbound rule.
    RevokeSecurityGroupIngress(RuleArgs),
    /// Remove an outbound rule.
    RevokeSecurityGroupEgress(RuleArgs),
    /// Add a route.
    CreateRoute {
        /// The route table.
        #[arg(long)]
        route_table_id: String,
        /// The destination.
        #[arg(long)]
        destination_cidr_block: String,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Change an existing route's target.
    ReplaceRoute {
        /// The route table.
        #[arg(long)]
        route_table_id: String,
        /// The destination of an existing route.
        #[arg(long)]
        destination_cidr_block: String,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Remove a route.
    DeleteRoute {
        /// The route table.
        #[arg(long)]
        route_table_id: String,
        /// The destination.
        #[arg(long)]
        destination_cidr_block: String,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Give a subnet another route table (the subnet id stands for the association id).
    ReplaceRouteTableAssociation {
        /// The subnet (or its association id, which is the subnet id here).
        #[arg(long, alias = "association-id")]
        subnet_id: String,
        /// The route table.
        #[arg(long)]
        route_table_id: String,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Add a numbered network ACL rule.
    CreateNetworkAclEntry(AclEntryArgs),
    /// Replace a numbered network ACL rule.
    ReplaceNetworkAclEntry(AclEntryArgs),
    /// Remove a numbered network ACL rule.
    DeleteNetworkAclEntry {
        /// The network ACL.
        #[arg(long)]
        network_acl_id: String,
        /// The rule number.
        #[arg(long)]
        rule_number: u16,
        /// An inbound rule.
        #[arg(long, conflicts_with = "egress")]
        ingress: bool,
        /// An outbound rule.
        #[arg(long)]
        egress: bool,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Stop instances: processes end, ENIs stay attached and carry nothing.
    StopInstances(InstancesArgs),
    /// Start stopped instances.
    StartInstances(InstancesArgs),
    /// Reboot instances: processes end, interfaces come back.
    RebootInstances(InstancesArgs),
    /// Terminate instances: the namespace goes, so do ENIs marked delete-on-termination.
    TerminateInstances(InstancesArgs),
    /// Start a VPC Flow Log for an ENI, a subnet or a VPC, written to a file; prints its id.
    CreateFlowLogs {
        /// The ENI, subnet or VPC (one).
        #[arg(long, num_args = 1.., required = true)]
        resource_ids: Vec<String>,
        /// NetworkInterface, Subnet or VPC.
        #[arg(long)]
        resource_type: String,
        /// ACCEPT, REJECT or ALL.
        #[arg(long)]
        traffic_type: String,
        /// Where records go: only `file` in vpclab.
        #[arg(long)]
        log_destination_type: String,
        /// The file (a relative path is taken from the current directory).
        #[arg(long)]
        log_destination: PathBuf,
        /// AWS's `${field}` format (default: version 2).
        #[arg(long)]
        log_format: Option<String>,
        /// Seconds per aggregation interval: 60 or 600 as in AWS, 1 to 600 in a lab (default 600).
        #[arg(long)]
        max_aggregation_interval: Option<u32>,
        /// The flow log's id (vpclab only; default a generated fl-<hex>).
        #[arg(long)]
        flow_log_id: Option<String>,
        /// The account id written in records (default 123456789012).
        #[arg(long)]
        account_id: Option<String>,
        #[command(flatten)]
        lab: LabArg,
    },
    /// Stop and remove flow logs (all or none).
    DeleteFlowLogs {
        /// The flow logs.
        #[arg(long, num_args = 1.., required = true)]
        flow_log_ids: Vec<String>,
        #[command(flatten)]
        lab: LabArg,
    },
}

fn rule(r: &RuleArgs) -> RuleSpec {
    RuleSpec {
        protocol: r.protocol.clone(),
        port: r.port.clone(),
        cidr: r.cidr.clone(),
        source_group: r.source_group.clone(),
    }
}

/// Runs a verb.
pub fn run(verb: Verb) -> anyhow::Result<ExitCode> {
    let (op, lab) = match verb {
        Verb::Apply { file, dry_run, lab } => return apply(&file, dry_run, lab.lab.as_deref()),
        Verb::Export { lab } => return export(lab.as_deref()),
        Verb::Events { follow, json, lab } => return show_events(lab.lab.as_deref(), follow, json),
        Verb::AttachNetworkInterface { network_interface_id, instance_id, device_index, lab } => {
            (Operation::AttachNetworkInterface { network_interface_id, instance_id, device_index }, lab)
        }
        Verb::DetachNetworkInterface { network_interface_id, force, lab } => {
            (Operation::DetachNetworkInterface { network_interface_id, force }, lab)
        }
        Verb::AssignPrivateIpAddresses { network_interface_id, private_ip_addresses, allow_reassignment, lab } => (
            Operation::AssignPrivateIpAddresses { network_interface_id, private_ip_addresses, allow_reassignment },
            lab,
        ),
        Verb::UnassignPrivateIpAddresses { network_interface_id, private_ip_addresses, lab } => {
            (Operation::UnassignPrivateIpAddresses { network_interface_id, private_ip_addresses }, lab)
        }
        Verb::AssociateAddress {
            allocation_id,
            network_interface_id,
            private_ip_address,
            instance_id,
            allow_reassociation: _,
            no_allow_reassociation,
            lab,
        } => (
            Operation::AssociateAddress {
                allocation_id,
                network_interface_id,
                private_ip_address,
                instance_id,
                allow_reassociation: !no_allow_reassociation,
            },
            lab,
        ),
        Verb::DisassociateAddress { allocation_id, lab } => (Operation::DisassociateAddress { allocation_id }, lab),
        Verb::ModifyNetworkInterfaceAttribute {
            network_interface_id,
            source_dest_check,
            no_source_dest_check,
            groups,
            lab,
        } => {
            let sdc = match (source_dest_check, no_source_dest_check) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            (Operation::ModifyNetworkInterfaceAttribute { network_interface_id, source_dest_check: sdc, groups }, lab)
        }
        Verb::AuthorizeSecurityGroupIngress(r) => {
            (Operation::AuthorizeSecurityGroupIngress { group_id: r.group_id.clone(), rule: rule(&r) }, r.lab)
        }
        Verb::AuthorizeSecurityGroupEgress(r) => {
            (Operation::AuthorizeSecurityGroupEgress { group_id: r.group_id.clone(), rule: rule(&r) }, r.lab)
        }
        Verb::RevokeSecurityGroupIngress(r) => {
            (Operation::RevokeSecurityGroupIngress { group_id: r.group_id.clone(), rule: rule(&r) }, r.lab)
        }
        Verb::RevokeSecurityGroupEgress(r) => {
            (Operation::RevokeSecurityGroupEgress { group_id: r.group_id.clone(), rule: rule(&r) }, r.lab)
        }
        Verb::CreateRoute { route_table_id, destination_cidr_block, target, lab } => {
            (Operation::CreateRoute { route_table_id, destination_cidr_block, target: target.id() }, lab)
        }
        Verb::ReplaceRoute { route_table_id, destination_cidr_block, target, lab } => {
            (Operation::ReplaceRoute { route_table_id, destination_cidr_block, target: target.id() }, lab)
        }
        Verb::DeleteRoute { route_table_id, destination_cidr_block, lab } => {
            (Operation::DeleteRoute { route_table_id, destination_cidr_block }, lab)
        }
        Verb::ReplaceRouteTableAssociation { subnet_id, route_table_id, lab } => {
            (Operation::ReplaceRouteTableAssociation { subnet_id, route_table_id }, lab)
        }
        Verb::CreateNetworkAclEntry(a) => (
            Operation::CreateNetworkAclEntry {
                network_acl_id: a.network_acl_id.clone(),
                rule_number: a.rule_number,
                egress: a.egress,
                entry: a.entry(),
            },
            a.lab,
        ),
        Verb::ReplaceNetworkAclEntry(a) => (
            Operation::ReplaceNetworkAclEntry {
                network_acl_id: a.network_acl_id.clone(),
                rule_number: a.rule_number,
                egress: a.egress,
                entry: a.entry(),
            },
            a.lab,
        ),
        Verb::DeleteNetworkAclEntry { network_acl_id, rule_number, ingress: _, egress, lab } => {
            (Operation::DeleteNetworkAclEntry { network_acl_id, rule_number, egress }, lab)
        }
        Verb::StopInstances(i) => (Operation::StopInstances { instance_ids: i.instance_ids }, i.lab),
        Verb::StartInstances(i) => (Operation::StartInstances { instance_ids: i.instance_ids }, i.lab),
        Verb::RebootInstances(i) => (Operation::RebootInstances { instance_ids: i.instance_ids }, i.lab),
        Verb::TerminateInstances(i) => (Operation::TerminateInstances { instance_ids: i.instance_ids }, i.lab),
        Verb::CreateFlowLogs {
            resource_ids,
            resource_type,
            traffic_type,
            log_destination_type,
            log_destination,
            log_format,
            max_aggregation_interval,
            flow_log_id,
            account_id,
            lab,
        } => {
            // The forwarder has no current directory of the caller's: send an absolute path.
            let log_destination = std::path::absolute(&log_destination).unwrap_or(log_destination);
            let op = Operation::CreateFlowLogs {
                resource_ids,
                resource_type,
                traffic_type,
                log_destination_type,
                log_destination: log_destination.display().to_string(),
                log_format,
                max_aggregation_interval,
                flow_log_id,
                account_id,
            };
            (op, lab)
        }
        Verb::DeleteFlowLogs { flow_log_ids, lab } => (Operation::DeleteFlowLogs { flow_log_ids }, lab),
    };
    let lab = lab::resolve_lab(lab.lab.as_deref(), false)?;
    let name = op_name(&op);
    let req = Request::Change { change: Change::Operation { op }, dry_run: false };
    report(&lab, &name, &req, false)
}

/// Sends a change and prints its plan, or AWS CLI's error line (exit 254, as the AWS CLI does).
fn report(lab: &str, action: &str, req: &Request, dry_run: bool) -> anyhow::Result<ExitCode> {
    match super::request(lab, req)? {
        Response::Changed(o) => {
            print_outcome(&o, dry_run);
            if action == "CreateFlowLogs" {
                // AWS answers with the new ids (`FlowLogIds`); the plan's step names them.
                let ids: Vec<&str> =
                    o.plan.iter().filter_map(|s| s.strip_prefix("CreateFlowLogs ")?.split(' ').next()).collect();
                println!("FlowLogIds: {}", ids.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Response::Refused(e) => {
            eprintln!("An error occurred ({}) when calling the {action} operation: {}", e.code, e.message);
            Ok(ExitCode::from(254))
        }
        Response::Error { message } => bail!("the forwarder of `{lab}` refused: {message}"),
        other => bail!("the forwarder of `{lab}` answered {other:?}"),
    }
}

fn print_outcome(o: &Outcome, dry_run: bool) {
    if o.plan.is_empty() {
        println!("No changes.");
        return;
    }
    for step in &o.plan {
        println!("{step}");
    }
    if dry_run {
        println!("(dry run: nothing was changed)");
    } else {
        println!("applied: generation {} in {} ms (forwarding paused {} us)", o.generation, o.millis, o.swap_micros);
    }
}

fn apply(file: &PathBuf, dry_run: bool, named: Option<&str>) -> anyhow::Result<ExitCode> {
    let lab = lab::resolve_lab(named, false)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    // Absolute, so the forwarder finds flow log destinations relative to the file's folder.
    let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
    let change = Change::File { text, file: file.display().to_string() };
    report(&lab, "apply", &Request::Change { change, dry_run }, dry_run)
}

fn export(named: Option<&str>) -> anyhow::Result<ExitCode> {
    let lab = lab::resolve_lab(named, false)?;
    match super::request(&lab, &Request::Export)? {
        Response::Exported { text } => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("the forwarder of `{lab}` answered {other:?}"),
    }
}

fn show_events(named: Option<&str>, follow: bool, json: bool) -> anyhow::Result<ExitCode> {
    let lab = lab::resolve_lab(named, follow)?;
    let path = events::path(&lab);
    let mut out = std::io::stdout().lock();
    let mut offset = 0u64;
    loop {
        // Read what was appended since the last look, whole lines only.
        if let Ok(mut f) = std::fs::File::open(&path) {
            use std::io::{Seek, SeekFrom};
            if f.metadata().is_ok_and(|m| m.len() < offset) {
                offset = 0; // rotated
            }
            f.seek(SeekFrom::Start(offset))?;
            for line in std::io::BufReader::new(f).lines() {
                let line = line?;
                offset += line.len() as u64 + 1;
                let Ok(e) = serde_json::from_str::<events::Event>(&line) else { continue };
                if json {
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(out, "{}", e.line())?;
                }
            }
            out.flush()?;
        }
        if !follow || !lab::lab_running(&lab) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
