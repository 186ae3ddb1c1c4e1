//! `vpclab import`: a real VPC brought home. Reads the JSON that `aws ec2 describe-*` prints (one
//! file per call, or a folder of them, each known by its top-level key) and writes a topology file
//! that reproduces the VPCs' data plane, AWS's ids kept. The model is built here and written by
//! [`super::export`], then parsed back through the same validation as `vpclab check`: what is
//! written is always a valid lab. What vpclab cannot carry (transit gateways, endpoints, prefix
//! lists, IPv6, ...) is never dropped silently: each object is listed, one line naming its id, in
//! comments at the top of the written file and in [`Imported::not_carried`].

mod aws;
mod build;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::TopologyError;

/// The lab name an import gets when none is asked for.
pub const DEFAULT_LAB_NAME: &str = "imported";

/// The largest JSON file read: `describe-*` output of a large account is a few MiB.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The most JSON one import reads, all files together.
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;

/// The most files one import reads: a VPC needs eleven, a few accounts or regions a few dozen.
pub const MAX_FILES: usize = 1024;

/// The address that stands for the internet when a VPC has an internet gateway: AWS's JSON names
/// no hosts there (TEST-NET-2, RFC 5737).
pub const INTERNET_HOST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 7);

/// The top-level keys of the `describe-*` outputs read, in the order the README lists the calls.
pub const KEYS: [&str; 11] = [
    "Vpcs",
    "Subnets",
    "NetworkInterfaces",
    "Reservations",
    "SecurityGroups",
    "RouteTables",
    "NetworkAcls",
    "Addresses",
    "NatGateways",
    "InternetGateways",
    "VpcPeeringConnections",
];

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read, is not `describe-*` JSON, or holds a bad value; `message` names
    /// the field (`Subnets[2].CidrBlock: ...`).
    #[error("{file}: {message}")]
    Input {
        /// The file, as given.
        file: String,
        /// What is wrong, and where in the file.
        message: String,
    },
    /// The topology built does not pass `vpclab check`.
    #[error("the imported lab does not pass validation:\n{0}")]
    Invalid(TopologyError),
}

/// The written topology and what it could not carry.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The topology file: comments first, then what `vpclab export` would write.
    pub text: String,
    /// One line per object not carried, or carried only in part, naming its id.
    pub not_carried: Vec<String>,
    /// One line per thing carried in a way worth knowing (a NAT gateway's own ENI, the stand-in
    /// internet host, ...).
    pub remarks: Vec<String>,
}

/// One input file: its name in messages, its text, and whether it was found in a folder (an
/// unknown file there is listed and skipped; one named on its own is an error).
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as given (or as found in a folder).
    pub name: String,
    /// Its contents.
    pub text: String,
    /// Found by listing a folder.
    pub from_folder: bool,
}

/// Reads `paths` (files, or folders whose `*.json` files are read in name order) and imports
/// them as lab `name`.
pub fn import_paths(paths: &[PathBuf], name: &str) -> Result<Imported, ImportError> {
    let mut found = Vec::new();
    for p in paths {
        if p.is_dir() {
            found.extend(json_files_in(p)?.into_iter().map(|f| (f, true)));
        } else {
            found.push((p.clone(), false));
        }
    }
    let too_many = |message: String| ImportError::Input { file: paths[0].display().to_string(), message };
    if found.len() > MAX_FILES {
        return Err(too_many(format!("more than {MAX_FILES} JSON files to read")));
    }
    // Sizes first, so that too much is refused before any of it is read.
    let sizes: u64 = found.iter().filter_map(|(f, _)| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    if sizes > MAX_TOTAL_BYTES {
        return Err(too_many(format!("more than {} MiB of JSON in all", MAX_TOTAL_BYTES >> 20)));
    }
    let mut files = Vec::new();
    let mut total = 0u64;
    for (path, from_folder) in found {
        let text = read_bounded(&path)?;
        total += text.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(too_many(format!("more than {} MiB of JSON in all", MAX_TOTAL_BYTES >> 20)));
        }
        files.push(SourceFile { name: path.display().to_string(), text, from_folder });
    }
    let sources: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    import(&files, name, &sources.join(" "))
}

