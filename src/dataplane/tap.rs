//! TAP devices with virtio-net headers and TSO/checksum offload.
//!
//! Why not the `tun-tap` crate: it cannot ask for `IFF_VNET_HDR` (the flag must be given at
//! `TUNSETIFF`), has no `TUNSETOFFLOAD`, and its default features pull tokio-core, mio 0.6 and
//! net2 (RUSTSEC-2020-0016). These few ioctls on `libc` do it all.
//!
//! With offload on, the kernel hands us TCP superframes of up to 64 KiB whose checksums may be
//! partial; every frame is preceded by a [`VNET_HDR_LEN`]-byte `virtio_net_hdr_v1` that says so.
//! The data plane passes that header through untouched to the destination TAP, which is correct
//! while rewrites leave L3/L4 offsets alone; locally generated frames (ARP replies) get a zeroed
//! header ("no offload, checksum complete").

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Size of `struct virtio_net_hdr_v1` (with `num_buffers`), set with `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 12;

/// Largest frame a TAP hands over with TSO: 64 KiB of IP plus the Ethernet and virtio headers.
pub const MAX_FRAME: usize = VNET_HDR_LEN + 14 + 65535;

/// What the virtio-net header in front of a received frame says (`struct virtio_net_hdr_v1`,
/// native endian as TUNSETVNETLE/BE were not set): whether the L4 checksum is partial
/// (VIRTIO_NET_HDR_F_NEEDS_CSUM) and, for a GSO superframe, the segment payload size.
pub fn offload(hdr: &[u8]) -> crate::pipeline::Offload {
    const NEEDS_CSUM: u8 = 1;
    const GSO_NONE: u8 = 0;
    if hdr.len() < VNET_HDR_LEN {
        return crate::pipeline::Offload::default();
    }
    let gso_size = u16::from_ne_bytes([hdr[4], hdr[5]]);
    crate::pipeline::Offload {
        csum_partial: hdr[0] & NEEDS_CSUM != 0,
        gso_size: (hdr[1] & 0x7f != GSO_NONE && gso_size > 0).then_some(gso_size),
    }
}

/// Errors opening or configuring a TAP.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name does not fit IFNAMSIZ or holds a NUL.
    #[error("TAP name `{0}` is not a valid interface name (1 to 15 bytes, no NUL)")]
    BadName(String),
    /// /dev/net/tun could not be opened.
    #[error("cannot open /dev/net/tun: {0}")]
    Open(#[source] io::Error),
    /// An ioctl failed.
    #[error("{op} on TAP `{ifname}` failed: {source}")]
    Ioctl {
        /// The ioctl.
        op: &'static str,
        /// The interface.
        ifname: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
}

/// One TAP device, non-blocking, with virtio-net headers and offloads. The device is persistent
/// while the forwarder holds it (`TUNSETPERSIST`): if the forwarder dies, its instances keep their
/// interfaces, addresses and routes, and `vpclab resume` attaches to them again
/// ([`Tap::attach`]). Dropping a `Tap` clears the flag first, so a closed TAP is removed, wherever
/// its link has moved.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    persistent: bool,
}

impl Drop for Tap {
    fn drop(&mut self) {
        if self.persistent {
            // SAFETY: TUNSETPERSIST takes its flag by value; fd is a configured tun fd. A failure
            // leaves a device that `vpclab down` deletes with the lab.
            unsafe { libc::ioctl(self.raw(), libc::TUNSETPERSIST, 0 as libc::c_ulong) };
        }
    }
}

impl Tap {
    /// Creates TAP `name` in the calling thread's network namespace, persistent.
    pub fn create(name: &str) -> Result<Tap, TapError> {
        Tap::open(name, false)
    }

    /// Creates TAP `name` with `queues` queues (`IFF_MULTI_QUEUE`), one per forwarding worker;
    /// with one queue, exactly [`Tap::create`] (no multiqueue flag). The first queue holds the
    /// device's persistence; the device goes when the last queue closes.
    pub fn create_queues(name: &str, queues: usize) -> Result<Vec<Tap>, TapError> {
        if queues <= 1 {
            return Ok(vec![Tap::create(name)?]);
        }
        let mut all = vec![Tap::open(name, true)?];
        for _ in 1..queues {
            let mut queue = Tap::open(name, true)?;
            // Clearing the flag once, as the first queue closes, is enough.
            queue.persistent = false;
            all.push(queue);
        }
        Ok(all)
    }

    /// Another descriptor of the same port (the uplink's packet socket, shared by the workers:
    /// each frame is read by one of them).
    pub fn duplicate(&self) -> io::Result<Tap> {
        Ok(Tap { fd: self.fd.try_clone()?, name: self.name.clone(), persistent: false })
    }

    /// Attaches to the persistent TAP `name` a dead forwarder left in the calling thread's
    /// namespace (the caller has made sure it exists: `TUNSETIFF` would otherwise create one).
    /// Until [`Tap::adopt`], dropping it leaves the device as it was, so a resume that fails half
    /// way destroys nothing.
    pub fn attach(name: &str) -> Result<Tap, TapError> {
        // A TAP made for several workers must be attached as a queue (TUNSETIFF says EINVAL).
        let mut tap = match Tap::open(name, false) {
            Err(TapError::Ioctl { op: "TUNSETIFF", source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                Tap::open(name, true)?
            }
            other => other?,
        };
        tap.persistent = false;
        Ok(tap)
    }

    /// Takes ownership of an attached TAP: from now on dropping it removes the device.
    pub fn adopt(&mut self) {
        self.persistent = true;
    }

    /// Leaves the device to the namespace it is in, which is going away: dropping the TAP then
    /// only closes the descriptor, and the kernel removes the device with its namespace, in one
    /// batch with the others, instead of unregistering it on its own (about 20 ms each here).
    pub fn leave_to_namespace(&mut self) {
        self.persistent = false;
    }

    fn open(name: &str, multi_queue: bool) -> Result<Tap, TapError> {
        let cname = CString::new(name).map_err(|_| TapError::BadName(name.into()))?;
        if name.is_empty() || cname.as_bytes().len() >= libc::IFNAMSIZ {
            return Err(TapError::BadName(name.into()));
        }
        // SAFETY: a plain open(2) of a constant, NUL-terminated path; the result is checked.
        let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(TapError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut tap = Tap { fd, name: name.to_string(), persistent: false };

        // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(cname.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        let queues = if multi_queue { libc::IFF_MULTI_QUEUE } else { 0 };
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | queues) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `ifr` is; fd is a tun fd.
        tap.check("TUNSETIFF", unsafe { libc::ioctl(tap.raw(), libc::TUNSETIFF, &mut ifr) })?;

        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer; fd is a configured tun fd.
        tap.check("TUNSETVNETHDRSZ", unsafe { libc::ioctl(tap.raw(), libc::TUNSETVNETHDRSZ, &hdr_len) })?;

        let offload = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes the flags by value; fd is a configured tun fd.
        tap.check("TUNSETOFFLOAD", unsafe { libc::ioctl(tap.raw(), libc::TUNSETOFFLOAD, offload as libc::c_ulong) })?;
        // SAFETY: TUNSETPERSIST takes its flag by value; fd is a configured tun fd.
        tap.check("TUNSETPERSIST", unsafe { libc::ioctl(tap.raw(), libc::TUNSETPERSIST, 1 as libc::c_ulong) })?;
        tap.persistent = true;
        Ok(tap)
    }

    /// Wraps a descriptor that reads and writes frames with the same virtio-net header (the
    /// uplink's packet socket).
    pub(crate) fn from_fd(fd: OwnedFd, name: &str) -> Tap {
        Tap { fd, name: name.to_string(), persistent: false }
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn check(&self, op: &'static str, ret: libc::c_int) -> Result<(), TapError> {
        if ret < 0 {
            Err(TapError::Ioctl { op, ifname: self.name.clone(), source: io::Error::last_os_error() })
        } else {
            Ok(())
        }
    }

    /// The name the TAP was created with (its link may since have been renamed and moved).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame with its virtio-net header into `buf`; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for writes of buf.len() bytes for the duration of the call.
        let n = unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes one frame with its virtio-net header; `WouldBlock` when the device queue is full.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for reads of buf.len() bytes for the duration of the call.
        let n = unsafe { libc::write(self.raw(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}
