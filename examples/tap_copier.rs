//! tap_copier: moves frames between two TAPs opened exactly as vpclab's forwarder opens them
//! (`vpclab::dataplane::tap::Tap`: `IFF_VNET_HDR`, checksum and TSO offload), with no decisions,
//! to measure what the way of doing the I/O costs (issue 10: fewer system calls per frame).
//!
//! * `--mode epoll`: the forwarder's loop: mio (epoll) readiness, then up to `--burst` frames
//!   read from a ready TAP, each written to the other with one `read` and one `write`; a TAP cut
//!   off by the burst is polled again without sleeping.
//! * `--mode uring`: io_uring: `--depth` reads in flight per TAP, each completed read turned into
//!   a write to the other TAP and each completed write into a new read, everything queued since
//!   the last call submitted together with one `io_uring_enter`, which also waits for the next
//!   completion.
//!
//! ```text
//! tap_copier --a tca --b tcb --mode uring      # creates TAPs tca and tcb, copies until SIGTERM/SIGINT
//! tap_copier ready mode=Uring a=tca b=tcb
//! tap_copier mode=Uring moved=... write_failed=... read_failed=... enters=...
//! ```
//!
//! `scripts/bench.sh --only copier` moves the TAPs into two namespaces and loads them with
//! `examples/pktgen`, as its `bridge` row does for `../shared/bench/tapbridge.c`.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use io_uring::{opcode, types, IoUring};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vpclab::dataplane::tap::{Tap, MAX_FRAME};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One read and one write per frame under epoll, as the forwarder does.
    Epoll,
    /// io_uring: several reads in flight per TAP, submissions batched.
    Uring,
}

#[derive(Parser, Debug)]
#[command(about = "Copies frames between two TAPs, to compare ways of doing TAP I/O")]
struct Args {
    /// First TAP's name (created here).
    #[arg(long)]
    a: String,
    /// Second TAP's name (created here).
    #[arg(long)]
    b: String,
    /// How the frames are read and written.
    #[arg(long, value_enum, default_value = "epoll")]
    mode: Mode,
    /// epoll: frames read from one TAP before the other gets its turn (the forwarder's BURST).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    burst: u16,
    /// uring: reads in flight per TAP.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    depth: u16,
    /// uring: set the ring up with IORING_SETUP_SINGLE_ISSUER and IORING_SETUP_DEFER_TASKRUN
    /// (completions are run when the loop asks for them, not on every frame's arrival).
    #[arg(long)]
    defer_taskrun: bool,
}

/// What a run did, printed when it stops.
#[derive(Debug, Default)]
struct Moved {
    moved: u64,
    write_failed: u64,
    read_failed: u64,
    /// System calls that wait: `epoll_wait` or `io_uring_enter`.
    waits: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let taps = [Tap::create(&args.a)?, Tap::create(&args.b)?];
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing a signal handler")?;
    }
    eprintln!("tap_copier ready mode={:?} a={} b={}", args.mode, args.a, args.b);
    let moved = match args.mode {
        Mode::Epoll => run_epoll(&taps, args.burst.into(), &stop)?,
        Mode::Uring => run_uring(&taps, args.depth.into(), args.defer_taskrun, &stop)?,
    };
    println!(
        "tap_copier mode={:?} moved={} write_failed={} read_failed={} waits={}",
        args.mode, moved.moved, moved.write_failed, moved.read_failed, moved.waits
    );
    Ok(())
}

/// The forwarder's loop (src/dataplane/mod.rs `run` and `drain`) without the pipeline.
fn run_epoll(taps: &[Tap; 2], burst: usize, stop: &AtomicBool) -> io::Result<Moved> {
    let mut poll = Poll::new()?;
    for (i, tap) in taps.iter().enumerate() {
        poll.registry().register(&mut SourceFd(&tap.as_raw_fd()), Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; MAX_FRAME];
    let mut ready = [false; 2];
    let mut done = Moved::default();
    while !stop.load(Ordering::Relaxed) {
        // Edge-triggered: a TAP stays ready until a read says WouldBlock.
        let timeout = if ready.contains(&true) { Duration::ZERO } else { Duration::from_millis(100) };
        done.waits += 1;
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            ready[ev.token().0] = true;
        }
        for from in 0..2 {
            if ready[from] {
                ready[from] = drain(&taps[from], &taps[1 - from], &mut buf, burst, &mut done);
            }
        }
    }
    Ok(done)
}