/// Imports files already read; `sources` says where they came from in the written header.
pub fn import(files: &[SourceFile], name: &str, sources: &str) -> Result<Imported, ImportError> {
    let mut input = Input::default();
    let mut skipped = Vec::new();
    for f in files {
        read_file(f, &mut input, &mut skipped)?;
    }
    let built = build::build(&input, name)?;
    let mut body = super::export(&built.model);
    if !body.ends_with('\n') {
        body.push('\n');
    }
    // The same check as `vpclab check`: what is written is a lab that comes up.
    super::parse(&body, "the imported topology").map_err(ImportError::Invalid)?;
    let mut not_carried = skipped;
    not_carried.extend(built.not_carried);
    let text = header(sources, &not_carried, &built.remarks) + &body;
    Ok(Imported { text, not_carried, remarks: built.remarks })
}

/// The comment block at the top of the written file.
fn header(sources: &str, not_carried: &[String], remarks: &[String]) -> String {
    let mut h = format!("# Imported by `vpclab import` from the `aws ec2 describe-*` JSON in: {sources}\n");
    for r in remarks {
        h += &format!("# {r}\n");
    }
    if not_carried.is_empty() {
        h += "# Everything read was carried over.\n";
    } else {
        h += &format!("#\n# Not carried over ({}):\n", not_carried.len());
        for n in not_carried {
            h += &format!("#   {n}\n");
        }
    }
    h + "\n"
}

/// The `*.json` files of a folder, sorted by name.
fn json_files_in(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let err = |e: std::io::Error| ImportError::Input {
        file: dir.display().to_string(),
        message: format!("cannot list the folder: {e}"),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ImportError::Input { file: dir.display().to_string(), message: "holds no .json file".into() });
    }
    Ok(out)
}

/// A file's text, refusing one over [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<String, ImportError> {
    let file = path.display().to_string();
    let err = |message: String| ImportError::Input { file: file.clone(), message };
    let f = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut text = String::new();
    // Read one byte past the bound, so a file that grew after a size check is caught too.
    f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| err(format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(err(format!("larger than {} MiB: not describe-* output", MAX_FILE_BYTES >> 20)));
    }
    Ok(text)
}

/// An object read from a file, with where it was: `Subnets[2]` in `subnets.json`.
#[derive(Debug)]
pub(crate) struct Item<T> {
    pub(crate) file: String,
    pub(crate) path: String,
    pub(crate) v: T,
}

impl<T> Item<T> {
    /// An error about `field` of this object.
    pub(crate) fn error(&self, field: &str, message: impl std::fmt::Display) -> ImportError {
        ImportError::Input { file: self.file.clone(), message: format!("{}.{field}: {message}", self.path) }
    }
}

/// Every object read, by kind, in file order.
#[derive(Debug, Default)]
pub(crate) struct Input {
    pub(crate) vpcs: Vec<Item<aws::Vpc>>,
    pub(crate) subnets: Vec<Item<aws::Subnet>>,
    pub(crate) network_interfaces: Vec<Item<aws::NetworkInterface>>,
    pub(crate) instances: Vec<Item<aws::Instance>>,
    pub(crate) security_groups: Vec<Item<aws::SecurityGroup>>,
    pub(crate) route_tables: Vec<Item<aws::RouteTable>>,
    pub(crate) network_acls: Vec<Item<aws::NetworkAcl>>,
    pub(crate) addresses: Vec<Item<aws::Address>>,
    pub(crate) nat_gateways: Vec<Item<aws::NatGateway>>,
    pub(crate) internet_gateways: Vec<Item<aws::InternetGateway>>,
    pub(crate) peerings: Vec<Item<aws::PeeringConnection>>,
}

/// Reads one file's known keys into `input`. A file with none is an error, unless it was found in
/// a folder: then it is listed in `skipped`.
fn read_file(f: &SourceFile, input: &mut Input, skipped: &mut Vec<String>) -> Result<(), ImportError> {
    let err = |message: String| ImportError::Input { file: f.name.clone(), message };
    let top: serde_json::Map<String, Value> = serde_json::from_str(&f.text)
        .map_err(|e| err(format!("not the JSON object that `aws ec2 describe-*` prints: {e}")))?;
    let found: Vec<&str> = KEYS.iter().copied().filter(|k| top.contains_key(*k)).collect();
    if found.is_empty() {
        let keys: Vec<&str> = top.keys().map(String::as_str).take(5).collect();
        let message = format!(
            "none of the top-level keys `vpclab import` reads ({}); it has: {}",
            KEYS.join(", "),
            if keys.is_empty() { "nothing".to_string() } else { keys.join(", ") }
        );
        if f.from_folder {
            skipped.push(format!("{}: not read: {message}", f.name));
            return Ok(());
        }
        return Err(err(message));
    }
    for key in found {
        read_key(f, key, &top[key], input)?;
    }
    Ok(())
}

