//! The traffic mirroring sections: `[[traffic_mirror_target]]`, `[[traffic_mirror_filter]]` and
//! `[[traffic_mirror_session]]`, checked with AWS's rules: filter rules numbered 1 to 32766, each
//! number once per direction, at most [`RULES_PER_FILTER`] per filter; a session number 1 to
//! 32766, once per source; at most [`SESSIONS_PER_SOURCE`] sessions per source ENI; an ENI never
//! both a source and a target; a VNI of 24 bits; a packet length that fits the VPC's MTU.

use std::collections::HashMap;

use toml::Spanned;

use super::{idx, numbered_rules, path, Checker, Kind};
use crate::model::{
    EniIdx, MirrorAction, MirrorRule, PortRange, Protocol, TmfIdx, TmtIdx, TrafficMirrorFilter, TrafficMirrorSession,
    TrafficMirrorTarget,
};
use crate::topology::raw::{RawFile, RawMirrorRule};

/// AWS's quota of rules per traffic mirror filter (both directions together).
pub(crate) const RULES_PER_FILTER: usize = 10;
/// AWS's quota of sessions per source network interface.
pub(crate) const SESSIONS_PER_SOURCE: usize = 3;
/// The largest VXLAN network identifier (24 bits).
pub(crate) const MAX_VNI: i64 = 0x00ff_ffff;
/// The largest `packet_length`: the VPC's MTU (9001) less the encapsulation's 54 bytes.
pub(crate) const MAX_PACKET_LENGTH: i64 = 8947;

/// What validation learnt about the mirroring sections; `None` where a value failed its check.
pub(super) struct Mirroring {
    targets: Vec<Option<usize>>,
    filters: Vec<Option<(Vec<MirrorRule>, Vec<MirrorRule>)>>,
    sessions: Vec<Option<CheckedSession>>,
}

struct CheckedSession {
    source: usize,
    target: usize,
    filter: usize,
    number: u16,
    vni: u32,
    packet_length: Option<u16>,
}

/// Checks the three sections.
pub(super) fn traffic_mirroring(c: &mut Checker<'_>, raw: &RawFile) -> Mirroring {
    let targets: Vec<Option<usize>> = raw
        .traffic_mirror_target
        .iter()
        .map(|t| {
            let f = path(Kind::TrafficMirrorTarget, t.id.get_ref(), "network_interface");
            c.resolve(&t.network_interface, Kind::NetworkInterface, f)
        })
        .collect();
    let filters = raw
        .traffic_mirror_filter
        .iter()
        .map(|f| {
            let id = f.id.get_ref();
            let n = f.ingress.as_ref().map_or(0, |l| l.get_ref().len())
                + f.egress.as_ref().map_or(0, |l| l.get_ref().len());
            let mut ok = true;
            if n > RULES_PER_FILTER {
                let span = f.ingress.as_ref().or(f.egress.as_ref()).map_or(f.id.span(), |l| l.span());
                let msg = format!("a traffic mirror filter holds at most {RULES_PER_FILTER} rules; this one has {n}");
                c.err(span, path(Kind::TrafficMirrorFilter, id, "ingress"), msg);
                ok = false;
            }
            let ingress = f.ingress.as_ref().map_or(Some(Vec::new()), |l| rules(c, id, l.get_ref(), "ingress"));
            let egress = f.egress.as_ref().map_or(Some(Vec::new()), |l| rules(c, id, l.get_ref(), "egress"));
            if ok {
                ingress.zip(egress)
            } else {
                None
            }
        })
        .collect();
    let sessions = sessions(c, raw, &targets);
    Mirroring { targets, filters, sessions }
}

/// One direction of filter `id`'s rules, sorted by number.
fn rules(c: &mut Checker<'_>, id: &str, list: &[RawMirrorRule], dname: &str) -> Option<Vec<MirrorRule>> {
    numbered_rules(c, Kind::TrafficMirrorFilter, id, list, dname, rule, |r| r.number)
}

