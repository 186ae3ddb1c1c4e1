//! Flow log records as text, the way AWS writes them: AWS's `${field}` names of versions 2 to 5,
//! a format parser (what `log_format` may say), and one record as a line of space-separated
//! values with `-` where a field does not apply. Pure: no clock, no files.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

macro_rules! fields {
    ($($(#[$doc:meta])* $name:ident = $text:literal, $version:literal,)*) => {
        /// One field of a flow log record, as AWS names it in a custom format.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Field {
            $($(#[$doc])* $name,)*
        }

        impl Field {
            /// Every field, in AWS's documented order.
            pub const ALL: &'static [Field] = &[$(Field::$name,)*];

            /// AWS's name, without `${}`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$name => $text,)*
                }
            }

            /// The flow log version that introduced the field.
            pub fn version(self) -> u8 {
                match self {
                    $(Field::$name => $version,)*
                }
            }
        }
    };
}

fields! {
    /// The record's version: the highest version among the chosen fields.
    Version = "version", 2,
    /// The account id.
    AccountId = "account-id", 2,
    /// The ENI.
    InterfaceId = "interface-id", 2,
    /// Source address (the ENI's primary private IP for its secondary IPs).
    SrcAddr = "srcaddr", 2,
    /// Destination address (likewise).
    DstAddr = "dstaddr", 2,
    /// Source port.
    SrcPort = "srcport", 2,
    /// Destination port.
    DstPort = "dstport", 2,
    /// IANA protocol number.
    Protocol = "protocol", 2,
    /// Packets in the interval.
    Packets = "packets", 2,
    /// Bytes in the interval (IP packets).
    Bytes = "bytes", 2,
    /// First packet, Unix seconds.
    Start = "start", 2,
    /// Last packet, Unix seconds.
    End = "end", 2,
    /// ACCEPT or REJECT.
    Action = "action", 2,
    /// OK, NODATA or SKIPDATA.
    LogStatus = "log-status", 2,
    /// The ENI's VPC.
    VpcId = "vpc-id", 3,
    /// The ENI's subnet.
    SubnetId = "subnet-id", 3,
    /// The ENI's instance.
    InstanceId = "instance-id", 3,
    /// TCP flags ORed over the interval (FIN 1, SYN 2, RST 4, SYN-ACK 18).
    TcpFlags = "tcp-flags", 3,
    /// IPv4 or IPv6.
    Type = "type", 3,
    /// The packet's own source address.
    PktSrcAddr = "pkt-srcaddr", 3,
    /// The packet's own destination address.
    PktDstAddr = "pkt-dstaddr", 3,
    /// The ENI's region.
    Region = "region", 4,
    /// The ENI's availability zone id.
    AzId = "az-id", 4,
    /// Wavelength, Outpost or Local Zone.
    SublocationType = "sublocation-type", 4,
    /// Its id.
    SublocationId = "sublocation-id", 4,
    /// The AWS service the source address belongs to.
    PktSrcAwsService = "pkt-src-aws-service", 5,
    /// The AWS service the destination address belongs to.
    PktDstAwsService = "pkt-dst-aws-service", 5,
    /// ingress or egress, relative to the ENI.
    FlowDirection = "flow-direction", 5,
    /// How egress traffic left: 1 same VPC, 2 internet gateway, 4 intra-region peering.
    TrafficPath = "traffic-path", 5,
}

/// AWS's default format (version 2).
pub const DEFAULT_FORMAT: &[Field] = &[
    Field::Version,
    Field::AccountId,
    Field::InterfaceId,
    Field::SrcAddr,
    Field::DstAddr,
    Field::SrcPort,
    Field::DstPort,
    Field::Protocol,
    Field::Packets,
    Field::Bytes,
    Field::Start,
    Field::End,
    Field::Action,
    Field::LogStatus,
];

/// The longest `log_format` accepted (every field once is about 350 characters).
pub const MAX_FORMAT_LEN: usize = 2048;

/// Reads a custom format: `${field}` names separated by spaces, each known and used once.
pub fn parse_format(s: &str) -> Result<Vec<Field>, String> {
    if s.len() > MAX_FORMAT_LEN {
        return Err(format!("a log format is at most {MAX_FORMAT_LEN} characters"));
    }
    let mut out: Vec<Field> = Vec::new();
    for token in s.split_ascii_whitespace() {
        let Some(name) = token.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
            return Err(format!("`{token}` is not a field: write each field as ${{name}}, separated by spaces"));
        };
        let Some(&field) = Field::ALL.iter().find(|f| f.name() == name) else {
            let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
            return Err(format!("`{name}` is not a flow log field of versions 2 to 5 (known: {})", known.join(" ")));
        };
        if out.contains(&field) {
            return Err(format!("`${{{name}}}` is given twice"));
        }
        out.push(field);
    }
    if out.is_empty() {
        return Err("a log format needs at least one ${field}".into());
    }
    Ok(out)
}

/// The version written in records of this format: the highest among its fields.
pub fn format_version(fields: &[Field]) -> u8 {
    fields.iter().map(|f| f.version()).max().unwrap_or(2)
}

/// The header line of a file (field names, as in files delivered to S3).
pub fn header(fields: &[Field]) -> String {
    fields.iter().map(|f| f.name()).collect::<Vec<_>>().join(" ")
}

