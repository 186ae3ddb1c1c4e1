//! `[[flow_log]]`: what a flow log covers (an ENI, a NAT gateway's network interface, a subnet
//! or a VPC), which traffic it keeps, where and how it writes.

use std::collections::HashMap;

use super::{path, Checker, Kind};
use crate::capture::flow_log::format::parse_format;
use crate::model::{EniIdx, FlowLog, FlowLogResource, NatIdx, SubnetIdx, TrafficType, VpcIdx};
use crate::topology::raw::{RawFile, RawFlowLog};

/// The longest destination path accepted.
const MAX_DESTINATION: usize = 1024;

/// Checks every flow log; `None` for one that failed.
pub(super) fn flow_logs(c: &mut Checker<'_>, raw: &RawFile) -> Vec<Option<FlowLog>> {
    let mut destinations: HashMap<&str, &str> = HashMap::new();
    raw.flow_log.iter().map(|f| flow_log(c, f, &mut destinations)).collect()
}

fn flow_log<'r>(
    c: &mut Checker<'_>,
    f: &'r RawFlowLog,
    destinations: &mut HashMap<&'r str, &'r str>,
) -> Option<FlowLog> {
    let id = f.id.get_ref();
    let field = |rest: &str| path(Kind::FlowLog, id, rest);
    let resource = {
        let r = f.resource.get_ref();
        match c.ids.get(r.as_str()).copied() {
            Some(e) if e.kind == Kind::NetworkInterface => Some(FlowLogResource::Eni(EniIdx(e.index as u32))),
            Some(e) if e.kind == Kind::NatInterface => Some(FlowLogResource::NatInterface(NatIdx(e.index as u32))),
            Some(e) if e.kind == Kind::Subnet => Some(FlowLogResource::Subnet(SubnetIdx(e.index as u32))),
            Some(e) if e.kind == Kind::Vpc => Some(FlowLogResource::Vpc(VpcIdx(e.index as u32))),
            Some(e) => {
                let msg = format!(
                    "`{r}` is {}: a flow log covers a network interface (an ENI or a NAT gateway's), a subnet or a VPC",
                    e.kind.a()
                );
                c.err(f.resource.span(), field("resource"), msg);
                None
            }
            None => {
                let msg = format!(
                    "`{r}` does not exist: no network interface (an ENI or a NAT gateway's), subnet or VPC has this id"
                );
                c.err(f.resource.span(), field("resource"), msg);
                None
            }
        }
    };
    let traffic_type = match f.traffic_type.get_ref().as_str() {
        "ACCEPT" => Some(TrafficType::Accept),
        "REJECT" => Some(TrafficType::Reject),
        "ALL" => Some(TrafficType::All),
        other => {
            let msg = format!("`{other}` is not a traffic type: use ACCEPT, REJECT or ALL");
            c.err(f.traffic_type.span(), field("traffic_type"), msg);
            None
        }
    };
    let destination = {
        let d = f.destination.get_ref();
        let problem = if d.trim().is_empty() {
            Some("a flow log needs a destination file".to_string())
        } else if d.len() > MAX_DESTINATION {
            Some(format!("a destination is at most {MAX_DESTINATION} bytes"))
        } else if d.contains('\0') || d.ends_with('/') {
            Some(format!("`{d}` is not a file name"))
        } else {
            destinations
                .get(d.as_str())
                .map(|other| format!("flow log `{other}` already writes to `{d}`: give each flow log its own file"))
        };
        match problem {
            Some(msg) => {
                c.err(f.destination.span(), field("destination"), msg);
                None
            }
            None => {
                destinations.insert(d.as_str(), id.as_str());
                Some(d.clone())
            }
        }
    };
    let log_format = match &f.log_format {
        None => Some(None),
        Some(s) => match parse_format(s.get_ref()) {
            Ok(_) => Some(Some(s.get_ref().clone())),
            Err(msg) => {
                c.err(s.span(), field("log_format"), msg);
                None
            }
        },
    };
    let interval = match &f.max_aggregation_interval {
        None => Some(FlowLog::DEFAULT_INTERVAL),
        Some(v) => c
            .int_in(v, &field("max_aggregation_interval"), 1..601, "max_aggregation_interval (seconds; AWS: 60 or 600)")
            .map(|n| n as u32),
    };
    let account_id = match &f.account_id {
        None => Some(None),
        Some(a) if a.get_ref().len() == 12 && a.get_ref().bytes().all(|b| b.is_ascii_digit()) => {
            Some(Some(a.get_ref().clone()))
        }
        Some(a) => {
            let msg = format!("`{}` is not an AWS account id: twelve digits", a.get_ref());
            c.err(a.span(), field("account_id"), msg);
            None
        }
    };
    Some(FlowLog {
        id: id.clone(),
        resource: resource?,
        traffic_type: traffic_type?,
        destination: destination?,
        log_format: log_format?,
        max_aggregation_interval: interval?,
        account_id: account_id?,
    })
}
