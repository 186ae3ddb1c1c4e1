//! The `topology` target: any text through `topology::parse`; a model it accepts must export to
//! a file that parses back to the same model, and must compile into a pipeline that judges a
//! few synthesized packets without panicking.

use std::time::Duration;

use vpclab::model::EniIdx;
use vpclab::packet::IpProto;
use vpclab::pipeline::{self, NoObserver, Pipeline};

/// Runs one input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let model = match vpclab::topology::parse(&text, "fuzz.toml") {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error names at least one problem");
            let lines = text.lines().count() + 1;
            for p in &e.problems {
                assert!(p.line <= lines, "problem on line {} of a {lines}-line file: {p}", p.line);
            }
            return;
        }
    };
    let exported = vpclab::topology::export(&model);
    let back = vpclab::topology::parse(&exported, "exported.toml")
        .unwrap_or_else(|e| panic!("the export of a valid model does not parse: {e}\n--- exported:\n{exported}"));
    assert_eq!(
        serde_json::to_value(&model).expect("a model serializes"),
        serde_json::to_value(&back).expect("a model serializes"),
        "the round trip through export changed the model:\n{exported}"
    );

    // The model compiles, and a packet from each ENI to each ENI's address is judged.
    let mut p = Pipeline::new(&model);
    let n = model.enis.len().min(8);
    for i in 0..n {
        for j in 0..n {
            let to = model.enis[j].private_ip;
            for proto in [IpProto::TCP, IpProto::UDP, IpProto::ICMP] {
                let mut f = pipeline::synthesize_for(&model, EniIdx(i as u32), to, proto, 40000, 80);
                p.process(Duration::from_secs(1), EniIdx(i as u32), &mut f, &mut NoObserver);
            }
        }
    }
    for host in model.internet_hosts.iter().take(2) {
        for public in model.public_addresses().take(4) {
            let mut f = pipeline::synthesize_from_internet(&model, host.ip, public, IpProto::TCP, 40000, 80);
            p.process_internet(Duration::from_secs(1), &mut f, Default::default(), &mut NoObserver);
        }
    }
}
