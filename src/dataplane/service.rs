//! The port to the lab's service namespace (instance metadata): one more TAP per worker, read
//! like an ENI's but outside the ports the model indexes. What comes from it is stateless to
//! judge (`Pipeline::process_service`), so each worker handles its own queue's frames without
//! handing them to another. It is not captured, mirrored or logged: AWS logs no metadata traffic.

use std::io;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::tap::{self, VNET_HDR_LEN};
use super::{Dataplane, Port, BURST};
use crate::pipeline::{DropReason, EniCounters, NoObserver, Verdict};

/// The service port's token, next to the waker's at the top of the range.
pub(super) const SERVICE: Token = Token(usize::MAX - 1);

/// The service port and what happened on it.
#[derive(Debug)]
pub(super) struct ServicePort<P> {
    port: Option<P>,
    /// Frames read from the service (`rx`) and written to it (`tx`), and drops by reason.
    pub(super) counters: EniCounters,
    /// It may hold frames not read yet.
    pub(super) ready: bool,
}

impl<P> Default for ServicePort<P> {
    fn default() -> Self {
        ServicePort { port: None, counters: EniCounters::default(), ready: false }
    }
}

impl<P: Port> Dataplane<P> {
    /// Gives this worker its queue of the service namespace's TAP. Before [`run`](Self::run).
    pub fn set_service_port(&mut self, port: P) -> io::Result<()> {
        let fd = port.as_raw_fd();
        self.poll.registry().register(&mut SourceFd(&fd), SERVICE, Interest::READABLE)?;
        self.service.port = Some(port);
        self.service.ready = true;
        Ok(())
    }

    /// What the service port counted.
    pub fn service_counters(&self) -> &EniCounters {
        &self.service.counters
    }

    /// Reads up to a burst from the service port; true if it may hold more.
    pub(super) fn drain_service(&mut self) -> bool {
        for _ in 0..BURST {
            let Some(port) = &self.service.port else { return false };
            match port.recv(&mut self.buf) {
                Ok(n) => self.handle_service_frame(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.service.counters.count_drop(DropReason::RxError);
                    return false;
                }
            }
        }
        true
    }

    fn handle_service_frame(&mut self, n: usize) {
        let counters = &mut self.service.counters;
        if n < VNET_HDR_LEN {
            return counters.count_drop(DropReason::Malformed);
        }
        counters.rx_packets += 1;
        counters.rx_bytes += (n - VNET_HDR_LEN) as u64;
        let off = tap::offload(&self.buf[..VNET_HDR_LEN]);
        match self.pipeline.process_service(&mut self.buf[VNET_HDR_LEN..n], off, &mut NoObserver) {
            Verdict::Forward(to) => self.transmit(to.index(), n),
            Verdict::Reply => {
                self.buf[..VNET_HDR_LEN].fill(0);
                self.transmit_service(n);
            }
            verdict => {
                let reason = verdict.drop_reason().unwrap_or(DropReason::Malformed);
                self.service.counters.count_drop(reason);
            }
        }
    }

    /// Writes the frame in the buffer to the service port.
    pub(super) fn transmit_service(&mut self, n: usize) {
        let sent = self.service.port.as_ref().is_some_and(|p| p.send(&self.buf[..n]).is_ok());
        let c = &mut self.service.counters;
        if sent {
            c.tx_packets += 1;
            c.tx_bytes += (n - VNET_HDR_LEN) as u64;
        } else {
            c.count_drop(DropReason::TxFailed);
        }
    }
}
