//! The wire packets an offloaded TCP superframe becomes. An instance's kernel hands the TAP one
//! frame of up to 64 KiB (TSO) with the segment size in the virtio-net header; on EC2 the
//! device cuts it into packets of that many payload bytes before anything in the VPC sees
//! them. Where vpclab must show or count those packets (mirror copies, flow log counts), it
//! cuts the same way Linux's TSO does: each segment gets the headers, its slice of the payload,
//! an IP total length and identification of its own (identification + segment number), the
//! sequence number of its first byte, FIN and PSH on the last segment only, CWR on the first
//! only, and complete IP and TCP checksums.

use super::rewrite::{checksum, fold, pseudo_header_sum, sum};
use super::{IpProto, ETH_HEADER_LEN};

const TCP_FLAG_FIN: u8 = 0x01;
const TCP_FLAG_PSH: u8 = 0x08;
const TCP_FLAG_CWR: u8 = 0x80;

/// A TCP/IPv4 superframe's layout, read once.
#[derive(Clone, Copy, Debug)]
pub struct Superframe<'a> {
    frame: &'a [u8],
    /// Where the TCP header starts.
    tcp_at: usize,
    /// Where the payload starts (the end of the TCP header).
    payload_at: usize,
    /// Where the IP packet ends.
    end: usize,
    /// Payload bytes per segment.
    mss: usize,
}

impl<'a> Superframe<'a> {
    /// `frame` (Ethernet, IPv4, TCP) cut into `mss`-byte segments; `None` if it is not a
    /// complete unfragmented TCP/IPv4 packet with a payload, or `mss` is 0.
    pub fn new(frame: &'a [u8], mss: u16) -> Option<Self> {
        let ip = frame.get(ETH_HEADER_LEN..)?;
        let ihl = usize::from(*ip.first()? & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
        let fragmented = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff != 0;
        if *ip.get(9)? != IpProto::TCP.0 || fragmented || ihl < 20 || total > ip.len() || mss == 0 {
            return None;
        }
        let tcp_at = ETH_HEADER_LEN + ihl;
        let doff = usize::from(*frame.get(tcp_at + 12)? >> 4) * 4;
        let payload_at = tcp_at + doff;
        let end = ETH_HEADER_LEN + total;
        if doff < 20 || payload_at >= end {
            return None;
        }
        Some(Superframe { frame, tcp_at, payload_at, end, mss: usize::from(mss) })
    }

    /// How many wire packets it becomes.
    pub fn count(&self) -> usize {
        (self.end - self.payload_at).div_ceil(self.mss)
    }

    /// The IP bytes of all its wire packets together (each repeats the headers).
    pub fn ip_bytes(&self) -> u64 {
        let headers = self.payload_at - ETH_HEADER_LEN;
        ((self.end - self.payload_at) + self.count() * headers) as u64
    }

    /// Writes segment `k` (0-based, below [`count`](Self::count)) as a whole frame to `out`.
    pub fn write(&self, k: usize, out: &mut Vec<u8>) {
        let start = self.payload_at + k * self.mss;
        let stop = (start + self.mss).min(self.end);
        let (first, last) = (k == 0, stop == self.end);
        out.clear();
        out.extend_from_slice(&self.frame[..self.payload_at]);
        out.extend_from_slice(&self.frame[start..stop]);
        let (ip, tcp) = (ETH_HEADER_LEN, self.tcp_at);
        let ip_len = (out.len() - ETH_HEADER_LEN) as u16;
        out[ip + 2..ip + 4].copy_from_slice(&ip_len.to_be_bytes());
        let id = u16::from_be_bytes([out[ip + 4], out[ip + 5]]).wrapping_add(k as u16);
        out[ip + 4..ip + 6].copy_from_slice(&id.to_be_bytes());
        out[ip + 10..ip + 12].fill(0);
        let ip_sum = checksum(&out[ip..tcp]);
        out[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let seq = u32::from_be_bytes([out[tcp + 4], out[tcp + 5], out[tcp + 6], out[tcp + 7]]);
        out[tcp + 4..tcp + 8].copy_from_slice(&seq.wrapping_add((k * self.mss) as u32).to_be_bytes());
        if !last {
            out[tcp + 13] &= !(TCP_FLAG_FIN | TCP_FLAG_PSH);
        }
        if !first {
            out[tcp + 13] &= !TCP_FLAG_CWR;
        }
        out[tcp + 16..tcp + 18].fill(0);
        let src = std::net::Ipv4Addr::new(out[ip + 12], out[ip + 13], out[ip + 14], out[ip + 15]);
        let dst = std::net::Ipv4Addr::new(out[ip + 16], out[ip + 17], out[ip + 18], out[ip + 19]);
        let l4_len = (out.len() - tcp) as u16;
        let tcp_sum = !fold(sum(&out[tcp..], pseudo_header_sum(src, dst, IpProto::TCP, l4_len)));
        out[tcp + 16..tcp + 18].copy_from_slice(&tcp_sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mac;
    use crate::packet::{self, build, rewrite, L3Meta};
    use std::net::Ipv4Addr;

    fn superframe(payload: usize, flags: u8) -> Vec<u8> {
        let (a, b) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 2, 10));
        let data: Vec<u8> = (0..payload).map(|i| i as u8).collect();
        let ack = crate::packet::TcpFlags::ACK;
        let mut f = build::tcp(Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]), a, b, 40000, 80, ack, &data);
        // The identification, sequence number and flags the segments start from.
        f[ETH_HEADER_LEN + 4..ETH_HEADER_LEN + 6].copy_from_slice(&100u16.to_be_bytes());
        f[ETH_HEADER_LEN + 24..ETH_HEADER_LEN + 28].copy_from_slice(&1000u32.to_be_bytes());
        f[ETH_HEADER_LEN + 33] = flags;
        f
    }