/// Copies up to `burst` frames from `from` to `to`; true if `from` may hold more.
fn drain(from: &Tap, to: &Tap, buf: &mut [u8], burst: usize, done: &mut Moved) -> bool {
    for _ in 0..burst {
        match from.recv(buf) {
            Ok(n) => match to.send(&buf[..n]) {
                Ok(_) => done.moved += 1,
                Err(_) => done.write_failed += 1,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => done.read_failed += 1,
        }
    }
    true
}

/// What the io_uring request with a buffer's index as user data is doing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Reading,
    Writing,
}

/// User data of the timeout that wakes the loop to look at the stop flag.
const TICK: u64 = u64::MAX;

/// io_uring: buffer `i` belongs to TAP `i / depth`; it is read into, then written from to the
/// other TAP, then read into again.
fn run_uring(taps: &[Tap; 2], depth: usize, defer_taskrun: bool, stop: &AtomicBool) -> io::Result<Moved> {
    // io_uring answers EAGAIN for a non-blocking file rather than waiting for it to be readable;
    // blocking, a read waits inside the ring (poll-armed, no thread) until a frame comes.
    for tap in taps {
        set_blocking(tap)?;
    }
    let entries = (4 * depth + 2).next_power_of_two() as u32;
    let mut builder = IoUring::builder();
    if defer_taskrun {
        builder.setup_single_issuer().setup_defer_taskrun();
    }
    let mut ring = builder.build(entries)?;
    let fds = [types::Fd(taps[0].as_raw_fd()), types::Fd(taps[1].as_raw_fd())];
    // Leaked, so they outlive every request the ring may still hold when it is dropped; the
    // process ends right after.
    let bufs: &mut [Vec<u8>] = Vec::leak((0..2 * depth).map(|_| vec![0u8; MAX_FRAME]).collect());
    let tick: &types::Timespec = Box::leak(Box::new(types::Timespec::new().nsec(100_000_000)));
    let mut slots = vec![Slot::Reading; 2 * depth];
    let mut done = Moved::default();
    for i in 0..2 * depth {
        push(&mut ring, read(fds[i / depth], &mut bufs[i], i))?;
    }
    push(&mut ring, opcode::Timeout::new(tick).build().user_data(TICK))?;
    let mut finished: Vec<(u64, i32)> = Vec::with_capacity(entries as usize);
    while !stop.load(Ordering::Relaxed) {
        done.waits += 1;
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        finished.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for (data, res) in finished.drain(..) {
            if data == TICK {
                push(&mut ring, opcode::Timeout::new(tick).build().user_data(TICK))?;
                continue;
            }
            let i = data as usize;
            let side = i / depth;
            let next = match (slots[i], res) {
                (Slot::Reading, n) if n > 0 => {
                    slots[i] = Slot::Writing;
                    write(fds[1 - side], &bufs[i][..n as usize], i)
                }
                (Slot::Reading, _) => {
                    done.read_failed += 1;
                    read(fds[side], &mut bufs[i], i)
                }
                (Slot::Writing, n) => {
                    if n >= 0 {
                        done.moved += 1;
                    } else {
                        done.write_failed += 1;
                    }
                    slots[i] = Slot::Reading;
                    read(fds[side], &mut bufs[i], i)
                }
            };
            push(&mut ring, next)?;
        }
    }
    Ok(done)
}

fn read(fd: types::Fd, buf: &mut [u8], slot: usize) -> io_uring::squeue::Entry {
    opcode::Read::new(fd, buf.as_mut_ptr(), buf.len() as u32).build().user_data(slot as u64)
}

fn write(fd: types::Fd, frame: &[u8], slot: usize) -> io_uring::squeue::Entry {
    opcode::Write::new(fd, frame.as_ptr(), frame.len() as u32).build().user_data(slot as u64)
}

/// Queues `entry`; the ring has room for every request in flight (4 per buffer pair), so a full
/// queue is a bug here, reported as an error rather than a panic.
fn push(ring: &mut IoUring, entry: io_uring::squeue::Entry) -> io::Result<()> {
    // SAFETY: every buffer and the timeout's timespec are leaked ('static), so they outlive the
    // ring's use of them; a buffer is in at most one request at a time (its slot's state).
    unsafe { ring.submission().push(&entry) }.map_err(|_| io::Error::other("io_uring submission queue full"))
}

fn set_blocking(tap: &Tap) -> io::Result<()> {
    let fd = tap.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the Tap owns; results are checked.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