/// One filter rule: a number not yet `seen` in its direction, an action, a protocol (all when
/// none is named), port ranges (TCP and UDP only) and both CIDR blocks.
fn rule(
    c: &mut Checker<'_>,
    base: &str,
    r: &RawMirrorRule,
    dname: &str,
    seen: &mut HashMap<i64, usize>,
) -> Option<MirrorRule> {
    let (number, unique) = c.rule_number(&r.rule, &format!("{base}.rule"), "a rule number", dname, seen);
    let action = match r.action.get_ref().trim().to_ascii_lowercase().as_str() {
        "accept" => Some(MirrorAction::Accept),
        "reject" => Some(MirrorAction::Reject),
        other => {
            let msg = format!("`{other}` is not a traffic mirror rule action: use accept or reject");
            c.err(r.action.span(), format!("{base}.action"), msg);
            None
        }
    };
    let protocol = match &r.protocol {
        None => Some(Protocol::All),
        Some(p) => c.protocol(p, &format!("{base}.protocol")),
    };
    let mut ports = |p: &Option<Spanned<crate::topology::raw::StrOrInt>>, name: &str| -> Option<PortRange> {
        let Some(p) = p else { return Some(PortRange::ALL) };
        let field = format!("{base}.{name}");
        if !protocol?.has_ports() {
            c.err(p.span(), field, format!("{name} apply only to protocol tcp or udp (6 or 17)"));
            return None;
        }
        c.port_range(p, &field)
    };
    let source_ports = ports(&r.source_ports, "source_ports");
    let destination_ports = ports(&r.destination_ports, "destination_ports");
    let source_cidr = c.cidr(&r.source_cidr, &format!("{base}.source_cidr"), None);
    let destination_cidr = c.cidr(&r.destination_cidr, &format!("{base}.destination_cidr"), None);
    Some(MirrorRule {
        number: u16::try_from(number.filter(|_| unique)?).ok()?,
        action: action?,
        protocol: protocol?,
        source_ports: source_ports?,
        destination_ports: destination_ports?,
        source_cidr: source_cidr?,
        destination_cidr: destination_cidr?,
    })
}

/// Checks each session: its references, number, VNI and packet length; then the rules between
/// sessions (numbers once per source, at most three per source, no ENI both source and target).
fn sessions(c: &mut Checker<'_>, raw: &RawFile, targets: &[Option<usize>]) -> Vec<Option<CheckedSession>> {
    // The ENIs that are targets, with the target naming each.
    let mut target_enis: HashMap<usize, &str> = HashMap::new();
    for (t, eni) in raw.traffic_mirror_target.iter().zip(targets) {
        if let Some(e) = eni {
            target_enis.entry(*e).or_insert(t.id.get_ref().as_str());
        }
    }
    let mut per_source: HashMap<usize, Vec<(u16, usize)>> = HashMap::new();
    let mut out = Vec::new();
    for s in &raw.traffic_mirror_session {
        let id = s.id.get_ref();
        let at = |field: &str| path(Kind::TrafficMirrorSession, id, field);
        let mut source = c.resolve(&s.source, Kind::NetworkInterface, at("source"));
        if let Some(t) = source.and_then(|e| target_enis.get(&e)) {
            let msg = format!(
                "network interface `{}` is the target of traffic mirror target `{t}`: an ENI cannot be both a mirror source and a mirror target",
                s.source.get_ref()
            );
            c.err(s.source.span(), at("source"), msg);
            source = None;
        }
        let target = c.resolve(&s.target, Kind::TrafficMirrorTarget, at("target"));
        let filter = c.resolve(&s.filter, Kind::TrafficMirrorFilter, at("filter"));
        let number = c.int_in(&s.session_number, &at("session_number"), 1..32767, "a session number");
        let number = number.and_then(|n| u16::try_from(n).ok());
        let vni = match &s.virtual_network_id {
            None => Some(TrafficMirrorSession::default_vni(id)),
            Some(v) => c
                .int_in(v, &at("virtual_network_id"), 0..MAX_VNI + 1, "a virtual network id (24 bits)")
                .and_then(|n| u32::try_from(n).ok()),
        };
        let packet_length = match &s.packet_length {
            None => Some(None),
            Some(v) => c
                .int_in(
                    v,
                    &at("packet_length"),
                    1..MAX_PACKET_LENGTH + 1,
                    "packet_length (bytes after the VXLAN header, within the VPC's MTU)",
                )
                .and_then(|n| u16::try_from(n).ok())
                .map(Some),
        };
        if let (Some(e), Some(n)) = (source, number) {
            let mine = per_source.entry(e).or_default();
            if let Some(&(_, other)) = mine.iter().find(|(m, _)| *m == n) {
                let msg = format!(
                    "session number {n} is already used by traffic mirror session `{}` of network interface `{}`",
                    raw.traffic_mirror_session[other].id.get_ref(),
                    s.source.get_ref()
                );
                c.err(s.session_number.span(), at("session_number"), msg);
            } else if mine.len() >= SESSIONS_PER_SOURCE {
                let msg = format!(
                    "network interface `{}` is already the source of {SESSIONS_PER_SOURCE} traffic mirror sessions, AWS's limit",
                    s.source.get_ref()
                );
                c.err(s.source.span(), at("source"), msg);
            }
            mine.push((n, out.len()));
        }
        let checked = match (source, target, filter, number, vni, packet_length) {
            (Some(source), Some(target), Some(filter), Some(number), Some(vni), Some(packet_length)) => {
                Some(CheckedSession { source, target, filter, number, vni, packet_length })
            }
            _ => None,
        };
        out.push(checked);
    }
    out
}

