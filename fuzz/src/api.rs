//! The `api_request` target: bytes as the EC2 API reads a form body, answered about the embedded
//! default lab (`vpclab::api::answer_offline`): never a panic, and never an `InternalError` (a
//! response the EC2 shape refuses, or a fault of the face).

use std::sync::OnceLock;

use vpclab::model::Model;

fn lab() -> &'static Model {
    static LAB: OnceLock<Model> = OnceLock::new();
    LAB.get_or_init(|| vpclab::topology::parse(vpclab::topology::DEFAULT_TOPOLOGY, "default.toml").expect("valid"))
}

/// Runs one input.
pub fn run(data: &[u8]) {
    if let Err(e) = vpclab::api::answer_offline(data, lab()) {
        assert_ne!(e.code, "InternalError", "{e:?} for {:?}", String::from_utf8_lossy(data));
        assert!(e.status < 500, "{e:?}");
    }
}
