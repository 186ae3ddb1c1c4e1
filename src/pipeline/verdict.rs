//! A packet's fate ([`Verdict`]), the exhaustive list of reasons a packet is dropped
//! ([`DropReason`]), and the per-ENI counters that the data plane keeps from verdicts.

use crate::model::EniIdx;

/// What becomes of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write the (possibly rewritten) frame to this ENI's TAP.
    Forward(EniIdx),
    /// The frame was rewritten into an answer (an ARP reply): write it back to the ingress port,
    /// with an empty virtio-net header.
    Reply,
    /// The frame was rewritten into an answer of this length (ICMP fragmentation needed, a
    /// TCP RST, a DHCP reply): write it back to the ingress port, with an empty virtio-net
    /// header. An answer longer than the frame it answers (a DHCP reply can be) is in
    /// `Pipeline::answer` instead; the caller copies it into its buffer.
    ReplyWith(usize),
    /// Write the rewritten frame to the emulated internet's TAP.
    ToInternet,
    /// Write the rewritten frame to the service namespace's TAP (instance metadata).
    ToService,
    /// Drop it, for this reason, counted on the sending ENI.
    Drop(DropReason),
    /// Drop it, counted on the ENI that refused it (the receiver's ACL, check or groups).
    DropAt(DropReason, EniIdx),
}

