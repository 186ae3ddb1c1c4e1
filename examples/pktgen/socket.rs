//! The generator's I/O: what to send with (addresses from the namespace's own tables), the raw
//! packet socket, and the two ways of handing it frames in batches.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::frame::{Endpoints, PortStepper, Template};

/// What one call, or a whole run, sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    /// Frames the kernel took.
    pub sent: u64,
    /// Frames the kernel refused (`ENOBUFS`: the device's queue was full); they are not retried.
    pub refused: u64,
}

/// The interface's MAC, its first IPv4 address, and the next hop's MAC for `dst`.
pub fn resolve(dev: &str, dst: Ipv4Addr) -> anyhow::Result<Endpoints> {
    let src_mac =
        parse_mac(read_sys(dev, "address")?.trim()).ok_or_else(|| anyhow!("{dev} has no Ethernet address"))?;
    let src = nix::ifaddrs::getifaddrs()?
        .filter(|a| a.interface_name == dev)
        .find_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|s| s.ip())))
        .ok_or_else(|| anyhow!("{dev} has no IPv4 address"))?;
    let hop = next_hop(dev, dst)?;
    let dst_mac = neighbour(dev, hop, dst)?;
    Ok(Endpoints { src_mac, dst_mac, src, dst })
}

fn read_sys(dev: &str, what: &str) -> anyhow::Result<String> {
    let path = format!("/sys/class/net/{dev}/{what}");
    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
}

/// The interface's `tx_dropped` counter: frames it took and could not queue.
pub fn tx_dropped(dev: &str) -> anyhow::Result<u64> {
    let text = read_sys(dev, "statistics/tx_dropped")?;
    text.trim().parse().with_context(|| format!("{dev}'s tx_dropped: `{}`", text.trim()))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The next hop for `dst` out of `dev` by the main table (`/proc/net/route`, longest prefix):
/// its gateway, or `dst` itself on a directly connected route.
fn next_hop(dev: &str, dst: Ipv4Addr) -> anyhow::Result<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").context("reading /proc/net/route")?;
    // Columns: Iface Destination Gateway Flags RefCnt Use Metric Mask ..., addresses as
    // little-endian hex (the kernel prints the in-memory network-order u32).
    let addr = |hex: &str| u32::from_str_radix(hex, 16).ok().map(|v| Ipv4Addr::from(v.swap_bytes()));
    let mut best: Option<(u32, Ipv4Addr)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0] != dev {
            continue;
        }
        let (Some(net), Some(gw), Some(mask)) = (addr(f[1]), addr(f[2]), addr(f[7])) else { continue };
        let (net, mask) = (u32::from(net), u32::from(mask));
        if u32::from(dst) & mask == net && best.is_none_or(|(m, _)| mask.count_ones() > m) {
            best = Some((mask.count_ones(), if gw.is_unspecified() { dst } else { gw }));
        }
    }
    best.map(|(_, hop)| hop).ok_or_else(|| anyhow!("no route to {dst} out of {dev}"))
}

/// The MAC of `hop` on `dev` from the neighbour table; if it is not there, one UDP datagram to
/// `dst` (port 9, discard) makes the kernel resolve it, and the table is read again for up to 2 s.
fn neighbour(dev: &str, hop: Ipv4Addr, dst: Ipv4Addr) -> anyhow::Result<[u8; 6]> {
    let lookup = || -> anyhow::Result<Option<[u8; 6]>> {
        let arp = std::fs::read_to_string("/proc/net/arp").context("reading /proc/net/arp")?;
        // Columns: IP address, HW type, Flags (0x2: complete), HW address, Mask, Device.
        Ok(arp.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let complete = f.get(2).and_then(|x| u32::from_str_radix(x.trim_start_matches("0x"), 16).ok());
            (f.len() >= 6 && f[5] == dev && f[0].parse() == Ok(hop) && complete.is_some_and(|c| c & 2 != 0))
                .then(|| parse_mac(f[3]))
                .flatten()
        }))
    };
    if let Some(mac) = lookup()? {
        return Ok(mac);
    }
    let probe = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket to resolve the next hop")?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        // Resent every 100 ms: the kernel drops the datagram queued behind an unanswered ARP.
        let _ = probe.send_to(b"pktgen: resolving the next hop", (dst, 9));
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(10));
            if let Some(mac) = lookup()? {
                return Ok(mac);
            }
        }
    }
    bail!("{hop} on {dev} did not resolve (no ARP reply in 2 s)")
}

