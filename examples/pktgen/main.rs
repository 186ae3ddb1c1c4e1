//! pktgen: a small UDP packet generator for `scripts/bench.sh`, run inside an instance's
//! namespace (`vpclab exec INSTANCE -- pktgen ...`). iperf3's UDP sender, a socket `write` per
//! datagram through the whole IP stack, is slower than the forwarder it should load; this writes
//! whole Ethernet frames on a raw packet socket (`AF_PACKET`), many per system call, so what is
//! measured is the forwarder.
//!
//! It sends UDP/IPv4 frames (64-byte payloads by default, the benchmark's "64-byte UDP") from the
//! interface's address to `--dst` through the next hop the namespace's routing table names (the
//! subnet router, or the destination itself when on-link), whose MAC it takes from the neighbour
//! table (a UDP datagram sent through the kernel first makes the kernel resolve it). Either one
//! fixed flow or, with `--flows new`, a new flow per packet (destination port stepping fastest
//! through `--dport`'s range, then the source port through `--sport`'s), flat out or at `--rate`
//! packets per second, for `--secs` seconds. Two ways of sending, to measure which is faster:
//! `sendmmsg` (a batch of frames per call) and `ring` (`PACKET_TX_RING`: frames written into a
//! shared ring, one `send` per batch); `--qdisc-bypass` hands frames straight to the driver
//! (`PACKET_QDISC_BYPASS`). It prints one line: what it sent, and what the interface dropped.
//!
//! ```text
//! pktgen --dst 10.0.2.10 --secs 5                          # one flow, flat out
//! pktgen --dst 10.0.2.10 --secs 5 --rate 50000             # 50 kpps
//! pktgen --dst 10.0.2.10 --secs 5 --flows new --dport 5000-5999 --sport 1024-65535
//! ```
//!
//! The receiver is not counted here: the benchmark reads the receiving interface's `rx_packets`.

mod frame;
mod socket;

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

use frame::{PortStepper, Template};
use socket::{PacketSocket, RingSender, Sent};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Flows {
    /// One flow: every packet has the first ports of both ranges.
    One,
    /// A new flow per packet: the ports step through their ranges.
    New,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `sendmmsg`: a batch of frames per system call.
    Sendmmsg,
    /// `PACKET_TX_RING`: frames written into a ring shared with the kernel, one `send` per batch.
    Ring,
}

#[derive(Parser, Debug)]
#[command(about = "Sends UDP frames on a raw packet socket (for scripts/bench.sh)")]
struct Args {
    /// The destination address.
    #[arg(long)]
    dst: Ipv4Addr,
    /// The sending interface.
    #[arg(long, default_value = "eth0")]
    dev: String,
    /// Source ports, `N` or `FIRST-LAST`.
    #[arg(long, default_value = "10000", value_parser = port_range)]
    sport: (u16, u16),
    /// Destination ports, `N` or `FIRST-LAST`.
    #[arg(long, default_value = "5001", value_parser = port_range)]
    dport: (u16, u16),
    /// One flow, or a new flow per packet.
    #[arg(long, value_enum, default_value = "one")]
    flows: Flows,
    /// Packets per second; 0 sends as fast as the socket takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// UDP payload bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Frames per system call (1-1024).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// How frames are handed to the kernel.
    #[arg(long, value_enum, default_value = "sendmmsg")]
    mode: Mode,
    /// Skip the interface's queueing discipline (`PACKET_QDISC_BYPASS`).
    #[arg(long)]
    qdisc_bypass: bool,
}

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let parse = |p: &str| p.trim().parse::<u16>().map_err(|e| format!("`{p}`: {e}"));
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if b < a {
                return Err(format!("`{s}`: the last port is below the first"));
            }
            Ok((a, b))
        }
        None => parse(s).map(|p| (p, p)),
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pktgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if !(args.secs > 0.0 && args.secs <= 3600.0) {
        bail!("--secs must be above 0 and at most 3600");
    }
    if !(1..=1024).contains(&args.batch) {
        bail!("--batch must be 1 to 1024");
    }
    if args.payload > frame::MAX_PAYLOAD {
        bail!("--payload must be at most {} bytes", frame::MAX_PAYLOAD);
    }
    let ends = socket::resolve(&args.dev, args.dst).context("finding the addresses to send with")?;
    let template = Template::new(ends, args.payload);
    let stepper = PortStepper::new(args.sport, args.dport, args.flows == Flows::New);
    let sock = PacketSocket::open(&args.dev, args.qdisc_bypass).context("opening the packet socket")?;
    let dropped_before = socket::tx_dropped(&args.dev)?;
    let start = Instant::now();
    let sent = match args.mode {
        Mode::Sendmmsg => {
            let mut tx = socket::MmsgSender::new(&sock, &template, args.batch);
            pace(&args, &mut |n| tx.send(&template, &stepper, n))?
        }
        Mode::Ring => {
            let mut tx = RingSender::new(&sock, args.batch).context("setting up PACKET_TX_RING")?;
            let mut sent = pace(&args, &mut |n| tx.send(&template, &stepper, n))?;
            sent.sent += tx.flush(&template, &stepper, Duration::from_millis(100))?.sent;
            sent
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let tx_dropped = socket::tx_dropped(&args.dev)?.saturating_sub(dropped_before);
    println!(
        "pktgen dev={} src={} dst={} via={} mode={:?} qdisc_bypass={} flows={:?} distinct_flows={} frame_bytes={} \
         sent={} refused={} secs={:.3} kpps={:.1} tx_dropped={}",
        args.dev,
        ends.src,
        ends.dst,
        socket::mac_text(ends.dst_mac),
        args.mode,
        args.qdisc_bypass,
        args.flows,
        stepper.distinct(),
        template.frame_len(),
        sent.sent,
        sent.refused,
        secs,
        sent.sent as f64 / secs / 1e3,
        tx_dropped,
    );
    Ok(())
}

/// Calls `send(count)` until `--secs` have passed: as fast as it returns, or
/// at `--rate`, sending what the clock allows (at most a batch) and sleeping briefly when it
/// allows nothing, so bursts stay small.
fn pace(args: &Args, send: &mut dyn FnMut(usize) -> std::io::Result<Sent>) -> anyhow::Result<Sent> {
    let start = Instant::now();
    let end = Duration::from_secs_f64(args.secs);
    let mut total = Sent::default();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end {
            return Ok(total);
        }
        let want = if args.rate == 0 {
            args.batch
        } else {
            let due = (elapsed.as_secs_f64() * args.rate as f64) as u64 + 1;
            due.saturating_sub(total.sent + total.refused).min(args.batch as u64) as usize
        };
        if want == 0 {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let s = send(want).context("sending")?;
        total.sent += s.sent;
        total.refused += s.refused;
    }
}
