//! Shows what a `pipeline` input does, frame by frame: `cargo run --example replay -- FILE`
//! prints each record, the trace of its frame (read-only) and the verdict of forwarding it,
//! then runs the target's checks on the whole input.

use std::time::Duration;

use vpclab::model::EniIdx;
use vpclab::pipeline::{NoObserver, Offload, Pipeline};
use vpclab_fuzz::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: replay FILE");
    let data = std::fs::read(&path).expect("readable input");
    let m = model();
    let mut p = Pipeline::new(m);
    let n = m.enis.len();
    let mut now = Duration::from_secs(1);
    for (i, r) in records(&data).iter().enumerate() {
        now += time_step(r.time);
        if r.flags & F_TIMEOUT != 0 {
            p.handle_timeout(now);
        }
        let entry = usize::from(r.entry) % (n + 1);
        let from = (entry < n).then_some(EniIdx(entry as u32));
        let name = from.map_or("internet".to_string(), |e| m.enis[e.index()].id.clone());
        let off = Offload {
            csum_partial: r.flags & F_CSUM_PARTIAL != 0,
            gso_size: (r.flags & F_GSO != 0).then_some(r.gso_size),
        };
        let mut frame = if r.flags & F_BUILD != 0 {
            let spec = Spec::read(r.body);
            println!("#{i} {name} t={now:?} flags={:#04x} {off:?} built {spec:?}", r.flags);
            build_frame(m, from, &spec, off.csum_partial)
        } else {
            println!("#{i} {name} t={now:?} flags={:#04x} {off:?} raw", r.flags);
            let mut f = r.body.to_vec();
            if r.flags & F_FIX_CSUM != 0 {
                fix_checksums(&mut f, off.csum_partial);
            }
            f
        };
        println!("   in    {}", hex(&frame));
        println!("   meta  {:?}", vpclab::packet::parse(&frame));
        let mut copy = frame.clone();
        let (tv, rec) = match from {
            Some(e) => p.trace(now, e, &mut copy),
            None => p.trace_internet(now, &mut copy),
        };
        for (stage, line) in &rec.lines {
            println!("   trace {}: {line}", stage.name());
        }
        let v = match from {
            Some(e) => p.process_offloaded(now, e, &mut frame, off, &mut NoObserver),
            None => p.process_internet(now, &mut frame, off, &mut NoObserver),
        };
        println!("   trace {tv:?}, forwarding {v:?}");
        println!("   out   {}", hex(&frame));
        if copy != frame {
            println!("   trace {}", hex(&copy));
        }
    }
    println!("{:?}", run_pipeline(&data));
}
