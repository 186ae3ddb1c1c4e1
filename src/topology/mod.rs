//! The topology file format (TOML) and its validation into a checked [`crate::model::Model`].
//!
//! [`parse`] reads the file in two steps: serde maps the TOML onto structs that mirror it (unknown
//! keys and wrong types are errors, reported with their line), then validation applies AWS's rules
//! and defaults and either returns the model or every problem it found. A [`Problem`] names the
//! file, the 1-based line of the offending value, and a field path: `section "id".field`, e.g.
//! `network_interface "eni-web".private_ip` or `security_group "sg-web".ingress[1].ports`
//! (indices 0-based); the top-level name is `name`. A TOML error before any id is known uses the
//! array position instead of the id (`subnet[1].cidr`).

mod edit;
mod export;
pub mod import;
pub mod instance_types;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use edit::{edited, DocEdit, Field};
pub use export::export;
pub use validate::DEFAULT_GROUP_NAME;

use crate::model::Model;

/// The lab vpclab brings up when no file is given: a copy of the shared example.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../netns-setup/default.toml");

/// The name [`DEFAULT_TOPOLOGY`] goes by in messages.
pub const DEFAULT_TOPOLOGY_FILE: &str = "netns-setup/default.toml";

/// One mistake in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as named to [`parse`].
    pub file: String,
    /// 1-based line of the offending value (0 when the problem is about the file as a whole).
    pub line: usize,
    /// Where in the file: `section "id".field`, see the module documentation.
    pub field: String,
    /// What is wrong, in AWS's terms.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.line, self.field, self.message)
    }
}

/// Every problem found in a topology file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// The problems, by line (a TOML syntax or type error stops at the first).
    pub problems: Vec<Problem>,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TopologyError {}

/// Reads and checks a topology file. Flow log destinations are made absolute against the
/// file's folder.
pub fn load(path: &Path) -> Result<Model, TopologyError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file).map(|mut m| {
            if let Some(dir) = std::path::absolute(path).ok().as_deref().and_then(Path::parent) {
                resolve_destinations(&mut m, dir);
            }
            m
        }),
        Err(e) => Err(TopologyError {
            problems: vec![Problem {
                file,
                line: 0,
                field: "(file)".into(),
                message: format!("cannot read the topology file: {e}"),
            }],
        }),
    }
}

/// Checks a topology given as text; `file` names it in messages. When `file` is an absolute
/// path, flow log destinations are made absolute against its folder (as [`load`] does).
pub fn parse(text: &str, file: &str) -> Result<Model, TopologyError> {
    let mut model = parse_only(text, file)?;
    if let Some(dir) = Path::new(file).parent().filter(|_| Path::new(file).is_absolute()) {
        resolve_destinations(&mut model, dir);
    }
    // Every valid topology any unit test parses must also survive `export` unchanged.
    #[cfg(test)]
    export::assert_round_trip(&model, parse_only);
    Ok(model)
}

/// Flow log destinations are relative to the topology file's folder.
fn resolve_destinations(model: &mut Model, dir: &Path) {
    for f in &mut model.flow_logs {
        if Path::new(&f.destination).is_relative() {
            f.destination = dir.join(&f.destination).display().to_string();
        }
    }
}

fn parse_only(text: &str, file: &str) -> Result<Model, TopologyError> {
    let lines = LineIndex::new(text);
    let raw: raw::RawFile =
        toml::from_str(text).map_err(|e| TopologyError { problems: vec![toml_problem(&e, text, file, &lines)] })?;
    validate::validate(&raw, file, &lines).map_err(|mut problems| {
        problems.sort_by_key(|p| p.line);
        TopologyError { problems }
    })
}

/// Byte offset to 1-based line number.
#[derive(Debug)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The line holding byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).max(1)
    }
}

/// A TOML syntax or type error as a [`Problem`]: serde knows no field paths, so the path is read
/// back from the text around the error.
fn toml_problem(e: &toml::de::Error, text: &str, file: &str, lines: &LineIndex) -> Problem {
    let message = e.message().trim().replace('\n', "; ").replace("expected i64", "expected an integer");
    let Some(span) = e.span() else {
        return Problem { file: file.to_string(), line: 1, field: "(file)".into(), message };
    };
    let line = lines.line(span.start);
    Problem { file: file.to_string(), line, field: field_at(text, span), message }
}

