//! `vpclab capture`'s end of a capture: sends the request, then passes the forwarder's pcapng
//! through to a file or standard output block by block (parsing each, so the counts of frames
//! written and lost can be told at the end), flushing as it goes so `| wireshark -k -i -` and
//! `| tcpdump -r -` see frames at once. Ctrl-C (SIGINT) or SIGTERM half-closes the socket: the
//! forwarder then ends the file properly (statistics blocks), and the copy runs to its end.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::PcapError;

use crate::control::{Request, Response};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set [`INTERRUPTED`] and interrupt the blocking read (no `SA_RESTART`).
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// What one capture wrote, as its own statistics blocks say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Interface names, in order.
    pub interfaces: Vec<String>,
    /// Frames written.
    pub packets: u64,
    /// Frames lost because the queue was full, per interface (from `isb_ifdrop`).
    pub lost: Vec<u64>,
}

/// Runs the capture `request` (a [`Request::Capture`]) against the lab's socket, writing the
/// pcapng to `out`.
pub fn capture(socket: &Path, request: &Request, out: &mut dyn Write) -> anyhow::Result<Summary> {
    let conn = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the lab's forwarder at {}", socket.display()))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&conn).write_all(line.as_bytes())?;
    let mut input = BufReader::with_capacity(1 << 16, &conn);
    let mut first = String::new();
    input.read_line(&mut first).context("the forwarder closed the connection")?;
    match serde_json::from_str::<Response>(&first) {
        Ok(Response::Capturing) => {}
        Ok(Response::Error { message }) => bail!("{message}"),
        Ok(other) => bail!("unexpected answer to a capture: {other:?}"),
        Err(e) => bail!("unreadable answer from the forwarder ({e}): {first}"),
    }
    catch_signals();
    // Wake up now and then, so a Ctrl-C during a quiet spell is acted on.
    conn.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
    pass_through(&mut input, &conn, out)
}

fn pass_through(input: &mut impl Read, conn: &UnixStream, out: &mut dyn Write) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut parser: Option<PcapNgParser> = None;
    let mut buf = vec![0u8; 1 << 16];
    let mut asked_to_end = false;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) && !asked_to_end {
            // The forwarder sees our end and finishes the file; we read on until it closes.
            let _ = conn.shutdown(Shutdown::Write);
            asked_to_end = true;
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e).context("reading the capture from the forwarder"),
        };
        pending.extend_from_slice(&buf[..n]);
        let used = blocks(&pending, &mut parser, &mut summary)?;
        out.write_all(&pending[..used])?;
        out.flush()?;
        pending.drain(..used);
    }
    if !pending.is_empty() {
        bail!("the capture ended in the middle of a block ({} bytes left over)", pending.len());
    }
    Ok(summary)
}

/// Parses the complete blocks at the start of `src`; returns how many bytes they span.
pub(crate) fn blocks(src: &[u8], parser: &mut Option<PcapNgParser>, summary: &mut Summary) -> anyhow::Result<usize> {
    let mut rest = src;
    if parser.is_none() {
        match PcapNgParser::new(rest) {
            Ok((r, p)) => {
                rest = r;
                *parser = Some(p);
            }
            Err(PcapError::IncompleteBuffer) => return Ok(0),
            Err(e) => bail!("the forwarder sent no pcapng: {e}"),
        }
    }
    let p = parser.as_mut().expect("set above");
    loop {
        match p.next_block(rest) {
            Ok((r, block)) => {
                note(&block, summary);
                rest = r;
            }
            Err(PcapError::IncompleteBuffer) => break,
            Err(e) => bail!("bad pcapng from the forwarder: {e}"),
        }
    }
    Ok(src.len() - rest.len())
}

fn note(block: &Block<'_>, summary: &mut Summary) {
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
    match block {
        Block::InterfaceDescription(idb) => {
            let name = idb.options.iter().find_map(|o| match o {
                InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                _ => None,
            });
            summary.interfaces.push(name.unwrap_or_default());
            summary.lost.push(0);
        }
        Block::EnhancedPacket(_) => summary.packets += 1,
        Block::InterfaceStatistics(isb) => {
            let dropped = isb.options.iter().find_map(|o| match o {
                InterfaceStatisticsOption::IsbIfDrop(n) => Some(*n),
                _ => None,
            });
            if let (Some(slot), Some(n)) = (summary.lost.get_mut(isb.interface_id as usize), dropped) {
                *slot = n;
            }
        }
        _ => {}
    }
}
