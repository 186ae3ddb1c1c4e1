//! `vpclab capture`'s end of a capture: sends the request with its output (a file, or standard
//! output: a pipe to `wireshark -k -i -` or `tcpdump -r -`) passed along as a file descriptor,
//! so the forwarder's writer writes the pcapng there itself, with no copy through this process;
//! then waits for the end and its counts. Ctrl-C (SIGINT) or SIGTERM half-closes the socket:
//! the forwarder then ends the file properly (statistics blocks) and answers with the counts.

use std::io::{self, BufRead, BufReader, IoSlice, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

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

/// Runs the capture `request` (a [`Request::Capture`]) against the lab's socket; the forwarder
/// writes the pcapng to `out`.
pub fn capture(socket: &Path, request: &Request, out: BorrowedFd<'_>) -> anyhow::Result<Summary> {
    let conn = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the lab's forwarder at {}", socket.display()))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    let fds = [out.as_raw_fd()];
    let sent = sendmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &[IoSlice::new(line.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("sending the capture request")?;
    (&conn).write_all(&line.as_bytes()[sent..])?;
    catch_signals();
    let mut answers = BufReader::new(&conn);
    match next_answer(&mut answers, &conn)? {
        Response::Capturing => {}
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer to a capture: {other:?}"),
    }
    match next_answer(&mut answers, &conn)? {
        Response::CaptureEnded { interfaces, written, lost } => {
            Ok(Summary { interfaces, packets: written.iter().sum(), lost })
        }
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected end of a capture: {other:?}"),
    }
}

/// Waits for the forwarder's next answer line; a Ctrl-C meanwhile half-closes the connection
/// (once), which asks the forwarder to end the capture.
fn next_answer(answers: &mut BufReader<&UnixStream>, conn: &UnixStream) -> anyhow::Result<Response> {
    // Wake up now and then, so a Ctrl-C during a quiet spell is acted on.
    conn.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
    let mut line = Vec::new();
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            let _ = conn.shutdown(Shutdown::Write);
        }
        match answers.read_until(b'\n', &mut line) {
            Ok(0) => bail!("the forwarder closed the connection"),
            Ok(_) if line.ends_with(b"\n") => break,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("reading the forwarder's answer"),
        }
    }
    serde_json::from_slice(&line)
        .with_context(|| format!("unreadable answer from the forwarder: {}", String::from_utf8_lossy(&line)))
}