/// Where a record's ENI is: what the fields of versions 3 and 4 say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EniInfo {
    /// The ENI id.
    pub id: String,
    /// Its primary private IP.
    pub primary: Ipv4Addr,
    /// Its VPC.
    pub vpc_id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Its instance, when attached.
    pub instance_id: Option<String>,
    /// Its region (from the subnet's availability zone), when known.
    pub region: Option<String>,
    /// Its availability zone id, when known.
    pub az_id: Option<String>,
}

/// ACCEPT or REJECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let through by groups and ACLs.
    Accept,
    /// Refused by a group or an ACL.
    Reject,
}

/// One flow's counts over an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowData {
    /// `srcaddr` (the ENI's primary IP in place of its other addresses).
    pub src: Ipv4Addr,
    /// `dstaddr` (likewise).
    pub dst: Ipv4Addr,
    /// The packet's own source.
    pub pkt_src: Ipv4Addr,
    /// The packet's own destination.
    pub pkt_dst: Ipv4Addr,
    /// Source port (0 without ports).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IANA protocol number.
    pub protocol: u8,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// ACCEPT or REJECT.
    pub action: Action,
    /// TCP flags ORed (AWS's encoding).
    pub tcp_flags: u8,
    /// Sent by the ENI (egress) or delivered to it (ingress).
    pub egress: bool,
    /// `traffic-path` of egress traffic.
    pub traffic_path: Option<u8>,
}

/// What a record reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A flow (`log-status` OK).
    Flow(FlowData),
    /// No traffic in the interval.
    NoData,
    /// Records were lost to capacity in the interval.
    SkipData,
}

/// Appends one record of `fields` to `out` (no newline). `start` and `end` are Unix seconds.
pub fn write_record(
    out: &mut String,
    fields: &[Field],
    account: &str,
    eni: &EniInfo,
    kind: &RecordKind,
    start: u64,
    end: u64,
) {
    let flow = match kind {
        RecordKind::Flow(f) => Some(f),
        _ => None,
    };
    let version = format_version(fields);
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        let v: String = match field {
            Field::Version => version.to_string(),
            Field::AccountId => account.to_string(),
            Field::InterfaceId => eni.id.clone(),
            Field::VpcId => eni.vpc_id.clone(),
            Field::SubnetId => eni.subnet_id.clone(),
            Field::InstanceId => opt(&eni.instance_id),
            Field::Region => opt(&eni.region),
            Field::AzId => opt(&eni.az_id),
            Field::Start => start.to_string(),
            Field::End => end.to_string(),
            Field::LogStatus => match kind {
                RecordKind::Flow(_) => "OK",
                RecordKind::NoData => "NODATA",
                RecordKind::SkipData => "SKIPDATA",
            }
            .to_string(),
            Field::SublocationType | Field::SublocationId | Field::PktSrcAwsService | Field::PktDstAwsService => {
                "-".into()
            }
            _ => match flow {
                None => "-".into(),
                Some(f) => match field {
                    Field::SrcAddr => f.src.to_string(),
                    Field::DstAddr => f.dst.to_string(),
                    Field::SrcPort => f.src_port.to_string(),
                    Field::DstPort => f.dst_port.to_string(),
                    Field::Protocol => f.protocol.to_string(),
                    Field::Packets => f.packets.to_string(),
                    Field::Bytes => f.bytes.to_string(),
                    Field::Action => match f.action {
                        Action::Accept => "ACCEPT",
                        Action::Reject => "REJECT",
                    }
                    .to_string(),
                    Field::TcpFlags => f.tcp_flags.to_string(),
                    Field::Type => "IPv4".into(),
                    Field::PktSrcAddr => f.pkt_src.to_string(),
                    Field::PktDstAddr => f.pkt_dst.to_string(),
                    Field::FlowDirection => if f.egress { "egress" } else { "ingress" }.into(),
                    Field::TrafficPath => f.traffic_path.map_or_else(|| "-".into(), |p| p.to_string()),
                    _ => "-".into(),
                },
            },
        };
        let _ = write!(out, "{v}");
    }
}

/// AWS's `tcp-flags` value of one segment: FIN 1, SYN 2, RST 4, and SYN-ACK 18 (ACK counts only
/// with SYN; ACK and PSH alone give 0).
pub fn aws_tcp_flags(flags: u8) -> u8 {
    let mut v = flags & 0x07;
    if flags & 0x12 == 0x12 {
        v |= 0x10;
    }
    v
}

/// The region of an availability zone name (`us-east-1a` -> `us-east-1`).
pub fn region_of(az: &str) -> Option<String> {
    let r = az.trim_end_matches(|c: char| c.is_ascii_lowercase());
    (r.len() < az.len() && r.ends_with(|c: char| c.is_ascii_digit())).then(|| r.to_string())
}

/// A stable availability zone id for a zone name, shaped like AWS's (`us-east-1a` ->
/// `use1-az1`): AWS maps names to ids per account, so a lab picks the letter's position.
pub fn az_id_of(az: &str) -> Option<String> {
    let region = region_of(az)?;
    let letters = &az[region.len()..];
    let n = letters.bytes().last()? - b'a' + 1;
    // `us-east-1` -> `use1`: the first word, the first letter of each other word, the number.
    let mut parts = region.split('-');
    let mut short = parts.next()?.to_string();
    for p in parts {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            short.push_str(p);
        } else if let Some(c) = p.chars().next() {
            short.push(c);
        }
    }
    Some(format!("{short}-az{n}"))
}