/// Whether `s` is a bare TOML key.
fn is_bare_key(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The bare key of a `key = value` line, if the line starts with one.
fn leading_key(line: &str) -> Option<&str> {
    let (k, _) = line.trim_start().split_once('=')?;
    let k = k.trim();
    is_bare_key(k).then_some(k)
}

/// A best-effort field path for a byte range: the enclosing `[[section]]` (by id when the table
/// has an `id = "..."` line, else by position), the key whose value holds the error, and the key
/// inside an inline table when the error is in one (`route_table "rtb-a".routes.target`).
fn field_at(text: &str, span: std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_start = text.get(..start).and_then(|t| t.rfind('\n')).map_or(0, |i| i + 1);
    let line_text = text.get(line_start..).and_then(|t| t.lines().next()).unwrap_or("");

    // Walk the lines up to and including the error's: the last header is the enclosing table, the
    // last `key =` line inside it the key whose (perhaps multi-line) value holds the error.
    let mut header: Option<(&str, bool, usize)> = None; // (name, is an array of tables, offset)
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut outer_key: Option<&str> = None;
    let mut offset = 0;
    for l in text.split_inclusive('\n') {
        if offset > start {
            break;
        }
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split_once("]]")).map(|(n, _)| n.trim()) {
            *counts.entry(name).or_insert(0) += 1;
            header = Some((name, true, offset));
            outer_key = None;
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(n, _)| n.trim()) {
            header = Some((name, false, offset));
            outer_key = None;
        } else if let Some(k) = leading_key(l) {
            outer_key = Some(k);
        }
        offset += l.len();
    }

    let prefix = match header {
        None => String::new(),
        Some((name, false, _)) => name.to_string(),
        Some((name, true, at)) => {
            let index = counts.get(name).copied().unwrap_or(1).saturating_sub(1);
            // The table's id, between its header and the next header.
            let body = text.get(at..).unwrap_or("");
            let id = body.lines().skip(1).take_while(|l| !l.trim_start().starts_with('[')).find_map(|l| {
                let (k, v) = l.split_once('=')?;
                if k.trim() == "id" {
                    v.trim().split('"').nth(1).map(str::to_string)
                } else {
                    None
                }
            });
            match id {
                Some(id) => format!("{name} \"{id}\""),
                None => format!("{name}[{index}]"),
            }
        }
    };

    // The key itself (an unknown field points at its key), or the key before the `=` that comes
    // before the error on its line (a bad value, perhaps inside an inline table).
    let here = text.get(span).unwrap_or("").trim();
    let inner = if is_bare_key(here) && !here.bytes().all(|b| b.is_ascii_digit()) {
        Some(here)
    } else {
        let before = text.get(line_start..start).unwrap_or("");
        before
            .rfind('=')
            .and_then(|eq| before[..eq].rsplit([' ', '{', ',', '\t']).find(|w| !w.is_empty()))
            .filter(|k| is_bare_key(k))
    };
    let mut parts: Vec<&str> = Vec::new();
    if let Some(o) = outer_key {
        // Leave the outer key out when the error is that very `key = value`.
        if Some(o) != inner || leading_key(line_text).is_none() {
            parts.push(o);
        }
    }
    if let Some(i) = inner {
        if parts.last() != Some(&i) {
            parts.push(i);
        }
    }
    let key = parts.join(".");
    match (prefix.is_empty(), key.is_empty()) {
        (true, true) => "(file)".to_string(),
        (true, false) => key,
        (false, true) => prefix,
        (false, false) => format!("{prefix}.{key}"),
    }
}

/// Checks a lab name given outside a file (`up --name`): the same rule as the file's `name`.
pub fn check_lab_name(name: &str) -> Result<(), String> {
    if validate::valid_name(name) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a lab name: {}", validate::LAB_NAME_RULE))
    }
}
#[cfg(test)]
mod endpoint_tests;
#[cfg(test)]
mod export_tests;
#[cfg(test)]
mod import_tests;