    #[test]
    fn a_superframe_becomes_mss_sized_packets_with_their_own_headers() {
        let f = superframe(3000, TCP_FLAG_PSH | TCP_FLAG_FIN | TCP_FLAG_CWR | 0x10);
        let s = Superframe::new(&f, 1448).expect("a TCP superframe");
        assert_eq!(s.count(), 3);
        assert_eq!(s.ip_bytes(), 3000 + 3 * 40);
        let mut out = Vec::new();
        let mut payload = Vec::new();
        for k in 0..3 {
            s.write(k, &mut out);
            assert!(rewrite::verify(&out), "segment {k}: IP and TCP checksums complete");
            let meta = packet::parse(&out).expect("parses");
            let L3Meta::Ipv4(ip) = meta.l3 else { panic!("IPv4") };
            let len = if k < 2 { 1448 } else { 3000 - 2 * 1448 };
            assert_eq!(usize::from(ip.total_len), 40 + len);
            assert_eq!(u16::from_be_bytes([out[18], out[19]]), 100 + k as u16, "identification");
            assert_eq!(&out[38..42], &(1000 + (k * 1448) as u32).to_be_bytes(), "sequence number");
            let flags = out[ETH_HEADER_LEN + 33];
            assert_eq!(flags & (TCP_FLAG_FIN | TCP_FLAG_PSH) != 0, k == 2, "FIN and PSH on the last");
            assert_eq!(flags & TCP_FLAG_CWR != 0, k == 0, "CWR on the first");
            payload.extend_from_slice(&out[54..]);
        }
        assert_eq!(payload, &f[54..], "the payload, in order, once");
    }

    #[test]
    fn what_is_not_a_tcp_superframe_is_not_cut() {
        assert!(Superframe::new(&superframe(0, 0x10), 1448).is_none(), "no payload");
        assert!(Superframe::new(&superframe(100, 0x10), 0).is_none(), "no segment size");
        let (a, b) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 2, 10));
        let udp = build::udp(Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]), a, b, 1, 2, &[0; 100]);
        assert!(Superframe::new(&udp, 50).is_none(), "not TCP");
        let f = superframe(100, 0x10);
        assert!(Superframe::new(&f[..f.len() - 1], 50).is_none(), "shorter than its IP length says");
        let one = Superframe::new(&f, 1448).unwrap();
        assert_eq!((one.count(), one.ip_bytes()), (1, 140), "a small frame is one packet");
    }
}