impl Mirroring {
    /// The targets, in file order.
    pub(super) fn targets(&self, raw: &RawFile) -> Option<Vec<TrafficMirrorTarget>> {
        let mut out = Vec::new();
        for (t, eni) in raw.traffic_mirror_target.iter().zip(&self.targets) {
            out.push(TrafficMirrorTarget { id: t.id.get_ref().clone(), eni: EniIdx(idx((*eni)?)?) });
        }
        Some(out)
    }

    /// The filters, their rules sorted by number.
    pub(super) fn filters(&self, raw: &RawFile) -> Option<Vec<TrafficMirrorFilter>> {
        let mut out = Vec::new();
        for (f, rules) in raw.traffic_mirror_filter.iter().zip(&self.filters) {
            let (ingress, egress) = rules.clone()?;
            out.push(TrafficMirrorFilter { id: f.id.get_ref().clone(), ingress, egress });
        }
        Some(out)
    }

    /// The sessions, in file order.
    pub(super) fn sessions(&self, raw: &RawFile) -> Option<Vec<TrafficMirrorSession>> {
        let mut out = Vec::new();
        for (s, checked) in raw.traffic_mirror_session.iter().zip(&self.sessions) {
            let c = checked.as_ref()?;
            out.push(TrafficMirrorSession {
                id: s.id.get_ref().clone(),
                source: EniIdx(idx(c.source)?),
                target: TmtIdx(idx(c.target)?),
                filter: TmfIdx(idx(c.filter)?),
                session_number: c.number,
                virtual_network_id: c.vni,
                packet_length: c.packet_length,
            });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{MirrorAction, Model, PortRange, Protocol};
    use crate::packet::IpProto;
    use crate::topology::{export, parse, Problem};

    /// Three ENIs in one subnet: a source, another source, and an IDS target.
    const BASE: &str = r#"name = "t"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-a"
vpc = "vpc-a"
cidr = "10.0.1.0/24"

[[instance]]
id = "web"

[[instance]]
id = "ids"

[[network_interface]]
id = "eni-web"
subnet = "subnet-a"
private_ip = "10.0.1.10"
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-other"
subnet = "subnet-a"
private_ip = "10.0.1.11"

[[network_interface]]
id = "eni-ids"
subnet = "subnet-a"
private_ip = "10.0.1.20"
attachment = { instance = "ids", device_index = 0 }

[[traffic_mirror_target]]
id = "tmt-ids"
network_interface = "eni-ids"

[[traffic_mirror_filter]]
id = "tmf-web"
ingress = [
  { rule = 200, action = "accept", protocol = "tcp", destination_ports = "80", source_cidr = "0.0.0.0/0", destination_cidr = "0.0.0.0/0" },
  { rule = 100, action = "reject", protocol = "tcp", source_ports = "1-1023", destination_ports = "80", source_cidr = "10.0.0.0/8", destination_cidr = "0.0.0.0/0" },
]
egress = [
  { rule = 10, action = "accept", source_cidr = "0.0.0.0/0", destination_cidr = "10.0.0.0/16" },
]
"#;

    const SESSION: &str = r#"
[[traffic_mirror_session]]
id = "tms-web"
source = "eni-web"
target = "tmt-ids"
filter = "tmf-web"
session_number = 1
virtual_network_id = 77
packet_length = 128
"#;

    fn ok(extra: &str) -> Model {
        parse(&format!("{BASE}{extra}"), "t.toml").unwrap_or_else(|e| panic!("expected a valid lab:\n{e}"))
    }

    fn problems(extra: &str) -> Vec<Problem> {
        match parse(&format!("{BASE}{extra}"), "t.toml") {
            Ok(_) => panic!("expected problems for:\n{extra}"),
            Err(e) => e.problems,
        }
    }

    /// The one problem, as `field: message`, with its line's text.
    fn one(extra: &str) -> (String, String) {
        let text = format!("{BASE}{extra}");
        let p = problems(extra);
        assert_eq!(p.len(), 1, "{p:?}");
        let line = text.lines().nth(p[0].line - 1).unwrap_or("").to_string();
        (format!("{}: {}", p[0].field, p[0].message), line)
    }

    #[test]
    fn sections_become_the_model_sorted_and_defaulted() {
        let m = ok(SESSION);
        let f = &m.traffic_mirror_filters[0];
        assert_eq!(f.ingress.iter().map(|r| r.number).collect::<Vec<_>>(), [100, 200], "sorted by number");
        assert_eq!(f.ingress[0].action, MirrorAction::Reject);
        assert_eq!(f.ingress[0].source_ports, PortRange { from: 1, to: 1023 });
        assert_eq!(f.egress[0].protocol, Protocol::All, "no protocol: every protocol");
        let s = &m.traffic_mirror_sessions[0];
        assert_eq!((s.session_number, s.virtual_network_id, s.packet_length), (1, 77, Some(128)));
        assert_eq!(m.enis[m.traffic_mirror_targets[s.target.index()].eni.index()].id, "eni-ids");
        // Lowest number first: a port-80 packet from a privileged port of 10/8 is rejected by 100.
        let (a, b) = ("10.0.1.5".parse().unwrap(), "10.0.1.10".parse().unwrap());
        assert!(!f.accepts(true, IpProto::TCP, a, b, 80, 80));
        assert!(f.accepts(true, IpProto::TCP, a, b, 40000, 80));
        assert!(!f.accepts(true, IpProto::UDP, a, b, 40000, 80), "no rule matches: not mirrored");
        assert!(f.accepts(false, IpProto::ICMP, b, a, 0, 0));
    }

    #[test]
    fn a_vni_left_out_is_derived_from_the_session_id_and_round_trips() {
        let m = ok(&SESSION.replace("virtual_network_id = 77\n", ""));
        let s = &m.traffic_mirror_sessions[0];
        assert_eq!(s.virtual_network_id, crate::model::TrafficMirrorSession::default_vni("tms-web"));
        assert!(s.virtual_network_id <= 0x00ff_ffff);
        assert!(!export(&m).contains("virtual_network_id"), "the default is left out");
        let m = ok(SESSION);
        let text = export(&m);
        assert!(text.contains("[[traffic_mirror_session]]\nid = \"tms-web\""), "{text}");
        assert!(text.contains("virtual_network_id = 77"), "{text}");
        assert!(text.contains("{ rule = 10, action = \"accept\", source_cidr = \"0.0.0.0/0\""), "{text}");
    }

    #[test]
    fn an_eni_cannot_be_both_source_and_target() {
        let (p, line) = one(&SESSION.replace("source = \"eni-web\"", "source = \"eni-ids\""));
        assert!(p.starts_with("traffic_mirror_session \"tms-web\".source: network interface `eni-ids` is the target of traffic mirror target `tmt-ids`"), "{p}");
        assert_eq!(line, "source = \"eni-ids\"");
    }

    #[test]
    fn at_most_three_sessions_per_source_each_number_once() {
        let session = |id: &str, n: u32| {
            SESSION.replace("tms-web", id).replace("session_number = 1", &format!("session_number = {n}"))
        };
        let three: String = (1..=3).map(|n| session(&format!("tms-{n}"), n)).collect();
        ok(&three);
        let (p, _) = one(&format!("{three}{}", session("tms-4", 4)));
        assert!(
            p.starts_with(
                "traffic_mirror_session \"tms-4\".source: network interface `eni-web` is already the source of 3"
            ),
            "{p}"
        );
        let (p, line) = one(&format!("{}{}", session("tms-a", 5), session("tms-b", 5)));
        assert!(p.contains("session number 5 is already used by traffic mirror session `tms-a`"), "{p}");
        assert_eq!(line, "session_number = 5");
        // Another source may use the same number.
        ok(&format!("{}{}", session("tms-a", 5), session("tms-b", 5).replace("eni-web", "eni-other")));
    }

    #[test]
    fn references_numbers_and_lengths_are_checked() {
        let (p, _) = one(&SESSION.replace("target = \"tmt-ids\"", "target = \"eni-ids\""));
        assert_eq!(
            p,
            "traffic_mirror_session \"tms-web\".target: `eni-ids` is a network interface, not a traffic mirror target"
        );
        let (p, _) = one(&SESSION.replace("filter = \"tmf-web\"", "filter = \"tmf-x\""));
        assert!(p.starts_with("traffic_mirror_session \"tms-web\".filter: `tmf-x` does not exist"), "{p}");
        let (p, _) = one(&SESSION.replace("session_number = 1", "session_number = 32767"));
        assert_eq!(
            p,
            "traffic_mirror_session \"tms-web\".session_number: a session number must be 1 to 32766, got 32767"
        );
        let (p, _) = one(&SESSION.replace("= 77", "= 16777216"));
        assert!(p.contains("virtual_network_id: a virtual network id (24 bits) must be 0 to 16777215"), "{p}");
        let (p, _) = one(&SESSION.replace("= 128", "= 9000"));
        assert!(
            p.contains(
                "packet_length: packet_length (bytes after the VXLAN header, within the VPC's MTU) must be 1 to 8947"
            ),
            "{p}"
        );
        let bad_target = "[[traffic_mirror_target]]\nid = \"tmt-x\"\nnetwork_interface = \"eni-nope\"\n";
        let (p, _) = one(bad_target);
        assert!(p.starts_with("traffic_mirror_target \"tmt-x\".network_interface: `eni-nope` does not exist"), "{p}");
    }

    #[test]
    fn filter_rules_are_checked_and_bounded() {
        let filter = |rules: &str| format!("[[traffic_mirror_filter]]\nid = \"tmf-x\"\negress = [\n{rules}]\n");
        let rule = |n: u32, extra: &str| {
            format!("  {{ rule = {n}, action = \"accept\"{extra}, source_cidr = \"0.0.0.0/0\", destination_cidr = \"0.0.0.0/0\" }},\n")
        };
        let (p, _) = one(&filter(&rule(1, ", protocol = \"icmp\", destination_ports = \"80\"")));
        assert_eq!(p, "traffic_mirror_filter \"tmf-x\".egress[0].destination_ports: destination_ports apply only to protocol tcp or udp (6 or 17)");
        let (p, _) = one(&filter(&(rule(7, "") + &rule(7, ""))));
        assert!(
            p.starts_with("traffic_mirror_filter \"tmf-x\".egress[1].rule: rule number 7 is already used in egress"),
            "{p}"
        );
        let (p, _) = one(&filter(&rule(1, "").replace("\"accept\"", "\"allow\"")));
        assert_eq!(p, "traffic_mirror_filter \"tmf-x\".egress[0].action: `allow` is not a traffic mirror rule action: use accept or reject");
        let (p, _) = one(&filter(&rule(1, "").replace("0.0.0.0/0\" }", "10.0.0.1/8\" }")));
        assert!(
            p.starts_with("traffic_mirror_filter \"tmf-x\".egress[0].destination_cidr: `10.0.0.1/8` has host bits set"),
            "{p}"
        );
        let ten: String = (1..=10).map(|n| rule(n, "")).collect();
        ok(&filter(&ten));
        let (p, _) = one(&filter(&(ten + &rule(11, ""))));
        assert!(p.ends_with("a traffic mirror filter holds at most 10 rules; this one has 11"), "{p}");
        // No rules at all is a valid filter that mirrors nothing.
        let m = ok("[[traffic_mirror_filter]]\nid = \"tmf-none\"\n");
        assert!(m.traffic_mirror_filters[1].ingress.is_empty() && m.traffic_mirror_filters[1].egress.is_empty());
    }

    #[test]
    fn mirror_ids_share_the_lab_wide_id_space() {
        let p = problems("[[traffic_mirror_filter]]\nid = \"eni-web\"\n");
        assert!(p[0].message.starts_with("duplicate id `eni-web`"), "{p:?}");
    }
}
