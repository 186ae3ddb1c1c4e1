//! One blocking `NETLINK_ROUTE` socket and the few rtnetlink requests vpclab needs.
//!
//! Requests are typed messages of `netlink-packet-route`; replies are walked at the level of raw
//! netlink headers, so an attribute this crate version does not know can never make a reply
//! unreadable. Each request carries `NLM_F_ACK` and a fresh sequence number; replies with another
//! sequence number (left over from an earlier, failed exchange) are skipped.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED,
    NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

use super::{errno_of, open_netns, NetnsError};
use crate::model::{Cidr, Mac};

/// `IFNAMSIZ` less the terminating NUL.
const IFNAME_MAX: usize = 15;
/// `NLMSGERR_ATTR_MSG`: the extended-ACK attribute holding the kernel's error text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `RT_TABLE_UNSPEC`: what the one-byte table field holds when the table id needs `RTA_TABLE`.
const RT_TABLE_UNSPEC: u8 = 0;

/// What [`Netlink::set_link`] applies to an interface; `None` leaves a property unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkConfig {
    /// The hardware address.
    pub mac: Option<Mac>,
    /// The MTU (AWS: 9001 inside a VPC).
    pub mtu: Option<u32>,
    /// The transmit queue length (raised on TAPs so a burst is not dropped in the kernel).
    pub txqueuelen: Option<u32>,
    /// The administrative state after the call: `true` up, `false` down. Always applied.
    pub up: bool,
}

/// An IPv4 route for [`Netlink::add_route`], like
/// `ip route add <destination> [via <gateway>] dev <ifname> [scope link] [src <source>] table <table>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// The routing table id; 254 is `main`.
    pub table: u32,
    /// The destination prefix; `0.0.0.0/0` is the default route.
    pub destination: Cidr,
    /// The next hop, if not directly connected.
    pub gateway: Option<Ipv4Addr>,
    /// The output interface.
    pub ifname: String,
    /// `scope link` (destination directly reachable on the link) instead of `scope global`.
    pub scope_link: bool,
    /// The preferred source address (`src`).
    pub source: Option<Ipv4Addr>,
}

/// One `NETLINK_ROUTE` socket, bound for its whole life to the namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
    /// For error messages: "namespace `lab-web`" or "the current namespace".
    netns: String,
}

/// A reply message: its netlink type and payload.
type Reply = (u16, Vec<u8>);

impl Netlink {
    /// Opens a socket in the calling thread's current namespace.
    pub fn open() -> Result<Netlink, NetnsError> {
        Netlink::open_labelled("the current namespace".into())
    }

    /// Opens a socket inside the named namespace. The socket is created on a scoped thread that
    /// entered the namespace; it stays bound there whichever thread uses it afterwards.
    pub fn open_in(netns: &str) -> Result<Netlink, NetnsError> {
        super::run_in_netns(netns, || Netlink::open_labelled(format!("namespace `{netns}`")))?
    }

