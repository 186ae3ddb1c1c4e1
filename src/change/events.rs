//! A lab's timeline: every applied or refused change and the data-plane moments that matter in a
//! drill (the first frame delivered to an ENI after it moved, an address's first delivery to its
//! new owner), one JSON object per line in `<run dir>/<lab>/events.jsonl`, with millisecond
//! timestamps. A drill's outage is read off it: from the change to the first delivery.
//!
//! Lines are appended with one `write` each on an `O_APPEND` file, so the change path and the
//! data plane's reporter never interleave within a line. The file is bounded: past
//! [`MAX_BYTES`] it is rotated to `events.jsonl.1` (one generation kept).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Size past which the timeline is rotated.
pub const MAX_BYTES: u64 = 8 << 20;

/// One moment of a lab's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `applied`, `refused`, `failed` (rolled back) or `dataplane`.
    pub kind: String,
    /// What happened: a plan step, an error, a delivery.
    pub text: String,
}

impl Event {
    /// An event happening now.
    pub fn now(kind: &str, text: impl Into<String>) -> Event {
        Event::at(SystemTime::now(), kind, text)
    }

    /// An event that happened at `at`.
    pub fn at(at: SystemTime, kind: &str, text: impl Into<String>) -> Event {
        let at_ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Event { at_ms, kind: kind.into(), text: text.into() }
    }

    /// One line for people: RFC 3339 time with milliseconds, kind, text.
    pub fn line(&self) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(self.at_ms);
        format!("{}  {:<9} {}", humantime::format_rfc3339_millis(t), self.kind, self.text)
    }
}

/// The timeline file of `lab`.
pub fn path(lab: &str) -> PathBuf {
    crate::lab::lab_dir(lab).join("events.jsonl")
}

/// Appends events to `lab`'s timeline. Losing a line must never stop a change, so errors are
/// only reported to the log (standard error).
pub fn append(lab: &str, events: &[Event]) {
    let p = path(lab);
    if fs::metadata(&p).is_ok_and(|m| m.len() > MAX_BYTES) {
        let _ = fs::rename(&p, p.with_extension("jsonl.1"));
    }
    let mut text = String::new();
    for e in events {
        text += &serde_json::to_string(e).expect("events always serialize");
        text.push('\n');
    }
    let written =
        fs::OpenOptions::new().create(true).append(true).open(&p).and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        crate::log!("cannot append to {}: {e}", p.display());
    }
}

/// The timeline so far (unreadable lines are skipped).
pub fn read(lab: &str) -> Vec<Event> {
    let Ok(text) = fs::read_to_string(path(lab)) else { return Vec::new() };
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}
