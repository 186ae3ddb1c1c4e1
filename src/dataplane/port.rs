//! Ports: what the forwarding loop reads frames from and writes frames to. A [`Port`] carries
//! one frame per call, each preceded by the [`VNET_HDR_LEN`]-byte virtio-net header, and has a
//! file descriptor that mio can poll (edge-triggered: it turns readable when frames arrive).
//!
//! Two kinds exist. A [`Tap`] is the real thing, and the uplink's `AF_PACKET` socket is wrapped as
//! one too (it reads and writes frames with the same header, and keeping one type keeps the loop's
//! port list a plain `Vec`). A [`MemPort`] is one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)`:
//! frame boundaries are kept, it needs no root and no namespace, and the other end plays the
//! instance, so unit tests drive the real loop with it.
//!
//! The loop is generic over its port type with `Tap` as the default, so the production loop is
//! compiled for `Tap` alone: static dispatch, no vtable, nothing changes on the packet path.
//!
//! A port reports that it is gone the way a TAP whose device was deleted does: `recv` fails with
//! `EBADFD` (or `EIO`, `ENXIO`, `ENODEV`); the loop then stops polling it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::tap::{Tap, VNET_HDR_LEN};

/// A source and sink of frames with their virtio-net header, pollable through its descriptor.
pub trait Port: AsRawFd {
    /// Reads one frame with its virtio-net header into `buf`; `WouldBlock` when none is queued.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes one frame with its virtio-net header; `WouldBlock` when the port's queue is full.
    fn send(&self, frame: &[u8]) -> io::Result<usize>;

    /// A name for the forwarder's log.
    fn name(&self) -> &str;
}

impl Port for Tap {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Tap::recv(self, buf)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        Tap::send(self, frame)
    }

    fn name(&self) -> &str {
        Tap::name(self)
    }
}

/// An in-memory port: one end of a non-blocking `SOCK_SEQPACKET` Unix socket pair. Give one end
/// to the data plane and keep the other to inject frames (virtio-net header, then the Ethernet
/// frame) and read what the loop wrote. Once one end is closed, the other's `recv` fails with
/// `EBADFD`, as a TAP's does when its device is gone; so a frame of zero bytes cannot be carried
/// (it would read as the end), which a TAP never hands over anyway.
#[derive(Debug)]
pub struct MemPort {
    fd: OwnedFd,
    name: String,
}

impl MemPort {
    /// A connected pair of ports, both named `name`.
    pub fn pair(name: &str) -> io::Result<(MemPort, MemPort)> {
        let mut fds = [0 as libc::c_int; 2];
        let kind = libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: socketpair writes two descriptors into the array it is given; checked below.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and nothing else owns them.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((MemPort { fd: a, name: name.to_string() }, MemPort { fd: b, name: name.to_string() }))
    }

    /// Waits at most `timeout` for a frame and reads it; `None` if none came.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match Port::recv(self, buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd for the duration of the call; the result is checked.
            if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }

    /// Sends `frame` behind an all-zero virtio-net header ("no offload, checksum complete").
    pub fn send_frame(&self, frame: &[u8]) -> io::Result<usize> {
        let mut with_hdr = vec![0u8; VNET_HDR_LEN];
        with_hdr.extend_from_slice(frame);
        Port::send(self, &with_hdr)
    }
}

impl Port for MemPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for writes of buf.len() bytes for the duration of the call.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            // End of stream: the other end is closed, like a TAP whose device is gone.
            0 => Err(io::Error::from_raw_os_error(libc::EBADFD)),
            n => Ok(n as usize),
        }
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // MSG_NOSIGNAL: a closed other end is an EPIPE error, not a SIGPIPE.
        // SAFETY: frame is valid for reads of frame.len() bytes for the duration of the call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl AsFd for MemPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for MemPort {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
