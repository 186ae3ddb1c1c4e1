//! The `control_request` target: bytes as the daemon reads a request line, through
//! `serde_json::from_str::<Request>`; a request it accepts serializes and parses back equal.

use vpclab::control::Request;

/// Runs one input.
pub fn run(data: &[u8]) {
    // The server reads one line (`read_line`, UTF-8) and parses it.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let line = text.split_inclusive('\n').next().unwrap_or("");
    let Ok(req) = serde_json::from_str::<Request>(line) else { return };
    let json = serde_json::to_string(&req).expect("a request serializes");
    assert!(!json.contains('\n'), "a serialized request is one line: {json}");
    let back: Request =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("a serialized request does not parse: {e}: {json}"));
    assert_eq!(req, back, "the request changed through JSON: {json}");
}