impl Verdict {
    /// The drop reason, if it is a drop.
    pub fn drop_reason(self) -> Option<DropReason> {
        match self {
            Verdict::Drop(r) | Verdict::DropAt(r, _) => Some(r),
            _ => None,
        }
    }
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident = $text:literal, $code:literal,)*) => {
        /// Why a frame was dropped. Every drop names one; each is counted per ENI.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $($(#[$doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// The number of reasons (the length of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// The stable snake_case name shown by `status` and in JSON.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$name => $text,)*
                }
            }

            /// An explanation code in the manner of AWS Reachability Analyzer's.
            pub fn explanation_code(self) -> &'static str {
                match self {
                    $(DropReason::$name => $code,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// The frame is truncated or its headers are invalid.
    Malformed = "malformed", "MALFORMED_PACKET",
    /// Neither ARP nor IPv4 (IPv6 is not supported yet).
    UnsupportedEthertype = "unsupported_ethertype", "UNSUPPORTED_PROTOCOL",
    /// The source MAC is not the sending ENI's.
    SourceMacMismatch = "source_mac_mismatch", "ENI_SOURCE_MAC_MISMATCH",
    /// An ARP packet that is not a request (the fabric answers ARP; instances need not).
    ArpNotRequest = "arp_not_request", "ARP_NOT_REQUEST",
    /// An ARP request for an address that neither the router nor an ENI of the subnet owns.
    ArpUnanswered = "arp_unanswered", "ARP_NO_OWNER",
    /// IPv4 to a broadcast or multicast MAC: a VPC carries neither.
    BroadcastOrMulticast = "broadcast_or_multicast", "BROADCAST_NOT_SUPPORTED",
    /// Unicast to a MAC that is neither the VPC router's nor an ENI's in the same subnet.
    UnknownDestinationMac = "unknown_destination_mac", "UNKNOWN_DESTINATION_MAC",
    /// A blackhole route (given as such, or whose target is unusable) matched.
    Blackhole = "blackhole", "BLACKHOLE_ROUTE",
    /// No route: the destination is outside every route of the subnet's table.
    NoRoute = "no_route", "NO_ROUTE_TO_DESTINATION",
    /// The destination is inside the VPC but no ENI owns it.
    NoSuchAddress = "no_such_address", "NO_ENI_FOR_DESTINATION",
    /// To the VPC router's own address (base + 1 of a subnet): it answers ping from its own
    /// subnet and nothing else.
    RouterAddress = "router_address", "VPC_ROUTER_ADDRESS",
    /// The ENI owning the destination is not attached to an instance.
    DestinationNotAttached = "destination_not_attached", "ENI_NOT_ATTACHED",
    /// The sending or receiving ENI's instance is stopped: its ENIs stay attached but carry
    /// nothing (counted on that ENI).
    InstanceStopped = "instance_stopped", "INSTANCE_STOPPED",
    /// The destination TAP did not accept the frame (its queue was full or it is gone).
    TxFailed = "tx_failed", "DELIVERY_FAILED",
    /// The ENI's TAP failed to hand a frame over (the kernel dropped it).
    RxError = "rx_error", "RECEIVE_FAILED",
    /// An ARP packet claiming an address or MAC that is not the sending ENI's.
    ArpSpoof = "arp_spoof", "ENI_ARP_SPOOF",
    /// Source/destination check: the source IP is not one of the sender's private IPs.
    SourceCheck = "source_check", "ENI_SOURCE_DEST_CHECK",
    /// Source/destination check: the destination IP is not one of the receiver's private IPs.
    DestinationCheck = "destination_check", "ENI_SOURCE_DEST_CHECK",
    /// No rule of the sender's security groups allows the new flow out.
    SecurityGroupEgress = "security_group_egress", "ENI_SG_RULES_MISMATCH",
    /// No rule of the receiver's security groups allows the new flow in.
    SecurityGroupIngress = "security_group_ingress", "ENI_SG_RULES_MISMATCH",
    /// The sender's subnet's network ACL denies the packet out.
    NetworkAclEgress = "network_acl_egress", "NACL_DENY_RULE",
    /// The receiver's subnet's network ACL denies the packet in.
    NetworkAclIngress = "network_acl_ingress", "NACL_DENY_RULE",
    /// Towards the internet gateway from an address without an Elastic IP (or a private NAT
    /// gateway).
    NoPublicAddress = "no_public_address", "IGW_NO_PUBLIC_ADDRESS",
    /// Larger than the internet's MTU without DF (vpclab does not fragment).
    MtuExceeded = "mtu_exceeded", "MTU_EXCEEDED",
    /// A protocol a NAT gateway does not translate (TCP, UDP and ICMP echo only).
    NatUnsupportedProtocol = "nat_unsupported_protocol", "NAT_UNSUPPORTED_PROTOCOL",
    /// A fragment at a NAT gateway.
    NatFragment = "nat_fragment", "NAT_FRAGMENT",
    /// No free source port for the destination (AWS's `ErrorPortAllocation`).
    NatPortAllocation = "nat_port_allocation", "NAT_ERROR_PORT_ALLOCATION",
    /// Inbound to a NAT gateway's address answering no translation (unsolicited).
    NatNoMapping = "nat_no_translation", "NAT_UNSOLICITED_INBOUND",
    /// The ENI's connection table is full (AWS's `conntrack_allowance_exceeded`).
    ConntrackFull = "conntrack_allowance_exceeded", "CONNTRACK_ALLOWANCE_EXCEEDED",
    /// A DHCP request the fabric could not read (truncated, not a BOOTREQUEST, no message type).
    DhcpMalformed = "dhcp_malformed", "DHCP_MALFORMED",
    /// A DHCP request whose chaddr (or source MAC) is not the sending ENI's MAC.
    DhcpSpoof = "dhcp_spoof", "ENI_DHCP_SPOOF",
    /// A DHCP message the server does not answer (RELEASE, DECLINE, a REQUEST for another server).
    DhcpUnanswered = "dhcp_unanswered", "DHCP_NO_REPLY",
    /// A packet to the Amazon DNS server of a VPC whose `enable_dns_support` is off.
    DnsDisabled = "dns_disabled", "DNS_RESOLUTION_DISABLED",
    /// Over the ENI's 1024 packets a second to the Amazon DNS server (AWS counts these in the
    /// ENA driver's `linklocal_allowance_exceeded`).
    DnsRateExceeded = "linklocal_allowance_exceeded", "LINKLOCAL_ALLOWANCE_EXCEEDED",
    /// A packet to the DNS server too long or too short to hold a DNS header.
    DnsMalformed = "dns_malformed", "DNS_MALFORMED",
    /// A packet to the DNS server that is not a UDP query to port 53 (TCP, other ports,
    /// fragments, DNS responses): unanswered.
    DnsUnanswered = "dns_unanswered", "DNS_NO_REPLY",
    /// To 169.254.169.254 but not TCP port 80, the only service there.
    MetadataUnsupported = "metadata_unsupported", "METADATA_UNSUPPORTED",
    /// To the metadata service from an address that is not a private IP of the sending ENI, or
    /// from an ENI or address slot beyond what the service's address pool can name.
    MetadataUnknownSource = "metadata_unknown_source", "METADATA_UNKNOWN_SOURCE",
    /// From the metadata service to no ENI that can take it (gone, detached or stopped since
    /// it asked; counted on the service port).
    MetadataUnknownClient = "metadata_unknown_client", "METADATA_UNKNOWN_CLIENT",
    /// With several workers: a frame read by one worker could not be handed to its owner (the
    /// ring between them was full, or a configuration swap came in between).
    HandoffLost = "worker_handoff_lost", "WORKER_HANDOFF_LOST",
}

/// Counters of one ENI, as seen from the fabric: `rx` is what the instance sent into the fabric,
/// `tx` what the fabric delivered to the instance. A TSO superframe counts as one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EniCounters {
    /// Frames received from the instance.
    pub rx_packets: u64,
    /// Bytes received from the instance (Ethernet frames, no virtio header).
    pub rx_bytes: u64,
    /// Frames delivered to the instance.
    pub tx_packets: u64,
    /// Bytes delivered to the instance.
    pub tx_bytes: u64,
    /// Drops of frames received from this ENI (and `TxFailed` towards it), by reason.
    pub drops: [u64; DropReason::COUNT],
}

impl Default for EniCounters {
    fn default() -> Self {
        EniCounters { rx_packets: 0, rx_bytes: 0, tx_packets: 0, tx_bytes: 0, drops: [0; DropReason::COUNT] }
    }
}

impl EniCounters {
    /// Counts one drop.
    pub fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// The drop count for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}