/// Reads the array under one top-level key.
fn read_key(f: &SourceFile, key: &str, list: &Value, input: &mut Input) -> Result<(), ImportError> {
    let file = &f.name;
    match key {
        "Vpcs" => input.vpcs.extend(items(file, key, list)?),
        "Subnets" => input.subnets.extend(items(file, key, list)?),
        "NetworkInterfaces" => input.network_interfaces.extend(items(file, key, list)?),
        "SecurityGroups" => input.security_groups.extend(items(file, key, list)?),
        "RouteTables" => input.route_tables.extend(items(file, key, list)?),
        "NetworkAcls" => input.network_acls.extend(items(file, key, list)?),
        "Addresses" => input.addresses.extend(items(file, key, list)?),
        "NatGateways" => input.nat_gateways.extend(items(file, key, list)?),
        "InternetGateways" => input.internet_gateways.extend(items(file, key, list)?),
        "VpcPeeringConnections" => input.peerings.extend(items(file, key, list)?),
        "Reservations" => {
            for (i, r) in array(file, key, list)?.iter().enumerate() {
                let path = format!("{key}[{i}]");
                let instances = r.get("Instances").unwrap_or(&Value::Null);
                input.instances.extend(items(file, &format!("{path}.Instances"), instances)?);
            }
        }
        _ => unreachable!("read_file passes only KEYS"),
    }
    Ok(())
}

fn array<'v>(file: &str, path: &str, v: &'v Value) -> Result<&'v Vec<Value>, ImportError> {
    v.as_array().ok_or_else(|| ImportError::Input { file: file.into(), message: format!("{path}: not a list") })
}

/// Each element of a list as a `T`, or an error naming the element and what serde found wrong.
fn items<T: DeserializeOwned>(file: &str, path: &str, list: &Value) -> Result<Vec<Item<T>>, ImportError> {
    let mut out = Vec::new();
    for (i, v) in array(file, path, list)?.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let v = T::deserialize(v).map_err(|e| ImportError::Input {
            file: file.into(),
            message: format!("{path}{}: {e}", field_of_error::<T>(v)),
        })?;
        out.push(Item { file: file.into(), path, v });
    }
    Ok(out)
}

/// Where in `v` deserializing a `T` fails, as a path suffix (`.State.Name`, `.Groups[1].GroupId`),
/// or "" when the failure is about `v` itself. serde reports no path for a `Value`, but parsing
/// the pretty-printed text reports a line, and that text has one field per line, indented by
/// depth: the path is read back from the lines up to it.
fn field_of_error<T: DeserializeOwned>(v: &Value) -> String {
    let Ok(pretty) = serde_json::to_string_pretty(v) else { return String::new() };
    let Err(e) = serde_json::from_str::<T>(&pretty) else { return String::new() };
    let mut path: Vec<String> = Vec::new(); // one segment per depth below the top
    let mut next_index: Vec<usize> = Vec::new(); // per depth: the next array element's index
    for (n, line) in pretty.lines().enumerate().take(e.line()).skip(1) {
        let depth = (line.len() - line.trim_start().len()) / 2;
        let t = line.trim_start();
        if t.starts_with(['}', ']']) {
            if n + 1 == e.line() {
                path.truncate(depth); // a missing field: the path of the object that closes here
            }
            continue;
        }
        path.truncate(depth.saturating_sub(1));
        next_index.resize(depth + 2, 0);
        next_index[depth + 1] = 0; // a new key or element starts new arrays below it
        match t.strip_prefix('"').and_then(|k| k.split_once("\": ")) {
            Some((key, _)) => path.push(format!(".{key}")),
            None => {
                path.push(format!("[{}]", next_index[depth]));
                next_index[depth] += 1;
            }
        }
    }
    path.concat()
}