/// An `AF_PACKET` raw socket bound to one interface, sending only: it is opened with protocol 0,
/// so the kernel hands it no received frames.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket on `dev`; with `qdisc_bypass`, frames skip the queueing discipline.
    pub fn open(dev: &str, qdisc_bypass: bool) -> anyhow::Result<PacketSocket> {
        let ifindex = nix::net::if_::if_nametoindex(dev).with_context(|| format!("no interface {dev}"))?;
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("socket(AF_PACKET, SOCK_RAW)");
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned and nothing else owns.
        let sock = PacketSocket { fd: unsafe { OwnedFd::from_raw_fd(raw) } };
        // SAFETY: sockaddr_ll is plain data, all zeros is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: bind(2) on our socket with a pointer to a sockaddr_ll of the length given.
        if unsafe { libc::bind(raw, (&addr as *const libc::sockaddr_ll).cast(), len) } < 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("binding to {dev}"));
        }
        if qdisc_bypass {
            sock.set_int(libc::PACKET_QDISC_BYPASS, 1).context("PACKET_QDISC_BYPASS")?;
        }
        Ok(sock)
    }

    fn set_int(&self, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
        self.set_opt(option, &value)
    }

    fn set_opt<T>(&self, option: libc::c_int, value: &T) -> io::Result<()> {
        let len = std::mem::size_of::<T>() as libc::socklen_t;
        // SAFETY: setsockopt(2) reads `len` bytes from `value`, a live reference of that size.
        let r =
            unsafe { libc::setsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, option, (value as *const T).cast(), len) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// The slot size of a batch buffer: any frame the template makes fits (1514 bytes at most).
const SLOT: usize = 2048;

/// `sendmmsg(2)`: a batch of frames in buffers of its own, ports patched per packet.
pub struct MmsgSender<'a> {
    sock: &'a PacketSocket,
    buffers: Vec<u8>,
    frame_len: usize,
    batch: usize,
    /// Index of the next packet (sent and refused ones both move it).
    next: u64,
}

impl<'a> MmsgSender<'a> {
    /// `batch` buffers, each a copy of the template.
    pub fn new(sock: &'a PacketSocket, template: &Template, batch: usize) -> MmsgSender<'a> {
        let mut buffers = vec![0u8; batch * SLOT];
        for slot in buffers.chunks_exact_mut(SLOT) {
            template.write(slot, 0, 0);
        }
        MmsgSender { sock, buffers, frame_len: template.frame_len(), batch, next: 0 }
    }

    /// Sends the next `n` packets (at most a batch) in one call.
    pub fn send(&mut self, template: &Template, ports: &PortStepper, n: usize) -> io::Result<Sent> {
        let n = n.min(self.batch);
        for (k, slot) in self.buffers.chunks_exact_mut(SLOT).take(n).enumerate() {
            let (s, d) = ports.ports(self.next + k as u64);
            template.write_ports(slot, s, d);
        }
        let base = self.buffers.as_mut_ptr();
        let mut iovs: Vec<libc::iovec> = (0..n)
            // SAFETY: slot k starts inside `buffers` (k < batch), which holds batch * SLOT bytes.
            .map(|k| libc::iovec { iov_base: unsafe { base.add(k * SLOT) }.cast(), iov_len: self.frame_len })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: msghdr is plain data, all zeros is a valid value (no name, no control).
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_iov = iov;
                hdr.msg_iovlen = 1;
                libc::mmsghdr { msg_hdr: hdr, msg_len: 0 }
            })
            .collect();
        // SAFETY: `msgs` holds n headers whose iovecs point into `buffers`, both alive across the call.
        let r = unsafe { libc::sendmmsg(self.sock.fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
        let sent = outcome(r)?;
        self.next += sent.sent + sent.refused;
        Ok(sent)
    }
}

/// A send call's result as [`Sent`]: a full device queue refuses one frame (`ENOBUFS`), which is
/// counted and skipped; other errors are errors.
fn outcome(r: libc::c_int) -> io::Result<Sent> {
    if r >= 0 {
        return Ok(Sent { sent: r as u64, refused: 0 });
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOBUFS) | Some(libc::EAGAIN) => Ok(Sent { sent: 0, refused: 1 }),
        _ => Err(e),
    }
}

/// `PACKET_TX_RING` (`TPACKET_V2`): frames are written into a ring mapped from the kernel and
/// marked ready, then one `send` hands the kernel every ready frame. The kernel takes them in
/// ring order from its own head; a frame the device refuses (`ENOBUFS`) stays ready at the head
/// and is sent again by the next `send`, so nothing is lost, and `head`..`tail` mirrors what the
/// kernel has yet to take.
pub struct RingSender<'a> {
    sock: &'a PacketSocket,
    ring: *mut u8,
    ring_len: usize,
    frames: u64,
    /// Slot index (mod `frames`) of the next frame the kernel takes: every slot before it is free.
    head: u64,
    /// Slot index (mod `frames`) of the next frame to fill; also the next packet's index.
    tail: u64,
}