    /// Opens a socket in the calling thread's current namespace, named `netns` in its errors
    /// (for a thread inside a namespace, such as the closure of [`super::create_netns_with`]).
    pub fn open_labelled(netns: String) -> Result<Netlink, NetnsError> {
        let op = |what: &str| format!("{what} a netlink socket in {netns}");
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| sys_err(op("open"), &e))?;
        socket.bind_auto().map_err(|e| sys_err(op("bind"), &e))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(|e| sys_err(op("connect"), &e))?;
        // Both are optional comforts (error text, short ACKs); old kernels refuse them harmlessly.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Netlink { socket, seq: 0, netns })
    }

    /// The interface index of `ifname`, or `None` if there is no such interface here.
    pub fn link_index(&mut self, ifname: &str) -> Result<Option<u32>, NetnsError> {
        check_ifname(ifname)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(ifname.into()));
        let op = format!("look up interface {ifname}");
        let replies = match self.request(RouteNetlinkMessage::GetLink(msg), 0, &op) {
            Ok(r) => r,
            Err(NetnsError::Netlink { errno: Errno::ENODEV, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let payload = replies
            .iter()
            .find(|(ty, _)| *ty == libc::RTM_NEWLINK)
            .map(|(_, p)| p)
            .ok_or_else(|| self.protocol(&op, "no RTM_NEWLINK in the reply"))?;
        // struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change; }
        let index = payload
            .get(4..8)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| self.protocol(&op, "RTM_NEWLINK shorter than struct ifinfomsg"))?;
        Ok(Some(index))
    }

    /// The kernel's drop counters of `ifname` (`rx_dropped`, `tx_dropped` of its
    /// `rtnl_link_stats64`), or `None` if there is no such interface here. On a TAP, `tx_dropped`
    /// counts what the instance sent that the kernel dropped before the forwarder read it (its
    /// queue was full); `rx_dropped`, what the forwarder wrote that the instance's stack dropped.
    pub fn link_drops(&mut self, ifname: &str) -> Result<Option<(u64, u64)>, NetnsError> {
        check_ifname(ifname)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(ifname.into()));
        let op = format!("read the counters of {ifname}");
        let replies = match self.request(RouteNetlinkMessage::GetLink(msg), 0, &op) {
            Ok(r) => r,
            Err(NetnsError::Netlink { errno: Errno::ENODEV, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some((_, payload)) = replies.iter().find(|(ty, _)| *ty == libc::RTM_NEWLINK) else {
            return Err(self.protocol(&op, "no RTM_NEWLINK in the reply"));
        };
        Ok(stats64_drops(payload))
    }

    /// The index of `ifname`, or [`NetnsError::NoSuchLink`] naming `op`.
    fn require_index(&mut self, ifname: &str, op: &str) -> Result<u32, NetnsError> {
        self.link_index(ifname)?.ok_or_else(|| NetnsError::NoSuchLink {
            netns: self.netns.clone(),
            ifname: ifname.into(),
            op: op.into(),
        })
    }

    /// Moves `ifname` into `target_netns` and renames it `new_name` there, in one request
    /// (`IFLA_NET_NS_FD` + `IFLA_IFNAME`), so the name may already be taken where it comes from.
    /// File descriptors open on the device (a TAP's) keep working after the move.
    pub fn move_link(&mut self, ifname: &str, target_netns: &str, new_name: &str) -> Result<(), NetnsError> {
        check_ifname(new_name)?;
        let op = format!("move {ifname} to namespace `{target_netns}` as {new_name}");
        let index = self.require_index(ifname, &op)?;
        let target = open_netns(target_netns)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::NetNsFd(target.as_raw_fd()));
        msg.attributes.push(LinkAttribute::IfName(new_name.into()));
        // `target` stays open until the kernel has answered: the request refers to it by number.
        self.request(RouteNetlinkMessage::SetLink(msg), 0, &op)?;
        drop(target);
        Ok(())
    }

    /// Moves `ifname` into the namespace `target` refers to (an open `/proc/<pid>/ns/net` or
    /// `/run/netns/<name>`), renamed `new_name` there: how a detached ENI's TAP goes back to the
    /// host namespace. The kernel takes the link down and drops its addresses and routes.
    pub fn move_link_to(&mut self, ifname: &str, target: &std::fs::File, new_name: &str) -> Result<(), NetnsError> {
        check_ifname(new_name)?;
        let op = format!("move {ifname} out of {} as {new_name}", self.netns);
        let index = self.require_index(ifname, &op)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::NetNsFd(target.as_raw_fd()));
        msg.attributes.push(LinkAttribute::IfName(new_name.into()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0, &op)?;
        Ok(())
    }

    /// Applies `cfg` to `ifname` in one `RTM_SETLINK` (the kernel sets the address and MTU
    /// before it changes the flags).
    pub fn set_link(&mut self, ifname: &str, cfg: &LinkConfig) -> Result<(), NetnsError> {
        let mut op = format!("configure {ifname} (");
        if let Some(mac) = cfg.mac {
            op += &format!("mac {mac}, ");
        }
        if let Some(mtu) = cfg.mtu {
            op += &format!("mtu {mtu}, ");
        }
        if let Some(q) = cfg.txqueuelen {
            op += &format!("txqueuelen {q}, ");
        }
        op += if cfg.up { "up)" } else { "down)" };
        let index = self.require_index(ifname, &op)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = if cfg.up { LinkFlags::Up } else { LinkFlags::empty() };
        msg.header.change_mask = LinkFlags::Up;
        if let Some(mac) = cfg.mac {
            msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(mtu) = cfg.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(q) = cfg.txqueuelen {
            msg.attributes.push(LinkAttribute::TxQueueLen(q));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), 0, &op)?;
        Ok(())
    }

    /// Adds `ip/prefix` to `ifname` (`ip addr add ip/prefix brd + dev ifname`). The kernel adds
    /// the prefix route with it. An address that is already there is an error (`EEXIST`).
    pub fn add_address(&mut self, ifname: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), NetnsError> {
        let op = format!("add address {ip}/{prefix} to {ifname}");
        let index = self.require_index(ifname, &op)?;
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        if prefix < 31 {
            let cidr = Cidr::new(ip, prefix);
            msg.attributes.push(AddressAttribute::Broadcast(cidr.last()));
        }
        self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL, &op)?;
        Ok(())
    }

    /// Removes `ip/prefix` from `ifname` (`ip addr del`). An address that is not there is not an
    /// error.
    pub fn del_address(&mut self, ifname: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), NetnsError> {
        let op = format!("delete address {ip}/{prefix} from {ifname}");
        let index = self.require_index(ifname, &op)?;
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        match self.request(RouteNetlinkMessage::DelAddress(msg), 0, &op) {
            Ok(_) | Err(NetnsError::Netlink { errno: Errno::EADDRNOTAVAIL, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds an IPv4 unicast route (protocol `boot`, as `ip route add` does). A route with the
    /// same destination already in the table is an error (`EEXIST`).
    pub fn add_route(&mut self, route: &RouteSpec) -> Result<(), NetnsError> {
        let op = route_op(route);
        let oif = self.require_index(&route.ifname, &op)?;
        let msg = route_message(route, oif);
        self.request(RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_EXCL, &op)?;
        Ok(())
    }

    /// Adds a policy rule `from <from>/32 lookup <table> pref <priority>`. The same rule twice
    /// is an error (`EEXIST`).
    pub fn add_rule(&mut self, from: Ipv4Addr, table: u32, priority: u32) -> Result<(), NetnsError> {
        let op = format!("add rule from {from}/32 lookup {table} pref {priority}");
        let msg = rule_message(from, table, priority);
        self.request(RouteNetlinkMessage::NewRule(msg), NLM_F_CREATE | NLM_F_EXCL, &op)?;
        Ok(())
    }

    /// Deletes the rule `from <from>/32 lookup <table> pref <priority>`. A rule that is not there
    /// is not an error.
    pub fn del_rule(&mut self, from: Ipv4Addr, table: u32, priority: u32) -> Result<(), NetnsError> {
        let op = format!("delete rule from {from}/32 lookup {table} pref {priority}");
        let msg = rule_message(from, table, priority);
        match self.request(RouteNetlinkMessage::DelRule(msg), 0, &op) {
            Ok(_) | Err(NetnsError::Netlink { errno: Errno::ENOENT, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes `ifname`. An interface that is not there is not an error.
    pub fn delete_link(&mut self, ifname: &str) -> Result<(), NetnsError> {
        let op = format!("delete link {ifname}");
        let Some(index) = self.link_index(ifname)? else {
            return Ok(());
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(msg), 0, &op) {
            // Gone between the lookup and the delete: the wanted outcome all the same.
            Ok(_) | Err(NetnsError::Netlink { errno: Errno::ENODEV, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn protocol(&self, op: &str, detail: impl Into<String>) -> NetnsError {
        NetnsError::Protocol { netns: self.netns.clone(), op: op.into(), detail: detail.into() }
    }

    /// Sends one request with `NLM_F_REQUEST | NLM_F_ACK | flags` and collects the replies up to
    /// the acknowledgement. A negative acknowledgement becomes [`NetnsError::Netlink`].
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<Vec<Reply>, NetnsError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut nl = NetlinkMessage::from(msg);
        nl.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        nl.header.sequence_number = seq;
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        loop {
            match self.socket.send(&buf, 0) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(sys_err(format!("{op}: send to netlink in {}", self.netns), &e)),
            }
        }
        let mut replies = Vec::new();
        loop {
            let data = match self.socket.recv_from_full() {
                Ok((data, _)) => data,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(sys_err(format!("{op}: receive from netlink in {}", self.netns), &e)),
            };
            let mut rest = &data[..];
            while !rest.is_empty() {
                let msg = NetlinkBuffer::new_checked(rest).map_err(|e| self.protocol(op, e.to_string()))?;
                let len = msg.length() as usize;
                let (ty, msg_flags, msg_seq) = (msg.message_type(), msg.flags(), msg.sequence_number());
                let payload = msg.payload();
                rest = rest.get(align4(len)..).unwrap_or(&[]);
                if msg_seq != seq {
                    continue;
                }
                match ty {
                    NLMSG_NOOP => {}
                    NLMSG_DONE => return Ok(replies),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .ok_or_else(|| self.protocol(op, "NLMSG_ERROR without an error code"))?;
                        if code == 0 {
                            return Ok(replies);
                        }
                        return Err(NetnsError::Netlink {
                            netns: self.netns.clone(),
                            op: op.into(),
                            errno: Errno::from_raw(-code),
                            message: ext_ack_message(payload, msg_flags),
                        });
                    }
                    _ => replies.push((ty, payload.to_vec())),
                }
            }
        }
    }
}

/// `rx_dropped` and `tx_dropped` from the `IFLA_STATS64` attribute of an `RTM_NEWLINK` payload
/// (a 16-byte `ifinfomsg`, then attributes).
fn stats64_drops(payload: &[u8]) -> Option<(u64, u64)> {
    const IFLA_STATS64: u16 = 23;
    let mut attrs = payload.get(16..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == IFLA_STATS64 {
            let field = |i: usize| attrs.get(4 + 8 * i..12 + 8 * i).map(|b| u64::from_ne_bytes(b.try_into().unwrap()));
            return Some((field(6)?, field(7)?));
        }
        attrs = attrs.get(align4(len)..).unwrap_or(&[]);
    }
    None
}

fn sys_err(op: String, e: &std::io::Error) -> NetnsError {
    NetnsError::Sys { op, errno: errno_of(e) }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn check_ifname(name: &str) -> Result<(), NetnsError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > IFNAME_MAX {
        "longer than 15 bytes (IFNAMSIZ)"
    } else if name.contains(['/', ' ', '\0', ':']) || name == "." || name == ".." {
        "contains `/`, `:`, a space or NUL, or is `.`/`..`"
    } else {
        return Ok(());
    };
    Err(NetnsError::InvalidName { what: "interface name", name: name.into(), reason })
}

/// The one-byte table field of `rtmsg`/`fib_rule_hdr`: the id if it fits, else unspecified and
/// the full id goes in the `*_TABLE` attribute (which is always sent).
fn table_byte(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(RT_TABLE_UNSPEC)
}

fn route_op(r: &RouteSpec) -> String {
    let mut op = format!("add route {}", r.destination);
    if let Some(gw) = r.gateway {
        op += &format!(" via {gw}");
    }
    op += &format!(" dev {}", r.ifname);
    if r.scope_link {
        op += " scope link";
    }
    if let Some(src) = r.source {
        op += &format!(" src {src}");
    }
    op + &format!(" table {}", r.table)
}

fn route_message(r: &RouteSpec, oif: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header = RouteHeader {
        address_family: AddressFamily::Inet,
        destination_prefix_length: r.destination.prefix,
        table: table_byte(r.table),
        protocol: RouteProtocol::Boot,
        scope: if r.scope_link { RouteScope::Link } else { RouteScope::Universe },
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    if r.destination.prefix > 0 {
        msg.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(r.destination.addr)));
    }
    if let Some(gw) = r.gateway {
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    }
    msg.attributes.push(RouteAttribute::Oif(oif));
    if let Some(src) = r.source {
        msg.attributes.push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
    }
    msg.attributes.push(RouteAttribute::Table(r.table));
    msg
}

fn rule_message(from: Ipv4Addr, table: u32, priority: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.src_len = 32;
    msg.header.table = table_byte(table);
    msg.header.action = RuleAction::ToTable;
    msg.attributes.push(RuleAttribute::Source(IpAddr::V4(from)));
    msg.attributes.push(RuleAttribute::Table(table));
    msg.attributes.push(RuleAttribute::Priority(priority));
    msg
}

/// The kernel's extended-ACK text from an `NLMSG_ERROR` payload, if any. The payload is the
/// error code, the offending request (only its header when `NLM_F_CAPPED`), then attributes
/// when `NLM_F_ACK_TLVS` is set.
fn ext_ack_message(payload: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let b = payload.get(4..8)?;
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize
    };
    let mut tlvs = payload.get(4 + align4(request_len)..)?;
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let ty = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if ty == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or(text);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = tlvs.get(align4(len)..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn interface_names_follow_ifnamsiz() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok());
        assert!(check_ifname("abcdefghijklmnop").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
    }

    #[test]
    fn large_table_ids_go_in_the_attribute_only() {
        assert_eq!(table_byte(254), 254);
        assert_eq!(table_byte(1000), RT_TABLE_UNSPEC);
        let route = RouteSpec {
            table: 1000,
            destination: "0.0.0.0/0".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 0, 1, 1)),
            ifname: "eth0".into(),
            scope_link: false,
            source: None,
        };
        let msg = route_message(&route, 7);
        assert_eq!(msg.header.table, RT_TABLE_UNSPEC);
        assert!(msg.attributes.contains(&RouteAttribute::Table(1000)));
        // A default route carries no RTA_DST, like `ip route add default`.
        assert!(!msg.attributes.iter().any(|a| matches!(a, RouteAttribute::Destination(_))));
        assert_eq!(route_op(&route), "add route 0.0.0.0/0 via 10.0.1.1 dev eth0 table 1000");
    }

    #[test]
    fn rule_message_is_a_fib_rule_hdr_with_attributes() {
        let msg = rule_message(Ipv4Addr::new(10, 0, 1, 11), 100, 1000);
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        // struct fib_rule_hdr { family, dst_len, src_len, tos, table, res1, res2, action; u32 flags }
        assert_eq!(buf[0], libc::AF_INET as u8);
        assert_eq!(buf[2], 32);
        assert_eq!(buf[4], 100);
        assert_eq!(buf[7], 1, "FR_ACT_TO_TBL");
    }

    #[test]
    fn extended_ack_text_is_found_after_a_capped_request() {
        let mut payload = (-22i32).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]); // the request's nlmsghdr
        let text = b"Invalid prefix\0";
        let len = 4 + text.len();
        payload.extend_from_slice(&(len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let got = ext_ack_message(&payload, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        assert_eq!(got.as_deref(), Some("Invalid prefix"));
        assert_eq!(ext_ack_message(&payload, NLM_F_CAPPED), None);
    }
}