/// Ring geometry: 2 KiB frames, 32 per 64 KiB block.
const RING_FRAME: usize = 2048;
const RING_BLOCK: usize = 1 << 16;
/// Where a TX frame's data starts in its slot: the `tpacket2_hdr`, aligned to 16 bytes.
const RING_DATA: usize = (std::mem::size_of::<libc::tpacket2_hdr>() + 15) & !15;

impl<'a> RingSender<'a> {
    /// A ring of at least `batch` frames.
    pub fn new(sock: &'a PacketSocket, batch: usize) -> anyhow::Result<RingSender<'a>> {
        let per_block = RING_BLOCK / RING_FRAME;
        let blocks = batch.div_ceil(per_block).max(1);
        let frames = blocks * per_block;
        sock.set_int(libc::PACKET_VERSION, libc::tpacket_versions::TPACKET_V2 as libc::c_int)
            .context("PACKET_VERSION")?;
        let req = libc::tpacket_req {
            tp_block_size: RING_BLOCK as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: RING_FRAME as u32,
            tp_frame_nr: frames as u32,
        };
        sock.set_opt(libc::PACKET_TX_RING, &req).context("PACKET_TX_RING")?;
        let ring_len = blocks * RING_BLOCK;
        // SAFETY: mmap(2) of the ring the kernel just allocated for this socket, its whole length.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                sock.fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).context("mapping the TX ring");
        }
        Ok(RingSender { sock, ring: ring.cast(), ring_len, frames: frames as u64, head: 0, tail: 0 })
    }

    fn header(&self, index: u64) -> *mut libc::tpacket2_hdr {
        // SAFETY: (index mod frames) * RING_FRAME is a slot's start inside the mapping.
        unsafe { self.ring.add((index % self.frames) as usize * RING_FRAME) }.cast()
    }

    fn status(&self, index: u64) -> u32 {
        // SAFETY: a slot starts with its tpacket2_hdr (16-byte aligned); the kernel writes the
        // status concurrently, hence volatile.
        unsafe { std::ptr::read_volatile(&(*self.header(index)).tp_status) }
    }

    /// Fills up to `n` free slots with the next packets, then one `send`.
    pub fn send(&mut self, template: &Template, ports: &PortStepper, n: usize) -> io::Result<Sent> {
        let len = template.frame_len();
        let free = self.frames - (self.tail - self.head);
        for _ in 0..(n as u64).min(free) {
            let hdr = self.header(self.tail);
            // SAFETY: the slot is free (between head and tail only the kernel's frames lie), so
            // the kernel does not read it until its status says so, which is written last.
            unsafe {
                let data = std::slice::from_raw_parts_mut(hdr.cast::<u8>().add(RING_DATA), RING_FRAME - RING_DATA);
                let (s, d) = ports.ports(self.tail);
                template.write(data, s, d);
                (*hdr).tp_len = len as u32;
                std::ptr::write_volatile(&mut (*hdr).tp_status, libc::TP_STATUS_SEND_REQUEST);
            }
            self.tail += 1;
        }
        // SAFETY: send(2) with no buffer: the kernel takes the frames marked in the ring. The
        // socket is blocking, so it returns once they are sent or one was refused.
        let r = unsafe { libc::send(self.sock.fd.as_raw_fd(), std::ptr::null(), 0, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) {
                return Err(e);
            }
        }
        let mut sent = Sent::default();
        while self.head < self.tail {
            let status = self.status(self.head);
            if status & libc::TP_STATUS_WRONG_FORMAT != 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "the kernel refused a frame's format"));
            }
            if status & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0 {
                break; // still the kernel's: refused for now, or in flight
            }
            self.head += 1;
            sent.sent += 1;
        }
        Ok(sent)
    }

    /// Sends what is still in the ring, for at most `limit`.
    pub fn flush(&mut self, template: &Template, ports: &PortStepper, limit: Duration) -> io::Result<Sent> {
        let deadline = Instant::now() + limit;
        let mut total = Sent::default();
        while self.head < self.tail && Instant::now() < deadline {
            total.sent += self.send(template, ports, 0)?.sent;
        }
        Ok(total)
    }
}

impl Drop for RingSender<'_> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; nothing refers to it after this.
        unsafe { libc::munmap(self.ring.cast(), self.ring_len) };
    }
}
